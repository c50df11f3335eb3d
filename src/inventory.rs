//! The objects of one run, indexed once: the manifests `check` reads, the cluster `audit` (and
//! serve's periodic audit) lists, or a table a test builds. Everything that needs more than the
//! object under review asks it: the rules through [`ClusterView`] (it is one), the cross-resource
//! checks, effective mTLS, the authorization simulator and the posture page.
//!
//! What the inventory does not hold depends on how it was built: a *complete* inventory (a live
//! listing) is the whole cluster, so an absent namespace or ServiceAccount does not exist; a
//! *partial* one (manifests) is conclusive only where it speaks: a namespace some object lives in
//! exists, and a namespace whose ServiceAccounts the input lists has no others.

use crate::context::{ClusterSource, ClusterView, Lookup};
use crate::finding::Subject;
use crate::model::workload::PodTemplate;
use crate::mtls::Workload;
use crate::resource::{is_controlled, Kind, Review};
use kube::core::DynamicObject;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

/// One object of the inventory, with where it came from.
///
/// Held compact: the whole object as its compact JSON text (one allocation, ~0.4 KB for a
/// Deployment), decoded when a reader asks ([`Object::object`], [`Object::spec`],
/// [`Object::metadata`]), beside the few facts every reader asks for, read once: name,
/// namespace, labels, uid, the Istio dry-run annotation, whether it is being deleted. A
/// `serde_json::Value` tree costs a 632-byte B-tree node per map (~10 KB for a Deployment), and a
/// decoded `ObjectMeta` ~0.45 KB inline however few of its fields are set. The workload view the
/// cross checks share is decoded once, at construction.
#[derive(Clone, Debug)]
pub struct Object {
    pub kind: Kind,
    /// API version (`v1`, `v1beta1`, ...).
    pub version: String,
    /// The manifest file and line it was read from (`check`).
    pub file: Option<Arc<str>>,
    pub line: Option<usize>,
    /// The whole object (`apiVersion`, `kind`, `metadata` and the rest) as compact JSON.
    text: Box<str>,
    name: Box<str>,
    /// `metadata.namespace` as written (empty when absent).
    namespace: Box<str>,
    labels: BTreeMap<String, String>,
    uid: Box<str>,
    /// `apiVersion` as the object states it (empty when it does not).
    stated_api_version: Box<str>,
    /// Its workload view, for a top-level workload ([`Inventory::workloads`]); taken by
    /// [`Inventory::push`] (which decodes it again for a copy pushed into another inventory).
    workload: Option<Box<Workload>>,
    /// Controlled by a controller of pods (judged through it, [`is_controlled`]).
    controlled: bool,
    /// `istio.io/dry-run` set ([`crate::model::labels::is_dry_run_meta`]).
    dry_run: bool,
    /// `metadata.deletionTimestamp` set.
    terminating: bool,
}

impl Object {
    /// Keep `object` compactly (see [`Object`]).
    pub fn new(
        kind: Kind,
        version: String,
        object: DynamicObject,
        file: Option<Arc<str>>,
        line: Option<usize>,
    ) -> Object {
        let controlled = is_controlled(&object);
        let workload = if kind.is_workload() && !controlled {
            Workload::from_object(kind, &object).map(Box::new)
        } else {
            None
        };
        let text = serde_json::to_string(&object)
            .unwrap_or_default()
            .into_boxed_str();
        let DynamicObject {
            types, metadata, ..
        } = object;
        let dry_run = crate::model::labels::is_dry_run_meta(&metadata);
        let kube::core::ObjectMeta {
            name,
            namespace,
            labels,
            uid,
            deletion_timestamp,
            ..
        } = metadata;
        let boxed = |s: Option<String>| s.unwrap_or_default().into_boxed_str();
        Object {
            kind,
            version,
            file,
            line,
            text,
            name: boxed(name),
            namespace: boxed(namespace),
            labels: labels.unwrap_or_default(),
            uid: boxed(uid),
            stated_api_version: boxed(types.map(|t| t.api_version)),
            workload,
            controlled,
            dry_run,
            terminating: deletion_timestamp.is_some(),
        }
    }

