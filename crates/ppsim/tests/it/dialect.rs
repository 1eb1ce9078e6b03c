//! Dialects: each switch for what the real API's behaviour is unknown about (page caps,
//! `$top`/`$skip`/`$orderby` honoured, ignored or rejected, `updated_since` inclusive, exclusive
//! or ignored, `Retry-After`, the budget at run time), the `DateOffset` fault, the control route,
//! and the default dialect serving exactly what it always did.

use std::time::Duration;

use crate::support::*;
use chrono::{DateTime, Utc};
use ppsim::{ChangeRates, Dialect, DialectPatch, Fault, Opt, SimConfig, SimHandle, Since};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOP_NOT_ALLOWED: &str = "The query specified in the URI is not valid. Query option 'Top' is not allowed. To allow it, set the 'AllowedQueryOptions' property on EnableQueryAttribute or QueryValidationSettings.";
const SKIP_NOT_ALLOWED: &str = "The query specified in the URI is not valid. Query option 'Skip' is not allowed. To allow it, set the 'AllowedQueryOptions' property on EnableQueryAttribute or QueryValidationSettings.";

/// `support::quiet()` with the clock frozen too (this module's own, shadowing the shared one).
fn quiet() -> SimConfig {
    SimConfig {
        rates: ChangeRates::none(),
        frozen_clock: true,
        ..small()
    }
}

fn cap(n: usize) -> DialectPatch {
    DialectPatch {
        page_cap: Some(Some(n)),
        ..Default::default()
    }
}

fn top(o: Opt) -> DialectPatch {
    DialectPatch {
        top: Some(o),
        ..Default::default()
    }
}

fn skip(o: Opt) -> DialectPatch {
    DialectPatch {
        skip: Some(o),
        ..Default::default()
    }
}

fn orderby(o: Opt) -> DialectPatch {
    DialectPatch {
        orderby: Some(o),
        ..Default::default()
    }
}

fn since(s: Since) -> DialectPatch {
    DialectPatch {
        updated_since: Some(s),
        ..Default::default()
    }
}

/// Ids of the truth sorted by `updated_at` (stable: ties keep id order).
fn by_updated(truth: &[Value]) -> Vec<String> {
    let mut v: Vec<&Value> = truth.iter().collect();
    v.sort_by_key(|r| field_ts(r, "updated_at"));
    ids(&v.into_iter().cloned().collect::<Vec<_>>())
}

fn date_of(got: &Got) -> DateTime<Utc> {
    let h = got.headers["date"].to_str().expect("ascii Date");
    DateTime::parse_from_rfc2822(h)
        .unwrap_or_else(|e| panic!("bad Date {h:?}: {e}"))
        .with_timezone(&Utc)
}

