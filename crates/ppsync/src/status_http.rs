//! The daemon's HTTP endpoint (loopback by default): `/healthz`, `/metrics` (Prometheus),
//! `/status` (JSON) and a small HTML status page at `/`.
//!
//! Every response is computed on request from the database and the client's counters: there is no
//! state here to go stale. A resource is *behind* when it has never synced, or when its last
//! success (`cursor_set_at`, our clock) is more than twice its interval plus five minutes ago;
//! `/healthz` answers 503 naming those. With `http.token` set, every route wants
//! `Authorization: Bearer <token>`; without one the endpoint must be on loopback (`serve` refuses
//! otherwise). Every route first checks the request's `Host` ([`Hosts`]): a web page whose name
//! an attacker points at 127.0.0.1 (DNS rebinding) is same-origin with this endpoint as far as
//! the browser knows, and only the name it asked for tells it apart.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::api::Client;
use crate::resource::{RESOURCES, Resource};
use crate::store::{Deadline, RunRow, Store};
use crate::time::{Clock, canonical};

/// What the endpoint reads from.
#[derive(Clone)]
pub struct StatusContext {
    pub store: Store,
    pub client: Client,
    /// Enabled resources and their intervals.
    pub schedule: Vec<(&'static Resource, Duration)>,
    pub clock: Arc<dyn Clock>,
    /// If set, requests must carry `Authorization: Bearer <token>`.
    pub token: Option<SecretString>,
    /// The `Host` names requests may carry.
    pub hosts: Hosts,
    /// The notification window (for the page's upcoming deadlines).
    pub notify_window: Duration,
}

/// Which `Host` a request may name: a loopback name or address (`localhost`, `127.0.0.1`,
/// `[::1]`), the address the endpoint listens on (any address, when it listens on all of them),
/// or a name the user listed (`http.allowed_hosts`). An address can be trusted because a DNS
/// rebinding needs a name to rebind; the port is not compared (a rebinding page uses ours).
#[derive(Clone, Debug, Default)]
pub struct Hosts {
    listen: Option<IpAddr>,
    names: Arc<[String]>,
}

impl Hosts {
    /// `names` as `Config::http_allowed_hosts` holds them (lowercase, no trailing dot).
    pub fn new(listen: Option<SocketAddr>, names: &[String]) -> Hosts {
        Hosts {
            listen: listen.map(|a| a.ip().to_canonical()),
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    pub fn from_config(cfg: &crate::config::Config) -> Hosts {
        Hosts::new(cfg.http_listen, &cfg.http_allowed_hosts)
    }

    /// Whether a `Host` header's value (`name`, `name:port`, `[v6]:port`) is one of ours.
    pub fn allows(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip,
                _ => return false,
            },
            None => match host.rsplit_once(':') {
                Some((name, _port)) if !name.contains(':') => name,
                _ => host,
            },
        };
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if name == "localhost" || self.names.contains(&name) {
            return true;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => {
                let ip = ip.to_canonical();
                crate::config::is_loopback(ip)
                    || self.listen.is_some_and(|l| l == ip || l.is_unspecified())
            }
            Err(_) => false,
        }
    }
}

/// Without a token, only loopback: anyone who reaches the address would read the firm's status.
fn refuse_open_without_token(
    listener: &tokio::net::TcpListener,
    token: Option<&SecretString>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    if token.is_none() && !crate::config::is_loopback(addr.ip()) {
        anyhow::bail!(
            "http.listen {addr} is reachable from other machines but http.token is not set: set http.token, or listen on 127.0.0.1"
        );
    }
    Ok(())
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: StatusContext,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    refuse_open_without_token(&listener, ctx.token.as_ref())?;
    axum::serve(listener, router(ctx))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

fn router(ctx: StatusContext) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status", get(status_json))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(ctx.clone(), require_token))
        .with_state(ctx)
}

/// Slack allowed past twice the interval before a resource counts as behind.
const GRACE: chrono::Duration = chrono::Duration::minutes(5);
/// Recent runs on the page and in `/status`.
const RECENT_RUNS: i64 = 20;
/// Latest record issues on the page and in `/status`.
const RECENT_ISSUES: i64 = 20;
/// Deadlines shown: the next `DEADLINE_DAYS` days (at most the notification window), first few.
const DEADLINE_DAYS: i64 = 7;
const DEADLINES_SHOWN: usize = 20;
/// Dead notifications listed (the oldest; the count covers them all).
const DEAD_SHOWN: i64 = 20;

async fn require_token(State(ctx): State<StatusContext>, req: Request, next: Next) -> Response {
    check_access(&ctx.hosts, ctx.token.as_ref(), req, next).await
}

/// The `Host` first (a rebinding page gets 421 whatever else it sends), then the token.
async fn check_access(
    hosts: &Hosts,
    token: Option<&SecretString>,
    req: Request,
    next: Next,
) -> Response {
    // HTTP/1.1 names the host in `Host`, HTTP/2 (and an absolute request target) in the URI:
    // every name the request carries must be ours. A request naming none is no browser's.
    let named = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .into_iter()
        .chain(
            req.headers()
                .get_all(header::HOST)
                .iter()
                .map(|v| v.to_str().unwrap_or("").to_string()),
        );
    for host in named {
        if !hosts.allows(&host) {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this endpoint does not answer to the host {host:?}: reach it as 127.0.0.1 or localhost, or add the name to http.allowed_hosts\n"
                ),
            )
                .into_response();
        }
    }
    if let Some(token) = token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_bytes(given.trim().as_bytes(), token.expose_secret().as_bytes()) {
            let mut resp =
                (StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ppsync\""),
            );
            return resp;
        }
    }
    next.run(req).await
}

