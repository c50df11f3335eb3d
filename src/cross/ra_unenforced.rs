//! `ra-unenforced`: a RequestAuthentication with no AuthorizationPolicy requiring a request
//! principal for its workloads. A RequestAuthentication rejects invalid tokens but accepts
//! requests with none (Istio's RequestAuthentication reference), so without an
//! AuthorizationPolicy on `requestPrincipals` the JWT is optional.

use super::{list_some, CrossCheck, CrossContext};
use crate::model::AuthorizationPolicy;
use crate::finding::{Action, Subject, Violation};
use crate::inventory::Object;
use crate::model::Selector;
use crate::resource::Kind;
use std::collections::HashMap;

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "ra-unenforced",
    default_action: Action::Warn,
    summary: "a RequestAuthentication with no AuthorizationPolicy requiring `requestPrincipals` for its workloads: requests without a token pass",
    example_fix: "an AuthorizationPolicy for the same workloads with rules[].from[].source.requestPrincipals: [\"*\"]",
    run,
};

/// A namespace whose pods ztunnel captures (the root namespace aside).
fn ambient_namespace(cx: &CrossContext<'_>, ns: &str) -> bool {
    ns != cx.root
        && matches!(
            crate::context::ClusterView::namespace_labels(cx.inventory, ns),
            crate::context::Lookup::Found(l)
                if crate::dataplane::namespace_plane(cx.engine.mesh(), ns, &l)
                    == crate::dataplane::Plane::Ambient
        )
}

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    // The enforcing policies with their specs, decoded once.
    let enforcing: Vec<(&Object, serde_json::Value)> = cx
        .inventory
        .of_kind(Kind::AuthorizationPolicy)
        .filter_map(|o| {
            let spec = o.spec();
            AuthorizationPolicy::of(&spec)
                .requires_jwt(o.is_dry_run())
                .then_some((o, spec))
        })
        .collect();
    let mut enforcing_by_ns: HashMap<&str, Vec<&(&Object, serde_json::Value)>> = HashMap::new();
    for e in &enforcing {
        enforcing_by_ns.entry(e.0.namespace()).or_default().push(e);
    }
    let none = Vec::new();
    let sidecar_fix = "add an AuthorizationPolicy for the same workloads with rules[].from[].source.requestPrincipals: [\"*\"] (or action DENY with notRequestPrincipals: [\"*\"])";
    // In ambient mode only waypoints see requests: both policies must attach to the waypoint.
    let ambient_fix = "in ambient mode only a waypoint validates tokens and sees request principals: attach this RequestAuthentication and an AuthorizationPolicy with rules[].from[].source.requestPrincipals: [\"*\"] to the waypoint with targetRefs (the Service, or the waypoint's Gateway)";
    for ra in cx.inventory.of_kind(Kind::RequestAuthentication) {
        let ns = ra.namespace();
        let fix = if ambient_namespace(cx, ns) {
            ambient_fix
        } else {
            sidecar_fix
        };
        let spec = &ra.spec();
        let sel = Selector::of_spec(spec);
        let targets = cx.scope(ns, &sel, true);
        let path = if spec.get("jwtRules").is_some() {
            "spec.jwtRules"
        } else {
            "spec"
        };
        if targets.is_empty() {
            // No workload in view: compare scopes instead.
            let covered = enforcing.iter().any(|(ap, spec)| {
                let aps = Selector::of_spec(spec);
                (ap.namespace() == ns || ap.namespace() == cx.root)
                    && (aps.is_empty() || aps.to_map() == sel.to_map())
            });
            if !covered {
                out.push((
                    ra.subject(),
                    Violation::new(
                        path,
                        "no AuthorizationPolicy requires requestPrincipals for the workloads this RequestAuthentication selects, so requests without a token are accepted",
                        fix,
                    ),
                ));
            }
            continue;
        }
        let unenforced: Vec<String> = targets
            .iter()
            .copied()
            .filter(|i| {
                let w = &cx.workload(*i).workload;
                let local = enforcing_by_ns.get(w.namespace.as_str()).unwrap_or(&none);
                let root = if w.namespace == cx.root {
                    &none
                } else {
                    enforcing_by_ns.get(cx.root).unwrap_or(&none)
                };
                !local
                    .iter()
                    .chain(root)
                    .any(|(_, spec)| Selector::of_spec(spec).matches(&w.labels))
            })
            .map(|i| cx.workload_label(i))
            .collect();
        if !unenforced.is_empty() {
            out.push((
                ra.subject(),
                Violation::new(
                    path,
                    format!(
                        "no AuthorizationPolicy requires requestPrincipals for {}, so requests without a token are accepted",
                        list_some(&unenforced)
                    ),
                    fix,
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

    fn ra() -> serde_json::Value {
        istio(
            "RequestAuthentication",
            "prod",
            "jwt",
            json!({
            "selector": {"matchLabels": {"app": "api"}},
            "jwtRules": [{"issuer": "https://issuer.example.com"}]}),
        )
    }

    #[test]
    fn fires_without_an_enforcing_policy() {
        let found = findings(
            &CHECK,
            false,
            vec![deployment("prod", "api", json!({"app": "api"}), &[]), ra()],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "spec.jwtRules");
        assert!(found[0].2.contains("deployment prod/api"), "{}", found[0].2);
        // No workload in view: judged by scope.
        assert_eq!(findings(&CHECK, false, vec![ra()]).len(), 1);
        // A dry-run requirement enforces nothing.
        let mut ap = istio(
            "AuthorizationPolicy",
            "prod",
            "need-jwt",
            json!({
            "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}),
        );
        ap["metadata"]["annotations"] = json!({"istio.io/dry-run": "true"});
        assert_eq!(findings(&CHECK, false, vec![ra(), ap]).len(), 1);
    }

    #[test]
    fn quiet_when_a_policy_requires_a_token() {
        for ap in [
            istio(
                "AuthorizationPolicy",
                "prod",
                "need-jwt",
                json!({
                "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}),
            ),
            istio(
                "AuthorizationPolicy",
                "istio-system",
                "need-jwt",
                json!({
                "action": "DENY", "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}]}]}),
            ),
            istio(
                "AuthorizationPolicy",
                "prod",
                "need-jwt",
                json!({
                "rules": [{"when": [{"key": "request.auth.principal", "values": ["https://issuer.example.com/alice"]}]}]}),
            ),
        ] {
            let found = findings(
                &CHECK,
                false,
                vec![
                    deployment("prod", "api", json!({"app": "api"}), &[]),
                    ra(),
                    ap.clone(),
                ],
            );
            assert!(found.is_empty(), "{ap}: {found:?}");
            assert!(findings(&CHECK, false, vec![ra(), ap]).is_empty());
        }
    }

    #[test]
    fn the_fix_speaks_ambient_in_ambient_namespaces() {
        let objects = |labels: serde_json::Value| {
            vec![
                namespace("prod", labels),
                deployment("prod", "api", json!({"app": "api"}), &[80]),
                ra(),
            ]
        };
        let ambient = crate::cross::testing::fixes(
            &CHECK,
            true,
            objects(json!({"istio.io/dataplane-mode": "ambient"})),
        );
        assert!(ambient[0].contains("attach this RequestAuthentication and an AuthorizationPolicy"), "{ambient:?}");
        let sidecar = crate::cross::testing::fixes(
            &CHECK,
            true,
            objects(json!({"istio-injection": "enabled"})),
        );
        assert!(sidecar[0].starts_with("add an AuthorizationPolicy for the same workloads"), "{sidecar:?}");
    }
}
