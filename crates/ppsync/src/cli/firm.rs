//! `ppsync firm add | list | remove`: the firm registry, and the `--firm` every command takes.

use std::path::PathBuf;

use anyhow::bail;

use super::FirmCommand;
use crate::app;
use crate::config::{self, Config};

pub(super) async fn firm_command(cfg: Config, cmd: FirmCommand) -> anyhow::Result<i32> {
    use secrecy::ExposeSecret;
    // Only registering a firm may create the database; listing or removing needs one there.
    let mode = match cmd {
        FirmCommand::Add { .. } => crate::store::OpenMode::Create,
        _ => crate::store::OpenMode::Existing,
    };
    let home = app::open_home_with(&cfg, mode).await?;
    match cmd {
        FirmCommand::Add {
            name,
            client_id,
            client_secret,
            settings,
        } => {
            check_firm_name(&name)?;
            if client_id.trim().is_empty() || client_secret.trim().is_empty() {
                bail!(
                    "--client-id and --client-secret must not be empty: they are the firm's PracticePanther API credentials"
                );
            }
            let settings = config::settings_from_pairs(&settings)?;
            // Refused here, not at the first sync: a bad key or value in the firm's settings.
            cfg.for_firm(&name, &client_id, &client_secret, &settings)?;
            let row = crate::store::FirmRow {
                name: name.clone(),
                client_id,
                client_secret: client_secret.into(),
                settings,
                created_at: String::new(),
            };
            if !home.add_firm(&row, chrono::Utc::now()).await? {
                bail!(
                    "firm `{name}` is already registered: `ppsync firm remove {name}` first to register it anew"
                );
            }
            let store = home.firm(&name).await?;
            outln!(
                "registered firm {name} (mirror: {}); next: ppsync --firm {name} auth login (or auth import --refresh-token T)",
                store.location()
            );
            Ok(0)
        }
        FirmCommand::List { json } => {
            let mut out = Vec::new();
            for f in home.firms().await? {
                let store = home.firm(&f.name).await?;
                let tokens = store.token_status().await?;
                let last = store.cycles_last().await?;
                out.push(serde_json::json!({
                    "name": f.name,
                    "client_id": f.client_id,
                    "client_secret_set": !f.client_secret.expose_secret().is_empty(),
                    "settings": config::redact_settings(&f.settings),
                    "registered_at": f.created_at,
                    "mirror": store.location(),
                    "credentials_stored": tokens.is_some(),
                    "last_cycle": last.map(|c| serde_json::json!({
                        "started_at": c.started_at, "finished_at": c.finished_at,
                        "outcome": c.outcome, "instance": c.instance, "requests": c.requests,
                    })),
                }));
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&out)?);
            } else if out.is_empty() {
                outln!(
                    "no firms registered: `ppsync firm add NAME --client-id ID --client-secret SECRET`"
                );
            } else {
                outln!(
                    "{:<20} {:<24} {:<12} {:<28} instance",
                    "firm",
                    "client_id",
                    "credentials",
                    "last cycle"
                );
                for f in &out {
                    let last = &f["last_cycle"];
                    outln!(
                        "{:<20} {:<24} {:<12} {:<28} {}",
                        f["name"].as_str().unwrap_or(""),
                        f["client_id"].as_str().unwrap_or(""),
                        if f["credentials_stored"] == true {
                            "stored"
                        } else {
                            "none"
                        },
                        format!(
                            "{} {}",
                            last["finished_at"]
                                .as_str()
                                .map(|s| s.get(..19).unwrap_or(s))
                                .unwrap_or("never"),
                            last["outcome"].as_str().unwrap_or("")
                        ),
                        last["instance"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(0)
        }
        FirmCommand::Remove { name } => {
            check_firm_name(&name)?;
            if !home.remove_firm(&name).await? {
                bail!(
                    "firm `{name}` is not registered: `ppsync firm list` shows the registered ones"
                );
            }
            outln!(
                "unregistered firm {name}; its mirror is kept ({}): drop it yourself when no longer needed",
                match home.backend() {
                    crate::store::Backend::Postgres => format!("schema {name}"),
                    crate::store::Backend::Sqlite => "its SQLite file".to_string(),
                }
            );
            Ok(0)
        }
    }
}

/// The config, for the firm `--firm` names.
pub(super) fn load((config, firm): &(Option<PathBuf>, Option<String>)) -> anyhow::Result<Config> {
    let mut cfg = Config::load(config.as_deref())?;
    if let Some(name) = firm {
        check_firm_name(name)?;
        cfg.firm = Some(name.clone());
    }
    Ok(cfg)
}

fn check_firm_name(name: &str) -> anyhow::Result<()> {
    if !crate::store::valid_schema(name)
        || name == "public"
        || name.ends_with(crate::store::SECRETS_SUFFIX)
    {
        bail!(
            "firm name {name:?} is not allowed: use up to 40 lowercase letters, digits and _, starting with a letter (not public, pg_*, or ending in {})",
            crate::store::SECRETS_SUFFIX
        );
    }
    Ok(())
}
