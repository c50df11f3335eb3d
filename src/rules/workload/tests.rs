//! Tests of the workload rules ([`super`]).

use super::*;
use crate::config::Policy;
use crate::context::{ClusterView, NoCluster};
use crate::inventory::Inventory;
use crate::rules::testing::obj;
use kube::core::DynamicObject;
use serde_json::{json, Value};

/// A workload of `kind` whose pod template has `meta` (labels, annotations) and `spec`.
fn workload(kind: Kind, meta: Value, spec: Value) -> DynamicObject {
    let template = json!({"metadata": meta, "spec": spec});
    let labels = meta.get("labels").cloned().unwrap_or(json!({}));
    let annotations = meta.get("annotations").cloned().unwrap_or(json!({}));
    obj(match kind {
        Kind::Pod => json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "w", "namespace": "prod", "labels": labels, "annotations": annotations},
            "spec": spec}),
        Kind::CronJob => json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "w", "namespace": "prod"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}),
        Kind::Job => json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "w", "namespace": "prod"}, "spec": {"template": template}}),
        Kind::ReplicationController => {
            json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "w", "namespace": "prod"}, "spec": {"template": template}})
        }
        _ => json!({"apiVersion": "apps/v1", "kind": kind.as_str(),
            "metadata": {"name": "w", "namespace": "prod"}, "spec": {"template": template}}),
    })
}

fn prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::Pod => "",
        Kind::CronJob => "spec.jobTemplate.spec.template.",
        _ => "spec.template.",
    }
}

fn check(
    rule: &Rule,
    kind: Kind,
    op: Operation,
    o: &DynamicObject,
    cluster: &dyn ClusterView,
    policy: &Policy,
) -> Vec<Violation> {
    let is_delete = matches!(op, Operation::Delete);
    let review = Review {
        kind,
        version: "v1",
        operation: &op,
        namespace: "prod",
        name: "w",
        object: (!is_delete).then_some(o),
        old_object: is_delete.then_some(o),
        dry_run: false,
        created_for: None,
    };
    let ctx = Ctx {
        policy,
        mesh: &crate::mesh::MeshContext::default(),
        cluster,
        cache: &crate::rules::ReviewCache::default(),
    };
    let mut out = Vec::new();
    (rule.check)(&review, &ctx, &mut out);
    out
}

fn run(
    rule: &Rule,
    kind: Kind,
    op: Operation,
    o: &DynamicObject,
    cluster: &dyn ClusterView,
) -> Vec<Violation> {
    check(rule, kind, op, o, cluster, &Policy::default())
}

/// A rule over a CREATE in namespace prod, with a mesh context.
fn in_mesh(
    rule: &Rule,
    kind: Kind,
    o: &DynamicObject,
    cluster: &dyn ClusterView,
    mesh: &crate::mesh::MeshContext,
) -> Vec<Violation> {
    in_mesh_ns(rule, kind, "prod", o, cluster, mesh)
}

fn in_mesh_ns(
    rule: &Rule,
    kind: Kind,
    ns: &str,
    o: &DynamicObject,
    cluster: &dyn ClusterView,
    mesh: &crate::mesh::MeshContext,
) -> Vec<Violation> {
    let review = Review::create(kind, "v1", ns, "w", o);
    let ctx = Ctx {
        policy: &Policy::default(),
        mesh,
        cluster,
        cache: &crate::rules::ReviewCache::default(),
    };
    let mut out = Vec::new();
    (rule.check)(&review, &ctx, &mut out);
    out
}

fn ns_with(labels: &[(&str, &str)]) -> Inventory {
    Inventory::complete(Vec::new()).with_namespace("prod", labels)
}

fn enabled_ns() -> Inventory {
    Inventory::complete(Vec::new()).with_namespace("prod", &[("istio-injection", "enabled")])
}

const OPS: [Operation; 2] = [Operation::Create, Operation::Update];

fn app() -> Value {
    json!({"containers": [{"name": "app", "image": "nginx"}]})
}

// ---- wl-default-service-account

#[test]
fn default_service_account_denied_for_every_kind() {
    let cluster = enabled_ns().with_service_account("prod", "web");
    for kind in Kind::WORKLOADS.iter().copied() {
        for op in OPS {
            // absent
            let o = workload(kind, json!({"labels": {"app": "web"}}), app());
            let found = run(&DEFAULT_SERVICE_ACCOUNT, kind, op.clone(), &o, &cluster);
            assert_eq!(found.len(), 1, "{kind}");
            let p = prefix(kind);
            assert_eq!(found[0].path, format!("{p}spec.serviceAccountName"));
            assert!(
                found[0]
                    .message
                    .contains("cluster.local/ns/prod/sa/default is shared"),
                "{}",
                found[0].message
            );
            assert_eq!(
                found[0].fix,
                format!("set {p}spec.serviceAccountName: web (ServiceAccount prod/web exists)")
            );
            // explicit default, and the deprecated field
            for field in ["serviceAccountName", "serviceAccount"] {
                let mut spec = app();
                spec[field] = json!("default");
                let o = workload(kind, json!({"labels": {"app": "web"}}), spec);
                let found = run(&DEFAULT_SERVICE_ACCOUNT, kind, op.clone(), &o, &cluster);
                assert_eq!(found.len(), 1, "{kind} {field}");
                assert_eq!(found[0].path, format!("{p}spec.{field}"));
            }
        }
    }
}

#[test]
fn default_service_account_fix_says_what_to_create() {
    let kind = Kind::Deployment;
    let o = workload(
        kind,
        json!({"labels": {"app.kubernetes.io/name": "checkout", "app": "shop"}}),
        app(),
    );
    let found = run(
        &DEFAULT_SERVICE_ACCOUNT,
        kind,
        Operation::Create,
        &o,
        &enabled_ns(),
    );
    assert_eq!(
        found[0].fix,
        "create ServiceAccount \"checkout\" in namespace \"prod\" (kubectl -n prod create serviceaccount checkout) and set spec.template.spec.serviceAccountName: checkout; the name comes from the app.kubernetes.io/name label"
    );
    let found = run(
        &DEFAULT_SERVICE_ACCOUNT,
        kind,
        Operation::Create,
        &o,
        &NoCluster,
    );
    assert!(
        found[0].fix.starts_with(
            "create ServiceAccount \"checkout\" in namespace \"prod\" if it does not exist"
        ),
        "{}",
        found[0].fix
    );
    // No usable label: a generic fix.
    let o = workload(kind, json!({"labels": {"app": "Not_A_Name"}}), app());
    let found = run(
        &DEFAULT_SERVICE_ACCOUNT,
        kind,
        Operation::Create,
        &o,
        &NoCluster,
    );
    assert!(found[0].fix.starts_with("create a ServiceAccount for this workload and set spec.template.spec.serviceAccountName"), "{}", found[0].fix);
}

#[test]
fn own_service_account_allowed() {
    for kind in Kind::WORKLOADS.iter().copied() {
        for op in OPS {
            for field in ["serviceAccountName", "serviceAccount"] {
                let mut spec = app();
                spec[field] = json!("web");
                let o = workload(kind, json!({"labels": {"app": "web"}}), spec);
                assert!(
                    run(&DEFAULT_SERVICE_ACCOUNT, kind, op.clone(), &o, &NoCluster).is_empty(),
                    "{kind}"
                );
            }
        }
        let o = workload(kind, json!({}), app());
        assert!(run(
            &DEFAULT_SERVICE_ACCOUNT,
            kind,
            Operation::Delete,
            &o,
            &NoCluster
        )
        .is_empty());
    }
}

