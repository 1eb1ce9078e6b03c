//! The page transaction: a [`Tx`] holds a page's records together with the state that covers
//! them (see `records`, `state`, `issues`, `outbox` for what it writes) and commits them at once,
//! fenced by the fleet's claim on PostgreSQL.

use std::sync::Arc;

use sqlx::{Postgres, Sqlite};

use super::{Db, Error, Fence, Result, Store, claims, pg_copy, qualify};

pub(super) enum TxInner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Pg(sqlx::Transaction<'static, Postgres>),
}

/// A transaction holding records together with the state that covers them.
pub struct Tx {
    pub(super) tx: TxInner,
    pub(super) schema: Option<Arc<str>>,
    pub(super) fence: Option<Fence>,
    pub(super) wal: Option<tokio::sync::mpsc::Sender<()>>,
    /// PostgreSQL: the staging tables of `COPY` batches this transaction created.
    pub(super) staged: pg_copy::Staged,
    /// On PostgreSQL, a place among the process's open page transactions (released on drop).
    _slot: Option<tokio::sync::SemaphorePermit<'static>>,
}

/// Page transactions open at once in a process, on PostgreSQL: fewer than the pool's connections.
/// A page's transaction holds its connection while the page's request waits for the budget, whose
/// ledger takes a connection of the same pool: an instance serving more firms than the pool has
/// connections would otherwise have every connection in an open transaction waiting for the
/// ledger, and every request timing out (seen at 25 firms per instance).
static OPEN_PAGES: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(super::PG_POOL as usize - 4);

impl Store {
    pub async fn begin(&self) -> Result<Tx> {
        let mut slot = None;
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
            Db::Pg(p) => {
                slot = Some(OPEN_PAGES.acquire().await.map_err(|_| Error::Open {
                    url: self.label.to_string(),
                    detail: "shutting down".into(),
                })?);
                TxInner::Pg(p.begin().await?)
            }
        };
        Ok(Tx {
            tx,
            schema: self.schema.clone(),
            fence: self.fence,
            wal: self.wal.clone(),
            staged: pg_copy::Staged::default(),
            _slot: slot,
        })
    }
}

impl Tx {
    /// The backend this transaction runs on (as `Store::backend`).
    pub fn backend(&self) -> super::Backend {
        match self.tx {
            TxInner::Sqlite(_) => super::Backend::Sqlite,
            TxInner::Pg(_) => super::Backend::Postgres,
        }
    }

    /// A table's name as SQL: schema-qualified on PostgreSQL.
    pub(super) fn t(&self, name: &str) -> String {
        qualify(self.schema.as_deref(), name)
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
                // The fencing check (claims.rs): the claim session still holds the firm's lock.
                if let Some(f) = self.fence
                    && !claims::fence_holds(&mut t, f).await?
                {
                    t.rollback().await?;
                    return Err(Error::Fenced);
                }
                t.commit().await?
            }
        }
        Ok(())
    }
}

/// Runs `f`, which blocks on the database, without stalling the other tasks of a multi-threaded
/// runtime (a single-threaded one, as in unit tests, just runs it).
pub(super) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
