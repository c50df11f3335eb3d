//! Namespaces: every namespace outside the exempt list must be enrolled in the mesh by exactly
//! one injection label.
//!
//! Istio semantics (docs/istio-semantics.md, "Sidecar injection"): `istio-injection=enabled`
//! (default revision) or `istio.io/rev=<rev|tag>`; when both are present `istio-injection`
//! wins. More than one mode label is IST0123, where `istio.io/rev` and
//! `istio.io/dataplane-mode=ambient` count only beside an absent or `enabled` `istio-injection`
//! (istio/istio `pkg/config/analysis/analyzers/injection/injection.go`): `disabled` wins over
//! them, which `ns-injection-disabled` reports. Only the value `enabled` of `istio-injection`
//! turns injection on: any other value keeps every pod of the namespace out of the injector,
//! pod-level opt-ins included. An ambient namespace is enrolled too (ztunnel gives its pods mTLS),
//! so it is not "missing".
//!
//! Whether a namespace's pods really get a sidecar is the mesh context's injector decision
//! ([`crate::mesh::MeshContext::namespace_injection`]): the injector webhooks' selectors as
//! installed, so a namespace that `sidecarInjectorWebhook.enableNamespacesByDefault` injects
//! without a label is enrolled, and one labelled for a revision no injector serves is not. With no
//! injector visible the labels above decide (Istio's default injector assumed).

use super::{Action, Ctx, Rule, Violation};
use crate::config::Policy;
use crate::json::quoted_key;
use crate::mesh::Why;
use crate::resource::{labels_of, Kind};
use std::collections::BTreeMap;

use crate::dataplane::labels::{injection, is_ambient, Injection};
pub use crate::dataplane::labels::{DATAPLANE_MODE, ISTIO_INJECTION, REV};

const KINDS: &[Kind] = &[Kind::Namespace];

/// Namespaces and every workload kind (`ns-unknown-revision`).
const NAMESPACE_AND_WORKLOADS: &[Kind] = &[
    Kind::Namespace,
    Kind::Pod,
    Kind::Deployment,
    Kind::StatefulSet,
    Kind::DaemonSet,
    Kind::ReplicaSet,
    Kind::ReplicationController,
    Kind::Job,
    Kind::CronJob,
];

/// The label (key, value) the policy wants namespaces to carry.
pub(crate) fn wanted_label(policy: &Policy) -> (&'static str, &str) {
    match &policy.injection_revision {
        Some(rev) => (REV, rev.as_str()),
        None => (ISTIO_INJECTION, "enabled"),
    }
}

/// The label to suggest for namespace `ns`: the policy's (`istio-injection=enabled`, or
/// `istio.io/rev=<injectionRevision>`) when an injector serves it (always, with no injector
/// visible), else the first revision tag, else the first revision an injector serves.
pub fn suggested_label(ctx: &Ctx<'_>, ns: &str) -> (&'static str, String) {
    suggested_label_for(ctx, ns, None)
}

/// [`suggested_label`] for a namespace with these labels (`current`, when known): whether a
/// label is served is judged with the namespace's other labels (injectors may select on them
/// too), and a label of the key it already carries comes first, so that the suggestion replaces
/// it rather than adding a second mode label.
pub(crate) fn suggested_label_for(
    ctx: &Ctx<'_>,
    ns: &str,
    current: Option<&BTreeMap<String, String>>,
) -> (&'static str, String) {
    let (key, value) = wanted_label(ctx.policy);
    if ctx.mesh.assumed_default_injector() {
        return (key, value.to_owned());
    }
    let served_labels = served_labels(ctx, ns, current);
    let keep_key = current.and_then(|l| {
        [REV, ISTIO_INJECTION]
            .into_iter()
            .find(|k| l.contains_key(*k))
    });
    let wanted_served = served_as(ctx, ns, current, key, value);
    if let Some(k) = keep_key {
        if k == key && wanted_served {
            return (key, value.to_owned());
        }
        if let Some(found) = served_labels.iter().find(|(sk, _)| *sk == k) {
            return found.clone();
        }
    }
    if wanted_served {
        return (key, value.to_owned());
    }
    served_labels
        .into_iter()
        .next()
        .unwrap_or((key, value.to_owned()))
}

/// `kubectl label namespace <ns> <key>=<value> --overwrite`, also removing the other injection
/// label the namespace carries (`istio-injection` wins over `istio.io/rev`, so keeping both would
/// not do).
pub(crate) fn relabel_command(
    ns: &str,
    current: &BTreeMap<String, String>,
    key: &str,
    value: &str,
) -> String {
    let mut cmd = format!("kubectl label namespace {ns} {key}={value}");
    for other in [ISTIO_INJECTION, REV] {
        if other != key && current.contains_key(other) {
            cmd.push_str(&format!(" {other}-"));
        }
    }
    cmd.push_str(" --overwrite");
    cmd
}

