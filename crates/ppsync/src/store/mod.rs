//! The mirror's storage (product.md §7): one table per resource, the sync state, tokens and the run
//! history, behind versioned migrations. SQLite (WAL, one file) is the embedded default;
//! PostgreSQL (`postgres://`) has the same tables with TIMESTAMPTZ instants and JSONB records.
//! Every statement is written once and compiled for both engines (the `on!` macro).
//!
//! Invariant: a cursor or a listing's resume point is written only inside a [`Tx`] that also holds
//! the records it covers; `store` knows nothing of HTTP.
//!
//! This file holds the handle ([`Store`]) and the means every other file shares; each of those
//! holds one family of tables (listed below), its reads on [`Store`] and its writes on [`Tx`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use sqlx::{PgPool, SqlitePool};

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

// The handle's life.
mod error;
mod inspect;
mod open;
mod tx;
// One family of tables each.
mod auth_failure;
mod deadline_rows;
mod deadlines;
mod details;
mod export;
mod firms;
mod issues;
mod outbox;
mod records;
mod runs;
mod state;
mod tap;
mod tokens;
// Coordination between processes and instances.
mod claims;
mod ledger;
mod run_lock;
// The backends' means.
mod bulk;
mod migrations;
mod pg_copy;
mod pg_write;
#[allow(unsafe_code)] // the one exception: see the module's docs
mod sqlite_write;
mod types;

pub use auth_failure::AuthFailure;
pub use claims::{Claims, Fence};
pub use deadline_rows::{DeadlineRewrite, DeadlineRow};
pub use deadlines::{Cancel, Deadline};
pub use details::{DetailBacklog, DetailItem};
pub use error::{Error, Result};
pub use export::ExportRow;
pub use firms::FirmRow;
pub use inspect::{Inspection, inspect};
pub use issues::IssueRow;
pub use ledger::{RequestLedger, shared as shared_ledger, sidecar as ledger_file};
pub use open::{OpenMode, PG_POOL, valid_schema};
pub use outbox::{DeadRow, Notification};
pub use records::Fresh;
pub use run_lock::{RunLock, RunLockError, lock_file as run_lock_file};
pub use runs::{CycleRow, RunRow, RunStats, RunTotals};
pub use state::State;
pub use tap::{TapRow, Window as TapWindow};
pub use tx::Tx;
use tx::TxInner;
pub use types::Ts;

#[cfg(test)]
mod schema_doc;
#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

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

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("at", &self.label).finish()
    }
}

/// Which database engine holds the mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
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

/// The pool of the engine that holds the mirror (`on!` runs one statement on either).
#[derive(Clone)]
enum Db {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

impl Store {
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

    pub async fn close(&self) {
        if let Some(w) = &self.writer {
            w.close().await;
        }
        on!(Db, &self.db, p => p.close().await)
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
