//! Deadlines: the firm's time zone and the sources a deadline comes from (task due dates, event
//! starts, a matter's statute of limitations date, custom fields of type Date of matters, contacts
//! and accounts chosen by label), read from a record's JSON as the firm's local dates and times.
//!
//! Date-only fields are UTC instants of firm-local noon or midnight (practicepanther-api.md §4.1,
//! §6.3): their calendar date is the instant's date in the firm's zone, never its UTC date.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::time::parse_api_time;

/// The resources whose records can hold deadlines.
pub const RESOURCES: [&str; 5] = ["tasks", "events", "matters", "contacts", "accounts"];

/// Where deadlines come from, and when before each one to notify.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The firm's zone (`time_zone`): the API does not say it.
    pub zone: Tz,
    pub tasks: bool,
    pub events: bool,
    pub statute: bool,
    /// Labels of matter custom fields of type Date (or DateTime) that are deadlines.
    pub matter_fields: Vec<String>,
    /// The same for contacts' custom fields and accounts' (company) custom fields.
    pub contact_fields: Vec<String>,
    pub account_fields: Vec<String>,
    /// Days before the deadline to notify (0: on the day), largest first.
    pub lead_days: Vec<u32>,
    /// A source's own lead days, by its name (the others have `lead_days`).
    pub lead_days_by_source: std::collections::BTreeMap<String, Vec<u32>>,
}

pub const TASK: &str = "Task";
pub const EVENT: &str = "Event";
pub const STATUTE: &str = "Statute of Limitations";

impl Default for Sources {
    fn default() -> Self {
        Sources {
            zone: Tz::UTC,
            tasks: true,
            events: true,
            statute: true,
            matter_fields: vec!["45 Day Deadline".into(), "180 Day Deadline".into()],
            contact_fields: Vec::new(),
            account_fields: Vec::new(),
            lead_days: vec![14, 7, 1, 0],
            lead_days_by_source: Default::default(),
        }
    }
}

/// One deadline of one record, in the firm's zone.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Deadline {
    /// The source's name (the deadline's kind): "Task", "45 Day Deadline", ...
    pub kind: String,
    pub resource: &'static str,
    pub id: String,
    /// The firm-local date.
    pub date: NaiveDate,
    /// RFC 3339 with the zone's offset: the instant for timed deadlines (events), the start of
    /// the local day for date-only ones.
    pub due: String,
    /// Whether only the date is meaningful (a date-only field).
    pub all_day: bool,
    pub time_zone: String,
    pub subject: Option<String>,
    pub status: Option<String>,
    pub matter_id: Option<String>,
    pub matter: Option<String>,
    pub client_id: Option<String>,
    pub client: Option<String>,
    pub assignees: Vec<String>,
    #[serde(skip)]
    pub at: DateTime<Tz>,
    /// The field's value as the API sent it (the `upcoming_deadlines` view's `due_raw`).
    #[serde(skip)]
    pub raw: String,
}

impl Deadline {
    /// A short key for the source in notification ids: lowercase, words joined by `-`.
    pub fn slug(&self) -> String {
        slug(&self.kind)
    }

    /// "Fri 12 Dec 2025" or "Fri 12 Dec 2025 17:30 PST".
    pub fn local_text(&self) -> String {
        if self.all_day {
            self.date.format("%a %-d %b %Y").to_string()
        } else {
            self.at.format("%a %-d %b %Y %H:%M %Z").to_string()
        }
    }
}

pub fn slug(name: &str) -> String {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join("-")
}

impl Sources {
    /// The firm-local date of a date-only field's instant.
    pub fn local_date(&self, instant: DateTime<Utc>) -> NaiveDate {
        instant.with_timezone(&self.zone).date_naive()
    }

    /// The start of a local day (the first instant of it when a DST change skips midnight).
    pub fn day_start(&self, date: NaiveDate) -> DateTime<Tz> {
        use chrono::TimeZone;
        (0..24)
            .find_map(|h| {
                self.zone
                    .from_local_datetime(&date.and_hms_opt(h, 0, 0)?)
                    .earliest()
            })
            .unwrap_or_else(|| {
                date.and_time(chrono::NaiveTime::MIN)
                    .and_utc()
                    .with_timezone(&self.zone)
            })
    }

