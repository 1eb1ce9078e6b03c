//! The tap's STATE: per stream, the sync instant up to which every record the mirror wrote has
//! been emitted (`synced_at`), and while a stream is under way the window it is walking
//! (`fence`) and the last id emitted (`after_id`), so an interrupted run resumes there.
//!
//! Why the mirror's `synced_at` and not the records' `updated_at`: every write of a record sets
//! it (new, changed, its by-id rendering stored, marked deleted), while a listing that finds the
//! record unchanged does not; `updated_at` misses deletions, resources without it, and records
//! stamped in the same instant as the bookmark. A window ends at a fence some `settle` seconds
//! before the run's start, so a write still committing elsewhere (the daemon beside the tap),
//! stamped before the fence, is in the database when the tap reads.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound as _, Utc};
use serde_json::{Value, json};

use crate::time::{canonical, parse_api_time};

/// Where a stream stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bookmark {
    /// Every record written at or before this instant has been emitted (None: nothing yet).
    pub synced_at: Option<DateTime<Utc>>,
    /// A window under way: its end and the last id emitted in it.
    pub resume: Option<(DateTime<Utc>, String)>,
}

/// The records one stream's run emits: written after `since`, at or before `until`, ids after
/// `after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub since: Option<DateTime<Utc>>,
    pub until: DateTime<Utc>,
    pub after: Option<String>,
}

impl Bookmark {
    /// This run's window: an interrupted one is finished first; otherwise from the bookmark to
    /// the fence. None when the fence is not past the bookmark (nothing can be new).
    pub fn plan(&self, fence: DateTime<Utc>) -> Option<Plan> {
        if let Some((until, after)) = &self.resume {
            return Some(Plan {
                since: self.synced_at,
                until: *until,
                after: Some(after.clone()),
            });
        }
        if self.synced_at.is_some_and(|s| s >= fence) {
            return None;
        }
        Some(Plan {
            since: self.synced_at,
            until: fence,
            after: None,
        })
    }
}

/// The fence of a run that starts at `now`: `settle` before it, to the microsecond the mirror
/// stores.
pub fn fence(now: DateTime<Utc>, settle: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(settle)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
        .trunc_subsecs(6)
}

/// Every stream's bookmark, as Singer's STATE value carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub bookmarks: BTreeMap<String, Bookmark>,
    pub currently_syncing: Option<String>,
}

