//! What can go wrong in the store, and how a caller tells a refused value (the data's problem:
//! skip the resource) or contention (try again) from the database being gone.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database_url `{url}`: {detail}")]
    Open { url: String, detail: String },
    /// A read-only command found no mirror where the config points (nothing was created).
    #[error(
        "no mirror at {what}: run `ppsync sync` first (it creates it), or point database_url / --config at the existing one"
    )]
    Missing { what: String },
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
