//! The webhook's part of policy operations (`config::rollout`, `config::exceptions`):
//!
//! * PolicyException resources are judged by meshguard's own webhook: known rule ids, a
//!   namespace the policy accepts them in, the rules it lets them except, an expiry in the
//!   future and no further out than `policyExceptions.maxDuration`;
//! * the platform-label guard (`ns-platform-label-change`) stands aside for the platform's own
//!   identities, which only the admission request names;
//! * excepted findings are answered, not hidden: a kubectl warning and an audit-annotation entry
//!   each, naming the exception and its end.

use super::Outcome;
use crate::config::exceptions::{self, Excepted};
use crate::config::rollout::PLATFORM_LABEL_RULE;
use crate::config::Policy;
use crate::engine::{Engine, Evaluation};
use crate::resource::ReviewObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};

/// A request about a PolicyException (not a subresource).
pub(super) fn is_exception(req: &AdmissionRequest<ReviewObject>) -> bool {
    req.kind.group == exceptions::GROUP
        && req.kind.kind == exceptions::KIND
        && req.sub_resource.as_deref().is_none_or(str::is_empty)
}

/// Judge a PolicyException CREATE or UPDATE; anything else about one is allowed (deleting an
/// exception never weakens anything, and one being deleted only loses finalizers).
pub(super) fn review_exception(
    engine: &Engine,
    req: &AdmissionRequest<ReviewObject>,
    resp: AdmissionResponse,
) -> (AdmissionResponse, Outcome) {
    let Some(object) = req.object.as_ref().map(|o| &o.0) else {
        return (resp, Outcome::Allowed);
    };
    let judged = matches!(req.operation, Operation::Create | Operation::Update)
        && object.metadata.deletion_timestamp.is_none();
    if !judged {
        return (resp, Outcome::Allowed);
    }
    let errors = exceptions::validate_resource(
        engine.policy(),
        &crate::catalogue::Catalogue,
        object,
        engine.now(),
    );
    if errors.is_empty() {
        return (resp, Outcome::Allowed);
    }
    let name = object
        .metadata
        .name
        .as_deref()
        .or(object.metadata.generate_name.as_deref())
        .unwrap_or("");
    let ns = req.namespace.as_deref().unwrap_or("");
    let mut message = format!("meshguard: PolicyException {ns}/{name} refused:");
    for e in &errors {
        message.push_str("\n- ");
        message.push_str(e);
    }
    let mut resp = resp.deny(message);
    resp.result.code = 403;
    resp.result.reason = "Forbidden".into();
    resp.result.status = Some(kube::core::response::StatusSummary::Failure);
    (resp, Outcome::Denied)
}

/// The platform-label guard's findings do not count when the platform itself changes a label.
pub(super) fn pardon_platform(
    policy: &Policy,
    req: &AdmissionRequest<ReviewObject>,
    eval: &mut Evaluation,
) {
    if !eval.findings.iter().any(|f| f.rule == PLATFORM_LABEL_RULE) {
        return;
    }
    let groups = req.user_info.groups.as_deref().unwrap_or(&[]);
    if policy
        .platform
        .is_platform(req.user_info.username.as_deref(), groups)
    {
        eval.findings.retain(|f| f.rule != PLATFORM_LABEL_RULE);
    }
}

/// The audit-annotation entry of an excepted finding: `[rule] path (excepted by ID; deny)`.
pub(super) fn annotation_entry(e: &Excepted) -> String {
    format!(
        "[{}] {} (excepted by {}; {})",
        e.finding.rule,
        e.finding.violation.path,
        e.exception.id(),
        e.finding.action
    )
}

/// The warning of an excepted finding: the rule, where, and which exception, until when and why.
pub(super) fn warning(e: &Excepted) -> String {
    format!(
        "[{}] {}: excepted by {} ({}), {}",
        e.finding.rule,
        e.finding.violation.path,
        e.exception.id(),
        e.finding.action,
        e.exception.describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{decide, decode_review, AUDIT_ANNOTATION};
    use crate::config::exceptions::Exception;
    use crate::finding::{Action, Finding, Violation};

    #[test]
    fn excepted_findings_are_warned_and_annotated_never_denied() {
        let policy = crate::catalogue::policy_from_yaml(
            "exceptions:\n  - name: legacy\n    rules: [pa-permissive-mtls]\n    namespaces: [shop]\n    reason: plaintext clients\n    ticket: NET-7\n    expires: 2026-06-30\n",
            "t",
        )
        .expect("policy");
        let exception = std::sync::Arc::new(Exception::from_spec(0, &policy.exceptions[0]));
        let eval = Evaluation {
            findings: Vec::new(),
            exempt: false,
            excepted: vec![Excepted {
                finding: Finding {
                    rule: "pa-permissive-mtls",
                    action: Action::Deny,
                    violation: Violation::new("spec.mtls.mode", "what", "fix"),
                },
                exception,
            }],
        };
        let req: AdmissionRequest<ReviewObject> = decode_review(include_bytes!(
            "../../tests/fixtures/admission/peerauthentication-update-strict-to-permissive.json"
        ))
        .expect("decodes")
        .try_into()
        .expect("request");
        let (resp, outcome) = decide(AdmissionResponse::from(&req), &eval);
        assert_eq!(outcome, Outcome::Excepted);
        assert!(resp.allowed);
        assert_eq!(
            resp.warnings,
            Some(vec![
                "[pa-permissive-mtls] spec.mtls.mode: excepted by policy:legacy (deny), until 2026-06-30T00:00:00Z, ticket NET-7: plaintext clients".to_owned()
            ])
        );
        let entries: Vec<String> =
            serde_json::from_str(&resp.audit_annotations[AUDIT_ANNOTATION]).expect("list");
        assert_eq!(
            entries,
            ["[pa-permissive-mtls] spec.mtls.mode (excepted by policy:legacy; deny)"]
        );
    }

    #[test]
    fn the_label_guard_stands_aside_for_the_platform_only() {
        let policy =
            crate::catalogue::policy_from_yaml("platform: {labels: [env], users: [argo]}\n", "t")
                .expect("policy");
        let mut req: AdmissionRequest<ReviewObject> = decode_review(include_bytes!(
            "../../tests/fixtures/admission/namespace-update-labels.json"
        ))
        .expect("decodes")
        .try_into()
        .expect("request");
        let guard = || Evaluation {
            findings: vec![Finding {
                rule: PLATFORM_LABEL_RULE,
                action: Action::Deny,
                violation: Violation::new("metadata.labels[\"env\"]", "changed", "keep it"),
            }],
            ..Evaluation::default()
        };
        for (user, groups, pardoned) in [
            ("alice", vec!["dev"], false),
            ("argo", vec![], true),
            ("bob", vec!["system:masters"], true),
        ] {
            req.user_info.username = Some(user.to_owned());
            req.user_info.groups = Some(groups.into_iter().map(str::to_owned).collect());
            let mut eval = guard();
            pardon_platform(&policy, &req, &mut eval);
            assert_eq!(eval.findings.is_empty(), pardoned, "{user}");
        }
    }
}
