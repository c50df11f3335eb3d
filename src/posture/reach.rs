//! The reachability matrices of the posture page: per namespace, calling identities (rows) ×
//! the namespace's workloads (columns). Each cell is the *set* of requests the caller may send
//! to the workload's first container port ([`crate::reach`]): `all`, `some` or `none`, with the
//! set in words (`GET /api/data; GET,POST /api/* when x-api-version ∈ {v1,v2}`) and the
//! policies that allow and refuse. The set is computed exactly from the values the policies
//! write, each class of requests decided by the authorization simulator, so a cell says `none`
//! only when no request of any kind gets through.
//!
//! In an ambient mesh a cell follows the request's path ([`crate::authz::hops`]): a column
//! whose workload is behind a Service bound to a waypoint is addressed through that Service, so
//! an ambient caller's request passes the waypoint (its `targetRefs` policies, the caller's
//! identity) and then the pods' ztunnel (seeing the waypoint's identity); sidecar callers, ingress
//! gateways without `istio.io/ingress-use-waypoint` and the plaintext client go straight to the
//! pods. A row's data plane is that of the workloads running as its identity. The cell's
//! explanation names the path and the hop that decided.
//!
//! Rows are bounded: the plaintext client, then the identities most likely to matter to the
//! namespace, in this order, until `max_identities`: those its workloads run as, those the
//! AuthorizationPolicies that apply there (its own and the root namespace's) name as
//! principals, its ServiceAccounts, and the identities of workloads in the namespaces those
//! policies name. The page says when the list was cut, and how many were left out.

use super::rows::{NamespaceRow, Policies, WorkloadRow};
use crate::authz::hops::{Addressed, CallerPlane, DestTarget, Route};
use crate::authz::{PolicySet, Target};
use crate::dataplane::{PodPlane, Topology};
use crate::inventory::{Inventory, InventoryWorkload};
use crate::model::authorization_policy::principal;
use crate::model::AuthorizationPolicy;
use crate::reach::eval::{Decider, Enforcement};
use crate::reach::model;
use crate::reach::space::{Protocols, Summary};
use crate::reach::Reach;
use crate::resource::Kind;
use crate::rules::service::PortProtocol;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// What the matrices are computed from (the grid's rows and the simulator's targets, once).
pub(super) struct Input<'i, 'a> {
    pub inventory: &'a Inventory,
    pub set: &'i PolicySet,
    pub names: &'i [&'a str],
    pub(crate) ns_index: &'i HashMap<&'a str, usize>,
    pub namespaces: &'i [NamespaceRow<'a>],
    pub workloads: &'i [WorkloadRow<'a>],
    /// The simulator's target of each workload (same order as `workloads`).
    pub targets: &'i [Target<'i>],
    pub(crate) sources: &'i [&'a InventoryWorkload],
    pub(crate) trust_domains: Vec<&'a str>,
    /// The data-plane topology (Services and their waypoints).
    pub topology: &'i Topology,
    /// The data plane of each workload (same order as `workloads`).
    pub(crate) planes: &'i [PodPlane],
    /// The data plane of each identity that runs workloads (or a gateway).
    pub callers: &'i HashMap<(String, String), CallerPlane>,
}

