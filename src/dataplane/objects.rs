//! Typed views of the objects the data-plane model reads besides workloads: Gateway API
//! `Gateway`, `GatewayClass`, `HTTPRoute` (gateway.networking.k8s.io v1 and v1beta1, the same
//! shape) and Istio's `ServiceEntry` (a `Service` is read through [`crate::model::Service`]).
//! Each is a small serde struct decoded from the object's JSON without copying it; anything
//! malformed decodes as far as it goes, with the error kept for the explanation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::DynamicObject;
use serde::Deserialize;
use serde_json::Value;

/// Decode a part of an object (`spec`, `status`) into `T`; a missing part is `T::default()`, a
/// malformed one too, with the decoding error.
pub fn part<T: for<'de> Deserialize<'de> + Default>(
    obj: &DynamicObject,
    key: &str,
) -> (T, Option<String>) {
    match obj.data.get(key) {
        None | Some(Value::Null) => (T::default(), None),
        Some(v) => match T::deserialize(v) {
            Ok(t) => (t, None),
            Err(e) => (T::default(), Some(format!("{key}: {e}"))),
        },
    }
}

/// `Gateway.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(default)]
    pub gateway_class_name: String,
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// One listener of a Gateway.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub port: u32,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `listeners[].allowedRoutes`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    #[serde(default)]
    pub namespaces: Option<RouteNamespaces>,
}

/// `allowedRoutes.namespaces`: `from` is `Same` (the default), `All` or `Selector`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

/// `Gateway.status` (only what readiness needs).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    #[serde(default)]
    pub addresses: Vec<GatewayAddress>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddress {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub value: String,
}

/// `GatewayClass.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    #[serde(default)]
    pub controller_name: String,
}

/// `HTTPRoute.spec`: where it attaches and where it sends.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ObjectRef>,
    #[serde(default)]
    pub rules: Vec<RouteRule>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    #[serde(default)]
    pub backend_refs: Vec<ObjectRef>,
}

/// A `parentRef` or `backendRef` (group, kind and namespace default by context).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(default)]
    pub section_name: Option<String>,
}

/// `ServiceEntry.spec` (networking.istio.io).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub ports: Vec<ServiceEntryPort>,
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelectorSpec>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntryPort {
    #[serde(default)]
    pub number: u32,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub target_port: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct WorkloadSelectorSpec {
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).expect("object")
    }

    #[test]
    fn parts_decode_and_keep_errors() {
        let gw = obj(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "waypoint", "namespace": "shop"},
            "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE",
                "allowedRoutes": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}}}}]},
            "status": {"addresses": [{"type": "Hostname", "value": "waypoint.shop.svc.cluster.local"}]}}),
        );
        let (spec, err): (GatewaySpec, _) = part(&gw, "spec");
        assert!(err.is_none());
        assert_eq!(spec.gateway_class_name, "istio-waypoint");
        let ns = spec.listeners[0]
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
            .expect("namespaces");
        assert_eq!(ns.from.as_deref(), Some("Selector"));
        let (status, _): (GatewayStatus, _) = part(&gw, "status");
        assert_eq!(status.addresses.len(), 1);
        let bad = obj(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "x"}, "spec": {"listeners": "nope"}}),
        );
        let (spec, err): (GatewaySpec, _) = part(&bad, "spec");
        assert!(spec.listeners.is_empty() && err.is_some());
    }
}
