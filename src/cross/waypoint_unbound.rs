//! `waypoint-unbound`: an `istio.io/use-waypoint` label that binds nothing.
//!
//! istiod binds a Namespace's, Service's, ServiceEntry's or pod's traffic to the waypoint its
//! `istio.io/use-waypoint` label names only when that Gateway exists, is ready (addresses in its
//! status), takes that kind of traffic (`istio.io/waypoint-for`) and admits the namespace (its
//! HBONE listener's `allowedRoutes`). Otherwise it binds nothing and does not fall back to the
//! namespace's waypoint: traffic goes straight to the pods and the waypoint's L7 policies are
//! not enforced, with only the condition `istio.io/WaypointBound=False` to show for it (istio/istio
//! `pilot/pkg/serviceregistry/ambient/waypoints.go`, `fetchWaypointForTarget`,
//! `fetchWaypointForService`, `fetchWaypointForWorkload`; the model is
//! [`crate::dataplane::Topology`]). A pod that inherits a service-only waypoint from its
//! namespace is not an error (Istio says so too); its own label naming one is.

use super::{CrossCheck, CrossContext};
use crate::dataplane::labels::USE_WAYPOINT;
use crate::dataplane::{Binding, LabelSource, Unbound};
use crate::finding::{Action, Subject, Violation};
use crate::json::quoted_key;
use crate::resource::Kind;

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "waypoint-unbound",
    default_action: Action::Warn,
    summary: "an istio.io/use-waypoint label (Namespace, Service, ServiceEntry or pod) naming a waypoint that does not exist, is not ready, takes other traffic or does not admit the namespace: istiod binds nothing, traffic goes straight to the pods and skips the waypoint's L7 policies (fail open)",
    example_fix: "istioctl waypoint apply -n <namespace> --name <waypoint> (or correct the label)",
    run,
};

