//! `selector-matches-nothing`: a PeerAuthentication, AuthorizationPolicy or
//! RequestAuthentication whose workload selector matches no workload, so it has no effect.
//! A root-namespace selector of an AuthorizationPolicy or RequestAuthentication looks in every
//! namespace; a root-namespace PeerAuthentication selector is ignored by Istio
//! (`pa-root-namespace-selector` reports that). On a partial inventory only namespaces whose
//! workloads the input shows are judged.

use super::{CrossCheck, CrossContext};
use crate::finding::{Action, Subject, Violation};
use crate::istio::WorkloadSelector;
use crate::resource::{spec_of, Kind};

pub static CHECK: CrossCheck = CrossCheck {
    id: "selector-matches-nothing",
    default_action: Action::Warn,
    summary: "a PeerAuthentication, AuthorizationPolicy or RequestAuthentication selector matching no workload",
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
        let sel = WorkloadSelector::of(spec_of(&o.object));
        if sel.is_empty() {
            continue;
        }
        let ns = o.namespace();
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
