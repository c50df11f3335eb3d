//! What an AuthorizationPolicy or PeerAuthentication change opens: the webhook's `impact`
//! setting. Pure: the cluster comes in as an [`ImpactIndex`] (built by `serve` from its watch
//! of the objects that decide requests) and the change as the review's old and new object.
//!
//! For every workload the object can affect (its namespace's, or every workload for the root
//! namespace) and that the object applies to before or after the change, the request space of
//! every caller on every port is computed before and after ([`super::compare`]); what opens
//! (an edge that becomes reachable, requests newly allowed) and every port that stops requiring
//! mTLS is said in one line each, the callers of the same opening together. Edges follow the
//! request's path per caller data plane ([`model::enforcement`]): an ambient caller's request
//! to a workload behind a waypoint-bound Service passes the waypoint, so a `targetRefs` policy
//! there is judged where it applies.
//!
//! ```text
//! this change lets cluster.local/ns/shop/sa/web call payments:8080 (GET /admin/*)
//! ```
//!
//! Only openings are reported: closing access is what a reviewer expects of a policy change and
//! `meshguard diff` lists it. The work is bounded by [`Limits`]; past them the answer says it
//! stopped.

use super::eval::Enforcement;
use super::model::{self, CallerKind, CallerNode, CallerPlanes, CallerSeeds, WorkloadNode};
use super::space::{Partition, Protocols};
use super::ChangeKind;
use crate::authz::hops::{Addressed, CallerPlane};
use crate::authz::{Mesh, PolicySet};
use crate::inventory::Inventory;
use crate::mesh::MeshContext;
use crate::model::MtlsMode;
use crate::resource::Kind;
use kube::core::DynamicObject;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// The cluster as the impact computation reads it: the objects that decide requests, the
/// workloads with their ports, and the callers worth asking about. Built once per change of
/// the watched objects, shared by every review.
#[derive(Debug)]
pub struct ImpactIndex {
    inventory: Inventory,
    workloads: Vec<WorkloadNode>,
    by_namespace: HashMap<String, Vec<usize>>,
    /// AuthorizationPolicies, PeerAuthentications and RequestAuthentications by namespace
    /// (indexes into the inventory).
    policies: HashMap<String, Vec<usize>>,
    seeds: CallerSeeds,
    topology: crate::dataplane::Topology,
    /// The data plane each caller calls from.
    planes: CallerPlanes,
}

/// The kinds the policy sets are built from.
fn decides(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::AuthorizationPolicy | Kind::PeerAuthentication | Kind::RequestAuthentication
    )
}

impl ImpactIndex {
    /// Index a cluster listing (Namespaces, ServiceAccounts, Services, workloads and the
    /// security policies).
    pub fn new(inventory: Inventory, mesh: &MeshContext, cluster_domain: &str) -> ImpactIndex {
        let workloads = model::workloads(&inventory, mesh, cluster_domain);
        let mut by_namespace: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, w) in workloads.iter().enumerate() {
            by_namespace.entry(w.namespace.clone()).or_default().push(i);
        }
        let mut policies: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, o) in inventory.objects().iter().enumerate() {
            if decides(o.kind) {
                policies
                    .entry(o.namespace().to_owned())
                    .or_default()
                    .push(i);
            }
        }
        let seeds = CallerSeeds::of(&[&inventory], &Mesh::from_context(mesh));
        let topology =
            crate::dataplane::Topology::new(inventory.decoded(crate::dataplane::Topology::reads));
        let planes = CallerPlanes::new(&inventory, mesh, &topology, &workloads);
        ImpactIndex {
            planes,
            inventory,
            workloads,
            by_namespace,
            policies,
            seeds,
            topology,
        }
    }

    /// Workloads indexed.
    pub fn workloads(&self) -> usize {
        self.workloads.len()
    }

    /// Objects indexed.
    pub fn objects(&self) -> usize {
        self.inventory.len()
    }
}

/// How much one review may compute.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Workload ports compared (after the ones the object does not apply to are left out).
    pub ports: usize,
    /// Distinct caller classes evaluated per workload port.
    pub(crate) classes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            ports: 500,
            classes: 256,
        }
    }
}