    /// Whether a resource can hold deadlines under these sources.
    pub fn covers(&self, resource: &str) -> bool {
        match resource {
            "tasks" => self.tasks,
            "events" => self.events,
            "matters" => self.statute || !self.matter_fields.is_empty(),
            "contacts" => !self.contact_fields.is_empty(),
            "accounts" => !self.account_fields.is_empty(),
            _ => false,
        }
    }

    /// The lead days of the source named `kind`.
    pub fn leads(&self, kind: &str) -> &[u32] {
        self.lead_days_by_source
            .get(kind)
            .unwrap_or(&self.lead_days)
    }

    /// The largest lead time of any source: how far ahead a deadline can be notified.
    pub fn max_lead(&self) -> u32 {
        self.lead_days
            .iter()
            .chain(self.lead_days_by_source.values().flatten())
            .max()
            .copied()
            .unwrap_or(0)
    }

    /// The names of the sources a resource's records hold.
    pub fn names(&self, resource: &str) -> Vec<&str> {
        match resource {
            "tasks" if self.tasks => vec![TASK],
            "events" if self.events => vec![EVENT],
            "matters" => {
                let mut v: Vec<&str> = Vec::new();
                if self.statute {
                    v.push(STATUTE);
                }
                v.extend(self.matter_fields.iter().map(String::as_str));
                v
            }
            "contacts" => self.contact_fields.iter().map(String::as_str).collect(),
            "accounts" => self.account_fields.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// The deadlines a record holds (a completed task holds none).
    pub fn of_record(&self, resource: &str, rec: &Value) -> Vec<Deadline> {
        let mut out = Vec::new();
        match resource {
            "tasks" if self.tasks => {
                if rec.get("status").and_then(Value::as_str) != Some("Completed")
                    && let Some(t) = instant(rec.get("due_date"))
                {
                    out.push(self.deadline(TASK, "tasks", rec, t, true));
                }
            }
            "events" if self.events => {
                if let Some(t) = instant(rec.get("start_date_time")) {
                    let all_day = rec.get("is_all_day").and_then(Value::as_bool) == Some(true);
                    out.push(self.deadline(EVENT, "events", rec, t, all_day));
                }
            }
            "matters" => {
                if self.statute
                    && let Some(t) = instant(rec.get("statute_of_limitation_date"))
                {
                    out.push(self.deadline(STATUTE, "matters", rec, t, true));
                }
                self.date_fields(
                    &self.matter_fields,
                    "matters",
                    "custom_field_values",
                    rec,
                    &mut out,
                );
            }
            "contacts" => {
                self.date_fields(
                    &self.contact_fields,
                    "contacts",
                    "custom_field_values",
                    rec,
                    &mut out,
                );
            }
            "accounts" => {
                let key = "company_custom_field_values";
                self.date_fields(&self.account_fields, "accounts", key, rec, &mut out);
            }
            _ => {}
        }
        out
    }

    /// The custom fields of `rec` (under `key`) whose label is one of `labels` and that hold a date.
    fn date_fields(
        &self,
        labels: &[String],
        resource: &'static str,
        key: &str,
        rec: &Value,
        out: &mut Vec<Deadline>,
    ) {
        let fields = rec.get(key).and_then(Value::as_array);
        for label in labels {
            let value = fields.into_iter().flatten().find(|f| {
                f.pointer("/custom_field_ref/label").and_then(Value::as_str) == Some(label.as_str())
            });
            if let Some(t) = value.and_then(|f| instant(f.get("value_date_time"))) {
                out.push(self.deadline(label, resource, rec, t, true));
            }
        }
    }

    fn deadline(
        &self,
        kind: &str,
        resource: &'static str,
        rec: &Value,
        (t, raw): (DateTime<Utc>, &str),
        all_day: bool,
    ) -> Deadline {
        let text = |p: &str| rec.pointer(p).and_then(Value::as_str).map(str::to_string);
        let date = self.local_date(t);
        let at = if all_day {
            self.day_start(date)
        } else {
            t.with_timezone(&self.zone)
        };
        let (matter_id, matter, client_id, client, subject) = if resource == "matters" {
            (
                text("/id"),
                text("/display_name"),
                text("/account_ref/id"),
                text("/account_ref/display_name"),
                text("/display_name"),
            )
        } else if resource == "accounts" {
            // An account is the client.
            (
                None,
                None,
                text("/id"),
                text("/display_name"),
                text("/display_name"),
            )
        } else if resource == "contacts" {
            (
                None,
                None,
                text("/account_ref/id"),
                text("/account_ref/display_name"),
                text("/display_name"),
            )
        } else {
            (
                text("/matter_ref/id"),
                text("/matter_ref/display_name"),
                text("/account_ref/id"),
                text("/account_ref/display_name"),
                text("/subject"),
            )
        };
        let assignees = rec
            .get("assigned_to_users")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|u| u.get("display_name").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        Deadline {
            kind: kind.to_string(),
            resource,
            id: text("/id").unwrap_or_default(),
            date,
            due: at.to_rfc3339(),
            all_day,
            time_zone: self.zone.name().to_string(),
            subject,
            status: text("/status"),
            matter_id,
            matter,
            client_id,
            client,
            assignees,
            at,
            raw: raw.to_string(),
        }
    }
}

/// Every source's deadlines whose local date falls in [first, last], soonest first.
pub async fn list(
    store: &crate::store::Store,
    sources: &Sources,
    first: NaiveDate,
    last: NaiveDate,
) -> anyhow::Result<Vec<Deadline>> {
    // Date-only fields sit at local noon or midnight: a day on either side covers any zone.
    let from = sources.day_start(first) - chrono::Duration::days(1);
    let to = sources.day_start(last) + chrono::Duration::days(2);
    let with: Vec<&'static str> = RESOURCES
        .into_iter()
        .filter(|r| sources.covers(r))
        .collect();
    let mut list = Vec::new();
    store
        .deadline_records(
            Some((from.to_utc(), to.to_utc())),
            &with,
            |resource, raw| {
                let record = read_record(raw.get());
                list.extend(
                    sources
                        .of_record(resource, &record)
                        .into_iter()
                        .filter(|d| d.date >= first && d.date <= last),
                );
            },
        )
        .await?;
    list.sort_by(|a, b| (a.at, &a.kind, &a.id).cmp(&(b.at, &b.kind, &b.id)));
    Ok(list)
}

/// Every deadline the mirror holds, whenever it falls (the `deadline_rows` table's content).
pub async fn all(store: &crate::store::Store, sources: &Sources) -> anyhow::Result<Vec<Deadline>> {
    let with: Vec<&'static str> = RESOURCES
        .into_iter()
        .filter(|r| sources.covers(r))
        .collect();
    let mut list = Vec::new();
    store
        .deadline_records(None, &with, |resource, raw| {
            list.extend(sources.of_record(resource, &read_record(raw.get())));
        })
        .await?;
    list.sort_by(|a, b| (a.at, &a.kind, &a.id).cmp(&(b.at, &b.kind, &b.id)));
    Ok(list)
}

impl Sources {
    /// What `deadline_rows` depends on besides the records: the zone and the sources (lead
    /// times do not change a deadline). Stored with the rows; a different one rewrites them.
    pub fn fingerprint(&self) -> String {
        // `rows=2`: rows kept by pages since; a table written before (whole, at passes' ends)
        // is rewritten once, in case a pass ended before its rewrite.
        format!(
            "rows=2 zone={} tasks={} events={} statute={} matter_fields={:?} contact_fields={:?} account_fields={:?}",
            self.zone.name(),
            self.tasks,
            self.events,
            self.statute,
            self.matter_fields,
            self.contact_fields,
            self.account_fields
        )
    }
}

/// Whether `deadline_rows` must be rewritten whole: asked to (`force`), or it was written under
/// other sources than `now_under` (or never). Pages keep it current record by record otherwise
/// ([`rows_of`]).
pub fn needs_refresh(force: bool, written_under: Option<&str>, now_under: &str) -> bool {
    force || written_under != Some(now_under)
}

/// The `deadline_rows` of the records of `res` in `fresh` (those a page transaction wrote: new,
/// changed or back from deletion), read from `rows` as the table stores them (`jsonb`: the JSON
/// PostgreSQL's `jsonb` holds): the ids whose rows they replace, and the rows.
pub fn rows_of<'a>(
    sources: &Sources,
    res: &'static str,
    rows: &'a [crate::record::Row],
    fresh: &[crate::store::Fresh],
    jsonb: bool,
) -> (Vec<&'a str>, Vec<crate::store::DeadlineRow>) {
    let by_id: std::collections::HashMap<&str, &crate::record::Row> =
        rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut ids = Vec::with_capacity(fresh.len());
    let mut out = Vec::new();
    for f in fresh {
        let Some(r) = by_id.get(f.id.as_str()) else {
            continue;
        };
        ids.push(r.id.as_str());
        let text = match &r.jsonb {
            Some(j) if jsonb => j,
            _ => &r.data,
        };
        out.extend(
            sources
                .of_record(res, &read_record(text))
                .into_iter()
                .map(row),
        );
    }
    (ids, out)
}

/// Rewrites `deadline_rows` from the mirror when [`needs_refresh`] says so; returns the rows
/// written (None: nothing to do). `now` is when, noted beside them.
pub async fn refresh(
    store: &crate::store::Store,
    sources: &Sources,
    now: DateTime<Utc>,
    force: bool,
) -> anyhow::Result<Option<usize>> {
    let under = sources.fingerprint();
    let written = store.deadline_rows_sources().await?;
    if !needs_refresh(force, written.as_deref(), &under) {
        return Ok(None);
    }
    // A page of records at a time, each record's deadlines moved into rows and written before
    // the next page is read: memory is bounded by the page, not the firm.
    let mut rewrite = store.rewrite_deadline_rows().await?;
    for resource in RESOURCES.into_iter().filter(|r| sources.covers(r)) {
        loop {
            let page = rewrite.records(resource, PAGE).await?;
            if page.is_empty() {
                break;
            }
            let rows: Vec<_> = page
                .iter()
                .flat_map(|raw| sources.of_record(resource, &read_record(raw.get())))
                .map(row)
                .collect();
            rewrite.push(&rows).await?;
        }
    }
    Ok(Some(rewrite.finish(&under, now).await? as usize))
}

/// Records read at a time by a rewrite of `deadline_rows`.
const PAGE: u32 = 2_000;

/// A deadline as `deadline_rows` holds it.
pub fn row(d: Deadline) -> crate::store::DeadlineRow {
    let kind = match d.kind.as_str() {
        TASK if d.resource == "tasks" => "task",
        EVENT if d.resource == "events" => "event",
        STATUTE if d.resource == "matters" => "statute",
        _ => "custom_field",
    };
    crate::store::DeadlineRow {
        source: d.kind,
        kind,
        record_table: d.resource,
        record_id: d.id,
        title: d.subject,
        status: d.status,
        matter_id: d.matter_id,
        matter_name: d.matter,
        account_id: d.client_id,
        account_name: d.client,
        assignees: (!d.assignees.is_empty()).then(|| d.assignees.join(", ")),
        due_at: d.at.to_utc(),
        due_raw: d.raw,
        due_local: d.due,
        local_date: d.date,
        time_zone: d.time_zone,
        all_day: d.all_day,
    }
}

/// A record's JSON as the deadlines read it. A value serde_json refuses (nested deeper than it
/// parses) is left out, down to the elements of a list, instead of losing the whole record: one
/// odd custom field must not hide a matter's other deadlines.
pub fn read_record(raw: &str) -> Value {
    use serde_json::value::RawValue;
    if let Ok(v) = serde_json::from_str(raw) {
        return v;
    }
    // Skipping a raw value does not count its depth, so the fields are found all the same.
    let Ok(fields) = serde_json::from_str::<std::collections::BTreeMap<String, Box<RawValue>>>(raw)
    else {
        return Value::Null;
    };
    let fields = fields.into_iter().filter_map(|(k, v)| {
        let value = serde_json::from_str(v.get()).ok().or_else(|| {
            let items = serde_json::from_str::<Vec<Box<RawValue>>>(v.get()).ok()?;
            Some(Value::Array(
                items
                    .iter()
                    .filter_map(|i| serde_json::from_str(i.get()).ok())
                    .collect(),
            ))
        })?;
        Some((k, value))
    });
    Value::Object(fields.collect())
}

/// An instant field's value, with the text it was read from.
fn instant(v: Option<&Value>) -> Option<(DateTime<Utc>, &str)> {
    let raw = v.and_then(Value::as_str)?;
    Some((parse_api_time(raw)?, raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn la() -> Sources {
        Sources {
            zone: "America/Los_Angeles".parse().unwrap(),
            ..Sources::default()
        }
    }

    #[test]
    fn deadline_rows_are_rewritten_when_forced_or_under_other_sources() {
        let zone = la().fingerprint();
        let utc = Sources::default().fingerprint();
        assert_ne!(zone, utc);
        let fields = Sources {
            account_fields: vec!["Closing".into()],
            ..la()
        }
        .fingerprint();
        assert_ne!(fields, zone);
        let leads = Sources {
            lead_days: vec![3],
            ..la()
        }
        .fingerprint();
        // (forced, written under, sources now) -> rewrite
        for (force, written, now, want) in [
            (false, None, &zone, true),
            (false, Some(&zone), &zone, false),
            (true, Some(&zone), &zone, true),
            (false, Some(&utc), &zone, true),
            (false, Some(&zone), &fields, true),
            (false, Some(&zone), &leads, false),
        ] {
            assert_eq!(
                needs_refresh(force, written.map(String::as_str), now),
                want,
                "{force} {written:?} {now}"
            );
        }
    }

    #[test]
    fn a_value_nested_too_deep_is_left_out_not_the_record() {
        let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
        let raw = format!(
            r#"{{"id":"m1","odd":{deep},"custom_field_values":[{deep},{{"custom_field_ref":{{"label":"45 Day Deadline"}},"value_date_time":"2026-03-02T20:00:00"}}]}}"#
        );
        assert!(serde_json::from_str::<Value>(&raw).is_err());
        let rec = read_record(&raw);
        assert_eq!(rec["id"], "m1");
        assert_eq!(
            rec["odd"],
            json!([]),
            "the list stays, its unreadable element goes"
        );
        let d = Sources::default().of_record("matters", &rec);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].kind.as_str(), d[0].date.to_string()),
            ("45 Day Deadline", "2026-03-02".into())
        );
        assert_eq!(read_record("not json"), Value::Null);
    }

