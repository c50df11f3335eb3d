//! Cluster context from the API server: watch caches of Namespaces (labels) and ServiceAccounts
//! (names), shared read-only with the engine through [`ClusterView`]. The engine never waits on
//! the network: whatever I/O a review needs happens in [`ClusterSource::prepare`] before it runs.
//!
//! * Two `kube::runtime` watchers, metadata only (the API server sends `PartialObjectMetadata`,
//!   never ServiceAccount secrets or Namespace specs), decode each object straight into its
//!   model struct ([`crate::model::namespace`], [`crate::model::service_account`]; no
//!   `managedFields` or annotations are built) and feed two compact reflector stores:
//!   namespace → [`crate::model::Namespace`] (labels, and whether it is Terminating), and
//!   namespace → set of ServiceAccount names.
//!   They follow the reflector protocol (`Init` / `InitApply` / `InitDone` swap a fresh list in
//!   atomically; `Apply` / `Delete` update in place) but keep only what rules read, so 10,000
//!   namespaces and 50,000 ServiceAccounts cost a few MB rather than a full `ObjectMeta` each.
//! * Once a cache has synced (and its watch has not failed since), it is the answer: an object
//!   it does not hold is [`Lookup::Missing`] after the watch has had [`WATCH_GRACE`] to deliver
//!   it (an object created just before the review that names it), and no GET is made — the
//!   pattern of kube-apiserver's own NamespaceLifecycle admission, which waits for its informer
//!   before it looks further. Reviews for namespaces nobody created cost the API server nothing.
//! * Before the first sync, or while a watch is failing, a cache miss falls back to one direct
//!   GET with the review's deadline; its answer (found or not found) is remembered briefly.
//!   Concurrent misses for one object share one GET, and GETs are rate-limited
//!   ([`GET_RATE`] per second, bursts of [`GET_BURST`]); a miss that gets no GET, or whose GET
//!   fails, stays [`Lookup::Unknown`] and the policy's `onLookupFailure` decides in the rules.
//! * [`ClusterSource::synced`] (readiness) is true once both initial lists have arrived;
//!   `meshguard_cache_synced{resource}` says the same per resource.

use crate::context::{ClusterSource, ClusterView, Lookup, LookupKey};
use crate::metrics::Metrics;
use crate::model::{self, namespace::Metadata};
use futures::future::BoxFuture;
use futures::StreamExt;
use kube::core::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a direct GET's answer is trusted when the watch has not caught up.
const FOUND_TTL: Duration = Duration::from_secs(30);
const MISSING_TTL: Duration = Duration::from_secs(5);
/// Bound on remembered GET answers.
const FALLBACK_MAX: usize = 4096;
/// How long a review waits for a synced watch to deliver an object it does not hold yet,
/// before the object is taken as missing. kube-apiserver's NamespaceLifecycle admission waits
/// 50 ms for its in-process informer (`missingNamespaceWait`); meshguard's watch crosses the
/// network, hence more.
pub(crate) const WATCH_GRACE: Duration = Duration::from_millis(250);
/// Direct GETs per second, sustained, and in a burst (all lookups together).
pub const GET_RATE: f64 = 20.0;
pub const GET_BURST: f64 = 40.0;

/// An object as the watches (and direct GETs) decode it: its model struct, and the
/// `resourceVersion` kube's watcher resumes from (read through [`kube::Resource::meta`]). It is
/// listed and watched as `PartialObjectMetadata` (the metadata API: the API server sends no
/// ServiceAccount secrets or Namespace specs), and decoded straight into the model:
/// `managedFields`, annotations and owner references are skipped, never built.
#[derive(Clone, Debug)]
struct Watched<T> {
    meta: ObjectMeta,
    object: T,
}

/// A kind the cluster caches watch.
trait WatchedKind: From<Metadata> + Clone + std::fmt::Debug + Send + Sync + 'static {
    type Scope;
    const KIND: &'static str;
    const PLURAL: &'static str;
}

impl WatchedKind for model::Namespace {
    type Scope = kube::core::ClusterResourceScope;
    const KIND: &'static str = "Namespace";
    const PLURAL: &'static str = "namespaces";
}

