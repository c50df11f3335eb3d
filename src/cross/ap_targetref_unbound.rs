//! `ap-targetref-unbound`: an AuthorizationPolicy or RequestAuthentication whose `targetRef(s)`
//! entry binds to nothing, so no proxy enforces it for that target.
//!
//! Policies with target references never reach sidecars or ztunnel ("if targetRef is specified,
//! ignore the policy altogether"; "TargetRef is not intended for ztunnel"): only the proxies
//! they attach to enforce them (istio/istio `pilot/pkg/model/policyattachment.go`,
//! `ShouldAttachPolicy`). istiod's status for waypoints (`pilot/pkg/serviceregistry/ambient/
//! policies.go`, `WaypointPolicyStatusCollection`) reports the same cases this check does: a
//! Service or ServiceEntry that does not exist (`TargetNotFound`) or is bound to no waypoint
//! (`AncestorNotBound`), a GatewayClass other than `istio-waypoint` or referenced from outside the
//! root namespace (`Invalid`), a Gateway that does not exist. A reference to an ingress Gateway
//! is enforced by that gateway. A namespace in the reference is not supported (Istio's
//! validation rejects it).

use super::{CrossCheck, CrossContext};
use crate::authz::policy::{target_refs, TargetRef};
use crate::dataplane::labels::WAYPOINT_CLASS;
use crate::dataplane::{Binding, ServiceKind, Unbound};
use crate::finding::{Action, Subject, Violation};
use crate::resource::Kind;

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "ap-targetref-unbound",
    default_action: Action::Warn,
    summary: "an AuthorizationPolicy or RequestAuthentication targetRefs entry that binds to nothing (a Service or ServiceEntry without a waypoint or that does not exist, a Gateway that does not exist, a GatewayClass other than istio-waypoint or outside the root namespace): no proxy enforces it",
    example_fix: "kubectl label service <name> istio.io/use-waypoint=<waypoint> (or correct the targetRef)",
    run,
};

const GATEWAY_API: &str = "gateway.networking.k8s.io";

