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

pub(crate) type Fut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Durable storage for the token pair (the database). `save` must be durable when it returns.
pub trait TokenStore: Send + Sync + 'static {
    fn load(&self) -> Fut<'_, anyhow::Result<Option<Tokens>>>;
    fn save<'a>(&'a self, tokens: &'a Tokens) -> Fut<'a, anyhow::Result<()>>;
}

/// How long before expiry a token is refreshed.
const REFRESH_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

pub(crate) struct TokenManager {
    store: Arc<dyn TokenStore>,
    /// The current pair, and whether it still has to be saved; the mutex also makes refreshes
    /// single-flight.
    current: Mutex<Current>,
}

#[derive(Default)]
struct Current {
    tokens: Option<Tokens>,
    /// A rotated pair whose save failed: it is the only valid one (the old refresh token is
    /// spent), so it is used, and saved again at every request until the save succeeds.
    unsaved: bool,
}

/// The longest `expires_in` believed (a day is what the API gives; a broken or hostile answer
/// must not overflow the arithmetic).
const MAX_LIFETIME_SECS: i64 = 30 * 86_400;

/// When an access token said to live `expires_in` seconds expires.
pub(crate) fn expiry(now: DateTime<Utc>, expires_in: Option<i64>) -> DateTime<Utc> {
    let secs = expires_in.unwrap_or(86_400).clamp(60, MAX_LIFETIME_SECS);
    now + chrono::Duration::seconds(secs)
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
            current: Mutex::new(Current::default()),
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
        let mut state = self.current.lock().await;
        if state.unsaved {
            self.save_again(&mut state).await;
        }
        let cur = &mut state.tokens;
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
        let fresh = self.refresh_locked(&mut state, now, refresh).await?;
        Ok(fresh)
    }

    /// Another try at saving a pair whose save failed.
    async fn save_again(&self, state: &mut Current) {
        let Some(t) = state.tokens.as_ref() else {
            return;
        };
        match self.store.save(t).await {
            Ok(()) => {
                state.unsaved = false;
                tracing::info!("the rotated tokens are saved now");
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the rotated tokens still cannot be saved: a restart now would need `ppsync auth login`")
            }
        }
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
        let mut state = self.current.lock().await;
        if let Some(t) = state.tokens.as_ref()
            && t.access_token.expose_secret() != refused.expose_secret()
        {
            return Ok(t.access_token.clone());
        }
        self.refresh_locked(&mut state, now, refresh).await
    }

    async fn refresh_locked<F>(
        &self,
        state: &mut Current,
        now: DateTime<Utc>,
        refresh: F,
    ) -> Result<SecretString, Error>
    where
        F: AsyncFnOnce(SecretString) -> Result<TokenResponse, Error>,
    {
        let unsaved = state.unsaved;
        let cur = &mut state.tokens;
        // Another process on the same database (the CLI beside the daemon) may have rotated the
        // pair already: its refresh token is then the only valid one, so adopt what is stored
        // (unless ours is a rotation the store never got).
        if !unsaved && let Ok(Some(stored)) = self.store.load().await {
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
            expires_at: expiry(now, resp.expires_in),
        };
        // Durable before use: the old refresh token is already spent. If the save fails the new
        // pair is still the only valid one: it is used, and saved again at every request.
        let saved = self.store.save(&tokens).await;
        let access = tokens.access_token.clone();
        *cur = Some(tokens);
        state.unsaved = false;
        if let Err(e) = saved {
            state.unsaved = true;
            tracing::error!(error = %format!("{e:#}"), "the rotated tokens could not be saved: used from memory, saved again at the next request");
        }
        tracing::info!("access token refreshed");
        Ok(access)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A store whose first `fail` saves fail.
    struct Flaky {
        fail: AtomicU32,
        saved: std::sync::Mutex<Vec<String>>,
        initial: Tokens,
    }

    impl TokenStore for Flaky {
        fn load(&self) -> Fut<'_, anyhow::Result<Option<Tokens>>> {
            let t = self.initial.clone();
            Box::pin(async move { Ok(Some(t)) })
        }
        fn save<'a>(&'a self, tokens: &'a Tokens) -> Fut<'a, anyhow::Result<()>> {
            Box::pin(async move {
                if self.fail.load(Ordering::SeqCst) > 0 {
                    self.fail.fetch_sub(1, Ordering::SeqCst);
                    anyhow::bail!("disk full");
                }
                self.saved
                    .lock()
                    .unwrap()
                    .push(tokens.refresh_token.expose_secret().to_string());
                Ok(())
            })
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        crate::time::parse_api_time(s).unwrap()
    }

    #[tokio::test]
    async fn a_rotated_pair_whose_save_fails_is_used_and_saved_later() {
        let now = t("2026-12-03T10:00:00Z");
        let store = Arc::new(Flaky {
            fail: AtomicU32::new(1),
            saved: Default::default(),
            initial: Tokens {
                access_token: SecretString::from(String::new()),
                refresh_token: SecretString::from("old".to_string()),
                expires_at: now,
            },
        });
        let m = TokenManager::new(store.clone());
        let got = m
            .access_token(now, async |rt: SecretString| {
                assert_eq!(rt.expose_secret(), "old");
                Ok(TokenResponse {
                    access_token: "A1".into(),
                    refresh_token: Some("new".into()),
                    // A broken server's lifetime: clamped, no overflow.
                    expires_in: Some(i64::MAX),
                })
            })
            .await
            .unwrap();
        assert_eq!(got.expose_secret(), "A1", "used although its save failed");
        assert!(store.saved.lock().unwrap().is_empty());
        // The next request saves it, and does not refresh again (the old token is spent).
        let again = m
            .access_token(now, async |_| panic!("no second refresh"))
            .await
            .unwrap();
        assert_eq!(again.expose_secret(), "A1");
        assert_eq!(*store.saved.lock().unwrap(), vec!["new".to_string()]);
        assert_eq!(
            expiry(now, Some(i64::MAX)),
            now + chrono::Duration::days(30)
        );
        assert_eq!(expiry(now, Some(-5)), now + chrono::Duration::seconds(60));
    }
}
