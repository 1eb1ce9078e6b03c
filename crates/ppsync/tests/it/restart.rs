//! Lead-time notifications exactly once each across a real daemon's SIGKILL and restart: the
//! `ppsync run` binary (the system clock), a webhook receiver that records what it accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Value, json};

use crate::support::*;

/// A receiver that accepts (and records) notifications until `accept` have been accepted while
/// `hold` is set; the next one is held unanswered (`held` set) until `release`, then refused.
#[derive(Clone, Default)]
struct Hook {
    accepted: Arc<Mutex<Vec<String>>>,
    hold_after: Arc<Mutex<Option<usize>>>,
    held: Arc<AtomicBool>,
    release: Arc<tokio::sync::Notify>,
    released: Arc<AtomicBool>,
}

async fn hook() -> (Hook, String) {
    let h = Hook::default();
    let state = h.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let h = state.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap();
                let id = v["id"].as_str().unwrap().to_string();
                let limit = *h.hold_after.lock().unwrap();
                if limit.is_some_and(|n| h.accepted.lock().unwrap().len() >= n) {
                    h.held.store(true, Ordering::SeqCst);
                    while !h.released.load(Ordering::SeqCst) {
                        h.release.notified().await;
                    }
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                h.accepted.lock().unwrap().push(id);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (h, url)
}

/// A daemon child process, killed (SIGKILL) when dropped: a failing test leaves none behind.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &std::path::Path, log: &std::path::Path) -> Daemon {
    Daemon(
        ppsync_cmd(config)
            .arg("run")
            .env("PPSYNC_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// Waits (polling, bounded) until `cond` holds; `what` names it in the failure.
async fn until<F: AsyncFnMut() -> bool>(what: &str, log: &std::path::Path, mut cond: F) {
    let t = Instant::now();
    while !cond().await {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; daemon log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_time_notifications_reach_the_receiver_exactly_once_across_a_sigkill_and_restart() {
    let (hook, url) = hook().await;
    let sim = sim(0.005).await;
    sim.pause_changes(true);
    let extra = format!(
        "[http]\nlisten = \"off\"\n[notify]\nwebhook_url = {url:?}\nwebhook_timeout = \"120s\"\n"
    );
    let app = app_with(sim.clone(), &extra).await;
    assert_clean(&app.pass().await);
    // Whatever the backfill found is suppressed; nothing is pending yet.
    let store = &app.engine.store;
    let pending = "SELECT COUNT(*) FROM outbox WHERE status = 'pending'";
    assert_eq!(count(store, pending).await, 0);

    // Six new tasks due in 1..=6 days (the firm's zone is UTC): each a `task.created` and the
    // lead-time notification of the smallest lead (14, 7, 1, 0 days) whose day has come.
    let today = Utc::now().date_naive();
    let mut want = BTreeSet::new();
    for d in 1..=6u64 {
        let date = today + chrono::Days::new(d);
        let t = sim
            .create(
                "tasks",
                json!({"subject": format!("due in {d} days"), "status": "NotCompleted",
                       "due_date": format!("{date}T00:00:00")}),
            )
            .unwrap();
        let id = t["id"].as_str().unwrap();
        let lead = if d == 1 { 1 } else { 7 };
        want.insert(format!("task.created:{id}"));
        want.insert(format!("deadline:task:{id}:{date}:{lead}d"));
    }
    let (code, out, err) = app.cli(&["sync", "--resource", "tasks"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(count(store, pending).await, want.len() as i64);

    // The first daemon: three accepted, the fourth held unanswered; then SIGKILL.
    *hook.hold_after.lock().unwrap() = Some(3);
    let dir = tempfile::tempdir().unwrap();
    let (log1, log2) = (dir.path().join("run1.log"), dir.path().join("run2.log"));
    let mut first = start(&app.config_path, &log1);
    let delivered = "SELECT COUNT(*) FROM outbox WHERE status = 'delivered'";
    until(
        "three deliveries and a fourth in flight",
        &log1,
        async || hook.held.load(Ordering::SeqCst) && count(store, delivered).await == 3,
    )
    .await;
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    hook.released.store(true, Ordering::SeqCst);
    hook.release.notify_waiters();
    *hook.hold_after.lock().unwrap() = None;
    assert_eq!(hook.accepted.lock().unwrap().len(), 3);

    // The second: its deadline scan derives the same deadlines again (same ids: nothing new),
    // and it delivers the rest, the one killed in flight included.
    let second = start(&app.config_path, &log2);
    until("every notification delivered", &log2, async || {
        count(store, delivered).await == want.len() as i64
    })
    .await;
    let accepted = hook.accepted.lock().unwrap().clone();
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &accepted {
        *times.entry(id).or_default() += 1;
    }
    assert!(
        times.values().all(|n| *n == 1),
        "each id accepted once: {times:?}"
    );
    let got: BTreeSet<String> = accepted.iter().cloned().collect();
    assert_eq!(got, want);
    let rows = strings(store, "SELECT id FROM outbox WHERE status <> 'suppressed'").await;
    assert_eq!(
        rows.into_iter().collect::<BTreeSet<_>>(),
        want,
        "no notification enqueued twice or under another id"
    );
    drop(second);
}
