//! `meshguard audit` against kube's real `Client`, talking to an API-server test double: an
//! in-process hyper server on 127.0.0.1 (plain HTTP) that serves list responses the way
//! kube-apiserver does (paginated with `limit` + `continue`, 404 for unserved versions, list
//! items without kind/apiVersion). It records every request so the tests can check that the
//! audit only reads and that it follows the continue token.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use meshguard::audit;
use meshguard::config::Policy;
use meshguard::engine::Engine;
use meshguard::metrics::Metrics;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct ApiServer {
    /// "METHOD path?query" of every request.
    requests: Mutex<Vec<String>>,
    /// Answer everything with 500 (a broken cluster).
    broken: bool,
    /// Serve the pods in one page whatever page size is asked for (serve's periodic audit
    /// lists with its own page size); otherwise insist on the tests' page size of 2.
    any_page_size: bool,
    /// Serve Istio's injector webhooks and ConfigMaps (tests/fixtures/mesh/canary/istio.yaml).
    mesh: bool,
    /// Answer the mesh kinds with 403.
    forbid_mesh: bool,
}

/// The fixture's MutatingWebhookConfigurations or ConfigMaps, as list items.
fn mesh_items(kind: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(include_str!("../fixtures/mesh/canary/istio.yaml"))
            .expect("fixture");
    docs.into_iter().filter(|d| d["kind"] == kind).collect()
}

fn list(items: Vec<Value>, cont: Option<&str>) -> Value {
    json!({
        "kind": "List", "apiVersion": "v1",
        "metadata": {"resourceVersion": "100", "continue": cont.unwrap_or("")},
        "items": items
    })
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("test double: {reason}"), "reason": reason, "code": code})
}

