//! Notification delivery: beside the cycles, never holding them up; a bad row set aside as dead
//! without holding the rows behind it; a down sink costing a few tries, counted against no row;
//! Standard Webhooks headers that a receiver can verify and replays it can refuse; a command with
//! a timeout, a cleared environment and its payload on one line.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::Mac as _;
use ppsync::daemon::Daemon;
use ppsync::notify::Dispatcher;
use ppsync::store::{Notification, Store};
use serde_json::{Value, json};

use crate::support::*;

/// A receiver's check, written from the Standard Webhooks spec (not ppsync's code): the `v1`
/// signature over `{webhook-id}.{webhook-timestamp}.{body}` with the key the secret stands for
/// (`whsec_<base64>` decoded, any other secret as its bytes), and a timestamp within five minutes
/// of the receiver's clock `now` (unix seconds).
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(format!("no {name}"))
    };
    let id = header("webhook-id")?;
    let timestamp: i64 = header("webhook-timestamp")?
        .parse()
        .map_err(|_| "webhook-timestamp is not a number".to_string())?;
    if (now - timestamp).abs() > 5 * 60 {
        return Err(format!("timestamp {timestamp} is {}s off", now - timestamp));
    }
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| e.to_string())?,
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let signatures = header("webhook-signature")?;
    if signatures
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
    {
        Ok(())
    } else {
        Err("no valid v1 signature".into())
    }
}

fn notification(id: &str) -> Notification {
    Notification {
        id: id.to_string(),
        kind: "task.created".into(),
        resource: "tasks".into(),
        record_id: id.to_string(),
        payload: json!({"id": id, "kind": "task.created", "resource": "tasks", "record_id": id}),
        suppressed: false,
    }
}

/// Pending outbox rows, as a page's transaction writes them, due `now`.
async fn enqueue(store: &Store, ids: &[&str], now: DateTime<Utc>) {
    let items: Vec<Notification> = ids.iter().map(|id| notification(id)).collect();
    let mut tx = store.begin().await.unwrap();
    tx.enqueue(&items, now).await.unwrap();
    tx.commit().await.unwrap();
}

/// (status, attempts) of an outbox row.
async fn row(store: &Store, id: &str) -> (String, i64) {
    let status = strings(
        store,
        &format!("SELECT status FROM outbox WHERE id = '{id}'"),
    )
    .await;
    let attempts = count(
        store,
        &format!("SELECT attempts FROM outbox WHERE id = '{id}'"),
    )
    .await;
    (status[0].clone(), attempts)
}

