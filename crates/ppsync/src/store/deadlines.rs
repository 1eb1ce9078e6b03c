//! Deadlines: the records they are derived from (open tasks and events coming due, matters), the
//! status page's list of tasks and events, and the cancelling of a moved deadline's notifications.

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use serde_json::value::RawValue;
use sqlx::Row as _;

use super::{Db, Error, Result, Store, Ts, Tx, TxInner};

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

impl Store {
    /// Open tasks and events due in [from, to], soonest first: (resource, due, subject, matter, id).
    pub async fn deadlines(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Deadline>> {
        let matter = self
            .backend()
            .json_text("data", &["matter_ref", "display_name"]);
        let sql = format!(
            "SELECT 'task' AS kind, id, due_date AS due, subject, {matter} AS matter, status \
             FROM {tasks} WHERE deleted_at IS NULL AND due_date >= $1 AND due_date <= $2 AND COALESCE(status, '') <> 'Completed' \
             UNION ALL \
             SELECT 'event', id, start_date_time, subject, {matter}, NULL \
             FROM {events} WHERE deleted_at IS NULL AND start_date_time >= $1 AND start_date_time <= $2 \
             ORDER BY due, id",
            tasks = self.t("tasks"),
            events = self.t("events"),
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(Ts(from))
                .bind(Ts(to))
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Deadline {
                        kind: r.try_get(0)?,
                        id: r.try_get(1)?,
                        due: r.try_get::<Ts, _>(2)?.text(),
                        subject: r.try_get(3)?,
                        matter: r.try_get(4)?,
                        status: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }
}

/// Pending deadline notifications of one record's source to cancel: those under `prefix`
/// (`deadline:<source>:<record>:`) except those under `keep` (the current date's), if any.
#[derive(Clone, Debug)]
pub struct Cancel {
    pub resource: String,
    pub record_id: String,
    pub prefix: String,
    pub keep: Option<String>,
}

impl Store {
    /// The records deadlines are derived from: open tasks due and events starting in [from, to]
    /// (UTC instants; the caller widens them by a day for local dates; None: whenever), and every
    /// live matter, contact and account (their deadlines live in custom fields, which no column
    /// holds). `with`: the resources asked. Each record's JSON goes to `each` as it is read, one
    /// row at a time: all of a firm's matters, contacts and accounts held at once were ~100 MB at
    /// scale 1, the backfill's whole peak.
    pub async fn deadline_records(
        &self,
        within: Option<(DateTime<Utc>, DateTime<Utc>)>,
        with: &[&'static str],
        mut each: impl FnMut(&'static str, &RawValue),
    ) -> Result<()> {
        // One connection for every table: each pooled SQLite connection fills a page cache of
        // its own, and reading the five tables on four of them held ~32 MB of cache at once.
        let mut conn = match &self.db {
            Db::Sqlite(p) => Conn::Sqlite(p.acquire().await?),
            Db::Pg(p) => Conn::Pg(p.acquire().await?),
        };
        for res in with {
            let filter = match (*res, within.is_some()) {
                ("tasks", true) => {
                    "AND due_date >= $1 AND due_date <= $2 AND COALESCE(status, '') <> 'Completed'"
                }
                ("tasks", false) => "AND COALESCE(status, '') <> 'Completed'",
                ("events", true) => "AND start_date_time >= $1 AND start_date_time <= $2",
                ("events", false) | ("matters" | "contacts" | "accounts", _) => "",
                _ => continue,
            };
            let sql = format!(
                "SELECT data FROM {} WHERE deleted_at IS NULL {filter}",
                self.t(res)
            );
            on!(Conn, &mut conn, c => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                if let Some((from, to)) = within.filter(|_| filter.contains("$1")) {
                    q = q.bind(Ts(from)).bind(Ts(to));
                }
                let mut rows = q.fetch(&mut **c);
                while let Some(r) = rows.try_next().await? {
                    let raw = r.try_get::<&RawValue, _>(0).map_err(|e| Error::Corrupt {
                        resource: res.to_string(),
                        detail: e.to_string(),
                    })?;
                    each(res, raw);
                }
            });
        }
        Ok(())
    }
}

/// One pooled connection of either backend.
enum Conn {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Pg(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl Tx {
    /// Marks pending deadline notifications `cancelled` (never sent): those of a date a record no
    /// longer holds. Returns how many.
    pub async fn cancel_deadlines(&mut self, items: &[Cancel]) -> Result<u64> {
        let sql = format!(
            "UPDATE {} SET status = 'cancelled' WHERE status = 'pending' AND resource = $1 \
             AND record_id = $2 AND substr(id, 1, length($3)) = $3 \
             AND ($4 IS NULL OR substr(id, 1, length($4)) <> $4)",
            self.t("outbox")
        );
        let mut n = 0;
        for c in items {
            n += on!(TxInner, &mut self.tx, tx => {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(&c.resource)
                    .bind(&c.record_id)
                    .bind(&c.prefix)
                    .bind(c.keep.as_deref())
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
            });
        }
        Ok(n)
    }
}
