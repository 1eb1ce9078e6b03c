//! A page's records and notifications written into PostgreSQL: multi-row statements, batch by
//! batch (the SQLite path, row by row on the connection's own handle, is `sqlite_write`).

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, Row as _};

use super::{Fresh, Notification, Result, Ts};
use crate::record::{Row, Value};
use crate::resource::{ColumnType, Resource};

/// Rows per multi-row statement (PostgreSQL; SQLite writes row by row in `sqlite_write`): well
/// under the 65,535 bound parameters of one statement. Only full-size statements stay prepared in
/// the connection's cache (every shorter tail would otherwise be cached as a statement of its own).
const BATCH: usize = 400;

/// (hash, deleted, watched column) of the rows already stored (PostgreSQL; SQLite looks them up
/// one by one in `sqlite_write`).
async fn known_hashes(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    table: &str,
    rows: &[Row],
    watch: Option<&str>,
) -> Result<std::collections::HashMap<String, (i64, bool, Option<String>)>> {
    let watched = watch.unwrap_or("NULL");
    let head =
        format!("SELECT id, hash, deleted_at IS NOT NULL, {watched} FROM {table} WHERE id IN (");
    let mut q = QueryBuilder::<Postgres>::new(head);
    let mut sep = q.separated(", ");
    for r in rows {
        sep.push_bind(r.id.as_str());
    }
    q.push(")");
    let found = q
        .build()
        .persistent(rows.len() == BATCH)
        .fetch_all(&mut **tx)
        .await?;
    found
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>(0)?,
                (
                    r.try_get::<i64, _>(1)?,
                    r.try_get::<bool, _>(2)?,
                    // An instant (due dates) as canonical text; any other column as is.
                    match r.try_get::<Option<Ts>, _>(3) {
                        Ok(t) => t.map(Ts::text),
                        Err(_) => r.try_get::<Option<String>, _>(3)?,
                    },
                ),
            ))
        })
        .collect()
}

