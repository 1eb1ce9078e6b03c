//! Streaming decode of a bare JSON array body: records are handed over one at a time as raw JSON,
//! so memory stays flat whatever the size of the response (the real `/contacts` returns 11k
//! records in one body). serde_json's reader-based deserializer does the parsing on a blocking
//! thread fed from the async body; a bounded channel gives back-pressure. Records cross the channel
//! in chunks of [`CHUNK`], so a thread wake-up is paid per chunk rather than per record.

use std::fmt;
use std::io::BufReader;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{Error, Response};

/// Records per channel message.
const CHUNK: usize = 64;
/// Chunks the channel holds: at most `CHUNK * DEPTH` records are decoded ahead of the consumer.
const DEPTH: usize = 32;

enum Item {
    Records(Vec<Box<RawValue>>),
    Failed(Error),
}

/// A listing being received.
pub struct Listing {
    /// The server's `Date` when it answered: the signpost for cursors.
    pub server_date: Option<DateTime<Utc>>,
    pub path: String,
    rx: mpsc::Receiver<Item>,
    /// The rest of the chunk being handed out.
    chunk: std::vec::IntoIter<Box<RawValue>>,
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
        let (tx, rx) = mpsc::channel(DEPTH);
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
            chunk: Vec::new().into_iter(),
            received: 0,
            finished: false,
        })
    }

    /// The next record, `Ok(None)` at the end of a complete array, or the error that cut it short.
    pub async fn next(&mut self) -> Result<Option<Box<RawValue>>, Error> {
        loop {
            if let Some(r) = self.chunk.next() {
                self.received += 1;
                return Ok(Some(r));
            }
            if self.finished {
                return Ok(None);
            }
            match self.rx.recv().await {
                Some(Item::Records(chunk)) => self.chunk = chunk.into_iter(),
                Some(Item::Failed(e)) => {
                    self.finished = true;
                    return Err(e);
                }
                None => {
                    self.finished = true;
                    return Ok(None);
                }
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
    let mut chunk = Vec::with_capacity(CHUNK);
    let result = de
        .deserialize_seq(Records {
            tx: &tx,
            sent: &mut sent,
            chunk: &mut chunk,
        })
        .and_then(|()| de.end());
    // What was decoded before the end (or before an error) goes out first, in order.
    if !chunk.is_empty() && tx.blocking_send(Item::Records(chunk)).is_err() {
        return;
    }
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
    chunk: &'a mut Vec<Box<RawValue>>,
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            self.chunk.push(raw);
            *self.sent += 1;
            if self.chunk.len() >= CHUNK {
                let full = std::mem::replace(self.chunk, Vec::with_capacity(CHUNK));
                if self.tx.blocking_send(Item::Records(full)).is_err() {
                    // The consumer stopped listening (it failed or was cancelled): stop reading.
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
