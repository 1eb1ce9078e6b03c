//! `ppsync.auth_failed`: the notification of an episode of rejected credentials. One per
//! episode (its id holds the episode's first failure), enqueued in the transaction that opens
//! it (`Store::record_auth_failure`), so a daemon failing every cycle tells the sinks once.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::store::Notification;
use crate::time::canonical;

pub const KIND: &str = "ppsync.auth_failed";

/// The notification of the episode that began at `since`.
pub fn auth_failed(since: DateTime<Utc>, error: &str, now: DateTime<Utc>) -> Notification {
    let id = format!("auth_failed:{}", canonical(since));
    let payload = json!({
        "id": id,
        "kind": KIND,
        "summary": "PracticePanther rejected ppsync's credentials: nothing syncs until someone runs `ppsync auth login`",
        "error": error,
        "since": canonical(since),
        "detected_at": canonical(now),
    });
    Notification {
        id,
        kind: KIND.into(),
        resource: "oauth".into(),
        record_id: String::new(),
        payload,
        suppressed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_has_one_id_whenever_it_is_seen_again() {
        let t = |s: &str| crate::time::parse_api_time(s).unwrap();
        let since = t("2026-12-07T04:00:00Z");
        let first = auth_failed(since, "rejected", since);
        let later = auth_failed(since, "rejected again", t("2026-12-07T05:00:00Z"));
        assert_eq!(first.id, "auth_failed:2026-12-07T04:00:00.000000Z");
        assert_eq!(first.id, later.id);
        let next = auth_failed(t("2026-12-08T04:00:00Z"), "rejected", since);
        assert_ne!(first.id, next.id, "a later episode is a new notification");
        assert_eq!(first.payload["kind"], KIND);
        assert_eq!(first.payload["error"], "rejected");
    }
}
