//! `ppsync status`: each resource's cursor, counts and last run, and what needs the operator.

use crate::app;
use crate::config::Config;
use crate::resource;

pub(super) async fn status(cfg: Config, json: bool) -> anyhow::Result<i32> {
    let (_, store) = app::open(&cfg).await?;
    let runs = store.runs(500).await?;
    let dialects: std::collections::HashMap<String, String> =
        store.dialects().await?.into_iter().collect();
    let learned = |name: &str| -> Option<crate::sync::Dialect> {
        dialects
            .get(name)
            .and_then(|s| serde_json::from_str(s).ok())
    };
    let api: crate::sync::ApiFacts = dialects
        .get(crate::sync::dialect::API)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let issues = store.issue_counts().await?;
    let backlog = store.detail_backlog().await?;
    let mut rows = Vec::new();
    for res in resource::RESOURCES {
        let (live, deleted) = store.counts(res).await?;
        let st = store.state(res).await?;
        let last = runs.iter().find(|r| r.resource == res.name);
        rows.push(serde_json::json!({
            "resource": res.name,
            "tier": res.tier.name(),
            "cursor": st.cursor.map(crate::time::canonical),
            "last_full_at": st.last_full_at.map(crate::time::canonical),
            "listing_in_progress": st.listing.is_some(),
            "records": live,
            "deleted": deleted,
            "incomplete": st.incomplete,
            "unproven": st.unproven,
            "odd_records": issues.get(res.name).copied().unwrap_or(0),
            "details_queued": backlog.get(res.name).map_or(0, |b| b.queued),
            "details_failing": backlog.get(res.name).map_or(0, |b| b.failing),
            "dialect": learned(res.name),
            "last_run": last.map(|r| serde_json::json!({
                "mode": r.mode, "finished_at": r.finished_at, "outcome": r.outcome,
                "requests": r.requests, "records_changed": r.records_changed, "error": r.error,
            })),
        }));
    }
    if json {
        // One row per resource (the firm-wide facts are on the table's last lines and /status).
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    outln!(
        "{:<22} {:<6} {:>8} {:>7}  {:<27} {:<10}",
        "resource",
        "tier",
        "records",
        "deleted",
        "cursor",
        "last run"
    );
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let last = r["last_run"]
            .as_object()
            .map(|l| {
                format!(
                    "{} {}",
                    l["mode"].as_str().unwrap_or(""),
                    l["outcome"].as_str().unwrap_or("")
                )
            })
            .unwrap_or_else(|| "never".into());
        outln!(
            "{:<22} {:<6} {:>8} {:>7}  {:<27} {}",
            s("resource"),
            s("tier"),
            r["records"].as_i64().unwrap_or(0),
            r["deleted"].as_i64().unwrap_or(0),
            s("cursor"),
            last
        );
    }
    // What could not be listed, and what could not be proven: the operator's to-do list.
    for r in &rows {
        if let Some(why) = r["incomplete"].as_str() {
            outln!("INCOMPLETE {}: {why}", s_of(r, "resource"));
        }
    }
    for r in &rows {
        if let Some(why) = r["unproven"].as_str()
            && r["incomplete"].is_null()
        {
            outln!(
                "unproven {}: {why} (nothing seen missing)",
                s_of(r, "resource")
            );
        }
    }
    if !backlog.is_empty() {
        let list: Vec<String> = backlog
            .iter()
            .map(|(r, b)| {
                if b.failing > 0 {
                    format!(
                        "{r} {} ({} failing, retried with backoff)",
                        b.queued, b.failing
                    )
                } else {
                    format!("{r} {}", b.queued)
                }
            })
            .collect();
        outln!(
            "by-id reads queued (fields the list leaves out; the daemon reads them between cycles): {}",
            list.join(", ")
        );
    }
    if !issues.is_empty() {
        let list: Vec<String> = issues.iter().map(|(r, n)| format!("{r} {n}")).collect();
        outln!(
            "odd records (stored as received, a field NULL in its typed column; table record_issues): {}",
            list.join(", ")
        );
    }
    let outbox = store.outbox_counts().await?;
    let by_status = |status: &str| -> i64 {
        outbox
            .iter()
            .filter(|(k, _)| k.ends_with(&format!("/{status}")))
            .map(|(_, n)| *n)
            .sum()
    };
    let (pending, dead) = (by_status("pending"), by_status("dead"));
    if pending > 0 || dead > 0 {
        outln!("notifications: {pending} pending, {dead} dead");
    }
    if dead > 0 {
        const SHOWN: i64 = 20;
        for d in store.outbox_dead_rows(SHOWN).await? {
            outln!("DEAD {} ({} tries): {}", d.id, d.attempts, d.last_error);
        }
        if dead > SHOWN {
            outln!("... and {} more", dead - SHOWN);
        }
        outln!("`ppsync notify retry ID...` (or --all) sends them again");
    }
    if let Some(skew) = &api.clock_skew_secs {
        outln!(
            "server clock: {:+} s against ours ({}, {})",
            skew.value,
            skew.how,
            crate::time::canonical(skew.at)
        );
    }
    if let Some(rate) = &api.rate_limit {
        outln!(
            "request rate: {} per budget window, learned: {} ({})",
            rate.value,
            rate.how,
            crate::time::canonical(rate.at)
        );
    }
    Ok(0)
}

fn s_of(r: &serde_json::Value, k: &str) -> String {
    r[k].as_str().unwrap_or("-").to_string()
}
