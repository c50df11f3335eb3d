//! Reachability as sets, `meshguard diff` and impact at admission (criterion):
//! `cargo bench --bench reach`.
//!
//! The mesh: 50 namespaces × 20 workloads (1,000 workloads, 2 ports each), each with its own
//! ServiceAccount, a Service, an ALLOW policy for GET,POST /api/* from three callers in other
//! namespaces, a namespace-wide allow-nothing, an ALLOW for `istio-system` callers (GET) and a
//! DENY on /admin/*; a mesh-wide STRICT PeerAuthentication.
//!
//! * `sets/1000-workloads`: the request set of every caller (1,000 accounts, the named
//!   namespaces, plaintext, any other identity) to every workload port, as the posture page
//!   computes it (callers the policies cannot tell apart evaluated once);
//! * `diff/load-both-sides`: what `diff` does before comparing (reading both sides as `check`
//!   does, findings included), the baseline the comparisons are measured against;
//! * `diff/one-policy-widened`: compare when one workload's policy changes (the usual pull
//!   request: the other 999 workloads are fingerprinted, not recomputed);
//! * `diff/mesh-wide-change`: compare when a root-namespace policy changes what every workload
//!   allows (all 2,000 workload ports recomputed, every caller);
//! * `impact/update-50-workloads-200-identities`: the webhook's impact computation for an
//!   UPDATE that widens one policy in a namespace of 50 workloads with 200 identities;
//!   `impact/namespace-wide-update` the same for a namespace-wide policy (all 50 workloads);
//!   `admission/impact-{off,warn}` the whole review (decode, rules, impact, encode) in process,
//!   so the ratio of the two is impact's added cost. The impact p50/p99 over 2,000 calls is
//!   printed too.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) the mesh shrinks to 4 × 5 and each
//! function runs once, as a smoke pass.

use criterion::{criterion_group, criterion_main, Criterion};
use meshguard::authz::Mesh;
use meshguard::diff::{compare, Side};
use meshguard::manifest::{parse_into, Loaded};
use meshguard::reach::impact::{impact, Change, ImpactIndex, Limits};
use meshguard::reach::model;
use meshguard::reach::space::Protocols;
use meshguard::reach::Reach;
use meshguard::resource::Kind;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn allow(ns: &str, app: &str, callers: &[String], paths: &str) -> String {
    let principals = callers
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: {app}}}}}\n  rules:\n  - from: [{{source: {{principals: [{principals}]}}}}]\n    to: [{{operation: {{methods: [GET, POST], paths: [{paths}]}}}}]\n---\n"
    )
}

