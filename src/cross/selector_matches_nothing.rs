//! `selector-matches-nothing`: a PeerAuthentication, AuthorizationPolicy or
//! RequestAuthentication whose workload selector matches no workload, so it has no effect.
//! A root-namespace selector of an AuthorizationPolicy or RequestAuthentication looks in every
//! namespace; a root-namespace PeerAuthentication selector is ignored by Istio
//! (`pa-root-namespace-selector` reports that). On a partial inventory only namespaces whose
//! workloads the input shows are judged.
//!
//! A namespace-wide policy (no selector, outside the root namespace) in a namespace without any
//! workload applies to nothing either; that is judged only on a complete inventory (`audit`,
//! `check --complete`), as Istio's `analyzeNoMatchingWorkloads` does for AuthorizationPolicies
//! (istio/istio `pkg/config/analysis/analyzers/authz/authorizationpolicies.go`, IST0127).

use super::{CrossCheck, CrossContext};
use crate::finding::{Action, Subject, Violation};
use crate::model::Selector;
use crate::resource::Kind;

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "selector-matches-nothing",
    default_action: Action::Warn,
    summary: "a PeerAuthentication, AuthorizationPolicy or RequestAuthentication whose selector matches no workload, or a namespace-wide one in a namespace without workloads (complete input)",
    example_fix: "set spec.selector.matchLabels to the pod labels of the workload the policy is for",
    run,
};

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let inv = cx.inventory;
    let policies = [
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::RequestAuthentication,
    ]
    .into_iter()
    .flat_map(|k| inv.of_kind(k));
    for o in policies {
        let spec = o.spec();
        let sel = Selector::of_spec(&spec);
        let ns = o.namespace();
        if sel.is_empty() {
            let targeted = o.kind != Kind::PeerAuthentication
                && crate::model::AuthorizationPolicy::of(&spec).is_targeted();
            if inv.is_complete() && ns != cx.root && !targeted && inv.workloads_in(ns).is_empty() {
                out.push((
                    o.subject(),
                    Violation::new(
                        "metadata.namespace",
                        format!(
                            "this namespace-wide {} applies to the workloads of namespace \"{ns}\", and there are none, so it has no effect",
                            o.kind
                        ),
                        "deploy the workloads it is for, or delete it (a baseline kept for workloads still to come can be exempted from selector-matches-nothing for this namespace)",
                    ),
                ));
            }
            continue;
        }
        let global = o.kind != Kind::PeerAuthentication;
        if !global && ns == cx.root {
            continue; // ignored by Istio; pa-root-namespace-selector reports it
        }
        let in_scope = if global && ns == cx.root {
            !inv.workloads().is_empty()
        } else {
            !inv.workloads_in(ns).is_empty()
        };
        if !inv.is_complete() && !in_scope {
            continue; // the manifests do not show this namespace's workloads
        }
        if !cx.scope(ns, &sel, global).is_empty() {
            continue;
        }
        let where_ = if global && ns == cx.root {
            "any namespace".to_owned()
        } else {
            format!("namespace \"{ns}\"")
        };
        out.push((
            o.subject(),
            Violation::new(
                "spec.selector.matchLabels",
                format!(
                    "selector {} matches no workload in {where_}, so this {} has no effect",
                    sel.describe(),
                    o.kind
                ),
                "set spec.selector.matchLabels to the pod labels of the workload it should apply to",
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cross::testing::*;
    use serde_json::json;

    fn selecting(kind: &str, ns: &str, app: &str) -> serde_json::Value {
        istio(
            kind,
            ns,
            "p",
            json!({"selector": {"matchLabels": {"app": app}}}),
        )
    }

    #[test]
    fn fires_when_nothing_matches() {
        let found = findings(
            &CHECK,
            false,
            vec![
                deployment("prod", "web", json!({"app": "web"}), &[]),
                selecting("AuthorizationPolicy", "prod", "wbe"),
                selecting("RequestAuthentication", "istio-system", "nope"),
            ],
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0]
            .2
            .contains("selector app=wbe matches no workload in namespace \"prod\""));
        assert!(found[1].2.contains("in any namespace"));
        // A complete inventory is conclusive even where no workload lives.
        let found = findings(
            &CHECK,
            true,
            vec![selecting("PeerAuthentication", "empty", "web")],
        );
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn namespace_wide_policies_in_empty_namespaces_on_a_complete_inventory() {
        let objects = || {
            vec![
                namespace("prod", json!({})),
                namespace("empty", json!({})),
                deployment("prod", "web", json!({"app": "web"}), &[]),
                istio("AuthorizationPolicy", "empty", "deny-all", json!({})),
                istio("PeerAuthentication", "empty", "strict", json!({"mtls": {"mode": "STRICT"}})),
                istio("AuthorizationPolicy", "prod", "deny-all", json!({})),
                istio("AuthorizationPolicy", "istio-system", "mesh-deny", json!({})),
                istio(
                    "AuthorizationPolicy",
                    "empty",
                    "gateway",
                    json!({"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}]}),
                ),
            ]
        };
        let found = findings(&CHECK, true, objects());
        let who: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            who,
            [
                "PeerAuthentication empty/strict",
                "AuthorizationPolicy empty/deny-all"
            ],
            "{found:?}"
        );
        assert!(found[1]
            .2
            .contains("namespace-wide AuthorizationPolicy applies to the workloads of namespace \"empty\", and there are none"));
        // The manifests alone do not show every workload: quiet.
        assert!(findings(&CHECK, false, objects()).is_empty());
    }

    #[test]
    fn quiet_when_matching_unseen_or_ignored() {
        let found = findings(
            &CHECK,
            false,
            vec![
                deployment("prod", "web", json!({"app": "web"}), &[]),
                selecting("PeerAuthentication", "prod", "web"),
                selecting("AuthorizationPolicy", "istio-system", "web"),
                selecting("AuthorizationPolicy", "other", "x"),
                selecting("PeerAuthentication", "istio-system", "x"),
                istio("AuthorizationPolicy", "prod", "ns-wide", json!({})),
            ],
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
