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

    let changes = app.sim.advance(Duration::from_secs(15 * 60));
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
