//! The mirror's storage (product.md §7): one table per resource, the sync state, tokens and the run
//! history, behind versioned migrations. SQLite (WAL, one file) is the embedded default;
//! PostgreSQL (`postgres://`) has the same tables with TIMESTAMPTZ instants and JSONB records.
//! Every statement is written once and compiled for both engines (the `on!` macro).
//!
//! Invariant: a cursor or a listing's resume point is written only inside a [`Tx`] that also holds
//! the records it covers; `store` knows nothing of HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, QueryBuilder, Row as _, Sqlite, SqlitePool};

use crate::api::{TokenStore, Tokens};
use crate::record::{Row, Value};
use crate::resource::{ColumnType, Resource};
use crate::time::parse_api_time;

mod bulk;
mod migrations;
#[allow(unsafe_code)] // the one exception: see the module's docs
mod sqlite_write;
mod types;
pub use types::Ts;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database_url `{url}`: {detail}")]
    Open { url: String, detail: String },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored sync state for {resource} is unreadable: {detail}")]
    Corrupt { resource: String, detail: String },
    #[error(
        "this instance no longer holds the firm (its claim connection is gone): the page was not committed"
    )]
    Fenced,
}

impl Error {
    /// A value the database refuses — PostgreSQL's data exceptions and integrity violations
    /// (classes 22 and 23), SQLite's constraint, type-mismatch and too-big errors: the record's
    /// or the resource's problem, not the database's, so only that resource is skipped.
    pub fn is_data(&self) -> bool {
        // SQLite's primary result codes: TOOBIG, CONSTRAINT, MISMATCH.
        const SQLITE_DATA: [i32; 3] = [18, 19, 20];
        match self {
            Error::Sql(sqlx::Error::Database(d)) => {
                let code = d.code().unwrap_or_default();
                if d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    code.starts_with("22") || code.starts_with("23")
                } else {
                    code.parse::<i32>()
                        .is_ok_and(|n| SQLITE_DATA.contains(&(n & 0xff)))
                }
            }
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                SQLITE_DATA.contains(&(e.extended_code & 0xff))
            }
            _ => false,
        }
    }

    /// Another writer was in the way (PostgreSQL: a deadlock or serialization failure between
    /// this process's transaction and another's, a lock not available; SQLite: busy or locked
    /// past the busy timeout): trying the same work again is expected to succeed.
    pub fn is_contention(&self) -> bool {
        // SQLite's primary result codes: BUSY, LOCKED.
        const SQLITE_CONTENTION: [i32; 2] = [5, 6];
        match self {
            Error::Sql(sqlx::Error::Database(d)) => {
                let code = d.code().unwrap_or_default();
                if d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    matches!(&*code, "40001" | "40P01" | "55P03")
                } else {
                    code.parse::<i32>()
                        .is_ok_and(|n| SQLITE_CONTENTION.contains(&(n & 0xff)))
                }
            }
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                SQLITE_CONTENTION.contains(&(e.extended_code & 0xff))
            }
            _ => false,
        }
    }
}

/// Everything known about one resource's progress.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// Server time up to which the mirror holds every change (None: never completed a listing).
    pub cursor: Option<DateTime<Utc>>,
    /// The resume point of a listing in flight.
    pub listing: Option<serde_json::Value>,
    /// When the last complete full listing finished.
    pub last_full_at: Option<DateTime<Utc>>,
    /// Our clock when the cursor last moved.
    pub cursor_set_at: Option<DateTime<Utc>>,
    /// The last complete listing could not reach records that exist: what was seen.
    pub incomplete: Option<String>,
    /// The last complete listing could not be proven complete (nothing was seen missing): why.
    pub unproven: Option<String>,
}

/// What one resource's run did: kept in the run history, reported in a pass's outcome.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunStats {
    pub requests: u64,
    pub records_seen: u64,
    pub records_changed: u64,
    pub records_deleted: u64,
}

/// The mirror of one firm: a SQLite file, or a schema in PostgreSQL (the pool shared by every
/// firm of the same database).
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// PostgreSQL: the schema every table name is qualified with.
    schema: Option<Arc<str>>,
    /// PostgreSQL: the schema holding the tokens and the firm registry (`<home schema>_secrets`),
    /// shared by a home store and its firms' stores.
    secrets: Option<Arc<str>>,
    label: Arc<str>,
    path: Option<PathBuf>,
    pg_opts: Option<Arc<PgConnectOptions>>,
    fence: Option<Fence>,
    /// SQLite: the one connection page transactions run on (see `open_sqlite`).
    writer: Option<SqlitePool>,
    /// SQLite: wakes the checkpointer after a page commits (`checkpoints`).
    wal: Option<tokio::sync::mpsc::Sender<()>>,
}

/// An advisory lock that must still be held, by the session `pid`, for a page to commit.
#[derive(Clone, Copy, Debug)]
pub struct Fence {
    pub pid: i32,
    pub key: i64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("at", &self.label).finish()
    }
}

/// Rows per multi-row statement (PostgreSQL; SQLite writes row by row in `sqlite_write`): well
/// under the 65,535 bound parameters of one statement. Only full-size statements stay prepared in
/// the connection's cache (every shorter tail would otherwise be cached as a statement of its own).
const BATCH: usize = 400;

/// Which database engine holds the mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `expr` (an instant) as canonical text, as SQLite stores it.
    fn ts_text(self, expr: &str) -> String {
        match self {
            Backend::Sqlite => expr.to_string(),
            Backend::Postgres => {
                format!("to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
            }
        }
    }

    /// The text at `path` inside the JSON column `col`.
    fn json_text(self, col: &str, path: &[&str]) -> String {
        match self {
            Backend::Sqlite => format!("json_extract({col}, '$.{}')", path.join(".")),
            Backend::Postgres => {
                let (last, init) = path.split_last().expect("a JSON path");
                let mut s = col.to_string();
                for k in init {
                    s.push_str(&format!("->'{k}'"));
                }
                format!("{s}->>'{last}'")
            }
        }
    }

    /// The distinct values of `expr` joined with commas.
    fn distinct_list(self, expr: &str) -> String {
        match self {
            Backend::Sqlite => format!("GROUP_CONCAT(DISTINCT {expr})"),
            Backend::Postgres => format!("STRING_AGG(DISTINCT {expr}, ',')"),
        }
    }
}

#[derive(Clone)]
enum Db {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// Runs `$body` with `$x` bound to the backend's pool (or transaction) and `Dialect` naming its
/// sqlx database type: the SQL and the binds are written once, compiled for both engines.
macro_rules! on {
    ($kind:ident, $e:expr, $x:ident => $body:expr) => {
        match $e {
            $kind::Sqlite($x) => {
                #[allow(dead_code)]
                type Dialect = sqlx::Sqlite;
                $body
            }
            $kind::Pg($x) => {
                #[allow(dead_code)]
                type Dialect = sqlx::Postgres;
                $body
            }
        }
    };
}

mod claims;
mod details;
mod ledger;
mod run_lock;
pub use claims::Claims;
pub use details::{DetailBacklog, DetailItem};
pub use ledger::{RequestLedger, shared as shared_ledger, sidecar as ledger_file};
pub use run_lock::{RunLock, RunLockError, lock_file as run_lock_file};

/// Connections per PostgreSQL pool: shared by every firm an instance serves (a page's transaction
/// holds one while the page streams in).
const PG_POOL: u32 = 16;

impl Store {
    /// Opens (creating if needed) and migrates the database named by `url`: a file path, a
    /// `sqlite:` URL, or a `postgres://` URL (tables in `schema`, default `public`).
    pub async fn open(url: &str) -> Result<Store> {
        Self::open_in(url, None).await
    }