// ---- wl-injection-disabled

#[test]
fn injection_disabled_by_label_or_annotation() {
    for kind in Kind::WORKLOADS.iter().copied() {
        for op in OPS {
            let p = prefix(kind);
            let o = workload(
                kind,
                json!({"labels": {"sidecar.istio.io/inject": "false"}}),
                app(),
            );
            let found = run(&INJECTION_DISABLED, kind, op.clone(), &o, &NoCluster);
            assert_eq!(found.len(), 1, "{kind}");
            assert_eq!(
                found[0].path,
                format!("{p}metadata.labels[\"sidecar.istio.io/inject\"]")
            );
            assert_eq!(found[0].message, "sidecar.istio.io/inject: \"false\" keeps the Istio sidecar out of this pod, so its traffic skips mTLS and AuthorizationPolicy");
            assert_eq!(
                found[0].fix,
                "remove the label sidecar.istio.io/inject, or set it to \"true\""
            );

            let o = workload(
                kind,
                json!({"annotations": {"sidecar.istio.io/inject": "false"}}),
                app(),
            );
            let found = run(&INJECTION_DISABLED, kind, op.clone(), &o, &NoCluster);
            assert_eq!(found.len(), 1, "{kind}");
            assert_eq!(
                found[0].path,
                format!("{p}metadata.annotations[\"sidecar.istio.io/inject\"]")
            );
            assert!(found[0].message.ends_with(
                "(the deprecated annotation counts because no label of the same name is set)"
            ));
        }
    }
}

#[test]
fn injection_label_wins_over_annotation() {
    for kind in Kind::WORKLOADS.iter().copied() {
        let o = workload(
            kind,
            json!({"labels": {"sidecar.istio.io/inject": "true"},
            "annotations": {"sidecar.istio.io/inject": "false"}}),
            app(),
        );
        assert!(run(&INJECTION_DISABLED, kind, Operation::Create, &o, &NoCluster).is_empty());
        let o = workload(
            kind,
            json!({"labels": {"sidecar.istio.io/inject": "false"},
            "annotations": {"sidecar.istio.io/inject": "true"}}),
            app(),
        );
        let found = run(&INJECTION_DISABLED, kind, Operation::Update, &o, &NoCluster);
        assert!(found[0].path.contains("labels"));
        let o = workload(kind, json!({"labels": {"app": "a"}}), app());
        assert!(run(&INJECTION_DISABLED, kind, Operation::Create, &o, &NoCluster).is_empty());
    }
}

// ---- wl-namespace-not-injected

#[test]
fn namespace_not_injected() {
    let bare = Inventory::complete(Vec::new()).with_namespace("prod", &[("team", "a")]);
    let disabled =
        Inventory::complete(Vec::new()).with_namespace("prod", &[("istio-injection", "disabled")]);
    let ambient = Inventory::complete(Vec::new())
        .with_namespace("prod", &[("istio.io/dataplane-mode", "ambient")]);
    let rev = Inventory::complete(Vec::new()).with_namespace("prod", &[("istio.io/rev", "canary")]);
    for kind in Kind::WORKLOADS.iter().copied() {
        for op in OPS {
            let p = prefix(kind);
            let o = workload(kind, json!({"labels": {"app": "a"}}), app());
            let found = run(&NAMESPACE_NOT_INJECTED, kind, op.clone(), &o, &bare);
            assert_eq!(found.len(), 1, "{kind}");
            assert_eq!(found[0].path, format!("{p}metadata.labels"));
            assert_eq!(found[0].message, "namespace \"prod\" is not labeled for injection (istio-injection=enabled or istio.io/rev) and this pod does not opt in, so it starts without a sidecar");
            assert_eq!(found[0].fix, "label the namespace: kubectl label namespace prod istio-injection=enabled (or add the pod label sidecar.istio.io/inject: \"true\")");
            let found = run(&NAMESPACE_NOT_INJECTED, kind, op.clone(), &o, &disabled);
            assert!(found[0]
                .message
                .contains("istio-injection=disabled, which keeps the sidecar out of every pod"));
            for ok in [&enabled_ns(), &ambient, &rev] {
                assert!(run(&NAMESPACE_NOT_INJECTED, kind, op.clone(), &o, ok).is_empty());
            }
            // The pod opts in itself.
            for labels in [
                json!({"sidecar.istio.io/inject": "true"}),
                json!({"istio.io/rev": "canary"}),
            ] {
                let o = workload(kind, json!({"labels": labels}), app());
                assert!(run(&NAMESPACE_NOT_INJECTED, kind, op.clone(), &o, &bare).is_empty());
                // ... but istio-injection=disabled on the namespace still wins.
                assert_eq!(
                    run(&NAMESPACE_NOT_INJECTED, kind, op.clone(), &o, &disabled).len(),
                    1
                );
            }
            // hostNetwork pods are never injected: wl-host-network reports them.
            let o = workload(
                kind,
                json!({}),
                json!({"hostNetwork": true, "containers": []}),
            );
            assert!(run(&NAMESPACE_NOT_INJECTED, kind, op.clone(), &o, &bare).is_empty());
        }
    }
}

#[test]
fn namespace_unknown_follows_on_lookup_failure() {
    let allow =
        crate::catalogue::policy_from_yaml("onLookupFailure: allow\n", "t").expect("policy");
    for kind in [Kind::Pod, Kind::Deployment, Kind::CronJob] {
        let o = workload(kind, json!({"labels": {"app": "a"}}), app());
        let found = run(
            &NAMESPACE_NOT_INJECTED,
            kind,
            Operation::Create,
            &o,
            &NoCluster,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "metadata.namespace");
        assert!(
            found[0].message.starts_with(
                "namespace labels unknown: meshguard could not read namespace \"prod\""
            ),
            "{}",
            found[0].message
        );
        assert!(found[0]
            .message
            .ends_with("so meshguard cannot tell whether this pod will get a sidecar"));
        // Not found at all (`check` without the namespace in its input).
        let missing = Inventory::complete(Vec::new());
        let found = run(
            &NAMESPACE_NOT_INJECTED,
            kind,
            Operation::Create,
            &o,
            &missing,
        );
        assert!(
            found[0]
                .message
                .starts_with("namespace labels unknown: namespace \"prod\" was not found"),
            "{}",
            found[0].message
        );
        assert!(found[0].fix.starts_with("create the namespace first"));
        assert!(check(
            &NAMESPACE_NOT_INJECTED,
            kind,
            Operation::Create,
            &o,
            &NoCluster,
            &allow
        )
        .is_empty());
        // A pod that opts in does not need the namespace.
        let o = workload(
            kind,
            json!({"labels": {"sidecar.istio.io/inject": "true"}}),
            app(),
        );
        assert!(run(
            &NAMESPACE_NOT_INJECTED,
            kind,
            Operation::Create,
            &o,
            &NoCluster
        )
        .is_empty());
    }
}

// ---- wl-missing-sidecar

fn pod(labels: Value, spec: Value) -> DynamicObject {
    workload(Kind::Pod, json!({"labels": labels}), spec)
}

