//! `policy-unenforced`: a PeerAuthentication, AuthorizationPolicy or RequestAuthentication whose
//! workloads all run outside the mesh, so no proxy enforces it.
//!
//! Selector and namespace-wide policies are enforced by the selected pods' sidecars or, for
//! captured pods, their node's ztunnel (ambient). A pod with neither — labelled
//! `istio.io/dataplane-mode: none`, on the host network, not injected and not enrolled by the
//! istio-cni node agent, or in one of its `excludeNamespaces` — has no enforcement point
//! ([`crate::dataplane::plane`]): a policy that selects only such pods protects nothing.
//! Policies with `targetRef(s)` are `ap-targetref-unbound`'s; selectors matching no workload are
//! `selector-matches-nothing`'s.

use super::{list_some, CrossCheck, CrossContext};
use crate::dataplane::Plane;
use crate::finding::{Action, Subject, Violation};
use crate::model::Selector;
use crate::resource::Kind;

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "policy-unenforced",
    default_action: Action::Warn,
    summary: "a PeerAuthentication, AuthorizationPolicy or RequestAuthentication whose workloads all run outside the mesh (dataplane-mode none, hostNetwork, not enrolled, excluded): no proxy enforces it",
    example_fix: "kubectl label namespace <ns> istio.io/dataplane-mode=ambient (or remove the pods' istio.io/dataplane-mode: none)",
    run,
};

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    for kind in [
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::RequestAuthentication,
    ] {
        for o in cx.inventory.of_kind(kind) {
            let ns = o.namespace();
            let spec = &o.spec();
            let targeted = crate::json::is_set(spec.get("targetRef"))
                || crate::json::is_set(spec.get("targetRefs"));
            let sel = Selector::of_spec(spec);
            if targeted || (ns == cx.root && sel.is_empty()) {
                continue;
            }
            if kind == Kind::PeerAuthentication && ns == cx.root {
                continue; // root-namespace workload policies are ignored (pa-root-namespace-selector)
            }
            let scope = cx.scope(ns, &sel, kind != Kind::PeerAuthentication);
            if scope.is_empty() {
                continue;
            }
            if !scope
                .iter()
                .all(|&i| cx.plane(i).plane == Plane::Outside)
            {
                continue;
            }
            let why = cx
                .plane(scope[0])
                .outside
                .map(|w| w.describe(&cx.workload(scope[0]).workload.namespace))
                .unwrap_or_default();
            let names: Vec<String> = scope.iter().map(|&i| cx.workload_label(i)).collect();
            out.push((
                o.subject(),
                Violation::new(
                    if sel.is_empty() { "spec" } else { "spec.selector" },
                    format!(
                        "no proxy enforces this {}: every workload it applies to runs outside the mesh ({}; for {}: {why})",
                        kind.as_str(),
                        list_some(&names),
                        names[0]
                    ),
                    "enrol the workloads (a sidecar, or istio.io/dataplane-mode=ambient on the namespace, without istio.io/dataplane-mode: none on the pods), or delete the policy",
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cross::testing::*;
    use serde_json::json;

    fn objects(ns_labels: serde_json::Value, pod: serde_json::Value) -> Vec<serde_json::Value> {
        vec![
            namespace("shop", ns_labels),
            deployment("shop", "legacy", pod, &[8080]),
            istio(
                "AuthorizationPolicy",
                "shop",
                "legacy-callers",
                json!({"selector": {"matchLabels": {"app": "legacy"}},
                    "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}]}]}),
            ),
        ]
    }

    #[test]
    fn fires_when_only_pods_outside_the_mesh_are_selected() {
        let found = findings(
            &CHECK,
            true,
            objects(
                json!({"istio.io/dataplane-mode": "ambient"}),
                json!({"app": "legacy", "istio.io/dataplane-mode": "none"}),
            ),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "spec.selector");
        assert!(found[0].2.contains("dataplane-mode: none opts it out"), "{}", found[0].2);
    }

    #[test]
    fn quiet_for_sidecar_and_ambient_pods() {
        for (ns, pod) in [
            (json!({"istio-injection": "enabled"}), json!({"app": "legacy"})),
            (json!({"istio.io/dataplane-mode": "ambient"}), json!({"app": "legacy"})),
        ] {
            assert!(findings(&CHECK, true, objects(ns, pod)).is_empty());
        }
    }
}
