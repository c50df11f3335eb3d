//! What a policy change does to enforcement: a reload that weakens it (a milder mode, a rule's
//! action lowered or off, a new exemption, lookups failing open, existing violations let through,
//! a mutation off) is logged at warn with what changed and shows in `meshguard_policy_info`.

use crate::config::{EnforcementMode, OnLookupFailure, Policy};
use crate::finding::Action;
use crate::metrics::Metrics;
use std::collections::BTreeSet;

fn mode_strength(m: EnforcementMode) -> u8 {
    match m {
        EnforcementMode::Enforce => 2,
        EnforcementMode::Warn => 1,
        EnforcementMode::Audit => 0,
    }
}

fn action_strength(a: Action) -> u8 {
    match a {
        Action::Deny => 3,
        Action::Warn => 2,
        Action::Audit => 1,
        Action::Off => 0,
    }
}

/// One way `new` enforces less than `old`: its class (the metric's label) and what changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weakening {
    pub class: &'static str,
    pub what: String,
}

/// Every way `new` enforces less than `old`.
pub(crate) fn weakenings(old: &Policy, new: &Policy) -> Vec<Weakening> {
    let mut out = Vec::new();
    let mut push = |class: &'static str, what: String| out.push(Weakening { class, what });
    if mode_strength(new.mode) < mode_strength(old.mode) {
        push("mode", format!("mode {:?} → {:?}", old.mode, new.mode));
    }
    let checks = crate::rules::REGISTRY
        .iter()
        .map(|r| (r.id, r.default_action))
        .chain(
            crate::cross::REGISTRY
                .iter()
                .map(|c| (c.id, c.default_action)),
        );
    for (id, default) in checks {
        let (before, after) = (old.action_for(id, default), new.action_for(id, default));
        if action_strength(after) < action_strength(before) {
            push(
                "action",
                format!("{id}: {} → {}", before.as_str(), after.as_str()),
            );
        }
        let old_ex = old
            .rules
            .get(id)
            .map(|c| c.exemptions.as_slice())
            .unwrap_or(&[]);
        let new_ex = new
            .rules
            .get(id)
            .map(|c| c.exemptions.as_slice())
            .unwrap_or(&[]);
        let added = new_ex.iter().filter(|e| !old_ex.contains(e)).count();
        if added > 0 {
            push("exemption", format!("{id}: {added} new exemption(s)"));
        }
    }
    let old_ns: BTreeSet<&String> = old.exempt_namespaces.iter().collect();
    let added: Vec<&str> = new
        .exempt_namespaces
        .iter()
        .filter(|n| !old_ns.contains(n))
        .map(String::as_str)
        .collect();
    if !added.is_empty() {
        push(
            "exemption",
            format!("exemptNamespaces + {}", added.join(", ")),
        );
    }
    if old.on_lookup_failure == OnLookupFailure::Deny
        && new.on_lookup_failure == OnLookupFailure::Allow
    {
        push("lookup", "onLookupFailure deny → allow".to_owned());
    }
    if !old.allow_existing_violations && new.allow_existing_violations {
        push(
            "existing-violations",
            "allowExistingViolations false → true".to_owned(),
        );
    }
    for m in crate::mutation::REGISTRY {
        if old.mutation_enabled(m.id) && !new.mutation_enabled(m.id) {
            push("mutation", format!("mutation {} off", m.id));
        }
    }
    out
}