impl WatchedKind for model::ServiceAccount {
    type Scope = kube::core::NamespaceResourceScope;
    const KIND: &'static str = "ServiceAccount";
    const PLURAL: &'static str = "serviceaccounts";
}

impl<'de, T: WatchedKind> serde::Deserialize<'de> for Watched<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut m = <model::namespace::Object as serde::Deserialize>::deserialize(d)?.metadata;
        let meta = ObjectMeta {
            resource_version: m.resource_version.take(),
            ..ObjectMeta::default()
        };
        Ok(Watched {
            meta,
            object: T::from(m),
        })
    }
}

impl<T: WatchedKind> kube::Resource for Watched<T> {
    type DynamicType = ();
    type Scope = T::Scope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(T::KIND)
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(T::PLURAL)
    }
    /// Listed, watched and fetched as `PartialObjectMetadata`.
    fn metadata_api() -> bool {
        true
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// What the namespace cache keeps of one namespace: the model struct itself (name shared with
/// the map's key, labels in one sorted allocation).
type NsEntry = model::Namespace;

/// Namespace name → the namespace.
#[derive(Debug, Default)]
struct NamespaceCache {
    map: RwLock<HashMap<Arc<str>, NsEntry>>,
}

/// Namespace → ServiceAccount names.
#[derive(Debug, Default)]
struct AccountCache {
    map: RwLock<HashMap<Box<str>, HashSet<Box<str>>>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// One remembered answer of a direct GET.
#[derive(Clone, Debug)]
struct Remembered<T> {
    at: Instant,
    answer: Lookup<T>,
}

impl<T: Clone> Remembered<T> {
    fn fresh(&self) -> Option<Lookup<T>> {
        let ttl = match self.answer {
            Lookup::Found(_) => FOUND_TTL,
            _ => MISSING_TTL,
        };
        (self.at.elapsed() < ttl).then(|| self.answer.clone())
    }
}

#[derive(Debug, Default)]
struct Fallback {
    namespaces: RwLock<HashMap<String, Remembered<NsEntry>>>,
    accounts: RwLock<HashMap<(String, String), Remembered<()>>>,
    /// GETs in flight, by what they look up: a second miss for the same object waits for the
    /// first one's answer instead of sending its own.
    in_flight: std::sync::Mutex<HashMap<LookupKey, watch::Receiver<bool>>>,
    tokens: std::sync::Mutex<Bucket>,
}

/// A token bucket for direct GETs.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            tokens: GET_BURST,
            at: Instant::now(),
        }
    }
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * GET_RATE).min(GET_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The GET a miss leads to: `Lead` sends it (and clears the entry when done or cancelled),
/// `Follow` waits for the one in flight.
enum Turn<'a> {
    Lead(Leader<'a>),
    Follow(watch::Receiver<bool>),
}

struct Leader<'a> {
    fallback: &'a Fallback,
    key: LookupKey,
    done: watch::Sender<bool>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        lock(&self.fallback.in_flight).remove(&self.key);
        let _ = self.done.send(true);
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fallback {
    fn turn(&self, key: &LookupKey) -> Turn<'_> {
        let mut m = lock(&self.in_flight);
        if let Some(rx) = m.get(key) {
            return Turn::Follow(rx.clone());
        }
        let (done, rx) = watch::channel(false);
        m.insert(key.clone(), rx);
        Turn::Lead(Leader {
            fallback: self,
            key: key.clone(),
            done,
        })
    }
}

/// Whether a watch-fed cache can answer on its own, and a signal for what it delivers.
#[derive(Debug, Default)]
struct WatchState {
    /// The initial list arrived.
    synced: AtomicBool,
    /// The watch failed since its last event: objects may be missing from the cache.
    failing: AtomicBool,
    /// Woken whenever the cache changes.
    changed: tokio::sync::Notify,
}

impl WatchState {
    /// The cache is the answer (synced, and the watch not failing).
    fn authoritative(&self) -> bool {
        self.synced.load(Ordering::Acquire) && !self.failing.load(Ordering::Acquire)
    }
}

fn remember<K: std::hash::Hash + Eq, T: Clone>(
    map: &RwLock<HashMap<K, Remembered<T>>>,
    key: K,
    answer: Lookup<T>,
) {
    let mut m = write(map);
    if m.len() >= FALLBACK_MAX {
        m.retain(|_, r| r.fresh().is_some());
        if m.len() >= FALLBACK_MAX {
            m.clear();
        }
    }
    m.insert(
        key,
        Remembered {
            at: Instant::now(),
            answer,
        },
    );
}