    /// As [`Store::open`], with the PostgreSQL schema of the default firm.
    pub async fn open_in(url: &str, schema: Option<&str>) -> Result<Store> {
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
                .connect_with(opts.clone())
                .await
                .map_err(|e| {
                    open_err(format!(
                        "cannot connect ({e}): start PostgreSQL or fix database_url"
                    ))
                })?;
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
            Ok::<_, sqlx::Error>(())
        }
        .await;
        let _ = conn.close().await;
        result.map_err(|e| e.to_string())
    }

    /// The store of a named firm beside this one: a sibling SQLite file (`mirror.db` →
    /// `mirror.<firm>.db`), or the PostgreSQL schema named after the firm, on the same pool.
    pub async fn firm(&self, name: &str) -> Result<Store> {
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
                Self::open_sqlite(&path.with_file_name(format!("{stem}.{name}{ext}"))).await
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

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Pg(_) => Backend::Postgres,
        }
    }

    /// Where the mirror is, for people: the SQLite file, or the URL (password hidden) and schema.
    pub fn location(&self) -> &str {
        &self.label
    }

    /// The SQLite file (None on PostgreSQL).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The SQLite pool (None on PostgreSQL), for ad-hoc reads in tests and diagnostics.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.db {
            Db::Sqlite(p) => Some(p),
            Db::Pg(_) => None,
        }
    }

    /// The PostgreSQL pool (None on SQLite).
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.db {
            Db::Pg(p) => Some(p),
            Db::Sqlite(_) => None,
        }
    }

    /// This store, committing pages only while `fence` holds (PostgreSQL; the fleet's claim).
    pub fn fenced(mut self, fence: Fence) -> Store {
        self.fence = Some(fence);
        self
    }

    /// How to open another connection to this PostgreSQL database (None on SQLite).
    pub fn pg_connect_options(&self) -> Option<PgConnectOptions> {
        self.pg_opts.as_deref().cloned()
    }

    /// The PostgreSQL schema holding this store's tables (None on SQLite).
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The PostgreSQL schema holding the tokens and the firm registry (None on SQLite): nothing in
    /// it belongs in a grant to the mirror's readers.
    pub fn secrets_schema(&self) -> Option<&str> {
        self.secrets.as_deref()
    }

    /// A table's name as SQL: schema-qualified on PostgreSQL.
    fn t(&self, name: &str) -> String {
        qualify(self.schema.as_deref(), name)
    }

    /// A table of the secrets schema (`oauth_tokens`, `firms`) as SQL: in the SQLite file itself.
    fn secret_t(&self, name: &str) -> String {
        qualify(self.secrets.as_deref(), name)
    }

    /// The `oauth_tokens` row of this store: its only row on SQLite, its schema's on PostgreSQL
    /// (inlined: a schema name is checked by `valid_schema`, lowercase letters, digits and _).
    fn token_key(&self) -> (&'static str, String) {
        match self.schema.as_deref() {
            Some(schema) if self.secrets.is_some() => ("schema_name", format!("'{schema}'")),
            _ => ("id", "1".to_string()),
        }
    }

    pub async fn close(&self) {
        if let Some(w) = &self.writer {
            w.close().await;
        }
        on!(Db, &self.db, p => p.close().await)
    }

    pub async fn state(&self, res: &Resource) -> Result<State> {
        let sql = format!(
            "SELECT cursor, listing, last_full_at, cursor_set_at, incomplete, unproven FROM {} \
             WHERE resource = $1",
            self.t("sync_state")
        );
        type StateRow = (
            Option<Ts>,
            Option<String>,
            Option<Ts>,
            Option<Ts>,
            Option<String>,
            Option<String>,
        );
        let row: Option<StateRow> = on!(Db, &self.db, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(res.name)
                .fetch_optional(p)
                .await
                .map_err(|e| match e {
                    e @ sqlx::Error::ColumnDecode { .. } => Error::Corrupt {
                        resource: res.name.to_string(),
                        detail: e.to_string(),
                    },
                    e => e.into(),
                })?
        });
        let Some((cursor, listing, last_full_at, cursor_set_at, incomplete, unproven)) = row else {
            return Ok(State::default());
        };
        Ok(State {
            cursor: cursor.map(|t| t.0),
            listing: listing
                .map(|s| {
                    serde_json::from_str(&s).map_err(|e| Error::Corrupt {
                        resource: res.name.to_string(),
                        detail: e.to_string(),
                    })
                })
                .transpose()?,
            last_full_at: last_full_at.map(|t| t.0),
            cursor_set_at: cursor_set_at.map(|t| t.0),
            incomplete,
            unproven,
        })
    }

    /// The records of `res` with an issue noted.
    pub async fn issue_ids(&self, res: &Resource) -> Result<std::collections::HashSet<String>> {
        let sql = format!(
            "SELECT DISTINCT record_id FROM {} WHERE resource = $1",
            self.t("record_issues")
        );
        let ids: Vec<String> = on!(Db, &self.db, p => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(res.name).fetch_all(p).await?
        });
        Ok(ids.into_iter().collect())
    }

    /// Records with issues noted, per resource.
    pub async fn issue_counts(&self) -> Result<std::collections::BTreeMap<String, i64>> {
        let sql = format!(
            "SELECT resource, COUNT(DISTINCT record_id) FROM {} GROUP BY resource",
            self.t("record_issues")
        );
        let rows: Vec<(String, i64)> = on!(Db, &self.db, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?
        });
        Ok(rows.into_iter().collect())
    }

    /// The issues noted, newest first: (resource, record id, field, problem, first seen, last seen).
    pub async fn issues(&self, limit: i64) -> Result<Vec<IssueRow>> {
        let sql = format!(
            "SELECT resource, record_id, field, problem, first_seen, last_seen FROM {} \
             ORDER BY last_seen DESC, resource, record_id, field LIMIT $1",
            self.t("record_issues")
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    Ok(IssueRow {
                        resource: r.try_get(0)?,
                        record_id: r.try_get(1)?,
                        field: r.try_get(2)?,
                        problem: r.try_get(3)?,
                        first_seen: r.try_get::<Ts, _>(4)?.text(),
                        last_seen: r.try_get::<Ts, _>(5)?.text(),
                    })
                })
                .collect()
        })
    }

    /// The learned facts of an endpoint (`sync::dialect`), as stored (JSON).
    pub async fn dialect(&self, endpoint: &str) -> Result<Option<String>> {
        let sql = format!(
            "SELECT facts FROM {} WHERE endpoint = $1",
            self.t("dialects")
        );
        Ok(on!(Db, &self.db, p => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(endpoint)
                .fetch_optional(p)
                .await?
        }))
    }

    /// Every endpoint's stored facts, by endpoint.
    pub async fn dialects(&self) -> Result<Vec<(String, String)>> {
        let sql = format!(
            "SELECT endpoint, facts FROM {} ORDER BY endpoint",
            self.t("dialects")
        );
        Ok(on!(Db, &self.db, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?
        }))
    }

    /// Stores an endpoint's facts outside a page's transaction (`ppsync probe`, the request rate).
    pub async fn set_dialect(&self, endpoint: &str, facts: &str, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.set_dialect(endpoint, facts, now).await?;
        tx.commit().await
    }

    pub async fn begin(&self) -> Result<Tx> {
        let tx = match &self.db {
            // IMMEDIATE: the write lock from the start. A deferred transaction that reads (the
            // known hashes) and then writes fails at once with "database is locked" when another
            // process (a CLI pass beside the daemon) committed in between; this one waits its turn.
            Db::Sqlite(p) => TxInner::Sqlite(
                self.writer
                    .as_ref()
                    .unwrap_or(p)
                    .begin_with("BEGIN IMMEDIATE")
                    .await?,
            ),
            Db::Pg(p) => TxInner::Pg(p.begin().await?),
        };
        Ok(Tx {
            tx,
            schema: self.schema.clone(),
            fence: self.fence,
            wal: self.wal.clone(),
        })
    }

    pub async fn start_cycle(
        &self,
        trigger: &str,
        instance: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let sql = format!(
            "INSERT INTO {} (started_at, trigger, instance) VALUES ($1, $2, $3) RETURNING id",
            self.t("sync_cycles")
        );
        Ok(
            on!(Db, &self.db, p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(Ts(now))
            .bind(trigger)
            .bind(instance)
            .fetch_one(p)
            .await?),
        )
    }

    pub async fn finish_cycle(
        &self,
        id: i64,
        now: DateTime<Utc>,
        requests: u64,
        outcome: &str,
    ) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET finished_at = $1, requests = $2, outcome = $3 WHERE id = $4",
            self.t("sync_cycles")
        );
        on!(Db, &self.db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(Ts(now))
            .bind(requests as i64)
            .bind(outcome)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn start_run(
        &self,
        cycle: i64,
        res: &Resource,
        mode: &str,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let sql = format!(
            "INSERT INTO {} (cycle_id, resource, mode, started_at) VALUES ($1, $2, $3, $4) RETURNING id",
            self.t("sync_runs")
        );
        Ok(
            on!(Db, &self.db, p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(cycle)
            .bind(res.name)
            .bind(mode)
            .bind(Ts(now))
            .fetch_one(p)
            .await?),
        )
    }

    pub async fn finish_run(
        &self,
        id: i64,
        now: DateTime<Utc>,
        stats: &RunStats,
        outcome: &str,
        error: Option<&str>,
    ) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET finished_at = $1, requests = $2, records_seen = $3, records_changed = $4, \
             records_deleted = $5, outcome = $6, error = $7 WHERE id = $8",
            self.t("sync_runs")
        );
        on!(Db, &self.db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(Ts(now))
            .bind(stats.requests as i64)
            .bind(stats.records_seen as i64)
            .bind(stats.records_changed as i64)
            .bind(stats.records_deleted as i64)
            .bind(outcome)
            .bind(error)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Live and deleted record counts.
    pub async fn counts(&self, res: &Resource) -> Result<(i64, i64)> {
        let sql = format!(
            "SELECT COUNT(CASE WHEN deleted_at IS NULL THEN 1 END), COUNT(deleted_at) FROM {}",
            self.t(res.name)
        );
        Ok(on!(Db, &self.db, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(p).await?))
    }

    /// Streams the stored records of a resource, sorted by id, to `out`.
    pub async fn export(
        &self,
        res: &Resource,
        include_deleted: bool,
        mut out: impl FnMut(ExportRow<'_>) -> std::io::Result<()>,
    ) -> anyhow::Result<u64> {
        let cols: Vec<&str> = res.columns.iter().map(|c| c.name).collect();
        let extra = if cols.is_empty() {
            String::new()
        } else {
            format!(", {}", cols.join(", "))
        };
        let filter = if include_deleted {
            ""
        } else {
            "WHERE deleted_at IS NULL"
        };
        // PostgreSQL: the record as received where jsonb could not hold it (`raw`).
        let data = match self.db {
            Db::Sqlite(_) => "data",
            Db::Pg(_) => "COALESCE(raw, data::text) AS data",
        };
        let sql = format!(
            "SELECT id, created_at, updated_at, deleted_at, {data}{extra} FROM {} {filter} ORDER BY id",
            self.t(res.name)
        );
        let mut n = 0;
        on!(Db, &self.db, p => {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(p);
            while let Some(row) = rows.try_next().await? {
                let mut typed = Vec::with_capacity(res.columns.len());
                for (i, c) in res.columns.iter().enumerate() {
                    let idx = 5 + i;
                    let v = match c.ty {
                        ColumnType::Int => row.try_get::<Option<i64>, _>(idx)?.map(|v| v.to_string()),
                        ColumnType::Real => row.try_get::<Option<f64>, _>(idx)?.map(|v| v.to_string()),
                        ColumnType::Bool => row.try_get::<Option<bool>, _>(idx)?.map(|v| v.to_string()),
                        ColumnType::Time => row.try_get::<Option<Ts>, _>(idx)?.map(Ts::text),
                        ColumnType::Text => row.try_get::<Option<String>, _>(idx)?,
                    };
                    typed.push(v);
                }
                let data: String = row.try_get("data")?;
                out(ExportRow {
                    id: row.try_get("id")?,
                    created_at: row.try_get::<Option<Ts>, _>("created_at")?.map(Ts::text),
                    updated_at: row.try_get::<Option<Ts>, _>("updated_at")?.map(Ts::text),
                    deleted_at: row.try_get::<Option<Ts>, _>("deleted_at")?.map(Ts::text),
                    data,
                    columns: &typed,
                })?;
                n += 1;
            }
        });
        Ok(n)
    }

    /// Recent run history, newest first.
    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT id, cycle_id, resource, mode, started_at, finished_at, requests, records_seen, \
             records_changed, records_deleted, outcome, error FROM {} ORDER BY id DESC LIMIT $1",
            self.t("sync_runs")
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(p).await?;
            rows.iter().map(run_row).collect()
        })
    }

    /// The finished cycles with their request and record totals, oldest first.
    pub async fn cycles(&self) -> Result<Vec<CycleRow>> {
        self.cycles_where("c.finished_at IS NOT NULL").await
    }

    async fn cycles_where(&self, filter: &str) -> Result<Vec<CycleRow>> {
        let sql = format!(
            "SELECT c.id, c.started_at, c.trigger, c.requests, c.outcome, \
             CAST(COALESCE(SUM(r.records_seen), 0) AS BIGINT) AS seen, \
             CAST(COALESCE(SUM(r.records_changed), 0) AS BIGINT) AS changed, \
             CAST(COALESCE(SUM(r.records_deleted), 0) AS BIGINT) AS deleted, COUNT(r.id) AS resources, \
             COALESCE({}, '') AS modes, c.instance, c.finished_at \
             FROM {} c LEFT JOIN {} r ON r.cycle_id = c.id \
             WHERE {filter} GROUP BY c.id ORDER BY c.id",
            self.backend().distinct_list("r.mode"),
            self.t("sync_cycles"),
            self.t("sync_runs")
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    Ok(CycleRow {
                        id: r.try_get("id")?,
                        started_at: r.try_get::<Ts, _>("started_at")?.text(),
                        finished_at: r.try_get::<Ts, _>("finished_at")?.text(),
                        trigger: r.try_get("trigger")?,
                        requests: r.try_get("requests")?,
                        outcome: r.try_get("outcome")?,
                        records_seen: r.try_get("seen")?,
                        records_changed: r.try_get("changed")?,
                        records_deleted: r.try_get("deleted")?,
                        resources: r.try_get("resources")?,
                        modes: r.try_get("modes")?,
                        instance: r.try_get("instance")?,
                    })
                })
                .collect()
        })
    }

    /// Requests of the passes that finished since `since` (token calls included), each at its
    /// finish: what a new budget must count as already spent.
    pub async fn requests_since(&self, since: DateTime<Utc>) -> Result<Vec<(DateTime<Utc>, u64)>> {
        let sql = format!(
            "SELECT finished_at, requests FROM {} WHERE finished_at >= $1 AND requests > 0",
            self.t("sync_cycles")
        );
        on!(Db, &self.db, p => {
            let rows: Vec<(Ts, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(Ts(since))
                .fetch_all(p)
                .await?;
            Ok(rows.into_iter().map(|(t, n)| (t.0, n.max(0) as u64)).collect())
        })
    }

    /// When each pass of `trigger` started since `since`, in order.
    pub async fn cycle_starts(
        &self,
        trigger: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>> {
        let sql = format!(
            "SELECT started_at FROM {} WHERE trigger = $1 AND started_at >= $2 ORDER BY id",
            self.t("sync_cycles")
        );
        on!(Db, &self.db, p => {
            let rows: Vec<Ts> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(trigger)
                .bind(Ts(since))
                .fetch_all(p)
                .await?;
            Ok(rows.into_iter().map(|t| t.0).collect())
        })
    }

    /// The latest finished cycle, if any.
    pub async fn cycles_last(&self) -> Result<Option<CycleRow>> {
        Ok(self
            .cycles_where(&format!(
                "c.id = (SELECT MAX(id) FROM {} WHERE finished_at IS NOT NULL)",
                self.t("sync_cycles")
            ))
            .await?
            .pop())
    }

    /// Live records whose `column` falls in [from, to] and that have no outbox row
    /// `<kind>:<id>:<column>` yet (deadlines that time brought into the window).
    pub async fn due_between(
        &self,
        res: &Resource,
        column: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kind: &str,
    ) -> Result<Vec<Box<RawValue>>> {
        let sql = format!(
            "SELECT t.data FROM {t} t WHERE t.deleted_at IS NULL AND t.{column} >= $1 AND t.{column} <= $2 \
             AND NOT EXISTS (SELECT 1 FROM {o} o WHERE o.id = $3 || ':' || t.id || ':' || {due})",
            t = self.t(res.name),
            o = self.t("outbox"),
            due = self.backend().ts_text(&format!("t.{column}")),
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(Ts(from))
                .bind(Ts(to))
                .bind(kind)
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    r.try_get::<Box<RawValue>, _>(0).map_err(|e| Error::Corrupt {
                        resource: res.name.to_string(),
                        detail: e.to_string(),
                    })
                })
                .collect()
        })
    }

    /// Pending outbox rows due for delivery, oldest first: (id, payload, attempts).
    pub async fn outbox_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(String, String, u32)>> {
        let sql = format!(
            "SELECT id, payload, attempts FROM {} WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY created_at, id LIMIT $2",
            self.t("outbox")
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(Ts(now))
                .bind(limit)
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get::<i64, _>(2)?.max(0) as u32,
                    ))
                })
                .collect()
        })
    }

    /// Where outbox rows change status: on SQLite the page writer's own connection, so the
    /// delivery task's writes queue behind a page transaction instead of racing it (a deferred
    /// transaction that read before another connection wrote cannot write: SQLITE_BUSY_SNAPSHOT).
    fn outbox_db(&self) -> Db {
        match (&self.db, &self.writer) {
            (Db::Sqlite(_), Some(w)) => Db::Sqlite(w.clone()),
            _ => self.db.clone(),
        }
    }

    pub async fn outbox_delivered(&self, id: &str, now: DateTime<Utc>) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET status = 'delivered', delivered_at = $1, attempts = attempts + 1 WHERE id = $2",
            self.t("outbox")
        );
        on!(Db, &self.outbox_db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(Ts(now))
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// A failed try: the row waits until `next`. `counted`: the try counts against the row
    /// (towards `dead`); not when the sink as a whole looked down.
    pub async fn outbox_failed(
        &self,
        id: &str,
        next: DateTime<Utc>,
        error: &str,
        counted: bool,
    ) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET attempts = attempts + $1, next_attempt_at = $2, last_error = $3 \
             WHERE id = $4 AND status = 'pending'",
            self.t("outbox")
        );
        on!(Db, &self.outbox_db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(counted))
            .bind(Ts(next))
            .bind(error)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// A row's last allowed try failed: set aside as `dead` (kept; `outbox_retry` revives it).
    pub async fn outbox_dead(&self, id: &str, error: &str) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET status = 'dead', attempts = attempts + 1, last_error = $1 \
             WHERE id = $2 AND status = 'pending'",
            self.t("outbox")
        );
        on!(Db, &self.outbox_db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(error)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// When the earliest pending row falls due (None: nothing pending).
    pub async fn outbox_next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let sql = format!(
            "SELECT next_attempt_at FROM {} WHERE status = 'pending' ORDER BY next_attempt_at LIMIT 1",
            self.t("outbox")
        );
        on!(Db, &self.db, p => {
            let t: Option<Ts> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_optional(p)
                .await?;
            Ok(t.map(|t| t.0))
        })
    }

    /// The status of each of `ids` that is in the outbox.
    pub async fn outbox_status(
        &self,
        ids: &[String],
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let sql = format!("SELECT status FROM {} WHERE id = $1", self.t("outbox"));
        let mut out = std::collections::BTreeMap::new();
        for id in ids {
            let status: Option<String> = on!(Db, &self.db, p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .fetch_optional(p)
                .await?);
            if let Some(s) = status {
                out.insert(id.clone(), s);
            }
        }
        Ok(out)
    }

    /// Puts dead rows (all of them, or those of `ids`) back to pending, due `now`, with their
    /// full number of tries again. Returns how many.
    pub async fn outbox_retry(&self, ids: Option<&[String]>, now: DateTime<Utc>) -> Result<u64> {
        let sql = format!(
            "UPDATE {} SET status = 'pending', attempts = 0, next_attempt_at = $1 \
             WHERE status = 'dead' AND ($2 OR id = $3)",
            self.t("outbox")
        );
        let all = ids.is_none();
        let ids = ids
            .map(<[String]>::to_vec)
            .unwrap_or_else(|| vec![String::new()]);
        let mut n = 0;
        for id in &ids {
            n += on!(Db, &self.outbox_db(), p => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(Ts(now))
                .bind(all)
                .bind(id)
                .execute(p)
                .await?
                .rows_affected());
        }
        Ok(n)
    }

    /// Dead rows, oldest first (at most `limit`).
    pub async fn outbox_dead_rows(&self, limit: i64) -> Result<Vec<DeadRow>> {
        let sql = format!(
            "SELECT id, kind, attempts, COALESCE(last_error, '') FROM {} WHERE status = 'dead' \
             ORDER BY created_at, id LIMIT $1",
            self.t("outbox")
        );
        on!(Db, &self.db, p => {
            let rows: Vec<(String, String, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(limit)
                .fetch_all(p)
                .await?;
            Ok(rows
                .into_iter()
                .map(|(id, kind, attempts, last_error)| DeadRow { id, kind, attempts, last_error })
                .collect())
        })
    }

    /// Outbox rows per status.
    pub async fn outbox_counts(&self) -> Result<std::collections::BTreeMap<String, i64>> {
        let sql = format!(
            "SELECT kind || '/' || status, COUNT(*) FROM {} GROUP BY kind, status",
            self.t("outbox")
        );
        on!(Db, &self.db, p => {
            let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?;
            Ok(rows.into_iter().collect())
        })
    }

    /// Open tasks and events due in [from, to], soonest first: (resource, due, subject, matter, id).
    pub async fn deadlines(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Deadline>> {
        let matter = self
            .backend()
            .json_text("data", &["matter_ref", "display_name"]);
        let sql = format!(
            "SELECT 'task' AS kind, id, due_date AS due, subject, {matter} AS matter, status \
             FROM {tasks} WHERE deleted_at IS NULL AND due_date >= $1 AND due_date <= $2 AND COALESCE(status, '') <> 'Completed' \
             UNION ALL \
             SELECT 'event', id, start_date_time, subject, {matter}, NULL \
             FROM {events} WHERE deleted_at IS NULL AND start_date_time >= $1 AND start_date_time <= $2 \
             ORDER BY due, id",
            tasks = self.t("tasks"),
            events = self.t("events"),
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(Ts(from))
                .bind(Ts(to))
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Deadline {
                        kind: r.try_get(0)?,
                        id: r.try_get(1)?,
                        due: r.try_get::<Ts, _>(2)?.text(),
                        subject: r.try_get(3)?,
                        matter: r.try_get(4)?,
                        status: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }
}

/// A registered firm (the registry lives in the home store).
#[derive(Clone, Debug)]
pub struct FirmRow {
    pub name: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// A TOML fragment laid over the config for this firm.
    pub settings: String,
    pub created_at: String,
}

impl Store {
    /// The registered firms, by name.
    pub async fn firms(&self) -> Result<Vec<FirmRow>> {
        let sql = format!(
            "SELECT name, client_id, client_secret, settings, created_at FROM {} ORDER BY name",
            self.secret_t("firms")
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    Ok(FirmRow {
                        name: r.try_get(0)?,
                        client_id: r.try_get(1)?,
                        client_secret: SecretString::from(r.try_get::<String, _>(2)?),
                        settings: r.try_get(3)?,
                        created_at: r.try_get::<Ts, _>(4)?.text(),
                    })
                })
                .collect()
        })
    }

    /// Registers a firm; false if the name is taken.
    pub async fn add_firm(&self, firm: &FirmRow, now: DateTime<Utc>) -> Result<bool> {
        let sql = format!(
            "INSERT INTO {} (name, client_id, client_secret, settings, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO NOTHING",
            self.secret_t("firms")
        );
        Ok(on!(Db, &self.db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&firm.name)
            .bind(&firm.client_id)
            .bind(firm.client_secret.expose_secret())
            .bind(&firm.settings)
            .bind(Ts(now))
            .execute(p)
            .await?
            .rows_affected())
            == 1)
    }

    /// Unregisters a firm (its mirror stays where it is); false if it was not registered.
    pub async fn remove_firm(&self, name: &str) -> Result<bool> {
        let sql = format!("DELETE FROM {} WHERE name = $1", self.secret_t("firms"));
        Ok(on!(Db, &self.db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .execute(p)
            .await?
            .rows_affected())
            == 1)
    }
}

