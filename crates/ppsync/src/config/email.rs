//! The e-mail sink's `[notify]` keys checked: `smtp_url`, `smtp_username`, `smtp_password`,
//! `email_from`, `email_to`, `email_digest`. The URL is never repeated in an error (it could
//! carry a password).

use std::str::FromStr;

use lettre::message::Mailbox;
use secrecy::SecretString;

use super::addr::is_loopback;
use super::raw::{RawNotify, StrList};
use super::{Error, err};
use crate::notify::{EmailConfig, SmtpSecurity};
use crate::time::parse_duration;

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn mailbox(key: &str, s: &str) -> Result<Mailbox, Error> {
    Mailbox::from_str(s.trim()).map_err(|_| {
        err(format!(
            "`notify.{key}` has {s:?}, which is not an e-mail address: write it like ops@firm.example or \"Ops <ops@firm.example>\""
        ))
    })
}

/// The e-mail settings, or None when `notify.smtp_url` is not set (then no other e-mail key may be).
pub(super) fn email(n: &RawNotify) -> Result<Option<EmailConfig>, Error> {
    // Split on commas only: "Ops Desk <ops@firm.example>" holds spaces.
    let to: Vec<String> = match &n.email_to {
        None => Vec::new(),
        Some(StrList::Many(v)) => v.clone(),
        Some(StrList::One(s)) => s.split(',').map(str::to_string).collect(),
    };
    let to: Vec<String> = to.into_iter().filter(|t| !t.trim().is_empty()).collect();
    let Some(url) = set(&n.smtp_url) else {
        let others = [
            ("smtp_username", set(&n.smtp_username).is_some()),
            ("smtp_password", set(&n.smtp_password).is_some()),
            ("email_from", set(&n.email_from).is_some()),
            ("email_to", !to.is_empty()),
        ];
        if let Some((key, _)) = others.iter().find(|(_, is_set)| *is_set) {
            return Err(err(format!(
                "`notify.{key}` is set but `notify.smtp_url` is not: set it (e.g. smtp://mail.firm.example:587) or remove {key}"
            )));
        }
        return Ok(None);
    };
    const FORM: &str = "write it like smtp://mail.firm.example:587 (STARTTLS) or smtps://mail.firm.example:465 (TLS)";
    let u =
        url::Url::parse(url).map_err(|_| err(format!("`notify.smtp_url` is not a URL: {FORM}")))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(err(
            "`notify.smtp_url` carries a user or password: put them in notify.smtp_username and notify.smtp_password (or PPSYNC_NOTIFY__SMTP_PASSWORD)",
        ));
    }
    // `smtp` is no special scheme to the url crate: its host comes back as text, an address too.
    let host = match u.host_str() {
        Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']').to_string(),
        _ => {
            return Err(err(format!("`notify.smtp_url` names no host: {FORM}")));
        }
    };
    if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
        return Err(err(format!(
            "`notify.smtp_url` takes no path or query: {FORM}"
        )));
    }
    let loopback = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => is_loopback(ip),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    let (security, default_port) = match u.scheme() {
        "smtps" => (SmtpSecurity::Tls, 465),
        "smtp" if loopback => (SmtpSecurity::Loopback, 587),
        "smtp" => (SmtpSecurity::StartTls, 587),
        other => {
            return Err(err(format!(
                "`notify.smtp_url` has the scheme {other:?}: {FORM}"
            )));
        }
    };
    let username = set(&n.smtp_username).map(str::to_string);
    let password = n
        .smtp_password
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(|p| SecretString::from(p.to_string()));
    if username.is_some() != password.is_some() {
        return Err(err(
            "`notify.smtp_username` and `notify.smtp_password` go together: set both (the password may come from PPSYNC_NOTIFY__SMTP_PASSWORD) or neither",
        ));
    }
    let from = match set(&n.email_from) {
        Some(f) => mailbox("email_from", f)?,
        None => {
            return Err(err(
                "`notify.smtp_url` is set but `notify.email_from` is not: set the sender, e.g. email_from = \"ppsync@firm.example\"",
            ));
        }
    };
    if to.is_empty() {
        return Err(err(
            "`notify.smtp_url` is set but `notify.email_to` is empty: list the recipients, e.g. email_to = [\"ops@firm.example\"]",
        ));
    }
    let to = to
        .iter()
        .map(|t| mailbox("email_to", t))
        .collect::<Result<Vec<_>, _>>()?;
    let digest = match set(&n.email_digest) {
        None | Some("off") => None,
        Some(s) => Some(
            parse_duration(s)
                .filter(|d| d.as_secs() >= 60)
                .ok_or_else(|| {
                    err(format!(
                        "`notify.email_digest` = {s:?} is not an interval of a minute or more: write it like \"1h\" or \"1d\", or \"off\""
                    ))
                })?,
        ),
    };
    Ok(Some(EmailConfig {
        host,
        port: u.port().unwrap_or(default_port),
        security,
        username,
        password,
        from,
        to,
        digest,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::notify::SmtpSecurity;

    const BASE: &str = "[notify]\nemail_from = \"PPSync <ppsync@firm.example>\"\nemail_to = [\"ops@firm.example\", \"Bo <bo@firm.example>\"]\n";

    #[test]
    fn urls_choose_the_protection() {
        let e = |url: &str| {
            Config::from_toml_str(&format!("{BASE}smtp_url = {url:?}"))
                .unwrap()
                .notify
                .email
                .unwrap()
        };
        let c = e("smtp://mail.firm.example");
        assert_eq!((c.security, c.port), (SmtpSecurity::StartTls, 587));
        let c = e("smtps://mail.firm.example");
        assert_eq!((c.security, c.port), (SmtpSecurity::Tls, 465));
        let c = e("smtp://127.0.0.1:2525");
        assert_eq!((c.security, c.port), (SmtpSecurity::Loopback, 2525));
        assert_eq!(c.host, "127.0.0.1");
        let c = e("smtp://[::1]:25");
        assert_eq!(
            (c.security, c.host.as_str()),
            (SmtpSecurity::Loopback, "::1")
        );
        let c = e("smtp://10.0.0.1:25");
        assert_eq!(c.security, SmtpSecurity::StartTls);
        assert_eq!(c.to.len(), 2);
        assert_eq!(c.digest, None);
        let c = Config::from_toml_str(&format!(
            "{BASE}smtp_url = \"smtp://localhost\"\nemail_digest = \"1h\""
        ))
        .unwrap();
        let c = c.notify.email.unwrap();
        assert_eq!(c.digest, Some(std::time::Duration::from_secs(3600)));
    }

    #[test]
    fn bad_email_settings_are_named_in_one_line_without_the_password() {
        let url = "smtp_url = \"smtp://mail.firm.example\"\n";
        let cases = [
            (
                format!("{BASE}smtp_url = \"http://mail.firm.example\""),
                "scheme \"http\"",
            ),
            (
                format!("{BASE}smtp_url = \"smtp://u:hunter2@mail.firm.example\""),
                "notify.smtp_password",
            ),
            (
                format!("{BASE}smtp_url = \"smtp://mail.firm.example/x\""),
                "no path",
            ),
            (
                format!("[notify]\n{url}email_to = [\"a@firm.example\"]"),
                "notify.email_from",
            ),
            (
                format!("[notify]\n{url}email_from = \"a@firm.example\""),
                "notify.email_to",
            ),
            (
                format!("{BASE}{url}email_digest = \"soon\""),
                "notify.email_digest",
            ),
            (
                format!("{BASE}{url}email_digest = \"10s\""),
                "notify.email_digest",
            ),
            (
                format!("{BASE}{url}smtp_password = \"hunter2\""),
                "go together",
            ),
            (
                format!(
                    "[notify]\n{url}email_from = \"a@firm.example\"\nemail_to = \"ops-at-firm\""
                ),
                "ops-at-firm",
            ),
            (
                format!(
                    "[notify]\n{url}email_from = \"not an address\"\nemail_to = \"a@b.example\""
                ),
                "notify.email_from",
            ),
            (
                "[notify]\nemail_to = \"a@firm.example\"".to_string(),
                "`notify.smtp_url` is not",
            ),
            (
                format!("{BASE}{url}email_digest = \"1h\"\ncommand = \"cat\""),
                "only sink",
            ),
        ];
        for (toml, want) in cases {
            let e = Config::from_toml_str(&toml).unwrap_err().to_string();
            assert!(e.contains(want), "{toml}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
            assert!(!e.contains("hunter2"), "no password: {e}");
        }
    }
}
