//! Backfill throughput and peak memory of the `ppsync` binary against an in-process ppsim.
//!
//! ```sh
//! cargo bench -p ppsync --bench backfill                # SQLite at scales 1 and 10, PostgreSQL at 1
//! cargo bench -p ppsync --bench backfill -- 1 10 pg:1   # any scales; pg: runs into PostgreSQL
//! cargo bench -p ppsync --bench backfill -- --runs 1 10 # backfills per scale (default 3)
//! ```
//!
//! Each scale's simulator is built once and backfilled `--runs` times, each into a new mirror: the
//! same binary's figures on these shared VMs vary by a quarter from one minute to the next, so the
//! targets are judged on each scale's median run, and every run is printed.
//!
//! PostgreSQL runs go into a new database on `PPSYNC_TEST_PG_URL` (default: the local server
//! `scripts/test.sh` starts). The targets are the embedded default's (SQLite); PostgreSQL's figures
//! are printed beside them.
//!
//! For each scale: builds the simulator's firm (timed separately, not part of the measurement),
//! writes a config pointing at it, imports a refresh token with `ppsync auth import`, then times
//! `ppsync sync` (the first pass: a full backfill of every resource) run as a child process, so
//! its memory is measured apart from the simulator's dataset. Peak memory is the child's `VmHWM`
//! (peak resident set), polled from `/proc` every 10 ms. Records are what the pass reports as
//! received, cross-checked against the mirror's row counts and the simulator's record counts.
//!
//! The simulator serves from the same machine (and the same cores) as the child: the figures are
//! end to end, HTTP and JSON rendering included.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ppsim::{Sim, SimConfig, SimHandle};
use ppsync::resource::RESOURCES;

/// Requests per window granted to both sides: a scale-10 backfill needs ~700 pages, which the
/// default 300 per 5 minutes would turn into a wait on the budget instead of a measurement.
const BUDGET: u32 = 100_000;

const TARGET_RATE: f64 = 50_000.0;
const TARGET_MB: f64 = 100.0;

