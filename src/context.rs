//! What rules may know about the cluster beyond the object under review.
//! The engine sees only the synchronous [`ClusterView`]; whatever fills it lives outside the
//! engine: the watch caches of `serve` (`cluster::KubeCluster`), the inventory of a `check` or
//! `audit` run (`inventory::Inventory`, which tests also build by hand), or nothing (`NoCluster`).

use std::collections::BTreeMap;

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

/// A cluster fact a rule, a mutation or an exemption reads through the [`ClusterView`], declared
/// with it so the admission front end can fetch it before the (synchronous) engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Need {
    /// The labels of the review's namespace.
    NamespaceLabels,
    /// Whether the ServiceAccount a workload's labels name (`app.kubernetes.io/name`, `app`)
    /// exists, for a workload without an account of its own.
    CandidateServiceAccount,
    /// The labels of the namespace a DestinationRule host names (`<service>.<namespace>`).
    HostNamespaceLabels,
    /// The labels of the review's namespace, for a PeerAuthentication that sets DISABLE
    /// anywhere: what DISABLE does depends on whether ztunnel captures the namespace.
    NamespaceLabelsOnDisable,
}

/// One concrete lookup a review needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LookupKey {
    NamespaceLabels(String),
    ServiceAccount { namespace: String, name: String },
}

impl Need {
    /// The lookup this need makes for one review, if any.
    pub fn key(self, review: &crate::resource::Review<'_>) -> Option<LookupKey> {
        let template = std::cell::OnceCell::new();
        self.key_with(review, &|| {
            template
                .get_or_init(|| crate::model::workload::PodTemplate::written(review))
                .as_ref()
        })
    }

    /// [`Need::key`], reading the review's pod template through `template` (the engine passes
    /// the one its rules read, so the template is decoded once per review).
    pub(crate) fn key_with<'t>(
        self,
        review: &crate::resource::Review<'_>,
        template: &dyn Fn() -> Option<&'t crate::model::workload::PodTemplate<'t>>,
    ) -> Option<LookupKey> {
        use crate::resource::Kind;
        match self {
            // A Namespace's own labels are in the object; cluster-scoped objects have none.
            Need::NamespaceLabels if review.kind == Kind::Namespace => None,
            Need::NamespaceLabels => (!review.namespace.is_empty())
                .then(|| LookupKey::NamespaceLabels(review.namespace.to_owned())),
            Need::NamespaceLabelsOnDisable => {
                let pa: crate::model::PeerAuthentication<'_> =
                    crate::model::decode_spec(review.spec()).unwrap_or_default();
                let disable = pa.mode_str() == Some("DISABLE")
                    || pa.port_level().any(|p| p.mode() == Some("DISABLE"));
                (disable && !review.namespace.is_empty())
                    .then(|| LookupKey::NamespaceLabels(review.namespace.to_owned()))
            }
            Need::CandidateServiceAccount => {
                let t = template()?;
                if t.service_account().is_some_and(|(_, sa)| sa != "default") {
                    return None;
                }
                let (_, name) = t.service_account_candidate()?;
                Some(LookupKey::ServiceAccount {
                    namespace: review.namespace.to_owned(),
                    name: name.to_owned(),
                })
            }
            Need::HostNamespaceLabels => {
                let dr: crate::model::DestinationRule<'_> =
                    crate::model::decode_spec(review.spec()).ok()?;
                let host = dr.host()?;
                let mut labels = host.trim_end_matches('.').split('.');
                match (labels.next(), labels.next(), labels.next()) {
                    (Some(_), Some(ns), None) if !ns.is_empty() && ns != "*" => {
                        Some(LookupKey::NamespaceLabels(ns.to_ascii_lowercase()))
                    }
                    _ => None,
                }
            }
        }
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

/// Where the admission front end gets its [`ClusterView`] from. Implementations may need I/O
/// to answer (a cache miss falls back to a direct GET): that happens in [`prepare`], before the
/// engine runs, so the engine itself stays synchronous and pure.
///
/// [`prepare`]: ClusterSource::prepare
pub trait ClusterSource: Send + Sync {
    fn view(&self) -> &dyn ClusterView;
    /// Make sure the view can answer these lookups, within `deadline`.
    fn prepare<'a>(
        &'a self,
        _lookups: &'a [LookupKey],
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
