//! Cross-resource findings, shared by `check` and `audit`: what no single-object rule can see.
//! An [`Inventory`] (a manifest set or a cluster listing) is evaluated object by object with
//! [`Engine::evaluate`], then the checks of [`CATALOGUE`] run over the whole set.
//!
//! These ids are not admission rules: they have their own small catalogue and are audit/check
//! only. The policy configures them like rules: `rules.<id>.action` overrides the default
//! (capped by the global `mode` otherwise), and `rules.<id>.exemptions` apply to the finding's
//! subject (its namespace, the namespace's labels, the object's own labels).

use crate::context::ClusterView;
use crate::engine::Engine;
use crate::mtls::{self, Mode, PeerPolicy, PolicyIndex, Workload};
use crate::resource::{annotations_of, Kind, Review};
use crate::rules::{Action, Finding, Violation};
use kube::core::DynamicObject;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// One cross-resource check.
#[derive(Debug)]
pub struct CrossCheck {
    pub id: &'static str,
    pub default_action: Action,
    pub summary: &'static str,
}

pub const MTLS_NOT_STRICT: &str = "mtls-not-strict";
pub const AP_NO_DEFAULT_DENY: &str = "ap-no-default-deny";
pub const RA_UNENFORCED: &str = "ra-unenforced";
pub const AP_UNKNOWN_PRINCIPAL: &str = "ap-unknown-principal";
pub const SELECTOR_MATCHES_NOTHING: &str = "selector-matches-nothing";
pub const DR_DISABLE_VS_MTLS: &str = "dr-disable-vs-mtls";

/// The cross-resource catalogue.
pub static CATALOGUE: &[CrossCheck] = &[
    CrossCheck {
        id: MTLS_NOT_STRICT,
        default_action: Action::Deny,
        summary: "a workload port whose effective mTLS is PERMISSIVE or DISABLE (mesh → namespace → workload → port, oldest policy wins, UNSET inherits, no mesh policy = PERMISSIVE, root-namespace workload policies ignored)",
    },
    CrossCheck {
        id: AP_NO_DEFAULT_DENY,
        default_action: Action::Warn,
        summary: "a mesh namespace without an allow-nothing AuthorizationPolicy (`spec: {}`) in it or mesh-wide",
    },
    CrossCheck {
        id: RA_UNENFORCED,
        default_action: Action::Warn,
        summary: "a RequestAuthentication with no AuthorizationPolicy requiring `requestPrincipals` for its workloads: requests without a token pass",
    },
    CrossCheck {
        id: AP_UNKNOWN_PRINCIPAL,
        default_action: Action::Warn,
        summary: "AuthorizationPolicy principals or namespaces naming ServiceAccounts or namespaces that do not exist",
    },
    CrossCheck {
        id: SELECTOR_MATCHES_NOTHING,
        default_action: Action::Warn,
        summary: "a PeerAuthentication, AuthorizationPolicy or RequestAuthentication selector matching no workload",
    },
    CrossCheck {
        id: DR_DISABLE_VS_MTLS,
        default_action: Action::Deny,
        summary: "DestinationRule `tls.mode: DISABLE` toward a STRICT (traffic breaks) or PERMISSIVE (silent plaintext) workload",
    },
];

pub fn find(id: &str) -> Option<&'static CrossCheck> {
    CATALOGUE.iter().find(|c| c.id == id)
}

/// One object of the inventory, with where it came from.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    /// API version (`v1`, `v1beta1`, ...).
    pub version: String,
    pub object: DynamicObject,
    pub file: Option<Arc<str>>,
    pub line: Option<usize>,
}

impl Entry {
    /// This object as a CREATE review.
    pub fn review(&self) -> Review<'_> {
        Review::create(
            self.kind,
            &self.version,
            self.namespace(),
            self.name(),
            &self.object,
        )
    }

    pub fn namespace(&self) -> &str {
        if self.kind == Kind::Namespace {
            self.name()
        } else {
            self.object.metadata.namespace.as_deref().unwrap_or("")
        }
    }
    pub fn name(&self) -> &str {
        self.object.metadata.name.as_deref().unwrap_or("")
    }
    pub fn subject(&self) -> Subject {
        Subject {
            kind: self.kind.as_str().to_owned(),
            namespace: self.namespace().to_owned(),
            name: self.name().to_owned(),
            file: self.file.clone(),
            line: self.line,
        }
    }
}

/// What a finding is about: an object, with its file and line when it came from a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subject {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub file: Option<Arc<str>>,
    pub line: Option<usize>,
}

