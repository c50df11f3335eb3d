//! The nodes of the reachability graph of an inventory: workloads with their ports (the
//! protocol Istio picks for each) and data plane, and the callers worth asking about.
//!
//! **Callers**: every ServiceAccount of the input and every account its workloads run as; every
//! identity the AuthorizationPolicies name (`principals` without wildcards, `serviceAccounts`);
//! for every namespace the policies name (`namespaces`), *another identity in it* (an account
//! the input does not list); a plaintext client; and *any other mesh identity* (a namespace and
//! account nothing names).

use crate::authz::hops::{Addressed, CallerPlane, Destination, Route};
use crate::authz::{Identity, Mesh, PolicySet};
use crate::context::{ClusterView, Lookup};
use crate::dataplane::{workload_plane, Plane, PodPlane, Topology};
use crate::inventory::Inventory;
use crate::mesh::MeshContext;
use crate::model::authorization_policy::principal;
use crate::model::{AuthorizationPolicy, Service};
use crate::resource::{spec_of, Kind};
use crate::rules::service::{targeted_protocol, PortProtocol};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One port of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortNode {
    pub port: u16,
    pub protocol: PortProtocol,
}

/// One workload.
#[derive(Clone, Debug)]
pub struct WorkloadNode {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    /// Declared container ports (a workload that declares none gets one port, 80, sniffed).
    pub ports: Vec<PortNode>,
    /// The container ports as declared (names included, for Services' named `targetPort`s).
    pub(crate) container_ports: Vec<crate::mtls::ContainerPort>,
    /// Why nothing enforces (outside the mesh), if so.
    pub unenforced: Option<&'static str>,
    /// A Host its clients send (its Service's cluster name, else its name).
    pub host: String,
    /// The data plane, in words (`sidecar`, `ambient`, `none`, `unknown`).
    pub plane: &'static str,
    pub pod_plane: PodPlane,
}

impl WorkloadNode {
    /// `production/backend`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `production/deployment/backend`: unique in an inventory.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.namespace,
            self.kind.as_str().to_ascii_lowercase(),
            self.name
        )
    }
}

/// Who calls.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallerKind {
    Plaintext,
    /// A ServiceAccount (listed, run as, or named).
    Account,
    /// An identity in a namespace a policy names, that the input does not list.
    OtherInNamespace,
    /// A mesh identity nothing names.
    AnyOther,
}

/// One caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerNode {
    /// `production/frontend`, `istio-system/*`, `*`, or `plaintext`.
    pub label: String,
    pub kind: CallerKind,
    pub peer: Option<Identity>,
}

impl CallerNode {
    /// `--from NS/SA` or `--plaintext` for `meshguard simulate`.
    pub fn simulate_arg(&self) -> String {
        match &self.peer {
            None => "--plaintext".to_owned(),
            Some(id) => format!("--from {}/{}", id.namespace(), id.service_account()),
        }
    }
}

/// A Service's selector and ports, for protocol selection.
struct Svc<'a> {
    namespace: &'a str,
    name: &'a str,
    selector: BTreeMap<String, String>,
    spec: Service<'a>,
}

