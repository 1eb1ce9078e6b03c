//! A received record made ready for the store: its key, timestamps, content hash, raw JSON exactly
//! as received, and the typed column values the resource table asks for. A field of an unexpected
//! type is an error naming the resource, the record and the field; it never panics.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use serde_json::value::RawValue;

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
    pub data: Box<RawValue>,
    pub columns: Vec<Value>,
}

pub fn prepare(res: &Resource, raw: Box<RawValue>) -> Result<Row, Error> {
    let v = match needed_fields(res, raw.get()) {
        Some(v) => v,
        None => serde_json::from_str(raw.get())
            .map_err(|e| bad(res, "?", format!("unreadable record: {e}")))?,
    };
    if !v.is_object() {
        return Err(bad(
            res,
            "?",
            format!("expected an object, got {}", kind(&v)),
        ));
    }
    let id = match v.get(res.key) {
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
    let created_at = time_field(res, &id, &v, "created_at")?;
    let updated_at = time_field(res, &id, &v, "updated_at")?;
    let mut columns = Vec::with_capacity(res.columns.len());
    for c in res.columns {
        let field = Field(c.pointer);
        let found =
            walk(&v, c.pointer).map_err(|detail| bad(res, &id, format!("`{field}`: {detail}")))?;
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
                None => return Err(bad(res, &id, format!("`{field}` is not an integer: {n}"))),
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
    let hash = xxhash_rust::xxh3::xxh3_64(raw.get().as_bytes()) as i64;
    Ok(Row {
        id,
        created_at,
        updated_at,
        hash,
        data: raw,
        columns,
    })
}

/// The top-level fields `prepare` reads (the key, the timestamps, each column's first segment) as
/// a JSON object, parsed without building the whole record: only their values are materialized.
/// `None` when the record is not a plain object of unescaped keys; the caller then parses it whole
/// (and reports whatever is wrong with it).
fn needed_fields(res: &Resource, raw: &str) -> Option<Json> {
    let all: std::collections::HashMap<&str, &RawValue> = serde_json::from_str(raw).ok()?;
    let mut out = serde_json::Map::with_capacity(res.columns.len() + 3);
    let firsts = res.columns.iter().map(|c| {
        c.pointer
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
    });
    for name in [res.key, "created_at", "updated_at"]
        .into_iter()
        .chain(firsts)
    {
        if out.contains_key(name) {
            continue;
        }
        if let Some(value) = all.get(name) {
            out.insert(name.to_string(), serde_json::from_str(value.get()).ok()?);
        }
    }
    Some(Json::Object(out))
}

/// A column's pointer shown as a dotted field name (`/account_ref/id` → `account_ref.id`).
struct Field(&'static str);

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, part) in self.0.trim_start_matches('/').split('/').enumerate() {
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
    v: &Json,
    name: &str,
) -> Result<Option<DateTime<Utc>>, Error> {
    match v.get(name) {
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

/// Follows a JSON pointer; an intermediate that is neither an object nor null is a type error.
fn walk<'a>(v: &'a Json, pointer: &str) -> Result<Option<&'a Json>, String> {
    let mut cur = v;
    for part in pointer.trim_start_matches('/').split('/') {
        match cur {
            Json::Object(m) => match m.get(part) {
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

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
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
            row.data.get().contains("extra"),
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
