//! Mutations: safe defaults patched in on `/mutate` (and by `check --fix`).
//! Each is a static unit like a rule: an id, the kinds it touches, and a pure function that
//! emits minimal RFC 6902 operations. Every mutation must be idempotent: applied to its own
//! output it emits nothing, so `reinvocationPolicy: IfNeeded` is safe.

use crate::context::Need;
use crate::resource::{Kind, Review};
use crate::rules::Ctx;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde_json::Value;
use std::fmt;

pub mod namespace;
pub mod peer_authentication;
pub mod service_account;

pub(crate) type ApplyFn = fn(&Review<'_>, &Ctx<'_>, &mut Vec<PatchOperation>);

pub struct Mutation {
    pub id: &'static str,
    pub kinds: &'static [Kind],
    pub summary: &'static str,
    /// The cluster facts `apply` reads (see [`crate::rules::Rule::needs`]).
    pub needs: &'static [Need],
    pub apply: ApplyFn,
}

impl fmt::Debug for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutation").field("id", &self.id).finish()
    }
}

/// The mutations, one line each.
pub static REGISTRY: &[&Mutation] = &[
    &peer_authentication::STRICT_DEFAULT,
    &service_account::DEFAULT_SERVICE_ACCOUNT,
    &namespace::INJECTION_LABEL,
];

pub fn find(id: &str) -> Option<&'static Mutation> {
    REGISTRY.iter().copied().find(|m| m.id == id)
}

/// A JSON pointer from unescaped object keys (escaping `~` and `/` as RFC 6901 requires).
pub fn pointer<'a>(keys: impl IntoIterator<Item = &'a str>) -> PointerBuf {
    PointerBuf::from_tokens(keys)
}

/// An `add` operation at the pointer made of `keys`.
pub fn add<'a>(keys: impl IntoIterator<Item = &'a str>, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: pointer(keys),
        value,
    })
}

/// Emit the smallest `add` that makes `root[keys...] = value`: when an intermediate object is
/// missing, add it whole (with the value nested inside) rather than failing on a missing parent.
pub(crate) fn add_nested(root: &Value, keys: &[&str], value: Value, out: &mut Vec<PatchOperation>) {
    let mut cur = root;
    for (i, key) in keys.iter().enumerate() {
        let last = i + 1 == keys.len();
        match cur.get(*key) {
            Some(next) if !last && next.is_object() => cur = next,
            _ => {
                // Build the remaining structure below keys[..=i].
                let nested = keys[i + 1..].iter().rev().fold(value, |v, k| {
                    let mut m = serde_json::Map::new();
                    m.insert((*k).to_owned(), v);
                    Value::Object(m)
                });
                out.push(add(keys[..=i].iter().copied(), nested));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(doc: &Value, ops: Vec<PatchOperation>) -> Value {
        let mut d = doc.clone();
        json_patch::patch(&mut d, &json_patch::Patch(ops)).expect("patch applies");
        d
    }

    #[test]
    fn add_nested_creates_missing_parents() {
        let doc = json!({"metadata": {"name": "x"}});
        let mut ops = Vec::new();
        add_nested(&doc, &["metadata", "labels", "a/b"], json!("v"), &mut ops);
        assert_eq!(ops.len(), 1);
        let s = serde_json::to_string(&ops).expect("ser");
        assert_eq!(
            s,
            r#"[{"op":"add","path":"/metadata/labels","value":{"a/b":"v"}}]"#
        );
        assert_eq!(apply(&doc, ops)["metadata"]["labels"]["a/b"], "v");
    }

    #[test]
    fn add_nested_escapes_pointer() {
        let doc = json!({"metadata": {"labels": {}}});
        let mut ops = Vec::new();
        add_nested(
            &doc,
            &["metadata", "labels", "sidecar.istio.io/inject"],
            json!("true"),
            &mut ops,
        );
        let s = serde_json::to_string(&ops).expect("ser");
        assert!(
            s.contains(r#""/metadata/labels/sidecar.istio.io~1inject""#),
            "{s}"
        );
    }
}
