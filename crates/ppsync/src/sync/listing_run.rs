//! One listing of one resource in a run ([`ListingRun`]): the listing and what is known of its
//! endpoint, the run's counts, the open page transaction and the page requested ahead, owned by
//! one value whose `next_page` (in `fetch`) and `finish` (in `deletions`) move it along.

use chrono::{DateTime, Utc};

use super::dialect::{self, Dialect};
use super::paging::{self, Listing, Mode, PageInfo, Phase, Sent, Step};
use super::prefetch::Ahead;
use super::{Engine, Stop};
use crate::resource::{Incremental, Resource};
use crate::store::{self, RunStats};
use crate::time::{canonical, parse_api_time};

/// Pages written and not yet committed: their transaction, and the listing as of the last commit
/// (where a failure inside the group returns to, its pages rolled back).
pub(super) struct Group {
    pub(super) tx: store::Tx,
    /// Records written in it.
    pub(super) records: u64,
    /// What its pages added to the run's counts (taken back on a rollback).
    pub(super) seen: u64,
    pub(super) changed: u64,
    pub(super) committed: Listing,
    /// The dialect as of the last commit.
    pub(super) dialect: Dialect,
}

/// Commits the open transaction, if any.
pub(super) async fn commit(group: &mut Option<Group>) -> Result<(), store::Error> {
    match group.take() {
        Some(g) => g.tx.commit().await,
        None => Ok(()),
    }
}

fn shutdown_stop(res: &Resource) -> Stop {
    Stop::Skip(format!(
        "{}: stopped by shutdown; the next start resumes",
        res.name
    ))
}

/// A fetched page: what it held, the page after it (requested early), and what it was sent with.
pub(super) struct Fetched {
    pub(super) info: PageInfo,
    pub(super) next: Option<Ahead>,
    pub(super) sent: Sent,
}

/// One resource's listing in this run: the listing, what is known of its endpoint, the run's
/// counts, and the pages in flight (the open transaction, the page requested ahead). The engine
/// it runs on keeps what is shared (client, store, settings, clock).
pub(super) struct ListingRun<'e> {
    pub(super) engine: &'e Engine,
    pub(super) res: &'static Resource,
    pub(super) run: i64,
    pub(super) listing: Listing,
    pub(super) dialect: Dialect,
    /// The dialect changed outside a page's learning (a 400 telling the limit for `$top`).
    pub(super) dialect_dirty: bool,
    /// Page transactions rolled back because another writer was in the way.
    pub(super) contention: u32,
    pub(super) stats: RunStats,
    /// The mode the listing runs in (a rejected cursor turns an incremental one full).
    pub(super) mode: Mode,
    /// The open transaction; it always holds whole pages between pages.
    pub(super) group: Option<Group>,
    /// Pages join a group until one fails inside it; from then on each commits alone.
    pub(super) grouping: bool,
    /// The next page, requested as soon as the one before was received in full.
    pub(super) ahead: Option<Ahead>,
}

impl<'e> ListingRun<'e> {
    pub(super) fn new(
        engine: &'e Engine,
        res: &'static Resource,
        run: i64,
        listing: Listing,
        dialect: Dialect,
    ) -> Self {
        ListingRun {
            engine,
            res,
            run,
            mode: listing.mode,
            listing,
            dialect,
            dialect_dirty: false,
            contention: 0,
            stats: RunStats::default(),
            group: None,
            grouping: true,
            ahead: None,
        }
    }

