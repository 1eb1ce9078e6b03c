//! A big batch of a page's records into PostgreSQL by `COPY`: the rows go in binary format into
//! a staging table of the transaction's own, and one statement merges them into the resource's
//! table. Against `pg_write`'s multi-row statements this spares the server parsing and planning
//! a statement of thousands of parameters per batch, and the client a round trip for the known
//! hashes: the comparison happens in the merge.
//!
//! The outcome is `pg_write::upsert`'s, row for row: an unchanged record (same hash, not deleted)
//! only has its `seen_run` raised (never lowered); a new, changed or deleted one is written whole
//! and reported, with its watched column's prior value. Binary format: no text escaping at all;
//! what PostgreSQL's text cannot hold (a NUL) is refused by the server as on the other path, and
//! `jsonb` gets the same repaired text (`Row::jsonb`), `raw` the record as received.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row as _};

use super::{Fresh, Result, Ts};
use crate::record::{Row, Value};
use crate::resource::{ColumnType, Resource};

/// Rows from which a batch goes through `COPY` (fewer: `pg_write`'s statements). Below it the
/// staging table's creation and the extra statement cost more than they save (BENCHMARKS.md,
/// "2026-12-07: PostgreSQL by COPY").
pub(super) const MIN_ROWS: usize = 16;

/// Bytes per `CopyData` message.
const COPY_MESSAGE: usize = 256 * 1024;

/// The staging tables created in one transaction (each dropped at its commit or rollback).
#[derive(Default)]
pub(super) struct Staged(Vec<String>);

/// The fixed columns as staged, in `COPY` order; the resource's typed columns follow.
const FIXED: [(&str, &str); 8] = [
    ("id", "text"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("synced_at", "timestamptz"),
    ("hash", "int8"),
    ("seen_run", "int8"),
    ("data", "jsonb"),
    ("raw", "text"),
];

fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text => "text",
        ColumnType::Time => "timestamptz",
        ColumnType::Int => "int8",
        ColumnType::Real => "float8",
        ColumnType::Bool => "bool",
    }
}

/// The staging table's name for `table` (schema-qualified or not): temporary tables share one
/// namespace per session, and two firms' tables of one resource must not share a staging table.
fn stage_name(table: &str) -> String {
    let clean: String = table
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let h = xxhash_rust::xxh3::xxh3_64(table.as_bytes());
    // The hash first: a long name is cut at PostgreSQL's 63 bytes (all ASCII here).
    format!("ppsync_stage_{h:016x}_{}", clean.trim_matches('_'))
        .chars()
        .take(63)
        .collect()
}

/// Upserts `rows` (already free of duplicate ids) and marks each seen by `run` (see
/// `pg_write::upsert`, whose outcome this is).
#[allow(clippy::too_many_arguments)]
pub(super) async fn upsert(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    staged: &mut Staged,
    table: &str,
    res: &Resource,
    rows: &[Row],
    run: i64,
    now: DateTime<Utc>,
    watch: Option<&str>,
    only_this_run: bool,
) -> Result<Vec<Fresh>> {
    let columns: Vec<&str> = FIXED
        .iter()
        .map(|(n, _)| *n)
        .chain(res.columns.iter().map(|c| c.name))
        .collect();
    let columns = columns.join(", ");
    let all: Vec<&Row> = rows.iter().collect();
    if !only_this_run {
        return merge(tx, staged, table, res, &all, run, now, watch, &columns).await;
    }
    // A first backfill: the ids the table does not hold yet (all but the few records a page
    // shares with the one before) go straight into it, with no staging table and no merge;
    // each is new, with no prior value. The others are merged.
    let stored = stored_ids(tx, table, rows).await?;
    let (known, new): (Vec<&Row>, Vec<&Row>) = all
        .into_iter()
        .partition(|r| stored.contains(r.id.as_str()));
    if !new.is_empty() {
        copy_in(tx, table, &columns, encode(res, &new, run, now)?).await?;
    }
    let mut merged: HashMap<String, Fresh> = if known.is_empty() {
        HashMap::new()
    } else {
        merge(tx, staged, table, res, &known, run, now, watch, &columns)
            .await?
            .into_iter()
            .map(|f| (f.id.clone(), f))
            .collect()
    };
    // In the batch's order, as the other path reports them.
    Ok(rows
        .iter()
        .filter_map(|r| {
            if stored.contains(r.id.as_str()) {
                merged.remove(&r.id)
            } else {
                Some(Fresh {
                    id: r.id.clone(),
                    prior: None,
                })
            }
        })
        .collect())
}

