//! `ppsync run` over many firms, by any number of instances sharing one PostgreSQL database.
//!
//! Each instance keeps one connection of its own (the claim connection) on which it holds a
//! session-level advisory lock per firm it serves: PostgreSQL guarantees one holder per lock, and
//! releases every lock of an instance the moment its connection ends (a killed process, a lost
//! network), so another instance takes the firm over at its next claim round. Nothing else
//! coordinates the instances: the live ones are counted in PostgreSQL's own activity view (the claim
//! connections carry a recognisable application_name), and each takes at most its fair share,
//! handing extra firms back between their cycles.
//!
//! Invariants:
//! - A firm is served only while its lock is held: the claim connection is checked every round, and
//!   when it is lost every firm's daemon is stopped (at a page boundary) before anything is claimed
//!   again. A firm's daemon resumes from the cursors in its own store, whoever ran it before.
//! - One firm's failure (revoked token, bad settings, API down) stays in that firm's task.
//! - SQLite serves one instance: there every firm is claimed without a lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::Config;
use crate::daemon::Daemon;
use crate::store::{Claims, Fence, Store};
use crate::time::Clock;

pub struct Fleet {
    /// The config from the file and the environment (each firm's settings are laid over it).
    pub base: Config,
    /// The store holding the firm registry.
    pub home: Store,
    pub clock: Arc<dyn Clock>,
    /// This instance's name (cycle history, PostgreSQL's activity view).
    pub instance: Arc<str>,
    /// Serve only this firm (`ppsync run --firm NAME`).
    pub only: Option<String>,
    pub shutdown: CancellationToken,
    /// The firms being served, for the status endpoint.
    pub serving: Serving,
}

/// The status of every firm this instance serves, by name.
pub type Serving = Arc<std::sync::RwLock<BTreeMap<String, crate::status::StatusContext>>>;

/// A firm this instance serves.
struct Held {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Fleet {
    /// An instance name unique enough to tell instances apart: host and process id.
    pub fn default_instance_name() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        format!("{host}-{}", std::process::id())
    }

    pub async fn run(&self) -> anyhow::Result<()> {
        let mut claims = Claims::connect(&self.home, &self.instance).await?;
        let mut held: BTreeMap<String, Held> = BTreeMap::new();
        tracing::info!(instance = %self.instance, "fleet started");
        while !self.shutdown.is_cancelled() {
            if let Err(e) = self.round(&mut claims, &mut held).await {
                tracing::error!(error = %format!("{e:#}"), "claim round failed: stopping every firm until the claim connection is back");
                stop_all(&mut held).await;
                claims.reconnect().await;
            }
            tokio::select! {
                _ = self.clock.sleep(self.base.claim_interval) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
        stop_all(&mut held).await;
        claims.release_all().await;
        tracing::info!(instance = %self.instance, "fleet stopped");
        Ok(())
    }

    /// One claim round: check the claim connection, follow the registry, take or hand back firms.
    async fn round(
        &self,
        claims: &mut Claims,
        held: &mut BTreeMap<String, Held>,
    ) -> anyhow::Result<()> {
        let live = claims.live_instances().await?;
        let mut wanted: Vec<String> = self
            .home
            .firms()
            .await?
            .into_iter()
            .map(|f| f.name)
            .filter(|n| self.only.as_ref().is_none_or(|o| o == n))
            .collect();
        if let Some(only) = &self.only
            && wanted.is_empty()
        {
            tracing::warn!(firm = %only, "firm is not registered: nothing to serve");
        }
        // Firms unregistered meanwhile, and tasks that ended on their own, are let go.
        let gone: Vec<String> = held
            .iter()
            .filter(|(n, h)| !wanted.contains(n) || h.task.is_finished())
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.hand_back(claims, held, &name).await?;
        }
        let share = wanted.len().div_ceil(live.max(1));
        // More than a fair share (another instance started): hand the surplus back between cycles.
        while held.len() > share {
            let name = held.keys().next_back().cloned().expect("held is not empty");
            tracing::info!(firm = %name, live, share, "handing a firm back for another instance");
            self.hand_back(claims, held, &name).await?;
        }
        // Instances start at different points of the list, so they do not all reach for one firm.
        let offset =
            (xxhash_rust::xxh3::xxh3_64(self.instance.as_bytes()) as usize) % wanted.len().max(1);
        wanted.rotate_left(offset);
        for name in wanted {
            if held.len() >= share {
                break;
            }
            if held.contains_key(&name) || !claims.try_claim(&name).await? {
                continue;
            }
            tracing::info!(firm = %name, instance = %self.instance, "firm claimed");
            let stop = self.shutdown.child_token();
            let task = tokio::spawn(serve_firm(FirmTask {
                base: self.base.clone(),
                home: self.home.clone(),
                name: name.clone(),
                fence: claims.fence(&name),
                clock: self.clock.clone(),
                instance: self.instance.clone(),
                stop: stop.clone(),
                serving: self.serving.clone(),
            }));
            held.insert(name, Held { stop, task });
        }
        Ok(())
    }

    async fn hand_back(
        &self,
        claims: &mut Claims,
        held: &mut BTreeMap<String, Held>,
        name: &str,
    ) -> anyhow::Result<()> {
        if let Some(h) = held.remove(name) {
            h.stop.cancel();
            let _ = h.task.await;
        }
        claims.release(name).await
    }
}

async fn stop_all(held: &mut BTreeMap<String, Held>) {
    for h in held.values() {
        h.stop.cancel();
    }
    for (_, h) in std::mem::take(held) {
        let _ = h.task.await;
    }
}

/// Serves one firm until `stop`: its own config, store, client (budget, tokens) and daemon.
struct FirmTask {
    base: Config,
    home: Store,
    name: String,
    fence: Option<Fence>,
    clock: Arc<dyn Clock>,
    instance: Arc<str>,
    stop: CancellationToken,
    serving: Serving,
}

async fn serve_firm(task: FirmTask) {
    let FirmTask {
        base,
        home,
        name,
        fence,
        clock,
        instance,
        stop,
        serving,
    } = task;
    let result = async {
        let (cfg, mut store) = app::open_firm(&base, &home, &name).await?;
        if let Some(f) = fence {
            // Pages commit only while this instance still holds the firm.
            store = store.fenced(f);
        }
        let mut engine = app::engine_on(&cfg, store, clock).await?;
        engine.instance = Some(instance);
        engine.shutdown = stop.clone();
        if let Ok(mut m) = serving.write() {
            m.insert(
                name.clone(),
                crate::status::StatusContext {
                    store: engine.store.clone(),
                    client: engine.client.clone(),
                    schedule: cfg.daemon().schedule,
                    clock: engine.clock.clone(),
                    // The instance's endpoint checks the token and the Host (`FleetStatus`).
                    token: None,
                    hosts: Default::default(),
                    notify_window: cfg.notify.window,
                    deadlines: cfg.sync.deadlines.clone(),
                },
            );
        }
        let daemon = Daemon {
            engine,
            cfg: cfg.daemon(),
            shutdown: stop.clone(),
            observer: None,
        };
        daemon.run().await.map(|_| ())
    }
    .await;
    if let Ok(mut m) = serving.write() {
        m.remove(&name);
    }
    if let Err(e) = result {
        // The round after this hands the firm back; it is claimed again (here or elsewhere) later.
        tracing::error!(firm = %name, error = %format!("{e:#}"), "firm stopped");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.cancelled() => {}
        }
    }
}