#[test]
fn missing_sidecar_on_pod_create() {
    let o = pod(json!({"app": "a"}), app());
    let found = run(
        &MISSING_SIDECAR,
        Kind::Pod,
        Operation::Create,
        &o,
        &enabled_ns(),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "spec.containers");
    assert!(found[0].message.starts_with("namespace \"prod\" is labeled for injection, but the pod has no istio-proxy container (nor a native-sidecar init container)"), "{}", found[0].message);
    assert!(found[0]
        .fix
        .starts_with("check that istiod's sidecar injector webhook is running"));
    // Not on UPDATE: injection only happens at creation.
    assert!(run(
        &MISSING_SIDECAR,
        Kind::Pod,
        Operation::Update,
        &o,
        &enabled_ns()
    )
    .is_empty());
    // A pod that opts in in an unlabeled namespace.
    let bare = Inventory::complete(Vec::new()).with_namespace("prod", &[]);
    let o = pod(json!({"sidecar.istio.io/inject": "true"}), app());
    let found = run(&MISSING_SIDECAR, Kind::Pod, Operation::Create, &o, &bare);
    assert!(found[0]
        .message
        .starts_with("the pod opts in to injection, but"));
    // An init container named istio-proxy without restartPolicy: Always is not a sidecar.
    let o = pod(
        json!({}),
        json!({"containers": [{"name": "app"}], "initContainers": [{"name": "istio-proxy"}]}),
    );
    assert_eq!(
        run(
            &MISSING_SIDECAR,
            Kind::Pod,
            Operation::Create,
            &o,
            &enabled_ns()
        )
        .len(),
        1
    );
}

#[test]
fn injected_or_not_expected_pods_allowed() {
    let sidecar = pod(
        json!({}),
        json!({"containers": [{"name": "app"}, {"name": "istio-proxy"}]}),
    );
    let native = pod(
        json!({}),
        json!({"containers": [{"name": "app"}],
        "initContainers": [{"name": "istio-init"}, {"name": "istio-proxy", "restartPolicy": "Always"}]}),
    );
    for o in [&sidecar, &native] {
        assert!(run(
            &MISSING_SIDECAR,
            Kind::Pod,
            Operation::Create,
            o,
            &enabled_ns()
        )
        .is_empty());
        assert!(run(
            &MISSING_SIDECAR,
            Kind::Pod,
            Operation::Create,
            o,
            &NoCluster
        )
        .is_empty());
    }
    let bare = Inventory::complete(Vec::new()).with_namespace("prod", &[]);
    let ambient = Inventory::complete(Vec::new())
        .with_namespace("prod", &[("istio.io/dataplane-mode", "ambient")]);
    let plain = pod(json!({}), app());
    assert!(run(
        &MISSING_SIDECAR,
        Kind::Pod,
        Operation::Create,
        &plain,
        &bare
    )
    .is_empty());
    assert!(run(
        &MISSING_SIDECAR,
        Kind::Pod,
        Operation::Create,
        &plain,
        &ambient
    )
    .is_empty());
    let host = pod(
        json!({}),
        json!({"hostNetwork": true, "containers": [{"name": "app"}]}),
    );
    assert!(run(
        &MISSING_SIDECAR,
        Kind::Pod,
        Operation::Create,
        &host,
        &enabled_ns()
    )
    .is_empty());
    let off = pod(json!({"sidecar.istio.io/inject": "false"}), app());
    assert!(run(
        &MISSING_SIDECAR,
        Kind::Pod,
        Operation::Create,
        &off,
        &enabled_ns()
    )
    .is_empty());
    // Unknown namespace: onLookupFailure decides.
    let found = run(
        &MISSING_SIDECAR,
        Kind::Pod,
        Operation::Create,
        &plain,
        &NoCluster,
    );
    assert!(found[0].message.starts_with("namespace labels unknown"));
    let allow =
        crate::catalogue::policy_from_yaml("onLookupFailure: allow\n", "t").expect("policy");
    assert!(check(
        &MISSING_SIDECAR,
        Kind::Pod,
        Operation::Create,
        &plain,
        &NoCluster,
        &allow
    )
    .is_empty());
}

// ---- wl-proxy-image

#[test]
fn proxy_image_must_be_istios() {
    let with_proxy = |list: &str, image: Option<&str>| {
        let mut proxy = json!({"name": "istio-proxy"});
        if let Some(i) = image {
            proxy["image"] = json!(i);
        }
        if list == "initContainers" {
            proxy["restartPolicy"] = json!("Always");
        }
        let mut spec = app();
        spec[list] = match spec.get(list) {
            Some(Value::Array(a)) => {
                let mut a = a.clone();
                a.push(proxy);
                Value::Array(a)
            }
            _ => json!([proxy]),
        };
        spec
    };
    for kind in Kind::WORKLOADS.iter().copied() {
        let p = prefix(kind);
        for image in [
            Some("docker.io/istio/proxyv2:1.24.0"),
            Some("gcr.io/istio-release/proxyv2:1.22.1-distroless"),
            Some("registry.redhat.io/openshift-service-mesh/proxyv2-rhel9@sha256:0f3a"),
            Some("localhost:5000/istio/proxyv2"),
            Some("auto"),
            None,
        ] {
            let o = workload(kind, json!({}), with_proxy("containers", image));
            assert!(
                run(&PROXY_IMAGE, kind, Operation::Create, &o, &enabled_ns()).is_empty(),
                "{kind} {image:?}"
            );
        }
        let o = workload(
            kind,
            json!({}),
            with_proxy("containers", Some("busybox:1.36")),
        );
        let found = run(&PROXY_IMAGE, kind, Operation::Create, &o, &enabled_ns());
        assert_eq!(found.len(), 1, "{kind}");
        assert_eq!(found[0].path, format!("{p}spec.containers[1].image"));
        assert!(found[0]
            .message
            .contains("runs \"busybox:1.36\", not Istio's proxy image"));
        // A native sidecar too; a registry port is not mistaken for a tag.
        let o = workload(
            kind,
            json!({}),
            with_proxy("initContainers", Some("localhost:5000/tools/shell:1")),
        );
        let found = run(&PROXY_IMAGE, kind, Operation::Create, &o, &enabled_ns());
        assert_eq!(found[0].path, format!("{p}spec.initContainers[0].image"));
        // Other containers may run anything.
        let o = workload(kind, json!({}), app());
        assert!(run(&PROXY_IMAGE, kind, Operation::Create, &o, &enabled_ns()).is_empty());
    }
}

#[test]
fn proxy_image_is_a_deny_and_covers_the_annotation_and_init_containers() {
    assert_eq!(PROXY_IMAGE.default_action, Action::Deny);
    for kind in Kind::WORKLOADS.iter().copied() {
        let p = prefix(kind);
        // sidecar.istio.io/proxyImage is used verbatim (when it has a "/") for the proxy
        // and istio-init.
        let o = workload(
            kind,
            json!({"annotations": {"sidecar.istio.io/proxyImage": "evil.example/envoy:1"}}),
            app(),
        );
        let found = run(&PROXY_IMAGE, kind, Operation::Create, &o, &enabled_ns());
        assert_eq!(found.len(), 1, "{kind}");
        assert_eq!(
            found[0].path,
            format!("{p}metadata.annotations[\"sidecar.istio.io/proxyImage\"]")
        );
        for fine in ["docker.io/istio/proxyv2:1.22.0", "proxyv2"] {
            let o = workload(
                kind,
                json!({"annotations": {"sidecar.istio.io/proxyImage": fine}}),
                app(),
            );
            assert!(run(&PROXY_IMAGE, kind, Operation::Create, &o, &enabled_ns()).is_empty());
        }
        // istio-init and istio-validation replace the iptables setup.
        let mut spec = app();
        spec["initContainers"] = json!([{"name": "istio-init", "image": "evil/iptables:1"}]);
        let found = run(
            &PROXY_IMAGE,
            kind,
            Operation::Create,
            &workload(kind, json!({}), spec),
            &enabled_ns(),
        );
        assert_eq!(found[0].path, format!("{p}spec.initContainers[0].image"));
        assert!(found[0].message.contains("replaces the iptables setup"));
    }
}

