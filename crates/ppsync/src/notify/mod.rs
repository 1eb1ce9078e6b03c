//! Notifications: new tasks, and every deadline source's deadlines at their lead times (the
//! seed's "immediate task notifications" and "timely deadline tracking"; sources in
//! [`crate::deadlines`]).
//!
//! They are decided here, written to the outbox in the transaction of the records that caused them
//! (or, for a lead time that a new firm-local day brings, by [`deadline_scan`]), and delivered
//! at least once by [`Dispatcher`] to a webhook (JSON, signed the Standard Webhooks way), a
//! command (JSON on stdin) and/or e-mail (one message each, or a digest per interval), on a task of its own beside the daemon's cycles ([`Delivery`]). Ids are
//! stable — `task.created:<id>`, `deadline:<source>:<id>:<local date>:<lead>d` — so a re-read
//! never enqueues twice and receivers can deduplicate redeliveries. A deadline moved or cleared
//! has its pending notifications for the old date set `cancelled` (never sent).
//!
//! The first backfill of a resource records what it finds as `suppressed` (never sent): a firm does
//! not want 5,000 "new task" messages on day one.
//!
//! Outbox statuses: `pending` (to deliver, from `next_attempt_at`), `delivered`, `suppressed`,
//! `cancelled` (a moved or cleared deadline's, never sent), and
//! `dead` (failed `notify.max_attempts` times: kept and shown, sent again after `ppsync notify
//! retry`).
//!
//! Here: the settings. `rules`: which records notify, and the deadline scan; `dispatcher`: a
//! delivery round over the outbox, with each row's backoff and the sink's; `webhook`,
//! `command` and `email`: the sinks; `digest`: e-mail digests; `auth`: the notification of rejected credentials; `delivery`: the task that runs rounds beside the daemon.

use std::time::Duration;

mod auth;
mod command;
mod delivery;
mod digest;
mod dispatcher;
mod email;
mod rules;
mod webhook;

pub use auth::{KIND as AUTH_FAILED, auth_failed};
pub use delivery::Delivery;
pub use dispatcher::{Dispatcher, Round, backoff};
pub use email::{EmailConfig, SmtpSecurity};
pub use rules::{RULES, Rule, deadline_scan, for_deadlines, for_page, lead_notification, rule};
pub use webhook::{sign, signing_key};

/// Settings from the config.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// How far ahead the status page lists deadlines.
    pub window: Duration,
    pub webhook_url: Option<url::Url>,
    pub webhook_secret: Option<secrecy::SecretString>,
    pub webhook_timeout: Duration,
    pub command: Option<String>,
    /// A command running longer is killed (with what it started) and the try counts as failed.
    pub command_timeout: Duration,
    /// The environment variables the command gets from ppsync's (nothing else: ppsync's own
    /// holds the client secret and the database password).
    pub command_env: Vec<String>,
    /// Failed tries after which a notification is set aside as `dead`.
    pub max_attempts: u32,
    /// The registered firm these notifications come from (None: the default firm); sent as the
    /// payload's `firm` field and the `X-PPSync-Firm` header, so one receiver can serve many firms.
    pub firm: Option<String>,
    /// The e-mail sink (`notify.smtp_url` and the `email_*` keys), if set.
    pub email: Option<EmailConfig>,
}

/// What a command gets of ppsync's environment unless `notify.command_env` says otherwise.
pub const DEFAULT_COMMAND_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            window: Duration::from_secs(30 * 86400),
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: Duration::from_secs(10),
            firm: None,
            command: None,
            command_timeout: Duration::from_secs(30),
            command_env: DEFAULT_COMMAND_ENV.iter().map(|s| s.to_string()).collect(),
            max_attempts: 10,
            email: None,
        }
    }
}

/// `s` on one line, cut to `max` characters (an error or a command's stderr, for the log).
fn one_line(s: &str, max: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}
