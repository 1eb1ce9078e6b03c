//! `ppsync auth login`: catch the authorization redirect on a loopback listener.
//!
//! Any web page the user has open can send the browser to the callback URL, with any query. So
//! only a request carrying this login's `state` is acted on (a code, or the server's error);
//! any other is answered with an error page and the login goes on waiting for the right one.
//! Everything echoed into a page is HTML-escaped, and everything echoed to the terminal is
//! stripped of control characters.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tokio::sync::mpsc;

use crate::status::page::esc;

/// Prints the authorize URL, listens on the redirect URI's loopback address, and returns the code
/// once a redirect with the matching `state` arrives (or fails after 5 minutes).
pub async fn wait_for_redirect(
    redirect_uri: &str,
    authorize: &url::Url,
    state: &str,
) -> anyhow::Result<String> {
    let uri = url::Url::parse(redirect_uri)
        .with_context(|| format!("redirect_uri {redirect_uri:?} is not a URL"))?;
    let host = uri.host_str().unwrap_or("");
    if uri.scheme() != "http" || !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        bail!(
            "redirect_uri {redirect_uri} is not a loopback http address: use `ppsync auth login --paste`, \
             or set redirect_uri = \"http://127.0.0.1:8765/callback\""
        );
    }
    let port = uri.port().unwrap_or(80);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{port} for the redirect: free the port or use --paste"
            )
        })?;
    let (tx, mut rx) = mpsc::channel::<Result<String, String>>(1);
    let expected = state.to_string();
    let app = axum::Router::new().route(
        uri.path(),
        axum::routing::get(move |Query(q): Query<HashMap<String, String>>| {
            let tx = tx.clone();
            let expected = expected.clone();
            async move {
                let (verdict, response) = answer(&q, &expected);
                match verdict {
                    Some(result) => {
                        // The first verdict ends the login; a reload of the page finds it full.
                        let _ = tx.try_send(result);
                    }
                    None => {
                        let _ = writeln!(
                            std::io::stderr(),
                            "ignored a request to the redirect address: it does not carry this login's state (still waiting)"
                        );
                    }
                }
                response
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // Not eprintln!: a closed stderr (a wrapper that stopped reading) must not abort the login.
    let _ = writeln!(
        std::io::stderr(),
        "Open this URL in a browser and approve access:\n\n  {authorize}\n\nWaiting for the redirect to {redirect_uri} ..."
    );
    let got = tokio::time::timeout(Duration::from_secs(300), rx.recv()).await;
    server.abort();
    match got {
        Ok(Some(Ok(code))) => Ok(code),
        Ok(Some(Err(e))) => bail!("{e}: run `ppsync auth login` again"),
        _ => bail!(
            "no redirect arrived within 5 minutes: run `ppsync auth login` again (or use --paste)"
        ),
    }
}

/// What a request to the callback means: `Some` ends the login (the code, or why it failed),
/// `None` is not this login's redirect (keep waiting); and the page to answer it with.
fn answer(
    q: &HashMap<String, String>,
    expected: &str,
) -> (Option<Result<String, String>>, Response) {
    let ours = q
        .get("state")
        .is_some_and(|s| crate::status::http::same_bytes(s.as_bytes(), expected.as_bytes()));
    if !ours {
        let mut text = "This request does not carry the state of the login ppsync is waiting for, \
                        so it was ignored; ppsync is still waiting for the authorization."
            .to_string();
        if let Some(e) = q.get("error") {
            text.push_str(&format!(" It said: {}", esc(&clip(e))));
        }
        return (None, page(StatusCode::BAD_REQUEST, &text));
    }
    let verdict = match (q.get("error"), q.get("code")) {
        (Some(e), _) => {
            let mut why = clip(e);
            if let Some(d) = q.get("error_description") {
                why = format!("{why} ({})", clip(d));
            }
            Err(format!("authorization was refused: {why}"))
        }
        (None, Some(code)) if !code.trim().is_empty() => Ok(code.clone()),
        _ => Err("the redirect carries no code".to_string()),
    };
    let response = match &verdict {
        Ok(_) => page(
            StatusCode::OK,
            "ppsync is authorized. You can close this tab.",
        ),
        Err(e) => page(
            StatusCode::BAD_REQUEST,
            &format!("ppsync authorization failed: {}", esc(e)),
        ),
    };
    (Some(verdict), response)
}

/// A page of escaped text. It loads nothing (the URL it answers carries the code) and is not kept.
fn page(status: StatusCode, escaped_text: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>ppsync</title></head>\
             <body><p>{escaped_text}</p></body></html>"
        )),
    )
        .into_response()
}

/// What the server (or whoever sent the request) said, fit for a terminal line: no control
/// characters (an escape sequence could rewrite the screen), at most 200 characters.
fn clip(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    async fn body(r: Response) -> (u16, String) {
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn only_this_logins_state_decides() {
        let xss = "<script>alert(1)</script>";
        for query in [
            q(&[("code", "c0de"), ("state", "wrong")]),
            q(&[("code", "c0de")]),
            q(&[("error", xss)]),
            q(&[("error", xss), ("state", "s7at")]),
            q(&[("error", "access_denied"), ("state", "s7ate-longer")]),
        ] {
            let (verdict, resp) = answer(&query, "s7ate");
            assert!(verdict.is_none(), "{query:?} is ignored");
            let (status, html) = body(resp).await;
            assert_eq!(status, 400);
            assert!(!html.contains("<script>"), "{html}");
            assert!(html.contains("still waiting"), "{html}");
            if query.contains_key("error") && query["error"] == xss {
                assert!(
                    html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                    "{html}"
                );
            }
        }
        let (verdict, resp) = answer(&q(&[("code", "c0de"), ("state", "s7ate")]), "s7ate");
        assert_eq!(verdict, Some(Ok("c0de".to_string())));
        assert_eq!(body(resp).await.0, 200);

        let (verdict, resp) = answer(
            &q(&[
                ("error", xss),
                ("error_description", "a\x1b[2Jb"),
                ("state", "s7ate"),
            ]),
            "s7ate",
        );
        let why = verdict.unwrap().unwrap_err();
        assert!(why.contains(xss) && why.contains("a [2Jb"), "{why}");
        let (status, html) = body(resp).await;
        assert_eq!(status, 400);
        assert!(
            html.contains("&lt;script&gt;") && !html.contains("<script>"),
            "{html}"
        );

        let (verdict, _) = answer(&q(&[("code", " "), ("state", "s7ate")]), "s7ate");
        assert_eq!(
            verdict,
            Some(Err("the redirect carries no code".to_string()))
        );
    }

    #[test]
    fn clipped_for_a_terminal() {
        assert_eq!(clip("ok\u{7}\u{1b}]0;x\n"), "ok  ]0;x ");
        assert_eq!(clip(&"x".repeat(300)).chars().count(), 201);
    }
}