/// One caller newly allowed to send some requests to one workload port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    /// Who: `cluster.local/ns/shop/sa/web`, `any identity in namespace istio-system`, `any
    /// mesh identity`, `plaintext clients`.
    pub who: String,
    /// `shop/payments`.
    pub to: String,
    pub port: u16,
    pub kind: ChangeKind,
    /// The requests newly allowed, in words (`all`, `GET /admin/*`).
    pub requests: String,
}

/// A port that stops requiring mTLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtlsOpening {
    pub to: String,
    pub port: u16,
    pub from: MtlsMode,
    pub now: MtlsMode,
}

/// What a change opens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impact {
    pub openings: Vec<Opening>,
    pub mtls: Vec<MtlsOpening>,
    /// Workload ports compared.
    pub ports: usize,
    /// Why the answer is partial, if it is.
    pub stopped: Option<String>,
}

/// The object under review, before and after.
#[derive(Clone, Copy, Debug)]
pub struct Change<'o> {
    pub kind: Kind,
    pub namespace: &'o str,
    pub name: &'o str,
    /// `None` on CREATE.
    pub old: Option<&'o DynamicObject>,
    /// `None` on DELETE.
    pub new: Option<&'o DynamicObject>,
}

fn who(c: &CallerNode) -> String {
    match (&c.kind, &c.peer) {
        (CallerKind::Plaintext, _) | (_, None) => "plaintext clients".to_owned(),
        (CallerKind::Account, Some(id)) => id.principal().to_owned(),
        (CallerKind::OtherInNamespace, Some(id)) => {
            format!("any identity in namespace {}", id.namespace())
        }
        (CallerKind::AnyOther, _) => "any mesh identity".to_owned(),
    }
}

