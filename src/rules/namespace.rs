//! Namespaces: every namespace outside the exempt list must be enrolled in the mesh by exactly
//! one injection label.
//!
//! Istio semantics (docs/istio-semantics.md, "Sidecar injection"): `istio-injection=enabled`
//! (default revision) or `istio.io/rev=<rev|tag>`; when both are present `istio-injection`
//! wins, and more than one mode label (counting `istio.io/dataplane-mode=ambient`) is IST0123.
//! Only the value `enabled` of `istio-injection` turns injection on: any other value keeps
//! every pod of the namespace out of the injector, pod-level opt-ins included. An ambient namespace is enrolled too (ztunnel
//! gives its pods mTLS), so it is not "missing".

use super::{Action, Rule, Violation};
use crate::config::Policy;
use crate::json::quoted_key;
use crate::resource::{labels_of, Kind};
use std::collections::BTreeMap;

pub const ISTIO_INJECTION: &str = "istio-injection";
pub const REV: &str = "istio.io/rev";
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";

const KINDS: &[Kind] = &[Kind::Namespace];

/// What a namespace's labels mean for sidecar injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection<'a> {
    /// `istio-injection=enabled`, or `istio.io/rev` without `istio-injection`.
    Sidecar,
    /// `istio-injection` with any value but `enabled` (it wins over `istio.io/rev`).
    Off(&'a str),
    /// `istio.io/dataplane-mode=ambient` and no sidecar label.
    Ambient,
    /// No injection label at all.
    None,
}

/// Read a namespace's injection mode from its labels, with Istio's precedence.
pub fn injection(labels: &BTreeMap<String, String>) -> Injection<'_> {
    match labels.get(ISTIO_INJECTION) {
        Some(v) if v == "enabled" => Injection::Sidecar,
        Some(v) => Injection::Off(v),
        None if labels.get(REV).is_some_and(|r| !r.is_empty()) => Injection::Sidecar,
        None if is_ambient(labels) => Injection::Ambient,
        None => Injection::None,
    }
}

/// `istio.io/dataplane-mode=ambient` among the labels (of a namespace or a pod).
pub fn is_ambient(labels: &BTreeMap<String, String>) -> bool {
    labels.get(DATAPLANE_MODE).is_some_and(|m| m == "ambient")
}

/// Whether a namespace's pods are in the mesh by default: injected with a sidecar, or captured
/// by ztunnel (ambient, which also applies where `istio-injection` keeps sidecars out).
pub fn in_mesh(labels: &BTreeMap<String, String>) -> bool {
    injection(labels) == Injection::Sidecar || is_ambient(labels)
}

/// The label (key, value) the policy wants namespaces to carry.
pub fn wanted_label(policy: &Policy) -> (&'static str, &str) {
    match &policy.injection_revision {
        Some(rev) => (REV, rev.as_str()),
        None => (ISTIO_INJECTION, "enabled"),
    }
}

