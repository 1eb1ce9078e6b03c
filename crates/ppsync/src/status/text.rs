//! `ppsync status [--json]`: the status snapshot as a table for people, or as the same JSON
//! `/status` serves.

use crate::config::Config;
use crate::store::Store;
use crate::time::{Clock, SystemClock, local_text, local_text_of};

use super::snapshot::{DEAD_SHOWN, Snapshot};

/// Prints the mirror's status on stdout. Outside a daemon there are no request counters or budget
/// use to show: the JSON leaves them out.
pub async fn print(cfg: &Config, store: &Store, json: bool) -> anyhow::Result<()> {
    let s = Snapshot::read(
        store,
        &cfg.daemon().schedule,
        SystemClock.now(),
        cfg.notify.window,
        &cfg.sync.deadlines,
        None,
    )
    .await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        table(&s)?;
    }
    Ok(())
}

/// One line per resource, then the operator's to-do list and the firm-wide facts.
fn table(s: &Snapshot) -> anyhow::Result<()> {
    outln!(
        "{:<22} {:<6} {:>8} {:>7}  {:<27} {:<10}",
        "resource",
        "tier",
        "records",
        "deleted",
        "cursor",
        "last run"
    );
    for r in &s.resources {
        let last = r
            .last_run
            .as_ref()
            .map(|l| format!("{} {}", l.mode, l.outcome))
            .unwrap_or_else(|| "never".into());
        outln!(
            "{:<22} {:<6} {:>8} {:>7}  {:<27} {}",
            r.name,
            r.tier,
            r.live,
            r.deleted,
            r.cursor
                .as_deref()
                .map_or_else(|| "-".into(), |c| local_text_of(c, s.zone)),
            last
        );
    }
    if let Some(a) = &s.auth_failed {
        outln!(
            "AUTH FAILED since {} (last {}): {}",
            local_text(a.since, s.zone),
            local_text(a.last_at, s.zone),
            a.error
        );
    }
    // What could not be listed, and what could not be proven: the operator's to-do list.
    for r in &s.resources {
        if let Some(why) = &r.incomplete {
            outln!("INCOMPLETE {}: {why}", r.name);
        }
    }
    for r in &s.resources {
        if let Some(why) = &r.unproven
            && r.incomplete.is_none()
        {
            outln!("unproven {}: {why} (nothing seen missing)", r.name);
        }
    }
    if !s.details.is_empty() {
        let list: Vec<String> = s
            .details
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
    if !s.record_issues.is_empty() {
        let list: Vec<String> = s
            .record_issues
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        outln!(
            "odd records (stored as received, a field NULL in its typed column; table record_issues): {}",
            list.join(", ")
        );
    }
    let (pending, dead) = (s.outbox_pending, s.outbox_dead);
    if pending > 0 || dead > 0 {
        outln!("notifications: {pending} pending, {dead} dead");
    }
    if dead > 0 {
        for d in &s.dead {
            outln!("DEAD {} ({} tries): {}", d.id, d.attempts, d.last_error);
        }
        if dead > DEAD_SHOWN {
            outln!("... and {} more", dead - DEAD_SHOWN);
        }
        outln!("`ppsync notify retry ID...` (or --all) sends them again");
    }
    if let Some(skew) = &s.api.clock_skew_secs {
        outln!(
            "server clock: {:+} s against ours ({}, {})",
            skew.value,
            skew.how,
            local_text(skew.at, s.zone)
        );
    }
    if let Some(rate) = &s.api.rate_limit {
        outln!(
            "request rate: {} per budget window, learned: {} ({})",
            rate.value,
            rate.how,
            local_text(rate.at, s.zone)
        );
    }
    Ok(())
}
