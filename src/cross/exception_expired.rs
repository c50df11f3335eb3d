//! `exception-expired`: an exception (the policy file's `exceptions` entry or a PolicyException
//! resource) past its `expires`. It no longer applies: the findings it covered are enforced
//! again (and say so); this reports the exception itself, so that someone renews it with a new
//! reason or deletes it.

use super::{CrossCheck, CrossContext};
use crate::config::exceptions::Status;
use crate::finding::{Action, Subject, Violation};

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "exception-expired",
    default_action: Action::Warn,
    summary: "an exception (policy exceptions entry or PolicyException) past its expires: it no longer applies, so the findings it covered are enforced again",
    example_fix: "delete the exception, or renew it with a new expires and reason if the exception is still needed",
    run,
};

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let (policy, now) = (cx.engine.policy(), cx.engine.now());
    for e in cx.engine.exceptions().items() {
        if e.status(policy, now) != Status::Expired {
            continue;
        }
        let expires = e.expires.map_or_else(String::new, |t| t.to_string());
        out.push((
            e.subject(None),
            Violation::new(
                e.expires_path(),
                format!(
                    "exception {} for {} expired {expires} and no longer applies ({})",
                    e.id(),
                    e.rules.join(", "),
                    e.describe()
                ),
                "delete it, or renew it with a new expires and reason",
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

    fn run(policy: &str, at: &str, resources: Vec<Exception>) -> Vec<(String, String, String)> {
        let policy = crate::catalogue::policy_from_yaml(policy, "t").expect("policy");
        let engine = Engine::new(policy, Default::default(), None)
            .with_exception_resources(resources)
            .with_clock(Arc::new(FixedClock(parse_expires(at).expect("time"))));
        let inventory = Inventory::complete(Vec::new());
        run_all(&CrossContext::new(&engine, &inventory))
            .into_iter()
            .filter(|f| f.finding.rule.starts_with("exception-"))
            .map(|f| (f.finding.rule.to_owned(), f.subject.label(), f.finding.violation.message))
            .collect()
    }

    const POLICY: &str = "exceptions:\n  - name: legacy\n    rules: [pa-permissive-mtls]\n    namespaces: [legacy]\n    reason: plaintext clients\n    owner: team-net\n    expires: 2026-06-30\n";

    #[test]
    fn an_expired_exception_is_reported() {
        let found = run(POLICY, "2026-07-01", Vec::new());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "exception-expired");
        assert_eq!(found[0].1, "PolicyException policy:legacy");
        assert!(found[0].2.contains("expired 2026-06-30T00:00:00Z"), "{}", found[0].2);
    }

    #[test]
    fn an_active_exception_is_not() {
        assert!(run(POLICY, "2026-06-29", Vec::new()).is_empty());
        assert!(run("", "2030-01-01", Vec::new()).is_empty());
    }
}
