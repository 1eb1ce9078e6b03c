//! The core cycle (backfill, changes, an incremental pass, deletions, a reconciliation) against
//! APIs that answer differently from the notes ppsim and ppsync were both written from
//! (practicepanther-api.md §7): page caps, `$top`/`$skip`/`$orderby` ignored or rejected,
//! `updated_since` exclusive or ignored, a silent cap on a list that takes no parameters. Each
//! case ends with the mirror equal to the truth, or, for a resource no client could list whole
//! in that dialect, with it reported incomplete (or unproven) and nothing marked deleted that
//! still exists.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ppsim::{DialectPatch, Opt, Since};
use ppsync::resource::{RESOURCES, Resource};
use ppsync::sync::PassReport;

use crate::support::*;

/// A dialect case: the switches, and the resources no client can list completely in it.
struct Case {
    name: &'static str,
    /// Applied to every endpoint that takes parameters (and `page_cap` to every endpoint).
    all: DialectPatch,
    /// Applied to single endpoints after `all`.
    one: Vec<(&'static str, DialectPatch)>,
    /// Resources that cannot be listed whole in this dialect (table names).
    unlistable: &'static [&'static str],
    /// What the engine must have learned: (resource, part of its dialect's summary).
    learns: &'static [(&'static str, &'static str)],
    /// Appended to the config.
    config: &'static str,
}

fn patch(cap: Option<usize>, top: Opt, skip: Opt, orderby: Opt, since: Since) -> DialectPatch {
    DialectPatch {
        page_cap: Some(cap),
        top: Some(top),
        skip: Some(skip),
        orderby: Some(orderby),
        updated_since: Some(since),
    }
}

use Opt::{Honour, Ignore, Reject};

fn cases() -> Vec<Case> {
    let plain = |name, all, learns| Case {
        name,
        all,
        one: vec![],
        unlistable: &[],
        learns,
        config: "",
    };
    vec![
        plain(
            "default",
            DialectPatch::default(),
            &[("matters", "$orderby honoured")],
        ),
        plain(
            "every endpoint caps at 40",
            patch(Some(40), Honour, Honour, Honour, Since::Inclusive),
            &[("matters", "cap 40")],
        ),
        plain(
            "$top ignored, capped at 40",
            patch(Some(40), Ignore, Honour, Honour, Since::Inclusive),
            // Pages of the cap look the same whether $top is honoured or not ($top=40, 40
            // records): only the cap matters, and `ppsync probe` tells the rest.
            &[("matters", "cap 40")],
        ),
        Case {
            name: "$top ignored, no cap: every list whole (asked for pages of 30)",
            all: patch(None, Ignore, Honour, Honour, Since::Inclusive),
            one: vec![],
            unlistable: &[],
            learns: &[("matters", "$top ignored")],
            config: "[sync]\npage_size = 30",
        },
        plain(
            "$orderby rejected (400), capped at 40",
            patch(Some(40), Honour, Honour, Reject, Since::Inclusive),
            &[
                ("matters", "cap 40"),
                ("matters", "$orderby rejected"),
                ("matters", "$skip honoured"),
            ],
        ),
        plain(
            "$orderby ignored, capped at 40",
            patch(Some(40), Honour, Honour, Ignore, Since::Inclusive),
            &[("matters", "cap 40"), ("matters", "$orderby ignored")],
        ),
        plain(
            "$top and $skip rejected (400), no cap",
            patch(None, Reject, Reject, Honour, Since::Inclusive),
            &[("matters", "$top rejected")],
        ),
        plain(
            "updated_since exclusive",
            patch(Some(40), Honour, Honour, Honour, Since::Exclusive),
            &[("matters", "cap 40")],
        ),
        plain(
            "updated_since ignored",
            patch(None, Honour, Honour, Honour, Since::Ignore),
            &[("matters", "updated_since ignored")],
        ),
        Case {
            name: "$skip ignored, capped at 50: keyset pages; contacts (no updated_at) cannot be paged",
            all: patch(Some(50), Honour, Ignore, Honour, Since::Inclusive),
            one: vec![],
            unlistable: &["contacts"],
            learns: &[("matters", "cap 50"), ("contacts", "$skip ignored")],
            config: "",
        },
        Case {
            name: "$skip ignored and $orderby rejected, capped at 50: date windows where the API has them",
            all: patch(Some(50), Honour, Ignore, Reject, Since::Inclusive),
            one: vec![],
            unlistable: &[
                "matters", "accounts", "contacts", "tasks", "emails", "files",
            ],
            learns: &[
                ("matters", "$skip ignored"),
                ("matters", "$orderby rejected"),
            ],
            config: "",
        },
    ]
}

