//! Configuration: a TOML file, every key overridable by `PPSYNC_*` environment variables
//! (nested keys with `__`, e.g. `PPSYNC_SYNC__OVERLAP=30m`). Raw values are validated into a
//! [`Config`]; a bad key or value is a one-line error naming it and the fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;

use crate::resource::{self, Resource, Tier};
use crate::sync::SyncConfig;
use crate::time::parse_duration;

pub const DEFAULT_PATH: &str = "ppsync.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    database_url: Option<String>,
    database_schema: Option<String>,
    api_base_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    redirect_uri: Option<String>,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    budget: RawBudget,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    resources: std::collections::BTreeMap<String, RawResource>,
    #[serde(default)]
    notify: RawNotify,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    fleet: RawFleet,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    claim_interval: Option<String>,
    instance_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    window: Option<String>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    webhook_timeout: Option<String>,
    command: Option<String>,
    command_timeout: Option<String>,
    command_env: Option<StrList>,
    max_attempts: Option<u32>,
}

/// A list of names, as a TOML array or (handier in an environment variable) one string of names
/// separated by commas or spaces.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrList {
    Many(Vec<String>),
    One(String),
}

impl StrList {
    fn names(&self) -> Vec<String> {
        let split = |s: &str| -> Vec<String> {
            s.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        };
        match self {
            StrList::Many(v) => v.iter().flat_map(|s| split(s)).collect(),
            StrList::One(s) => split(s),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
    token: Option<String>,
    allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    overlap: Option<String>,
    max_catch_up: Option<String>,
    page_size: Option<u32>,
    commit_records: Option<u64>,
    commit_wait: Option<String>,
    initial_lookback: Option<String>,
    request_timeout: Option<String>,
    max_attempts: Option<u32>,
    max_retry_wait: Option<String>,
    max_clock_skew: Option<String>,
    confirm_deletions: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    requests: Option<u32>,
    window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    high: Option<String>,
    medium: Option<String>,
    low: Option<String>,
    reconcile_at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    enabled: Option<bool>,
    interval: Option<String>,
    details: Option<bool>,
}

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
    /// Loads `path` (if it exists, or must exist when given explicitly) merged with the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, Error> {
        let (file, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => match std::env::var_os("PPSYNC_CONFIG") {
                Some(p) => (PathBuf::from(p), true),
                None => (PathBuf::from(DEFAULT_PATH), false),
            },
        };
        let mut fig = Figment::new();
        let source = if file.exists() {
            if let Err(e) = std::fs::read_to_string(&file) {
                return Err(err(format!("cannot read {}: {e}", file.display())));
            }
            fig = fig.merge(Toml::file_exact(&file));
            Some(file)
        } else if explicit {
            return Err(err(format!(
                "{} does not exist: run `ppsync init` to write one, or fix --config / PPSYNC_CONFIG",
                file.display()
            )));
        } else {
            None
        };
        // Only the product's own variables: PPSYNC_CONFIG names the file, PPSYNC_LOG the log
        // filter, PPSYNC_FIRM the firm (--firm), and PPSYNC_TEST_* belong to the test suite.
        fig = fig.merge(
            Env::prefixed("PPSYNC_")
                .filter(|k| {
                    let k = k.as_str().to_ascii_lowercase();
                    k != "config" && k != "log" && k != "firm" && !k.starts_with("test_")
                })
                .split("__"),
        );
        let raw: Raw = fig.extract().map_err(|e| err(one_line(&e.to_string())))?;
        Config::validate(raw, source, fig)
    }

    /// A config from TOML text alone (no file, no environment): the demo's.
    pub fn from_toml_str(toml: &str) -> Result<Config, Error> {
        let fig = Figment::new().merge(Toml::string(toml));
        let raw: Raw = fig.extract().map_err(|e| err(one_line(&e.to_string())))?;
        Config::validate(raw, None, fig)
    }

