//! [`MeshContext`]: one snapshot of the mesh's configuration, precomputed for cheap queries.
//!
//! Which MeshConfig is "the mesh's": istiod of revision `<rev>` reads ConfigMap `istio-<rev>`, the
//! default revision `istio` (istio/istio `pilot/pkg/bootstrap/mesh.go`, `getMeshConfigMapName`).
//! Root namespace and trust domain are mesh-wide notions, so one MeshConfig is chosen: a file given
//! to meshguard; else `istio` (the default revision); else the one of the revision the `default`
//! revision tag points to; else the only one; else the first by revision name (the others are
//! listed in [`MeshContext::notes`] when they disagree). When no MeshConfig is visible the root
//! namespace is taken to be the Istio namespace (Istio's chart writes `rootNamespace:
//! global.istioNamespace`), while a MeshConfig without `rootNamespace` gets Istio's code default
//! `istio-system` (`DefaultMeshConfig`).
//!
//! The Istio namespace (where the ConfigMaps live) is given, or read from the injector webhooks'
//! `clientConfig.service.namespace` (the chart points them at `istiod[-<rev>]` there), or
//! `istio-system`. ConfigMaps without a namespace (from manifests) count as being in it.

use super::ambient::{self, AmbientInstall, Component};
use super::decision::InjectionDecision;
use super::injector::Why;
use super::injector::{
    self, identify_model, inject_required, pod_setting, webhooks_of, InjectorConfig,
    InjectorIdentity, InjectorWebhook, DEFAULT_REVISION, INJECT, INJECTION_LABEL,
    INJECTOR_CONFIG_MAP, REV_LABEL,
};
use super::selector::{Labels, NamespaceLabels, NoLabels};
use super::{MeshError, MeshOverrides, Origin, Sourced};
use crate::model::mesh_config::{MeshConfig, DEFAULT_TRUST_DOMAIN, MESH_KEY};
use crate::model::{ConfigMap, MutatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::core::DynamicObject;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The Istio namespace when nothing says otherwise: Istio's `constants.IstioSystemNamespace`, the
/// same constant as the default root namespace.
pub const DEFAULT_ISTIO_NAMESPACE: &str = crate::model::mesh_config::DEFAULT_ROOT_NAMESPACE;
const MESH_CONFIG_MAP: &str = "istio";
const NO_LABELS: NoLabels = NoLabels;

/// One snapshot of the mesh as installed. Build it with [`MeshContext::builder`] or
/// [`MeshContext::from_objects`]; [`MeshContext::default`] knows nothing and assumes Istio's
/// defaults everywhere.
#[derive(Clone, Debug)]
pub struct MeshContext {
    istio_namespace: Sourced<String>,
    root_namespace: Sourced<String>,
    trust_domain: Sourced<String>,
    trust_domain_aliases: Sourced<Vec<String>>,
    enable_auto_mtls: Sourced<bool>,
    /// The mesh's own values, before meshguard's policy overrides.
    mesh_values: MeshValues,
    /// The overrides applied.
    overrides: MeshOverrides,
    mesh_configs: BTreeMap<String, (Origin, MeshConfig)>,
    /// Injector configurations seen: (name, revision, tag).
    configurations: Vec<(String, String, Option<String>)>,
    /// Webhooks that receive Pod CREATEs, in kube-apiserver's order.
    webhooks: Vec<InjectorWebhook>,
    /// Injector webhooks whose rules do not cover Pod CREATE.
    inert_webhooks: Vec<InjectorWebhook>,
    injectors: Vec<InjectorConfig>,
    /// No injector webhook is visible, but the default revision's injector ConfigMap is, and its
    /// `values` set `sidecarInjectorWebhook.enableNamespacesByDefault`: the assumed default
    /// injector then injects unlabelled namespaces too.
    assumed_by_default: bool,
    revisions: BTreeSet<String>,
    tags: BTreeMap<String, String>,
    overlaps: Vec<ConfigurationOverlap>,
    /// Ambient mode as installed (ztunnel, istio-cni and its configuration).
    ambient: AmbientInstall,
    errors: Vec<MeshError>,
    notes: Vec<String>,
}

/// The four MeshConfig values verdicts use, each with its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MeshValues {
    root_namespace: Sourced<String>,
    trust_domain: Sourced<String>,
    trust_domain_aliases: Sourced<Vec<String>>,
    enable_auto_mtls: Sourced<bool>,
}

impl MeshValues {
    /// These values with meshguard's policy over them: every value the policy sets wins.
    fn overridden(&self, o: &MeshOverrides) -> MeshValues {
        let policy = |v| Sourced::new(v, Origin::Policy);
        MeshValues {
            root_namespace: o
                .root_namespace
                .clone()
                .map_or_else(|| self.root_namespace.clone(), policy),
            trust_domain: o
                .trust_domain
                .clone()
                .map_or_else(|| self.trust_domain.clone(), policy),
            trust_domain_aliases: o.trust_domain_aliases.clone().map_or_else(
                || self.trust_domain_aliases.clone(),
                |v| Sourced::new(v, Origin::Policy),
            ),
            enable_auto_mtls: o.enable_auto_mtls.map_or_else(
                || self.enable_auto_mtls.clone(),
                |v| Sourced::new(v, Origin::Policy),
            ),
        }
    }
}

impl Default for MeshContext {
    fn default() -> Self {
        MeshContextBuilder::default().build()
    }
}

