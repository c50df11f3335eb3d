//! The one evaluator: review + cluster view → findings (validation) or patches (mutation).
//! The webhook, `check` and `audit` all call it; only the admission front end turns findings
//! into allow/deny/warn. No I/O happens here.

use crate::config::exceptions::{self, Clock, Excepted, Exception, ExceptionSet, Hit, Target};
use crate::config::Policy;
use crate::context::{ClusterView, Lookup, LookupKey, Need};
use crate::finding::{Action, Finding};
use crate::mesh::MeshContext;
use crate::mutation::{self, Mutation};
use crate::resource::{labels_of, Kind, Review};
use crate::rules::{self, Ctx, ReviewCache, Rule};
use json_patch::PatchOperation;
use kube::core::admission::Operation;
use kube::core::DynamicObject;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Result of validating one review.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Violations with their resolved action, in catalogue order. Rules whose action is `off`
    /// or that are exempted for this object do not appear.
    pub findings: Vec<Finding>,
    /// The whole request was exempt (exempt namespace): no rule ran.
    pub exempt: bool,
    /// Findings an exception covers (`config::exceptions`): reported, never enforced.
    pub excepted: Vec<Excepted>,
}

impl Evaluation {
    pub fn denied(&self) -> bool {
        self.findings.iter().any(|f| f.action == Action::Deny)
    }
    pub fn with_action(&self, action: Action) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.action == action)
    }
}

/// Result of mutating one review.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mutated {
    /// Which mutations contributed operations, in order.
    pub applied: Vec<&'static str>,
    /// The JSON patch, ready to send.
    pub patch: Vec<PatchOperation>,
    pub exempt: bool,
}

