//! Cross-resource checks: what no single-object rule can see, judged over a whole
//! [`Inventory`] (`check`, `audit` and serve's periodic audit; the webhook does not run them).
//!
//! Each check is a static `CHECK: CrossCheck` in its own file with its own tests, named once in
//! the `registry!` list below (which declares the module and puts it in [`REGISTRY`]); adding one
//! touches its file plus that one line. A check reports
//! `(subject, violation)` pairs through a [`CrossContext`]; the runner here resolves each
//! check's action (`rules.<id>.action`, else its default capped by the global mode) and its
//! `rules.<id>.exemptions` with the same resolver the admission rules use.

use crate::authz::{Mesh, PolicySet};
use crate::config::exceptions::{self, Hit, ObjectExcepted, Target};
use crate::dataplane::{workload_plane, Plane, PodPlane, Topology};
use crate::engine::Engine;
use crate::finding::{Action, Finding, ObjectFinding, Subject, Violation};
use crate::inventory::{Inventory, InventoryWorkload};
use crate::mtls::{self, PeerPolicy, PolicyIndex};
use crate::resource::Kind;
use std::cell::OnceCell;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// A check function: report every violation it finds as `(subject, violation)`.
pub(crate) type CrossCheckFn = fn(&CrossContext<'_>, &mut Vec<(Subject, Violation)>);

/// One cross-resource check of the catalogue.
pub struct CrossCheck {
    /// Stable id, configurable under `rules.<id>` like an admission rule.
    pub id: &'static str,
    pub default_action: Action,
    /// One-line description for `meshguard rules`.
    pub summary: &'static str,
    /// Example fix for `meshguard rules`.
    pub(crate) example_fix: &'static str,
    pub run: CrossCheckFn,
}

impl std::fmt::Debug for CrossCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossCheck").field("id", &self.id).finish()
    }
}

/// Declares each check's module (its file) and lists its `CHECK` in [`REGISTRY`], in order.
macro_rules! registry {
    ($($check:ident,)*) => {
        $(pub mod $check;)*
        /// The cross-resource catalogue, in the order the checks run.
        pub static REGISTRY: &[&CrossCheck] = &[$(&$check::CHECK),*];
    };
}

// One line per check: the name of its file, which defines `pub static CHECK: CrossCheck`.
registry! {
    mtls_not_strict,
    ap_no_default_deny,
    ra_unenforced,
    ap_unknown_principal,
    selector_matches_nothing,
    dr_disable_vs_mtls,
    wl_proxy_outdated,
    injector_overlap,
    waypoint_unbound,
    ap_targetref_unbound,
    ap_waypoint_identity_denied,
    waypoint_bypass,
    policy_unenforced,
    ingress_skips_waypoint,
    pa_ambient_disable,
    exception_expired,
    exception_refused,
}

/// Look a check up by id.
pub fn find(id: &str) -> Option<&'static CrossCheck> {
    REGISTRY.iter().copied().find(|c| c.id == id)
}

/// What a check sees: the inventory, the engine's policy and exemptions, and what several
/// checks share (the mesh's root namespace, the PeerAuthentication index, the effective-mTLS
/// table), computed once.
pub struct CrossContext<'a> {
    pub engine: &'a Engine,
    pub inventory: &'a Inventory,
    /// The mesh's root namespace.
    pub root: &'a str,
    peer_index: Arc<PolicyIndex>,
    mesh: Mesh,
    mtls_rows: OnceCell<Vec<mtls::Row>>,
    topology: OnceCell<Topology>,
    planes: OnceCell<Vec<PodPlane>>,
    policy_set: OnceCell<PolicySet>,
    waypoint_policy_set: OnceCell<PolicySet>,
}

/// A policy's workload selector, as [`CrossContext::scope`] reads it (the typed model's).
pub trait Selects {
    /// Whether pods with `labels` are selected.
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool;
}

impl Selects for crate::model::Selector<'_> {
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches(labels)
    }
}

