//! The rule catalogue. Each rule is a static, data-driven unit: a stable id, the kinds it
//! inspects, a default action, a one-line summary, an example fix, and a pure check function.
//! Rules live one file per kind; adding one touches that file plus one line in [`REGISTRY`].

use crate::config::Policy;
use crate::context::{ClusterView, Need};
pub(crate) use crate::finding::{Action, Violation};
use crate::mesh::MeshContext;
use crate::resource::{Kind, Review};
use std::fmt;

pub mod ambient;
pub mod authorization_policy;
pub mod cel;
pub(crate) mod destination_rule;
pub mod envoy_filter;
pub(crate) mod istio_validation;
pub mod namespace;
pub(crate) mod namespace_guard;
pub mod peer_authentication;
pub mod proxy;
pub(crate) mod request_authentication;
pub mod service;
pub mod sidecar;
pub mod workload;

/// What a check function gets besides the review: the policy, the mesh as installed, the cluster
/// view, and the per-review cache.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub policy: &'a Policy,
    /// The mesh as installed (MeshConfig values with the policy's overrides, the injectors and
    /// their decision): the root namespace, trust domains and "will this pod get a sidecar" come
    /// from here, never from the policy directly.
    pub mesh: &'a MeshContext,
    pub cluster: &'a dyn ClusterView,
    /// Work several rules share for one review; one per review.
    pub cache: &'a ReviewCache<'a>,
}

/// Work several rules share for one review, done once by whichever rule asks first.
#[derive(Default)]
pub struct ReviewCache<'v> {
    /// The AuthorizationPolicy the review writes, decoded once ([`ReviewCache::for_review`]),
    /// or what its decode refuses; `None` for other kinds or a cache made without the review.
    pub(crate) authorization_policy:
        Option<Result<crate::model::AuthorizationPolicy<'v>, crate::model::Malformed>>,
    /// The PeerAuthentication the review writes, decoded once ([`ReviewCache::for_review`]),
    /// or what its decode refuses; `None` for other kinds, a review that writes none, or a
    /// cache made without the review.
    pub(crate) peer_authentication:
        Option<Result<crate::model::PeerAuthentication<'v>, crate::model::Malformed>>,
    /// The PeerAuthentication the review replaces or deletes (`oldObject`), decoded once as
    /// the rules read it (a refused spec reads as empty); `None` as above.
    old_peer_authentication: Option<crate::model::PeerAuthentication<'v>>,
    /// What Istio's own validation would reject (`istio_validation`); its four rules each
    /// report one class of it.
    pub(crate) istio_errors: std::cell::OnceCell<istio_validation::IstioErrors>,
    /// The pod's namespace labels and injector decision (`workload`): several rules ask.
    pub(crate) pod: std::cell::OnceCell<workload::PodInjection>,
    /// Which of the pod's containers (in `PodTemplate::containers` order) are Istio's own
    /// (`proxy`): the UID, capability and override rules all ask.
    pub(crate) istio_containers: std::cell::OnceCell<Vec<bool>>,
    /// The pod template of the object the review writes (`model::workload`), decoded once
    /// when the cache is made for the review ([`ReviewCache::for_review`]), its strings borrowed
    /// from the review; `None` when the cache was made without the review.
    template: Option<Option<crate::model::workload::PodTemplate<'v>>>,
    /// The template decoded on first use by a cache made without the review (`default`),
    /// owning its strings.
    owned_template: std::cell::OnceCell<Option<crate::model::workload::PodTemplate<'static>>>,
}

