//! Paging decisions, as pure functions of the listing's state, the page received and the
//! endpoint's [`Dialect`]: which query a page sends, where the listing goes after a page (next
//! page, restart, done, stuck), how a list that cannot be paged is split by the API's own date
//! filters, and what each page teaches about the endpoint.
//!
//! The completeness rule: a listing is done only when its last page is empty or **shorter than
//! the endpoint's proven capacity** — the largest response it has ever returned, or what `$top`
//! asked for when that is smaller. A page of a size the endpoint may cap at is followed by one
//! more request, which settles it. Nothing is inferred from round numbers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::dialect::{Dialect, QueryOption, Since, Support};
use crate::record::{Row, Value};
use crate::resource::{Incremental, Resource};
use crate::time::{canonical, parse_api_time, query_param};

/// Records by which consecutive `$skip` pages overlap at most, so a shift caused by deletions
/// mid-scan is detected (the previous page's last id must reappear) instead of silently skipping
/// a record.
pub const SKIP_OVERLAP: u64 = 20;

/// The overlap after a page of `n` records: at most a quarter of it (at least one), so small
/// pages (a low cap) still advance by three quarters of a page.
pub fn overlap(n: u64) -> u64 {
    SKIP_OVERLAP.min((n / 4).max(1)).min(n.saturating_sub(1))
}

/// The signpost a listing takes from its first response: the server's `Date`, unless it is
/// further ahead of our clock than `tolerance` (then our clock).
pub fn signpost_of(
    server_date: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    tolerance: chrono::Duration,
) -> DateTime<Utc> {
    match server_date {
        Some(t) if t - now <= tolerance => t,
        _ => now,
    }
}

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
    /// Lists everything (and so may conclude deletions).
    pub fn complete_listing(self) -> bool {
        self != Mode::Incremental
    }
}

/// Where a listing stands between its requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Reading pages.
    #[default]
    Pages,
    /// Paging could not go on: one more page tells whether more records exist than it reached
    /// (the reverse order, or where the endpoint cannot order, the records newer than the
    /// newest seen).
    Reverse,
    /// Every page is in; deletion candidates are being confirmed by id.
    Confirm,
}

/// A window of the API's date partition: `date_from` / `date_to`, inclusive, canonical text
/// (None: unbounded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The resume point of a listing in flight, saved with every committed page.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Listing {
    pub mode: Mode,
    /// The `updated_since` of the listing (None: everything).
    pub since: Option<String>,
    /// The server's time when the listing began; becomes the cursor when it completes.
    pub signpost: Option<String>,
    /// The run that began the listing: records it saw have `seen_run >= first_run`.
    pub first_run: i64,
    /// Keyset position: the next page asks `updated_since` = this.
    pub keyset: Option<String>,
    pub skip: u64,
    /// Last id of the previous page when continuing by `$skip`.
    pub anchor: Option<String>,
    /// First id of the previous page: the same first id again means `$skip` is ignored.
    #[serde(default)]
    pub prev_first: Option<String>,
    pub pages: u32,
    /// Records in the previous page, and the `$top` it was asked with (None: none, or ignored):
    /// a short page followed by more proves the endpoint's cap.
    #[serde(default)]
    pub prev_len: u64,
    #[serde(default)]
    pub prev_top: Option<u64>,
    /// The previous page's last `updated_at` (keyset).
    #[serde(default)]
    pub prev_last: Option<String>,
    /// `$orderby`, `$top`, `$skip` dropped in this listing after a 400 that named them.
    #[serde(default)]
    pub omit_order: bool,
    #[serde(default)]
    pub omit_top: bool,
    #[serde(default)]
    pub omit_skip: bool,

    /// The length of a page that could not be continued: a cap is suspected there, whatever
    /// larger responses the endpoint gave before, so within this listing a page that long may
    /// be cut.
    #[serde(default)]
    pub suspect_cap: Option<u64>,
    /// The date partition: pending windows, the first being listed. Empty: not partitioned.
    #[serde(default)]
    pub windows: Vec<Window>,
    #[serde(default)]
    pub phase: Phase,
    /// The first id of the listing's first page (a reverse page starting with it: `$orderby`
    /// is ignored).
    #[serde(default)]
    pub first_id: Option<String>,
    /// Why parts of the listing could not be proven complete (empty: proven so far).
    #[serde(default)]
    pub unproven: Vec<String>,
    /// Records known to exist that the listing could not reach: it is reported incomplete.
    #[serde(default)]
    pub incomplete: Option<String>,
    /// The reverse page's `updated_since` where the endpoint cannot order: the newest
    /// `updated_at` of the stuck page.
    #[serde(default)]
    pub probe_since: Option<String>,
    /// Records seen by this listing before its reverse page (the reverse page adding some means
    /// more exist than paging can reach).
    #[serde(default)]
    pub seen_before_reverse: u64,
    /// The table was empty when this process began the listing (a first backfill): whatever it
    /// holds is this run's, so writes need not look up what is stored. Never saved: a resumed
    /// listing checks again.
    #[serde(skip)]
    pub new_table: bool,
    /// The records of the resource with issues noted when the run began: those received clean
    /// clear theirs. Never saved: read when the run begins.
    #[serde(skip)]
    pub with_issues: std::sync::Arc<std::collections::HashSet<String>>,
    /// New and changed records are queued for a by-id read (`sync::details`). Never saved: set
    /// when the run begins.
    #[serde(skip)]
    pub details: bool,
}

