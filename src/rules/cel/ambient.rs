//! The ambient rules ([`crate::rules::ambient`]) have no CEL form: each first asks whether
//! ztunnel enforces the policy, which is the namespace's data plane as the mesh resolves it.

use super::NotInCel;
use crate::rules::ambient as a;

const DATA_PLANE: &str = "whether ztunnel enforces the policy is the namespace's data plane as the mesh resolves it (the istio.io/dataplane-mode label weighed against the injection labels and the ztunnel and istio-cni DaemonSets actually installed, rules::ambient namespace_plane), which the webhook watches and no admission policy can read";

pub(crate) static ZTUNNEL_HTTP: NotInCel = NotInCel {
    rule: &a::ZTUNNEL_HTTP,
    why: DATA_PLANE,
};

pub(crate) static ZTUNNEL_ACTION: NotInCel = NotInCel {
    rule: &a::ZTUNNEL_ACTION,
    why: DATA_PLANE,
};

pub(crate) static RA_AMBIENT_SELECTOR: NotInCel = NotInCel {
    rule: &a::RA_AMBIENT_SELECTOR,
    why: DATA_PLANE,
};
