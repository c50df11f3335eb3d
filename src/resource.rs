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
    EnvoyFilter,
    Sidecar,
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
    Gateway,
    GatewayClass,
    HttpRoute,
    ServiceEntry,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::RequestAuthentication,
        Kind::DestinationRule,
        Kind::EnvoyFilter,
        Kind::Sidecar,
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
        Kind::Gateway,
        Kind::GatewayClass,
        Kind::HttpRoute,
        Kind::ServiceEntry,
    ];

    /// Kinds that carry a pod spec (directly or in a template).
    pub(crate) const WORKLOADS: &'static [Kind] = &[
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
        // By name first (a jump on the string, not a scan of the table: every review asks,
        // several times), then the group and version of that kind's row.
        let f = Kind::from_name(kind)?.facts();
        (f.group == group && f.versions.contains(&version)).then_some(f.kind)
    }

    /// Parse `apiVersion` + `kind` as found in a manifest.
    pub fn from_api_version(api_version: &str, kind: &str) -> Option<Kind> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        Kind::from_gvk(group, version, kind)
    }

    /// Recognise a kind by its name alone (`Deployment`), for objects referenced by kind.
    pub(crate) fn from_name(kind: &str) -> Option<Kind> {
        Some(match kind {
            "PeerAuthentication" => Kind::PeerAuthentication,
            "AuthorizationPolicy" => Kind::AuthorizationPolicy,
            "RequestAuthentication" => Kind::RequestAuthentication,
            "DestinationRule" => Kind::DestinationRule,
            "EnvoyFilter" => Kind::EnvoyFilter,
            "Sidecar" => Kind::Sidecar,
            "Namespace" => Kind::Namespace,
            "Service" => Kind::Service,
            "ServiceAccount" => Kind::ServiceAccount,
            "Pod" => Kind::Pod,
            "Deployment" => Kind::Deployment,
            "StatefulSet" => Kind::StatefulSet,
            "DaemonSet" => Kind::DaemonSet,
            "ReplicaSet" => Kind::ReplicaSet,
            "ReplicationController" => Kind::ReplicationController,
            "Job" => Kind::Job,
            "CronJob" => Kind::CronJob,
            "Gateway" => Kind::Gateway,
            "GatewayClass" => Kind::GatewayClass,
            "HTTPRoute" => Kind::HttpRoute,
            "ServiceEntry" => Kind::ServiceEntry,
            _ => return None,
        })
    }

    /// This kind's row of [`KIND_FACTS`].
    pub fn facts(self) -> &'static KindFacts {
        // The table is in `Kind::ALL` order, a row for every kind (a unit test checks both); the
        // fallbacks are never hit.
        KIND_FACTS
            .get(self as usize)
            .filter(|f| f.kind == self)
            .or_else(|| KIND_FACTS.iter().find(|f| f.kind == self))
            .unwrap_or(&KIND_FACTS[0])
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::DestinationRule => "DestinationRule",
            Kind::EnvoyFilter => "EnvoyFilter",
            Kind::Sidecar => "Sidecar",
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
            Kind::Gateway => "Gateway",
            Kind::GatewayClass => "GatewayClass",
            Kind::HttpRoute => "HTTPRoute",
            Kind::ServiceEntry => "ServiceEntry",
        }
    }

    pub(crate) fn is_workload(self) -> bool {
        self.facts().pod_template.is_some()
    }

    /// One of Istio's resources meshguard judges (never exempt by namespace: the mesh-wide
    /// policies, and the EnvoyFilters and Sidecars that reach every workload, live in the exempt
    /// root namespace).
    pub(crate) fn is_istio(self) -> bool {
        self.facts().istio
    }

    /// Where the pod template sits below the object root, as object keys.
    /// `Some(&[])` for a Pod (the object is its own template).
    pub(crate) fn pod_template_path(self) -> Option<&'static [&'static str]> {
        self.facts().pod_template
    }
}

/// What meshguard knows about one kind: where the API serves it, and what it is to the mesh.
/// The one table every list of kinds derives from (recognition, `audit`'s listing, exemptions,
/// pod templates, owner references).
#[derive(Debug)]
pub struct KindFacts {
    pub kind: Kind,
    /// API group (`""` for core).
    pub group: &'static str,
    /// Versions meshguard reads, in the order `audit` tries them.
    pub versions: &'static [&'static str],
    /// Resource name in URLs.
    pub plural: &'static str,
    pub namespaced: bool,
    /// One of Istio's security resources.
    pub istio: bool,
    /// Where the pod template sits (`Some(&[])`: the object is a pod); `None`: no pods.
    pub(crate) pod_template: Option<&'static [&'static str]>,
    /// A controller of pods (or of pod controllers): an object it owns through a `controller`
    /// owner reference is judged through it, not on its own.
    pub(crate) owns_pods: bool,
}

impl KindFacts {
    /// Every check reads only the metadata of this kind (a Namespace's labels, annotations and
    /// deletion; a ServiceAccount's name), so a listing asks the API server for
    /// `PartialObjectMetadata` only.
    pub(crate) fn judged_by_metadata(&self) -> bool {
        matches!(self.kind, Kind::Namespace | Kind::ServiceAccount)
    }

    /// A listing keeps this kind's `status` (a Gateway is a waypoint only once its
    /// `status.addresses` are set); every other kind's is dropped.
    pub(crate) fn keeps_status(&self) -> bool {
        self.kind == Kind::Gateway
    }
}

const SECURITY: &[&str] = &["v1", "v1beta1"];
const NETWORKING: &[&str] = &["v1", "v1beta1", "v1alpha3"];
/// EnvoyFilter is served as v1alpha3 only.
const V1ALPHA3: &[&str] = &["v1alpha3"];
const V1: &[&str] = &["v1"];
/// Gateway API (standard channel): v1, and v1beta1 as older installations serve it.
const GATEWAY_API: &[&str] = &["v1", "v1beta1"];
const TEMPLATE: Option<&[&str]> = Some(&["spec", "template"]);