fn pod(ns: &str, name: &str, app: &str, owner: Option<&str>) -> Value {
    let mut meta = json!({"name": name, "namespace": ns, "labels": {"app": app}});
    if let Some(o) = owner {
        meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": o, "uid": "u", "controller": true}]);
    }
    json!({"metadata": meta, "spec": {"serviceAccountName": app,
        "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 8080}]}]}})
}

fn respond(state: &ApiServer, path: &str, query: &str) -> (StatusCode, Value) {
    // A namespaced list: the cluster-wide list's items of that namespace, as kube-apiserver
    // answers it.
    let parts: Vec<&str> = path.split('/').collect();
    // (Istio's ConfigMaps are read only in their namespace, answered below.)
    if let Some(i) = parts
        .iter()
        .position(|p| *p == "namespaces")
        .filter(|_| !path.ends_with("/configmaps"))
    {
        if parts.len() == i + 3 {
            let ns = parts[i + 1];
            let cluster_path = [&parts[..i], &parts[i + 2..]].concat().join("/");
            let (code, mut body) = respond(state, &cluster_path, query);
            if let Some(items) = body["items"].as_array_mut() {
                items.retain(|o| o["metadata"]["namespace"] == ns);
            }
            return (code, body);
        }
    }
    if state.broken {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            status(500, "InternalError"),
        );
    }
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
    };
    let ok = |v| (StatusCode::OK, v);
    let mesh_path = path == "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
        || path == "/api/v1/namespaces/istio-system/configmaps";
    if mesh_path && state.forbid_mesh {
        return (StatusCode::FORBIDDEN, status(403, "Forbidden"));
    }
    match path {
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations" if state.mesh => {
            ok(list(mesh_items("MutatingWebhookConfiguration"), None))
        }
        "/api/v1/namespaces/istio-system/configmaps" if state.mesh => {
            ok(list(mesh_items("ConfigMap"), None))
        }
        "/api/v1/namespaces" => ok(list(
            vec![
                json!({"metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}}),
                json!({"metadata": {"name": "pay", "labels": {"istio-injection": "enabled"}}}),
                json!({"metadata": {"name": "istio-system"}}),
            ],
            None,
        )),
        "/api/v1/serviceaccounts" => ok(list(
            vec![
                json!({"metadata": {"name": "web", "namespace": "shop"}}),
                json!({"metadata": {"name": "api", "namespace": "shop"}}),
            ],
            None,
        )),
        // Three pods over two pages (limit must be honoured, then the continue token).
        "/api/v1/pods" if state.any_page_size => ok(list(
            vec![
                pod("shop", "web-abc-1", "web", Some("web-abc")),
                pod("shop", "web-abc-2", "web", Some("web-abc")),
                pod("pay", "ledger", "ledger", None),
            ],
            None,
        )),
        "/api/v1/pods" => match param("continue").as_deref() {
            None => {
                assert_eq!(param("limit").as_deref(), Some("2"), "page size sent");
                ok(list(
                    vec![
                        pod("shop", "web-abc-1", "web", Some("web-abc")),
                        pod("shop", "web-abc-2", "web", Some("web-abc")),
                    ],
                    Some("page-2"),
                ))
            }
            Some("page-2") => ok(list(vec![pod("pay", "ledger", "ledger", None)], None)),
            Some(other) => (StatusCode::GONE, status(410, &format!("Expired {other}"))),
        },
        "/apis/apps/v1/deployments" => ok(list(
            vec![json!({"metadata": {"name": "web", "namespace": "shop"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"serviceAccountName": "web",
                      "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 8080}]}]}}}})],
            None,
        )),
        "/apis/security.istio.io/v1/peerauthentications" => ok(list(
            vec![
                json!({"metadata": {"name": "mesh", "namespace": "istio-system",
                    "creationTimestamp": "2024-01-01T00:00:00Z"},
                    "spec": {"mtls": {"mode": "STRICT"}}}),
                json!({"metadata": {"name": "legacy", "namespace": "shop",
                    "creationTimestamp": "2024-02-01T00:00:00Z"},
                    "spec": {"mtls": {"mode": "PERMISSIVE"}}}),
            ],
            None,
        )),
        "/apis/security.istio.io/v1/authorizationpolicies" => ok(list(
            vec![
                json!({"metadata": {"name": "deny-all", "namespace": "pay"}, "spec": {}}),
                json!({"metadata": {"name": "to-web", "namespace": "shop"},
                    "spec": {"selector": {"matchLabels": {"app": "web"}},
                      "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/nowhere/sa/x"]}}]}]}}),
            ],
            None,
        )),
        // An older Istio: RequestAuthentication only at v1beta1.
        "/apis/security.istio.io/v1/requestauthentications" => {
            (StatusCode::NOT_FOUND, status(404, "NotFound"))
        }
        "/apis/security.istio.io/v1beta1/requestauthentications" => ok(list(
            vec![json!({"metadata": {"name": "jwt", "namespace": "shop"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                  "jwtRules": [{"issuer": "https://issuer.example", "jwksUri": "https://issuer.example/jwks", "audiences": ["web"]}]}})],
            None,
        )),
        // No DestinationRule CRD at all.
        p if p.contains("destinationrules") => (StatusCode::NOT_FOUND, status(404, "NotFound")),
        // Gateway API at v1beta1 only (an older installation); a waypoint that is programmed
        // and one that is not yet.
        "/apis/gateway.networking.k8s.io/v1/gateways" => {
            (StatusCode::NOT_FOUND, status(404, "NotFound"))
        }
        "/apis/gateway.networking.k8s.io/v1beta1/gateways" => ok(list(
            vec![
                json!({"metadata": {"name": "waypoint", "namespace": "shop",
                    "managedFields": [{"manager": "pilot-discovery"}]},
                    "spec": {"gatewayClassName": "istio-waypoint",
                        "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]},
                    "status": {"addresses": [{"type": "Hostname", "value": "waypoint.shop.svc.cluster.local"}]}}),
                json!({"metadata": {"name": "pending", "namespace": "shop"},
                    "spec": {"gatewayClassName": "istio-waypoint"}, "status": {}}),
            ],
            None,
        )),
        _ => ok(list(Vec::new(), None)),
    }
}

async fn start(state: Arc<ApiServer>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let query = req.uri().query().unwrap_or("").to_owned();
                        state
                            .requests
                            .lock()
                            .expect("lock")
                            .push(format!("{} {path}?{query}", req.method()));
                        let (code, body) = respond(&state, &path, &query);
                        let resp = Response::builder()
                            .status(code)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string())))
                            .expect("response");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn client(url: &str) -> kube::Client {
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.read_timeout = Some(Duration::from_secs(5));
    kube::Client::try_from(config).expect("client")
}

