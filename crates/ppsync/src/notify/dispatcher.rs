//! A delivery round: the due pending outbox rows, oldest first, to the configured sinks; each
//! failed row's backoff, `dead` at `notify.max_attempts`, and the breaker that tells a down sink
//! from bad rows.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::delivery::IDLE;
use super::email::Mailer;
use super::{NotifyConfig, one_line, signing_key};
use crate::store::Store;
use crate::time::canonical;

/// How long a notification waits after its `attempts`-th failed try: 30 s, doubling, at most
/// 2 h. The tenth try (the default `notify.max_attempts`) comes about 4 hours after the first.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    Duration::from_secs(30u64.saturating_mul(1 << doublings).min(2 * 3600))
}

/// Rows tried per round (a round is repeated at once while full rounds succeed).
const ROUND_ROWS: i64 = 100;

/// Different notifications failing one after another, nothing delivered between them: the sink
/// (the webhook, the command) looks down rather than the rows being bad.
const BREAKER: usize = 3;

/// What one delivery round did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Round {
    pub delivered: u64,
    /// Tries that failed (counted against their rows or not).
    pub failed: u64,
    /// Rows set aside as `dead` this round.
    pub dead: u64,
    /// The round stopped (or did not start) because the sink looks down.
    pub sink_down: bool,
    /// The round took a full batch: more rows may be due.
    pub more: bool,
}

/// What is known of the sink between rounds (in memory: a restart starts from "up").
#[derive(Debug, Default)]
struct Sink {
    down: bool,
    /// Rounds in a row that found it down (its backoff's exponent).
    rounds_down: u32,
    /// No round before this.
    retry_at: Option<DateTime<Utc>>,
}

impl Sink {
    fn up(&mut self) {
        if self.down {
            tracing::info!("notification sink is back");
        }
        *self = Sink::default();
    }

    /// The sink looks down: the next round waits 30 s, doubling to at most 10 minutes, and then
    /// tries one row before any other.
    fn trip(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.down = true;
        self.rounds_down = self.rounds_down.saturating_add(1);
        let doublings = (self.rounds_down - 1).min(16);
        let delay = Duration::from_secs(30u64.saturating_mul(1 << doublings).min(600));
        let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
        self.retry_at = Some(at);
        at
    }
}

/// A failed try not yet charged to its row.
pub(super) struct Failure {
    pub(super) id: String,
    pub(super) attempts: u32,
    pub(super) error: String,
}

/// Delivers pending outbox rows to the configured sinks, at least once.
///
/// A row that fails waits out its own backoff (`backoff`) while the rows behind it go on, and
/// after `notify.max_attempts` failed tries it is set aside as `dead` (kept, shown, retried by
/// `ppsync notify retry`). A failure counts against its row unless the sink looks down:
/// [`BREAKER`] different rows failing in a row, nothing delivered between them. Then the round
/// stops (a down sink costs a few timeouts per round, not one per row), those tries are not
/// counted, and the sink is tried again after its own backoff, one row first.
pub struct Dispatcher {
    pub(super) cfg: NotifyConfig,
    pub(super) key: Option<secrecy::SecretSlice<u8>>,
    pub(super) http: reqwest::Client,
    mailer: Option<Mailer>,
    sink: std::sync::Mutex<Sink>,
}

