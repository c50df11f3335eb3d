//! Exceptions: a finding of named rules, for a scope, with a reason, an owner or ticket, and an
//! end. Two sources:
//!
//! * the policy file's `exceptions:` list (written by the platform team);
//! * `PolicyException` resources (`meshguard.io/v1alpha1`, namespaced) that teams request in
//!   their own namespace, accepted only in the namespaces `policyExceptions.namespaces` lists,
//!   for the rules `policyExceptions.rules` allows (any but the label guard when empty), and
//!   expiring no later than `policyExceptions.maxDuration` from now. meshguard's webhook refuses
//!   others at admission; one that got in anyway (webhook down, policy changed since) is refused
//!   here again and reported, never applied.
//!
//! An excepted finding is not dropped: it is reported as excepted (check and audit output,
//! PolicyReport results `skip`, the posture page, metrics, the webhook's warnings and audit
//! annotation) and never enforced. An exception past its `expires` stops applying at once — the
//! engine reads the time from its [`Clock`] at every evaluation — and is itself reported
//! (`exception-expired`), as is a refused one (`exception-refused`). Time is an input: tests use
//! [`FixedClock`].

use super::rollout::{platform_only, PLATFORM_LABEL_RULE};
use super::{KnownIds, LabelSelector, Policy};
use crate::finding::{Finding, Subject};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::core::DynamicObject;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// API group of the PolicyException resource.
pub(crate) const GROUP: &str = "meshguard.io";
/// Its (only) version.
pub(crate) const VERSION: &str = "v1alpha1";
pub(crate) const KIND: &str = "PolicyException";
pub(crate) const PLURAL: &str = "policyexceptions";

/// One entry of the policy file's `exceptions:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExceptionSpec {
    /// Unique among the policy's exceptions; names it in every output.
    pub name: String,
    /// The rule (or cross-resource check) ids it excepts.
    pub rules: Vec<String>,
    /// Scope: all given conditions must hold, at least one must be given.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Object names (exact, or a prefix ending in `*`).
    #[serde(default)]
    pub names: Vec<String>,
    /// Object kinds (`Deployment`, `PeerAuthentication`, ...).
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub(crate) object_selector: Option<LabelSelector>,
    /// Namespaces by label: platform-owned labels only (`platform.labels`).
    #[serde(default)]
    pub(crate) namespace_selector: Option<LabelSelector>,
    /// Why it is granted.
    pub reason: String,
    /// Who answers for it (one of owner and ticket is required).
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub ticket: Option<String>,
    /// When it ends: an RFC 3339 time (`2026-06-30T12:00:00Z`) or a date (`2026-06-30`,
    /// midnight UTC).
    pub expires: String,
}

/// `policyExceptions:`: where and how PolicyException resources are accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExceptionSettings {
    /// Namespaces whose PolicyExceptions are accepted (none by default).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// The furthest a PolicyException may expire from now (`30d`, `720h`).
    #[serde(default = "default_max_duration")]
    pub(crate) max_duration: String,
    /// The rules they may except; empty: any rule but the platform-label guard.
    #[serde(default)]
    pub rules: Vec<String>,
}

fn default_max_duration() -> String {
    "90d".to_owned()
}

impl Default for ExceptionSettings {
    fn default() -> Self {
        ExceptionSettings {
            namespaces: Vec::new(),
            max_duration: default_max_duration(),
            rules: Vec::new(),
        }
    }
}

impl ExceptionSettings {
    /// `maxDuration` (validated at load; a day if it could not be read).
    pub fn max(&self) -> SignedDuration {
        humantime::parse_duration(&self.max_duration)
            .ok()
            .and_then(|d| SignedDuration::try_from(d).ok())
            .unwrap_or(SignedDuration::from_hours(24))
    }
}