/// The engine: a validated policy and the mesh as installed (the two inputs of every verdict),
/// with the rule table resolved per kind.
#[derive(Debug)]
pub struct Engine {
    policy: Policy,
    /// The mesh context with this policy's overrides applied.
    mesh: Arc<MeshContext>,
    exempt_namespaces: Vec<String>,
    rules: HashMap<Kind, Vec<(&'static Rule, Action)>>,
    mutations: HashMap<Kind, Vec<&'static Mutation>>,
    /// What the active rules, mutations and exemptions of each kind read from the cluster.
    needs: HashMap<Kind, Vec<Need>>,
    /// The policy's exceptions and PolicyException resources, and the clock they expire by.
    exceptions: ExceptionSet,
    clock: Arc<dyn Clock>,
    /// The policy has per-namespace overrides: actions are resolved per review.
    per_namespace: bool,
}

impl Engine {
    /// Build the engine from the policy and the mesh context (`MeshContext::default()` when no
    /// mesh object is visible: Istio's defaults and the default injector assumed). The policy's
    /// mesh values go over the context's (they win); the context is rebuilt only when they differ
    /// from the overrides it was built with. `own_namespace` (where meshguard runs), the root
    /// namespace and the Istio namespace are always exempt.
    pub fn new(policy: Policy, mesh: Arc<MeshContext>, own_namespace: Option<&str>) -> Engine {
        let overrides = policy.mesh_overrides();
        let mesh = if mesh.overrides() == &overrides {
            mesh
        } else {
            Arc::new(mesh.with_overrides(&overrides))
        };
        let mut exempt_namespaces = policy.exempt_namespaces.clone();
        exempt_namespaces.push(mesh.root_namespace().value.clone());
        exempt_namespaces.push(mesh.istio_namespace().value.clone());
        exempt_namespaces.retain(|n| !n.is_empty());
        if let Some(ns) = own_namespace.filter(|n| !n.is_empty()) {
            exempt_namespaces.push(ns.to_owned());
        }
        exempt_namespaces.sort();
        exempt_namespaces.dedup();

        let mut rules: HashMap<Kind, Vec<(&'static Rule, Action)>> = HashMap::new();
        let exceptions = ExceptionSet::of_policy(&policy);
        for rule in rules::REGISTRY {
            let action = policy.action_for(rule.id, rule.default_action);
            // An override may turn a rule that is off by default on somewhere.
            if !policy.may_act(rule.id, rule.default_action) {
                continue;
            }
            for kind in rule.kinds {
                rules.entry(*kind).or_default().push((rule, action));
            }
        }
        let mut mutations: HashMap<Kind, Vec<&'static Mutation>> = HashMap::new();
        for m in mutation::REGISTRY {
            if policy.mutation_enabled(m.id) {
                for kind in m.kinds {
                    mutations.entry(*kind).or_default().push(m);
                }
            }
        }
        let mut needs: HashMap<Kind, Vec<Need>> = HashMap::new();
        for (kind, active) in &rules {
            let n = needs.entry(*kind).or_default();
            for (rule, _) in active {
                n.extend(rule.needs);
                // A namespaceSelector exemption reads the namespace's labels.
                let by_namespace_labels = policy
                    .rules
                    .get(rule.id)
                    .is_some_and(|c| c.exemptions.iter().any(|e| e.namespace_selector.is_some()));
                if by_namespace_labels
                    || policy.action_reads_namespace_labels(rule.id)
                    || exceptions.reads_namespace_labels(rule.id)
                {
                    n.push(Need::NamespaceLabels);
                }
            }
        }
        for (kind, active) in &mutations {
            needs
                .entry(*kind)
                .or_default()
                .extend(active.iter().flat_map(|m| m.needs));
        }
        for n in needs.values_mut() {
            n.sort();
            n.dedup();
        }
        Engine {
            per_namespace: policy.has_overrides(),
            policy,
            mesh,
            exempt_namespaces,
            rules,
            mutations,
            needs,
            exceptions,
            clock: Arc::new(exceptions::SystemClock),
        }
    }

    /// Add PolicyException resources to the policy's exceptions (checked against the policy at
    /// every evaluation).
    pub(crate) fn with_exception_resources(mut self, resources: Vec<Exception>) -> Engine {
        for e in resources {
            self.exceptions.push(e);
        }
        self
    }

    /// Read the time from `clock` (tests, `meshguard test`) instead of the system's.
    pub(crate) fn with_clock(mut self, clock: Arc<dyn Clock>) -> Engine {
        self.clock = clock;
        self
    }

    /// Every exception, the policy's and the resources'.
    pub fn exceptions(&self) -> &ExceptionSet {
        &self.exceptions
    }

    /// The time exceptions are judged at now.
    pub fn now(&self) -> k8s_openapi::jiff::Timestamp {
        self.clock.now()
    }

    /// The cluster lookups evaluating or mutating this review will make, derived from what the
    /// active rules, mutations and exemptions of its kind declare. Nothing for an exempt review.
    pub fn lookups(&self, review: &Review<'_>) -> Vec<LookupKey> {
        self.lookups_with(review, &ReviewCache::default())
    }

    /// [`Engine::lookups`] reading the review's decoded objects from `cache` (the webhook passes
    /// the cache it then evaluates with, so nothing is decoded twice).
    pub(crate) fn lookups_with<'c>(
        &self,
        review: &Review<'c>,
        cache: &'c ReviewCache<'c>,
    ) -> Vec<LookupKey> {
        if self.is_exempt(review) {
            return Vec::new();
        }
        let template = || cache.template(review);
        let mut keys: Vec<LookupKey> = self
            .needs
            .get(&review.kind)
            .into_iter()
            .flatten()
            .filter_map(|n| n.key_with(review, &template))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The mesh as installed, with the policy's overrides applied.
    pub fn mesh(&self) -> &Arc<MeshContext> {
        &self.mesh
    }

    /// Namespaces whose workloads, Services, ServiceAccounts and the Namespace objects
    /// themselves are exempt from every rule and mutation.
    pub fn exempt_namespaces(&self) -> &[String] {
        &self.exempt_namespaces
    }

    /// Whether a review is exempt as a whole. Istio security resources are never exempt by
    /// namespace: the mesh-wide policies live in the (exempt) root namespace and are exactly
    /// what must be checked. Use per-rule exemptions to relax them.
    pub(crate) fn is_exempt(&self, review: &Review<'_>) -> bool {
        if finalizers_coming_off(review) {
            return true;
        }
        !review.kind.is_istio() && self.exempt_namespaces.iter().any(|n| n == review.namespace)
    }

    /// Validate one review.
    pub fn evaluate(&self, review: &Review<'_>, cluster: &dyn ClusterView) -> Evaluation {
        self.evaluate_with(review, cluster, &ReviewCache::for_review(review))
    }

    /// [`Engine::evaluate`] with the review's cache made by the caller
    /// ([`ReviewCache::for_review`] of this very review), shared with [`Engine::lookups_with`].
    pub(crate) fn evaluate_with<'c>(
        &self,
        review: &Review<'c>,
        cluster: &dyn ClusterView,
        cache: &'c ReviewCache<'c>,
    ) -> Evaluation {
        if self.is_exempt(review) {
            return Evaluation {
                exempt: true,
                ..Evaluation::default()
            };
        }
        let mut excepted = Vec::new();
        let mut findings = self.run_rules(review, cluster, cache, false, Some(&mut excepted));
        if self.policy.allow_existing_violations {
            self.pardon_existing(review, cluster, &mut findings);
            pardon_inherited(review, &mut findings);
        }
        Evaluation {
            findings,
            exempt: false,
            excepted,
        }
    }

    /// On UPDATE, turn deny findings the old object already had (same rule, field and message)
    /// into warnings that say so. The old object is judged as an UPDATE onto itself, so rules that
    /// compare old and new (weakening) see no change.
    fn pardon_existing(
        &self,
        review: &Review<'_>,
        cluster: &dyn ClusterView,
        findings: &mut [Finding],
    ) {
        let (Operation::Update, Some(old)) = (review.operation, review.old_object) else {
            return;
        };
        if !findings.iter().any(|f| f.action == Action::Deny) {
            return;
        }
        let before = Review {
            object: Some(old),
            old_object: Some(old),
            ..*review
        };
        let earlier = self.run_rules(
            &before,
            cluster,
            &ReviewCache::for_review(&before),
            true,
            None,
        );
        for f in findings.iter_mut().filter(|f| f.action == Action::Deny) {
            // The same finding: rule, field and message (which names the value), so that
            // widening an existing hole (excludeInboundPorts "8080" -> "1-65535") still denies.
            let existed = earlier.iter().any(|e| {
                e.rule == f.rule
                    && e.violation.path == f.violation.path
                    && e.violation.message == f.violation.message
            });
            if existed {
                f.action = Action::Warn;
                f.violation.message.push_str(
                    " (already so before this update; allowed because allowExistingViolations is on, fix it at the next change)",
                );
            }
        }
    }