/// Two injector webhooks that both select some namespace/pod label combination (Istio's
/// `webhook` analyzer, IST0139), with one such combination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigurationOverlap {
    first: usize,
    second: usize,
    /// Namespace labels both select.
    pub namespace_labels: BTreeMap<String, String>,
    /// Pod labels both select (with those namespace labels).
    pub(crate) pod_labels: BTreeMap<String, String>,
}

/// Collects mesh objects, then [`MeshContextBuilder::build`]s the context.
#[derive(Clone, Debug, Default)]
pub struct MeshContextBuilder {
    istio_namespace: Option<Sourced<String>>,
    overrides: MeshOverrides,
    mesh_file: Option<(String, Result<MeshConfig, MeshError>)>,
    mesh_maps: Vec<ConfigMap<'static>>,
    injector_maps: Vec<ConfigMap<'static>>,
    configurations: Vec<(InjectorIdentity, String, Vec<InjectorWebhook>)>,
    /// ztunnel and istio-cni DaemonSets: (namespace, name, which).
    ambient_daemonsets: Vec<(String, String, Component)>,
    /// istio-cni's ConfigMaps (`istio-cni-config`, any namespace).
    cni_maps: Vec<ConfigMap<'static>>,
    errors: Vec<MeshError>,
}

impl MeshContextBuilder {
    /// The namespace Istio is installed in (where its ConfigMaps are read), as meshguard's
    /// configuration says.
    pub fn istio_namespace(&mut self, namespace: impl Into<String>) -> &mut Self {
        self.istio_namespace = Some(Sourced::new(namespace.into(), Origin::Policy));
        self
    }

    /// The Istio namespace, given by a command-line flag (`--istio-namespace`).
    pub(crate) fn istio_namespace_from_flag(
        &mut self,
        namespace: impl Into<String>,
        flag: &str,
    ) -> &mut Self {
        self.istio_namespace = Some(Sourced::new(
            namespace.into(),
            Origin::Flag {
                name: flag.to_owned(),
            },
        ));
        self
    }

    /// Values meshguard's policy sets itself.
    pub fn overrides(&mut self, overrides: MeshOverrides) -> &mut Self {
        self.overrides = overrides;
        self
    }

    /// A MeshConfig file (`check --mesh-config`): MeshConfig YAML or the `istio` ConfigMap. It is
    /// the mesh's MeshConfig, whatever ConfigMaps are also seen.
    pub(crate) fn mesh_config_file(&mut self, path: &str, text: &str) -> &mut Self {
        let parsed = MeshConfig::from_file_text(text, &format!("file {path}"));
        self.mesh_file = Some((path.to_owned(), parsed));
        self
    }

    /// A ConfigMap: kept when it is a MeshConfig (`istio[-<rev>]` with key `mesh`) or an injector
    /// configuration (`istio-sidecar-injector[-<rev>]`); returns whether it was kept.
    /// (As k8s-openapi decodes it, from a watch.)
    pub(crate) fn config_map(&mut self, cm: &k8s_openapi::api::core::v1::ConfigMap) -> bool {
        self.typed_config_map(&ConfigMap::from_k8s(cm))
    }

    /// A ConfigMap of the typed model (see [`MeshContextBuilder::config_map`]).
    pub(crate) fn typed_config_map(&mut self, cm: &ConfigMap<'_>) -> bool {
        let list = if is_cni_config(cm) {
            &mut self.cni_maps
        } else if InjectorConfig::is_injector_config(cm) {
            &mut self.injector_maps
        } else if is_mesh_config(cm) {
            &mut self.mesh_maps
        } else {
            return false;
        };
        list.push(cm.clone().into_owned());
        true
    }

    /// A MutatingWebhookConfiguration: kept when it is an Istio injector or revision tag; returns
    /// whether it was kept. (As k8s-openapi decodes it, from a watch.)
    pub(crate) fn webhook_configuration(
        &mut self,
        mwc: &k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    ) -> bool {
        let Ok(value) = serde_json::to_value(mwc) else {
            return false;
        };
        match MutatingWebhookConfiguration::decode(
            crate::model::mutating_webhook_configuration::API_VERSION,
            &mwc.metadata,
            &value,
        ) {
            Ok(m) => self.typed_webhook_configuration(&m),
            Err(_) => false,
        }
    }

    /// A MutatingWebhookConfiguration of the typed model (see
    /// [`MeshContextBuilder::webhook_configuration`]).
    pub(crate) fn typed_webhook_configuration(
        &mut self,
        mwc: &MutatingWebhookConfiguration<'_>,
    ) -> bool {
        let Some(id) = identify_model(mwc) else {
            return false;
        };
        let webhooks = webhooks_of(mwc, &id);
        self.configurations
            .push((id, mwc.name.to_owned(), webhooks));
        true
    }

    /// A DaemonSet: kept when it is ztunnel's or istio-cni's (ambient as installed); returns
    /// whether it was kept.
    pub fn daemonset(&mut self, ds: &DaemonSet) -> bool {
        let Some(c) = ambient::component(ds) else {
            return false;
        };
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let name = ds.metadata.name.clone().unwrap_or_default();
        if !self
            .ambient_daemonsets
            .iter()
            .any(|(n, m, _)| *n == ns && *m == name)
        {
            self.ambient_daemonsets.push((ns, name, c));
        }
        true
    }

