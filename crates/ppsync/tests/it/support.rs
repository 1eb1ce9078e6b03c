//! Test support: a simulator on loopback, a fresh mirror, and helpers that compare the mirror to the
//! simulator's truth and read the request journal.

use std::path::PathBuf;
use std::sync::Arc;

use ppsim::{Sim, SimConfig, SimHandle};
use ppsync::api::TokenStore;
use ppsync::config::Config;
use ppsync::resource::{RESOURCES, Resource};
use ppsync::sync::{Engine, PassReport};
use ppsync::time::SystemClock;
use serde_json::Value;

/// Held by the tests that SIGKILL the binary at timed instants: run side by side on the two
/// cores, each would slow the other's processes enough to move where its kills land.
pub static KILL_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct TestApp {
    pub sim: SimHandle,
    /// Records the simulator deleted since the last full pass, per API path: an incremental pass
    /// cannot see them, so until a reconciliation the mirror may hold exactly these extra rows.
    pub pending_deletes: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
    /// Keeps the temporary directory (mirror, config) alive for the test's duration.
    pub _dir: tempfile::TempDir,
    pub engine: Engine,
    pub config_path: PathBuf,
}

pub fn quiet_logs() {
    if let Some(filter) = std::env::var_os("TEST_LOG") {
        // TEST_LOG=1: info; anything else is a filter (TEST_LOG=ppsync::api=debug).
        let filter = match filter.to_str() {
            Some("1") | None => "info".to_string(),
            Some(f) => f.to_string(),
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

pub async fn sim(scale: f64) -> SimHandle {
    Sim::spawn(SimConfig {
        scale,
        ..SimConfig::default()
    })
    .await
    .expect("sim spawns")
}

/// By-id reads (emails, payments) are switched off unless a test's config speaks of `details`:
/// they cost a request per record, which most tests' request counts and budgets do not want. The
/// detail tests (`details.rs`) switch them on.
fn details_off_unless_asked(extra: &str) -> String {
    if extra.contains("details") {
        return extra.to_string();
    }
    let mut out = extra.to_string();
    for res in ["emails", "payments"] {
        let header = format!("[resources.{res}]");
        if out.contains(&header) {
            out = out.replace(&header, &format!("{header}\ndetails = false"));
        } else {
            out.push_str(&format!("\n{header}\ndetails = false\n"));
        }
    }
    out
}

/// Writes a config for `sim` into a fresh directory and returns its path.
pub fn write_config(dir: &std::path::Path, sim: &SimHandle, extra: &str) -> PathBuf {
    let path = dir.join("ppsync.toml");
    let db = test_database_url(dir);
    let extra = details_off_unless_asked(extra);
    std::fs::write(
        &path,
        format!(
            "database_url = {:?}\napi_base_url = {:?}\nclient_id = {:?}\nclient_secret = {:?}\n{extra}\n",
            db,
            sim.url(),
            sim.client_id(),
            sim.client_secret()
        ),
    )
    .unwrap();
    path
}

/// A mirror over `sim` with credentials imported. `extra` is appended to the config (sections).
pub async fn app_with(sim: SimHandle, extra: &str) -> TestApp {
    app_with_clock(sim, extra, Arc::new(SystemClock)).await
}

/// A mirror whose clock is the simulator's: sleeping advances simulated time (the demo's clock).
pub async fn app_on_sim_clock(sim: SimHandle, extra: &str) -> TestApp {
    let clock = Arc::new(ppsync::demo::SimClock(sim.clone()));
    app_with_clock(sim, extra, clock).await
}

pub async fn app_with_clock(
    sim: SimHandle,
    extra: &str,
    clock: Arc<dyn ppsync::time::Clock>,
) -> TestApp {
    quiet_logs();
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(dir.path(), &sim, extra);
    let cfg = Config::load(Some(&config_path)).expect("config loads");
    let engine = ppsync::app::engine(&cfg, clock).await.expect("engine");
    let tokens = engine
        .client
        .redeem_refresh_token(&sim.grant())
        .await
        .expect("grant redeemed");
    engine.store.save(&tokens).await.unwrap();
    TestApp {
        sim,
        pending_deletes: Default::default(),
        _dir: dir,
        engine,
        config_path,
    }
}

pub async fn app(scale: f64, extra: &str) -> TestApp {
    app_with(sim(scale).await, extra).await
}

impl TestApp {
    pub async fn pass(&self) -> PassReport {
        self.engine
            .pass(
                RESOURCES.iter().collect::<Vec<_>>().as_slice(),
                false,
                "test",
            )
            .await
    }
    pub async fn full_pass(&self) -> PassReport {
        let all: Vec<_> = RESOURCES.iter().collect();
        let report = self.engine.pass(&all, true, "test").await;
        if report.fatal.is_none() && report.outcomes.iter().all(|o| o.error.is_none()) {
            self.pending_deletes.lock().unwrap().clear();
        }
        report
    }

    /// Advances the simulator's clock (running its change generator), remembering deletions.
    pub fn advance(&self, d: std::time::Duration) -> ppsim::ChangeSummary {
        let summary = self.sim.advance(d);
        let mut pending = self.pending_deletes.lock().unwrap();
        for (res, n) in &summary.deleted {
            *pending.entry(res.clone()).or_default() += n;
        }
        summary
    }

    pub async fn pass_of(&self, names: &[&str], full: bool) -> PassReport {
        let res: Vec<&'static Resource> = names
            .iter()
            .map(|n| ppsync::resource::find(n).unwrap())
            .collect();
        self.engine.pass(&res, full, "test").await
    }

    /// The mirror's live records of a resource, as stored (parsed), sorted by key.
    pub async fn mirror(&self, res: &Resource) -> Vec<Value> {
        live_records(&self.engine.store, res).await
    }

    /// The simulator's records as the mirror should hold them: the by-id rendering for a
    /// resource read by id (`details`), the list's otherwise.
    pub fn truth(&self, res: &Resource) -> Vec<Value> {
        let mut t = if self.engine.cfg.details(res) {
            self.sim.truth_by_id(res.path)
        } else {
            self.sim.truth(res.path)
        };
        sort_by_key(res, &mut t);
        t
    }

    /// Works off the by-id reads queued so far (what the daemon does between cycles).
    pub async fn fetch_details(&self) -> ppsync::sync::DetailReport {
        let all: Vec<&'static Resource> = RESOURCES.iter().collect();
        self.engine.fetch_details(&all, None).await
    }

    /// Asserts the mirror equals the simulator's truth for every resource: the same ids with the
    /// same content, and no extra live rows beyond the source deletions no full pass has seen yet.
    /// Returns the record count.
    pub async fn assert_equal_to_truth(&self) -> usize {
        let details = self.fetch_details().await;
        assert!(details.error.is_none(), "by-id reads: {details:?}");
        assert_eq!(details.left, 0, "by-id reads left queued: {details:?}");
        let mut total = 0;
        for res in RESOURCES {
            let mirror = self.mirror(res).await;
            let truth = self.truth(res);
            let pending = self
                .pending_deletes
                .lock()
                .unwrap()
                .get(res.path)
                .copied()
                .unwrap_or(0) as usize;
            let by_key: std::collections::HashMap<&str, &Value> = mirror
                .iter()
                .map(|r| (r[res.key].as_str().unwrap(), r))
                .collect();
            for t in &truth {
                let key = t[res.key].as_str().unwrap();
                let m = by_key
                    .get(key)
                    .unwrap_or_else(|| panic!("{}: {key} missing from the mirror", res.name));
                assert_eq!(*m, t, "{}: record {key} differs", res.name);
            }
            assert!(
                mirror.len() >= truth.len() && mirror.len() - truth.len() <= pending,
                "{}: mirror has {} live records, truth {} ({pending} deletions not yet reconciled)",
                res.name,
                mirror.len(),
                truth.len()
            );
            total += truth.len();
        }
        total
    }

    /// API requests (not token calls) in the journal.
    pub fn api_requests(&self) -> Vec<ppsim::JournalEntry> {
        self.sim
            .journal()
            .into_iter()
            .filter(|e| e.path.starts_with("/api/"))
            .collect()
    }
}

pub fn sort_by_key(res: &Resource, v: &mut [Value]) {
    v.sort_by(|a, b| a[res.key].as_str().cmp(&b[res.key].as_str()));
}

pub fn assert_clean(report: &PassReport) {
    assert!(report.fatal.is_none(), "fatal: {:?}", report.fatal);
    for o in &report.outcomes {
        assert!(o.error.is_none(), "{} failed: {:?}", o.resource, o.error);
    }
}

impl TestApp {
    /// Runs the `ppsync` binary with this app's config; returns (exit code, stdout, stderr).
    /// On a blocking thread, so the in-process simulator keeps serving meanwhile.
    pub async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let config = self.config_path.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cli(&config, &args)
        })
        .await
        .expect("cli thread")
    }
}

