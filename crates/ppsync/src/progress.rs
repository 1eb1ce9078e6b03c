//! What a pass shows on a terminal: progress bars while it runs (per resource, and the by-id
//! reads' queue), and its one-line summary after. Used by `ppsync sync` and the demo.

use std::io::IsTerminal as _;
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::sync::{Mode, Outcome, PassReport, ProgressSink};

/// Progress bars on a terminal (hidden when stderr is not one).
#[derive(Clone)]
pub struct Bars {
    multi: MultiProgress,
    bars: Arc<std::sync::Mutex<std::collections::HashMap<String, ProgressBar>>>,
}

impl Bars {
    pub fn new() -> Arc<Self> {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Arc::new(Bars {
            multi: MultiProgress::with_draw_target(target),
            bars: Default::default(),
        })
    }
}

impl ProgressSink for Bars {
    fn start(&self, resource: &str, mode: Mode) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix:<22} {msg:<12} {pos:>8} records  {per_sec}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(resource.to_string());
        bar.set_message(mode.name());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        self.bars
            .lock()
            .expect("bars lock")
            .insert(resource.to_string(), bar);
    }
    fn records(&self, resource: &str, n: u64) {
        if let Some(b) = self.bars.lock().expect("bars lock").get(resource) {
            b.inc(n);
        }
    }
    fn finish(&self, resource: &str, outcome: &Outcome) {
        if let Some(b) = self.bars.lock().expect("bars lock").remove(resource) {
            let msg = match &outcome.error {
                None => format!("{} ✓", outcome.mode.name()),
                Some(_) => "skipped".to_string(),
            };
            b.finish_with_message(msg);
        }
    }
    fn details_start(&self, total: u64) {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix:<22} [{bar:24}] {pos:>7}/{len} by id  {per_sec}  eta {eta}",
            )
            .expect("valid template"),
        );
        bar.set_prefix("details");
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        self.bars
            .lock()
            .expect("bars lock")
            .insert(DETAILS_BAR.to_string(), bar);
    }
    fn details_progress(&self, done: u64) {
        if let Some(b) = self.bars.lock().expect("bars lock").get(DETAILS_BAR) {
            b.set_position(done);
        }
    }
    fn details_done(&self, report: &crate::sync::DetailReport) {
        if let Some(b) = self.bars.lock().expect("bars lock").remove(DETAILS_BAR) {
            b.finish_with_message(format!("{} left", report.left));
        }
    }
}

/// The by-id reads' bar (not a resource name).
const DETAILS_BAR: &str = " details";

pub fn print_pass(report: &PassReport) -> std::io::Result<()> {
    let changed = report.records_changed();
    let seen = report.records_seen();
    let skipped = report
        .outcomes
        .iter()
        .filter(|o| o.error.is_some() && !o.incomplete)
        .count();
    let incomplete = report.outcomes.iter().filter(|o| o.incomplete).count();
    outln!(
        "pass {}: {} resources, {} requests, {} records received, {} new or changed, {} deleted{}{}",
        report.cycle,
        report.outcomes.len(),
        report.requests,
        seen,
        changed,
        report
            .outcomes
            .iter()
            .map(|o| o.stats.records_deleted)
            .sum::<u64>(),
        if skipped > 0 {
            format!(", {skipped} skipped")
        } else {
            String::new()
        },
        if incomplete > 0 {
            format!(", {incomplete} incomplete")
        } else {
            String::new()
        }
    );
    Ok(())
}
