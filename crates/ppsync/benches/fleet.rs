//! A fleet of many small firms on one PostgreSQL database, served by several `ppsync run`
//! instances against an in-process ppsim.
//!
//! ```sh
//! cargo bench -p ppsync --bench fleet -- 100 4    # firms, instances (the default)
//! ```
//!
//! Registers every firm in a new database on `PPSYNC_TEST_PG_URL` (default: the local server
//! `scripts/test.sh` starts), starts the instances as child processes and prints:
//! - the time from their start to the first full mirror of every firm (each firm's first
//!   successful cycle, then each resource's row count checked against the simulator's);
//! - the CPU the instances spend per firm per cycle in the steady state after that (utime and
//!   stime from `/proc/<pid>/stat`, over two tier intervals, divided by the cycles that started
//!   in them), and the share of a core that makes;
//! - the PostgreSQL connections each instance held at its peak (its sockets to the server's port,
//!   from `/proc`, sampled every 200 ms), beside `pg_stat_activity`'s count;
//! - the takeover time after the busiest instance is killed (SIGKILL): until every firm it served
//!   has started a cycle on another instance.
//!
//! Each firm is small (scale 0.002, ~420 records over 26 resources) and keeps its own budget
//! (600 requests per 5 minutes on both sides); every tier is 30 s, the claim interval 2 s.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ppsim::{Sim, SimConfig};
use ppsync::resource::RESOURCES;
use ppsync::store::{CycleRow, Store};

const SCALE: f64 = 0.002;
/// Every tier's interval, in seconds.
const INTERVAL: u64 = 30;
/// `fleet.claim_interval`, in seconds.
const CLAIM: u64 = 2;
const BUDGET: u32 = 600;

/// The instances, killed when the bench ends or fails.
struct Instances(BTreeMap<String, Child>);

impl Drop for Instances {
    fn drop(&mut self) {
        for child in self.0.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| {
            a.parse().unwrap_or_else(|_| {
                eprintln!("{a:?} is not a number: pass FIRMS INSTANCES, e.g. -- 100 4");
                std::process::exit(2)
            })
        })
        .collect();
    let firms = args.first().copied().unwrap_or(100).max(1);
    let instances = args.get(1).copied().unwrap_or(4).max(2);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(run(firms as u32, instances));
}

