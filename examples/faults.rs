//! Fault and load command: runs hostile-client and fault scenarios against the release
//! `meshguard` binary (a child process, so its peak RSS is its own) while a well-behaved client
//! keeps reviewing, and prints one table row per scenario.
//!
//! `cargo run --release --example faults` (builds `--release --bin meshguard` first).
//! Env: FAULTS_SECS (seconds per scenario, default 6), FAULTS_ONLY (comma-separated scenario
//! names), MESHGUARD_BIN (use this binary instead of building one). Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;
type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const GOOD: &str = "peerauthentication-update-strict-to-permissive.json";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> Vec<u8> {
    std::fs::read(manifest_dir().join("tests/fixtures/admission").join(GOOD)).expect("fixture")
}

/// Build (no-op when fresh) and locate the release binary; `MESHGUARD_BIN` overrides both.
fn release_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("MESHGUARD_BIN") {
        return PathBuf::from(bin);
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--bin", "meshguard"])
        .current_dir(manifest_dir())
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest_dir().join("target"));
    let bin = target.join("release/meshguard");
    assert!(bin.exists(), "{} not found", bin.display());
    bin
}

/// A CA that stays, and serving certificates signed by it on demand (for rotation).
struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let key = KeyPair::generate().expect("key");
        let cert = ca.self_signed(&key).expect("ca");
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(ca, key),
        }
    }

    /// Write a fresh serving pair atomically (rename), key first.
    fn write_leaf(&self, dir: &Path) {
        use rcgen::{CertificateParams, KeyPair};
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        for (name, text) in [("tls.key", key.serialize_pem()), ("tls.crt", cert.pem())] {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text).expect("write");
            std::fs::rename(&tmp, dir.join(name)).expect("rename");
        }
    }
}

