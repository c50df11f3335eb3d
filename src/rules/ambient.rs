//! Policies written for sidecars that ambient mode enforces differently: the webhook raises them
//! when a policy is written into a namespace whose pods ztunnel captures (from its namespace
//! cache: [`crate::dataplane::namespace_plane`] of the namespace's labels in the mesh as
//! installed).
//!
//! In ambient mode the destination's ztunnel enforces the selector, namespace-wide and root
//! AuthorizationPolicies, converted by istiod to L4 (istio/istio
//! `pilot/pkg/serviceregistry/ambient/authorization.go`, `convertAuthorizationPolicy`; the
//! conversion is [`crate::authz::ztunnel`]); waypoints enforce only `targetRef(s)` policies
//! (`pilot/pkg/model/policyattachment.go`, `ShouldAttachPolicy`). So:
//!
//! * `ap-ztunnel-http`: HTTP attributes in such a policy — an ALLOW rule with any is dropped
//!   (narrower; a policy left without rules allows nothing), a DENY rule loses them (an entry left
//!   empty never matches: most HTTP-only DENYs are no-ops, some become wider);
//! * `ap-ztunnel-action`: CUSTOM and AUDIT are not sent to ztunnel at all (the external authorizer
//!   is never called);
//! * `ra-ambient-selector`: a RequestAuthentication without `targetRefs` is applied by nobody
//!   (ztunnel has no JWT support; waypoints read only `targetRefs`).
//!
//! Root-namespace policies apply to sidecar and ambient workloads alike and are judged by the
//! cross-resource checks, which see the workloads; policies with `targetRefs` and dry-run
//! policies are not sent to ztunnel and are not judged here.

use super::{Action, Ctx, Rule, Violation};
use crate::authz::ztunnel::{convert_policy, L7Field, NotSent, RuleFate};
use crate::context::{Lookup, Need};
use crate::dataplane::{namespace_plane, Plane};
use crate::model::labels::is_dry_run;
use crate::model::{decode_spec, RequestAuthentication};
use crate::resource::{Kind, Review};

/// The namespace of a policy under review is ambient: a plain pod created there is captured by
/// ztunnel in the mesh as installed (the root namespace aside). Reads the namespace's labels.
pub(crate) fn ambient_namespace(review: &Review<'_>, ctx: &Ctx<'_>) -> bool {
    if review.namespace.is_empty() || review.namespace == ctx.mesh.root_namespace().value {
        return false;
    }
    match ctx.cluster.namespace_labels(review.namespace) {
        Lookup::Found(labels) => {
            namespace_plane(ctx.mesh, review.namespace, &labels) == Plane::Ambient
        }
        _ => false,
    }
}

fn names(f: &[L7Field]) -> String {
    let mut n: Vec<&str> = f.iter().map(|x| x.name.as_str()).collect();
    n.sort_unstable();
    n.dedup();
    n.join(", ")
}

/// Admission warnings travel in a `Warning` header of at most 256 characters
/// (`crate::admission`): message and fix are kept short enough for the fix to arrive.
const TARGET_REFS_FIX: &str =
    "move HTTP rules to a targetRefs policy (Service or waypoint), keep L4 ones";

pub(crate) static ZTUNNEL_HTTP: Rule = Rule {
    id: "ap-ztunnel-http",
    kinds: &[Kind::AuthorizationPolicy],
    default_action: Action::Warn,
    summary: "HTTP attributes (methods, paths, hosts, requestPrincipals, remoteIpBlocks, request.* conditions) in a policy ztunnel enforces (no targetRefs, ambient namespace): an ALLOW rule is dropped, a DENY rule becomes a no-op or wider",
    example_fix: "targetRefs: [{kind: Service, group: \"\", name: reviews}] for the HTTP rules (enforced by the waypoint)",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(obj) = review.written() else { return };
        if is_dry_run(obj) || !ambient_namespace(review, ctx) {
            return;
        }
        let ns = review.namespace;
        let ap = ctx.cache.authorization_policy(review);
        let Ok(converted) = convert_policy(
            &ap,
            ns,
            false,
            &ctx.mesh.root_namespace().value,
        ) else {
            return; // targetRefs, CUSTOM or AUDIT: not ztunnel's (ap-ztunnel-action)
        };
        let all_dropped = !converted.fates.is_empty()
            && converted
                .fates
                .iter()
                .all(|(_, f)| matches!(f, RuleFate::Dropped(_)));
        for (rule, fate) in &converted.fates {
            let path = format!("spec.rules[{rule}]");
            let (what, l7) = match fate {
                RuleFate::Dropped(l7) if all_dropped => (
                    "this ALLOW rule is dropped; none left, every connection is denied",
                    l7,
                ),
                RuleFate::Dropped(l7) => (
                    "this ALLOW rule is dropped: it admits nothing",
                    l7,
                ),
                RuleFate::NoOp(l7) => (
                    "this DENY rule, enforced without them, never matches: it denies nothing",
                    l7,
                ),
                RuleFate::Wider(l7) => (
                    "this DENY rule, enforced without them, denies all its L4 part matches",
                    l7,
                ),
                RuleFate::Kept | RuleFate::Inert(_) => continue,
            };
            out.push(Violation::new(
                path,
                format!(
                    "ambient namespace: ztunnel cannot match ({}): {what}",
                    names(l7)
                ),
                TARGET_REFS_FIX,
            ));
        }
    },
};

