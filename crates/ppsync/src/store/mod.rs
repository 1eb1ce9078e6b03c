//! The mirror's storage (product.md §7): one table per resource, the sync state, tokens and the run
//! history, behind versioned migrations. SQLite (WAL, one file) is the embedded default.
//!
//! Invariant: a cursor or a listing's resume point is written only inside a [`Tx`] that also holds
//! the records it covers; `store` knows nothing of HTTP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row as _, Sqlite, SqlitePool};

use crate::api::{TokenStore, Tokens};
use crate::record::{Row, Value};
use crate::resource::{ColumnType, Resource};
use crate::time::{canonical, parse_api_time};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database_url `{url}`: {detail}")]
    Open { url: String, detail: String },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored sync state for {resource} is unreadable: {detail}")]
    Corrupt { resource: String, detail: String },
}

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
}

/// A run-history row being finished.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub requests: u64,
    pub records_seen: u64,
    pub records_changed: u64,
    pub records_deleted: u64,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Rows per multi-row statement: well under SQLite's 32,766 bound variables. Only full-size
/// statements stay prepared in the connection's cache (a compiled 400-row statement is large, and
/// every shorter tail would otherwise be cached as a statement of its own).
const BATCH: usize = 400;

impl Store {
    /// Opens (creating if needed) and migrates the database named by `url`: a file path, or a
    /// `sqlite:` URL.
    pub async fn open(url: &str) -> Result<Store> {
        let open_err = |detail: String| Error::Open {
            url: url.to_string(),
            detail,
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(open_err(
                "PostgreSQL is not supported by this build yet: use a SQLite file path".into(),
            ));
        }
        let path =
            sqlite_path(url).ok_or_else(|| open_err("not a file path or sqlite: URL".into()))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(open_err(format!(
                "the directory {} does not exist: create it or point database_url elsewhere",
                parent.display()
            )));
        }
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // Bulk writes (a backfill) spend most of their time in SQLite: 16 KiB pages hold ~8
            // records each and take a quarter of the write calls (applies to a new file only),
            // statement journals stay in memory, and a 16 MiB page cache keeps the id and foreign
            // key indexes hot, whose inserts land in random places.
            .page_size(16384)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-8192");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| open_err(format!("cannot open: {e}")))?;
        restrict_permissions(&path);
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| open_err(format!(
                    "not a ppsync database ({e}): point database_url at a ppsync database or a new file"
                )))?;
        Ok(Store { pool, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn state(&self, res: &Resource) -> Result<State> {
        let row = sqlx::query("SELECT cursor, listing, last_full_at, cursor_set_at FROM sync_state WHERE resource = $1")
            .bind(res.name)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(State::default());
        };
        let corrupt = |detail: String| Error::Corrupt {
            resource: res.name.to_string(),
            detail,
        };
        let time = |v: Option<String>| -> Result<Option<DateTime<Utc>>> {
            v.map(|s| parse_api_time(&s).ok_or_else(|| corrupt(format!("bad timestamp {s:?}"))))
                .transpose()
        };
        let listing: Option<String> = row.try_get("listing")?;
        Ok(State {
            cursor: time(row.try_get("cursor")?)?,
            listing: listing
                .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(e.to_string())))
                .transpose()?,
            last_full_at: time(row.try_get("last_full_at")?)?,
            cursor_set_at: time(row.try_get("cursor_set_at")?)?,
        })
    }

    pub async fn begin(&self) -> Result<Tx> {
        Ok(Tx {
            tx: self.pool.begin().await?,
        })
    }

    pub async fn start_cycle(&self, trigger: &str, now: DateTime<Utc>) -> Result<i64> {
        let id = sqlx::query(
            "INSERT INTO sync_cycles (started_at, trigger) VALUES ($1, $2) RETURNING id",
        )
        .bind(canonical(now))
        .bind(trigger)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(id)
    }

    pub async fn finish_cycle(
        &self,
        id: i64,
        now: DateTime<Utc>,
        requests: u64,
        outcome: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sync_cycles SET finished_at = $1, requests = $2, outcome = $3 WHERE id = $4",
        )
        .bind(canonical(now))
        .bind(requests as i64)
        .bind(outcome)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn start_run(
        &self,
        cycle: i64,
        res: &Resource,
        mode: &str,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let id = sqlx::query(
            "INSERT INTO sync_runs (cycle_id, resource, mode, started_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(cycle)
        .bind(res.name)
        .bind(mode)
        .bind(canonical(now))
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(id)
    }

    pub async fn finish_run(
        &self,
        id: i64,
        now: DateTime<Utc>,
        stats: &RunStats,
        outcome: &str,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sync_runs SET finished_at = $1, requests = $2, records_seen = $3, records_changed = $4, \
             records_deleted = $5, outcome = $6, error = $7 WHERE id = $8",
        )
        .bind(canonical(now))
        .bind(stats.requests as i64)
        .bind(stats.records_seen as i64)
        .bind(stats.records_changed as i64)
        .bind(stats.records_deleted as i64)
        .bind(outcome)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Live and deleted record counts.
    pub async fn counts(&self, res: &Resource) -> Result<(i64, i64)> {
        let sql = format!(
            "SELECT COALESCE(SUM(deleted_at IS NULL), 0), COALESCE(SUM(deleted_at IS NOT NULL), 0) FROM {}",
            res.name
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Streams the stored records of a resource, sorted by id, to `out`.
    pub async fn export(
        &self,
        res: &Resource,
        include_deleted: bool,
        mut out: impl FnMut(ExportRow<'_>) -> std::io::Result<()>,
    ) -> anyhow::Result<u64> {
        let cols: Vec<&str> = res.columns.iter().map(|c| c.name).collect();
        let extra = if cols.is_empty() {
            String::new()
        } else {
            format!(", {}", cols.join(", "))
        };
        let filter = if include_deleted {
            ""
        } else {
            "WHERE deleted_at IS NULL"
        };
        let sql = format!(
            "SELECT id, created_at, updated_at, deleted_at, data{extra} FROM {} {filter} ORDER BY id",
            res.name
        );
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&self.pool);
        let mut n = 0;
        while let Some(row) = rows.try_next().await? {
            let mut typed = Vec::with_capacity(res.columns.len());
            for (i, c) in res.columns.iter().enumerate() {
                let idx = 5 + i;
                let v = match c.ty {
                    ColumnType::Int => row.try_get::<Option<i64>, _>(idx)?.map(|v| v.to_string()),
                    ColumnType::Real => row.try_get::<Option<f64>, _>(idx)?.map(|v| v.to_string()),
                    ColumnType::Bool => row.try_get::<Option<bool>, _>(idx)?.map(|v| v.to_string()),
                    ColumnType::Text | ColumnType::Time => row.try_get::<Option<String>, _>(idx)?,
                };
                typed.push(v);
            }
            out(ExportRow {
                id: row.try_get("id")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                deleted_at: row.try_get("deleted_at")?,
                data: row.try_get("data")?,
                columns: &typed,
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// Recent run history, newest first.
    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(
            "SELECT id, cycle_id, resource, mode, started_at, finished_at, requests, records_seen, \
             records_changed, records_deleted, outcome, error FROM sync_runs ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// The finished cycles with their request and record totals, oldest first.
    pub async fn cycles(&self) -> Result<Vec<CycleRow>> {
        let rows = sqlx::query(
            "SELECT c.id, c.started_at, c.trigger, c.requests, c.outcome, \
             COALESCE(SUM(r.records_seen), 0) AS seen, COALESCE(SUM(r.records_changed), 0) AS changed, \
             COALESCE(SUM(r.records_deleted), 0) AS deleted, COUNT(r.id) AS resources, \
             COALESCE(GROUP_CONCAT(DISTINCT r.mode), '') AS modes \
             FROM sync_cycles c LEFT JOIN sync_runs r ON r.cycle_id = c.id \
             WHERE c.finished_at IS NOT NULL GROUP BY c.id ORDER BY c.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CycleRow {
                    id: r.try_get("id")?,
                    started_at: r.try_get("started_at")?,
                    trigger: r.try_get("trigger")?,
                    requests: r.try_get("requests")?,
                    outcome: r.try_get("outcome")?,
                    records_seen: r.try_get("seen")?,
                    records_changed: r.try_get("changed")?,
                    records_deleted: r.try_get("deleted")?,
                    resources: r.try_get("resources")?,
                    modes: r.try_get("modes")?,
                })
            })
            .collect()
    }

    /// Live records whose `column` falls in [from, to] and that have no outbox row
    /// `<kind>:<id>:<column>` yet (deadlines that time brought into the window).
    pub async fn due_between(
        &self,
        res: &Resource,
        column: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kind: &str,
    ) -> Result<Vec<Box<serde_json::value::RawValue>>> {
        let sql = format!(
            "SELECT t.data FROM {t} t WHERE t.deleted_at IS NULL AND t.{column} >= $1 AND t.{column} <= $2 \
             AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = $3 || ':' || t.id || ':' || t.{column})",
            t = res.name
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(canonical(from))
            .bind(canonical(to))
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let data: String = r.try_get(0)?;
                serde_json::value::RawValue::from_string(data).map_err(|e| Error::Corrupt {
                    resource: res.name.to_string(),
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    /// Pending outbox rows due for delivery, oldest first: (id, payload, attempts).
    pub async fn outbox_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(String, String, u32)>> {
        let rows = sqlx::query(
            "SELECT id, payload, attempts FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(canonical(now))
        .bind(limit)
        .fetch_all(&self.pool)
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
    }

    pub async fn outbox_delivered(&self, id: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE outbox SET status = 'delivered', delivered_at = $1, attempts = attempts + 1 WHERE id = $2")
            .bind(canonical(now))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn outbox_failed(&self, id: &str, next: DateTime<Utc>, error: &str) -> Result<()> {
        sqlx::query("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE id = $3")
            .bind(canonical(next))
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Outbox rows per status.
    pub async fn outbox_counts(&self) -> Result<std::collections::BTreeMap<String, i64>> {
        let rows =
            sqlx::query("SELECT kind || '/' || status, COUNT(*) FROM outbox GROUP BY kind, status")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Open tasks and events due in [from, to], soonest first: (resource, due, subject, matter, id).
    pub async fn deadlines(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Deadline>> {
        let rows = sqlx::query(
            "SELECT 'task' AS kind, id, due_date AS due, subject, json_extract(data, '$.matter_ref.display_name') AS matter, status \
             FROM tasks WHERE deleted_at IS NULL AND due_date >= $1 AND due_date <= $2 AND COALESCE(status, '') <> 'Completed' \
             UNION ALL \
             SELECT 'event', id, start_date_time, subject, json_extract(data, '$.matter_ref.display_name'), NULL \
             FROM events WHERE deleted_at IS NULL AND start_date_time >= $1 AND start_date_time <= $2 \
             ORDER BY due, id",
        )
        .bind(canonical(from))
        .bind(canonical(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Deadline {
                    kind: r.try_get(0)?,
                    id: r.try_get(1)?,
                    due: r.try_get(2)?,
                    subject: r.try_get(3)?,
                    matter: r.try_get(4)?,
                    status: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The connection pool, for ad-hoc reads (tests, diagnostics).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// A task or event coming due.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Deadline {
    pub kind: String,
    pub id: String,
    pub due: String,
    pub subject: Option<String>,
    pub matter: Option<String>,
    pub status: Option<String>,
}

/// One exported record.
pub struct ExportRow<'a> {
    pub id: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub deleted_at: Option<String>,
    pub data: String,
    pub columns: &'a [Option<String>],
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub cycle_id: Option<i64>,
    pub resource: String,
    pub mode: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub requests: i64,
    pub records_seen: i64,
    pub records_changed: i64,
    pub records_deleted: i64,
    pub outcome: String,
    pub error: Option<String>,
}

impl RunRow {
    fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Self> {
        Ok(RunRow {
            id: r.try_get("id")?,
            cycle_id: r.try_get("cycle_id")?,
            resource: r.try_get("resource")?,
            mode: r.try_get("mode")?,
            started_at: r.try_get("started_at")?,
            finished_at: r.try_get("finished_at")?,
            requests: r.try_get("requests")?,
            records_seen: r.try_get("records_seen")?,
            records_changed: r.try_get("records_changed")?,
            records_deleted: r.try_get("records_deleted")?,
            outcome: r.try_get("outcome")?,
            error: r.try_get("error")?,
        })
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CycleRow {
    pub id: i64,
    pub started_at: String,
    pub trigger: String,
    pub requests: i64,
    pub outcome: String,
    pub records_seen: i64,
    pub records_changed: i64,
    pub records_deleted: i64,
    pub resources: i64,
    pub modes: String,
}

/// A transaction holding records together with the state that covers them.
pub struct Tx {
    tx: sqlx::Transaction<'static, Sqlite>,
}

impl Tx {
    /// Upserts rows (idempotent: replaying changes nothing) and marks every row seen by `run`.
    /// Returns the records that were new or changed (by content hash) or came back from deletion,
    /// each with the value its `watch` column had before (None: the record is new).
    pub async fn upsert(
        &mut self,
        res: &Resource,
        rows: &mut Vec<Row>,
        run: i64,
        now: DateTime<Utc>,
        watch: Option<&str>,
    ) -> Result<Vec<Fresh>> {
        // The last copy of an id wins: a later read is never older than an earlier one in a pass.
        dedup_keep_last(rows);
        let mut changed = Vec::new();
        let now_s = canonical(now);
        for chunk in rows.chunks(BATCH) {
            let known = self.known_hashes(res, chunk, watch).await?;
            let (fresh, same): (Vec<&Row>, Vec<&Row>) = chunk.iter().partition(|r| {
                known
                    .get(r.id.as_str())
                    .is_none_or(|k| (k.0, k.1) != (r.hash, false))
            });
            if !fresh.is_empty() {
                changed.extend(fresh.iter().map(|r| Fresh {
                    id: r.id.clone(),
                    prior: known.get(r.id.as_str()).map(|k| k.2.clone()),
                }));
                let mut q = QueryBuilder::<Sqlite>::new(format!(
                    "INSERT INTO {} (id, created_at, updated_at, deleted_at, synced_at, hash, seen_run, data",
                    res.name
                ));
                for c in res.columns {
                    q.push(", ").push(c.name);
                }
                q.push(") ");
                q.push_values(fresh, |mut b, r| {
                    b.push_bind(r.id.clone())
                        .push_bind(r.created_at.map(canonical))
                        .push_bind(r.updated_at.map(canonical))
                        .push_bind(None::<String>)
                        .push_bind(now_s.clone())
                        .push_bind(r.hash)
                        .push_bind(run)
                        .push_bind(r.data.get().to_string());
                    for v in &r.columns {
                        match v {
                            Value::Null => b.push_bind(None::<String>),
                            Value::Text(s) => b.push_bind(s.clone()),
                            Value::Int(i) => b.push_bind(*i),
                            Value::Real(f) => b.push_bind(*f),
                            Value::Bool(x) => b.push_bind(*x),
                            Value::Time(t) => b.push_bind(canonical(*t)),
                        };
                    }
                });
                q.push(
                    " ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, updated_at = excluded.updated_at, \
                     deleted_at = NULL, synced_at = excluded.synced_at, hash = excluded.hash, seen_run = excluded.seen_run, \
                     data = excluded.data",
                );
                for c in res.columns {
                    q.push(format!(", {0} = excluded.{0}", c.name));
                }
                q.build()
                    .persistent(chunk.len() == BATCH)
                    .execute(&mut *self.tx)
                    .await?;
            }
            if !same.is_empty() {
                let mut q =
                    QueryBuilder::<Sqlite>::new(format!("UPDATE {} SET seen_run = ", res.name));
                q.push_bind(run).push(" WHERE id IN (");
                let mut sep = q.separated(", ");
                for r in same {
                    sep.push_bind(r.id.clone());
                }
                q.push(")");
                q.build()
                    .persistent(chunk.len() == BATCH)
                    .execute(&mut *self.tx)
                    .await?;
            }
        }
        Ok(changed)
    }

    /// (hash, deleted, watched column) of the rows already stored.
    async fn known_hashes(
        &mut self,
        res: &Resource,
        rows: &[Row],
        watch: Option<&str>,
    ) -> Result<std::collections::HashMap<String, (i64, bool, Option<String>)>> {
        let watched = watch.unwrap_or("NULL");
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT id, hash, deleted_at IS NOT NULL, {watched} FROM {} WHERE id IN (",
            res.name
        ));
        let mut sep = q.separated(", ");
        for r in rows {
            sep.push_bind(r.id.clone());
        }
        q.push(")");
        let found = q
            .build()
            .persistent(rows.len() == BATCH)
            .fetch_all(&mut *self.tx)
            .await?;
        found
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>(0)?,
                    (
                        r.try_get::<i64, _>(1)?,
                        r.try_get::<bool, _>(2)?,
                        r.try_get::<Option<String>, _>(3)?,
                    ),
                ))
            })
            .collect()
    }

    /// How many live records were not seen by runs since `first_run` (what a reconciliation would mark).
    pub async fn count_unseen(&mut self, res: &Resource, first_run: i64) -> Result<i64> {
        // A range scan on the seen_run index, not a read of every row.
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE seen_run < $1 AND deleted_at IS NULL",
            res.name
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(first_run)
            .fetch_one(&mut *self.tx)
            .await?)
    }

    /// Live records of a resource (reads the whole table: only for the mass-deletion guard).
    pub async fn count_live(&mut self, res: &Resource) -> Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {} WHERE deleted_at IS NULL", res.name);
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *self.tx)
            .await?)
    }

    /// Marks live records not seen since `first_run` as deleted (never removes them).
    pub async fn mark_unseen_deleted(
        &mut self,
        res: &Resource,
        first_run: i64,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let sql = format!(
            "UPDATE {} SET deleted_at = $1, synced_at = $1 WHERE seen_run < $2 AND deleted_at IS NULL",
            res.name
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(canonical(now))
            .bind(first_run)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected())
    }

    /// Saves (or clears) the resume point of the listing in flight.
    pub async fn set_listing(
        &mut self,
        res: &Resource,
        listing: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sync_state (resource, listing, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (resource) DO UPDATE SET listing = excluded.listing, updated_at = excluded.updated_at",
        )
        .bind(res.name)
        .bind(listing.map(|l| l.to_string()))
        .bind(canonical(now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Moves the cursor (never backwards) and ends the listing in flight; `full` records that
    /// this was a complete listing.
    pub async fn set_cursor(
        &mut self,
        res: &Resource,
        cursor: DateTime<Utc>,
        full: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let c = canonical(cursor);
        sqlx::query(
            "INSERT INTO sync_state (resource, cursor, cursor_set_at, listing, last_full_at, updated_at) \
             VALUES ($1, $2, $4, NULL, $3, $4) \
             ON CONFLICT (resource) DO UPDATE SET cursor_set_at = excluded.cursor_set_at, \
               cursor = CASE WHEN sync_state.cursor IS NULL OR excluded.cursor > sync_state.cursor \
                             THEN excluded.cursor ELSE sync_state.cursor END, \
               listing = NULL, \
               last_full_at = COALESCE(excluded.last_full_at, sync_state.last_full_at), \
               updated_at = excluded.updated_at",
        )
        .bind(res.name)
        .bind(c)
        .bind(full.then(|| canonical(now)))
        .bind(canonical(now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Enqueues notifications; an id already in the outbox is left alone (stable ids dedupe).
    pub async fn enqueue(&mut self, items: &[Notification], now: DateTime<Utc>) -> Result<u64> {
        // Multi-row statements (a backfill of tasks enqueues one row per task); rows are inserted in
        // order, so a duplicate id within a statement is left alone like one already stored.
        let mut n = 0;
        let now_s = canonical(now);
        for chunk in items.chunks(BATCH) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO outbox (id, kind, resource, record_id, payload, created_at, status, next_attempt_at, delivered_at) ",
            );
            q.push_values(chunk, |mut b, item| {
                b.push_bind(&item.id)
                    .push_bind(&item.kind)
                    .push_bind(&item.resource)
                    .push_bind(&item.record_id)
                    .push_bind(item.payload.to_string())
                    .push_bind(now_s.clone())
                    .push_bind(if item.suppressed {
                        "suppressed"
                    } else {
                        "pending"
                    })
                    .push_bind(now_s.clone())
                    .push_bind(item.suppressed.then(|| now_s.clone()));
            });
            q.push(" ON CONFLICT (id) DO NOTHING");
            n += q
                .build()
                .persistent(chunk.len() == BATCH)
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// A record the upsert wrote, with its watched column's previous value (None: it is new).
#[derive(Clone, Debug)]
pub struct Fresh {
    pub id: String,
    pub prior: Option<Option<String>>,
}

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

fn dedup_keep_last(rows: &mut Vec<Row>) {
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let mut keep = vec![false; rows.len()];
    for (i, r) in rows.iter().enumerate().rev() {
        keep[i] = seen.insert(r.id.clone());
    }
    let mut i = 0;
    rows.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

impl TokenStore for Store {
    fn load(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<Option<Tokens>>> + Send + '_>,
    > {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT access_token, refresh_token, expires_at FROM oauth_tokens WHERE id = 1",
            )
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let expires: String = row.try_get("expires_at")?;
            let refresh: String = row.try_get("refresh_token")?;
            anyhow::ensure!(
                !refresh.trim().is_empty(),
                "the stored refresh token is empty"
            );
            Ok(Some(Tokens {
                access_token: SecretString::from(row.try_get::<String, _>("access_token")?),
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
            // A committed WAL transaction with synchronous=NORMAL survives a process kill.
            sqlx::query(
                "INSERT INTO oauth_tokens (id, access_token, refresh_token, expires_at, updated_at) \
                 VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET access_token = excluded.access_token, \
                 refresh_token = excluded.refresh_token, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            )
            .bind(t.access_token.expose_secret())
            .bind(t.refresh_token.expose_secret())
            .bind(canonical(t.expires_at))
            .bind(canonical(Utc::now()))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }
}

impl Store {
    /// Whether a token pair is stored, and its expiry.
    pub async fn token_status(&self) -> Result<Option<(DateTime<Utc>, String)>> {
        let row = sqlx::query("SELECT expires_at, updated_at FROM oauth_tokens WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => {
                let e: String = r.try_get(0)?;
                parse_api_time(&e).map(|t| (t, r.try_get::<String, _>(1).unwrap_or_default()))
            }
            None => None,
        })
    }

    /// Every resource's state, keyed by name.
    pub async fn states(
        &self,
    ) -> Result<std::collections::HashMap<String, (Option<String>, Option<String>, bool)>> {
        let rows = sqlx::query(
            "SELECT resource, cursor, last_full_at, listing IS NOT NULL FROM sync_state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))))
            .collect()
    }
}

/// One resource's run history in short (for the status endpoint).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunTotals {
    /// Runs recorded for the resource.
    pub runs: i64,
    /// Records written (new, changed or undeleted) over every run.
    pub records_changed: i64,
    /// The latest run.
    pub last: RunRow,
}

impl Store {
    /// Per resource (by name): totals over the run history and its latest run. Read-only.
    pub async fn run_totals(&self) -> Result<std::collections::HashMap<String, RunTotals>> {
        let rows = sqlx::query(
            "SELECT r.id, r.cycle_id, r.resource, r.mode, r.started_at, r.finished_at, r.requests, \
             r.records_seen, r.records_changed, r.records_deleted, r.outcome, r.error, \
             t.runs AS total_runs, t.changed AS total_changed \
             FROM (SELECT resource, COUNT(*) AS runs, COALESCE(SUM(records_changed), 0) AS changed, \
                   MAX(id) AS last_id FROM sync_runs GROUP BY resource) t \
             JOIN sync_runs r ON r.id = t.last_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let last = RunRow::from_row(r)?;
                Ok((
                    last.resource.clone(),
                    RunTotals {
                        runs: r.try_get("total_runs")?,
                        records_changed: r.try_get("total_changed")?,
                        last,
                    },
                ))
            })
            .collect()
    }
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    let u = url.trim();
    if u.is_empty() {
        return None;
    }
    let rest = match u.strip_prefix("sqlite:") {
        Some(r) => r.strip_prefix("//").unwrap_or(r),
        None if u.contains("://") => return None,
        None => u,
    };
    let rest = rest.split('?').next().unwrap_or(rest);
    (!rest.is_empty()).then(|| PathBuf::from(rest))
}

/// The database holds the OAuth tokens: keep it private to its owner.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

#[cfg(test)]
mod tests;