/// Whether a plain pod in namespace `ns` gets a sidecar once the namespace carries `key=value`
/// as its injection label (its other labels, when known, kept).
fn served_as(
    ctx: &Ctx<'_>,
    ns: &str,
    base: Option<&BTreeMap<String, String>>,
    key: &str,
    value: &str,
) -> bool {
    match base {
        None => {
            let labels = [(key, value)];
            ctx.mesh.namespace_injection(ns, &labels).inject
        }
        Some(base) => {
            let mut labels = base.clone();
            labels.remove(ISTIO_INJECTION);
            labels.remove(REV);
            labels.insert(key.to_owned(), value.to_owned());
            ctx.mesh.namespace_injection(ns, &labels).inject
        }
    }
}

/// The namespace labels an injector serves for namespace `ns` (with its other labels `base`,
/// when known): revision tags, then revisions, each as `istio.io/rev`, and
/// `istio-injection=enabled` when the default revision's webhooks serve it.
fn served_labels(
    ctx: &Ctx<'_>,
    ns: &str,
    base: Option<&BTreeMap<String, String>>,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for name in ctx.mesh.tags().keys().chain(ctx.mesh.revisions()) {
        if served_as(ctx, ns, base, REV, name)
            && !out.iter().any(|(_, v): &(&str, String)| v == name)
        {
            out.push((REV, name.clone()));
        }
    }
    if served_as(ctx, ns, base, ISTIO_INJECTION, "enabled") {
        out.push((ISTIO_INJECTION, "enabled".to_owned()));
    }
    out
}

/// The revisions and tags that exist and the namespace labels they serve here, for messages:
/// `injectors serve istio.io/rev=prod-stable, istio.io/rev=canary; revisions: canary, default;
/// tags: prod-stable → canary`.
pub(crate) fn served_summary(
    ctx: &Ctx<'_>,
    ns: &str,
    base: Option<&BTreeMap<String, String>>,
) -> String {
    let served: Vec<String> = served_labels(ctx, ns, base)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut s = if served.is_empty() {
        "no injector serves any namespace label".to_owned()
    } else {
        format!("injectors serve {}", served.join(", "))
    };
    s.push_str(&format!("; {}", revisions_and_tags(ctx)));
    s
}

/// Whether a namespace labelled `istio.io/rev=<rev>` has its plain pods sent to an injector:
/// by the revision's own selectors, or by a webhook that selects the namespace with all its
/// labels (custom selectors may ask for more than the revision label).
pub(crate) fn revision_served_for_namespace(
    ctx: &Ctx<'_>,
    ns: &str,
    labels: &BTreeMap<String, String>,
    rev: &str,
) -> bool {
    ctx.mesh.serves_namespace(rev)
        || ctx
            .mesh
            .selecting_webhooks(ns, labels, &crate::mesh::NoLabels)
            .next()
            .is_some()
}

/// `revisions: canary, default; tags: prod-stable → canary` (or `no revision tags`).
fn revisions_and_tags(ctx: &Ctx<'_>) -> String {
    let revisions: Vec<&str> = ctx.mesh.revisions().iter().map(String::as_str).collect();
    let mut s = if revisions.is_empty() {
        "no revisions".to_owned()
    } else {
        format!("revisions: {}", revisions.join(", "))
    };
    let tags: Vec<String> = ctx
        .mesh
        .tags()
        .iter()
        .map(|(t, r)| format!("{t} → {r}"))
        .collect();
    if tags.is_empty() {
        s.push_str("; no revision tags");
    } else {
        s.push_str(&format!("; tags: {}", tags.join(", ")));
    }
    s
}

/// The injection-mode labels that count, as `key=value`, in a fixed order: `istio-injection`,
/// then `istio.io/rev` and `istio.io/dataplane-mode=ambient` when `istio-injection` is absent or
/// `enabled` (a `disabled` one wins over them: Istio's IST0123 does not count them then).
fn mode_labels(labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let injection = labels.get(ISTIO_INJECTION);
    if let Some(v) = injection {
        out.push(format!("{ISTIO_INJECTION}={v}"));
    }
    if injection.is_some_and(|v| v != "enabled") {
        return out;
    }
    if let Some(v) = labels.get(REV) {
        out.push(format!("{REV}={v}"));
    }
    if is_ambient(labels) {
        out.push(format!("{DATAPLANE_MODE}=ambient"));
    }
    out
}

