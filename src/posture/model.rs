//! What the posture page shows, computed once from one run: the namespace × workload grid
//! (data plane, effective mTLS per port with its deciding PeerAuthentication, default deny,
//! ServiceAccount, findings by action), the findings themselves, the policies the page links
//! to, and the reachability matrices ([`super::reach`]).
//!
//! Nothing is decided here that another module decides: the data plane is
//! [`crate::dataplane::workload_plane`], effective mTLS is [`crate::mtls::PolicyIndex`]'s
//! table, default deny is [`crate::cross::ap_no_default_deny`]'s allow-nothing policies plus
//! the simulator's ALLOW policies for the workload, and the findings are the run's
//! [`Report`], exactly what `check` or `audit` print. Pure: no I/O.
//!
//! [`Data`] is serialised as one JSON document that the page's script renders lazily; its
//! field names are short because a 10,000-workload mesh makes tens of thousands of them.

use super::reach::{self, Matrix};
pub use super::rows::{FindingRow, NamespaceRow, PolicyRef, SubjectRow, WorkloadRow};
use super::rows::{Policies, PortCell};
use crate::authz::Target;
use crate::context::{ClusterView, Lookup};
use crate::cross::{ap_no_default_deny, CrossContext};
use crate::dataplane::labels::{injection, is_ambient, Injection};
use crate::dataplane::Plane;
use crate::engine::Engine;
use crate::finding::{Action, ObjectFinding};
use crate::inventory::{Inventory, InventoryWorkload};
use crate::model::MtlsMode;
use crate::model::Service;
use crate::mtls::Decider;
use crate::report::Report;
use crate::resource::Kind;
use crate::rules::service::{targeted_protocol, PortProtocol};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Knobs of the page.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Rows (calling identities) per reachability matrix.
    pub max_identities: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_identities: 40 }
    }
}

/// Everything the page's script renders.
#[derive(Debug, Serialize)]
pub struct Data<'a> {
    /// Namespaces, sorted by name.
    pub ns: Vec<NamespaceRow<'a>>,
    /// Workloads, grouped by namespace (each namespace lists its own).
    pub wl: Vec<WorkloadRow<'a>>,
    /// The policies the page links to (deciding PeerAuthentications, AuthorizationPolicies).
    pub pol: Vec<PolicyRef>,
    /// Manifest files (workloads, policies and findings name them by index).
    pub files: Vec<&'a str>,
    /// `[id, summary]` of the rules that have findings.
    pub rules: Vec<(&'static str, &'static str)>,
    /// Objects that have findings: `[kind, namespace, name, file (index into files), line]`.
    pub subj: Vec<SubjectRow<'a>>,
    /// Findings, in the report's order: `[subject, rule, action, path, message, fix]`.
    pub fd: Vec<FindingRow<'a>>,
    /// Reachability per namespace (same order as `ns`; null without workloads).
    pub reach: Vec<Option<Matrix>>,
    /// Allow-nothing policy of the root namespace (mesh-wide default deny), index into `pol`.
    pub(crate) mdd: Option<usize>,
    /// The root namespace.
    pub root: &'a str,
    /// The mesh-wide mTLS mode and the policy that sets it, in words (for the header).
    #[serde(skip)]
    pub(crate) mesh_mtls: String,
    /// The Gateways (waypoints and ingress), in words: `(waypoint shop/waypoint, for service
    /// traffic, runs as …)` (for the header).
    #[serde(skip)]
    pub gateways: Vec<(String, String)>,
}

fn action_slot(a: Action) -> Option<usize> {
    match a {
        Action::Deny => Some(0),
        Action::Warn => Some(1),
        Action::Audit => Some(2),
        Action::Off => None,
    }
}

fn mode_slot(m: MtlsMode) -> Option<usize> {
    match m {
        MtlsMode::Strict => Some(0),
        MtlsMode::Permissive => Some(1),
        MtlsMode::Disable => Some(2),
        MtlsMode::Unset => None,
    }
}

