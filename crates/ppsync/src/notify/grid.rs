//! The digest's grid: points every interval counted from the Unix epoch (every hour on the hour
//! for "1h"), so no digest state is stored. Used by the digest round and by the dispatcher to know
//! when the next one is due.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The last grid point at or before `now`.
pub fn grid_point(now: DateTime<Utc>, every: Duration) -> DateTime<Utc> {
    let every_ms = (every.as_millis() as i64).max(1);
    let ms = now.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(every_ms)).unwrap_or(now)
}

/// The first grid point at or after `t`.
pub fn next_grid_point(t: DateTime<Utc>, every: Duration) -> DateTime<Utc> {
    let p = grid_point(t, every);
    if p == t {
        p
    } else {
        p + chrono::Duration::from_std(every).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_go_out_on_the_interval_grid() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            grid_point(t("2026-12-07T10:45:00Z"), hour),
            t("2026-12-07T10:00:00Z")
        );
        assert_eq!(
            grid_point(t("2026-12-07T11:00:00Z"), hour),
            t("2026-12-07T11:00:00Z")
        );
        assert_eq!(
            next_grid_point(t("2026-12-07T10:00:01Z"), hour),
            t("2026-12-07T11:00:00Z")
        );
        assert_eq!(
            next_grid_point(t("2026-12-07T10:00:00Z"), hour),
            t("2026-12-07T10:00:00Z")
        );
    }
}
