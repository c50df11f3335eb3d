//! Per-namespace actions: `overrides` (top level and under `rules.<id>`) and the platform-owned
//! namespace labels they (and exceptions) may select on.
//!
//! Where a rule denies, warns, only audits or does not run, for an object in namespace N, is
//! decided by the first of these that applies (most specific first):
//!
//! 1. `rules.<id>.overrides` (and top-level `overrides` that list the rule under `rules:`) whose
//!    `namespaces` name N;
//! 2. the same kind of override whose `namespaceSelector` matches N's labels;
//! 3. `rules.<id>.action`;
//! 4. top-level `overrides` for every rule (no `rules:`) whose `namespaces` name N;
//! 5. the same whose `namespaceSelector` matches N's labels;
//! 6. the global `mode` capping the rule's default action.
//!
//! Within one step the first entry in file order wins (`rules.<id>.overrides` before the
//! top-level list). An override sets an `action`, or a `mode` that caps the rule's default as the
//! global mode does. Exemptions (`exemptNamespaces`, `rules.<id>.exemptions`) come before all of
//! this: an exempt object is not judged at all. When N's labels cannot be read, a selector
//! override that might match counts as matching if it is stricter: unknown state never weakens
//! an action.
//!
//! The guard against silent downgrades: a selector may only read labels the policy names as
//! platform-owned (`platform.labels`, plus the API server's own `kubernetes.io/metadata.name`);
//! anything else is refused at load. The rule `ns-platform-label-change` refuses a Namespace
//! UPDATE that adds, changes or removes one of those labels unless the requester is one of
//! `platform.users` / `platform.groups` (the admission front end knows the requester), and no
//! override applies to that rule, so the guard cannot be relabelled away either.

use super::{Action, EnforcementMode, LabelSelector, Policy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The rule that guards the platform-owned namespace labels. Overrides never change its action.
pub(crate) const PLATFORM_LABEL_RULE: &str = "ns-platform-label-change";

/// A label the API server sets on every Namespace and nobody can change: always platform-owned.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// `platform:`: who owns the labels that decide where rules act.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Platform {
    /// Namespace label keys only the platform sets. Override and exception
    /// `namespaceSelector`s may select on these (and `kubernetes.io/metadata.name`) only.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Users that may change those labels (`system:serviceaccount:<ns>:<name>` for a GitOps
    /// controller).
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups whose members may change them.
    #[serde(default = "default_platform_groups")]
    pub groups: Vec<String>,
}

fn default_platform_groups() -> Vec<String> {
    vec!["system:masters".to_owned()]
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            labels: Vec::new(),
            users: Vec::new(),
            groups: default_platform_groups(),
        }
    }
}

impl Platform {
    /// Whether a label key is platform-owned.
    pub fn owns(&self, key: &str) -> bool {
        key == NAMESPACE_NAME_LABEL || self.labels.iter().any(|l| l == key)
    }

    /// Whether a requester is the platform.
    pub(crate) fn is_platform(&self, user: Option<&str>, groups: &[String]) -> bool {
        user.is_some_and(|u| self.users.iter().any(|p| p == u))
            || groups.iter().any(|g| self.groups.contains(g))
    }
}

/// One per-namespace override: where (a namespace list or a namespace selector), which rules
/// (top level only; none: every rule), and an `action` or a `mode`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Override {
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub(crate) namespace_selector: Option<LabelSelector>,
    /// Top-level overrides only: the rules it applies to (empty: every rule).
    #[serde(default)]
    pub rules: Vec<String>,
    /// The action the rules take there.
    #[serde(default)]
    pub action: Option<Action>,
    /// Or a mode that caps the rules' default actions there.
    #[serde(default)]
    pub mode: Option<EnforcementMode>,
}

impl Override {
    /// The action this override gives a rule with `default`.
    pub fn action(&self, default: Action) -> Action {
        match (self.action, self.mode) {
            (Some(a), _) => a,
            (None, Some(m)) => m.cap(default),
            (None, None) => default,
        }
    }

    /// Where it applies, for people: `namespaces a, b` or `namespaceSelector env=prod`.
    pub fn scope(&self) -> String {
        if self.namespaces.is_empty() {
            format!(
                "namespaceSelector {}",
                self.namespace_selector
                    .as_ref()
                    .map(describe_selector)
                    .unwrap_or_default()
            )
        } else {
            format!("namespaces {}", self.namespaces.join(", "))
        }
    }

