use std::time::Duration;

use ppsync::resource::RESOURCES;

use crate::support::*;

#[tokio::test]
async fn backfill_then_incremental_equals_truth_at_the_request_floor() {
    let app = app(0.02, "").await;
    let report = app.pass().await;
    assert_clean(&report);
    let n = app.assert_equal_to_truth().await;
    assert!(n > 1000, "a real backfill: {n} records");
    assert!(
        report
            .outcomes
            .iter()
            .all(|o| o.mode.name() == "backfill" || o.mode.name() == "full")
    );

    let changes = app.advance(Duration::from_secs(15 * 60));
    assert!(changes.created.values().sum::<u32>() + changes.edited.values().sum::<u32>() > 0);
    app.sim.clear_journal();
    let report = app.pass().await;
    assert_clean(&report);
    app.assert_equal_to_truth().await;
    let journal = app.sim.journal();
    assert_eq!(
        journal.len(),
        RESOURCES.len(),
        "one request per resource: {journal:#?}"
    );
    assert!(journal.iter().all(|e| e.status == 200));
    assert!(report.records_changed() > 0);
    // Every incremental query carries an explicit offset, percent-encoded.
    let matters = journal
        .iter()
        .find(|e| e.path.ends_with("/matters"))
        .unwrap();
    assert!(
        matters.query.contains("updated_since=") && matters.query.contains("%2B00%3A00"),
        "{}",
        matters.query
    );
}

#[tokio::test]
async fn paging_by_keyset_and_skip_equals_truth() {
    // A small page forces every big resource through several pages: matters etc. by keyset on
    // updated_at, contacts (no timestamps) by $skip with overlap.
    let app = app(0.02, "[sync]\npage_size = 50").await;
    assert_clean(&app.pass().await);
    app.assert_equal_to_truth().await;
    let journal = app.api_requests();
    let contacts: Vec<_> = journal
        .iter()
        .filter(|e| e.path.ends_with("/contacts"))
        .collect();
    let n_contacts = app.truth(ppsync::resource::find("contacts").unwrap()).len();
    assert!(
        contacts.len() >= n_contacts / 50,
        "{} contact pages for {n_contacts}",
        contacts.len()
    );
    assert!(
        contacts
            .iter()
            .skip(1)
            .all(|e| e.query.contains("%24skip=")),
        "contacts continue by $skip"
    );
    let matters: Vec<_> = journal
        .iter()
        .filter(|e| e.path.ends_with("/matters"))
        .collect();
    assert!(matters.len() > 2);
    assert!(
        matters
            .iter()
            .skip(1)
            .all(|e| e.query.contains("updated_since=") && !e.query.contains("skip")),
        "matters continue by keyset: {:?}",
        matters.iter().map(|e| &e.query).collect::<Vec<_>>()
    );

    app.advance(Duration::from_secs(3600));
    assert_clean(&app.pass().await);
    app.assert_equal_to_truth().await;
}

#[tokio::test]
async fn many_records_sharing_one_updated_at_across_pages() {
    let app = app(0.02, "[sync]\npage_size = 40").await;
    assert_clean(&app.pass().await);
    // 150 matters edited to share one instant: ties span four pages.
    let at = app.sim.now();
    let matters = ppsync::resource::find("matters").unwrap();
    for m in app.truth(matters).iter().take(150) {
        let id = m["id"].as_str().unwrap();
        app.sim
            .edit("matters", id, serde_json::json!({"notes": "tie"}))
            .unwrap();
        app.sim.set_updated_at("matters", id, at).unwrap();
    }
    assert_clean(&app.pass().await);
    app.assert_equal_to_truth().await;
}

#[tokio::test]
async fn edits_landing_during_a_listing_are_caught() {
    let app = app(0.02, "").await;
    app.sim.faults().add(ppsim::Fault::EditDuringListing {
        resource: "matters".into(),
        count: 1,
    });
    app.sim.faults().add(ppsim::Fault::EditDuringListing {
        resource: "contacts".into(),
        count: 1,
    });
    assert_clean(&app.pass().await);
    // The listing served the old versions; the next pass must pick up the edits.
    assert_clean(&app.pass().await);
    app.assert_equal_to_truth().await;
}

