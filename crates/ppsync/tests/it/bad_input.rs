//! product.md §10: every bad input gets a clear one-line error that names the thing and the fix,
//! a non-zero exit, and leaves the mirror and cursors as they were; no panic on any input from the
//! network. Each case runs the real binary after a first successful `sync` and compares the
//! database's records and sync state before and after.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ppsync::resource::RESOURCES;

use crate::support::*;

/// Every record (all columns that matter) and every resource's sync state, as text.
async fn snapshot(app: &TestApp) -> String {
    let store = &app.engine.store;
    let mut out = String::new();
    for res in RESOURCES {
        let sql = format!(
            "SELECT id, created_at, updated_at, deleted_at, synced_at, hash, data FROM {} ORDER BY id",
            res.name
        );
        for line in rows_text(store, &sql).await {
            out.push_str(&format!("{} {line}\n", res.name));
        }
    }
    for line in rows_text(
        store,
        "SELECT resource, cursor, cursor_set_at, listing, last_full_at FROM sync_state ORDER BY resource",
    )
    .await
    {
        out.push_str(&format!("state {line}\n"));
    }
    out
}

/// The cursors `ppsync status --json` shows.
async fn cursors(app: &TestApp) -> Vec<(String, serde_json::Value)> {
    let (code, out, err) = app.cli(&["status", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["cursor"].clone()))
        .collect()
}

/// What a run printed on stderr must be one `error: ` line containing every `needle`.
#[track_caller]
fn assert_one_error_line(
    case: &str,
    (code, out, err): &(i32, String, String),
    want_code: i32,
    needles: &[&str],
) {
    assert_eq!(
        *code, want_code,
        "{case}: exit code; stdout {out:?} stderr {err:?}"
    );
    assert!(
        !err.contains("panicked") && !out.contains("panicked"),
        "{case}: panicked: {err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{case}: one line on stderr, got {err:?}");
    assert!(lines[0].starts_with("error: "), "{case}: {err:?}");
    for n in needles {
        assert!(
            lines[0].contains(n),
            "{case}: {:?} should name {n:?}",
            lines[0]
        );
    }
}

/// Per-resource failures: every stderr line is `skipped <resource>: ...` naming the resource.
#[track_caller]
fn assert_skipped(
    case: &str,
    (code, out, err): &(i32, String, String),
    resource: &str,
    needles: &[&str],
) {
    assert_eq!(*code, 1, "{case}: exit code; stdout {out:?} stderr {err:?}");
    assert!(!err.contains("panicked"), "{case}: panicked: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{case}: one line on stderr, got {err:?}");
    let prefix = format!("skipped {resource}: ");
    assert!(lines[0].starts_with(&prefix), "{case}: {err:?}");
    for n in needles {
        assert!(
            lines[0].contains(n),
            "{case}: {:?} should name {n:?}",
            lines[0]
        );
    }
    assert!(out.contains("1 skipped"), "{case}: {out}");
}

/// A config like the app's, with `edit` applied to its text, written beside it as `name`.
fn config_variant(app: &TestApp, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let path = app.config_path.parent().unwrap().join(name);
    std::fs::write(&path, edit(text)).unwrap();
    path
}

async fn cli_with(config: &Path, args: &[&str]) -> (i32, String, String) {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&config, &args)
    })
    .await
    .unwrap()
}

