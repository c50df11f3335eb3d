//! Cluster context against an API-server test double: a plain-HTTP server on 127.0.0.1, in this
//! process, that answers the metadata-only list, watch and get requests kube-rs makes for
//! Namespaces and ServiceAccounts (the pattern of kube-rs's and controller-rs's
//! `ApiServerVerifier`, but serving real HTTP so the real `kube::Client` stack is exercised).
//! A real `kube::Client` points at it through a `kube::Config` with its URL.
//!
//! Covered: cache hit (no direct GET), cache miss answered by one direct GET, GET failure and GET
//! timeout under both `onLookupFailure` values, a namespace label change arriving by watch, and
//! readiness (`synced`, `meshguard_cache_synced`).

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use kube::core::admission::Operation;
use kube::core::DynamicObject;
use meshguard::cluster::KubeCluster;
use meshguard::config::Policy;
use meshguard::context::{ClusterSource, Lookup};
use meshguard::engine::Engine;
use meshguard::metrics::Metrics;
use meshguard::resource::{Kind, Review};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

type Body = BoxBody<Bytes, Infallible>;
type Labels = BTreeMap<String, String>;

/// What the test double knows. `listed_*` appear in list responses (and so in the caches);
/// `late_*` exist only for direct GETs, like objects created after the watch's list.
#[derive(Default)]
struct State {
    listed_namespaces: BTreeMap<String, Labels>,
    late_namespaces: BTreeMap<String, Labels>,
    listed_accounts: BTreeSet<(String, String)>,
    late_accounts: BTreeSet<(String, String)>,
    /// Direct GETs of these names answer 500.
    failing: BTreeSet<String>,
    /// Direct GETs of these names answer after this long.
    slow: BTreeMap<String, Duration>,
    /// Paths of every direct GET received.
    gets: Vec<String>,
}

struct ApiServer {
    url: String,
    state: Arc<Mutex<State>>,
    namespace_events: broadcast::Sender<String>,
    account_events: broadcast::Sender<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn meta_object(name: &str, namespace: Option<&str>, labels: &Labels, rv: u64) -> Value {
    let mut metadata = json!({"name": name, "labels": labels, "resourceVersion": rv.to_string(),
        "uid": format!("uid-{name}")});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": metadata})
}

/// A list page; `next` is the offset the `continue` token of the next page encodes.
fn meta_list(items: Vec<Value>, next: Option<usize>) -> Value {
    let mut metadata = json!({"resourceVersion": "1"});
    if let Some(n) = next {
        metadata["continue"] = json!(n.to_string());
    }
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
        "metadata": metadata, "items": items})
}

/// `limit` and `continue` of a list request, as (offset, page size); pages like the API server.
fn page(query: &str) -> (usize, usize) {
    let mut skip = 0;
    let mut take = usize::MAX;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("limit", v)) => take = v.parse().unwrap_or(usize::MAX),
            Some(("continue", v)) => skip = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    (skip, take)
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap_or_default()
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

