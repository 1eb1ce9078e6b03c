//! Opening a store: parsing `database_url`, creating and migrating the SQLite file or the
//! PostgreSQL schema, a firm's store beside the home one, and the SQLite checkpointer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Db, Error, Result, SECRETS_SUFFIX, Store, bulk, migrations};

/// Connections per PostgreSQL pool: shared by every firm an instance serves (a page's transaction
/// holds one while the page streams in). With the claim connection and one migration connection
/// (below), what one process opens at most, however many firms it serves.
pub const PG_POOL: u32 = 16;

/// One schema migration at a time in a process: each runs on a connection of its own and they
/// queue on one advisory lock anyway, so an instance claiming its share of a hundred firms at once
/// would otherwise open a connection per firm, beyond the pool, just to wait there.
static MIGRATING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

impl Store {
    /// Opens (creating if needed) and migrates the database named by `url`: a file path, a
    /// `sqlite:` URL, or a `postgres://` URL (tables in `schema`, default `public`).
    pub async fn open(url: &str) -> Result<Store> {
        Self::open_in(url, None).await
    }

    /// As [`Store::open`], with the PostgreSQL schema of the default firm.
    pub async fn open_in(url: &str, schema: Option<&str>) -> Result<Store> {
        Self::open_with(url, schema, OpenMode::Create).await
    }

