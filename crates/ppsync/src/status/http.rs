//! The daemon's HTTP endpoint (loopback by default): `/healthz`, `/livez`, `/readyz`, `/metrics`
//! (Prometheus), `/status` (JSON) and the status page at `/`; a fleet instance's variants of each.
//!
//! Every response is rendered on request from a fresh [`Snapshot`]: there is no state here to go
//! stale. `/healthz` answers 503 naming what is behind or incomplete. For an orchestrator:
//! `/livez` answers 200 while the process serves (a liveness probe must not kill a long first
//! backfill), `/readyz` 200 once every enabled resource has finished its first backfill and none
//! is behind, 503 naming which otherwise. With `http.token` set, every
//! route wants `Authorization: Bearer <token>`; without one the endpoint must be on loopback
//! (`serve` refuses otherwise). Every route first checks the request's `Host` ([`Hosts`]): a web
//! page whose name an attacker points at 127.0.0.1 (DNS rebinding) is same-origin with this
//! endpoint as far as the browser knows, and only the name it asked for tells it apart.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::metrics::{self, Metrics};
use super::page;
use super::snapshot::{self, Snapshot};
use crate::api::Client;
use crate::resource::Resource;
use crate::store::Store;
use crate::time::Clock;

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
    /// The firm's zone and deadline sources (the page's deadlines).
    pub deadlines: crate::deadlines::Sources,
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
        .route("/", get(status_page))
        .route("/status", get(status_json))
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/deadlines.ics", get(deadlines_ics))
        .layer(middleware::from_fn_with_state(ctx.clone(), require_token))
        .with_state(ctx)
}

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

impl StatusContext {
    /// The firm's snapshot now.
    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        Snapshot::read(
            &self.store,
            &self.schedule,
            self.clock.now(),
            self.notify_window,
            &self.deadlines,
            Some(&self.client),
        )
        .await
    }

    /// Why the mirror is not ready, each name prefixed with `prefix`.
    async fn unready(&self, prefix: &str) -> anyhow::Result<snapshot::Unready> {
        let u = snapshot::unready(&self.store, &self.schedule, self.clock.now()).await?;
        let named = |v: Vec<String>| v.into_iter().map(|n| format!("{prefix}{n}")).collect();
        Ok(snapshot::Unready {
            first_backfill: named(u.first_backfill),
            behind: named(u.behind),
        })
    }

    /// The open auth_failed episode, as a line naming the firm (`prefix`) and the fix.
    async fn auth_failed(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        Ok(self
            .store
            .auth_failure()
            .await?
            .map(|a| {
                format!(
                    "{prefix}auth_failed since {}: run `ppsync auth login`",
                    crate::time::canonical(a.since)
                )
            })
            .into_iter()
            .collect())
    }

    /// What is behind and what is incomplete, each name prefixed with `prefix`.
    async fn problems(&self, prefix: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let (behind, incomplete) =
            snapshot::problems(&self.store, &self.schedule, self.clock.now()).await?;
        let named = |v: Vec<String>| v.into_iter().map(|n| format!("{prefix}{n}")).collect();
        Ok((named(behind), named(incomplete)))
    }
}

async fn status_json(State(ctx): State<StatusContext>) -> Result<Response, Failure> {
    Ok(axum::Json(ctx.snapshot().await?).into_response())
}

async fn healthz(State(ctx): State<StatusContext>) -> Result<Response, Failure> {
    let (behind, incomplete) = ctx.problems("").await?;
    let auth = ctx.auth_failed("").await?;
    Ok(health_answer(auth, behind, incomplete, "ok\n".into()))
}

/// How far ahead the calendar feed reaches, and how far back (a deadline just passed stays in
/// a subscriber's calendar for a while rather than vanishing on the day).
const FEED_AHEAD_DAYS: u64 = 365;
const FEED_BACK_DAYS: u64 = 30;