struct Measured {
    scale: f64,
    backend: &'static str,
    build: Duration,
    records: u64,
    rows: u64,
    truth: u64,
    elapsed: Duration,
    peak_kb: u64,
    /// The highest resident set by the end of each quarter of the run (kB).
    quarters: [u64; 4],
    /// CPU seconds of the ppsync process.
    cpu: f64,
    /// CPU seconds of the simulator meanwhile.
    sim_cpu: f64,
    /// Share of the machine's CPU taken by other tenants during the run.
    steal: f64,
    requests: u64,
    sim_requests: usize,
    slowest: Vec<(String, f64, i64)>,
    /// `skipped <resource>: <reason>` lines of a pass that exited 1.
    skipped: Vec<String>,
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 3usize;
    if let Some(i) = args.iter().position(|a| a == "--runs") {
        runs = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("--runs takes a number of backfills per scale (1 or more)"));
        args.drain(i..i + 2);
    }
    let mut scales: Vec<(bool, f64)> = args
        .into_iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| {
            let (pg, n) = match a.strip_prefix("pg:") {
                Some(n) => (true, n),
                None => (false, a.as_str()),
            };
            (
                pg,
                n.parse().unwrap_or_else(|_| {
                    panic!("a scale is a number (pg:N for PostgreSQL), not {a:?}")
                }),
            )
        })
        .collect();
    if scales.is_empty() {
        scales = vec![(false, 1.0), (false, 10.0), (true, 1.0)];
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_ppsync"));
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    println!(
        "ppsync backfill bench: {} (budget raised to {BUDGET} requests / 5 min on both sides)",
        bin.display()
    );
    let mut results = Vec::new();
    let mut medians = Vec::new();
    for (pg, scale) in scales {
        let mut ms = rt.block_on(measure(bin, scale, pg, runs));
        for m in &ms {
            print_one(m);
        }
        ms.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        medians.push(ms.len() / 2 + results.len());
        results.extend(ms);
    }
    println!();
    println!("each scale's runs, slowest first; * marks the median");
    println!(
        "{:>10} {:>6} {:>10} {:>8} {:>10} {:>8} {:>9} {:>8} {:>6} {:>9}",
        "backend",
        "scale",
        "records",
        "secs",
        "records/s",
        "peak MB",
        "requests",
        "cpu s",
        "steal",
        "sim build"
    );
    for (i, m) in results.iter().enumerate() {
        let backend = if medians.contains(&i) {
            format!("* {}", m.backend)
        } else {
            m.backend.to_string()
        };
        println!(
            "{:>10} {:>6} {:>10} {:>8.2} {:>10.0} {:>8.1} {:>9} {:>8.2} {:>5.0}% {:>8.1}s",
            backend,
            m.scale,
            m.records,
            m.elapsed.as_secs_f64(),
            rate(m),
            mb(m.peak_kb),
            m.requests,
            m.cpu,
            m.steal * 100.0,
            m.build.as_secs_f64()
        );
    }
    println!(
        "targets (SQLite): >= {TARGET_RATE:.0} records/s in each scale's median run, peak <= {TARGET_MB:.0} MB in every run"
    );
    // Flat with volume: how the highest peak grew against the records, printed for a reader to
    // judge (README: what grows), not judged here.
    let mut by_scale: Vec<(f64, u64, u64)> = Vec::new();
    for m in results.iter().filter(|m| m.backend == "sqlite") {
        match by_scale.iter_mut().find(|(s, _, _)| *s == m.scale) {
            Some(e) => e.2 = e.2.max(m.peak_kb),
            None => by_scale.push((m.scale, m.records, m.peak_kb)),
        }
    }
    by_scale.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let (Some(lo), Some(hi)) = (by_scale.first(), by_scale.last())
        && by_scale.len() > 1
    {
        println!(
            "peak memory with volume (SQLite, highest run): scale {} {:.1} MB, scale {} {:.1} MB: x{:.2} for x{:.1} the records",
            lo.0,
            mb(lo.2),
            hi.0,
            mb(hi.2),
            hi.2 as f64 / lo.2.max(1) as f64,
            hi.1 as f64 / lo.1.max(1) as f64
        );
    }
    let mut missed = Vec::new();
    let sqlite_medians = medians
        .iter()
        .map(|&i| &results[i])
        .filter(|m| m.backend == "sqlite");
    for m in sqlite_medians {
        if rate(m) < TARGET_RATE {
            missed.push(format!("scale {}: {:.0} records/s", m.scale, rate(m)));
        }
    }
    // Completeness and memory are judged on every run, not the median.
    for m in results.iter().filter(|m| m.backend == "sqlite") {
        if !m.skipped.is_empty() {
            missed.push(format!(
                "scale {}: {} resources skipped",
                m.scale,
                m.skipped.len()
            ));
        }
        if m.rows != m.truth {
            missed.push(format!(
                "scale {}: mirror rows {} vs simulator records {}",
                m.scale, m.rows, m.truth
            ));
        }
        if mb(m.peak_kb) > TARGET_MB {
            missed.push(format!("scale {}: {:.1} MB", m.scale, mb(m.peak_kb)));
        }
    }
    if !results.iter().any(|m| m.backend == "sqlite") {
        println!("no SQLite run: targets not checked");
    } else if missed.is_empty() {
        println!("all targets met");
    } else {
        println!("missed: {}", missed.join("; "));
    }
}