    /// The whole object, decoded.
    pub fn object(&self) -> DynamicObject {
        serde_json::from_str::<Whole>(&self.text).map_or_else(
            |_| DynamicObject {
                types: None,
                metadata: Default::default(),
                data: Value::Object(Default::default()),
            },
            |w| w.0,
        )
    }

    /// `apiVersion` and `kind` as the object states them, decoded.
    pub fn types(&self) -> Option<kube::core::TypeMeta> {
        self.object().types
    }

    /// Its `metadata`, decoded.
    pub fn metadata(&self) -> kube::core::ObjectMeta {
        #[derive(serde::Deserialize)]
        struct Meta {
            #[serde(default)]
            metadata: kube::core::ObjectMeta,
        }
        serde_json::from_str::<Meta>(&self.text).map_or_else(|_| Default::default(), |m| m.metadata)
    }

    /// Everything but `apiVersion`, `kind` and `metadata` (as `DynamicObject::data`), decoded.
    pub fn data(&self) -> Value {
        self.object().data
    }

    /// Its `spec`, decoded (`null` when absent, as [`crate::resource::spec_of`]).
    pub fn spec(&self) -> Value {
        #[derive(serde::Deserialize)]
        struct Spec {
            #[serde(default)]
            spec: Value,
        }
        serde_json::from_str::<Spec>(&self.text).map_or(Value::Null, |s| s.spec)
    }

    /// Its `spec` decoded into a model struct, owning its strings (as
    /// [`crate::model::decode_spec`]).
    pub(crate) fn decode_spec<T: serde::Deserialize<'static> + Default>(
        &self,
    ) -> Result<T, crate::model::Malformed> {
        crate::model::decode_spec_owned(self.spec())
    }

    /// The pod template of a workload kind, decoded (as [`PodTemplate::of`] its object).
    pub fn template(&self) -> Option<PodTemplate<'static>> {
        self.kind.facts().pod_template?;
        PodTemplate::of(self.kind, &self.object()).map(PodTemplate::into_owned)
    }

    /// This object as a CREATE review of `object` (its [`Object::object`]).
    pub fn review<'a>(&'a self, object: &'a DynamicObject) -> Review<'a> {
        Review::create(
            self.kind,
            &self.version,
            self.namespace(),
            self.name(),
            object,
        )
    }

    /// The namespace it lives in (its own name for a Namespace).
    pub fn namespace(&self) -> &str {
        if self.kind == Kind::Namespace {
            self.name()
        } else {
            &self.namespace
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// Its `metadata.uid` (empty when absent).
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Whether it is being deleted (`metadata.deletionTimestamp` set).
    pub(crate) fn is_terminating(&self) -> bool {
        self.terminating
    }

    /// Whether it is Istio dry-run (`istio.io/dry-run: "true"`), as [`crate::model::labels::is_dry_run`].
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// What a finding about this object names.
    pub fn subject(&self) -> Subject {
        Subject {
            api_version: self.api_version(),
            kind: self.kind.as_str().to_owned(),
            namespace: self.namespace().to_owned(),
            name: self.name().to_owned(),
            uid: self.uid.to_string(),
            file: self.file.clone(),
            line: self.line,
        }
    }

    /// `apiVersion` as the object states it, else from its kind's group and the version it was
    /// read as.
    pub fn api_version(&self) -> String {
        if !self.stated_api_version.is_empty() {
            return self.stated_api_version.to_string();
        }
        let group = self.kind.facts().group;
        if group.is_empty() {
            self.version.clone()
        } else {
            format!("{group}/{}", self.version)
        }
    }
}

/// A [`DynamicObject`] read back from the text [`Object::new`] wrote: `apiVersion`, `kind` and
/// `metadata` taken out, every other member kept in `data`, as `DynamicObject`'s own
/// deserializer does, but without serde's `flatten` (which buffers the whole object first).
struct Whole(DynamicObject);

impl<'de> serde::Deserialize<'de> for Whole {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Whole, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Whole;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Kubernetes object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Whole, A::Error> {
                let (mut api_version, mut kind, mut metadata) = (None, None, None);
                let mut data = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "apiVersion" => api_version = Some(map.next_value::<String>()?),
                        "kind" => kind = Some(map.next_value::<String>()?),
                        "metadata" => metadata = Some(map.next_value()?),
                        _ => {
                            let value = map.next_value()?;
                            data.insert(key, value);
                        }
                    }
                }
                let types = match (api_version, kind) {
                    (Some(api_version), Some(kind)) => {
                        Some(kube::core::TypeMeta { api_version, kind })
                    }
                    _ => None,
                };
                Ok(Whole(DynamicObject {
                    types,
                    metadata: metadata.unwrap_or_default(),
                    data: Value::Object(data),
                }))
            }
        }
        d.deserialize_map(Members)
    }
}

