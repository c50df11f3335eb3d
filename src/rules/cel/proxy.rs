//! The guard rules of the data plane's own pieces: the proxy containers ([`crate::rules::proxy`]),
//! hostNetwork in the mesh, EnvoyFilters ([`crate::rules::envoy_filter`]) and Sidecars
//! ([`crate::rules::sidecar`]). None has a CEL form yet. Those that read the mesh as installed
//! never can; those that read only the object could, and say so.

use super::NotInCel;
use crate::rules::{envoy_filter as ef, proxy, sidecar, workload as wl};

/// A rule whose check reads only the object (and the policy's settings): a form is possible.
const NOT_YET: &str = "not stated in CEL yet: the check reads only the object (and the policy's settings), so a form is possible; until one is written only the webhook judges it";

pub static PROXY_OVERRIDE: NotInCel = NotInCel {
    rule: &proxy::PROXY_OVERRIDE,
    why: "what the injector runs is its templates and values (the injector ConfigMaps, the mesh as installed), and whether a hand-written sidecar's pod is selected by an injector is the injectors' decision; the webhook watches both and no admission policy can read them",
};

pub static NET_ADMIN: NotInCel = NotInCel {
    rule: &proxy::NET_ADMIN,
    why: NOT_YET,
};

pub static INJECTION_TEMPLATE: NotInCel = NotInCel {
    rule: &proxy::INJECTION_TEMPLATE,
    why: "which injection templates install traffic capture is read from the injector ConfigMap's templates (custom ones included), which the webhook watches and no admission policy can read",
};

pub static HOST_NETWORK_IN_MESH: NotInCel = NotInCel {
    rule: &wl::HOST_NETWORK_IN_MESH,
    why: "whether the namespace is enrolled in the mesh (sidecar injection or ambient capture) is the injectors' and the installed data plane's decision, which the webhook watches and no admission policy can read",
};

pub static SECURITY_FILTER: NotInCel = NotInCel {
    rule: &ef::SECURITY_FILTER,
    why: NOT_YET,
};

pub static TRANSPORT_SOCKET: NotInCel = NotInCel {
    rule: &ef::TRANSPORT_SOCKET,
    why: NOT_YET,
};

pub static INBOUND_LISTENER: NotInCel = NotInCel {
    rule: &ef::INBOUND_LISTENER,
    why: NOT_YET,
};

pub static INGRESS_TLS: NotInCel = NotInCel {
    rule: &sidecar::INGRESS_TLS,
    why: NOT_YET,
};