/// The cluster as seen through watch caches, with a direct-GET fallback.
pub struct KubeCluster {
    client: Client,
    namespaces: Arc<NamespaceCache>,
    accounts: Arc<AccountCache>,
    ns_watch: Arc<WatchState>,
    sa_watch: Arc<WatchState>,
    fallback: Fallback,
    tasks: Vec<JoinHandle<()>>,
    /// When each watch last listed; readiness fails when one is stale.
    freshness: Arc<crate::freshness::Freshness>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("namespaces", &self.ns_watch)
            .field("serviceaccounts", &self.sa_watch)
            .finish()
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A client for the cluster: from `kubeconfig` when given (an error if it is unusable), else
/// in-cluster configuration or the default kubeconfig. `Ok(None)` when there is no cluster
/// to talk to at all.
pub async fn connect(kubeconfig: Option<&Path>) -> anyhow::Result<Option<Client>> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("cannot read --kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| anyhow::anyhow!("unusable --kubeconfig {}: {e}", path.display()))?
        }
        None => match kube::Config::infer().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "no in-cluster configuration and no usable kubeconfig");
                return Ok(None);
            }
        },
    };
    let client = Client::try_from(config)
        .map_err(|e| anyhow::anyhow!("cannot build the Kubernetes client: {e}"))?;
    Ok(Some(client))
}

impl KubeCluster {
    /// Start both watches; caches fill in the background (see [`ClusterSource::synced`]).
    /// Must be called inside a tokio runtime.
    pub fn start(client: Client, metrics: Option<Metrics>) -> Arc<KubeCluster> {
        KubeCluster::start_with(client, metrics, Arc::default())
    }

    /// [`KubeCluster::start`] with watches that relist and count as stale as `freshness` says
    /// (shared with the mesh watch, so that one readiness covers every cache).
    pub fn start_with(
        client: Client,
        metrics: Option<Metrics>,
        freshness: Arc<crate::freshness::Freshness>,
    ) -> Arc<KubeCluster> {
        let namespaces = Arc::new(NamespaceCache::default());
        let accounts = Arc::new(AccountCache::default());
        let ns_watch = Arc::new(WatchState::default());
        let sa_watch = Arc::new(WatchState::default());
        if let Some(m) = &metrics {
            m.cache_synced.with_label_values(&["namespaces"]).set(0);
            m.cache_synced
                .with_label_values(&["serviceaccounts"])
                .set(0);
        }
        let ns_task = tokio::spawn(reflect_namespaces(
            freshness.watch(Api::all(client.clone())),
            namespaces.clone(),
            ns_watch.clone(),
            metrics.clone(),
            freshness.clone(),
        ));
        let sa_task = tokio::spawn(reflect_accounts(
            freshness.watch(Api::all(client.clone())),
            accounts.clone(),
            sa_watch.clone(),
            metrics,
            freshness.clone(),
        ));
        Arc::new(KubeCluster {
            client,
            namespaces,
            accounts,
            ns_watch,
            sa_watch,
            fallback: Fallback::default(),
            tasks: vec![ns_task, sa_task],
            freshness,
        })
    }

    /// Wait until both caches have synced, or `timeout` passes. Returns whether they did.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while !self.synced() {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Both caches have synced and neither watch is failing: lookups are answered from the
    /// caches alone, without direct GETs.
    pub fn answers_from_cache(&self) -> bool {
        self.ns_watch.authoritative() && self.sa_watch.authoritative()
    }

    /// Number of cached namespaces and ServiceAccounts.
    pub fn cached(&self) -> (usize, usize) {
        let ns = read(&self.namespaces.map).len();
        let sa = read(&self.accounts.map).values().map(HashSet::len).sum();
        (ns, sa)
    }