    /// Any object (what `check` reads and `audit` lists): MutatingWebhookConfigurations and
    /// ConfigMaps are taken as above, everything else is ignored. Returns whether it was kept.
    pub fn object(&mut self, obj: &DynamicObject) -> bool {
        let Some(types) = obj.types.as_ref() else {
            return false;
        };
        let name = obj.metadata.name.as_deref().unwrap_or_default();
        match (types.api_version.as_str(), types.kind.as_str()) {
            (v, "MutatingWebhookConfiguration")
                if v.starts_with("admissionregistration.k8s.io/") =>
            {
                match MutatingWebhookConfiguration::decode(v, &obj.metadata, &obj.data) {
                    Ok(mwc) => self.typed_webhook_configuration(&mwc),
                    Err(message) => {
                        let labels = obj.metadata.labels.as_ref();
                        let istio = name.starts_with("istio-")
                            || labels.is_some_and(|l| {
                                l.contains_key(REV_LABEL)
                                    || l.contains_key(injector::TAG_LABEL)
                                    || l.get("app").is_some_and(|a| a == "sidecar-injector")
                            });
                        if istio {
                            self.errors.push(MeshError::Object {
                                origin: format!("MutatingWebhookConfiguration {name}"),
                                kind: "MutatingWebhookConfiguration".to_owned(),
                                message,
                            });
                        }
                        false
                    }
                }
            }
            ("apps/v1", "DaemonSet") => match typed::<DaemonSet>(obj) {
                Ok(ds) => self.daemonset(&ds),
                Err(_) => false,
            },
            ("v1", "ConfigMap") => match ConfigMap::decode(&obj.metadata, &obj.data) {
                Ok(cm) => self.typed_config_map(&cm),
                Err(message) => {
                    if name == MESH_CONFIG_MAP || name.starts_with(injector::INJECTOR_CONFIG_MAP) {
                        let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
                        self.errors.push(MeshError::Object {
                            origin: Origin::ConfigMap {
                                namespace: ns.to_owned(),
                                name: name.to_owned(),
                            }
                            .to_string(),
                            kind: "ConfigMap".to_owned(),
                            message,
                        });
                    }
                    false
                }
            },
            _ => false,
        }
    }

