//! CEL forms of the workload rules ([`crate::rules::workload`]).
//!
//! The pod template is found as [`crate::model::workload::PodTemplate`] finds it: a Pod is its own,
//! CronJobs carry it at `spec.jobTemplate.spec.template`, the other controllers at
//! `spec.template`; field paths get the same prefix. The namespace's labels are
//! `namespaceObject`'s, the same labels the webhook reads from its namespace cache.
//!
//! Whether a pod gets a sidecar is the injector's decision (its webhooks' selectors and its
//! configuration), which no policy can see: the forms below judge only what holds whatever the
//! injectors decide, and say what they leave to the webhook.

use super::{lit, lit_list, site, site_if, Cel, CelForm, Coverage, NotInCel, On};
use crate::model::workload::{INJECT, PROXY_CONTAINER, PROXY_UID};
use crate::resource::Kind;
use crate::rules::namespace::DATAPLANE_MODE;
use crate::rules::workload as wl;

/// The template and its parts, for every workload kind.
pub(super) fn template() -> Vec<(&'static str, String)> {
    vec![
        (
            "tpl",
            "request.kind.kind == 'Pod' ? dyn($o) : (request.kind.kind == 'CronJob' ? dyn($o).?spec.?jobTemplate.?spec.?template.orValue({}) : dyn($o).?spec.?template.orValue({}))".to_owned(),
        ),
        (
            "pfx",
            "request.kind.kind == 'Pod' ? '' : (request.kind.kind == 'CronJob' ? 'spec.jobTemplate.spec.template.' : 'spec.template.')".to_owned(),
        ),
        ("spec", "$tpl.?spec.orValue({})".to_owned()),
        ("labels", "$tpl.?metadata.?labels.orValue({})".to_owned()),
        (
            "annotations",
            "$tpl.?metadata.?annotations.orValue({})".to_owned(),
        ),
    ]
}

/// `containers` then `initContainers`, as `{'l': list, 'i': index, 'c': container}`.
pub(super) const CONTAINERS: &str = "$spec.?containers.orValue([]).transformList(i, c, {'l': dyn('containers'), 'i': dyn(i), 'c': dyn(c)}) + $spec.?initContainers.orValue([]).transformList(i, c, {'l': dyn('initContainers'), 'i': dyn(i), 'c': dyn(c)})";

/// `metadata.labels["key"]` (or annotations) below the template, as a CEL string.
fn meta_path(what: &str, key: &str) -> String {
    format!(
        "$pfx + {}",
        lit(&format!("metadata.{what}{}", crate::json::quoted_key(key)))
    )
}

pub(super) fn with_template(extra: Vec<(&'static str, String)>, sites: String) -> Cel {
    let mut variables = template();
    variables.extend(extra);
    Cel {
        variables,
        sites,
        weakening: None,
    }
}

pub(crate) static DEFAULT_SERVICE_ACCOUNT: CelForm = CelForm {
    rule: &wl::DEFAULT_SERVICE_ACCOUNT,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        with_template(
            vec![(
                // `service_account`: serviceAccountName, else the deprecated serviceAccount
                // (empty values do not count), as [field, value].
                "sa",
                "$spec.?serviceAccountName.orValue('') != '' ? ['serviceAccountName', string($spec.serviceAccountName)] : ($spec.?serviceAccount.orValue('') != '' ? ['serviceAccount', string($spec.serviceAccount)] : [])".to_owned(),
            )],
            site_if(
                "size($sa) == 0 || $sa[1] == 'default'",
                "$pfx + 'spec.' + (size($sa) == 0 ? 'serviceAccountName' : $sa[0])",
                "(size($sa) == 0 ? 'no serviceAccountName is set, so the pods run as the \"default\" ServiceAccount' : (request.kind.kind == 'Pod' ? 'the pod runs as the \"default\" ServiceAccount (the API server fills it in when the manifest names none)' : $sa[0] + ' is \"default\"')) + '; its identity ' + @trustDomain + '/ns/' + request.namespace + '/sa/default is shared by every workload without its own account, so AuthorizationPolicy cannot tell them apart'",
                "'create a ServiceAccount for this workload and set ' + $pfx + 'spec.serviceAccountName to its name (with an app.kubernetes.io/name or app label, meshguard names the account for you)'",
            ),
        )
    },
};

