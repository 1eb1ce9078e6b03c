//! The status model: one typed [`Snapshot`] of a mirror, read from the store at one instant, that
//! `ppsync status [--json]`, `/status`, the status page and `/metrics` all render.
//!
//! A resource is *behind* when it has never synced, or when its last success (`cursor_set_at`,
//! our clock) is more than twice its interval plus five minutes ago.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::api::Client;
use crate::deadlines::{Deadline, Sources};
use crate::resource::{RESOURCES, Resource};
use crate::store::{RunRow, Store};
use crate::time::canonical;

/// Slack allowed past twice the interval before a resource counts as behind.
const GRACE: chrono::Duration = chrono::Duration::minutes(5);
/// Recent runs listed.
const RECENT_RUNS: i64 = 20;
/// Latest record issues listed.
const RECENT_ISSUES: i64 = 20;
/// Deadlines shown: the next `DEADLINE_DAYS` days (at most the notification window), first few.
const DEADLINE_DAYS: i64 = 7;
const DEADLINES_SHOWN: usize = 20;
/// Dead notifications listed (the oldest; the count covers them all).
pub const DEAD_SHOWN: i64 = 20;

/// Everything the status renderers show, read at one instant. Its JSON is `/status`'s.
#[derive(Serialize)]
pub struct Snapshot {
    pub now: String,
    /// `now` as an instant (the page counts down to deadlines from it).
    #[serde(skip)]
    pub taken_at: DateTime<Utc>,
    /// The firm's zone (`time_zone`): the people-facing views show times in it, named; the JSON
    /// keeps UTC instants.
    pub time_zone: String,
    #[serde(skip)]
    pub zone: chrono_tz::Tz,
    pub healthy: bool,
    /// The credentials were rejected (since the first failure of the episode): nothing syncs
    /// until `ppsync auth login`. None: not known to be rejected.
    pub auth_failed: Option<crate::store::AuthFailure>,
    /// Enabled resources that are behind (or never synced).
    pub behind: Vec<String>,
    /// Enabled resources whose last complete listing could not reach every record.
    pub incomplete: Vec<String>,
    /// Firm-wide facts learned of the API (the request rate it allows, its clock's skew).
    pub api: crate::sync::ApiFacts,
    /// The daemon's request counters (absent outside a daemon: no process has counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<Requests>,
    /// The daemon's budget use (absent outside a daemon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetUse>,
    pub resources: Vec<ResourceStatus>,
    /// Records with a field that could not be read into its typed column, per resource.
    pub record_issues: BTreeMap<String, i64>,
    /// The latest of them (the record is stored; the column is NULL).
    pub recent_issues: Vec<crate::store::IssueRow>,
    /// Records waiting for their by-id read, per resource (only resources with some).
    pub details: BTreeMap<String, crate::store::DetailBacklog>,
    /// Outbox rows per `kind/status`.
    pub outbox: BTreeMap<String, i64>,
    /// Outbox rows waiting for delivery.
    pub outbox_pending: i64,
    /// Outbox rows set aside after their last allowed try (`ppsync notify retry` sends them again).
    pub outbox_dead: i64,
    /// The oldest of them.
    pub dead: Vec<crate::store::DeadRow>,
    /// Newest first.
    pub recent_runs: Vec<RunRow>,
    pub deadlines_until: String,
    pub deadlines: Vec<Deadline>,
}

#[derive(Serialize)]
pub struct Requests {
    /// Requests sent since the process started (token calls and retries included).
    pub total: u64,
    pub throttled: u64,
    pub token_refreshes: u64,
}

#[derive(Serialize)]
pub struct BudgetUse {
    pub limit: usize,
    pub in_window: usize,
    pub used_total: u64,
    pub waited_ms_total: u64,
}

#[derive(Serialize)]
pub struct ResourceStatus {
    pub name: &'static str,
    pub tier: &'static str,
    pub enabled: bool,
    /// None when disabled.
    pub interval_seconds: Option<u64>,
    pub live: i64,
    pub deleted: i64,
    pub cursor: Option<String>,
    /// When the cursor last moved (our clock): the last complete sync.
    pub last_success: Option<String>,
    /// Seconds since `last_success` (None: never synced).
    pub lag_seconds: Option<i64>,
    pub behind: bool,
    pub last_full: Option<String>,
    /// A listing was interrupted and will resume from its saved point.
    pub listing_in_flight: bool,
    /// The last complete listing could not reach records that exist: what was seen.
    pub incomplete: Option<String>,
    /// The last complete listing could not be proven complete (nothing seen missing): why.
    pub unproven: Option<String>,
    /// What has been learned of the endpoint.
    pub dialect: crate::sync::Dialect,
    pub runs: i64,
    pub records_changed_total: i64,
    /// Runs that ended skipped or failed, over the run history.
    pub failures_total: i64,
    pub last_run: Option<RunRow>,
}

