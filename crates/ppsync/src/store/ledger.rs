//! The request ledger: every API request of a firm, whichever process made it, written before it
//! is sent (`api::budget::Ledger`). One budget per firm: a CLI pass beside the daemon, a killed or
//! crashed process, another instance after a takeover — each sees what the others spent.
//!
//! On PostgreSQL it is a table in the firm's schema, taken under a transaction-scoped advisory
//! lock. On SQLite it lives in a file beside the mirror (`<mirror>-budget`), because a page
//! transaction holds the mirror's write lock while the next page is requested: a ledger in the
//! same file would make every request wait for that commit. The file holds only the last minutes'
//! requests; deleting it while nothing runs loses nothing else.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use super::{Db, Result, Store};

type Fut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// One process's view of a firm's ledger.
pub struct RequestLedger {
    inner: Arc<Inner>,
}

struct Inner {
    db: LedgerDb,
    /// The table as SQL (schema-qualified on PostgreSQL).
    table: String,
    /// PostgreSQL: the transaction-scoped advisory lock that makes a take atomic across
    /// processes (SQLite: `BEGIN IMMEDIATE` does).
    lock: Option<i64>,
    /// This process (host, pid, and a count: several engines of one process on one store each
    /// have their own).
    holder: String,
    window: chrono::Duration,
    /// How long an unanswered request counts as in flight (the request timeout).
    in_flight: chrono::Duration,
}

enum LedgerDb {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// The SQLite ledger's file beside the mirror.
pub fn sidecar(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-budget");
    PathBuf::from(p)
}

fn holder() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let started = Utc::now().timestamp_micros();
    format!(
        "{host}-{}-{started:x}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Store {
    /// This store's request ledger, for a budget of `window` whose requests may take up to
    /// `in_flight` (None: an in-memory SQLite mirror, which no other process can share).
    pub async fn request_ledger(
        &self,
        window: Duration,
        in_flight: Duration,
    ) -> Result<Option<RequestLedger>> {
        let (db, table, lock) = match &self.db {
            Db::Pg(pool) => (
                LedgerDb::Pg(pool.clone()),
                self.t("request_ledger"),
                Some(
                    sqlx::postgres::PgAdvisoryLock::new(format!(
                        "ppsync ledger {}",
                        self.schema.as_deref().unwrap_or("public")
                    ))
                    .key()
                    .as_bigint()
                    .unwrap_or_default(),
                ),
            ),
            Db::Sqlite(_) => {
                let Some(path) = &self.path else {
                    return Ok(None);
                };
                let file = sidecar(path);
                let opts = SqliteConnectOptions::new()
                    .filename(&file)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts)
                    .await?;
                super::open::restrict_permissions(&file);
                sqlx::query(
                    "CREATE TABLE IF NOT EXISTS request_ledger (holder TEXT NOT NULL, \
                     seq INTEGER NOT NULL, sent_at INTEGER NOT NULL, answered_at INTEGER, \
                     PRIMARY KEY (holder, seq))",
                )
                .execute(&pool)
                .await?;
                (LedgerDb::Sqlite(pool), "request_ledger".to_string(), None)
            }
        };
        Ok(Some(RequestLedger {
            inner: Arc::new(Inner {
                db,
                table,
                lock,
                holder: holder(),
                window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::minutes(5)),
                in_flight: chrono::Duration::from_std(in_flight)
                    .unwrap_or(chrono::Duration::minutes(2)),
            }),
        }))
    }
}

/// What counts in the window: each request from its answer, or (unanswered) from its send plus
/// the longest a request may take. Returns when the request `needed`-th from the oldest leaves
/// the window, None when there is room.
fn decide(
    mut counts_from: Vec<i64>,
    now: i64,
    window: i64,
    in_flight: i64,
    cap: usize,
) -> Option<i64> {
    // A time beyond anything this clock could have written is another clock's (a test's
    // simulated one beside the wall clock): it is not counted.
    counts_from.retain(|t| *t > now - window && *t <= now + in_flight + window);
    if counts_from.len() < cap {
        return None;
    }
    counts_from.sort_unstable();
    Some(counts_from[counts_from.len() - cap] + window)
}

impl Inner {
    fn ms(t: DateTime<Utc>) -> i64 {
        t.timestamp_millis()
    }

