//! One loader for the batch front ends (`check`, `audit`, `simulate`, `test`, `report`, and
//! `diff`'s policy): their shared flags, and the way from those flags to what a run needs — the
//! policy, the objects (manifests or a live cluster, read-only), the mesh as installed, the
//! PolicyExceptions and the notes about what could not be read and was assumed instead.
//!
//! The flags come in groups that every command flattens (`#[command(flatten)]`), so one flag
//! means one thing, with one help text, wherever it appears:
//!
//! * `--config` in [`PolicyArgs`];
//! * the manifests (`PATH…`) and `-n/--namespace` in [`InputArgs`]; `--kubeconfig` and
//!   `--context` in [`ClusterArgs`] (with `--cluster` in [`LiveArgs`], for the commands that
//!   read either);
//! * `--mesh-config` and `--istio-namespace` in [`MeshArgs`].
//!
//! Reading is [`Loader`]'s: [`Loader::new`] reads the policy and the `--mesh-config` file
//! (refused before anything else is read), then `Loader::manifests` (or `manifests_strict`) or
//! `Loader::installed` (+ `Loader::cluster`) read the objects and build the mesh context the
//! same way for every command. The reading halves sit beside what they call, so that the
//! modules stay acyclic: the manifest half in [`crate::check`] (beside `prepare`), the cluster
//! half in [`crate::audit`] (beside `collect`); this module depends on neither.

use crate::config::exceptions::Exception;
use crate::config::Policy;
use crate::engine::Engine;
use crate::inventory::Inventory;
use crate::mesh::MeshContext;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

/// `--config`: the policy.
#[derive(Clone, Debug, Default, Args)]
pub struct PolicyArgs {
    /// Policy configuration (YAML): rule actions and exemptions, exceptions, and the mesh values
    /// meshguard sets itself (root namespace, trust domain). Without it the built-in policy is
    /// used.
    #[arg(long, env = "MESHGUARD_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The manifests and the namespace of objects that name none.
#[derive(Clone, Debug, Args)]
pub struct InputArgs {
    /// Manifests: files, directories (searched recursively for *.yaml, *.yml, *.json) or `-`
    /// for stdin.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Namespace of objects that name none (as `kubectl apply` without `-n`).
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
}

/// Which cluster to read (read-only).
#[derive(Clone, Debug, Default, Args)]
pub struct ClusterArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
}

/// `--cluster` instead of manifests, and which cluster. `--kubeconfig` and `--context` without
/// `--cluster` are refused after parsing ([`LiveArgs::stray_flag`], `cli::Cli::parse_checked`):
/// clap's own `requires` would word it as "required arguments were not provided: --cluster
/// <PATH>...", which names both ways out as if both were missing.
#[derive(Clone, Debug, Default, Args)]
pub struct LiveArgs {
    /// Read the objects from the live cluster (read-only, as `audit` does) instead of
    /// manifests.
    #[arg(long)]
    pub cluster: bool,
    #[command(flatten)]
    pub kube: ClusterArgs,
}

impl LiveArgs {
    /// The cluster flag given without `--cluster`, which would otherwise be ignored.
    pub(crate) fn stray_flag(&self) -> Option<&'static str> {
        if self.cluster {
            None
        } else if self.kube.kubeconfig.is_some() {
            Some("--kubeconfig")
        } else if self.kube.context.is_some() {
            Some("--context")
        } else {
            None
        }
    }
}

