//! The OAuth tokens (`oauth_tokens`, in the secrets schema on PostgreSQL): the store as the API
//! client's [`TokenStore`].

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row as _;

use super::{Db, Result, Store, Ts};
use crate::api::{TokenStore, Tokens};
use crate::time::parse_api_time;

impl TokenStore for Store {
    fn load(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<Option<Tokens>>> + Send + '_>,
    > {
        Box::pin(async move {
            let (key, value) = self.token_key();
            let sql = format!(
                "SELECT access_token, refresh_token, expires_at FROM {} WHERE {key} = {value}",
                self.secret_t("oauth_tokens")
            );
            let row: Option<(String, String, String)> = on!(Db, &self.db, p => {
                match sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(p).await? {
                    None => None,
                    Some(r) => Some((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        // Read as text where it is text, so a damaged value is reported as such.
                        match r.try_get::<Ts, _>(2) {
                            Ok(t) => t.text(),
                            Err(e) => anyhow::bail!("the stored token expiry is not a timestamp ({e})"),
                        },
                    )),
                }
            });
            let Some((access, refresh, expires)) = row else {
                return Ok(None);
            };
            anyhow::ensure!(
                !refresh.trim().is_empty(),
                "the stored refresh token is empty"
            );
            Ok(Some(Tokens {
                access_token: SecretString::from(access),
                refresh_token: SecretString::from(refresh),
                expires_at: parse_api_time(&expires).ok_or_else(|| {
                    anyhow::anyhow!("the stored token expiry {expires:?} is not a timestamp")
                })?,
            }))
        })
    }

    fn save<'a>(
        &'a self,
        t: &'a Tokens,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let (key, value) = self.token_key();
            let sql = format!(
                "INSERT INTO {} ({key}, access_token, refresh_token, expires_at, updated_at) \
                 VALUES ({value}, $1, $2, $3, $4) ON CONFLICT ({key}) DO UPDATE SET access_token = excluded.access_token, \
                 refresh_token = excluded.refresh_token, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                self.secret_t("oauth_tokens")
            );
            match &self.db {
                Db::Sqlite(p) => {
                    // The spent refresh token's successor must survive a power cut too, not only
                    // a kill: this one write is synced to disk (synchronous=FULL) on its own
                    // connection, which then goes back to the pool's NORMAL.
                    let mut conn = p.acquire().await?;
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                    let written = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(t.access_token.expose_secret())
                        .bind(t.refresh_token.expose_secret())
                        .bind(Ts(t.expires_at))
                        .bind(Ts(Utc::now()))
                        .execute(&mut *conn)
                        .await;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    written?;
                }
                Db::Pg(p) => {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(t.access_token.expose_secret())
                        .bind(t.refresh_token.expose_secret())
                        .bind(Ts(t.expires_at))
                        .bind(Ts(Utc::now()))
                        .execute(p)
                        .await?;
                }
            }
            Ok(())
        })
    }
}

impl Store {
    /// The `oauth_tokens` row of this store: its only row on SQLite, its schema's on PostgreSQL
    /// (inlined: a schema name is checked by `valid_schema`, lowercase letters, digits and _).
    fn token_key(&self) -> (&'static str, String) {
        match self.schema.as_deref() {
            Some(schema) if self.secrets.is_some() => ("schema_name", format!("'{schema}'")),
            _ => ("id", "1".to_string()),
        }
    }

    /// Whether a token pair is stored: its expiry and when it was written.
    pub async fn token_status(&self) -> Result<Option<(DateTime<Utc>, String)>> {
        let (key, value) = self.token_key();
        let sql = format!(
            "SELECT expires_at, updated_at FROM {} WHERE {key} = {value}",
            self.secret_t("oauth_tokens")
        );
        on!(Db, &self.db, p => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(p).await?;
            Ok(match row {
                Some(r) => match (r.try_get::<Ts, _>(0), r.try_get::<Ts, _>(1)) {
                    (Ok(e), Ok(u)) => Some((e.0, u.text())),
                    _ => None,
                },
                None => None,
            })
        })
    }
}
