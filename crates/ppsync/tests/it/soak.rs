//! The soak (issue 20, "a week without drift"), short enough for CI: a small firm backfilled, then
//! the daemon over a day and a half of simulated time on the simulator's clock with the seed's
//! change rates and deletions, then a quiet stretch over the next 03:00 reconciliation. The mirror
//! must then equal the simulator's truth exactly, every record deleted at the source must be marked
//! deleted, and the outbox must hold exactly the notifications the simulator's history calls for,
//! computed here from that history (not from ppsync's rules). The week runs as a bench
//! (`benches/soak.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use ppsync::daemon::Daemon;
use ppsync::resource::{RESOURCES, Resource};
use ppsync::time::{BoxFuture, Clock, parse_api_time};
use serde_json::Value;

use crate::support::*;

type Ids = BTreeMap<String, BTreeSet<String>>;

/// The simulator's clock (sleeping advances it, as the demo's does) that also keeps the ids each
/// advance created and deleted: what a client could have seen appear and vanish.
struct RecordingClock {
    sim: ppsim::SimHandle,
    created: Mutex<Ids>,
    deleted: Mutex<Ids>,
}

impl Clock for RecordingClock {
    fn now(&self) -> DateTime<Utc> {
        self.sim.now()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'_> {
        let s = self.sim.advance(d);
        for (map, ids) in [
            (&self.created, s.created_ids),
            (&self.deleted, s.deleted_ids),
        ] {
            let mut map = map.lock().unwrap();
            for (path, list) in ids {
                map.entry(path).or_default().extend(list);
            }
        }
        Box::pin(tokio::task::yield_now())
    }
}

fn ids_of(res: &Resource, records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| r[res.key].as_str().unwrap().to_string())
        .collect()
}

/// The lead time a deadline `left` days away is announced at (the default leads 14, 7, 1, 0).
fn lead_for(left: i64) -> Option<i64> {
    [0, 1, 7, 14].into_iter().find(|l| *l >= left && left >= 0)
}