#[test]
fn a_pod_update_may_not_swap_the_proxy_image() {
    let pod_with_image = |image: &str| {
        workload(
            Kind::Pod,
            json!({}),
            json!({"containers": [{"name": "app", "image": "app:1"},
                {"name": "istio-proxy", "image": image, "args": ["proxy", "sidecar"]}]}),
        )
    };
    let old = pod_with_image("docker.io/istio/proxyv2:1.24.0");
    let review = |new: &DynamicObject, mesh: &crate::mesh::MeshContext| {
        let op = Operation::Update;
        let review = Review {
            kind: Kind::Pod,
            version: "v1",
            operation: &op,
            namespace: "prod",
            name: "w",
            object: Some(new),
            old_object: Some(&old),
            dry_run: false,
            created_for: None,
        };
        let ctx = Ctx {
            policy: &Policy::default(),
            mesh,
            cluster: &NoCluster,
            cache: &crate::rules::ReviewCache::default(),
        };
        let mut out = Vec::new();
        (PROXY_IMAGE.check)(&review, &ctx, &mut out);
        out
    };
    let none = crate::mesh::MeshContext::default();
    // A look-alike name passes the image check but not the swap check.
    let found = review(&pod_with_image("attacker.example/proxyv2:1.24.0"), &none);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "spec.containers[1].image");
    assert!(found[0]
        .message
        .starts_with("this update swaps container \"istio-proxy\" of a running pod"));
    // Unchanged, or the app's own image updated: fine.
    assert!(review(&old, &none).is_empty());
    let app_update = workload(
        Kind::Pod,
        json!({}),
        json!({"containers": [{"name": "app", "image": "app:2"},
            {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "args": ["proxy", "sidecar"]}]}),
    );
    assert!(review(&app_update, &none).is_empty());
    // To the image the injector gives a new pod now: fine (the mesh as installed tells).
    let mesh = crate::mesh::testing::mesh(&[enabled_injector("default", "1.27.1")]);
    assert!(review(&pod_with_image("docker.io/istio/proxyv2:1.27.1"), &mesh).is_empty());
    assert_eq!(
        review(&pod_with_image("docker.io/istio/proxyv2:1.26.0"), &mesh).len(),
        1
    );
}

#[test]
fn host_network_in_a_meshed_namespace_is_denied() {
    assert_eq!(HOST_NETWORK_IN_MESH.default_action, Action::Deny);
    for kind in Kind::WORKLOADS.iter().copied() {
        let o = workload(
            kind,
            json!({}),
            json!({"hostNetwork": true, "containers": [{"name": "agent"}]}),
        );
        for meshed in [
            enabled_ns(),
            ns_with(&[("istio.io/dataplane-mode", "ambient")]),
        ] {
            let found = run(&HOST_NETWORK_IN_MESH, kind, Operation::Create, &o, &meshed);
            assert_eq!(found.len(), 1, "{kind}");
            assert_eq!(found[0].path, format!("{}spec.hostNetwork", prefix(kind)));
            assert!(found[0]
                .message
                .starts_with("namespace \"prod\" is in the mesh"));
            // The warning is left to namespaces outside the mesh.
            assert!(run(&HOST_NETWORK, kind, Operation::Create, &o, &meshed).is_empty());
        }
        let outside = ns_with(&[]);
        assert!(run(&HOST_NETWORK_IN_MESH, kind, Operation::Create, &o, &outside).is_empty());
        assert_eq!(
            run(&HOST_NETWORK, kind, Operation::Create, &o, &outside).len(),
            1
        );
        // A pod that opts in counts as meshed even in an unlabelled namespace.
        let opted = workload(
            kind,
            json!({"labels": {"sidecar.istio.io/inject": "true"}}),
            json!({"hostNetwork": true, "containers": []}),
        );
        assert_eq!(
            run(
                &HOST_NETWORK_IN_MESH,
                kind,
                Operation::Create,
                &opted,
                &outside
            )
            .len(),
            1
        );
        // Unknown labels follow onLookupFailure (deny by default).
        let found = run(
            &HOST_NETWORK_IN_MESH,
            kind,
            Operation::Create,
            &o,
            &NoCluster,
        );
        assert!(found[0].message.starts_with("namespace labels unknown"));
        let allow =
            crate::catalogue::policy_from_yaml("onLookupFailure: allow\n", "t").expect("policy");
        assert!(check(
            &HOST_NETWORK_IN_MESH,
            kind,
            Operation::Create,
            &o,
            &NoCluster,
            &allow
        )
        .is_empty());
        // No hostNetwork: nothing.
        let o = workload(kind, json!({}), app());
        assert!(run(
            &HOST_NETWORK_IN_MESH,
            kind,
            Operation::Create,
            &o,
            &enabled_ns()
        )
        .is_empty());
    }
}

#[test]
fn proxy_config_interception_none_is_a_bypass() {
    for kind in Kind::WORKLOADS.iter().copied() {
        for value in [
            "interceptionMode: NONE",
            "{\"interceptionMode\":\"NONE\"}",
            "concurrency: 2\ninterceptionMode: none\n",
        ] {
            let o = workload(
                kind,
                json!({"annotations": {"proxy.istio.io/config": value}}),
                app(),
            );
            let found = run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &enabled_ns());
            assert_eq!(found.len(), 1, "{kind} {value}");
            assert_eq!(
                found[0].path,
                format!(
                    "{}metadata.annotations[\"proxy.istio.io/config\"]",
                    prefix(kind)
                )
            );
        }
        for value in ["interceptionMode: TPROXY", "concurrency: 2", "not: [yaml"] {
            let o = workload(
                kind,
                json!({"annotations": {"proxy.istio.io/config": value}}),
                app(),
            );
            assert!(
                run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &enabled_ns()).is_empty(),
                "{value}"
            );
        }
        // The interceptionMode annotation wins over the proxy config, as in the template.
        let o = workload(
            kind,
            json!({"annotations": {"proxy.istio.io/config": "interceptionMode: NONE",
                "sidecar.istio.io/interceptionMode": "REDIRECT"}}),
            app(),
        );
        assert!(run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &enabled_ns()).is_empty());
    }
}

// ---- ambient mode

fn ambient_ns() -> Inventory {
    Inventory::complete(Vec::new())
        .with_namespace("prod", &[("istio.io/dataplane-mode", "ambient")])
}

