//! `deadline_rows`: every deadline the engine derives from the mirror (the `upcoming_deadlines`
//! view reads it), rewritten whole in one transaction, and `deadline_rows_state`: the sources
//! (zone, fields) it was written under and when.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row as _;

use super::{Db, Result, Store, Ts, Tx, TxInner};

/// One deadline as the table holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadlineRow {
    /// The source's name ("Task", "45 Day Deadline", ...).
    pub source: String,
    /// `task`, `event`, `statute` or `custom_field`.
    pub kind: &'static str,
    pub record_table: &'static str,
    pub record_id: String,
    pub title: Option<String>,
    pub status: Option<String>,
    pub matter_id: Option<String>,
    pub matter_name: Option<String>,
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    /// The assigned users' names, `, `-separated (None: none).
    pub assignees: Option<String>,
    pub due_at: DateTime<Utc>,
    pub due_raw: String,
    /// RFC 3339 with the firm zone's offset.
    pub due_local: String,
    pub local_date: NaiveDate,
    pub time_zone: String,
    pub all_day: bool,
}

/// Rows per INSERT: 17 parameters each stays under SQLite's 32,766.
const CHUNK: usize = 500;

impl Store {
    /// The sources `deadline_rows` was last written under (None: never written).
    pub async fn deadline_rows_sources(&self) -> Result<Option<String>> {
        let sql = format!(
            "SELECT sources FROM {} WHERE id = 1",
            self.t("deadline_rows_state")
        );
        on!(Db, &self.db, p => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(p).await?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })
    }

    /// Replaces every row of `deadline_rows` with `rows` and notes `sources` and `now`, in one
    /// transaction: a reader sees the old set or the new one, never half of each.
    pub async fn replace_deadline_rows(
        &self,
        rows: &[DeadlineRow],
        sources: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.replace_deadline_rows(rows, sources, now).await?;
        tx.commit().await
    }
}

impl Tx {
    async fn replace_deadline_rows(
        &mut self,
        rows: &[DeadlineRow],
        sources: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let table = self.t("deadline_rows");
        let state = self.t("deadline_rows_state");
        if let TxInner::Pg(tx) = &mut self.tx {
            // Two processes rewriting at once (a CLI pass beside the daemon): without it, the
            // second one's DELETE skips the rows the first inserted meanwhile, and both sets stay.
            // SQLite's transactions already take the write lock at BEGIN.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "LOCK TABLE {table} IN EXCLUSIVE MODE"
            )))
            .execute(&mut **tx)
            .await?;
        }
        on!(TxInner, &mut self.tx, tx => {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut **tx)
                .await?;
            for chunk in rows.chunks(CHUNK) {
                let mut q = sqlx::QueryBuilder::<Dialect>::new(format!(
                    "INSERT INTO {table} (source, kind, record_table, record_id, title, status, \
                     matter_id, matter_name, account_id, account_name, assignees, due_at, due_raw, \
                     due_local, local_date, time_zone, all_day) "
                ));
                // Borrowed, not cloned: a rewrite binds some 30,000 rows at scale 1.
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.source.as_str())
                        .push_bind(r.kind)
                        .push_bind(r.record_table)
                        .push_bind(r.record_id.as_str())
                        .push_bind(r.title.as_deref())
                        .push_bind(r.status.as_deref())
                        .push_bind(r.matter_id.as_deref())
                        .push_bind(r.matter_name.as_deref())
                        .push_bind(r.account_id.as_deref())
                        .push_bind(r.account_name.as_deref())
                        .push_bind(r.assignees.as_deref())
                        .push_bind(Ts(r.due_at))
                        .push_bind(r.due_raw.as_str())
                        .push_bind(r.due_local.as_str())
                        .push_bind(r.local_date)
                        .push_bind(r.time_zone.as_str())
                        .push_bind(r.all_day);
                });
                q.build().execute(&mut **tx).await?;
            }
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {state} (id, sources, refreshed_at, row_count) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET sources = excluded.sources, \
                 refreshed_at = excluded.refreshed_at, row_count = excluded.row_count"
            )))
            .bind(sources)
            .bind(Ts(now))
            .bind(rows.len() as i64)
            .execute(&mut **tx)
            .await?;
        });
        Ok(())
    }
}