    /// What it does, for people: `deny` or `mode warn`.
    pub fn effect(&self) -> String {
        match (self.action, self.mode) {
            (Some(a), _) => a.as_str().to_owned(),
            (None, Some(m)) => format!("mode {}", mode_name(m)),
            (None, None) => "default".to_owned(),
        }
    }
}

fn mode_name(m: EnforcementMode) -> &'static str {
    match m {
        EnforcementMode::Enforce => "enforce",
        EnforcementMode::Warn => "warn",
        EnforcementMode::Audit => "audit",
    }
}

/// `env=prod, tier in (a, b), !legacy` (for messages and tables).
pub(crate) fn describe_selector(s: &LabelSelector) -> String {
    use super::SelectorOperator::*;
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in &s.match_expressions {
        parts.push(match e.operator {
            In => format!("{} in ({})", e.key, e.values.join(", ")),
            NotIn => format!("{} notin ({})", e.key, e.values.join(", ")),
            Exists => e.key.clone(),
            DoesNotExist => format!("!{}", e.key),
        });
    }
    if parts.is_empty() {
        "(everything)".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The label keys a selector reads.
pub(crate) fn selector_keys(s: &LabelSelector) -> impl Iterator<Item = &str> {
    s.match_labels
        .keys()
        .map(String::as_str)
        .chain(s.match_expressions.iter().map(|e| e.key.as_str()))
}

/// Strictness, for "unknown labels never weaken": deny > warn > audit > off.
fn severity(a: Action) -> u8 {
    match a {
        Action::Deny => 3,
        Action::Warn => 2,
        Action::Audit => 1,
        Action::Off => 0,
    }
}

fn stricter(a: Action, b: Action) -> Action {
    if severity(a) >= severity(b) {
        a
    } else {
        b
    }
}

/// Whether an override matches a namespace: `Some(true/false)`, or `None` when it selects by
/// labels and the labels are unknown.
fn matches(o: &Override, ns: &str, labels: Option<&BTreeMap<String, String>>) -> Option<bool> {
    if !o.namespaces.is_empty() {
        return Some(o.namespaces.iter().any(|n| n == ns));
    }
    let sel = o.namespace_selector.as_ref()?;
    labels.map(|l| sel.matches(l))
}

/// Where an action came from (for `meshguard rules` and the posture page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ActionSource {
    /// An override (its scope and effect).
    Override(String),
    /// `rules.<id>.action`.
    RuleAction,
    /// The global mode over the default.
    Mode,
}

impl Policy {
    /// Whether any override exists (the engine then resolves actions per namespace).
    pub fn has_overrides(&self) -> bool {
        !self.overrides.is_empty() || self.rules.values().any(|r| !r.overrides.is_empty())
    }

    /// Whether the action of rule `id` may depend on its namespace's labels.
    pub(crate) fn action_reads_namespace_labels(&self, id: &str) -> bool {
        id != PLATFORM_LABEL_RULE
            && self
                .overrides_of(id)
                .any(|(_, o)| o.namespace_selector.is_some())
    }

    /// The overrides that concern rule `id`, each with whether it names the rule: the rule's
    /// own first, then the top-level ones listing it, then the top-level ones for every rule.
    fn overrides_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = (bool, &'a Override)> {
        let own = self
            .rules
            .get(id)
            .into_iter()
            .flat_map(|r| r.overrides.iter())
            .map(|o| (true, o));
        let listed = self
            .overrides
            .iter()
            .filter(move |o| o.rules.iter().any(|r| r == id))
            .map(|o| (true, o));
        let all = self
            .overrides
            .iter()
            .filter(|o| o.rules.is_empty())
            .map(|o| (false, o));
        own.chain(listed).chain(all)
    }

    /// The action of rule `id` (default action `default`) for an object in namespace `ns`
    /// whose labels are `labels` (`None`: unknown). See the module documentation for the
    /// precedence. A pure function of the policy: the engine, `meshguard rules`, the posture
    /// page and generators of other enforcement points all resolve actions with it.
    pub fn action_in(
        &self,
        id: &str,
        default: Action,
        ns: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Action {
        self.resolve_in(id, default, ns, labels).0
    }

    /// [`Policy::action_in`] with where the action came from.
    pub(crate) fn resolve_in(
        &self,
        id: &str,
        default: Action,
        ns: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> (Action, ActionSource) {
        let fallback_rule = self.rules.get(id).and_then(|r| r.action);
        if id == PLATFORM_LABEL_RULE || !self.has_overrides() {
            return match fallback_rule {
                Some(a) => (a, ActionSource::RuleAction),
                None => (self.mode.cap(default), ActionSource::Mode),
            };
        }
        // Unknown labels: the strictest action a selector override that might match gives.
        let mut unknown: Option<Action> = None;
        let steps: [(bool, bool); 2] = [(true, true), (true, false)];
        for (named_rule, by_name) in steps {
            if let Some(found) =
                self.step(id, default, ns, labels, named_rule, by_name, &mut unknown)
            {
                return found;
            }
        }
        if let Some(a) = fallback_rule {
            return (stricter_opt(unknown, a), ActionSource::RuleAction);
        }
        for by_name in [true, false] {
            if let Some(found) = self.step(id, default, ns, labels, false, by_name, &mut unknown) {
                return found;
            }
        }
        (
            stricter_opt(unknown, self.mode.cap(default)),
            ActionSource::Mode,
        )
    }

    /// One precedence step: the first override of this kind that matches.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        id: &str,
        default: Action,
        ns: &str,
        labels: Option<&BTreeMap<String, String>>,
        named_rule: bool,
        by_name: bool,
        unknown: &mut Option<Action>,
    ) -> Option<(Action, ActionSource)> {
        for (names_rule, o) in self.overrides_of(id) {
            if names_rule != named_rule || o.namespaces.is_empty() == by_name {
                continue;
            }
            match matches(o, ns, labels) {
                Some(true) => {
                    let a = stricter_opt(*unknown, o.action(default));
                    return Some((
                        a,
                        ActionSource::Override(format!("{}: {}", o.scope(), o.effect())),
                    ));
                }
                Some(false) => {}
                None => *unknown = Some(stricter_opt(*unknown, o.action(default))),
            }
        }
        None
    }

    /// Whether rule `id` acts anywhere under this policy (its table entry is kept even when its
    /// action is `off` by default but some override turns it on).
    pub(crate) fn may_act(&self, id: &str, default: Action) -> bool {
        self.action_for(id, default) != Action::Off
            || (id != PLATFORM_LABEL_RULE
                && self
                    .overrides_of(id)
                    .any(|(_, o)| o.action(default) != Action::Off))
    }

    /// The overrides that concern rule `id` in the order [`Policy::action_in`] tries them (with
    /// known labels the first that matches decides, else [`Policy::action_for`]): the rule's
    /// own and those listing it, by name then by selector, then — unless `rules.<id>.action`
    /// is set, which stands before them — those for every rule, by name then by selector.
    /// Empty for the platform-label guard and when the policy has no overrides. Generators of
    /// other enforcement points (`meshguard generate admission-policies`) state actions with it.
    pub(crate) fn overrides_in_order<'a>(&'a self, id: &'a str) -> Vec<&'a Override> {
        if id == PLATFORM_LABEL_RULE {
            return Vec::new();
        }
        let mut ranked: Vec<(u8, &Override)> = self
            .overrides_of(id)
            .map(|(named, o)| {
                let rank = match (named, !o.namespaces.is_empty()) {
                    (true, true) => 0,
                    (true, false) => 1,
                    (false, true) => 3,
                    (false, false) => 4,
                };
                (rank, o)
            })
            .collect();
        ranked.sort_by_key(|(r, _)| *r);
        let rule_action = self.rules.get(id).and_then(|r| r.action);
        ranked
            .into_iter()
            // Behind rules.<id>.action, the overrides for every rule never apply.
            .filter(|(rank, _)| *rank < 3 || rule_action.is_none())
            .map(|(_, o)| o)
            .collect()
    }

    /// Where rule `id` acts, for people: the overrides that concern it in precedence order,
    /// each as (scope, action), then the action everywhere else.
    pub(crate) fn acts_where(&self, id: &str, default: Action) -> Vec<(String, Action)> {
        let mut out: Vec<(String, Action)> = self
            .overrides_in_order(id)
            .into_iter()
            .map(|o| (o.scope(), o.action(default)))
            .collect();
        out.push(("elsewhere".to_owned(), self.action_for(id, default)));
        out
    }
}

fn stricter_opt(a: Option<Action>, b: Action) -> Action {
    a.map_or(b, |a| stricter(a, b))
}

/// Load-time checks of the overrides and the platform settings (called by `Policy::validate`).
pub(super) fn validate(policy: &Policy, known: &dyn super::KnownIds) -> Result<(), String> {
    let check = |o: &Override, at: &str, top: bool| -> Result<(), String> {
        match (o.namespaces.is_empty(), &o.namespace_selector) {
            (true, None) => {
                return Err(format!(
                    "{at}: give namespaces or namespaceSelector (where the override applies)"
                ))
            }
            (false, Some(_)) => {
                return Err(format!(
                    "{at}: give namespaces or namespaceSelector, not both (use two overrides)"
                ))
            }
            _ => {}
        }
        if let Some(sel) = &o.namespace_selector {
            platform_only(&policy.platform, sel, &format!("{at}.namespaceSelector"))?;
        }
        match (o.action, o.mode) {
            (None, None) => return Err(format!("{at}: give an action or a mode")),
            (Some(_), Some(_)) => return Err(format!("{at}: give an action or a mode, not both")),
            (None, Some(_)) if !top => {
                return Err(format!(
                    "{at}: a rule's override sets an action (deny, warn, audit, off), not a mode"
                ))
            }
            _ => {}
        }
        if !top && !o.rules.is_empty() {
            return Err(format!(
                "{at}.rules: a rule's own override applies to that rule; list rules only in top-level overrides"
            ));
        }
        for (i, r) in o.rules.iter().enumerate() {
            if !known.is_check(r) {
                return Err(format!("{at}.rules[{i}]: unknown rule id {r}"));
            }
            if r == PLATFORM_LABEL_RULE {
                return Err(format!(
                    "{at}.rules[{i}]: {PLATFORM_LABEL_RULE} guards the labels overrides select on; its action is set under rules.{PLATFORM_LABEL_RULE}.action only"
                ));
            }
        }
        Ok(())
    };
    for (i, o) in policy.overrides.iter().enumerate() {
        check(o, &format!("overrides[{i}]"), true)?;
    }
    for (id, rc) in &policy.rules {
        if id == PLATFORM_LABEL_RULE && !rc.overrides.is_empty() {
            return Err(format!(
                "rules.{id}.overrides: {PLATFORM_LABEL_RULE} guards the labels overrides select on, so no override applies to it"
            ));
        }
        for (i, o) in rc.overrides.iter().enumerate() {
            check(o, &format!("rules.{id}.overrides[{i}]"), false)?;
        }
    }
    for (i, l) in policy.platform.labels.iter().enumerate() {
        if l.is_empty() || l.len() > 317 || l.contains(char::is_whitespace) {
            return Err(format!("platform.labels[{i}]: not a label key: {l:?}"));
        }
    }
    Ok(())
}

/// Refuse a namespace selector that reads a label the platform does not own.
pub(super) fn platform_only(
    platform: &Platform,
    sel: &LabelSelector,
    at: &str,
) -> Result<(), String> {
    for key in selector_keys(sel) {
        if !platform.owns(key) {
            return Err(format!(
                "{at}: label {key} is not platform-owned: a namespace's own admins could set or remove it to change how rules act there. List it under platform.labels (meshguard then refuses changes to it by anyone outside platform.users/groups), or select namespaces by name"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KnownIds;

    struct Ids;
    impl KnownIds for Ids {
        fn is_check(&self, id: &str) -> bool {
            matches!(
                id,
                "pa-permissive-mtls"
                    | "wl-host-network"
                    | PLATFORM_LABEL_RULE
                    | "ap-remote-ip-untrusted"
            )
        }
        fn is_mutation(&self, _: &str) -> bool {
            false
        }
    }

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(yaml, "p.yaml", &Ids).unwrap_or_else(|e| panic!("{e}"))
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const PA: &str = "pa-permissive-mtls";

    #[test]
    fn warn_elsewhere_deny_where_the_label_says_prod() {
        let p = policy(
            "platform: {labels: [env]}\nrules:\n  pa-permissive-mtls:\n    action: warn\n    overrides:\n      - namespaceSelector: {matchLabels: {env: prod}}\n        action: deny\n",
        );
        let prod = labels(&[("env", "prod")]);
        let dev = labels(&[("env", "dev")]);
        assert_eq!(
            p.action_in(PA, Action::Deny, "a", Some(&prod)),
            Action::Deny
        );
        assert_eq!(p.action_in(PA, Action::Deny, "b", Some(&dev)), Action::Warn);
        // Unknown labels never weaken: the override might match, and it is stricter.
        assert_eq!(p.action_in(PA, Action::Deny, "c", None), Action::Deny);
        // Other rules are untouched.
        assert_eq!(
            p.action_in("wl-host-network", Action::Warn, "a", Some(&prod)),
            Action::Warn
        );
        assert_eq!(
            p.acts_where(PA, Action::Deny),
            vec![
                ("namespaceSelector env=prod".to_owned(), Action::Deny),
                ("elsewhere".to_owned(), Action::Warn)
            ]
        );
    }

    #[test]
    fn precedence_most_specific_first() {
        let p = policy(
            "mode: warn\nplatform: {labels: [env]}\noverrides:\n  - namespaceSelector: {matchLabels: {env: prod}}\n    mode: enforce\n  - namespaces: [legacy]\n    mode: audit\n  - namespaces: [payments]\n    rules: [pa-permissive-mtls]\n    action: off\nrules:\n  pa-permissive-mtls:\n    overrides:\n      - namespaceSelector: {matchLabels: {env: prod}}\n        action: audit\n      - namespaces: [payments, legacy]\n        action: deny\n  wl-host-network:\n    action: audit\n",
        );
        let prod = labels(&[("env", "prod")]);
        // 1. the rule's own override naming the namespace beats the top-level one listing it
        //    (same step, file order: rules.<id>.overrides first).
        assert_eq!(
            p.action_in(PA, Action::Deny, "payments", Some(&prod)),
            Action::Deny
        );
        // 1 beats 4: legacy's mode audit is for every rule; the rule names legacy.
        assert_eq!(p.action_in(PA, Action::Deny, "legacy", None), Action::Deny);
        // 2. the rule's selector override.
        assert_eq!(
            p.action_in(PA, Action::Deny, "shop", Some(&prod)),
            Action::Audit
        );
        // 6. the global mode elsewhere.
        assert_eq!(
            p.action_in(PA, Action::Deny, "dev", Some(&labels(&[]))),
            Action::Warn
        );
        // 3 beats 4 and 5: rules.<id>.action wins over the overrides for every rule.
        assert_eq!(
            p.action_in("wl-host-network", Action::Warn, "prod-ns", Some(&prod)),
            Action::Audit
        );
        // 4 and 5 for a rule nothing else names.
        let ip = "ap-remote-ip-untrusted";
        assert_eq!(p.action_in(ip, Action::Deny, "legacy", None), Action::Audit);
        assert_eq!(
            p.action_in(ip, Action::Deny, "x", Some(&prod)),
            Action::Deny
        );
        assert_eq!(
            p.action_in(ip, Action::Deny, "x", Some(&labels(&[]))),
            Action::Warn
        );
        let (_, source) = p.resolve_in(ip, Action::Deny, "x", Some(&prod));
        assert_eq!(
            source,
            ActionSource::Override("namespaceSelector env=prod: mode enforce".into())
        );
    }

    /// The first override of `overrides_in_order` that matches, else `action_for`: what
    /// generators of other enforcement points state.
    fn first_match(
        p: &Policy,
        id: &str,
        default: Action,
        ns: &str,
        l: &BTreeMap<String, String>,
    ) -> Action {
        p.overrides_in_order(id)
            .into_iter()
            .find(|o| matches(o, ns, Some(l)) == Some(true))
            .map_or_else(|| p.action_for(id, default), |o| o.action(default))
    }

    #[test]
    fn overrides_in_order_decide_as_action_in_does_with_known_labels() {
        let p = policy(
            "mode: warn\nplatform: {labels: [env, tier]}\noverrides:\n  - namespaceSelector: {matchLabels: {env: prod}}\n    mode: enforce\n  - namespaces: [legacy]\n    mode: audit\n  - namespaces: [payments]\n    rules: [pa-permissive-mtls]\n    action: off\n  - namespaceSelector: {matchExpressions: [{key: tier, operator: In, values: [a]}]}\n    rules: [pa-permissive-mtls, wl-host-network]\n    action: warn\nrules:\n  pa-permissive-mtls:\n    overrides:\n      - namespaceSelector: {matchLabels: {env: prod}}\n        action: audit\n      - namespaces: [payments, legacy]\n        action: deny\n  wl-host-network:\n    action: audit\n",
        );
        let label_sets = [
            labels(&[]),
            labels(&[("env", "prod")]),
            labels(&[("tier", "a")]),
            labels(&[("env", "prod"), ("tier", "a")]),
            labels(&[("env", "dev"), ("tier", "b")]),
        ];
        let mut checked = 0;
        for id in [
            PA,
            "wl-host-network",
            "ap-remote-ip-untrusted",
            PLATFORM_LABEL_RULE,
        ] {
            for default in [Action::Deny, Action::Warn, Action::Audit, Action::Off] {
                for ns in ["payments", "legacy", "shop"] {
                    for l in &label_sets {
                        assert_eq!(
                            first_match(&p, id, default, ns, l),
                            p.action_in(id, default, ns, Some(l)),
                            "{id} ({default:?}) in {ns} {l:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 4 * 4 * 3 * 5);
        assert_eq!(p.overrides_in_order(PA).len(), 6);
        // Behind rules.<id>.action only the overrides naming the rule count.
        assert_eq!(p.overrides_in_order("wl-host-network").len(), 1);
        assert!(p.overrides_in_order(PLATFORM_LABEL_RULE).is_empty());
    }

    #[test]
    fn an_override_can_turn_an_off_rule_on_somewhere() {
        let p = policy(
            "rules:\n  wl-host-network:\n    action: off\n    overrides:\n      - namespaces: [prod]\n        action: deny\n",
        );
        assert!(p.may_act("wl-host-network", Action::Warn));
        assert_eq!(
            p.action_in("wl-host-network", Action::Warn, "prod", None),
            Action::Deny
        );
        assert_eq!(
            p.action_in("wl-host-network", Action::Warn, "dev", None),
            Action::Off
        );
        let off = policy("rules:\n  wl-host-network:\n    action: off\n");
        assert!(!off.may_act("wl-host-network", Action::Warn));
    }

    #[test]
    fn selectors_read_platform_labels_only_and_the_guard_has_no_overrides() {
        let err = |yaml: &str| {
            Policy::from_yaml(yaml, "p.yaml", &Ids)
                .expect_err(yaml)
                .to_string()
        };
        let e = err(
            "overrides:\n  - namespaceSelector: {matchLabels: {env: prod}}\n    action: deny\n",
        );
        assert!(
            e.contains("overrides[0].namespaceSelector: label env is not platform-owned"),
            "{e}"
        );
        let e = err("platform: {labels: [env]}\nrules:\n  pa-permissive-mtls:\n    overrides:\n      - namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}\n        action: deny\n");
        assert!(e.contains("label team is not platform-owned"), "{e}");
        // The name label is the API server's: always allowed.
        policy("overrides:\n  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: a}}\n    action: warn\n");
        let e = err("rules:\n  ns-platform-label-change:\n    overrides:\n      - namespaces: [a]\n        action: off\n");
        assert!(e.contains("no override applies to it"), "{e}");
        let e = err("overrides:\n  - namespaces: [a]\n    rules: [ns-platform-label-change]\n    action: off\n");
        assert!(e.contains("guards the labels"), "{e}");
        for bad in [
            "overrides:\n  - action: deny\n",
            "overrides:\n  - namespaces: [a]\n",
            "overrides:\n  - namespaces: [a]\n    action: deny\n    mode: warn\n",
            "overrides:\n  - namespaces: [a]\n    rules: [nope]\n    action: deny\n",
            "rules:\n  pa-permissive-mtls:\n    overrides:\n      - namespaces: [a]\n        mode: warn\n",
            "platform: {labels: [env]}\noverrides:\n  - namespaces: [a]\n    namespaceSelector: {matchLabels: {env: a}}\n    action: deny\n",
        ] {
            err(bad);
        }
        // Without overrides the guard's own action follows rules.<id>.action and the mode.
        let p = policy("mode: warn\n");
        assert_eq!(
            p.action_in(PLATFORM_LABEL_RULE, Action::Deny, "a", None),
            Action::Warn
        );
    }

    #[test]
    fn platform_identities() {
        let p =
            policy("platform: {labels: [env], users: [\"system:serviceaccount:argocd:argocd\"]}\n");
        assert!(p
            .platform
            .is_platform(Some("system:serviceaccount:argocd:argocd"), &[]));
        assert!(p
            .platform
            .is_platform(Some("alice"), &["system:masters".into()]));
        assert!(!p.platform.is_platform(Some("alice"), &["dev".into()]));
        assert!(p.platform.owns("env") && p.platform.owns(NAMESPACE_NAME_LABEL));
        assert!(!p.platform.owns("team"));
    }
}
