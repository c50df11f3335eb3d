//! Scale of the cluster caches: `cargo bench --bench cache`.
//!
//! 10,000 namespaces and 50,000 ServiceAccounts served by the in-process API-server test double
//! (`tests/integration/api_double.rs`, plain HTTP, the real `kube::Client` stack), then Pod
//! reviews evaluated against the warm cache. Prints the initial list+sync time, the cache's heap
//! estimate and RSS growth, and the per-review time of evaluate and of prepare + evaluate.
//! Under `cargo test --all-targets` (no `--bench` argument) it runs a small smoke pass only.

#[path = "../tests/integration/api_double.rs"]
mod api_double;

use api_double::{labels, ApiServer, State};
use kube::core::admission::Operation;
use kube::core::DynamicObject;
use meshguard::cluster::KubeCluster;
use meshguard::config::Policy;
use meshguard::context::ClusterSource;
use meshguard::engine::Engine;
use meshguard::resource::{Kind, Review};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Resident set size of this process, from /proc (Linux); 0 elsewhere.
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// An injected Pod with its own ServiceAccount (the shape of pod-create-with-istio-proxy-sidecar).
fn injected_pod(namespace: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": namespace,
            "labels": {"app": "web", "security.istio.io/tlsMode": "istio",
                "service.istio.io/canonical-name": "web"},
            "annotations": {"sidecar.istio.io/status":
                "{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"]}"}},
        "spec": {"serviceAccountName": "service-3", "serviceAccount": "service-3",
            "initContainers": [{"name": "istio-init", "image": "istio/proxyv2"}],
            "containers": [
                {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]},
                {"name": "istio-proxy", "image": "istio/proxyv2",
                    "securityContext": {"runAsUser": 1337, "runAsGroup": 1337}}]}})
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

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (namespaces, reviews) = if full { (10_000, 20_000) } else { (200, 200) };
    const ACCOUNTS_PER_NAMESPACE: usize = 5;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut state = State::default();
        for i in 0..namespaces {
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
            (namespaces, namespaces * ACCOUNTS_PER_NAMESPACE)
        );
        let rss_after = rss_bytes();

        // A controller-made Pod of a labeled namespace, injected, with its own account.
        let ns = format!("team-{:05}", namespaces / 2);
        let engine = Engine::new(Policy::default(), Default::default(), None);
        let pod: DynamicObject = serde_json::from_value(injected_pod(&ns)).expect("pod");
        let op = Operation::Create;
        let r = Review {
            kind: Kind::Pod,
            version: "v1",
            operation: &op,
            namespace: &ns,
            name: "web-0",
            object: Some(&pod),
            old_object: None,
            dry_run: false,
            created_for: None,
        };
        let t = Instant::now();
        for _ in 0..reviews {
            let e = engine.evaluate(&r, cluster.view());
            assert!(e.findings.is_empty(), "{:?}", e.findings);
        }
        let eval = t.elapsed() / reviews;
        let t = Instant::now();
        for _ in 0..reviews {
            cluster.prepare(&lookups(&r), Duration::from_secs(2)).await;
            assert!(!engine.evaluate(&r, cluster.view()).denied());
        }
        let prepared = t.elapsed() / reviews;
        assert!(server.gets().is_empty(), "warm cache: no GETs");
        println!(
            "caches: {namespaces} namespaces, {} ServiceAccounts; initial list+sync {sync:?}",
            namespaces * ACCOUNTS_PER_NAMESPACE
        );
        println!(
            "cache heap estimate {:.1} MiB; RSS growth during sync {:.1} MiB (includes the in-process test double's pages and decoding garbage)",
            cluster.cache_bytes() as f64 / (1024.0 * 1024.0),
            rss_after.saturating_sub(rss_before) as f64 / (1024.0 * 1024.0)
        );
        println!("Pod review: evaluate {eval:?}, prepare (cache hit) + evaluate {prepared:?}");
    });
}