/// The `spec` of a PolicyException resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ResourceSpec {
    pub(crate) rules: Vec<String>,
    #[serde(default)]
    pub(crate) names: Vec<String>,
    #[serde(default)]
    pub(crate) kinds: Vec<String>,
    #[serde(default)]
    pub(crate) object_selector: Option<LabelSelector>,
    pub(crate) reason: String,
    #[serde(default)]
    pub(crate) owner: Option<String>,
    #[serde(default)]
    pub(crate) ticket: Option<String>,
    pub(crate) expires: String,
}

/// Where an exception was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The policy file's `exceptions[index]`.
    Policy { index: usize },
    /// A PolicyException resource.
    Resource {
        namespace: String,
        name: String,
        uid: String,
    },
}

/// An exception ready to match: from either source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    pub source: Source,
    pub name: String,
    pub rules: Vec<String>,
    pub namespaces: Vec<String>,
    pub names: Vec<String>,
    pub kinds: Vec<String>,
    pub(crate) object_selector: Option<LabelSelector>,
    pub(crate) namespace_selector: Option<LabelSelector>,
    pub reason: String,
    pub owner: Option<String>,
    pub ticket: Option<String>,
    /// `None` when `expires` could not be read (then the exception is refused).
    pub expires: Option<Timestamp>,
    /// Why it can never apply (a resource that does not parse), if so.
    pub broken: Option<String>,
}

/// What an exception is at a moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    Expired,
    /// Never applies: why.
    Refused(String),
}

impl Status {
    pub fn label(&self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Expired => "expired",
            Status::Refused(_) => "refused",
        }
    }
}

/// What a finding is about, as an exception's scope reads it.
pub struct Target<'a> {
    pub namespace: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    /// The object's labels, when there is an object.
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// The namespace's labels, asked only by a `namespaceSelector` (`None`: unknown, so the
    /// selector does not match: an exception needs certainty).
    pub namespace_labels: &'a dyn Fn() -> Option<BTreeMap<String, String>>,
}

impl Exception {
    /// `policy:<name>` or `<namespace>/<name>`: how every output names it.
    pub fn id(&self) -> String {
        match &self.source {
            Source::Policy { .. } => format!("policy:{}", self.name),
            Source::Resource {
                namespace, name, ..
            } => format!("{namespace}/{name}"),
        }
    }

