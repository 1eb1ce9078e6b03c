//! Notifications: new tasks, and tasks and events coming due within a window (the seed's
//! "immediate task notifications" and "timely deadline tracking").
//!
//! They are decided here, written to the outbox in the transaction of the records that caused them
//! (or, for deadlines that time alone brings into the window, by [`deadline_scan`]), and delivered
//! at least once by [`Dispatcher`] to a webhook (JSON, signed the Standard Webhooks way) and/or a
//! command (JSON on stdin), on a task of its own beside the daemon's cycles ([`Delivery`]). Ids are
//! stable — `task.created:<id>`, `task.due:<id>:<due>`, `event.upcoming:<id>:<start>` — so a
//! re-read never enqueues twice and receivers can deduplicate redeliveries.
//!
//! The first backfill of a resource records what it finds as `suppressed` (never sent): a firm does
//! not want 5,000 "new task" messages on day one.
//!
//! Outbox statuses: `pending` (to deliver, from `next_attempt_at`), `delivered`, `suppressed`, and
//! `dead` (failed `notify.max_attempts` times: kept and shown, sent again after `ppsync notify
//! retry`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::record::{Row, Value as Col};
use crate::resource::Resource;
use crate::store::{Fresh, Notification, Store};
use crate::time::{Clock, canonical, parse_api_time};

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
    /// A command running longer is killed (with what it started) and the try counts as failed.
    pub command_timeout: Duration,
    /// The environment variables the command gets from ppsync's (nothing else: ppsync's own
    /// holds the client secret and the database password).
    pub command_env: Vec<String>,
    /// Failed tries after which a notification is set aside as `dead`.
    pub max_attempts: u32,
    /// The registered firm these notifications come from (None: the default firm); sent as the
    /// payload's `firm` field and the `X-PPSync-Firm` header, so one receiver can serve many firms.
    pub firm: Option<String>,
}

/// What a command gets of ppsync's environment unless `notify.command_env` says otherwise.
pub const DEFAULT_COMMAND_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            window: Duration::from_secs(30 * 86400),
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: Duration::from_secs(10),
            firm: None,
            command: None,
            command_timeout: Duration::from_secs(30),
            command_env: DEFAULT_COMMAND_ENV.iter().map(|s| s.to_string()).collect(),
            max_attempts: 10,
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

/// The key a webhook secret stands for: a Standard Webhooks secret (`whsec_<base64>`) is its
/// decoded bytes, as the spec says; any other secret is used as its bytes (secrets set before
/// ppsync followed the spec keep working). The error never repeats the secret.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    match secret.strip_prefix("whsec_") {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                "`notify.webhook_secret` starts with whsec_ but what follows is not base64: paste the secret exactly as the receiver gave it".to_string()
            }),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// The `webhook-signature` value (Standard Webhooks, symmetric): `v1,` and the base64 of
/// HMAC-SHA256 over `{id}.{timestamp}.{body}`. The timestamp is signed, so a captured request
/// cannot be passed off as a fresh one.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine as _;
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

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

