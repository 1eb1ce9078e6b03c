//! Sync state: each resource's cursor, listing resume point and completeness (`sync_state`), and
//! the facts learned about each endpoint (`dialects`). Read here; written in a page's [`Tx`], with
//! the records they cover.

use chrono::{DateTime, Utc};

use super::{Db, Error, Result, Store, Ts, Tx, TxInner};
use crate::resource::Resource;

/// Everything known about one resource's progress.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// Server time up to which the mirror holds every change (None: never completed a listing).
    pub cursor: Option<DateTime<Utc>>,
    /// The resume point of a listing in flight.
    pub listing: Option<serde_json::Value>,
    /// When the last complete full listing finished.
    pub last_full_at: Option<DateTime<Utc>>,
    /// Our clock when the cursor last moved.
    pub cursor_set_at: Option<DateTime<Utc>>,
    /// The last complete listing could not reach records that exist: what was seen.
    pub incomplete: Option<String>,
    /// The last complete listing could not be proven complete (nothing was seen missing): why.
    pub unproven: Option<String>,
}

impl Store {
    pub async fn state(&self, res: &Resource) -> Result<State> {
        let sql = format!(
            "SELECT cursor, listing, last_full_at, cursor_set_at, incomplete, unproven FROM {} \
             WHERE resource = $1",
            self.t("sync_state")
        );
        type StateRow = (
            Option<Ts>,
            Option<String>,
            Option<Ts>,
            Option<Ts>,
            Option<String>,
            Option<String>,
        );
        let row: Option<StateRow> = on!(Db, &self.db, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(res.name)
                .fetch_optional(p)
                .await
                .map_err(|e| match e {
                    e @ sqlx::Error::ColumnDecode { .. } => Error::Corrupt {
                        resource: res.name.to_string(),
                        detail: e.to_string(),
                    },
                    e => e.into(),
                })?
        });
        let Some((cursor, listing, last_full_at, cursor_set_at, incomplete, unproven)) = row else {
            return Ok(State::default());
        };
        Ok(State {
            cursor: cursor.map(|t| t.0),
            listing: listing
                .map(|s| {
                    serde_json::from_str(&s).map_err(|e| Error::Corrupt {
                        resource: res.name.to_string(),
                        detail: e.to_string(),
                    })
                })
                .transpose()?,
            last_full_at: last_full_at.map(|t| t.0),
            cursor_set_at: cursor_set_at.map(|t| t.0),
            incomplete,
            unproven,
        })
    }

    /// The learned facts of an endpoint (`sync::dialect`), as stored (JSON).
    pub async fn dialect(&self, endpoint: &str) -> Result<Option<String>> {
        let sql = format!(
            "SELECT facts FROM {} WHERE endpoint = $1",
            self.t("dialects")
        );
        Ok(on!(Db, &self.db, p => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(endpoint)
                .fetch_optional(p)
                .await?
        }))
    }

    /// Every endpoint's stored facts, by endpoint.
    pub async fn dialects(&self) -> Result<Vec<(String, String)>> {
        let sql = format!(
            "SELECT endpoint, facts FROM {} ORDER BY endpoint",
            self.t("dialects")
        );
        Ok(on!(Db, &self.db, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?
        }))
    }

    /// Stores an endpoint's facts outside a page's transaction (`ppsync probe`, the request rate).
    pub async fn set_dialect(&self, endpoint: &str, facts: &str, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.set_dialect(endpoint, facts, now).await?;
        tx.commit().await
    }
}

impl Tx {
    /// Stores an endpoint's learned facts (`sync::dialect`, JSON) with the page that taught them.
    pub async fn set_dialect(
        &mut self,
        endpoint: &str,
        facts: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (endpoint, facts, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (endpoint) DO UPDATE SET facts = excluded.facts, updated_at = excluded.updated_at",
            self.t("dialects")
        );
        on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(endpoint)
            .bind(facts)
            .bind(Ts(now))
            .execute(&mut **tx)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Records how a listing of `res` ended: what it could not reach (`incomplete`) and why it
    /// could not be proven complete (`unproven`); None for both: proven complete.
    pub async fn set_completeness(
        &mut self,
        res: &Resource,
        incomplete: Option<&str>,
        unproven: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (resource, incomplete, unproven, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (resource) DO UPDATE SET incomplete = excluded.incomplete, \
               unproven = excluded.unproven, updated_at = excluded.updated_at",
            self.t("sync_state")
        );
        on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(res.name)
            .bind(incomplete)
            .bind(unproven)
            .bind(Ts(now))
            .execute(&mut **tx)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Saves (or clears) the resume point of the listing in flight.
    pub async fn set_listing(
        &mut self,
        res: &Resource,
        listing: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (resource, listing, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (resource) DO UPDATE SET listing = excluded.listing, updated_at = excluded.updated_at",
            self.t("sync_state")
        );
        on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(res.name)
            .bind(listing.map(|l| l.to_string()))
            .bind(Ts(now))
            .execute(&mut **tx)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Moves the cursor and ends the listing in flight; `full` records that this was a complete
    /// listing. An incremental listing never moves it backwards; a complete one sets it as it is
    /// (it listed everything as of its signpost: so a cursor set too far ahead is repaired).
    pub async fn set_cursor(
        &mut self,
        res: &Resource,
        cursor: DateTime<Utc>,
        full: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {t} AS s (resource, cursor, cursor_set_at, listing, last_full_at, updated_at) \
             VALUES ($1, $2, $4, NULL, $3, $4) \
             ON CONFLICT (resource) DO UPDATE SET cursor_set_at = excluded.cursor_set_at, \
               cursor = CASE WHEN s.cursor IS NULL OR excluded.cursor > s.cursor \
                               OR excluded.last_full_at IS NOT NULL \
                             THEN excluded.cursor ELSE s.cursor END, \
               listing = NULL, \
               last_full_at = COALESCE(excluded.last_full_at, s.last_full_at), \
               updated_at = excluded.updated_at",
            t = self.t("sync_state")
        );
        on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(res.name)
            .bind(Ts(cursor))
            .bind(full.then_some(Ts(now)))
            .bind(Ts(now))
            .execute(&mut **tx)
            .await?
            .rows_affected());
        Ok(())
    }
}