    /// Run the kind's rules (only its deny rules with `deny_only`); exempted rules report
    /// nothing; findings an exception covers go to `excepted` (dropped when `None`).
    fn run_rules<'c>(
        &self,
        review: &Review<'c>,
        cluster: &dyn ClusterView,
        cache: &'c ReviewCache<'c>,
        deny_only: bool,
        mut excepted: Option<&mut Vec<Excepted>>,
    ) -> Vec<Finding> {
        let ctx = Ctx {
            policy: &self.policy,
            mesh: &self.mesh,
            cluster,
            cache,
        };
        let mut findings = Vec::new();
        let mut violations = Vec::new();
        let rules = self
            .rules
            .get(&review.kind)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // The namespace's labels, read at most once, when overrides or exceptions ask.
        let ns_labels = std::cell::OnceCell::new();
        let labels = || {
            ns_labels
                .get_or_init(|| review_namespace_labels(review, cluster))
                .as_ref()
        };
        for (rule, action) in rules {
            let action = match self.per_namespace {
                true => {
                    self.policy
                        .action_in(rule.id, rule.default_action, review.namespace, labels())
                }
                false => *action,
            };
            if action == Action::Off || (deny_only && action != Action::Deny) {
                continue;
            }
            violations.clear();
            (rule.check)(review, &ctx, &mut violations);
            if violations.is_empty() || self.rule_exempted(rule, review, cluster) {
                continue;
            }
            let mut note = None;
            match self.exception_hit(rule.id, review, &|| labels().cloned()) {
                Some(Hit::Active(exception)) => {
                    if let Some(out) = excepted.as_deref_mut() {
                        out.extend(violations.drain(..).map(|violation| Excepted {
                            finding: Finding {
                                rule: rule.id,
                                action,
                                violation,
                            },
                            exception: exception.clone(),
                        }));
                    }
                    continue;
                }
                Some(Hit::Expired(exception)) => note = Some(exceptions::expired_note(&exception)),
                None => {}
            }
            findings.extend(violations.drain(..).map(|mut violation| {
                if let Some(note) = &note {
                    violation.message.push_str(note);
                }
                Finding {
                    rule: rule.id,
                    action,
                    violation,
                }
            }));
        }
        findings
    }

    /// The exception that covers a finding of rule `id` about the review's object, if any.
    fn exception_hit(
        &self,
        id: &str,
        review: &Review<'_>,
        namespace_labels: &dyn Fn() -> Option<BTreeMap<String, String>>,
    ) -> Option<Hit> {
        if !self.exceptions.names_rule(id) {
            return None;
        }
        let target = Target {
            namespace: review.namespace,
            kind: review.kind.as_str(),
            name: review.name,
            labels: review.subject().map(labels_of),
            namespace_labels,
        };
        self.exceptions
            .find(&self.policy, id, &target, self.clock.now())
    }

    /// Compute the patch for one review. Mutations run in registry order; each later one sees
    /// the object as patched by the earlier ones.
    pub fn mutate(&self, review: &Review<'_>, cluster: &dyn ClusterView) -> Mutated {
        if self.is_exempt(review) {
            return Mutated {
                exempt: true,
                ..Mutated::default()
            };
        }
        let mut out = Mutated::default();
        let mut patched: Option<DynamicObject> = None;
        let mutations = self
            .mutations
            .get(&review.kind)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (i, m) in mutations.iter().enumerate() {
            // A fresh cache per mutation: each may see a differently patched object.
            let cache = ReviewCache::default();
            let ctx = Ctx {
                policy: &self.policy,
                mesh: &self.mesh,
                cluster,
                cache: &cache,
            };
            let mut ops = Vec::new();
            match &patched {
                None => (m.apply)(review, &ctx, &mut ops),
                Some(obj) => {
                    let r = Review {
                        object: Some(obj),
                        ..*review
                    };
                    (m.apply)(&r, &ctx, &mut ops)
                }
            }
            if ops.is_empty() {
                continue;
            }
            // Re-materialise the object only when another mutation follows (rare: one mutation
            // per kind today), so the common case allocates nothing extra.
            let more = i + 1 < mutations.len();
            let base = patched.as_ref().or(review.object).filter(|_| more);
            if let Some(base) = base {
                if let Ok(mut doc) = serde_json::to_value(base) {
                    if json_patch::patch(&mut doc, &json_patch::Patch(ops.clone())).is_ok() {
                        patched = serde_json::from_value(doc).ok();
                    }
                }
            }
            out.applied.push(m.id);
            out.patch.extend(ops);
        }
        out
    }

    fn rule_exempted(&self, rule: &Rule, review: &Review<'_>, cluster: &dyn ClusterView) -> bool {
        self.exempted(
            rule.id,
            review.namespace,
            review.subject().map(labels_of),
            &|| match cluster.namespace_labels(review.namespace) {
                Lookup::Found(labels) => Some(labels),
                _ => None,
            },
        )
    }