/// Every kind meshguard reads, in [`Kind::ALL`] order.
pub(crate) static KIND_FACTS: &[KindFacts] = &[
    KindFacts {
        kind: Kind::PeerAuthentication,
        group: "security.istio.io",
        versions: SECURITY,
        plural: "peerauthentications",
        namespaced: true,
        istio: true,
        pod_template: None,
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::AuthorizationPolicy,
        group: "security.istio.io",
        versions: SECURITY,
        plural: "authorizationpolicies",
        namespaced: true,
        istio: true,
        pod_template: None,
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::RequestAuthentication,
        group: "security.istio.io",
        versions: SECURITY,
        plural: "requestauthentications",
        namespaced: true,
        istio: true,
        pod_template: None,
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::DestinationRule,
        group: "networking.istio.io",
        versions: NETWORKING,
        plural: "destinationrules",
        namespaced: true,
        istio: true,
        pod_template: None,
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::EnvoyFilter,
        group: "networking.istio.io",
        versions: V1ALPHA3,
        plural: "envoyfilters",
        namespaced: true,
        istio: true,
        pod_template: None,
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::Sidecar,
        group: "networking.istio.io",
        versions: NETWORKING,
        plural: "sidecars",
        namespaced: true,
        istio: true,
        pod_template: None,
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::Namespace,
        group: "",
        versions: V1,
        plural: "namespaces",
        namespaced: false,
        istio: false,
        pod_template: None,
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::Service,
        group: "",
        versions: V1,
        plural: "services",
        namespaced: true,
        istio: false,
        pod_template: None,
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::ServiceAccount,
        group: "",
        versions: V1,
        plural: "serviceaccounts",
        namespaced: true,
        istio: false,
        pod_template: None,
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::Pod,
        group: "",
        versions: V1,
        plural: "pods",
        namespaced: true,
        istio: false,
        pod_template: Some(&[]),
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::Deployment,
        group: "apps",
        versions: V1,
        plural: "deployments",
        namespaced: true,
        istio: false,
        pod_template: TEMPLATE,
        owns_pods: true,
    },
    KindFacts {
        kind: Kind::StatefulSet,
        group: "apps",
        versions: V1,
        plural: "statefulsets",
        namespaced: true,
        istio: false,
        pod_template: TEMPLATE,
        owns_pods: true,
    },
    KindFacts {
        kind: Kind::DaemonSet,
        group: "apps",
        versions: V1,
        plural: "daemonsets",
        namespaced: true,
        istio: false,
        pod_template: TEMPLATE,
        owns_pods: true,
    },
    KindFacts {
        kind: Kind::ReplicaSet,
        group: "apps",
        versions: V1,
        plural: "replicasets",
        namespaced: true,
        istio: false,
        pod_template: TEMPLATE,
        owns_pods: true,
    },
    KindFacts {
        kind: Kind::ReplicationController,
        group: "",
        versions: V1,
        plural: "replicationcontrollers",
        namespaced: true,
        istio: false,
        pod_template: TEMPLATE,
        owns_pods: true,
    },
    KindFacts {
        kind: Kind::Job,
        group: "batch",
        versions: V1,
        plural: "jobs",
        namespaced: true,
        istio: false,
        pod_template: TEMPLATE,
        owns_pods: true,
    },
    KindFacts {
        kind: Kind::CronJob,
        group: "batch",
        versions: V1,
        plural: "cronjobs",
        namespaced: true,
        istio: false,
        pod_template: Some(&["spec", "jobTemplate", "spec", "template"]),
        owns_pods: true,
    },
    // The data plane's topology (waypoints, ingress routes, mesh-external services): read, not
    // judged by rules of their own.
    KindFacts {
        kind: Kind::Gateway,
        group: "gateway.networking.k8s.io",
        versions: GATEWAY_API,
        plural: "gateways",
        namespaced: true,
        istio: false,
        pod_template: None,
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::GatewayClass,
        group: "gateway.networking.k8s.io",
        versions: GATEWAY_API,
        plural: "gatewayclasses",
        namespaced: false,
        istio: false,
        pod_template: None,
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::HttpRoute,
        group: "gateway.networking.k8s.io",
        versions: GATEWAY_API,
        plural: "httproutes",
        namespaced: true,
        istio: false,
        pod_template: None,
        owns_pods: false,
    },
    KindFacts {
        kind: Kind::ServiceEntry,
        group: "networking.istio.io",
        versions: NETWORKING,
        plural: "serviceentries",
        namespaced: true,
        istio: false,
        pod_template: None,
        owns_pods: false,
    },
];

/// An object owned, through a `controller` owner reference, by a controller of pods: it is
/// judged through that controller (a ReplicaSet of a Deployment, the Pods of a ReplicaSet).
pub(crate) fn is_controlled(obj: &DynamicObject) -> bool {
    controller_kind(obj).is_some()
}

/// The kind of the pod controller that controls `obj` through a `controller` owner reference.
/// The reference must name the kind with its group and a version meshguard reads
/// (`apps/v1` `Deployment`, `batch/v1` `Job`, `v1` `ReplicationController`): a `kind:
/// Deployment` of another API group is somebody's own resource, which no Kubernetes controller
/// acts for, and it must neither hide the object from the checks nor earn its owner's pardon.
pub(crate) fn controller_kind(obj: &DynamicObject) -> Option<Kind> {
    obj.metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.controller == Some(true))
        .find_map(|r| {
            Kind::from_api_version(&r.api_version, &r.kind).filter(|k| k.facts().owns_pods)
        })
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Key under which the webhook keeps a Pod's `spec` as JSON text instead of a tree
/// ([`ReviewObject`]), written while the body is scanned with only the fields the typed model
/// reads (`POD_SPEC_TEXT`): `model::workload::PodTemplate::of` decodes it straight into the
/// typed pod spec, borrowing its strings. Not a key any object can have (it starts with NUL).
pub const RAW_POD_SPEC: &str = "\u{0}spec";

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
    /// Set when a Kubernetes controller creates this object for the owner it controls (a
    /// Deployment's ReplicaSet, a ReplicaSet's Pods): the owner's kind. The pod template it
    /// carries is the owner's, judged when the owner was admitted. Only the admission front end
    /// sets it, from the requester's identity and the object's controller reference.
    pub created_for: Option<Kind>,
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
            created_for: None,
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
pub(crate) fn spec_of(obj: &DynamicObject) -> &Value {
    obj.data.get("spec").unwrap_or(&Value::Null)
}

