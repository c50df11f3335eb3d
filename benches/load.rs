//! Load benchmark over real HTTPS: meshguard vs a bare allow-all axum+rustls server.
//!
//! `cargo bench --bench load` (env: LOAD_SECS=3 per scenario, LOAD_CONNECTIONS=16, LOAD_LOG=info).
//!
//! The servers run in this process, each on its own OS thread with a single-threaded tokio
//! runtime (one server core each), behind the *same* TLS stack (`listener::serve_tls`, same
//! rustls config builder, same certificate files) and the same allocator as the binary
//! (mimalloc). meshguard serves its own admission router with the built-in policy, serve's
//! logging (discarded) and a warm cluster view (the reviews' namespace enrolled, its
//! ServiceAccounts known). The bare server answers every review with `allowed: true`, parsing
//! only the `uid` it must echo. A third server, "kube-allow", is the
//! allow-all webhook as kube-rs's admission example writes it: it decodes the whole
//! `AdmissionReview<DynamicObject>` and answers `AdmissionResponse::from(&req)`. It shows how
//! much of meshguard's cost any webhook that reads the object pays, and how much is the rules.
//! The load generator runs on a separate
//! one-worker runtime with N keep-alive connections (HTTP/1.1, as kube-apiserver uses for
//! in-cluster webhooks) or one multiplexed HTTP/2 connection, for a denied and an allowed Pod
//! review and a denied and an allowed PeerAuthentication review. Reported: reviews/s,
//! p50/p99/p99.9 latency, server CPU time per review (from the server thread's schedstat), the
//! meshguard/bare throughput ratio, and latency at a steady 1,000 reviews/s (scheduled sends,
//! latency from the scheduled time) with the meshguard/bare p99 ratio.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs a short smoke pass only.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshguard::listener::{self, Limits, Shutdown};
use meshguard::tls::{self, CertSource, CertStore};
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocator the `meshguard` binary uses, so the servers here run as shipped.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Which {
    Meshguard,
    Bare,
    KubeAllow,
}

struct Running {
    addr: std::net::SocketAddr,
    /// `/proc/<pid>/task/<tid>` of the server thread.
    task: String,
}

fn cpu_ns(task: &str) -> u64 {
    std::fs::read_to_string(format!("{task}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

#[derive(serde::Deserialize)]
struct MinimalReview<'a> {
    #[serde(borrow)]
    request: MinimalRequest<'a>,
}
#[derive(serde::Deserialize)]
struct MinimalRequest<'a> {
    uid: &'a str,
}

/// The bare server's handler: echo the uid, allow everything.
async fn bare_allow(body: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    match serde_json::from_slice::<MinimalReview>(&body) {
        Ok(r) => (
            [(http::header::CONTENT_TYPE, "application/json")],
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":{},"allowed":true}}}}"#,
                Value::String(r.request.uid.to_owned())
            ),
        )
            .into_response(),
        Err(_) => http::StatusCode::BAD_REQUEST.into_response(),
    }
}

/// The kube-rs-style allow-all handler: decode the whole review, allow, encode.
async fn kube_allow(body: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
    use kube::core::DynamicObject;
    let Ok(review) = serde_json::from_slice::<AdmissionReview<DynamicObject>>(&body) else {
        return http::StatusCode::BAD_REQUEST.into_response();
    };
    let Ok(req): Result<AdmissionRequest<DynamicObject>, _> = review.try_into() else {
        return http::StatusCode::BAD_REQUEST.into_response();
    };
    let review = AdmissionResponse::from(&req).into_review();
    match serde_json::to_vec(&review) {
        Ok(out) => ([(http::header::CONTENT_TYPE, "application/json")], out).into_response(),
        Err(_) => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn spawn_server(which: Which, cert: String, key: String) -> Running {
    let (tx, rx) = std::sync::mpsc::channel();
    // Named, so a profiler can tell the servers apart (`perf report --comm srv-meshguard`).
    let name = format!("srv-{which:?}").to_lowercase();
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let task = format!(
                "/proc/{}",
                std::fs::read_link("/proc/thread-self")
                    .expect("thread-self")
                    .display()
            );
            let addr = match which {
                Which::Bare | Which::KubeAllow | Which::Meshguard => {
                    let store = CertStore::new(
                        CertSource::Files {
                            cert: cert.into(),
                            key: key.into(),
                        },
                        None,
                    )
                    .expect("certs");
                    let config = tls::server_config(store, None).expect("tls");
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    let addr = listener.local_addr().expect("addr");
                    let router =
                        match which {
                            Which::Bare => axum::Router::new()
                                .route("/validate", axum::routing::post(bare_allow)),
                            Which::KubeAllow => axum::Router::new()
                                .route("/validate", axum::routing::post(kube_allow)),
                            Which::Meshguard => meshguard_router(),
                        };
                    let (stop, shutdown) = Shutdown::new();
                    std::mem::forget(stop);
                    tokio::spawn(listener::serve_tls(
                        listener,
                        config,
                        router,
                        Arc::new(Limits::default()),
                        shutdown,
                    ));
                    addr
                }
            };
            tx.send(Running { addr, task }).expect("send");
            std::future::pending::<()>().await;
        });
    });
    spawned.expect("server thread");
    rx.recv().expect("server started")
}

