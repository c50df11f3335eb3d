//! The guard rules of the data plane's own pieces in a pod: the proxy containers
//! ([`crate::rules::proxy`]) and hostNetwork in the mesh. Those that read the mesh as installed
//! (the injectors' templates, images and selectors) have no CEL form; `wl-net-admin` reads the
//! pod alone and has one, telling Istio's own containers apart as [`crate::rules::proxy`] does.
//! The EnvoyFilter and Sidecar rules are in [`super::envoy_filter`] and [`super::sidecar`].

use super::workload::{with_template, CONTAINERS};
use super::{lit, lit_list, site, CelForm, Coverage, NotInCel, On};
use crate::model::workload::{
    INIT_CONTAINER, PROXY_CONTAINER, STATUS_ANNOTATION, VALIDATION_CONTAINER,
};
use crate::rules::{proxy, workload as wl};

pub(crate) static PROXY_OVERRIDE: NotInCel = NotInCel {
    rule: &proxy::PROXY_OVERRIDE,
    why: "what the injector runs is its templates and values (the injector ConfigMaps, the mesh as installed), and whether a hand-written sidecar's pod is selected by an injector is the injectors' decision; the webhook watches both and no admission policy can read them",
};

/// The verb Istio's own container `x` runs as its first argument (`proxy` for `istio-proxy`,
/// `istio-iptables` for `istio-init` and `istio-validation`), `''` for every other container:
/// `proxy::role`.
fn verb() -> String {
    format!(
        "(x.l == 'containers' && x.c.?name.orValue('') == {p} || x.l == 'initContainers' && x.c.?name.orValue('') == {p} && x.c.?restartPolicy.orValue('') == 'Always') ? 'proxy' : (x.l == 'initContainers' && x.c.?name.orValue('') in {iptables} ? 'istio-iptables' : '')",
        p = lit(PROXY_CONTAINER),
        iptables = lit_list(&[INIT_CONTAINER, VALIDATION_CONTAINER]),
    )
}

/// Container `x` is not Istio's own by `proxy::deviation`'s tests that read the pod alone: not
/// named and placed like Istio's, or (on a Pod that runs applications) a name the injector's
/// `sidecar.istio.io/status` does not list, or a `command`, or `args` that do not start with
/// Istio's verb. The status annotation is JSON, which CEL cannot parse: a name counts as listed
/// when the annotation holds it as a JSON string, or holds any escape (where a listed name could
/// hide), so the policy never takes a container for the pod's own that the webhook takes for
/// Istio's.
fn not_istios() -> String {
    format!(
        "[{verb}].all(v, v == '' || request.kind.kind == 'Pod' && $apps && !($status.contains('\"' + string(x.c.?name.orValue('')) + '\"') || $status.contains('\\\\')) || x.c.?command.hasValue() || x.c.?args.hasValue() && (size(x.c.args) == 0 || string(x.c.args[0]) != v))",
        verb = verb(),
    )
}

/// A capability as the runtime reads it (`proxy::capability`), from `cap`.
const CAPABILITY: &str =
    "[string(cap).trim().upperAscii()].map(u, u.startsWith('CAP_') ? u.substring(4) : u)[0]";

pub static NET_ADMIN: CelForm = CelForm {
    rule: &proxy::NET_ADMIN,
    coverage: Coverage::Partly(
        "containers named like Istio's whose image is not the injector's (the webhook reads the injector's image from its ConfigMaps; the policy spares a container named istio-proxy, istio-init or istio-validation whatever its image), and ephemeral containers added through the pods/ephemeralcontainers subresource (the policy judges those already in a Pod written)",
    ),
    on: On::Write,
    kinds: None,
    cel: || {
        let containers = format!(
            "{CONTAINERS} + $spec.?ephemeralContainers.orValue([]).transformList(i, c, {{'l': dyn('ephemeralContainers'), 'i': dyn(i), 'c': dyn(c)}})"
        );
        let kind = "(x.l == 'ephemeralContainers' ? 'ephemeral container ' : 'container ') + strings.quote(string(x.c.?name.orValue('')))";
        let privileged = site(
            "$pfx + 'spec.' + x.l + '[' + string(x.i) + '].securityContext.privileged'",
            &format!("{kind} + ' is privileged: it holds every capability, NET_ADMIN included, so it can rewrite the pod\\'s iptables and send the pod\\'s traffic around the sidecar, without mTLS or AuthorizationPolicy'"),
            "'run it unprivileged (securityContext.privileged: false); if it must be, exempt this workload from wl-net-admin in the meshguard policy'",
        );
        let added = site(
            "$pfx + 'spec.' + x.l + '[' + string(x.i) + '].securityContext.capabilities.add[' + string(j) + ']'",
            &format!("{kind} + ' adds capability ' + strings.quote(string(cap)) + ': ' + [{CAPABILITY}].map(u, u == 'NET_RAW' ? 'NET_RAW lets it open raw sockets and craft packets outside the proxy\\'s connections' : (u == 'ALL' ? 'ALL includes NET_ADMIN, which lets it rewrite the pod\\'s iptables' : 'NET_ADMIN lets it rewrite the pod\\'s iptables'))[0] + ', sending the pod\\'s traffic around the sidecar, without mTLS or AuthorizationPolicy (the pod shares one network namespace)'"),
            "'remove ' + string(cap) + ' from securityContext.capabilities.add; if the container really needs it, exempt this workload from wl-net-admin in the meshguard policy'",
        );
        let mut extra = vec![
            ("containers", containers),
            (
                "apps",
                format!(
                    "$spec.?containers.orValue([]).exists(c, c.?name.orValue('') != {})",
                    lit(PROXY_CONTAINER)
                ),
            ),
            (
                "status",
                format!("string($annotations[?{}].orValue(''))", lit(STATUS_ANNOTATION)),
            ),
        ];
        extra.push((
            "judged",
            format!("$containers.filter(x, {})", not_istios()),
        ));
        with_template(
            extra,
            format!(
                "$judged.map(x, (x.c.?securityContext.?privileged.orValue(false) == true ? [{privileged}] : []) + x.c.?securityContext.?capabilities.?add.orValue([]).transformList(j, cap, {CAPABILITY} in {caps}, {added})).flatten()",
                caps = lit_list(&["NET_ADMIN", "NET_RAW", "ALL"]),
            ),
        )
    },
};

pub(crate) static INJECTION_TEMPLATE: NotInCel = NotInCel {
    rule: &proxy::INJECTION_TEMPLATE,
    why: "which injection templates install traffic capture is read from the injector ConfigMap's templates (custom ones included), which the webhook watches and no admission policy can read",
};

pub(crate) static HOST_NETWORK_IN_MESH: NotInCel = NotInCel {
    rule: &wl::HOST_NETWORK_IN_MESH,
    why: "whether the namespace is enrolled in the mesh (sidecar injection or ambient capture) is the injectors' and the installed data plane's decision, which the webhook watches and no admission policy can read",
};