    /// Every object of a list (see [`MeshContextBuilder::object`]).
    pub fn objects<'o>(
        &mut self,
        objects: impl IntoIterator<Item = &'o DynamicObject>,
    ) -> &mut Self {
        for o in objects {
            self.object(o);
        }
        self
    }

    /// Precompute the context.
    pub fn build(&self) -> MeshContext {
        let mut errors = self.errors.clone();
        let mut notes = Vec::new();

        // Injector webhooks, in kube-apiserver's order (configurations by name).
        let mut configurations = self.configurations.clone();
        configurations.sort_by(|a, b| a.1.cmp(&b.1));
        let istio_namespace = match &self.istio_namespace {
            Some(ns) => ns.clone(),
            None => configurations
                .iter()
                .find_map(|(_, name, whs)| {
                    whs.iter().find_map(|w| w.service.as_ref()).map(|(ns, _)| {
                        Sourced::new(
                            ns.clone(),
                            Origin::Webhook {
                                configuration: name.clone(),
                            },
                        )
                    })
                })
                .unwrap_or_else(|| {
                    Sourced::new(DEFAULT_ISTIO_NAMESPACE.to_owned(), Origin::Default)
                }),
        };
        let in_istio_ns = |cm: &ConfigMap<'_>| {
            cm.namespace()
                .is_none_or(|ns| ns.is_empty() || ns == istio_namespace.value)
        };

        let mut revisions = BTreeSet::new();
        let mut tags = BTreeMap::new();
        for (id, name, _) in &configurations {
            match &id.tag {
                Some(tag) => {
                    if let Some(prev) = tags.insert(tag.clone(), id.revision.clone()) {
                        if prev != id.revision {
                            notes.push(format!(
                                "revision tag {tag} is defined twice, pointing to {prev} and {} (MutatingWebhookConfiguration {name})",
                                id.revision
                            ));
                        }
                    }
                }
                None => {
                    revisions.insert(id.revision.clone());
                }
            }
        }

        // MeshConfigs by revision.
        let mut mesh_configs = BTreeMap::new();
        for cm in self.mesh_maps.iter().filter(|cm| in_istio_ns(cm)) {
            let origin = config_map_origin(cm);
            let text = cm.get(MESH_KEY).unwrap_or_default();
            match MeshConfig::parse(text, &origin.to_string()) {
                Ok(m) => {
                    mesh_configs.insert(mesh_revision(cm), (origin, m));
                }
                Err(e) => errors.push(e),
            }
        }
        let mut primary: Option<(Origin, &MeshConfig)> = None;
        if let Some((path, parsed)) = &self.mesh_file {
            match parsed {
                Ok(m) => primary = Some((Origin::File { path: path.clone() }, m)),
                Err(e) => errors.push(e.clone()),
            }
        }
        if primary.is_none() {
            let choice = mesh_configs
                .get(DEFAULT_REVISION)
                .or_else(|| tags.get(DEFAULT_REVISION).and_then(|r| mesh_configs.get(r)))
                .or_else(|| mesh_configs.values().next());
            primary = choice.map(|(o, m)| (o.clone(), m));
            if let Some((origin, m)) = &primary {
                for (o, other) in mesh_configs.values() {
                    if o == origin {
                        continue;
                    }
                    if other.effective_trust_domain() != m.effective_trust_domain()
                        || other.root_namespace != m.root_namespace
                    {
                        notes.push(format!(
                            "{o} sets trust domain {} and root namespace {}, unlike {origin} ({}, {}), which meshguard follows",
                            other.effective_trust_domain(),
                            other.effective_root_namespace(),
                            m.effective_trust_domain(),
                            m.effective_root_namespace()
                        ));
                    }
                }
            }
        }

        // The mesh's own values (no overrides), then meshguard's policy over them.
        let root_namespace = match &primary {
            Some((origin, m)) => match &m.root_namespace {
                Some(v) => Sourced::new(v.clone(), origin.clone()),
                None => Sourced::new(m.effective_root_namespace().to_owned(), Origin::Default),
            },
            None => Sourced::new(istio_namespace.value.clone(), Origin::Default),
        };
        let trust_domain = match &primary {
            Some((origin, m)) if m.trust_domain.is_some() => {
                Sourced::new(m.effective_trust_domain().to_owned(), origin.clone())
            }
            _ => Sourced::new(DEFAULT_TRUST_DOMAIN.to_owned(), Origin::Default),
        };
        let trust_domain_aliases = match &primary {
            Some((origin, m)) if !m.trust_domain_aliases.is_empty() => {
                Sourced::new(m.trust_domain_aliases.clone(), origin.clone())
            }
            _ => Sourced::new(Vec::new(), Origin::Default),
        };
        let enable_auto_mtls = match &primary {
            Some((origin, m)) if m.enable_auto_mtls.is_some() => {
                Sourced::new(m.effective_enable_auto_mtls(), origin.clone())
            }
            _ => Sourced::new(true, Origin::Default),
        };
        let mesh_values = MeshValues {
            root_namespace,
            trust_domain,
            trust_domain_aliases,
            enable_auto_mtls,
        };
        let effective = mesh_values.overridden(&self.overrides);
        let primary_image_type = primary
            .as_ref()
            .and_then(|(_, m)| m.proxy_image_type().map(str::to_owned));

        // Injector configurations: read, then one (assumed if unseen) per revision a webhook uses.
        let mut injectors: Vec<InjectorConfig> = Vec::new();
        for cm in self.injector_maps.iter().filter(|cm| in_istio_ns(cm)) {
            let (cfg, errs) = InjectorConfig::from_config_map(cm);
            errors.extend(errs);
            if let Some(prev) = injectors.iter().find(|c| c.revision == cfg.revision) {
                notes.push(format!(
                    "{} and {} both configure the injector of revision {}; meshguard uses the first",
                    prev.origin, cfg.origin, cfg.revision
                ));
                continue;
            }
            injectors.push(cfg);
        }
        let mut webhooks = Vec::new();
        let mut inert_webhooks = Vec::new();
        for (id, name, whs) in &configurations {
            if !injectors.iter().any(|c| c.revision == id.revision) {
                injectors.push(InjectorConfig::assumed(&id.revision));
                notes.push(format!(
                    "no injector ConfigMap {} of revision {} is visible: its injector is assumed to have Istio's chart defaults (policy enabled, no never/always-inject selectors); the proxy image it gives is unknown",
                    injector_config_map_name(&id.revision),
                    id.revision
                ));
            }
            for w in whs {
                if w.match_conditions > 0 {
                    notes.push(format!(
                        "webhook {:?} of MutatingWebhookConfiguration {name} has matchConditions, which meshguard does not evaluate: it is taken to match whenever its selectors do",
                        w.name
                    ));
                }
                if w.covers_pod_create {
                    webhooks.push(w.clone());
                } else {
                    inert_webhooks.push(w.clone());
                }
            }
        }
        injectors.sort_by(|a, b| a.revision.cmp(&b.revision));
        for cfg in &mut injectors {
            // The revision's own MeshConfig when visible, else the mesh's.
            cfg.mesh_image_type = match mesh_configs.get(&cfg.revision) {
                Some((_, m)) => m.proxy_image_type().map(str::to_owned),
                None => primary_image_type.clone(),
            };
            cfg.refresh_proxy_image();
        }
        for w in webhooks.iter_mut().chain(inert_webhooks.iter_mut()) {
            w.injector = injectors
                .iter()
                .position(|c| c.revision == w.revision)
                .unwrap_or_default();
        }

        let overlaps = configuration_overlaps(&webhooks, &revisions, &tags);
        let mut daemonsets = self.ambient_daemonsets.clone();
        daemonsets.sort();
        let ambient = AmbientInstall::build(&daemonsets, &self.cni_maps, &mut errors, &mut notes);
        let assumed_by_default = configurations.is_empty()
            && injectors
                .iter()
                .any(|c| c.revision == DEFAULT_REVISION && c.enable_namespaces_by_default);
        notes.sort();
        notes.dedup();
        MeshContext {
            istio_namespace,
            root_namespace: effective.root_namespace,
            trust_domain: effective.trust_domain,
            trust_domain_aliases: effective.trust_domain_aliases,
            enable_auto_mtls: effective.enable_auto_mtls,
            mesh_values,
            overrides: self.overrides.clone(),
            mesh_configs,
            configurations: configurations
                .iter()
                .map(|(id, name, _)| (name.clone(), id.revision.clone(), id.tag.clone()))
                .collect(),
            webhooks,
            inert_webhooks,
            injectors,
            assumed_by_default,
            revisions,
            tags,
            overlaps,
            ambient,
            errors,
            notes,
        }
    }
}

/// A dynamic object as a typed one.
fn typed<K: serde::de::DeserializeOwned>(obj: &DynamicObject) -> Result<K, String> {
    serde_json::to_value(obj)
        .and_then(serde_json::from_value)
        .map_err(|e| e.to_string())
}

