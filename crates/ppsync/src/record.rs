//! A received record made ready for the store: its key, timestamps, content hash, raw JSON exactly
//! as received, and the typed column values the resource table asks for.
//!
//! A record is never refused for its content: a typed column (or timestamp) of an unexpected
//! type, an impossible date, a number out of range, a lone UTF-16 surrogate, nesting deeper than
//! the parser goes — each makes that column NULL and is noted as a [`RecordIssue`]; the record
//! itself is stored byte-exact. Only a record without its key cannot be stored (it is noted,
//! keyed by its content hash), and only text that is not JSON at all fails its page
//! ([`Error::Malformed`], a transport fault that is retried). Nothing here panics.

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

/// Something in a record that could not be read into its typed column.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordIssue {
    /// The field (dotted: `account_ref.id`), or `*` for the record as a whole.
    pub field: String,
    pub problem: String,
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
    /// The record's JSON exactly as received (checked to be JSON).
    pub data: Box<str>,
    /// The record's JSON with what PostgreSQL's `jsonb` cannot hold (`\u0000`, lone surrogates)
    /// replaced by U+FFFD, when it holds any (None: `data` is fine as it is).
    pub jsonb: Option<Box<str>>,
    pub columns: Vec<Value>,
    /// What could not be read (the record is stored all the same).
    pub issues: Vec<RecordIssue>,
    /// The record has no usable key: it cannot be stored, only noted (`id` is `?` and its hash).
    pub keyless: bool,
    /// The record could not be parsed whole (nesting deeper than the parser goes, a number out
    /// of range): PostgreSQL keeps its text beside the jsonb, so export gives it back as received.
    pub keep_raw: bool,
}

