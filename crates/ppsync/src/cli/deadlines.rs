//! `ppsync deadlines`: every deadline source's deadlines coming due (or past), from the mirror,
//! in the firm's time zone.

use crate::app;
use crate::config::Config;
use crate::deadlines::Deadline;

pub(super) struct Filter {
    pub days: u32,
    pub kind: Option<String>,
    pub matter: Option<String>,
    pub overdue: bool,
}

impl Filter {
    fn keeps(&self, d: &Deadline) -> bool {
        let kind_ok = self
            .kind
            .as_ref()
            .is_none_or(|k| d.kind.eq_ignore_ascii_case(k.trim()));
        let matter_ok = self.matter.as_ref().is_none_or(|m| {
            let m = m.trim().to_lowercase();
            d.matter_id.as_deref() == Some(m.as_str())
                || d.matter
                    .as_deref()
                    .is_some_and(|name| name.to_lowercase().contains(&m))
        });
        kind_ok && matter_ok
    }
}

pub(super) async fn deadlines(cfg: Config, filter: Filter, json: bool) -> anyhow::Result<i32> {
    // A registered firm's own settings (its zone) come with its store.
    let (cfg, store) = app::open(&cfg).await?;
    let sources = cfg.sync.deadlines.clone();
    let now = chrono::Utc::now();
    let today = sources.local_date(now);
    let span = chrono::Days::new(u64::from(filter.days));
    let (first, last) = if filter.overdue {
        (today - span, today.pred_opt().unwrap_or(today))
    } else {
        (today, today + span)
    };
    // Date-only fields sit at local noon or midnight: a day on either side covers any zone.
    let from = sources.day_start(first) - chrono::Duration::days(1);
    let to = sources.day_start(last) + chrono::Duration::days(2);
    let with: Vec<&'static str> = ["tasks", "events", "matters"]
        .into_iter()
        .filter(|r| sources.covers(r))
        .collect();
    let mut list: Vec<Deadline> = Vec::new();
    for (resource, raw) in store
        .deadline_records(from.to_utc(), to.to_utc(), &with)
        .await?
    {
        let record: serde_json::Value = serde_json::from_str(raw.get()).unwrap_or_default();
        list.extend(
            sources
                .of_record(resource, &record)
                .into_iter()
                .filter(|d| d.date >= first && d.date <= last && filter.keeps(d)),
        );
    }
    list.sort_by(|a, b| (a.at, &a.kind, &a.id).cmp(&(b.at, &b.kind, &b.id)));
    if json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    let zone = sources.zone.name();
    if list.is_empty() {
        if filter.overdue {
            outln!("nothing came due in the last {} days ({zone})", filter.days);
        } else {
            outln!(
                "nothing comes due in the next {} days ({zone})",
                filter.days
            );
        }
        return Ok(0);
    }
    outln!("times in {zone}");
    for d in &list {
        let what = match (&d.subject, d.resource) {
            (Some(s), "tasks" | "events") => s.as_str(),
            _ => "",
        };
        outln!(
            "{:<26} {:<22} {:<40} {:<24} {:<24} {}",
            d.local_text(),
            d.kind,
            d.matter.as_deref().unwrap_or(""),
            d.client.as_deref().unwrap_or(""),
            d.assignees.join(", "),
            what
        );
    }
    Ok(0)
}
