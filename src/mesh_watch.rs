//! Reading the mesh as installed from the API server: Istio's injector
//! MutatingWebhookConfigurations (cluster-wide), its ConfigMaps in the Istio namespace
//! (`istio[-<rev>]`, `istio-sidecar-injector[-<rev>]`, istio-cni's `istio-cni-config`) and the
//! ztunnel and istio-cni DaemonSets (cluster-wide: ambient as installed), turned into a
//! [`MeshContextBuilder`] by [`crate::mesh`].
//!
//! * [`read`]: one list of each (`meshguard audit`).
//! * [`spawn`]: `meshguard serve`'s two `kube::runtime` watches. Only Istio's objects are kept, and
//!   only what the mesh context reads of them (no managedFields, annotations or webhook CA
//!   bundles), so the watch costs a few KB however many other webhooks and ConfigMaps exist.
//!   After both initial lists, and after every change that alters what is kept (debounced), the
//!   callback gets a fresh builder: `serve` then rebuilds the engine.
//! * Forbidden (no RBAC for these kinds) or absent: a note (logged once by `serve`) and the
//!   fallback of an empty mesh, in which verdicts assume Istio's default injector. The watch keeps
//!   retrying in the background and picks the objects up when access is granted. Readiness does
//!   not wait for a forbidden kind.

use crate::mesh::injector::identify;
use crate::mesh::{InjectorConfig, MeshContext, MeshContextBuilder};
use crate::metrics::Metrics;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The Istio namespace when nothing says otherwise (defined once, with the mesh context).
pub use crate::mesh::context::DEFAULT_ISTIO_NAMESPACE;

/// How long the watch waits for more changes before it rebuilds (a `helm upgrade` changes several
/// objects at once).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// A ConfigMap the mesh context reads: a MeshConfig (`istio`, `istio-<rev>` with key `mesh`) or an
/// injector configuration.
fn is_mesh_config_map(cm: &ConfigMap) -> bool {
    InjectorConfig::is_injector_config_map(cm)
        || crate::mesh::context::is_mesh_config_map(cm)
        || crate::mesh::context::is_cni_config_map(cm)
}

/// What is kept of a ztunnel or istio-cni DaemonSet: its name, namespace and pod labels (how
/// [`crate::mesh::ambient::component`] recognises it); `None` for any other DaemonSet.
fn strip_daemonset(ds: DaemonSet) -> Option<DaemonSet> {
    crate::mesh::ambient::component(&ds)?;
    let labels = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    let mut kept = DaemonSet::default();
    kept.metadata.name = ds.metadata.name;
    kept.metadata.namespace = ds.metadata.namespace;
    let mut spec = k8s_openapi::api::apps::v1::DaemonSetSpec::default();
    spec.template.metadata = Some(kube::core::ObjectMeta {
        labels,
        ..Default::default()
    });
    kept.spec = Some(spec);
    Some(kept)
}

/// What is kept of an Istio MutatingWebhookConfiguration: name, labels and webhooks, without
/// the CA bundles istiod rotates.
fn strip_webhooks(mut mwc: MutatingWebhookConfiguration) -> MutatingWebhookConfiguration {
    let meta = std::mem::take(&mut mwc.metadata);
    mwc.metadata.name = meta.name;
    mwc.metadata.labels = meta.labels;
    for w in mwc.webhooks.iter_mut().flatten() {
        w.client_config.ca_bundle = None;
    }
    mwc
}

/// What is kept of one of Istio's ConfigMaps: name, namespace, labels and data.
fn strip_config_map(mut cm: ConfigMap) -> ConfigMap {
    let meta = std::mem::take(&mut cm.metadata);
    cm.metadata.name = meta.name;
    cm.metadata.namespace = meta.namespace;
    cm.metadata.labels = meta.labels;
    cm.binary_data = None;
    cm
}

fn is_forbidden_or_absent(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 || s.code == 404)
}

/// The mesh objects as read once, and why some could not be.
#[derive(Debug, Default)]
pub struct MeshRead {
    pub builder: MeshContextBuilder,
    /// Kinds that could not be read (forbidden, absent): their objects count as absent.
    pub notes: Vec<String>,
}

