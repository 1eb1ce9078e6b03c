//! The store's unit tests, each on a SQLite file and on a fresh PostgreSQL database (`testing`).

use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use sqlx::Row as _;

use super::*;
use crate::api::{TokenStore as _, Tokens};
use crate::record::Row;
use crate::record::prepare;
use crate::resource::{ColumnType, Resource};
use crate::resource::{RESOURCES, find};
use crate::time::{canonical, parse_api_time};

/// A fresh store on each backend: a SQLite file, and a new PostgreSQL database.
async fn stores() -> Vec<(Option<tempfile::TempDir>, Store)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(dir.path().join("m.db").to_str().unwrap())
        .await
        .unwrap();
    let url = testing::fresh_database().await.unwrap();
    let pg = Store::open(&url).await.unwrap();
    vec![(Some(dir), sqlite), (None, pg)]
}

fn row(res: &Resource, json: &str) -> Row {
    prepare(res, json).unwrap()
}

#[tokio::test]
async fn schema_matches_resource_table() {
    for (_d, store) in stores().await {
        let pg = store.backend() == Backend::Postgres;
        for res in RESOURCES {
            let cols: Vec<(String, String)> = match (store.sqlite_pool(), store.pg_pool()) {
                (Some(p), _) => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "PRAGMA table_info({})",
                    res.name
                )))
                .fetch_all(p)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<String, _>("name"), r.get::<String, _>("type")))
                .collect(),
                (_, Some(p)) => sqlx::query(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(res.name)
                .fetch_all(p)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
                .collect(),
                _ => unreachable!(),
            };
            let (text, time, int, real, boolean, json) = if pg {
                (
                    "text",
                    "timestamp with time zone",
                    "bigint",
                    "double precision",
                    "boolean",
                    "jsonb",
                )
            } else {
                ("TEXT", "TEXT", "INTEGER", "REAL", "INTEGER", "TEXT")
            };
            let mut want: Vec<(String, String)> = [
                ("id", text),
                ("created_at", time),
                ("updated_at", time),
                ("deleted_at", time),
                ("synced_at", time),
                ("hash", int),
                ("seen_run", int),
                ("data", json),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
            for c in res.columns {
                let ty = match c.ty {
                    ColumnType::Text => text,
                    ColumnType::Time => time,
                    ColumnType::Int => int,
                    ColumnType::Bool => boolean,
                    ColumnType::Real => real,
                };
                want.push((c.name.to_string(), ty.to_string()));
            }
            if pg {
                // The record as received, where jsonb cannot hold it.
                want.push(("raw".to_string(), text.to_string()));
            }
            assert_eq!(cols, want, "{:?}: table {}", store.backend(), res.name);
        }
    }
}

/// Every mirrored table has its `<table>_current` view (migrations `*_views.sql`) with the
/// table's columns, and no other `_current` view exists.
#[tokio::test]
async fn current_views_match_resource_table() {
    for (_d, store) in stores().await {
        let columns = |name: String| {
            let store = &store;
            async move {
                match (store.sqlite_pool(), store.pg_pool()) {
                    (Some(p), _) => sqlx::query(sqlx::AssertSqlSafe(format!(
                        "PRAGMA table_info({name})"
                    )))
                    .fetch_all(p)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<String, _>("name"))
                    .collect::<Vec<_>>(),
                    (_, Some(p)) => sqlx::query_scalar(
                        "SELECT column_name::text FROM information_schema.columns \
                         WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                    )
                    .bind(name)
                    .fetch_all(p)
                    .await
                    .unwrap(),
                    _ => unreachable!(),
                }
            }
        };
        for res in RESOURCES {
            let table = columns(res.name.to_string()).await;
            let view = columns(format!("{}_current", res.name)).await;
            assert!(!table.is_empty(), "{}", res.name);
            assert_eq!(
                view,
                table,
                "{:?}: view {}_current",
                store.backend(),
                res.name
            );
        }
        let mut views: Vec<String> = match (store.sqlite_pool(), store.pg_pool()) {
            (Some(p), _) => sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'view' AND name LIKE '%\\_current' ESCAPE '\\'",
            )
            .fetch_all(p)
            .await
            .unwrap(),
            (_, Some(p)) => sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.views \
                 WHERE table_schema = 'public' AND table_name LIKE '%\\_current'",
            )
            .fetch_all(p)
            .await
            .unwrap(),
            _ => unreachable!(),
        };
        views.sort();
        let mut want: Vec<String> = RESOURCES
            .iter()
            .map(|r| format!("{}_current", r.name))
            .collect();
        want.sort();
        assert_eq!(views, want, "{:?}", store.backend());
    }
}

