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

/// Records by which consecutive `$skip` pages overlap, so a shift caused by deletions mid-scan
/// is detected (the previous page's last id must reappear) instead of silently skipping a record.
pub const SKIP_OVERLAP: u64 = 20;

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
            windows: Vec::new(),
            phase: Phase::Pages,
            first_id: None,
            unproven: Vec::new(),
            incomplete: None,
            probe_since: None,
            seen_before_reverse: 0,
            new_table: false,
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
    pub anchor_found: bool,
    /// Records after the anchor (paging by `$skip`).
    pub past_anchor: u64,
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
            ..Default::default()
        }
    }

    /// Takes the next record of the page into account.
    pub fn observe(&mut self, row: &Row, e: &Expect) {
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
        } else if self.received < SKIP_OVERLAP + 1 && e.anchor.as_deref() == Some(row.id.as_str()) {
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
pub fn maybe_cut(page: &PageInfo, sent: &Sent, d: &Dialect) -> bool {
    let n = page.received;
    if n == 0 {
        return false;
    }
    let floor = d.largest();
    let top_ignored = d.top() == Support::Ignored || sent.top.is_some_and(|p| n > p);
    let full_at = match sent.top {
        Some(p) if !top_ignored => p.min(floor),
        _ => floor,
    };
    n >= full_at
}

/// The `$skip` paging of the page was ignored: the same first record as the page before.
pub fn skip_repeated(l: &Listing, page: &PageInfo, sent: &Sent) -> bool {
    sent.skip > 0 && page.first_id.is_some() && page.first_id == l.prev_first
}

/// Where the listing goes after `page` (`d`: the dialect as known before it).
pub fn step(res: &Resource, l: &Listing, page: &PageInfo, sent: &Sent, d: &Dialect) -> Step {
    let repeated = skip_repeated(l, page, sent);
    if !repeated && sent.skip > 0 && l.anchor.is_some() && !page.anchor_found {
        return Step::Restart;
    }
    if !maybe_cut(page, sent, d) {
        return Step::Done;
    }
    if repeated {
        return Step::Stuck(format!(
            "the endpoint ignores $skip (asked $skip={}, got its first page again)",
            sent.skip
        ));
    }
    let since_ok = res.incremental == Incremental::UpdatedSince && d.since() != Since::Ignored;
    let mut next = l.clone();
    next.prev_first = page.first_id.clone();
    next.prev_len = page.received;
    next.prev_top = sent
        .top
        .filter(|p| page.received <= *p && d.top() != Support::Ignored);
    next.prev_last = page.last_updated_at.map(canonical);
    if since_ok
        && sent.by_updated_at
        && page.sorted_by_updated_at
        && d.orderby() != Support::Ignored
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
        let why = if l.omit_skip || d.skip() == Support::Rejected {
            "the endpoint rejects $skip"
        } else {
            "the endpoint ignores $skip"
        };
        return Step::Stuck(why.to_string());
    }
    next.skip += page.received.saturating_sub(SKIP_OVERLAP).max(1);
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
            page.anchor_found && page.past_anchor > 0 && !skip_repeated(l, page, sent)
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
        } else if n >= 8
            && page.first_updated_at < page.last_updated_at
            && d.orderby() == Support::Unknown
        {
            changed |= d.set(
                QueryOption::OrderBy,
                Support::Honoured,
                &format!("asked $orderby=updated_at, got {n} records in that order"),
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
/// business date of the page, into the dates before it, the instant itself and the dates after
/// (business dates carry no fraction below a millisecond: practicepanther-api.md §4.1). `Err`
/// says why the window cannot be split. `page.dates` is sorted here.
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
    page.dates
        .retain(|t| lo.is_none_or(|l| *t >= l) && hi.is_none_or(|h| *t <= h));
    page.dates.sort_unstable();
    let Some(&mid) = page.dates.get(page.dates.len() / 2) else {
        return Err("the page held no business dates to split by".to_string());
    };
    if lo == Some(mid) && hi == Some(mid) {
        return Err(format!(
            "more records than one response holds share the date {}",
            canonical(mid)
        ));
    }
    let ms = chrono::Duration::milliseconds(1);
    let mut out = Vec::with_capacity(3);
    if lo.is_none_or(|l| l <= mid - ms) {
        out.push(Window {
            from: lo.map(canonical),
            to: Some(canonical(mid - ms)),
        });
    }
    out.push(Window {
        from: Some(canonical(mid)),
        to: Some(canonical(mid)),
    });
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
mod tests {
    use super::*;
    use crate::resource::find;

    fn t(s: &str) -> DateTime<Utc> {
        parse_api_time(s).unwrap()
    }

    fn at() -> DateTime<Utc> {
        t("2026-12-03T10:00:00Z")
    }

    fn page(n: u64, first: &str, last: &str) -> PageInfo {
        PageInfo {
            received: n,
            first_id: (n > 0).then(|| first.to_string()),
            last_id: (n > 0).then(|| last.to_string()),
            last_updated_at: (n > 0).then(|| t("2026-11-02T10:00:00")),
            first_updated_at: (n > 0).then(|| t("2026-11-01T10:00:00")),
            sorted_by_updated_at: true,
            ..PageInfo::default()
        }
    }

    fn dialect(largest: u64, top: Support, skip: Support) -> Dialect {
        let mut d = Dialect::default();
        if largest > 0 {
            d.saw_page(largest, at());
        }
        d.set(QueryOption::Top, top, "test", at());
        d.set(QueryOption::Skip, skip, "test", at());
        d
    }

    fn sent(top: Option<u64>, skip: u64, by_updated_at: bool) -> Sent {
        Sent {
            top,
            skip,
            by_updated_at,
            orderby: by_updated_at,
            since: None,
        }
    }

    fn kind(s: &Step) -> String {
        match s {
            Step::Restart => "restart".into(),
            Step::Done => "done".into(),
            Step::Next(l) if l.skip > 0 => format!("next skip={}", l.skip),
            Step::Next(_) => "next keyset".into(),
            Step::Stuck(why) => format!("stuck: {why}"),
        }
    }

    #[test]
    fn the_completeness_rule() {
        use Support::*;
        let matters = find("matters").unwrap();
        let contacts = find("contacts").unwrap();
        let messages = find("messages").unwrap();
        let first = Listing::new(Mode::Backfill, None, 1);
        let mut second = first.clone();
        second.skip = 30;
        second.anchor = Some("z".into());
        second.prev_first = Some("a".into());
        let mut found = page(40, "k", "z9");
        found.anchor_found = true;
        // (case, resource, listing, page, sent, dialect before the page, expected)
        let cases: Vec<(&str, &str, &Listing, PageInfo, Sent, Dialect, &str)> = vec![
            (
                "empty page",
                "matters",
                &first,
                page(0, "", ""),
                sent(Some(2500), 0, true),
                dialect(0, Unknown, Unknown),
                "done",
            ),
            (
                "first page ever, short of $top: the capacity is unknown, one more settles it",
                "matters",
                &first,
                page(37, "a", "z"),
                sent(Some(2500), 0, true),
                dialect(0, Unknown, Unknown),
                "next keyset",
            ),
            (
                "shorter than the largest response seen: proven",
                "matters",
                &first,
                page(36, "a", "z"),
                sent(Some(2500), 0, true),
                dialect(37, Unknown, Unknown),
                "done",
            ),
            (
                "as long as the largest response seen: may be cut",
                "matters",
                &first,
                page(37, "a", "z"),
                sent(Some(2500), 0, true),
                dialect(37, Unknown, Unknown),
                "next keyset",
            ),
            (
                "a full page of $top",
                "matters",
                &first,
                page(2500, "a", "z"),
                sent(Some(2500), 0, true),
                dialect(2500, Honoured, Honoured),
                "next keyset",
            ),
            (
                "shorter than $top once $top is proven",
                "matters",
                &first,
                page(2499, "a", "z"),
                sent(Some(2500), 0, true),
                dialect(2500, Honoured, Honoured),
                "done",
            ),
            (
                "$top ignored, everything sent at once: one more settles it",
                "contacts",
                &first,
                page(3000, "a", "z"),
                sent(Some(2500), 0, false),
                dialect(0, Unknown, Unknown),
                "next skip=2980",
            ),
            (
                "$top ignored, shorter than the largest response",
                "contacts",
                &first,
                page(2999, "a", "z"),
                sent(Some(2500), 0, false),
                dialect(3000, Ignored, Unknown),
                "done",
            ),
            (
                "the anchor missing: records shifted",
                "contacts",
                &second,
                page(40, "k", "z9"),
                sent(Some(40), 30, false),
                dialect(40, Honoured, Honoured),
                "restart",
            ),
            (
                "the anchor found, a full page: go on",
                "contacts",
                &second,
                found.clone(),
                sent(Some(40), 30, false),
                dialect(40, Honoured, Honoured),
                "next skip=50",
            ),
            (
                "the first page again: $skip is ignored",
                "contacts",
                &second,
                page(40, "a", "z"),
                sent(Some(2500), 30, false),
                dialect(40, Unknown, Unknown),
                "stuck: the endpoint ignores $skip (asked $skip=30, got its first page again)",
            ),
            (
                "$skip known ignored: no request wasted",
                "contacts",
                &first,
                page(40, "a", "z"),
                sent(Some(2500), 0, false),
                dialect(40, Unknown, Ignored),
                "stuck: the endpoint ignores $skip",
            ),
            (
                "paging rejected: the whole list or a cut, unprovable",
                "messages",
                &first,
                page(30, "a", "z"),
                sent(None, 0, false),
                dialect(30, Rejected, Rejected),
                "stuck: the endpoint rejects $skip",
            ),
            (
                "$top rejected, $skip honoured: pages by $skip alone",
                "contacts",
                &first,
                page(30, "a", "z"),
                sent(None, 0, false),
                dialect(30, Rejected, Honoured),
                "next skip=10",
            ),
            (
                "a no-parameter list shorter than it has been: proven",
                "messages",
                &first,
                page(29, "a", "z"),
                sent(Some(2500), 0, false),
                dialect(30, Ignored, Ignored),
                "done",
            ),
        ];
        for (case, res, l, p, s, d, want) in cases {
            let res = match res {
                "matters" => matters,
                "contacts" => contacts,
                _ => messages,
            };
            assert_eq!(kind(&step(res, l, &p, &s, &d)), want, "{case}");
        }
    }

    #[test]
    fn keyset_falls_back_to_skip_when_order_or_filter_fail() {
        let matters = find("matters").unwrap();
        let l = Listing::new(Mode::Backfill, None, 1);
        let d = dialect(40, Support::Honoured, Support::Honoured);
        let mut p = page(40, "a", "z");
        p.sorted_by_updated_at = false;
        assert_eq!(
            kind(&step(matters, &l, &p, &sent(Some(40), 0, true), &d)),
            "next skip=20",
            "records out of order: the order is ignored"
        );
        let mut d2 = d.clone();
        d2.set_since(Since::Ignored, "test", at());
        assert_eq!(
            kind(&step(
                matters,
                &l,
                &page(40, "a", "z"),
                &sent(Some(40), 0, true),
                &d2
            )),
            "next skip=20",
            "updated_since ignored: keyset cannot narrow"
        );
        // A page full of one timestamp: no progress by keyset.
        let mut tie = l.clone();
        tie.keyset = Some(canonical(
            t("2026-11-02T10:00:00") - chrono::Duration::milliseconds(1),
        ));
        assert_eq!(
            kind(&step(
                matters,
                &tie,
                &page(40, "a", "z"),
                &sent(Some(40), 0, true),
                &d
            )),
            "next skip=20"
        );
    }

    #[test]
    fn learning_from_pages() {
        let mut d = Dialect::default();
        let l = Listing::new(Mode::Backfill, None, 1);
        // $top ignored: more records than asked.
        assert!(learn(
            &mut d,
            &l,
            &page(60, "a", "z"),
            &sent(Some(50), 0, true),
            at()
        ));
        assert_eq!(d.top(), Support::Ignored);
        assert_eq!(d.largest(), 60);
        // A short page (7 of 50) followed by a page holding older records beyond it: the cap is 7.
        let mut d = Dialect::default();
        let mut next = l.clone();
        next.prev_len = 7;
        next.prev_top = Some(50);
        next.prev_last = Some("2026-11-01T00:00:00.000000Z".into());
        next.keyset = next.prev_last.clone();
        let mut p = page(7, "h", "n");
        p.beyond_prev = 6;
        learn(&mut d, &next, &p, &sent(Some(50), 0, true), at());
        assert_eq!(d.cap(), Some(7));
        assert_eq!(page_size(2500, &d), 7);
        // ... but a following page holding only the boundary's ties proves nothing.
        let mut d = Dialect::default();
        learn(
            &mut d,
            &next,
            &page(1, "g", "g"),
            &sent(Some(50), 0, true),
            at(),
        );
        assert_eq!(d.cap(), None);
        // $skip ignored.
        let mut d = Dialect::default();
        let mut again = l.clone();
        again.skip = 30;
        again.prev_first = Some("a".into());
        learn(
            &mut d,
            &again,
            &page(50, "a", "z"),
            &sent(Some(2500), 30, false),
            at(),
        );
        assert_eq!(d.skip(), Support::Ignored);
        // Out of order: $orderby ignored; older than asked: updated_since ignored.
        let mut d = Dialect::default();
        let mut p = page(10, "a", "z");
        p.sorted_by_updated_at = false;
        p.older_than_since = 3;
        let mut s = sent(Some(50), 0, true);
        s.since = Some(t("2026-11-01T00:00:00"));
        learn(&mut d, &l, &p, &s, at());
        assert_eq!(d.orderby(), Support::Ignored);
        assert_eq!(d.since(), Since::Ignored);
        // Options dropped after a 400 are learned as rejected.
        let mut d = Dialect::default();
        let mut dropped = l.clone();
        dropped.omit_order = true;
        learn(
            &mut d,
            &dropped,
            &page(3, "a", "c"),
            &sent(Some(50), 0, false),
            at(),
        );
        assert_eq!(d.orderby(), Support::Rejected);
    }

    #[test]
    fn the_query_follows_the_dialect() {
        let matters = find("matters").unwrap();
        let mut l = Listing::new(Mode::Incremental, Some(t("2026-11-02T00:00:00")), 1);
        let names = |q: &[(String, String)]| {
            q.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        };
        let d = Dialect::default();
        let (q, s) = query(matters, &l, &d, 2500);
        assert_eq!(
            names(&q),
            "updated_since=2026-11-02T00:00:00.000+00:00&$orderby=updated_at asc,id asc&$top=2500"
        );
        assert!(s.by_updated_at);
        let mut d = Dialect::default();
        d.proved_cap(300, "test", at());
        d.set(QueryOption::OrderBy, Support::Rejected, "test", at());
        l.skip = 280;
        let (q, s) = query(matters, &l, &d, 2500);
        assert_eq!(
            names(&q),
            "updated_since=2026-11-02T00:00:00.000+00:00&$top=300&$skip=280"
        );
        assert!(!s.by_updated_at);
        l.omit_top = true;
        l.omit_skip = true;
        let (q, _) = query(matters, &l, &d, 2500);
        assert_eq!(names(&q), "updated_since=2026-11-02T00:00:00.000+00:00");
        // A window of the date partition.
        let invoices = find("invoices").unwrap();
        let mut w = Listing::new(Mode::Full, None, 1);
        w.windows = vec![Window {
            from: Some("2026-01-01T20:00:00.000000Z".into()),
            to: None,
        }];
        let (q, _) = query(invoices, &w, &Dialect::default(), 2500);
        assert_eq!(
            names(&q),
            "date_from=2026-01-01T20:00:00.000+00:00&$orderby=updated_at asc,id asc&$top=2500"
        );
        // Messages: no order; a reverse page orders by the key.
        let messages = find("messages").unwrap();
        let mut m = Listing::new(Mode::Full, None, 1);
        assert_eq!(
            names(&query(messages, &m, &Dialect::default(), 2500).0),
            "$top=2500"
        );
        m.phase = Phase::Reverse;
        assert_eq!(
            names(&query(messages, &m, &Dialect::default(), 2500).0),
            "$orderby=id desc&$top=2500"
        );
    }

    #[test]
    fn windows_split_at_the_median_date_and_cover_everything() {
        let l = Listing::new(Mode::Full, None, 1);
        let mut p = page(5, "a", "e");
        p.dates = [
            "2026-03-01",
            "2026-01-01",
            "2026-02-01",
            "2026-05-01",
            "2026-04-01",
        ]
        .iter()
        .map(|d| t(&format!("{d}T20:00:00")))
        .collect();
        let w = split(&l, &mut p).unwrap();
        assert_eq!(
            w,
            vec![
                Window {
                    from: None,
                    to: Some("2026-03-01T19:59:59.999000Z".into())
                },
                Window {
                    from: Some("2026-03-01T20:00:00.000000Z".into()),
                    to: Some("2026-03-01T20:00:00.000000Z".into())
                },
                Window {
                    from: Some("2026-03-01T20:00:00.001000Z".into()),
                    to: None
                },
            ]
        );
        let l2 = partitioned(&l, w);
        assert_eq!(l2.windows.len(), 3);
        let l3 = next_window(&l2).unwrap();
        assert_eq!(l3.windows.len(), 2);
        assert!(next_window(&partitioned(&l, vec![l2.windows[0].clone()])).is_none());
        // One instant holding more than a response: cannot split.
        let mut one = l.clone();
        one.windows = vec![l2.windows[1].clone()];
        let mut p = page(3, "a", "c");
        p.dates = vec![t("2026-03-01T20:00:00"); 3];
        assert!(split(&one, &mut p).unwrap_err().contains("share the date"));
        // A record without a date: the partition would miss it.
        let mut p = page(3, "a", "c");
        p.null_dates = 1;
        assert!(split(&l, &mut p).unwrap_err().contains("no business date"));
    }
}