fn config(app: &TestApp) -> ppsync::config::Config {
    ppsync::config::Config::load(Some(&app.config_path)).unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Whether a process runs no more (gone, or a zombie not yet reaped).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_gone(pid: &str) {
    let t = Instant::now();
    while !gone(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "process {pid} survived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_row_that_always_fails_goes_dead_without_holding_the_rows_behind_it_and_retry_brings_it_back()
 {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // The command refuses the poison row while `broken` exists, and takes the others. `read`
    // fails without the payload's final newline.
    let cmd = format!(
        "read -r line || exit 9; case \"$line\" in *poison*) [ -e '{d}/broken' ] && {{ echo 'rejected it' >&2; exit 1; }};; esac; printf '%s\\n' \"$line\" >> '{d}/got'"
    );
    let app = app(
        0.005,
        &format!("[notify]\ncommand = {cmd:?}\nmax_attempts = 3\n[http]\nlisten = \"off\""),
    )
    .await;
    std::fs::write(dir.path().join("broken"), "").unwrap();
    let store = &app.engine.store;
    let t0 = Utc::now();
    // The poison row is the oldest (ids break the tie): it is tried first every round.
    enqueue(store, &["a-poison", "b-1", "c-2", "d-3"], t0).await;
    let dispatcher = Dispatcher::new(config(&app).notify).unwrap();
    let got = dir.path().join("got");

    let r = dispatcher.deliver_due(store, t0).await.unwrap();
    assert_eq!((r.delivered, r.failed, r.dead), (3, 1, 0), "{r:?}");
    let ids: Vec<String> = lines(&got)
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["b-1", "c-2", "d-3"], "the rows behind it went on");
    assert_eq!(row(store, "a-poison").await, ("pending".into(), 1));
    // It waits out its backoff (30 s after the first failure, then 60 s).
    let r = dispatcher.deliver_due(store, t0).await.unwrap();
    assert_eq!((r.delivered, r.failed), (0, 0));
    let t1 = t0 + chrono::Duration::seconds(30);
    let r = dispatcher.deliver_due(store, t1).await.unwrap();
    assert_eq!((r.failed, r.dead), (1, 0));
    assert_eq!(row(store, "a-poison").await, ("pending".into(), 2));
    let t2 = t1 + chrono::Duration::seconds(60);
    let r = dispatcher.deliver_due(store, t2).await.unwrap();
    assert_eq!((r.failed, r.dead), (1, 1), "the third failure: dead");
    assert_eq!(row(store, "a-poison").await, ("dead".into(), 3));
    let r = dispatcher
        .deliver_due(store, t2 + chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(r.failed, 0, "a dead row is not tried again");

    // Shown by `ppsync status`, with why.
    let (code, out, err) = app.cli(&["status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("notifications: 0 pending, 1 dead"), "{out}");
    assert!(
        out.contains(
            "DEAD a-poison (3 tries): notify command exited with exit status: 1: rejected it"
        ),
        "{out}"
    );
    // Unknown ids and rows that are not dead are refused in one line, changing nothing.
    for (args, want) in [
        (
            vec!["notify", "retry", "a-poison", "nosuch"],
            "no notification \"nosuch\"",
        ),
        (
            vec!["notify", "retry", "b-1"],
            "\"b-1\" is delivered, not dead",
        ),
        (vec!["notify", "retry"], "--all"),
        (vec!["notify", "retry", "--all", "a-poison"], "not both"),
    ] {
        let (code, out, err) = app.cli(&args).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert_eq!(row(store, "a-poison").await, ("dead".into(), 3));

    // The receiving end is fixed; the row is retried, with its full number of tries.
    std::fs::remove_file(dir.path().join("broken")).unwrap();
    let (code, out, err) = app.cli(&["notify", "retry", "a-poison"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 notification back in the queue"), "{out}");
    assert_eq!(row(store, "a-poison").await, ("pending".into(), 0));
    let r = dispatcher.deliver_due(store, Utc::now()).await.unwrap();
    assert_eq!(r.delivered, 1);
    assert_eq!(row(store, "a-poison").await, ("delivered".into(), 1));
    assert!(lines(&got).iter().any(|l| l.contains("a-poison")));
    let (_, out, _) = app.cli(&["notify", "retry", "--all"]).await;
    assert!(out.contains("no dead notifications"), "{out}");
}

#[tokio::test]
async fn a_sink_that_is_down_costs_a_few_tries_a_round_and_counts_against_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let cmd = format!("echo try >> '{d}/tries'; [ -e '{d}/down' ] && exit 1; cat > /dev/null");
    let app = app(
        0.005,
        &format!("[notify]\ncommand = {cmd:?}\nmax_attempts = 2\n[http]\nlisten = \"off\""),
    )
    .await;
    std::fs::write(dir.path().join("down"), "").unwrap();
    let store = &app.engine.store;
    let t0 = Utc::now();
    let ids: Vec<String> = (0..10).map(|i| format!("n-{i:02}")).collect();
    enqueue(
        store,
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        t0,
    )
    .await;
    let dispatcher = Dispatcher::new(config(&app).notify).unwrap();
    let tries = dir.path().join("tries");
    let attempts = || async {
        count(
            store,
            "SELECT CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM outbox",
        )
        .await
    };

    // Three different rows fail in a row: the round stops there, and nothing is counted.
    let r = dispatcher.deliver_due(store, t0).await.unwrap();
    assert!(r.sink_down, "{r:?}");
    assert_eq!(r.failed, 3);
    assert_eq!(lines(&tries).len(), 3);
    assert_eq!(attempts().await, 0);
    // Until its backoff (30 s) the sink is left alone, though seven rows are due.
    let r = dispatcher
        .deliver_due(store, t0 + chrono::Duration::seconds(29))
        .await
        .unwrap();
    assert_eq!((r.failed, r.delivered), (0, 0));
    assert_eq!(lines(&tries).len(), 3);
    // Then one row probes it; still down: the next wait is 60 s. Still nothing counted (with
    // max_attempts = 2, counting would have set rows aside by now).
    let t1 = t0 + chrono::Duration::seconds(30);
    let r = dispatcher.deliver_due(store, t1).await.unwrap();
    assert_eq!((r.failed, r.sink_down), (1, true));
    assert_eq!(lines(&tries).len(), 4);
    assert_eq!(attempts().await, 0);
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM outbox WHERE status = 'dead'").await,
        0
    );

    // Back: every row is delivered in one round, each on its first counted try.
    std::fs::remove_file(dir.path().join("down")).unwrap();
    let r = dispatcher
        .deliver_due(store, t1 + chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!((r.delivered, r.failed), (10, 0), "{r:?}");
    assert_eq!(attempts().await, 10);
}

/// A receiver that verifies each request the Standard Webhooks way on a clock of its own (wall
/// time plus `offset` seconds), treats `webhook-id` as an idempotency key, and keeps what it got.
#[derive(Clone, Default)]
struct Receiver {
    offset: Arc<AtomicI64>,
    accepted: Arc<Mutex<Vec<(HeaderMap, axum::body::Bytes)>>>,
    refused: Arc<Mutex<Vec<String>>>,
    duplicates: Arc<AtomicUsize>,
}

async fn receiver(secret: &'static str) -> (Receiver, String) {
    let r = Receiver::default();
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let r = state.clone();
            async move {
                let now = Utc::now().timestamp() + r.offset.load(Ordering::SeqCst);
                if let Err(e) = verify(secret, &headers, &body, now) {
                    r.refused.lock().unwrap().push(e);
                    return StatusCode::UNAUTHORIZED;
                }
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                let mut accepted = r.accepted.lock().unwrap();
                if accepted.iter().any(|(h, _)| h["webhook-id"] == id.as_str()) {
                    r.duplicates.fetch_add(1, Ordering::SeqCst);
                } else {
                    accepted.push((headers, body));
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

#[tokio::test]
async fn webhooks_carry_standard_webhooks_headers_and_a_replay_is_refused() {
    // A secret in the standard's form: decoded from base64 before use.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (hook, url) = receiver(SECRET).await;
    let app = app(
        0.005,
        &format!(
            "[notify]\nwebhook_url = {url:?}\nwebhook_secret = {SECRET:?}\n[http]\nlisten = \"off\""
        ),
    )
    .await;
    let store = &app.engine.store;
    enqueue(store, &["task.created:abc"], Utc::now()).await;
    let r = Dispatcher::new(config(&app).notify)
        .unwrap()
        .deliver_due(store, Utc::now())
        .await
        .unwrap();
    assert_eq!(r.delivered, 1, "{:?}", hook.refused.lock().unwrap());
    let (headers, body) = hook.accepted.lock().unwrap()[0].clone();
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(headers["webhook-id"], "task.created:abc");
    assert_eq!(headers["x-ppsync-id"], "task.created:abc");
    assert_eq!(payload["id"], "task.created:abc");
    let sent: i64 = headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((Utc::now().timestamp() - sent).abs() <= 5, "{sent}");
    assert!(
        headers.get("x-ppsync-signature").is_none(),
        "the unstamped signature is gone (it could be replayed forever)"
    );

    let replay = |headers: HeaderMap| {
        let url = url.clone();
        let body = body.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .headers(headers)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // A captured request replayed ten minutes later: its signed timestamp gives it away.
    hook.offset.store(600, Ordering::SeqCst);
    assert_eq!(replay(headers.clone()).await, 401);
    assert!(hook.refused.lock().unwrap()[0].contains("600s off"));
    // ... and a fresh timestamp does not fit the signature.
    let mut forged = headers.clone();
    forged.insert(
        "webhook-timestamp",
        (Utc::now().timestamp() + 600).to_string().parse().unwrap(),
    );
    assert_eq!(replay(forged).await, 401);
    assert!(hook.refused.lock().unwrap()[1].contains("no valid v1 signature"));
    // Within the tolerance a replay verifies, and the stable id makes it a known duplicate.
    hook.offset.store(0, Ordering::SeqCst);
    assert_eq!(replay(headers).await, 200);
    assert_eq!(hook.duplicates.load(Ordering::SeqCst), 1);
    assert_eq!(hook.accepted.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_command_delays_no_cycle_and_is_killed_when_the_daemon_stops() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // sh waits on a sleep of ten minutes, both in the command's process group; the timeout is
    // longer still, so only the daemon's stop ends it.
    let cmd = format!("cat > /dev/null; sleep 600 & echo $! > '{d}/pid'; wait");
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.01,
        ..Default::default()
    })
    .await
    .unwrap();
    let app = app_on_sim_clock(
        sim,
        &format!("[notify]\ncommand = {cmd:?}\ncommand_timeout = \"1h\"\n[http]\nlisten = \"off\""),
    )
    .await;
    assert_clean(&app.pass().await);
    enqueue(&app.engine.store, &["task.created:hang"], app.sim.now()).await;

    let pid_file = dir.path().join("pid");
    // When each cycle ended (simulated time), and whether the command was hanging then.
    type Seen = Vec<(DateTime<Utc>, bool)>;
    let cycles: Arc<Mutex<Seen>> = Default::default();
    let (seen, pid_path, sim) = (cycles.clone(), pid_file.clone(), app.sim.clone());
    let observer: ppsync::daemon::Observer = Arc::new(move |_| {
        let running = std::fs::read_to_string(&pid_path).is_ok_and(|p| !gone(&p));
        seen.lock().unwrap().push((sim.now(), running));
    });
    let mut dcfg = config(&app).daemon();
    dcfg.reconcile_at = None;
    let start = app.sim.now();
    dcfg.stop_at = Some(start + chrono::Duration::hours(2));
    let daemon = Daemon {
        engine: app.engine.clone(),
        cfg: dcfg,
        shutdown: Default::default(),
        observer: Some(observer),
    };
    let t = Instant::now();
    let summary = daemon.run().await.unwrap();
    let elapsed = t.elapsed();
    let cycles = cycles.lock().unwrap().clone();
    let hung = cycles.iter().filter(|(_, running)| *running).count();
    eprintln!(
        "{} cycles in {elapsed:?}, {hung} of them while the command hung",
        cycles.len()
    );
    // Every 15-minute tick of the two hours had its cycle, most of them while the command hung.
    let ticks: BTreeSet<i64> = cycles
        .iter()
        .map(|(at, _)| (*at - start).num_minutes() / 15)
        .collect();
    assert!(ticks.len() >= 8, "cycles at ticks {ticks:?}");
    assert_eq!(summary.cycles.len(), cycles.len());
    assert!(hung >= 6, "the command hung through the cycles: {cycles:?}");
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    // The stop killed it (and what it started); the notification is still to send, the try
    // not counted.
    wait_gone(&std::fs::read_to_string(&pid_file).unwrap()).await;
    assert_eq!(summary.delivered, 0);
    assert_eq!(
        row(&app.engine.store, "task.created:hang").await,
        ("pending".into(), 0)
    );
}

#[tokio::test]
async fn sigterm_ends_the_daemon_within_seconds_while_a_command_hangs_and_the_command_sees_no_secret()
 {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let cmd = format!(
        "cat > '{d}/payload'; env > '{d}/env'; sleep 600 & echo $! > '{d}/pid'; touch '{d}/started'; wait"
    );
    let app = app(
        0.005,
        &format!("[notify]\ncommand = {cmd:?}\n[http]\nlisten = \"off\""),
    )
    .await;
    enqueue(&app.engine.store, &["task.created:term"], Utc::now()).await;
    let secret = app.sim.client_secret();
    let config_path = app.config_path.clone();
    let started = dir.path().join("started");
    let (code, stderr, elapsed) = tokio::task::spawn_blocking(move || {
        let child = ppsync_cmd(&config_path)
            .arg("run")
            .env("PPSYNC_LOG", "info")
            // Secrets in ppsync's environment, as a deployment would set them.
            .env("PPSYNC_CLIENT_SECRET", &secret)
            .env(
                "PPSYNC_NOTIFY__WEBHOOK_SECRET",
                "whsec_c2VjcmV0LXNpZ25pbmcta2V5",
            )
            .env("UNRELATED_TOKEN", "not-for-the-command")
            .env("TZ", "Europe/Paris")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while !started.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the command never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let t = Instant::now();
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
    eprintln!("SIGTERM to exit: {elapsed:?}");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("shutdown requested"), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped within seconds: {elapsed:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains(&app.sim.client_secret()),
        "no secret in the logs"
    );
    wait_gone(&std::fs::read_to_string(dir.path().join("pid")).unwrap()).await;

    // The command's environment: what the allow-list names, nothing else.
    let env = std::fs::read_to_string(dir.path().join("env")).unwrap();
    let names: BTreeSet<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    assert!(names.contains("PATH") && names.contains("TZ"), "{names:?}");
    for leaked in [
        "PPSYNC_CLIENT_SECRET",
        "PPSYNC_NOTIFY__WEBHOOK_SECRET",
        "UNRELATED_TOKEN",
    ] {
        assert!(
            !names.contains(leaked),
            "{leaked} reached the command: {names:?}"
        );
    }
    assert!(!env.contains(&app.sim.client_secret()));
    // One line of JSON.
    let payload = std::fs::read_to_string(dir.path().join("payload")).unwrap();
    assert!(payload.ends_with('\n') && payload.trim_end().lines().count() == 1);
    let v: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["id"], "task.created:term");
    // Killed by the shutdown: still pending, the try not counted.
    assert_eq!(
        row(&app.engine.store, "task.created:term").await,
        ("pending".into(), 0)
    );
}
