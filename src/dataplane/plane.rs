//! Which data plane carries a pod's traffic: its sidecar, its node's ztunnel (ambient), or
//! nothing, from the mesh as installed (the injector decision of [`MeshContext::injection`] and
//! the istio-cni node agent's enrolment, [`crate::mesh::AmbientInstall`]).
//!
//! The order is Istio's: a host-network pod is neither injected nor captured; a pod the injector
//! gives a sidecar (or that already carries one: the `sidecar.istio.io/status` annotation) is a
//! sidecar pod, never captured (istio/istio `cni/pkg/util/enablement_selector.go`, `Matches`:
//! "Ztunnel and sidecar for a single pod is currently not supported; opt out"); otherwise the node
//! agent's enablement selectors and `excludeNamespaces` decide. `istio-injection=disabled` does not
//! stop ambient capture (the node agent never reads it).

use super::labels::{go_bool, BYPASS_INBOUND_CAPTURE, DATAPLANE_MODE, SIDECAR_STATUS};
use crate::context::Lookup;
use crate::mesh::{Capture, MeshContext};
use crate::model::workload::PodTemplate;
use std::collections::BTreeMap;

/// The data plane of a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Plane {
    /// The sidecar injector adds istio-proxy.
    Sidecar,
    /// No sidecar; ztunnel captures the pod (ambient mode).
    Ambient,
    /// Neither: the pod runs outside the mesh.
    Outside,
    /// The namespace's labels are not known, and the pod's own labels do not settle it.
    Unknown,
}

impl Plane {
    pub fn as_str(self) -> &'static str {
        match self {
            Plane::Sidecar => "sidecar",
            Plane::Ambient => "ambient",
            Plane::Outside => "none",
            Plane::Unknown => "unknown",
        }
    }
}

/// Why a pod is outside the mesh (or why ztunnel does not capture it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outside {
    /// `hostNetwork: true`: never injected, never captured.
    HostNetwork,
    /// The pod label `istio.io/dataplane-mode: none`.
    OptedOut,
    /// Ambient is not installed (or the node agent has ambient off).
    AmbientOff,
    /// Its namespace is in istio-cni's `excludeNamespaces`.
    Excluded,
    /// Neither an injector nor the node agent's selectors pick it.
    NotEnrolled,
}

impl Outside {
    /// In words, for messages.
    pub fn describe(self, namespace: &str) -> String {
        match self {
            Outside::HostNetwork => {
                "it uses the host network, so it is neither injected nor captured by ztunnel"
                    .to_owned()
            }
            Outside::OptedOut => format!("the pod label {DATAPLANE_MODE}: none opts it out"),
            Outside::AmbientOff => {
                "ambient capture is not installed (no ztunnel and istio-cni with ambient enabled)"
                    .to_owned()
            }
            Outside::Excluded => format!(
                "namespace {namespace:?} is in istio-cni's excludeNamespaces, so ztunnel never captures its pods"
            ),
            Outside::NotEnrolled => {
                "no injector selects it and it is not enrolled in ambient mode".to_owned()
            }
        }
    }
}

/// A pod's data plane and what else decides how its traffic is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodPlane {
    pub plane: Plane,
    /// Why it is outside the mesh (or not captured), when it is.
    pub outside: Option<Outside>,
    /// `ambient.istio.io/bypass-inbound-capture: "true"` on an ambient pod: plaintext inbound
    /// traffic reaches the application without ztunnel (HBONE still goes through it).
    pub(crate) bypass_inbound: bool,
}

impl PodPlane {
    fn of(plane: Plane) -> PodPlane {
        PodPlane {
            plane,
            outside: None,
            bypass_inbound: false,
        }
    }

    fn outside(why: Outside) -> PodPlane {
        PodPlane {
            plane: Plane::Outside,
            outside: Some(why),
            bypass_inbound: false,
        }
    }
}