/// Each deadline a record of the truth holds, as (source slug, UTC date): the product's default
/// sources (open tasks' due dates, events' starts, matters' statute dates and their "45 Day
/// Deadline" and "180 Day Deadline" custom fields) in a UTC firm.
fn deadlines_of(resource: &str, rec: &Value) -> Vec<(&'static str, NaiveDate)> {
    let date = |v: &Value| v.as_str().and_then(parse_api_time).map(|t| t.date_naive());
    let mut out = Vec::new();
    match resource {
        "tasks" if rec["status"] != "Completed" => {
            out.extend(date(&rec["due_date"]).map(|d| ("task", d)))
        }
        "events" => out.extend(date(&rec["start_date_time"]).map(|d| ("event", d))),
        "matters" => {
            let statute = date(&rec["statute_of_limitation_date"]);
            out.extend(statute.map(|d| ("statute-of-limitations", d)));
            for (label, slug) in [
                ("45 Day Deadline", "45-day-deadline"),
                ("180 Day Deadline", "180-day-deadline"),
            ] {
                let field = rec["custom_field_values"]
                    .as_array()
                    .and_then(|fs| fs.iter().find(|f| f["custom_field_ref"]["label"] == label));
                out.extend(
                    field
                        .and_then(|f| date(&f["value_date_time"]))
                        .map(|d| (slug, d)),
                );
            }
        }
        _ => {}
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_simulated_days_with_deletions_end_equal_to_the_truth_with_an_exact_outbox() {
    let sim = ppsim::Sim::spawn(ppsim::SimConfig {
        scale: 0.03,
        ..Default::default()
    })
    .await
    .unwrap();
    let clock = Arc::new(RecordingClock {
        sim: sim.clone(),
        created: Default::default(),
        deleted: Default::default(),
    });
    // By-id reads on, as in production: emails and payments end as their by-id renderings.
    let extra = "[resources.emails]\ndetails = true\n[resources.payments]\ndetails = true\n";
    let app = app_with_clock(sim.clone(), extra, clock.clone()).await;
    let cfg = ppsync::config::Config::load(Some(&app.config_path)).unwrap();

    assert_clean(&app.pass().await);
    let backfill_day = sim.now().date_naive();
    let backfill_at = sim.now();
    let at_start: BTreeMap<&str, BTreeSet<String>> = RESOURCES
        .iter()
        .map(|r| (r.name, ids_of(r, &app.truth(r))))
        .collect();

    // A day and a half of changes and deletions, the 03:00 reconciliation inside it; then the
    // generator stops and the daemon runs on over the next 03:00, whose reconciliation must find
    // every deletion made since the first.
    let quiet_from = (backfill_at + chrono::Duration::days(2))
        .date_naive()
        .and_hms_opt(2, 30, 0)
        .unwrap()
        .and_utc();
    let mut dcfg = cfg.daemon();
    dcfg.stop_at = Some(quiet_from);
    let busy = Daemon {
        engine: app.engine.clone(),
        cfg: dcfg.clone(),
        shutdown: Default::default(),
        observer: None,
    };
    let s1 = busy.run().await.unwrap();
    sim.pause_changes(true);
    dcfg.stop_at = Some(quiet_from + chrono::Duration::minutes(90));
    let quiet = Daemon {
        engine: app.engine.clone(),
        cfg: dcfg,
        shutdown: Default::default(),
        observer: None,
    };
    let s2 = quiet.run().await.unwrap();
    assert_eq!(
        (s1.reconciliations, s2.reconciliations),
        (1, 1),
        "one reconciliation a day"
    );
    let end_day = sim.now().date_naive();
    assert_eq!((end_day - backfill_day).num_days(), 2);
    assert!(sim.max_requests_in_any_window() <= 300, "budget");
    assert_eq!(sim.journal().iter().filter(|e| e.status == 429).count(), 0);

    let created = clock.created.lock().unwrap().clone();
    let deleted = clock.deleted.lock().unwrap().clone();
    let of = |m: &Ids, res: &Resource| m.get(res.path).cloned().unwrap_or_default();
    assert!(
        of(&created, ppsync::resource::find("tasks").unwrap()).len() >= 10,
        "{created:?}"
    );
    let deleted_total: usize = deleted.values().map(BTreeSet::len).sum();
    assert!(deleted_total >= 10, "deletions happened: {deleted:?}");

    // The mirror equals the truth: same ids, same content, nothing extra live (no deletion is
    // pending: the last reconciliation ran on the final truth). The by-id queue was worked off by
    // the daemon itself.
    let backlog: i64 = app
        .engine
        .store
        .detail_backlog()
        .await
        .unwrap()
        .values()
        .map(|b| b.queued)
        .sum();
    assert_eq!(backlog, 0, "the daemon read every queued record by id");
    let total = app.assert_equal_to_truth().await;
    assert!(total > 1000, "{total}");

    // Every record that vanished from the source is in the mirror marked deleted (if it was ever
    // there to be seen: one created and deleted between two listings never was), and every row
    // marked deleted really vanished.
    let mut marked_total = 0;
    for res in RESOURCES {
        let truth_now = ids_of(res, &app.truth(res));
        let all_rows: BTreeSet<String> =
            strings(&app.engine.store, &format!("SELECT id FROM {}", res.name))
                .await
                .into_iter()
                .collect();
        let marked: BTreeSet<String> = strings(
            &app.engine.store,
            &format!("SELECT id FROM {} WHERE deleted_at IS NOT NULL", res.name),
        )
        .await
        .into_iter()
        .collect();
        let ever: BTreeSet<String> = at_start[res.name]
            .union(&of(&created, res))
            .cloned()
            .collect();
        assert!(
            all_rows.is_subset(&ever),
            "{}: the mirror holds ids the source never had: {:?}",
            res.name,
            all_rows.difference(&ever).collect::<Vec<_>>()
        );
        let gone: BTreeSet<String> = ever.difference(&truth_now).cloned().collect();
        assert!(
            gone.is_subset(&of(&deleted, res)),
            "{}: the simulator's history misses deletions",
            res.name
        );
        for id in &gone {
            if at_start[res.name].contains(id) {
                assert!(marked.contains(id), "{}: {id} not marked deleted", res.name);
            } else if all_rows.contains(id) {
                assert!(marked.contains(id), "{}: new {id} not marked", res.name);
            }
        }
        assert!(
            marked.is_subset(&gone),
            "{}: marked deleted but live at the source: {:?}",
            res.name,
            marked.difference(&gone).collect::<Vec<_>>()
        );
        marked_total += marked.len();
    }
    assert!(marked_total >= 10, "{marked_total} rows marked deleted");

    // task.created: exactly the tasks created during the stretch that a listing could see (every
    // one still live, and those deleted later that the mirror holds), each once.
    let tasks = ppsync::resource::find("tasks").unwrap();
    let notified: Vec<String> = strings(
        &app.engine.store,
        "SELECT record_id FROM outbox WHERE kind = 'task.created' ORDER BY record_id",
    )
    .await;
    let notified_set: BTreeSet<String> = notified.iter().cloned().collect();
    assert_eq!(notified.len(), notified_set.len(), "each task once");
    let task_rows: BTreeSet<String> = strings(&app.engine.store, "SELECT id FROM tasks")
        .await
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = of(&created, tasks)
        .intersection(&task_rows)
        .cloned()
        .collect();
    let live_new: BTreeSet<String> = of(&created, tasks)
        .intersection(&ids_of(tasks, &app.truth(tasks)))
        .cloned()
        .collect();
    assert!(live_new.is_subset(&expected) && !live_new.is_empty());
    assert_eq!(notified_set, expected, "task.created notifications");

    // Deadlines. Rows by (resource, record): (id, status).
    let rows = rows_of_deadlines(&app.engine.store).await;
    let mut checked_unchanged = 0;
    for name in ["tasks", "events", "matters"] {
        let res = ppsync::resource::find(name).unwrap();
        for rec in app.truth(res) {
            let id = rec["id"].as_str().unwrap();
            let have = rows
                .get(&(name, id.to_string()))
                .cloned()
                .unwrap_or_default();
            let unchanged = rec["updated_at"]
                .as_str()
                .and_then(parse_api_time)
                .is_some_and(|t| t <= backfill_at);
            // Every deadline the record holds at the end, at the lead time the end day gives it.
            for (slug, date) in deadlines_of(name, &rec) {
                if let Some(lead) = lead_for((date - end_day).num_days()) {
                    let want = format!("deadline:{slug}:{id}:{date}:{lead}d");
                    assert!(
                        have.get(&want).is_some_and(|s| s != "cancelled"),
                        "{want} missing: {have:?}"
                    );
                }
            }
            if unchanged {
                // A record untouched since the backfill: exactly the lead times its deadlines
                // reached on each day from the backfill's to the end, the backfill day's recorded
                // as suppressed, the later ones pending (no sink is configured).
                let mut want: BTreeMap<String, &str> = BTreeMap::new();
                for (slug, date) in deadlines_of(name, &rec) {
                    for day in backfill_day.iter_days().take_while(|d| *d <= end_day) {
                        if let Some(lead) = lead_for((date - day).num_days()) {
                            let status = if day == backfill_day {
                                "suppressed"
                            } else {
                                "pending"
                            };
                            want.entry(format!("deadline:{slug}:{id}:{date}:{lead}d"))
                                .or_insert(status);
                        }
                    }
                }
                let want: BTreeMap<String, String> =
                    want.into_iter().map(|(k, v)| (k, v.to_string())).collect();
                assert_eq!(have, want, "{name} {id}: deadline rows");
                checked_unchanged += usize::from(!want.is_empty());
            } else {
                // A changed record: every row still pending names a deadline it holds now (a
                // moved, cleared or completed one's were cancelled).
                let holds: Vec<String> = deadlines_of(name, &rec)
                    .iter()
                    .map(|(slug, date)| format!("deadline:{slug}:{id}:{date}:"))
                    .collect();
                for (row, status) in &have {
                    if status == "pending" {
                        assert!(
                            holds.iter().any(|p| row.starts_with(p)),
                            "{row} pending for a deadline {name} {id} no longer holds"
                        );
                    }
                }
            }
        }
    }
    assert!(checked_unchanged > 10, "{checked_unchanged}");
    // No deadline row for a record that never existed.
    for (res, id) in rows.keys() {
        let r = ppsync::resource::find(res).unwrap();
        assert!(
            at_start[r.name].contains(id) || of(&created, r).contains(id),
            "a deadline row for {res} {id}"
        );
    }
}

/// The outbox's deadline rows, by (resource, record): id → status.
async fn rows_of_deadlines(
    store: &ppsync::store::Store,
) -> BTreeMap<(&'static str, String), BTreeMap<String, String>> {
    let mut out: BTreeMap<(&'static str, String), BTreeMap<String, String>> = BTreeMap::new();
    for name in ["tasks", "events", "matters"] {
        let ids = strings(
            store,
            &format!(
                "SELECT record_id || ' ' || id || ' ' || status FROM outbox \
                 WHERE kind = 'deadline' AND resource = '{name}'"
            ),
        )
        .await;
        for line in ids {
            let mut parts = line.split(' ');
            let (Some(record), Some(id), Some(status)) = (parts.next(), parts.next(), parts.next())
            else {
                panic!("odd outbox row {line:?}");
            };
            out.entry((name, record.to_string()))
                .or_default()
                .insert(id.to_string(), status.to_string());
        }
    }
    out
}