    /// Approximate heap bytes held by the two caches: table slots, keys, label strings.
    pub fn cache_bytes(&self) -> usize {
        use std::mem::size_of;
        let ns = read(&self.namespaces.map);
        let mut total = ns.capacity() * (size_of::<(Arc<str>, NsEntry)>() + 1);
        for (name, NsEntry { labels, .. }) in ns.iter() {
            // The name (shared by key and entry) and the labels, each an Arc (two counts), then
            // the pairs and the label strings.
            total += name.len() + 4 * size_of::<usize>();
            total += labels.len() * size_of::<(Box<str>, Box<str>)>();
            total += labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        }
        let sa = read(&self.accounts.map);
        total += sa.capacity() * (size_of::<(Box<str>, HashSet<Box<str>>)>() + 1);
        for (namespace, names) in sa.iter() {
            total += namespace.len() + names.capacity() * (size_of::<Box<str>>() + 1);
            total += names.iter().map(|n| n.len()).sum::<usize>();
        }
        total
    }

    fn cached_namespace(&self, name: &str) -> Option<NsEntry> {
        read(&self.namespaces.map).get(name).cloned()
    }

    fn cached_account(&self, namespace: &str, name: &str) -> bool {
        read(&self.accounts.map)
            .get(namespace)
            .is_some_and(|s| s.contains(name))
    }

    async fn fetch_namespace(&self, name: &str) {
        if self.cached_namespace(name).is_some()
            || read(&self.fallback.namespaces)
                .get(name)
                .and_then(Remembered::fresh)
                .is_some()
        {
            return;
        }
        if self.ns_watch.authoritative() {
            wait_for_watch(&self.ns_watch, || self.cached_namespace(name).is_some()).await;
            if self.cached_namespace(name).is_none() && self.ns_watch.authoritative() {
                // Missing: remembered briefly, so that the next review naming it (a
                // DestinationRule host outside the cluster, say) does not wait again. The cache
                // is read first, so the namespace counts as soon as the watch delivers it.
                remember(&self.fallback.namespaces, name.to_owned(), Lookup::Missing);
            }
            return;
        }
        let key = LookupKey::NamespaceLabels(name.to_owned());
        let Some(_leader) = self.lead_get(&key).await else {
            return;
        };
        let api: Api<Watched<model::Namespace>> = Api::all(self.client.clone());
        match api.get_opt(name).await {
            Ok(Some(ns)) => remember(
                &self.fallback.namespaces,
                name.to_owned(),
                Lookup::Found(ns.object),
            ),
            Ok(None) => remember(&self.fallback.namespaces, name.to_owned(), Lookup::Missing),
            Err(e) => {
                tracing::warn!(namespace = name, error = %e, "namespace lookup failed; onLookupFailure decides")
            }
        }
    }

    async fn fetch_account(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if self.cached_account(namespace, name)
            || read(&self.fallback.accounts)
                .get(&key)
                .and_then(Remembered::fresh)
                .is_some()
        {
            return;
        }
        if self.sa_watch.authoritative() {
            wait_for_watch(&self.sa_watch, || self.cached_account(namespace, name)).await;
            if !self.cached_account(namespace, name) && self.sa_watch.authoritative() {
                remember(&self.fallback.accounts, key, Lookup::Missing);
            }
            return;
        }
        let lookup = LookupKey::ServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let Some(_leader) = self.lead_get(&lookup).await else {
            return;
        };
        let api: Api<Watched<model::ServiceAccount>> =
            Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(Some(_)) => remember(&self.fallback.accounts, key, Lookup::Found(())),
            Ok(None) => remember(&self.fallback.accounts, key, Lookup::Missing),
            Err(e) => {
                tracing::warn!(namespace, service_account = name, error = %e, "ServiceAccount lookup failed")
            }
        }
    }

    /// The right to send the GET for `key`: `None` when another review's GET for it was in
    /// flight (now answered: its answer is remembered) or the GET rate is spent (the lookup
    /// stays unknown and onLookupFailure decides).
    async fn lead_get(&self, key: &LookupKey) -> Option<Leader<'_>> {
        match self.fallback.turn(key) {
            Turn::Follow(mut rx) => {
                let _ = rx.wait_for(|done| *done).await;
                None
            }
            Turn::Lead(leader) => {
                if lock(&self.fallback.tokens).take() {
                    Some(leader)
                } else {
                    tracing::warn!(lookup = ?key, rate = GET_RATE, "direct API lookups over their rate; onLookupFailure decides");
                    None
                }
            }
        }
    }
}