/// Where a pod's traffic goes, from the injector decision (`inject`, when the namespace's labels
/// are known) and the mesh's ambient enrolment.
pub fn pod_plane(
    mesh: &MeshContext,
    namespace: &str,
    t: &PodTemplate<'_>,
    ns: &Lookup<BTreeMap<String, String>>,
    inject: Option<bool>,
) -> PodPlane {
    if t.host_network() {
        return PodPlane::outside(Outside::HostNetwork);
    }
    if t.annotation(SIDECAR_STATUS).is_some() {
        return PodPlane::of(Plane::Sidecar); // injected already: never captured
    }
    let pod_mode = t.label(DATAPLANE_MODE);
    let ambient = mesh.ambient();
    let Lookup::Found(labels) = ns else {
        if t.opts_in() {
            return PodPlane::of(Plane::Sidecar);
        }
        // Pod-level ambient enrolment is certain only when the pod also refuses a sidecar
        // (otherwise a sidecar namespace would inject it, and sidecars win) and the node agent
        // enrols it whatever its namespace says.
        if t.injection_disabled()
            && ambient.captures(namespace, &crate::mesh::NoLabels, &t.label_view())
                == Capture::Captured
        {
            return captured(t);
        }
        return PodPlane::of(Plane::Unknown);
    };
    if inject == Some(true) {
        return PodPlane::of(Plane::Sidecar);
    }
    match ambient.captures(namespace, labels, &t.label_view()) {
        Capture::Captured => captured(t),
        Capture::Off => PodPlane::outside(Outside::AmbientOff),
        Capture::Excluded => PodPlane::outside(Outside::Excluded),
        Capture::NotSelected if pod_mode == Some("none") => PodPlane::outside(Outside::OptedOut),
        Capture::NotSelected => PodPlane::outside(Outside::NotEnrolled),
    }
}

fn captured(t: &PodTemplate<'_>) -> PodPlane {
    PodPlane {
        plane: Plane::Ambient,
        outside: None,
        bypass_inbound: t.annotation(BYPASS_INBOUND_CAPTURE).is_some_and(go_bool),
    }
}

/// The data plane of a workload (a Pod, or a controller's pod template) in the mesh as
/// installed: a Pod that already carries the proxy has a sidecar; otherwise the injector decision
/// (when the namespace's labels are known) and ambient enrolment.
pub fn workload_plane(
    mesh: &MeshContext,
    namespace: &str,
    t: &PodTemplate<'_>,
    ns: &Lookup<BTreeMap<String, String>>,
) -> PodPlane {
    if t.is_pod() && t.has_proxy() {
        return PodPlane::of(Plane::Sidecar);
    }
    let inject = match ns {
        Lookup::Found(labels) => {
            let (pl, pa) = (t.label_view(), t.annotation_view());
            Some(
                mesh.injection(namespace, labels, &pl, &pa, t.host_network())
                    .inject,
            )
        }
        _ => None,
    };
    pod_plane(mesh, namespace, t, ns, inject)
}