    /// `until 2026-06-30T00:00:00Z, owner team-a, ticket PAY-1: reason`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "until {}",
            self.expires
                .map_or_else(|| "(unreadable expiry)".to_owned(), |t| t.to_string())
        );
        if let Some(o) = &self.owner {
            s.push_str(&format!(", owner {o}"));
        }
        if let Some(t) = &self.ticket {
            s.push_str(&format!(", ticket {t}"));
        }
        s.push_str(": ");
        s.push_str(&self.reason);
        s
    }

    /// The subject findings about this exception name: the resource, or the policy file's
    /// entry.
    pub fn subject(&self, policy_file: Option<&Arc<str>>) -> Subject {
        match &self.source {
            Source::Resource {
                namespace,
                name,
                uid,
            } => Subject {
                api_version: format!("{GROUP}/{VERSION}"),
                kind: KIND.to_owned(),
                namespace: namespace.clone(),
                name: name.clone(),
                uid: uid.clone(),
                file: None,
                line: None,
            },
            Source::Policy { .. } => Subject {
                api_version: format!("{GROUP}/{VERSION}"),
                kind: KIND.to_owned(),
                namespace: String::new(),
                name: self.id(),
                uid: String::new(),
                file: policy_file.cloned(),
                line: None,
            },
        }
    }

    /// Where its end is written: `spec.expires`, or `exceptions[i].expires` in the policy.
    pub(crate) fn expires_path(&self) -> String {
        match &self.source {
            Source::Policy { index } => format!("exceptions[{index}].expires"),
            Source::Resource { .. } => "spec.expires".to_owned(),
        }
    }

    /// Its status at `now` under `policy` (resources are checked against `policyExceptions`
    /// every time, so a policy change or the passing of time takes effect without a write).
    pub fn status(&self, policy: &Policy, now: Timestamp) -> Status {
        if let Some(why) = &self.broken {
            return Status::Refused(why.clone());
        }
        let Some(expires) = self.expires else {
            return Status::Refused("expires is not a date or an RFC 3339 time".to_owned());
        };
        if let Source::Resource { namespace, .. } = &self.source {
            if let Some(why) = resource_refusal(policy, namespace, &self.rules, expires, now) {
                return Status::Refused(why);
            }
        }
        if now >= expires {
            Status::Expired
        } else {
            Status::Active
        }
    }

    /// Whether its scope covers a target (rules and time aside).
    pub fn covers(&self, t: &Target<'_>) -> bool {
        let ns_ok = self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == t.namespace);
        let name_ok = self.names.is_empty() || self.names.iter().any(|n| name_matches(n, t.name));
        let kind_ok = self.kinds.is_empty() || self.kinds.iter().any(|k| k == t.kind);
        let obj_ok = self
            .object_selector
            .as_ref()
            .is_none_or(|s| t.labels.is_some_and(|l| s.matches(l)));
        ns_ok
            && name_ok
            && kind_ok
            && obj_ok
            && self
                .namespace_selector
                .as_ref()
                .is_none_or(|s| (t.namespace_labels)().is_some_and(|l| s.matches(&l)))
    }

    /// From the policy file's entry.
    pub(crate) fn from_spec(index: usize, s: &ExceptionSpec) -> Exception {
        Exception {
            source: Source::Policy { index },
            name: s.name.clone(),
            rules: s.rules.clone(),
            namespaces: s.namespaces.clone(),
            names: s.names.clone(),
            kinds: s.kinds.clone(),
            object_selector: s.object_selector.clone(),
            namespace_selector: s.namespace_selector.clone(),
            reason: s.reason.clone(),
            owner: s.owner.clone(),
            ticket: s.ticket.clone(),
            expires: parse_expires(&s.expires).ok(),
            broken: None,
        }
    }

    /// From a PolicyException resource. Its scope is its own namespace; a spec that does not
    /// parse gives an exception that is refused (and reported), never applied.
    pub(crate) fn from_resource(obj: &DynamicObject) -> Exception {
        let namespace = obj.metadata.namespace.clone().unwrap_or_default();
        let source = Source::Resource {
            namespace: namespace.clone(),
            name: obj.metadata.name.clone().unwrap_or_default(),
            uid: obj.metadata.uid.clone().unwrap_or_default(),
        };
        let name = obj.metadata.name.clone().unwrap_or_default();
        let spec = obj.data.get("spec").cloned().unwrap_or_default();
        match serde_json::from_value::<ResourceSpec>(spec) {
            Ok(s) => Exception {
                source,
                name,
                rules: s.rules,
                namespaces: vec![namespace],
                names: s.names,
                kinds: s.kinds,
                object_selector: s.object_selector,
                namespace_selector: None,
                reason: s.reason,
                owner: s.owner,
                ticket: s.ticket,
                expires: parse_expires(&s.expires).ok(),
                broken: None,
            },
            Err(e) => Exception {
                source,
                name,
                rules: Vec::new(),
                namespaces: vec![namespace],
                names: Vec::new(),
                kinds: Vec::new(),
                object_selector: None,
                namespace_selector: None,
                reason: String::new(),
                owner: None,
                ticket: None,
                expires: None,
                broken: Some(format!("spec: {e}")),
            },
        }
    }
}

impl Policy {
    /// The policy file's own exception that covers a finding of rule `id` about `target` at
    /// `now`, if any: a pure function of the policy, for whoever resolves verdicts outside the
    /// engine (PolicyException resources are the engine's: [`ExceptionSet::find`] over
    /// `Engine::exceptions`).
    pub fn exception_for(
        &self,
        id: &str,
        target: &Target<'_>,
        now: Timestamp,
    ) -> Option<Arc<Exception>> {
        match ExceptionSet::of_policy(self).find(self, id, target, now)? {
            Hit::Active(e) => Some(e),
            Hit::Expired(_) => None,
        }
    }
}

