//! Ambient mode as installed: whether ztunnel captures pods at all, and which pods the istio-cni
//! node agent enrolls.
//!
//! Capture is the istio-cni node agent's decision, read from its ConfigMap `istio-cni-config`
//! (istio/istio `manifests/charts/istio-cni/templates/configmap-cni.yaml`): `AMBIENT_ENABLED`,
//! `AMBIENT_ENABLEMENT_SELECTOR` (the chart's `ambient.enablementSelectors`, YAML) and
//! `EXCLUDE_NAMESPACES` (comma-separated, chart default `kube-system`). A pod is enrolled when
//! some selector's `podSelector` matches its labels and its `namespaceSelector` its namespace's
//! labels (`cni/pkg/util/enablement_selector.go`, `Matches`; an empty selector matches
//! everything), unless its namespace is excluded (`cni/pkg/nodeagent/informers.go`). The chart
//! default: a pod labelled `istio.io/dataplane-mode: ambient` anywhere, or any pod not labelled
//! `none` in a namespace labelled `ambient`. Host-network pods and pods with a sidecar are never
//! captured; [`crate::dataplane`] applies those rules.
//!
//! Without ztunnel (its DaemonSet, `app: ztunnel`) and istio-cni (`istio-cni-node`) the labels do
//! nothing. When none of these objects is visible (manifests without them, a cluster meshguard
//! may not list DaemonSets in), Istio's chart defaults are assumed and the mesh context says so,
//! as for injectors.

use super::selector::{Labels, NamespaceLabels, Selector};
use super::{MeshError, Origin, Sourced};
use crate::model::label_selector::LabelSelectorSpec;
use crate::model::labels::DATAPLANE_MODE;
use crate::model::ConfigMap;
use k8s_openapi::api::apps::v1::DaemonSet;
use serde::Deserialize;

/// The istio-cni node agent's ConfigMap.
pub(crate) const CNI_CONFIG_MAP: &str = "istio-cni-config";
/// The istio-cni DaemonSet of Istio's chart.
pub(crate) const CNI_DAEMONSET: &str = "istio-cni-node";
/// ztunnel's DaemonSet (and its pods' `app` label).
pub(crate) const ZTUNNEL: &str = "ztunnel";
/// The chart default of `excludeNamespaces`.
pub(crate) const DEFAULT_EXCLUDED: &[&str] = &["kube-system"];

/// One of the node agent's enablement selectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnablementSelector {
    pub pod: Selector,
    pub namespace: Selector,
}

/// As written in `AMBIENT_ENABLEMENT_SELECTOR`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SelectorText<'a> {
    #[serde(borrow, default)]
    pod_selector: LabelSelectorSpec<'a>,
    #[serde(borrow, default)]
    namespace_selector: LabelSelectorSpec<'a>,
}

/// The chart's default `ambient.enablementSelectors`.
pub(crate) fn default_selectors() -> Vec<EnablementSelector> {
    let none: [&str; 1] = ["none"];
    vec![
        EnablementSelector {
            pod: Selector::build(
                [(DATAPLANE_MODE, "ambient")],
                std::iter::empty::<(&str, &str, &[&str])>(),
            ),
            namespace: Selector::everything(),
        },
        EnablementSelector {
            pod: Selector::build(std::iter::empty(), [(DATAPLANE_MODE, "NotIn", &none[..])]),
            namespace: Selector::build(
                [(DATAPLANE_MODE, "ambient")],
                std::iter::empty::<(&str, &str, &[&str])>(),
            ),
        },
    ]
}

/// What kind of ambient component a DaemonSet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    Ztunnel,
    Cni,
}

/// Whether a DaemonSet is ztunnel's or istio-cni's, by its name or its pods' labels as Istio's
/// charts set them.
pub fn component(ds: &DaemonSet) -> Option<Component> {
    let name = ds.metadata.name.as_deref().unwrap_or_default();
    let pod_labels = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let label = |k: &str| pod_labels.and_then(|l| l.get(k)).map(String::as_str);
    if name == ZTUNNEL || label("app") == Some(ZTUNNEL) {
        return Some(Component::Ztunnel);
    }
    if name == CNI_DAEMONSET || label("k8s-app") == Some(CNI_DAEMONSET) {
        return Some(Component::Cni);
    }
    None
}

/// Whether a pod is captured, and why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// The node agent enrolls it: ztunnel handles its traffic.
    Captured,
    /// Ambient is not installed (or `AMBIENT_ENABLED` is false): labels capture nothing.
    Off,
    /// Its namespace is in `excludeNamespaces`.
    Excluded,
    /// No enablement selector matches the pod and its namespace.
    NotSelected,
}

