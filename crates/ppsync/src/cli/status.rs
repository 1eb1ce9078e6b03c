//! `ppsync status`: the status snapshot (`crate::status`) as a table, or as `/status`'s JSON.

use crate::app;
use crate::config::Config;

pub(super) async fn status(cfg: Config, json: bool) -> anyhow::Result<i32> {
    let (_, store) = app::open_existing(&cfg).await?;
    crate::status::text::print(&cfg, &store, json).await?;
    Ok(0)
}
