//! `ppsync deadlines`: every deadline source's deadlines coming due (or past), from the mirror,
//! in the firm's time zone.

use crate::app;

use crate::config::Config;
use crate::deadlines::Deadline;

pub(super) struct Filter {
    pub days: u32,
    pub kind: Option<String>,
    pub matter: Option<String>,
    pub user: Option<String>,
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
        let user_ok = self.user.as_ref().is_none_or(|u| {
            let u = u.trim().to_lowercase();
            d.assignees.iter().any(|a| a.to_lowercase().contains(&u))
        });
        kind_ok && matter_ok && user_ok
    }
}

/// How the list is printed.
pub(super) enum Format {
    Table,
    Json,
    Ics,
}

pub(super) async fn deadlines(cfg: Config, filter: Filter, format: Format) -> anyhow::Result<i32> {
    // A registered firm's own settings (its zone) come with its store.
    let (cfg, store) = app::open_existing(&cfg).await?;
    let sources = cfg.sync.deadlines.clone();
    if let Some(kind) = &filter.kind {
        let kinds: Vec<&str> = crate::deadlines::RESOURCES
            .into_iter()
            .flat_map(|r| sources.names(r))
            .collect();
        if !kinds.iter().any(|k| k.eq_ignore_ascii_case(kind.trim())) {
            anyhow::bail!(
                "--kind {kind:?} is not a deadline source: use one of {} (see [deadlines] in the config)",
                kinds
                    .iter()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let now = chrono::Utc::now();
    let today = sources.local_date(now);
    let span = chrono::Days::new(u64::from(filter.days));
    let (first, last) = if filter.overdue {
        (today - span, today.pred_opt().unwrap_or(today))
    } else {
        (today, today + span)
    };
    let mut list = crate::deadlines::list(&store, &sources, first, last).await?;
    list.retain(|d| filter.keeps(d));
    match format {
        Format::Json => {
            outln!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(0);
        }
        Format::Ics => {
            let zone = sources.zone.name();
            use std::io::Write as _;
            write!(
                std::io::stdout().lock(),
                "{}",
                crate::calendar::feed(&list, zone, now)
            )?;
            return Ok(0);
        }
        Format::Table => {}
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
