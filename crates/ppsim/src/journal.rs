//! The request journal and the request budget.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::time::TICKS_PER_SEC;

/// One request the simulator answered (every request except `/_sim/*`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JournalEntry {
    pub method: String,
    /// As requested, original case.
    pub path: String,
    /// The raw query string as received (undecoded), empty if none.
    pub query: String,
    pub status: u16,
    /// The sim's true clock when the request arrived.
    pub at: DateTime<Utc>,
    /// The firm (0-based) the request was attributed to: by `client_id` on `/oauth/*`, by the
    /// bearer token's issuer elsewhere; 0 when neither names a firm.
    #[serde(default)]
    pub firm: u32,
}

/// A sliding-window request budget on the sim clock: at most `limit` counted requests in any
/// window of `window` ticks. A request refused with 429 is not counted.
#[derive(Debug)]
pub struct Budget {
    limit: u32,
    window: i64,
    times: VecDeque<i64>,
    max_seen: u32,
}

impl Budget {
    pub fn new(limit: u32, window: std::time::Duration) -> Budget {
        Budget {
            limit,
            window: (window.as_nanos() / 100) as i64,
            times: VecDeque::new(),
            max_seen: 0,
        }
    }

    /// Changes the limit (0 = unlimited) and the window at run time. Requests already counted
    /// stay counted: they are judged against the new limit and leave the new window.
    pub fn set_limits(&mut self, limit: u32, window: std::time::Duration) {
        self.limit = limit;
        self.window = (window.as_nanos() / 100) as i64;
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn window(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.window.max(0) as u64 * 100)
    }

    fn prune(&mut self, now: i64) {
        while self.times.front().is_some_and(|t| *t <= now - self.window) {
            self.times.pop_front();
        }
    }

    /// Counts a request at `now`, or refuses it with the seconds until the oldest counted
    /// request leaves the window (ceil, at least 1).
    pub fn admit(&mut self, now: i64) -> Result<(), u64> {
        self.check(now)?;
        self.times.push_back(now);
        self.max_seen = self.max_seen.max(self.times.len() as u32);
        Ok(())
    }

    /// Would a request at `now` be admitted? Counts nothing.
    pub fn check(&mut self, now: i64) -> Result<(), u64> {
        self.prune(now);
        if self.limit > 0 && self.times.len() as u32 >= self.limit {
            let oldest = *self.times.front().expect("non-empty at limit");
            let wait = oldest + self.window - now;
            let secs = (wait + TICKS_PER_SEC - 1) / TICKS_PER_SEC;
            return Err(secs.max(1) as u64);
        }
        Ok(())
    }

    pub fn in_window(&mut self, now: i64) -> u32 {
        self.prune(now);
        self.times.len() as u32
    }

    /// The most counted requests ever inside one window. The deque holds exactly the requests
    /// of the window ending at each admission, so its length after each push is the sliding max.
    pub fn max_in_any_window(&self) -> u32 {
        self.max_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_at_limit_and_refills() {
        let mut b = Budget::new(2, std::time::Duration::from_secs(300));
        let s = TICKS_PER_SEC;
        assert!(b.admit(0).is_ok());
        assert!(b.admit(10 * s).is_ok());
        assert_eq!(b.admit(20 * s), Err(280));
        assert_eq!(b.admit(299 * s + 1), Err(1));
        assert!(b.admit(300 * s).is_ok());
        assert_eq!(b.max_in_any_window(), 2);
    }
}