impl Subject {
    /// `Kind namespace/name` (or `Kind name` for a Namespace).
    pub fn label(&self) -> String {
        if self.kind == "Namespace" || self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A finding attributed to its subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub subject: Subject,
    pub finding: Finding,
}

/// The result of analysing an inventory.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    /// Sorted by file, line, namespace, kind, name (rule order within an object).
    pub items: Vec<Item>,
    /// The effective-mTLS table.
    pub mtls: Vec<mtls::Row>,
    /// Objects evaluated.
    pub evaluated: usize,
}

/// The action a cross check resolves to under the engine's policy.
/// Like a rule's, it is `rules.<id>.action` when the policy sets one, else the default capped
/// by the global mode.
pub fn action_for(engine: &Engine, check: &CrossCheck) -> Action {
    let policy = engine.policy();
    match policy.rules.get(check.id).and_then(|c| c.action) {
        Some(a) => a,
        None => policy.mode.cap(check.default_action),
    }
}

/// Evaluate every entry as a CREATE with the engine, then run the cross-resource checks.
/// `complete`: the inventory is the whole cluster (a live listing), so what is not in it does
/// not exist; a manifest set is partial and cross checks only speak where it is conclusive.
pub fn analyze(
    engine: &Engine,
    entries: &[Entry],
    cluster: &dyn ClusterView,
    complete: bool,
) -> Analysis {
    let parts = crate::manifest::par_map(entries, |chunk| {
        let mut items = Vec::new();
        for e in chunk {
            let ev = engine.evaluate(&e.review(), cluster);
            if ev.findings.is_empty() {
                continue;
            }
            let subject = e.subject();
            items.extend(ev.findings.into_iter().map(|finding| Item {
                subject: subject.clone(),
                finding,
            }));
        }
        items
    });
    let mut items: Vec<Item> = parts.into_iter().flatten().collect();
    let cx = Cross::new(engine, entries, complete);
    let mut cross = Vec::new();
    let rows = cx.run(&mut cross);
    // A registry rule of the same id may already have reported the same subject.
    let seen: HashSet<(&str, &Subject)> =
        items.iter().map(|i| (i.finding.rule, &i.subject)).collect();
    let cross: Vec<Item> = cross
        .into_iter()
        .filter(|i| !seen.contains(&(i.finding.rule, &i.subject)))
        .collect();
    items.extend(cross);
    sort_items(&mut items);
    Analysis {
        items,
        mtls: rows,
        evaluated: entries.len(),
    }
}

/// Deterministic order: file, line, namespace, kind, name; stable within one subject.
pub fn sort_items(items: &mut [Item]) {
    items.sort_by(|a, b| {
        let ka = (
            a.subject.file.as_deref().unwrap_or(""),
            a.subject.line.unwrap_or(0),
            &a.subject.namespace,
            &a.subject.kind,
            &a.subject.name,
        );
        let kb = (
            b.subject.file.as_deref().unwrap_or(""),
            b.subject.line.unwrap_or(0),
            &b.subject.namespace,
            &b.subject.kind,
            &b.subject.name,
        );
        ka.cmp(&kb)
    });
}

/// Up to five names, then "and N more".
fn list_some(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s.push_str(&format!(" and {} more", names.len() - 5));
    }
    s
}

fn selector_of(spec: &Value) -> BTreeMap<String, String> {
    mtls::string_map(
        spec.get("selector")
            .and_then(|s| s.get("matchLabels"))
            .unwrap_or(&Value::Null),
    )
}

fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn spec(obj: &DynamicObject) -> &Value {
    obj.data.get("spec").unwrap_or(&Value::Null)
}

fn dry_run(obj: &DynamicObject) -> bool {
    annotations_of(obj)
        .get("istio.io/dry-run")
        .is_some_and(|v| v == "true")
}

struct WorkloadEntry<'a> {
    entry: &'a Entry,
    workload: Workload,
}

struct Cross<'a> {
    engine: &'a Engine,
    complete: bool,
    root: String,
    workloads: Vec<WorkloadEntry<'a>>,
    /// Workload indices by namespace.
    by_ns: HashMap<&'a str, Vec<usize>>,
    namespaces: HashMap<&'a str, &'a Entry>,
    /// Namespaces any object lives in.
    seen_namespaces: BTreeSet<&'a str>,
    service_accounts: HashSet<(&'a str, &'a str)>,
    sa_namespaces: HashSet<&'a str>,
    services: Vec<&'a Entry>,
    services_by_name: HashMap<(&'a str, &'a str), Vec<&'a Entry>>,
    peer: Vec<&'a Entry>,
    authz: Vec<&'a Entry>,
    reqauth: Vec<&'a Entry>,
    dest: Vec<&'a Entry>,
    index: PolicyIndex,
    /// Entries by (kind, namespace, name), built on first use (per-rule exemptions only).
    by_subject: std::cell::OnceCell<HashMap<(&'a str, &'a str, &'a str), &'a Entry>>,
}

