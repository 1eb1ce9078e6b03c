//! Detail-only fields: what only `GET /{resource}/{id}` returns (an email's `body_html`, a
//! payment's `refundedAmount`) reaches the mirror for backfilled and changed records, through a
//! durable queue worked off on background budget; a list that turns out to hold every field stops
//! the by-id reads; scheduled work is never delayed by them.

use std::time::Duration;

use ppsync::resource::{Resource, find};
use serde_json::Value;

use crate::support::*;

const DETAILS_ON: &str =
    "[resources.emails]\ndetails = true\n[resources.payments]\ndetails = true\n";

fn res(name: &str) -> &'static Resource {
    find(name).unwrap()
}

/// By-id reads in the request journal since `from`: `(path, id)`.
fn by_id_reads(app: &TestApp, from: usize) -> Vec<String> {
    app.api_requests()[from..]
        .iter()
        .filter(|e| {
            let p = e.path.trim_start_matches("/api/v2/");
            (p.starts_with("emails/") || p.starts_with("payments/")) && e.query.is_empty()
        })
        .map(|e| e.path.clone())
        .collect()
}

async fn queued(app: &TestApp) -> i64 {
    app.engine
        .store
        .detail_backlog()
        .await
        .unwrap()
        .values()
        .map(|b| b.queued)
        .sum()
}

