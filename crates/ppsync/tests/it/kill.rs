//! product.md §3: "the process is killed at any instant". The real binary is killed (SIGKILL) at
//! seeded pseudo-random instants during backfills and incremental passes, then restarted: after
//! every restart completes, the mirror equals the simulator's truth, with nothing lost or doubled.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ppsync::resource::RESOURCES;

use crate::support::*;

/// Small pages, so a backfill takes many requests and transactions and kills land mid-listing,
/// in transactions of up to two pages (the simulator answers fast, so pages commit together:
/// kills also land inside a transaction of several pages). The budget is lifted on both sides:
/// each restart counts the requests of the passes before it (and the simulator counts every
/// process's), so dozens of restarts within five minutes would otherwise wait out the window
/// (the budget has tests of its own).
const CONFIG: &str = "[sync]\npage_size = 20\ncommit_records = 30\n[budget]\nrequests = 1000000";

/// A deterministic pseudo-random sequence (SplitMix64): the same kill delays on every run.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, max)`.
    pub(crate) fn below(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos().max(1) as u64;
        Duration::from_nanos(self.next() % nanos)
    }
}

/// How a run that was to be killed ended.
pub(crate) enum Ended {
    /// The kill landed on a running process.
    Killed,
    /// It finished well before the kill, after this long.
    Finished(Duration),
    /// It stopped because the stored refresh token was spent: an earlier kill landed between the
    /// server rotating the pair and the commit of the new one (see `GrantLost`).
    GrantLost,
}

/// The one loss no client can prevent: the server spends the old refresh token when it answers a
/// refresh, so a kill in the milliseconds before the new pair is committed leaves the stored one
/// rejected (`invalid_grant`; the run exits 2 naming `ppsync auth login`). The mirror is still
/// whole. The test then re-authorizes as an operator would and goes on; it counts these and
/// allows only a few (a wider window, say the pair saved after some slower step, would show).
const GRANT_LOST: &str = "the refresh token was rejected";

/// Starts `ppsync sync` and SIGKILLs it after `delay` (unless it finished first). Its stderr goes
/// to `log` (checked for panics). `after_kill`: a kill already landed in this round.
pub(crate) async fn sync_killed_after(
    config: &Path,
    log: &Path,
    args: &[&str],
    delay: Duration,
    after_kill: bool,
) -> Ended {
    let config = config.to_path_buf();
    let log = log.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let stderr = std::fs::File::create(&log).expect("log file");
        let started = Instant::now();
        let mut child = ppsync_cmd(&config)
            .args(&args)
            .env_remove("PPSYNC_LOG")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("ppsync starts");
        let deadline = started + delay;
        let mut finished = None;
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                finished = Some(started.elapsed());
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                // SIGKILL on unix. An exit racing the kill shows in the status below.
                let _ = child.kill();
                break;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(1)));
        }
        let status = child.wait().expect("wait");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !text.contains("panicked"),
            "the killed run panicked: {text}"
        );
        match status.signal() {
            Some(9) => Ended::Killed,
            Some(s) => panic!("ppsync died of signal {s}: {text}"),
            None if after_kill && status.code() == Some(2) && text.contains(GRANT_LOST) => {
                Ended::GrantLost
            }
            None => {
                // It finished before the kill: it must have finished well.
                assert_eq!(status.code(), Some(0), "the run before the kill: {text}");
                Ended::Finished(finished.unwrap_or_else(|| started.elapsed()))
            }
        }
    })
    .await
    .expect("kill thread")
}

/// Runs `ppsync sync` to completion; it must succeed. Returns its wall time.
async fn sync_to_completion(app: &TestApp) -> Duration {
    let started = Instant::now();
    let (code, out, err) = app.cli(&["sync"]).await;
    assert_eq!(code, 0, "the restarted pass must complete: {out}{err}");
    assert!(!err.contains("panicked"), "{err}");
    let elapsed = started.elapsed();
    assert_every_index_present(app).await;
    elapsed
}

