//! A tap run: for each selected stream, its SCHEMA, then its records in the run's window a page
//! at a time (memory stays bounded whatever the table's size), with a STATE after each page and
//! at the stream's end.

use std::io::Write;

use chrono::{DateTime, Utc};

use super::messages::Out;
use super::state::State;
use crate::resource::Resource;
use crate::store::{Store, TapWindow, Ts};

/// Records a page reads.
const PAGE: u32 = 1000;

/// Emits `streams` from the mirror, from `state` up to `fence`. Returns the records emitted.
pub async fn emit<W: Write>(
    store: &Store,
    streams: &[&Resource],
    mut state: State,
    fence: DateTime<Utc>,
    out: &mut Out<W>,
) -> anyhow::Result<u64> {
    let mut total = 0;
    for res in streams {
        out.schema(res, &store.issue_fields(res).await?)?;
        let Some(mut plan) = state.get(res.name).plan(fence) else {
            tracing::info!(stream = res.name, "nothing written since the bookmark");
            continue;
        };
        let mut n = 0u64;
        loop {
            let window = TapWindow {
                since: plan.since.map(Ts),
                until: Ts(plan.until),
                after: plan.after.as_deref(),
            };
            let page = store.tap_page(res, window, PAGE).await?;
            for row in &page {
                out.record(res, row)?;
            }
            n += page.len() as u64;
            match page.last() {
                Some(last) if page.len() == PAGE as usize => {
                    state.progress(res.name, &plan, &last.id);
                    out.state(&state)?;
                    plan.after = Some(last.id.clone());
                }
                _ => break,
            }
        }
        state.done(res.name, &plan);
        out.state(&state)?;
        tracing::info!(stream = res.name, records = n, "emitted");
        total += n;
    }
    // The state as a whole, last: a target keeps the last STATE it read.
    out.state(&state)?;
    Ok(total)
}
