//! The tap's `--config`: Singer hands a tap a JSON object (Meltano writes one from the plugin's
//! settings); ppsync's own configuration is a TOML file. The tap takes either: a JSON object
//! naming the TOML file (`ppsync_config`) and the tap's own settings, or the TOML file itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// By default, records written in the last minute wait for the next run (see `state.rs`).
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(60);

/// What the tap's `--config` says.
#[derive(Debug, PartialEq, Eq)]
pub struct TapConfig {
    /// ppsync's TOML configuration (None: `$PPSYNC_CONFIG` or ./ppsync.toml).
    pub ppsync_config: Option<PathBuf>,
    /// A registered firm instead of the default one.
    pub firm: Option<String>,
    pub settle: Duration,
}

const KEYS: &str = "ppsync_config, firm, settle_seconds";

impl TapConfig {
    /// Reads `--config`: a file whose text starts with `{` is the tap's JSON (a TOML file cannot
    /// start so); any other is ppsync's TOML configuration.
    pub fn resolve(path: Option<&Path>) -> anyhow::Result<TapConfig> {
        let toml = |p: Option<&Path>| TapConfig {
            ppsync_config: p.map(Path::to_path_buf),
            firm: None,
            settle: DEFAULT_SETTLE,
        };
        let Some(path) = path else {
            return Ok(toml(None));
        };
        // A missing or unreadable file is left to ppsync's config loader to name.
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim_start().starts_with('{') => {
                Self::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
            _ => Ok(toml(Some(path))),
        }
    }

    fn from_json(text: &str) -> Result<TapConfig, String> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| format!("the tap's JSON config does not parse ({e}): fix the file"))?;
        let Value::Object(m) = v else {
            return Err("the tap's config is not a JSON object".into());
        };
        let mut cfg = TapConfig {
            ppsync_config: None,
            firm: None,
            settle: DEFAULT_SETTLE,
        };
        for (k, v) in &m {
            let text = || match v {
                Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                _ => Err(format!(
                    "`{k}` in the tap's config must be a non-empty string"
                )),
            };
            match k.as_str() {
                "ppsync_config" => cfg.ppsync_config = Some(PathBuf::from(text()?)),
                "firm" => cfg.firm = Some(text()?),
                "settle_seconds" => {
                    // Up to a day: a larger settle would hold every record back for longer.
                    let secs = v.as_u64().filter(|s| *s <= 86_400).ok_or_else(|| {
                        format!("`settle_seconds` in the tap's config must be a whole number of seconds from 0 to 86400, not {v}")
                    })?;
                    cfg.settle = Duration::from_secs(secs);
                }
                other => {
                    return Err(format!(
                        "unknown key `{other}` in the tap's config: use {KEYS}"
                    ));
                }
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tap_config_is_json_naming_the_toml_or_the_toml_itself() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("tap.json");
        std::fs::write(
            &json,
            r#" {"ppsync_config": "/etc/ppsync.toml", "firm": "smith", "settle_seconds": 5}"#,
        )
        .unwrap();
        assert_eq!(
            TapConfig::resolve(Some(&json)).unwrap(),
            TapConfig {
                ppsync_config: Some("/etc/ppsync.toml".into()),
                firm: Some("smith".into()),
                settle: Duration::from_secs(5),
            }
        );
        std::fs::write(&json, "{}").unwrap();
        let empty = TapConfig::resolve(Some(&json)).unwrap();
        assert_eq!((empty.ppsync_config, empty.settle), (None, DEFAULT_SETTLE));

        let toml = dir.path().join("ppsync.toml");
        std::fs::write(&toml, "database_url = \"m.db\"\n").unwrap();
        assert_eq!(
            TapConfig::resolve(Some(&toml)).unwrap().ppsync_config,
            Some(toml.clone())
        );
        assert_eq!(TapConfig::resolve(None).unwrap().ppsync_config, None);

        for (text, says) in [
            (r#"{"database": "x"}"#, "unknown key `database`"),
            (r#"{"settle_seconds": -1}"#, "settle_seconds"),
            (r#"{"settle_seconds": 90000}"#, "settle_seconds"),
            (r#"{"ppsync_config": 3}"#, "`ppsync_config`"),
            (r#"{"ppsync_config": "#, "does not parse"),
        ] {
            std::fs::write(&json, text).unwrap();
            let e = TapConfig::resolve(Some(&json)).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("tap.json"), "{text}: {e}");
        }
    }
}
