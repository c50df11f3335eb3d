//! Cluster context against the API-server test double (`api_double`: a plain-HTTP server on
//! 127.0.0.1, in this process, answering the metadata-only list, watch and get requests kube-rs
//! makes for Namespaces and ServiceAccounts). A real `kube::Client` points at it through a
//! `kube::Config` with its URL. Scale is measured by `cargo bench --bench cache`.
//!
//! Covered: cache hit (no direct GET); a miss in a synced cache answered Missing without a GET
//! (2,000 crafted reviews for unseen namespaces cost the API server nothing), an object the watch
//! delivers within the grace found; with a failing watch, a miss answered by one direct GET,
//! concurrent misses sharing one GET, GETs held to their rate, GET failure and GET timeout under
//! both `onLookupFailure` values; a namespace label change arriving by watch, a namespace
//! turning Terminating (by list, watch and GET) exempting DELETEs in it, and readiness
//! (`synced`, `meshguard_cache_synced`).

use crate::api_double::{labels, namespace_object, ApiServer, Labels, State};
use kube::core::admission::Operation;
use kube::core::DynamicObject;
use meshguard::admission::{Admission, Webhook};
use meshguard::cluster::KubeCluster;
use meshguard::context::{ClusterSource, Lookup};
use meshguard::engine::Engine;
use meshguard::metrics::Metrics;
use meshguard::resource::{Kind, Review};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        created_for: None,
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

/// What the built-in policy's rules read from the cluster for this review.
fn lookups(r: &meshguard::resource::Review<'_>) -> Vec<meshguard::context::LookupKey> {
    meshguard::engine::Engine::new(
        meshguard::config::Policy::default(),
        Default::default(),
        None,
    )
    .lookups(r)
}

fn policy(on_lookup_failure: &str) -> Engine {
    let p = meshguard::catalogue::policy_from_yaml(
        &format!("onLookupFailure: {on_lookup_failure}\n"),
        "test",
    )
    .expect("policy");
    Engine::new(p, Default::default(), None)
}

async fn synced_cluster(server: &ApiServer, metrics: Option<Metrics>) -> Arc<KubeCluster> {
    let cluster = KubeCluster::start(server.client(), metrics);
    assert!(
        cluster.wait_synced(Duration::from_secs(10)).await,
        "caches never synced"
    );
    cluster
}