    /// Whether the policy's `rules.<id>.exemptions` exempt an object in `namespace` with
    /// `object_labels`; `namespace_labels` is asked only when an exemption selects namespaces
    /// by label (`None`: unknown, so the selector does not match).
    pub fn exempted(
        &self,
        id: &str,
        namespace: &str,
        object_labels: Option<&BTreeMap<String, String>>,
        namespace_labels: &dyn Fn() -> Option<BTreeMap<String, String>>,
    ) -> bool {
        let Some(cfg) = self.policy.rules.get(id) else {
            return false;
        };
        cfg.exemptions.iter().any(|ex| {
            let ns_ok = ex.namespaces.is_empty() || ex.namespaces.iter().any(|n| n == namespace);
            let obj_ok = ex
                .object_selector
                .as_ref()
                .is_none_or(|sel| object_labels.is_some_and(|l| sel.matches(l)));
            let nsel_ok = ex
                .namespace_selector
                .as_ref()
                .is_none_or(|sel| namespace_labels().is_some_and(|l| sel.matches(&l)));
            let any_condition = !ex.namespaces.is_empty()
                || ex.object_selector.is_some()
                || ex.namespace_selector.is_some();
            any_condition && ns_ok && obj_ok && nsel_ok
        })
    }
}

/// The engine in force, shared by everything that evaluates in one process (the webhook, the
/// periodic audit) and swapped as a whole when the policy is reloaded or the mesh changes: every holder sees the new
/// policy at its next evaluation, and an evaluation in progress finishes with the engine it
/// started with. Reads are lock-free (the hot path loads it once per review).
#[derive(Clone, Debug)]
pub struct EngineHandle(Arc<arc_swap::ArcSwap<Engine>>);

impl EngineHandle {
    pub fn new(engine: Engine) -> EngineHandle {
        EngineHandle(Arc::new(arc_swap::ArcSwap::from_pointee(engine)))
    }

    /// The engine in force now.
    pub fn current(&self) -> Arc<Engine> {
        self.0.load_full()
    }

    /// Replace the engine for every holder (policy reload, mesh change).
    pub fn replace(&self, engine: Engine) {
        self.0.store(Arc::new(engine));
    }
}

/// On a controller's CREATE of an object for its owner (`Review::created_for`), turn deny
/// findings of rules that also judge the owner's kind into warnings that say so: the pod
/// template is the owner's, which was admitted (or predates meshguard), and refusing its
/// ReplicaSet or Pods would only stop a rollout or a scale-up of an existing workload, not fix
/// anything. Rules only a Pod can break (`wl-missing-sidecar`: the injector failed at this very
/// creation) keep denying.
fn pardon_inherited(review: &Review<'_>, findings: &mut [Finding]) {
    let Some(owner) = review.created_for else {
        return;
    };
    for f in findings.iter_mut().filter(|f| f.action == Action::Deny) {
        let judges_owner = rules::find(f.rule).is_some_and(|r| r.kinds.contains(&owner));
        if judges_owner {
            f.action = Action::Warn;
            let m = &mut f.violation.message;
            m.push_str(" (inherited from the pod template of its ");
            m.push_str(owner.as_str());
            m.push_str(", created by its controller; allowed because allowExistingViolations is on, fix it in the ");
            m.push_str(owner.as_str());
            m.push(')');
        }
    }
}

/// The labels of the review's namespace for overrides and exceptions: a Namespace's own (as
/// stored: the old object on UPDATE, so relabelling cannot change how that very change is
/// judged), else the cluster's; a namespace that does not exist has none; `None`: unknown.
fn review_namespace_labels(
    review: &Review<'_>,
    cluster: &dyn ClusterView,
) -> Option<BTreeMap<String, String>> {
    if review.kind == Kind::Namespace {
        return review
            .old_object
            .or(review.object)
            .map(|o| labels_of(o).clone());
    }
    match cluster.namespace_labels(review.namespace) {
        Lookup::Found(labels) => Some(labels),
        Lookup::Missing => Some(BTreeMap::new()),
        Lookup::Unknown => None,
    }
}

