//! The pod template of every workload kind, found once: Pods are their own template, the
//! controllers carry one at `spec.template`, CronJobs at `spec.jobTemplate.spec.template`
//! ([`Kind::pod_template_path`]). Rules and mutations read labels, annotations and the pod spec
//! through [`PodTemplate`] and build field paths and JSON pointers from its prefix, so a finding
//! or a patch points at the right place for each kind. Nothing here does I/O.

use crate::json::quoted_key;
use crate::resource::{Kind, Review};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DynamicObject;
use serde::Deserialize;
use serde_json::Value;

/// Label and annotation that turn sidecar injection on or off for one pod.
pub const INJECT: &str = "sidecar.istio.io/inject";
/// Pod label that selects an injector revision (also an opt-in on its own).
pub const REV: &str = "istio.io/rev";
/// Name of the injected proxy container.
pub const PROXY_CONTAINER: &str = "istio-proxy";
/// The sidecar's UID; iptables lets traffic of this UID skip the proxy.
pub const PROXY_UID: i64 = 1337;
/// The sidecar's GID; iptables lets traffic of this GID skip the proxy too (istio-iptables
/// `--gid-owner`).
pub const PROXY_GID: i64 = 1337;
/// The init container that installs the pod's iptables capture (istio/istio
/// `pkg/kube/inject/inject.go`, `InitContainerName`).
pub const INIT_CONTAINER: &str = "istio-init";
/// The init container that checks the capture when the Istio CNI plugin installs it
/// (`ValidationContainerName`).
pub const VALIDATION_CONTAINER: &str = "istio-validation";
/// The annotation Istio's injector writes on every pod it injected, naming the containers and
/// init containers it added (`sidecar.istio.io/status`, istio/istio `pkg/kube/inject/webhook.go`
/// `getInjectionStatus`).
pub const STATUS_ANNOTATION: &str = "sidecar.istio.io/status";

/// Where the template's metadata lives: a Pod's typed metadata, or a JSON object in a template.
#[derive(Clone, Copy, Debug)]
enum Meta<'a> {
    Typed(&'a ObjectMeta),
    Raw(Option<&'a Value>),
}

/// One pod template, with the path prefix it sits at.
#[derive(Clone, Copy, Debug)]
pub struct PodTemplate<'a> {
    pub kind: Kind,
    prefix: &'static [&'static str],
    meta: Meta<'a>,
    /// The pod spec (`spec` of the template), JSON null when absent.
    pub spec: &'a Value,
}

static NULL: Value = Value::Null;

/// One container of the pod spec, with the list it is in and its index.
#[derive(Clone, Copy, Debug)]
pub struct Container<'a> {
    /// `containers`, `initContainers` or `ephemeralContainers`.
    pub list: &'static str,
    pub index: usize,
    pub value: &'a Value,
}

impl<'a> Container<'a> {
    pub fn name(&self) -> &'a str {
        self.value.get("name").and_then(Value::as_str).unwrap_or("")
    }
    /// The entries of `ports`, with their indexes.
    pub fn ports(&self) -> impl Iterator<Item = (usize, &'a Value)> + 'a {
        crate::json::items(self.value, "ports").iter().enumerate()
    }
    /// An init container with `restartPolicy: Always` (a native sidecar).
    pub fn is_native_sidecar(&self) -> bool {
        self.list == "initContainers"
            && self.value.get("restartPolicy").and_then(Value::as_str) == Some("Always")
    }
    /// `image`, when it is a string.
    pub fn image(&self) -> Option<&'a str> {
        self.value.get("image").and_then(Value::as_str)
    }
    /// `securityContext.<field>` of this container.
    pub fn security(&self, field: &str) -> Option<&'a Value> {
        self.value.get("securityContext")?.get(field)
    }
    /// `spec.<list>[<index>]` below the template (see [`PodTemplate::path`]).
    pub fn rest(&self, field: &str) -> String {
        if field.is_empty() {
            format!("spec.{}[{}]", self.list, self.index)
        } else {
            format!("spec.{}[{}].{field}", self.list, self.index)
        }
    }
}