/// A home schema's secrets schema is its name with this suffix (`public_secrets`); no firm or home
/// schema may end so, lest it be taken for another home's secrets schema.
pub const SECRETS_SUFFIX: &str = "_secrets";

fn qualify(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(s) => format!("\"{s}\".{name}"),
        None => name.to_string(),
    }
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
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// A notification set aside after its last allowed try failed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeadRow {
    pub id: String,
    pub kind: String,
    pub attempts: i64,
    pub last_error: String,
}

/// A task or event coming due.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Deadline {
    pub kind: String,
    pub id: String,
    pub due: String,
    pub subject: Option<String>,
    pub matter: Option<String>,
    pub status: Option<String>,
}

/// One exported record.
pub struct ExportRow<'a> {
    pub id: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub deleted_at: Option<String>,
    pub data: String,
    pub columns: &'a [Option<String>],
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub cycle_id: Option<i64>,
    pub resource: String,
    pub mode: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub requests: i64,
    pub records_seen: i64,
    pub records_changed: i64,
    pub records_deleted: i64,
    pub outcome: String,
    pub error: Option<String>,
}

/// A run-history row, on either backend.
fn run_row<R: sqlx::Row>(r: &R) -> Result<RunRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Ts: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RunRow {
        id: r.try_get("id")?,
        cycle_id: r.try_get("cycle_id")?,
        resource: r.try_get("resource")?,
        mode: r.try_get("mode")?,
        started_at: r.try_get::<Ts, _>("started_at")?.text(),
        finished_at: r.try_get::<Option<Ts>, _>("finished_at")?.map(Ts::text),
        requests: r.try_get("requests")?,
        records_seen: r.try_get("records_seen")?,
        records_changed: r.try_get("records_changed")?,
        records_deleted: r.try_get("records_deleted")?,
        outcome: r.try_get("outcome")?,
        error: r.try_get("error")?,
    })
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CycleRow {
    pub id: i64,
    pub started_at: String,
    pub finished_at: String,
    pub trigger: String,
    pub requests: i64,
    pub outcome: String,
    pub records_seen: i64,
    pub records_changed: i64,
    pub records_deleted: i64,
    pub resources: i64,
    pub modes: String,
    /// The `ppsync run` instance that ran it (None: the CLI).
    pub instance: Option<String>,
}

