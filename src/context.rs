//! What rules may know about the cluster beyond the object under review.
//! The engine sees only the synchronous [`ClusterView`]; whatever fills it (watch caches,
//! a manifest set, a test table) lives outside the engine.

use std::collections::{BTreeMap, HashMap, HashSet};

/// The answer to a cluster lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    /// The object exists; here is what we know of it.
    Found(T),
    /// The object definitely does not exist.
    Missing,
    /// Nobody could tell (no cluster connection, lookup failed, cache not synced).
    Unknown,
}

/// Read-only view of cluster state, shared with the engine.
pub trait ClusterView: Send + Sync {
    /// Labels of a namespace.
    fn namespace_labels(&self, namespace: &str) -> Lookup<BTreeMap<String, String>>;
    /// Whether a ServiceAccount exists.
    fn service_account(&self, namespace: &str, name: &str) -> Lookup<()>;
    /// Whether a namespace is Terminating (`metadata.deletionTimestamp` set): the namespace
    /// controller is deleting everything in it. Views that cannot tell answer `Unknown`.
    fn namespace_terminating(&self, _namespace: &str) -> Lookup<bool> {
        Lookup::Unknown
    }
}

/// No cluster at all: every lookup is unknown.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCluster;

impl ClusterView for NoCluster {
    fn namespace_labels(&self, _: &str) -> Lookup<BTreeMap<String, String>> {
        Lookup::Unknown
    }
    fn service_account(&self, _: &str, _: &str) -> Lookup<()> {
        Lookup::Unknown
    }
}

/// A complete, static picture of the cluster: what is not in it does not exist.
/// `check` builds one from the manifests it reads; tests build them by hand.
#[derive(Clone, Debug, Default)]
pub struct StaticCluster {
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
    pub service_accounts: HashSet<(String, String)>,
    /// Namespaces (of `namespaces`) that are Terminating.
    pub terminating: HashSet<String>,
    /// When true, a namespace absent from `namespaces` is `Unknown` rather than `Missing`.
    pub partial: bool,
}

impl StaticCluster {
    pub fn with_namespace(mut self, name: &str, labels: &[(&str, &str)]) -> Self {
        self.namespaces.insert(
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        self
    }

    /// A namespace that is being deleted (Terminating).
    pub fn with_terminating_namespace(mut self, name: &str, labels: &[(&str, &str)]) -> Self {
        self.terminating.insert(name.to_owned());
        self.with_namespace(name, labels)
    }

    pub fn with_service_account(mut self, namespace: &str, name: &str) -> Self {
        self.service_accounts
            .insert((namespace.to_owned(), name.to_owned()));
        self
    }
}

impl ClusterView for StaticCluster {
    fn namespace_labels(&self, namespace: &str) -> Lookup<BTreeMap<String, String>> {
        match self.namespaces.get(namespace) {
            Some(l) => Lookup::Found(l.clone()),
            None if self.partial => Lookup::Unknown,
            None => Lookup::Missing,
        }
    }

    fn namespace_terminating(&self, namespace: &str) -> Lookup<bool> {
        match self.namespaces.contains_key(namespace) {
            true => Lookup::Found(self.terminating.contains(namespace)),
            false if self.partial => Lookup::Unknown,
            false => Lookup::Missing,
        }
    }

    fn service_account(&self, namespace: &str, name: &str) -> Lookup<()> {
        if self
            .service_accounts
            .contains(&(namespace.to_owned(), name.to_owned()))
        {
            Lookup::Found(())
        } else if self.partial {
            Lookup::Unknown
        } else {
            Lookup::Missing
        }
    }
}

/// Where the admission front end gets its [`ClusterView`] from. Implementations may need I/O
/// to answer (a cache miss falls back to a direct GET): that happens in [`prepare`], before the
/// engine runs, so the engine itself stays synchronous and pure.
///
/// [`prepare`]: ClusterSource::prepare
pub trait ClusterSource: Send + Sync {
    fn view(&self) -> &dyn ClusterView;
    /// Make sure the view can answer lookups for this review, within `deadline`.
    fn prepare<'a>(
        &'a self,
        _review: &'a crate::resource::Review<'a>,
        _deadline: std::time::Duration,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async {})
    }
    /// All caches have synced (readiness).
    fn synced(&self) -> bool {
        true
    }
}

impl ClusterSource for NoCluster {
    fn view(&self) -> &dyn ClusterView {
        self
    }
}

impl ClusterSource for StaticCluster {
    fn view(&self) -> &dyn ClusterView {
        self
    }
}
