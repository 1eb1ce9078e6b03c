//! What the engine has learned of each endpoint's dialect: how large a response it returns, which
//! OData options it honours, ignores or rejects, how it applies `updated_since`, and the
//! timestamp forms it sends (practicepanther-api.md §7 lists all of these as unknown). Each fact
//! carries how and when it was learned. Facts are persisted per firm (the `dialects` table, one
//! JSON document per endpoint) in the transaction of the page that taught them, and read at the
//! start of every resource's run; `ppsync probe` measures them on purpose.
//!
//! Nothing here does I/O: learning is a pure function of what was sent and what came back.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Whether an endpoint honours an OData query option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Support {
    /// Never seen either way.
    #[default]
    Unknown,
    Honoured,
    /// Accepted and not applied.
    Ignored,
    /// Answered with a 400.
    Rejected,
}

impl Support {
    pub fn name(self) -> &'static str {
        match self {
            Support::Unknown => "unknown",
            Support::Honoured => "honoured",
            Support::Ignored => "ignored",
            Support::Rejected => "rejected",
        }
    }
    /// Worth sending: not known to be ignored or rejected.
    pub fn usable(self) -> bool {
        matches!(self, Support::Unknown | Support::Honoured)
    }
}

/// How `updated_since` compares a record's `updated_at` with the value sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Since {
    #[default]
    Unknown,
    /// `updated_at >= value`.
    Inclusive,
    /// `updated_at > value`.
    Exclusive,
    /// Not applied at all: every record comes back.
    Ignored,
}

impl Since {
    pub fn name(self) -> &'static str {
        match self {
            Since::Unknown => "unknown",
            Since::Inclusive => "inclusive",
            Since::Exclusive => "exclusive",
            Since::Ignored => "ignored",
        }
    }
}

/// One learned fact: its value, how it was learned, when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fact<T> {
    pub value: T,
    pub how: String,
    pub at: DateTime<Utc>,
}

/// Everything known of one endpoint. Absent facts are unknown.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dialect {
    /// The most records one response of this endpoint has held: its cap is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest_page: Option<Fact<u64>>,
    /// The endpoint's page cap, proven: a response of this many was followed by more records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<Fact<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<Fact<Support>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<Fact<Support>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orderby: Option<Fact<Support>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_since: Option<Fact<Since>>,
    /// Forms of `updated_at` seen (`naive.3` = no offset, 3 fraction digits; `Z.7`; `offset.0`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub timestamp_forms: BTreeSet<String>,
    /// One `updated_at` exactly as sent (from `ppsync probe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_sample: Option<String>,
    /// The top-level fields the by-id read returns and the list leaves out; empty once
    /// [`DETAIL_PROOF`] by-id reads in a row added none (the list holds everything: by-id reads
    /// stop until the fact is [`DETAIL_RECHECK`] old).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_id_adds: Option<Fact<Vec<String>>>,
    /// By-id reads in a row that added no field to the list's rendering.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub by_id_same: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// By-id reads in a row that must add nothing before the list is taken to hold every field.
pub const DETAIL_PROOF: u32 = 20;
/// How long "the list holds every field" is believed before by-id reads check it again.
pub const DETAIL_RECHECK: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// The firm-wide facts (stored under the endpoint name `*`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiFacts {
    /// Requests per budget window the server was seen to allow (429s without `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Fact<u32>>,
    /// The server's `Date` minus our clock, in seconds, when it last exceeded the tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_secs: Option<Fact<i64>>,
}

/// The key under which [`ApiFacts`] are stored.
pub const API: &str = "*";

fn fact<T>(value: T, how: &str, at: DateTime<Utc>) -> Option<Fact<T>> {
    Some(Fact {
        value,
        how: how.to_string(),
        at,
    })
}

impl Dialect {
    pub fn top(&self) -> Support {
        self.top.as_ref().map_or(Support::Unknown, |f| f.value)
    }
    pub fn skip(&self) -> Support {
        self.skip.as_ref().map_or(Support::Unknown, |f| f.value)
    }
    pub fn orderby(&self) -> Support {
        self.orderby.as_ref().map_or(Support::Unknown, |f| f.value)
    }
    pub fn since(&self) -> Since {
        self.updated_since
            .as_ref()
            .map_or(Since::Unknown, |f| f.value)
    }
    /// The endpoint's cap is at least this (0: nothing seen yet).
    pub fn largest(&self) -> u64 {
        self.largest_page.as_ref().map_or(0, |f| f.value)
    }
    pub fn cap(&self) -> Option<u64> {
        self.cap.as_ref().map(|f| f.value)
    }

