//! `ppsync probe` reports each of ppsim's dialect switches correctly, in at most 6 requests an
//! endpoint, and stores what it measured for the engine.

use ppsim::{DialectPatch, Opt, Since};
use ppsync::probe::{EndpointReport, Report};
use ppsync::resource::{RESOURCES, Resource};
use ppsync::sync::dialect::{Since as Semantics, Support};

use crate::support::*;

fn one(name: &str) -> Vec<&'static Resource> {
    vec![ppsync::resource::find(name).unwrap()]
}

/// A firm whose endpoints all follow `patch`, the engine on the simulator's clock.
async fn app_in(patch: DialectPatch) -> TestApp {
    let sim = sim(0.02).await;
    sim.set_dialect(None, patch).unwrap();
    app_on_sim_clock(sim, "").await
}

async fn probe(app: &TestApp, resources: &[&'static Resource]) -> Report {
    let report = ppsync::probe::run(&app.engine, resources).await;
    for e in &report.endpoints {
        assert!(e.error.is_none(), "{}: {:?}", e.path, e.error);
        assert!(
            e.requests <= ppsync::probe::MAX_REQUESTS,
            "{}: {} requests",
            e.path,
            e.requests
        );
    }
    report
}

async fn matters(app: &TestApp) -> EndpointReport {
    probe(app, &one("matters")).await.endpoints.remove(0)
}

#[tokio::test]
async fn the_default_dialect_is_measured_as_the_notes_describe_it() {
    let app = app_in(DialectPatch::default()).await;
    app.sim.clear_journal();
    let report = probe(&app, &RESOURCES.iter().collect::<Vec<_>>()).await;
    let sent = app.api_requests().len();
    assert_eq!(
        sent as u64, report.requests,
        "the report counts every request"
    );
    assert!(sent <= 6 * RESOURCES.len(), "{sent} requests");
    let m = &report.endpoints[0];
    assert_eq!(m.path, "matters");
    assert_eq!(
        (m.top, m.skip, m.orderby, m.updated_since),
        (
            Support::Honoured,
            Support::Honoured,
            Support::Honoured,
            Semantics::Inclusive
        )
    );
    let n = app.sim.truth("matters").len();
    assert_eq!(m.page_cap, format!("none up to {n}"));
    assert!(m.timestamp_sample.is_some() && !m.timestamp_forms.is_empty());
    let messages = report
        .endpoints
        .iter()
        .find(|e| e.path == "messages")
        .unwrap();
    assert_eq!(
        (messages.top, messages.skip, messages.orderby),
        (Support::Ignored, Support::Ignored, Support::Ignored),
        "messages take no parameters"
    );
    // Stored: the engine knows it without learning.
    let d = app
        .engine
        .dialect(ppsync::resource::find("matters").unwrap())
        .await
        .unwrap();
    assert_eq!(d.orderby(), Support::Honoured);
    assert_eq!(d.since(), Semantics::Inclusive);
    assert!(d.updated_since.unwrap().how.starts_with("ppsync probe"));
}

#[tokio::test]
async fn a_page_cap_is_measured_and_the_next_sync_pages_by_it() {
    let app = app_in(DialectPatch {
        page_cap: Some(Some(40)),
        ..Default::default()
    })
    .await;
    assert_eq!(matters(&app).await.page_cap, "40");
    app.sim.clear_journal();
    assert_clean(&app.pass_of(&["matters"], false).await);
    let first = &app.api_requests()[0];
    assert!(first.query.contains("%24top=40"), "{}", first.query);
    let m = ppsync::resource::find("matters").unwrap();
    assert_eq!(app.mirror(m).await, app.truth(m));
}

#[tokio::test]
async fn top_ignored() {
    let app = app_in(DialectPatch {
        top: Some(Opt::Ignore),
        ..Default::default()
    })
    .await;
    assert_eq!(matters(&app).await.top, Support::Ignored);
}

#[tokio::test]
async fn skip_ignored() {
    let app = app_in(DialectPatch {
        skip: Some(Opt::Ignore),
        ..Default::default()
    })
    .await;
    let m = matters(&app).await;
    assert_eq!(m.skip, Support::Ignored);
    assert_eq!(m.top, Support::Honoured);
}

#[tokio::test]
async fn orderby_ignored() {
    let app = app_in(DialectPatch {
        orderby: Some(Opt::Ignore),
        ..Default::default()
    })
    .await;
    assert_eq!(matters(&app).await.orderby, Support::Ignored);
}

#[tokio::test]
async fn orderby_rejected() {
    let app = app_in(DialectPatch {
        orderby: Some(Opt::Reject),
        ..Default::default()
    })
    .await;
    let m = matters(&app).await;
    assert_eq!(m.orderby, Support::Rejected);
    assert_eq!(
        m.updated_since,
        Semantics::Inclusive,
        "the rest still measured"
    );
}

#[tokio::test]
async fn top_and_skip_rejected() {
    let app = app_in(DialectPatch {
        top: Some(Opt::Reject),
        skip: Some(Opt::Reject),
        ..Default::default()
    })
    .await;
    let m = matters(&app).await;
    assert_eq!((m.top, m.skip), (Support::Rejected, Support::Rejected));
}

#[tokio::test]
async fn updated_since_exclusive() {
    let app = app_in(DialectPatch {
        updated_since: Some(Since::Exclusive),
        ..Default::default()
    })
    .await;
    assert_eq!(matters(&app).await.updated_since, Semantics::Exclusive);
}

#[tokio::test]
async fn updated_since_ignored() {
    let app = app_in(DialectPatch {
        updated_since: Some(Since::Ignore),
        ..Default::default()
    })
    .await;
    assert_eq!(matters(&app).await.updated_since, Semantics::Ignored);
}

#[tokio::test]
async fn a_date_header_offset_is_reported_as_the_servers_clock_skew() {
    let app = app_in(DialectPatch::default()).await;
    app.sim.faults().add(ppsim::Fault::DateOffset {
        count: 100,
        secs: 3600,
    });
    let report = probe(&app, &one("users")).await;
    let skew = report.server_clock_skew_secs.unwrap();
    assert!((3590..=3600).contains(&skew), "{skew}");
    assert!(ppsync::probe::render(&report).contains("server clock +3"));
}

#[tokio::test]
async fn a_lower_rate_limit_without_retry_after_is_learned() {
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
    let report = probe(&app, &RESOURCES.iter().collect::<Vec<_>>()).await;
    assert!(report.throttled > 0, "the server throttled");
    let rate = report.learned_rate.expect("a lower rate learned");
    assert!(rate <= 20, "{rate}");
    let facts = app.engine.api_facts().await.unwrap();
    assert_eq!(facts.rate_limit.unwrap().value as usize, rate, "stored");
}

#[tokio::test]
async fn a_silent_cap_on_a_list_without_parameters_is_flagged_against_the_mirror() {
    let app = app_in(DialectPatch::default()).await;
    assert_clean(&app.pass_of(&["messages"], false).await);
    let n = app.sim.truth("messages").len();
    assert!(n > 10);
    app.sim
        .set_dialect(
            Some("messages"),
            DialectPatch {
                page_cap: Some(Some(n - 5)),
                ..Default::default()
            },
        )
        .unwrap();
    let report = probe(&app, &one("messages")).await;
    let m = &report.endpoints[0];
    assert_eq!(m.rows_seen as usize, n - 5);
    assert!(
        m.notes
            .iter()
            .any(|n2| n2.contains(&format!("the mirror holds {n} live records"))),
        "{:?}",
        m.notes
    );
}

#[tokio::test]
async fn the_cli_prints_a_table_and_json() {
    let app = app(0.01, "").await;
    let (code, out, err) = app.cli(&["probe", "--resource", "invoices"]).await;
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap();
    for col in [
        "endpoint",
        "rows",
        "page cap",
        "$top",
        "$skip",
        "$orderby",
        "updated_since",
        "timestamp sample",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(out.lines().nth(1).unwrap().starts_with("invoices"), "{out}");
    assert!(out.contains("requests (at most 6 an endpoint)"), "{out}");
    let (code, out, _) = app.cli(&["probe", "--json", "--resource", "users"]).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["endpoints"][0]["top"], "honoured");
    let (code, _, err) = app.cli(&["probe", "--resource", "widgets"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("unknown resource `widgets`"), "{err}");
}