/// Whether an object (as a manifest or listing gives it) is a PolicyException.
pub(crate) fn is_resource(obj: &DynamicObject) -> bool {
    obj.types.as_ref().is_some_and(|t| {
        t.kind == KIND
            && t.api_version
                .split_once('/')
                .is_some_and(|(g, _)| g == GROUP)
    })
}

/// The PolicyExceptions among objects (the manifests of `check`, `report`, `meshguard test`).
pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a DynamicObject>) -> Vec<Exception> {
    objects
        .into_iter()
        .filter(|o| is_resource(o))
        .map(Exception::from_resource)
        .collect()
}

/// `web` matches `web`; `web-*` matches every name starting with `web-`.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Read `expires`: an RFC 3339 time, or a date (midnight UTC).
pub(crate) fn parse_expires(s: &str) -> Result<Timestamp, String> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if s.len() == 10 {
        if let Ok(t) = format!("{s}T00:00:00Z").parse::<Timestamp>() {
            return Ok(t);
        }
    }
    Err(format!(
        "expires: {s:?} is not a date (2026-06-30) or an RFC 3339 time (2026-06-30T12:00:00Z)"
    ))
}

/// Why a PolicyException in `namespace` naming `rules` and ending at `expires` is not accepted
/// under `policy` at `now` (rule ids aside, which need the catalogue).
fn resource_refusal(
    policy: &Policy,
    namespace: &str,
    rules: &[String],
    expires: Timestamp,
    now: Timestamp,
) -> Option<String> {
    let settings = &policy.policy_exceptions;
    if !settings.namespaces.iter().any(|n| n == namespace) {
        return Some(format!(
            "namespace {namespace} is not one the policy accepts PolicyExceptions in (policyExceptions.namespaces)"
        ));
    }
    if let Some(r) = rules.iter().find(|r| r.as_str() == PLATFORM_LABEL_RULE) {
        return Some(format!(
            "rules: {r} guards the platform-owned namespace labels and cannot be excepted by a PolicyException"
        ));
    }
    if !settings.rules.is_empty() {
        if let Some(r) = rules.iter().find(|r| !settings.rules.contains(r)) {
            return Some(format!(
                "rules: {r} is not among the rules PolicyExceptions may except (policyExceptions.rules)"
            ));
        }
    }
    let latest = now.checked_add(settings.max()).unwrap_or(Timestamp::MAX);
    if expires > latest {
        return Some(format!(
            "expires {expires} is further out than the policy allows (policyExceptions.maxDuration {} from now: {latest})",
            settings.max_duration
        ));
    }
    None
}

/// Admission-time validation of a PolicyException (meshguard's own webhook): every reason it is
/// refused, empty when it is accepted. Stricter than [`Exception::status`]: the rule ids must be
/// known, and it must not have expired already.
pub(crate) fn validate_resource(
    policy: &Policy,
    known: &dyn KnownIds,
    obj: &DynamicObject,
    now: Timestamp,
) -> Vec<String> {
    let spec = obj.data.get("spec").cloned().unwrap_or_default();
    let s: ResourceSpec = match serde_json::from_value(spec) {
        Ok(s) => s,
        Err(e) => return vec![format!("spec: {e}")],
    };
    let mut errors = Vec::new();
    if s.rules.is_empty() {
        errors.push("spec.rules: name at least one rule id".to_owned());
    }
    for (i, r) in s.rules.iter().enumerate() {
        if !known.is_check(r) {
            errors.push(format!(
                "spec.rules[{i}]: unknown rule id {r} (`meshguard rules` lists them)"
            ));
        }
    }
    if s.reason.trim().is_empty() {
        errors.push("spec.reason: say why the exception is needed".to_owned());
    }
    if s.owner.as_deref().is_none_or(str::is_empty) && s.ticket.as_deref().is_none_or(str::is_empty)
    {
        errors.push("spec.owner or spec.ticket: say who answers for it".to_owned());
    }
    for (i, n) in s.names.iter().enumerate() {
        if n.is_empty() || n == "*" {
            errors.push(format!(
                "spec.names[{i}]: name objects (or a prefix ending in *); leave names out for the whole namespace"
            ));
        }
    }
    match parse_expires(&s.expires) {
        Err(e) => errors.push(format!("spec.{e}")),
        Ok(expires) => {
            if expires <= now {
                errors.push(format!("spec.expires: {expires} has passed"));
            }
            let ns = obj.metadata.namespace.as_deref().unwrap_or("");
            if let Some(why) = resource_refusal(policy, ns, &s.rules, expires, now) {
                errors.push(why);
            }
        }
    }
    errors
}