    /// Notes a response of `n` records. True when it changed what is known.
    pub fn saw_page(&mut self, n: u64, at: DateTime<Utc>) -> bool {
        if n <= self.largest() {
            return false;
        }
        self.largest_page = fact(n, "the largest response received", at);
        // A cap proven smaller than a response just received was wrong (or has grown).
        if self.cap().is_some_and(|c| c < n) {
            self.cap = None;
        }
        true
    }

    /// Notes that a response of `n` records was cut: more records followed it.
    pub fn proved_cap(&mut self, n: u64, how: &str, at: DateTime<Utc>) -> bool {
        if n == 0 || self.cap() == Some(n) {
            return false;
        }
        self.cap = fact(n, how, at);
        self.saw_page(n, at);
        true
    }

    /// Sets an option's support; "honoured" never overrides a harder fact learned since.
    pub fn set(&mut self, opt: QueryOption, value: Support, how: &str, at: DateTime<Utc>) -> bool {
        let slot = match opt {
            QueryOption::Top => &mut self.top,
            QueryOption::Skip => &mut self.skip,
            QueryOption::OrderBy => &mut self.orderby,
        };
        if slot.as_ref().is_some_and(|f| f.value == value) {
            return false;
        }
        *slot = fact(value, how, at);
        true
    }

    pub fn set_since(&mut self, value: Since, how: &str, at: DateTime<Utc>) -> bool {
        if self.since() == value {
            return false;
        }
        // Passive evidence of inclusiveness never overrides a probe's measured "exclusive".
        if value == Since::Inclusive && self.since() == Since::Exclusive {
            return false;
        }
        self.updated_since = fact(value, how, at);
        true
    }

    /// Records the timestamp forms in `forms` (a [`crate::time::stamp_form`] bit set).
    pub fn saw_forms(&mut self, forms: u32) -> bool {
        let mut changed = false;
        for code in 0..32 {
            if forms & (1 << code) != 0 {
                changed |= self
                    .timestamp_forms
                    .insert(crate::time::stamp_form_name(code));
            }
        }
        changed
    }

    /// Whether new and changed records are worth a by-id read: unless the list was proven to
    /// hold every field the by-id read does, within [`DETAIL_RECHECK`].
    pub fn details_needed(&self, now: DateTime<Utc>) -> bool {
        !self
            .by_id_adds
            .as_ref()
            .is_some_and(|f| f.value.is_empty() && now - f.at < DETAIL_RECHECK)
    }

    /// Notes one by-id read: the top-level field names of the list's rendering and of the by-id
    /// rendering of the same record. True when it changed what is known.
    pub fn saw_by_id(
        &mut self,
        list: &BTreeSet<String>,
        by_id: &BTreeSet<String>,
        at: DateTime<Utc>,
    ) -> bool {
        let extra: Vec<String> = by_id.difference(list).cloned().collect();
        if !extra.is_empty() {
            self.by_id_same = 0;
            if self.by_id_adds.as_ref().is_some_and(|f| f.value == extra) {
                return false;
            }
            let how = format!(
                "a by-id read returned {} that the list left out",
                extra.join(", ")
            );
            self.by_id_adds = fact(extra, &how, at);
            return true;
        }
        self.by_id_same += 1;
        if self.by_id_same >= DETAIL_PROOF
            && !self.by_id_adds.as_ref().is_some_and(|f| f.value.is_empty())
        {
            let how = format!(
                "{} by-id reads in a row added no field to the list's",
                self.by_id_same
            );
            self.by_id_adds = fact(Vec::new(), &how, at);
        }
        true
    }

    /// A one-line summary for logs and `ppsync status`.
    pub fn summary(&self) -> String {
        let cap = match (self.cap(), self.largest()) {
            (Some(c), _) => format!("cap {c}"),
            (None, 0) => "cap unknown".to_string(),
            (None, l) => format!("cap >= {l}"),
        };
        format!(
            "{cap}, $top {}, $skip {}, $orderby {}, updated_since {}",
            self.top().name(),
            self.skip().name(),
            self.orderby().name(),
            self.since().name()
        )
    }
}

/// The OData options the engine sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryOption {
    Top,
    Skip,
    OrderBy,
}

impl QueryOption {
    pub fn name(self) -> &'static str {
        match self {
            QueryOption::Top => "$top",
            QueryOption::Skip => "$skip",
            QueryOption::OrderBy => "$orderby",
        }
    }
}

/// Which query options a 400's body names. ASP.NET OData names a disallowed option
/// ("Query option 'Top' is not allowed") or, for an order on a property it does not know,
/// only the property ("Could not find a property named 'updated_at' on type ...").
pub fn options_named(body: &str) -> Vec<QueryOption> {
    let b = body.to_ascii_lowercase();
    let mut out = Vec::new();
    if b.contains("orderby")
        || b.contains("order by")
        || b.contains("'orderby'")
        || b.contains("property named")
    {
        out.push(QueryOption::OrderBy);
    }
    if b.contains("$top") || b.contains("'top'") {
        out.push(QueryOption::Top);
    }
    if b.contains("$skip") || b.contains("'skip'") {
        out.push(QueryOption::Skip);
    }
    out
}

