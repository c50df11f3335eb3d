//! Effective mTLS per workload and port, composed from PeerAuthentications exactly as istiod
//! does (pilot `ComposePeerAuthentication`): mesh (root namespace, no selector) → namespace
//! (no selector) → workload (selector) → port (`portLevelMtls`, workload-level policies only).
//!
//! * Within one scope the oldest policy wins (creationTimestamp; name breaks ties; a policy with
//!   no timestamp, as in a manifest not yet applied, counts as newest).
//! * `UNSET` (or no `mtls`) inherits from the level above; with no mesh policy (or an UNSET one)
//!   the default is PERMISSIVE.
//! * Workload-level policies in the root namespace are ignored.
//! * Port-level settings apply to workload (container) ports; an UNSET port inherits the
//!   workload's mode.
//!
//! Pure: no I/O. `audit --mtls` and `check --mtls` print the table; the replacement for the
//! removed `istioctl authn tls-check`.

use crate::model::workload::PodTemplate;
use crate::model::{decode_spec, MtlsMode, PeerAuthentication};
use crate::resource::{spec_of, Kind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::DynamicObject;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// The parts of a PeerAuthentication that decide the effective mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPolicy {
    pub namespace: String,
    pub name: String,
    pub created: Option<Time>,
    /// `selector.matchLabels`; empty = namespace- or mesh-wide.
    pub selector: BTreeMap<String, String>,
    pub mode: MtlsMode,
    pub ports: BTreeMap<u32, MtlsMode>,
}

impl PeerPolicy {
    /// Read a PeerAuthentication object.
    pub fn from_object(obj: &DynamicObject) -> PeerPolicy {
        let pa: PeerAuthentication<'_> = decode_spec(spec_of(obj)).unwrap_or_default();
        PeerPolicy {
            namespace: obj.metadata.namespace.clone().unwrap_or_default(),
            name: obj.metadata.name.clone().unwrap_or_default(),
            created: obj.metadata.creation_timestamp.clone(),
            selector: pa.selector().to_map(),
            mode: pa.mode(),
            ports: pa
                .port_level()
                .filter_map(|p| Some((p.port()?, MtlsMode::parse(p.mode()))))
                .collect(),
        }
    }

    /// Oldest first; no timestamp = newest; name breaks ties.
    fn age_key(&self) -> (bool, Option<&Time>, &str) {
        (self.created.is_none(), self.created.as_ref(), &self.name)
    }
}

/// A workload as the mTLS table sees it: pod labels and container ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// Labels of the pods (template labels for controllers).
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<ContainerPort>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPort {
    pub port: u32,
    pub name: Option<String>,
    /// Field path of `containerPort`, e.g. `spec.template.spec.containers[0].ports[0].containerPort`.
    pub path: String,
}

impl Workload {
    /// Read a workload object (any of [`Kind::WORKLOADS`]) through its pod template; `None` for
    /// other kinds.
    pub fn from_object(kind: Kind, obj: &DynamicObject) -> Option<Workload> {
        let t = PodTemplate::of(kind, obj)?;
        let mut ports: Vec<ContainerPort> = Vec::new();
        for c in t.containers().filter(|c| c.list == "containers") {
            for (pi, p) in c.ports() {
                let Some(port) =
                    crate::model::ok(&p.container_port).and_then(|n| u32::try_from(*n).ok())
                else {
                    continue;
                };
                if ports.iter().any(|x| x.port == port) {
                    continue;
                }
                ports.push(ContainerPort {
                    port,
                    name: crate::model::ok(&p.name).map(|s| s.to_string()),
                    path: t.path(&format!(
                        "spec.containers[{}].ports[{pi}].containerPort",
                        c.index
                    )),
                });
            }
        }
        Some(Workload {
            kind,
            namespace: obj.metadata.namespace.clone().unwrap_or_default(),
            name: obj.metadata.name.clone().unwrap_or_default(),
            labels: t.labels(),
            ports,
        })
    }

    /// The container port a Service port's target is, in this workload: a number as is, a name
    /// resolved against the container ports' names (`None` when no container port has it).
    /// The one place a `targetPort` name is resolved.
    pub(crate) fn target_port(&self, target: crate::model::service::Target<'_>) -> Option<u32> {
        use crate::model::service::Target;
        match target {
            Target::Number(n) => Some(n),
            Target::Name(name) => self
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| p.port),
        }
    }

    /// Field path of the pod template (`spec.template`, or `metadata` for a Pod).
    pub(crate) fn template_path(&self) -> String {
        match self.kind.pod_template_path() {
            Some(keys) if !keys.is_empty() => keys.join("."),
            _ => "metadata".to_owned(),
        }
    }
}

