//! Typed view of what a review is about: the kinds meshguard understands and the
//! request fields rules need. Nothing here does I/O.

use kube::core::admission::Operation;
use kube::core::DynamicObject;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Every kind meshguard has rules or mutations for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication,
    DestinationRule,
    Namespace,
    Service,
    ServiceAccount,
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    ReplicationController,
    Job,
    CronJob,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::RequestAuthentication,
        Kind::DestinationRule,
        Kind::Namespace,
        Kind::Service,
        Kind::ServiceAccount,
        Kind::Pod,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::ReplicaSet,
        Kind::ReplicationController,
        Kind::Job,
        Kind::CronJob,
    ];

    /// Kinds that carry a pod spec (directly or in a template).
    pub const WORKLOADS: &'static [Kind] = &[
        Kind::Pod,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::ReplicaSet,
        Kind::ReplicationController,
        Kind::Job,
        Kind::CronJob,
    ];

    /// Recognise a kind from the group/version/kind the apiserver sent.
    /// Versions outside the served set are not ours: they pass untouched.
    pub fn from_gvk(group: &str, version: &str, kind: &str) -> Option<Kind> {
        let k = match (group, kind) {
            ("security.istio.io", "PeerAuthentication") => Kind::PeerAuthentication,
            ("security.istio.io", "AuthorizationPolicy") => Kind::AuthorizationPolicy,
            ("security.istio.io", "RequestAuthentication") => Kind::RequestAuthentication,
            ("networking.istio.io", "DestinationRule") => Kind::DestinationRule,
            ("", "Namespace") => Kind::Namespace,
            ("", "Service") => Kind::Service,
            ("", "ServiceAccount") => Kind::ServiceAccount,
            ("", "Pod") => Kind::Pod,
            ("", "ReplicationController") => Kind::ReplicationController,
            ("apps", "Deployment") => Kind::Deployment,
            ("apps", "StatefulSet") => Kind::StatefulSet,
            ("apps", "DaemonSet") => Kind::DaemonSet,
            ("apps", "ReplicaSet") => Kind::ReplicaSet,
            ("batch", "Job") => Kind::Job,
            ("batch", "CronJob") => Kind::CronJob,
            _ => return None,
        };
        let served = match group {
            "security.istio.io" => matches!(version, "v1" | "v1beta1"),
            "networking.istio.io" => matches!(version, "v1" | "v1beta1" | "v1alpha3"),
            _ => version == "v1",
        };
        served.then_some(k)
    }

    /// Parse `apiVersion` + `kind` as found in a manifest.
    pub fn from_api_version(api_version: &str, kind: &str) -> Option<Kind> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        Kind::from_gvk(group, version, kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::DestinationRule => "DestinationRule",
            Kind::Namespace => "Namespace",
            Kind::Service => "Service",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ReplicationController => "ReplicationController",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
        }
    }

    pub fn is_workload(self) -> bool {
        Kind::WORKLOADS.contains(&self)
    }

    /// Where the pod template sits below the object root, as object keys.
    /// `Some(&[])` for a Pod (the object is its own template).
    pub fn pod_template_path(self) -> Option<&'static [&'static str]> {
        match self {
            Kind::Pod => Some(&[]),
            Kind::Deployment
            | Kind::StatefulSet
            | Kind::DaemonSet
            | Kind::ReplicaSet
            | Kind::ReplicationController
            | Kind::Job => Some(&["spec", "template"]),
            Kind::CronJob => Some(&["spec", "jobTemplate", "spec", "template"]),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule or mutation sees: the request reduced to the fields that matter.
/// The admission front end, `check` and `audit` all build one of these.
#[derive(Clone, Copy, Debug)]
pub struct Review<'a> {
    pub kind: Kind,
    /// API version the client used (`v1`, `v1beta1`, ...).
    pub version: &'a str,
    pub operation: &'a Operation,
    pub namespace: &'a str,
    pub name: &'a str,
    pub object: Option<&'a DynamicObject>,
    pub old_object: Option<&'a DynamicObject>,
    pub dry_run: bool,
}

/// The operation of reviews built by [`Review::create`].
static CREATE: Operation = Operation::Create;

impl<'a> Review<'a> {
    /// A CREATE of `object`, as `check`, `audit` and tests evaluate manifests.
    pub fn create(
        kind: Kind,
        version: &'a str,
        namespace: &'a str,
        name: &'a str,
        object: &'a DynamicObject,
    ) -> Review<'a> {
        Review {
            kind,
            version,
            operation: &CREATE,
            namespace,
            name,
            object: Some(object),
            old_object: None,
            dry_run: false,
        }
    }

    /// The object being written (CREATE/UPDATE), or the stored object for DELETE.
    pub fn subject(&self) -> Option<&'a DynamicObject> {
        match self.operation {
            Operation::Delete => self.old_object,
            _ => self.object.or(self.old_object),
        }
    }

    /// The new object for CREATE and UPDATE; `None` for DELETE/CONNECT.
    pub fn written(&self) -> Option<&'a DynamicObject> {
        match self.operation {
            Operation::Create | Operation::Update => self.object,
            _ => None,
        }
    }

    pub fn is_delete(&self) -> bool {
        matches!(self.operation, Operation::Delete)
    }

    /// The object's `spec` (or JSON null when absent).
    pub fn spec(&self) -> &'a Value {
        self.written().map(spec_of).unwrap_or(&Value::Null)
    }
}

