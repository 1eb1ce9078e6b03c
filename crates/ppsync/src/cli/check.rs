//! `ppsync check`: the checklist of `crate::check`, one line each (or JSON), then the settings in
//! force with their secrets hidden. Exit 0 only when every check passes, 2 otherwise.

use std::io::IsTerminal as _;
use std::sync::Arc;

use super::firm::load;
use crate::check::{self, Check};
use crate::time::SystemClock;

pub(super) async fn check(
    at: &(Option<std::path::PathBuf>, Option<String>),
    json: bool,
) -> anyhow::Result<i32> {
    let (checks, shown) = match load(at) {
        Ok(cfg) => (
            check::all(&cfg, Arc::new(SystemClock)).await,
            Some(cfg.shown()),
        ),
        // The one check that stops the others: they all read the config.
        Err(e) => (vec![Check::fail("config", format!("{e:#}"))], None),
    };
    let ok = checks.iter().all(|c| c.ok);
    if json {
        let config = shown
            .as_deref()
            .and_then(|s| s.parse::<toml::Table>().ok())
            .map(|t| serde_json::to_value(t).unwrap_or_default());
        let doc = serde_json::json!({ "ok": ok, "checks": checks, "config": config });
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let colours = crate::logging::colours(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        );
        let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &checks {
            let mark = match (c.ok, colours) {
                (true, true) => "\x1b[32mok  \x1b[0m",
                (true, false) => "ok  ",
                (false, true) => "\x1b[31mFAIL\x1b[0m",
                (false, false) => "FAIL",
            };
            outln!("{mark} {:width$}  {}", c.name, c.detail);
        }
        if let Some(shown) = shown {
            outln!(
                "\n# the settings in force (secrets hidden)\n{}",
                shown.trim_end()
            );
        }
    }
    Ok(if ok { 0 } else { 2 })
}