#[tokio::test]
async fn audit_lists_every_kind_with_pagination_and_reports() {
    let state = Arc::new(ApiServer::default());
    let url = start(state.clone()).await;
    let client = client(&url);
    let collected = audit::collect(&client, 2, None).await.expect("audit lists");

    let requests = state.requests.lock().expect("lock").clone();
    assert!(
        requests.iter().all(|r| r.starts_with("GET ")),
        "read-only: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /api/v1/pods?") && r.contains("continue=page-2")),
        "continue token followed: {requests:?}"
    );
    assert!(requests
        .iter()
        .any(|r| r.contains("/apis/security.istio.io/v1beta1/requestauthentications")));
    for dr in ["v1", "v1beta1", "v1alpha3"] {
        assert!(
            requests
                .iter()
                .any(|r| r.contains(&format!("/apis/networking.istio.io/{dr}/destinationrules"))),
            "DestinationRule {dr} tried: {requests:?}"
        );
    }
    assert_eq!(
        collected.notes,
        vec!["DestinationRule skipped: networking.istio.io v1/v1beta1/v1alpha3 not served (CRD absent)".to_owned()]
    );
    let pods: Vec<&str> = collected
        .objects
        .iter()
        .filter(|e| e.kind == meshguard::resource::Kind::Pod)
        .map(|e| e.name())
        .collect();
    assert_eq!(
        pods,
        vec!["web-abc-1", "web-abc-2", "ledger"],
        "both pages read"
    );
    let ra = collected
        .objects
        .iter()
        .find(|e| e.kind == meshguard::resource::Kind::RequestAuthentication)
        .expect("RequestAuthentication listed");
    assert_eq!(ra.version, "v1beta1");
    assert_eq!(
        ra.types().as_ref().map(|t| t.api_version.as_str()),
        Some("security.istio.io/v1beta1"),
        "list items get their type filled in"
    );

    // Gateways are listed with their status (a waypoint is ready only with addresses).
    let gateways: Vec<&meshguard::inventory::Object> = collected
        .objects
        .iter()
        .filter(|e| e.kind == meshguard::resource::Kind::Gateway)
        .collect();
    assert_eq!(gateways.len(), 2);
    assert_eq!(gateways[0].version, "v1beta1");
    assert!(gateways[0].metadata().managed_fields.is_none());
    let topology =
        meshguard::dataplane::Topology::new(collected.objects.iter().map(|o| (o.kind, o.object())));
    let ready: Vec<meshguard::dataplane::Readiness> =
        topology.gateways().iter().map(|g| g.ready).collect();
    assert_eq!(
        ready,
        [
            meshguard::dataplane::Readiness::Ready,
            meshguard::dataplane::Readiness::NotReady
        ]
    );

    let engine = Engine::new(Policy::builtin(), Default::default(), None);
    let report = audit::evaluate(&engine, collected, true);
    let found: Vec<(String, &str, &str)> = report
        .findings
        .iter()
        .map(|i| {
            (
                i.subject.namespace.clone(),
                i.subject.name.as_str(),
                i.finding.rule,
            )
        })
        .collect();
    for want in [
        ("shop", "web", "mtls-not-strict"),
        ("shop", "shop", "ap-no-default-deny"),
        ("shop", "jwt", "ra-unenforced"),
        ("shop", "to-web", "ap-unknown-principal"),
        ("shop", "legacy", "pa-permissive-mtls"),
    ] {
        assert!(
            found
                .iter()
                .any(|(n, o, r)| n == want.0 && *o == want.1 && *r == want.2),
            "missing {want:?} in {found:?}"
        );
    }
    // Pods owned by a ReplicaSet are counted through their controller, not twice.
    assert!(!found
        .iter()
        .any(|(_, o, r)| o.starts_with("web-abc") && *r == "mtls-not-strict"));
    // pay has its allow-nothing policy; its standalone pod is STRICT from the mesh.
    assert!(!found
        .iter()
        .any(|(n, _, r)| n == "pay" && (*r == "ap-no-default-deny" || *r == "mtls-not-strict")));
    assert_eq!(report.exit(), meshguard::exit::Exit::Findings);

    let text = report.render(meshguard::report::Format::Text);
    assert!(text.contains("Findings by namespace:"), "{text}");
    assert!(text.contains("note: DestinationRule skipped"), "{text}");
    let table: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("shop ") || l.starts_with("pay "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        table,
        vec![
            "pay pod/ledger 8080 STRICT istio-system/mesh (mesh)",
            "shop deployment/web 8080 PERMISSIVE shop/legacy (namespace)",
        ]
    );
}

