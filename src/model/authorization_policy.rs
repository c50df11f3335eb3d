//! AuthorizationPolicy (`security.istio.io` v1, v1beta1): action, scope, and rules → sources
//! (`from`), operations (`to`) and conditions (`when`), each match list with its field path.
//!
//! Semantics (Istio's AuthorizationPolicy reference and `pilot/pkg/security/authz/model`,
//! `New`): CUSTOM, then DENY, then ALLOW decide. `spec: {}` (ALLOW with no rules) is
//! allow-nothing for its scope; `rules: [{}]` is allow-all (an empty rule matches every
//! request). A rule matches when one `from`, one `to` and every `when` match; a field left
//! unset matches anything. A selector-less policy in the root namespace applies mesh-wide;
//! `targetRef(s)` attach it to gateways, waypoints or Services instead of sidecars.
//!
//! The grammars a policy's strings follow live here too: the principal
//! (`<trust-domain>/ns/<namespace>/sa/<account>`, with one leading or trailing `*`,
//! [`principal`]) and the `when` key (`source.ip`, `request.headers[<name>]`,
//! `request.auth.claims[<claim>][<nested>]`, ..., [`WhenKey`]).
//!
//! Istio's validation of the kind ([`AuthorizationPolicy::validate`]) follows istiod's
//! `ValidateAuthorizationPolicy` (`pkg/config/validation/validation.go`) and the CRD schema.

use super::target_ref::TargetRef;
use super::validation::{Class, Errors};
use super::{decode_spec, entries, nullable, ok, shaped, Loose, Selector, Str};
use serde::Deserialize;
use serde_json::Value;

/// The policy's `action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthzAction {
    Allow,
    Deny,
    Audit,
    Custom,
}

impl AuthzAction {
    /// Every action, in the order Istio's enum declares them.
    pub const ALL: [AuthzAction; 4] = [
        AuthzAction::Allow,
        AuthzAction::Deny,
        AuthzAction::Audit,
        AuthzAction::Custom,
    ];

    /// The names Istio accepts, in [`AuthzAction::ALL`] order.
    pub(crate) const NAMES: [&'static str; 4] = [
        AuthzAction::Allow.as_str(),
        AuthzAction::Deny.as_str(),
        AuthzAction::Audit.as_str(),
        AuthzAction::Custom.as_str(),
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AuthzAction::Allow => "ALLOW",
            AuthzAction::Deny => "DENY",
            AuthzAction::Audit => "AUDIT",
            AuthzAction::Custom => "CUSTOM",
        }
    }

    /// The action named `s`, `None` for a value Istio rejects.
    pub fn parse(s: &str) -> Option<AuthzAction> {
        AuthzAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The fields of `from[].source`, positive and negative of each pair together, in the order
/// Istio builds them (`model.New`: principals, requestPrincipals, serviceAccounts,
/// trustDomains, namespaces, remoteIpBlocks, ipBlocks).
pub(crate) const SOURCE_FIELDS: &[&str] = &[
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "serviceAccounts",
    "notServiceAccounts",
    "trustDomains",
    "notTrustDomains",
    "namespaces",
    "notNamespaces",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
    "ipBlocks",
    "notIpBlocks",
];

/// The fields of `to[].operation`, pairs together, in the order Istio builds them (hosts,
/// methods, paths, ports).
pub(crate) const OPERATION_FIELDS: &[&str] = &[
    "hosts",
    "notHosts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
    "ports",
    "notPorts",
];

/// Operation fields only HTTP requests carry (on TCP traffic Istio drops them).
pub(crate) const HTTP_OPERATION_FIELDS: &[&str] = &[
    "hosts",
    "notHosts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
];

/// A match list (`principals`, `values`, ...): strings, each as written.
pub type List<'a> = Option<Loose<Vec<Loose<Str<'a>>>>>;

/// One AuthorizationPolicy's `spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicy<'a> {
    #[serde(borrow, default)]
    pub selector: Option<Loose<Selector<'a>>>,
    #[serde(borrow, default)]
    pub(crate) target_ref: Option<Loose<TargetRef<'a>>>,
    #[serde(borrow, default)]
    pub(crate) target_refs: Option<Loose<Vec<Loose<TargetRef<'a>>>>>,
    #[serde(borrow, default)]
    pub action: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub provider: Option<Loose<Provider<'a>>>,
    /// `null` is kept (as `Wrong`): `rules: null` is written, but holds no rule.
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub rules: Option<Loose<Vec<Loose<Rule<'a>>>>>,
}

/// `spec.provider` (CUSTOM).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Provider<'a> {
    #[serde(borrow, default)]
    pub name: Option<Loose<Str<'a>>>,
}

/// One `rules[i]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Rule<'a> {
    #[serde(borrow, default)]
    pub from: Option<Loose<Vec<Loose<From<'a>>>>>,
    #[serde(borrow, default)]
    pub to: Option<Loose<Vec<Loose<To<'a>>>>>,
    #[serde(borrow, default)]
    pub when: Option<Loose<Vec<Loose<Condition<'a>>>>>,
}

/// One `from[j]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct From<'a> {
    #[serde(borrow, default)]
    pub source: Option<Loose<Source<'a>>>,
}

/// One `to[j]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct To<'a> {
    #[serde(borrow, default)]
    pub operation: Option<Loose<Operation<'a>>>,
}

/// One `from[j].source`: the fields of [`SOURCE_FIELDS`].
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Source<'a> {
    #[serde(borrow, default)]
    pub principals: List<'a>,
    #[serde(borrow, default)]
    pub(crate) not_principals: List<'a>,
    #[serde(borrow, default)]
    pub(crate) request_principals: List<'a>,
    #[serde(borrow, default)]
    pub(crate) not_request_principals: List<'a>,
    #[serde(borrow, default)]
    pub(crate) service_accounts: List<'a>,
    #[serde(borrow, default)]
    pub(crate) not_service_accounts: List<'a>,
    #[serde(borrow, default)]
    pub(crate) trust_domains: List<'a>,
    #[serde(borrow, default)]
    pub(crate) not_trust_domains: List<'a>,
    #[serde(borrow, default)]
    pub namespaces: List<'a>,
    #[serde(borrow, default)]
    pub(crate) not_namespaces: List<'a>,
    #[serde(borrow, default)]
    pub(crate) remote_ip_blocks: List<'a>,
    #[serde(borrow, default)]
    pub(crate) not_remote_ip_blocks: List<'a>,
    #[serde(borrow, default)]
    pub(crate) ip_blocks: List<'a>,
    #[serde(borrow, default)]
    pub(crate) not_ip_blocks: List<'a>,
}

/// One `to[j].operation`: the fields of [`OPERATION_FIELDS`].
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Operation<'a> {
    #[serde(borrow, default)]
    pub hosts: List<'a>,
    #[serde(borrow, default)]
    pub(crate) not_hosts: List<'a>,
    #[serde(borrow, default)]
    pub methods: List<'a>,
    #[serde(borrow, default)]
    pub(crate) not_methods: List<'a>,
    #[serde(borrow, default)]
    pub paths: List<'a>,
    #[serde(borrow, default)]
    pub(crate) not_paths: List<'a>,
    #[serde(borrow, default)]
    pub ports: List<'a>,
    #[serde(borrow, default)]
    pub(crate) not_ports: List<'a>,
}

