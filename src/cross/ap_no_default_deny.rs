//! `ap-no-default-deny`: a mesh namespace without an allow-nothing AuthorizationPolicy.
//!
//! `spec: {}` (ALLOW with no rules, no selector) denies every request that no other ALLOW
//! policy admits; in the root namespace it does so mesh-wide. Without one, a workload with no
//! ALLOW policy of its own accepts every caller (Istio's "allow-nothing" pattern; the one
//! definition is [`AuthorizationPolicy::is_allow_nothing`]).

use super::{CrossCheck, CrossContext};
use crate::model::AuthorizationPolicy;
use crate::finding::{Action, Subject, Violation};
use crate::inventory::{Inventory, Object};
use crate::resource::Kind;
use std::collections::{BTreeSet, HashSet};

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "ap-no-default-deny",
    default_action: Action::Warn,
    summary: "a mesh namespace without an allow-nothing AuthorizationPolicy (`spec: {}`) in it or mesh-wide",
    example_fix: "an AuthorizationPolicy named deny-all with spec: {} in the namespace (or in the root namespace for the whole mesh)",
    run,
};

/// The allow-nothing policies in force, in input order.
pub(crate) fn allow_nothing_policies(inventory: &Inventory) -> impl Iterator<Item = &Object> {
    inventory.of_kind(Kind::AuthorizationPolicy).filter(|o| {
        AuthorizationPolicy::of(&o.spec()).is_allow_nothing(o.is_dry_run())
    })
}

/// Namespaces with an allow-nothing policy in force.
pub(crate) fn protected_namespaces<'a>(cx: &CrossContext<'a>) -> HashSet<&'a str> {
    allow_nothing_policies(cx.inventory)
        .map(|o| o.namespace())
        .collect()
}

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let protected = protected_namespaces(cx);
    if protected.contains(cx.root) {
        return; // a mesh-wide allow-nothing policy covers every namespace
    }
    let mut mesh: BTreeSet<&str> = BTreeSet::new();
    for o in cx.inventory.namespace_objects() {
        if crate::dataplane::labels::in_mesh(o.labels()) {
            mesh.insert(o.name());
        }
    }
    mesh.extend(cx.inventory.namespaces_with_workloads());
    // The waypoints the namespace's Services are bound to: an allow-nothing policy also blocks
    // their connections to the pods, so the fix must admit them too.
    let topology = cx.topology();
    let mesh_identity = cx.mesh();
    for ns in mesh {
        if cx.is_exempt_namespace(ns) || protected.contains(ns) {
            continue;
        }
        let mut waypoints: Vec<String> = topology
            .services()
            .iter()
            .filter(|s| s.namespace == ns)
            .filter_map(|s| s.binding.gateway())
            .map(|g| {
                let gw = topology.gateway(g);
                mesh_identity
                    .identity(&gw.namespace, &gw.service_account)
                    .principal()
                    .to_owned()
            })
            .collect();
        waypoints.sort();
        waypoints.dedup();
        let mut fix = format!("apply an AuthorizationPolicy named \"deny-all\" in namespace \"{ns}\" with \"spec: {{}}\", then allow callers explicitly");
        if !waypoints.is_empty() {
            fix.push_str(&format!(
                ", and allow the waypoint identity too ({}): its Services' traffic reaches the pods from the waypoint, which an allow-nothing policy blocks at the pods' ztunnel",
                waypoints.join(", ")
            ));
        }
        out.push((
            cx.namespace_subject(ns),
            Violation::new(
                "metadata.name",
                format!("namespace \"{ns}\" has no allow-nothing AuthorizationPolicy, so a workload without an ALLOW policy accepts every caller"),
                fix,
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cross::testing::*;
    use serde_json::json;

    #[test]
    fn fires_for_mesh_namespaces_and_namespaces_with_workloads() {
        let found = findings(
            &CHECK,
            false,
            vec![
                namespace("prod", json!({"istio-injection": "enabled"})),
                namespace("plain", json!({})),
                deployment("apps", "web", json!({"app": "web"}), &[]),
            ],
        );
        let subjects: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(subjects, ["Namespace apps", "Namespace prod"]);
    }

    #[test]
    fn the_fix_admits_the_waypoint_where_services_use_one() {
        let found = findings(
            &CHECK,
            false,
            vec![
                namespace("shop", json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"})),
                json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                    "metadata": {"name": "waypoint", "namespace": "shop"},
                    "spec": {"gatewayClassName": "istio-waypoint",
                        "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "shop"},
                    "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 80}]}}),
                namespace("payments", json!({"istio-injection": "enabled"})),
            ],
        );
        assert_eq!(found.len(), 2, "{found:?}");
        let shop = &found[1];
        assert_eq!(shop.0, "Namespace shop");
        let fixes = crate::cross::testing::fixes(
            &CHECK,
            false,
            vec![
                namespace("shop", json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"})),
                json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                    "metadata": {"name": "waypoint", "namespace": "shop"},
                    "spec": {"gatewayClassName": "istio-waypoint"}}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "shop"},
                    "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 80}]}}),
                namespace("payments", json!({"istio-injection": "enabled"})),
            ],
        );
        assert!(fixes[1].contains("allow the waypoint identity too (cluster.local/ns/shop/sa/waypoint)"), "{fixes:?}");
        assert!(!fixes[0].contains("waypoint"), "the sidecar namespace's fix is unchanged: {fixes:?}");
    }

    #[test]
    fn quiet_with_a_baseline_here_or_mesh_wide_but_not_in_dry_run() {
        let objects = |ns: &str, annotations: serde_json::Value| {
            let mut ap = istio("AuthorizationPolicy", ns, "deny-all", json!({}));
            ap["metadata"]["annotations"] = annotations;
            vec![namespace("prod", json!({"istio-injection": "enabled"})), ap]
        };
        assert!(findings(&CHECK, false, objects("prod", json!({}))).is_empty());
        assert!(findings(&CHECK, false, objects("istio-system", json!({}))).is_empty());
        let dry = findings(
            &CHECK,
            false,
            objects("prod", json!({"istio.io/dry-run": "true"})),
        );
        assert_eq!(dry.len(), 1, "a dry-run policy is not enforced: {dry:?}");
        // An allow-all or a targeted policy is no baseline.
        let allow_all = vec![
            namespace("prod", json!({"istio-injection": "enabled"})),
            istio("AuthorizationPolicy", "prod", "all", json!({"rules": [{}]})),
        ];
        assert_eq!(findings(&CHECK, false, allow_all).len(), 1);
    }
}