/// Which level a policy decided at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Mesh,
    Namespace,
    Workload,
    Port,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Mesh => "mesh",
            Level::Namespace => "namespace",
            Level::Workload => "workload",
            Level::Port => "port",
        }
    }
}

/// The policy that decided a mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decider {
    pub namespace: String,
    pub name: String,
    pub level: Level,
}

impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ({})",
            self.namespace,
            self.name,
            self.level.as_str()
        )
    }
}

/// The effective mode on one port, and what decided it (`None`: Istio's PERMISSIVE default,
/// no policy set a mode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub mode: MtlsMode,
    pub decided_by: Option<Decider>,
}

/// The composed policy of one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Composed {
    pub(crate) workload_mode: Effective,
    /// Port-level modes (already inheriting the workload mode for UNSET ports).
    pub ports: BTreeMap<u32, Effective>,
}

impl Composed {
    /// The effective mode on a port (port-level when set, the workload mode otherwise).
    pub fn at(&self, port: Option<u32>) -> &Effective {
        port.and_then(|p| self.ports.get(&p))
            .unwrap_or(&self.workload_mode)
    }
}

/// PeerAuthentications indexed by namespace, ready to compose for many workloads.
#[derive(Clone, Debug, Default)]
pub struct PolicyIndex {
    root_namespace: String,
    by_namespace: HashMap<String, Vec<PeerPolicy>>,
}

impl PolicyIndex {
    pub fn new(root_namespace: &str, policies: impl IntoIterator<Item = PeerPolicy>) -> Self {
        let mut by_namespace: HashMap<String, Vec<PeerPolicy>> = HashMap::new();
        for p in policies {
            by_namespace.entry(p.namespace.clone()).or_default().push(p);
        }
        for v in by_namespace.values_mut() {
            v.sort_by(|a, b| a.age_key().cmp(&b.age_key()));
        }
        PolicyIndex {
            root_namespace: root_namespace.to_owned(),
            by_namespace,
        }
    }

    pub fn root_namespace(&self) -> &str {
        &self.root_namespace
    }

    /// The policies of the root namespace, then those of `namespace` when it is another one
    /// (each namespace's oldest first): every policy that can apply to a workload there.
    pub fn peers_for<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a PeerPolicy> {
        let get = |ns: &str| self.by_namespace.get(ns).map_or(&[][..], Vec::as_slice);
        let root = get(&self.root_namespace);
        let local = if namespace == self.root_namespace {
            &[][..]
        } else {
            get(namespace)
        };
        root.iter().chain(local)
    }

    /// The mesh-wide policy in force (oldest selector-less policy in the root namespace).
    pub(crate) fn mesh_policy(&self) -> Option<&PeerPolicy> {
        self.by_namespace
            .get(&self.root_namespace)?
            .iter()
            .find(|p| p.selector.is_empty())
    }

