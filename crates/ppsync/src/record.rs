//! A received record made ready for the store: its key, timestamps, content hash, raw JSON exactly
//! as received, and the typed column values the resource table asks for. A field of an unexpected
//! type is an error naming the resource, the record and the field; it never panics.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::api::Error;
use crate::resource::{ColumnType, Resource};
use crate::time::parse_api_time;

/// A typed column value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    Time(DateTime<Utc>),
}

/// One record ready to upsert.
#[derive(Debug)]
pub struct Row {
    pub id: String,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub hash: i64,
    /// The form `updated_at` was sent in ([`crate::time::stamp_form`]), when it was.
    pub stamp_form: Option<u8>,
    /// The record's JSON exactly as received (checked to be a JSON object).
    pub data: Box<str>,
    pub columns: Vec<Value>,
}

/// Reads a record's key, timestamps and typed columns from its JSON text. Invalid JSON is
/// [`Error::Malformed`] (a transport problem: the page is retried); valid JSON of the wrong shape is
/// [`Error::BadRecord`].
pub fn prepare(res: &Resource, raw: &str) -> Result<Row, Error> {
    Reader::new(res).prepare(raw)
}

/// What [`prepare`] needs to know about a resource's records, worked out once per listing.
pub struct Reader<'r> {
    res: &'r Resource,
    /// The top-level fields read: the key, `created_at`, `updated_at`, then the first segment of
    /// each column's pointer (each name once).
    names: Vec<&'static str>,
    /// Per column: which of `names` it starts at, and the segments below it.
    columns: Vec<(usize, Vec<&'static str>)>,
}

const KEY: usize = 0;
const CREATED_AT: usize = 1;
const UPDATED_AT: usize = 2;

impl<'r> Reader<'r> {
    pub fn new(res: &'r Resource) -> Self {
        let mut names = vec![res.key, "created_at", "updated_at"];
        let columns = res
            .columns
            .iter()
            .map(|c| {
                let mut parts = segments(c.pointer);
                let first = parts.next().unwrap_or("");
                let at = match names.iter().position(|n| *n == first) {
                    Some(i) => i,
                    None => {
                        names.push(first);
                        names.len() - 1
                    }
                };
                (at, parts.collect())
            })
            .collect();
        Reader {
            res,
            names,
            columns,
        }
    }

    pub fn prepare(&self, raw: &str) -> Result<Row, Error> {
        let res = self.res;
        let fields = match self.needed_fields(raw) {
            Some(f) => f,
            // Not an object, or not JSON: a full parse says which.
            None => match serde_json::from_str(raw).map_err(|e| malformed(e.to_string()))? {
                Json::Object(mut m) => Fields(self.names.iter().map(|n| m.remove(*n)).collect()),
                other => {
                    return Err(bad(
                        res,
                        "?",
                        format!("expected an object, got {}", kind(&other)),
                    ));
                }
            },
        };
        let id = match fields.get(KEY) {
            Some(Json::String(s)) if !s.is_empty() => s.clone(),
            Some(other) => {
                return Err(bad(
                    res,
                    "?",
                    format!("`{}` is {}, expected a string", res.key, kind(other)),
                ));
            }
            None => return Err(bad(res, "?", format!("the record has no `{}`", res.key))),
        };
        let created_at = time_field(res, &id, fields.get(CREATED_AT), "created_at")?;
        let updated_at = time_field(res, &id, fields.get(UPDATED_AT), "updated_at")?;
        let stamp_form = match fields.get(UPDATED_AT) {
            Some(Json::String(s)) => Some(crate::time::stamp_form(s) as u8),
            _ => None,
        };
        let mut columns = Vec::with_capacity(res.columns.len());
        for (c, (at, below)) in res.columns.iter().zip(&self.columns) {
            let field = Field(c.pointer);
            let found = walk(fields.get(*at), below)
                .map_err(|detail| bad(res, &id, format!("`{field}`: {detail}")))?;
            let value = match (found, c.ty) {
                (None | Some(Json::Null), _) => Value::Null,
                (Some(Json::String(s)), ColumnType::Text) => Value::Text(s.clone()),
                (Some(Json::String(s)), ColumnType::Time) => match parse_api_time(s) {
                    Some(t) => Value::Time(t),
                    None => {
                        return Err(bad(
                            res,
                            &id,
                            format!("`{field}` is not a timestamp: {s:?}"),
                        ));
                    }
                },
                (Some(Json::Number(n)), ColumnType::Int) => match n.as_i64() {
                    Some(i) => Value::Int(i),
                    None => {
                        return Err(bad(res, &id, format!("`{field}` is not an integer: {n}")));
                    }
                },
                (Some(Json::Number(n)), ColumnType::Real) => {
                    Value::Real(n.as_f64().unwrap_or(f64::NAN))
                }
                (Some(Json::Bool(b)), ColumnType::Bool) => Value::Bool(*b),
                (Some(other), ty) => {
                    return Err(bad(
                        res,
                        &id,
                        format!("`{field}` is {}, expected {}", kind(other), expected(ty)),
                    ));
                }
            };
            columns.push(value);
        }
        let hash = xxhash_rust::xxh3::xxh3_64(raw.as_bytes()) as i64;
        Ok(Row {
            id,
            created_at,
            updated_at,
            hash,
            stamp_form,
            data: raw.into(),
            columns,
        })
    }

