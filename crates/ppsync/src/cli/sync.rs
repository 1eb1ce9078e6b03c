//! `ppsync sync` and `ppsync probe`: one pass, or one measurement, over the chosen resources.

use std::io::Write;
use std::sync::Arc;

use super::SyncArgs;
use crate::app;
use crate::config::Config;
use crate::progress::{Bars, print_pass};
use crate::resource::{self, Resource};
use crate::time::{Clock, SystemClock};

/// Resolves `--resource` names (all enabled ones when empty).
pub fn select(cfg: &Config, names: &[String]) -> anyhow::Result<Vec<&'static Resource>> {
    if names.is_empty() {
        return Ok(cfg.enabled_resources());
    }
    names
        .iter()
        .map(|n| resource::find(n).ok_or_else(|| anyhow::anyhow!(resource::unknown(n))))
        .collect()
}

pub(super) async fn sync(cfg: Config, args: SyncArgs) -> anyhow::Result<i32> {
    // Names are checked before the database is touched; the firm's own settings then decide.
    select(&cfg, &args.resources)?;
    if cfg.firm.is_none() {
        cfg.require_credentials()?;
    }
    let (cfg, store) = app::open(&cfg).await?;
    let resources = select(&cfg, &args.resources)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut engine = app::engine_on(&cfg, store, clock).await?;
    let bars = Bars::new();
    engine.progress = Some(bars.clone());
    let report = engine.pass(&resources, args.full, "cli").await;
    // The pass is committed: a closed stdout must not keep its errors off stderr or the store open.
    let mut printed = print_pass(&report);
    let mut code = report.exit_code();
    let details = engine.detail_resources(&resources);
    if !args.no_details && !details.is_empty() && report.fatal.is_none() {
        // Records whose list leaves fields out are read by id, on background budget.
        let d = engine.fetch_details(&details, None).await;
        if d.requests > 0 || d.left > 0 {
            printed = printed.and_then(|()| {
                writeln!(
                    std::io::stdout().lock(),
                    "by-id reads: {} stored, {} gone, {} failed, {} requests, {} still queued",
                    d.stored,
                    d.gone,
                    d.failed,
                    d.requests,
                    d.left
                )
            });
        }
        if let Some(e) = &d.error {
            eprintln!("by-id reads stopped: {e}");
            if d.fatal {
                code = 2;
            }
        }
    }
    if let Some(f) = &report.fatal {
        eprintln!("error: {f}");
    }
    for o in report.outcomes.iter().filter(|o| o.error.is_some()) {
        if report.fatal.as_deref() != o.error.as_deref() {
            // An incomplete listing wrote what it could reach; a skipped one wrote nothing.
            let what = if o.incomplete {
                "incomplete"
            } else {
                "skipped"
            };
            eprintln!(
                "{what} {}: {}",
                o.resource,
                o.error.as_deref().unwrap_or("")
            );
        }
    }
    engine.store.close().await;
    printed?;
    Ok(code)
}

pub(super) async fn probe(cfg: Config, names: &[String], json: bool) -> anyhow::Result<i32> {
    select(&cfg, names)?;
    if cfg.firm.is_none() {
        cfg.require_credentials()?;
    }
    let (cfg, store) = app::open(&cfg).await?;
    let resources = select(&cfg, names)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = app::engine_on(&cfg, store, clock).await?;
    let report = crate::probe::run(&engine, &resources).await;
    engine.store.close().await;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        write!(
            std::io::stdout().lock(),
            "{}",
            crate::probe::render(&report)
        )?;
    }
    // An endpoint the probe could not reach at all is a failure to report (exit 1; 2 when none).
    let failed = report
        .endpoints
        .iter()
        .filter(|e| e.error.is_some())
        .count();
    Ok(match failed {
        0 => 0,
        n if n == report.endpoints.len() => 2,
        _ => 1,
    })
}
