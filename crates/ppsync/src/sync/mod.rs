//! The engine: one pass over a set of resources, each listed from its cursor (or fully), its pages
//! streamed into the store, the cursor moved in the transaction that commits the last records.
//!
//! Invariants:
//! - A cursor moves only in the transaction that holds the records it covers, and only to the
//!   server's `Date` at the start of the listing (the signpost, clamped to our clock when it is
//!   further ahead than `max_clock_skew`), never past what was received.
//! - Every query reaches back by the overlap; upserts are idempotent, so re-reading is free.
//! - A listing is complete only when proven ([`paging`]); records are marked deleted only after a
//!   complete listing, and each deletion candidate of a resource with a by-id read is confirmed
//!   there first (404 = gone); a candidate that still exists stops all marking for the resource.
//! - Time comes from the `Clock`; `sync` builds neither HTTP requests nor SQL.
//!
//! Here: the [`Engine`] and a pass over resources. A resource's mode is chosen by `plan`; its
//! listing runs as a `listing_run::ListingRun`, which fetches pages (`fetch`, the page after
//! requested ahead by `prefetch`), decides where to go after each (`paging`) and ends with
//! `deletions`; what a pass did is in `report`.

mod deletions;
pub mod details;
pub mod dialect;
mod fetch;
mod listing_run;
pub mod paging;
mod plan;
mod prefetch;
mod report;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{FutureExt as _, StreamExt as _};

use crate::api::Client;
use crate::resource::Resource;
use crate::store::{self, RunStats, Store};
use crate::time::{Clock, canonical};
pub use details::DetailReport;
pub use dialect::{ApiFacts, Dialect};
use listing_run::ListingRun;
pub use paging::Mode;
pub use report::{Outcome, PassReport, ProgressSink};

/// Engine settings (from the config).
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// How far every incremental query reaches back before the cursor.
    pub overlap: Duration,
    /// A cursor older than this triggers a full re-listing instead of a long catch-up.
    pub max_catch_up: Duration,
    /// `$top` of every listing (lowered to an endpoint's proven cap).
    pub page_size: u32,
    /// Most records one transaction holds when pages commit together.
    pub commit_records: u64,
    /// How long a transaction holding pages stays open waiting for the next page's answer. If the
    /// answer comes within it, that page joins the same transaction (up to `commit_records`): a
    /// backfill from a fast server commits every few pages instead of every page, which on
    /// SQLite spares rewriting most of the id index (random GUIDs) at every commit. Kept short
    /// because the request may need the database: a token refresh commits the rotated token on
    /// another connection, which waits for this transaction (well within its 30 s busy timeout).
    pub commit_wait: Duration,
    /// First run: look back this far instead of a full backfill (None = full backfill).
    pub initial_lookback: Option<Duration>,
    /// Tries of a page whose body failed (cut off, HTML) before the resource is skipped.
    pub max_page_attempts: u32,
    /// A reconciliation that would mark more than this share (and more than 20 records) of a
    /// resource deleted is refused as suspicious.
    pub max_delete_fraction: f64,
    /// The firm's zone and where deadlines come from (matters' are notified at lead times).
    pub deadlines: crate::deadlines::Sources,
    /// A server `Date` further ahead of our clock than this is not trusted as a cursor.
    pub max_clock_skew: Duration,
    /// Deletion candidates confirmed by id per listing (more: a sample of this many).
    pub confirm_deletions: u32,
    /// Resources whose new and changed records are also read by id (`details`), by name.
    pub details: Vec<&'static str>,
}

impl SyncConfig {
    /// Whether new and changed records of `res` are read by id too.
    pub fn details(&self, res: &Resource) -> bool {
        self.details.contains(&res.name)
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            overlap: Duration::from_secs(15 * 60),
            max_catch_up: Duration::from_secs(7 * 24 * 3600),
            page_size: 2500,
            commit_records: 25_000,
            commit_wait: Duration::from_millis(50),
            initial_lookback: None,
            max_page_attempts: 4,
            max_delete_fraction: 0.5,
            deadlines: crate::deadlines::Sources::default(),
            max_clock_skew: Duration::from_secs(15 * 60),
            confirm_deletions: 25,
            details: crate::resource::RESOURCES
                .iter()
                .filter(|r| r.details)
                .map(|r| r.name)
                .collect(),
        }
    }
}

