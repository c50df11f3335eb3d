//! AuthorizationPolicy (`security.istio.io` v1, v1beta1): action, scope, and rules → sources,
//! operations and conditions, each with its field path.
//!
//! Semantics (Istio's AuthorizationPolicy reference and `pilot/pkg/security/authz/model`):
//! CUSTOM, then DENY, then ALLOW decide. `spec: {}` (ALLOW with no rules) is allow-nothing for
//! its scope; `rules: [{}]` is allow-all (an empty rule matches every request). A rule matches
//! when one `from`, one `to` and every `when` match; a field left unset matches anything. A
//! selector-less policy in the root namespace applies mesh-wide; `targetRef(s)` attach it to
//! gateways, waypoints or Services instead of sidecars.

use super::WorkloadSelector;
use crate::json::{is_set, items, list_strings};
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
    pub fn as_str(self) -> &'static str {
        match self {
            AuthzAction::Allow => "ALLOW",
            AuthzAction::Deny => "DENY",
            AuthzAction::Audit => "AUDIT",
            AuthzAction::Custom => "CUSTOM",
        }
    }
}

/// Fields of `from[].source`.
pub const SOURCE_FIELDS: &[&str] = &[
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "serviceAccounts",
    "notServiceAccounts",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
];

/// Fields of `to[].operation`.
pub const OPERATION_FIELDS: &[&str] = &[
    "hosts",
    "notHosts",
    "ports",
    "notPorts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
];

/// Condition keys that name the peer's mesh identity (empty for plaintext callers).
pub const PEER_IDENTITY_KEYS: &[&str] = &[
    "source.principal",
    "source.namespace",
    "source.serviceAccount",
    "source.trustDomain",
];

/// The view of one AuthorizationPolicy spec.
#[derive(Clone, Copy, Debug)]
pub struct AuthorizationPolicy<'a> {
    pub spec: &'a Value,
    pub selector: WorkloadSelector<'a>,
}

impl<'a> AuthorizationPolicy<'a> {
    pub fn of(spec: &'a Value) -> AuthorizationPolicy<'a> {
        AuthorizationPolicy {
            spec,
            selector: WorkloadSelector::of(spec),
        }
    }

    /// `spec.action` as written; `ALLOW` when absent (or not a string).
    pub fn action_str(&self) -> &'a str {
        self.spec
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("ALLOW")
    }

    /// The action, `None` for a value Istio rejects.
    pub fn action(&self) -> Option<AuthzAction> {
        match self.action_str() {
            "ALLOW" => Some(AuthzAction::Allow),
            "DENY" => Some(AuthzAction::Deny),
            "AUDIT" => Some(AuthzAction::Audit),
            "CUSTOM" => Some(AuthzAction::Custom),
            _ => None,
        }
    }

    pub fn is_allow(&self) -> bool {
        self.action() == Some(AuthzAction::Allow)
    }

    /// `spec.provider` (CUSTOM policies name their external authorizer there).
    pub fn provider(&self) -> Option<&'a Value> {
        self.spec.get("provider").filter(|p| !p.is_null())
    }

    /// `spec.provider.name`.
    pub fn provider_name(&self) -> Option<&'a str> {
        self.provider()
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
    }

    /// `targetRef` or `targetRefs` is set: the policy attaches to gateways, waypoints or
    /// Services, not to sidecars.
    pub fn has_target_refs(&self) -> bool {
        is_set(self.spec.get("targetRef")) || is_set(self.spec.get("targetRefs"))
    }

    /// The policy applies to something narrower than its namespace (selector or target refs).
    pub fn is_targeted(&self) -> bool {
        !self.selector.is_empty() || self.has_target_refs()
    }

    /// `spec.rules` as written.
    pub fn rules_value(&self) -> Option<&'a Value> {
        self.spec.get("rules")
    }

    /// `spec.rules` holds at least one entry.
    pub fn has_rules(&self) -> bool {
        is_set(self.rules_value())
    }

    /// Every entry of `spec.rules`, objects or not, with its index.
    pub fn rules(&self) -> impl Iterator<Item = AuthzRule<'a>> + 'a {
        items(self.spec, "rules")
            .iter()
            .enumerate()
            .map(|(index, value)| AuthzRule { index, value })
    }

    /// Every `from[].source` of every rule.
    pub fn sources(&self) -> impl Iterator<Item = Source<'a>> + 'a {
        self.rules().flat_map(|r| r.sources())
    }

    /// Every `to[].operation` of every rule.
    pub fn operations(&self) -> impl Iterator<Item = Operation<'a>> + 'a {
        self.rules().flat_map(|r| r.operations())
    }

    /// Every `when[]` condition of every rule that has a string `key`.
    pub fn conditions(&self) -> impl Iterator<Item = Condition<'a>> + 'a {
        self.rules()
            .flat_map(|r| r.conditions())
            .filter(|c| c.key().is_some())
    }

    /// The policy requires a request principal (a JWT): an ALLOW rule on `requestPrincipals`
    /// (or a `request.auth.principal` condition), or a DENY rule on `notRequestPrincipals`.
    /// Pass `dry_run` from the object's annotations: a dry-run policy enforces nothing.
    pub fn requires_jwt(&self, dry_run: bool) -> bool {
        if dry_run {
            return false;
        }
        let (field, condition) = match self.action_str() {
            "ALLOW" => ("requestPrincipals", true),
            "DENY" => ("notRequestPrincipals", false),
            _ => return false,
        };
        let non_empty =
            |v: Option<&Value>| v.and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        self.rules().any(|r| {
            r.sources().any(|s| non_empty(s.value.get(field)))
                || (condition
                    && r.conditions().any(|c| {
                        c.key() == Some("request.auth.principal") && non_empty(c.list("values"))
                    }))
        })
    }

    /// Allow-nothing for its scope: ALLOW with no rules, no selector and no target refs. With
    /// no other ALLOW policy, every request to the namespace's (or, in the root namespace, the
    /// mesh's) workloads is denied. A policy in dry-run (`istio.io/dry-run`) is not enforced,
    /// so it never counts: pass `dry_run` from the object's annotations.
    pub fn is_allow_nothing(&self, dry_run: bool) -> bool {
        self.is_allow() && !self.has_rules() && !self.is_targeted() && !dry_run
    }
}