/// The protocol Istio picks for a workload's container port: from the first Service in its
/// namespace that selects the pods and has a port whose `targetPort` is that container port (by
/// number, or by the container port's name; absent, the Service port's own number). A port no
/// Service exposes is sniffed, as the sidecar's inbound passthrough chain does.
fn protocol(
    services: &[Svc<'_>],
    w: &crate::mtls::Workload,
    port: u32,
) -> (PortProtocol, Option<String>) {
    for s in services {
        if s.namespace != w.namespace
            || !crate::model::label_selector::all_pairs_match(
                &w.labels,
                s.selector.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
        {
            continue;
        }
        for sp in s.spec.ports() {
            if let Some(proto) = targeted_protocol(sp, w, port) {
                return (proto, Some(s.name.to_owned()));
            }
        }
    }
    (PortProtocol::Sniffed, None)
}

/// The workloads of an inventory, in inventory order.
pub fn workloads(inv: &Inventory, mesh: &MeshContext, cluster_domain: &str) -> Vec<WorkloadNode> {
    let services: Vec<Svc<'_>> = inv
        .of_kind(Kind::Service)
        .filter_map(|o| {
            let spec: Service<'static> = o.decode_spec().ok()?;
            let selector = spec.selector();
            (!selector.is_empty()).then(|| Svc {
                namespace: o.namespace(),
                name: o.name(),
                selector,
                spec,
            })
        })
        .collect();
    let mut out = Vec::with_capacity(inv.workloads().len());
    for w in inv.workloads() {
        let o = inv.workload_object(w);
        let t = o.template();
        let sa = t
            .as_ref()
            .and_then(|t| t.service_account())
            .map_or("default", |(_, sa)| sa)
            .to_owned();
        let pod_plane = match &t {
            Some(t) => workload_plane(mesh, o.namespace(), t, &inv.namespace_labels(o.namespace())),
            None => PodPlane {
                plane: Plane::Unknown,
                outside: None,
                bypass_inbound: false,
            },
        };
        let plane = pod_plane.plane;
        let unenforced = match plane {
            Plane::Outside => Some("the workload runs outside the mesh (no proxy)"),
            _ => None,
        };
        let mut host = None;
        let mut ports: Vec<PortNode> = Vec::new();
        for p in &w.workload.ports {
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            let (protocol, svc) = protocol(&services, &w.workload, p.port);
            if host.is_none() {
                host = svc;
            }
            ports.push(PortNode { port, protocol });
        }
        if ports.is_empty() {
            ports.push(PortNode {
                port: 80,
                protocol: PortProtocol::Sniffed,
            });
        }
        let host = match host {
            Some(svc) => format!("{svc}.{}.svc.{cluster_domain}", o.namespace()),
            None => format!("{}.{}.svc.{cluster_domain}", o.name(), o.namespace()),
        };
        out.push(WorkloadNode {
            kind: o.kind,
            namespace: o.namespace().to_owned(),
            name: o.name().to_owned(),
            labels: w.workload.labels.clone(),
            service_account: sa,
            ports,
            container_ports: w.workload.ports.clone(),
            unenforced,
            host,
            plane: plane.as_str(),
            pod_plane,
        });
    }
    out
}

/// What the AuthorizationPolicies of some objects name: identities (namespace, account) and
/// namespaces.
pub fn named<B: std::borrow::Borrow<kube::core::DynamicObject>>(
    policies: impl IntoIterator<Item = B>,
    trust_domains: &[&str],
) -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let mut ids = BTreeSet::new();
    let mut namespaces = BTreeSet::new();
    for b in policies {
        let o = b.borrow();
        let ap = AuthorizationPolicy::of(spec_of(o));
        let own = o.metadata.namespace.as_deref().unwrap_or("");
        for src in ap.sources() {
            for key in ["principals", "notPrincipals"] {
                for (_, p) in src.field(key).strings() {
                    if let Some((td, ns, sa)) = principal::identity(p) {
                        if trust_domains.contains(&td) || td == "cluster.local" {
                            ids.insert((ns.to_owned(), sa.to_owned()));
                        }
                    }
                }
            }
            for key in ["serviceAccounts", "notServiceAccounts"] {
                for (_, s) in src.field(key).strings() {
                    let (ns, sa) = s.split_once('/').unwrap_or((own, s));
                    if !ns.is_empty() && !sa.is_empty() && !sa.contains('/') {
                        ids.insert((ns.to_owned(), sa.to_owned()));
                    }
                }
            }
            for key in ["namespaces", "notNamespaces"] {
                for (_, n) in src.field(key).strings() {
                    if !n.contains('*') && !n.is_empty() {
                        namespaces.insert(n.to_owned());
                    }
                }
            }
        }
        for cond in ap.conditions() {
            let key = cond.key().unwrap_or("");
            if key == "source.principal" {
                for (_, p) in cond.strings("values").chain(cond.strings("notValues")) {
                    let parts: Vec<&str> = p.split('/').collect();
                    if let [_, "ns", ns, "sa", sa] = parts.as_slice() {
                        ids.insert(((*ns).to_owned(), (*sa).to_owned()));
                    }
                }
            } else if key == "source.namespace" {
                for (_, n) in cond.strings("values").chain(cond.strings("notValues")) {
                    if !n.contains('*') && !n.is_empty() {
                        namespaces.insert(n.to_owned());
                    }
                }
            }
        }
    }
    (ids, namespaces)
}

/// A name none of `taken` is: `base`, else `base-2`, `base-3`, ...
fn fresh(base: &str, taken: &BTreeSet<&str>) -> String {
    if !taken.contains(base) {
        return base.to_owned();
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !taken.contains(n.as_str()))
        .unwrap_or_else(|| base.to_owned())
}

/// What the callers of some inventories are made of: the accounts, the namespaces policies
/// name, and every namespace seen (so that "any other mesh identity" is in none of them).
#[derive(Clone, Debug, Default)]
pub(crate) struct CallerSeeds {
    accounts: BTreeSet<(String, String)>,
    namespaces: BTreeSet<String>,
    all_namespaces: BTreeSet<String>,
}

fn trust_domains(mesh: &Mesh) -> Vec<&str> {
    std::iter::once(mesh.trust_domain.as_str())
        .chain(mesh.trust_domain_aliases.iter().map(String::as_str))
        .collect()
}

impl CallerSeeds {
    /// The seeds of one or more inventories (both sides of a diff).
    pub fn of(inventories: &[&Inventory], mesh: &Mesh) -> CallerSeeds {
        let mut seeds = CallerSeeds::default();
        for inv in inventories {
            for o in inv.of_kind(Kind::ServiceAccount) {
                seeds
                    .accounts
                    .insert((o.namespace().to_owned(), o.name().to_owned()));
            }
            for w in inv.workloads() {
                let o = inv.workload_object(w);
                let sa = o
                    .template()
                    .and_then(|t| t.service_account().map(|(_, sa)| sa.to_owned()))
                    .unwrap_or_else(|| "default".to_owned());
                seeds.accounts.insert((o.namespace().to_owned(), sa));
            }
            seeds.add_named(
                inv.of_kind(Kind::AuthorizationPolicy)
                    .map(crate::inventory::Object::object),
                mesh,
            );
            seeds
                .all_namespaces
                .extend(inv.namespace_names().map(str::to_owned));
        }
        seeds
    }

    /// Add what some AuthorizationPolicies name (an admitted policy's old and new object).
    pub(crate) fn add_named<B: std::borrow::Borrow<kube::core::DynamicObject>>(
        &mut self,
        policies: impl IntoIterator<Item = B>,
        mesh: &Mesh,
    ) {
        let (ids, ns) = named(policies, &trust_domains(mesh));
        self.accounts.extend(ids);
        self.namespaces.extend(ns);
    }

    /// The callers, sorted: the plaintext client, accounts, other identities of named
    /// namespaces, any other mesh identity.
    pub fn callers(&self, mesh: &Mesh) -> Vec<CallerNode> {
        let (accounts, namespaces) = (&self.accounts, &self.namespaces);
        let mut out = vec![CallerNode {
            label: "plaintext".to_owned(),
            kind: CallerKind::Plaintext,
            peer: None,
        }];
        for (ns, sa) in accounts {
            out.push(CallerNode {
                label: format!("{ns}/{sa}"),
                kind: CallerKind::Account,
                peer: Some(mesh.identity(ns, sa)),
            });
        }
        for ns in namespaces {
            let taken: BTreeSet<&str> = accounts
                .iter()
                .filter(|(n, _)| n == ns)
                .map(|(_, sa)| sa.as_str())
                .collect();
            let sa = fresh("other", &taken);
            out.push(CallerNode {
                label: format!("{ns}/*"),
                kind: CallerKind::OtherInNamespace,
                peer: Some(mesh.identity(ns, &sa)),
            });
        }
        let taken: BTreeSet<&str> = self
            .all_namespaces
            .iter()
            .chain(namespaces)
            .map(String::as_str)
            .chain(accounts.iter().map(|(n, _)| n.as_str()))
            .collect();
        let ns = fresh("any-other", &taken);
        out.push(CallerNode {
            label: "*".to_owned(),
            kind: CallerKind::AnyOther,
            peer: Some(mesh.identity(&ns, "any-other")),
        });
        out
    }
}

/// The callers of one or more inventories (both sides of a diff), sorted: the plaintext client,
/// accounts, other identities of named namespaces, any other mesh identity.
pub fn callers(inventories: &[&Inventory], mesh: &Mesh) -> Vec<CallerNode> {
    CallerSeeds::of(inventories, mesh).callers(mesh)
}

/// How the requests of an edge to a workload port are addressed when they take a path of
/// their own through the data plane: through the first Service in the workload's namespace
/// that selects its pods, is bound to a waypoint and sends to the port (by number, or by the
/// container port's name), else to the pods directly when they are ambient. `None`: a sidecar
/// (or unknown) workload reached directly, which its own sidecar decides alone. The posture
/// page's columns, `diff`'s and impact's edges all address workloads this way.
pub fn addressed(
    topology: &Topology,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    container_ports: &[crate::mtls::ContainerPort],
    plane: Plane,
    port: u16,
) -> Option<Addressed> {
    use crate::dataplane::topology::TargetPort;
    let via = topology
        .services_selecting(namespace, labels)
        .find_map(|i| {
            let s = topology.service(i);
            s.binding.gateway()?;
            s.ports.iter().find_map(|p| {
                let target = match &p.target {
                    TargetPort::Number(n) => *n,
                    TargetPort::Name(n) => {
                        container_ports
                            .iter()
                            .find(|c| c.name.as_deref() == Some(n.as_str()))?
                            .port
                    }
                };
                (target == u32::from(port)).then(|| Addressed::Service {
                    service: i,
                    port: u16::try_from(p.port).unwrap_or(port),
                })
            })
        });
    via.or((plane == Plane::Ambient).then_some(Addressed::Pod))
}

/// The destination of a path, as the data-plane model sees a workload.
pub fn destination<'a>(
    topology: &Topology,
    kind: Kind,
    namespace: &'a str,
    name: &str,
    labels: &'a BTreeMap<String, String>,
    plane: PodPlane,
) -> Destination<'a> {
    Destination {
        namespace,
        labels,
        label: format!("{} {namespace}/{name}", kind.as_str().to_ascii_lowercase()),
        plane,
        workload_waypoint: topology.workload_binding(namespace, labels),
    }
}

