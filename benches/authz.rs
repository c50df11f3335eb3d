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
//! * `ambient/…`: an ambient mesh of 1,000 workloads (50 namespaces × 20: 40 ambient, each
//!   with a service waypoint, an L4 selector ALLOW per workload at ztunnel and an L7 `targetRefs`
//!   ALLOW per Service at the waypoint; 10 sidecar namespaces with L7 selector policies; ztunnel
//!   and istio-cni installed), read from manifests as `meshguard simulate` reads them:
//!   * `simulate/service-through-waypoint`: one `simulate` request as the command answers it
//!     (resolve `--to NS/Service/NAME`, the path through the Service's waypoint, every hop
//!     explained), an ambient caller's GET allowed at the waypoint and at ztunnel;
//!   * `simulate/sidecar-to-ambient-pods`: a sidecar caller addressing an ambient workload's pods
//!     (`--to NS/NAME`: no waypoint, ztunnel alone), denied;
//!   * `decide/service-through-waypoint`: the path's verdict alone (`Route::decide`, no
//!     explanation), what the posture page pays per cell;
//!   * `posture-page`: `meshguard report --html` of the same manifests, whole (read, check,
//!     cross checks, grid, reachability matrices, render).
//! * `sidecar/…`: the same benches on the sidecar equivalent (every namespace uses sidecars,
//!   with the same workloads, Services and callers; L7 selector policies): `simulate/service`
//!   (one hop, the destination's sidecar), `simulate/sidecar-to-pods`, `decide/service`,
//!   `posture-page`. The ratio ambient / sidecar is what ambient costs.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) criterion runs each function once,
//! the matrix shrinks to 20 × 20 and the ambient mesh to 4 × 5 workloads, as a smoke pass.

use criterion::{criterion_group, criterion_main, Criterion};
use kube::core::DynamicObject;
use meshguard::authz::hops::{Destination, Route};
use meshguard::authz::{Http, Identity, Mesh, Outcome, PolicySet, Request, Verdict};
use meshguard::resource::Kind;
use meshguard::simulate::scenario::{Caller, RequestSpec, World};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
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