/// A watch response: one JSON event per line, for as long as the test keeps the sender.
fn watch_stream(rx: broadcast::Receiver<String>) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(line) => {
                    return Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from(line + "\n"))),
                        rx,
                    ))
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_default()
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<State>>,
    namespace_events: broadcast::Sender<String>,
    account_events: broadcast::Sender<String>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let resp = match segments.as_slice() {
        ["api", "v1", "namespaces"] if watch => watch_stream(namespace_events.subscribe()),
        ["api", "v1", "serviceaccounts"] if watch => watch_stream(account_events.subscribe()),
        ["api", "v1", "namespaces"] => {
            let s = state.lock().expect("state");
            let (skip, take) = page(&query);
            let items = s
                .listed_namespaces
                .iter()
                .skip(skip)
                .take(take)
                .map(|(n, l)| meta_object(n, None, l, 1))
                .collect();
            let more = s.listed_namespaces.len() > skip + take;
            json_response(
                StatusCode::OK,
                &meta_list(items, more.then_some(skip + take)),
            )
        }
        ["api", "v1", "serviceaccounts"] => {
            let s = state.lock().expect("state");
            let (skip, take) = page(&query);
            let items = s
                .listed_accounts
                .iter()
                .skip(skip)
                .take(take)
                .map(|(ns, n)| meta_object(n, Some(ns), &Labels::new(), 1))
                .collect();
            let more = s.listed_accounts.len() > skip + take;
            json_response(
                StatusCode::OK,
                &meta_list(items, more.then_some(skip + take)),
            )
        }
        ["api", "v1", "namespaces", name] => {
            let (delay, fail, found) = {
                let mut s = state.lock().expect("state");
                s.gets.push(path.clone());
                let found = s
                    .listed_namespaces
                    .get(*name)
                    .or_else(|| s.late_namespaces.get(*name))
                    .cloned();
                (s.slow.get(*name).copied(), s.failing.contains(*name), found)
            };
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            match (fail, found) {
                (true, _) => status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "etcdserver: request timed out",
                ),
                (false, Some(labels)) => {
                    json_response(StatusCode::OK, &meta_object(name, None, &labels, 1))
                }
                (false, None) => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("namespaces \"{name}\" not found"),
                ),
            }
        }
        ["api", "v1", "namespaces", ns, "serviceaccounts", name] => {
            let key = ((*ns).to_owned(), (*name).to_owned());
            let (fail, found) = {
                let mut s = state.lock().expect("state");
                s.gets.push(path.clone());
                (
                    s.failing.contains(*name),
                    s.listed_accounts.contains(&key) || s.late_accounts.contains(&key),
                )
            };
            match (fail, found) {
                (true, _) => status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "boom"),
                (false, true) => json_response(
                    StatusCode::OK,
                    &meta_object(name, Some(ns), &Labels::new(), 1),
                ),
                (false, false) => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("serviceaccounts \"{name}\" not found"),
                ),
            }
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the test double does not serve this path",
        ),
    };
    Ok(resp)
}

impl ApiServer {
    async fn start(state: State) -> ApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(state));
        let (namespace_events, _) = broadcast::channel(64);
        let (account_events, _) = broadcast::channel(64);
        let (st, ne, ae) = (
            state.clone(),
            namespace_events.clone(),
            account_events.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (st, ne, ae) = (st.clone(), ne.clone(), ae.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(req, st.clone(), ne.clone(), ae.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        ApiServer {
            url: format!("http://{addr}"),
            state,
            namespace_events,
            account_events,
            task,
        }
    }

    fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::new(self.url.parse().expect("url"));
        kube::Client::try_from(config).expect("client")
    }

    fn gets(&self) -> Vec<String> {
        self.state.lock().expect("state").gets.clone()
    }

    /// Send one namespace watch event once a watch is open.
    async fn namespace_event(&self, kind: &str, name: &str, labels: &Labels, rv: u64) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.namespace_events.receiver_count() == 0 {
            assert!(
                Instant::now() < until,
                "kube never opened the namespace watch"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let line = json!({"type": kind, "object": meta_object(name, None, labels, rv)});
        self.namespace_events.send(line.to_string()).expect("send");
    }

    async fn account_event(&self, kind: &str, ns: &str, name: &str, rv: u64) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.account_events.receiver_count() == 0 {
            assert!(
                Instant::now() < until,
                "kube never opened the ServiceAccount watch"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let line = json!({"type": kind, "object": meta_object(name, Some(ns), &Labels::new(), rv)});
        self.account_events.send(line.to_string()).expect("send");
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn deployment(ns: &str, app: &str) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": app, "image": "nginx"}]}}}}))
    .expect("deployment")
}

fn review<'a>(ns: &'a str, op: &'a Operation, o: &'a DynamicObject) -> Review<'a> {
    Review {
        kind: Kind::Deployment,
        version: "v1",
        operation: op,
        namespace: ns,
        name: "w",
        object: Some(o),
        old_object: None,
        dry_run: false,
    }
}

/// Rule ids and messages of an evaluation, `[rule] message`.
fn evaluate(engine: &Engine, source: &KubeCluster, r: &Review<'_>) -> Vec<String> {
    engine
        .evaluate(r, source.view())
        .findings
        .iter()
        .map(|f| format!("[{}] {}", f.rule, f.violation.message))
        .collect()
}

fn policy(on_lookup_failure: &str) -> Engine {
    let p = Policy::from_yaml(&format!("onLookupFailure: {on_lookup_failure}\n"), "test")
        .expect("policy");
    Engine::new(p, None)
}

async fn synced_cluster(server: &ApiServer, metrics: Option<Metrics>) -> Arc<KubeCluster> {
    let cluster = KubeCluster::start(server.client(), metrics);
    assert!(
        cluster.wait_synced(Duration::from_secs(10)).await,
        "caches never synced"
    );
    cluster
}

const DEADLINE: Duration = Duration::from_secs(2);

#[tokio::test]
async fn cache_hit_answers_without_a_get_and_feeds_the_mutation() {
    let mut state = State::default();
    state
        .listed_namespaces
        .insert("prod".into(), labels(&[("istio-injection", "enabled")]));
    state.listed_accounts.insert(("prod".into(), "web".into()));
    let server = ApiServer::start(state).await;
    let metrics = Metrics::new().expect("metrics");
    let cluster = synced_cluster(&server, Some(metrics.clone())).await;
    assert!(cluster.synced());
    assert_eq!(cluster.cached(), (1, 1));
    let text = metrics.render();
    assert!(
        text.contains("meshguard_cache_synced{resource=\"namespaces\"} 1"),
        "{text}"
    );
    assert!(text.contains("meshguard_cache_synced{resource=\"serviceaccounts\"} 1"));

    let op = Operation::Create;
    let o = deployment("prod", "web");
    let r = review("prod", &op, &o);
    cluster.prepare(&r, DEADLINE).await;
    let engine = policy("deny");
    let findings = evaluate(&engine, &cluster, &r);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0].starts_with("[wl-default-service-account]"));
    let eval = engine.evaluate(&r, cluster.view());
    assert_eq!(
        eval.findings[0].violation.fix,
        "set spec.template.spec.serviceAccountName: web (ServiceAccount prod/web exists)"
    );
    let mutated = engine.mutate(&r, cluster.view());
    assert_eq!(mutated.applied, vec!["default-service-account"]);
    assert!(
        server.gets().is_empty(),
        "cache hits need no GET: {:?}",
        server.gets()
    );
}

