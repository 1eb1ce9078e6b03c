//! A page's records written into SQLite through the connection's own handle, with three prepared
//! single-row statements (look up, upsert, mark seen) run in a loop.
//!
//! Why not through sqlx: every sqlx statement on SQLite is a round trip to the connection's worker
//! thread, so a page goes as multi-row statements instead, and those cost most of a backfill's time
//! (a 400-row statement's SQL built, hashed and, for every shorter tail, compiled again; a statement
//! journal because a multi-row write may fail half-way; the arguments boxed one by one). sqlx lends
//! the handle for exactly this (`lock_handle`, its worker idle meanwhile) and rusqlite, built on the
//! same `libsqlite3-sys`, drives it. A scale-1 backfill (136k records) went from 8.2 s to 5.0 s end
//! to end with this alone (measured on the 2-core bench machine).
//!
//! The statements run inside the transaction sqlx began on that connection; nothing here begins,
//! commits or rolls back.
//!
//! PostgreSQL's write path, multi-row statements through sqlx, is `pg_write`.

use chrono::{DateTime, Utc};
use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::sqlite::LockedSqliteHandle;

use super::{Fresh, Notification, Result};
use crate::record::{Row, Value};
use crate::resource::Resource;
use crate::time::canonical;

/// Lends the handle to rusqlite for the length of one call.
fn connection(handle: &mut LockedSqliteHandle<'_>) -> Result<rusqlite::Connection> {
    // SAFETY: the handle is a live connection (sqlx keeps it open while it is lent), and the
    // `LockedSqliteHandle`, mutably borrowed by the caller for as long as it uses the returned
    // Connection (each caller drops it before returning), keeps sqlx's worker thread off it. The
    // Connection does not close a handle it did not open; its prepared statements are finalized
    // when it drops, before the lock is released.
    Ok(unsafe { rusqlite::Connection::from_handle(handle.as_raw_handle().as_ptr()) }?)
}

/// Adds notifications to the outbox (an id already there is left alone). Returns how many were new.
pub(super) fn enqueue(
    handle: &mut LockedSqliteHandle<'_>,
    items: &[Notification],
    now: DateTime<Utc>,
) -> Result<u64> {
    let conn = connection(handle)?;
    let mut insert = conn.prepare(
        "INSERT INTO outbox (id, kind, resource, record_id, payload, created_at, status, next_attempt_at, delivered_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8) ON CONFLICT (id) DO UPDATE SET \
         payload = excluded.payload, status = excluded.status, attempts = 0, \
         next_attempt_at = excluded.next_attempt_at, delivered_at = excluded.delivered_at, \
         last_error = NULL WHERE outbox.status = 'cancelled'",
    )?;
    let now = canonical(now);
    let mut added = 0;
    for item in items {
        added += insert.execute(rusqlite::params![
            item.id,
            item.kind,
            item.resource,
            item.record_id,
            item.payload.to_string(),
            now,
            if item.suppressed {
                "suppressed"
            } else {
                "pending"
            },
            item.suppressed.then_some(now.as_str()),
        ])? as u64;
    }
    Ok(added)
}

/// One batch's write: where, by which run, and what to report.
pub(super) struct Write<'a> {
    pub table: &'a str,
    pub res: &'a Resource,
    pub run: i64,
    pub now: DateTime<Utc>,
    /// The column whose prior value is reported for notifications.
    pub watch: Option<&'a str>,
    /// Every stored row is this run's (see `Tx::upsert`).
    pub only_this_run: bool,
}