/// Load-time checks of `exceptions` and `policyExceptions` (called by `Policy::validate`).
pub(super) fn validate(policy: &Policy, known: &dyn KnownIds) -> Result<(), String> {
    let mut names = HashSet::new();
    for (i, e) in policy.exceptions.iter().enumerate() {
        let at = format!("exceptions[{i}]");
        if e.name.is_empty() {
            return Err(format!("{at}.name: required"));
        }
        if !names.insert(e.name.as_str()) {
            return Err(format!("{at}.name: {} is used twice", e.name));
        }
        if e.rules.is_empty() {
            return Err(format!("{at}.rules: name at least one rule id"));
        }
        for (j, r) in e.rules.iter().enumerate() {
            if !known.is_check(r) {
                return Err(format!(
                    "{at}.rules[{j}]: unknown rule id {r} (run `meshguard rules` for the catalogue)"
                ));
            }
        }
        if e.namespaces.is_empty()
            && e.names.is_empty()
            && e.object_selector.is_none()
            && e.namespace_selector.is_none()
        {
            return Err(format!(
                "{at}: give a scope (namespaces, names, objectSelector or namespaceSelector); to stop a rule everywhere set its action to off"
            ));
        }
        if let Some(sel) = &e.namespace_selector {
            platform_only(&policy.platform, sel, &format!("{at}.namespaceSelector"))?;
        }
        if e.reason.trim().is_empty() {
            return Err(format!("{at}.reason: say why the exception is needed"));
        }
        if e.owner.as_deref().is_none_or(str::is_empty)
            && e.ticket.as_deref().is_none_or(str::is_empty)
        {
            return Err(format!("{at}: give an owner or a ticket"));
        }
        parse_expires(&e.expires).map_err(|m| format!("{at}.{m}"))?;
    }
    let s = &policy.policy_exceptions;
    match humantime::parse_duration(&s.max_duration) {
        Ok(d) if !d.is_zero() => {}
        _ => {
            return Err(format!(
                "policyExceptions.maxDuration: {:?} is not a duration (30d, 720h)",
                s.max_duration
            ))
        }
    }
    for (i, r) in s.rules.iter().enumerate() {
        if !known.is_check(r) {
            return Err(format!("policyExceptions.rules[{i}]: unknown rule id {r}"));
        }
        if r == PLATFORM_LABEL_RULE {
            return Err(format!(
                "policyExceptions.rules[{i}]: {r} guards the platform-owned labels and cannot be excepted by a PolicyException"
            ));
        }
    }
    Ok(())
}

/// Where the engine reads the time from.
pub(crate) trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The system's clock (whole seconds).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Timestamp::from_second(i64::try_from(secs).unwrap_or(i64::MAX)).unwrap_or(Timestamp::MAX)
    }
}

/// A clock stopped at one moment (tests, `meshguard test`'s `now:`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// Every exception the engine knows: the policy file's and the resources', indexed by rule.
#[derive(Clone, Debug, Default)]
pub struct ExceptionSet {
    items: Vec<Arc<Exception>>,
    rules: HashSet<String>,
    /// Some exception of a rule selects namespaces by label.
    by_namespace_labels: HashSet<String>,
}

/// An exception that applies to a finding, or one that would have but has expired.
#[derive(Clone, Debug)]
pub enum Hit {
    Active(Arc<Exception>),
    Expired(Arc<Exception>),
}

