//! The views for applications (migrations `*_views.sql`), queried after a backfill from ppsim and
//! compared with the simulator's truth, on whichever backend the suite runs.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ppsync::resource::find;
use ppsync::store::{Backend, Store};
use ppsync::time::{canonical, parse_api_time};
use serde_json::Value;

use crate::support::*;

/// Every row of `sql`, each column as text (the query casts; NULL stays None).
async fn text_rows(store: &Store, sql: &str) -> Vec<Vec<Option<String>>> {
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

/// An instant column as canonical UTC text on either backend.
fn ts(store: &Store, col: &str) -> String {
    match store.backend() {
        Backend::Sqlite => col.to_string(),
        Backend::Postgres => {
            format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        }
    }
}

/// A boolean column as `true`/`false` on either backend (SQLite holds 1/0).
fn boolean(col: &str) -> String {
    format!("CASE WHEN {col} THEN 'true' WHEN NOT {col} THEN 'false' END")
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// How the mirror holds an instant the API sent as text.
fn instant(v: &Value) -> Option<String> {
    v.as_str().and_then(parse_api_time).map(canonical)
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// One matter custom field value as the view should flatten it: (matter, position, label, type,
/// text, number, date, bool, contact id).
type Cfv = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn expected_cfv(matter: &str, i: usize, f: &Value) -> Cfv {
    let ty = f["custom_field_ref"]["value_type"].as_str().unwrap_or("");
    let is = |types: &[&str]| types.contains(&ty);
    let text = (!is(&[
        "Checkbox", "Contact", "Date", "DateTime", "Number", "Currency",
    ]))
    .then(|| s(&f["value_string"]))
    .flatten();
    let number = is(&["Number", "Currency"])
        .then(|| f["value_number"].as_f64().map(|n| format!("{n:.2}")))
        .flatten();
    let date = is(&["Date", "DateTime"])
        .then(|| instant(&f["value_date_time"]))
        .flatten();
    let boolean = is(&["Checkbox"])
        .then(|| f["value_boolean"].as_bool().map(|b| b.to_string()))
        .flatten();
    let contact = is(&["Contact"])
        .then(|| s(&f["contact_ref"]["id"]))
        .flatten();
    (
        matter.to_owned(),
        i.to_string(),
        s(&f["custom_field_ref"]["label"]),
        Some(ty.to_owned()),
        text,
        number,
        date,
        boolean,
        contact,
    )
}

/// After a backfill every view holds what the simulator's records say: custom fields flattened by
/// type, open tasks with their assignees, every deadline source (each matter's "45 Day Deadline"
/// among them), the matter overview's counts and next deadlines, assignees and tags; then a
/// deletion at the source takes a record out of `<table>_current` (and a completed task out of
/// `open_tasks`) while the table keeps it.
#[tokio::test]
async fn views_hold_the_simulators_truth() {
    let app = app(0.02, "").await;
    assert_clean(&app.pass().await);
    let store = &app.engine.store;
    let matters = app.truth(find("matters").unwrap());
    let tasks = app.truth(find("tasks").unwrap());
    let events = app.truth(find("events").unwrap());
    assert!(matters.len() >= 10, "{} matters", matters.len());

    // matter_custom_fields: every value each matter carries, in the column its type reads.
    let mut want: Vec<Cfv> = Vec::new();
    for m in &matters {
        let id = m["id"].as_str().unwrap();
        for (i, f) in array(&m["custom_field_values"]).iter().enumerate() {
            want.push(expected_cfv(id, i, f));
        }
    }
    let got: Vec<Cfv> = text_rows(
        store,
        &format!(
            "SELECT matter_id, CAST(position AS TEXT), label, type, value_text, \
             CAST(value_number AS TEXT), \
             {}, {}, value_contact_id FROM matter_custom_fields",
            ts(store, "value_date"),
            boolean("value_bool")
        ),
    )
    .await
    .into_iter()
    .map(|r| {
        let mut r = r.into_iter();
        let mut next = || r.next().unwrap();
        let id = next().unwrap();
        let pos = next().unwrap();
        let (label, ty, text, number, date, b, contact) =
            (next(), next(), next(), next(), next(), next(), next());
        // Each backend writes a double its own way: compare at cents.
        let number = number.map(|n| format!("{:.2}", n.parse::<f64>().unwrap()));
        (id, pos, label, ty, text, number, date, b, contact)
    })
    .collect();
    let (mut want_sorted, mut got_sorted) = (want.clone(), got.clone());
    want_sorted.sort();
    got_sorted.sort();
    assert!(want.len() > 50, "{} custom field values", want.len());
    assert_eq!(got_sorted, want_sorted, "matter_custom_fields");

    // open_tasks: the tasks not completed, with their matter's name and assignees in order.
    let matter_name: BTreeMap<&str, &str> = matters
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap(),
                m["display_name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let open: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["status"].as_str() != Some("Completed"))
        .collect();
    let mut want: Vec<Vec<Option<String>>> = open
        .iter()
        .map(|t| {
            let names: Vec<&str> = array(&t["assigned_to_users"])
                .iter()
                .filter_map(|u| u["display_name"].as_str())
                .collect();
            let matter = s(&t["matter_ref"]["id"]);
            vec![
                s(&t["id"]),
                s(&t["subject"]),
                instant(&t["due_date"]),
                matter.clone(),
                matter
                    .as_deref()
                    .and_then(|m| matter_name.get(m))
                    .map(|n| n.to_string()),
                (!names.is_empty()).then(|| names.join(", ")),
            ]
        })
        .collect();
    let mut got = text_rows(
        store,
        &format!(
            "SELECT task_id, subject, {}, matter_id, matter_name, assignees FROM open_tasks",
            ts(store, "due_date")
        ),
    )
    .await;
    want.sort();
    got.sort();
    assert!(
        open.len() > 10 && open.len() < tasks.len(),
        "{} open",
        open.len()
    );
    assert_eq!(got, want, "open_tasks");

    // upcoming_deadlines: one row per deadline of the default sources (open tasks, events,
    // statute dates, matters' "45 Day Deadline" and "180 Day Deadline"), in the default zone
    // (UTC): a date-only deadline falls at the start of its day, an event at its instant.
    // (source, id, due_at, due_raw, due_local, local_date, all_day, time_zone)
    type Due = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let mut want: BTreeSet<Due> = BTreeSet::new();
    let due = |source: &str, id: &Value, raw: &Value, all_day: bool| -> Option<Due> {
        let t = raw.as_str().and_then(parse_api_time)?;
        let at = if all_day {
            t.date_naive().and_time(chrono::NaiveTime::MIN).and_utc()
        } else {
            t
        };
        Some((
            source.into(),
            s(id).unwrap(),
            Some(canonical(at)),
            s(raw),
            Some(at.to_rfc3339()),
            Some(t.date_naive().to_string()),
            Some(all_day.to_string()),
            Some("UTC".into()),
        ))
    };
    // Each deadline with its matter (a task's or event's matter_ref, a matter itself): the
    // sources of matter_overview's next deadline.
    let mut by_matter: Vec<(Option<String>, Due)> = Vec::new();
    for t in &open {
        let d = due("Task", &t["id"], &t["due_date"], true);
        by_matter.extend(d.map(|d| (s(&t["matter_ref"]["id"]), d)));
    }
    for e in &events {
        let all_day = e["is_all_day"].as_bool() == Some(true);
        let d = due("Event", &e["id"], &e["start_date_time"], all_day);
        by_matter.extend(d.map(|d| (s(&e["matter_ref"]["id"]), d)));
    }
    let mut forty_five = 0;
    for m in &matters {
        let statute = &m["statute_of_limitation_date"];
        let d = due("Statute of Limitations", &m["id"], statute, true);
        by_matter.extend(d.map(|d| (s(&m["id"]), d)));
        for f in array(&m["custom_field_values"]) {
            let label = f["custom_field_ref"]["label"].as_str().unwrap_or_default();
            if ["45 Day Deadline", "180 Day Deadline"].contains(&label) {
                forty_five += usize::from(label == "45 Day Deadline");
                let d = due(label, &m["id"], &f["value_date_time"], true);
                by_matter.extend(d.map(|d| (s(&m["id"]), d)));
            }
        }
    }
    want.extend(by_matter.iter().map(|(_, d)| d.clone()));
    let rows = text_rows(
        store,
        &format!(
            "SELECT source, record_id, {}, due_raw, due_local, CAST(local_date AS TEXT), {}, time_zone \
             FROM upcoming_deadlines",
            ts(store, "due_at"),
            boolean("all_day")
        ),
    )
    .await;
    let n = rows.len();
    let got: BTreeSet<Due> = rows
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap(),
                r[1].clone().unwrap(),
                r[2].clone(),
                r[3].clone(),
                r[4].clone(),
                r[5].clone(),
                r[6].clone(),
                r[7].clone(),
            )
        })
        .collect();
    assert_eq!(n, got.len(), "upcoming_deadlines has duplicate rows");
    assert!(
        forty_five >= 3,
        "{forty_five} matters with a 45 Day Deadline"
    );
    assert_eq!(got, want, "upcoming_deadlines");

    // matter_overview: one row per matter, its open task count, and its next deadline after the
    // database's clock (computed here just before and just after the query: either may be right),
    // the first of its deadlines above by (due_at, source): when, which source, local time.
    let deadlines_of = |matter: &str, after: DateTime<Utc>| -> [Option<String>; 3] {
        let after = canonical(after);
        by_matter
            .iter()
            .filter(|(m, d)| m.as_deref() == Some(matter) && d.2.as_deref() >= Some(&after))
            .map(|(_, d)| (d.2.clone(), Some(d.0.clone()), d.4.clone()))
            .min()
            .map_or([None, None, None], |(at, source, local)| {
                [at, source, local]
            })
    };
    let before = Utc::now();
    let rows = text_rows(
        store,
        &format!(
            "SELECT matter_id, CAST(open_tasks AS TEXT), {}, account_name, next_deadline_source, \
             next_deadline_local FROM matter_overview",
            ts(store, "next_deadline_at")
        ),
    )
    .await;
    let after = Utc::now();
    assert_eq!(rows.len(), matters.len(), "matter_overview rows");
    let accounts: BTreeMap<String, Option<String>> = app
        .truth(find("accounts").unwrap())
        .iter()
        .map(|a| (s(&a["id"]).unwrap(), s(&a["display_name"])))
        .collect();
    let mut with_next = 0;
    for r in &rows {
        let id = r[0].as_deref().unwrap();
        let m = matters.iter().find(|m| m["id"] == id).unwrap();
        let open_count = open
            .iter()
            .filter(|t| t["matter_ref"]["id"].as_str() == Some(id))
            .count();
        assert_eq!(
            r[1].as_deref(),
            Some(open_count.to_string().as_str()),
            "{id}"
        );
        let next = [deadlines_of(id, before), deadlines_of(id, after)];
        let got = [r[2].clone(), r[4].clone(), r[5].clone()];
        assert!(
            next.contains(&got),
            "{id}: next deadline {got:?}, want one of {next:?}"
        );
        with_next += usize::from(r[2].is_some());
        let account = m["account_ref"]["id"].as_str().unwrap_or_default();
        assert_eq!(
            r[3],
            accounts.get(account).cloned().flatten(),
            "{id}: client"
        );
    }
    assert!(with_next > 0, "no matter has a next deadline");

    // Assignees and tags, row for row.
    let mut want: Vec<Vec<Option<String>>> = Vec::new();
    for t in &tasks {
        for (i, u) in array(&t["assigned_to_users"]).iter().enumerate() {
            want.push(vec![
                s(&t["id"]),
                Some(i.to_string()),
                s(&u["id"]),
                s(&u["display_name"]),
            ]);
        }
    }
    let mut got = text_rows(
        store,
        "SELECT task_id, CAST(position AS TEXT), user_id, user_name FROM task_assignees",
    )
    .await;
    want.sort();
    got.sort();
    assert!(want.len() >= tasks.len(), "{} task assignees", want.len());
    assert_eq!(got, want, "task_assignees");
    for (view, res) in [("matter_tags", "matters"), ("task_tags", "tasks")] {
        let mut want: Vec<Vec<Option<String>>> = Vec::new();
        for r in app.truth(find(res).unwrap()) {
            for t in array(&r["tags"]) {
                want.push(vec![s(&r["id"]), s(t)]);
            }
        }
        let key = if res == "matters" {
            "matter_id"
        } else {
            "task_id"
        };
        let mut got = text_rows(store, &format!("SELECT {key}, tag FROM {view}")).await;
        want.sort();
        got.sort();
        assert!(!want.is_empty(), "{view}: no tags in the truth");
        assert_eq!(got, want, "{view}");
    }

    // A matter deleted at the source leaves matters_current (the table keeps it, marked); a task
    // completed at the source leaves open_tasks and upcoming_deadlines.
    let gone = s(&matters[0]["id"]).unwrap();
    let done = open
        .iter()
        .find(|t| t["matter_ref"]["id"].as_str() != Some(gone.as_str()))
        .and_then(|t| s(&t["id"]))
        .unwrap();
    app.sim.delete("matters", &gone).unwrap();
    app.sim
        .edit("tasks", &done, serde_json::json!({"status": "Completed"}))
        .unwrap();
    assert_clean(&app.full_pass().await);
    let live = count(store, "SELECT COUNT(*) FROM matters_current").await;
    assert_eq!(live as usize, matters.len() - 1);
    let q = |sql: &str, id: &str| sql.replace('?', &format!("'{id}'"));
    assert_eq!(
        count(
            store,
            &q("SELECT COUNT(*) FROM matters_current WHERE id = ?", &gone)
        )
        .await,
        0
    );
    assert_eq!(
        count(
            store,
            &q(
                "SELECT COUNT(*) FROM matters WHERE id = ? AND deleted_at IS NOT NULL",
                &gone
            )
        )
        .await,
        1
    );
    for sql in [
        "SELECT COUNT(*) FROM matter_overview WHERE matter_id = ?",
        "SELECT COUNT(*) FROM matter_custom_fields WHERE matter_id = ?",
        "SELECT COUNT(*) FROM upcoming_deadlines WHERE record_table = 'matters' AND record_id = ?",
    ] {
        assert_eq!(count(store, &q(sql, &gone)).await, 0, "{sql}");
    }
    for sql in [
        "SELECT COUNT(*) FROM open_tasks WHERE task_id = ?",
        "SELECT COUNT(*) FROM upcoming_deadlines WHERE record_id = ?",
    ] {
        assert_eq!(count(store, &q(sql, &done)).await, 0, "{sql}");
    }
    let mut want: Vec<String> = app
        .truth(find("tasks").unwrap())
        .iter()
        .filter(|t| t["status"].as_str() != Some("Completed"))
        .filter_map(|t| s(&t["id"]))
        .collect();
    let mut got = strings(store, "SELECT task_id FROM open_tasks").await;
    want.sort();
    got.sort();
    assert!(!want.contains(&done));
    assert_eq!(got, want, "open_tasks after the changes");
}

/// Every view that reads the records' JSON, each queried in the odd-records test below.
const JSON_VIEWS: &[&str] = &[
    "matter_custom_fields",
    "contact_custom_fields",
    "account_custom_fields",
    "matter_assignees",
    "task_assignees",
    "event_assignees",
    "matter_tags",
    "account_tags",
    "task_tags",
    "event_tags",
    "open_tasks",
    "upcoming_deadlines",
    "matter_overview",
];

/// Lists that are not lists, values of the wrong type, dates that are not dates and deep nesting: every view still answers, and what cannot be read is NULL or left
/// out, never an error.
#[tokio::test]
async fn views_answer_over_odd_records() {
    let app = app(0.01, "").await;
    assert_clean(&app.pass().await);
    let store = &app.engine.store;
    let matters = app.truth(find("matters").unwrap());
    let tasks = app.truth(find("tasks").unwrap());
    let (m0, m1) = (s(&matters[0]["id"]).unwrap(), s(&matters[1]["id"]).unwrap());
    let t0 = s(&tasks[0]["id"]).unwrap();
    // Raw text, so a value can be what serde_json would never write (every key once).
    let field = |label: &str, ty: &str, key: &str, value: &str| {
        let values: Vec<String> = [
            ("value_boolean", "false"),
            ("contact_ref", "null"),
            ("value_date_time", "null"),
            ("value_number", "null"),
            ("value_string", "null"),
        ]
        .iter()
        .map(|(k, v)| format!(r#""{k}":{}"#, if *k == key { value } else { v }))
        .collect();
        format!(
            r#"{{"custom_field_ref":{{"id":"f-{label}","label":"{label}","value_type":"{ty}"}},{}}}"#,
            values.join(",")
        )
    };
    let odd_fields = [
        field("Not a date", "Date", "value_date_time", r#""soon""#),
        field(
            "Thirtieth",
            "Date",
            "value_date_time",
            r#""2026-02-30T20:00:00""#,
        ),
        field("Now", "DateTime", "value_date_time", r#""now""#),
        field("A number", "Number", "value_number", r#""12""#),
        field("Odd checkbox", "Checkbox", "value_boolean", "1"),
        field(
            "45 Day Deadline",
            "Date",
            "value_date_time",
            r#""2026-03-02T20:00:00""#,
        ),
        "5".to_string(),
        format!("{}1{}", "[".repeat(300), "]".repeat(300)),
    ];
    let sim = &app.sim;
    sim.set_raw_field("matters", &m0, "custom_field_values", r#"{"a":1}"#)
        .unwrap();
    sim.set_raw_field("matters", &m0, "tags", r#""oops""#)
        .unwrap();
    sim.set_raw_field("matters", &m0, "assigned_to_users", "null")
        .unwrap();
    let list = format!("[{}]", odd_fields.join(","));
    sim.set_raw_field("matters", &m1, "custom_field_values", &list)
        .unwrap();
    sim.set_raw_field("matters", &m1, "tags", r#"["a", 7, null, "b"]"#)
        .unwrap();
    sim.set_raw_field(
        "tasks",
        &t0,
        "assigned_to_users",
        r#"[{"id":"u1","display_name":"A"}, 7, "u2"]"#,
    )
    .unwrap();
    sim.set_raw_field("tasks", &t0, "status", "false").unwrap();
    assert_clean(&app.pass().await);

    for view in JSON_VIEWS {
        let n = count(store, &format!("SELECT COUNT(*) FROM {view}")).await;
        assert!(n > 0, "{view} is empty");
    }
    let q = |sql: &str, id: &str| sql.replace('?', &format!("'{id}'"));
    for sql in [
        "SELECT COUNT(*) FROM matter_custom_fields WHERE matter_id = ?",
        "SELECT COUNT(*) FROM matter_tags WHERE matter_id = ?",
        "SELECT COUNT(*) FROM matter_assignees WHERE matter_id = ?",
    ] {
        assert_eq!(count(store, &q(sql, &m0)).await, 0, "{sql}");
    }
    assert_eq!(
        count(
            store,
            &q(
                "SELECT COUNT(*) FROM matter_overview WHERE matter_id = ?",
                &m0
            )
        )
        .await,
        1
    );
    // The six objects are rows; only the real date reads as an instant; the rest is NULL.
    let rows = text_rows(
        store,
        &q(
            &format!(
                "SELECT label, {}, value_date_raw, CAST(value_number AS TEXT), {} \
                 FROM matter_custom_fields WHERE matter_id = ? ORDER BY position",
                ts(store, "value_date"),
                boolean("value_bool")
            ),
            &m1,
        ),
    )
    .await;
    let some = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![
            vec![some("Not a date"), None, some("soon"), None, None],
            vec![
                some("Thirtieth"),
                None,
                some("2026-02-30T20:00:00"),
                None,
                None
            ],
            vec![some("Now"), None, some("now"), None, None],
            vec![some("A number"), None, None, None, None],
            vec![some("Odd checkbox"), None, None, None, None],
            vec![
                some("45 Day Deadline"),
                some("2026-03-02T20:00:00.000000Z"),
                some("2026-03-02T20:00:00"),
                None,
                None
            ],
        ]
    );
    let deadlines = strings(
        store,
        &q(
            "SELECT source FROM upcoming_deadlines WHERE record_id = ? AND kind = 'custom_field'",
            &m1,
        ),
    )
    .await;
    assert_eq!(deadlines, ["45 Day Deadline"]);
    let tags = strings(
        store,
        &q(
            "SELECT tag FROM matter_tags WHERE matter_id = ? ORDER BY tag",
            &m1,
        ),
    )
    .await;
    assert_eq!(tags, ["a", "b"]);
    let assignees = strings(
        store,
        &q("SELECT user_id FROM task_assignees WHERE task_id = ?", &t0),
    )
    .await;
    assert_eq!(assignees, ["u1"]);
    // A status that is not text is not "Completed": the task stays open.
    assert_eq!(
        count(
            store,
            &q("SELECT COUNT(*) FROM open_tasks WHERE task_id = ?", &t0)
        )
        .await,
        1
    );
}