#[tokio::test]
async fn audit_reads_the_mesh_as_installed_read_only() {
    let state = Arc::new(ApiServer {
        mesh: true,
        ..Default::default()
    });
    let url = start(state.clone()).await;
    let client = client(&url);
    // The Istio namespace comes from the injector webhooks (their istiod Service).
    let read = meshguard::mesh_watch::read(&client, None)
        .await
        .expect("mesh read");
    assert!(read.notes.is_empty(), "{:?}", read.notes);
    let mesh = read.builder.build();
    assert_eq!(mesh.istio_namespace().value, "istio-system");
    assert_eq!(mesh.trust_domain().value, "corp.example");
    assert_eq!(
        mesh.tags().get("prod-stable").map(String::as_str),
        Some("canary")
    );
    let requests = state.requests.lock().expect("lock").clone();
    assert!(
        requests.iter().all(|r| r.starts_with("GET ")),
        "read-only: {requests:?}"
    );
    assert!(requests
        .iter()
        .any(|r| r.starts_with("GET /api/v1/namespaces/istio-system/configmaps?")));
    // The audit's report says which mesh it judged against.
    let collected = audit::collect(&client, 2, None).await.expect("audit lists");
    let engine = Engine::new(Policy::builtin(), Arc::new(mesh), None);
    let json = audit::evaluate(&engine, collected, false).json();
    assert_eq!(json["meshContext"]["trustDomain"]["value"], "corp.example");
    assert_eq!(json["meshContext"]["injectors"], "observed");
    // The principal of cluster.local in the double's policy is local to corp.example too.
    assert!(json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .any(|f| f["rule"] == "ap-unknown-principal" && f["name"] == "to-web"));

    // Forbidden: a note each, and the fallback (no injector, Istio's defaults).
    let state = Arc::new(ApiServer {
        mesh: true,
        forbid_mesh: true,
        ..Default::default()
    });
    let url = start(state).await;
    let read = meshguard::mesh_watch::read(&self::client(&url), Some("istio-system"))
        .await
        .expect("forbidden is not an error");
    assert_eq!(read.notes.len(), 2, "{:?}", read.notes);
    assert!(read.notes[0].contains("cannot list MutatingWebhookConfigurations"));
    assert!(read.notes[1].contains("cannot list ConfigMaps in namespace istio-system"));
    assert!(read.builder.build().assumed_default_injector());
}

#[tokio::test]
async fn periodic_audit_publishes_gauges_and_keeps_them_on_failure() {
    let state = Arc::new(ApiServer::default());
    let url = start(state).await;
    let engine = meshguard::engine::EngineHandle::new(Engine::new(
        Policy::builtin(),
        Default::default(),
        None,
    ));
    let metrics = Metrics::new().expect("metrics");
    // A stale series from an earlier run must disappear.
    metrics
        .audit_violations
        .with_label_values(&["pa-permissive-mtls", "gone"])
        .set(3.0);
    let n = audit::run_periodic_once(&client(&url), &engine, &metrics, 2)
        .await
        .expect("periodic run");
    assert!(n > 0);
    let text = metrics.render();
    assert!(
        text.contains("meshguard_audit_violations{namespace=\"shop\",rule=\"mtls-not-strict\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("namespace=\"gone\""),
        "reset before publishing: {text}"
    );
    let last_run = metrics.audit_last_run.get();
    assert!(last_run > 1.7e9, "timestamp set: {last_run}");

    // A failing cluster: error, previous gauges kept.
    let broken = Arc::new(ApiServer {
        broken: true,
        ..Default::default()
    });
    let url = start(broken).await;
    let err = audit::run_periodic_once(&client(&url), &engine, &metrics, 2)
        .await
        .expect_err("broken cluster fails");
    assert!(
        err.to_string().contains("cannot list namespaces")
            || err.to_string().contains("cannot list"),
        "{err}"
    );
    assert_eq!(metrics.render(), text, "gauges untouched");
    assert_eq!(metrics.audit_last_run.get(), last_run);
}

