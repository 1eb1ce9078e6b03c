//! `deadline_rows`: every deadline the engine derives from the mirror (the `upcoming_deadlines`
//! view reads it), rewritten whole in one transaction, and `deadline_rows_state`: the sources
//! (zone, fields) it was written under and when.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row as _;

use super::{Db, Result, Store, Ts, Tx, TxInner, pg_copy};

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

/// The new set of a rewrite on PostgreSQL (the transaction's own table).
const STAGE: &str = "ppsync_deadline_stage";

/// Rows per `COPY` on PostgreSQL (a buffer of a few MB).
const COPY_CHUNK: usize = 5_000;

/// The columns written, in the order both paths bind them.
const COLUMNS: &str = "source, kind, record_table, record_id, title, status, matter_id, \
    matter_name, account_id, account_name, assignees, due_at, due_raw, due_local, local_date, \
    time_zone, all_day";

/// `rows` in `COPY`'s binary format, in [`COLUMNS`] order.
fn encode(rows: &[DeadlineRow]) -> Result<Vec<u8>> {
    let mut b = pg_copy::Binary::new(rows.len() * 256);
    for r in rows {
        b.row(17);
        b.text(Some(&r.source))?;
        b.text(Some(r.kind))?;
        b.text(Some(r.record_table))?;
        b.text(Some(&r.record_id))?;
        for v in [
            &r.title,
            &r.status,
            &r.matter_id,
            &r.matter_name,
            &r.account_id,
            &r.account_name,
            &r.assignees,
        ] {
            b.text(v.as_deref())?;
        }
        b.time(Some(r.due_at))?;
        b.text(Some(&r.due_raw))?;
        b.text(Some(&r.due_local))?;
        b.date(r.local_date)?;
        b.text(Some(&r.time_zone))?;
        b.bool(r.all_day)?;
    }
    Ok(b.finish())
}

/// Locks `deadline_rows` (`table`) on PostgreSQL in `mode` until the transaction ends: rewrites
/// and seedings take EXCLUSIVE, page transactions ROW EXCLUSIVE (see their callers).
async fn lock(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    table: &str,
    mode: &str,
) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {table} IN {mode} MODE"
    )))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts `rows` into `into` (`deadline_rows` or the stage).
async fn insert(tx: &mut TxInner, into: &str, rows: &[DeadlineRow]) -> Result<()> {
    match tx {
        TxInner::Pg(tx) => {
            // By COPY: some 30,000 rows at scale 1 took 306 ms as 500-row statements, 208 so.
            for chunk in rows.chunks(COPY_CHUNK) {
                pg_copy::copy_in(tx, into, COLUMNS, encode(chunk)?).await?;
            }
        }
        TxInner::Sqlite(tx) => {
            for chunk in rows.chunks(CHUNK) {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
                    "INSERT INTO {into} ({COLUMNS}) "
                ));
                // Borrowed, not cloned.
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
        }
    }
    Ok(())
}