#[tokio::test]
async fn server_clock_skew_of_ten_minutes_either_way() {
    for skew in [600i64, -600] {
        let app = app(0.01, "").await;
        assert_clean(&app.pass().await);
        app.sim.faults().add(ppsim::Fault::ClockSkew {
            date_header_secs: skew,
            stamps_secs: 0,
        });
        for _ in 0..3 {
            app.advance(Duration::from_secs(15 * 60));
            assert_clean(&app.pass().await);
        }
        app.sim.faults().clear();
        app.sim.faults().add(ppsim::Fault::ClockSkew {
            date_header_secs: 0,
            stamps_secs: skew,
        });
        for _ in 0..3 {
            app.advance(Duration::from_secs(15 * 60));
            assert_clean(&app.pass().await);
        }
        app.assert_equal_to_truth().await;
    }
}

#[tokio::test]
async fn access_token_expiring_mid_pass_is_refreshed_once() {
    let app = app(0.01, "").await;
    assert_clean(&app.pass().await);
    app.advance(Duration::from_secs(15 * 60));
    app.sim.faults().expire_access_tokens();
    app.sim.clear_journal();
    assert_clean(&app.pass().await);
    app.assert_equal_to_truth().await;
    let journal = app.sim.journal();
    let token_calls = journal.iter().filter(|e| e.path == "/oauth/token").count();
    let refused = journal.iter().filter(|e| e.status == 401).count();
    assert_eq!((token_calls, refused), (1, 1), "{journal:#?}");
    assert_eq!(journal.len(), RESOURCES.len() + 2);
}

#[tokio::test]
async fn a_429_storm_is_waited_out_within_the_budget() {
    let app = app(0.01, "").await;
    app.sim.faults().add(ppsim::Fault::RateLimitStorm {
        count: 4,
        retry_after_secs: 1,
    });
    let started = std::time::Instant::now();
    assert_clean(&app.pass().await);
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "Retry-After honoured"
    );
    app.assert_equal_to_truth().await;
    assert_eq!(
        app.sim.journal().iter().filter(|e| e.status == 429).count(),
        4
    );
}

#[tokio::test]
async fn a_5xx_burst_and_cut_bodies_and_html_pages_are_retried() {
    let app = app(0.01, "").await;
    app.sim.faults().add(ppsim::Fault::ServerErrors {
        count: 2,
        status: 500,
    });
    app.sim
        .faults()
        .add(ppsim::Fault::TruncateBody { count: 2, after: 0 });
    app.sim.faults().add(ppsim::Fault::HtmlError {
        count: 1,
        status: 502,
    });
    app.sim.faults().add(ppsim::Fault::HtmlError {
        count: 1,
        status: 200,
    });
    assert_clean(&app.pass().await);
    app.assert_equal_to_truth().await;
}

#[tokio::test]
async fn a_page_cut_inside_a_transaction_of_several_rolls_them_back_and_reads_them_again() {
    // 5,000 tasks in pages of 2,500: the second page joins the first's transaction (its answer
    // comes well within commit_wait), and its body is cut after more than 1,000 of its records
    // were written into it. Nothing of either page may stay: the transaction is rolled back,
    // the listing returns to its last commit (its start) and reads both pages again, one commit
    // each. So the journal shows the first page twice, and the counts are those of a clean run.
    let app = app(0.25, "[sync]\ncommit_wait = \"30s\"").await;
    let tasks = ppsync::resource::find("tasks").unwrap();
    let truth = app.truth(tasks);
    assert_eq!(truth.len(), 5000);
    app.sim.clear_journal();
    app.sim
        .faults()
        .add(ppsim::Fault::TruncateBody { count: 1, after: 1 });
    let report = app.pass_of(&["tasks"], false).await;
    assert_clean(&report);
    let queries: Vec<String> = app.api_requests().iter().map(|e| e.query.clone()).collect();
    // The last page of a complete listing is settled by one more request.
    assert_eq!(
        queries.len(),
        6,
        "pages 1, 2 (cut), 1, 2, 3, the settling page: {queries:#?}"
    );
    assert_eq!(queries[0], queries[2], "the first page is read again");
    assert_eq!(queries[1], queries[3], "then the second");
    assert_eq!(report.outcomes[0].stats.records_changed, 5000);
    let (mut mirror, mut truth) = (app.mirror(tasks).await, truth);
    sort_by_key(tasks, &mut mirror);
    sort_by_key(tasks, &mut truth);
    assert_eq!(mirror, truth);
    // The listing completed: a cursor, no resume point left.
    let state = app.engine.store.state(tasks).await.unwrap();
    assert!(state.cursor.is_some() && state.listing.is_none());
}