#[test]
fn ambient_pods_are_in_the_mesh_without_a_sidecar() {
    let bare = Inventory::complete(Vec::new()).with_namespace("prod", &[("team", "a")]);
    let disabled =
        Inventory::complete(Vec::new()).with_namespace("prod", &[("istio-injection", "disabled")]);
    for kind in Kind::WORKLOADS.iter().copied() {
        let p = prefix(kind);
        // inject=false is moot where ztunnel captures the pod ...
        let off = workload(
            kind,
            json!({"labels": {"sidecar.istio.io/inject": "false"}}),
            app(),
        );
        assert!(run(
            &INJECTION_DISABLED,
            kind,
            Operation::Create,
            &off,
            &ambient_ns()
        )
        .is_empty());
        // ... but still denied where nothing else carries the pod, or nobody can tell.
        for cluster in [&enabled_ns(), &bare] {
            assert_eq!(
                run(&INJECTION_DISABLED, kind, Operation::Create, &off, cluster).len(),
                1
            );
        }
        assert_eq!(
            run(
                &INJECTION_DISABLED,
                kind,
                Operation::Create,
                &off,
                &NoCluster
            )
            .len(),
            1
        );
        // A pod that enrols itself in ambient and refuses a sidecar is captured wherever it runs.
        let own = workload(
            kind,
            json!({"labels": {"sidecar.istio.io/inject": "false", "istio.io/dataplane-mode": "ambient"}}),
            app(),
        );
        for cluster in [&enabled_ns(), &bare] {
            assert!(run(&INJECTION_DISABLED, kind, Operation::Create, &own, cluster).is_empty());
        }
        assert!(run(
            &INJECTION_DISABLED,
            kind,
            Operation::Create,
            &own,
            &NoCluster
        )
        .is_empty());

        // istio.io/dataplane-mode=none leaves an ambient namespace's mesh.
        let none = workload(
            kind,
            json!({"labels": {"istio.io/dataplane-mode": "none"}}),
            app(),
        );
        let found = run(
            &INJECTION_DISABLED,
            kind,
            Operation::Create,
            &none,
            &ambient_ns(),
        );
        assert_eq!(found.len(), 1, "{kind}");
        assert_eq!(
            found[0].path,
            format!("{p}metadata.labels[\"istio.io/dataplane-mode\"]")
        );
        assert!(found[0]
            .message
            .contains("takes this pod out of the ambient mesh of namespace \"prod\""));
        assert!(found[0]
            .fix
            .starts_with("remove the pod label istio.io/dataplane-mode"));
        // ... and means nothing where the injector adds a sidecar anyway.
        assert!(run(
            &INJECTION_DISABLED,
            kind,
            Operation::Create,
            &none,
            &enabled_ns()
        )
        .is_empty());
        // An ambient namespace's pod that asks for a sidecar gets one (sidecars win).
        let sidecar = workload(
            kind,
            json!({"labels": {"istio.io/dataplane-mode": "none", "sidecar.istio.io/inject": "true"}}),
            app(),
        );
        assert!(run(
            &INJECTION_DISABLED,
            kind,
            Operation::Create,
            &sidecar,
            &ambient_ns()
        )
        .is_empty());

        // wl-namespace-not-injected: pod-level ambient enrolment counts as in the mesh.
        let enrolled = workload(
            kind,
            json!({"labels": {"istio.io/dataplane-mode": "ambient"}}),
            app(),
        );
        for cluster in [&bare, &disabled] {
            assert!(run(
                &NAMESPACE_NOT_INJECTED,
                kind,
                Operation::Create,
                &enrolled,
                cluster
            )
            .is_empty());
        }
        assert!(run(
            &NAMESPACE_NOT_INJECTED,
            kind,
            Operation::Create,
            &enrolled,
            &NoCluster
        )
        .is_empty());
        let plain = workload(kind, json!({"labels": {"app": "a"}}), app());
        assert_eq!(
            run(
                &NAMESPACE_NOT_INJECTED,
                kind,
                Operation::Create,
                &plain,
                &bare
            )
            .len(),
            1
        );
        // hostNetwork pods are never captured, whatever their labels say.
        let host = workload(
            kind,
            json!({"labels": {"istio.io/dataplane-mode": "ambient", "sidecar.istio.io/inject": "false"}}),
            json!({"hostNetwork": true, "containers": []}),
        );
        assert_eq!(
            run(
                &INJECTION_DISABLED,
                kind,
                Operation::Create,
                &host,
                &ambient_ns()
            )
            .len(),
            1
        );
    }
}

#[test]
fn ambient_bypass_annotations() {
    let ann = |k: &str, v: &str| json!({"annotations": {k: v}});
    for kind in Kind::WORKLOADS.iter().copied() {
        let p = prefix(kind);
        // The sidecar's interception annotations do nothing under ztunnel ...
        let o = workload(
            kind,
            ann("traffic.sidecar.istio.io/excludeInboundPorts", "8080"),
            app(),
        );
        assert!(run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &ambient_ns()).is_empty());
        assert_eq!(
            run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &enabled_ns()).len(),
            1
        );
        assert_eq!(
            run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &NoCluster).len(),
            1
        );
        // ... unless the pod asks for a sidecar after all.
        let o = workload(
            kind,
            json!({"labels": {"sidecar.istio.io/inject": "true"},
                   "annotations": {"traffic.sidecar.istio.io/excludeInboundPorts": "8080"}}),
            app(),
        );
        assert_eq!(
            run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &ambient_ns()).len(),
            1
        );

        // ztunnel's own bypass: inbound capture off.
        for v in ["true", "True", "1"] {
            let o = workload(
                kind,
                ann("ambient.istio.io/bypass-inbound-capture", v),
                app(),
            );
            let found = run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &ambient_ns());
            assert_eq!(found.len(), 1, "{kind} {v}");
            assert_eq!(
                found[0].path,
                format!("{p}metadata.annotations[\"ambient.istio.io/bypass-inbound-capture\"]")
            );
            assert!(found[0]
                .message
                .contains("ztunnel does not capture inbound traffic"));
            assert_eq!(
                run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &NoCluster).len(),
                1
            );
            // A sidecar pod ignores it.
            assert!(run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &enabled_ns()).is_empty());
        }
        for v in ["false", "", "yes"] {
            let o = workload(
                kind,
                ann("ambient.istio.io/bypass-inbound-capture", v),
                app(),
            );
            assert!(
                run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &ambient_ns()).is_empty(),
                "{v}"
            );
        }
    }
}

// ---- wl-traffic-bypass

#[test]
fn bypass_annotations_denied() {
    for kind in Kind::WORKLOADS.iter().copied() {
        for op in OPS {
            let p = prefix(kind);
            let o = workload(
                kind,
                json!({"annotations": {
                "traffic.sidecar.istio.io/excludeInboundPorts": "8080",
                "traffic.sidecar.istio.io/excludeOutboundIPRanges": "0.0.0.0/0",
                "traffic.sidecar.istio.io/includeInboundPorts": "",
                "sidecar.istio.io/interceptionMode": "NONE"}}),
                app(),
            );
            let found = run(&TRAFFIC_BYPASS, kind, op.clone(), &o, &NoCluster);
            assert_eq!(found.len(), 4, "{kind}: {found:?}");
            assert_eq!(
                found[0].path,
                format!(
                    "{p}metadata.annotations[\"traffic.sidecar.istio.io/excludeInboundPorts\"]"
                )
            );
            assert_eq!(found[0].message, "traffic.sidecar.istio.io/excludeInboundPorts: \"8080\": connections to these ports reach the application directly, without mTLS or AuthorizationPolicy");
            assert!(found[0].fix.starts_with("remove the annotation"));
            assert!(found[1].message.starts_with(
                "traffic.sidecar.istio.io/includeInboundPorts: \"\": only the listed inbound ports"
            ));
            assert!(found[3].message.contains("interception mode NONE"));
        }
    }
}

#[test]
fn harmless_traffic_annotations_allowed() {
    for kind in Kind::WORKLOADS.iter().copied() {
        let o = workload(
            kind,
            json!({"annotations": {
            "traffic.sidecar.istio.io/excludeInboundPorts": "",
            "traffic.sidecar.istio.io/includeInboundPorts": "*",
            "traffic.sidecar.istio.io/includeOutboundIPRanges": "*",
            "sidecar.istio.io/interceptionMode": "TPROXY"}}),
            app(),
        );
        assert!(run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &NoCluster).is_empty());
    }
}

// ---- wl-host-network