impl Snapshot {
    /// Reads the snapshot of `store` as of `now`. `schedule` holds the enabled resources and
    /// their intervals (the others are listed after them, disabled); `client` is the daemon's,
    /// whose counters and budget are shown, if any.
    pub async fn read(
        store: &Store,
        schedule: &[(&'static Resource, Duration)],
        now: DateTime<Utc>,
        notify_window: Duration,
        deadlines: &Sources,
        client: Option<&Client>,
    ) -> anyhow::Result<Snapshot> {
        let intervals: HashMap<&str, Duration> =
            schedule.iter().map(|(r, d)| (r.name, *d)).collect();
        let mut totals = store.run_totals().await?;
        let mut resources = Vec::with_capacity(RESOURCES.len());
        let mut behind = Vec::new();
        let mut incomplete = Vec::new();
        let dialects: HashMap<String, String> = store.dialects().await?.into_iter().collect();
        let learned = |name: &str| -> crate::sync::Dialect {
            dialects
                .get(name)
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default()
        };
        // Enabled resources in schedule order, then the disabled ones.
        let order = schedule
            .iter()
            .map(|(r, _)| *r)
            .chain(RESOURCES.iter().filter(|r| !intervals.contains_key(r.name)));
        for res in order {
            let st = store.state(res).await?;
            let (live, deleted) = store.counts(res).await?;
            let interval = intervals.get(res.name).copied();
            let lag = st.cursor_set_at.map(|t| now - t);
            let is_behind = interval.is_some_and(|i| is_behind(lag, i));
            if is_behind {
                behind.push(res.name.to_string());
            }
            if interval.is_some() && st.incomplete.is_some() {
                incomplete.push(res.name.to_string());
            }
            let t = totals.remove(res.name);
            resources.push(ResourceStatus {
                name: res.name,
                tier: res.tier.name(),
                enabled: interval.is_some(),
                interval_seconds: interval.map(|i| i.as_secs()),
                live,
                deleted,
                cursor: st.cursor.map(canonical),
                last_success: st.cursor_set_at.map(canonical),
                lag_seconds: lag.map(|l| l.num_seconds().max(0)),
                behind: is_behind,
                last_full: st.last_full_at.map(canonical),
                listing_in_flight: st.listing.is_some(),
                incomplete: st.incomplete.clone(),
                unproven: st.unproven.clone(),
                dialect: learned(res.name),
                runs: t.as_ref().map_or(0, |t| t.runs),
                records_changed_total: t.as_ref().map_or(0, |t| t.records_changed),
                failures_total: t.as_ref().map_or(0, |t| t.failures),
                last_run: t.map(|t| t.last),
            });
        }
        let outbox = store.outbox_counts().await?;
        let by_status = |status: &str| -> i64 {
            outbox
                .iter()
                .filter(|(k, _)| k.rsplit('/').next() == Some(status))
                .map(|(_, n)| *n)
                .sum()
        };
        let outbox_pending = by_status("pending");
        let outbox_dead = by_status("dead");
        let dead = if outbox_dead > 0 {
            store.outbox_dead_rows(DEAD_SHOWN).await?
        } else {
            Vec::new()
        };
        let window = chrono::Duration::from_std(notify_window)
            .unwrap_or(chrono::Duration::days(DEADLINE_DAYS))
            .min(chrono::Duration::days(DEADLINE_DAYS));
        let until = now + window;
        let zone = deadlines.zone;
        let mut deadlines = crate::deadlines::list(
            store,
            deadlines,
            deadlines.local_date(now),
            deadlines.local_date(until),
        )
        .await?;
        deadlines.truncate(DEADLINES_SHOWN);
        let api = dialects
            .get(crate::sync::dialect::API)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let (requests, budget) = match client {
            Some(c) => {
                let b = c.budget();
                (
                    Some(Requests {
                        total: c.requests_made(),
                        throttled: c.throttled(),
                        token_refreshes: c.refreshes(),
                    }),
                    Some(BudgetUse {
                        limit: b.limit(),
                        in_window: b.in_window().await,
                        used_total: b.total_used(),
                        waited_ms_total: b.total_waited_ms(),
                    }),
                )
            }
            None => (None, None),
        };
        let auth_failed = store.auth_failure().await?;
        Ok(Snapshot {
            now: canonical(now),
            taken_at: now,
            time_zone: zone.name().to_string(),
            zone,
            healthy: behind.is_empty() && incomplete.is_empty() && auth_failed.is_none(),
            auth_failed,
            behind,
            incomplete,
            api,
            requests,
            budget,
            resources,
            record_issues: store.issue_counts().await?,
            recent_issues: store.issues(RECENT_ISSUES).await?,
            details: store.detail_backlog().await?,
            outbox,
            outbox_pending,
            outbox_dead,
            dead,
            recent_runs: store.runs(RECENT_RUNS).await?,
            deadlines_until: canonical(until),
            deadlines,
        })
    }
}

/// The enabled resources that are behind, and those whose last complete listing could not reach
/// every record: the snapshot's `behind` and `incomplete` alone, read from the sync state only
/// (`/healthz` is polled often; counting every table each time would be wasted).
pub async fn problems(
    store: &Store,
    schedule: &[(&'static Resource, Duration)],
    now: DateTime<Utc>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let (mut behind, mut incomplete) = (Vec::new(), Vec::new());
    for (res, interval) in schedule {
        let st = store.state(res).await?;
        if is_behind(st.cursor_set_at.map(|t| now - t), *interval) {
            behind.push(res.name.to_string());
        }
        if st.incomplete.is_some() {
            incomplete.push(res.name.to_string());
        }
    }
    Ok((behind, incomplete))
}

/// Why a mirror is not ready to be read (`/readyz`): enabled resources whose first backfill has
/// not finished, and those that synced once but are behind now. Both empty: ready.
pub struct Unready {
    pub first_backfill: Vec<String>,
    pub behind: Vec<String>,
}

/// What `/readyz` answers, read from the sync state only (polled often, like `/healthz`). An
/// incomplete listing does not make a mirror unready: what it holds is still current.
pub async fn unready(
    store: &Store,
    schedule: &[(&'static Resource, Duration)],
    now: DateTime<Utc>,
) -> anyhow::Result<Unready> {
    let mut u = Unready {
        first_backfill: Vec::new(),
        behind: Vec::new(),
    };
    for (res, interval) in schedule {
        let st = store.state(res).await?;
        match st.cursor_set_at {
            None => u.first_backfill.push(res.name.to_string()),
            Some(t) if is_behind(Some(now - t), *interval) => u.behind.push(res.name.to_string()),
            Some(_) => {}
        }
    }
    Ok(u)
}

/// Behind: never synced, or the last success is older than twice the interval plus the grace.
fn is_behind(lag: Option<chrono::Duration>, interval: Duration) -> bool {
    let interval = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX / 4);
    match lag {
        None => true,
        Some(lag) => lag > interval * 2 + GRACE,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A daemon's snapshot whose every text field carries markup and quoting (the renderers'
    /// tests check it comes out escaped).
    pub(crate) fn odd() -> Snapshot {
        let odd = "<b>\"odd\"</b> & \\ \n";
        let run = RunRow {
            id: 1,
            cycle_id: None,
            resource: "matters".into(),
            mode: "incremental".into(),
            started_at: "2026-12-01T10:00:00Z".into(),
            finished_at: None,
            requests: 3,
            records_seen: 2,
            records_changed: 1,
            records_deleted: 0,
            outcome: "failed".into(),
            error: Some(odd.into()),
        };
        Snapshot {
            now: "2026-12-01T10:00:00Z".into(),
            taken_at: chrono::DateTime::from_timestamp(1_764_583_200, 0).unwrap(),
            time_zone: "UTC".into(),
            zone: chrono_tz::Tz::UTC,
            healthy: false,
            auth_failed: None,
            behind: vec!["matters".into()],
            incomplete: vec![],
            api: Default::default(),
            requests: Some(Requests {
                total: 5,
                throttled: 1,
                token_refreshes: 0,
            }),
            budget: Some(BudgetUse {
                limit: 100,
                in_window: 5,
                used_total: 5,
                waited_ms_total: 1500,
            }),
            resources: vec![ResourceStatus {
                name: "matters",
                tier: "fast",
                enabled: true,
                interval_seconds: Some(900),
                live: 7,
                deleted: 1,
                cursor: None,
                last_success: None,
                lag_seconds: None,
                behind: true,
                last_full: None,
                listing_in_flight: false,
                incomplete: Some(odd.into()),
                unproven: None,
                dialect: Default::default(),
                runs: 1,
                records_changed_total: 1,
                failures_total: 1,
                last_run: Some(run.clone()),
            }],
            record_issues: [("matters".to_string(), 2)].into(),
            recent_issues: vec![crate::store::IssueRow {
                resource: "matters".into(),
                record_id: odd.into(),
                field: odd.into(),
                problem: odd.into(),
                first_seen: "2026-12-01T09:00:00Z".into(),
                last_seen: "2026-12-01T09:00:00Z".into(),
            }],
            details: [(
                "matters".to_string(),
                crate::store::DetailBacklog {
                    queued: 4,
                    failing: 1,
                },
            )]
            .into(),
            // The kind holds no `/`: it ends where the status starts.
            outbox: [(format!("{}/dead", odd.replace('/', "|")), 1)].into(),
            outbox_pending: 0,
            outbox_dead: 1,
            dead: vec![crate::store::DeadRow {
                id: odd.into(),
                kind: "task.created".into(),
                attempts: 3,
                last_error: odd.into(),
            }],
            recent_runs: vec![run],
            deadlines_until: "2026-12-08T10:00:00Z".into(),
            deadlines: Sources::default().of_record(
                "tasks",
                &serde_json::json!({"id": "t1", "due_date": "2026-12-02T10:00:00", "subject": odd,
                    "matter_ref": {"id": "m1", "display_name": odd},
                    "account_ref": {"id": "a1", "display_name": odd}}),
            ),
        }
    }

    #[test]
    fn behind_after_twice_the_interval_plus_grace() {
        let q = Duration::from_secs(900);
        assert!(is_behind(None, q));
        assert!(!is_behind(Some(chrono::Duration::minutes(35)), q));
        assert!(is_behind(
            Some(chrono::Duration::minutes(35) + chrono::Duration::seconds(1)),
            q
        ));
    }
}