/// The `ppsync` binary with `--config path`: every test that runs the binary starts here, then
/// adds its arguments, environment (whether `PPSYNC_LOG` is removed or set is each caller's
/// choice) and stdio before spawning it.
pub fn ppsync_cmd(config: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ppsync"));
    cmd.arg("--config").arg(config);
    cmd
}

/// Runs the `ppsync` binary with `--config path`.
pub fn run_cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = ppsync_cmd(config)
        .args(args)
        .env_remove("PPSYNC_LOG")
        .output()
        .expect("ppsync runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `run_cli` on a blocking thread (the in-process simulator keeps serving).
pub async fn run_cli_async(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&config, &args)
    })
    .await
    .expect("cli thread")
}

/// The database a test's config points at: a new SQLite file in `dir`, or (with
/// `PPSYNC_TEST_BACKEND=postgres`) a new PostgreSQL database.
pub fn test_database_url(dir: &std::path::Path) -> String {
    if ppsync::store::testing::postgres_selected() {
        ppsync::store::testing::fresh_database_blocking().expect("a PostgreSQL test database")
    } else {
        dir.join("mirror.db").to_str().unwrap().to_string()
    }
}

/// The table holding a store's OAuth tokens: in the SQLite file, or in the PostgreSQL secrets
/// schema (one row per store there: a test database holds one store's).
pub fn tokens_table(store: &ppsync::store::Store) -> String {
    match store.secrets_schema() {
        Some(s) => format!("\"{s}\".oauth_tokens"),
        None => "oauth_tokens".to_string(),
    }
}

