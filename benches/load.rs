//! Load benchmark over real HTTPS: the `meshguard` binary as it ships vs a bare allow-all
//! axum+rustls server, alternating, on the same certificate and the same server core.
//!
//! `cargo bench --bench load` (env: `LOAD_SECS=3` per scenario, `LOAD_CONNECTIONS=25`,
//! `LOAD_ROUNDS=1`, `LOAD_LOG=info`, `LOAD_CLIENT=h2load|builtin`, `LOAD_SERVER_CPU`,
//! `LOAD_SERVE_ENV="K=V …"` for meshguard's environment, `LOAD_MESHGUARD_BIN` for another build,
//! `LOAD_ONLY=pod` to run only payloads
//! whose name contains it).
//!
//! What a deployment runs, and so what this measures:
//!
//! * **meshguard** is the release binary (`CARGO_BIN_EXE_meshguard`, the bench profile inherits
//!   `release`) started as `meshguard serve --no-cluster`: its own runtime, its own allocator
//!   options (serve re-executes itself with mimalloc's `arena_eager_commit=0`,
//!   `purge_delay=100`), its log at info level written to a file by its log thread, its admin
//!   listener and metrics. Without a cluster, the rules that read namespace labels take the
//!   `onLookupFailure` branch (the denied Pod review names `namespace labels unknown`).
//! * **bare** and **kube-allow** are this executable re-run with `LOAD_ROLE=bare|kube-allow`:
//!   the same TLS stack (`listener::serve_tls`, `tls::server_config`, the same certificate
//!   files), the same allocator and the same multi-threaded runtime as `serve`. Bare answers
//!   every review `allowed: true`, parsing only the `uid` it must echo; kube-allow is the
//!   allow-all webhook as kube-rs's admission example writes it (it decodes the whole
//!   `AdmissionReview<DynamicObject>`), what any webhook that reads the object pays.
//! * Every server process is pinned to one core (`taskset -c LOAD_SERVER_CPU`, default the last
//!   one), so its log thread, runtime and allocator share that core as they would in a pod with
//!   a one-CPU limit; the load generator runs on the other cores (the bench re-executes itself
//!   under `taskset`). CPU time per review is the whole server process's (all its threads).
//! * The load generator is `h2load` (nghttp2) when it is installed, else the built-in hyper
//!   client (`LOAD_CLIENT` chooses). The built-in client on one core costs about as much per
//!   request as the bare server, so against bare it measures itself: the bare server's rate was
//!   capped by the client and every ratio read high. Its fixed-rate latency counted tokio's
//!   timer slack (~1 ms) as server latency, which hid the p99 difference (1.02×); it now counts
//!   from the scheduled time only when the connection was still busy then (no coordinated
//!   omission), else from the actual send.
//!
//! Scenarios: 25 keep-alive HTTP/1.1 connections (as kube-apiserver uses for in-cluster
//! webhooks) and one HTTP/2 connection with 25 streams, for a denied and an allowed Pod review
//! and a denied and an allowed PeerAuthentication review (each verdict checked before it is
//! measured); then a steady 1,000 reviews/s over 8 HTTP/1.1 connections (the denied Pod review)
//! for the p99 ratio. Reported: reviews/s, p50/p99/p99.9 latency, server CPU µs per review and
//! the meshguard/bare ratios (one line per round; `LOAD_ROUNDS` alternates the servers again).
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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocator the `meshguard` binary uses, so the bare servers run as it does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Which {
    Meshguard,
    Bare,
    KubeAllow,
}

impl Which {
    fn label(self) -> &'static str {
        match self {
            Which::Meshguard => "meshguard",
            Which::Bare => "bare",
            Which::KubeAllow => "kube-allow",
        }
    }
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

