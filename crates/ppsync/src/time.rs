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
    if let Some(t) = parse_common(s.as_bytes()) {
        return Some(t);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    // Naive: `%Y-%m-%dT%H:%M:%S%.f` (chrono's own parser for this form). A space in place of `T`
    // is refused.
    if s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    s.parse::<NaiveDateTime>().ok().map(|n| n.and_utc())
}

/// The shapes the API sends (`2026-11-02T14:00:00`, `.1234567`, `Z`, `+05:30`), read directly: a
/// backfill parses three timestamps per record, and chrono's general parser was a visible share of
/// its time. Anything else (`None`) goes to chrono, which also judges what this one refuses.
fn parse_common(s: &[u8]) -> Option<DateTime<Utc>> {
    fn num(s: &[u8]) -> Option<u32> {
        s.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    }
    if s.len() < 19
        || s[4] != b'-'
        || s[7] != b'-'
        || s[10] != b'T'
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(&s[0..4])?, num(&s[5..7])?, num(&s[8..10])?);
    let (hour, min, sec) = (num(&s[11..13])?, num(&s[14..16])?, num(&s[17..19])?);
    let mut i = 19;
    let mut nanos = 0u32;
    if s.get(i) == Some(&b'.') {
        let digits = s[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = num(&s[i + 1..i + 1 + digits])? * 10u32.pow(9 - digits as u32);
        i += 1 + digits;
    }
    let offset_secs = match &s[i..] {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let secs = (num(&[*h1, *h2])? * 60 + num(&[*m1, *m2])?) as i32 * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let local = chrono::NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_hms_nano_opt(hour, min, sec, nanos)?;
    Some(local.and_utc() - chrono::Duration::seconds(i64::from(offset_secs)))
}

/// The canonical stored form: UTC, microseconds, `Z`. Fixed width, so text comparison on SQLite
/// orders instants correctly.
pub fn canonical(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An instant as people read it in the firm's zone, the zone named: `2026-11-02 06:05:09 PST`.
pub fn local_text(t: DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    t.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// A stored instant (canonical text) in the firm's zone; text that does not read is shown as it is.
pub fn local_text_of(s: &str, zone: chrono_tz::Tz) -> String {
    match parse_api_time(s) {
        Some(t) => local_text(t, zone),
        None => s.to_string(),
    }
}

/// The form sent in `updated_since`: an explicit `+00:00` offset (the API reportedly wants one);
/// the query builder percent-encodes the `+`.
pub fn query_param(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// The form of a timestamp as sent, as a code below 32 (a bit in a `u32` set): the offset
/// (none, `Z`, `±hh:mm`) times 8 plus the fraction's digits (0–7; more count as 7). What the
/// endpoints send is a learned fact (practicepanther-api.md §4.1: naive with 0–3 digits,
/// `Z` with 7 on messages).
pub fn stamp_form(s: &str) -> u32 {
    let s = s.trim();
    let b = s.as_bytes();
    let kind = if s.ends_with('Z') || s.ends_with('z') {
        1
    } else if b.len() > 6 && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':' {
        2
    } else {
        0
    };
    let digits = s
        .find('.')
        .map(|i| s[i + 1..].bytes().take_while(u8::is_ascii_digit).count())
        .unwrap_or(0)
        .min(7) as u32;
    kind * 8 + digits
}

/// The name of a [`stamp_form`] code: `naive.3`, `Z.7`, `offset.0`.
pub fn stamp_form_name(code: u32) -> String {
    let kind = match code / 8 {
        0 => "naive",
        1 => "Z",
        _ => "offset",
    };
    format!("{kind}.{}", code % 8)
}

/// Parses a duration written as `15m`, `1h`, `2d`, `30s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    if matches!(unit, "ms" | "msec" | "msecs") {
        return Some(Duration::from_millis(n));
    }
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

/// The first multiple of `interval` (counted from the Unix epoch) strictly after `t`.
pub fn grid_next(t: DateTime<Utc>, interval: chrono::Duration) -> DateTime<Utc> {
    let step = interval.num_milliseconds().max(1000);
    let ms = t.timestamp_millis();
    let next = (ms.div_euclid(step) + 1) * step;
    DateTime::from_timestamp_millis(next).unwrap_or(t + interval)
}

/// The first multiple of `interval` at or after `t` (when the next digest is due).
pub fn grid_at_or_after(t: DateTime<Utc>, interval: std::time::Duration) -> DateTime<Utc> {
    let interval = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(1));
    grid_next(t - chrono::Duration::milliseconds(1), interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_sit_on_a_grid() {
        let t = |s: &str| crate::time::parse_api_time(s).unwrap();
        let q = chrono::Duration::minutes(15);
        assert_eq!(
            grid_next(t("2026-11-02T14:00:00.6"), q),
            t("2026-11-02T14:15:00")
        );
        assert_eq!(
            grid_next(t("2026-11-02T14:15:00"), q),
            t("2026-11-02T14:30:00")
        );
        assert_eq!(
            grid_next(t("2026-11-02T14:59:59"), chrono::Duration::hours(1)),
            t("2026-11-02T15:00:00")
        );
        assert_eq!(
            grid_next(t("2026-11-02T14:00:00"), chrono::Duration::days(1)),
            t("2026-11-03T00:00:00")
        );
    }

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
            ("2026-04-04T11:50:36.5+05:30", "2026-04-04T06:20:36.500000Z"),
            (
                "2026-01-01T00:00:00.123456789Z",
                "2026-01-01T00:00:00.123456Z",
            ),
            ("2024-02-29T23:59:59", "2024-02-29T23:59:59.000000Z"),
            // Past the common shapes: chrono reads them.
            ("2026-04-04t06:20:36z", "2026-04-04T06:20:36.000000Z"),
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
            "2025-02-29T00:00:00",
            "2026-04-04T24:00:00",
            "2026-04-04T06:20:36.",
            "2026-04-04T06:20:36+5:30",
            "2026-04-04T06:20:36 Z",
            "2026-04-04 06:20:36",
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
    fn stamp_forms() {
        for (s, want) in [
            ("2018-05-17T23:00:53.393", "naive.3"),
            ("2018-05-17T23:01:01", "naive.0"),
            ("2026-04-04T06:20:36.3934413Z", "Z.7"),
            ("2026-04-04T06:20:36.3934413+00:00", "offset.7"),
            ("2026-04-04T01:20:36-05:00", "offset.0"),
        ] {
            assert_eq!(stamp_form_name(stamp_form(s)), want, "{s}");
            assert!(stamp_form(s) < 32);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172800)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("50ms"), Some(Duration::from_millis(50)));
        assert_eq!(parse_duration("5 weeks"), None);
        assert_eq!(parse_duration("m"), None);
    }
}
