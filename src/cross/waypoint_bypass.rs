//! `waypoint-bypass`: a workload behind a waypoint whose ztunnel admits callers other than the
//! waypoint, so they can skip the waypoint's L7 policies by calling a pod IP.
//!
//! A service waypoint sees only Service-addressed traffic from ambient clients; pod-IP calls,
//! sidecar clients, ingress gateways without `istio.io/ingress-use-waypoint` and clients outside
//! the mesh go straight to the pod (istio/ztunnel `src/proxy/outbound.rs`, `build_request`;
//! istio/istio `endpoint_builder.go`, `findServiceWaypoint`), and nothing stops that by default:
//! `PILOT_AUTO_ALLOW_WAYPOINT_POLICY` is off. Istio's documented defence is a selector policy on
//! the workload admitting only the waypoint's identity (istio.io `ambient/migrate/
//! migrate-policies`, "Prevent waypoint bypass"). This check fires for workloads whose Service's
//! waypoint has policies to skip, when the pod's ztunnel (as [`crate::authz::ztunnel`] decides)
//! admits some other caller: an identity of the input, a gateway's, one the input does not know,
//! or a plaintext client.

use super::{backends, CrossCheck, CrossContext};
use crate::authz::policy::ServiceRef;
use crate::authz::{Identity, Request, Verdict};
use crate::dataplane::{Plane, ServiceKind};
use crate::finding::{Action, Subject, Violation};
use std::collections::{BTreeSet, HashSet};

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "waypoint-bypass",
    default_action: Action::Warn,
    summary: "a workload behind a waypoint with L7 policies whose ztunnel admits callers other than the waypoint: they skip those policies by calling the pod IP (or from a sidecar, or an ingress without ingress-use-waypoint)",
    example_fix: "an ALLOW policy selecting the workload with rules: [{from: [{source: {principals: [\"cluster.local/ns/<ns>/sa/<waypoint>\"]}}]}] (not targetRefs)",
    run,
};

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let topology = cx.topology();
    if !topology.services().iter().any(|s| s.binding.gateway().is_some()) {
        return; // no Service behind a waypoint: nothing to compile the policies for
    }
    let set = cx.waypoint_policy_set();
    let mesh = set.mesh();
    // Every identity the input knows of, then one it does not.
    let mut callers: BTreeSet<(String, String)> = cx
        .inventory
        .workloads()
        .iter()
        .map(|w| {
            let o = cx.inventory.workload_object(w);
            let sa = o.template()
                .and_then(|t| t.service_account().map(|(_, sa)| sa.to_owned()))
                .unwrap_or_else(|| "default".to_owned());
            (w.workload.namespace.clone(), sa)
        })
        .collect();
    callers.extend(
        topology
            .gateway_identities()
            .map(|(n, sa, _)| (n.to_owned(), sa.to_owned())),
    );
    let stranger = ("meshguard-unknown-namespace".to_owned(), "any".to_owned());
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    for s in topology.services() {
        let Some(g) = s.binding.gateway() else {
            continue;
        };
        if cx.is_exempt_namespace(&s.namespace) {
            continue;
        }
        let gw = topology.gateway(g);
        let at_waypoint = set.waypoint_target(
            &gw.namespace,
            &gw.name,
            Some(ServiceRef {
                service_entry: s.kind == ServiceKind::ServiceEntry,
                namespace: &s.namespace,
                name: &s.name,
            }),
        );
        let mut l7: Vec<String> = at_waypoint
            .allow_policies()
            .iter()
            .copied()
            .chain(at_waypoint.deny_policies())
            .map(|i| set.policies()[i].id())
            .collect();
        if l7.is_empty() {
            continue; // nothing to skip
        }
        l7.sort();
        l7.dedup();
        let waypoint = (gw.namespace.clone(), gw.service_account.clone());
        for (i, ports) in backends(cx, s) {
            if cx.plane(i).plane != Plane::Ambient || !seen.insert((i, g)) {
                continue;
            }
            let w = &cx.workload(i).workload;
            let target = set.ztunnel_target(&w.namespace, &w.labels);
            let admitted = |peer: Option<Identity>| {
                ports.iter().any(|p| {
                    let plaintext = peer.is_none();
                    if plaintext && cx.plane(i).bypass_inbound {
                        return true;
                    }
                    target.decide(&Request::tcp(peer.clone(), *p)).verdict() == Verdict::Allow
                })
            };
            let who = callers
                .iter()
                .chain(std::iter::once(&stranger))
                .filter(|c| **c != waypoint)
                .find(|(n, sa)| admitted(Some(mesh.identity(n, sa))))
                .map(|(n, sa)| {
                    if (n, sa) == (&stranger.0, &stranger.1) {
                        "any mesh identity (one the input does not know is admitted)".to_owned()
                    } else {
                        format!("{n}/{sa}")
                    }
                })
                .or_else(|| admitted(None).then(|| "a plaintext client".to_owned()));
            let Some(who) = who else { continue };
            let o = cx.inventory.workload_object(cx.workload(i));
            out.push((
                o.subject(),
                Violation::new(
                    w.template_path(),
                    format!(
                        "{} is behind waypoint {} (through {}), which applies {}, but the pods' ztunnel also admits {who}: pod-IP calls, sidecar callers and ingress gateways without istio.io/ingress-use-waypoint reach the pods directly and skip those policies",
                        cx.workload_label(i),
                        gw.id(),
                        s.label(),
                        l7.join(", ")
                    ),
                    format!(
                        "admit only the waypoint at the pods' ztunnel: an AuthorizationPolicy selecting {} with rules: [{{from: [{{source: {{principals: [{:?}]}}}}]}}] (a selector policy, not targetRefs)",
                        w.labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(","),
                        mesh.identity(&gw.namespace, &gw.service_account).principal()
                    ),
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

    fn world(ns_labels: serde_json::Value, l4: Option<serde_json::Value>) -> Vec<serde_json::Value> {
        let mut v = vec![
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
                "reviews-l7",
                json!({"targetRefs": [{"kind": "Service", "group": "", "name": "reviews"}],
                    "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}),
            ),
            istio(
                "PeerAuthentication",
                "shop",
                "strict",
                json!({"mtls": {"mode": "STRICT"}}),
            ),
        ];
        if let Some(l4) = l4 {
            v.push(istio("AuthorizationPolicy", "shop", "l4", l4));
        }
        v
    }

    #[test]
    fn fires_when_the_pods_admit_others() {
        let ambient = json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"});
        let found = findings(&CHECK, true, world(ambient.clone(), None));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "Deployment shop/reviews");
        assert!(found[0].2.contains("also admits shop/default"), "{}", found[0].2);
        assert!(found[0].2.contains("shop/reviews-l7"));
        // An ALLOW that names a real client as well as the waypoint: that client can skip it.
        let both = json!({"selector": {"matchLabels": {"app": "reviews"}}, "rules": [{"from": [{"source": {
            "namespaces": ["*"]}}]}]});
        let found = findings(&CHECK, true, world(ambient, Some(both)));
        assert!(found[0].2.contains("also admits shop/default"), "{found:?}");
    }

    #[test]
    fn quiet_when_only_the_waypoint_gets_in_or_in_sidecar_namespaces() {
        let only = json!({"selector": {"matchLabels": {"app": "reviews"}}, "rules": [{"from": [{"source": {
            "principals": ["cluster.local/ns/shop/sa/waypoint"]}}]}]});
        let ambient = json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"});
        assert!(findings(&CHECK, true, world(ambient, Some(only))).is_empty());
        let sidecar = json!({"istio-injection": "enabled", "istio.io/use-waypoint": "waypoint"});
        assert!(findings(&CHECK, true, world(sidecar, None)).is_empty());
    }
}