impl ExceptionSet {
    /// The policy file's exceptions.
    pub(crate) fn of_policy(policy: &Policy) -> ExceptionSet {
        let mut set = ExceptionSet::default();
        for (i, s) in policy.exceptions.iter().enumerate() {
            set.push(Exception::from_spec(i, s));
        }
        set
    }

    /// Add exceptions (PolicyException resources).
    pub fn push(&mut self, e: Exception) {
        for r in &e.rules {
            self.rules.insert(r.clone());
            if e.namespace_selector.is_some() {
                self.by_namespace_labels.insert(r.clone());
            }
        }
        self.items.push(Arc::new(e));
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[Arc<Exception>] {
        &self.items
    }

    /// Whether any exception names rule `id` (the usual answer is no: nothing else to do).
    pub(crate) fn names_rule(&self, id: &str) -> bool {
        self.rules.contains(id)
    }

    /// Whether an exception of rule `id` reads namespace labels.
    pub(crate) fn reads_namespace_labels(&self, id: &str) -> bool {
        self.by_namespace_labels.contains(id)
    }

    /// The exception that applies to a finding of rule `id` about `target` at `now`: the first
    /// active one; else an expired one that would have applied (so the output can say why the
    /// finding is enforced again). Refused exceptions never apply.
    pub fn find(
        &self,
        policy: &Policy,
        id: &str,
        target: &Target<'_>,
        now: Timestamp,
    ) -> Option<Hit> {
        if !self.names_rule(id) {
            return None;
        }
        let mut expired = None;
        for e in &self.items {
            if !e.rules.iter().any(|r| r == id) || !e.covers(target) {
                continue;
            }
            match e.status(policy, now) {
                Status::Active => return Some(Hit::Active(e.clone())),
                Status::Expired if expired.is_none() => expired = Some(Hit::Expired(e.clone())),
                _ => {}
            }
        }
        expired
    }
}

/// A finding an exception covers, from one evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excepted {
    pub finding: Finding,
    pub exception: Arc<Exception>,
}

/// An excepted finding attributed to its object (check, audit, reports, the posture page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectExcepted {
    pub subject: Subject,
    pub finding: Finding,
    pub exception: Arc<Exception>,
}

/// Deterministic order, as `finding::sort_findings`: file, line, namespace, kind, name.
pub(crate) fn sort_excepted(items: &mut [ObjectExcepted]) {
    fn key(i: &ObjectExcepted) -> (&str, usize, &str, &str, &str) {
        let s = &i.subject;
        (
            s.file.as_deref().unwrap_or(""),
            s.line.unwrap_or(0),
            &s.namespace,
            &s.kind,
            &s.name,
        )
    }
    items.sort_by(|a, b| key(a).cmp(&key(b)));
}

