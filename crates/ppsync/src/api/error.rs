//! `api::Error`, its classes, and the one policy that maps a class to what the caller does.
//! ARCHITECTURE.md carries the same table.

use std::time::Duration;

/// A failed API interaction. Variants say what the caller must decide, not which library failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no credentials stored: run `ppsync auth login` or `ppsync auth import --refresh-token T`"
    )]
    NoCredentials,
    #[error(
        "the refresh token was rejected by the token endpoint ({detail}): run `ppsync auth login` to authorize again"
    )]
    RefreshRejected { detail: String },
    #[error(
        "the stored tokens are unreadable ({detail}): run `ppsync auth login` to store a fresh grant"
    )]
    CorruptTokens { detail: String },
    #[error(
        "the API still answers 401 after a token refresh: run `ppsync auth login` to authorize again"
    )]
    Unauthorized,
    #[error("{path}: the API refused the access token (401)")]
    TokenRefused { path: String },
    #[error(
        "rate limited by the API (429) and the wait would exceed the cap (retry after {retry_after:?})"
    )]
    RateLimited { retry_after: Option<Duration> },
    #[error("{path}: the API rejected the query (400): {body}")]
    BadRequest { path: String, body: String },
    #[error("{path}: the API answered {status}: {body}")]
    Client {
        path: String,
        status: u16,
        body: String,
    },
    #[error("{path}: server error {status} after retries: {body}")]
    Server {
        path: String,
        status: u16,
        body: String,
    },
    #[error(
        "cannot reach the API at {url} ({cause}): check api_base_url and the network; nothing more is synced this pass"
    )]
    Unreachable { url: String, cause: String },
    #[error("{path}: network error: {source}")]
    Transport {
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{path}: expected JSON but got `{content_type}` (status {status}): {snippet}")]
    NotJson {
        path: String,
        status: u16,
        content_type: String,
        snippet: String,
    },
    #[error("{path}: the response body ended early (cut off mid-array after {records} records)")]
    Truncated { path: String, records: u64 },
    #[error("{path}: malformed JSON after {records} records: {detail}")]
    Malformed {
        path: String,
        records: u64,
        detail: String,
    },
    #[error("background work yields: the budget has no room before scheduled work is due")]
    Deferred,
    #[error("{resource}: record {record} has a field of an unexpected type: {detail}")]
    BadRecord {
        resource: String,
        record: String,
        detail: String,
    },
}

/// What kind of failure it is (aws-smithy vocabulary, narrowed to what the engine can act on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The stored grant is gone or rejected: nothing can be fetched until a human re-authorizes.
    AuthDead,
    /// 401 (or 400 `invalid_grant`) on an API call: refresh the token and retry once.
    Auth,
    /// 429 / 503 with Retry-After.
    Throttled,
    /// 400 on a listing: the API rejected our timestamp or query.
    BadCursor,
    /// Network failures, 5xx, a cut-off body, an HTML page where JSON was expected.
    Transient,
    /// No connection at all (refused, DNS, TLS, connect timeout): every resource would fail alike.
    Unreachable,
    /// Other 4xx: likely a bug or bad configuration; looping would not help.
    Client,
    /// A record we cannot read: retrying returns the same bytes.
    BadData,
}

/// What the caller does about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Refresh the access token and retry the request once.
    RefreshAndRetry,
    /// Wait (Retry-After, bounded) and retry.
    WaitAndRetry,
    /// Back off exponentially and retry, a few times.
    BackoffAndRetry,
    /// Re-list the resource from scratch instead of trusting the cursor (product.md §4).
    Relist,
    /// Give up on this resource for this pass; the cursor stays; the others go on.
    SkipResource,
    /// Stop the whole pass: no resource can succeed (credentials).
    StopPass,
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::NoCredentials
            | Error::RefreshRejected { .. }
            | Error::CorruptTokens { .. }
            | Error::Unauthorized => Class::AuthDead,
            Error::TokenRefused { .. } => Class::Auth,
            Error::RateLimited { .. } | Error::Deferred => Class::Throttled,
            Error::BadRequest { .. } => Class::BadCursor,
            Error::Client { .. } => Class::Client,
            Error::Server { .. }
            | Error::Transport { .. }
            | Error::NotJson { .. }
            | Error::Truncated { .. }
            | Error::Malformed { .. } => Class::Transient,
            Error::BadRecord { .. } => Class::BadData,
            Error::Unreachable { .. } => Class::Unreachable,
        }
    }
}

/// Tries of a request that cannot connect before the pass ends (a few seconds in all, so an
/// unreachable API fails a pass fast instead of retrying each resource).
pub const CONNECT_ATTEMPTS: u32 = 3;

/// The one place that maps a class to an action. `attempt` counts tries of the same request or
/// page so far (1 = the first try failed); `max_attempts` bounds retries of transient failures.
pub fn action(class: Class, attempt: u32, max_attempts: u32) -> Action {
    match class {
        Class::AuthDead => Action::StopPass,
        Class::Auth if attempt <= 1 => Action::RefreshAndRetry,
        Class::Auth => Action::StopPass,
        Class::Throttled if attempt < max_attempts * 2 => Action::WaitAndRetry,
        Class::Transient if attempt < max_attempts => Action::BackoffAndRetry,
        Class::Throttled | Class::Transient => Action::SkipResource,
        Class::Unreachable if attempt < CONNECT_ATTEMPTS => Action::BackoffAndRetry,
        Class::Unreachable => Action::StopPass,
        Class::BadCursor => Action::Relist,
        Class::Client | Class::BadData => Action::SkipResource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_table() {
        assert_eq!(action(Class::Auth, 1, 4), Action::RefreshAndRetry);
        assert_eq!(action(Class::Auth, 2, 4), Action::StopPass);
        assert_eq!(action(Class::AuthDead, 1, 4), Action::StopPass);
        assert_eq!(action(Class::Transient, 3, 4), Action::BackoffAndRetry);
        assert_eq!(action(Class::Transient, 4, 4), Action::SkipResource);
        assert_eq!(action(Class::Throttled, 7, 4), Action::WaitAndRetry);
        assert_eq!(action(Class::Throttled, 8, 4), Action::SkipResource);
        assert_eq!(action(Class::BadCursor, 1, 4), Action::Relist);
        assert_eq!(action(Class::BadData, 1, 4), Action::SkipResource);
        assert_eq!(action(Class::Client, 1, 4), Action::SkipResource);
        assert_eq!(action(Class::Unreachable, 2, 4), Action::BackoffAndRetry);
        assert_eq!(action(Class::Unreachable, 3, 4), Action::StopPass);
    }
}