/// A cluster whose caches synced and whose watches then fail (`State::watch_fails`): misses
/// fall back to direct GETs.
async fn cluster_with_failing_watches(server: &ApiServer) -> Arc<KubeCluster> {
    let cluster = synced_cluster(server, None).await;
    let until = Instant::now() + Duration::from_secs(10);
    while cluster.answers_from_cache() {
        assert!(Instant::now() < until, "the watches never failed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    cluster.prepare(&lookups(&r), DEADLINE).await;
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
async fn with_a_failing_watch_a_miss_falls_back_to_one_get() {
    let mut state = State::default();
    state
        .late_namespaces
        .insert("late".into(), labels(&[("istio-injection", "enabled")]));
    state.late_accounts.insert(("late".into(), "api".into()));
    state.watch_fails = true;
    let server = ApiServer::start(state).await;
    let cluster = cluster_with_failing_watches(&server).await;
    assert_eq!(cluster.cached(), (0, 0));

    let op = Operation::Create;
    let o = deployment("late", "api");
    let r = review("late", &op, &o);
    assert_eq!(cluster.view().namespace_labels("late"), Lookup::Unknown);
    cluster.prepare(&lookups(&r), DEADLINE).await;
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
    cluster.prepare(&lookups(&r), DEADLINE).await;
    assert_eq!(server.gets().len(), 2);

    // A ServiceAccount that does not exist: 404 → Missing → the fix says what to create.
    let o = deployment("late", "reports");
    let r = review("late", &op, &o);
    cluster.prepare(&lookups(&r), DEADLINE).await;
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
    state.watch_fails = true;
    let server = ApiServer::start(state).await;
    let cluster = cluster_with_failing_watches(&server).await;
    let op = Operation::Create;
    let mut o = deployment("broken", "web");
    o.data["spec"]["template"]["spec"]["serviceAccountName"] = json!("web");
    let r = review("broken", &op, &o);
    cluster.prepare(&lookups(&r), DEADLINE).await;
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
    state.watch_fails = true;
    let server = ApiServer::start(state).await;
    let cluster = cluster_with_failing_watches(&server).await;
    let op = Operation::Create;
    let mut o = deployment("slow", "web");
    o.data["spec"]["template"]["spec"]["serviceAccountName"] = json!("web");
    let r = review("slow", &op, &o);
    let start = Instant::now();
    cluster
        .prepare(&lookups(&r), Duration::from_millis(200))
        .await;
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
    cluster.prepare(&lookups(&r), DEADLINE).await;
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
    while cluster.view().namespace_labels("prod") != Lookup::Missing {
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
    cluster.prepare(&lookups(&r), DEADLINE).await;
    assert_eq!(cluster.view().namespace_labels("prod"), Lookup::Unknown);
    assert_eq!(
        cluster.view().service_account("prod", "web"),
        Lookup::Unknown
    );
}

/// The validating answer of `admission` to `review`.
async fn validate(admission: &Admission, review: &serde_json::Value) -> serde_json::Value {
    let body = serde_json::to_vec(review).expect("json");
    let out = admission
        .handle(Webhook::Validate, &body, Duration::from_secs(5))
        .await
        .expect("answered");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("response");
    v["response"].clone()
}

/// kube-controller-manager deleting a namespace-wide STRICT PeerAuthentication in `namespace`
/// as `system:kube-controller-manager` (`--use-service-account-credentials=false`), from the
/// captured review of `kubectl delete peerauthentication default-strict`.
fn teardown_delete(namespace: &str) -> serde_json::Value {
    let mut review: serde_json::Value = serde_json::from_slice(include_bytes!(
        "../fixtures/admission/peerauthentication-delete-strict-v1beta1.json"
    ))
    .expect("fixture");
    review["request"]["namespace"] = json!(namespace);
    review["request"]["oldObject"]["metadata"]["namespace"] = json!(namespace);
    review["request"]["userInfo"] =
        json!({"username": "system:kube-controller-manager", "groups": ["system:authenticated"]});
    review
}

#[tokio::test]
async fn terminating_namespace_exempts_deletes_by_any_identity() {
    let injected = labels(&[("istio-injection", "enabled")]);
    let mut state = State::default();
    state
        .listed_namespaces
        .insert("prod".into(), injected.clone());
    state
        .listed_namespaces
        .insert("retired".into(), injected.clone());
    state.terminating.insert("retired".into());
    state
        .late_namespaces
        .insert("late".into(), injected.clone());
    state.terminating.insert("late".into());
    let server = ApiServer::start(state).await;
    let cluster = synced_cluster(&server, None).await;
    let view = cluster.view();
    assert_eq!(view.namespace_terminating("prod"), Lookup::Found(false));
    assert_eq!(view.namespace_terminating("retired"), Lookup::Found(true));
    assert_eq!(view.namespace_terminating("late"), Lookup::Missing);

    let source: Arc<dyn ClusterSource> = cluster.clone();
    let admission = Admission::new(
        meshguard::engine::EngineHandle::new(policy("deny")),
        Metrics::new().expect("metrics"),
        source,
    );
    // A live namespace: the delete weakens mTLS and is refused, whoever sends it.
    let resp = validate(&admission, &teardown_delete("prod")).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(resp["status"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("[pa-weakening-delete]")));
    // Terminating by the initial list: let through.
    let resp = validate(&admission, &teardown_delete("retired")).await;
    assert_eq!(resp["allowed"], true, "{resp}");

    // `kubectl delete namespace prod` reaches the cache by watch (deletionTimestamp set).
    server
        .namespace_event_of("MODIFIED", namespace_object("prod", &injected, 2, true))
        .await;
    let until = Instant::now() + Duration::from_secs(10);
    while cluster.view().namespace_terminating("prod") != Lookup::Found(true) {
        assert!(
            Instant::now() < until,
            "the Terminating state never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resp = validate(&admission, &teardown_delete("prod")).await;
    assert_eq!(resp["allowed"], true, "{resp}");

    // Not in the synced cache: missing (no GET), so not known to be Terminating: judged.
    let resp = validate(&admission, &teardown_delete("late")).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(server.gets().is_empty(), "{:?}", server.gets());
}

#[tokio::test]
async fn with_a_failing_watch_a_get_tells_a_namespace_is_terminating() {
    let injected = labels(&[("istio-injection", "enabled")]);
    let mut state = State::default();
    state
        .late_namespaces
        .insert("late".into(), injected.clone());
    state.terminating.insert("late".into());
    state.watch_fails = true;
    let server = ApiServer::start(state).await;
    let cluster = cluster_with_failing_watches(&server).await;
    assert_eq!(
        cluster.view().namespace_terminating("late"),
        Lookup::Unknown
    );
    let source: Arc<dyn ClusterSource> = cluster.clone();
    let admission = Admission::new(
        meshguard::engine::EngineHandle::new(policy("deny")),
        Metrics::new().expect("metrics"),
        source,
    );
    // Not in the cache: the direct GET answers, deletionTimestamp included.
    let resp = validate(&admission, &teardown_delete("late")).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(server.gets(), vec!["/api/v1/namespaces/late".to_owned()]);
    assert_eq!(
        cluster.view().namespace_terminating("late"),
        Lookup::Found(true)
    );
}

/// A Pod review for `namespace` with ServiceAccount `web`: reads the namespace's labels.
fn pod_review(namespace: &str, uid: usize) -> serde_json::Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": format!("u-{uid}"), "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace, "operation": "CREATE", "userInfo": {"username": "mallory"},
        "object": {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": namespace},
            "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "nginx"}]}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_reviews_for_unseen_namespaces_cost_no_gets_once_synced() {
    let mut state = State::default();
    state
        .listed_namespaces
        .insert("prod".into(), labels(&[("istio-injection", "enabled")]));
    state.listed_accounts.insert(("prod".into(), "web".into()));
    let server = ApiServer::start(state).await;
    let cluster = synced_cluster(&server, None).await;
    assert!(cluster.answers_from_cache());
    let source: Arc<dyn ClusterSource> = cluster.clone();
    let admission = Arc::new(Admission::new(
        meshguard::engine::EngineHandle::new(policy("deny")),
        Metrics::new().expect("metrics"),
        source,
    ));
    // 2,000 reviews for namespaces nobody created, 100 at a time (each waits out the watch
    // grace once): no GET, each refused (the namespace is missing, so not injected).
    let mut denied = 0;
    for batch in 0..20 {
        let mut tasks = Vec::new();
        for i in 0..100 {
            let admission = admission.clone();
            let review = pod_review(&format!("ghost-{batch}-{i}"), batch * 100 + i);
            tasks.push(tokio::spawn(
                async move { validate(&admission, &review).await },
            ));
        }
        for t in tasks {
            let resp = t.await.expect("task");
            if resp["allowed"] == false {
                denied += 1;
            }
        }
    }
    assert_eq!(denied, 2000);
    assert!(server.gets().is_empty(), "{} GETs", server.gets().len());

    // A namespace created just before its first review is found once the watch delivers it,
    // within the grace, still without a GET.
    let fresh = admission.clone();
    let review = pod_review("fresh", 1);
    let waiting = tokio::spawn(async move { validate(&fresh, &review).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    server
        .namespace_event(
            "ADDED",
            "fresh",
            &labels(&[("istio-injection", "enabled")]),
            5,
        )
        .await;
    server.account_event("ADDED", "fresh", "web", 6).await;
    let resp = waiting.await.expect("task");
    let message = resp["status"]["message"].as_str().unwrap_or("");
    assert!(
        !message.contains("not labeled for injection") && !message.contains("could not read"),
        "{resp}"
    );
    assert!(server.gets().is_empty(), "{:?}", server.gets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_gets_are_coalesced_and_rate_limited() {
    let mut state = State::default();
    state
        .late_namespaces
        .insert("late".into(), labels(&[("istio-injection", "enabled")]));
    state.slow.insert("late".into(), Duration::from_millis(300));
    state.watch_fails = true;
    let server = ApiServer::start(state).await;
    let cluster = cluster_with_failing_watches(&server).await;
    // 50 concurrent misses for one namespace share one GET.
    let key = vec![meshguard::context::LookupKey::NamespaceLabels(
        "late".into(),
    )];
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (cluster, key) = (cluster.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            cluster.prepare(&key, DEADLINE).await;
            cluster.view().namespace_labels("late")
        }));
    }
    for t in tasks {
        assert!(matches!(t.await.expect("task"), Lookup::Found(_)));
    }
    assert_eq!(server.gets(), vec!["/api/v1/namespaces/late".to_owned()]);

    // 2,000 misses for distinct namespaces: GETs stop at the burst plus the rate.
    let start = Instant::now();
    for i in 0..2000 {
        let key = vec![meshguard::context::LookupKey::NamespaceLabels(format!(
            "ghost-{i}"
        ))];
        cluster.prepare(&key, DEADLINE).await;
    }
    let gets = server.gets().len() - 1;
    let allowed = meshguard::cluster::GET_BURST
        + meshguard::cluster::GET_RATE * start.elapsed().as_secs_f64()
        + 1.0;
    assert!(
        (gets as f64) <= allowed && gets >= 40,
        "{gets} GETs in {:?} (at most {allowed})",
        start.elapsed()
    );
    // Past the rate, a miss stays unknown: onLookupFailure decides.
    assert_eq!(
        cluster.view().namespace_labels("ghost-1999"),
        Lookup::Unknown
    );
}
