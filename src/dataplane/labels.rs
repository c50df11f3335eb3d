//! How Istio reads the labels and annotations that put a pod on a data plane (istio/api
//! `label/labels.yaml`, `annotation/annotations.yaml`); the keys themselves are defined once, in
//! [`crate::model::labels`].

use std::collections::BTreeMap;

pub use crate::model::labels::{
    AMBIENT_REDIRECTION, BYPASS_INBOUND_CAPTURE, DATAPLANE_MODE, GATEWAY_MANAGED, GATEWAY_NAME,
    GATEWAY_SERVICE_ACCOUNT, INGRESS_USE_WAYPOINT, ISTIO_INJECTION, MESH_CONTROLLER, REV,
    SIDECAR_STATUS, USE_WAYPOINT, USE_WAYPOINT_NAMESPACE, WAYPOINT_CLASS, WAYPOINT_FOR,
    WAYPOINT_INBOUND_BINDING,
};

/// What a namespace's labels mean for sidecar injection and ambient enrolment (label precedence
/// only; whether an injector or ztunnel acts on them is the mesh context's decision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection<'a> {
    /// `istio-injection=enabled`, or `istio.io/rev` without `istio-injection`.
    Sidecar,
    /// `istio-injection` with any value but `enabled` (it wins over `istio.io/rev`).
    Off(&'a str),
    /// `istio.io/dataplane-mode=ambient` and no sidecar label.
    Ambient,
    /// No injection label at all.
    None,
}

/// Read a namespace's injection mode from its labels, with Istio's precedence.
pub fn injection(labels: &BTreeMap<String, String>) -> Injection<'_> {
    match labels.get(ISTIO_INJECTION) {
        Some(v) if v == "enabled" => Injection::Sidecar,
        Some(v) => Injection::Off(v),
        None if labels.get(REV).is_some_and(|r| !r.is_empty()) => Injection::Sidecar,
        None if is_ambient(labels) => Injection::Ambient,
        None => Injection::None,
    }
}

/// `istio.io/dataplane-mode=ambient` among the labels (of a namespace or a pod).
pub(crate) fn is_ambient(labels: &BTreeMap<String, String>) -> bool {
    labels.get(DATAPLANE_MODE).is_some_and(|m| m == "ambient")
}

/// Whether a namespace's labels put its pods in the mesh: injected with a sidecar, or captured by
/// ztunnel (ambient, which also applies where `istio-injection` keeps sidecars out).
pub(crate) fn in_mesh(labels: &BTreeMap<String, String>) -> bool {
    injection(labels) == Injection::Sidecar || is_ambient(labels)
}

/// A boolean as Go's `strconv.ParseBool` reads it (how Istio reads annotation flags).
pub(crate) fn go_bool(v: &str) -> bool {
    matches!(v.trim(), "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// The waypoint an object's labels name (`istio.io/use-waypoint`, in
/// `istio.io/use-waypoint-namespace` or `default_namespace`), istio/istio
/// `pilot/pkg/serviceregistry/ambient/waypoints.go` `GetUseWaypoint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UseWaypoint<'a> {
    /// No `istio.io/use-waypoint` label.
    Unset,
    /// `istio.io/use-waypoint: none`: opted out.
    None,
    /// `(namespace, name)`.
    Named(&'a str, &'a str),
}

pub(crate) fn use_waypoint<'a>(
    labels: &'a BTreeMap<String, String>,
    default_namespace: &'a str,
) -> UseWaypoint<'a> {
    match labels.get(USE_WAYPOINT) {
        None => UseWaypoint::Unset,
        Some(v) if v == "none" => UseWaypoint::None,
        Some(v) => UseWaypoint::Named(
            labels
                .get(USE_WAYPOINT_NAMESPACE)
                .map_or(default_namespace, String::as_str),
            v,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn injection_precedence() {
        assert_eq!(
            injection(&l(&[(ISTIO_INJECTION, "enabled")])),
            Injection::Sidecar
        );
        assert_eq!(
            injection(&l(&[(ISTIO_INJECTION, "disabled"), (REV, "canary")])),
            Injection::Off("disabled")
        );
        assert_eq!(injection(&l(&[(REV, "canary")])), Injection::Sidecar);
        assert_eq!(
            injection(&l(&[(DATAPLANE_MODE, "ambient")])),
            Injection::Ambient
        );
        assert_eq!(injection(&l(&[(DATAPLANE_MODE, "none")])), Injection::None);
        // istio-injection=disabled does not stop ambient capture.
        assert!(in_mesh(&l(&[
            (ISTIO_INJECTION, "disabled"),
            (DATAPLANE_MODE, "ambient")
        ])));
        assert!(!in_mesh(&l(&[(ISTIO_INJECTION, "disabled")])));
    }

    #[test]
    fn use_waypoint_labels() {
        let own = l(&[(USE_WAYPOINT, "wp")]);
        assert_eq!(use_waypoint(&own, "shop"), UseWaypoint::Named("shop", "wp"));
        let cross = l(&[(USE_WAYPOINT, "wp"), (USE_WAYPOINT_NAMESPACE, "infra")]);
        assert_eq!(
            use_waypoint(&cross, "shop"),
            UseWaypoint::Named("infra", "wp")
        );
        assert_eq!(
            use_waypoint(&l(&[(USE_WAYPOINT, "none")]), "shop"),
            UseWaypoint::None
        );
        assert_eq!(use_waypoint(&l(&[]), "shop"), UseWaypoint::Unset);
        assert!(go_bool("True") && !go_bool("yes"));
    }
}
