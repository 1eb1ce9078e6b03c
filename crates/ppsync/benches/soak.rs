//! A week without drift (issue 20): the daemon over simulated days, ppsync's own memory per day.
//!
//! ```sh
//! cargo bench -p ppsync --bench soak                              # 7 days, scale 1, SQLite
//! cargo bench -p ppsync --bench soak -- --days 7 --scale 0.2 pg   # PostgreSQL (or: sqlite pg)
//! ```
//!
//! The simulator runs in a child process (this binary again, with `--sim-child`: ppsim with a
//! frozen clock that moves only by `POST /_sim/advance`), so this process holds only ppsync: its
//! resident set is ppsync's (a scale-1 simulator alone holds about 1.1 GB). The engine and the
//! daemon run here on a clock that follows the simulator's: reading it is local, sleeping advances
//! the child over HTTP (running its change generator with the seed's rates and deletions).
//!
//! After a backfill, one daemon runs for `--days`; at each simulated day's end it prints the
//! records the simulator changed that day, the API requests ppsync made (the child's journal),
//! ppsync's VmRSS now and its VmHWM over the day (the peak is reset each day through
//! `/proc/self/clear_refs`), and the mirror's size. At the end the generator is paused, a
//! reconciliation pass runs (what the daemon does at 03:00) and the mirror is compared with the
//! simulator's truth, record by record.
//!
//! PostgreSQL runs go into a new database on `PPSYNC_TEST_PG_URL` (default: the local server).