pub(crate) static ZTUNNEL_ACTION: Rule = Rule {
    id: "ap-ztunnel-action",
    kinds: &[Kind::AuthorizationPolicy],
    default_action: Action::Warn,
    summary: "a CUSTOM or AUDIT policy without targetRefs in an ambient namespace: ztunnel does not support the action and istiod never sends it, so the external authorizer is never called",
    example_fix: "targetRefs: [{kind: Service, group: \"\", name: reviews}] (enforced by the waypoint)",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(obj) = review.written() else { return };
        if is_dry_run(obj) || !ambient_namespace(review, ctx) {
            return;
        }
        let ns = review.namespace;
        let ap = ctx.cache.authorization_policy(review);
        let Err(NotSent::Action(action)) = convert_policy(
            &ap,
            ns,
            false,
            &ctx.mesh.root_namespace().value,
        ) else {
            return;
        };
        let effect = match action.as_str() {
            "CUSTOM" => format!(
                "the external authorizer{} is never called",
                ap.provider_name()
                    .map(|p| format!(" {p:?}"))
                    .unwrap_or_default()
            ),
            "AUDIT" => "nothing is audited".to_owned(),
            _ => return, // an action Istio rejects: istio-invalid-enum
        };
        out.push(Violation::new(
            "spec.action",
            format!(
                "ambient namespace: ztunnel does not support {action}, waypoints skip selector policies: {effect}"
            ),
            "attach it with targetRefs (Service or waypoint), not a selector",
        ));
    },
};