/// What `change` opens in the cluster of `index`.
pub fn impact(index: &ImpactIndex, mesh: &Mesh, change: Change<'_>, limits: Limits) -> Impact {
    let mut out = Impact::default();
    if !matches!(
        change.kind,
        Kind::AuthorizationPolicy | Kind::PeerAuthentication
    ) {
        return out;
    }
    let root = change.namespace == mesh.root_namespace;
    let same = |o: &crate::inventory::Object| {
        o.kind == change.kind && o.namespace() == change.namespace && o.name() == change.name
    };
    // The policies that can apply to the workloads in scope: their namespace's and the root
    // namespace's (all of them for a change in the root namespace).
    let objects: Vec<&crate::inventory::Object> = if root {
        index
            .policies
            .values()
            .flatten()
            .map(|&i| &index.inventory.objects()[i])
            .collect()
    } else {
        [change.namespace, mesh.root_namespace.as_str()]
            .iter()
            .filter_map(|ns| index.policies.get(*ns))
            .flatten()
            .map(|&i| &index.inventory.objects()[i])
            .collect()
    };
    let others = || {
        objects
            .iter()
            .filter(|o| !same(o))
            .filter(|o| PolicySet::reads(o.kind))
            .map(|o| (o.kind, Cow::Owned(o.object())))
    };
    let base = PolicySet::new(
        mesh.clone(),
        others().chain(change.old.map(|o| (change.kind, Cow::Borrowed(o)))),
    );
    let head = PolicySet::new(
        mesh.clone(),
        others().chain(change.new.map(|o| (change.kind, Cow::Borrowed(o)))),
    );
    let id = format!("{}/{}", change.namespace, change.name);
    let scope: Vec<&WorkloadNode> = if root {
        index.workloads.iter().collect()
    } else {
        index
            .by_namespace
            .get(change.namespace)
            .into_iter()
            .flatten()
            .map(|&i| &index.workloads[i])
            .collect()
    };
    let mut seeds = index.seeds.clone();
    if change.kind == Kind::AuthorizationPolicy {
        seeds.add_named(change.old.into_iter().chain(change.new), mesh);
    }
    let callers = seeds.callers(mesh);
    // Every caller's data plane, and the planes present: each takes its own path to an
    // ambient workload or one behind a Service bound to a waypoint (the posture page's paths).
    let planes: Vec<CallerPlane> = callers
        .iter()
        .map(|c| index.planes.of(c.peer.as_ref()))
        .collect();
    let mut present: Vec<CallerPlane> = planes.clone();
    present.sort_by_key(|p| p.as_str());
    present.dedup();
    let applies = |e: &Enforcement<'_>| e.applied().0.contains(&id);
    for w in scope {
        if w.unenforced.is_some() {
            continue;
        }
        // (`after`: HEAD's policy set, else BASE's.)
        let paths = |after: bool, port: u16, plane: CallerPlane| {
            let set = if after { &head } else { &base };
            model::enforcement(set, &index.topology, w, port, plane).0
        };
        // The pods' mode, the same on every caller's path.
        let mtls_of = |after: bool, port: u16| paths(after, port, CallerPlane::Sidecar).mtls(port);
        let mtls_moves = w
            .ports
            .iter()
            .any(|p| mtls_of(false, p.port) != mtls_of(true, p.port));
        let relevant = match change.kind {
            Kind::AuthorizationPolicy => {
                mtls_moves
                    || w.ports.iter().any(|p| {
                        let here: &[CallerPlane] = if model::routed(&index.topology, w, p.port) {
                            &present
                        } else {
                            &[CallerPlane::Sidecar]
                        };
                        here.iter().any(|&plane| {
                            applies(&paths(false, p.port, plane))
                                || applies(&paths(true, p.port, plane))
                        })
                    })
            }
            _ => mtls_moves,
        };
        if !relevant {
            continue;
        }
        let mut ports: BTreeMap<u16, Protocols> = BTreeMap::new();
        for p in &w.ports {
            let proto = Protocols::of(p.protocol);
            ports
                .entry(p.port)
                .and_modify(|x| {
                    x.tcp |= proto.tcp;
                    x.http |= proto.http;
                })
                .or_insert(proto);
        }
        let to = if w.namespace == change.namespace {
            w.name.clone()
        } else {
            w.id()
        };
        for (&port, &protocols) in &ports {
            if out.ports >= limits.ports {
                out.stopped = Some(format!(
                    "stopped after {} workload ports (the change can affect more)",
                    limits.ports
                ));
                return out;
            }
            out.ports += 1;
            if let (Some(MtlsMode::Strict), Some(now)) = (mtls_of(false, port), mtls_of(true, port))
            {
                if now != MtlsMode::Strict {
                    out.mtls.push(MtlsOpening {
                        to: to.clone(),
                        port,
                        from: MtlsMode::Strict,
                        now,
                    });
                }
            }
            let mut classes: HashMap<(CallerPlane, Vec<u64>, Vec<u64>), Vec<super::Change>> =
                HashMap::new();
            // One pass for every caller when the path does not depend on its plane.
            let routed = model::routed(&index.topology, w, port);
            let here: &[CallerPlane] = if routed {
                &present
            } else {
                &[CallerPlane::Sidecar]
            };
            for &plane in here {
                let (be, via) = model::enforcement(&base, &index.topology, w, port, plane);
                let (he, head_via) = model::enforcement(&head, &index.topology, w, port, plane);
                // Behind a Service bound to a waypoint the requests carry the Service's port.
                let at = match head_via.or(via) {
                    Some(Addressed::Service { port, .. }) => port,
                    _ => port,
                };
                let mut p = Partition::new(&[&be, &he], at, protocols, &w.host);
                if let Some(n) = p.too_large {
                    out.stopped = Some(format!(
                        "{}:{port} not compared: {n} combinations of policy values",
                        w.id()
                    ));
                    continue;
                }
                let (bf, hf) = (fields(&be), fields(&he));
                for (caller, _) in callers
                    .iter()
                    .zip(&planes)
                    .filter(|(_, &p)| !routed || p == plane)
                {
                    let key = (
                        plane,
                        be.caller_key(&bf, caller.peer.as_ref(), at),
                        he.caller_key(&hf, caller.peer.as_ref(), at),
                    );
                    let found = match classes.get(&key) {
                        Some(c) => c.clone(),
                        None => {
                            if classes.len() >= limits.classes {
                                out.stopped = Some(format!(
                                    "{}:{port}: stopped after {} kinds of caller",
                                    w.id(),
                                    limits.classes
                                ));
                                break;
                            }
                            let bs = p.evaluate(&be, caller.peer.clone());
                            let hs = p.evaluate(&he, caller.peer.clone());
                            let c: Vec<super::Change> = super::compare(&p, (&be, &bs), (&he, &hs))
                                .into_iter()
                                .filter(|c| c.kind.opens())
                                .collect();
                            classes.insert(key, c.clone());
                            c
                        }
                    };
                    for c in found {
                        out.openings.push(Opening {
                            who: who(caller),
                            to: to.clone(),
                            port,
                            kind: c.kind,
                            requests: c.text,
                        });
                    }
                }
            }
        }
    }
    out
}

