//! The engine: one pass over a set of resources, each listed from its cursor (or fully), its pages
//! streamed into the store, the cursor moved in the transaction that commits the last records.
//!
//! Invariants:
//! - A cursor moves only in the transaction that holds the records it covers, and only to the
//!   server's `Date` at the start of the listing (the signpost), never past what was received.
//! - Every query reaches back by the overlap; upserts are idempotent, so re-reading is free.
//! - "Deleted" is concluded only from a listing that completed without any sign of truncation.
//! - Time comes from the `Clock`; `sync` builds neither HTTP requests nor SQL.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::{self, Action, Client};
use crate::record::{self, Row};
use crate::resource::{Incremental, Resource};
use crate::store::{self, RunStats, Store};
use crate::time::{Clock, canonical, parse_api_time, query_param};

/// Engine settings (from the config).
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// How far every incremental query reaches back before the cursor.
    pub overlap: Duration,
    /// A cursor older than this triggers a full re-listing instead of a long catch-up.
    pub max_catch_up: Duration,
    /// `$top` of every listing; a page this long (or a round number) means "maybe more".
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
        }
    }
}

/// Rows written per batch inside a page's transaction.
const WRITE_BATCH: usize = 1000;
/// Records by which consecutive `$skip` pages overlap, so a shift caused by deletions mid-scan
/// is detected (the previous page's last id must reappear) instead of silently skipping a record.
const SKIP_OVERLAP: u64 = 20;

/// How a resource is listed in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// First listing ever: everything.
    Backfill,
    /// What changed since the cursor minus the overlap.
    Incremental,
    /// A complete listing that also marks vanished records deleted (`--full`, stale or rejected
    /// cursor, or a resource that takes no filter).
    Full,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Backfill => "backfill",
            Mode::Incremental => "incremental",
            Mode::Full => "full",
        }
    }
    fn complete_listing(self) -> bool {
        self != Mode::Incremental
    }
}

/// The resume point of a listing in flight, saved with every committed page.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Listing {
    mode: Mode,
    /// The `updated_since` of the listing (None: everything).
    since: Option<String>,
    /// The server's time when the listing began; becomes the cursor when it completes.
    signpost: Option<String>,
    /// The run that began the listing: records it saw have `seen_run >= first_run`.
    first_run: i64,
    /// Keyset position: the next page asks `updated_since` = this.
    keyset: Option<String>,
    skip: u64,
    /// Last id of the previous page when continuing by `$skip`.
    anchor: Option<String>,
    /// First id of the previous page: the same first id again means `$skip` is ignored.
    #[serde(default)]
    prev_first: Option<String>,
    pages: u32,
    /// The table was empty when this process began the listing (a first backfill): whatever it
    /// holds is this run's, so writes need not look up what is stored. Never saved: a resumed
    /// listing checks again.
    #[serde(skip)]
    new_table: bool,
}

/// What happened to one resource in a pass.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub resource: &'static str,
    pub mode: Mode,
    pub stats: RunStatsView,
    /// None when the resource synced; the reason otherwise.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RunStatsView {
    pub requests: u64,
    pub records_seen: u64,
    pub records_changed: u64,
    pub records_deleted: u64,
}

/// A pass's result: per-resource outcomes, and a fatal error that stopped it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PassReport {
    pub cycle: i64,
    pub outcomes: Vec<Outcome>,
    pub fatal: Option<String>,
    pub requests: u64,
}

impl PassReport {
    /// product.md §6: 0 all synced, 1 some skipped, 2 nothing could be done.
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
    /// Stop the whole pass (credentials).
    Fatal(String),
}

impl From<store::Error> for Stop {
    fn from(e: store::Error) -> Self {
        Stop::Fatal(e.to_string())
    }
}

/// What one page held. All but `changed` and `server_date` is noted on the decoding thread as
/// records are prepared, so it is known once the page is received, before it is written.
#[derive(Clone, Debug)]
struct PageInfo {
    received: u64,
    first_id: Option<String>,
    changed: u64,
    last_id: Option<String>,
    last_updated_at: Option<DateTime<Utc>>,
    sorted_by_updated_at: bool,
    anchor_found: bool,
    server_date: Option<DateTime<Utc>>,
}

impl PageInfo {
    fn new() -> Self {
        PageInfo {
            received: 0,
            first_id: None,
            changed: 0,
            last_id: None,
            last_updated_at: None,
            sorted_by_updated_at: true,
            anchor_found: false,
            server_date: None,
        }
    }

