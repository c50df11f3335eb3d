//! Istio's sidecar injectors as installed: their MutatingWebhookConfigurations (who kube-apiserver
//! sends a pod to) and their ConfigMaps (what the injector then decides, and which proxy image it
//! puts in).
//!
//! * **Webhooks.** A MutatingWebhookConfiguration is an Istio injector when it carries the labels
//!   `istioctl tag` works with (istio/istio `istioctl/pkg/tag/util.go`): `istio.io/tag` (a revision
//!   tag, `istio-revision-tag-<tag>`, whose `istio.io/rev` names the revision it points to),
//!   `istio.io/rev` (a revision's own injector, `istio-sidecar-injector[-<rev>]`), or
//!   `app: sidecar-injector`; or, unlabelled, when one of its webhooks is named
//!   `…sidecar-injector.istio.io` (the suffix `istioctl x check-inject` and the `webhook` analyzer
//!   look for). The chart's webhooks are in
//!   `manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml` and
//!   `revision-tags-mwc.yaml`.
//! * **Injector ConfigMap** `istio-sidecar-injector[-<rev>]` in the Istio namespace: key `config`
//!   (YAML, `pkg/kube/inject/inject.go` `Config`: `policy`, `neverInjectSelector`,
//!   `alwaysInjectSelector`, `defaultTemplates`, `templates`) and key `values` (JSON, the Helm
//!   values the templates read: `global.hub`, `global.tag`, `global.proxy.image`, `global.variant`,
//!   `sidecarInjectorWebhook.enableNamespacesByDefault`, `revision`), each decoded once by the
//!   typed model ([`crate::model::injector_config`]).
//! * **`injectRequired`** (`pkg/kube/inject/inject.go`) decides for a pod that reached the injector,
//!   in this order: hostNetwork → no; namespace in `IgnoredNamespaces` (kube-system, kube-public,
//!   kube-node-lease, local-path-storage; `pkg/kube/inject/initializer.go`) → no; the pod label
//!   `sidecar.istio.io/inject`, else the annotation of that name: `"true"` → yes, `"false"` → no,
//!   anything else falls through (Istio 1.27 and later; before 1.27 `y`, `yes`, `true`, `on` in any
//!   case meant yes, empty fell through, and anything else meant no); a match of a non-empty
//!   `neverInjectSelector` → no; of a non-empty `alwaysInjectSelector` → yes; else `policy`
//!   (`enabled` → yes, `disabled` → no, anything else, including absent → no).
//! * **Proxy image** (`files/injection-template.yaml` and `ProxyImage` / `imageURL` in
//!   `pkg/kube/inject/inject.go`): the pod annotation `sidecar.istio.io/proxyImage`, else
//!   `global.proxy.image`, used as is when it contains a `/`; otherwise
//!   `<global.hub>/<global.proxy.image or proxyv2>:<global.tag>` with the image type appended to the
//!   tag (`-distroless`, `-debug`; `default` appends nothing, and a known suffix already on the tag
//!   is replaced). The image type is the ProxyConfig's `image.imageType` (MeshConfig
//!   `defaultConfig`, overridden by the pod annotation `proxy.istio.io/config`), else
//!   `global.variant`, and the annotation `sidecar.istio.io/proxyImageType` overrides both.
//!   ProxyConfig custom resources can also set the image type; they are not read here.

use super::selector::{Labels, Selector};
use super::{MeshError, Origin};
use crate::model::injector_config::{InjectionConfig, InjectionValues};
use crate::model::labels::PodSetting;
use crate::model::labels::{
    PROXY_CONFIG, PROXY_IMAGE as PROXY_IMAGE_ANNOTATION,
    PROXY_IMAGE_TYPE as PROXY_IMAGE_TYPE_ANNOTATION,
};
use crate::model::mesh_config::ProxyConfig;
use crate::model::mutating_webhook_configuration::MutatingWebhook;
use crate::model::{ConfigMap, MutatingWebhookConfiguration};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// The step that decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// No injector webhook's selectors (and rules) select the pod: kube-apiserver never calls an
    /// injector.
    NotSelected,
    /// `spec.hostNetwork: true`: never injected.
    HostNetwork,
    /// The namespace is one the injector ignores (kube-system, kube-public, kube-node-lease,
    /// local-path-storage).
    IgnoredNamespace,
    /// The pod's `sidecar.istio.io/inject` label (else annotation) decided.
    PodSetting,
    /// The injector's `neverInjectSelector[i]` matched the pod's labels.
    NeverInjectSelector(usize),
    /// The injector's `alwaysInjectSelector[i]` matched the pod's labels.
    AlwaysInjectSelector(usize),
    /// The injector's `policy` decided.
    Policy,
    /// Assumed default injector: the namespace's injection label enrols it.
    NamespaceLabel,
    /// Assumed default injector: `istio-injection` with a value other than `enabled`.
    NamespaceOff,
    /// Assumed default injector: the pod's own label opts it in.
    PodOptIn,
    /// Assumed default injector: neither the namespace nor the pod asks for injection.
    NotEnrolled,
    /// Assumed default injector whose ConfigMap `values` set
    /// `sidecarInjectorWebhook.enableNamespacesByDefault`: an unlabelled namespace's plain pods
    /// are injected (the chart's `auto.*` webhook).
    EnabledByDefault,
}