struct Server {
    child: Child,
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Server {
    async fn start(bin: &Path, dir: &Path, extra: &[&str]) -> Server {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("a");
        let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("a");
        let child = Command::new(bin)
            .arg("serve")
            .args([
                "--listen",
                &addr.to_string(),
                "--admin-listen",
                &admin.to_string(),
            ])
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .args(["--log-level", "warn"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn meshguard");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "meshguard did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Server { child, addr, admin }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size (VmHWM) in MiB.
    fn peak_rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }

    fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("add ca");
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

/// HTTP/1.1 keep-alive client like kube-apiserver's; `fresh` opens a connection per request.
fn https_client(ca_pem: &str, fresh: bool) -> HttpsClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(ca_pem, &[]))
        .https_only()
        .enable_http1()
        .build();
    let mut b = Client::builder(TokioExecutor::new());
    if fresh {
        b.pool_max_idle_per_host(0);
    }
    b.build(connector)
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// Outcome of one review: `Ok(latency)` when 200 and denied as expected.
async fn review(
    client: &HttpsClient,
    addr: std::net::SocketAddr,
    body: Bytes,
) -> AnyResult<Duration> {
    let t = Instant::now();
    let req = http::Request::post(format!(
        "https://localhost:{}/validate?timeout=10s",
        addr.port()
    ))
    .header("content-type", "application/json")
    .body(Full::new(body))?;
    let resp = tokio::time::timeout(Duration::from_secs(15), client.request(req)).await??;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status != 200 {
        return Err(format!("status {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    if v["response"]["allowed"] != false {
        return Err(format!("unexpected verdict: {v}").into());
    }
    Ok(t.elapsed())
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    failures: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
    first_error: Mutex<Option<String>>,
}

impl Stats {
    fn record(&self, r: AnyResult<Duration>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match r {
            Ok(d) => self.latencies.lock().expect("lock").push(d),
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .expect("lock")
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
    fn p99_ms(&self) -> f64 {
        let mut l = self.latencies.lock().expect("lock").clone();
        if l.is_empty() {
            return f64::NAN;
        }
        l.sort();
        l[(l.len() * 99 / 100).min(l.len() - 1)].as_secs_f64() * 1000.0
    }
}

/// The well-behaved client: `workers` keep-alive connections plus one connection-per-request
/// worker, each reviewing back to back (10 ms apart) until `stop`.
fn spawn_load(
    addr: std::net::SocketAddr,
    ca: &str,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    workers: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let body = Bytes::from(fixture());
    (0..=workers)
        .map(|i| {
            let client = https_client(ca, i == workers);
            let (stats, stop, body) = (stats.clone(), stop.clone(), body.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    stats.record(review(&client, addr, body.clone()).await);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect()
}

struct Row {
    name: &'static str,
    requests: u64,
    failures: u64,
    p99_ms: f64,
    rss_mib: f64,
    note: String,
}

struct Ctx {
    bin: PathBuf,
    secs: u64,
    pki: Pki,
}

impl Ctx {
    fn dir(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tmp");
        self.pki.write_leaf(dir.path());
        dir
    }

    /// Start a fresh server, run `attack` while the well-behaved client reviews, report.
    async fn scenario<F, Fut>(&self, name: &'static str, extra: &[&str], attack: F) -> Row
    where
        F: FnOnce(std::net::SocketAddr, String, Duration) -> Fut,
        Fut: std::future::Future<Output = String>,
    {
        let dir = self.dir();
        let srv = Server::start(&self.bin, dir.path(), extra).await;
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let load = spawn_load(srv.addr, &self.pki.ca_pem, stats.clone(), stop.clone(), 2);
        let dur = Duration::from_secs(self.secs);
        let note = attack(srv.addr, self.pki.ca_pem.clone(), dur).await;
        stop.store(true, Ordering::Relaxed);
        for t in load {
            let _ = t.await;
        }
        let rss = srv.peak_rss_mib();
        let code = srv.stop();
        let mut note = note;
        if code != Some(0) {
            note.push_str(&format!("; exit code {code:?}"));
        }
        if let Some(e) = stats.first_error.lock().expect("lock").as_ref() {
            note.push_str(&format!("; first error: {e}"));
        }
        row(name, &stats, rss, note)
    }
}

fn row(name: &'static str, stats: &Stats, rss_mib: f64, note: String) -> Row {
    Row {
        name,
        requests: stats.requests.load(Ordering::Relaxed),
        failures: stats.failures.load(Ordering::Relaxed),
        p99_ms: stats.p99_ms(),
        rss_mib,
        note,
    }
}

async fn idle_for(d: Duration) -> String {
    tokio::time::sleep(d).await;
    "no attack".into()
}

/// Clients that send one header line per second and never finish.
async fn slowloris(addr: std::net::SocketAddr, ca: String, d: Duration, n: usize) -> String {
    let cfg = Arc::new(client_config(&ca, &[b"http/1.1"]));
    let cut_after: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let connected = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (cfg, cut_after, connected) = (cfg.clone(), cut_after.clone(), connected.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = tls_connect(addr, cfg).await else {
                return;
            };
            connected.fetch_add(1, Ordering::Relaxed);
            let start = Instant::now();
            let cut = || cut_after.lock().expect("lock").push(start.elapsed());
            let head = b"POST /validate HTTP/1.1\r\nHost: localhost\r\n";
            if s.write_all(head).await.is_err() || s.flush().await.is_err() {
                cut();
                return;
            }
            let mut buf = [0u8; 64];
            while start.elapsed() < d {
                match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                    Ok(_) => {
                        cut();
                        return;
                    }
                    Err(_) => {
                        let w = s.write_all(b"X-Trickle: a\r\n").await;
                        if w.is_err() || s.flush().await.is_err() {
                            cut();
                            return;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let cut = cut_after.lock().expect("lock").clone();
    format!(
        "{} trickling clients for up to {}s: {} cut off by the server, after {:.1}..{:.1}s",
        connected.load(Ordering::Relaxed),
        d.as_secs(),
        cut.len(),
        cut.iter().min().map_or(0.0, Duration::as_secs_f64),
        cut.iter().max().map_or(0.0, Duration::as_secs_f64),
    )
}

/// A connection from another peer than the well-behaved client (127.0.0.2, not 127.0.0.1): an
/// attacker in another pod is another address to the server, and the per-peer cap
/// (`--max-connections-per-peer`) is what keeps it from taking the apiserver's slots. From the
/// client's own address the cap would refuse the client too, which is not the attack.
async fn attacker_tcp(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 2], 0)))?;
    socket.connect(addr).await
}

/// Open `tcp` silent TCP connections and `tls` handshaken-but-silent HTTP/1.1 connections, from
/// another peer ([`attacker_tcp`]).
async fn idle_conns(
    addr: std::net::SocketAddr,
    ca: String,
    d: Duration,
    tcp: usize,
    tls: usize,
) -> String {
    let mut held_tcp = Vec::new();
    for _ in 0..tcp {
        match attacker_tcp(addr).await {
            Ok(s) => held_tcp.push(s),
            Err(_) => break,
        }
    }
    let cfg = Arc::new(client_config(&ca, &[b"http/1.1"]));
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let mut held_tls = Vec::new();
    for _ in 0..tls {
        let Ok(tcp) = attacker_tcp(addr).await else {
            break;
        };
        let name = ServerName::try_from("localhost").expect("name");
        match tokio::time::timeout(Duration::from_secs(2), connector.connect(name, tcp)).await {
            Ok(Ok(s)) => held_tls.push(s),
            _ => break,
        }
    }
    tokio::time::sleep(d).await;
    format!(
        "{} silent TCP + {} silent post-handshake connections held {}s",
        held_tcp.len(),
        held_tls.len(),
        d.as_secs()
    )
}

/// A real review padded to exactly `size` bytes.
fn review_of_size(size: usize) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture()).expect("json");
    v["request"]["object"]["metadata"]["annotations"] = serde_json::json!({"example.com/blob": ""});
    let base = serde_json::to_vec(&v).expect("json").len();
    v["request"]["object"]["metadata"]["annotations"] =
        serde_json::json!({"example.com/blob": "x".repeat(size - base)});
    serde_json::to_vec(&v).expect("json")
}

/// Rounds of `n` concurrent bodies of exactly the limit; each is judged, or refused 429 while
/// the memory budget (`--max-inflight-bytes`) is full.
async fn body_burst(addr: std::net::SocketAddr, ca: String, d: Duration, n: usize) -> String {
    let limit = meshguard::listener::DEFAULT_MAX_BODY_BYTES;
    let body = Bytes::from(review_of_size(limit));
    let over = Bytes::from(review_of_size(limit + 1));
    let stats = Arc::new(Stats::default());
    let end = Instant::now() + d;
    let mut rounds = 0;
    let mut refused = 0;
    while Instant::now() < end && rounds < 20 {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (client, body, stats) = (https_client(&ca, false), body.clone(), stats.clone());
            tasks.push(tokio::spawn(async move {
                stats.record(review(&client, addr, body).await);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let c = https_client(&ca, false);
        // Refused from its declared length: 413, or the connection closed under the client
        // while it was still sending.
        if let Err(e) = review(&c, addr, over.clone()).await {
            let e = e.to_string();
            if e.contains("413") || e.contains("roken pipe") || e.contains("reset") {
                refused += 1;
            }
        }
        rounds += 1;
    }
    let failed = stats.failures.load(Ordering::Relaxed);
    let busy = stats
        .first_error
        .lock()
        .expect("lock")
        .as_deref()
        .is_some_and(|e| e.contains("429"));
    format!(
        "{rounds} rounds of {n} x 7 MiB: {} judged, {failed} refused{}; 7 MiB + 1 refused {refused}/{rounds}",
        stats.requests.load(Ordering::Relaxed) - failed,
        if busy { " 429 (memory budget full)" } else { "" }
    )
}

/// `conns` HTTP/2 connections, each opening and instantly cancelling streams.
async fn rapid_reset(addr: std::net::SocketAddr, ca: String, d: Duration, conns: usize) -> String {
    let cfg = Arc::new(client_config(&ca, &[b"h2"]));
    let end = Instant::now() + d;
    let total = Arc::new(AtomicU64::new(0));
    let goaways = Arc::new(AtomicU64::new(0));
    let per_conn: Arc<Mutex<Vec<u64>>> = Arc::default();
    let reason: Arc<Mutex<Option<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (cfg, total, goaways) = (cfg.clone(), total.clone(), goaways.clone());
        let (per_conn, reason) = (per_conn.clone(), reason.clone());
        tasks.push(tokio::spawn(async move {
            // Reconnect whenever the server ends the connection, until time is up.
            let mut reconnects = 0;
            while Instant::now() < end && reconnects < 1000 {
                reconnects += 1;
                let Ok(tls) = tls_connect(addr, cfg.clone()).await else {
                    continue;
                };
                let Ok((mut send, conn)) = h2::client::handshake(tls).await else {
                    continue;
                };
                let driver = tokio::spawn(conn);
                let mut n = 0u64;
                while Instant::now() < end && n < 100_000 && !driver.is_finished() {
                    let ready =
                        tokio::time::timeout(Duration::from_secs(1), send.clone().ready()).await;
                    let Ok(Ok(s)) = ready else { break };
                    send = s;
                    let req = http::Request::post("https://localhost/validate")
                        .header("content-type", "application/json")
                        .body(())
                        .expect("request");
                    match send.send_request(req, false) {
                        Ok((_r, mut st)) => st.send_reset(h2::Reason::CANCEL),
                        Err(_) => break,
                    }
                    n += 1;
                }
                total.fetch_add(n, Ordering::Relaxed);
                // The driver finishes only when the server ended the connection.
                if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), driver).await {
                    goaways.fetch_add(1, Ordering::Relaxed);
                    per_conn.lock().expect("lock").push(n);
                    if let Err(e) = r {
                        reason.lock().expect("lock").get_or_insert(e.to_string());
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut p = per_conn.lock().expect("lock").clone();
    p.sort();
    format!(
        "{} streams reset from {conns} parallel clients; server ended {} connections after {}..{} resets ({})",
        total.load(Ordering::Relaxed),
        goaways.load(Ordering::Relaxed),
        p.first().copied().unwrap_or(0),
        p.last().copied().unwrap_or(0),
        reason.lock().expect("lock").clone().unwrap_or_default()
    )
}

/// `conns` HTTP/2 connections, each holding as many never-finished request streams as allowed.
async fn held_streams(addr: std::net::SocketAddr, ca: String, d: Duration, conns: usize) -> String {
    let cfg = Arc::new(client_config(&ca, &[b"h2"]));
    let held = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (cfg, held) = (cfg.clone(), held.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(tls) = tls_connect(addr, cfg).await else {
                return;
            };
            let Ok((mut send, conn)) = h2::client::handshake(tls).await else {
                return;
            };
            tokio::spawn(conn);
            let mut streams = Vec::new();
            for _ in 0..1000 {
                let ready =
                    tokio::time::timeout(Duration::from_millis(500), send.clone().ready()).await;
                let Ok(Ok(s)) = ready else { break };
                send = s;
                let req = http::Request::post("https://localhost/validate?timeout=30s")
                    .header("content-type", "application/json")
                    .body(())
                    .expect("request");
                let Ok((resp, mut st)) = send.send_request(req, false) else {
                    break;
                };
                let _ = st.send_data(Bytes::from_static(b"{\"apiVersion\":"), false);
                streams.push((resp, st));
                held.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(d).await;
            drop(streams);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    format!(
        "{} unfinished streams opened on {conns} HTTP/2 connections (the server admits 256 per connection; the client queues the rest)",
        held.load(Ordering::Relaxed)
    )
}

/// Garbage and downgrade handshakes from `workers` loops.
async fn garbage_tls(
    addr: std::net::SocketAddr,
    _ca: String,
    d: Duration,
    workers: usize,
) -> String {
    let end = Instant::now() + d;
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut seed = 0x9e37_79b9_u64 ^ w as u64;
            let mut n = 0u64;
            while Instant::now() < end && n < 200_000 {
                n += 1;
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    continue;
                };
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let len = 16 + (seed % 2048) as usize;
                let mut junk: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
                if n.is_multiple_of(2) {
                    // A record header claiming a handshake, then junk.
                    junk[..3].copy_from_slice(&[0x16, 0x03, (seed % 4) as u8]);
                }
                let _ = s.write_all(&junk).await;
                let mut buf = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    format!("{} garbage handshakes", sent.load(Ordering::Relaxed))
}

async fn cert_rotation(ctx: &Ctx) -> Row {
    let dir = ctx.dir();
    let srv = Server::start(&ctx.bin, dir.path(), &["--tls-reload-interval", "250ms"]).await;
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Two connection-per-request workers so every few requests see a new certificate.
    let mut load = spawn_load(srv.addr, &ctx.pki.ca_pem, stats.clone(), stop.clone(), 2);
    load.extend(spawn_load(
        srv.addr,
        &ctx.pki.ca_pem,
        stats.clone(),
        stop.clone(),
        0,
    ));
    let mut rotations = 0;
    let end = Instant::now() + Duration::from_secs(ctx.secs);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        ctx.pki.write_leaf(dir.path());
        rotations += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, metrics) = admin_get(srv.admin, "/metrics").await;
    let reloads = metrics
        .lines()
        .filter(|l| l.starts_with("meshguard_tls_reloads_total") && l.contains("success"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>();
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let _ = t.await;
    }
    let rss = srv.peak_rss_mib();
    srv.stop();
    let mut note = format!("{rotations} rotations (1/s), server reloaded {reloads}");
    if let Some(e) = stats.first_error.lock().expect("lock").as_ref() {
        note.push_str(&format!("; first error: {e}"));
    }
    row("cert rotation 1/s", &stats, rss, note)
}

async fn sigterm(ctx: &Ctx) -> Row {
    let dir = ctx.dir();
    let srv = Server::start(&ctx.bin, dir.path(), &[]).await;
    let stats = Arc::new(Stats::default());
    let signalled: Arc<Mutex<Option<Instant>>> = Arc::default();
    let after = Arc::new(AtomicU64::new(0));
    let body = Bytes::from(fixture());
    let mut tasks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(ctx.secs + 10);
    for i in 0..6 {
        let client = https_client(&ctx.pki.ca_pem, i % 2 == 1);
        let (stats, signalled, after, body, addr) = (
            stats.clone(),
            signalled.clone(),
            after.clone(),
            body.clone(),
            srv.addr,
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let started = Instant::now();
                let r = review(&client, addr, body.clone()).await;
                let sig = *signalled.lock().expect("lock");
                match sig {
                    // In flight before the signal: must succeed.
                    Some(s) if started >= s => {
                        if r.is_ok() {
                            after.fetch_add(1 << 32, Ordering::Relaxed); // served after
                        } else {
                            after.fetch_add(1, Ordering::Relaxed); // refused after
                        }
                        if started > s + Duration::from_secs(1) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ => stats.record(r),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(ctx.secs.min(3))).await;
    *signalled.lock().expect("lock") = Some(Instant::now());
    srv.signal("TERM");
    let rss = srv.peak_rss_mib();
    for t in tasks {
        let _ = t.await;
    }
    // After the drain, a new connection must be refused.
    let refused_new = TcpStream::connect(srv.addr).await.is_err();
    let mut child = srv.child;
    let code = tokio::task::spawn_blocking(move || child.wait().ok().and_then(|s| s.code()))
        .await
        .ok()
        .flatten();
    let a = after.load(Ordering::Relaxed);
    let mut note = format!(
        "in-flight at SIGTERM all counted; after it: {} refused, {} served; new connection refused: {refused_new}; exit {code:?}",
        a & 0xffff_ffff,
        a >> 32
    );
    if let Some(e) = stats.first_error.lock().expect("lock").as_ref() {
        note.push_str(&format!("; first error: {e}"));
    }
    row("SIGTERM under load", &stats, rss, note)
}

async fn config_reload(ctx: &Ctx) -> Row {
    let dir = ctx.dir();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "mode: enforce\n").expect("write");
    let p = policy.to_string_lossy().to_string();
    let srv = Server::start(
        &ctx.bin,
        dir.path(),
        &["--config", &p, "--config-reload-interval", "200ms"],
    )
    .await;
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(srv.addr, &ctx.pki.ca_pem, stats.clone(), stop.clone(), 2);
    let end = Instant::now() + Duration::from_secs(ctx.secs);
    let bad = [
        "mode: enforce\nrootNamespce: x\n",
        "mode: [unclosed\n",
        "mode: sometimes\n",
        "\u{0}\u{1}garbage",
        "rules:\n  no-such-rule: {action: deny}\n",
    ];
    let mut writes = 0;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Alternate the good policy (with a comment so the content differs) and a broken one.
        let text = if writes % 2 == 0 {
            bad[(writes / 2) % bad.len()].to_string()
        } else {
            format!("# rev {writes}\nmode: enforce\n")
        };
        std::fs::write(&policy, text).expect("write");
        writes += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, m) = admin_get(srv.admin, "/metrics").await;
    let get = |label: &str| {
        m.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "meshguard_config_reloads_total{{result=\"{label}\"}}"
                ))
                .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    let (ok, failed) = (get("success"), get("failure"));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let _ = t.await;
    }
    let rss = srv.peak_rss_mib();
    srv.stop();
    let mut note = format!(
        "{writes} writes (half broken): reloads ok {ok}, failed {failed}; verdicts stayed enforce"
    );
    if let Some(e) = stats.first_error.lock().expect("lock").as_ref() {
        note.push_str(&format!("; first error: {e}"));
    }
    row("config reload, bad files", &stats, rss, note)
}

async fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let Ok(resp) = client
        .get(format!("http://{addr}{path}").parse().expect("uri"))
        .await
    else {
        return (0, String::new());
    };
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bin = release_binary();
    let secs: u64 = std::env::var("FAULTS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
        .clamp(1, 60);
    let only: Option<Vec<String>> = std::env::var("FAULTS_ONLY")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_owned()).collect());
    let want = |n: &str| {
        only.as_ref()
            .is_none_or(|o| o.iter().any(|x| n.contains(x.as_str())))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ctx = Ctx {
        bin,
        secs,
        pki: Pki::new(),
    };
    // Client and server share this machine: leave headroom under the soft fd limit.
    let fds = fd_limit();
    let idle_total = fds.saturating_sub(500).min(10_000);
    println!(
        "meshguard fault/load run: {} s per scenario, soft RLIMIT_NOFILE {fds} -> {idle_total} idle connections",
        secs
    );
    let rows: Vec<Row> = rt.block_on(async {
        let mut rows = Vec::new();
        let d = Duration::from_secs(secs);
        if want("baseline") {
            rows.push(ctx.scenario("baseline", &[], |_, _, d| idle_for(d)).await);
        }
        if want("slowloris") {
            // Long enough to see the default 10 s header timeout cut them off.
            let sd = d.max(Duration::from_secs(13));
            rows.push(
                ctx.scenario("slowloris", &[], move |a, c, _| slowloris(a, c, sd, 500))
                    .await,
            );
        }
        if want("idle") {
            let tls = 1000.min(idle_total / 4);
            let tcp = idle_total - tls;
            rows.push(
                ctx.scenario("idle connections", &[], move |a, c, _| {
                    idle_conns(a, c, d, tcp, tls)
                })
                .await,
            );
        }
        if want("body") {
            rows.push(
                ctx.scenario("bodies at the limit", &[], move |a, c, _| {
                    body_burst(a, c, d, 16)
                })
                .await,
            );
        }
        if want("reset") {
            rows.push(
                ctx.scenario("h2 rapid reset", &[], move |a, c, _| {
                    rapid_reset(a, c, d, 8)
                })
                .await,
            );
        }
        if want("streams") {
            rows.push(
                ctx.scenario("h2 held streams", &[], move |a, c, _| {
                    held_streams(a, c, d, 8)
                })
                .await,
            );
        }
        if want("garbage") {
            rows.push(
                ctx.scenario("garbage TLS", &[], move |a, c, _| garbage_tls(a, c, d, 8))
                    .await,
            );
        }
        if want("rotation") {
            rows.push(cert_rotation(&ctx).await);
        }
        if want("config") {
            rows.push(config_reload(&ctx).await);
        }
        if want("sigterm") {
            rows.push(sigterm(&ctx).await);
        }
        rows
    });
    println!();
    println!(
        "| {:<26} | {:>8} | {:>8} | {:>8} | {:>13} | notes",
        "scenario", "requests", "failures", "p99 ms", "peak RSS MiB"
    );
    println!(
        "|{}|{}|{}|{}|{}|------",
        "-".repeat(28),
        "-".repeat(10),
        "-".repeat(10),
        "-".repeat(10),
        "-".repeat(15)
    );
    let mut failed = 0;
    for r in &rows {
        println!(
            "| {:<26} | {:>8} | {:>8} | {:>8.1} | {:>13.1} | {}",
            r.name, r.requests, r.failures, r.p99_ms, r.rss_mib, r.note
        );
        failed += r.failures;
    }
    if failed > 0 {
        eprintln!("{failed} well-behaved reviews failed");
        std::process::exit(1);
    }
}