/// A namespace's injection for a plain pod, as `(code, why)`: the mesh's injectors decide
/// ([`crate::mesh::MeshContext::namespace_injection`], as `ns-injection-missing` does), then
/// ambient capture, then an explicit opt-out label.
fn namespace_injection(engine: &Engine, inventory: &Inventory, ns: &str) -> (&'static str, String) {
    let Lookup::Found(labels) = inventory.namespace_labels(ns) else {
        return ("unknown", "no Namespace object in the input".to_owned());
    };
    let decision = engine.mesh().namespace_injection(ns, &labels);
    if decision.inject {
        return ("sidecar", decision.to_string());
    }
    if is_ambient(&labels) {
        return ("ambient", "istio.io/dataplane-mode=ambient".to_owned());
    }
    match injection(&labels) {
        Injection::Off(v) => ("off", format!("istio-injection={v}")),
        _ => ("none", decision.to_string()),
    }
}

/// The waypoints a workload's traffic goes through, in words: its Services' (for ambient
/// callers addressing them) and its own workload waypoint (for pod-IP calls).
fn waypoints_of(cx: &CrossContext<'_>, i: usize) -> Option<String> {
    let topology = cx.topology();
    let w = &cx.workload(i).workload;
    let mut out: Vec<String> = topology
        .services_selecting(&w.namespace, &w.labels)
        .filter_map(|s| {
            let svc = topology.service(s);
            svc.binding
                .gateway()
                .map(|g| format!("{} (Service {})", topology.gateway(g).id(), svc.name))
        })
        .collect();
    if let Some(g) = topology.workload_binding(&w.namespace, &w.labels).gateway() {
        out.push(format!("{} (pod-addressed)", topology.gateway(g).id()));
    }
    (!out.is_empty()).then(|| out.join(", "))
}

/// A Service's selector (read once) and its spec.
type SelectingService<'a> = (BTreeMap<String, String>, Service<'a>);

/// Services by namespace, with their selectors read once, for protocol selection.
pub(super) struct Services<'a> {
    by_namespace: HashMap<&'a str, Vec<SelectingService<'a>>>,
}

impl<'a> Services<'a> {
    pub fn new(inventory: &'a Inventory) -> Services<'a> {
        let mut by_namespace: HashMap<&str, Vec<_>> = HashMap::new();
        for o in inventory.of_kind(Kind::Service) {
            let Ok(spec) = o.decode_spec::<Service<'static>>() else {
                continue;
            };
            let selector = spec.selector();
            if !selector.is_empty() {
                by_namespace
                    .entry(o.namespace())
                    .or_default()
                    .push((selector, spec));
            }
        }
        Services { by_namespace }
    }

    /// The protocol Istio picks for a workload's container port: from the first Service in
    /// its namespace that selects the pods (selector ⊆ pod labels) and has a port whose
    /// `targetPort` is that container port (by number, or by the container port's name;
    /// absent, the Service port's own number). A port no Service exposes is sniffed, as the
    /// sidecar's inbound passthrough chain does.
    pub fn protocol(&self, w: &InventoryWorkload, port: Option<u32>) -> PortProtocol {
        let Some(port) = port else {
            return PortProtocol::Sniffed;
        };
        let wl = &w.workload;
        let services = self.by_namespace.get(wl.namespace.as_str());
        for (selector, spec) in services.into_iter().flatten() {
            if !crate::model::label_selector::all_pairs_match(
                &wl.labels,
                selector.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ) {
                continue;
            }
            for sp in spec.ports() {
                if let Some(proto) = targeted_protocol(sp, wl, port) {
                    return proto;
                }
            }
        }
        PortProtocol::Sniffed
    }
}

/// The subject key of a finding or an object.
type SubjectKey<'a> = (&'a str, &'a str, &'a str);

