//! `ppsync tap`: the mirror as a Singer tap (https://hub.meltano.com/singer/spec). `--discover`
//! prints the catalog; otherwise the selected streams' SCHEMA, RECORD and STATE messages go to
//! stdout, one a line, logs to stderr.
//!
//! It reads the mirror, not the API: the records are the checked, de-duplicated ones the engine
//! stored, and a tap run spends none of the firm's request budget. Keeping the mirror current is
//! the daemon's job (or `ppsync sync` before the tap). STATE holds, per stream, the mirror's
//! own write instant (`state.rs`), so an incremental run emits exactly the records written
//! since, deletions included (`_sdc_deleted_at`).

mod catalog;
pub mod config;
mod messages;
mod run;
mod schema;
mod state;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use crate::config::Config;
use crate::time::Clock as _;
pub use config::TapConfig;
use messages::Out;
use state::State;

#[derive(Args, Debug)]
pub struct TapArgs {
    /// Print the catalog of every stream (schema, key, replication) and exit
    #[arg(long, conflicts_with_all = ["state", "catalog"])]
    pub discover: bool,
    /// The value of the last STATE message: emit only what the mirror wrote since
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// A catalog (from --discover) whose selected streams are emitted [default: every enabled resource]
    #[arg(long, alias = "properties", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
}

/// Runs the tap on `cfg` (ppsync's configuration, the firm chosen) with the tap's `settle`.
pub async fn run(cfg: Config, settle: std::time::Duration, args: TapArgs) -> anyhow::Result<i32> {
    let mut out = Out::new(std::io::stdout().lock());
    if args.discover {
        out.document(&catalog::discover(&cfg.enabled_resources()))?;
        return Ok(0);
    }
    // Files are read and checked before the database is touched.
    let streams = match &args.catalog {
        Some(p) => catalog::selected(&read_json(p, "--catalog")?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        None => cfg.enabled_resources(),
    };
    let state = match &args.state {
        Some(p) => State::parse(&read_json(p, "--state")?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        None => State::default(),
    };
    // A tap reads: a missing mirror is an error naming `ppsync sync`, never a new empty one.
    let (_, store) = crate::app::open_existing(&cfg).await?;
    let fence = state::fence(crate::time::SystemClock.now(), settle);
    run::emit(&store, &streams, state, fence, &mut out).await?;
    Ok(0)
}

fn read_json(path: &Path, flag: &str) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {flag} {}: check the path", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{flag} {} is not JSON ({e}): pass a file the tap or Meltano wrote",
            path.display()
        )
    })
}