/// A completed pass leaves every index of the schema in place, whatever kills came before (a
/// first backfill sets a table's secondary indexes aside while it fills it). Read on a connection
/// of its own: opening a store would restore them itself.
async fn assert_every_index_present(app: &TestApp) {
    use sqlx::Connection as _;
    if app.engine.store.sqlite_pool().is_none() {
        // A first backfill sets an empty table's indexes aside on PostgreSQL too. The test's
        // own store may be closed: the database named in its config.
        let config = std::fs::read_to_string(&app.config_path).unwrap();
        let url = config
            .lines()
            .find_map(|l| l.strip_prefix("database_url = "))
            .map(|v| v.trim_matches('"').to_string())
            .expect("database_url in the test's config");
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let list = "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1";
        let have: Vec<String> = sqlx::query_scalar(list).fetch_all(&mut conn).await.unwrap();
        let url = ppsync::store::testing::fresh_database().await.unwrap();
        let fresh = ppsync::store::Store::open(&url).await.unwrap();
        let want: Vec<String> = sqlx::query_scalar(list)
            .fetch_all(fresh.pg_pool().unwrap())
            .await
            .unwrap();
        fresh.close().await;
        let aside: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM public.deferred_indexes")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        assert!(want.len() > 50, "the schema's indexes: {}", want.len());
        assert_eq!(have, want, "every index is back after a completed pass");
        assert_eq!(aside, 0, "nothing is left set aside");
        return;
    }
    let list =
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name";
    let db = app.config_path.parent().unwrap().join("mirror.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let have: Vec<String> = sqlx::query_scalar(list).fetch_all(&mut conn).await.unwrap();
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = ppsync::store::Store::open(fresh_dir.path().join("f.db").to_str().unwrap())
        .await
        .unwrap();
    let want: Vec<String> = sqlx::query_scalar(list)
        .fetch_all(fresh.sqlite_pool().unwrap())
        .await
        .unwrap();
    fresh.close().await;
    assert!(want.len() > 50, "the schema's indexes: {}", want.len());
    assert_eq!(have, want, "every index is back after a completed pass");
    let _ = conn.close().await;
}

/// Source deletions since the start, per API path (never cleared, unlike `pending_deletes`).
type Deletions = std::collections::BTreeMap<String, u32>;

fn advance(app: &TestApp, d: Duration, all_deleted: &mut Deletions) {
    for (res, n) in app.advance(d).deleted {
        *all_deleted.entry(res).or_default() += n;
    }
}

/// The mirror equals the truth, and the counts add up: every truth record once and live; beyond
/// them only records the source deleted (live until a reconciliation sees them gone, or marked
/// deleted); no listing left in progress; every resource with a cursor. So a kill never loses,
/// doubles or wrongly deletes a record.
async fn assert_whole(app: &TestApp, all_deleted: &Deletions, what: &str) {
    /// Names the round when an assertion below fails.
    struct Round<'a>(&'a str);
    impl Drop for Round<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("failed after: {}", self.0);
            }
        }
    }
    let _round = Round(what);
    app.assert_equal_to_truth().await;
    let (code, out, err) = app.cli(&["status", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let status = status["resources"].as_array().unwrap();
    let pending = app.pending_deletes.lock().unwrap().clone();
    for res in RESOURCES {
        let row = status.iter().find(|r| r["name"] == res.name).unwrap();
        let truth = app.truth(res).len() as i64;
        let live = row["live"].as_i64().unwrap();
        let deleted = row["deleted"].as_i64().unwrap();
        let unreconciled = pending.get(res.path).copied().unwrap_or(0) as i64;
        let gone = all_deleted.get(res.path).copied().unwrap_or(0) as i64;
        assert!(
            live >= truth && live - truth <= unreconciled && live + deleted <= truth + gone,
            "{what}: {}: {live} live + {deleted} deleted records, truth {truth}, \
             {gone} source deletions ({unreconciled} not reconciled yet)",
            res.name
        );
        assert_eq!(
            row["listing_in_flight"], false,
            "{what}: {} left a listing in progress",
            res.name
        );
        assert!(
            row["cursor"].is_string(),
            "{what}: {} has no cursor",
            res.name
        );
    }
}

/// Closes the harness's own connection and removes the mirror (the SQLite file, or the PostgreSQL
/// schema), so the next pass is a backfill into a new one (the kills then also land on database
/// creation and migration).
async fn remove_db(app: &TestApp, db: &Path) {
    if app.engine.store.pg_pool().is_some() {
        exec(&app.engine.store, "DROP SCHEMA public CASCADE").await;
        exec(&app.engine.store, "CREATE SCHEMA public").await;
        app.engine.store.close().await;
        return;
    }
    app.engine.store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Reopens the harness's engine on the (new) mirror file.
async fn reopen(app: &mut TestApp) {
    let cfg = ppsync::config::Config::load(Some(&app.config_path)).unwrap();
    app.engine = ppsync::app::engine(&cfg, std::sync::Arc::new(ppsync::time::SystemClock))
        .await
        .expect("engine");
}

/// Kills attempted, landed (on a running process), and landed between two pages of a listing
/// (the restart then resumes from the saved position); grants lost (`GRANT_LOST`).
#[derive(Default, Debug)]
struct Kills {
    attempted: u32,
    landed: u32,
    mid_listing: u32,
    grants_lost: u32,
}

/// One or two kills at random instants (the first within `range`, a second within what is
/// left of it), then a restart to completion. A first run that finishes before its kill narrows
/// `range` to its length: passes measured while other tests loaded the machine are slower than
/// the later ones, and kills drawn from too wide a range would mostly miss.
async fn kill_then_restart(
    app: &TestApp,
    args: &[&str],
    rng: &mut Rng,
    range: &mut Duration,
    kills: &mut Kills,
    log: &Path,
) {
    let n = 1 + rng.next() % 2;
    let mut left = *range;
    let mut landed = false;
    for i in 0..n {
        let delay = rng.below(left);
        kills.attempted += 1;
        match sync_killed_after(&app.config_path, log, args, delay, landed).await {
            Ended::Killed => {
                landed = true;
                kills.landed += 1;
                let (code, out, err) = app.cli(&["status", "--json"]).await;
                assert_eq!(code, 0, "status after a kill: {err}");
                if out.contains("\"listing_in_flight\": true") {
                    kills.mid_listing += 1;
                }
            }
            Ended::Finished(took) if i == 0 => *range = (*range).min(took),
            Ended::Finished(_) => {}
            Ended::GrantLost => {
                kills.grants_lost += 1;
                reauthorize(app).await;
            }
        }
        // A restart resumes from the last committed page: roughly what was left, plus start-up.
        left = left.saturating_sub(delay) + Duration::from_millis(40);
    }
    let (code, out, err) = app.cli(args).await;
    if code == 2 && landed && err.contains(GRANT_LOST) {
        kills.grants_lost += 1;
        reauthorize(app).await;
        sync_to_completion(app).await;
        return;
    }
    assert_eq!(code, 0, "the restarted pass must complete: {out}{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_every_index_present(app).await;
}

/// What an operator does after a lost grant (`ppsync auth login`): a new refresh token.
async fn reauthorize(app: &TestApp) {
    let (code, out, err) = app
        .cli(&["auth", "import", "--refresh-token", &app.sim.grant()])
        .await;
    assert_eq!(code, 0, "{out}{err}");
}

const BACKFILL_ROUNDS: u32 = 20;
const INCREMENTAL_ROUNDS: u32 = 20;
const RECONCILE_ROUNDS: u32 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_instants_then_restarted_equals_truth_every_time() {
    let _alone = KILL_TESTS.lock().await;
    let started = Instant::now();
    // The simulator's budget is lifted too (see CONFIG).
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.02,
        budget_limit: 0,
        ..Default::default()
    })
    .await
    .expect("sim spawns");
    let mut app = app_with(sim, CONFIG).await;
    let dir = app.config_path.parent().unwrap().to_path_buf();
    let db = dir.join("mirror.db");
    let log = dir.join("killed.log");
    let mut rng = Rng(0x5EED_C0FF_EE00);
    let mut all_deleted = Deletions::new();

    // Un-killed backfills through the binary set the range of kill instants (the quicker of two:
    // the first run of a freshly built binary is slower).
    let mut backfill = sync_to_completion(&app).await;
    assert_whole(&app, &all_deleted, "backfill").await;
    remove_db(&app, &db).await;
    let (code, out, err) = app
        .cli(&["auth", "import", "--refresh-token", &app.sim.grant()])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    backfill = backfill.min(sync_to_completion(&app).await);
    reopen(&mut app).await;
    assert_whole(&app, &all_deleted, "second backfill").await;
    let mut range = backfill;

    let mut backfills = Kills::default();
    for round in 0..BACKFILL_ROUNDS {
        remove_db(&app, &db).await;
        let (code, out, err) = app
            .cli(&["auth", "import", "--refresh-token", &app.sim.grant()])
            .await;
        assert_eq!(code, 0, "{out}{err}");
        if round % 3 == 1 {
            // The first request is refused: kills land around the token refresh too.
            app.sim.faults().expire_access_tokens();
        }
        kill_then_restart(&app, &["sync"], &mut rng, &mut range, &mut backfills, &log).await;
        reopen(&mut app).await;
        assert_whole(&app, &all_deleted, &format!("backfill round {round}")).await;
    }
    let backfill_time = started.elapsed();

    // Incremental passes over a firm that keeps changing (15 minutes to an hour between them),
    // with pages of 5 so that the changes of one interval take several pages too, each its own
    // transaction (so kills land between them as often as possible).
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        text.replace("page_size = 20", "page_size = 5")
            .replace("commit_records = 30", "commit_records = 5"),
    )
    .unwrap();
    advance(&app, Duration::from_secs(15 * 60), &mut all_deleted);
    let incremental = sync_to_completion(&app).await;
    assert_whole(&app, &all_deleted, "incremental").await;
    let mut range = incremental.mul_f64(1.5);
    let mut incrementals = Kills::default();
    for round in 0..INCREMENTAL_ROUNDS {
        let quarters = 1 + rng.next() % 4;
        advance(
            &app,
            Duration::from_secs(15 * 60 * quarters),
            &mut all_deleted,
        );
        if round % 3 == 1 {
            app.sim.faults().expire_access_tokens();
        }
        kill_then_restart(
            &app,
            &["sync"],
            &mut rng,
            &mut range,
            &mut incrementals,
            &log,
        )
        .await;
        assert_whole(&app, &all_deleted, &format!("incremental round {round}")).await;
    }
    // Reconciliations killed at random instants, with deletions to confirm by id and lists that
    // only date windows can list whole (invoices and payments capped at 15, ignoring $skip and
    // refusing $orderby; fewer of them share a day than a response holds): kills land while
    // windows are listed and while deletions are confirmed, and the restart resumes each.
    std::fs::write(&app.config_path, &text).unwrap();
    for endpoint in ["invoices", "payments"] {
        app.sim
            .set_dialect(
                Some(endpoint),
                ppsim::DialectPatch {
                    page_cap: Some(Some(15)),
                    skip: Some(ppsim::Opt::Ignore),
                    orderby: Some(ppsim::Opt::Reject),
                    ..Default::default()
                },
            )
            .unwrap();
    }
    let full = {
        let started = Instant::now();
        let (code, out, err) = app.cli(&["sync", "--full"]).await;
        assert_eq!(code, 0, "{out}{err}");
        started.elapsed()
    };
    app.pending_deletes.lock().unwrap().clear();
    assert_whole(
        &app,
        &all_deleted,
        "reconciliation in the partitioned dialect",
    )
    .await;
    let mut range = full;
    let mut reconciliations = Kills::default();
    for round in 0..RECONCILE_ROUNDS {
        for name in ["time_entries", "invoices", "payments", "tasks"] {
            let res = ppsync::resource::find(name).unwrap();
            let victims: Vec<String> = app
                .truth(res)
                .iter()
                .skip(round as usize)
                .take(2)
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect();
            for id in victims {
                app.sim.delete(res.path, &id).unwrap();
                *all_deleted.entry(res.path.to_string()).or_default() += 1;
                *app.pending_deletes
                    .lock()
                    .unwrap()
                    .entry(res.path.to_string())
                    .or_default() += 1;
            }
        }
        kill_then_restart(
            &app,
            &["sync", "--full"],
            &mut rng,
            &mut range,
            &mut reconciliations,
            &log,
        )
        .await;
        app.pending_deletes.lock().unwrap().clear();
        assert_whole(&app, &all_deleted, &format!("reconciliation round {round}")).await;
    }
    assert!(
        reconciliations.landed * 2 >= reconciliations.attempted,
        "reconciliation kills: {reconciliations:?}"
    );
    app.sim.reset_dialect();

    // A reconciliation then accounts for every source deletion: live equals the truth exactly.
    let (code, out, err) = app.cli(&["sync", "--full"]).await;
    assert_eq!(code, 0, "{out}{err}");
    app.pending_deletes.lock().unwrap().clear();
    assert_whole(&app, &all_deleted, "after reconciliation").await;

    eprintln!(
        "kills: backfill {backfills:?} in {backfill_time:?} (un-killed backfill {backfill:?}); \
         incremental {incrementals:?} (un-killed pass {incremental:?}); reconciliation \
         {reconciliations:?} (un-killed {full:?}); total {:?}",
        started.elapsed()
    );
    assert!(
        backfills.landed * 2 >= backfills.attempted,
        "most backfill kills land on a running process: {backfills:?}"
    );
    assert!(
        incrementals.landed * 2 >= incrementals.attempted,
        "incremental kills: {incrementals:?}"
    );
    assert!(
        backfills.grants_lost + incrementals.grants_lost <= 3,
        "grants lost to kills (a window of milliseconds): {backfills:?} {incrementals:?}"
    );
    // A fifth at least (7 to 12 of 28 seen in a backfill, 10 to 11 of 30 in incremental
    // passes): the rest land between listings or in a listing's first transaction.
    assert!(
        backfills.mid_listing * 5 >= backfills.landed
            && incrementals.mid_listing * 5 >= incrementals.landed,
        "kills interrupt listings: {backfills:?} {incrementals:?}"
    );
}
