//! By-id reads of records whose list rendering leaves fields out (an email's `body_html`, a
//! payment's `refundedAmount`: practicepanther-api.md §2). A listing queues every new or changed
//! record of such a resource in its page transaction (`detail_queue`); this works the queue off on
//! background budget, one record per transaction: the by-id rendering replaces the list's in the
//! mirror while the record still has the content hash it was queued with.
//!
//! It runs after the scheduled work (the daemon gives it the time until the next resource is due,
//! and no request is sent that would wait for the budget past that) or after a CLI pass. Whether
//! the by-id read adds anything is itself learned: once [`dialect::DETAIL_PROOF`] reads in a row
//! add no field, the resource's queue is dropped and no more is queued until the fact is a month
//! old (a live API whose list does hold every field costs a few reads, not thousands).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Engine, dialect};
use crate::api::{self, Class};
use crate::record;
use crate::resource::Resource;
use crate::store::DetailItem;

/// Queued records read per query of the queue.
const BATCH: i64 = 50;
/// The longest wait before a failed read is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);

/// What one round of by-id reads did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DetailReport {
    /// By-id renderings stored.
    pub stored: u64,
    /// Records the by-id read found gone (404): left to the reconciliation to mark.
    pub gone: u64,
    /// Reads that failed (each tried again later, with backoff).
    pub failed: u64,
    pub requests: u64,
    /// Records still queued for these resources when the round ended.
    pub left: i64,
    /// The round stopped because the next request would have waited for the budget past the
    /// round's end (scheduled work is due): the rest waits for the next round.
    pub deferred: bool,
    /// Why the round stopped early, if it did (credentials, the API unreachable...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error stops everything else too (credentials, the API unreachable, the database).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fatal: bool,
}

