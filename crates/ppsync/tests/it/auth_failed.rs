//! A rejected grant is a state of its own (stored; shown by the status views and `/metrics`) and
//! one `ppsync.auth_failed` notification per episode, however many cycles fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ppsync::daemon::Daemon;
use serde_json::Value;

use crate::daemon::{SECRET, receiver};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_is_one_auth_failed_notification_per_episode_and_clears_on_import() {
    let (hook, url) = receiver().await;
    let sim = sim(0.01).await;
    let extra = format!("[notify]\nwebhook_url = {url:?}\nwebhook_secret = {SECRET:?}\n");
    let app = app_on_sim_clock(sim.clone(), &extra).await;
    let cfg = ppsync::config::Config::load(Some(&app.config_path)).unwrap();
    assert_clean(&app.pass().await);
    let store = &app.engine.store;
    assert!(store.auth_failure().await.unwrap().is_none());

    // The firm revokes ppsync's access: every token, the refresh token too, is refused.
    sim.faults().revoke_all();
    let failed = Arc::new(AtomicUsize::new(0));
    let f = failed.clone();
    let observer: ppsync::daemon::Observer = Arc::new(move |r| {
        if r.auth_failed {
            f.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut dcfg = cfg.daemon();
    dcfg.reconcile_at = None;
    dcfg.stop_at = Some(sim.now() + chrono::Duration::hours(2));
    let summary = Daemon {
        engine: app.engine.clone(),
        cfg: dcfg.clone(),
        shutdown: Default::default(),
        observer: Some(observer),
    }
    .run()
    .await
    .unwrap();
    let cycles = failed.load(Ordering::SeqCst);
    assert!(
        cycles >= 4,
        "the daemon kept cycling on the dead grant ({cycles} failed cycles of {})",
        summary.cycles.len()
    );
    // What the last cycle enqueued is delivered (the daemon stops right after its last cycle).
    let dispatcher = ppsync::notify::Dispatcher::new(cfg.notify.clone()).unwrap();
    dispatcher.deliver_due(store, sim.now()).await.unwrap();
    let episode = store
        .auth_failure()
        .await
        .unwrap()
        .expect("auth_failed stored");
    let sent = |kind: &str| -> Vec<Value> {
        hook.got
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["kind"] == kind)
            .cloned()
            .collect()
    };
    let got = sent("ppsync.auth_failed");
    assert_eq!(got.len(), 1, "one notification for the episode: {got:?}");
    assert_eq!(
        got[0]["id"],
        format!("auth_failed:{}", ppsync::time::canonical(episode.since))
    );
    assert!(
        got[0]["error"]
            .as_str()
            .unwrap()
            .contains("ppsync auth login")
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM outbox WHERE kind = 'ppsync.auth_failed'"
        )
        .await,
        1
    );
    assert!(episode.last_at > episode.since, "later failures noted");

    // Every status view shows it.
    let snap = ppsync::status::Snapshot::read(
        store,
        &dcfg.schedule,
        sim.now(),
        cfg.notify.window,
        &cfg.sync.deadlines,
        None,
    )
    .await
    .unwrap();
    assert!(!snap.healthy);
    assert_eq!(snap.auth_failed.as_ref().unwrap().since, episode.since);
    let mut m = ppsync::status::metrics::Metrics::default();
    m.add(None, &snap);
    assert!(m.encode().contains("\nppsync_auth_failed 1\n"));
    assert!(ppsync::status::page::render(&snap).contains("auth_failed since"));
    let (code, out, _) = app.cli(&["status", "--json"]).await;
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert!(json["auth_failed"]["since"].is_string(), "{out}");

    // New credentials end the episode; the next pass syncs.
    let (code, _, err) = app
        .cli(&["auth", "import", "--refresh-token", &sim.grant()])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(store.auth_failure().await.unwrap().is_none());
    let engine = ppsync::app::engine(&cfg, Arc::new(ppsync::demo::SimClock(sim.clone())))
        .await
        .unwrap();
    assert_clean(
        &engine
            .pass(
                &dcfg.schedule.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
                false,
                "cli",
            )
            .await,
    );

    // A later revocation is a new episode: one more notification, with its own id.
    sim.advance(std::time::Duration::from_secs(3600));
    sim.faults().revoke_all();
    for _ in 0..3 {
        let r = engine
            .pass(&[ppsync::resource::find("matters").unwrap()], false, "cli")
            .await;
        assert!(r.auth_failed);
    }
    dispatcher.deliver_due(store, sim.now()).await.unwrap();
    let got = sent("ppsync.auth_failed");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_ne!(got[0]["id"], got[1]["id"]);
}
