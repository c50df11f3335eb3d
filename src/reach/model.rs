//! The nodes of the reachability graph of an inventory: workloads with their ports (the
//! protocol Istio picks for each) and data plane, and the callers worth asking about.
//!
//! **Callers**: every ServiceAccount of the input and every account its workloads run as; every
//! identity the AuthorizationPolicies name (`principals` without wildcards, `serviceAccounts`);
//! for every namespace the policies name (`namespaces`), *another identity in it* (an account
//! the input does not list); a plaintext client; and *any other mesh identity* (a namespace and
//! account nothing names).

use crate::authz::{Identity, Mesh, PolicySet};
use crate::context::{ClusterView, Lookup};
use crate::dataplane::{workload_plane, Plane, PodPlane, Topology};
use crate::inventory::Inventory;
use crate::istio::AuthorizationPolicy;
use crate::mesh::MeshContext;
use crate::pod_template::PodTemplate;
use crate::resource::{spec_of, Kind};
use crate::rules::service::{port_protocol, PortProtocol};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

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
    spec: &'a Value,
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
    let port_name = w
        .ports
        .iter()
        .find(|p| p.port == port)
        .and_then(|p| p.name.as_deref());
    for s in services {
        if s.namespace != w.namespace || !s.selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
        {
            continue;
        }
        for sp in crate::json::items(s.spec, "ports") {
            let number = sp.get("port").and_then(Value::as_u64);
            let target = match sp.get("targetPort") {
                Some(Value::Number(n)) => n.as_u64() == Some(u64::from(port)),
                Some(Value::String(t)) => match t.parse::<u64>() {
                    Ok(n) => n == u64::from(port),
                    Err(_) => port_name == Some(t.as_str()),
                },
                _ => number == Some(u64::from(port)),
            };
            if !target {
                continue;
            }
            let proto = port_protocol(
                number.and_then(|n| u32::try_from(n).ok()).unwrap_or(port),
                sp.get("name").and_then(Value::as_str).unwrap_or(""),
                sp.get("protocol").and_then(Value::as_str).unwrap_or("TCP"),
                sp.get("appProtocol").and_then(Value::as_str),
            );
            return (proto, Some(s.name.to_owned()));
        }
    }
    (PortProtocol::Sniffed, None)
}

/// The workloads of an inventory, in inventory order.
pub fn workloads(inv: &Inventory, mesh: &MeshContext, cluster_domain: &str) -> Vec<WorkloadNode> {
    let services: Vec<Svc<'_>> = inv
        .of_kind(Kind::Service)
        .filter_map(|o| {
            let spec = spec_of(&o.object);
            let selector = crate::json::string_map(spec.get("selector").unwrap_or(&Value::Null));
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
        let t = PodTemplate::of(o.kind, &o.object);
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
pub fn named<'o>(
    policies: impl IntoIterator<Item = &'o kube::core::DynamicObject>,
    trust_domains: &[&str],
) -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let mut ids = BTreeSet::new();
    let mut namespaces = BTreeSet::new();
    for o in policies {
        let ap = AuthorizationPolicy::of(spec_of(o));
        let own = o.metadata.namespace.as_deref().unwrap_or("");
        for src in ap.sources() {
            for key in ["principals", "notPrincipals"] {
                for (_, p) in src.field(key).strings() {
                    if p.contains('*') {
                        continue;
                    }
                    let parts: Vec<&str> = p.split('/').collect();
                    if let [td, "ns", ns, "sa", sa] = parts.as_slice() {
                        if trust_domains.contains(td) || *td == "cluster.local" {
                            ids.insert(((*ns).to_owned(), (*sa).to_owned()));
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
pub struct CallerSeeds {
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
                let sa = PodTemplate::of(o.kind, &o.object)
                    .and_then(|t| t.service_account().map(|(_, sa)| sa.to_owned()))
                    .unwrap_or_else(|| "default".to_owned());
                seeds.accounts.insert((o.namespace().to_owned(), sa));
            }
            seeds.add_named(
                inv.of_kind(Kind::AuthorizationPolicy).map(|o| &o.object),
                mesh,
            );
            seeds
                .all_namespaces
                .extend(inv.namespace_names().map(str::to_owned));
        }
        seeds
    }

    /// Add what some AuthorizationPolicies name (an admitted policy's old and new object).
    pub fn add_named<'o>(
        &mut self,
        policies: impl IntoIterator<Item = &'o kube::core::DynamicObject>,
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

/// The enforcement point of a workload in a policy set. An ambient workload is decided by its
/// ztunnel, as a request addressed to its pods from a caller that uses no waypoint meets it
/// ([`crate::authz::hops::Route`]); the paths of ambient callers through waypoints are the
/// posture page's (`posture::reach`), not yet `diff`'s and impact's.
pub fn enforcement<'s>(
    set: &'s PolicySet,
    topology: &Topology,
    w: &WorkloadNode,
) -> super::Enforce<'s> {
    use crate::authz::hops::{Addressed, CallerPlane, Destination, Route};
    match (w.unenforced, w.pod_plane.plane) {
        (Some(why), _) => super::Enforce::Unenforced(why),
        (None, Plane::Ambient) => {
            let dest = Destination {
                namespace: &w.namespace,
                labels: &w.labels,
                label: format!("{} {}", w.kind.as_str().to_ascii_lowercase(), w.id()),
                plane: w.pod_plane,
                workload_waypoint: topology.workload_binding(&w.namespace, &w.labels),
            };
            let route = Route::new(set, topology, CallerPlane::Sidecar, Addressed::Pod, &dest);
            // No waypoint on this path: the requests reach the pods on the port they address
            // (the partition's), so the ports here are not read.
            super::Enforce::Path(Box::new(super::eval::PathEnforcement {
                route,
                via_port: 0,
                pod_port: 0,
            }))
        }
        (None, _) => super::Enforce::Sidecar(set.target(&w.namespace, &w.labels)),
    }
}

/// Whether a namespace's labels are known to the view (for notes).
pub fn labels_known(view: &dyn ClusterView, ns: &str) -> bool {
    matches!(view.namespace_labels(ns), Lookup::Found(_))
}
