//! Faults injected on request: what a production API does on a bad day.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::oauth::Auth;

/// One fault. Counted faults apply to the next `count` matching requests, then vanish;
/// `Latency` and `ClockSkew` stay until [`Faults::clear`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Fault {
    /// The next `count` `/api/v2` requests answer `status` (500/502/503) with a short body.
    ServerErrors { count: u32, status: u16 },
    /// The next `count` requests (API and token) answer 429 with `Retry-After`.
    RateLimitStorm { count: u32, retry_after_secs: u64 },
    /// Every request (API, token, authorize) is delayed by `ms` of real time until cleared.
    Latency { ms: u64 },
    /// The next `count` requests (API, token, authorize) are delayed by `ms` of real time before
    /// the server sees them (and counts them in its budget): a slow connection now and then.
    SlowRequests { count: u32, ms: u64 },
    /// The next `count` list responses, after `after` more have been served whole: status 200,
    /// body cut off in the middle of a record in the middle of the array (well-formed HTTP,
    /// malformed JSON).
    TruncateBody {
        count: u32,
        #[serde(default)]
        after: u32,
    },
    /// The next `count` `/api/v2` requests answer an HTML error page (`text/html`) with `status`
    /// (200 allowed).
    HtmlError { count: u32, status: u16 },
    /// Until cleared: the `Date` header is true time + `date_header_secs`; `created_at` and
    /// `updated_at` stamped by changes are true time + `stamps_secs`.
    ClockSkew {
        date_header_secs: i64,
        stamps_secs: i64,
    },
    /// The next `count` list requests of `resource`: once the response is produced from a
    /// snapshot, one record **from the first half of the response** is edited (its
    /// `updated_at` bumped to now), so the listing served the old version while the truth has the
    /// new one. The record edited is the one at a quarter of the response.
    EditDuringListing { resource: String, count: u32 },
    /// The next `count` responses of the firm (`/api/…` and `/oauth/token`; not `/_sim`, not
    /// `/oauth/authorize`) carry a `Date` header `secs` away from the sim clock, on top of any
    /// ClockSkew: a server whose clock jumps now and then.
    DateOffset { count: u32, secs: i64 },
}

#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub list: Vec<Fault>,
}

/// Shared handle to add and clear faults.
#[derive(Clone)]
pub struct Faults {
    pub(crate) state: Arc<Mutex<FaultState>>,
    pub(crate) auth: Arc<Mutex<Auth>>,
}

impl Faults {
    pub fn add(&self, f: Fault) {
        self.lock().list.push(f);
    }

    /// Removes every fault (token state is untouched).
    pub fn clear(&self) {
        self.lock().list.clear();
    }

    /// The faults now in force.
    pub fn active(&self) -> Vec<Fault> {
        self.lock().list.clone()
    }

    /// Every issued access token now answers 401; refresh tokens still work.
    pub fn expire_access_tokens(&self) {
        self.auth.lock().expect("auth lock").expire_access_tokens();
    }

    /// Access and refresh tokens all become invalid (refresh → 400 invalid_grant).
    pub fn revoke_all(&self) {
        self.auth.lock().expect("auth lock").revoke_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.state.lock().expect("fault lock")
    }

    /// Consumes one use of the first live counted fault that `pick` accepts.
    pub(crate) fn take<T>(&self, pick: impl Fn(&Fault) -> Option<T>) -> Option<T> {
        let mut st = self.lock();
        let i = st
            .list
            .iter()
            .position(|f| counted(f).is_some_and(|c| c > 0) && pick(f).is_some())?;
        let out = pick(&st.list[i]);
        let left = match &mut st.list[i] {
            Fault::TruncateBody { after, .. } if *after > 0 => {
                // Not yet: this response is served whole.
                *after -= 1;
                return None;
            }
            Fault::ServerErrors { count, .. }
            | Fault::RateLimitStorm { count, .. }
            | Fault::TruncateBody { count, .. }
            | Fault::HtmlError { count, .. }
            | Fault::SlowRequests { count, .. }
            | Fault::EditDuringListing { count, .. }
            | Fault::DateOffset { count, .. } => {
                *count -= 1;
                *count
            }
            Fault::Latency { .. } | Fault::ClockSkew { .. } => 1,
        };
        if left == 0 {
            st.list.remove(i);
        }
        out
    }

    /// The delay of the request arriving now (uses up one `SlowRequests`).
    pub(crate) fn latency_ms(&self) -> u64 {
        let slow = self
            .take(|f| match f {
                Fault::SlowRequests { ms, .. } => Some(*ms),
                _ => None,
            })
            .unwrap_or(0);
        slow + self
            .lock()
            .list
            .iter()
            .map(|f| match f {
                Fault::Latency { ms } => *ms,
                _ => 0,
            })
            .sum::<u64>()
    }

    /// The `Date` offset of a response sent now (uses up one `DateOffset`).
    pub(crate) fn date_offset(&self) -> i64 {
        self.take(|f| match f {
            Fault::DateOffset { secs, .. } => Some(*secs),
            _ => None,
        })
        .unwrap_or(0)
    }

    /// `(date_header_secs, stamps_secs)`.
    pub(crate) fn skew(&self) -> (i64, i64) {
        self.lock().list.iter().fold((0, 0), |(d, s), f| match f {
            Fault::ClockSkew {
                date_header_secs,
                stamps_secs,
            } => (d + date_header_secs, s + stamps_secs),
            _ => (d, s),
        })
    }
}

fn counted(f: &Fault) -> Option<u32> {
    match f {
        Fault::ServerErrors { count, .. }
        | Fault::RateLimitStorm { count, .. }
        | Fault::TruncateBody { count, .. }
        | Fault::HtmlError { count, .. }
        | Fault::SlowRequests { count, .. }
        | Fault::EditDuringListing { count, .. }
        | Fault::DateOffset { count, .. } => Some(*count),
        Fault::Latency { .. } | Fault::ClockSkew { .. } => None,
    }
}
