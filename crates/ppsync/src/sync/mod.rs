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

pub mod details;
pub mod dialect;
pub mod paging;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::api::{self, Action, Client};
use crate::record::{self, Row};
use crate::resource::{Incremental, Resource};
use crate::store::{self, RunStats, Store};
use crate::time::{Clock, canonical, parse_api_time};
pub use details::DetailReport;
pub use dialect::{ApiFacts, Dialect};
use dialect::{QueryOption, Support};
pub use paging::Mode;
use paging::{Expect, Listing, PageInfo, Phase, Sent, Step};

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
    /// Tasks and events due within this window are notified.
    pub notify_window: Duration,
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
            notify_window: Duration::from_secs(30 * 86400),
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

/// Rows written per batch inside a page's transaction.
const WRITE_BATCH: usize = 1000;
/// Most deletions a proven listing of a list without a by-id read marks at once.
const NO_BY_ID_MARK_LIMIT: i64 = 20;

/// What happened to one resource in a pass.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub resource: &'static str,
    pub mode: Mode,
    pub stats: RunStats,
    /// None when the resource synced; the reason otherwise.
    pub error: Option<String>,
    /// The listing could not list the resource completely (the records it did list are in):
    /// `error` says what was seen.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
}

/// A pass's result: per-resource outcomes, and a fatal error that stopped it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PassReport {
    pub cycle: i64,
    pub outcomes: Vec<Outcome>,
    pub fatal: Option<String>,
    pub requests: u64,
    /// The API asked us to wait until then (a `Retry-After` longer than the longest wait): the
    /// pass ended early and the next should not start before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
}

impl PassReport {
    /// product.md §6: 0 all synced, 1 some skipped or incomplete, 2 nothing could be done.
    pub fn exit_code(&self) -> i32 {
        if self.fatal.is_some() {
            2
        } else if self.outcomes.iter().any(|o| o.error.is_some()) {
            1
        } else {
            0
        }
    }
    pub fn records_seen(&self) -> u64 {
        self.outcomes.iter().map(|o| o.stats.records_seen).sum()
    }
    pub fn records_changed(&self) -> u64 {
        self.outcomes.iter().map(|o| o.stats.records_changed).sum()
    }
}