/// Wait (at most [`WATCH_GRACE`]) until `present` or the watch stops being authoritative.
async fn wait_for_watch(state: &WatchState, present: impl Fn() -> bool) {
    let until = tokio::time::Instant::now() + WATCH_GRACE;
    loop {
        let changed = state.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if present() || !state.authoritative() {
            return;
        }
        if tokio::time::timeout_at(until, changed).await.is_err() {
            return;
        }
    }
}

impl KubeCluster {
    /// A namespace from the watch cache, else from a fresh direct-GET answer.
    fn namespace(&self, namespace: &str) -> Lookup<NsEntry> {
        if let Some(entry) = self.cached_namespace(namespace) {
            return Lookup::Found(entry);
        }
        if let Some(answer) = read(&self.fallback.namespaces)
            .get(namespace)
            .and_then(Remembered::fresh)
        {
            return answer;
        }
        if self.ns_watch.authoritative() {
            Lookup::Missing
        } else {
            Lookup::Unknown
        }
    }
}

impl ClusterView for KubeCluster {
    fn namespace_labels(&self, namespace: &str) -> Lookup<BTreeMap<String, String>> {
        match self.namespace(namespace) {
            Lookup::Found(entry) => Lookup::Found(entry.labels_map()),
            Lookup::Missing => Lookup::Missing,
            Lookup::Unknown => Lookup::Unknown,
        }
    }

    fn namespace_terminating(&self, namespace: &str) -> Lookup<bool> {
        match self.namespace(namespace) {
            Lookup::Found(entry) => Lookup::Found(entry.terminating),
            Lookup::Missing => Lookup::Missing,
            Lookup::Unknown => Lookup::Unknown,
        }
    }

    fn service_account(&self, namespace: &str, name: &str) -> Lookup<()> {
        if self.cached_account(namespace, name) {
            return Lookup::Found(());
        }
        if let Some(answer) = read(&self.fallback.accounts)
            .get(&(namespace.to_owned(), name.to_owned()))
            .and_then(Remembered::fresh)
        {
            return answer;
        }
        if self.sa_watch.authoritative() {
            Lookup::Missing
        } else {
            Lookup::Unknown
        }
    }
}

impl ClusterSource for KubeCluster {
    fn view(&self) -> &dyn ClusterView {
        self
    }

    fn prepare<'a>(&'a self, lookups: &'a [LookupKey], deadline: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let fetches = lookups.iter().map(|key| async move {
                let fetched = match key {
                    LookupKey::NamespaceLabels(ns) => {
                        tokio::time::timeout(deadline, self.fetch_namespace(ns)).await
                    }
                    LookupKey::ServiceAccount { namespace, name } => {
                        tokio::time::timeout(deadline, self.fetch_account(namespace, name)).await
                    }
                };
                if fetched.is_err() {
                    tracing::warn!(lookup = ?key, "cluster lookup timed out; onLookupFailure decides");
                }
            });
            futures::future::join_all(fetches).await;
        })
    }

    fn synced(&self) -> bool {
        self.ns_watch.synced.load(Ordering::Acquire)
            && self.sa_watch.synced.load(Ordering::Acquire)
            && self.freshness.fresh()
    }
}

fn mark_synced(state: &WatchState, metrics: &Option<Metrics>, resource: &str) {
    if !state.synced.swap(true, Ordering::AcqRel) {
        tracing::info!(resource, "watch cache synced");
    }
    if let Some(m) = metrics {
        m.cache_synced.with_label_values(&[resource]).set(1);
    }
}