/// The 400 of a rejected option: `{"message": msg}`, JSON.
fn assert_rejected(got: &Got, msg: &str) {
    assert_eq!(got.status, StatusCode::BAD_REQUEST, "{:?}", got.body);
    assert!(
        got.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(got.json(), json!({ "message": msg }));
}

#[tokio::test]
async fn page_cap_stops_each_page_silently_with_and_without_top() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let truth = sim.truth("matters");
    let all = ids(&truth);
    let n = all.len();
    assert!(n > 40, "{n} matters");
    sim.set_dialect(Some("matters"), cap(10)).unwrap();
    assert_eq!(sim.dialect("matters").unwrap().page_cap, Some(10));

    let got = get(&sim, tok, "/api/v2/matters").await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.headers.get("link").is_none());
    assert_eq!(got.ids(), all[..10]);
    // A bare array: no next link anywhere.
    assert!(got.json().is_array());
    assert_eq!(
        get(&sim, tok, "/api/v2/matters?$top=4").await.ids(),
        all[..4]
    );
    assert_eq!(
        get(&sim, tok, "/api/v2/matters?$top=25").await.ids(),
        all[..10]
    );
    // Pages after the cap: `$skip` counts from the filtered order, the cap from there.
    assert_eq!(
        get(&sim, tok, "/api/v2/matters?$skip=10").await.ids(),
        all[10..20]
    );
    assert_eq!(
        get(&sim, tok, "/api/v2/matters?$skip=10&$top=3")
            .await
            .ids(),
        all[10..13]
    );
    assert_eq!(
        get(
            &sim,
            tok,
            &format!("/api/v2/matters?$skip={}&$top=50", n - 3)
        )
        .await
        .ids(),
        all[n - 3..]
    );
    // Paging by `$skip` in cap-sized steps reads everything.
    let mut paged = vec![];
    for page in 0.. {
        let got = get(&sim, tok, &format!("/api/v2/matters?$skip={}", page * 10))
            .await
            .ids();
        let len = got.len();
        paged.extend(got);
        if len < 10 {
            break;
        }
    }
    assert_eq!(paged, all);
    // The cap holds in the `updated_at` order (the walk) and with a filter.
    let upd = by_updated(&truth);
    assert_eq!(
        get(
            &sim,
            tok,
            "/api/v2/matters?$orderby=updated_at asc,id asc&$top=100"
        )
        .await
        .ids(),
        upd[..10]
    );
    let mid = truth
        .iter()
        .filter_map(|m| field_ts(m, "updated_at"))
        .min()
        .unwrap();
    assert_eq!(
        get(
            &sim,
            tok,
            &format!(
                "/api/v2/matters?updated_since={}&$orderby=updated_at",
                zulu(mid)
            )
        )
        .await
        .ids(),
        upd[..10]
    );
    // Other endpoints keep theirs.
    assert_eq!(
        get(&sim, tok, "/api/v2/tasks").await.ids(),
        ids(&sim.truth("tasks"))
    );
    // Uncapping invoices (2,500 by default) and capping every endpoint at once.
    assert_eq!(sim.dialect("invoices").unwrap().page_cap, Some(2500));
    sim.set_dialect(
        Some("invoices"),
        DialectPatch {
            page_cap: Some(None),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(sim.dialect("invoices").unwrap().page_cap, None);
    sim.set_dialect(None, cap(3)).unwrap();
    for r in ["tasks", "invoices", "contacts", "customfields/matter"] {
        assert_eq!(
            get(&sim, tok, &format!("/api/v2/{r}?$top=10")).await.ids(),
            ids(&sim.truth(r))[..3],
            "{r}"
        );
    }
}

#[tokio::test]
async fn top_ignored_serves_the_cap_or_what_remains() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let all = ids(&sim.truth("tasks"));
    sim.set_dialect(Some("tasks"), top(Opt::Ignore)).unwrap();
    assert_eq!(get(&sim, tok, "/api/v2/tasks?$top=5").await.ids(), all);
    // A malformed value is ignored too.
    let got = get(&sim, tok, "/api/v2/tasks?$top=abc").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.ids(), all);
    assert_eq!(
        get(&sim, tok, "/api/v2/tasks?$skip=3&$TOP=5").await.ids(),
        all[3..]
    );
    sim.set_dialect(Some("tasks"), cap(7)).unwrap();
    assert_eq!(
        get(&sim, tok, "/api/v2/tasks?$skip=3&$top=2").await.ids(),
        all[3..10]
    );
    // Other endpoints still honour it.
    assert_eq!(
        get(&sim, tok, "/api/v2/matters?$top=2").await.ids().len(),
        2
    );
}

#[tokio::test]
async fn skip_ignored_starts_at_the_first_record() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let all = ids(&sim.truth("notes"));
    sim.set_dialect(Some("notes"), skip(Opt::Ignore)).unwrap();
    assert_eq!(
        get(&sim, tok, "/api/v2/notes?$skip=5&$top=3").await.ids(),
        all[..3]
    );
    let got = get(&sim, tok, "/api/v2/notes?$Skip=x&$top=2").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.ids(), all[..2]);
    assert_eq!(get(&sim, tok, "/api/v2/notes?$skip=5").await.ids(), all);
}

#[tokio::test]
async fn orderby_ignored_serves_the_default_order() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let truth = sim.truth("events");
    let all = ids(&truth);
    sim.set_dialect(Some("events"), orderby(Opt::Ignore))
        .unwrap();
    assert_eq!(
        get(&sim, tok, "/api/v2/events?$orderby=updated_at desc&$top=5")
            .await
            .ids(),
        all[..5]
    );
    assert_eq!(
        get(&sim, tok, "/api/v2/events?$orderby=no_such_field")
            .await
            .ids(),
        all
    );
    // With `updated_since`: the filtered records, still in id order.
    let stamps: Vec<_> = truth
        .iter()
        .map(|r| field_ts(r, "updated_at").unwrap())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let want: Vec<String> = all
        .iter()
        .zip(&stamps)
        .filter(|(_, t)| **t >= median)
        .map(|(id, _)| id.clone())
        .collect();
    let got = get(
        &sim,
        tok,
        &format!(
            "/api/v2/events?updated_since={}&$orderby=updated_at asc,id asc",
            zulu(median)
        ),
    )
    .await
    .ids();
    assert_eq!(got, want);
    assert_ne!(
        got,
        by_updated(&truth)[by_updated(&truth).len() - got.len()..]
    );
}

