//! Streaming decode of a bare JSON array body: records are handed over one at a time, so memory
//! stays flat whatever the size of the response (the real `/contacts` returns 11k records in one
//! body).
//!
//! A blocking thread fed from the async body splits the array into its elements with a small
//! byte scanner ([`Splitter`]) and hands each element's text to the caller's `each` (which parses
//! and prepares it) on that same thread, so decoding runs beside the consumer's database writes
//! instead of before them. A bounded channel gives back-pressure; records cross it in chunks of
//! [`CHUNK`], so a thread wake-up is paid per chunk rather than per record.
//!
//! Why a scanner of our own: serde_json's reader-based deserializer reads byte by byte through
//! `io::Read` (it was 15% of a backfill's CPU capturing raw records), and no crate splits a JSON
//! array stream into element slices. The scanner only tracks strings, escapes and bracket depth to
//! find where each element ends; serde_json then parses every element from a slice, which is where
//! all syntax is checked.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{Error, Response};

/// Records per channel message.
const CHUNK: usize = 64;
/// Chunks the channel holds: at most `CHUNK * DEPTH` records are decoded ahead of the consumer.
const DEPTH: usize = 32;
/// Bytes read from the body at a time (the buffer grows only for a single record larger than this).
const READ: usize = 64 * 1024;

enum Item<T> {
    Records(Vec<T>),
    Failed(Error),
}

/// A listing being received, each record already turned into a `T` by the `each` it started with.
pub struct Listing<T> {
    /// The server's `Date` when it answered: the signpost for cursors.
    pub server_date: Option<DateTime<Utc>>,
    pub path: String,
    rx: mpsc::Receiver<Item<T>>,
    /// The rest of the chunk being handed out.
    chunk: std::vec::IntoIter<T>,
    received: u64,
    finished: bool,
    /// Set by the decoding thread once every element of a complete array has gone through
    /// `each`, while the consumer may still be records behind.
    decoded: Arc<AtomicBool>,
}

impl<T: Send + 'static> Listing<T> {
    /// Starts decoding `resp` on a blocking thread. `each` gets every element's JSON text (exact,
    /// without surrounding whitespace). A syntax error it finds is reported as
    /// [`Error::Malformed`] (its `path` and `records` are filled in here); any other error it
    /// returns ends the listing as is.
    pub(crate) fn start<F>(resp: Response, each: F) -> Result<Self, Error>
    where
        F: FnMut(&str) -> Result<T, Error> + Send + 'static,
    {
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
        let decoded = Arc::new(AtomicBool::new(false));
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
            let done = decoded.clone();
            tokio::task::spawn_blocking(move || decode(reader, tx, path2, each, &done));
        }
        Ok(Listing {
            server_date,
            path,
            rx,
            chunk: Vec::new().into_iter(),
            received: 0,
            finished: false,
            decoded,
        })
    }

    /// Whether the whole array has been received and every element prepared (the consumer may
    /// still have records to take). False for a body that failed.
    pub fn decoded(&self) -> bool {
        self.decoded.load(Ordering::Acquire)
    }

    /// The next record, `Ok(None)` at the end of a complete array, or the error that cut it short.
    pub async fn next(&mut self) -> Result<Option<T>, Error> {
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

/// How reading the body ended, short of a complete array.
enum Stop {
    /// The consumer went away (it failed or was cancelled).
    Gone,
    Failed(Error),
}

fn decode<R, T, F>(
    reader: R,
    tx: mpsc::Sender<Item<T>>,
    path: String,
    mut each: F,
    decoded: &AtomicBool,
) where
    R: Read,
    F: FnMut(&str) -> Result<T, Error>,
{
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut sent = 0u64;
    let result = split(reader, |element| {
        let text = std::str::from_utf8(element).map_err(|e| malformed(format!("{e}")))?;
        let item = each(text)?;
        chunk.push(item);
        sent += 1;
        if chunk.len() >= CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            tx.blocking_send(Item::Records(full))
                .map_err(|_| Stop::Gone)?;
        }
        Ok(())
    });
    if result.is_ok() {
        // Before the last chunk is sent: that send waits for room if the consumer lags.
        decoded.store(true, Ordering::Release);
    }
    // What was decoded before the end (or before an error) goes out first, in order.
    if !chunk.is_empty() && tx.blocking_send(Item::Records(chunk)).is_err() {
        return;
    }
    let err = match result {
        Ok(()) | Err(Stop::Gone) => return,
        Err(Stop::Failed(Error::Truncated { .. })) => Error::Truncated {
            path,
            records: sent,
        },
        Err(Stop::Failed(Error::Malformed { detail, .. })) => Error::Malformed {
            path,
            records: sent,
            detail,
        },
        Err(Stop::Failed(e)) => e,
    };
    let _ = tx.blocking_send(Item::Failed(err));
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

/// A syntax error; the decoder fills in where.
pub(crate) fn malformed(detail: String) -> Error {
    Error::Malformed {
        path: String::new(),
        records: 0,
        detail,
    }
}

fn truncated() -> Stop {
    Stop::Failed(Error::Truncated {
        path: String::new(),
        records: 0,
    })
}

/// The largest single array element held in memory (a record of PracticePanther's is kilobytes).
pub(crate) const MAX_ELEMENT: usize = 64 << 20;

/// Where the scanner is in the array.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum At {
    /// Before the opening `[`.
    Open,
    /// After `[`: an element or `]`.
    First,
    /// After `,`: an element.
    Next,
    /// Inside an element.
    Element,
    /// After the closing `]`: only whitespace may follow.
    Closed,
}