    async fn take_inner(
        &self,
        seq: u64,
        now: DateTime<Utc>,
        cap: usize,
        settled: &[(u64, DateTime<Utc>)],
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let (now_ms, window, in_flight) = (
            Self::ms(now),
            self.window.num_milliseconds(),
            self.in_flight.num_milliseconds(),
        );
        let seq = seq as i64;
        let table = &self.table;
        let begin = match self.db {
            // IMMEDIATE: the write lock from the start, so two processes cannot both read room
            // for one last request and both take it (PostgreSQL: the advisory lock below).
            LedgerDb::Sqlite(_) => "BEGIN IMMEDIATE",
            LedgerDb::Pg(_) => "BEGIN",
        };
        let wait = on!(LedgerDb, &self.db, pool => {
            let mut tx = pool.begin_with(begin).await?;
            if let Some(key) = self.lock {
                sqlx::query::<Dialect>("SELECT pg_advisory_xact_lock($1)")
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            for (s, at) in settled {
                sqlx::query::<Dialect>(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET answered_at = $1 WHERE holder = $2 AND seq = $3"
                )))
                .bind(Self::ms(*at))
                .bind(&self.holder)
                .bind(*s as i64)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query::<Dialect>(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE COALESCE(answered_at, sent_at + $1) <= $2"
            )))
            .bind(in_flight)
            .bind(now_ms - window)
            .execute(&mut *tx)
            .await?;
            let rows: Vec<i64> = sqlx::query_scalar::<Dialect, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT COALESCE(answered_at, sent_at + $1) FROM {table}"
            )))
            .bind(in_flight)
            .fetch_all(&mut *tx)
            .await?;
            let wait = decide(rows, now_ms, window, in_flight, cap);
            if wait.is_none() {
                sqlx::query::<Dialect>(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} (holder, seq, sent_at) VALUES ($1, $2, $3)"
                )))
                .bind(&self.holder)
                .bind(seq)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            wait
        });
        Ok(wait.and_then(DateTime::from_timestamp_millis))
    }

    async fn settle_inner(&self, settled: &[(u64, DateTime<Utc>)]) -> anyhow::Result<()> {
        let table = &self.table;
        on!(LedgerDb, &self.db, pool => {
            let mut tx = pool.begin().await?;
            for (s, at) in settled {
                sqlx::query::<Dialect>(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET answered_at = $1 WHERE holder = $2 AND seq = $3"
                )))
                .bind(Self::ms(*at))
                .bind(&self.holder)
                .bind(*s as i64)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

// Each write runs on a task of its own: a request abandoned mid-way (a page asked for early and
// not needed) drops its future, and a transaction cut off between BEGIN IMMEDIATE and COMMIT would
// leave the ledger's write lock held on a pooled connection. Spawned, it always finishes.
impl crate::api::budget::Ledger for RequestLedger {
    fn take<'a>(
        &'a self,
        seq: u64,
        now: DateTime<Utc>,
        cap: usize,
        settled: &'a [(u64, DateTime<Utc>)],
    ) -> Fut<'a, anyhow::Result<Option<DateTime<Utc>>>> {
        let inner = self.inner.clone();
        let settled = settled.to_vec();
        Box::pin(async move {
            tokio::spawn(async move { inner.take_inner(seq, now, cap, &settled).await }).await?
        })
    }

    fn settle<'a>(&'a self, settled: &'a [(u64, DateTime<Utc>)]) -> Fut<'a, anyhow::Result<()>> {
        let inner = self.inner.clone();
        let settled = settled.to_vec();
        Box::pin(
            async move { tokio::spawn(async move { inner.settle_inner(&settled).await }).await? },
        )
    }
}

/// The ledger as the budget takes it.
pub fn shared(ledger: RequestLedger) -> Arc<dyn crate::api::budget::Ledger> {
    Arc::new(ledger)
}

#[cfg(test)]
mod tests {
    use super::decide;

    #[test]
    fn room_and_waits() {
        let (now, w, f) = (1_000_000, 300_000, 120_000);
        // Room: nothing to wait for.
        assert_eq!(decide(vec![now - 10, now - 20], now, w, f, 3), None);
        // Full: the oldest leaves the window first.
        assert_eq!(
            decide(vec![now - 10, now - 250_000, now - 20], now, w, f, 3),
            Some(now - 250_000 + w)
        );
        // Two over the cap: the third-oldest must leave.
        assert_eq!(
            decide(
                vec![now - 1, now - 2, now - 3, now - 4, now - 5],
                now,
                w,
                f,
                3
            ),
            Some(now - 3 + w)
        );
        // Gone from the window, or from another clock far ahead: not counted.
        assert_eq!(decide(vec![now - w, now - w - 5], now, w, f, 1), None);
        assert_eq!(decide(vec![now + 40 * 86_400_000], now, w, f, 1), None);
        // In flight (its send plus the longest a request may take): counted.
        assert_eq!(
            decide(vec![now + f - 5], now, w, f, 1),
            Some(now + f - 5 + w)
        );
    }
}