/// List Istio's injector webhooks and ConfigMaps once (`audit`). The Istio namespace is
/// `istio_namespace` when given, else the one the injector webhooks call, else istio-system.
/// Forbidden or absent kinds become notes; other errors are returned.
pub async fn read(client: &Client, istio_namespace: Option<&str>) -> Result<MeshRead, kube::Error> {
    let mut out = MeshRead::default();
    if let Some(ns) = istio_namespace {
        out.builder
            .istio_namespace_from_flag(ns, "--istio-namespace");
    }
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    match mwcs.list(&ListParams::default()).await {
        Ok(list) => {
            for mwc in list.items {
                out.builder.webhook_configuration(&strip_webhooks(mwc));
            }
        }
        Err(e) if is_forbidden_or_absent(&e) => out.notes.push(format!(
            "cannot list MutatingWebhookConfigurations ({e}): no injector is visible, so verdicts assume Istio's default injector"
        )),
        Err(e) => return Err(e),
    }
    // The namespace the ConfigMaps live in: given, or what the webhooks just read say.
    let namespace = match istio_namespace {
        Some(ns) => ns.to_owned(),
        None => out.builder.build().istio_namespace().value.clone(),
    };
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    match cms.list(&ListParams::default()).await {
        Ok(list) => {
            for cm in list.items.into_iter().filter(is_mesh_config_map) {
                out.builder.config_map(&strip_config_map(cm));
            }
        }
        Err(e) if is_forbidden_or_absent(&e) => out.notes.push(format!(
            "cannot list ConfigMaps in namespace {namespace} ({e}): Istio's MeshConfig and injector configurations are not visible, so their defaults apply"
        )),
        Err(e) => return Err(e),
    }
    let daemonsets: Api<DaemonSet> = Api::all(client.clone());
    match daemonsets.list(&ListParams::default()).await {
        Ok(list) => {
            for ds in list.items.into_iter().filter_map(strip_daemonset) {
                out.builder.daemonset(&ds);
            }
        }
        Err(e) if is_forbidden_or_absent(&e) => out.notes.push(format!(
            "cannot list DaemonSets ({e}): ztunnel and istio-cni are not visible, so Istio's ambient defaults are assumed"
        )),
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// What the watches hold.
#[derive(Debug, Default)]
struct State {
    webhooks: BTreeMap<String, MutatingWebhookConfiguration>,
    config_maps: BTreeMap<String, ConfigMap>,
    /// ztunnel and istio-cni DaemonSets, by `namespace/name`.
    daemonsets: BTreeMap<String, DaemonSet>,
    /// Per kind: initial list done, or given up on (forbidden).
    webhooks_ready: bool,
    config_maps_ready: bool,
    daemonsets_ready: bool,
    /// Per kind: forbidden or absent (noted once).
    notes: BTreeMap<&'static str, String>,
}

impl State {
    fn builder(&self, istio_namespace: Option<&str>) -> MeshContextBuilder {
        let mut b = MeshContext::builder();
        if let Some(ns) = istio_namespace {
            b.istio_namespace_from_flag(ns, "--istio-namespace");
        }
        for mwc in self.webhooks.values() {
            b.webhook_configuration(mwc);
        }
        for cm in self.config_maps.values() {
            b.config_map(cm);
        }
        for ds in self.daemonsets.values() {
            b.daemonset(ds);
        }
        b
    }
}

/// A mesh snapshot handed to the callback: the builder and the kinds that could not be read.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub builder: MeshContextBuilder,
    pub notes: Vec<String>,
}

/// `serve`'s watch of the mesh objects. Dropping it stops the watches.
pub struct MeshWatch {
    ready: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for MeshWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl MeshWatch {
    /// Both kinds have been listed (or found forbidden) and the first snapshot delivered.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The readiness flag, for a readiness check that outlives this handle's borrow.
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }
}

/// A cluster source that is ready only once the mesh watch is too (and owns the watch, so it runs
/// as long as the admission server holds it).
pub(crate) struct ReadyWithMesh {
    pub(crate) inner: Arc<dyn crate::context::ClusterSource>,
    pub(crate) watch: MeshWatch,
}

impl crate::context::ClusterSource for ReadyWithMesh {
    fn view(&self) -> &dyn crate::context::ClusterView {
        self.inner.view()
    }

    fn prepare<'a>(
        &'a self,
        lookups: &'a [crate::context::LookupKey],
        deadline: Duration,
    ) -> futures::future::BoxFuture<'a, ()> {
        self.inner.prepare(lookups, deadline)
    }

    fn synced(&self) -> bool {
        self.inner.synced() && self.watch.ready()
    }
}