/// meshguard's admission router, as `serve` builds it, over a warm cluster view: the
/// captured reviews' namespace `production` enrolled for injection and its ServiceAccounts, as
/// synced watch caches would hold them.
fn meshguard_router() -> axum::Router {
    use meshguard::admission::Admission;
    use meshguard::engine::{Engine, EngineHandle};
    let cluster = meshguard::inventory::Inventory::complete(Vec::new())
        .with_namespace("production", &[("istio-injection", "enabled")])
        .with_service_account("production", "frontend")
        .with_service_account("production", "backend");
    let admission = Admission::new(
        EngineHandle::new(Engine::new(
            meshguard::config::Policy::builtin(),
            Default::default(),
            None,
        )),
        meshguard::metrics::Metrics::new().expect("metrics"),
        Arc::new(cluster),
    );
    meshguard::http::admission_router(meshguard::http::AppState {
        admission: Arc::new(admission),
        listening: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        limits: Arc::new(Limits::default()),
    })
}

struct Stats {
    reviews: usize,
    errors: usize,
    secs: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    cpu_us_per_review: f64,
}

async fn drive(
    ca_pem: &str,
    server: &Running,
    h2: bool,
    body: Bytes,
    conns: usize,
    secs: f64,
    rate: Option<f64>,
) -> Stats {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("pem")).expect("ca");
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Go's net/http (kube-apiserver) sets TCP_NODELAY; so do we.
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(cfg)
        .https_only();
    let connector = if h2 {
        b.enable_http2().wrap_connector(http)
    } else {
        b.enable_http1().wrap_connector(http)
    };
    let mut cb = Client::builder(TokioExecutor::new());
    cb.http2_only(h2).pool_max_idle_per_host(conns);
    let client: Client<_, Full<Bytes>> = cb.build(connector);
    let uri: http::Uri = format!(
        "https://localhost:{}/validate?timeout=10s",
        server.addr.port()
    )
    .parse()
    .expect("uri");

    // With `rate`, each connection sends on a fixed schedule (rate / conns per second) and a
    // review's latency counts from its scheduled time, so a slow server is not hidden by
    // the client waiting for it (no coordinated omission).
    let interval = rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
    let run = |dur: Duration| {
        let mut tasks = Vec::new();
        for c in 0..conns {
            let (client, uri, body) = (client.clone(), uri.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                let mut errors = 0;
                let start = Instant::now();
                let end = start + dur;
                let mut sent = 0u32;
                while Instant::now() < end {
                    let req = http::Request::post(uri.clone())
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()))
                        .expect("req");
                    let t = match interval {
                        Some(every) => {
                            // Spread the connections over one interval.
                            let at = start + every * sent + every * c as u32 / conns as u32;
                            sent += 1;
                            tokio::time::sleep_until(at.into()).await;
                            at
                        }
                        None => Instant::now(),
                    };
                    match client.request(req).await {
                        Ok(r) if r.status() == 200 => match r.into_body().collect().await {
                            Ok(_) => lat.push(t.elapsed().as_nanos() as u64),
                            Err(_) => errors += 1,
                        },
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        tasks
    };
    // Warm up: connections established, caches hot.
    for t in run(Duration::from_millis(300)) {
        let _ = t.await;
    }
    let cpu0 = cpu_ns(&server.task);
    let t0 = Instant::now();
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in run(Duration::from_secs_f64(secs)) {
        let (l, e) = t.await.expect("task");
        lat.extend(l);
        errors += e;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_ns(&server.task).saturating_sub(cpu0);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Stats {
        reviews: lat.len(),
        errors,
        secs: elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
        cpu_us_per_review: if lat.is_empty() {
            0.0
        } else {
            cpu as f64 / 1000.0 / lat.len() as f64
        },
    }
}

fn payload(name: &str) -> Bytes {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    let v: Value = serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    Bytes::from(serde_json::to_vec(&v).expect("compact"))
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let full = std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 3.0 } else { 0.2 });
    let conns: usize = std::env::var("LOAD_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    // Realistic logging cost: serve's subscriber at info level (the denied reviews' log line,
    // through the non-blocking writer), output discarded. LOAD_LOG=warn measures without it.
    let level = std::env::var("LOAD_LOG").unwrap_or_else(|_| "info".to_owned());
    let _logging =
        meshguard::logging::init_to(meshguard::logging::LogFormat::Text, &level, std::io::sink());

    let dir = tempfile::tempdir().expect("tmp");
    let g = tls::generate(&["localhost".into(), "127.0.0.1".into()], 30).expect("certs");
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, &g.cert_pem).expect("w");
    std::fs::write(&key, &g.key_pem).expect("w");
    let (c, k) = (
        cert.to_string_lossy().to_string(),
        key.to_string_lossy().to_string(),
    );
    let mg = spawn_server(Which::Meshguard, c.clone(), k.clone());
    let bare = spawn_server(Which::Bare, c.clone(), k.clone());
    let kube_allow = spawn_server(Which::KubeAllow, c, k);

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    // Denied and allowed reviews of the two kinds the webhook sees most.
    let payloads: Vec<(&str, Bytes)> = if full {
        vec![
            ("pod denied", payload("pod-create-by-replicaset.json")),
            (
                "pod allowed",
                payload("pod-create-with-istio-proxy-sidecar.json"),
            ),
            (
                "pa denied",
                payload("peerauthentication-update-strict-to-permissive.json"),
            ),
            (
                "pa allowed",
                payload("peerauthentication-create-v1beta1.json"),
            ),
        ]
    } else {
        vec![("pod denied", payload("pod-create-by-replicaset.json"))]
    };
    println!(
        "load: {conns} connections (h1) / streams (h2), {secs}s per scenario, one server core each"
    );
    println!(
        "{:<20} {:<5} {:<10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "payload",
        "proto",
        "server",
        "reviews/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "cpu µs/rv",
        "errors"
    );
    let mut total_errors = 0;
    for (name, body) in &payloads {
        for h2 in [false, true] {
            let proto = if h2 { "h2" } else { "h1" };
            let mut rates = [0.0; 3];
            for (i, (which, server)) in [
                (Which::Meshguard, &mg),
                (Which::Bare, &bare),
                (Which::KubeAllow, &kube_allow),
            ]
            .into_iter()
            .enumerate()
            {
                let s = client_rt.block_on(drive(
                    &g.ca_cert_pem,
                    server,
                    h2,
                    body.clone(),
                    conns,
                    secs,
                    None,
                ));
                let label = match which {
                    Which::Meshguard => "meshguard",
                    Which::Bare => "bare",
                    Which::KubeAllow => "kube-allow",
                };
                let rate = s.reviews as f64 / s.secs;
                rates[i] = rate;
                total_errors += s.errors;
                println!(
                    "{:<20} {:<5} {:<10} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>10.1} {:>7}",
                    format!("{name} ({}B)", body.len()),
                    proto,
                    label,
                    rate,
                    s.p50,
                    s.p99,
                    s.p999,
                    s.cpu_us_per_review,
                    s.errors
                );
            }
            println!(
                "{:<20} {:<5} ratio meshguard/bare throughput: {:.2} (meshguard/kube-allow: {:.2})",
                "",
                proto,
                rates[0] / rates[1].max(1.0),
                rates[0] / rates[2].max(1.0)
            );
        }
    }
    // Latency at a steady 1,000 reviews/s (kube-apiserver's load on a busy cluster), HTTP/1.1,
    // 8 connections: the denied Pod review.
    let (name, body) = &payloads[0];
    let mut p99 = [0.0; 2];
    for (i, (label, server)) in [("meshguard", &mg), ("bare", &bare)]
        .into_iter()
        .enumerate()
    {
        let s = client_rt.block_on(drive(
            &g.ca_cert_pem,
            server,
            false,
            body.clone(),
            8,
            secs,
            Some(1000.0),
        ));
        total_errors += s.errors;
        p99[i] = s.p99;
        println!(
            "{:<20} {:<5} {:<10} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>10.1} {:>7}",
            format!("{name} @1k/s"),
            "h1",
            label,
            s.reviews as f64 / s.secs,
            s.p50,
            s.p99,
            s.p999,
            s.cpu_us_per_review,
            s.errors
        );
    }
    println!(
        "{:<20} {:<5} ratio meshguard/bare p99 at 1k/s: {:.2}",
        "",
        "h1",
        p99[0] / p99[1].max(1.0)
    );
    if total_errors > 0 {
        eprintln!("load: {total_errors} failed reviews");
        std::process::exit(1);
    }
}