/// How a read that failed is retried: after 5 minutes, doubling, at most a day.
fn backoff(attempts: i64) -> Duration {
    let doublings = attempts.clamp(0, 16) as u32;
    Duration::from_secs(300)
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// The top-level field names of a record's text (None when it does not parse as an object).
fn field_names(text: &str) -> Option<BTreeSet<String>> {
    let map: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
        serde_json::from_str(text).ok()?;
    Some(map.into_keys().collect())
}

impl Engine {
    /// The resources among `resources` whose new and changed records are read by id.
    pub fn detail_resources(&self, resources: &[&'static Resource]) -> Vec<&'static Resource> {
        resources
            .iter()
            .copied()
            .filter(|r| r.by_id.is_some() && self.cfg.details(r))
            .collect()
    }

    /// Works off the detail queue of `resources` until it is empty, `until` comes (no request
    /// is sent that would have to wait for the budget past it), or shutdown.
    pub async fn fetch_details(
        &self,
        resources: &[&'static Resource],
        until: Option<DateTime<Utc>>,
    ) -> DetailReport {
        let mut report = DetailReport::default();
        let resources = self.detail_resources(resources);
        let names: Vec<&str> = resources.iter().map(|r| r.name).collect();
        let before = self.client.requests_made();
        let client = match until {
            Some(t) => self.client.background_until(t),
            None => self.client.background(),
        };
        if let Err(e) = self
            .work_queue(&client, &resources, until, &mut report)
            .await
        {
            report.error = Some(e.to_string());
            report.fatal = true;
        }
        report.requests = self.client.requests_made() - before;
        self.client.budget().flush().await;
        report.left = match self.store.detail_backlog().await {
            Ok(b) => names
                .iter()
                .filter_map(|n| b.get(*n))
                .map(|b| b.queued)
                .sum(),
            Err(_) => 0,
        };
        if let Some(p) = &self.progress {
            p.details_done(&report);
        }
        report
    }

    async fn work_queue(
        &self,
        client: &api::Client,
        resources: &[&'static Resource],
        until: Option<DateTime<Utc>>,
        report: &mut DetailReport,
    ) -> Result<(), crate::store::Error> {
        // Resources proven not to need it drop their queue first.
        let mut dialects = std::collections::HashMap::new();
        let mut active: Vec<&str> = Vec::new();
        for res in resources {
            let d = self.dialect(res).await?;
            if d.details_needed(self.clock.now()) {
                active.push(res.name);
            } else {
                let mut tx = self.store.begin().await?;
                tx.drop_details(res).await?;
                tx.commit().await?;
            }
            dialects.insert(res.name, d);
        }
        let total: i64 = {
            let b = self.store.detail_backlog().await?;
            active
                .iter()
                .filter_map(|n| b.get(*n))
                .map(|b| b.queued)
                .sum()
        };
        let mut done = 0u64;
        if let Some(p) = &self.progress
            && total > 0
        {
            p.details_start(total as u64);
        }
        loop {
            let now = self.clock.now();
            if self.shutdown.is_cancelled() || until.is_some_and(|t| now >= t) {
                return Ok(());
            }
            let batch = self.store.details_due(&active, now, BATCH).await?;
            if batch.is_empty() {
                return Ok(());
            }
            for item in batch {
                if self.shutdown.is_cancelled() || until.is_some_and(|t| self.clock.now() >= t) {
                    return Ok(());
                }
                let Some(res) = resources.iter().find(|r| r.name == item.resource) else {
                    continue;
                };
                let Some(d) = dialects.get_mut(res.name) else {
                    continue;
                };
                if !d.details_needed(self.clock.now()) {
                    // Learned during this round: the rest of the resource's queue goes.
                    let mut tx = self.store.begin().await?;
                    tx.drop_details(res).await?;
                    tx.commit().await?;
                    active.retain(|n| *n != res.name);
                    break;
                }
                match self.read_one(client, res, &item, d, report).await? {
                    Next::Go => {}
                    Next::Stop => return Ok(()),
                }
                done += 1;
                if let Some(p) = &self.progress {
                    p.details_progress(done);
                }
            }
        }
    }

    /// Reads one queued record by id and stores what came back.
    async fn read_one(
        &self,
        client: &api::Client,
        res: &'static Resource,
        item: &DetailItem,
        dialect: &mut dialect::Dialect,
        report: &mut DetailReport,
    ) -> Result<Next, crate::store::Error> {
        let path = res.by_id.expect("detail resources have a by-id read");
        let answer = client.get_record(path, &item.id).await;
        let now = self.clock.now();
        let text = match answer {
            Ok(Some(text)) => text,
            Ok(None) => {
                // Gone: the reconciliation confirms and marks it (never concluded here).
                let mut tx = self.store.begin().await?;
                tx.dequeue_detail(res, &item.id, item.hash).await?;
                tx.commit().await?;
                report.gone += 1;
                return Ok(Next::Go);
            }
            Err(api::Error::Deferred) => {
                report.deferred = true;
                return Ok(Next::Stop);
            }
            Err(e) => {
                let class = e.class();
                let next =
                    now + chrono::Duration::from_std(backoff(item.attempts)).unwrap_or_default();
                self.store
                    .detail_failed(res, &item.id, item.hash, next, &e.to_string())
                    .await?;
                report.failed += 1;
                tracing::warn!(resource = res.name, id = %item.id, error = %e, "by-id read failed; retried later");
                return Ok(match class {
                    // One record's problem (a 403 on it, say): the others go on.
                    Class::Client | Class::BadCursor | Class::BadData => Next::Go,
                    Class::AuthDead | Class::Unreachable => {
                        report.error = Some(e.to_string());
                        report.fatal = true;
                        Next::Stop
                    }
                    // The API is struggling or throttling: the rest waits for the next round.
                    _ => {
                        report.error = Some(e.to_string());
                        Next::Stop
                    }
                });
            }
        };
        let row = match record::prepare(res, &text) {
            Ok(row) if !row.keyless && row.id == item.id => row,
            Ok(row) => {
                let why = format!(
                    "the by-id answer for {} is another record ({})",
                    item.id, row.id
                );
                let next =
                    now + chrono::Duration::from_std(backoff(item.attempts)).unwrap_or_default();
                self.store
                    .detail_failed(res, &item.id, item.hash, next, &why)
                    .await?;
                report.failed += 1;
                return Ok(Next::Go);
            }
            Err(e) => {
                let next =
                    now + chrono::Duration::from_std(backoff(item.attempts)).unwrap_or_default();
                self.store
                    .detail_failed(res, &item.id, item.hash, next, &e.to_string())
                    .await?;
                report.failed += 1;
                return Ok(Next::Go);
            }
        };
        let mut tx = self.store.begin().await?;
        // What the by-id read adds, learned against the list's rendering as stored.
        let learned = match (
            self.store
                .record_text(res, &item.id)
                .await?
                .as_deref()
                .and_then(field_names),
            field_names(&text),
        ) {
            (Some(list), Some(by_id)) => dialect.saw_by_id(&list, &by_id, now),
            _ => false,
        };
        if learned {
            let facts = serde_json::to_string(&*dialect).expect("a dialect serializes");
            tx.set_dialect(res.name, &facts, now).await?;
        }
        let stored = tx.store_detail(res, &row, item.hash, now).await?;
        if stored {
            if row.issues.is_empty() {
                tx.clear_issues(res, &[row.id.as_str()]).await?;
            } else {
                tx.note_issues(res, &[&row], now).await?;
            }
        }
        tx.commit().await?;
        if stored {
            report.stored += 1;
        }
        Ok(Next::Go)
    }
}

enum Next {
    Go,
    Stop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_reads_back_off_to_a_day() {
        assert_eq!(backoff(0), Duration::from_secs(300));
        assert_eq!(backoff(1), Duration::from_secs(600));
        assert_eq!(backoff(5), Duration::from_secs(9600));
        assert_eq!(backoff(9), MAX_BACKOFF);
        assert_eq!(backoff(i64::MAX), MAX_BACKOFF);
        assert_eq!(backoff(-3), Duration::from_secs(300));
    }

    #[test]
    fn field_names_of_a_record() {
        let names = field_names(r#"{"id":"e1","subject":"x","body_html":null}"#).unwrap();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["body_html", "id", "subject"]
        );
        assert!(field_names("[1]").is_none());
    }
}
