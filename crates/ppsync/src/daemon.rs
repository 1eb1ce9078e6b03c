//! `ppsync run`: every resource on its tier, a daily reconciliation, notifications delivered, until
//! shutdown. Time comes from the engine's `Clock`, so a simulated day runs in seconds in the demo and
//! the tests.
//!
//! Invariants:
//! - Cycles never overlap: one loop runs them one after another; ticks missed while a cycle ran (or
//!   while the process was down) coalesce into the next cycle.
//! - A resource is due `interval` after its last success (kept in the database, so a restart knows);
//!   one that failed is retried at the next cycle while the others go on.
//! - Reconciliation runs one resource at a time on background budget, and due scheduled work goes
//!   first between its resources: it never starves the 15-minute tier.
//! - Shutdown stops at a page boundary: the page in flight commits or rolls back, never half.
//! - Notifications are delivered on a task of their own ([`Delivery`]), woken after each pass and
//!   deadline scan: a slow, hanging or failing sink never delays a cycle. It stops with the
//!   daemon, killing a command in flight (that notification stays pending).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::notify::{Delivery, Dispatcher, NotifyConfig};
use crate::resource::Resource;
use crate::sync::{Engine, PassReport};

/// Daemon settings (from the config).
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Enabled resources and their intervals, in sync order (most important first).
    pub schedule: Vec<(&'static Resource, Duration)>,
    /// Daily reconciliation time (UTC); None disables it.
    pub reconcile_at: Option<NaiveTime>,
    pub notify: NotifyConfig,
    /// Stop once the clock reaches this instant (the demo's simulated day).
    pub stop_at: Option<DateTime<Utc>>,
}

/// What the daemon did, for the demo and tests.
#[derive(Debug, Default)]
pub struct DaemonSummary {
    /// The latest passes, at most [`KEPT_CYCLES`]: a daemon runs for months, and every pass it
    /// kept would stay in memory until it stops (the run history has them all).
    pub cycles: Vec<PassReport>,
    pub reconciliations: u32,
    /// Notifications delivered by the daemon's delivery task.
    pub delivered: u64,
    /// By-id renderings stored (records whose list leaves fields out).
    pub details: u64,
    /// Requests the by-id reads made.
    pub detail_requests: u64,
    /// When the by-id queue was first found empty after having held records (the first
    /// backfill's backlog worked off).
    pub details_drained_at: Option<DateTime<Utc>>,
}

/// How many passes a [`DaemonSummary`] keeps: over a week of cycles (96 a day, and the daily
/// reconciliation's one per resource).
pub const KEPT_CYCLES: usize = 1024;

impl DaemonSummary {
    /// Keeps `report`, dropping the oldest half once [`KEPT_CYCLES`] are kept.
    fn keep(&mut self, report: PassReport) {
        if self.cycles.len() >= KEPT_CYCLES {
            self.cycles.drain(..KEPT_CYCLES / 2);
        }
        self.cycles.push(report);
    }
}

/// Status shared with the HTTP endpoint.
pub type Observer = std::sync::Arc<dyn Fn(&PassReport) + Send + Sync>;

pub struct Daemon {
    pub engine: Engine,
    pub cfg: DaemonConfig,
    pub shutdown: CancellationToken,
    pub observer: Option<Observer>,
}