/// The injection label keys, under the names the injector code uses (defined once, in
/// [`crate::model::labels`]).
pub use crate::model::labels::{
    INJECT, ISTIO_INJECTION as INJECTION_LABEL, REV as REV_LABEL, TAG as TAG_LABEL,
};
/// The revision name of Istio's default (unrevisioned) install.
pub const DEFAULT_REVISION: &str = "default";
/// Namespaces Istio's injector never injects (`inject.IgnoredNamespaces`).
pub const IGNORED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];
/// The name of the injector ConfigMap of the default revision.
pub(crate) const INJECTOR_CONFIG_MAP: &str = "istio-sidecar-injector";

/// `failurePolicy` of a webhook (`Fail` when unset, the v1 default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

/// One webhook of an Istio injector MutatingWebhookConfiguration.
#[derive(Clone, Debug)]
pub struct InjectorWebhook {
    /// The MutatingWebhookConfiguration's name.
    pub configuration: String,
    /// The webhook's name, e.g. `rev.namespace.sidecar-injector.istio.io`.
    pub name: String,
    /// The revision that injects: the configuration's `istio.io/rev` label (`default` when absent).
    pub revision: String,
    /// The revision tag, for a tag's configuration (`istio.io/tag`).
    pub tag: Option<String>,
    /// `namespaceSelector` (null means everything, as the API server defaults it).
    pub(crate) namespace_selector: Selector,
    /// `objectSelector` (null means everything).
    pub(crate) object_selector: Selector,
    /// Whether its `rules` send a Pod CREATE to it at all.
    pub(crate) covers_pod_create: bool,
    pub failure_policy: FailurePolicy,
    /// `matchConditions` (CEL) count: they can narrow the match further, and are not evaluated here.
    pub(crate) match_conditions: usize,
    /// `clientConfig.service` as (namespace, name), when the webhook calls a Service.
    pub service: Option<(String, String)>,
    /// Index of the injector configuration used for this webhook's revision.
    pub(crate) injector: usize,
}

impl InjectorWebhook {
    /// The name a namespace or pod uses to ask for this injector: the tag, else the revision.
    pub fn served_name(&self) -> &str {
        self.tag.as_deref().unwrap_or(&self.revision)
    }

    /// Whether kube-apiserver sends a Pod CREATE with these labels to this webhook
    /// (`rules` aside, which [`InjectorWebhook::covers_pod_create`] says).
    pub fn selects<N: Labels + ?Sized, P: Labels + ?Sized>(&self, ns: &N, pod: &P) -> bool {
        self.namespace_selector.matches(ns) && self.object_selector.matches(pod)
    }
}

impl fmt::Display for InjectorWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "webhook {:?} of MutatingWebhookConfiguration {:?} (",
            self.name, self.configuration
        )?;
        match &self.tag {
            Some(tag) => write!(f, "tag {tag} → revision {})", self.revision),
            None => write!(f, "revision {})", self.revision),
        }
    }
}

/// What a MutatingWebhookConfiguration is, for Istio.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InjectorIdentity {
    pub(crate) revision: String,
    pub(crate) tag: Option<String>,
}

/// Whether a MutatingWebhookConfiguration (as k8s-openapi decodes it, from a watch) is an Istio
/// sidecar injector, and which revision or tag. One that does not decode is not.
pub(crate) fn identify(
    mwc: &k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
) -> Option<InjectorIdentity> {
    let value = serde_json::to_value(mwc).ok()?;
    let m = MutatingWebhookConfiguration::decode(
        crate::model::mutating_webhook_configuration::API_VERSION,
        &mwc.metadata,
        &value,
    )
    .ok()?;
    identify_model(&m)
}

