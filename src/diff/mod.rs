//! `meshguard diff BASE HEAD`: what a change to a set of manifests opens and closes, for pull
//! requests. Both sides are read as `meshguard check` reads manifests (files, directories, or
//! BASE from git with `--base-ref`), and compared three ways:
//!
//! * **reachability**: per workload port and caller, the requests newly allowed (`opened`:
//!   nothing was allowed before; `widened`: more than before) and newly refused (`closed`,
//!   `narrowed`), each with a witness request that flips and the policies that decide it before
//!   and after ([`crate::reach`]). Workloads whose applicable policies, mTLS and data plane did
//!   not change are not recomputed. An edge follows the request's path through the data plane
//!   ([`crate::reach::model::enforcement`], the posture page's): a caller on the ambient data
//!   plane reaching a workload behind a Service bound to a waypoint goes through the waypoint
//!   (its `targetRefs` policies, the caller's identity), then the pods' ztunnel or sidecar
//!   (the waypoint's identity); sidecar callers and the plaintext client go to the pods. A workload that only HEAD has is `opened` for the callers
//!   that can reach it; one that only BASE has is `closed`.
//! * **mTLS**: the effective mode per workload and port ([`crate::mtls`]) where it changes; a
//!   port that stops requiring mTLS (STRICT → PERMISSIVE or DISABLE) counts as opening.
//! * **findings**: those of `meshguard check` new in HEAD and fixed since BASE, keyed by rule,
//!   object and field path. Each side applies its own PolicyExceptions (and the policy's
//!   `exceptions:`) as `check` does: a finding HEAD excepts is not new, and one that BASE
//!   reported and HEAD excepts is not fixed but `excepted` (listed with the exception), as is
//!   one that HEAD both introduces and excepts. An exception that has expired covers nothing,
//!   so its finding counts as reported.
//!
//! Exit code: 0 when nothing opened and no deny-level finding is new, 1 otherwise (`--fail-on`
//! chooses), 2 on bad input (an unreadable path or document, a git error).

pub mod render;

use crate::authz::hops::CallerPlane;
use crate::authz::{Mesh, PolicySet};
use crate::config::exceptions::ObjectExcepted;
use crate::engine::Engine;
use crate::exit::Exit;
use crate::finding::{Action, Finding, ObjectFinding, Subject};
use crate::inventory::Inventory;
use crate::load::{InputArgs, Loader, MeshArgs, PolicyArgs};
use crate::manifest::{self, Loaded};
use crate::model::MtlsMode;
use crate::reach::eval::{Decider, Enforcement};
use crate::reach::model::{self, CallerNode, WorkloadNode};
use crate::reach::space::{Partition, Protocols, Space};
use crate::reach::{self, ChangeKind};
use crate::resource::Kind;
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
    /// Sized for a pull-request comment: the most important changes first, the rest counted.
    Markdown,
}

/// What makes the exit code 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Something is newly allowed (an edge opened or widened, a port that stops requiring
    /// mTLS).
    Opened,
    /// A deny-level finding of `meshguard check` is new in HEAD.
    NewFindings,
    /// Any change at all (opened, closed, mTLS, findings new or fixed).
    Any,
    /// Never: the exit code is 0 unless the input is bad.
    None,
}