/// Replaces the `database_url` line of a config.
fn with_database(text: String, db: &Path) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("database_url") {
                format!("database_url = {:?}", db.to_str().unwrap())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_one_named_error_and_changes_nothing() {
    let app = app(0.01, "[sync]\nmax_attempts = 2").await;
    let dir = app.config_path.parent().unwrap().to_path_buf();
    let first = app.cli(&["sync"]).await;
    assert_eq!(first.0, 0, "{first:?}");
    // Changes the next incremental pass would pick up, so every listing below has records.
    app.advance(Duration::from_secs(30 * 60));
    let before = snapshot(&app).await;
    let cursors_before = cursors(&app).await;
    let matters_export = app.cli(&["export", "matters"]).await;
    assert_eq!(matters_export.0, 0);
    let unchanged = async |case: &str| {
        assert!(
            snapshot(&app).await == before,
            "{case}: the mirror or a cursor changed"
        );
    };

    // --- Configuration ---
    let cfg = config_variant(&app, "unknown-key.toml", |t| {
        format!("databse_url = \"x.db\"\n{t}")
    });
    let r = cli_with(&cfg, &["sync"]).await;
    assert_one_error_line("unknown key", &r, 2, &["databse_url", "database_url"]);
    unchanged("unknown key").await;

    let cfg = config_variant(&app, "unknown-section-key.toml", |t| {
        t.replace("[sync]\n", "[sync]\noverlapp = \"15m\"\n")
    });
    let r = cli_with(&cfg, &["sync"]).await;
    assert_one_error_line("unknown [sync] key", &r, 2, &["overlapp", "overlap"]);

    let cfg = config_variant(&app, "bad-overlap.toml", |t| {
        t.replace("[sync]\n", "[sync]\noverlap = \"fifteen\"\n")
    });
    let r = cli_with(&cfg, &["sync"]).await;
    assert_one_error_line("bad duration", &r, 2, &["sync.overlap", "fifteen", "15m"]);
    unchanged("bad duration").await;

    let cfg = config_variant(&app, "bad-type.toml", |t| {
        t.replace("[sync]\n", "[sync]\npage_size = \"fifty\"\n")
    });
    let r = cli_with(&cfg, &["sync"]).await;
    assert_one_error_line("bad type", &r, 2, &["page_size", "fifty"]);

    let cfg = config_variant(&app, "bad-toml.toml", |t| format!("{t}\n[sync\n"));
    let r = cli_with(&cfg, &["sync"]).await;
    assert_one_error_line("broken TOML", &r, 2, &["bad-toml.toml"]);

    let r = cli_with(&dir.join("nowhere.toml"), &["sync"]).await;
    assert_one_error_line("missing --config", &r, 2, &["nowhere.toml", "ppsync init"]);

    // --- Database ---
    let missing = dir.join("no-such-dir").join("mirror.db");
    let cfg = config_variant(&app, "missing-dir.toml", |t| with_database(t, &missing));
    let r = cli_with(&cfg, &["sync"]).await;
    assert_one_error_line(
        "database in a missing directory",
        &r,
        2,
        &["database_url", "no-such-dir", "does not exist"],
    );
    assert!(!missing.parent().unwrap().exists(), "nothing was created");

    let garbage = dir.join("garbage.db");
    let junk = b"this is not a database, it is a shopping list: eggs, milk\n".repeat(100);
    std::fs::write(&garbage, &junk).unwrap();
    let cfg = config_variant(&app, "garbage-db.toml", |t| with_database(t, &garbage));
    for args in [&["sync"][..], &["status"], &["export", "matters"]] {
        let r = cli_with(&cfg, args).await;
        assert_one_error_line(
            &format!("not a database ({args:?})"),
            &r,
            2,
            &["database_url", "garbage.db"],
        );
    }
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        junk,
        "the file that is not a database is left alone"
    );

    // --- Credentials ---
    let fresh = dir.join("fresh.db");
    let cfg = config_variant(&app, "fresh-db.toml", |t| with_database(t, &fresh));
    let r = cli_with(&cfg, &["sync"]).await;
    assert_one_error_line(
        "no credentials",
        &r,
        2,
        &["no credentials", "ppsync auth login"],
    );
    let r = cli_with(&cfg, &["auth", "status"]).await;
    assert_one_error_line(
        "auth status without credentials",
        &r,
        2,
        &["no credentials", "ppsync auth login"],
    );

    let store = &app.engine.store;
    let tokens = tokens_table(store);
    let tokens_sql = &format!("SELECT access_token, refresh_token, expires_at FROM {tokens}");
    let tokens_before = rows_text(store, tokens_sql).await;
    let saved = ppsync::api::TokenStore::load(store).await.unwrap().unwrap();
    let mut cases = vec![(
        "empty refresh token",
        format!("UPDATE {tokens} SET refresh_token = ''"),
    )];
    if store.backend() == ppsync::store::Backend::Sqlite {
        // PostgreSQL's TIMESTAMPTZ column cannot hold this damage.
        cases.push((
            "token expiry not a timestamp",
            format!("UPDATE {tokens} SET expires_at = 'garbage'"),
        ));
    }
    for (case, sql) in cases {
        exec(store, &sql).await;
        app.sim.clear_journal();
        let r = app.cli(&["sync"]).await;
        assert_one_error_line(case, &r, 2, &["ppsync auth login"]);
        assert!(app.sim.journal().is_empty(), "{case}: nothing sent");
        unchanged(case).await;
        ppsync::api::TokenStore::save(store, &saved).await.unwrap();
    }
    assert_eq!(rows_text(store, tokens_sql).await, tokens_before);

    let r = app
        .cli(&[
            "auth",
            "import",
            "--refresh-token",
            "0123456789abcdef0123456789abcdef",
        ])
        .await;
    assert_one_error_line(
        "invalid refresh token to import",
        &r,
        2,
        &["invalid_grant", "ppsync auth login"],
    );
    let r = app.cli(&["auth", "import", "--refresh-token", "  "]).await;
    assert_one_error_line("empty refresh token to import", &r, 2, &["--refresh-token"]);
    let tokens_now = rows_text(store, tokens_sql).await;
    assert_eq!(
        tokens_now, tokens_before,
        "a rejected import keeps the stored credentials"
    );

    // --- Names ---
    let r = app.cli(&["sync", "--resource", "widgets"]).await;
    assert_one_error_line(
        "unknown resource to sync",
        &r,
        2,
        &["widgets", "matters", "call_logs"],
    );
    let r = app.cli(&["export", "widgets"]).await;
    assert_one_error_line("unknown resource to export", &r, 2, &["widgets", "matters"]);
    let unwritable = dir.join("no-such-dir").join("matters.jsonl");
    let r = app
        .cli(&["export", "matters", "-o", unwritable.to_str().unwrap()])
        .await;
    assert_one_error_line(
        "export to an unwritable path",
        &r,
        2,
        &["no-such-dir/matters.jsonl", "--output"],
    );
    unchanged("names").await;

    // --- What the network sends ---
    app.sim.faults().add(ppsim::Fault::TruncateBody {
        count: 10,
        after: 0,
    });
    let r = app.cli(&["sync", "--resource", "matters"]).await;
    app.sim.faults().clear();
    assert_skipped("truncated JSON", &r, "matters", &["matters", "cut off"]);
    unchanged("truncated JSON").await;

    for status in [200, 502] {
        app.sim
            .faults()
            .add(ppsim::Fault::HtmlError { count: 10, status });
        let r = app.cli(&["sync", "--resource", "matters"]).await;
        app.sim.faults().clear();
        assert_skipped(
            &format!("HTML page ({status})"),
            &r,
            "matters",
            &["matters"],
        );
        assert!(
            r.2.contains("html") || r.2.contains("HTML"),
            "names what came: {}",
            r.2
        );
        unchanged("HTML page").await;
    }

    // A record of an odd shape is no longer bad input: it is stored as received and
    // noted (tests/it/odd_records.rs).

    // A revoked grant: one loud error naming the fix, no retry loop.
    app.sim.faults().revoke_all();
    app.sim.clear_journal();
    let r = app.cli(&["sync"]).await;
    assert_one_error_line(
        "revoked refresh token",
        &r,
        2,
        &["rejected", "ppsync auth login"],
    );
    let journal = app.sim.journal();
    let token_calls = journal.iter().filter(|e| e.path == "/oauth/token").count();
    assert_eq!(token_calls, 1, "one refresh attempt, no loop: {journal:#?}");
    assert!(journal.len() <= 2, "the pass stopped at once: {journal:#?}");
    unchanged("revoked refresh token").await;

    assert_eq!(
        cursors(&app).await,
        cursors_before,
        "status shows the same cursors"
    );
    assert_eq!(
        app.cli(&["export", "matters"]).await,
        matters_export,
        "export shows the same records"
    );

    // Authorized again, the next pass completes and the mirror equals the truth.
    let r = app
        .cli(&["auth", "import", "--refresh-token", &app.sim.grant()])
        .await;
    assert_eq!(r.0, 0, "{r:?}");
    let r = app.cli(&["sync"]).await;
    assert_eq!(r.0, 0, "{r:?}");
    app.assert_equal_to_truth().await;
}