/// What Istio's injector recorded on a pod it injected ([`STATUS_ANNOTATION`]): the names of the
/// containers and init containers it added, borrowed from the annotation (container names need
/// no JSON escapes; an annotation that has them does not read, and lists nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InjectionStatus<'a> {
    #[serde(default, borrow, deserialize_with = "names")]
    pub containers: Vec<&'a str>,
    #[serde(default, borrow, deserialize_with = "names")]
    pub init_containers: Vec<&'a str>,
}

/// A list of names that may be JSON `null` (`"containers":null` for native sidecars).
fn names<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<&'a str>, D::Error> {
    Ok(Option::<Vec<&'a str>>::deserialize(d)?.unwrap_or_default())
}

impl InjectionStatus<'_> {
    /// Whether the injector lists `name` in `list` (`containers` or `initContainers`).
    pub fn lists(&self, list: &str, name: &str) -> bool {
        let names = match list {
            "containers" => &self.containers,
            "initContainers" => &self.init_containers,
            _ => return false,
        };
        names.contains(&name)
    }
}

impl<'a> PodTemplate<'a> {
    /// The template of `obj` when `kind` is a workload kind.
    pub fn of(kind: Kind, obj: &'a DynamicObject) -> Option<PodTemplate<'a>> {
        let prefix = kind.pod_template_path()?;
        if prefix.is_empty() {
            return Some(PodTemplate {
                kind,
                prefix,
                meta: Meta::Typed(&obj.metadata),
                spec: obj.data.get("spec").unwrap_or(&NULL),
            });
        }
        let template = crate::json::get_path(&obj.data, prefix);
        Some(PodTemplate {
            kind,
            prefix,
            meta: Meta::Raw(template.and_then(|t| t.get("metadata"))),
            spec: template.and_then(|t| t.get("spec")).unwrap_or(&NULL),
        })
    }

    /// The template of the object being written (CREATE/UPDATE).
    pub fn written(review: &Review<'a>) -> Option<PodTemplate<'a>> {
        PodTemplate::of(review.kind, review.written()?)
    }

    /// True for a Pod (the object is its own template).
    pub fn is_pod(&self) -> bool {
        self.prefix.is_empty()
    }

    /// Object keys from the root to the template (empty for a Pod).
    pub fn prefix(&self) -> &'static [&'static str] {
        self.prefix
    }

    pub fn label(&self, key: &str) -> Option<&'a str> {
        match self.meta {
            Meta::Typed(m) => m.labels.as_ref()?.get(key).map(String::as_str),
            Meta::Raw(m) => m?.get("labels")?.get(key)?.as_str(),
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        match self.meta {
            Meta::Typed(m) => m.annotations.as_ref()?.get(key).map(String::as_str),
            Meta::Raw(m) => m?.get("annotations")?.get(key)?.as_str(),
        }
    }

    /// All labels, as an owned map (string values only).
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        match self.meta {
            Meta::Typed(m) => m.labels.clone().unwrap_or_default(),
            Meta::Raw(m) => {
                crate::json::string_map(m.and_then(|m| m.get("labels")).unwrap_or(&NULL))
            }
        }
    }

    /// All annotations, in key order.
    pub fn annotations(&self) -> Vec<(&'a str, &'a str)> {
        match self.meta {
            Meta::Typed(m) => m
                .annotations
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            Meta::Raw(m) => m
                .and_then(|m| m.get("annotations"))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect(),
        }
    }

