//! Singer's messages on stdout, one JSON document a line: SCHEMA, RECORD, STATE. Nothing else
//! is written there (logs go to stderr).

use std::io::Write;

use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::schema::{DELETED_AT, admitting};
use super::state::State;
use crate::resource::Resource;
use crate::store::TapRow;

pub struct Out<W: Write> {
    w: std::io::BufWriter<W>,
}

impl<W: Write> Out<W> {
    pub fn new(w: W) -> Self {
        Out {
            w: std::io::BufWriter::new(w),
        }
    }

    /// `odd`: the fields the mirror noted odd values in (`schema::admitting`).
    pub fn schema(
        &mut self,
        res: &Resource,
        odd: &std::collections::BTreeSet<String>,
    ) -> std::io::Result<()> {
        let mut m = json!({
            "type": "SCHEMA",
            "stream": res.name,
            "schema": admitting(res, odd),
            "key_properties": [res.key],
        });
        if res.has_updated_at {
            m["bookmark_properties"] = json!(["updated_at"]);
        }
        self.line(&m)
    }

    /// A record as the mirror holds it (its text as received, on one line); a deleted one
    /// carries `_sdc_deleted_at`. `time_extracted` is when the mirror wrote it.
    pub fn record(&mut self, res: &Resource, row: &TapRow) -> anyhow::Result<()> {
        let text = match row.deleted_at {
            Some(at) => {
                let mut v: Value =
                    serde_json::from_str(&row.data).map_err(|e| not_json(res, row, e))?;
                if let Some(m) = v.as_object_mut() {
                    m.insert(DELETED_AT.into(), json!(at.text()));
                }
                v.to_string()
            }
            // Line breaks in JSON text can only be whitespace between tokens (a string cannot
            // hold one raw), so making them spaces keeps the record exactly and on one line.
            None if row.data.contains(['\n', '\r']) => row.data.replace(['\n', '\r'], " "),
            None => row.data.clone(),
        };
        let record = RawValue::from_string(text).map_err(|e| not_json(res, row, e))?;
        // A struct, not `json!`: that would parse the record into a `Value` again.
        serde_json::to_writer(
            &mut self.w,
            &Record {
                kind: "RECORD",
                stream: res.name,
                record: &record,
                time_extracted: row.synced_at.text(),
            },
        )
        // As an I/O error, so a closed stdout stays recognisable (`main` ends quietly on it).
        .map_err(std::io::Error::from)?;
        self.w.write_all(b"\n")?;
        Ok(())
    }

    /// A STATE, flushed: a target may persist it as soon as it reads it.
    pub fn state(&mut self, state: &State) -> std::io::Result<()> {
        self.line(&json!({"type": "STATE", "value": state.to_json()}))?;
        self.w.flush()
    }

    /// Prints a whole document (the catalog), flushed.
    pub fn document(&mut self, v: &Value) -> std::io::Result<()> {
        self.line(v)?;
        self.w.flush()
    }

    fn line(&mut self, v: &Value) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.w, v)?;
        self.w.write_all(b"\n")
    }
}

#[derive(serde::Serialize)]
struct Record<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    stream: &'a str,
    record: &'a RawValue,
    time_extracted: String,
}

fn not_json(res: &Resource, row: &TapRow, e: serde_json::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "record {} of {} is not JSON in the mirror ({e}): run `ppsync sync --full --resource {}` to read it again",
        row.id,
        res.name,
        res.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::find;
    use crate::store::Ts;

    fn row(data: &str, deleted: bool) -> TapRow {
        let at = Ts(crate::time::parse_api_time("2026-03-01T12:00:00Z").unwrap());
        TapRow {
            id: "m-1".into(),
            synced_at: at,
            deleted_at: deleted.then_some(at),
            data: data.into(),
        }
    }

    fn lines(out: Out<Vec<u8>>) -> Vec<Value> {
        let bytes = out.w.into_inner().unwrap();
        let text = String::from_utf8(bytes).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn messages_are_one_json_a_line_in_singers_shapes() {
        let res = find("matters").unwrap();
        let mut out = Out::new(Vec::new());
        out.schema(res, &Default::default()).unwrap();
        // Pretty-printed as received, with a line break inside a string's escape.
        out.record(
            res,
            &row("{\n  \"id\": \"m-1\",\r\n  \"n\": \"a\\nb\"}", false),
        )
        .unwrap();
        out.record(res, &row("{\"id\": \"m-1\"}", true)).unwrap();
        assert!(out.record(res, &row("{\"id\": ", false)).is_err());
        out.state(&State::default()).unwrap();
        let v = lines(out);
        assert_eq!(v.len(), 4);
        assert_eq!(v[0]["type"], "SCHEMA");
        assert_eq!(v[0]["stream"], "matters");
        assert_eq!(v[0]["key_properties"], json!(["id"]));
        assert_eq!(v[0]["bookmark_properties"], json!(["updated_at"]));
        assert_eq!(v[1]["type"], "RECORD");
        assert_eq!(v[1]["record"]["n"], "a\nb");
        assert_eq!(v[1]["time_extracted"], "2026-03-01T12:00:00.000000Z");
        assert_eq!(v[2]["record"][DELETED_AT], "2026-03-01T12:00:00.000000Z");
        assert_eq!(
            v[3],
            json!({"type": "STATE", "value": {"bookmarks": {}, "currently_syncing": null}})
        );
    }
}
