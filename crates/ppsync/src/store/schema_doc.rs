//! docs/schema.md, rendered from the resource table (the tables and their typed columns) and the
//! SQLite migrations (each view's purpose is the `-- name: purpose` comment line before its latest
//! `CREATE VIEW`; its columns are read from a freshly migrated store). The test fails when the
//! file differs, so the document cannot drift from the schema.

use std::fmt::Write as _;
use std::path::PathBuf;

use sqlx::Row as _;

use super::Store;
use crate::resource::{ColumnType, Incremental, RESOURCES};

const REGENERATE: &str = "PPSYNC_WRITE_SCHEMA_DOC=1 cargo test -p ppsync --lib schema_doc";

/// The columns every mirrored table has, before its typed columns: name, SQLite, PostgreSQL, meaning.
const COMMON: &[(&str, &str, &str, &str)] = &[
    (
        "id",
        "TEXT",
        "text",
        "the record's key (`id`; a tag's `name`)",
    ),
    ("created_at", "TEXT", "timestamptz", "from the record"),
    ("updated_at", "TEXT", "timestamptz", "from the record"),
    (
        "deleted_at",
        "TEXT",
        "timestamptz",
        "when ppsync found the record gone at the source (NULL: live)",
    ),
    (
        "synced_at",
        "TEXT",
        "timestamptz",
        "when ppsync last wrote the row",
    ),
    ("hash", "INTEGER", "bigint", "content hash of `data`"),
    (
        "seen_run",
        "INTEGER",
        "bigint",
        "the last listing that saw the record (internal)",
    ),
    (
        "data",
        "TEXT",
        "jsonb",
        "the record's JSON exactly as received (on PostgreSQL, with what jsonb refuses replaced)",
    ),
    (
        "raw",
        "—",
        "text",
        "PostgreSQL only: the record as received when jsonb could not hold it, else NULL",
    ),
];

fn types(ty: ColumnType) -> (&'static str, &'static str) {
    match ty {
        ColumnType::Text => ("TEXT", "text"),
        ColumnType::Time => ("TEXT", "timestamptz"),
        ColumnType::Int => ("INTEGER", "bigint"),
        ColumnType::Real => ("REAL", "double precision"),
        ColumnType::Bool => ("INTEGER", "boolean"),
    }
}

/// The SQLite migrations' text, in the order they apply.
fn migrations() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// `(view, purpose)` in the order the views were first created, each with the purpose of its
/// latest definition (a later migration may drop and recreate a view), the `<table>_current`
/// views left out (they are described once). Panics on a view without its purpose line: the
/// document needs one.
fn views() -> Vec<(String, String)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for sql in migrations() {
        let mut comments: Vec<&str> = Vec::new();
        for line in sql.lines() {
            let line = line.trim();
            if let Some(c) = line.strip_prefix("--") {
                comments.push(c.trim());
                continue;
            }
            let name = |rest: &str| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            };
            if let Some(rest) = line.strip_prefix("DROP VIEW ") {
                let name = name(rest.trim_end_matches(';'));
                if let Some(v) = out.iter_mut().find(|(n, _)| *n == name) {
                    v.1 = None;
                }
            } else if let Some(rest) = line.strip_prefix("CREATE VIEW ") {
                let name = name(rest);
                if !name.ends_with("_current") {
                    let purpose = comments
                        .iter()
                        .find_map(|c| c.strip_prefix(&format!("{name}: ")))
                        .unwrap_or_else(|| {
                            panic!("view {name}: no `-- {name}: purpose` line before it")
                        })
                        .to_string();
                    match out.iter_mut().find(|(n, _)| *n == name) {
                        Some(v) => v.1 = Some(purpose),
                        None => out.push((name, Some(purpose))),
                    }
                }
            }
            comments.clear();
        }
    }
    out.into_iter().filter_map(|(n, p)| Some((n, p?))).collect()
}

