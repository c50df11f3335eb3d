//! CEL forms of the Namespace rules ([`crate::rules::namespace`]): the labels of the Namespace
//! being written, read with Istio's precedence (`istio-injection` wins; only `enabled` turns
//! injection on).

use super::{lit, site_if, Cel, CelForm, Coverage, NotInCel, On};
use crate::rules::namespace::{self as ns, DATAPLANE_MODE, ISTIO_INJECTION, REV};
use crate::rules::namespace_guard;

fn labels() -> Vec<(&'static str, String)> {
    vec![("labels", "$o.metadata.?labels.orValue({})".to_owned())]
}

pub(crate) static INJECTION_DISABLED: CelForm = CelForm {
    rule: &ns::INJECTION_DISABLED,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: labels(),
        sites: site_if(
            &format!("{k} in $labels && $labels[{k}] != 'enabled'", k = lit(ISTIO_INJECTION)),
            &lit(&format!("metadata.labels{}", crate::json::quoted_key(ISTIO_INJECTION))),
            &format!(
                "$labels[{k}] == 'disabled' ? 'istio-injection=disabled turns sidecar injection off for every pod in namespace ' + strings.quote(request.namespace) + ', including pods that opt in themselves' : 'istio-injection=' + strings.quote($labels[{k}]) + ' does not enable injection: Istio\\'s injector selects only the value \"enabled\", and any other value also blocks istio.io/rev and pod-level opt-ins in namespace ' + strings.quote(request.namespace)",
                k = lit(ISTIO_INJECTION)
            ),
            "'set istio-injection: enabled (to take a namespace out of the mesh, add it to exemptNamespaces in the meshguard policy)'",
        ),
        weakening: None,
    }
    },
};

pub(crate) static CONFLICTING_INJECTION_LABELS: CelForm = CelForm {
    rule: &ns::CONFLICTING_INJECTION_LABELS,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        let (inj, rev, mode) = (lit(ISTIO_INJECTION), lit(REV), lit(DATAPLANE_MODE));
        let mut variables = labels();
        // `mode_labels`: istio-injection, then (unless it is there and not `enabled`)
        // istio.io/rev and the ambient mode label.
        variables.push((
            "modes",
            format!(
                "({inj} in $labels ? ['istio-injection=' + $labels[{inj}]] : []) + (!({inj} in $labels) || $labels[{inj}] == 'enabled' ? ({rev} in $labels ? ['istio.io/rev=' + $labels[{rev}]] : []) + ($labels[?{mode}].orValue('') == 'ambient' ? ['istio.io/dataplane-mode=ambient'] : []) : [])"
            ),
        ));
        // `injection`: Sidecar (enabled, or a non-empty revision without istio-injection), Off,
        // Ambient or None.
        variables.push((
            "effective",
            format!(
                "{inj} in $labels ? ($labels[{inj}] == 'enabled' ? 'istio-injection wins, so istio.io/rev is ignored' : 'istio-injection=' + $labels[{inj}] + ' wins, so no sidecar is injected') : ($labels[?{rev}].orValue('') != '' ? 'sidecars win, so ambient capture skips these pods' : 'the result depends on label precedence')"
            ),
        ));
        Cel {
            variables,
            sites: site_if(
                "size($modes) >= 2",
                "'metadata.labels'",
                "'namespace ' + strings.quote(request.namespace) + ' carries more than one injection mode (' + $modes.join(', ') + '): ' + $effective + ', which is not what the other label says (Istio IST0123)'",
                "'keep only ' + @injectionLabel + ' and remove the other mode labels'",
            ),
            weakening: None,
        }
    },
};

pub(crate) static INJECTION_MISSING: NotInCel = NotInCel {
    rule: &ns::INJECTION_MISSING,
    why: "whether a namespace's pods get a sidecar is the injectors' decision (an unlabelled namespace is enrolled under enableNamespacesByDefault, a labelled one is not if no injector serves the label), which no admission policy can read; while meshguard is down its mutation does not label new namespaces either",
};

pub(crate) static UNKNOWN_REVISION: NotInCel = NotInCel {
    rule: &ns::UNKNOWN_REVISION,
    why: "which revisions and tags exist is the injector MutatingWebhookConfigurations' labels, which the webhook watches and no admission policy can read",
};

/// The platform-label guard: a Namespace UPDATE that changes a platform-owned label, by anyone
/// but the platform's users and groups (the webhook's pardon, stated here from `userInfo`). The
/// old labels are `oldObject`'s whatever `$o` is, so that the old object, judged for
/// `allowExistingViolations`, never has a finding of its own (as the webhook judges it).
pub(crate) static PLATFORM_LABEL_CHANGE: CelForm = CelForm {
    rule: &namespace_guard::PLATFORM_LABEL_CHANGE,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        let new = "$labels[?k]";
        let old = "oldObject.metadata.?labels.orValue({})[?k]";
        Cel {
            variables: labels(),
            sites: format!(
                "request.operation != 'UPDATE' || request.userInfo.username in @platformUsers || request.userInfo.?groups.orValue([]).exists(g, g in @platformGroups) ? [] : @platformLabels.filter(k, {new}.orValue('\\n') != {old}.orValue('\\n')).map(k, ['metadata.labels[' + strings.quote(k) + ']', (!{old}.hasValue() ? 'added with value ' + strings.quote({new}.value()) : !{new}.hasValue() ? 'removed (it was ' + strings.quote({old}.value()) + ')' : 'changed from ' + strings.quote({old}.value()) + ' to ' + strings.quote({new}.value())) + ': ' + k + ' is platform-owned (the policy selects namespaces by it to decide where rules deny, warn or are excepted), so only the platform\\'s identities may change it', 'keep ' + k + ' as it was; the platform team changes it (platform.users, platform.groups)'])"
            ),
            weakening: None,
        }
    },
};
