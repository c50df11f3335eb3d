//! Gateway API `Gateway` (gateway.networking.k8s.io v1 and v1beta1, the same shape): what the
//! data-plane model reads of it — the class, the listeners (port, protocol, `allowedRoutes`) and
//! whether the controller gave it addresses. The Istio labels and annotations read beside it
//! (`istio.io/waypoint-for`, `gateway.istio.io/service-account`,
//! `istio.io/waypoint-inbound-binding`) are in [`crate::model::labels`] and
//! [`crate::dataplane::labels`].
//!
//! meshguard does not validate Gateways (the Gateway API's CRD schema does): a part that does not
//! decode is read as absent, with the decoder's message kept for the explanation
//! ([`crate::model::decode_part`]).

use super::label_selector::LabelSelectorSpec;
use super::Str;
use serde::Deserialize;

/// `Gateway.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GatewaySpec<'a> {
    #[serde(borrow, default)]
    pub(crate) gateway_class_name: Str<'a>,
    #[serde(borrow, default)]
    pub(crate) listeners: Vec<Listener<'a>>,
}

/// One listener of a Gateway.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener<'a> {
    #[serde(borrow, default)]
    pub name: Str<'a>,
    #[serde(default)]
    pub port: u32,
    #[serde(borrow, default)]
    pub protocol: Str<'a>,
    #[serde(borrow, default)]
    pub(crate) allowed_routes: Option<AllowedRoutes<'a>>,
}

/// `listeners[].allowedRoutes`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AllowedRoutes<'a> {
    #[serde(borrow, default)]
    pub(crate) namespaces: Option<RouteNamespaces<'a>>,
}

/// `allowedRoutes.namespaces`: `from` is `Same` (the default), `All` or `Selector`; `selector` is
/// a Kubernetes label selector over namespaces' labels
/// ([`crate::model::label_selector`]; absent with `from: Selector`, it matches nothing).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RouteNamespaces<'a> {
    #[serde(borrow, default)]
    pub(crate) from: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(crate) selector: Option<LabelSelectorSpec<'a>>,
}

/// `Gateway.status` (only what readiness needs).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GatewayStatus<'a> {
    #[serde(borrow, default)]
    pub(crate) addresses: Vec<GatewayAddress<'a>>,
}

/// `status.addresses[]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddress<'a> {
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub value: Str<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode_part;
    use kube::core::DynamicObject;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> DynamicObject {
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
        let (spec, err): (GatewaySpec<'_>, _) = decode_part(&gw, "spec");
        assert!(err.is_none());
        assert_eq!(spec.gateway_class_name.as_str(), "istio-waypoint");
        let ns = spec.listeners[0]
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
            .expect("namespaces");
        assert_eq!(ns.from.as_deref(), Some("Selector"));
        let sel = ns.selector.as_ref().expect("selector").compile();
        assert!(sel.matches(&[("team", "a")]) && !sel.matches(&[("team", "b")]));
        let (status, _): (GatewayStatus<'_>, _) = decode_part(&gw, "status");
        assert_eq!(status.addresses.len(), 1);
    }

    #[test]
    fn malformed_parts_read_as_absent_with_the_message() {
        for (spec, message) in [
            (
                json!({"listeners": "nope"}),
                "spec: invalid type: string \"nope\", expected a sequence",
            ),
            (
                json!({"listeners": [{"port": -1}]}),
                "spec: invalid value: integer `-1`, expected u32",
            ),
            (
                json!({"listeners": [{"allowedRoutes": {"namespaces": {"selector": {"matchLabels": [1]}}}}]}),
                "spec: invalid type: sequence, expected a map",
            ),
            (
                json!({"listeners": [{"allowedRoutes": {"namespaces": {"selector": "x"}}}]}),
                "spec: invalid type: string \"x\", expected LabelSelector",
            ),
            (
                json!({"gatewayClassName": 5}),
                "spec: invalid type: integer `5`, expected a string",
            ),
        ] {
            let bad = obj(
                json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "x"}, "spec": spec}),
            );
            let (spec, err): (GatewaySpec<'_>, _) = decode_part(&bad, "spec");
            assert!(spec.listeners.is_empty());
            assert_eq!(err.as_deref(), Some(message));
        }
    }
}
