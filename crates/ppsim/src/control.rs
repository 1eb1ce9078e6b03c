//! `/_sim/*`: the control API for tests in other processes. Never journaled, never budgeted.
//!
//! Every route takes an optional `?firm=k` (0-based; an unknown firm is 404) and acts on that
//! firm, firm 0 without it; except `/clock` (shared), `/advance` (advances every firm, answers
//! firm k's summary), `/journal` (without `firm`: every firm's entries / clear them all) and
//! `/firms`.
//!
//! | method | path | body / answer |
//! | --- | --- | --- |
//! | GET | `/_sim/clock` | `{"now": "...Z"}` |
//! | GET | `/_sim/firms` | `[{"firm", "client_id", "client_secret", "seed"}]` |
//! | POST | `/_sim/advance` | `{"minutes": N}` (or `"seconds"`) → ChangeSummary |
//! | POST | `/_sim/grant` | → `{"refresh_token", "client_id", "client_secret"}` |
//! | GET / DELETE | `/_sim/journal` | the journal / clear it |
//! | GET | `/_sim/truth/{resource}` | every live record, as the list renders it |
//! | GET | `/_sim/truth-by-id/{resource}` | every live record, as `GET /{resource}/{id}` renders it |
//! | POST | `/_sim/pause` | `{"paused": bool}`: stop (or resume) every firm's change generator; the clock still moves |
//! | GET | `/_sim/resources` | every list resource name |
//! | GET | `/_sim/budget` | `{"limit", "in_window", "max_in_any_window"}` |
//! | GET / POST / DELETE | `/_sim/faults` | the active faults / add one (a Fault as JSON) / clear |
//! | POST | `/_sim/expire-tokens`, `/_sim/revoke` | |
//! | POST | `/_sim/records/{resource}` | create → the rendered record |
//! | PATCH / DELETE | `/_sim/records/{resource}/{id}` or `/_sim/records/{resource}?id=ID` | edit (merge) / delete |
//! | POST | `/_sim/updated-at` | `{"resource", "id", "at"}` |
//! | GET | `/_sim/dialect` | `{"endpoints": {"matters": Dialect, ...}, "retry_after", "budget": {"limit", "window_secs"}}` |
//! | POST | `/_sim/dialect` | `{"endpoint"?, ...DialectPatch, "retry_after"?, "budget_limit"?, "budget_window_secs"?}` → as GET |
//! | DELETE | `/_sim/dialect` | every endpoint to its default, `Retry-After` on, the configured budget → as GET |

// Handlers return a finished error response early (`Err(Response)`); boxing it buys nothing.
#![allow(clippy::result_large_err)]

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::dialect::DialectPatch;
use crate::faults::Fault;
use crate::model::Res;
use crate::respond::json_response;
use crate::time::{TsStyle, format_ts, parse_ts};
use crate::{Firm, Shared, resource_named as resource};

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, v.to_string())
}

fn err(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    json_response(status, json!({ "error": msg.to_string() }).to_string())
}

