//! Timestamps as PracticePanther writes and reads them.
//!
//! The API is ASP.NET on SQL Server: instants are .NET `DateTime`s with 100-ns precision
//! ("ticks"), stored in UTC and serialized **without an offset**, trailing zeros of the fraction
//! trimmed (`2018-05-17T23:00:53.393`, `2021-07-07T16:31:15.72`, `2018-05-17T23:01:01`).
//! Internally every instant is an `i64` count of 100-ns ticks since the Unix epoch.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc, Weekday};

/// 100-ns ticks per second.
pub const TICKS_PER_SEC: i64 = 10_000_000;

/// Ticks since the Unix epoch for a chrono instant (sub-100-ns digits are dropped).
pub fn to_ticks(t: DateTime<Utc>) -> i64 {
    t.timestamp() * TICKS_PER_SEC + i64::from(t.timestamp_subsec_nanos() / 100)
}

/// The chrono instant for a tick count.
pub fn from_ticks(t: i64) -> DateTime<Utc> {
    let secs = t.div_euclid(TICKS_PER_SEC);
    let sub = t.rem_euclid(TICKS_PER_SEC);
    Utc.timestamp_opt(secs, (sub * 100) as u32)
        .single()
        .unwrap_or_default()
}

/// How a timestamp is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsStyle {
    /// `2018-05-17T23:00:53.393`: no offset, 0–7 fraction digits, trailing zeros trimmed
    /// (what `created_at`/`updated_at` look like in real captures).
    Naive,
    /// `2026-04-04T06:20:36.3934413Z`: always 7 digits and `Z` (Message timestamps in the spec).
    Zulu7,
    /// `2026-04-04T06:20:36.3934413+00:00` (Note.date in the spec example).
    Offset7,
}

/// Formats ticks in the given style.
pub fn format_ts(ticks: i64, style: TsStyle) -> String {
    let t = from_ticks(ticks);
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let frac = ticks.rem_euclid(TICKS_PER_SEC);
    match style {
        TsStyle::Naive => {
            if frac == 0 {
                base
            } else {
                let digits = format!("{frac:07}");
                format!("{base}.{}", digits.trim_end_matches('0'))
            }
        }
        TsStyle::Zulu7 => format!("{base}.{frac:07}Z"),
        TsStyle::Offset7 => format!("{base}.{frac:07}+00:00"),
    }
}

/// Parses a timestamp as the API accepts it in filters and as it appears in payloads:
/// `YYYY-MM-DDTHH:MM:SS`, optionally `.` and 1–7 fraction digits, optionally `Z` or `±hh:mm`.
/// A value without an offset is UTC. Anything else is `None` (the API answers 400).
pub fn parse_ts(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[10] != b'T' {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(&s[..19], "%Y-%m-%dT%H:%M:%S").ok()?;
    // Reject forms chrono tolerates but .NET's round-trip parse would not see here
    // (e.g. a single-digit month): the first 19 bytes must be exactly the fixed layout.
    if !b[..19].iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        10 => *c == b'T',
        13 | 16 => *c == b':',
        _ => c.is_ascii_digit(),
    }) {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac: i64 = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 7 {
            return None;
        }
        let digits = &r[..n];
        frac = digits.parse::<i64>().ok()? * 10_i64.pow(7 - n as u32);
        rest = &r[n..];
    }
    let offset_secs: i64 = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || rb[3] != b':' || !(rb[0] == b'+' || rb[0] == b'-') {
                return None;
            }
            let hh: i64 = rest[1..3].parse().ok()?;
            let mm: i64 = rest[4..6].parse().ok()?;
            if !rest[1..3].bytes().all(|c| c.is_ascii_digit())
                || !rest[4..6].bytes().all(|c| c.is_ascii_digit())
                || hh > 14
                || mm > 59
            {
                return None;
            }
            let sign = if rb[0] == b'-' { -1 } else { 1 };
            sign * (hh * 3600 + mm * 60)
        }
    };
    let secs = naive.and_utc().timestamp() - offset_secs;
    Some(secs * TICKS_PER_SEC + frac)
}