/// The effective `sidecar.istio.io/inject` setting as `[path, value, from annotation]`: the
/// label wins over the deprecated annotation.
fn inject_setting() -> (&'static str, String) {
    (
        "inject",
        format!(
            "{k} in $labels ? [string({lp}), string($labels[{k}]), 'label'] : ({k} in $annotations ? [string({ap}), string($annotations[{k}]), 'annotation'] : [])",
            k = lit(INJECT),
            lp = meta_path("labels", INJECT),
            ap = meta_path("annotations", INJECT),
        ),
    )
}

/// The pod would be captured by ztunnel if no sidecar is injected: not on hostNetwork, and
/// enrolled in ambient mode by its own label or its namespace's (the pod label `none` opts
/// out).
fn ambient_by_labels() -> (&'static str, String) {
    (
        "ambientByLabels",
        format!(
            "!$spec.?hostNetwork.orValue(false) && ($labels[?{m}].orValue('') == 'ambient' || ($labels[?{m}].orValue('') != 'none' && namespaceObject.metadata.?labels[?{m}].orValue('') == 'ambient'))",
            m = lit(DATAPLANE_MODE)
        ),
    )
}

pub(crate) static INJECTION_DISABLED: CelForm = CelForm {
    rule: &wl::INJECTION_DISABLED,
    coverage: Coverage::Partly(
        "other values than \"false\" (whether \"no\" or \"False\" keep the sidecar out depends on the injector's Istio version), and the label istio.io/dataplane-mode: none in an ambient namespace unless the pod also refuses the sidecar (whether it gets one is the injector's decision)",
    ),
    on: On::Write,
    kinds: None,
    cel: || {
        // With inject "false" no injector adds a sidecar, so the pod is ambient (no finding) or
        // outside the mesh: the webhook's reading whatever the injectors are. A hostNetwork pod
        // is outside the mesh whatever it says.
        let refused = "(size($inject) > 0 && $inject[1] == 'false')";
        let none = site_if(
            &format!(
                "({refused} || $spec.?hostNetwork.orValue(false)) && $labels[?{m}].orValue('') == 'none' && namespaceObject.metadata.?labels[?{m}].orValue('') == 'ambient'",
                m = lit(DATAPLANE_MODE)
            ),
            &meta_path("labels", DATAPLANE_MODE),
            &format!(
                "'{DATAPLANE_MODE}: \"none\" takes this pod out of the ambient mesh of namespace ' + strings.quote(request.namespace) + ': ztunnel does not capture it, so its traffic skips mTLS and AuthorizationPolicy'"
            ),
            &format!("'remove the pod label {DATAPLANE_MODE} (the namespace enrolls the pod in ambient mode)'"),
        );
        let disabled = site_if(
            refused,
            "$inject[0]",
            &format!("'{INJECT}: \"false\" keeps the Istio sidecar out of this pod, so its traffic skips mTLS and AuthorizationPolicy' + ($inject[2] == 'annotation' ? ' (the deprecated annotation counts because no label of the same name is set)' : '')"),
            &format!("$inject[2] == 'annotation' ? 'remove the annotation {INJECT} (to opt in explicitly, use the label {INJECT}: \"true\")' : 'remove the label {INJECT}, or set it to \"true\"'"),
        );
        with_template(
            vec![inject_setting(), ambient_by_labels()],
            format!("$ambientByLabels ? [] : {none} + {disabled}"),
        )
    },
};