/// The path a caller's requests to a workload port addressed as `via` take, with its ports:
/// the Service's port before a waypoint, the pod's after it ([`super::eval::PathEnforcement`]).
pub(crate) fn path_enforcement<'s>(
    set: &'s PolicySet,
    topology: &Topology,
    caller: CallerPlane,
    via: Addressed,
    pod_port: u16,
    dest: &Destination<'_>,
) -> super::eval::PathEnforcement<'s> {
    let route = Route::new(set, topology, caller, via, dest);
    let via_port = match via {
        Addressed::Service { port, .. } => port,
        Addressed::Pod => pod_port,
    };
    super::eval::PathEnforcement {
        route,
        via_port,
        pod_port,
    }
}

/// What decides the requests of a caller on `caller`'s data plane to one port of a workload in
/// a policy set: nothing (outside the mesh), the path through the data plane when the
/// workload is ambient or behind a Service bound to a waypoint ([`addressed`]: an ambient
/// caller's Service-addressed request passes the waypoint with the caller's identity, then the
/// pods' ztunnel or sidecar sees the waypoint's; sidecar callers, gateways without
/// `istio.io/ingress-use-waypoint` and plaintext clients go to the pods), else the workload's
/// sidecar. The second value is the Service the requests address, if any.
pub fn enforcement<'s>(
    set: &'s PolicySet,
    topology: &Topology,
    w: &WorkloadNode,
    port: u16,
    caller: CallerPlane,
) -> (super::Enforce<'s>, Option<Addressed>) {
    if let Some(why) = w.unenforced {
        return (super::Enforce::Unenforced(why), None);
    }
    let Some(via) = addressed(
        topology,
        &w.namespace,
        &w.labels,
        &w.container_ports,
        w.pod_plane.plane,
        port,
    ) else {
        return (
            super::Enforce::Sidecar(set.target(&w.namespace, &w.labels)),
            None,
        );
    };
    let dest = destination(
        topology,
        w.kind,
        &w.namespace,
        &w.name,
        &w.labels,
        w.pod_plane,
    );
    let path = path_enforcement(set, topology, caller, via, port, &dest);
    (super::Enforce::Path(Box::new(path)), Some(via))
}