/// Whether a MutatingWebhookConfiguration is an Istio sidecar injector, and which revision or tag.
pub(crate) fn identify_model(mwc: &MutatingWebhookConfiguration<'_>) -> Option<InjectorIdentity> {
    let label = |k: &str| mwc.label(k);
    let named = mwc
        .webhooks
        .iter()
        .any(|w| w.name().ends_with("sidecar-injector.istio.io"));
    let is_injector = label(TAG_LABEL).is_some()
        || label(REV_LABEL).is_some()
        || label("app") == Some("sidecar-injector")
        || named;
    if !is_injector {
        return None;
    }
    let revision = label(REV_LABEL)
        .filter(|r| !r.is_empty())
        .unwrap_or(DEFAULT_REVISION)
        .to_owned();
    let tag = label(TAG_LABEL).map(str::to_owned);
    Some(InjectorIdentity { revision, tag })
}

/// The webhooks of an injector configuration, in order.
pub(crate) fn webhooks_of(
    mwc: &MutatingWebhookConfiguration<'_>,
    id: &InjectorIdentity,
) -> Vec<InjectorWebhook> {
    mwc.webhooks
        .iter()
        .map(|w| InjectorWebhook {
            configuration: mwc.name.to_owned(),
            name: w.name().to_owned(),
            revision: id.revision.clone(),
            tag: id.tag.clone(),
            namespace_selector: Selector::for_webhook(w.namespace_selector.as_ref()),
            object_selector: Selector::for_webhook(w.object_selector.as_ref()),
            covers_pod_create: covers_pod_create(w),
            failure_policy: match w.failure_policy.as_deref() {
                Some("Ignore") => FailurePolicy::Ignore,
                _ => FailurePolicy::Fail,
            },
            match_conditions: w.match_conditions(),
            service: w
                .service()
                .map(|(ns, name)| (ns.to_owned(), name.to_owned())),
            injector: 0,
        })
        .collect()
}

/// Whether a webhook's `rules` match a CREATE of core/v1 `pods` (kube-apiserver's
/// `predicates/rules` `Matcher`: `*` wildcards; `pods/*` and `*/*` include the main resource; scope
/// `*` or `Namespaced`).
fn covers_pod_create(w: &MutatingWebhook<'_>) -> bool {
    let any = |list: &Option<Vec<crate::model::Str<'_>>>, want: &str| {
        list.iter()
            .flatten()
            .any(|x| x.as_str() == "*" || x.as_str() == want)
    };
    w.rules().iter().any(|r| {
        any(&r.operations, "CREATE")
            && any(&r.api_groups, "")
            && any(&r.api_versions, "v1")
            && r.resources.iter().flatten().any(|res| {
                let (res, sub) = res.split_once('/').unwrap_or((res, ""));
                (res == "*" || res == "pods") && (sub == "*" || sub.is_empty())
            })
            && matches!(r.scope.as_deref(), None | Some("*") | Some("Namespaced"))
    })
}

/// The injection policy and how `sidecar.istio.io/inject` values are read: defined with the
/// typed `config`/`values` model ([`crate::model::injector_config`]); the values themselves are
/// parsed in one place ([`crate::model::labels`]).
pub use crate::model::injector_config::{InjectValues, InjectionPolicy};