pub(crate) static RA_AMBIENT_SELECTOR: Rule = Rule {
    id: "ra-ambient-selector",
    kinds: &[Kind::RequestAuthentication],
    default_action: Action::Warn,
    summary: "a RequestAuthentication without targetRefs in an ambient namespace: ztunnel has no JWT support and waypoints read only targetRefs, so nothing validates tokens",
    example_fix: "targetRefs: [{kind: Service, group: \"\", name: reviews}] (enforced by the waypoint)",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        if review.written().is_none() || !ambient_namespace(review, ctx) {
            return;
        }
        let ra: RequestAuthentication<'_> = decode_spec(review.spec()).unwrap_or_default();
        if ra.has_target_refs() {
            return;
        }
        let path = if ra.selects_all() {
            "spec"
        } else {
            "spec.selector"
        };
        out.push(Violation::new(
            path,
            "ambient namespace: neither ztunnel (no JWT support) nor a waypoint (targetRefs only) applies it, so no token is validated",
            "use targetRefs (Service or waypoint); require tokens with a policy attached likewise",
        ));
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::inventory::Inventory;
    use crate::mesh::MeshContext;
    use crate::rules::testing::{obj, run_in};
    use kube::core::admission::Operation;
    use serde_json::{json, Value};

    fn ambient() -> Inventory {
        Inventory::complete(Vec::new())
            .with_namespace("shop", &[("istio.io/dataplane-mode", "ambient")])
    }

    fn sidecar() -> Inventory {
        Inventory::complete(Vec::new()).with_namespace("shop", &[("istio-injection", "enabled")])
    }

    fn run(rule: &Rule, kind: &str, spec: Value, cluster: &Inventory) -> Vec<Violation> {
        let o = obj(json!({"apiVersion": "security.istio.io/v1", "kind": kind,
            "metadata": {"name": "p", "namespace": "shop"}, "spec": spec}));
        run_in(
            rule,
            Operation::Create,
            "v1",
            "shop",
            &o,
            &Policy::default(),
            &MeshContext::default(),
            cluster,
        )
    }

    #[test]
    fn http_attributes_in_ztunnel_policies() {
        let allow = json!({"selector": {"matchLabels": {"app": "ratings"}}, "rules": [
            {"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/reviews"]}}],
             "to": [{"operation": {"methods": ["GET"]}}]}]});
        let found = run(
            &ZTUNNEL_HTTP,
            "AuthorizationPolicy",
            allow.clone(),
            &ambient(),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.rules[0]");
        assert!(
            found[0].message.contains("(methods)"),
            "{}",
            found[0].message
        );
        assert!(
            found[0]
                .message
                .contains("none left, every connection is denied"),
            "{}",
            found[0].message
        );
        assert!(found[0].fix.contains("targetRefs"));
        // DENY: no-op and wider, each said.
        let deny = json!({"action": "DENY", "rules": [
            {"to": [{"operation": {"methods": ["DELETE"]}}]},
            {"from": [{"source": {"namespaces": ["dev"], "requestPrincipals": ["*"]}}]},
            {"from": [{"source": {"namespaces": ["dev"]}}]}]});
        let found = run(
            &ZTUNNEL_HTTP,
            "AuthorizationPolicy",
            deny.clone(),
            &ambient(),
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].message.contains("denies nothing"));
        assert!(
            found[1].message.contains("requestPrincipals")
                && found[1].message.contains("denies all its L4 part matches")
        );
        // Quiet: the same policies in a sidecar namespace, with targetRefs, in dry-run, or L4 only.
        assert!(run(
            &ZTUNNEL_HTTP,
            "AuthorizationPolicy",
            allow.clone(),
            &sidecar()
        )
        .is_empty());
        assert!(run(&ZTUNNEL_HTTP, "AuthorizationPolicy", deny, &sidecar()).is_empty());
        let targeted = json!({"targetRefs": [{"kind": "Service", "group": "", "name": "ratings"}],
            "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]});
        assert!(run(&ZTUNNEL_HTTP, "AuthorizationPolicy", targeted, &ambient()).is_empty());
        let l4 = json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/reviews"]}}], "to": [{"operation": {"ports": ["9080"]}}]}]});
        assert!(run(&ZTUNNEL_HTTP, "AuthorizationPolicy", l4, &ambient()).is_empty());
        // Unknown namespace labels: nothing said.
        let unknown = Inventory::partial(Vec::new());
        assert!(run(&ZTUNNEL_HTTP, "AuthorizationPolicy", allow, &unknown).is_empty());
    }

    #[test]
    fn custom_and_audit_in_ambient_namespaces() {
        let custom = json!({"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{}]});
        let found = run(
            &ZTUNNEL_ACTION,
            "AuthorizationPolicy",
            custom.clone(),
            &ambient(),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.action");
        assert!(found[0]
            .message
            .contains("external authorizer \"opa\" is never called"));
        let audit = json!({"action": "AUDIT", "rules": [{}]});
        assert_eq!(
            run(&ZTUNNEL_ACTION, "AuthorizationPolicy", audit, &ambient()).len(),
            1
        );
        assert!(run(&ZTUNNEL_ACTION, "AuthorizationPolicy", custom, &sidecar()).is_empty());
        let targeted = json!({"action": "CUSTOM", "provider": {"name": "opa"},
            "targetRefs": [{"kind": "Service", "group": "", "name": "x"}], "rules": [{}]});
        assert!(run(&ZTUNNEL_ACTION, "AuthorizationPolicy", targeted, &ambient()).is_empty());
        let allow = json!({"rules": [{}]});
        assert!(run(&ZTUNNEL_ACTION, "AuthorizationPolicy", allow, &ambient()).is_empty());
    }

    #[test]
    fn existing_rules_speak_ambient() {
        use crate::rules::authorization_policy::HTTP_ONLY_DENY_WITHOUT_PORTS;
        use crate::rules::peer_authentication::DISABLED_MTLS;
        // ap-http-deny-without-ports: "denies all TCP" is a sidecar's reading; at ztunnel the
        // rule is a no-op, which ap-ztunnel-http reports.
        let deny =
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]});
        assert_eq!(
            run(
                &HTTP_ONLY_DENY_WITHOUT_PORTS,
                "AuthorizationPolicy",
                deny.clone(),
                &sidecar()
            )
            .len(),
            1
        );
        assert!(run(
            &HTTP_ONLY_DENY_WITHOUT_PORTS,
            "AuthorizationPolicy",
            deny.clone(),
            &ambient()
        )
        .is_empty());
        assert!(
            run(&ZTUNNEL_HTTP, "AuthorizationPolicy", deny, &ambient())[0]
                .message
                .contains("denies nothing")
        );
        // With targetRefs a waypoint enforces it as a sidecar would: still reported.
        let targeted = json!({"action": "DENY", "targetRefs": [{"kind": "Service", "group": "", "name": "x"}],
            "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]});
        assert_eq!(
            run(
                &HTTP_ONLY_DENY_WITHOUT_PORTS,
                "AuthorizationPolicy",
                targeted,
                &ambient()
            )
            .len(),
            1
        );
        // pa-disabled-mtls: DISABLE is PERMISSIVE at ztunnel.
        let disable = json!({"mtls": {"mode": "DISABLE"}});
        let amb = run(
            &DISABLED_MTLS,
            "PeerAuthentication",
            disable.clone(),
            &ambient(),
        );
        assert!(
            amb[0]
                .message
                .contains("ztunnel treats DISABLE as PERMISSIVE"),
            "{}",
            amb[0].message
        );
        let side = run(&DISABLED_MTLS, "PeerAuthentication", disable, &sidecar());
        assert!(
            side[0].message.starts_with("DISABLE turns off mutual TLS"),
            "{}",
            side[0].message
        );
    }

    #[test]
    fn selector_request_authentication_in_ambient_namespaces() {
        let ra = json!({"selector": {"matchLabels": {"app": "orders"}},
            "jwtRules": [{"issuer": "https://auth.example.com"}]});
        let found = run(
            &RA_AMBIENT_SELECTOR,
            "RequestAuthentication",
            ra.clone(),
            &ambient(),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.selector");
        assert!(found[0].message.contains("no token is validated"));
        assert!(run(
            &RA_AMBIENT_SELECTOR,
            "RequestAuthentication",
            ra,
            &sidecar()
        )
        .is_empty());
        let targeted = json!({"targetRefs": [{"kind": "Service", "group": "", "name": "orders"}],
            "jwtRules": [{"issuer": "https://auth.example.com"}]});
        assert!(run(
            &RA_AMBIENT_SELECTOR,
            "RequestAuthentication",
            targeted,
            &ambient()
        )
        .is_empty());
    }

    /// The warning header carries 256 characters: message and fix arrive whole.
    #[test]
    fn warnings_fit_the_header() {
        let cases = [
            (
                &ZTUNNEL_HTTP,
                "AuthorizationPolicy",
                json!({"selector": {"matchLabels": {"app": "ratings"}},
                "rules": [{"to": [{"operation": {"methods": ["GET"], "paths": ["/x"], "hosts": ["a"]}}]}]}),
            ),
            (
                &ZTUNNEL_HTTP,
                "AuthorizationPolicy",
                json!({"action": "DENY", "rules": [
                {"from": [{"source": {"namespaces": ["dev"], "requestPrincipals": ["*"]}}]},
                {"to": [{"operation": {"methods": ["DELETE"]}}]}]}),
            ),
            (
                &ZTUNNEL_ACTION,
                "AuthorizationPolicy",
                json!({"action": "CUSTOM",
                "provider": {"name": "ext-authz-opa"}, "rules": [{}]}),
            ),
            (
                &RA_AMBIENT_SELECTOR,
                "RequestAuthentication",
                json!({"selector": {"matchLabels": {"app": "orders"}},
                "jwtRules": [{"issuer": "https://auth.example.com"}]}),
            ),
        ];
        for (rule, kind, spec) in cases {
            let found = run(rule, kind, spec, &ambient());
            assert!(!found.is_empty(), "{}", rule.id);
            for v in found {
                let line = format!("[{}] {}: {}. Fix: {}", rule.id, v.path, v.message, v.fix);
                assert!(line.len() <= 256, "{} characters: {line}", line.len());
            }
        }
    }
}