    /// This config for a registered firm: its credentials and its `settings` (a TOML fragment)
    /// laid over the file and the environment.
    pub fn for_firm(
        &self,
        name: &str,
        client_id: &str,
        client_secret: &str,
        settings: &str,
    ) -> Result<Config, Error> {
        check_firm_settings(name, settings)?;
        let fig = self
            .figment
            .clone()
            .merge(Toml::string(settings))
            .merge(figment::providers::Serialized::default(
                "client_id",
                client_id,
            ))
            .merge(figment::providers::Serialized::default(
                "client_secret",
                client_secret,
            ));
        let raw: Raw = fig
            .extract()
            .map_err(|e| err(format!("firm {name}: {}", one_line(&e.to_string()))))?;
        let mut c = Config::validate(raw, self.source.clone(), self.figment.clone())
            .map_err(|e| err(format!("firm {name}: {}", e.0)))?;
        c.firm = Some(name.to_string());
        c.notify.firm = Some(name.to_string());
        c.database_url = self.database_url.clone();
        c.database_schema = self.database_schema.clone();
        Ok(c)
    }

    fn validate(raw: Raw, source: Option<PathBuf>, figment: Figment) -> Result<Config, Error> {
        let dur = |key: &str, v: &Option<String>, default: Duration| -> Result<Duration, Error> {
            match v {
                None => Ok(default),
                Some(s) => parse_duration(s).ok_or_else(|| {
                    err(format!(
                        "`{key}` = {s:?} is not a duration: write it like 30s, 15m, 1h or 7d"
                    ))
                }),
            }
        };
        let base = raw
            .api_base_url
            .unwrap_or_else(|| "https://app.practicepanther.com".into());
        let api_base_url = url::Url::parse(&base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| err(format!("`api_base_url` = {base:?} is not an http(s) URL")))?;
        let d = SyncConfig::default();
        let page_size = raw.sync.page_size.unwrap_or(d.page_size);
        if !(1..=100_000).contains(&page_size) {
            return Err(err(format!(
                "`sync.page_size` = {page_size} must be between 1 and 100000"
            )));
        }
        let commit_records = raw.sync.commit_records.unwrap_or(d.commit_records);
        if commit_records == 0 {
            return Err(err("`sync.commit_records` must be at least 1"));
        }
        let initial_lookback = match raw.sync.initial_lookback.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(_) => Some(dur(
                "sync.initial_lookback",
                &raw.sync.initial_lookback,
                Duration::ZERO,
            )?),
        };
        let mut sync = SyncConfig {
            overlap: dur("sync.overlap", &raw.sync.overlap, d.overlap)?,
            max_catch_up: dur("sync.max_catch_up", &raw.sync.max_catch_up, d.max_catch_up)?,
            page_size,
            commit_records,
            commit_wait: dur("sync.commit_wait", &raw.sync.commit_wait, d.commit_wait)?,
            initial_lookback,
            max_page_attempts: raw.sync.max_attempts.unwrap_or(d.max_page_attempts).max(1),
            max_clock_skew: dur(
                "sync.max_clock_skew",
                &raw.sync.max_clock_skew,
                d.max_clock_skew,
            )?,
            confirm_deletions: raw
                .sync
                .confirm_deletions
                .unwrap_or(d.confirm_deletions)
                .max(1),
            ..d
        };
        let budget_requests = raw.budget.requests.unwrap_or(300);
        if budget_requests == 0 {
            return Err(err("`budget.requests` must be at least 1"));
        }
        let tier_interval = |t: Tier| -> Result<Duration, Error> {
            let v = match t {
                Tier::High => &raw.schedule.high,
                Tier::Medium => &raw.schedule.medium,
                Tier::Low => &raw.schedule.low,
            };
            dur(&format!("schedule.{}", t.name()), v, t.default_interval())
        };
        for name in raw.resources.keys() {
            if resource::find(name).is_none() {
                return Err(err(format!(
                    "[resources.{name}]: {}",
                    resource::unknown(name)
                )));
            }
        }
        let mut intervals = Vec::new();
        let mut details = Vec::new();
        for res in resource::RESOURCES {
            let over = raw
                .resources
                .iter()
                .find(|(k, _)| resource::find(k) == Some(res))
                .map(|(_, v)| v);
            match over.and_then(|o| o.details) {
                Some(true) if res.by_id.is_none() => {
                    return Err(err(format!(
                        "`resources.{}.details` = true: {} has no by-id read in the API; remove the key",
                        res.name, res.name
                    )));
                }
                Some(true) => details.push(res.name),
                Some(false) => {}
                None if res.details => details.push(res.name),
                None => {}
            }
            let interval = match over {
                Some(o) if o.enabled == Some(false) => None,
                Some(o) => Some(dur(
                    &format!("resources.{}.interval", res.name),
                    &o.interval,
                    tier_interval(res.tier)?,
                )?),
                None => Some(tier_interval(res.tier)?),
            };
            intervals.push((res, interval));
        }
        sync.details = details;
        let reconcile_at = match raw.schedule.reconcile_at.as_deref().map(str::trim) {
            None => chrono::NaiveTime::from_hms_opt(3, 0, 0),
            Some("off") | Some("") => None,
            Some(t) => Some(chrono::NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| {
                err(format!("`schedule.reconcile_at` = {t:?} is not a time: write it like \"03:00\" (UTC), or \"off\""))
            })?),
        };
        let n = &raw.notify;
        let webhook_url = match n.webhook_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) => Some(
                url::Url::parse(u)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        err(format!(
                            "`notify.webhook_url` = {u:?} is not an http(s) URL"
                        ))
                    })?,
            ),
        };
        let d_notify = crate::notify::NotifyConfig::default();
        let webhook_secret = n.webhook_secret.clone().filter(|s| !s.is_empty());
        if let Some(s) = &webhook_secret {
            crate::notify::signing_key(s).map_err(err)?;
        }
        let command_env = match &n.command_env {
            None => d_notify.command_env.clone(),
            Some(list) => list.names(),
        };
        for name in &command_env {
            if name.to_ascii_uppercase().starts_with("PPSYNC_") {
                return Err(err(format!(
                    "`notify.command_env` lists {name}: ppsync's own variables (its secrets among them) are never passed to the command; remove it"
                )));
            }
            if name.contains(['=', '\0']) {
                return Err(err(format!(
                    "`notify.command_env` lists {name:?}, which is not a variable name"
                )));
            }
        }
        let max_attempts = n.max_attempts.unwrap_or(d_notify.max_attempts);
        if max_attempts == 0 {
            return Err(err("`notify.max_attempts` must be at least 1"));
        }
        let command_timeout = dur(
            "notify.command_timeout",
            &n.command_timeout,
            d_notify.command_timeout,
        )?;
        if command_timeout.is_zero() {
            return Err(err("`notify.command_timeout` must be longer than 0s"));
        }
        let notify = crate::notify::NotifyConfig {
            window: dur("notify.window", &n.window, d_notify.window)?,
            webhook_url,
            webhook_secret: webhook_secret.map(SecretString::from),
            webhook_timeout: dur(
                "notify.webhook_timeout",
                &n.webhook_timeout,
                d_notify.webhook_timeout,
            )?,
            command: n.command.clone().filter(|c| !c.trim().is_empty()),
            command_timeout,
            command_env,
            max_attempts,
            firm: None,
        };
        let http_listen = match raw.http.listen.as_deref().map(str::trim) {
            None => Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9187))),
            Some("off") | Some("") => None,
            Some(a) => Some(a.parse().map_err(|_| {
                err(format!("`http.listen` = {a:?} is not an address: write it like \"127.0.0.1:9187\", or \"off\""))
            })?),
        };
        let http_token = raw
            .http
            .token
            .filter(|t| !t.is_empty())
            .map(SecretString::from);
        // Anyone who can reach a non-loopback address could read the firm's status (names,
        // deadlines, counts): such an endpoint must ask for the token.
        if let Some(addr) = http_listen
            && !is_loopback(addr.ip())
            && http_token.is_none()
        {
            return Err(err(format!(
                "`http.listen` = \"{addr}\" is reachable from other machines but `http.token` is not set: set http.token (clients then send Authorization: Bearer <token>), or listen on 127.0.0.1"
            )));
        }
        let http_allowed_hosts = raw
            .http
            .allowed_hosts
            .unwrap_or_default()
            .iter()
            .map(|h| allowed_host(h))
            .collect::<Result<Vec<_>, _>>()?;
        sync.notify_window = notify.window;
        Ok(Config {
            reconcile_at,
            notify,
            http_listen,
            http_token,
            http_allowed_hosts,
            source,
            figment,
            firm: None,
            claim_interval: dur(
                "fleet.claim_interval",
                &raw.fleet.claim_interval,
                Duration::from_secs(10),
            )?,
            instance_name: raw
                .fleet
                .instance_name
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            database_schema: match raw.database_schema.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(s)
                    if crate::store::valid_schema(s)
                        && !s.ends_with(crate::store::SECRETS_SUFFIX) =>
                {
                    Some(s.to_string())
                }
                Some(s) => {
                    return Err(err(format!(
                        "`database_schema` = {s:?} is not a schema name: use lowercase letters, digits and _, starting with a letter, not ending in {} (the tokens' schema is named so)",
                        crate::store::SECRETS_SUFFIX
                    )));
                }
            },
            database_url: raw.database_url.unwrap_or_else(|| "ppsync.db".into()),
            api_base_url,
            client_id: raw.client_id.unwrap_or_default(),
            client_secret: SecretString::from(raw.client_secret.unwrap_or_default()),
            redirect_uri: raw
                .redirect_uri
                .unwrap_or_else(|| "http://127.0.0.1:8765/callback".into()),
            sync,
            request_timeout: dur(
                "sync.request_timeout",
                &raw.sync.request_timeout,
                Duration::from_secs(120),
            )?,
            max_attempts: raw.sync.max_attempts.unwrap_or(4).max(1),
            max_retry_wait: dur(
                "sync.max_retry_wait",
                &raw.sync.max_retry_wait,
                Duration::from_secs(300),
            )?,
            budget_requests,
            budget_window: dur(
                "budget.window",
                &raw.budget.window,
                Duration::from_secs(300),
            )?,
            intervals,
        })
    }

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