#[derive(Clone)]
pub struct Engine {
    pub client: Client,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub cfg: SyncConfig,
    pub progress: Option<Arc<dyn ProgressSink>>,
    /// Cancelled on shutdown: the listing stops at the next page boundary, its resume point saved.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The `ppsync run` instance this engine works for (None: the CLI), kept in the cycle history.
    pub instance: Option<Arc<str>>,
}

/// Why a resource's run stopped early.
enum Stop {
    /// Skip this resource this pass.
    Skip(String),
    /// The listing ended, its records and cursor in, but it could not list everything.
    Incomplete(String),
    /// Stop the whole pass (the API unreachable, the database gone).
    Fatal(String),
    /// Stop the whole pass: the credentials are rejected (an auth_failed episode).
    AuthDead(String),
    /// The API asked us to wait longer than we wait: end the pass here.
    Wait {
        message: String,
        until: DateTime<Utc>,
    },
}

impl From<store::Error> for Stop {
    fn from(e: store::Error) -> Self {
        // A value the database refuses is this resource's problem: the others go on. Anything
        // else (the database gone, the disk full) stops the pass.
        if e.is_data() {
            Stop::Skip(format!("{e} (this resource is skipped this pass)"))
        } else if e.is_contention() {
            Stop::Skip(format!(
                "{e} (another writer was in the way: the next pass retries)"
            ))
        } else {
            Stop::Fatal(e.to_string())
        }
    }
}

