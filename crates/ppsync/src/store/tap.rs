//! The Singer tap's reads (`ppsync tap`): a resource's records written in a window of sync
//! instants, a page at a time in id order.

use sqlx::Row as _;

use super::{Db, Result, Store, Ts};
use crate::resource::Resource;

/// One record as the tap emits it.
#[derive(Debug)]
pub struct TapRow {
    pub id: String,
    /// When the mirror last wrote the record (its `time_extracted`).
    pub synced_at: Ts,
    pub deleted_at: Option<Ts>,
    /// The record as received.
    pub data: String,
}

/// Which records a page holds: written after `since` (None: from the start) and at or before
/// `until`, with an id after `after` (None: from the first).
#[derive(Clone, Copy, Debug)]
pub struct Window<'a> {
    pub since: Option<Ts>,
    pub until: Ts,
    pub after: Option<&'a str>,
}

impl Store {
    /// Up to `limit` records of `res` in `window`, by id. Every write of a record (new, changed,
    /// read by id, marked deleted) sets its `synced_at`; a listing that finds it unchanged does
    /// not. Paging walks the primary key, so a whole run reads each table once.
    pub async fn tap_page(
        &self,
        res: &Resource,
        window: Window<'_>,
        limit: u32,
    ) -> Result<Vec<TapRow>> {
        // PostgreSQL: the record as received where jsonb could not hold it (`raw`).
        let data = match self.db {
            Db::Sqlite(_) => "data",
            Db::Pg(_) => "COALESCE(raw, data::text)",
        };
        let mut filter = String::from("synced_at <= $1");
        let mut n = 1;
        if window.since.is_some() {
            n += 1;
            filter.push_str(&format!(" AND synced_at > ${n}"));
        }
        if window.after.is_some() {
            n += 1;
            filter.push_str(&format!(" AND id > ${n}"));
        }
        let sql = format!(
            "SELECT id, synced_at, deleted_at, {data} AS data FROM {} WHERE {filter} ORDER BY id LIMIT ${}",
            self.t(res.name),
            n + 1
        );
        Ok(on!(Db, &self.db, p => {
            let mut q = sqlx::query::<Dialect>(sqlx::AssertSqlSafe(sql)).bind(window.until);
            if let Some(since) = window.since {
                q = q.bind(since);
            }
            if let Some(after) = window.after {
                q = q.bind(after);
            }
            let rows = q.bind(i64::from(limit)).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(TapRow {
                    id: row.try_get("id")?,
                    synced_at: row.try_get("synced_at")?,
                    deleted_at: row.try_get("deleted_at")?,
                    data: row.try_get("data")?,
                });
            }
            out
        }))
    }
}