/// The injection labels present, as `key=value` (for "this update removes ...").
fn present_labels(labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for key in [ISTIO_INJECTION, REV] {
        if let Some(v) = labels.get(key) {
            out.push(format!("{key}={v}"));
        }
    }
    if is_ambient(labels) {
        out.push(format!("{DATAPLANE_MODE}=ambient"));
    }
    out
}

pub(crate) static INJECTION_MISSING: Rule = Rule {
    id: "ns-injection-missing",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a non-exempt namespace whose pods get no sidecar: no injection label (istio-injection=enabled or istio.io/rev), or a label no injector's selectors serve; an update that removes the label is refused",
    example_fix: "metadata.labels: {istio-injection: enabled}",
    needs: &[],
    check: |review, ctx, out| {
        let Some(obj) = review.written() else { return };
        let labels = labels_of(obj);
        let ns = review.namespace;
        match injection(labels) {
            Injection::Off(_) | Injection::Ambient => return, // ns-injection-disabled; ztunnel
            Injection::Sidecar | Injection::None => {}
        }
        let decision = ctx.mesh.namespace_injection(ns, labels);
        if decision.inject {
            return;
        }
        let (key, value) = suggested_label_for(ctx, ns, Some(labels));
        if injection(labels) == Injection::Sidecar {
            // The labels look right, but no injector (as installed) acts on them.
            if labels.get(ISTIO_INJECTION).is_none()
                && labels
                    .get(REV)
                    .is_some_and(|r| !revision_served_for_namespace(ctx, ns, labels, r))
            {
                return; // ns-unknown-revision names the revision that does not exist
            }
            out.push(Violation::new(
                "metadata.labels",
                format!(
                    "namespace {ns:?} is labelled {}, but its pods get no sidecar: {decision} ({})",
                    present_labels(labels).join(", "),
                    served_summary(ctx, ns, Some(labels))
                ),
                match decision.why {
                    Why::NotSelected => format!(
                        "label it for an injector that exists: {}",
                        relabel_command(ns, labels, key, &value)
                    ),
                    _ => "fix the injector's configuration (policy, neverInjectSelector), or exempt the namespace in the meshguard policy".to_owned(),
                },
            ));
            return;
        }
        let removed = review
            .old_object
            .filter(|_| matches!(review.operation, kube::core::admission::Operation::Update))
            .map(|old| present_labels(labels_of(old)))
            .unwrap_or_default();
        if let Some(first) = removed.first() {
            let removed_key = first.split('=').next().unwrap_or(ISTIO_INJECTION);
            out.push(Violation::new(
                format!("metadata.labels{}", quoted_key(removed_key)),
                format!(
                    "this update removes {} from namespace {ns:?}: pods created from now on start without a sidecar and fall out of mTLS and AuthorizationPolicy",
                    removed.join(", "),
                ),
                format!("keep the label {first} (to take a namespace out of the mesh, add it to exemptNamespaces in the meshguard policy)"),
            ));
            return;
        }
        let message = if decision.assumed || decision.why == Why::NotSelected {
            format!(
                "namespace {ns:?} has no injection label, so its pods start without a sidecar: their traffic is plaintext and no AuthorizationPolicy applies to them"
            )
        } else {
            format!(
                "namespace {ns:?} has no injection label and its pods get no sidecar ({decision}): their traffic is plaintext and no AuthorizationPolicy applies to them"
            )
        };
        out.push(Violation::new(
            "metadata.labels",
            message,
            format!("add the label {key}: {value} (kubectl label namespace {ns} {key}={value})"),
        ));
    },
};

pub(crate) static INJECTION_DISABLED: Rule = Rule {
    id: "ns-injection-disabled",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "istio-injection set to disabled (or any value but enabled) keeps sidecars out of the whole namespace",
    example_fix: "metadata.labels: {istio-injection: enabled}",
    needs: &[],
    check: |review, _ctx, out| {
        let Some(obj) = review.written() else { return };
        let Injection::Off(value) = injection(labels_of(obj)) else {
            return;
        };
        let message = if value == "disabled" {
            format!(
                "istio-injection=disabled turns sidecar injection off for every pod in namespace {:?}, including pods that opt in themselves",
                review.namespace
            )
        } else {
            format!(
                "istio-injection={value:?} does not enable injection: Istio's injector selects only the value \"enabled\", and any other value also blocks istio.io/rev and pod-level opt-ins in namespace {:?}",
                review.namespace
            )
        };
        out.push(Violation::new(
            format!("metadata.labels{}", quoted_key(ISTIO_INJECTION)),
            message,
            "set istio-injection: enabled (to take a namespace out of the mesh, add it to exemptNamespaces in the meshguard policy)",
        ));
    },
};

