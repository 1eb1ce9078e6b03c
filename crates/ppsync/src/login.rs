//! `ppsync auth login`: catch the authorization redirect on a loopback listener.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::extract::Query;
use axum::response::Html;
use tokio::sync::mpsc;

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
        axum::routing::get(
            move |Query(q): Query<std::collections::HashMap<String, String>>| {
                let tx = tx.clone();
                let expected = expected.clone();
                async move {
                    let result = match (q.get("code"), q.get("state"), q.get("error")) {
                        (_, _, Some(e)) => Err(format!("authorization was refused: {e}")),
                        (Some(code), Some(s), _) if *s == expected => Ok(code.clone()),
                        (Some(_), _, _) => {
                            Err("the redirect's state does not match this login".to_string())
                        }
                        _ => Err("the redirect carries no code".to_string()),
                    };
                    let page = match &result {
                        Ok(_) => "ppsync is authorized. You can close this tab.".to_string(),
                        Err(e) => format!("ppsync authorization failed: {e}"),
                    };
                    let _ = tx.send(result).await;
                    Html(page)
                }
            },
        ),
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