/// Stages `rows` and merges them into `table` (see [`upsert`]).
#[allow(clippy::too_many_arguments)]
async fn merge(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    staged: &mut Staged,
    table: &str,
    res: &Resource,
    rows: &[&Row],
    run: i64,
    now: DateTime<Utc>,
    watch: Option<&str>,
    columns: &str,
) -> Result<Vec<Fresh>> {
    let stage = stage_name(table);
    if staged.0.contains(&stage) {
        // Created earlier in this transaction: emptied for this batch.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("TRUNCATE {stage}")))
            .execute(&mut **tx)
            .await?;
    } else {
        let defs: Vec<String> = FIXED
            .iter()
            .map(|(n, t)| format!("{n} {t}"))
            .chain(
                res.columns
                    .iter()
                    .map(|c| format!("{} {}", c.name, sql_type(c.ty))),
            )
            .collect();
        // ON COMMIT DROP: nothing of it outlives the transaction on the pooled connection.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TEMP TABLE {stage} ({}) ON COMMIT DROP",
            defs.join(", ")
        )))
        .execute(&mut **tx)
        .await?;
        staged.0.push(stage.clone());
    }

    copy_in(tx, &stage, columns, encode(res, rows, run, now)?).await?;

    // Every sub-statement sees the table as it was before this one: `prior` is what was stored,
    // `touched` raises `seen_run` of the unchanged rows and `written` writes the others (two
    // disjoint sets). `seen_run` never goes down (see pg_write::upsert).
    let mut set = String::from(
        "created_at = excluded.created_at, updated_at = excluded.updated_at, deleted_at = NULL, \
         synced_at = excluded.synced_at, hash = excluded.hash, \
         seen_run = GREATEST(t.seen_run, excluded.seen_run), data = excluded.data, raw = excluded.raw",
    );
    for c in res.columns {
        set.push_str(&format!(", {0} = excluded.{0}", c.name));
    }
    let watched = watch.map_or("NULL".to_string(), |w| format!("t.{w}"));
    let merge = format!(
        "WITH prior AS ( \
           SELECT s.*, t.id IS NOT NULL AS ppsync_known, {watched} AS ppsync_watched, \
                  COALESCE(t.hash = s.hash AND t.deleted_at IS NULL, false) AS ppsync_same \
           FROM {stage} s LEFT JOIN {table} t ON t.id = s.id), \
         touched AS ( \
           UPDATE {table} t SET seen_run = $1 FROM prior p \
           WHERE p.ppsync_same AND t.id = p.id AND t.seen_run < $1), \
         written AS ( \
           INSERT INTO {table} AS t ({columns}) \
           SELECT {columns} FROM prior WHERE NOT ppsync_same \
           ON CONFLICT (id) DO UPDATE SET {set}) \
         SELECT id, ppsync_known, ppsync_watched FROM prior WHERE NOT ppsync_same"
    );
    // Not kept prepared: it names a table that lives for one transaction.
    let found = sqlx::query(sqlx::AssertSqlSafe(merge))
        .persistent(false)
        .bind(run)
        .fetch_all(&mut **tx)
        .await?;
    let mut fresh: HashMap<String, Option<Option<String>>> = HashMap::with_capacity(found.len());
    for r in &found {
        let known: bool = r.try_get(1)?;
        // An instant (due dates) as canonical text; any other column as is.
        let watched = match r.try_get::<Option<Ts>, _>(2) {
            Ok(t) => t.map(Ts::text),
            Err(_) => r.try_get::<Option<String>, _>(2)?,
        };
        fresh.insert(r.try_get(0)?, known.then_some(watched));
    }
    // In the batch's order, as the other path reports them.
    Ok(rows
        .iter()
        .filter_map(|r| {
            fresh.remove(r.id.as_str()).map(|prior| Fresh {
                id: r.id.clone(),
                prior,
            })
        })
        .collect())
}

/// The batch's ids `table` holds. The caller holds the table's write lock (see `Tx::upsert`):
/// no other writer can add one before the batch is written.
async fn stored_ids(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    table: &str,
    rows: &[Row],
) -> Result<std::collections::HashSet<String>> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let stored: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM {table} WHERE id = ANY($1)"
    )))
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(stored.into_iter().collect())
}