/// The note a finding gets when an exception that covered it has expired.
pub(crate) fn expired_note(e: &Exception) -> String {
    format!(
        " (exception {} expired {}: enforced again)",
        e.id(),
        e.expires.map_or_else(String::new, |t| t.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KnownIds;
    use serde_json::json;

    struct Ids;
    impl KnownIds for Ids {
        fn is_check(&self, id: &str) -> bool {
            matches!(
                id,
                "pa-permissive-mtls" | "wl-default-service-account" | PLATFORM_LABEL_RULE
            )
        }
        fn is_mutation(&self, _: &str) -> bool {
            false
        }
    }

    fn at(s: &str) -> Timestamp {
        parse_expires(s).expect("time")
    }

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(yaml, "p.yaml", &Ids).unwrap_or_else(|e| panic!("{e}"))
    }

    const ENTRY: &str = "exceptions:\n  - name: legacy\n    rules: [wl-default-service-account]\n    namespaces: [payments]\n    names: [legacy-*]\n    reason: migrating off the default account\n    owner: team-payments\n    expires: 2026-06-30\n";

    fn target<'a>(
        ns: &'a str,
        name: &'a str,
        f: &'a dyn Fn() -> Option<BTreeMap<String, String>>,
    ) -> Target<'a> {
        Target {
            namespace: ns,
            kind: "Deployment",
            name,
            labels: None,
            namespace_labels: f,
        }
    }

    #[test]
    fn a_policy_exception_applies_in_scope_until_it_expires() {
        let p = policy(ENTRY);
        let set = ExceptionSet::of_policy(&p);
        let none = || None;
        let rule = "wl-default-service-account";
        let before = at("2026-06-29T23:59:59Z");
        let hit = set.find(&p, rule, &target("payments", "legacy-api", &none), before);
        assert!(
            matches!(hit, Some(Hit::Active(ref e)) if e.id() == "policy:legacy"),
            "{hit:?}"
        );
        // Out of scope: another name, another namespace, another rule.
        assert!(set
            .find(&p, rule, &target("payments", "web", &none), before)
            .is_none());
        assert!(set
            .find(&p, rule, &target("shop", "legacy-api", &none), before)
            .is_none());
        assert!(set
            .find(
                &p,
                "pa-permissive-mtls",
                &target("payments", "legacy-api", &none),
                before
            )
            .is_none());
        assert!(p
            .exception_for(rule, &target("payments", "legacy-api", &none), before)
            .is_some());
        // At the end: expired, and said so.
        let after = at("2026-06-30");
        let hit = set.find(&p, rule, &target("payments", "legacy-api", &none), after);
        assert!(matches!(hit, Some(Hit::Expired(_))), "{hit:?}");
        assert_eq!(set.items()[0].status(&p, after), Status::Expired);
        assert!(
            expired_note(&set.items()[0]).contains("policy:legacy expired 2026-06-30T00:00:00Z")
        );
        assert_eq!(
            set.items()[0].describe(),
            "until 2026-06-30T00:00:00Z, owner team-payments: migrating off the default account"
        );
    }

    #[test]
    fn policy_entries_are_validated_at_load() {
        for (bad, says) in [
            ("exceptions:\n  - name: a\n    rules: [nope]\n    namespaces: [x]\n    reason: r\n    owner: o\n    expires: 2026-01-01\n", "unknown rule id nope"),
            ("exceptions:\n  - name: a\n    rules: [pa-permissive-mtls]\n    reason: r\n    owner: o\n    expires: 2026-01-01\n", "give a scope"),
            ("exceptions:\n  - name: a\n    rules: [pa-permissive-mtls]\n    namespaces: [x]\n    reason: r\n    expires: 2026-01-01\n", "owner or a ticket"),
            ("exceptions:\n  - name: a\n    rules: [pa-permissive-mtls]\n    namespaces: [x]\n    reason: \"\"\n    owner: o\n    expires: 2026-01-01\n", "reason"),
            ("exceptions:\n  - name: a\n    rules: [pa-permissive-mtls]\n    namespaces: [x]\n    reason: r\n    owner: o\n    expires: next week\n", "not a date"),
            ("exceptions:\n  - name: a\n    rules: [pa-permissive-mtls]\n    namespaceSelector: {matchLabels: {team: a}}\n    reason: r\n    owner: o\n    expires: 2026-01-01\n", "label team is not platform-owned"),
            ("policyExceptions:\n  maxDuration: forever\n", "maxDuration"),
            ("policyExceptions:\n  rules: [ns-platform-label-change]\n", "cannot be excepted"),
        ] {
            let e = Policy::from_yaml(bad, "p.yaml", &Ids).expect_err(bad).to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let twice = format!("{ENTRY}  - name: legacy\n    rules: [pa-permissive-mtls]\n    namespaces: [x]\n    reason: r\n    ticket: T-1\n    expires: 2026-01-01T10:00:00+02:00\n");
        let e = Policy::from_yaml(&twice, "p.yaml", &Ids)
            .expect_err("dup")
            .to_string();
        assert!(e.contains("used twice"), "{e}");
    }

    fn resource(ns: &str, spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "meshguard.io/v1alpha1", "kind": "PolicyException",
            "metadata": {"name": "legacy-sa", "namespace": ns, "uid": "u-1"},
            "spec": spec,
        }))
        .expect("object")
    }

    #[test]
    fn resources_are_accepted_only_where_and_as_long_as_the_policy_allows() {
        let p = policy("policyExceptions:\n  namespaces: [payments]\n  maxDuration: 30d\n");
        let now = at("2026-05-01T00:00:00Z");
        let spec = |expires: &str| json!({"rules": ["wl-default-service-account"], "reason": "r", "owner": "team-payments", "expires": expires});
        assert!(
            validate_resource(&p, &Ids, &resource("payments", spec("2026-05-20")), now).is_empty()
        );
        let errs = validate_resource(&p, &Ids, &resource("payments", spec("2026-07-01")), now);
        assert!(
            errs.iter()
                .any(|e| e.contains("further out than the policy allows")),
            "{errs:?}"
        );
        let errs = validate_resource(&p, &Ids, &resource("shop", spec("2026-05-20")), now);
        assert!(
            errs.iter().any(|e| e.contains("namespace shop is not one")),
            "{errs:?}"
        );
        let errs = validate_resource(&p, &Ids, &resource("payments", spec("2026-04-01")), now);
        assert!(errs.iter().any(|e| e.contains("has passed")), "{errs:?}");
        let errs = validate_resource(
            &p,
            &Ids,
            &resource(
                "payments",
                json!({"rules": ["nope", PLATFORM_LABEL_RULE], "reason": "", "expires": "2026-05-02", "extra": 1}),
            ),
            now,
        );
        assert!(errs[0].contains("unknown field `extra`"), "{errs:?}");
        let errs = validate_resource(
            &p,
            &Ids,
            &resource(
                "payments",
                json!({"rules": ["nope", PLATFORM_LABEL_RULE], "reason": "", "expires": "2026-05-02"}),
            ),
            now,
        );
        let text = errs.join("\n");
        for says in [
            "unknown rule id nope",
            "spec.reason",
            "spec.owner or spec.ticket",
            "cannot be excepted",
        ] {
            assert!(text.contains(says), "{says}: {text}");
        }
        // The same checks, at evaluation: a resource that got in anyway is refused, not applied.
        let e = Exception::from_resource(&resource("shop", spec("2026-05-20")));
        assert!(
            matches!(e.status(&p, now), Status::Refused(ref why) if why.contains("namespace shop"))
        );
        let e = Exception::from_resource(&resource("payments", spec("2026-05-20")));
        assert_eq!(e.status(&p, now), Status::Active);
        assert_eq!(e.id(), "payments/legacy-sa");
        // Its scope is its own namespace.
        let none = || None;
        assert!(e.covers(&target("payments", "anything", &none)));
        assert!(!e.covers(&target("shop", "anything", &none)));
        // A broken spec is refused with the reason.
        let e = Exception::from_resource(&resource("payments", json!({"rules": "x"})));
        assert!(matches!(e.status(&p, now), Status::Refused(ref why) if why.starts_with("spec:")));
    }

    #[test]
    fn namespace_selectors_need_known_labels() {
        let p = policy("platform: {labels: [env]}\nexceptions:\n  - name: dev\n    rules: [pa-permissive-mtls]\n    namespaceSelector: {matchLabels: {env: dev}}\n    reason: r\n    ticket: T-1\n    expires: 2030-01-01\n");
        let set = ExceptionSet::of_policy(&p);
        assert!(set.reads_namespace_labels("pa-permissive-mtls"));
        let now = at("2026-01-01");
        let dev = || Some(BTreeMap::from([("env".to_owned(), "dev".to_owned())]));
        let unknown = || None;
        assert!(set
            .find(&p, "pa-permissive-mtls", &target("a", "p", &dev), now)
            .is_some());
        assert!(set
            .find(&p, "pa-permissive-mtls", &target("a", "p", &unknown), now)
            .is_none());
    }
}