/// One `when[l]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition<'a> {
    #[serde(borrow, default)]
    pub key: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub values: List<'a>,
    #[serde(borrow, default)]
    pub(crate) not_values: List<'a>,
}

shaped!(Map: AuthorizationPolicy<'_>, Provider<'_>, Rule<'_>, From<'_>, To<'_>, Source<'_>, Operation<'_>, Condition<'_>);

const NO_SOURCE: &Source<'static> = &Source {
    principals: None,
    not_principals: None,
    request_principals: None,
    not_request_principals: None,
    service_accounts: None,
    not_service_accounts: None,
    trust_domains: None,
    not_trust_domains: None,
    namespaces: None,
    not_namespaces: None,
    remote_ip_blocks: None,
    not_remote_ip_blocks: None,
    ip_blocks: None,
    not_ip_blocks: None,
};
const NO_OPERATION: &Operation<'static> = &Operation {
    hosts: None,
    not_hosts: None,
    methods: None,
    not_methods: None,
    paths: None,
    not_paths: None,
    ports: None,
    not_ports: None,
};
const NO_CONDITION: &Condition<'static> = &Condition {
    key: None,
    values: None,
    not_values: None,
};

/// A field counts as set when it is written with something in it: a non-empty list, or a
/// value of another type (which validation reports). Absent and `null` are unset.
fn is_set<T>(field: &Option<Loose<Vec<T>>>) -> bool {
    match field {
        None => false,
        Some(Loose::Ok(l)) => !l.is_empty(),
        Some(Loose::Wrong { found, .. }) => *found != "null",
    }
}

impl<'a> Source<'a> {
    /// The list of one of [`SOURCE_FIELDS`] (`None` for another name).
    pub fn list(&self, field: &str) -> Option<&List<'a>> {
        Some(match field {
            "principals" => &self.principals,
            "notPrincipals" => &self.not_principals,
            "requestPrincipals" => &self.request_principals,
            "notRequestPrincipals" => &self.not_request_principals,
            "serviceAccounts" => &self.service_accounts,
            "notServiceAccounts" => &self.not_service_accounts,
            "trustDomains" => &self.trust_domains,
            "notTrustDomains" => &self.not_trust_domains,
            "namespaces" => &self.namespaces,
            "notNamespaces" => &self.not_namespaces,
            "remoteIpBlocks" => &self.remote_ip_blocks,
            "notRemoteIpBlocks" => &self.not_remote_ip_blocks,
            "ipBlocks" => &self.ip_blocks,
            "notIpBlocks" => &self.not_ip_blocks,
            _ => return None,
        })
    }
}

impl<'a> Operation<'a> {
    /// The list of one of [`OPERATION_FIELDS`] (`None` for another name).
    pub fn list(&self, field: &str) -> Option<&List<'a>> {
        Some(match field {
            "hosts" => &self.hosts,
            "notHosts" => &self.not_hosts,
            "methods" => &self.methods,
            "notMethods" => &self.not_methods,
            "paths" => &self.paths,
            "notPaths" => &self.not_paths,
            "ports" => &self.ports,
            "notPorts" => &self.not_ports,
            _ => return None,
        })
    }
}

impl<'a> AuthorizationPolicy<'a> {
    /// Read a policy's `spec` for judging it: a spec the decode refuses (not an object) reads
    /// as the empty policy, as Istio's defaults read it; validation reports it.
    pub fn of(spec: &'a Value) -> AuthorizationPolicy<'a> {
        decode_spec(spec).unwrap_or_default()
    }

    /// `spec.action` as written; `ALLOW` when absent (or not a string).
    pub(crate) fn action_str(&self) -> &str {
        ok(&self.action).map_or("ALLOW", Str::as_str)
    }

    /// The action, `None` for a value Istio rejects.
    pub fn action(&self) -> Option<AuthzAction> {
        AuthzAction::parse(self.action_str())
    }

    pub(crate) fn is_allow(&self) -> bool {
        self.action() == Some(AuthzAction::Allow)
    }

    /// `spec.provider.name` (CUSTOM policies name their external authorizer there).
    pub(crate) fn provider_name(&self) -> Option<&str> {
        ok(&self.provider)
            .and_then(|p| ok(&p.name))
            .map(Str::as_str)
    }

    /// The workload selector (empty when absent or not an object).
    pub fn selector(&self) -> &Selector<'a> {
        static NONE: Selector<'static> = Selector { match_labels: None };
        ok(&self.selector).unwrap_or(&NONE)
    }

    /// `targetRefs` is written with entries (else `targetRef` is what attaches).
    fn target_refs_set(&self) -> bool {
        match &self.target_refs {
            None => false,
            Some(Loose::Ok(l)) => !l.is_empty(),
            Some(Loose::Wrong { .. }) => true,
        }
    }

    /// `targetRef` or `targetRefs` is set: the policy attaches to gateways, waypoints or
    /// Services, not to sidecars.
    pub(crate) fn has_target_refs(&self) -> bool {
        let one = match &self.target_ref {
            None => false,
            Some(Loose::Ok(r)) => *r != TargetRef::default(),
            Some(Loose::Wrong { .. }) => true,
        };
        one || self.target_refs_set()
    }

    /// `spec.targetRefs` when it is set, else `spec.targetRef`.
    pub(crate) fn target_refs_path(&self) -> &'static str {
        if self.target_refs_set() {
            "spec.targetRefs"
        } else {
            "spec.targetRef"
        }
    }

    /// The target references as Istio's `GetTargetRefs` reads them: `targetRefs` when it has
    /// entries, else `targetRef`. Entries that are not objects are left out.
    pub fn target_refs(&self) -> impl Iterator<Item = &TargetRef<'a>> {
        let list = entries(&self.target_refs);
        let single = if list.is_empty() {
            ok(&self.target_ref)
        } else {
            None
        };
        list.iter().filter_map(Loose::ok).chain(single)
    }

    /// The policy applies to something narrower than its namespace (selector or target refs).
    pub(crate) fn is_targeted(&self) -> bool {
        !self.selector().is_empty() || self.has_target_refs()
    }

    /// `spec.rules` is written, even as `null`.
    pub(crate) fn rules_written(&self) -> bool {
        self.rules.is_some()
    }

    /// `spec.rules` holds at least one entry.
    pub(crate) fn has_rules(&self) -> bool {
        is_set(&self.rules)
    }

    /// Every entry of `spec.rules`, objects or not, with its index.
    pub fn rules(&self) -> impl Iterator<Item = RuleView<'_, 'a>> {
        entries(&self.rules)
            .iter()
            .enumerate()
            .map(|(index, r)| RuleView {
                index,
                rule: r.ok(),
            })
    }

    /// Every `from[].source` of every rule.
    pub(crate) fn sources(&self) -> impl Iterator<Item = SourceView<'_, 'a>> {
        self.rules().flat_map(|r| r.sources())
    }

    /// Every `to[].operation` of every rule.
    pub fn operations(&self) -> impl Iterator<Item = OperationView<'_, 'a>> {
        self.rules().flat_map(|r| r.operations())
    }

    /// Every `when[]` condition of every rule that has a string `key`.
    pub fn conditions(&self) -> impl Iterator<Item = ConditionView<'_, 'a>> {
        self.rules()
            .flat_map(|r| r.conditions())
            .filter(|c| c.key().is_some())
    }

    /// The policy requires a request principal (a JWT): an ALLOW rule on `requestPrincipals`
    /// (or a `request.auth.principal` condition), or a DENY rule on `notRequestPrincipals`.
    /// Pass `dry_run` from the object's annotations: a dry-run policy enforces nothing.
    pub(crate) fn requires_jwt(&self, dry_run: bool) -> bool {
        if dry_run {
            return false;
        }
        let (field, condition) = match self.action() {
            Some(AuthzAction::Allow) => ("requestPrincipals", true),
            Some(AuthzAction::Deny) => ("notRequestPrincipals", false),
            _ => return false,
        };
        let non_empty =
            |l: Option<&List<'_>>| ok(l.unwrap_or(&None)).is_some_and(|l| !l.is_empty());
        self.rules().any(|r| {
            r.sources().any(|s| non_empty(s.source.list(field)))
                || (condition
                    && r.conditions().any(|c| {
                        c.key() == Some("request.auth.principal")
                            && non_empty(Some(&c.condition.values))
                    }))
        })
    }

    /// Allow-nothing for its scope: ALLOW with no rules, no selector and no target refs. With
    /// no other ALLOW policy, every request to the namespace's (or, in the root namespace, the
    /// mesh's) workloads is denied. A policy in dry-run (`istio.io/dry-run`) is not enforced,
    /// so it never counts: pass `dry_run` from the object's annotations.
    pub(crate) fn is_allow_nothing(&self, dry_run: bool) -> bool {
        self.is_allow() && !self.has_rules() && !self.is_targeted() && !dry_run
    }
}