impl<'v> ReviewCache<'v> {
    /// The AuthorizationPolicy the review writes: decoded once per review
    /// ([`ReviewCache::for_review`]), or here when the cache was made without the review; a
    /// policy whose decode is refused reads as empty (`istio-invalid-spec` reports it).
    pub(crate) fn authorization_policy<'x>(
        &'x self,
        review: &Review<'x>,
    ) -> std::borrow::Cow<'x, crate::model::AuthorizationPolicy<'x>>
    where
        'v: 'x,
    {
        use crate::model::AuthorizationPolicy;
        match &self.authorization_policy {
            Some(Ok(ap)) => std::borrow::Cow::Borrowed(ap),
            Some(Err(_)) => std::borrow::Cow::Owned(AuthorizationPolicy::default()),
            None => std::borrow::Cow::Owned(AuthorizationPolicy::of(review.spec())),
        }
    }

    /// The PeerAuthentication the review writes (empty on DELETE): decoded once per review
    /// ([`ReviewCache::for_review`]), or here when the cache was made without the review; a
    /// policy whose decode is refused reads as empty (`istio-invalid-spec` reports it).
    pub(crate) fn peer_authentication<'x>(
        &'x self,
        review: &Review<'x>,
    ) -> std::borrow::Cow<'x, crate::model::PeerAuthentication<'x>>
    where
        'v: 'x,
    {
        use std::borrow::Cow;
        match &self.peer_authentication {
            Some(Ok(pa)) => Cow::Borrowed(pa),
            Some(Err(_)) => Cow::Owned(crate::model::PeerAuthentication::default()),
            None => Cow::Owned(crate::model::decode_spec(review.spec()).unwrap_or_default()),
        }
    }

    /// The PeerAuthentication `old` (the review's `oldObject`) held, read as
    /// [`ReviewCache::peer_authentication`] reads the written one.
    pub(crate) fn old_peer_authentication<'x>(
        &'x self,
        old: &'x kube::core::DynamicObject,
    ) -> std::borrow::Cow<'x, crate::model::PeerAuthentication<'x>>
    where
        'v: 'x,
    {
        use std::borrow::Cow;
        match &self.old_peer_authentication {
            Some(pa) => Cow::Borrowed(pa),
            None => Cow::Owned(
                crate::model::decode_spec(crate::resource::spec_of(old)).unwrap_or_default(),
            ),
        }
    }

    /// The pod template of the object `review` writes (CREATE/UPDATE of a workload kind);
    /// every rule of the review (and the engine's lookups) reads this one.
    pub fn template(
        &self,
        review: &Review<'_>,
    ) -> Option<&crate::model::workload::PodTemplate<'v>> {
        use crate::model::workload::PodTemplate;
        match &self.template {
            Some(t) => t.as_ref(),
            None => self
                .owned_template
                .get_or_init(|| PodTemplate::written(review).map(PodTemplate::into_owned))
                .as_ref(),
        }
    }

    /// The cache of one review, with the typed object decoded once for the kinds whose rules
    /// share it (AuthorizationPolicy).
    pub(crate) fn for_review(review: &Review<'v>) -> ReviewCache<'v> {
        let authorization_policy = (review.kind == Kind::AuthorizationPolicy)
            .then(|| review.written())
            .flatten()
            .map(|o| crate::model::decode_spec(crate::resource::spec_of(o)));
        // Most PeerAuthentication rules read the policy, one the policy it replaces.
        let is_pa = review.kind == Kind::PeerAuthentication;
        let peer_authentication = is_pa
            .then(|| review.written())
            .flatten()
            .map(|o| crate::model::decode_spec(crate::resource::spec_of(o)));
        let old_peer_authentication = is_pa
            .then_some(review.old_object)
            .flatten()
            .map(|o| crate::model::decode_spec(crate::resource::spec_of(o)).unwrap_or_default());
        // Every rule of a workload kind reads the template: decoded here, once, borrowing.
        let template = review
            .kind
            .is_workload()
            .then(|| crate::model::workload::PodTemplate::written(review));
        ReviewCache {
            authorization_policy,
            peer_authentication,
            old_peer_authentication,
            template,
            ..ReviewCache::default()
        }
    }
}

pub(crate) use crate::model::validation::closest;

/// A check: pure function of the review and context, pushing violations.
/// One lifetime for the review and its context (the cache borrows from the review).
pub(crate) type CheckFn = for<'a> fn(&Review<'a>, &Ctx<'a>, &mut Vec<Violation>);

/// One rule of the catalogue.
pub struct Rule {
    /// Stable id, used in config, metrics and messages.
    pub id: &'static str,
    /// Kinds the rule inspects; the engine only calls it for these.
    pub kinds: &'static [Kind],
    pub default_action: Action,
    /// One-line description for `meshguard rules`.
    pub summary: &'static str,
    /// Example fix for `meshguard rules`.
    pub(crate) example_fix: &'static str,
    /// The cluster facts `check` reads through the cluster view; the admission front end
    /// fetches them before the engine runs (a fact not declared here may read as unknown).
    pub needs: &'static [Need],
    pub check: CheckFn,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule").field("id", &self.id).finish()
    }
}