/// The delivery task's longest idle wait: a `ppsync notify retry` run by another process is
/// picked up within it.
const IDLE: Duration = Duration::from_secs(60);

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
struct Failure {
    id: String,
    attempts: u32,
    error: String,
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
    cfg: NotifyConfig,
    key: Option<secrecy::SecretSlice<u8>>,
    http: reqwest::Client,
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
        Ok(Dispatcher {
            cfg,
            key,
            http,
            sink: Default::default(),
        })
    }

    pub fn has_sinks(&self) -> bool {
        self.cfg.webhook_url.is_some() || self.cfg.command.is_some()
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
    async fn charge(
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
    async fn next_wait(&self, store: &Store, now: DateTime<Utc>) -> Duration {
        let sink = self.sink().retry_at.filter(|t| *t > now);
        let at = match sink {
            Some(t) => Some(t),
            None => store.outbox_next_due().await.ok().flatten(),
        };
        at.map(|t| (t - now).to_std().unwrap_or_default())
            .unwrap_or(IDLE)
            .min(IDLE)
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
            // Receivers check the timestamp against their own clock: the wall clock's, even when
            // the scheduler runs on a simulated one.
            let timestamp = Utc::now().timestamp();
            let mut req = self
                .http
                .post(url.clone())
                .header("content-type", "application/json")
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("x-ppsync-id", id);
            if let Some(firm) = &self.cfg.firm {
                req = req.header("x-ppsync-firm", firm);
            }
            if let Some(key) = &self.key {
                req = req.header(
                    "webhook-signature",
                    sign(key.expose_secret(), id, timestamp, payload.as_bytes()),
                );
            }
            // Without the URL: a webhook URL often carries a token of its own.
            let resp = req
                .body(payload.to_string())
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("webhook: {}", e.without_url()))?;
            anyhow::ensure!(
                resp.status().is_success(),
                "webhook answered {}",
                resp.status()
            );
        }
        if let Some(cmd) = &self.cfg.command {
            self.run_command(cmd, payload).await?;
        }
        Ok(())
    }

    /// Runs `sh -c cmd` with the payload and a newline on stdin, in a cleared environment (only
    /// the names `notify.command_env` allows), in a process group of its own that is killed at
    /// `notify.command_timeout` or when the caller gives up (shutdown drops this future).
    async fn run_command(&self, cmd: &str, payload: &str) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt as _;
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(cmd)
            // ppsync's own environment holds the client secret and the database password.
            .env_clear()
            .envs(
                self.cfg
                    .command_env
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("notify command: cannot start sh: {e}"))?;
        // Declared after `child`, so dropped before it: the group dies before sh is reaped.
        let mut group = Group(child.id());
        let stderr = child
            .stderr
            .take()
            .map(|e| AbortOnDrop(tokio::spawn(tail(e))));
        let stdin = child.stdin.take();
        let run = async {
            if let Some(mut stdin) = stdin {
                // A command that does not read its input is its own business: a closed pipe is
                // no failure. Dropping stdin closes it (end of input).
                let _ = stdin.write_all(payload.as_bytes()).await;
                let _ = stdin.write_all(b"\n").await;
            }
            child.wait().await
        };
        let status = match tokio::time::timeout(self.cfg.command_timeout, run).await {
            Ok(status) => {
                // Reaped: its pid (the group's id) may be reused from now on.
                group.0 = None;
                status?
            }
            Err(_) => anyhow::bail!(
                "notify command did not finish within {}s: killed",
                self.cfg.command_timeout.as_secs_f64()
            ),
        };
        if status.success() {
            return Ok(());
        }
        let said = match stderr {
            Some(mut t) => tokio::time::timeout(Duration::from_millis(200), &mut t.0)
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| one_line(&String::from_utf8_lossy(&b), 300))
                .unwrap_or_default(),
            None => String::new(),
        };
        if said.is_empty() {
            anyhow::bail!("notify command exited with {status}")
        }
        anyhow::bail!("notify command exited with {status}: {said}")
    }
}

/// The last bytes a command wrote to stderr.
async fn tail(mut r: tokio::process::ChildStderr) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    const KEEP: usize = 1024;
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = r.read(&mut buf).await {
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * KEEP {
            kept.drain(..kept.len() - KEEP);
        }
    }
    kept
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A command's process group (its id is sh's pid), killed when dropped still armed: on a
/// timeout or a shutdown, whatever the command started ends with it.
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self
            .0
            .and_then(|p| i32::try_from(p).ok())
            // Never 1: kill(-1) signals every process we may signal.
            .filter(|p| *p > 1)
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

