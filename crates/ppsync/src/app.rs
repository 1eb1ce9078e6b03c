//! Wiring: a validated config (and a clock) become a store, a budget, a client and an engine.

use std::sync::Arc;

use anyhow::Context as _;

use crate::api::{Budget, Client, ClientConfig};
use crate::config::Config;
use crate::store::Store;
use crate::sync::Engine;
use crate::time::Clock;

/// Opens the store (exit 2 when it cannot be opened).
pub async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    Ok(Store::open(&cfg.database_url).await?)
}

/// The API client over a store's token table.
pub fn client(cfg: &Config, store: &Store, clock: Arc<dyn Clock>) -> anyhow::Result<Client> {
    let budget = Arc::new(Budget::new(
        cfg.budget_requests,
        cfg.budget_window,
        clock.clone(),
    ));
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

/// A ready engine.
pub async fn engine(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Engine> {
    cfg.require_credentials()?;
    let store = open_store(cfg).await?;
    let client = client(cfg, &store, clock.clone())?;
    Ok(Engine {
        client,
        store,
        clock,
        cfg: cfg.sync.clone(),
        progress: None,
        shutdown: Default::default(),
        instance: None,
    })
}