/// The catalogue: one line per rule.
pub static REGISTRY: &[&Rule] = &[
    &peer_authentication::PERMISSIVE_MTLS,
    &peer_authentication::DISABLED_MTLS,
    &peer_authentication::UNSET_MESH_DEFAULT,
    &peer_authentication::PORT_LEVEL_WITHOUT_SELECTOR,
    &peer_authentication::WEAKENING_DELETE,
    &peer_authentication::ROOT_NAMESPACE_SELECTOR,
    &authorization_policy::ALLOW_ALL,
    &authorization_policy::WILDCARD_SOURCE,
    &authorization_policy::ALLOW_WITHOUT_SOURCE,
    &authorization_policy::PRINCIPAL_FORMAT,
    &authorization_policy::FOREIGN_TRUST_DOMAIN,
    &authorization_policy::EXACT_PATH_TRAILING_SLASH,
    &authorization_policy::UNKNOWN_CONDITION_KEY,
    &authorization_policy::QUOTED_CONDITION_KEY,
    &authorization_policy::DENY_ALL_DELETE,
    &authorization_policy::ALLOW_NEGATIVE_MATCH,
    &authorization_policy::DENY_POSITIVE_IDENTITY,
    &authorization_policy::ACTION_WITHOUT_RULES,
    &authorization_policy::HTTP_ONLY_DENY_WITHOUT_PORTS,
    &authorization_policy::REMOTE_IP_UNTRUSTED,
    &authorization_policy::SOURCE_IP_BEHIND_GATEWAY,
    &ambient::ZTUNNEL_HTTP,
    &ambient::ZTUNNEL_ACTION,
    &request_authentication::MISSING_ISSUER,
    &request_authentication::INSECURE_JWKS_URI,
    &request_authentication::MISSING_AUDIENCES,
    &request_authentication::JWKS_PRIVATE_KEY,
    &request_authentication::JWKS_URI_INTERNAL,
    &ambient::RA_AMBIENT_SELECTOR,
    &destination_rule::TLS_DISABLED,
    &destination_rule::TLS_NOT_ISTIO_MUTUAL,
    &destination_rule::TLS_NO_VERIFICATION,
    &destination_rule::INSECURE_SKIP_VERIFY,
    &envoy_filter::SECURITY_FILTER,
    &envoy_filter::TRANSPORT_SOCKET,
    &envoy_filter::INBOUND_LISTENER,
    &sidecar::INGRESS_TLS,
    &istio_validation::INVALID_ENUM,
    &istio_validation::INVALID_PORT,
    &istio_validation::CONFLICTING_FIELDS,
    &istio_validation::INVALID_SPEC,
    &workload::DEFAULT_SERVICE_ACCOUNT,
    &workload::INJECTION_DISABLED,
    &workload::NAMESPACE_NOT_INJECTED,
    &workload::MISSING_SIDECAR,
    &workload::TRAFFIC_BYPASS,
    &workload::HOST_NETWORK,
    &workload::HOST_NETWORK_IN_MESH,
    &workload::PROXY_UID_RULE,
    &workload::PROXY_IMAGE,
    &proxy::PROXY_OVERRIDE,
    &proxy::NET_ADMIN,
    &proxy::INJECTION_TEMPLATE,
    &workload::PROXY_IMAGE_AUTO,
    &namespace::INJECTION_MISSING,
    &namespace::INJECTION_DISABLED,
    &namespace::CONFLICTING_INJECTION_LABELS,
    &namespace::UNKNOWN_REVISION,
    &namespace_guard::PLATFORM_LABEL_CHANGE,
    &service::PORT_PROTOCOL,
];

