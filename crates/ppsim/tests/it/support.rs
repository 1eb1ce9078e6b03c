//! Shared helpers: a small sim, a token, and GETs with reqwest.
#![allow(dead_code)]

use chrono::{DateTime, NaiveDateTime, Utc};
use ppsim::{ChangeRates, FirmHandle, Sim, SimConfig, SimHandle};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub fn small() -> SimConfig {
    SimConfig {
        scale: 0.01,
        budget_limit: 0,
        ..SimConfig::default()
    }
}

/// `small()` with the change generator off.
pub fn quiet() -> SimConfig {
    SimConfig {
        rates: ChangeRates::none(),
        ..small()
    }
}

pub async fn spawn(cfg: SimConfig) -> SimHandle {
    Sim::spawn(cfg).await.expect("sim spawns")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// POST /oauth/token with a form.
pub async fn token_call(sim: &SimHandle, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = client()
        .post(format!("{}/oauth/token", sim.url()))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn refresh(sim: &SimHandle, refresh_token: &str) -> (StatusCode, Value) {
    let (id, secret) = (sim.client_id(), sim.client_secret());
    token_call(
        sim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await
}

/// A fresh access token.
pub async fn access(sim: &SimHandle) -> String {
    let (status, body) = refresh(sim, &sim.grant()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// An access token for one firm of a multi-firm sim.
pub async fn firm_access(sim: &SimHandle, firm: &FirmHandle) -> String {
    let (id, secret, rt) = (firm.client_id(), firm.client_secret(), firm.grant());
    let (status, body) = token_call(
        sim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn array(&self) -> Vec<Value> {
        match self.json() {
            Value::Array(a) => a,
            other => panic!("not an array: {other}"),
        }
    }

    pub fn ids(&self) -> Vec<String> {
        ids(&self.array())
    }
}

/// GET `{url}{path_and_query}` with a bearer token (the query is sent as written).
pub async fn get(sim: &SimHandle, tok: &str, path_and_query: &str) -> Got {
    let r = client()
        .get(format!("{}{}", sim.url(), path_and_query))
        .bearer_auth(tok)
        .send()
        .await
        .expect("request");
    Got {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.bytes().await.expect("body"),
    }
}

pub fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            r.get("id")
                .or_else(|| r.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// Parses an API timestamp (no offset = UTC; `Z`; `+00:00`).
pub fn ts(s: &str) -> DateTime<Utc> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return t.with_timezone(&Utc);
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("bad timestamp {s:?}: {e}"))
        .and_utc()
}

pub fn field_ts(r: &Value, f: &str) -> Option<DateTime<Utc>> {
    r.get(f).and_then(Value::as_str).map(ts)
}

/// `2026-11-02T14:00:00.1234567Z`-style rendering for queries.
pub fn zulu(t: DateTime<Utc>) -> String {
    use chrono::Timelike;
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.nanosecond() / 100
    )
}
