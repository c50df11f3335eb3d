//! Authorization decisions (criterion): `cargo bench --bench authz`.
//!
//! * `one-request/100-policies/decide`: one HTTP request against a workload to which 100
//!   policies apply (90 ALLOW with two rules each, 10 DENY), matching none of them: the worst
//!   case, every rule evaluated. The workload's policies are selected once beforehand.
//! * `one-request/100-policies/explain`: the same with the full explanation `simulate` prints
//!   (closest rules included).
//! * `one-request/100-policies/select`: selecting what applies to the workload.
//! * `matrix/1000x1000`: the posture page's reachability matrix: compile 1,000 workloads'
//!   policies (50 namespaces, ~1,100 AuthorizationPolicies), select per workload, and decide
//!   one request per identity × workload (1,000,000 decisions), on one core.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) criterion runs each function once
//! and the matrix shrinks to 20 × 20, as a smoke pass.

use criterion::{criterion_group, criterion_main, Criterion};
use kube::core::DynamicObject;
use meshguard::authz::{Http, Identity, Mesh, Outcome, PolicySet, Request, Verdict};
use meshguard::resource::Kind;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

fn object(kind: Kind, ns: &str, name: &str, spec: Value) -> (Kind, DynamicObject) {
    let o = serde_json::from_value(json!({
        "apiVersion": "security.istio.io/v1", "kind": kind.as_str(),
        "metadata": {"name": name, "namespace": ns}, "spec": spec
    }))
    .expect("object");
    (kind, o)
}

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), app.to_owned())])
}

/// 100 policies that all apply to `app=api` in `prod`.
fn hundred_policies() -> Vec<(Kind, DynamicObject)> {
    let mut out = vec![object(
        Kind::PeerAuthentication,
        "prod",
        "strict",
        json!({"mtls": {"mode": "STRICT"}}),
    )];
    for i in 0..90 {
        let selector = if i % 2 == 0 {
            json!({"matchLabels": {"app": "api"}})
        } else {
            json!({})
        };
        out.push(object(
            Kind::AuthorizationPolicy,
            "prod",
            &format!("allow-{i}"),
            json!({"selector": selector, "rules": [
                {"from": [{"source": {"principals": [format!("cluster.local/ns/team-{i}/sa/client"), format!("cluster.local/ns/team-{i}/sa/batch-*")]}}],
                 "to": [{"operation": {"methods": ["GET", "POST"], "paths": [format!("/api/v{i}/*"), "/health", "/items/{*}/detail"]}}],
                 "when": [{"key": "request.headers[x-tenant]", "values": [format!("t{i}")]}]},
                {"from": [{"source": {"namespaces": [format!("team-{i}"), "ops-*"], "ipBlocks": ["10.0.0.0/8"]}}],
                 "to": [{"operation": {"ports": ["8080"], "paths": ["/admin/{**}"]}}],
                 "when": [{"key": "request.auth.claims[groups]", "values": [format!("g{i}")]}]}
            ]}),
        ));
    }
    for i in 0..10 {
        out.push(object(
            Kind::AuthorizationPolicy,
            "prod",
            &format!("deny-{i}"),
            json!({"action": "DENY", "rules": [
                {"from": [{"source": {"notNamespaces": ["prod", format!("team-{i}"), "istio-system"]}}],
                 "to": [{"operation": {"paths": [format!("/internal/{i}/*")]}}]}
            ]}),
        ));
    }
    out
}

fn one_request(c: &mut Criterion) {
    let objects = hundred_policies();
    let set = PolicySet::new(Mesh::default(), objects.iter().map(|(k, o)| (*k, o)));
    let target = set.target("prod", &labels("api"));
    let req = Request::http(
        Some(Identity::new("cluster.local", "web", "frontend")),
        8080,
        Http::new("GET", "/api/v7/users")
            .with_host("api.prod.svc")
            .with_header("x-tenant", "t1"),
    )
    .with_source_ip("192.0.2.10".parse().expect("ip"));
    assert_eq!(
        target.decide(&req),
        Outcome::DefaultDeny,
        "the worst case: nothing matches"
    );
    let mut g = c.benchmark_group("one-request/100-policies");
    g.bench_function("decide", |b| {
        b.iter(|| black_box(target.decide(black_box(&req))))
    });
    g.bench_function("explain", |b| {
        b.iter(|| black_box(target.explain(black_box(&req))))
    });
    g.bench_function("select", |b| {
        b.iter(|| black_box(set.target(black_box("prod"), &labels("api"))))
    });
    g.finish();
}

