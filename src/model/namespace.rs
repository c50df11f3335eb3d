//! A Namespace as meshguard reads it: its name, its labels (injection, revision, dataplane
//! mode, waypoint) and whether it is Terminating (`metadata.deletionTimestamp` set, so the
//! namespace controller is emptying it). Nothing else of a Namespace is read by any check.
//!
//! The struct is decoded straight from the object's JSON (a full Namespace or a
//! `PartialObjectMetadata`): `metadata.managedFields`, annotations, owner references, `spec` and
//! `status` are skipped by the deserializer, never built. `serve`'s watch cache holds one of
//! these per namespace (`crate::cluster`).
//!
//! [`Metadata`] is the part of any object's `metadata` that the cluster caches read (name,
//! namespace, labels, deletion state, and the `resourceVersion` a watch resumes from); the
//! ServiceAccount model ([`super::service_account`]) decodes through it too.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Labels, compactly: one allocation of pairs sorted by key (a `BTreeMap` leaf costs ~540 bytes
/// even for the two labels most namespaces carry), shared by clones.
pub type Labels = Arc<[(Box<str>, Box<str>)]>;

/// What meshguard reads of a Namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// `metadata.name`.
    pub name: Arc<str>,
    /// `metadata.labels`, sorted by key.
    pub labels: Labels,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
}

impl Namespace {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }

    /// The labels as a map (what [`crate::context::ClusterView`] hands to the rules).
    pub(crate) fn labels_map(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl From<Metadata> for Namespace {
    fn from(m: Metadata) -> Namespace {
        Namespace {
            name: Arc::from(m.name),
            labels: m.labels,
            terminating: m.terminating,
        }
    }
}

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Object::deserialize(d).map(|o| Namespace::from(o.metadata))
    }
}

/// What the cluster caches read of an object's `metadata`; every other field is skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub name: Box<str>,
    /// Empty for a cluster-scoped object.
    pub namespace: Box<str>,
    pub labels: Labels,
    /// `deletionTimestamp` is set.
    pub terminating: bool,
    /// The version a watch resumes from (not a fact any check reads).
    pub(crate) resource_version: Option<String>,
}

/// An object reduced to [`Metadata`] (`apiVersion`, `kind`, `spec`, `status` skipped).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Object {
    #[serde(default)]
    pub metadata: Metadata,
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire {
            #[serde(default)]
            name: Option<Box<str>>,
            #[serde(default)]
            namespace: Option<Box<str>>,
            #[serde(default, deserialize_with = "labels")]
            labels: Labels,
            #[serde(default)]
            deletion_timestamp: Option<IgnoredAny>,
            #[serde(default)]
            resource_version: Option<String>,
        }
        let w = Wire::deserialize(d)?;
        Ok(Metadata {
            name: w.name.unwrap_or_default(),
            namespace: w.namespace.unwrap_or_default(),
            labels: w.labels,
            terminating: w.deletion_timestamp.is_some(),
            resource_version: w.resource_version,
        })
    }
}

/// Labels from a JSON map of strings (or `null`), sorted by key; a repeated key keeps its last
/// value, as a map would.
fn labels<'de, D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Labels;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Labels, E> {
            Ok(Labels::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<Labels, E> {
            Ok(Labels::default())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Labels, D::Error> {
            d.deserialize_map(V)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Labels, A::Error> {
            let mut pairs: Vec<(Box<str>, Box<str>)> =
                Vec::with_capacity(m.size_hint().unwrap_or(0));
            while let Some((k, v)) = m.next_entry::<Box<str>, Box<str>>()? {
                pairs.push((k, v));
            }
            Ok(sorted(pairs).into())
        }
    }
    d.deserialize_option(V)
}

/// Pairs sorted by key, the last of a repeated key kept.
pub(crate) fn sorted(mut pairs: Vec<(Box<str>, Box<str>)>) -> Vec<(Box<str>, Box<str>)> {
    // Stable: among equal keys the later one stays later, and dedup keeps the first of a run,
    // so reverse first to keep the last.
    pairs.reverse();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs.dedup_by(|later, earlier| later.0 == earlier.0);
    pairs
}

/// Labels from a map (objects built in code and tests).
pub fn labels_of(map: BTreeMap<String, String>) -> Labels {
    map.into_iter()
        .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_keeps_name_labels_and_deletion_and_skips_the_rest() {
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {
                "name": "prod",
                "labels": {"istio-injection": "enabled", "a": "1"},
                "annotations": {"x": "y"},
                "deletionTimestamp": "2026-12-07T08:00:00Z",
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:metadata": {}}}],
                "resourceVersion": "42"
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating"}
        }))
        .unwrap();
        assert_eq!(&*ns.name, "prod");
        assert!(ns.terminating);
        assert_eq!(ns.label("istio-injection"), Some("enabled"));
        assert_eq!(ns.label("a"), Some("1"));
        assert_eq!(ns.label("x"), None);
        // Sorted by key, whatever the order written.
        let keys: Vec<&str> = ns.labels.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["a", "istio-injection"]);
        assert_eq!(
            ns.labels_map(),
            BTreeMap::from([
                ("a".to_owned(), "1".to_owned()),
                ("istio-injection".to_owned(), "enabled".to_owned())
            ])
        );
    }

    #[test]
    fn a_live_namespace_without_labels_is_not_terminating() {
        let ns: Namespace = serde_json::from_str(
            r#"{"metadata":{"name":"a","labels":null,"deletionTimestamp":null}}"#,
        )
        .unwrap();
        assert!(!ns.terminating);
        assert!(ns.labels.is_empty());
        let bare: Namespace = serde_json::from_str(r#"{"metadata":{"name":"b"}}"#).unwrap();
        assert_eq!((&*bare.name, bare.terminating), ("b", false));
    }

    #[test]
    fn metadata_keeps_the_resource_version_and_namespace() {
        let o: Object = serde_json::from_str(
            r#"{"kind":"ServiceAccount","metadata":{"name":"web","namespace":"prod","resourceVersion":"7"},"secrets":[{"name":"t"}]}"#,
        )
        .unwrap();
        assert_eq!(&*o.metadata.namespace, "prod");
        assert_eq!(o.metadata.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn labels_that_are_not_strings_are_refused() {
        assert!(
            serde_json::from_str::<Namespace>(r#"{"metadata":{"name":"a","labels":{"k":5}}}"#)
                .is_err()
        );
    }

    #[test]
    fn a_repeated_label_key_keeps_its_last_value() {
        let pairs = sorted(vec![
            ("b".into(), "1".into()),
            ("a".into(), "x".into()),
            ("b".into(), "2".into()),
        ]);
        assert_eq!(
            pairs,
            vec![("a".into(), "x".into()), ("b".into(), "2".into())]
        );
    }
}
