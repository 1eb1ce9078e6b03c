//! What a pass reports: each resource's [`Outcome`], the [`PassReport`] with its exit code, and
//! the [`ProgressSink`] that watches a pass as it goes.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::DetailReport;
use super::paging::Mode;
use crate::store::RunStats;

/// What happened to one resource in a pass.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub resource: &'static str,
    pub mode: Mode,
    pub stats: RunStats,
    /// None when the resource synced; the reason otherwise.
    pub error: Option<String>,
    /// The listing could not list the resource completely (the records it did list are in):
    /// `error` says what was seen.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
}

/// A pass's result: per-resource outcomes, and a fatal error that stopped it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PassReport {
    pub cycle: i64,
    pub outcomes: Vec<Outcome>,
    pub fatal: Option<String>,
    pub requests: u64,
    /// The API asked us to wait until then (a `Retry-After` longer than the longest wait): the
    /// pass ended early and the next should not start before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// The pass stopped because the credentials were rejected (`fatal` says how).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_failed: bool,
}

impl PassReport {
    /// product.md §6: 0 all synced, 1 some skipped or incomplete, 2 nothing could be done.
    pub fn exit_code(&self) -> i32 {
        if self.fatal.is_some() {
            2
        } else if self.outcomes.iter().any(|o| o.error.is_some()) {
            1
        } else {
            0
        }
    }
    pub fn records_seen(&self) -> u64 {
        self.outcomes.iter().map(|o| o.stats.records_seen).sum()
    }
    pub fn records_changed(&self) -> u64 {
        self.outcomes.iter().map(|o| o.stats.records_changed).sum()
    }
}

/// Receives progress (the CLI draws bars from it).
pub trait ProgressSink: Send + Sync {
    fn start(&self, resource: &str, mode: Mode);
    fn records(&self, resource: &str, n: u64);
    fn finish(&self, resource: &str, outcome: &Outcome);
    /// By-id reads begin: `total` records are queued.
    fn details_start(&self, _total: u64) {}
    /// `done` records of the queue read so far.
    fn details_progress(&self, _done: u64) {}
    fn details_done(&self, _report: &DetailReport) {}
}