impl Tx {
    /// Whether this page transaction keeps `deadline_rows` record by record: the table was
    /// written under `sources`. Otherwise the pass's end rewrites it whole
    /// (`Store::rewrite_deadline_rows`), and the page leaves it alone (and need not derive its
    /// records' deadlines at all).
    pub async fn keeps_deadline_rows(&mut self, sources: &str) -> Result<bool> {
        let table = self.t("deadline_rows");
        let state = self.t("deadline_rows_state");
        if let TxInner::Pg(tx) = &mut self.tx {
            // Waits for a rewrite or a seeding under way (EXCLUSIVE) and reads the sources it
            // committed: rows written here are never left out of, or doubled by, a whole rewrite.
            // Page transactions do not wait for one another (ROW EXCLUSIVE).
            lock(tx, &table, "ROW EXCLUSIVE").await?;
        }
        let sql = format!("SELECT sources FROM {state} WHERE id = 1");
        let written: Option<String> = on!(TxInner, &mut self.tx, tx => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_optional(&mut **tx).await?
        });
        Ok(written.as_deref() == Some(sources))
    }

    /// Keeps `deadline_rows` current record by record, in the page's transaction (when
    /// [`Tx::keeps_deadline_rows`]): the rows of `ids` (records of `res` this transaction wrote:
    /// new, changed or back from deletion) become `rows` (their deadlines now).
    pub async fn replace_deadline_rows(
        &mut self,
        res: &str,
        ids: &[&str],
        rows: &[DeadlineRow],
    ) -> Result<()> {
        let table = self.t("deadline_rows");
        self.drop_deadline_rows(res, ids).await?;
        insert(&mut self.tx, &table, rows).await
    }

    /// Removes the rows of `ids` (records of `res`) from `deadline_rows`.
    pub(super) async fn drop_deadline_rows(&mut self, res: &str, ids: &[&str]) -> Result<()> {
        let table = self.t("deadline_rows");
        match &mut self.tx {
            TxInner::Pg(tx) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE record_table = $1 AND record_id = ANY($2)"
                )))
                .bind(res)
                .bind(ids)
                .execute(&mut **tx)
                .await?;
            }
            TxInner::Sqlite(tx) => {
                // By the (record_table, record_id) index, a chunk of ids per statement.
                for chunk in ids.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
                        "DELETE FROM {table} WHERE record_table = "
                    ));
                    q.push_bind(res).push(" AND record_id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(")");
                    q.build().execute(&mut **tx).await?;
                }
            }
        }
        Ok(())
    }
}

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

    /// Notes `deadline_rows` written (empty) under `sources` when it never was and none of
    /// `tables` (those its rows come from) holds a record: from then on each page keeps it
    /// current ([`Tx::replace_deadline_rows`]), and a first backfill needs no whole rewrite after
    /// it (reading every record back was a quarter of a scale-1 backfill's CPU). Returns whether
    /// it did.
    ///
    /// PostgreSQL only. On SQLite a first backfill's rows come from one rewrite at its end (as
    /// under new sources): written page by page, their random inserts into the table's three
    /// indexes made a scale-10 backfill 18% slower (26.8 → 31.7 s, peak 95 → 100 MB), where
    /// reading the records back costs the one writer little; at scale 1 the two were even.
    pub async fn seed_deadline_rows(
        &self,
        sources: &str,
        tables: &[&str],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        if self.backend() == super::Backend::Sqlite || self.deadline_rows_sources().await?.is_some()
        {
            return Ok(false);
        }
        let mut tx = self.begin().await?;
        let table = tx.t("deadline_rows");
        let state = tx.t("deadline_rows_state");
        if let TxInner::Pg(t) = &mut tx.tx {
            // A page transaction that found no sources holds ROW EXCLUSIVE until it commits:
            // waiting for it, the records it wrote are seen below (and nothing is seeded).
            lock(t, &table, "EXCLUSIVE").await?;
        }
        let mut probes = vec![format!("SELECT sources FROM {state} WHERE id = 1")];
        probes.extend(
            tables
                .iter()
                .map(|t| format!("SELECT id FROM {} LIMIT 1", tx.t(t))),
        );
        for sql in probes {
            let found = on!(TxInner, &mut tx.tx, t => {
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(&mut **t).await?.is_some()
            });
            if found {
                return Ok(false);
            }
        }
        let sql = format!(
            "INSERT INTO {state} (id, sources, refreshed_at, row_count) VALUES (1, $1, $2, 0)"
        );
        on!(TxInner, &mut tx.tx, t => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(sources)
                .bind(Ts(now))
                .execute(&mut **t)
                .await?;
        });
        tx.commit().await?;
        Ok(true)
    }

    /// Starts replacing every row of `deadline_rows`, in one transaction: a reader sees the old
    /// set or the new one, never half of each. The rows come by [`DeadlineRewrite::push`], from
    /// the records [`DeadlineRewrite::records`] reads a page at a time, so a firm of any size is
    /// rewritten in bounded memory (all of it at once was 315 MB at scale 10).
    pub async fn rewrite_deadline_rows(&self) -> Result<DeadlineRewrite> {
        let mut tx = self.begin().await?;
        let table = tx.t("deadline_rows");
        let mut direct = false;
        match &mut tx.tx {
            TxInner::Pg(t) => {
                // Two processes rewriting at once (a CLI pass beside the daemon): without it, the
                // second one's changes would be made against a set the first is replacing, and
                // both sets would stay. SQLite's transactions take the write lock at BEGIN.
                lock(t, &table, "EXCLUSIVE").await?;
                // An empty table (the first rewrite, after a first backfill) takes the rows
                // straight in: staging them and comparing every row as text cost 0.46 s of a
                // 3.3 s backfill at scale 1, to find that all are new.
                let empty: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {table})"
                )))
                .fetch_one(&mut **t)
                .await?;
                if empty {
                    direct = true;
                } else {
                    // The new set is staged and only its differences reach the table
                    // (`finish`): deleting and inserting every row each pass left ~30,000 dead
                    // rows a pass at scale 1, 3.2 GB of them after two simulated days (the soak
                    // bench), where autovacuum found no gap between passes.
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "CREATE TEMP TABLE {STAGE} (LIKE {table}) ON COMMIT DROP"
                    )))
                    .execute(&mut **t)
                    .await?;
                }
            }
            // SQLite reuses a deleted row's space at once.
            TxInner::Sqlite(t) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                    .execute(&mut **t)
                    .await?;
            }
        }
        Ok(DeadlineRewrite {
            tx,
            rows: 0,
            reading: None,
            direct,
        })
    }
}