#[tokio::test]
async fn upsert_is_idempotent_and_counts_changes() {
    for (_d, store) in stores().await {
        let now = parse_api_time("2026-11-25T12:00:00").unwrap();
        let tasks = find("tasks").unwrap();
        let a = r#"{"id":"t1","subject":"A","updated_at":"2026-11-25T11:00:00"}"#;
        let b = r#"{"id":"t2","subject":"B","updated_at":"2026-11-25T11:00:00"}"#;
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.upsert(
                tasks,
                &mut vec![row(tasks, a), row(tasks, b)],
                1,
                now,
                None,
                false
            )
            .await
            .unwrap()
            .len(),
            2
        );
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.upsert(
                tasks,
                &mut vec![row(tasks, a), row(tasks, b)],
                2,
                now,
                None,
                false
            )
            .await
            .unwrap()
            .len(),
            0
        );
        let a2 = r#"{"id":"t1","subject":"A2","updated_at":"2026-11-25T11:05:00"}"#;
        // The same id twice in one batch: the later copy wins; the prior value is reported.
        let fresh = tx
            .upsert(
                tasks,
                &mut vec![row(tasks, a), row(tasks, a2)],
                2,
                now,
                Some("subject"),
                false,
            )
            .await
            .unwrap();
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].prior, Some(Some("A".to_string())));
        tx.commit().await.unwrap();
        let mut out = Vec::new();
        store
            .export(tasks, false, |r| {
                out.push((r.id, r.data, r.columns[2].clone()));
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].2.as_deref(), Some("A2"));
        if store.backend() == Backend::Sqlite {
            assert_eq!(out[0].1, a2, "data is stored exactly as received");
        } else {
            let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
            assert_eq!(v(&out[0].1), v(a2), "data is stored as JSONB");
        }
    }
}

