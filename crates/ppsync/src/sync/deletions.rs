//! How a listing ends ([`ListingRun::finish`]): deletions concluded from a complete listing (each
//! candidate of a resource with a by-id read confirmed there first, a suspicious number refused),
//! the cursor and the listing's completeness, committed with its last page.

use super::listing_run::ListingRun;
use super::paging::{Mode, Phase};
use super::{Engine, Stop};
use crate::api::{self, Action};
use crate::resource::Resource;
use crate::store;

/// Most deletions a proven listing of a list without a by-id read marks at once.
const NO_BY_ID_MARK_LIMIT: i64 = 20;

impl ListingRun<'_> {
    /// Every page is in: deletions (after a complete listing), the cursor and what is known of
    /// the listing's completeness commit with the last page; a backfill's indexes come back in
    /// the same transaction. Candidates of a resource with a by-id read are confirmed first.
    pub(super) async fn finish(&mut self) -> Result<(), Stop> {
        let engine = self.engine;
        let res = self.res;
        let now = engine.clock.now();
        let mut g = self.group.take().expect("the page's transaction");
        let tx = &mut g.tx;
        if self.listing.mode == Mode::Backfill {
            tx.restore_indexes(res).await?;
        }
        // A page that could not be continued, and the listing reached more by other queries
        // (date windows, the reverse order): that page was cut, its length is the cap. Known,
        // the next listings ask for pages of it and see a full page as one.
        if let Some(c) = self.listing.suspect_cap
            && self.dialect.cap() != Some(c)
            && tx.count_seen(res, self.listing.first_run).await? as u64 > c
        {
            self.dialect.proved_cap(
                c,
                &format!("a page of {c} could not be continued, and other queries reached more"),
                now,
            );
            let facts = serde_json::to_string(&self.dialect).expect("a dialect serializes");
            tx.set_dialect(res.name, &facts, now).await?;
        }
        if self.listing.mode.complete_listing() {
            let unseen = tx.count_unseen(res, self.listing.first_run).await?;
            if unseen > 0 {
                if let Some(msg) = engine.too_many_deletions(res, tx, unseen).await? {
                    self.finish_listing(tx, false).await?;
                    g.tx.commit().await?;
                    return Err(Stop::Skip(msg));
                }
                if res.by_id.is_some() {
                    self.listing.phase = Phase::Confirm;
                    let saved = serde_json::to_value(&self.listing).expect("a listing serializes");
                    tx.set_listing(res, Some(&saved), now).await?;
                    g.tx.commit().await?;
                    return self.confirm_deletions().await;
                }
                if self.listing.proven() && unseen <= NO_BY_ID_MARK_LIMIT {
                    self.stats.records_deleted += tx
                        .mark_unseen_deleted(res, self.listing.first_run, now)
                        .await?;
                } else if self.listing.proven() {
                    // Without a by-id read nothing confirms them; many at once from a list
                    // without paging looks more like a cap that shrank than like deletions.
                    self.listing.incomplete_evidence(format!(
                        "{unseen} records the mirror holds are missing from the listing at once \
                         (more than {NO_BY_ID_MARK_LIMIT}), and the endpoint has no by-id read to \
                         confirm them: a cap that shrank? not marked deleted"
                    ));
                } else {
                    let why = self.listing.unproven.join("; ");
                    self.listing.incomplete_evidence(format!(
                        "{unseen} records the mirror holds are missing from a listing that cannot be \
                         proven complete ({why}); not marked deleted"
                    ));
                }
            }
        }
        self.finish_listing(tx, true).await?;
        g.tx.commit().await?;
        self.ended()
    }

    /// Deletion candidates checked by id (404 = gone) before any is marked. A record this listing
    /// saw is read by id first: a by-id read that does not find a record known to exist cannot
    /// confirm anything. Every candidate is checked when they are few; beyond
    /// `confirm_deletions`, a sample is, and the rest are marked only when the listing is proven
    /// complete (otherwise the sample alone is marked, the others checked at later passes). One
    /// that still exists means the listing was cut: nothing is marked and the resource is
    /// reported incomplete. The listing is saved in its `Confirm` phase, so a stopped process
    /// confirms again at the next start.
    pub(super) async fn confirm_deletions(&mut self) -> Result<(), Stop> {
        let engine = self.engine;
        let res = self.res;
        let path = res.by_id.expect("only resources with a by-id read confirm");
        let first_run = self.listing.first_run;
        let (unseen, sample, control) = {
            let mut tx = engine.store.begin().await?;
            let unseen = tx.count_unseen(res, first_run).await?;
            let sample = tx
                .unseen_sample(res, first_run, engine.cfg.confirm_deletions.max(1))
                .await?;
            let control = tx.seen_sample(res, first_run, 1).await?;
            (unseen, sample, control)
        };
        let mut gone = Vec::new();
        let mut still = None;
        let mut blind = None;
        if self.listing.incomplete.is_none() {
            if let Some(c) = control.first()
                && !engine.confirm_one(res, path, c).await?
            {
                blind = Some(c.clone());
            }
            if blind.is_none() {
                for id in &sample {
                    if engine.confirm_one(res, path, id).await? {
                        still = Some(id.clone());
                        break;
                    }
                    gone.push(id.clone());
                }
            }
        }
        let now = engine.clock.now();
        let mut tx = engine.store.begin().await?;
        if let Some(c) = blind {
            self.listing.unproven.push(format!(
                "GET {path}/{c} does not find a record the listing just returned, so it cannot \
                 confirm deletions; {unseen} records missing from the listing not marked"
            ));
        } else if let Some(id) = still {
            let why = if self.listing.unproven.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.listing.unproven.join("; "))
            };
            self.listing.incomplete_evidence(format!(
                "{unseen} records are missing from the listing, but {id} still exists (GET \
                 {path}/{id} answers): the listing was cut{why}; nothing marked deleted"
            ));
        } else if self.listing.incomplete.is_none() {
            if unseen as usize <= gone.len() || self.listing.proven() {
                self.stats.records_deleted += tx.mark_unseen_deleted(res, first_run, now).await?;
                if unseen as usize > gone.len() {
                    tracing::info!(
                        resource = res.name,
                        unseen,
                        sampled = gone.len(),
                        "deletions confirmed by a sample of a proven listing"
                    );
                }
            } else {
                // Not proven: only what was seen gone is marked; the rest at later passes.
                self.stats.records_deleted += tx.mark_deleted(res, &gone, now).await?;
                self.listing.unproven.push(format!(
                    "{} of {unseen} records missing from the listing confirmed gone and marked; \
                     the others are checked at the next passes",
                    gone.len()
                ));
            }
        }
        self.finish_listing(&mut tx, true).await?;
        tx.commit().await?;
        self.ended()
    }
}