/// A workload is its top-level controller: Pods, ReplicaSets and Jobs owned by a controller of
/// a workload kind are counted through that controller.
fn is_controlled(obj: &DynamicObject) -> bool {
    obj.metadata.owner_references.as_ref().is_some_and(|refs| {
        refs.iter().any(|r| {
            r.controller == Some(true)
                && matches!(
                    r.kind.as_str(),
                    "ReplicaSet"
                        | "Deployment"
                        | "StatefulSet"
                        | "DaemonSet"
                        | "Job"
                        | "CronJob"
                        | "ReplicationController"
                )
        })
    })
}

impl<'a> Cross<'a> {
    fn new(engine: &'a Engine, entries: &'a [Entry], complete: bool) -> Self {
        let root = engine.policy().root_namespace.clone();
        let mut cx = Cross {
            engine,
            complete,
            root: root.clone(),
            workloads: Vec::new(),
            by_ns: HashMap::new(),
            namespaces: HashMap::new(),
            seen_namespaces: BTreeSet::new(),
            service_accounts: HashSet::new(),
            sa_namespaces: HashSet::new(),
            services: Vec::new(),
            services_by_name: HashMap::new(),
            peer: Vec::new(),
            authz: Vec::new(),
            reqauth: Vec::new(),
            dest: Vec::new(),
            index: PolicyIndex::default(),
            by_subject: std::cell::OnceCell::new(),
        };
        for e in entries {
            let ns = e.namespace();
            if !ns.is_empty() {
                cx.seen_namespaces.insert(ns);
            }
            match e.kind {
                Kind::Namespace => {
                    cx.namespaces.insert(ns, e);
                }
                Kind::ServiceAccount => {
                    cx.service_accounts.insert((ns, e.name()));
                    cx.sa_namespaces.insert(ns);
                }
                Kind::Service => {
                    cx.services.push(e);
                    cx.services_by_name
                        .entry((ns, e.name()))
                        .or_default()
                        .push(e);
                }
                Kind::PeerAuthentication => cx.peer.push(e),
                Kind::AuthorizationPolicy => cx.authz.push(e),
                Kind::RequestAuthentication => cx.reqauth.push(e),
                Kind::DestinationRule => cx.dest.push(e),
                k if k.is_workload() => {
                    if is_controlled(&e.object) {
                        continue;
                    }
                    if let Some(w) = Workload::from_object(k, &e.object) {
                        cx.by_ns.entry(ns).or_default().push(cx.workloads.len());
                        cx.workloads.push(WorkloadEntry {
                            entry: e,
                            workload: w,
                        });
                    }
                }
                _ => {}
            }
        }
        cx.index = PolicyIndex::new(
            &root,
            cx.peer.iter().map(|e| PeerPolicy::from_object(&e.object)),
        );
        cx
    }

    /// `rules.<id>.exemptions` of the policy, applied to the finding's subject.
    fn exempted(&self, id: &str, subject: &Subject) -> bool {
        let configured = self.engine.policy().rules.get(id);
        if configured.is_none_or(|c| c.exemptions.is_empty()) {
            return false; // the usual case: no lookup
        }
        let ns = subject.namespace.as_str();
        let object = self.entry_of(subject);
        self.engine.exempted(
            id,
            ns,
            object.map(|e| crate::resource::labels_of(&e.object)),
            &|| {
                self.namespaces
                    .get(ns)
                    .map(|e| crate::resource::labels_of(&e.object).clone())
            },
        )
    }