/// The deadlines as an iCalendar feed a calendar can subscribe to (`ppsync deadlines --ics`).
async fn deadlines_ics(State(ctx): State<StatusContext>) -> Result<Response, Failure> {
    let now = ctx.clock.now();
    let sources = &ctx.deadlines;
    let today = sources.local_date(now);
    let list = crate::deadlines::list(
        &ctx.store,
        sources,
        today - chrono::Days::new(FEED_BACK_DAYS),
        today + chrono::Days::new(FEED_AHEAD_DAYS),
    )
    .await?;
    let body = crate::calendar::feed(&list, sources.zone.name(), now);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/calendar; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

async fn firm_deadlines_ics(
    State(f): State<FleetStatus>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Response, Failure> {
    match f.firm(&name) {
        Some(ctx) => deadlines_ics(State(ctx)).await,
        None => Ok(not_served(&name)),
    }
}

/// The process answers: nothing is read, so a busy database cannot fail a liveness probe.
async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(ctx): State<StatusContext>) -> Result<Response, Failure> {
    let auth = ctx.auth_failed("").await?;
    Ok(ready_answer(auth, ctx.unready("").await?, "ready\n".into()))
}

/// 200 with `ok` when ready; 503 naming the resources still in their first backfill and those
/// behind, and rejected credentials (`auth`: one line per firm).
fn ready_answer(auth: Vec<String>, u: snapshot::Unready, ok: String) -> Response {
    if auth.is_empty() && u.first_backfill.is_empty() && u.behind.is_empty() {
        return (StatusCode::OK, ok).into_response();
    }
    let mut body: String = auth.iter().map(|l| format!("{l}\n")).collect();
    if !u.first_backfill.is_empty() {
        body.push_str(&format!(
            "first backfill not finished: {}\n",
            u.first_backfill.join(", ")
        ));
    }
    if !u.behind.is_empty() {
        body.push_str(&format!("behind: {}\n", u.behind.join(", ")));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn status_page(State(ctx): State<StatusContext>) -> Result<Response, Failure> {
    Ok(Html(page::render(&ctx.snapshot().await?)).into_response())
}

async fn metrics_text(State(ctx): State<StatusContext>) -> Result<Response, Failure> {
    let mut m = Metrics::default();
    m.add(None, &ctx.snapshot().await?);
    Ok(exposition(&m))
}

fn exposition(m: &Metrics) -> Response {
    let mut resp = m.encode().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    resp
}

/// 200 with `ok` when nothing is wrong; 503 naming what is behind and what cannot be listed.
fn health_answer(
    auth: Vec<String>,
    behind: Vec<String>,
    incomplete: Vec<String>,
    ok: String,
) -> Response {
    if auth.is_empty() && behind.is_empty() && incomplete.is_empty() {
        return (StatusCode::OK, ok).into_response();
    }
    let mut body: String = auth.iter().map(|l| format!("{l}\n")).collect();
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
        .route("/livez", get(livez))
        .route("/readyz", get(fleet_readyz))
        .route("/metrics", get(fleet_metrics))
        .route("/firms/{name}/", get(firm_page))
        .route("/firms/{name}/status", get(firm_status))
        .route("/firms/{name}/deadlines.ics", get(firm_deadlines_ics))
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
        Some(ctx) => status_page(State(ctx)).await,
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
        firms.insert(name, ctx.snapshot().await?);
    }
    Ok(axum::Json(serde_json::json!({ "instance": &*f.instance, "firms": firms })).into_response())
}

async fn fleet_healthz(State(f): State<FleetStatus>) -> Result<Response, Failure> {
    let (mut auth, mut behind, mut incomplete) = (Vec::new(), Vec::new(), Vec::new());
    let held = f.held();
    for (name, ctx) in &held {
        let (b, i) = ctx.problems(&format!("{name}/")).await?;
        auth.extend(ctx.auth_failed(&format!("{name}/")).await?);
        behind.extend(b);
        incomplete.extend(i);
    }
    Ok(health_answer(
        auth,
        behind,
        incomplete,
        format!("ok: {} firms\n", held.len()),
    ))
}

async fn fleet_readyz(State(f): State<FleetStatus>) -> Result<Response, Failure> {
    let mut all = snapshot::Unready {
        first_backfill: Vec::new(),
        behind: Vec::new(),
    };
    let mut auth = Vec::new();
    let held = f.held();
    for (name, ctx) in &held {
        auth.extend(ctx.auth_failed(&format!("{name}/")).await?);
        let u = ctx.unready(&format!("{name}/")).await?;
        all.first_backfill.extend(u.first_backfill);
        all.behind.extend(u.behind);
    }
    Ok(ready_answer(
        auth,
        all,
        format!("ready: {} firms\n", held.len()),
    ))
}

async fn fleet_metrics(State(f): State<FleetStatus>) -> Result<Response, Failure> {
    let mut m = Metrics::default();
    for (name, ctx) in f.held() {
        m.add(Some(&name), &ctx.snapshot().await?);
    }
    Ok(exposition(&m))
}

async fn fleet_page(State(f): State<FleetStatus>) -> Result<Response, Failure> {
    let mut firms = Vec::new();
    for (name, ctx) in f.held() {
        let s = ctx.snapshot().await?;
        firms.push((name, s));
    }
    Ok(Html(page::render_fleet(&f.instance, &firms)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