impl<'a> CrossContext<'a> {
    pub fn new(engine: &'a Engine, inventory: &'a Inventory) -> CrossContext<'a> {
        let root = engine.mesh().root_namespace().value.as_str();
        let peer_index = Arc::new(PolicyIndex::new(
            root,
            inventory
                .of_kind(Kind::PeerAuthentication)
                .map(|o| PeerPolicy::from_object(&o.object())),
        ));
        CrossContext {
            engine,
            inventory,
            root,
            peer_index,
            mesh: Mesh::from_context(engine.mesh()),
            mtls_rows: OnceCell::new(),
            topology: OnceCell::new(),
            planes: OnceCell::new(),
            policy_set: OnceCell::new(),
            waypoint_policy_set: OnceCell::new(),
        }
    }

    /// The data plane of every workload ([`Inventory::workloads`] order), from the mesh as
    /// installed ([`crate::dataplane::workload_plane`]).
    pub(crate) fn planes(&self) -> &[PodPlane] {
        self.planes.get_or_init(|| {
            let mesh = self.engine.mesh();
            self.inventory
                .workloads()
                .iter()
                .map(|w| {
                    let o = self.inventory.workload_object(w);
                    match o.template() {
                        Some(t) => workload_plane(
                            mesh,
                            o.namespace(),
                            &t,
                            &crate::context::ClusterView::namespace_labels(
                                self.inventory,
                                o.namespace(),
                            ),
                        ),
                        None => PodPlane {
                            plane: Plane::Unknown,
                            outside: None,
                            bypass_inbound: false,
                        },
                    }
                })
                .collect()
        })
    }

    /// The data plane of workload `i`.
    pub fn plane(&self, i: usize) -> PodPlane {
        self.planes()[i]
    }

    /// The inventory's AuthorizationPolicies, RequestAuthentications and PeerAuthentications,
    /// compiled once for the simulator's evaluator (sidecar, waypoint and ztunnel).
    pub fn policy_set(&self) -> &PolicySet {
        self.policy_set.get_or_init(|| {
            // The PeerAuthentications are indexed once, in `new`, for both.
            PolicySet::with_peer_index(
                self.mesh.clone(),
                self.inventory
                    .decoded(|k| PolicySet::reads(k) && k != Kind::PeerAuthentication),
                Arc::clone(&self.peer_index),
            )
        })
    }

    /// [`CrossContext::policy_set`] as far as the Services bound to a waypoint need it: the
    /// policies of the root namespace, of each (non-exempt) bound Service's namespace and of its
    /// waypoint's namespace. The ztunnel of a workload applies the policies of its own namespace
    /// and the root namespace only (`PolicySet::scope_namespaces`), a waypoint those of the root,
    /// its own and the Service's namespace (`PolicySet::waypoint_target`), and a Service's
    /// backends run in its namespace, so these answer every question the waypoint checks ask
    /// exactly as the whole set does, in the same order (compiling keeps the inventory's order
    /// within equal creation times), without compiling every policy of a large mesh for one
    /// waypoint. The whole set when it is compiled already.
    pub(crate) fn waypoint_policy_set(&self) -> &PolicySet {
        if let Some(whole) = self.policy_set.get() {
            return whole;
        }
        self.waypoint_policy_set.get_or_init(|| {
            let topology = self.topology();
            let mut scope: HashSet<&str> = HashSet::new();
            scope.insert(self.mesh.root_namespace.as_str());
            for s in topology.services() {
                let Some(g) = s.binding.gateway() else {
                    continue;
                };
                if self.is_exempt_namespace(&s.namespace) {
                    continue;
                }
                scope.insert(s.namespace.as_str());
                scope.insert(topology.gateway(g).namespace.as_str());
            }
            PolicySet::with_peer_index(
                self.mesh.clone(),
                self.inventory.decoded_where(|k, ns| {
                    PolicySet::reads(k) && k != Kind::PeerAuthentication && scope.contains(ns)
                }),
                Arc::clone(&self.peer_index),
            )
        })
    }

    /// The mesh's root namespace and trust domains (what [`CrossContext::policy_set`] is
    /// compiled with), without compiling the policies.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// The ambient topology of the inventory (waypoints, Service bindings, gateway identities),
    /// read once.
    pub fn topology(&self) -> &Topology {
        self.topology
            .get_or_init(|| Topology::new(self.inventory.decoded(Topology::reads)))
    }

    /// PeerAuthentications by namespace, ready to compose effective mTLS.
    pub(crate) fn peer_index(&self) -> &PolicyIndex {
        &self.peer_index
    }

    /// The effective-mTLS table: one row per workload port, workloads of exempt namespaces
    /// left out.
    pub(crate) fn mtls_rows(&self) -> &[mtls::Row] {
        self.mtls_rows.get_or_init(|| {
            let mut rows = Vec::new();
            for (i, w) in self.inventory.workloads().iter().enumerate() {
                if !self.is_exempt_namespace(&w.workload.namespace) {
                    rows.extend(self.workload_mtls(i));
                }
            }
            rows.sort_by(|a, b| {
                (&a.namespace, &a.workload, a.kind, a.port).cmp(&(
                    &b.namespace,
                    &b.workload,
                    b.kind,
                    b.port,
                ))
            });
            // Grown by doubling: up to half of it would be slack for the rest of the run.
            rows.shrink_to_fit();
            rows
        })
    }

    /// The effective-mTLS table ([`CrossContext::mtls_rows`]), moved out: the context is done.
    pub fn into_mtls_rows(self) -> Vec<mtls::Row> {
        self.mtls_rows();
        self.mtls_rows.into_inner().unwrap_or_default()
    }

    /// The effective-mTLS rows of workload `i`, with its data plane: for a workload ztunnel
    /// captures, ztunnel's compilation of the PeerAuthentications ([`crate::authz::ztunnel`]):
    /// a port is STRICT when plaintext is refused there, else PERMISSIVE (DISABLE included).
    pub(crate) fn workload_mtls(&self, i: usize) -> Vec<mtls::Row> {
        let w = &self.workload(i).workload;
        let plane = self.plane(i).plane;
        let mut table = self.peer_index.table(std::iter::once(w));
        if plane == Plane::Ambient {
            let z = crate::authz::ztunnel::peer_derived(
                self.peer_index.peers_for(&w.namespace),
                self.root,
                &w.namespace,
                &w.labels,
            );
            for r in &mut table {
                let port = r.port.and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
                r.effective.mode = if z.strict_on(port) {
                    crate::model::MtlsMode::Strict
                } else {
                    crate::model::MtlsMode::Permissive
                };
            }
        }
        let name = match plane {
            Plane::Ambient => "ztunnel/HBONE",
            other => other.as_str(),
        };
        for r in &mut table {
            r.dataplane = name.to_owned();
        }
        table
    }

    /// meshguard exempts the namespace as a whole (policy `exemptNamespaces`, root, own).
    pub(crate) fn is_exempt_namespace(&self, ns: &str) -> bool {
        self.engine.exempt_namespaces().iter().any(|n| n == ns)
    }

    /// The workloads an Istio policy in `ns` with `selector` applies to, as indexes into
    /// [`Inventory::workloads`]. `global`: a root-namespace policy of a kind whose selector
    /// applies in every namespace (AuthorizationPolicy, RequestAuthentication).
    pub fn scope(&self, ns: &str, selector: &impl Selects, global: bool) -> Vec<usize> {
        let workloads = self.inventory.workloads();
        let selected = |i: &usize| selector.selects(&workloads[*i].workload.labels);
        if global && ns == self.root {
            (0..workloads.len()).filter(selected).collect()
        } else {
            self.inventory
                .workloads_in(ns)
                .iter()
                .copied()
                .filter(selected)
                .collect()
        }
    }

    /// A workload by index into [`Inventory::workloads`].
    pub fn workload(&self, i: usize) -> &InventoryWorkload {
        &self.inventory.workloads()[i]
    }

    /// `deployment prod/web`, for messages.
    pub(crate) fn workload_label(&self, i: usize) -> String {
        let w = &self.workload(i).workload;
        format!(
            "{} {}/{}",
            w.kind.as_str().to_ascii_lowercase(),
            w.namespace,
            w.name
        )
    }

    /// The subject of a namespace-level finding: its Namespace object when the inventory has
    /// one, else the bare name.
    pub(crate) fn namespace_subject(&self, ns: &str) -> Subject {
        match self.inventory.namespace(ns) {
            Some(o) => o.subject(),
            None => Subject {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: ns.to_owned(),
                name: ns.to_owned(),
                uid: String::new(),
                file: None,
                line: None,
            },
        }
    }

    /// The labels of a subject's namespace: the inventory's Namespace, none for a namespace a
    /// complete inventory lacks, unknown otherwise.
    fn namespace_labels(&self, ns: &str) -> Option<std::collections::BTreeMap<String, String>> {
        match self.inventory.namespace(ns) {
            Some(o) => Some(o.labels().clone()),
            None if self.inventory.is_complete() => Some(Default::default()),
            None => None,
        }
    }

    /// A check's action for a subject (per-namespace overrides, `config::rollout`).
    fn action_in(&self, check: &CrossCheck, subject: &Subject) -> Action {
        let policy = self.engine.policy();
        let ns = subject.namespace.as_str();
        if !policy.action_reads_namespace_labels(check.id) {
            return policy.action_in(check.id, check.default_action, ns, None);
        }
        let labels = self.namespace_labels(ns);
        policy.action_in(check.id, check.default_action, ns, labels.as_ref())
    }

    /// The exception covering a finding of check `id` about a subject, if any.
    fn exception_hit(&self, id: &str, subject: &Subject) -> Option<Hit> {
        let set = self.engine.exceptions();
        if !set.names_rule(id) {
            return None;
        }
        let object = self.inventory.find_subject(subject);
        let target = Target {
            namespace: &subject.namespace,
            kind: &subject.kind,
            name: &subject.name,
            labels: object.map(|o| o.labels()),
            namespace_labels: &|| self.namespace_labels(&subject.namespace),
        };
        set.find(self.engine.policy(), id, &target, self.engine.now())
    }

    /// `rules.<id>.exemptions` of the policy, applied to a finding's subject.
    fn exempted(&self, id: &str, subject: &Subject) -> bool {
        let configured = self.engine.policy().rules.get(id);
        if configured.is_none_or(|c| c.exemptions.is_empty()) {
            return false; // the usual case: no lookup
        }
        let ns = subject.namespace.as_str();
        let object = self.inventory.find_subject(subject);
        self.engine
            .exempted(id, ns, object.map(|o| o.labels()), &|| {
                self.inventory.namespace(ns).map(|o| o.labels().clone())
            })
    }
}

