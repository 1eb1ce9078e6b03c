//! Record issues (`record_issues`): what could not be read of a stored record, noted in the
//! page's transaction and cleared when the record comes back clean.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::{Db, Result, Store, Ts, Tx, TxInner};
use crate::record::Row;
use crate::resource::Resource;

/// A noted record issue (`record_issues`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct IssueRow {
    pub resource: String,
    pub record_id: String,
    pub field: String,
    pub problem: String,
    pub first_seen: String,
    pub last_seen: String,
}

impl Store {
    /// The records of `res` with an issue noted.
    pub async fn issue_ids(&self, res: &Resource) -> Result<std::collections::HashSet<String>> {
        let sql = format!(
            "SELECT DISTINCT record_id FROM {} WHERE resource = $1",
            self.t("record_issues")
        );
        let ids: Vec<String> = on!(Db, &self.db, p => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(res.name).fetch_all(p).await?
        });
        Ok(ids.into_iter().collect())
    }

    /// The fields of `res` some record has an issue noted in (dotted, `account_ref.id`; `*`:
    /// the record as a whole).
    pub async fn issue_fields(&self, res: &Resource) -> Result<std::collections::BTreeSet<String>> {
        let sql = format!(
            "SELECT DISTINCT field FROM {} WHERE resource = $1",
            self.t("record_issues")
        );
        let fields: Vec<String> = on!(Db, &self.db, p => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(res.name).fetch_all(p).await?
        });
        Ok(fields.into_iter().collect())
    }

    /// Records with issues noted, per resource.
    pub async fn issue_counts(&self) -> Result<std::collections::BTreeMap<String, i64>> {
        let sql = format!(
            "SELECT resource, COUNT(DISTINCT record_id) FROM {} GROUP BY resource",
            self.t("record_issues")
        );
        let rows: Vec<(String, i64)> = on!(Db, &self.db, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?
        });
        Ok(rows.into_iter().collect())
    }

    /// The issues noted, newest first: (resource, record id, field, problem, first seen, last seen).
    pub async fn issues(&self, limit: i64) -> Result<Vec<IssueRow>> {
        let sql = format!(
            "SELECT resource, record_id, field, problem, first_seen, last_seen FROM {} \
             ORDER BY last_seen DESC, resource, record_id, field LIMIT $1",
            self.t("record_issues")
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    Ok(IssueRow {
                        resource: r.try_get(0)?,
                        record_id: r.try_get(1)?,
                        field: r.try_get(2)?,
                        problem: r.try_get(3)?,
                        first_seen: r.try_get::<Ts, _>(4)?.text(),
                        last_seen: r.try_get::<Ts, _>(5)?.text(),
                    })
                })
                .collect()
        })
    }
}

impl Tx {
    /// Notes what could not be read of these records (`record_issues`): a row per record and
    /// field, its first sighting kept.
    pub async fn note_issues(
        &mut self,
        res: &Resource,
        rows: &[&Row],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (resource, record_id, field, problem, sample, first_seen, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (resource, record_id, field) DO UPDATE \
             SET problem = excluded.problem, sample = excluded.sample, last_seen = excluded.last_seen",
            self.t("record_issues")
        );
        for row in rows {
            // A keyless record cannot be looked up in its table: the start of its text is kept.
            let sample: Option<String> = row.keyless.then(|| row.data.chars().take(500).collect());
            for issue in &row.issues {
                on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(res.name)
                    .bind(row.id.as_str())
                    .bind(issue.field.as_str())
                    .bind(issue.problem.as_str())
                    .bind(sample.as_deref())
                    .bind(Ts(now))
                    .execute(&mut **tx)
                    .await?
                    .rows_affected());
            }
        }
        Ok(())
    }

    /// Forgets the issues of records received clean again.
    pub async fn clear_issues(&mut self, res: &Resource, ids: &[&str]) -> Result<()> {
        let sql = format!(
            "DELETE FROM {} WHERE resource = $1 AND record_id = $2",
            self.t("record_issues")
        );
        for id in ids {
            on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(res.name)
                .bind(*id)
                .execute(&mut **tx)
                .await?
                .rows_affected());
        }
        Ok(())
    }
}
