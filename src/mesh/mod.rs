//! The mesh as installed: what Istio itself reads to decide who gets a sidecar and which trust
//! domain and root namespace apply, so that verdicts follow the real mesh instead of label folklore.
//!
//! A [`MeshContext`] is built once per snapshot of the mesh's configuration (when a watched object
//! changes, when `audit` lists the cluster, when `check` reads its input) from:
//!
//! * **MeshConfig** — ConfigMap `istio` / `istio-<rev>` in the Istio namespace, key `mesh`
//!   ([`mesh_config`], the typed model's [`crate::model::mesh_config`]): root namespace, trust
//!   domain and aliases, `enableAutoMtls`, the proxy image type;
//! * **injector webhooks** — the MutatingWebhookConfigurations that are Istio sidecar injectors or
//!   revision tags ([`injector`]): their selectors decide whether kube-apiserver sends a pod to an
//!   injector at all ([`selector`]);
//! * **injector ConfigMaps** — `istio-sidecar-injector[-<rev>]`, keys `config` and `values`: what
//!   the injector then decides (`injectRequired`) and the proxy image it puts in.
//!
//! Queries ([`MeshContext::injection`], [`MeshContext::serves`], …) are cheap and allocation-free,
//! so they can run on the admission path. The module does no I/O: callers hand it objects.
//!
//! meshguard's own policy can override the root namespace, trust domain, aliases and
//! `enableAutoMtls` ([`MeshOverrides`]); every effective value carries its [`Origin`], so outputs
//! can say where it came from. With no injector visible, injection verdicts assume Istio's default
//! injector ([`MeshContext::assumed_default_injector`]; see [`decision`]).

pub mod ambient;
pub mod context;
pub mod decision;
pub mod injector;
/// The MeshConfig model ([`crate::model::mesh_config`]), under the name the mesh's readers use.
pub use crate::model::mesh_config;
pub mod selector;
#[cfg(test)]
pub(crate) mod testing;

pub use crate::model::labels::{PodSetting, SettingSource};
pub use crate::model::mesh_config::{MeshConfig, MeshError};
pub use ambient::{AmbientInstall, Capture};
pub use context::{ConfigurationOverlap, MeshContext, MeshContextBuilder, MeshSummary};
pub use decision::InjectionDecision;
pub use injector::Why;
pub use injector::{
    same_proxy_release, FailurePolicy, InjectValues, InjectionPolicy, InjectorConfig,
    InjectorWebhook, DEFAULT_REVISION, IGNORED_NAMESPACES,
};
pub use selector::{Labels, NamespaceLabels, NoLabels, Selector};

use serde::Serialize;
use std::fmt;

/// Where an effective value came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Origin {
    /// meshguard's own policy file, which wins over the mesh.
    Policy,
    /// A meshguard command-line flag (e.g. `--istio-namespace`).
    Flag { name: String },
    /// A ConfigMap in the cluster or in the input.
    ConfigMap { namespace: String, name: String },
    /// A file given to meshguard (`check --mesh-config`).
    File { path: String },
    /// Inferred from an injector webhook's `clientConfig.service` (the Istio namespace).
    Webhook { configuration: String },
    /// A DaemonSet seen in the cluster or the input (ztunnel, istio-cni).
    DaemonSet { namespace: String, name: String },
    /// Istio's built-in default (or, for injectors, Istio's chart defaults).
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Policy => f.write_str("meshguard policy"),
            Origin::Flag { name } => write!(f, "flag {name}"),
            Origin::ConfigMap { namespace, name } if namespace.is_empty() => {
                write!(f, "ConfigMap {name}")
            }
            Origin::ConfigMap { namespace, name } => write!(f, "ConfigMap {namespace}/{name}"),
            Origin::File { path } => write!(f, "file {path}"),
            Origin::Webhook { configuration } => {
                write!(f, "MutatingWebhookConfiguration {configuration}")
            }
            Origin::DaemonSet { namespace, name } => write!(f, "DaemonSet {namespace}/{name}"),
            Origin::Default => f.write_str("Istio default"),
        }
    }
}

/// A value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Sourced<T> {
    pub fn new(value: T, origin: Origin) -> Self {
        Sourced { value, origin }
    }
}

/// Values meshguard's policy sets itself; each one set wins over the mesh's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshOverrides {
    pub root_namespace: Option<String>,
    pub trust_domain: Option<String>,
    /// Replaces the mesh's aliases when set.
    pub trust_domain_aliases: Option<Vec<String>>,
    pub enable_auto_mtls: Option<bool>,
}
