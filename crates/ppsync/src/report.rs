//! `ppsync report`: requests and records per pass from the run history, against what a full pull
//! of the same resources would have cost at the mirror's current size — the seed's efficiency
//! table, measured instead of estimated.

use std::fmt::Write as _;

use crate::config::Config;
use crate::store::Store;

/// What a full pull of every enabled resource costs now: (requests, records).
pub async fn full_pull_cost(store: &Store, cfg: &Config) -> anyhow::Result<(u64, u64)> {
    let mut requests = 0;
    let mut records = 0;
    for res in cfg.enabled_resources() {
        let (live, _) = store.counts(res).await?;
        let live = live.max(0) as u64;
        records += live;
        requests += live.div_ceil(u64::from(cfg.sync.page_size)).max(1);
    }
    Ok((requests, records))
}

pub async fn render(store: &Store, cfg: &Config, last: Option<usize>) -> anyhow::Result<String> {
    let cycles = store.cycles().await?;
    let (full_req, full_rec) = full_pull_cost(store, cfg).await?;
    let mut out = String::new();
    if cycles.is_empty() {
        writeln!(out, "no passes recorded yet: run `ppsync sync`")?;
        return Ok(out);
    }
    let skip = last.map_or(0, |n| cycles.len().saturating_sub(n));
    // Pass times in the firm's zone, named (`time_zone`), as `ppsync deadlines` shows them.
    let zone = cfg.sync.deadlines.zone;
    writeln!(
        out,
        "{:>5}  {:<24} {:<8} {:>9} {:>9} {:>8} {:>8} {:>8}  modes",
        "pass", "started", "trigger", "resources", "requests", "received", "changed", "deleted"
    )?;
    for c in cycles.iter().skip(skip) {
        writeln!(
            out,
            "{:>5}  {:<24} {:<8} {:>9} {:>9} {:>8} {:>8} {:>8}  {}",
            c.id,
            crate::time::local_text_of(&c.started_at, zone),
            c.trigger,
            c.resources,
            c.requests,
            c.records_seen,
            c.records_changed,
            c.records_deleted,
            c.modes
        )?;
    }
    let mut incr = (0u64, 0i64, 0i64);
    for c in cycles
        .iter()
        .filter(|c| c.trigger != "reconcile" && !c.modes.contains("backfill"))
    {
        incr.0 += 1;
        incr.1 += c.requests;
        incr.2 += c.records_seen;
    }
    writeln!(out)?;
    writeln!(
        out,
        "a full pull of the {} enabled resources now: {full_req} requests, {full_rec} records",
        cfg.enabled_resources().len()
    )?;
    if incr.0 > 0 {
        let (n, req, rec) = (incr.0 as f64, incr.1 as f64, incr.2 as f64);
        writeln!(
            out,
            "scheduled passes: {} — on average {:.1} requests and {:.1} records each ({:.2}% of a full pull's records, {:.1}% of its requests)",
            incr.0,
            req / n,
            rec / n,
            100.0 * rec / n / (full_rec.max(1) as f64),
            100.0 * req / n / (full_req.max(1) as f64),
        )?;
    }
    Ok(out)
}