/// A rewrite of `deadline_rows` under way (see [`Store::rewrite_deadline_rows`]); dropped
/// unfinished, it changes nothing.
pub struct DeadlineRewrite {
    tx: Tx,
    rows: i64,
    /// The resource being read and the last id read of it.
    reading: Option<(&'static str, Option<String>)>,
    /// PostgreSQL: the rows go straight into the table (it was empty), not through the stage.
    direct: bool,
}

/// A row of either backend.
enum Record {
    Pg(sqlx::postgres::PgRow),
    Sqlite(sqlx::sqlite::SqliteRow),
}

fn corrupt(res: &str, e: sqlx::Error) -> super::Error {
    super::Error::Corrupt {
        resource: res.to_string(),
        detail: e.to_string(),
    }
}

impl DeadlineRewrite {
    /// Up to `limit` more live records of `res` a deadline may come from (open tasks, every
    /// event, matter, contact and account); none when all were read. Call with one resource
    /// until it gives none, then with the next.
    pub async fn records(
        &mut self,
        res: &'static str,
        limit: u32,
    ) -> Result<Vec<Box<serde_json::value::RawValue>>> {
        let open = if res == "tasks" {
            "AND COALESCE(status, '') <> 'Completed'"
        } else {
            ""
        };
        let table = self.tx.t(res);
        let first = self.reading.as_ref().is_none_or(|(r, _)| *r != res);
        let rows = match &mut self.tx.tx {
            // One scan through a cursor: a page by `ORDER BY id` from a freshly filled table,
            // not analyzed yet, was planned as a scan and a sort of the whole table each.
            TxInner::Pg(tx) => {
                if first {
                    if self.reading.is_some() {
                        sqlx::query("CLOSE ppsync_deadline_records")
                            .execute(&mut **tx)
                            .await?;
                    }
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DECLARE ppsync_deadline_records NO SCROLL CURSOR FOR \
                         SELECT id, data FROM {table} WHERE deleted_at IS NULL {open}"
                    )))
                    .execute(&mut **tx)
                    .await?;
                }
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "FETCH {limit} FROM ppsync_deadline_records"
                )))
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Record::Pg)
                .collect::<Vec<_>>()
            }
            // By the key's index, from the last id read.
            TxInner::Sqlite(tx) => {
                let after = if first {
                    None
                } else {
                    self.reading.as_ref().and_then(|(_, id)| id.clone())
                };
                let from = if after.is_some() { "AND id > $2" } else { "" };
                let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT id, data FROM {table} WHERE deleted_at IS NULL {open} {from} \
                     ORDER BY id LIMIT $1"
                )))
                .bind(i64::from(limit));
                if let Some(after) = after {
                    q = q.bind(after);
                }
                q.fetch_all(&mut **tx)
                    .await?
                    .into_iter()
                    .map(Record::Sqlite)
                    .collect()
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        let mut last = None;
        for r in &rows {
            let (id, raw): (String, Box<serde_json::value::RawValue>) = match r {
                Record::Pg(r) => (r.try_get(0)?, r.try_get(1).map_err(|e| corrupt(res, e))?),
                Record::Sqlite(r) => (r.try_get(0)?, r.try_get(1).map_err(|e| corrupt(res, e))?),
            };
            last = Some(id);
            out.push(raw);
        }
        // An empty page keeps the last id: a further call reads nothing again, not from the start.
        if last.is_some() || first {
            self.reading = Some((res, last));
        }
        Ok(out)
    }

    /// Writes `rows`.
    pub async fn push(&mut self, rows: &[DeadlineRow]) -> Result<()> {
        let table = self.tx.t("deadline_rows");
        self.rows += rows.len() as i64;
        let into = match &self.tx.tx {
            TxInner::Pg(_) if !self.direct => STAGE,
            _ => table.as_str(),
        };
        insert(&mut self.tx.tx, into, rows).await
    }

    /// Notes `sources` and `now` beside the rows and commits; returns the rows written.
    pub async fn finish(mut self, sources: &str, now: DateTime<Utc>) -> Result<i64> {
        let state = self.tx.t("deadline_rows_state");
        let table = self.tx.t("deadline_rows");
        if let TxInner::Pg(tx) = &mut self.tx.tx
            && !self.direct
        {
            // Rows compared whole, as text (hashable, and NULL is not ''): what only the table
            // holds goes, what only the new set holds comes; both sub-statements see the table
            // as it was. An unchanged deadline is not written at all.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "WITH gone AS ( \
                   DELETE FROM {table} d \
                   WHERE NOT EXISTS (SELECT 1 FROM {STAGE} s WHERE s::text = d::text)) \
                 INSERT INTO {table} ({COLUMNS}) SELECT {COLUMNS} FROM {STAGE} s \
                 WHERE NOT EXISTS (SELECT 1 FROM {table} d WHERE d::text = s::text)"
            )))
            .execute(&mut **tx)
            .await?;
        }
        on!(TxInner, &mut self.tx.tx, tx => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {state} (id, sources, refreshed_at, row_count) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET sources = excluded.sources, \
                 refreshed_at = excluded.refreshed_at, row_count = excluded.row_count"
            )))
            .bind(sources)
            .bind(Ts(now))
            .bind(self.rows)
            .execute(&mut **tx)
            .await?;
        });
        self.tx.commit().await?;
        Ok(self.rows)
    }
}
