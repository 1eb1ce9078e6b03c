//! OAuth (authorize, code exchange, rotation, reuse, expiry, revocation), 401s and the budget.

use std::time::Duration;

use crate::support::*;
use ppsim::SimConfig;
use reqwest::StatusCode;

#[tokio::test]
async fn authorize_redirects_with_code_and_state_and_code_is_single_use() {
    let sim = spawn(small()).await;
    let r = client()
        .get(format!(
            "{}/OAuth/Authorize?response_type=code&client_id=ppsim-client&redirect_uri=http%3A%2F%2Flocalhost%3A9%2Fcb&state=st%2F1",
            sim.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(loc.path(), "/cb");
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st/1");
    let code = q["code"].clone();

    let form = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("client_id", "ppsim-client".to_owned()),
            ("client_secret", "ppsim-secret".to_owned()),
            ("redirect_uri", "http://localhost:9/cb".to_owned()),
        ]
    };
    let f = form(&code);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = token_call(&sim, &f).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 86400);
    assert!(body["access_token"].as_str().unwrap().len() > 100);
    assert_eq!(body["refresh_token"].as_str().unwrap().len(), 32);
    let tok = body["access_token"].as_str().unwrap();
    assert_eq!(
        get(&sim, tok, "/api/v2/users/me").await.status,
        StatusCode::OK
    );

    // The code is spent.
    let (status, body) = token_call(&sim, &f).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");

    // Wrong client secret.
    let (status, body) = token_call(
        &sim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &sim.grant()),
            ("client_id", "ppsim-client"),
            ("client_secret", "nope"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_client");

    // Bad client on authorize.
    let r = client()
        .get(format!(
            "{}/oauth/authorize?response_type=code&client_id=x&redirect_uri=http://l/&state=s",
            sim.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_is_invalid_grant() {
    let sim = spawn(small()).await;
    let first = sim.grant();
    let (status, a) = refresh(&sim, &first).await;
    assert_eq!(status, StatusCode::OK);
    let second = a["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);

    let (status, body) = refresh(&sim, &first).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, serde_json::json!({"error": "invalid_grant"}));

    let (status, body) = refresh(&sim, "0123456789abcdef0123456789abcdef").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    let (status, b) = refresh(&sim, &second).await;
    assert_eq!(status, StatusCode::OK);
    // Both access tokens stay valid until they expire.
    for t in [&a["access_token"], &b["access_token"]] {
        let got = get(&sim, t.as_str().unwrap(), "/api/v2/items").await;
        assert_eq!(got.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn missing_bad_expired_and_revoked_tokens_get_401() {
    let cfg = SimConfig {
        access_token_ttl: Duration::from_secs(3600),
        rates: ppsim::ChangeRates::none(),
        ..small()
    };
    let sim = spawn(cfg).await;
    let denied = serde_json::json!({"message": "Authorization has been denied for this request."});

    let r = client()
        .get(format!("{}/api/v2/matters", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), denied);

    let got = get(&sim, "not-a-token", "/api/v2/matters").await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert_eq!(got.json(), denied);

    // The scheme is case-insensitive.
    let tok = access(&sim).await;
    let r = client()
        .get(format!("{}/api/v2/matters?$top=1", sim.url()))
        .header("Authorization", format!("BEARER {tok}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Expiry on the sim clock (expires_in = 3600 here).
    let (_, pair) = refresh(&sim, &sim.grant()).await;
    assert_eq!(pair["expires_in"], 3600);
    let t = pair["access_token"].as_str().unwrap();
    sim.advance(Duration::from_secs(3601));
    assert_eq!(
        get(&sim, t, "/api/v2/matters").await.status,
        StatusCode::UNAUTHORIZED
    );

    // expire_access_tokens: access dies, refresh survives.
    let rt = sim.grant();
    let tok = access(&sim).await;
    sim.faults().expire_access_tokens();
    assert_eq!(
        get(&sim, &tok, "/api/v2/matters").await.status,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = refresh(&sim, &rt).await;
    assert_eq!(status, StatusCode::OK);

    // revoke_all: both die.
    let rt = sim.grant();
    let tok = access(&sim).await;
    sim.faults().revoke_all();
    assert_eq!(
        get(&sim, &tok, "/api/v2/matters").await.status,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = refresh(&sim, &rt).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn budget_answers_429_with_retry_after_and_refills() {
    let cfg = SimConfig {
        budget_limit: 5,
        budget_window: Duration::from_secs(300),
        rates: ppsim::ChangeRates::none(),
        ..small()
    };
    let sim = spawn(cfg).await;
    let tok = access(&sim).await; // the token call counts: 1
    for _ in 0..4 {
        assert_eq!(
            get(&sim, &tok, "/api/v2/items").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(sim.requests_in_window(), 5);
    for _ in 0..3 {
        let got = get(&sim, &tok, "/api/v2/items").await;
        assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS);
        let secs: u64 = got.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((295..=300).contains(&secs), "retry-after {secs}");
        assert!(got.json()["message"].is_string());
    }
    // Token calls are refused too, and refusals don't count.
    let (status, _) = refresh(&sim, &sim.grant()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(sim.requests_in_window(), 5);
    assert_eq!(sim.max_requests_in_any_window(), 5);

    sim.advance(Duration::from_secs(300));
    assert_eq!(sim.requests_in_window(), 0);
    assert_eq!(
        get(&sim, &tok, "/api/v2/items").await.status,
        StatusCode::OK
    );
    assert_eq!(sim.max_requests_in_any_window(), 5);
    let statuses: Vec<u16> = sim.journal().iter().map(|j| j.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 4);
}

#[tokio::test]
async fn retry_after_tracks_the_oldest_request_in_the_window() {
    let cfg = SimConfig {
        budget_limit: 2,
        budget_window: Duration::from_secs(60),
        rates: ppsim::ChangeRates::none(),
        ..small()
    };
    let sim = spawn(cfg).await;
    let tok = access(&sim).await;
    sim.advance(Duration::from_secs(50));
    assert_eq!(
        get(&sim, &tok, "/api/v2/items").await.status,
        StatusCode::OK
    );
    let got = get(&sim, &tok, "/api/v2/items").await;
    assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = got.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((9..=10).contains(&secs), "retry-after {secs}");
    sim.advance(Duration::from_secs(secs));
    assert_eq!(
        get(&sim, &tok, "/api/v2/items").await.status,
        StatusCode::OK
    );
    assert_eq!(sim.max_requests_in_any_window(), 2);
}

#[tokio::test]
async fn journal_records_every_api_request_but_not_control_calls() {
    let sim = spawn(small()).await;
    let tok = access(&sim).await;
    client()
        .post(format!("{}/_sim/grant", sim.url()))
        .send()
        .await
        .unwrap();
    get(
        &sim,
        &tok,
        "/api/v2/Matters?updated_since=2026-11-01T00:00:00%2B00:00&$top=2",
    )
    .await;
    let j = sim.journal();
    assert_eq!(j.len(), 2, "{j:?}");
    assert_eq!(
        (j[0].method.as_str(), j[0].path.as_str(), j[0].status),
        ("POST", "/oauth/token", 200)
    );
    assert_eq!(j[1].path, "/api/v2/Matters");
    assert_eq!(
        j[1].query,
        "updated_since=2026-11-01T00:00:00%2B00:00&$top=2"
    );
    assert!(j[1].at >= sim.now() - chrono::Duration::seconds(5));
    sim.clear_journal();
    assert!(sim.journal().is_empty());
}
