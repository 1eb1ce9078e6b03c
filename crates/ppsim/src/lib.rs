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
//!   `uniqueidentifier` order; `/invoices` silently stops at 2,500 records (by default: see
//!   **Dialects**).
//! - **Filters**: `created_since`/`updated_since` are inclusive (`>=`), also on resources that
//!   don't render timestamps (contacts, relationships, custom fields, bank accounts keep a hidden
//!   `updated_at`). `date_from`/`date_to`, `due_date_from`/`due_date_to` are inclusive on the
//!   business date. Timestamps accept no offset (UTC), `Z` or `±hh:mm` with 0–7 fraction digits;
//!   anything else (including an unencoded `+`, which decodes to a space) is
//!   `400 {"message":"The request is invalid."}`. Unknown parameters (`limit`, `$filter`) are
//!   ignored, as ASP.NET does. Messages and tags ignore every parameter (by default).
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
//!   leaves the window; left out when the firm's `retry_after` switch is off) and a JSON body;
//!   429s don't count. Limit and window can change at run time ([`SimHandle::set_budget`]).
//! - **Clock**: `now = start + real time since spawn + sum of advances`; every response has a
//!   `Date` header from it. `advance(d)` runs the change generator over the skipped interval.
//!
//! - **Dialects** ([`Dialect`], [`SimHandle::set_dialect`], `/_sim/dialect`): where the real
//!   API's behaviour is unknown, a switch per list endpoint for each answer: a silent page cap,
//!   `$top`/`$skip`/`$orderby` honoured, ignored or rejected (400 with ASP.NET OData's message),
//!   `updated_since` inclusive, exclusive or ignored; per firm, 429s with or without
//!   `Retry-After` and the budget's limit and window. The defaults are the behaviour above
//!   (byte for byte); [`SimConfig::dialect`] changes them at spawn.
//!
//! - **Several firms** ([`SimConfig::firms`]): each with its own dataset ([`firm_seed`]),
//!   credentials ([`firm_credentials`]), tokens, budget, faults, journal tag and change stream,
//!   on one shared clock. [`SimHandle`]'s methods act on firm 0; [`SimHandle::firm`] gives a
//!   [`FirmHandle`] for any firm; `/_sim/*` routes take `?firm=k`.
//!
//! Everything is deterministic for a given `(seed, scale, start)` and sequence of advances,
//! except the stamps, which follow the real-time flow of the clock (see
//! [`SimConfig::frozen_clock`]).

mod changes;
mod clock;
mod control;
mod dataset;
mod dialect;
mod faults;
mod journal;
mod model;
mod oauth;
mod respond;
mod routes;
mod store;
mod time;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, anyhow};
use bytes::Bytes;
pub use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

pub use changes::{ChangeRates, ChangeSummary, Rate};
pub use dialect::{Dialect, DialectPatch, INVOICE_CAP, Opt, Since};
pub use faults::{Fault, Faults};
pub use journal::JournalEntry;

use clock::Clock;
use dialect::DialectState;
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
    /// Each firm's size: 1.0 = the seed firm (11,171 accounts); 0.01 for fast tests.
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
    /// Firm 0's client id; firm `k ≥ 1` uses `{client_id}-{k+1}` (see [`firm_credentials`]).
    pub client_id: String,
    /// Firm 0's client secret; firm `k ≥ 1` uses `{client_secret}-{k+1}`.
    pub client_secret: String,
    /// How many firms to serve (at least 1). Default 1. Each firm has its own dataset (from
    /// [`firm_seed`]`(seed, k)`), credentials, tokens, budget, faults and change stream; the
    /// clock is shared. See [`SimHandle::firm`].
    pub firms: u32,
    /// When true the clock moves only by `advance` (no real-time flow), so stamps are
    /// reproducible across runs. Default false.
    pub frozen_clock: bool,
    /// Laid over every firm's default dialect at spawn, as [`SimHandle::set_dialect`] with no
    /// endpoint does: the whole patch on every endpoint that takes parameters, only `page_cap` on
    /// messages and tags. Default empty (the simulator's own behaviour).
    pub dialect: DialectPatch,
    /// Whether 429s carry `Retry-After`. Default true.
    pub retry_after: bool,
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
            firms: 1,
            dialect: DialectPatch::default(),
            retry_after: true,
        }
    }
}

