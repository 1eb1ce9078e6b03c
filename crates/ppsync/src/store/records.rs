//! A resource's records (one table per resource) inside a page's transaction: the upsert, which
//! hands each backend's write path (`sqlite_write`, `pg_write`) the page, and the counts, samples
//! and deletion marks a listing's reconciliation works with.

use chrono::{DateTime, Utc};

use super::tx::blocking;
use super::{Db, Result, Store, Ts, Tx, TxInner, pg_copy, pg_write, sqlite_write};
use crate::record::Row;
use crate::resource::Resource;

/// A record the upsert wrote, with its watched column's previous value (None: it is new).
#[derive(Clone, Debug)]
pub struct Fresh {
    pub id: String,
    pub prior: Option<Option<String>>,
}

/// The class of the advisory locks that serialize writers of one table (`pg_advisory_xact_lock`'s
/// first key); the second is the qualified table name's hash.
const TABLE_WRITE_LOCKS: i32 = 0x7070_7379; // "ppsy"

impl Tx {
    /// Upserts rows (idempotent: replaying changes nothing) and marks every row seen by `run`.
    /// Returns the records that were new or changed (by content hash) or came back from deletion,
    /// each with the value its `watch` column had before (None: the record is new).
    ///
    /// `only_this_run`: every row the table holds was written by `run` (it was empty when the run
    /// began). SQLite then skips looking stored rows up first (a changed one reports no prior
    /// value); PostgreSQL ignores it.
    ///
    /// PostgreSQL writes a batch of `pg_copy::MIN_ROWS` rows or more by `COPY` (`pg_copy`),
    /// fewer by multi-row statements (`pg_write`), with the same outcome.
    pub async fn upsert(
        &mut self,
        res: &Resource,
        rows: &mut Vec<Row>,
        run: i64,
        now: DateTime<Utc>,
        watch: Option<&str>,
        only_this_run: bool,
    ) -> Result<Vec<Fresh>> {
        // The last copy of an id wins: a later read is never older than an earlier one in a pass.
        dedup_keep_last(rows);
        let table = self.t(res.name);
        if let TxInner::Pg(tx) = &mut self.tx {
            // Two processes writing one table at once (a CLI pass beside the daemon) take turns
            // until commit: their batches, in the API's order rather than the key's, would
            // otherwise lock rows in crossing orders and deadlock one another (seen under load).
            // Two int keys: a key space apart from the claims' and the ledger's bigint locks.
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(TABLE_WRITE_LOCKS)
                .bind(&table)
                .execute(&mut **tx)
                .await?;
        }
        match &mut self.tx {
            TxInner::Sqlite(tx) => {
                let mut handle = tx.lock_handle().await?;
                let write = sqlite_write::Write {
                    table: &table,
                    res,
                    run,
                    now,
                    watch,
                    only_this_run,
                };
                blocking(|| write.rows(&mut handle, rows))
            }
            // A big batch (a backfill's, a re-listing's) by COPY; a handful of rows (an
            // incremental page's) by statements.
            TxInner::Pg(tx) if rows.len() >= pg_copy::MIN_ROWS => {
                pg_copy::upsert(
                    tx,
                    &mut self.staged,
                    &table,
                    res,
                    rows,
                    run,
                    now,
                    watch,
                    only_this_run,
                )
                .await
            }
            TxInner::Pg(tx) => pg_write::upsert(tx, &table, res, rows, run, now, watch).await,
        }
    }