/// The bug this guards against: serve built the periodic audit's engine once from the start-up
/// policy, so a reloaded policy reached the webhook but never the audit (metrics, reports).
#[tokio::test]
async fn a_policy_reload_reaches_the_next_periodic_audit() {
    crate::common::init();
    let url = start(Arc::new(ApiServer {
        any_page_size: true,
        ..Default::default()
    }))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {{server: \"{url}\"}}\ncontexts:\n- name: double\n  context: {{cluster: double, user: nobody}}\ncurrent-context: double\nusers:\n- name: nobody\n  user: {{}}\n"),
    )
    .expect("kubeconfig");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "mode: enforce\n").expect("policy");
    let mut config = crate::common::serve_args(&[
        "--config-reload-interval",
        "50ms",
        "--audit-interval",
        "200ms",
        // The double serves no Lease: one replica audits without one.
        "--leader-elect=false",
    ]);
    config.no_cluster = false;
    config.kubeconfig = Some(kubeconfig);
    config.config = Some(policy.clone());
    let started = meshguard::serve::start(&config)
        .await
        .expect("serve starts");
    let metrics = started.state.admission.metrics.clone();
    let series = "meshguard_audit_violations{namespace=\"shop\",rule=\"mtls-not-strict\"}";
    let wait_for = |want: bool| {
        let metrics = metrics.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while metrics.render().contains(series) != want {
                assert!(
                    std::time::Instant::now() < deadline,
                    "periodic audit never {} {series}:\n{}",
                    if want { "reported" } else { "dropped" },
                    metrics.render()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_for(true).await;
    // Turn the check off in the policy file: the next audit must judge with the new policy.
    std::fs::write(&policy, "rules:\n  mtls-not-strict:\n    action: off\n").expect("policy");
    wait_for(false).await;
    assert!(
        metrics
            .render()
            .contains("meshguard_config_reloads_total{result=\"success\"} 1"),
        "{}",
        metrics.render()
    );
    // ... and the webhook shares that engine.
    assert_eq!(
        started
            .state
            .admission
            .engine
            .current()
            .policy()
            .rules
            .get("mtls-not-strict")
            .and_then(|r| r.action),
        Some(meshguard::finding::Action::Off)
    );
    started.shutdown().await;
}

#[test]
fn audit_and_serve_flags_parse() {
    use clap::Parser;
    use meshguard::cli::{Cli, Command};
    let cli = Cli::try_parse_from(["meshguard", "serve"]).expect("serve parses");
    let Command::Serve(args) = cli.command else {
        panic!("serve")
    };
    assert!(
        args.audit_interval.is_zero(),
        "the webhook audits nothing by default (meshguard auditor does)"
    );
    let cli =
        Cli::try_parse_from(["meshguard", "serve", "--audit-interval", "10m"]).expect("10m parses");
    let Command::Serve(args) = cli.command else {
        panic!("serve")
    };
    assert_eq!(args.audit_interval, Duration::from_secs(600));
    let cli =
        Cli::try_parse_from(["meshguard", "serve", "--audit-interval", "0"]).expect("0 parses");
    let Command::Serve(args) = cli.command else {
        panic!("serve")
    };
    assert!(
        args.audit_interval.is_zero(),
        "0 turns the periodic audit off"
    );
    let cli = Cli::try_parse_from([
        "meshguard",
        "audit",
        "--mtls",
        "--format",
        "sarif",
        "--page-size",
        "50",
        "--context",
        "prod",
    ])
    .expect("audit parses");
    let Command::Audit(args) = cli.command else {
        panic!("audit")
    };
    assert!(args.mtls);
    assert_eq!(args.page_size, 50);
    assert_eq!(args.cluster.context.as_deref(), Some("prod"));
    assert!(Cli::try_parse_from(["meshguard", "audit", "--page-size", "0"]).is_err());
}

/// `meshguard report --cluster` is `audit`'s run: against the same cluster (the double, with
/// the mesh's injectors and ConfigMaps), the page's findings are exactly `audit --format json`'s
/// and its header names the mesh as installed there. Both run as the binary, as a user would.
#[tokio::test]
async fn report_cluster_shows_audits_findings() {
    let url = start(Arc::new(ApiServer {
        any_page_size: true,
        mesh: true,
        ..Default::default()
    }))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {{server: \"{url}\"}}\ncontexts:\n- name: double\n  context: {{cluster: double, user: nobody}}\ncurrent-context: double\nusers:\n- name: nobody\n  user: {{}}\n"),
    )
    .expect("kubeconfig");
    let page = dir.path().join("page.html");
    let mesh_config = dir.path().join("mesh.yaml");
    std::fs::write(&mesh_config, "rootNamespace: mesh-root\n").expect("mesh config");
    let (k, p, m) = (kubeconfig.clone(), page.clone(), mesh_config.clone());
    let (audit, report, audit_mesh) = tokio::task::spawn_blocking(move || {
        let run = |args: &[&std::ffi::OsStr]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_meshguard"))
                .args(args)
                .env_remove("KUBECONFIG")
                .env_remove("MESHGUARD_CONFIG")
                .output()
                .expect("meshguard runs")
        };
        let audit = run(&[
            "audit".as_ref(),
            "--kubeconfig".as_ref(),
            k.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
        ]);
        let report = run(&[
            "report".as_ref(),
            "--cluster".as_ref(),
            "--kubeconfig".as_ref(),
            k.as_os_str(),
            "--html".as_ref(),
            p.as_os_str(),
        ]);
        // The shared mesh flags reach the cluster's run too.
        let audit_mesh = run(&[
            "audit".as_ref(),
            "--kubeconfig".as_ref(),
            k.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
            "--mesh-config".as_ref(),
            m.as_os_str(),
        ]);
        (audit, report, audit_mesh)
    })
    .await
    .expect("joined");
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let summary = serde_json::from_slice::<Value>(&audit.stdout).unwrap_or_else(|e| {
        panic!(
            "audit's JSON: {e}: {}",
            String::from_utf8_lossy(&audit.stderr)
        )
    })["summary"]
        .clone();
    assert!(summary["findings"].as_u64().expect("findings") > 0);
    // Exit 1 with deny-level findings, else 0 (meshguard::exit::Exit).
    let deny = summary["deny"].as_u64().expect("deny");
    assert_eq!(audit.status.code(), Some(i32::from(deny > 0)), "{summary}");
    let with_mesh: Value = serde_json::from_slice(&audit_mesh.stdout).unwrap_or_else(|e| {
        panic!(
            "audit --mesh-config: {e}: {}",
            String::from_utf8_lossy(&audit_mesh.stderr)
        )
    });
    let root = &with_mesh["meshContext"]["rootNamespace"];
    assert_eq!(root["value"], "mesh-root", "{root}");
    assert!(
        root["source"]
            .as_str()
            .is_some_and(|s| s.contains("mesh.yaml")),
        "{root}"
    );
    let html = scraper::Html::parse_document(&std::fs::read_to_string(&page).expect("page"));
    let text = |s: &str| -> String {
        let sel = scraper::Selector::parse(s).expect("selector");
        html.select(&sel)
            .next()
            .unwrap_or_else(|| panic!("no {s}"))
            .text()
            .collect()
    };
    for key in ["findings", "deny", "warn", "audit"] {
        assert_eq!(
            text(&format!("#counts [data-count={key}] b"))
                .parse::<u64>()
                .ok(),
            summary[key].as_u64(),
            "{key}"
        );
    }
    assert!(text("header p.sub").contains("live cluster"));
    let facts = text("#mesh-facts");
    assert!(
        facts.contains("corp.example") && facts.contains("revision canary"),
        "{facts}"
    );
    let data_sel = scraper::Selector::parse("script#posture-data").expect("selector");
    let data = meshguard::posture::page::decode_data(
        &html
            .select(&data_sel)
            .next()
            .expect("data")
            .text()
            .collect::<String>(),
    )
    .expect("decodes");
    assert_eq!(
        data["fd"].as_array().expect("fd").len() as u64,
        summary["findings"].as_u64().expect("n")
    );
    let namespaces: Vec<&str> = data["ns"]
        .as_array()
        .expect("ns")
        .iter()
        .map(|n| n["n"].as_str().expect("n"))
        .collect();
    assert!(
        namespaces.contains(&"shop") && namespaces.contains(&"pay"),
        "{namespaces:?}"
    );
}