/// Run every check of the registry; findings come out in registry order, each check's in the
/// order it reported them.
pub fn run_all(cx: &CrossContext<'_>) -> Vec<ObjectFinding> {
    run_all_with_exceptions(cx).0
}

/// [`run_all`], with the findings an exception covers apart.
pub(crate) fn run_all_with_exceptions(
    cx: &CrossContext<'_>,
) -> (Vec<ObjectFinding>, Vec<ObjectExcepted>) {
    let mut out = Vec::new();
    let mut excepted = Vec::new();
    let mut found = Vec::new();
    let policy = cx.engine.policy();
    for check in REGISTRY {
        // An override may turn a check that is off by default on in some namespaces.
        if !policy.may_act(check.id, check.default_action) {
            continue;
        }
        (check.run)(cx, &mut found);
        for (subject, mut violation) in found.drain(..) {
            if cx.exempted(check.id, &subject) {
                continue;
            }
            let action = cx.action_in(check, &subject);
            if action == Action::Off {
                continue;
            }
            let hit = cx.exception_hit(check.id, &subject);
            if let Some(Hit::Expired(e)) = &hit {
                violation.message.push_str(&exceptions::expired_note(e));
            }
            let finding = Finding {
                rule: check.id,
                action,
                violation,
            };
            match hit {
                Some(Hit::Active(exception)) => excepted.push(ObjectExcepted {
                    subject,
                    finding,
                    exception,
                }),
                _ => out.push(ObjectFinding { subject, finding }),
            }
        }
    }
    (out, excepted)
}