/// A workload as the cross checks see it: the top-level controller (Pods, ReplicaSets and Jobs
/// owned by a controller of pods are counted through that controller), read through its pod
/// template.
#[derive(Clone, Debug)]
pub struct InventoryWorkload {
    /// Index of its object in [`Inventory::objects`].
    pub object: usize,
    pub workload: Workload,
}

/// Namespaces and ServiceAccount names an inventory answers lookups from without holding them
/// as its objects: the cluster's, listed once and shared by every batch of a streamed audit
/// ([`crate::audit_stream`]) instead of copied into each ([`Inventory::with_shared`]).
#[derive(Debug, Default)]
pub struct SharedNamespaces {
    /// Every Namespace, by name (identity metadata).
    pub namespaces: BTreeMap<String, Object>,
    /// ServiceAccount names by namespace.
    pub accounts: HashMap<String, Vec<String>>,
}

impl SharedNamespaces {
    fn has_account(&self, namespace: &str, name: &str) -> bool {
        self.accounts
            .get(namespace)
            .is_some_and(|names| names.iter().any(|n| n == name))
    }
}

/// The objects of one run, with the indexes every consumer shares.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    objects: Vec<Object>,
    complete: bool,
    /// Namespaces and ServiceAccounts known beyond `objects` (lookups only: they are not
    /// [`Inventory::objects`], [`Inventory::namespace_objects`] or [`Inventory::of_kind`]).
    shared: Option<Arc<SharedNamespaces>>,
    /// Namespace objects by name.
    namespaces: HashMap<String, usize>,
    /// Namespaces any object lives in (Namespace objects included).
    seen_namespaces: BTreeSet<String>,
    service_accounts: HashSet<(String, String)>,
    /// Namespaces whose ServiceAccounts the input lists.
    account_namespaces: HashSet<String>,
    by_kind: HashMap<Kind, Vec<usize>>,
    /// Indexes of the objects sorted by (kind, namespace, name, index): what [`Inventory::find`]
    /// searches (4 bytes an object, where a map keyed by owned names took ~130). Built on the
    /// first search after a push.
    by_subject: OnceLock<Vec<u32>>,
    workloads: Vec<InventoryWorkload>,
    workloads_by_namespace: HashMap<String, Vec<usize>>,
}

impl Inventory {
    /// The whole cluster (a live listing): what it lacks does not exist.
    pub fn complete(objects: Vec<Object>) -> Inventory {
        Inventory::build(objects, true)
    }

    /// Part of a cluster (manifests): conclusive only where it speaks.
    pub fn partial(objects: Vec<Object>) -> Inventory {
        Inventory::build(objects, false)
    }

