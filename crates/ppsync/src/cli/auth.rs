//! `ppsync auth login | import | status`: the firm's OAuth credentials.

use std::io::BufRead;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::AuthCommand;
use crate::app;
use crate::config::Config;
use crate::time::{Clock, SystemClock};

const LOGIN: &str = "run `ppsync auth login` or `ppsync auth import --refresh-token T`";

pub(super) async fn auth(cfg: Config, cmd: AuthCommand) -> anyhow::Result<i32> {
    use crate::api::TokenStore;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Logging in makes the mirror (its tokens live there); asking about them does not.
    let (cfg, store) = match cmd {
        AuthCommand::Status => match app::open_existing(&cfg).await {
            Err(e) if matches!(e.downcast_ref(), Some(crate::store::Error::Missing { .. })) => {
                bail!("no credentials stored (no mirror yet): {}", LOGIN)
            }
            opened => opened?,
        },
        _ => app::open(&cfg).await?,
    };
    match cmd {
        AuthCommand::Status => match store.token_status().await? {
            Some((expires, saved)) => {
                let left = expires - clock.now();
                outln!(
                    "credentials stored (saved {saved}); access token {} {}",
                    if left > chrono::Duration::zero() {
                        "expires"
                    } else {
                        "expired"
                    },
                    expires.to_rfc3339()
                );
                Ok(0)
            }
            None => bail!("no credentials stored: {LOGIN}"),
        },
        AuthCommand::Import { refresh_token } => {
            cfg.require_credentials()?;
            if refresh_token.trim().is_empty() {
                bail!("--refresh-token is empty: pass the refresh token PracticePanther issued");
            }
            let client = app::client(&cfg, &store, clock).await?;
            let tokens = client.redeem_refresh_token(refresh_token.trim()).await?;
            store.save(&tokens).await?;
            // New credentials end an auth_failed episode; a later rejection is a new one.
            store.clear_auth_failure().await?;
            outln!(
                "refresh token accepted and stored; access token valid until {}",
                tokens.expires_at.to_rfc3339()
            );
            Ok(0)
        }
        AuthCommand::Login { paste } => {
            cfg.require_credentials()?;
            let client = app::client(&cfg, &store, clock).await?;
            let state = format!("{:032x}", rand::random::<u128>());
            let url = client.authorize_url(&cfg.redirect_uri, &state);
            let code = if paste {
                eprintln!(
                    "Open this URL, approve access, then paste the code (or the whole redirect URL):\n\n  {url}\n"
                );
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                code_from_input(line.trim(), &state)?
            } else {
                crate::login::wait_for_redirect(&cfg.redirect_uri, &url, &state).await?
            };
            let tokens = client.exchange_code(&code, &cfg.redirect_uri).await?;
            store.save(&tokens).await?;
            // New credentials end an auth_failed episode; a later rejection is a new one.
            store.clear_auth_failure().await?;
            outln!("authorized; credentials stored in {}", store.location());
            Ok(0)
        }
    }
}

/// Accepts a bare code or a redirect URL carrying `code` (and then checks `state`).
fn code_from_input(input: &str, state: &str) -> anyhow::Result<String> {
    if input.is_empty() {
        bail!("no code given: paste the `code` from the redirect URL");
    }
    if let Ok(u) = url::Url::parse(input) {
        let get = |k: &str| {
            u.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.to_string())
        };
        if get("state").is_some_and(|s| s != state) {
            bail!(
                "the redirect's state does not match this login: start `ppsync auth login` again"
            );
        }
        return get("code")
            .context("the pasted URL has no `code` parameter: paste the whole redirect URL");
    }
    Ok(input.to_string())
}