impl Listing {
    pub fn new(mode: Mode, since: Option<DateTime<Utc>>, first_run: i64) -> Listing {
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
            prev_len: 0,
            prev_top: None,
            prev_last: None,
            omit_order: false,
            omit_top: false,
            omit_skip: false,

            suspect_cap: None,
            windows: Vec::new(),
            phase: Phase::Pages,
            first_id: None,
            unproven: Vec::new(),
            incomplete: None,
            probe_since: None,
            seen_before_reverse: 0,
            new_table: false,
            with_issues: Default::default(),
            details: false,
        }
    }

    /// Nothing says the listing missed anything, and every page ended as the rule proves.
    pub fn proven(&self) -> bool {
        self.unproven.is_empty() && self.incomplete.is_none()
    }

    /// Notes that records exist which the listing could not reach (the first reason is kept).
    pub fn incomplete_evidence(&mut self, why: String) {
        self.incomplete.get_or_insert(why);
    }

    /// Back to the start of the current window (or of the listing), keeping what was learned.
    fn reset_position(&mut self) {
        self.keyset = None;
        self.skip = 0;
        self.anchor = None;
        self.prev_first = None;
        self.prev_len = 0;
        self.prev_top = None;
        self.prev_last = None;
    }

    /// The listing started over (records shifted under `$skip`).
    pub fn restarted(&self) -> Listing {
        let mut l = self.clone();
        l.reset_position();
        l
    }
}

/// What a page's request carried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub top: Option<u64>,
    pub skip: u64,
    /// `$orderby=updated_at ...` was sent.
    pub by_updated_at: bool,
    pub orderby: bool,
    pub since: Option<DateTime<Utc>>,
}

/// The page size asked for: the configured one, or the endpoint's proven cap when smaller.
pub fn page_size(configured: u32, d: &Dialect) -> u64 {
    let p = u64::from(configured.max(1));
    d.cap().map_or(p, |c| p.min(c.max(1)))
}