    /// The fields `prepare` reads, in one parse of the record that checks all of it but
    /// materializes only those values. `None` when the text is not a JSON object; the caller then
    /// parses it whole (and reports whatever is wrong with it).
    fn needed_fields(&self, raw: &str) -> Option<Fields> {
        use serde::de::DeserializeSeed as _;
        let mut de = serde_json::Deserializer::from_str(raw);
        let fields = Needed(self).deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(fields)
    }
}

/// The values of a [`Reader`]'s `names`, where present (the last of duplicate keys wins, as in a
/// full parse).
struct Fields(Vec<Option<Json>>);

impl Fields {
    fn get(&self, at: usize) -> Option<&Json> {
        self.0.get(at).and_then(Option::as_ref)
    }
}

/// The segments of a column's pointer (`/account_ref/id` → `account_ref`, `id`).
fn segments(pointer: &'static str) -> impl Iterator<Item = &'static str> {
    pointer.trim_start_matches('/').split('/')
}

/// Deserializes an object keeping only the fields a [`Reader`] reads; the others are skipped,
/// though still checked.
struct Needed<'a, 'r>(&'a Reader<'r>);

impl<'de> serde::de::DeserializeSeed<'de> for Needed<'_, '_> {
    type Value = Fields;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Needed<'_, '_> {
    type Value = Fields;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<Option<Json>> = vec![None; self.0.names.len()];
        while let Some(key) = map.next_key_seed(Key(self.0))? {
            match key {
                Some(at) => out[at] = Some(map.next_value::<Json>()?),
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Fields(out))
    }
}

/// A key: `Some(index)` for one of the names a [`Reader`] reads, `None` for the rest.
struct Key<'a, 'r>(&'a Reader<'r>);

impl<'de> serde::de::DeserializeSeed<'de> for Key<'_, '_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key<'_, '_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.names.iter().position(|n| *n == name))
    }
}

fn malformed(detail: String) -> Error {
    crate::api::stream_malformed(detail)
}

/// A column's pointer shown as a dotted field name (`/account_ref/id` → `account_ref.id`).
struct Field(&'static str);

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, part) in segments(self.0).enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(part)?;
        }
        Ok(())
    }
}

fn time_field(
    res: &Resource,
    id: &str,
    value: Option<&Json>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, Error> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => parse_api_time(s)
            .map(Some)
            .ok_or_else(|| bad(res, id, format!("`{name}` is not a timestamp: {s:?}"))),
        Some(other) => Err(bad(
            res,
            id,
            format!("`{name}` is {}, expected a timestamp string", kind(other)),
        )),
    }
}

/// Follows the segments below a column's first one; an intermediate that is neither an object
/// nor null is a type error.
fn walk<'a>(top: Option<&'a Json>, below: &[&str]) -> Result<Option<&'a Json>, String> {
    let Some(mut cur) = top else {
        return Ok(None);
    };
    for part in below {
        match cur {
            Json::Object(m) => match m.get(*part) {
                Some(next) => cur = next,
                None => return Ok(None),
            },
            Json::Null => return Ok(None),
            other => return Err(format!("expected an object, got {}", kind(other))),
        }
    }
    Ok(Some(cur))
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn expected(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text => "a string",
        ColumnType::Time => "a timestamp string",
        ColumnType::Int => "an integer",
        ColumnType::Real => "a number",
        ColumnType::Bool => "a boolean",
    }
}