/// `istio` or `istio-<rev>` holding key `mesh` (as k8s-openapi decodes it, from a watch).
pub(crate) fn is_mesh_config_map(cm: &k8s_openapi::api::core::v1::ConfigMap) -> bool {
    is_mesh_config(&ConfigMap::from_k8s(cm))
}

/// `istio` or `istio-<rev>` holding key `mesh`.
pub(crate) fn is_mesh_config(cm: &ConfigMap<'_>) -> bool {
    let name = cm.name();
    let named =
        name == MESH_CONFIG_MAP || name.strip_prefix("istio-").is_some_and(|r| !r.is_empty());
    named && cm.has(MESH_KEY)
}

/// `istio-cni-config` (as k8s-openapi decodes it, from a watch).
pub(crate) fn is_cni_config_map(cm: &k8s_openapi::api::core::v1::ConfigMap) -> bool {
    is_cni_config(&ConfigMap::from_k8s(cm))
}

/// `istio-cni-config` (any namespace: the node agent may run in `kube-system`).
pub(crate) fn is_cni_config(cm: &ConfigMap<'_>) -> bool {
    cm.name() == ambient::CNI_CONFIG_MAP
}

/// The revision a MeshConfig ConfigMap belongs to: its `istio.io/rev` label, else the name suffix.
fn mesh_revision(cm: &ConfigMap<'_>) -> String {
    cm.label(REV_LABEL)
        .filter(|r| !r.is_empty())
        .or_else(|| cm.name().strip_prefix("istio-"))
        .unwrap_or(DEFAULT_REVISION)
        .to_owned()
}

fn config_map_origin(cm: &ConfigMap<'_>) -> Origin {
    Origin::ConfigMap {
        namespace: cm.namespace().unwrap_or_default().to_owned(),
        name: cm.name().to_owned(),
    }
}

fn injector_config_map_name(revision: &str) -> String {
    if revision == DEFAULT_REVISION {
        injector::INJECTOR_CONFIG_MAP.to_owned()
    } else {
        format!("{}-{revision}", injector::INJECTOR_CONFIG_MAP)
    }
}

/// Istio's `webhook` analyzer (`pkg/config/analysis/analyzers/webhook/webhook.go`): for every
/// namespace label set in {}, {istio-injection: enabled|disabled}, each with or without
/// `istio.io/rev=<r>`, and every pod label set in {}, {sidecar.istio.io/inject: true|false}, each
/// with or without `istio.io/rev=<r>` (r over the revisions and tags seen, and the `istio.io/rev`
/// values in the webhooks' selectors), at most one webhook may select.
fn configuration_overlaps(
    webhooks: &[InjectorWebhook],
    revisions: &BTreeSet<String>,
    tags: &BTreeMap<String, String>,
) -> Vec<ConfigurationOverlap> {
    let mut names: BTreeSet<&str> = revisions.iter().map(String::as_str).collect();
    names.extend(tags.keys().map(String::as_str));
    for w in webhooks {
        for sel in [&w.namespace_selector, &w.object_selector] {
            for r in sel.requirements().iter().filter(|r| r.key == REV_LABEL) {
                names.extend(r.values.iter().map(String::as_str));
            }
        }
    }
    let label_sets = |key: &str, values: [&str; 2]| -> Vec<BTreeMap<String, String>> {
        let mut base: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
        base.extend(
            values
                .iter()
                .map(|v| BTreeMap::from([(key.to_owned(), (*v).to_owned())])),
        );
        let mut all = base.clone();
        for n in &names {
            for b in &base {
                let mut m = b.clone();
                m.insert(REV_LABEL.to_owned(), (*n).to_owned());
                all.push(m);
            }
        }
        all
    };
    let ns_sets = label_sets(INJECTION_LABEL, ["enabled", "disabled"]);
    let pod_sets = label_sets(INJECT, ["true", "false"]);
    let mut out: Vec<ConfigurationOverlap> = Vec::new();
    for nl in &ns_sets {
        for pl in &pod_sets {
            let selecting: Vec<usize> = webhooks
                .iter()
                .enumerate()
                .filter(|(_, w)| w.selects(nl, pl))
                .map(|(i, _)| i)
                .collect();
            for (k, &a) in selecting.iter().enumerate() {
                for &b in &selecting[k + 1..] {
                    if !out.iter().any(|o| o.first == a && o.second == b) {
                        out.push(ConfigurationOverlap {
                            first: a,
                            second: b,
                            namespace_labels: nl.clone(),
                            pod_labels: pl.clone(),
                        });
                    }
                }
            }
        }
    }
    out
}

impl MeshContext {
    /// A builder.
    pub fn builder() -> MeshContextBuilder {
        MeshContextBuilder::default()
    }

    /// This context with other policy overrides (a policy reload): the mesh's own values stay,
    /// meshguard's policy goes over them again. Cheap next to a rebuild, and used only when the
    /// policy changes.
    pub(crate) fn with_overrides(&self, overrides: &MeshOverrides) -> MeshContext {
        let v = self.mesh_values.overridden(overrides);
        MeshContext {
            root_namespace: v.root_namespace,
            trust_domain: v.trust_domain,
            trust_domain_aliases: v.trust_domain_aliases,
            enable_auto_mtls: v.enable_auto_mtls,
            overrides: overrides.clone(),
            ..self.clone()
        }
    }

    /// The policy overrides this context was built with.
    pub fn overrides(&self) -> &MeshOverrides {
        &self.overrides
    }

