//! The notification outbox (`outbox`): rows enqueued in a page's transaction with the records
//! that caused them, then delivered, retried or set aside as dead by the delivery task.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::tx::blocking;
use super::{Db, Result, Store, Ts, Tx, TxInner, pg_write, sqlite_write};

/// An outbox row to write.
#[derive(Clone, Debug)]
pub struct Notification {
    pub id: String,
    pub kind: String,
    pub resource: String,
    pub record_id: String,
    pub payload: serde_json::Value,
    /// Recorded but never delivered (first backfill).
    pub suppressed: bool,
}

/// A notification set aside after its last allowed try failed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeadRow {
    pub id: String,
    pub kind: String,
    pub attempts: i64,
    pub last_error: String,
}

impl Tx {
    /// Enqueues notifications; an id already in the outbox is left alone (stable ids dedupe),
    /// except a cancelled one, never sent: its deadline moved away and has come back to that
    /// date, so it is pending again with the new payload.
    pub async fn enqueue(&mut self, items: &[Notification], now: DateTime<Utc>) -> Result<u64> {
        let outbox = self.t("outbox");
        match &mut self.tx {
            TxInner::Sqlite(tx) => {
                let mut handle = tx.lock_handle().await?;
                blocking(|| sqlite_write::enqueue(&mut handle, items, now))
            }
            TxInner::Pg(tx) => pg_write::enqueue(tx, &outbox, items, now).await,
        }
    }
}

impl Store {
    /// Pending outbox rows due for delivery, oldest first: (id, payload, attempts).
    pub async fn outbox_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(String, String, u32)>> {
        let sql = format!(
            "SELECT id, payload, attempts FROM {} WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY created_at, id LIMIT $2",
            self.t("outbox")
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(Ts(now))
                .bind(limit)
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get::<i64, _>(2)?.max(0) as u32,
                    ))
                })
                .collect()
        })
    }

    /// Where outbox rows change status: on SQLite the page writer's own connection, so the
    /// delivery task's writes queue behind a page transaction instead of racing it (a deferred
    /// transaction that read before another connection wrote cannot write: SQLITE_BUSY_SNAPSHOT).
    fn outbox_db(&self) -> Db {
        match (&self.db, &self.writer) {
            (Db::Sqlite(_), Some(w)) => Db::Sqlite(w.clone()),
            _ => self.db.clone(),
        }
    }

    pub async fn outbox_delivered(&self, id: &str, now: DateTime<Utc>) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET status = 'delivered', delivered_at = $1, attempts = attempts + 1 WHERE id = $2",
            self.t("outbox")
        );
        on!(Db, &self.outbox_db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(Ts(now))
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// A failed try: the row waits until `next`. `counted`: the try counts against the row
    /// (towards `dead`); not when the sink as a whole looked down.
    pub async fn outbox_failed(
        &self,
        id: &str,
        next: DateTime<Utc>,
        error: &str,
        counted: bool,
    ) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET attempts = attempts + $1, next_attempt_at = $2, last_error = $3 \
             WHERE id = $4 AND status = 'pending'",
            self.t("outbox")
        );
        on!(Db, &self.outbox_db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(counted))
            .bind(Ts(next))
            .bind(error)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// A row's last allowed try failed: set aside as `dead` (kept; `outbox_retry` revives it).
    pub async fn outbox_dead(&self, id: &str, error: &str) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET status = 'dead', attempts = attempts + 1, last_error = $1 \
             WHERE id = $2 AND status = 'pending'",
            self.t("outbox")
        );
        on!(Db, &self.outbox_db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(error)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// When the earliest pending row falls due (None: nothing pending).
    pub async fn outbox_next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let sql = format!(
            "SELECT next_attempt_at FROM {} WHERE status = 'pending' ORDER BY next_attempt_at LIMIT 1",
            self.t("outbox")
        );
        on!(Db, &self.db, p => {
            let t: Option<Ts> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_optional(p)
                .await?;
            Ok(t.map(|t| t.0))
        })
    }

    /// The status of each of `ids` that is in the outbox.
    pub async fn outbox_status(
        &self,
        ids: &[String],
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let sql = format!("SELECT status FROM {} WHERE id = $1", self.t("outbox"));
        let mut out = std::collections::BTreeMap::new();
        for id in ids {
            let status: Option<String> = on!(Db, &self.db, p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .fetch_optional(p)
                .await?);
            if let Some(s) = status {
                out.insert(id.clone(), s);
            }
        }
        Ok(out)
    }

    /// Puts dead rows (all of them, or those of `ids`) back to pending, due `now`, with their
    /// full number of tries again. Returns how many.
    pub async fn outbox_retry(&self, ids: Option<&[String]>, now: DateTime<Utc>) -> Result<u64> {
        let sql = format!(
            "UPDATE {} SET status = 'pending', attempts = 0, next_attempt_at = $1 \
             WHERE status = 'dead' AND ($2 OR id = $3)",
            self.t("outbox")
        );
        let all = ids.is_none();
        let ids = ids
            .map(<[String]>::to_vec)
            .unwrap_or_else(|| vec![String::new()]);
        let mut n = 0;
        for id in &ids {
            n += on!(Db, &self.outbox_db(), p => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(Ts(now))
                .bind(all)
                .bind(id)
                .execute(p)
                .await?
                .rows_affected());
        }
        Ok(n)
    }

    /// Dead rows, oldest first (at most `limit`).
    pub async fn outbox_dead_rows(&self, limit: i64) -> Result<Vec<DeadRow>> {
        let sql = format!(
            "SELECT id, kind, attempts, COALESCE(last_error, '') FROM {} WHERE status = 'dead' \
             ORDER BY created_at, id LIMIT $1",
            self.t("outbox")
        );
        on!(Db, &self.db, p => {
            let rows: Vec<(String, String, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(limit)
                .fetch_all(p)
                .await?;
            Ok(rows
                .into_iter()
                .map(|(id, kind, attempts, last_error)| DeadRow { id, kind, attempts, last_error })
                .collect())
        })
    }

    /// Outbox rows per status.
    pub async fn outbox_counts(&self) -> Result<std::collections::BTreeMap<String, i64>> {
        let sql = format!(
            "SELECT kind || '/' || status, COUNT(*) FROM {} GROUP BY kind, status",
            self.t("outbox")
        );
        on!(Db, &self.db, p => {
            let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?;
            Ok(rows.into_iter().collect())
        })
    }
}
