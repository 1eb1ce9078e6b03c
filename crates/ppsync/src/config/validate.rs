//! Raw values checked and turned into a [`Config`], defaults filled in: a bad key or value is a
//! one-line error naming it and the fix.

use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use secrecy::SecretString;

use super::addr::is_loopback;
use super::raw::Raw;
use super::{Config, Error, err};
use crate::resource::{self, Tier};
use crate::sync::SyncConfig;
use crate::time::parse_duration;

impl Config {
    pub(super) fn validate(
        raw: Raw,
        source: Option<PathBuf>,
        figment: Figment,
    ) -> Result<Config, Error> {
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
        let email = super::email::email(n)?;
        if email.as_ref().is_some_and(|e| e.digest.is_some())
            && (webhook_url.is_some() || n.command.as_deref().is_some_and(|c| !c.trim().is_empty()))
        {
            // A row has one delivery state: it cannot wait for a digest and be sent at once.
            return Err(err(
                "`notify.email_digest` works only with e-mail as the only sink: unset notify.webhook_url and notify.command, or set email_digest = \"off\"",
            ));
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
            email,
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
        sync.deadlines = super::deadlines::sources(raw.time_zone.as_deref(), &raw.deadlines)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TEMPLATE;

    fn from_toml(s: &str) -> Result<Config, Error> {
        Config::from_toml_str(s)
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
