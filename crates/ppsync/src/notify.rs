//! Notifications: new tasks, and tasks and events coming due within a window (the seed's
//! "immediate task notifications" and "timely deadline tracking").
//!
//! They are decided here, written to the outbox in the transaction of the records that caused them
//! (or, for deadlines that time alone brings into the window, by [`deadline_scan`]), and delivered
//! at least once by [`Dispatcher`] to a webhook (JSON, HMAC-SHA256 signed) and/or a command (JSON
//! on stdin). Ids are stable — `task.created:<id>`, `task.due:<id>:<due>`, `event.upcoming:<id>:<start>`
//! — so a re-read never enqueues twice and receivers can deduplicate redeliveries.
//!
//! The first backfill of a resource records what it finds as `suppressed` (never sent): a firm does
//! not want 5,000 "new task" messages on day one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::record::{Row, Value as Col};
use crate::resource::Resource;
use crate::store::{Fresh, Notification, Store};
use crate::time::{canonical, parse_api_time};

/// What a resource notifies about: its due column, and whether new records are news.
pub struct Rule {
    pub resource: &'static str,
    pub due_column: &'static str,
    pub created_kind: Option<&'static str>,
    pub due_kind: &'static str,
}

pub const RULES: &[Rule] = &[
    Rule {
        resource: "tasks",
        due_column: "due_date",
        created_kind: Some("task.created"),
        due_kind: "task.due",
    },
    Rule {
        resource: "events",
        due_column: "start_date_time",
        created_kind: None,
        due_kind: "event.upcoming",
    },
];

pub fn rule(res: &Resource) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.resource == res.name)
}

/// Settings from the config.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    pub window: Duration,
    pub webhook_url: Option<url::Url>,
    pub webhook_secret: Option<secrecy::SecretString>,
    pub webhook_timeout: Duration,
    pub command: Option<String>,
    /// The registered firm these notifications come from (None: the default firm); sent as the
    /// payload's `firm` field and the `X-PPSync-Firm` header, so one receiver can serve many firms.
    pub firm: Option<String>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            window: Duration::from_secs(30 * 86400),
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: Duration::from_secs(10),
            firm: None,
            command: None,
        }
    }
}

fn column<'a>(res: &Resource, row: &'a Row, name: &str) -> Option<&'a Col> {
    res.columns
        .iter()
        .position(|c| c.name == name)
        .and_then(|i| row.columns.get(i))
}

fn is_open(res: &Resource, row: &Row) -> bool {
    !matches!(column(res, row, "status"), Some(Col::Text(s)) if s == "Completed")
}

/// The notifications caused by rows a page wrote. `fresh` says which rows were new or changed and
/// what their due column held before.
pub fn for_page(
    res: &Resource,
    rows: &[Row],
    fresh: &[Fresh],
    now: DateTime<Utc>,
    window: Duration,
    suppressed: bool,
) -> Vec<Notification> {
    let Some(rule) = rule(res) else {
        return Vec::new();
    };
    let by_id: std::collections::HashMap<&str, &Row> =
        rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let horizon = now + chrono::Duration::from_std(window).unwrap_or_default();
    let mut out = Vec::new();
    for f in fresh {
        let Some(row) = by_id.get(f.id.as_str()) else {
            continue;
        };
        // A backfill's "created" rows are not even recorded: nothing ever consults them (unlike
        // suppressed deadlines, which keep the deadline scan from announcing them later).
        if f.prior.is_none()
            && !suppressed
            && let Some(kind) = rule.created_kind
        {
            out.push(notification(
                res,
                row,
                kind,
                format!("{kind}:{}", row.id),
                None,
                now,
                suppressed,
            ));
        }
        let due = match column(res, row, rule.due_column) {
            Some(Col::Time(t)) => *t,
            _ => continue,
        };
        let moved = match &f.prior {
            None => true,
            Some(prior) => prior.as_deref().and_then(parse_api_time) != Some(due),
        };
        if moved && due >= now && due <= horizon && is_open(res, row) {
            out.push(due_notification(res, row, rule, due, now, suppressed));
        }
    }
    out
}

fn due_notification(
    res: &Resource,
    row: &Row,
    rule: &Rule,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    suppressed: bool,
) -> Notification {
    let id = format!("{}:{}:{}", rule.due_kind, row.id, canonical(due));
    notification(res, row, rule.due_kind, id, Some(due), now, suppressed)
}

fn notification(
    res: &Resource,
    row: &Row,
    kind: &str,
    id: String,
    due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    suppressed: bool,
) -> Notification {
    // A suppressed row (a first backfill's findings) is never delivered: it only keeps its id, so
    // the deadline scan does not announce it later. Its payload says what it was without the
    // record, which is not parsed again for it (a backfill of tasks records thousands).
    let payload = if suppressed {
        json!({
            "id": id,
            "kind": kind,
            "resource": res.name,
            "record_id": row.id,
            "due": due.map(canonical),
            "detected_at": canonical(now),
        })
    } else {
        delivered_payload(res, row, kind, &id, due, now)
    };
    Notification {
        id,
        kind: kind.to_string(),
        resource: res.name.to_string(),
        record_id: row.id.clone(),
        payload,
        suppressed,
    }
}

