//! The detail queue (`detail_queue`): records whose by-id rendering holds fields the list leaves
//! out, waiting for that read. Queued in the page transaction that wrote the record (so a killed
//! process loses nothing), stored back only while the record still has the content hash it was
//! queued with (a listing that changed it meanwhile has queued it again), dequeued in the same
//! transaction as the store.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row as _};

use super::{Db, Result, Store, Ts, Tx, TxInner};
use crate::record::{Row, Value};
use crate::resource::{ColumnType, Resource};

/// A queued record.
#[derive(Clone, Debug)]
pub struct DetailItem {
    pub resource: String,
    pub id: String,
    /// The list rendering's content hash when it was queued.
    pub hash: i64,
    pub attempts: i64,
}

/// The queue of one resource, for status.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DetailBacklog {
    /// Records waiting for their by-id read.
    pub queued: i64,
    /// Of those, records whose last read failed (retried later with backoff).
    pub failing: i64,
}

/// Rows per multi-row statement (SQLite binds at most 32,766 values; five per row).
const QUEUE_BATCH: usize = 1000;

impl Tx {
    /// Queues records (id, list hash) for their by-id read; a record already queued takes the new
    /// hash and is due at once.
    pub async fn queue_details(
        &mut self,
        res: &Resource,
        items: &[(&str, i64)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let head = format!(
            "INSERT INTO {} (resource, id, hash, queued_at, next_at) ",
            self.t("detail_queue")
        );
        for chunk in items.chunks(QUEUE_BATCH) {
            on!(TxInner, &mut self.tx, tx => {
                let mut q = QueryBuilder::<Dialect>::new(head.as_str());
                q.push_values(chunk, |mut b, (id, hash)| {
                    b.push_bind(res.name)
                        .push_bind(*id)
                        .push_bind(*hash)
                        .push_bind(Ts(now))
                        .push_bind(Ts(now));
                });
                q.push(
                    " ON CONFLICT (resource, id) DO UPDATE SET hash = excluded.hash, \
                     next_at = excluded.next_at, attempts = 0, last_error = NULL",
                );
                q.build().execute(&mut **tx).await?;
            });
        }
        Ok(())
    }

    /// Stores a record's by-id rendering over the list's, if the stored record still has the
    /// content hash it was queued with and is live; dequeues it either way (a record changed
    /// meanwhile was queued again with its new hash, which this leaves alone). The `hash` column
    /// keeps the list's hash, so a listing that sees the record unchanged leaves this rendering
    /// in place. Returns whether it was stored.
    pub async fn store_detail(
        &mut self,
        res: &Resource,
        row: &Row,
        list_hash: i64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let pg = matches!(self.tx, TxInner::Pg(_));
        // Bound in this order: created_at, updated_at, synced_at, data, [raw], typed columns.
        let mut cols: Vec<(&str, &str)> = vec![
            ("created_at", ""),
            ("updated_at", ""),
            ("synced_at", ""),
            ("data", if pg { "::jsonb" } else { "" }),
        ];
        if pg {
            cols.push(("raw", ""));
        }
        cols.extend(res.columns.iter().map(|c| (c.name, "")));
        let set: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, (name, cast))| format!("{name} = ${}{cast}", i + 1))
            .collect();
        let sql = format!(
            "UPDATE {} SET {} WHERE id = ${} AND hash = ${} AND deleted_at IS NULL",
            self.t(res.name),
            set.join(", "),
            cols.len() + 1,
            cols.len() + 2
        );
        let stored = on!(TxInner, &mut self.tx, tx => {
            let mut q = sqlx::query::<Dialect>(sqlx::AssertSqlSafe(sql))
                .bind(row.created_at.map(Ts))
                .bind(row.updated_at.map(Ts))
                .bind(Ts(now));
            if pg {
                // As the upsert: what jsonb cannot hold is U+FFFD there, the text kept in `raw`.
                q = q
                    .bind(row.jsonb.as_deref().unwrap_or(&row.data))
                    .bind((row.jsonb.is_some() || row.keep_raw).then_some(&*row.data));
            } else {
                q = q.bind(&*row.data);
            }
            for (v, c) in row.columns.iter().zip(res.columns) {
                q = match v {
                    Value::Null => match c.ty {
                        ColumnType::Text => q.bind(None::<String>),
                        ColumnType::Time => q.bind(None::<Ts>),
                        ColumnType::Int => q.bind(None::<i64>),
                        ColumnType::Real => q.bind(None::<f64>),
                        ColumnType::Bool => q.bind(None::<bool>),
                    },
                    Value::Text(s) => q.bind(s.as_str()),
                    Value::Int(i) => q.bind(*i),
                    Value::Real(f) => q.bind(*f),
                    Value::Bool(b) => q.bind(*b),
                    Value::Time(t) => q.bind(Ts(*t)),
                };
            }
            q.bind(row.id.as_str())
                .bind(list_hash)
                .execute(&mut **tx)
                .await?
                .rows_affected()
        });
        self.dequeue_detail(res, &row.id, list_hash).await?;
        Ok(stored > 0)
    }

    /// Takes a record off the queue, if it is still queued with `hash`.
    pub async fn dequeue_detail(&mut self, res: &Resource, id: &str, hash: i64) -> Result<()> {
        let sql = format!(
            "DELETE FROM {} WHERE resource = $1 AND id = $2 AND hash = $3",
            self.t("detail_queue")
        );
        on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(res.name)
            .bind(id)
            .bind(hash)
            .execute(&mut **tx)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Empties a resource's queue (its by-id reads were switched off or proven to add nothing).
    pub async fn drop_details(&mut self, res: &Resource) -> Result<u64> {
        let sql = format!("DELETE FROM {} WHERE resource = $1", self.t("detail_queue"));
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(res.name)
            .execute(&mut **tx)
            .await?
            .rows_affected()),
        )
    }
}