/// Whether the requests to a workload port take a path that depends on the caller's data
/// plane ([`addressed`]); else every caller meets the same enforcement.
pub(crate) fn routed(topology: &Topology, w: &WorkloadNode, port: u16) -> bool {
    w.unenforced.is_none()
        && addressed(
            topology,
            &w.namespace,
            &w.labels,
            &w.container_ports,
            w.pod_plane.plane,
            port,
        )
        .is_some()
}

/// The data plane of every identity that runs workloads in the inventory (ambient, sidecar, or
/// a gateway's deployment), and of the identities istiod creates for gateways. `planes`: the
/// data plane of workloads (index into [`Inventory::workloads`]).
pub(crate) fn caller_planes(
    inventory: &Inventory,
    topology: &Topology,
    planes: &[(usize, PodPlane)],
) -> HashMap<(String, String), CallerPlane> {
    let mut out: HashMap<(String, String), CallerPlane> = HashMap::new();
    for &(i, p) in planes {
        let Some(w) = inventory.workloads().get(i) else {
            continue;
        };
        let o = inventory.workload_object(w);
        let Some(t) = o.template() else {
            continue;
        };
        let sa = t.service_account().map_or("default", |(_, s)| s);
        let gateway = t.label(crate::dataplane::labels::GATEWAY_NAME).is_some()
            || matches!(t.label("istio"), Some("ingressgateway" | "eastwestgateway"));
        let plane = if gateway {
            CallerPlane::Gateway
        } else if p.plane == Plane::Ambient {
            CallerPlane::Ambient
        } else {
            CallerPlane::Sidecar
        };
        let e = out
            .entry((w.workload.namespace.clone(), sa.to_owned()))
            .or_insert(plane);
        // Mixed planes for one identity: the sidecar's path (the simulator asks to choose).
        if *e != plane {
            *e = CallerPlane::Sidecar;
        }
    }
    for (ns, sa, g) in topology.gateway_identities() {
        if !g.is_waypoint() {
            out.insert((ns.to_owned(), sa.to_owned()), CallerPlane::Gateway);
        }
    }
    out
}

