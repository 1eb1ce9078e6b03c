//! The delivery task of one daemon: rounds when woken, when a retry falls due, and at least
//! every minute, beside the cycles and stopped with them.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Dispatcher;
use crate::store::Store;
use crate::time::Clock;

/// The delivery task's longest idle wait: a `ppsync notify retry` run by another process is
/// picked up within it.
pub(super) const IDLE: Duration = Duration::from_secs(60);

/// The delivery task of one daemon (one firm): a round when woken (after the daemon's cycles
/// and deadline scans), when the next retry falls due, and at least every minute. It runs beside
/// the cycles, so a slow or hanging sink never delays syncing; `stop` ends it at once, killing a
/// command in flight (its row stays pending, the try is not counted).
pub struct Delivery {
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<u64>>,
}

impl Delivery {
    pub fn spawn(
        dispatcher: Dispatcher,
        store: Store,
        clock: Arc<dyn Clock>,
        stop: CancellationToken,
    ) -> Delivery {
        let wake = Arc::new(tokio::sync::Notify::new());
        let task = dispatcher.has_sinks().then(|| {
            tokio::spawn(delivery_loop(
                dispatcher,
                store,
                clock,
                wake.clone(),
                stop.clone(),
            ))
        });
        Delivery { wake, stop, task }
    }

    /// Something may be due (the daemon committed, or scanned the deadlines).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the task and returns how many notifications it delivered.
    pub async fn stop(mut self) -> u64 {
        self.stop.cancel();
        match self.task.take() {
            Some(t) => t.await.unwrap_or(0),
            None => 0,
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn delivery_loop(
    dispatcher: Dispatcher,
    store: Store,
    clock: Arc<dyn Clock>,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) -> u64 {
    let mut delivered = 0;
    while !stop.is_cancelled() {
        let wait = match dispatcher.round(&store, clock.now(), &stop).await {
            Ok(r) => {
                delivered += r.delivered;
                if r.more {
                    continue;
                }
                dispatcher.next_wait(&store, clock.now()).await
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "notification delivery failed");
                Duration::from_secs(10)
            }
        };
        // A real-time wait, not the clock's: a simulated clock is driven by the scheduler alone
        // (its sleep advances it), and the scheduler wakes this task after every cycle.
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
            _ = stop.cancelled() => {}
        }
    }
    delivered
}