    /// The inventory entry a subject names, among the kinds cross checks report on.
    fn entry_of(&self, subject: &Subject) -> Option<&'a Entry> {
        if subject.kind == "Namespace" {
            return self.namespaces.get(subject.name.as_str()).copied();
        }
        let index = self.by_subject.get_or_init(|| {
            self.workloads
                .iter()
                .map(|w| w.entry)
                .chain(self.peer.iter().copied())
                .chain(self.authz.iter().copied())
                .chain(self.reqauth.iter().copied())
                .chain(self.dest.iter().copied())
                .map(|e| ((e.kind.as_str(), e.namespace(), e.name()), e))
                .collect()
        });
        index
            .get(&(
                subject.kind.as_str(),
                subject.namespace.as_str(),
                subject.name.as_str(),
            ))
            .copied()
    }

    fn exempt(&self, ns: &str) -> bool {
        self.engine.exempt_namespaces().iter().any(|n| n == ns)
    }

    fn push(&self, out: &mut Vec<Item>, id: &'static str, subject: Subject, v: Violation) {
        let Some(check) = find(id) else { return };
        let action = action_for(self.engine, check);
        if action == Action::Off || self.exempted(id, &subject) {
            return;
        }
        out.push(Item {
            subject,
            finding: Finding {
                rule: id,
                action,
                violation: v,
            },
        });
    }

    fn run(&self, out: &mut Vec<Item>) -> Vec<mtls::Row> {
        let rows = self.mtls_not_strict(out);
        self.no_default_deny(out);
        self.ra_unenforced(out);
        self.unknown_principals(out);
        self.selectors_matching_nothing(out);
        self.dr_disable(out);
        rows
    }

    /// Workloads that an Istio policy in `ns` with `selector` applies to (`global`: a root
    /// namespace policy that applies in every namespace).
    fn scope(&self, ns: &str, selector: &BTreeMap<String, String>, global: bool) -> Vec<usize> {
        let pick = |idx: &[usize]| -> Vec<usize> {
            idx.iter()
                .copied()
                .filter(|i| matches(selector, &self.workloads[*i].workload.labels))
                .collect()
        };
        if global && ns == self.root {
            pick(&(0..self.workloads.len()).collect::<Vec<_>>())
        } else {
            self.by_ns.get(ns).map(|v| pick(v)).unwrap_or_default()
        }
    }

    fn workload_label(&self, i: usize) -> String {
        let w = &self.workloads[i].workload;
        format!(
            "{} {}/{}",
            w.kind.as_str().to_ascii_lowercase(),
            w.namespace,
            w.name
        )
    }

    // --- mtls-not-strict -------------------------------------------------------------------

    fn mtls_not_strict(&self, out: &mut Vec<Item>) -> Vec<mtls::Row> {
        let rows = self.index.table(
            self.workloads
                .iter()
                .map(|w| &w.workload)
                .filter(|w| !self.exempt(&w.namespace)),
        );
        let by_key: HashMap<(&str, Kind, &str), &WorkloadEntry<'_>> = self
            .workloads
            .iter()
            .map(|w| {
                (
                    (
                        w.workload.namespace.as_str(),
                        w.workload.kind,
                        w.workload.name.as_str(),
                    ),
                    w,
                )
            })
            .collect();
        for r in &rows {
            let mode = r.effective.mode;
            if !matches!(mode, Mode::Permissive | Mode::Disable) {
                continue;
            }
            let Some(w) = by_key.get(&(r.namespace.as_str(), r.kind, r.workload.as_str())) else {
                continue;
            };
            let port = match r.port {
                Some(p) => format!("port {p}"),
                None => "every port".to_owned(),
            };
            let what = match mode {
                Mode::Disable => "connections are plaintext",
                _ => "plaintext connections are accepted",
            };
            let (why, fix) = match &r.effective.decided_by {
                Some(d) => {
                    let field = match (d.level, r.port) {
                        (mtls::Level::Port, Some(p)) => format!(
                            "spec.portLevelMtls{}.mode",
                            crate::resource::quoted_key(&p.to_string())
                        ),
                        _ => "spec.mtls.mode".to_owned(),
                    };
                    (
                        format!(
                            "decided by PeerAuthentication {}/{} ({} level)",
                            d.namespace,
                            d.name,
                            d.level.as_str()
                        ),
                        format!(
                            "set {field}: STRICT in PeerAuthentication {}/{}",
                            d.namespace, d.name
                        ),
                    )
                }
                None => (
                    "no PeerAuthentication sets a mode, and Istio's default is PERMISSIVE"
                        .to_owned(),
                    format!(
                        "apply a PeerAuthentication in namespace \"{}\" with no selector and spec.mtls.mode: STRICT (mesh-wide)",
                        self.root
                    ),
                ),
            };
            self.push(
                out,
                MTLS_NOT_STRICT,
                w.entry.subject(),
                Violation::new(
                    r.path.clone(),
                    format!("effective mTLS on {port} is {mode}, {why}, so {what}"),
                    fix,
                ),
            );
        }
        rows
    }

    // --- ap-no-default-deny ----------------------------------------------------------------

    fn is_allow_nothing(e: &Entry) -> bool {
        let s = spec(&e.object);
        let action_allow = s
            .get("action")
            .and_then(Value::as_str)
            .is_none_or(|a| a == "ALLOW");
        let no_rules = s
            .get("rules")
            .is_none_or(|r| r.is_null() || r.as_array().is_some_and(Vec::is_empty));
        let no_target = s.get("targetRef").is_none() && s.get("targetRefs").is_none();
        action_allow
            && no_rules
            && no_target
            && selector_of(s).is_empty()
            && s.get("provider").is_none()
            && !dry_run(&e.object)
    }

    fn no_default_deny(&self, out: &mut Vec<Item>) {
        let protected: HashSet<&str> = self
            .authz
            .iter()
            .filter(|e| Self::is_allow_nothing(e))
            .map(|e| e.namespace())
            .collect();
        if protected.contains(self.root.as_str()) {
            return; // a mesh-wide allow-nothing policy covers every namespace
        }
        let mut mesh: BTreeSet<&str> = BTreeSet::new();
        for (ns, e) in &self.namespaces {
            if crate::rules::namespace::in_mesh(crate::resource::labels_of(&e.object)) {
                mesh.insert(ns);
            }
        }
        for ns in self.by_ns.keys() {
            mesh.insert(ns);
        }
        for ns in mesh {
            if self.exempt(ns) || protected.contains(ns) {
                continue;
            }
            let subject = match self.namespaces.get(ns) {
                Some(e) => e.subject(),
                None => Subject {
                    kind: "Namespace".into(),
                    namespace: ns.to_owned(),
                    name: ns.to_owned(),
                    file: None,
                    line: None,
                },
            };
            self.push(
                out,
                AP_NO_DEFAULT_DENY,
                subject,
                Violation::new(
                    "metadata.name",
                    format!("namespace \"{ns}\" has no allow-nothing AuthorizationPolicy, so a workload without an ALLOW policy accepts every caller"),
                    format!("apply an AuthorizationPolicy named \"deny-all\" in namespace \"{ns}\" with \"spec: {{}}\", then allow callers explicitly"),
                ),
            );
        }
    }

    // --- ra-unenforced ---------------------------------------------------------------------

    /// Whether an AuthorizationPolicy requires a request principal (a JWT).
    fn requires_jwt(e: &Entry) -> bool {
        if dry_run(&e.object) {
            return false;
        }
        let s = spec(&e.object);
        let action = s.get("action").and_then(Value::as_str).unwrap_or("ALLOW");
        let (field, key) = match action {
            "ALLOW" => ("requestPrincipals", true),
            "DENY" => ("notRequestPrincipals", false),
            _ => return false,
        };
        let rules = s.get("rules").and_then(Value::as_array);
        rules.into_iter().flatten().any(|r| {
            let from = r
                .get("from")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|f| {
                    f.get("source")
                        .and_then(|s| s.get(field))
                        .and_then(Value::as_array)
                        .is_some_and(|a| !a.is_empty())
                });
            let when = key
                && r.get("when")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|w| {
                        w.get("key").and_then(Value::as_str) == Some("request.auth.principal")
                            && w.get("values")
                                .and_then(Value::as_array)
                                .is_some_and(|a| !a.is_empty())
                    });
            from || when
        })
    }

    fn ra_unenforced(&self, out: &mut Vec<Item>) {
        let enforcing: Vec<&Entry> = self
            .authz
            .iter()
            .copied()
            .filter(|e| Self::requires_jwt(e))
            .collect();
        let mut enforcing_by_ns: HashMap<&str, Vec<&Entry>> = HashMap::new();
        for e in &enforcing {
            enforcing_by_ns.entry(e.namespace()).or_default().push(e);
        }
        let empty = Vec::new();
        for ra in &self.reqauth {
            let ns = ra.namespace();
            let sel = selector_of(spec(&ra.object));
            let targets = self.scope(ns, &sel, true);
            let path = if spec(&ra.object).get("jwtRules").is_some() {
                "spec.jwtRules"
            } else {
                "spec"
            };
            let fix = "add an AuthorizationPolicy for the same workloads with rules[].from[].source.requestPrincipals: [\"*\"] (or action DENY with notRequestPrincipals: [\"*\"])";
            if targets.is_empty() {
                // No workload in view: compare scopes instead.
                let covered = enforcing.iter().any(|ap| {
                    let aps = selector_of(spec(&ap.object));
                    (ap.namespace() == ns || ap.namespace() == self.root)
                        && (aps.is_empty() || aps == sel)
                });
                if !covered {
                    self.push(
                        out,
                        RA_UNENFORCED,
                        ra.subject(),
                        Violation::new(
                            path,
                            "no AuthorizationPolicy requires requestPrincipals for the workloads this RequestAuthentication selects, so requests without a token are accepted",
                            fix,
                        ),
                    );
                }
                continue;
            }
            let unenforced: Vec<String> = targets
                .iter()
                .copied()
                .filter(|i| {
                    let w = &self.workloads[*i].workload;
                    let local = enforcing_by_ns.get(w.namespace.as_str()).unwrap_or(&empty);
                    let root = if w.namespace == self.root {
                        &empty
                    } else {
                        enforcing_by_ns.get(self.root.as_str()).unwrap_or(&empty)
                    };
                    !local
                        .iter()
                        .chain(root)
                        .any(|ap| matches(&selector_of(spec(&ap.object)), &w.labels))
                })
                .map(|i| self.workload_label(i))
                .collect();
            if !unenforced.is_empty() {
                self.push(
                    out,
                    RA_UNENFORCED,
                    ra.subject(),
                    Violation::new(
                        path,
                        format!(
                            "no AuthorizationPolicy requires requestPrincipals for {}, so requests without a token are accepted",
                            list_some(&unenforced)
                        ),
                        fix,
                    ),
                );
            }
        }
    }

    // --- ap-unknown-principal --------------------------------------------------------------

    fn namespace_known(&self, ns: &str) -> Option<bool> {
        if self.namespaces.contains_key(ns) || self.seen_namespaces.contains(ns) {
            Some(true)
        } else if self.complete {
            Some(false)
        } else {
            None
        }
    }

    fn service_account_known(&self, ns: &str, sa: &str) -> Option<bool> {
        if self.service_accounts.contains(&(ns, sa)) {
            return Some(true);
        }
        // Kubernetes creates "default" in every namespace.
        if sa == "default" && self.namespace_known(ns) == Some(true) {
            return Some(true);
        }
        if self.complete || self.sa_namespaces.contains(ns) {
            Some(false)
        } else {
            None
        }
    }

    fn unknown_principals(&self, out: &mut Vec<Item>) {
        let domains: Vec<&str> = self.engine.policy().trust_domains().collect();
        for ap in &self.authz {
            let s = spec(&ap.object);
            let Some(rules) = s.get("rules").and_then(Value::as_array) else {
                continue;
            };
            for (ri, r) in rules.iter().enumerate() {
                let Some(from) = r.get("from").and_then(Value::as_array) else {
                    continue;
                };
                for (fi, f) in from.iter().enumerate() {
                    let Some(src) = f.get("source") else { continue };
                    for field in ["principals", "notPrincipals"] {
                        let Some(vals) = src.get(field).and_then(Value::as_array) else {
                            continue;
                        };
                        for (vi, v) in vals.iter().enumerate() {
                            let Some(p) = v.as_str() else { continue };
                            if p.contains('*') {
                                continue;
                            }
                            let parts: Vec<&str> = p.split('/').collect();
                            let [td, "ns", ns, "sa", sa] = parts.as_slice() else {
                                continue; // malformed: another rule reports the format
                            };
                            if !domains.contains(td) {
                                continue; // foreign trust domain: not in this cluster
                            }
                            let path = format!("spec.rules[{ri}].from[{fi}].source.{field}[{vi}]");
                            let msg = match self.namespace_known(ns) {
                                Some(false) => Some(format!("principal \"{p}\" names namespace \"{ns}\", which does not exist, so the rule never matches")),
                                _ => match self.service_account_known(ns, sa) {
                                    Some(false) => Some(format!("principal \"{p}\" names ServiceAccount \"{ns}/{sa}\", which does not exist, so the rule never matches (or matches whoever creates it later)")),
                                    _ => None,
                                },
                            };
                            if let Some(msg) = msg {
                                self.push(
                                    out,
                                    AP_UNKNOWN_PRINCIPAL,
                                    ap.subject(),
                                    Violation::new(
                                        path,
                                        msg,
                                        format!("create ServiceAccount \"{sa}\" in namespace \"{ns}\" or correct the principal"),
                                    ),
                                );
                            }
                        }
                    }
                    for field in ["namespaces", "notNamespaces"] {
                        let Some(vals) = src.get(field).and_then(Value::as_array) else {
                            continue;
                        };
                        for (vi, v) in vals.iter().enumerate() {
                            let Some(ns) = v.as_str() else { continue };
                            if ns.contains('*') || self.namespace_known(ns) != Some(false) {
                                continue;
                            }
                            self.push(
                                out,
                                AP_UNKNOWN_PRINCIPAL,
                                ap.subject(),
                                Violation::new(
                                    format!("spec.rules[{ri}].from[{fi}].source.{field}[{vi}]"),
                                    format!("namespace \"{ns}\" does not exist, so the rule never matches"),
                                    format!("correct the namespace name or create namespace \"{ns}\""),
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    // --- selector-matches-nothing ----------------------------------------------------------

    fn selectors_matching_nothing(&self, out: &mut Vec<Item>) {
        let kinds = self
            .peer
            .iter()
            .chain(&self.authz)
            .chain(&self.reqauth)
            .copied();
        for e in kinds {
            let sel = selector_of(spec(&e.object));
            if sel.is_empty() {
                continue;
            }
            let ns = e.namespace();
            let global = e.kind != Kind::PeerAuthentication;
            if !global && ns == self.root {
                continue; // ignored by Istio; pa-root-namespace-selector reports it
            }
            let in_scope = if global && ns == self.root {
                !self.workloads.is_empty()
            } else {
                self.by_ns.get(ns).is_some_and(|v| !v.is_empty())
            };
            if !self.complete && !in_scope {
                continue; // the manifests do not show this namespace's workloads
            }
            if !self.scope(ns, &sel, global).is_empty() {
                continue;
            }
            let labels = sel
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let where_ = if global && ns == self.root {
                "any namespace".to_owned()
            } else {
                format!("namespace \"{ns}\"")
            };
            self.push(
                out,
                SELECTOR_MATCHES_NOTHING,
                e.subject(),
                Violation::new(
                    "spec.selector.matchLabels",
                    format!(
                        "selector {labels} matches no workload in {where_}, so this {} has no effect",
                        e.kind
                    ),
                    "set spec.selector.matchLabels to the pod labels of the workload it should apply to",
                ),
            );
        }
    }

    // --- dr-disable-vs-mtls ----------------------------------------------------------------

    fn dr_disable(&self, out: &mut Vec<Item>) {
        let cd = self.engine.policy().cluster_domain.clone();
        for dr in &self.dest {
            let s = spec(&dr.object);
            let Some(host) = s.get("host").and_then(Value::as_str) else {
                continue;
            };
            let drns = dr.namespace();
            let fqdn_host = if host.contains('.') || host.contains('*') {
                host.to_owned()
            } else {
                format!("{host}.{drns}.svc.{cd}")
            };
            // (path, port filter, subset labels, ports overridden at port level)
            let mut sites: Vec<TlsSite> = Vec::new();
            let mut collect = |tp: &Value, prefix: &str, subset: BTreeMap<String, String>| {
                let overridden: Vec<u64> = tp
                    .get("portLevelSettings")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|p| p.get("tls").is_some())
                    .filter_map(|p| p.get("port")?.get("number")?.as_u64())
                    .collect();
                if tls_disabled(tp.get("tls")) {
                    sites.push((
                        format!("{prefix}.tls.mode"),
                        None,
                        subset.clone(),
                        overridden,
                    ));
                }
                if let Some(pls) = tp.get("portLevelSettings").and_then(Value::as_array) {
                    for (i, p) in pls.iter().enumerate() {
                        if tls_disabled(p.get("tls")) {
                            let n = p
                                .get("port")
                                .and_then(|x| x.get("number"))
                                .and_then(Value::as_u64);
                            sites.push((
                                format!("{prefix}.portLevelSettings[{i}].tls.mode"),
                                n,
                                subset.clone(),
                                Vec::new(),
                            ));
                        }
                    }
                }
            };
            if let Some(tp) = s.get("trafficPolicy") {
                collect(tp, "spec.trafficPolicy", BTreeMap::new());
            }
            if let Some(subsets) = s.get("subsets").and_then(Value::as_array) {
                for (i, sub) in subsets.iter().enumerate() {
                    if let Some(tp) = sub.get("trafficPolicy") {
                        let labels = mtls::string_map(sub.get("labels").unwrap_or(&Value::Null));
                        collect(tp, &format!("spec.subsets[{i}].trafficPolicy"), labels);
                    }
                }
            }
            if sites.is_empty() {
                continue;
            }
            let services: Vec<&Entry> = match fqdn_host.strip_prefix('*') {
                Some(suffix) => self
                    .services
                    .iter()
                    .copied()
                    .filter(|svc| {
                        format!("{}.{}.svc.{cd}", svc.name(), svc.namespace()).ends_with(suffix)
                    })
                    .collect(),
                None => {
                    let key = fqdn_host
                        .strip_suffix(&format!(".svc.{cd}"))
                        .or_else(|| fqdn_host.strip_suffix(".svc"))
                        .and_then(|h| h.split_once('.'));
                    key.and_then(|(name, ns)| self.services_by_name.get(&(ns, name)))
                        .cloned()
                        .unwrap_or_default()
                }
            };
            for (path, port, subset, overridden) in sites {
                let mut strict = Vec::new();
                let mut permissive = Vec::new();
                for svc in &services {
                    let sspec = spec(&svc.object);
                    let svc_sel = mtls::string_map(sspec.get("selector").unwrap_or(&Value::Null));
                    if svc_sel.is_empty() {
                        continue; // no selector: endpoints managed by hand
                    }
                    let ports = sspec.get("ports").and_then(Value::as_array);
                    for sp in ports.into_iter().flatten() {
                        let Some(number) = sp.get("port").and_then(Value::as_u64) else {
                            continue;
                        };
                        if port.is_some_and(|p| p != number) || overridden.contains(&number) {
                            continue;
                        }
                        for &wi in self
                            .by_ns
                            .get(svc.namespace())
                            .map(Vec::as_slice)
                            .unwrap_or(&[])
                        {
                            let w = &self.workloads[wi].workload;
                            if !matches(&svc_sel, &w.labels) || !matches(&subset, &w.labels) {
                                continue;
                            }
                            let target = match sp.get("targetPort") {
                                Some(Value::Number(n)) => n.as_u64(),
                                Some(Value::String(name)) => match name.parse::<u64>() {
                                    Ok(n) => Some(n),
                                    Err(_) => w
                                        .ports
                                        .iter()
                                        .find(|p| p.name.as_deref() == Some(name))
                                        .map(|p| u64::from(p.port)),
                                },
                                _ => Some(number),
                            };
                            let target = target.and_then(|t| u32::try_from(t).ok());
                            let eff = self.index.compose(&w.namespace, &w.labels);
                            let mode = eff.at(target).mode;
                            let label = format!(
                                "{} port {}",
                                self.workload_label(wi),
                                target.map_or_else(|| "*".to_owned(), |t| t.to_string())
                            );
                            match mode {
                                Mode::Strict => strict.push(label),
                                Mode::Permissive | Mode::Unset => permissive.push(label),
                                Mode::Disable => {}
                            }
                        }
                    }
                }
                strict.sort();
                strict.dedup();
                permissive.sort();
                permissive.dedup();
                let fix = "remove the tls setting (Istio's auto-mTLS then picks mTLS) or set tls.mode: ISTIO_MUTUAL";
                if !strict.is_empty() {
                    self.push(
                        out,
                        DR_DISABLE_VS_MTLS,
                        dr.subject(),
                        Violation::new(
                            path.clone(),
                            format!("tls.mode DISABLE sends plaintext to {}, whose effective mTLS is STRICT, so requests fail", list_some(&strict)),
                            fix,
                        ),
                    );
                }
                if !permissive.is_empty() {
                    self.push(
                        out,
                        DR_DISABLE_VS_MTLS,
                        dr.subject(),
                        Violation::new(
                            path.clone(),
                            format!("tls.mode DISABLE sends plaintext to {}, whose effective mTLS is PERMISSIVE, so traffic silently loses mTLS", list_some(&permissive)),
                            fix,
                        ),
                    );
                }
            }
        }
    }
}

/// A `tls.mode: DISABLE` in a DestinationRule: field path, port it is limited to, subset
/// labels, and ports whose port-level settings override it.
type TlsSite = (String, Option<u64>, BTreeMap<String, String>, Vec<u64>);

fn tls_disabled(tls: Option<&Value>) -> bool {
    tls.and_then(|t| t.get("mode"))
        .and_then(Value::as_str)
        .is_some_and(|m| m == "DISABLE")
}

/// Build the cluster view a set of entries describes: Namespaces (with labels) and
/// ServiceAccounts. `complete`: what is absent does not exist.
pub fn static_cluster(entries: &[Entry], complete: bool) -> crate::context::StaticCluster {
    let mut c = crate::context::StaticCluster {
        partial: !complete,
        ..Default::default()
    };
    for e in entries {
        match e.kind {
            Kind::Namespace => {
                c.namespaces.insert(
                    e.name().to_owned(),
                    crate::resource::labels_of(&e.object).clone(),
                );
            }
            Kind::ServiceAccount => {
                c.service_accounts
                    .insert((e.namespace().to_owned(), e.name().to_owned()));
            }
            _ => {}
        }
    }
    if complete {
        // Kubernetes creates the "default" ServiceAccount in every namespace.
        let names: Vec<String> = c.namespaces.keys().cloned().collect();
        for ns in names {
            c.service_accounts.insert((ns, "default".to_owned()));
        }
    }
    c
}