#[derive(Clone, Debug, Args)]
#[command(mut_arg("paths", |a| a.help(
    "BASE and HEAD: files or directories (searched recursively). With --base-ref, the paths of HEAD only (default: the current directory), and BASE is the same paths at GIT_REF"
)))]
pub struct DiffArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Read BASE from git: the same paths as committed at this ref (a branch, tag or commit;
    /// e.g. `origin/main`, or `${{ github.event.pull_request.base.sha }}` in a workflow).
    #[arg(long, value_name = "GIT_REF")]
    pub(crate) base_ref: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: DiffFormat,
    /// What makes the exit code 1 (comma-separated; default: opened,new-findings).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [FailOn::Opened, FailOn::NewFindings])]
    pub fail_on: Vec<FailOn>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

/// One side of the comparison, loaded and evaluated.
pub struct Side {
    pub label: String,
    /// The paths `meshguard simulate` can read this side from (none for a git ref).
    pub paths: Vec<String>,
    pub inventory: Inventory,
    pub engine: Engine,
    pub findings: Vec<ObjectFinding>,
    /// `check`'s findings that this side's exceptions cover.
    pub excepted: Vec<ObjectExcepted>,
}

impl Side {
    /// Load one side: its objects, the mesh they describe, `check`'s findings under the
    /// side's own PolicyExceptions.
    pub fn load(
        label: String,
        paths: Vec<String>,
        mut loaded: Loaded,
        loader: &Loader,
        namespace: &str,
    ) -> Result<Side, String> {
        let prepared = crate::check::prepare(&mut loaded, namespace, false, false);
        if !prepared.errors.is_empty() {
            let list: Vec<String> = prepared.errors.iter().map(ToString::to_string).collect();
            return Err(format!(
                "{label}: cannot read the manifests:\n  {}",
                list.join("\n  ")
            ));
        }
        let mesh = loader.manifests_mesh(&prepared);
        let exceptions = crate::config::exceptions::from_objects(&prepared.mesh_objects);
        let engine = loader.engine(mesh, exceptions, None);
        let report = crate::check::check_loaded(&engine, &prepared, false);
        Ok(Side {
            label,
            paths,
            inventory: prepared.inventory,
            engine,
            findings: report.findings,
            excepted: report.excepted,
        })
    }

    fn mesh(&self) -> Mesh {
        Mesh::from_context(self.engine.mesh())
    }
}

/// A request that flips, as `meshguard simulate` takes it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Witness {
    /// `HTTP` or `TCP`.
    pub protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) destination_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<serde_json::Value>,
    /// `meshguard simulate` asking HEAD about it: the command line, as arguments.
    pub simulate: Vec<String>,
    /// What HEAD decides (`allow` for what opened, `deny` for what closed); BASE decides the
    /// other way.
    pub head: &'static str,
}

/// One change of one edge.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeChange {
    /// The caller: `production/frontend`, `istio-system/*` (another identity of a namespace a
    /// policy names), `*` (any other mesh identity) or `plaintext`.
    pub from: String,
    /// The workload: `production/backend`.
    pub to: String,
    pub(crate) to_kind: &'static str,
    pub port: u16,
    /// The Service the caller addresses, when its requests take that Service's path (ambient
    /// callers through its waypoint): `shop/Service/reviews:9080`, as `simulate --to` takes it
    /// with `--port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub change: ChangeKind,
    /// The requests that flip, in words.
    pub requests: String,
    pub witness: Witness,
    /// The policies that decide the flipped requests, before and after.
    pub policies: Vec<String>,
    pub before: Vec<Decider>,
    pub after: Vec<Decider>,
    /// `new workload`, `removed workload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// An effective mTLS mode that changes.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MtlsChange {
    pub workload: String,
    pub port: u16,
    /// STRICT, PERMISSIVE, DISABLE, or `none` (no proxy).
    pub from: String,
    pub to: String,
    pub(crate) from_policy: Option<String>,
    pub(crate) to_policy: Option<String>,
    /// The port accepted only mTLS and now accepts plaintext.
    pub(crate) opens_plaintext: bool,
}

/// A finding new in HEAD or fixed since BASE.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingChange {
    pub rule: &'static str,
    pub action: &'static str,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
    pub message: String,
    pub fix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// A finding HEAD excepts and BASE did not: the exception a change adds (or a finding it adds
/// together with its exception).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExceptedChange {
    #[serde(flatten)]
    pub finding: FindingChange,
    /// `policy:<name>` or `<namespace>/<name>`.
    pub exception: String,
    /// `until …, owner …: reason`.
    pub(crate) exception_says: String,
    /// BASE reported the finding (else HEAD introduces it, excepted).
    pub(crate) in_base: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FindingsDiff {
    pub new: Vec<FindingChange>,
    pub fixed: Vec<FindingChange>,
    pub excepted: Vec<ExceptedChange>,
}

/// Everything `diff` found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    pub base: String,
    pub head: String,
    pub changes: Vec<EdgeChange>,
    pub mtls: Vec<MtlsChange>,
    pub findings: FindingsDiff,
    /// Workload ports compared, and how many of them had applicable changes.
    pub(crate) ports_compared: usize,
    pub ports_recomputed: usize,
    pub callers: usize,
    pub notes: Vec<String>,
}

impl Diff {
    pub fn opened(&self) -> bool {
        self.changes.iter().any(|c| c.change.opens()) || self.mtls.iter().any(|m| m.opens_plaintext)
    }

