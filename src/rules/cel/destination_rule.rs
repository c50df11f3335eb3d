//! CEL forms of the DestinationRule rules ([`crate::rules::destination_rule`]).
//!
//! Every TLS block is a site, as `DestinationRule::tls_sites` lists them: `trafficPolicy.tls`,
//! `trafficPolicy.portLevelSettings[j].tls`, then the same under each `subsets[i]`.

use super::{site, Cel, CelForm, Coverage, On};
use crate::rules::destination_rule as dr;

/// Every TLS block of `$o` as `{'at': dyn(path), 'tls': dyn(block)}`.
const TLS_SITES: &str = "($o.?spec.?trafficPolicy.?tls.hasValue() ? [{'at': dyn('spec.trafficPolicy.tls'), 'tls': dyn($o.spec.trafficPolicy.tls)}] : []) + $o.?spec.?trafficPolicy.?portLevelSettings.orValue([]).transformList(j, p, p.?tls.hasValue(), {'at': dyn('spec.trafficPolicy.portLevelSettings[' + string(j) + '].tls'), 'tls': dyn(p.tls)}) + $o.?spec.?subsets.orValue([]).transformList(i, s, s.?trafficPolicy.hasValue(), (s.trafficPolicy.?tls.hasValue() ? [{'at': dyn('spec.subsets[' + string(i) + '].trafficPolicy.tls'), 'tls': dyn(s.trafficPolicy.tls)}] : []) + s.trafficPolicy.?portLevelSettings.orValue([]).transformList(j, p, p.?tls.hasValue(), {'at': dyn('spec.subsets[' + string(i) + '].trafficPolicy.portLevelSettings[' + string(j) + '].tls'), 'tls': dyn(p.tls)})).flatten()";

/// `label_suffix(name, suffix)`: `name` ends with the label(s) `suffix` (non-empty).
pub(super) fn label_suffix(name: &str, suffix: &str) -> String {
    format!(
        "({suffix} != '' && {name}.endsWith({suffix}) && (size({name}) == size({suffix}) || {name}.substring(0, size({name}) - size({suffix})).endsWith('.')))"
    )
}

/// `host_in_mesh` for the normalised host `$h`, except that a `<service>.<namespace>` host counts
/// only for the policy's own namespace (the webhook looks other namespaces up).
fn in_mesh() -> String {
    let svc_cd = "('svc.' + @clusterDomain)";
    format!(
        "$h != '' && ($h == '*' || !$h.contains('.') || {svc} || {svc_cd_match} || @meshHostSuffixes.exists(x, {suffix}) || ($h.startsWith('*.') ? {wild} : [$h.split('.')].exists(l, size(l) == 2 && l[1] == request.namespace)))",
        svc = label_suffix("$h", "'svc'"),
        svc_cd_match = label_suffix("$h", svc_cd),
        suffix = label_suffix("$h", "x"),
        // The wildcard's rest, leading dots dropped as label_suffix drops them.
        wild = label_suffix(svc_cd, "$h.substring(2).find('(?s)[^.].*$')"),
    )
}

fn variables() -> Vec<(&'static str, String)> {
    vec![
        ("host", "$o.?spec.?host.orValue('')".to_owned()),
        ("h", "$host.find('(?s)^.*[^.]').lowerAscii()".to_owned()),
        ("inMesh", in_mesh()),
        ("tls", TLS_SITES.to_owned()),
    ]
}

const IN_OTHER_NAMESPACES: &str = "a host <service>.<namespace> of another namespace counts as in-mesh when that namespace exists, which the webhook looks up (the policy counts only its own namespace's)";

pub(crate) static TLS_DISABLED: CelForm = CelForm {
    rule: &dr::TLS_DISABLED,
    coverage: Coverage::Partly(IN_OTHER_NAMESPACES),
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: variables(),
        sites: format!(
            "$inMesh ? $tls.filter(t, t.tls.?mode.orValue('') == 'DISABLE').map(t, {}) : []",
            site(
                "t.at + '.mode'",
                "'DISABLE sends plaintext to in-mesh host ' + strings.quote($host) + ': an explicit tls setting overrides auto-mTLS, so PERMISSIVE workloads are downgraded to plaintext and STRICT ones refuse the traffic'",
                "'set mode: ISTIO_MUTUAL, or remove the tls block so auto-mTLS uses Istio mutual TLS'",
            )
        ),
        weakening: None,
    }
    },
};

pub(crate) static TLS_NOT_ISTIO_MUTUAL: CelForm = CelForm {
    rule: &dr::TLS_NOT_ISTIO_MUTUAL,
    coverage: Coverage::Partly(IN_OTHER_NAMESPACES),
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: variables(),
        sites: format!(
            "$inMesh ? $tls.filter(t, t.tls.?mode.orValue('') in ['SIMPLE', 'MUTUAL']).map(t, {}) : []",
            site(
                "t.at + '.mode'",
                "t.tls.mode + ' to in-mesh host ' + strings.quote($host) + ' bypasses the mesh identity, so principal-based policies cannot match'",
                "'set mode: ISTIO_MUTUAL'",
            )
        ),
        weakening: None,
    }
    },
};

pub(crate) static TLS_NO_VERIFICATION: CelForm = CelForm {
    rule: &dr::TLS_NO_VERIFICATION,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: vec![
            ("tls", TLS_SITES.to_owned()),
            ("selector", "$o.?spec.?workloadSelector.hasValue()".to_owned()),
        ],
        sites: format!(
            "$tls.filter(t, t.tls.?mode.orValue('') in ['SIMPLE', 'MUTUAL'] && t.tls.?caCertificates.orValue('') == '' && !t.tls.?insecureSkipVerify.orValue(false) && !(t.tls.?credentialName.orValue('') != '' && $selector)).map(t, t.tls.?credentialName.orValue('') != '' ? {} : {})",
            site(
                "t.at",
                "t.tls.mode + ' with credentialName but without caCertificates, in a DestinationRule without workloadSelector: sidecars ignore credentialName there, so their connections do not check the server certificate against a pinned CA (IST0128/IST0129)'",
                "'add spec.workloadSelector for the workloads that use the Secret, or set caCertificates (plus sni)'",
            ),
            site(
                "t.at",
                "t.tls.mode + ' without caCertificates or credentialName: the server certificate is not checked against a pinned CA (IST0128/IST0129)'",
                "'set caCertificates or credentialName (a Secret with ca.crt, read by sidecars with a workloadSelector), plus sni'",
            ),
        ),
        weakening: None,
    }
    },
};

pub(crate) static INSECURE_SKIP_VERIFY: CelForm = CelForm {
    rule: &dr::INSECURE_SKIP_VERIFY,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: vec![("tls", TLS_SITES.to_owned())],
        sites: format!(
            "$tls.filter(t, t.tls.?insecureSkipVerify.orValue(false)).map(t, {})",
            site(
                "t.at + '.insecureSkipVerify'",
                "'insecureSkipVerify: true accepts any server certificate, so anyone on the path can impersonate the server'",
                "'remove insecureSkipVerify and set caCertificates or credentialName to the server\\'s CA'",
            )
        ),
        weakening: None,
    }
    },
};
