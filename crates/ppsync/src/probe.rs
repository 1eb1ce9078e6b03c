//! `ppsync probe`: measures each endpoint's dialect against the live API on purpose, in at most
//! [`MAX_REQUESTS`] requests an endpoint, and stores what it learned for the engine (which
//! otherwise learns the same facts by itself as it syncs, at the cost of a request now and then).
//!
//! Per endpoint, in order (each step skipped when an earlier one makes it pointless):
//! 1. `$top=3` — `$top` honoured (3 or fewer rows), ignored (more), rejected (400);
//! 2. `$top=3&$skip=1` — `$skip` honoured (starts at the first page's second row), ignored
//!    (starts at its first), rejected;
//! 3. `$orderby=updated_at desc` (the key, without `updated_at`) — honoured, ignored, rejected;
//! 4. `updated_since` = the newest `updated_at` seen, exactly as sent — inclusive (that record
//!    comes back), exclusive (it does not), ignored (older ones come back);
//! 5. `$top=<page_size>` — the largest page;
//! 6. `$top=1&$skip=<rows of 5>` — more behind a short page 5 proves the cap.
//!
//! Responses are read as a stream and only a few records of each are kept: memory does not grow
//! with what an endpoint returns.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::api;
use crate::record;
use crate::resource::{Incremental, Resource};
use crate::sync::dialect::{Dialect, QueryOption, Since, Support};
use crate::sync::{Engine, paging};
use crate::time::stamp_form;

/// The most requests probing one endpoint takes.
pub const MAX_REQUESTS: usize = 6;

/// What the probe measured of one endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointReport {
    pub resource: &'static str,
    pub path: &'static str,
    pub requests: usize,
    /// Rows of the largest response seen.
    pub rows_seen: u64,
    /// `"7"` (proven), `">= 2500"` (a full page), `"none up to 37"` (the whole list in one
    /// response), `"unknown"`.
    pub page_cap: String,
    pub top: Support,
    pub skip: Support,
    pub orderby: Support,
    pub updated_since: Since,
    pub timestamp_sample: Option<String>,
    pub timestamp_forms: Vec<String>,
    /// Live records the mirror holds (a listing shorter than this, with paging impossible, is
    /// a silent cap).
    pub mirror_rows: i64,
    /// Anything the probe could not settle, or what an operator should know.
    pub notes: Vec<String>,
    /// The request that failed the probe of this endpoint, if one did.
    pub error: Option<String>,
}

/// The probe of every endpoint asked for.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub endpoints: Vec<EndpointReport>,
    pub requests: u64,
    /// The server's `Date` minus our clock (seconds), from the last response.
    pub server_clock_skew_secs: Option<i64>,
    /// Answers that asked us to slow down (429/503).
    pub throttled: u64,
    /// The request rate the budget lowered itself to (429s without `Retry-After`).
    pub learned_rate: Option<usize>,
}

/// A response read as a stream: its row count, its first rows and its newest.
#[derive(Default)]
struct Seen {
    n: u64,
    /// (key, `updated_at` as sent), the first few.
    first: Vec<(String, Option<String>)>,
    /// The newest `updated_at` (parsed, as sent, key).
    newest: Option<(DateTime<Utc>, String, String)>,
    /// Whether `updated_at` never decreased along the response, and never increased.
    ascending: bool,
    descending: bool,
    last_updated: Option<DateTime<Utc>>,
    forms: u32,
    server_date: Option<DateTime<Utc>>,
    /// Rows older than a bound given (`updated_since` ignored), and whether one key came back.
    older_than: u64,
    found_key: bool,
}

const KEEP: usize = 3;