/// Labels of an object, empty when absent.
pub(crate) fn labels_of(obj: &DynamicObject) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    obj.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

/// Annotations of an object, empty when absent.
pub(crate) fn annotations_of(obj: &DynamicObject) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    obj.metadata.annotations.as_ref().unwrap_or(&EMPTY)
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
        use serde::de::{IgnoredAny, MapAccess, Visitor};

        /// `metadata` without `managedFields`, decoded straight into kube's `ObjectMeta`
        /// fields (unknown keys, `managedFields` among them, are skipped without being built).
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Meta {
            #[serde(default, deserialize_with = "annotations")]
            annotations: Option<BTreeMap<String, String>>,
            creation_timestamp: Option<Time>,
            deletion_grace_period_seconds: Option<i64>,
            deletion_timestamp: Option<Time>,
            #[serde(default, deserialize_with = "bounded_strings")]
            finalizers: Option<Vec<String>>,
            generate_name: Option<String>,
            generation: Option<i64>,
            #[serde(default, deserialize_with = "bounded_string_map")]
            labels: Option<BTreeMap<String, String>>,
            name: Option<String>,
            namespace: Option<String>,
            #[serde(default, deserialize_with = "owner_references")]
            owner_references: Option<Vec<OwnerReference>>,
            resource_version: Option<String>,
            self_link: Option<String>,
            uid: Option<String>,
        }
        /// Annotations without `kubectl.kubernetes.io/last-applied-configuration`: a copy of
        /// the whole object as an escaped JSON string, the longest value of a `kubectl apply`d
        /// object's metadata, which no check reads.
        fn annotations<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<BTreeMap<String, String>>, D::Error> {
            struct Annotations;
            impl<'de> Visitor<'de> for Annotations {
                type Value = Option<BTreeMap<String, String>>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("annotations")
                }
                fn visit_unit<E>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_none<E>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_some<D: serde::Deserializer<'de>>(
                    self,
                    d: D,
                ) -> Result<Self::Value, D::Error> {
                    d.deserialize_map(self)
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut out = BTreeMap::new();
                    while let Some(key) = map.next_key::<String>()? {
                        if key == LAST_APPLIED {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                        let value = map.next_value::<String>()?;
                        if !charge(cost::entry(out.len(), key.len() + value.len())) {
                            skip_map(map)?;
                            return Ok(None);
                        }
                        out.insert(key, value);
                    }
                    Ok(Some(out))
                }
            }
            d.deserialize_option(Annotations)
        }
        /// A string map (labels), charged to the decode meter.
        fn bounded_string_map<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<BTreeMap<String, String>>, D::Error> {
            struct Strings;
            impl<'de> Visitor<'de> for Strings {
                type Value = Option<BTreeMap<String, String>>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a map of strings")
                }
                fn visit_unit<E>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_none<E>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_some<D: serde::Deserializer<'de>>(
                    self,
                    d: D,
                ) -> Result<Self::Value, D::Error> {
                    d.deserialize_map(self)
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut out = BTreeMap::new();
                    while let Some(key) = map.next_key::<String>()? {
                        let value = map.next_value::<String>()?;
                        if !charge(cost::entry(out.len(), key.len() + value.len())) {
                            skip_map(map)?;
                            return Ok(None);
                        }
                        out.insert(key, value);
                    }
                    Ok(Some(out))
                }
            }
            d.deserialize_option(Strings)
        }
        /// A list of strings (finalizers), charged to the decode meter.
        fn bounded_strings<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<String>>, D::Error> {
            bounded_list(d, |s: &String| s.len())
        }
        fn owner_references<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<OwnerReference>>, D::Error> {
            bounded_list(d, |r: &OwnerReference| {
                std::mem::size_of::<OwnerReference>()
                    + r.api_version.len()
                    + r.kind.len()
                    + r.name.len()
                    + r.uid.len()
            })
        }
        const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

        impl From<Meta> for kube::core::ObjectMeta {
            fn from(m: Meta) -> Self {
                kube::core::ObjectMeta {
                    annotations: m.annotations,
                    creation_timestamp: m.creation_timestamp,
                    deletion_grace_period_seconds: m.deletion_grace_period_seconds,
                    deletion_timestamp: m.deletion_timestamp,
                    finalizers: m.finalizers,
                    generate_name: m.generate_name,
                    generation: m.generation,
                    labels: m.labels,
                    managed_fields: None,
                    name: m.name,
                    namespace: m.namespace,
                    owner_references: m.owner_references,
                    resource_version: m.resource_version,
                    self_link: m.self_link,
                    uid: m.uid,
                }
            }
        }
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

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
                        "metadata" => metadata = map.next_value::<Meta>()?.into(),
                        "status" => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        // A Pod's spec is kept as JSON text, decoded by the rules straight
                        // into the typed model (`model::workload::PodSpec`, borrowing its
                        // strings): no tree is built. The text is written as the spec is
                        // scanned, with only the fields the typed model reads
                        // (`POD_SPEC_TEXT`), so the typed decode scans a fraction of it.
                        // Charged to the decode meter as one string.
                        "spec" if kind.as_deref() == Some("Pod") => {
                            let mut text = Vec::with_capacity(1024);
                            map.next_value_seed(PrunedText(Some(&POD_SPEC_TEXT), &mut text))?;
                            // Written from `str`s and ASCII only, so always UTF-8; were it
                            // not, the review is refused rather than judged without its spec.
                            let text = String::from_utf8(text).map_err(|_| {
                                serde::de::Error::custom("a Pod's spec could not be kept as text")
                            })?;
                            if charge(cost::string(text.len())) {
                                data.insert(RAW_POD_SPEC.to_owned(), Value::String(text));
                            }
                        }
                        "spec" => {
                            // Controllers' pod templates lose the parts no rule reads (see
                            // `Shape`); the object's `kind` comes before its `spec` in what
                            // kube-apiserver sends, and without it the spec is kept whole. Either
                            // way what is built is charged to the decode meter (`metered`).
                            let shape = kind.as_deref().and_then(Shape::of_spec);
                            let v = map.next_value_seed(Bounded(shape))?;
                            data.insert(key, v);
                        }
                        // No check reads any other top-level key (`data`, `secrets`, ...):
                        // scanned past, not built.
                        _ => {
                            map.next_value::<IgnoredAny>()?;
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

/// What the webhook keeps of a subtree of a review's object: the keys to build (the others are
/// scanned past without being built), and the shapes of keys (or list items) below. Only the
/// pod templates of controllers are pruned (a Pod's spec is not built at all: it is kept as
/// text and read through `model::workload`, like every template), down to what the rules and mutations read (the ServiceAccount,
/// hostNetwork, security contexts, and each container's name, image, ports, security context
/// and restart policy): building the rest into `Value` trees was most of a Pod review's cost. A
/// rule that starts reading another pod field must add it here; the rules' unit tests decode
/// their objects this way (`rules::testing::obj`), and `tests/integration/pruning.rs` compares
/// pruned and whole decoding over every captured review. `check` and `audit` never prune.
#[derive(Debug)]
pub struct Shape {
    /// The keys to build; empty: all of them.
    keep: &'static [&'static str],
    children: &'static [(&'static str, &'static Shape)],
    /// For a list: the shape of each item.
    items: Option<&'static Shape>,
}