enum TxInner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Pg(sqlx::Transaction<'static, Postgres>),
}

/// A transaction holding records together with the state that covers them.
pub struct Tx {
    tx: TxInner,
    schema: Option<Arc<str>>,
    fence: Option<Fence>,
    wal: Option<tokio::sync::mpsc::Sender<()>>,
}

impl Tx {
    fn t(&self, name: &str) -> String {
        qualify(self.schema.as_deref(), name)
    }

    /// Upserts rows (idempotent: replaying changes nothing) and marks every row seen by `run`.
    /// Returns the records that were new or changed (by content hash) or came back from deletion,
    /// each with the value its `watch` column had before (None: the record is new).
    ///
    /// `only_this_run`: every row the table holds was written by `run` (it was empty when the run
    /// began). SQLite then skips looking stored rows up first (a changed one reports no prior
    /// value); PostgreSQL ignores it.
    pub async fn upsert(
        &mut self,
        res: &Resource,
        rows: &mut Vec<Row>,
        run: i64,
        now: DateTime<Utc>,
        watch: Option<&str>,
        only_this_run: bool,
    ) -> Result<Vec<Fresh>> {
        // The last copy of an id wins: a later read is never older than an earlier one in a pass.
        dedup_keep_last(rows);
        let table = self.t(res.name);
        let tx = match &mut self.tx {
            TxInner::Sqlite(tx) => {
                let mut handle = tx.lock_handle().await?;
                let write = sqlite_write::Write {
                    table: &table,
                    res,
                    run,
                    now,
                    watch,
                    only_this_run,
                };
                return blocking(|| write.rows(&mut handle, rows));
            }
            TxInner::Pg(tx) => tx,
        };
        let mut changed = Vec::new();
        let mut insert = format!(
            "INSERT INTO {table} (id, created_at, updated_at, deleted_at, synced_at, hash, seen_run, data, raw"
        );
        for c in res.columns {
            insert.push_str(", ");
            insert.push_str(c.name);
        }
        insert.push_str(") ");
        let mut on_conflict = String::from(
            " ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, updated_at = excluded.updated_at, \
             deleted_at = NULL, synced_at = excluded.synced_at, hash = excluded.hash, seen_run = excluded.seen_run, \
             data = excluded.data, raw = excluded.raw",
        );
        for c in res.columns {
            on_conflict.push_str(&format!(", {0} = excluded.{0}", c.name));
        }
        let touch = format!("UPDATE {table} SET seen_run = ");
        for chunk in rows.chunks(BATCH) {
            let known = known_hashes_pg(tx, &table, chunk, watch).await?;
            let (fresh, same): (Vec<&Row>, Vec<&Row>) = chunk.iter().partition(|r| {
                known
                    .get(r.id.as_str())
                    .is_none_or(|k| (k.0, k.1) != (r.hash, false))
            });
            let persistent = chunk.len() == BATCH;
            if !fresh.is_empty() {
                changed.extend(fresh.iter().map(|r| Fresh {
                    id: r.id.clone(),
                    prior: known.get(r.id.as_str()).map(|k| k.2.clone()),
                }));
                let mut q = QueryBuilder::<Postgres>::new(insert.as_str());
                q.push_values(&fresh, |mut b, r| {
                    b.push_bind(r.id.as_str())
                        .push_bind(r.created_at.map(Ts))
                        .push_bind(r.updated_at.map(Ts))
                        .push_bind(None::<Ts>)
                        .push_bind(Ts(now))
                        .push_bind(r.hash)
                        .push_bind(run)
                        // The record's text, checked JSON already: PostgreSQL parses it once more.
                        // What jsonb cannot hold (NUL, lone surrogates) is U+FFFD there, and the
                        // record as received is kept in `raw`.
                        .push_bind(r.jsonb.as_deref().unwrap_or(&r.data))
                        .push_unseparated("::jsonb")
                        .push_bind((r.jsonb.is_some() || r.keep_raw).then_some(&*r.data));
                    for (v, c) in r.columns.iter().zip(res.columns) {
                        match v {
                            // A NULL typed as its column (PostgreSQL checks).
                            Value::Null => match c.ty {
                                ColumnType::Text => b.push_bind(None::<String>),
                                ColumnType::Time => b.push_bind(None::<Ts>),
                                ColumnType::Int => b.push_bind(None::<i64>),
                                ColumnType::Real => b.push_bind(None::<f64>),
                                ColumnType::Bool => b.push_bind(None::<bool>),
                            },
                            Value::Text(s) => b.push_bind(s.as_str()),
                            Value::Int(i) => b.push_bind(*i),
                            Value::Real(f) => b.push_bind(*f),
                            Value::Bool(x) => b.push_bind(*x),
                            Value::Time(t) => b.push_bind(Ts(*t)),
                        };
                    }
                });
                q.push(on_conflict.as_str());
                q.build().persistent(persistent).execute(&mut **tx).await?;
            }
            if !same.is_empty() {
                let mut q = QueryBuilder::<Postgres>::new(touch.as_str());
                q.push_bind(run).push(" WHERE id IN (");
                let mut sep = q.separated(", ");
                for r in same {
                    sep.push_bind(r.id.as_str());
                }
                q.push(")");
                q.build().persistent(persistent).execute(&mut **tx).await?;
            }
        }
        Ok(changed)
    }