use std::io::{BufRead as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ppsync::config::Config;
use ppsync::daemon::Daemon;
use ppsync::resource::RESOURCES;
use ppsync::store::Store;
use ppsync::time::{BoxFuture, Clock, parse_api_time};
use serde_json::Value;

fn main() {
    // The engine runs in this process: with the allocator settings the ppsync binary has.
    ppsync::memory::cap_malloc_arenas();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--sim-child") {
        sim_child(&args[1..]);
        return;
    }
    let mut days = 7u32;
    let mut scale = 1.0f64;
    let mut backends = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--days" => {
                days = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| {
                        panic!("--days takes a number of simulated days (1 or more)")
                    })
            }
            "--scale" => {
                scale = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&s: &f64| s > 0.0 && s <= 20.0)
                    .unwrap_or_else(|| panic!("--scale takes a firm size between 0.001 and 20"))
            }
            "sqlite" | "pg" => backends.push(a.clone()),
            // `cargo bench` passes `--bench`.
            other if other.starts_with("--") => {}
            other => panic!("unknown argument {other:?}: use --days N, --scale S, sqlite, pg"),
        }
    }
    if backends.is_empty() {
        backends.push("sqlite".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for backend in backends {
        if let Err(e) = rt.block_on(soak(days, scale, backend == "pg")) {
            eprintln!("soak on {backend}: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The child: ppsim on a frozen clock, its address and credentials on one line of stdout; it exits
/// when its stdin closes (the parent ended, however it ended).
fn sim_child(args: &[String]) {
    let scale: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sim = ppsim::Sim::spawn(ppsim::SimConfig {
            scale,
            frozen_clock: true,
            ..Default::default()
        })
        .await
        .expect("the simulator starts");
        let line = serde_json::json!({
            "url": sim.url(),
            "client_id": sim.client_id(),
            "client_secret": sim.client_secret(),
            "grant": sim.grant(),
        });
        println!("{line}");
        std::io::stdout().flush().unwrap();
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await;
        sim.shutdown();
    });
}

/// The simulator's process, killed when dropped (a panic included).
struct SimChild(Child);

impl Drop for SimChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The simulator's clock, seen from another process: `now` is the last instant the child
/// reported; `sleep` advances the child and counts what its generator changed.
struct RemoteClock {
    base: String,
    http: reqwest::Client,
    now: Mutex<DateTime<Utc>>,
    changed: AtomicU64,
    deleted: Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    days: Days,
}

impl RemoteClock {
    async fn read_now(&self) -> DateTime<Utc> {
        let v: Value = self
            .http
            .get(format!("{}/_sim/clock", self.base))
            .send()
            .await
            .expect("the simulator answers")
            .json()
            .await
            .expect("its clock as JSON");
        parse_api_time(v["now"].as_str().unwrap_or_default()).expect("an instant")
    }
}

impl Clock for RemoteClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'_> {
        Box::pin(async move {
            let s: ppsim::ChangeSummary = self
                .http
                .post(format!("{}/_sim/advance", self.base))
                .json(&serde_json::json!({ "seconds": d.as_secs_f64() }))
                .send()
                .await
                .expect("the simulator answers")
                .json()
                .await
                .expect("a change summary");
            let n: u32 = [&s.created, &s.edited, &s.deleted]
                .iter()
                .flat_map(|m| m.values())
                .sum();
            self.changed.fetch_add(u64::from(n), Ordering::Relaxed);
            {
                let mut gone = self.deleted.lock().unwrap();
                for (res, ids) in s.deleted_ids {
                    gone.entry(res).or_default().extend(ids);
                }
            }
            let now = self.read_now().await;
            *self.now.lock().unwrap() = now;
            self.days.maybe_close(self, now).await;
        })
    }
}

/// The per-day figures, taken when the clock crosses each day's end.
#[derive(Default)]
struct Days {
    store: OnceLock<Store>,
    mirror_path: OnceLock<Option<std::path::PathBuf>>,
    state: tokio::sync::Mutex<DayState>,
}

#[derive(Default)]
struct DayState {
    /// The next day's end (None before the daemon starts).
    next_end: Option<DateTime<Utc>>,
    day: u32,
    real: Option<Instant>,
    rows: Vec<String>,
}

impl Days {
    async fn start(&self, at: DateTime<Utc>) {
        let mut st = self.state.lock().await;
        st.next_end = Some(at + chrono::Duration::days(1));
        st.real = Some(Instant::now());
        reset_peak();
    }

    async fn maybe_close(&self, clock: &RemoteClock, now: DateTime<Utc>) {
        let mut st = self.state.lock().await;
        let Some(end) = st.next_end.filter(|e| now >= *e) else {
            return;
        };
        st.day += 1;
        st.next_end = Some(end + chrono::Duration::days(1));
        let changed = clock.changed.swap(0, Ordering::Relaxed);
        let requests = api_requests(clock).await;
        let (rss, hwm) = memory_kb();
        reset_peak();
        let (live, deleted, bytes) = match self.store.get() {
            Some(store) => mirror_size(store, self.mirror_path.get().cloned().flatten()).await,
            None => (0, 0, 0),
        };
        let real = st.real.replace(Instant::now()).map(|t| t.elapsed());
        let row = format!(
            "  day {:>2}  {:>8} changed  {:>6} requests  VmRSS {:>7.1} MB  VmHWM {:>7.1} MB  mirror {:>9} live {:>6} deleted {:>9.1} MB  ({:.0} s)",
            st.day,
            changed,
            requests,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            live,
            deleted,
            bytes as f64 / 1e6,
            real.unwrap_or_default().as_secs_f64()
        );
        println!("{row}");
        st.rows.push(row);
    }
}

/// API requests in the child's journal since the last call (which clears it).
async fn api_requests(clock: &RemoteClock) -> usize {
    let url = format!("{}/_sim/journal", clock.base);
    let entries: Vec<Value> = clock
        .http
        .get(&url)
        .send()
        .await
        .expect("the journal")
        .json()
        .await
        .expect("the journal as JSON");
    let _ = clock.http.delete(&url).send().await;
    entries
        .iter()
        .filter(|e| e["path"].as_str().is_some_and(|p| p.starts_with("/api/")))
        .count()
}

/// (VmRSS, VmHWM) of this process, in kB.
fn memory_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets VmHWM to the current resident set (Linux 4.0+), so each day reports its own peak.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// (live records, records marked deleted, bytes on disk).
async fn mirror_size(store: &Store, sqlite_file: Option<std::path::PathBuf>) -> (i64, i64, u64) {
    let (mut live, mut deleted) = (0, 0);
    for res in RESOURCES {
        let (l, d) = store.counts(res).await.unwrap_or((0, 0));
        live += l;
        deleted += d;
    }
    let bytes = match (sqlite_file, store.pg_pool()) {
        (Some(path), _) => ["", "-wal"]
            .iter()
            .map(|s| {
                let mut p = path.clone().into_os_string();
                p.push(s);
                std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
            })
            .sum(),
        (None, Some(pool)) => {
            sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())")
                .fetch_one(pool)
                .await
                .unwrap_or(0) as u64
        }
        _ => 0,
    };
    (live, deleted, bytes)
}

