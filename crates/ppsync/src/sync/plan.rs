//! Planning: which mode a resource is listed in this pass (resume the listing in flight, or
//! start a backfill, an incremental or a full listing), a pure function of what the store knows
//! of the resource, the settings and the time.

use chrono::{DateTime, Utc};

use super::SyncConfig;
use super::paging::{Listing, Mode};
use crate::resource::{Incremental, Resource};
use crate::store;
use crate::time::canonical;

/// Chooses how to list the resource: resume a listing in flight, or start one.
pub(super) fn plan(
    res: &Resource,
    state: &store::State,
    full: bool,
    now: DateTime<Utc>,
    cfg: &SyncConfig,
) -> Listing {
    if let Some(l) = state
        .listing
        .clone()
        .and_then(|l| serde_json::from_value::<Listing>(l).ok())
        && !(full && l.mode == Mode::Incremental)
    {
        return l;
    }
    let overlap = chrono::Duration::from_std(cfg.overlap).unwrap_or_default();
    if full || res.incremental == Incremental::FullListing {
        return Listing::new(Mode::Full, None, 0);
    }
    // The age is measured on our own clock (since the cursor last moved), so a server clock
    // far from ours neither forces nor hides a re-listing.
    let age = state
        .cursor_set_at
        .map(|t| (now - t).to_std().unwrap_or_default());
    let ahead = chrono::Duration::from_std(cfg.max_clock_skew).unwrap_or_default();
    match state.cursor {
        Some(cursor) if cursor > now + ahead => {
            // Set from a `Date` header far ahead (a bad node, a proxy): whatever changed since
            // it was set would stay hidden. A complete listing repairs it.
            tracing::warn!(resource = res.name, cursor = %canonical(cursor), "cursor in the future: re-listing to repair it");
            Listing::new(Mode::Full, None, 0)
        }
        Some(cursor) if age.is_some_and(|a| a > cfg.max_catch_up) => {
            tracing::warn!(resource = res.name, cursor = %canonical(cursor), "cursor older than max_catch_up: re-listing");
            Listing::new(Mode::Full, None, 0)
        }
        Some(cursor) => Listing::new(Mode::Incremental, Some(cursor - overlap), 0),
        None => match cfg.initial_lookback {
            Some(lb) => Listing::new(
                Mode::Incremental,
                Some(now - chrono::Duration::from_std(lb).unwrap_or_default()),
                0,
            ),
            None => Listing::new(Mode::Backfill, None, 0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::find;
    use crate::time::parse_api_time;

    #[test]
    fn which_listing_a_resource_runs() {
        let matters = find("matters").unwrap();
        let messages = find("messages").unwrap();
        let now = parse_api_time("2026-12-03T10:00:00Z").unwrap();
        let min = chrono::Duration::minutes;
        let days = chrono::Duration::days;
        let cfg = SyncConfig::default();
        let lookback = SyncConfig {
            initial_lookback: Some(std::time::Duration::from_secs(86400)),
            ..SyncConfig::default()
        };
        let in_flight = |mode: Mode| store::State {
            listing: Some(
                serde_json::to_value(Listing {
                    pages: 3,
                    ..Listing::new(mode, Some(now - days(1)), 7)
                })
                .unwrap(),
            ),
            ..store::State::default()
        };
        let cursor = |at: DateTime<Utc>, set: Option<DateTime<Utc>>| store::State {
            cursor: Some(at),
            cursor_set_at: set,
            ..store::State::default()
        };
        let nothing = store::State::default();
        let unreadable = store::State {
            listing: Some(serde_json::json!({"mode": 7})),
            ..store::State::default()
        };
        // (case, resource, state, full, config, mode, since, resumed)
        type Case<'a> = (
            &'a str,
            &'a Resource,
            store::State,
            bool,
            &'a SyncConfig,
            Mode,
            Option<DateTime<Utc>>,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "a listing in flight resumes",
                matters,
                in_flight(Mode::Incremental),
                false,
                &cfg,
                Mode::Incremental,
                Some(now - days(1)),
                true,
            ),
            (
                "--full resumes a complete listing in flight",
                matters,
                in_flight(Mode::Backfill),
                true,
                &cfg,
                Mode::Backfill,
                Some(now - days(1)),
                true,
            ),
            (
                "--full replaces an incremental one",
                matters,
                in_flight(Mode::Incremental),
                true,
                &cfg,
                Mode::Full,
                None,
                false,
            ),
            (
                "an unreadable resume point starts over",
                matters,
                unreadable,
                false,
                &cfg,
                Mode::Backfill,
                None,
                false,
            ),
            (
                "--full",
                matters,
                cursor(now - min(60), Some(now - min(60))),
                true,
                &cfg,
                Mode::Full,
                None,
                false,
            ),
            (
                "a list read whole every pass",
                messages,
                cursor(now - min(60), Some(now - min(60))),
                false,
                &cfg,
                Mode::Full,
                None,
                false,
            ),
            (
                "a cursor: from it minus the overlap",
                matters,
                cursor(now - min(60), Some(now - min(60))),
                false,
                &cfg,
                Mode::Incremental,
                Some(now - min(75)),
                false,
            ),
            (
                "a cursor ahead within the skew",
                matters,
                cursor(now + min(15), Some(now)),
                false,
                &cfg,
                Mode::Incremental,
                Some(now),
                false,
            ),
            (
                "a cursor in the future is repaired",
                matters,
                cursor(now + min(16), Some(now)),
                false,
                &cfg,
                Mode::Full,
                None,
                false,
            ),
            (
                "a cursor set within max_catch_up",
                matters,
                cursor(now - days(7), Some(now - days(7))),
                false,
                &cfg,
                Mode::Incremental,
                Some(now - days(7) - min(15)),
                false,
            ),
            (
                "a cursor set before max_catch_up",
                matters,
                cursor(now - min(60), Some(now - days(7) - min(1))),
                false,
                &cfg,
                Mode::Full,
                None,
                false,
            ),
            (
                "a cursor of unknown age",
                matters,
                cursor(now - min(60), None),
                false,
                &cfg,
                Mode::Incremental,
                Some(now - min(75)),
                false,
            ),
            (
                "no cursor: a backfill",
                matters,
                nothing.clone(),
                false,
                &cfg,
                Mode::Backfill,
                None,
                false,
            ),
            (
                "no cursor, initial_lookback",
                matters,
                nothing,
                false,
                &lookback,
                Mode::Incremental,
                Some(now - days(1)),
                false,
            ),
        ];
        for (case, res, state, full, cfg, mode, since, resumed) in cases {
            let l = plan(res, &state, full, now, cfg);
            assert_eq!(l.mode, mode, "{case}");
            assert_eq!(l.since, since.map(canonical), "{case}");
            assert_eq!(
                (l.pages, l.first_run),
                if resumed { (3, 7) } else { (0, 0) },
                "{case}"
            );
        }
    }
}
