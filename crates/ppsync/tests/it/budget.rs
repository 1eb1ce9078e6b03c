//! One budget per firm, whatever the processes: a CLI pass beside a running daemon stays under
//! the limit at the simulator (both count in the firm's request ledger), and a second daemon on
//! the same mirror refuses to start.

use std::process::Stdio;
use std::time::{Duration, Instant};

use ppsync::resource::RESOURCES;

use crate::support::*;

/// `ppsync run` on the app's config, its stderr to a file; killed if the test fails first.
fn start_daemon(app: &TestApp, log: &std::path::Path) -> Running {
    Running(Some(
        ppsync_cmd(&app.config_path)
            .arg("run")
            .env("PPSYNC_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("ppsync run starts"),
    ))
}

/// SIGTERM, then the exit code (within 30 s).
fn stop_daemon(mut daemon: Running) -> Option<i32> {
    let child = daemon.0.as_mut().expect("a running daemon");
    sigterm(child);
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the daemon stops");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Only these resources, in pages of 20: a backfill of a few dozen requests.
fn few_resources(extra: &str) -> String {
    let mut cfg = String::from(extra);
    for r in RESOURCES {
        if !["matters", "accounts", "tasks"].contains(&r.name) {
            cfg.push_str(&format!("[resources.{}]\nenabled = false\n", r.name));
        }
    }
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_pass_beside_a_running_daemon_shares_the_firms_budget() {
    // 12 requests per 4 s at the simulator, and the same budget on our side: the daemon's
    // backfill and a complete CLI pass beside it need about four times that, so each alone would
    // fill the window, and together (each counting only its own) they would draw 429s. Pages of
    // 10 make the CLI's pass alone need more than three windows: the shared ledger may give
    // either process most of the slots, and the count below must not depend on which.
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.01,
        budget_limit: 12,
        budget_window: Duration::from_secs(4),
        ..Default::default()
    })
    .await
    .unwrap();
    let app = app_with(
        sim,
        &few_resources(
            "[budget]\nrequests = 12\nwindow = \"4s\"\n[sync]\npage_size = 10\n[http]\nlisten = \"off\"\n[notify]\n",
        ),
    )
    .await;
    app.sim.clear_journal();
    let log = app.config_path.parent().unwrap().join("daemon.log");
    let daemon = start_daemon(&app, &log);
    // The daemon is under way (its first requests are in) before the CLI starts.
    let t = Instant::now();
    while app.sim.journal().len() < 3 {
        assert!(t.elapsed() < Duration::from_secs(20), "the daemon starts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, out, err) = app.cli(&["sync", "--full"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let during_cli = app.sim.journal().len();
    // The daemon's backfill completes too (every enabled resource has a cursor).
    let t = Instant::now();
    loop {
        let (_, out, _) = app.cli(&["status", "--json"]).await;
        let status: serde_json::Value = serde_json::from_str(&out).unwrap();
        let synced = status["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| ["matters", "accounts", "tasks"].contains(&r["name"].as_str().unwrap()))
            .all(|r| r["cursor"].is_string() && r["listing_in_flight"] == false);
        if synced {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the daemon's backfill ends"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let code = tokio::task::spawn_blocking(move || stop_daemon(daemon))
        .await
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "{text}");
    let journal = app.sim.journal();
    assert!(
        during_cli > 3 * 12,
        "both processes sent enough to need waiting: {during_cli}"
    );
    assert_eq!(
        journal.iter().filter(|e| e.status == 429).count(),
        0,
        "never throttled: the two processes shared one budget"
    );
    assert!(app.sim.max_requests_in_any_window() <= 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_mirror_refuses_to_start() {
    let app = app(0.005, "[http]\nlisten = \"off\"\n").await;
    let dir = app.config_path.parent().unwrap().to_path_buf();
    let first = start_daemon(&app, &dir.join("first.log"));
    // The first holds the mirror once it logs that it started.
    let t = Instant::now();
    while !std::fs::read_to_string(dir.join("first.log"))
        .unwrap_or_default()
        .contains("daemon started")
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the first daemon starts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, out, err) = app.cli(&["run"]).await;
    assert_eq!(code, 2, "{out}{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        err.contains("another `ppsync run` already serves this mirror"),
        "{err}"
    );
    // A one-off pass beside it is fine.
    let (code, out, err) = app.cli(&["sync"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let code = tokio::task::spawn_blocking(move || stop_daemon(first))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    // With the first gone, a daemon starts again (the lock went with its process).
    let second = start_daemon(&app, &dir.join("second.log"));
    let t = Instant::now();
    while !std::fs::read_to_string(dir.join("second.log"))
        .unwrap_or_default()
        .contains("daemon started")
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the second daemon starts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let code = tokio::task::spawn_blocking(move || stop_daemon(second))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}