#[tokio::test]
async fn cache_miss_falls_back_to_one_get() {
    let mut state = State::default();
    state
        .late_namespaces
        .insert("late".into(), labels(&[("istio-injection", "enabled")]));
    state.late_accounts.insert(("late".into(), "api".into()));
    let server = ApiServer::start(state).await;
    let cluster = synced_cluster(&server, None).await;
    assert_eq!(cluster.cached(), (0, 0));

    let op = Operation::Create;
    let o = deployment("late", "api");
    let r = review("late", &op, &o);
    assert_eq!(cluster.view().namespace_labels("late"), Lookup::Unknown);
    cluster.prepare(&r, DEADLINE).await;
    assert_eq!(
        cluster.view().namespace_labels("late"),
        Lookup::Found(labels(&[("istio-injection", "enabled")]))
    );
    assert_eq!(
        cluster.view().service_account("late", "api"),
        Lookup::Found(())
    );
    let mut gets = server.gets();
    gets.sort();
    assert_eq!(
        gets,
        vec![
            "/api/v1/namespaces/late".to_owned(),
            "/api/v1/namespaces/late/serviceaccounts/api".to_owned()
        ]
    );
    let engine = policy("deny");
    let findings = evaluate(&engine, &cluster, &r);
    assert_eq!(findings.len(), 1, "only the service account: {findings:?}");
    assert_eq!(
        engine.mutate(&r, cluster.view()).applied,
        vec!["default-service-account"]
    );
    // The answer is remembered: a second review does not GET again.
    cluster.prepare(&r, DEADLINE).await;
    assert_eq!(server.gets().len(), 2);

    // A ServiceAccount that does not exist: 404 → Missing → the fix says what to create.
    let o = deployment("late", "reports");
    let r = review("late", &op, &o);
    cluster.prepare(&r, DEADLINE).await;
    assert_eq!(
        cluster.view().service_account("late", "reports"),
        Lookup::Missing
    );
    let eval = engine.evaluate(&r, cluster.view());
    assert!(
        eval.findings[0]
            .violation
            .fix
            .starts_with("create ServiceAccount \"reports\" in namespace \"late\""),
        "{}",
        eval.findings[0].violation.fix
    );
    assert!(engine.mutate(&r, cluster.view()).patch.is_empty());
}

