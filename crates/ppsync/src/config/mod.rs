//! Configuration: a TOML file, every key overridable by `PPSYNC_*` environment variables
//! (nested keys with `__`, e.g. `PPSYNC_SYNC__OVERLAP=30m`). Raw values are validated into a
//! [`Config`]; a bad key or value is a one-line error naming it and the fix.
//!
//! Here: the validated `Config` and its error. `raw`: the keys as written; `load`: the layers
//! (file, environment, a firm's settings); `validate`: raw values checked into a `Config`;
//! `firm`: a registered firm's settings; `template`: the file `ppsync init` writes; `keys`: an
//! unknown key named with the nearest known one; `paths`: relative paths beside the file.

use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use secrecy::SecretString;

use crate::resource::Resource;
use crate::sync::SyncConfig;

pub const DEFAULT_PATH: &str = "ppsync.toml";

mod addr;
mod deadlines;
mod email;
mod firm;
mod keys;
mod load;
mod paths;
mod raw;
mod template;
mod validate;

pub use addr::is_loopback;
pub use firm::{check_firm_settings, redact_settings, settings_from_pairs};
pub use template::TEMPLATE;

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub source: Option<PathBuf>,
    pub database_url: String,
    /// PostgreSQL: the schema of the default firm's tables (default `public`).
    pub database_schema: Option<String>,
    /// The registered firm this config is for (None: the default firm of `database_url`).
    pub firm: Option<String>,
    /// `ppsync run` with many firms: how often an instance looks for firms to take or hand over.
    pub claim_interval: Duration,
    /// This instance's name in the cycle history and in PostgreSQL's activity view.
    pub instance_name: Option<String>,
    /// The layers this config was built from, so a firm's settings can be laid over them.
    figment: Figment,
    pub api_base_url: url::Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: String,
    pub sync: SyncConfig,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub max_retry_wait: Duration,
    pub budget_requests: u32,
    pub budget_window: Duration,
    /// Per-resource interval (None: disabled).
    pub intervals: Vec<(&'static Resource, Option<Duration>)>,
    /// Daily reconciliation time, UTC (None: off).
    pub reconcile_at: Option<chrono::NaiveTime>,
    pub notify: crate::notify::NotifyConfig,
    /// Where `ppsync run` serves /healthz, /metrics, /status and the status page (None: off).
    pub http_listen: Option<std::net::SocketAddr>,
    pub http_token: Option<SecretString>,
    /// Host names the endpoint answers besides loopback ones and its own address (lowercase).
    pub http_allowed_hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("config: {0}")]
pub struct Error(pub String);

fn err(msg: impl Into<String>) -> Error {
    Error(msg.into())
}

impl Config {
    /// The daemon's schedule and settings.
    pub fn daemon(&self) -> crate::daemon::DaemonConfig {
        crate::daemon::DaemonConfig {
            schedule: self
                .intervals
                .iter()
                .filter_map(|(r, i)| i.map(|i| (*r, i)))
                .collect(),
            reconcile_at: self.reconcile_at,
            notify: self.notify.clone(),
            stop_at: None,
        }
    }

    /// The resources enabled in this config, in sync order.
    pub fn enabled_resources(&self) -> Vec<&'static Resource> {
        self.intervals
            .iter()
            .filter(|(_, i)| i.is_some())
            .map(|(r, _)| *r)
            .collect()
    }

    /// The settings in force as TOML, for people (`ppsync check`): the keys the file and the
    /// environment set (defaults are the template's), `database_url` as resolved, and every
    /// secret hidden as `ppsync firm list` hides a firm's (keys naming a secret, token or
    /// password, the notify command, the webhook URL's path, a URL's password).
    pub fn shown(&self) -> String {
        let mut t: toml::Table = self.figment.extract().unwrap_or_default();
        t.insert(
            "database_url".into(),
            toml::Value::String(self.database_url.clone()),
        );
        redact_settings(&t.to_string())
    }

    /// Client id and secret must be set for anything that talks to the API.
    pub fn require_credentials(&self) -> Result<(), Error> {
        use secrecy::ExposeSecret;
        if self.client_id.trim().is_empty() || self.client_secret.expose_secret().trim().is_empty()
        {
            return Err(err(
                "`client_id` and `client_secret` are not set: put them in ppsync.toml or PPSYNC_CLIENT_ID / PPSYNC_CLIENT_SECRET",
            ));
        }
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