/// Receives progress (the CLI draws bars from it).
pub trait ProgressSink: Send + Sync {
    fn start(&self, resource: &str, mode: Mode);
    fn records(&self, resource: &str, n: u64);
    fn finish(&self, resource: &str, outcome: &Outcome);
    /// By-id reads begin: `total` records are queued.
    fn details_start(&self, _total: u64) {}
    /// `done` records of the queue read so far.
    fn details_progress(&self, _done: u64) {}
    fn details_done(&self, _report: &DetailReport) {}
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
    /// Stop the whole pass (credentials, the API unreachable).
    Fatal(String),
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

/// A page's response: its records as they are decoded, and what the decoding thread noted.
struct Incoming {
    stream: api::Listing<Row>,
    seen: Arc<std::sync::Mutex<PageInfo>>,
}

/// A page requested on a task of its own (aborted if dropped unused).
struct Ahead {
    query: Vec<(String, String)>,
    sent: Sent,
    task: Option<tokio::task::JoinHandle<Result<Incoming, api::Error>>>,
    answer: Option<Result<Incoming, api::Error>>,
}

impl Ahead {
    /// Waits at most `limit` for the answer (the response's head, or the request's failure).
    /// True when it is here: the request needs neither the budget nor the token store any more.
    async fn answered_within(&mut self, limit: Duration) -> bool {
        if let Some(task) = self.task.as_mut() {
            match tokio::time::timeout(limit, task).await {
                Ok(joined) => {
                    self.task = None;
                    self.answer = Some(join(joined));
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Waits for the answer (the response's head, or the request's failure), keeping it.
    async fn wait(&mut self) {
        if let Some(task) = self.task.take() {
            self.answer = Some(join(task.await));
        }
    }

    async fn answer(&mut self) -> Result<Incoming, api::Error> {
        if let Some(a) = self.answer.take() {
            return a;
        }
        match self.task.take() {
            Some(task) => join(task.await),
            None => unreachable!("an Ahead is pending or answered"),
        }
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A request task's result; a panic in it (a bug) goes on unwinding here.
fn join<T>(r: Result<T, tokio::task::JoinError>) -> T {
    r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

enum PageError {
    Api(api::Error),
    Store(store::Error),
}

/// Pages written and not yet committed: their transaction, and the listing as of the last commit
/// (where a failure inside the group returns to, its pages rolled back).
struct Group {
    tx: store::Tx,
    /// Records written in it.
    records: u64,
    /// What its pages added to the run's counts (taken back on a rollback).
    seen: u64,
    changed: u64,
    committed: Listing,
    /// The dialect as of the last commit.
    dialect: Dialect,
}

impl From<store::Error> for PageError {
    fn from(e: store::Error) -> Self {
        PageError::Store(e)
    }
}

/// Commits the open transaction, if any.
async fn commit(group: &mut Option<Group>) -> Result<(), store::Error> {
    match group.take() {
        Some(g) => g.tx.commit().await,
        None => Ok(()),
    }
}

fn shutdown_stop(res: &Resource) -> Stop {
    Stop::Skip(format!(
        "{}: stopped by shutdown; the next start resumes",
        res.name
    ))
}

/// One resource's run: the listing, what is known of its endpoint, the run's counts.
struct Run<'a> {
    res: &'static Resource,
    run: i64,
    listing: Listing,
    dialect: Dialect,
    /// The dialect changed outside a page's learning (a 400 telling the limit for `$top`).
    dialect_dirty: bool,
    /// Page transactions rolled back because another writer was in the way.
    contention: u32,
    stats: &'a mut RunStats,
    mode: &'a mut Mode,
}

/// A fetched page: what it held, the page after it (requested early), and what it was sent with.
struct Fetched {
    info: PageInfo,
    next: Option<Ahead>,
    sent: Sent,
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
        for (i, res) in resources.iter().enumerate() {
            if self.shutdown.is_cancelled() {
                break;
            }
            let (outcome, end) = self.sync_resource(cycle, res, full).await;
            if let Some(p) = &self.progress {
                p.finish(res.name, &outcome);
            }
            report.outcomes.push(outcome);
            match end {
                None => {}
                Some(PassEnd::Fatal(f)) => {
                    report.fatal = Some(f);
                    break;
                }
                Some(PassEnd::Wait(until)) => {
                    report.not_before = Some(until);
                    for rest in &resources[i + 1..] {
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
                    break;
                }
            }
        }
        report.requests = self.client.requests_made() - before;
        // The last answers go into the firm's request ledger now, not with the next request.
        self.client.budget().flush().await;
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
        if let Err(e) = self.persist_rate().await {
            tracing::warn!(error = %e, "the learned request rate was not saved");
        }
        report
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

    /// Chooses how to list the resource: resume a listing in flight, or start one.
    fn plan(
        &self,
        res: &Resource,
        state: &store::State,
        full: bool,
        now: DateTime<Utc>,
    ) -> Listing {
        if let Some(l) = state
            .listing
            .clone()
            .and_then(|l| serde_json::from_value::<Listing>(l).ok())
            && !(full && l.mode == Mode::Incremental)
        {
            return l;
        }
        let overlap = chrono::Duration::from_std(self.cfg.overlap).unwrap_or_default();
        if full || res.incremental == Incremental::FullListing {
            return Listing::new(Mode::Full, None, 0);
        }
        // The age is measured on our own clock (since the cursor last moved), so a server clock
        // far from ours neither forces nor hides a re-listing.
        let age = state
            .cursor_set_at
            .map(|t| (now - t).to_std().unwrap_or_default());
        let ahead = chrono::Duration::from_std(self.cfg.max_clock_skew).unwrap_or_default();
        match state.cursor {
            Some(cursor) if cursor > now + ahead => {
                // Set from a `Date` header far ahead (a bad node, a proxy): whatever changed since
                // it was set would stay hidden. A complete listing repairs it.
                tracing::warn!(resource = res.name, cursor = %canonical(cursor), "cursor in the future: re-listing to repair it");
                Listing::new(Mode::Full, None, 0)
            }
            Some(cursor) if age.is_some_and(|a| a > self.cfg.max_catch_up) => {
                tracing::warn!(resource = res.name, cursor = %canonical(cursor), "cursor older than max_catch_up: re-listing");
                Listing::new(Mode::Full, None, 0)
            }
            Some(cursor) => Listing::new(Mode::Incremental, Some(cursor - overlap), 0),
            None => match self.cfg.initial_lookback {
                Some(lb) => Listing::new(
                    Mode::Incremental,
                    Some(now - chrono::Duration::from_std(lb).unwrap_or_default()),
                    0,
                ),
                None => Listing::new(Mode::Backfill, None, 0),
            },
        }
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
        let mut listing = self.plan(res, &state, full, now);
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
        let before = self.client.requests_made();
        let mut r = Run {
            res,
            run,
            listing,
            dialect,
            dialect_dirty: false,
            contention: 0,
            stats,
            mode: mode_out,
        };
        let result = self.list_pages(&mut r).await;
        r.stats.requests = self.client.requests_made() - before;
        let (outcome, err) = match &result {
            Ok(()) => ("ok", None),
            Err(Stop::Skip(e)) => ("skipped", Some(e.as_str())),
            Err(Stop::Incomplete(e)) => ("incomplete", Some(e.as_str())),
            Err(Stop::Fatal(e)) => ("failed", Some(e.as_str())),
            Err(Stop::Wait { message, .. }) => ("skipped", Some(message.as_str())),
        };
        self.store
            .finish_run(run, self.clock.now(), r.stats, outcome, err)
            .await?;
        result
    }

    async fn list_pages(&self, r: &mut Run<'_>) -> Result<(), Stop> {
        let res = r.res;
        if r.listing.phase == Phase::Confirm {
            // Every page was in when the process stopped: only the deletions are left.
            return self.confirm_deletions(r).await;
        }
        // A first backfill fills its table with the secondary indexes set aside (one sort each at
        // the end instead of random inserts into every index; SQLite only).
        let bulk = r.listing.mode == Mode::Backfill;
        if bulk {
            let mut tx = self.store.begin().await?;
            tx.defer_indexes(res).await?;
            r.listing.new_table = tx.is_empty(res).await?;
            tx.commit().await?;
        }
        let result = self.list_pages_in(r).await;
        if bulk
            && matches!(
                result,
                Err(Stop::Skip(_) | Stop::Fatal(_) | Stop::Wait { .. })
            )
            && !self.shutdown.is_cancelled()
        {
            // A backfill that stops early leaves the table indexed (the next one sets them aside
            // again). On shutdown (or if this fails) the next start restores them instead.
            let restored = async {
                let mut tx = self.store.begin().await?;
                tx.restore_indexes(res).await?;
                tx.commit().await
            };
            if let Err(e) = restored.await {
                tracing::warn!(resource = res.name, error = %e, "indexes not restored yet (the next start does)");
            }
        }
        result
    }

    async fn list_pages_in(&self, r: &mut Run<'_>) -> Result<(), Stop> {
        let res = r.res;
        let mut restarts = 0;
        // The next page, requested as soon as the one before was received in full.
        let mut ahead: Option<Ahead> = None;
        // The open transaction; it always holds whole pages between iterations.
        let mut group: Option<Group> = None;
        // Pages join a group until one fails inside it; from then on each commits alone.
        let mut grouping = true;
        loop {
            let Some(Fetched {
                info: mut page,
                next: mut early,
                sent,
            }) = self
                .fetch_with_policy(r, ahead.take(), &mut group, &mut grouping)
                .await?
            else {
                continue; // re-planned (rejected query) or returned to the last commit
            };
            let g = group
                .as_mut()
                .expect("a fetched page leaves its transaction open");
            g.seen += page.received;
            g.changed += page.changed;
            r.stats.records_seen += page.received;
            r.stats.records_changed += page.changed;
            if let Some(p) = &self.progress {
                p.records(res.name, page.received);
            }
            let now = self.clock.now();
            if r.listing.signpost.is_none() {
                let t = self.signpost(res, page.server_date, now, &mut g.tx).await?;
                r.listing.signpost = Some(canonical(t));
            }
            // Decided on what was known before the page; then learned from it.
            let decided = paging::step(res, &r.listing, &page, &sent, &r.dialect);
            let learned = paging::learn(&mut r.dialect, &r.listing, &page, &sent, now);
            if learned || std::mem::take(&mut r.dialect_dirty) {
                tracing::info!(resource = res.name, dialect = %r.dialect.summary(), "learned the endpoint's dialect");
                let facts = serde_json::to_string(&r.dialect).expect("a dialect serializes");
                g.tx.set_dialect(res.name, &facts, now).await?;
            }
            if r.listing.pages == 0 && r.listing.phase == Phase::Pages {
                r.listing.first_id = page.first_id.clone();
            }
            r.listing.pages += 1;
            let next = if r.listing.phase == Phase::Reverse {
                // The reverse page is written: did it bring records paging never reached?
                early = None;
                // Records changed while the listing ran are newest in the reverse order: they are
                // not evidence of a cut.
                let seen = (g.tx.count_seen(res, r.listing.first_run).await? as u64)
                    .saturating_sub(page.after_signpost);
                if seen > r.listing.seen_before_reverse {
                    r.listing.incomplete_evidence(format!(
                        "{} records reached, and one more request found {} others: more exist \
                         than the endpoint lets a client page to",
                        r.listing.seen_before_reverse,
                        seen - r.listing.seen_before_reverse
                    ));
                }
                None
            } else {
                match decided {
                    Step::Restart => {
                        // What this page held is committed (it is true data), but the listing
                        // starts again so nothing is missed.
                        drop(early.take());
                        commit(&mut group).await?;
                        restarts += 1;
                        if restarts > 2 {
                            return Err(Stop::Skip(format!(
                                "{}: records kept shifting under paging; the next pass retries",
                                res.name
                            )));
                        }
                        tracing::warn!(
                            resource = res.name,
                            "records shifted during paging: restarting the listing"
                        );
                        r.listing = r.listing.restarted();
                        continue;
                    }
                    Step::Next(next) => Some(*next),
                    Step::Done => paging::next_window(&r.listing),
                    Step::Stuck(why) => {
                        let g = group.as_mut().expect("the page's transaction");
                        self.unstick(r, &mut page, why, &mut g.tx).await?
                    }
                }
            };
            if let Some(next) = next {
                r.listing = Listing {
                    pages: r.listing.pages,
                    first_id: r.listing.first_id.clone(),
                    ..next
                };
                let g = group.as_mut().expect("the page's transaction");
                let progress = serde_json::to_value(&r.listing).expect("a listing serializes");
                g.tx.set_listing(res, Some(&progress), now).await?;
                // Not on shutdown: the next request would be wasted.
                if self.shutdown.is_cancelled() {
                    commit(&mut group).await?;
                    return Err(shutdown_stop(res));
                }
                // Usually requested already, while this page's last records were written.
                let (query, sent) = paging::query(res, &r.listing, &r.dialect, self.cfg.page_size);
                let mut next_page = match early.take() {
                    Some(a) if a.query == query => a,
                    _ => self.request(res, query, sent, &r.listing),
                };
                let hold = grouping
                    && g.records < self.cfg.commit_records
                    && !self.cfg.commit_wait.is_zero();
                // Held open briefly: if the next answer is here, that page joins this
                // transaction; if not, it commits while the request goes on.
                if !hold || !next_page.answered_within(self.cfg.commit_wait).await {
                    commit(&mut group).await?;
                }
                ahead = Some(next_page);
                if self.shutdown.is_cancelled() {
                    commit(&mut group).await?;
                    return Err(shutdown_stop(res));
                }
                continue;
            }
            drop(early);
            return self.complete(r, &mut group).await;
        }
    }

    /// The listing's signpost from the first response's `Date`: the server's own time, unless it
    /// is further ahead of our clock than `max_clock_skew` (then our clock, and the skew is
    /// noted).
    async fn signpost(
        &self,
        res: &Resource,
        server_date: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        tx: &mut store::Tx,
    ) -> Result<DateTime<Utc>, Stop> {
        let Some(t) = server_date else {
            tracing::warn!(
                resource = res.name,
                "no Date header: the local clock stands in as the signpost"
            );
            return Ok(now);
        };
        let tolerance = self.tolerance();
        let skew = t - now;
        if skew.abs() <= tolerance {
            return Ok(t);
        }
        // Noted when it changed by more than a minute (not at every resource's listing).
        let mut facts = self.api_facts().await?;
        let known = facts.clock_skew_secs.as_ref().map(|f| f.value);
        if known.is_none_or(|k| (k - skew.num_seconds()).abs() > 60) {
            tracing::warn!(
                resource = res.name,
                skew_secs = skew.num_seconds(),
                "the server's Date is further from our clock than max_clock_skew"
            );
            facts.clock_skew_secs = Some(dialect::Fact {
                value: skew.num_seconds(),
                how: format!(
                    "Date header {} against our {}",
                    canonical(t),
                    canonical(now)
                ),
                at: now,
            });
            let json = serde_json::to_string(&facts).expect("facts serialize");
            tx.set_dialect(dialect::API, &json, now).await?;
        }
        // Ahead: a cursor past the server's own stamps would hide what changes until then, so
        // our clock stands in. Behind: a cursor earlier than it could be only re-reads more.
        Ok(paging::signpost_of(Some(t), now, tolerance))
    }

    /// How far ahead of our clock a server `Date` is still trusted.
    fn tolerance(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.cfg.max_clock_skew).unwrap_or_default()
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

    /// A page that may be cut, with no way to the records after it: partition the list by the
    /// API's date filters, or ask for one page in the reverse order (does more exist?), or accept
    /// the listing as unproven. Returns the listing's next state, None when it ends.
    async fn unstick(
        &self,
        r: &mut Run<'_>,
        page: &mut PageInfo,
        why: String,
        tx: &mut store::Tx,
    ) -> Result<Option<Listing>, Stop> {
        let res = r.res;
        let l = &mut r.listing;
        l.suspect_cap = Some(
            l.suspect_cap
                .map_or(page.received, |c| c.min(page.received)),
        );
        let why = format!(
            "{why}, and its {} records may be a cap (as many as one response has held)",
            page.received
        );
        if let Some(part) = res.partition {
            // Records without the date are in no window: the mirror must hold none either.
            let undated = if l.windows.is_empty() {
                tx.count_null(res, part.column).await?
            } else {
                0
            };
            let split = if undated > 0 {
                Err(format!(
                    "{undated} records in the mirror have no {}, so the date filters cannot partition the list",
                    part.column
                ))
            } else {
                paging::split(l, page)
            };
            match split {
                Ok(windows) => {
                    tracing::warn!(resource = res.name, reason = %why, windows = windows.len(), "listing by date windows");
                    return Ok(Some(paging::partitioned(l, windows)));
                }
                Err(e) => l.unproven.push(format!("{why}; {e}")),
            }
            return Ok(paging::next_window(l));
        }
        l.unproven.push(why.clone());
        if !l.windows.is_empty() {
            return Ok(paging::next_window(l));
        }
        // One more page tells whether more records exist than paging reached: the reverse order,
        // or, where the endpoint cannot order, the records newer than the newest seen.
        let can_reverse = !l.omit_order && r.dialect.orderby().usable();
        let can_since = res.has_updated_at
            && res.incremental == Incremental::UpdatedSince
            && r.dialect.since() != dialect::Since::Ignored
            && page.max_updated_at.is_some();
        if can_reverse || can_since {
            if res.incremental == Incremental::FullListing {
                // Expected: the notes say these lists take no parameters at all.
                tracing::info!(resource = res.name, reason = %why, "paging cannot go on: one more page tells whether more exist");
            } else {
                tracing::warn!(resource = res.name, reason = %why, "paging cannot go on: one more page tells whether more exist");
            }
            let mut next = l.clone();
            next.phase = Phase::Reverse;
            next.probe_since = page.max_updated_at.map(canonical);
            next.seen_before_reverse = tx.count_seen(res, l.first_run).await? as u64;
            return Ok(Some(next));
        }
        Ok(None)
    }

    /// Every page is in: deletions (after a complete listing), the cursor and what is known of
    /// the listing's completeness commit with the last page; a backfill's indexes come back in
    /// the same transaction. Candidates of a resource with a by-id read are confirmed first.
    async fn complete(&self, r: &mut Run<'_>, group: &mut Option<Group>) -> Result<(), Stop> {
        let res = r.res;
        let now = self.clock.now();
        let mut g = group.take().expect("the page's transaction");
        let tx = &mut g.tx;
        if r.listing.mode == Mode::Backfill {
            tx.restore_indexes(res).await?;
        }
        // A page that could not be continued, and the listing reached more by other queries
        // (date windows, the reverse order): that page was cut, its length is the cap. Known,
        // the next listings ask for pages of it and see a full page as one.
        if let Some(c) = r.listing.suspect_cap
            && r.dialect.cap() != Some(c)
            && tx.count_seen(res, r.listing.first_run).await? as u64 > c
        {
            r.dialect.proved_cap(
                c,
                &format!("a page of {c} could not be continued, and other queries reached more"),
                now,
            );
            let facts = serde_json::to_string(&r.dialect).expect("a dialect serializes");
            tx.set_dialect(res.name, &facts, now).await?;
        }
        if r.listing.mode.complete_listing() {
            let unseen = tx.count_unseen(res, r.listing.first_run).await?;
            if unseen > 0 {
                if let Some(msg) = self.too_many_deletions(res, tx, unseen).await? {
                    self.finish_listing(r, tx, false).await?;
                    g.tx.commit().await?;
                    return Err(Stop::Skip(msg));
                }
                if res.by_id.is_some() {
                    r.listing.phase = Phase::Confirm;
                    let saved = serde_json::to_value(&r.listing).expect("a listing serializes");
                    tx.set_listing(res, Some(&saved), now).await?;
                    g.tx.commit().await?;
                    return self.confirm_deletions(r).await;
                }
                if r.listing.proven() && unseen <= NO_BY_ID_MARK_LIMIT {
                    r.stats.records_deleted += tx
                        .mark_unseen_deleted(res, r.listing.first_run, now)
                        .await?;
                } else if r.listing.proven() {
                    // Without a by-id read nothing confirms them; many at once from a list
                    // without paging looks more like a cap that shrank than like deletions.
                    r.listing.incomplete_evidence(format!(
                        "{unseen} records the mirror holds are missing from the listing at once \
                         (more than {NO_BY_ID_MARK_LIMIT}), and the endpoint has no by-id read to \
                         confirm them: a cap that shrank? not marked deleted"
                    ));
                } else {
                    let why = r.listing.unproven.join("; ");
                    r.listing.incomplete_evidence(format!(
                        "{unseen} records the mirror holds are missing from a listing that cannot be \
                         proven complete ({why}); not marked deleted"
                    ));
                }
            }
        }
        self.finish_listing(r, tx, true).await?;
        g.tx.commit().await?;
        self.ended(r)
    }

    /// Refuses a complete listing that would mark most of a table deleted (the API's view of the
    /// firm shrank: a non-admin account, a broken filter).
    async fn too_many_deletions(
        &self,
        res: &Resource,
        tx: &mut store::Tx,
        unseen: i64,
    ) -> Result<Option<String>, Stop> {
        if unseen <= 20 {
            return Ok(None);
        }
        let live = tx.count_live(res).await?;
        if (unseen as f64) <= self.cfg.max_delete_fraction * live as f64 {
            return Ok(None);
        }
        tracing::error!(
            resource = res.name,
            unseen,
            live,
            "a complete listing would mark too many records deleted: refusing (check the API)"
        );
        Ok(Some(format!(
            "{}: refused to mark {unseen} of {live} records deleted (more than {:.0}%): \
             check the API access (an admin account?) before trusting this listing",
            res.name,
            self.cfg.max_delete_fraction * 100.0
        )))
    }

    /// Deletion candidates checked by id (404 = gone) before any is marked. A record this listing
    /// saw is read by id first: a by-id read that does not find a record known to exist cannot
    /// confirm anything. Every candidate is checked when they are few; beyond
    /// `confirm_deletions`, a sample is, and the rest are marked only when the listing is proven
    /// complete (otherwise the sample alone is marked, the others checked at later passes). One
    /// that still exists means the listing was cut: nothing is marked and the resource is
    /// reported incomplete. The listing is saved in its `Confirm` phase, so a stopped process
    /// confirms again at the next start.
    async fn confirm_deletions(&self, r: &mut Run<'_>) -> Result<(), Stop> {
        let res = r.res;
        let path = res.by_id.expect("only resources with a by-id read confirm");
        let first_run = r.listing.first_run;
        let (unseen, sample, control) = {
            let mut tx = self.store.begin().await?;
            let unseen = tx.count_unseen(res, first_run).await?;
            let sample = tx
                .unseen_sample(res, first_run, self.cfg.confirm_deletions.max(1))
                .await?;
            let control = tx.seen_sample(res, first_run, 1).await?;
            (unseen, sample, control)
        };
        let mut gone = Vec::new();
        let mut still = None;
        let mut blind = None;
        if r.listing.incomplete.is_none() {
            if let Some(c) = control.first()
                && !self.confirm_one(res, path, c).await?
            {
                blind = Some(c.clone());
            }
            if blind.is_none() {
                for id in &sample {
                    if self.confirm_one(res, path, id).await? {
                        still = Some(id.clone());
                        break;
                    }
                    gone.push(id.clone());
                }
            }
        }
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if let Some(c) = blind {
            r.listing.unproven.push(format!(
                "GET {path}/{c} does not find a record the listing just returned, so it cannot \
                 confirm deletions; {unseen} records missing from the listing not marked"
            ));
        } else if let Some(id) = still {
            let why = if r.listing.unproven.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.listing.unproven.join("; "))
            };
            r.listing.incomplete_evidence(format!(
                "{unseen} records are missing from the listing, but {id} still exists (GET \
                 {path}/{id} answers): the listing was cut{why}; nothing marked deleted"
            ));
        } else if r.listing.incomplete.is_none() {
            if unseen as usize <= gone.len() || r.listing.proven() {
                r.stats.records_deleted += tx.mark_unseen_deleted(res, first_run, now).await?;
                if unseen as usize > gone.len() {
                    tracing::info!(
                        resource = res.name,
                        unseen,
                        sampled = gone.len(),
                        "deletions confirmed by a sample of a proven listing"
                    );
                }
            } else {
                // Not proven: only what was seen gone is marked; the rest at later passes.
                r.stats.records_deleted += tx.mark_deleted(res, &gone, now).await?;
                r.listing.unproven.push(format!(
                    "{} of {unseen} records missing from the listing confirmed gone and marked; \
                     the others are checked at the next passes",
                    gone.len()
                ));
            }
        }
        self.finish_listing(r, &mut tx, true).await?;
        tx.commit().await?;
        self.ended(r)
    }

    /// Whether `GET {path}/{id}` finds the record, with the page policy's retries.
    async fn confirm_one(&self, res: &Resource, path: &str, id: &str) -> Result<bool, Stop> {
        let mut attempt = 0;
        loop {
            match self.client.exists(path, id).await {
                Ok(found) => return Ok(found),
                Err(e) => {
                    attempt += 1;
                    match api::error::action(e.class(), attempt, self.cfg.max_page_attempts) {
                        Action::BackoffAndRetry | Action::WaitAndRetry
                            if !self.waits_too_long(&e) =>
                        {
                            self.client.page_backoff(attempt).await;
                        }
                        Action::StopPass | Action::BackoffAndRetry | Action::WaitAndRetry => {
                            return Err(self.pass_stop(e));
                        }
                        _ => {
                            return Err(Stop::Skip(format!(
                                "{}: deletions not confirmed ({e}); the next pass confirms them",
                                res.name
                            )));
                        }
                    }
                }
            }
        }
    }

    /// A rate limit whose `Retry-After` is longer than a pass waits.
    fn waits_too_long(&self, e: &api::Error) -> bool {
        matches!(e, api::Error::RateLimited { retry_after: Some(w) } if *w > self.client.config().max_retry_wait)
    }

    /// Writes how the listing ended: the cursor (not past what a listing may have missed: the
    /// next pass asks again from the same point), and whether the resource could be listed
    /// completely.
    async fn finish_listing(
        &self,
        r: &mut Run<'_>,
        tx: &mut store::Tx,
        move_cursor: bool,
    ) -> Result<(), Stop> {
        let res = r.res;
        let l = &r.listing;
        let now = self.clock.now();
        let signpost = l
            .signpost
            .as_deref()
            .and_then(parse_api_time)
            .unwrap_or(now);
        let evidence = l.incomplete.clone();
        // Past what a listing may have missed the cursor moves only from nothing (a first
        // backfill: the incremental passes after it list every change) or for a list read whole
        // every pass (its cursor narrows nothing).
        let may_move =
            l.proven() || l.mode == Mode::Backfill || res.incremental == Incremental::FullListing;
        if move_cursor && may_move {
            tx.set_cursor(res, signpost, l.mode.complete_listing(), now)
                .await?;
        } else {
            tx.set_listing(res, None, now).await?;
        }
        let unproven = (!l.unproven.is_empty()).then(|| l.unproven.join("; "));
        // A complete listing says how the resource stands; an incremental one only adds evidence.
        if l.mode.complete_listing() || evidence.is_some() {
            tx.set_completeness(res, evidence.as_deref(), unproven.as_deref(), now)
                .await?;
        }
        if let Some(u) = &unproven
            && evidence.is_none()
        {
            tracing::info!(resource = res.name, reason = %u, "listing not proven complete; nothing seen missing");
        }
        Ok(())
    }

    /// The end of a listing: Ok, or incomplete with what was seen.
    fn ended(&self, r: &Run<'_>) -> Result<(), Stop> {
        let res = r.res;
        if let Some(e) = &r.listing.incomplete {
            let cap = match (r.dialect.cap(), r.dialect.largest()) {
                (Some(c), _) => format!("it returns at most {c} records a response"),
                (None, l) => format!("its largest response held {l} records"),
            };
            return Err(Stop::Incomplete(format!(
                "{}: incomplete: {e}; {cap} ({})",
                res.name,
                r.dialect.summary()
            )));
        }
        tracing::info!(
            resource = res.name,
            mode = r.listing.mode.name(),
            pages = r.listing.pages,
            seen = r.stats.records_seen,
            changed = r.stats.records_changed,
            deleted = r.stats.records_deleted,
            "resource synced"
        );
        Ok(())
    }

    /// What a failure that stops the pass becomes.
    fn pass_stop(&self, e: api::Error) -> Stop {
        if let api::Error::RateLimited {
            retry_after: Some(w),
        } = &e
        {
            let until = self.clock.now() + chrono::Duration::from_std(*w).unwrap_or_default();
            return Stop::Wait {
                message: format!(
                    "{e}: this pass ends here; the next starts after {}",
                    canonical(until)
                ),
                until,
            };
        }
        Stop::Fatal(e.to_string())
    }

    /// Fetches the listing's next page into the open transaction (`group`, begun if there is
    /// none), applying the error policy. `None`: the listing was re-planned (a query option or
    /// the cursor rejected, or returned to its last commit) and its next query must be built
    /// again.
    ///
    /// A failure never leaves part of a page in the transaction: if the page had written rows,
    /// the transaction is rolled back with every page it held, the listing returns to its last
    /// commit and pages commit one by one from then on (so a page that keeps failing is retried
    /// and given up as it would be alone); if it had not, the whole pages before it commit.
    async fn fetch_with_policy(
        &self,
        r: &mut Run<'_>,
        mut ahead: Option<Ahead>,
        group: &mut Option<Group>,
        grouping: &mut bool,
    ) -> Result<Option<Fetched>, Stop> {
        let res = r.res;
        let (query, sent) = paging::query(res, &r.listing, &r.dialect, self.cfg.page_size);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut requested = ahead
                .take()
                .unwrap_or_else(|| self.request(res, query.clone(), sent.clone(), &r.listing));
            if group.is_none() {
                // The transaction begins once the answer is here: on SQLite it takes the write
                // lock when it begins, and the request may need a write of its own first (a
                // token refresh saves the rotated pair on another connection).
                requested.wait().await;
                *group = Some(Group {
                    tx: self.store.begin().await?,
                    records: 0,
                    seen: 0,
                    changed: 0,
                    committed: r.listing.clone(),
                    dialect: r.dialect.clone(),
                });
            }
            let g = group.as_mut().expect("begun above");
            let sent_now = requested.sent.clone();
            let (err, touched) = match self
                .fetch_page(
                    res,
                    r.run,
                    &r.listing,
                    &r.dialect,
                    &mut requested,
                    &mut g.tx,
                )
                .await
            {
                Ok((info, next)) => {
                    g.records += info.received;
                    return Ok(Some(Fetched {
                        info,
                        next,
                        sent: sent_now,
                    }));
                }
                Err((PageError::Store(e), _))
                    if e.is_contention() && r.contention < self.cfg.max_page_attempts =>
                {
                    r.contention += 1;
                    // Another writer's transaction was in the way (a CLI pass beside the
                    // daemon): this one is rolled back whole, and the listing goes on from its
                    // last commit, page by page.
                    let lost = group.take().expect("the open transaction");
                    r.stats.records_seen -= lost.seen;
                    r.stats.records_changed -= lost.changed;
                    r.listing = lost.committed;
                    r.dialect = lost.dialect;
                    *grouping = false;
                    tracing::warn!(resource = res.name, error = %e, attempt = r.contention, "another writer was in the way; the page is written again");
                    self.client.page_backoff(r.contention).await;
                    return Ok(None);
                }
                Err((PageError::Store(e), _)) => return Err(Stop::from(e)),
                Err((PageError::Api(e), touched)) => (e, touched),
            };
            let mut returned = false;
            if touched {
                let lost = group.take().expect("the open transaction");
                r.stats.records_seen -= lost.seen;
                r.stats.records_changed -= lost.changed;
                if lost.records > 0 {
                    tracing::warn!(
                        resource = res.name,
                        pages_lost = r.listing.pages - lost.committed.pages,
                        "a page failed inside a transaction of several: they are read again, one commit each"
                    );
                    r.listing = lost.committed;
                    r.dialect = lost.dialect;
                    *grouping = false;
                    returned = true;
                }
                // Dropped: rolled back.
            } else {
                commit(group).await?;
            }
            if let api::Error::BadRequest { body, .. } = &err
                && let Some(dropped) = self
                    .drop_rejected_option(r, &requested.query, &sent_now, body)
                    .await
            {
                tracing::warn!(resource = res.name, option = dropped.name(), error = %err, "the API rejected a query option: asking again without it");
                return Ok(None);
            }
            match api::error::action(err.class(), attempt, self.cfg.max_page_attempts) {
                Action::BackoffAndRetry | Action::WaitAndRetry => {
                    if self.waits_too_long(&err) {
                        return Err(self.pass_stop(err));
                    }
                    tracing::warn!(resource = res.name, error = %err, attempt, "page failed; retrying");
                    self.client.page_backoff(attempt).await;
                    if returned {
                        return Ok(None);
                    }
                }
                Action::Relist if r.listing.mode == Mode::Incremental => {
                    tracing::warn!(resource = res.name, error = %err, "the API rejected the incremental query: re-listing fully");
                    r.listing = Listing {
                        // What the run knew when it began still holds.
                        with_issues: r.listing.with_issues.clone(),
                        details: r.listing.details,
                        ..Listing::new(Mode::Full, None, r.run)
                    };
                    *r.mode = Mode::Full;
                    return Ok(None);
                }
                Action::StopPass => return Err(self.pass_stop(err)),
                _ => return Err(Stop::Skip(err.to_string())),
            }
        }
    }

    /// After a 400: the query option it names (or, when it names none, the first of `$orderby`
    /// and paging not proven to work) is dropped from the listing, which asks again; the option
    /// is learned rejected once the query without it is answered. None: nothing left to drop.
    async fn drop_rejected_option(
        &self,
        r: &mut Run<'_>,
        query: &[(String, String)],
        sent: &Sent,
        body: &str,
    ) -> Option<QueryOption> {
        // "The limit of '1000' for Top query has been exceeded": a cap, not an unknown option.
        if let (Some(max), Some(top)) = (dialect::top_limit(body), sent.top)
            && top > max
        {
            r.dialect.proved_cap(
                max,
                &format!("the endpoint's limit for $top (a 400 said {max})"),
                self.clock.now(),
            );
            r.dialect_dirty = true;
            return Some(QueryOption::Top);
        }
        let named = dialect::options_named(body);
        if named.is_empty() {
            // A 400 naming nothing may have another cause: the option is dropped (and, once
            // the query without it is answered, learned rejected) only if the same query is
            // refused again.
            let again = self.client.get(r.res.path, query).await;
            if !matches!(again, Err(api::Error::BadRequest { .. })) {
                return None;
            }
        }
        let l = &mut r.listing;
        let candidates: Vec<QueryOption> = if named.is_empty() {
            let mut c = Vec::new();
            if sent.orderby && r.dialect.orderby() != Support::Honoured {
                c.push(QueryOption::OrderBy);
            }
            if sent.top.is_some() && r.dialect.top() != Support::Honoured {
                c.push(QueryOption::Top);
            }
            if sent.skip > 0 && r.dialect.skip() != Support::Honoured {
                c.push(QueryOption::Skip);
            }
            c.truncate(1);
            c
        } else {
            named.clone()
        };
        let mut dropped = None;
        for opt in candidates {
            let (flag, was_sent) = match opt {
                QueryOption::OrderBy => (&mut l.omit_order, sent.orderby),
                QueryOption::Top => (&mut l.omit_top, sent.top.is_some()),
                QueryOption::Skip => (&mut l.omit_skip, sent.skip > 0),
            };
            if was_sent && !*flag {
                *flag = true;
                dropped.get_or_insert(opt);
            }
        }
        dropped
    }

    /// Requests a page of `res` on a task of its own. Its records are parsed and prepared on the
    /// decoding thread, beside the writes of the page before, and noted there (`PageInfo`), so
    /// the page after can be requested as soon as this one is received in full.
    fn request(
        &self,
        res: &'static Resource,
        query: Vec<(String, String)>,
        sent: Sent,
        listing: &Listing,
    ) -> Ahead {
        let client = self.client.clone();
        let q = query.clone();
        let expect = Expect::new(res, listing, &sent);
        let task = tokio::spawn(async move {
            let reader = record::Reader::new(res);
            let seen = Arc::new(std::sync::Mutex::new(PageInfo::new()));
            let noted = seen.clone();
            let stream = client
                .list(res.path, &q, move |raw| {
                    let row = reader.prepare(raw)?;
                    noted
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .observe(&row, &expect);
                    Ok(row)
                })
                .await?;
            Ok(Incoming { stream, seen })
        });
        Ahead {
            query,
            sent,
            task: Some(task),
            answer: None,
        }
    }

    /// Streams one page into `tx` (not committed). Once the page is received in full, the page
    /// after it (if any) is requested, while its last records are still being written; it is
    /// returned beside the page's info. On failure, says whether any of the page's rows had
    /// been written into `tx`.
    async fn fetch_page(
        &self,
        res: &'static Resource,
        run: i64,
        listing: &Listing,
        dialect: &Dialect,
        requested: &mut Ahead,
        tx: &mut store::Tx,
    ) -> Result<(PageInfo, Option<Ahead>), (PageError, bool)> {
        let Incoming { mut stream, seen } = requested
            .answer()
            .await
            .map_err(|e| (PageError::Api(e), false))?;
        let info = |seen: &std::sync::Mutex<PageInfo>| {
            seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
        };
        let mut next = None;
        let mut asked = false;
        let mut batch: Vec<Row> = Vec::with_capacity(WRITE_BATCH);
        let now = self.clock.now();
        let mut touched = false;
        let mut changed = 0;
        loop {
            if !asked && stream.decoded() {
                asked = true;
                if !self.shutdown.is_cancelled() && listing.phase == Phase::Pages {
                    let page = info(&seen);
                    if let Step::Next(mut l) =
                        paging::step(res, listing, &page, &requested.sent, dialect)
                    {
                        // The query the engine will build once the page is written: from the
                        // dialect as this page teaches it.
                        let mut d = dialect.clone();
                        paging::learn(&mut d, listing, &page, &requested.sent, now);
                        let (q, s) = paging::query(res, &l, &d, self.cfg.page_size);
                        // The first page's signpost, as the engine will take it: the next
                        // page's records are judged against it.
                        if l.signpost.is_none() {
                            l.signpost = Some(canonical(paging::signpost_of(
                                stream.server_date,
                                now,
                                self.tolerance(),
                            )));
                        }
                        next = Some(self.request(res, q, s, &l));
                    }
                }
            }
            let row = stream
                .next()
                .await
                .map_err(|e| (PageError::Api(e), touched))?;
            let Some(row) = row else { break };
            batch.push(row);
            if batch.len() >= WRITE_BATCH {
                touched = true;
                changed += self
                    .write_batch(tx, res, &mut batch, run, now, listing)
                    .await
                    .map_err(|e| (e, true))?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            changed += self
                .write_batch(tx, res, &mut batch, run, now, listing)
                .await
                .map_err(|e| (e, true))?;
        }
        let mut info = info(&seen);
        info.changed = changed;
        info.server_date = stream.server_date;
        Ok((info, next))
    }

    /// Upserts a batch and enqueues the notifications it causes, in the page's transaction.
    /// What could not be read of a record is noted beside it (`record_issues`); a record without
    /// its key is only noted.
    async fn write_batch(
        &self,
        tx: &mut store::Tx,
        res: &'static Resource,
        batch: &mut Vec<Row>,
        run: i64,
        now: DateTime<Utc>,
        listing: &Listing,
    ) -> Result<u64, PageError> {
        let odd: Vec<&Row> = batch.iter().filter(|r| !r.issues.is_empty()).collect();
        if !odd.is_empty() {
            tx.note_issues(res, &odd, now).await?;
        }
        if !listing.with_issues.is_empty() {
            let clean: Vec<&str> = batch
                .iter()
                .filter(|r| r.issues.is_empty() && listing.with_issues.contains(&r.id))
                .map(|r| r.id.as_str())
                .collect();
            tx.clear_issues(res, &clean).await?;
        }
        if odd.iter().any(|r| r.keyless) {
            batch.retain(|r| !r.keyless);
        }
        let rule = crate::notify::rule(res);
        let fresh = tx
            .upsert(
                res,
                batch,
                run,
                now,
                rule.map(|r| r.due_column),
                listing.new_table,
            )
            .await?;
        if listing.details && !fresh.is_empty() {
            // New and changed records wait for their by-id read, queued with the records.
            let hashes: std::collections::HashMap<&str, i64> =
                batch.iter().map(|r| (r.id.as_str(), r.hash)).collect();
            let queue: Vec<(&str, i64)> = fresh
                .iter()
                .filter_map(|f| hashes.get(f.id.as_str()).map(|h| (f.id.as_str(), *h)))
                .collect();
            tx.queue_details(res, &queue, now).await?;
        }
        if rule.is_some() && !fresh.is_empty() {
            let suppressed = listing.mode == Mode::Backfill;
            let items = crate::notify::for_page(
                res,
                batch,
                &fresh,
                now,
                self.cfg.notify_window,
                suppressed,
            );
            tx.enqueue(&items, now).await?;
        }
        Ok(fresh.len() as u64)
    }
}

/// Why a pass ends before its last resource.
enum PassEnd {
    Fatal(String),
    Wait(DateTime<Utc>),
}