async fn soak(days: u32, scale: f64, pg: bool) -> anyhow::Result<()> {
    let backend = if pg { "PostgreSQL" } else { "SQLite" };
    println!("soak: {days} simulated days at scale {scale} on {backend}");
    let t = Instant::now();
    let mut child = SimChild(
        Command::new(std::env::current_exe()?)
            .args(["--sim-child", &scale.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let first = {
        let out = child.0.stdout.take().expect("piped");
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line)?;
        line
    };
    let sim: Value = serde_json::from_str(&first)
        .map_err(|e| anyhow::anyhow!("the simulator's first line {first:?}: {e}"))?;
    let s = |k: &str| sim[k].as_str().unwrap_or_default().to_string();
    let sim_rss = child_rss_kb(child.0.id());
    println!(
        "  simulator (pid {}) built in {:.1}s, VmRSS {:.0} MB (not counted below)",
        child.0.id(),
        t.elapsed().as_secs_f64(),
        sim_rss as f64 / 1024.0
    );

    let dir = tempfile::tempdir()?;
    let (db, mirror_path) = if pg {
        (ppsync::store::testing::fresh_database().await?, None)
    } else {
        let p = dir.path().join("soak.db");
        (p.to_string_lossy().into_owned(), Some(p))
    };
    let cfg = Config::from_toml_str(&format!(
        "database_url = {db:?}\napi_base_url = {:?}\nclient_id = {:?}\nclient_secret = {:?}\n",
        s("url"),
        s("client_id"),
        s("client_secret")
    ))?;
    let clock = Arc::new(RemoteClock {
        base: s("url"),
        http: reqwest::Client::new(),
        now: Mutex::new(DateTime::<Utc>::MIN_UTC),
        changed: AtomicU64::new(0),
        deleted: Default::default(),
        days: Days::default(),
    });
    let now = clock.read_now().await;
    *clock.now.lock().unwrap() = now;
    let engine = ppsync::app::engine(&cfg, clock.clone()).await?;
    let tokens = engine.client.redeem_refresh_token(&s("grant")).await?;
    use ppsync::api::TokenStore as _;
    engine.store.save(&tokens).await?;
    let _ = clock.days.store.set(engine.store.clone());
    let _ = clock.days.mirror_path.set(mirror_path);

    let t = Instant::now();
    let all: Vec<_> = RESOURCES.iter().collect();
    let backfill = engine.pass(&all, false, "backfill").await;
    if let Some(f) = &backfill.fatal {
        anyhow::bail!("the backfill stopped: {f}");
    }
    let (rss, hwm) = memory_kb();
    println!(
        "  backfill: {} records in {:.1}s; VmRSS {:.1} MB, VmHWM {:.1} MB",
        backfill.records_seen(),
        t.elapsed().as_secs_f64(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    api_requests(&clock).await;
    clock.changed.store(0, Ordering::Relaxed);

    let start = clock.now();
    clock.days.start(start).await;
    let mut dcfg = cfg.daemon();
    dcfg.stop_at = Some(start + chrono::Duration::days(i64::from(days)));
    let daemon = Daemon {
        engine: engine.clone(),
        cfg: dcfg,
        shutdown: Default::default(),
        observer: None,
    };
    let t = Instant::now();
    let summary = daemon.run().await?;
    println!(
        "  {} cycles, {} reconciliations, {} by-id reads in {:.0}s of real time",
        summary.cycles.len(),
        summary.reconciliations,
        summary.details,
        t.elapsed().as_secs_f64()
    );

    // The end: nothing changes any more; a reconciliation (as at 03:00) and the by-id reads it
    // queues, then every record compared.
    clock
        .http
        .post(format!("{}/_sim/pause", clock.base))
        .json(&serde_json::json!({ "paused": true }))
        .send()
        .await?
        .error_for_status()?;
    let recon = engine.pass(&all, true, "reconcile").await;
    if let Some(f) = &recon.fatal {
        anyhow::bail!("the final reconciliation stopped: {f}");
    }
    let details = engine.fetch_details(&all, None).await;
    let mut differ = Vec::new();
    let mut total = 0usize;
    for res in RESOURCES {
        let path = if cfg.sync.details(res) {
            "truth-by-id"
        } else {
            "truth"
        };
        let mut truth: Vec<Value> = clock
            .http
            .get(format!("{}/_sim/{path}/{}", clock.base, res.path))
            .send()
            .await?
            .json()
            .await?;
        let mut mirror = Vec::new();
        engine
            .store
            .export(res, false, |r| {
                mirror.extend(serde_json::from_str::<Value>(&r.data).ok());
                Ok(())
            })
            .await?;
        let key = |v: &Value| v[res.key].as_str().unwrap_or_default().to_string();
        truth.sort_by_key(key);
        mirror.sort_by_key(key);
        total += truth.len();
        if truth != mirror {
            differ.push(format!(
                "{} ({} in the mirror, {} at the source)",
                res.name,
                mirror.len(),
                truth.len()
            ));
        }
    }
    let gone: usize = clock.deleted.lock().unwrap().values().map(Vec::len).sum();
    let (live, deleted, _) = mirror_size(
        &engine.store,
        clock.days.mirror_path.get().cloned().flatten(),
    )
    .await;
    println!(
        "  the end: {live} live and {deleted} deleted rows; the simulator deleted {gone} records over the run; by-id reads left: {}",
        details.left
    );
    if differ.is_empty() && details.left == 0 {
        println!(
            "  mirror == truth: all {total} records of {} resources",
            RESOURCES.len()
        );
    } else {
        println!("  MIRROR DIFFERS from the truth: {}", differ.join(", "));
    }
    engine.store.close().await;
    drop(child);
    if pg {
        println!("  (database {db} left for inspection)");
    }
    Ok(())
}

fn child_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