impl Shape {
    /// The shape of the `spec` of an object of `kind`.
    fn of_spec(kind: &str) -> Option<&'static Shape> {
        match Kind::from_name(kind)? {
            Kind::CronJob => Some(&CRONJOB_SPEC),
            k if k.is_workload() => Some(&CONTROLLER_SPEC),
            _ => None,
        }
    }

    fn keeps(&self, key: &str) -> bool {
        self.keep.is_empty() || self.keep.contains(&key)
    }
}

/// The shape of the value under `key` of a map shaped by `shape`: `None` when the shape drops
/// the key, `Some(None)` when the value is kept whole (no shape, or no child shape for it).
fn descend(shape: Option<&'static Shape>, key: &str) -> Option<Option<&'static Shape>> {
    match shape {
        Some(shape) if !shape.keeps(key) => None,
        Some(shape) => Some(
            shape
                .children
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, s)| *s),
        ),
        None => Some(None),
    }
}

/// The pod spec fields checks read.
const POD_SPEC_KEEP: &[&str] = &[
    "serviceAccountName",
    "serviceAccount",
    "hostNetwork",
    "securityContext",
    "containers",
    "initContainers",
    "ephemeralContainers",
];

/// The container fields checks read (`command` and `args`: an `istio-proxy`, `istio-init` or
/// `istio-validation` container that replaces what Istio's injector runs, `wl-proxy-override`).
const CONTAINER_KEEP: &[&str] = &[
    "name",
    "image",
    "ports",
    "securityContext",
    "restartPolicy",
    "command",
    "args",
];

static CONTAINER: Shape = Shape {
    keep: CONTAINER_KEEP,
    children: &[],
    items: None,
};
static CONTAINERS: Shape = Shape {
    keep: &[],
    children: &[],
    items: Some(&CONTAINER),
};
static POD_SPEC: Shape = Shape {
    keep: POD_SPEC_KEEP,
    children: &[
        ("containers", &CONTAINERS),
        ("initContainers", &CONTAINERS),
        ("ephemeralContainers", &CONTAINERS),
    ],
    items: None,
};
/// A Pod's spec as the typed model reads it (`model::workload::PodSpec`), down to the fields of
/// security contexts and ports: the text kept of a Pod's spec ([`RAW_POD_SPEC`]) is only ever
/// read by that typed decode, where the trees of controllers' templates keep whole security
/// contexts and ports.
static POD_SPEC_TEXT: Shape = Shape {
    keep: POD_SPEC_KEEP,
    children: &[
        ("securityContext", &SECURITY_CONTEXT_TEXT),
        ("containers", &CONTAINERS_TEXT),
        ("initContainers", &CONTAINERS_TEXT),
        ("ephemeralContainers", &CONTAINERS_TEXT),
    ],
    items: None,
};
static CONTAINERS_TEXT: Shape = Shape {
    keep: &[],
    children: &[],
    items: Some(&CONTAINER_TEXT),
};
static CONTAINER_TEXT: Shape = Shape {
    keep: CONTAINER_KEEP,
    children: &[
        ("securityContext", &SECURITY_CONTEXT_TEXT),
        ("ports", &PORTS_TEXT),
    ],
    items: None,
};
static SECURITY_CONTEXT_TEXT: Shape = Shape {
    keep: &["runAsUser", "runAsGroup", "privileged", "capabilities"],
    children: &[("capabilities", &CAPABILITIES_TEXT)],
    items: None,
};
static CAPABILITIES_TEXT: Shape = Shape {
    keep: &["add"],
    children: &[],
    items: None,
};
static PORTS_TEXT: Shape = Shape {
    keep: &[],
    children: &[],
    items: Some(&PORT_TEXT),
};
static PORT_TEXT: Shape = Shape {
    keep: &["containerPort", "name"],
    children: &[],
    items: None,
};
static POD_TEMPLATE: Shape = Shape {
    keep: &[],
    children: &[("spec", &POD_SPEC)],
    items: None,
};
static CONTROLLER_SPEC: Shape = Shape {
    keep: &[],
    children: &[("template", &POD_TEMPLATE)],
    items: None,
};
static JOB_TEMPLATE: Shape = Shape {
    keep: &[],
    children: &[("spec", &CONTROLLER_SPEC)],
    items: None,
};
static CRONJOB_SPEC: Shape = Shape {
    keep: &[],
    children: &[("jobTemplate", &JOB_TEMPLATE)],
    items: None,
};

