//! Prefetch: the next page is requested on a task of its own as soon as the page before is
//! received in full, so its answer (and its decoding) is usually here when that page is written.

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use super::paging::{Expect, Listing, PageInfo, Sent};
use crate::api;
use crate::record::{self, Row};
use crate::resource::Resource;

/// A page's response: its records as they are decoded, and what the decoding thread noted.
pub(super) struct Incoming {
    pub(super) stream: api::Listing<Row>,
    pub(super) seen: Arc<std::sync::Mutex<PageInfo>>,
}

/// A page requested on a task of its own (aborted if dropped unused).
pub(super) struct Ahead {
    pub(super) query: Vec<(String, String)>,
    pub(super) sent: Sent,
    task: Option<tokio::task::JoinHandle<Result<Incoming, api::Error>>>,
    answer: Option<Result<Incoming, api::Error>>,
}

impl Ahead {
    /// Waits at most `limit` for the answer (the response's head, or the request's failure).
    /// True when it is here: the request needs neither the budget nor the token store any more.
    pub(super) async fn answered_within(&mut self, limit: Duration) -> bool {
        if let Some(task) = self.task.as_mut() {
            match tokio::time::timeout(limit, task).await {
                Ok(joined) => {
                    self.task = None;
                    self.answer = Some(join(joined));
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Waits for the answer (the response's head, or the request's failure), keeping it.
    pub(super) async fn wait(&mut self) {
        if let Some(task) = self.task.take() {
            self.answer = Some(join(task.await));
        }
    }

    pub(super) async fn answer(&mut self) -> Result<Incoming, api::Error> {
        if let Some(a) = self.answer.take() {
            return a;
        }
        match self.task.take() {
            Some(task) => join(task.await),
            None => unreachable!("an Ahead is pending or answered"),
        }
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A request task's result; a panic in it (a bug) goes on unwinding here.
fn join<T>(r: Result<T, tokio::task::JoinError>) -> T {
    r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

impl Engine {
    /// Requests a page of `res` on a task of its own. Its records are parsed and prepared on the
    /// decoding thread, beside the writes of the page before, and noted there (`PageInfo`), so
    /// the page after can be requested as soon as this one is received in full.
    pub(super) fn request(
        &self,
        res: &'static Resource,
        query: Vec<(String, String)>,
        sent: Sent,
        listing: &Listing,
    ) -> Ahead {
        let client = self.client.clone();
        let q = query.clone();
        let expect = Expect::new(res, listing, &sent);
        // The request counts in this resource's tally, which a spawned task does not inherit.
        let tally = api::current_tally();
        let work = async move {
            let reader = record::Reader::new(res);
            let seen = Arc::new(std::sync::Mutex::new(PageInfo::new()));
            let noted = seen.clone();
            let stream = client
                .list(res.path, &q, move |raw| {
                    let row = reader.prepare(raw)?;
                    noted
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .observe(&row, &expect);
                    Ok(row)
                })
                .await?;
            Ok(Incoming { stream, seen })
        };
        let task = tokio::spawn(async move {
            match tally {
                Some(t) => api::tallied(t, work).await,
                None => work.await,
            }
        });
        Ahead {
            query,
            sent,
            task: Some(task),
            answer: None,
        }
    }
}
