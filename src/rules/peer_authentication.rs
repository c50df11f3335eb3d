//! PeerAuthentication (security.istio.io v1, v1beta1): mTLS must be STRICT everywhere.
//!
//! Scope semantics (pilot `ComposePeerAuthentication`, see [`crate::model::peer_authentication`]):
//! selector-less in the root namespace = mesh-wide; selector-less elsewhere = namespace-wide; a
//! non-empty `selector.matchLabels` = workload-level, which Istio *ignores* in the root
//! namespace. `portLevelMtls` only works with a selector.

use super::{Action, Ctx, Rule, Violation};
use crate::model::{MtlsMode, PeerAuthentication};
use crate::resource::{Kind, Review};
use std::borrow::Cow;

const KINDS: &[Kind] = &[Kind::PeerAuthentication];

/// The policy being written, decoded once per review ([`super::ReviewCache`]); a spec the
/// typed decode refuses reads as empty (`istio-invalid-spec` reports it).
fn policy<'a>(review: &Review<'a>, ctx: &Ctx<'a>) -> Cow<'a, PeerAuthentication<'a>> {
    ctx.cache.peer_authentication(review)
}

fn scope(review: &Review<'_>, ctx: &Ctx<'_>, pa: &PeerAuthentication<'_>) -> &'static str {
    if !pa.selector().is_empty() {
        "this workload"
    } else if review.namespace == ctx.mesh.root_namespace().value {
        "the whole mesh"
    } else {
        "the whole namespace"
    }
}

pub(crate) static PERMISSIVE_MTLS: Rule = Rule {
    id: "pa-permissive-mtls",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "mtls.mode PERMISSIVE, at top level or in any portLevelMtls entry, accepts plaintext",
    example_fix: "spec.mtls.mode: STRICT",
    needs: &[],
    check: |review, ctx, out| {
        let pa = policy(review, ctx);
        for (path, mode) in pa.modes() {
            if mode == "PERMISSIVE" {
                out.push(Violation::new(
                    path,
                    format!(
                        "PERMISSIVE accepts plaintext connections for {}, so callers without a mesh identity get in",
                        scope(review, ctx, &pa)
                    ),
                    "set mode: STRICT (migrate remaining plaintext clients into the mesh first)",
                ));
            }
        }
    },
};

pub(crate) static DISABLED_MTLS: Rule = Rule {
    id: "pa-disabled-mtls",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "mtls.mode DISABLE anywhere turns mutual TLS off (in an ambient namespace ztunnel reads it as PERMISSIVE: plaintext gets in)",
    example_fix: "spec.mtls.mode: STRICT",
    needs: &[crate::context::Need::NamespaceLabelsOnDisable],
    check: |review, ctx, out| {
        let pa = policy(review, ctx);
        let mut ambient = None;
        for (path, mode) in pa.modes() {
            if mode == "DISABLE" {
                let ambient = *ambient.get_or_insert_with(|| {
                    review.written().is_some() && super::ambient::ambient_namespace(review, ctx)
                });
                let message = if ambient {
                    format!(
                        "namespace {:?} is ambient, where ztunnel treats DISABLE as PERMISSIVE for {}: mesh clients keep using HBONE (mTLS, with their identity), and plaintext clients get in without one, past every identity-based AuthorizationPolicy",
                        review.namespace,
                        scope(review, ctx, &pa)
                    )
                } else {
                    format!(
                        "DISABLE turns off mutual TLS for {}: traffic is plaintext and unauthenticated",
                        scope(review, ctx, &pa)
                    )
                };
                out.push(Violation::new(path, message, "set mode: STRICT"));
            }
        }
    },
};

pub(crate) static UNSET_MESH_DEFAULT: Rule = Rule {
    id: "pa-unset-mesh-default",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "mesh-wide policy (root namespace, no selector) with mode absent or UNSET leaves the mesh PERMISSIVE",
    example_fix: "spec.mtls.mode: STRICT",
    needs: &[],
    check: |review, ctx, out| {
        if review.written().is_none() || review.namespace != ctx.mesh.root_namespace().value {
            return;
        }
        let pa = policy(review, ctx);
        if !pa.selector().is_empty() {
            return;
        }
        let mode = pa.mode_str();
        let path = if pa.has_mtls() {
            "spec.mtls.mode"
        } else {
            "spec.mtls"
        };
        match mode {
            None | Some("UNSET") => out.push(Violation::new(
                path,
                format!(
                    "a mesh-wide PeerAuthentication in root namespace {:?} with mode {} inherits Istio's default, which is PERMISSIVE",
                    ctx.mesh.root_namespace().value,
                    mode.unwrap_or("absent")
                ),
                "set spec.mtls.mode: STRICT",
            )),
            Some(_) => {}
        }
    },
};

pub(crate) static PORT_LEVEL_WITHOUT_SELECTOR: Rule = Rule {
    id: "pa-port-level-without-selector",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "portLevelMtls without a workload selector is ignored (and rejected) by Istio",
    example_fix: "add spec.selector.matchLabels, or move the setting to spec.mtls.mode",
    needs: &[],
    check: |review, ctx, out| {
        let pa = policy(review, ctx);
        if pa.port_level().next().is_some() && pa.selector().is_empty() {
            out.push(Violation::new(
                "spec.portLevelMtls",
                "port-level mTLS needs a workload selector; without one Istio rejects or ignores it",
                "add spec.selector.matchLabels naming the workload whose container ports these are, or drop portLevelMtls and set spec.mtls.mode",
            ));
        }
    },
};

/// A policy that protects its whole scope: no selector (mesh-wide in the root namespace,
/// namespace-wide elsewhere) and `mtls.mode: STRICT`.
fn protects(pa: &PeerAuthentication<'_>) -> bool {
    pa.selector().is_empty() && pa.mode() == MtlsMode::Strict
}

/// What an UPDATE did to a protecting policy that no longer protects, with the field it did it
/// in (the path of the finding).
fn what_changed(new: &PeerAuthentication<'_>) -> (&'static str, String) {
    if !new.selector().is_empty() {
        return (
            "spec.selector",
            format!(
                "adds the selector {{{}}}, which narrows it to the selected workloads (and in the root namespace, where Istio ignores workload-level policies, to nothing)",
                new.selector().describe()
            ),
        );
    }
    match (new.has_mtls(), new.mode_field()) {
        (false, _) => (
            "spec.mtls",
            "removes spec.mtls, so the mode is inherited (UNSET)".to_owned(),
        ),
        (true, None) => (
            "spec.mtls.mode",
            "removes spec.mtls.mode, so the mode is inherited (UNSET)".to_owned(),
        ),
        (true, Some(v)) => (
            "spec.mtls.mode",
            format!("changes spec.mtls.mode from STRICT to {}", v.describe()),
        ),
    }
}

pub(crate) static WEAKENING_DELETE: Rule = Rule {
    id: "pa-weakening-delete",
    kinds: KINDS,
    default_action: Action::Deny,
    summary:
        "deleting a mesh- or namespace-wide STRICT policy, or an update that makes it stop protecting (a selector, another mode, no mode), weakens mTLS for everything under it",
    example_fix: "keep the policy; to change it, apply a replacement first",
    needs: &[],
    check: |review, ctx, out| {
        let Some(old) = review.old_object else { return };
        let before = ctx.cache.old_peer_authentication(old);
        if !protects(&before) {
            return;
        }
        let name = old.metadata.name.as_deref().unwrap_or(review.name);
        let fix = "keep it; if the namespace is being retired, delete the namespace, or exempt this rule for it in the meshguard policy";
        match review.operation {
            kube::core::admission::Operation::Delete => out.push(Violation::new(
                "spec.mtls.mode",
                format!(
                    "deleting STRICT PeerAuthentication {}/{} drops mutual TLS enforcement for {}",
                    review.namespace,
                    name,
                    scope(review, ctx, &before)
                ),
                fix,
            )),
            // An update that turns the protecting policy into one that protects nothing is its
            // deletion (the same hole, and an UPDATE then a DELETE would otherwise walk around
            // the DELETE check).
            kube::core::admission::Operation::Update => {
                if review.written().is_none() {
                    return;
                }
                let after = policy(review, ctx);
                if protects(&after) {
                    return;
                }
                let (path, what) = what_changed(&after);
                out.push(Violation::new(
                    path,
                    format!(
                        "this update {what}: STRICT PeerAuthentication {}/{name} stops enforcing mutual TLS for {}, as deleting it would",
                        review.namespace,
                        scope(review, ctx, &before)
                    ),
                    "keep spec.mtls.mode: STRICT and no selector on this policy; for a workload that needs another mode, add a separate workload-level PeerAuthentication in its namespace",
                ));
            }
            _ => {}
        }
    },
};

pub(crate) static ROOT_NAMESPACE_SELECTOR: Rule = Rule {
    id: "pa-root-namespace-selector",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "a workload-level policy (with selector) in the root namespace is ignored by Istio",
    example_fix: "move the policy to the workload's own namespace",
    needs: &[],
    check: |review, ctx, out| {
        if review.written().is_none() || review.namespace != ctx.mesh.root_namespace().value {
            return;
        }
        if policy(review, ctx).selector().is_empty() {
            return;
        }
        out.push(Violation::new(
            "spec.selector",
            format!(
                "Istio ignores workload-level PeerAuthentication in the root namespace {:?}; it is neither mesh-wide nor applied to the selected workloads",
                ctx.mesh.root_namespace().value
            ),
            "create it in the namespace of the workloads it selects, or remove the selector to make it the mesh-wide policy",
        ));
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Review;
    use crate::rules::testing::{obj, run};
    use kube::core::admission::Operation;
    use serde_json::{json, Value};

    fn pa(version: &str, ns: &str, spec: Value) -> kube::core::DynamicObject {
        obj(json!({
            "apiVersion": format!("security.istio.io/{version}"),
            "kind": "PeerAuthentication",
            "metadata": {"name": "p", "namespace": ns},
            "spec": spec
        }))
    }

    const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

    #[test]
    fn permissive_denied_top_level_and_port_level() {
        for v in VERSIONS {
            for op in [Operation::Create, Operation::Update] {
                let o = pa(v, "prod", json!({"mtls": {"mode": "PERMISSIVE"}}));
                let found = run(&PERMISSIVE_MTLS, op.clone(), v, "prod", &o);
                assert_eq!(found.len(), 1);
                assert_eq!(found[0].path, "spec.mtls.mode");
                assert!(
                    found[0].message.contains("the whole namespace"),
                    "{}",
                    found[0].message
                );
                assert!(found[0].fix.contains("STRICT"));

                let o = pa(
                    v,
                    "prod",
                    json!({"selector": {"matchLabels": {"app": "a"}}, "mtls": {"mode": "STRICT"},
                           "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}}}),
                );
                let found = run(&PERMISSIVE_MTLS, op.clone(), v, "prod", &o);
                assert_eq!(found.len(), 1);
                assert_eq!(found[0].path, "spec.portLevelMtls[\"8080\"].mode");
                assert!(found[0].message.contains("this workload"));
            }
        }
    }

    #[test]
    fn strict_allowed() {
        for v in VERSIONS {
            let o = pa(v, "prod", json!({"mtls": {"mode": "STRICT"}}));
            assert!(run(&PERMISSIVE_MTLS, Operation::Create, v, "prod", &o).is_empty());
            assert!(run(&DISABLED_MTLS, Operation::Create, v, "prod", &o).is_empty());
            // DELETE of a permissive policy is not a permissive write.
            let o = pa(v, "prod", json!({"mtls": {"mode": "PERMISSIVE"}}));
            assert!(run(&PERMISSIVE_MTLS, Operation::Delete, v, "prod", &o).is_empty());
        }
    }

    #[test]
    fn disable_denied_anywhere() {
        for v in VERSIONS {
            let o = pa(
                v,
                "prod",
                json!({"selector": {"matchLabels": {"app": "a"}}, "mtls": {"mode": "DISABLE"},
                       "portLevelMtls": {"80": {"mode": "DISABLE"}, "443": {"mode": "STRICT"}}}),
            );
            let found = run(&DISABLED_MTLS, Operation::Update, v, "prod", &o);
            let paths: Vec<_> = found.iter().map(|f| f.path.as_str()).collect();
            assert_eq!(paths, ["spec.mtls.mode", "spec.portLevelMtls[\"80\"].mode"]);
        }
    }

    #[test]
    fn unset_mesh_default() {
        for v in VERSIONS {
            for spec in [
                json!({}),
                json!({"mtls": {}}),
                json!({"mtls": {"mode": "UNSET"}}),
            ] {
                let o = pa(v, "istio-system", spec.clone());
                let found = run(
                    &UNSET_MESH_DEFAULT,
                    Operation::Create,
                    v,
                    "istio-system",
                    &o,
                );
                assert_eq!(found.len(), 1, "{spec}");
                assert!(found[0].message.contains("PERMISSIVE"));
            }
            // STRICT mesh policy, namespace-level UNSET, and workload-level: not this rule.
            let strict = pa(v, "istio-system", json!({"mtls": {"mode": "STRICT"}}));
            assert!(run(
                &UNSET_MESH_DEFAULT,
                Operation::Create,
                v,
                "istio-system",
                &strict
            )
            .is_empty());
            let ns_level = pa(v, "prod", json!({}));
            assert!(run(&UNSET_MESH_DEFAULT, Operation::Create, v, "prod", &ns_level).is_empty());
        }
    }

    #[test]
    fn port_level_needs_selector() {
        for v in VERSIONS {
            let o = pa(
                v,
                "prod",
                json!({"portLevelMtls": {"80": {"mode": "STRICT"}}}),
            );
            let found = run(
                &PORT_LEVEL_WITHOUT_SELECTOR,
                Operation::Create,
                v,
                "prod",
                &o,
            );
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].path, "spec.portLevelMtls");
            let o = pa(
                v,
                "prod",
                json!({"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"80": {"mode": "STRICT"}}}),
            );
            assert!(run(
                &PORT_LEVEL_WITHOUT_SELECTOR,
                Operation::Create,
                v,
                "prod",
                &o
            )
            .is_empty());
            // An empty matchLabels selects nothing in particular: still namespace-wide.
            let o = pa(
                v,
                "prod",
                json!({"selector": {"matchLabels": {}}, "portLevelMtls": {"80": {"mode": "STRICT"}}}),
            );
            assert_eq!(
                run(
                    &PORT_LEVEL_WITHOUT_SELECTOR,
                    Operation::Create,
                    v,
                    "prod",
                    &o
                )
                .len(),
                1
            );
        }
    }

    #[test]
    fn weakening_delete() {
        for v in VERSIONS {
            let ns_strict = pa(v, "prod", json!({"mtls": {"mode": "STRICT"}}));
            let found = run(&WEAKENING_DELETE, Operation::Delete, v, "prod", &ns_strict);
            assert_eq!(found.len(), 1);
            assert!(found[0].message.contains("prod/p"));
            // Creating it is fine; deleting a workload-level or PERMISSIVE one is fine.
            assert!(run(&WEAKENING_DELETE, Operation::Create, v, "prod", &ns_strict).is_empty());
            let wl = pa(
                v,
                "prod",
                json!({"selector": {"matchLabels": {"app": "a"}}, "mtls": {"mode": "STRICT"}}),
            );
            assert!(run(&WEAKENING_DELETE, Operation::Delete, v, "prod", &wl).is_empty());
            let perm = pa(v, "prod", json!({"mtls": {"mode": "PERMISSIVE"}}));
            assert!(run(&WEAKENING_DELETE, Operation::Delete, v, "prod", &perm).is_empty());
            let mesh = pa(v, "istio-system", json!({"mtls": {"mode": "STRICT"}}));
            let found = run(
                &WEAKENING_DELETE,
                Operation::Delete,
                v,
                "istio-system",
                &mesh,
            );
            assert!(found[0].message.contains("the whole mesh"));
        }
    }

    /// Run a rule over an UPDATE from `old` to `new` in `ns`.
    fn update(rule: &Rule, ns: &str, old: Value, new: Value) -> Vec<Violation> {
        use crate::rules::{Ctx, ReviewCache};
        let (old, new) = (pa("v1", ns, old), pa("v1", ns, new));
        let op = Operation::Update;
        let review = Review {
            kind: Kind::PeerAuthentication,
            version: "v1",
            operation: &op,
            namespace: ns,
            name: "p",
            object: Some(&new),
            old_object: Some(&old),
            dry_run: false,
            created_for: None,
        };
        let mesh = crate::mesh::MeshContext::default();
        let ctx = Ctx {
            policy: &crate::config::Policy::default(),
            mesh: &mesh,
            cluster: &crate::context::NoCluster,
            cache: &ReviewCache::default(),
        };
        let mut out = Vec::new();
        (rule.check)(&review, &ctx, &mut out);
        out
    }

    #[test]
    fn weakening_by_update_is_the_deletion() {
        let strict = json!({"mtls": {"mode": "STRICT"}});
        for ns in ["prod", "istio-system"] {
            let scope = if ns == "prod" {
                "the whole namespace"
            } else {
                "the whole mesh"
            };
            for (new, path, what) in [
                (
                    json!({"selector": {"matchLabels": {"app": "a"}}, "mtls": {"mode": "STRICT"}}),
                    "spec.selector",
                    "adds the selector {app=a}",
                ),
                (
                    json!({"mtls": {"mode": "UNSET"}}),
                    "spec.mtls.mode",
                    "from STRICT to UNSET",
                ),
                (
                    json!({"mtls": {"mode": "PERMISSIVE"}}),
                    "spec.mtls.mode",
                    "from STRICT to PERMISSIVE",
                ),
                (
                    json!({"mtls": {"mode": "DISABLE"}}),
                    "spec.mtls.mode",
                    "from STRICT to DISABLE",
                ),
                (
                    json!({"mtls": {}}),
                    "spec.mtls.mode",
                    "removes spec.mtls.mode",
                ),
                (json!({}), "spec.mtls", "removes spec.mtls"),
            ] {
                let found = update(&WEAKENING_DELETE, ns, strict.clone(), new.clone());
                assert_eq!(found.len(), 1, "{ns} {new}");
                assert_eq!(found[0].path, path);
                assert!(found[0].message.contains(what), "{}", found[0].message);
                assert!(found[0].message.contains(scope), "{}", found[0].message);
                assert!(found[0].message.ends_with("as deleting it would"));
            }
            // Still protecting (labels, an empty selector), or not protecting before: fine.
            for (old, new) in [
                (strict.clone(), strict.clone()),
                (
                    strict.clone(),
                    json!({"selector": {"matchLabels": {}}, "mtls": {"mode": "STRICT"}}),
                ),
                (
                    json!({"mtls": {"mode": "PERMISSIVE"}}),
                    json!({"mtls": {"mode": "DISABLE"}}),
                ),
                (
                    json!({"selector": {"matchLabels": {"app": "a"}}, "mtls": {"mode": "STRICT"}}),
                    json!({"selector": {"matchLabels": {"app": "a"}}, "mtls": {"mode": "PERMISSIVE"}}),
                ),
                (json!({}), json!({"mtls": {"mode": "STRICT"}})),
            ] {
                assert!(
                    update(&WEAKENING_DELETE, ns, old.clone(), new.clone()).is_empty(),
                    "{old} -> {new}"
                );
            }
        }
    }

    #[test]
    fn root_namespace_selector_is_ignored_by_istio() {
        for v in VERSIONS {
            let o = pa(
                v,
                "istio-system",
                json!({"selector": {"matchLabels": {"app": "a"}}, "mtls": {"mode": "STRICT"}}),
            );
            let found = run(
                &ROOT_NAMESPACE_SELECTOR,
                Operation::Create,
                v,
                "istio-system",
                &o,
            );
            assert_eq!(found.len(), 1);
            assert!(found[0].message.contains("ignores"));
            let o = pa(
                v,
                "prod",
                json!({"selector": {"matchLabels": {"app": "a"}}, "mtls": {"mode": "STRICT"}}),
            );
            assert!(run(&ROOT_NAMESPACE_SELECTOR, Operation::Create, v, "prod", &o).is_empty());
        }
    }

    #[test]
    fn the_root_namespace_comes_from_the_mesh() {
        use crate::config::Policy;
        use crate::mesh::testing::{mesh, mesh_cm};
        use crate::rules::testing::run_in;
        let mesh = mesh(&[mesh_cm("istio", "rootNamespace: mesh-config\n")]);
        let run_root = |ns: &str, policy: &Policy| {
            run_in(
                &UNSET_MESH_DEFAULT,
                Operation::Create,
                "v1",
                ns,
                &pa("v1", ns, json!({})),
                policy,
                &mesh,
                &crate::context::NoCluster,
            )
        };
        // The mesh's root namespace holds the mesh-wide policy; istio-system is not special.
        assert_eq!(run_root("mesh-config", &Policy::default()).len(), 1);
        assert!(run_root("istio-system", &Policy::default()).is_empty());
        // The policy file overrides the mesh.
        let policy = Policy {
            root_namespace: Some("istio-system".into()),
            ..Policy::default()
        };
        assert!(run_root("mesh-config", &policy).is_empty());
        assert_eq!(run_root("istio-system", &policy).len(), 1);
    }
}