/// One `rules[i]` entry, with its index.
#[derive(Clone, Copy, Debug)]
pub struct RuleView<'r, 'a> {
    pub index: usize,
    /// `None` when the entry is not an object.
    pub rule: Option<&'r Rule<'a>>,
}

impl<'r, 'a> RuleView<'r, 'a> {
    /// `spec.rules[i]`.
    pub fn path(&self) -> String {
        format!("spec.rules[{}]", self.index)
    }

    pub fn is_object(&self) -> bool {
        self.rule.is_some()
    }

    /// `from` holds at least one entry.
    pub(crate) fn has_from(&self) -> bool {
        self.rule.is_some_and(|r| is_set(&r.from))
    }

    /// `to` holds at least one entry.
    pub(crate) fn has_to(&self) -> bool {
        self.rule.is_some_and(|r| is_set(&r.to))
    }

    /// `when` holds at least one entry.
    pub(crate) fn has_when(&self) -> bool {
        self.rule.is_some_and(|r| is_set(&r.when))
    }

    /// No `from`, `to` or `when`: the rule matches every request.
    pub fn is_empty(&self) -> bool {
        self.is_object() && !self.has_from() && !self.has_to() && !self.has_when()
    }

    /// Every `from[j]` entry as written (`None`: not an object), with its index.
    pub fn from_entries(&self) -> impl Iterator<Item = (usize, Option<&'r From<'a>>)> {
        self.rule
            .map_or(&[][..], |r| entries(&r.from))
            .iter()
            .enumerate()
            .map(|(j, e)| (j, e.ok()))
    }

    /// Every `to[j]` entry as written (`None`: not an object), with its index.
    pub fn to_entries(&self) -> impl Iterator<Item = (usize, Option<&'r To<'a>>)> {
        self.rule
            .map_or(&[][..], |r| entries(&r.to))
            .iter()
            .enumerate()
            .map(|(j, e)| (j, e.ok()))
    }

    /// Every `from[j]` entry that has a `source` (one that is not an object reads as empty).
    pub(crate) fn sources(&self) -> impl Iterator<Item = SourceView<'r, 'a>> {
        let rule = self.index;
        self.from_entries().filter_map(move |(index, e)| {
            let source = e?.source.as_ref()?.ok().unwrap_or(NO_SOURCE);
            Some(SourceView {
                rule,
                index,
                source,
            })
        })
    }

    /// Every `to[j]` entry that has an `operation` (one that is not an object reads as empty).
    pub fn operations(&self) -> impl Iterator<Item = OperationView<'r, 'a>> {
        let rule = self.index;
        self.to_entries().filter_map(move |(index, e)| {
            let operation = e?.operation.as_ref()?.ok().unwrap_or(NO_OPERATION);
            Some(OperationView {
                rule,
                index,
                operation,
            })
        })
    }

    /// Every `when[l]` entry (one that is not an object reads as a condition without a key).
    pub fn conditions(&self) -> impl Iterator<Item = ConditionView<'r, 'a>> {
        let rule = self.index;
        self.rule
            .map_or(&[][..], |r| entries(&r.when))
            .iter()
            .enumerate()
            .map(move |(index, c)| ConditionView {
                rule,
                index,
                condition: c.ok().unwrap_or(NO_CONDITION),
            })
    }
}

/// One match list of a source or operation (`principals`, `paths`, ...).
#[derive(Clone, Copy, Debug)]
pub struct MatchList<'r, 'a> {
    /// `spec.rules[i].from[j].source` (or `.to[j].operation`).
    base: Base,
    pub field: &'static str,
    pub list: &'r List<'a>,
}

#[derive(Clone, Copy, Debug)]
enum Base {
    Source(usize, usize),
    Operation(usize, usize),
}

impl std::fmt::Display for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Base::Source(i, j) => write!(f, "spec.rules[{i}].from[{j}].source"),
            Base::Operation(i, j) => write!(f, "spec.rules[{i}].to[{j}].operation"),
        }
    }
}

impl<'r, 'a> MatchList<'r, 'a> {
    /// Written with at least one entry (or with a value of another type).
    pub(crate) fn is_set(&self) -> bool {
        is_set(self.list)
    }
    /// Written as a list (even an empty one) or another value; not absent or `null`.
    pub(crate) fn is_written(&self) -> bool {
        self.list.is_some()
    }
    /// Every entry as written.
    pub fn entries(&self) -> &'r [Loose<Str<'a>>] {
        entries(self.list)
    }
    /// The string entries with their indexes.
    pub fn strings(&self) -> impl Iterator<Item = (usize, &'r str)> {
        strings(self.list)
    }
    /// `spec.rules[i].from[j].source.principals`.
    pub fn path(&self) -> String {
        format!("{}.{}", self.base, self.field)
    }
    /// `spec.rules[i].from[j].source.principals[k]`.
    pub(crate) fn item_path(&self, k: usize) -> String {
        format!("{}.{}[{k}]", self.base, self.field)
    }
}

/// The string entries of a list with their indexes.
pub fn strings<'r>(list: &'r List<'_>) -> impl Iterator<Item = (usize, &'r str)> {
    entries(list)
        .iter()
        .enumerate()
        .filter_map(|(k, v)| Some((k, v.ok()?.as_str())))
}

/// One `from[j].source`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SourceView<'r, 'a> {
    pub(crate) rule: usize,
    pub(crate) index: usize,
    pub(crate) source: &'r Source<'a>,
}