impl Dispatcher {
    pub fn new(cfg: NotifyConfig) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        let http = reqwest::Client::builder()
            .timeout(cfg.webhook_timeout)
            // A redirect is a failure (the Standard Webhooks advice): fix the URL instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let key = match &cfg.webhook_secret {
            Some(s) => Some(
                signing_key(s.expose_secret())
                    .map_err(anyhow::Error::msg)?
                    .into(),
            ),
            None => None,
        };
        let mailer = cfg.email.clone().map(Mailer::new).transpose()?;
        Ok(Dispatcher {
            cfg,
            key,
            http,
            mailer,
            sink: Default::default(),
        })
    }

    pub fn has_sinks(&self) -> bool {
        self.cfg.webhook_url.is_some() || self.cfg.command.is_some() || self.mailer.is_some()
    }

    fn sink(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One delivery round, not interruptible (tests; a final flush).
    pub async fn deliver_due(&self, store: &Store, now: DateTime<Utc>) -> anyhow::Result<Round> {
        self.round(store, now, &CancellationToken::new()).await
    }

    /// One delivery round: the due pending rows, oldest first. On `stop` the try in flight is
    /// abandoned (a command is killed) and its row left as it was: shutdown is no failure.
    pub async fn round(
        &self,
        store: &Store,
        now: DateTime<Utc>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Round> {
        let mut r = Round::default();
        if !self.has_sinks() {
            return Ok(r);
        }
        if let Some(m) = &self.mailer
            && let Some(every) = m.cfg.digest
        {
            return self.digest_round(m, every, store, now, stop).await;
        }
        if self.sink().retry_at.is_some_and(|t| now < t) {
            r.sink_down = true;
            return Ok(r);
        }
        let rows = store.outbox_due(now, ROUND_ROWS).await?;
        r.more = rows.len() as i64 == ROUND_ROWS;
        // Failures since the last delivery of this round: whether they are the rows' or the
        // sink's is known only from what comes next.
        let mut unjudged: Vec<Failure> = Vec::new();
        for (id, payload, attempts) in rows {
            let outcome = tokio::select! {
                biased;
                _ = stop.cancelled() => None,
                res = self.deliver(&id, &payload) => Some(res),
            };
            match outcome {
                None => {
                    r.more = false;
                    break;
                }
                Some(Ok(())) => {
                    // The sink works: the failures before this delivery were the rows' own.
                    self.charge(store, &mut unjudged, now, &mut r).await?;
                    store.outbox_delivered(&id, now).await?;
                    self.sink().up();
                    r.delivered += 1;
                }
                Some(Err(e)) => {
                    r.failed += 1;
                    unjudged.push(Failure {
                        id,
                        attempts,
                        error: one_line(&format!("{e:#}"), 500),
                    });
                    let was_down = self.sink().down;
                    if was_down || unjudged.len() >= BREAKER {
                        let retry_at = self.sink().trip(now);
                        tracing::warn!(
                            failures = unjudged.len(),
                            error = %unjudged.last().map(|f| f.error.as_str()).unwrap_or(""),
                            retry_at = %canonical(retry_at),
                            "notification sink looks down: these tries are not counted against the notifications"
                        );
                        for f in unjudged.drain(..) {
                            store
                                .outbox_failed(&f.id, retry_at, &f.error, false)
                                .await?;
                        }
                        r.sink_down = true;
                        r.more = false;
                        break;
                    }
                }
            }
        }
        // What failed last with nothing after it, the sink not known to be down: the rows' own.
        self.charge(store, &mut unjudged, now, &mut r).await?;
        Ok(r)
    }

    /// Counts failed tries against their rows: backoff, or `dead` at `max_attempts`.
    pub(super) async fn charge(
        &self,
        store: &Store,
        unjudged: &mut Vec<Failure>,
        now: DateTime<Utc>,
        r: &mut Round,
    ) -> anyhow::Result<()> {
        for f in std::mem::take(unjudged) {
            let attempts = f.attempts.saturating_add(1);
            if attempts >= self.cfg.max_attempts {
                tracing::error!(notification = %f.id, attempts, error = %f.error, "notification set aside as dead: `ppsync notify retry` sends it again");
                store.outbox_dead(&f.id, &f.error).await?;
                r.dead += 1;
            } else {
                let delay = backoff(attempts);
                tracing::warn!(notification = %f.id, attempts, error = %f.error, retry_in_s = delay.as_secs(), "notification not delivered");
                let next = now + chrono::Duration::from_std(delay).unwrap_or_default();
                store.outbox_failed(&f.id, next, &f.error, true).await?;
            }
        }
        Ok(())
    }

    /// When the next round has something to do (at most [`IDLE`] from now).
    pub(super) async fn next_wait(&self, store: &Store, now: DateTime<Utc>) -> Duration {
        let sink = self.sink().retry_at.filter(|t| *t > now);
        let at = match sink {
            Some(t) => Some(t),
            None => store.outbox_next_due().await.ok().flatten(),
        };
        // A digest waits for the grid point after the next row falls due.
        let digest = self.mailer.as_ref().and_then(|m| m.cfg.digest);
        let at = match (at, digest) {
            (Some(t), Some(every)) => Some(crate::time::grid_at_or_after(t.max(now), every)),
            (at, _) => at,
        };
        at.map(|t| (t - now).to_std().unwrap_or_default())
            .unwrap_or(IDLE)
            .min(IDLE)
    }

    /// The payload as sent: the outbox row is the firm's own; the firm is named on the way out.
    pub(super) fn with_firm(&self, payload: &str) -> anyhow::Result<String> {
        Ok(match &self.cfg.firm {
            Some(firm) => {
                let mut v: serde_json::Value = serde_json::from_str(payload)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("firm".into(), Value::String(firm.clone()));
                }
                v.to_string()
            }
            None => payload.to_string(),
        })
    }

    pub(super) async fn deliver(&self, id: &str, payload: &str) -> anyhow::Result<()> {
        let payload = self.with_firm(payload)?;
        let payload = payload.as_str();
        if let Some(url) = &self.cfg.webhook_url {
            self.post_webhook(url, id, payload).await?;
        }
        if let Some(cmd) = &self.cfg.command {
            self.run_command(cmd, payload).await?;
        }
        if let Some(m) = &self.mailer {
            m.send(m.single(id, payload)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_tries_span_about_four_hours() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(40), Duration::from_secs(7200));
        let total: u64 = (1..10).map(|a| backoff(a).as_secs()).sum();
        assert_eq!(total, 14850);
    }
}