/// The mutable firm and the generator's random stream.
pub(crate) struct World {
    pub store: Store,
    pub rng: ChaCha8Rng,
    pub ids: ChaCha8Rng,
    /// What the change generator read of `store`, kept between advances.
    pub memo: changes::Memo,
}

/// One simulated firm: its data, credentials, tokens, budget and faults. The clock is shared.
pub(crate) struct Firm {
    /// 0-based index.
    pub k: u32,
    pub client_id: String,
    pub client_secret: String,
    pub clock: Arc<Clock>,
    pub world: Mutex<World>,
    pub faults: Faults,
    pub auth: Arc<Mutex<Auth>>,
    pub budget: Mutex<Budget>,
    /// Every endpoint's dialect and whether 429s carry `Retry-After`.
    pub dialect: Mutex<DialectState>,
    /// The user who authorised the client (`/users/me`).
    pub me: String,
}

impl Firm {
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("world lock")
    }

    pub fn auth(&self) -> MutexGuard<'_, Auth> {
        self.auth.lock().expect("auth lock")
    }

    pub fn budget(&self) -> MutexGuard<'_, Budget> {
        self.budget.lock().expect("budget lock")
    }

    pub fn dialects(&self) -> MutexGuard<'_, DialectState> {
        self.dialect.lock().expect("dialect lock")
    }

    /// How `res`'s list is served now.
    pub fn dialect_of(&self, res: Res) -> Dialect {
        self.dialects().get(res)
    }

    /// Every endpoint back to its default, `Retry-After` on, the budget back to `cfg`'s.
    pub fn reset_dialect(&self, cfg: &SimConfig) {
        *self.dialects() = DialectState::default();
        self.budget()
            .set_limits(cfg.budget_limit, cfg.budget_window);
    }

    /// `GET /_sim/dialect`: `{"endpoints": {name: Dialect}, "retry_after", "budget"}`.
    pub fn dialect_json(&self) -> Value {
        let (endpoints, retry_after) = {
            let d = self.dialects();
            (d.endpoints_json(), d.retry_after)
        };
        let budget = {
            let b = self.budget();
            dialect::budget_json(b.limit(), b.window())
        };
        serde_json::json!({
            "endpoints": endpoints,
            "retry_after": retry_after,
            "budget": budget,
        })
    }

    /// Where changes made now are stamped: true time plus any ClockSkew on stamps.
    pub fn stamp_now(&self) -> i64 {
        self.clock.now() + self.faults.skew().1 * TICKS_PER_SEC
    }

    pub fn truth_by_id_bytes(&self, res: Res) -> Vec<Vec<u8>> {
        self.world().store.render_by_id(res)
    }

    pub fn set_full_list(&self, res: Res, full: bool) {
        self.world().store.set_full_list(res, full)
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

    pub fn set_raw_field(&self, res: Res, id: &str, field: &str, text: &str) -> anyhow::Result<()> {
        let now = self.stamp_now();
        self.world().store.set_raw_field(res, id, field, text, now)
    }

    pub fn grant(&self) -> String {
        let now = self.clock.now();
        self.auth().grant(now)
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        let w = self.world();
        Res::ALL
            .iter()
            .map(|r| (r.name().to_owned(), w.store.len(*r)))
            .collect()
    }
}

