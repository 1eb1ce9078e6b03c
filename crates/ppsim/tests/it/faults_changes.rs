//! Each fault, the change generator, determinism of the seed, the control API over HTTP.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::*;
use ppsim::{ChangeRates, Fault, SimConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn server_errors_then_recovery() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    sim.faults().add(Fault::ServerErrors {
        count: 2,
        status: 503,
    });
    assert_eq!(
        get(&sim, tok, "/api/v2/items").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&sim, tok, "/api/v2/items/x").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&sim, tok, "/api/v2/items").await.status, StatusCode::OK);
    // Token calls are not /api/v2: unaffected.
    sim.faults().add(Fault::ServerErrors {
        count: 1,
        status: 500,
    });
    assert_eq!(refresh(&sim, &sim.grant()).await.0, StatusCode::OK);
    assert_eq!(
        get(&sim, tok, "/api/v2/items").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(sim.faults().active().is_empty());
}

#[tokio::test]
async fn rate_limit_storm_hits_api_and_token_calls() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    sim.faults().add(Fault::RateLimitStorm {
        count: 2,
        retry_after_secs: 7,
    });
    let got = get(&sim, tok, "/api/v2/matters").await;
    assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(got.headers["retry-after"], "7");
    let (status, _) = refresh(&sim, &sim.grant()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        get(&sim, tok, "/api/v2/matters").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn latency_delays_until_cleared() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    sim.faults().add(Fault::Latency { ms: 300 });
    let t = Instant::now();
    assert_eq!(get(&sim, tok, "/api/v2/items").await.status, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(300));
    sim.faults().clear();
    let t = Instant::now();
    get(&sim, tok, "/api/v2/items").await;
    assert!(t.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn slow_requests_delay_only_the_next_ones() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    sim.faults().add(Fault::SlowRequests { count: 2, ms: 300 });
    for _ in 0..2 {
        let t = Instant::now();
        assert_eq!(get(&sim, tok, "/api/v2/items").await.status, StatusCode::OK);
        assert!(t.elapsed() >= Duration::from_millis(300));
    }
    assert!(sim.faults().active().is_empty(), "used up");
    let t = Instant::now();
    get(&sim, tok, "/api/v2/items").await;
    assert!(t.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn truncated_body_is_200_and_cut_mid_record() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let full = get(&sim, tok, "/api/v2/matters").await;
    sim.faults().add(Fault::TruncateBody { count: 1, after: 0 });
    let cut = get(&sim, tok, "/api/v2/matters").await;
    assert_eq!(cut.status, StatusCode::OK);
    assert!(cut.body.len() < full.body.len() * 3 / 4 && cut.body.len() > full.body.len() / 4);
    assert!(
        full.body.starts_with(&cut.body),
        "a prefix of the real body"
    );
    assert!(serde_json::from_slice::<Value>(&cut.body).is_err());
    assert!(!cut.body.ends_with(b"}"), "cut inside a record");
    assert_eq!(get(&sim, tok, "/api/v2/matters").await.body, full.body);
    // `after`: that many are served whole first.
    sim.faults().add(Fault::TruncateBody { count: 1, after: 2 });
    for _ in 0..2 {
        assert_eq!(get(&sim, tok, "/api/v2/matters").await.body, full.body);
    }
    assert!(
        serde_json::from_slice::<Value>(&get(&sim, tok, "/api/v2/matters").await.body).is_err()
    );
    assert_eq!(get(&sim, tok, "/api/v2/matters").await.body, full.body);
}

#[tokio::test]
async fn html_error_pages() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    sim.faults().add(Fault::HtmlError {
        count: 1,
        status: 502,
    });
    sim.faults().add(Fault::HtmlError {
        count: 1,
        status: 200,
    });
    for want in [StatusCode::BAD_GATEWAY, StatusCode::OK] {
        let got = get(&sim, tok, "/api/v2/matters").await;
        assert_eq!(got.status, want);
        assert!(
            got.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(String::from_utf8_lossy(&got.body).contains("<html>"));
    }
    assert!(get(&sim, tok, "/api/v2/matters").await.json().is_array());
}

#[tokio::test]
async fn clock_skew_moves_the_date_header_and_the_stamps() {
    let sim = spawn(SimConfig {
        rates: ChangeRates::default(),
        ..small()
    })
    .await;
    let tok = &access(&sim).await;
    sim.faults().add(Fault::ClockSkew {
        date_header_secs: 3600,
        stamps_secs: -600,
    });
    let got = get(&sim, tok, "/api/v2/items").await;
    let date = chrono::DateTime::parse_from_rfc2822(got.headers["date"].to_str().unwrap()).unwrap();
    let off = (date.with_timezone(&chrono::Utc) - sim.now()).num_seconds();
    assert!((3598..=3601).contains(&off), "date header off by {off}");

    let before = sim.now();
    let summary = sim.advance(Duration::from_secs(15 * 60));
    assert!(summary.touched("matters") > 0);
    // Stamps are 10 minutes behind true time: some changes land before `before`.
    let matters = sim.truth("matters");
    let changed: Vec<_> = matters
        .iter()
        .filter_map(|m| field_ts(m, "updated_at"))
        .filter(|t| *t > before - chrono::Duration::minutes(10))
        .collect();
    assert!(!changed.is_empty());
    assert!(
        changed
            .iter()
            .all(|t| *t <= sim.now() - chrono::Duration::minutes(9))
    );
    // An edit stamped now (with the skew) too.
    let id = matters[0]["id"].as_str().unwrap();
    sim.edit("matters", id, json!({"notes": "x"})).unwrap();
    let m = get(&sim, tok, &format!("/api/v2/matters/{id}"))
        .await
        .json();
    let stamped = field_ts(&m, "updated_at").unwrap();
    let lag = (sim.now() - stamped).num_seconds();
    assert!((599..=602).contains(&lag), "lag {lag}");
}

#[tokio::test]
async fn edit_during_listing_serves_the_old_version() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let before = sim.truth("tasks");
    let since = zulu(sim.now());
    sim.faults().add(Fault::EditDuringListing {
        resource: "tasks".into(),
        count: 1,
    });
    let served = get(&sim, tok, "/api/v2/tasks").await.array();
    assert_eq!(served, before, "the listing is the snapshot");
    let after = sim.truth("tasks");
    let changed: Vec<usize> = (0..after.len())
        .filter(|i| after[*i] != before[*i])
        .collect();
    assert_eq!(changed.len(), 1);
    assert!(
        changed[0] < served.len() / 2,
        "the edited record is in the first half"
    );
    // The next incremental call catches it.
    let caught = get(&sim, tok, &format!("/api/v2/tasks?updated_since={since}"))
        .await
        .array();
    assert_eq!(caught, vec![after[changed[0]].clone()]);
    // Spent: the next listing is untouched.
    get(&sim, tok, "/api/v2/tasks").await;
    assert_eq!(sim.truth("tasks"), after);
}

#[tokio::test]
async fn the_same_seed_builds_the_same_firm() {
    let frozen = SimConfig {
        frozen_clock: true,
        ..small()
    };
    let (a, b) = (spawn(frozen.clone()).await, spawn(frozen.clone()).await);
    let c = spawn(SimConfig {
        seed: 8,
        ..frozen.clone()
    })
    .await;
    for res in a.resources() {
        assert_eq!(a.truth(&res), b.truth(&res), "{res}");
    }
    assert_ne!(a.truth("accounts"), c.truth("accounts"));
    assert_ne!(a.truth("matters"), c.truth("matters"));
    // The same advances make the same changes.
    for _ in 0..3 {
        assert_eq!(
            a.advance(Duration::from_secs(1800)),
            b.advance(Duration::from_secs(1800))
        );
    }
    for res in a.resources() {
        assert_eq!(a.truth(&res), b.truth(&res), "{res} after advances");
    }
    // Scale changes volumes.
    let big = spawn(SimConfig {
        scale: 0.03,
        ..frozen
    })
    .await;
    assert!(big.truth("accounts").len() > a.truth("accounts").len() * 2);
}

#[tokio::test]
async fn seed_scale_volumes() {
    // At scale 1.0 the firm is the seed's: 11,171 accounts, invoices past the cap.
    let sim = spawn(SimConfig {
        scale: 1.0,
        ..quiet()
    })
    .await;
    let counts = sim.counts();
    assert_eq!(counts["accounts"], 11_171);
    assert!(
        counts["contacts"] > 11_171 && counts["contacts"] < 11_800,
        "{counts:?}"
    );
    assert!(
        counts["matters"] > 5_000 && counts["invoices"] > 2_500,
        "{counts:?}"
    );
    let tok = &access(&sim).await;
    assert_eq!(get(&sim, tok, "/api/v2/invoices").await.array().len(), 2500);
}

#[tokio::test]
async fn advancing_makes_changes_within_the_rates_and_updated_since_finds_exactly_them() {
    let sim = spawn(small()).await;
    let tok = &access(&sim).await;
    let before: Vec<(String, Vec<Value>)> = sim
        .resources()
        .into_iter()
        .map(|r| (r.clone(), sim.truth(&r)))
        .collect();
    let old = sim.now();

    // One 15-minute slot: at most 20 matters, 10 accounts, 5 tasks touched.
    let s = sim.advance(Duration::from_secs(15 * 60));
    assert!(
        s.touched("matters") <= 20 && s.touched("matters") >= 1,
        "{s:?}"
    );
    assert!(s.touched("accounts") <= 10 + 2, "{s:?}"); // + contact edits bumping accounts
    assert!(s.touched("tasks") <= 5, "{s:?}");

    // Four hours: totals near 16 slots of the seed's rates.
    let s4 = sim.advance(Duration::from_secs(4 * 3600));
    let m = s4.touched("matters");
    assert!((40..=320).contains(&m), "matters {m}");
    assert!((16..=170).contains(&s4.touched("accounts")), "{s4:?}");
    assert!((8..=80).contains(&s4.touched("tasks")), "{s4:?}");
    // Most matter and account changes are edits of existing records.
    let edited = |r: &str| s4.edited.get(r).copied().unwrap_or(0);
    assert!(
        edited("matters") >= 20 && edited("accounts") >= 8 && edited("tasks") >= 2,
        "{s4:?}"
    );
    assert!(
        edited("contacts") >= 4,
        "account edits reach their contacts: {s4:?}"
    );
    assert!(s4.touched("notes") > 0 && s4.touched("emails") > 0 && s4.touched("timeentries") > 0);
    assert!(
        s4.created.get("contacts").copied().unwrap_or(0) > 0,
        "new accounts bring contacts"
    );
    assert!(s4.deleted.values().sum::<u32>() >= 1, "{s4:?}");
    // Changes are stamped inside the interval.
    for res in ["matters", "tasks", "accounts"] {
        for r in sim.truth(res) {
            let u = field_ts(&r, "updated_at").unwrap();
            assert!(u <= sim.now(), "{res} stamped in the future");
        }
    }

    // updated_since=old returns exactly the records created or edited since, per resource.
    let mut total = ppsim::ChangeSummary::default();
    for sum in [&s, &s4] {
        for (map, into) in [
            (&sum.created, &mut total.created),
            (&sum.edited, &mut total.edited),
            (&sum.deleted, &mut total.deleted),
        ] {
            for (k, v) in map {
                *into.entry(k.clone()).or_default() += v;
            }
        }
    }
    for (res, old_truth) in &before {
        if res.starts_with("tags") || res == "messages" {
            continue;
        }
        let got = get(
            &sim,
            tok,
            &format!("/api/v2/{res}?updated_since={}", zulu(old)),
        )
        .await;
        assert_eq!(got.status, StatusCode::OK);
        let got_ids: BTreeSet<String> = got.ids().into_iter().collect();
        let now_truth = sim.truth(res);
        let old_by_id: std::collections::HashMap<String, &Value> = old_truth
            .iter()
            .map(|r| (r["id"].as_str().unwrap().to_owned(), r))
            .collect();
        let changed: BTreeSet<String> = now_truth
            .iter()
            .filter(|r| old_by_id.get(r["id"].as_str().unwrap()) != Some(r))
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        // Accounts: an embedded contact's edit changes the account without a field of its own.
        assert!(
            changed.is_subset(&got_ids),
            "{res}: changed records missing from updated_since"
        );
        let n = s.touched(res) + s4.touched(res);
        // Distinct across both advances can be fewer than the sum (a record edited in both).
        assert!(
            got_ids.len() as u32 <= n && got_ids.len() as u32 >= n.min(1).max(n / 2),
            "{res}: {} vs {n}",
            got_ids.len()
        );
        let gone = old_by_id
            .keys()
            .filter(|id| !now_truth.iter().any(|r| r["id"] == **id))
            .count();
        assert_eq!(
            gone as u32,
            total.deleted.get(res).copied().unwrap_or(0),
            "{res} deletions"
        );
    }
    // Deleted records 404 by id.
    if let Some((res, old_truth)) = before
        .iter()
        .find(|(r, _)| total.deleted.contains_key(r) && r != "contacts")
    {
        let now_ids: BTreeSet<String> = ids(&sim.truth(res)).into_iter().collect();
        let gone = old_truth
            .iter()
            .find(|r| !now_ids.contains(r["id"].as_str().unwrap()))
            .unwrap();
        let got = get(
            &sim,
            tok,
            &format!("/api/v2/{res}/{}", gone["id"].as_str().unwrap()),
        )
        .await;
        assert_eq!(got.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn one_advance_updated_since_is_exact() {
    let sim = spawn(small()).await;
    let tok = &access(&sim).await;
    let old = sim.now();
    let s = sim.advance(Duration::from_secs(3600));
    for res in [
        "matters",
        "accounts",
        "contacts",
        "tasks",
        "notes",
        "events",
        "emails",
        "timeentries",
    ] {
        let got = get(
            &sim,
            tok,
            &format!("/api/v2/{res}?updated_since={}", zulu(old)),
        )
        .await
        .ids();
        assert_eq!(got.len() as u32, s.touched(res), "{res}: {s:?}");
    }
}

#[tokio::test]
async fn set_updated_at_makes_ties() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let at = sim.now() + chrono::Duration::minutes(5);
    let tasks = sim.truth("tasks");
    for t in &tasks[..30] {
        sim.set_updated_at("tasks", t["id"].as_str().unwrap(), at)
            .unwrap();
    }
    let got = get(
        &sim,
        tok,
        &format!(
            "/api/v2/tasks?updated_since={}&$orderby=updated_at",
            zulu(at)
        ),
    )
    .await
    .array();
    assert_eq!(got.len(), 30);
    assert!(got.iter().all(|t| field_ts(t, "updated_at").unwrap() == at));
}

#[tokio::test]
async fn handle_create_edit_delete() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let acc = sim
        .create("accounts", json!({"primary_contact": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}}))
        .unwrap();
    assert_eq!(acc["display_name"], "Lovelace, Ada");
    assert_eq!(acc["primary_contact"]["display_name"], "Ada Lovelace");
    let aid = acc["id"].as_str().unwrap().to_owned();
    let extra = sim
        .create(
            "contacts",
            json!({"account_ref": {"id": aid}, "first_name": "Bo", "last_name": "Lovelace"}),
        )
        .unwrap();
    assert_eq!(extra["is_primary_contact"], false);
    let acc = get(&sim, tok, &format!("/api/v2/accounts/{aid}"))
        .await
        .json();
    assert_eq!(acc["other_contacts"][0], extra);

    let m = sim
        .create("matters", json!({"account_ref": {"id": aid, "display_name": "Lovelace, Ada"}, "name": "Engine", "number": 99999, "status": "Open",
            "created_at": "2020-01-01T00:00:00", "updated_at": "2020-01-02T00:00:00.5"}))
        .unwrap();
    assert_eq!(m["display_name"], "99999 - Engine");
    assert_eq!(m["updated_at"], "2020-01-02T00:00:00.5");
    assert!(m["tags"].as_array().unwrap().is_empty());
    let mid = m["id"].as_str().unwrap().to_owned();
    sim.edit("matters", &mid, json!({"status": "Closed"}))
        .unwrap();
    let m2 = get(&sim, tok, &format!("/api/v2/matters/{mid}"))
        .await
        .json();
    assert_eq!(m2["status"], "Closed");
    assert!(
        field_ts(&m2, "updated_at").unwrap()
            > chrono::Utc::now() - chrono::Duration::days(365 * 10)
    );

    sim.delete("accounts", &aid).unwrap();
    assert_eq!(
        get(&sim, tok, &format!("/api/v2/accounts/{aid}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let eid = extra["id"].as_str().unwrap();
    assert_eq!(
        get(&sim, tok, &format!("/api/v2/contacts/{eid}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(sim.delete("accounts", &aid).is_err());
    assert!(sim.create("nothing", json!({})).is_err());
    // Tags are keyed by name.
    sim.create("tags/matter", json!({"name": "Zeta"})).unwrap();
    assert_eq!(sim.truth("tags/matter").last().unwrap()["name"], "Zeta");
    sim.delete("tags/matter", "Zeta").unwrap();
}

#[tokio::test]
async fn control_api_over_http() {
    let sim = spawn(quiet()).await;
    let c = client();
    let u = |p: &str| format!("{}/_sim/{p}", sim.url());
    let g: Value = c
        .post(u("grant"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(g["client_id"], "ppsim-client");
    let (status, pair) = refresh(&sim, g["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let tok = pair["access_token"].as_str().unwrap();

    let clock: Value = c
        .get(u("clock"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(clock["now"].as_str().unwrap().starts_with("2026-11-02T14:"));
    let s: Value = c
        .post(u("advance"))
        .json(&json!({"minutes": 30}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(s["created"].is_object());
    assert!(sim.now() >= ts("2026-11-02T14:30:00"));

    let truth: Value = c
        .get(u("truth/customfields/matter"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(truth.as_array().unwrap().len(), 10);
    let rs: Vec<String> = c
        .get(u("resources"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(rs.contains(&"calllogs".to_owned()));

    let made: Value = c
        .post(u("records/calllogs"))
        .json(&json!({"subject": "Hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["id"].as_str().unwrap();
    let r = c
        .patch(u(&format!("records/calllogs/{id}")))
        .json(&json!({"subject": "Bye"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        get(&sim, tok, &format!("/api/v2/calllogs/{id}"))
            .await
            .json()["subject"],
        "Bye"
    );
    let cf = sim.truth("customfields/matter")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = c
        .patch(u(&format!("records/customfields/matter?id={cf}")))
        .json(&json!({"label": "L"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sim.truth("customfields/matter")[0]["label"], "L");
    let r = c
        .delete(u(&format!("records/calllogs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        get(&sim, tok, &format!("/api/v2/calllogs/{id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = c.post(u("updated-at")).json(&json!({"resource": "tasks", "id": sim.truth("tasks")[0]["id"], "at": "2030-01-01T00:00:00"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sim.truth("tasks")[0]["updated_at"], "2030-01-01T00:00:00");

    let r = c
        .post(u("faults"))
        .json(&json!({"ServerErrors": {"count": 1, "status": 502}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        get(&sim, tok, "/api/v2/items").await.status,
        StatusCode::BAD_GATEWAY
    );
    c.post(u("faults"))
        .json(&json!({"Latency": {"ms": 1}}))
        .send()
        .await
        .unwrap();
    let active: Vec<Fault> = c
        .get(u("faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(active, vec![Fault::Latency { ms: 1 }]);
    c.delete(u("faults")).send().await.unwrap();
    assert!(sim.faults().active().is_empty());

    let j: Vec<ppsim::JournalEntry> = c
        .get(u("journal"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(j.iter().all(|e| !e.path.starts_with("/_sim")));
    assert!(!j.is_empty());
    c.delete(u("journal")).send().await.unwrap();
    assert!(sim.journal().is_empty());

    c.post(u("expire-tokens")).send().await.unwrap();
    assert_eq!(
        get(&sim, tok, "/api/v2/items").await.status,
        StatusCode::UNAUTHORIZED
    );
    let rt = pair["refresh_token"].as_str().unwrap();
    c.post(u("revoke")).send().await.unwrap();
    assert_eq!(refresh(&sim, rt).await.0, StatusCode::BAD_REQUEST);
    let b: Value = c
        .get(u("budget"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(b["max_in_any_window"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn an_advance_names_what_it_created_and_deleted_and_pause_stops_it_over_http() {
    let sim = spawn(SimConfig {
        frozen_clock: true,
        rates: ChangeRates {
            deletions_per_hour: 20.0,
            ..ChangeRates::default()
        },
        ..small()
    })
    .await;
    let before: BTreeSet<String> = ids(&sim.truth("tasks")).into_iter().collect();
    let c = client();
    let u = |p: &str| format!("{}/_sim/{p}", sim.url());
    let s: ppsim::ChangeSummary = c
        .post(u("advance"))
        .json(&json!({"minutes": 120}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The ids add up to the counts, and are what appeared in and vanished from the truth.
    let mut deleted_any = false;
    for (res, n) in &s.created {
        assert_eq!(s.created_ids[res].len() as u32, *n, "{res}");
    }
    for (res, n) in &s.deleted {
        assert_eq!(s.deleted_ids[res].len() as u32, *n, "{res}");
        deleted_any = true;
    }
    assert!(deleted_any, "{s:?}");
    let after: BTreeSet<String> = ids(&sim.truth("tasks")).into_iter().collect();
    let set = |m: &std::collections::BTreeMap<String, Vec<String>>| -> BTreeSet<String> {
        m.get("tasks").into_iter().flatten().cloned().collect()
    };
    assert_eq!(
        after.difference(&before).cloned().collect::<BTreeSet<_>>(),
        set(&s.created_ids)
    );
    assert_eq!(
        before.difference(&after).cloned().collect::<BTreeSet<_>>(),
        set(&s.deleted_ids)
    );

    // Paused: the clock moves, nothing changes; resumed: changes again.
    let r = c
        .post(u("pause"))
        .json(&json!({"paused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let t0 = sim.now();
    let s: ppsim::ChangeSummary = c
        .post(u("advance"))
        .json(&json!({"minutes": 60}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s, ppsim::ChangeSummary::default());
    assert_eq!(sim.now() - t0, chrono::Duration::minutes(60));
    assert_eq!(
        ids(&sim.truth("tasks"))
            .into_iter()
            .collect::<BTreeSet<_>>(),
        after
    );
    let r = c
        .post(u("pause"))
        .json(&json!({"paused": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    c.post(u("pause"))
        .json(&json!({"paused": false}))
        .send()
        .await
        .unwrap();
    assert_ne!(
        sim.advance(Duration::from_secs(3600)),
        ppsim::ChangeSummary::default()
    );

    // The by-id renderings, as `GET /{resource}/{id}` answers them.
    let by_id: Value = c
        .get(u("truth-by-id/emails"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_id.as_array().unwrap(), &sim.truth_by_id("emails"));
    assert_ne!(by_id.as_array().unwrap(), &sim.truth("emails"));
}
