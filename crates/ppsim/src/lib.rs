//! ppsim: an independent simulator of the PracticePanther v2 REST API.
//!
//! It is the contract the client is tested against, written from `practicepanther-api.md` alone
//! (it never imports the client). What it simulates, and how faithfully:
//!
//! - **OAuth** (§1): `GET /oauth/authorize` auto-consents and redirects with `code` and `state`;
//!   `POST /oauth/token` (form body, client credentials in the body) handles
//!   `authorization_code` and `refresh_token`. Access tokens last `access_token_ttl` (86400 s);
//!   refresh tokens are single-use and rotate; a spent or unknown one gets
//!   `400 {"error":"invalid_grant"}`.
//! - **Lists** (§2, §3): every v2 list endpoint, routes case-insensitive, each with the filters
//!   the spec gives it. Bare JSON arrays; the whole collection without `$top`; `$top`, `$skip`
//!   and `$orderby` honoured after filtering; default order by id in SQL Server
//!   `uniqueidentifier` order; `/invoices` silently stops at 2,500 records.
//! - **Filters**: `created_since`/`updated_since` are inclusive (`>=`), also on resources that
//!   don't render timestamps (contacts, relationships, custom fields, bank accounts keep a hidden
//!   `updated_at`). `date_from`/`date_to`, `due_date_from`/`due_date_to` are inclusive on the
//!   business date. Timestamps accept no offset (UTC), `Z` or `±hh:mm` with 0–7 fraction digits;
//!   anything else (including an unencoded `+`, which decodes to a space) is
//!   `400 {"message":"The request is invalid."}`. Unknown parameters (`limit`, `$filter`) are
//!   ignored, as ASP.NET does. Messages and tags ignore every parameter.
//! - **Shapes** (§4): field names, nesting and types of the spec; timestamps in UTC without an
//!   offset, fraction trimmed (0–7 digits); Messages use `Z` and 7 digits; contacts carry no
//!   timestamps and are embedded in accounts (`primary_contact`, `other_contacts`), kept
//!   consistent: editing a contact bumps its account's `updated_at`. References (`account_ref`...)
//!   are stored as of when the record was written and are not rewritten when the target is
//!   renamed. GET-by-id adds `body_html` to emails and `refundedAmount` to payments.
//! - **Errors**: 401 `{"message":"Authorization has been denied for this request."}`; 404 for an
//!   unknown id; 400 for a malformed id, timestamp, enum, `$top`/`$skip` or `$orderby` field.
//! - **Budget**: every `/api/v2` and `/oauth/token` request counts in a sliding window on the
//!   sim clock; over the limit → 429 with `Retry-After` (seconds until the oldest counted request
//!   leaves the window) and a JSON body; 429s don't count.
//! - **Clock**: `now = start + real time since spawn + sum of advances`; every response has a
//!   `Date` header from it. `advance(d)` runs the change generator over the skipped interval.
//!
//! Everything is deterministic for a given `(seed, scale, start)` and sequence of advances,
//! except the stamps, which follow the real-time flow of the clock (see
//! [`SimConfig::frozen_clock`]).

mod changes;
mod clock;
mod control;
mod dataset;
mod faults;
mod journal;
mod model;
mod oauth;
mod routes;
mod store;
mod time;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, anyhow};
use bytes::Bytes;
pub use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

pub use changes::{ChangeRates, ChangeSummary, Rate};
pub use faults::{Fault, Faults};
pub use journal::JournalEntry;

use clock::Clock;
use journal::Budget;
use model::Res;
use oauth::Auth;
use store::Store;
use time::{TICKS_PER_SEC, from_ticks, to_ticks};

/// How to build and run a simulated firm.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seeds the firm and the change generator. Default 7.
    pub seed: u64,
    /// 1.0 = the seed firm (11,171 accounts); 0.01 for fast tests.
    pub scale: f64,
    /// The sim clock at spawn. Default 2026-11-02T14:00:00Z.
    pub start: DateTime<Utc>,
    /// Requests allowed per window (0 = unlimited). Default 300.
    pub budget_limit: u32,
    /// The budget's sliding window, on the sim clock. Default 5 minutes.
    pub budget_window: std::time::Duration,
    /// Change rates per 15 simulated minutes.
    pub rates: ChangeRates,
    /// `expires_in` of access tokens. Default 86400 s.
    pub access_token_ttl: std::time::Duration,
    pub client_id: String,
    pub client_secret: String,
    /// When true the clock moves only by `advance` (no real-time flow), so stamps are
    /// reproducible across runs. Default false.
    pub frozen_clock: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 7,
            scale: 1.0,
            start: DateTime::parse_from_rfc3339("2026-11-02T14:00:00Z")
                .expect("valid constant")
                .with_timezone(&Utc),
            budget_limit: 300,
            budget_window: std::time::Duration::from_secs(300),
            rates: ChangeRates::default(),
            access_token_ttl: std::time::Duration::from_secs(86_400),
            client_id: "ppsim-client".into(),
            client_secret: "ppsim-secret".into(),
            frozen_clock: false,
        }
    }
}