/// A firm's settings: TOML over the config's own keys, except those that cannot differ per firm.
pub fn check_firm_settings(name: &str, settings: &str) -> Result<(), Error> {
    let table: toml::Table = settings.parse().map_err(|e: toml::de::Error| {
        err(format!("firm {name}: settings: {}", one_line(e.message())))
    })?;
    for key in table.keys() {
        if matches!(
            key.as_str(),
            "database_url" | "database_schema" | "http" | "fleet" | "client_id" | "client_secret"
        ) {
            return Err(err(format!(
                "firm {name}: `{key}` cannot be set per firm (the firm's store, the instance's HTTP endpoint and its fleet settings are shared; credentials are the firm's own options)"
            )));
        }
    }
    let raw: Result<Raw, _> = Figment::new().merge(Toml::string(settings)).extract();
    raw.map_err(|e| err(format!("firm {name}: {}", one_line(&e.to_string()))))?;
    Ok(())
}

/// A firm's settings fit to show (`ppsync firm list`): the webhook's secret and command (which
/// commonly carries a credential) hidden, a webhook URL cut to its origin (Slack's and Teams' are
/// themselves the secret), any URL's password hidden, and any key that names a secret or token.
pub fn redact_settings(settings: &str) -> String {
    const HIDDEN: &str = "(hidden)";
    fn walk(table: &mut toml::Table, path: &str) {
        for (key, value) in table.iter_mut() {
            let at = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match value {
                toml::Value::Table(t) => walk(t, &at),
                toml::Value::String(s) if s.is_empty() => {}
                toml::Value::String(s) => {
                    let k = key.to_ascii_lowercase();
                    if at == "notify.command"
                        || ["secret", "token", "password"]
                            .iter()
                            .any(|w| k.contains(w))
                    {
                        *s = HIDDEN.to_string();
                    } else if let Ok(mut u) = url::Url::parse(s) {
                        if at == "notify.webhook_url" {
                            let tail = u.path() != "/" || u.query().is_some();
                            *s = format!(
                                "{}{}",
                                u.origin().ascii_serialization(),
                                if tail { "/(hidden)" } else { "" }
                            );
                        } else if u.password().is_some() {
                            let _ = u.set_password(Some(HIDDEN));
                            *s = u.to_string();
                        }
                    }
                }
                // Anything else is a number, a duration or a flag, or a list of them.
                _ => {}
            }
        }
    }
    match settings.parse::<toml::Table>() {
        Ok(mut t) => {
            walk(&mut t, "");
            t.to_string()
        }
        // Checked when the firm was added: only an edit in the database gets here.
        Err(_) => "(hidden: not TOML)".to_string(),
    }
}