    /// Lists the resource: its pages from the listing's resume point, then how it ends.
    pub(super) async fn list(&mut self) -> Result<(), Stop> {
        let engine = self.engine;
        let res = self.res;
        if self.listing.phase == Phase::Confirm {
            // Every page was in when the process stopped: only the deletions are left.
            return self.confirm_deletions().await;
        }
        // A first backfill fills its table with the secondary indexes set aside (one sort each at
        // the end instead of random inserts into every index; PostgreSQL only into an empty table).
        let bulk = self.listing.mode == Mode::Backfill;
        if bulk {
            let mut tx = engine.store.begin().await?;
            self.listing.new_table = tx.is_empty(res).await?;
            tx.defer_indexes(res, self.listing.new_table).await?;
            tx.commit().await?;
        }
        let result = self.pages().await;
        // What is still open ends with the pages (the transaction rolled back, the request
        // aborted), before the indexes are restored in a transaction of their own.
        drop(self.group.take());
        drop(self.ahead.take());
        if bulk
            && matches!(
                result,
                Err(Stop::Skip(_) | Stop::Fatal(_) | Stop::AuthDead(_) | Stop::Wait { .. })
            )
            && !engine.shutdown.is_cancelled()
        {
            // A backfill that stops early leaves the table indexed (the next one sets them aside
            // again). On shutdown (or if this fails) the next start restores them instead.
            let restored = async {
                let mut tx = engine.store.begin().await?;
                tx.restore_indexes(res).await?;
                tx.commit().await
            };
            if let Err(e) = restored.await {
                tracing::warn!(resource = res.name, error = %e, "indexes not restored yet (the next start does)");
            }
        }
        result
    }

    /// Reads and writes the listing's pages, each decided on by `paging`, until it ends.
    async fn pages(&mut self) -> Result<(), Stop> {
        let engine = self.engine;
        let res = self.res;
        let mut restarts = 0;
        loop {
            let Some(Fetched {
                info: mut page,
                next: mut early,
                sent,
            }) = self.next_page().await?
            else {
                continue; // re-planned (rejected query) or returned to the last commit
            };
            let g = self
                .group
                .as_mut()
                .expect("a fetched page leaves its transaction open");
            g.seen += page.received;
            g.changed += page.changed;
            self.stats.records_seen += page.received;
            self.stats.records_changed += page.changed;
            if let Some(p) = &engine.progress {
                p.records(res.name, page.received);
            }
            let now = engine.clock.now();
            if self.listing.signpost.is_none() {
                let t = engine
                    .signpost(res, page.server_date, now, &mut g.tx)
                    .await?;
                self.listing.signpost = Some(canonical(t));
            }
            // Decided on what was known before the page; then learned from it.
            let decided = paging::step(res, &self.listing, &page, &sent, &self.dialect);
            let learned = paging::learn(&mut self.dialect, &self.listing, &page, &sent, now);
            if learned || std::mem::take(&mut self.dialect_dirty) {
                tracing::info!(resource = res.name, dialect = %self.dialect.summary(), "learned the endpoint's dialect");
                let facts = serde_json::to_string(&self.dialect).expect("a dialect serializes");
                g.tx.set_dialect(res.name, &facts, now).await?;
            }
            if self.listing.pages == 0 && self.listing.phase == Phase::Pages {
                self.listing.first_id = page.first_id.clone();
            }
            self.listing.pages += 1;
            let next = if self.listing.phase == Phase::Reverse {
                // The reverse page is written: did it bring records paging never reached?
                early = None;
                // Records changed while the listing ran are newest in the reverse order: they are
                // not evidence of a cut.
                let seen = (g.tx.count_seen(res, self.listing.first_run).await? as u64)
                    .saturating_sub(page.after_signpost);
                if seen > self.listing.seen_before_reverse {
                    self.listing.incomplete_evidence(format!(
                        "{} records reached, and one more request found {} others: more exist \
                         than the endpoint lets a client page to",
                        self.listing.seen_before_reverse,
                        seen - self.listing.seen_before_reverse
                    ));
                }
                None
            } else {
                match decided {
                    Step::Restart => {
                        // What this page held is committed (it is true data), but the listing
                        // starts again so nothing is missed.
                        drop(early.take());
                        commit(&mut self.group).await?;
                        restarts += 1;
                        if restarts > 2 {
                            return Err(Stop::Skip(format!(
                                "{}: records kept shifting under paging; the next pass retries",
                                res.name
                            )));
                        }
                        tracing::warn!(
                            resource = res.name,
                            "records shifted during paging: restarting the listing"
                        );
                        self.listing = self.listing.restarted();
                        continue;
                    }
                    Step::Next(next) => Some(*next),
                    Step::Done => paging::next_window(&self.listing),
                    Step::Stuck(why) => self.unstick(&mut page, why).await?,
                }
            };
            if let Some(next) = next {
                self.listing = Listing {
                    pages: self.listing.pages,
                    first_id: self.listing.first_id.clone(),
                    ..next
                };
                let g = self.group.as_mut().expect("the page's transaction");
                let progress = serde_json::to_value(&self.listing).expect("a listing serializes");
                g.tx.set_listing(res, Some(&progress), now).await?;
                // Not on shutdown: the next request would be wasted.
                if engine.shutdown.is_cancelled() {
                    commit(&mut self.group).await?;
                    return Err(shutdown_stop(res));
                }
                // Usually requested already, while this page's last records were written.
                let (query, sent) =
                    paging::query(res, &self.listing, &self.dialect, engine.cfg.page_size);
                let mut next_page = match early.take() {
                    Some(a) if a.query == query => a,
                    _ => engine.request(res, query, sent, &self.listing),
                };
                let hold = self.grouping
                    && g.records < engine.cfg.commit_records
                    && !engine.cfg.commit_wait.is_zero();
                // Held open briefly: if the next answer is here, that page joins this
                // transaction; if not, it commits while the request goes on.
                if !hold || !next_page.answered_within(engine.cfg.commit_wait).await {
                    commit(&mut self.group).await?;
                }
                self.ahead = Some(next_page);
                if engine.shutdown.is_cancelled() {
                    commit(&mut self.group).await?;
                    return Err(shutdown_stop(res));
                }
                continue;
            }
            drop(early);
            return self.finish().await;
        }
    }