    fn build(objects: Vec<Object>, complete: bool) -> Inventory {
        let mut inv = Inventory {
            complete,
            ..Inventory::default()
        };
        inv.reserve(objects.len());
        for o in objects {
            inv.push(o);
        }
        inv
    }

    /// Room for `additional` more objects.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.objects.reserve_exact(additional);
    }

    /// Answer namespace and ServiceAccount lookups from `shared` too (every batch of a streamed
    /// audit shares the cluster's): [`Inventory::namespace`], [`Inventory::namespace_exists`],
    /// [`Inventory::namespace_names`], [`Inventory::find`] of a Namespace and
    /// [`ClusterView`]'s lookups see them; iterating the objects and
    /// [`Inventory::namespace_objects`] does not (a batch's cross checks iterate its own
    /// namespaces).
    pub(crate) fn with_shared(mut self, shared: Arc<SharedNamespaces>) -> Inventory {
        self.shared = Some(shared);
        self
    }

    /// Add one object and index it.
    pub fn push(&mut self, mut o: Object) {
        let i = self.objects.len();
        let ns = o.namespace().to_owned();
        if !ns.is_empty() {
            self.seen_namespaces.insert(ns.clone());
        }
        match o.kind {
            Kind::Namespace => {
                // The last definition wins, as applying the manifests in order leaves it.
                self.namespaces.insert(ns.clone(), i);
            }
            Kind::ServiceAccount => {
                self.service_accounts
                    .insert((ns.clone(), o.name().to_owned()));
                self.account_namespaces.insert(ns.clone());
            }
            k if k.is_workload() && !o.controlled => {
                let workload = match o.workload.take() {
                    Some(w) => Some(*w),
                    None => Workload::from_object(k, &o.object()),
                };
                if let Some(workload) = workload {
                    self.workloads_by_namespace
                        .entry(ns.clone())
                        .or_default()
                        .push(self.workloads.len());
                    self.workloads.push(InventoryWorkload {
                        object: i,
                        workload,
                    });
                }
            }
            _ => {}
        }
        self.by_kind.entry(o.kind).or_default().push(i);
        self.by_subject.take();
        self.objects.push(o);
    }

    /// Add a Namespace with `labels` (tests and tools building a cluster by hand).
    pub fn with_namespace(mut self, name: &str, labels: &[(&str, &str)]) -> Inventory {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.insert_namespace(name, labels);
        self
    }

    /// Add a Namespace that is being deleted (Terminating).
    pub fn with_terminating_namespace(mut self, name: &str, labels: &[(&str, &str)]) -> Inventory {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut object = synthetic("Namespace", name, None, labels);
        object.metadata.deletion_timestamp = "1970-01-01T00:00:00Z"
            .parse()
            .ok()
            .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
        self.push(Object::new(
            Kind::Namespace,
            "v1".to_owned(),
            object,
            None,
            None,
        ));
        self
    }

    /// Add a ServiceAccount (tests and tools building a cluster by hand).
    pub fn with_service_account(mut self, namespace: &str, name: &str) -> Inventory {
        self.insert_service_account(namespace, name);
        self
    }

    /// Add (or redefine) a Namespace with `labels`.
    pub fn insert_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.push(Object::new(
            Kind::Namespace,
            "v1".to_owned(),
            synthetic("Namespace", name, None, labels),
            None,
            None,
        ));
    }

    /// Add a ServiceAccount.
    pub fn insert_service_account(&mut self, namespace: &str, name: &str) {
        self.push(Object::new(
            Kind::ServiceAccount,
            "v1".to_owned(),
            synthetic("ServiceAccount", name, Some(namespace), BTreeMap::new()),
            None,
            None,
        ));
    }

    /// The inventory is the whole cluster.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn objects(&self) -> &[Object] {
        &self.objects
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The objects of the kinds `keep` takes, each decoded ([`Object::object`]) as the iterator
    /// reaches it, with its kind: what [`crate::authz::PolicySet::new`] and
    /// [`crate::dataplane::Topology::new`] read (pass their `reads`).
    pub fn decoded<'a>(
        &'a self,
        keep: impl Fn(Kind) -> bool + 'a,
    ) -> impl Iterator<Item = (Kind, DynamicObject)> + 'a {
        self.decoded_where(move |kind, _| keep(kind))
    }

    /// [`Inventory::decoded`], of the objects `keep` takes by kind and namespace (the namespace
    /// is read before the object is decoded).
    pub(crate) fn decoded_where<'a>(
        &'a self,
        keep: impl Fn(Kind, &str) -> bool + 'a,
    ) -> impl Iterator<Item = (Kind, DynamicObject)> + 'a {
        self.objects
            .iter()
            .filter(move |o| keep(o.kind, o.namespace()))
            .map(|o| (o.kind, o.object()))
    }

    /// The objects of one kind, in input order.
    pub(crate) fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Object> + '_ {
        self.by_kind
            .get(&kind)
            .into_iter()
            .flatten()
            .map(|i| &self.objects[*i])
    }

    /// The object of a kind, namespace and name (the last one when the input repeats it).
    pub fn find(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Object> {
        fn key(o: &Object) -> (Kind, &str, &str) {
            (o.kind, o.namespace(), o.name())
        }
        let wanted = (kind, namespace, name);
        let sorted = self.by_subject.get_or_init(|| {
            let mut sorted: Vec<u32> = (0..self.objects.len() as u32).collect();
            // Stable: equal subjects stay in input order, so the last one is the last defined.
            sorted.sort_by(|a, b| {
                key(&self.objects[*a as usize]).cmp(&key(&self.objects[*b as usize]))
            });
            sorted
        });
        // The last definition wins, as for Namespaces.
        let end = sorted.partition_point(|i| key(&self.objects[*i as usize]) <= wanted);
        let found = end
            .checked_sub(1)
            .map(|e| &self.objects[sorted[e] as usize])
            .filter(|o| key(o) == wanted);
        match found {
            None if kind == Kind::Namespace => self.shared_namespace(name),
            found => found,
        }
    }

    fn shared_namespace(&self, name: &str) -> Option<&Object> {
        self.shared.as_ref()?.namespaces.get(name)
    }

    /// The object a finding's subject names.
    pub(crate) fn find_subject(&self, subject: &Subject) -> Option<&Object> {
        let kind = Kind::from_name(&subject.kind)?;
        self.find(kind, &subject.namespace, &subject.name)
    }

    /// The Namespace object of that name.
    pub fn namespace(&self, name: &str) -> Option<&Object> {
        match self.namespaces.get(name) {
            Some(i) => Some(&self.objects[*i]),
            None => self.shared_namespace(name),
        }
    }

    /// The Namespace objects, one per name (the last one when the input repeats a name, as
    /// applying the manifests in order would leave it); not the shared ones
    /// ([`Inventory::with_shared`]).
    pub(crate) fn namespace_objects(&self) -> impl Iterator<Item = &Object> + '_ {
        self.namespaces.values().map(|i| &self.objects[*i])
    }

    /// Names of the namespaces any object lives in, and of the shared Namespaces, sorted.
    pub(crate) fn namespace_names(&self) -> impl Iterator<Item = &str> + '_ {
        let mut own = self.seen_namespaces.iter().map(String::as_str).peekable();
        let mut shared = self
            .shared
            .iter()
            .flat_map(|s| s.namespaces.keys())
            .map(String::as_str)
            .peekable();
        // Both sorted: merge them, each name once.
        std::iter::from_fn(move || match (own.peek(), shared.peek()) {
            (Some(a), Some(b)) if a == b => {
                shared.next();
                own.next()
            }
            (Some(a), Some(b)) if a < b => own.next(),
            (Some(_), Some(_)) | (None, _) => shared.next(),
            (Some(_), None) => own.next(),
        })
    }

    /// Whether a namespace exists: it has a Namespace object or some object lives in it;
    /// otherwise `Missing` for a complete inventory, `Unknown` for a partial one.
    pub(crate) fn namespace_exists(&self, name: &str) -> Lookup<()> {
        if self.namespaces.contains_key(name)
            || self.seen_namespaces.contains(name)
            || self.shared_namespace(name).is_some()
        {
            Lookup::Found(())
        } else if self.complete {
            Lookup::Missing
        } else {
            Lookup::Unknown
        }
    }

    /// Every workload (top-level controllers and bare Pods), in input order.
    pub fn workloads(&self) -> &[InventoryWorkload] {
        &self.workloads
    }

    /// Indexes into [`Inventory::workloads`] of the workloads in one namespace.
    pub fn workloads_in(&self, namespace: &str) -> &[usize] {
        self.workloads_by_namespace
            .get(namespace)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Namespaces with at least one workload.
    pub(crate) fn namespaces_with_workloads(&self) -> impl Iterator<Item = &str> + '_ {
        self.workloads_by_namespace.keys().map(String::as_str)
    }

    /// The object of a workload.
    pub(crate) fn workload_object(&self, w: &InventoryWorkload) -> &Object {
        &self.objects[w.object]
    }
}