#[tokio::test]
async fn detail_fields_reach_the_mirror_for_backfilled_and_changed_records() {
    // Our budget (a real-time window here) above the background share of what this test sends;
    // the simulator still enforces its own 300 per 5 simulated minutes.
    let app = app(0.01, &format!("{DETAILS_ON}[budget]\nrequests = 1000\n")).await;
    let (emails, payments) = (res("emails"), res("payments"));
    let n = app.sim.truth("emails").len() + app.sim.truth("payments").len();
    assert!(n > 50, "{n}");
    assert_clean(&app.pass().await);
    // The backfill queued every email and payment, in the transactions that wrote them; the
    // operator sees the backlog in `ppsync status`, /status, /metrics.
    assert_eq!(queued(&app).await, n as i64);
    let n_emails = app.sim.truth("emails").len() as i64;
    let (code, out, err) = app.cli(&["status", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["details"]["emails"]["queued"], n_emails);
    let (_, text, _) = app.cli(&["status"]).await;
    assert!(
        text.contains("by-id reads queued") && text.contains(&format!("emails {n_emails}")),
        "{text}"
    );
    let ep = crate::status_http::Endpoint::start(&app, None).await;
    let (_, _, metrics) = ep.get("/metrics").await;
    let m = crate::status_http::parse_prometheus(&metrics).unwrap();
    assert_eq!(
        m["ppsync_detail_backlog{resource=\"emails\"}"],
        n_emails as f64
    );
    let (_, _, status) = ep.get("/status").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["details"]["emails"]["queued"], n_emails);
    ep.stop().await;
    // The list rendering has no body_html: the mirror lacks it until the by-id read.
    assert!(
        app.mirror(emails)
            .await
            .iter()
            .all(|e| e.get("body_html").is_none())
    );
    let before = app.api_requests().len();
    let report = app.fetch_details().await;
    assert_eq!(report.stored, n as u64, "{report:?}");
    assert_eq!(report.left, 0);
    // One request per record, nothing else.
    let reads = by_id_reads(&app, before);
    assert_eq!(reads.len(), n);
    assert_eq!(app.api_requests().len() - before, n);
    for r in [emails, payments] {
        assert!(
            app.mirror(r).await == app.truth(r),
            "{} holds the by-id rendering",
            r.name
        );
    }
    let m = app.mirror(emails).await;
    assert!(m.iter().all(|e| e.get("body_html").is_some()));
    assert!(
        app.mirror(payments)
            .await
            .iter()
            .all(|p| p.get("refundedAmount").is_some())
    );

    // Changed records (and only those) are read again: two edits of ours, and whatever the
    // simulator's own changes touched in the hour (a record whose list rendering changed).
    let list_before = |app: &TestApp| -> std::collections::BTreeMap<String, Value> {
        ["emails", "payments"]
            .iter()
            .flat_map(|r| app.sim.truth(r))
            .map(|v| (v["id"].as_str().unwrap().to_string(), v))
            .collect()
    };
    let before_edit = list_before(&app);
    let e = app.sim.truth("emails")[3]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let p = app.sim.truth("payments")[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.sim
        .edit(
            "emails",
            &e,
            serde_json::json!({"subject": "Re: 1031 exchange", "body_html": "<p>new</p>"}),
        )
        .unwrap();
    app.sim
        .edit("payments", &p, serde_json::json!({"refundedAmount": 12.5}))
        .unwrap();
    app.advance(Duration::from_secs(3600));
    let mut changed: Vec<String> = list_before(&app)
        .into_iter()
        .filter(|(id, v)| before_edit.get(id) != Some(v))
        .map(|(id, _)| id)
        .collect();
    changed.sort();
    assert!(changed.contains(&e) && changed.contains(&p));
    let report = app.pass().await;
    assert_clean(&report);
    let mut queue: Vec<String> = app
        .engine
        .store
        .details_due(&["emails", "payments"], app.engine.clock.now(), 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    queue.sort();
    assert_eq!(
        queue, changed,
        "exactly the new and changed records are queued"
    );
    let before = app.api_requests().len();
    let d = app.fetch_details().await;
    assert_eq!(d.stored as usize, changed.len(), "{d:?}");
    assert_eq!(d.requests as usize, changed.len(), "{d:?}");
    let mut reads: Vec<String> = by_id_reads(&app, before)
        .into_iter()
        .map(|p| p.rsplit('/').next().unwrap().to_string())
        .collect();
    reads.sort();
    assert_eq!(reads, changed);
    // The body the edit gave is in the mirror (the list never carries it).
    let stored = app
        .mirror(emails)
        .await
        .into_iter()
        .find(|r| r["id"] == Value::String(e.clone()))
        .unwrap();
    assert_eq!(stored["body_html"], "<p>new</p>");

    // A complete listing re-reads every record unchanged: the by-id renderings stay, nothing
    // is queued again.
    assert_clean(&app.full_pass().await);
    assert_eq!(queued(&app).await, 0);
    for r in [emails, payments] {
        assert!(app.mirror(r).await == app.truth(r), "{}", r.name);
    }
    app.assert_equal_to_truth().await;
}

#[tokio::test]
async fn a_record_gone_before_its_read_leaves_the_queue_and_a_failing_one_waits() {
    let app = app(0.01, DETAILS_ON).await;
    assert_clean(&app.pass().await);
    let truth = app.sim.truth("emails");
    let gone = truth[0]["id"].as_str().unwrap().to_string();
    app.sim.delete("emails", &gone).unwrap();
    let d = app.fetch_details().await;
    assert_eq!(d.gone, 1, "{d:?}");
    assert_eq!(d.left, 0);
    // Deletion is the reconciliation's to conclude, confirmed by id: it is, now.
    assert_clean(&app.full_pass().await);
    app.pending_deletes.lock().unwrap().clear();
    app.assert_equal_to_truth().await;
}

#[tokio::test]
async fn a_list_that_holds_every_field_stops_the_by_id_reads() {
    let sim = sim(0.01).await;
    // The other answer to the unknown: the live list carries body_html and refundedAmount.
    sim.set_list_includes_single_only("emails", true).unwrap();
    sim.set_list_includes_single_only("payments", true).unwrap();
    let app = app_with(sim, DETAILS_ON).await;
    assert_clean(&app.pass().await);
    let before = app.api_requests().len();
    let d = app.fetch_details().await;
    let proof = ppsync::sync::dialect::DETAIL_PROOF as u64;
    // DETAIL_PROOF reads per resource prove the by-id read adds nothing; the rest is dropped.
    assert_eq!(d.requests, 2 * proof, "{d:?}");
    assert_eq!(app.api_requests().len() - before, 2 * proof as usize);
    assert_eq!(d.left, 0);
    for r in [res("emails"), res("payments")] {
        let facts = app.engine.dialect(r).await.unwrap();
        assert!(!facts.details_needed(app.engine.clock.now()), "{}", r.name);
        assert!(app.mirror(r).await == app.truth(r), "{}", r.name);
    }
    // Later changes are not queued at all.
    let e = app.sim.truth("emails")[2]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.sim
        .edit("emails", &e, serde_json::json!({"subject": "changed"}))
        .unwrap();
    app.advance(Duration::from_secs(3600));
    assert_clean(&app.pass().await);
    assert_eq!(queued(&app).await, 0);
    app.assert_equal_to_truth().await;
}

/// The daemon works a large backlog off between cycles, on background budget, without sending
/// a request that would wait into a cycle's time: every 15-minute cycle starts on its tick.
/// A small budget (20 requests per 7 minutes: a window that does not divide the 15-minute grid,
/// so budget waits end between ticks) makes the backlog span hours of simulated time.
#[tokio::test]
async fn a_detail_backlog_never_delays_the_fifteen_minute_tier() {
    let sim = sim(0.01).await;
    let app = app_on_sim_clock(
        sim,
        &format!("{DETAILS_ON}[budget]\nrequests = 20\nwindow = \"7m\"\n[schedule]\nreconcile_at = \"off\"\n"),
    )
    .await;
    let backlog = app.sim.truth("emails").len() + app.sim.truth("payments").len();
    let start = app.engine.clock.now();
    let mut dcfg = ppsync::config::Config::load(Some(&app.config_path))
        .unwrap()
        .daemon();
    dcfg.stop_at = Some(start + chrono::Duration::hours(12));
    let daemon = ppsync::daemon::Daemon {
        engine: app.engine.clone(),
        cfg: dcfg,
        shutdown: Default::default(),
        observer: None,
    };
    let summary = daemon.run().await.unwrap();
    // The backlog, and what the simulator's changes brought meanwhile, was read.
    assert!(summary.details as usize >= backlog, "{summary:?}");
    // Each scheduled cycle after the first started within seconds of its tick (every 15
    // minutes, on the quarter hour) — the by-id reads yield before a request would wait past it.
    let sql = match app.engine.store.backend() {
        ppsync::store::Backend::Sqlite => {
            "SELECT trigger || '|' || started_at FROM sync_cycles ORDER BY id"
        }
        ppsync::store::Backend::Postgres => {
            "SELECT trigger || '|' || to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') \
             FROM sync_cycles ORDER BY id"
        }
    };
    let cycles = strings(&app.engine.store, sql).await;
    let mut late = Vec::new();
    for c in cycles.iter().skip(1) {
        let (trigger, at) = c.split_once('|').unwrap();
        if trigger != "scheduled" {
            continue;
        }
        let at = ppsync::time::parse_api_time(at).unwrap();
        let secs = at.timestamp() % 900;
        if secs > 5 {
            late.push((c.clone(), secs));
        }
    }
    assert!(late.is_empty(), "cycles started late: {late:?}");
    assert!(cycles.len() >= 40, "{} cycles", cycles.len());
    // The backlog took hours of budget, not minutes: it really was in the background.
    assert!(summary.detail_requests as usize >= backlog);
    // What changed since the last cycles, then everything equal (by-id renderings included);
    // the budget's waits move this clock, so the simulator stops changing first.
    // (A complete listing: the simulator's deletions meanwhile are marked too.)
    app.sim.pause_changes(true);
    assert_clean(&app.full_pass().await);
    app.assert_equal_to_truth().await;
}

/// Killed (SIGKILL) at random instants while `ppsync sync` works the queue off, then restarted:
/// every queued record is read and stored, each read at most once more than once per kill (the
/// read in flight when it landed), and the mirror ends equal to the by-id truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_queue_then_restarted_reads_every_record() {
    use crate::kill::{Ended, Rng, sync_killed_after};
    let _alone = KILL_TESTS.lock().await;
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.1,
        budget_limit: 0,
        ..Default::default()
    })
    .await
    .expect("sim spawns");
    // Budgets lifted on both sides: a dozen restarts within minutes (the budget has its own tests).
    let app = app_with(sim, &format!("{DETAILS_ON}[budget]\nrequests = 1000000\n")).await;
    let (code, out, err) = app.cli(&["sync", "--no-details"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let queued_at_start: std::collections::BTreeSet<String> = app
        .engine
        .store
        .details_due(&["emails", "payments"], app.engine.clock.now(), 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert!(queued_at_start.len() > 1000, "{}", queued_at_start.len());
    // Kills aimed past the pass (an incremental pass that finds nothing: how long it takes is
    // measured), into the reads.
    let t0 = std::time::Instant::now();
    let (code, out, err) = app.cli(&["sync", "--no-details"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let pass = t0.elapsed();
    let before = app.api_requests().len();
    let log = app.config_path.parent().unwrap().join("killed.log");
    let mut rng = Rng(0xDE7A_11ED);
    let mut range = Duration::from_millis(400);
    let (mut kills, mut mid_queue) = (0u32, 0u32);
    for _ in 0..20 {
        let delay = pass + rng.below(range);
        match sync_killed_after(&app.config_path, &log, &["sync"], delay, false).await {
            Ended::Killed => {
                kills += 1;
                let left = queued(&app).await;
                if left > 0 && (left as usize) < queued_at_start.len() {
                    mid_queue += 1;
                }
            }
            Ended::Finished(took) => range = range.min(took.saturating_sub(pass)),
            Ended::GrantLost => panic!("no refresh is due in this test"),
        }
        if queued(&app).await == 0 || mid_queue >= 4 {
            break;
        }
    }
    let (code, out, err) = app.cli(&["sync"]).await;
    assert_eq!(code, 0, "the restarted pass completes: {out}{err}");
    assert_eq!(queued(&app).await, 0);
    let reads = by_id_reads(&app, before);
    let read: std::collections::BTreeSet<String> = reads
        .iter()
        .map(|p| p.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(read, queued_at_start, "every queued record was read");
    assert!(
        reads.len() <= queued_at_start.len() + kills as usize,
        "{} reads for {} records and {kills} kills",
        reads.len(),
        queued_at_start.len()
    );
    eprintln!(
        "details kill test: {kills} kills ({mid_queue} mid-queue), {} reads for {} records",
        reads.len(),
        queued_at_start.len()
    );
    assert!(
        mid_queue >= 2,
        "kills landed mid-queue: {mid_queue} of {kills}"
    );
    app.assert_equal_to_truth().await;
}
