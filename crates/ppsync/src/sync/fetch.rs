//! Fetching a listing's next page ([`ListingRun::next_page`]) under the error policy: retries,
//! a query option the API rejects dropped, a rejected cursor turned into a full listing, a page
//! that fails inside a transaction of several rolled back with them; and streaming a page into
//! its transaction, the page after it requested as soon as this one is received in full.

use chrono::{DateTime, Utc};

use super::dialect::{self, QueryOption, Support};
use super::listing_run::{Fetched, Group, ListingRun, commit};
use super::paging::{self, Listing, Mode, PageInfo, Phase, Sent, Step};
use super::prefetch::{Ahead, Incoming};
use super::{Engine, Stop};
use crate::api::{self, Action};
use crate::record::Row;
use crate::resource::Resource;
use crate::store;
use crate::time::canonical;

/// Rows written per batch inside a page's transaction.
const WRITE_BATCH: usize = 1000;

/// Why a page failed: the API's answer, or the store's write.
enum PageError {
    Api(api::Error),
    Store(store::Error),
}

impl From<store::Error> for PageError {
    fn from(e: store::Error) -> Self {
        PageError::Store(e)
    }
}

impl ListingRun<'_> {
    /// Fetches the listing's next page (the one requested ahead, if any) into the open
    /// transaction (`group`, begun if there is none), applying the error policy. `None`: the
    /// listing was re-planned (a query option or the cursor rejected, or returned to its last
    /// commit) and its next query must be built again.
    ///
    /// A failure never leaves part of a page in the transaction: if the page had written rows,
    /// the transaction is rolled back with every page it held, the listing returns to its last
    /// commit and pages commit one by one from then on (so a page that keeps failing is retried
    /// and given up as it would be alone); if it had not, the whole pages before it commit.
    pub(super) async fn next_page(&mut self) -> Result<Option<Fetched>, Stop> {
        let engine = self.engine;
        let res = self.res;
        let mut ahead = self.ahead.take();
        let (query, sent) = paging::query(res, &self.listing, &self.dialect, engine.cfg.page_size);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut requested = ahead
                .take()
                .unwrap_or_else(|| engine.request(res, query.clone(), sent.clone(), &self.listing));
            if self.group.is_none() {
                // The transaction begins once the answer is here: on SQLite it takes the write
                // lock when it begins, and the request may need a write of its own first (a
                // token refresh saves the rotated pair on another connection).
                requested.wait().await;
                self.group = Some(Group {
                    tx: engine.store.begin().await?,
                    records: 0,
                    seen: 0,
                    changed: 0,
                    committed: self.listing.clone(),
                    dialect: self.dialect.clone(),
                });
            }
            let sent_now = requested.sent.clone();
            let (err, touched) = match self.receive(&mut requested).await {
                Ok((info, next)) => {
                    self.group.as_mut().expect("begun above").records += info.received;
                    return Ok(Some(Fetched {
                        info,
                        next,
                        sent: sent_now,
                    }));
                }
                Err((PageError::Store(e), _))
                    if e.is_contention() && self.contention < engine.cfg.max_page_attempts =>
                {
                    self.contention += 1;
                    // Another writer's transaction was in the way (a CLI pass beside the
                    // daemon): this one is rolled back whole, and the listing goes on from its
                    // last commit, page by page.
                    let lost = self.group.take().expect("the open transaction");
                    self.stats.records_seen -= lost.seen;
                    self.stats.records_changed -= lost.changed;
                    self.listing = lost.committed;
                    self.dialect = lost.dialect;
                    self.grouping = false;
                    tracing::warn!(resource = res.name, error = %e, attempt = self.contention, "another writer was in the way; the page is written again");
                    engine.client.page_backoff(self.contention).await;
                    return Ok(None);
                }
                Err((PageError::Store(e), _)) => return Err(Stop::from(e)),
                Err((PageError::Api(e), touched)) => (e, touched),
            };
            let mut returned = false;
            if touched {
                let lost = self.group.take().expect("the open transaction");
                self.stats.records_seen -= lost.seen;
                self.stats.records_changed -= lost.changed;
                if lost.records > 0 {
                    tracing::warn!(
                        resource = res.name,
                        pages_lost = self.listing.pages - lost.committed.pages,
                        "a page failed inside a transaction of several: they are read again, one commit each"
                    );
                    self.listing = lost.committed;
                    self.dialect = lost.dialect;
                    self.grouping = false;
                    returned = true;
                }
                // Dropped: rolled back.
            } else {
                commit(&mut self.group).await?;
            }
            if let api::Error::BadRequest { body, .. } = &err
                && let Some(dropped) = self
                    .drop_rejected_option(&requested.query, &sent_now, body)
                    .await
            {
                tracing::warn!(resource = res.name, option = dropped.name(), error = %err, "the API rejected a query option: asking again without it");
                return Ok(None);
            }
            match api::error::action(err.class(), attempt, engine.cfg.max_page_attempts) {
                Action::BackoffAndRetry | Action::WaitAndRetry => {
                    if engine.waits_too_long(&err) {
                        return Err(engine.pass_stop(err));
                    }
                    tracing::warn!(resource = res.name, error = %err, attempt, "page failed; retrying");
                    engine.client.page_backoff(attempt).await;
                    if returned {
                        return Ok(None);
                    }
                }
                Action::Relist if self.listing.mode == Mode::Incremental => {
                    tracing::warn!(resource = res.name, error = %err, "the API rejected the incremental query: re-listing fully");
                    self.listing = Listing {
                        // What the run knew when it began still holds.
                        with_issues: self.listing.with_issues.clone(),
                        details: self.listing.details,
                        ..Listing::new(Mode::Full, None, self.run)
                    };
                    self.mode = Mode::Full;
                    return Ok(None);
                }
                Action::StopPass => return Err(engine.pass_stop(err)),
                _ => return Err(Stop::Skip(err.to_string())),
            }
        }
    }

    /// After a 400: the query option it names (or, when it names none, the first of `$orderby`
    /// and paging not proven to work) is dropped from the listing, which asks again; the option
    /// is learned rejected once the query without it is answered. None: nothing left to drop.
    async fn drop_rejected_option(
        &mut self,
        query: &[(String, String)],
        sent: &Sent,
        body: &str,
    ) -> Option<QueryOption> {
        // "The limit of '1000' for Top query has been exceeded": a cap, not an unknown option.
        if let (Some(max), Some(top)) = (dialect::top_limit(body), sent.top)
            && top > max
        {
            self.dialect.proved_cap(
                max,
                &format!("the endpoint's limit for $top (a 400 said {max})"),
                self.engine.clock.now(),
            );
            self.dialect_dirty = true;
            return Some(QueryOption::Top);
        }
        let named = dialect::options_named(body);
        if named.is_empty() {
            // A 400 naming nothing may have another cause: the option is dropped (and, once
            // the query without it is answered, learned rejected) only if the same query is
            // refused again.
            let again = self.engine.client.get(self.res.path, query).await;
            if !matches!(again, Err(api::Error::BadRequest { .. })) {
                return None;
            }
        }
        let l = &mut self.listing;
        let candidates: Vec<QueryOption> = if named.is_empty() {
            let mut c = Vec::new();
            if sent.orderby && self.dialect.orderby() != Support::Honoured {
                c.push(QueryOption::OrderBy);
            }
            if sent.top.is_some() && self.dialect.top() != Support::Honoured {
                c.push(QueryOption::Top);
            }
            if sent.skip > 0 && self.dialect.skip() != Support::Honoured {
                c.push(QueryOption::Skip);
            }
            c.truncate(1);
            c
        } else {
            named.clone()
        };
        let mut dropped = None;
        for opt in candidates {
            let (flag, was_sent) = match opt {
                QueryOption::OrderBy => (&mut l.omit_order, sent.orderby),
                QueryOption::Top => (&mut l.omit_top, sent.top.is_some()),
                QueryOption::Skip => (&mut l.omit_skip, sent.skip > 0),
            };
            if was_sent && !*flag {
                *flag = true;
                dropped.get_or_insert(opt);
            }
        }
        dropped
    }

    /// Streams one page into `tx` (not committed). Once the page is received in full, the page
    /// after it (if any) is requested, while its last records are still being written; it is
    /// returned beside the page's info. On failure, says whether any of the page's rows had
    /// been written into `tx`.
    async fn receive(
        &mut self,
        requested: &mut Ahead,
    ) -> Result<(PageInfo, Option<Ahead>), (PageError, bool)> {
        let engine = self.engine;
        let (res, listing, dialect) = (self.res, &self.listing, &self.dialect);
        let Incoming { mut stream, seen } = requested
            .answer()
            .await
            .map_err(|e| (PageError::Api(e), false))?;
        let info = |seen: &std::sync::Mutex<PageInfo>| {
            seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
        };
        let mut next = None;
        let mut asked = false;
        let mut batch: Vec<Row> = Vec::with_capacity(WRITE_BATCH);
        let now = engine.clock.now();
        let mut write = PageWrite {
            tx: &mut self.group.as_mut().expect("the open transaction").tx,
            res,
            run: self.run,
            now,
            listing,
            deadlines: &engine.cfg.deadlines,
            deadline_sources: engine.cfg.deadlines.fingerprint(),
        };
        let mut touched = false;
        let mut changed = 0;
        loop {
            if !asked && stream.decoded() {
                asked = true;
                if !engine.shutdown.is_cancelled() && listing.phase == Phase::Pages {
                    let page = info(&seen);
                    if let Step::Next(mut l) =
                        paging::step(res, listing, &page, &requested.sent, dialect)
                    {
                        // The query the engine will build once the page is written: from the
                        // dialect as this page teaches it.
                        let mut d = dialect.clone();
                        paging::learn(&mut d, listing, &page, &requested.sent, now);
                        let (q, s) = paging::query(res, &l, &d, engine.cfg.page_size);
                        // The first page's signpost, as the engine will take it: the next
                        // page's records are judged against it.
                        if l.signpost.is_none() {
                            l.signpost = Some(canonical(paging::signpost_of(
                                stream.server_date,
                                now,
                                engine.tolerance(),
                            )));
                        }
                        next = Some(engine.request(res, q, s, &l));
                    }
                }
            }
            let row = stream
                .next()
                .await
                .map_err(|e| (PageError::Api(e), touched))?;
            let Some(row) = row else { break };
            batch.push(row);
            if batch.len() >= WRITE_BATCH {
                touched = true;
                changed += write.batch(&mut batch).await.map_err(|e| (e, true))?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            changed += write.batch(&mut batch).await.map_err(|e| (e, true))?;
        }
        let mut info = info(&seen);
        info.changed = changed;
        info.server_date = stream.server_date;
        Ok((info, next))
    }
}