impl State {
    /// Reads a state file's value. Streams ppsync does not know are dropped.
    pub fn parse(v: &Value) -> Result<State, String> {
        const FIX: &str =
            "pass the value of the tap's last STATE message, or no --state for a full run";
        let Some(marks) = v.get("bookmarks") else {
            return Ok(State::default());
        };
        let marks = marks
            .as_object()
            .ok_or_else(|| format!("the state's `bookmarks` is not an object: {FIX}"))?;
        let mut state = State {
            currently_syncing: v
                .get("currently_syncing")
                .and_then(Value::as_str)
                .map(str::to_string),
            ..State::default()
        };
        for (stream, b) in marks {
            if !crate::resource::RESOURCES.iter().any(|r| r.name == stream) {
                continue;
            }
            let time = |key: &str| -> Result<Option<DateTime<Utc>>, String> {
                match b.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => parse_api_time(s).map(Some).ok_or_else(|| {
                        format!("the state's `{stream}.{key}` ({s:?}) is not a time: {FIX}")
                    }),
                    Some(other) => Err(format!(
                        "the state's `{stream}.{key}` ({other}) is not a time: {FIX}"
                    )),
                }
            };
            let synced_at = time("synced_at")?;
            let resume = match (time("fence")?, b.get("after_id").and_then(Value::as_str)) {
                (Some(f), Some(id)) => Some((f, id.to_string())),
                _ => None,
            };
            state
                .bookmarks
                .insert(stream.clone(), Bookmark { synced_at, resume });
        }
        Ok(state)
    }

    pub fn to_json(&self) -> Value {
        let marks: serde_json::Map<String, Value> = self
            .bookmarks
            .iter()
            .map(|(stream, b)| {
                let mut m = json!({"synced_at": b.synced_at.map(canonical)});
                if let Some((fence, after)) = &b.resume {
                    m["fence"] = json!(canonical(*fence));
                    m["after_id"] = json!(after);
                }
                (stream.clone(), m)
            })
            .collect();
        json!({"bookmarks": marks, "currently_syncing": self.currently_syncing})
    }

    pub fn get(&self, stream: &str) -> Bookmark {
        self.bookmarks.get(stream).cloned().unwrap_or_default()
    }

    /// A stream's window emitted up to `after`.
    pub fn progress(&mut self, stream: &str, plan: &Plan, after: &str) {
        self.currently_syncing = Some(stream.to_string());
        self.bookmarks.insert(
            stream.to_string(),
            Bookmark {
                synced_at: plan.since,
                resume: Some((plan.until, after.to_string())),
            },
        );
    }

    /// A stream's window emitted whole.
    pub fn done(&mut self, stream: &str, plan: &Plan) {
        self.currently_syncing = None;
        self.bookmarks.insert(
            stream.to_string(),
            Bookmark {
                synced_at: Some(plan.until),
                resume: None,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_api_time(s).unwrap()
    }

    #[test]
    fn which_window_a_stream_runs() {
        let fence = t("2026-03-01T12:00:00Z");
        let plan = |since: Option<&str>, until: &str, after: Option<&str>| Plan {
            since: since.map(t),
            until: t(until),
            after: after.map(str::to_string),
        };
        let at = |s: Option<&str>| Bookmark {
            synced_at: s.map(t),
            resume: None,
        };
        for (case, bookmark, want) in [
            (
                "first run: everything up to the fence",
                at(None),
                Some(plan(None, "2026-03-01T12:00:00Z", None)),
            ),
            (
                "incremental: after the bookmark",
                at(Some("2026-03-01T11:00:00Z")),
                Some(plan(
                    Some("2026-03-01T11:00:00Z"),
                    "2026-03-01T12:00:00Z",
                    None,
                )),
            ),
            (
                "the fence is the bookmark: nothing",
                at(Some("2026-03-01T12:00:00Z")),
                None,
            ),
            (
                "the clock went back: nothing, never an earlier bookmark",
                at(Some("2026-03-01T13:00:00Z")),
                None,
            ),
            (
                "interrupted: its own window, from the last id",
                Bookmark {
                    synced_at: Some(t("2026-03-01T10:00:00Z")),
                    resume: Some((t("2026-03-01T11:00:00Z"), "m-42".into())),
                },
                Some(plan(
                    Some("2026-03-01T10:00:00Z"),
                    "2026-03-01T11:00:00Z",
                    Some("m-42"),
                )),
            ),
        ] {
            assert_eq!(bookmark.plan(fence), want, "{case}");
        }
        assert_eq!(
            fence_of("2026-03-01T12:01:00.1234567Z", 60),
            t("2026-03-01T12:00:00.123456Z")
        );
        assert_eq!(
            fence_of("2026-03-01T12:01:00Z", 0),
            t("2026-03-01T12:01:00Z")
        );
    }

    fn fence_of(now: &str, secs: u64) -> DateTime<Utc> {
        fence(t(now), std::time::Duration::from_secs(secs))
    }

    #[test]
    fn state_round_trips_and_bad_state_is_refused() {
        let mut s = State::default();
        let p = Plan {
            since: None,
            until: t("2026-03-01T12:00:00Z"),
            after: None,
        };
        s.progress("matters", &p, "m-9");
        assert_eq!(s.currently_syncing.as_deref(), Some("matters"));
        assert_eq!(State::parse(&s.to_json()).unwrap(), s);
        s.done("matters", &p);
        s.done("tasks", &p);
        let v = s.to_json();
        assert_eq!(
            v["bookmarks"]["matters"],
            json!({"synced_at": "2026-03-01T12:00:00.000000Z"})
        );
        assert_eq!(v["currently_syncing"], Value::Null);
        assert_eq!(State::parse(&v).unwrap(), s);

        assert_eq!(State::parse(&json!({})).unwrap(), State::default());
        let unknown = State::parse(&json!({"bookmarks": {"widgets": {"synced_at": 3}}})).unwrap();
        assert!(unknown.bookmarks.is_empty());
        for bad in [
            json!({"bookmarks": []}),
            json!({"bookmarks": {"matters": {"synced_at": "yesterday"}}}),
            json!({"bookmarks": {"matters": {"synced_at": 17}}}),
        ] {
            let e = State::parse(&bad).unwrap_err();
            assert!(e.contains("--state"), "{e}");
        }
    }
}