/// The mutable firm and the generator's random stream.
pub(crate) struct World {
    pub store: Store,
    pub rng: ChaCha8Rng,
    pub ids: ChaCha8Rng,
}

/// Everything the server and the handle share.
pub(crate) struct Shared {
    pub cfg: SimConfig,
    pub clock: Clock,
    pub world: Mutex<World>,
    pub faults: Faults,
    pub auth: Arc<Mutex<Auth>>,
    pub journal: Mutex<Vec<JournalEntry>>,
    pub budget: Mutex<Budget>,
    /// The user who authorised the client (`/users/me`).
    pub me: String,
}

impl Shared {
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("world lock")
    }

    pub fn auth(&self) -> MutexGuard<'_, Auth> {
        self.auth.lock().expect("auth lock")
    }

    /// Where changes made now are stamped: true time plus any ClockSkew on stamps.
    pub fn stamp_now(&self) -> i64 {
        self.clock.now() + self.faults.skew().1 * TICKS_PER_SEC
    }

    pub fn advance(&self, d: std::time::Duration) -> ChangeSummary {
        let ticks = (d.as_nanos() / 100) as i64;
        let mut w = self.world();
        let old = self.clock.now();
        self.clock.advance(ticks);
        let new = old + ticks;
        let skew = self.faults.skew().1 * TICKS_PER_SEC;
        let World { store, rng, .. } = &mut *w;
        changes::run(store, rng, &self.cfg.rates, old, new, skew)
    }

    pub fn truth_bytes(&self, res: Res) -> Vec<Bytes> {
        self.world()
            .store
            .table(res)
            .values()
            .map(|r| r.bytes.clone())
            .collect()
    }

    pub fn create(&self, res: Res, record: Value) -> anyhow::Result<Value> {
        let now = self.stamp_now();
        let mut w = self.world();
        let World { store, ids, .. } = &mut *w;
        let mut new_id = || dataset::new_uuid(ids);
        let made = store.create(res, record, now, &mut new_id)?;
        let (r, id) = made.first().context("nothing created")?;
        let rec = store.get(*r, id).context("created record vanished")?;
        Ok(serde_json::from_slice(&rec.bytes)?)
    }

    pub fn edit(&self, res: Res, id: &str, patch: Value) -> anyhow::Result<()> {
        let now = self.stamp_now();
        self.world().store.edit(res, id, patch, now).map(|_| ())
    }

    pub fn delete(&self, res: Res, id: &str) -> anyhow::Result<()> {
        let now = self.stamp_now();
        self.world().store.delete(res, id, now).map(|_| ())
    }

    pub fn set_updated_at(&self, res: Res, id: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
        self.world().store.set_updated(res, id, to_ticks(at))
    }

    pub fn grant(&self) -> String {
        let now = self.clock.now();
        self.auth().grant(now)
    }
}

pub(crate) fn resource_named(name: &str) -> anyhow::Result<Res> {
    Res::from_name(name).ok_or_else(|| {
        anyhow!(
            "unknown resource {name:?}; known: {}",
            Res::ALL.map(|r| r.name()).join(", ")
        )
    })
}

/// Starts simulators.
pub struct Sim;