/// Probes `resources` and stores what was learned. The report is the command's output.
pub async fn run(engine: &Engine, resources: &[&'static Resource]) -> Report {
    let before = engine.client.requests_made();
    let throttled = engine.client.throttled();
    let mut endpoints = Vec::new();
    let mut skew = None;
    for res in resources {
        let (r, date) = probe_one(engine, res).await;
        if let Some(d) = date {
            skew = Some((d - engine.clock.now()).num_seconds());
        }
        endpoints.push(r);
    }
    let learned_rate = engine.client.budget().take_lowered();
    if let Some(limit) = learned_rate {
        let now = engine.clock.now();
        if let Ok(mut facts) = engine.api_facts().await {
            facts.rate_limit = Some(crate::sync::dialect::Fact {
                value: limit as u32,
                how: "ppsync probe: 429 answers without Retry-After".into(),
                at: now,
            });
            if let Ok(json) = serde_json::to_string(&facts) {
                let _ = engine
                    .store
                    .set_dialect(crate::sync::dialect::API, &json, now)
                    .await;
            }
        }
    }
    Report {
        endpoints,
        requests: engine.client.requests_made() - before,
        server_clock_skew_secs: skew,
        throttled: engine.client.throttled() - throttled,
        learned_rate,
    }
}

fn query(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// One request, read as a stream. `older_than` / `key` ask whether rows older than that instant
/// came back, and whether the row with that key did.
async fn fetch(
    engine: &Engine,
    res: &'static Resource,
    q: Vec<(String, String)>,
    older_than: Option<DateTime<Utc>>,
    key: Option<String>,
) -> Result<Seen, api::Error> {
    let mut listing = engine
        .client
        .list(res.path, &q, move |raw| {
            let row = record::prepare(res, raw)?;
            // `updated_at` exactly as sent (the parsed instant loses digits below a microsecond).
            let sent = row.updated_at.and_then(|_| {
                serde_json::from_str::<serde_json::Value>(&row.data)
                    .ok()
                    .and_then(|v| v.get("updated_at")?.as_str().map(str::to_string))
            });
            Ok((row.id, row.updated_at, sent, row.stamp_form))
        })
        .await?;
    let mut seen = Seen {
        ascending: true,
        descending: true,
        server_date: listing.server_date,
        ..Seen::default()
    };
    while let Some((id, updated, sent, form)) = listing.next().await? {
        seen.n += 1;
        if let Some(f) = form {
            seen.forms |= 1 << (u32::from(f) & 31);
        }
        if let Some(t) = updated {
            if let Some(prev) = seen.last_updated {
                seen.ascending &= t >= prev;
                seen.descending &= t <= prev;
            }
            seen.last_updated = Some(t);
            if older_than.is_some_and(|b| t < b - chrono::Duration::seconds(1)) {
                seen.older_than += 1;
            }
            if seen.newest.as_ref().is_none_or(|(n, _, _)| t > *n) {
                seen.newest = Some((t, sent.clone().unwrap_or_default(), id.clone()));
            }
        }
        if key.as_deref() == Some(id.as_str()) {
            seen.found_key = true;
        }
        if seen.first.len() < KEEP {
            seen.first.push((id, sent));
        }
    }
    Ok(seen)
}

/// A 400 answer: the option is rejected.
fn rejected(e: &api::Error) -> bool {
    matches!(e, api::Error::BadRequest { .. })
}

async fn probe_one(
    engine: &Engine,
    res: &'static Resource,
) -> (EndpointReport, Option<DateTime<Utc>>) {
    let mut d = engine.dialect(res).await.unwrap_or_default();
    let now = engine.clock.now();
    let page_size = engine.cfg.page_size.max(2);
    let mut r = EndpointReport {
        resource: res.name,
        path: res.path,
        requests: 0,
        rows_seen: 0,
        page_cap: "unknown".into(),
        top: Support::Unknown,
        skip: Support::Unknown,
        orderby: Support::Unknown,
        updated_since: Since::Unknown,
        timestamp_sample: None,
        timestamp_forms: Vec::new(),
        mirror_rows: engine.store.counts(res).await.map(|c| c.0).unwrap_or(0),
        notes: Vec::new(),
        error: None,
    };
    let how = |what: &str| format!("ppsync probe: {what}");
    let mut date = None;
    let mut forms = 0u32;
    // Each request: counted, its Date and forms noted; a failure other than a 400 ends the probe.
    macro_rules! ask {
        ($q:expr, $older:expr, $key:expr) => {{
            r.requests += 1;
            match fetch(engine, res, query($q), $older, $key).await {
                Ok(s) => {
                    date = s.server_date.or(date);
                    forms |= s.forms;
                    r.rows_seen = r.rows_seen.max(s.n);
                    d.saw_page(s.n, now);
                    Ok(s)
                }
                Err(e) if rejected(&e) => Err(e),
                Err(e) => {
                    r.error = Some(e.to_string());
                    return finish(engine, res, r, d, forms, date).await;
                }
            }
        }};
    }

    // 1. $top.
    let a = match ask!(&[("$top", "3".to_string())], None, None) {
        Ok(a) => {
            r.top = if a.n > 3 {
                Support::Ignored
            } else if a.n == 3 {
                Support::Honoured
            } else {
                r.notes.push(format!("$top: only {} rows to tell by", a.n));
                Support::Unknown
            };
            a
        }
        Err(_) => {
            r.top = Support::Rejected;
            match ask!(&[], None, None) {
                Ok(a) => a,
                Err(e) => {
                    r.error = Some(e.to_string());
                    return finish(engine, res, r, d, forms, date).await;
                }
            }
        }
    };
    let top_ok = r.top != Support::Rejected;
    let top = |n: u64| -> Vec<(&'static str, String)> {
        if top_ok {
            vec![("$top", n.to_string())]
        } else {
            vec![]
        }
    };
    // 2. $skip.
    if a.first.len() >= 2 {
        let mut q = top(3);
        q.push(("$skip", "1".to_string()));
        match ask!(&q, None, None) {
            Ok(b) => {
                let first = b.first.first().map(|f| &f.0);
                r.skip = if first == Some(&a.first[1].0) {
                    Support::Honoured
                } else if first == Some(&a.first[0].0) {
                    Support::Ignored
                } else {
                    r.notes.push(
                        "$skip: the page after skipping one began elsewhere (records moving?)"
                            .into(),
                    );
                    Support::Unknown
                };
            }
            Err(_) => r.skip = Support::Rejected,
        }
    } else {
        r.notes.push("$skip: fewer than 2 rows to tell by".into());
    }
    // 3. $orderby.
    let field = if res.has_updated_at {
        "updated_at"
    } else {
        res.key
    };
    let mut newest = a.newest.clone();
    if a.n >= 2 {
        let mut q = top(3);
        q.push(("$orderby", format!("{field} desc")));
        match ask!(&q, None, None) {
            Ok(c) => {
                let same_first = c.first.first().map(|f| &f.0) == a.first.first().map(|f| &f.0);
                r.orderby = if res.has_updated_at {
                    let is_newest = match (&c.newest, &a.newest) {
                        (Some(cn), Some(an)) => cn.0 >= an.0,
                        _ => false,
                    };
                    if c.descending && is_newest && c.n >= 2 {
                        Support::Honoured
                    } else if same_first {
                        Support::Ignored
                    } else {
                        r.notes
                            .push("$orderby: the answer was in neither order".into());
                        Support::Unknown
                    }
                } else if same_first {
                    Support::Ignored
                } else {
                    Support::Honoured
                };
                if c.newest.as_ref().map(|n| n.0) > newest.as_ref().map(|n| n.0) {
                    newest = c.newest.clone();
                }
            }
            Err(_) => r.orderby = Support::Rejected,
        }
    }
    // 4. updated_since, at a record's own stamp, as sent.
    if res.incremental == Incremental::UpdatedSince && res.has_updated_at {
        if let Some((t, sent, id)) = newest.clone().filter(|n| !n.1.is_empty()) {
            r.timestamp_sample = Some(sent.clone());
            // The stamp exactly as the record has it, with an explicit offset when it has none.
            let value = if matches!(stamp_form(&sent) / 8, 0) {
                format!("{sent}+00:00")
            } else {
                sent.clone()
            };
            let mut q = vec![("updated_since", value)];
            q.extend(top(page_size.into()));
            if let Ok(s) = ask!(&q, Some(t), Some(id)) {
                r.updated_since = if s.older_than > 0 {
                    Since::Ignored
                } else if s.found_key {
                    Since::Inclusive
                } else {
                    r.notes.push(
                        "updated_since: the record stamped exactly at the value did not come back \
                         (exclusive, or the server stores stamps below their rendering)"
                            .into(),
                    );
                    Since::Exclusive
                };
            }
        }
    } else if let Some(first) = a.first.first() {
        r.timestamp_sample = first.1.clone();
    }
    // 5. The largest page, and 6. whether a short one was cut.
    let big = if r.top == Support::Rejected || r.top == Support::Ignored {
        // Every answer was already the whole list (or the cap).
        Some(a.n)
    } else {
        match ask!(&top(page_size.into()), None, None) {
            Ok(e) => Some(e.n),
            Err(_) => None,
        }
    };
    if let Some(n) = big {
        let p = u64::from(page_size);
        if n >= p && r.top == Support::Honoured {
            r.page_cap = format!(">= {p}");
        } else if n > 0 && r.skip == Support::Honoured {
            let mut q = top(1);
            q.push(("$skip", n.to_string()));
            if let Ok(f) = ask!(&q, None, None) {
                if f.n > 0 {
                    r.page_cap = n.to_string();
                    d.proved_cap(
                        n,
                        &how(&format!("{n} rows, then more after $skip={n}")),
                        now,
                    );
                } else {
                    r.page_cap = format!("none up to {n}");
                }
            }
        } else if n > 0 {
            r.page_cap = format!(">= {n}");
            r.notes.push(format!(
                "page cap: cannot page past {n} rows to check for more (completeness cannot be proven)"
            ));
            if r.mirror_rows > n as i64 {
                r.notes.push(format!(
                    "capped: the mirror holds {} live records, the endpoint listed {n}",
                    r.mirror_rows
                ));
            }
        } else {
            r.page_cap = "none seen (empty)".into();
        }
    }
    finish(engine, res, r, d, forms, date).await
}

/// Stores the measured facts (merged over what was known) and completes the report.
async fn finish(
    engine: &Engine,
    res: &'static Resource,
    mut r: EndpointReport,
    mut d: Dialect,
    forms: u32,
    date: Option<DateTime<Utc>>,
) -> (EndpointReport, Option<DateTime<Utc>>) {
    let now = engine.clock.now();
    let how = |o: &str, s: Support| format!("ppsync probe: {o} {}", s.name());
    for (opt, s) in [
        (QueryOption::Top, r.top),
        (QueryOption::Skip, r.skip),
        (QueryOption::OrderBy, r.orderby),
    ] {
        if s != Support::Unknown {
            d.set(opt, s, &how(opt.name(), s), now);
        }
    }
    if r.updated_since != Since::Unknown {
        // A probe's measurement overrides what passive evidence said.
        d.updated_since = Some(crate::sync::dialect::Fact {
            value: r.updated_since,
            how: format!(
                "ppsync probe: a record stamped exactly at the value {}",
                if r.updated_since == Since::Inclusive {
                    "came back"
                } else {
                    "did not come back"
                }
            ),
            at: now,
        });
    }
    d.saw_forms(forms);
    if let Some(s) = &r.timestamp_sample {
        d.timestamp_sample = Some(s.clone());
    }
    r.timestamp_forms = d.timestamp_forms.iter().cloned().collect();
    if let Ok(json) = serde_json::to_string(&d)
        && let Err(e) = engine.store.set_dialect(res.name, &json, now).await
    {
        r.notes.push(format!("not stored: {e}"));
    }
    if paging::page_size(engine.cfg.page_size, &d) < u64::from(engine.cfg.page_size) {
        r.notes.push(format!(
            "pages of {} from now on (its cap)",
            paging::page_size(engine.cfg.page_size, &d)
        ));
    }
    (r, date)
}

/// The report as a table.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let mut line = |cells: [&str; 8]| {
        out.push_str(&format!(
            "{:<22} {:>6} {:<16} {:<9} {:<9} {:<9} {:<13} {}\n",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7]
        ));
    };
    line([
        "endpoint",
        "rows",
        "page cap",
        "$top",
        "$skip",
        "$orderby",
        "updated_since",
        "timestamp sample",
    ]);
    for e in &report.endpoints {
        let rows = e.rows_seen.to_string();
        line([
            e.path,
            &rows,
            &e.page_cap,
            e.top.name(),
            e.skip.name(),
            e.orderby.name(),
            e.updated_since.name(),
            e.timestamp_sample.as_deref().unwrap_or("-"),
        ]);
    }
    let mut notes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in &report.endpoints {
        let mut n = e.notes.clone();
        if let Some(err) = &e.error {
            n.push(format!("failed: {err}"));
        }
        if !n.is_empty() {
            notes.insert(e.path, n);
        }
    }
    for (path, n) in notes {
        for note in n {
            out.push_str(&format!("{path}: {note}\n"));
        }
    }
    out.push_str(&format!(
        "{} requests (at most {MAX_REQUESTS} an endpoint)",
        report.requests
    ));
    if let Some(s) = report.server_clock_skew_secs {
        out.push_str(&format!("; server clock {s:+} s from ours"));
    }
    if report.throttled > 0 {
        out.push_str(&format!("; {} answers throttled", report.throttled));
    }
    if let Some(l) = report.learned_rate {
        out.push_str(&format!(
            "; 429s without Retry-After: the rate is now {l} per window"
        ));
    }
    out.push_str("\nLearned facts are stored; `ppsync sync` uses them.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_measure() {
        let report = Report {
            endpoints: vec![EndpointReport {
                resource: "invoices",
                path: "invoices",
                requests: 6,
                rows_seen: 2500,
                page_cap: "2500".into(),
                top: Support::Honoured,
                skip: Support::Ignored,
                orderby: Support::Rejected,
                updated_since: Since::Exclusive,
                timestamp_sample: Some("2026-11-02T10:00:00.393".into()),
                timestamp_forms: vec!["naive.3".into()],
                mirror_rows: 4000,
                notes: vec!["capped".into()],
                error: None,
            }],
            requests: 6,
            server_clock_skew_secs: Some(86400),
            throttled: 0,
            learned_rate: None,
        };
        let t = render(&report);
        for want in [
            "invoices",
            "2500",
            "honoured",
            "ignored",
            "rejected",
            "exclusive",
            "2026-11-02T10:00:00.393",
            "invoices: capped",
            "6 requests (at most 6 an endpoint)",
            "server clock +86400 s",
        ] {
            assert!(t.contains(want), "{want}: {t}");
        }
    }
}
