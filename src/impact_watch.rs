//! `meshguard serve`'s watch of what the policy's `impact` setting reads: Namespaces,
//! ServiceAccounts, Services, workloads (Pods no controller owns, and the controllers of pods)
//! and Istio's security policies. After the initial lists and after every change (debounced),
//! the objects become one [`ImpactIndex`] (built on the blocking pool) swapped into the
//! [`ImpactSlot`] the webhook reads.
//!
//! Started only when the policy sets `impact` (at start or by a reload), so with `impact: off`
//! nothing is watched. Each kind is watched at the first version meshguard reads
//! (`KIND_FACTS`); a kind that cannot be watched (an absent CRD, no RBAC) is logged and
//! retried with backoff, and the index is built from the others once they have synced.
//! Readiness does not wait for it: until it has synced, reviews carry no impact.

use crate::engine::EngineHandle;
use crate::inventory::{Inventory, Object};
use crate::metrics::Metrics;
use crate::reach::impact::{ImpactIndex, ImpactSlot};
use crate::resource::{is_controlled, Kind, KIND_FACTS};
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long the watch waits for more changes before it rebuilds the index.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// The kinds the index is built from.
pub fn watched() -> Vec<Kind> {
    KIND_FACTS
        .iter()
        .filter(|f| {
            matches!(
                f.kind,
                Kind::Namespace
                    | Kind::ServiceAccount
                    | Kind::Service
                    | Kind::AuthorizationPolicy
                    | Kind::PeerAuthentication
                    | Kind::RequestAuthentication
            ) || f.pod_template.is_some()
        })
        .map(|f| f.kind)
        .collect()
}

/// What is kept of a watched object: no status, no managed fields, no last-applied copy.
fn slim(mut o: DynamicObject) -> DynamicObject {
    o.metadata.managed_fields = None;
    if let Some(a) = o.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    if let Some(d) = o.data.as_object_mut() {
        d.remove("status");
    }
    o
}

type Key = (Kind, String, String);

/// Watch the cluster and keep `slot` current. Must be called inside a tokio runtime; abort the
/// handle to stop.
pub fn spawn(
    client: Client,
    engine: EngineHandle,
    slot: Arc<ImpactSlot>,
    metrics: Option<Metrics>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let kinds = watched();
        let streams = kinds.iter().map(|&kind| {
            let f = kind.facts();
            let version = f.versions.first().copied().unwrap_or("v1");
            let gvk = GroupVersionKind::gvk(f.group, version, kind.as_str());
            let ar = ApiResource::from_gvk_with_plural(&gvk, f.plural);
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let types = kube::core::TypeMeta {
                api_version: ar.api_version.clone(),
                kind: ar.kind.clone(),
            };
            watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .map(move |e| (kind, version, types.clone(), e))
                .boxed()
        });
        let mut events = futures::stream::select_all(streams);
        let mut store: BTreeMap<Key, Object> = BTreeMap::new();
        let mut buffers: BTreeMap<Kind, BTreeMap<Key, Object>> = BTreeMap::new();
        let mut synced: BTreeSet<Kind> = BTreeSet::new();
        let mut failing: BTreeSet<Kind> = BTreeSet::new();
        let key = |kind: Kind, o: &DynamicObject| {
            (
                kind,
                o.metadata.namespace.clone().unwrap_or_default(),
                o.metadata.name.clone().unwrap_or_default(),
            )
        };
        let object = |kind: Kind, version: &str, types: &kube::core::TypeMeta, o| {
            let mut o = slim(o);
            if o.types.is_none() {
                o.types = Some(types.clone());
            }
            Object::new(kind, version.to_owned(), o, None, None)
        };
        loop {
            let Some(first) = events.next().await else {
                return;
            };
            let mut pending = vec![first];
            let deadline = tokio::time::sleep(DEBOUNCE);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    next = events.next() => match next {
                        Some(e) => pending.push(e),
                        None => break,
                    },
                }
            }
            let mut changed = false;
            for (kind, version, types, event) in pending {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        if failing.insert(kind) {
                            tracing::warn!(kind = kind.as_str(), error = %e, "impact watch: cannot watch this kind; retrying with backoff");
                        }
                        continue;
                    }
                };
                failing.remove(&kind);
                match event {
                    Event::Init => {
                        buffers.insert(kind, BTreeMap::new());
                    }
                    Event::InitApply(o) => {
                        if kind == Kind::Pod && is_controlled(&o) {
                            continue;
                        }
                        let k = key(kind, &o);
                        buffers
                            .entry(kind)
                            .or_default()
                            .insert(k, object(kind, version, &types, o));
                    }
                    Event::InitDone => {
                        let fresh = buffers.remove(&kind).unwrap_or_default();
                        store.retain(|k, _| k.0 != kind);
                        store.extend(fresh);
                        synced.insert(kind);
                        changed = true;
                    }
                    Event::Apply(o) => {
                        if kind == Kind::Pod && is_controlled(&o) {
                            continue;
                        }
                        let k = key(kind, &o);
                        store.insert(k, object(kind, version, &types, o));
                        changed = true;
                    }
                    Event::Delete(o) => {
                        changed |= store.remove(&key(kind, &o)).is_some();
                    }
                }
            }
            // Built once every kind that can be watched has synced (a kind whose CRD is absent
            // never does: it counts as empty once the others have).
            let ready = kinds
                .iter()
                .all(|k| synced.contains(k) || failing.contains(k));
            if !changed || !ready || synced.is_empty() {
                continue;
            }
            let objects: Vec<Object> = store.values().cloned().collect();
            let engine = engine.current();
            let started = std::time::Instant::now();
            let built = tokio::task::spawn_blocking(move || {
                let domain = engine.policy().cluster_domain.clone();
                ImpactIndex::new(Inventory::complete(objects), engine.mesh(), &domain)
            })
            .await;
            match built {
                Ok(index) => {
                    tracing::debug!(
                        objects = index.objects(),
                        workloads = index.workloads(),
                        build_us = started.elapsed().as_micros() as u64,
                        "impact index rebuilt"
                    );
                    slot.set(index);
                    if let Some(m) = &metrics {
                        m.cache_synced.with_label_values(&["impact"]).set(1);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "impact index build failed"),
            }
        }
    })
}