/// The document, from the resource table, the migration's comments and `store`'s view columns.
async fn render(store: &Store) -> String {
    let pool = store.sqlite_pool().expect("a SQLite store");
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# The mirror's schema\n");
    let _ = writeln!(
        w,
        "Generated from the resource table (`crates/ppsync/src/resource.rs`) and the migrations \
         (`crates/ppsync/migrations/*/`, each view's latest definition): do not edit by hand; regenerate with \
         `{REGENERATE}` (a test fails while this file differs).\n"
    );
    let _ = writeln!(
        w,
        "Both backends hold the same tables, views and columns. Instants are UTC: canonical text \
         `YYYY-MM-DDTHH:MM:SS.ffffffZ` on SQLite (it sorts and compares as time), `timestamptz` on \
         PostgreSQL, where everything lives in the firm's schema (`database_schema`, or the firm's \
         name). ppsync's own bookkeeping tables (sync state, runs, outbox, ...) are internal and \
         may change between versions; the tables and views below are the interface.\n"
    );
    let _ = writeln!(w, "## Tables\n");
    let _ = writeln!(
        w,
        "One table per resource, named after it. Every table starts with these columns:\n"
    );
    let _ = writeln!(w, "| column | SQLite | PostgreSQL | meaning |");
    let _ = writeln!(w, "|---|---|---|---|");
    for (name, lite, pg, what) in COMMON {
        let _ = writeln!(w, "| `{name}` | {lite} | {pg} | {what} |");
    }
    let _ = writeln!(
        w,
        "\nthen its typed columns, read from the record's JSON (the pointer) for filtering and joins. \
         A value of an unexpected type leaves its column NULL (`data` keeps it).\n"
    );
    for res in RESOURCES {
        let listing = match res.incremental {
            Incremental::UpdatedSince => "changes since the cursor",
            Incremental::FullListing => "listed whole each pass",
        };
        let _ = writeln!(w, "### `{}`\n", res.name);
        let _ = writeln!(
            w,
            "`GET /api/v2/{}` · tier {} · {listing} · key `{}` · live rows: `{}_current`\n",
            res.path,
            res.tier.name(),
            res.key,
            res.name
        );
        if res.columns.is_empty() {
            let _ = writeln!(w, "No typed columns.\n");
            continue;
        }
        let _ = writeln!(w, "| column | SQLite | PostgreSQL | from |");
        let _ = writeln!(w, "|---|---|---|---|");
        for c in res.columns {
            let (lite, pg) = types(c.ty);
            let _ = writeln!(w, "| `{}` | {lite} | {pg} | `{}` |", c.name, c.pointer);
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(w, "## Views\n");
    let _ = writeln!(
        w,
        "Created by the migrations on both backends, for applications that read the mirror. They \
         read the tables at query time (nothing is copied), except `upcoming_deadlines`: it reads \
         `deadline_rows`, the engine's own deadlines in the firm's zone (`time_zone`) and in UTC, \
         which ppsync keeps in each page's transaction (a record's deadlines are written with \
         it, a deleted record's removed with its mark) and writes whole, in one transaction, \
         whenever the zone or the `[deadlines]` sources change (at the next pass, or when the \
         daemon starts) and, on SQLite, at the end of a first backfill. `matter_overview` \
         takes its next deadline from `deadline_rows` too, and is the only view that reads a clock \
         (the database's, for that next deadline); filter `upcoming_deadlines` on `due_at` or \
         `local_date` with the time you mean. Custom field dates are read to the millisecond on \
         SQLite, to the microsecond on PostgreSQL; a value that is not a date reads as NULL (the \
         record's `data` keeps it).\n"
    );
    let _ = writeln!(w, "### `<table>_current`\n");
    let _ = writeln!(
        w,
        "One per table above (`matters_current`, `tasks_current`, ...): its rows not deleted at the \
         source (`deleted_at IS NULL`), with all its columns.\n"
    );
    for (name, purpose) in views() {
        let cols: Vec<String> =
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA table_info({name})")))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| format!("`{}`", r.get::<String, _>("name")))
                .collect();
        assert!(!cols.is_empty(), "view {name} has no columns");
        let _ = writeln!(w, "### `{name}`\n");
        let _ = writeln!(w, "{purpose}\n");
        let _ = writeln!(w, "Columns: {}.\n", cols.join(", "));
    }
    s.truncate(s.trim_end().len());
    s.push('\n');
    s
}

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema.md")
}

/// docs/schema.md is what `render` gives; `PPSYNC_WRITE_SCHEMA_DOC=1` writes it instead.
#[tokio::test]
async fn schema_doc_is_current() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("m.db").to_str().unwrap())
        .await
        .unwrap();
    let want = render(&store).await;
    let path = doc_path();
    if std::env::var_os("PPSYNC_WRITE_SCHEMA_DOC").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/schema.md is not what the schema renders: regenerate it with `{REGENERATE}`"
    );
}