    /// Whether the resource's table holds no row at all.
    pub async fn is_empty(&mut self, res: &Resource) -> Result<bool> {
        let sql = format!("SELECT NOT EXISTS (SELECT 1 FROM {})", self.t(res.name));
        Ok(on!(TxInner, &mut self.tx, tx => {
            sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(sql)).fetch_one(&mut **tx).await?
        }))
    }

    /// How many live records were not seen by runs since `first_run` (what a reconciliation would mark).
    pub async fn count_unseen(&mut self, res: &Resource, first_run: i64) -> Result<i64> {
        // A range scan on the seen_run index, not a read of every row.
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE seen_run < $1 AND deleted_at IS NULL",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(first_run)
            .fetch_one(&mut **tx)
            .await?),
        )
    }

    /// How many records runs since `first_run` have seen (what a listing has reached so far).
    pub async fn count_seen(&mut self, res: &Resource, first_run: i64) -> Result<i64> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE seen_run >= $1",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(first_run)
            .fetch_one(&mut **tx)
            .await?),
        )
    }

    /// Up to `limit` of the live records not seen since `first_run`, spread over the table by
    /// their content hash (a sample that favours no id range).
    pub async fn unseen_sample(
        &mut self,
        res: &Resource,
        first_run: i64,
        limit: u32,
    ) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT id FROM {} WHERE seen_run < $1 AND deleted_at IS NULL ORDER BY hash LIMIT $2",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(first_run)
            .bind(i64::from(limit))
            .fetch_all(&mut **tx)
            .await?),
        )
    }

    /// Notes what could not be read of these records (`record_issues`): a row per record and
    /// field, its first sighting kept.
    pub async fn note_issues(
        &mut self,
        res: &Resource,
        rows: &[&Row],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (resource, record_id, field, problem, sample, first_seen, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (resource, record_id, field) DO UPDATE \
             SET problem = excluded.problem, sample = excluded.sample, last_seen = excluded.last_seen",
            self.t("record_issues")
        );
        for row in rows {
            // A keyless record cannot be looked up in its table: the start of its text is kept.
            let sample: Option<String> = row.keyless.then(|| row.data.chars().take(500).collect());
            for issue in &row.issues {
                on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(res.name)
                    .bind(row.id.as_str())
                    .bind(issue.field.as_str())
                    .bind(issue.problem.as_str())
                    .bind(sample.as_deref())
                    .bind(Ts(now))
                    .execute(&mut **tx)
                    .await?
                    .rows_affected());
            }
        }
        Ok(())
    }

    /// Forgets the issues of records received clean again.
    pub async fn clear_issues(&mut self, res: &Resource, ids: &[&str]) -> Result<()> {
        let sql = format!(
            "DELETE FROM {} WHERE resource = $1 AND record_id = $2",
            self.t("record_issues")
        );
        for id in ids {
            on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(res.name)
                .bind(*id)
                .execute(&mut **tx)
                .await?
                .rows_affected());
        }
        Ok(())
    }

    /// Live records whose typed `column` is NULL.
    pub async fn count_null(&mut self, res: &Resource, column: &str) -> Result<i64> {
        debug_assert!(res.columns.iter().any(|c| c.name == column));
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {column} IS NULL AND deleted_at IS NULL",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut **tx)
            .await?),
        )
    }

    /// Up to `limit` records seen since `first_run` (a control for by-id reads).
    pub async fn seen_sample(
        &mut self,
        res: &Resource,
        first_run: i64,
        limit: u32,
    ) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT id FROM {} WHERE seen_run >= $1 AND deleted_at IS NULL LIMIT $2",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(first_run)
            .bind(i64::from(limit))
            .fetch_all(&mut **tx)
            .await?),
        )
    }

    /// Marks the given live records deleted (never removes them).
    pub async fn mark_deleted(
        &mut self,
        res: &Resource,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let sql = format!(
            "UPDATE {} SET deleted_at = $1, synced_at = $1 WHERE id = $2 AND deleted_at IS NULL",
            self.t(res.name)
        );
        let mut n = 0;
        for id in ids {
            n += on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(Ts(now))
                .bind(id)
                .execute(&mut **tx)
                .await?
                .rows_affected());
        }
        Ok(n)
    }

    /// Stores an endpoint's learned facts (`sync::dialect`, JSON) with the page that taught them.
    pub async fn set_dialect(
        &mut self,
        endpoint: &str,
        facts: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (endpoint, facts, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (endpoint) DO UPDATE SET facts = excluded.facts, updated_at = excluded.updated_at",
            self.t("dialects")
        );
        on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(endpoint)
            .bind(facts)
            .bind(Ts(now))
            .execute(&mut **tx)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Records how a listing of `res` ended: what it could not reach (`incomplete`) and why it
    /// could not be proven complete (`unproven`); None for both: proven complete.
    pub async fn set_completeness(
        &mut self,
        res: &Resource,
        incomplete: Option<&str>,
        unproven: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (resource, incomplete, unproven, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (resource) DO UPDATE SET incomplete = excluded.incomplete, \
               unproven = excluded.unproven, updated_at = excluded.updated_at",
            self.t("sync_state")
        );
        on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(res.name)
            .bind(incomplete)
            .bind(unproven)
            .bind(Ts(now))
            .execute(&mut **tx)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Live records of a resource (reads the whole table: only for the mass-deletion guard).
    pub async fn count_live(&mut self, res: &Resource) -> Result<i64> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE deleted_at IS NULL",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut **tx)
            .await?),
        )
    }

    /// Marks live records not seen since `first_run` as deleted (never removes them).
    pub async fn mark_unseen_deleted(
        &mut self,
        res: &Resource,
        first_run: i64,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let sql = format!(
            "UPDATE {} SET deleted_at = $1, synced_at = $1 WHERE seen_run < $2 AND deleted_at IS NULL",
            self.t(res.name)
        );
        Ok(
            on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(Ts(now))
            .bind(first_run)
            .execute(&mut **tx)
            .await?
            .rows_affected()),
        )
    }

    /// Saves (or clears) the resume point of the listing in flight.
    pub async fn set_listing(
        &mut self,
        res: &Resource,
        listing: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (resource, listing, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (resource) DO UPDATE SET listing = excluded.listing, updated_at = excluded.updated_at",
            self.t("sync_state")
        );
        on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(res.name)
            .bind(listing.map(|l| l.to_string()))
            .bind(Ts(now))
            .execute(&mut **tx)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Moves the cursor and ends the listing in flight; `full` records that this was a complete
    /// listing. An incremental listing never moves it backwards; a complete one sets it as it is
    /// (it listed everything as of its signpost: so a cursor set too far ahead is repaired).
    pub async fn set_cursor(
        &mut self,
        res: &Resource,
        cursor: DateTime<Utc>,
        full: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {t} AS s (resource, cursor, cursor_set_at, listing, last_full_at, updated_at) \
             VALUES ($1, $2, $4, NULL, $3, $4) \
             ON CONFLICT (resource) DO UPDATE SET cursor_set_at = excluded.cursor_set_at, \
               cursor = CASE WHEN s.cursor IS NULL OR excluded.cursor > s.cursor \
                               OR excluded.last_full_at IS NOT NULL \
                             THEN excluded.cursor ELSE s.cursor END, \
               listing = NULL, \
               last_full_at = COALESCE(excluded.last_full_at, s.last_full_at), \
               updated_at = excluded.updated_at",
            t = self.t("sync_state")
        );
        on!(TxInner, &mut self.tx, tx => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(res.name)
            .bind(Ts(cursor))
            .bind(full.then_some(Ts(now)))
            .bind(Ts(now))
            .execute(&mut **tx)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Enqueues notifications; an id already in the outbox is left alone (stable ids dedupe).
    pub async fn enqueue(&mut self, items: &[Notification], now: DateTime<Utc>) -> Result<u64> {
        if let TxInner::Sqlite(tx) = &mut self.tx {
            let mut handle = tx.lock_handle().await?;
            return blocking(|| sqlite_write::enqueue(&mut handle, items, now));
        }
        // PostgreSQL: multi-row statements (a backfill of tasks enqueues one row per task); rows are
        // inserted in order, so a duplicate id within a statement is left alone like one stored.
        let mut n = 0;
        let head = format!(
            "INSERT INTO {} (id, kind, resource, record_id, payload, created_at, status, next_attempt_at, delivered_at) ",
            self.t("outbox")
        );
        for chunk in items.chunks(BATCH) {
            let mut seen = std::collections::HashSet::new();
            // PostgreSQL refuses one statement that conflicts with itself: drop repeats first.
            let chunk: Vec<&Notification> = chunk.iter().filter(|i| seen.insert(&i.id)).collect();
            let persistent = chunk.len() == BATCH;
            n += on!(TxInner, &mut self.tx, tx => {
                let mut q = QueryBuilder::<Dialect>::new(head.as_str());
                q.push_values(&chunk, |mut b, item| {
                    b.push_bind(item.id.as_str())
                        .push_bind(item.kind.as_str())
                        .push_bind(item.resource.as_str())
                        .push_bind(item.record_id.as_str())
                        .push_bind(item.payload.to_string())
                        .push_bind(Ts(now))
                        .push_bind(if item.suppressed {
                            "suppressed"
                        } else {
                            "pending"
                        })
                        .push_bind(Ts(now))
                        .push_bind(item.suppressed.then_some(Ts(now)));
                });
                q.push(" ON CONFLICT (id) DO NOTHING");
                q.build()
                    .persistent(persistent)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
            });
        }
        Ok(n)
    }

    pub async fn commit(self) -> Result<()> {
        match self.tx {
            TxInner::Sqlite(t) => {
                t.commit().await?;
                if let Some(wal) = &self.wal {
                    // Full: a checkpoint is already due, which covers this commit too.
                    let _ = wal.try_send(());
                }
            }
            TxInner::Pg(mut t) => {
                if let Some(f) = self.fence {
                    // The fencing check: the claim session still holds the firm's lock. Checked
                    // last, so another instance can have taken the firm over only within the
                    // commit itself.
                    let held: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
                         AND pid = $1 AND objsubid = 1 AND classid::bigint = $2 AND objid::bigint = $3)",
                    )
                    .bind(f.pid)
                    .bind((f.key >> 32) & 0xffff_ffff)
                    .bind(f.key & 0xffff_ffff)
                    .fetch_one(&mut *t)
                    .await?;
                    if !held {
                        t.rollback().await?;
                        return Err(Error::Fenced);
                    }
                }
                t.commit().await?
            }
        }
        Ok(())
    }
}

