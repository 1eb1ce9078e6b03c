//! `time_zone` and `[deadlines]`: the firm's zone and where deadlines come from, checked into
//! [`Sources`].

use serde::Deserialize;

use super::{Error, err};
use crate::deadlines::Sources;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeadlines {
    pub(super) tasks: Option<bool>,
    pub(super) events: Option<bool>,
    pub(super) statute: Option<bool>,
    pub(super) matter_fields: Option<Labels>,
    pub(super) contact_fields: Option<Labels>,
    pub(super) account_fields: Option<Labels>,
    pub(super) lead_days: Option<Days>,
    /// A source's own lead days, by its name ("45 Day Deadline" = [30, 14, 7, 1, 0]).
    #[serde(default)]
    pub(super) lead_days_by_source: std::collections::BTreeMap<String, Days>,
}

/// Custom field labels: a TOML array, or one string of labels separated by commas (labels hold
/// spaces: "45 Day Deadline").
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Labels {
    Many(Vec<String>),
    One(String),
}

/// Days: a TOML array, or one string of numbers separated by commas (an environment variable).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Days {
    Many(Vec<i64>),
    One(String),
}

pub(super) fn sources(time_zone: Option<&str>, raw: &RawDeadlines) -> Result<Sources, Error> {
    let d = Sources::default();
    let zone = match time_zone.map(str::trim) {
        None | Some("") => d.zone,
        Some(z) => z.parse().map_err(|_| {
            err(format!(
                "`time_zone` = {z:?} is not an IANA time zone: write it like \"America/Los_Angeles\" (or \"UTC\")"
            ))
        })?,
    };
    let labels = |key: &str, raw: &Option<Labels>, default: Vec<String>| {
        let v: Vec<String> = match raw {
            None => default,
            Some(Labels::Many(v)) => v.iter().map(|s| s.trim().to_string()).collect(),
            Some(Labels::One(s)) => s.split(',').map(|s| s.trim().to_string()).collect(),
        };
        if v.iter().any(String::is_empty) {
            return Err(err(format!(
                "`deadlines.{key}` holds an empty label: list custom field labels, e.g. [\"45 Day Deadline\", \"180 Day Deadline\"]"
            )));
        }
        Ok(v)
    };
    let matter_fields = labels("matter_fields", &raw.matter_fields, d.matter_fields)?;
    let contact_fields = labels("contact_fields", &raw.contact_fields, d.contact_fields)?;
    let account_fields = labels("account_fields", &raw.account_fields, d.account_fields)?;
    let days = |key: &str, v: &Days| -> Result<Vec<u32>, Error> {
        let bad = |v: &str| {
            err(format!(
                "`{key}` = {v} is not a list of days: write it like [14, 7, 1, 0] (0: on the day, at most 366)"
            ))
        };
        let mut out: Vec<u32> = match v {
            Days::Many(v) => v
                .iter()
                .map(|n| u32::try_from(*n).ok().filter(|n| *n <= 366))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(&format!("{v:?}")))?,
            Days::One(s) => s
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| p.trim().parse::<u32>().ok().filter(|n| *n <= 366))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(&format!("{s:?}")))?,
        };
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.dedup();
        Ok(out)
    };
    let lead_days = match &raw.lead_days {
        None => d.lead_days,
        Some(v) => days("deadlines.lead_days", v)?,
    };
    let mut sources = Sources {
        zone,
        tasks: raw.tasks.unwrap_or(d.tasks),
        events: raw.events.unwrap_or(d.events),
        statute: raw.statute.unwrap_or(d.statute),
        matter_fields,
        contact_fields,
        account_fields,
        lead_days,
        lead_days_by_source: Default::default(),
    };
    let names: Vec<String> = crate::deadlines::RESOURCES
        .into_iter()
        .flat_map(|r| sources.names(r))
        .map(str::to_string)
        .collect();
    for (name, v) in &raw.lead_days_by_source {
        if !names.contains(name) {
            return Err(err(format!(
                "`deadlines.lead_days_by_source` names {name:?}, which is not a deadline source: use one of {}",
                names
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let v = days(&format!("deadlines.lead_days_by_source.{name:?}"), v)?;
        sources.lead_days_by_source.insert(name.clone(), v);
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn the_zone_and_sources_are_read_and_checked() {
        let c = Config::from_toml_str(
            "time_zone = \"Europe/London\"\n[deadlines]\nmatter_fields = \"45 Day Deadline, Closing\"\nlead_days = [1, 30, 0]\nevents = false",
        )
        .unwrap();
        let s = &c.sync.deadlines;
        assert_eq!(s.zone.name(), "Europe/London");
        assert_eq!(s.matter_fields, ["45 Day Deadline", "Closing"]);
        assert_eq!(s.lead_days, [30, 1, 0]);
        assert!(!s.events && s.tasks && s.statute);
        let c = Config::from_toml_str(
            "[deadlines.lead_days_by_source]\n\"45 Day Deadline\" = [30, 7, 0]\nTask = \"1, 0\"",
        )
        .unwrap();
        let s = &c.sync.deadlines;
        assert_eq!(s.leads("45 Day Deadline"), [30, 7, 0]);
        assert_eq!(s.leads("Task"), [1, 0]);
        assert_eq!(s.leads("180 Day Deadline"), [14, 7, 1, 0]);
        assert_eq!(s.max_lead(), 30);
        let d = &Config::from_toml_str("").unwrap().sync.deadlines;
        assert_eq!(d.zone.name(), "UTC");
        assert_eq!(d.lead_days, [14, 7, 1, 0]);
        for (toml, want) in [
            (
                "time_zone = \"Pacific\"",
                "`time_zone` = \"Pacific\" is not an IANA time zone",
            ),
            ("[deadlines]\nlead_days = [-1]", "deadlines.lead_days"),
            (
                "[deadlines]\nlead_days = \"7, soon\"",
                "deadlines.lead_days",
            ),
            (
                "[deadlines]\nmatter_fields = [\"\"]",
                "deadlines.matter_fields",
            ),
            ("[deadlines]\nfields = []", "fields"),
            (
                "[deadlines.lead_days_by_source]\n\"90 Day Deadline\" = [1]",
                "\"90 Day Deadline\", which is not a deadline source: use one of \"Task\"",
            ),
            (
                "[deadlines.lead_days_by_source]\nEvent = [-3]",
                "deadlines.lead_days_by_source.\"Event\"",
            ),
        ] {
            let e = Config::from_toml_str(toml).unwrap_err().to_string();
            assert!(e.contains(want), "{toml}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
