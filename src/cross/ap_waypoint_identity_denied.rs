//! `ap-waypoint-identity-denied`: a workload behind a waypoint whose ztunnel policies do not
//! admit the waypoint's identity, so every call to its Service through the waypoint is denied.
//!
//! After a waypoint, the destination's ztunnel sees the **waypoint's** identity, not the
//! client's (istio.io `ambient/usage/l4-policy`, "Source Identity"); selector policies still
//! apply there ("Selector | Pod | waypoint | destination ztunnel"). A selector ALLOW written for
//! sidecars, naming the real clients, then denies all Service traffic (pod-IP calls by those
//! clients still pass). The decision is the simulator's ([`crate::authz::ztunnel`]): a TCP
//! connection from the waypoint's identity to each port the Service sends to.

use super::{backends, CrossCheck, CrossContext};
use crate::authz::{Outcome, Request};
use crate::dataplane::Plane;
use crate::finding::{Action, Subject, Violation};
use crate::resource::Kind;
use std::collections::HashSet;

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "ap-waypoint-identity-denied",
    default_action: Action::Warn,
    summary: "a workload behind a waypoint whose ztunnel policies (selector, namespace-wide or mesh-wide) do not admit the waypoint's identity: every call to its Service through the waypoint is denied",
    example_fix: "rules: [{from: [{source: {principals: [\"cluster.local/ns/<ns>/sa/<waypoint>\"]}}]}] in an ALLOW policy selecting the workload",
    run,
};

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let topology = cx.topology();
    if !topology.services().iter().any(|s| s.binding.gateway().is_some()) {
        return; // no Service behind a waypoint: nothing to compile the policies for
    }
    let set = cx.waypoint_policy_set();
    let mesh = set.mesh();
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    for s in topology.services() {
        let Some(g) = s.binding.gateway() else {
            continue;
        };
        if cx.is_exempt_namespace(&s.namespace) {
            continue;
        }
        let gw = topology.gateway(g);
        let waypoint = mesh.identity(&gw.namespace, &gw.service_account);
        for (i, ports) in backends(cx, s) {
            if cx.plane(i).plane != Plane::Ambient || !seen.insert((i, g)) {
                continue;
            }
            let w = &cx.workload(i).workload;
            let target = set.ztunnel_target(&w.namespace, &w.labels);
            for port in ports {
                let outcome = target.decide(&Request::tcp(Some(waypoint.clone()), port));
                let (policy, why) = match outcome {
                    Outcome::DefaultDeny => {
                        let Some(&first) = target.allow_policies().first() else {
                            continue;
                        };
                        let names: Vec<String> = target
                            .allow_policies()
                            .iter()
                            .map(|&p| set.policies()[p].id())
                            .collect();
                        (
                            first,
                            format!(
                                "its ALLOW policies ({}) do not admit that identity",
                                names.join(", ")
                            ),
                        )
                    }
                    Outcome::Denied(r) => (
                        r.policy,
                        format!("rules[{}] of this DENY policy matches it", r.rule),
                    ),
                    _ => continue,
                };
                let p = &set.policies()[policy];
                let Some(o) = cx.inventory.find(Kind::AuthorizationPolicy, &p.namespace, &p.name)
                else {
                    continue;
                };
                out.push((
                    o.subject(),
                    Violation::new(
                        "spec",
                        format!(
                            "every call to {} through waypoint {} is denied at the ztunnel of {}, port {port}: after the waypoint the destination sees the waypoint's identity {}, and {why}",
                            s.label(),
                            gw.id(),
                            cx.workload_label(i),
                            waypoint.principal()
                        ),
                        format!(
                            "admit the waypoint at {}'s ztunnel: add {:?} to the principals of an ALLOW rule selecting it (the pattern Istio documents to prevent waypoint bypass admits only the waypoint)",
                            w.name,
                            waypoint.principal()
                        ),
                    ),
                ));
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cross::testing::*;
    use serde_json::json;

    fn world(ns_labels: serde_json::Value, allow: serde_json::Value) -> Vec<serde_json::Value> {
        vec![
            namespace("shop", ns_labels),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "waypoint", "namespace": "shop"},
                "spec": {"gatewayClassName": "istio-waypoint",
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "shop"},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 80, "targetPort": 9080}]}}),
            deployment("shop", "reviews", json!({"app": "reviews"}), &[9080]),
            istio(
                "AuthorizationPolicy",
                "shop",
                "reviews-callers",
                json!({"selector": {"matchLabels": {"app": "reviews"}},
                    "rules": [{"from": [{"source": {"principals": allow}}]}]}),
            ),
        ]
    }

    #[test]
    fn fires_when_the_allow_list_names_the_real_clients() {
        let found = findings(
            &CHECK,
            true,
            world(
                json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}),
                json!(["cluster.local/ns/shop/sa/frontend"]),
            ),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "AuthorizationPolicy shop/reviews-callers");
        assert!(found[0].2.contains("through waypoint shop/waypoint is denied at the ztunnel of deployment shop/reviews, port 9080"));
        assert!(found[0].2.contains("cluster.local/ns/shop/sa/waypoint"));
    }

    #[test]
    fn quiet_when_the_waypoint_is_admitted_or_no_waypoint_or_sidecars() {
        let ambient = json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"});
        let admitted = world(
            ambient.clone(),
            json!(["cluster.local/ns/shop/sa/waypoint"]),
        );
        assert!(findings(&CHECK, true, admitted).is_empty());
        // No waypoint bound: the clients reach the pods with their own identity.
        let no_waypoint = world(
            json!({"istio.io/dataplane-mode": "ambient"}),
            json!(["cluster.local/ns/shop/sa/frontend"]),
        );
        assert!(findings(&CHECK, true, no_waypoint).is_empty());
        // The same policies on sidecar pods: sidecars never receive waypoint traffic here.
        let sidecar = world(
            json!({"istio-injection": "enabled", "istio.io/use-waypoint": "waypoint"}),
            json!(["cluster.local/ns/shop/sa/frontend"]),
        );
        assert!(findings(&CHECK, true, sidecar).is_empty());
    }
}