/// Everything the server and the handles share.
pub(crate) struct Shared {
    pub cfg: SimConfig,
    pub clock: Arc<Clock>,
    /// At least one; firm 0 is the single firm of a one-firm sim.
    pub firms: Vec<Firm>,
    /// Every non-`/_sim` request of every firm, in arrival order, tagged with its firm.
    pub journal: Mutex<Vec<JournalEntry>>,
    /// Every access token ever issued → its firm (kept after expiry and revocation, so a
    /// request with a dead token is still attributed to its firm's budget and journal).
    pub owners: Mutex<HashMap<String, u32>>,
    /// The change generator is paused: the clock still moves, nothing changes.
    pub paused: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Firm `k`, if there is one.
    pub fn firm(&self, k: u32) -> Option<&Firm> {
        self.firms.get(k as usize)
    }

    pub fn firm0(&self) -> &Firm {
        &self.firms[0]
    }

    /// The firm whose client id this is.
    pub fn firm_by_client(&self, client_id: &str) -> Option<&Firm> {
        self.firms.iter().find(|f| f.client_id == client_id)
    }

    /// The firm that issued this access token (firm 0 when unknown).
    pub fn firm_by_token(&self, token: &str) -> &Firm {
        let k = self
            .owners
            .lock()
            .expect("owners lock")
            .get(token)
            .copied()
            .unwrap_or(0);
        self.firm(k).unwrap_or_else(|| self.firm0())
    }

    pub fn note_token(&self, token: &str, k: u32) {
        self.owners
            .lock()
            .expect("owners lock")
            .insert(token.to_owned(), k);
    }

    /// Moves the shared clock and runs every firm's generator over `(old_now, new_now]`;
    /// one summary per firm, by index. Every firm's world is locked (in index order) before the
    /// clock moves, so no request sees the new time before its firm's changes are in.
    pub fn advance(&self, d: std::time::Duration) -> Vec<ChangeSummary> {
        let ticks = (d.as_nanos() / 100) as i64;
        let mut worlds: Vec<MutexGuard<'_, World>> = self.firms.iter().map(Firm::world).collect();
        let old = self.clock.now();
        self.clock.advance(ticks);
        let new = old + ticks;
        if self.paused.load(std::sync::atomic::Ordering::Relaxed) {
            return self
                .firms
                .iter()
                .map(|_| ChangeSummary::default())
                .collect();
        }
        self.firms
            .iter()
            .zip(worlds.iter_mut())
            .map(|(f, w)| {
                let skew = f.faults.skew().1 * TICKS_PER_SEC;
                let World {
                    store, rng, memo, ..
                } = &mut **w;
                changes::run(store, rng, memo, &self.cfg.rates, old, new, skew)
            })
            .collect()
    }

    /// Journal entries, all firms or one.
    pub fn journal(&self, firm: Option<u32>) -> Vec<JournalEntry> {
        let j = self.journal.lock().expect("journal lock");
        j.iter()
            .filter(|e| firm.is_none_or(|k| e.firm == k))
            .cloned()
            .collect()
    }

    pub fn clear_journal(&self, firm: Option<u32>) {
        let mut j = self.journal.lock().expect("journal lock");
        match firm {
            None => j.clear(),
            Some(k) => j.retain(|e| e.firm != k),
        }
    }
}

