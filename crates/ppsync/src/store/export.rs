//! Export: a resource's stored records streamed out in id order (`ppsync export`).

use futures::TryStreamExt;
use sqlx::Row as _;

use super::{Db, Store, Ts};
use crate::resource::{ColumnType, Resource};

/// One exported record.
pub struct ExportRow<'a> {
    pub id: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub deleted_at: Option<String>,
    pub data: String,
    pub columns: &'a [Option<String>],
}

impl Store {
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
        // PostgreSQL: the record as received where jsonb could not hold it (`raw`).
        let data = match self.db {
            Db::Sqlite(_) => "data",
            Db::Pg(_) => "COALESCE(raw, data::text) AS data",
        };
        let sql = format!(
            "SELECT id, created_at, updated_at, deleted_at, {data}{extra} FROM {} {filter} ORDER BY id",
            self.t(res.name)
        );
        let mut n = 0;
        on!(Db, &self.db, p => {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(p);
            while let Some(row) = rows.try_next().await? {
                let mut typed = Vec::with_capacity(res.columns.len());
                for (i, c) in res.columns.iter().enumerate() {
                    let idx = 5 + i;
                    let v = match c.ty {
                        ColumnType::Int => row.try_get::<Option<i64>, _>(idx)?.map(|v| v.to_string()),
                        ColumnType::Real => row.try_get::<Option<f64>, _>(idx)?.map(|v| v.to_string()),
                        ColumnType::Bool => row.try_get::<Option<bool>, _>(idx)?.map(|v| v.to_string()),
                        ColumnType::Time => row.try_get::<Option<Ts>, _>(idx)?.map(Ts::text),
                        ColumnType::Text => row.try_get::<Option<String>, _>(idx)?,
                    };
                    typed.push(v);
                }
                let data: String = row.try_get("data")?;
                out(ExportRow {
                    id: row.try_get("id")?,
                    created_at: row.try_get::<Option<Ts>, _>("created_at")?.map(Ts::text),
                    updated_at: row.try_get::<Option<Ts>, _>("updated_at")?.map(Ts::text),
                    deleted_at: row.try_get::<Option<Ts>, _>("deleted_at")?.map(Ts::text),
                    data,
                    columns: &typed,
                })?;
                n += 1;
            }
        });
        Ok(n)
    }
}