/// A minimal object for [`Inventory::with_namespace`] and friends.
fn synthetic(
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    labels: BTreeMap<String, String>,
) -> DynamicObject {
    DynamicObject {
        types: Some(kube::core::TypeMeta {
            api_version: "v1".to_owned(),
            kind: kind.to_owned(),
        }),
        metadata: kube::core::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: Some(labels),
            ..Default::default()
        },
        data: serde_json::Value::Object(Default::default()),
    }
}

impl ClusterView for Inventory {
    fn namespace_labels(&self, namespace: &str) -> Lookup<BTreeMap<String, String>> {
        match self.namespace(namespace) {
            Some(o) => Lookup::Found(o.labels().clone()),
            None if self.complete => Lookup::Missing,
            None => Lookup::Unknown,
        }
    }

    /// Found when listed, or when it is `default` in a namespace that exists (Kubernetes creates
    /// it in every namespace); missing when the inventory is complete or lists other accounts
    /// of that namespace; unknown otherwise.
    fn service_account(&self, namespace: &str, name: &str) -> Lookup<()> {
        if self
            .service_accounts
            .contains(&(namespace.to_owned(), name.to_owned()))
            || self
                .shared
                .as_ref()
                .is_some_and(|s| s.has_account(namespace, name))
            || (name == "default" && self.namespace_exists(namespace) == Lookup::Found(()))
        {
            Lookup::Found(())
        } else if self.complete || self.account_namespaces.contains(namespace) {
            Lookup::Missing
        } else {
            Lookup::Unknown
        }
    }