/// The mesh as installed, where the input does not say (or says otherwise).
#[derive(Clone, Debug, Default, Args)]
pub struct MeshArgs {
    /// The mesh's MeshConfig: a MeshConfig YAML file, or the `istio` ConfigMap holding it under
    /// `data.mesh` (root namespace, trust domain and aliases, enableAutoMtls). It wins over the
    /// MeshConfig ConfigMaps of the manifests or the cluster; meshguard's policy file wins over
    /// both.
    #[arg(long, value_name = "FILE")]
    pub mesh_config: Option<PathBuf>,
    /// The namespace Istio is installed in, where its ConfigMaps (`istio[-<rev>]`,
    /// `istio-sidecar-injector[-<rev>]`) count (default: the namespace the injector webhooks
    /// call, else istio-system). ConfigMaps of manifests without a namespace count as being in
    /// it.
    #[arg(long, value_name = "NAMESPACE")]
    pub istio_namespace: Option<String>,
}

/// The policy and the mesh flags, read: what every run starts from.
#[derive(Debug)]
pub struct Loader {
    pub policy: Policy,
    /// Where the policy came from: its path, or `built-in policy`.
    pub(crate) policy_source: String,
    /// `--mesh-config`: its path and text (already validated).
    pub(crate) mesh_config: Option<(String, String)>,
    pub(crate) istio_namespace: Option<String>,
}

/// What a run judges or asks about, with the mesh it runs in.
#[derive(Debug)]
pub struct Loaded {
    pub inventory: Inventory,
    /// The mesh as installed (objects of the input or the cluster, and the mesh flags); the
    /// policy's overrides are not applied (the engine applies them).
    pub mesh: MeshContext,
    /// PolicyExceptions of the input or the cluster.
    pub exceptions: Vec<Exception>,
    /// What could not be read and what was assumed instead.
    pub notes: Vec<String>,
}

/// The mesh and the PolicyExceptions of a live cluster (its objects are read apart: whole by
/// [`Loader::cluster`], or a batch of namespaces at a time by `audit`).
pub struct Installed {
    pub client: kube::Client,
    pub mesh: MeshContext,
    pub exceptions: Vec<Exception>,
    pub notes: Vec<String>,
}

impl Loader {
    /// Read the policy (`--config`, else the built-in one) and the `--mesh-config` file.
    pub fn new(policy: &PolicyArgs, mesh: &MeshArgs) -> Result<Loader, String> {
        let (policy, policy_source) = match &policy.config {
            Some(p) => (
                crate::catalogue::load_policy(p).map_err(|e| e.to_string())?,
                p.display().to_string(),
            ),
            None => (Policy::builtin(), "built-in policy".to_owned()),
        };
        let mesh_config = match &mesh.mesh_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read --mesh-config {}: {e}", path.display()))?;
                let origin = format!("--mesh-config {}", path.display());
                crate::mesh::MeshConfig::from_file_text(&text, &origin)
                    .map_err(|e| e.to_string())?;
                Some((path.display().to_string(), text))
            }
            None => None,
        };
        Ok(Loader {
            policy,
            policy_source,
            mesh_config,
            istio_namespace: mesh.istio_namespace.clone(),
        })
    }

    /// The mesh flags applied to a mesh context being built from a cluster.
    pub(crate) fn apply_flags(&self, b: &mut crate::mesh::MeshContextBuilder) {
        if let Some(ns) = &self.istio_namespace {
            b.istio_namespace_from_flag(ns, "--istio-namespace");
        }
        if let Some((path, text)) = &self.mesh_config {
            b.mesh_config_file(path, text);
        }
    }

    /// The engine that judges a run: the policy, the mesh as installed (the policy's overrides
    /// applied), the PolicyExceptions, meshguard's own namespace.
    pub fn engine(
        &self,
        mesh: MeshContext,
        exceptions: Vec<Exception>,
        own_namespace: Option<&str>,
    ) -> Engine {
        Engine::new(self.policy.clone(), Arc::new(mesh), own_namespace)
            .with_exception_resources(exceptions)
    }

    /// The mesh an authorization decision runs in (`simulate`, `test`): as installed, with the
    /// policy's overrides applied, as the engine does.
    pub(crate) fn decision_mesh(&self, installed: &MeshContext) -> MeshContext {
        installed.with_overrides(&self.policy.mesh_overrides())
    }
}