/// Reads a record's key, timestamps and typed columns from its JSON text. Only text that is not
/// JSON is an error ([`Error::Malformed`]).
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
        let mut issues = Vec::new();
        let jsonb = jsonb_safe(raw);
        let (fields, keep_raw) = match self.needed_fields(raw) {
            Some(f) => (f, too_deep(raw)),
            None => (self.tolerant_fields(raw, &mut issues)?, true),
        };
        let hash = xxhash_rust::xxh3::xxh3_64(raw.as_bytes()) as i64;
        let (id, keyless) = match fields.get(KEY) {
            Some(Json::String(s)) if !s.is_empty() => (s.clone(), false),
            other => {
                let what = match other {
                    None => format!("the record has no `{}`", res.key),
                    Some(v) => format!("`{}` is {}, expected a string", res.key, kind(v)),
                };
                issues.push(RecordIssue {
                    field: res.key.to_string(),
                    problem: format!("{what}: the record cannot be stored"),
                });
                (format!("?{:016x}", hash as u64), true)
            }
        };
        let created_at = time_field(fields.get(CREATED_AT), "created_at", &mut issues);
        let updated_at = time_field(fields.get(UPDATED_AT), "updated_at", &mut issues);
        let stamp_form = match fields.get(UPDATED_AT) {
            Some(Json::String(s)) => Some(crate::time::stamp_form(s) as u8),
            _ => None,
        };
        let mut columns = Vec::with_capacity(res.columns.len());
        for (c, (at, below)) in res.columns.iter().zip(&self.columns) {
            let field = Field(c.pointer).to_string();
            let value = match walk(fields.get(*at), below) {
                Err(detail) => {
                    issues.push(RecordIssue {
                        field,
                        problem: detail,
                    });
                    Value::Null
                }
                Ok(found) => match typed(found, c.ty) {
                    Ok(v) => v,
                    Err(problem) => {
                        issues.push(RecordIssue { field, problem });
                        Value::Null
                    }
                },
            };
            columns.push(value);
        }
        Ok(Row {
            id,
            created_at,
            updated_at,
            hash,
            stamp_form,
            data: raw.into(),
            jsonb,
            columns,
            issues,
            keyless,
            keep_raw,
        })
    }

    /// The fields `prepare` reads, in one parse of the record that checks all of it but
    /// materializes only those values. `None` when that parse fails: the caller reads the fields
    /// one by one ([`Reader::tolerant_fields`]).
    fn needed_fields(&self, raw: &str) -> Option<Fields> {
        use serde::de::DeserializeSeed as _;
        let mut de = serde_json::Deserializer::from_str(raw);
        let fields = Needed(self).deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(fields)
    }

    /// When the one-pass parse fails: the record's top-level fields found by a scanner of its
    /// own, each needed one parsed alone, one that does not parse (a number out of range, a
    /// lone surrogate even after repair, nesting too deep) left out and noted. Text that is not
    /// a JSON object at all is `Malformed`, or a keyless record when it is valid JSON.
    fn tolerant_fields(&self, raw: &str, issues: &mut Vec<RecordIssue>) -> Result<Fields, Error> {
        let Some(top) = top_level_fields(raw) else {
            // Not an object: valid JSON of another shape is the record's problem, not JSON at
            // all is the body's.
            return match serde_json::from_str::<serde::de::IgnoredAny>(raw) {
                Ok(_) => {
                    issues.push(RecordIssue {
                        field: "*".into(),
                        problem: "the record is not a JSON object".into(),
                    });
                    Ok(Fields(vec![None; self.names.len()]))
                }
                Err(e) => Err(malformed(e.to_string())),
            };
        };
        let mut out: Vec<Option<Json>> = vec![None; self.names.len()];
        for (key, value) in top {
            let Some(at) = self.names.iter().position(|n| *n == key) else {
                continue;
            };
            match serde_json::from_str::<Json>(value) {
                Ok(v) => out[at] = Some(v),
                Err(first) => {
                    let repaired = jsonb_safe(value);
                    match repaired.as_deref().map(serde_json::from_str::<Json>) {
                        Some(Ok(v)) => {
                            issues.push(RecordIssue {
                                field: key.clone(),
                                problem: "holds a lone UTF-16 surrogate (read as U+FFFD)".into(),
                            });
                            out[at] = Some(v);
                        }
                        _ => issues.push(RecordIssue {
                            field: key.clone(),
                            problem: format!("unreadable: {first}"),
                        }),
                    }
                }
            }
        }
        Ok(Fields(out))
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
    value: Option<&Json>,
    name: &str,
    issues: &mut Vec<RecordIssue>,
) -> Option<DateTime<Utc>> {
    let problem = match value {
        None | Some(Json::Null) => return None,
        Some(Json::String(s)) => match parse_api_time(s) {
            Some(t) => return Some(t),
            None => format!("not a timestamp: {:?}", clip(s)),
        },
        Some(other) => format!("{}, expected a timestamp string", kind(other)),
    };
    issues.push(RecordIssue {
        field: name.to_string(),
        problem,
    });
    None
}

/// A found value as its column's type; the problem when it is not one.
fn typed(found: Option<&Json>, ty: ColumnType) -> Result<Value, String> {
    Ok(match (found, ty) {
        (None | Some(Json::Null), _) => Value::Null,
        // A NUL in a typed text column (PostgreSQL's text cannot hold one) reads as U+FFFD on
        // both backends; `data` keeps the record as received.
        (Some(Json::String(s)), ColumnType::Text) if s.contains('\0') => {
            Value::Text(s.replace('\0', "\u{fffd}"))
        }
        (Some(Json::String(s)), ColumnType::Text) => Value::Text(s.clone()),
        (Some(Json::String(s)), ColumnType::Time) => match parse_api_time(s) {
            Some(t) => Value::Time(t),
            None => return Err(format!("not a timestamp: {:?}", clip(s))),
        },
        (Some(Json::Number(n)), ColumnType::Int) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => return Err(format!("not an integer in range: {n}")),
        },
        (Some(Json::Number(n)), ColumnType::Real) => match n.as_f64() {
            Some(f) if f.is_finite() => Value::Real(f),
            _ => return Err(format!("not a finite number: {n}")),
        },
        (Some(Json::Bool(b)), ColumnType::Bool) => Value::Bool(*b),
        (Some(other), ty) => {
            return Err(format!("{}, expected {}", kind(other), expected(ty)));
        }
    })
}