fn bad(res: &Resource, id: &str, detail: String) -> Error {
    Error::BadRecord {
        resource: res.name.to_string(),
        record: id.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::find;

    fn raw(s: &str) -> &str {
        s
    }

    #[test]
    fn extracts_typed_columns() {
        let tasks = find("tasks").unwrap();
        let row = prepare(
            tasks,
            raw(r#"{"id":"t1","account_ref":{"id":"a1","display_name":"A"},"matter_ref":null,"subject":"S",
                 "status":"NotCompleted","priority":"Low","due_date":"2026-12-01T08:00:00",
                 "created_at":"2026-11-01T10:00:00.5","updated_at":"2026-11-02T10:00:00.25","extra":[1,2]}"#),
        )
        .unwrap();
        assert_eq!(row.id, "t1");
        assert_eq!(row.columns[0], Value::Text("a1".into()));
        assert_eq!(row.columns[1], Value::Null);
        assert_eq!(
            row.columns[5],
            Value::Time(parse_api_time("2026-12-01T08:00:00").unwrap())
        );
        assert_eq!(row.updated_at, parse_api_time("2026-11-02T10:00:00.25"));
        assert!(
            row.data.contains("extra"),
            "unknown fields are kept in data"
        );
    }

    #[test]
    fn unexpected_types_are_named() {
        let tasks = find("tasks").unwrap();
        let cases = [
            (r#"{"id":"t1","updated_at":12}"#, "`updated_at` is a number"),
            (
                r#"{"id":"t1","due_date":"soon"}"#,
                "`due_date` is not a timestamp",
            ),
            (
                r#"{"id":"t1","account_ref":"a1"}"#,
                "`account_ref.id`: expected an object, got a string",
            ),
            (r#"{"id":7}"#, "`id` is a number"),
            (r#"[1]"#, "expected an object"),
        ];
        for (input, want) in cases {
            let err = prepare(tasks, raw(input)).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
            assert!(err.starts_with("tasks: record"), "{err}");
        }
    }

    #[test]
    fn broken_json_is_malformed_not_a_bad_record() {
        // Broken JSON is a transport fault (the page is retried); valid JSON of the wrong shape
        // is the record's fault.
        let tasks = find("tasks").unwrap();
        for input in [
            r#"{"id":"t1","subject":}"#,
            r#"{"id":"t1"} x"#,
            r#"{"id":"t1""#,
        ] {
            match prepare(tasks, raw(input)) {
                Err(Error::Malformed { .. }) => {}
                other => panic!("{input}: {other:?}"),
            }
        }
        match prepare(tasks, raw(r#""just a string""#)) {
            Err(Error::BadRecord { detail, .. }) => {
                assert!(detail.contains("a string"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn escaped_keys_and_duplicates_read_like_a_full_parse() {
        let tasks = find("tasks").unwrap();
        // An escaped key defeats the borrowed fast path; the full parse reads the same fields.
        let row = prepare(
            tasks,
            raw(r#"{"id":"t1","sub\u006aect":"S","status":"Open","status":"Done"}"#),
        )
        .unwrap();
        assert_eq!(row.columns[2], Value::Text("S".into()));
        assert_eq!(
            row.columns[3],
            Value::Text("Done".into()),
            "the last duplicate wins"
        );
        let row = prepare(tasks, raw(r#"{"id":"t1","status":"Open","status":"Done"}"#)).unwrap();
        assert_eq!(
            row.columns[3],
            Value::Text("Done".into()),
            "the last duplicate wins"
        );
    }

    #[test]
    fn tags_are_keyed_by_name() {
        let tags = find("tags_matter").unwrap();
        let row = prepare(
            tags,
            raw(r#"{"name":"Urgent","created_at":"2026-01-01T00:00:00"}"#),
        )
        .unwrap();
        assert_eq!(row.id, "Urgent");
    }
}
