//! Which records notify (new tasks; open tasks and events coming due within the window; a
//! matter's deadlines at their lead times), as outbox rows written with the records that caused
//! them, and the deadline scan for those that time alone brings due.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::deadlines::{Deadline, Sources};
use crate::record::{Row, Value as Col};
use crate::resource::Resource;
use crate::store::{Cancel, Fresh, Notification, Store};
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

/// The notification a deadline kept on a matter is due for at `now`: the one of the smallest lead
/// time whose day (firm-local) has come; None before the first one and after the deadline's day.
/// Its id holds the source, the record, the date and the lead time, so each is sent once, and a
/// deadline moved to another date gets its own.
pub fn lead_notification(
    d: &Deadline,
    lead_days: &[u32],
    today: chrono::NaiveDate,
    now: DateTime<Utc>,
    suppressed: bool,
) -> Option<Notification> {
    let left = (d.date - today).num_days();
    let lead = lead_days
        .iter()
        .copied()
        .filter(|l| i64::from(*l) >= left)
        .min()
        .filter(|_| left >= 0)?;
    let id = format!("deadline:{}:{}:{}:{lead}d", d.slug(), d.id, d.date);
    let when = match left {
        0 => "today".to_string(),
        1 => "tomorrow".to_string(),
        n => format!("in {n} days"),
    };
    let summary = format!(
        "{} {when}: {}, {}",
        d.kind,
        d.local_text(),
        d.matter.as_deref().unwrap_or(&d.id)
    );
    let payload = json!({
        "id": id,
        "kind": "deadline",
        "source": d.kind,
        "resource": d.resource,
        "record_id": d.id,
        "summary": summary,
        "date": d.date.to_string(),
        "due": d.due,
        "time_zone": d.time_zone,
        "days_left": left,
        "lead_days": lead,
        "matter_id": d.matter_id,
        "matter": d.matter,
        "account_id": d.client_id,
        "client": d.client,
        "assigned_users": d.assignees,
        "detected_at": canonical(now),
    });
    Some(Notification {
        id,
        kind: "deadline".into(),
        resource: d.resource.to_string(),
        record_id: d.id.clone(),
        payload,
        suppressed,
    })
}

/// The lead-time notifications of a page of matters, and the pending ones to cancel: of a changed
/// matter, each source's notifications for a date it no longer holds (moved or cleared).
pub fn for_matters(
    sources: &Sources,
    rows: &[Row],
    fresh: &[Fresh],
    now: DateTime<Utc>,
    suppressed: bool,
) -> (Vec<Notification>, Vec<Cancel>) {
    let by_id: std::collections::HashMap<&str, &Row> =
        rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let today = sources.local_date(now);
    let mut names: Vec<&str> = sources.matter_fields.iter().map(String::as_str).collect();
    if sources.statute {
        names.push(crate::deadlines::STATUTE);
    }
    let (mut items, mut cancels) = (Vec::new(), Vec::new());
    for f in fresh {
        let Some(row) = by_id.get(f.id.as_str()) else {
            continue;
        };
        let record: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
        let found = sources.of_record("matters", &record);
        items.extend(
            found
                .iter()
                .filter_map(|d| lead_notification(d, &sources.lead_days, today, now, suppressed)),
        );
        if f.prior.is_some() {
            for name in &names {
                let slug = crate::deadlines::slug(name);
                let prefix = format!("deadline:{slug}:{}:", row.id);
                let keep = found
                    .iter()
                    .find(|d| d.kind == *name)
                    .map(|d| format!("{prefix}{}:", d.date));
                cancels.push(Cancel {
                    resource: "matters".into(),
                    record_id: row.id.clone(),
                    prefix,
                    keep,
                });
            }
        }
    }
    (items, cancels)
}

/// Enqueues deadlines that time alone brought into the window (no record changed): every open task
/// and event due within the window that has no outbox row for its current due date yet; and, once
/// per firm-local day (`matters_day`: the last day scanned; a lead time's day begins at local
/// midnight), each matter deadline's lead-time notification that day brings.
pub async fn deadline_scan(
    store: &Store,
    now: DateTime<Utc>,
    window: Duration,
    sources: &Sources,
    matters_day: &mut Option<chrono::NaiveDate>,
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
    let today = sources.local_date(now);
    if *matters_day != Some(today) && sources.covers("matters") {
        for (_, raw) in store.deadline_records(now, now, &["matters"]).await? {
            let record: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            items.extend(
                sources
                    .of_record("matters", &record)
                    .iter()
                    .filter_map(|d| lead_notification(d, &sources.lead_days, today, now, false)),
            );
        }
    }
    let mut tx = store.begin().await?;
    let n = tx.enqueue(&items, now).await?;
    tx.commit().await?;
    *matters_day = Some(today);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadlines::Sources;

    #[test]
    fn a_deadline_is_due_for_its_smallest_lead_time_whose_day_has_come() {
        let s = Sources::default();
        let m = json!({"id": "m1", "display_name": "5518 - Torres - 1031 Exchange",
            "custom_field_values": [{"custom_field_ref": {"label": "45 Day Deadline", "value_type": "Date"},
                                     "value_date_time": "2025-12-12T12:00:00"}]});
        let d = &s.of_record("matters", &m)[0];
        let now: DateTime<Utc> = "2025-12-01T10:00:00Z".parse().unwrap();
        let at = |days_before: u64| d.date - chrono::Days::new(days_before);
        let lead = |today| {
            lead_notification(d, &s.lead_days, today, now, false)
                .map(|n| n.id.rsplit(':').next().unwrap().to_string())
        };
        assert_eq!(lead(at(20)), None);
        assert_eq!(lead(at(14)).as_deref(), Some("14d"));
        assert_eq!(lead(at(10)).as_deref(), Some("14d"));
        assert_eq!(lead(at(7)).as_deref(), Some("7d"));
        assert_eq!(lead(at(2)).as_deref(), Some("7d"));
        assert_eq!(lead(at(1)).as_deref(), Some("1d"));
        assert_eq!(lead(at(0)).as_deref(), Some("0d"));
        assert_eq!(lead(d.date + chrono::Days::new(1)), None);
        let n = lead_notification(d, &s.lead_days, at(7), now, false).unwrap();
        assert_eq!(n.id, "deadline:45-day-deadline:m1:2025-12-12:7d");
        assert_eq!(
            n.payload["summary"],
            "45 Day Deadline in 7 days: Fri 12 Dec 2025, 5518 - Torres - 1031 Exchange"
        );
    }
}