fn fields<'s>(e: &Enforcement<'s>) -> Vec<&'s crate::authz::field::Field> {
    let mut all = Vec::new();
    e.fields(&mut all);
    all.into_iter()
        .filter(|f| super::eval::is_identity(f))
        .collect()
}

impl Impact {
    /// Nothing opens.
    pub fn is_empty(&self) -> bool {
        self.openings.is_empty() && self.mtls.is_empty()
    }

    /// One line per opening (callers of the same requests to the same port together), then per
    /// port that stops requiring mTLS; at most `max` lines, the last saying how many more.
    pub fn messages(&self, max: usize) -> Vec<String> {
        let mut groups: Vec<(&Opening, Vec<&str>)> = Vec::new();
        for o in &self.openings {
            match groups
                .iter_mut()
                .find(|(g, _)| g.to == o.to && g.port == o.port && g.requests == o.requests)
            {
                Some((_, whos)) => whos.push(&o.who),
                None => groups.push((o, vec![&o.who])),
            }
        }
        let mut lines: Vec<String> = groups
            .iter()
            .map(|(o, whos)| {
                let callers = match whos.as_slice() {
                    [one] => (*one).to_owned(),
                    [a, b] => format!("{a} and {b}"),
                    [a, rest @ ..] => format!("{a} and {} more callers", rest.len()),
                    [] => String::new(),
                };
                let requests = if o.requests == "all" {
                    "any request".to_owned()
                } else {
                    o.requests.clone()
                };
                format!(
                    "this change lets {callers} call {}:{} ({requests})",
                    o.to, o.port
                )
            })
            .collect();
        lines.extend(self.mtls.iter().map(|m| {
            format!(
                "this change lets plaintext reach {}:{}: mTLS {} → {}",
                m.to,
                m.port,
                m.from.as_str(),
                m.now.as_str()
            )
        }));
        if let Some(s) = &self.stopped {
            lines.push(format!("impact incomplete: {s}"));
        }
        if lines.len() > max && max > 0 {
            let more = lines.len() - (max - 1);
            lines.truncate(max - 1);
            lines.push(format!(
                "…and {more} more openings (meshguard diff lists them all)"
            ));
        }
        lines
    }
}

/// The current [`ImpactIndex`], swapped whole by `serve`'s watch and read by every review.
#[derive(Debug, Default)]
pub struct ImpactSlot {
    current: std::sync::RwLock<Option<std::sync::Arc<ImpactIndex>>>,
}

impl ImpactSlot {
    pub fn set(&self, index: ImpactIndex) {
        if let Ok(mut g) = self.current.write() {
            *g = Some(std::sync::Arc::new(index));
        }
    }

    /// Share an index already built.
    pub fn set_shared(&self, index: std::sync::Arc<ImpactIndex>) {
        if let Ok(mut g) = self.current.write() {
            *g = Some(index);
        }
    }

    /// `None` until the watch has synced once.
    pub fn current(&self) -> Option<std::sync::Arc<ImpactIndex>> {
        self.current.read().ok().and_then(|g| g.clone())
    }
}