/// The first 80 characters of a string, for a message.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The record's text with what PostgreSQL's `jsonb` refuses — `\u0000`, and UTF-16 surrogate
/// escapes that are not a pair — replaced by `\ufffd` (the same length), or None when it holds
/// none. A cheap scan: most records hold no escape at all.
pub fn jsonb_safe(raw: &str) -> Option<Box<str>> {
    let b = raw.as_bytes();
    // No backslash, no escape.
    memchr::memchr(b'\\', b)?;
    let hex = |at: usize| -> Option<u16> {
        let s = raw.get(at..at + 4)?;
        u16::from_str_radix(s, 16).ok()
    };
    let mut bad: Vec<usize> = Vec::new();
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'\\', &b[i..]) {
        let at = i + off;
        if b.get(at + 1) != Some(&b'u') {
            i = at + 2;
            continue;
        }
        let Some(u) = hex(at + 2) else {
            i = at + 2;
            continue;
        };
        match u {
            0 => bad.push(at),
            0xD800..=0xDBFF => {
                let low = (b.get(at + 6) == Some(&b'\\') && b.get(at + 7) == Some(&b'u'))
                    .then(|| hex(at + 8))
                    .flatten();
                if low.is_some_and(|l| (0xDC00..=0xDFFF).contains(&l)) {
                    i = at + 12;
                    continue;
                }
                bad.push(at);
            }
            0xDC00..=0xDFFF => bad.push(at),
            _ => {}
        }
        i = at + 6;
    }
    if bad.is_empty() {
        return None;
    }
    let mut out = raw.to_string();
    for at in bad {
        out.replace_range(at..at + 6, "\\ufffd");
    }
    Some(out.into())
}