    pub(crate) fn new_deny_findings(&self) -> usize {
        self.findings
            .new
            .iter()
            .filter(|f| f.action == Action::Deny.as_str())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.mtls.is_empty()
            && self.findings.new.is_empty()
            && self.findings.fixed.is_empty()
            && self.findings.excepted.is_empty()
    }

    /// The exit code under `--fail-on`.
    pub fn exit_code(&self, fail_on: &[FailOn]) -> Exit {
        let fail = fail_on.iter().any(|f| match f {
            FailOn::Opened => self.opened(),
            FailOn::NewFindings => self.new_deny_findings() > 0,
            FailOn::Any => !self.is_empty(),
            FailOn::None => false,
        });
        Exit::failed_if(fail)
    }
}

/// Single-quote an argument for a POSIX shell when it needs it.
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A witness from a partition's cell, for a caller and workload.
fn witness(p: &Partition, cell: usize, caller: &CallerNode, to_arg: &str, opens: bool) -> Witness {
    let req = p.request(cell, caller.peer.clone());
    let matters = |k: &dyn Fn(&reach::dims::DimKey) -> bool| {
        p.dims
            .iter()
            .enumerate()
            .any(|(i, d)| k(&d.key) && p.dim_matters(i))
    };
    use reach::dims::DimKey;
    let mut sim: Vec<String> = Vec::new();
    match &caller.peer {
        None => sim.push("--plaintext".into()),
        Some(id) => {
            sim.push("--from".into());
            sim.push(format!("{}/{}", id.namespace(), id.service_account()));
        }
    }
    sim.extend([
        "--to".into(),
        to_arg.to_owned(),
        "--port".into(),
        p.port.to_string(),
    ]);
    let mut out = Witness {
        protocol: if req.is_http() { "HTTP" } else { "TCP" },
        method: None,
        path: None,
        host: None,
        headers: BTreeMap::new(),
        source_ip: req.source_ip().map(|i| i.to_string()),
        destination_ip: req.destination_ip().map(|i| i.to_string()),
        sni: req.sni().map(str::to_owned),
        jwt: None,
        simulate: Vec::new(),
        head: "allow",
    };
    if let Some(h) = req.http_part() {
        out.method = Some(h.method().to_owned());
        out.path = Some(h.raw_path().to_owned());
        sim.extend(["--method".into(), h.method().to_owned()]);
        sim.extend(["--path".into(), h.raw_path().to_owned()]);
        if matters(&|k| *k == DimKey::Host) {
            if let Some(host) = h.host() {
                out.host = Some(host.to_owned());
                sim.extend(["--host".into(), host.to_owned()]);
            }
        }
        for (k, v) in h.headers() {
            out.headers.insert(k.clone(), v.clone());
            sim.extend(["--header".into(), format!("{k}={v}")]);
        }
    }
    if let Some(j) = req.jwt() {
        sim.extend(["--jwt".into(), j.principal()]);
        for a in j.audiences() {
            sim.extend(["--audience".into(), a.to_owned()]);
        }
        let mut claims = serde_json::Map::new();
        for (k, v) in j.claims() {
            if matches!(k.as_str(), "iss" | "sub" | "aud") {
                continue;
            }
            claims.insert(k.clone(), v.clone());
            let mut flat: Vec<(String, String)> = Vec::new();
            flatten_claim(k, v, &mut flat);
            for (key, value) in flat {
                sim.extend(["--claim".into(), format!("{key}={value}")]);
            }
        }
        out.jwt = Some(serde_json::json!({
            "issuer": j.issuer(),
            "subject": j.subject(),
            "audiences": j.audiences(),
            "claims": claims,
        }));
    }
    if let Some(ip) = &out.source_ip {
        sim.extend(["--source-ip".into(), ip.clone()]);
    }
    out.simulate = sim;
    out.head = if opens { "allow" } else { "deny" };
    out
}

/// A claim as `simulate --claim` takes it: `key=value`, nested as `a[b]=value`, a list as one
/// `--claim` per element.
fn flatten_claim(key: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::String(s) => out.push((key.to_owned(), s.clone())),
        serde_json::Value::Array(items) => {
            for i in items {
                flatten_claim(key, i, out);
            }
        }
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                flatten_claim(&format!("{key}[{k}]"), x, out);
            }
        }
        other => out.push((key.to_owned(), other.to_string())),
    }
}