/// Ambient mode as installed: a snapshot built with the mesh context.
#[derive(Clone, Debug)]
pub struct AmbientInstall {
    /// Ambient capture is in place.
    pub enabled: Sourced<bool>,
    pub(crate) exclude_namespaces: Sourced<Vec<String>>,
    pub selectors: Sourced<Vec<EnablementSelector>>,
    /// ztunnel DaemonSets seen, as `namespace/name`.
    pub ztunnel: Vec<String>,
    /// istio-cni DaemonSets seen, as `namespace/name`.
    pub cni: Vec<String>,
    /// No ztunnel, istio-cni DaemonSet or istio-cni ConfigMap is visible: Istio's chart defaults
    /// are assumed.
    pub assumed: bool,
}

impl Default for AmbientInstall {
    fn default() -> Self {
        AmbientInstall::build(&[], &[], &mut Vec::new(), &mut Vec::new())
    }
}

impl AmbientInstall {
    /// From the ambient DaemonSets and istio-cni ConfigMaps seen (`(namespace, name, component)`).
    pub(crate) fn build(
        daemonsets: &[(String, String, Component)],
        cni_maps: &[ConfigMap<'_>],
        errors: &mut Vec<MeshError>,
        notes: &mut Vec<String>,
    ) -> AmbientInstall {
        let named = |c: Component| -> Vec<String> {
            daemonsets
                .iter()
                .filter(|d| d.2 == c)
                .map(|(ns, n, _)| format!("{ns}/{n}"))
                .collect()
        };
        let ztunnel = named(Component::Ztunnel);
        let cni = named(Component::Cni);
        let map = cni_maps.first();
        if cni_maps.len() > 1 {
            notes.push(format!(
                "{} istio-cni ConfigMaps are visible; meshguard reads the first ({})",
                cni_maps.len(),
                origin_of(cni_maps[0].namespace(), CNI_CONFIG_MAP)
            ));
        }
        let data = |k: &str| -> Option<&str> { map.and_then(|m| m.get(k)) };
        let map_origin = map.map(|m| origin_of(m.namespace(), CNI_CONFIG_MAP));
        let assumed = ztunnel.is_empty() && cni.is_empty() && map.is_none();

        let enabled = if assumed {
            Sourced::new(true, Origin::Default)
        } else if let (Some(v), Some(o)) = (data("AMBIENT_ENABLED"), &map_origin) {
            let on = go_bool(v);
            if !on {
                notes.push(format!(
                    "{o} sets AMBIENT_ENABLED={v}: the istio-cni node agent captures no pod, so istio.io/dataplane-mode labels do nothing"
                ));
            } else if ztunnel.is_empty() {
                notes.push(
                    "istio-cni runs with ambient enabled, but no ztunnel DaemonSet is visible: captured pods would have no node proxy".to_owned(),
                );
            }
            Sourced::new(on && !ztunnel.is_empty(), o.clone())
        } else if let Some(z) = ztunnel.first() {
            if cni.is_empty() && map.is_none() {
                notes.push(format!(
                    "ztunnel runs ({z}) but istio-cni is not visible: without its node agent no pod is captured, so istio.io/dataplane-mode labels do nothing"
                ));
                Sourced::new(false, daemonset_origin(z))
            } else {
                Sourced::new(true, daemonset_origin(z))
            }
        } else {
            notes.push(format!(
                "istio-cni runs ({}) but no ztunnel DaemonSet is visible: ambient labels capture nothing",
                cni.first().cloned().unwrap_or_default()
            ));
            Sourced::new(
                false,
                cni.first().map_or(Origin::Default, |c| daemonset_origin(c)),
            )
        };

        let exclude_namespaces = match (data("EXCLUDE_NAMESPACES"), &map_origin) {
            (Some(v), Some(o)) => Sourced::new(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                o.clone(),
            ),
            _ => Sourced::new(
                DEFAULT_EXCLUDED.iter().map(|s| (*s).to_owned()).collect(),
                Origin::Default,
            ),
        };

        let selectors = match (data("AMBIENT_ENABLEMENT_SELECTOR"), &map_origin) {
            (Some(text), Some(o)) if !text.trim().is_empty() => match parse_selectors(text) {
                Ok(s) => Sourced::new(s, o.clone()),
                Err(message) => {
                    errors.push(MeshError::Yaml {
                        origin: o.to_string(),
                        key: "AMBIENT_ENABLEMENT_SELECTOR".to_owned(),
                        message,
                    });
                    Sourced::new(default_selectors(), Origin::Default)
                }
            },
            _ => Sourced::new(default_selectors(), Origin::Default),
        };

        AmbientInstall {
            enabled,
            exclude_namespaces,
            selectors,
            ztunnel,
            cni,
            assumed,
        }
    }

    /// Whether the node agent captures a pod with these labels in this namespace (host network
    /// and sidecars aside, which [`crate::dataplane`] decides first). Allocation-free.
    pub fn captures<N, P>(&self, namespace: &str, ns_labels: &N, pod_labels: &P) -> Capture
    where
        N: Labels + ?Sized,
        P: Labels + ?Sized,
    {
        if !self.enabled.value {
            return Capture::Off;
        }
        if self.exclude_namespaces.value.iter().any(|n| n == namespace) {
            return Capture::Excluded;
        }
        let ns = NamespaceLabels {
            name: namespace,
            labels: ns_labels,
        };
        if self
            .selectors
            .value
            .iter()
            .any(|s| s.pod.matches(pod_labels) && s.namespace.matches(&ns))
        {
            Capture::Captured
        } else {
            Capture::NotSelected
        }
    }

    /// The chart's default enablement selectors are in force.
    pub(crate) fn default_selectors(&self) -> bool {
        self.selectors.origin == Origin::Default
    }

    /// One line for the mesh context's text header.
    pub fn describe(&self) -> String {
        if self.assumed {
            return "ambient: no ztunnel or istio-cni visible; verdicts assume Istio's ambient defaults (pods labelled istio.io/dataplane-mode=ambient, or in a namespace so labelled, are captured by ztunnel; excludeNamespaces kube-system)".to_owned();
        }
        let mut s = format!(
            "ambient: {} ({})",
            if self.enabled.value {
                "capture on"
            } else {
                "capture off"
            },
            self.enabled.origin
        );
        if !self.ztunnel.is_empty() {
            s.push_str(&format!(", ztunnel {}", self.ztunnel.join(", ")));
        }
        if !self.cni.is_empty() {
            s.push_str(&format!(", istio-cni {}", self.cni.join(", ")));
        }
        s.push_str(&format!(
            ", excludeNamespaces {} ({})",
            if self.exclude_namespaces.value.is_empty() {
                "none".to_owned()
            } else {
                self.exclude_namespaces.value.join(", ")
            },
            self.exclude_namespaces.origin
        ));
        if self.default_selectors() {
            s.push_str(", enablement selectors: chart defaults");
        } else {
            let list: Vec<String> = self
                .selectors
                .value
                .iter()
                .map(|e| format!("pods {} in namespaces {}", e.pod, e.namespace))
                .collect();
            s.push_str(&format!(
                ", enablement selectors: {} ({})",
                list.join("; "),
                self.selectors.origin
            ));
        }
        s
    }
}

fn origin_of(namespace: Option<&str>, name: &str) -> Origin {
    Origin::ConfigMap {
        namespace: namespace.unwrap_or_default().to_owned(),
        name: name.to_owned(),
    }
}

fn daemonset_origin(ns_name: &str) -> Origin {
    let (namespace, name) = ns_name.split_once('/').unwrap_or(("", ns_name));
    Origin::DaemonSet {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// A boolean as Go's `strconv.ParseBool` reads it.
fn go_bool(v: &str) -> bool {
    matches!(v.trim(), "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// `AMBIENT_ENABLEMENT_SELECTOR`: a YAML list of `{podSelector, namespaceSelector}`.
fn parse_selectors(text: &str) -> Result<Vec<EnablementSelector>, String> {
    let list: Vec<SelectorText<'_>> = serde_saphyr::from_str(text).map_err(|e| {
        e.to_string()
            .lines()
            .next()
            .unwrap_or("invalid YAML")
            .to_owned()
    })?;
    Ok(list
        .iter()
        .map(|s| EnablementSelector {
            pod: s.pod_selector.compile(),
            namespace: s.namespace_selector.compile(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn cni_map(data: serde_json::Value) -> ConfigMap<'static> {
        let k8s: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": CNI_CONFIG_MAP, "namespace": "istio-system"}, "data": data}),
        )
        .expect("configmap");
        ConfigMap::from_k8s(&k8s).into_owned()
    }

    #[test]
    fn chart_defaults_capture_as_documented() {
        let a = AmbientInstall::default();
        assert!(a.assumed && a.enabled.value);
        let amb = labels(&[(DATAPLANE_MODE, "ambient")]);
        let none = labels(&[(DATAPLANE_MODE, "none")]);
        let plain = labels(&[]);
        // A namespace labelled ambient captures its pods unless they say none.
        assert_eq!(a.captures("shop", &amb, &plain), Capture::Captured);
        assert_eq!(a.captures("shop", &amb, &none), Capture::NotSelected);
        // Any other pod value (even "sidecar") does not opt out.
        let other = labels(&[(DATAPLANE_MODE, "sidecar")]);
        assert_eq!(a.captures("shop", &amb, &other), Capture::Captured);
        // A pod labelled ambient is captured in any namespace.
        assert_eq!(a.captures("plain", &plain, &amb), Capture::Captured);
        assert_eq!(a.captures("plain", &plain, &plain), Capture::NotSelected);
        // excludeNamespaces wins over the labels.
        assert_eq!(a.captures("kube-system", &amb, &amb), Capture::Excluded);
        assert!(a.describe().contains("assume Istio's ambient defaults"));
    }

    #[test]
    fn the_node_agent_configuration_is_read() {
        let mut errors = Vec::new();
        let mut notes = Vec::new();
        let ds = vec![
            (
                "istio-system".to_owned(),
                "ztunnel".to_owned(),
                Component::Ztunnel,
            ),
            (
                "istio-system".to_owned(),
                "istio-cni-node".to_owned(),
                Component::Cni,
            ),
        ];
        let map = cni_map(json!({
            "AMBIENT_ENABLED": "true",
            "EXCLUDE_NAMESPACES": "kube-system, legacy",
            "AMBIENT_ENABLEMENT_SELECTOR": "- podSelector:\n    matchLabels: {mesh: ambient}\n"
        }));
        let a = AmbientInstall::build(&ds, &[map], &mut errors, &mut notes);
        assert!(
            errors.is_empty() && notes.is_empty(),
            "{errors:?} {notes:?}"
        );
        assert!(!a.assumed && a.enabled.value);
        assert_eq!(a.exclude_namespaces.value, ["kube-system", "legacy"]);
        let amb_ns = labels(&[(DATAPLANE_MODE, "ambient")]);
        // Only the configured selector counts now.
        assert_eq!(
            a.captures("shop", &amb_ns, &labels(&[])),
            Capture::NotSelected
        );
        assert_eq!(
            a.captures("shop", &labels(&[]), &labels(&[("mesh", "ambient")])),
            Capture::Captured
        );
        assert_eq!(
            a.captures("legacy", &labels(&[]), &labels(&[("mesh", "ambient")])),
            Capture::Excluded
        );
        assert!(
            a.describe().contains(
                "excludeNamespaces kube-system, legacy (ConfigMap istio-system/istio-cni-config)"
            ),
            "{}",
            a.describe()
        );

        // AMBIENT_ENABLED=false turns capture off; ztunnel without istio-cni captures nothing.
        let off = AmbientInstall::build(
            &ds,
            &[cni_map(json!({"AMBIENT_ENABLED": "false"}))],
            &mut errors,
            &mut notes,
        );
        assert!(!off.enabled.value);
        assert_eq!(off.captures("shop", &amb_ns, &labels(&[])), Capture::Off);
        let mut notes = Vec::new();
        let lone = AmbientInstall::build(&ds[..1], &[], &mut errors, &mut notes);
        assert!(!lone.enabled.value && !lone.assumed);
        assert!(notes[0].contains("istio-cni is not visible"), "{notes:?}");
        // A broken selector is an error and the defaults stay.
        let bad = AmbientInstall::build(
            &ds,
            &[cni_map(
                json!({"AMBIENT_ENABLEMENT_SELECTOR": "- podSelector: [1"}),
            )],
            &mut errors,
            &mut Vec::new(),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(bad.default_selectors());
    }

    #[test]
    fn daemonsets_are_recognised_as_the_charts_name_them() {
        let ds = |name: &str, pod: serde_json::Value| -> DaemonSet {
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "istio-system"},
                "spec": {"selector": {}, "template": {"metadata": {"labels": pod}}}}),
            )
            .expect("ds")
        };
        assert_eq!(
            component(&ds("ztunnel", json!({}))),
            Some(Component::Ztunnel)
        );
        assert_eq!(
            component(&ds("zt-canary", json!({"app": "ztunnel"}))),
            Some(Component::Ztunnel)
        );
        assert_eq!(
            component(&ds("istio-cni-node", json!({}))),
            Some(Component::Cni)
        );
        assert_eq!(component(&ds("fluentd", json!({"app": "fluentd"}))), None);
    }
}
