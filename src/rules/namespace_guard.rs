//! The guard of the platform-owned namespace labels (`platform.labels`): the labels per-namespace
//! overrides and exceptions select namespaces by (`config::rollout`). A namespace admin who could
//! relabel their namespace could move it into a weaker action (or out of a stricter one) without
//! anyone noticing; so a Namespace UPDATE that adds, changes or removes one of those labels is a
//! finding. The admission front end drops it when the requester is the platform
//! (`platform.users`, `platform.groups`), the only place the requester is known. No override
//! applies to this rule (the policy refuses one at load), so the guard cannot be relabelled away
//! itself; and the action of the Namespace's other rules follows its labels as stored, not as
//! the update would make them.

use super::{Action, Ctx, Rule, Violation};
use crate::config::rollout::PLATFORM_LABEL_RULE;
use crate::json::quoted_key;
use crate::resource::{labels_of, Kind, Review};
use kube::core::admission::Operation;

pub(crate) static PLATFORM_LABEL_CHANGE: Rule = Rule {
    id: PLATFORM_LABEL_RULE,
    kinds: &[Kind::Namespace],
    default_action: Action::Deny,
    summary: "a Namespace UPDATE that adds, changes or removes a platform-owned label (platform.labels: what per-namespace overrides and exceptions select on) by anyone outside platform.users and platform.groups",
    example_fix: "leave the label as it is and ask the platform team to change it (or list your GitOps identity under platform.users)",
    needs: &[],
    check,
};

fn check(review: &Review<'_>, ctx: &Ctx<'_>, out: &mut Vec<Violation>) {
    let platform = &ctx.policy.platform;
    if platform.labels.is_empty() {
        return;
    }
    let (Operation::Update, Some(new), Some(old)) =
        (review.operation, review.object, review.old_object)
    else {
        return;
    };
    let (before, after) = (labels_of(old), labels_of(new));
    for key in &platform.labels {
        let (was, is) = (before.get(key), after.get(key));
        if was == is {
            continue;
        }
        let change = match (was, is) {
            (None, Some(v)) => format!("added with value {v:?}"),
            (Some(v), None) => format!("removed (it was {v:?})"),
            (Some(a), Some(b)) => format!("changed from {a:?} to {b:?}"),
            (None, None) => continue,
        };
        out.push(Violation::new(
            format!("metadata.labels{}", quoted_key(key)),
            format!(
                "{change}: {key} is platform-owned (the policy selects namespaces by it to decide where rules deny, warn or are excepted), so only the platform's identities may change it"
            ),
            format!("keep {key} as it was; the platform team changes it (platform.users, platform.groups)"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{obj, run_with};
    use serde_json::json;

    fn ns(labels: serde_json::Value) -> kube::core::DynamicObject {
        obj(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": labels}}))
    }

    fn update(old: serde_json::Value, new: serde_json::Value, policy: &str) -> Vec<Violation> {
        let policy = crate::catalogue::policy_from_yaml(policy, "t").expect("policy");
        let (old, new) = (ns(old), ns(new));
        let review = Review {
            old_object: Some(&old),
            operation: &Operation::Update,
            ..Review::create(Kind::Namespace, "v1", "shop", "shop", &new)
        };
        let mut out = Vec::new();
        let cache = crate::rules::ReviewCache::default();
        let mesh = crate::mesh::MeshContext::default();
        let ctx = Ctx {
            policy: &policy,
            mesh: &mesh,
            cluster: &crate::context::NoCluster,
            cache: &cache,
        };
        check(&review, &ctx, &mut out);
        out
    }

    const OWNED: &str = "platform: {labels: [env]}\n";

    #[test]
    fn fires_when_a_platform_label_changes_on_update() {
        let v = update(json!({"env": "prod"}), json!({"env": "dev"}), OWNED);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].path, "metadata.labels[\"env\"]");
        assert!(
            v[0].message.starts_with("changed from \"prod\" to \"dev\""),
            "{}",
            v[0].message
        );
        let removed = update(json!({"env": "prod"}), json!({}), OWNED);
        assert!(removed[0].message.starts_with("removed"));
        let added = update(json!({}), json!({"env": "prod"}), OWNED);
        assert!(added[0].message.starts_with("added"));
    }

    #[test]
    fn quiet_when_nothing_owned_changes() {
        // Other labels change freely; an unchanged platform label is fine.
        assert!(update(
            json!({"env": "prod", "team": "a"}),
            json!({"env": "prod", "team": "b"}),
            OWNED
        )
        .is_empty());
        // No platform labels configured: nothing is owned.
        assert!(update(json!({"env": "prod"}), json!({"env": "dev"}), "").is_empty());
        // A CREATE is not a change.
        let policy = crate::catalogue::policy_from_yaml(OWNED, "t").expect("policy");
        let created = ns(json!({"env": "dev"}));
        let v = run_with(
            &PLATFORM_LABEL_CHANGE,
            Operation::Create,
            "v1",
            "shop",
            &created,
            &policy,
        );
        assert!(v.is_empty());
    }
}