/// Sends `data` (the binary `COPY` format) into `columns` of `table`.
pub(super) async fn copy_in(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    table: &str,
    columns: &str,
    data: Vec<u8>,
) -> Result<()> {
    let mut copy = tx
        .copy_in_raw(&format!(
            "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    // In slices: sqlx copies each message into its connection's write buffer, which keeps its
    // largest size for the connection's life (a whole batch was ~6 MB per pooled connection).
    // A failed send drops `copy`, which tells the server the COPY failed.
    for part in data.chunks(COPY_MESSAGE) {
        copy.send(part).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// The rows in `COPY`'s binary format, in [`FIXED`] order and then the resource's columns.
/// Written here because sqlx offers only the raw `COPY` stream: the one ready encoder
/// (`tokio-postgres`' `BinaryCopyInWriter`) would bring a second PostgreSQL driver, and the
/// format is a header and length-prefixed fields (PostgreSQL's `COPY` page, "Binary Format").
fn encode(res: &Resource, rows: &[&Row], run: i64, now: DateTime<Utc>) -> Result<Vec<u8>> {
    let size: usize = rows.iter().map(|r| 2 * r.data.len() + 256).sum();
    let mut b = Binary::new(size);
    let fields = (FIXED.len() + res.columns.len()) as i16;
    for r in rows {
        b.row(fields);
        b.text(Some(&r.id))?;
        b.time(r.created_at)?;
        b.time(r.updated_at)?;
        b.time(Some(now))?;
        b.int(r.hash);
        b.int(run);
        // As on the other path: what jsonb cannot hold is U+FFFD there, and the record as
        // received is kept in `raw`.
        b.jsonb(r.jsonb.as_deref().unwrap_or(&r.data))?;
        b.text((r.jsonb.is_some() || r.keep_raw).then_some(&*r.data))?;
        for v in &r.columns {
            match v {
                Value::Null => b.null(),
                Value::Text(s) => b.text(Some(s))?,
                Value::Int(i) => b.int(*i),
                Value::Real(f) => b.field(&f.to_be_bytes())?,
                Value::Bool(x) => b.bool(*x)?,
                Value::Time(t) => b.time(Some(*t))?,
            }
        }
    }
    Ok(b.finish())
}

/// A `COPY` binary buffer: each field its length (-1: NULL) and its bytes.
pub(super) struct Binary(Vec<u8>);

impl Binary {
    /// A buffer of about `capacity` bytes, the format's header written.
    pub(super) fn new(capacity: usize) -> Self {
        let mut b = Binary(Vec::with_capacity(capacity + 32));
        b.0.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        b.0.extend_from_slice(&0i32.to_be_bytes()); // flags
        b.0.extend_from_slice(&0i32.to_be_bytes()); // header extension
        b
    }

    /// A row of `fields` fields starts.
    pub(super) fn row(&mut self, fields: i16) {
        self.0.extend_from_slice(&fields.to_be_bytes());
    }

    /// The trailer: the buffer as sent.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
        self.0
    }

    pub(super) fn bool(&mut self, x: bool) -> Result<()> {
        self.field(&[u8::from(x)])
    }

    /// Days since 2000-01-01.
    pub(super) fn date(&mut self, d: chrono::NaiveDate) -> Result<()> {
        let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("a date");
        let days = i32::try_from((d - epoch).num_days()).map_err(|_| {
            sqlx::Error::Encode(format!("{d} is out of range for PostgreSQL").into())
        })?;
        self.field(&days.to_be_bytes())
    }

    pub(super) fn null(&mut self) {
        self.0.extend_from_slice(&(-1i32).to_be_bytes());
    }

    pub(super) fn field(&mut self, bytes: &[u8]) -> Result<()> {
        let len = i32::try_from(bytes.len()).map_err(|_| {
            sqlx::Error::Encode(format!("a value of {} bytes is too long", bytes.len()).into())
        })?;
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    pub(super) fn text(&mut self, s: Option<&str>) -> Result<()> {
        match s {
            Some(s) => self.field(s.as_bytes()),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    pub(super) fn int(&mut self, i: i64) {
        self.0.extend_from_slice(&8i32.to_be_bytes());
        self.0.extend_from_slice(&i.to_be_bytes());
    }

    /// jsonb's binary form: its version (1), then the text.
    fn jsonb(&mut self, s: &str) -> Result<()> {
        let len = i32::try_from(s.len() + 1).map_err(|_| {
            sqlx::Error::Encode(format!("a record of {} bytes is too long", s.len()).into())
        })?;
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.push(1);
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }

    /// Microseconds since 2000-01-01 UTC, as sqlx encodes an instant.
    pub(super) fn time(&mut self, t: Option<DateTime<Utc>>) -> Result<()> {
        let Some(t) = t else {
            self.null();
            return Ok(());
        };
        let epoch = DateTime::<Utc>::UNIX_EPOCH + chrono::TimeDelta::seconds(946_684_800);
        let micros = (t - epoch).num_microseconds().ok_or_else(|| {
            sqlx::Error::Encode(format!("{t} is out of range for PostgreSQL").into())
        })?;
        self.int(micros);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::stage_name;

    #[test]
    fn staging_tables_are_named_apart_per_table() {
        let a = stage_name("tasks");
        let b = stage_name("\"firm_a\".tasks");
        assert!(
            a.starts_with("ppsync_stage_") && a.ends_with("_tasks"),
            "{a}"
        );
        assert!(b.ends_with("_firm_a__tasks"), "{b}");
        assert_ne!(a, b);
        let long = stage_name(&format!("\"{}\".time_entries", "s".repeat(60)));
        assert!(long.len() <= 63, "{long}");
    }
}