    #[test]
    fn date_only_fields_are_firm_local_dates_across_a_dst_change() {
        let s = la();
        // Local midnight before and after the 2025-11-02 change (PDT -7, PST -8).
        for (raw, want) in [
            ("2025-10-31T07:00:00", "2025-10-31"),
            ("2025-11-07T08:00:00", "2025-11-07"),
            ("2025-11-07T20:00:00", "2025-11-07"), // local noon
        ] {
            let task = json!({"id": "t", "due_date": raw, "status": "NotCompleted"});
            let d = &s.of_record("tasks", &task)[0];
            assert_eq!(d.date.to_string(), want, "{raw}");
            assert!(d.all_day);
        }
        let d = &s.of_record(
            "tasks",
            &json!({"id": "t", "due_date": "2025-11-07T08:00:00"}),
        )[0];
        assert_eq!(d.due, "2025-11-07T00:00:00-08:00");
        assert_eq!(d.local_text(), "Fri 7 Nov 2025");
        assert!(
            s.of_record(
                "tasks",
                &json!({"id": "t", "due_date": "2025-11-07T08:00:00", "status": "Completed"})
            )
            .is_empty()
        );
    }

    #[test]
    fn an_event_keeps_its_instant_in_local_time_with_the_zone_named() {
        let s = la();
        let ev = json!({"id": "e", "start_date_time": "2025-11-08T01:30:00"});
        let d = &s.of_record("events", &ev)[0];
        assert_eq!(d.date.to_string(), "2025-11-07");
        assert_eq!(d.due, "2025-11-07T17:30:00-08:00");
        assert_eq!(d.local_text(), "Fri 7 Nov 2025 17:30 PST");
    }

