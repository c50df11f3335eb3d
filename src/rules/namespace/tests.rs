//! Tests of `namespace.rs` (a child module, so they see its private items through `super::*`).

use super::*;
use crate::dataplane::labels::in_mesh;
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
        created_for: None,
    };
    let ctx = Ctx {
        policy: &policy,
        mesh: &crate::mesh::MeshContext::default(),
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
            found[0]
                .message
                .contains("(istio-injection=enabled, istio.io/rev=canary): istio-injection wins"),
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

// ---- the mesh as installed

use crate::mesh::testing::{canary_mesh, enabled_injector, mesh_of, revision_mwc, tag_mwc};
use crate::mesh::MeshContext;

fn with_mesh(rule: &Rule, o: &DynamicObject, mesh: &MeshContext) -> Vec<Violation> {
    crate::rules::testing::run_in(
        rule,
        Operation::Create,
        "v1",
        "prod",
        o,
        &Policy::default(),
        mesh,
        &crate::context::NoCluster,
    )
}

#[test]
fn conflicts_count_as_istio_counts_them() {
    // istio-injection=disabled wins over istio.io/rev (and ambient): not a conflict, and not
    // IST0123; ns-injection-disabled reports it.
    for labels in [
        json!({"istio-injection": "disabled", "istio.io/rev": "canary"}),
        json!({"istio-injection": "disabled", "istio.io/dataplane-mode": "ambient"}),
    ] {
        let o = ns("prod", labels.clone());
        assert!(
            run(
                &CONFLICTING_INJECTION_LABELS,
                Operation::Create,
                "v1",
                "prod",
                &o
            )
            .is_empty(),
            "{labels}"
        );
        assert_eq!(
            run(&INJECTION_DISABLED, Operation::Create, "v1", "prod", &o).len(),
            1
        );
    }
    // enabled beside istio.io/rev is IST0123.
    let o = ns(
        "prod",
        json!({"istio-injection": "enabled", "istio.io/rev": "canary"}),
    );
    let found = run(
        &CONFLICTING_INJECTION_LABELS,
        Operation::Create,
        "v1",
        "prod",
        &o,
    );
    assert!(found[0].message.ends_with("(Istio IST0123)"));
}

#[test]
fn missing_follows_the_injector_decision() {
    // enableNamespacesByDefault: an unlabelled namespace is injected (IST0148, not IST0102).
    let auto = mesh_of(
        &[revision_mwc("", true)],
        &[enabled_injector("default", "1.27.1")],
    );
    assert!(with_mesh(&INJECTION_MISSING, &ns("prod", json!({})), &auto).is_empty());
    // The same setting read from the injector ConfigMap's values alone (no webhook
    // configuration visible, as `istioctl analyze` reads manifests).
    let values = |on: bool| {
        json!({"global": {"hub": "docker.io/istio", "tag": "1.27.1"},
            "sidecarInjectorWebhook": {"enableNamespacesByDefault": on}})
        .to_string()
    };
    let cm = |on| {
        crate::mesh::testing::config_map(
            "istio-sidecar-injector",
            json!({"config": "policy: enabled\n", "values": values(on)}),
        )
    };
    let by_values = mesh_of(&[], &[cm(true)]);
    assert!(with_mesh(&INJECTION_MISSING, &ns("prod", json!({})), &by_values).is_empty());
    let off = mesh_of(&[], &[cm(false)]);
    assert_eq!(
        with_mesh(&INJECTION_MISSING, &ns("prod", json!({})), &off).len(),
        1
    );
    // A revisioned install without a default: istio-injection=enabled is served by nobody.
    let revisioned = mesh_of(
        &[
            revision_mwc("canary", false),
            tag_mwc("prod-stable", "canary", false),
        ],
        &[enabled_injector("canary", "1.27.1")],
    );
    let found = with_mesh(
        &INJECTION_MISSING,
        &ns("prod", json!({"istio-injection": "enabled"})),
        &revisioned,
    );
    assert_eq!(found.len(), 1);
    assert!(
        found[0].message.starts_with(
            "namespace \"prod\" is labelled istio-injection=enabled, but its pods get no sidecar: no sidecar injector webhook selects this pod in namespace \"prod\""
        ),
        "{}",
        found[0].message
    );
    assert!(found[0]
        .message
        .contains("injectors serve istio.io/rev=prod-stable, istio.io/rev=canary"));
    assert_eq!(
        found[0].fix,
        "label it for an injector that exists: kubectl label namespace prod istio.io/rev=prod-stable istio-injection- --overwrite"
    );
    // Unlabelled: the usual finding, and the fix names a label that is served.
    let found = with_mesh(&INJECTION_MISSING, &ns("prod", json!({})), &revisioned);
    assert!(found[0].message.contains("has no injection label"));
    assert!(
        found[0]
            .fix
            .starts_with("add the label istio.io/rev: prod-stable"),
        "{}",
        found[0].fix
    );
    // Served labels are quiet; an unknown revision is ns-unknown-revision's.
    for labels in [
        json!({"istio.io/rev": "prod-stable"}),
        json!({"istio.io/rev": "nope"}),
    ] {
        assert!(with_mesh(&INJECTION_MISSING, &ns("prod", labels), &revisioned).is_empty());
    }
    // The injector's policy disabled: labelled, yet no sidecar.
    let off = mesh_of(
        &[revision_mwc("", false)],
        &[crate::mesh::testing::injector_cm(
            "default",
            "policy: disabled\n",
            "1.27.1",
        )],
    );
    let found = with_mesh(
        &INJECTION_MISSING,
        &ns("prod", json!({"istio-injection": "enabled"})),
        &off,
    );
    assert!(
        found[0].message.contains("policy is disabled"),
        "{}",
        found[0].message
    );
}

#[test]
fn unknown_revision_on_namespaces_and_pod_templates() {
    let mesh = canary_mesh(&[]);
    let found = with_mesh(
        &UNKNOWN_REVISION,
        &ns("prod", json!({"istio.io/rev": "nope"})),
        &mesh,
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "metadata.labels[\"istio.io/rev\"]");
    assert_eq!(
        found[0].message,
        "istio.io/rev=\"nope\" names no revision or revision tag an injector serves, so the pods of namespace \"prod\" get no sidecar at all (revisions: canary, default; tags: prod-stable → canary)"
    );
    assert_eq!(
        found[0].fix,
        "use a revision or tag that exists, e.g. istio.io/rev: prod-stable"
    );
    for quiet in [
        json!({"istio.io/rev": "prod-stable"}),
        json!({"istio.io/rev": "canary"}),
        json!({"istio.io/rev": "nope", "istio-injection": "enabled"}),
        json!({}),
    ] {
        assert!(
            with_mesh(&UNKNOWN_REVISION, &ns("prod", quiet.clone()), &mesh).is_empty(),
            "{quiet}"
        );
    }
    // No injector visible: nothing to compare with.
    assert!(with_mesh(
        &UNKNOWN_REVISION,
        &ns("prod", json!({"istio.io/rev": "nope"})),
        &MeshContext::default()
    )
    .is_empty());
    // Pod templates.
    let deployment = |labels: Value, containers: Value| {
        obj(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "prod"},
            "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": containers}}}}),
        )
    };
    let app = json!([{"name": "app", "image": "app"}]);
    let run_deployment = |o: &DynamicObject| {
        let review = Review::create(Kind::Deployment, "v1", "prod", "w", o);
        let ctx = Ctx {
            policy: &Policy::default(),
            mesh: &mesh,
            cluster: &crate::context::NoCluster,
            cache: &crate::rules::ReviewCache::default(),
        };
        let mut out = Vec::new();
        (UNKNOWN_REVISION.check)(&review, &ctx, &mut out);
        out
    };
    let found = run_deployment(&deployment(json!({"istio.io/rev": "1-25"}), app.clone()));
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].path,
        "spec.template.metadata.labels[\"istio.io/rev\"]"
    );
    assert!(
        found[0].message.contains("so this pod gets no sidecar"),
        "{}",
        found[0].message
    );
    assert!(run_deployment(&deployment(
        json!({"istio.io/rev": "prod-stable"}),
        app.clone()
    ))
    .is_empty());
    // In a namespace labelled for injection, the pod's label is not read: quiet.
    let labelled = crate::inventory::Inventory::complete(Vec::new())
        .with_namespace("prod", &[("istio.io/rev", "canary")]);
    let o = deployment(json!({"istio.io/rev": "1-25"}), app.clone());
    let review = Review::create(Kind::Deployment, "v1", "prod", "w", &o);
    let ctx = Ctx {
        policy: &Policy::default(),
        mesh: &mesh,
        cluster: &labelled,
        cache: &crate::rules::ReviewCache::default(),
    };
    let mut out = Vec::new();
    (UNKNOWN_REVISION.check)(&review, &ctx, &mut out);
    assert!(out.is_empty(), "{out:?}");
    // An injected pod records its injector's revision in the label: not judged.
    let injected = json!([{"name": "app"}, {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.25.0"}]);
    assert!(run_deployment(&deployment(json!({"istio.io/rev": "1-25"}), injected)).is_empty());
}