fn one_line(s: &str, max: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// The delivery task of one daemon (one firm): a round when woken (after the daemon's cycles
/// and deadline scans), when the next retry falls due, and at least every minute. It runs beside
/// the cycles, so a slow or hanging sink never delays syncing; `stop` ends it at once, killing a
/// command in flight (its row stays pending, the try is not counted).
pub struct Delivery {
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<u64>>,
}

impl Delivery {
    pub fn spawn(
        dispatcher: Dispatcher,
        store: Store,
        clock: Arc<dyn Clock>,
        stop: CancellationToken,
    ) -> Delivery {
        let wake = Arc::new(tokio::sync::Notify::new());
        let task = dispatcher.has_sinks().then(|| {
            tokio::spawn(delivery_loop(
                dispatcher,
                store,
                clock,
                wake.clone(),
                stop.clone(),
            ))
        });
        Delivery { wake, stop, task }
    }

    /// Something may be due (the daemon committed, or scanned the deadlines).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the task and returns how many notifications it delivered.
    pub async fn stop(mut self) -> u64 {
        self.stop.cancel();
        match self.task.take() {
            Some(t) => t.await.unwrap_or(0),
            None => 0,
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn delivery_loop(
    dispatcher: Dispatcher,
    store: Store,
    clock: Arc<dyn Clock>,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) -> u64 {
    let mut delivered = 0;
    while !stop.is_cancelled() {
        let wait = match dispatcher.round(&store, clock.now(), &stop).await {
            Ok(r) => {
                delivered += r.delivered;
                if r.more {
                    continue;
                }
                dispatcher.next_wait(&store, clock.now()).await
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "notification delivery failed");
                Duration::from_secs(10)
            }
        };
        // A real-time wait, not the clock's: a simulated clock is driven by the scheduler alone
        // (its sleep advances it), and the scheduler wakes this task after every cycle.
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
            _ = stop.cancelled() => {}
        }
    }
    delivered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_test_vector() {
        // From the Standard Webhooks reference library (standard-webhooks/standard-webhooks,
        // libraries/rust/src/lib.rs, `test_sign`).
        let key = signing_key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn secrets_other_than_whsec_are_their_bytes_and_a_bad_whsec_is_refused_without_echo() {
        assert_eq!(signing_key("test-secret").unwrap(), b"test-secret");
        // The same bytes either way give the same signature.
        let raw = sign(b"0123456789abcdef01234567", "x", 1, b"{}");
        let encoded = sign(
            &signing_key("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3").unwrap(),
            "x",
            1,
            b"{}",
        );
        assert_eq!(raw, encoded);
        for bad in ["whsec_not base64!", "whsec_"] {
            let e = signing_key(bad).unwrap_err();
            assert!(!e.contains("not base64!") && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn the_signature_covers_the_timestamp() {
        let key = b"k";
        assert_ne!(sign(key, "id", 1, b"{}"), sign(key, "id", 2, b"{}"));
        assert_ne!(sign(key, "id", 1, b"{}"), sign(key, "id2", 1, b"{}"));
    }

    #[test]
    fn ten_tries_span_about_four_hours() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(40), Duration::from_secs(7200));
        let total: u64 = (1..10).map(|a| backoff(a).as_secs()).sum();
        assert_eq!(total, 14850);
    }

    fn with_command(cmd: &str, timeout: Duration) -> Dispatcher {
        Dispatcher::new(NotifyConfig {
            command: Some(cmd.to_string()),
            command_timeout: timeout,
            ..NotifyConfig::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn the_command_reads_the_payload_and_a_newline() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let d = with_command(
            &format!("cat > '{}'", out.display()),
            Duration::from_secs(30),
        );
        d.deliver("id", r#"{"id":"id"}"#).await.unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"id\"}\n");
    }

    #[tokio::test]
    async fn a_failing_command_says_why() {
        let d = with_command(
            "echo 'no route to the printer' >&2; exit 3",
            Duration::from_secs(30),
        );
        let e = format!("{:#}", d.deliver("id", "{}").await.unwrap_err());
        assert!(
            e.contains("exit status: 3") && e.contains("no route to the printer"),
            "{e}"
        );
    }

    /// Whether a process is gone (or a zombie waiting to be reaped: it runs no more).
    fn gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_at_its_timeout_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("pid");
        // sh stays (it waits), and its child sleeps: both are killed with the group.
        let d = with_command(
            &format!("sleep 600 & echo $! > '{}'; wait", pid.display()),
            Duration::from_millis(500),
        );
        let t = std::time::Instant::now();
        let e = format!("{:#}", d.deliver("id", "{}").await.unwrap_err());
        assert!(e.contains("did not finish within 0.5s"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let pid = std::fs::read_to_string(&pid).unwrap();
        let pid = pid.trim();
        let t = std::time::Instant::now();
        while !gone(pid) {
            assert!(t.elapsed() < Duration::from_secs(5), "sleep {pid} survived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
