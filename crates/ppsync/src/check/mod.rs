//! `ppsync check` (and `ppsync run` as it starts): is this set-up ready to run? Each check is a
//! function returning a [`Check`]; the command line only prints them.
//!
//! - config: loaded and validated (an unknown key with the nearest known one);
//! - database: reachable, writable, migrations current, looked at without creating or migrating
//!   it; a SQLite file not made yet passes when its folder is writable (`ppsync auth login`,
//!   `sync` or `run` creates it);
//! - credentials: client id and secret set, tokens stored, and one `GET /users/me` (one request,
//!   taken from the firm's budget and written in its ledger like any other; not sent when the
//!   budget is spent for now);
//! - notification sinks (`sinks`): reachable or runnable, without sending anything.
//!
//! A failure is `transient` when it is the network's (a host that does not answer, a 5xx):
//! `ppsync run` logs those and starts anyway (systemd would only restart it into the same
//! outage, and the daemon retries on its own), and stops with exit 2 on any other.

use std::sync::Arc;

use serde::Serialize;

use crate::config::Config;
use crate::store::{Inspection, Store};
use crate::time::Clock;

mod sinks;

pub use sinks::{Program, command_program, sinks};

/// One line of the checklist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// A failure the network may mend by itself (see the module's text).
    pub transient: bool,
    pub detail: String,
}

impl Check {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            transient: false,
            detail: detail.into(),
        }
    }
    pub fn fail(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            transient: false,
            detail: detail.into(),
        }
    }
    pub fn fail_transient(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            transient: true,
            ..Check::fail(name, detail)
        }
    }
}

/// Every check of `ppsync check`, for a config already loaded (the config's own check is the
/// loading: see `cli::check`).
pub async fn all(cfg: &Config, clock: Arc<dyn Clock>) -> Vec<Check> {
    let mut out = vec![Check::pass(
        "config",
        match &cfg.source {
            Some(p) => format!("{} loaded and valid", p.display()),
            None => "no file: defaults and PPSYNC_* environment variables, valid".to_string(),
        },
    )];
    let (db, inspection) = database(cfg).await;
    out.push(db);
    out.push(match inspection {
        Some(i) if i.exists => credentials(cfg, clock).await,
        _ => Check::fail(
            "credentials",
            "none stored (no mirror yet): run `ppsync auth login` or `ppsync auth import --refresh-token T`",
        ),
    });
    out.extend(sinks(&cfg.notify).await);
    out
}

/// The checks `ppsync run` makes as it starts, its database already open: credentials (one firm
/// only: a fleet's firms show theirs on /status) and the sinks.
pub async fn at_start(
    cfg: &Config,
    store: &Store,
    fleet: bool,
    clock: Arc<dyn Clock>,
) -> Vec<Check> {
    let mut out = Vec::new();
    if !fleet {
        out.push(credentials_on(cfg, store, clock).await);
    }
    out.extend(sinks(&cfg.notify).await);
    out
}

/// The database check: looked at, not opened (nothing created or migrated). Also returns what
/// was seen, when the database could be reached.
pub async fn database(cfg: &Config) -> (Check, Option<Inspection>) {
    match crate::store::inspect(&cfg.database_url, cfg.database_schema.as_deref()).await {
        Ok(i) => (database_verdict(&i), Some(i)),
        Err(e) => (Check::fail("database", e), None),
    }
}

/// The database check's verdict on what was seen.
pub fn database_verdict(i: &Inspection) -> Check {
    const NAME: &str = "database";
    let at = &i.location;
    if let Err(why) = &i.writable {
        return Check::fail(
            NAME,
            if i.exists {
                format!("{at}: not writable ({why})")
            } else {
                format!("{at}: does not exist and cannot be created ({why})")
            },
        );
    }
    if !i.exists {
        return Check::pass(
            NAME,
            format!("{at}: not created yet; `ppsync auth login`, `sync` or `run` creates it"),
        );
    }
    let newer: Vec<String> = i
        .applied
        .iter()
        .filter(|v| !i.known.contains(v))
        .map(i64::to_string)
        .collect();
    if !newer.is_empty() {
        return Check::fail(
            NAME,
            format!(
                "{at}: migrated by a newer ppsync (migration {} unknown to this one): upgrade ppsync",
                newer.join(", ")
            ),
        );
    }
    let pending = i.known.iter().filter(|v| !i.applied.contains(v)).count();
    if pending > 0 {
        return Check::pass(
            NAME,
            format!(
                "{at}: writable; {pending} migration(s) to apply, which `ppsync sync` or `run` does as it opens it"
            ),
        );
    }
    Check::pass(
        NAME,
        format!("{at}: writable, migrations current ({})", i.applied.len()),
    )
}

/// The credentials check: client id and secret, stored tokens, and one cheap API call.
pub async fn credentials(cfg: &Config, clock: Arc<dyn Clock>) -> Check {
    const NAME: &str = "credentials";
    let (cfg, store) = match crate::app::open_existing(cfg).await {
        Ok(x) => x,
        Err(e) => return Check::fail(NAME, format!("{e:#}")),
    };
    let check = credentials_on(&cfg, &store, clock).await;
    store.close().await;
    check
}

/// The credentials check on an open store (`cfg` already the firm's).
pub async fn credentials_on(cfg: &Config, store: &Store, clock: Arc<dyn Clock>) -> Check {
    const NAME: &str = "credentials";
    if let Err(e) = cfg.require_credentials() {
        return Check::fail(NAME, e.0);
    }
    match store.token_status().await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Check::fail(
                NAME,
                "none stored: run `ppsync auth login` or `ppsync auth import --refresh-token T`",
            );
        }
        Err(e) => return Check::fail(NAME, e.to_string()),
    }
    let client = match crate::app::client(cfg, store, clock.clone()).await {
        Ok(c) => c,
        Err(e) => return Check::fail(NAME, format!("{e:#}")),
    };
    // Background, and only if the budget has room within seconds: a check never waits
    // behind (or starves) a daemon's pass.
    let client = client.background_until(clock.now() + chrono::Duration::seconds(10));
    credentials_verdict(client.get("users/me", &[]).await.map(|_| ()))
}

/// The credentials check's verdict on the API's answer to one request.
pub fn credentials_verdict(answer: Result<(), crate::api::Error>) -> Check {
    use crate::api::{Class, Error};
    const NAME: &str = "credentials";
    let e = match answer {
        Ok(()) => {
            return Check::pass(
                NAME,
                "stored, and the API accepted them (GET /users/me: 1 request from the budget)",
            );
        }
        Err(e) => e,
    };
    match e.class() {
        _ if matches!(e, Error::Deferred) => Check::pass(
            NAME,
            "stored; not tried: the request budget is spent for now (a pass is running?)",
        ),
        Class::AuthDead => Check::fail(NAME, e.to_string()),
        Class::Throttled | Class::Transient | Class::Unreachable => {
            Check::fail_transient(NAME, e.to_string())
        }
        _ => Check::fail(NAME, e.to_string()),
    }
}

#[cfg(test)]
mod tests;