/// Start watching; `on_change` gets the first snapshot once both kinds are listed (or
/// forbidden), then one per change of what is kept. `istio_namespace`: where the ConfigMaps are
/// watched; `explicit`: it was given on the command line (else the mesh context may infer another
/// one from the webhooks, and the snapshot's notes say so). Must be called inside a tokio
/// runtime.
pub fn spawn(
    client: Client,
    istio_namespace: String,
    explicit: bool,
    metrics: Option<Metrics>,
    on_change: impl Fn(Snapshot) + Send + Sync + 'static,
) -> MeshWatch {
    spawn_with(
        client,
        istio_namespace,
        explicit,
        metrics,
        Arc::default(),
        on_change,
    )
}

/// [`spawn`] with watches that relist and count as stale as `freshness` says.
pub(crate) fn spawn_with(
    client: Client,
    istio_namespace: String,
    explicit: bool,
    metrics: Option<Metrics>,
    freshness: Arc<crate::freshness::Freshness>,
    on_change: impl Fn(Snapshot) + Send + Sync + 'static,
) -> MeshWatch {
    let state = Arc::new(Mutex::new(State::default()));
    let changed = Arc::new(Notify::new());
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(m) = &metrics {
        for r in ["mutatingwebhookconfigurations", "configmaps", "daemonsets"] {
            m.cache_synced.with_label_values(&[r]).set(0);
        }
    }
    let webhooks_task = tokio::spawn(watch_kind(
        freshness.watch(Api::<MutatingWebhookConfiguration>::all(client.clone())),
        freshness.clone(),
        state.clone(),
        changed.clone(),
        metrics.clone(),
        Kept {
            resource: "mutatingwebhookconfigurations",
            keep: |mwc: MutatingWebhookConfiguration| {
                identify(&mwc).is_some().then(|| strip_webhooks(mwc))
            },
            store: |s: &mut State| &mut s.webhooks,
            ready: |s: &mut State| &mut s.webhooks_ready,
        },
    ));
    let daemonsets_task = tokio::spawn(watch_kind(
        freshness.watch(Api::<DaemonSet>::all(client.clone())),
        freshness.clone(),
        state.clone(),
        changed.clone(),
        metrics.clone(),
        Kept {
            resource: "daemonsets",
            keep: strip_daemonset,
            store: |s: &mut State| &mut s.daemonsets,
            ready: |s: &mut State| &mut s.daemonsets_ready,
        },
    ));
    let config_maps_task = tokio::spawn(watch_kind(
        freshness.watch(Api::<ConfigMap>::namespaced(client, &istio_namespace)),
        freshness.clone(),
        state.clone(),
        changed.clone(),
        metrics,
        Kept {
            resource: "configmaps",
            keep: |cm: ConfigMap| is_mesh_config_map(&cm).then(|| strip_config_map(cm)),
            store: |s: &mut State| &mut s.config_maps,
            ready: |s: &mut State| &mut s.config_maps_ready,
        },
    ));
    let rebuild_task = tokio::spawn({
        let ready = ready.clone();
        async move {
            loop {
                changed.notified().await;
                tokio::time::sleep(DEBOUNCE).await;
                let snapshot = {
                    let s = state.lock().unwrap_or_else(|p| p.into_inner());
                    if !(s.webhooks_ready && s.config_maps_ready && s.daemonsets_ready) {
                        continue;
                    }
                    let ns = explicit.then_some(istio_namespace.as_str());
                    let builder = s.builder(ns);
                    let mut notes: Vec<String> = s.notes.values().cloned().collect();
                    if !explicit {
                        let inferred = builder.build().istio_namespace().value.clone();
                        if inferred != istio_namespace {
                            notes.push(format!(
                                "the injector webhooks call istiod in namespace {inferred}, but meshguard reads Istio's ConfigMaps in {istio_namespace}: set --istio-namespace {inferred}"
                            ));
                        }
                    }
                    Snapshot { builder, notes }
                };
                on_change(snapshot);
                ready.store(true, Ordering::Release);
            }
        }
    });
    MeshWatch {
        ready,
        tasks: vec![
            webhooks_task,
            config_maps_task,
            daemonsets_task,
            rebuild_task,
        ],
    }
}

/// How one kind is kept in the [`State`].
struct Kept<K> {
    resource: &'static str,
    /// The part of an object that is kept, or `None` when it is not one of Istio's.
    keep: fn(K) -> Option<K>,
    store: fn(&mut State) -> &mut BTreeMap<String, K>,
    ready: fn(&mut State) -> &mut bool,
}