pub async fn handle(sh: &Shared, req: Request, lower: &str, query: &str) -> Response {
    let method = req.method().clone();
    // Keep the original case for record ids and tag names.
    let path = req.uri().path().to_owned();
    let body = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let json_body = || -> Result<Value, Response> {
        if body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&body)
            .map_err(|e| err(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
    };
    let rest = &lower["/_sim".len()..];
    let orig_rest = &path["/_sim".len()..];
    // `?firm=k` picks the firm; absent, firm 0 (the journal: every firm).
    let firm_param = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("firm"))
        .map(|(_, v)| v.into_owned());
    let firm_k = match firm_param.as_deref().map(|v| v.trim().parse::<u32>()) {
        None => None,
        Some(Ok(k)) if sh.firm(k).is_some() => Some(k),
        Some(_) => {
            return err(
                StatusCode::NOT_FOUND,
                format!(
                    "no firm {:?}: firms are 0..{}",
                    firm_param.unwrap_or_default(),
                    sh.firms.len()
                ),
            );
        }
    };
    let shared = sh;
    let sh = sh.firm(firm_k.unwrap_or(0)).expect("firm checked");
    let result = match (&method, rest) {
        (&Method::GET, "/clock") => Ok(ok(json!({
            "now": format_ts(sh.clock.now(), TsStyle::Zulu7),
        }))),
        (&Method::GET, "/firms") => Ok(ok(json!(
            shared
                .firms
                .iter()
                .map(|f| json!({
                    "firm": f.k,
                    "client_id": f.client_id,
                    "client_secret": f.client_secret,
                    "seed": crate::firm_seed(shared.cfg.seed, f.k),
                }))
                .collect::<Vec<_>>()
        ))),
        (&Method::POST, "/advance") => json_body().map(|b| {
            let secs = b.get("minutes").and_then(Value::as_f64).unwrap_or(0.0) * 60.0
                + b.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
            let d = std::time::Duration::from_secs_f64(secs.max(0.0));
            let mut all = shared.advance(d);
            ok(serde_json::to_value(all.swap_remove(sh.k as usize)).unwrap_or_default())
        }),
        (&Method::POST, "/grant") => Ok(ok(json!({
            "refresh_token": sh.grant(),
            "client_id": sh.client_id,
            "client_secret": sh.client_secret,
        }))),
        (&Method::GET, "/journal") => {
            let j = shared.journal(firm_k);
            Ok(ok(serde_json::to_value(j).unwrap_or_default()))
        }
        (&Method::DELETE, "/journal") => {
            shared.clear_journal(firm_k);
            Ok(ok(json!({})))
        }
        (&Method::GET, "/resources") => Ok(ok(json!(Res::ALL.map(|r| r.name())))),
        (&Method::GET, "/budget") => {
            let now = sh.clock.now();
            let mut b = sh.budget();
            Ok(ok(json!({
                "limit": b.limit(),
                "in_window": b.in_window(now),
                "max_in_any_window": b.max_in_any_window(),
            })))
        }
        (&Method::GET, "/faults") => Ok(ok(
            serde_json::to_value(sh.faults.active()).unwrap_or_default()
        )),
        (&Method::POST, "/faults") => json_body().and_then(|b| {
            let f: Fault = serde_json::from_value(b)
                .map_err(|e| err(StatusCode::BAD_REQUEST, format!("not a Fault: {e}")))?;
            sh.faults.add(f);
            Ok(ok(json!({})))
        }),
        (&Method::DELETE, "/faults") => {
            sh.faults.clear();
            Ok(ok(json!({})))
        }
        (&Method::POST, "/expire-tokens") => {
            sh.faults.expire_access_tokens();
            Ok(ok(json!({})))
        }
        (&Method::POST, "/revoke") => {
            sh.faults.revoke_all();
            Ok(ok(json!({})))
        }
        (&Method::POST, "/updated-at") => json_body().and_then(|b| {
            let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let res = resource(&s("resource")).map_err(|e| err(StatusCode::NOT_FOUND, e))?;
            let at = parse_ts(&s("at"))
                .ok_or_else(|| err(StatusCode::BAD_REQUEST, "at is not a timestamp"))?;
            sh.world()
                .store
                .set_updated(res, &s("id"), at)
                .map_err(|e| err(StatusCode::NOT_FOUND, e))?;
            Ok(ok(json!({})))
        }),
        (&Method::GET, "/dialect") => Ok(ok(sh.dialect_json())),
        (&Method::POST, "/dialect") => json_body().and_then(|b| set_dialect(sh, b)),
        (&Method::DELETE, "/dialect") => {
            sh.reset_dialect(&shared.cfg);
            Ok(ok(sh.dialect_json()))
        }
        (&Method::POST, "/pause") => json_body().and_then(|b| {
            let paused = b.get("paused").and_then(Value::as_bool).ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    "the body needs \"paused\": true or false",
                )
            })?;
            shared
                .paused
                .store(paused, std::sync::atomic::Ordering::Relaxed);
            Ok(ok(json!({ "paused": paused })))
        }),
        (&Method::GET, r) if r.starts_with("/truth/") => {
            match Res::from_name(&r["/truth/".len()..]) {
                Some(res) => Ok(json_array(sh.truth_bytes(res))),
                None => Err(err(StatusCode::NOT_FOUND, "unknown resource")),
            }
        }
        (&Method::GET, r) if r.starts_with("/truth-by-id/") => {
            match Res::from_name(&r["/truth-by-id/".len()..]) {
                Some(res) => Ok(json_array(sh.truth_by_id_bytes(res))),
                None => Err(err(StatusCode::NOT_FOUND, "unknown resource")),
            }
        }
        (m, r) if r.starts_with("/records/") => {
            records(sh, m, &orig_rest["/records/".len()..], query, json_body)
        }
        _ => Err(err(
            StatusCode::NOT_FOUND,
            format!("no control route {method} {lower}"),
        )),
    };
    result.unwrap_or_else(|e| e)
}