/// A record the upsert wrote, with its watched column's previous value (None: it is new).
#[derive(Clone, Debug)]
pub struct Fresh {
    pub id: String,
    pub prior: Option<Option<String>>,
}

/// An outbox row to write.
#[derive(Clone, Debug)]
pub struct Notification {
    pub id: String,
    pub kind: String,
    pub resource: String,
    pub record_id: String,
    pub payload: serde_json::Value,
    /// Recorded but never delivered (first backfill).
    pub suppressed: bool,
}

/// (hash, deleted, watched column) of the rows already stored (PostgreSQL; SQLite looks them up
/// one by one in `sqlite_write`).
async fn known_hashes_pg(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    table: &str,
    rows: &[Row],
    watch: Option<&str>,
) -> Result<std::collections::HashMap<String, (i64, bool, Option<String>)>> {
    let watched = watch.unwrap_or("NULL");
    let head =
        format!("SELECT id, hash, deleted_at IS NOT NULL, {watched} FROM {table} WHERE id IN (");
    let mut q = QueryBuilder::<Postgres>::new(head);
    let mut sep = q.separated(", ");
    for r in rows {
        sep.push_bind(r.id.as_str());
    }
    q.push(")");
    let found = q
        .build()
        .persistent(rows.len() == BATCH)
        .fetch_all(&mut **tx)
        .await?;
    found
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>(0)?,
                (
                    r.try_get::<i64, _>(1)?,
                    r.try_get::<bool, _>(2)?,
                    // An instant (due dates) as canonical text; any other column as is.
                    match r.try_get::<Option<Ts>, _>(3) {
                        Ok(t) => t.map(Ts::text),
                        Err(_) => r.try_get::<Option<String>, _>(3)?,
                    },
                ),
            ))
        })
        .collect()
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