/// `LOAD_ROLE=bare|kube-allow`: this process is one of the comparison servers, run as `serve`
/// runs (a multi-threaded runtime: one worker on a one-core affinity), until killed.
fn serve_role(role: &str) {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let (cert, key, listen) = (
        env("LOAD_TLS_CERT"),
        env("LOAD_TLS_KEY"),
        env("LOAD_LISTEN"),
    );
    let router = match role {
        "bare" => axum::Router::new().route("/validate", axum::routing::post(bare_allow)),
        "kube-allow" => axum::Router::new().route("/validate", axum::routing::post(kube_allow)),
        other => panic!("unknown LOAD_ROLE {other}"),
    };
    // Gone with the bench: its end of our stdin closes when it exits, however it exits.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = CertStore::new(
            CertSource::Files {
                cert: cert.into(),
                key: key.into(),
            },
            None,
        )
        .expect("certs");
        let config = tls::server_config(store, None).expect("tls");
        let listener = tokio::net::TcpListener::bind(listen.as_str())
            .await
            .expect("bind");
        let (stop, shutdown) = Shutdown::new();
        std::mem::forget(stop);
        listener::serve_tls(
            listener,
            config,
            router,
            Arc::new(Limits::default()),
            shutdown,
        )
        .await;
    });
}

/// A server process, killed when dropped.
struct Server {
    which: Which,
    addr: SocketAddr,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// CPU time of every thread of the process so far, in nanoseconds.
    fn cpu_ns(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum()
    }
}

/// A free loopback port (bound, read, released).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// `taskset -c CPUS program`, or the program itself when there is no affinity to set.
fn pinned(cpus: Option<&str>, program: &Path) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(program);
            c
        }
        None => Command::new(program),
    }
}

struct Setup {
    cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
    server_cpu: Option<String>,
    log_level: String,
}