impl Store {
    /// Up to `limit` queued records of `resources` due by `now`, the longest waiting first.
    pub async fn details_due(
        &self,
        resources: &[&str],
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DetailItem>> {
        if resources.is_empty() {
            return Ok(Vec::new());
        }
        let head = format!(
            "SELECT resource, id, hash, attempts FROM {} WHERE next_at <= ",
            self.t("detail_queue")
        );
        on!(Db, &self.db, p => {
            let mut q = QueryBuilder::<Dialect>::new(head.as_str());
            q.push_bind(Ts(now)).push(" AND resource IN (");
            let mut sep = q.separated(", ");
            for r in resources {
                sep.push_bind(*r);
            }
            q.push(") ORDER BY next_at, queued_at, resource, id LIMIT ")
                .push_bind(limit);
            let rows = q.build().fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    Ok(DetailItem {
                        resource: r.try_get(0)?,
                        id: r.try_get(1)?,
                        hash: r.try_get(2)?,
                        attempts: r.try_get::<i64, _>(3)?,
                    })
                })
                .collect()
        })
    }

    /// When the next queued record of `resources` is due (None: the queue is empty).
    pub async fn next_detail_at(&self, resources: &[&str]) -> Result<Option<DateTime<Utc>>> {
        if resources.is_empty() {
            return Ok(None);
        }
        let head = format!(
            "SELECT MIN(next_at) FROM {} WHERE resource IN (",
            self.t("detail_queue")
        );
        let t: Option<Ts> = on!(Db, &self.db, p => {
            let mut q = QueryBuilder::<Dialect>::new(head.as_str());
            let mut sep = q.separated(", ");
            for r in resources {
                sep.push_bind(*r);
            }
            q.push(")");
            q.build_query_scalar::<Option<Ts>>().fetch_one(p).await?
        });
        Ok(t.map(|t| t.0))
    }

    /// A by-id read failed: tried again at `next_at`, the error kept for status.
    pub async fn detail_failed(
        &self,
        res: &Resource,
        id: &str,
        hash: i64,
        next_at: DateTime<Utc>,
        error: &str,
    ) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET attempts = attempts + 1, next_at = $1, last_error = $2 \
             WHERE resource = $3 AND id = $4 AND hash = $5",
            self.t("detail_queue")
        );
        let error: String = error.chars().take(500).collect();
        on!(Db, &self.db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(Ts(next_at))
            .bind(error)
            .bind(res.name)
            .bind(id)
            .bind(hash)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The queue per resource (only resources with something queued).
    pub async fn detail_backlog(&self) -> Result<BTreeMap<String, DetailBacklog>> {
        let sql = format!(
            "SELECT resource, COUNT(*), SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END) FROM {} \
             GROUP BY resource",
            self.t("detail_queue")
        );
        let rows: Vec<(String, i64, Option<i64>)> = on!(Db, &self.db, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|(r, queued, failing)| {
                (
                    r,
                    DetailBacklog {
                        queued,
                        failing: failing.unwrap_or(0),
                    },
                )
            })
            .collect())
    }

    /// A live record's stored text (as export gives it), if it is there.
    pub async fn record_text(&self, res: &Resource, id: &str) -> Result<Option<String>> {
        let data = match self.db {
            Db::Sqlite(_) => "data",
            Db::Pg(_) => "COALESCE(raw, data::text)",
        };
        let sql = format!(
            "SELECT {data} FROM {} WHERE id = $1 AND deleted_at IS NULL",
            self.t(res.name)
        );
        Ok(on!(Db, &self.db, p => {
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(p).await?
        }))
    }
}