/// Write a JSON value as compact JSON text, with only what its `Shape` keeps (everything when
/// there is no shape): what a Pod's typed decode reads, written in one scan of the body instead
/// of the whole spec kept as raw text and scanned again. Keys, strings and numbers are written
/// as serde_json reads them back (a repeated key stays repeated, so the typed decode reads it
/// as it reads the whole spec: `model::workload::PodSpec::from_text`).
struct PrunedText<'o>(Option<&'static Shape>, &'o mut Vec<u8>);

impl<'de> serde::de::DeserializeSeed<'de> for PrunedText<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A map key, borrowed from the body unless it has escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::de::Visitor<'de> for PrunedText<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let PrunedText(shape, out) = self;
        out.push(b'{');
        let mut first = true;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let Some(child) = descend(shape, &key) else {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            };
            if !first {
                out.push(b',');
            }
            first = false;
            crate::json::write_str(out, &key);
            out.push(b':');
            map.next_value_seed(PrunedText(child, out))?;
        }
        out.push(b'}');
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let PrunedText(shape, out) = self;
        let items = shape.and_then(|s| s.items);
        out.push(b'[');
        let mut first = true;
        loop {
            // The separator is written before the item is known to exist, and taken back after
            // the last one.
            let mark = out.len();
            if !first {
                out.push(b',');
            }
            if seq
                .next_element_seed(PrunedText(items, &mut *out))?
                .is_none()
            {
                out.truncate(mark);
                break;
            }
            first = false;
        }
        out.push(b']');
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.1.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        use std::io::Write as _;
        // Writing to a `Vec` cannot fail.
        let _ = write!(self.1, "{v}");
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        use std::io::Write as _;
        let _ = write!(self.1, "{v}");
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // As serde_json writes it (a JSON number is always finite).
        let n = serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
        self.1.extend_from_slice(n.to_string().as_bytes());
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        crate::json::write_str(self.1, v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.1.extend_from_slice(b"null");
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.1.extend_from_slice(b"null");
        Ok(())
    }
}

/// Decode a JSON value into a `Value`, building only what its `Shape` keeps (everything when
/// there is no shape), and charging what it builds to the decode meter: once the meter says
/// stop, the rest of the value is scanned past without being built (the review is then
/// answered as too large, see [`metered`]).
struct Bounded(Option<&'static Shape>);

impl<'de> serde::de::DeserializeSeed<'de> for Bounded {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn skip_map<'de, A: serde::de::MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
        map.next_value::<serde::de::IgnoredAny>()?;
    }
    Ok(())
}