    /// A page that may be cut, with no way to the records after it: partition the list by the
    /// API's date filters, or ask for one page in the reverse order (does more exist?), or accept
    /// the listing as unproven. Returns the listing's next state, None when it ends.
    async fn unstick(&mut self, page: &mut PageInfo, why: String) -> Result<Option<Listing>, Stop> {
        let res = self.res;
        let tx = &mut self.group.as_mut().expect("the page's transaction").tx;
        let l = &mut self.listing;
        l.suspect_cap = Some(
            l.suspect_cap
                .map_or(page.received, |c| c.min(page.received)),
        );
        let why = format!(
            "{why}, and its {} records may be a cap (as many as one response has held)",
            page.received
        );
        if let Some(part) = res.partition {
            // Records without the date are in no window: the mirror must hold none either.
            let undated = if l.windows.is_empty() {
                tx.count_null(res, part.column).await?
            } else {
                0
            };
            let split = if undated > 0 {
                Err(format!(
                    "{undated} records in the mirror have no {}, so the date filters cannot partition the list",
                    part.column
                ))
            } else {
                paging::split(l, page)
            };
            match split {
                Ok(windows) => {
                    tracing::warn!(resource = res.name, reason = %why, windows = windows.len(), "listing by date windows");
                    return Ok(Some(paging::partitioned(l, windows)));
                }
                Err(e) => l.unproven.push(format!("{why}; {e}")),
            }
            return Ok(paging::next_window(l));
        }
        l.unproven.push(why.clone());
        if !l.windows.is_empty() {
            return Ok(paging::next_window(l));
        }
        // One more page tells whether more records exist than paging reached: the reverse order,
        // or, where the endpoint cannot order, the records newer than the newest seen.
        let can_reverse = !l.omit_order && self.dialect.orderby().usable();
        let can_since = res.has_updated_at
            && res.incremental == Incremental::UpdatedSince
            && self.dialect.since() != dialect::Since::Ignored
            && page.max_updated_at.is_some();
        if can_reverse || can_since {
            if res.incremental == Incremental::FullListing {
                // Expected: the notes say these lists take no parameters at all.
                tracing::info!(resource = res.name, reason = %why, "paging cannot go on: one more page tells whether more exist");
            } else {
                tracing::warn!(resource = res.name, reason = %why, "paging cannot go on: one more page tells whether more exist");
            }
            let mut next = l.clone();
            next.phase = Phase::Reverse;
            next.probe_since = page.max_updated_at.map(canonical);
            next.seen_before_reverse = tx.count_seen(res, l.first_run).await? as u64;
            return Ok(Some(next));
        }
        Ok(None)
    }