#[test]
fn host_network_warned() {
    for kind in Kind::WORKLOADS.iter().copied() {
        for op in OPS {
            let o = workload(
                kind,
                json!({}),
                json!({"hostNetwork": true, "containers": []}),
            );
            let found = run(&HOST_NETWORK, kind, op.clone(), &o, &NoCluster);
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].path, format!("{}spec.hostNetwork", prefix(kind)));
            assert!(found[0]
                .message
                .starts_with("hostNetwork pods share the node's network and are never injected"));
            let o = workload(
                kind,
                json!({}),
                json!({"hostNetwork": false, "containers": []}),
            );
            assert!(run(&HOST_NETWORK, kind, op.clone(), &o, &NoCluster).is_empty());
        }
    }
    assert_eq!(HOST_NETWORK.default_action, Action::Warn);
}

// ---- wl-proxy-uid

/// The injector's status annotation, listing an injected istio-proxy (on a Pod the proxy
/// counts as Istio's only when the injector lists it).
fn injected_meta() -> Value {
    json!({"annotations": {"sidecar.istio.io/status":
        "{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"],\"revision\":\"default\"}"}})
}

#[test]
fn proxy_uid_denied_for_app_containers() {
    for kind in Kind::WORKLOADS.iter().copied() {
        for op in OPS {
            let p = prefix(kind);
            let o = workload(
                kind,
                injected_meta(),
                json!({
                "containers": [{"name": "app", "securityContext": {"runAsUser": 1337}},
                               {"name": "istio-proxy", "securityContext": {"runAsUser": 1337}}],
                "initContainers": [{"name": "setup", "securityContext": {"runAsUser": 1337}}]}),
            );
            let found = run(&PROXY_UID_RULE, kind, op.clone(), &o, &NoCluster);
            assert_eq!(found.len(), 2, "{kind}");
            assert_eq!(
                found[0].path,
                format!("{p}spec.containers[0].securityContext.runAsUser")
            );
            assert!(found[0]
                .message
                .starts_with("container \"app\" runs as UID 1337, the sidecar's own UID"));
            assert_eq!(
                found[1].path,
                format!("{p}spec.initContainers[0].securityContext.runAsUser")
            );
            // Pod-level UID inherited by an app container.
            let o = workload(
                kind,
                injected_meta(),
                json!({"securityContext": {"runAsUser": 1337},
                "containers": [{"name": "app"}, {"name": "other", "securityContext": {"runAsUser": 1000}},
                               {"name": "istio-proxy"}]}),
            );
            let found = run(&PROXY_UID_RULE, kind, op.clone(), &o, &NoCluster);
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].path, format!("{p}spec.securityContext.runAsUser"));
            assert!(
                found[0].message.contains("container(s) \"app\" inherit it"),
                "{}",
                found[0].message
            );
            // GID 1337 too (istio-iptables skips --gid-owner 1337), pod- and container-level.
            let o = workload(
                kind,
                injected_meta(),
                json!({"securityContext": {"runAsGroup": 1337},
                "containers": [{"name": "app", "securityContext": {"runAsGroup": 1000}},
                               {"name": "worker"},
                               {"name": "sidecar", "securityContext": {"runAsGroup": 1337}},
                               {"name": "istio-proxy", "securityContext": {"runAsUser": 1337, "runAsGroup": 1337}}]}),
            );
            let found = run(&PROXY_UID_RULE, kind, op.clone(), &o, &NoCluster);
            let paths: Vec<&str> = found.iter().map(|v| v.path.as_str()).collect();
            assert_eq!(
                paths,
                [
                    format!("{p}spec.containers[2].securityContext.runAsGroup"),
                    format!("{p}spec.securityContext.runAsGroup")
                ],
                "{kind}"
            );
            assert!(found[0]
                .message
                .contains("runs as GID 1337, the sidecar's own GID"));
            assert!(found[1]
                .message
                .contains("container(s) \"worker\" inherit it"));
        }
    }
}

#[test]
fn proxy_uid_judges_containers_that_only_borrow_istios_name() {
    for kind in Kind::WORKLOADS.iter().copied() {
        // An istio-proxy of its own (its own image or command) is an application container.
        let o = workload(
            kind,
            injected_meta(),
            json!({"containers": [{"name": "app"},
                {"name": "istio-proxy", "image": "evil/envoy", "securityContext": {"runAsUser": 1337}},
                {"name": "istio-proxy-2", "securityContext": {"runAsUser": 1337}}],
                "initContainers": [{"name": "istio-init", "command": ["sh"], "securityContext": {"runAsGroup": 1337}}]}),
        );
        let found = run(&PROXY_UID_RULE, kind, Operation::Create, &o, &NoCluster);
        assert_eq!(found.len(), 3, "{kind} {found:?}");
        // Ephemeral containers (kubectl debug) run as whatever they say.
        let o = workload(
            kind,
            injected_meta(),
            json!({"containers": [{"name": "app"}],
                "ephemeralContainers": [{"name": "debugger", "securityContext": {"runAsUser": 1337}}]}),
        );
        let found = run(&PROXY_UID_RULE, kind, Operation::Update, &o, &NoCluster);
        assert_eq!(found.len(), 1, "{kind}");
        assert_eq!(
            found[0].path,
            format!(
                "{}spec.ephemeralContainers[0].securityContext.runAsUser",
                prefix(kind)
            )
        );
    }
    // On a Pod, an istio-proxy the injector did not list is not Istio's.
    let o = workload(
        Kind::Pod,
        json!({}),
        json!({"containers": [{"name": "app"},
            {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "securityContext": {"runAsUser": 1337}}]}),
    );
    assert_eq!(
        run(
            &PROXY_UID_RULE,
            Kind::Pod,
            Operation::Create,
            &o,
            &NoCluster
        )
        .len(),
        1
    );
}

#[test]
fn proxy_uid_allowed_otherwise() {
    for kind in Kind::WORKLOADS.iter().copied() {
        let o = workload(
            kind,
            json!({"annotations": {"sidecar.istio.io/status":
                "{\"initContainers\":[\"istio-proxy\",\"istio-validation\"],\"containers\":[\"istio-proxy\"]}"}}),
            json!({"securityContext": {"runAsUser": 1000},
            "containers": [{"name": "app"}, {"name": "istio-proxy", "securityContext": {"runAsUser": 1337}}],
            "initContainers": [{"name": "istio-proxy", "restartPolicy": "Always", "securityContext": {"runAsUser": 1337}},
                {"name": "istio-validation", "args": ["istio-iptables", "--run-validation"], "securityContext": {"runAsUser": 1337, "runAsGroup": 1337}}]}),
        );
        assert!(run(&PROXY_UID_RULE, kind, Operation::Create, &o, &NoCluster).is_empty());
        // Pod-level 1337 that every app container overrides.
        let o = workload(
            kind,
            json!({}),
            json!({"securityContext": {"runAsUser": 1337, "runAsGroup": 1337},
            "containers": [{"name": "app", "securityContext": {"runAsUser": 1000, "runAsGroup": 1000}}]}),
        );
        assert!(run(&PROXY_UID_RULE, kind, Operation::Update, &o, &NoCluster).is_empty());
    }
}

// ---- the injector decision of the mesh as installed

use crate::mesh::testing::{
    canary_mesh, enabled_injector, expr, injector_cm, mesh_of, revision_mwc, tag_mwc,
};

/// A pod (for wl-missing-sidecar and friends) or a Deployment with these template labels.
fn pod_with(labels: Value, spec: Value) -> DynamicObject {
    workload(Kind::Pod, json!({"labels": labels}), spec)
}