#[tokio::test]
async fn failed_get_follows_on_lookup_failure() {
    let mut state = State::default();
    state.failing.insert("broken".into());
    let server = ApiServer::start(state).await;
    let cluster = synced_cluster(&server, None).await;
    let op = Operation::Create;
    let mut o = deployment("broken", "web");
    o.data["spec"]["template"]["spec"]["serviceAccountName"] = json!("web");
    let r = review("broken", &op, &o);
    cluster.prepare(&r, DEADLINE).await;
    assert_eq!(server.gets(), vec!["/api/v1/namespaces/broken".to_owned()]);
    assert_eq!(cluster.view().namespace_labels("broken"), Lookup::Unknown);

    let denied = evaluate(&policy("deny"), &cluster, &r);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(
        denied[0].starts_with("[wl-namespace-not-injected] namespace labels unknown: meshguard could not read namespace \"broken\""),
        "{denied:?}"
    );
    assert!(policy("deny").evaluate(&r, cluster.view()).denied());
    let allowed = evaluate(&policy("allow"), &cluster, &r);
    assert!(allowed.is_empty(), "{allowed:?}");
}

#[tokio::test]
async fn slow_get_is_cut_at_the_deadline() {
    let mut state = State::default();
    state
        .late_namespaces
        .insert("slow".into(), labels(&[("istio-injection", "enabled")]));
    state.slow.insert("slow".into(), Duration::from_secs(5));
    let server = ApiServer::start(state).await;
    let cluster = synced_cluster(&server, None).await;
    let op = Operation::Create;
    let mut o = deployment("slow", "web");
    o.data["spec"]["template"]["spec"]["serviceAccountName"] = json!("web");
    let r = review("slow", &op, &o);
    let start = Instant::now();
    cluster.prepare(&r, Duration::from_millis(200)).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(cluster.view().namespace_labels("slow"), Lookup::Unknown);
    assert_eq!(evaluate(&policy("deny"), &cluster, &r).len(), 1);
    assert!(evaluate(&policy("allow"), &cluster, &r).is_empty());
}