/// Build the page's data from a run: the engine and inventory it used, and its report.
pub fn build<'a>(
    engine: &'a Engine,
    inventory: &'a Inventory,
    report: &'a Report,
    options: Options,
) -> Data<'a> {
    let root = engine.mesh().root_namespace().value.as_str();
    let cx = CrossContext::new(engine, inventory);
    let set = cx.policy_set();
    let services = Services::new(inventory);
    let mut pol = Policies::default();

    // Findings first: the grid counts them per workload and namespace.
    let mut subj: Vec<SubjectRow<'a>> = Vec::new();
    let mut subj_index: HashMap<SubjectKey<'a>, usize> = HashMap::new();
    let mut rules: Vec<(&'static str, &'static str)> = Vec::new();
    let mut rule_index: HashMap<&'static str, usize> = HashMap::new();
    let mut fd = Vec::with_capacity(report.findings.len());
    let mut per_subject: HashMap<usize, [usize; 3]> = HashMap::new();
    let mut per_namespace: HashMap<&'a str, [usize; 3]> = HashMap::new();
    let summaries: HashMap<&'static str, &'static str> = crate::catalogue::checks()
        .into_iter()
        .map(|c| (c.id, c.summary))
        .collect();
    for ObjectFinding {
        subject: s,
        finding,
    } in &report.findings
    {
        let key = (s.kind.as_str(), s.namespace.as_str(), s.name.as_str());
        let si = *subj_index.entry(key).or_insert_with(|| {
            subj.push((key.0, key.1, key.2, pol.file(s.file.as_deref()), s.line));
            subj.len() - 1
        });
        let ri = *rule_index.entry(finding.rule).or_insert_with(|| {
            rules.push((
                finding.rule,
                summaries.get(finding.rule).copied().unwrap_or(""),
            ));
            rules.len() - 1
        });
        if let Some(slot) = action_slot(finding.action) {
            per_subject.entry(si).or_default()[slot] += 1;
            per_namespace.entry(s.namespace.as_str()).or_default()[slot] += 1;
        }
        let v = &finding.violation;
        fd.push((
            si,
            ri,
            finding.action.as_str(),
            v.path.as_str(),
            v.message.as_str(),
            v.fix.as_str(),
        ));
    }

    // Allow-nothing policies by namespace (the first one in input order).
    let mut allow_nothing: HashMap<&'a str, usize> = HashMap::new();
    for o in ap_no_default_deny::allow_nothing_policies(inventory) {
        if !allow_nothing.contains_key(o.namespace()) {
            let i = pol.object(inventory, o);
            allow_nothing.insert(o.namespace(), i);
        }
    }
    let mdd = allow_nothing.get(root).copied();

    // Namespaces: every namespace some object lives in, sorted.
    let names: Vec<&'a str> = inventory.namespace_names().collect();
    let ns_index: HashMap<&'a str, usize> =
        names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut ns: Vec<NamespaceRow<'a>> = names
        .iter()
        .map(|&n| {
            let (inj, injl) = namespace_injection(engine, inventory, n);
            NamespaceRow {
                n,
                ex: cx.is_exempt_namespace(n),
                inj,
                injl,
                dd: allow_nothing.get(n).copied(),
                w: Vec::new(),
                f: per_namespace.get(n).copied().unwrap_or_default(),
                m: [0; 3],
            }
        })
        .collect();

    // Workloads, namespace by namespace, in input order within one.
    let mut wl: Vec<WorkloadRow<'a>> = Vec::with_capacity(inventory.workloads().len());
    let mut targets: Vec<Target<'_>> = Vec::with_capacity(inventory.workloads().len());
    let mut sources: Vec<&'a InventoryWorkload> = Vec::with_capacity(inventory.workloads().len());
    // The inventory index of each grid row.
    let mut wl_index: Vec<usize> = Vec::with_capacity(inventory.workloads().len());
    for (nsi, &name) in names.iter().enumerate() {
        for &i in inventory.workloads_in(name) {
            let w = &inventory.workloads()[i];
            let o = inventory.workload_object(w);
            let t = o.template();
            let named = t
                .as_ref()
                .and_then(|t| t.service_account_str())
                .map(|(_, sa)| sa.0.clone());
            let sax = match inventory.service_account(name, named.as_deref().unwrap_or("default")) {
                Lookup::Found(()) => "found",
                Lookup::Missing => "missing",
                Lookup::Unknown => "unknown",
            };
            let target = set.target(name, &w.workload.labels);
            let mut p: Vec<PortCell> = Vec::new();
            for row in cx.workload_mtls(i) {
                let eff = &row.effective;
                if let Some(slot) = mode_slot(eff.mode) {
                    ns[nsi].m[slot] += 1;
                }
                let decider = eff.decided_by.as_ref().map(|d: &Decider| {
                    (
                        pol.intern(inventory, Kind::PeerAuthentication, &d.namespace, &d.name),
                        d.level.as_str(),
                    )
                });
                p.push((
                    row.port,
                    eff.mode.as_str(),
                    decider.map(|d| d.0),
                    decider.map(|d| d.1),
                    services.protocol(w, row.port).as_str(),
                ));
            }
            let ddp = allow_nothing
                .get(name)
                .or_else(|| allow_nothing.get(root))
                .copied();
            let ap = target.allow_policies().len();
            let dd = if ddp.is_some() {
                "deny-all"
            } else if ap > 0 {
                "allow-list"
            } else {
                "open"
            };
            let s = subj_index
                .get(&(o.kind.as_str(), o.namespace(), o.name()))
                .copied();
            ns[nsi].w.push(wl.len());
            let plane = cx.plane(i).plane;
            wl.push(WorkloadRow {
                k: o.kind.as_str(),
                n: o.name(),
                ns: nsi,
                dp: match plane {
                    Plane::Ambient => "ztunnel",
                    other => other.as_str(),
                },
                wp: waypoints_of(&cx, i),
                sai: named.is_none(),
                sa: named.unwrap_or(std::borrow::Cow::Borrowed("default")),
                sax,
                p,
                dd,
                ddp,
                ap,
                f: s.and_then(|s| per_subject.get(&s))
                    .copied()
                    .unwrap_or_default(),
                s,
                file: pol.file(o.file.as_deref()),
                line: o.line,
            });
            targets.push(target);
            sources.push(w);
            wl_index.push(i);
        }
    }

    let wl_planes: Vec<crate::dataplane::PodPlane> =
        wl_index.iter().map(|&i| cx.plane(i)).collect();
    let callers = reach::caller_planes(
        inventory,
        cx.topology(),
        &(0..inventory.workloads().len())
            .map(|i| (i, cx.plane(i)))
            .collect::<Vec<_>>(),
    );
    let reach = reach::matrices(
        &reach::Input {
            inventory,
            set,
            names: &names,
            ns_index: &ns_index,
            namespaces: &ns,
            workloads: &wl,
            targets: &targets,
            sources: &sources,
            trust_domains: engine.mesh().trust_domains().collect(),
            topology: cx.topology(),
            planes: &wl_planes,
            callers: &callers,
        },
        &mut pol,
        options.max_identities,
    );

    let mesh_mtls = match cx.peer_index().mesh_policy() {
        Some(p) if p.mode != MtlsMode::Unset => {
            format!("{} ({}/{})", p.mode, p.namespace, p.name)
        }
        Some(p) => format!(
            "PERMISSIVE: {}/{} leaves the mode UNSET, so Istio's default applies",
            p.namespace, p.name
        ),
        None => {
            "PERMISSIVE: no mesh-wide PeerAuthentication, so Istio's default applies".to_owned()
        }
    };
    let gateways = cx
        .topology()
        .gateways()
        .iter()
        .map(|g| {
            let what = if g.is_waypoint() {
                format!("waypoint {}", g.id())
            } else {
                format!("gateway {}", g.id())
            };
            let mut value = format!(
                "class {}, runs as {}",
                g.class,
                set.mesh()
                    .identity(&g.namespace, &g.service_account)
                    .principal()
            );
            if g.is_waypoint() {
                value.push_str(&format!(", for {} traffic", g.traffic.as_str()));
                let bound: Vec<&str> = cx
                    .topology()
                    .services()
                    .iter()
                    .filter(|s| {
                        s.binding
                            .gateway()
                            .is_some_and(|b| cx.topology().gateway(b).id() == g.id())
                    })
                    .map(|s| s.name.as_str())
                    .collect();
                if !bound.is_empty() {
                    value.push_str(&format!(", Services {}", bound.join(", ")));
                }
            }
            match g.ready {
                crate::dataplane::Readiness::NotReady => value.push_str(", not ready"),
                crate::dataplane::Readiness::Assumed => {
                    value.push_str(", ready assumed (no status in the input)")
                }
                crate::dataplane::Readiness::Ready => {}
            }
            (what, value)
        })
        .collect();
    Data {
        gateways,
        mesh_mtls,
        ns,
        wl,
        pol: pol.list,
        files: pol.files,
        rules,
        subj,
        fd,
        reach,
        mdd,
        root,
    }
}

