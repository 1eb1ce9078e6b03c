//! Run history: passes (`sync_cycles`) and each resource's run within one (`sync_runs`), with
//! their requests and record counts; what the budget, the schedule and the status report read.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::{Db, Result, Store, Ts};
use crate::resource::Resource;

/// What one resource's run did: kept in the run history, reported in a pass's outcome.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunStats {
    pub requests: u64,
    pub records_seen: u64,
    pub records_changed: u64,
    pub records_deleted: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub cycle_id: Option<i64>,
    pub resource: String,
    pub mode: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub requests: i64,
    pub records_seen: i64,
    pub records_changed: i64,
    pub records_deleted: i64,
    pub outcome: String,
    pub error: Option<String>,
}

/// A run-history row, on either backend.
fn run_row<R: sqlx::Row>(r: &R) -> Result<RunRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Ts: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RunRow {
        id: r.try_get("id")?,
        cycle_id: r.try_get("cycle_id")?,
        resource: r.try_get("resource")?,
        mode: r.try_get("mode")?,
        started_at: r.try_get::<Ts, _>("started_at")?.text(),
        finished_at: r.try_get::<Option<Ts>, _>("finished_at")?.map(Ts::text),
        requests: r.try_get("requests")?,
        records_seen: r.try_get("records_seen")?,
        records_changed: r.try_get("records_changed")?,
        records_deleted: r.try_get("records_deleted")?,
        outcome: r.try_get("outcome")?,
        error: r.try_get("error")?,
    })
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CycleRow {
    pub id: i64,
    pub started_at: String,
    pub finished_at: String,
    pub trigger: String,
    pub requests: i64,
    pub outcome: String,
    pub records_seen: i64,
    pub records_changed: i64,
    pub records_deleted: i64,
    pub resources: i64,
    pub modes: String,
    /// The `ppsync run` instance that ran it (None: the CLI).
    pub instance: Option<String>,
}

/// One resource's run history in short (for the status endpoint).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunTotals {
    /// Runs recorded for the resource.
    pub runs: i64,
    /// Records written (new, changed or undeleted) over every run.
    pub records_changed: i64,
    /// Runs that ended skipped or failed (not `incomplete`: that listing did its work).
    pub failures: i64,
    /// The latest run.
    pub last: RunRow,
}

impl Store {
    pub async fn start_cycle(
        &self,
        trigger: &str,
        instance: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let sql = format!(
            "INSERT INTO {} (started_at, trigger, instance) VALUES ($1, $2, $3) RETURNING id",
            self.t("sync_cycles")
        );
        Ok(
            on!(Db, &self.db, p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(Ts(now))
            .bind(trigger)
            .bind(instance)
            .fetch_one(p)
            .await?),
        )
    }