async fn run(firms: u32, instances: usize) {
    let built = Instant::now();
    let sim = Sim::spawn(SimConfig {
        scale: SCALE,
        firms,
        budget_limit: BUDGET,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts");
    let db = ppsync::store::testing::fresh_database()
        .await
        .expect("a new PostgreSQL database");
    let pg_port = url::Url::parse(&db)
        .ok()
        .and_then(|u| u.port())
        .unwrap_or(5432);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("ppsync.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = {db:?}\napi_base_url = {:?}\n\
             [budget]\nrequests = {BUDGET}\nwindow = \"5m\"\n\
             [schedule]\nhigh = \"{INTERVAL}s\"\nmedium = \"{INTERVAL}s\"\nlow = \"{INTERVAL}s\"\nreconcile_at = \"off\"\n\
             [fleet]\nclaim_interval = \"{CLAIM}s\"\n[http]\nlisten = \"off\"\n",
            sim.url()
        ),
    )
    .expect("the config is written");
    let base = ppsync::config::Config::load(Some(&config)).expect("the config loads");
    let home = ppsync::app::open_home(&base).await.expect("the home store");
    let mut stores = Vec::new();
    for k in 0..firms {
        let name = format!("firm{k}");
        stores.push((
            name.clone(),
            register(&base, &home, &name, &sim.firm(k)).await,
        ));
    }
    println!(
        "fleet: {firms} firms at scale {SCALE}, {instances} instances; simulator and registry ready in {:.1} s",
        built.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut children = Instances(
        (1..=instances)
            .map(|i| {
                let name = format!("inst{i}");
                let log = dir.path().join(format!("{name}.log"));
                (name.clone(), start_instance(&config, &name, &log))
            })
            .collect(),
    );
    let mut peaks: BTreeMap<String, usize> = BTreeMap::new();
    let sample = |peaks: &mut BTreeMap<String, usize>, children: &Instances| {
        for (name, child) in &children.0 {
            let n = pg_connections(child.id(), pg_port);
            let p = peaks.entry(name.clone()).or_default();
            *p = (*p).max(n);
        }
    };

    // 1. Every firm's first full mirror.
    let mut full = None;
    while full.is_none() {
        sample(&mut peaks, &children);
        let h = history(&stores).await;
        if h.values().all(|c| c.iter().any(|c| c.outcome == "ok")) {
            full = Some(started.elapsed());
        } else {
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "no full mirror of every firm within 15 minutes: {} of {firms} done",
                h.values()
                    .filter(|c| c.iter().any(|c| c.outcome == "ok"))
                    .count()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let full = full.expect("set above");
    let mut records = 0;
    for (k, (name, store)) in stores.iter().enumerate() {
        for res in RESOURCES {
            let (live, _) = store.counts(res).await.expect("counts");
            let truth = sim.firm(k as u32).truth(res.path).len();
            assert_eq!(live as usize, truth, "{name}: {} rows", res.name);
            records += truth;
        }
    }
    println!(
        "first full mirror of all {firms} firms: {:.1} s ({records} records, checked per resource)",
        full.as_secs_f64()
    );

    // 2. The steady state: CPU per firm per cycle over two tier intervals.
    let ticks = clock_ticks();
    let cpu0: u64 = children.0.values().map(|c| cpu_ticks(c.id())).sum();
    let t0 = chrono::Utc::now();
    let w0 = Instant::now();
    let window = Duration::from_secs(2 * INTERVAL);
    while w0.elapsed() < window {
        sample(&mut peaks, &children);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu1: u64 = children.0.values().map(|c| cpu_ticks(c.id())).sum();
    let t1 = chrono::Utc::now();
    let h = history(&stores).await;
    let cycles = h
        .values()
        .flatten()
        .filter(|c| (t0..t1).contains(&ts(&c.started_at)))
        .count();
    let cpu = (cpu1 - cpu0) as f64 / ticks;
    println!(
        "steady state over {} s: {cycles} cycles, {:.1} CPU-ms per firm per cycle, {:.2} of a core for all instances",
        window.as_secs(),
        1000.0 * cpu / cycles.max(1) as f64,
        cpu / window.as_secs_f64()
    );

    // 3. Connections.
    let mut own_conn = sqlx_admin(&db).await;
    let in_view: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND starts_with(application_name, 'ppsync')",
    )
    .fetch_one(&mut own_conn)
    .await
    .expect("pg_stat_activity");
    let own = pg_connections(std::process::id(), pg_port);
    println!(
        "PostgreSQL connections per instance, peak: {peaks:?} (bound: pool {} + claims 1 + migration 1); \
         pg_stat_activity now: {in_view} ppsync connections, {own} of them this bench's",
        ppsync::store::PG_POOL
    );

    // 4. Takeover after SIGKILL of the busiest instance.
    let mut owner: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (firm, cycles) in &h {
        if let Some(i) = cycles.last().and_then(|c| c.instance.clone()) {
            owner.entry(i).or_default().push(firm.clone());
        }
    }
    let (victim, moved) = owner
        .iter()
        .max_by_key(|(_, f)| f.len())
        .map(|(i, f)| (i.clone(), f.clone()))
        .expect("some instance serves firms");
    let spread: Vec<usize> = owner.values().map(Vec::len).collect();
    let mut killed = children.0.remove(&victim).expect("a running instance");
    let killed_at = chrono::Utc::now();
    killed.kill().expect("SIGKILL");
    let _ = killed.wait();
    let limit = Instant::now() + Duration::from_secs(CLAIM + INTERVAL + 120);
    let takeover = loop {
        sample(&mut peaks, &children);
        let h = history(&stores).await;
        let firsts: Vec<Option<chrono::Duration>> = moved
            .iter()
            .map(|f| {
                h[f].iter()
                    .map(|c| ts(&c.started_at))
                    .find(|s| *s > killed_at)
                    .map(|s| s - killed_at)
            })
            .collect();
        if firsts.iter().all(Option::is_some) {
            break firsts.into_iter().flatten().max().unwrap_or_default();
        }
        assert!(
            Instant::now() < limit,
            "{victim}'s firms not taken over: {} of {}",
            firsts.iter().filter(|f| f.is_some()).count(),
            moved.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let h = history(&stores).await;
    assert!(
        moved.iter().all(|f| h[f]
            .iter()
            .filter(|c| ts(&c.started_at) > killed_at)
            .all(|c| c.instance.as_deref() != Some(victim.as_str()))),
        "only the survivors ran the moved firms"
    );
    println!(
        "takeover: killed {victim} (firms per instance were {spread:?}); its {} firms each started a cycle \
         elsewhere within {:.1} s (claim interval {CLAIM} s, tier {INTERVAL} s)",
        moved.len(),
        takeover.num_milliseconds() as f64 / 1000.0
    );

    drop(children);
    drop(stores);
    drop(home);
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        url::Url::parse(&db)
            .map(|u| u.path().trim_start_matches('/').to_string())
            .unwrap_or_default()
    )))
    .execute(&mut sqlx_admin(&ppsync::store::testing::admin_url()).await)
    .await;
}

/// Registers a firm as `ppsync firm add` does and stores its tokens as `auth import` does.
async fn register(
    base: &ppsync::config::Config,
    home: &Store,
    name: &str,
    firm: &ppsim::FirmHandle,
) -> Store {
    let row = ppsync::store::FirmRow {
        name: name.into(),
        client_id: firm.client_id(),
        client_secret: firm.client_secret().into(),
        settings: String::new(),
        created_at: String::new(),
    };
    assert!(home.add_firm(&row, chrono::Utc::now()).await.expect("add"));
    let (cfg, store) = ppsync::app::open_firm(base, home, name)
        .await
        .expect("the firm's store");
    let client = ppsync::app::client(&cfg, &store, Arc::new(ppsync::time::SystemClock))
        .await
        .expect("a client");
    let tokens = client
        .redeem_refresh_token(&firm.grant())
        .await
        .expect("the grant is redeemed");
    ppsync::api::TokenStore::save(&store, &tokens)
        .await
        .expect("tokens stored");
    store
}

fn start_instance(config: &Path, name: &str, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ppsync"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("PPSYNC_FLEET__INSTANCE_NAME", name)
        .env("PPSYNC_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("a log file"))
        .spawn()
        .expect("ppsync run starts")
}

async fn history(stores: &[(String, Store)]) -> BTreeMap<String, Vec<CycleRow>> {
    let mut out = BTreeMap::new();
    for (name, store) in stores {
        out.insert(name.clone(), store.cycles().await.expect("cycles"));
    }
    out
}

fn ts(s: &str) -> chrono::DateTime<chrono::Utc> {
    ppsync::time::parse_api_time(s).expect("a stored time")
}

async fn sqlx_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    sqlx::PgConnection::connect(url)
        .await
        .expect("PostgreSQL is reachable")
}

/// A process's established TCP connections to `port`: its socket inodes matched against the
/// kernel's tables.
fn pg_connections(pid: u32, port: u16) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let inodes: std::collections::BTreeSet<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() > 9
                && cols[2].ends_with(&port)
                && cols[3] == "01"
                && inodes.contains(cols[9])
        })
        .count()
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line are the 12th and 13th after the name.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