/// One namespace's matrix.
#[derive(Debug, Serialize)]
pub struct Matrix {
    /// Rows: `[identity, why it is listed]`; the identity is `namespace/serviceAccount`, or
    /// empty for the plaintext client; why: `plaintext`, `workload` (a workload here runs as
    /// it), `named` (a policy that applies here names it), `account` (a ServiceAccount of the
    /// namespace), `caller` (runs a workload in a namespace such a policy names).
    pub ids: Vec<(String, &'static str)>,
    /// Identities that were candidates (more than the rows shown when the list was cut).
    pub total: usize,
    /// Columns: `[workload (index into wl), port (null: none declared), protocol]`.
    pub cols: Vec<(usize, Option<u32>, &'static str)>,
    /// The distinct sets: `[summary A|S|N (all, some, none), the set in words, allowed by,
    /// refused by, path (index into hops, null: straight to the workload's sidecar)]`, each
    /// decider `[policy (index into pol, null for a step), rule, how, hop (null: the
    /// workload's sidecar)]`.
    pub o: Vec<Cell>,
    /// The paths cells take, in words (which hops, and what each sees).
    pub hops: Vec<String>,
    /// Characters per set code in `c`: 1, or 2 when there are more than 90 sets.
    pub w: usize,
    /// Per row, one code per column: the set (index into `o`), `w` characters of
    /// [`ALPHABET`] (base 90, most significant first), or `w` dashes where the workload
    /// declares no port.
    pub c: Vec<String>,
}

/// The digits of the cell codes: printable ASCII from `#` to `~` without `-` and the
/// backslash (nothing JSON escapes).
pub(crate) const ALPHABET: &[u8; 90] =
    b"#$%&'()*+,./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~";

impl Matrix {
    /// The set index of row `r`, column `c`.
    pub fn outcome(&self, r: usize, c: usize) -> Option<usize> {
        let at = c * self.w;
        let code = self.c.get(r)?.as_bytes().get(at..at + self.w)?;
        code.iter().try_fold(0usize, |n, b| {
            ALPHABET.iter().position(|x| x == b).map(|d| n * 90 + d)
        })
    }
}

/// Encode a row of outcome indexes (-1: none).
fn encode(row: &[i32], w: usize) -> String {
    let mut s = String::with_capacity(row.len() * w);
    for &i in row {
        match usize::try_from(i) {
            Ok(i) if w == 1 => s.push(char::from(ALPHABET[i % 90])),
            Ok(i) => {
                s.push(char::from(ALPHABET[(i / 90) % 90]));
                s.push(char::from(ALPHABET[i % 90]));
            }
            Err(_) => s.extend(std::iter::repeat_n('-', w)),
        }
    }
    s
}

/// `[policy (index into pol), rule, how, hop]`.
pub(crate) type DeciderRow = (Option<usize>, Option<usize>, &'static str, Option<String>);

/// `[summary, set in words, allowed by, refused by, path]`.
pub(crate) type Cell = (
    &'static str,
    String,
    Vec<DeciderRow>,
    Vec<DeciderRow>,
    Option<usize>,
);

/// Why a candidate identity is listed, strongest first.
const WORKLOAD: &str = "workload";
const NAMED: &str = "named";
const ACCOUNT: &str = "account";
const CALLER: &str = "caller";

/// The identities (namespace, ServiceAccount) a namespace's matrix considers, in order.
fn candidates<'a>(
    input: &Input<'_, 'a>,
    ns: &'a str,
    root_names: &(Vec<(String, String)>, Vec<String>),
    policies_by_ns: &HashMap<&'a str, Vec<&'a crate::inventory::Object>>,
    accounts: &HashMap<&'a str, Vec<&'a str>>,
) -> Vec<(String, String, &'static str)> {
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut out = Vec::new();
    let mut push = |n: &str, sa: &str, why: &'static str, out: &mut Vec<_>| {
        if seen.insert((n.to_owned(), sa.to_owned())) {
            out.push((n.to_owned(), sa.to_owned(), why));
        }
    };
    let workloads_of = |n: &str| {
        input
            .ns_index
            .get(n)
            .map(|&i| input.namespaces[i].w.as_slice())
            .unwrap_or(&[])
    };
    for &w in workloads_of(ns) {
        push(ns, &input.workloads[w].sa, WORKLOAD, &mut out);
    }
    let (mut principals, mut namespaces) = names_in(
        policies_by_ns.get(ns).map(Vec::as_slice).unwrap_or(&[]),
        &input.trust_domains,
    );
    principals.extend(root_names.0.iter().cloned());
    namespaces.extend(root_names.1.iter().cloned());
    for (n, sa) in &principals {
        push(n, sa, NAMED, &mut out);
    }
    for sa in accounts.get(ns).into_iter().flatten() {
        push(ns, sa, ACCOUNT, &mut out);
    }
    for n in &namespaces {
        for &w in workloads_of(n) {
            push(n, &input.workloads[w].sa, CALLER, &mut out);
        }
    }
    out
}

/// The identities (`<trust domain>/ns/<ns>/sa/<sa>` in the mesh's trust domains) and the
/// namespaces that AuthorizationPolicies name exactly in `principals` and `namespaces`.
fn names_in(
    policies: &[&crate::inventory::Object],
    trust_domains: &[&str],
) -> (Vec<(String, String)>, Vec<String>) {
    let mut principals = Vec::new();
    let mut namespaces = Vec::new();
    for o in policies {
        let spec = o.spec();
        let ap = AuthorizationPolicy::of(&spec);
        for src in ap.sources() {
            for (_, p) in src.field("principals").strings() {
                if let Some((td, n, sa)) = principal::identity(p) {
                    if trust_domains.contains(&td) {
                        principals.push((n.to_owned(), sa.to_owned()));
                    }
                }
            }
            for (_, n) in src.field("namespaces").strings() {
                if !n.contains('*') {
                    namespaces.push(n.to_owned());
                }
            }
        }
    }
    (principals, namespaces)
}

/// Sets interned per matrix.
struct Outcomes<'p, 'a> {
    list: Vec<Cell>,
    index: HashMap<Cell, i32>,
    policies: &'p mut Policies<'a>,
}

impl Outcomes<'_, '_> {
    fn intern(&mut self, cell: Cell) -> i32 {
        if let Some(&i) = self.index.get(&cell) {
            return i;
        }
        let i = i32::try_from(self.list.len()).unwrap_or(i32::MAX);
        self.list.push(cell.clone());
        self.index.insert(cell, i);
        i
    }
}

/// A decider as the page links it.
fn decider_row<'a>(
    inventory: &'a Inventory,
    d: &Decider,
    policies: &mut Policies<'a>,
) -> DeciderRow {
    let policy = d.policy.split_once('/').map(|(ns, name)| {
        let kind = if d.kind == "PeerAuthentication" {
            Kind::PeerAuthentication
        } else {
            Kind::AuthorizationPolicy
        };
        policies.intern(inventory, kind, ns, name)
    });
    (policy, d.rule, d.how, d.hop.clone())
}

