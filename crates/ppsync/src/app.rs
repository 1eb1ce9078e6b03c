//! Wiring: a validated config (and a clock) become a store, a budget, a client and an engine.

use std::sync::Arc;

use anyhow::Context as _;

use crate::api::{Budget, Client, ClientConfig};
use crate::config::Config;
use crate::store::{OpenMode, Store};
use crate::sync::Engine;
use crate::time::Clock;

/// Opens the home store: the one `database_url` names (it holds the default firm's mirror and the
/// firm registry). Exit 2 when it cannot be opened.
pub async fn open_home(cfg: &Config) -> anyhow::Result<Store> {
    open_home_with(cfg, OpenMode::Create).await
}

/// The home store, created only in [`OpenMode::Create`].
pub async fn open_home_with(cfg: &Config, mode: OpenMode) -> anyhow::Result<Store> {
    Ok(Store::open_with(&cfg.database_url, cfg.database_schema.as_deref(), mode).await?)
}

/// The config and store of the firm `cfg` names: the default firm, or with `cfg.firm` a registered
/// firm (its credentials and settings laid over the config, its own store).
pub async fn open(cfg: &Config) -> anyhow::Result<(Config, Store)> {
    open_with(cfg, OpenMode::Create).await
}

/// As [`open`], for a command that only reads: a missing mirror is an error, nothing is created.
pub async fn open_existing(cfg: &Config) -> anyhow::Result<(Config, Store)> {
    open_with(cfg, OpenMode::Existing).await
}

async fn open_with(cfg: &Config, mode: OpenMode) -> anyhow::Result<(Config, Store)> {
    let home = open_home_with(cfg, mode).await?;
    match cfg.firm.as_deref() {
        None => Ok((cfg.clone(), home)),
        Some(name) => open_firm_with(cfg, &home, name, mode).await,
    }
}

/// A registered firm's config and store, beside `home`.
pub async fn open_firm(cfg: &Config, home: &Store, name: &str) -> anyhow::Result<(Config, Store)> {
    open_firm_with(cfg, home, name, OpenMode::Create).await
}

async fn open_firm_with(
    cfg: &Config,
    home: &Store,
    name: &str,
    mode: OpenMode,
) -> anyhow::Result<(Config, Store)> {
    use secrecy::ExposeSecret;
    let firms = home.firms().await?;
    let Some(row) = firms.iter().find(|f| f.name == name) else {
        let known: Vec<&str> = firms.iter().map(|f| f.name.as_str()).collect();
        anyhow::bail!(
            "firm `{name}` is not registered (registered: {}): add it with `ppsync firm add {name} --client-id ID --client-secret SECRET`",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let firm_cfg = cfg.for_firm(
        name,
        &row.client_id,
        row.client_secret.expose_secret(),
        &row.settings,
    )?;
    let store = home.firm_with(name, mode).await?;
    Ok((firm_cfg, store))
}

/// The API client over a store's token table, its budget shared through the store's request
/// ledger with every other process of the firm.
pub async fn client(cfg: &Config, store: &Store, clock: Arc<dyn Clock>) -> anyhow::Result<Client> {
    let budget = Arc::new(Budget::new(
        cfg.budget_requests,
        cfg.budget_window,
        clock.clone(),
    ));
    match store
        .request_ledger(cfg.budget_window, cfg.request_timeout)
        .await?
    {
        Some(ledger) => budget.share(crate::store::shared_ledger(ledger)),
        None => {
            // No ledger (an in-memory mirror): what finished passes spent in the window counts.
            let window = chrono::Duration::from_std(cfg.budget_window).unwrap_or_default();
            let spent = store.requests_since(clock.now() - window).await?;
            budget.prime(&spent).await;
        }
    }
    Client::new(
        ClientConfig {
            base_url: cfg.api_base_url.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            timeout: cfg.request_timeout,
            max_attempts: cfg.max_attempts,
            max_retry_wait: cfg.max_retry_wait,
            min_backoff: std::time::Duration::from_millis(500),
        },
        budget,
        clock,
        Arc::new(store.clone()),
    )
    .context("building the HTTP client")
}

/// A ready engine for the firm `cfg` names.
pub async fn engine(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Engine> {
    if cfg.firm.is_none() {
        // Before the database is touched (a registered firm's credentials are in the registry).
        cfg.require_credentials()?;
    }
    let (cfg, store) = open(cfg).await?;
    engine_on(&cfg, store, clock).await
}

/// An engine over an open store (`cfg` already the firm's).
pub async fn engine_on(
    cfg: &Config,
    store: Store,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Engine> {
    cfg.require_credentials()?;
    // What this firm spends or spent in the current window in other processes (a restart, the
    // CLI beside the daemon, another instance before a hand-over) counts against the budget too.
    let client = client(cfg, &store, clock.clone()).await?;
    let engine = Engine {
        client,
        store,
        clock,
        cfg: cfg.sync.clone(),
        progress: None,
        shutdown: Default::default(),
        instance: None,
    };
    start_at_learned_rate(&engine).await?;
    Ok(engine)
}

/// A server that throttled without `Retry-After` taught a lower rate: start there. A day after
/// it was learned the rate is raised again by a quarter (towards the configured limit), so one
/// bad afternoon does not slow the firm down for good; a server still that strict teaches it
/// again with its next 429.
async fn start_at_learned_rate(engine: &Engine) -> anyhow::Result<()> {
    let mut facts = engine.api_facts().await?;
    let Some(rate) = facts.rate_limit.as_mut() else {
        return Ok(());
    };
    let now = engine.clock.now();
    let configured = engine.client.budget().limit() as u32;
    if now - rate.at > chrono::Duration::days(1) && rate.value < configured {
        rate.value = (rate.value + rate.value.div_ceil(4)).min(configured);
        rate.how = format!("{}; raised a quarter after a day", rate.how);
        rate.at = now;
        let json = serde_json::to_string(&facts)?;
        engine
            .store
            .set_dialect(crate::sync::dialect::API, &json, now)
            .await?;
    }
    if let Some(rate) = &facts.rate_limit {
        engine.client.budget().start_at(rate.value);
    }
    Ok(())
}
