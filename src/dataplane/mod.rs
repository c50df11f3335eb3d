//! The data-plane model: for every workload its enforcement point — its sidecar, its node's
//! ztunnel (ambient), ztunnel behind a workload waypoint, or nothing — and for every Service
//! (and ServiceEntry) the waypoint its traffic goes through. Rules, cross checks, mutations,
//! effective mTLS, the simulator and the posture page ask this module; none of them reads the
//! labels itself.
//!
//! * [`labels`]: the labels and annotations that decide (`istio.io/dataplane-mode`,
//!   `istio.io/use-waypoint` and friends, `ambient.istio.io/bypass-inbound-capture`), with
//!   Istio's reading of each.
//! * [`plane`]: a pod's data plane from the mesh as installed — the injector decision, then the
//!   istio-cni node agent's enrolment ([`crate::mesh::AmbientInstall`]; sidecars win,
//!   host-network pods are never captured).
//! * [`topology`]: Gateways (waypoints and ingress), the waypoint each Service, ServiceEntry and
//!   pod binds to (with the reasons istiod binds nothing: fail open), the identities istiod
//!   creates for gateways, and the HTTPRoutes ingress gateways follow.
//!
//! The objects it reads are typed in [`crate::model`]: [`crate::model::gateway`],
//! [`crate::model::gateway_class`], [`crate::model::http_route`],
//! [`crate::model::service_entry`] and [`crate::model::Service`].
//!
//! Pure: no I/O.

pub mod labels;
pub mod plane;
pub mod topology;

pub use plane::{namespace_plane, pod_plane, workload_plane, Outside, Plane, PodPlane};
pub use topology::{
    Binding, Gateway, LabelSource, Readiness, Service, ServiceKind, Topology, TrafficType, Unbound,
};

/// A workload's enforcement point: who checks traffic addressed to its pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// Its sidecar (mTLS, every AuthorizationPolicy that selects it, L7).
    Sidecar,
    /// Its node's ztunnel (L4 policy only, at the destination); `waypoint`: pod-addressed traffic
    /// first goes through this workload waypoint (index into [`Topology::gateways`]).
    Ztunnel { waypoint: Option<usize> },
    /// Nothing: no proxy sees its inbound traffic.
    None,
    /// Its namespace's labels are unknown.
    Unknown,
}

impl Enforcement {
    /// From a pod's data plane and its workload-waypoint binding.
    pub fn of(plane: Plane, binding: &Binding) -> Enforcement {
        match plane {
            Plane::Sidecar => Enforcement::Sidecar,
            Plane::Ambient => Enforcement::Ztunnel {
                waypoint: binding.gateway(),
            },
            Plane::Outside => Enforcement::None,
            Plane::Unknown => Enforcement::Unknown,
        }
    }

    /// `sidecar`, `ztunnel`, `ztunnel+waypoint <ns/name>`, `none`, `unknown`.
    pub fn describe(self, topology: &Topology) -> String {
        match self {
            Enforcement::Sidecar => "sidecar".to_owned(),
            Enforcement::Ztunnel { waypoint: None } => "ztunnel".to_owned(),
            Enforcement::Ztunnel { waypoint: Some(w) } => {
                format!("ztunnel + waypoint {}", topology.gateway(w).id())
            }
            Enforcement::None => "none".to_owned(),
            Enforcement::Unknown => "unknown".to_owned(),
        }
    }
}
