//! The HTTP surface: `/oauth/*`, `/api/v2/*` (and `/_sim/*`, in `control`).
//!
//! Routing is done by hand on the lowercased path, because ASP.NET routes case-insensitively
//! (`/api/v2/Expenses` == `/api/v2/expenses`) and because every error must have the API's own
//! shape rather than the framework's.

// Handlers return a finished error response early (`Err(Response)`); boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::json;

use crate::dialect::{self, Dialect, Opt, Since};
use crate::faults::Fault;
use crate::journal::JournalEntry;
use crate::model::{Filt, Res};
use crate::respond::json_response;
use crate::store::{Arg, OrderTerm};
use crate::time::{TICKS_PER_SEC, from_ticks, http_date, parse_ts};
use crate::{Firm, Shared};

pub const DENIED: &str = "Authorization has been denied for this request.";
pub const INVALID: &str = "The request is invalid.";

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let lower = path.to_ascii_lowercase();
    // Responses a `DateOffset` fault moves: the API's and the token endpoint's.
    let dated = lower.starts_with("/api/") || lower == "/oauth/token";
    let (mut resp, firm) = if lower == "/_sim" || lower.starts_with("/_sim/") {
        (
            crate::control::handle(&sh, req, &lower, &query).await,
            sh.firm0(),
        )
    } else {
        let at = sh.clock.now();
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let firm = firm_of(&sh, &lower, &query, &parts.headers, &body);
        let ms = firm.faults.latency_ms();
        if ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        let resp = serve(&sh, firm, &parts.headers, body, &method, &lower, &query);
        sh.journal.lock().expect("journal lock").push(JournalEntry {
            method: method.to_string(),
            path,
            query,
            status: resp.status().as_u16(),
            at: from_ticks(at),
            firm: firm.k,
        });
        (resp, firm)
    };
    let mut date = sh.clock.now() + firm.faults.skew().0 * TICKS_PER_SEC;
    if dated {
        date += firm.faults.date_offset() * TICKS_PER_SEC;
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(date)) {
        resp.headers_mut().insert(header::DATE, v);
    }
    resp
}

/// Which firm a request belongs to: the `client_id` on `/oauth/*` (query for authorize, form
/// body for token), the bearer token's issuer elsewhere, firm 0 when neither names one.
fn firm_of<'a>(
    sh: &'a Shared,
    lower: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> &'a Firm {
    let by_client = |p: Vec<(String, String)>, exact: bool| {
        p.into_iter()
            .find(|(n, _)| {
                if exact {
                    n == "client_id"
                } else {
                    n.eq_ignore_ascii_case("client_id")
                }
            })
            .and_then(|(_, id)| sh.firm_by_client(&id))
            .unwrap_or_else(|| sh.firm0())
    };
    match lower {
        "/oauth/authorize" => by_client(params(query), false),
        "/oauth/token" => by_client(params(std::str::from_utf8(body).unwrap_or("")), true),
        _ => match bearer(headers) {
            Some(token) => sh.firm_by_token(token),
            None => sh.firm0(),
        },
    }
}

pub fn message(status: StatusCode, msg: &str) -> Response {
    json_response(status, json!({ "message": msg }).to_string())
}

fn oauth_error(error: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({ "error": error }).to_string(),
    )
}

/// A 429, with `Retry-After` unless the firm's dialect leaves it out.
fn too_many(sh: &Firm, retry_after: u64) -> Response {
    let mut r = message(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests. Please retry later.",
    );
    if sh.dialects().retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    }
    r
}

/// Budget, then a RateLimitStorm: a refused request is not counted.
fn gate(sh: &Firm) -> Option<Response> {
    let now = sh.clock.now();
    let refused = sh.budget().check(now);
    if let Err(secs) = refused {
        return Some(too_many(sh, secs));
    }
    let storm = sh.faults.take(|f| match f {
        Fault::RateLimitStorm {
            retry_after_secs, ..
        } => Some(*retry_after_secs),
        _ => None,
    });
    if let Some(secs) = storm {
        return Some(too_many(sh, secs));
    }
    let refused = sh.budget().admit(now);
    refused.err().map(|secs| too_many(sh, secs))
}