    /// User-facing path of a field below the template: `path("spec.hostNetwork")` is
    /// `spec.template.spec.hostNetwork` on a Deployment and `spec.hostNetwork` on a Pod.
    pub fn path(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_owned()
        } else {
            format!("{}.{rest}", self.prefix.join("."))
        }
    }

    /// `metadata.labels["key"]` below the template.
    pub fn label_path(&self, key: &str) -> String {
        self.path(&format!("metadata.labels{}", quoted_key(key)))
    }

    /// `metadata.annotations["key"]` below the template.
    pub fn annotation_path(&self, key: &str) -> String {
        self.path(&format!("metadata.annotations{}", quoted_key(key)))
    }

    /// Object keys from the root to a field below the template (for JSON pointers).
    pub fn keys<'k>(&self, rest: &[&'k str]) -> Vec<&'k str> {
        self.prefix
            .iter()
            .copied()
            .chain(rest.iter().copied())
            .collect()
    }

    /// `containers` then `initContainers` (Istio's own proxy lookup order), then
    /// `ephemeralContainers` (added to running pods, e.g. by `kubectl debug`; never the proxy).
    pub fn containers(&self) -> impl Iterator<Item = Container<'a>> + 'a {
        let spec = self.spec;
        ["containers", "initContainers", "ephemeralContainers"]
            .into_iter()
            .flat_map(move |list| {
                spec.get(list)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(move |(index, value)| Container { list, index, value })
            })
    }

    /// The pod runs `istio-proxy` as a sidecar: a regular container, or a native sidecar
    /// (an init container with `restartPolicy: Always`).
    pub fn has_proxy(&self) -> bool {
        self.containers().any(|c| {
            c.name() == PROXY_CONTAINER && (c.list == "containers" || c.is_native_sidecar())
        })
    }

    /// The injector's record of what it added (`sidecar.istio.io/status`), when the annotation is
    /// there and reads as Istio writes it.
    pub fn injection_status(&self) -> Option<InjectionStatus<'a>> {
        serde_json::from_str(self.annotation(STATUS_ANNOTATION)?).ok()
    }

    /// The template's labels as a label set for selectors ([`crate::mesh::Labels`]), without
    /// copying them.
    pub fn label_view(&self) -> TemplateMeta<'_, 'a> {
        TemplateMeta {
            template: self,
            annotations: false,
        }
    }

    /// The template's annotations, likewise.
    pub fn annotation_view(&self) -> TemplateMeta<'_, 'a> {
        TemplateMeta {
            template: self,
            annotations: true,
        }
    }

    /// `spec.hostNetwork: true`.
    pub fn host_network(&self) -> bool {
        self.spec.get("hostNetwork").and_then(Value::as_bool) == Some(true)
    }

    /// The ServiceAccount the pod runs as, when one is named: `serviceAccountName`, else the
    /// deprecated `serviceAccount`, with the field it came from.
    pub fn service_account(&self) -> Option<(&'static str, &'a str)> {
        ["serviceAccountName", "serviceAccount"]
            .into_iter()
            .find_map(|f| {
                let v = self.spec.get(f).and_then(Value::as_str)?;
                (!v.is_empty()).then_some((f, v))
            })
    }

    /// The ServiceAccount name this workload should use, derived from its
    /// `app.kubernetes.io/name` label, else its `app` label, when that is a valid object name.
    pub fn service_account_candidate(&self) -> Option<(&'static str, &'a str)> {
        ["app.kubernetes.io/name", "app"].into_iter().find_map(|k| {
            let v = self.label(k)?;
            is_dns_subdomain(v).then_some((k, v))
        })
    }

    /// The effective value of `sidecar.istio.io/inject`: the label wins over the (deprecated)
    /// annotation, which counts only when the label is absent. Returns the value and the path
    /// it was read from.
    pub fn inject_setting(&self) -> Option<(String, &'a str)> {
        if let Some(v) = self.label(INJECT) {
            return Some((self.label_path(INJECT), v));
        }
        self.annotation(INJECT)
            .map(|v| (self.annotation_path(INJECT), v))
    }

    /// Injection is explicitly turned off for this pod. Istio's injector treats `y`, `yes`,
    /// `true` and `on` (any case) as on, an empty value as "use the default", and any other
    /// value as off.
    pub fn injection_disabled(&self) -> bool {
        self.inject_setting()
            .is_some_and(|(_, v)| value_disables(v))
    }

    /// The pod asks for injection itself, whatever its namespace says: the label
    /// `sidecar.istio.io/inject=true` or an `istio.io/rev` label (the injector's object selectors).
    pub fn opts_in(&self) -> bool {
        if self.injection_disabled() {
            return false;
        }
        self.label(INJECT).is_some_and(value_enables)
            || self.label(REV).is_some_and(|r| !r.is_empty())
    }
}

/// A pod template's labels (or annotations) read in place, for label selectors.
#[derive(Clone, Copy, Debug)]
pub struct TemplateMeta<'t, 'a> {
    template: &'t PodTemplate<'a>,
    annotations: bool,
}

impl crate::mesh::Labels for TemplateMeta<'_, '_> {
    fn label(&self, key: &str) -> Option<&str> {
        if self.annotations {
            self.template.annotation(key)
        } else {
            self.template.label(key)
        }
    }
}