/// One `rules[i]` entry.
#[derive(Clone, Copy, Debug)]
pub struct AuthzRule<'a> {
    pub index: usize,
    pub value: &'a Value,
}

impl<'a> AuthzRule<'a> {
    /// `spec.rules[i]`.
    pub fn path(&self) -> String {
        format!("spec.rules[{}]", self.index)
    }

    pub fn is_object(&self) -> bool {
        self.value.is_object()
    }

    /// No `from`, `to` or `when`: the rule matches every request.
    pub fn is_empty(&self) -> bool {
        self.is_object()
            && ["from", "to", "when"]
                .iter()
                .all(|k| !is_set(self.value.get(*k)))
    }

    /// The rule's `from` (or `to`, `when`) holds at least one entry.
    pub fn has(&self, field: &str) -> bool {
        is_set(self.value.get(field))
    }

    /// Every `from[j]` entry that has a `source`.
    pub fn sources(&self) -> impl Iterator<Item = Source<'a>> + 'a {
        let rule = self.index;
        items(self.value, "from")
            .iter()
            .enumerate()
            .filter_map(move |(index, entry)| {
                entry
                    .get("source")
                    .map(|value| Source { rule, index, value })
            })
    }

    /// Every `to[j]` entry that has an `operation`.
    pub fn operations(&self) -> impl Iterator<Item = Operation<'a>> + 'a {
        let rule = self.index;
        items(self.value, "to")
            .iter()
            .enumerate()
            .filter_map(move |(index, entry)| {
                entry
                    .get("operation")
                    .map(|value| Operation { rule, index, value })
            })
    }

    /// Every `when[l]` entry.
    pub fn conditions(&self) -> impl Iterator<Item = Condition<'a>> + 'a {
        let rule = self.index;
        items(self.value, "when")
            .iter()
            .enumerate()
            .map(move |(index, value)| Condition { rule, index, value })
    }

