//! OAuth tokens (product.md §3, practicepanther-api.md §1): refreshed ahead of expiry and on 401,
//! one refresh at a time, and the rotated refresh token persisted durably *before* the new access
//! token is used, because the old refresh token is spent the moment the server answers.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::error::Error;

/// A token pair and when the access token expires (by our clock).
#[derive(Clone)]
pub struct Tokens {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

type Fut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Durable storage for the token pair (the database). `save` must be durable when it returns.
pub trait TokenStore: Send + Sync + 'static {
    fn load(&self) -> Fut<'_, anyhow::Result<Option<Tokens>>>;
    fn save<'a>(&'a self, tokens: &'a Tokens) -> Fut<'a, anyhow::Result<()>>;
}

/// How long before expiry a token is refreshed.
const REFRESH_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

pub(crate) struct TokenManager {
    store: Arc<dyn TokenStore>,
    /// The current pair; the mutex also makes refreshes single-flight.
    current: Mutex<Option<Tokens>>,
}

/// The token endpoint's answer.
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<i64>,
}

impl TokenManager {
    pub fn new(store: Arc<dyn TokenStore>) -> Self {
        TokenManager {
            store,
            current: Mutex::new(None),
        }
    }

    /// A valid access token, refreshing first when it is missing or about to expire.
    pub async fn access_token<F>(
        &self,
        now: DateTime<Utc>,
        refresh: F,
    ) -> Result<SecretString, Error>
    where
        F: AsyncFnOnce(SecretString) -> Result<TokenResponse, Error>,
    {
        let mut cur = self.current.lock().await;
        if cur.is_none() {
            *cur = self.store.load().await.map_err(|e| Error::CorruptTokens {
                detail: format!("{e:#}"),
            })?;
        }
        let Some(tokens) = cur.as_ref() else {
            return Err(Error::NoCredentials);
        };
        if !tokens.access_token.expose_secret().is_empty()
            && tokens.expires_at - REFRESH_MARGIN > now
        {
            return Ok(tokens.access_token.clone());
        }
        let fresh = self.refresh_locked(&mut cur, now, refresh).await?;
        Ok(fresh)
    }

    /// Called after a 401 with the token that was refused: refreshes unless another request
    /// already did (single flight), and returns the token to retry with.
    pub async fn after_unauthorized<F>(
        &self,
        refused: &SecretString,
        now: DateTime<Utc>,
        refresh: F,
    ) -> Result<SecretString, Error>
    where
        F: AsyncFnOnce(SecretString) -> Result<TokenResponse, Error>,
    {
        let mut cur = self.current.lock().await;
        if let Some(t) = cur.as_ref()
            && t.access_token.expose_secret() != refused.expose_secret()
        {
            return Ok(t.access_token.clone());
        }
        self.refresh_locked(&mut cur, now, refresh).await
    }

    async fn refresh_locked<F>(
        &self,
        cur: &mut Option<Tokens>,
        now: DateTime<Utc>,
        refresh: F,
    ) -> Result<SecretString, Error>
    where
        F: AsyncFnOnce(SecretString) -> Result<TokenResponse, Error>,
    {
        // Another process on the same database (the CLI beside the daemon) may have rotated the
        // pair already: its refresh token is then the only valid one, so adopt what is stored.
        if let Ok(Some(stored)) = self.store.load().await {
            let rotated = cur.as_ref().is_none_or(|c| {
                c.refresh_token.expose_secret() != stored.refresh_token.expose_secret()
            });
            if rotated {
                let usable = !stored.access_token.expose_secret().is_empty()
                    && stored.expires_at - REFRESH_MARGIN > now;
                let access = stored.access_token.clone();
                *cur = Some(stored);
                if usable {
                    return Ok(access);
                }
            }
        }
        let Some(old) = cur.as_ref() else {
            return Err(Error::NoCredentials);
        };
        let resp = refresh(old.refresh_token.clone()).await?;
        let tokens = Tokens {
            access_token: SecretString::from(resp.access_token),
            // A server that does not rotate leaves the old refresh token valid.
            refresh_token: resp
                .refresh_token
                .map(SecretString::from)
                .unwrap_or_else(|| old.refresh_token.clone()),
            expires_at: now + chrono::Duration::seconds(resp.expires_in.unwrap_or(86_400).max(60)),
        };
        // Durable before use: the old refresh token is already spent.
        self.store
            .save(&tokens)
            .await
            .map_err(|e| Error::RefreshRejected {
                detail: format!("the new tokens could not be saved, so they were not used: {e:#}"),
            })?;
        let access = tokens.access_token.clone();
        *cur = Some(tokens);
        tracing::info!("access token refreshed");
        Ok(access)
    }
}