#[test]
fn enable_namespaces_by_default_injects_unlabelled_namespaces() {
    // sidecarInjectorWebhook.enableNamespacesByDefault: the auto.* webhook selects them.
    let mesh = mesh_of(
        &[revision_mwc("", true)],
        &[enabled_injector("default", "1.27.1")],
    );
    let d = workload(Kind::Deployment, json!({}), app());
    let unlabelled = ns_with(&[("team", "a")]);
    assert!(in_mesh(
        &NAMESPACE_NOT_INJECTED,
        Kind::Deployment,
        &d,
        &unlabelled,
        &mesh
    )
    .is_empty());
    // ... the label folklore (no mesh context) says otherwise.
    assert_eq!(
        in_mesh(
            &NAMESPACE_NOT_INJECTED,
            Kind::Deployment,
            &d,
            &unlabelled,
            &crate::mesh::MeshContext::default()
        )
        .len(),
        1
    );
    // kube-system stays out: the auto.* webhook excludes it, and Istio never injects there.
    let system = Inventory::complete(Vec::new()).with_namespace("kube-public", &[]);
    let found = in_mesh_ns(
        &NAMESPACE_NOT_INJECTED,
        Kind::Deployment,
        "kube-public",
        &d,
        &system,
        &mesh,
    );
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn labels_that_look_right_but_no_injector_serves() {
    // A revisioned install without a default revision or tag: istio-injection=enabled is
    // served by nobody (Istio's chart renders namespace.* only for the default revision).
    let mesh = mesh_of(
        &[
            revision_mwc("canary", false),
            tag_mwc("prod-stable", "canary", false),
        ],
        &[enabled_injector("canary", "1.27.1")],
    );
    let d = workload(Kind::Deployment, json!({}), app());
    let found = in_mesh(
        &NAMESPACE_NOT_INJECTED,
        Kind::Deployment,
        &d,
        &enabled_ns(),
        &mesh,
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "spec.template.metadata.labels");
    assert!(
        found[0].message.starts_with(
            "no sidecar injector webhook selects this pod in namespace \"prod\", so it starts without a sidecar (injectors serve istio.io/rev=prod-stable, istio.io/rev=canary; revisions: canary; tags: prod-stable → canary)"
        ),
        "{}",
        found[0].message
    );
    assert_eq!(
        found[0].fix,
        "label the namespace for an injector that exists: kubectl label namespace prod istio.io/rev=prod-stable istio-injection- --overwrite"
    );
    // The pod that should have been injected is not expected to carry a proxy.
    let p = pod_with(json!({}), app());
    assert!(in_mesh(&MISSING_SIDECAR, Kind::Pod, &p, &enabled_ns(), &mesh).is_empty());
    // The tag and the revision both serve.
    for rev in ["prod-stable", "canary"] {
        let ns = ns_with(&[("istio.io/rev", rev)]);
        assert!(in_mesh(&NAMESPACE_NOT_INJECTED, Kind::Deployment, &d, &ns, &mesh).is_empty());
        let found = in_mesh(&MISSING_SIDECAR, Kind::Pod, &p, &ns, &mesh);
        assert_eq!(found.len(), 1, "{rev}");
        assert!(
            found[0]
                .message
                .starts_with("webhook \"rev.namespace.sidecar-injector.istio.io\""),
            "{}",
            found[0].message
        );
    }
}

#[test]
fn the_injectors_own_configuration_keeps_pods_out() {
    let never = "policy: enabled\nneverInjectSelector:\n  - matchExpressions: [{key: batch, operator: Exists}]\n";
    let mesh = mesh_of(
        &[revision_mwc("", false)],
        &[injector_cm("default", never, "1.27.1")],
    );
    let batch = workload(Kind::Job, json!({"labels": {"batch": "x"}}), app());
    let found = in_mesh(
        &NAMESPACE_NOT_INJECTED,
        Kind::Job,
        &batch,
        &enabled_ns(),
        &mesh,
    );
    assert_eq!(found.len(), 1);
    assert!(
        found[0].message.contains("neverInjectSelector[0]"),
        "{}",
        found[0].message
    );
    assert!(found[0]
        .fix
        .starts_with("add the pod label sidecar.istio.io/inject: \"true\""));
    // The pod's own label comes first.
    let asks = workload(
        Kind::Job,
        json!({"labels": {"batch": "x", "sidecar.istio.io/inject": "true"}}),
        app(),
    );
    assert!(in_mesh(
        &NAMESPACE_NOT_INJECTED,
        Kind::Job,
        &asks,
        &enabled_ns(),
        &mesh
    )
    .is_empty());
    let disabled = mesh_of(
        &[revision_mwc("", false)],
        &[injector_cm("default", "policy: disabled\n", "1.27.1")],
    );
    let d = workload(Kind::Deployment, json!({}), app());
    let found = in_mesh(
        &NAMESPACE_NOT_INJECTED,
        Kind::Deployment,
        &d,
        &enabled_ns(),
        &disabled,
    );
    assert!(
        found[0].message.contains("policy is disabled"),
        "{}",
        found[0].message
    );
}

#[test]
fn manually_injected_pods_carry_their_sidecar() {
    let injected = json!({"containers": [{"name": "app", "image": "app"},
        {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.1"}]});
    for mesh in [crate::mesh::MeshContext::default(), canary_mesh(&[])] {
        for kind in [Kind::Pod, Kind::Deployment] {
            let o = workload(kind, json!({}), injected.clone());
            assert!(
                in_mesh(&NAMESPACE_NOT_INJECTED, kind, &o, &ns_with(&[]), &mesh).is_empty(),
                "{kind}"
            );
            // Without the proxy, it is reported.
            let o = workload(kind, json!({}), app());
            assert_eq!(
                in_mesh(&NAMESPACE_NOT_INJECTED, kind, &o, &ns_with(&[]), &mesh).len(),
                1
            );
        }
    }
}

#[test]
fn inject_values_are_read_the_injectors_way() {
    // Istio 1.27+: only "true" and "false" decide; "no" is ignored and the pod is injected.
    let new = mesh_of(
        &[revision_mwc("", false)],
        &[enabled_injector("default", "1.27.1")],
    );
    let old = mesh_of(
        &[revision_mwc("", false)],
        &[enabled_injector("default", "1.26.2")],
    );
    for (value, on_new, on_old) in [
        ("no", 0, 1),
        ("False", 0, 1),
        ("false", 1, 1),
        ("true", 0, 0),
    ] {
        let d = workload(
            Kind::Deployment,
            json!({"labels": {"sidecar.istio.io/inject": value}}),
            app(),
        );
        for (mesh, want) in [(&new, on_new), (&old, on_old)] {
            assert_eq!(
                in_mesh(
                    &INJECTION_DISABLED,
                    Kind::Deployment,
                    &d,
                    &enabled_ns(),
                    mesh
                )
                .len(),
                want,
                "{value}"
            );
        }
        // Without an injector visible, meshguard's reading: anything but on/empty disables.
        let assumed = usize::from(value != "true");
        assert_eq!(
            in_mesh(
                &INJECTION_DISABLED,
                Kind::Deployment,
                &d,
                &enabled_ns(),
                &crate::mesh::MeshContext::default()
            )
            .len(),
            assumed,
            "{value}"
        );
    }
}

#[test]
fn an_opt_in_does_not_beat_istio_injection_disabled() {
    // Notes item 8: a pod that opts in inside istio-injection=disabled gets no sidecar, so
    // in an ambient namespace it is ztunnel's; the sidecar traffic annotations do nothing.
    let ns = ns_with(&[
        ("istio-injection", "disabled"),
        ("istio.io/dataplane-mode", "ambient"),
    ]);
    let d = workload(
        Kind::Deployment,
        json!({"labels": {"sidecar.istio.io/inject": "true"},
               "annotations": {"traffic.sidecar.istio.io/excludeInboundPorts": "8080"}}),
        app(),
    );
    let none = crate::mesh::MeshContext::default();
    assert!(in_mesh(&TRAFFIC_BYPASS, Kind::Deployment, &d, &ns, &none).is_empty());
    assert!(in_mesh(&NAMESPACE_NOT_INJECTED, Kind::Deployment, &d, &ns, &none).is_empty());
    // Without ambient, the namespace label keeps it out: reported.
    let off = ns_with(&[("istio-injection", "disabled")]);
    assert_eq!(
        in_mesh(&TRAFFIC_BYPASS, Kind::Deployment, &d, &off, &none).len(),
        1
    );
    assert!(
        in_mesh(&NAMESPACE_NOT_INJECTED, Kind::Deployment, &d, &off, &none)[0]
            .message
            .contains("istio-injection=disabled")
    );
}

#[test]
fn a_pod_revision_no_injector_serves_is_left_to_ns_unknown_revision() {
    let d = workload(
        Kind::Deployment,
        json!({"labels": {"istio.io/rev": "nope"}}),
        app(),
    );
    let found = in_mesh(
        &NAMESPACE_NOT_INJECTED,
        Kind::Deployment,
        &d,
        &ns_with(&[]),
        &canary_mesh(&[]),
    );
    assert!(found.is_empty(), "{found:?}");
    let d = workload(
        Kind::Deployment,
        json!({"labels": {"istio.io/rev": "canary"}}),
        app(),
    );
    assert!(in_mesh(
        &NAMESPACE_NOT_INJECTED,
        Kind::Deployment,
        &d,
        &ns_with(&[]),
        &canary_mesh(&[])
    )
    .is_empty());
    let _ = expr; // the selector builder is shared with the mesh tests
}

// ---- wl-proxy-image-auto

#[test]
fn proxy_image_auto_on_pod_create() {
    let with = |list: &str| {
        let mut spec = app();
        let mut proxy = json!({"name": "istio-proxy", "image": "auto"});
        if list == "initContainers" {
            proxy["restartPolicy"] = json!("Always");
            spec["initContainers"] = json!([proxy]);
        } else {
            spec["containers"].as_array_mut().expect("list").push(proxy);
        }
        pod_with(json!({}), spec)
    };
    for (list, path) in [
        ("containers", "spec.containers[1].image"),
        ("initContainers", "spec.initContainers[0].image"),
    ] {
        let found = run(
            &PROXY_IMAGE_AUTO,
            Kind::Pod,
            Operation::Create,
            &with(list),
            &enabled_ns(),
        );
        assert_eq!(found.len(), 1, "{list}");
        assert_eq!(found[0].path, path);
        assert!(found[0].message.contains("still has image \"auto\""));
        assert!(found[0]
            .fix
            .contains("kubectl label namespace prod istio-injection=enabled"));
        // Updates and injected images pass.
        assert!(run(
            &PROXY_IMAGE_AUTO,
            Kind::Pod,
            Operation::Update,
            &with(list),
            &enabled_ns()
        )
        .is_empty());
    }
    let injected = pod_with(
        json!({}),
        json!({"containers": [{"name": "app"}, {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.1"}]}),
    );
    assert!(run(
        &PROXY_IMAGE_AUTO,
        Kind::Pod,
        Operation::Create,
        &injected,
        &enabled_ns()
    )
    .is_empty());
    // The fix names a label an injector serves.
    let found = in_mesh(
        &PROXY_IMAGE_AUTO,
        Kind::Pod,
        &with("containers"),
        &ns_with(&[]),
        &mesh_of(
            &[revision_mwc("canary", false)],
            &[enabled_injector("canary", "1.27.1")],
        ),
    );
    assert!(
        found[0].fix.contains("istio.io/rev=canary"),
        "{}",
        found[0].fix
    );
}

/// IST0146 (istio/istio `pkg/config/analysis/analyzers/injection/image-auto.go`): a workload
/// template with `image: auto` is the gateway injection template's normal form, and broken
/// only when no injector will select its pods.
#[test]
fn proxy_image_auto_on_templates_no_injector_selects() {
    let gateway = |labels: Value| {
        workload(
            Kind::Deployment,
            json!({"labels": labels, "annotations": {"inject.istio.io/templates": "gateway"}}),
            json!({"containers": [{"name": "istio-proxy", "image": "auto"}]}),
        )
    };
    let plain = gateway(json!({"istio": "ingressgateway"}));
    // An unlabelled namespace and no opt-in: nothing replaces the placeholder.
    for op in OPS {
        let found = run(
            &PROXY_IMAGE_AUTO,
            Kind::Deployment,
            op,
            &plain,
            &ns_with(&[]),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "spec.template.spec.containers[0].image");
        assert!(
            found[0]
                .message
                .contains("no injector will replace it when the pods are created"),
            "{}",
            found[0].message
        );
        assert!(found[0].fix.contains("sidecar.istio.io/inject: \"true\""));
    }
    // A namespace that does not exist has no labels either (as istioctl analyze reads it).
    let none = Inventory::complete(Vec::new());
    assert_eq!(
        run(
            &PROXY_IMAGE_AUTO,
            Kind::Deployment,
            Operation::Create,
            &plain,
            &none
        )
        .len(),
        1
    );
    // Every template kind, not only Deployments.
    let sts = workload(
        Kind::StatefulSet,
        json!({}),
        json!({"containers": [{"name": "istio-proxy", "image": "auto"}]}),
    );
    assert_eq!(
        run(
            &PROXY_IMAGE_AUTO,
            Kind::StatefulSet,
            Operation::Create,
            &sts,
            &ns_with(&[])
        )
        .len(),
        1
    );

    // Quiet: the template opts in (Istio's documented gateway Deployment), the namespace is
    // injected, or nobody can tell the namespace's labels.
    let opted_in = gateway(json!({"istio": "ingressgateway", "sidecar.istio.io/inject": "true"}));
    assert!(run(
        &PROXY_IMAGE_AUTO,
        Kind::Deployment,
        Operation::Create,
        &opted_in,
        &ns_with(&[])
    )
    .is_empty());
    assert!(run(
        &PROXY_IMAGE_AUTO,
        Kind::Deployment,
        Operation::Create,
        &plain,
        &enabled_ns()
    )
    .is_empty());
    assert!(run(
        &PROXY_IMAGE_AUTO,
        Kind::Deployment,
        Operation::Create,
        &plain,
        &crate::context::NoCluster
    )
    .is_empty());

    // With injectors visible, their selectors decide: a canary-only mesh serves no
    // istio-injection=enabled namespace.
    let canary = mesh_of(
        &[revision_mwc("canary", false)],
        &[enabled_injector("canary", "1.27.1")],
    );
    let found = in_mesh(
        &PROXY_IMAGE_AUTO,
        Kind::Deployment,
        &plain,
        &enabled_ns(),
        &canary,
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].fix.contains("istio.io/rev=canary"),
        "{}",
        found[0].fix
    );
    let served =
        Inventory::complete(Vec::new()).with_namespace("prod", &[("istio.io/rev", "canary")]);
    assert!(in_mesh(
        &PROXY_IMAGE_AUTO,
        Kind::Deployment,
        &plain,
        &served,
        &canary
    )
    .is_empty());
}