/// Runs `f`, which blocks on the database, without stalling the other tasks of a multi-threaded
/// runtime (a single-threaded one, as in unit tests, just runs it).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn dedup_keep_last(rows: &mut Vec<Row>) {
    // Borrowed ids, not copies: this runs on the writer's path for every batch (the whole
    // dedup was ~2% of that task's time in a scale-1 backfill's profile).
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let mut keep = vec![false; rows.len()];
    for (i, r) in rows.iter().enumerate().rev() {
        keep[i] = seen.insert(r.id.as_str());
    }
    drop(seen);
    let mut i = 0;
    rows.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

impl TokenStore for Store {
    fn load(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<Option<Tokens>>> + Send + '_>,
    > {
        Box::pin(async move {
            let (key, value) = self.token_key();
            let sql = format!(
                "SELECT access_token, refresh_token, expires_at FROM {} WHERE {key} = {value}",
                self.secret_t("oauth_tokens")
            );
            let row: Option<(String, String, String)> = on!(Db, &self.db, p => {
                match sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(p).await? {
                    None => None,
                    Some(r) => Some((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        // Read as text where it is text, so a damaged value is reported as such.
                        match r.try_get::<Ts, _>(2) {
                            Ok(t) => t.text(),
                            Err(e) => anyhow::bail!("the stored token expiry is not a timestamp ({e})"),
                        },
                    )),
                }
            });
            let Some((access, refresh, expires)) = row else {
                return Ok(None);
            };
            anyhow::ensure!(
                !refresh.trim().is_empty(),
                "the stored refresh token is empty"
            );
            Ok(Some(Tokens {
                access_token: SecretString::from(access),
                refresh_token: SecretString::from(refresh),
                expires_at: parse_api_time(&expires).ok_or_else(|| {
                    anyhow::anyhow!("the stored token expiry {expires:?} is not a timestamp")
                })?,
            }))
        })
    }

    fn save<'a>(
        &'a self,
        t: &'a Tokens,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let (key, value) = self.token_key();
            let sql = format!(
                "INSERT INTO {} ({key}, access_token, refresh_token, expires_at, updated_at) \
                 VALUES ({value}, $1, $2, $3, $4) ON CONFLICT ({key}) DO UPDATE SET access_token = excluded.access_token, \
                 refresh_token = excluded.refresh_token, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                self.secret_t("oauth_tokens")
            );
            match &self.db {
                Db::Sqlite(p) => {
                    // The spent refresh token's successor must survive a power cut too, not only
                    // a kill: this one write is synced to disk (synchronous=FULL) on its own
                    // connection, which then goes back to the pool's NORMAL.
                    let mut conn = p.acquire().await?;
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                    let written = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(t.access_token.expose_secret())
                        .bind(t.refresh_token.expose_secret())
                        .bind(Ts(t.expires_at))
                        .bind(Ts(Utc::now()))
                        .execute(&mut *conn)
                        .await;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    written?;
                }
                Db::Pg(p) => {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(t.access_token.expose_secret())
                        .bind(t.refresh_token.expose_secret())
                        .bind(Ts(t.expires_at))
                        .bind(Ts(Utc::now()))
                        .execute(p)
                        .await?;
                }
            }
            Ok(())
        })
    }
}