/// The data plane of a plain pod (no labels of its own) created in a namespace with these
/// labels: what a policy in the namespace is enforced by, as far as the namespace can tell.
pub fn namespace_plane(
    mesh: &MeshContext,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Plane {
    if mesh.namespace_injection(namespace, labels).inject {
        return Plane::Sidecar;
    }
    match mesh
        .ambient()
        .captures(namespace, labels, &crate::mesh::NoLabels)
    {
        Capture::Captured => Plane::Ambient,
        _ => Plane::Outside,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::DynamicObject;
    use serde_json::json;

    fn deployment(
        labels: serde_json::Value,
        annotations: serde_json::Value,
        host: bool,
    ) -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": {"metadata": {"labels": labels, "annotations": annotations},
                "spec": {"hostNetwork": host, "containers": [{"name": "app", "image": "app"}]}}}}))
        .expect("deployment")
    }

    fn ns(pairs: &[(&str, &str)]) -> Lookup<BTreeMap<String, String>> {
        Lookup::Found(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn plane(o: &DynamicObject, n: &Lookup<BTreeMap<String, String>>) -> PodPlane {
        let t = PodTemplate::of(crate::resource::Kind::Deployment, o).expect("template");
        workload_plane(&MeshContext::default(), "shop", &t, n)
    }

    #[test]
    fn sidecar_wins_and_ambient_follows_the_node_agent() {
        let amb = ns(&[(DATAPLANE_MODE, "ambient")]);
        let plain = deployment(json!({}), json!({}), false);
        assert_eq!(plane(&plain, &amb).plane, Plane::Ambient);
        // A sidecar namespace that is also labelled ambient: sidecars win.
        let both = ns(&[("istio-injection", "enabled"), (DATAPLANE_MODE, "ambient")]);
        assert_eq!(plane(&plain, &both).plane, Plane::Sidecar);
        // A pod asking for a sidecar in an ambient namespace gets one.
        let asks = deployment(json!({"sidecar.istio.io/inject": "true"}), json!({}), false);
        assert_eq!(plane(&asks, &amb).plane, Plane::Sidecar);
        // istio-injection=disabled does not stop ambient capture.
        let off = ns(&[("istio-injection", "disabled"), (DATAPLANE_MODE, "ambient")]);
        assert_eq!(plane(&plain, &off).plane, Plane::Ambient);
        // dataplane-mode none opts out; hostNetwork is never captured.
        let none = deployment(json!({DATAPLANE_MODE: "none"}), json!({}), false);
        assert_eq!(plane(&none, &amb).outside, Some(Outside::OptedOut));
        let host = deployment(json!({}), json!({}), true);
        assert_eq!(plane(&host, &amb).outside, Some(Outside::HostNetwork));
        // An injected pod (sidecar status annotation) is never captured.
        let injected = deployment(json!({}), json!({SIDECAR_STATUS: "{}"}), false);
        assert_eq!(plane(&injected, &amb).plane, Plane::Sidecar);
        // A pod labelled ambient is captured anywhere; excluded namespaces win.
        let pod_amb = deployment(json!({DATAPLANE_MODE: "ambient"}), json!({}), false);
        assert_eq!(plane(&pod_amb, &ns(&[])).plane, Plane::Ambient);
        let t = PodTemplate::of(crate::resource::Kind::Deployment, &pod_amb).expect("t");
        assert_eq!(
            workload_plane(&MeshContext::default(), "kube-system", &t, &ns(&[])).outside,
            Some(Outside::Excluded)
        );
        // bypass-inbound-capture is kept with the plane.
        let bypass = deployment(json!({}), json!({BYPASS_INBOUND_CAPTURE: "true"}), false);
        let p = plane(&bypass, &amb);
        assert!(p.plane == Plane::Ambient && p.bypass_inbound);
        // Unknown namespace labels: only a pod that enrols itself and refuses a sidecar is sure.
        let unknown = Lookup::Unknown;
        assert_eq!(plane(&plain, &unknown).plane, Plane::Unknown);
        let sure = deployment(
            json!({DATAPLANE_MODE: "ambient", "sidecar.istio.io/inject": "false"}),
            json!({}),
            false,
        );
        assert_eq!(plane(&sure, &unknown).plane, Plane::Ambient);
    }

    #[test]
    fn namespace_plane_is_a_plain_pods() {
        let mesh = MeshContext::default();
        let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            namespace_plane(&mesh, "shop", &l(&[(DATAPLANE_MODE, "ambient")])),
            Plane::Ambient
        );
        assert_eq!(
            namespace_plane(&mesh, "shop", &l(&[("istio-injection", "enabled")])),
            Plane::Sidecar
        );
        assert_eq!(namespace_plane(&mesh, "shop", &l(&[])), Plane::Outside);
    }
}
