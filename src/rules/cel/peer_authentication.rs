//! CEL forms of the PeerAuthentication rules ([`crate::rules::peer_authentication`]).
//!
//! Scope as the rules word it: a non-empty `selector.matchLabels` is "this workload", else the
//! root namespace is "the whole mesh" and any other namespace "the whole namespace".

use super::{lit, quoted, site, site_if, Cel, CelForm, Coverage, On, Weakening};
use crate::rules::peer_authentication as pa;

/// The variables every PeerAuthentication form reads.
fn common() -> Vec<(&'static str, String)> {
    vec![
        (
            "selected",
            "size($o.?spec.?selector.?matchLabels.orValue({})) > 0".to_owned(),
        ),
        (
            "scope",
            "$selected ? 'this workload' : (request.namespace == @rootNamespace ? 'the whole mesh' : 'the whole namespace')"
                .to_owned(),
        ),
    ]
}

/// Findings for every mode (top level, then each port) equal to `mode`.
fn mode_sites(mode: &str, message: &str, fix: &str) -> String {
    let top = site_if(
        &format!("$o.?spec.?mtls.?mode.orValue('') == {}", lit(mode)),
        "'spec.mtls.mode'",
        message,
        fix,
    );
    let ports = format!(
        "$o.?spec.?portLevelMtls.orValue({{}}).filter(k, $o.spec.portLevelMtls[k].?mode.orValue('') == {}).map(k, {})",
        lit(mode),
        site(
            "'spec.portLevelMtls[' + strings.quote(k) + '].mode'",
            message,
            fix
        )
    );
    format!("{top} + {ports}")
}

pub(crate) static PERMISSIVE_MTLS: CelForm = CelForm {
    rule: &pa::PERMISSIVE_MTLS,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: common(),
        sites: mode_sites(
            "PERMISSIVE",
            "'PERMISSIVE accepts plaintext connections for ' + $scope + ', so callers without a mesh identity get in'",
            "'set mode: STRICT (migrate remaining plaintext clients into the mesh first)'",
        ),
        weakening: None,
    }
    },
};

pub(crate) static DISABLED_MTLS: CelForm = CelForm {
    rule: &pa::DISABLED_MTLS,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: common(),
        sites: mode_sites(
            "DISABLE",
            "'DISABLE turns off mutual TLS for ' + $scope + ': traffic is plaintext and unauthenticated'",
            "'set mode: STRICT'",
        ),
        weakening: None,
    }
    },
};

pub(crate) static UNSET_MESH_DEFAULT: CelForm = CelForm {
    rule: &pa::UNSET_MESH_DEFAULT,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: vec![
            (
                "selected",
                "size($o.?spec.?selector.?matchLabels.orValue({})) > 0".to_owned(),
            ),
            ("mode", "$o.?spec.?mtls.?mode".to_owned()),
        ],
        sites: site_if(
            "request.namespace == @rootNamespace && !$selected && (!$mode.hasValue() || $mode.value() == 'UNSET')",
            "($o.?spec.?mtls.hasValue() ? 'spec.mtls.mode' : 'spec.mtls')",
            "'a mesh-wide PeerAuthentication in root namespace ' + strings.quote(@rootNamespace) + ' with mode ' + $mode.orValue('absent') + ' inherits Istio\\'s default, which is PERMISSIVE'",
            "'set spec.mtls.mode: STRICT'",
        ),
        weakening: None,
    }
    },
};

pub(crate) static PORT_LEVEL_WITHOUT_SELECTOR: CelForm = CelForm {
    rule: &pa::PORT_LEVEL_WITHOUT_SELECTOR,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: common(),
        sites: site_if(
            "size($o.?spec.?portLevelMtls.orValue({})) > 0 && !$selected",
            "'spec.portLevelMtls'",
            "'port-level mTLS needs a workload selector; without one Istio rejects or ignores it'",
            "'add spec.selector.matchLabels naming the workload whose container ports these are, or drop portLevelMtls and set spec.mtls.mode'",
        ),
        weakening: None,
    }
    },
};

/// The DELETE finding on a stored mesh- or namespace-wide STRICT policy `$o`.
fn strict_delete_site() -> String {
    site_if(
        "!$selected && $o.?spec.?mtls.?mode.orValue('') == 'STRICT'",
        "'spec.mtls.mode'",
        "'deleting STRICT PeerAuthentication ' + request.namespace + '/' + $o.metadata.name + ' drops mutual TLS enforcement for ' + $scope",
        "'keep it; if the namespace is being retired, delete the namespace, or exempt this rule for it in the meshguard policy'",
    )
}

pub(crate) static WEAKENING_DELETE: CelForm = CelForm {
    rule: &pa::WEAKENING_DELETE,
    coverage: Coverage::Full,
    on: On::Delete,
    kinds: None,
    cel: || {
        Cel {
        variables: common(),
        sites: strict_delete_site(),
        weakening: Some(Weakening {
            // The stored policy protected its scope (selector-less STRICT) and the new one does
            // not: another mode, or a selector that narrows it to some workloads.
            sites: site_if(
                "!$selected && $o.?spec.?mtls.?mode.orValue('') == 'STRICT' && (size($n.?spec.?selector.?matchLabels.orValue({})) > 0 || $n.?spec.?mtls.?mode.orValue('') != 'STRICT')",
                "'spec.mtls.mode'",
                "'this update turns STRICT PeerAuthentication ' + request.namespace + '/' + $o.metadata.name + ' into one that no longer enforces mutual TLS for ' + $scope",
                "'keep it STRICT and selector-less; to change it, apply a replacement first'",
            ),
            probe: (
                r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": "prod"}, "spec": {"mtls": {"mode": "STRICT"}}}"#,
                r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": "prod"}, "spec": {"mtls": {"mode": "PERMISSIVE"}}}"#,
            ),
        }),
    }
    },
};

pub(crate) static ROOT_NAMESPACE_SELECTOR: CelForm = CelForm {
    rule: &pa::ROOT_NAMESPACE_SELECTOR,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: common(),
        sites: site_if(
            "request.namespace == @rootNamespace && $selected",
            "'spec.selector'",
            &format!(
                "'Istio ignores workload-level PeerAuthentication in the root namespace ' + {} + '; it is neither mesh-wide nor applied to the selected workloads'",
                quoted("@rootNamespace")
            ),
            "'create it in the namespace of the workloads it selects, or remove the selector to make it the mesh-wide policy'",
        ),
        weakening: None,
    }
    },
};
