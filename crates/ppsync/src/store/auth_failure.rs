//! `auth_failure`: the firm's grant rejected (the refresh token refused, no credentials). One row
//! while the episode lasts; its notification is enqueued in the transaction that opens it.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::{Db, Notification, Result, Store, Ts, TxInner};

/// An open episode of rejected credentials.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuthFailure {
    /// The first failure of the episode.
    pub since: DateTime<Utc>,
    /// The latest one.
    pub last_at: DateTime<Utc>,
    pub error: String,
}

impl Store {
    /// The open episode, if any.
    pub async fn auth_failure(&self) -> Result<Option<AuthFailure>> {
        let sql = format!(
            "SELECT since, last_at, error FROM {} WHERE id = 1",
            self.t("auth_failure")
        );
        on!(Db, &self.db, p => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(p).await?;
            row.map(|r| {
                Ok(AuthFailure {
                    since: r.try_get::<Ts, _>(0)?.0,
                    last_at: r.try_get::<Ts, _>(1)?.0,
                    error: r.try_get(2)?,
                })
            })
            .transpose()
        })
    }

    /// Records a failure at `now`. Opens an episode when none is open, enqueueing in the same
    /// transaction the notification `notice` builds from the episode's start; otherwise only
    /// notes the latest failure. Returns the episode and whether it is new.
    pub async fn record_auth_failure(
        &self,
        now: DateTime<Utc>,
        error: &str,
        notice: impl FnOnce(DateTime<Utc>) -> Notification,
    ) -> Result<(AuthFailure, bool)> {
        let table = self.t("auth_failure");
        let mut tx = self.begin().await?;
        let select = format!("SELECT since FROM {table} WHERE id = 1");
        let since: Option<Ts> = on!(TxInner, &mut tx.tx, t => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(select))
                .fetch_optional(&mut **t)
                .await?
        });
        let opened = since.is_none();
        let since = since.map_or(now, |s| s.0);
        let upsert = format!(
            "INSERT INTO {table} (id, since, last_at, error) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET last_at = excluded.last_at, error = excluded.error"
        );
        on!(TxInner, &mut tx.tx, t => sqlx::query(sqlx::AssertSqlSafe(upsert))
            .bind(Ts(since))
            .bind(Ts(now))
            .bind(error)
            .execute(&mut **t)
            .await?
            .rows_affected());
        if opened {
            tx.enqueue(&[notice(since)], now).await?;
        }
        tx.commit().await?;
        let episode = AuthFailure {
            since,
            last_at: now,
            error: error.to_string(),
        };
        Ok((episode, opened))
    }

    /// Ends the open episode (the API answered, or new credentials were stored). Returns
    /// whether one was open.
    pub async fn clear_auth_failure(&self) -> Result<bool> {
        // Read first: a pass that finds none (nearly every pass) takes no write lock.
        if self.auth_failure().await?.is_none() {
            return Ok(false);
        }
        let sql = format!("DELETE FROM {} WHERE id = 1", self.t("auth_failure"));
        let n = on!(Db, &self.db, p => {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(p).await?.rows_affected()
        });
        Ok(n > 0)
    }
}