/// Why a reference binds nothing, with the fix; `None` when it binds.
fn unbound(cx: &CrossContext<'_>, r: &TargetRef, ns: &str) -> Option<(String, String)> {
    let topology = cx.topology();
    if !r.namespace.is_empty() && r.namespace != ns {
        return Some((
            format!("it names namespace {:?}: a policy can only target objects of its own namespace, so Istio never attaches it", r.namespace),
            "move the policy to the target's namespace and drop targetRef.namespace".to_owned(),
        ));
    }
    let service = |kind: ServiceKind| -> Option<(String, String)> {
        let Some(i) = topology.find_service(kind, ns, &r.name) else {
            if !cx.inventory.is_complete() {
                return None; // a partial input may not show it
            }
            return Some((
                format!("{} {ns}/{} does not exist", kind.as_str(), r.name),
                format!("correct targetRefs name, or create the {}", kind.as_str()),
            ));
        };
        let s = topology.service(i);
        let why = match &s.binding {
            Binding::Bound { .. } => return None,
            Binding::None => "it has no istio.io/use-waypoint label, nor has its namespace".to_owned(),
            Binding::OptedOut => "it opts out with istio.io/use-waypoint: none".to_owned(),
            Binding::Unbound { namespace, name, why, .. } => format!(
                "the waypoint it names, {namespace}/{name}, binds nothing ({})",
                match why {
                    Unbound::Missing => "it does not exist".to_owned(),
                    Unbound::NotReady => "it is not ready".to_owned(),
                    Unbound::NotPermitted(from) => format!("it admits routes from {from} only"),
                    Unbound::TrafficType(t) => format!("it is for {t} traffic"),
                }
            ),
        };
        Some((
            format!("{} is bound to no waypoint: {why}", s.label()),
            format!(
                "bind the {} to a waypoint: kubectl -n {ns} label {} {} istio.io/use-waypoint=<waypoint>",
                kind.as_str(),
                kind.as_str().to_ascii_lowercase(),
                r.name
            ),
        ))
    };
    if r.is("", "Service") {
        return service(ServiceKind::Service);
    }
    if r.is("networking.istio.io", "ServiceEntry") {
        return service(ServiceKind::ServiceEntry);
    }
    if r.is(GATEWAY_API, "Gateway") {
        if topology.find_gateway(ns, &r.name).is_some() || !cx.inventory.is_complete() {
            return None;
        }
        return Some((
            format!("Gateway {ns}/{} does not exist", r.name),
            "correct targetRefs name, or create the Gateway".to_owned(),
        ));
    }
    if r.is(GATEWAY_API, "GatewayClass") {
        if ns != cx.root {
            return Some((
                format!("a GatewayClass is attached to only from the root namespace {:?}", cx.root),
                format!("move the policy to namespace {:?}", cx.root),
            ));
        }
        if r.name != WAYPOINT_CLASS {
            return Some((
                format!("only the GatewayClass {WAYPOINT_CLASS} attaches policies (to every waypoint), not {:?}", r.name),
                format!("target GatewayClass {WAYPOINT_CLASS}, or the Gateways themselves"),
            ));
        }
        return None;
    }
    None // a kind Istio's validation rejects (istio-invalid-spec)
}

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    for kind in [Kind::AuthorizationPolicy, Kind::RequestAuthentication] {
        for o in cx.inventory.of_kind(kind) {
            let spec = &o.spec();
            let refs = target_refs(spec);
            let field = if crate::json::items(spec, "targetRefs").is_empty() {
                "spec.targetRef".to_owned()
            } else {
                "spec.targetRefs".to_owned()
            };
            let ns = o.namespace();
            for (i, r) in refs.iter().enumerate() {
                let Some((why, fix)) = unbound(cx, r, ns) else {
                    continue;
                };
                let path = if field == "spec.targetRef" {
                    field.clone()
                } else {
                    format!("{field}[{i}]")
                };
                out.push((
                    o.subject(),
                    Violation::new(
                        path,
                        format!(
                            "{} {} targets {}, but {why}: sidecars and ztunnel ignore policies with targetRefs, so no proxy enforces it there",
                            kind.as_str(),
                            o.name(),
                            r.label(ns)
                        ),
                        fix,
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cross::testing::*;
    use serde_json::json;

    fn world(svc_labels: serde_json::Value) -> Vec<serde_json::Value> {
        vec![
            namespace("shop", json!({"istio.io/dataplane-mode": "ambient"})),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "waypoint", "namespace": "shop"},
                "spec": {"gatewayClassName": "istio-waypoint",
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "shop", "labels": svc_labels},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 80}]}}),
        ]
    }

    fn l7(targets: serde_json::Value) -> serde_json::Value {
        istio(
            "AuthorizationPolicy",
            "shop",
            "l7",
            json!({"targetRefs": targets, "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}),
        )
    }

    #[test]
    fn fires_for_targets_no_proxy_serves() {
        let mut objects = world(json!({}));
        objects.push(l7(json!([
            {"kind": "Service", "group": "", "name": "reviews"},
            {"kind": "Service", "group": "", "name": "gone"},
            {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "nope"},
            {"kind": "GatewayClass", "group": "gateway.networking.k8s.io", "name": "istio-waypoint"},
            {"kind": "Service", "group": "", "name": "reviews", "namespace": "other"}
        ])));
        objects.push(istio(
            "RequestAuthentication",
            "shop",
            "jwt",
            json!({"targetRef": {"kind": "Service", "group": "", "name": "reviews"},
                "jwtRules": [{"issuer": "https://auth.example.com"}]}),
        ));
        let found = findings(&CHECK, true, objects);
        let paths: Vec<&str> = found.iter().map(|f| f.1.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.targetRefs[0]",
                "spec.targetRefs[1]",
                "spec.targetRefs[2]",
                "spec.targetRefs[3]",
                "spec.targetRefs[4]",
                "spec.targetRef"
            ],
            "{found:?}"
        );
        assert!(found[0].2.contains("Service shop/reviews is bound to no waypoint: it has no istio.io/use-waypoint label"));
        assert!(found[1].2.contains("does not exist"));
        assert!(found[3].2.contains("only from the root namespace"));
        assert!(found[5].0.starts_with("RequestAuthentication"));
    }

    #[test]
    fn quiet_when_bound() {
        let mut objects = world(json!({"istio.io/use-waypoint": "waypoint"}));
        objects.push(l7(json!([
            {"kind": "Service", "group": "", "name": "reviews"},
            {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}
        ])));
        objects.push(istio(
            "AuthorizationPolicy",
            "istio-system",
            "all-waypoints",
            json!({"targetRefs": [{"kind": "GatewayClass", "group": "gateway.networking.k8s.io", "name": "istio-waypoint"}], "rules": [{}]}),
        ));
        // Selector policies are not this check's.
        objects.push(istio(
            "AuthorizationPolicy",
            "shop",
            "selector",
            json!({"selector": {"matchLabels": {"app": "reviews"}}, "rules": [{}]}),
        ));
        assert!(findings(&CHECK, true, objects).is_empty());
    }
}
