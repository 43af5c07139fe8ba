//! The record's JSON Schema (draft 2020-12), built from the [`Record`] type itself through its
//! OpenAPI schema, so the checked-in `docs/record.schema.json` cannot drift from the code.

use serde_json::{json, Map, Value};
use utoipa::{PartialSchema, ToSchema};

use super::{Record, SCHEMA_VERSION};

/// Where OpenAPI keeps named schemas, and where a JSON Schema document keeps them.
const COMPONENTS: &str = "#/components/schemas/";
const DEFS: &str = "#/$defs/";

/// The JSON Schema of one output record, its named parts under `$defs`.
pub fn json_schema() -> Value {
    let mut parts = Vec::new();
    <Record as ToSchema>::schemas(&mut parts);
    let defs: Map<String, Value> = parts
        .into_iter()
        .map(|(name, schema)| (name, to_value(&schema)))
        .collect();
    let mut doc = Map::new();
    doc.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    doc.insert("title".into(), json!(format!("Record v{SCHEMA_VERSION}")));
    if let Value::Object(root) = to_value(&<Record as PartialSchema>::schema()) {
        doc.extend(root);
    }
    doc.insert("$defs".into(), Value::Object(defs));
    Value::Object(doc)
}

/// A schema as JSON, its OpenAPI references pointed at `$defs`.
fn to_value(schema: &impl serde::Serialize) -> Value {
    let mut value = serde_json::to_value(schema).unwrap_or(Value::Null);
    retarget(&mut value);
    value
}

fn retarget(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(s) if key == "$ref" && s.starts_with(COMPONENTS) => {
                        *s = s.replacen(COMPONENTS, DEFS, 1);
                    }
                    other => retarget(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(retarget),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match v {
                        Value::String(s) if k == "$ref" => out.push(s.clone()),
                        other => refs(other, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_inside_the_document() {
        let doc = json_schema();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty(), "the record refers to its parts: {doc:#}");
        for r in found {
            let name = r
                .strip_prefix(DEFS)
                .unwrap_or_else(|| panic!("{r} is not a $defs reference"));
            assert!(doc["$defs"].get(name).is_some(), "{r} is not defined");
        }
        let required = doc["required"].as_array().cloned().unwrap_or_default();
        for field in [
            "schema_version",
            "id",
            "labels",
            "heads",
            "model",
            "lang",
            "script",
        ] {
            assert!(required.contains(&json!(field)), "{field} is required");
        }
    }
}
