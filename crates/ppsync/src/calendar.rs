//! The deadlines as an iCalendar feed (RFC 5545) a calendar can subscribe to: one VEVENT per
//! deadline, its UID stable across feeds (the source, the record and the local date, as in the
//! notification ids), a date-only deadline as an all-day event, a timed one in the firm's zone
//! (TZID). Built with the `icalendar` crate: line folding and escaping are its job, not ours.

use chrono::{DateTime, Utc};
use icalendar::{Calendar, CalendarDateTime, Component, Event, EventLike};

use crate::deadlines::Deadline;

/// The feed for `list`, stamped `now` (DTSTAMP: when the feed was made).
pub fn feed(list: &[Deadline], zone: &str, now: DateTime<Utc>) -> String {
    let mut cal = Calendar::new();
    cal.name("PracticePanther deadlines (ppsync)")
        .timezone(zone);
    for d in list {
        let mut ev = Event::new();
        ev.uid(&uid(d))
            .timestamp(now)
            .summary(&summary(d))
            .description(&description(d));
        if d.all_day {
            // DTSTART as a DATE and no DTEND: a one-day event (RFC 5545 3.6.1).
            ev.starts(d.date);
        } else {
            ev.starts(CalendarDateTime::from_date_time(d.at));
        }
        cal.push(ev.done());
    }
    cal.done().to_string()
}

/// Stable for a deadline on its date: a moved deadline is a new event (the old one drops out of
/// the feed), as its notifications are.
fn uid(d: &Deadline) -> String {
    format!("{}.{}.{}@ppsync", d.slug(), d.id, d.date)
}

fn summary(d: &Deadline) -> String {
    let what = match (&d.subject, d.resource) {
        (Some(s), "tasks" | "events") => format!(": {s}"),
        _ => String::new(),
    };
    match &d.matter {
        Some(m) => format!("{}{what} ({m})", d.kind),
        None => format!("{}{what}", d.kind),
    }
}

fn description(d: &Deadline) -> String {
    let mut lines = vec![format!("{}: {}/{}", d.kind, d.resource, d.id)];
    if let Some(c) = &d.client {
        lines.push(format!("Client: {c}"));
    }
    if !d.assignees.is_empty() {
        lines.push(format!("Assigned: {}", d.assignees.join(", ")));
    }
    lines.join("\n")
}