/// The injection-mode labels present, as `key=value`, in a fixed order.
fn mode_labels(labels: &BTreeMap<String, String>) -> Vec<String> {
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

pub static INJECTION_MISSING: Rule = Rule {
    id: "ns-injection-missing",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a non-exempt namespace without an injection label (istio-injection=enabled or istio.io/rev); an update that removes it is refused",
    example_fix: "metadata.labels: {istio-injection: enabled}",
    needs: &[],
    check: |review, ctx, out| {
        let Some(obj) = review.written() else { return };
        let labels = labels_of(obj);
        if injection(labels) != Injection::None {
            return;
        }
        let (key, value) = wanted_label(ctx.policy);
        let removed = review
            .old_object
            .filter(|_| matches!(review.operation, kube::core::admission::Operation::Update))
            .map(|old| mode_labels(labels_of(old)))
            .unwrap_or_default();
        if let Some(first) = removed.first() {
            let removed_key = first.split('=').next().unwrap_or(ISTIO_INJECTION);
            out.push(Violation::new(
                format!("metadata.labels{}", quoted_key(removed_key)),
                format!(
                    "this update removes {} from namespace {:?}: pods created from now on start without a sidecar and fall out of mTLS and AuthorizationPolicy",
                    removed.join(", "),
                    review.namespace
                ),
                format!("keep the label {first} (to take a namespace out of the mesh, add it to exemptNamespaces in the meshguard policy)"),
            ));
            return;
        }
        out.push(Violation::new(
            "metadata.labels",
            format!(
                "namespace {:?} has no injection label, so its pods start without a sidecar: their traffic is plaintext and no AuthorizationPolicy applies to them",
                review.namespace
            ),
            format!("add the label {key}: {value} (kubectl label namespace {} {key}={value})", review.namespace),
        ));
    },
};

pub static INJECTION_DISABLED: Rule = Rule {
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

pub static CONFLICTING_INJECTION_LABELS: Rule = Rule {
    id: "ns-conflicting-injection-labels",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "more than one injection mode label (istio-injection, istio.io/rev, istio.io/dataplane-mode=ambient) on a namespace",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Review;
    use crate::rules::testing::{obj, run, run_with};
    use crate::rules::Ctx;
    use kube::core::admission::Operation;
    use kube::core::DynamicObject;
    use serde_json::{json, Value};

    fn ns(name: &str, labels: Value) -> DynamicObject {
        obj(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels}}))
    }

    fn run_update(rule: &Rule, old: &DynamicObject, new: &DynamicObject) -> Vec<Violation> {
        let policy = Policy::default();
        let op = Operation::Update;
        let review = Review {
            kind: Kind::Namespace,
            version: "v1",
            operation: &op,
            namespace: "prod",
            name: "prod",
            object: Some(new),
            old_object: Some(old),
            dry_run: false,
        };
        let ctx = Ctx {
            policy: &policy,
            cluster: &crate::context::NoCluster,
            cache: &crate::rules::ReviewCache::default(),
        };
        let mut out = Vec::new();
        (rule.check)(&review, &ctx, &mut out);
        out
    }

    const OPS: [Operation; 2] = [Operation::Create, Operation::Update];

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn injection_precedence() {
        assert_eq!(
            injection(&l(&[(ISTIO_INJECTION, "enabled")])),
            Injection::Sidecar
        );
        assert_eq!(injection(&l(&[(REV, "canary")])), Injection::Sidecar);
        assert_eq!(
            injection(&l(&[(ISTIO_INJECTION, "disabled"), (REV, "canary")])),
            Injection::Off("disabled")
        );
        assert_eq!(
            injection(&l(&[(DATAPLANE_MODE, "ambient")])),
            Injection::Ambient
        );
        assert_eq!(injection(&l(&[(DATAPLANE_MODE, "none")])), Injection::None);
        assert_eq!(injection(&l(&[("foo", "enabled")])), Injection::None);
    }

    #[test]
    fn in_mesh_counts_sidecar_and_ambient_namespaces() {
        for yes in [
            l(&[(ISTIO_INJECTION, "enabled")]),
            l(&[(REV, "canary")]),
            l(&[(DATAPLANE_MODE, "ambient")]),
            l(&[(ISTIO_INJECTION, "disabled"), (DATAPLANE_MODE, "ambient")]),
        ] {
            assert!(in_mesh(&yes), "{yes:?}");
        }
        for no in [
            l(&[]),
            l(&[(ISTIO_INJECTION, "disabled"), (REV, "canary")]),
            l(&[(DATAPLANE_MODE, "none")]),
        ] {
            assert!(!in_mesh(&no), "{no:?}");
        }
    }

    #[test]
    fn missing_label_denied() {
        for op in OPS {
            for labels in [
                json!({}),
                json!({"foo": "enabled", "kubernetes.io/metadata.name": "prod"}),
            ] {
                let found = run(
                    &INJECTION_MISSING,
                    op.clone(),
                    "v1",
                    "prod",
                    &ns("prod", labels),
                );
                assert_eq!(found.len(), 1);
                assert_eq!(found[0].path, "metadata.labels");
                assert!(
                    found[0]
                        .message
                        .contains("namespace \"prod\" has no injection label"),
                    "{}",
                    found[0].message
                );
                assert_eq!(found[0].fix, "add the label istio-injection: enabled (kubectl label namespace prod istio-injection=enabled)");
            }
        }
    }

    #[test]
    fn missing_label_fix_names_the_revision() {
        let policy =
            crate::catalogue::policy_from_yaml("injectionRevision: canary\n", "t").expect("policy");
        let found = run_with(
            &INJECTION_MISSING,
            Operation::Create,
            "v1",
            "prod",
            &ns("prod", json!({})),
            &policy,
        );
        assert!(
            found[0]
                .fix
                .starts_with("add the label istio.io/rev: canary"),
            "{}",
            found[0].fix
        );
    }

    #[test]
    fn enrolled_namespaces_allowed() {
        for op in OPS {
            for labels in [
                json!({"istio-injection": "enabled"}),
                json!({"istio.io/rev": "canary"}),
                json!({"istio.io/dataplane-mode": "ambient"}),
            ] {
                let o = ns("prod", labels.clone());
                assert!(
                    run(&INJECTION_MISSING, op.clone(), "v1", "prod", &o).is_empty(),
                    "{labels}"
                );
                assert!(
                    run(&INJECTION_DISABLED, op.clone(), "v1", "prod", &o).is_empty(),
                    "{labels}"
                );
                assert!(
                    run(&CONFLICTING_INJECTION_LABELS, op.clone(), "v1", "prod", &o).is_empty(),
                    "{labels}"
                );
            }
        }
    }

    #[test]
    fn update_removing_the_label_is_denied() {
        let old = ns("prod", json!({"istio-injection": "enabled", "team": "a"}));
        let new = ns("prod", json!({"team": "a"}));
        let found = run_update(&INJECTION_MISSING, &old, &new);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "metadata.labels[\"istio-injection\"]");
        assert!(
            found[0]
                .message
                .starts_with("this update removes istio-injection=enabled from namespace \"prod\""),
            "{}",
            found[0].message
        );
        assert!(found[0]
            .fix
            .starts_with("keep the label istio-injection=enabled"));
        // A change that keeps the label is fine.
        let kept = ns("prod", json!({"istio-injection": "enabled", "team": "b"}));
        assert!(run_update(&INJECTION_MISSING, &old, &kept).is_empty());
        // Removing istio.io/rev is a removal too.
        let old = ns("prod", json!({"istio.io/rev": "canary"}));
        let found = run_update(&INJECTION_MISSING, &old, &new);
        assert_eq!(found[0].path, "metadata.labels[\"istio.io/rev\"]");
    }

    #[test]
    fn disabled_denied() {
        for op in OPS {
            let found = run(
                &INJECTION_DISABLED,
                op.clone(),
                "v1",
                "prod",
                &ns("prod", json!({"istio-injection": "disabled"})),
            );
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].path, "metadata.labels[\"istio-injection\"]");
            assert!(found[0].message.starts_with("istio-injection=disabled turns sidecar injection off for every pod in namespace \"prod\""));
            assert!(found[0].fix.starts_with("set istio-injection: enabled"));
            let found = run(
                &INJECTION_DISABLED,
                op.clone(),
                "v1",
                "prod",
                &ns("prod", json!({"istio-injection": "true"})),
            );
            assert!(
                found[0]
                    .message
                    .starts_with("istio-injection=\"true\" does not enable injection"),
                "{}",
                found[0].message
            );
            // Not missing: the label is there, just wrong.
            assert!(run(
                &INJECTION_MISSING,
                op.clone(),
                "v1",
                "prod",
                &ns("prod", json!({"istio-injection": "disabled"}))
            )
            .is_empty());
        }
    }

    #[test]
    fn conflicting_labels_denied() {
        for op in OPS {
            let found = run(
                &CONFLICTING_INJECTION_LABELS,
                op.clone(),
                "v1",
                "prod",
                &ns(
                    "prod",
                    json!({"istio-injection": "enabled", "istio.io/rev": "canary"}),
                ),
            );
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].path, "metadata.labels");
            assert!(
                found[0].message.contains(
                    "(istio-injection=enabled, istio.io/rev=canary): istio-injection wins"
                ),
                "{}",
                found[0].message
            );
            assert!(found[0].message.ends_with("(Istio IST0123)"));
            assert_eq!(
                found[0].fix,
                "keep only istio-injection: enabled and remove the other mode labels"
            );
            let found = run(
                &CONFLICTING_INJECTION_LABELS,
                op.clone(),
                "v1",
                "prod",
                &ns(
                    "prod",
                    json!({"istio.io/rev": "canary", "istio.io/dataplane-mode": "ambient"}),
                ),
            );
            assert!(
                found[0].message.contains("sidecars win"),
                "{}",
                found[0].message
            );
            // dataplane-mode other than ambient is not a mode label.
            assert!(run(
                &CONFLICTING_INJECTION_LABELS,
                op.clone(),
                "v1",
                "prod",
                &ns(
                    "prod",
                    json!({"istio-injection": "enabled", "istio.io/dataplane-mode": "none"})
                )
            )
            .is_empty());
        }
    }

    #[test]
    fn delete_is_not_checked() {
        let o = ns("prod", json!({}));
        assert!(run(&INJECTION_MISSING, Operation::Delete, "v1", "prod", &o).is_empty());
        assert!(run(
            &INJECTION_DISABLED,
            Operation::Delete,
            "v1",
            "prod",
            &ns("p", json!({"istio-injection": "disabled"}))
        )
        .is_empty());
    }
}