fn spawn(which: Which, setup: &Setup) -> Server {
    let addr = free_addr();
    let mut cmd = match which {
        Which::Meshguard => {
            // LOAD_MESHGUARD_BIN: another build of the binary (before/after comparisons).
            let bin = std::env::var_os("LOAD_MESHGUARD_BIN").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_meshguard")),
                PathBuf::from,
            );
            let mut c = pinned(setup.server_cpu.as_deref(), &bin);
            c.arg("serve")
                .arg("--no-cluster")
                .arg("--tls-cert")
                .arg(&setup.cert)
                .arg("--tls-key")
                .arg(&setup.key)
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--admin-listen")
                .arg(free_addr().to_string())
                .arg("--log-level")
                .arg(&setup.log_level);
            // Its log goes to a file, as a container runtime writes stderr to one.
            let log = std::fs::File::create(setup.dir.join("meshguard.log")).expect("log file");
            c.stderr(log);
            c
        }
        Which::Bare | Which::KubeAllow => {
            let exe = std::env::current_exe().expect("current exe");
            let mut c = pinned(setup.server_cpu.as_deref(), &exe);
            c.env(
                "LOAD_ROLE",
                if which == Which::Bare {
                    "bare"
                } else {
                    "kube-allow"
                },
            )
            .env("LOAD_TLS_CERT", &setup.cert)
            .env("LOAD_TLS_KEY", &setup.key)
            .env("LOAD_LISTEN", addr.to_string())
            .stdin(Stdio::piped());
            c
        }
    };
    // Not meshguard's own MIMALLOC_* choices from the environment of the bench.
    cmd.env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
        .env_remove("MIMALLOC_PURGE_DELAY")
        .stdout(Stdio::null());
    if which == Which::Meshguard {
        cmd.stdin(Stdio::null());
        // LOAD_SERVE_ENV="K=V K=V": extra environment for meshguard (e.g. mimalloc's options).
        for kv in std::env::var("LOAD_SERVE_ENV")
            .unwrap_or_default()
            .split_whitespace()
        {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    let mut child = cmd.spawn().expect("server process");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{} exited before listening: {status}", which.label());
        }
        assert!(
            Instant::now() < deadline,
            "{} never listened",
            which.label()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { which, addr, child }
}

struct Stats {
    reviews: usize,
    errors: usize,
    secs: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    /// Server CPU (all its threads) per review, µs.
    cpu_us: f64,
}

fn percentile(sorted_us: &[f64], p: f64) -> f64 {
    sorted_us
        .get(((sorted_us.len() as f64 * p) as usize).min(sorted_us.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

fn stats(mut lat_us: Vec<f64>, errors: usize, secs: f64, cpu_ns: u64) -> Stats {
    lat_us.sort_unstable_by(f64::total_cmp);
    Stats {
        cpu_us: cpu_ns as f64 / 1000.0 / lat_us.len().max(1) as f64,
        reviews: lat_us.len(),
        errors,
        secs,
        p50: percentile(&lat_us, 0.50),
        p99: percentile(&lat_us, 0.99),
        p999: percentile(&lat_us, 0.999),
    }
}

/// How the load is offered.
#[derive(Clone, Copy)]
struct Load {
    h2: bool,
    /// HTTP/1.1: keep-alive connections; HTTP/2: streams on one connection.
    conns: usize,
    secs: f64,
    /// Reviews per second in all, spread evenly; `None`: as fast as the server answers.
    rate: Option<f64>,
}

/// The built-in generator: hyper + rustls on a one-worker runtime.
type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn https_client(ca_pem: &str, h2: bool, conns: usize) -> HttpsClient {
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
    cb.build(connector)
}

fn uri(server: &Server) -> http::Uri {
    format!(
        "https://localhost:{}/validate?timeout=10s",
        server.addr.port()
    )
    .parse()
    .expect("uri")
}

/// One review through the built-in client: is it allowed?
async fn verdict(ca_pem: &str, server: &Server, body: Bytes) -> Option<bool> {
    let client = https_client(ca_pem, false, 1);
    let req = http::Request::post(uri(server))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .ok()?;
    let r = client.request(req).await.ok()?;
    let bytes = r.into_body().collect().await.ok()?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.pointer("/response/allowed").and_then(Value::as_bool)
}

async fn drive_builtin(ca_pem: &str, server: &Server, body: Bytes, load: Load) -> Stats {
    let client = https_client(ca_pem, load.h2, load.conns);
    let uri = uri(server);
    let conns = load.conns;
    let interval = load.rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
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
                            if Instant::now() >= at {
                                // Still busy with the last review at its scheduled time: the
                                // server is behind, count from the schedule.
                                at
                            } else {
                                // On time: tokio's timer wakes up to a millisecond late, which
                                // is the client's delay, not the server's.
                                tokio::time::sleep_until(at.into()).await;
                                Instant::now()
                            }
                        }
                        None => Instant::now(),
                    };
                    match client.request(req).await {
                        Ok(r) if r.status() == 200 => match r.into_body().collect().await {
                            Ok(_) => lat.push(t.elapsed().as_nanos() as f64 / 1000.0),
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
    let cpu0 = server.cpu_ns();
    let t0 = Instant::now();
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in run(Duration::from_secs_f64(load.secs)) {
        let (l, e) = t.await.expect("task");
        lat.extend(l);
        errors += e;
    }
    let secs = t0.elapsed().as_secs_f64();
    stats(lat, errors, secs, server.cpu_ns().saturating_sub(cpu0))
}

/// `h2load` (nghttp2) for `secs`, with per-request lines written to `log`.
fn h2load(
    server: &Server,
    body_file: &Path,
    load: Load,
    secs: f64,
    client_cpus: Option<&str>,
    log: &Path,
) -> std::process::Output {
    let _ = std::fs::remove_file(log);
    let mut cmd = pinned(client_cpus, Path::new("h2load"));
    if load.h2 {
        cmd.args(["-c1", &format!("-m{}", load.conns)]);
    } else {
        cmd.args(["--h1", &format!("-c{}", load.conns), "-m1"]);
    }
    if let Some(rate) = load.rate {
        let per_client = rate / if load.h2 { 1.0 } else { load.conns as f64 };
        cmd.arg(format!("--rps={per_client}"));
    }
    cmd.arg(format!("-D{secs}"))
        .arg("-d")
        .arg(body_file)
        .args(["-H", "content-type: application/json"])
        .arg(format!("--log-file={}", log.display()))
        .arg(format!(
            "https://127.0.0.1:{}/validate?timeout=10s",
            server.addr.port()
        ))
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    cmd.output().expect("h2load")
}

/// h2load: a 0.5 s warm-up run, then the measured one; latencies from its `--log-file`.
fn drive_h2load(
    server: &Server,
    body_file: &Path,
    load: Load,
    client_cpus: Option<&str>,
    dir: &Path,
) -> Stats {
    let log = dir.join("h2load.log");
    h2load(server, body_file, load, 0.5, client_cpus, &log);
    let cpu0 = server.cpu_ns();
    let out = h2load(server, body_file, load, load.secs, client_cpus, &log);
    let cpu = server.cpu_ns().saturating_sub(cpu0);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut errors = 0;
    for line in text.lines() {
        // "requests: 34274 total, 34274 started, 34274 done, 34274 succeeded, 0 failed, 0 errored, 0 timeout"
        if let Some(rest) = line.strip_prefix("requests:") {
            for part in rest.split(',') {
                let mut w = part.split_whitespace();
                if let (Some(n), Some("failed" | "errored" | "timeout")) = (w.next(), w.next()) {
                    errors += n.parse::<usize>().unwrap_or(0);
                }
            }
        }
    }
    // One line per request: start (µs since the epoch), status, µs until the response's end.
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let mut lat = Vec::new();
    for line in logged.lines() {
        let mut cols = line.split('\t');
        let (_, status, us) = (cols.next(), cols.next(), cols.next());
        match (status, us.and_then(|u| u.trim().parse::<f64>().ok())) {
            (Some("200"), Some(us)) => lat.push(us),
            _ => errors += 1,
        }
    }
    if !out.status.success() || lat.is_empty() {
        eprintln!("h2load failed: {}", text.trim());
        errors += 1;
    }
    stats(lat, errors, load.secs, cpu)
}

fn payload(name: &str) -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    let v: Value = serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    Bytes::from(serde_json::to_vec(&v).expect("compact"))
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn has_h2load() -> bool {
    Command::new("h2load")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The server core and the client's cores: the last CPU for the servers, the others for the
/// client; `None` when there is one CPU or no `taskset`.
fn cpus() -> (Option<String>, Option<String>) {
    if std::env::var_os("LOAD_PINNED").is_some() {
        // Re-run under taskset: the choice made before it (this process sees only its own cores).
        return (
            std::env::var("LOAD_SERVER_CPU").ok(),
            std::env::var("LOAD_CLIENT_CPUS").ok(),
        );
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n < 2 || !has_taskset() {
        return (None, None);
    }
    let server: usize = env_or("LOAD_SERVER_CPU", n - 1).min(n - 1);
    let client: Vec<String> = (0..n)
        .filter(|c| *c != server)
        .map(|c| c.to_string())
        .collect();
    (Some(server.to_string()), Some(client.join(",")))
}

fn main() {
    if let Ok(role) = std::env::var("LOAD_ROLE") {
        return serve_role(&role);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let full = std::env::args().any(|a| a == "--bench");
    let (server_cpu, client_cpus) = cpus();
    // The client (this process, h2load) off the server core.
    if let (Some(cpus), None) = (&client_cpus, std::env::var_os("LOAD_PINNED")) {
        let exe = std::env::current_exe().expect("current exe");
        let status = pinned(Some(cpus), &exe)
            .args(std::env::args_os().skip(1))
            .env("LOAD_PINNED", "1")
            .env("LOAD_SERVER_CPU", server_cpu.as_deref().unwrap_or_default())
            .env("LOAD_CLIENT_CPUS", cpus)
            .status()
            .expect("re-run under taskset");
        std::process::exit(status.code().unwrap_or(1));
    }
    let secs: f64 = env_or("LOAD_SECS", if full { 3.0 } else { 0.2 });
    let conns: usize = env_or("LOAD_CONNECTIONS", 25);
    let rounds: usize = env_or("LOAD_ROUNDS", 1).max(1);
    let use_h2load = match std::env::var("LOAD_CLIENT").as_deref() {
        Ok("builtin") => false,
        Ok("h2load") => true,
        _ => full && has_h2load(),
    };

    let dir = tempfile::tempdir().expect("tmp");
    let g = tls::generate(&["localhost".into(), "127.0.0.1".into()], 30).expect("certs");
    let setup = Setup {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
        dir: dir.path().to_path_buf(),
        server_cpu: server_cpu.clone(),
        log_level: std::env::var("LOAD_LOG").unwrap_or_else(|_| "info".to_owned()),
    };
    std::fs::write(&setup.cert, &g.cert_pem).expect("w");
    std::fs::write(&setup.key, &g.key_pem).expect("w");
    let mg = spawn(Which::Meshguard, &setup);
    let bare = spawn(Which::Bare, &setup);
    let kube = spawn(Which::KubeAllow, &setup);
    let servers: Vec<&Server> = if full {
        vec![&mg, &bare, &kube]
    } else {
        vec![&mg, &bare]
    };

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    // Denied and allowed reviews of the two kinds the webhook sees most: (name, body, allowed).
    let payloads: Vec<(&str, Bytes, bool)> = if full {
        vec![
            (
                "pod denied",
                payload("pod-create-by-replicaset.json"),
                false,
            ),
            (
                "pod allowed",
                payload("pod-create-with-istio-proxy-sidecar.json"),
                true,
            ),
            (
                "pa denied",
                payload("peerauthentication-update-strict-to-permissive.json"),
                false,
            ),
            (
                "pa allowed",
                payload("peerauthentication-create-v1beta1.json"),
                true,
            ),
        ]
    } else {
        vec![(
            "pod denied",
            payload("pod-create-by-replicaset.json"),
            false,
        )]
    };
    println!(
        "load: {conns} connections (h1) / streams on one connection (h2), {secs}s per scenario, \
         client {}, servers on cpu {} (client on {})",
        if use_h2load { "h2load" } else { "built-in" },
        server_cpu.as_deref().unwrap_or("any"),
        client_cpus.as_deref().unwrap_or("any"),
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
    let run = |server: &Server, body: &Bytes, body_file: &Path, load: Load| -> Stats {
        if use_h2load {
            drive_h2load(server, body_file, load, client_cpus.as_deref(), dir.path())
        } else {
            client_rt.block_on(drive_builtin(&g.ca_cert_pem, server, body.clone(), load))
        }
    };
    let print = |label: String, proto: &str, server: &Server, s: &Stats| {
        println!(
            "{:<20} {:<5} {:<10} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>10.1} {:>7}",
            label,
            proto,
            server.which.label(),
            s.reviews as f64 / s.secs,
            s.p50,
            s.p99,
            s.p999,
            s.cpu_us,
            s.errors
        );
    };
    let only = std::env::var("LOAD_ONLY").unwrap_or_default();
    for (name, body, allowed) in payloads.iter().filter(|p| p.0.contains(only.as_str())) {
        let body_file = dir.path().join(format!("{}.json", name.replace(' ', "-")));
        std::fs::write(&body_file, body).expect("w");
        let got = client_rt.block_on(verdict(&g.ca_cert_pem, &mg, body.clone()));
        assert_eq!(got, Some(*allowed), "{name}: meshguard's verdict");
        for h2 in [false, true] {
            let proto = if h2 { "h2" } else { "h1" };
            let load = Load {
                h2,
                conns,
                secs,
                rate: None,
            };
            for _ in 0..rounds {
                let mut rates = [0.0; 3];
                for (i, server) in servers.iter().enumerate() {
                    let s = run(server, body, &body_file, load);
                    rates[i] = s.reviews as f64 / s.secs;
                    total_errors += s.errors;
                    print(format!("{name} ({}B)", body.len()), proto, server, &s);
                }
                let vs_kube = match servers.len() {
                    3 => format!(
                        " (meshguard/kube-allow: {:.2})",
                        rates[0] / rates[2].max(1.0)
                    ),
                    _ => String::new(),
                };
                println!(
                    "{:<20} {:<5} ratio meshguard/bare throughput: {:.2}{vs_kube}",
                    "",
                    proto,
                    rates[0] / rates[1].max(1.0),
                );
            }
        }
    }
    // Latency at a steady 1,000 reviews/s (kube-apiserver's load on a busy cluster), HTTP/1.1,
    // 8 connections: the denied Pod review.
    let (name, body, _) = &payloads[0];
    let body_file = dir.path().join("steady.json");
    std::fs::write(&body_file, body).expect("w");
    let load = Load {
        h2: false,
        conns: 8,
        secs,
        rate: Some(1000.0),
    };
    for _ in 0..rounds {
        let mut p99 = [0.0; 2];
        for (i, server) in [&mg, &bare].into_iter().enumerate() {
            let s = run(server, body, &body_file, load);
            total_errors += s.errors;
            p99[i] = s.p99;
            print(format!("{name} @1k/s"), "h1", server, &s);
        }
        println!(
            "{:<20} {:<5} ratio meshguard/bare p99 at 1k/s: {:.2}",
            "",
            "h1",
            p99[0] / p99[1].max(1.0)
        );
    }
    drop(servers);
    drop((mg, bare, kube));
    if total_errors > 0 {
        eprintln!("load: {total_errors} failed reviews");
        std::process::exit(1);
    }
}
