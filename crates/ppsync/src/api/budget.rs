//! The request budget: at most `limit` requests in any sliding `window` (product.md §5), shared by
//! every request the process makes, token calls and retries included. There is no bypass.
//!
//! Written by hand rather than with `governor` because it must follow the engine's `Clock` (the
//! demo runs a simulated day in seconds on the simulator's clock), because the limit is "N per
//! window" rather than GCRA's burst model, and because a server 429 must pause it (rust-stack.md §3).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::time::Clock;

type Fut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where every process of a firm counts its requests (the database: a daemon, a CLI pass beside
/// it, a process that crashed a minute ago, another instance), so the budget holds for the firm
/// and not only for one process. `api` knows nothing of storage: the store implements it.
pub trait Ledger: Send + Sync {
    /// In one atomic step: marks this holder's `settled` requests answered; then, if the
    /// requests of every holder that still count at `now` leave room under `cap`, records request
    /// `seq` as sent at `now` and returns None; otherwise the earliest instant a slot frees. A
    /// request counts for a window from its answer, or, unanswered (in flight, or its process
    /// died), from its send plus the longest a request may take.
    fn take<'a>(
        &'a self,
        seq: u64,
        now: DateTime<Utc>,
        cap: usize,
        settled: &'a [(u64, DateTime<Utc>)],
    ) -> Fut<'a, anyhow::Result<Option<DateTime<Utc>>>>;
    /// Marks this holder's requests answered.
    fn settle<'a>(&'a self, settled: &'a [(u64, DateTime<Utc>)]) -> Fut<'a, anyhow::Result<()>>;
}

pub struct Budget {
    /// Lowered at run time when the server throttles without saying for how long.
    limit: AtomicUsize,
    /// Set when `limit` was lowered and the new value not yet taken for saving.
    lowered: AtomicBool,
    window: chrono::Duration,
    clock: Arc<dyn Clock>,
    /// Never held across an await (so a [`Sent`] can settle itself in `drop`).
    state: Mutex<State>,
    /// Woken when a request in flight settles (only waits on requests in flight need it).
    settled: Notify,
    used: AtomicU64,
    waited_ms: AtomicU64,
    /// The firm's shared count (None: this process's own count only).
    ledger: std::sync::OnceLock<Arc<dyn Ledger>>,
    /// Answers not yet written to the ledger (written with the next request, or by `flush`).
    unsettled: Mutex<Vec<(u64, DateTime<Utc>)>>,
    /// The ledger failed (the database unreachable): said once, then the process's own count
    /// stands in until it works again.
    ledger_failing: AtomicBool,
}

#[derive(Default)]
struct State {
    /// The requests that may still count at the server: those in flight (`None`) and those
    /// answered within the window, by when they were answered.
    sent: Vec<(u64, Option<DateTime<Utc>>)>,
    next: u64,
    /// A server-imposed pause (Retry-After).
    paused_until: Option<DateTime<Utc>>,
}

/// A request let through the budget. It counts from the moment it is dropped: when its answer
/// has arrived (or the attempt was given up), the latest instant at which the server can have
/// counted it. The server counts a request when it arrives, some time between our send and its
/// answer; counting from the answer means no delay in transit (a slow first connection, a loaded
/// machine) can ever put more than `limit` requests in one of the server's windows, where
/// counting from the send could by a few milliseconds at a window's edge.
/// What an acquire does next.
enum Wait {
    Go(u64),
    Sleep(chrono::Duration),
    /// Every slot is held by a request in flight.
    Settle,
}

#[must_use = "a request counts from when its Sent is dropped"]
pub struct Sent<'a> {
    budget: &'a Budget,
    id: u64,
}

impl Drop for Sent<'_> {
    fn drop(&mut self) {
        let now = self.budget.clock.now();
        if let Some(e) = self
            .budget
            .lock()
            .sent
            .iter_mut()
            .rev()
            .find(|e| e.0 == self.id)
        {
            e.1 = Some(now);
        }
        if self.budget.ledger.get().is_some() {
            self.budget
                .unsettled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.id, now));
        }
        self.budget.settled.notify_waiters();
    }
}