    /// Whether the resource's table holds no row at all.
    pub async fn is_empty(&mut self, res: &Resource) -> Result<bool> {
        let sql = format!("SELECT NOT EXISTS (SELECT 1 FROM {})", self.t(res.name));
        Ok(on!(TxInner, &mut self.tx, tx => {
            sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(sql)).fetch_one(&mut **tx).await?
        }))
    }

    /// How many live records were not seen by runs since `first_run` (what a reconciliation would mark).
    pub async fn count_unseen(&mut self, res: &Resource, first_run: i64) -> Result<i64> {
        // A range scan on the seen_run index, not a read of every row.
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE seen_run < $1 AND deleted_at IS NULL",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(first_run)
            .fetch_one(&mut **tx)
            .await?),
        )
    }

    /// How many records runs since `first_run` have seen (what a listing has reached so far).
    pub async fn count_seen(&mut self, res: &Resource, first_run: i64) -> Result<i64> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE seen_run >= $1",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(first_run)
            .fetch_one(&mut **tx)
            .await?),
        )
    }

    /// Up to `limit` of the live records not seen since `first_run`, spread over the table by
    /// their content hash (a sample that favours no id range).
    pub async fn unseen_sample(
        &mut self,
        res: &Resource,
        first_run: i64,
        limit: u32,
    ) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT id FROM {} WHERE seen_run < $1 AND deleted_at IS NULL ORDER BY hash LIMIT $2",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(first_run)
            .bind(i64::from(limit))
            .fetch_all(&mut **tx)
            .await?),
        )
    }

    /// Live records whose typed `column` is NULL.
    pub async fn count_null(&mut self, res: &Resource, column: &str) -> Result<i64> {
        debug_assert!(res.columns.iter().any(|c| c.name == column));
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {column} IS NULL AND deleted_at IS NULL",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut **tx)
            .await?),
        )
    }

    /// Up to `limit` records seen since `first_run` (a control for by-id reads).
    pub async fn seen_sample(
        &mut self,
        res: &Resource,
        first_run: i64,
        limit: u32,
    ) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT id FROM {} WHERE seen_run >= $1 AND deleted_at IS NULL LIMIT $2",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(first_run)
            .bind(i64::from(limit))
            .fetch_all(&mut **tx)
            .await?),
        )
    }

    /// Marks the given live records deleted (never removes them).
    pub async fn mark_deleted(
        &mut self,
        res: &Resource,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let sql = format!(
            "UPDATE {} SET deleted_at = $1, synced_at = $1 WHERE id = $2 AND deleted_at IS NULL",
            self.t(res.name)
        );
        let mut n = 0;
        for id in ids {
            n += on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(Ts(now))
                .bind(id)
                .execute(&mut **tx)
                .await?
                .rows_affected());
        }
        // A deleted record holds no deadline (what `deadline_rows` is rewritten from is live).
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.drop_deadline_rows(res.name, &ids).await?;
        Ok(n)
    }

    /// Live records of a resource (reads the whole table: only for the mass-deletion guard).
    pub async fn count_live(&mut self, res: &Resource) -> Result<i64> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE deleted_at IS NULL",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut **tx)
            .await?),
        )
    }

    /// Marks live records not seen since `first_run` as deleted (never removes them).
    pub async fn mark_unseen_deleted(
        &mut self,
        res: &Resource,
        first_run: i64,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        // Their deadlines go first, found by the same range of the seen_run index (ids compared
        // in the default collation on PostgreSQL, deadline_rows.record_id's).
        let id = match self.tx {
            TxInner::Pg(_) => "id COLLATE \"default\"",
            TxInner::Sqlite(_) => "id",
        };
        let drop = format!(
            "DELETE FROM {} WHERE record_table = $1 AND record_id IN \
             (SELECT {id} FROM {} WHERE seen_run < $2 AND deleted_at IS NULL)",
            self.t("deadline_rows"),
            self.t(res.name)
        );
        on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(drop))
            .bind(res.name)
            .bind(first_run)
            .execute(&mut **tx)
            .await?
            .rows_affected());
        let sql = format!(
            "UPDATE {} SET deleted_at = $1, synced_at = $1 WHERE seen_run < $2 AND deleted_at IS NULL",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(Ts(now))
            .bind(first_run)
            .execute(&mut **tx)
            .await?
            .rows_affected()),
        )
    }
}

impl Store {
    /// Live and deleted record counts.
    pub async fn counts(&self, res: &Resource) -> Result<(i64, i64)> {
        let sql = format!(
            "SELECT COUNT(CASE WHEN deleted_at IS NULL THEN 1 END), COUNT(deleted_at) FROM {}",
            self.t(res.name)
        );
        Ok(on!(Db, &self.db, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(p).await?))
    }
}

fn dedup_keep_last(rows: &mut Vec<Row>) {
    // Borrowed ids, not copies: this runs on the writer's path for every batch (the whole
    // dedup was ~2% of that task's time in a scale-1 backfill's profile).
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let mut keep = vec![false; rows.len()];
    for (i, r) in rows.iter().enumerate().rev() {
        keep[i] = seen.insert(r.id.as_str());
    }
    drop(seen);
    let mut i = 0;
    rows.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}