impl Daemon {
    pub async fn run(&self) -> anyhow::Result<DaemonSummary> {
        let engine = &self.engine;
        let clock = engine.clock.clone();
        let background = Engine {
            client: engine.client.background(),
            ..engine.clone()
        };
        let mut summary = DaemonSummary::default();
        let mut next = self.initial_due().await?;
        // Its first round at once: what an earlier run left pending.
        let delivery = Delivery::spawn(
            Dispatcher::new(self.cfg.notify.clone())?,
            engine.store.clone(),
            clock.clone(),
            self.shutdown.child_token(),
        );
        let mut next_reconcile = self.cfg.reconcile_at.map(|t| next_at(clock.now(), t));
        // The last firm-local day the deadlines were scanned (each start scans again).
        let mut scanned_day = None;
        let scheduled: Vec<&'static Resource> = self.cfg.schedule.iter().map(|(r, _)| *r).collect();
        let details = engine.detail_resources(&scheduled);
        let detail_names: Vec<&str> = details.iter().map(|r| r.name).collect();
        tracing::info!(resources = self.cfg.schedule.len(), "daemon started");
        // Sources changed while it was stopped (the zone, a field) rewrite the deadlines' table now.
        engine.refresh_deadlines().await;
        loop {
            if self.stopping(clock.now()) {
                break;
            }
            self.scheduled_cycle(&mut next, &mut summary, &delivery)
                .await;
            if let Some(at) = next_reconcile
                && clock.now() >= at
            {
                tracing::info!("reconciliation started");
                for (res, _) in &self.cfg.schedule {
                    if self.stopping(clock.now()) {
                        break;
                    }
                    // Scheduled work that fell due meanwhile goes first.
                    self.scheduled_cycle(&mut next, &mut summary, &delivery)
                        .await;
                    let report = background.pass(&[*res], true, "reconcile").await;
                    delivery.wake();
                    self.observe(&report);
                    summary.keep(report);
                }
                summary.reconciliations += 1;
                next_reconcile = Some(at + chrono::Duration::days(1))
                    .map(|n| n.max(next_at(clock.now(), at.time())));
            }
            // By-id reads in the time left before the next scheduled work: they never send a
            // request that would wait for the budget past it.
            let mut details_wake = None;
            if !details.is_empty() {
                let mut until = next.values().min().copied();
                if let Some(r) = next_reconcile {
                    until = Some(until.map_or(r, |u| u.min(r)));
                }
                if let Some(stop) = self.cfg.stop_at {
                    until = Some(until.map_or(stop, |u| u.min(stop)));
                }
                let report = background.fetch_details(&details, until).await;
                if report.left == 0
                    && summary.details_drained_at.is_none()
                    && (report.stored > 0 || summary.details > 0)
                {
                    summary.details_drained_at = Some(clock.now());
                }
                summary.details += report.stored;
                summary.detail_requests += report.requests;
                if let Some(e) = &report.error {
                    tracing::warn!(error = %e, left = report.left, "by-id reads stopped for now");
                }
                if !report.deferred && report.error.is_none() {
                    // Records whose read failed come back when their backoff ends.
                    details_wake = engine
                        .store
                        .next_detail_at(&detail_names)
                        .await
                        .ok()
                        .flatten();
                }
            }
            let now = clock.now();
            if let Err(e) = crate::notify::deadline_scan(
                &engine.store,
                now,
                &engine.cfg.deadlines,
                &mut scanned_day,
            )
            .await
            {
                tracing::error!(error = %format!("{e:#}"), "deadline scan failed");
            }
            delivery.wake();
            // Sleep until the next resource is due (or the reconciliation, or the stop).
            let mut wake = next
                .values()
                .min()
                .copied()
                .unwrap_or(now + chrono::Duration::minutes(15));
            if let Some(r) = next_reconcile {
                wake = wake.min(r);
            }
            if let Some(stop) = self.cfg.stop_at {
                wake = wake.min(stop);
            }
            if let Some(d) = details_wake {
                // Never sooner than a second from now: a record due already waits for budget.
                wake = wake.min(d.max(now + chrono::Duration::seconds(1)));
            }
            let wait = (wake - now).to_std().unwrap_or_default();
            if !wait.is_zero() {
                tokio::select! {
                    _ = clock.sleep(wait) => {}
                    _ = self.shutdown.cancelled() => {}
                }
            }
        }
        summary.delivered = delivery.stop().await;
        tracing::info!(cycles = summary.cycles.len(), "daemon stopped");
        Ok(summary)
    }

    fn stopping(&self, now: DateTime<Utc>) -> bool {
        self.shutdown.is_cancelled() || self.cfg.stop_at.is_some_and(|s| now >= s)
    }

    fn observe(&self, report: &PassReport) {
        if let Some(o) = &self.observer {
            o(report);
        }
    }