/// Upserts `rows` (already free of duplicate ids) and marks each seen by `run`, batch by batch.
/// Returns the rows that were new, changed (by hash) or deleted before, with the prior value of
/// the `watch` column (see `Tx::upsert`).
pub(super) async fn upsert(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    table: &str,
    res: &Resource,
    rows: &[Row],
    run: i64,
    now: DateTime<Utc>,
    watch: Option<&str>,
) -> Result<Vec<Fresh>> {
    let mut changed = Vec::new();
    let mut insert = format!(
        "INSERT INTO {table} AS t (id, created_at, updated_at, deleted_at, synced_at, hash, seen_run, data, raw"
    );
    for c in res.columns {
        insert.push_str(", ");
        insert.push_str(c.name);
    }
    insert.push_str(") ");
    let mut on_conflict = String::from(
        " ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, updated_at = excluded.updated_at, \
         deleted_at = NULL, synced_at = excluded.synced_at, hash = excluded.hash, seen_run = GREATEST(t.seen_run, excluded.seen_run), \
         data = excluded.data, raw = excluded.raw",
    );
    for c in res.columns {
        on_conflict.push_str(&format!(", {0} = excluded.{0}", c.name));
    }
    // `seen_run` never goes down: a listing of the same resource by another process (a CLI pass
    // beside the daemon) that began earlier must not make this one's records look unseen.
    let touch = format!("UPDATE {table} SET seen_run = ");
    for chunk in rows.chunks(BATCH) {
        let known = known_hashes(tx, table, chunk, watch).await?;
        let (fresh, same): (Vec<&Row>, Vec<&Row>) = chunk.iter().partition(|r| {
            known
                .get(r.id.as_str())
                .is_none_or(|k| (k.0, k.1) != (r.hash, false))
        });
        let persistent = chunk.len() == BATCH;
        if !fresh.is_empty() {
            changed.extend(fresh.iter().map(|r| Fresh {
                id: r.id.clone(),
                prior: known.get(r.id.as_str()).map(|k| k.2.clone()),
            }));
            let mut q = QueryBuilder::<Postgres>::new(insert.as_str());
            q.push_values(&fresh, |mut b, r| {
                b.push_bind(r.id.as_str())
                    .push_bind(r.created_at.map(Ts))
                    .push_bind(r.updated_at.map(Ts))
                    .push_bind(None::<Ts>)
                    .push_bind(Ts(now))
                    .push_bind(r.hash)
                    .push_bind(run)
                    // The record's text, checked JSON already: PostgreSQL parses it once more.
                    // What jsonb cannot hold (NUL, lone surrogates) is U+FFFD there, and the
                    // record as received is kept in `raw`.
                    .push_bind(r.jsonb.as_deref().unwrap_or(&r.data))
                    .push_unseparated("::jsonb")
                    .push_bind((r.jsonb.is_some() || r.keep_raw).then_some(&*r.data));
                for (v, c) in r.columns.iter().zip(res.columns) {
                    match v {
                        // A NULL typed as its column (PostgreSQL checks).
                        Value::Null => match c.ty {
                            ColumnType::Text => b.push_bind(None::<String>),
                            ColumnType::Time => b.push_bind(None::<Ts>),
                            ColumnType::Int => b.push_bind(None::<i64>),
                            ColumnType::Real => b.push_bind(None::<f64>),
                            ColumnType::Bool => b.push_bind(None::<bool>),
                        },
                        Value::Text(s) => b.push_bind(s.as_str()),
                        Value::Int(i) => b.push_bind(*i),
                        Value::Real(f) => b.push_bind(*f),
                        Value::Bool(x) => b.push_bind(*x),
                        Value::Time(t) => b.push_bind(Ts(*t)),
                    };
                }
            });
            q.push(on_conflict.as_str());
            q.build().persistent(persistent).execute(&mut **tx).await?;
        }
        if !same.is_empty() {
            let mut q = QueryBuilder::<Postgres>::new(touch.as_str());
            q.push_bind(run).push(" WHERE id IN (");
            let mut sep = q.separated(", ");
            for r in same {
                sep.push_bind(r.id.as_str());
            }
            q.push(") AND seen_run < ").push_bind(run);
            q.build().persistent(persistent).execute(&mut **tx).await?;
        }
    }
    Ok(changed)
}

/// Adds notifications to the outbox `table` (an id already there is left alone). Returns how many
/// were new.
pub(super) async fn enqueue(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    table: &str,
    items: &[Notification],
    now: DateTime<Utc>,
) -> Result<u64> {
    // PostgreSQL: multi-row statements (a backfill of tasks enqueues one row per task); rows are
    // inserted in order, so a duplicate id within a statement is left alone like one stored.
    let mut n = 0;
    let head = format!(
        "INSERT INTO {table} AS o (id, kind, resource, record_id, payload, created_at, status, next_attempt_at, delivered_at) "
    );
    for chunk in items.chunks(BATCH) {
        let mut seen = std::collections::HashSet::new();
        // PostgreSQL refuses one statement that conflicts with itself: drop repeats first.
        let chunk: Vec<&Notification> = chunk.iter().filter(|i| seen.insert(&i.id)).collect();
        let persistent = chunk.len() == BATCH;
        let mut q = QueryBuilder::<Postgres>::new(head.as_str());
        q.push_values(&chunk, |mut b, item| {
            b.push_bind(item.id.as_str())
                .push_bind(item.kind.as_str())
                .push_bind(item.resource.as_str())
                .push_bind(item.record_id.as_str())
                .push_bind(item.payload.to_string())
                .push_bind(Ts(now))
                .push_bind(if item.suppressed {
                    "suppressed"
                } else {
                    "pending"
                })
                .push_bind(Ts(now))
                .push_bind(item.suppressed.then_some(Ts(now)));
        });
        q.push(
            " ON CONFLICT (id) DO UPDATE SET payload = excluded.payload, status = excluded.status, \
             attempts = 0, next_attempt_at = excluded.next_attempt_at, \
             delivered_at = excluded.delivered_at, last_error = NULL WHERE o.status = 'cancelled'",
        );
        n += q
            .build()
            .persistent(persistent)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    Ok(n)
}