#[tokio::test]
async fn a_resource_that_keeps_failing_is_skipped_and_the_others_go_on() {
    let app = app(0.01, "[sync]\nmax_attempts = 2").await;
    assert_clean(&app.pass().await);
    let matters = ppsync::resource::find("matters").unwrap();
    let before = app.mirror(matters).await;
    let state_before = app.engine.store.state(matters).await.unwrap();
    app.advance(Duration::from_secs(15 * 60));
    app.sim
        .faults()
        .add(ppsim::Fault::TruncateBody { count: 2, after: 0 });
    let report = app.pass_of(&["matters", "accounts"], false).await;
    assert_eq!(report.exit_code(), 1);
    assert!(
        report.outcomes[0]
            .error
            .as_deref()
            .unwrap()
            .contains("cut off"),
        "{:?}",
        report.outcomes[0]
    );
    assert!(report.outcomes[1].error.is_none());
    assert_eq!(
        app.mirror(matters).await,
        before,
        "the failed resource's mirror is untouched"
    );
    assert_eq!(
        app.engine.store.state(matters).await.unwrap().cursor,
        state_before.cursor,
        "and its cursor"
    );
    assert_clean(&app.pass().await);
    app.assert_equal_to_truth().await;
}

#[tokio::test]
async fn invoices_beyond_the_2500_cap_are_all_mirrored() {
    let app = app(0.01, "").await;
    let template = app.sim.truth("invoices")[0].clone();
    // Each new invoice gets a stamp of its own, a second apart and all in the past: stamps taken
    // from the simulator's real-time clock would tie or not depending on the machine's speed, and
    // with them whether the last page holds anything beyond the page before it.
    let base = app.sim.now() - chrono::Duration::seconds(3600);
    for i in 0..2600 {
        let mut inv = template.clone();
        let m = inv.as_object_mut().unwrap();
        m.remove("id");
        m.remove("created_at");
        m.remove("updated_at");
        let made = app.sim.create("invoices", inv).unwrap();
        let id = made["id"].as_str().unwrap();
        let at = base + chrono::Duration::seconds(i);
        app.sim.set_updated_at("invoices", id, at).unwrap();
    }
    assert!(app.sim.truth("invoices").len() > 2600);
    assert_clean(&app.pass_of(&["invoices"], false).await);
    let invoices = ppsync::resource::find("invoices").unwrap();
    assert_eq!(app.mirror(invoices).await, app.truth(invoices));
    let pages: Vec<_> = app
        .api_requests()
        .into_iter()
        .filter(|e| e.path.ends_with("/invoices"))
        .collect();
    // Two pages of at most 2,500, and the request that settles the last page of a complete
    // listing (it holds records beyond the page before it, so it might have been cut by a cap
    // lower than the one learned): that one answers only the boundary's re-read record.
    assert_eq!(
        pages.len(),
        3,
        "2 pages of at most 2,500 and the settling request: {pages:#?}"
    );
}

#[tokio::test]
async fn deletions_are_marked_after_a_full_pass_and_never_removed() {
    let app = app(0.01, "").await;
    assert_clean(&app.pass().await);
    let mut deleted = Vec::new();
    for name in ["matters", "contacts", "tasks", "invoices", "users"] {
        let res = ppsync::resource::find(name).unwrap();
        let id = app.truth(res)[1]["id"].as_str().unwrap().to_string();
        app.sim.delete(res.path, &id).unwrap();
        deleted.push((res, id));
    }
    // An incremental pass cannot see deletions...
    assert_clean(&app.pass().await);
    let matters = ppsync::resource::find("matters").unwrap();
    assert_eq!(
        app.mirror(matters).await.len(),
        app.truth(matters).len() + 1
    );
    // ...a full pass marks them, and keeps the rows.
    let report = app.full_pass().await;
    assert_clean(&report);
    assert_eq!(
        report
            .outcomes
            .iter()
            .map(|o| o.stats.records_deleted)
            .sum::<u64>(),
        5
    );
    app.assert_equal_to_truth().await;
    for (res, _id) in &deleted {
        assert_eq!(
            app.engine.store.counts(res).await.unwrap().1,
            1,
            "{} keeps its deleted row",
            res.name
        );
    }
}