    #[test]
    fn contact_and_account_fields_are_chosen_by_label_and_carry_the_client() {
        let mut s = la();
        s.contact_fields = vec!["Date of Birth".into()];
        s.account_fields = vec!["Formation Date".into()];
        let cf = |label: &str, v: &str| json!([{"custom_field_ref": {"label": label, "value_type": "Date"}, "value_date_time": v}]);
        let contact = json!({"id": "c", "display_name": "Jessica Young",
            "account_ref": {"id": "a", "display_name": "Young, Jessica"},
            "custom_field_values": cf("Date of Birth", "1980-05-04T19:00:00")});
        let account = json!({"id": "a", "display_name": "Torres Investments LLC",
            "company_custom_field_values": cf("Formation Date", "2019-01-15T20:00:00")});
        let d = &s.of_record("contacts", &contact)[0];
        assert_eq!(
            (d.kind.as_str(), d.date.to_string()),
            ("Date of Birth", "1980-05-04".into())
        );
        assert_eq!(
            (d.client.as_deref(), d.matter.as_deref()),
            (Some("Young, Jessica"), None)
        );
        let d = &s.of_record("accounts", &account)[0];
        assert_eq!(
            (d.kind.as_str(), d.date.to_string()),
            ("Formation Date", "2019-01-15".into())
        );
        assert_eq!(d.client.as_deref(), Some("Torres Investments LLC"));
        // A matter's field of the same label is not a contact's.
        assert!(s.of_record("contacts", &json!({"id": "x", "company_custom_field_values": cf("Date of Birth", "1980-05-04T19:00:00")})).is_empty());
        assert!(s.covers("contacts") && s.covers("accounts") && !la().covers("contacts"));
    }