/// `key.path=value` pairs as a TOML fragment (a value that is not TOML is taken as a string).
pub fn settings_from_pairs(pairs: &[String]) -> Result<String, Error> {
    let mut root = toml::Table::new();
    for pair in pairs {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            err(format!(
                "--set {pair:?}: write it as key=value, e.g. budget.requests=200 or schedule.high=30m"
            ))
        })?;
        let value = value.trim();
        let parsed: toml::Value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        let parts: Vec<&str> = key.trim().split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err(format!("--set {pair:?}: {key:?} is not a config key")));
        }
        let mut table = &mut root;
        for p in &parts[..parts.len() - 1] {
            table = table
                .entry(p.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| err(format!("--set {pair:?}: {p} is a value, not a section")))?;
        }
        table.insert(parts[parts.len() - 1].to_string(), parsed);
    }
    Ok(root.to_string())
}

/// A loopback address, IPv4-mapped ones included (`::ffff:127.0.0.1`).
pub fn is_loopback(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// An `http.allowed_hosts` entry: a host name or an IP address, without scheme or port;
/// lowercased, and without a trailing dot (`status.example.` is `status.example`).
fn allowed_host(entry: &str) -> Result<String, Error> {
    let h = entry.trim().trim_end_matches('.').to_ascii_lowercase();
    let ip = h.trim_start_matches('[').trim_end_matches(']');
    let name_ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ip.parse::<std::net::IpAddr>().is_ok() {
        return Ok(ip.to_string());
    }
    if !name_ok {
        return Err(err(format!(
            "`http.allowed_hosts` entry {entry:?} is not a host name: write names only, without scheme, port or wildcard, e.g. [\"status.example.com\"]"
        )));
    }
    Ok(h)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The annotated file `ppsync init` writes.
pub const TEMPLATE: &str = r#"# ppsync configuration. Every key can be overridden by an environment variable:
# PPSYNC_<KEY> for top-level keys (PPSYNC_DATABASE_URL), PPSYNC_<SECTION>__<KEY> for the others
# (PPSYNC_SYNC__OVERLAP=30m). Durations are written 30s, 15m, 1h or 7d.

# Where the mirror lives: a SQLite file path (or sqlite: URL), or postgres://user:pass@host/db.
# It holds the OAuth tokens too (a SQLite file is kept readable by its owner only).
database_url = "ppsync.db"
# PostgreSQL only: the schema of the default firm's tables (registered firms get a schema each,
# named after the firm).
database_schema = "public"

# The PracticePanther API. Credentials come from PracticePanther's API access request; prefer
# PPSYNC_CLIENT_ID / PPSYNC_CLIENT_SECRET over writing the secret here.
api_base_url = "https://app.practicepanther.com"
client_id = ""
client_secret = ""
# Where `ppsync auth login` listens for the authorization redirect (register it with PracticePanther).
redirect_uri = "http://127.0.0.1:8765/callback"

[sync]
# Every incremental query reaches back this far before the cursor, to catch late or skewed writes.
overlap = "15m"
# A cursor older than this (after downtime) re-lists the resource fully instead of catching up.
max_catch_up = "7d"
# Records per request ($top). 2500 is the largest page the API is known to serve (invoices); an
# endpoint proven to cap its responses lower gets pages of its cap (`ppsync probe` shows them).
page_size = 2500
# Pages commit one by one, except when the next page's answer arrives within `commit_wait` of a
# page being written (a fast server, a backfill): then it joins the same transaction, up to
# `commit_records` records, which spares SQLite rewriting its id index at every page. "0s":
# every page commits alone.
commit_records = 25000
commit_wait = "50ms"
# First run: full backfill (empty) or only this far back, e.g. "24h".
initial_lookback = ""
request_timeout = "120s"
# Tries of a request that fails transiently (5xx, network, cut-off body) before skipping the
# resource for this pass.
max_attempts = 4
# The longest Retry-After ppsync waits out; a longer one ends the pass, and the next starts after it.
max_retry_wait = "5m"
# A server `Date` further ahead of this machine's clock than this is not trusted as a cursor (our
# clock stands in, and the skew is shown by `ppsync status`).
max_clock_skew = "15m"
# Records a complete listing misses are confirmed gone by GET /{resource}/{id} (404) before they
# are marked deleted: every one up to this many, a sample of this many beyond.
confirm_deletions = 25

[budget]
# At most this many requests (token calls and retries included) in any sliding window.
requests = 300
window = "5m"

[schedule]
# How often each tier is polled by `ppsync run`.
high = "15m"    # matters, accounts, contacts, tasks
medium = "1h"   # notes, emails, events, call logs
low = "1d"      # billing, users, reference data, files, messages, tags
# The daily reconciliation (complete listings: repairs, and marks vanished records deleted), UTC.
reconcile_at = "03:00"

[notify]
# New tasks, and open tasks and events coming due within this window, are notified, at least
# once (receivers deduplicate by the stable id), on a task of their own: a slow or failing sink
# never delays syncing.
window = "30d"
# A webhook gets each notification as a JSON POST with the Standard Webhooks headers
# (standardwebhooks.com): `webhook-id` (the stable id), `webhook-timestamp` (unix seconds) and,
# with a secret, `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
# Receivers reject timestamps older than a few minutes (replays). A secret written whsec_<base64>
# is decoded first, as the standard says; any other is used as it is. 2xx means delivered.
webhook_url = ""
webhook_secret = ""
webhook_timeout = "10s"
# A command gets each notification as one line of JSON on stdin (run with sh -c, in a process
# group of its own); exit 0 means delivered. After `command_timeout` it is killed, with whatever
# it started, and the try counts as failed.
command = ""
command_timeout = "30s"
# The only environment variables the command gets from ppsync's (none named PPSYNC_*: those hold
# ppsync's secrets). Payloads carry everything else it needs.
command_env = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"]
# A failed notification is tried again after 30s, doubling up to 2h; after this many failed tries
# (10: about 4 hours) it is set aside as `dead`, without holding up the others. `ppsync status`
# lists dead ones; `ppsync notify retry ID... | --all` sends them again. Tries made while the sink
# looks down (3 different notifications failing in a row) do not count.
max_attempts = 10

[http]
# `ppsync run` serves /healthz, /metrics (Prometheus), /status (JSON) and a status page here.
listen = "127.0.0.1:9187"
# If set, requests must carry `Authorization: Bearer <token>`. Required when `listen` is not a
# loopback address (0.0.0.0, a LAN address): ppsync refuses to start without it.
token = ""
# The endpoint answers only requests whose Host is a loopback name or address (localhost,
# 127.0.0.1, [::1]) or its own listen address, so a web page whose name resolves to this
# machine (DNS rebinding) gets nothing from it (421). Names it is reached by, e.g. behind a
# reverse proxy or scraped by a DNS name: ["status.example.com"].
allowed_hosts = []

[fleet]
# `ppsync run` with firms registered (`ppsync firm add`): how often an instance looks for firms to
# take over (a dead instance's) or hand back (when another instance starts).
claim_interval = "10s"
# This instance's name in the run history and in pg_stat_activity (default: <host>-<pid>).
instance_name = ""

# Per-resource overrides, by table name:
# [resources.tasks]
# interval = "5m"
# [resources.messages]
# enabled = false
# Emails and payments: the list leaves out fields that only the by-id read returns (an email's
# body_html, a payment's refundedAmount), so new and changed records are also read by id, in the
# background on a fifth-less share of the budget (scheduled work first). false: the list's fields only.
# [resources.emails]
# details = true
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(s: &str) -> Result<Config, Error> {
        Config::from_toml_str(s)
    }

    #[test]
    fn the_template_is_valid_and_gives_the_defaults() {
        let c = from_toml(TEMPLATE).unwrap();
        assert_eq!(c.sync.overlap, Duration::from_secs(900));
        assert_eq!(c.budget_requests, 300);
        assert_eq!(c.enabled_resources().len(), resource::RESOURCES.len());
        let d = crate::notify::NotifyConfig::default();
        assert_eq!(c.notify.command_env, d.command_env);
        assert_eq!(c.notify.command_timeout, d.command_timeout);
        assert_eq!(c.notify.max_attempts, d.max_attempts);
    }

    #[test]
    fn command_env_takes_a_list_or_a_string() {
        let c = from_toml("[notify]\ncommand_env = \"PATH, TZ MY_VAR\"").unwrap();
        assert_eq!(c.notify.command_env, ["PATH", "TZ", "MY_VAR"]);
        let c = from_toml("[notify]\ncommand_env = []").unwrap();
        assert!(c.notify.command_env.is_empty());
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let cases = [
            ("databse_url = \"x\"", "databse_url"),
            ("[sync]\noverlap = \"fifteen\"", "sync.overlap"),
            ("api_base_url = \"ftp://x\"", "api_base_url"),
            ("[sync]\npage_size = 0", "sync.page_size"),
            ("[sync]\ncommit_records = 0", "sync.commit_records"),
            (
                "[resources.widgets]\nenabled = false",
                "unknown resource `widgets`",
            ),
            ("[budget]\nrequests = \"many\"", "requests"),
            (
                "[notify]\ncommand_env = [\"PATH\", \"PPSYNC_CLIENT_SECRET\"]",
                "notify.command_env",
            ),
            (
                "[notify]\ncommand_env = \"PATH,ppsync_database_url\"",
                "ppsync_database_url",
            ),
            ("[notify]\nwebhook_secret = \"whsec_!!\"", "whsec_"),
            ("[notify]\nmax_attempts = 0", "notify.max_attempts"),
            (
                "[notify]\ncommand_timeout = \"0s\"",
                "notify.command_timeout",
            ),
            (
                "[http]\nlisten = \"0.0.0.0:9187\"",
                "`http.token` is not set",
            ),
            (
                "[http]\nallowed_hosts = [\"http://status.example\"]",
                "http.allowed_hosts",
            ),
            ("[http]\nallowed_hosts = [\"status.example:80\"]", "without"),
            ("[http]\nallowed_hosts = [\"*.example\"]", "wildcard"),
            (
                "[http]\nallowed_hosts = \"status.example\"",
                "allowed_hosts",
            ),
            ("database_schema = \"acme_secrets\"", "_secrets"),
            ("database_schema = \"Acme\"", "database_schema"),
        ];
        for (toml, want) in cases {
            let e = from_toml(toml).unwrap_err().to_string();
            assert!(e.contains(want), "{toml}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn a_status_endpoint_off_loopback_needs_a_token() {
        for listen in [
            "0.0.0.0:9187",
            "[::]:9187",
            "192.168.1.5:9187",
            "[fe80::1]:9187",
        ] {
            let e = from_toml(&format!("[http]\nlisten = \"{listen}\""))
                .unwrap_err()
                .to_string();
            assert!(e.contains("http.listen") && e.contains("http.token"), "{e}");
            let c = from_toml(&format!("[http]\nlisten = \"{listen}\"\ntoken = \"t0k\"")).unwrap();
            assert_eq!(c.http_listen.unwrap().to_string(), listen);
        }
        for listen in [
            "127.0.0.1:9187",
            "127.0.0.2:1",
            "[::1]:9187",
            "[::ffff:127.0.0.1]:9187",
            "off",
        ] {
            from_toml(&format!("[http]\nlisten = \"{listen}\""))
                .unwrap_or_else(|e| panic!("{listen}: {e}"));
        }
        // An empty token is no token.
        assert!(from_toml("[http]\nlisten = \"0.0.0.0:9187\"\ntoken = \"\"").is_err());
    }

    #[test]
    fn allowed_hosts_are_normalised() {
        let c = from_toml(
            "[http]\nallowed_hosts = [\"Status.Example.COM.\", \"[::1]\", \"10.0.0.7\", \"xn--bcher-kva.example\"]",
        )
        .unwrap();
        assert_eq!(
            c.http_allowed_hosts,
            [
                "status.example.com",
                "::1",
                "10.0.0.7",
                "xn--bcher-kva.example"
            ]
        );
        assert!(from_toml(TEMPLATE).unwrap().http_allowed_hosts.is_empty());
    }

    #[test]
    fn settings_are_shown_without_their_secrets() {
        let settings = settings_from_pairs(&[
            "budget.requests=250".into(),
            "notify.webhook_secret=whs3cret".into(),
            "notify.webhook_url=https://hooks.example.com/services/T0/B0/hookpath?k=qs3cret".into(),
            "notify.command=curl -H 'Authorization: Bearer cmds3cret' https://x".into(),
            "api_base_url=https://user:urls3cret@api.example.com/".into(),
            "notify.window=7d".into(),
        ])
        .unwrap();
        let shown = redact_settings(&settings);
        for secret in ["whs3cret", "hookpath", "qs3cret", "cmds3cret", "urls3cret"] {
            assert!(settings.contains(secret), "{settings}");
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        let t: toml::Table = shown.parse().unwrap();
        assert_eq!(t["budget"]["requests"].as_integer(), Some(250));
        assert_eq!(t["notify"]["window"].as_str(), Some("7d"));
        assert_eq!(t["notify"]["webhook_secret"].as_str(), Some("(hidden)"));
        assert_eq!(t["notify"]["command"].as_str(), Some("(hidden)"));
        assert_eq!(
            t["notify"]["webhook_url"].as_str(),
            Some("https://hooks.example.com/(hidden)")
        );
        assert_eq!(
            t["api_base_url"].as_str(),
            Some("https://user:(hidden)@api.example.com/")
        );
        assert_eq!(redact_settings("a = ["), "(hidden: not TOML)");
        assert_eq!(redact_settings(""), "");
    }

    #[test]
    fn resource_overrides() {
        let c = from_toml(
            "[resources.messages]\nenabled = false\n[resources.tasks]\ninterval = \"5m\"",
        )
        .unwrap();
        assert!(!c.enabled_resources().iter().any(|r| r.name == "messages"));
        let tasks = c
            .intervals
            .iter()
            .find(|(r, _)| r.name == "tasks")
            .unwrap()
            .1;
        assert_eq!(tasks, Some(Duration::from_secs(300)));
    }
}
