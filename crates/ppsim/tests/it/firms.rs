//! Several firms in one sim: separate data, credentials, tokens, budgets, faults and journals;
//! one clock; firm 0 identical to a single-firm sim.

use std::time::Duration;

use crate::support::*;
use ppsim::{ChangeRates, Fault, FirmHandle, SimConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn multi(firms: u32) -> SimConfig {
    SimConfig {
        firms,
        frozen_clock: true,
        ..small()
    }
}

/// An access token for `firm`, through `/oauth/token` with the firm's own credentials.
fn all_truths(sim_firm: &FirmHandle, resources: &[String]) -> Vec<Vec<Value>> {
    resources.iter().map(|r| sim_firm.truth(r)).collect()
}

#[tokio::test]
async fn firm_zero_is_the_single_firm_and_every_firm_is_deterministic() {
    let single = spawn(SimConfig {
        frozen_clock: true,
        ..small()
    })
    .await;
    let a = spawn(multi(3)).await;
    let b = spawn(multi(3)).await;
    assert_eq!(single.firms(), 1);
    assert_eq!(a.firms(), 3);
    let resources = single.resources();

    // Firm 0 == the single firm, record for record, and through the old handle methods too.
    assert_eq!(
        all_truths(&a.firm(0), &resources),
        all_truths(&single.firm(0), &resources)
    );
    for r in &resources {
        assert_eq!(a.truth(r), single.truth(r), "{r}");
    }
    assert_eq!(a.client_id(), "ppsim-client");
    assert_eq!(a.client_secret(), "ppsim-secret");
    assert_eq!(a.firm(1).client_id(), "ppsim-client-2");
    assert_eq!(a.firm(1).client_secret(), "ppsim-secret-2");
    assert_eq!(a.firm(2).client_id(), "ppsim-client-3");

    // Every firm is deterministic: same (seed, k, scale) → same records.
    for k in 0..3 {
        assert_eq!(
            all_truths(&a.firm(k), &resources),
            all_truths(&b.firm(k), &resources),
            "firm {k}"
        );
    }
    // ...and firm k is what a single-firm sim seeded with firm_seed(seed, k) builds.
    let seeded = spawn(SimConfig {
        seed: ppsim::firm_seed(7, 2),
        frozen_clock: true,
        ..small()
    })
    .await;
    assert_eq!(a.firm(2).seed(), ppsim::firm_seed(7, 2));
    assert_eq!(seeded.truth("matters"), a.firm(2).truth("matters"));

    // The firms differ: no matter, account or task id in common.
    for r in ["matters", "accounts", "tasks", "users"] {
        let sets: Vec<std::collections::BTreeSet<String>> = (0..3)
            .map(|k| ids(&a.firm(k).truth(r)).into_iter().collect())
            .collect();
        for i in 0..3 {
            assert!(!sets[i].is_empty(), "{r} of firm {i}");
            for j in i + 1..3 {
                assert!(
                    sets[i].is_disjoint(&sets[j]),
                    "{r}: firms {i} and {j} share ids"
                );
            }
        }
    }
    assert_ne!(a.firm(0).truth("matters"), a.firm(1).truth("matters"));

    // Advances: the same change streams in both multi-firm sims, and firm 0's is the single's.
    let d = Duration::from_secs(3600);
    let s = single.advance(d);
    let sa = a.advance_firms(d);
    let sb = b.advance_firms(d);
    assert_eq!(sa.len(), 3);
    assert_eq!(sa, sb);
    assert_eq!(sa[0], s);
    for r in &resources {
        assert_eq!(a.truth(r), single.truth(r), "{r} after advance");
    }
    for k in 0..3 {
        assert_eq!(
            all_truths(&a.firm(k), &resources),
            all_truths(&b.firm(k), &resources),
            "firm {k} after advance"
        );
    }
}

#[tokio::test]
async fn each_firms_token_sees_only_its_own_records() {
    let sim = spawn(SimConfig {
        rates: ChangeRates::none(),
        ..multi(3)
    })
    .await;
    let mut tokens = vec![];
    for f in sim.all_firms() {
        let tok = firm_access(&sim, &f).await;
        for r in ["matters", "accounts", "customfields/matter", "tags/matter"] {
            let got = get(&sim, &tok, &format!("/api/v2/{r}")).await;
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(got.array(), f.truth(r), "firm {} {r}", f.index());
        }
        tokens.push(tok);
    }
    // `/users/me` is the firm's own user.
    for (k, tok) in tokens.iter().enumerate() {
        let me = get(&sim, tok, "/api/v2/users/me").await.json();
        let users = ids(&sim.firm(k as u32).truth("users"));
        assert!(users.contains(&me["id"].as_str().unwrap().to_owned()));
    }
    // Another firm's record id is a 404, its own a 200.
    let m0 = sim.firm(0).truth("matters")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = get(&sim, &tokens[1], &format!("/api/v2/matters/{m0}")).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    let got = get(&sim, &tokens[0], &format!("/api/v2/matters/{m0}")).await;
    assert_eq!(got.status, StatusCode::OK);

    // A firm's refresh token is worthless with another firm's client credentials...
    let rt0 = sim.firm(0).grant();
    let f1 = sim.firm(1);
    let (status, body) = token_call(
        &sim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt0),
            ("client_id", &f1.client_id()),
            ("client_secret", &f1.client_secret()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"error": "invalid_grant"}));
    // ...and one firm's id with another's secret is an invalid client.
    let (status, body) = token_call(
        &sim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &f1.grant()),
            ("client_id", &f1.client_id()),
            ("client_secret", &sim.client_secret()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"error": "invalid_client"}));

    // Expiring firm 1's access tokens leaves the other firms' alone.
    f1.faults().expire_access_tokens();
    let got = get(&sim, &tokens[1], "/api/v2/matters?$top=1").await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    for k in [0, 2] {
        let got = get(&sim, &tokens[k], "/api/v2/matters?$top=1").await;
        assert_eq!(got.status, StatusCode::OK, "firm {k}");
    }
    // The 401 is firm 1's: journaled and budgeted there.
    let last = f1.journal().pop().unwrap();
    assert_eq!((last.status, last.firm), (401, 1));

    // Writes through a firm handle land in that firm only.
    let made = f1
        .create("matters", json!({"name": "Only in firm 1"}))
        .unwrap();
    let id = made["id"].as_str().unwrap();
    assert!(ids(&f1.truth("matters")).contains(&id.to_owned()));
    assert!(!ids(&sim.truth("matters")).contains(&id.to_owned()));
    let tok1 = firm_access(&sim, &f1).await;
    let got = get(&sim, &tok1, &format!("/api/v2/matters/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    let got = get(&sim, &tokens[0], &format!("/api/v2/matters/{id}")).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    f1.delete("matters", id).unwrap();
    assert!(!ids(&f1.truth("matters")).contains(&id.to_owned()));
}

#[tokio::test]
async fn budgets_faults_and_journals_are_per_firm() {
    let sim = spawn(SimConfig {
        budget_limit: 4,
        rates: ChangeRates::none(),
        ..multi(2)
    })
    .await;
    let (f0, f1) = (sim.firm(0), sim.firm(1));
    let t0 = firm_access(&sim, &f0).await; // 1 counted request each
    let t1 = firm_access(&sim, &f1).await;
    for _ in 0..3 {
        assert_eq!(get(&sim, &t0, "/api/v2/items").await.status, StatusCode::OK);
    }
    // Firm 0 is spent; firm 1 is not.
    assert_eq!(
        get(&sim, &t0, "/api/v2/items").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..3 {
        assert_eq!(get(&sim, &t1, "/api/v2/items").await.status, StatusCode::OK);
    }
    assert_eq!(
        get(&sim, &t1, "/api/v2/items").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(f0.max_requests_in_any_window(), 4);
    assert_eq!(f1.max_requests_in_any_window(), 4);
    assert_eq!(sim.max_requests_in_any_window(), 4);
    assert_eq!(f1.requests_in_window(), 4);

    // Journals: the global one holds both, tagged; each firm's holds its own.
    let all = sim.journal();
    assert_eq!(all.len(), 10);
    let j0 = f0.journal();
    let j1 = f1.journal();
    assert_eq!((j0.len(), j1.len()), (5, 5));
    assert!(j0.iter().all(|e| e.firm == 0) && j1.iter().all(|e| e.firm == 1));
    assert_eq!(j0[0].path, "/oauth/token");
    assert_eq!(j1[0].path, "/oauth/token");
    // The control API splits it the same way.
    let remote: Vec<ppsim::JournalEntry> = client()
        .get(format!("{}/_sim/journal?firm=1", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(remote, j1);
    // An entry without `firm` (an older journal) reads as firm 0.
    let mut old = serde_json::to_value(&j1[0]).unwrap();
    old.as_object_mut().unwrap().remove("firm");
    let e: ppsim::JournalEntry = serde_json::from_value(old).unwrap();
    assert_eq!(e.firm, 0);
    f1.clear_journal();
    assert!(f1.journal().is_empty());
    assert_eq!(f0.journal(), j0);
    sim.clear_journal();
    assert!(sim.journal().is_empty());

    // Faults are per firm.
    sim.advance(Duration::from_secs(600)); // refill both budgets
    f1.faults().add(Fault::ServerErrors {
        count: 1,
        status: 503,
    });
    assert_eq!(get(&sim, &t0, "/api/v2/items").await.status, StatusCode::OK);
    assert_eq!(
        get(&sim, &t1, "/api/v2/items").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&sim, &t1, "/api/v2/items").await.status, StatusCode::OK);
    assert!(f0.faults().active().is_empty());
}

#[tokio::test]
async fn advance_changes_every_firm() {
    let sim = spawn(multi(4)).await;
    let before = sim.now();
    let sums = sim.advance_firms(Duration::from_secs(2 * 3600));
    assert_eq!(sums.len(), 4);
    let since = zulu(before);
    for (k, s) in sums.iter().enumerate() {
        let f = sim.firm(k as u32);
        let tok = firm_access(&sim, &f).await;
        let got = get(
            &sim,
            &tok,
            &format!("/api/v2/matters?updated_since={since}"),
        )
        .await;
        assert_eq!(got.status, StatusCode::OK);
        assert!(s.touched("matters") > 0, "firm {k}: {s:?}");
        assert_eq!(got.array().len(), s.touched("matters") as usize, "firm {k}");
    }
    // Each firm has its own change stream.
    assert_ne!(sums[0], sums[1]);
    // A plain advance moves every firm too, and reports firm 0.
    let before = sim.now();
    let s0 = sim.advance(Duration::from_secs(3600));
    assert!(s0.touched("matters") > 0);
    for k in 0..4 {
        let changed = sim
            .firm(k)
            .truth("matters")
            .iter()
            .filter(|m| field_ts(m, "updated_at").is_some_and(|t| t >= before))
            .count();
        assert!(changed > 0, "firm {k}");
    }
}

#[tokio::test]
async fn control_api_takes_a_firm_parameter() {
    let sim = spawn(SimConfig {
        rates: ChangeRates::none(),
        ..multi(2)
    })
    .await;
    let c = client();
    let url = sim.url();
    let firms: Value = c
        .get(format!("{url}/_sim/firms"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(firms.as_array().unwrap().len(), 2);
    assert_eq!(firms[1]["client_id"], "ppsim-client-2");
    assert_eq!(firms[1]["client_secret"], "ppsim-secret-2");
    assert_eq!(firms[0]["seed"], 7);

    // A grant for firm 1 works with firm 1's credentials.
    let g: Value = c
        .post(format!("{url}/_sim/grant?firm=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(g["client_id"], "ppsim-client-2");
    let (status, body) = token_call(
        &sim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", g["refresh_token"].as_str().unwrap()),
            ("client_id", "ppsim-client-2"),
            ("client_secret", "ppsim-secret-2"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tok1 = body["access_token"].as_str().unwrap().to_owned();

    // Truth, records and faults for firm 1.
    let truth: Value = c
        .get(format!("{url}/_sim/truth/matters?firm=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(truth.as_array().unwrap(), &sim.firm(1).truth("matters"));
    let made: Value = c
        .post(format!("{url}/_sim/records/matters?firm=1"))
        .json(&json!({"name": "Remote"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(ids(&sim.firm(1).truth("matters")).contains(&id));
    assert!(!ids(&sim.truth("matters")).contains(&id));
    let r = c
        .delete(format!("{url}/_sim/records/matters/{id}?firm=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!ids(&sim.firm(1).truth("matters")).contains(&id));

    let r = c
        .post(format!("{url}/_sim/faults?firm=1"))
        .json(&json!({"HtmlError": {"count": 1, "status": 500}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sim.firm(1).faults().active().len(), 1);
    assert!(sim.faults().active().is_empty());
    let got = get(&sim, &tok1, "/api/v2/items").await;
    assert_eq!(got.status, StatusCode::INTERNAL_SERVER_ERROR);

    let budget: Value = c
        .get(format!("{url}/_sim/budget?firm=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(budget["in_window"], 2);
    let budget: Value = c
        .get(format!("{url}/_sim/budget"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(budget["in_window"], 0);

    // An unknown firm is a 404.
    for bad in ["2", "x", "-1"] {
        let r = c
            .get(format!("{url}/_sim/truth/matters?firm={bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{bad}");
    }
}

#[tokio::test]
async fn ten_small_firms_spawn_quickly() {
    let t = std::time::Instant::now();
    let sim = spawn(SimConfig {
        firms: 10,
        ..small()
    })
    .await;
    let took = t.elapsed();
    assert_eq!(sim.firms(), 10);
    eprintln!("10 firms at scale 0.01 built in {took:?}");
    // ~1.2 s on 2 cores in a debug build; generous so a loaded parallel test run cannot flake.
    assert!(took < Duration::from_secs(15), "10 firms took {took:?}");
    let t = std::time::Instant::now();
    let sums = sim.advance_firms(Duration::from_secs(15 * 60));
    assert_eq!(sums.len(), 10);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
#[should_panic(expected = "out of range")]
fn firm_out_of_range_panics() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(spawn(small()));
    let _ = sim.firm(1);
}