    /// As [`Store::open_in`], creating the database (SQLite file, PostgreSQL schema) only in
    /// [`OpenMode::Create`]; an existing one is still brought to the latest migration.
    pub async fn open_with(url: &str, schema: Option<&str>, mode: OpenMode) -> Result<Store> {
        let shown = redact(url);
        let open_err = |detail: String| Error::Open {
            url: shown.clone(),
            detail,
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let schema = schema.unwrap_or("public");
            if !valid_schema(schema) || schema.ends_with(SECRETS_SUFFIX) {
                return Err(open_err(format!(
                    "database_schema {schema:?} is not a schema name: use lowercase letters, digits and _, not ending in {SECRETS_SUFFIX}"
                )));
            }
            let opts: PgConnectOptions = url
                .parse()
                .map_err(|e| open_err(format!("not a PostgreSQL URL ({e})")))?;
            let opts = opts.application_name("ppsync");
            let pool = PgPoolOptions::new()
                .max_connections(PG_POOL)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // Records over 2 kB are compressed as they are stored: LZ4 where the
                        // server has it, which costs a fraction of the default pglz's time
                        // (pglz was 7% of the server's work in a backfill) and reads back faster.
                        sqlx::query(
                            "SELECT set_config('default_toast_compression', 'lz4', false) \
                             FROM pg_settings WHERE name = 'default_toast_compression' \
                             AND 'lz4' = ANY (enumvals)",
                        )
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                })
                .connect_with(opts.clone())
                .await
                .map_err(|e| {
                    open_err(format!(
                        "cannot connect ({e}): start PostgreSQL or fix database_url"
                    ))
                })?;
            if mode == OpenMode::Existing && !pg_schema_migrated(&pool, schema).await? {
                return Err(Error::Missing {
                    what: format!("{shown} (schema {schema})"),
                });
            }
            let store = Store {
                db: Db::Pg(pool),
                schema: Some(schema.into()),
                secrets: Some(format!("{schema}{SECRETS_SUFFIX}").into()),
                label: format!("{shown} (schema {schema})").into(),
                path: None,
                pg_opts: Some(Arc::new(opts)),
                fence: None,
                writer: None,
                wal: None,
            };
            store.migrate_pg(schema).await.map_err(|e| {
                open_err(format!(
                    "not a ppsync database ({e}): point database_url (or database_schema) at a ppsync database or a new one"
                ))
            })?;
            return Ok(store);
        }
        let path =
            sqlite_path(url).ok_or_else(|| open_err("not a file path or sqlite: URL".into()))?;
        if mode == OpenMode::Existing && !path.exists() {
            return Err(Error::Missing {
                what: std::path::absolute(&path)
                    .unwrap_or(path)
                    .display()
                    .to_string(),
            });
        }
        Self::open_sqlite(&path).await.map_err(|e| match e {
            Error::Open { detail, .. } => open_err(detail),
            e => e,
        })
    }

    async fn open_sqlite(path: &Path) -> Result<Store> {
        let open_err = |detail: String| Error::Open {
            url: path.display().to_string(),
            detail,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(open_err(format!(
                "the directory {} does not exist: create it or point database_url elsewhere",
                parent.display()
            )));
        }
        // A new file is created private before SQLite opens it: SQLite gives its -wal and -shm
        // the database file's mode, and a file made private only after opening could already
        // have been opened by another user (`restrict_permissions` also covers older files).
        #[cfg(unix)]
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt as _;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(open_err(format!("cannot create: {e}"))),
            }
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // Bulk writes (a backfill) spend most of their time in SQLite: 16 KiB pages hold ~8
            // records each and take a quarter of the write calls (applies to a new file only),
            // and an 8 MiB page cache per connection keeps the id index hot, whose inserts land in
            // random places. Temporary data goes to files: rebuilding a big table's indexes after
            // a backfill sorts on disk instead of growing the process (97 MB peak at scale 10
            // against 118 MB with temp_store=memory, at the same speed).
            .page_size(16384)
            .pragma("temp_store", "file")
            .pragma("cache_size", "-8192")
            // The WAL file is cut back to 64 MiB when it starts over (a backfill grows it).
            .pragma("journal_size_limit", "67108864");
        // Checkpoints are the `checkpoints` task's alone: a small write on another connection
        // would otherwise run one inline whenever the WAL has grown past 1000 pages.
        let opts = opts.pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.clone())
            .await
            .map_err(|e| open_err(format!("cannot open: {e}")))?;
        // Page transactions always run on one connection of their own. SQLite keeps a page cache
        // per connection and drops it when another connection has written: a pool handing out
        // its connections in turn would start every page with a cold cache (re-reading the id
        // index from the file) and fill four caches instead of one.
        // It leaves checkpoints (copying the WAL into the database file, a third of a commit's
        // work in a backfill) to the `checkpoints` task, which runs them on the pool's connections,
        // on another core, while the writer goes on with the next page.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(opts)
            .await
            .map_err(|e| open_err(format!("cannot open: {e}")))?;
        let wal = checkpoints(pool.clone());
        restrict_permissions(path);
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| open_err(format!("cannot open: {e}")))?;
        migrations::migrator(migrations::SQLITE)
            .run_direct(None, &mut *conn, false)
            .await
            .map_err(|e| open_err(format!(
                    "not a ppsync database ({e}): point database_url at a ppsync database or a new file"
                )))?;
        // Indexes a killed first backfill had set aside (store/bulk.rs).
        // IMMEDIATE: it may write, and a daemon may be writing beside this process.
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        bulk::restore(&mut tx, None).await?;
        tx.commit().await?;
        Ok(Store {
            db: Db::Sqlite(pool),
            schema: None,
            secrets: None,
            label: path.display().to_string().into(),
            path: Some(path.to_path_buf()),
            pg_opts: None,
            fence: None,
            writer: Some(writer),
            wal: Some(wal),
        })
    }

    /// Creates `schema` if needed and brings it to the latest migration, on a connection of its own
    /// (the migrator works in the connection's search_path; migration 6 reads the secrets schema's
    /// name from the setting `ppsync.secrets_schema`).
    async fn migrate_pg(&self, schema: &str) -> std::result::Result<(), String> {
        use sqlx::Connection as _;
        let opts = self.pg_opts.as_ref().expect("a PostgreSQL store");
        let _one = MIGRATING.acquire().await.map_err(|e| e.to_string())?;
        let mut conn = sqlx::PgConnection::connect_with(opts)
            .await
            .map_err(|e| e.to_string())?;
        let result = async {
            // Instances starting together would race on CREATE SCHEMA (IF NOT EXISTS is not
            // atomic in PostgreSQL): one at a time, under an advisory lock of our own.
            sqlx::query("SELECT pg_advisory_lock(hashtext('ppsync: schema setup'))")
                .execute(&mut conn)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&mut conn)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SET search_path TO \"{schema}\""
            )))
            .execute(&mut conn)
            .await?;
            sqlx::query("SELECT set_config('ppsync.secrets_schema', $1, false)")
                .bind(self.secrets.as_deref().expect("a PostgreSQL store"))
                .execute(&mut conn)
                .await?;
            // `run_direct`: `run` takes an `Acquire` whose future is not `Send` for every lifetime,
            // and a firm's store is opened inside a spawned task.
            migrations::migrator(migrations::POSTGRES)
                .run_direct(None, &mut conn, false)
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            // Indexes a killed first backfill had set aside (store/bulk.rs).
            bulk::restore_pg(&mut conn, "deferred_indexes", None)
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        let _ = conn.close().await;
        result.map_err(|e| e.to_string())
    }

    /// The store of a named firm beside this one: a sibling SQLite file (`mirror.db` →
    /// `mirror.<firm>.db`), or the PostgreSQL schema named after the firm, on the same pool.
    pub async fn firm(&self, name: &str) -> Result<Store> {
        self.firm_with(name, OpenMode::Create).await
    }

    /// As [`Store::firm`]; in [`OpenMode::Existing`] the firm's mirror must be there already.
    pub async fn firm_with(&self, name: &str, mode: OpenMode) -> Result<Store> {
        match &self.db {
            Db::Sqlite(_) => {
                let path = self.path.as_ref().expect("a SQLite store has a path");
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let ext = path
                    .extension()
                    .map(|e| format!(".{}", e.to_string_lossy()))
                    .unwrap_or_default();
                let file = path.with_file_name(format!("{stem}.{name}{ext}"));
                if mode == OpenMode::Existing && !file.exists() {
                    return Err(Error::Missing {
                        what: format!("{} (firm {name})", file.display()),
                    });
                }
                Self::open_sqlite(&file).await
            }
            Db::Pg(pool) => {
                let opts = self.pg_opts.as_deref().expect("a PostgreSQL store");
                if !valid_schema(name) || name.ends_with(SECRETS_SUFFIX) {
                    return Err(Error::Open {
                        url: self.label.to_string(),
                        detail: format!(
                            "{name:?} is not a firm name: use lowercase letters, digits and _, not ending in {SECRETS_SUFFIX}"
                        ),
                    });
                }
                let label = format!(
                    "postgres://{}@{}:{}/{}",
                    opts.get_username(),
                    opts.get_host(),
                    opts.get_port(),
                    opts.get_database().unwrap_or_default()
                );
                if mode == OpenMode::Existing && !pg_schema_migrated(pool, name).await? {
                    return Err(Error::Missing {
                        what: format!("{label} (schema {name})"),
                    });
                }
                let store = Store {
                    db: Db::Pg(pool.clone()),
                    schema: Some(name.into()),
                    secrets: self.secrets.clone(),
                    label: format!("{label} (schema {name})").into(),
                    path: None,
                    pg_opts: self.pg_opts.clone(),
                    fence: None,
                    writer: None,
                    wal: None,
                };
                store.migrate_pg(name).await.map_err(|e| Error::Open {
                    url: label,
                    detail: format!("schema {name}: {e}"),
                })?;
                Ok(store)
            }
        }
    }
}

