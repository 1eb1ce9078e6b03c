//! Deadlines in the firm's zone: date-only fields read as firm-local dates and instants shown in
//! local time across DST changes (two zones); a matter's custom-field deadlines notified at their
//! lead times, once each across a restart, cancelled when moved or cleared.

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};

use crate::support::*;

const LA: &str = "America/Los_Angeles";

/// Records whose dates sit on either side of DST changes, in a year ahead of the test's clock
/// (`ppsync deadlines` counts days from the wall clock).
fn dst_records(sim: &ppsim::SimHandle, matter: &Value) -> (String, String) {
    let matter_ref = json!({"id": matter["id"], "display_name": matter["display_name"]});
    let task = |due: &str, subject: &str| {
        sim.create(
            "tasks",
            json!({"subject": subject, "status": "NotCompleted", "due_date": due,
                   "matter_ref": matter_ref, "account_ref": matter["account_ref"],
                   "assigned_to_users": [{"id": "u1", "display_name": "Ann Ames", "email_address": "ann@example.com"}]}),
        )
        .unwrap()
    };
    let event = |start: &str, subject: &str| {
        sim.create(
            "events",
            json!({"subject": subject, "start_date_time": start, "is_all_day": false,
                   "matter_ref": matter_ref, "account_ref": matter["account_ref"]}),
        )
        .unwrap()
    };
    // Los Angeles leaves daylight time on 2027-11-07; London enters it on 2027-03-28.
    task("2027-11-05T07:00:00", "due Fri 5 Nov, LA midnight (PDT)");
    task("2027-11-12T08:00:00", "due Fri 12 Nov, LA midnight (PST)");
    event("2027-11-06T00:30:00", "Fri 5 Nov 17:30 in LA (PDT)");
    event("2027-11-13T01:30:00", "Fri 12 Nov 17:30 in LA (PST)");
    task(
        "2027-03-26T00:00:00",
        "due Fri 26 Mar, London midnight (GMT)",
    );
    task(
        "2027-03-28T23:00:00",
        "due Mon 29 Mar, London midnight (BST)",
    );
    // And one within the status page's 30 days of the wall clock.
    let zone: chrono_tz::Tz = LA.parse().unwrap();
    let soon = Utc::now().with_timezone(&zone).date_naive() + chrono::Days::new(3);
    let soon = zone
        .from_local_datetime(&soon.and_hms_opt(0, 0, 0).unwrap())
        .unwrap()
        .to_utc();
    task(&soon.format("%Y-%m-%dT%H:%M:%S").to_string(), "soon");
    let a = event("2027-03-26T09:00:00", "Fri 26 Mar 09:00 in London (GMT)");
    let b = event("2027-03-29T08:00:00", "Mon 29 Mar 09:00 in London (BST)");
    (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    )
}

fn by_subject<'a>(list: &'a [Value], subject: &str) -> &'a Value {
    list.iter()
        .find(|d| d["subject"] == subject)
        .unwrap_or_else(|| panic!("{subject} not listed"))
}

