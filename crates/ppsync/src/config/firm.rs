//! A registered firm's settings: a TOML fragment over the config's own keys, built from `--set`
//! pairs, checked, and shown with its secrets hidden.

use figment::Figment;
use figment::providers::{Format, Toml};

use super::raw::Raw;
use super::{Error, err, keys, one_line};

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
    raw.map_err(|e| err(format!("firm {name}: {}", keys::describe(&e))))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn the_settings_in_force_are_shown_without_their_secrets() {
        let c = super::super::Config::from_toml_str(
            "database_url = \"postgres://ppsync:dbs3cret@db.example/ppsync\"\nclient_id = \"id\"\nclient_secret = \"cls3cret\"\n[http]\ntoken = \"tks3cret\"\n[notify]\nsmtp_url = \"smtp://127.0.0.1:2525\"\nsmtp_username = \"u\"\nsmtp_password = \"pws3cret\"\nemail_from = \"a@b.example\"\nemail_to = \"c@d.example\"\n[sync]\noverlap = \"20m\"",
        )
        .unwrap();
        let shown = c.shown();
        for secret in ["dbs3cret", "cls3cret", "tks3cret", "pws3cret"] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        let t: toml::Table = shown.parse().unwrap();
        assert_eq!(
            t["database_url"].as_str(),
            Some("postgres://ppsync:(hidden)@db.example/ppsync")
        );
        assert_eq!(t["sync"]["overlap"].as_str(), Some("20m"));
        assert_eq!(t["client_id"].as_str(), Some("id"));
        assert_eq!(redact_settings(""), "");
    }
}
