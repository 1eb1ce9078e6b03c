//! The PracticePanther API client: base URL always injectable, every request through the shared
//! [`budget::Budget`], tokens through [`auth`], failures classified by [`error::action`], list bodies
//! decoded as a stream so memory does not grow with the size of a response.
//!
//! Invariant: `api` knows nothing of storage; tokens are persisted through the `TokenStore` trait.

pub mod auth;
pub mod budget;
pub mod error;
mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

pub use auth::{TokenStore, Tokens};
pub use budget::Budget;
pub use error::{Action, Class, Error};
pub use stream::Listing;
pub(crate) use stream::malformed as stream_malformed;

use crate::time::Clock;

/// Client settings (from the config).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub base_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Whole-request timeout; full listings of big collections are slow on the real API.
    pub timeout: Duration,
    /// Tries of a request that fails transiently (5xx, network) before giving up on it.
    pub max_attempts: u32,
    /// The longest single wait a Retry-After may impose before the resource is skipped.
    pub max_retry_wait: Duration,
    /// Smallest backoff between transient retries.
    pub min_backoff: Duration,
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// Background work (reconciliation, by-id reads) leaves part of the budget to scheduled passes.
    background: bool,
    /// Background work that must not take budget past this instant (when scheduled work is due):
    /// a request that would have to wait beyond it fails with [`Error::Deferred`] instead.
    yield_at: Option<DateTime<Utc>>,
}

struct Inner {
    http: reqwest::Client,
    cfg: ClientConfig,
    budget: Arc<Budget>,
    clock: Arc<dyn Clock>,
    tokens: auth::TokenManager,
    requests: AtomicU64,
    throttled: AtomicU64,
    refreshes: AtomicU64,
}

/// A successful (2xx) response and the server's `Date`.
pub struct Response {
    pub resp: reqwest::Response,
    pub server_date: Option<DateTime<Utc>>,
    pub path: String,
}

tokio::task_local! {
    /// Where the work in scope (one resource's listing) also counts the requests it sends.
    static TALLY: Arc<AtomicU64>;
}

/// Runs `work`, counting the requests it sends in `tally` as well: a pass lists several
/// resources at once on PostgreSQL, and each resource's count is its own.
pub async fn tallied<F: std::future::Future>(tally: Arc<AtomicU64>, work: F) -> F::Output {
    TALLY.scope(tally, work).await
}

/// The tally in scope (see [`tallied`]), for work handed to a task of its own.
pub fn current_tally() -> Option<Arc<AtomicU64>> {
    TALLY.try_with(Arc::clone).ok()
}

/// A request is sent: the client's count, and the tally in scope if any.
fn count(inner: &Inner) {
    inner.requests.fetch_add(1, Ordering::Relaxed);
    let _ = TALLY.try_with(|t| t.fetch_add(1, Ordering::Relaxed));
}

