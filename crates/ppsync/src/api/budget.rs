//! The request budget: at most `limit` requests in any sliding `window` (product.md §5), shared by
//! every request the process makes, token calls and retries included. There is no bypass.
//!
//! Written by hand rather than with `governor` because it must follow the engine's `Clock` (the
//! demo runs a simulated day in seconds on the simulator's clock), because the limit is "N per
//! window" rather than GCRA's burst model, and because a server 429 must pause it (rust-stack.md §3).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use crate::time::Clock;

pub struct Budget {
    limit: usize,
    window: chrono::Duration,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    used: AtomicU64,
    waited_ms: AtomicU64,
}

#[derive(Default)]
struct State {
    /// When each of the last `limit` requests was sent.
    sent: VecDeque<DateTime<Utc>>,
    /// A server-imposed pause (Retry-After).
    paused_until: Option<DateTime<Utc>>,
}

impl Budget {
    pub fn new(limit: u32, window: Duration, clock: Arc<dyn Clock>) -> Self {
        Budget {
            limit: limit.max(1) as usize,
            window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::minutes(5)),
            clock,
            state: Mutex::new(State::default()),
            used: AtomicU64::new(0),
            waited_ms: AtomicU64::new(0),
        }
    }

    /// Waits until one more request fits in the window, then records it as sent.
    pub async fn acquire(&self) {
        self.acquire_leaving(0).await
    }

    /// For background work (reconciliation): waits until a request fits while still leaving a
    /// fifth of the window free, so the 15-minute tier is never starved.
    pub async fn acquire_background(&self) {
        self.acquire_leaving(self.limit / 5).await
    }

    async fn acquire_leaving(&self, reserve: usize) {
        let cap = self.limit.saturating_sub(reserve).max(1);
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = self.clock.now();
                let horizon = now - self.window;
                while s.sent.front().is_some_and(|t| *t <= horizon) {
                    s.sent.pop_front();
                }
                match s.paused_until {
                    Some(p) if p > now => Some(p - now),
                    _ if s.sent.len() >= cap => {
                        // The request that frees a slot leaves the window at `its time + window`.
                        Some(s.sent[s.sent.len() - cap] + self.window - now)
                    }
                    _ => {
                        s.paused_until = None;
                        s.sent.push_back(now);
                        None
                    }
                }
            };
            match wait {
                None => {
                    self.used.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(d) => {
                    let d = d
                        .to_std()
                        .unwrap_or(Duration::from_millis(1))
                        .max(Duration::from_millis(1));
                    self.waited_ms
                        .fetch_add(d.as_millis() as u64, Ordering::Relaxed);
                    tracing::debug!(
                        wait_ms = d.as_millis() as u64,
                        "request budget full, waiting"
                    );
                    self.clock.sleep(d).await;
                }
            }
        }
    }

    /// Counts requests made before this budget existed (by an earlier process or another
    /// instance, from the run history) as sent at the given times, so a restart or a takeover
    /// does not start with a full window. Only what still falls in the window counts.
    pub async fn prime(&self, earlier: &[(DateTime<Utc>, u64)]) {
        let mut s = self.state.lock().await;
        let horizon = self.clock.now() - self.window;
        let mut all: Vec<DateTime<Utc>> = s.sent.iter().copied().collect();
        for (t, n) in earlier.iter().filter(|(t, _)| *t > horizon) {
            all.extend(std::iter::repeat_n(
                *t,
                (*n).min(self.limit as u64) as usize,
            ));
        }
        all.sort();
        // Only the newest `limit` matter to the window.
        let skip = all.len().saturating_sub(self.limit);
        s.sent = all.into_iter().skip(skip).collect();
    }

    /// Stops every request until `d` from now (a server's Retry-After).
    pub async fn pause_for(&self, d: Duration) {
        let mut s = self.state.lock().await;
        let until = self.clock.now() + chrono::Duration::from_std(d).unwrap_or_default();
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Requests sent in the current window.
    pub async fn in_window(&self) -> usize {
        let s = self.state.lock().await;
        let horizon = self.clock.now() - self.window;
        s.sent.iter().filter(|t| **t > horizon).count()
    }

    /// Requests sent since the process started.
    pub fn total_used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Time spent waiting for the budget, in milliseconds.
    pub fn total_waited_ms(&self) -> u64 {
        self.waited_ms.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::BoxFuture;
    use std::sync::Mutex as StdMutex;

    /// A clock that only moves when slept on: sleeping advances it instantly.
    struct ManualClock(StdMutex<DateTime<Utc>>);
    impl Clock for ManualClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
        fn sleep(&self, d: Duration) -> BoxFuture<'_> {
            *self.0.lock().unwrap() += chrono::Duration::from_std(d).unwrap();
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn never_more_than_limit_in_any_window() {
        let start = crate::time::parse_api_time("2026-11-25T00:00:00").unwrap();
        let clock = Arc::new(ManualClock(StdMutex::new(start)));
        let budget = Budget::new(5, Duration::from_secs(60), clock.clone());
        let mut times = Vec::new();
        for _ in 0..23 {
            budget.acquire().await;
            times.push(clock.now());
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .filter(|u| **u < *t + chrono::Duration::seconds(60))
                .count();
            assert!(
                in_window <= 5,
                "{in_window} requests in the window starting at request {i}"
            );
        }
        // 23 requests at 5 per minute need 4 full windows of waiting.
        assert_eq!(times[22] - times[0], chrono::Duration::seconds(240));
        assert_eq!(budget.total_used(), 23);
    }

    #[tokio::test]
    async fn background_work_leaves_a_fifth_of_the_window() {
        let start = crate::time::parse_api_time("2026-11-25T00:00:00").unwrap();
        let clock = Arc::new(ManualClock(StdMutex::new(start)));
        let budget = Budget::new(10, Duration::from_secs(60), clock.clone());
        for _ in 0..8 {
            budget.acquire_background().await;
        }
        assert_eq!(clock.now(), start, "8 of 10 fit at once");
        budget.acquire_background().await;
        assert_eq!(
            clock.now() - start,
            chrono::Duration::seconds(60),
            "the 9th waits for the window"
        );
        // Scheduled work still gets the reserved slots at once.
        budget.acquire().await;
        budget.acquire().await;
        assert_eq!(clock.now() - start, chrono::Duration::seconds(60));
        assert_eq!(budget.in_window().await, 3);
    }

    #[tokio::test]
    async fn earlier_requests_count_until_they_leave_the_window() {
        let start = crate::time::parse_api_time("2026-11-25T00:00:00").unwrap();
        let clock = Arc::new(ManualClock(StdMutex::new(start)));
        let budget = Budget::new(10, Duration::from_secs(60), clock.clone());
        let ago = |s: i64| start - chrono::Duration::seconds(s);
        // 8 requests 30 s ago count; 5 requests 90 s ago have left the window.
        budget.prime(&[(ago(30), 8), (ago(90), 5)]).await;
        assert_eq!(budget.in_window().await, 8);
        budget.acquire().await;
        budget.acquire().await;
        assert_eq!(clock.now(), start, "two slots were left");
        budget.acquire().await;
        assert_eq!(
            clock.now() - start,
            chrono::Duration::seconds(30),
            "the next waits until the earlier requests leave the window"
        );
    }

    #[tokio::test]
    async fn a_pause_holds_every_request() {
        let start = crate::time::parse_api_time("2026-11-25T00:00:00").unwrap();
        let clock = Arc::new(ManualClock(StdMutex::new(start)));
        let budget = Budget::new(100, Duration::from_secs(300), clock.clone());
        budget.pause_for(Duration::from_secs(7)).await;
        budget.acquire().await;
        assert_eq!(clock.now() - start, chrono::Duration::seconds(7));
    }
}
