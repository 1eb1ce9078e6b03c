//! `upcoming_deadlines` is the engine's own list (`ppsync deadlines --json`), every source
//! (contacts' and accounts' custom Date fields too), in the firm's zone and in UTC, kept current
//! by the passes: a page writes its records' rows, a deleted record's go, a changed zone rewrites
//! them all.

use ppsync::store::Backend;
use ppsync::time::{canonical, parse_api_time};
use serde_json::{Value, json};

use crate::support::*;

/// Every row of `upcoming_deadlines`, each column as text, sorted: (source, table, id, title,
/// matter id, matter, client id, client, assignees, due_at UTC, due_local, local_date, zone, all_day).
async fn view_rows(store: &ppsync::store::Store) -> Vec<Vec<Option<String>>> {
    let due_at = match store.backend() {
        Backend::Sqlite => "due_at".to_string(),
        Backend::Postgres => {
            "to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')".to_string()
        }
    };
    let sql = format!(
        "SELECT source, record_table, record_id, title, matter_id, matter_name, account_id, \
         account_name, assignees, {due_at}, due_local, CAST(local_date AS TEXT), time_zone, \
         CASE WHEN all_day THEN 'true' ELSE 'false' END FROM upcoming_deadlines"
    );
    let mut rows = text_rows(store, &sql).await;
    rows.sort();
    rows
}

async fn text_rows(store: &ppsync::store::Store, sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::Row as _;
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match (store.sqlite_pool(), store.pg_pool()) {
        (Some(p), _) => sqlx::query(sql)
            .fetch_all(p)
            .await
            .unwrap()
            .iter()
            .map(|r| (0..r.columns().len()).map(|i| r.get(i)).collect())
            .collect(),
        (_, Some(p)) => sqlx::query(sql)
            .fetch_all(p)
            .await
            .unwrap()
            .iter()
            .map(|r| (0..r.columns().len()).map(|i| r.get(i)).collect())
            .collect(),
        _ => unreachable!(),
    }
}

