//! Gateway API `HTTPRoute`: where it attaches (`spec.parentRefs`) and where it sends
//! (`spec.rules[].backendRefs`), which is what the data-plane model follows for ingress gateways
//! and waypoints. Group, kind and namespace of a reference default by context (the reader
//! applies the Gateway API's defaults: a parent is a `gateway.networking.k8s.io` `Gateway`, a
//! backend a core `Service`, both in the route's namespace).

use super::Str;
use serde::Deserialize;

/// `HTTPRoute.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HttpRouteSpec<'a> {
    #[serde(borrow, default)]
    pub(crate) parent_refs: Vec<ObjectRef<'a>>,
    #[serde(borrow, default)]
    pub(crate) rules: Vec<RouteRule<'a>>,
}

/// `spec.rules[]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RouteRule<'a> {
    #[serde(borrow, default)]
    pub(crate) backend_refs: Vec<ObjectRef<'a>>,
}

/// A `parentRef` or `backendRef`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef<'a> {
    #[serde(borrow, default)]
    pub group: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub kind: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub namespace: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub name: Str<'a>,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(borrow, default)]
    pub section_name: Option<Str<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode_part;
    use serde_json::json;

    #[test]
    fn parent_and_backend_refs() {
        let o: kube::core::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "shop"},
            "spec": {"parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "http"}],
                "hostnames": ["x"],
                "rules": [{"matches": [], "backendRefs": [{"name": "web", "port": 80}]}]}}))
        .expect("object");
        let (spec, err): (HttpRouteSpec<'_>, _) = decode_part(&o, "spec");
        assert!(err.is_none());
        assert_eq!(spec.parent_refs[0].name.as_str(), "gw");
        assert_eq!(spec.parent_refs[0].namespace.as_deref(), Some("infra"));
        assert_eq!(spec.rules[0].backend_refs[0].port, Some(80));
        let o: kube::core::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r"}, "spec": {"parentRefs": [{"name": 1}]}}))
        .expect("object");
        let (spec, err): (HttpRouteSpec<'_>, _) = decode_part(&o, "spec");
        assert!(spec.parent_refs.is_empty());
        assert_eq!(
            err.as_deref(),
            Some("spec: invalid type: integer `1`, expected a string")
        );
    }
}