    pub async fn finish_cycle(
        &self,
        id: i64,
        now: DateTime<Utc>,
        requests: u64,
        outcome: &str,
    ) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET finished_at = $1, requests = $2, outcome = $3 WHERE id = $4",
            self.t("sync_cycles")
        );
        on!(Db, &self.db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(Ts(now))
            .bind(requests as i64)
            .bind(outcome)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn start_run(
        &self,
        cycle: i64,
        res: &Resource,
        mode: &str,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let sql = format!(
            "INSERT INTO {} (cycle_id, resource, mode, started_at) VALUES ($1, $2, $3, $4) RETURNING id",
            self.t("sync_runs")
        );
        Ok(
            on!(Db, &self.db, p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(cycle)
            .bind(res.name)
            .bind(mode)
            .bind(Ts(now))
            .fetch_one(p)
            .await?),
        )
    }

    pub async fn finish_run(
        &self,
        id: i64,
        now: DateTime<Utc>,
        stats: &RunStats,
        outcome: &str,
        error: Option<&str>,
    ) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET finished_at = $1, requests = $2, records_seen = $3, records_changed = $4, \
             records_deleted = $5, outcome = $6, error = $7 WHERE id = $8",
            self.t("sync_runs")
        );
        on!(Db, &self.db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(Ts(now))
            .bind(stats.requests as i64)
            .bind(stats.records_seen as i64)
            .bind(stats.records_changed as i64)
            .bind(stats.records_deleted as i64)
            .bind(outcome)
            .bind(error)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Recent run history, newest first.
    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT id, cycle_id, resource, mode, started_at, finished_at, requests, records_seen, \
             records_changed, records_deleted, outcome, error FROM {} ORDER BY id DESC LIMIT $1",
            self.t("sync_runs")
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(p).await?;
            rows.iter().map(run_row).collect()
        })
    }

    /// The finished cycles with their request and record totals, oldest first.
    pub async fn cycles(&self) -> Result<Vec<CycleRow>> {
        self.cycles_where("c.finished_at IS NOT NULL").await
    }

    async fn cycles_where(&self, filter: &str) -> Result<Vec<CycleRow>> {
        let sql = format!(
            "SELECT c.id, c.started_at, c.trigger, c.requests, c.outcome, \
             CAST(COALESCE(SUM(r.records_seen), 0) AS BIGINT) AS seen, \
             CAST(COALESCE(SUM(r.records_changed), 0) AS BIGINT) AS changed, \
             CAST(COALESCE(SUM(r.records_deleted), 0) AS BIGINT) AS deleted, COUNT(r.id) AS resources, \
             COALESCE({}, '') AS modes, c.instance, c.finished_at \
             FROM {} c LEFT JOIN {} r ON r.cycle_id = c.id \
             WHERE {filter} GROUP BY c.id ORDER BY c.id",
            self.backend().distinct_list("r.mode"),
            self.t("sync_cycles"),
            self.t("sync_runs")
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    Ok(CycleRow {
                        id: r.try_get("id")?,
                        started_at: r.try_get::<Ts, _>("started_at")?.text(),
                        finished_at: r.try_get::<Ts, _>("finished_at")?.text(),
                        trigger: r.try_get("trigger")?,
                        requests: r.try_get("requests")?,
                        outcome: r.try_get("outcome")?,
                        records_seen: r.try_get("seen")?,
                        records_changed: r.try_get("changed")?,
                        records_deleted: r.try_get("deleted")?,
                        resources: r.try_get("resources")?,
                        modes: r.try_get("modes")?,
                        instance: r.try_get("instance")?,
                    })
                })
                .collect()
        })
    }

    /// Requests of the passes that finished since `since` (token calls included), each at its
    /// finish: what a new budget must count as already spent.
    pub async fn requests_since(&self, since: DateTime<Utc>) -> Result<Vec<(DateTime<Utc>, u64)>> {
        let sql = format!(
            "SELECT finished_at, requests FROM {} WHERE finished_at >= $1 AND requests > 0",
            self.t("sync_cycles")
        );
        on!(Db, &self.db, p => {
            let rows: Vec<(Ts, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(Ts(since))
                .fetch_all(p)
                .await?;
            Ok(rows.into_iter().map(|(t, n)| (t.0, n.max(0) as u64)).collect())
        })
    }

    /// When each pass of `trigger` started since `since`, in order.
    pub async fn cycle_starts(
        &self,
        trigger: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>> {
        let sql = format!(
            "SELECT started_at FROM {} WHERE trigger = $1 AND started_at >= $2 ORDER BY id",
            self.t("sync_cycles")
        );
        on!(Db, &self.db, p => {
            let rows: Vec<Ts> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(trigger)
                .bind(Ts(since))
                .fetch_all(p)
                .await?;
            Ok(rows.into_iter().map(|t| t.0).collect())
        })
    }

    /// The latest finished cycle, if any.
    pub async fn cycles_last(&self) -> Result<Option<CycleRow>> {
        Ok(self
            .cycles_where(&format!(
                "c.id = (SELECT MAX(id) FROM {} WHERE finished_at IS NOT NULL)",
                self.t("sync_cycles")
            ))
            .await?
            .pop())
    }
}

impl Store {
    /// Per resource (by name): totals over the run history and its latest run. Read-only.
    pub async fn run_totals(&self) -> Result<std::collections::HashMap<String, RunTotals>> {
        let runs = self.t("sync_runs");
        let sql = format!(
            "SELECT r.id, r.cycle_id, r.resource, r.mode, r.started_at, r.finished_at, r.requests, \
             r.records_seen, r.records_changed, r.records_deleted, r.outcome, r.error, \
             t.runs AS total_runs, t.changed AS total_changed, t.failures AS total_failures \
             FROM (SELECT resource, COUNT(*) AS runs, CAST(COALESCE(SUM(records_changed), 0) AS BIGINT) AS changed, \
                   CAST(SUM(CASE WHEN outcome IN ('skipped', 'failed') THEN 1 ELSE 0 END) AS BIGINT) AS failures, \
                   MAX(id) AS last_id FROM {runs} GROUP BY resource) t \
             JOIN {runs} r ON r.id = t.last_id"
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    let last = run_row(r)?;
                    Ok((
                        last.resource.clone(),
                        RunTotals {
                            runs: r.try_get("total_runs")?,
                            records_changed: r.try_get("total_changed")?,
                            failures: r.try_get("total_failures")?,
                            last,
                        },
                    ))
                })
                .collect()
        })
    }
}