#[tokio::test]
async fn orderby_rejected_is_a_400_naming_the_field_and_type() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    sim.set_dialect(None, orderby(Opt::Reject)).unwrap();
    let got = get(
        &sim,
        tok,
        "/api/v2/tasks?$orderby=updated_at asc,id asc&$top=5",
    )
    .await;
    let msg = "The query specified in the URI is not valid. Could not find a property named 'updated_at' on type 'PracticePanther.Api.Models.Task'.";
    assert_rejected(&got, msg);
    assert!(!msg.to_lowercase().contains("orderby"));
    assert_rejected(
        &get(&sim, tok, "/api/v2/TimeEntries?$ORDERBY=Created_At desc").await,
        "The query specified in the URI is not valid. Could not find a property named 'Created_At' on type 'PracticePanther.Api.Models.TimeEntry'.",
    );
    assert_rejected(
        &get(&sim, tok, "/api/v2/matters?$orderby=id").await,
        "The query specified in the URI is not valid. Could not find a property named 'id' on type 'PracticePanther.Api.Models.Matter'.",
    );
    assert_rejected(
        &get(&sim, tok, "/api/v2/accounts?$orderby=updated_at").await,
        "The query specified in the URI is not valid. Could not find a property named 'updated_at' on type 'PracticePanther.Api.Models.Account'.",
    );
    // Only when present: the rest still serves.
    let got = get(&sim, tok, "/api/v2/tasks?$top=5").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.ids(), ids(&sim.truth("tasks"))[..5]);
    // Messages were not named: they still ignore it.
    assert_eq!(
        get(&sim, tok, "/api/v2/messages?$orderby=id desc")
            .await
            .ids(),
        ids(&sim.truth("messages"))
    );
}

#[tokio::test]
async fn top_and_skip_rejected() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    sim.set_dialect(Some("matters"), top(Opt::Reject)).unwrap();
    sim.set_dialect(Some("contacts"), skip(Opt::Reject))
        .unwrap();
    assert_rejected(
        &get(&sim, tok, "/api/v2/matters?$top=5").await,
        TOP_NOT_ALLOWED,
    );
    assert_rejected(
        &get(&sim, tok, "/api/v2/Matters?$TOP=5&$skip=1").await,
        TOP_NOT_ALLOWED,
    );
    assert_rejected(
        &get(&sim, tok, "/api/v2/matters?$top=").await,
        TOP_NOT_ALLOWED,
    );
    assert_eq!(
        get(&sim, tok, "/api/v2/matters?$skip=2").await.ids(),
        ids(&sim.truth("matters"))[2..]
    );
    assert_rejected(
        &get(&sim, tok, "/api/v2/contacts?$skip=0").await,
        SKIP_NOT_ALLOWED,
    );
    assert_rejected(
        &get(&sim, tok, "/api/v2/contacts?$top=3&$Skip=3").await,
        SKIP_NOT_ALLOWED,
    );
    assert_eq!(
        get(&sim, tok, "/api/v2/contacts?$top=3").await.ids(),
        ids(&sim.truth("contacts"))[..3]
    );
    assert_eq!(
        get(&sim, tok, "/api/v2/tasks?$top=3&$skip=1")
            .await
            .ids()
            .len(),
        3
    );
}

/// A record of `res` whose `updated_at` is set to `at`, later than every other.
fn lone_latest(sim: &SimHandle, res: &str, at: DateTime<Utc>) -> String {
    let id = ids(&sim.truth(res))[3].clone();
    sim.set_updated_at(res, &id, at).unwrap();
    id
}

#[tokio::test]
async fn updated_since_exclusive_vs_inclusive_at_a_records_exact_updated_at() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let at = ts("2026-11-20T10:11:12.345");
    let tick = chrono::Duration::nanoseconds(100);
    for res in ["matters", "contacts"] {
        // Contacts render no `updated_at`: the hidden one is filtered on.
        let id = lone_latest(&sim, res, at);
        let queries = |t: DateTime<Utc>| {
            let mut q = vec![format!("/api/v2/{res}?updated_since={}", zulu(t))];
            if res == "matters" {
                // The `updated_at` walk of a sync client's page (contacts can't order by a
                // field they don't render).
                q.push(format!(
                    "/api/v2/{res}?updated_since={}&$orderby=updated_at asc,id asc&$top=100",
                    zulu(t)
                ));
                q.push(format!(
                    "/api/v2/{res}?updated_since={}&$orderby=updated_at",
                    zulu(t)
                ));
            }
            q
        };
        for q in queries(at) {
            assert_eq!(
                get(&sim, tok, &q).await.ids(),
                std::slice::from_ref(&id),
                "{q}"
            );
        }
        sim.set_dialect(Some(res), since(Since::Exclusive)).unwrap();
        for q in queries(at) {
            assert_eq!(get(&sim, tok, &q).await.ids(), Vec::<String>::new(), "{q}");
        }
        for q in queries(at - tick) {
            assert_eq!(
                get(&sim, tok, &q).await.ids(),
                std::slice::from_ref(&id),
                "{q}"
            );
        }
        // The same instant written with an offset.
        let got = get(
            &sim,
            tok,
            &format!("/api/v2/{res}?updated_since=2026-11-20T02:11:12.345-08:00"),
        )
        .await;
        assert_eq!(got.ids(), Vec::<String>::new());
        sim.set_dialect(Some(res), since(Since::Inclusive)).unwrap();
        for q in queries(at) {
            assert_eq!(
                get(&sim, tok, &q).await.ids(),
                std::slice::from_ref(&id),
                "{q}"
            );
        }
    }
    // `created_since` keeps `>=` when `updated_since` is exclusive.
    sim.set_dialect(None, since(Since::Exclusive)).unwrap();
    let tasks = sim.truth("tasks");
    let latest = tasks
        .iter()
        .filter_map(|t| field_ts(t, "created_at"))
        .max()
        .unwrap();
    let want: Vec<String> = tasks
        .iter()
        .filter(|t| field_ts(t, "created_at") == Some(latest))
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(
        get(
            &sim,
            tok,
            &format!("/api/v2/tasks?created_since={}", zulu(latest))
        )
        .await
        .ids(),
        want
    );
}