/// Look a rule up by id.
pub fn find(id: &str) -> Option<&'static Rule> {
    REGISTRY.iter().copied().find(|r| r.id == id)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Small builders shared by the rule unit tests.
    use super::*;
    use crate::context::NoCluster;
    use kube::core::admission::Operation;
    use kube::core::DynamicObject;
    use serde_json::Value;

    /// Parse an object from JSON (tests only).
    /// Parse an object as the webhook decodes it (pod specs pruned of the fields no check
    /// reads, `resource::Shape`), so a rule that starts reading a pruned field fails its own
    /// tests.
    pub fn obj(v: Value) -> DynamicObject {
        let text = serde_json::to_vec(&v).expect("test object encodes");
        serde_json::from_slice::<crate::resource::ReviewObject>(&text)
            .expect("test object must parse")
            .0
    }

    /// Run one rule over (operation, version, namespace, object) and return its violations.
    pub fn run(
        rule: &Rule,
        op: Operation,
        version: &str,
        ns: &str,
        o: &DynamicObject,
    ) -> Vec<Violation> {
        run_with(rule, op, version, ns, o, &Policy::default())
    }

    pub(crate) fn run_with(
        rule: &Rule,
        op: Operation,
        version: &str,
        ns: &str,
        o: &DynamicObject,
        policy: &Policy,
    ) -> Vec<Violation> {
        run_in(
            rule,
            op,
            version,
            ns,
            o,
            policy,
            &MeshContext::default(),
            &NoCluster,
        )
    }

    /// Run one rule with a policy, a mesh context and a cluster view. The policy's mesh
    /// overrides are applied to `mesh` as the engine applies them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_in(
        rule: &Rule,
        op: Operation,
        version: &str,
        ns: &str,
        o: &DynamicObject,
        policy: &Policy,
        mesh: &MeshContext,
        cluster: &dyn ClusterView,
    ) -> Vec<Violation> {
        let mesh = mesh.with_overrides(&policy.mesh_overrides());
        let kind = rule.kinds[0];
        let name = o.metadata.name.clone().unwrap_or_default();
        let is_delete = matches!(op, Operation::Delete);
        let review = Review {
            kind,
            version,
            operation: &op,
            namespace: ns,
            name: &name,
            object: if is_delete { None } else { Some(o) },
            old_object: if is_delete { Some(o) } else { None },
            dry_run: false,
            created_for: None,
        };
        let ctx = Ctx {
            policy,
            mesh: &mesh,
            cluster,
            cache: &ReviewCache::default(),
        };
        let mut out = Vec::new();
        (rule.check)(&review, &ctx, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Lookup, LookupKey};
    use std::collections::HashSet;
    use std::sync::Mutex;

    /// A cluster view that answers "unknown" and records what was asked.
    #[derive(Default)]
    struct Recording(Mutex<Vec<LookupKey>>);

    impl ClusterView for Recording {
        fn namespace_labels(&self, ns: &str) -> Lookup<std::collections::BTreeMap<String, String>> {
            if let Ok(mut asked) = self.0.lock() {
                asked.push(LookupKey::NamespaceLabels(ns.to_owned()));
            }
            Lookup::Unknown
        }
        fn service_account(&self, ns: &str, name: &str) -> Lookup<()> {
            if let Ok(mut asked) = self.0.lock() {
                asked.push(LookupKey::ServiceAccount {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                });
            }
            Lookup::Unknown
        }
    }

    /// An object of `kind` that makes rules look things up: a workload without its own
    /// ServiceAccount but with an app label, a DestinationRule toward `<svc>.<ns>`.
    fn sample(kind: Kind) -> kube::core::DynamicObject {
        let template = serde_json::json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "app"}]}});
        let f = kind.facts();
        let api_version = if f.group.is_empty() {
            f.versions[0].to_owned()
        } else {
            format!("{}/{}", f.group, f.versions[0])
        };
        let mut o = serde_json::json!({"apiVersion": api_version, "kind": kind.as_str(),
            "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}}});
        match f.pod_template {
            Some([]) => {
                o["spec"] = template["spec"].clone();
            }
            Some(path) => {
                let mut spec = template;
                for key in path.iter().skip(1).rev() {
                    spec = serde_json::json!({ *key: spec });
                }
                o[path[0]] = spec;
            }
            None if kind == Kind::DestinationRule => {
                o["spec"] = serde_json::json!({"host": "db.data",
                    "trafficPolicy": {"tls": {"mode": "DISABLE"}}});
            }
            None if kind == Kind::PeerAuthentication => {
                o["spec"] = serde_json::json!({"mtls": {"mode": "DISABLE"}});
            }
            None => {}
        }
        serde_json::from_value(o).expect("sample object")
    }

    #[test]
    fn every_cluster_lookup_a_rule_makes_is_declared() {
        for rule in REGISTRY {
            for kind in rule.kinds {
                let o = sample(*kind);
                let review = Review::create(*kind, "v1", "prod", "web", &o);
                let recording = Recording::default();
                let ctx = Ctx {
                    policy: &Policy::default(),
                    mesh: &MeshContext::default(),
                    cluster: &recording,
                    cache: &ReviewCache::default(),
                };
                (rule.check)(&review, &ctx, &mut Vec::new());
                let declared: HashSet<LookupKey> =
                    rule.needs.iter().filter_map(|n| n.key(&review)).collect();
                for asked in recording.0.lock().expect("lock").iter() {
                    assert!(
                        declared.contains(asked),
                        "{} reads {asked:?} for a {kind} but does not declare it in needs",
                        rule.id
                    );
                }
            }
        }
        for m in crate::mutation::REGISTRY {
            for kind in m.kinds {
                let o = sample(*kind);
                let review = Review::create(*kind, "v1", "prod", "web", &o);
                let recording = Recording::default();
                let ctx = Ctx {
                    policy: &Policy::default(),
                    mesh: &MeshContext::default(),
                    cluster: &recording,
                    cache: &ReviewCache::default(),
                };
                (m.apply)(&review, &ctx, &mut Vec::new());
                let declared: HashSet<LookupKey> =
                    m.needs.iter().filter_map(|n| n.key(&review)).collect();
                for asked in recording.0.lock().expect("lock").iter() {
                    assert!(
                        declared.contains(asked),
                        "{} reads {asked:?} undeclared",
                        m.id
                    );
                }
            }
        }
    }

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for r in REGISTRY {
            assert!(seen.insert(r.id), "duplicate rule id {}", r.id);
            assert!(
                r.id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "rule id {} must be kebab-case",
                r.id
            );
            assert!(!r.kinds.is_empty(), "rule {} names no kind", r.id);
            assert!(
                !r.summary.ends_with('.'),
                "summary of {} ends with a period",
                r.id
            );
            assert_ne!(
                r.default_action,
                Action::Off,
                "rule {} is off by default",
                r.id
            );
        }
    }
}