    /// Writes how the listing ended: the cursor (not past what a listing may have missed: the
    /// next pass asks again from the same point), and whether the resource could be listed
    /// completely.
    pub(super) async fn finish_listing(
        &self,
        tx: &mut store::Tx,
        move_cursor: bool,
    ) -> Result<(), Stop> {
        let res = self.res;
        let l = &self.listing;
        let now = self.engine.clock.now();
        let signpost = l
            .signpost
            .as_deref()
            .and_then(parse_api_time)
            .unwrap_or(now);
        let evidence = l.incomplete.clone();
        // Past what a listing may have missed the cursor moves only from nothing (a first
        // backfill: the incremental passes after it list every change) or for a list read whole
        // every pass (its cursor narrows nothing).
        let may_move =
            l.proven() || l.mode == Mode::Backfill || res.incremental == Incremental::FullListing;
        if move_cursor && may_move {
            tx.set_cursor(res, signpost, l.mode.complete_listing(), now)
                .await?;
        } else {
            tx.set_listing(res, None, now).await?;
        }
        let unproven = (!l.unproven.is_empty()).then(|| l.unproven.join("; "));
        // A complete listing says how the resource stands; an incremental one only adds evidence.
        if l.mode.complete_listing() || evidence.is_some() {
            tx.set_completeness(res, evidence.as_deref(), unproven.as_deref(), now)
                .await?;
        }
        if let Some(u) = &unproven
            && evidence.is_none()
        {
            tracing::info!(resource = res.name, reason = %u, "listing not proven complete; nothing seen missing");
        }
        Ok(())
    }

    /// The end of a listing: Ok, or incomplete with what was seen.
    pub(super) fn ended(&self) -> Result<(), Stop> {
        let res = self.res;
        if let Some(e) = &self.listing.incomplete {
            let cap = match (self.dialect.cap(), self.dialect.largest()) {
                (Some(c), _) => format!("it returns at most {c} records a response"),
                (None, l) => format!("its largest response held {l} records"),
            };
            return Err(Stop::Incomplete(format!(
                "{}: incomplete: {e}; {cap} ({})",
                res.name,
                self.dialect.summary()
            )));
        }
        tracing::info!(
            resource = res.name,
            mode = self.listing.mode.name(),
            pages = self.listing.pages,
            seen = self.stats.records_seen,
            changed = self.stats.records_changed,
            deleted = self.stats.records_deleted,
            "resource synced"
        );
        Ok(())
    }
}

impl Engine {
    /// The listing's signpost from the first response's `Date`: the server's own time, unless it
    /// is further ahead of our clock than `max_clock_skew` (then our clock, and the skew is
    /// noted).
    pub(super) async fn signpost(
        &self,
        res: &Resource,
        server_date: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        tx: &mut store::Tx,
    ) -> Result<DateTime<Utc>, Stop> {
        let Some(t) = server_date else {
            tracing::warn!(
                resource = res.name,
                "no Date header: the local clock stands in as the signpost"
            );
            return Ok(now);
        };
        let tolerance = self.tolerance();
        let skew = t - now;
        if skew.abs() <= tolerance {
            return Ok(t);
        }
        // Noted when it changed by more than a minute (not at every resource's listing).
        let mut facts = self.api_facts().await?;
        let known = facts.clock_skew_secs.as_ref().map(|f| f.value);
        if known.is_none_or(|k| (k - skew.num_seconds()).abs() > 60) {
            tracing::warn!(
                resource = res.name,
                skew_secs = skew.num_seconds(),
                "the server's Date is further from our clock than max_clock_skew"
            );
            facts.clock_skew_secs = Some(dialect::Fact {
                value: skew.num_seconds(),
                how: format!(
                    "Date header {} against our {}",
                    canonical(t),
                    canonical(now)
                ),
                at: now,
            });
            let json = serde_json::to_string(&facts).expect("facts serialize");
            tx.set_dialect(dialect::API, &json, now).await?;
        }
        // Ahead: a cursor past the server's own stamps would hide what changes until then, so
        // our clock stands in. Behind: a cursor earlier than it could be only re-reads more.
        Ok(paging::signpost_of(Some(t), now, tolerance))
    }

    /// How far ahead of our clock a server `Date` is still trusted.
    pub(super) fn tolerance(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.cfg.max_clock_skew).unwrap_or_default()
    }
}