/// The mesh's manifests; `widen` gives workload 0 of namespace 0 one more path.
fn mesh(namespaces: usize, per_ns: usize, widen: bool, root_open: bool) -> String {
    let mut s = String::from(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n---\n",
    );
    if root_open {
        s.push_str("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: health, namespace: istio-system}\nspec:\n  rules:\n  - to: [{operation: {methods: [GET], paths: [/healthz]}}]\n---\n");
    }
    for n in 0..namespaces {
        let ns = format!("ns-{n}");
        let _ = write!(
            s,
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio-injection: enabled}}}}\n---\n\
             apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: deny-all, namespace: {ns}}}\nspec: {{}}\n---\n\
             apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: gateway, namespace: {ns}}}\nspec:\n  rules:\n  - from: [{{source: {{namespaces: [istio-system]}}}}]\n    to: [{{operation: {{methods: [GET]}}}}]\n---\n\
             apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: no-admin, namespace: {ns}}}\nspec:\n  action: DENY\n  rules:\n  - to: [{{operation: {{paths: [/admin/*]}}}}]\n---\n"
        );
        for w in 0..per_ns {
            let app = format!("w-{w}");
            let _ = write!(
                s,
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {app}, namespace: {ns}}}\n---\n\
                 apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {app}}}}}\n    spec:\n      serviceAccountName: {app}\n      containers:\n      - name: main\n        image: registry.example/{app}:1\n        ports: [{{name: http, containerPort: 8080}}, {{name: grpc, containerPort: 9090}}]\n---\n\
                 apiVersion: v1\nkind: Service\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{name: http, port: 80, targetPort: http}}, {{name: grpc, port: 9090}}]\n---\n"
            );
            let callers: Vec<String> = (1..=3)
                .map(|d| {
                    format!(
                        "cluster.local/ns/ns-{}/sa/w-{}",
                        (n + d) % namespaces,
                        (w + d) % per_ns
                    )
                })
                .collect();
            let paths = if widen && n == 0 && w == 0 {
                "/api/*, /export/*"
            } else {
                "/api/*"
            };
            s.push_str(&allow(&ns, &app, &callers, paths));
        }
    }
    s
}

fn loaded(text: &str) -> Loaded {
    let mut l = Loaded::default();
    parse_into("mesh.yaml", text, &mut l);
    l
}

fn side(label: &str, text: &str) -> Side {
    let loader = meshguard::load::Loader::new(&Default::default(), &Default::default())
        .expect("the built-in policy");
    Side::load(
        label.to_owned(),
        Vec::new(),
        loaded(text),
        &loader,
        "default",
    )
    .expect("side")
}

/// Every caller's set to every workload port; returns how many (caller, port) pairs allow
/// something.
fn sets(side: &Side) -> usize {
    let mesh = Mesh::from_context(side.engine.mesh());
    let set = meshguard::authz::PolicySet::new(
        mesh.clone(),
        side.inventory.decoded(meshguard::authz::PolicySet::reads),
    );
    let workloads = model::workloads(&side.inventory, side.engine.mesh(), "cluster.local");
    let callers = model::callers(&[&side.inventory], &mesh);
    let topology = meshguard::dataplane::Topology::new(
        side.inventory
            .decoded(meshguard::dataplane::Topology::reads),
    );
    let mut some = 0;
    for w in &workloads {
        for p in &w.ports {
            let enf = model::enforcement(
                &set,
                &topology,
                w,
                p.port,
                meshguard::authz::hops::CallerPlane::Sidecar,
            )
            .0;
            let mut reach = Reach::new(enf, p.port, Protocols::of(p.protocol), &w.host);
            for c in &callers {
                if !reach.of(c.peer.as_ref()).0.allowed().is_empty() {
                    some += 1;
                }
            }
        }
    }
    some
}

fn sets_and_diff(c: &mut Criterion) {
    let (namespaces, per_ns) = if full() { (50, 20) } else { (4, 5) };
    let base_text = mesh(namespaces, per_ns, false, false);
    let base = side("base", &base_text);
    let widened = side("head", &mesh(namespaces, per_ns, true, false));
    let root = side("root", &mesh(namespaces, per_ns, false, true));
    let workloads = namespaces * per_ns;
    // Each workload port admits its three callers and the istio-system ones.
    assert!(sets(&base) >= 2 * 3 * workloads);
    let one = compare(&base, &widened);
    assert_eq!(one.ports_recomputed, 2, "{:?}", one.notes);
    assert!(!one.changes.is_empty());
    let wide = compare(&base, &root);
    assert_eq!(wide.ports_recomputed, 2 * workloads);
    let mut g = c.benchmark_group("sets");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(if full() { 20 } else { 1 }));
    g.bench_function(format!("{workloads}-workloads"), |b| {
        b.iter(|| black_box(sets(black_box(&base))))
    });
    g.finish();
    let mut g = c.benchmark_group("diff");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(if full() { 20 } else { 1 }));
    g.bench_function("load-both-sides", |b| {
        b.iter(|| {
            black_box(side("base", &base_text));
            black_box(side("head", &base_text));
        })
    });
    g.bench_function("one-policy-widened", |b| {
        b.iter(|| black_box(compare(black_box(&base), black_box(&widened))))
    });
    g.bench_function("mesh-wide-change", |b| {
        b.iter(|| black_box(compare(black_box(&base), black_box(&root))))
    });
    g.finish();
}

/// One namespace of 50 workloads whose policies name 200 identities (150 accounts of other
/// namespaces), plus 9 other namespaces.
fn impact_cluster() -> (ImpactIndex, Mesh, meshguard::inventory::Inventory) {
    let mut s = String::new();
    for n in 0..10 {
        let ns = format!("ns-{n}");
        let _ = write!(
            s,
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio-injection: enabled}}}}\n---\n\
             apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: {ns}}}\nspec: {{mtls: {{mode: STRICT}}}}\n---\n\
             apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: deny-all, namespace: {ns}}}\nspec: {{}}\n---\n"
        );
        for w in 0..if n == 0 { 50 } else { 15 } {
            let app = format!("w-{w}");
            let _ = write!(
                s,
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {app}, namespace: {ns}}}\n---\n\
                 apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {app}}}}}\n    spec:\n      serviceAccountName: {app}\n      containers: [{{name: main, image: r/{app}:1, ports: [{{name: http, containerPort: 8080}}]}}]\n---\n"
            );
            if n == 0 {
                let callers: Vec<String> = (0..4)
                    .map(|d| {
                        format!(
                            "cluster.local/ns/ns-{}/sa/w-{}",
                            1 + (w + d) % 9,
                            (w * 3 + d) % 15
                        )
                    })
                    .collect();
                s.push_str(&allow(&ns, &app, &callers, "/api/*"));
            }
        }
    }
    let mut l = loaded(&s);
    let prepared = meshguard::check::prepare(&mut l, "default", false, true);
    let mesh_ctx = meshguard::check::mesh_context(&prepared, None, None);
    let index = ImpactIndex::new(prepared.inventory.clone(), &mesh_ctx, "cluster.local");
    (index, Mesh::from_context(&mesh_ctx), prepared.inventory)
}

fn policy_object(yaml: &str) -> kube::core::DynamicObject {
    loaded(yaml).objects.remove(0).object
}

fn impact_bench(c: &mut Criterion) {
    let (index, mesh, inventory) = impact_cluster();
    let callers: Vec<String> = (0..4)
        .map(|d| {
            format!(
                "cluster.local/ns/ns-{}/sa/w-{}",
                1 + (7 + d) % 9,
                (21 + d) % 15
            )
        })
        .collect();
    let old = policy_object(&allow("ns-0", "w-7", &callers, "/api/*"));
    let new = policy_object(&allow("ns-0", "w-7", &callers, "/api/*, /admin/*"));
    let one = Change {
        kind: Kind::AuthorizationPolicy,
        namespace: "ns-0",
        name: "w-7",
        old: Some(&old),
        new: Some(&new),
    };
    let found = impact(&index, &mesh, one, Limits::default());
    assert_eq!(found.openings.len(), 4, "{found:?}");
    // A namespace-wide ALLOW for GET /metrics from ns-1: every workload of ns-0 is compared.
    let wide_old = policy_object("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: metrics, namespace: ns-0}\nspec:\n  rules:\n  - from: [{source: {namespaces: [ns-1]}}]\n    to: [{operation: {methods: [GET], paths: [/metrics]}}]\n");
    let wide_new = policy_object("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: metrics, namespace: ns-0}\nspec:\n  rules:\n  - from: [{source: {namespaces: [ns-1, ns-2]}}]\n    to: [{operation: {methods: [GET], paths: [/metrics, /stats]}}]\n");
    let wide = Change {
        kind: Kind::AuthorizationPolicy,
        namespace: "ns-0",
        name: "metrics",
        old: Some(&wide_old),
        new: Some(&wide_new),
    };
    let found = impact(&index, &mesh, wide, Limits::default());
    assert_eq!(found.ports, 50, "{found:?}");
    // p50 and p99 of the impact call alone.
    let runs = if full() { 2000 } else { 20 };
    for (name, change) in [("update-one-policy", one), ("namespace-wide-update", wide)] {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                black_box(impact(&index, &mesh, change, Limits::default()));
                t.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "impact/{name} (50 workloads, 200 identities): p50 {:?}, p99 {:?} over {runs} calls",
            times[runs / 2],
            times[runs * 99 / 100]
        );
    }
    let mut g = c.benchmark_group("impact");
    g.sample_size(50);
    g.bench_function("update-50-workloads-200-identities", |b| {
        b.iter(|| black_box(impact(&index, &mesh, one, Limits::default())))
    });
    g.bench_function("namespace-wide-update", |b| {
        b.iter(|| black_box(impact(&index, &mesh, wide, Limits::default())))
    });
    g.finish();
    // The whole review in process, impact off and on.
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "bench",
            "kind": {"group": "security.istio.io", "version": "v1", "kind": "AuthorizationPolicy"},
            "resource": {"group": "security.istio.io", "version": "v1", "resource": "authorizationpolicies"},
            "name": "w-7", "namespace": "ns-0", "operation": "UPDATE",
            "userInfo": {"username": "alice"},
            "object": serde_json::to_value(&new).expect("json"),
            "oldObject": serde_json::to_value(&old).expect("json"),
        }
    });
    let body = serde_json::to_vec(&review).expect("json");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shared = std::sync::Arc::new(index);
    let mut g = c.benchmark_group("admission");
    g.sample_size(50);
    for (name, setting) in [
        ("impact-off", meshguard::config::ImpactSetting::Off),
        ("impact-warn", meshguard::config::ImpactSetting::Warn),
    ] {
        let policy = meshguard::config::Policy {
            impact: setting,
            ..Default::default()
        };
        let admission = meshguard::admission::Admission::new(
            meshguard::engine::EngineHandle::new(meshguard::engine::Engine::new(
                policy,
                Default::default(),
                None,
            )),
            meshguard::metrics::Metrics::new().expect("metrics"),
            std::sync::Arc::new(inventory.clone()),
        );
        admission.impact.set_shared(shared.clone());
        let answer = |a: &meshguard::admission::Admission| {
            rt.block_on(a.handle(
                meshguard::admission::Webhook::Validate,
                &body,
                Duration::from_secs(5),
            ))
            .expect("answered")
        };
        let out = String::from_utf8(answer(&admission)).expect("utf-8");
        assert_eq!(
            out.contains("[impact]"),
            setting == meshguard::config::ImpactSetting::Warn,
            "{out}"
        );
        g.bench_function(name, |b| b.iter(|| black_box(answer(&admission))));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = sets_and_diff, impact_bench
}
criterion_main!(benches);