#[tokio::test]
async fn updated_since_ignored_is_validated_and_not_applied() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let all = ids(&sim.truth("tasks"));
    sim.set_dialect(Some("tasks"), since(Since::Ignore))
        .unwrap();
    assert_eq!(
        get(
            &sim,
            tok,
            "/api/v2/tasks?updated_since=2030-01-01T00:00:00Z"
        )
        .await
        .ids(),
        all
    );
    assert_eq!(
        get(
            &sim,
            tok,
            "/api/v2/tasks?updated_since=2030-01-01T00:00:00Z&$orderby=updated_at&$top=5"
        )
        .await
        .ids(),
        by_updated(&sim.truth("tasks"))[..5]
    );
    let got = get(&sim, tok, "/api/v2/tasks?updated_since=2026-11-02").await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.json(), json!({"message": "The request is invalid."}));
    // Other filters still apply.
    let none = get(
        &sim,
        tok,
        "/api/v2/tasks?updated_since=2030-01-01T00:00:00Z&created_since=2030-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(none.ids(), Vec::<String>::new());
    // Elsewhere it still filters.
    assert!(
        get(
            &sim,
            tok,
            "/api/v2/matters?updated_since=2030-01-01T00:00:00Z"
        )
        .await
        .array()
        .is_empty()
    );
}

#[tokio::test]
async fn messages_and_tags_capped_serve_the_first_records_of_the_default_order() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let messages = ids(&sim.truth("messages"));
    assert!(messages.len() > 6, "{} messages", messages.len());
    // Every endpoint: messages and tags take only the cap.
    sim.set_dialect(
        None,
        DialectPatch {
            page_cap: Some(Some(4)),
            top: Some(Opt::Reject),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        sim.dialect("messages").unwrap(),
        Dialect {
            page_cap: Some(4),
            ..Dialect::NO_PARAMS
        }
    );
    assert_eq!(
        get(&sim, tok, "/api/v2/messages").await.ids(),
        messages[..4]
    );
    // Parameters are still ignored (not rejected).
    let got = get(
        &sim,
        tok,
        "/api/v2/messages?$top=2&$skip=1&updated_since=bad",
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.ids(), messages[..4]);
    for tags in ["tags/matter", "tags/account", "tags/activity"] {
        let got = get(&sim, tok, &format!("/api/v2/{tags}?$top=1")).await;
        assert_eq!(got.ids(), ids(&sim.truth(tags))[..4], "{tags}");
    }
    // Named explicitly, messages reject `$top` too.
    sim.set_dialect(Some("messages"), top(Opt::Reject)).unwrap();
    assert_rejected(
        &get(&sim, tok, "/api/v2/messages?$top=2").await,
        TOP_NOT_ALLOWED,
    );
}

#[tokio::test]
async fn messages_made_to_honour_top_and_skip() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let truth = sim.truth("messages");
    let all = ids(&truth);
    sim.set_dialect(
        Some("messages"),
        DialectPatch {
            top: Some(Opt::Honour),
            skip: Some(Opt::Honour),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        get(&sim, tok, "/api/v2/messages?$top=3&$skip=2")
            .await
            .ids(),
        all[2..5]
    );
    assert_eq!(get(&sim, tok, "/api/v2/messages").await.ids(), all);
    // Honoured: a malformed value is a 400 now.
    assert_eq!(
        get(&sim, tok, "/api/v2/messages?$top=x").await.status,
        StatusCode::BAD_REQUEST
    );
    // `$orderby` and `updated_since` still ignored.
    assert_eq!(
        get(
            &sim,
            tok,
            "/api/v2/messages?$orderby=id desc&updated_since=2030-01-01T00:00:00Z"
        )
        .await
        .ids(),
        all
    );
    // ... until named too.
    sim.set_dialect(Some("messages"), since(Since::Inclusive))
        .unwrap();
    let latest = truth
        .iter()
        .filter_map(|m| field_ts(m, "updated_at"))
        .max()
        .unwrap();
    let want: Vec<String> = truth
        .iter()
        .filter(|m| field_ts(m, "updated_at") == Some(latest))
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        get(
            &sim,
            tok,
            &format!("/api/v2/messages?updated_since={}", zulu(latest))
        )
        .await
        .ids(),
        want
    );
    // Other no-parameter endpoints are untouched.
    assert_eq!(
        get(&sim, tok, "/api/v2/tags/matter?$top=1").await.ids(),
        ids(&sim.truth("tags/matter"))
    );
}