async fn reflect_namespaces(
    mut events: futures::stream::BoxStream<
        'static,
        Result<Event<Watched<model::Namespace>>, watcher::Error>,
    >,
    cache: Arc<NamespaceCache>,
    state: Arc<WatchState>,
    metrics: Option<Metrics>,
    freshness: Arc<crate::freshness::Freshness>,
) {
    let mut buffer: Option<HashMap<Arc<str>, NsEntry>> = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                state.failing.store(true, Ordering::Release);
                tracing::warn!(error = %e, "namespace watch failed; retrying with backoff");
                continue;
            }
        };
        state.failing.store(false, Ordering::Release);
        let entry = |o: Watched<model::Namespace>| (o.object.name.clone(), o.object);
        match event {
            Event::Init => buffer = Some(HashMap::new()),
            Event::InitApply(o) => {
                let (k, v) = entry(o);
                buffer.get_or_insert_with(HashMap::new).insert(k, v);
            }
            Event::InitDone => {
                let fresh = buffer.take().unwrap_or_default();
                *write(&cache.map) = fresh;
                mark_synced(&state, &metrics, "namespaces");
                freshness.listed("namespaces");
            }
            Event::Apply(o) => {
                let (k, v) = entry(o);
                write(&cache.map).insert(k, v);
            }
            Event::Delete(o) => {
                write(&cache.map).remove(&*o.object.name);
            }
        }
        state.changed.notify_waiters();
    }
}

async fn reflect_accounts(
    mut events: futures::stream::BoxStream<
        'static,
        Result<Event<Watched<model::ServiceAccount>>, watcher::Error>,
    >,
    cache: Arc<AccountCache>,
    state: Arc<WatchState>,
    metrics: Option<Metrics>,
    freshness: Arc<crate::freshness::Freshness>,
) {
    type Map = HashMap<Box<str>, HashSet<Box<str>>>;
    fn key(o: Watched<model::ServiceAccount>) -> (Box<str>, Box<str>) {
        (o.object.namespace, o.object.name)
    }
    fn insert(map: &mut Map, (ns, name): (Box<str>, Box<str>)) {
        map.entry(ns).or_default().insert(name);
    }
    let mut buffer: Option<Map> = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                state.failing.store(true, Ordering::Release);
                tracing::warn!(error = %e, "ServiceAccount watch failed; retrying with backoff");
                continue;
            }
        };
        state.failing.store(false, Ordering::Release);
        match event {
            Event::Init => buffer = Some(Map::new()),
            Event::InitApply(o) => insert(buffer.get_or_insert_with(Map::new), key(o)),
            Event::InitDone => {
                let fresh = buffer.take().unwrap_or_default();
                *write(&cache.map) = fresh;
                mark_synced(&state, &metrics, "serviceaccounts");
                freshness.listed("serviceaccounts");
            }
            Event::Apply(o) => insert(&mut write(&cache.map), key(o)),
            Event::Delete(o) => {
                let (ns, name) = key(o);
                let mut map = write(&cache.map);
                if let Some(set) = map.get_mut(&ns) {
                    set.remove(&name);
                    if set.is_empty() {
                        map.remove(&ns);
                    }
                }
            }
        }
        state.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn watched_objects_are_their_model_and_a_resource_version() {
        // As the metadata API sends them: PartialObjectMetadata, managedFields and all.
        let ns: Watched<model::Namespace> = serde_json::from_str(
            r#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{
                "name":"prod","uid":"u","resourceVersion":"17",
                "labels":{"istio-injection":"enabled"},
                "managedFields":[{"manager":"kubectl","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{}}}}]}}"#,
        )
        .unwrap();
        assert_eq!(ns.meta().resource_version.as_deref(), Some("17"));
        assert_eq!(ns.meta().name, None, "only what the watcher reads");
        assert_eq!(&*ns.object.name, "prod");
        assert_eq!(ns.object.label("istio-injection"), Some("enabled"));
        let sa: Watched<model::ServiceAccount> = serde_json::from_str(
            r#"{"metadata":{"name":"web","namespace":"prod","resourceVersion":"18"}}"#,
        )
        .unwrap();
        assert_eq!((&*sa.object.namespace, &*sa.object.name), ("prod", "web"));
    }

    #[test]
    fn watched_kinds_are_listed_through_the_metadata_api_at_their_paths() {
        assert!(Watched::<model::Namespace>::metadata_api());
        assert_eq!(
            Watched::<model::Namespace>::url_path(&(), None),
            "/api/v1/namespaces"
        );
        assert_eq!(
            Watched::<model::ServiceAccount>::url_path(&(), Some("prod")),
            "/api/v1/namespaces/prod/serviceaccounts"
        );
        assert_eq!(
            Watched::<model::ServiceAccount>::kind(&()),
            "ServiceAccount"
        );
        assert_eq!(Watched::<model::Namespace>::api_version(&()), "v1");
    }
}