    /// The context of a list of objects (manifests or a cluster listing), unrelated objects
    /// ignored.
    pub fn from_objects<'o>(
        objects: impl IntoIterator<Item = &'o DynamicObject>,
        istio_namespace: Option<&str>,
        overrides: MeshOverrides,
    ) -> MeshContext {
        let mut b = MeshContextBuilder::default();
        if let Some(ns) = istio_namespace {
            b.istio_namespace(ns);
        }
        b.overrides(overrides).objects(objects);
        b.build()
    }

    // ---- MeshConfig --------------------------------------------------------------------

    /// The namespace Istio is installed in.
    pub fn istio_namespace(&self) -> &Sourced<String> {
        &self.istio_namespace
    }

    /// The effective root namespace.
    pub fn root_namespace(&self) -> &Sourced<String> {
        &self.root_namespace
    }

    /// The effective trust domain.
    pub fn trust_domain(&self) -> &Sourced<String> {
        &self.trust_domain
    }

    /// The effective trust domain aliases.
    pub fn trust_domain_aliases(&self) -> &Sourced<Vec<String>> {
        &self.trust_domain_aliases
    }

    /// The trust domain, then its aliases.
    pub(crate) fn trust_domains(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.trust_domain.value.as_str())
            .chain(self.trust_domain_aliases.value.iter().map(String::as_str))
    }

    /// The effective `enableAutoMtls`.
    pub fn enable_auto_mtls(&self) -> &Sourced<bool> {
        &self.enable_auto_mtls
    }

    /// The MeshConfig of a revision (ConfigMap `istio` for `default`, `istio-<rev>` otherwise),
    /// when one was read.
    pub fn mesh_config(&self, revision: &str) -> Option<&MeshConfig> {
        self.mesh_configs.get(revision).map(|(_, m)| m)
    }

    // ---- injectors ---------------------------------------------------------------------

    /// No injector configuration is visible, so injection verdicts assume Istio's default
    /// injector (meshguard's label semantics). Outputs should say so once.
    pub fn assumed_default_injector(&self) -> bool {
        self.configurations.is_empty()
    }

    /// The revisions that have their own injector configuration (not counting tags).
    pub fn revisions(&self) -> &BTreeSet<String> {
        &self.revisions
    }

    /// Revision tags: tag → revision.
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.tags
    }

    /// The revision a name refers to: a tag's revision, or the name itself when it is a revision.
    pub fn resolve<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        if let Some(rev) = self.tags.get(name) {
            return Some(rev);
        }
        self.revisions.contains(name).then_some(name)
    }

    /// Whether labelling a namespace (or a pod) `istio.io/rev=<name>` sends its pods to an injector:
    /// some injector webhook selects such a namespace with a plain pod, or such a pod in an
    /// unlabelled namespace. With no injector visible every name is assumed served (meshguard's
    /// label semantics), so check [`MeshContext::assumed_default_injector`] first when that matters.
    pub fn serves(&self, name: &str) -> bool {
        self.serves_namespace(name) || self.serves_pod(name)
    }

    /// Whether a namespace labelled `istio.io/rev=<name>` (and nothing else) has its plain pods
    /// sent to an injector. `true` with no injector visible.
    pub(crate) fn serves_namespace(&self, name: &str) -> bool {
        let rev = [(REV_LABEL, name)];
        self.assumed_default_injector() || self.webhooks.iter().any(|w| w.selects(&rev, &NO_LABELS))
    }

    /// Whether a pod labelled `istio.io/rev=<name>` in an unlabelled namespace is sent to an
    /// injector. `true` with no injector visible.
    pub(crate) fn serves_pod(&self, name: &str) -> bool {
        let rev = [(REV_LABEL, name)];
        self.assumed_default_injector() || self.webhooks.iter().any(|w| w.selects(&NO_LABELS, &rev))
    }

    /// Every injector webhook that receives Pod CREATEs, in kube-apiserver's order.
    pub fn webhooks(&self) -> &[InjectorWebhook] {
        &self.webhooks
    }

    /// Injector webhooks whose `rules` do not cover Pod CREATE (they never inject a pod).
    pub fn inert_webhooks(&self) -> &[InjectorWebhook] {
        &self.inert_webhooks
    }

    /// The injector configurations (read or assumed), by revision.
    pub fn injectors(&self) -> &[InjectorConfig] {
        &self.injectors
    }

    /// The injector configuration of a revision or tag.
    pub fn injector(&self, name: &str) -> Option<&InjectorConfig> {
        let rev = self.tags.get(name).map_or(name, String::as_str);
        self.injectors.iter().find(|c| c.revision == rev)
    }

    /// The proxy image a new pod without image annotations gets from this revision's (or tag's)
    /// injector, when its `values` are known.
    pub fn proxy_image(&self, name: &str) -> Option<&str> {
        self.injector(name)?.proxy_image.as_deref()
    }

    /// The proxy image a new pod with these annotations gets from this revision's (or tag's)
    /// injector (`sidecar.istio.io/proxyImage`, `sidecar.istio.io/proxyImageType`,
    /// `proxy.istio.io/config` taken into account).
    pub(crate) fn proxy_image_for<A: Labels + ?Sized>(
        &self,
        name: &str,
        annotations: &A,
    ) -> Option<Cow<'_, str>> {
        self.injector(name)?.proxy_image_for(annotations)
    }

    /// The injector webhooks that select a Pod CREATE with these labels, in kube-apiserver's order.
    pub(crate) fn selecting_webhooks<'a, N, P>(
        &'a self,
        namespace: &'a str,
        ns_labels: &'a N,
        pod_labels: &'a P,
    ) -> impl Iterator<Item = &'a InjectorWebhook> + 'a
    where
        N: Labels + ?Sized,
        P: Labels + ?Sized,
    {
        let ns = NamespaceLabels {
            name: namespace,
            labels: ns_labels,
        };
        self.webhooks
            .iter()
            .filter(move |w| w.selects(&ns, pod_labels))
    }

    /// Two injector webhooks that both select this pod (double injection), when there are.
    pub fn overlap<'a, N, P>(
        &'a self,
        namespace: &'a str,
        ns_labels: &'a N,
        pod_labels: &'a P,
    ) -> Option<(&'a InjectorWebhook, &'a InjectorWebhook)>
    where
        N: Labels + ?Sized,
        P: Labels + ?Sized,
    {
        let mut it = self.selecting_webhooks(namespace, ns_labels, pod_labels);
        let first = it.next()?;
        it.next().map(|second| (first, second))
    }

    /// Webhook pairs that can both select the same pod, found the way Istio's `webhook` analyzer
    /// looks for them (IST0139), independent of the namespaces and pods that exist.
    pub(crate) fn configuration_overlaps(
        &self,
    ) -> impl Iterator<Item = (&InjectorWebhook, &InjectorWebhook, &ConfigurationOverlap)> {
        self.overlaps
            .iter()
            .filter_map(|o| Some((self.webhooks.get(o.first)?, self.webhooks.get(o.second)?, o)))
    }

    /// Whether a plain pod (no labels or annotations of its own) created in this namespace gets a
    /// sidecar: the namespace-level verdict (`ns-injection-missing`).
    pub(crate) fn namespace_injection<'a, N: Labels + ?Sized>(
        &'a self,
        namespace: &'a str,
        ns_labels: &'a N,
    ) -> InjectionDecision<'a> {
        self.injection(namespace, ns_labels, &NO_LABELS, &NO_LABELS, false)
    }

    /// Whether a Pod CREATE with these labels gets a sidecar, from which injector, and why.
    ///
    /// `ns_labels` are the namespace's labels (`kubernetes.io/metadata.name` is filled in from
    /// `namespace` when missing); `pod_labels` / `pod_annotations` the pod's (or pod template's).
    /// Allocation-free.
    pub fn injection<'a, N, P, A>(
        &'a self,
        namespace: &'a str,
        ns_labels: &'a N,
        pod_labels: &'a P,
        pod_annotations: &'a A,
        host_network: bool,
    ) -> InjectionDecision<'a>
    where
        N: Labels + ?Sized,
        P: Labels + ?Sized,
        A: Labels + ?Sized,
    {
        let setting = pod_setting(pod_labels, pod_annotations);
        if self.assumed_default_injector() {
            return InjectionDecision::assume_default(
                namespace,
                ns_labels,
                pod_labels,
                setting,
                host_network,
                self.assumed_by_default,
            );
        }
        let mut d = InjectionDecision {
            inject: false,
            why: Why::NotSelected,
            webhook: None,
            also: None,
            injector: None,
            setting,
            label: None,
            namespace,
            assumed: false,
        };
        let mut first: Option<(&InjectorWebhook, &InjectorConfig, Why)> = None;
        for w in self.selecting_webhooks(namespace, ns_labels, pod_labels) {
            let Some(cfg) = self.injectors.get(w.injector) else {
                continue;
            };
            match first {
                None => {
                    let (inject, why) =
                        inject_required(cfg, namespace, pod_labels, setting, host_network);
                    first = Some((w, cfg, why));
                    if inject {
                        d.inject = true;
                        d.why = why;
                        d.webhook = Some(w);
                        d.injector = Some(cfg);
                    }
                }
                Some(_) => {
                    if d.also.is_none() {
                        d.also = Some(w);
                    }
                    if !d.inject {
                        let (inject, why) =
                            inject_required(cfg, namespace, pod_labels, setting, host_network);
                        if inject {
                            d.inject = true;
                            d.why = why;
                            d.webhook = Some(w);
                            d.injector = Some(cfg);
                        }
                    }
                }
            }
            if d.inject && d.also.is_some() {
                break;
            }
        }
        if let (false, Some((w, cfg, why))) = (d.inject, first) {
            d.why = why;
            d.webhook = Some(w);
            d.injector = Some(cfg);
        }
        d
    }

    // ---- ambient ---------------------------------------------------------------------------

    /// Ambient mode as installed: whether ztunnel captures pods, and which.
    pub fn ambient(&self) -> &AmbientInstall {
        &self.ambient
    }

    // ---- reporting ---------------------------------------------------------------------

    /// Mesh objects that could not be read (their values fell back to defaults).
    pub fn errors(&self) -> &[MeshError] {
        &self.errors
    }

    /// Observations worth a line in outputs: assumed injector configurations, disagreeing
    /// MeshConfigs, unevaluated matchConditions, duplicate tags.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The effective values and their origins, for JSON outputs (`meshContext`).
    pub fn summary(&self) -> MeshSummary {
        let sourced = |v: serde_json::Value, o: &Origin| SourcedValue {
            value: v,
            source: o.to_string(),
        };
        MeshSummary {
            istio_namespace: sourced(
                self.istio_namespace.value.clone().into(),
                &self.istio_namespace.origin,
            ),
            root_namespace: sourced(
                self.root_namespace.value.clone().into(),
                &self.root_namespace.origin,
            ),
            trust_domain: sourced(
                self.trust_domain.value.clone().into(),
                &self.trust_domain.origin,
            ),
            trust_domain_aliases: sourced(
                self.trust_domain_aliases.value.clone().into(),
                &self.trust_domain_aliases.origin,
            ),
            enable_auto_mtls: sourced(
                self.enable_auto_mtls.value.into(),
                &self.enable_auto_mtls.origin,
            ),
            injectors: if self.assumed_default_injector() {
                "assumed-default"
            } else {
                "observed"
            },
            revisions: self
                .injectors
                .iter()
                .map(|c| RevisionSummary {
                    name: c.revision.clone(),
                    webhooks: self
                        .configurations
                        .iter()
                        .filter(|(_, rev, tag)| rev == &c.revision && tag.is_none())
                        .map(|(n, _, _)| n.clone())
                        .collect(),
                    config: c.origin.to_string(),
                    policy: c.policy.to_string(),
                    proxy_image: c.proxy_image.clone(),
                    enable_namespaces_by_default: c.enable_namespaces_by_default,
                })
                .collect(),
            tags: self.tags.clone(),
            ambient: AmbientSummary {
                state: if self.ambient.assumed {
                    "assumed-default"
                } else {
                    "observed"
                },
                enabled: sourced(self.ambient.enabled.value.into(), &self.ambient.enabled.origin),
                exclude_namespaces: sourced(
                    self.ambient.exclude_namespaces.value.clone().into(),
                    &self.ambient.exclude_namespaces.origin,
                ),
                enablement_selectors: sourced(
                    self.ambient
                        .selectors
                        .value
                        .iter()
                        .map(|e| {
                            serde_json::json!({"pods": e.pod.to_string(), "namespaces": e.namespace.to_string()})
                        })
                        .collect::<Vec<_>>()
                        .into(),
                    &self.ambient.selectors.origin,
                ),
                ztunnel: self.ambient.ztunnel.clone(),
                cni: self.ambient.cni.clone(),
            },
            errors: self.errors.iter().map(ToString::to_string).collect(),
            notes: self.notes.clone(),
        }
    }
}