/// Reads a JSON array from `reader`, calling `element` with each element's bytes (trimmed).
/// Element contents are not checked here (the callback parses them); the array's own structure is.
fn split<R: Read>(reader: R, element: impl FnMut(&[u8]) -> Result<(), Stop>) -> Result<(), Stop> {
    split_capped(reader, MAX_ELEMENT, element)
}

/// [`split`] with the largest element held given (tests use a small one).
fn split_capped<R: Read>(
    mut reader: R,
    max_element: usize,
    mut element: impl FnMut(&[u8]) -> Result<(), Stop>,
) -> Result<(), Stop> {
    let mut buf: Vec<u8> = vec![0; READ];
    // buf[..len] holds bytes read and not yet consumed; `pos` is the scan position within it,
    // `start` where the current element began (valid while `at == Element`).
    let (mut len, mut pos, mut start) = (0usize, 0usize, 0usize);
    let mut at = At::Open;
    let (mut depth, mut in_string) = (0u32, false);
    loop {
        // Scan what is buffered.
        while pos < len {
            if at == At::Element {
                if in_string {
                    // The bulk of a record is string content: jump to its next quote or escape.
                    match memchr::memchr2(b'"', b'\\', &buf[pos..len]) {
                        None => pos = len,
                        Some(i) if buf[pos + i] == b'\\' => {
                            if pos + i + 1 >= len {
                                // The escaped byte is in the next read: resume at the backslash.
                                pos += i;
                                break;
                            }
                            pos += i + 2;
                        }
                        Some(i) => {
                            in_string = false;
                            pos += i + 1;
                        }
                    }
                    continue;
                }
                let b = buf[pos];
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => depth -= 1,
                    b',' | b']' if depth == 0 => {
                        let text = trim(&buf[start..pos]);
                        if text.is_empty() {
                            return Err(Stop::Failed(malformed("an empty array element".into())));
                        }
                        element(text)?;
                        at = if b == b',' { At::Next } else { At::Closed };
                    }
                    b'}' => {
                        return Err(Stop::Failed(malformed(
                            "an unmatched `}` in the array".into(),
                        )));
                    }
                    _ => {}
                }
                pos += 1;
                continue;
            }
            let b = buf[pos];
            if b.is_ascii_whitespace() {
                pos += 1;
                continue;
            }
            match at {
                At::Open if b == b'[' => at = At::First,
                At::Open => {
                    return Err(Stop::Failed(malformed(format!(
                        "expected a JSON array of records, found `{}`",
                        char::from(b).escape_default()
                    ))));
                }
                At::First if b == b']' => at = At::Closed,
                At::First | At::Next => {
                    at = At::Element;
                    start = pos;
                    depth = 0;
                    in_string = false;
                    // Re-scan this byte as the element's first.
                    continue;
                }
                At::Closed => {
                    return Err(Stop::Failed(malformed(
                        "trailing characters after the array".into(),
                    )));
                }
                At::Element => unreachable!("handled above"),
            }
            pos += 1;
        }
        // Keep only the element in progress (or, inside a string, from the pending backslash).
        let keep_from = if at == At::Element { start } else { pos };
        if keep_from > 0 {
            buf.copy_within(keep_from..len, 0);
            len -= keep_from;
            pos -= keep_from;
            start = 0;
        }
        if len == buf.len() {
            // One element larger than the buffer: grow for it, up to a bound (a broken or hostile
            // server must not grow memory without end).
            if buf.len() >= max_element {
                return Err(Stop::Failed(malformed(format!(
                    "a single record larger than {} KiB (refused: a broken server?)",
                    max_element >> 10
                ))));
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = match reader.read(&mut buf[len..]) {
            Ok(0) => {
                return if at == At::Closed {
                    Ok(())
                } else {
                    Err(truncated())
                };
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // The connection broke mid-body.
            Err(_) => return Err(truncated()),
        };
        len += n;
        if buf.len() > 4 * READ && len < READ && at != At::Element {
            // A big element has gone: give its memory back.
            buf.truncate(READ);
            buf.shrink_to_fit();
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |i| i + 1);
    &b[s..e]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader handing out `data` in pieces of `step` bytes (records straddle reads).
    struct Pieces<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Pieces<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(self.data.len()).min(out.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn elements(body: &str, step: usize) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        split(
            Pieces {
                data: body.as_bytes(),
                step,
            },
            |e| {
                out.push(String::from_utf8(e.to_vec()).unwrap());
                Ok(())
            },
        )
        .map_err(|e| match e {
            Stop::Failed(Error::Truncated { .. }) => "truncated".to_string(),
            Stop::Failed(Error::Malformed { detail, .. }) => detail,
            Stop::Failed(e) => e.to_string(),
            Stop::Gone => "gone".into(),
        })?;
        Ok(out)
    }

    #[test]
    fn an_element_beyond_the_bound_is_refused_not_held() {
        let big = format!("[{{\"id\":\"{}\"}}]", "x".repeat(3 * READ));
        let mut n = 0;
        let r = split_capped(
            Pieces {
                data: big.as_bytes(),
                step: 4096,
            },
            2 * READ,
            |_| {
                n += 1;
                Ok(())
            },
        );
        match r {
            Err(Stop::Failed(Error::Malformed { detail, .. })) => {
                assert!(detail.contains("larger than 128 KiB"), "{detail}")
            }
            _ => panic!("refused"),
        }
        assert_eq!(n, 0);
        // Within the bound it is read whole.
        assert_eq!(elements(&big, 4096).unwrap().len(), 1);
    }

    #[test]
    fn splits_elements_across_any_read_boundary() {
        let body = r#" [ {"a":"x,]}\"\\","b":[1,{"c":"]"}]} ,{"d":null}, 7 ,"s\"]",[1,[2]] ] "#;
        let want = vec![
            r#"{"a":"x,]}\"\\","b":[1,{"c":"]"}]}"#,
            r#"{"d":null}"#,
            "7",
            r#""s\"]""#,
            "[1,[2]]",
        ];
        for step in [1, 2, 3, 5, 7, 64, 100_000] {
            assert_eq!(elements(body, step).unwrap(), want, "read step {step}");
        }
        assert_eq!(elements("[]", 1).unwrap(), Vec::<String>::new());
        assert_eq!(elements(" [ \n ] \n", 2).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_record_larger_than_the_buffer_is_whole() {
        let big = "x".repeat(3 * READ + 17);
        let body = format!(r#"[{{"id":"1","note":"{big}"}},{{"id":"2"}}]"#);
        let got = elements(&body, 10_000).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), big.len() + r#"{"id":"1","note":""}"#.len());
        assert_eq!(got[1], r#"{"id":"2"}"#);
    }

    #[test]
    fn a_cut_or_broken_array_is_an_error() {
        for (body, want) in [
            (r#"[{"a":1},{"b":"#, "truncated"),
            (r#"[{"a":1}"#, "truncated"),
            (r#"[{"a":"\"#, "truncated"),
            ("", "truncated"),
            ("[", "truncated"),
            (
                r#"{"error":"nope"}"#,
                "expected a JSON array of records, found `{`",
            ),
            ("[1,,2]", "an empty array element"),
            ("[1,]", "an empty array element"),
            ("[1]x", "trailing characters after the array"),
            ("[1]]", "trailing characters after the array"),
            (r#"[{"a":1}}]"#, "an unmatched `}` in the array"),
        ] {
            for step in [1, 3, 1000] {
                assert_eq!(
                    elements(body, step).unwrap_err(),
                    want,
                    "{body:?} read {step} at a time"
                );
            }
        }
    }
}