pub(crate) static CONFLICTING_INJECTION_LABELS: Rule = Rule {
    id: "ns-conflicting-injection-labels",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "more than one injection mode label (istio-injection, istio.io/rev, istio.io/dataplane-mode=ambient) on a namespace; beside istio-injection=disabled the others do not count (it wins, IST0123)",
    example_fix: "keep one of istio-injection, istio.io/rev, istio.io/dataplane-mode",
    needs: &[],
    check: |review, ctx, out| {
        let Some(obj) = review.written() else { return };
        let labels = labels_of(obj);
        let modes = mode_labels(labels);
        if modes.len() < 2 {
            return;
        }
        let effective = match injection(labels) {
            Injection::Sidecar if labels.contains_key(ISTIO_INJECTION) => {
                "istio-injection wins, so istio.io/rev is ignored".to_owned()
            }
            Injection::Sidecar => "sidecars win, so ambient capture skips these pods".to_owned(),
            // Not reached: mode_labels counts nothing beside a non-enabled istio-injection.
            Injection::Off(v) => format!("istio-injection={v} wins, so no sidecar is injected"),
            Injection::Ambient | Injection::None => "the result depends on label precedence".to_owned(),
        };
        let (key, value) = wanted_label(ctx.policy);
        out.push(Violation::new(
            "metadata.labels",
            format!(
                "namespace {:?} carries more than one injection mode ({}): {effective}, which is not what the other label says (Istio IST0123)",
                review.namespace,
                modes.join(", ")
            ),
            format!("keep only {key}: {value} and remove the other mode labels"),
        ));
    },
};

pub(crate) static UNKNOWN_REVISION: Rule = Rule {
    id: "ns-unknown-revision",
    kinds: NAMESPACE_AND_WORKLOADS,
    default_action: Action::Deny,
    summary: "a namespace (or pod template) labelled istio.io/rev=<x> that no injector or revision tag serves: its pods get no sidecar at all",
    example_fix: "metadata.labels: {istio.io/rev: prod-stable} (a revision or tag that exists: kubectl get mutatingwebhookconfigurations -l istio.io/rev)",
    needs: &[crate::context::Need::NamespaceLabels],
    check: |review, ctx, out| {
        if ctx.mesh.assumed_default_injector() {
            return; // no injector visible: nothing to compare with
        }
        let Some(obj) = review.written() else { return };
        let (path, rev, namespace_level, base) = if review.kind == Kind::Namespace {
            let labels = labels_of(obj);
            if labels.contains_key(ISTIO_INJECTION) {
                return; // istio-injection wins: the revision label is not in effect
            }
            let Some(rev) = labels.get(REV).filter(|r| !r.is_empty()) else {
                return;
            };
            if revision_served_for_namespace(ctx, review.namespace, labels, rev) {
                return;
            }
            let path = format!("metadata.labels{}", quoted_key(REV));
            (path, rev.as_str(), true, labels.clone())
        } else {
            let Some(t) = ctx.cache.template(review) else {
                return;
            };
            if t.has_proxy() {
                return; // injected already: the injector records its revision in this label
            }
            let Some(rev) = t.label(REV).filter(|r| !r.is_empty()) else {
                return;
            };
            if ctx.mesh.serves(rev) {
                return;
            }
            let ns_labels = match ctx.cluster.namespace_labels(review.namespace) {
                crate::context::Lookup::Found(labels) => labels,
                _ => BTreeMap::new(),
            };
            // In a namespace labelled for injection the pod's own istio.io/rev is not read
            // (Istio's chart selects pods by it only in namespaces with neither label).
            if ns_labels.contains_key(ISTIO_INJECTION) || ns_labels.contains_key(REV) {
                return;
            }
            // Custom selectors may ask for more than the revision label: the namespace's own.
            let pod_labels = t.label_view();
            if ctx
                .mesh
                .selecting_webhooks(review.namespace, &ns_labels, &pod_labels)
                .next()
                .is_some()
            {
                return;
            }
            (t.label_path(REV), rev, false, ns_labels)
        };
        let mut as_revision = base;
        as_revision.insert(REV.to_owned(), rev.to_owned());
        let (key, value) = suggested_label_for(ctx, review.namespace, Some(&as_revision));
        let what = if namespace_level {
            format!("the pods of namespace {:?} get", review.namespace)
        } else {
            "this pod gets".to_owned()
        };
        out.push(Violation::new(
            path,
            format!(
                "istio.io/rev={rev:?} names no revision or revision tag an injector serves, so {what} no sidecar at all ({})",
                revisions_and_tags(ctx)
            ),
            format!("use a revision or tag that exists, e.g. {key}: {value}"),
        ));
    },
};

#[cfg(test)]
mod tests;