/// What a workload's decisions depend on in one policy set, as text: on every port and for
/// callers on every data plane, the path and its policies (specs and what orders them), token
/// issuers and effective mTLS ([`Enforcement::applied`]). Equal fingerprints decide every
/// request alike.
fn fingerprint(
    inv: &Inventory,
    set: &PolicySet,
    topology: &crate::dataplane::Topology,
    w: &WorkloadNode,
) -> String {
    let mut s = format!("{:?}|{:?}|", w.unenforced, w.ports);
    for p in &w.ports {
        let planes: &[CallerPlane] = if model::routed(topology, w, p.port) {
            &PLANES
        } else {
            &PLANES[..1]
        };
        for &plane in planes {
            let (enf, via) = model::enforcement(set, topology, w, p.port, plane);
            let (ids, shape) = enf.applied();
            s.push_str(&format!("{}|{via:?}|{shape}|", p.port));
            if let Some(crate::authz::hops::Addressed::Service { service, .. }) = via {
                let svc = topology.service(service);
                s.push_str(&format!("{}/{}|", svc.namespace, svc.name));
            }
            for id in ids {
                let (ns, name) = id.split_once('/').unwrap_or(("", id.as_str()));
                let spec = inv.find(Kind::AuthorizationPolicy, ns, name).map(|o| {
                    let meta = o.metadata();
                    (
                        o.spec().to_string(),
                        meta.annotations,
                        meta.creation_timestamp,
                    )
                });
                s.push_str(&format!("{id}|{spec:?}|"));
            }
        }
    }
    s
}

/// The callers' data planes, each of which may take its own path to a workload.
const PLANES: [CallerPlane; 4] = [
    CallerPlane::Sidecar,
    CallerPlane::Ambient,
    CallerPlane::Gateway,
    CallerPlane::Outside,
];

fn plane_slot(p: CallerPlane) -> usize {
    PLANES.iter().position(|&x| x == p).unwrap_or(0)
}

fn caller_fields<'s>(enf: &Enforcement<'s>) -> Vec<&'s crate::authz::field::Field> {
    let mut all = Vec::new();
    enf.fields(&mut all);
    all.into_iter()
        .filter(|f| reach::eval::is_identity(f))
        .collect()
}

fn mode_str(m: Option<MtlsMode>) -> String {
    m.map_or_else(|| "none".to_owned(), |m| m.as_str().to_owned())
}

fn mtls_rank(m: Option<MtlsMode>) -> u8 {
    match m {
        Some(MtlsMode::Strict) => 3,
        Some(MtlsMode::Permissive) | Some(MtlsMode::Unset) => 2,
        Some(MtlsMode::Disable) => 1,
        None => 0,
    }
}

fn mtls_decider(enf: &Enforcement<'_>, port: u16) -> Option<String> {
    use crate::authz::hops::DestTarget;
    let composed = match enf {
        Enforcement::Sidecar(t) => t.mtls(),
        Enforcement::Path(p) => match &p.route.dest {
            DestTarget::Sidecar(t) => t.mtls(),
            DestTarget::Ztunnel { target, .. } => target.mtls(),
            DestTarget::Unenforced(_) => return None,
        },
        Enforcement::Unenforced(_) => return None,
    };
    composed
        .at(Some(u32::from(port)))
        .decided_by
        .as_ref()
        .map(|d| format!("{}/{} ({})", d.namespace, d.name, d.level.as_str()))
}

type FindingKey = (String, String, String, String, String);

/// Rule, object and field path.
fn finding_key(subject: &Subject, f: &Finding) -> FindingKey {
    (
        f.rule.to_owned(),
        subject.kind.clone(),
        subject.namespace.clone(),
        subject.name.clone(),
        f.violation.path.clone(),
    )
}

fn finding_change(subject: &Subject, f: &Finding) -> FindingChange {
    FindingChange {
        rule: f.rule,
        action: f.action.as_str(),
        kind: subject.kind.clone(),
        namespace: subject.namespace.clone(),
        name: subject.name.clone(),
        path: f.violation.path.clone(),
        message: f.violation.message.clone(),
        fix: f.violation.fix.clone(),
        file: subject.file.as_deref().map(str::to_owned),
        line: subject.line,
    }
}