async fn watch_kind<K>(
    mut events: futures::stream::BoxStream<'static, Result<Event<K>, watcher::Error>>,
    freshness: Arc<crate::freshness::Freshness>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    metrics: Option<Metrics>,
    kept: Kept<K>,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + PartialEq
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let name_of = |o: &K| {
        let m = o.meta();
        format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default()
        )
    };
    let mut buffer: Option<BTreeMap<String, K>> = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                let refused = match &e {
                    watcher::Error::InitialListFailed(err)
                    | watcher::Error::WatchStartFailed(err) => is_forbidden_or_absent(err),
                    _ => false,
                };
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                if refused && !s.notes.contains_key(kept.resource) {
                    let note = format!(
                        "cannot read {} ({e}); meshguard goes on without them (verdicts assume Istio's defaults for what they would say) and keeps retrying",
                        kept.resource
                    );
                    tracing::warn!(resource = kept.resource, error = %e, "{note}");
                    s.notes.insert(kept.resource, note);
                    if !std::mem::replace((kept.ready)(&mut s), true) {
                        changed.notify_one();
                    }
                } else if !refused {
                    tracing::warn!(resource = kept.resource, error = %e, "mesh watch failed; retrying with backoff");
                }
                continue;
            }
        };
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        let differs = match event {
            Event::Init => {
                buffer = Some(BTreeMap::new());
                false
            }
            Event::InitApply(o) => {
                let name = name_of(&o);
                if let Some(k) = (kept.keep)(o) {
                    buffer.get_or_insert_with(BTreeMap::new).insert(name, k);
                }
                false
            }
            Event::InitDone => {
                let fresh = buffer.take().unwrap_or_default();
                let store = (kept.store)(&mut s);
                let differs = *store != fresh;
                *store = fresh;
                let was_ready = std::mem::replace((kept.ready)(&mut s), true);
                let was_refused = s.notes.remove(kept.resource).is_some();
                freshness.listed(kept.resource);
                if let Some(m) = &metrics {
                    m.cache_synced.with_label_values(&[kept.resource]).set(1);
                }
                if !was_ready {
                    tracing::info!(resource = kept.resource, "mesh watch synced");
                }
                differs || !was_ready || was_refused
            }
            Event::Apply(o) => {
                let name = name_of(&o);
                let store = (kept.store)(&mut s);
                match (kept.keep)(o) {
                    Some(k) if store.get(&name) == Some(&k) => false,
                    Some(k) => {
                        store.insert(name, k);
                        true
                    }
                    // No longer one of Istio's (relabelled): forget it.
                    None => store.remove(&name).is_some(),
                }
            }
            Event::Delete(o) => (kept.store)(&mut s).remove(&name_of(&o)).is_some(),
        };
        if differs {
            changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_what_the_mesh_context_reads_is_kept() {
        let mwc: MutatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": "istio-sidecar-injector", "labels": {"istio.io/rev": "default"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "managedFields": [{"manager": "pilot-discovery"}], "resourceVersion": "7"},
            "webhooks": [{"name": "namespace.sidecar-injector.istio.io", "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"service": {"name": "istiod", "namespace": "istio-system"}, "caBundle": "Q0E="}}]
        }))
        .expect("mwc");
        assert!(identify(&mwc).is_some());
        let kept = strip_webhooks(mwc);
        assert!(kept.metadata.annotations.is_none() && kept.metadata.managed_fields.is_none());
        assert!(kept.metadata.resource_version.is_none());
        assert_eq!(kept.metadata.labels.as_ref().map(BTreeMap::len), Some(1));
        let hooks = kept.webhooks.expect("webhooks");
        assert!(hooks[0].client_config.ca_bundle.is_none());
        assert!(hooks[0].client_config.service.is_some());
        let other: MutatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": "meshguard"},
            "webhooks": [{"name": "mutate.meshguard.io", "sideEffects": "None",
                "admissionReviewVersions": ["v1"], "clientConfig": {"url": "https://x"}}]
        }))
        .expect("mwc");
        assert!(identify(&other).is_none());
        let cm = |name: &str, key: &str| -> ConfigMap {
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "istio-system",
                "resourceVersion": "3"}, "data": {key: "x"}}),
            )
            .expect("cm")
        };
        assert!(is_mesh_config_map(&cm("istio", "mesh")));
        assert!(is_mesh_config_map(&cm("istio-canary", "mesh")));
        assert!(is_mesh_config_map(&cm("istio-sidecar-injector", "config")));
        assert!(!is_mesh_config_map(&cm(
            "istio-ca-root-cert",
            "root-cert.pem"
        )));
        assert!(!is_mesh_config_map(&cm("kube-root-ca.crt", "ca.crt")));
        assert!(strip_config_map(cm("istio", "mesh"))
            .metadata
            .resource_version
            .is_none());
    }
}
