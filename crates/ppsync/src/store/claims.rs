//! The fleet's claims: the session advisory locks an instance holds, one per firm it serves, on
//! a connection of its own (PostgreSQL), and the fence a firm's page transactions check against
//! them (`Fence`, checked by `fence_holds` when a page commits). SQLite has one instance: nothing
//! to coordinate.

use std::collections::BTreeMap;

use sqlx::Connection as _;

use super::Store;

/// An advisory lock that must still be held, by the session `pid`, for a page to commit.
#[derive(Clone, Copy, Debug)]
pub struct Fence {
    pub pid: i32,
    pub key: i64,
}

/// The advisory locks of one instance, on a connection of their own (PostgreSQL), or nothing to
/// coordinate (SQLite: one instance).
pub struct Claims {
    pg: Option<PgClaims>,
}

struct PgClaims {
    opts: sqlx::postgres::PgConnectOptions,
    conn: Option<sqlx::PgConnection>,
    /// application_name of every claim connection of this deployment (home schema).
    tag: String,
    schema: String,
    held: BTreeMap<String, i64>,
    /// The claim session's backend pid (what `pg_locks` shows as the holder).
    pid: i32,
}

impl Claims {
    pub async fn connect(home: &Store, instance: &str) -> anyhow::Result<Claims> {
        let Some(opts) = home.pg_connect_options() else {
            return Ok(Claims { pg: None });
        };
        let schema = home.schema().unwrap_or("public").to_string();
        let tag = format!("ppsync run:{schema}:");
        // PostgreSQL keeps 63 bytes of an application_name.
        let name: String = format!("{tag}{instance}").chars().take(63).collect();
        let mut pg = PgClaims {
            opts: opts.application_name(&name),
            conn: None,
            tag,
            schema,
            held: BTreeMap::new(),
            pid: 0,
        };
        let (conn, pid) = pg.open().await?;
        pg.conn = Some(conn);
        pg.pid = pid;
        Ok(Claims { pg: Some(pg) })
    }

    pub async fn reconnect(&mut self) {
        if let Some(pg) = &mut self.pg {
            // Whatever this connection held is gone with it.
            pg.held.clear();
            if let Some(c) = pg.conn.take() {
                let _ = c.close().await;
            }
            match pg.open().await {
                Ok((c, pid)) => {
                    pg.conn = Some(c);
                    pg.pid = pid;
                }
                Err(e) => tracing::error!(error = %e, "claim connection: reconnecting failed"),
            }
        }
    }

    /// Live instances of this deployment (at least this one).
    pub async fn live_instances(&mut self) -> anyhow::Result<usize> {
        let Some(pg) = &mut self.pg else {
            return Ok(1);
        };
        let tag = pg.tag.clone();
        let conn = pg.conn()?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND starts_with(application_name, $1)",
        )
        .bind(tag)
        .fetch_one(conn)
        .await?;
        Ok((n as usize).max(1))
    }

    pub async fn try_claim(&mut self, firm: &str) -> anyhow::Result<bool> {
        let Some(pg) = &mut self.pg else {
            return Ok(true);
        };
        let key = lock_key(&pg.schema, firm);
        let conn = pg.conn()?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(conn)
            .await?;
        if got {
            pg.held.insert(firm.to_string(), key);
        }
        Ok(got)
    }

    /// What a page transaction checks to commit for `firm` (None: nothing to check, SQLite).
    pub fn fence(&self, firm: &str) -> Option<Fence> {
        let pg = self.pg.as_ref()?;
        Some(Fence {
            pid: pg.pid,
            key: *pg.held.get(firm)?,
        })
    }

    pub async fn release(&mut self, firm: &str) -> anyhow::Result<()> {
        let Some(pg) = &mut self.pg else {
            return Ok(());
        };
        if let Some(key) = pg.held.remove(firm) {
            let conn = pg.conn()?;
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    pub async fn release_all(&mut self) {
        if let Some(pg) = &mut self.pg {
            pg.held.clear();
            if let Some(c) = pg.conn.take() {
                // Closing the session releases its locks.
                let _ = c.close().await;
            }
        }
    }
}

impl PgClaims {
    /// A claim connection and its backend pid.
    async fn open(&self) -> anyhow::Result<(sqlx::PgConnection, i32)> {
        let mut conn = sqlx::PgConnection::connect_with(&self.opts).await?;
        // A peer that vanishes without closing (a dead host) is noticed within ~30 s, which
        // releases its locks; these settings are the session's own.
        for set in [
            "SET tcp_keepalives_idle = 10",
            "SET tcp_keepalives_interval = 5",
            "SET tcp_keepalives_count = 3",
        ] {
            sqlx::query(set).execute(&mut conn).await?;
        }
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        Ok((conn, pid))
    }

    fn conn(&mut self) -> anyhow::Result<&mut sqlx::PgConnection> {
        self.conn
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the claim connection is down"))
    }
}

/// A firm's lock: 64 bits of SHA-256 over the deployment's schema and the firm's name (sqlx's
/// own key derivation).
pub(super) fn lock_key(schema: &str, firm: &str) -> i64 {
    sqlx::postgres::PgAdvisoryLock::new(format!("ppsync firm {schema}/{firm}"))
        .key()
        .as_bigint()
        .unwrap_or_default()
}

/// The fencing check, run inside a page's transaction just before it commits: whether the claim
/// session still holds the firm's lock. Checked last, so another instance can have taken the firm
/// over only within the commit itself.
pub(super) async fn fence_holds(conn: &mut sqlx::PgConnection, f: Fence) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND pid = $1 AND objsubid = 1 AND classid::bigint = $2 AND objid::bigint = $3)",
    )
    .bind(f.pid)
    .bind((f.key >> 32) & 0xffff_ffff)
    .bind(f.key & 0xffff_ffff)
    .fetch_one(conn)
    .await
}
