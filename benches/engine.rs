//! Rule evaluation per review (criterion). `cargo bench --bench engine`
//!
//! * `evaluate/<fixture>`: the engine alone on an already-decoded request.
//! * `handle/<fixture>`: the whole admission path without the network: JSON decode →
//!   recognise → evaluate → decide → encode (what one review costs the server).
//! * synthetic large objects: an AuthorizationPolicy with 20 rules, a DestinationRule with 10
//!   subsets, and a Pod review against a warm cache of 10,000 namespaces and 50,000
//!   ServiceAccounts.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use meshguard::admission::{recognise, Admission, Webhook};
use meshguard::config::Policy;
use meshguard::context::NoCluster;
use meshguard::engine::Engine;
use meshguard::inventory::Inventory;
use meshguard::metrics::Metrics;
use meshguard::resource::ReviewObject;
use serde_json::{json, Value};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    let v: Value = serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    serde_json::to_vec(&v).expect("compact")
}

fn request(body: &[u8]) -> AdmissionRequest<ReviewObject> {
    let review: AdmissionReview<ReviewObject> = serde_json::from_slice(body).expect("review");
    review.try_into().expect("request")
}

/// Wrap an object into an AdmissionReview CREATE body.
fn review_of(kind: (&str, &str, &str), ns: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000001",
            "kind": {"group": kind.0, "version": kind.1, "kind": kind.2},
            "resource": {"group": kind.0, "version": kind.1, "resource": "x"},
            "namespace": ns, "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": object, "oldObject": null, "dryRun": false
        }
    }))
    .expect("json")
}

fn big_authorization_policy() -> Vec<u8> {
    let rules: Vec<Value> = (0..20)
        .map(|i| {
            json!({
                "from": [{"source": {"principals": [format!("cluster.local/ns/team-{i}/sa/client-{i}"), "cluster.local/ns/prod/sa/frontend"],
                                     "namespaces": [format!("team-{i}")]}}],
                "to": [{"operation": {"methods": ["GET", "POST"], "paths": [format!("/api/v{i}/*"), "/health"], "ports": ["8080"]}}],
                "when": [{"key": "request.headers[x-tenant]", "values": [format!("t{i}")]},
                         {"key": "source.namespace", "values": [format!("team-{i}")]}]
            })
        })
        .collect();
    review_of(
        ("security.istio.io", "v1", "AuthorizationPolicy"),
        "prod",
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
               "metadata": {"name": "big", "namespace": "prod"},
               "spec": {"selector": {"matchLabels": {"app": "backend"}}, "action": "ALLOW", "rules": rules}}),
    )
}

fn big_destination_rule() -> Vec<u8> {
    let subsets: Vec<Value> = (0..10)
        .map(|i| {
            json!({"name": format!("v{i}"), "labels": {"version": format!("v{i}")},
                   "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"},
                     "portLevelSettings": [{"port": {"number": 8080 + i}, "tls": {"mode": "ISTIO_MUTUAL"}}]}})
        })
        .collect();
    review_of(
        ("networking.istio.io", "v1", "DestinationRule"),
        "prod",
        json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
               "metadata": {"name": "big", "namespace": "prod"},
               "spec": {"host": "backend.prod.svc.cluster.local",
                        "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}, "connectionPool": {"tcp": {"maxConnections": 100}}},
                        "subsets": subsets}}),
    )
}

const FIXTURES: &[&str] = &[
    "peerauthentication-create-v1beta1.json",
    "peerauthentication-update-strict-to-permissive.json",
    "authorizationpolicy-create-rbac-v1beta1.json",
    "destinationrule-create-v1beta1-connection-pool.json",
    "requestauthentication-create-v1beta1.json",
    "pod-create-by-replicaset.json",
    "pod-create-with-istio-proxy-sidecar.json",
    "deployment-create.json",
    "namespace-create.json",
    "service-create-multiport-headless.json",
];

