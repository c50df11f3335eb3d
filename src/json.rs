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

/// Append `s` to `out` as a JSON string, quoted and escaped byte for byte as `serde_json`
/// writes it (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx`;
/// everything else, non-ASCII included, as is), eight bytes at a time where nothing needs an
/// escape: the webhook's deny message and audit annotation are most of its response, and
/// serde_json's writer looks at every byte on its own.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    /// Whether any byte of `x` is below 0x20, `"` or `\\`: exact as a yes/no. Each of
    /// `(v - n) & !v & HIGHS` is exact for "a byte of v below n"; the three share `!v & HIGHS`
    /// (XOR with `"` or `\\` keeps every byte's high bit), so they are tested as one.
    #[inline]
    fn needs_any(x: u64) -> bool {
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        (x.wrapping_sub(ONES * 0x20) | quote.wrapping_sub(ONES) | backslash.wrapping_sub(ONES))
            & !x
            & HIGHS
            != 0
    }
    #[inline]
    fn needs_escape(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\'
    }
    #[inline]
    fn escape(out: &mut Vec<u8>, b: u8) {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
    /// Write the bytes of `chunk` (which starts at `at` in `bytes`) that need an escape, each
    /// after the unescaped run since `start`.
    #[inline]
    fn escape_in(out: &mut Vec<u8>, bytes: &[u8], start: &mut usize, at: usize, chunk: &[u8]) {
        for (j, &b) in chunk.iter().enumerate() {
            if needs_escape(b) {
                out.extend_from_slice(&bytes[*start..at + j]);
                escape(out, b);
                *start = at + j + 1;
            }
        }
    }
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if needs_any(u64::from_ne_bytes(word)) {
            escape_in(out, bytes, &mut start, at, chunk);
        }
        at += 8;
    }
    // The last bytes as one more word, padded with spaces (which need no escape).
    let rest = chunks.remainder();
    let mut word = [b' '; 8];
    word[..rest.len()].copy_from_slice(rest);
    if needs_any(u64::from_ne_bytes(word)) {
        escape_in(out, bytes, &mut start, at, rest);
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod write_str_tests {
    use super::write_str;

    fn ours(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        // Every single character up to U+00FF alone, and at each offset of a longer string (the
        // eight-byte steps and the padded tail).
        for c in (0u32..=0xff).filter_map(char::from_u32) {
            for pad in 0..40 {
                let s = format!("{}{c}{}", "a".repeat(pad), "é".repeat(pad % 3));
                assert_eq!(ours(&s), serde_json::to_string(&s).expect("json"), "{s:?}");
            }
        }
        for s in [
            "",
            "meshguard: 1 violation:\n[x] \"quoted\" \u{2026}",
            "tab\there\\back\u{7f}\u{1f}\r\n",
            "\u{2028}\u{2029} ünïcödé 🦀 and a long tail of plain ASCII text without escapes",
        ] {
            assert_eq!(ours(s), serde_json::to_string(s).expect("json"));
        }
    }
}
