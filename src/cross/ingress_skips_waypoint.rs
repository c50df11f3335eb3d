//! `ingress-skips-waypoint`: an HTTPRoute sending an ingress gateway's traffic to a Service that
//! is bound to a waypoint, without `istio.io/ingress-use-waypoint`.
//!
//! Ingress (and east-west) gateways call a Service's waypoint only when the Service, else its
//! namespace, carries `istio.io/ingress-use-waypoint: "true"` (istio/istio
//! `pilot/pkg/xds/endpoints/endpoint_builder.go`, `findServiceWaypoint`: "They need to explicitly
//! opt-in on the service to send from ingress -> waypoint"). Otherwise ingress traffic goes to
//! the pods, the waypoint's L7 policies do not apply to it, and the pods' ztunnel sees the
//! gateway's identity.

use super::{CrossCheck, CrossContext};
use crate::dataplane::ServiceKind;
use crate::finding::{Action, Subject, Violation};
use crate::resource::Kind;

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "ingress-skips-waypoint",
    default_action: Action::Warn,
    summary: "an HTTPRoute of an ingress gateway sends to a Service bound to a waypoint without istio.io/ingress-use-waypoint: \"true\": ingress traffic skips the waypoint's L7 policies",
    example_fix: "kubectl -n <ns> label service <name> istio.io/ingress-use-waypoint=true",
    run,
};

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let topology = cx.topology();
    let mesh = cx.mesh();
    for r in topology.routes() {
        let gateways: Vec<usize> = r
            .gateways
            .iter()
            .filter_map(|(ns, name)| topology.find_gateway(ns, name))
            .filter(|&g| !topology.gateway(g).is_waypoint())
            .collect();
        let Some(&g) = gateways.first() else {
            continue;
        };
        let gw = topology.gateway(g);
        let Some(o) = cx.inventory.find(Kind::HttpRoute, &r.namespace, &r.name) else {
            continue;
        };
        for (ns, name, path) in &r.backends {
            let Some(si) = topology.find_service(ServiceKind::Service, ns, name) else {
                continue;
            };
            let s = topology.service(si);
            let Some(w) = s.binding.gateway() else {
                continue;
            };
            if s.ingress_use_waypoint.1 {
                continue;
            }
            out.push((
                o.subject(),
                Violation::new(
                    path.clone(),
                    format!(
                        "this route sends traffic from gateway {} to {}, which is bound to waypoint {}, but ingress gateways use a Service's waypoint only with istio.io/ingress-use-waypoint: \"true\" on the Service or its namespace{}: this traffic goes straight to the pods, skips the waypoint's L7 policies, and the pods' ztunnel sees the gateway's identity {}",
                        gw.id(),
                        s.label(),
                        topology.gateway(w).id(),
                        if s.ingress_use_waypoint.0 { " (the label is there, but not \"true\")" } else { "" },
                        mesh.identity(&gw.namespace, &gw.service_account).principal()
                    ),
                    format!("kubectl -n {ns} label service {name} istio.io/ingress-use-waypoint=true --overwrite"),
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

    fn objects(svc_labels: serde_json::Value, waypoint_label: bool) -> Vec<serde_json::Value> {
        let mut ns = json!({"istio.io/dataplane-mode": "ambient"});
        if waypoint_label {
            ns["istio.io/use-waypoint"] = json!("waypoint");
        }
        vec![
            namespace("shop", ns),
            namespace("ingress", json!({})),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "waypoint", "namespace": "shop"},
                "spec": {"gatewayClassName": "istio-waypoint",
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "public", "namespace": "ingress"},
                "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "shop", "labels": svc_labels},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 80}]}}),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "shop", "namespace": "ingress"},
                "spec": {"parentRefs": [{"name": "public"}],
                    "rules": [{"backendRefs": [{"name": "reviews", "namespace": "shop", "port": 80}]}]}}),
        ]
    }

    #[test]
    fn fires_without_ingress_use_waypoint() {
        let found = findings(&CHECK, true, objects(json!({}), true));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "HTTPRoute ingress/shop");
        assert_eq!(found[0].1, "spec.rules[0].backendRefs[0]");
        assert!(found[0].2.contains("cluster.local/ns/ingress/sa/public-istio"));
        let found = findings(
            &CHECK,
            true,
            objects(json!({"istio.io/ingress-use-waypoint": "false"}), true),
        );
        assert!(found[0].2.contains("not \"true\""));
    }

    #[test]
    fn quiet_with_the_label_or_no_waypoint() {
        assert!(findings(
            &CHECK,
            true,
            objects(json!({"istio.io/ingress-use-waypoint": "true"}), true)
        )
        .is_empty());
        assert!(findings(&CHECK, true, objects(json!({}), false)).is_empty());
    }
}