/// `ppsync deadlines --json`, past and coming (55 years either way), as the view's rows.
async fn cli_rows(app: &TestApp) -> Vec<Vec<Option<String>>> {
    let mut list: Vec<Value> = Vec::new();
    for extra in [&["--overdue"][..], &[][..]] {
        let mut args = vec!["deadlines", "--json", "--days", "20000"];
        args.extend_from_slice(extra);
        let (code, out, err) = app.cli(&args).await;
        assert_eq!(code, 0, "{err}");
        list.extend(serde_json::from_str::<Vec<Value>>(&out).unwrap());
    }
    let s = |v: &Value| v.as_str().map(str::to_string);
    let mut rows: Vec<Vec<Option<String>>> = list
        .iter()
        .map(|d| {
            let names: Vec<&str> = d["assignees"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let due = d["due"].as_str().unwrap();
            let utc = chrono::DateTime::parse_from_rfc3339(due).unwrap().to_utc();
            vec![
                s(&d["kind"]),
                s(&d["resource"]),
                s(&d["id"]),
                s(&d["subject"]),
                s(&d["matter_id"]),
                s(&d["matter"]),
                s(&d["client_id"]),
                s(&d["client"]),
                (!names.is_empty()).then(|| names.join(", ")),
                Some(canonical(utc)),
                Some(due.to_string()),
                s(&d["date"]),
                s(&d["time_zone"]),
                Some(d["all_day"].as_bool().unwrap().to_string()),
            ]
        })
        .collect();
    rows.sort();
    rows
}

/// matter_overview's next deadline of every matter is the first, by (due_at, source), of the
/// engine's deadlines (`cli`, as `cli_rows`) of that matter at or after the database's clock
/// (taken just before and just after the query: either may be right), in the firm's zone.
async fn assert_overview_follows(store: &ppsync::store::Store, cli: &[Vec<Option<String>>]) {
    let next_at = match store.backend() {
        Backend::Sqlite => "next_deadline_at".to_string(),
        Backend::Postgres => "to_char(next_deadline_at AT TIME ZONE 'UTC', \
                              'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            .to_string(),
    };
    let first = |matter: &str, after: &str| -> [Option<String>; 3] {
        cli.iter()
            .filter(|r| r[4].as_deref() == Some(matter) && r[9].as_deref() >= Some(after))
            .map(|r| (r[9].clone(), r[0].clone(), r[10].clone()))
            .min()
            .map_or([None, None, None], |(at, source, local)| {
                [at, source, local]
            })
    };
    let before = canonical(chrono::Utc::now());
    let rows = text_rows(
        store,
        &format!(
            "SELECT matter_id, {next_at}, next_deadline_source, next_deadline_local \
             FROM matter_overview"
        ),
    )
    .await;
    let after = canonical(chrono::Utc::now());
    assert!(!rows.is_empty(), "matter_overview is empty");
    let mut with_next = 0;
    for r in &rows {
        let id = r[0].as_deref().unwrap();
        let got = [r[1].clone(), r[2].clone(), r[3].clone()];
        let want = [first(id, &before), first(id, &after)];
        assert!(
            want.contains(&got),
            "{id}: next deadline {got:?}, want one of {want:?}"
        );
        with_next += usize::from(got[0].is_some());
    }
    assert!(with_next > 0, "no matter has a next deadline");
}

fn set_zone(app: &TestApp, from: &str, to: &str) {
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let from = format!("time_zone = \"{from}\"");
    assert!(text.contains(&from));
    let text = text.replace(&from, &format!("time_zone = \"{to}\""));
    std::fs::write(&app.config_path, text).unwrap();
}

#[tokio::test]
async fn upcoming_deadlines_is_the_engines_list_in_local_and_utc() {
    let sim = sim(0.02).await;
    sim.pause_changes(true);
    let account = sim.truth("accounts")[0].clone();
    let contact = sim
        .create(
            "contacts",
            json!({"first_name": "Jessica", "last_name": "Young", "display_name": "Jessica Young",
                   "account_ref": {"id": account["id"], "display_name": account["display_name"]},
                   "custom_field_values": [{"custom_field_ref": {"id": "cf-eng", "label": "Engagement Date", "value_type": "Date"},
                                            "value_date_time": "2021-05-04T19:00:00"}]}),
        )
        .unwrap();
    let contact_id = contact["id"].as_str().unwrap().to_string();
    // A Date field the simulated firm fills on accounts.
    let account_label = sim
        .truth("accounts")
        .iter()
        .flat_map(|r| {
            r["company_custom_field_values"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|f| f["custom_field_ref"]["value_type"] == "Date" && f["value_date_time"].is_string())
        .and_then(|f| f["custom_field_ref"]["label"].as_str().map(str::to_string))
        .expect("the simulated accounts have a Date custom field");
    let matter = sim.truth("matters")[0].clone();
    let event = sim
        .create(
            "events",
            json!({"subject": "closing call", "start_date_time": "2027-11-06T00:30:00", "is_all_day": false,
                   "matter_ref": {"id": matter["id"], "display_name": matter["display_name"]},
                   "account_ref": matter["account_ref"]}),
        )
        .unwrap();
    let event_id = event["id"].as_str().unwrap().to_string();
    let la = "America/Los_Angeles";
    let app = app_with(
        sim.clone(),
        &format!(
            "time_zone = \"{la}\"\n[deadlines]\ncontact_fields = [\"Engagement Date\"]\naccount_fields = [{account_label:?}]"
        ),
    )
    .await;
    assert_clean(&app.pass().await);
    let store = &app.engine.store;

    // After a pass: the CLI's list, row for row, every source among them.
    let rows = view_rows(store).await;
    let cli = cli_rows(&app).await;
    assert_eq!(rows, cli, "upcoming_deadlines after a pass");
    assert_overview_follows(store, &cli).await;
    // PostgreSQL: the first backfill's pages wrote them, each with its records (the table was
    // seeded empty, row_count 0, and never rewritten whole). SQLite: one rewrite at its end.
    let whole = match store.backend() {
        Backend::Postgres => 0,
        Backend::Sqlite => rows.len() as i64,
    };
    assert_eq!(
        count(store, "SELECT row_count FROM deadline_rows_state").await,
        whole,
        "deadline_rows after a first backfill"
    );
    let sources = |rows: &[Vec<Option<String>>], table: &str| -> usize {
        rows.iter()
            .filter(|r| r[1].as_deref() == Some(table))
            .count()
    };
    for table in ["tasks", "events", "matters", "contacts", "accounts"] {
        assert!(sources(&rows, table) > 0, "no deadline from {table}");
    }
    let of = |rows: &[Vec<Option<String>>], id: &str| -> Vec<Vec<Option<String>>> {
        rows.iter()
            .filter(|r| r[2].as_deref() == Some(id))
            .cloned()
            .collect()
    };
    let engagement = of(&rows, &contact_id);
    assert_eq!(engagement.len(), 1);
    assert_eq!(engagement[0][0].as_deref(), Some("Engagement Date"));
    assert_eq!(engagement[0][11].as_deref(), Some("2021-05-04"));
    assert_eq!(
        engagement[0][10].as_deref(),
        Some("2021-05-04T00:00:00-07:00")
    );
    let call = &of(&rows, &event_id)[0];
    assert_eq!(
        (call[9].as_deref(), call[10].as_deref(), call[11].as_deref()),
        (
            Some("2027-11-06T00:30:00.000000Z"),
            Some("2027-11-05T17:30:00-07:00"),
            Some("2027-11-05")
        )
    );

    // Another zone and `ppsync sync` (nothing changed at the source): the local columns follow,
    // an instant's UTC stays.
    let london = "Europe/London";
    set_zone(&app, la, london);
    let (code, _, err) = app.cli(&["sync"]).await;
    assert_eq!(code, 0, "{err}");
    let rows = view_rows(store).await;
    let cli = cli_rows(&app).await;
    assert_eq!(rows, cli, "upcoming_deadlines in London");
    assert_overview_follows(store, &cli).await;
    assert!(rows.iter().all(|r| r[12].as_deref() == Some(london)));
    let call = &of(&rows, &event_id)[0];
    assert_eq!(
        (call[9].as_deref(), call[10].as_deref(), call[11].as_deref()),
        (
            Some("2027-11-06T00:30:00.000000Z"),
            Some("2027-11-06T00:30:00+00:00"),
            Some("2027-11-06")
        )
    );

    // A moved 45 Day Deadline and a deleted contact, after the next pass.
    let with_45 = sim
        .truth("matters")
        .into_iter()
        .find(|m| {
            m["custom_field_values"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| {
                    f["custom_field_ref"]["label"] == "45 Day Deadline"
                        && f["value_date_time"].is_string()
                })
        })
        .expect("a matter with a 45 Day Deadline");
    let id = with_45["id"].as_str().unwrap().to_string();
    let mut fields = with_45["custom_field_values"].clone();
    for f in fields.as_array_mut().unwrap() {
        if f["custom_field_ref"]["label"] == "45 Day Deadline" {
            f["value_date_time"] = json!("2031-07-15T19:00:00");
        }
    }
    sim.edit("matters", &id, json!({"custom_field_values": fields}))
        .unwrap();
    sim.delete("contacts", &contact_id).unwrap();
    // PostgreSQL: the row versions before the pass, to tell which rows it wrote.
    let pg_versions = if store.backend() == Backend::Postgres {
        rows_text(store, "SELECT xmin::text FROM deadline_rows").await
    } else {
        Vec::new()
    };
    let app = TestApp {
        // The engine reads the config it was made with: the new zone's.
        engine: ppsync::app::engine(
            &ppsync::config::Config::load(Some(&app.config_path)).unwrap(),
            app.engine.clock.clone(),
        )
        .await
        .unwrap(),
        ..app
    };
    assert_clean(&app.full_pass().await);
    let store = &app.engine.store;
    let rows = view_rows(store).await;
    assert_eq!(
        rows,
        cli_rows(&app).await,
        "upcoming_deadlines after the changes"
    );
    if store.backend() == Backend::Postgres {
        // Only what changed is written: the moved deadline, not the thousands that did not
        // move (each rewritten row is a dead one on PostgreSQL).
        let before: std::collections::HashSet<String> = pg_versions.into_iter().collect();
        let written = rows_text(store, "SELECT xmin::text FROM deadline_rows")
            .await
            .into_iter()
            .filter(|x| !before.contains(x))
            .count();
        assert!(
            (1..=3).contains(&written),
            "{written} of {} rows written for one moved deadline",
            rows.len()
        );
    }
    assert!(
        of(&rows, &contact_id).is_empty(),
        "the deleted contact's deadline stays"
    );
    let moved: Vec<_> = of(&rows, &id)
        .into_iter()
        .filter(|r| r[0].as_deref() == Some("45 Day Deadline"))
        .collect();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        (moved[0][10].as_deref(), moved[0][11].as_deref()),
        (Some("2031-07-15T00:00:00+01:00"), Some("2031-07-15"))
    );
    assert_eq!(
        moved[0][9].as_deref(),
        parse_api_time("2031-07-14T23:00:00")
            .map(canonical)
            .as_deref()
    );

    // An incremental pass: a completed task's deadline goes, a rescheduled one's moves, with
    // the pages that bring them.
    let open: Vec<String> = rows
        .iter()
        .filter(|r| r[1].as_deref() == Some("tasks"))
        .filter_map(|r| r[2].clone())
        .take(2)
        .collect();
    assert_eq!(open.len(), 2, "two open tasks with a due date");
    sim.edit("tasks", &open[0], json!({"status": "Completed"}))
        .unwrap();
    sim.edit(
        "tasks",
        &open[1],
        json!({"due_date": "2032-02-03T10:00:00"}),
    )
    .unwrap();
    assert_clean(&app.pass().await);
    let rows = view_rows(store).await;
    assert_eq!(
        rows,
        cli_rows(&app).await,
        "upcoming_deadlines after an incremental pass"
    );
    assert!(
        of(&rows, &open[0]).is_empty(),
        "a completed task's deadline stays"
    );
    assert_eq!(
        of(&rows, &open[1])
            .iter()
            .map(|r| r[11].as_deref())
            .collect::<Vec<_>>(),
        [Some("2032-02-03")]
    );
}

/// Two rewrites at once (a CLI pass beside the daemon) leave one set of rows, not both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rewrites_leave_one_set_of_rows() {
    let app = app(0.01, "").await;
    assert_clean(&app.pass().await);
    let (store, sources) = (&app.engine.store, &app.engine.cfg.deadlines);
    let n = ppsync::deadlines::all(store, sources).await.unwrap().len();
    assert!(n > 10, "{n} deadlines");
    for _ in 0..5 {
        let now = chrono::Utc::now();
        let (a, b) = tokio::join!(
            ppsync::deadlines::refresh(store, sources, now, true),
            ppsync::deadlines::refresh(store, sources, now, true)
        );
        assert_eq!((a.unwrap(), b.unwrap()), (Some(n), Some(n)));
        let rows = count(store, "SELECT COUNT(*) FROM upcoming_deadlines").await;
        assert_eq!(rows as usize, n);
    }
}