/// `spec` of an object, JSON null when absent.
pub fn spec_of(obj: &DynamicObject) -> &Value {
    obj.data.get("spec").unwrap_or(&Value::Null)
}

/// Labels of an object, empty when absent.
pub fn labels_of(obj: &DynamicObject) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    obj.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

/// Annotations of an object, empty when absent.
pub fn annotations_of(obj: &DynamicObject) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    obj.metadata.annotations.as_ref().unwrap_or(&EMPTY)
}

/// Walk object keys from a JSON value; `None` when any step is missing.
pub fn get_path<'v>(value: &'v Value, keys: &[&str]) -> Option<&'v Value> {
    keys.iter().try_fold(value, |v, k| v.get(*k))
}

/// Render a map key for a user-facing field path: `labels["app"]`.
pub fn quoted_key(key: &str) -> String {
    format!("[{}]", serde_json::Value::String(key.to_owned()))
}

/// True when an Istio `selector` (`WorkloadSelector`) selects nothing in particular,
/// i.e. it is absent or has no `matchLabels` entries: the policy is namespace- or mesh-wide.
pub fn selector_is_empty(spec: &Value) -> bool {
    match spec.get("selector").and_then(|s| s.get("matchLabels")) {
        Some(Value::Object(m)) => m.is_empty(),
        _ => true,
    }
}

/// An object as it arrives in an AdmissionReview, decoded for the rules: a [`DynamicObject`]
/// without `metadata.managedFields` and `status`. No rule reads either, and together they are
/// roughly a third of a typical review's bytes and more of its decoding time (managedFields is
/// a deep tree of short keys). Used as the `T` of `kube::core::admission::AdmissionReview<T>`.
#[derive(Clone, Debug)]
pub struct ReviewObject(pub DynamicObject);

impl kube::core::Resource for ReviewObject {
    type DynamicType = kube::core::ApiResource;
    type Scope = kube::core::DynamicResourceScope;

    fn kind(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &kube::core::ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut kube::core::ObjectMeta {
        &mut self.0.metadata
    }
}

impl<'de> serde::Deserialize<'de> for ReviewObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, Visitor};

        struct Meta(kube::core::ObjectMeta);
        impl<'de> serde::Deserialize<'de> for Meta {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct MetaVisitor;
                impl<'de> Visitor<'de> for MetaVisitor {
                    type Value = Meta;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("object metadata")
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Meta, A::Error> {
                        let mut kept = serde_json::Map::new();
                        while let Some(key) = map.next_key::<String>()? {
                            if key == "managedFields" {
                                map.next_value::<IgnoredAny>()?;
                            } else {
                                kept.insert(key, map.next_value::<Value>()?);
                            }
                        }
                        serde_json::from_value(Value::Object(kept))
                            .map(Meta)
                            .map_err(A::Error::custom)
                    }
                }
                d.deserialize_map(MetaVisitor)
            }
        }

        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = ReviewObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Kubernetes object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReviewObject, A::Error> {
                let (mut api_version, mut kind) = (None, None);
                let mut metadata = kube::core::ObjectMeta::default();
                let mut data = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "apiVersion" => api_version = Some(map.next_value::<String>()?),
                        "kind" => kind = Some(map.next_value::<String>()?),
                        "metadata" => metadata = map.next_value::<Meta>()?.0,
                        "status" => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        _ => {
                            let v = map.next_value::<Value>()?;
                            data.insert(key, v);
                        }
                    }
                }
                let types = match (api_version, kind) {
                    (Some(api_version), Some(kind)) => {
                        Some(kube::core::TypeMeta { api_version, kind })
                    }
                    _ => None,
                };
                Ok(ReviewObject(DynamicObject {
                    types,
                    metadata,
                    data: Value::Object(data),
                }))
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn review_object_drops_managed_fields_and_status_only() {
        let o: ReviewObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n", "labels": {"app": "a"},
                         "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"serviceAccountName": "default"},
            "status": {"phase": "Pending"}
        }))
        .expect("decodes");
        assert_eq!(o.0.metadata.name.as_deref(), Some("p"));
        assert_eq!(labels_of(&o.0).get("app").map(String::as_str), Some("a"));
        assert!(o.0.metadata.managed_fields.is_none());
        assert_eq!(o.0.data, json!({"spec": {"serviceAccountName": "default"}}));
        assert_eq!(o.0.types.as_ref().map(|t| t.kind.as_str()), Some("Pod"));
        assert!(serde_json::from_value::<ReviewObject>(json!([1])).is_err());
        assert!(
            serde_json::from_value::<ReviewObject>(json!({"metadata": {"labels": {"a": 1}}}))
                .is_err()
        );
    }
}
