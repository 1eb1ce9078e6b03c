//! Deadlines: open tasks and events coming due, read from the mirrored `tasks` and `events`.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::Row as _;

use super::{Db, Error, Result, Store, Ts};
use crate::resource::Resource;

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

    /// Live records whose `column` falls in [from, to] and that have no outbox row
    /// `<kind>:<id>:<column>` yet (deadlines that time brought into the window).
    pub async fn due_between(
        &self,
        res: &Resource,
        column: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kind: &str,
    ) -> Result<Vec<Box<RawValue>>> {
        let sql = format!(
            "SELECT t.data FROM {t} t WHERE t.deleted_at IS NULL AND t.{column} >= $1 AND t.{column} <= $2 \
             AND NOT EXISTS (SELECT 1 FROM {o} o WHERE o.id = $3 || ':' || t.id || ':' || {due})",
            t = self.t(res.name),
            o = self.t("outbox"),
            due = self.backend().ts_text(&format!("t.{column}")),
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(Ts(from))
                .bind(Ts(to))
                .bind(kind)
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    r.try_get::<Box<RawValue>, _>(0).map_err(|e| Error::Corrupt {
                        resource: res.name.to_string(),
                        detail: e.to_string(),
                    })
                })
                .collect()
        })
    }
}