/// `namespaces` namespaces of `per_ns` workloads each: a deny-all per namespace, an ALLOW per
/// workload for three callers, a namespace-wide ALLOW for the gateway and a DENY on /admin.
fn cluster(namespaces: usize, per_ns: usize) -> Vec<(Kind, DynamicObject)> {
    let mut out = vec![object(
        Kind::PeerAuthentication,
        "istio-system",
        "mesh",
        json!({"mtls": {"mode": "STRICT"}}),
    )];
    for n in 0..namespaces {
        let ns = format!("ns-{n}");
        out.push(object(
            Kind::AuthorizationPolicy,
            &ns,
            "deny-all",
            json!({}),
        ));
        out.push(object(
            Kind::AuthorizationPolicy,
            &ns,
            "gateway",
            json!({"rules": [{"from": [{"source": {"namespaces": ["istio-system"]}}], "to": [{"operation": {"methods": ["GET"]}}]}]}),
        ));
        out.push(object(
            Kind::AuthorizationPolicy,
            &ns,
            "no-admin",
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]}),
        ));
        for w in 0..per_ns {
            let callers: Vec<String> = (1..=3)
                .map(|d| {
                    format!(
                        "cluster.local/ns/ns-{}/sa/w-{}",
                        (n + d) % namespaces,
                        (w + d) % per_ns
                    )
                })
                .collect();
            out.push(object(
                Kind::AuthorizationPolicy,
                &ns,
                &format!("allow-w-{w}"),
                json!({"selector": {"matchLabels": {"app": format!("w-{w}")}},
                       "rules": [{"from": [{"source": {"principals": callers}}],
                                  "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/api/*"]}}]}]}),
            ));
        }
    }
    out
}

/// Build, select and decide the whole matrix; returns the number of allowed cells.
fn matrix(objects: &[(Kind, DynamicObject)], namespaces: usize, per_ns: usize) -> usize {
    let set = PolicySet::new(Mesh::default(), objects.iter().map(|(k, o)| (*k, o)));
    let requests: Vec<Request> = (0..namespaces)
        .flat_map(|n| (0..per_ns).map(move |w| (n, w)))
        .map(|(n, w)| {
            Request::http(
                Some(Identity::new(
                    "cluster.local",
                    &format!("ns-{n}"),
                    &format!("w-{w}"),
                )),
                8080,
                Http::new("GET", "/api/items"),
            )
        })
        .collect();
    let mut allowed = 0;
    for n in 0..namespaces {
        for w in 0..per_ns {
            let target = set.target(&format!("ns-{n}"), &labels(&format!("w-{w}")));
            for r in &requests {
                if target.decide(r).verdict() == Verdict::Allow {
                    allowed += 1;
                }
            }
        }
    }
    allowed
}

fn matrix_bench(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let (namespaces, per_ns) = if full { (50, 20) } else { (4, 5) };
    let cells = (namespaces * per_ns) * (namespaces * per_ns);
    let objects = cluster(namespaces, per_ns);
    // Every workload admits exactly its three callers.
    assert_eq!(
        matrix(&objects, namespaces, per_ns),
        3 * namespaces * per_ns
    );
    let mut g = c.benchmark_group("matrix");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(if full { 30 } else { 1 }));
    let id = format!(
        "{}x{} ({cells} decisions)",
        namespaces * per_ns,
        namespaces * per_ns
    );
    g.bench_function(id, |b| {
        b.iter(|| black_box(matrix(black_box(&objects), namespaces, per_ns)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = one_request, matrix_bench
}
criterion_main!(benches);