fn skip_seq<'de, A: serde::de::SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A list whose items are charged to the decode meter by `size` (metadata lists).
fn bounded_list<'de, D, T, F>(d: D, size: F) -> Result<Option<Vec<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
    F: Fn(&T) -> usize,
{
    struct List<T, F>(F, std::marker::PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>, F: Fn(&T) -> usize> serde::de::Visitor<'de> for List<T, F> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<T>()? {
                if !charge(cost::ITEM + (self.0)(&item)) {
                    skip_seq(seq)?;
                    return Ok(None);
                }
                out.push(item);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(List(size, std::marker::PhantomData))
}

impl<'de> serde::de::Visitor<'de> for Bounded {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Some(child) = descend(self.0, &key) else {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            };
            if !charge(cost::entry(out.len(), key.len())) {
                map.next_value::<serde::de::IgnoredAny>()?;
                skip_map(map)?;
                return Ok(Value::Null);
            }
            let v = map.next_value_seed(Bounded(child))?;
            if stopped() {
                skip_map(map)?;
                return Ok(Value::Null);
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        let items = self.0.and_then(|s| s.items);
        loop {
            if !charge(cost::ITEM) {
                skip_seq(seq)?;
                return Ok(Value::Null);
            }
            match seq.next_element_seed(Bounded(items))? {
                Some(v) => out.push(v),
                None => break,
            }
            if stopped() {
                skip_seq(seq)?;
                return Ok(Value::Null);
            }
        }
        Ok(Value::Array(out))
    }
    // Anything else where a map or list was expected is kept as it is: the rules and the
    // Istio-parity checks report wrong types.
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        if !charge(cost::string(v.len())) {
            return Ok(Value::Null);
        }
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        if !charge(cost::string(v.len())) {
            return Ok(Value::Null);
        }
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// What the decoded trees of one review cost, estimated from what is built (the heap of
/// `serde_json::Value` trees with B-tree maps: a map's first leaf is ~630 bytes however few its
/// keys), rounded up so that the estimate stays above what the allocator hands out.
mod cost {
    /// One list item or map value slot (`Value` is 32 bytes; vectors grow by doubling).
    pub(crate) const ITEM: usize = 64;
    /// A string of `len` bytes (allocator rounding and header included).
    pub fn string(len: usize) -> usize {
        len + 16
    }
    /// The `n`-th entry (from 0) of a map, with `text` bytes of key (and value, for string maps).
    pub fn entry(n: usize, text: usize) -> usize {
        let node = if n == 0 { 640 } else { 96 };
        node + string(text)
    }
}

/// What decoding one review may build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Estimated heap bytes of the decoded objects of one review (object, oldObject and the
    /// user's groups and extras; `options` is scanned past, not built).
    pub max_decoded_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_decoded_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Why decoding stopped building.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// The review alone needs more than [`DecodeLimits::max_decoded_bytes`].
    Review,
    /// The shared budget of the reviews in flight has no room now.
    Shared,
}

/// What one metered decode built.
#[derive(Debug, Default)]
pub struct DecodeReport {
    /// Estimated heap bytes of what was built.
    pub decoded_bytes: usize,
    /// Set when something was skipped for want of room: the decoded objects are incomplete and
    /// must not be judged.
    pub overflow: Option<Overflow>,
    /// The bytes held on the shared budget for what was built; release when the review is done.
    pub(crate) reservation: crate::budget::Reservation,
}

/// The meter of the decode running on this thread.
struct Meter {
    cap: usize,
    used: usize,
    reservation: crate::budget::Reservation,
    overflow: Option<Overflow>,
}

thread_local! {
    /// `None` outside [`metered`]: decoding builds without bounds (`check`, `audit` and tests
    /// decode trusted or small input through the same types).
    static METER: std::cell::RefCell<Option<Meter>> = const { std::cell::RefCell::new(None) };
}

/// Reserve from the shared budget in steps of this many bytes.
const RESERVE_STEP: usize = 64 * 1024;

/// Charge `n` bytes to this thread's meter; `false` once the decode must stop building.
fn charge(n: usize) -> bool {
    METER.with(|m| {
        let Ok(mut m) = m.try_borrow_mut() else {
            return false;
        };
        let Some(m) = m.as_mut() else {
            return true;
        };
        if m.overflow.is_some() {
            return false;
        }
        m.used = m.used.saturating_add(n);
        if m.used > m.cap {
            m.overflow = Some(Overflow::Review);
            return false;
        }
        let held = m.reservation.bytes();
        if m.used > held && !m.reservation.grow((m.used - held).max(RESERVE_STEP)) {
            m.overflow = Some(Overflow::Shared);
            return false;
        }
        true
    })
}

/// Whether this thread's decode has been told to stop building.
fn stopped() -> bool {
    METER.with(|m| {
        m.try_borrow()
            .map(|m| m.as_ref().is_some_and(|m| m.overflow.is_some()))
            .unwrap_or(true)
    })
}

/// Run `decode` (a synchronous serde decode of one review) with a meter: the [`ReviewObject`]s
/// and other bounded parts it decodes charge what they build, at most
/// `limits.max_decoded_bytes` and whatever `reservation`'s budget still has room for. Past
/// either, the rest is scanned without being built and the report says which limit was hit:
/// incomplete objects are never judged (truncating a list could hide the item a rule would
/// deny), the review is answered as too large (or 429 when only the shared budget is full).
pub(crate) fn metered<T>(
    limits: DecodeLimits,
    reservation: crate::budget::Reservation,
    decode: impl FnOnce() -> T,
) -> (T, DecodeReport) {
    let meter = Meter {
        cap: limits.max_decoded_bytes,
        used: 0,
        reservation,
        overflow: None,
    };
    let outer = METER.with(|m| m.replace(Some(meter)));
    let out = decode();
    let meter = METER.with(|m| m.replace(outer));
    let report = match meter {
        Some(m) => DecodeReport {
            decoded_bytes: m.used,
            overflow: m.overflow,
            reservation: m.reservation,
        },
        None => DecodeReport::default(),
    };
    (out, report)
}

/// A list of strings charged to the decode meter (a review's `userInfo.groups`).
pub(crate) fn bounded_string_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    bounded_list(d, |s: &String| s.len())
}