/// One revision's injector configuration, from its ConfigMap, or Istio's chart defaults when that
/// ConfigMap is not visible.
#[derive(Clone, Debug)]
pub struct InjectorConfig {
    /// The revision (`default` for the default install).
    pub revision: String,
    /// Where it was read: a ConfigMap, or `Origin::Default` (chart defaults assumed).
    pub origin: Origin,
    pub policy: InjectionPolicy,
    /// `neverInjectSelector` entries, compiled.
    pub(crate) never_inject: Vec<Selector>,
    /// `alwaysInjectSelector` entries, compiled.
    pub(crate) always_inject: Vec<Selector>,
    /// `defaultTemplates` (`[sidecar]` when unset).
    pub(crate) default_templates: Vec<String>,
    /// The template names `templates` defines.
    pub templates: Vec<String>,
    /// The templates among them that install the pod's traffic capture: their text runs
    /// `istio-iptables` (the `istio-init` container, or `istio-validation` when the Istio CNI
    /// plugin installs the rules). The chart's `sidecar` does; `gateway`, `grpc-agent`,
    /// `grpc-simple`, `waypoint` and `kube-gateway` do not.
    pub(crate) capturing_templates: Vec<String>,
    /// `aliases`: a name that stands for several templates (`inject.istio.io/templates` and
    /// `defaultTemplates` resolve them, istio/istio `pkg/kube/inject/inject.go`,
    /// `resolveAliases`).
    pub aliases: BTreeMap<String, Vec<String>>,
    pub hub: Option<String>,
    pub tag: Option<String>,
    /// `global.proxy.image`.
    pub(crate) proxy_image_name: Option<String>,
    /// `global.variant`.
    pub variant: Option<String>,
    /// `sidecarInjectorWebhook.enableNamespacesByDefault` (its effect is the `auto.*` webhook).
    pub(crate) enable_namespaces_by_default: bool,
    /// How `sidecar.istio.io/inject` values are read (from the injector's version).
    pub(crate) inject_values: InjectValues,
    /// The proxy image a pod without image annotations gets, when `values` tell.
    pub(crate) proxy_image: Option<String>,
    /// `defaultConfig.image.imageType` of the MeshConfig this injector renders with.
    pub(crate) mesh_image_type: Option<String>,
}

impl InjectorConfig {
    /// Istio's chart defaults for a revision whose ConfigMap is not visible: policy enabled, no
    /// never/always selectors, image unknown.
    pub fn assumed(revision: &str) -> Self {
        InjectorConfig {
            revision: revision.to_owned(),
            origin: Origin::Default,
            policy: InjectionPolicy::Enabled,
            never_inject: Vec::new(),
            always_inject: Vec::new(),
            default_templates: vec!["sidecar".to_owned()],
            templates: Vec::new(),
            capturing_templates: Vec::new(),
            aliases: BTreeMap::new(),
            hub: None,
            tag: None,
            proxy_image_name: None,
            variant: None,
            enable_namespaces_by_default: false,
            inject_values: InjectValues::Exact,
            proxy_image: None,
            mesh_image_type: None,
        }
    }

    /// Whether this configuration was read from a ConfigMap (not assumed).
    pub fn observed(&self) -> bool {
        !matches!(self.origin, Origin::Default)
    }

