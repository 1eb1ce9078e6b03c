//! `ppsync run`: one firm's daemon, or the fleet when firms are registered; both started the same
//! way (`stop_on_signal`: shutdown on SIGTERM or Ctrl-C; `serve_status`: the status endpoint on
//! `http.listen`).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::Config;
use crate::store::Store;
use crate::time::{Clock, SystemClock};

pub(super) async fn daemon(cfg: Config) -> anyhow::Result<i32> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let home = app::open_home(&cfg).await?;
    let fleet_mode = cfg.firm.is_some() || !home.firms().await?.is_empty();
    // One daemon per mirror: a SQLite file (one instance serves all its firms), or PostgreSQL's
    // default firm (registered firms are claimed by the fleet's own locks).
    let _lock = if home.backend() == crate::store::Backend::Sqlite || !fleet_mode {
        Some(home.lock_runs().await?)
    } else {
        None
    };
    // Signals are heard from here on: a SIGTERM during the checks ends the start cleanly.
    let shutdown = CancellationToken::new();
    stop_on_signal(
        &shutdown,
        if fleet_mode {
            "shutdown requested: finishing the pages in flight"
        } else {
            "shutdown requested: finishing the page in flight"
        },
    );
    // `ppsync check`'s checks (the config and the database passed by getting here): a failure
    // the network may mend is logged and the daemon starts (it retries on its own); any other
    // stops it before it serves, since it would only fail every cycle.
    let checks = tokio::select! {
        checks = crate::check::at_start(&cfg, &home, fleet_mode, clock.clone()) => checks,
        () = shutdown.cancelled() => return Ok(0),
    };
    let mut stop = false;
    for c in checks {
        if c.ok {
            continue;
        }
        if c.transient {
            tracing::warn!("check {}: {} (starting anyway)", c.name, c.detail);
        } else {
            tracing::error!("check {}: {}", c.name, c.detail);
            stop = true;
        }
    }
    if stop {
        anyhow::bail!(
            "not starting: fix what the checks above name (`ppsync check` shows them all)"
        );
    }
    if fleet_mode {
        return fleet(cfg, home, clock, shutdown).await;
    }
    let mut engine = app::engine_on(&cfg, home, clock.clone()).await?;
    engine.shutdown = shutdown.clone();
    let daemon_cfg = cfg.daemon();
    let ctx = crate::status::StatusContext {
        store: engine.store.clone(),
        client: engine.client.clone(),
        schedule: daemon_cfg.schedule.clone(),
        clock: clock.clone(),
        token: cfg.http_token.clone(),
        hosts: crate::status::Hosts::from_config(&cfg),
        notify_window: cfg.notify.window,
        deadlines: cfg.sync.deadlines.clone(),
    };
    serve_status(&cfg, &shutdown, |listener, stop| {
        crate::status::serve(listener, ctx, stop)
    })
    .await?;
    let daemon = crate::daemon::Daemon {
        engine: engine.clone(),
        cfg: daemon_cfg,
        shutdown,
        observer: None,
    };
    daemon.run().await?;
    engine.store.close().await;
    Ok(0)
}

/// `ppsync run` with firms registered: every firm (or the one `--firm` names), shared with the
/// other instances on the same PostgreSQL database.
async fn fleet(
    cfg: Config,
    home: Store,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<i32> {
    let instance: Arc<str> = cfg
        .instance_name
        .clone()
        .unwrap_or_else(crate::fleet::Fleet::default_instance_name)
        .into();
    tracing::info!(
        "serving {} as instance {instance} (database {})",
        match &cfg.firm {
            Some(f) => format!("firm {f}"),
            None => "every registered firm".to_string(),
        },
        home.location()
    );
    let serving = crate::fleet::Serving::default();
    let status = crate::status::FleetStatus {
        instance: instance.clone(),
        firms: serving.clone(),
        token: cfg.http_token.clone(),
        hosts: crate::status::Hosts::from_config(&cfg),
    };
    serve_status(&cfg, &shutdown, |listener, stop| {
        crate::status::serve_fleet(listener, status, stop)
    })
    .await?;
    let fleet = crate::fleet::Fleet {
        only: cfg.firm.clone(),
        base: cfg,
        home: home.clone(),
        clock,
        instance,
        shutdown,
        serving,
    };
    fleet.run().await?;
    home.close().await;
    Ok(0)
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C, logging `why` (what stopping means for this run).
fn stop_on_signal(shutdown: &CancellationToken, why: &'static str) {
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("{why}");
        signals.cancel();
    });
}

/// The status endpoint on `http.listen` (unless off), served by `serve` until `shutdown`. An
/// address that cannot be bound fails the start.
async fn serve_status<S, F>(
    cfg: &Config,
    shutdown: &CancellationToken,
    serve: S,
) -> anyhow::Result<()>
where
    S: FnOnce(tokio::net::TcpListener, CancellationToken) -> F,
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let Some(addr) = cfg.http_listen else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("http.listen {addr}: cannot listen there; pick a free address or set it to \"off\"")
    })?;
    // Through the log formatter like every other line (a JSON log stays all JSON).
    tracing::info!("status on http://{}/", listener.local_addr()?);
    let served = serve(listener, shutdown.clone());
    tokio::spawn(async move {
        if let Err(e) = served.await {
            tracing::error!(error = %format!("{e:#}"), "status endpoint stopped");
        }
    });
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
