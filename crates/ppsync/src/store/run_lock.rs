//! One `ppsync run` per mirror. A second daemon on the same SQLite file, or on the same
//! PostgreSQL default firm, would sync every resource twice and halve the budget for nothing:
//! it refuses to start. (A registered firm on PostgreSQL is claimed by the fleet's own advisory
//! locks; a CLI pass beside the daemon is allowed and shares its budget through the ledger.)
//!
//! SQLite: an exclusive lock on a file beside the mirror (`<mirror>-lock`), held open for the
//! daemon's life; the kernel releases it when the process ends, however it ends. PostgreSQL: a
//! session advisory lock on a connection of its own, released when that connection ends.

use std::path::PathBuf;

use sqlx::Connection as _;

use super::{Db, Store};

/// Held while the daemon runs; dropping it releases the mirror.
pub struct RunLock {
    _file: Option<std::fs::File>,
    _conn: Option<sqlx::PgConnection>,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum RunLockError {
    #[error(
        "another `ppsync run` already serves this mirror ({0}): stop it first (a one-off `ppsync sync` beside it is fine)"
    )]
    Held(String),
    #[error("cannot take the daemon's lock on {what}: {detail}")]
    Failed { what: String, detail: String },
}

/// The lock file beside a SQLite mirror.
pub fn lock_file(path: &std::path::Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-lock");
    PathBuf::from(p)
}

impl Store {
    /// Takes this mirror's daemon lock, or says who holds it.
    pub async fn lock_runs(&self) -> Result<RunLock, RunLockError> {
        match &self.db {
            Db::Sqlite(_) => {
                let Some(path) = &self.path else {
                    return Ok(RunLock {
                        _file: None,
                        _conn: None,
                    });
                };
                let at = lock_file(path);
                let failed = |e: std::io::Error| RunLockError::Failed {
                    what: at.display().to_string(),
                    detail: e.to_string(),
                };
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&at)
                    .map_err(failed)?;
                match file.try_lock() {
                    Ok(()) => Ok(RunLock {
                        _file: Some(file),
                        _conn: None,
                    }),
                    Err(std::fs::TryLockError::WouldBlock) => {
                        Err(RunLockError::Held(path.display().to_string()))
                    }
                    Err(std::fs::TryLockError::Error(e)) => Err(failed(e)),
                }
            }
            Db::Pg(_) => {
                let schema = self.schema.as_deref().unwrap_or("public").to_string();
                let what = format!("PostgreSQL schema {schema}");
                let failed = |e: sqlx::Error| RunLockError::Failed {
                    what: what.clone(),
                    detail: e.to_string(),
                };
                let opts = self
                    .pg_connect_options()
                    .expect("a PostgreSQL store has its options")
                    .application_name("ppsync run (default firm)");
                let mut conn = sqlx::PgConnection::connect_with(&opts)
                    .await
                    .map_err(failed)?;
                // The key the fleet would use for a firm named "": no registered firm has it.
                let key = super::claims::lock_key(&schema, "");
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(failed)?;
                if !got {
                    let _ = conn.close().await;
                    return Err(RunLockError::Held(what));
                }
                Ok(RunLock {
                    _file: None,
                    _conn: Some(conn),
                })
            }
        }
    }
}