/// The `--to` argument `simulate` resolves to this workload in an inventory.
fn to_arg(inv: &Inventory, w: &WorkloadNode) -> String {
    let same_name = Kind::WORKLOADS
        .iter()
        .filter(|k| inv.find(**k, &w.namespace, &w.name).is_some())
        .count();
    if same_name > 1 {
        format!(
            "{}/{}/{}",
            w.namespace,
            w.kind.as_str().to_ascii_lowercase(),
            w.name
        )
    } else {
        w.id()
    }
}

/// Compare two loaded sides.
pub fn compare(base: &Side, head: &Side) -> Diff {
    let base_set = PolicySet::new(base.mesh(), base.inventory.decoded(PolicySet::reads));
    let head_set = PolicySet::new(head.mesh(), head.inventory.decoded(PolicySet::reads));
    let topology = |s: &Side| {
        crate::dataplane::Topology::new(s.inventory.decoded(crate::dataplane::Topology::reads))
    };
    let (base_topology, head_topology) = (topology(base), topology(head));
    let domain = |s: &Side| s.engine.policy().cluster_domain.clone();
    let base_wl = model::workloads(&base.inventory, base.engine.mesh(), &domain(base));
    let head_wl = model::workloads(&head.inventory, head.engine.mesh(), &domain(head));
    let callers = model::callers(&[&base.inventory, &head.inventory], &head.mesh());
    let mut notes = Vec::new();
    let base_by_key: HashMap<String, &WorkloadNode> =
        base_wl.iter().map(|w| (w.key(), w)).collect();
    let head_keys: BTreeSet<String> = head_wl.iter().map(WorkloadNode::key).collect();
    let mut changes: Vec<EdgeChange> = Vec::new();
    let mut mtls: Vec<MtlsChange> = Vec::new();
    let (mut compared, mut recomputed) = (0usize, 0usize);
    // Workloads in HEAD (changed or new), then those only BASE has.
    let pairs: Vec<(Option<&WorkloadNode>, Option<&WorkloadNode>)> = head_wl
        .iter()
        .map(|h| (base_by_key.get(&h.key()).copied(), Some(h)))
        .chain(
            base_wl
                .iter()
                .filter(|b| !head_keys.contains(&b.key()))
                .map(|b| (Some(b), None)),
        )
        .collect();
    let planes = |s: &Side, wl: &[WorkloadNode], t: &crate::dataplane::Topology| {
        model::CallerPlanes::new(&s.inventory, s.engine.mesh(), t, wl)
    };
    let base_planes = planes(base, &base_wl, &base_topology);
    let head_planes = planes(head, &head_wl, &head_topology);
    for (b, h) in pairs {
        let any = h.or(b).cloned();
        let Some(node) = any else {
            continue;
        };
        let ports: BTreeMap<u16, Protocols> = b
            .into_iter()
            .chain(h)
            .flat_map(|w| w.ports.iter())
            .map(|p| (p.port, Protocols::of(p.protocol)))
            .fold(BTreeMap::new(), |mut m, (port, proto)| {
                m.entry(port)
                    .and_modify(|x: &mut Protocols| {
                        x.tcp |= proto.tcp;
                        x.http |= proto.http;
                    })
                    .or_insert(proto);
                m
            });
        compared += ports.len();
        if let (Some(bw), Some(hw)) = (b, h) {
            if fingerprint(&base.inventory, &base_set, &base_topology, bw)
                == fingerprint(&head.inventory, &head_set, &head_topology, hw)
            {
                continue;
            }
            for &port in ports.keys() {
                // The pods' mode: the same on every caller's path.
                let be =
                    model::enforcement(&base_set, &base_topology, bw, port, CallerPlane::Sidecar).0;
                let he =
                    model::enforcement(&head_set, &head_topology, hw, port, CallerPlane::Sidecar).0;
                let (bm, hm) = (be.mtls(port), he.mtls(port));
                if bm != hm {
                    mtls.push(MtlsChange {
                        workload: hw.id(),
                        port,
                        from: mode_str(bm),
                        to: mode_str(hm),
                        from_policy: mtls_decider(&be, port),
                        to_policy: mtls_decider(&he, port),
                        opens_plaintext: bm == Some(MtlsMode::Strict)
                            && mtls_rank(hm) < mtls_rank(bm),
                    });
                }
            }
        }
        recomputed += ports.len();
        let to_inv = if h.is_some() {
            &head.inventory
        } else {
            &base.inventory
        };
        let workload_arg = to_arg(to_inv, &node);
        for (&port, &protocols) in &ports {
            // Callers by the data planes they call from on each side: each group takes its
            // own path (through a Service's waypoint, or straight to the pods).
            // (One group when neither side's path depends on the caller's plane.)
            let b_routed = b.is_some_and(|w| model::routed(&base_topology, w, port));
            let h_routed = h.is_some_and(|w| model::routed(&head_topology, w, port));
            let mut groups: BTreeMap<(usize, usize), Vec<&CallerNode>> = BTreeMap::new();
            for c in &callers {
                let key = (
                    if b_routed {
                        plane_slot(base_planes.of(c.peer.as_ref()))
                    } else {
                        0
                    },
                    if h_routed {
                        plane_slot(head_planes.of(c.peer.as_ref()))
                    } else {
                        0
                    },
                );
                groups.entry(key).or_default().push(c);
            }
            for ((bp, hp), group) in groups {
                let bside =
                    b.map(|w| model::enforcement(&base_set, &base_topology, w, port, PLANES[bp]));
                let hside =
                    h.map(|w| model::enforcement(&head_set, &head_topology, w, port, PLANES[hp]));
                // The Service the requests address (HEAD's, else BASE's), when the workload is
                // behind one bound to a waypoint: the requests carry its port, and `simulate`
                // is asked about it.
                let service =
                    |side: &Option<(Enforcement<'_>, Option<crate::authz::hops::Addressed>)>,
                     t: &crate::dataplane::Topology| {
                        match side.as_ref().and_then(|s| s.1) {
                            Some(crate::authz::hops::Addressed::Service { service, port }) => {
                                let s = t.service(service);
                                Some((format!("{}/Service/{}", s.namespace, s.name), port))
                            }
                            _ => None,
                        }
                    };
                let via =
                    service(&hside, &head_topology).or_else(|| service(&bside, &base_topology));
                let (at, to) = match &via {
                    Some((arg, svc_port)) => (*svc_port, arg.clone()),
                    None => (port, workload_arg.clone()),
                };
                let be = bside.map(|s| s.0);
                let he = hside.map(|s| s.0);
                let sides: Vec<&Enforcement<'_>> = be.iter().chain(he.iter()).collect();
                let mut p = Partition::new(&sides, at, protocols, &node.host);
                if let Some(n) = p.too_large {
                    notes.push(format!(
                        "{}:{port}: {n} combinations of policy values, more than meshguard splits: not compared",
                        node.id()
                    ));
                    continue;
                }
                notes.extend(p.notes.iter().map(|n| format!("{}:{port}: {n}", node.id())));
                let bf = be.as_ref().map(caller_fields).unwrap_or_default();
                let hf = he.as_ref().map(caller_fields).unwrap_or_default();
                let mut cache: HashMap<(Vec<u64>, Vec<u64>), Vec<reach::Change>> = HashMap::new();
                for caller in group {
                    let key = (
                        be.as_ref()
                            .map(|e| e.caller_key(&bf, caller.peer.as_ref(), at))
                            .unwrap_or_default(),
                        he.as_ref()
                            .map(|e| e.caller_key(&hf, caller.peer.as_ref(), at))
                            .unwrap_or_default(),
                    );
                    let found = match cache.get(&key) {
                        Some(c) => c.clone(),
                        None => {
                            let bs = be.as_ref().map(|e| (e, p.evaluate(e, caller.peer.clone())));
                            let hs = he.as_ref().map(|e| (e, p.evaluate(e, caller.peer.clone())));
                            let c = edge_changes(
                                &p,
                                bs.as_ref().map(|(e, s)| (*e, s)),
                                hs.as_ref().map(|(e, s)| (*e, s)),
                            );
                            cache.insert(key, c.clone());
                            c
                        }
                    };
                    for ch in found {
                        let mut policies: Vec<String> = Vec::new();
                        for d in ch.after.iter().chain(&ch.before) {
                            if let Some(id) = d.policy_id() {
                                if !policies.iter().any(|x| x == id) {
                                    policies.push(id.to_owned());
                                }
                            }
                        }
                        changes.push(EdgeChange {
                            from: caller.label.clone(),
                            to: node.id(),
                            to_kind: node.kind.as_str(),
                            port,
                            via: via.as_ref().map(|(arg, sp)| format!("{arg}:{sp}")),
                            change: ch.kind,
                            requests: ch.text.clone(),
                            witness: witness(&p, ch.witness, caller, &to, ch.kind.opens()),
                            policies,
                            before: ch.before.clone(),
                            after: ch.after.clone(),
                            note: match (b, h) {
                                (None, Some(_)) => Some("new workload"),
                                (Some(_), None) => Some("removed workload"),
                                _ => None,
                            },
                        });
                    }
                }
            }
        }
    }
    changes.sort_by(|a, b| {
        (a.change, &a.to, a.port, &a.from).cmp(&(b.change, &b.to, b.port, &b.from))
    });
    // Findings: keyed by rule, object and field path.
    fn keyed(s: &Side) -> BTreeMap<FindingKey, &ObjectFinding> {
        s.findings
            .iter()
            .map(|f| (finding_key(&f.subject, &f.finding), f))
            .collect()
    }
    let (bf, hf) = (keyed(base), keyed(head));
    // Excepted findings, keyed the same way.
    fn keyed_excepted(s: &Side) -> BTreeMap<FindingKey, &ObjectExcepted> {
        s.excepted
            .iter()
            .map(|e| (finding_key(&e.subject, &e.finding), e))
            .collect()
    }
    let (be, he) = (keyed_excepted(base), keyed_excepted(head));
    let findings = FindingsDiff {
        new: hf
            .iter()
            .filter(|(k, _)| !bf.contains_key(*k))
            .map(|(_, f)| finding_change(&f.subject, &f.finding))
            .collect(),
        fixed: bf
            .iter()
            .filter(|(k, _)| !hf.contains_key(*k) && !he.contains_key(*k))
            .map(|(_, f)| finding_change(&f.subject, &f.finding))
            .collect(),
        excepted: he
            .iter()
            .filter(|(k, _)| !be.contains_key(*k))
            .map(|(k, e)| ExceptedChange {
                finding: finding_change(&e.subject, &e.finding),
                exception: e.exception.id(),
                exception_says: e.exception.describe(),
                in_base: bf.contains_key(k),
            })
            .collect(),
    };
    notes.sort();
    notes.dedup();
    Diff {
        base: base.label.clone(),
        head: head.label.clone(),
        changes,
        mtls,
        findings,
        ports_compared: compared,
        ports_recomputed: recomputed,
        callers: callers.len(),
        notes,
    }
}

/// The changes of one edge; a side that does not exist (a workload only the other side has)
/// allows nothing.
fn edge_changes(
    p: &Partition,
    base: Option<(&Enforcement<'_>, &Space)>,
    head: Option<(&Enforcement<'_>, &Space)>,
) -> Vec<reach::Change> {
    match (base, head) {
        (Some(b), Some(h)) => reach::compare(p, b, h),
        (None, Some((e, s))) => whole(p, e, s, ChangeKind::Opened),
        (Some((e, s)), None) => whole(p, e, s, ChangeKind::Closed),
        (None, None) => Vec::new(),
    }
}

/// A workload that appears or disappears: every allowed request flips.
fn whole(p: &Partition, e: &Enforcement<'_>, s: &Space, kind: ChangeKind) -> Vec<reach::Change> {
    let allowed = s.allowed();
    if allowed.is_empty() {
        return Vec::new();
    }
    let d = reach::describe::describe(p, &allowed, |_| None);
    let deciders = reach::deciders(e, s, p.port, allowed.iter().copied());
    let (before, after) = if kind.opens() {
        (Vec::new(), deciders)
    } else {
        (deciders, Vec::new())
    };
    vec![reach::Change {
        kind,
        text: d.text(p),
        description: d,
        witness: reach::first_witness(p, &allowed),
        before,
        after,
    }]
}

/// Read the same paths as committed at a git ref.
pub(crate) fn load_git(reference: &str, paths: &[PathBuf]) -> Result<Loaded, String> {
    let git = |args: &[&str]| -> Result<Vec<u8>, String> {
        let out = std::process::Command::new("git")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(out.stdout)
    };
    let commit = git(&[
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("{reference}^{{commit}}"),
    ])
    .map_err(|_| format!("--base-ref {reference}: not a commit in this repository"))?;
    let commit = String::from_utf8_lossy(&commit).trim().to_owned();
    let mut loaded = Loaded::default();
    let mut seen = BTreeSet::new();
    for p in paths {
        let spec = p.display().to_string();
        let listing = git(&[
            "ls-tree",
            "-r",
            "--name-only",
            "--full-name",
            &commit,
            "--",
            &spec,
        ])?;
        let files: Vec<String> = String::from_utf8_lossy(&listing)
            .lines()
            .map(str::to_owned)
            .collect();
        let explicit = files.len() == 1 && !Path::new(&spec).is_dir();
        for f in files {
            let ext = Path::new(&f)
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("");
            if !explicit && !matches!(ext, "yaml" | "yml" | "json") {
                continue;
            }
            if f.split('/').any(|part| part.starts_with('.')) {
                continue;
            }
            if !seen.insert(f.clone()) {
                continue;
            }
            let blob = git(&["cat-file", "blob", &format!("{commit}:{f}")])?;
            let text =
                String::from_utf8(blob).map_err(|_| format!("{reference}:{f}: not UTF-8"))?;
            manifest::parse_into(&format!("{reference}:{f}"), &text, &mut loaded);
        }
    }
    Ok(loaded)
}

pub fn run(args: DiffArgs) -> Exit {
    let code = execute(&args, &mut std::io::stdout().lock(), &mut std::io::stderr());
    let _ = std::io::stdout().flush();
    code
}

/// `diff` with its streams given. Returns the exit code.
pub fn execute(args: &DiffArgs, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    let result = (|| -> Result<Diff, String> {
        let loader = Loader::new(&args.policy, &args.mesh)?;
        let namespace = &args.input.namespace;
        let shown = |ps: &[PathBuf]| {
            ps.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        let (base, head) = match &args.base_ref {
            Some(r) => {
                let paths = if args.input.paths.is_empty() {
                    vec![PathBuf::from(".")]
                } else {
                    args.input.paths.clone()
                };
                let base_loaded = load_git(r, &paths)?;
                let head_loaded = manifest::load_from(&paths, &mut std::io::empty())
                    .map_err(|e| e.to_string())?;
                let label = shown(&paths).join(" ");
                (
                    Side::load(
                        format!("{r}:{label}"),
                        Vec::new(),
                        base_loaded,
                        &loader,
                        namespace,
                    )?,
                    Side::load(label, shown(&paths), head_loaded, &loader, namespace)?,
                )
            }
            None => {
                let [b, h] = args.input.paths.as_slice() else {
                    return Err(format!(
                        "want BASE and HEAD (two files or directories), or --base-ref GIT_REF [PATH…]; got {} path{}",
                        args.input.paths.len(),
                        if args.input.paths.len() == 1 { "" } else { "s" }
                    ));
                };
                let load = |p: &PathBuf| {
                    manifest::load_from(std::slice::from_ref(p), &mut std::io::empty())
                        .map_err(|e| e.to_string())
                };
                (
                    Side::load(
                        b.display().to_string(),
                        shown(std::slice::from_ref(b)),
                        load(b)?,
                        &loader,
                        namespace,
                    )?,
                    Side::load(
                        h.display().to_string(),
                        shown(std::slice::from_ref(h)),
                        load(h)?,
                        &loader,
                        namespace,
                    )?,
                )
            }
        };
        let mut d = compare(&base, &head);
        d.notes.retain(|n| !n.is_empty());
        for c in &mut d.changes {
            let mut cmd = vec!["meshguard".to_owned(), "simulate".to_owned()];
            cmd.extend(head.paths.iter().cloned());
            cmd.append(&mut c.witness.simulate);
            c.witness.simulate = cmd;
        }
        Ok(d)
    })();
    let d = match result {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(err, "meshguard diff: {e}");
            return Exit::Error;
        }
    };
    let rendered = match args.format {
        DiffFormat::Text => render::text(&d),
        DiffFormat::Json => {
            let mut s = serde_json::to_string_pretty(&render::json(&d)).unwrap_or_default();
            s.push('\n');
            s
        }
        DiffFormat::Markdown => render::markdown(&d, &args.fail_on),
    };
    let _ = out.write_all(rendered.as_bytes());
    d.exit_code(&args.fail_on)
}