/// Rendered records joined into one JSON array.
fn json_array<C: AsRef<[u8]>>(chunks: Vec<C>) -> Response {
    let mut out = Vec::new();
    out.push(b'[');
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(c.as_ref());
    }
    out.push(b']');
    json_response(StatusCode::OK, out)
}

/// `POST /_sim/dialect`: checks the whole body before changing anything.
fn set_dialect(sh: &Firm, body: Value) -> Result<Response, Response> {
    let bad = |msg: String| err(StatusCode::BAD_REQUEST, msg);
    let Value::Object(mut b) = body else {
        return Err(bad("the body must be a JSON object".into()));
    };
    const OTHERS: [&str; 4] = [
        "endpoint",
        "retry_after",
        "budget_limit",
        "budget_window_secs",
    ];
    if let Some(k) = b
        .keys()
        .find(|k| !OTHERS.contains(&k.as_str()) && !DialectPatch::FIELDS.contains(&k.as_str()))
    {
        return Err(bad(format!(
            "unknown field {k:?}; known: {}, {}",
            DialectPatch::FIELDS.join(", "),
            OTHERS.join(", ")
        )));
    }
    let endpoint = match b.remove("endpoint") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(e),
        Some(v) => return Err(bad(format!("endpoint must be a string, not {v}"))),
    };
    let res = crate::endpoint_named(endpoint.as_deref()).map_err(|e| bad(format!("{e:#}")))?;
    let retry_after = match b.remove("retry_after") {
        None => None,
        Some(Value::Bool(on)) => Some(on),
        Some(v) => return Err(bad(format!("retry_after must be a boolean, not {v}"))),
    };
    let limit = match b.remove("budget_limit") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(format!("budget_limit must be a count, not {v}")))?,
        ),
    };
    let window = match b.remove("budget_window_secs") {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(std::time::Duration::from_secs_f64)
                .ok_or_else(|| bad(format!("budget_window_secs must be seconds, not {v}")))?,
        ),
    };
    let patch: DialectPatch = serde_json::from_value(Value::Object(b))
        .map_err(|e| bad(format!("not a dialect patch: {e}")))?;
    sh.dialects().apply(res, &patch);
    if let Some(on) = retry_after {
        sh.dialects().retry_after = on;
    }
    if limit.is_some() || window.is_some() {
        let mut budget = sh.budget();
        let (l, w) = (
            limit.unwrap_or(budget.limit()),
            window.unwrap_or(budget.window()),
        );
        budget.set_limits(l, w);
    }
    Ok(ok(sh.dialect_json()))
}

fn records(
    sh: &Firm,
    method: &Method,
    path: &str,
    query: &str,
    json_body: impl FnOnce() -> Result<Value, Response>,
) -> Result<Response, Response> {
    let path = path.trim_end_matches('/');
    let id_param = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v.into_owned());
    let (res_name, id) = match (method, id_param) {
        (&Method::POST, _) => (path.to_owned(), None),
        (_, Some(id)) => (path.to_owned(), Some(id)),
        _ => match path.rsplit_once('/') {
            Some((r, id)) => (r.to_owned(), Some(id.to_owned())),
            None => {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    "give the id as /{resource}/{id} or ?id=",
                ));
            }
        },
    };
    let res = resource(&res_name).map_err(|e| err(StatusCode::NOT_FOUND, e))?;
    let bad = |e: anyhow::Error| err(StatusCode::BAD_REQUEST, format!("{e:#}"));
    match (method, id) {
        (&Method::POST, _) => {
            let v = json_body()?;
            sh.create(res, v).map(ok).map_err(bad)
        }
        (&Method::PATCH, Some(id)) => {
            let v = json_body()?;
            sh.edit(res, &id, v).map_err(bad)?;
            Ok(ok(json!({})))
        }
        (&Method::DELETE, Some(id)) => {
            sh.delete(res, &id).map_err(bad)?;
            Ok(ok(json!({})))
        }
        _ => Err(err(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST, PATCH or DELETE",
        )),
    }
}