fn summary_code(s: Summary) -> &'static str {
    match s {
        Summary::All => "A",
        Summary::Some => "S",
        Summary::None => "N",
    }
}

/// A column that takes a path of its own: per caller data plane, the set computation over
/// the path (built when a row of that plane first asks) and the path in words.
struct RouteColumn<'s> {
    /// Service-addressed (its port) or pod-addressed.
    via: Addressed,
    /// The pod's port.
    port: u16,
    routes: [Option<(Reach<'s>, usize)>; 4],
}

fn plane_slot(p: CallerPlane) -> usize {
    match p {
        CallerPlane::Sidecar => 0,
        CallerPlane::Ambient => 1,
        CallerPlane::Gateway => 2,
        CallerPlane::Outside => 3,
    }
}

/// The path of a route in words, for the cell's explanation.
fn route_words(route: &Route<'_>, caller: CallerPlane) -> String {
    let dest = match &route.dest {
        DestTarget::Sidecar(_) => format!("the sidecar of {}", route.dest_label),
        DestTarget::Ztunnel { .. } => format!("the ztunnel of {}", route.dest_label),
        DestTarget::Unenforced(_) => route.dest_label.clone(),
    };
    let notes = if route.notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", route.notes.join("; "))
    };
    match &route.waypoint {
        Some(w) => format!(
            "{} caller → waypoint {} (decides with the caller's own identity) → {dest}, which sees the waypoint's identity {} and decides{notes}",
            caller.as_str(),
            w.id,
            w.identity.principal()
        ),
        None => format!(
            "{} caller → {dest}, which sees the caller's own identity and decides{notes}",
            caller.as_str()
        ),
    }
}