/// An UPDATE of an object the API server is deleting (`deletionTimestamp` set) that only takes
/// finalizers off: the one write a teardown needs, and refusing it would leave the object stuck
/// terminating. Every other UPDATE of such an object is judged as usual: an object waiting on a
/// finalizer is still in force (Istio keeps applying a policy until it is gone), so editing its
/// spec, labels or annotations is an edit like any other. The old and new objects must be the
/// same but for what the API server keeps itself (`resourceVersion`, `generation`,
/// `managedFields`, the deletion fields) and the finalizers, of which the new ones are a subset
/// of the old. Clients cannot set `deletionTimestamp` themselves.
fn finalizers_coming_off(review: &Review<'_>) -> bool {
    let (Operation::Update, Some(new), Some(old)) =
        (review.operation, review.object, review.old_object)
    else {
        return false;
    };
    if new.metadata.deletion_timestamp.is_none() {
        return false;
    }
    let kept = new.metadata.finalizers.iter().flatten();
    let before = old.metadata.finalizers.as_deref().unwrap_or_default();
    if !kept.into_iter().all(|f| before.contains(f)) {
        return false;
    }
    /// The metadata a client controls.
    fn owned(m: &kube::core::ObjectMeta) -> kube::core::ObjectMeta {
        kube::core::ObjectMeta {
            finalizers: None,
            resource_version: None,
            generation: None,
            managed_fields: None,
            deletion_timestamp: None,
            deletion_grace_period_seconds: None,
            self_link: None,
            ..m.clone()
        }
    }
    new.types == old.types && new.data == old.data && owned(&new.metadata) == owned(&old.metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::NoCluster;
    use kube::core::admission::Operation;
    use serde_json::json;

    fn pa(ns: &str, mode: &str, labels: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "p", "namespace": ns, "labels": labels},
            "spec": {"mtls": {"mode": mode}}
        }))
        .expect("obj")
    }

    fn eval(engine: &Engine, o: &DynamicObject) -> Evaluation {
        let op = Operation::Create;
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        let review = Review {
            kind: Kind::PeerAuthentication,
            version: "v1",
            operation: &op,
            namespace: &ns,
            name: "p",
            object: Some(o),
            old_object: None,
            dry_run: false,
            created_for: None,
        };
        engine.evaluate(&review, &NoCluster)
    }

    #[test]
    fn off_rules_do_not_run_and_exemptions_apply() {
        let policy = crate::catalogue::policy_from_yaml(
            "rules:\n  pa-disabled-mtls:\n    action: off\n  pa-permissive-mtls:\n    exemptions:\n      - namespaces: [legacy]\n      - objectSelector:\n          matchLabels: {migration: \"true\"}\n",
            "t",
        )
        .expect("policy");
        let engine = Engine::new(policy, Default::default(), None);
        assert!(eval(&engine, &pa("prod", "DISABLE", json!({})))
            .findings
            .is_empty());
        assert_eq!(
            eval(&engine, &pa("prod", "PERMISSIVE", json!({})))
                .findings
                .len(),
            1
        );
        assert!(eval(&engine, &pa("legacy", "PERMISSIVE", json!({})))
            .findings
            .is_empty());
        assert!(eval(
            &engine,
            &pa("prod", "PERMISSIVE", json!({"migration": "true"}))
        )
        .findings
        .is_empty());
    }

    #[test]
    fn istio_policies_in_root_namespace_are_not_namespace_exempt() {
        let engine = Engine::new(Policy::default(), Default::default(), Some("meshguard"));
        let ev = eval(&engine, &pa("istio-system", "PERMISSIVE", json!({})));
        assert!(!ev.exempt);
        assert!(ev.denied());
    }

    fn update(engine: &Engine, kind: Kind, old: &DynamicObject, new: &DynamicObject) -> Evaluation {
        let op = Operation::Update;
        let review = Review {
            kind,
            version: "v1",
            operation: &op,
            namespace: "prod",
            name: "p",
            object: Some(new),
            old_object: Some(old),
            dry_run: false,
            created_for: None,
        };
        engine.evaluate(&review, &NoCluster)
    }

    fn deployment(sa: Option<&str>, image: &str) -> DynamicObject {
        let mut spec = json!({"containers": [{"name": "app", "image": image}]});
        if let Some(sa) = sa {
            spec["serviceAccountName"] = json!(sa);
        }
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "p", "namespace": "prod"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}}
        }))
        .expect("obj")
    }

    fn actions(ev: &Evaluation, rule: &str) -> Vec<Action> {
        ev.findings
            .iter()
            .filter(|f| f.rule == rule)
            .map(|f| f.action)
            .collect()
    }

    #[test]
    fn existing_violations_warn_on_update_new_ones_deny() {
        let engine = Engine::new(Policy::default(), Default::default(), None);
        // The Deployment ran as "default" before; a new image is a routine update.
        let ev = update(
            &engine,
            Kind::Deployment,
            &deployment(None, "web:1"),
            &deployment(None, "web:2"),
        );
        assert_eq!(actions(&ev, "wl-default-service-account"), [Action::Warn]);
        let f = ev
            .findings
            .iter()
            .find(|f| f.rule == "wl-default-service-account")
            .expect("finding");
        assert!(f.violation.message.ends_with(
            "allowed because allowExistingViolations is on, fix it at the next change)"
        ));
        // Dropping its own account is new: denied.
        let ev = update(
            &engine,
            Kind::Deployment,
            &deployment(Some("web"), "web:1"),
            &deployment(None, "web:1"),
        );
        assert_eq!(actions(&ev, "wl-default-service-account"), [Action::Deny]);
        // PeerAuthentication: PERMISSIVE kept is a warning, STRICT -> PERMISSIVE is denied.
        let ev = update(
            &engine,
            Kind::PeerAuthentication,
            &pa("prod", "PERMISSIVE", json!({})),
            &pa("prod", "PERMISSIVE", json!({"team": "a"})),
        );
        assert!(!ev.denied(), "{:?}", ev.findings);
        assert_eq!(actions(&ev, "pa-permissive-mtls"), [Action::Warn]);
        let ev = update(
            &engine,
            Kind::PeerAuthentication,
            &pa("prod", "STRICT", json!({})),
            &pa("prod", "PERMISSIVE", json!({})),
        );
        assert!(ev.denied());
        assert_eq!(actions(&ev, "pa-permissive-mtls"), [Action::Deny]);
        // Widening an existing bypass is a new finding (the message names the value).
        let bypass = |ports: &str| -> DynamicObject {
            let mut d = deployment(Some("web"), "web:1");
            d.data["spec"]["template"]["metadata"]["annotations"] =
                json!({"traffic.sidecar.istio.io/excludeInboundPorts": ports});
            d
        };
        let ev = update(&engine, Kind::Deployment, &bypass("8080"), &bypass("8080"));
        assert_eq!(actions(&ev, "wl-traffic-bypass"), [Action::Warn]);
        let ev = update(
            &engine,
            Kind::Deployment,
            &bypass("8080"),
            &bypass("1-65535"),
        );
        assert_eq!(actions(&ev, "wl-traffic-bypass"), [Action::Deny]);
        // Off: every deny stays a deny.
        let strict = crate::catalogue::policy_from_yaml("allowExistingViolations: false\n", "t")
            .expect("policy");
        let engine = Engine::new(strict, Default::default(), None);
        let ev = update(
            &engine,
            Kind::Deployment,
            &deployment(None, "web:1"),
            &deployment(None, "web:2"),
        );
        assert_eq!(actions(&ev, "wl-default-service-account"), [Action::Deny]);
    }

    #[test]
    fn lookups_derive_from_what_active_rules_declare() {
        let engine = Engine::new(Policy::default(), Default::default(), None);
        let web = |sa: Option<&str>| deployment(sa, "web:1");
        let d = web(None);
        let op = Operation::Create;
        let review =
            |o: &'static DynamicObject| Review::create(Kind::Deployment, "v1", "prod", "p", o);
        let d: &'static DynamicObject = Box::leak(Box::new(d));
        assert_eq!(
            engine.lookups(&review(d)),
            [
                LookupKey::NamespaceLabels("prod".into()),
                LookupKey::ServiceAccount {
                    namespace: "prod".into(),
                    name: "web".into()
                }
            ]
        );
        // With its own account, only the namespace's labels.
        let own: &'static DynamicObject = Box::leak(Box::new(web(Some("web"))));
        assert_eq!(
            engine.lookups(&review(own)),
            [LookupKey::NamespaceLabels("prod".into())]
        );
        // Rules that need nothing from the cluster, turned off, leave nothing to fetch...
        let off = crate::catalogue::policy_from_yaml(
            "rules:\n  wl-injection-disabled: {action: off}\n  wl-namespace-not-injected: {action: off}\n  wl-missing-sidecar: {action: off}\n  wl-traffic-bypass: {action: off}\n  wl-host-network: {action: off}\n  wl-host-network-in-mesh: {action: off}\n  wl-proxy-override: {action: off}\n  wl-default-service-account: {action: off}\n  ns-unknown-revision: {action: off}\n  wl-proxy-image-auto: {action: off}\nmutations:\n  default-service-account: {enabled: false}\n",
            "t",
        )
        .expect("policy");
        assert!(Engine::new(off, Default::default(), None)
            .lookups(&review(d))
            .is_empty());
        // ... and a namespaceSelector exemption brings the namespace's labels back.
        let exempt = crate::catalogue::policy_from_yaml(
            "rules:\n  pa-permissive-mtls:\n    exemptions: [{namespaceSelector: {matchLabels: {a: b}}}]\n",
            "t",
        )
        .expect("policy");
        let pa: &'static DynamicObject = Box::leak(Box::new(pa("prod", "STRICT", json!({}))));
        let pa_review = Review {
            kind: Kind::PeerAuthentication,
            version: "v1",
            operation: &op,
            namespace: "prod",
            name: "p",
            object: Some(pa),
            old_object: None,
            dry_run: false,
            created_for: None,
        };
        // pa-disabled-mtls reads the namespace's labels (DISABLE means PERMISSIVE in ambient).
        let no_disable =
            crate::catalogue::policy_from_yaml("rules:\n  pa-disabled-mtls: {action: off}\n", "t")
                .expect("policy");
        assert!(Engine::new(no_disable, Default::default(), None)
            .lookups(&pa_review)
            .is_empty());
        assert_eq!(
            Engine::new(exempt, Default::default(), None).lookups(&pa_review),
            [LookupKey::NamespaceLabels("prod".into())]
        );
        // A DestinationRule host `<svc>.<ns>` needs that namespace's labels.
        let dr: &'static DynamicObject = Box::leak(Box::new(
            serde_json::from_value(
                json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": "d", "namespace": "prod"}, "spec": {"host": "db.data"}}),
            )
            .expect("dr"),
        ));
        let dr_review = Review::create(Kind::DestinationRule, "v1", "prod", "d", dr);
        assert_eq!(
            engine.lookups(&dr_review),
            [LookupKey::NamespaceLabels("data".into())]
        );
    }

    #[test]
    fn a_handle_swaps_the_engine_for_every_holder() {
        let handle = EngineHandle::new(Engine::new(Policy::default(), Default::default(), None));
        let other_holder = handle.clone();
        let before = handle.current();
        let strict = crate::catalogue::policy_from_yaml("mode: audit\n", "t").expect("policy");
        handle.replace(Engine::new(strict, Default::default(), None));
        assert_eq!(
            before.policy().mode,
            crate::config::EnforcementMode::Enforce
        );
        assert_eq!(
            other_holder.current().policy().mode,
            crate::config::EnforcementMode::Audit
        );
    }

    #[test]
    fn controller_made_children_inherit_their_owner_s_template_findings() {
        let engine = Engine::new(Policy::default(), Default::default(), None);
        let pod: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "prod", "labels": {"app": "web"}},
            "spec": {"serviceAccountName": "default", "containers": [{"name": "app", "image": "web"}]}
        }))
        .expect("pod");
        let cluster = crate::inventory::Inventory::complete(Vec::new())
            .with_namespace("prod", &[("istio-injection", "enabled")]);
        let review = |created_for| Review {
            created_for,
            ..Review::create(Kind::Pod, "v1", "prod", "web-1", &pod)
        };
        // A user's Pod: the default ServiceAccount and the missing sidecar both deny.
        let ev = engine.evaluate(&review(None), &cluster);
        assert_eq!(actions(&ev, "wl-default-service-account"), [Action::Deny]);
        assert_eq!(actions(&ev, "wl-missing-sidecar"), [Action::Deny]);
        // The ReplicaSet controller's Pod: the template finding is its owner's; the failed
        // injection is this Pod's own.
        let ev = engine.evaluate(&review(Some(Kind::ReplicaSet)), &cluster);
        assert_eq!(actions(&ev, "wl-default-service-account"), [Action::Warn]);
        assert_eq!(actions(&ev, "wl-missing-sidecar"), [Action::Deny]);
        assert!(ev.findings.iter().any(|f| f
            .violation
            .message
            .contains("inherited from the pod template of its ReplicaSet")));
        // Strict mode keeps every deny.
        let strict = crate::catalogue::policy_from_yaml("allowExistingViolations: false\n", "t")
            .expect("policy");
        let ev = Engine::new(strict, Default::default(), None)
            .evaluate(&review(Some(Kind::ReplicaSet)), &cluster);
        assert_eq!(actions(&ev, "wl-default-service-account"), [Action::Deny]);
    }

    #[test]
    fn only_the_finalizer_removal_of_an_object_being_deleted_is_exempt() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let deleting = |mut o: DynamicObject, finalizers: &[&str]| {
            o.metadata.deletion_timestamp =
                Some(Time("2026-11-24T08:00:00Z".parse().expect("time")));
            o.metadata.finalizers = Some(finalizers.iter().map(|f| (*f).to_owned()).collect());
            o.metadata.resource_version = Some(format!("{}", finalizers.len()));
            o
        };
        let old = deleting(deployment(None, "web:1"), &["a.example/x", "b.example/y"]);
        let strict = crate::catalogue::policy_from_yaml("allowExistingViolations: false\n", "t")
            .expect("policy");
        let engines = [
            Engine::new(Policy::default(), Default::default(), None),
            Engine::new(strict, Default::default(), None),
        ];
        for engine in &engines {
            // Finalizers coming off (one or all), bookkeeping changed: exempt.
            for left in [&["b.example/y"][..], &[]] {
                let new = deleting(deployment(None, "web:1"), left);
                let ev = update(engine, Kind::Deployment, &old, &new);
                assert!(ev.exempt && ev.findings.is_empty(), "{left:?}");
            }
            // Anything else is an edit: judged.
            let mut relabelled = deleting(deployment(None, "web:1"), &[]);
            relabelled.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
            let added = deleting(
                deployment(None, "web:1"),
                &["a.example/x", "b.example/y", "c.example/z"],
            );
            for new in [deleting(deployment(None, "web:2"), &[]), relabelled, added] {
                let ev = update(engine, Kind::Deployment, &old, &new);
                assert!(!ev.exempt && !ev.findings.is_empty(), "{:?}", new.metadata);
            }
        }
        // The finalizer-delete-edit sequence: a STRICT policy waiting on a finalizer edited to
        // PERMISSIVE is refused by the weakening rule, whatever the pardon does.
        let engine = &engines[0];
        let old = deleting(pa("prod", "STRICT", json!({})), &["a.example/x"]);
        let new = deleting(pa("prod", "PERMISSIVE", json!({})), &["a.example/x"]);
        let ev = update(engine, Kind::PeerAuthentication, &old, &new);
        assert_eq!(actions(&ev, "pa-weakening-delete"), [Action::Deny]);
        assert_eq!(actions(&ev, "pa-permissive-mtls"), [Action::Deny]);
        let gone = deleting(pa("prod", "STRICT", json!({})), &[]);
        assert!(update(engine, Kind::PeerAuthentication, &old, &gone).exempt);
    }

    #[test]
    fn a_weakening_update_is_never_pardoned_as_existing() {
        // The old object judged onto itself carries no weakening finding, so the deny stays.
        let engine = Engine::new(Policy::default(), Default::default(), None);
        let ev = update(
            &engine,
            Kind::PeerAuthentication,
            &pa("prod", "STRICT", json!({})),
            &pa("prod", "UNSET", json!({})),
        );
        assert_eq!(actions(&ev, "pa-weakening-delete"), [Action::Deny]);
        assert!(ev.denied());
        // Even when the rule that judges the new object alone is only a warning.
        let policy = crate::catalogue::policy_from_yaml(
            "rules:\n  pa-permissive-mtls: {action: warn}\n",
            "t",
        )
        .expect("policy");
        let engine = Engine::new(policy, Default::default(), None);
        let ev = update(
            &engine,
            Kind::PeerAuthentication,
            &pa("prod", "STRICT", json!({})),
            &pa("prod", "PERMISSIVE", json!({})),
        );
        assert_eq!(actions(&ev, "pa-permissive-mtls"), [Action::Warn]);
        assert_eq!(actions(&ev, "pa-weakening-delete"), [Action::Deny]);
    }

    #[test]
    fn overrides_act_per_namespace_and_exceptions_report_until_they_expire() {
        use crate::config::exceptions::{parse_expires, FixedClock};
        let policy = crate::catalogue::policy_from_yaml(
            "platform: {labels: [env]}\nrules:\n  pa-permissive-mtls:\n    action: warn\n    overrides:\n      - namespaceSelector: {matchLabels: {env: prod}}\n        action: deny\nexceptions:\n  - name: legacy\n    rules: [pa-permissive-mtls]\n    namespaces: [legacy]\n    reason: clients still on plaintext\n    ticket: NET-7\n    expires: 2026-06-30\n",
            "t",
        )
        .expect("policy");
        let cluster = crate::inventory::Inventory::complete(Vec::new())
            .with_namespace("shop", &[("env", "prod")])
            .with_namespace("dev", &[("env", "dev")])
            .with_namespace("legacy", &[("env", "prod")]);
        let at = |t: &str| -> Arc<dyn Clock> { Arc::new(FixedClock(parse_expires(t).expect("t"))) };
        let engine =
            Engine::new(policy.clone(), Default::default(), None).with_clock(at("2026-06-01"));
        let judge = |engine: &Engine, ns: &str| {
            let o = pa(ns, "PERMISSIVE", json!({}));
            let review = Review::create(Kind::PeerAuthentication, "v1", ns, "p", &o);
            engine.evaluate(&review, &cluster)
        };
        assert_eq!(
            actions(&judge(&engine, "shop"), "pa-permissive-mtls"),
            [Action::Deny]
        );
        assert_eq!(
            actions(&judge(&engine, "dev"), "pa-permissive-mtls"),
            [Action::Warn]
        );
        // A namespace that does not exist has no labels; unknown labels never weaken.
        assert_eq!(
            actions(&judge(&engine, "elsewhere"), "pa-permissive-mtls"),
            [Action::Warn]
        );
        let o = pa("shop", "PERMISSIVE", json!({}));
        let unknown = engine.evaluate(
            &Review::create(Kind::PeerAuthentication, "v1", "shop", "p", &o),
            &NoCluster,
        );
        assert_eq!(actions(&unknown, "pa-permissive-mtls"), [Action::Deny]);
        // Excepted: not a finding, reported with the exception and the action it would have had.
        let ev = judge(&engine, "legacy");
        assert!(ev.findings.is_empty() && !ev.denied());
        assert_eq!(ev.excepted.len(), 1);
        assert_eq!(ev.excepted[0].finding.action, Action::Deny);
        assert_eq!(ev.excepted[0].exception.id(), "policy:legacy");
        // The namespace's labels are fetched by the webhook when overrides select on them.
        let o = pa("shop", "STRICT", json!({}));
        assert_eq!(
            engine.lookups(&Review::create(
                Kind::PeerAuthentication,
                "v1",
                "shop",
                "p",
                &o
            )),
            [LookupKey::NamespaceLabels("shop".into())]
        );
        // Expired: enforced again, and the message says which exception ended.
        let later = Engine::new(policy, Default::default(), None).with_clock(at("2026-07-01"));
        let ev = judge(&later, "legacy");
        assert!(ev.denied() && ev.excepted.is_empty());
        assert!(ev.findings[0]
            .violation
            .message
            .ends_with("(exception policy:legacy expired 2026-06-30T00:00:00Z: enforced again)"));
    }

    #[test]
    fn the_mesh_is_an_input_and_the_policy_overrides_it() {
        use crate::mesh::testing::{mesh, mesh_cm};
        let mesh = Arc::new(mesh(&[mesh_cm(
            "istio",
            "rootNamespace: mesh-config\ntrustDomain: corp.example\n",
        )]));
        let engine = Engine::new(Policy::default(), mesh.clone(), None);
        assert_eq!(engine.mesh().trust_domain().value, "corp.example");
        // The context is shared as is when the policy overrides nothing.
        assert!(Arc::ptr_eq(engine.mesh(), &mesh));
        // The root and the Istio namespaces are exempt.
        assert!(engine
            .exempt_namespaces()
            .iter()
            .any(|n| n == "mesh-config"));
        assert!(engine
            .exempt_namespaces()
            .iter()
            .any(|n| n == "istio-system"));
        let d = deployment(None, "web:1");
        let in_root = Review::create(Kind::Deployment, "v1", "mesh-config", "p", &d);
        assert!(engine.evaluate(&in_root, &NoCluster).exempt);
        // A policy value wins, with its origin.
        let policy = crate::catalogue::policy_from_yaml("trustDomain: cluster.local\n", "t")
            .expect("policy");
        let engine = Engine::new(policy, mesh, None);
        assert_eq!(engine.mesh().trust_domain().value, "cluster.local");
        assert_eq!(
            engine.mesh().trust_domain().origin,
            crate::mesh::Origin::Policy
        );
        assert_eq!(engine.mesh().root_namespace().value, "mesh-config");
    }
}