#[tokio::test]
async fn retry_after_off_sends_429s_without_the_header() {
    let sim = spawn(SimConfig {
        budget_limit: 2,
        ..quiet()
    })
    .await;
    let tok = &access(&sim).await; // counted: 1
    assert_eq!(get(&sim, tok, "/api/v2/items").await.status, StatusCode::OK);
    let with = get(&sim, tok, "/api/v2/items").await;
    assert_eq!(with.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(with.headers.contains_key("retry-after"));
    sim.set_retry_after(false);
    let without = get(&sim, tok, "/api/v2/items").await;
    assert_eq!(without.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!without.headers.contains_key("retry-after"));
    assert_eq!(without.body, with.body);
    let (status, _) = refresh(&sim, &sim.grant()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // A RateLimitStorm's 429 too.
    sim.set_budget(0, Duration::from_secs(300));
    sim.faults().add(Fault::RateLimitStorm {
        count: 2,
        retry_after_secs: 7,
    });
    let storm = get(&sim, tok, "/api/v2/items").await;
    assert_eq!(storm.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!storm.headers.contains_key("retry-after"));
    assert_eq!(storm.body, with.body);
    sim.set_retry_after(true);
    let storm = get(&sim, tok, "/api/v2/items").await;
    assert_eq!(storm.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(storm.headers["retry-after"], "7");
    assert_eq!(get(&sim, tok, "/api/v2/items").await.status, StatusCode::OK);

    // From the config.
    let sim = spawn(SimConfig {
        budget_limit: 1,
        retry_after: false,
        ..quiet()
    })
    .await;
    let tok = &access(&sim).await;
    let got = get(&sim, tok, "/api/v2/items").await;
    assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!got.headers.contains_key("retry-after"));
    sim.reset_dialect();
    let got = get(&sim, tok, "/api/v2/items").await;
    assert!(got.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn budget_lowered_and_lifted_at_run_time() {
    let sim = spawn(quiet()).await; // unlimited
    let tok = &access(&sim).await; // counted: 1
    for _ in 0..3 {
        assert_eq!(get(&sim, tok, "/api/v2/items").await.status, StatusCode::OK);
    }
    assert_eq!(sim.requests_in_window(), 4);
    sim.set_budget(5, Duration::from_secs(60));
    assert_eq!(get(&sim, tok, "/api/v2/items").await.status, StatusCode::OK);
    let got = get(&sim, tok, "/api/v2/items").await;
    assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = got.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs), "retry-after {secs}");
    let budget: Value = client()
        .get(format!("{}/_sim/budget", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(budget["limit"], 5);
    // The new window: a minute later the budget has refilled.
    sim.advance(Duration::from_secs(61));
    assert_eq!(sim.requests_in_window(), 0);
    for _ in 0..5 {
        assert_eq!(get(&sim, tok, "/api/v2/items").await.status, StatusCode::OK);
    }
    assert_eq!(
        get(&sim, tok, "/api/v2/items").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Lifted; then back to the config's (unlimited) by a reset.
    sim.set_budget(0, Duration::from_secs(60));
    assert_eq!(get(&sim, tok, "/api/v2/items").await.status, StatusCode::OK);
    sim.set_budget(1, Duration::from_secs(60));
    assert_eq!(
        get(&sim, tok, "/api/v2/items").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    sim.reset_dialect();
    assert_eq!(get(&sim, tok, "/api/v2/items").await.status, StatusCode::OK);
}

#[tokio::test]
async fn date_offset_moves_the_next_responses_date_only() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let now = sim.now();
    assert_eq!(date_of(&get(&sim, tok, "/api/v2/items").await), now);

    sim.faults().add(Fault::DateOffset {
        count: 1,
        secs: 86_400,
    });
    // Control calls don't see it (nor use it up).
    let ctl = client()
        .get(format!("{}/_sim/clock", sim.url()))
        .send()
        .await
        .unwrap();
    let ctl_date = DateTime::parse_from_rfc2822(ctl.headers()["date"].to_str().unwrap()).unwrap();
    assert_eq!(ctl_date, now);
    let got = get(&sim, tok, "/api/v2/items").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(date_of(&got), now + chrono::Duration::days(1));
    assert_eq!(date_of(&get(&sim, tok, "/api/v2/items").await), now);
    assert!(sim.faults().active().is_empty());

    // Over HTTP, on top of a ClockSkew, and on the token endpoint (and a 404) too.
    let r = client()
        .post(format!("{}/_sim/faults", sim.url()))
        .json(&json!({"DateOffset": {"count": 3, "secs": -3600}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    sim.faults().add(Fault::ClockSkew {
        date_header_secs: 120,
        stamps_secs: 0,
    });
    let token = client()
        .post(format!("{}/oauth/token", sim.url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &sim.grant()),
            ("client_id", &sim.client_id()),
            ("client_secret", &sim.client_secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::OK);
    let token_date =
        DateTime::parse_from_rfc2822(token.headers()["date"].to_str().unwrap()).unwrap();
    assert_eq!(token_date, now + chrono::Duration::seconds(120 - 3600));
    let missing = get(&sim, tok, "/api/v2/nothing").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        date_of(&missing),
        now + chrono::Duration::seconds(120 - 3600)
    );
    assert_eq!(
        date_of(&get(&sim, tok, "/api/v2/items").await),
        now + chrono::Duration::seconds(120 - 3600)
    );
    assert_eq!(
        date_of(&get(&sim, tok, "/api/v2/items").await),
        now + chrono::Duration::seconds(120)
    );
}

async fn control(
    sim: &SimHandle,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = client().request(method, format!("{}{path}", sim.url()));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn control_route_reads_patches_and_resets_one_firm() {
    use reqwest::Method;
    let sim = spawn(SimConfig {
        firms: 2,
        ..quiet()
    })
    .await;
    let (status, doc) = control(&sim, Method::GET, "/_sim/dialect", None).await;
    assert_eq!(status, StatusCode::OK);
    let endpoints = doc["endpoints"].as_object().unwrap();
    assert_eq!(endpoints.len(), sim.resources().len());
    let params = json!({"page_cap": null, "top": "Honour", "skip": "Honour", "orderby": "Honour", "updated_since": "Inclusive"});
    let none = json!({"page_cap": null, "top": "Ignore", "skip": "Ignore", "orderby": "Ignore", "updated_since": "Ignore"});
    assert_eq!(endpoints["matters"], params);
    assert_eq!(endpoints["customfields/matter"], params);
    assert_eq!(endpoints["invoices"]["page_cap"], 2500);
    for r in ["messages", "tags/account", "tags/matter", "tags/activity"] {
        assert_eq!(endpoints[r], none, "{r}");
    }
    assert_eq!(doc["retry_after"], true);
    assert_eq!(doc["budget"], json!({"limit": 0, "window_secs": 300}));
    let default_doc = doc;

    // Firm 1 only.
    let (status, doc) = control(
        &sim,
        Method::POST,
        "/_sim/dialect?firm=1",
        Some(json!({
            "endpoint": "matters", "page_cap": 5, "top": "Reject",
            "retry_after": false, "budget_limit": 50, "budget_window_secs": 60
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(
        doc["endpoints"]["matters"],
        json!({"page_cap": 5, "top": "Reject", "skip": "Honour", "orderby": "Honour", "updated_since": "Inclusive"})
    );
    assert_eq!(doc["endpoints"]["tasks"], params);
    assert_eq!(doc["retry_after"], false);
    assert_eq!(doc["budget"], json!({"limit": 50, "window_secs": 60}));
    let (_, again) = control(&sim, Method::GET, "/_sim/dialect?firm=1", None).await;
    assert_eq!(again, doc);
    let (_, budget) = control(&sim, Method::GET, "/_sim/budget?firm=1", None).await;
    assert_eq!(budget["limit"], 50);
    assert_eq!(
        control(&sim, Method::GET, "/_sim/dialect", None).await.1,
        default_doc
    );
    assert_eq!(
        sim.firm(1).dialect("matters").unwrap(),
        Dialect {
            page_cap: Some(5),
            top: Opt::Reject,
            ..Dialect::PARAMS
        }
    );
    assert_eq!(sim.dialect("matters").unwrap(), Dialect::PARAMS);

    // Served so: firm 1's matters capped and `$top` rejected, firm 0's not.
    let tok0 = access(&sim).await;
    let tok1 = firm_access(&sim, &sim.firm(1)).await;
    assert_eq!(
        get(&sim, &tok1, "/api/v2/matters").await.ids(),
        ids(&sim.firm(1).truth("matters"))[..5]
    );
    assert_rejected(
        &get(&sim, &tok1, "/api/v2/matters?$top=2").await,
        TOP_NOT_ALLOWED,
    );
    assert_eq!(
        get(&sim, &tok0, "/api/v2/matters").await.ids(),
        ids(&sim.truth("matters"))
    );
    assert_eq!(
        get(&sim, &tok0, "/api/v2/matters?$top=2").await.ids().len(),
        2
    );

    // Every endpoint ("*" or no endpoint): the options on those taking parameters, the cap
    // everywhere.
    let (status, doc) = control(
        &sim,
        Method::POST,
        "/_sim/dialect?firm=1",
        Some(json!({"endpoint": "*", "page_cap": null, "skip": "Ignore"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["endpoints"]["invoices"]["page_cap"], Value::Null);
    assert_eq!(doc["endpoints"]["matters"]["page_cap"], Value::Null);
    assert_eq!(doc["endpoints"]["matters"]["top"], "Reject");
    assert_eq!(doc["endpoints"]["tasks"]["skip"], "Ignore");
    let (_, doc) = control(
        &sim,
        Method::POST,
        "/_sim/dialect?firm=1",
        Some(json!({"top": "Honour", "page_cap": 9})),
    )
    .await;
    assert_eq!(doc["endpoints"]["matters"]["top"], "Honour");
    assert_eq!(doc["endpoints"]["messages"]["top"], "Ignore");
    assert_eq!(doc["endpoints"]["messages"]["page_cap"], 9);
    // Messages by name.
    let (_, doc) = control(
        &sim,
        Method::POST,
        "/_sim/dialect?firm=1",
        Some(json!({"endpoint": "Messages", "top": "Honour"})),
    )
    .await;
    assert_eq!(doc["endpoints"]["messages"]["top"], "Honour");

    // Bad bodies change nothing.
    let before = control(&sim, Method::GET, "/_sim/dialect?firm=1", None)
        .await
        .1;
    for bad in [
        json!({"endpoint": "nothing", "top": "Reject"}),
        json!({"pagecap": 3}),
        json!({"top": "Sometimes"}),
        json!({"page_cap": -1}),
        json!({"endpoint": "matters", "top": "Reject", "retry_after": "yes"}),
        json!({"budget_limit": "many"}),
        json!([1]),
    ] {
        let (status, body) = control(
            &sim,
            Method::POST,
            "/_sim/dialect?firm=1",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} → {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    assert_eq!(
        control(&sim, Method::GET, "/_sim/dialect?firm=1", None)
            .await
            .1,
        before
    );
    assert_eq!(
        control(&sim, Method::GET, "/_sim/dialect?firm=7", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Firm 0 by the route too, then reset firm 1 only.
    let (_, doc0) = control(
        &sim,
        Method::POST,
        "/_sim/dialect",
        Some(json!({"endpoint": "tasks", "orderby": "Ignore"})),
    )
    .await;
    assert_eq!(doc0["endpoints"]["tasks"]["orderby"], "Ignore");
    let (status, doc) = control(&sim, Method::DELETE, "/_sim/dialect?firm=1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc, default_doc);
    assert_eq!(sim.firm(1).dialect("messages").unwrap(), Dialect::NO_PARAMS);
    assert_eq!(sim.dialect("tasks").unwrap().orderby, Opt::Ignore);
    let (_, doc) = control(&sim, Method::DELETE, "/_sim/dialect", None).await;
    assert_eq!(doc, default_doc);

    // The Rust API refuses unknown endpoints.
    assert!(sim.set_dialect(Some("nothing"), cap(1)).is_err());
    assert!(sim.dialect("nothing").is_err());
    assert_eq!(
        Dialect::default_for("invoices").unwrap().page_cap,
        Some(2500)
    );
}

#[tokio::test]
async fn config_dialect_applies_at_spawn() {
    let sim = spawn(SimConfig {
        dialect: DialectPatch {
            page_cap: Some(Some(3)),
            top: Some(Opt::Reject),
            updated_since: Some(Since::Exclusive),
            ..Default::default()
        },
        ..quiet()
    })
    .await;
    let tok = &access(&sim).await;
    assert_eq!(
        sim.dialect("matters").unwrap(),
        Dialect {
            page_cap: Some(3),
            top: Opt::Reject,
            updated_since: Since::Exclusive,
            ..Dialect::PARAMS
        }
    );
    assert_eq!(
        sim.dialect("messages").unwrap(),
        Dialect {
            page_cap: Some(3),
            ..Dialect::NO_PARAMS
        }
    );
    assert_rejected(
        &get(&sim, tok, "/api/v2/matters?$top=2").await,
        TOP_NOT_ALLOWED,
    );
    assert_eq!(
        get(&sim, tok, "/api/v2/messages?$top=2").await.ids(),
        ids(&sim.truth("messages"))[..3]
    );
    // A reset goes back to the built-in defaults.
    sim.reset_dialect();
    assert_eq!(sim.dialect("matters").unwrap(), Dialect::PARAMS);
    assert_eq!(
        get(&sim, tok, "/api/v2/matters?$top=2").await.ids().len(),
        2
    );
}

/// Status, content type and body of each query: what a client sees.
async fn serve_all(sim: &SimHandle, tok: &str, queries: &[String]) -> Vec<(u16, String, Vec<u8>)> {
    let mut out = vec![];
    for q in queries {
        let got = get(sim, tok, q).await;
        let ct = got
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        out.push((got.status.as_u16(), ct, got.body.to_vec()));
    }
    out
}

#[tokio::test]
async fn the_default_dialect_serves_exactly_what_it_served() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let matters = sim.truth("matters");
    let exact = matters[5]["updated_at"].as_str().unwrap().to_owned();
    let contact = ids(&sim.truth("contacts"))[2].clone();
    sim.set_updated_at("contacts", &contact, ts(&exact))
        .unwrap();
    let mut queries: Vec<String> = [
        "/api/v2/matters",
        "/api/v2/matters?$top=5",
        "/api/v2/matters?$skip=3&$top=4",
        "/api/v2/matters?$orderby=updated_at desc&$top=6",
        "/api/v2/matters?$orderby=name,id desc",
        "/api/v2/matters?updated_since=2026-10-01T00:00:00Z&$orderby=updated_at asc,id asc&$top=10",
        "/api/v2/matters?updated_since=2026-10-01T00:00:00Z&$orderby=updated_at asc,id asc&$top=10&$skip=10",
        "/api/v2/Matters?$TOP=3&$Skip=2&$OrderBy=Updated_At",
        "/api/v2/invoices",
        "/api/v2/invoices?$top=3&$skip=1",
        "/api/v2/messages?$top=1&$skip=2&$orderby=zzz&updated_since=bad",
        "/api/v2/messages",
        "/api/v2/tags/matter?$top=1",
        "/api/v2/tags/activity",
        "/api/v2/tasks?$top=abc",
        "/api/v2/tasks?$skip=-1",
        "/api/v2/tasks?$orderby=nope",
        "/api/v2/tasks?updated_since=2026-11-02",
        "/api/v2/tasks?$top=",
        "/api/v2/TimeEntries?$top=2&$skip=1&limit=1",
        "/api/v2/customfields/matter?updated_since=2020-01-01T00:00:00Z",
        "/api/v2/contacts?$orderby=id&$top=20",
        "/api/v2/accounts?$top=2",
        "/api/v2/users/me",
        "/api/v2/bankaccounts?created_since=2020-01-01T00:00:00Z",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for r in ["matters", "contacts"] {
        queries.push(format!("/api/v2/{r}?updated_since={exact}"));
        queries.push(format!(
            "/api/v2/{r}?updated_since={exact}&$orderby=updated_at asc,id asc&$top=3"
        ));
    }
    for r in sim.resources() {
        queries.push(format!("/api/v2/{r}"));
    }
    let before = serve_all(&sim, tok, &queries).await;
    // What is known of the default: invoices cap at 2,500, messages ignore `$top`.
    assert_eq!(
        sim.dialect("invoices").unwrap(),
        Dialect {
            page_cap: Some(2500),
            ..Dialect::PARAMS
        }
    );

    // Something else entirely, then a reset.
    let wild = DialectPatch {
        page_cap: Some(Some(2)),
        top: Some(Opt::Ignore),
        skip: Some(Opt::Reject),
        orderby: Some(Opt::Reject),
        updated_since: Some(Since::Exclusive),
    };
    sim.set_dialect(None, wild.clone()).unwrap();
    sim.set_dialect(Some("messages"), wild).unwrap();
    sim.set_retry_after(false);
    sim.set_budget(3, Duration::from_secs(1));
    let changed = serve_all(&sim, tok, &queries).await;
    assert_ne!(changed, before);
    sim.reset_dialect();
    assert_eq!(serve_all(&sim, tok, &queries).await, before);

    // The defaults set explicitly serve the same too.
    sim.set_dialect(
        None,
        DialectPatch {
            page_cap: Some(None),
            top: Some(Opt::Honour),
            skip: Some(Opt::Honour),
            orderby: Some(Opt::Honour),
            updated_since: Some(Since::Inclusive),
        },
    )
    .unwrap();
    sim.set_dialect(Some("invoices"), cap(2500)).unwrap();
    assert_eq!(serve_all(&sim, tok, &queries).await, before);

    // A sim spawned with an empty config dialect is the same sim.
    let other = spawn(SimConfig {
        dialect: DialectPatch::default(),
        retry_after: true,
        ..quiet()
    })
    .await;
    other
        .set_updated_at("contacts", &contact, ts(&exact))
        .unwrap();
    let tok2 = &access(&other).await;
    assert_eq!(serve_all(&other, tok2, &queries).await, before);
}