/// The query of the listing's next page, and what it carries.
pub fn query(
    res: &Resource,
    l: &Listing,
    d: &Dialect,
    configured: u32,
) -> (Vec<(String, String)>, Sent) {
    let mut q = Vec::new();
    let mut sent = Sent::default();
    let may_order = !l.omit_order && d.orderby() != Support::Rejected;
    let probe_since = (l.phase == Phase::Reverse && !may_order)
        .then_some(l.probe_since.as_deref())
        .flatten();
    if res.incremental == Incremental::UpdatedSince
        && let Some(since) = probe_since
            .or(l.keyset.as_deref())
            .or(l.since.as_deref())
            .and_then(parse_api_time)
    {
        q.push(("updated_since".to_string(), query_param(since)));
        sent.since = Some(since);
    }
    if let (Some(p), Some(w)) = (res.partition, l.windows.first()) {
        if let Some(from) = w.from.as_deref().and_then(parse_api_time) {
            q.push((p.from.to_string(), query_param(from)));
        }
        if let Some(to) = w.to.as_deref().and_then(parse_api_time) {
            q.push((p.to.to_string(), query_param(to)));
        }
    }
    if l.phase == Phase::Reverse && may_order {
        let field = if res.has_updated_at {
            "updated_at"
        } else {
            res.key
        };
        q.push(("$orderby".to_string(), format!("{field} desc")));
        sent.orderby = true;
    } else if res.incremental == Incremental::UpdatedSince && may_order {
        let order = if res.has_updated_at {
            sent.by_updated_at = true;
            "updated_at asc,id asc"
        } else {
            "id asc"
        };
        q.push(("$orderby".to_string(), order.to_string()));
        sent.orderby = true;
    }
    if !l.omit_top && d.top() != Support::Rejected {
        let p = page_size(configured, d);
        q.push(("$top".to_string(), p.to_string()));
        sent.top = Some(p);
    }
    if !l.omit_skip && l.skip > 0 && d.skip() != Support::Rejected && l.phase != Phase::Reverse {
        q.push(("$skip".to_string(), l.skip.to_string()));
        sent.skip = l.skip;
    }
    (q, sent)
}

/// What the decoding thread is told to look for in a page.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// The previous page's last id (paging by `$skip`).
    pub anchor: Option<String>,
    /// How far into the page the anchor may appear (the overlap, plus one insertion).
    pub anchor_within: u64,
    /// The previous page's last `updated_at` (keyset).
    pub prev_last: Option<DateTime<Utc>>,
    pub signpost: Option<DateTime<Utc>>,
    /// The `updated_since` sent.
    pub since: Option<DateTime<Utc>>,
    /// The partition's column, when the resource has one.
    pub date_column: Option<usize>,
}

impl Expect {
    pub fn new(res: &Resource, l: &Listing, sent: &Sent) -> Expect {
        Expect {
            anchor: if sent.skip > 0 {
                l.anchor.clone()
            } else {
                None
            },
            anchor_within: overlap(l.prev_len) + 1,
            prev_last: l.prev_last.as_deref().and_then(parse_api_time),
            signpost: l.signpost.as_deref().and_then(parse_api_time),
            since: sent.since,
            date_column: res.partition_column(),
        }
    }
}

/// What one page held. All but `changed` and `server_date` is noted on the decoding thread as
/// records are prepared, so it is known once the page is received, before it is written.
#[derive(Clone, Debug, Default)]
pub struct PageInfo {
    pub received: u64,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub last_updated_at: Option<DateTime<Utc>>,
    pub first_updated_at: Option<DateTime<Utc>>,
    pub max_updated_at: Option<DateTime<Utc>>,
    pub sorted_by_updated_at: bool,
    /// Whether `created_at` never decreased: a page in `updated_at` order that is not also in
    /// `created_at` order proves the endpoint sorts by `updated_at` (a natural order by creation
    /// would be sorted by both).
    pub sorted_by_created_at: bool,
    pub last_created_at: Option<DateTime<Utc>>,
    pub anchor_found: bool,
    /// Records after the anchor (paging by `$skip`), and those of them that existed when the
    /// listing began (not stamped after the signpost).
    pub past_anchor: u64,
    pub past_anchor_old: u64,
    /// Records after the anchor without an `updated_at` to tell their age by.
    pub past_anchor_unstamped: u64,
    /// Records stamped after the signpost (changed while the listing ran).
    pub after_signpost: u64,
    /// Records newer than the previous page's last and not newer than the signpost: they
    /// existed when the listing began, and the previous page did not hold them (keyset).
    pub beyond_prev: u64,
    /// Records older than the `updated_since` sent by more than a second: it was not applied.
    pub older_than_since: u64,
    /// A record whose `updated_at` equals the `updated_since` sent: the filter is inclusive.
    pub at_since: bool,
    /// The [`crate::time::stamp_form`]s of `updated_at` seen.
    pub forms: u32,
    /// Business dates of the partition's column (one per record that has one).
    pub dates: Vec<DateTime<Utc>>,
    pub null_dates: u64,
    pub changed: u64,
    pub server_date: Option<DateTime<Utc>>,
}

