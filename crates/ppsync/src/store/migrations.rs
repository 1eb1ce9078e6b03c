//! The schema's versioned migrations, embedded in the binary, one list per backend.
//!
//! Why not `sqlx::migrate!`: that macro is sqlx's `macros` feature, whose proc-macro crate builds
//! both database drivers again for the compiler's host (the bundled SQLite's C source included;
//! `cargo build --timings` showed each driver twice, ~2.5 minutes of unit time), for what is one
//! directory listing. The list below says the
//! same: version, description and SQL as `migrate!` would read them from the file names
//! (`0001_initial.sql` → 1, "initial"), so the checksums recorded in existing databases match. A
//! test checks it against the directories, so a new file cannot be forgotten here.

use std::borrow::Cow;

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// `(version, description, sql)`.
type Source = (i64, &'static str, &'static str);

pub(super) const SQLITE: &[Source] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "outbox",
        include_str!("../../migrations/sqlite/0002_outbox.sql"),
    ),
    (
        3,
        "seen run index",
        include_str!("../../migrations/sqlite/0003_seen_run_index.sql"),
    ),
    (
        4,
        "firms",
        include_str!("../../migrations/sqlite/0004_firms.sql"),
    ),
    (
        5,
        "deferred indexes",
        include_str!("../../migrations/sqlite/0005_deferred_indexes.sql"),
    ),
    (
        6,
        "dialects",
        include_str!("../../migrations/sqlite/0006_dialects.sql"),
    ),
    (
        7,
        "record issues",
        include_str!("../../migrations/sqlite/0007_record_issues.sql"),
    ),
    (
        8,
        "details",
        include_str!("../../migrations/sqlite/0008_details.sql"),
    ),
    (
        9,
        "views",
        include_str!("../../migrations/sqlite/0009_views.sql"),
    ),
    (
        10,
        "auth failure",
        include_str!("../../migrations/sqlite/0010_auth_failure.sql"),
    ),
    (
        11,
        "deadline rows",
        include_str!("../../migrations/sqlite/0011_deadline_rows.sql"),
    ),
    (
        12,
        "deadline rows per record",
        include_str!("../../migrations/sqlite/0012_deadline_rows_per_record.sql"),
    ),
];

pub(super) const POSTGRES: &[Source] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "firms",
        include_str!("../../migrations/postgres/0002_firms.sql"),
    ),
    (
        3,
        "dialects",
        include_str!("../../migrations/postgres/0003_dialects.sql"),
    ),
    (
        4,
        "record issues",
        include_str!("../../migrations/postgres/0004_record_issues.sql"),
    ),
    (
        5,
        "details and ledger",
        include_str!("../../migrations/postgres/0005_details_and_ledger.sql"),
    ),
    (
        6,
        "secrets schema",
        include_str!("../../migrations/postgres/0006_secrets_schema.sql"),
    ),
    (
        7,
        "views",
        include_str!("../../migrations/postgres/0007_views.sql"),
    ),
    (
        8,
        "auth failure",
        include_str!("../../migrations/postgres/0008_auth_failure.sql"),
    ),
    (
        9,
        "deadline rows",
        include_str!("../../migrations/postgres/0009_deadline_rows.sql"),
    ),
    (
        10,
        "deferred indexes",
        include_str!("../../migrations/postgres/0010_deferred_indexes.sql"),
    ),
    (
        11,
        "deadline rows per record",
        include_str!("../../migrations/postgres/0011_deadline_rows_per_record.sql"),
    ),
];

/// The migrator for one backend's list.
pub(super) fn migrator(sources: &[Source]) -> Migrator {
    Migrator::with_migrations(
        sources
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(sql).into_sql_str(),
                    // As `migrate!` reads it: a file can opt out of the migration's transaction.
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each list names every file of its directory, in order, as `migrate!` would.
    #[test]
    fn the_lists_are_the_migration_directories() {
        for (dir, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .map(|p| {
                    let name = p.file_stem().unwrap().to_str().unwrap().to_owned();
                    let (version, description) = name.split_once('_').unwrap();
                    let sql = std::fs::read_to_string(&p).unwrap();
                    (version.parse().unwrap(), description.replace('_', " "), sql)
                })
                .collect();
            files.sort();
            let listed: Vec<(i64, String, String)> = list
                .iter()
                .map(|&(v, d, s)| (v, d.to_owned(), s.to_owned()))
                .collect();
            assert_eq!(listed, files, "migrations/{dir} and migrations.rs differ");
        }
    }
}