/// Sidecar annotations that route traffic around the proxy: (key, CEL test on the trimmed
/// value `v`, what it does), as `BYPASS_ANNOTATIONS`.
const BYPASS: &[(&str, &str, &str)] = &[
    ("traffic.sidecar.istio.io/excludeInboundPorts", "v != ''",
        "connections to these ports reach the application directly, without mTLS or AuthorizationPolicy"),
    ("traffic.sidecar.istio.io/includeInboundPorts", "v != '*'",
        "only the listed inbound ports are intercepted; connections to any other port reach the application without mTLS or AuthorizationPolicy"),
    ("traffic.sidecar.istio.io/excludeOutboundPorts", "v != ''",
        "outbound connections to these ports leave without the proxy, in plaintext and unauthenticated"),
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "v != ''",
        "outbound traffic to these ranges leaves without the proxy, in plaintext and unauthenticated"),
    ("traffic.sidecar.istio.io/includeOutboundIPRanges", "v != '*'",
        "only the listed outbound ranges are intercepted; traffic to anything else leaves without the proxy"),
    ("traffic.sidecar.istio.io/excludeInterfaces", "v != ''",
        "traffic on these network interfaces is not intercepted by the proxy"),
    ("sidecar.istio.io/interceptionMode", "v.upperAscii() == 'NONE'",
        "interception mode NONE installs no traffic redirection, so the proxy sees only what the application sends to it on purpose"),
];

pub(crate) static TRAFFIC_BYPASS: CelForm = CelForm {
    rule: &wl::TRAFFIC_BYPASS,
    coverage: Coverage::Partly(
        "pods that ztunnel would capture (ambient namespace or pod label) unless a sidecar is injected: whether one is, and so whether the sidecar annotations or ambient.istio.io/bypass-inbound-capture matter, is the injector's decision; the policy judges the sidecar annotations outside ambient mode, and bypass-inbound-capture on ambient pods that refuse the sidecar; interceptionMode inside the proxy.istio.io/config annotation is the webhook's alone",
    ),
    on: On::Write,
    kinds: None,
    cel: || {
        let fix = "'remove the annotation; if this traffic really must skip the mesh, exempt the workload from wl-traffic-bypass in the meshguard policy'";
        let sidecar: Vec<String> = BYPASS
            .iter()
            .map(|(key, hole, what)| {
                format!(
                    "{k} in $annotations && [$annotations[{k}].trim()].exists(v, {hole}) ? [{}] : []",
                    site(
                        &meta_path("annotations", key),
                        &format!("{} + strings.quote($annotations[{k}]) + {}", lit(&format!("{key}: ")), lit(&format!(": {what}")), k = lit(key)),
                        fix
                    ),
                    k = lit(key),
                )
            })
            .map(|s| format!("({s})"))
            .collect();
        let capture = "ambient.istio.io/bypass-inbound-capture";
        let inbound = format!(
            "($ambientByLabels && size($inject) > 0 && $inject[1] == 'false' && $annotations[?{k}].orValue('').trim() in ['1', 't', 'T', 'true', 'TRUE', 'True'] ? [{}] : [])",
            site(
                &meta_path("annotations", capture),
                &format!("'{capture}: ' + strings.quote($annotations[{k}]) + ': ztunnel does not capture inbound traffic to this pod, so connections reach the application directly, in plaintext and without AuthorizationPolicy'", k = lit(capture)),
                "'remove the annotation; if this pod really only serves clients outside the mesh, exempt it from wl-traffic-bypass in the meshguard policy'",
            ),
            k = lit(capture),
        );
        with_template(
            vec![inject_setting(), ambient_by_labels()],
            format!("{inbound} + ($ambientByLabels ? [] : {})", sidecar.join(" + ")),
        )
    },
};

pub(crate) static HOST_NETWORK: NotInCel = NotInCel {
    rule: &wl::HOST_NETWORK,
    why: "it judges hostNetwork only outside the namespaces the mesh enrolls (inside them wl-host-network-in-mesh does), and whether a namespace is enrolled is the injectors' and the installed data plane's decision, which the webhook watches and no admission policy can read",
};