/// How a column is addressed, when its requests take a path of their own
/// ([`crate::reach::model::addressed`]: a Service bound to a waypoint that sends to the column's
/// port, else the pods directly when they are ambient). `None`: a sidecar workload reached
/// directly (the sidecar target decides alone).
fn route_column<'s>(input: &Input<'s, '_>, w: usize, port: Option<u32>) -> Option<RouteColumn<'s>> {
    let port = u16::try_from(port?).ok()?;
    let d = &input.sources[w].workload;
    let via = model::addressed(
        input.topology,
        &d.namespace,
        &d.labels,
        &d.ports,
        input.planes[w].plane,
        port,
    )?;
    Some(RouteColumn {
        via,
        port,
        routes: [None, None, None, None],
    })
}

/// The data plane of every identity that runs workloads (the reachability sets' own).
pub(super) use crate::reach::model::caller_planes;

/// Every namespace's matrix (null for a namespace without workloads).
pub(super) fn matrices<'a>(
    input: &Input<'_, 'a>,
    policies: &mut Policies<'a>,
    max_identities: usize,
) -> Vec<Option<Matrix>> {
    let mesh = input.set.mesh();
    let mut policies_by_ns: HashMap<&'a str, Vec<&'a crate::inventory::Object>> = HashMap::new();
    for o in input.inventory.of_kind(Kind::AuthorizationPolicy) {
        policies_by_ns.entry(o.namespace()).or_default().push(o);
    }
    let mut accounts: HashMap<&'a str, Vec<&'a str>> = HashMap::new();
    for o in input.inventory.of_kind(Kind::ServiceAccount) {
        accounts.entry(o.namespace()).or_default().push(o.name());
    }
    let root = mesh.root_namespace.as_str();
    let root_names = names_in(
        policies_by_ns.get(root).map(Vec::as_slice).unwrap_or(&[]),
        &input.trust_domains,
    );
    let mut out = Vec::with_capacity(input.names.len());
    for (nsi, &ns) in input.names.iter().enumerate() {
        let row = &input.namespaces[nsi];
        if row.w.is_empty() {
            out.push(None);
            continue;
        }
        let all = candidates(input, ns, &root_names, &policies_by_ns, &accounts);
        let total = all.len();
        let mut ids: Vec<(String, &'static str)> = vec![(String::new(), "plaintext")];
        let mut peers = vec![None];
        for (n, sa, why) in all.into_iter().take(max_identities) {
            peers.push(Some(mesh.identity(&n, &sa)));
            ids.push((format!("{n}/{sa}"), why));
        }
        let cols: Vec<(usize, Option<u32>, &'static str)> = row
            .w
            .iter()
            .map(|&w| {
                let port = input.sources[w].workload.ports.first().map(|p| p.port);
                let proto = input.workloads[w]
                    .p
                    .iter()
                    .find(|c| c.0 == port)
                    .map_or("sniffed", |c| c.4);
                (w, port, proto)
            })
            .collect();
        let mut outcomes = Outcomes {
            list: Vec::new(),
            index: HashMap::new(),
            policies,
        };
        // One set computation per column, shared by its rows (callers the policies cannot
        // tell apart share one evaluation); a column that takes a path of its own (ambient,
        // or behind a waypoint) has one per caller data plane.
        let protocol_of = |proto: &str| {
            Protocols::of(match proto {
                "http" => PortProtocol::Http,
                "tcp" => PortProtocol::Tcp,
                "udp" => PortProtocol::Udp,
                _ => PortProtocol::Sniffed,
            })
        };
        let mut route_cols: Vec<Option<RouteColumn<'_>>> = cols
            .iter()
            .map(|&(w, port, _)| {
                if input.workloads[w].dp == "none" {
                    return None;
                }
                route_column(input, w, port)
            })
            .collect();
        let mut columns: Vec<Option<Reach<'_>>> = cols
            .iter()
            .enumerate()
            .map(|(ci, &(w, port, proto))| {
                let port = port.and_then(|p| u16::try_from(p).ok())?;
                if route_cols[ci].is_some() {
                    return None;
                }
                let enforcement = if input.workloads[w].dp == "none" {
                    Enforcement::Unenforced("the workload runs without a proxy: nothing enforces mTLS or AuthorizationPolicy")
                } else {
                    Enforcement::Sidecar(input.targets[w].clone())
                };
                let host = format!("{}.{}.svc", input.workloads[w].n, ns);
                Some(Reach::new(enforcement, port, protocol_of(proto), &host))
            })
            .collect();
        let mut hops: Vec<String> = Vec::new();
        let mut c = Vec::with_capacity(peers.len());
        for (ri, peer) in peers.iter().enumerate() {
            let caller = if ri == 0 {
                CallerPlane::Outside
            } else {
                ids[ri]
                    .0
                    .split_once('/')
                    .and_then(|(n, sa)| input.callers.get(&(n.to_owned(), sa.to_owned())))
                    .copied()
                    .unwrap_or(CallerPlane::Sidecar)
            };
            let mut line = Vec::with_capacity(cols.len());
            for (ci, &(w, _, proto)) in cols.iter().enumerate() {
                let (reach, path) = match (&mut route_cols[ci], &mut columns[ci]) {
                    (Some(rc), _) => {
                        let (via, port) = (rc.via, rc.port);
                        let (reach, words) =
                            rc.routes[plane_slot(caller)].get_or_insert_with(|| {
                                let d = &input.sources[w].workload;
                                let dest = model::destination(
                                    input.topology,
                                    d.kind,
                                    &d.namespace,
                                    &d.name,
                                    &d.labels,
                                    input.planes[w],
                                );
                                let path = model::path_enforcement(
                                    input.set,
                                    input.topology,
                                    caller,
                                    via,
                                    port,
                                    &dest,
                                );
                                let words = route_words(&path.route, caller);
                                let idx = match hops.iter().position(|h| *h == words) {
                                    Some(i) => i,
                                    None => {
                                        hops.push(words);
                                        hops.len() - 1
                                    }
                                };
                                let at = path.port();
                                let host = format!("{}.{}.svc", input.workloads[w].n, ns);
                                let reach = Reach::new(
                                    Enforcement::Path(Box::new(path)),
                                    at,
                                    protocol_of(proto),
                                    &host,
                                );
                                (reach, idx)
                            });
                        (reach, Some(*words))
                    }
                    (None, Some(reach)) => (reach, None),
                    (None, None) => {
                        line.push(-1);
                        continue;
                    }
                };
                let computed = reach.of(peer.as_ref());
                let set = &computed.1;
                let mut row = |ds: &[Decider]| -> Vec<DeciderRow> {
                    ds.iter()
                        .map(|d| decider_row(input.inventory, d, outcomes.policies))
                        .collect()
                };
                let cell = (
                    summary_code(set.summary),
                    set.text.clone(),
                    row(&set.allowed_by),
                    row(&set.denied_by),
                    path,
                );
                line.push(outcomes.intern(cell));
            }
            c.push(line);
        }
        let w = if outcomes.list.len() <= 90 { 1 } else { 2 };
        out.push(Some(Matrix {
            ids,
            total,
            cols,
            o: outcomes.list,
            hops,
            w,
            c: c.iter().map(|row| encode(row, w)).collect(),
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::model::{build, tests::run, Data, Options};
    use super::ALPHABET;
    use crate::cross::testing::{deployment, istio, namespace};
    use serde_json::{json, Value};

    fn with_sa(mut d: Value, sa: &str) -> Value {
        d["spec"]["template"]["spec"]["serviceAccountName"] = json!(sa);
        d
    }

    /// (summary, set in words, allowed by, refused by) of one cell; deciders as
    /// `name rules[i] (how)` or the step.
    type Seen = (String, String, Vec<String>, Vec<String>);

    /// The cell of identity `from` to workload `to`.
    fn cell(data: &Data<'_>, ns: &str, from: &str, to: &str) -> Option<Seen> {
        let i = data.ns.iter().position(|n| n.n == ns).expect("namespace");
        let m = data.reach[i].as_ref().expect("matrix");
        let r = m.ids.iter().position(|id| id.0 == from).expect("row");
        let c = m
            .cols
            .iter()
            .position(|c| data.wl[c.0].n == to)
            .expect("column");
        let names = |ds: &[super::DeciderRow]| -> Vec<String> {
            ds.iter()
                .map(|(p, rule, how, hop)| {
                    let base = match (p, rule) {
                        (Some(p), Some(r)) => format!("{} rules[{r}] ({how})", data.pol[*p].n),
                        (Some(p), None) => format!("{} ({how})", data.pol[*p].n),
                        (None, _) => (*how).to_owned(),
                    };
                    match hop {
                        Some(h) => format!("{base} at {h}"),
                        None => base,
                    }
                })
                .collect()
        };
        m.outcome(r, c).map(|o| {
            let (summary, text, allow, deny, _) = &m.o[o];
            (
                (*summary).to_owned(),
                text.clone(),
                names(allow),
                names(deny),
            )
        })
    }

    fn seen(summary: &str, text: &str, allow: &[&str], deny: &[&str]) -> Option<Seen> {
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
        Some((summary.to_owned(), text.to_owned(), v(allow), v(deny)))
    }

    fn mesh() -> Vec<Value> {
        vec![
            namespace("prod", json!({"istio-injection": "enabled"})),
            namespace("other", json!({"istio-injection": "enabled"})),
            namespace("legacy", json!({})),
            istio(
                "PeerAuthentication",
                "prod",
                "strict",
                json!({"mtls": {"mode": "STRICT"}}),
            ),
            istio("AuthorizationPolicy", "prod", "deny-all", json!({})),
            istio(
                "AuthorizationPolicy",
                "prod",
                "api",
                json!({
                "selector": {"matchLabels": {"app": "api"}},
                "rules": [
                    {"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/web"]}}]},
                    {"from": [{"source": {"namespaces": ["other"]}}], "to": [{"operation": {"methods": ["GET"]}}]},
                ]}),
            ),
            istio(
                "AuthorizationPolicy",
                "prod",
                "no-admin",
                json!({
                "action": "DENY", "selector": {"matchLabels": {"app": "api"}},
                "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/admin"]}}]}]}),
            ),
            with_sa(
                deployment("prod", "web", json!({"app": "web"}), &[8080]),
                "web",
            ),
            with_sa(
                deployment("prod", "api", json!({"app": "api"}), &[8080]),
                "api",
            ),
            with_sa(
                deployment("other", "client", json!({"app": "client"}), &[80]),
                "client",
            ),
            deployment("legacy", "old", json!({"app": "old"}), &[80]),
        ]
    }

    #[test]
    fn cells_are_the_simulators_decisions_with_their_policy() {
        let (engine, inventory, report) = run(mesh());
        let data = build(&engine, &inventory, &report, Options::default());
        // STRICT refuses the plaintext client; the PeerAuthentication decides.
        assert_eq!(
            cell(&data, "prod", "", "api"),
            seen("N", "none", &[], &["strict (refused)"])
        );
        // web is allowed everything by api's rules[0], on TCP and HTTP alike.
        assert_eq!(
            cell(&data, "prod", "prod/web", "api"),
            seen("A", "all", &["api rules[0] (allow)"], &[])
        );
        // A caller from the named namespace: rules[1] needs HTTP (GET), so only GETs pass; a
        // plain TCP connection and other methods meet the default deny. The page shows
        // "some", never "deny", for this edge.
        assert_eq!(
            cell(&data, "prod", "other/client", "api"),
            seen(
                "S",
                "GET",
                &["api rules[1] (allow)"],
                &["deny-all (default-deny)"]
            )
        );
        // The named admin: the DENY rule decides.
        assert_eq!(
            cell(&data, "prod", "prod/admin", "api"),
            seen("N", "none", &[], &["no-admin rules[0] (deny)"])
        );
        // web itself: only deny-all applies, which allows nothing.
        assert_eq!(
            cell(&data, "prod", "prod/api", "web"),
            seen("N", "none", &[], &["deny-all (default-deny)"])
        );
        // Outside the mesh nothing is enforced.
        assert_eq!(
            cell(&data, "legacy", "", "old"),
            seen("A", "all", &["unenforced"], &[])
        );
        // Rows: plaintext, the workloads' identities, the named principal, the named
        // namespace's workloads.
        let prod = data.ns.iter().position(|n| n.n == "prod").expect("prod");
        let m = data.reach[prod].as_ref().expect("matrix");
        let rows: Vec<(&str, &str)> = m.ids.iter().map(|(l, w)| (l.as_str(), *w)).collect();
        assert_eq!(
            rows,
            [
                ("", "plaintext"),
                ("prod/web", "workload"),
                ("prod/api", "workload"),
                ("prod/admin", "named"),
                ("other/client", "caller"),
            ]
        );
        assert_eq!(m.total, 4);
        // A namespace without workloads has no matrix.
        let (engine, inventory, report) = run(vec![namespace("empty", json!({}))]);
        let data = build(&engine, &inventory, &report, Options::default());
        assert!(data.reach[0].is_none());
    }

    #[test]
    fn rows_are_bounded_and_the_cut_is_counted() {
        let (engine, inventory, report) = run(mesh());
        let data = build(&engine, &inventory, &report, Options { max_identities: 2 });
        let prod = data.ns.iter().position(|n| n.n == "prod").expect("prod");
        let m = data.reach[prod].as_ref().expect("matrix");
        assert_eq!(m.ids.len(), 3, "plaintext and two identities");
        assert_eq!(m.total, 4);
        assert!(m.c.iter().all(|row| row.len() == m.cols.len()));
    }

    #[test]
    fn cell_codes_round_trip_in_one_and_two_characters() {
        assert_eq!(
            ALPHABET
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len(),
            90
        );
        assert!(!ALPHABET
            .iter()
            .any(|b| b"-\\\"".contains(b) || !b.is_ascii_graphic()));
        for w in [1, 2] {
            let row: Vec<i32> = if w == 1 {
                vec![0, 89, -1, 5]
            } else {
                vec![0, 8099, -1, 95]
            };
            let m = super::Matrix {
                ids: Vec::new(),
                total: 0,
                cols: vec![(0, None, ""); 4],
                o: Vec::new(),
                hops: Vec::new(),
                w,
                c: vec![super::encode(&row, w)],
            };
            let back: Vec<Option<usize>> = (0..4).map(|c| m.outcome(0, c)).collect();
            let want: Vec<Option<usize>> = row.iter().map(|&i| usize::try_from(i).ok()).collect();
            assert_eq!(back, want, "width {w}");
        }
    }

    #[test]
    fn tcp_only_ports_have_no_http_requests() {
        let mut objects = mesh();
        objects.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "prod"},
            "spec": {"selector": {"app": "api"}, "ports": [{"name": "tcp-api", "port": 8080}]}}));
        let (engine, inventory, report) = run(objects);
        let data = build(&engine, &inventory, &report, Options::default());
        // On a declared TCP port the GET-only rule never applies: the namespace's caller gets
        // nothing; web still gets every connection.
        assert_eq!(
            cell(&data, "prod", "other/client", "api"),
            seen("N", "none", &[], &["deny-all (default-deny)"])
        );
        assert_eq!(
            cell(&data, "prod", "prod/web", "api").map(|s| s.1),
            Some("all".to_owned())
        );
    }

    #[test]
    fn a_cell_says_none_only_when_no_request_gets_through() {
        // The tutorial's shape: a frontend that may GET one path of the backend.
        let mut objects = mesh();
        objects.push(istio(
            "AuthorizationPolicy",
            "prod",
            "web-get",
            json!({"selector": {"matchLabels": {"app": "web"}}, "rules": [{
                "from": [{"source": {"principals": ["cluster.local/ns/prod/sa/api"]}}],
                "to": [{"operation": {"methods": ["GET"], "paths": ["/api/data"]}}]}]}),
        ));
        let (engine, inventory, report) = run(objects);
        let data = build(&engine, &inventory, &report, Options::default());
        assert_eq!(
            cell(&data, "prod", "prod/api", "web"),
            seen(
                "S",
                "GET /api/data",
                &["web-get rules[0] (allow)"],
                &["deny-all (default-deny)"]
            )
        );
    }

    #[test]
    fn ambient_cells_follow_the_path_through_the_waypoint() {
        let objects = vec![
            namespace(
                "shop",
                json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}),
            ),
            namespace("payments", json!({"istio-injection": "enabled"})),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "waypoint", "namespace": "shop"},
                "spec": {"gatewayClassName": "istio-waypoint",
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "shop"},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 80, "targetPort": 9080}]}}),
            with_sa(
                deployment("shop", "reviews", json!({"app": "reviews"}), &[9080]),
                "reviews",
            ),
            with_sa(
                deployment("shop", "frontend", json!({"app": "frontend"}), &[8080]),
                "frontend",
            ),
            with_sa(
                deployment("payments", "billing", json!({"app": "billing"}), &[8080]),
                "billing",
            ),
            istio(
                "AuthorizationPolicy",
                "shop",
                "reviews-l7",
                json!({"targetRefs": [{"kind": "Service", "group": "", "name": "reviews"}],
                    "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/frontend"]}}],
                               "to": [{"operation": {"methods": ["GET"]}}]}]}),
            ),
            istio(
                "AuthorizationPolicy",
                "shop",
                "reviews-only-via-waypoint",
                json!({"selector": {"matchLabels": {"app": "reviews"}},
                    "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/waypoint"]}}]}]}),
            ),
            istio(
                "AuthorizationPolicy",
                "shop",
                "from-billing",
                json!({"selector": {"matchLabels": {"app": "reviews"}},
                    "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/payments/sa/billing"]}}]}]}),
            ),
        ];
        let (engine, inventory, report) = run(objects);
        let data = build(&engine, &inventory, &report, Options::default());
        // frontend (ambient), through the Service's waypoint: GET passes the waypoint (its
        // ALLOW for frontend), then the pods' ztunnel admits the waypoint's identity; anything
        // else the waypoint refuses.
        assert_eq!(
            cell(&data, "shop", "shop/frontend", "reviews"),
            seen(
                "S",
                "GET",
                &["reviews-only-via-waypoint rules[0] (allow) at the ztunnel of deployment shop/reviews"],
                &["reviews-l7 (default-deny) at waypoint shop/waypoint"]
            )
        );
        // billing (sidecar): straight to the pods, where ztunnel admits it by its own
        // identity, whatever it sends.
        assert_eq!(
            cell(&data, "shop", "payments/billing", "reviews"),
            seen("A", "all", &["from-billing rules[0] (allow)"], &[])
        );
        // The paths are in the cells' explanations.
        let i = data.ns.iter().position(|n| n.n == "shop").expect("ns");
        let m = data.reach[i].as_ref().expect("matrix");
        let hops: Vec<&str> = m.hops.iter().map(String::as_str).collect();
        assert!(
            hops.iter().any(|h| h.starts_with("ambient caller → waypoint shop/waypoint (decides with the caller's own identity) → the ztunnel of deployment shop/reviews, which sees the waypoint's identity cluster.local/ns/shop/sa/waypoint")),
            "{hops:?}"
        );
        assert!(
            hops.iter()
                .any(|h| h.contains("sidecar callers never use waypoints")),
            "{hops:?}"
        );
        // The grid says ztunnel and names the waypoint.
        let w = data.wl.iter().find(|w| w.n == "reviews").expect("reviews");
        assert_eq!(w.dp, "ztunnel");
        assert_eq!(w.wp.as_deref(), Some("shop/waypoint (Service reviews)"));
    }
}