/// The mesh context as JSON (`meshContext` in `check`/`audit` output).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshSummary {
    pub istio_namespace: SourcedValue,
    pub root_namespace: SourcedValue,
    pub trust_domain: SourcedValue,
    pub trust_domain_aliases: SourcedValue,
    pub enable_auto_mtls: SourcedValue,
    /// `observed`, or `assumed-default` when no injector is visible.
    pub injectors: &'static str,
    pub revisions: Vec<RevisionSummary>,
    pub tags: BTreeMap<String, String>,
    /// Ambient mode as installed.
    pub ambient: AmbientSummary,
    pub errors: Vec<String>,
    pub notes: Vec<String>,
}

/// Ambient mode as installed, with where each value came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AmbientSummary {
    /// `observed`, or `assumed-default` when no ztunnel or istio-cni is visible.
    pub state: &'static str,
    pub enabled: SourcedValue,
    pub(crate) exclude_namespaces: SourcedValue,
    pub(crate) enablement_selectors: SourcedValue,
    /// ztunnel DaemonSets seen (`namespace/name`).
    pub ztunnel: Vec<String>,
    /// istio-cni DaemonSets seen.
    pub cni: Vec<String>,
}

/// A value with its origin, in words.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourcedValue {
    pub value: serde_json::Value,
    pub source: String,
}