fn rate(m: &Measured) -> f64 {
    m.records as f64 / m.elapsed.as_secs_f64()
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn print_one(m: &Measured) {
    println!();
    println!(
        "{} scale {}: simulator built in {:.2}s ({} records)",
        m.backend,
        m.scale,
        m.build.as_secs_f64(),
        m.truth
    );
    println!(
        "  backfill: {} records in {:.2}s = {:.0} records/s, peak RSS {:.1} MB, {} requests ({} at the simulator, token calls included)",
        m.records,
        m.elapsed.as_secs_f64(),
        rate(m),
        mb(m.peak_kb),
        m.requests,
        m.sim_requests
    );
    println!(
        "  ppsync CPU {:.2}s (user + system), the simulator's {:.2}s; CPU stolen by other tenants of the machine meanwhile: {:.0}%",
        m.cpu,
        m.sim_cpu,
        m.steal * 100.0
    );
    let q = m.quarters.map(|kb| format!("{:.1}", mb(kb)));
    println!(
        "  resident MB by the end of each quarter of the run: {} / {} / {} / {}",
        q[0], q[1], q[2], q[3]
    );
    for s in &m.skipped {
        println!("  WARNING {s}");
    }
    let check = if m.rows == m.truth { "ok" } else { "MISMATCH" };
    println!(
        "  mirror rows {} vs simulator records {}: {check}",
        m.rows, m.truth
    );
    let slow: Vec<String> = m
        .slowest
        .iter()
        .map(|(name, secs, n)| format!("{name} {secs:.2}s ({n})"))
        .collect();
    println!("  slowest resources: {}", slow.join(", "));
}

/// Builds the simulator at `scale` and backfills it `runs` times, each into a new mirror.
async fn measure(bin: &Path, scale: f64, pg: bool, runs: usize) -> Vec<Measured> {
    let t = Instant::now();
    let sim = Sim::spawn(SimConfig {
        scale,
        budget_limit: BUDGET,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator spawns");
    let build = t.elapsed();
    let truth: u64 = sim.counts().values().map(|&n| n as u64).sum();
    let mut out = Vec::new();
    for _ in 0..runs {
        out.push(backfill_once(bin, &sim, scale, pg, build, truth).await);
    }
    sim.shutdown();
    out
}

/// One `ppsync sync` (a first backfill) into a new mirror of `sim`, measured.
async fn backfill_once(
    bin: &Path,
    sim: &SimHandle,
    scale: f64,
    pg: bool,
    build: Duration,
    truth: u64,
) -> Measured {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = if pg {
        ppsync::store::testing::fresh_database()
            .await
            .expect("a PostgreSQL database")
    } else {
        dir.path().join("mirror.db").to_str().unwrap().to_string()
    };
    let config = write_config(dir.path(), sim, &db);
    let grant = sim.grant();
    let cfg2 = config.clone();
    let bin2 = bin.to_path_buf();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        let out = ppsync_cmd(&bin2, &cfg2)
            .args(["auth", "import", "--refresh-token", &grant])
            .env_remove("PPSYNC_LOG")
            .output()
            .expect("ppsync runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("import thread");
    assert_eq!(code, 0, "ppsync auth import failed: {err}");
    sim.clear_journal();

    let bin2 = bin.to_path_buf();
    let cfg2 = config.clone();
    let (code, stdout, stderr, elapsed, cost) =
        tokio::task::spawn_blocking(move || run_measured(&bin2, &cfg2))
            .await
            .expect("sync thread");
    if std::env::var_os("PPBENCH_LOG").is_some() {
        eprint!("{stderr}");
    }
    // 1: some resources were skipped (named on stderr); the others are still measured.
    assert!(
        code == 0 || code == 1,
        "ppsync sync failed ({code}): {stderr}\n{stdout}"
    );
    let skipped: Vec<String> = stderr
        .lines()
        .filter(|l| l.starts_with("skipped "))
        .map(str::to_string)
        .collect();
    let sim_requests = sim.journal().len();
    let (requests, records) = parse_pass(&stdout)
        .unwrap_or_else(|| panic!("no `pass N: ...` line in the output: {stdout}"));

    let store = ppsync::store::Store::open(&db)
        .await
        .expect("the mirror opens");
    let mut rows = 0u64;
    for res in RESOURCES {
        let (live, _) = store.counts(res).await.expect("counts");
        rows += live as u64;
    }
    let mut slowest: Vec<(String, f64, i64)> = Vec::new();
    for r in store.runs(100).await.expect("run history") {
        let secs = r
            .finished_at
            .as_deref()
            .and_then(|f| Some((secs_of(f)? - secs_of(&r.started_at)?).max(0.0)))
            .unwrap_or(0.0);
        slowest.push((r.resource, secs, r.records_seen));
    }
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    slowest.truncate(5);
    store.close().await;
    Measured {
        scale,
        backend: if pg { "postgres" } else { "sqlite" },
        build,
        records,
        rows,
        truth,
        elapsed,
        peak_kb: cost.peak_kb,
        quarters: cost.quarters,
        cpu: cost.cpu,
        sim_cpu: cost.sim_cpu,
        steal: cost.steal,
        requests,
        sim_requests,
        slowest,
        skipped,
    }
}

fn secs_of(t: &str) -> Option<f64> {
    let t = ppsync::time::parse_api_time(t)?;
    Some(t.timestamp_micros() as f64 / 1e6)
}

fn write_config(dir: &Path, sim: &SimHandle, db: &str) -> std::path::PathBuf {
    let path = dir.join("ppsync.toml");
    std::fs::write(
        &path,
        format!(
            "database_url = {:?}\napi_base_url = {:?}\nclient_id = {:?}\nclient_secret = {:?}\n\n[budget]\nrequests = {BUDGET}\n",
            db,
            sim.url(),
            sim.client_id(),
            sim.client_secret()
        ),
    )
    .expect("config written");
    path
}

/// What a measured run cost besides its wall time.
struct Cost {
    peak_kb: u64,
    /// CPU seconds of the child (user + system).
    cpu: f64,
    /// CPU seconds of this process meanwhile: the simulator serving (the bench only polls).
    sim_cpu: f64,
    /// Share of the machine's CPU time the hypervisor gave to other tenants meanwhile (steal):
    /// on a shared VM the same binary can run 1.5x slower when it is high.
    steal: f64,
    /// The highest resident set (kB) seen by the end of each quarter of the run.
    quarters: [u64; 4],
}

/// The `ppsync` binary at `bin` with `--config config`: both of the bench's runs start here.
fn ppsync_cmd(bin: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(config);
    cmd
}

/// Runs `ppsync sync` and polls its peak resident set until it exits.
/// Returns (exit code, stdout, stderr, wall time, cost).
fn run_measured(bin: &Path, config: &Path) -> (i32, String, String, Duration, Cost) {
    let machine_before = machine_cpu();
    let children_before = children_cpu();
    let self_before = self_cpu();
    let start = Instant::now();
    let mut cmd = ppsync_cmd(bin, config);
    // The listings' backfill is what is measured; the by-id reads after it (emails, payments)
    // are paced by the budget, not by ppsync.
    cmd.args(["sync", "--no-details"]);
    // PPBENCH_LOG=<filter>: the child logs at that level (its stderr goes to the bench's
    // stderr), for a timeline of where a run's time goes; otherwise logging is left at its default.
    match std::env::var("PPBENCH_LOG") {
        Ok(filter) => cmd.env("PPSYNC_LOG", filter),
        Err(_) => cmd.env_remove("PPSYNC_LOG"),
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ppsync sync starts");
    let status_path = format!("/proc/{}/status", child.id());
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let (mut o, mut e) = (String::new(), String::new());
        let t = std::thread::spawn(move || {
            let _ = err.read_to_string(&mut e);
            e
        });
        let _ = out.read_to_string(&mut o);
        (o, t.join().unwrap_or_default())
    });
    let mut peak = 0u64;
    // (elapsed, resident kB) samples: where the peak is reached shows whether memory grows with
    // the records written or levels off.
    let mut rss = Vec::new();
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = status_kb(&s, "VmHWM:") {
                peak = peak.max(kb);
            }
            if let Some(kb) = status_kb(&s, "VmRSS:") {
                rss.push((start.elapsed(), kb));
            }
        }
        if let Some(status) = child.try_wait().expect("wait on ppsync") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let cpu = children_cpu() - children_before;
    let sim_cpu = self_cpu() - self_before;
    let (steal, total) = machine_cpu();
    let steal = (steal - machine_before.0) as f64 / (total - machine_before.1).max(1) as f64;
    let (stdout, stderr) = reader.join().expect("output reader");
    // The highest resident set by each quarter of the run.
    let quarters = [1, 2, 3, 4].map(|q| {
        rss.iter()
            .filter(|(t, _)| *t <= elapsed.mul_f64(q as f64 / 4.0))
            .map(|(_, kb)| *kb)
            .max()
            .unwrap_or(0)
    });
    let cost = Cost {
        peak_kb: peak,
        cpu,
        sim_cpu,
        steal,
        quarters,
    };
    (status.code().unwrap_or(-1), stdout, stderr, elapsed, cost)
}

/// (steal, total) clock ticks of all CPUs so far, from the first line of /proc/stat.
fn machine_cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...; guest time is already in user.
    let total = ticks.iter().take(8).sum();
    (ticks.get(7).copied().unwrap_or(0), total)
}

/// CPU seconds of this process's children that were waited for (cutime + cstime).
fn children_cpu() -> f64 {
    // cutime and cstime are fields 16 and 17: indexes 13 and 14 after the name.
    stat_cpu(13)
}

/// CPU seconds of this process so far (utime + stime).
fn self_cpu() -> f64 {
    // utime and stime are fields 14 and 15: indexes 11 and 12 after the name.
    stat_cpu(11)
}

/// The sum of two consecutive fields of /proc/self/stat from index `i` after the command name, in
/// clock ticks of 1/100 s (the value Linux uses on every architecture), as seconds.
fn stat_cpu(i: usize) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    (f.get(i).copied().unwrap_or(0) + f.get(i + 1).copied().unwrap_or(0)) as f64 / 100.0
}

/// A `kB` line of /proc/<pid>/status (`VmHWM:`, the peak resident set; `VmRSS:`, the current).
fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// (requests, records received) from `pass N: R resources, Q requests, X records received, ...`.
fn parse_pass(stdout: &str) -> Option<(u64, u64)> {
    let line = stdout.lines().find(|l| l.starts_with("pass "))?;
    let num_before = |what: &str| -> Option<u64> {
        let i = line.find(what)?;
        line[..i].split_whitespace().last()?.parse().ok()
    };
    Some((num_before(" requests,")?, num_before(" records received")?))
}