/// The seed of firm `k`'s dataset, change generator and tokens: `seed` itself for firm 0 (so
/// firm 0 of a multi-firm sim is byte-identical to a single-firm sim with the same seed), a
/// SplitMix64 mix of `(seed, k)` otherwise. Firm `k`'s records are exactly those of a
/// single-firm sim seeded with `firm_seed(seed, k)`.
pub fn firm_seed(seed: u64, k: u32) -> u64 {
    if k == 0 {
        return seed;
    }
    let mut z = seed ^ u64::from(k).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Firm `k`'s client credentials: firm 0 uses `cfg.client_id`/`cfg.client_secret` unchanged;
/// firm `k ≥ 1` appends `-{k+1}` (1-based: firm 1 is `ppsim-client-2` / `ppsim-secret-2`).
pub fn firm_credentials(cfg: &SimConfig, k: u32) -> (String, String) {
    if k == 0 {
        (cfg.client_id.clone(), cfg.client_secret.clone())
    } else {
        (
            format!("{}-{}", cfg.client_id, k + 1),
            format!("{}-{}", cfg.client_secret, k + 1),
        )
    }
}

/// The endpoint a dialect call names: `None` (or `"*"`) is every endpoint.
pub(crate) fn endpoint_named(endpoint: Option<&str>) -> anyhow::Result<Option<Res>> {
    match endpoint.map(str::trim) {
        None | Some("*") => Ok(None),
        Some(name) => resource_named(name).map(Some),
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
    /// Builds the firm(s) and serves them on `127.0.0.1:0`.
    pub async fn spawn(cfg: SimConfig) -> anyhow::Result<SimHandle> {
        Sim::bind(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Builds the firm(s) and serves them on `addr` (the binary's `--port`).
    pub async fn bind(cfg: SimConfig, addr: SocketAddr) -> anyhow::Result<SimHandle> {
        let start = to_ticks(cfg.start);
        let scale = cfg.scale;
        anyhow::ensure!(
            scale.is_finite() && scale > 0.0,
            "scale must be positive, not {scale}"
        );
        anyhow::ensure!(cfg.firms >= 1, "firms must be at least 1");
        // Every firm's dataset is built on its own blocking thread, concurrently.
        let builders: Vec<_> = (0..cfg.firms)
            .map(|k| {
                let seed = firm_seed(cfg.seed, k);
                tokio::task::spawn_blocking(move || dataset::generate(seed, scale, start))
            })
            .collect();
        let clock = Arc::new(Clock::new(start, cfg.frozen_clock));
        let mut firms = Vec::with_capacity(builders.len());
        for (k, builder) in (0..cfg.firms).zip(builders) {
            let store = builder.await.context("dataset generator panicked")?;
            firms.push(Sim::firm(&cfg, k, store, clock.clone()));
        }
        let shared = Arc::new(Shared {
            clock,
            firms,
            journal: Mutex::new(vec![]),
            owners: Mutex::new(HashMap::new()),
            paused: Default::default(),
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

    fn firm(cfg: &SimConfig, k: u32, store: Store, clock: Arc<Clock>) -> Firm {
        let seed = firm_seed(cfg.seed, k);
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
        let (client_id, client_secret) = firm_credentials(cfg, k);
        Firm {
            k,
            client_id,
            client_secret,
            clock,
            world: Mutex::new(World {
                store,
                rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(1)),
                ids: ChaCha8Rng::seed_from_u64(seed.wrapping_add(2)),
                memo: changes::Memo::default(),
            }),
            faults: Faults {
                state: Arc::default(),
                auth: auth.clone(),
            },
            auth,
            budget: Mutex::new(Budget::new(cfg.budget_limit, cfg.budget_window)),
            dialect: Mutex::new({
                let mut d = DialectState::default();
                d.apply(None, &cfg.dialect);
                d.retry_after = cfg.retry_after;
                d
            }),
            me,
        }
    }
}

/// A running simulator. Cheap to clone; every clone drives the same firms.
///
/// Its per-firm methods (`client_id`, `grant`, `truth`, `create`, `faults`, `counts`, budget...)
/// act on firm 0, so a one-firm sim works as it always did; [`SimHandle::firm`] reaches the
/// others. `now`, `advance`, `journal` and `clear_journal` are global (all firms).
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

    /// How many firms this sim serves (`SimConfig::firms`).
    pub fn firms(&self) -> u32 {
        self.shared.firms.len() as u32
    }

    /// Firm `k` (0-based). Panics if `k >= self.firms()`.
    pub fn firm(&self, k: u32) -> FirmHandle {
        assert!(
            k < self.firms(),
            "firm {k} out of range: this sim serves {} firm(s)",
            self.firms()
        );
        FirmHandle {
            shared: self.shared.clone(),
            k,
        }
    }

    /// Every firm, by index.
    pub fn all_firms(&self) -> Vec<FirmHandle> {
        (0..self.firms()).map(|k| self.firm(k)).collect()
    }

    fn firm0(&self) -> FirmHandle {
        self.firm(0)
    }

    /// Firm 0's client id.
    pub fn client_id(&self) -> String {
        self.firm0().client_id()
    }

    /// Firm 0's client secret.
    pub fn client_secret(&self) -> String {
        self.firm0().client_secret()
    }

    /// A fresh refresh token for firm 0's client (same as `POST /_sim/grant`).
    pub fn grant(&self) -> String {
        self.firm0().grant()
    }

    /// The sim's true clock (shared by every firm).
    pub fn now(&self) -> DateTime<Utc> {
        from_ticks(self.shared.clock.now())
    }

    /// Moves the clock forward by `d` and runs every firm's change generator over
    /// `(old_now, new_now]`. Returns firm 0's summary (see [`SimHandle::advance_firms`]).
    pub fn advance(&self, d: std::time::Duration) -> ChangeSummary {
        self.advance_firms(d).swap_remove(0)
    }

    /// Pauses (or resumes) every firm's change generator: the clock still moves, nothing
    /// changes (a test's final comparison on a clock that a client's waits advance).
    pub fn pause_changes(&self, paused: bool) {
        self.shared
            .paused
            .store(paused, std::sync::atomic::Ordering::Relaxed);
    }

    /// As [`SimHandle::advance`], returning every firm's summary, by index.
    pub fn advance_firms(&self, d: std::time::Duration) -> Vec<ChangeSummary> {
        self.shared.advance(d)
    }

    /// Firm 0's faults.
    pub fn faults(&self) -> Faults {
        self.firm0().faults()
    }

    /// Every request except `/_sim/*`, of every firm, in order (each tagged with its `firm`).
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared.journal(None)
    }

    /// Clears the journal of every firm.
    pub fn clear_journal(&self) {
        self.shared.clear_journal(None)
    }

    /// Every live record of firm 0 exactly as the list endpoint renders it, in list order (id;
    /// tags: name). An unknown resource gives an empty list.
    pub fn truth(&self, resource: &str) -> Vec<Value> {
        self.firm0().truth(resource)
    }

    /// Every live record of a resource as GET-by-id renders it (with the fields only the
    /// single read returns: an email's `body_html`, a payment's `refundedAmount`). Firm 0.
    pub fn truth_by_id(&self, resource: &str) -> Vec<Value> {
        self.firm0().truth_by_id(resource)
    }

    /// Makes a resource's list carry the fields the spec says only GET-by-id returns (the other
    /// answer to that unknown), or leave them out again (the default). Firm 0.
    pub fn set_list_includes_single_only(&self, resource: &str, full: bool) -> anyhow::Result<()> {
        self.firm0().set_list_includes_single_only(resource, full)
    }

    /// Every list resource name (the path after `/api/v2/`, lowercase).
    pub fn resources(&self) -> Vec<String> {
        Res::ALL.iter().map(|r| r.name().to_owned()).collect()
    }

    /// Creates a record in firm 0, filling id and timestamps if missing; returns it as lists
    /// render it. Accounts may carry `primary_contact`/`other_contacts` objects; a contact needs
    /// `account_ref.id`; a tag needs `name`.
    pub fn create(&self, resource: &str, record: Value) -> anyhow::Result<Value> {
        self.firm0().create(resource, record)
    }

    /// Merges top-level fields and bumps `updated_at` to now (an account's `primary_contact`
    /// object is merged into the contact; both are bumped). Firm 0.
    pub fn edit(&self, resource: &str, id: &str, patch: Value) -> anyhow::Result<()> {
        self.firm0().edit(resource, id, patch)
    }

    /// The record vanishes from lists and GET-by-id (404). An account takes its contacts along.
    /// Firm 0.
    pub fn delete(&self, resource: &str, id: &str) -> anyhow::Result<()> {
        self.firm0().delete(resource, id)
    }

    /// Sets one field of a record to raw JSON text, rendered exactly so (a number out of range,
    /// a lone surrogate, deep nesting: what `serde_json::Value` cannot hold), and stamps the
    /// record now. Firm 0.
    pub fn set_raw_field(
        &self,
        resource: &str,
        id: &str,
        field: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        self.firm0().set_raw_field(resource, id, field, text)
    }

    /// Every live record of a resource as the list renders it, as text (for records
    /// `serde_json::Value` cannot hold). Firm 0.
    pub fn truth_text(&self, resource: &str) -> Vec<String> {
        self.firm0().truth_text(resource)
    }

    /// Sets a record's `updated_at` exactly (tie tests). Firm 0.
    pub fn set_updated_at(
        &self,
        resource: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.firm0().set_updated_at(resource, id, at)
    }

    /// Firm 0's budget use in the current window.
    pub fn requests_in_window(&self) -> u32 {
        self.firm0().requests_in_window()
    }

    /// The highest count ever seen in any sliding window of firm 0's budget.
    pub fn max_requests_in_any_window(&self) -> u32 {
        self.firm0().max_requests_in_any_window()
    }

    /// Firm 0's record counts per resource.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.firm0().counts()
    }

    /// Changes how firm 0 serves a list endpoint (`matters`, `customfields/matter`,
    /// `tags/activity`, `messages`...; unknown → error). `None` (or `"*"`) lays the whole patch
    /// on every endpoint that takes parameters and only its `page_cap` on messages and tags
    /// (name those to change their options).
    pub fn set_dialect(&self, endpoint: Option<&str>, patch: DialectPatch) -> anyhow::Result<()> {
        self.firm0().set_dialect(endpoint, patch)
    }

    /// How firm 0 serves `endpoint` now.
    pub fn dialect(&self, endpoint: &str) -> anyhow::Result<Dialect> {
        self.firm0().dialect(endpoint)
    }

    /// Firm 0: every endpoint back to its default dialect (not [`SimConfig::dialect`]'s),
    /// `Retry-After` on, the budget back to [`SimConfig::budget_limit`] per
    /// [`SimConfig::budget_window`].
    pub fn reset_dialect(&self) {
        self.firm0().reset_dialect()
    }

    /// Whether firm 0's 429s (the budget's and `RateLimitStorm`'s) carry `Retry-After`.
    pub fn set_retry_after(&self, on: bool) {
        self.firm0().set_retry_after(on)
    }

    /// Firm 0's budget from now on: `limit` requests (0 = unlimited) per sliding `window`.
    /// Requests already counted stay counted.
    pub fn set_budget(&self, limit: u32, window: std::time::Duration) {
        self.firm0().set_budget(limit, window)
    }

    /// Stops serving (in-flight requests finish).
    pub fn shutdown(&self) {
        self.stop.notify_one();
    }
}

/// One firm of a running simulator ([`SimHandle::firm`]). Cheap to clone. Its requests are
/// those made with its client credentials or its tokens.
#[derive(Clone)]
pub struct FirmHandle {
    shared: Arc<Shared>,
    k: u32,
}

impl FirmHandle {
    fn f(&self) -> &Firm {
        &self.shared.firms[self.k as usize]
    }

    /// This firm's 0-based index.
    pub fn index(&self) -> u32 {
        self.k
    }

    /// The seed its dataset, change generator and tokens come from ([`firm_seed`]).
    pub fn seed(&self) -> u64 {
        firm_seed(self.shared.cfg.seed, self.k)
    }

    pub fn client_id(&self) -> String {
        self.f().client_id.clone()
    }

    pub fn client_secret(&self) -> String {
        self.f().client_secret.clone()
    }

    /// A fresh refresh token for this firm's client (`POST /_sim/grant?firm=k`).
    pub fn grant(&self) -> String {
        self.f().grant()
    }

    /// Every live record of this firm as the list endpoint renders it, in list order. An unknown
    /// resource gives an empty list.
    pub fn truth(&self, resource: &str) -> Vec<Value> {
        let Some(res) = Res::from_name(resource) else {
            return vec![];
        };
        self.f()
            .truth_bytes(res)
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect()
    }

    /// As [`SimHandle::truth_by_id`], in this firm.
    pub fn truth_by_id(&self, resource: &str) -> Vec<Value> {
        let Some(res) = Res::from_name(resource) else {
            return vec![];
        };
        self.f()
            .truth_by_id_bytes(res)
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect()
    }

    /// As [`SimHandle::set_list_includes_single_only`], in this firm.
    pub fn set_list_includes_single_only(&self, resource: &str, full: bool) -> anyhow::Result<()> {
        self.f().set_full_list(resource_named(resource)?, full);
        Ok(())
    }

    /// This firm's journal entries only, in order.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared.journal(Some(self.k))
    }

    /// Removes this firm's journal entries (the others' stay).
    pub fn clear_journal(&self) {
        self.shared.clear_journal(Some(self.k))
    }

    /// As [`SimHandle::create`], in this firm.
    pub fn create(&self, resource: &str, record: Value) -> anyhow::Result<Value> {
        self.f().create(resource_named(resource)?, record)
    }

    /// As [`SimHandle::edit`], in this firm.
    pub fn edit(&self, resource: &str, id: &str, patch: Value) -> anyhow::Result<()> {
        self.f().edit(resource_named(resource)?, id, patch)
    }

    /// As [`SimHandle::delete`], in this firm.
    pub fn delete(&self, resource: &str, id: &str) -> anyhow::Result<()> {
        self.f().delete(resource_named(resource)?, id)
    }

    /// As [`SimHandle::set_raw_field`], in this firm.
    pub fn set_raw_field(
        &self,
        resource: &str,
        id: &str,
        field: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        self.f()
            .set_raw_field(resource_named(resource)?, id, field, text)
    }

    /// As [`SimHandle::truth_text`], in this firm.
    pub fn truth_text(&self, resource: &str) -> Vec<String> {
        let Some(res) = Res::from_name(resource) else {
            return vec![];
        };
        self.f()
            .truth_bytes(res)
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    /// As [`SimHandle::set_updated_at`], in this firm.
    pub fn set_updated_at(
        &self,
        resource: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.f().set_updated_at(resource_named(resource)?, id, at)
    }

    /// This firm's faults: they affect only requests attributed to this firm, and
    /// `expire_access_tokens`/`revoke_all` only its tokens.
    pub fn faults(&self) -> Faults {
        self.f().faults.clone()
    }

    /// This firm's budget use in the current window.
    pub fn requests_in_window(&self) -> u32 {
        let now = self.shared.clock.now();
        self.f().budget().in_window(now)
    }

    /// The highest count ever seen in any sliding window of this firm's budget.
    pub fn max_requests_in_any_window(&self) -> u32 {
        self.f().budget().max_in_any_window()
    }

    /// This firm's record counts per resource.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.f().counts()
    }

    /// As [`SimHandle::set_dialect`], for this firm.
    pub fn set_dialect(&self, endpoint: Option<&str>, patch: DialectPatch) -> anyhow::Result<()> {
        let res = endpoint_named(endpoint)?;
        self.f().dialects().apply(res, &patch);
        Ok(())
    }

    /// How this firm serves `endpoint` now.
    pub fn dialect(&self, endpoint: &str) -> anyhow::Result<Dialect> {
        Ok(self.f().dialect_of(resource_named(endpoint)?))
    }

    /// As [`SimHandle::reset_dialect`], for this firm.
    pub fn reset_dialect(&self) {
        self.f().reset_dialect(&self.shared.cfg)
    }

    /// As [`SimHandle::set_retry_after`], for this firm.
    pub fn set_retry_after(&self, on: bool) {
        self.f().dialects().retry_after = on;
    }

    /// As [`SimHandle::set_budget`], for this firm.
    pub fn set_budget(&self, limit: u32, window: std::time::Duration) {
        self.f().budget().set_limits(limit, window)
    }
}
