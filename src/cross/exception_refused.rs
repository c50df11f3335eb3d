//! `exception-refused`: a PolicyException resource meshguard does not apply: in a namespace the
//! policy does not accept them in (`policyExceptions.namespaces`), for a rule it may not except,
//! expiring further out than `policyExceptions.maxDuration` allows, or with a spec that does not
//! parse. meshguard's webhook refuses these at admission; one can still exist (created while the
//! webhook was down or the namespace excluded from it, or accepted under an earlier policy), and
//! it is reported rather than silently ignored.

use super::{CrossCheck, CrossContext};
use crate::config::exceptions::Status;
use crate::finding::{Action, Subject, Violation};

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "exception-refused",
    default_action: Action::Warn,
    summary: "a PolicyException the policy does not accept (namespace not listed under policyExceptions.namespaces, a rule it may not except, an expiry beyond policyExceptions.maxDuration, an invalid spec): it does not apply",
    example_fix: "delete it, or ask the platform team to accept PolicyExceptions in this namespace (policyExceptions.namespaces)",
    run,
};

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let (policy, now) = (cx.engine.policy(), cx.engine.now());
    for e in cx.engine.exceptions().items() {
        let Status::Refused(why) = e.status(policy, now) else {
            continue;
        };
        out.push((
            e.subject(None),
            Violation::new(
                "spec",
                format!("exception {} does not apply: {why}", e.id()),
                "delete it, or change it (or the policy's policyExceptions) so that it is accepted",
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::exceptions::{parse_expires, Exception, FixedClock};
    use crate::cross::{run_all, CrossContext};
    use crate::engine::Engine;
    use crate::inventory::Inventory;
    use std::sync::Arc;

    fn resource(ns: &str, expires: &str) -> Exception {
        Exception::from_resource(
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "meshguard.io/v1alpha1", "kind": "PolicyException",
                "metadata": {"name": "x", "namespace": ns},
                "spec": {"rules": ["wl-default-service-account"], "reason": "r", "ticket": "T-1", "expires": expires},
            }))
            .expect("object"),
        )
    }

    fn run(resources: Vec<Exception>) -> Vec<String> {
        let policy = crate::catalogue::policy_from_yaml(
            "policyExceptions:\n  namespaces: [payments]\n  maxDuration: 30d\n",
            "t",
        )
        .expect("policy");
        let engine = Engine::new(policy, Default::default(), None)
            .with_exception_resources(resources)
            .with_clock(Arc::new(FixedClock(parse_expires("2026-05-01").expect("t"))));
        let inventory = Inventory::complete(Vec::new());
        run_all(&CrossContext::new(&engine, &inventory))
            .into_iter()
            .filter(|f| f.finding.rule == "exception-refused")
            .map(|f| format!("{}: {}", f.subject.label(), f.finding.violation.message))
            .collect()
    }

    #[test]
    fn refused_resources_are_reported() {
        let found = run(vec![resource("shop", "2026-05-10"), resource("payments", "2027-01-01")]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("PolicyException shop/x: exception shop/x does not apply: namespace shop"), "{}", found[0]);
        assert!(found[1].contains("further out than the policy allows"), "{}", found[1]);
    }

    #[test]
    fn accepted_resources_are_not() {
        assert!(run(vec![resource("payments", "2026-05-10")]).is_empty());
    }
}
