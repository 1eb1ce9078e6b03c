//! The daemon over a simulated day, on the simulator's clock (seconds of real time).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::http::{HeaderMap, StatusCode};
use ppsync::daemon::Daemon;
use ppsync::resource::RESOURCES;
use ppsync::time::parse_api_time;
use serde_json::Value;

use crate::support::*;

/// A webhook receiver that checks signatures (Standard Webhooks, with a raw secret), can be taken
/// down, and records what it got.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub(crate) up: Arc<AtomicBool>,
    pub(crate) got: Arc<Mutex<Vec<Value>>>,
    refused: Arc<AtomicUsize>,
    bad_signatures: Arc<AtomicUsize>,
}

pub(crate) const SECRET: &str = "test-secret";

pub(crate) async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    r.up.store(true, Ordering::SeqCst);
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let r = state.clone();
            async move {
                if !r.up.load(Ordering::SeqCst) {
                    r.refused.fetch_add(1, Ordering::SeqCst);
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let now = chrono::Utc::now().timestamp();
                if crate::notify::verify(SECRET, &headers, &body, now).is_err() {
                    r.bad_signatures.fetch_add(1, Ordering::SeqCst);
                    return StatusCode::UNAUTHORIZED;
                }
                let v: Value = serde_json::from_slice(&body).unwrap();
                for h in ["webhook-id", "x-ppsync-id"] {
                    assert_eq!(
                        headers.get(h).unwrap().to_str().unwrap(),
                        v["id"].as_str().unwrap()
                    );
                }
                r.got.lock().unwrap().push(v);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_day_keeps_every_tier_on_time_and_notifies_exactly() {
    let (hook, url) = receiver().await;
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.02,
        ..Default::default()
    })
    .await
    .unwrap();
    let extra = format!("[notify]\nwebhook_url = {url:?}\nwebhook_secret = {SECRET:?}\n");
    let app = app_on_sim_clock(sim.clone(), &extra).await;
    let cfg = ppsync::config::Config::load(Some(&app.config_path)).unwrap();

    // The first backfill: nothing is sent for what already exists.
    assert_clean(&app.pass().await);
    let backfill_end = app.sim.now();
    let tasks = ppsync::resource::find("tasks").unwrap();
    let tasks_at_backfill: BTreeSet<String> = app
        .truth(tasks)
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();

    // Twelve hours, with the webhook down from cycle 10 to cycle 20.
    let cycles = Arc::new(AtomicUsize::new(0));
    let (c, up) = (cycles.clone(), hook.up.clone());
    let observer: ppsync::daemon::Observer = Arc::new(move |_r| {
        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
        up.store(!(10..20).contains(&n), Ordering::SeqCst);
    });
    let mut dcfg = cfg.daemon();
    dcfg.stop_at = Some(backfill_end + chrono::Duration::hours(12));
    let first = Daemon {
        engine: app.engine.clone(),
        cfg: dcfg.clone(),
        shutdown: Default::default(),
        observer: Some(observer),
    };
    let s1 = first.run().await.unwrap();
    assert!(
        hook.refused.load(Ordering::SeqCst) > 0,
        "the outage really refused deliveries"
    );
    assert!(hook.up.load(Ordering::SeqCst));

    // A restart: a new engine on the same database runs the rest of the day.
    let engine2 = ppsync::app::engine(&cfg, Arc::new(ppsync::demo::SimClock(sim.clone())))
        .await
        .unwrap();
    dcfg.stop_at = Some(backfill_end + chrono::Duration::hours(24));
    let second = Daemon {
        engine: engine2.clone(),
        cfg: dcfg,
        shutdown: Default::default(),
        observer: None,
    };
    let s2 = second.run().await.unwrap();
    assert_eq!(
        s1.reconciliations + s2.reconciliations,
        1,
        "one reconciliation a day"
    );
    // Deliver what the last cycle enqueued (the daemon stops right after its last cycle).
    let dispatcher = ppsync::notify::Dispatcher::new(cfg.notify.clone()).unwrap();
    dispatcher
        .deliver_due(&engine2.store, app.sim.now())
        .await
        .unwrap();

    // Every tier on time: each resource's successful scheduled runs are one interval apart.
    let runs = engine2.store.runs(100_000).await.unwrap();
    let mut by_resource: HashMap<&str, Vec<chrono::DateTime<chrono::Utc>>> = HashMap::new();
    for r in runs
        .iter()
        .filter(|r| r.outcome == "ok" && r.mode != "backfill")
    {
        let rs = ppsync::resource::find(&r.resource).unwrap().name;
        by_resource
            .entry(rs)
            .or_default()
            .push(parse_api_time(&r.started_at).unwrap());
    }
    for res in RESOURCES {
        let interval = res.tier.default_interval();
        let mut times = by_resource.remove(res.name).unwrap_or_default();
        times.sort();
        let expected = (24 * 3600 / interval.as_secs()) as usize;
        assert!(
            times.len() >= expected,
            "{}: {} runs, expected at least {expected}",
            res.name,
            times.len()
        );
        for w in times.windows(2) {
            let gap = (w[1] - w[0]).to_std().unwrap();
            assert!(
                gap <= interval + std::time::Duration::from_secs(60),
                "{}: a gap of {gap:?}",
                res.name
            );
        }
    }

    // Requests per 15-minute cycle at the floor: one per resource synced (plus a token refresh).
    let cycles_rows = engine2.store.cycles().await.unwrap();
    let mut extra_requests = 0;
    for c in cycles_rows.iter().filter(|c| c.trigger == "scheduled") {
        assert!(c.requests >= c.resources, "{c:?}");
        extra_requests += c.requests - c.resources;
    }
    let refreshes = app
        .sim
        .journal()
        .iter()
        .filter(|e| e.path == "/oauth/token")
        .count() as i64;
    assert!(
        extra_requests <= refreshes,
        "extra requests {extra_requests} beyond {refreshes} token calls"
    );
    let high = cycles_rows
        .iter()
        .filter(|c| c.trigger == "scheduled" && c.resources >= 4)
        .count();
    assert!(high >= 96, "a cycle every 15 minutes: {high}");
    assert!(app.sim.max_requests_in_any_window() <= 300, "budget");
    assert_eq!(
        app.sim.journal().iter().filter(|e| e.status == 429).count(),
        0
    );

    // The mirror equals the truth (a final reconciliation catches deletions since 03:00).
    assert_clean(&app.full_pass().await);
    app.assert_equal_to_truth().await;

    // Notifications: every task created after the backfill, once; none for older tasks.
    assert_eq!(hook.bad_signatures.load(Ordering::SeqCst), 0);
    let got = hook.got.lock().unwrap().clone();
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for n in &got {
        by_id.insert(n["id"].as_str().unwrap().to_string(), n.clone());
    }
    let created: BTreeSet<String> = by_id
        .values()
        .filter(|n| n["kind"] == "task.created")
        .map(|n| n["record_id"].as_str().unwrap().to_string())
        .collect();
    let tasks_now: BTreeSet<String> = app
        .truth(tasks)
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let new_tasks: BTreeSet<String> = tasks_now.difference(&tasks_at_backfill).cloned().collect();
    assert!(!new_tasks.is_empty());
    assert!(
        created.is_superset(&new_tasks),
        "missed: {:?}",
        new_tasks.difference(&created).collect::<Vec<_>>()
    );
    assert!(
        created.is_disjoint(&tasks_at_backfill),
        "no 'new task' for tasks the backfill found"
    );
    // Every open task and event due within 14 days of the end (the largest lead time; the firm's
    // zone is UTC here) was announced at its lead time: sent, or recorded as suppressed by the
    // backfill (which sends nothing).
    let end_day = app.sim.now().date_naive();
    let outbox_ids: Vec<String> = strings(&engine2.store, "SELECT id FROM outbox").await;
    let mut announced = 0;
    for (name, due_field, source) in [
        ("tasks", "due_date", "task"),
        ("events", "start_date_time", "event"),
    ] {
        let res = ppsync::resource::find(name).unwrap();
        for rec in app.truth(res) {
            if rec["status"] == "Completed" {
                continue;
            }
            let Some(due) = rec[due_field].as_str().and_then(parse_api_time) else {
                continue;
            };
            let left = (due.date_naive() - end_day).num_days();
            if !(0..=14).contains(&left) {
                continue;
            }
            let prefix = format!(
                "deadline:{source}:{}:{}:",
                rec["id"].as_str().unwrap(),
                due.date_naive()
            );
            assert!(
                outbox_ids.iter().any(|id| id.starts_with(&prefix)),
                "{prefix} was never announced"
            );
            announced += usize::from(by_id.keys().any(|id| id.starts_with(&prefix)));
        }
    }
    assert!(announced > 0);
    for n in by_id.values().filter(|n| n["kind"] == "deadline") {
        let (left, lead) = (
            n["days_left"].as_i64().unwrap(),
            n["lead_days"].as_i64().unwrap(),
        );
        assert!(
            [14, 7, 1, 0].contains(&lead) && (0..=lead).contains(&left),
            "{n}"
        );
        let at = parse_api_time(n["detected_at"].as_str().unwrap()).unwrap();
        assert!(
            n["date"].as_str().unwrap() >= at.date_naive().to_string().as_str(),
            "{n}"
        );
        assert!(n["summary"].as_str().is_some_and(|s| !s.is_empty()), "{n}");
    }
    let pending: i64 = count(
        &engine2.store,
        "SELECT COUNT(*) FROM outbox WHERE status = 'pending'",
    )
    .await;
    assert_eq!(
        pending, 0,
        "the outage lost nothing: everything was delivered after it"
    );
    assert!(got.len() >= by_id.len());
}