    /// Every `from[j]` (or `to[j]`) entry as written, with its index (for validation).
    pub fn entries(&self, field: &str) -> impl Iterator<Item = (usize, &'a Value)> + 'a {
        items(self.value, field).iter().enumerate()
    }
}

/// One match list of a source or operation (`principals`, `paths`, ...).
#[derive(Clone, Copy, Debug)]
pub struct MatchList<'a> {
    /// `spec.rules[i].from[j].source` (or `.to[j].operation`).
    base: Base,
    pub field: &'static str,
    pub value: Option<&'a Value>,
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

impl<'a> MatchList<'a> {
    /// Present, not null, not empty.
    pub fn is_set(&self) -> bool {
        is_set(self.value)
    }
    /// The string entries with their indexes.
    pub fn strings(&self) -> impl Iterator<Item = (usize, &'a str)> + 'a {
        self.value.into_iter().flat_map(list_strings)
    }
    /// `spec.rules[i].from[j].source.principals`.
    pub fn path(&self) -> String {
        format!("{}.{}", self.base, self.field)
    }
    /// `spec.rules[i].from[j].source.principals[k]`.
    pub fn item_path(&self, k: usize) -> String {
        format!("{}.{}[{k}]", self.base, self.field)
    }
}

/// One `from[j].source`.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pub rule: usize,
    pub index: usize,
    pub value: &'a Value,
}

impl<'a> Source<'a> {
    /// `spec.rules[i].from[j].source`.
    pub fn path(&self) -> String {
        Base::Source(self.rule, self.index).to_string()
    }
    /// One of [`SOURCE_FIELDS`].
    pub fn field(&self, field: &'static str) -> MatchList<'a> {
        MatchList {
            base: Base::Source(self.rule, self.index),
            field,
            value: self.value.get(field),
        }
    }
    /// The fields present, in one pass over the object (unknown keys skipped).
    pub fn fields(&self) -> impl Iterator<Item = MatchList<'a>> + 'a {
        let base = Base::Source(self.rule, self.index);
        self.value
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(move |(k, v)| {
                let field = SOURCE_FIELDS.iter().find(|f| **f == k)?;
                Some(MatchList {
                    base,
                    field,
                    value: Some(v),
                })
            })
    }
}

/// One `to[j].operation`.
#[derive(Clone, Copy, Debug)]
pub struct Operation<'a> {
    pub rule: usize,
    pub index: usize,
    pub value: &'a Value,
}

impl<'a> Operation<'a> {
    /// `spec.rules[i].to[j].operation`.
    pub fn path(&self) -> String {
        Base::Operation(self.rule, self.index).to_string()
    }
    /// One of [`OPERATION_FIELDS`].
    pub fn field(&self, field: &'static str) -> MatchList<'a> {
        MatchList {
            base: Base::Operation(self.rule, self.index),
            field,
            value: self.value.get(field),
        }
    }
    /// The fields present, in one pass over the object (unknown keys skipped).
    pub fn fields(&self) -> impl Iterator<Item = MatchList<'a>> + 'a {
        let base = Base::Operation(self.rule, self.index);
        self.value
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(move |(k, v)| {
                let field = OPERATION_FIELDS.iter().find(|f| **f == k)?;
                Some(MatchList {
                    base,
                    field,
                    value: Some(v),
                })
            })
    }
}

/// One `when[l]` condition.
#[derive(Clone, Copy, Debug)]
pub struct Condition<'a> {
    pub rule: usize,
    pub index: usize,
    pub value: &'a Value,
}

impl<'a> Condition<'a> {
    /// `key`, when it is a string.
    pub fn key(&self) -> Option<&'a str> {
        self.value.get("key").and_then(Value::as_str)
    }
    /// `spec.rules[i].when[l]`.
    pub fn path(&self) -> String {
        format!("spec.rules[{}].when[{}]", self.rule, self.index)
    }
    /// `values` (or `notValues`) as written.
    pub fn list(&self, field: &'static str) -> Option<&'a Value> {
        self.value.get(field)
    }
    /// `values` (or `notValues`) holds at least one entry.
    pub fn has(&self, field: &'static str) -> bool {
        is_set(self.list(field))
    }
    /// The string entries of `values` (or `notValues`) with their indexes.
    pub fn strings(&self, field: &'static str) -> impl Iterator<Item = (usize, &'a str)> + 'a {
        self.list(field).into_iter().flat_map(list_strings)
    }
    /// The key names the caller's peer identity (`source.principal`, ...).
    pub fn is_peer_identity(&self) -> bool {
        self.key().is_some_and(|k| PEER_IDENTITY_KEYS.contains(&k))
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
        let rules: Vec<AuthzRule<'_>> = ap.rules().collect();
        assert_eq!(rules.len(), 3);
        assert!(!rules[0].is_empty() && rules[1].is_empty() && !rules[2].is_empty());
        let src: Vec<Source<'_>> = ap.sources().collect();
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
        let conds: Vec<Condition<'_>> = ap.conditions().collect();
        assert_eq!(conds.len(), 1, "conditions without a key are skipped");
        assert!(conds[0].is_peer_identity());
        assert_eq!(conds[0].path(), "spec.rules[0].when[0]");
        assert_eq!(ap.rules().next().map(|r| r.conditions().count()), Some(2));
    }

    #[test]
    fn allow_nothing_is_one_definition() {
        let yes = |spec: serde_json::Value, dry: bool| {
            AuthorizationPolicy::of(&spec).is_allow_nothing(dry)
        };
        assert!(yes(json!({}), false));
        assert!(yes(json!(null), false));
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
}