pub(crate) static PROXY_UID_RULE: CelForm = CelForm {
    rule: &wl::PROXY_UID_RULE,
    coverage: Coverage::Partly(
        "runAsGroup 1337 (the sidecar's GID), ephemeral containers (added through pods/ephemeralcontainers), and containers named like Istio's own that are not what the injector runs (which reads the injector's templates); the policy leaves every container named istio-proxy, istio-init or istio-validation alone",
    ),
    on: On::Write,
    kinds: None,
    cel: || {
        let own = format!(
            "$containers.filter(x, !(x.c.?name.orValue('') in {istio}) && x.c.?securityContext.?runAsUser.orValue(-1) == {PROXY_UID}).map(x, {})",
            site(
                "$pfx + 'spec.' + x.l + '[' + string(x.i) + '].securityContext.runAsUser'",
                &format!("'container ' + strings.quote(x.c.?name.orValue('')) + ' runs as UID {PROXY_UID}, the sidecar\\'s own UID: iptables lets traffic of that UID skip the proxy, so the container bypasses mTLS and policy (Istio IST0144)'"),
                "'run it as another UID, e.g. securityContext.runAsUser: 1000'",
            ),
            istio = lit_list(&[PROXY_CONTAINER, "istio-init", "istio-validation"]),
        );
        let inheriting = format!(
            "$spec.?securityContext.?runAsUser.orValue(-1) == {PROXY_UID} ? [$containers.filter(x, !(x.c.?name.orValue('') in {istio}) && !x.c.?securityContext.?runAsUser.hasValue())].filter(l, size(l) > 0).map(l, {}) : []",
            site(
                "$pfx + 'spec.securityContext.runAsUser'",
                &format!("'the pod runs as UID {PROXY_UID}, the sidecar\\'s own UID, and container(s) ' + l.map(x, strings.quote(x.c.?name.orValue(''))).join(', ') + ' inherit it: iptables lets traffic of that UID skip the proxy, so they bypass mTLS and policy (Istio IST0144)'"),
                "'run the pod as another UID, e.g. securityContext.runAsUser: 1000 (the injected istio-proxy sets its own)'",
            ),
            istio = lit_list(&[PROXY_CONTAINER, "istio-init", "istio-validation"]),
        );
        with_template(
            vec![("containers", CONTAINERS.to_owned())],
            format!("({own}) + ({inheriting})"),
        )
    },
};

pub(crate) static PROXY_IMAGE: NotInCel = NotInCel {
    rule: &wl::PROXY_IMAGE,
    why: "Istio's proxy image is the injector's (its ConfigMap values: hub, tag, image), which the webhook watches and no admission policy can read; a test for .../proxyv2 alone would refuse a mesh whose injector runs another image",
};

pub(crate) static PROXY_IMAGE_AUTO: CelForm = CelForm {
    rule: &wl::PROXY_IMAGE_AUTO,
    coverage: Coverage::Partly(
        "workload templates (IST0146): whether an injector will select their pods is the injectors' decision (their webhook selectors and ConfigMaps), which no admission policy can read; the policy judges Pod CREATEs (IST0147)",
    ),
    on: On::Create,
    kinds: Some(&[Kind::Pod]),
    cel: || {
        with_template(
            vec![("containers", CONTAINERS.to_owned())],
            format!(
                "$containers.filter(x, x.c.?name.orValue('') == {p} && x.c.?image.orValue('') == 'auto').map(x, {})",
                site(
                    "$pfx + 'spec.' + x.l + '[' + string(x.i) + '].image'",
                    &format!("'container \"{PROXY_CONTAINER}\" still has image \"auto\", the placeholder Istio\\'s sidecar injector replaces: no injector ran on this pod, so it cannot start (there is no image \"auto\") and would not be in the mesh if it did'"),
                    &format!("'make sure an injector selects the pod (label its namespace istio-injection=enabled or istio.io/rev=<revision>) and istiod is running, then recreate it; or remove the {PROXY_CONTAINER} container'"),
                ),
                p = lit(PROXY_CONTAINER),
            ),
        )
    },
};

pub(crate) static NAMESPACE_NOT_INJECTED: NotInCel = NotInCel {
    rule: &wl::NAMESPACE_NOT_INJECTED,
    why: "whether a pod gets a sidecar is the injectors' decision: their MutatingWebhookConfigurations' selectors (revisions, tags, enableNamespacesByDefault) and their ConfigMaps (policy, neverInjectSelector), which the webhook watches and no admission policy can read",
};

pub(crate) static MISSING_SIDECAR: NotInCel = NotInCel {
    rule: &wl::MISSING_SIDECAR,
    why: "whether the pod should have been injected is the injectors' decision (their webhooks' selectors and ConfigMaps), which the webhook watches and no admission policy can read",
};