#[tokio::test]
async fn a_rejected_timestamp_relists_instead_of_jumping_forward() {
    let app = app(0.01, "").await;
    assert_clean(&app.pass().await);
    // Corrupt the stored cursor into something the API rejects (a year the parser accepts but the
    // simulator refuses is hard to make; instead point the API at a 400 via a far-future cursor).
    let matters = ppsync::resource::find("matters").unwrap();
    exec(
        &app.engine.store,
        "UPDATE sync_state SET cursor = '0001-01-01T00:00:00.000000Z' WHERE resource = 'matters'",
    )
    .await;
    app.sim.clear_journal();
    let report = app.pass_of(&["matters"], false).await;
    assert_clean(&report);
    let q: Vec<_> = app
        .api_requests()
        .iter()
        .map(|e| (e.status, e.query.clone()))
        .collect();
    if q.iter().any(|(s, _)| *s == 400) {
        assert_eq!(report.outcomes[0].mode.name(), "full", "{q:?}");
    }
    assert_eq!(app.mirror(matters).await, app.truth(matters));
}

#[tokio::test]
async fn the_budget_is_never_exceeded_against_the_simulators_enforcement() {
    let app = budgeted_app(30, 4).await;
    assert_clean(&app.pass().await);
    app.assert_equal_to_truth().await;
    assert_never_throttled(&app, 45, 30);
    assert!(app.engine.client.budget().total_waited_ms() > 0);
}

/// A scale-0.01 firm with `limit` requests per `secs` seconds on both sides, pages of 40.
async fn budgeted_app(limit: u32, secs: u64) -> TestApp {
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.01,
        budget_limit: limit,
        budget_window: Duration::from_secs(secs),
        ..Default::default()
    })
    .await
    .unwrap();
    let extra =
        format!("[budget]\nrequests = {limit}\nwindow = \"{secs}s\"\n[sync]\npage_size = 40");
    app_with(sim, &extra).await
}

/// More than `more_than` requests reached the simulator, none drew a 429, and none of its
/// windows held more than `limit`.
fn assert_never_throttled(app: &TestApp, more_than: usize, limit: u32) {
    let journal = app.sim.journal();
    assert!(
        journal.len() > more_than,
        "enough requests to need waiting: {}",
        journal.len()
    );
    assert_eq!(
        journal.iter().filter(|e| e.status == 429).count(),
        0,
        "never throttled"
    );
    assert!(app.sim.max_requests_in_any_window() <= limit);
}

#[tokio::test]
async fn a_request_slow_in_transit_never_puts_one_too_many_in_the_servers_window() {
    // The server counts a request when it arrives. The first one here takes 600 ms to get there;
    // the ones after it are quick. A budget counting from the sends would let the fifth request
    // go exactly one window after the first was sent: it would arrive within one window of the
    // first's arrival, the fifth in that window, and draw a 429. Counting from the answers, it
    // waits until one window after the first was answered.
    let app = budgeted_app(4, 2).await;
    app.sim.clear_journal();
    app.sim
        .faults()
        .add(ppsim::Fault::SlowRequests { count: 1, ms: 600 });
    assert_clean(&app.pass_of(&["tasks"], false).await);
    let tasks = ppsync::resource::find("tasks").unwrap();
    let (mut mirror, mut truth) = (app.mirror(tasks).await, app.truth(tasks));
    sort_by_key(tasks, &mut mirror);
    sort_by_key(tasks, &mut truth);
    assert_eq!(mirror, truth);
    assert_never_throttled(&app, 5, 4);
}

#[tokio::test]
async fn a_new_process_counts_what_the_last_one_spent_in_the_window() {
    // Two `ppsync sync` processes back to back, 26 requests each, against 30 per 6 s at the
    // simulator (29 on our side: the harness's own token redemption is in the simulator's window
    // but in no pass). The second counts the first's requests (from the run history) and waits
    // rather than drawing 429s.
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.005,
        budget_limit: 30,
        budget_window: Duration::from_secs(6),
        ..Default::default()
    })
    .await
    .unwrap();
    let app = app_with(sim, "[budget]\nrequests = 29\nwindow = \"6s\"").await;
    app.sim.clear_journal();
    for _ in 0..2 {
        let (code, out, err) = app.cli(&["sync"]).await;
        assert_eq!(code, 0, "{out}{err}");
    }
    let journal = app.sim.journal();
    assert!(journal.len() >= 52, "two passes: {}", journal.len());
    assert_eq!(
        journal.iter().filter(|e| e.status == 429).count(),
        0,
        "never throttled across processes"
    );
    assert!(app.sim.max_requests_in_any_window() <= 30);
    app.assert_equal_to_truth().await;
}