impl Engine {
    /// One pass over `resources` (in the given order). `full` forces complete listings.
    pub async fn pass(
        &self,
        resources: &[&'static Resource],
        full: bool,
        trigger: &str,
    ) -> PassReport {
        let mut report = PassReport::default();
        let before = self.client.requests_made();
        let cycle = match self
            .store
            .start_cycle(trigger, self.instance.as_deref(), self.clock.now())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                report.fatal = Some(e.to_string());
                return report;
            }
        };
        report.cycle = cycle;
        // A mirror with no record a deadline comes from has no deadline: noted so (PostgreSQL), its
        // pages keep `deadline_rows` from the first on, and a first backfill ends without a
        // whole rewrite.
        let sources = &self.cfg.deadlines;
        let tables: Vec<&str> = crate::deadlines::RESOURCES
            .into_iter()
            .filter(|r| sources.covers(r))
            .collect();
        if let Err(e) = self
            .store
            .seed_deadline_rows(&sources.fingerprint(), &tables, self.clock.now())
            .await
        {
            tracing::warn!(error = %e, "deadline_rows not seeded: the pass's end rewrites it");
        }
        // A first backfill into PostgreSQL lists several resources at once (each its own table
        // and connection), so the server works while ppsync waits on another resource's round
        // trip. It fans out once the first resource's backfill is in: until the API has answered
        // a whole listing, one request at a time meets a 429 or a dead token, not three. SQLite
        // has one writer and takes them one by one, as does any pass but a first backfill (a
        // few requests each, where one at a time costs nothing). A resource starts as soon as any
        // slot frees (not after those started before it end: a big listing must not hold idle
        // slots); the report keeps the resources' order.
        let pg = self.store.backend() == store::Backend::Postgres;
        let mut at_once = 1;
        // Set when a resource ends the pass: no further resource starts (those under way finish).
        let mut stop = false;
        let mut started = 0usize;
        let mut listings = futures::stream::FuturesUnordered::new();
        // (position in `resources`, outcome), in the order they ended.
        let mut ended: Vec<(usize, Outcome)> = Vec::with_capacity(resources.len());
        // On PostgreSQL `deadline_rows` is rewritten as soon as the resources deadlines come from
        // are done, beside the other resources' listings (it reads only those five tables); on
        // SQLite, whose one writer the listings hold, after the last one.
        let mut deadlines: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
        let mut deadlines_done = false;
        loop {
            while listings.len() < at_once
                && started < resources.len()
                && !stop
                && !self.shutdown.is_cancelled()
            {
                let at = started;
                listings.push(
                    self.sync_resource(cycle, resources[at], full)
                        .map(move |done| (at, done)),
                );
                started += 1;
            }
            let next = match deadlines.as_mut().filter(|_| !deadlines_done) {
                Some(rewrite) => tokio::select! {
                    next = listings.next() => next,
                    () = rewrite => {
                        deadlines_done = true;
                        continue;
                    }
                },
                None => listings.next().await,
            };
            let Some((at, (outcome, end))) = next else {
                break;
            };
            if let Some(p) = &self.progress {
                p.finish(outcome.resource, &outcome);
            }
            if pg && outcome.mode == Mode::Backfill && outcome.error.is_none() {
                at_once = PG_RESOURCES_AT_ONCE;
            }
            ended.push((at, outcome));
            match end {
                None => {}
                Some(PassEnd::Fatal(f)) => {
                    stop = true;
                    report.fatal.get_or_insert(f);
                }
                Some(PassEnd::AuthDead(f)) => {
                    stop = true;
                    report.fatal.get_or_insert(f);
                    report.auth_failed = true;
                }
                Some(PassEnd::Wait(until)) => {
                    stop = true;
                    report.not_before = Some(report.not_before.map_or(until, |u| u.max(until)));
                }
            }
            if pg
                && deadlines.is_none()
                && crate::deadlines::RESOURCES.iter().all(|d| {
                    ended.iter().any(|(_, o)| o.resource == *d)
                        || !resources.iter().any(|r| r.name == *d)
                })
            {
                deadlines = Some(Box::pin(self.refresh_deadlines()));
            }
        }
        ended.sort_by_key(|(at, _)| *at);
        report.outcomes.extend(ended.into_iter().map(|(_, o)| o));
        if let Some(until) = report.not_before.filter(|_| report.fatal.is_none()) {
            for rest in &resources[started..] {
                report.outcomes.push(Outcome {
                    resource: rest.name,
                    mode: Mode::Incremental,
                    stats: RunStats::default(),
                    error: Some(format!(
                        "{}: not reached: the API asked to wait until {}",
                        rest.name,
                        canonical(until)
                    )),
                    incomplete: false,
                });
            }
        }
        report.requests = self.client.requests_made() - before;
        // The last answers go into the firm's request ledger now, not with the next request.
        self.client.budget().flush().await;
        match deadlines {
            Some(rewrite) if !deadlines_done => rewrite.await,
            Some(_) => {}
            None => self.refresh_deadlines().await,
        }
        let outcome = match report.exit_code() {
            0 => "ok",
            1 => "partial",
            _ => "failed",
        };
        if let Err(e) = self
            .store
            .finish_cycle(cycle, self.clock.now(), report.requests, outcome)
            .await
        {
            report.fatal.get_or_insert(e.to_string());
        }
        if let Err(e) = self.note_credentials(&report).await {
            tracing::warn!(error = %format!("{e:#}"), "the credentials' state was not saved");
        }
        if let Err(e) = self.persist_rate().await {
            tracing::warn!(error = %e, "the learned request rate was not saved");
        }
        report
    }

    /// Rewrites `deadline_rows` (the `upcoming_deadlines` view) whole when it was written under
    /// other sources (zone, fields) or never: each page keeps it current otherwise, in the
    /// records' transaction. Failing leaves the old rows, with a warning: the records are in, and
    /// the next pass tries again.
    pub async fn refresh_deadlines(&self) {
        let now = self.clock.now();
        let started = std::time::Instant::now();
        match crate::deadlines::refresh(&self.store, &self.cfg.deadlines, now, false).await {
            Ok(Some(n)) => {
                let ms = started.elapsed().as_millis() as u64;
                tracing::debug!(rows = n, ms, "deadline_rows rewritten");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "deadline_rows not rewritten: the next pass tries again")
            }
        }
    }

    /// An `auth_failed` episode opens at the first pass stopped by rejected credentials (its one
    /// notification enqueued with it) and ends at the first pass the API answers.
    async fn note_credentials(&self, report: &PassReport) -> Result<(), store::Error> {
        if report.auth_failed {
            let error = report.fatal.clone().unwrap_or_default();
            let now = self.clock.now();
            let (episode, opened) = self
                .store
                .record_auth_failure(now, &error, |since| {
                    crate::notify::auth_failed(since, &error, now)
                })
                .await?;
            if opened {
                // The pass's own error already says what failed and the fix (the CLI's one line).
                tracing::info!(since = %canonical(episode.since), "auth_failed: the credentials were rejected; notifying once");
            }
        } else if report.outcomes.iter().any(|o| o.error.is_none())
            && self.store.clear_auth_failure().await?
        {
            tracing::info!("the credentials are accepted again: auth_failed cleared");
        }
        Ok(())
    }

    /// Syncs one resource. Returns its outcome, and why the pass must end, if it must.
    async fn sync_resource(
        &self,
        cycle: i64,
        res: &'static Resource,
        full: bool,
    ) -> (Outcome, Option<PassEnd>) {
        let mut stats = RunStats::default();
        let mut mode = Mode::Incremental;
        let result = self
            .run_resource(cycle, res, full, &mut stats, &mut mode)
            .await;
        let mut incomplete = false;
        let (error, end) = match result {
            Ok(()) => (None, None),
            Err(Stop::Skip(e)) => (Some(e), None),
            Err(Stop::Incomplete(e)) => {
                incomplete = true;
                (Some(e), None)
            }
            Err(Stop::Fatal(e)) => (Some(e.clone()), Some(PassEnd::Fatal(e))),
            Err(Stop::AuthDead(e)) => (Some(e.clone()), Some(PassEnd::AuthDead(e))),
            Err(Stop::Wait { message, until }) => (Some(message), Some(PassEnd::Wait(until))),
        };
        if let Some(e) = &error {
            if incomplete {
                tracing::error!(resource = res.name, error = %e, "resource listed incompletely");
            } else {
                tracing::warn!(resource = res.name, error = %e, "resource not synced this pass");
            }
        }
        let outcome = Outcome {
            resource: res.name,
            mode,
            stats,
            error,
            incomplete,
        };
        (outcome, end)
    }

    /// What is known of the endpoint (unknown when nothing, or when the stored facts do not
    /// read: they are learned again).
    pub async fn dialect(&self, res: &Resource) -> Result<Dialect, store::Error> {
        Ok(self
            .store
            .dialect(res.name)
            .await?
            .and_then(|s| match serde_json::from_str(&s) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(resource = res.name, error = %e, "stored dialect unreadable: learning it again");
                    None
                }
            })
            .unwrap_or_default())
    }

    async fn run_resource(
        &self,
        cycle: i64,
        res: &'static Resource,
        full: bool,
        stats: &mut RunStats,
        mode_out: &mut Mode,
    ) -> Result<(), Stop> {
        let state = self.store.state(res).await?;
        let now = self.clock.now();
        let mut listing = plan::plan(res, &state, full, now, &self.cfg);
        *mode_out = listing.mode;
        let run = self
            .store
            .start_run(cycle, res, listing.mode.name(), now)
            .await?;
        if listing.first_run == 0 {
            listing.first_run = run;
        }
        if let Some(p) = &self.progress {
            p.start(res.name, listing.mode);
        }
        let dialect = self.dialect(res).await?;
        listing.with_issues = std::sync::Arc::new(self.store.issue_ids(res).await?);
        listing.details = self.cfg.details(res) && dialect.details_needed(now);
        let tally = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut r = ListingRun::new(self, res, run, listing, dialect);
        let result = crate::api::tallied(tally.clone(), r.list()).await;
        *mode_out = r.mode;
        *stats = std::mem::take(&mut r.stats);
        stats.requests = tally.load(std::sync::atomic::Ordering::Relaxed);
        let (outcome, err) = match &result {
            Ok(()) => ("ok", None),
            Err(Stop::Skip(e)) => ("skipped", Some(e.as_str())),
            Err(Stop::Incomplete(e)) => ("incomplete", Some(e.as_str())),
            Err(Stop::Fatal(e) | Stop::AuthDead(e)) => ("failed", Some(e.as_str())),
            Err(Stop::Wait { message, .. }) => ("skipped", Some(message.as_str())),
        };
        self.store
            .finish_run(run, self.clock.now(), stats, outcome, err)
            .await?;
        result
    }

    /// The firm-wide facts.
    pub async fn api_facts(&self) -> Result<ApiFacts, store::Error> {
        Ok(self
            .store
            .dialect(dialect::API)
            .await?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default())
    }

    /// Saves the request rate the budget lowered itself to after 429s without `Retry-After`.
    async fn persist_rate(&self) -> Result<(), store::Error> {
        let Some(limit) = self.client.budget().take_lowered() else {
            return Ok(());
        };
        let now = self.clock.now();
        let mut facts = self.api_facts().await?;
        facts.rate_limit = Some(dialect::Fact {
            value: limit as u32,
            how: "429 answers without Retry-After: the budget lowered itself".into(),
            at: now,
        });
        let json = serde_json::to_string(&facts).expect("facts serialize");
        self.store.set_dialect(dialect::API, &json, now).await
    }
}

/// Resources a pass lists at once into PostgreSQL (see `Engine::pass`).
const PG_RESOURCES_AT_ONCE: usize = 3;

/// Why a pass ends before its last resource.
enum PassEnd {
    Fatal(String),
    AuthDead(String),
    Wait(DateTime<Utc>),
}
