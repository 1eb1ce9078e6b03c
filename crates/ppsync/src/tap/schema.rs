//! A resource's JSON schema (Singer's SCHEMA message and catalog), derived from the resource
//! table: the key, the timestamps and each typed column at its JSON pointer. Every other field of
//! the record as received is admitted (`additionalProperties`), and every listed one may be null:
//! the mirror keeps records as the API sent them, so the schema must accept what it accepts.

use serde_json::{Value, json};

use crate::resource::{ColumnType, Resource};

/// The property a deleted record carries (Singer's convention), with when the mirror saw it go.
pub const DELETED_AT: &str = "_sdc_deleted_at";

/// The JSON schema of a resource's records.
pub fn schema(res: &Resource) -> Value {
    let mut root = object();
    put(&mut root, &[res.key], json!({"type": ["string"]}));
    if res.has_updated_at {
        for field in ["created_at", "updated_at"] {
            put(&mut root, &[field], time());
        }
    }
    for c in res.columns {
        let path: Vec<&str> = c.pointer.trim_start_matches('/').split('/').collect();
        put(&mut root, &path, leaf(c.ty));
    }
    put(&mut root, &[DELETED_AT], time());
    // The root is an object; null is only for the nested ones.
    root["type"] = json!("object");
    root
}

/// The schema as a run emits it: a property some stored record holds an odd value in (the
/// mirror noted it in `record_issues`, and kept the record as received) admits any value, so a
/// validating target takes every record the mirror holds. `*` (a record odd as a whole) opens
/// every property but the key.
pub fn admitting(res: &Resource, odd: &std::collections::BTreeSet<String>) -> Value {
    let mut s = schema(res);
    if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, p) in props.iter_mut() {
            let open = odd.contains("*")
                || odd
                    .iter()
                    .any(|f| f.split('.').next() == Some(name.as_str()));
            if open && name != res.key && name != DELETED_AT {
                *p = json!({});
            }
        }
    }
    s
}

fn object() -> Value {
    json!({"type": ["null", "object"], "properties": {}, "additionalProperties": true})
}

fn time() -> Value {
    json!({"type": ["null", "string"], "format": "date-time"})
}

fn leaf(ty: ColumnType) -> Value {
    match ty {
        ColumnType::Text => json!({"type": ["null", "string"]}),
        ColumnType::Time => time(),
        ColumnType::Int => json!({"type": ["null", "integer"]}),
        ColumnType::Real => json!({"type": ["null", "number"]}),
        ColumnType::Bool => json!({"type": ["null", "boolean"]}),
    }
}

/// Sets the property at `path` under `node` (an `object()`), making the objects on the way (a
/// pointer such as `/account_ref/id` names a field of a nested object, which other columns share).
fn put(node: &mut Value, path: &[&str], value: Value) {
    let (Some((first, rest)), Some(props)) = (
        path.split_first(),
        node.get_mut("properties").and_then(Value::as_object_mut),
    ) else {
        return;
    };
    if rest.is_empty() {
        props.insert((*first).to_string(), value);
    } else {
        put(props.entry(*first).or_insert_with(object), rest, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{RESOURCES, find};

    #[test]
    fn schemas_follow_the_resource_table() {
        let m = schema(find("matters").unwrap());
        assert_eq!(m["type"], "object");
        assert_eq!(m["additionalProperties"], true);
        let p = &m["properties"];
        assert_eq!(p["id"]["type"], json!(["string"]));
        assert_eq!(p["updated_at"]["format"], "date-time");
        assert_eq!(p["number"]["type"], json!(["null", "integer"]));
        assert_eq!(p["statute_of_limitation_date"]["format"], "date-time");
        // `/account_ref/id`: a nested object that may be null and holds more than the id.
        let acc = &p["account_ref"];
        assert_eq!(acc["type"], json!(["null", "object"]));
        assert_eq!(acc["additionalProperties"], true);
        assert_eq!(acc["properties"]["id"]["type"], json!(["null", "string"]));
        assert_eq!(p[DELETED_AT]["type"], json!(["null", "string"]));

        // Tags are keyed by name and carry no timestamps.
        let t = schema(find("tags_matter").unwrap());
        assert_eq!(t["properties"]["name"]["type"], json!(["string"]));
        assert!(t["properties"].get("updated_at").is_none());

        // Every typed column of every resource is in its schema, at its pointer.
        for r in RESOURCES {
            let s = schema(r);
            assert!(s["properties"][r.key].is_object(), "{}", r.name);
            for c in r.columns {
                let mut at = &s;
                for part in c.pointer.trim_start_matches('/').split('/') {
                    at = &at["properties"][part];
                }
                assert!(at["type"].is_array(), "{}: {}", r.name, c.pointer);
            }
        }
        let e = schema(find("time_entries").unwrap());
        // A field the mirror noted odd values in admits anything; the rest keep their types.
        let odd = ["account_ref.id".to_string(), "number".to_string()].into();
        let open = admitting(find("matters").unwrap(), &odd);
        assert_eq!(open["properties"]["account_ref"], json!({}));
        assert_eq!(open["properties"]["number"], json!({}));
        assert_eq!(open["properties"]["status"], p["status"]);
        assert_eq!(open["properties"]["id"], p["id"]);
        let all = admitting(find("matters").unwrap(), &["*".to_string()].into());
        assert_eq!(all["properties"]["status"], json!({}));
        assert_eq!(all["properties"]["id"], p["id"]);
        assert_eq!(admitting(find("matters").unwrap(), &Default::default()), m);
        assert_eq!(e["properties"]["hours"]["type"], json!(["null", "number"]));
        assert_eq!(
            e["properties"]["is_billed"]["type"],
            json!(["null", "boolean"])
        );
        assert!(e["properties"]["billed_by_user_ref"]["properties"]["id"].is_object());
    }
}
