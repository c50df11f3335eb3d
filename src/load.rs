//! One loader for the batch front ends (`check`, `audit`, `simulate`, `test`, `report`, and
//! `diff`'s policy): their shared flags, and the way from those flags to what a run needs — the
//! policy, the objects (manifests or a live cluster, read-only), the mesh as installed, the
//! PolicyExceptions and the notes about what could not be read and was assumed instead.
//!
//! The flags come in groups that every command flattens (`#[command(flatten)]`), so one flag
//! means one thing, with one help text, wherever it appears:
//!
//! * [`PolicyArgs`]: `--config`;
//! * [`InputArgs`]: the manifests (`PATH…`) and `-n/--namespace`; [`ClusterArgs`]:
//!   `--kubeconfig`, `--context` (and `--cluster` in [`LiveArgs`] for the commands that read
//!   either);
//! * [`MeshArgs`]: `--mesh-config`, `--istio-namespace`.
//!
//! Reading is [`Loader`]'s: [`Loader::new`] reads the policy and the `--mesh-config` file
//! (refused before anything else is read), then [`Loader::manifests`] or
//! [`Loader::installed`] (+ [`Loader::cluster`]) read the objects and build the mesh context
//! the same way for every command.

use crate::audit::AuditError;
use crate::check::Prepared;
use crate::config::exceptions::Exception;
use crate::config::Policy;
use crate::engine::Engine;
use crate::inventory::Inventory;
use crate::mesh::MeshContext;
use clap::Args;
use std::io::Read;
use std::path::{Path, PathBuf};
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

/// `--cluster` instead of manifests, and which cluster.
#[derive(Clone, Debug, Default, Args)]
#[command(
    mut_arg("kubeconfig", |a| a.requires("cluster")),
    mut_arg("context", |a| a.requires("cluster"))
)]
pub struct LiveArgs {
    /// Read the objects from the live cluster (read-only, as `audit` does) instead of
    /// manifests.
    #[arg(long)]
    pub cluster: bool,
    #[command(flatten)]
    pub kube: ClusterArgs,
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
    pub policy_source: String,
    /// `--mesh-config`: its path and text (already validated).
    mesh_config: Option<(String, String)>,
    istio_namespace: Option<String>,
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

/// Manifests as read: the documents (for `check --fix`) and what `check` prepared of them.
#[derive(Debug)]
pub struct Manifests {
    pub documents: crate::manifest::Loaded,
    pub prepared: Prepared,
    pub mesh: MeshContext,
    pub exceptions: Vec<Exception>,
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
    fn apply_flags(&self, b: &mut crate::mesh::MeshContextBuilder) {
        if let Some(ns) = &self.istio_namespace {
            b.istio_namespace_from_flag(ns, "--istio-namespace");
        }
        if let Some((path, text)) = &self.mesh_config {
            b.mesh_config_file(path, text);
        }
    }

    /// Read manifests (`-` from `stdin`), leaving out the files of `skip` (test files inside
    /// manifest directories). `keep_values`: keep the documents' JSON (`check --fix`);
    /// `complete`: the manifests are the whole cluster.
    pub fn manifests(
        &self,
        paths: &[PathBuf],
        stdin: &mut dyn Read,
        namespace: &str,
        complete: bool,
        keep_values: bool,
        skip: &[PathBuf],
    ) -> Result<Manifests, String> {
        let mut documents = crate::manifest::load_from(paths, stdin).map_err(|e| e.to_string())?;
        if !skip.is_empty() {
            let skipped: Vec<PathBuf> = skip.iter().filter_map(|p| p.canonicalize().ok()).collect();
            let is_skipped = |file: &str| {
                Path::new(file)
                    .canonicalize()
                    .is_ok_and(|f| skipped.contains(&f))
            };
            documents.objects.retain(|o| !is_skipped(&o.file));
            documents.errors.retain(|e| !is_skipped(&e.file));
        }
        let prepared = crate::check::prepare(&mut documents, namespace, keep_values, complete);
        let mesh = self.manifests_mesh(&prepared);
        let exceptions = crate::config::exceptions::from_objects(&prepared.mesh_objects);
        Ok(Manifests {
            documents,
            prepared,
            mesh,
            exceptions,
        })
    }

