//! Many instances over many firms (product.md §8): three `ppsync run` processes share thirty
//! simulated firms through one PostgreSQL database. Every firm is synced every cycle, never by two
//! instances at once, each within its own budget, each instance on a bounded number of
//! connections; when one instance is killed its firms move to the others and their mirrors end
//! equal to the truth.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ppsim::{ChangeRates, Sim, SimConfig};
use ppsync::store::{CycleRow, Store};

use crate::support::*;

const FIRMS: u32 = 30;
const INSTANCES: usize = 3;
/// Every resource's interval (all tiers), in seconds.
const INTERVAL: i64 = 5;
/// `fleet.claim_interval`, in seconds.
const CLAIM: i64 = 1;
/// Each firm's budget, at the simulator and in ppsync: requests per window of seconds.
const BUDGET: u32 = 100;
const BUDGET_WINDOW: u64 = 10;
/// The most PostgreSQL connections one instance may hold, however many firms it serves: the pool
/// every firm shares, the claim connection (all its advisory locks) and one schema migration.
const CONNECTIONS: usize = ppsync::store::PG_POOL as usize + 2;

/// The instances under test, killed if the test panics.
struct Instances(BTreeMap<String, Child>);

impl Drop for Instances {
    fn drop(&mut self) {
        for child in self.0.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The TCP connections a process holds to `port` (PostgreSQL's), from /proc: its socket inodes
/// matched against the kernel's connection tables. 0 once the process is gone.
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
            // remote address, state (01: established), inode
            cols.len() > 9
                && cols[2].ends_with(&port)
                && cols[3] == "01"
                && inodes.contains(cols[9])
        })
        .count()
}

/// The highest connection count seen per instance.
#[derive(Default)]
struct Peaks {
    port: u16,
    seen: BTreeMap<String, usize>,
}

impl Peaks {
    fn sample(&mut self, children: &Instances) {
        for (name, child) in &children.0 {
            let n = pg_connections(child.id(), self.port);
            let peak = self.seen.entry(name.clone()).or_default();
            *peak = (*peak).max(n);
        }
    }
}

fn firm_name(k: u32) -> String {
    format!("firm{k}")
}