/// A map of string lists charged to the decode meter (a review's `userInfo.extra`).
pub(crate) fn bounded_extra<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, Vec<String>>>, D::Error> {
    struct Extra;
    impl<'de> serde::de::Visitor<'de> for Extra {
        type Value = Option<BTreeMap<String, Vec<String>>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of string lists")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if !charge(cost::entry(out.len(), key.len())) {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    skip_map(map)?;
                    return Ok(None);
                }
                let values = map.next_value_seed(StringList)?.unwrap_or_default();
                out.insert(key, values);
            }
            Ok(Some(out))
        }
    }
    struct StringList;
    impl<'de> serde::de::DeserializeSeed<'de> for StringList {
        type Value = Option<Vec<String>>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            bounded_string_list(d)
        }
    }
    d.deserialize_option(Extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_specs_keep_only_what_checks_read() {
        let spec = json!({"volumes": [{"name": "v"}], "hostNetwork": true, "serviceAccountName": "web",
                "nodeName": "n1", "someFutureField": {"a": 1},
                "containers": [{"name": "app", "image": "i", "env": [{"name": "X"}],
                    "ports": [{"containerPort": 80}], "securityContext": {"runAsUser": 1337}}],
                "initContainers": [{"name": "istio-proxy", "restartPolicy": "Always", "args": ["x"],
                    "resources": {}}]});
        let text = serde_json::to_vec(&json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec.clone()}}
        }))
        .expect("encodes");
        let deployment: ReviewObject = serde_json::from_slice(&text).expect("deployment");
        assert_eq!(
            deployment.0.data["spec"]["template"]["spec"],
            json!({"hostNetwork": true, "serviceAccountName": "web",
                "containers": [{"name": "app", "image": "i", "ports": [{"containerPort": 80}],
                    "securityContext": {"runAsUser": 1337}}],
                "initContainers": [{"name": "istio-proxy", "restartPolicy": "Always", "args": ["x"]}]})
        );
        // A Pod's spec is kept as its text, read through the typed model: no tree.
        let text = serde_json::to_vec(&json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec
        }))
        .expect("encodes");
        let pod: ReviewObject = serde_json::from_slice(&text).expect("pod");
        assert!(pod.0.data.get("spec").is_none());
        // Written as the spec is scanned, with only what the typed model reads.
        assert_eq!(
            pod.0.data[RAW_POD_SPEC],
            json!(concat!(
                r#"{"containers":[{"image":"i","name":"app","ports":[{"containerPort":80}],"#,
                r#""securityContext":{"runAsUser":1337}}],"hostNetwork":true,"#,
                r#""initContainers":[{"args":["x"],"name":"istio-proxy","restartPolicy":"Always"}],"#,
                r#""serviceAccountName":"web"}"#
            ))
        );
        let t = crate::model::workload::PodTemplate::of(Kind::Pod, &pod.0).expect("template");
        assert!(t.host_network());
        assert_eq!(t.service_account(), Some(("serviceAccountName", "web")));
        let c: Vec<_> = t
            .containers()
            .map(|c| (c.list, c.name(), c.image()))
            .collect();
        assert_eq!(
            c,
            [
                ("containers", "app", Some("i")),
                ("initContainers", "istio-proxy", None)
            ]
        );
        assert!(t.containers().nth(1).is_some_and(|c| c.is_native_sidecar()));
        // Templates of controllers (CronJob's one level deeper) too; other kinds are kept whole.
        let cron: ReviewObject = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"tolerations": [], "containers": [{"name": "c", "resources": {}}]}}}}}
        }))
        .expect("cronjob");
        assert_eq!(
            cron.0.data["spec"],
            json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}}}})
        );
        let svc: ReviewObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"volumes": 1, "ports": [{"port": 80}]}
        }))
        .expect("service");
        assert_eq!(
            svc.0.data["spec"],
            json!({"volumes": 1, "ports": [{"port": 80}]})
        );
        // A spec of the wrong type is kept as it is (a Pod's as its text, which reads as
        // nothing set).
        let odd: ReviewObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}, "spec": "nope"
        }))
        .expect("deployment");
        assert_eq!(odd.0.data["spec"], json!("nope"));
        let odd: ReviewObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": "nope"
        }))
        .expect("pod");
        assert_eq!(odd.0.data[RAW_POD_SPEC], json!("\"nope\""));
        let t = crate::model::workload::PodTemplate::of(Kind::Pod, &odd.0).expect("template");
        assert_eq!(t.containers().count(), 0);
    }

    /// A Pod's spec as the webhook reads it (its pruned text, typed) and as a JSON tree reads
    /// it, side by side.
    fn pod_spec_both_ways(object_text: &str) -> (String, String) {
        use crate::model::workload::{PodSpec, PodTemplate};
        let o: ReviewObject = serde_json::from_str(object_text).expect("object decodes");
        let t = PodTemplate::of(Kind::Pod, &o.0).expect("template");
        let tree: Value = serde_json::from_str(object_text).expect("tree");
        (
            format!("{:?}", t.spec),
            format!("{:?}", PodSpec::of(&tree["spec"])),
        )
    }

    #[test]
    fn pod_spec_text_reads_as_the_whole_spec_in_every_captured_review() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut compared = 0;
        for dir in ["tests/fixtures/admission", "fuzz/seeds/admission"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(review) = std::fs::read(&path)
                    .map_err(|_| ())
                    .and_then(|t| serde_json::from_slice::<Value>(&t).map_err(|_| ()))
                else {
                    continue;
                };
                for field in ["object", "oldObject"] {
                    let obj = &review["request"][field];
                    if obj["kind"] != "Pod" {
                        continue;
                    }
                    let text = serde_json::to_string(obj).expect("json");
                    let (typed, tree) = pod_spec_both_ways(&text);
                    assert_eq!(typed, tree, "{} {field}", path.display());
                    compared += 1;
                }
            }
        }
        assert!(compared >= 20, "only {compared} Pods compared");
    }

    #[test]
    fn pod_spec_text_reads_repeated_keys_and_odd_values_as_a_tree_does() {
        // A repeated key is kept repeated, and read as a JSON tree reads it: the last one wins
        // (never refused); numbers, escapes and wrong types read back as they were written.
        let cases = [
            concat!(
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"#,
                r#""hostNetwork":true,"hostNetwork":false,"serviceAccountName":"a","#,
                r#""containers":[{"name":"x","image":"i","name":"istio-proxy"}],"#,
                r#""serviceAccountName":"b"}}"#
            ),
            concat!(
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"#,
                r#""securityContext":{"runAsUser":1e3,"runAsGroup":-5,"runAsUser":1.5},"#,
                r#""containers":[{"na\u006de":"a\"b\n\u00e9","ports":[{"containerPort":18446744073709551615},"#,
                r#"{"containerPort":"80","name":7},null,3],"securityContext":{"privileged":"yes","#,
                r#""capabilities":{"add":["NET_ADMIN",1,null,{"a":[]}]}},"args":[],"command":null},"#,
                r#"[],"x"],"initContainers":{},"serviceAccount":["a"]}}"#
            ),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{},"spec":[{"hostNetwork":true}]}"#,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{},"spec":null}"#,
        ];
        for text in cases {
            let (typed, tree) = pod_spec_both_ways(text);
            assert_eq!(typed, tree, "{text}");
        }
        let o: ReviewObject = serde_json::from_str(cases[0]).expect("decodes");
        let t = crate::model::workload::PodTemplate::of(Kind::Pod, &o.0).expect("template");
        assert!(!t.host_network());
        assert_eq!(t.service_account(), Some(("serviceAccountName", "b")));
        assert_eq!(
            t.containers()
                .map(|c| (c.name(), c.image()))
                .collect::<Vec<_>>(),
            [("istio-proxy", Some("i"))]
        );
    }

    #[test]
    fn metered_decoding_charges_what_it_builds_and_stops_at_the_limit() {
        let small = DecodeLimits {
            max_decoded_bytes: 64 * 1024,
        };
        let obj = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"mtls": {"mode": "STRICT"}},
            "data": vec!["unread"; 50_000], "status": {"x": 1}});
        let text = serde_json::to_vec(&obj).expect("json");
        let (o, report) = metered(small, crate::budget::Reservation::unbounded(), || {
            serde_json::from_slice::<ReviewObject>(&text)
        });
        let o = o.expect("decodes");
        assert_eq!(report.overflow, None, "unread top-level keys are not built");
        assert!(
            report.decoded_bytes > 0 && report.decoded_bytes < 8 * 1024,
            "{report:?}"
        );
        assert_eq!(o.0.data, json!({"spec": {"mtls": {"mode": "STRICT"}}}));

        // Lists, maps and strings past the limit: the decode finishes (the rest of the input is
        // scanned), what was built is reported incomplete, and the shared budget is charged.
        let budget = crate::budget::Budget::new(1 << 30);
        for spec in [
            json!({"x": vec![1; 100_000]}),
            json!({"x": (0..5_000).map(|i| (format!("k{i}"), json!(i))).collect::<serde_json::Map<_, _>>()}),
            json!({"x": "y".repeat(100_000)}),
            json!({"x": vec![json!({"a": {"b": 1}}); 1_000]}),
        ] {
            let text = serde_json::to_vec(&json!({"kind": "PeerAuthentication", "spec": spec}))
                .expect("json");
            let (o, report) = metered(small, budget.reserve(), || {
                serde_json::from_slice::<ReviewObject>(&text)
            });
            assert!(o.is_ok());
            assert_eq!(report.overflow, Some(Overflow::Review));
            assert!(
                report.reservation.bytes() >= report.decoded_bytes.min(small.max_decoded_bytes)
            );
        }
        assert_eq!(budget.used(), 0);

        // A shared budget without room stops the decode too, and says so.
        let tight = crate::budget::Budget::new(1024);
        let text =
            serde_json::to_vec(&json!({"kind": "Service", "spec": {"ports": [{"port": 80}]}}))
                .expect("json");
        let (_, report) = metered(DecodeLimits::default(), tight.reserve(), || {
            serde_json::from_slice::<ReviewObject>(&text)
        });
        assert_eq!(report.overflow, Some(Overflow::Shared));

        // Outside a meter nothing is bounded (check, audit, tests).
        let text = serde_json::to_vec(
            &json!({"kind": "PeerAuthentication", "spec": {"x": vec![1; 100_000]}}),
        )
        .expect("json");
        let o: ReviewObject = serde_json::from_slice(&text).expect("decodes");
        assert_eq!(
            o.0.data["spec"]["x"].as_array().map(Vec::len),
            Some(100_000)
        );
    }

    #[test]
    fn kind_facts_cover_every_kind_once() {
        assert_eq!(KIND_FACTS.len(), Kind::ALL.len());
        for (f, k) in KIND_FACTS.iter().zip(Kind::ALL) {
            assert_eq!(f.kind, *k, "KIND_FACTS follows Kind::ALL");
            assert_eq!(k.facts().kind, *k);
            for v in f.versions {
                assert_eq!(Kind::from_gvk(f.group, v, k.as_str()), Some(*k));
            }
            assert_eq!(Kind::from_name(k.as_str()), Some(*k));
        }
        let workloads: Vec<Kind> = Kind::ALL
            .iter()
            .copied()
            .filter(|k| k.is_workload())
            .collect();
        assert_eq!(workloads, Kind::WORKLOADS);
        assert_eq!(
            Kind::from_gvk("networking.istio.io", "v1alpha3", "DestinationRule"),
            Some(Kind::DestinationRule)
        );
        assert_eq!(
            Kind::from_gvk("security.istio.io", "v1alpha1", "PeerAuthentication"),
            None
        );
        assert_eq!(Kind::from_gvk("apps", "v1beta1", "Deployment"), None);
        assert!(Kind::AuthorizationPolicy.is_istio() && !Kind::Pod.is_istio());
    }

    #[test]
    fn controlled_objects_are_judged_through_their_controller() {
        let owned = |api_version: &str, kind: &str, controller: bool| -> DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "ownerReferences": [{"apiVersion": api_version, "kind": kind,
                    "name": "o", "uid": "u", "controller": controller}]}
            }))
            .expect("pod")
        };
        assert!(is_controlled(&owned("apps/v1", "ReplicaSet", true)));
        assert_eq!(
            controller_kind(&owned("apps/v1", "ReplicaSet", true)),
            Some(Kind::ReplicaSet)
        );
        assert!(is_controlled(&owned("batch/v1", "Job", true)));
        assert!(is_controlled(&owned("v1", "ReplicationController", true)));
        assert!(!is_controlled(&owned("apps/v1", "ReplicaSet", false)));
        assert!(!is_controlled(&owned("v1", "Node", true)));
        // The kind alone is not enough: group and version must be the controller's.
        assert!(!is_controlled(&owned(
            "fake.example.com/v1",
            "Deployment",
            true
        )));
        assert!(!is_controlled(&owned("apps/v1beta1", "Deployment", true)));
        assert!(!is_controlled(&owned("apps/v1", "Job", true)));
        assert!(!is_controlled(&owned("Deployment", "Deployment", true)));
    }

    #[test]
    fn review_object_drops_managed_fields_and_status_only() {
        let o: ReviewObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n", "labels": {"app": "a"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "a": "b"},
                         "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"serviceAccountName": "default"},
            "status": {"phase": "Pending"}
        }))
        .expect("decodes");
        assert_eq!(o.0.metadata.name.as_deref(), Some("p"));
        assert_eq!(labels_of(&o.0).get("app").map(String::as_str), Some("a"));
        assert!(o.0.metadata.managed_fields.is_none());
        assert_eq!(
            o.0.metadata.annotations,
            Some(BTreeMap::from([("a".to_owned(), "b".to_owned())])),
            "last-applied-configuration is not kept"
        );
        assert_eq!(
            o.0.data,
            json!({RAW_POD_SPEC: "{\"serviceAccountName\":\"default\"}"})
        );
        assert_eq!(o.0.types.as_ref().map(|t| t.kind.as_str()), Some("Pod"));
        assert!(serde_json::from_value::<ReviewObject>(json!([1])).is_err());
        assert!(
            serde_json::from_value::<ReviewObject>(json!({"metadata": {"labels": {"a": 1}}}))
                .is_err()
        );
    }
}