/// Whether opening a store may create it: `Create` for what writes the mirror (sync, run, auth,
/// firm add), `Existing` for what only reads it (status, export, report, deadlines, ...), so a
/// wrong path or working directory is an error instead of a new empty mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    Create,
    Existing,
}

/// Whether `schema` holds a ppsync mirror (its migrations table), without creating anything.
async fn pg_schema_migrated(pool: &sqlx::PgPool, schema: &str) -> Result<bool> {
    let found: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("\"{schema}\"._sqlx_migrations"))
        .fetch_one(pool)
        .await?;
    Ok(found)
}

/// A schema (or firm) name that needs no quoting and cannot collide with PostgreSQL's own.
pub fn valid_schema(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 40
        && !s.starts_with("pg_")
        && s != "information_schema"
}

/// The URL with any password replaced, for messages.
pub(super) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

pub(super) fn sqlite_path(url: &str) -> Option<PathBuf> {
    let u = url.trim();
    if u.is_empty() {
        return None;
    }
    let rest = match u.strip_prefix("sqlite:") {
        Some(r) => r.strip_prefix("//").unwrap_or(r),
        None if u.contains("://") => return None,
        None => u,
    };
    let rest = rest.split('?').next().unwrap_or(rest);
    (!rest.is_empty()).then(|| PathBuf::from(rest))
}

/// The database holds the OAuth tokens: keep it, and the WAL beside it (recent pages, tokens
/// among them), private to its owner.
pub(super) fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// The checkpointer of a SQLite store: after each page's commit (and every minute), copies what
/// the WAL holds into the database file (PASSIVE: it never blocks the writer, and the writer's
/// next transaction starts the WAL over once everything is copied). Ends when the pool closes.
fn checkpoints(pool: SqlitePool) -> tokio::sync::mpsc::Sender<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::spawn(async move {
        loop {
            // Also now and then: writes outside page transactions (run history, the outbox)
            // go to the WAL too.
            let woken = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
            if matches!(woken, Ok(None)) || pool.is_closed() {
                break;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "WAL checkpoint deferred");
            }
        }
    });
    tx
}