/// Equality without an early exit on the first differing byte.
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A handler failure: 500 with the error chain (the endpoint is on loopback, for operators).
struct Failure(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.into())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        tracing::warn!(error = %format!("{:#}", self.0), "status endpoint request failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("error: {:#}\n", self.0),
        )
            .into_response()
    }
}

/// Everything the endpoints show, read at one instant.
#[derive(Serialize)]
struct Snapshot {
    now: String,
    healthy: bool,
    /// Enabled resources that are behind (or never synced).
    behind: Vec<String>,
    /// Enabled resources whose last complete listing could not reach every record.
    incomplete: Vec<String>,
    /// Firm-wide facts learned of the API (the request rate it allows, its clock's skew).
    api: crate::sync::ApiFacts,
    requests: Requests,
    budget: BudgetUse,
    resources: Vec<ResourceStatus>,
    /// Records with a field that could not be read into its typed column, per resource.
    record_issues: BTreeMap<String, i64>,
    /// The latest of them (the record is stored; the column is NULL).
    recent_issues: Vec<crate::store::IssueRow>,
    /// Records waiting for their by-id read, per resource (only resources with some).
    details: BTreeMap<String, crate::store::DetailBacklog>,
    /// Outbox rows per `kind/status`.
    outbox: BTreeMap<String, i64>,
    /// Outbox rows waiting for delivery.
    outbox_pending: i64,
    /// Outbox rows set aside after their last allowed try (`ppsync notify retry` sends them again).
    outbox_dead: i64,
    /// The oldest of them.
    dead: Vec<crate::store::DeadRow>,
    /// Newest first.
    recent_runs: Vec<RunRow>,
    deadlines_until: String,
    deadlines: Vec<Deadline>,
}

#[derive(Serialize)]
struct Requests {
    /// Requests sent since the process started (token calls and retries included).
    total: u64,
    throttled: u64,
    token_refreshes: u64,
}

#[derive(Serialize)]
struct BudgetUse {
    limit: usize,
    in_window: usize,
    used_total: u64,
    waited_ms_total: u64,
}

#[derive(Serialize)]
struct ResourceStatus {
    name: &'static str,
    tier: &'static str,
    enabled: bool,
    /// None when disabled.
    interval_seconds: Option<u64>,
    live: i64,
    deleted: i64,
    cursor: Option<String>,
    /// When the cursor last moved (our clock): the last complete sync.
    last_success: Option<String>,
    /// Seconds since `last_success` (None: never synced).
    lag_seconds: Option<i64>,
    behind: bool,
    last_full: Option<String>,
    /// A listing was interrupted and will resume from its saved point.
    listing_in_flight: bool,
    /// The last complete listing could not reach records that exist: what was seen.
    incomplete: Option<String>,
    /// The last complete listing could not be proven complete (nothing seen missing): why.
    unproven: Option<String>,
    /// What has been learned of the endpoint.
    dialect: crate::sync::Dialect,
    runs: i64,
    records_changed_total: i64,
    last_run: Option<RunRow>,
}