async fn listed(app: &TestApp, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["deadlines", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = app.cli(&all).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn dates_and_times_are_the_firms_own_across_dst_changes_in_two_zones() {
    let sim = sim(0.02).await;
    sim.pause_changes(true);
    let matter = sim.truth("matters")[0].clone();
    dst_records(&sim, &matter);
    let la = app_with(sim.clone(), &format!("time_zone = \"{LA}\"")).await;
    let london = app_with(sim.clone(), "time_zone = \"Europe/London\"").await;
    assert_clean(&la.pass().await);
    assert_clean(&london.pass().await);

    let l = listed(&la, &["--days", "400"]).await;
    let t = by_subject(&l, "due Fri 5 Nov, LA midnight (PDT)");
    assert_eq!(
        (t["date"].as_str(), t["kind"].as_str()),
        (Some("2027-11-05"), Some("Task"))
    );
    assert_eq!(t["due"], "2027-11-05T00:00:00-07:00");
    assert_eq!(t["all_day"], true);
    assert_eq!(t["matter"], matter["display_name"]);
    assert_eq!(t["client"], matter["account_ref"]["display_name"]);
    assert_eq!(t["assignees"], json!(["Ann Ames"]));
    let t = by_subject(&l, "due Fri 12 Nov, LA midnight (PST)");
    assert_eq!(
        (t["date"].as_str(), t["due"].as_str()),
        (Some("2027-11-12"), Some("2027-11-12T00:00:00-08:00"))
    );
    let e = by_subject(&l, "Fri 5 Nov 17:30 in LA (PDT)");
    assert_eq!(
        (e["date"].as_str(), e["due"].as_str()),
        (Some("2027-11-05"), Some("2027-11-05T17:30:00-07:00"))
    );
    assert_eq!(e["all_day"], false);
    let e = by_subject(&l, "Fri 12 Nov 17:30 in LA (PST)");
    assert_eq!(
        (e["date"].as_str(), e["due"].as_str()),
        (Some("2027-11-12"), Some("2027-11-12T17:30:00-08:00"))
    );
    assert!(l.iter().all(|d| d["time_zone"] == LA));
    // London's midnight is 16:00 or 17:00 the day before in Los Angeles.
    let t = by_subject(&l, "due Mon 29 Mar, London midnight (BST)");
    assert_eq!(t["date"], "2027-03-28");

    let l = listed(&london, &["--days", "400"]).await;
    let t = by_subject(&l, "due Fri 26 Mar, London midnight (GMT)");
    assert_eq!(
        (t["date"].as_str(), t["due"].as_str()),
        (Some("2027-03-26"), Some("2027-03-26T00:00:00+00:00"))
    );
    let t = by_subject(&l, "due Mon 29 Mar, London midnight (BST)");
    assert_eq!(
        (t["date"].as_str(), t["due"].as_str()),
        (Some("2027-03-29"), Some("2027-03-29T00:00:00+01:00"))
    );
    let e = by_subject(&l, "Fri 26 Mar 09:00 in London (GMT)");
    assert_eq!(e["due"], "2027-03-26T09:00:00+00:00");
    let e = by_subject(&l, "Mon 29 Mar 09:00 in London (BST)");
    assert_eq!(e["due"], "2027-03-29T09:00:00+01:00");
    // Friday 17:30 in Los Angeles is Saturday in London.
    let e = by_subject(&l, "Fri 12 Nov 17:30 in LA (PST)");
    assert_eq!(
        (e["date"].as_str(), e["due"].as_str()),
        (Some("2027-11-13"), Some("2027-11-13T01:30:00+00:00"))
    );

    // The status snapshot (/status, the page) lists them in local time too.
    let (code, out, err) = la.cli(&["status", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    let soon = by_subject(status["deadlines"].as_array().unwrap(), "soon");
    assert_eq!(soon["time_zone"], LA);
    let zone: chrono_tz::Tz = LA.parse().unwrap();
    let day = Utc::now().with_timezone(&zone).date_naive() + chrono::Days::new(3);
    let midnight = zone
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap())
        .unwrap();
    assert_eq!(soon["due"], midnight.to_rfc3339());
    assert!(soon["due"].as_str().unwrap().ends_with("T00:00:00-08:00") || day.month() != 12);

    // The table: local time with the zone named.
    let (code, out, err) = la
        .cli(&["deadlines", "--days", "400", "--kind", "event"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("times in America/Los_Angeles"), "{out}");
    assert!(out.contains("Fri 12 Nov 2027 17:30 PST"), "{out}");
    assert!(out.contains("Fri 5 Nov 2027 17:30 PDT"), "{out}");
    assert!(!out.contains("Task"), "--kind event: {out}");
    let mine = listed(&la, &["--days", "400", "--user", "ann"]).await;
    assert!(!mine.is_empty() && mine.iter().all(|d| d["assignees"] == json!(["Ann Ames"])));
    let (code, out, err) = la.cli(&["deadlines", "--kind", "Meeting"]).await;
    assert!(code != 0 && out.is_empty(), "{out}");
    assert!(
        err.contains("--kind \"Meeting\" is not a deadline source")
            && err.contains("\"45 Day Deadline\""),
        "{err}"
    );

    // A bad zone is refused at load, naming the key and an example.
    let (code, _, err) = run_cli_async(&la.config_path, &["deadlines"]).await;
    assert_eq!(code, 0, "{err}");
    let bad = la._dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&la.config_path)
            .unwrap()
            .replace(LA, "Pacific Time"),
    )
    .unwrap();
    let (code, out, err) = run_cli_async(&bad, &["deadlines"]).await;
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("`time_zone` = \"Pacific Time\" is not an IANA time zone")
            && err.contains("America/Los_Angeles")
            && err.trim().lines().count() == 1,
        "{err}"
    );
}

/// A matter's custom date field set to firm-local noon of `date` in Los Angeles (or cleared).
fn set_field(app: &TestApp, matter: &Value, label: &str, date: Option<NaiveDate>) {
    let zone: chrono_tz::Tz = LA.parse().unwrap();
    let value = date.map(|d| {
        let noon = zone
            .from_local_datetime(&d.and_hms_opt(12, 0, 0).unwrap())
            .unwrap()
            .to_utc();
        noon.format("%Y-%m-%dT%H:%M:%S").to_string()
    });
    let mut fields: Vec<Value> = matter["custom_field_values"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f["custom_field_ref"]["label"] != label)
        .collect();
    fields.push(json!({
        "custom_field_ref": {"id": "cf-45", "label": label, "value_type": "Date"},
        "value_boolean": false, "contact_ref": null, "value_date_time": value,
        "value_number": null, "value_string": null,
    }));
    app.sim
        .edit(
            "matters",
            matter["id"].as_str().unwrap(),
            json!({"custom_field_values": fields}),
        )
        .unwrap();
}

/// (id, status) of the outbox's deadline rows of one record, by id.
async fn deadline_rows(app: &TestApp, record: &str) -> Vec<(String, String)> {
    let rows = strings(
        &app.engine.store,
        &format!(
            "SELECT id || '|' || status FROM outbox WHERE kind = 'deadline' AND record_id = '{record}' ORDER BY id"
        ),
    )
    .await;
    rows.iter()
        .map(|r| {
            let (id, status) = r.rsplit_once('|').unwrap_or((r, ""));
            (id.to_string(), status.to_string())
        })
        .collect()
}

async fn scan(app: &TestApp, now: DateTime<Utc>) -> u64 {
    // A fresh scan state each time: as after a restart.
    ppsync::notify::deadline_scan(&app.engine.store, now, &app.engine.cfg.deadlines, &mut None)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_matters_45_day_deadline_is_notified_at_its_lead_times_once_moved_and_cleared() {
    let sim = sim(0.02).await;
    sim.pause_changes(true);
    let app = app_on_sim_clock(sim.clone(), &format!("time_zone = \"{LA}\"")).await;
    assert_clean(&app.pass().await);
    // Whatever the backfill found already due is recorded, never sent.
    let pending_after_backfill = count(
        &app.engine.store,
        "SELECT COUNT(*) FROM outbox WHERE kind = 'deadline' AND status = 'pending'",
    )
    .await;
    assert_eq!(pending_after_backfill, 0);

    let matter = sim.truth("matters")[0].clone();
    let id = matter["id"].as_str().unwrap().to_string();
    let zone: chrono_tz::Tz = LA.parse().unwrap();
    let today = sim.now().with_timezone(&zone).date_naive();
    let due = today + chrono::Days::new(10);
    set_field(&app, &matter, "45 Day Deadline", Some(due));
    assert_clean(&app.pass().await);
    // 10 days ahead: the 14-day notice is due now, written with the matter.
    let first = format!("deadline:45-day-deadline:{id}:{due}:14d");
    assert_eq!(
        deadline_rows(&app, &id).await,
        [(first.clone(), "pending".into())]
    );
    let payload: Value = serde_json::from_str(
        &strings(
            &app.engine.store,
            &format!("SELECT CAST(payload AS TEXT) FROM outbox WHERE id = '{first}'"),
        )
        .await[0],
    )
    .unwrap();
    assert_eq!(payload["source"], "45 Day Deadline");
    assert_eq!(payload["date"], due.to_string());
    assert_eq!(payload["days_left"], 10);
    assert_eq!(payload["matter"], matter["display_name"]);
    assert_eq!(payload["client"], matter["account_ref"]["display_name"]);
    assert_eq!(payload["time_zone"], LA);
    assert!(
        payload["summary"]
            .as_str()
            .unwrap()
            .starts_with("45 Day Deadline in 10 days: "),
        "{payload}"
    );
    // The same record read again, and scans (each as after a restart), add nothing.
    assert_clean(&app.full_pass().await);
    assert_eq!(scan(&app, sim.now()).await, 0);
    assert_eq!(scan(&app, sim.now()).await, 0);
    assert_eq!(deadline_rows(&app, &id).await.len(), 1);

    // Three days on the 7-day notice comes due (with other matters' that the days bring), once.
    sim.advance(Duration::from_secs(3 * 86400));
    assert!(scan(&app, sim.now()).await >= 1);
    assert_eq!(scan(&app, sim.now()).await, 0);
    let seven = format!("deadline:45-day-deadline:{id}:{due}:7d");
    assert_eq!(
        deadline_rows(&app, &id).await,
        [
            (first.clone(), "pending".into()),
            (seven.clone(), "pending".into())
        ]
    );

    // Moved 20 days out: the old date's pending notices are cancelled; none due for the new one.
    let today = sim.now().with_timezone(&zone).date_naive();
    let moved = today + chrono::Days::new(20);
    let matter = sim
        .truth("matters")
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .unwrap();
    set_field(&app, &matter, "45 Day Deadline", Some(moved));
    assert_clean(&app.pass().await);
    assert_eq!(
        deadline_rows(&app, &id).await,
        [
            (first.clone(), "cancelled".into()),
            (seven.clone(), "cancelled".into())
        ]
    );
    let listed = listed_on(&app, &id).await;
    assert_eq!(listed, [("45 Day Deadline".to_string(), moved.to_string())]);
    // Six days on, 14 days ahead: the new date's first notice.
    sim.advance(Duration::from_secs(6 * 86400));
    assert!(scan(&app, sim.now()).await >= 1);
    let new14 = format!("deadline:45-day-deadline:{id}:{moved}:14d");
    assert!(
        deadline_rows(&app, &id)
            .await
            .contains(&(new14.clone(), "pending".into()))
    );

    // Cleared: its pending notice is cancelled, nothing more comes.
    let matter = sim
        .truth("matters")
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .unwrap();
    set_field(&app, &matter, "45 Day Deadline", None);
    assert_clean(&app.pass().await);
    assert!(
        deadline_rows(&app, &id)
            .await
            .contains(&(new14, "cancelled".into()))
    );
    sim.advance(Duration::from_secs(7 * 86400));
    scan(&app, sim.now()).await;
    assert!(listed_on(&app, &id).await.is_empty());
    assert_eq!(
        count(
            &app.engine.store,
            &format!("SELECT COUNT(*) FROM outbox WHERE record_id = '{id}' AND status = 'pending' AND kind = 'deadline'")
        )
        .await,
        0
    );
}

/// The matter's deadlines as `ppsync deadlines --json` lists them, past (the simulator's clock
/// is behind the wall clock) and to come: (kind, date).
async fn listed_on(app: &TestApp, matter: &str) -> Vec<(String, String)> {
    let mut list = listed(app, &["--days", "3650", "--matter", matter, "--overdue"]).await;
    list.extend(listed(app, &["--days", "3650", "--matter", matter]).await);
    list.iter()
        .filter(|d| d["resource"] == "matters")
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_string(),
                d["date"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_rescheduled_task_is_notified_for_its_new_date_and_a_completed_one_for_none() {
    let sim = sim(0.02).await;
    sim.pause_changes(true);
    let app = app_on_sim_clock(sim.clone(), &format!("time_zone = \"{LA}\"")).await;
    assert_clean(&app.pass().await);
    let zone: chrono_tz::Tz = LA.parse().unwrap();
    let midnight = |d: NaiveDate| {
        zone.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .unwrap()
            .to_utc()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    let today = sim.now().with_timezone(&zone).date_naive();
    let (d1, d2) = (today + chrono::Days::new(1), today + chrono::Days::new(5));
    let task = sim
        .create(
            "tasks",
            json!({"subject": "file the identification", "status": "NotCompleted", "due_date": midnight(d1)}),
        )
        .unwrap();
    let id = task["id"].as_str().unwrap().to_string();
    assert_clean(&app.pass().await);
    let first = format!("deadline:task:{id}:{d1}:1d");
    assert_eq!(
        deadline_rows(&app, &id).await,
        [(first.clone(), "pending".into())]
    );

    sim.edit("tasks", &id, json!({"due_date": midnight(d2)}))
        .unwrap();
    assert_clean(&app.pass().await);
    let second = format!("deadline:task:{id}:{d2}:7d");
    assert_eq!(
        deadline_rows(&app, &id).await,
        [
            (first.clone(), "cancelled".into()),
            (second.clone(), "pending".into())
        ]
    );

    sim.edit("tasks", &id, json!({"status": "Completed"}))
        .unwrap();
    assert_clean(&app.pass().await);
    assert_eq!(
        deadline_rows(&app, &id).await,
        [(first, "cancelled".into()), (second, "cancelled".into())]
    );
    sim.advance(Duration::from_secs(5 * 86400));
    scan(&app, sim.now()).await;
    assert_eq!(
        deadline_rows(&app, &id).await.len(),
        2,
        "nothing for a completed task"
    );
}

#[tokio::test]
async fn the_zone_comes_from_the_environment_or_a_firms_settings_and_a_bad_one_is_refused() {
    let app = app(0.02, "").await;
    let config = app.config_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        ppsync_cmd(&config)
            .args(["deadlines"])
            .env("PPSYNC_TIME_ZONE", "Europe/London")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("(Europe/London)"), "{stdout}");

    let add = |zone: &str| {
        let config = app.config_path.clone();
        let set = format!("time_zone={zone}");
        async move {
            run_cli_async(
                &config,
                &[
                    "firm",
                    "add",
                    "acme",
                    "--client-id",
                    "x",
                    "--client-secret",
                    "y",
                    "--set",
                    &set,
                ],
            )
            .await
        }
    };
    let (code, out, err) = add("Pacific").await;
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("`time_zone` = \"Pacific\"") && err.trim().lines().count() == 1,
        "{err}"
    );
    let (code, out, _) = app.cli(&["firm", "list"]).await;
    assert!(
        code == 0 && !out.contains("acme"),
        "nothing registered: {out}"
    );
    let (code, out, err) = add(LA).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = app.cli(&["--firm", "acme", "deadlines"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(America/Los_Angeles)"), "{out}");
}

/// Reads an iCalendar file with Python's `icalendar` (a parser written apart from ours): each
/// VEVENT's UID, DTSTART (ISO text), its TZID and whether it is a date.
const READ_ICS: &str = r#"
import icalendar, json, sys
cal = icalendar.Calendar.from_ical(open(sys.argv[1], 'rb').read())
out = []
for e in cal.walk('VEVENT'):
    start = e['DTSTART']
    out.append({'uid': str(e['UID']), 'summary': str(e['SUMMARY']),
                'start': start.dt.isoformat(), 'tzid': start.params.get('TZID'),
                'date': start.params.get('VALUE') == 'DATE'})
print(json.dumps(out))
"#;

async fn ics_feed(app: &TestApp) -> String {
    let (code, out, err) = app.cli(&["deadlines", "--ics", "--days", "400"]).await;
    assert_eq!(code, 0, "{err}");
    out
}

fn parse_ics(ics: &str) -> Vec<Value> {
    let python = std::env::var("PPSYNC_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("PPSYNC_TEST_PYTHON is not set: run ./scripts/test.sh, which makes a Python venv with icalendar (target/py)")
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("feed.ics");
    std::fs::write(&file, ics).unwrap();
    let script = dir.path().join("read_ics.py");
    std::fs::write(&script, READ_ICS).unwrap();
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the feed parses: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_calendar_feed_holds_every_deadline_once_with_stable_uids_in_the_firms_zone() {
    let sim = sim(0.02).await;
    sim.pause_changes(true);
    let matter = sim.truth("matters")[0].clone();
    dst_records(&sim, &matter);
    let app = app_with(sim.clone(), &format!("time_zone = \"{LA}\"")).await;
    assert_clean(&app.pass().await);

    let listed = listed(&app, &["--days", "400"]).await;
    let first = ics_feed(&app).await;
    let events = parse_ics(&first);
    assert_eq!(events.len(), listed.len(), "one event per deadline");
    let uids: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e["uid"].as_str().unwrap()).collect();
    assert_eq!(uids.len(), events.len(), "UIDs are unique");
    for d in &listed {
        let slug = d["kind"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        let uid = format!(
            "{slug}.{}.{}@ppsync",
            d["id"].as_str().unwrap(),
            d["date"].as_str().unwrap()
        );
        let e = events
            .iter()
            .find(|e| e["uid"] == uid.as_str())
            .unwrap_or_else(|| panic!("{uid} in the feed"));
        if d["all_day"] == true {
            assert_eq!(
                (&e["date"], &e["start"]),
                (&json!(true), &d["date"]),
                "{uid}"
            );
        } else {
            // The same wall time in the firm's zone, named by TZID.
            assert_eq!(e["tzid"], LA, "{uid}");
            assert_eq!(e["start"], d["due"], "{uid}");
        }
    }
    // The DST pair: 17:30 on both sides of Los Angeles' change.
    let pst = events
        .iter()
        .find(|e| {
            e["summary"]
                .as_str()
                .unwrap()
                .contains("Fri 12 Nov 17:30 in LA (PST)")
        })
        .unwrap();
    assert_eq!(pst["start"], "2027-11-12T17:30:00-08:00");

    // Stable: the same records give the same UIDs.
    let again = parse_ics(&ics_feed(&app).await);
    let again: std::collections::BTreeSet<&str> =
        again.iter().map(|e| e["uid"].as_str().unwrap()).collect();
    assert_eq!(again, uids);

    // The daemon's endpoint serves the feed for subscription, from its own clock's today.
    let ep = crate::status_http::Endpoint::start(&app, None).await;
    let (status, ctype, body) = ep.get("/deadlines.ics").await;
    assert_eq!(status, 200, "{body}");
    assert!(ctype.starts_with("text/calendar"), "{ctype}");
    let served = parse_ics(&body);
    assert!(!served.is_empty());
    let march = events
        .iter()
        .find(|e| {
            e["summary"]
                .as_str()
                .unwrap()
                .contains("Fri 26 Mar 09:00 in London")
        })
        .unwrap();
    assert!(
        served.iter().any(|e| e["uid"] == march["uid"]),
        "a deadline within the feed's year is served"
    );
}

/// A contact's and an account's custom Date fields are deadline sources when named, listed with
/// their client (an account is its own); the matters' defaults stay.
#[tokio::test]
async fn contact_and_account_date_fields_are_deadlines_when_named() {
    let sim = sim(0.02).await;
    sim.pause_changes(true);
    // A Date field the simulated firm fills, of each kind of record.
    let date_label = |res: &str, key: &str| -> String {
        sim.truth(res)
            .iter()
            .flat_map(|r| r[key].as_array().cloned().unwrap_or_default())
            .find(|f| {
                f["custom_field_ref"]["value_type"] == "Date" && f["value_date_time"].is_string()
            })
            .and_then(|f| f["custom_field_ref"]["label"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("the simulated {res} have a Date custom field"))
    };
    // The simulated firm fills no Date field on contacts: one contact gets one.
    let account = sim.truth("accounts")[0].clone();
    sim.create(
        "contacts",
        json!({"first_name": "Jessica", "last_name": "Young", "display_name": "Jessica Young",
               "account_ref": {"id": account["id"], "display_name": account["display_name"]},
               "custom_field_values": [{"custom_field_ref": {"id": "cf-eng", "label": "Engagement Date", "value_type": "Date"},
                                        "value_date_time": "2021-05-04T19:00:00"}]}),
    )
    .unwrap();
    let contact_label = date_label("contacts", "custom_field_values");
    let account_label = date_label("accounts", "company_custom_field_values");
    let app = app_with(
        sim.clone(),
        &format!(
            "time_zone = \"{LA}\"\n[deadlines]\ncontact_fields = [{contact_label:?}]\naccount_fields = {account_label:?}"
        ),
    )
    .await;
    assert_clean(&app.pass().await);
    let with_field = |res: &str, key: &str, label: &str| -> std::collections::BTreeSet<String> {
        sim.truth(res)
            .iter()
            .filter(|r| {
                r[key].as_array().into_iter().flatten().any(|f| {
                    f["custom_field_ref"]["label"] == label && f["value_date_time"].is_string()
                })
            })
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let listed_ids = |list: &[Value]| -> std::collections::BTreeSet<String> {
        list.iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    // Past and coming: 14 years either way covers ppsim's dates.
    let all = |label: String| {
        let app = &app;
        async move {
            let mut l = listed(app, &["--overdue", "--days", "5200", "--kind", &label]).await;
            l.extend(listed(app, &["--days", "5200", "--kind", &label]).await);
            l
        }
    };
    let contacts = all(contact_label.clone()).await;
    assert_eq!(
        listed_ids(&contacts),
        with_field("contacts", "custom_field_values", &contact_label)
    );
    assert!(
        contacts
            .iter()
            .all(|d| d["resource"] == "contacts" && d["all_day"] == true)
    );
    let accounts = all(account_label.clone()).await;
    assert_eq!(
        listed_ids(&accounts),
        with_field("accounts", "company_custom_field_values", &account_label)
    );
    let truth = sim.truth("accounts");
    let first = truth.iter().find(|a| a["id"] == accounts[0]["id"]).unwrap();
    assert_eq!(
        accounts[0]["client"], first["display_name"],
        "an account is its own client"
    );
    // The matters' defaults are still there.
    assert!(
        !listed(
            &app,
            &["--overdue", "--days", "5200", "--kind", "45 Day Deadline"]
        )
        .await
        .is_empty()
    );
}

#[tokio::test]
async fn report_status_and_the_page_show_times_in_the_firms_zone_named() {
    let app = app(0.01, &format!("time_zone = \"{LA}\"")).await;
    assert_clean(&app.pass().await);
    let la: chrono_tz::Tz = LA.parse().unwrap();
    let local = |t: DateTime<Utc>| {
        t.with_timezone(&la)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    };
    let cycles = app.engine.store.cycles().await.unwrap();
    let started = ppsync::time::parse_api_time(&cycles[0].started_at).unwrap();
    let want = local(started);
    assert!(want.ends_with(" PST") || want.ends_with(" PDT"), "{want}");
    let (code, out, _) = app.cli(&["report"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&want), "pass 1 started at {want}:\n{out}");

    let matters = ppsync::resource::find("matters").unwrap();
    let cursor = app
        .engine
        .store
        .state(matters)
        .await
        .unwrap()
        .cursor
        .unwrap();
    let (code, out, _) = app.cli(&["status"]).await;
    assert_eq!(code, 0);
    let row = out.lines().find(|l| l.starts_with("matters ")).unwrap();
    assert!(row.contains(&local(cursor)), "{row}");

    let cfg = ppsync::config::Config::load(Some(&app.config_path)).unwrap();
    let now = Utc::now();
    let snap = ppsync::status::Snapshot::read(
        &app.engine.store,
        &cfg.daemon().schedule,
        now,
        cfg.notify.window,
        &cfg.sync.deadlines,
        None,
    )
    .await
    .unwrap();
    assert_eq!(snap.time_zone, LA);
    let page = ppsync::status::page::render(&snap);
    let shown = local(ppsync::time::parse_api_time(&snap.now).unwrap());
    assert!(page.contains(&shown), "the page's clock reads {shown}");
    assert!(!page.contains("(UTC)"));
}