    #[test]
    fn matter_fields_are_chosen_by_label() {
        let s = la();
        let cf = |label: &str, v: Value| json!({"custom_field_ref": {"label": label, "value_type": "Date"}, "value_date_time": v, "value_boolean": false});
        let m = json!({
            "id": "m", "display_name": "5518 - Torres - 1031 Exchange",
            "account_ref": {"id": "a", "display_name": "Torres"},
            "assigned_to_users": [{"display_name": "Ann"}],
            "statute_of_limitation_date": "2026-03-02T20:00:00",
            "custom_field_values": [cf("45 Day Deadline", json!("2025-12-12T20:00:00")), cf("180 Day Deadline", Value::Null), cf("Escrow Number", json!("x"))],
        });
        let got = s.of_record("matters", &m);
        let kinds: Vec<(&str, String)> = got
            .iter()
            .map(|d| (d.kind.as_str(), d.date.to_string()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("Statute of Limitations", "2026-03-02".into()),
                ("45 Day Deadline", "2025-12-12".into())
            ]
        );
        assert_eq!(got[1].client.as_deref(), Some("Torres"));
        assert_eq!(got[1].assignees, ["Ann"]);
        assert_eq!(got[1].slug(), "45-day-deadline");
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_at_its_first_hour() {
        let s = Sources {
            zone: "America/Sao_Paulo".parse().unwrap(),
            ..Sources::default()
        };
        // 2018-11-04: clocks went from 00:00 to 01:00.
        let d = NaiveDate::from_ymd_opt(2018, 11, 4).unwrap();
        assert_eq!(s.day_start(d).to_rfc3339(), "2018-11-04T01:00:00-02:00");
    }
}