/// A firm at scale 0.02 in `case`'s dialect, with budgets out of the way (a cap of 40 makes a
/// backfill ~100 requests; the budget has tests of its own).
async fn app_in(case: &Case) -> TestApp {
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.02,
        budget_limit: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    sim.set_dialect(None, case.all.clone()).unwrap();
    for (endpoint, p) in &case.one {
        sim.set_dialect(Some(endpoint), p.clone()).unwrap();
    }
    app_with(
        sim,
        &format!("[budget]\nrequests = 100000\n{}", case.config),
    )
    .await
}

/// What a pass said of each resource: None (synced) or its error.
fn errors(report: &PassReport) -> BTreeMap<&'static str, String> {
    assert!(report.fatal.is_none(), "fatal: {:?}", report.fatal);
    report
        .outcomes
        .iter()
        .filter_map(|o| o.error.clone().map(|e| (o.resource, e)))
        .collect()
}

/// Asserts the mirror equals the truth for every listable resource (deletions reconciled),
/// and for the others that every live row is a true record and nothing still in the truth was
/// marked deleted.
async fn assert_mirror(app: &TestApp, case: &Case) {
    for res in RESOURCES {
        let mirror = app.mirror(res).await;
        let truth = app.truth(res);
        let truth_ids: BTreeSet<&str> =
            truth.iter().map(|t| t[res.key].as_str().unwrap()).collect();
        let deleted = deleted_ids(app, res).await;
        let wrongly: Vec<&String> = deleted
            .iter()
            .filter(|id| truth_ids.contains(id.as_str()))
            .collect();
        assert!(
            wrongly.is_empty(),
            "{}: {}: marked deleted but still there: {wrongly:?}",
            case.name,
            res.name
        );
        if case.unlistable.contains(&res.name) {
            // What could be reached is in, as the API last returned it; rows gone from the truth
            // may stay live (a listing that is not whole marks nothing), never the reverse.
            let by_key: BTreeMap<&str, &serde_json::Value> = truth
                .iter()
                .map(|t| (t[res.key].as_str().unwrap(), t))
                .collect();
            let reached = mirror
                .iter()
                .filter(|m| by_key.contains_key(m[res.key].as_str().unwrap()))
                .count();
            assert!(reached > 0, "{}: {}: nothing reached", case.name, res.name);
            continue;
        }
        assert_eq!(
            mirror.len(),
            truth.len(),
            "{}: {} has {} live records, the truth {}",
            case.name,
            res.name,
            mirror.len(),
            truth.len()
        );
        assert!(
            mirror == truth,
            "{}: {} differs from the truth",
            case.name,
            res.name
        );
    }
}

async fn deleted_ids(app: &TestApp, res: &Resource) -> Vec<String> {
    let mut out = Vec::new();
    app.engine
        .store
        .export(res, true, |r| {
            if r.deleted_at.is_some() {
                let v: serde_json::Value = serde_json::from_str(&r.data).unwrap();
                out.push(v[res.key].as_str().unwrap().to_string());
            }
            Ok(())
        })
        .await
        .unwrap();
    out
}

/// Deletes one record of each of a few resources, and 40 time entries (more than are confirmed
/// one by one: a sample is), so the reconciliation has deletions to find.
fn delete_some(app: &TestApp) -> usize {
    let mut n = 0;
    for (name, k) in [
        ("matters", 1),
        ("tasks", 1),
        ("invoices", 1),
        ("notes", 1),
        ("contacts", 1),
        ("time_entries", 40),
    ] {
        let res = ppsync::resource::find(name).unwrap();
        for r in app.truth(res).iter().skip(3).take(k) {
            app.sim
                .delete(res.path, r[res.key].as_str().unwrap())
                .unwrap();
            n += 1;
        }
    }
    n
}