/// The message and fix for a binding that failed.
fn explain(binding: &Binding, what: &str, namespace: &str) -> Option<(String, String)> {
    let Binding::Unbound {
        namespace: wns,
        name,
        why,
        ..
    } = binding
    else {
        return None;
    };
    let effect = format!(
        "istiod binds {what} to no waypoint, so its traffic goes straight to the pods and the waypoint's L7 policies are not enforced (fail open: only the condition istio.io/WaypointBound=False says so)"
    );
    Some(match why {
        Unbound::Missing => (
            format!("{USE_WAYPOINT} names waypoint {wns}/{name}, which does not exist: {effect}"),
            format!("create the waypoint (istioctl waypoint apply -n {wns} --name {name}) or correct the label"),
        ),
        Unbound::NotReady => (
            format!("{USE_WAYPOINT} names waypoint {wns}/{name}, which is not ready (no addresses in its status): {effect}"),
            format!("find out why the waypoint is not programmed: kubectl -n {wns} describe gateway {name}"),
        ),
        Unbound::NotPermitted(from) => (
            format!("{USE_WAYPOINT} names waypoint {wns}/{name}, whose HBONE listener admits routes from {from}, not from namespace {namespace:?}: {effect}"),
            format!("admit namespace {namespace:?} in the listener's allowedRoutes.namespaces of Gateway {wns}/{name} (from: All, or from: Selector matching it)"),
        ),
        Unbound::TrafficType(t) => (
            format!("{USE_WAYPOINT} names waypoint {wns}/{name}, a waypoint for {t} traffic, not for the traffic of {what}: {effect}"),
            format!("label Gateway {wns}/{name} istio.io/waypoint-for=all (or name a waypoint for this traffic)"),
        ),
    })
}

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let topology = cx.topology();
    let label_path = format!("metadata.labels{}", quoted_key(USE_WAYPOINT));
    let mut namespaces: Vec<&str> = topology.namespaces().collect();
    namespaces.sort_unstable();
    for ns in namespaces {
        if cx.is_exempt_namespace(ns) {
            continue;
        }
        let b = topology.namespace_binding(ns);
        if let Some((message, fix)) = explain(&b, "the Services of the namespace", ns) {
            out.push((
                cx.namespace_subject(ns),
                Violation::new(label_path.clone(), message, fix),
            ));
        }
    }
    for s in topology.services() {
        if cx.is_exempt_namespace(&s.namespace) {
            continue;
        }
        if !matches!(&s.binding, Binding::Unbound { source: LabelSource::Object, .. }) {
            continue; // inherited from the namespace: reported there
        }
        let kind = match s.kind {
            crate::dataplane::ServiceKind::Service => Kind::Service,
            crate::dataplane::ServiceKind::ServiceEntry => Kind::ServiceEntry,
        };
        let Some(o) = cx.inventory.find(kind, &s.namespace, &s.name) else {
            continue;
        };
        if let Some((message, fix)) = explain(&s.binding, &s.label(), &s.namespace) {
            out.push((o.subject(), Violation::new(label_path.clone(), message, fix)));
        }
    }
    for w in cx.inventory.workloads() {
        let wl = &w.workload;
        if cx.is_exempt_namespace(&wl.namespace) || !wl.labels.contains_key(USE_WAYPOINT) {
            continue;
        }
        let b = topology.workload_binding(&wl.namespace, &wl.labels);
        let o = cx.inventory.workload_object(w);
        let what = format!("the pods of {} {}", wl.kind.as_str().to_ascii_lowercase(), wl.name);
        if let Some((message, fix)) = explain(&b, &what, &wl.namespace) {
            let path = o.template()
                .map_or_else(|| label_path.clone(), |t| t.label_path(USE_WAYPOINT));
            out.push((o.subject(), Violation::new(path, message, fix)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cross::testing::*;
    use serde_json::json;

    fn gateway(ns: &str, name: &str, labels: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"gatewayClassName": "istio-waypoint",
                "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}})
    }

    fn service(ns: &str, name: &str, labels: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}})
    }

    #[test]
    fn fires_on_every_way_a_label_binds_nothing() {
        let found = findings(
            &CHECK,
            true,
            vec![
                namespace("shop", json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "gone"})),
                namespace("infra", json!({})),
                gateway("infra", "private", json!({})),
                gateway("shop", "pods-only", json!({"istio.io/waypoint-for": "workload"})),
                service("shop", "a", json!({"istio.io/use-waypoint": "private", "istio.io/use-waypoint-namespace": "infra"})),
                service("shop", "b", json!({"istio.io/use-waypoint": "pods-only"})),
                service("shop", "c", json!({})),
                deployment("shop", "web", json!({"app": "web", "istio.io/use-waypoint": "missing"}), &[80]),
            ],
        );
        let subjects: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            subjects,
            ["Namespace shop", "Service shop/a", "Service shop/b", "Deployment shop/web"],
            "{found:?}"
        );
        assert!(found[0].2.contains("names waypoint shop/gone, which does not exist"));
        assert!(found[0].2.contains("fail open"));
        assert!(found[1].2.contains("admits routes from Same"), "{}", found[1].2);
        assert!(found[2].2.contains("a waypoint for workload traffic"));
        assert_eq!(
            found[3].1,
            "spec.template.metadata.labels[\"istio.io/use-waypoint\"]"
        );
    }

    #[test]
    fn quiet_when_bound_opted_out_or_inherited_by_pods() {
        let found = findings(
            &CHECK,
            true,
            vec![
                namespace("shop", json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"})),
                gateway("shop", "waypoint", json!({})),
                service("shop", "a", json!({})),
                service("shop", "b", json!({"istio.io/use-waypoint": "none"})),
                // Pods inherit a service waypoint from the namespace: not an error.
                deployment("shop", "web", json!({"app": "web"}), &[80]),
                // The same labels in a sidecar namespace, bound: quiet.
                namespace("payments", json!({"istio-injection": "enabled", "istio.io/use-waypoint": "waypoint"})),
                gateway("payments", "waypoint", json!({})),
            ],
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
