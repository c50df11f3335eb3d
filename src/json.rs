//! Small, allocation-free helpers for reading JSON objects as Kubernetes writes them: lists that
//! may be absent, strings mixed with other values (kept with their original index, so field
//! paths stay right), and "set" in the protobuf sense (present, not null, not empty).

use serde_json::Value;
use std::collections::BTreeMap;

/// The array under `key`, empty when absent or not an array.
pub fn items<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The string entries of the array under `key`, with their indexes.
pub fn strings<'v>(v: &'v Value, key: &str) -> impl Iterator<Item = (usize, &'v str)> {
    list_strings_of(items(v, key))
}

/// The string entries of a list value, with their indexes (nothing when it is not a list).
pub fn list_strings(list: &Value) -> impl Iterator<Item = (usize, &str)> {
    list_strings_of(list.as_array().map(Vec::as_slice).unwrap_or(&[]))
}

fn list_strings_of(list: &[Value]) -> impl Iterator<Item = (usize, &str)> {
    list.iter()
        .enumerate()
        .filter_map(|(i, x)| x.as_str().map(|s| (i, s)))
}

/// A field counts as set when it is present, not null, and not an empty list or object.
pub(crate) fn is_set(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
        Some(_) => true,
    }
}

/// Walk object keys from a JSON value; `None` when any step is missing.
pub(crate) fn get_path<'v>(value: &'v Value, keys: &[&str]) -> Option<&'v Value> {
    keys.iter().try_fold(value, |v, k| v.get(*k))
}

/// A `string → string` map from a JSON object (non-string values skipped).
pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Render a map key for a user-facing field path: `labels["app"]`.
pub(crate) fn quoted_key(key: &str) -> String {
    format!("[{}]", Value::String(key.to_owned()))
}

/// The JSON type name of a value, as the API server's schema errors write it.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_keep_original_indexes_and_set_means_non_empty() {
        let v = json!({"a": ["x", 1, "y"], "b": [], "c": {}, "d": null, "e": 0});
        assert_eq!(strings(&v, "a").collect::<Vec<_>>(), [(0, "x"), (2, "y")]);
        assert!(items(&v, "missing").is_empty());
        assert!(is_set(v.get("a")) && is_set(v.get("e")));
        for k in ["b", "c", "d", "missing"] {
            assert!(!is_set(v.get(k)), "{k}");
        }
        assert_eq!(get_path(&v, &["a"]), v.get("a"));
        assert_eq!(get_path(&v, &["a", "b"]), None);
        assert_eq!(quoted_key("app"), "[\"app\"]");
        assert_eq!(
            string_map(&json!({"a": "1", "b": 2})),
            BTreeMap::from([("a".to_owned(), "1".to_owned())])
        );
        assert_eq!(type_name(&json!([])), "array");
    }
}