/// The largest `$top` a 400 says the endpoint takes ("The limit of '1000' for Top query has been
/// exceeded", ASP.NET OData's `MaxTop`).
pub fn top_limit(body: &str) -> Option<u64> {
    let b = body.to_ascii_lowercase();
    let at = b.find("limit of '")? + "limit of '".len();
    let rest = &b[at..];
    let end = rest.find('\'')?;
    let n: u64 = rest[..end].trim().parse().ok()?;
    rest[end..]
        .trim_start_matches('\'')
        .trim_start()
        .starts_with("for top")
        .then_some(n)
        .filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> DateTime<Utc> {
        crate::time::parse_api_time("2026-12-03T10:00:00Z").unwrap()
    }

    #[test]
    fn options_named_in_odata_errors() {
        let cases: &[(&str, &[QueryOption])] = &[
            (
                "The query specified in the URI is not valid. Could not find a property named 'updated_at' on type 'PracticePanther.Api.Models.Matter'.",
                &[QueryOption::OrderBy],
            ),
            (
                "The query specified in the URI is not valid. Query option 'Top' is not allowed. To allow it, set the 'AllowedQueryOptions' property on EnableQueryAttribute or QueryValidationSettings.",
                &[QueryOption::Top],
            ),
            ("Query option 'Skip' is not allowed.", &[QueryOption::Skip]),
            ("$orderby is not supported", &[QueryOption::OrderBy]),
            ("The request is invalid.", &[]),
        ];
        for (body, want) in cases {
            assert_eq!(&options_named(body), want, "{body}");
        }
    }

    #[test]
    fn a_limit_for_top_is_read() {
        assert_eq!(
            top_limit(
                "The query specified in the URI is not valid. The limit of '1000' for Top query has been exceeded. The value from the incoming request is '2500'."
            ),
            Some(1000)
        );
        assert_eq!(
            top_limit("The limit of '100' for Skip query has been exceeded."),
            None
        );
        assert_eq!(top_limit("The request is invalid."), None);
        assert!(options_named("The limit of '1000' for Top query has been exceeded.").is_empty());
    }

    #[test]
    fn the_largest_page_only_grows_and_a_smaller_cap_is_dropped() {
        let mut d = Dialect::default();
        assert!(d.saw_page(40, t()));
        assert!(!d.saw_page(12, t()));
        assert_eq!(d.largest(), 40);
        assert!(d.proved_cap(40, "a response of 40 was followed by more", t()));
        assert_eq!(d.cap(), Some(40));
        // A larger response than the "cap": the cap was not one.
        assert!(d.saw_page(41, t()));
        assert_eq!(d.cap(), None);
        assert_eq!(d.largest(), 41);
    }

    #[test]
    fn facts_round_trip_through_json_and_say_how() {
        let mut d = Dialect::default();
        d.set(
            QueryOption::OrderBy,
            Support::Rejected,
            "400 naming it",
            t(),
        );
        d.set_since(Since::Exclusive, "probe", t());
        assert!(!d.set_since(Since::Inclusive, "passive", t()));
        let back: Dialect = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.orderby(), Support::Rejected);
        assert_eq!(back.orderby.unwrap().how, "400 naming it");
        assert!(d.summary().contains("$orderby rejected"), "{}", d.summary());
    }

    #[test]
    fn by_id_reads_are_needed_until_proven_to_add_nothing() {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let list = keys(&["id", "subject"]);
        let mut d = Dialect::default();
        assert!(d.details_needed(t()), "unknown: needed");
        // A read that adds a field proves them needed, and resets the count.
        assert!(d.saw_by_id(&list, &keys(&["id", "subject", "body_html"]), t()));
        assert_eq!(d.by_id_adds.as_ref().unwrap().value, ["body_html"]);
        assert!(!d.saw_by_id(&list, &keys(&["id", "subject", "body_html"]), t()));
        assert!(d.details_needed(t()));
        // DETAIL_PROOF reads in a row that add nothing: the list holds everything.
        for i in 1..DETAIL_PROOF {
            d.saw_by_id(&list, &list, t());
            assert!(d.details_needed(t()), "after {i}");
        }
        d.saw_by_id(&list, &list, t());
        assert!(!d.details_needed(t()));
        assert!(
            d.details_needed(t() + DETAIL_RECHECK),
            "checked again later"
        );
        // One that adds a field again (the list changed back) makes them needed at once.
        d.saw_by_id(&list, &keys(&["id", "subject", "body_html"]), t());
        assert!(d.details_needed(t()));
        assert_eq!(d.by_id_same, 0);
        let back: Dialect = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }
}
