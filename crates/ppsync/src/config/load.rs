//! Where a config comes from: the file, `PPSYNC_*` environment variables over it, and a
//! registered firm's credentials and settings over both.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use super::raw::Raw;
use super::{Config, DEFAULT_PATH, Error, check_firm_settings, err, keys};

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
        // filter, PPSYNC_LOG_FORMAT its form, PPSYNC_FIRM the firm (--firm), and PPSYNC_TEST_*
        // belong to the test suite.
        fig = fig.merge(
            Env::prefixed("PPSYNC_")
                .filter(|k| {
                    let k = k.as_str().to_ascii_lowercase();
                    k != "config"
                        && k != "log"
                        && k != "log_format"
                        && k != "firm"
                        && !k.starts_with("test_")
                })
                .split("__"),
        );
        let raw: Raw = fig.extract().map_err(|e| err(keys::describe(&e)))?;
        let mut cfg = Config::validate(raw, source, fig.clone())?;
        cfg.resolve_paths(&fig);
        Ok(cfg)
    }

    /// A config from TOML text alone (no file, no environment): the demo's.
    pub fn from_toml_str(toml: &str) -> Result<Config, Error> {
        let fig = Figment::new().merge(Toml::string(toml));
        let raw: Raw = fig.extract().map_err(|e| err(keys::describe(&e)))?;
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
            .map_err(|e| err(format!("firm {name}: {}", keys::describe(&e))))?;
        let mut c = Config::validate(raw, self.source.clone(), self.figment.clone())
            .map_err(|e| err(format!("firm {name}: {}", e.0)))?;
        c.firm = Some(name.to_string());
        c.notify.firm = Some(name.to_string());
        c.database_url = self.database_url.clone();
        c.database_schema = self.database_schema.clone();
        Ok(c)
    }
}