    fn namespace_terminating(&self, namespace: &str) -> Lookup<bool> {
        self.terminating(namespace)
    }
}

impl Inventory {
    /// Whether a listed namespace is Terminating (`deletionTimestamp` set).
    fn terminating(&self, namespace: &str) -> Lookup<bool> {
        match self.namespace(namespace) {
            Some(o) => Lookup::Found(o.is_terminating()),
            None if self.complete => Lookup::Missing,
            None => Lookup::Unknown,
        }
    }
}

impl ClusterSource for Inventory {
    fn view(&self) -> &dyn ClusterView {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: serde_json::Value) -> Object {
        let object: DynamicObject = serde_json::from_value(v).expect("object");
        let t = object.types.clone().expect("types");
        let kind = Kind::from_api_version(&t.api_version, &t.kind).expect("kind");
        Object::new(kind, "v1".into(), object, None, None)
    }

    fn objects() -> Vec<Object> {
        vec![
            object(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "prod", "labels": {"istio-injection": "enabled"}}})),
            object(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "web", "namespace": "prod"}})),
            object(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "prod"},
                "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}})),
            object(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-1", "namespace": "prod", "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-x", "uid": "u", "controller": true}]}})),
            object(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "db", "namespace": "data"}})),
        ]
    }

    #[test]
    fn partial_inventory_is_conclusive_only_where_it_speaks() {
        let inv = Inventory::partial(objects());
        assert!(matches!(inv.namespace_labels("prod"), Lookup::Found(l) if l.len() == 1));
        assert_eq!(
            inv.namespace_labels("data"),
            Lookup::Unknown,
            "no Namespace object"
        );
        assert_eq!(
            inv.namespace_exists("data"),
            Lookup::Found(()),
            "something lives there"
        );
        assert_eq!(inv.namespace_exists("other"), Lookup::Unknown);
        assert_eq!(inv.service_account("prod", "web"), Lookup::Found(()));
        assert_eq!(inv.service_account("prod", "default"), Lookup::Found(()));
        assert_eq!(
            inv.service_account("prod", "db"),
            Lookup::Missing,
            "prod's accounts are listed"
        );
        assert_eq!(inv.service_account("data", "db"), Lookup::Unknown);
        // The controlled Pod is judged through its controller: one workload.
        assert_eq!(inv.workloads().len(), 1);
        assert_eq!(inv.workloads_in("prod"), [0]);
        assert_eq!(inv.of_kind(Kind::Service).count(), 1);
        assert!(inv.find(Kind::Deployment, "prod", "web").is_some());
        assert_eq!(inv.namespace_names().collect::<Vec<_>>(), ["data", "prod"]);
    }

    #[test]
    fn objects_are_held_compact_and_decode_back_whole() {
        let v = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}},
            "status": {"ready": 1.5}});
        let whole: DynamicObject = serde_json::from_value(v.clone()).expect("object");
        let o = object(v);
        assert_eq!(o.object(), whole, "the object decodes back as read");
        assert_eq!(o.spec(), whole.data["spec"]);
        assert_eq!(o.template().map(|t| t.labels().len()), Some(1));
        let sa = object(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "web", "namespace": "prod"}}));
        assert_eq!(sa.spec(), Value::Null, "no spec");
        assert_eq!(sa.data(), json!({}));
        // A copy pushed into a second inventory (audit's batches) is a workload there too.
        let first = Inventory::partial(vec![o]);
        let copy = first.objects()[0].clone();
        let second = Inventory::partial(vec![copy]);
        assert_eq!(first.workloads().len(), 1);
        assert_eq!(second.workloads().len(), 1);
        assert_eq!(second.workloads()[0].workload.ports.len(), 1);
    }

    #[test]
    fn metadata_and_types_decode_back_as_read() {
        let v = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "prod", "uid": "u-1",
                "labels": {"a": "b"}, "annotations": {"istio.io/dry-run": "true", "x": "y"},
                "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["f"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "o"}]},
            "spec": {"action": "DENY"}});
        let whole: DynamicObject = serde_json::from_value(v.clone()).expect("object");
        let o = object(v);
        assert_eq!(o.object(), whole);
        assert_eq!(o.metadata(), whole.metadata);
        assert_eq!(o.types(), whole.types);
        assert_eq!((o.name(), o.namespace(), o.uid()), ("p", "prod", "u-1"));
        assert_eq!(o.labels().len(), 1);
        assert!(o.is_dry_run() && o.is_terminating());
        assert_eq!(o.api_version(), "security.istio.io/v1");
        assert_eq!(o.spec(), json!({"action": "DENY"}));
        // Without apiVersion/kind: as DynamicObject reads it (no types), the version from the
        // kind read.
        let bare = DynamicObject {
            types: None,
            metadata: kube::core::ObjectMeta {
                name: Some("n".into()),
                ..Default::default()
            },
            data: json!({"spec": {}}),
        };
        let o = Object::new(
            Kind::PeerAuthentication,
            "v1beta1".into(),
            bare.clone(),
            None,
            None,
        );
        assert_eq!(o.object(), bare);
        assert_eq!(o.api_version(), "security.istio.io/v1beta1");
        assert!(!o.is_dry_run() && !o.is_terminating());
    }

    #[test]
    fn find_takes_the_last_definition() {
        let sa = |name: &str, label: &str| {
            object(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": "prod", "labels": {"v": label}}}))
        };
        let mut inv = Inventory::partial(vec![sa("a", "1"), sa("b", "1"), sa("a", "2")]);
        let label = |inv: &Inventory, name: &str| {
            inv.find(Kind::ServiceAccount, "prod", name)
                .map(|o| o.labels()["v"].clone())
        };
        assert_eq!(label(&inv, "a").as_deref(), Some("2"));
        assert_eq!(label(&inv, "b").as_deref(), Some("1"));
        assert_eq!(label(&inv, "c"), None);
        assert!(inv.find(Kind::Service, "prod", "a").is_none());
        assert!(inv.find(Kind::ServiceAccount, "other", "a").is_none());
        // A push after a search is found by the next one.
        inv.push(sa("a", "3"));
        inv.push(sa("0", "1"));
        assert_eq!(label(&inv, "a").as_deref(), Some("3"));
        assert_eq!(label(&inv, "0").as_deref(), Some("1"));
    }

    #[test]
    fn shared_namespaces_answer_lookups_but_are_not_objects() {
        let mut shared = SharedNamespaces::default();
        for (name, labels) in [("a", json!({"k": "v"})), ("c", json!({}))] {
            shared.namespaces.insert(
                name.to_owned(),
                object(json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels}})),
            );
        }
        shared
            .accounts
            .insert("a".to_owned(), vec!["web".to_owned()]);
        let mut inv = Inventory::complete(vec![object(json!({"apiVersion": "v1",
            "kind": "Namespace", "metadata": {"name": "b"}}))])
        .with_shared(Arc::new(shared));
        inv.push(object(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "db", "namespace": "d"}})));
        assert!(matches!(inv.namespace_labels("a"), Lookup::Found(l) if l["k"] == "v"));
        assert_eq!(inv.namespace_exists("c"), Lookup::Found(()));
        assert_eq!(inv.namespace_exists("e"), Lookup::Missing);
        assert_eq!(inv.service_account("a", "web"), Lookup::Found(()));
        assert_eq!(inv.service_account("a", "default"), Lookup::Found(()));
        assert_eq!(inv.service_account("a", "ghost"), Lookup::Missing);
        assert!(inv.find(Kind::Namespace, "a", "a").is_some());
        // Sorted, each name once: its own (b, d) and the shared ones (a, c).
        assert_eq!(
            inv.namespace_names().collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        // Iterating goes over its own objects only.
        let own: Vec<&str> = inv.namespace_objects().map(Object::name).collect();
        assert_eq!(own, ["b"]);
        assert_eq!(inv.len(), 2);
    }

    #[test]
    fn complete_inventory_knows_what_is_absent() {
        let inv = Inventory::complete(objects());
        assert_eq!(inv.namespace_labels("data"), Lookup::Missing);
        assert_eq!(inv.namespace_exists("other"), Lookup::Missing);
        assert_eq!(inv.service_account("data", "db"), Lookup::Missing);
        let built = Inventory::complete(Vec::new())
            .with_namespace("a", &[("k", "v")])
            .with_service_account("a", "sa");
        assert!(matches!(built.namespace_labels("a"), Lookup::Found(l) if l["k"] == "v"));
        assert_eq!(built.service_account("a", "sa"), Lookup::Found(()));
        assert_eq!(built.service_account("b", "sa"), Lookup::Missing);
    }
}