/// Whether the record nests deeper than serde_json parses (128 levels; it skips unread fields
/// without counting): such a record does not come back from PostgreSQL's jsonb parseable by the
/// readers of the export. Counting brackets first keeps this cheap: fewer than 128 cannot nest
/// that deep.
fn too_deep(raw: &str) -> bool {
    const LIMIT: usize = 128;
    let b = raw.as_bytes();
    if memchr::memchr2_iter(b'[', b'{', b).count() < LIMIT {
        return false;
    }
    let (mut depth, mut i) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'"' => match skip_string(b, i) {
                Some(j) => {
                    i = j;
                    continue;
                }
                None => return false,
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > LIMIT {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// The top-level fields of a JSON object, as (decoded key, raw value text), found without
/// parsing the values (so a value serde_json refuses does not hide the others). None when the
/// text is not an object. Values are checked only as far as finding where they end.
fn top_level_fields(raw: &str) -> Option<Vec<(String, &str)>> {
    let b = raw.as_bytes();
    let ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut i = ws(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b'}') {
        return (ws(i + 1) == b.len()).then_some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let kend = skip_string(b, i)?;
        let key_text = &raw[i..kend];
        let key = if key_text.contains('\\') {
            serde_json::from_str::<String>(key_text).ok()?
        } else {
            key_text[1..key_text.len() - 1].to_string()
        };
        i = ws(kend);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(i + 1);
        let vend = skip_value(b, i)?;
        out.push((key, &raw[i..vend]));
        i = ws(vend);
        match b.get(i) {
            Some(b',') => i = ws(i + 1),
            Some(b'}') => return (ws(i + 1) == b.len()).then_some(out),
            _ => return None,
        }
    }
}

/// The index after the string starting at `i` (a `"`).
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index after the JSON value starting at `i` (strings and brackets matched, any depth).
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']') && !b[j].is_ascii_whitespace()
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
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
    fn an_odd_field_is_null_and_noted_the_record_kept() {
        let tasks = find("tasks").unwrap();
        let cases = [
            (r#"{"id":"t1","updated_at":12}"#, "updated_at", "a number"),
            (
                r#"{"id":"t1","due_date":"soon"}"#,
                "due_date",
                "not a timestamp",
            ),
            (
                r#"{"id":"t1","due_date":"2026-02-30T00:00:00"}"#,
                "due_date",
                "not a timestamp",
            ),
            (
                r#"{"id":"t1","account_ref":"a1"}"#,
                "account_ref.id",
                "expected an object",
            ),
            (
                r#"{"id":"t1","subject":17}"#,
                "subject",
                "a number, expected a string",
            ),
            (
                r#"{"id":"t1","subject":"A \ud800 B"}"#,
                "subject",
                "lone UTF-16 surrogate",
            ),
            (
                r#"{"id":"t1","priority":"x","subject":1e999}"#,
                "subject",
                "unreadable",
            ),
        ];
        for (input, field, want) in cases {
            let row = prepare(tasks, raw(input)).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(row.id, "t1", "{input}");
            assert!(!row.keyless);
            assert_eq!(&*row.data, input, "kept byte-exact");
            let issue = row
                .issues
                .iter()
                .find(|i| i.field == field)
                .unwrap_or_else(|| panic!("{input}: {:?}", row.issues));
            assert!(issue.problem.contains(want), "{input}: {issue:?}");
        }
        // The surrogate's subject is read with U+FFFD; the other fields still are.
        let row = prepare(
            tasks,
            raw(r#"{"id":"t1","subject":"A \ud800 B","status":"Open"}"#),
        )
        .unwrap();
        assert_eq!(row.columns[2], Value::Text("A \u{fffd} B".into()));
        assert_eq!(row.columns[3], Value::Text("Open".into()));
        // Nesting deeper than serde_json goes, in a field no column reads: the record is kept.
        let deep = format!(
            r#"{{"id":"t1","status":"Open","notes":{}1{}}}"#,
            "[".repeat(300),
            "]".repeat(300)
        );
        let row = prepare(tasks, &deep).unwrap();
        assert_eq!(row.id, "t1");
        assert_eq!(row.columns[3], Value::Text("Open".into()));
        // Without a key it cannot be stored: keyless, noted.
        for input in [
            r#"{"id":7}"#,
            r#"{"subject":"x"}"#,
            r#"[1]"#,
            r#""just a string""#,
        ] {
            let row = prepare(tasks, raw(input)).unwrap();
            assert!(row.keyless, "{input}");
            assert!(row.id.starts_with('?'));
            assert!(!row.issues.is_empty());
        }
    }

    #[test]
    fn what_jsonb_cannot_hold_is_replaced_in_a_copy() {
        assert_eq!(jsonb_safe(r#"{"a":"plain"}"#), None);
        assert_eq!(jsonb_safe(r#"{"a":"tab\t \u00e9"}"#), None);
        assert_eq!(jsonb_safe(r#"{"a":"pair \ud83d\ude00"}"#), None);
        assert_eq!(
            jsonb_safe(r#"{"a":"nul \u0000 x"}"#).as_deref(),
            Some(r#"{"a":"nul \ufffd x"}"#)
        );
        assert_eq!(
            jsonb_safe(r#"{"a":"lone \ud800 x \udc00"}"#).as_deref(),
            Some(r#"{"a":"lone \ufffd x \ufffd"}"#)
        );
        // An escaped backslash followed by u0000 is text, not an escape.
        assert_eq!(jsonb_safe(r#"{"a":"\\u0000"}"#), None);
    }

    #[test]
    fn broken_json_is_malformed_not_a_bad_record() {
        // Broken JSON is a transport fault (the page is retried); valid JSON of the wrong shape
        // is the record's.
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
        let row = prepare(tasks, raw(r#""just a string""#)).unwrap();
        assert!(row.keyless && row.issues[0].problem.contains("not a JSON object"));
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