/// The review's change, when it is one `impact` judges: an AuthorizationPolicy or
/// PeerAuthentication CREATE, UPDATE or DELETE.
pub(crate) fn change_of<'a>(review: &crate::resource::Review<'a>) -> Option<Change<'a>> {
    use kube::core::admission::Operation;
    if !matches!(
        review.kind,
        Kind::AuthorizationPolicy | Kind::PeerAuthentication
    ) {
        return None;
    }
    let (old, new) = match review.operation {
        Operation::Create => (None, review.object),
        Operation::Update => (review.old_object, review.object),
        Operation::Delete => (review.old_object, None),
        Operation::Connect => return None,
    };
    if old.is_none() && new.is_none() {
        return None;
    }
    Some(Change {
        kind: review.kind,
        namespace: review.namespace,
        name: review.name,
        old,
        new,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Loaded;
    use kube::core::admission::Operation;

    /// A shop: web calls payments (GET /api/*), a namespace-wide allow-nothing, STRICT mTLS,
    /// and a workload in another namespace.
    const SHOP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: payments, namespace: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      containers: [{name: web, image: example/web:1, ports: [{containerPort: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: payments, namespace: shop}
spec:
  selector: {matchLabels: {app: payments}}
  template:
    metadata: {labels: {app: payments}}
    spec:
      serviceAccountName: payments
      containers: [{name: p, image: example/payments:1, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: payments, namespace: shop}
spec:
  selector: {app: payments}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: other}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      serviceAccountName: api
      containers: [{name: a, image: example/api:1, ports: [{containerPort: 9090}]}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: shop}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments-callers, namespace: shop}
spec:
  selector: {matchLabels: {app: payments}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]
    to: [{operation: {methods: [GET], paths: [/api/*]}}]
"#;

    fn index() -> (ImpactIndex, Mesh) {
        let mut loaded = Loaded::default();
        crate::manifest::parse_into("shop.yaml", SHOP, &mut loaded);
        let prepared = crate::check::prepare(&mut loaded, "default", false, true);
        assert!(prepared.errors.is_empty(), "{:?}", prepared.errors);
        let mesh = crate::check::mesh_context(&prepared, None, None);
        let index = ImpactIndex::new(prepared.inventory, &mesh, "cluster.local");
        (index, Mesh::from_context(&mesh))
    }

    fn object(yaml: &str) -> DynamicObject {
        let mut loaded = Loaded::default();
        crate::manifest::parse_into("change.yaml", yaml, &mut loaded);
        loaded.objects.remove(0).object
    }

    fn payments_callers(paths: &str, principals: &str) -> DynamicObject {
        object(&format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: payments-callers, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: payments}}}}\n  rules:\n  - from: [{{source: {{principals: [{principals}]}}}}]\n    to: [{{operation: {{methods: [GET], paths: [{paths}]}}}}]\n"
        ))
    }

    fn said(index: &ImpactIndex, mesh: &Mesh, change: Change<'_>) -> Vec<String> {
        impact(index, mesh, change, Limits::default()).messages(8)
    }

    #[test]
    fn an_update_that_widens_names_the_caller_the_port_and_the_requests() {
        let (index, mesh) = index();
        let old = payments_callers("/api/*", "cluster.local/ns/shop/sa/web");
        let new = payments_callers("/api/*, /admin/*", "cluster.local/ns/shop/sa/web");
        let change = Change {
            kind: Kind::AuthorizationPolicy,
            namespace: "shop",
            name: "payments-callers",
            old: Some(&old),
            new: Some(&new),
        };
        assert_eq!(
            said(&index, &mesh, change),
            ["this change lets cluster.local/ns/shop/sa/web call payments:8080 (GET /admin/*)"]
        );
    }

    #[test]
    fn a_new_caller_and_a_deleted_allow_nothing_policy_are_openings() {
        let (index, mesh) = index();
        let old = payments_callers("/api/*", "cluster.local/ns/shop/sa/web");
        let new = payments_callers("/api/*", "cluster.local/ns/other/sa/api");
        let lines = said(
            &index,
            &mesh,
            Change {
                kind: Kind::AuthorizationPolicy,
                namespace: "shop",
                name: "payments-callers",
                old: Some(&old),
                new: Some(&new),
            },
        );
        assert_eq!(
            lines,
            ["this change lets cluster.local/ns/other/sa/api call payments:8080 (GET /api/*)"]
        );
        // Deleting the namespace's allow-nothing policy opens web (no ALLOW policy is left for
        // it) to every mesh caller; payments keeps its own policy.
        let deny_all = object(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: shop}\nspec: {}\n",
        );
        let lines = said(
            &index,
            &mesh,
            Change {
                kind: Kind::AuthorizationPolicy,
                namespace: "shop",
                name: "deny-all",
                old: Some(&deny_all),
                new: None,
            },
        );
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("this change lets cluster.local/ns/")
                && lines[0].ends_with("more callers call web:8080 (any request)"),
            "{lines:?}"
        );
    }

    #[test]
    fn narrowing_an_unrelated_namespace_and_an_unchanged_update_say_nothing() {
        let (index, mesh) = index();
        let old = payments_callers("/api/*, /admin/*", "cluster.local/ns/shop/sa/web");
        let new = payments_callers("/api/*", "cluster.local/ns/shop/sa/web");
        let quiet = |old: Option<&DynamicObject>, new: Option<&DynamicObject>, ns: &str| {
            let found = impact(
                &index,
                &mesh,
                Change {
                    kind: Kind::AuthorizationPolicy,
                    namespace: ns,
                    name: "payments-callers",
                    old,
                    new,
                },
                Limits::default(),
            );
            assert!(found.is_empty() && found.stopped.is_none(), "{found:?}");
            found.ports
        };
        assert_eq!(
            quiet(Some(&old), Some(&new), "shop"),
            1,
            "narrowing: compared, quiet"
        );
        assert_eq!(quiet(Some(&new), Some(&new), "shop"), 1);
        // The same policy in a namespace with no workload it selects: nothing compared.
        let elsewhere = object(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: payments-callers, namespace: other}\nspec:\n  selector: {matchLabels: {app: payments}}\n  rules: [{}]\n",
        );
        assert_eq!(quiet(None, Some(&elsewhere), "other"), 0);
    }

    #[test]
    fn a_port_that_stops_requiring_mtls_is_said() {
        let (index, mesh) = index();
        let strict = object(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec: {mtls: {mode: STRICT}}\n",
        );
        let permissive = object(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec: {mtls: {mode: PERMISSIVE}}\n",
        );
        let change = |old, new| Change {
            kind: Kind::PeerAuthentication,
            namespace: "shop",
            name: "default",
            old,
            new,
        };
        let found = impact(
            &index,
            &mesh,
            change(Some(&strict), Some(&permissive)),
            Limits::default(),
        );
        let lines = found.messages(8);
        assert!(
            lines.contains(
                &"this change lets plaintext reach payments:8080: mTLS STRICT → PERMISSIVE"
                    .to_owned()
            ),
            "{lines:?}"
        );
        assert!(
            lines.contains(
                &"this change lets plaintext reach web:8080: mTLS STRICT → PERMISSIVE".to_owned()
            ),
            "{lines:?}"
        );
        // Plaintext reaches nothing through the ALLOW rules (they name principals), so no
        // edge opens: only the ports are said.
        assert!(found.openings.is_empty(), "{found:?}");
        // The other way round is quiet.
        assert!(impact(
            &index,
            &mesh,
            change(Some(&permissive), Some(&strict)),
            Limits::default()
        )
        .is_empty());
    }

    #[test]
    fn limits_stop_the_work_and_say_so() {
        let (index, mesh) = index();
        let deny_all = object(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: shop}\nspec: {}\n",
        );
        let found = impact(
            &index,
            &mesh,
            Change {
                kind: Kind::AuthorizationPolicy,
                namespace: "shop",
                name: "deny-all",
                old: Some(&deny_all),
                new: None,
            },
            Limits {
                ports: 1,
                classes: 256,
            },
        );
        assert!(found.stopped.is_some(), "{found:?}");
        assert!(found
            .messages(8)
            .last()
            .is_some_and(|l| l.starts_with("impact incomplete: stopped after 1 workload ports")));
    }

    /// The ambient fixture: shop is ambient, its Services use the waypoint `waypoint`, and
    /// reviews-l7 (`targetRefs` Service reviews) lets frontend and the ingress gateway GET.
    fn ambient_index() -> (ImpactIndex, Mesh) {
        let mut loaded = Loaded::default();
        for (name, text) in [
            (
                "00-mesh.yaml",
                include_str!("../../tests/fixtures/ambient/00-mesh.yaml"),
            ),
            (
                "10-shop.yaml",
                include_str!("../../tests/fixtures/ambient/10-shop.yaml"),
            ),
            (
                "20-payments.yaml",
                include_str!("../../tests/fixtures/ambient/20-payments.yaml"),
            ),
            (
                "30-ingress.yaml",
                include_str!("../../tests/fixtures/ambient/30-ingress.yaml"),
            ),
        ] {
            crate::manifest::parse_into(name, text, &mut loaded);
        }
        let prepared = crate::check::prepare(&mut loaded, "default", false, true);
        assert!(prepared.errors.is_empty(), "{:?}", prepared.errors);
        let mesh = crate::check::mesh_context(&prepared, None, None);
        let index = ImpactIndex::new(prepared.inventory, &mesh, "cluster.local");
        (index, Mesh::from_context(&mesh))
    }

    fn reviews_l7(principals: &str, methods: &str) -> DynamicObject {
        object(&format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: reviews-l7, namespace: shop}}\nspec:\n  targetRefs: [{{kind: Service, group: \"\", name: reviews}}]\n  rules:\n  - from: [{{source: {{principals: [{principals}]}}}}]\n    to: [{{operation: {{methods: [{methods}]}}}}]\n"
        ))
    }

    #[test]
    fn a_waypoint_policy_change_is_judged_on_the_path_through_the_waypoint() {
        let (index, mesh) = ambient_index();
        let callers = "cluster.local/ns/shop/sa/frontend, cluster.local/ns/ingress/sa/public-istio";
        let old = reviews_l7(callers, "GET");
        let change = |old, new| Change {
            kind: Kind::AuthorizationPolicy,
            namespace: "shop",
            name: "reviews-l7",
            old,
            new,
        };
        // Widened at the waypoint: the callers it names, through the waypoint (their own
        // identity there; the pods' ztunnel admits the waypoint's). A ztunnel-only view of
        // reviews (pod-addressed, no waypoint) sees no change at all.
        let new = reviews_l7(callers, "GET, POST");
        assert_eq!(
            said(&index, &mesh, change(Some(&old), Some(&new))),
            ["this change lets cluster.local/ns/shop/sa/frontend and cluster.local/ns/ingress/sa/public-istio call reviews:9080 (POST any path but /debug*)"]
        );
        // The same callers in another order: compared (the policy applies at the waypoint),
        // quiet.
        let reordered = reviews_l7(
            "cluster.local/ns/ingress/sa/public-istio, cluster.local/ns/shop/sa/frontend",
            "GET",
        );
        let found = impact(
            &index,
            &mesh,
            change(Some(&old), Some(&reordered)),
            Limits::default(),
        );
        assert!(found.is_empty() && found.stopped.is_none(), "{found:?}");
        assert_eq!(found.ports, 1, "reviews:9080 compared");
        // Narrowing is not an opening.
        let narrowed = reviews_l7("cluster.local/ns/shop/sa/frontend", "GET");
        assert!(impact(
            &index,
            &mesh,
            change(Some(&old), Some(&narrowed)),
            Limits::default()
        )
        .is_empty());
    }

    #[test]
    fn only_policy_kinds_and_real_operations_are_changes() {
        let o = object(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: shop}\nspec: {}\n",
        );
        let review = |kind, op: &'static Operation| crate::resource::Review {
            kind,
            version: "v1",
            operation: op,
            namespace: "shop",
            name: "x",
            object: Some(&o),
            old_object: Some(&o),
            dry_run: false,
            created_for: None,
        };
        static CREATE: Operation = Operation::Create;
        static DELETE: Operation = Operation::Delete;
        static CONNECT: Operation = Operation::Connect;
        assert!(
            change_of(&review(Kind::AuthorizationPolicy, &CREATE)).is_some_and(|c| c.old.is_none())
        );
        assert!(
            change_of(&review(Kind::PeerAuthentication, &DELETE)).is_some_and(|c| c.new.is_none())
        );
        assert!(change_of(&review(Kind::AuthorizationPolicy, &CONNECT)).is_none());
        assert!(change_of(&review(Kind::RequestAuthentication, &CREATE)).is_none());
        assert!(change_of(&review(Kind::Service, &CREATE)).is_none());
    }
}
