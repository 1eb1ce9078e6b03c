//! Which records notify (new tasks; open tasks and events coming due within the window), as
//! outbox rows written with the records that caused them, and the deadline scan for those that
//! time alone brings into the window.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::record::{Row, Value as Col};
use crate::resource::Resource;
use crate::store::{Fresh, Notification, Store};
use crate::time::{canonical, parse_api_time};

/// What a resource notifies about: its due column, and whether new records are news.
pub struct Rule {
    pub resource: &'static str,
    pub due_column: &'static str,
    pub created_kind: Option<&'static str>,
    pub due_kind: &'static str,
}

pub const RULES: &[Rule] = &[
    Rule {
        resource: "tasks",
        due_column: "due_date",
        created_kind: Some("task.created"),
        due_kind: "task.due",
    },
    Rule {
        resource: "events",
        due_column: "start_date_time",
        created_kind: None,
        due_kind: "event.upcoming",
    },
];

pub fn rule(res: &Resource) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.resource == res.name)
}

fn column<'a>(res: &Resource, row: &'a Row, name: &str) -> Option<&'a Col> {
    res.columns
        .iter()
        .position(|c| c.name == name)
        .and_then(|i| row.columns.get(i))
}

fn is_open(res: &Resource, row: &Row) -> bool {
    !matches!(column(res, row, "status"), Some(Col::Text(s)) if s == "Completed")
}

/// The notifications caused by rows a page wrote. `fresh` says which rows were new or changed and
/// what their due column held before.
pub fn for_page(
    res: &Resource,
    rows: &[Row],
    fresh: &[Fresh],
    now: DateTime<Utc>,
    window: Duration,
    suppressed: bool,
) -> Vec<Notification> {
    let Some(rule) = rule(res) else {
        return Vec::new();
    };
    let by_id: std::collections::HashMap<&str, &Row> =
        rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let horizon = now + chrono::Duration::from_std(window).unwrap_or_default();
    let mut out = Vec::new();
    for f in fresh {
        let Some(row) = by_id.get(f.id.as_str()) else {
            continue;
        };
        // A backfill's "created" rows are not even recorded: nothing ever consults them (unlike
        // suppressed deadlines, which keep the deadline scan from announcing them later).
        if f.prior.is_none()
            && !suppressed
            && let Some(kind) = rule.created_kind
        {
            out.push(notification(
                res,
                row,
                kind,
                format!("{kind}:{}", row.id),
                None,
                now,
                suppressed,
            ));
        }
        let due = match column(res, row, rule.due_column) {
            Some(Col::Time(t)) => *t,
            _ => continue,
        };
        let moved = match &f.prior {
            None => true,
            Some(prior) => prior.as_deref().and_then(parse_api_time) != Some(due),
        };
        if moved && due >= now && due <= horizon && is_open(res, row) {
            out.push(due_notification(res, row, rule, due, now, suppressed));
        }
    }
    out
}

fn due_notification(
    res: &Resource,
    row: &Row,
    rule: &Rule,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    suppressed: bool,
) -> Notification {
    let id = format!("{}:{}:{}", rule.due_kind, row.id, canonical(due));
    notification(res, row, rule.due_kind, id, Some(due), now, suppressed)
}

fn notification(
    res: &Resource,
    row: &Row,
    kind: &str,
    id: String,
    due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    suppressed: bool,
) -> Notification {
    // A suppressed row (a first backfill's findings) is never delivered: it only keeps its id, so
    // the deadline scan does not announce it later. Its payload says what it was without the
    // record, which is not parsed again for it (a backfill of tasks records thousands).
    let payload = if suppressed {
        json!({
            "id": id,
            "kind": kind,
            "resource": res.name,
            "record_id": row.id,
            "due": due.map(canonical),
            "detected_at": canonical(now),
        })
    } else {
        delivered_payload(res, row, kind, &id, due, now)
    };
    Notification {
        id,
        kind: kind.to_string(),
        resource: res.name.to_string(),
        record_id: row.id.clone(),
        payload,
        suppressed,
    }
}

fn delivered_payload(
    res: &Resource,
    row: &Row,
    kind: &str,
    id: &str,
    due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Value {
    let record: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
    json!({
        "id": id,
        "kind": kind,
        "resource": res.name,
        "record_id": row.id,
        "subject": record.get("subject"),
        "due": due.map(canonical),
        "account_id": record.pointer("/account_ref/id"),
        "matter_id": record.pointer("/matter_ref/id"),
        "detected_at": canonical(now),
        "record": record,
    })
}

/// Enqueues deadlines that time alone brought into the window (no record changed): every open task
/// and event due within the window that has no outbox row for its current due date yet.
pub async fn deadline_scan(
    store: &Store,
    now: DateTime<Utc>,
    window: Duration,
) -> anyhow::Result<u64> {
    let horizon = now + chrono::Duration::from_std(window).unwrap_or_default();
    let mut items = Vec::new();
    for rule in RULES {
        let res = crate::resource::find(rule.resource).expect("rules name real resources");
        let rows = store
            .due_between(res, rule.due_column, now, horizon, rule.due_kind)
            .await?;
        for raw in rows {
            let row = crate::record::prepare(res, raw.get())?;
            if !is_open(res, &row) {
                continue;
            }
            if let Some(Col::Time(due)) = column(res, &row, rule.due_column) {
                items.push(due_notification(res, &row, rule, *due, now, false));
            }
        }
    }
    let mut tx = store.begin().await?;
    let n = tx.enqueue(&items, now).await?;
    tx.commit().await?;
    Ok(n)
}