impl PageInfo {
    pub fn new() -> Self {
        PageInfo {
            sorted_by_updated_at: true,
            sorted_by_created_at: true,
            ..Default::default()
        }
    }

    /// Takes the next record of the page into account.
    pub fn observe(&mut self, row: &Row, e: &Expect) {
        if let Some(c) = row.created_at {
            if self.last_created_at.is_some_and(|prev| c < prev) {
                self.sorted_by_created_at = false;
            }
            self.last_created_at = Some(c);
        }
        let old = row
            .updated_at
            .is_none_or(|t| e.signpost.is_none_or(|s| t <= s));
        if !old {
            self.after_signpost += 1;
        }
        if let Some(t) = row.updated_at {
            if self.last_updated_at.is_some_and(|prev| t < prev) {
                self.sorted_by_updated_at = false;
            }
            self.last_updated_at = Some(t);
            self.first_updated_at.get_or_insert(t);
            if self.max_updated_at.is_none_or(|m| t > m) {
                self.max_updated_at = Some(t);
            }
            // `prev_last` was saved at the stored precision (microseconds): compare at it, or the
            // previous page's own last record (7 digits) would look newer than itself.
            let stored =
                t - chrono::Duration::nanoseconds(i64::from(t.timestamp_subsec_nanos() % 1000));
            if e.prev_last.is_some_and(|p| stored > p) && e.signpost.is_none_or(|s| t <= s) {
                self.beyond_prev += 1;
            }
            if let Some(since) = e.since {
                if t < since - chrono::Duration::seconds(1) {
                    self.older_than_since += 1;
                } else if t == since {
                    self.at_since = true;
                }
            }
        }
        if let Some(f) = row.stamp_form {
            self.forms |= 1 << (u32::from(f) & 31);
        }
        if let Some(i) = e.date_column {
            match row.columns.get(i) {
                Some(Value::Time(t)) => self.dates.push(*t),
                _ => self.null_dates += 1,
            }
        }
        if self.anchor_found {
            self.past_anchor += 1;
            match row.updated_at {
                Some(_) if old => self.past_anchor_old += 1,
                Some(_) => {}
                None => self.past_anchor_unstamped += 1,
            }
        } else if self.received < e.anchor_within && e.anchor.as_deref() == Some(row.id.as_str()) {
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

/// Where a listing goes after a page.
#[derive(Debug)]
pub enum Step {
    /// Records shifted under `$skip` (deletions mid-scan): start the listing again.
    Restart,
    /// The listing (or its current window) is done: its last page was proven short.
    Done,
    /// More pages: the listing as advanced to the next one.
    Next(Box<Listing>),
    /// The page may be cut and the endpoint offers no way to the records after it.
    Stuck(String),
}

/// Whether the page could have been cut by the endpoint: it is not shorter than what the
/// endpoint is proven able to return in one response (`d` as known before this page).
pub fn maybe_cut(l: &Listing, page: &PageInfo, sent: &Sent, d: &Dialect) -> bool {
    let n = page.received;
    if n == 0 {
        return false;
    }
    let floor = l.suspect_cap.map_or(d.largest(), |c| c.min(d.largest()));
    let top_ignored = d.top() == Support::Ignored || sent.top.is_some_and(|p| n > p);
    let full_at = match sent.top {
        Some(p) if !top_ignored => p.min(floor),
        _ => floor,
    };
    n >= full_at
}

/// The `$skip` paging of the page was ignored: the same first record as the page before.
pub fn skip_repeated(l: &Listing, page: &PageInfo, sent: &Sent) -> bool {
    // The very same page: first and last record and length (a record inserted before the
    // position shifts a small page by one, which repeats only its first record).
    sent.skip > 0
        && page.first_id.is_some()
        && page.first_id == l.prev_first
        && page.last_id == l.anchor
        && page.received == l.prev_len
}

/// The page proves the endpoint sorts by `updated_at`: in that order, and not also in the
/// order records were created.
pub fn proves_order(page: &PageInfo) -> bool {
    page.received >= 8
        && page.sorted_by_updated_at
        && !page.sorted_by_created_at
        && page.first_updated_at < page.last_updated_at
}

/// Where the listing goes after `page` (`d`: the dialect as known before it).
pub fn step(res: &Resource, l: &Listing, page: &PageInfo, sent: &Sent, d: &Dialect) -> Step {
    let repeated = skip_repeated(l, page, sent);
    if !repeated && sent.skip > 0 && l.anchor.is_some() && !page.anchor_found {
        return Step::Restart;
    }
    let short = !maybe_cut(l, page, sent, d);
    if repeated {
        // The page before, again: whether it was all there is, nothing here can tell (a page
        // short of the largest ever may still be a new, lower cap).
        return Step::Stuck(format!(
            "the endpoint ignores $skip (asked $skip={}, got its first page again)",
            sent.skip
        ));
    }
    // A short page ends an incremental listing. A complete listing (the one deletions are
    // concluded from) settles its last page with one more request: a capacity learned before
    // the endpoint began capping lower would otherwise make a cut page look short.
    let settle = short;
    if short {
        let continuation = sent.skip > 0 || l.keyset.is_some();
        let nothing_new = if sent.skip > 0 {
            page.past_anchor == 0
        } else {
            page.beyond_prev == 0
        };
        if page.received == 0 || !l.mode.complete_listing() || continuation && nothing_new {
            return Step::Done;
        }
    }
    let since_ok = res.incremental == Incremental::UpdatedSince && d.since() != Since::Ignored;
    let mut next = l.clone();
    next.prev_first = page.first_id.clone();
    next.prev_len = page.received;
    next.prev_top = sent
        .top
        .filter(|p| page.received <= *p && d.top() != Support::Ignored);
    next.prev_last = page.last_updated_at.map(canonical);
    // Keyset only on an order proven: a natural order that happens to look sorted (records
    // created in order, never edited) would jump over records created after one edited late.
    let ordered = d.orderby() == Support::Honoured || proves_order(page);
    if since_ok
        && sent.by_updated_at
        && page.sorted_by_updated_at
        && ordered
        && let Some(last) = page.last_updated_at
    {
        // Reach back 1 ms so ties at the boundary are re-read whether the API's filter is
        // inclusive or exclusive, and a stamp of 1/300 s stored below its rendering is not lost
        // (practicepanther-api.md §7.1); upserts make the re-read harmless. Truncated to the
        // stored precision first, so "progress" is judged on what is saved.
        let k = last - chrono::Duration::milliseconds(1);
        let k = parse_api_time(&canonical(k)).unwrap_or(k);
        let current = l
            .keyset
            .as_deref()
            .or(l.since.as_deref())
            .and_then(parse_api_time);
        if current.is_none_or(|c| k > c) {
            next.keyset = Some(canonical(k));
            next.skip = 0;
            next.anchor = None;
            return Step::Next(Box::new(next));
        }
        // A full page of one timestamp: step through it by `$skip`.
    }
    if l.omit_skip || !d.skip().usable() {
        if settle {
            // No way to ask for more: the capacity rule is all there is.
            return Step::Done;
        }
        let why = if l.omit_skip || d.skip() == Support::Rejected {
            "the endpoint rejects $skip"
        } else {
            "the endpoint ignores $skip"
        };
        return Step::Stuck(why.to_string());
    }
    next.skip += page.received - overlap(page.received);
    next.anchor = page.last_id.clone();
    Step::Next(Box::new(next))
}

/// Learns from a page what it shows of the endpoint; true when the dialect changed. `l` is the
/// listing the page was requested for.
pub fn learn(
    d: &mut Dialect,
    l: &Listing,
    page: &PageInfo,
    sent: &Sent,
    at: DateTime<Utc>,
) -> bool {
    let n = page.received;
    let mut changed = false;
    // A short page followed by records it did not hold proves the endpoint cut it there.
    let more_followed = l.phase == Phase::Pages
        && if sent.skip > 0 {
            // Beyond the anchor, records that existed when the listing began (without stamps to
            // tell, two: one created meanwhile is likelier than a cut).
            page.anchor_found
                && !skip_repeated(l, page, sent)
                && (page.past_anchor_old > 0 || page.past_anchor_unstamped >= 2)
        } else {
            sent.by_updated_at
                && l.keyset.is_some()
                && l.prev_last.is_some()
                && page.beyond_prev > 0
        };
    if l.prev_len > 0 && l.prev_top.is_none_or(|p| l.prev_len < p) && more_followed {
        changed |= d.proved_cap(
            l.prev_len,
            &format!(
                "a response of {} records{} was followed by more",
                l.prev_len,
                l.prev_top
                    .map(|p| format!(" to $top={p}"))
                    .unwrap_or_default()
            ),
            at,
        );
    }
    changed |= d.saw_page(n, at);
    if let Some(p) = sent.top {
        if n > p {
            changed |= d.set(
                QueryOption::Top,
                Support::Ignored,
                &format!("asked $top={p}, got {n} records"),
                at,
            );
        } else if n == p && d.top() == Support::Unknown {
            changed |= d.set(
                QueryOption::Top,
                Support::Honoured,
                &format!("asked $top={p}, got {p} records"),
                at,
            );
        }
    }
    if sent.skip > 0 {
        if skip_repeated(l, page, sent) {
            changed |= d.set(
                QueryOption::Skip,
                Support::Ignored,
                &format!("asked $skip={}, got the first page again", sent.skip),
                at,
            );
        } else if page.anchor_found && d.skip() == Support::Unknown {
            changed |= d.set(
                QueryOption::Skip,
                Support::Honoured,
                &format!(
                    "asked $skip={}, the page continued the one before",
                    sent.skip
                ),
                at,
            );
        }
    }
    if sent.by_updated_at && n >= 2 {
        if !page.sorted_by_updated_at {
            changed |= d.set(
                QueryOption::OrderBy,
                Support::Ignored,
                "asked $orderby=updated_at, got records out of that order",
                at,
            );
        } else if proves_order(page) && d.orderby() == Support::Unknown {
            changed |= d.set(
                QueryOption::OrderBy,
                Support::Honoured,
                &format!(
                    "asked $orderby=updated_at, got {n} records in that order and not in \
                     the order they were created"
                ),
                at,
            );
        }
    }
    if l.phase == Phase::Reverse && sent.orderby && n >= 2 && page.first_id == l.first_id {
        changed |= d.set(
            QueryOption::OrderBy,
            Support::Ignored,
            "asked for the reverse order, got the same first record",
            at,
        );
    }
    if l.omit_order && d.orderby() != Support::Rejected {
        changed |= d.set(
            QueryOption::OrderBy,
            Support::Rejected,
            "answered 400 naming it, and the query without it",
            at,
        );
    }
    for (omitted, opt) in [
        (l.omit_top, QueryOption::Top),
        (l.omit_skip, QueryOption::Skip),
    ] {
        let known = match opt {
            QueryOption::Top => d.top(),
            _ => d.skip(),
        };
        if omitted && known != Support::Rejected {
            changed |= d.set(
                opt,
                Support::Rejected,
                "answered 400 naming it, and the query without it",
                at,
            );
        }
    }
    if sent.since.is_some() {
        if page.older_than_since > 0 {
            changed |= d.set_since(
                Since::Ignored,
                &format!(
                    "asked updated_since, got {} older records",
                    page.older_than_since
                ),
                at,
            );
        } else if page.at_since && d.since() == Since::Unknown {
            changed |= d.set_since(
                Since::Inclusive,
                "a record stamped exactly the updated_since sent came back",
                at,
            );
        }
    }
    changed |= d.saw_forms(page.forms);
    changed
}

/// Splits the current window of a page that was stuck at the endpoint's cap, at the median
/// business date of the page, into the dates before it, a window of a second either side of it,
/// and the dates after. The windows overlap (re-reading is free), so a date stored finer than it
/// is rendered, or a filter rounding to its own precision, leaves no record between two windows.
/// `Err` says why the window cannot be split. `page.dates` is sorted here.
pub fn split(l: &Listing, page: &mut PageInfo) -> Result<Vec<Window>, String> {
    if page.null_dates > 0 {
        return Err(format!(
            "{} records have no business date, so the date filters cannot partition the list",
            page.null_dates
        ));
    }
    let current = l.windows.first().cloned().unwrap_or(Window {
        from: None,
        to: None,
    });
    let lo = current.from.as_deref().and_then(parse_api_time);
    let hi = current.to.as_deref().and_then(parse_api_time);
    let second = chrono::Duration::seconds(1);
    // A window's page holding records well outside it: the filters are not applied as named.
    if page
        .dates
        .iter()
        .any(|t| lo.is_some_and(|l| *t < l - second) || hi.is_some_and(|h| *t > h + second))
    {
        return Err(
            "the date filters are not applied (a window's page held records dated outside it)"
                .into(),
        );
    }
    page.dates
        .retain(|t| lo.is_none_or(|l| *t >= l) && hi.is_none_or(|h| *t <= h));
    page.dates.sort_unstable();
    let Some(&mid) = page.dates.get(page.dates.len() / 2) else {
        return Err("the page held no business dates to split by".to_string());
    };
    let ms = chrono::Duration::milliseconds(1);
    let clip_lo = |t: DateTime<Utc>| lo.map_or(t, |l| t.max(l));
    let clip_hi = |t: DateTime<Utc>| hi.map_or(t, |h| t.min(h));
    let middle = Window {
        from: Some(canonical(clip_lo(mid - second))),
        to: Some(canonical(clip_hi(mid + second))),
    };
    if lo.is_some_and(|l| l >= mid - second) && hi.is_some_and(|h| h <= mid + second) {
        return Err(format!(
            "more records than one response holds are dated within a second of {}",
            canonical(mid)
        ));
    }
    let mut out = Vec::with_capacity(3);
    if lo.is_none_or(|l| l <= mid - ms) {
        out.push(Window {
            from: lo.map(canonical),
            to: Some(canonical(mid - ms)),
        });
    }
    out.push(middle);
    if hi.is_none_or(|h| mid + ms <= h) {
        out.push(Window {
            from: Some(canonical(mid + ms)),
            to: hi.map(canonical),
        });
    }
    Ok(out)
}

/// The listing after its current window (or the whole listing) is done: the next window, if
/// any remains.
pub fn next_window(l: &Listing) -> Option<Listing> {
    if l.windows.len() <= 1 {
        return None;
    }
    let mut next = l.clone();
    next.windows.remove(0);
    next.reset_position();
    Some(next)
}

/// The listing with its current window replaced by `windows` (the date partition begins, or a
/// window is split further).
pub fn partitioned(l: &Listing, windows: Vec<Window>) -> Listing {
    let mut next = l.clone();
    if !next.windows.is_empty() {
        next.windows.remove(0);
    }
    let mut all = windows;
    all.append(&mut next.windows);
    next.windows = all;
    next.reset_position();
    next
}

#[cfg(test)]
mod tests;