/// Counts for the header: findings by action.
pub fn action_counts(report: &Report) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for a in [Action::Deny, Action::Warn, Action::Audit] {
        m.insert(a.as_str(), report.count(a));
    }
    m
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::cross::testing::{deployment, istio, namespace, object};
    use serde_json::{json, Value};

    /// A run over objects, as `check` makes it: the engine, the inventory and the report.
    pub(crate) fn run(objects: Vec<Value>) -> (Engine, Inventory, Report) {
        let inventory = Inventory::partial(objects.into_iter().map(object).collect());
        let engine = Engine::new(Policy::default(), Default::default(), None);
        let analysis = crate::analysis::analyze(&engine, &inventory);
        let report = Report {
            command: "check",
            findings: analysis.findings,
            objects: analysis.evaluated,
            ..Report::default()
        };
        (engine, inventory, report)
    }

    fn with_sa(mut d: Value, sa: &str) -> Value {
        d["spec"]["template"]["spec"]["serviceAccountName"] = json!(sa);
        d
    }

    fn service(ns: &str, name: &str, selector: Value, ports: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": selector, "ports": ports}})
    }

    fn workload<'d>(data: &'d Data<'_>, name: &str) -> &'d WorkloadRow<'d> {
        data.wl
            .iter()
            .find(|w| w.n == name)
            .unwrap_or_else(|| panic!("no workload {name}"))
    }

    #[test]
    fn data_plane_follows_the_namespace_and_pod_labels() {
        let (engine, inventory, report) = run(vec![
            namespace("side", json!({"istio-injection": "enabled"})),
            namespace("amb", json!({"istio.io/dataplane-mode": "ambient"})),
            namespace("out", json!({})),
            deployment("side", "a", json!({"app": "a"}), &[80]),
            deployment(
                "side",
                "b",
                json!({"app": "b", "sidecar.istio.io/inject": "false"}),
                &[80],
            ),
            deployment("amb", "c", json!({"app": "c"}), &[80]),
            deployment("out", "d", json!({"app": "d"}), &[80]),
            deployment("nowhere", "e", json!({"app": "e"}), &[80]),
        ]);
        let data = build(&engine, &inventory, &report, Options::default());
        let dp: Vec<(&str, &str)> = data.wl.iter().map(|w| (w.n, w.dp)).collect();
        assert_eq!(
            dp,
            [
                ("c", "ztunnel"),
                ("e", "unknown"),
                ("d", "none"),
                ("a", "sidecar"),
                ("b", "none")
            ]
        );
        let inj: Vec<(&str, &str)> = data.ns.iter().map(|n| (n.n, n.inj)).collect();
        assert_eq!(
            inj,
            [
                ("amb", "ambient"),
                ("nowhere", "unknown"),
                ("out", "none"),
                ("side", "sidecar")
            ]
        );
        assert!(
            data.ns[3].injl.contains("istio-injection=enabled"),
            "{}",
            data.ns[3].injl
        );
    }

    #[test]
    fn ports_name_their_deciding_peer_authentication() {
        let (engine, inventory, report) = run(vec![
            namespace("prod", json!({"istio-injection": "enabled"})),
            istio(
                "PeerAuthentication",
                "istio-system",
                "mesh",
                json!({"mtls": {"mode": "STRICT"}}),
            ),
            istio(
                "PeerAuthentication",
                "prod",
                "web",
                json!({
                "selector": {"matchLabels": {"app": "web"}},
                "portLevelMtls": {"9090": {"mode": "PERMISSIVE"}}}),
            ),
            deployment("prod", "web", json!({"app": "web"}), &[8080, 9090]),
            deployment("prod", "db", json!({"app": "db"}), &[]),
        ]);
        let data = build(&engine, &inventory, &report, Options::default());
        let web = workload(&data, "web");
        let mesh = web.p[0].2.expect("decided by the mesh policy");
        assert_eq!(
            (web.p[0].0, web.p[0].1, web.p[0].3),
            (Some(8080), "STRICT", Some("mesh"))
        );
        assert_eq!(
            (data.pol[mesh].ns.as_str(), data.pol[mesh].n.as_str()),
            ("istio-system", "mesh")
        );
        let port = web.p[1].2.expect("decided at the port");
        assert_eq!((web.p[1].1, web.p[1].3), ("PERMISSIVE", Some("port")));
        assert_eq!(data.pol[port].n, "web");
        assert_eq!(
            data.pol[port].spec["portLevelMtls"]["9090"]["mode"],
            "PERMISSIVE"
        );
        // A workload without ports: one row for every port.
        let db = workload(&data, "db");
        assert_eq!(db.p.len(), 1);
        assert_eq!((db.p[0].0, db.p[0].1), (None, "STRICT"));
        assert_eq!(
            data.ns.iter().find(|n| n.n == "prod").map(|n| n.m),
            Some([2, 1, 0])
        );
        assert!(
            data.mesh_mtls.starts_with("STRICT (istio-system/mesh)"),
            "{}",
            data.mesh_mtls
        );
        // No mesh policy: Istio's PERMISSIVE default, decided by nobody.
        let (engine, inventory, report) = run(vec![deployment(
            "prod",
            "web",
            json!({"app": "web"}),
            &[80],
        )]);
        let data = build(&engine, &inventory, &report, Options::default());
        assert_eq!((data.wl[0].p[0].1, data.wl[0].p[0].2), ("PERMISSIVE", None));
        assert!(
            data.mesh_mtls.starts_with("PERMISSIVE: no mesh-wide"),
            "{}",
            data.mesh_mtls
        );
    }

    #[test]
    fn default_deny_service_account_and_findings_per_workload() {
        let objects = vec![
            namespace("a", json!({"istio-injection": "enabled"})),
            namespace("b", json!({"istio-injection": "enabled"})),
            istio("AuthorizationPolicy", "a", "deny-all", json!({})),
            istio(
                "AuthorizationPolicy",
                "b",
                "web",
                json!({
                "selector": {"matchLabels": {"app": "web"}},
                "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/b/sa/api"]}}]}]}),
            ),
            with_sa(deployment("a", "web", json!({"app": "web"}), &[80]), "web"),
            with_sa(deployment("b", "web", json!({"app": "web"}), &[80]), "web"),
            deployment("b", "api", json!({"app": "api"}), &[80]),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": "a"}}),
        ];
        let (engine, inventory, report) = run(objects.clone());
        let data = build(&engine, &inventory, &report, Options::default());
        let a_web = &data.wl[data.ns[0].w[0]];
        assert_eq!((a_web.dd, a_web.ap), ("deny-all", 1));
        assert_eq!(data.pol[a_web.ddp.expect("deny-all")].n, "deny-all");
        assert_eq!((&*a_web.sa, a_web.sai, a_web.sax), ("web", false, "found"));
        let b = &data.ns[1];
        let (b_web, b_api) = (&data.wl[b.w[0]], &data.wl[b.w[1]]);
        assert_eq!((b_web.dd, b_web.ap, b_web.ddp), ("allow-list", 1, None));
        assert_eq!((b_api.dd, b_api.ap), ("open", 0));
        assert_eq!((&*b_api.sa, b_api.sai), ("default", true));
        assert_eq!(b_web.sax, "unknown", "b's accounts are not listed");
        assert_eq!(
            data.ns[0].dd.map(|p| data.pol[p].n.as_str()),
            Some("deny-all")
        );
        assert_eq!(b.dd, None);
        // Findings: every one of the report's, counted per workload and namespace.
        assert_eq!(data.fd.len(), report.findings.len());
        let api_findings = report
            .findings
            .iter()
            .filter(|f| f.subject.name == "api" && f.subject.namespace == "b")
            .count();
        assert!(api_findings > 0);
        assert_eq!(b_api.f.iter().sum::<usize>(), api_findings);
        let in_b = report
            .findings
            .iter()
            .filter(|f| f.subject.namespace == "b")
            .count();
        assert_eq!(b.f.iter().sum::<usize>(), in_b);
        let s = b_api.s.expect("api has findings");
        assert_eq!(
            (data.subj[s].0, data.subj[s].1, data.subj[s].2),
            ("Deployment", "b", "api")
        );
        // A mesh-wide allow-nothing policy covers every namespace.
        let mut mesh = objects;
        mesh.push(istio(
            "AuthorizationPolicy",
            "istio-system",
            "deny-all",
            json!({}),
        ));
        let (engine, inventory, report) = run(mesh);
        let data = build(&engine, &inventory, &report, Options::default());
        let api = workload_in(&data, "b", "api");
        assert_eq!(api.dd, "deny-all");
        assert_eq!(data.pol[api.ddp.expect("mesh-wide")].ns, "istio-system");
        assert!(data.mdd.is_some());
    }

    fn workload_in<'d>(data: &'d Data<'_>, ns: &str, name: &str) -> &'d WorkloadRow<'d> {
        data.wl
            .iter()
            .find(|w| w.n == name && data.ns[w.ns].n == ns)
            .unwrap_or_else(|| panic!("no workload {ns}/{name}"))
    }

    #[test]
    fn port_protocol_comes_from_the_service_that_exposes_it() {
        let mut web = deployment("prod", "web", json!({"app": "web"}), &[8080, 9090, 5000]);
        web["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] = json!("web");
        let (engine, inventory, report) = run(vec![
            web,
            deployment("prod", "db", json!({"app": "db"}), &[5432]),
            // By container port name, by number, by the service port's own number.
            service(
                "prod",
                "web",
                json!({"app": "web"}),
                json!([
                    {"name": "http-web", "port": 80, "targetPort": "web"},
                    {"name": "tcp-metrics", "port": 9090},
                ]),
            ),
            service(
                "prod",
                "other",
                json!({"app": "other"}),
                json!([{"name": "http", "port": 5432}]),
            ),
            service(
                "prod",
                "db",
                json!({"app": "db"}),
                json!([{"port": 5432, "targetPort": 5432}]),
            ),
        ]);
        let data = build(&engine, &inventory, &report, Options::default());
        let protos: Vec<(Option<u32>, &str)> = workload(&data, "web")
            .p
            .iter()
            .map(|p| (p.0, p.4))
            .collect();
        assert_eq!(
            protos,
            [
                (Some(5000), "sniffed"),
                (Some(8080), "http"),
                (Some(9090), "tcp")
            ]
        );
        assert_eq!(workload(&data, "db").p[0].4, "sniffed", "unnamed: sniffed");
    }

    #[test]
    fn serialised_data_is_compact_arrays() {
        let (engine, inventory, report) = run(vec![
            namespace("prod", json!({"istio-injection": "enabled"})),
            deployment("prod", "web", json!({"app": "web"}), &[80]),
        ]);
        let data = build(&engine, &inventory, &report, Options::default());
        let v = serde_json::to_value(&data).expect("json");
        assert_eq!(
            v["wl"][0][7][0],
            json!([80, "PERMISSIVE", null, null, "sniffed"])
        );
        assert_eq!(v["wl"][0][1], "web");
        assert!(v["fd"][0].is_array() && v["subj"][0].is_array());
        assert!(v.get("mesh_mtls").is_none(), "header-only fields stay out");
    }
}