impl Client {
    pub fn new(
        cfg: ClientConfig,
        budget: Arc<Budget>,
        clock: Arc<dyn Clock>,
        token_store: Arc<dyn TokenStore>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            // Short: a host that does not answer at all should fail a pass in well under a
            // minute (three tries), not stall it.
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("ppsync/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                cfg,
                budget,
                clock,
                tokens: auth::TokenManager::new(token_store),
                requests: AtomicU64::new(0),
                throttled: AtomicU64::new(0),
                refreshes: AtomicU64::new(0),
            }),
            background: false,
            yield_at: None,
        })
    }

    /// The same client (same tokens, budget, counters) for background work.
    pub fn background(&self) -> Client {
        Client {
            inner: self.inner.clone(),
            background: true,
            yield_at: None,
        }
    }

    /// The same client for background work that yields at `t`: no request is sent that would
    /// have to wait for the budget past it ([`Error::Deferred`]).
    pub fn background_until(&self, t: DateTime<Utc>) -> Client {
        Client {
            inner: self.inner.clone(),
            background: true,
            yield_at: Some(t),
        }
    }

    async fn acquire(&self) -> Result<budget::Sent<'_>, Error> {
        let budget = &self.inner.budget;
        match (self.background, self.yield_at) {
            (_, Some(t)) => budget
                .acquire_background_before(t)
                .await
                .ok_or(Error::Deferred),
            (true, None) => Ok(budget.acquire_background().await),
            (false, None) => Ok(budget.acquire().await),
        }
    }

    /// Requests sent so far (every one passed the budget).
    pub fn requests_made(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }
    pub fn throttled(&self) -> u64 {
        self.inner.throttled.load(Ordering::Relaxed)
    }
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }
    pub fn budget(&self) -> &Arc<Budget> {
        &self.inner.budget
    }
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    fn api_url(&self, path: &str, query: &[(String, String)]) -> Url {
        let mut url = self.inner.cfg.base_url.clone();
        {
            let mut segs = url.path_segments_mut().expect("http base url");
            segs.pop_if_empty();
            segs.extend(["api", "v2"]);
            segs.extend(path.split('/'));
        }
        if !query.is_empty() {
            // form_urlencoded encodes `+` as %2B, so an offset survives (practicepanther-api.md §6.2).
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// GET `/api/v2/{path}` with auth, budget and the retry policy. Returns a 2xx response.
    pub async fn get(&self, path: &str, query: &[(String, String)]) -> Result<Response, Error> {
        let url = self.api_url(path, query);
        let inner = &self.inner;
        let mut token = inner
            .tokens
            .access_token(inner.clock.now(), async |rt| self.refresh_grant(rt).await)
            .await?;
        let mut backoff = self.backoff();
        let mut attempt = 0u32;
        let mut auth_attempt = 0u32;
        loop {
            attempt += 1;
            let slot = self.acquire().await?;
            count(inner);
            let sent = inner
                .http
                .get(url.clone())
                .bearer_auth(token.expose_secret())
                .send()
                .await;
            // Answered (or failed): it counts in the window from now.
            drop(slot);
            let resp = match sent {
                Ok(r) => r,
                Err(source) if source.is_connect() => {
                    // Not retried here: the caller's policy ends the pass after a few tries.
                    return Err(self.unreachable(&source));
                }
                Err(source) => {
                    let err = Error::Transport {
                        path: path.to_string(),
                        source,
                    };
                    match error::action(err.class(), attempt, inner.cfg.max_attempts) {
                        Action::BackoffAndRetry => {
                            self.sleep_backoff(&mut backoff, &err).await;
                            continue;
                        }
                        _ => return Err(err),
                    }
                }
            };
            let status = resp.status();
            let server_date = header_date(&resp);
            if status.is_success() {
                return Ok(Response {
                    resp,
                    server_date,
                    path: path.to_string(),
                });
            }
            let retry_after = retry_after(&resp, inner.clock.now());
            let body = snippet(read_capped(resp, BODY_CAP).await);
            let err = classify_status(path, status.as_u16(), &body, retry_after);
            let class = err.class();
            let tries = if class == Class::Auth {
                auth_attempt + 1
            } else {
                attempt
            };
            match error::action(class, tries, inner.cfg.max_attempts) {
                Action::RefreshAndRetry => {
                    auth_attempt += 1;
                    token = inner
                        .tokens
                        .after_unauthorized(&token, inner.clock.now(), async |rt| {
                            self.refresh_grant(rt).await
                        })
                        .await?;
                }
                Action::WaitAndRetry => {
                    inner.throttled.fetch_add(1, Ordering::Relaxed);
                    if status.as_u16() == 429 && retry_after.is_none() {
                        // The server allows less than our budget and does not say how long to
                        // wait: lower the rate, and back off.
                        inner.budget.throttled_without_retry_after().await;
                    }
                    let wait = retry_after
                        .unwrap_or_else(|| backoff.next().unwrap_or(Duration::from_secs(30)));
                    if wait > inner.cfg.max_retry_wait {
                        return Err(Error::RateLimited {
                            retry_after: Some(wait),
                        });
                    }
                    tracing::warn!(
                        path,
                        status = status.as_u16(),
                        wait_ms = wait.as_millis() as u64,
                        "throttled, waiting"
                    );
                    inner.budget.pause_for(wait).await;
                }
                Action::BackoffAndRetry => self.sleep_backoff(&mut backoff, &err).await,
                Action::StopPass if class == Class::Auth => return Err(Error::Unauthorized),
                _ => return Err(err),
            }
        }
    }

    /// `GET /api/v2/{path}/{id}`: the record's text as sent (None: 404, it is gone). The body is
    /// held whole, up to the size a single list element may have.
    pub async fn get_record(&self, path: &str, id: &str) -> Result<Option<String>, Error> {
        let full = format!("{path}/{id}");
        let resp = match self.get(&full, &[]).await {
            Ok(r) => r,
            Err(Error::Client { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let status = resp.resp.status().as_u16();
        let content_type = resp
            .resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !content_type.is_empty() && !content_type.contains("json") {
            let body = read_capped(resp.resp, BODY_CAP).await;
            return Err(Error::NotJson {
                path: full,
                status,
                content_type,
                snippet: snippet(body),
            });
        }
        let (body, whole) = read_up_to(resp.resp, stream::MAX_ELEMENT)
            .await
            .map_err(|source| Error::Transport {
                path: full.clone(),
                source,
            })?;
        if !whole {
            return Err(Error::Malformed {
                path: full,
                records: 0,
                detail: format!(
                    "a single record larger than {} KiB (refused: a broken server?)",
                    stream::MAX_ELEMENT >> 10
                ),
            });
        }
        let text = String::from_utf8(body).map_err(|e| Error::Malformed {
            path: full.clone(),
            records: 0,
            detail: format!("not UTF-8: {e}"),
        })?;
        Ok(Some(text))
    }

    /// Whether `GET /api/v2/{path}/{id}` finds the record (404: it is gone).
    pub async fn exists(&self, path: &str, id: &str) -> Result<bool, Error> {
        let full = format!("{path}/{id}");
        match self.get(&full, &[]).await {
            Ok(_) => Ok(true),
            Err(Error::Client { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A connection that could not be made: the API's base URL and the innermost cause.
    fn unreachable(&self, e: &reqwest::Error) -> Error {
        let mut cause: &dyn std::error::Error = e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let mut url = self.inner.cfg.base_url.clone();
        url.set_query(None);
        let _ = url.set_password(None);
        Error::Unreachable {
            url: url.as_str().trim_end_matches('/').to_string(),
            cause: cause.to_string(),
        }
    }

    /// Starts a streamed listing of `/api/v2/{path}`; `each` turns every record's JSON text into
    /// a `T` on the decoding thread (see [`Listing::start`]).
    pub async fn list<T, F>(
        &self,
        path: &str,
        query: &[(String, String)],
        each: F,
    ) -> Result<Listing<T>, Error>
    where
        T: Send + 'static,
        F: FnMut(&str) -> Result<T, Error> + Send + 'static,
    {
        let resp = self.get(path, query).await?;
        Listing::start(resp, each)
    }

    fn backoff(&self) -> backon::ExponentialBackoff {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.inner.cfg.min_backoff)
            .with_max_delay(Duration::from_secs(60))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    async fn sleep_backoff(&self, backoff: &mut backon::ExponentialBackoff, err: &Error) {
        let d = backoff.next().unwrap_or(Duration::from_secs(60));
        tracing::warn!(error = %err, delay_ms = d.as_millis() as u64, "transient failure, retrying");
        self.inner.clock.sleep(d).await;
    }

    /// Backoff before retrying a page whose body failed (cut off, HTML): the same schedule as requests.
    pub async fn page_backoff(&self, attempt: u32) {
        let mut b = self.backoff();
        let d = (0..attempt)
            .filter_map(|_| b.next())
            .last()
            .unwrap_or(self.inner.cfg.min_backoff);
        self.inner.clock.sleep(d).await;
    }

    /// POST the token endpoint (through the budget, with the same throttling rules).
    async fn token_call(&self, form: &[(&str, &str)]) -> Result<auth::TokenResponse, Error> {
        let inner = &self.inner;
        let mut url = inner.cfg.base_url.clone();
        url.set_path("/oauth/token");
        let mut backoff = self.backoff();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let slot = inner.budget.acquire().await;
            count(inner);
            let sent = inner.http.post(url.clone()).form(form).send().await;
            drop(slot);
            let resp = match sent {
                Ok(r) => r,
                Err(source) if source.is_connect() => return Err(self.unreachable(&source)),
                Err(source) => {
                    let err = Error::Transport {
                        path: "/oauth/token".into(),
                        source,
                    };
                    if attempt < inner.cfg.max_attempts {
                        self.sleep_backoff(&mut backoff, &err).await;
                        continue;
                    }
                    return Err(err);
                }
            };
            let status = resp.status().as_u16();
            let ra = retry_after(&resp, inner.clock.now());
            let body = read_capped(resp, BODY_CAP).await;
            match status {
                200 => {
                    return serde_json::from_str(&body).map_err(|e| Error::RefreshRejected {
                        detail: format!("unreadable token response: {e}"),
                    });
                }
                429 | 503 if attempt < inner.cfg.max_attempts * 2 => {
                    let wait = ra.unwrap_or(Duration::from_secs(5));
                    if wait > inner.cfg.max_retry_wait {
                        return Err(Error::RateLimited {
                            retry_after: Some(wait),
                        });
                    }
                    inner.budget.pause_for(wait).await;
                }
                500..=599 if attempt < inner.cfg.max_attempts => {
                    let err = Error::Server {
                        path: "/oauth/token".into(),
                        status,
                        body: snippet(body),
                    };
                    self.sleep_backoff(&mut backoff, &err).await;
                }
                400 | 401 => {
                    let detail = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                        .unwrap_or_else(|| snippet(body));
                    return Err(Error::RefreshRejected { detail });
                }
                _ => {
                    return Err(Error::Server {
                        path: "/oauth/token".into(),
                        status,
                        body: snippet(body),
                    });
                }
            }
        }
    }

    async fn refresh_grant(
        &self,
        refresh_token: SecretString,
    ) -> Result<auth::TokenResponse, Error> {
        self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
        let cfg = &self.inner.cfg;
        self.token_call(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("client_id", &cfg.client_id),
            ("client_secret", cfg.client_secret.expose_secret()),
        ])
        .await
    }

    /// Exchanges an authorization code (`ppsync auth login`) for a token pair.
    pub async fn exchange_code(&self, code: &str, redirect_uri: &str) -> Result<Tokens, Error> {
        let cfg = &self.inner.cfg;
        let r = self
            .token_call(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("client_id", &cfg.client_id),
                ("client_secret", cfg.client_secret.expose_secret()),
                ("redirect_uri", redirect_uri),
            ])
            .await?;
        self.tokens_from(r)
    }

    /// Redeems a refresh token (`ppsync auth import`): proves it works and returns the rotated pair.
    pub async fn redeem_refresh_token(&self, refresh_token: &str) -> Result<Tokens, Error> {
        let r = self
            .refresh_grant(SecretString::from(refresh_token.to_string()))
            .await?;
        let mut t = self.tokens_from(r)?;
        if t.refresh_token.expose_secret().is_empty() {
            t.refresh_token = SecretString::from(refresh_token.to_string());
        }
        Ok(t)
    }

    fn tokens_from(&self, r: auth::TokenResponse) -> Result<Tokens, Error> {
        Ok(Tokens {
            access_token: SecretString::from(r.access_token),
            refresh_token: SecretString::from(r.refresh_token.unwrap_or_default()),
            expires_at: auth::expiry(self.inner.clock.now(), r.expires_in),
        })
    }

    /// The authorize URL a user opens for `ppsync auth login`.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str) -> Url {
        let mut url = self.inner.cfg.base_url.clone();
        url.set_path("/oauth/authorize");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.inner.cfg.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state);
        url
    }
}

fn classify_status(path: &str, status: u16, body: &str, retry_after: Option<Duration>) -> Error {
    let path = path.to_string();
    let body = body.to_string();
    match status {
        401 => Error::TokenRefused { path },
        // Some reports say an expired token yields 400 invalid_grant on API calls (api.md §1).
        400 if body.contains("invalid_grant") => Error::TokenRefused { path },
        400 => Error::BadRequest { path, body },
        429 => Error::RateLimited { retry_after },
        503 if retry_after.is_some() => Error::RateLimited { retry_after },
        500..=599 => Error::Server { path, status, body },
        _ => Error::Client { path, status, body },
    }
}

/// `Date` header as an instant.
fn header_date(resp: &reqwest::Response) -> Option<DateTime<Utc>> {
    let v = resp.headers().get(reqwest::header::DATE)?.to_str().ok()?;
    DateTime::parse_from_rfc2822(v)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Retry-After as delta-seconds or an HTTP-date.
fn retry_after(resp: &reqwest::Response, now: DateTime<Utc>) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::from_secs(1)))
}

/// The most of an error or token body read (a token answer is well under a kilobyte; a broken
/// or hostile server must not make a request hold its whole body).
const BODY_CAP: usize = 64 * 1024;

/// A body as text, at most `cap` bytes of it (the rest is not read).
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> String {
    let mut out: Vec<u8> = Vec::new();
    // A read error ends the text where it is: it only goes into a message.
    while let Ok(Some(c)) = resp.chunk().await {
        let room = cap - out.len();
        out.extend_from_slice(&c[..c.len().min(room)]);
        if out.len() == cap {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A body, and whether it was whole within `cap` bytes (false: it was larger, and only `cap`
/// bytes were read).
async fn read_up_to(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut out: Vec<u8> = Vec::new();
    while let Some(c) = resp.chunk().await? {
        let room = cap - out.len();
        if c.len() > room {
            out.extend_from_slice(&c[..room]);
            return Ok((out, false));
        }
        out.extend_from_slice(&c);
    }
    Ok((out, true))
}

/// The first 200 characters of a body, on one line.
fn snippet(body: String) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SystemClock;

    /// Tokens that need no refresh.
    struct Fixed;
    impl TokenStore for Fixed {
        fn load(&self) -> auth::Fut<'_, anyhow::Result<Option<Tokens>>> {
            Box::pin(async {
                Ok(Some(Tokens {
                    access_token: SecretString::from("a".to_string()),
                    refresh_token: SecretString::from("r".to_string()),
                    expires_at: Utc::now() + chrono::Duration::days(1),
                }))
            })
        }
        fn save<'a>(&'a self, _: &'a Tokens) -> auth::Fut<'a, anyhow::Result<()>> {
            Box::pin(async { Ok(()) })
        }
    }

    /// A server whose error answers never end: the client reads a bounded start of them and
    /// goes on (unbounded, it would read forever and grow without end).
    #[tokio::test]
    async fn an_endless_error_body_is_read_only_as_far_as_the_cap() {
        let endless = || {
            let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
            axum::body::Body::from_stream(futures::stream::repeat_with(move || {
                Ok::<_, std::io::Error>(chunk.clone())
            }))
        };
        let app = axum::Router::new().fallback(move || async move {
            axum::response::Response::builder()
                .status(500)
                .body(endless())
                .unwrap()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let client = Client::new(
            ClientConfig {
                base_url: Url::parse(&format!("http://{addr}")).unwrap(),
                client_id: "c".into(),
                client_secret: SecretString::from("s".to_string()),
                timeout: Duration::from_secs(30),
                max_attempts: 1,
                max_retry_wait: Duration::from_secs(1),
                min_backoff: Duration::from_millis(1),
            },
            Arc::new(Budget::new(100, Duration::from_secs(60), clock.clone())),
            clock,
            Arc::new(Fixed),
        )
        .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), client.get("matters", &[]))
            .await
            .expect("the error answer is not read to its (missing) end");
        match got {
            Err(Error::Server {
                status: 500, body, ..
            }) => {
                assert!(
                    body.chars().count() <= 200 && body.starts_with("xxx"),
                    "{body}"
                )
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a 500 is an error"),
        }
        let got = tokio::time::timeout(Duration::from_secs(20), client.get_record("emails", "e1"))
            .await
            .expect("bounded");
        assert!(got.is_err());
    }
}