    /// Read an injector ConfigMap. Errors in `config` or `values` are returned beside the result,
    /// which keeps the chart default for what could not be read.
    pub(crate) fn from_config_map(cm: &ConfigMap<'_>) -> (Self, Vec<MeshError>) {
        let name = cm.name();
        let namespace = cm.namespace().unwrap_or_default();
        let origin = Origin::ConfigMap {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let origin_text = origin.to_string();
        let mut errors = Vec::new();
        let mut cfg = InjectorConfig::assumed(DEFAULT_REVISION);
        cfg.origin = origin;
        match cm.get("config") {
            Some(text) => {
                let (config, error) = InjectionConfig::decode(text, &origin_text);
                cfg.apply_config(config);
                errors.extend(error);
            }
            None => errors.push(MeshError::Invalid {
                origin: origin_text.clone(),
                field: "data.config".to_owned(),
                message: "no key \"config\": istiod cannot load this injector's configuration"
                    .to_owned(),
            }),
        }
        let mut values_revision = None;
        if let Some(text) = cm.get("values") {
            let (values, errs) = InjectionValues::decode(text, &origin_text);
            errors.extend(errs);
            cfg.hub = values.hub;
            cfg.tag = values.tag;
            cfg.proxy_image_name = values.proxy_image;
            cfg.variant = values.variant;
            cfg.enable_namespaces_by_default = values.enable_namespaces_by_default;
            values_revision = values.revision;
        }
        let label_rev = cm.label(REV_LABEL).filter(|r| !r.is_empty());
        let name_rev = name
            .strip_prefix(INJECTOR_CONFIG_MAP)
            .and_then(|s| s.strip_prefix('-'))
            .filter(|r| !r.is_empty());
        cfg.revision = label_rev
            .or(values_revision.as_deref())
            .or(name_rev)
            .unwrap_or(DEFAULT_REVISION)
            .to_owned();
        cfg.inject_values = InjectValues::for_tag(cfg.tag.as_deref());
        cfg.refresh_proxy_image();
        (cfg, errors)
    }

    /// Whether a ConfigMap (as k8s-openapi decodes it, from a watch) is an injector
    /// configuration.
    pub(crate) fn is_injector_config_map(cm: &k8s_openapi::api::core::v1::ConfigMap) -> bool {
        Self::is_injector_config(&ConfigMap::from_k8s(cm))
    }

    /// Whether a ConfigMap is an injector configuration (`istio-sidecar-injector[-<rev>]` holding
    /// `config` or `values`).
    pub(crate) fn is_injector_config(cm: &ConfigMap<'_>) -> bool {
        let name = cm.name();
        let named = name == INJECTOR_CONFIG_MAP
            || name
                .strip_prefix(INJECTOR_CONFIG_MAP)
                .is_some_and(|s| s.starts_with('-'));
        named && (cm.has("config") || cm.has("values"))
    }

    /// Take what the `config` key set over the chart defaults.
    fn apply_config(&mut self, config: InjectionConfig) {
        let InjectionConfig {
            policy,
            never_inject,
            always_inject,
            default_templates,
            templates,
            capturing_templates,
            aliases,
        } = config;
        keep(&mut self.policy, policy);
        keep(&mut self.never_inject, never_inject);
        keep(&mut self.always_inject, always_inject);
        keep(&mut self.default_templates, default_templates);
        keep(&mut self.templates, templates);
        keep(&mut self.capturing_templates, capturing_templates);
        keep(&mut self.aliases, aliases);
    }

    /// Recompute the annotation-free proxy image (after the MeshConfig image type is known).
    pub(crate) fn refresh_proxy_image(&mut self) {
        self.proxy_image = self
            .proxy_image_for(&super::selector::NoLabels)
            .map(Cow::into_owned);
    }

    /// The `istio-proxy` image a new pod with these annotations gets from this injector, when the
    /// injector's `values` were read. See the module documentation for the rules.
    pub(crate) fn proxy_image_for<A: Labels + ?Sized>(
        &self,
        annotations: &A,
    ) -> Option<Cow<'_, str>> {
        // injection-template.yaml: annotation `sidecar.istio.io/proxyImage` else
        // .Values.global.proxy.image; used verbatim when it contains "/".
        let chosen = annotations
            .label(PROXY_IMAGE_ANNOTATION)
            .or(self.proxy_image_name.as_deref());
        if let Some(image) = chosen.filter(|i| i.contains('/')) {
            return Some(Cow::Owned(image.to_owned()));
        }
        let hub = self.hub.as_deref()?;
        let tag = self.tag.as_deref()?;
        let name = self
            .proxy_image_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or("proxyv2");
        let annotated_type = annotations
            .label(PROXY_CONFIG)
            .and_then(ProxyConfig::from_annotation)
            .and_then(|p| p.image_type);
        let mut image_type = annotated_type
            .as_deref()
            .or(self.mesh_image_type.as_deref())
            .filter(|t| !t.is_empty())
            .or(self.variant.as_deref())
            .unwrap_or("");
        if let Some(t) = annotations.label(PROXY_IMAGE_TYPE_ANNOTATION) {
            image_type = t;
        }
        Some(Cow::Owned(format!(
            "{hub}/{name}:{}",
            update_image_type(tag, image_type)
        )))
    }
}

/// A value read over a default: the default stays when nothing was read.
fn keep<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// `updateImageTypeIfPresent`: replace a known type suffix on the tag, `default` meaning none.
fn update_image_type(tag: &str, image_type: &str) -> String {
    if image_type.is_empty() {
        return tag.to_owned();
    }
    let mut tag = tag;
    for known in ["distroless", "debug"] {
        if let Some(base) = tag.strip_suffix(known).and_then(|t| t.strip_suffix('-')) {
            tag = base;
            break;
        }
    }
    if image_type == "default" {
        tag.to_owned()
    } else {
        format!("{tag}-{image_type}")
    }
}

/// Whether two proxy images are the same release: equal once an image-type variant
/// (`-distroless`, `-debug`) is taken off their tags. The variant is chosen per pod by
/// annotations, MeshConfig and ProxyConfig resources; `istioctl analyze` accepts either form
/// too (`injection-image.go`: the image, or the image with the variant).
pub fn same_proxy_release(a: &str, b: &str) -> bool {
    fn base(image: &str) -> &str {
        let tag_at = image
            .rfind(':')
            .filter(|i| !image[*i..].contains('/'))
            .map_or(image.len(), |i| i + 1);
        let tag = &image[tag_at..];
        for known in ["distroless", "debug"] {
            if let Some(t) = tag.strip_suffix(known).and_then(|t| t.strip_suffix('-')) {
                return &image[..tag_at + t.len()];
            }
        }
        image
    }
    a == b || base(a) == base(b)
}