    /// Takes the next record of the page into account. `anchor`: the last id of the page
    /// before, when paging by `$skip`.
    fn observe(&mut self, row: &Row, anchor: Option<&str>) {
        if let Some(t) = row.updated_at {
            if self.last_updated_at.is_some_and(|prev| t < prev) {
                self.sorted_by_updated_at = false;
            }
            self.last_updated_at = Some(t);
        }
        if !self.anchor_found && self.received < SKIP_OVERLAP + 1 && anchor == Some(row.id.as_str())
        {
            self.anchor_found = true;
        }
        self.received += 1;
        if self.first_id.is_none() {
            self.first_id = Some(row.id.clone());
        }
        // The buffer is reused: no allocation per record.
        let last = self.last_id.get_or_insert_with(String::new);
        last.clear();
        last.push_str(&row.id);
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

    async fn answer(mut self) -> Result<Incoming, api::Error> {
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

/// Where a listing goes after a page.
enum Step {
    /// Records shifted under `$skip` (deletions mid-scan): start the listing again.
    Restart,
    /// The page was the last.
    Complete,
    /// More pages: the listing as advanced to the next one.
    Next(Listing),
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
}

impl Group {
    async fn commit(self) -> Result<(), store::Error> {
        self.tx.commit().await
    }
}

impl From<store::Error> for PageError {
    fn from(e: store::Error) -> Self {
        PageError::Store(e)
    }
}

/// Commits the open transaction, if any.
async fn commit(group: &mut Option<Group>) -> Result<(), store::Error> {
    match group.take() {
        Some(g) => g.commit().await,
        None => Ok(()),
    }
}

fn shutdown_stop(res: &Resource) -> Stop {
    Stop::Skip(format!(
        "{}: stopped by shutdown; the next start resumes",
        res.name
    ))
}

fn new_listing(mode: Mode, since: Option<DateTime<Utc>>, first_run: i64) -> Listing {
    Listing {
        mode,
        since: since.map(canonical),
        signpost: None,
        first_run,
        keyset: None,
        skip: 0,
        anchor: None,
        prev_first: None,
        pages: 0,
        new_table: false,
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
        for res in resources {
            if self.shutdown.is_cancelled() {
                break;
            }
            let (outcome, fatal) = self.sync_resource(cycle, res, full).await;
            if let Some(p) = &self.progress {
                p.finish(res.name, &outcome);
            }
            report.outcomes.push(outcome);
            if let Some(f) = fatal {
                report.fatal = Some(f);
                break;
            }
        }
        report.requests = self.client.requests_made() - before;
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
        report
    }

    /// Syncs one resource. Returns its outcome, and a fatal error when the pass must stop.
    pub async fn sync_resource(
        &self,
        cycle: i64,
        res: &'static Resource,
        full: bool,
    ) -> (Outcome, Option<String>) {
        let mut stats = RunStats::default();
        let mut mode = Mode::Incremental;
        let result = self
            .run_resource(cycle, res, full, &mut stats, &mut mode)
            .await;
        let (error, fatal) = match result {
            Ok(()) => (None, None),
            Err(Stop::Skip(e)) => (Some(e), None),
            Err(Stop::Fatal(e)) => (Some(e.clone()), Some(e)),
        };
        if let Some(e) = &error {
            tracing::warn!(resource = res.name, error = %e, "resource not synced this pass");
        }
        let outcome = Outcome {
            resource: res.name,
            mode,
            stats: RunStatsView {
                requests: stats.requests,
                records_seen: stats.records_seen,
                records_changed: stats.records_changed,
                records_deleted: stats.records_deleted,
            },
            error,
        };
        (outcome, fatal)
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
            return new_listing(Mode::Full, None, 0);
        }
        // The age is measured on our own clock (since the cursor last moved), so a server clock
        // far from ours neither forces nor hides a re-listing.
        let age = state
            .cursor_set_at
            .map(|t| (now - t).to_std().unwrap_or_default());
        match state.cursor {
            Some(cursor) if age.is_some_and(|a| a > self.cfg.max_catch_up) => {
                tracing::warn!(resource = res.name, cursor = %canonical(cursor), "cursor older than max_catch_up: re-listing");
                new_listing(Mode::Full, None, 0)
            }
            Some(cursor) => new_listing(Mode::Incremental, Some(cursor - overlap), 0),
            None => match self.cfg.initial_lookback {
                Some(lb) => new_listing(
                    Mode::Incremental,
                    Some(now - chrono::Duration::from_std(lb).unwrap_or_default()),
                    0,
                ),
                None => new_listing(Mode::Backfill, None, 0),
            },
        }
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
        let before = self.client.requests_made();
        let result = self
            .list_pages(res, run, &mut listing, stats, mode_out)
            .await;
        stats.requests = self.client.requests_made() - before;
        let (outcome, err) = match &result {
            Ok(()) => ("ok", None),
            Err(Stop::Skip(e)) => ("skipped", Some(e.as_str())),
            Err(Stop::Fatal(e)) => ("failed", Some(e.as_str())),
        };
        self.store
            .finish_run(run, self.clock.now(), stats, outcome, err)
            .await?;
        result
    }

    async fn list_pages(
        &self,
        res: &'static Resource,
        run: i64,
        listing: &mut Listing,
        stats: &mut RunStats,
        mode_out: &mut Mode,
    ) -> Result<(), Stop> {
        // A first backfill fills its table with the secondary indexes set aside (one sort each at
        // the end instead of random inserts into every index; SQLite only).
        let bulk = listing.mode == Mode::Backfill;
        if bulk {
            let mut tx = self.store.begin().await?;
            tx.defer_indexes(res).await?;
            listing.new_table = tx.is_empty(res).await?;
            tx.commit().await?;
        }
        let result = self.list_pages_in(res, run, listing, stats, mode_out).await;
        if bulk && result.is_err() && !self.shutdown.is_cancelled() {
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

    async fn list_pages_in(
        &self,
        res: &'static Resource,
        run: i64,
        listing: &mut Listing,
        stats: &mut RunStats,
        mode_out: &mut Mode,
    ) -> Result<(), Stop> {
        let mut restarts = 0;
        // The next page, requested as soon as the one before was received in full.
        let mut ahead: Option<Ahead> = None;
        // The open transaction; it always holds whole pages between iterations.
        let mut group: Option<Group> = None;
        // Pages join a group until one fails inside it; from then on each commits alone.
        let mut grouping = true;
        loop {
            let Some((page, early)) = self
                .fetch_with_policy(
                    res,
                    run,
                    listing,
                    stats,
                    mode_out,
                    ahead.take(),
                    &mut group,
                    &mut grouping,
                )
                .await?
            else {
                continue; // re-planned (rejected cursor) or returned to the last commit
            };
            let g = group
                .as_mut()
                .expect("a fetched page leaves its transaction open");
            g.seen += page.received;
            g.changed += page.changed;
            stats.records_seen += page.received;
            stats.records_changed += page.changed;
            if let Some(p) = &self.progress {
                p.records(res.name, page.received);
            }
            if listing.signpost.is_none() {
                let t = page.server_date.unwrap_or_else(|| {
                    tracing::warn!(
                        resource = res.name,
                        "no Date header: the local clock stands in as the signpost"
                    );
                    self.clock.now()
                });
                listing.signpost = Some(canonical(t));
            }
            let next = match self.step(res, listing, &page) {
                Step::Restart => {
                    // What this page held is committed (it is true data), but the listing starts
                    // again so nothing is missed.
                    drop(early);
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
                    let since = listing.since.as_deref().and_then(parse_api_time);
                    *listing = new_listing(listing.mode, since, listing.first_run);
                    continue;
                }
                Step::Complete => None,
                Step::Next(next) => Some(next),
            };
            listing.pages += 1;
            let now = self.clock.now();
            if let Some(next) = next {
                *listing = Listing {
                    pages: listing.pages,
                    ..next
                };
                let progress = serde_json::to_value(&*listing).expect("a listing serializes");
                g.tx.set_listing(res, Some(&progress), now).await?;
                // Not on shutdown: the next request would be wasted.
                if self.shutdown.is_cancelled() {
                    commit(&mut group).await?;
                    return Err(shutdown_stop(res));
                }
                // Usually requested already, while this page's last records were written.
                let query = self.page_query(res, listing);
                let mut next_page = match early {
                    Some(a) if a.query == query => a,
                    _ => self.request(res, query, listing.anchor.clone()),
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
            // Complete: deletions (for a complete listing) and the cursor commit with the last page,
            // and a backfill's indexes come back in the same transaction.
            let mut g = group.take().expect("the page's transaction");
            let tx = &mut g.tx;
            let mut refused = None;
            if listing.mode == Mode::Backfill {
                tx.restore_indexes(res).await?;
            }
            if listing.mode.complete_listing() {
                let unseen = tx.count_unseen(res, listing.first_run).await?;
                let live = if unseen > 20 {
                    tx.count_live(res).await?
                } else {
                    unseen
                };
                if unseen > 20 && (unseen as f64) > self.cfg.max_delete_fraction * live as f64 {
                    tracing::error!(
                        resource = res.name,
                        unseen,
                        live,
                        "a complete listing would mark too many records deleted: refusing (check the API)"
                    );
                    refused = Some(format!(
                        "{}: refused to mark {unseen} of {live} records deleted (more than {:.0}%): \
                         check the API access (an admin account?) before trusting this listing",
                        res.name,
                        self.cfg.max_delete_fraction * 100.0
                    ));
                } else if unseen > 0 {
                    stats.records_deleted +=
                        tx.mark_unseen_deleted(res, listing.first_run, now).await?;
                }
            }
            let signpost = listing
                .signpost
                .as_deref()
                .and_then(parse_api_time)
                .unwrap_or(now);
            tx.set_cursor(res, signpost, listing.mode.complete_listing(), now)
                .await?;
            g.commit().await?;
            if let Some(msg) = refused {
                return Err(Stop::Skip(msg));
            }
            tracing::info!(
                resource = res.name,
                mode = listing.mode.name(),
                pages = listing.pages,
                seen = stats.records_seen,
                changed = stats.records_changed,
                deleted = stats.records_deleted,
                "resource synced"
            );
            return Ok(());
        }
    }

    /// Fetches the listing's next page into the open transaction (`group`, begun if there is
    /// none), applying the error policy. `None`: the listing was re-planned (a full listing after
    /// a rejected cursor, or returned to its last commit) and its next query must be built again.
    ///
    /// A failure never leaves part of a page in the transaction: if the page had written rows,
    /// the transaction is rolled back with every page it held, the listing returns to its last
    /// commit and pages commit one by one from then on (so a page that keeps failing is retried
    /// and given up as it would be alone); if it had not, the whole pages before it commit.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_with_policy(
        &self,
        res: &'static Resource,
        run: i64,
        listing: &mut Listing,
        stats: &mut RunStats,
        mode_out: &mut Mode,
        mut ahead: Option<Ahead>,
        group: &mut Option<Group>,
        grouping: &mut bool,
    ) -> Result<Option<(PageInfo, Option<Ahead>)>, Stop> {
        let query = self.page_query(res, listing);
        let mut attempt = 0;
        loop {
            attempt += 1;
            if group.is_none() {
                *group = Some(Group {
                    tx: self.store.begin().await?,
                    records: 0,
                    seen: 0,
                    changed: 0,
                    committed: listing.clone(),
                });
            }
            let g = group.as_mut().expect("begun above");
            let requested = ahead
                .take()
                .unwrap_or_else(|| self.request(res, query.clone(), listing.anchor.clone()));
            let (err, touched) = match self
                .fetch_page(res, run, listing, requested, &mut g.tx)
                .await
            {
                Ok((info, next)) => {
                    g.records += info.received;
                    return Ok(Some((info, next)));
                }
                Err((PageError::Store(e), _)) => return Err(Stop::Fatal(e.to_string())),
                Err((PageError::Api(e), touched)) => (e, touched),
            };
            let mut returned = false;
            if touched {
                let lost = group.take().expect("the open transaction");
                stats.records_seen -= lost.seen;
                stats.records_changed -= lost.changed;
                if lost.records > 0 {
                    tracing::warn!(
                        resource = res.name,
                        pages_lost = listing.pages - lost.committed.pages,
                        "a page failed inside a transaction of several: they are read again, one commit each"
                    );
                    *listing = lost.committed;
                    *grouping = false;
                    returned = true;
                }
                // Dropped: rolled back.
            } else {
                commit(group).await?;
            }
            match api::error::action(err.class(), attempt, self.cfg.max_page_attempts) {
                Action::BackoffAndRetry | Action::WaitAndRetry => {
                    tracing::warn!(resource = res.name, error = %err, attempt, "page failed; retrying");
                    self.client.page_backoff(attempt).await;
                    if returned {
                        return Ok(None);
                    }
                }
                Action::Relist if listing.mode == Mode::Incremental => {
                    tracing::warn!(resource = res.name, error = %err, "the API rejected the incremental query: re-listing fully");
                    *listing = new_listing(Mode::Full, None, run);
                    *mode_out = Mode::Full;
                    return Ok(None);
                }
                Action::StopPass => return Err(Stop::Fatal(err.to_string())),
                _ => return Err(Stop::Skip(err.to_string())),
            }
        }
    }

    fn page_query(&self, res: &Resource, l: &Listing) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if res.incremental == Incremental::FullListing {
            // Messages and tags take no parameters at all: one request returns the collection.
            return q;
        }
        if res.incremental == Incremental::UpdatedSince
            && let Some(since) = l
                .keyset
                .as_deref()
                .or(l.since.as_deref())
                .and_then(parse_api_time)
        {
            q.push(("updated_since".to_string(), query_param(since)));
        }
        let order = if res.has_updated_at {
            "updated_at asc,id asc"
        } else {
            "id asc"
        };
        q.push(("$orderby".to_string(), order.to_string()));
        q.push(("$top".to_string(), self.cfg.page_size.to_string()));
        if l.skip > 0 {
            q.push(("$skip".to_string(), l.skip.to_string()));
        }
        q
    }

    /// Requests a page of `res` on a task of its own. Its records are parsed and prepared on the
    /// decoding thread, beside the writes of the page before, and noted there (`PageInfo`), so
    /// the page after can be requested as soon as this one is received in full.
    fn request(
        &self,
        res: &'static Resource,
        query: Vec<(String, String)>,
        anchor: Option<String>,
    ) -> Ahead {
        let client = self.client.clone();
        let q = query.clone();
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
                        .observe(&row, anchor.as_deref());
                    Ok(row)
                })
                .await?;
            Ok(Incoming { stream, seen })
        });
        Ahead {
            query,
            task: Some(task),
            answer: None,
        }
    }