impl<'r, 'a> SourceView<'r, 'a> {
    /// `spec.rules[i].from[j].source`.
    pub fn path(&self) -> String {
        Base::Source(self.rule, self.index).to_string()
    }
    /// One of [`SOURCE_FIELDS`] (another name reads as absent).
    pub fn field(&self, field: &'static str) -> MatchList<'r, 'a> {
        MatchList {
            base: Base::Source(self.rule, self.index),
            field,
            list: self.source.list(field).unwrap_or(&None),
        }
    }
    /// The fields written, in [`SOURCE_FIELDS`] order.
    pub fn fields(&self) -> impl Iterator<Item = MatchList<'r, 'a>> + use<'r, 'a> {
        let s = *self;
        SOURCE_FIELDS
            .iter()
            .map(move |f| s.field(f))
            .filter(MatchList::is_written)
    }
    /// Some field of [`SOURCE_FIELDS`] is written.
    pub(crate) fn has_fields(&self) -> bool {
        self.fields().next().is_some()
    }
}

/// One `to[j].operation`.
#[derive(Clone, Copy, Debug)]
pub struct OperationView<'r, 'a> {
    pub rule: usize,
    pub index: usize,
    pub operation: &'r Operation<'a>,
}

impl<'r, 'a> OperationView<'r, 'a> {
    /// `spec.rules[i].to[j].operation`.
    pub fn path(&self) -> String {
        Base::Operation(self.rule, self.index).to_string()
    }
    /// One of [`OPERATION_FIELDS`] (another name reads as absent).
    pub fn field(&self, field: &'static str) -> MatchList<'r, 'a> {
        MatchList {
            base: Base::Operation(self.rule, self.index),
            field,
            list: self.operation.list(field).unwrap_or(&None),
        }
    }
    /// The fields written, in [`OPERATION_FIELDS`] order.
    pub fn fields(&self) -> impl Iterator<Item = MatchList<'r, 'a>> + use<'r, 'a> {
        let o = *self;
        OPERATION_FIELDS
            .iter()
            .map(move |f| o.field(f))
            .filter(MatchList::is_written)
    }
    /// Some field of [`OPERATION_FIELDS`] is written.
    pub(crate) fn has_fields(&self) -> bool {
        self.fields().next().is_some()
    }
}

/// One `when[l]` condition.
#[derive(Clone, Copy, Debug)]
pub struct ConditionView<'r, 'a> {
    pub rule: usize,
    pub index: usize,
    pub condition: &'r Condition<'a>,
}

impl<'r, 'a> ConditionView<'r, 'a> {
    /// `key`, when it is a string.
    pub fn key(&self) -> Option<&'r str> {
        ok(&self.condition.key).map(Str::as_str)
    }
    /// The parsed key, when it is a string.
    pub(crate) fn when_key(&self) -> Option<WhenKey<'r>> {
        self.key().map(WhenKey::parse)
    }
    /// `spec.rules[i].when[l]`.
    pub fn path(&self) -> String {
        format!("spec.rules[{}].when[{}]", self.rule, self.index)
    }
    /// `values` (or `notValues`).
    pub fn list(&self, field: &'static str) -> &'r List<'a> {
        match field {
            "notValues" => &self.condition.not_values,
            _ => &self.condition.values,
        }
    }
    /// `values` (or `notValues`) holds at least one entry.
    pub fn has(&self, field: &'static str) -> bool {
        is_set(self.list(field))
    }
    /// The string entries of `values` (or `notValues`) with their indexes.
    pub fn strings(&self, field: &'static str) -> impl Iterator<Item = (usize, &'r str)> {
        strings(self.list(field))
    }
    /// The key names the caller's peer identity (`source.principal`, ...).
    pub(crate) fn is_peer_identity(&self) -> bool {
        self.when_key().is_some_and(|k| k.is_peer_identity())
    }
}

// ---------------------------------------------------------------------------------------------
// The `when` key grammar

