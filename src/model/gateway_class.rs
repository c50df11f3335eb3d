//! Gateway API `GatewayClass`: its controller (`spec.controllerName`), which tells a waypoint
//! class (`istio.io/mesh-controller`) from an ingress one; its `istio.io/waypoint-for` label is
//! read beside it ([`crate::dataplane::labels`]).

use super::Str;
use serde::Deserialize;

/// `GatewayClass.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GatewayClassSpec<'a> {
    #[serde(borrow, default)]
    pub(crate) controller_name: Str<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode_part;
    use serde_json::json;

    #[test]
    fn controller_name() {
        let o: kube::core::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "istio-waypoint"},
            "spec": {"controllerName": "istio.io/mesh-controller", "description": "x"}}))
        .expect("object");
        let (spec, err): (GatewayClassSpec<'_>, _) = decode_part(&o, "spec");
        assert_eq!(
            (spec.controller_name.as_str(), err),
            ("istio.io/mesh-controller", None)
        );
        let o: kube::core::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "x"}, "spec": {"controllerName": ["a"]}}))
        .expect("object");
        let (spec, err): (GatewayClassSpec<'_>, _) = decode_part(&o, "spec");
        assert_eq!(spec.controller_name.as_str(), "");
        assert_eq!(
            err.as_deref(),
            Some("spec: invalid type: sequence, expected a string")
        );
    }
}