fn serve(
    shared: &Shared,
    sh: &Firm,
    headers: &HeaderMap,
    body: Bytes,
    method: &Method,
    lower: &str,
    query: &str,
) -> Response {
    if lower == "/oauth/authorize" {
        return authorize(sh, query);
    }
    if lower == "/oauth/token" {
        if let Some(r) = gate(sh) {
            return r;
        }
        if method != Method::POST {
            return message(
                StatusCode::METHOD_NOT_ALLOWED,
                "The requested resource does not support http method.",
            );
        }
        return token(shared, sh, &body);
    }
    let Some(rest) = lower.strip_prefix("/api/v2/") else {
        return not_found_route(lower);
    };
    if let Some(r) = gate(sh) {
        return r;
    }
    let server_error = sh.faults.take(|f| match f {
        Fault::ServerErrors { status, .. } => Some(*status),
        _ => None,
    });
    if let Some(status) = server_error {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return message(status, "An error has occurred.");
    }
    let html = sh.faults.take(|f| match f {
        Fault::HtmlError { status, .. } => Some(*status),
        _ => None,
    });
    if let Some(status) = html {
        return html_page(status);
    }
    if !authorized(sh, headers) {
        let mut r = message(StatusCode::UNAUTHORIZED, DENIED);
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    if method != Method::GET {
        return message(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("The requested resource does not support http method '{method}'."),
        );
    }
    api_get(sh, rest.trim_end_matches('/'), query, lower)
}

fn html_page(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = format!(
        "<!DOCTYPE html>\r\n<html>\r\n<head><title>Runtime Error</title></head>\r\n<body>\r\n\
         <h1>Server Error in '/' Application.</h1>\r\n<h2><i>{} {}</i></h2>\r\n\
         <p>An application error occurred on the server.</p>\r\n</body>\r\n</html>\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Body::from(body))
        .expect("valid response")
}

fn not_found_route(lower: &str) -> Response {
    message(
        StatusCode::NOT_FOUND,
        &format!("No HTTP resource was found that matches the request URI '{lower}'."),
    )
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = h.trim().splitn(2, char::is_whitespace);
    let scheme = parts.next().unwrap_or("");
    let token = parts.next().unwrap_or("").trim();
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

fn authorized(sh: &Firm, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|token| sh.auth().check_access(sh.clock.now(), token))
}

fn params(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn authorize(sh: &Firm, query: &str) -> Response {
    let p = params(query);
    let get = |k: &str| {
        p.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if get("client_id").as_deref() != Some(sh.client_id.as_str()) {
        return oauth_error("invalid_client");
    }
    if get("response_type").as_deref() != Some("code") {
        return oauth_error("unsupported_response_type");
    }
    let Some(redirect) = get("redirect_uri") else {
        return oauth_error("invalid_request");
    };
    let Ok(mut url) = url::Url::parse(&redirect) else {
        return oauth_error("invalid_request");
    };
    let code = sh.auth().code(sh.clock.now(), &redirect);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(state) = get("state") {
            q.append_pair("state", &state);
        }
    }
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, url.as_str())
        .body(Body::empty())
        .expect("valid response")
}

fn token(shared: &Shared, sh: &Firm, body: &[u8]) -> Response {
    let p = params(std::str::from_utf8(body).unwrap_or(""));
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("client_id") != Some(sh.client_id.as_str())
        || get("client_secret") != Some(sh.client_secret.as_str())
    {
        return oauth_error("invalid_client");
    }
    let now = sh.clock.now();
    let result = match get("grant_type") {
        Some("authorization_code") => match get("code") {
            Some(code) => sh.auth().exchange_code(now, code, get("redirect_uri")),
            None => Err("invalid_request"),
        },
        Some("refresh_token") => match get("refresh_token") {
            Some(t) => sh.auth().refresh(now, t),
            None => Err("invalid_request"),
        },
        _ => Err("unsupported_grant_type"),
    };
    match result {
        Ok(t) => {
            shared.note_token(&t.access_token, sh.k);
            let mut r = json_response(
                StatusCode::OK,
                serde_json::to_vec(&t).expect("serializable"),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => oauth_error(e),
    }
}

fn api_get(sh: &Firm, rest: &str, query: &str, lower: &str) -> Response {
    let segs: Vec<&str> = rest.split('/').collect();
    match segs.as_slice() {
        ["users", "me"] => {
            let me = sh.me.clone();
            by_id(sh, &[Res::Users], &me)
        }
        ["customfields", id] if Res::from_name(&format!("customfields/{id}")).is_none() => {
            by_id(sh, &[Res::CfCompany, Res::CfMatter, Res::CfContact], id)
        }
        ["files", "download", id] => download(sh, id),
        [a, b] if Res::from_name(&format!("{a}/{b}")).is_some() => list(
            sh,
            Res::from_name(&format!("{a}/{b}")).expect("checked"),
            query,
        ),
        [name] => match Res::from_name(name) {
            Some(res) => list(sh, res, query),
            None => not_found_route(lower),
        },
        [name, id] => match Res::from_name(name) {
            Some(res) if res.spec().by_id => by_id(sh, &[res], id),
            _ => not_found_route(lower),
        },
        _ => not_found_route(lower),
    }
}

fn bad_id(id: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({
            "message": INVALID,
            "messageDetail": format!("The value '{id}' is not valid for Guid."),
        })
        .to_string(),
    )
}

fn by_id(sh: &Firm, tables: &[Res], id: &str) -> Response {
    if uuid::Uuid::parse_str(id).is_err() {
        return bad_id(id);
    }
    let w = sh.world();
    for res in tables {
        if let Some(rec) = w.store.get(*res, id) {
            return json_response(StatusCode::OK, w.store.render(*res, rec, true));
        }
    }
    message(
        StatusCode::NOT_FOUND,
        &format!("No record was found with id '{id}'."),
    )
}

fn download(sh: &Firm, id: &str) -> Response {
    if uuid::Uuid::parse_str(id).is_err() {
        return bad_id(id);
    }
    let w = sh.world();
    let Some(rec) = w.store.get(Res::Files, id) else {
        return message(StatusCode::NOT_FOUND, "File not found.");
    };
    let ct = rec
        .data
        .get("content_type")
        .and_then(|v| v.as_str())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let body = format!("ppsim file {}\n", rec.id);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, ct)
        .body(Body::from(body))
        .expect("valid response")
}

/// A parsed list query.
struct ListQuery {
    conds: Vec<(Filt, Arg)>,
    order: Vec<OrderTerm>,
    skip: usize,
    top: Option<usize>,
}

/// `updated_since` on an endpoint that otherwise takes no parameters (a dialect may make it
/// take one).
const UPDATED_SINCE: &[(&str, Filt)] = &[("updated_since", Filt::UpdatedSince)];

fn parse_list_query(res: Res, query: &str, d: &Dialect) -> Result<ListQuery, Response> {
    let spec = res.spec();
    let mut q = ListQuery {
        conds: vec![],
        order: vec![],
        skip: 0,
        top: None,
    };
    let invalid = || message(StatusCode::BAD_REQUEST, INVALID);
    let rejected = |msg: String| message(StatusCode::BAD_REQUEST, &msg);
    // Messages and tags take no parameters at all (by default): not even OData options.
    let filters = if !spec.filters.is_empty() {
        spec.filters
    } else if d.updated_since != Since::Ignore {
        UPDATED_SINCE
    } else if d.top == Opt::Ignore && d.skip == Opt::Ignore && d.orderby == Opt::Ignore {
        return Ok(q);
    } else {
        &[]
    };
    for (k, v) in params(query) {
        let key = k.to_ascii_lowercase();
        match key.as_str() {
            "$top" => match d.top {
                Opt::Honour => q.top = Some(v.trim().parse().map_err(|_| invalid())?),
                Opt::Ignore => {}
                Opt::Reject => return Err(rejected(dialect::option_not_allowed("Top"))),
            },
            "$skip" => match d.skip {
                Opt::Honour => q.skip = v.trim().parse().map_err(|_| invalid())?,
                Opt::Ignore => {}
                Opt::Reject => return Err(rejected(dialect::option_not_allowed("Skip"))),
            },
            "$orderby" => match d.orderby {
                Opt::Honour => q.order = parse_orderby(res, &v).ok_or_else(invalid)?,
                Opt::Ignore => {}
                Opt::Reject => return Err(rejected(dialect::no_such_property(res, &v))),
            },
            _ => {
                let Some((_, f)) = filters.iter().find(|(n, _)| *n == key) else {
                    continue; // unknown parameters are ignored
                };
                if v.is_empty() {
                    continue; // binds to null: no filter
                }
                let arg = match f {
                    Filt::CreatedSince
                    | Filt::UpdatedSince
                    | Filt::DateFrom(_)
                    | Filt::DateTo(_) => Arg::Ts(parse_ts(&v).ok_or_else(invalid)?),
                    Filt::Ref(_)
                    | Filt::Ref2(..)
                    | Filt::AnyRef(_)
                    | Filt::HiddenId(_)
                    | Filt::AccountAssigned => Arg::Id(
                        uuid::Uuid::parse_str(v.trim())
                            .map_err(|_| invalid())?
                            .to_string(),
                    ),
                    Filt::Enum(_, allowed)
                    | Filt::Enum2(_, _, allowed)
                    | Filt::Ignored(allowed) => {
                        let hit = allowed.iter().find(|a| a.eq_ignore_ascii_case(v.trim()));
                        Arg::Text(hit.ok_or_else(invalid)?.to_string())
                    }
                    _ => Arg::Text(v),
                };
                let arg = match (f, arg, d.updated_since) {
                    (Filt::UpdatedSince, _, Since::Ignore) => continue, // validated, not applied
                    // `updated_at > t` is `updated_at >= t + 1 tick` (stamps are whole ticks),
                    // which keeps the `updated_at` walk of `select_page`.
                    (Filt::UpdatedSince, Arg::Ts(t), Since::Exclusive) => {
                        Arg::Ts(t.saturating_add(1))
                    }
                    (_, arg, _) => arg,
                };
                q.conds.push((*f, arg));
            }
        }
    }
    Ok(q)
}

/// `field`, `field asc`, `field desc`, comma-separated. Fields: any rendered top-level field
/// (`id`, `updated_at`, `created_at`, `name`, ...). Unknown fields are `None` (400).
fn parse_orderby(res: Res, v: &str) -> Option<Vec<OrderTerm>> {
    let mut out = vec![];
    for term in v.split(',') {
        let mut words = term.split_whitespace();
        let field = words.next()?.to_ascii_lowercase();
        let desc = match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            _ => return None,
        };
        if words.next().is_some() {
            return None;
        }
        let known = res
            .spec()
            .fields
            .iter()
            .any(|(f, _)| f.eq_ignore_ascii_case(&field));
        if !known {
            return None;
        }
        out.push(OrderTerm { field, desc });
    }
    Some(out)
}

fn list(sh: &Firm, res: Res, query: &str) -> Response {
    let dialect = sh.dialect_of(res);
    let q = match parse_list_query(res, query, &dialect) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let truncate = sh.faults.take(|f| match f {
        Fault::TruncateBody { .. } => Some(()),
        _ => None,
    });
    let (chunks, edit_target) = {
        let w = sh.world();
        // A server-driven page size stops the page silently (the default one: invoices, 2,500).
        let cap = dialect.page_cap.unwrap_or(usize::MAX);
        let take = q.top.unwrap_or(usize::MAX).min(cap);
        let page: Vec<(&str, Bytes)> = w
            .store
            .select_page(res, &q.conds, &q.order, q.skip, take)
            .into_iter()
            .map(|r| (r.id, r.bytes))
            .collect();
        let target = if page.is_empty() {
            None
        } else {
            Some(page[page.len() / 4].0.to_owned())
        };
        (
            page.into_iter().map(|(_, b)| b).collect::<Vec<Bytes>>(),
            target,
        )
    };
    if let Some(id) = edit_target {
        let hit = sh.faults.take(|f| match f {
            Fault::EditDuringListing { resource, .. } if Res::from_name(resource) == Some(res) => {
                Some(())
            }
            _ => None,
        });
        if hit.is_some() {
            let stamp = sh.stamp_now();
            let mut w = sh.world();
            let crate::World {
                store, rng, memo, ..
            } = &mut *w;
            let _ = crate::changes::edit_one(store, rng, memo.ctx(store), res, &id, stamp);
            // An edit names nothing new: what the generator knows still holds.
            memo.stamp(store);
        }
    }
    let len: usize = chunks.iter().map(Bytes::len).sum::<usize>() + chunks.len() + 2;
    let mut body = Vec::with_capacity(len);
    body.push(b'[');
    let mut cut = None;
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        if truncate.is_some() && i == chunks.len() / 2 {
            cut = Some(body.len() + c.len() / 2);
        }
        body.extend_from_slice(c);
    }
    body.push(b']');
    if truncate.is_some() {
        body.truncate(cut.unwrap_or(1));
    }
    json_response(StatusCode::OK, body)
}