/// A `when` key, as Istio's `model.New` and `security.ValidateAttribute` read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WhenKey<'k> {
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourceServiceAccount,
    SourcePrincipal,
    SourceTrustDomain,
    RequestPrincipal,
    RequestAudiences,
    RequestPresenter,
    DestinationIp,
    DestinationPort,
    ConnectionSni,
    /// `request.headers` and what follows (`[<name>]` when well formed).
    Header(&'k str),
    /// `request.auth.claims` and what follows (`[<claim>][<nested>]...` when well formed).
    Claims(&'k str),
    /// `experimental.envoy.filters.` and what follows.
    EnvoyFilter(&'k str),
    /// A key Istio does not know.
    Unknown(&'k str),
}

/// The keys without a bracketed name, with their names.
const PLAIN_KEYS: &[(&str, WhenKey<'static>)] = &[
    ("source.ip", WhenKey::SourceIp),
    ("remote.ip", WhenKey::RemoteIp),
    ("source.namespace", WhenKey::SourceNamespace),
    ("source.serviceAccount", WhenKey::SourceServiceAccount),
    ("source.principal", WhenKey::SourcePrincipal),
    ("source.trustDomain", WhenKey::SourceTrustDomain),
    ("request.auth.principal", WhenKey::RequestPrincipal),
    ("request.auth.audiences", WhenKey::RequestAudiences),
    ("request.auth.presenter", WhenKey::RequestPresenter),
    ("destination.ip", WhenKey::DestinationIp),
    ("destination.port", WhenKey::DestinationPort),
    ("connection.sni", WhenKey::ConnectionSni),
];

/// `request.headers`: the key of a header condition, before its bracketed name.
pub(crate) const HEADERS: &str = "request.headers";
/// `request.auth.claims`: the key of a claim condition, before its bracketed names.
pub(crate) const CLAIMS: &str = "request.auth.claims";
const ENVOY_FILTERS: &str = "experimental.envoy.filters.";

/// Every key name, for "did you mean" suggestions: the plain keys, then the bracketed ones.
pub(crate) fn key_names() -> impl Iterator<Item = &'static str> {
    PLAIN_KEYS.iter().map(|(n, _)| *n).chain([HEADERS, CLAIMS])
}

/// `[a]` or, when `nested`, `[a][b]...`: bracketed, non-empty names.
fn brackets_ok(s: &str, nested: bool) -> bool {
    let mut rest = s;
    let mut count = 0;
    while !rest.is_empty() {
        let Some(inner) = rest.strip_prefix('[') else {
            return false;
        };
        let Some(end) = inner.find(']') else {
            return false;
        };
        let name = &inner[..end];
        if name.is_empty() || name.contains('[') {
            return false;
        }
        count += 1;
        rest = &inner[end + 1..];
    }
    count == 1 || (nested && count > 1)
}

impl<'k> WhenKey<'k> {
    pub fn parse(key: &'k str) -> WhenKey<'k> {
        if let Some((_, k)) = PLAIN_KEYS.iter().find(|(n, _)| *n == key) {
            return *k;
        }
        if let Some(rest) = key.strip_prefix(HEADERS) {
            return WhenKey::Header(rest);
        }
        if let Some(rest) = key.strip_prefix(CLAIMS) {
            return WhenKey::Claims(rest);
        }
        if let Some(rest) = key.strip_prefix(ENVOY_FILTERS) {
            return WhenKey::EnvoyFilter(rest);
        }
        WhenKey::Unknown(key)
    }

    /// Istio's validation accepts the key: a known name, a header with one bracketed name, a
    /// claim with one or more, an Envoy filter with a name.
    pub(crate) fn is_supported(self) -> bool {
        match self {
            WhenKey::Header(rest) => brackets_ok(rest, false),
            WhenKey::Claims(rest) => brackets_ok(rest, true),
            WhenKey::EnvoyFilter(rest) => !rest.is_empty(),
            WhenKey::Unknown(_) => false,
            _ => true,
        }
    }

    /// The key names the caller's peer identity (empty for plaintext callers).
    pub(crate) fn is_peer_identity(self) -> bool {
        matches!(
            self,
            WhenKey::SourcePrincipal
                | WhenKey::SourceNamespace
                | WhenKey::SourceServiceAccount
                | WhenKey::SourceTrustDomain
        )
    }

    /// The key's value is an IP address or CIDR range.
    pub(crate) fn is_ip(self) -> bool {
        matches!(
            self,
            WhenKey::SourceIp | WhenKey::RemoteIp | WhenKey::DestinationIp
        )
    }
}

/// The key starts with `request.`: only HTTP requests carry it.
pub(crate) fn is_request_key(key: &str) -> bool {
    key.starts_with("request.")
}

/// The key reads the request's JWT (`request.auth.*`).
pub(crate) fn is_request_identity_key(key: &str) -> bool {
    key.starts_with("request.auth.")
}

/// The key restricts who the caller is (`source.*`, `remote.ip`, `request.auth.*`).
pub(crate) fn is_source_key(key: &str) -> bool {
    key.starts_with("source.") || key == "remote.ip" || is_request_identity_key(key)
}

/// The bracketed names of a `request.headers[...]` / `request.auth.claims[...][...]` key.
pub(crate) fn bracket_names(key: &str) -> impl Iterator<Item = &str> {
    let rest = key
        .strip_prefix(HEADERS)
        .or_else(|| key.strip_prefix(CLAIMS))
        .unwrap_or("");
    rest.split('[').skip(1).filter_map(|s| s.strip_suffix(']'))
}

// ---------------------------------------------------------------------------------------------
// The principal grammar

/// Principals: `<trust-domain>/ns/<namespace>/sa/<account>`, matched exactly, by prefix
/// (`...*`), by suffix (`*...`) or as presence (`*`) (istio/istio
/// `pilot/pkg/security/authz/matcher`, `StringMatcher`).
pub mod principal {
    /// Positions of `<trust-domain>/ns/<namespace>/sa/<account>`: `None` = free segment.
    const TEMPLATE: [Option<&str>; 5] = [None, Some("ns"), None, Some("sa"), None];

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub(crate) enum Match {
        Exact,
        Prefix,
        Suffix,
    }

    /// Split an Istio match string into its literal body and match kind.
    pub(crate) fn match_kind(v: &str) -> (&str, Match) {
        if let Some(body) = v.strip_prefix('*') {
            (body, Match::Suffix)
        } else if let Some(body) = v.strip_suffix('*') {
            (body, Match::Prefix)
        } else {
            (v, Match::Exact)
        }
    }

    /// Whether `body` (a principal, or the literal part of a prefix/suffix match) fits the
    /// template.
    pub(crate) fn shape_ok(body: &str, kind: Match) -> bool {
        // Split once, into at most the template's five segments.
        let mut segs = [""; 5];
        let mut n = 0;
        for s in body.split('/') {
            if n == segs.len() {
                return false;
            }
            segs[n] = s;
            n += 1;
        }
        if kind == Match::Exact && n != 5 {
            return false;
        }
        // Where the segments sit in the template: suffix matches align to the end.
        let offset = if kind == Match::Suffix { 5 - n } else { 0 };
        segs[..n].iter().enumerate().all(|(i, &s)| {
            let t = TEMPLATE[offset + i];
            let partial_last = kind == Match::Prefix && i + 1 == n;
            let partial_first = kind == Match::Suffix && i == 0;
            match t {
                None => partial_last || partial_first || !s.is_empty(),
                Some(lit) if partial_last => lit.starts_with(s),
                Some(lit) if partial_first => lit.ends_with(s),
                Some(lit) => s == lit,
            }
        })
    }

    /// What is wrong with a principal and what to write instead; `None` when it is fine.
    /// Bare names without `/` are legal match strings (they just match no SPIFFE identity)
    /// and are left alone; anything path-like must follow
    /// `<trust-domain>/ns/<namespace>/sa/<account>`.
    pub fn problem(v: &str, trust_domain: &str) -> Option<(String, String)> {
        if v.is_empty() {
            return Some((
                "an empty principal matches no caller".to_owned(),
                "remove the empty entry".to_owned(),
            ));
        }
        // `get`, not indexing: byte 9 may fall inside a multi-byte character (found by fuzzing).
        if let Some(rest) = v
            .get(..9)
            .filter(|scheme| scheme.eq_ignore_ascii_case("spiffe://"))
            .and_then(|_| v.get(9..))
        {
            return Some((
                format!("principal {v:?} must not start with spiffe:// (Istio compares the identity without the scheme, so it never matches)"),
                format!("write {rest:?}"),
            ));
        }
        if v == "*" {
            return None;
        }
        let (body, kind) = match_kind(v);
        if body.contains('*') {
            return Some((
                format!("principal {v:?} has a * that is not the first or last character; Istio treats it as a literal character, so it never matches"),
                format!("use a single leading or trailing wildcard, e.g. \"{trust_domain}/ns/<namespace>/sa/*\""),
            ));
        }
        if !body.contains('/') || shape_ok(body, kind) {
            return None;
        }
        let segs: Vec<&str> = body.split('/').collect();
        let fix = match (kind, segs.as_slice()) {
            (Match::Exact, [ns, sa]) if !ns.is_empty() && !sa.is_empty() => format!(
                "write \"{trust_domain}/ns/{ns}/sa/{sa}\", or move \"{ns}/{sa}\" to serviceAccounts"
            ),
            (Match::Exact, ["ns", ns, "sa", sa]) => {
                format!("write \"{trust_domain}/ns/{ns}/sa/{sa}\"")
            }
            (Match::Exact, [td, "ns", ns]) => format!(
                "write \"{td}/ns/{ns}/sa/*\" for every account of the namespace, or use namespaces: [\"{ns}\"]"
            ),
            _ => format!("write it as \"{trust_domain}/ns/<namespace>/sa/<serviceaccount>\""),
        };
        Some((
            format!("principal {v:?} is not of the form <trust-domain>/ns/<namespace>/sa/<serviceaccount>, so it never matches a workload identity"),
            fix,
        ))
    }

    /// The identity an exact principal names: `(trust domain, namespace, account)` of
    /// `<trust-domain>/ns/<namespace>/sa/<account>`; `None` for a wildcard or another shape.
    pub fn identity(v: &str) -> Option<(&str, &str, &str)> {
        if v.contains('*') {
            return None;
        }
        let mut segs = v.split('/');
        match (
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
        ) {
            (Some(td), Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((td, ns, sa)),
            _ => None,
        }
    }

    /// The trust domain a principal names, when it names one completely.
    pub fn trust_domain(v: &str) -> Option<&str> {
        let (body, kind) = match_kind(v);
        if kind == Match::Suffix || body.contains('*') {
            return None;
        }
        let mut segs = body.split('/');
        let td = segs.next()?;
        (segs.next() == Some("ns") && !td.is_empty()).then_some(td)
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

fn port_in_range(n: u64) -> bool {
    (1..=65535).contains(&n)
}

/// Is `p` a valid Envoy URI template (`{*}` / `{**}` whole segments, `{**}` last)?
/// Returns Istio's reason when not. Paths without `{` are plain match strings.
fn path_template_problem(p: &str) -> Option<&'static str> {
    if !p.contains(['{', '}']) {
        return None;
    }
    let segs: Vec<&str> = p.split('/').collect();
    for (i, s) in segs.iter().enumerate() {
        if !s.contains(['{', '}']) {
            continue;
        }
        match *s {
            "{*}" => {}
            "{**}" => {
                if segs[i + 1..]
                    .iter()
                    .any(|r| r.contains("{**}") || r.contains("{*}"))
                {
                    return Some("the {**} operator must be the last operator in the path");
                }
            }
            _ => {
                return Some(
                    "{*} and {**} must be the whole path segment, with no other characters in it",
                );
            }
        }
    }
    if p.contains('*') && p.split('/').any(|s| s.contains('*') && !s.starts_with('{')) {
        return Some("a path template cannot also use the * prefix/suffix match");
    }
    None
}

/// An IP address or CIDR range, as Istio's `ValidateIPs` accepts them.
pub(crate) fn ip_or_cidr(s: &str) -> bool {
    use std::net::IpAddr;
    match s.split_once('/') {
        None => s.parse::<IpAddr>().is_ok(),
        Some((ip, len)) => match (ip.parse::<IpAddr>(), len.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(n)) => n <= 32,
            (Ok(IpAddr::V6(_)), Ok(n)) => n <= 128,
            _ => false,
        },
    }
}

fn ip_values(list: &List<'_>, path: impl Fn(usize) -> String, key: &str, errors: &mut Errors<'_>) {
    for (k, v) in strings(list) {
        if !v.is_empty() && !ip_or_cidr(v) {
            errors.report(
                Class::Spec,
                || path(k),
                || format!("invalid IP address or CIDR range {v:?} in {key}"),
                || {
                    "write an address such as \"10.0.0.1\" or a range such as \"10.0.0.0/16\""
                        .to_owned()
                },
            );
        }
    }
}

/// Istio's `CheckEmptyValues`: no empty strings in match lists.
fn empty_values(list: &MatchList<'_, '_>, errors: &mut Errors<'_>) {
    for (k, v) in list.strings() {
        if v.is_empty() {
            let mut name = list.field.to_owned();
            if let Some(first) = name.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            errors.report(
                Class::Spec,
                || list.item_path(k),
                || format!("empty value is not allowed, found in {name}"),
                || "remove the empty entry".to_owned(),
            );
        }
    }
}

/// Istio's `CheckTrustDomainValues`: no empty entries, at most one `*` and only at the start
/// or end, no `/` (a trust domain, not a principal).
fn trust_domain_values(list: &MatchList<'_, '_>, errors: &mut Errors<'_>) {
    let name = if list.field == "trustDomains" {
        "TrustDomains"
    } else {
        "NotTrustDomains"
    };
    for (k, v) in list.strings() {
        let stars = v.matches('*').count();
        let why = if v.is_empty() {
            format!("empty value is not allowed, found in {name}")
        } else if stars > 1 {
            format!("at most one wildcard is allowed, found in {name}: {v:?}")
        } else if stars == 1 && v != "*" && !v.starts_with('*') && !v.ends_with('*') {
            format!("wildcard is only allowed at the start or end, found in {name}: {v:?}")
        } else if v.contains('/') {
            format!("trust domain must not contain '/', found in {name}: {v:?}")
        } else {
            continue;
        };
        errors.report(
            Class::Spec,
            || list.item_path(k),
            || why,
            || "write the trust domain alone, e.g. \"cluster.local\" (or principals for a full identity)".to_owned(),
        );
    }
}

/// The JSON text of a list entry, for messages.
fn entry_text(v: &Loose<Str<'_>>) -> String {
    match v {
        Loose::Ok(s) => Value::from(s.as_str()).to_string(),
        Loose::Wrong { text, found } if text.is_empty() => format!("<{found}>"),
        Loose::Wrong { text, .. } => text.clone(),
    }
}

impl AuthorizationPolicy<'_> {
    /// Istio's validation of the spec.
    pub(crate) fn validate(&self, errors: &mut Errors<'_>) {
        errors.enum_field(
            || "spec.action".to_owned(),
            self.action.as_ref(),
            &AuthzAction::NAMES,
        );
        let action = self.action_str();
        let written = [
            self.selector.is_some(),
            self.target_ref.is_some(),
            self.target_refs.is_some(),
        ];
        if written.iter().filter(|w| **w).count() > 1 {
            errors.report(
                Class::Conflict,
                || "spec".to_owned(),
                || "only one of targetRefs or selector can be set (selector, targetRef and targetRefs are mutually exclusive)".to_owned(),
                || "keep exactly one of selector, targetRef or targetRefs".to_owned(),
            );
        }
        let rules_non_null = !matches!(self.rules, None | Some(Loose::Wrong { found: "null", .. }));
        if action == "CUSTOM" && rules_non_null && self.provider_name().is_none_or(str::is_empty) {
            errors.report(
                Class::Spec,
                || "spec.provider.name".to_owned(),
                || "`provider.name` must not be empty".to_owned(),
                || "name the extension provider from meshConfig.extensionProviders".to_owned(),
            );
        }
        if self.provider.is_some() && action != "CUSTOM" {
            errors.report(
                Class::Conflict,
                || "spec.provider".to_owned(),
                || format!("`provider` must not be with non CUSTOM action, found {action}"),
                || "remove provider, or set action: CUSTOM".to_owned(),
            );
        }
        for rule in self.rules() {
            validate_rule(&rule, errors);
        }
    }
}

fn validate_rule(rule: &RuleView<'_, '_>, errors: &mut Errors<'_>) {
    let i = rule.index;
    let Some(r) = rule.rule else {
        errors.report(
            Class::Spec,
            || rule.path(),
            || format!("`rule` must not be nil, found at rule {i} (spec.rules[{i}] in body must be of type object)"),
            || "write {} for a rule that matches everything, or remove the entry".to_owned(),
        );
        return;
    };
    for (field, inner, empty_list) in [
        (
            "from",
            "source",
            matches!(r.from, Some(Loose::Ok(ref l)) if l.is_empty()),
        ),
        (
            "to",
            "operation",
            matches!(r.to, Some(Loose::Ok(ref l)) if l.is_empty()),
        ),
    ] {
        if empty_list {
            errors.report(
                Class::Spec,
                || format!("spec.rules[{i}].{field}"),
                || format!("`{field}` must not be empty, found at rule {i}"),
                || format!("remove {field}, or add entries"),
            );
        }
        let inner_set: Vec<(usize, Option<bool>)> = if field == "from" {
            rule.from_entries()
                .map(|(j, e)| {
                    let s = e.and_then(|e| e.source.as_ref()).and_then(Loose::ok);
                    (
                        j,
                        s.map(|s| {
                            SourceView {
                                rule: i,
                                index: j,
                                source: s,
                            }
                            .has_fields()
                        }),
                    )
                })
                .collect()
        } else {
            rule.to_entries()
                .map(|(j, e)| {
                    let o = e.and_then(|e| e.operation.as_ref()).and_then(Loose::ok);
                    (
                        j,
                        o.map(|o| {
                            OperationView {
                                rule: i,
                                index: j,
                                operation: o,
                            }
                            .has_fields()
                        }),
                    )
                })
                .collect()
        };
        for (j, has) in inner_set {
            match has {
                Some(true) => {}
                Some(false) => errors.report(
                    Class::Spec,
                    || format!("spec.rules[{i}].{field}[{j}].{inner}"),
                    || format!("`{field}.{inner}` must not be empty, found at rule {i}"),
                    || format!("set at least one match in {inner}, or remove the {field} entry"),
                ),
                None => errors.report(
                    Class::Spec,
                    || format!("spec.rules[{i}].{field}[{j}]"),
                    || format!("`{field}.{inner}` must not be nil, found at rule {i}"),
                    || format!("write {field}: [{{{inner}: {{...}}}}]"),
                ),
            }
        }
    }
    for src in rule.sources() {
        validate_source(&src, errors);
    }
    for op in rule.operations() {
        validate_operation(&op, errors);
    }
    for cond in rule.conditions() {
        validate_condition(&cond, errors);
    }
}

fn validate_source(src: &SourceView<'_, '_>, errors: &mut Errors<'_>) {
    let set = |k: &'static str| ok(src.field(k).list).is_some_and(|l| !l.is_empty());
    if (set("serviceAccounts") || set("notServiceAccounts"))
        && ["principals", "notPrincipals", "namespaces", "notNamespaces"]
            .iter()
            .any(|k| set(k))
    {
        errors.report(
            Class::Conflict,
            || src.path(),
            || "Cannot set serviceAccounts with namespaces or principals".to_owned(),
            || "put serviceAccounts in a separate from[] entry (entries are ORed), or express the accounts as principals".to_owned(),
        );
    }
    let accounts = src.field("serviceAccounts");
    for (k, sa) in accounts.strings() {
        if sa.contains('*') {
            errors.report(
                Class::Spec,
                || accounts.item_path(k),
                || "serviceAccounts do not support wildcards".to_owned(),
                || "name each account as <namespace>/<serviceaccount>, or use principals with a wildcard".to_owned(),
            );
        }
    }
    if ok(accounts.list).is_some_and(|a| a.len() > 16) {
        errors.report(
            Class::Spec,
            || accounts.path(),
            || "serviceAccounts may list at most 16 entries".to_owned(),
            || "split the accounts over several from[] entries".to_owned(),
        );
    }
    // In the order of the object's keys (sorted), as the fields are read from JSON.
    let mut written: Vec<MatchList<'_, '_>> = src.fields().collect();
    written.sort_by_key(|l| l.field);
    for list in written {
        match list.field {
            "principals"
            | "notPrincipals"
            | "requestPrincipals"
            | "notRequestPrincipals"
            | "namespaces"
            | "notNamespaces" => empty_values(&list, errors),
            "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks" => {
                empty_values(&list, errors);
                ip_values(list.list, |k| list.item_path(k), list.field, errors);
            }
            "trustDomains" | "notTrustDomains" => trust_domain_values(&list, errors),
            _ => {}
        }
    }
}

fn validate_operation(op: &OperationView<'_, '_>, errors: &mut Errors<'_>) {
    for key in ["ports", "notPorts"] {
        let list = op.field(key);
        for (k, v) in list.entries().iter().enumerate() {
            let fine = match v {
                Loose::Ok(s) => s.parse::<u64>().is_ok_and(port_in_range),
                Loose::Wrong {
                    found: "number",
                    text,
                } => text.parse::<u64>().is_ok_and(port_in_range),
                Loose::Wrong { .. } => false,
            };
            if !fine {
                errors.report(
                    Class::Port,
                    || list.item_path(k),
                    || {
                        format!(
                            "invalid port {}: port must be between 1-65535",
                            entry_text(v)
                        )
                    },
                    || "write the port as a number string, e.g. \"8080\"".to_owned(),
                );
            }
        }
    }
    let mut written: Vec<MatchList<'_, '_>> = op.fields().collect();
    written.sort_by_key(|l| l.field);
    for list in written {
        if !matches!(
            list.field,
            "methods" | "notMethods" | "paths" | "notPaths" | "hosts" | "notHosts"
        ) {
            continue;
        }
        empty_values(&list, errors);
        if !matches!(list.field, "paths" | "notPaths") {
            continue;
        }
        for (k, p) in list.strings() {
            if let Some(why) = path_template_problem(p) {
                errors.report(
                    Class::Spec,
                    || list.item_path(k),
                    || format!("invalid path template {p:?}: {why}"),
                    || "use {*} for one segment and {**} (last) for the rest, each as a whole segment, e.g. \"/api/{*}/items/{**}\"".to_owned(),
                );
            }
        }
    }
}

fn validate_condition(cond: &ConditionView<'_, '_>, errors: &mut Errors<'_>) {
    let base = cond.path();
    let key = cond.key().unwrap_or("");
    if key.is_empty() {
        errors.report(
            Class::Spec,
            || format!("{base}.key"),
            || "`key` must not be empty".to_owned(),
            || "set key, e.g. source.namespace".to_owned(),
        );
        return;
    }
    let non_empty = |f| ok(cond.list(f)).is_some_and(|l| !l.is_empty());
    if !non_empty("values") && !non_empty("notValues") {
        errors.report(
            Class::Spec,
            || base.clone(),
            || format!("at least one of `values` or `notValues` must be set for key {key}"),
            || "add values (or notValues) to the condition".to_owned(),
        );
    }
    let parsed = WhenKey::parse(key);
    if parsed.is_ip() {
        for field in ["values", "notValues"] {
            ip_values(
                cond.list(field),
                |k| format!("{base}.{field}[{k}]"),
                field,
                errors,
            );
        }
    }
    if parsed == WhenKey::DestinationPort {
        for field in ["values", "notValues"] {
            for (k, v) in cond.strings(field) {
                if !v.parse::<u64>().is_ok_and(port_in_range) {
                    errors.report(
                        Class::Port,
                        || format!("{base}.{field}[{k}]"),
                        || format!("invalid `value` for `key` destination.port: invalid port {v}"),
                        || "write a port number between 1 and 65535".to_owned(),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walks_rules_sources_operations_conditions_with_paths() {
        let spec = json!({
            "action": "DENY",
            "rules": [
                {"from": [{"source": {"principals": ["a", 1, "b"], "bogus": []}}, {"x": 1}],
                 "to": [{"operation": {"paths": ["/p"]}}],
                 "when": [{"key": "source.namespace", "values": ["prod"]}, {"values": ["x"]}]},
                {},
                "not-an-object"
            ]
        });
        let ap = AuthorizationPolicy::of(&spec);
        assert_eq!(ap.action(), Some(AuthzAction::Deny));
        assert!(!ap.is_allow() && ap.has_rules());
        let rules: Vec<RuleView<'_, '_>> = ap.rules().collect();
        assert_eq!(rules.len(), 3);
        assert!(!rules[0].is_empty() && rules[1].is_empty() && !rules[2].is_empty());
        let src: Vec<SourceView<'_, '_>> = ap.sources().collect();
        assert_eq!(src.len(), 1);
        let p = src[0].field("principals");
        assert_eq!(p.strings().collect::<Vec<_>>(), [(0, "a"), (2, "b")]);
        assert_eq!(p.item_path(2), "spec.rules[0].from[0].source.principals[2]");
        assert_eq!(
            src[0].fields().map(|f| f.field).collect::<Vec<_>>(),
            ["principals"]
        );
        let op = ap.operations().next().expect("operation");
        assert_eq!(
            op.field("paths").path(),
            "spec.rules[0].to[0].operation.paths"
        );
        let conds: Vec<ConditionView<'_, '_>> = ap.conditions().collect();
        assert_eq!(conds.len(), 1, "conditions without a key are skipped");
        assert!(conds[0].is_peer_identity());
        assert_eq!(conds[0].path(), "spec.rules[0].when[0]");
        assert_eq!(ap.rules().next().map(|r| r.conditions().count()), Some(2));
    }

    #[test]
    fn allow_nothing_is_one_definition() {
        let yes = |spec: Value, dry: bool| AuthorizationPolicy::of(&spec).is_allow_nothing(dry);
        assert!(yes(json!({}), false));
        assert!(yes(json!(null), false));
        assert!(yes(json!("not an object"), false));
        assert!(yes(json!({"action": "ALLOW", "rules": []}), false));
        assert!(yes(json!({"rules": null}), false));
        assert!(!yes(json!({}), true), "dry-run is not enforced");
        assert!(!yes(json!({"rules": [{}]}), false), "allow-all");
        assert!(!yes(json!({"action": "DENY"}), false));
        assert!(!yes(
            json!({"selector": {"matchLabels": {"a": "b"}}}),
            false
        ));
        assert!(!yes(json!({"targetRefs": [{"kind": "Gateway"}]}), false));
    }

    #[test]
    fn one_list_of_source_fields_with_trust_domains() {
        // istio/istio model.New reads trustDomains/notTrustDomains like every other source
        // field, and ValidateAuthorizationPolicy counts them in "from.source must not be empty".
        for f in SOURCE_FIELDS {
            assert!(Source::default().list(f).is_some(), "{f}");
        }
        for f in OPERATION_FIELDS {
            assert!(Operation::default().list(f).is_some(), "{f}");
        }
        let spec = json!({"rules": [{"from": [{"source": {"trustDomains": ["td"]}}]}]});
        let ap = AuthorizationPolicy::of(&spec);
        let src = ap.sources().next().expect("source");
        assert!(src.has_fields());
        assert_eq!(
            src.field("trustDomains").strings().collect::<Vec<_>>(),
            [(0, "td")]
        );
    }

    #[test]
    fn action_names_come_from_the_enum() {
        assert_eq!(AuthzAction::NAMES, ["ALLOW", "DENY", "AUDIT", "CUSTOM"]);
        for a in AuthzAction::ALL {
            assert_eq!(AuthzAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuthzAction::parse("DENIED"), None);
    }

    #[test]
    fn when_key_grammar() {
        assert!(WhenKey::parse("request.headers[x]").is_supported());
        assert!(!WhenKey::parse("request.headers[x][y]").is_supported());
        assert!(WhenKey::parse("request.auth.claims[a][b]").is_supported());
        assert!(!WhenKey::parse("request.auth.claims").is_supported());
        assert!(!WhenKey::parse("experimental.envoy.filters.").is_supported());
        assert!(WhenKey::parse("experimental.envoy.filters.a").is_supported());
        assert!(!WhenKey::parse("destination.namespace").is_supported());
        assert!(WhenKey::parse("source.principal").is_peer_identity());
        assert!(is_source_key("request.auth.claims[x]") && is_source_key("remote.ip"));
        assert!(!is_source_key("destination.ip"));
        assert_eq!(
            bracket_names("request.headers[\"x\"]").collect::<Vec<_>>(),
            ["\"x\""]
        );
    }

    fn errors_of(spec: Value) -> Vec<(Class, String, String)> {
        let mut out = Vec::new();
        AuthorizationPolicy::of(&spec).validate(&mut Errors { out: &mut out });
        out.into_iter()
            .map(|(c, v)| (c, v.path, v.message))
            .collect()
    }

    #[test]
    fn validation_follows_istio() {
        // A source with only fields Istio does not know is empty to Istio (the schema prunes
        // them); trustDomains alone is a source.
        let found = errors_of(json!({"rules": [{"from": [
            {"source": {"principal": ["typo"]}},
            {"source": {"trustDomains": ["td"]}},
            {"nosource": 1}
        ]}]}));
        let paths: Vec<&str> = found.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.rules[0].from[0].source", "spec.rules[0].from[2]"]
        );
        assert!(found[0].2.contains("`from.source` must not be empty"));
        assert!(found[1].2.contains("`from.source` must not be nil"));
        // Trust domains as Istio's CheckTrustDomainValues reads them.
        let found = errors_of(json!({"rules": [{"from": [{"source": {
            "trustDomains": ["td", "*.td", "a*b", "td/ns/x"], "notTrustDomains": [""]}}]}]}));
        let paths: Vec<&str> = found.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].from[0].source.notTrustDomains[0]",
                "spec.rules[0].from[0].source.trustDomains[2]",
                "spec.rules[0].from[0].source.trustDomains[3]"
            ]
        );
        assert!(found[1].2.contains(
            "wildcard is only allowed at the start or end, found in TrustDomains: \"a*b\""
        ));
        assert!(found[2].2.contains("trust domain must not contain '/'"));
        // Ports as numbers or strings, in range; the JSON text in the message.
        let found = errors_of(
            json!({"rules": [{"to": [{"operation": {"ports": ["80", 443, "x", 70000]}}]}]}),
        );
        let msgs: Vec<&str> = found.iter().map(|(_, _, m)| m.as_str()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("invalid port \"x\""), "{msgs:?}");
        assert!(msgs[1].contains("invalid port 70000"), "{msgs:?}");
        // The action enum, the provider, DENY without rules passes validation (a rule reports it).
        let found = errors_of(json!({"action": "DENIED", "provider": {"name": "x"}}));
        assert_eq!(found[0].0, Class::Enum);
        assert!(found[0]
            .2
            .contains("supported values: \"ALLOW\", \"DENY\", \"AUDIT\", \"CUSTOM\""));
        assert_eq!(found[1].0, Class::Conflict);
        assert!(errors_of(json!({"action": "CUSTOM", "rules": [{}]}))
            .iter()
            .any(|(_, p, _)| p == "spec.provider.name"));
        assert!(errors_of(json!({"action": "CUSTOM", "rules": null})).is_empty());
        // when: keys, values, IPs and ports.
        let found = errors_of(json!({"rules": [{"when": [
            {"key": "", "values": ["a"]},
            {"key": "source.ip", "values": ["10.0.0.0/33"]},
            {"key": "destination.port", "notValues": ["0"]},
            {"key": "source.namespace"}
        ]}]}));
        let paths: Vec<&str> = found.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].when[0].key",
                "spec.rules[0].when[1].values[0]",
                "spec.rules[0].when[2].notValues[0]",
                "spec.rules[0].when[3]"
            ]
        );
        assert!(
            errors_of(json!({"rules": [{}], "selector": {"matchLabels": {"a": "b"}}})).is_empty()
        );
    }

    #[test]
    fn principal_grammar() {
        assert!(principal::problem("cluster.local/ns/a/sa/b", "cluster.local").is_none());
        assert!(principal::problem("spiffe://cluster.local/ns/a/sa/b", "td").is_some());
        assert!(principal::problem("a/b", "td").is_some());
        assert_eq!(principal::trust_domain("td/ns/a/sa/b"), Some("td"));
        assert_eq!(principal::identity("td/ns/a/sa/b"), Some(("td", "a", "b")));
        assert_eq!(principal::identity("td/ns/a/sa/b/c"), None);
        assert_eq!(principal::identity("td/ns/a/sa/*"), None);
        assert_eq!(principal::trust_domain("*/ns/a/sa/b"), None);
    }
}