/// The data plane of every caller of an inventory: that of the workloads running as its
/// identity ([`caller_planes`]); a waypoint's identity calls as a sidecar does (straight to
/// the pods); an identity no workload runs as is on its namespace's data plane (ambient when
/// the namespace is captured, else a sidecar), as `meshguard simulate --from` takes it; the
/// plaintext client is outside the mesh.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallerPlanes {
    by_identity: HashMap<(String, String), CallerPlane>,
    ambient_namespaces: BTreeSet<String>,
}

impl CallerPlanes {
    pub fn new(
        inventory: &Inventory,
        mesh: &MeshContext,
        topology: &Topology,
        workloads: &[WorkloadNode],
    ) -> CallerPlanes {
        let planes: Vec<(usize, PodPlane)> = workloads
            .iter()
            .enumerate()
            .map(|(i, w)| (i, w.pod_plane))
            .collect();
        let ambient_namespaces = inventory
            .namespace_names()
            .filter(|ns| match inventory.namespace_labels(ns) {
                Lookup::Found(l) => {
                    crate::dataplane::namespace_plane(mesh, ns, &l) == Plane::Ambient
                }
                _ => false,
            })
            .map(str::to_owned)
            .collect();
        let mut by_identity = caller_planes(inventory, topology, &planes);
        // A waypoint's own identity calls as a proxy, never through a waypoint (as `simulate
        // --from` takes it).
        for (ns, sa, g) in topology.gateway_identities() {
            if g.is_waypoint() {
                by_identity.insert((ns.to_owned(), sa.to_owned()), CallerPlane::Sidecar);
            }
        }
        CallerPlanes {
            by_identity,
            ambient_namespaces,
        }
    }

    /// The data plane of a caller (`None`: the plaintext client).
    pub fn of(&self, peer: Option<&Identity>) -> CallerPlane {
        let Some(id) = peer else {
            return CallerPlane::Outside;
        };
        let key = (id.namespace().to_owned(), id.service_account().to_owned());
        match self.by_identity.get(&key) {
            Some(p) => *p,
            None if self.ambient_namespaces.contains(id.namespace()) => CallerPlane::Ambient,
            None => CallerPlane::Sidecar,
        }
    }
}

/// Whether a namespace's labels are known to the view (for notes).
pub fn labels_known(view: &dyn ClusterView, ns: &str) -> bool {
    matches!(view.namespace_labels(ns), Lookup::Found(_))
}
