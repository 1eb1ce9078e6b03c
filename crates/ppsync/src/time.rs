//! Time: the lenient parser for PracticePanther timestamps, the canonical form we store, and the
//! `Clock` through which time enters the engine (never `now()` deep inside).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Parses an API timestamp: no offset (meaning UTC), `Z`, or `±hh:mm`, with 0–7 fractional digits
/// (practicepanther-api.md §4.1). Returns `None` for anything else.
pub fn parse_api_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// The canonical stored form: UTC, microseconds, `Z`. Fixed width, so text comparison on SQLite
/// orders instants correctly.
pub fn canonical(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The form sent in `updated_since`: an explicit `+00:00` offset (the API reportedly wants one);
/// the query builder percent-encodes the `+`.
pub fn query_param(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// Parses a duration written as `15m`, `1h`, `2d`, `30s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" | "sec" | "secs" => n,
        "m" | "min" | "mins" => n.checked_mul(60)?,
        "h" | "hour" | "hours" => n.checked_mul(3600)?,
        "d" | "day" | "days" => n.checked_mul(86400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

pub type BoxFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where the engine, the budget and the scheduler get time from. Production uses [`SystemClock`];
/// the demo and tests use a clock that follows the simulator, so a simulated day runs in seconds.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    fn sleep(&self, d: Duration) -> BoxFuture<'_>;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'_> {
        Box::pin(tokio::time::sleep(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_observed_form() {
        let cases = [
            ("2018-05-17T23:00:53.393", "2018-05-17T23:00:53.393000Z"),
            ("2021-07-07T16:31:15.72", "2021-07-07T16:31:15.720000Z"),
            ("2018-05-17T23:01:01", "2018-05-17T23:01:01.000000Z"),
            (
                "2026-04-04T06:20:36.3934413Z",
                "2026-04-04T06:20:36.393441Z",
            ),
            (
                "2026-04-04T06:20:36.3934413+00:00",
                "2026-04-04T06:20:36.393441Z",
            ),
            ("2026-04-04T01:20:36-05:00", "2026-04-04T06:20:36.000000Z"),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_api_time(input).map(canonical).as_deref(),
                Some(want),
                "{input}"
            );
        }
        for bad in [
            "",
            "yesterday",
            "2026-04-04",
            "2026-13-04T00:00:00",
            "1700000000",
        ] {
            assert_eq!(parse_api_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn query_form_has_an_explicit_offset() {
        let t = parse_api_time("2026-11-25T12:00:00.5").unwrap();
        assert_eq!(query_param(t), "2026-11-25T12:00:00.500+00:00");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172800)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("5 weeks"), None);
        assert_eq!(parse_duration("m"), None);
    }
}
