//! The e-mail digest (`notify.email_digest`): instead of a message per notification, one message
//! per interval listing every notification that came due meanwhile.
//!
//! Digests go out on a grid of the interval counted from the Unix epoch (every hour on the hour
//! for "1h"): a round at `now` sends the pending rows due by the last grid point, so rows that
//! came due since wait for the next one. Nothing about past digests has to be remembered, and a
//! restart neither sends early nor twice. Each row is marked delivered only when the server
//! accepted the digest; a refused digest is a failed try for each of its rows (their backoff is
//! shorter than an interval, so each grid point tries once, and `notify.max_attempts` refused
//! digests in a row set them aside as `dead`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::Digest as _;

use super::dispatcher::{Failure, Round};
use super::email::{Mail, Mailer, details, firm_prefix, pretty, summary};
use super::{Dispatcher, one_line};
use crate::store::Store;

/// Notifications in one digest; more go in a second digest at once.
const DIGEST_ROWS: i64 = 500;

impl Dispatcher {
    /// One digest round: the rows due by the last grid point in one message.
    pub(super) async fn digest_round(
        &self,
        mailer: &Mailer,
        every: Duration,
        store: &Store,
        now: DateTime<Utc>,
        stop: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Round> {
        let mut r = Round::default();
        let rows = store
            .outbox_due(last_grid_point(now, every), DIGEST_ROWS)
            .await?;
        if rows.is_empty() {
            return Ok(r);
        }
        r.more = rows.len() as i64 == DIGEST_ROWS;
        let items: Vec<(String, String)> = rows
            .iter()
            .map(|(id, payload, _)| Ok((id.clone(), self.with_firm(payload)?)))
            .collect::<anyhow::Result<_>>()?;
        let mail = digest_mail(mailer, &items);
        let outcome = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(Round::default()),
            res = mailer.send(mail) => res,
        };
        match outcome {
            Ok(()) => {
                for (id, _, _) in &rows {
                    store.outbox_delivered(id, now).await?;
                }
                r.delivered = rows.len() as u64;
            }
            Err(e) => {
                let error = one_line(&format!("{e:#}"), 500);
                let mut failed: Vec<Failure> = rows
                    .into_iter()
                    .map(|(id, _, attempts)| Failure {
                        id,
                        attempts,
                        error: error.clone(),
                    })
                    .collect();
                r.failed = failed.len() as u64;
                r.more = false;
                self.charge(store, &mut failed, now, &mut r).await?;
            }
        }
        Ok(r)
    }
}

/// One message listing `items` (id, payload): their readable lines first, then each in full.
fn digest_mail(mailer: &Mailer, items: &[(String, String)]) -> Mail {
    let values: Vec<Value> = items
        .iter()
        .map(|(_, p)| serde_json::from_str(p).unwrap_or(Value::Null))
        .collect();
    let n = items.len();
    let noun = if n == 1 {
        "notification"
    } else {
        "notifications"
    };
    let mut body = format!("{n} {noun}:\n\n");
    for ((id, _), v) in items.iter().zip(&values) {
        body.push_str(&format!("- {}\n", summary(v, id)));
    }
    for ((id, payload), v) in items.iter().zip(&values) {
        body.push_str("\n----\n");
        body.push_str(&summary(v, id));
        body.push('\n');
        body.push_str(&details(v, id));
        body.push('\n');
        body.push_str(&pretty(v, payload));
        body.push('\n');
    }
    // The digest's id stands for the set it carries: the same rows sent again (the server's
    // answer was lost) give the same Message-ID.
    let mut h = sha2::Sha256::new();
    for (id, _) in items {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    let hex: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let digest_id = format!("digest-{hex}");
    let first = values
        .iter()
        .zip(items)
        .map(|(v, (id, _))| summary(v, id))
        .next()
        .unwrap_or_default();
    let subject = match n {
        1 => first,
        _ => format!("{n} notifications: {first} and {} more", n - 1),
    };
    Mail {
        subject: format!(
            "{}{}",
            values.first().map(firm_prefix).unwrap_or_default(),
            one_line(&subject, 200)
        ),
        message_id: mailer.message_id(&digest_id),
        ppsync_id: digest_id,
        body,
    }
}

/// The last point of the epoch grid (`time::grid_next`'s, the daemon's ticks) at or before `now`.
pub(super) fn last_grid_point(now: DateTime<Utc>, every: Duration) -> DateTime<Utc> {
    crate::time::grid_next(now - every_of(every), every_of(every))
}

fn every_of(every: Duration) -> chrono::Duration {
    chrono::Duration::from_std(every).unwrap_or(chrono::Duration::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_go_out_on_the_interval_grid() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            last_grid_point(t("2026-12-07T10:45:00Z"), hour),
            t("2026-12-07T10:00:00Z")
        );
        assert_eq!(
            last_grid_point(t("2026-12-07T11:00:00Z"), hour),
            t("2026-12-07T11:00:00Z")
        );
        assert_eq!(
            crate::time::grid_at_or_after(t("2026-12-07T10:00:01Z"), hour),
            t("2026-12-07T11:00:00Z")
        );
        assert_eq!(
            crate::time::grid_at_or_after(t("2026-12-07T10:00:00Z"), hour),
            t("2026-12-07T10:00:00Z")
        );
    }
}