/// The workloads a Service selects (indexes into [`Inventory::workloads`]), each with the
/// container ports its Service ports send to (`targetPort` by number, or by the container
/// port's name).
pub(crate) fn backends(
    cx: &CrossContext<'_>,
    s: &crate::dataplane::Service,
) -> Vec<(usize, Vec<u16>)> {
    use crate::dataplane::topology::TargetPort;
    let mut out = Vec::new();
    for &i in cx.inventory.workloads_in(&s.namespace) {
        let w = &cx.inventory.workloads()[i].workload;
        if !s.selects(&w.labels) {
            continue;
        }
        let mut ports: Vec<u16> = s
            .ports
            .iter()
            .filter_map(|p| match &p.target {
                TargetPort::Number(n) => u16::try_from(*n).ok(),
                TargetPort::Name(name) => w
                    .ports
                    .iter()
                    .find(|c| c.name.as_deref() == Some(name.as_str()))
                    .and_then(|c| u16::try_from(c.port).ok()),
            })
            .collect();
        ports.sort_unstable();
        ports.dedup();
        out.push((i, ports));
    }
    out
}

/// Up to five names, then "and N more".
pub(crate) fn list_some(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s.push_str(&format!(" and {} more", names.len() - 5));
    }
    s
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders shared by the checks' unit tests.
    use super::*;
    use crate::config::Policy;
    use crate::inventory::Object;

    /// An inventory object from JSON (tests only).
    pub fn object(v: serde_json::Value) -> Object {
        let object: kube::core::DynamicObject =
            serde_json::from_value(v).expect("test object must parse");
        let t = object.types.clone().expect("apiVersion and kind");
        let kind = Kind::from_api_version(&t.api_version, &t.kind).expect("a checked kind");
        let version = t
            .api_version
            .rsplit_once('/')
            .map_or(t.api_version.as_str(), |(_, v)| v)
            .to_owned();
        Object::new(kind, version, object, None, None)
    }

    /// Run one check over objects and return what it reports, as `(subject label, path,
    /// message)`.
    pub fn findings(
        check: &CrossCheck,
        complete: bool,
        objects: Vec<serde_json::Value>,
    ) -> Vec<(String, String, String)> {
        findings_with(check, complete, objects, Policy::default())
    }

    pub(crate) fn findings_with(
        check: &CrossCheck,
        complete: bool,
        objects: Vec<serde_json::Value>,
        policy: Policy,
    ) -> Vec<(String, String, String)> {
        findings_in(
            check,
            complete,
            objects,
            policy,
            crate::mesh::MeshContext::default(),
        )
    }

    /// Run one check with a mesh context (the policy's overrides go over it).
    pub(crate) fn findings_in(
        check: &CrossCheck,
        complete: bool,
        objects: Vec<serde_json::Value>,
        policy: Policy,
        mesh: crate::mesh::MeshContext,
    ) -> Vec<(String, String, String)> {
        let objects = objects.into_iter().map(object).collect();
        let inventory = if complete {
            Inventory::complete(objects)
        } else {
            Inventory::partial(objects)
        };
        let engine = Engine::new(policy, std::sync::Arc::new(mesh), None);
        let cx = CrossContext::new(&engine, &inventory);
        let mut out = Vec::new();
        (check.run)(&cx, &mut out);
        out.into_iter()
            .map(|(s, v)| (s.label(), v.path, v.message))
            .collect()
    }

    /// The fixes a check reports, in order.
    pub fn fixes(
        check: &CrossCheck,
        complete: bool,
        objects: Vec<serde_json::Value>,
    ) -> Vec<String> {
        let objects = objects.into_iter().map(object).collect();
        let inventory = if complete {
            Inventory::complete(objects)
        } else {
            Inventory::partial(objects)
        };
        let engine = Engine::new(Policy::default(), Default::default(), None);
        let cx = CrossContext::new(&engine, &inventory);
        let mut out = Vec::new();
        (check.run)(&cx, &mut out);
        out.into_iter().map(|(_, v)| v.fix).collect()
    }

    pub fn namespace(name: &str, labels: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels}})
    }

    pub fn deployment(
        ns: &str,
        name: &str,
        labels: serde_json::Value,
        ports: &[u32],
    ) -> serde_json::Value {
        let ports: Vec<serde_json::Value> = ports
            .iter()
            .map(|p| serde_json::json!({"containerPort": p}))
            .collect();
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "app", "ports": ports}]}}}})
    }

    pub fn istio(kind: &str, ns: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
        let group = if kind == "DestinationRule" {
            "networking.istio.io/v1"
        } else {
            "security.istio.io/v1"
        };
        serde_json::json!({"apiVersion": group, "kind": kind,
            "metadata": {"name": name, "namespace": ns}, "spec": spec})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;

    /// The waypoint checks compile only the policies of the namespaces they ask about, and
    /// answer as they do with every policy compiled.
    #[test]
    fn the_waypoint_policy_set_answers_as_the_whole_set() {
        use serde_json::json;
        use testing::*;
        let selector = json!({"matchLabels": {"app": "reviews"}});
        let objects = vec![
            namespace(
                "shop",
                json!({"istio.io/dataplane-mode": "ambient",
                    "istio.io/use-waypoint": "waypoint", "istio.io/use-waypoint-namespace": "wp"}),
            ),
            namespace("wp", json!({"istio.io/dataplane-mode": "ambient"})),
            namespace("other", json!({"istio.io/dataplane-mode": "ambient"})),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "waypoint", "namespace": "wp"},
                "spec": {"gatewayClassName": "istio-waypoint",
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE",
                        "allowedRoutes": {"namespaces": {"from": "All"}}}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "shop"},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 80, "targetPort": 9080}]}}),
            deployment("shop", "reviews", json!({"app": "reviews"}), &[9080]),
            deployment("other", "reviews", json!({"app": "reviews"}), &[9080]),
            istio(
                "AuthorizationPolicy",
                "shop",
                "l7",
                json!({"targetRefs": [{"kind": "Service", "group": "", "name": "reviews"}],
                    "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}),
            ),
            istio(
                "AuthorizationPolicy",
                "wp",
                "at-waypoint",
                json!({"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}],
                    "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}),
            ),
            // Admits a client but not the waypoint: both checks fire.
            istio(
                "AuthorizationPolicy",
                "shop",
                "l4",
                json!({"selector": selector, "rules": [{"from": [{"source": {
                    "principals": ["cluster.local/ns/shop/sa/default"]}}]}]}),
            ),
            istio(
                "AuthorizationPolicy",
                "istio-system",
                "mesh-deny",
                json!({"action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["evil"]}}]}]}),
            ),
            istio(
                "AuthorizationPolicy",
                "other",
                "unrelated",
                json!({"selector": selector, "rules": [{}]}),
            ),
            istio(
                "RequestAuthentication",
                "other",
                "unrelated-jwt",
                json!({"jwtRules": [{"issuer": "https://issuer.example"}]}),
            ),
        ];
        let inventory = Inventory::complete(objects.into_iter().map(object).collect());
        let engine = Engine::new(
            Policy::default(),
            std::sync::Arc::new(crate::mesh::MeshContext::default()),
            None,
        );
        let run = |check: &CrossCheck, whole_first: bool| {
            let cx = CrossContext::new(&engine, &inventory);
            if whole_first {
                cx.policy_set();
            }
            let mut out = Vec::new();
            (check.run)(&cx, &mut out);
            out.into_iter()
                .map(|(s, v)| (s.label(), v.path, v.message))
                .collect::<Vec<_>>()
        };
        for check in [&waypoint_bypass::CHECK, &ap_waypoint_identity_denied::CHECK] {
            let scoped = run(check, false);
            assert!(!scoped.is_empty(), "{}: fires", check.id);
            assert_eq!(scoped, run(check, true), "{}", check.id);
        }
        let cx = CrossContext::new(&engine, &inventory);
        let ids: Vec<String> = cx
            .waypoint_policy_set()
            .policies()
            .iter()
            .map(|p| p.id())
            .collect();
        assert!(ids.iter().any(|i| i.contains("mesh-deny")), "{ids:?}");
        assert!(ids.iter().any(|i| i.contains("l4")), "{ids:?}");
        assert!(ids.iter().any(|i| i.contains("l7")), "{ids:?}");
        assert!(ids.iter().any(|i| i.contains("at-waypoint")), "{ids:?}");
        assert!(!ids.iter().any(|i| i.contains("unrelated")), "{ids:?}");
        assert_eq!(cx.policy_set().policies().len(), ids.len() + 1);
    }

    #[test]
    fn ids_are_unique_and_configured_like_rules() {
        let mut seen = HashSet::new();
        for c in REGISTRY {
            assert!(seen.insert(c.id), "duplicate id {}", c.id);
            assert!(
                crate::rules::find(c.id).is_none(),
                "{} is also a rule id",
                c.id
            );
            assert!(
                !c.summary.ends_with('.') && !c.example_fix.is_empty(),
                "{}",
                c.id
            );
        }
        // One resolver: `rules.<id>` overrides, the global mode caps the default.
        let policy: Policy = crate::catalogue::policy_from_yaml(
            "mode: warn\nrules:\n  ap-no-default-deny:\n    action: deny\n",
            "t",
        )
        .expect("policy");
        assert_eq!(
            policy.action_for("ap-no-default-deny", Action::Warn),
            Action::Deny
        );
        assert_eq!(
            policy.action_for("mtls-not-strict", Action::Deny),
            Action::Warn
        );
    }

    #[test]
    fn runner_applies_actions_and_exemptions() {
        use testing::*;
        let objects = || {
            vec![
                namespace(
                    "prod",
                    serde_json::json!({"istio-injection": "enabled", "team": "a"}),
                ),
                deployment("prod", "web", serde_json::json!({"app": "web"}), &[8080]),
            ]
        };
        let run = |policy: &str| {
            let inventory = Inventory::complete(objects().into_iter().map(object).collect());
            let engine = Engine::new(
                crate::catalogue::policy_from_yaml(policy, "t").expect("policy"),
                Default::default(),
                None,
            );
            let cx = CrossContext::new(&engine, &inventory);
            run_all(&cx)
                .into_iter()
                .map(|f| (f.finding.rule, f.finding.action))
                .collect::<Vec<_>>()
        };
        let all = run("");
        assert!(all.contains(&("mtls-not-strict", Action::Deny)), "{all:?}");
        assert!(
            all.contains(&("ap-no-default-deny", Action::Warn)),
            "{all:?}"
        );
        let off = run("rules:\n  mtls-not-strict:\n    action: off\n");
        assert!(!off.iter().any(|(r, _)| *r == "mtls-not-strict"));
        let exempt = run("rules:\n  ap-no-default-deny:\n    exemptions:\n      - namespaceSelector:\n          matchLabels: {team: a}\n");
        assert!(
            !exempt.iter().any(|(r, _)| *r == "ap-no-default-deny"),
            "{exempt:?}"
        );
        assert!(exempt.iter().any(|(r, _)| *r == "mtls-not-strict"));
    }
}