/// The pod's `sidecar.istio.io/inject` setting: the label when present (even empty), else the
/// annotation.
pub(crate) fn pod_setting<'a, P: Labels + ?Sized, A: Labels + ?Sized>(
    labels: &'a P,
    annotations: &'a A,
) -> Option<PodSetting<'a>> {
    PodSetting::of(labels.label(INJECT), || annotations.label(INJECT))
}

/// `injectRequired` for a pod that reached this injector.
pub(crate) fn inject_required<P: Labels + ?Sized>(
    cfg: &InjectorConfig,
    namespace: &str,
    pod_labels: &P,
    setting: Option<PodSetting<'_>>,
    host_network: bool,
) -> (bool, Why) {
    if host_network {
        return (false, Why::HostNetwork);
    }
    if IGNORED_NAMESPACES.contains(&namespace) {
        return (false, Why::IgnoredNamespace);
    }
    if let Some(inject) = setting.and_then(|s| cfg.inject_values.decide(s.value)) {
        return (inject, Why::PodSetting);
    }
    if let Some(i) = cfg
        .never_inject
        .iter()
        .position(|s| !s.is_empty() && s.matches(pod_labels))
    {
        return (false, Why::NeverInjectSelector(i));
    }
    if let Some(i) = cfg
        .always_inject
        .iter()
        .position(|s| !s.is_empty() && s.matches(pod_labels))
    {
        return (true, Why::AlwaysInjectSelector(i));
    }
    (cfg.policy == InjectionPolicy::Enabled, Why::Policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;
    use serde_json::Value;
    use std::collections::BTreeMap;

    fn from_cm(c: &k8s_openapi::api::core::v1::ConfigMap) -> (InjectorConfig, Vec<MeshError>) {
        InjectorConfig::from_config_map(&ConfigMap::from_k8s(c))
    }

    fn cm(name: &str, data: &[(&str, &str)]) -> k8s_openapi::api::core::v1::ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "istio-system"},
            "data": data.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        }))
        .unwrap()
    }

    fn values(hub: &str, tag: Value, extra: Value) -> String {
        let mut v = json!({"global": {"hub": hub, "tag": tag, "proxy": {"image": "proxyv2"}},
            "sidecarInjectorWebhook": {"enableNamespacesByDefault": false}, "revision": ""});
        if let (Some(base), Value::Object(extra)) = (v.as_object_mut(), extra) {
            for (k, x) in extra {
                base.insert(k, x);
            }
        }
        v.to_string()
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const CONFIG: &str = "defaultTemplates: [sidecar]\npolicy: enabled\nalwaysInjectSelector: []\nneverInjectSelector: []\ninjectedAnnotations: {}\ntemplate: \"{{ Template_Version_And_Istio_Version_Mismatched_Check_Installation }}\"\ntemplates:\n  sidecar: |\n    spec:\n      containers:\n      - name: istio-proxy\n        image: \"{{ .ProxyImage }}\"\n  gateway: |\n    spec: {}\n";

    #[test]
    fn reads_an_injector_config_map() {
        let (cfg, errors) = from_cm(&cm(
            "istio-sidecar-injector-canary",
            &[
                ("config", CONFIG),
                (
                    "values",
                    &values(
                        "docker.io/istio",
                        json!("1.28.1"),
                        json!({"revision": "canary", "sidecarInjectorWebhook": {"enableNamespacesByDefault": true}}),
                    ),
                ),
            ],
        ));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(cfg.revision, "canary");
        assert!(cfg.observed());
        assert_eq!(cfg.policy, InjectionPolicy::Enabled);
        assert_eq!(cfg.templates, ["gateway", "sidecar"]);
        assert!(cfg.enable_namespaces_by_default);
        assert_eq!(cfg.inject_values, InjectValues::Exact);
        assert_eq!(
            cfg.proxy_image.as_deref(),
            Some("docker.io/istio/proxyv2:1.28.1")
        );
    }

    #[test]
    fn revision_from_label_values_or_name() {
        let mut c = cm("istio-sidecar-injector", &[("config", CONFIG)]);
        assert_eq!(from_cm(&c).0.revision, "default");
        c.metadata.name = Some("istio-sidecar-injector-1-28".into());
        assert_eq!(from_cm(&c).0.revision, "1-28");
        c.metadata.labels = Some([(REV_LABEL.to_owned(), "blue".to_owned())].into());
        assert_eq!(from_cm(&c).0.revision, "blue");
        assert!(InjectorConfig::is_injector_config_map(&c));
        assert!(!InjectorConfig::is_injector_config_map(&cm(
            "istio-sidecar-injectorx",
            &[("config", CONFIG)]
        )));
        assert!(!InjectorConfig::is_injector_config_map(&cm(
            "istio-sidecar-injector",
            &[("other", "")]
        )));
    }

    #[test]
    fn bad_config_and_values_are_errors_with_defaults_kept() {
        let (cfg, errors) = from_cm(&cm(
            "istio-sidecar-injector",
            &[("config", "policy: [\n"), ("values", "{not json")],
        ));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0]
            .to_string()
            .contains("key \"config\" is not valid YAML"));
        assert!(errors[1]
            .to_string()
            .contains("key \"values\" is not valid JSON"));
        assert_eq!(cfg.policy, InjectionPolicy::Enabled, "chart default kept");
        assert_eq!(cfg.proxy_image, None);

        let (_, errors) = from_cm(&cm(
            "istio-sidecar-injector",
            &[(
                "config",
                "policy: enabled\nneverInjectSelector: [{matchLabels: [1]}]\n",
            )],
        ));
        assert!(
            errors[0]
                .to_string()
                .contains("config.neverInjectSelector[0]"),
            "{errors:?}"
        );
        let (_, errors) = from_cm(&cm("istio-sidecar-injector", &[("values", "{}")]));
        assert!(
            errors[0].to_string().contains("no key \"config\""),
            "{errors:?}"
        );
    }

    #[test]
    fn policy_values() {
        for (text, want) in [
            ("policy: enabled", InjectionPolicy::Enabled),
            ("policy: disabled", InjectionPolicy::Disabled),
            (
                "policy: Enabled",
                InjectionPolicy::Invalid("Enabled".into()),
            ),
            ("templates: {}", InjectionPolicy::Invalid(String::new())),
            ("", InjectionPolicy::Invalid(String::new())),
        ] {
            let (cfg, errors) = from_cm(&cm("istio-sidecar-injector", &[("config", text)]));
            assert!(errors.is_empty(), "{text}: {errors:?}");
            assert_eq!(cfg.policy, want, "{text}");
        }
    }

    fn image_cfg(values_json: &str, mesh_type: Option<&str>) -> InjectorConfig {
        let (mut cfg, errors) = from_cm(&cm(
            "istio-sidecar-injector",
            &[("config", CONFIG), ("values", values_json)],
        ));
        assert!(errors.is_empty(), "{errors:?}");
        cfg.mesh_image_type = mesh_type.map(str::to_owned);
        cfg.refresh_proxy_image();
        cfg
    }

    #[test]
    fn proxy_image_from_values() {
        let plain = image_cfg(
            &values("registry.istio.io/release", json!("1.28.0"), json!({})),
            None,
        );
        assert_eq!(
            plain.proxy_image.as_deref(),
            Some("registry.istio.io/release/proxyv2:1.28.0")
        );
        // global.variant, then MeshConfig defaultConfig.image.imageType over it.
        let variant = image_cfg(
            &values(
                "hub",
                json!("1.28.0"),
                json!({"global": {"hub": "hub", "tag": "1.28.0", "variant": "distroless"}}),
            ),
            None,
        );
        assert_eq!(
            variant.proxy_image.as_deref(),
            Some("hub/proxyv2:1.28.0-distroless")
        );
        let mesh = image_cfg(
            &values(
                "hub",
                json!("1.28.0"),
                json!({"global": {"hub": "hub", "tag": "1.28.0", "variant": "distroless"}}),
            ),
            Some("debug"),
        );
        assert_eq!(
            mesh.proxy_image.as_deref(),
            Some("hub/proxyv2:1.28.0-debug")
        );
        // A known suffix on the tag is replaced; `default` removes it.
        let suffixed = image_cfg(
            &values("hub", json!("1.28.0-distroless"), json!({})),
            Some("default"),
        );
        assert_eq!(suffixed.proxy_image.as_deref(), Some("hub/proxyv2:1.28.0"));
        // A numeric tag prints as Go prints a float64.
        let numeric = image_cfg(&values("hub", json!(1.28), json!({})), None);
        assert_eq!(numeric.proxy_image.as_deref(), Some("hub/proxyv2:1.28"));
        // A full image reference in global.proxy.image is used verbatim.
        let full = image_cfg(
            &values(
                "hub",
                json!("1.28.0"),
                json!({"global": {"hub": "hub", "tag": "1.28.0", "proxy": {"image": "mirror.example/istio/proxyv2:1.28.0"}}}),
            ),
            None,
        );
        assert_eq!(
            full.proxy_image.as_deref(),
            Some("mirror.example/istio/proxyv2:1.28.0")
        );
        // Without hub/tag the image cannot be told.
        let unknown = image_cfg("{}", None);
        assert_eq!(unknown.proxy_image, None);
    }

    #[test]
    fn proxy_image_annotations() {
        let cfg = image_cfg(
            &values("hub", json!("1.28.0"), json!({})),
            Some("distroless"),
        );
        let image = |a: &[(&str, &str)]| cfg.proxy_image_for(&ann(a)).map(Cow::into_owned);
        assert_eq!(image(&[]).as_deref(), Some("hub/proxyv2:1.28.0-distroless"));
        assert_eq!(
            image(&[(PROXY_IMAGE_ANNOTATION, "my.registry/proxy:dev")]).as_deref(),
            Some("my.registry/proxy:dev")
        );
        // Without a "/", the annotation is not an image reference and the template ignores it.
        assert_eq!(
            image(&[(PROXY_IMAGE_ANNOTATION, "proxy")]).as_deref(),
            Some("hub/proxyv2:1.28.0-distroless")
        );
        assert_eq!(
            image(&[(PROXY_IMAGE_TYPE_ANNOTATION, "debug")]).as_deref(),
            Some("hub/proxyv2:1.28.0-debug")
        );
        assert_eq!(
            image(&[(PROXY_IMAGE_TYPE_ANNOTATION, "default")]).as_deref(),
            Some("hub/proxyv2:1.28.0")
        );
        assert_eq!(
            image(&[(PROXY_CONFIG, "image:\n  imageType: debug\n")]).as_deref(),
            Some("hub/proxyv2:1.28.0-debug")
        );
        assert_eq!(
            image(&[(PROXY_CONFIG, "{broken")]).as_deref(),
            Some("hub/proxyv2:1.28.0-distroless"),
            "an unreadable proxy config is ignored, as Istio ignores it"
        );
    }

    #[test]
    fn inject_value_semantics_follow_the_version() {
        assert_eq!(InjectValues::for_tag(Some("1.27.0")), InjectValues::Exact);
        assert_eq!(
            InjectValues::for_tag(Some("1.26.3-distroless")),
            InjectValues::Legacy
        );
        assert_eq!(InjectValues::for_tag(Some("1.9")), InjectValues::Legacy);
        assert_eq!(InjectValues::for_tag(Some("latest")), InjectValues::Exact);
        assert_eq!(InjectValues::for_tag(None), InjectValues::Exact);
        let e = InjectValues::Exact;
        assert_eq!(e.decide("true"), Some(true));
        assert_eq!(e.decide("false"), Some(false));
        assert_eq!(e.decide("yes"), None);
        assert_eq!(e.decide("False"), None);
        assert_eq!(e.decide(""), None);
        let l = InjectValues::Legacy;
        assert_eq!(l.decide("YES"), Some(true));
        assert_eq!(l.decide("on"), Some(true));
        assert_eq!(l.decide("no"), Some(false));
        assert_eq!(l.decide("False"), Some(false));
        assert_eq!(l.decide(""), None);
    }

    #[test]
    fn rules_must_cover_pod_create() {
        let covers = |rules: Value| -> bool {
            let hook = json!({"name": "x.sidecar-injector.istio.io", "clientConfig": {},
                "sideEffects": "None", "admissionReviewVersions": ["v1"], "rules": rules});
            covers_pod_create(
                &<MutatingWebhook<'_> as Deserialize>::deserialize(&hook).expect("webhook"),
            )
        };
        for rules in [
            json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]),
            json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]),
            json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*/*"], "scope": "Namespaced"}]),
            json!([{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]},
                   {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/*"]}]),
        ] {
            assert!(covers(rules.clone()), "{rules}");
        }
        for rules in [
            json!([]),
            json!([{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]),
            json!([{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["pods"]}]),
            json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/exec"]}]),
            json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["deployments"]}]),
            json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Cluster"}]),
        ] {
            assert!(!covers(rules.clone()), "{rules}");
        }
    }
}
