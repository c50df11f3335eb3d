//! `ConfigMap` (core/v1), as the mesh reads it: its name, namespace and labels (the
//! `istio.io/rev` label names a revision) and its string `data` — Istio's MeshConfig
//! (`istio[-<rev>]`, keys `mesh` and `meshNetworks`), the sidecar injector's configuration
//! (`istio-sidecar-injector[-<rev>]`, keys `config` and `values`) and istio-cni's
//! (`istio-cni-config`). What those keys hold is decoded by [`super::mesh_config`] and
//! [`super::injector_config`] (istio-cni's by `crate::mesh::ambient`), each with the field paths
//! of its own errors.
//!
//! Decoding refuses what k8s-openapi's `ConfigMap` refuses, with the same message: `data` that
//! is not a map of strings, `binaryData` that is not a map of base64 strings, `immutable` that is
//! not a boolean. `binaryData` and `immutable` are checked and dropped: no check reads them.

use super::{Base64, Checked, Str};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A ConfigMap: metadata meshguard reads and its `data`, strings borrowed from the object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigMap<'a> {
    pub name: Str<'a>,
    pub namespace: Option<Str<'a>>,
    pub labels: BTreeMap<Str<'a>, Str<'a>>,
    pub data: BTreeMap<Str<'a>, Str<'a>>,
}

/// The part of a ConfigMap besides `apiVersion`, `kind` and `metadata`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(default)]
    #[allow(dead_code)]
    binary_data: Option<Checked<BTreeMap<String, Base64>>>,
    #[serde(borrow, default)]
    data: Option<BTreeMap<Str<'a>, Str<'a>>>,
    #[serde(default)]
    #[allow(dead_code)]
    immutable: Option<Checked<bool>>,
}

fn borrowed(v: &str) -> Str<'_> {
    Str(std::borrow::Cow::Borrowed(v))
}

fn borrow_meta(meta: &ObjectMeta) -> (Str<'_>, Option<Str<'_>>, BTreeMap<Str<'_>, Str<'_>>) {
    (
        meta.name.as_deref().map(borrowed).unwrap_or_default(),
        meta.namespace.as_deref().map(borrowed),
        meta.labels
            .iter()
            .flatten()
            .map(|(k, v)| (borrowed(k), borrowed(v)))
            .collect(),
    )
}

impl<'a> ConfigMap<'a> {
    /// Decode a ConfigMap from its metadata and the rest of the object (a `DynamicObject`'s
    /// `data`). The error is k8s-openapi's message for the same object.
    pub fn decode(metadata: &'a ObjectMeta, rest: &'a Value) -> Result<ConfigMap<'a>, String> {
        let body = Body::deserialize(rest).map_err(|e| e.to_string())?;
        let (name, namespace, labels) = borrow_meta(metadata);
        Ok(ConfigMap {
            name,
            namespace,
            labels,
            data: body.data.unwrap_or_default(),
        })
    }

    /// A ConfigMap k8s-openapi decoded (a watch's), borrowed.
    pub(crate) fn from_k8s(cm: &'a k8s_openapi::api::core::v1::ConfigMap) -> ConfigMap<'a> {
        let (name, namespace, labels) = borrow_meta(&cm.metadata);
        ConfigMap {
            name,
            namespace,
            labels,
            data: cm
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (borrowed(k), borrowed(v)))
                .collect(),
        }
    }

    /// The same ConfigMap, owning its strings.
    pub fn into_owned(self) -> ConfigMap<'static> {
        let own = |m: BTreeMap<Str<'_>, Str<'_>>| {
            m.into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        };
        ConfigMap {
            name: self.name.into_owned(),
            namespace: self.namespace.map(Str::into_owned),
            labels: own(self.labels),
            data: own(self.data),
        }
    }

    /// `metadata.name` (empty when unset).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `metadata.namespace`, when set.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// A label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(Str::as_str)
    }

    /// A `data` key's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(Str::as_str)
    }

    /// Whether `data` holds the key.
    pub fn has(&self, key: &str) -> bool {
        self.data.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::DynamicObject;
    use serde_json::json;

    fn object(v: Value) -> DynamicObject {
        serde_json::from_value(v).expect("object")
    }

    /// What k8s-openapi says of the same object (what meshguard read it with before).
    fn k8s(obj: &DynamicObject) -> Result<(), String> {
        serde_json::to_value(obj)
            .and_then(serde_json::from_value::<k8s_openapi::api::core::v1::ConfigMap>)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_metadata_and_data_borrowed() {
        let o = object(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio-canary", "namespace": "istio-system", "labels": {"istio.io/rev": "canary"}},
            "data": {"mesh": "trustDomain: corp\n", "meshNetworks": "networks: {}"}, "immutable": true}));
        let cm = ConfigMap::decode(&o.metadata, &o.data).expect("decodes");
        assert_eq!(cm.name(), "istio-canary");
        assert_eq!(cm.namespace(), Some("istio-system"));
        assert_eq!(cm.label("istio.io/rev"), Some("canary"));
        assert_eq!(cm.get("mesh"), Some("trustDomain: corp\n"));
        assert!(cm.has("meshNetworks") && !cm.has("values"));
        assert!(matches!(
            cm.data.keys().next(),
            Some(Str(std::borrow::Cow::Borrowed(_)))
        ));
        let owned = cm.clone().into_owned();
        assert_eq!(owned, cm);
        let typed: k8s_openapi::api::core::v1::ConfigMap =
            serde_json::from_value(serde_json::to_value(&o).expect("json")).expect("typed");
        assert_eq!(ConfigMap::from_k8s(&typed), cm);
    }

    #[test]
    fn refuses_what_k8s_openapi_refuses_with_its_message() {
        for extra in [
            json!({"data": {"mesh": 1}}),
            json!({"data": ["x"]}),
            json!({"data": "x"}),
            json!({"data": {"a": null}}),
            json!({"binaryData": {"b": "not base64!"}}),
            json!({"binaryData": {"b": 5}}),
            json!({"binaryData": []}),
            json!({"immutable": "yes"}),
        ] {
            let mut v =
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio"}});
            for (k, x) in extra.as_object().expect("map") {
                v[k] = x.clone();
            }
            let o = object(v);
            let want = k8s(&o).expect_err("k8s-openapi refuses it");
            let got = ConfigMap::decode(&o.metadata, &o.data).expect_err("refused");
            assert_eq!(got, want, "{extra}");
        }
        // What k8s-openapi accepts, the model accepts.
        for extra in [
            json!({"data": null}),
            json!({"binaryData": {"b": "aGk="}, "immutable": null}),
            json!({"other": [1]}),
        ] {
            let mut v =
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio"}});
            for (k, x) in extra.as_object().expect("map") {
                v[k] = x.clone();
            }
            let o = object(v);
            assert!(k8s(&o).is_ok(), "{extra}");
            assert!(ConfigMap::decode(&o.metadata, &o.data).is_ok(), "{extra}");
        }
    }
}