impl Sim {
    /// Builds the firm and serves it on `127.0.0.1:0`.
    pub async fn spawn(cfg: SimConfig) -> anyhow::Result<SimHandle> {
        Sim::bind(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Builds the firm and serves it on `addr` (the binary's `--port`).
    pub async fn bind(cfg: SimConfig, addr: SocketAddr) -> anyhow::Result<SimHandle> {
        let start = to_ticks(cfg.start);
        let (seed, scale) = (cfg.seed, cfg.scale);
        anyhow::ensure!(
            scale.is_finite() && scale > 0.0,
            "scale must be positive, not {scale}"
        );
        let store = tokio::task::spawn_blocking(move || dataset::generate(seed, scale, start))
            .await
            .context("dataset generator panicked")?;
        let me = store
            .table(Res::Users)
            .values()
            .find(|u| u.data.get("first_name").and_then(Value::as_str) == Some("Dana"))
            .or_else(|| store.table(Res::Users).values().next())
            .map(|u| u.id.clone())
            .unwrap_or_default();
        let auth = Arc::new(Mutex::new(Auth::new(
            ChaCha8Rng::seed_from_u64(seed ^ 0xa17f),
            (cfg.access_token_ttl.as_nanos() / 100) as i64,
        )));
        let shared = Arc::new(Shared {
            clock: Clock::new(start, cfg.frozen_clock),
            world: Mutex::new(World {
                store,
                rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(1)),
                ids: ChaCha8Rng::seed_from_u64(seed.wrapping_add(2)),
            }),
            faults: Faults {
                state: Arc::default(),
                auth: auth.clone(),
            },
            auth,
            journal: Mutex::new(vec![]),
            budget: Mutex::new(Budget::new(cfg.budget_limit, cfg.budget_window)),
            me,
            cfg,
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind {addr}"))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(tokio::sync::Notify::new());
        let app = routes::router(shared.clone());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.notified().await })
                .await;
        });
        Ok(SimHandle { shared, addr, stop })
    }
}

/// A running simulator. Cheap to clone; every clone drives the same firm.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Arc<tokio::sync::Notify>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn client_id(&self) -> String {
        self.shared.cfg.client_id.clone()
    }

    pub fn client_secret(&self) -> String {
        self.shared.cfg.client_secret.clone()
    }

    /// A fresh refresh token for the test client (same as `POST /_sim/grant`).
    pub fn grant(&self) -> String {
        self.shared.grant()
    }

    /// The sim's true clock.
    pub fn now(&self) -> DateTime<Utc> {
        from_ticks(self.shared.clock.now())
    }

    /// Moves the clock forward by `d` and runs the change generator over `(old_now, new_now]`.
    pub fn advance(&self, d: std::time::Duration) -> ChangeSummary {
        self.shared.advance(d)
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// Every request except `/_sim/*`, in order.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared.journal.lock().expect("journal lock").clone()
    }

    pub fn clear_journal(&self) {
        self.shared.journal.lock().expect("journal lock").clear();
    }

    /// Every live record exactly as the list endpoint renders it, in list order (id; tags: name).
    /// An unknown resource gives an empty list.
    pub fn truth(&self, resource: &str) -> Vec<Value> {
        let Some(res) = Res::from_name(resource) else {
            return vec![];
        };
        self.shared
            .truth_bytes(res)
            .iter()
            .map(|b| serde_json::from_slice(b).expect("rendered records are JSON"))
            .collect()
    }

    /// Every list resource name (the path after `/api/v2/`, lowercase).
    pub fn resources(&self) -> Vec<String> {
        Res::ALL.iter().map(|r| r.name().to_owned()).collect()
    }

    /// Creates a record, filling id and timestamps if missing; returns it as lists render it.
    /// Accounts may carry `primary_contact`/`other_contacts` objects; a contact needs
    /// `account_ref.id`; a tag needs `name`.
    pub fn create(&self, resource: &str, record: Value) -> anyhow::Result<Value> {
        self.shared.create(resource_named(resource)?, record)
    }

    /// Merges top-level fields and bumps `updated_at` to now (an account's `primary_contact`
    /// object is merged into the contact; both are bumped).
    pub fn edit(&self, resource: &str, id: &str, patch: Value) -> anyhow::Result<()> {
        self.shared.edit(resource_named(resource)?, id, patch)
    }

    /// The record vanishes from lists and GET-by-id (404). An account takes its contacts along.
    pub fn delete(&self, resource: &str, id: &str) -> anyhow::Result<()> {
        self.shared.delete(resource_named(resource)?, id)
    }

    /// Sets a record's `updated_at` exactly (tie tests).
    pub fn set_updated_at(
        &self,
        resource: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.shared
            .set_updated_at(resource_named(resource)?, id, at)
    }

    /// Budget use in the current window.
    pub fn requests_in_window(&self) -> u32 {
        let now = self.shared.clock.now();
        self.shared
            .budget
            .lock()
            .expect("budget lock")
            .in_window(now)
    }

    /// The highest count ever seen in any sliding window.
    pub fn max_requests_in_any_window(&self) -> u32 {
        self.shared
            .budget
            .lock()
            .expect("budget lock")
            .max_in_any_window()
    }

    /// Record counts per resource.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let w = self.shared.world();
        Res::ALL
            .iter()
            .map(|r| (r.name().to_owned(), w.store.len(*r)))
            .collect()
    }

    /// Stops serving (in-flight requests finish).
    pub fn shutdown(&self) {
        self.stop.notify_one();
    }
}
