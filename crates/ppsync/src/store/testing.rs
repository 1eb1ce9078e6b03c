//! Throwaway PostgreSQL databases for the test suites and benchmarks (the `testing` feature,
//! which the package's own tests and bench turn on; the unit tests have it anyway).

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

/// Creates an empty database named `ppsync_t_<this process's id>_<random>` and returns its URL.
/// `scripts/test.sh` drops those whose process is gone (so never another live run's).
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