/// `sidecar.istio.io/inject` value that turns injection on.
pub fn value_enables(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "y" | "yes" | "true" | "on")
}

/// `sidecar.istio.io/inject` value that turns injection off (anything but on or empty).
pub fn value_disables(v: &str) -> bool {
    !v.is_empty() && !value_enables(v)
}

/// RFC 1123 subdomain, the syntax of a ServiceAccount name.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 63
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn o(v: Value) -> DynamicObject {
        serde_json::from_value(v).expect("object")
    }

    #[test]
    fn finds_the_template_of_every_kind() {
        let tmpl = json!({"metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                          "spec": {"hostNetwork": true, "containers": [{"name": "c"}]}});
        for kind in Kind::WORKLOADS {
            let obj = match kind {
                Kind::Pod => o(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "labels": {"app": "web"}, "annotations": {"a": "b"}},
                    "spec": tmpl["spec"].clone()})),
                Kind::CronJob => o(json!({"apiVersion": "batch/v1", "kind": "CronJob",
                    "metadata": {"name": "c"},
                    "spec": {"jobTemplate": {"spec": {"template": tmpl.clone()}}}})),
                _ => o(json!({"apiVersion": "apps/v1", "kind": kind.as_str(),
                    "metadata": {"name": "d"}, "spec": {"template": tmpl.clone()}})),
            };
            let t = PodTemplate::of(*kind, &obj).expect("template");
            assert_eq!(t.label("app"), Some("web"), "{kind}");
            assert_eq!(t.annotation("a"), Some("b"), "{kind}");
            assert!(t.host_network(), "{kind}");
            assert_eq!(t.containers().count(), 1);
            let expected = match kind {
                Kind::Pod => "spec.hostNetwork",
                Kind::CronJob => "spec.jobTemplate.spec.template.spec.hostNetwork",
                _ => "spec.template.spec.hostNetwork",
            };
            assert_eq!(t.path("spec.hostNetwork"), expected);
        }
        assert!(PodTemplate::of(
            Kind::Service,
            &o(json!({"apiVersion": "v1", "kind": "Service", "metadata": {}}))
        )
        .is_none());
    }

    #[test]
    fn label_beats_annotation() {
        let pod = |labels: Value, annotations: Value| {
            o(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "labels": labels, "annotations": annotations}}))
        };
        let p = pod(json!({INJECT: "true"}), json!({INJECT: "false"}));
        let t = PodTemplate::of(Kind::Pod, &p).expect("t");
        assert!(!t.injection_disabled());
        assert!(t.opts_in());
        let p = pod(json!({}), json!({INJECT: "false"}));
        let t = PodTemplate::of(Kind::Pod, &p).expect("t");
        assert!(t.injection_disabled());
        assert_eq!(
            t.inject_setting().map(|s| s.0),
            Some("metadata.annotations[\"sidecar.istio.io/inject\"]".to_owned())
        );
        let p = pod(json!({INJECT: "off"}), json!({}));
        assert!(PodTemplate::of(Kind::Pod, &p)
            .expect("t")
            .injection_disabled());
        let p = pod(json!({REV: "canary"}), json!({}));
        assert!(PodTemplate::of(Kind::Pod, &p).expect("t").opts_in());
    }

    #[test]
    fn proxy_in_containers_or_native_sidecar_only() {
        let pod = |spec: Value| {
            o(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": spec}))
        };
        let has = |spec: Value| {
            PodTemplate::of(Kind::Pod, &pod(spec))
                .expect("t")
                .has_proxy()
        };
        assert!(has(
            json!({"containers": [{"name": "app"}, {"name": "istio-proxy"}]})
        ));
        assert!(has(json!({"containers": [{"name": "app"}],
            "initContainers": [{"name": "istio-proxy", "restartPolicy": "Always"}]})));
        assert!(!has(json!({"containers": [{"name": "app"}],
            "initContainers": [{"name": "istio-proxy"}]})));
        assert!(!has(json!({"containers": [{"name": "app"}]})));
    }

    #[test]
    fn service_account_names() {
        assert!(is_dns_subdomain("frontend"));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("Frontend"));
        assert!(!is_dns_subdomain("a_b"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(""));
    }
}