/// The mesh of the `ambient/…` benches, as manifests: `namespaces` × `per_ns` workloads; every
/// fifth namespace uses sidecars, the others are ambient with a service waypoint (with
/// `sidecar_only`, the sidecar equivalent of the `sidecar/…` benches: every namespace uses
/// sidecars, with the same workloads, Services and callers). Workload `w-i` admits `w-(i+1)` and `w-(i+2)` of the previous namespace and of its
/// own: L4 (identities, and the waypoint's) at ztunnel, GET /api/* at the waypoint.
fn ambient_mesh(namespaces: usize, per_ns: usize, sidecar_only: bool) -> String {
    let mut s = String::from(
        "apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ztunnel, namespace: istio-system}
spec:
  selector: {matchLabels: {app: ztunnel}}
  template:
    metadata: {labels: {app: ztunnel, sidecar.istio.io/inject: \"false\"}}
    spec: {serviceAccountName: ztunnel, containers: [{name: istio-proxy, image: docker.io/istio/ztunnel:1.28.0}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: istio-cni-node, namespace: istio-system}
spec:
  selector: {matchLabels: {k8s-app: istio-cni-node}}
  template:
    metadata: {labels: {k8s-app: istio-cni-node, sidecar.istio.io/inject: \"false\"}}
    spec: {serviceAccountName: istio-cni, hostNetwork: true, containers: [{name: install-cni, image: docker.io/istio/install-cni:1.28.0}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
",
    );
    for n in 0..namespaces {
        let ns = format!("ns-{n}");
        let prev = format!("ns-{}", (n + namespaces - 1) % namespaces);
        let ambient = !sidecar_only && n % 5 != 4;
        let labels = if ambient {
            "{istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}"
        } else {
            "{istio-injection: enabled}"
        };
        let _ = write!(
            s,
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {labels}}}\n---\n"
        );
        if ambient {
            let _ = write!(
                s,
                "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint, namespace: {ns}, labels: {{istio.io/waypoint-for: service}}}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
---
"
            );
        }
        for w in 0..per_ns {
            let app = format!("w-{w}");
            let callers: Vec<String> = [(&ns, 1), (&ns, 2), (&prev, 1), (&prev, 2)]
                .iter()
                .map(|(cns, d)| format!("\"cluster.local/ns/{cns}/sa/w-{}\"", (w + d) % per_ns))
                .collect();
            let callers = callers.join(", ");
            let _ = write!(
                s,
                "apiVersion: v1
kind: ServiceAccount
metadata: {{name: {app}, namespace: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {app}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  template:
    metadata: {{labels: {{app: {app}}}}}
    spec:
      serviceAccountName: {app}
      containers: [{{name: main, image: registry.example/{app}:1, ports: [{{name: http, containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {app}, namespace: {ns}}}
spec:
  selector: {{app: {app}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
"
            );
            if ambient {
                let _ = write!(
                    s,
                    "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {app}-l4, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  rules: [{{from: [{{source: {{principals: [\"cluster.local/ns/{ns}/sa/waypoint\", {callers}]}}}}], to: [{{operation: {{ports: [\"8080\"]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {app}-l7, namespace: {ns}}}
spec:
  targetRefs: [{{kind: Service, group: \"\", name: {app}}}]
  rules: [{{from: [{{source: {{principals: [{callers}]}}}}], to: [{{operation: {{methods: [GET], paths: [\"/api/*\"]}}}}]}}]
---
"
                );
            } else {
                let _ = write!(
                    s,
                    "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {app}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  rules: [{{from: [{{source: {{principals: [{callers}]}}}}], to: [{{operation: {{methods: [GET], paths: [\"/api/*\"]}}}}]}}]
---
"
                );
            }
        }
    }
    s
}

fn spec(from: &str, to: &str, port: u16) -> RequestSpec {
    RequestSpec {
        from: Caller::Workload(from.to_owned()),
        to: to.to_owned(),
        port: Some(port),
        source_ip: None,
        method: Some("GET".to_owned()),
        path: Some("/api/items".to_owned()),
        host: None,
        headers: Vec::new(),
        jwt: None,
    }
}

fn ambient_bench(c: &mut Criterion) {
    mesh_bench(c, false);
    mesh_bench(c, true);
}

/// The `ambient/…` benches, or with `sidecar_only` the `sidecar/…` ones: the same requests on
/// the sidecar equivalent of the mesh (a sidecar caller to the Service: one hop, the
/// destination's sidecar; a sidecar caller to the pods, denied there).
fn mesh_bench(c: &mut Criterion, sidecar_only: bool) {
    let full = std::env::args().any(|a| a == "--bench");
    let (namespaces, per_ns) = if full { (50, 20) } else { (5, 4) };
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = dir.path().join("mesh.yaml");
    std::fs::write(&manifests, ambient_mesh(namespaces, per_ns, sidecar_only))
        .expect("write the mesh");
    let loaded = meshguard::load::Loader::new(&Default::default(), &Default::default())
        .expect("the built-in policy")
        .manifests_strict(
            std::slice::from_ref(&manifests),
            &mut std::io::empty(),
            "default",
            &[],
        )
        .expect("the mesh loads");
    let world = World::new(loaded.inventory, loaded.mesh);
    let set = world.policy_set();
    // The workloads, and ztunnel and istio-cni.
    assert_eq!(world.inventory.workloads().len(), namespaces * per_ns + 2);

    // ns-0 and ns-1 are ambient (sidecar in the sidecar equivalent), ns-4 uses sidecars.
    let through = spec("ns-1/w-2", "ns-1/Service/w-1", 80);
    let (resolved, ex) = meshguard::simulate::simulate(&world, &set, &through).expect("resolves");
    assert_eq!(ex.verdict, Verdict::Allow, "{ex:?}");
    let hops = if sidecar_only { 1 } else { 2 };
    assert_eq!(
        ex.hops.len(),
        hops,
        "the waypoint, then ztunnel (the sidecar alone): {:?}",
        ex.hops
    );
    let direct = spec("ns-4/w-0", "ns-0/w-1", 8080);
    let (_, ex) = meshguard::simulate::simulate(&world, &set, &direct).expect("resolves");
    assert_eq!(ex.verdict, Verdict::Deny, "{ex:?}");

    let group = if sidecar_only { "sidecar" } else { "ambient" };
    let (service, pods) = if sidecar_only {
        ("simulate/service", "simulate/sidecar-to-pods")
    } else {
        (
            "simulate/service-through-waypoint",
            "simulate/sidecar-to-ambient-pods",
        )
    };
    let decide = if sidecar_only {
        "decide/service"
    } else {
        "decide/service-through-waypoint"
    };
    let mut g = c.benchmark_group(group);
    let id = |what: &str| format!("{what} ({} workloads)", namespaces * per_ns);
    g.bench_function(id(service), |b| {
        b.iter(|| {
            black_box(meshguard::simulate::simulate(
                &world,
                &set,
                black_box(&through),
            ))
        })
    });
    g.bench_function(id(pods), |b| {
        b.iter(|| {
            black_box(meshguard::simulate::simulate(
                &world,
                &set,
                black_box(&direct),
            ))
        })
    });
    let t = &resolved.targets[0];
    let dest = Destination {
        namespace: &t.namespace,
        labels: &t.labels,
        label: t.label.clone(),
        plane: t.plane,
        workload_waypoint: t.workload_waypoint.clone(),
    };
    let route = Route::new(&set, &world.topology, resolved.caller, resolved.via, &dest);
    let forwarded = route.forwarded(&resolved.request, t.port);
    assert_eq!(
        route.decide(&resolved.request, &forwarded).verdict(),
        Verdict::Allow
    );
    g.bench_function(id(decide), |b| {
        b.iter(|| black_box(route.decide(black_box(&resolved.request), &forwarded)))
    });
    g.finish();

    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(if full { 20 } else { 1 }));
    let html = dir.path().join("posture.html");
    g.bench_function(id("posture-page"), |b| {
        b.iter(|| posture_page(&manifests, &html))
    });
    g.finish();
}

/// `meshguard report --html PAGE MANIFESTS`, whole.
fn posture_page(manifests: &Path, html: &Path) {
    let args = meshguard::posture::ReportArgs {
        input: meshguard::load::InputArgs {
            paths: vec![manifests.to_owned()],
            namespace: "default".to_owned(),
        },
        live: Default::default(),
        mesh: Default::default(),
        html: html.to_owned(),
        policy: Default::default(),
        complete: false,
        own_namespace: None,
        max_identities: 40,
    };
    let mut err = Vec::new();
    let code = meshguard::posture::execute(&args, &mut err);
    assert_eq!(
        code,
        meshguard::exit::Exit::Ok,
        "{}",
        String::from_utf8_lossy(&err)
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = one_request, matrix_bench, ambient_bench
}
criterion_main!(benches);