/// The `Date` header form (RFC 7231 IMF-fixdate).
pub fn http_date(ticks: i64) -> String {
    from_ticks(ticks)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Is `d` inside US daylight-saving time (second Sunday of March to first Sunday of November)?
/// The firm is in California (America/Los_Angeles); v2 stores "date-only" business fields as the
/// UTC instant of firm-local noon or midnight, so 19:00/07:00 UTC in summer and 20:00/08:00 in winter.
fn us_dst(d: NaiveDate) -> bool {
    let nth_sunday = |month: u32, n: u32| -> NaiveDate {
        NaiveDate::from_weekday_of_month_opt(d.year(), month, Weekday::Sun, n as u8)
            .unwrap_or(NaiveDate::MIN)
    };
    d >= nth_sunday(3, 2) && d < nth_sunday(11, 1)
}

/// Ticks of firm-local noon on `d`, in UTC.
pub fn local_noon(d: NaiveDate) -> i64 {
    let hour = if us_dst(d) { 19 } else { 20 };
    to_ticks(d.and_hms_opt(hour, 0, 0).unwrap_or_default().and_utc())
}

/// Ticks of firm-local midnight starting `d`, in UTC.
pub fn local_midnight(d: NaiveDate) -> i64 {
    let hour = if us_dst(d) { 7 } else { 8 };
    to_ticks(d.and_hms_opt(hour, 0, 0).unwrap_or_default().and_utc())
}

/// The firm-local calendar date of an instant (approximate at the DST switch hour).
pub fn local_date(ticks: i64) -> NaiveDate {
    let t = from_ticks(ticks);
    let guess = (t - chrono::Duration::hours(8)).date_naive();
    let off = if us_dst(guess) { 7 } else { 8 };
    (t - chrono::Duration::hours(off)).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_trim_trailing_zeros() {
        let t = parse_ts("2018-05-17T23:00:53.393").unwrap();
        assert_eq!(format_ts(t, TsStyle::Naive), "2018-05-17T23:00:53.393");
        let t = parse_ts("2021-07-07T16:31:15.7200000").unwrap();
        assert_eq!(format_ts(t, TsStyle::Naive), "2021-07-07T16:31:15.72");
        let t = parse_ts("2018-05-17T23:01:01").unwrap();
        assert_eq!(format_ts(t, TsStyle::Naive), "2018-05-17T23:01:01");
        assert_eq!(format_ts(t, TsStyle::Zulu7), "2018-05-17T23:01:01.0000000Z");
        let t = parse_ts("2026-04-04T06:20:36.3934413Z").unwrap();
        assert_eq!(
            format_ts(t, TsStyle::Offset7),
            "2026-04-04T06:20:36.3934413+00:00"
        );
    }

    #[test]
    fn parses_offsets_and_rejects_junk() {
        let a = parse_ts("2026-01-01T10:00:00+02:00").unwrap();
        let b = parse_ts("2026-01-01T08:00:00Z").unwrap();
        let c = parse_ts("2026-01-01T08:00:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        for bad in [
            "2026-01-01",
            "2026-01-01 08:00:00",
            "2026-01-01T08:00:00 00:00",
            "2026-01-01T08:00:00.12345678",
            "2026-1-01T08:00:00",
            "yesterday",
            "2026-13-01T00:00:00",
            "2026-01-01T08:00:00.",
            "2026-01-01T08:00:00+0200",
        ] {
            assert!(parse_ts(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn local_noon_follows_dst() {
        let summer = NaiveDate::from_ymd_opt(2024, 6, 20).unwrap();
        assert_eq!(
            format_ts(local_noon(summer), TsStyle::Naive),
            "2024-06-20T19:00:00"
        );
        let winter = NaiveDate::from_ymd_opt(2022, 11, 17).unwrap();
        assert_eq!(
            format_ts(local_midnight(winter), TsStyle::Naive),
            "2022-11-17T08:00:00"
        );
        assert_eq!(local_date(local_noon(summer)), summer);
        assert_eq!(local_date(local_midnight(winter)), winter);
    }
}