    /// Compose the policies that apply to pods with `labels` in `namespace`.
    pub(crate) fn compose(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Composed {
        let empty = Vec::new();
        let root = self
            .by_namespace
            .get(&self.root_namespace)
            .unwrap_or(&empty);
        let local = self.by_namespace.get(namespace).unwrap_or(&empty);
        let mesh = root.iter().find(|p| p.selector.is_empty());
        let (ns_policy, workload) = if namespace == self.root_namespace {
            // The root namespace's selector-less policy is the mesh policy; its workload-level
            // policies are ignored.
            (None, None)
        } else {
            (
                local.iter().find(|p| p.selector.is_empty()),
                local.iter().find(|p| {
                    !p.selector.is_empty()
                        && crate::model::label_selector::all_pairs_match(
                            labels,
                            p.selector.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                        )
                }),
            )
        };
        let mut eff = Effective {
            mode: MtlsMode::Permissive,
            decided_by: None,
        };
        for (p, level) in [(mesh, Level::Mesh), (ns_policy, Level::Namespace)] {
            if let Some(p) = p {
                if p.mode != MtlsMode::Unset {
                    eff = Effective {
                        mode: p.mode,
                        decided_by: Some(decider(p, level)),
                    };
                }
            }
        }
        let mut ports = BTreeMap::new();
        if let Some(w) = workload {
            if w.mode != MtlsMode::Unset {
                eff = Effective {
                    mode: w.mode,
                    decided_by: Some(decider(w, Level::Workload)),
                };
            }
            for (port, mode) in &w.ports {
                let e = if *mode == MtlsMode::Unset {
                    eff.clone()
                } else {
                    Effective {
                        mode: *mode,
                        decided_by: Some(decider(w, Level::Port)),
                    }
                };
                ports.insert(*port, e);
            }
        }
        Composed {
            workload_mode: eff,
            ports,
        }
    }

    /// One row per workload port: container ports, plus port-level ports the containers do not
    /// declare; a workload without ports gets one row for "any port". Sorted by namespace,
    /// workload name, kind, port.
    pub fn table<'w>(&self, workloads: impl IntoIterator<Item = &'w Workload>) -> Vec<Row> {
        let mut rows = Vec::new();
        for w in workloads {
            let c = self.compose(&w.namespace, &w.labels);
            let mut ports: Vec<(Option<u32>, Option<String>)> = w
                .ports
                .iter()
                .map(|p| (Some(p.port), Some(p.path.clone())))
                .collect();
            for p in c.ports.keys() {
                if !w.ports.iter().any(|x| x.port == *p) {
                    ports.push((Some(*p), None));
                }
            }
            if ports.is_empty() {
                ports.push((None, None));
            }
            for (port, path) in ports {
                rows.push(Row {
                    namespace: w.namespace.clone(),
                    kind: w.kind,
                    workload: w.name.clone(),
                    port,
                    path: path.unwrap_or_else(|| w.template_path()),
                    effective: c.at(port).clone(),
                    dataplane: String::new(),
                });
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
        rows
    }
}

fn decider(p: &PeerPolicy, level: Level) -> Decider {
    Decider {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        level,
    }
}

/// One line of the effective-mTLS table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub namespace: String,
    pub kind: Kind,
    pub workload: String,
    /// `None`: the workload declares no port; the mode applies to any port.
    pub port: Option<u32>,
    /// Field path of the port (or of the pod template) in the workload.
    #[serde(skip)]
    pub path: String,
    #[serde(flatten)]
    pub effective: Effective,
    /// Who enforces the mode: `sidecar`, `ztunnel/HBONE` (ambient, compiled by istiod into
    /// ztunnel DENY policies, DISABLE read as PERMISSIVE), `none` or `unknown`; empty when the
    /// table was built without the data-plane model.
    #[serde(rename = "dataPlane", skip_serializing_if = "String::is_empty")]
    pub dataplane: String,
}

impl Row {
    pub(crate) fn port_label(&self) -> String {
        self.port.map_or_else(|| "*".to_owned(), |p| p.to_string())
    }

    pub(crate) fn decided_by_label(&self) -> String {
        match &self.effective.decided_by {
            Some(d) => d.to_string(),
            None => "(no policy: Istio default)".to_owned(),
        }
    }
}

/// Render the table as aligned text. A DATA PLANE column is added when some workload is
/// ztunnel's (an ambient mesh): the same table as before for a sidecar mesh.
pub fn render_table(rows: &[Row]) -> String {
    let planes = rows.iter().any(|r| r.dataplane.starts_with("ztunnel"));
    let header = if planes {
        [
            "NAMESPACE",
            "WORKLOAD",
            "DATA PLANE",
            "PORT",
            "MODE",
            "DECIDED BY",
        ]
        .to_vec()
    } else {
        ["NAMESPACE", "WORKLOAD", "PORT", "MODE", "DECIDED BY"].to_vec()
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.namespace.clone(),
                format!("{}/{}", r.kind.as_str().to_ascii_lowercase(), r.workload),
            ];
            if planes {
                c.push(r.dataplane.clone());
            }
            c.extend([
                r.port_label(),
                r.effective.mode.to_string(),
                r.decided_by_label(),
            ]);
            c
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            widths[i] = widths[i].max(s.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[&str]| {
        let mut s = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i + 1 == cols.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<w$}  ", c, w = widths[i]));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&header);
    for c in &cells {
        let cols: Vec<&str> = c.iter().map(String::as_str).collect();
        line(&cols);
    }
    out
}