#[tokio::test]
async fn label_change_arrives_by_watch() {
    let mut state = State::default();
    state
        .listed_namespaces
        .insert("prod".into(), labels(&[("team", "a")]));
    let server = ApiServer::start(state).await;
    let cluster = synced_cluster(&server, None).await;
    let engine = policy("deny");
    let op = Operation::Create;
    let mut o = deployment("prod", "web");
    o.data["spec"]["template"]["spec"]["serviceAccountName"] = json!("web");
    let r = review("prod", &op, &o);
    let before = evaluate(&engine, &cluster, &r);
    assert_eq!(before.len(), 1);
    assert!(before[0].contains("namespace \"prod\" is not labeled for injection"));

    // `kubectl label namespace prod istio-injection=enabled` reaches the cache by watch.
    server
        .namespace_event(
            "MODIFIED",
            "prod",
            &labels(&[("team", "a"), ("istio-injection", "enabled")]),
            2,
        )
        .await;
    let until = Instant::now() + Duration::from_secs(10);
    while cluster.view().namespace_labels("prod")
        != Lookup::Found(labels(&[("team", "a"), ("istio-injection", "enabled")]))
    {
        assert!(
            Instant::now() < until,
            "the watch event never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.prepare(&r, DEADLINE).await;
    assert!(evaluate(&engine, &cluster, &r).is_empty());

    // A ServiceAccount created later arrives the same way, and deletions are seen too.
    server.account_event("ADDED", "prod", "web", 3).await;
    let until = Instant::now() + Duration::from_secs(10);
    while cluster.view().service_account("prod", "web") != Lookup::Found(()) {
        assert!(
            Instant::now() < until,
            "the ServiceAccount never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server
        .namespace_event("DELETED", "prod", &Labels::new(), 4)
        .await;
    let until = Instant::now() + Duration::from_secs(10);
    while cluster.view().namespace_labels("prod") != Lookup::Unknown {
        assert!(
            Instant::now() < until,
            "the deletion never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(server.gets().is_empty(), "{:?}", server.gets());
}

#[tokio::test]
async fn not_synced_until_the_lists_arrive() {
    // Nothing listens here: the watches keep failing and the caches never sync.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::Config::new(format!("http://{addr}").parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");
    let metrics = Metrics::new().expect("metrics");
    let cluster = KubeCluster::start(client, Some(metrics.clone()));
    assert!(!cluster.wait_synced(Duration::from_millis(300)).await);
    assert!(metrics
        .render()
        .contains("meshguard_cache_synced{resource=\"namespaces\"} 0"));
    // Lookups are unknown, and prepare's GET fails fast (connection refused).
    let op = Operation::Create;
    let o = deployment("prod", "web");
    let r = review("prod", &op, &o);
    cluster.prepare(&r, DEADLINE).await;
    assert_eq!(cluster.view().namespace_labels("prod"), Lookup::Unknown);
    assert_eq!(
        cluster.view().service_account("prod", "web"),
        Lookup::Unknown
    );
}

/// Resident set size of this process, from /proc (Linux); 0 elsewhere.
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Scale measurement, not a pass/fail test: 10,000 namespaces and 50,000 ServiceAccounts in
/// the caches, then Pod reviews against the warm cache. Run with
/// `cargo test --release --test integration -- --ignored --nocapture warm_cache_scale`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn warm_cache_scale() {
    const NAMESPACES: usize = 10_000;
    const ACCOUNTS_PER_NAMESPACE: usize = 5;
    let mut state = State::default();
    for i in 0..NAMESPACES {
        let name = format!("team-{i:05}");
        state.listed_namespaces.insert(
            name.clone(),
            labels(&[
                ("istio-injection", "enabled"),
                ("kubernetes.io/metadata.name", &name),
            ]),
        );
        for j in 0..ACCOUNTS_PER_NAMESPACE {
            state
                .listed_accounts
                .insert((name.clone(), format!("service-{j}")));
        }
    }
    let server = ApiServer::start(state).await;
    let rss_before = rss_bytes();
    let start = Instant::now();
    let cluster = KubeCluster::start(server.client(), None);
    assert!(cluster.wait_synced(Duration::from_secs(120)).await);
    let sync = start.elapsed();
    assert_eq!(
        cluster.cached(),
        (NAMESPACES, NAMESPACES * ACCOUNTS_PER_NAMESPACE)
    );
    let rss_after = rss_bytes();

    // A controller-made Pod of a labeled namespace, injected, with its own account.
    let engine = Engine::new(Policy::default(), None);
    let mut pod = fixture_pod();
    pod["metadata"]["namespace"] = json!("team-04242");
    let pod: DynamicObject = serde_json::from_value(pod).expect("pod");
    let op = Operation::Create;
    let r = Review {
        kind: Kind::Pod,
        version: "v1",
        operation: &op,
        namespace: "team-04242",
        name: "web-0",
        object: Some(&pod),
        old_object: None,
        dry_run: false,
    };
    const N: u32 = 20_000;
    let t = Instant::now();
    for _ in 0..N {
        let e = engine.evaluate(&r, cluster.view());
        assert!(e.findings.is_empty(), "{:?}", e.findings);
    }
    let eval = t.elapsed() / N;
    let t = Instant::now();
    for _ in 0..N {
        cluster.prepare(&r, DEADLINE).await;
        let e = engine.evaluate(&r, cluster.view());
        assert!(!e.denied());
    }
    let prepared = t.elapsed() / N;
    assert!(server.gets().is_empty(), "warm cache: no GETs");
    println!(
        "caches: {} namespaces, {} ServiceAccounts; initial list+sync {:?}",
        NAMESPACES,
        NAMESPACES * ACCOUNTS_PER_NAMESPACE,
        sync
    );
    println!(
        "cache heap estimate {:.1} MiB; RSS growth during sync {:.1} MiB (includes the in-process test double's pages and decoding garbage)",
        cluster.cache_bytes() as f64 / (1024.0 * 1024.0),
        rss_after.saturating_sub(rss_before) as f64 / (1024.0 * 1024.0)
    );
    println!("Pod review: evaluate {eval:?}, prepare (cache hit) + evaluate {prepared:?}");
}

/// An injected Pod with its own ServiceAccount (the shape of pod-create-with-istio-proxy-sidecar).
fn fixture_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "prod",
            "labels": {"app": "web", "security.istio.io/tlsMode": "istio",
                "service.istio.io/canonical-name": "web"},
            "annotations": {"sidecar.istio.io/status": "{\"containers\":[\"istio-proxy\"]}"}},
        "spec": {"serviceAccountName": "service-3", "serviceAccount": "service-3",
            "initContainers": [{"name": "istio-init", "image": "istio/proxyv2"}],
            "containers": [
                {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]},
                {"name": "istio-proxy", "image": "istio/proxyv2",
                    "securityContext": {"runAsUser": 1337, "runAsGroup": 1337}}]}})
}
