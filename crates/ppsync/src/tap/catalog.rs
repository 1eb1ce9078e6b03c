//! The Singer catalog: what `--discover` prints (every resource, its schema, key and replication
//! metadata) and which streams a `--catalog` file selects.

use serde_json::{Value, json};

use super::schema::schema;
use crate::resource::{RESOURCES, Resource};

/// The catalog of every resource; those `enabled` in the config are selected by default.
pub fn discover(enabled: &[&Resource]) -> Value {
    let streams: Vec<Value> = RESOURCES
        .iter()
        .map(|r| stream(r, enabled.contains(&r)))
        .collect();
    json!({ "streams": streams })
}

fn stream(res: &Resource, enabled: bool) -> Value {
    let schema = schema(res);
    let mut top = json!({
        "inclusion": "available",
        "selected-by-default": enabled,
        "forced-replication-method": "INCREMENTAL",
        "replication-method": "INCREMENTAL",
        "table-key-properties": [res.key],
    });
    if res.has_updated_at {
        top["valid-replication-keys"] = json!(["updated_at"]);
        top["replication-key"] = json!("updated_at");
    }
    let mut metadata = vec![json!({"breadcrumb": [], "metadata": top})];
    if let Some(props) = schema["properties"].as_object() {
        for name in props.keys() {
            let automatic = name == res.key || (res.has_updated_at && name == "updated_at");
            metadata.push(json!({
                "breadcrumb": ["properties", name],
                "metadata": {"inclusion": if automatic { "automatic" } else { "available" }},
            }));
        }
    }
    json!({
        "tap_stream_id": res.name,
        "stream": res.name,
        "schema": schema,
        "key_properties": [res.key],
        "metadata": metadata,
    })
}

/// The streams a catalog selects, in sync order: those whose top-level metadata says
/// `selected: true` (or, saying nothing, `selected-by-default: true`). An unknown stream or a
/// catalog without `streams` is an error naming it.
pub fn selected(catalog: &Value) -> Result<Vec<&'static Resource>, String> {
    const FIX: &str = "start from `ppsync tap --discover`";
    let Some(streams) = catalog.get("streams").and_then(Value::as_array) else {
        return Err(format!("the catalog has no `streams` list: {FIX}"));
    };
    let mut chosen = Vec::new();
    for s in streams {
        let id = s
            .get("tap_stream_id")
            .or_else(|| s.get("stream"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a catalog stream has no `tap_stream_id`: {FIX}"))?;
        let res = RESOURCES
            .iter()
            .find(|r| r.name == id)
            .ok_or_else(|| format!("the catalog's stream `{id}` is not one of ppsync's: {FIX}"))?;
        if is_selected(s) {
            chosen.push(res);
        }
    }
    Ok(RESOURCES.iter().filter(|r| chosen.contains(r)).collect())
}

fn is_selected(stream: &Value) -> bool {
    let top = stream
        .get("metadata")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|m| {
            m.get("breadcrumb")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
        })
        .and_then(|m| m.get("metadata"));
    let flag = |k: &str| top.and_then(|t| t.get(k)).and_then(Value::as_bool);
    flag("selected")
        .or(flag("selected-by-default"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::find;

    #[test]
    fn discovery_lists_every_resource_with_its_key_and_replication() {
        let enabled = [find("matters").unwrap(), find("tags_matter").unwrap()];
        let c = discover(&enabled);
        let streams = c["streams"].as_array().unwrap();
        assert_eq!(streams.len(), RESOURCES.len());
        for (s, r) in streams.iter().zip(RESOURCES) {
            assert_eq!(s["tap_stream_id"], r.name);
            assert_eq!(s["key_properties"], json!([r.key]));
            let top = &s["metadata"][0];
            assert_eq!(top["breadcrumb"], json!([]));
            assert_eq!(top["metadata"]["selected-by-default"], enabled.contains(&r));
            assert_eq!(
                top["metadata"]["replication-key"].as_str(),
                r.has_updated_at.then_some("updated_at"),
                "{}",
                r.name
            );
        }
        // What discovery selects by default is what a run without a catalog emits.
        assert_eq!(selected(&c).unwrap(), enabled);
    }

    #[test]
    fn a_catalog_selects_streams_and_refuses_unknown_ones() {
        let pick = |selected_: Value, by_default: Value| {
            json!({"streams": [{"tap_stream_id": "tasks", "metadata": [
                {"breadcrumb": ["properties", "id"], "metadata": {"selected": true}},
                {"breadcrumb": [], "metadata": {"selected": selected_, "selected-by-default": by_default}},
            ]}]})
        };
        let tasks = vec![find("tasks").unwrap()];
        let none: Vec<&Resource> = vec![];
        for (sel, by_default, want) in [
            (json!(true), json!(false), &tasks),
            (json!(false), json!(true), &none),
            (Value::Null, json!(true), &tasks),
            (Value::Null, Value::Null, &none),
        ] {
            assert_eq!(
                &selected(&pick(sel.clone(), by_default.clone())).unwrap(),
                want,
                "{sel} {by_default}"
            );
        }
        // Sync order, whatever the catalog's order.
        let two = json!({"streams": [
            {"tap_stream_id": "users", "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]},
            {"stream": "matters", "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]},
        ]});
        let names: Vec<&str> = selected(&two).unwrap().iter().map(|r| r.name).collect();
        assert_eq!(names, ["matters", "users"]);

        let err = selected(&json!({"streams": [{"tap_stream_id": "widgets"}]})).unwrap_err();
        assert!(
            err.contains("`widgets`") && err.contains("--discover"),
            "{err}"
        );
        assert!(
            selected(&json!({"nothing": 1}))
                .unwrap_err()
                .contains("`streams`")
        );
        assert!(
            selected(&json!({"streams": [{}]}))
                .unwrap_err()
                .contains("tap_stream_id")
        );
    }
}