/// The core cycle in `case`'s dialect.
async fn core_cycle(case: &Case) {
    let app = app_in(case).await;
    let unlistable: BTreeSet<&str> = case.unlistable.iter().copied().collect();
    // Backfill: the listable resources sync; the others are at most incomplete, never failed.
    let backfill = app.pass().await;
    let errs = errors(&backfill);
    for (res, e) in &errs {
        assert!(
            unlistable.contains(res),
            "{}: backfill: {res}: {e}",
            case.name
        );
        let o = backfill
            .outcomes
            .iter()
            .find(|o| o.resource == *res)
            .unwrap();
        assert!(
            o.incomplete,
            "{}: {res} is reported incomplete, not failed: {e}",
            case.name
        );
    }
    // An hour of changes (creations, edits, deletions), then an incremental pass during which
    // records change under the listing.
    app.advance(Duration::from_secs(3600));
    for resource in ["matters", "contacts", "tasks"] {
        app.sim.faults().add(ppsim::Fault::EditDuringListing {
            resource: resource.into(),
            count: 2,
        });
    }
    let incremental = app.pass().await;
    for (res, e) in errors(&incremental) {
        assert!(
            unlistable.contains(res),
            "{}: incremental: {res}: {e}",
            case.name
        );
    }
    // Deletions of our own, and the reconciliation that must find them.
    delete_some(&app);
    let full = app.full_pass().await;
    let errs = errors(&full);
    for (res, e) in &errs {
        assert!(
            unlistable.contains(res),
            "{}: reconciliation: {res}: {e}",
            case.name
        );
    }
    if errs.is_empty() {
        app.pending_deletes.lock().unwrap().clear();
    }
    // A second reconciliation once nothing changes: every listable resource is proven complete.
    let again = app.full_pass().await;
    for (res, e) in errors(&again) {
        assert!(
            unlistable.contains(res),
            "{}: second reconciliation: {res}: {e}",
            case.name
        );
    }
    assert_mirror(&app, case).await;
    for (name, want) in case.learns {
        let res = ppsync::resource::find(name).unwrap();
        let learned = app.engine.dialect(res).await.unwrap().summary();
        assert!(
            learned.contains(want),
            "{}: {name}: learned {learned}",
            case.name
        );
    }
    if std::env::var_os("TEST_LOG").is_some() {
        for (res, e) in errors(&full) {
            println!("{}: reconciliation: {res}: {e}", case.name);
        }
    }
    for res in RESOURCES {
        let st = app.engine.store.state(res).await.unwrap();
        if unlistable.contains(res.name) {
            assert!(
                st.incomplete.is_some() || st.unproven.is_some(),
                "{}: {}: the operator is told it could not be listed whole",
                case.name,
                res.name
            );
        } else {
            assert!(
                st.incomplete.is_none(),
                "{}: {}: incomplete: {:?}",
                case.name,
                res.name,
                st.incomplete
            );
        }
    }
}

#[tokio::test]
async fn the_core_cycle_in_every_dialect() {
    let only = std::env::var("PPSYNC_TEST_DIALECT").ok();
    // On PostgreSQL a subset: the dialects that exercise its different paths (paging, partition,
    // unlistable) run; the storage is the same for the others.
    let pg = ppsync::store::testing::postgres_selected();
    for case in cases() {
        if only.as_deref().is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        if pg
            && ![
                "default",
                "every endpoint caps",
                "$skip ignored, capped",
                "$skip ignored and",
            ]
            .iter()
            .any(|p| case.name.starts_with(p))
        {
            continue;
        }
        core_cycle(&case).await;
    }
}

#[tokio::test]
async fn a_steady_incremental_pass_is_one_request_per_resource_once_the_dialect_is_known() {
    let app = app(0.02, "").await;
    assert_clean(&app.pass().await);
    let backfill = app.api_requests().len();
    for _ in 0..3 {
        app.advance(Duration::from_secs(15 * 60));
        app.sim.clear_journal();
        assert_clean(&app.pass().await);
        assert_eq!(app.api_requests().len(), RESOURCES.len(), "the floor");
    }
    // The first backfill spent at most two more requests an endpoint settling its dialect.
    assert!(
        backfill <= RESOURCES.len() * 3,
        "{backfill} requests for a backfill at 0.02"
    );
}