#[tokio::test]
async fn two_hours_of_realistic_changes_with_deletions_end_equal_after_reconciliation() {
    // More requests than one budget window holds (a first backfill settles each endpoint's
    // dialect): the budget is raised on both sides so the test does not wait out windows.
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.02,
        budget_limit: 2000,
        ..Default::default()
    })
    .await
    .unwrap();
    let app = app_with(sim, "[budget]\nrequests = 2000").await;
    assert_clean(&app.pass().await);
    let mut deleted = 0;
    for _ in 0..8 {
        deleted += app
            .advance(Duration::from_secs(15 * 60))
            .deleted
            .values()
            .sum::<u32>();
        app.sim.clear_journal();
        assert_clean(&app.pass().await);
        assert_eq!(
            app.sim.journal().len(),
            RESOURCES.len(),
            "incremental passes stay at the floor"
        );
    }
    assert!(deleted > 0, "the generator deleted something in two hours");
    let report = app.full_pass().await;
    assert_clean(&report);
    assert_eq!(
        report
            .outcomes
            .iter()
            .map(|o| o.stats.records_deleted)
            .sum::<u64>(),
        u64::from(deleted)
    );
    app.assert_equal_to_truth().await;
}

#[tokio::test]
async fn an_endpoint_without_paging_is_settled_once_then_one_request_a_pass() {
    // Regression: 1,500 messages (a round number) at the seed's scale were re-requested with $skip,
    // which /messages ignores, and the repeated page looked like a shift. Now the first listing
    // learns that /messages ignores $skip (the same page again) and $orderby (the reverse order
    // gives the same first record); later passes send one request.
    let app = app(0.01, "").await;
    let messages = ppsync::resource::find("messages").unwrap();
    let template = app.sim.truth("messages")[0].clone();
    for _ in app.sim.truth("messages").len()..1000 {
        let mut m = template.clone();
        m.as_object_mut().unwrap().remove("id");
        app.sim.create("messages", m).unwrap();
    }
    assert_eq!(app.sim.truth("messages").len(), 1000);
    app.sim.clear_journal();
    assert_clean(&app.pass_of(&["messages"], false).await);
    assert_eq!(app.mirror(messages).await, app.truth(messages));
    let first: Vec<String> = app.api_requests().into_iter().map(|e| e.query).collect();
    assert_eq!(
        first,
        [
            "%24top=2500",
            "%24top=2500&%24skip=980",
            "%24orderby=id+desc&%24top=2500"
        ],
        "the page, a $skip that settles nothing, the reverse order"
    );
    let d = app.engine.dialect(messages).await.unwrap();
    assert_eq!(d.skip(), ppsync::sync::dialect::Support::Ignored);
    assert_eq!(d.orderby(), ppsync::sync::dialect::Support::Ignored);
    app.sim.clear_journal();
    assert_clean(&app.pass_of(&["messages"], false).await);
    let again: Vec<String> = app.api_requests().into_iter().map(|e| e.query).collect();
    assert_eq!(
        again,
        ["%24top=2500"],
        "one request once the dialect is known"
    );
    let st = app.engine.store.state(messages).await.unwrap();
    assert!(st.incomplete.is_none(), "nothing seen missing");
    assert!(
        st.unproven
            .as_deref()
            .is_some_and(|u| u.contains("ignores $skip")),
        "{:?}",
        st.unproven
    );
}

#[tokio::test]
async fn a_listing_that_would_delete_most_of_a_table_is_refused_loudly() {
    let app = app(0.01, "").await;
    assert_clean(&app.pass().await);
    let contacts = ppsync::resource::find("contacts").unwrap();
    let truth = app.truth(contacts);
    let gone = truth.len() * 7 / 10;
    assert!(gone > 20);
    for c in truth.iter().take(gone) {
        app.sim
            .delete("contacts", c["id"].as_str().unwrap())
            .unwrap();
    }
    let report = app.pass_of(&["contacts"], true).await;
    assert_eq!(report.exit_code(), 1);
    let err = report.outcomes[0].error.clone().unwrap();
    assert!(
        err.contains(&format!("refused to mark {gone} of {}", truth.len())),
        "{err}"
    );
    assert_eq!(
        app.engine.store.counts(contacts).await.unwrap(),
        (truth.len() as i64, 0),
        "nothing marked"
    );
}