    /// Where the listing goes after `page`.
    fn step(&self, res: &Resource, listing: &Listing, page: &PageInfo) -> Step {
        // The same page again: the endpoint ignores `$skip` and sent everything the first time.
        let repeated =
            listing.skip > 0 && page.first_id.is_some() && page.first_id == listing.prev_first;
        if !repeated && listing.skip > 0 && listing.anchor.is_some() && !page.anchor_found {
            return Step::Restart;
        }
        if !repeated && res.incremental != Incremental::FullListing && self.has_more(page) {
            let mut next = listing.clone();
            next.prev_first = page.first_id.clone();
            self.advance(&mut next, page);
            return Step::Next(next);
        }
        Step::Complete
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
        requested: Ahead,
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
                if !self.shutdown.is_cancelled()
                    && let Step::Next(l) = self.step(res, listing, &info(&seen))
                {
                    next = Some(self.request(res, self.page_query(res, &l), l.anchor.clone()));
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
    async fn write_batch(
        &self,
        tx: &mut store::Tx,
        res: &'static Resource,
        batch: &mut Vec<Row>,
        run: i64,
        now: DateTime<Utc>,
        listing: &Listing,
    ) -> Result<u64, PageError> {
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

    /// Whether the page may have more behind it: it filled `$top`, or its length is a round number
    /// a server-side cap could produce (pitfall 17: never trust a silently capped response).
    fn has_more(&self, page: &PageInfo) -> bool {
        let n = page.received;
        let top = u64::from(self.cfg.page_size);
        if n > top {
            // The server ignored `$top` and sent everything at once.
            return false;
        }
        n == top || (n >= 500 && n.is_multiple_of(500))
    }

    /// Moves the listing to its next page: by keyset on `updated_at` where the page is sorted by it,
    /// else by `$skip` with an overlap that detects shifts.
    fn advance(&self, listing: &mut Listing, page: &PageInfo) {
        let step = page.received.saturating_sub(SKIP_OVERLAP).max(1);
        if page.sorted_by_updated_at
            && let Some(last) = page.last_updated_at
        {
            // Reach back 1 ms so ties at the boundary are re-read whether the API's filter is
            // inclusive or exclusive; upserts make the re-read harmless.
            // Truncated to the stored precision first, so "progress" is judged on what is saved.
            let next = last - chrono::Duration::milliseconds(1);
            let next = parse_api_time(&canonical(next)).unwrap_or(next);
            let current = listing
                .keyset
                .as_deref()
                .or(listing.since.as_deref())
                .and_then(parse_api_time);
            if current.is_none_or(|c| next > c) {
                listing.keyset = Some(canonical(next));
                listing.skip = 0;
                listing.anchor = None;
                return;
            }
            // A full page of one timestamp: step through it by `$skip`.
        }
        listing.skip += step;
        listing.anchor = page.last_id.clone();
    }
}