async fn snapshot(ctx: &StatusContext) -> anyhow::Result<Snapshot> {
    let now = ctx.clock.now();
    let intervals: HashMap<&str, Duration> =
        ctx.schedule.iter().map(|(r, d)| (r.name, *d)).collect();
    let mut totals = ctx.store.run_totals().await?;
    let mut resources = Vec::with_capacity(RESOURCES.len());
    let mut behind = Vec::new();
    let mut incomplete = Vec::new();
    let dialects: HashMap<String, String> = ctx.store.dialects().await?.into_iter().collect();
    let learned = |name: &str| -> crate::sync::Dialect {
        dialects
            .get(name)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    };
    // Enabled resources in schedule order, then the disabled ones.
    let order = ctx
        .schedule
        .iter()
        .map(|(r, _)| *r)
        .chain(RESOURCES.iter().filter(|r| !intervals.contains_key(r.name)));
    for res in order {
        let st = ctx.store.state(res).await?;
        let (live, deleted) = ctx.store.counts(res).await?;
        let interval = intervals.get(res.name).copied();
        let lag = st.cursor_set_at.map(|t| now - t);
        let is_behind = interval.is_some_and(|i| is_behind(lag, i));
        if is_behind {
            behind.push(res.name.to_string());
        }
        if interval.is_some() && st.incomplete.is_some() {
            incomplete.push(res.name.to_string());
        }
        let t = totals.remove(res.name);
        resources.push(ResourceStatus {
            name: res.name,
            tier: res.tier.name(),
            enabled: interval.is_some(),
            interval_seconds: interval.map(|i| i.as_secs()),
            live,
            deleted,
            cursor: st.cursor.map(canonical),
            last_success: st.cursor_set_at.map(canonical),
            lag_seconds: lag.map(|l| l.num_seconds().max(0)),
            behind: is_behind,
            last_full: st.last_full_at.map(canonical),
            listing_in_flight: st.listing.is_some(),
            incomplete: st.incomplete.clone(),
            unproven: st.unproven.clone(),
            dialect: learned(res.name),
            runs: t.as_ref().map_or(0, |t| t.runs),
            records_changed_total: t.as_ref().map_or(0, |t| t.records_changed),
            last_run: t.map(|t| t.last),
        });
    }
    let outbox = ctx.store.outbox_counts().await?;
    let by_status = |status: &str| -> i64 {
        outbox
            .iter()
            .filter(|(k, _)| k.rsplit('/').next() == Some(status))
            .map(|(_, n)| *n)
            .sum()
    };
    let outbox_pending = by_status("pending");
    let outbox_dead = by_status("dead");
    let dead = if outbox_dead > 0 {
        ctx.store.outbox_dead_rows(DEAD_SHOWN).await?
    } else {
        Vec::new()
    };
    let window = chrono::Duration::from_std(ctx.notify_window)
        .unwrap_or(chrono::Duration::days(DEADLINE_DAYS))
        .min(chrono::Duration::days(DEADLINE_DAYS));
    let until = now + window;
    let mut deadlines = ctx.store.deadlines(now, until).await?;
    deadlines.truncate(DEADLINES_SHOWN);
    let budget = ctx.client.budget();
    let api = dialects
        .get(crate::sync::dialect::API)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let record_issues = ctx.store.issue_counts().await?;
    let recent_issues = ctx.store.issues(RECENT_ISSUES).await?;
    let details = ctx.store.detail_backlog().await?;
    Ok(Snapshot {
        details,
        now: canonical(now),
        record_issues,
        recent_issues,
        healthy: behind.is_empty() && incomplete.is_empty(),
        behind,
        incomplete,
        api,
        requests: Requests {
            total: ctx.client.requests_made(),
            throttled: ctx.client.throttled(),
            token_refreshes: ctx.client.refreshes(),
        },
        budget: BudgetUse {
            limit: budget.limit(),
            in_window: budget.in_window().await,
            used_total: budget.total_used(),
            waited_ms_total: budget.total_waited_ms(),
        },
        resources,
        outbox,
        outbox_pending,
        outbox_dead,
        dead,
        recent_runs: ctx.store.runs(RECENT_RUNS).await?,
        deadlines_until: canonical(until),
        deadlines,
    })
}

/// Behind: never synced, or the last success is older than twice the interval plus the grace.
fn is_behind(lag: Option<chrono::Duration>, interval: Duration) -> bool {
    let interval = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX / 4);
    match lag {
        None => true,
        Some(lag) => lag > interval * 2 + GRACE,
    }
}

async fn status_json(State(ctx): State<StatusContext>) -> Result<Response, Failure> {
    Ok(axum::Json(snapshot(&ctx).await?).into_response())
}

async fn healthz(State(ctx): State<StatusContext>) -> Result<Response, Failure> {
    let (behind, incomplete) = problems(&ctx, "").await?;
    Ok(health_answer(behind, incomplete, "ok\n".into()))
}

/// The enabled resources that are behind, and those whose last complete listing could not reach
/// every record, each name prefixed with `prefix`.
async fn problems(ctx: &StatusContext, prefix: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let now = ctx.clock.now();
    let (mut behind, mut incomplete) = (Vec::new(), Vec::new());
    for (res, interval) in &ctx.schedule {
        let st = ctx.store.state(res).await?;
        if is_behind(st.cursor_set_at.map(|t| now - t), *interval) {
            behind.push(format!("{prefix}{}", res.name));
        }
        if st.incomplete.is_some() {
            incomplete.push(format!("{prefix}{}", res.name));
        }
    }
    Ok((behind, incomplete))
}

