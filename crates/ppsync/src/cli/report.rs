//! `ppsync report`: requests and records per pass, against what a full pull would cost.

use std::io::Write;

use crate::app;
use crate::config::Config;

pub(super) async fn report(cfg: Config, last: Option<usize>) -> anyhow::Result<i32> {
    let (cfg, store) = app::open_existing(&cfg).await?;
    let text = crate::report::render(&store, &cfg, last).await?;
    write!(std::io::stdout().lock(), "{text}")?;
    Ok(0)
}