fn bench(c: &mut Criterion) {
    let engine = Engine::new(Policy::default(), Default::default(), Some("meshguard"));
    let mut inputs: Vec<(String, Vec<u8>)> = FIXTURES
        .iter()
        .map(|n| (n.trim_end_matches(".json").to_owned(), fixture(n)))
        .collect();
    inputs.push((
        "synthetic-authorizationpolicy-20-rules".into(),
        big_authorization_policy(),
    ));
    inputs.push((
        "synthetic-destinationrule-10-subsets".into(),
        big_destination_rule(),
    ));

    let mut group = c.benchmark_group("evaluate");
    for (name, body) in &inputs {
        let req = request(body);
        let review = recognise(&req).expect("known kind");
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| black_box(engine.evaluate(black_box(&review), &NoCluster)))
        });
    }
    group.finish();

    // Warm cache: 10,000 namespaces, 50,000 ServiceAccounts.
    let mut cluster = Inventory::complete(Vec::new());
    for i in 0..10_000 {
        cluster = cluster.with_namespace(
            &format!("ns-{i}"),
            &[("istio-injection", "enabled"), ("team", "t")],
        );
        for j in 0..5 {
            cluster = cluster.with_service_account(&format!("ns-{i}"), &format!("sa-{j}"));
        }
    }
    cluster = cluster.with_namespace("production", &[("istio-injection", "enabled")]);
    let pod = fixture("pod-create-by-replicaset.json");
    let req = request(&pod);
    let review = recognise(&req).expect("pod");
    c.bench_function(
        "evaluate/pod-with-10k-namespaces-50k-serviceaccounts",
        |b| b.iter(|| black_box(engine.evaluate(black_box(&review), &cluster))),
    );

    // Policy operations: the same Pod under a policy whose every rule is resolved per namespace
    // (selector and name overrides) with 20 exceptions in the policy (none covering this Pod),
    // against the same warm cache: what resolving actions and matching exceptions costs.
    let mut ops_policy = String::from(
        "platform: {labels: [env]}\noverrides:\n  - namespaceSelector: {matchLabels: {env: prod}}\n    mode: enforce\n  - namespaces: [legacy-a, legacy-b]\n    mode: audit\nrules:\n  wl-default-service-account:\n    action: warn\n    overrides:\n      - namespaceSelector: {matchLabels: {env: prod}}\n        action: deny\nexceptions:\n",
    );
    for i in 0..20 {
        ops_policy.push_str(&format!(
            "  - name: e{i}\n    rules: [wl-default-service-account, wl-missing-sidecar]\n    namespaces: [ns-{i}]\n    reason: r\n    owner: o\n    expires: 2999-01-01\n"
        ));
    }
    let ops = Engine::new(
        meshguard::catalogue::policy_from_yaml(&ops_policy, "bench").expect("policy"),
        Default::default(),
        Some("meshguard"),
    );
    c.bench_function(
        "evaluate/pod-with-10k-namespaces-overrides-and-exceptions",
        |b| b.iter(|| black_box(ops.evaluate(black_box(&review), &cluster))),
    );

    // The mesh as installed: three injector configurations (10 webhooks, default revision,
    // canary, tag prod-stable) and their ConfigMaps; the pod's namespace uses the tag.
    let mesh_docs: Vec<kube::core::DynamicObject> = serde_saphyr::from_multiple(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/mesh/canary/istio.yaml"),
        )
        .expect("mesh fixture"),
    )
    .expect("mesh objects");
    let mesh = meshguard::mesh::MeshContext::from_objects(&mesh_docs, None, Default::default());
    let with_mesh = Engine::new(Policy::default(), Arc::new(mesh), Some("meshguard"));
    let tagged = Inventory::complete(Vec::new())
        .with_namespace("production", &[("istio.io/rev", "prod-stable")]);
    c.bench_function("evaluate/pod-with-injectors-canary-mesh", |b| {
        b.iter(|| black_box(with_mesh.evaluate(black_box(&review), &tagged)))
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let admission = Admission::new(
        meshguard::engine::EngineHandle::new(Engine::new(
            Policy::default(),
            Default::default(),
            None,
        )),
        Metrics::new().expect("metrics"),
        Arc::new(NoCluster),
    );
    let mut group = c.benchmark_group("handle");
    for (name, body) in &inputs {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                rt.block_on(admission.handle(
                    Webhook::Validate,
                    black_box(body),
                    Duration::from_secs(10),
                ))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
