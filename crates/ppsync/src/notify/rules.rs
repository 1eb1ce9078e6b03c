//! Which records notify (new tasks; every deadline source's deadlines at their lead times), as
//! outbox rows written with the records that caused them, and the deadline scan for those that
//! time alone brings due.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::deadlines::{Deadline, Sources};
use crate::record::{Row, Value as Col};
use crate::resource::Resource;
use crate::store::{Cancel, Fresh, Notification, Store};
use crate::time::canonical;

/// New records that are news: new tasks (`task.created:<id>`).
pub struct Rule {
    pub resource: &'static str,
    pub created_kind: &'static str,
}

pub const RULES: &[Rule] = &[Rule {
    resource: "tasks",
    created_kind: "task.created",
}];

pub fn rule(res: &Resource) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.resource == res.name)
}

/// The "new record" notifications of rows a page wrote. `fresh` says which rows were new or
/// changed. A backfill's are not even recorded: nothing ever consults them.
pub fn for_page(
    res: &Resource,
    rows: &[Row],
    fresh: &[Fresh],
    now: DateTime<Utc>,
) -> Vec<Notification> {
    let Some(rule) = rule(res) else {
        return Vec::new();
    };
    let by_id: std::collections::HashMap<&str, &Row> =
        rows.iter().map(|r| (r.id.as_str(), r)).collect();
    fresh
        .iter()
        .filter(|f| f.prior.is_none())
        .filter_map(|f| by_id.get(f.id.as_str()))
        .map(|row| created(res, row, rule.created_kind, now))
        .collect()
}

fn created(res: &Resource, row: &Row, kind: &str, now: DateTime<Utc>) -> Notification {
    let record: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
    let id = format!("{kind}:{}", row.id);
    let payload = json!({
        "id": id,
        "kind": kind,
        "summary": created_summary(&record),
        "resource": res.name,
        "record_id": row.id,
        "subject": record.get("subject"),
        "account_id": record.pointer("/account_ref/id"),
        "matter_id": record.pointer("/matter_ref/id"),
        "detected_at": canonical(now),
        "record": record,
    });
    Notification {
        id,
        kind: kind.to_string(),
        resource: res.name.to_string(),
        record_id: row.id.clone(),
        payload,
        suppressed: false,
    }
}

/// "New task: File 8824, 5518 - Torres - 1031 Exchange; assigned to Ann Ames": what a person
/// reads first (an e-mail's subject, a chat message).
fn created_summary(record: &Value) -> String {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty())
    };
    let mut out = format!(
        "New task: {}",
        text(record.get("subject")).unwrap_or_else(|| "(no subject)".into())
    );
    if let Some(m) = text(record.pointer("/matter_ref/display_name")) {
        out.push_str(&format!(", {m}"));
    }
    let users: Vec<String> = record
        .get("assigned_to_users")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|u| text(u.get("display_name")))
        .collect();
    if !users.is_empty() {
        out.push_str(&format!("; assigned to {}", users.join(", ")));
    }
    out
}

/// The notification a deadline is due for at `now`: the one of the smallest lead
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
        "subject": d.subject,
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

/// The lead-time notifications of the deadlines a page's new and changed records hold, and the
/// pending ones to cancel: of a changed record, each source's notifications for a date it no
/// longer holds (moved, cleared, or a task completed).
pub fn for_deadlines(
    sources: &Sources,
    res: &Resource,
    rows: &[Row],
    fresh: &[Fresh],
    now: DateTime<Utc>,
    suppressed: bool,
) -> (Vec<Notification>, Vec<Cancel>) {
    let by_id: std::collections::HashMap<&str, &Row> =
        rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let today = sources.local_date(now);
    let names = sources.names(res.name);
    // A new task or event whose date (a typed column) is far from any lead time holds nothing to
    // notify: it is not parsed again (a backfill writes hundreds of thousands). Two days on either
    // side cover any zone.
    let ahead = i64::from(sources.max_lead());
    let (near_from, near_to) = (
        now - chrono::Duration::days(2),
        now + chrono::Duration::days(ahead + 2),
    );
    let date_column = match res.name {
        "tasks" => res.columns.iter().position(|c| c.name == "due_date"),
        "events" => res.columns.iter().position(|c| c.name == "start_date_time"),
        _ => None,
    };
    let (mut items, mut cancels) = (Vec::new(), Vec::new());
    for f in fresh {
        let Some(row) = by_id.get(f.id.as_str()) else {
            continue;
        };
        if f.prior.is_none()
            && let Some(i) = date_column
            && !matches!(row.columns.get(i), Some(Col::Time(t)) if *t >= near_from && *t <= near_to)
        {
            continue;
        }
        let record: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
        let found = sources.of_record(res.name, &record);
        items.extend(
            found.iter().filter_map(|d| {
                lead_notification(d, sources.leads(&d.kind), today, now, suppressed)
            }),
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
                    resource: res.name.into(),
                    record_id: row.id.clone(),
                    prefix,
                    keep,
                });
            }
        }
    }
    (items, cancels)
}

/// Enqueues the lead-time notifications a new firm-local day brings (no record changed: a lead
/// time's day begins at local midnight), once per day (`scanned`: the last day scanned; each
/// start scans again, which finds what it already enqueued by id).
pub async fn deadline_scan(
    store: &Store,
    now: DateTime<Utc>,
    sources: &Sources,
    scanned: &mut Option<chrono::NaiveDate>,
) -> anyhow::Result<u64> {
    let today = sources.local_date(now);
    if *scanned == Some(today) {
        return Ok(0);
    }
    let ahead = sources.max_lead();
    // Date-only fields sit at local noon or midnight: two days on either side cover any zone.
    let from = now - chrono::Duration::days(2);
    let to = now + chrono::Duration::days(i64::from(ahead) + 2);
    let with: Vec<&'static str> = crate::deadlines::RESOURCES
        .into_iter()
        .filter(|r| sources.covers(r))
        .collect();
    let mut items = Vec::new();
    store
        .deadline_records(Some((from, to)), &with, |resource, raw| {
            let record = crate::deadlines::read_record(raw.get());
            items.extend(
                sources.of_record(resource, &record).iter().filter_map(|d| {
                    lead_notification(d, sources.leads(&d.kind), today, now, false)
                }),
            );
        })
        .await?;
    let mut tx = store.begin().await?;
    let n = tx.enqueue(&items, now).await?;
    tx.commit().await?;
    *scanned = Some(today);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadlines::Sources;

    #[test]
    fn a_new_task_reads_as_one_line() {
        let cases = [
            (
                json!({"subject": "File  8824\n", "matter_ref": {"display_name": "5518 - Torres"},
                       "assigned_to_users": [{"display_name": "Ann Ames"}, {"display_name": "Bo Li"}]}),
                "New task: File 8824, 5518 - Torres; assigned to Ann Ames, Bo Li",
            ),
            (json!({"subject": "Call"}), "New task: Call"),
            (
                json!({"subject": null, "assigned_to_users": "odd"}),
                "New task: (no subject)",
            ),
        ];
        for (record, want) in cases {
            assert_eq!(created_summary(&record), want);
        }
    }

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