impl Engine {
    /// Refuses a complete listing that would mark most of a table deleted (the API's view of the
    /// firm shrank: a non-admin account, a broken filter).
    pub(super) async fn too_many_deletions(
        &self,
        res: &Resource,
        tx: &mut store::Tx,
        unseen: i64,
    ) -> Result<Option<String>, Stop> {
        if unseen <= 20 {
            return Ok(None);
        }
        let live = tx.count_live(res).await?;
        if (unseen as f64) <= self.cfg.max_delete_fraction * live as f64 {
            return Ok(None);
        }
        tracing::error!(
            resource = res.name,
            unseen,
            live,
            "a complete listing would mark too many records deleted: refusing (check the API)"
        );
        Ok(Some(format!(
            "{}: refused to mark {unseen} of {live} records deleted (more than {:.0}%): \
             check the API access (an admin account?) before trusting this listing",
            res.name,
            self.cfg.max_delete_fraction * 100.0
        )))
    }

    /// Whether `GET {path}/{id}` finds the record, with the page policy's retries.
    pub(super) async fn confirm_one(
        &self,
        res: &Resource,
        path: &str,
        id: &str,
    ) -> Result<bool, Stop> {
        let mut attempt = 0;
        loop {
            match self.client.exists(path, id).await {
                Ok(found) => return Ok(found),
                Err(e) => {
                    attempt += 1;
                    match api::error::action(e.class(), attempt, self.cfg.max_page_attempts) {
                        Action::BackoffAndRetry | Action::WaitAndRetry
                            if !self.waits_too_long(&e) =>
                        {
                            self.client.page_backoff(attempt).await;
                        }
                        Action::StopPass | Action::BackoffAndRetry | Action::WaitAndRetry => {
                            return Err(self.pass_stop(e));
                        }
                        _ => {
                            return Err(Stop::Skip(format!(
                                "{}: deletions not confirmed ({e}); the next pass confirms them",
                                res.name
                            )));
                        }
                    }
                }
            }
        }
    }
}
