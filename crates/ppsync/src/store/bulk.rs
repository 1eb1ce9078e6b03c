//! Bulk loading for a first backfill: secondary indexes set aside while the table fills and
//! rebuilt by one sort at the end (random-order inserts into every index of a big table outgrow
//! the page cache; on PostgreSQL index upkeep was a quarter of the server's work). PostgreSQL sets
//! them aside only from an empty table: a table applications already query keeps its indexes.
//!
//! Invariant: an index is dropped only in a transaction that records its definition in
//! `deferred_indexes`, and the row goes only with the transaction that recreates it; opening the
//! store recreates whatever a killed process left set aside.

use sqlx::{Executor as _, PgConnection, Row as _, SqliteConnection};

use super::{Result, Tx, TxInner};
use crate::resource::Resource;

/// `CREATE [UNIQUE] INDEX name ...` as stored by SQLite, made idempotent.
fn if_not_exists(sql: &str) -> String {
    for prefix in ["CREATE UNIQUE INDEX ", "CREATE INDEX "] {
        if let Some(rest) = sql.strip_prefix(prefix)
            && !rest.starts_with("IF NOT EXISTS")
        {
            return format!("{prefix}IF NOT EXISTS {rest}");
        }
    }
    sql.to_string()
}

/// Recreates the indexes set aside for `tbl` (every table: None).
pub(super) async fn restore(conn: &mut SqliteConnection, tbl: Option<&str>) -> Result<u64> {
    let rows = sqlx::query("SELECT name, sql FROM deferred_indexes WHERE $1 IS NULL OR tbl = $1")
        .bind(tbl)
        .fetch_all(&mut *conn)
        .await?;
    for r in &rows {
        let name: String = r.try_get(0)?;
        let sql: String = r.try_get(1)?;
        conn.execute(sqlx::AssertSqlSafe(if_not_exists(&sql)))
            .await?;
        sqlx::query("DELETE FROM deferred_indexes WHERE name = $1")
            .bind(name)
            .execute(&mut *conn)
            .await?;
    }
    Ok(rows.len() as u64)
}

/// Recreates the indexes set aside in `deferred` (PostgreSQL's `deferred_indexes`, qualified or
/// in the connection's schema; `tbl` None: every table). Their definitions name their schema.
pub(super) async fn restore_pg(
    conn: &mut PgConnection,
    deferred: &str,
    tbl: Option<&str>,
) -> Result<u64> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT name, sql FROM {deferred} WHERE $1::text IS NULL OR tbl = $1"
    )))
    .bind(tbl)
    .fetch_all(&mut *conn)
    .await?;
    for r in &rows {
        let name: String = r.try_get(0)?;
        let sql: String = r.try_get(1)?;
        conn.execute(sqlx::AssertSqlSafe(if_not_exists(&sql)))
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {deferred} WHERE name = $1"
        )))
        .bind(name)
        .execute(&mut *conn)
        .await?;
    }
    Ok(rows.len() as u64)
}

impl Tx {
    /// Drops the table's secondary indexes (the primary key stays), remembering their definitions.
    /// Kept are the indexes a backfill fills in order, at their right edge: `seen_run` (one value
    /// for the whole pass) and `updated_at` (pages come in its order); rebuilding one costs a scan
    /// of the whole table, keeping it costs next to nothing. `empty`: the table holds no row
    /// (PostgreSQL sets nothing aside otherwise).
    pub async fn defer_indexes(&mut self, res: &Resource, empty: bool) -> Result<u64> {
        let schema = self.schema.clone();
        let tx = match &mut self.tx {
            TxInner::Sqlite(tx) => tx,
            TxInner::Pg(_) if !empty => return Ok(0),
            TxInner::Pg(tx) => return defer_pg(tx, schema.as_deref(), res).await,
        };
        let found = sqlx::query(
            "SELECT m.name, m.sql FROM sqlite_master m WHERE m.type = 'index' AND m.tbl_name = $1 \
             AND m.sql IS NOT NULL \
             AND ((SELECT group_concat(i.name) FROM pragma_index_info(m.name) i) NOT IN ('seen_run', 'updated_at'))",
        )
        .bind(res.name)
        .fetch_all(&mut **tx)
        .await?;
        for r in &found {
            let name: String = r.try_get(0)?;
            let sql: String = r.try_get(1)?;
            sqlx::query(
                "INSERT INTO deferred_indexes (name, tbl, sql) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&name)
            .bind(res.name)
            .bind(sql)
            .execute(&mut **tx)
            .await?;
            // Index names come from sqlite_master; quoted all the same.
            let drop = format!("DROP INDEX IF EXISTS \"{}\"", name.replace('"', "\"\""));
            tx.execute(sqlx::AssertSqlSafe(drop)).await?;
        }
        Ok(found.len() as u64)
    }

    /// Recreates the indexes set aside for this table (one sort each).
    pub async fn restore_indexes(&mut self, res: &Resource) -> Result<u64> {
        let deferred = self.t("deferred_indexes");
        match &mut self.tx {
            TxInner::Sqlite(tx) => restore(tx, Some(res.name)).await,
            TxInner::Pg(tx) => restore_pg(tx, &deferred, Some(res.name)).await,
        }
    }
}

/// PostgreSQL's [`Tx::defer_indexes`] for an empty table: the same indexes, by the catalog.
async fn defer_pg(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    schema: Option<&str>,
    res: &Resource,
) -> Result<u64> {
    let table = super::qualify(schema, res.name);
    let deferred = super::qualify(schema, "deferred_indexes");
    let found = sqlx::query(
        "SELECT c.relname::text, pg_get_indexdef(c.oid) FROM pg_index x \
         JOIN pg_class c ON c.oid = x.indexrelid \
         WHERE x.indrelid = $1::regclass AND NOT x.indisunique \
         AND (SELECT string_agg(a.attname::text, ',' ORDER BY k.n) \
              FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, n) \
              JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum) \
             NOT IN ('seen_run', 'updated_at')",
    )
    .bind(&table)
    .fetch_all(&mut **tx)
    .await?;
    for r in &found {
        let name: String = r.try_get(0)?;
        let sql: String = r.try_get(1)?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {deferred} (name, tbl, sql) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING"
        )))
        .bind(&name)
        .bind(res.name)
        .bind(sql)
        .execute(&mut **tx)
        .await?;
        // The index lives in the table's schema; its name comes from the catalog, quoted all the same.
        let drop = match schema {
            Some(s) => format!(
                "DROP INDEX IF EXISTS \"{s}\".\"{}\"",
                name.replace('"', "\"\"")
            ),
            None => format!("DROP INDEX IF EXISTS \"{}\"", name.replace('"', "\"\"")),
        };
        tx.execute(sqlx::AssertSqlSafe(drop)).await?;
    }
    Ok(found.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::if_not_exists;

    #[test]
    fn index_definitions_become_idempotent() {
        assert_eq!(
            if_not_exists("CREATE INDEX tasks_status ON tasks (status)"),
            "CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status)"
        );
        assert_eq!(
            if_not_exists("CREATE UNIQUE INDEX u ON t (a)"),
            "CREATE UNIQUE INDEX IF NOT EXISTS u ON t (a)"
        );
    }
}