impl Budget {
    pub fn new(limit: u32, window: Duration, clock: Arc<dyn Clock>) -> Self {
        Budget {
            limit: AtomicUsize::new(limit.max(1) as usize),
            lowered: AtomicBool::new(false),
            window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::minutes(5)),
            clock,
            state: Mutex::new(State::default()),
            settled: Notify::new(),
            used: AtomicU64::new(0),
            waited_ms: AtomicU64::new(0),
            ledger: std::sync::OnceLock::new(),
            unsettled: Mutex::new(Vec::new()),
            ledger_failing: AtomicBool::new(false),
        }
    }

    /// Counts every request in the firm's shared ledger too, so the budget holds across
    /// processes. Set once, before the first request.
    pub fn share(&self, ledger: Arc<dyn Ledger>) {
        let _ = self.ledger.set(ledger);
    }

    /// Writes answers not yet in the ledger (the end of a pass, of a process).
    pub async fn flush(&self) {
        let Some(ledger) = self.ledger.get() else {
            return;
        };
        let settled =
            std::mem::take(&mut *self.unsettled.lock().unwrap_or_else(|e| e.into_inner()));
        if settled.is_empty() {
            return;
        }
        if let Err(e) = ledger.settle(&settled).await {
            tracing::warn!(error = %format!("{e:#}"), "the request ledger could not be written");
        }
    }

    /// Asks the shared ledger for request `id`'s slot: None when it is taken, else when to try
    /// again. A ledger that cannot be reached leaves the decision to this process's own count.
    async fn take_shared(&self, id: u64, cap: usize) -> Option<DateTime<Utc>> {
        let ledger = self.ledger.get()?;
        let settled =
            std::mem::take(&mut *self.unsettled.lock().unwrap_or_else(|e| e.into_inner()));
        match ledger.take(id, self.clock.now(), cap, &settled).await {
            Ok(wait) => {
                if self.ledger_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("the request ledger works again");
                }
                wait
            }
            Err(e) => {
                // Put the answers back for the next try.
                self.unsettled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(settled);
                if !self.ledger_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %format!("{e:#}"), "the request ledger cannot be reached: counting this process's requests only");
                }
                None
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding it; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until one more request fits in the window; it counts until its [`Sent`] is dropped
    /// and for a window after that.
    pub async fn acquire(&self) -> Sent<'_> {
        self.acquire_leaving(0, None)
            .await
            .expect("no deadline: always acquired")
    }

    /// For background work (reconciliation): waits until a request fits while still leaving a
    /// fifth of the window free, so the 15-minute tier is never starved.
    pub async fn acquire_background(&self) -> Sent<'_> {
        self.acquire_leaving(self.limit() / 5, None)
            .await
            .expect("no deadline: always acquired")
    }

    /// As [`Budget::acquire_background`], but None at once when the request could not be sent
    /// before `deadline` (background work then yields to the scheduled work due there, instead
    /// of sleeping into its time).
    pub async fn acquire_background_before(&self, deadline: DateTime<Utc>) -> Option<Sent<'_>> {
        self.acquire_leaving(self.limit() / 5, Some(deadline)).await
    }

    async fn acquire_leaving(
        &self,
        reserve: usize,
        deadline: Option<DateTime<Utc>>,
    ) -> Option<Sent<'_>> {
        let cap = self.limit().saturating_sub(reserve).max(1);
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            // Registered before the state is read, so a settle in between is not missed.
            settled.as_mut().enable();
            let wait = {
                let mut s = self.lock();
                let now = self.clock.now();
                let horizon = now - self.window;
                s.sent.retain(|e| e.1.is_none_or(|t| t > horizon));
                match s.paused_until {
                    Some(p) if p > now => Wait::Sleep(p - now),
                    _ if s.sent.len() >= cap => {
                        // A slot frees when enough answered requests leave the window: the
                        // (len - cap + 1)-th oldest answer + window. Requests in flight never
                        // leave it, so with too many of them only a settle can help (None).
                        let mut answered: Vec<DateTime<Utc>> =
                            s.sent.iter().filter_map(|e| e.1).collect();
                        answered.sort_unstable();
                        match answered.get(s.sent.len() - cap) {
                            Some(t) => Wait::Sleep(*t + self.window - now),
                            None => Wait::Settle,
                        }
                    }
                    _ => {
                        s.paused_until = None;
                        let id = s.next;
                        s.next += 1;
                        s.sent.push((id, None));
                        Wait::Go(id)
                    }
                }
            };
            if let Some(deadline) = deadline {
                let now = self.clock.now();
                let late = match &wait {
                    Wait::Go(_) => now >= deadline,
                    Wait::Sleep(d) => now + *d >= deadline,
                    Wait::Settle => false,
                };
                if late {
                    if let Wait::Go(id) = wait {
                        self.lock().sent.retain(|e| e.0 != id);
                    }
                    return None;
                }
            }
            let wait = match wait {
                Wait::Go(id) => match self.take_shared(id, cap).await {
                    None => Wait::Go(id),
                    Some(at) => {
                        // Other processes of this firm hold the window: this slot is not ours.
                        self.lock().sent.retain(|e| e.0 != id);
                        let now = self.clock.now();
                        if deadline.is_some_and(|d| at >= d) {
                            return None;
                        }
                        Wait::Sleep((at - now).max(chrono::Duration::milliseconds(1)))
                    }
                },
                other => other,
            };
            match wait {
                Wait::Go(id) => {
                    self.used.fetch_add(1, Ordering::Relaxed);
                    return Some(Sent { budget: self, id });
                }
                Wait::Settle => settled.await,
                Wait::Sleep(d) => {
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
        let mut s = self.lock();
        let horizon = self.clock.now() - self.window;
        let mut all: Vec<DateTime<Utc>> = Vec::new();
        for (t, n) in earlier.iter().filter(|(t, _)| *t > horizon) {
            all.extend(std::iter::repeat_n(
                *t,
                (*n).min(self.limit() as u64) as usize,
            ));
        }
        all.sort();
        // Only the newest `limit` matter to the window (beside this process's own).
        let skip = all.len().saturating_sub(self.limit());
        let mut earlier: Vec<(u64, Option<DateTime<Utc>>)> = Vec::new();
        for t in all.into_iter().skip(skip) {
            earlier.push((s.next, Some(t)));
            s.next += 1;
        }
        s.sent.splice(0..0, earlier);
    }

    /// Stops every request until `d` from now (a server's Retry-After).
    pub async fn pause_for(&self, d: Duration) {
        let mut s = self.lock();
        let until = self.clock.now() + chrono::Duration::from_std(d).unwrap_or_default();
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Requests that count in the current window (those in flight included).
    pub async fn in_window(&self) -> usize {
        let s = self.lock();
        let horizon = self.clock.now() - self.window;
        s.sent
            .iter()
            .filter(|e| e.1.is_none_or(|t| t > horizon))
            .count()
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
        self.limit.load(Ordering::Relaxed)
    }

    /// Starts from a rate learned earlier (a server that allowed less than configured), never
    /// above the configured limit.
    pub fn start_at(&self, limit: u32) {
        let l = (limit.max(1) as usize).min(self.limit());
        self.limit.store(l, Ordering::Relaxed);
    }

    /// The server answered 429 without `Retry-After`: it allows less than this budget does.
    /// The limit drops to nine tenths of what was in the window when it answered (but by at most
    /// three quarters at once, in case another client shares the server's count), so the next
    /// windows stay under the server's; the caller backs off meanwhile. Returns the new limit.
    pub async fn throttled_without_retry_after(&self) -> usize {
        let in_window = self.in_window().await;
        let now = self.limit();
        let lowered = (in_window * 9 / 10)
            .max(now / 4)
            .clamp(1, now.saturating_sub(1).max(1));
        if lowered < now {
            self.limit.store(lowered, Ordering::Relaxed);
            self.lowered.store(true, Ordering::Relaxed);
            tracing::warn!(
                from = now,
                to = lowered,
                "429 without Retry-After: lowering the request rate"
            );
        }
        lowered
    }

    /// The limit, when it was lowered since the last call (to be saved).
    pub fn take_lowered(&self) -> Option<usize> {
        self.lowered
            .swap(false, Ordering::Relaxed)
            .then(|| self.limit())
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
            let _ = budget.acquire().await;
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
            let _ = budget.acquire_background().await;
        }
        assert_eq!(clock.now(), start, "8 of 10 fit at once");
        let _ = budget.acquire_background().await;
        assert_eq!(
            clock.now() - start,
            chrono::Duration::seconds(60),
            "the 9th waits for the window"
        );
        // Scheduled work still gets the reserved slots at once.
        let _ = budget.acquire().await;
        let _ = budget.acquire().await;
        assert_eq!(clock.now() - start, chrono::Duration::seconds(60));
        assert_eq!(budget.in_window().await, 3);
    }

    #[tokio::test]
    async fn background_work_yields_rather_than_wait_past_a_deadline() {
        let start = crate::time::parse_api_time("2026-11-25T00:00:00").unwrap();
        let clock = Arc::new(ManualClock(StdMutex::new(start)));
        let budget = Budget::new(10, Duration::from_secs(60), clock.clone());
        let deadline = start + chrono::Duration::seconds(30);
        for _ in 0..8 {
            assert!(budget.acquire_background_before(deadline).await.is_some());
        }
        // The 9th would wait a full window, past the deadline: refused at once, no time spent,
        // and no slot taken.
        assert!(budget.acquire_background_before(deadline).await.is_none());
        assert_eq!(clock.now(), start);
        assert_eq!(budget.in_window().await, 8);
        // With the deadline beyond the wait, it waits and goes.
        let later = start + chrono::Duration::seconds(90);
        assert!(budget.acquire_background_before(later).await.is_some());
        assert_eq!(clock.now() - start, chrono::Duration::seconds(60));
        // At or past the deadline nothing goes, even with room.
        assert!(
            budget
                .acquire_background_before(clock.now())
                .await
                .is_none()
        );
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
        let _ = budget.acquire().await;
        let _ = budget.acquire().await;
        assert_eq!(clock.now(), start, "two slots were left");
        let _ = budget.acquire().await;
        assert_eq!(
            clock.now() - start,
            chrono::Duration::seconds(30),
            "the next waits until the earlier requests leave the window"
        );
    }

    #[tokio::test]
    async fn a_429_without_retry_after_lowers_the_limit() {
        let start = crate::time::parse_api_time("2026-11-25T00:00:00").unwrap();
        let clock = Arc::new(ManualClock(StdMutex::new(start)));
        let budget = Budget::new(300, Duration::from_secs(300), clock.clone());
        for _ in 0..100 {
            let _ = budget.acquire().await;
        }
        // The server allowed 100: the budget now stays at 90.
        assert_eq!(budget.throttled_without_retry_after().await, 90);
        assert_eq!(budget.take_lowered(), Some(90));
        assert_eq!(budget.take_lowered(), None, "taken once");
        // Few requests in our window (another client shares the server's count): a quarter at most.
        let budget = Budget::new(300, Duration::from_secs(300), clock.clone());
        assert_eq!(budget.throttled_without_retry_after().await, 75);
        budget.start_at(1000);
        assert_eq!(budget.limit(), 75, "never above what it was");
    }

    #[tokio::test]
    async fn a_pause_holds_every_request() {
        let start = crate::time::parse_api_time("2026-11-25T00:00:00").unwrap();
        let clock = Arc::new(ManualClock(StdMutex::new(start)));
        let budget = Budget::new(100, Duration::from_secs(300), clock.clone());
        budget.pause_for(Duration::from_secs(7)).await;
        let _ = budget.acquire().await;
        assert_eq!(clock.now() - start, chrono::Duration::seconds(7));
    }

    #[tokio::test]
    async fn a_request_counts_from_its_answer_and_holds_its_slot_while_in_flight() {
        let start = crate::time::parse_api_time("2026-11-25T00:00:00").unwrap();
        let clock = Arc::new(ManualClock(StdMutex::new(start)));
        let budget = Arc::new(Budget::new(2, Duration::from_secs(60), clock.clone()));
        let slow = budget.acquire().await;
        // Answered 10 s after it was sent: the server may have counted it as late as that.
        clock.sleep(Duration::from_secs(10)).await;
        drop(slow);
        let _ = budget.acquire().await;
        assert_eq!(budget.in_window().await, 2);
        let _ = budget.acquire().await;
        assert_eq!(
            clock.now() - start,
            chrono::Duration::seconds(70),
            "the third waits a window from the first one's answer, not from its send"
        );

        // Two in flight fill a budget of two: the next waits for an answer, then a window.
        let budget = Arc::new(Budget::new(2, Duration::from_secs(60), clock.clone()));
        let (a, b) = (budget.acquire().await, budget.acquire().await);
        let before = clock.now();
        let third = tokio::spawn({
            let budget = budget.clone();
            async move {
                let _ = budget.acquire().await;
            }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished(), "no slot while both are in flight");
        assert_eq!(
            clock.now(),
            before,
            "nothing to sleep on: it waits for an answer"
        );
        drop(a);
        third.await.unwrap();
        assert_eq!(clock.now() - before, chrono::Duration::seconds(60));
        drop(b);
    }
}
