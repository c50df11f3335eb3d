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

impl<'a> Review<'a> {
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

/// Escape one RFC 6901 JSON-pointer segment (`~` → `~0`, `/` → `~1`).
pub fn pointer_escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
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