/// 200 with `ok` when nothing is wrong; 503 naming what is behind and what cannot be listed.
fn health_answer(behind: Vec<String>, incomplete: Vec<String>, ok: String) -> Response {
    if behind.is_empty() && incomplete.is_empty() {
        return (StatusCode::OK, ok).into_response();
    }
    let mut body = String::new();
    if !behind.is_empty() {
        body.push_str(&format!("behind: {}\n", behind.join(", ")));
    }
    if !incomplete.is_empty() {
        body.push_str(&format!(
            "incomplete: {} (see /status)\n",
            incomplete.join(", ")
        ));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

// ---------------------------------------------------------------------------------------------
// /metrics
//
// The Prometheus text format is written here by hand rather than through the `metrics` facade and
// its exporter: every value already lives in the database (counts, run history, cursors) or in the
// client's counters, so each scrape reads them fresh, and there is no process-global recorder to
// install (which would also fight several engines in one test process).

async fn metrics(State(ctx): State<StatusContext>) -> Result<Response, Failure> {
    let s = snapshot(&ctx).await?;
    let mut resp = render_metrics(&s).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

/// One metric family: HELP and TYPE, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<f64>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let v: f64 = value.into();
        let _ = writeln!(self.out, " {}", format_value(v));
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Label values: backslash, double quote and newline are escaped.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: backslash and newline are escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn timestamp_seconds(s: &str) -> Option<f64> {
    crate::time::parse_api_time(s).map(|t| t.timestamp_millis() as f64 / 1000.0)
}

fn render_metrics(s: &Snapshot) -> String {
    let mut out = String::new();
    // Counters can exceed f64's exact integer range only after 2^53 requests: not a concern.
    let u = |n: u64| n as f64;
    let i = |n: i64| n as f64;

    let name = "ppsync_requests_total";
    Family::new(
        &mut out,
        name,
        "counter",
        "API requests sent since the process started (token calls and retries included).",
    )
    .sample(name, &[], u(s.requests.total));

    let name = "ppsync_throttled_total";
    Family::new(
        &mut out,
        name,
        "counter",
        "Responses that asked us to slow down (429/503 with Retry-After).",
    )
    .sample(name, &[], u(s.requests.throttled));

    let name = "ppsync_token_refreshes_total";
    Family::new(&mut out, name, "counter", "OAuth access-token refreshes.").sample(
        name,
        &[],
        u(s.requests.token_refreshes),
    );

    let name = "ppsync_budget_limit";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Requests allowed in one budget window.",
    )
    .sample(name, &[], u(s.budget.limit as u64));

    let name = "ppsync_budget_requests_in_window";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Requests sent in the current budget window.",
    )
    .sample(name, &[], u(s.budget.in_window as u64));

    let name = "ppsync_budget_wait_seconds_total";
    Family::new(
        &mut out,
        name,
        "counter",
        "Time spent waiting for room in the request budget.",
    )
    .sample(name, &[], s.budget.waited_ms_total as f64 / 1000.0);

    let name = "ppsync_records";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Records in the mirror, live or marked deleted.",
    );
    for r in &s.resources {
        f.sample(name, &[("resource", r.name), ("state", "live")], i(r.live));
        f.sample(
            name,
            &[("resource", r.name), ("state", "deleted")],
            i(r.deleted),
        );
    }

    let name = "ppsync_records_changed_total";
    let mut f = Family::new(
        &mut out,
        name,
        "counter",
        "Records written (new, changed or undeleted) over the run history.",
    );
    for r in &s.resources {
        f.sample(name, &[("resource", r.name)], i(r.records_changed_total));
    }

    let name = "ppsync_last_success_timestamp_seconds";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Unix time of the resource's last complete sync (absent: never synced).",
    );
    for r in &s.resources {
        if let Some(t) = r.last_success.as_deref().and_then(timestamp_seconds) {
            f.sample(name, &[("resource", r.name)], t);
        }
    }

    let name = "ppsync_lag_seconds";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Seconds since the resource's last complete sync (absent: never synced).",
    );
    for r in &s.resources {
        if let Some(l) = r.lag_seconds {
            f.sample(name, &[("resource", r.name)], i(l));
        }
    }

    let name = "ppsync_resource_behind";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "1 when an enabled resource has fallen behind its schedule (or never synced).",
    );
    for r in s.resources.iter().filter(|r| r.enabled) {
        f.sample(name, &[("resource", r.name)], u(u64::from(r.behind)));
    }

    let name = "ppsync_resource_incomplete";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "1 when the resource's last complete listing could not reach records that exist.",
    );
    for r in &s.resources {
        f.sample(
            name,
            &[("resource", r.name)],
            u(u64::from(r.incomplete.is_some())),
        );
    }

    let name = "ppsync_resource_unproven";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "1 when the resource's last complete listing could not be proven complete (nothing seen missing).",
    );
    for r in &s.resources {
        f.sample(
            name,
            &[("resource", r.name)],
            u(u64::from(r.unproven.is_some())),
        );
    }

    let name = "ppsync_endpoint_largest_page";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "The most records one response of the endpoint has held (its page cap is at least this).",
    );
    for r in &s.resources {
        if r.dialect.largest() > 0 {
            f.sample(name, &[("resource", r.name)], u(r.dialect.largest()));
        }
    }

    let name = "ppsync_endpoint_page_cap";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "The endpoint's page cap, where proven (a response of this many was followed by more).",
    );
    for r in &s.resources {
        if let Some(c) = r.dialect.cap() {
            f.sample(name, &[("resource", r.name)], u(c));
        }
    }

    if let Some(skew) = &s.api.clock_skew_secs {
        let name = "ppsync_server_clock_skew_seconds";
        Family::new(
            &mut out,
            name,
            "gauge",
            "The server's Date minus our clock, when it last exceeded sync.max_clock_skew.",
        )
        .sample(name, &[], skew.value as f64);
    }

    let name = "ppsync_healthy";
    Family::new(
        &mut out,
        name,
        "gauge",
        "1 when no enabled resource is behind or incomplete (what /healthz answers).",
    )
    .sample(name, &[], u(u64::from(s.healthy)));

    let name = "ppsync_record_issues";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Records stored with a field that could not be read into its typed column (NULL there).",
    );
    for r in &s.resources {
        let n = s.record_issues.get(r.name).copied().unwrap_or(0);
        f.sample(name, &[("resource", r.name)], i(n));
    }

    let name = "ppsync_detail_backlog";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Records waiting for their by-id read (fields the list leaves out).",
    );
    for r in &s.resources {
        let n = s.details.get(r.name).map_or(0, |b| b.queued);
        f.sample(name, &[("resource", r.name)], i(n));
    }
    let name = "ppsync_detail_failing";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "Queued by-id reads whose last try failed (retried with backoff).",
    );
    for r in &s.resources {
        let n = s.details.get(r.name).map_or(0, |b| b.failing);
        f.sample(name, &[("resource", r.name)], i(n));
    }

    let name = "ppsync_outbox_depth";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Notifications waiting for delivery.",
    )
    .sample(name, &[], i(s.outbox_pending));

    let name = "ppsync_outbox_dead";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Notifications set aside after their last allowed try (ppsync notify retry sends them again).",
    )
    .sample(name, &[], i(s.outbox_dead));

    let name = "ppsync_outbox_rows";
    let mut f = Family::new(&mut out, name, "gauge", "Outbox rows by kind and status.");
    for (key, n) in &s.outbox {
        let (kind, status) = key.split_once('/').unwrap_or((key.as_str(), ""));
        f.sample(name, &[("kind", kind), ("status", status)], i(*n));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A fleet instance (`ppsync run` with firms registered): every firm it serves, each under
// `/firms/<name>/` with the single-firm page and JSON; `/metrics` labels every sample with `firm`.

/// What a fleet instance's endpoint reads from: the firms it serves right now.
#[derive(Clone)]
pub struct FleetStatus {
    pub instance: Arc<str>,
    pub firms: Arc<std::sync::RwLock<BTreeMap<String, StatusContext>>>,
    pub token: Option<SecretString>,
    pub hosts: Hosts,
}

impl FleetStatus {
    fn held(&self) -> Vec<(String, StatusContext)> {
        self.firms
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    fn firm(&self, name: &str) -> Option<StatusContext> {
        self.firms.read().ok()?.get(name).cloned()
    }
}

/// Serves a fleet instance's endpoint until `shutdown` is cancelled.
pub async fn serve_fleet(
    listener: tokio::net::TcpListener,
    fleet: FleetStatus,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    refuse_open_without_token(&listener, fleet.token.as_ref())?;
    let router = Router::new()
        .route("/", get(fleet_page))
        .route("/status", get(fleet_status))
        .route("/healthz", get(fleet_healthz))
        .route("/metrics", get(fleet_metrics))
        .route("/firms/{name}/", get(firm_page))
        .route("/firms/{name}/status", get(firm_status))
        .layer(middleware::from_fn_with_state(
            fleet.clone(),
            |State(f): State<FleetStatus>, req: Request, next: Next| async move {
                check_access(&f.hosts, f.token.as_ref(), req, next).await
            },
        ))
        .with_state(fleet);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

fn not_served(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("firm {name} is not served by this instance\n"),
    )
        .into_response()
}

async fn firm_page(
    State(f): State<FleetStatus>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Response, Failure> {
    match f.firm(&name) {
        Some(ctx) => page(State(ctx)).await,
        None => Ok(not_served(&name)),
    }
}

async fn firm_status(
    State(f): State<FleetStatus>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Response, Failure> {
    match f.firm(&name) {
        Some(ctx) => status_json(State(ctx)).await,
        None => Ok(not_served(&name)),
    }
}

async fn fleet_status(State(f): State<FleetStatus>) -> Result<Response, Failure> {
    let mut firms = BTreeMap::new();
    for (name, ctx) in f.held() {
        firms.insert(name, snapshot(&ctx).await?);
    }
    Ok(axum::Json(serde_json::json!({ "instance": &*f.instance, "firms": firms })).into_response())
}

async fn fleet_healthz(State(f): State<FleetStatus>) -> Result<Response, Failure> {
    let (mut behind, mut incomplete) = (Vec::new(), Vec::new());
    let held = f.held();
    for (name, ctx) in &held {
        let (b, i) = problems(ctx, &format!("{name}/")).await?;
        behind.extend(b);
        incomplete.extend(i);
    }
    Ok(health_answer(
        behind,
        incomplete,
        format!("ok: {} firms\n", held.len()),
    ))
}

async fn fleet_metrics(State(f): State<FleetStatus>) -> Result<Response, Failure> {
    let mut parts = Vec::new();
    for (name, ctx) in f.held() {
        parts.push((name, render_metrics(&snapshot(&ctx).await?)));
    }
    let mut resp = with_firm_label(&parts).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

/// Merges several firms' expositions into one: each family's HELP and TYPE once, every sample
/// labelled `firm="<name>"`.
fn with_firm_label(parts: &[(String, String)]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (firm, text) in parts {
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
            {
                family = rest.split(' ').next().unwrap_or_default().to_string();
                let entry = families.entry(family.clone()).or_insert_with(|| {
                    order.push(family.clone());
                    Default::default()
                });
                if !entry.0.contains(line) {
                    entry.0.push_str(line);
                    entry.0.push('\n');
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let label = format!("firm=\"{}\"", escape_label(firm));
            let labelled = match (line.find('{'), line.find(' ')) {
                (Some(b), Some(sp)) if b < sp => {
                    let close = if line[b + 1..].starts_with('}') {
                        ""
                    } else {
                        ","
                    };
                    format!("{}{{{label}{close}{}", &line[..b], &line[b + 1..])
                }
                (_, Some(sp)) => format!("{}{{{label}}}{}", &line[..sp], &line[sp..]),
                _ => continue,
            };
            let entry = families.entry(family.clone()).or_insert_with(|| {
                order.push(family.clone());
                Default::default()
            });
            entry.1.push_str(&labelled);
            entry.1.push('\n');
        }
    }
    let mut out = String::new();
    for name in order {
        if let Some((head, samples)) = families.get(&name) {
            out.push_str(head);
            out.push_str(samples);
        }
    }
    out
}

async fn fleet_page(State(f): State<FleetStatus>) -> Result<Response, Failure> {
    let mut rows = String::new();
    for (name, ctx) in f.held() {
        let s = snapshot(&ctx).await?;
        let _ = write!(
            rows,
            "<tr><td><a href=\"/firms/{n}/\">{n}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if s.healthy { "ok" } else { "behind" },
            esc(&s.behind.join(", ")),
            s.requests.total,
            n = esc(&name),
        );
    }
    Ok(axum::response::Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ppsync {inst}</title></head>\
         <body><h1>ppsync instance {inst}</h1><table><tr><th>firm</th><th>health</th><th>behind</th>\
         <th>requests</th></tr>{rows}</table></body></html>",
        inst = esc(&f.instance)
    ))
    .into_response())
}

// ---------------------------------------------------------------------------------------------
// The HTML page: self-contained (inline CSS, no script, no external assets), every value escaped.

async fn page(State(ctx): State<StatusContext>) -> Result<Response, Failure> {
    let s = snapshot(&ctx).await?;
    let now = ctx.clock.now();
    Ok(axum::response::Html(render_page(&s, now)).into_response())
}

/// Escapes text for HTML element content and quoted attribute values (the status page's and
/// the login callback's).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2026-11-02 14:05:09` from a stored timestamp (UTC), or the text as it is.
fn short_time(s: &str) -> String {
    match crate::time::parse_api_time(s) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => s.to_string(),
    }
}

/// A duration in the largest sensible units: `42s`, `7m 3s`, `3h 12m`, `2d 4h`.
fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

fn interval_text(secs: u64) -> String {
    match secs {
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

const CSS: &str = "
:root { --ok:#1a7f37; --bad:#c62828; --warn:#9a6700; --muted:#5f6b7a; --line:#e3e8ef; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color:#1f2328;
  margin:0; background:var(--bg); }
header { background:#1f2937; color:#fff; padding:14px 24px; display:flex; align-items:baseline; gap:16px; }
header h1 { font-size:18px; margin:0; font-weight:600; }
header .now { color:#cbd5e1; font-size:13px; margin-left:auto; }
main { padding:16px 24px 32px; max-width:1400px; }
h2 { font-size:15px; margin:24px 0 8px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 14px; min-width:170px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:20px; font-weight:600; font-variant-numeric:tabular-nums; }
.meter { height:6px; background:var(--line); border-radius:3px; margin-top:6px; overflow:hidden; }
.meter span { display:block; height:100%; background:#2f81f7; }
.pill { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; }
.pill.ok { background:#dafbe1; color:var(--ok); }
.pill.bad { background:#ffebe9; color:var(--bad); }
.pill.off { background:var(--line); color:var(--muted); }
.pill.run { background:#fff8c5; color:var(--warn); }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); border-radius:8px; }
th, td { text-align:left; padding:5px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#f0f3f6; font-size:12px; color:var(--muted); font-weight:600; white-space:nowrap; }
td.n { text-align:right; font-variant-numeric:tabular-nums; }
tr:last-child td { border-bottom:none; }
tr.behind td:first-child { border-left:3px solid var(--bad); }
.err { color:var(--bad); font-size:12px; max-width:420px; overflow-wrap:anywhere; }
.muted { color:var(--muted); }
.empty { color:var(--muted); padding:8px 0; }
table.narrow { width:auto; min-width:420px; }
.t { white-space:nowrap; font-variant-numeric:tabular-nums; }
";

fn render_page(s: &Snapshot, now: DateTime<Utc>) -> String {
    let mut h = String::with_capacity(32 * 1024);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <title>ppsync status</title><style>{CSS}</style></head><body>\n"
    );
    let health = if s.healthy {
        "<span class=\"pill ok\" id=\"health\">healthy</span>".to_string()
    } else {
        let mut parts = Vec::new();
        if !s.behind.is_empty() {
            parts.push(format!("behind: {}", s.behind.join(", ")));
        }
        if !s.incomplete.is_empty() {
            parts.push(format!("incomplete: {}", s.incomplete.join(", ")));
        }
        format!(
            "<span class=\"pill bad\" id=\"health\">{}</span>",
            esc(&parts.join("; "))
        )
    };
    let _ = writeln!(
        h,
        "<header><h1>ppsync</h1>{health}<span class=\"now\">{} UTC · refreshes every 30 s</span></header><main>",
        esc(&short_time(&s.now))
    );

    // Budget and counters.
    let b = &s.budget;
    let pct = if b.limit == 0 {
        0.0
    } else {
        (b.in_window as f64 / b.limit as f64 * 100.0).min(100.0)
    };
    let _ = writeln!(
        h,
        "<section id=\"budget\"><h2>Request budget</h2><div class=\"cards\">"
    );
    let _ = writeln!(
        h,
        "<div class=\"card\"><div class=\"k\">In the current window</div><div class=\"v\">{} / {}</div>\
         <div class=\"meter\"><span style=\"width:{pct:.1}%\"></span></div></div>",
        b.in_window, b.limit
    );
    let cards = [
        ("Requests since start", s.requests.total.to_string()),
        (
            "Waited for budget",
            human((b.waited_ms_total / 1000) as i64),
        ),
        ("Throttled (429/503)", s.requests.throttled.to_string()),
        ("Token refreshes", s.requests.token_refreshes.to_string()),
        ("Outbox pending", s.outbox_pending.to_string()),
        ("Outbox dead", s.outbox_dead.to_string()),
    ];
    for (k, v) in cards {
        let _ = writeln!(
            h,
            "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>",
            esc(k),
            esc(&v)
        );
    }
    h.push_str("</div></section>\n");

    // Resources.
    h.push_str(
        "<section id=\"resources\"><h2>Resources</h2><table><thead><tr><th>resource</th><th>tier</th>\
         <th>every</th><th>records</th><th>deleted</th><th>last success (UTC)</th><th>lag</th>\
         <th>state</th><th>last run</th><th>changed (all runs)</th></tr></thead><tbody>\n",
    );
    for r in &s.resources {
        let state = if !r.enabled {
            "<span class=\"pill off\">disabled</span>"
        } else if r.listing_in_flight {
            "<span class=\"pill run\">resuming</span>"
        } else if r.incomplete.is_some() {
            "<span class=\"pill bad\">incomplete</span>"
        } else if r.behind {
            "<span class=\"pill bad\">behind</span>"
        } else {
            "<span class=\"pill ok\">ok</span>"
        };
        let last_run = match &r.last_run {
            None => "<span class=\"muted\">none</span>".to_string(),
            Some(run) => {
                let mut t = format!(
                    "{} {} · {} req, {} changed",
                    esc(&run.outcome),
                    esc(&run.mode),
                    run.requests,
                    run.records_changed
                );
                if let Some(e) = &run.error {
                    let _ = write!(t, "<div class=\"err\">{}</div>", esc(e));
                }
                t
            }
        };
        // What the last complete listing could not reach (or could not prove), under the run.
        let mut last_run = last_run;
        if let Some(why) = &r.incomplete {
            let _ = write!(
                last_run,
                "<div class=\"err\">incomplete: {}</div>",
                esc(why)
            );
        } else if let Some(why) = &r.unproven {
            let _ = write!(
                last_run,
                "<div class=\"muted\">unproven: {} (nothing seen missing)</div>",
                esc(why)
            );
        }
        let _ = writeln!(
            h,
            "<tr class=\"res{}\" id=\"res-{name}\"><td>{name}</td><td>{tier}</td><td>{every}</td>\
             <td class=\"n\">{live}</td><td class=\"n\">{deleted}</td><td class=\"t\">{last}</td><td class=\"t\">{lag}</td>\
             <td>{state}</td><td>{last_run}</td><td class=\"n\">{changed}</td></tr>",
            if r.behind { " behind" } else { "" },
            name = esc(r.name),
            tier = esc(r.tier),
            every = r.interval_seconds.map(interval_text).unwrap_or_default(),
            live = r.live,
            deleted = r.deleted,
            last = r
                .last_success
                .as_deref()
                .map(|t| esc(&short_time(t)))
                .unwrap_or_else(|| "<span class=\"muted\">never</span>".into()),
            lag = r.lag_seconds.map(human).unwrap_or_default(),
            changed = r.records_changed_total,
        );
    }
    h.push_str("</tbody></table></section>\n");

    // Records waiting for their by-id read.
    if !s.details.is_empty() {
        let _ = writeln!(
            h,
            "<section id=\"details\"><h2>By-id reads queued</h2><p class=\"muted\">Fields the \
             list leaves out (an email's body, a payment's refunds), read between cycles on \
             background budget.</p><table><thead><tr><th>resource</th><th>queued</th>\
             <th>failing</th></tr></thead><tbody>"
        );
        for (name, b) in &s.details {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(name),
                b.queued,
                b.failing
            );
        }
        h.push_str("</tbody></table></section>\n");
    }

    // Records stored with a field that could not be read.
    if !s.recent_issues.is_empty() {
        let total: i64 = s.record_issues.values().sum();
        let _ = writeln!(
            h,
            "<section id=\"issues\"><h2>Odd records ({total})</h2><p class=\"muted\">Stored as received; \
             the field's typed column is NULL.</p><table><thead><tr><th>resource</th><th>record</th>\
             <th>field</th><th>what</th><th>last seen (UTC)</th></tr></thead><tbody>"
        );
        for i in &s.recent_issues {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"err\">{}</td><td class=\"t\">{}</td></tr>",
                esc(&i.resource),
                esc(&i.record_id),
                esc(&i.field),
                esc(&i.problem),
                esc(&short_time(&i.last_seen))
            );
        }
        h.push_str("</tbody></table></section>\n");
    }

    // Recent runs.
    h.push_str("<section id=\"runs\"><h2>Recent runs</h2>");
    if s.recent_runs.is_empty() {
        h.push_str("<p class=\"empty\">no runs recorded yet</p>");
    } else {
        h.push_str(
            "<table><thead><tr><th>started (UTC)</th><th>resource</th><th>mode</th><th>outcome</th>\
             <th>requests</th><th>seen</th><th>changed</th><th>deleted</th></tr></thead><tbody>\n",
        );
        for run in &s.recent_runs {
            let outcome = if run.error.is_some() {
                format!(
                    "<span class=\"pill bad\">{}</span><div class=\"err\">{}</div>",
                    esc(&run.outcome),
                    esc(run.error.as_deref().unwrap_or(""))
                )
            } else {
                esc(&run.outcome)
            };
            let _ = writeln!(
                h,
                "<tr><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{outcome}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&short_time(&run.started_at)),
                esc(&run.resource),
                esc(&run.mode),
                run.requests,
                run.records_seen,
                run.records_changed,
                run.records_deleted
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>\n");

    // Deadlines and the outbox.
    let _ = write!(
        h,
        "<section id=\"deadlines\"><h2>Upcoming deadlines <span class=\"muted\">(to {})</span></h2>",
        esc(&short_time(&s.deadlines_until))
    );
    if s.deadlines.is_empty() {
        h.push_str("<p class=\"empty\">nothing open comes due</p>");
    } else {
        h.push_str(
            "<table><thead><tr><th>due (UTC)</th><th>in</th><th>kind</th><th>subject</th><th>matter</th>\
             </tr></thead><tbody>\n",
        );
        for d in &s.deadlines {
            let until = crate::time::parse_api_time(&d.due)
                .map(|t| human((t - now).num_seconds()))
                .unwrap_or_default();
            let _ = writeln!(
                h,
                "<tr><td class=\"t\">{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&short_time(&d.due)),
                esc(&until),
                esc(&d.kind),
                esc(d.subject.as_deref().unwrap_or("")),
                esc(d.matter.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>\n<section id=\"outbox-section\"><h2>Notification outbox</h2>");
    if s.outbox.is_empty() {
        h.push_str("<p class=\"empty\" id=\"outbox\">empty</p>");
    } else {
        h.push_str(
            "<table id=\"outbox\" class=\"narrow\"><thead><tr><th>kind</th><th>status</th><th>rows</th></tr></thead><tbody>",
        );
        for (key, n) in &s.outbox {
            let (kind, status) = key.split_once('/').unwrap_or((key.as_str(), ""));
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{n}</td></tr>",
                esc(kind),
                esc(status)
            );
        }
        h.push_str("</tbody></table>");
    }
    if !s.dead.is_empty() {
        let _ = write!(
            h,
            "<h3>Dead <span class=\"muted\">({} set aside; <code>ppsync notify retry ID...</code> or <code>--all</code> sends them again)</span></h3>\
             <table id=\"dead\"><thead><tr><th>id</th><th>tries</th><th>last error</th></tr></thead><tbody>",
            s.outbox_dead
        );
        for d in &s.dead {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                esc(&d.id),
                d.attempts,
                esc(&d.last_error)
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>\n</main></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("x\\y\nz"), "x\\\\y\\nz");
    }

    #[test]
    fn token_comparison() {
        assert!(same_bytes(b"secret", b"secret"));
        assert!(!same_bytes(b"secret", b"secreT"));
        assert!(!same_bytes(b"secret", b"secret2"));
        assert!(!same_bytes(b"", b"x"));
    }

    #[test]
    fn hosts_a_rebinding_page_cannot_name() {
        let on_loopback = Hosts::new(
            Some(SocketAddr::from(([127, 0, 0, 1], 9187))),
            &["status.example.com".to_string()],
        );
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9187",
            "127.1.2.3:80",
            "localhost",
            "LOCALHOST:9187",
            "localhost.:9187",
            "[::1]",
            "[::1]:9187",
            "[::ffff:127.0.0.1]:9187",
            "status.example.com",
            "Status.Example.Com.:443",
        ] {
            assert!(on_loopback.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9187",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "status.example.com.evil.example",
            "example.com",
            "",
            ":9187",
            "[::1",
            "[::1]x",
            "10.0.0.7:9187",
            "0.0.0.0:9187",
            "0x7f000001",
        ] {
            assert!(!on_loopback.allows(bad), "{bad}");
        }
        // Listening on a LAN address: that address too; on every address: any address.
        let lan = Hosts::new(Some(SocketAddr::from(([10, 0, 0, 7], 9187))), &[]);
        assert!(lan.allows("10.0.0.7:9187") && lan.allows("127.0.0.1"));
        assert!(!lan.allows("10.0.0.8:9187") && !lan.allows("evil.example"));
        let all = Hosts::new(Some(SocketAddr::from(([0, 0, 0, 0], 9187))), &[]);
        assert!(all.allows("10.0.0.8:9187") && all.allows("[fe80::1]:9187"));
        assert!(!all.allows("evil.example:9187"));
    }

    #[test]
    fn behind_after_twice_the_interval_plus_grace() {
        let q = Duration::from_secs(900);
        assert!(is_behind(None, q));
        assert!(!is_behind(Some(chrono::Duration::minutes(35)), q));
        assert!(is_behind(
            Some(chrono::Duration::minutes(35) + chrono::Duration::seconds(1)),
            q
        ));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(42), "42s");
        assert_eq!(human(423), "7m 3s");
        assert_eq!(human(3 * 3600 + 12 * 60), "3h 12m");
        assert_eq!(human(2 * 86400 + 4 * 3600), "2d 4h");
        assert_eq!(interval_text(900), "15m");
        assert_eq!(interval_text(86400), "1d");
    }
}
