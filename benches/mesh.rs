//! The injection decision per pod (criterion). `cargo bench --bench mesh`
//!
//! * `mesh/build`: precomputing a mesh context (two revisions, a revision tag, their injector
//!   ConfigMaps and MeshConfigs), done when the mesh's configuration changes.
//! * `mesh/injection/<case>`: one [`MeshContext::injection`] call with the labels as the webhook
//!   holds them (JSON maps of the reviewed object), what a Pod review would add to the hot path.

use criterion::{criterion_group, criterion_main, Criterion};
use kube::core::DynamicObject;
use meshguard::mesh::{MeshContext, MeshOverrides};
use serde_json::{json, Value};
use std::hint::black_box;

fn expr(key: &str, op: &str, values: &[&str]) -> Value {
    if values.is_empty() {
        json!({"key": key, "operator": op})
    } else {
        json!({"key": key, "operator": op, "values": values})
    }
}

/// The webhooks of Istio's chart for `name` (revision or tag); `default` adds the default
/// revision's `namespace.*`, `object.*` and `auto.*`.
fn webhooks(name: &str, default: bool) -> Vec<Value> {
    let hook = |prefix: &str, ns: Vec<Value>, obj: Vec<Value>| {
        json!({"name": format!("{prefix}sidecar-injector.istio.io"),
            "clientConfig": {"service": {"name": "istiod", "namespace": "istio-system", "path": "/inject"}},
            "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "namespaceSelector": {"matchExpressions": ns}, "objectSelector": {"matchExpressions": obj}})
    };
    let mut out = vec![
        hook(
            "rev.namespace.",
            vec![
                expr("istio.io/rev", "In", &[name]),
                expr("istio-injection", "DoesNotExist", &[]),
            ],
            vec![expr("sidecar.istio.io/inject", "NotIn", &["false"])],
        ),
        hook(
            "rev.object.",
            vec![
                expr("istio.io/rev", "DoesNotExist", &[]),
                expr("istio-injection", "DoesNotExist", &[]),
            ],
            vec![
                expr("sidecar.istio.io/inject", "NotIn", &["false"]),
                expr("istio.io/rev", "In", &[name]),
            ],
        ),
    ];
    if default {
        out.push(hook(
            "namespace.",
            vec![expr("istio-injection", "In", &["enabled"])],
            vec![expr("sidecar.istio.io/inject", "NotIn", &["false"])],
        ));
        out.push(hook(
            "object.",
            vec![
                expr("istio-injection", "DoesNotExist", &[]),
                expr("istio.io/rev", "DoesNotExist", &[]),
            ],
            vec![
                expr("sidecar.istio.io/inject", "In", &["true"]),
                expr("istio.io/rev", "DoesNotExist", &[]),
            ],
        ));
        out.push(hook(
            "auto.",
            vec![
                expr("istio-injection", "DoesNotExist", &[]),
                expr("istio.io/rev", "DoesNotExist", &[]),
                expr(
                    "kubernetes.io/metadata.name",
                    "NotIn",
                    &["kube-system", "kube-public", "kube-node-lease"],
                ),
            ],
            vec![
                expr("sidecar.istio.io/inject", "DoesNotExist", &[]),
                expr("istio.io/rev", "DoesNotExist", &[]),
            ],
        ));
    }
    out
}

fn objects() -> Vec<DynamicObject> {
    let mwc = |name: &str, labels: Value, hooks: Vec<Value>| {
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name, "labels": labels}, "webhooks": hooks})
    };
    let cm = |name: &str, data: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "istio-system"}, "data": data})
    };
    let config = "policy: enabled\nneverInjectSelector:\n- matchExpressions: [{key: job-name, operator: Exists}]\nalwaysInjectSelector: []\n";
    let values = |tag: &str| {
        json!({"global": {"hub": "docker.io/istio", "tag": tag, "proxy": {"image": "proxyv2"}}})
            .to_string()
    };
    [
        mwc(
            "istio-sidecar-injector",
            json!({"istio.io/rev": "default"}),
            webhooks("default", true),
        ),
        mwc(
            "istio-sidecar-injector-canary",
            json!({"istio.io/rev": "canary"}),
            webhooks("canary", false),
        ),
        mwc(
            "istio-revision-tag-stable",
            json!({"istio.io/rev": "canary", "istio.io/tag": "stable"}),
            webhooks("stable", false),
        ),
        cm(
            "istio-sidecar-injector",
            json!({"config": config, "values": values("1.27.3")}),
        ),
        cm(
            "istio-sidecar-injector-canary",
            json!({"config": config, "values": values("1.28.0")}),
        ),
        cm(
            "istio",
            json!({"mesh": "trustDomain: cluster.local\nrootNamespace: istio-system\n"}),
        ),
        cm(
            "istio-canary",
            json!({"mesh": "trustDomain: cluster.local\n"}),
        ),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).expect("object"))
    .collect()
}

fn bench(c: &mut Criterion) {
    let objs = objects();
    let mut g = c.benchmark_group("mesh");
    g.bench_function("build", |b| {
        b.iter(|| MeshContext::from_objects(black_box(&objs), None, MeshOverrides::default()))
    });
    let ctx = MeshContext::from_objects(&objs, None, MeshOverrides::default());
    assert!(!ctx.assumed_default_injector());
    // (case, namespace labels, pod labels, pod annotations)
    let cases = [
        (
            "namespace-enabled",
            json!({"istio-injection": "enabled", "kubernetes.io/metadata.name": "prod"}),
            json!({"app": "web", "version": "v1", "pod-template-hash": "5d8f7c9b4"}),
            json!({"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}),
        ),
        (
            "tag",
            json!({"istio.io/rev": "stable"}),
            json!({"app": "web"}),
            json!({}),
        ),
        (
            "not-selected",
            json!({"istio.io/rev": "missing"}),
            json!({"app": "web"}),
            json!({}),
        ),
        (
            "never-inject",
            json!({"istio-injection": "enabled"}),
            json!({"app": "migrate", "job-name": "migrate-1"}),
            json!({}),
        ),
    ];
    for (name, ns, pod, ann) in &cases {
        g.bench_function(format!("injection/{name}"), |b| {
            b.iter(|| {
                let d = ctx.injection(black_box("prod"), ns, pod, ann, false);
                black_box(d.inject)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