impl Store {
    /// Whether a token pair is stored: its expiry and when it was written.
    pub async fn token_status(&self) -> Result<Option<(DateTime<Utc>, String)>> {
        let (key, value) = self.token_key();
        let sql = format!(
            "SELECT expires_at, updated_at FROM {} WHERE {key} = {value}",
            self.secret_t("oauth_tokens")
        );
        on!(Db, &self.db, p => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(p).await?;
            Ok(match row {
                Some(r) => match (r.try_get::<Ts, _>(0), r.try_get::<Ts, _>(1)) {
                    (Ok(e), Ok(u)) => Some((e.0, u.text())),
                    _ => None,
                },
                None => None,
            })
        })
    }
}

/// A noted record issue (`record_issues`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct IssueRow {
    pub resource: String,
    pub record_id: String,
    pub field: String,
    pub problem: String,
    pub first_seen: String,
    pub last_seen: String,
}

/// One resource's run history in short (for the status endpoint).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunTotals {
    /// Runs recorded for the resource.
    pub runs: i64,
    /// Records written (new, changed or undeleted) over every run.
    pub records_changed: i64,
    /// The latest run.
    pub last: RunRow,
}

impl Store {
    /// Per resource (by name): totals over the run history and its latest run. Read-only.
    pub async fn run_totals(&self) -> Result<std::collections::HashMap<String, RunTotals>> {
        let runs = self.t("sync_runs");
        let sql = format!(
            "SELECT r.id, r.cycle_id, r.resource, r.mode, r.started_at, r.finished_at, r.requests, \
             r.records_seen, r.records_changed, r.records_deleted, r.outcome, r.error, \
             t.runs AS total_runs, t.changed AS total_changed \
             FROM (SELECT resource, COUNT(*) AS runs, CAST(COALESCE(SUM(records_changed), 0) AS BIGINT) AS changed, \
                   MAX(id) AS last_id FROM {runs} GROUP BY resource) t \
             JOIN {runs} r ON r.id = t.last_id"
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    let last = run_row(r)?;
                    Ok((
                        last.resource.clone(),
                        RunTotals {
                            runs: r.try_get("total_runs")?,
                            records_changed: r.try_get("total_changed")?,
                            last,
                        },
                    ))
                })
                .collect()
        })
    }
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
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
fn restrict_permissions(path: &Path) {
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

#[cfg(test)]
mod tests;

/// Throwaway PostgreSQL databases for the test suites and benchmarks (the `testing` feature,
/// which the package's own tests and bench turn on; the unit tests have it anyway).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use sqlx::Connection as _;

    /// The server the tests use: `PPSYNC_TEST_PG_URL`, else the local one `scripts/test.sh` starts.
    pub fn admin_url() -> String {
        std::env::var("PPSYNC_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    /// Whether the integration suite runs against PostgreSQL (`PPSYNC_TEST_BACKEND=postgres`).
    pub fn postgres_selected() -> bool {
        std::env::var("PPSYNC_TEST_BACKEND").is_ok_and(|b| b.eq_ignore_ascii_case("postgres"))
    }

    /// Creates an empty database named `ppsync_t_*` and returns its URL. `scripts/test.sh` drops
    /// leftovers before each run.
    pub async fn fresh_database() -> anyhow::Result<String> {
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.map_err(|e| {
            anyhow::anyhow!(
                "PostgreSQL at {admin} is not reachable ({e}): start it (./scripts/test.sh does) or set PPSYNC_TEST_PG_URL"
            )
        })?;
        let name = format!(
            "ppsync_t_{}_{:012x}",
            std::process::id(),
            rand::random::<u64>() & 0xffff_ffff_ffff
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin)?;
        url.set_path(&name);
        Ok(url.to_string())
    }

    /// [`fresh_database`] from synchronous code (on a thread of its own, so it works inside a runtime).
    pub fn fresh_database_blocking() -> anyhow::Result<String> {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(fresh_database())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("creating a test database panicked"))?
    }
}
