//! Streaming decode of a bare JSON array body: records are handed over one at a time as raw JSON,
//! so memory stays flat whatever the size of the response (the real `/contacts` returns 11k
//! records in one body). serde_json's reader-based deserializer does the parsing on a blocking
//! thread fed from the async body; a bounded channel gives back-pressure.

use std::fmt;
use std::io::BufReader;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{Error, Response};

enum Item {
    Record(Box<RawValue>),
    Failed(Error),
}

/// A listing being received.
pub struct Listing {
    /// The server's `Date` when it answered: the signpost for cursors.
    pub server_date: Option<DateTime<Utc>>,
    pub path: String,
    rx: mpsc::Receiver<Item>,
    received: u64,
    finished: bool,
}

impl Listing {
    pub(crate) fn start(resp: Response) -> Result<Self, Error> {
        let Response {
            resp,
            server_date,
            path,
        } = resp;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (tx, rx) = mpsc::channel(256);
        if !content_type.is_empty() && !content_type.contains("json") {
            // An HTML error page (a proxy, maintenance) where JSON was expected.
            let path2 = path.clone();
            tokio::spawn(async move {
                let body = resp.text().await.unwrap_or_default();
                let snippet: String = body
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .chars()
                    .take(120)
                    .collect();
                let _ = tx
                    .send(Item::Failed(Error::NotJson {
                        path: path2,
                        status,
                        content_type,
                        snippet,
                    }))
                    .await;
            });
        } else {
            let body = resp.bytes_stream().map_err(std::io::Error::other);
            let reader = SyncIoBridge::new(StreamReader::new(body));
            let path2 = path.clone();
            tokio::task::spawn_blocking(move || decode(reader, tx, path2));
        }
        Ok(Listing {
            server_date,
            path,
            rx,
            received: 0,
            finished: false,
        })
    }

    /// The next record, `Ok(None)` at the end of a complete array, or the error that cut it short.
    pub async fn next(&mut self) -> Result<Option<Box<RawValue>>, Error> {
        if self.finished {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Item::Record(r)) => {
                self.received += 1;
                Ok(Some(r))
            }
            Some(Item::Failed(e)) => {
                self.finished = true;
                Err(e)
            }
            None => {
                self.finished = true;
                Ok(None)
            }
        }
    }

    pub fn received(&self) -> u64 {
        self.received
    }
}

fn decode<R: std::io::Read>(reader: R, tx: mpsc::Sender<Item>, path: String) {
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(64 * 1024, reader));
    let mut sent = 0u64;
    let result = de
        .deserialize_seq(Records {
            tx: &tx,
            sent: &mut sent,
        })
        .and_then(|()| de.end());
    if let Err(e) = result {
        let err = if e.is_eof() || e.is_io() {
            Error::Truncated {
                path,
                records: sent,
            }
        } else {
            Error::Malformed {
                path,
                records: sent,
                detail: e.to_string(),
            }
        };
        let _ = tx.blocking_send(Item::Failed(err));
    }
}

struct Records<'a> {
    tx: &'a mpsc::Sender<Item>,
    sent: &'a mut u64,
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            if self.tx.blocking_send(Item::Record(raw)).is_err() {
                // The consumer stopped listening (it failed or was cancelled): stop reading.
                return Ok(());
            }
            *self.sent += 1;
        }
        Ok(())
    }
}