/// Where a page's rows are written: its transaction, and what every batch is written with.
struct PageWrite<'a> {
    tx: &'a mut store::Tx,
    res: &'static Resource,
    run: i64,
    now: DateTime<Utc>,
    listing: &'a Listing,
    deadlines: &'a crate::deadlines::Sources,
    /// `deadlines`' fingerprint, which `deadline_rows` must have been written under for a page
    /// to keep it.
    deadline_sources: String,
}

impl PageWrite<'_> {
    /// Upserts a batch and enqueues the notifications it causes, in the page's transaction.
    /// What could not be read of a record is noted beside it (`record_issues`); a record without
    /// its key is only noted.
    async fn batch(&mut self, batch: &mut Vec<Row>) -> Result<u64, PageError> {
        let (res, run, now, listing) = (self.res, self.run, self.now, self.listing);
        let tx = &mut *self.tx;
        let odd: Vec<&Row> = batch.iter().filter(|r| !r.issues.is_empty()).collect();
        if !odd.is_empty() {
            tx.note_issues(res, &odd, now).await?;
        }
        if !listing.with_issues.is_empty() {
            let clean: Vec<&str> = batch
                .iter()
                .filter(|r| r.issues.is_empty() && listing.with_issues.contains(&r.id))
                .map(|r| r.id.as_str())
                .collect();
            tx.clear_issues(res, &clean).await?;
        }
        if odd.iter().any(|r| r.keyless) {
            batch.retain(|r| !r.keyless);
        }
        let fresh = tx
            .upsert(res, batch, run, now, None, listing.new_table)
            .await?;
        if listing.details && !fresh.is_empty() {
            // New and changed records wait for their by-id read, queued with the records.
            let hashes: std::collections::HashMap<&str, i64> =
                batch.iter().map(|r| (r.id.as_str(), r.hash)).collect();
            let queue: Vec<(&str, i64)> = fresh
                .iter()
                .filter_map(|f| hashes.get(f.id.as_str()).map(|h| (f.id.as_str(), *h)))
                .collect();
            tx.queue_details(res, &queue, now).await?;
        }
        // A first backfill records what is already due as suppressed, and no "new task" at all.
        let suppressed = listing.mode == Mode::Backfill;
        if !suppressed && !fresh.is_empty() && crate::notify::rule(res).is_some() {
            let items = crate::notify::for_page(res, batch, &fresh, now);
            tx.enqueue(&items, now).await?;
        }
        if !fresh.is_empty() && self.deadlines.covers(res.name) {
            // `deadline_rows` kept with the records, in their transaction (unless a whole
            // rewrite is due: SQLite's first backfill, new sources).
            if tx.keeps_deadline_rows(&self.deadline_sources).await? {
                let jsonb = tx.backend() == crate::store::Backend::Postgres;
                let (ids, rows) =
                    crate::deadlines::rows_of(self.deadlines, res.name, batch, &fresh, jsonb);
                tx.replace_deadline_rows(res.name, &ids, &rows).await?;
            }
            let (items, cancels) =
                crate::notify::for_deadlines(self.deadlines, res, batch, &fresh, now, suppressed);
            tx.cancel_deadlines(&cancels).await?;
            tx.enqueue(&items, now).await?;
        }
        Ok(fresh.len() as u64)
    }
}

impl Engine {
    /// A rate limit whose `Retry-After` is longer than a pass waits.
    pub(super) fn waits_too_long(&self, e: &api::Error) -> bool {
        matches!(e, api::Error::RateLimited { retry_after: Some(w) } if *w > self.client.config().max_retry_wait)
    }

    /// What a failure that stops the pass becomes.
    pub(super) fn pass_stop(&self, e: api::Error) -> Stop {
        if let api::Error::RateLimited {
            retry_after: Some(w),
        } = &e
        {
            let until = self.clock.now() + chrono::Duration::from_std(*w).unwrap_or_default();
            return Stop::Wait {
                message: format!(
                    "{e}: this pass ends here; the next starts after {}",
                    canonical(until)
                ),
                until,
            };
        }
        // Credentials that were never stored are a setup step not taken (`ppsync auth login`),
        // not a grant the API rejected: no auth_failed episode, no notification.
        if e.class() == api::Class::AuthDead && !matches!(e, api::Error::NoCredentials) {
            return Stop::AuthDead(e.to_string());
        }
        Stop::Fatal(e.to_string())
    }
}