/// One revision's injector.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSummary {
    pub name: String,
    /// Its own MutatingWebhookConfigurations (tags are listed under `tags`).
    pub webhooks: Vec<String>,
    /// Where its injector configuration came from.
    pub config: String,
    pub policy: String,
    pub(crate) proxy_image: Option<String>,
    pub(crate) enable_namespaces_by_default: bool,
}

impl fmt::Display for MeshContext {
    /// A few lines for text headers (`check`, `audit`, the `serve` log).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.root_namespace;
        let t = &self.trust_domain;
        writeln!(f, "root namespace: {} ({})", r.value, r.origin)?;
        write!(f, "trust domain: {} ({})", t.value, t.origin)?;
        let a = &self.trust_domain_aliases;
        if a.value.is_empty() {
            writeln!(f, ", no aliases")?;
        } else {
            writeln!(f, ", aliases {} ({})", a.value.join(", "), a.origin)?;
        }
        let m = &self.enable_auto_mtls;
        writeln!(f, "enableAutoMtls: {} ({})", m.value, m.origin)?;
        if self.assumed_default_injector() {
            write!(
                f,
                "injectors: none visible; injection verdicts assume Istio's default injector (namespace label istio-injection=enabled or istio.io/rev)"
            )?;
            if self.assumed_by_default {
                write!(
                    f,
                    ", and its ConfigMap {INJECTOR_CONFIG_MAP} sets enableNamespacesByDefault, so unlabelled namespaces are injected too"
                )?;
            }
        } else {
            write!(f, "injectors:")?;
            for (i, c) in self.injectors.iter().enumerate() {
                let sep = if i == 0 { " revision" } else { ", revision" };
                write!(f, "{sep} {} (policy {}", c.revision, c.policy)?;
                if let Some(img) = &c.proxy_image {
                    write!(f, ", proxy {img}")?;
                }
                if !c.observed() {
                    write!(f, ", configuration assumed")?;
                }
                write!(f, ")")?;
            }
            for (tag, rev) in &self.tags {
                write!(f, ", tag {tag} → {rev}")?;
            }
        }
        write!(f, "\n{}", self.ambient.describe())?;
        for e in &self.errors {
            write!(f, "\nerror: {e}")?;
        }
        for n in &self.notes {
            write!(f, "\nnote: {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
