//! A look at the database `database_url` names without opening it as a store: whether it is
//! there, which migrations it has, and whether this process may write to it. Nothing is created
//! or migrated (`ppsync check` may run beside a daemon, or before the first sync).

use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use super::open::{redact, sqlite_path};
use super::{SECRETS_SUFFIX, migrations, valid_schema};

/// What [`inspect`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The file, or the URL (password hidden) and schema.
    pub location: String,
    /// A ppsync mirror is there (SQLite: the file; PostgreSQL: the schema's migrations table).
    pub exists: bool,
    /// Migrations applied, by version (empty when it does not exist).
    pub applied: Vec<i64>,
    /// Migrations this binary knows, by version.
    pub known: Vec<i64>,
    /// Whether this process may write there (create it, when it does not exist); the reason if not.
    pub writable: Result<(), String>,
}

/// Looks at the database (see the module's text). Err: it cannot be reached or read at all, said
/// in one line.
pub async fn inspect(url: &str, schema: Option<&str>) -> Result<Inspection, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return inspect_pg(url, schema.unwrap_or("public")).await;
    }
    let known = migrations::SQLITE.iter().map(|m| m.0).collect();
    let path = sqlite_path(url).ok_or("not a file path or sqlite: URL")?;
    let location = path.display().to_string();
    if !path.exists() {
        let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(d) => d.to_path_buf(),
            None => std::path::PathBuf::from("."),
        };
        let writable = if dir.is_dir() {
            dir_writable(&dir)
        } else {
            Err(format!("the directory {} does not exist", dir.display()))
        };
        return Ok(Inspection {
            location,
            exists: false,
            applied: Vec::new(),
            known,
            writable,
        });
    }
    let opts = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(5));
    let mut conn = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| format!("{location}: cannot open ({e})"))?;
    let applied = sqlx::query_scalar::<_, i64>(
        "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| format!("{location}: not a ppsync database ({e})"))?;
    // Taking the write lock (and letting it go at once) proves the file, its folder (for the
    // journal) and the lock are writable; a daemon mid-commit holds it for milliseconds.
    let writable = match sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await {
        Ok(_) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    };
    let _ = conn.close().await;
    Ok(Inspection {
        location,
        exists: true,
        applied,
        known,
        writable,
    })
}

async fn inspect_pg(url: &str, schema: &str) -> Result<Inspection, String> {
    let location = format!("{} (schema {schema})", redact(url));
    if !valid_schema(schema) || schema.ends_with(SECRETS_SUFFIX) {
        return Err(format!("database_schema {schema:?} is not a schema name"));
    }
    let known = migrations::POSTGRES.iter().map(|m| m.0).collect();
    let opts: PgConnectOptions = url
        .parse()
        .map_err(|e| format!("not a PostgreSQL URL ({e})"))?;
    let opts = opts.application_name("ppsync check");
    let connect = sqlx::PgConnection::connect_with(&opts);
    let mut conn = tokio::time::timeout(Duration::from_secs(15), connect)
        .await
        .map_err(|_| format!("{location}: no answer within 15s"))?
        .map_err(|e| format!("{location}: cannot connect ({e})"))?;
    let result = async {
        let table = format!("\"{schema}\"._sqlx_migrations");
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&table)
            .fetch_one(&mut conn)
            .await?;
        let applied = if exists {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT version FROM {table} WHERE success ORDER BY version"
            )))
            .fetch_all(&mut conn)
            .await?
        } else {
            Vec::new()
        };
        // A standby answers reads only; without CREATE on the schema (or, for a new one, the
        // database) the migrations and the secrets schema cannot be made.
        let (standby, may_create): (bool, bool) = sqlx::query_as(
            "SELECT pg_is_in_recovery(), CASE WHEN to_regnamespace($1) IS NULL \
             THEN has_database_privilege(current_database(), 'CREATE') \
             ELSE has_schema_privilege($1, 'CREATE') END",
        )
        .bind(schema)
        .fetch_one(&mut conn)
        .await?;
        let writable = if standby {
            Err("the server is a read-only standby".to_string())
        } else if !may_create {
            Err(format!(
                "the user may not create tables in {}",
                if exists { "the schema" } else { "the database" }
            ))
        } else {
            Ok(())
        };
        Ok::<_, sqlx::Error>((exists, applied, writable))
    }
    .await;
    let _ = conn.close().await;
    let (exists, applied, writable) = result.map_err(|e| format!("{location}: {e}"))?;
    Ok(Inspection {
        location,
        exists,
        applied,
        known,
        writable,
    })
}

/// Whether a file can be made in `dir`: one is made and removed (no other portable test says
/// what the file system, its mount options and access lists allow).
fn dir_writable(dir: &std::path::Path) -> Result<(), String> {
    let probe = dir.join(format!(".ppsync-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("cannot create files in {}: {e}", dir.display())),
    }
}
