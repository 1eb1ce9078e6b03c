//! What the API may answer beyond the notes: a `Date` far ahead, no answer at all, a
//! `Retry-After` longer than a pass waits, 429s without `Retry-After` from a server that allows
//! less than our budget.

use std::time::{Duration, Instant};

use ppsync::resource::RESOURCES;

use crate::support::*;

#[tokio::test]
async fn a_date_header_a_day_ahead_does_not_move_the_cursor_into_the_future() {
    // The engine's clock is the simulator's, so "ahead" is measured against the server's truth.
    let app = app_on_sim_clock(sim(0.01).await, "").await;
    assert_clean(&app.pass().await);
    app.advance(Duration::from_secs(15 * 60));
    // One response (a proxy, a bad node) says it is tomorrow.
    app.sim.faults().add(ppsim::Fault::DateOffset {
        count: 1,
        secs: 86_400,
    });
    assert_clean(&app.pass_of(&["matters"], false).await);
    let matters = ppsync::resource::find("matters").unwrap();
    let st = app.engine.store.state(matters).await.unwrap();
    let now = app.sim.now();
    assert!(
        st.cursor.unwrap() <= now,
        "cursor {:?} is not past the server's clock {now}",
        st.cursor
    );
    let facts = app.engine.api_facts().await.unwrap();
    let skew = facts.clock_skew_secs.expect("the skew is noted");
    assert!((86_000..=86_400).contains(&skew.value), "{skew:?}");
    // The next hour's edits are all caught by the next incremental pass (an incremental one:
    // the cursor was never in the future, so nothing needed repairing).
    app.advance(Duration::from_secs(3600));
    let report = app.pass_of(&["matters"], false).await;
    assert_clean(&report);
    assert_eq!(report.outcomes[0].mode.name(), "incremental");
    assert_eq!(app.mirror(matters).await, app.truth(matters));
    // `ppsync status` shows the skew.
    let (code, out, _) = app.cli(&["status"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("server clock: +86"), "{out}");
}

#[tokio::test]
async fn a_cursor_already_in_the_future_is_repaired_by_a_complete_listing() {
    let app = app_on_sim_clock(sim(0.01).await, "").await;
    assert_clean(&app.pass().await);
    // A cursor left a day ahead (by an older version, or a clock that jumped back).
    exec(
        &app.engine.store,
        &format!(
            "UPDATE sync_state SET cursor = '{}' WHERE resource = 'tasks'",
            ppsync::time::canonical(app.sim.now() + chrono::Duration::days(1))
        ),
    )
    .await;
    app.advance(Duration::from_secs(3600));
    let report = app.pass_of(&["tasks"], false).await;
    assert_clean(&report);
    assert_eq!(report.outcomes[0].mode.name(), "full");
    let tasks = ppsync::resource::find("tasks").unwrap();
    assert_eq!(app.mirror(tasks).await, app.truth(tasks));
    let st = app.engine.store.state(tasks).await.unwrap();
    assert!(st.cursor.unwrap() <= app.sim.now());
}

#[tokio::test]
async fn an_unreachable_api_ends_the_pass_fast_with_one_line() {
    let app = app(0.01, "").await;
    // The same mirror and credentials, the API's address now refusing connections.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let text = text.replace(&app.sim.url(), &format!("http://127.0.0.1:{port}"));
    std::fs::write(&app.config_path, text).unwrap();
    let started = Instant::now();
    let (code, _out, err) = app.cli(&["sync"]).await;
    let took = started.elapsed();
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].contains(&format!("cannot reach the API at http://127.0.0.1:{port}"))
            && lines[0].to_ascii_lowercase().contains("refused"),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "failed in {took:?}");
    // Nothing was written: every cursor is where it was.
    let (code, out, _) = app.cli(&["status", "--json"]).await;
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        status["resources"].as_array().unwrap().len(),
        RESOURCES.len()
    );
}

#[tokio::test]
async fn a_retry_after_longer_than_the_longest_wait_ends_the_pass_and_says_until_when() {
    let app = app(0.01, "[sync]\nmax_retry_wait = \"1m\"").await;
    assert_clean(&app.pass().await);
    app.sim.clear_journal();
    app.sim.faults().add(ppsim::Fault::RateLimitStorm {
        count: 50,
        retry_after_secs: 3600,
    });
    let report = app.pass().await;
    assert_eq!(report.exit_code(), 1, "{:?}", report.outcomes);
    let until = report.not_before.expect("the pass says when to come back");
    let wait = until - chrono::Utc::now();
    assert!(
        wait > chrono::Duration::minutes(55) && wait <= chrono::Duration::minutes(60),
        "{wait}"
    );
    assert_eq!(
        app.api_requests().len(),
        1,
        "one request answered 429, no hammering"
    );
    assert_eq!(
        report.outcomes.len(),
        RESOURCES.len(),
        "every resource named"
    );
    assert!(
        report.outcomes[1..].iter().all(|o| o
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not reached"))),
        "{:?}",
        report.outcomes
    );
}

#[tokio::test]
async fn a_server_allowing_less_than_the_budget_without_retry_after_is_not_hammered() {
    // The server allows 20 requests per 5 minutes and answers 429 with no Retry-After; our
    // budget says 300. On the simulator's clock, waits pass instantly.
    // No changes meanwhile: waiting moves the simulator's clock.
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.01,
        budget_limit: 20,
        rates: ppsim::ChangeRates::none(),
        ..Default::default()
    })
    .await
    .unwrap();
    sim.set_retry_after(false);
    let app = app_on_sim_clock(sim, "").await;
    assert_clean(&app.pass().await);
    app.assert_equal_to_truth().await;
    let journal = app.sim.journal();
    let throttled = journal.iter().filter(|e| e.status == 429).count();
    let served = journal.iter().filter(|e| e.status == 200).count();
    assert!(served > 40, "a backfill of {served} requests");
    assert!(throttled >= 1, "the server did throttle");
    assert!(
        throttled <= 6,
        "{throttled} 429s for {served} requests: the rate came down after the first few"
    );
    let rate = app
        .engine
        .api_facts()
        .await
        .unwrap()
        .rate_limit
        .expect("learned");
    assert!(rate.value <= 20, "{rate:?}");
    // A new process starts at the learned rate.
    let cfg = ppsync::config::Config::load(Some(&app.config_path)).unwrap();
    let again = ppsync::app::engine(
        &cfg,
        std::sync::Arc::new(ppsync::demo::SimClock(app.sim.clone())),
    )
    .await
    .unwrap();
    assert_eq!(again.client.budget().limit(), rate.value as usize);
}