#[tokio::test]
async fn sigterm_stops_the_daemon_at_a_page_boundary_and_the_next_start_resumes() {
    let app = app(0.02, "[sync]\npage_size = 50\n[http]\nlisten = \"off\"").await;
    let config = app.config_path.clone();
    let (code, stderr, elapsed) = tokio::task::spawn_blocking(move || {
        let child = ppsync_cmd(&config)
            .arg("run")
            .env("PPSYNC_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
        let t = std::time::Instant::now();
        sigterm(&child);
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            t.elapsed(),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("shutdown requested"), "{stderr}");
    assert!(
        elapsed < std::time::Duration::from_secs(10),
        "stopped promptly: {elapsed:?}"
    );
    assert!(!stderr.contains("panicked"));
    // Whatever was committed is whole; the next pass resumes and completes.
    let (code, out, err) = app.cli(&["sync"]).await;
    assert_eq!(code, 0, "{out}{err}");
    app.assert_equal_to_truth().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_the_backlog_is_worked_off_in_one_cycle_most_important_first() {
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.01,
        ..Default::default()
    })
    .await
    .unwrap();
    let app = app_on_sim_clock(sim, "").await;
    assert_clean(&app.pass().await);
    // Three days down: every resource is overdue, many ticks missed.
    app.advance(std::time::Duration::from_secs(3 * 86400));
    let cfg = ppsync::config::Config::load(Some(&app.config_path)).unwrap();
    let mut dcfg = cfg.daemon();
    dcfg.reconcile_at = None;
    dcfg.stop_at = Some(app.sim.now() + chrono::Duration::minutes(20));
    let daemon = Daemon {
        engine: app.engine.clone(),
        cfg: dcfg,
        shutdown: Default::default(),
        observer: None,
    };
    let summary = daemon.run().await.unwrap();
    let first = &summary.cycles[0];
    assert_eq!(
        first.outcomes.len(),
        RESOURCES.len(),
        "the missed ticks coalesce into one cycle"
    );
    let order: Vec<_> = first.outcomes.iter().map(|o| o.resource).collect();
    assert_eq!(
        &order[..4],
        &["matters", "accounts", "contacts", "tasks"],
        "high tier first"
    );
    assert!(first.outcomes.iter().all(|o| o.error.is_none()));
    assert_eq!(summary.cycles.len(), 2, "then the next 15-minute tick");
    assert!(app.sim.max_requests_in_any_window() <= 300);
    assert_clean(&app.full_pass().await);
    app.assert_equal_to_truth().await;
}

#[tokio::test]
async fn a_long_retry_after_holds_the_daemon_until_then() {
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.01,
        ..Default::default()
    })
    .await
    .unwrap();
    let app = app_on_sim_clock(sim.clone(), "[sync]\nmax_retry_wait = \"1m\"").await;
    let cfg = ppsync::config::Config::load(Some(&app.config_path)).unwrap();
    assert_clean(&app.pass().await);
    // The next requests are answered 429, Retry-After 40 minutes: longer than a pass waits.
    sim.faults().add(ppsim::Fault::RateLimitStorm {
        count: 1,
        retry_after_secs: 40 * 60,
    });
    let start = sim.now();
    sim.clear_journal();
    let mut dcfg = cfg.daemon();
    dcfg.reconcile_at = None;
    dcfg.stop_at = Some(start + chrono::Duration::minutes(90));
    let daemon = Daemon {
        engine: app.engine.clone(),
        cfg: dcfg,
        shutdown: Default::default(),
        observer: None,
    };
    let summary = daemon.run().await.unwrap();
    let journal = sim.journal();
    let throttled = journal.iter().position(|e| e.status == 429).expect("a 429");
    let at = journal[throttled].at;
    // Nothing was asked of the API between the 429 and the time it named.
    let next = journal[throttled + 1..]
        .iter()
        .find(|e| e.path.starts_with("/api/"))
        .expect("the daemon came back");
    assert!(
        next.at - at >= chrono::Duration::minutes(40),
        "back after {} instead of 40 minutes",
        next.at - at
    );
    assert!(summary.cycles.iter().any(|c| c.not_before.is_some()));
    // Every cycle after the wait synced (a pass now finds the mirror a pass behind at most).
    assert!(summary.cycles.last().unwrap().exit_code() == 0);
    assert_clean(&app.pass().await);
    app.assert_equal_to_truth().await;
}