fn start_instance(
    config: &std::path::Path,
    name: &str,
    listen: &str,
    log: &std::path::Path,
) -> Child {
    ppsync_cmd(config)
        .arg("run")
        .env("PPSYNC_FLEET__INSTANCE_NAME", name)
        .env("PPSYNC_HTTP__LISTEN", listen)
        .env("PPSYNC_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("ppsync run starts")
}

/// Registers a firm as `ppsync firm add` does, and (`authorize`) stores its tokens as `ppsync
/// --firm NAME auth import` does. Returns its store.
async fn register(
    base: &ppsync::config::Config,
    home: &Store,
    name: &str,
    firm: &ppsim::FirmHandle,
    authorize: bool,
) -> Store {
    let row = ppsync::store::FirmRow {
        name: name.into(),
        client_id: firm.client_id(),
        client_secret: firm.client_secret().into(),
        settings: String::new(),
        created_at: String::new(),
    };
    assert!(home.add_firm(&row, chrono::Utc::now()).await.unwrap());
    let (cfg, store) = ppsync::app::open_firm(base, home, name).await.unwrap();
    if authorize {
        let clock = std::sync::Arc::new(ppsync::time::SystemClock);
        let client = ppsync::app::client(&cfg, &store, clock).await.unwrap();
        let tokens = client.redeem_refresh_token(&firm.grant()).await.unwrap();
        ppsync::api::TokenStore::save(&store, &tokens)
            .await
            .unwrap();
    }
    store
}

/// Every firm's finished cycles, oldest first.
async fn history(stores: &[(String, Store)]) -> BTreeMap<String, Vec<CycleRow>> {
    let mut out = BTreeMap::new();
    for (name, store) in stores {
        out.insert(name.clone(), store.cycles().await.unwrap());
    }
    out
}

/// A webhook receiver recording (X-PPSync-Firm header, payload).
async fn receiver() -> (
    std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
    String,
) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let state = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let got = state.clone();
                async move {
                    let firm = headers
                        .get("x-ppsync-firm")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    got.lock().unwrap().push((firm, v));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (got, url)
}

fn ts(s: &str) -> chrono::DateTime<chrono::Utc> {
    ppsync::time::parse_api_time(s).unwrap()
}

/// Polls until `done` holds for the history, or fails after `limit`.
async fn wait_for(
    stores: &[(String, Store)],
    limit: Duration,
    what: &str,
    mut sample: impl FnMut(),
    done: impl Fn(&BTreeMap<String, Vec<CycleRow>>) -> bool,
) -> BTreeMap<String, Vec<CycleRow>> {
    let start = Instant::now();
    loop {
        sample();
        let h = history(stores).await;
        if done(&h) {
            return h;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}; cycles per firm: {:?}",
            h.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_thirty_firms_on_bounded_connections_and_take_over_a_killed_ones_firms()
 {
    if ppsync::store::testing::postgres_selected() {
        // Instances coordinate through PostgreSQL only: this test always runs on it, once, in
        // the default (SQLite) pass of the suite.
        return;
    }
    quiet_logs();
    let sim = Sim::spawn(SimConfig {
        scale: 0.002,
        firms: FIRMS,
        // Each firm's own budget, on a short window (firms polled every few seconds): the same
        // on ppsync's side.
        budget_limit: BUDGET,
        budget_window: Duration::from_secs(BUDGET_WINDOW),
        rates: ChangeRates {
            deletions_per_hour: 0.0,
            ..ChangeRates::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (hook, hook_url) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let db = ppsync::store::testing::fresh_database().await.unwrap();
    let config = dir.path().join("ppsync.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = {db:?}\napi_base_url = {:?}\n\
             [budget]\nrequests = {BUDGET}\nwindow = \"{BUDGET_WINDOW}s\"\n\
             [schedule]\nhigh = \"{INTERVAL}s\"\nmedium = \"{INTERVAL}s\"\nlow = \"{INTERVAL}s\"\nreconcile_at = \"off\"\n\
             [fleet]\nclaim_interval = \"{CLAIM}s\"\n[http]\nlisten = \"off\"\n\
             [notify]\nwebhook_url = {hook_url:?}\n\
             [resources.emails]\ndetails = false\n[resources.payments]\ndetails = false\n",
            sim.url()
        ),
    )
    .unwrap();
    let setup = Instant::now();
    let base = ppsync::config::Config::load(Some(&config)).unwrap();
    let home = ppsync::app::open_home(&base).await.unwrap();
    // Registered in-process (`firm add` and `auth import` do the same and have tests of their
    // own): sixty runs of the binary would be most of this test's time.
    let mut stores = Vec::new();
    for k in 0..FIRMS {
        let name = firm_name(k);
        stores.push((
            name.clone(),
            register(&base, &home, &name, &sim.firm(k), true).await,
        ));
    }
    // One more firm whose credentials were never authorized: it fails every cycle, and the
    // others must not notice.
    register(&base, &home, "broken", &sim.firm(0), false).await;
    eprintln!("{} firms registered in {:?}", FIRMS + 1, setup.elapsed());
    let names: Vec<String> = (1..=INSTANCES).map(|i| format!("inst{i}")).collect();
    let listen: BTreeMap<String, String> = names
        .iter()
        .map(|n| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            (n.clone(), l.local_addr().unwrap().to_string())
        })
        .collect();
    let mut children = Instances(
        names
            .iter()
            .map(|n| {
                let log = dir.path().join(format!("{n}.log"));
                (n.clone(), start_instance(&config, n, &listen[n], &log))
            })
            .collect(),
    );
    let mut peaks = Peaks {
        port: url::Url::parse(&db).unwrap().port().unwrap_or(5432),
        ..Peaks::default()
    };

    // Phase 1: every firm backfilled and then synced on schedule, the work spread out.
    let began = Instant::now();
    let h = wait_for(
        &stores,
        Duration::from_secs(120),
        "three cycles per firm",
        || peaks.sample(&children),
        |h| h.values().all(|c| c.len() >= 3),
    )
    .await;
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for (firm, cycles) in &h {
        let last = cycles.last().unwrap();
        owner.insert(
            firm.clone(),
            last.instance.clone().expect("run by an instance"),
        );
    }
    let mut per_instance: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (firm, inst) in &owner {
        per_instance.entry(inst).or_default().push(firm);
    }
    eprintln!(
        "owners after the start ({:?}): {per_instance:?}",
        began.elapsed()
    );
    assert_eq!(
        per_instance.len(),
        INSTANCES,
        "every instance serves firms: {per_instance:?}"
    );
    for firms in per_instance.values() {
        assert!(
            firms.len() <= (FIRMS as usize + 1).div_ceil(INSTANCES),
            "at most a fair share each: {per_instance:?}"
        );
    }

    // Each instance's endpoint shows the firms it serves: /metrics labels them (one exposition,
    // strictly formed), and together the instances show every firm exactly once.
    let http = reqwest::Client::new();
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    for n in &names {
        let base = format!("http://{}", listen[n]);
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = crate::status_http::parse_prometheus(&metrics)
            .unwrap_or_else(|e| panic!("{n}: {e}\n{metrics}"));
        let firms: std::collections::BTreeSet<String> = series
            .keys()
            .filter_map(|k| {
                let i = k.find("firm=\"")? + 6;
                Some(k[i..].split('"').next()?.to_string())
            })
            .collect();
        for f in &firms {
            assert!(
                shown.insert(f.clone(), n.clone()).is_none(),
                "{f} shown by two instances"
            );
            let st = http
                .get(format!("{base}/firms/{f}/status"))
                .send()
                .await
                .unwrap();
            assert_eq!(st.status(), 200);
            let st: serde_json::Value = st.json().await.unwrap();
            assert_eq!(st["resources"].as_array().unwrap().len(), 26);
        }
        let health = http.get(format!("{base}/healthz")).send().await.unwrap();
        let status = health.status();
        let body = health.text().await.unwrap();
        if firms.contains("broken") {
            // The instance serving the firm without credentials says so, naming only that firm.
            assert_eq!(status, 503, "{n}: {body}");
            assert!(
                body.starts_with("behind: broken/")
                    && body.trim().split(", ").all(|r| r.contains("broken/")),
                "{n}: {body}"
            );
        } else {
            assert_eq!(status, 200, "{n}: {body}");
        }
        let other = (0..FIRMS)
            .map(firm_name)
            .find(|f| !firms.contains(f))
            .unwrap();
        let resp = http
            .get(format!("{base}/firms/{other}/status"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{n} does not serve {other}");
    }
    assert_eq!(
        shown.len(),
        FIRMS as usize + 1,
        "every firm (the broken one too) on some instance's endpoint: {shown:?}"
    );

    // Phase 2: the busiest instance dies; its firms move; the firms keep changing meanwhile.
    eprintln!("endpoints checked ({:?})", began.elapsed());
    let (victim, victim_firms) = per_instance
        .iter()
        .max_by_key(|(_, f)| f.len())
        .map(|(i, f)| {
            (
                i.to_string(),
                f.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        })
        .unwrap();
    let mut killed = children.0.remove(&victim).unwrap();
    let killed_at = chrono::Utc::now();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let changes = sim.advance_firms(Duration::from_secs(30 * 60));
    let changed_at = chrono::Utc::now();
    eprintln!("killed, firms changed ({:?})", began.elapsed());
    let h = wait_for(
        &stores,
        Duration::from_secs(90),
        "the killed instance's firms taken over, every firm synced after the changes",
        || peaks.sample(&children),
        |h| {
            h.iter().all(|(firm, cycles)| {
                cycles.iter().any(|c| {
                    ts(&c.started_at) > changed_at && c.instance.as_deref() != Some(victim.as_str())
                }) && (!victim_firms.contains(firm)
                    || cycles.iter().any(|c| {
                        ts(&c.started_at) > killed_at
                            && c.instance.as_deref() != Some(victim.as_str())
                    }))
            })
        },
    )
    .await;
    let mut takeover = chrono::Duration::zero();
    for firm in &victim_firms {
        let first = h[firm]
            .iter()
            .find(|c| ts(&c.started_at) > killed_at)
            .unwrap();
        assert_ne!(first.instance.as_deref(), Some(victim.as_str()));
        takeover = takeover.max(ts(&first.started_at) - killed_at);
    }
    eprintln!(
        "killed {victim} (firms {victim_firms:?}); taken over within {} ms ({:?})",
        takeover.num_milliseconds(),
        began.elapsed()
    );
    // A dead session's locks go at once; the next claim round takes the firm and its daemon
    // syncs what is due (at most one interval after the dead instance's last cycle), plus the
    // firm's start-up (its store and client) on a loaded machine.
    assert!(
        takeover <= chrono::Duration::seconds(CLAIM + INTERVAL + 5),
        "taken over within the claim interval and one cycle: {takeover}"
    );

    // Each new task is announced once per firm, named with its firm (the killed instance's
    // undelivered notifications are delivered by the firm's new owner, from the firm's outbox).
    let created = |k: usize| {
        let c = &changes[k].created;
        c.get("tasks")
            .or_else(|| c.get("/tasks"))
            .copied()
            .unwrap_or(0) as usize
    };
    let expected: usize = (0..FIRMS as usize).map(created).sum();
    assert!(expected > 0, "the firms got new tasks: {changes:?}");
    let announced = |k: usize| {
        let name = firm_name(k as u32);
        hook.lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| v["kind"] == "task.created" && v["firm"] == name.as_str())
            .map(|(_, v)| v["id"].as_str().unwrap().to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let start = Instant::now();
    while (0..FIRMS as usize).any(|k| announced(k) < created(k)) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "new tasks announced per firm: {:?} of {:?}",
            (0..FIRMS as usize).map(announced).collect::<Vec<_>>(),
            (0..FIRMS as usize).map(created).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (header, v) in hook.lock().unwrap().iter() {
        assert_eq!(
            v["firm"].as_str(),
            Some(header.as_str()),
            "header and payload agree"
        );
        let k: u32 = header.trim_start_matches("firm").parse().unwrap();
        let res = v["resource"].as_str().unwrap();
        let id = v["record_id"].as_str().unwrap();
        assert!(
            sim.firm(k)
                .truth(res)
                .iter()
                .any(|r| r["id"].as_str() == Some(id)),
            "{header}: {res} {id} is that firm's record"
        );
    }
    for k in 0..FIRMS as usize {
        assert_eq!(announced(k), created(k), "firm{k}: exactly its new tasks");
    }

    // However many firms an instance serves, it holds at most the shared pool, the claim
    // connection and one migration's.
    eprintln!(
        "peak PostgreSQL connections per instance: {:?} ({:?})",
        peaks.seen,
        began.elapsed()
    );
    assert_eq!(peaks.seen.len(), INSTANCES);
    for (name, peak) in &peaks.seen {
        assert!(
            *peak >= 2,
            "{name}: measured ({peak}): the pool and the claims"
        );
        assert!(
            *peak <= CONNECTIONS,
            "{name}: {peak} connections, more than {CONNECTIONS}"
        );
    }

    // Each firm kept to its own budget: never a 429, never more than its budget in any window
    // at the simulator, which counts each firm's requests apart.
    for k in 0..FIRMS {
        let f = sim.firm(k);
        let journal = f.journal();
        assert!(!journal.is_empty(), "firm{k} was synced");
        assert_eq!(
            journal.iter().filter(|e| e.status == 429).count(),
            0,
            "firm{k}: never throttled"
        );
        assert!(
            f.max_requests_in_any_window() <= BUDGET,
            "firm{k}: {} requests in a window",
            f.max_requests_in_any_window()
        );
    }

    // Shut the survivors down (SIGTERM: they finish the page in flight and exit 0).
    for (name, mut child) in std::mem::take(&mut children.0) {
        sigterm(&child);
        let start = Instant::now();
        let code = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s.code();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} stops on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(code, Some(0), "{name} exits cleanly");
    }
    let h = history(&stores).await;

    // Never two instances on one firm at once: each firm's cycles, in order, never overlap.
    // Every firm synced every cycle: no gap between its cycles beyond a missed tick, except the
    // takeover of the killed instance's firms.
    let mut total = 0;
    for (firm, cycles) in &h {
        let mut sorted = cycles.clone();
        sorted.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        for w in sorted.windows(2) {
            assert!(
                w[1].started_at >= w[0].finished_at,
                "{firm}: cycle {} ({:?}, {}..{}) overlaps cycle {} ({:?}, {}..{})",
                w[1].id,
                w[1].instance,
                w[1].started_at,
                w[1].finished_at,
                w[0].id,
                w[0].instance,
                w[0].started_at,
                w[0].finished_at
            );
            // From the end of one cycle (a backfill's length depends on the machine's load) to
            // the start of the next.
            let gap = ts(&w[1].started_at) - ts(&w[0].finished_at);
            let allowed = if victim_firms.contains(firm) {
                chrono::Duration::seconds(3 * INTERVAL + 10)
            } else {
                chrono::Duration::seconds(2 * INTERVAL + 3)
            };
            assert!(
                gap <= allowed,
                "{firm}: {gap} between cycles {} and {} ({:?} -> {:?})",
                w[0].id,
                w[1].id,
                w[0].instance,
                w[1].instance
            );
        }
        total += cycles.len();
    }
    eprintln!("{total} cycles over {FIRMS} firms ({:?})", began.elapsed());

    // Every firm's mirror equals its truth, whoever synced it last.
    for (k, (name, store)) in stores.iter().enumerate() {
        assert_store_equals_firm(store, &sim.firm(k as u32), name).await;
    }
    // The broken firm was served too (claimed, tried, failed), never successfully, and never
    // stalled the others (their gaps are checked above).
    let (_, broken) = ppsync::app::open_firm(&base, &home, "broken")
        .await
        .unwrap();
    let tried = broken.cycles().await.unwrap();
    assert!(!tried.is_empty(), "the broken firm was tried");
    assert!(
        tried.iter().all(|c| c.outcome != "ok"),
        "the broken firm never synced: {:?}",
        tried.iter().map(|c| &c.outcome).collect::<Vec<_>>()
    );
    for res in ppsync::resource::RESOURCES {
        assert_eq!(broken.counts(res).await.unwrap(), (0, 0));
    }
}