/// A stable short digest of the policy file's bytes (FNV-1a, 64 bits): which policy a replica
/// runs, comparable across replicas and restarts.
pub(crate) fn digest(text: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The policy now in force (`previous`: the one it replaces, on a reload): `meshguard_policy_info`
/// gets one series for it, and a weakening is logged at warn.
pub(crate) fn publish(metrics: &Metrics, previous: Option<&Policy>, policy: &Policy, text: &[u8]) {
    let weak = previous.map(|p| weakenings(p, policy)).unwrap_or_default();
    let classes: BTreeSet<&str> = weak.iter().map(|w| w.class).collect();
    let label = if classes.is_empty() {
        "none".to_owned()
    } else {
        classes.into_iter().collect::<Vec<_>>().join(",")
    };
    if !weak.is_empty() {
        let what: Vec<String> = weak.iter().map(|w| w.what.clone()).collect();
        tracing::warn!(weakened = %label, changes = %what.join("; "), "the reloaded policy enforces less than the one it replaces");
    }
    let mode = match policy.mode {
        EnforcementMode::Enforce => "enforce",
        EnforcementMode::Warn => "warn",
        EnforcementMode::Audit => "audit",
    };
    metrics.policy_info.reset();
    metrics
        .policy_info
        .with_label_values(&[mode, &digest(text), &label])
        .set(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Policy {
        crate::catalogue::policy_from_yaml(yaml, "test").expect("policy")
    }

    fn classes(old: &str, new: &str) -> Vec<&'static str> {
        let set: BTreeSet<&'static str> = weakenings(&policy(old), &policy(new))
            .iter()
            .map(|w| w.class)
            .collect();
        set.into_iter().collect()
    }

    #[test]
    fn what_weakens_and_what_does_not() {
        assert_eq!(classes("", ""), Vec::<&str>::new());
        assert_eq!(classes("", "mode: warn\n"), ["action", "mode"]);
        assert_eq!(
            classes("mode: audit\n", "mode: enforce\n"),
            Vec::<&str>::new()
        );
        assert_eq!(
            classes("", "rules:\n  pa-permissive-mtls:\n    action: off\n"),
            ["action"]
        );
        assert_eq!(
            classes("", "rules:\n  ap-wildcard-source:\n    action: deny\n"),
            Vec::<&str>::new()
        );
        assert_eq!(
            classes(
                "",
                "rules:\n  pa-permissive-mtls:\n    exemptions:\n      - namespaces: [legacy]\n"
            ),
            ["exemption"]
        );
        assert_eq!(
            classes("", "exemptNamespaces: [kube-system, legacy]\n"),
            ["exemption"]
        );
        assert_eq!(
            classes("exemptNamespaces: [a, b]\n", "exemptNamespaces: [a]\n"),
            Vec::<&str>::new()
        );
        assert_eq!(classes("", "onLookupFailure: allow\n"), ["lookup"]);
        assert_eq!(
            classes("allowExistingViolations: false\n", ""),
            ["existing-violations"]
        );
        assert_eq!(
            classes(
                "",
                "mutations:\n  peer-authentication-strict-default: {enabled: false}\n"
            ),
            ["mutation"]
        );
        // A mode that caps every deny rule is one "mode" change plus each action lowered.
        let w = weakenings(&policy(""), &policy("mode: audit\n"));
        assert!(w.iter().any(|w| w.class == "mode"));
        assert!(w
            .iter()
            .any(|w| w.what == "pa-permissive-mtls: deny → audit"));
    }

    #[test]
    fn the_metric_says_what_the_last_reload_weakened() {
        let m = Metrics::new().expect("metrics");
        publish(&m, None, &policy(""), b"");
        assert!(m.render().contains("meshguard_policy_info{digest=\"cbf29ce484222325\",mode=\"enforce\",weakened=\"none\"} 1"), "{}", m.render());
        publish(
            &m,
            Some(&policy("")),
            &policy("mode: warn\nonLookupFailure: allow\n"),
            b"mode: warn",
        );
        let text = m.render();
        assert!(
            text.contains("mode=\"warn\",weakened=\"action,lookup,mode\"} 1"),
            "{text}"
        );
        assert_eq!(
            text.matches("meshguard_policy_info{").count(),
            1,
            "one series: {text}"
        );
        assert_eq!(digest(b"a"), digest(b"a"));
        assert_ne!(digest(b"a"), digest(b"b"));
    }
}
