//! The simulator's clock: `now = start + real time elapsed since spawn + sum of advances`.
//!
//! Real time keeps flowing between explicit advances so that a client honouring `Retry-After`
//! really does see its budget refill; `advance` jumps ahead and lets the change generator fill
//! the skipped interval. A frozen clock (no real-time flow) is available for tests that need
//! byte-identical stamps across runs.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use crate::time::TICKS_PER_SEC;

#[derive(Debug)]
pub struct Clock {
    start_ticks: i64,
    real_start: Instant,
    /// Sum of explicit advances, in ticks.
    offset: AtomicI64,
    frozen: bool,
}

impl Clock {
    pub fn new(start_ticks: i64, frozen: bool) -> Self {
        Clock {
            start_ticks,
            real_start: Instant::now(),
            offset: AtomicI64::new(0),
            frozen,
        }
    }

    /// The true simulated instant, in ticks.
    pub fn now(&self) -> i64 {
        let real = if self.frozen {
            0
        } else {
            let e = self.real_start.elapsed();
            e.as_secs() as i64 * TICKS_PER_SEC + i64::from(e.subsec_nanos() / 100)
        };
        self.start_ticks + real + self.offset.load(Ordering::SeqCst)
    }

    /// Moves the clock forward by `ticks`.
    pub fn advance(&self, ticks: i64) {
        self.offset.fetch_add(ticks.max(0), Ordering::SeqCst);
    }
}