    /// The mesh context of manifests: the mesh objects of the input (MeshConfig and injector
    /// ConfigMaps, injector webhooks, ztunnel's and istio-cni's DaemonSets) and the mesh flags.
    pub fn manifests_mesh(&self, prepared: &Prepared) -> MeshContext {
        crate::check::mesh_context(
            prepared,
            self.mesh_config
                .as_ref()
                .map(|(p, t)| (p.as_str(), t.as_str())),
            self.istio_namespace.as_deref(),
        )
    }

    /// Read manifests that must all parse (`simulate`, `test`, `diff`): a document that does
    /// not is an error, not a finding.
    pub fn manifests_strict(
        &self,
        paths: &[PathBuf],
        stdin: &mut dyn Read,
        namespace: &str,
        skip: &[PathBuf],
    ) -> Result<Loaded, String> {
        let m = self.manifests(paths, stdin, namespace, false, false, skip)?;
        if !m.prepared.errors.is_empty() {
            let list: Vec<String> = m.prepared.errors.iter().map(ToString::to_string).collect();
            return Err(format!(
                "cannot read the manifests:\n  {}",
                list.join("\n  ")
            ));
        }
        Ok(Loaded {
            inventory: m.prepared.inventory,
            mesh: m.mesh,
            exceptions: m.exceptions,
            notes: Vec::new(),
        })
    }

    /// Connect to a cluster and read the mesh as installed there (injector webhooks, Istio's
    /// ConfigMaps, ztunnel and istio-cni) with the mesh flags, and, with `exceptions`, its
    /// PolicyExceptions. Kinds that are forbidden or absent become notes.
    pub async fn installed(
        &self,
        cluster: &ClusterArgs,
        exceptions: bool,
    ) -> Result<Installed, AuditError> {
        let client =
            crate::audit::client(cluster.kubeconfig.as_ref(), cluster.context.as_deref()).await?;
        let read = crate::mesh_watch::read(&client, self.istio_namespace.as_deref())
            .await
            .map_err(|source| AuditError::List {
                what: "the mesh's injector webhooks and ConfigMaps".to_owned(),
                source,
            })?;
        let mut builder = read.builder;
        self.apply_flags(&mut builder);
        let mut notes = read.notes;
        let mut listed = Vec::new();
        if exceptions {
            let (found, note) = crate::exception_watch::list(&client)
                .await
                .map_err(|source| AuditError::List {
                    what: "PolicyExceptions".to_owned(),
                    source,
                })?;
            listed = found;
            notes.extend(note);
        }
        Ok(Installed {
            client,
            mesh: builder.build(),
            exceptions: listed,
            notes,
        })
    }

    /// Read a whole cluster (read-only): [`Loader::installed`], then every supported kind. The
    /// listing is complete: what it lacks does not exist. Notes: the mesh's first, then the
    /// kinds not served.
    pub fn cluster(&self, cluster: &ClusterArgs, exceptions: bool) -> Result<Loaded, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        runtime
            .block_on(async {
                let installed = self.installed(cluster, exceptions).await?;
                let collected = crate::audit::collect(&installed.client, 500, None).await?;
                let mut notes = collected.notes;
                notes.extend(installed.notes);
                Ok::<_, AuditError>(Loaded {
                    inventory: Inventory::complete(collected.objects),
                    mesh: installed.mesh,
                    exceptions: installed.exceptions,
                    notes,
                })
            })
            .map_err(|e| e.to_string())
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
    pub fn decision_mesh(&self, installed: &MeshContext) -> MeshContext {
        installed.with_overrides(&self.policy.mesh_overrides())
    }
}