    /// One pass over every resource that is due, most important tier first.
    async fn scheduled_cycle(
        &self,
        next: &mut HashMap<&'static str, DateTime<Utc>>,
        summary: &mut DaemonSummary,
        delivery: &Delivery,
    ) {
        let now = self.engine.clock.now();
        let due: Vec<&'static Resource> = self
            .cfg
            .schedule
            .iter()
            .filter(|(r, _)| next.get(r.name).is_none_or(|t| *t <= now))
            .map(|(r, _)| *r)
            .collect();
        if due.is_empty() {
            return;
        }
        let report = self.engine.pass(&due, false, "scheduled").await;
        // What the pass committed may have enqueued notifications.
        delivery.wake();
        if let Some(f) = &report.fatal {
            tracing::error!(error = %f, "pass stopped");
        }
        let retry = self.shortest_interval();
        for res in &due {
            let interval = self.interval(res);
            let ok = report
                .outcomes
                .iter()
                .any(|o| o.resource == res.name && o.error.is_none());
            // Ticks sit on a grid (every 15 minutes on the quarter hour, hourly on the hour, daily
            // at midnight UTC), so the tiers line up into shared cycles, and every tick missed
            // while this one ran coalesces into the next.
            let mut due =
                crate::time::grid_next(self.engine.clock.now(), if ok { interval } else { retry });
            // The API asked for a longer wait than a pass waits out: nothing before it.
            if let Some(t) = report.not_before.filter(|_| !ok) {
                due = due.max(t);
            }
            next.insert(res.name, due);
        }
        self.observe(&report);
        summary.keep(report);
    }

    fn interval(&self, res: &Resource) -> chrono::Duration {
        let d = self
            .cfg
            .schedule
            .iter()
            .find(|(r, _)| r.name == res.name)
            .map(|(_, d)| *d);
        chrono::Duration::from_std(d.unwrap_or(Duration::from_secs(900)))
            .unwrap_or(chrono::Duration::minutes(15))
    }

    fn shortest_interval(&self) -> chrono::Duration {
        self.cfg
            .schedule
            .iter()
            .map(|(r, _)| self.interval(r))
            .min()
            .unwrap_or(chrono::Duration::minutes(15))
    }

    /// Each resource is due `interval` after its cursor last moved (now, if never).
    async fn initial_due(&self) -> anyhow::Result<HashMap<&'static str, DateTime<Utc>>> {
        let now = self.engine.clock.now();
        let mut next = HashMap::new();
        for (res, _) in &self.cfg.schedule {
            let st = self.engine.store.state(res).await?;
            let due = match (st.cursor_set_at, st.listing) {
                (Some(t), None) => crate::time::grid_next(t, self.interval(res)),
                _ => now,
            };
            next.insert(res.name, due);
        }
        Ok(next)
    }
}

/// The next instant at `time` (UTC) strictly after `now`.
pub fn next_at(now: DateTime<Utc>, time: NaiveTime) -> DateTime<Utc> {
    let today = now.date_naive().and_time(time).and_utc();
    if today > now {
        today
    } else {
        today + chrono::Duration::days(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_keeps_the_latest_passes_only() {
        let mut s = DaemonSummary::default();
        for cycle in 0..5000 {
            s.keep(PassReport {
                cycle,
                ..Default::default()
            });
            assert!(s.cycles.len() <= KEPT_CYCLES);
        }
        assert!(s.cycles.len() >= KEPT_CYCLES / 2);
        let kept: Vec<i64> = s.cycles.iter().map(|c| c.cycle).collect();
        assert_eq!(kept.last(), Some(&4999));
        assert!(
            kept.windows(2).all(|w| w[1] == w[0] + 1),
            "the latest, in order"
        );
    }

    #[test]
    fn next_reconciliation_time() {
        let t = |s: &str| crate::time::parse_api_time(s).unwrap();
        let three = NaiveTime::from_hms_opt(3, 0, 0).unwrap();
        assert_eq!(
            next_at(t("2026-11-02T14:00:00"), three),
            t("2026-11-03T03:00:00")
        );
        assert_eq!(
            next_at(t("2026-11-03T02:59:00"), three),
            t("2026-11-03T03:00:00")
        );
        assert_eq!(
            next_at(t("2026-11-03T03:00:00"), three),
            t("2026-11-04T03:00:00")
        );
    }
}
