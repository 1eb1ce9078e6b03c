//! `ppsync demo` (product.md §9): ppsim in-process, a backfill with progress bars, a simulated day
//! of the daemon's cycles in seconds, and the report — requests and records per cycle against a
//! full pull, and what it caught. The mirror file stays behind.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use crate::api::TokenStore as _;
use crate::config::Config;
use crate::daemon::Daemon;
use crate::resource::RESOURCES;
use crate::sync::Engine;
use crate::time::{BoxFuture, Clock};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Size of the simulated firm (1.0 = the seed's: 11,171 accounts)
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Simulated hours of daemon cycles after the backfill
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// The mirror file (replaced if it exists)
    #[arg(long, default_value = "ppsync-demo.db")]
    pub database: PathBuf,
}

/// The simulator's clock: sleeping advances simulated time (and runs its change generator), so
/// the daemon's 15-minute waits take no real time.
pub struct SimClock(pub ppsim::SimHandle);

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'_> {
        self.0.advance(d);
        Box::pin(tokio::task::yield_now())
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<i32> {
    if !(args.scale > 0.0 && args.scale <= 20.0) {
        anyhow::bail!(
            "--scale {} is out of range: use a number between 0.001 and 20",
            args.scale
        );
    }
    for suffix in ["", "-wal", "-shm", "-budget", "-budget-wal", "-budget-shm"] {
        let mut p = args.database.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    outln!(
        "ppsync demo: a simulated PracticePanther firm (seed {}, scale {})",
        args.seed,
        args.scale
    );
    let started = Instant::now();
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        seed: args.seed,
        scale: args.scale,
        ..Default::default()
    })
    .await
    .context("starting the simulator")?;
    let total: usize = sim.counts().values().sum();
    outln!(
        "  simulator at {} with {total} records, built in {:.1}s",
        sim.url(),
        started.elapsed().as_secs_f64()
    );

    // The simulated firm is in California: its date-only fields are local noon or midnight there.
    let cfg = Config::from_toml_str(&format!(
        "database_url = {:?}\napi_base_url = {:?}\nclient_id = {:?}\nclient_secret = {:?}\ntime_zone = \"America/Los_Angeles\"\n",
        args.database.to_string_lossy(),
        sim.url(),
        sim.client_id(),
        sim.client_secret()
    ))?;
    let clock: Arc<dyn Clock> = Arc::new(SimClock(sim.clone()));
    let mut engine: Engine = crate::app::engine(&cfg, clock.clone()).await?;
    let tokens = engine.client.redeem_refresh_token(&sim.grant()).await?;
    engine.store.save(&tokens).await?;

    outln!("\n1. Backfill: every resource, complete");
    let bars = crate::progress::Bars::new();
    engine.progress = Some(bars);
    let t0 = Instant::now();
    let all: Vec<_> = RESOURCES.iter().collect();
    let backfill = engine.pass(&all, false, "backfill").await;
    let secs = t0.elapsed().as_secs_f64();
    engine.progress = None;
    crate::progress::print_pass(&backfill)?;
    outln!(
        "  {} records in {secs:.1}s ({:.0} records/s), {} requests",
        backfill.records_seen(),
        backfill.records_seen() as f64 / secs.max(1e-9),
        backfill.requests
    );
    if let Some(f) = &backfill.fatal {
        anyhow::bail!("the backfill stopped: {f}");
    }
    for o in backfill.outcomes.iter().filter(|o| o.error.is_some()) {
        outln!(
            "  skipped {}: {} (the daemon retries it)",
            o.resource,
            o.error.as_deref().unwrap_or("")
        );
    }

    outln!(
        "\n2. The daemon for {} simulated hours (15-minute, hourly and daily tiers, reconciliation at 03:00 UTC)",
        args.hours
    );
    let mut dcfg = cfg.daemon();
    let day_start = clock.now();
    dcfg.stop_at = Some(day_start + chrono::Duration::hours(i64::from(args.hours)));
    let t1 = Instant::now();
    let daemon = Daemon {
        engine: engine.clone(),
        cfg: dcfg,
        shutdown: Default::default(),
        observer: None,
    };
    let summary = daemon.run().await?;
    let scheduled: Vec<_> = summary
        .cycles
        .iter()
        .filter(|c| !c.outcomes.is_empty())
        .collect();
    outln!(
        "  {} cycles and {} reconciliation in {:.1}s of real time",
        scheduled.len(),
        summary.reconciliations,
        t1.elapsed().as_secs_f64()
    );
    // The by-id reads (emails' bodies, payments' refunds) ran between the cycles: how fast the
    // backfill's backlog went, and whether any cycle started late for them.
    let starts = engine.store.cycle_starts("scheduled", day_start).await?;
    // Every tier ticks on the quarter-hour grid: how far past its tick each cycle started.
    let late: Vec<i64> = starts
        .iter()
        .skip(1)
        .map(|t| t.timestamp().rem_euclid(900))
        .collect();
    let worst = late.iter().copied().max().unwrap_or(0);
    let left = engine.store.detail_backlog().await?;
    let left: i64 = left.values().map(|b| b.queued).sum();
    match summary.details_drained_at {
        Some(t) => {
            let hours = (t - day_start).num_seconds() as f64 / 3600.0;
            outln!(
                "  by-id reads (email bodies, payment refunds): {} in {} requests; the backfill's backlog \
                 was worked off {hours:.1} simulated hours in ({:.0} a minute), between the cycles",
                summary.details,
                summary.detail_requests,
                summary.details as f64 / (hours * 60.0).max(1e-9)
            );
        }
        None => outln!(
            "  by-id reads (email bodies, payment refunds): {} in {} requests, {left} still queued",
            summary.details,
            summary.detail_requests
        ),
    }
    outln!(
        "  the latest a 15-minute cycle started after its tick: {worst} s ({} cycles)",
        late.len()
    );

    outln!("\n3. The report (from the run history)\n");
    let report = crate::report::render(&engine.store, &cfg, Some(12)).await?;
    write!(std::io::stdout().lock(), "{report}")?;

    outln!("\n4. What it caught (notifications in the outbox; the backfill's own are suppressed)");
    for (kind, n) in engine.store.outbox_counts().await? {
        outln!("  {kind:<28} {n}");
    }
    // The exchange deadlines (the matters' 45- and 180-day dates and statute dates) first: they
    // are the firm's business; tasks and events after.
    let sources = &cfg.sync.deadlines;
    let today = sources.local_date(clock.now());
    let soon = crate::deadlines::list(&engine.store, sources, today, today + chrono::Days::new(14))
        .await?;
    let (exchange, other): (Vec<_>, Vec<_>) = soon.iter().partition(|d| d.resource == "matters");
    outln!(
        "\n  exchange deadlines in the next 14 days ({}): {}",
        sources.zone.name(),
        exchange.len()
    );
    for d in exchange.iter().take(8) {
        outln!(
            "  {:<26} {:<22} {}",
            d.local_text(),
            d.kind,
            d.matter.as_deref().unwrap_or("")
        );
    }
    outln!(
        "  and {} task and event deadlines; all of them: PPSYNC_DATABASE_URL={} PPSYNC_TIME_ZONE={} ppsync deadlines --days 14",
        other.len(),
        args.database.display(),
        sources.zone.name()
    );
    outln!(
        "\nThe mirror is in {} (sqlite3 {} 'select status, count(*) from matters group by 1').",
        args.database.display(),
        args.database.display()
    );
    engine.store.close().await;
    Ok(0)
}