fn delivered_payload(
    res: &Resource,
    row: &Row,
    kind: &str,
    id: &str,
    due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Value {
    let record: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
    json!({
        "id": id,
        "kind": kind,
        "resource": res.name,
        "record_id": row.id,
        "subject": record.get("subject"),
        "due": due.map(canonical),
        "account_id": record.pointer("/account_ref/id"),
        "matter_id": record.pointer("/matter_ref/id"),
        "detected_at": canonical(now),
        "record": record,
    })
}

/// Enqueues deadlines that time alone brought into the window (no record changed): every open task
/// and event due within the window that has no outbox row for its current due date yet.
pub async fn deadline_scan(
    store: &Store,
    now: DateTime<Utc>,
    window: Duration,
) -> anyhow::Result<u64> {
    let horizon = now + chrono::Duration::from_std(window).unwrap_or_default();
    let mut items = Vec::new();
    for rule in RULES {
        let res = crate::resource::find(rule.resource).expect("rules name real resources");
        let rows = store
            .due_between(res, rule.due_column, now, horizon, rule.due_kind)
            .await?;
        for raw in rows {
            let row = crate::record::prepare(res, raw.get())?;
            if !is_open(res, &row) {
                continue;
            }
            if let Some(Col::Time(due)) = column(res, &row, rule.due_column) {
                items.push(due_notification(res, &row, rule, *due, now, false));
            }
        }
    }
    let mut tx = store.begin().await?;
    let n = tx.enqueue(&items, now).await?;
    tx.commit().await?;
    Ok(n)
}

type HmacSha256 = Hmac<Sha256>;

/// The signature header value for a body: `sha256=<hex>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Delivers pending outbox rows to the configured sinks, at least once.
pub struct Dispatcher {
    cfg: NotifyConfig,
    http: reqwest::Client,
}

impl Dispatcher {
    pub fn new(cfg: NotifyConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(cfg.webhook_timeout)
            .build()?;
        Ok(Dispatcher { cfg, http })
    }

    pub fn has_sinks(&self) -> bool {
        self.cfg.webhook_url.is_some() || self.cfg.command.is_some()
    }

    /// One delivery round: every due pending row, oldest first. Returns (delivered, failed).
    pub async fn deliver_due(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(u64, u64)> {
        if !self.has_sinks() {
            return Ok((0, 0));
        }
        let (mut ok, mut failed) = (0, 0);
        for (id, payload, attempts) in store.outbox_due(now, 200).await? {
            match self.deliver(&id, &payload).await {
                Ok(()) => {
                    store.outbox_delivered(&id, now).await?;
                    ok += 1;
                }
                Err(e) => {
                    // Exponential backoff, capped at an hour: a sink that is down loses nothing.
                    let delay =
                        Duration::from_secs(5u64.saturating_mul(1 << attempts.min(10)).min(3600));
                    let next = now + chrono::Duration::from_std(delay).unwrap_or_default();
                    tracing::warn!(notification = %id, error = %e, retry_in_s = delay.as_secs(), "notification not delivered");
                    store.outbox_failed(&id, next, &e.to_string()).await?;
                    failed += 1;
                    // Keep order: later rows wait for the sink to come back.
                    break;
                }
            }
        }
        Ok((ok, failed))
    }

    async fn deliver(&self, id: &str, payload: &str) -> anyhow::Result<()> {
        use secrecy::ExposeSecret;
        let with_firm;
        let payload = match &self.cfg.firm {
            // The outbox row is the firm's own; the firm is named on the way out.
            Some(firm) => {
                let mut v: serde_json::Value = serde_json::from_str(payload)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("firm".into(), Value::String(firm.clone()));
                }
                with_firm = v.to_string();
                with_firm.as_str()
            }
            None => payload,
        };
        if let Some(url) = &self.cfg.webhook_url {
            let mut req = self
                .http
                .post(url.clone())
                .header("content-type", "application/json")
                .header("x-ppsync-id", id);
            if let Some(firm) = &self.cfg.firm {
                req = req.header("x-ppsync-firm", firm);
            }
            if let Some(secret) = &self.cfg.webhook_secret {
                req = req.header(
                    "x-ppsync-signature",
                    signature(secret.expose_secret(), payload.as_bytes()),
                );
            }
            let resp = req.body(payload.to_string()).send().await?;
            anyhow::ensure!(
                resp.status().is_success(),
                "webhook answered {}",
                resp.status()
            );
        }
        if let Some(cmd) = &self.cfg.command {
            let cmd = cmd.clone();
            let payload = payload.to_string();
            let status = tokio::task::spawn_blocking(
                move || -> std::io::Result<std::process::ExitStatus> {
                    use std::io::Write;
                    let mut child = std::process::Command::new("sh")
                        .arg("-c")
                        .arg(&cmd)
                        .stdin(std::process::Stdio::piped())
                        .spawn()?;
                    if let Some(mut stdin) = child.stdin.take() {
                        stdin.write_all(payload.as_bytes())?;
                    }
                    child.wait()
                },
            )
            .await??;
            anyhow::ensure!(status.success(), "notify command exited with {status}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