/// Runs a statement on either backend.
pub async fn exec(store: &ppsync::store::Store, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match (store.sqlite_pool(), store.pg_pool()) {
        (Some(p), _) => {
            sqlx::query(sql).execute(p).await.unwrap();
        }
        (_, Some(p)) => {
            sqlx::query(sql).execute(p).await.unwrap();
        }
        _ => unreachable!(),
    }
}

/// Every row of a query as one line of text (each backend renders its own way: compare rows from
/// one backend only).
pub async fn rows_text(store: &ppsync::store::Store, sql: &str) -> Vec<String> {
    use sqlx::Row as _;
    match (store.sqlite_pool(), store.pg_pool()) {
        (Some(p), _) => sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(p)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let cells: Vec<String> = (0..r.columns().len())
                    .map(|i| {
                        if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
                            format!("{v:?}")
                        } else if let Ok(v) = r.try_get::<Option<f64>, _>(i) {
                            format!("{v:?}")
                        } else {
                            format!("{:?}", r.get::<Option<String>, _>(i))
                        }
                    })
                    .collect();
                cells.join(" ")
            })
            .collect(),
        (_, Some(p)) => sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT row_to_json(q)::text FROM ({sql}) q"
        )))
        .fetch_all(p)
        .await
        .unwrap(),
        _ => unreachable!(),
    }
}

/// The first column of every row, as text.
pub async fn strings(store: &ppsync::store::Store, sql: &str) -> Vec<String> {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match (store.sqlite_pool(), store.pg_pool()) {
        (Some(p), _) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        (_, Some(p)) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        _ => unreachable!(),
    }
}

/// A single integer (a count).
pub async fn count(store: &ppsync::store::Store, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match (store.sqlite_pool(), store.pg_pool()) {
        (Some(p), _) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        (_, Some(p)) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        _ => unreachable!(),
    }
}

/// A store's live records of a resource, as stored (parsed), sorted by key.
pub async fn live_records(store: &ppsync::store::Store, res: &Resource) -> Vec<Value> {
    let mut out = Vec::new();
    store
        .export(res, false, |r| {
            // A lone surrogate (kept as received) parses with U+FFFD in its place. Nesting deeper
            // than serde_json parses is left out (ppsim's `truth` leaves it out too): the odd
            // record tests compare such records as text.
            let v = serde_json::from_str::<Value>(&r.data).ok().or_else(|| {
                let safe = ppsync::record::jsonb_safe(&r.data)?;
                serde_json::from_str(&safe).ok()
            });
            out.extend(v);
            Ok(())
        })
        .await
        .unwrap();
    sort_by_key(res, &mut out);
    out
}

/// Asserts a store holds exactly a simulator firm's live records, every resource (no deletions
/// pending). Returns the record count.
pub async fn assert_store_equals_firm(
    store: &ppsync::store::Store,
    firm: &ppsim::FirmHandle,
    what: &str,
) -> usize {
    let mut total = 0;
    for res in RESOURCES {
        let mirror = live_records(store, res).await;
        let mut truth = firm.truth(res.path);
        sort_by_key(res, &mut truth);
        assert_eq!(
            mirror.len(),
            truth.len(),
            "{what}: {} has {} records, the firm {}",
            res.name,
            mirror.len(),
            truth.len()
        );
        assert!(
            mirror == truth,
            "{what}: {} differs from the truth",
            res.name
        );
        total += truth.len();
    }
    total
}

/// A child process (a daemon under test) killed and reaped when dropped, so a test that fails
/// before stopping it leaves none running; `take` it out to stop it the test's own way.
pub struct Running(pub Option<std::process::Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends SIGTERM to a child (a daemon under test): it stops at a page boundary and exits.
pub fn sigterm(child: &std::process::Child) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {} failed", child.id());
}