impl Write<'_> {
    /// Upserts `rows` (already free of duplicate ids) and marks each seen by the run. Returns the
    /// rows that were new, changed (by hash) or deleted before, with the prior value of the
    /// `watch` column.
    pub(super) fn rows(
        &self,
        handle: &mut LockedSqliteHandle<'_>,
        rows: &[Row],
    ) -> Result<Vec<Fresh>> {
        let conn = connection(handle)?;
        let table = self.table;
        let mut insert = conn.prepare(&insert_sql(table, self.res, self.only_this_run))?;
        let synced_at = canonical(self.now);
        let mut changed = Vec::new();
        if self.only_this_run {
            // No lookups: a row already there is this run's, and the insert changes it only if
            // the content differs (so `changes` says whether it was new or changed).
            for r in rows {
                self.bind(&mut insert, r, &synced_at)?;
                if insert.raw_execute()? > 0 {
                    changed.push(Fresh {
                        id: r.id.clone(),
                        prior: None,
                    });
                }
            }
            return Ok(changed);
        }
        let mut known = conn.prepare(&format!(
            "SELECT hash, deleted_at IS NOT NULL, {} FROM {table} WHERE id = ?1",
            self.watch.unwrap_or("NULL")
        ))?;
        // `seen_run` never goes down (see pg_write::upsert).
        let mut touch = conn.prepare(&format!(
            "UPDATE {table} SET seen_run = ?1 WHERE id = ?2 AND seen_run < ?1"
        ))?;
        for r in rows {
            let prior = {
                let mut found = known.query([r.id.as_str()])?;
                match found.next()? {
                    Some(k) => Some((
                        k.get::<_, i64>(0)?,
                        k.get::<_, bool>(1)?,
                        text(k.get_ref(2)?),
                    )),
                    None => None,
                }
            };
            if prior
                .as_ref()
                .is_some_and(|k| (k.0, k.1) == (r.hash, false))
            {
                touch.execute(rusqlite::params![self.run, r.id])?;
                continue;
            }
            self.bind(&mut insert, r, &synced_at)?;
            insert.raw_execute()?;
            changed.push(Fresh {
                id: r.id.clone(),
                prior: prior.map(|k| k.2),
            });
        }
        Ok(changed)
    }

    fn bind(&self, insert: &mut rusqlite::Statement<'_>, r: &Row, synced_at: &str) -> Result<()> {
        insert.raw_bind_parameter(1, r.id.as_str())?;
        insert.raw_bind_parameter(2, r.created_at.map(canonical))?;
        insert.raw_bind_parameter(3, r.updated_at.map(canonical))?;
        insert.raw_bind_parameter(4, synced_at)?;
        insert.raw_bind_parameter(5, r.hash)?;
        insert.raw_bind_parameter(6, self.run)?;
        insert.raw_bind_parameter(7, &*r.data)?;
        for (i, v) in r.columns.iter().enumerate() {
            insert.raw_bind_parameter(8 + i, Column(v))?;
        }
        Ok(())
    }
}

/// `only_this_run`: a stored row is rewritten only when its content differs (or, should another
/// process have written it, when that process's run is older).
fn insert_sql(table: &str, res: &Resource, only_this_run: bool) -> String {
    let mut cols =
        String::from("id, created_at, updated_at, deleted_at, synced_at, hash, seen_run, data");
    let mut vals = String::from("?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7");
    let mut set = String::from(
        "created_at = excluded.created_at, updated_at = excluded.updated_at, deleted_at = NULL, \
         synced_at = excluded.synced_at, hash = excluded.hash, seen_run = max(seen_run, excluded.seen_run), \
         data = excluded.data",
    );
    for (i, c) in res.columns.iter().enumerate() {
        cols.push_str(&format!(", {}", c.name));
        vals.push_str(&format!(", ?{}", 8 + i));
        set.push_str(&format!(", {0} = excluded.{0}", c.name));
    }
    let only_if = if only_this_run {
        // A row an earlier run wrote meanwhile (another process listing the same empty table) is
        // taken over too, or this run would find it unseen at its end.
        format!(" WHERE {table}.hash IS NOT excluded.hash OR {table}.seen_run < excluded.seen_run")
    } else {
        String::new()
    };
    format!(
        "INSERT INTO {table} ({cols}) VALUES ({vals}) ON CONFLICT (id) DO UPDATE SET {set}{only_if}"
    )
}

/// A stored value read back as text (instants are stored as canonical text already).
fn text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
    }
}

/// A typed column value as SQLite stores it (booleans as 0/1, instants as canonical text).
struct Column<'a>(&'a Value);

impl rusqlite::ToSql for Column<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Int(i) => ToSqlOutput::Owned((*i).into()),
            Value::Real(f) => ToSqlOutput::Owned((*f).into()),
            Value::Bool(b) => ToSqlOutput::Owned(i64::from(*b).into()),
            Value::Time(t) => ToSqlOutput::Owned(canonical(*t).into()),
        })
    }
}