#[tokio::test]
async fn reconciliation_marks_only_unseen_and_revives_returning_records() {
    for (_d, store) in stores().await {
        let now = parse_api_time("2026-11-25T12:00:00").unwrap();
        let users = find("users").unwrap();
        let u = |id: &str| row(users, &format!(r#"{{"id":"{id}","display_name":"{id}"}}"#));
        let mut tx = store.begin().await.unwrap();
        tx.upsert(
            users,
            &mut vec![u("a"), u("b"), u("c")],
            1,
            now,
            None,
            false,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.upsert(users, &mut vec![u("a"), u("c")], 5, now, None, false)
            .await
            .unwrap();
        assert_eq!(tx.count_unseen(users, 5).await.unwrap(), 1);
        assert_eq!(tx.count_live(users).await.unwrap(), 3);
        assert_eq!(tx.mark_unseen_deleted(users, 5, now).await.unwrap(), 1);
        tx.commit().await.unwrap();
        assert_eq!(store.counts(users).await.unwrap(), (2, 1));
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.upsert(users, &mut vec![u("b")], 6, now, None, false)
                .await
                .unwrap()
                .len(),
            1,
            "a returning record counts as changed"
        );
        tx.commit().await.unwrap();
        assert_eq!(store.counts(users).await.unwrap(), (3, 0));
    }
}

/// Two processes may list one resource at once (a CLI pass beside the daemon): the listing that
/// began earlier (a lower run) writing after the later one must not make the later one's records
/// look unseen, or its end would take them for deletions.
#[tokio::test]
async fn a_record_seen_by_a_later_run_stays_seen_when_an_earlier_run_writes_it_again() {
    for (_d, store) in stores().await {
        let now = parse_api_time("2026-11-25T12:00:00").unwrap();
        let users = find("users").unwrap();
        let u = |id: &str, name: &str| {
            row(
                users,
                &format!(r#"{{"id":"{id}","display_name":"{name}"}}"#),
            )
        };
        let mut tx = store.begin().await.unwrap();
        tx.upsert(
            users,
            &mut vec![u("a", "A"), u("b", "B")],
            7,
            now,
            None,
            false,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        // Run 6 (begun before run 7) writes both again: one unchanged, one changed.
        let mut tx = store.begin().await.unwrap();
        tx.upsert(
            users,
            &mut vec![u("a", "A"), u("b", "B2")],
            6,
            now,
            None,
            false,
        )
        .await
        .unwrap();
        assert_eq!(tx.count_unseen(users, 7).await.unwrap(), 0);
        assert_eq!(tx.count_seen(users, 7).await.unwrap(), 2);
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn cursor_never_moves_backwards() {
    for (_d, store) in stores().await {
        let t = |s: &str| parse_api_time(s).unwrap();
        let matters = find("matters").unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.set_listing(
            matters,
            Some(&serde_json::json!({"skip": 5})),
            t("2026-11-25T12:00:00"),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(store.state(matters).await.unwrap().listing.is_some());
        let mut tx = store.begin().await.unwrap();
        tx.set_cursor(
            matters,
            t("2026-11-25T12:00:00"),
            true,
            t("2026-11-25T12:00:00"),
        )
        .await
        .unwrap();
        tx.set_cursor(
            matters,
            t("2026-11-25T11:00:00"),
            false,
            t("2026-11-25T12:10:00"),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let st = store.state(matters).await.unwrap();
        assert_eq!(st.cursor, Some(t("2026-11-25T12:00:00")));
        assert_eq!(st.last_full_at, Some(t("2026-11-25T12:00:00")));
        assert!(st.listing.is_none());
    }
}

#[tokio::test]
async fn bad_database_paths_are_named() {
    let err = Store::open("/nonexistent-dir/x/m.db")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent-dir/x") && err.contains("does not exist"),
        "{err}"
    );
    let err = Store::open("mysql://x").await.unwrap_err().to_string();
    assert!(err.starts_with("database_url `mysql://x`"), "{err}");
}

#[tokio::test]
async fn a_fenced_store_commits_only_while_the_claim_holds() {
    use sqlx::Connection as _;
    let url = testing::fresh_database().await.unwrap();
    let store = Store::open(&url).await.unwrap();
    let users = find("users").unwrap();
    let now = parse_api_time("2026-11-25T12:00:00").unwrap();
    // A batch big enough for the COPY path (`pg_copy`), as a backfill's pages are.
    let u = |id: &str| -> Vec<Row> {
        (0..pg_copy::MIN_ROWS)
            .map(|i| {
                row(
                    users,
                    &format!(r#"{{"id":"{id}-{i}","display_name":"{id}"}}"#),
                )
            })
            .collect()
    };
    // Both halves of the 64-bit key matter (and a negative key's high half).
    for key in [-0x1234_5678_9abc_def0_i64, 0x0fed_cba9_8765_4321] {
        let mut claim = sqlx::PgConnection::connect(&url).await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut claim)
            .await
            .unwrap();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut claim)
            .await
            .unwrap();
        assert!(got);
        let fenced = store.clone().fenced(Fence { pid, key });
        // Another key held by the same session does not count.
        let other = store.clone().fenced(Fence { pid, key: key ^ 1 });
        let mut tx = other.begin().await.unwrap();
        tx.upsert(users, &mut u("x"), 1, now, None, false)
            .await
            .unwrap();
        assert!(matches!(tx.commit().await, Err(Error::Fenced)));

        let mut tx = fenced.begin().await.unwrap();
        tx.upsert(users, &mut u(&format!("a{key}")), 1, now, None, false)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // The claim lets go (as when its session ends; unlocking is the deterministic way here).
        let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .fetch_one(&mut claim)
            .await
            .unwrap();
        let mut tx = fenced.begin().await.unwrap();
        tx.upsert(users, &mut u(&format!("b{key}")), 2, now, None, false)
            .await
            .unwrap();
        assert!(
            matches!(tx.commit().await, Err(Error::Fenced)),
            "no commit once the claim is gone"
        );
    }
    assert_eq!(
        store.counts(users).await.unwrap(),
        (2 * pg_copy::MIN_ROWS as i64, 0),
        "only the fenced commits while held"
    );
}

/// Two processes' ledgers on one firm's store see each other's requests: the second cannot take
/// a slot the first holds, answered or in flight; a request whose process died unanswered counts
/// until its send plus the request timeout has left the window; answers settle what counts.
#[tokio::test]
async fn the_request_ledger_is_shared_by_every_process_of_a_firm() {
    use crate::api::budget::Ledger as _;
    let t = |s: &str| crate::time::parse_api_time(s).unwrap();
    for (_d, store) in stores().await {
        let window = Duration::from_secs(300);
        let in_flight = Duration::from_secs(120);
        let a = store
            .request_ledger(window, in_flight)
            .await
            .unwrap()
            .unwrap();
        let b = store
            .request_ledger(window, in_flight)
            .await
            .unwrap()
            .unwrap();
        let now = t("2026-12-06T10:00:00Z");
        // A takes three of a cap of four, answered at once.
        for seq in 0..3 {
            assert_eq!(a.take(seq, now, 4, &[]).await.unwrap(), None);
        }
        a.settle(&[(0, now), (1, now), (2, now)]).await.unwrap();
        // B gets the fourth; the fifth must wait for A's first to leave the window.
        assert_eq!(b.take(0, now, 4, &[]).await.unwrap(), None);
        let wait = b.take(1, now, 4, &[]).await.unwrap();
        assert_eq!(
            wait,
            Some(now + chrono::Duration::seconds(300)),
            "{:?}",
            store.backend()
        );
        // B's own request never answered (its process died): it counts until its send plus the
        // timeout has left the window, so at +5 min the three answered ones are gone, it is not.
        let later = now + chrono::Duration::seconds(301);
        for seq in 3..6 {
            assert_eq!(a.take(seq, later, 4, &[]).await.unwrap(), None);
        }
        assert_eq!(
            a.take(6, later, 4, &[]).await.unwrap(),
            Some(now + chrono::Duration::seconds(420)),
            "the dead request counts until sent + 120 s + 300 s"
        );
        // Settled with its answer, a request counts from then.
        assert_eq!(
            b.take(7, later, 5, &[(0, now + chrono::Duration::seconds(1))])
                .await
                .unwrap(),
            None
        );
    }
}

fn tokens(tag: &str) -> Tokens {
    Tokens {
        access_token: SecretString::from(format!("access-{tag}")),
        refresh_token: SecretString::from(format!("refresh-{tag}")),
        expires_at: parse_api_time("2026-11-25T12:00:00").unwrap(),
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_sqlite_mirror_and_its_wal_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let files = || {
        ["", "-wal", "-shm"].map(|s| {
            let mut p = path.as_os_str().to_owned();
            p.push(s);
            std::path::PathBuf::from(p)
        })
    };
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    store.save(&tokens("a")).await.unwrap();
    for f in files() {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    // A file made before (or by hand) with others allowed to read is made private on opening.
    store.close().await;
    for f in files().iter().filter(|f| f.exists()) {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    store.save(&tokens("b")).await.unwrap();
    for f in files() {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
}

/// Tokens are per store (the home's, each firm's), the registry is the home's; on PostgreSQL
/// both live in the secrets schema, out of reach of a grant on the mirror's schemas.
#[tokio::test]
async fn tokens_and_the_registry_live_apart_from_the_mirror() {
    let secret_texts = [
        "access-home",
        "refresh-home",
        "access-acme",
        "refresh-acme",
        "client-s3cret",
        "whs3cret",
    ];
    for (_d, home) in stores().await {
        let acme = home.firm("acme").await.unwrap();
        home.save(&tokens("home")).await.unwrap();
        acme.save(&tokens("acme")).await.unwrap();
        // Saved again: one row per store, updated in place.
        home.save(&tokens("home")).await.unwrap();
        for (store, tag) in [(&home, "home"), (&acme, "acme")] {
            let t = store.load().await.unwrap().unwrap();
            assert_eq!(t.access_token.expose_secret(), format!("access-{tag}"));
            assert_eq!(t.refresh_token.expose_secret(), format!("refresh-{tag}"));
            assert!(store.token_status().await.unwrap().is_some());
        }
        let firm = FirmRow {
            name: "acme".into(),
            client_id: "acme-id".into(),
            client_secret: SecretString::from("client-s3cret"),
            settings: "[notify]\nwebhook_secret = \"whs3cret\"\n".into(),
            created_at: String::new(),
        };
        let now = parse_api_time("2026-11-25T12:00:00").unwrap();
        assert!(home.add_firm(&firm, now).await.unwrap());
        assert!(!home.add_firm(&firm, now).await.unwrap(), "a name once");
        let listed = home.firms().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].client_secret.expose_secret(), "client-s3cret");

        let Some(pool) = home.pg_pool() else {
            continue;
        };
        assert_eq!(home.secrets_schema(), Some("public_secrets"));
        assert_eq!(acme.secrets_schema(), Some("public_secrets"));
        let placed: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_schema::text, table_name::text FROM information_schema.tables \
             WHERE table_name IN ('oauth_tokens', 'firms') ORDER BY 1, 2",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(
            placed,
            [
                ("public_secrets".to_string(), "firms".to_string()),
                ("public_secrets".to_string(), "oauth_tokens".to_string()),
            ]
        );

        // What a DBA does for a reporting tool: every table of the mirrors' schemas.
        let role = format!(
            "ppsync_t_reporting_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let mut conn = pool.acquire().await.unwrap();
        for sql in [
            format!("CREATE ROLE {role} NOLOGIN"),
            format!("GRANT USAGE ON SCHEMA public, acme TO {role}"),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA acme TO {role}"),
            format!("SET ROLE {role}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        let readable: Vec<String> = sqlx::query_scalar(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
             AND has_table_privilege(format('%I.%I', table_schema, table_name), 'SELECT') \
             ORDER BY 1",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        assert!(
            readable.contains(&"public.matters".to_string())
                && readable.contains(&"acme.sync_state".to_string()),
            "the grant reaches the mirrors: {readable:?}"
        );
        for table in &readable {
            let text: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COALESCE(string_agg(t::text, E'\\n'), '') FROM {table} t"
            )))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            for s in secret_texts {
                assert!(!text.contains(s), "{table} shows {s} to {role}");
            }
        }
        for table in ["public_secrets.oauth_tokens", "public_secrets.firms"] {
            let e = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
                .execute(&mut *conn)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("permission denied"), "{table}: {e}");
        }
        for sql in [
            "RESET ROLE".to_string(),
            format!("DROP OWNED BY {role}"),
            format!("DROP ROLE {role}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await
                .unwrap();
        }
    }
}

/// A database an older version wrote (tokens in each store's schema, the registry in the home's)
/// is moved into the secrets schema when opened, nothing lost.
#[tokio::test]
async fn the_secrets_migration_moves_what_an_older_version_stored() {
    use sqlx::Connection as _;
    let url = testing::fresh_database().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    for schema in ["public", "acme"] {
        for sql in [
            format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
            format!("SET search_path TO {schema}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        migrations::migrator(&migrations::POSTGRES[..4])
            .run_direct(None, &mut conn, false)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {schema}.oauth_tokens VALUES \
             (1, 'access-{schema}', 'refresh-{schema}', '2026-11-25T12:00:00Z', now())"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO public.firms VALUES ('acme', 'acme-id', 'client-s3cret', 'budget.requests = 5', now())",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let home = Store::open(&url).await.unwrap();
    let acme = home.firm("acme").await.unwrap();
    for (store, tag) in [(&home, "public"), (&acme, "acme")] {
        let t = store.load().await.unwrap().expect("tokens kept");
        assert_eq!(t.access_token.expose_secret(), format!("access-{tag}"));
        assert_eq!(t.refresh_token.expose_secret(), format!("refresh-{tag}"));
        assert_eq!(t.expires_at, parse_api_time("2026-11-25T12:00:00").unwrap());
    }
    let firms = home.firms().await.unwrap();
    assert_eq!(firms.len(), 1);
    assert_eq!(
        (
            firms[0].name.as_str(),
            firms[0].client_id.as_str(),
            firms[0].client_secret.expose_secret(),
            firms[0].settings.as_str()
        ),
        ("acme", "acme-id", "client-s3cret", "budget.requests = 5")
    );
    let pool = home.pg_pool().unwrap();
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables \
         WHERE table_name IN ('oauth_tokens', 'firms') ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        left,
        ["public_secrets.firms", "public_secrets.oauth_tokens"]
    );
    // A token saved now replaces the moved one, in place.
    acme.save(&tokens("new")).await.unwrap();
    assert_eq!(
        acme.load()
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose_secret(),
        "access-new"
    );
    assert_eq!(
        home.load()
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose_secret(),
        "access-public"
    );
}

#[tokio::test]
async fn no_schema_can_be_taken_for_a_secrets_schema() {
    let url = testing::fresh_database().await.unwrap();
    let e = Store::open_in(&url, Some("acme_secrets"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("_secrets"), "{e}");
    let home = Store::open(&url).await.unwrap();
    let e = home.firm("public_secrets").await.unwrap_err().to_string();
    assert!(e.contains("_secrets"), "{e}");
}

/// A deadlock between two writers (a CLI pass beside the daemon on PostgreSQL) is contention,
/// retried, not a failure of the database; a refused value is data; neither is both.
#[tokio::test]
async fn another_writer_in_the_way_is_contention() {
    let url = testing::fresh_database().await.unwrap();
    let store = Store::open(&url).await.unwrap();
    let pool = store.pg_pool().unwrap().clone();
    sqlx::query("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (1, 0), (2, 0)")
        .execute(&pool)
        .await
        .unwrap();
    let mut a = pool.begin().await.unwrap();
    let mut b = pool.begin().await.unwrap();
    sqlx::query("UPDATE t SET v = 1 WHERE id = 1")
        .execute(&mut *a)
        .await
        .unwrap();
    sqlx::query("UPDATE t SET v = 2 WHERE id = 2")
        .execute(&mut *b)
        .await
        .unwrap();
    // Each now waits for the other's row: PostgreSQL breaks the cycle by failing one.
    let (ra, rb) = tokio::join!(
        sqlx::query("UPDATE t SET v = 1 WHERE id = 2").execute(&mut *a),
        sqlx::query("UPDATE t SET v = 2 WHERE id = 1").execute(&mut *b),
    );
    let failed = ra
        .err()
        .or(rb.err())
        .expect("one of them is the deadlock's victim");
    let e = Error::Sql(failed);
    assert!(e.is_contention() && !e.is_data(), "{e}");
    drop((a, b));
    let refused = sqlx::query("INSERT INTO t VALUES (1, 0)")
        .execute(&pool)
        .await
        .unwrap_err();
    let e = Error::Sql(refused);
    assert!(e.is_data() && !e.is_contention(), "{e}");
}

/// Time entries (text, instant, real and boolean columns) whose strings hold what text formats
/// must escape or cannot hold, and nulls.
fn awkward_entries(hours: f64) -> Vec<String> {
    let long = "x\\\"\t".repeat(40_000);
    let strings = [
        r#"quote " and 'single'"#,
        r"back\slash \\ \N \. end\",
        "tab\there, newline\nthere, CR\rhere",
        "unicode: é ß 😀 ☃ \u{fffd} \u{7f}",
        "",
        "comma, \"csv\"; semicolon",
        long.as_str(),
    ];
    let mut out: Vec<String> = strings
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({
                "id": format!("s{i}"),
                "updated_at": "2026-11-25T10:00:00",
                "billed_by_user_ref": {"id": s},
                "date": "2026-11-20T00:00:00",
                "hours": hours + i as f64 / 7.0,
                "is_billed": i % 2 == 0,
                "description": s,
            })
            .to_string()
        })
        .collect();
    // Escapes jsonb cannot hold (kept in `raw`), nulls, missing and mistyped fields.
    out.push(format!(
        r#"{{"id":"nul","billed_by_user_ref":{{"id":"a\u0000b"}},"hours":{hours},"note":"\u0000"}}"#
    ));
    out.push(r#"{"id":"lone","billed_by_user_ref":{"id":"x\ud800y"},"is_billed":null}"#.into());
    out.push(r#"{"id":"nulls","billed_by_user_ref":null,"date":null,"hours":null}"#.into());
    out.push(r#"{"id":"odd","date":"not a date","hours":"many","is_billed":"yes"}"#.into());
    out.push(r#"{"id":"tab\tid \"q\" \\ é"}"#.into());
    out
}

/// Upserts `json` records through the multi-row statements (one record per call, under the
/// COPY threshold) or through COPY (all at once); returns what was reported fresh.
async fn upsert_via(
    store: &Store,
    res: &Resource,
    json: &[String],
    run: i64,
    now: chrono::DateTime<chrono::Utc>,
    copy: bool,
) -> Vec<(String, Option<Option<String>>)> {
    let mut tx = store.begin().await.unwrap();
    let mut fresh = Vec::new();
    if copy {
        let mut rows: Vec<Row> = json.iter().map(|j| row(res, j)).collect();
        assert!(rows.len() >= pg_copy::MIN_ROWS, "the COPY path is taken");
        fresh = tx
            .upsert(res, &mut rows, run, now, Some("date"), false)
            .await
            .unwrap();
    } else {
        for j in json {
            let mut rows = vec![row(res, j)];
            fresh.extend(
                tx.upsert(res, &mut rows, run, now, Some("date"), false)
                    .await
                    .unwrap(),
            );
        }
    }
    tx.commit().await.unwrap();
    fresh.into_iter().map(|f| (f.id, f.prior)).collect()
}

/// Every stored row whole, as PostgreSQL prints it, and its row version.
async fn stored_rows(store: &Store, table: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, row_to_json(t)::text, xmin::text FROM {table} t ORDER BY id"
    )))
    .fetch_all(store.pg_pool().unwrap())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_copy_batch_stores_and_reports_what_the_statements_do_byte_for_byte() {
    let res = find("time_entries").unwrap();
    let t0 = parse_api_time("2026-11-25T12:00:00").unwrap();
    let t1 = parse_api_time("2026-11-25T12:15:00").unwrap();
    let statements = Store::open(&testing::fresh_database().await.unwrap())
        .await
        .unwrap();
    let copy = Store::open(&testing::fresh_database().await.unwrap())
        .await
        .unwrap();
    let mut first = awkward_entries(1.25);
    first.extend((0..pg_copy::MIN_ROWS).map(|i| format!(r#"{{"id":"p{i}","hours":{i}}}"#)));

    // A first write: every record new, stored alike.
    let a = upsert_via(&statements, res, &first, 1, t0, false).await;
    let b = upsert_via(&copy, res, &first, 1, t0, true).await;
    assert_eq!(a.len(), first.len());
    assert!(a.iter().all(|(_, prior)| prior.is_none()), "all new");
    assert_eq!(a, b);
    let (sa, sb) = (
        stored_rows(&statements, res.name).await,
        stored_rows(&copy, res.name).await,
    );
    let content = |rows: &[(String, String, String)]| {
        rows.iter()
            .map(|r| (r.0.clone(), r.1.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(content(&sa), content(&sb));
    // And what was stored is what was sent: text columns exactly, `raw` as received, jsonb
    // as PostgreSQL reads the (repaired) text.
    for j in &first {
        let r = row(res, j);
        let got: (Option<String>, Option<String>, bool) = sqlx::query_as(
            "SELECT billed_by_user_id, raw, data = $2::jsonb FROM time_entries WHERE id = $1",
        )
        .bind(&r.id)
        .bind(r.jsonb.as_deref().unwrap_or(&r.data))
        .fetch_one(copy.pg_pool().unwrap())
        .await
        .unwrap();
        let want_text = match &r.columns[2] {
            crate::record::Value::Text(s) => Some(s.clone()),
            _ => None,
        };
        assert_eq!(got.0, want_text, "{}", r.id);
        let want_raw = (r.jsonb.is_some() || r.keep_raw).then(|| r.data.to_string());
        assert_eq!(got.1, want_raw, "{}", r.id);
        assert!(got.2, "{}: data", r.id);
    }
    let nul: String =
        sqlx::query_scalar("SELECT billed_by_user_id FROM time_entries WHERE id = 'nul'")
            .fetch_one(copy.pg_pool().unwrap())
            .await
            .unwrap();
    assert_eq!(nul, "a\u{fffd}b");

    // The same records again in the same run: nothing reported, no row version written.
    assert_eq!(upsert_via(&copy, res, &first, 1, t1, true).await, vec![]);
    assert_eq!(
        stored_rows(&copy, res.name).await,
        sb,
        "replaying changes nothing"
    );

    // A later run: unchanged records only marked seen; a changed, a deleted and a new one
    // written and reported (with the watched column's prior value).
    for store in [&statements, &copy] {
        let mut tx = store.begin().await.unwrap();
        tx.mark_deleted(res, &["s1".to_string()], t0).await.unwrap();
        tx.commit().await.unwrap();
    }
    let mut second = awkward_entries(1.25);
    second[0] = second[0].replace("2026-11-20", "2026-11-21");
    second.push(r#"{"id":"new","hours":2}"#.into());
    second.extend((0..pg_copy::MIN_ROWS).map(|i| format!(r#"{{"id":"p{i}","hours":{i}}}"#)));
    let a = upsert_via(&statements, res, &second, 2, t1, false).await;
    let b = upsert_via(&copy, res, &second, 2, t1, true).await;
    let day = |d: &str| Some(Some(canonical(parse_api_time(d).unwrap())));
    assert_eq!(
        b,
        vec![
            ("s0".to_string(), day("2026-11-20T00:00:00")),
            ("s1".to_string(), day("2026-11-20T00:00:00")),
            ("new".to_string(), None),
        ]
    );
    assert_eq!(a, b);
    let after = stored_rows(&copy, res.name).await;
    assert_eq!(
        content(&stored_rows(&statements, res.name).await),
        content(&after)
    );
    let synced: Vec<(String, i64, Ts)> =
        sqlx::query_as("SELECT id, seen_run, synced_at FROM time_entries ORDER BY id")
            .fetch_all(copy.pg_pool().unwrap())
            .await
            .unwrap();
    for (id, seen, at) in synced {
        assert_eq!(seen, 2, "{id}: seen by the later run");
        let rewritten = ["s0", "s1", "new"].contains(&id.as_str());
        assert_eq!(at.0, if rewritten { t1 } else { t0 }, "{id}: synced_at");
    }
}

/// A deadline moved away cancels its pending notification; moved back to that date, the same
/// id is pending again (with the new payload), where a delivered or suppressed one stays as it
/// was: the soak test found a task whose deadline came back keeping its notification cancelled.
#[tokio::test]
async fn a_cancelled_deadline_notification_is_pending_again_when_its_date_comes_back() {
    for (_dir, store) in stores().await {
        let now = parse_api_time("2026-11-03T12:00:00Z").unwrap();
        let note = |id: &str, v: i64, suppressed| Notification {
            id: id.into(),
            kind: "deadline".into(),
            resource: "tasks".into(),
            record_id: "t1".into(),
            payload: serde_json::json!({ "v": v }),
            suppressed,
        };
        let ids: Vec<String> = [
            "deadline:task:t1:2026-11-17:14d",
            "deadline:task:t2:2026-11-18:14d",
        ]
        .map(String::from)
        .to_vec();
        let mut tx = store.begin().await.unwrap();
        tx.enqueue(&[note(&ids[0], 1, false), note(&ids[1], 1, true)], now)
            .await
            .unwrap();
        let cancelled = tx
            .cancel_deadlines(&[Cancel {
                resource: "tasks".into(),
                record_id: "t1".into(),
                prefix: "deadline:task:t1:".into(),
                keep: Some("deadline:task:t1:2026-11-20:".into()),
            }])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(cancelled, 1);
        let status = store.outbox_status(&ids).await.unwrap();
        assert_eq!(status[&ids[0]], "cancelled");

        let mut tx = store.begin().await.unwrap();
        let added = tx
            .enqueue(&[note(&ids[0], 2, false), note(&ids[1], 2, false)], now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(added, 1, "only the cancelled one is written again");
        let status = store.outbox_status(&ids).await.unwrap();
        assert_eq!(status[&ids[0]], "pending");
        assert_eq!(status[&ids[1]], "suppressed", "a suppressed one stays");
        let due = store.outbox_due(now, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, ids[0]);
        assert!(
            due[0].1.contains("\"v\":2"),
            "the new payload: {}",
            due[0].1
        );
    }
}
