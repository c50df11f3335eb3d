//! What one request can cost: runs each scenario against a fresh child process of the release
//! `meshguard` binary (so its peak RSS is its own) and prints one line per scenario.
//!
//! `cargo run --release --example bounds` (builds `--release --bin meshguard` first).
//! Env: BOUNDS_ONLY (comma-separated scenario names), MESHGUARD_BIN (measure this binary
//! instead, e.g. an older build: flags it does not know are left out), BOUNDS_BODY_BYTES (size
//! of the large reviews; default the binary's body limit, 7 MiB). Traffic goes to 127.0.0.1
//! (and 127.0.0.2 as a second peer) only; every loop is bounded in count and time.
//!
//! Scenarios: `largest` (the largest review kube-apiserver sends: an AuthorizationPolicy UPDATE
//! at the body limit, object and oldObject each ~3.5 MB of principals), `concurrent16` (16 of
//! them at once), `list` and `list4` (one and four PeerAuthentication UPDATEs at the body limit
//! whose spec carries a long list of numbers, the shape), `healthz` (/healthz latency on
//! the admin port, idle and while 4 clients send such list reviews back to back), `message` (the answer to an
//! AuthorizationPolicy quoting 2.3 MB of principals), `slow-body` (how long a trickled body
//! holds its connection), `peer-cap` (a second peer's TLS handshake while one peer holds
//! `--max-connections` silent connections), `admin` (300 silent connections to the admin port).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Value {
    let path = manifest_dir().join("tests/fixtures/admission").join(name);
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
}

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
    target.join("release/meshguard")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Server {
    child: Child,
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
}

impl Server {
    async fn start(bin: &Path, dir: &Path, flags: &Flags, extra: &[&str]) -> Server {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("a");
        let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("a");
        let mut args: Vec<String> = Vec::new();
        let mut i = 0;
        while i < extra.len() {
            // Flags an older binary does not know are left out (with their value).
            if flags.knows(extra[i]) {
                args.push(extra[i].to_owned());
                if let Some(v) = extra.get(i + 1).filter(|v| !v.starts_with("--")) {
                    args.push((*v).to_owned());
                    i += 1;
                }
            } else if extra.get(i + 1).is_some_and(|v| !v.starts_with("--")) {
                i += 1;
            }
            i += 1;
        }
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
            .args(["--no-cluster", "--log-level", "error"])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn meshguard");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(admin).await.is_err() {
            assert!(Instant::now() < deadline, "meshguard did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Server { child, addr, admin }
    }

    fn status_kb(&self, key: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .unwrap_or(f64::NAN)
    }

    /// Peak and current resident set size, MB (10^6 bytes, as the issue reports them).
    fn rss_mb(&self) -> (f64, f64) {
        (
            self.status_kb("VmHWM:") * 1.024 / 1000.0,
            self.status_kb("VmRSS:") * 1.024 / 1000.0,
        )
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The flags the binary under test knows (from its `serve --help`).
struct Flags(String);

impl Flags {
    fn of(bin: &Path) -> Flags {
        let out = Command::new(bin)
            .args(["serve", "--help"])
            .output()
            .expect("serve --help");
        Flags(String::from_utf8_lossy(&out.stdout).into_owned())
    }
    fn knows(&self, flag: &str) -> bool {
        self.0.contains(&format!("{flag} ")) || self.0.contains(&format!("{flag}\n"))
    }
    /// The body limit the binary applies by default.
    fn body_limit(&self) -> usize {
        self.0
            .split("--max-body-bytes")
            .nth(1)
            .and_then(|rest| rest.split("[default: ").nth(1))
            .and_then(|d| d.split(']').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or(7 * 1024 * 1024)
    }
}

fn client_config(ca_pem: &str) -> rustls::ClientConfig {
    let mut cfg = bare_client_config(ca_pem);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg
}

/// Without ALPN (hyper-rustls sets its own).
fn bare_client_config(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("add ca");
    }
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn https_client(ca_pem: &str) -> HttpsClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(bare_client_config(ca_pem))
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// POST a review; (status, response bytes).
async fn post(client: &HttpsClient, addr: std::net::SocketAddr, body: Bytes) -> (u16, Bytes) {
    let req = http::Request::post(format!(
        "https://localhost:{}/validate?timeout=30s",
        addr.port()
    ))
    .header("content-type", "application/json")
    .body(Full::new(body))
    .expect("request");
    match tokio::time::timeout(Duration::from_secs(60), client.request(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
            (status, body.unwrap_or_default())
        }
        _ => (0, Bytes::new()),
    }
}

/// The largest review kube-apiserver sends, of about `size` bytes: an AuthorizationPolicy UPDATE
/// whose object and oldObject each carry half of it as principals (judged: denied for the
/// `spiffe://` prefix).
fn largest_review(size: usize) -> Bytes {
    let mut v = fixture("authorizationpolicy-create-v1-bad-principals.json");
    v["request"]["operation"] = json!("UPDATE");
    v["request"]["oldObject"] = v["request"]["object"].clone();
    let base = serde_json::to_vec(&v).expect("json").len();
    let each = size.saturating_sub(base + 1024) / 2;
    let principal = "cluster.local/ns/production/sa/frontend-0000000";
    let principals: Vec<String> = (0..each / (principal.len() + 3))
        .map(|i| format!("{}{i:07}", &principal[..principal.len() - 7]))
        .collect();
    for o in ["object", "oldObject"] {
        let source = &mut v["request"][o]["spec"]["rules"][0]["from"][0]["source"];
        let mut list = principals.clone();
        list.push("spiffe://cluster.local/ns/production/sa/frontend".into());
        source["principals"] = json!(list);
    }
    Bytes::from(serde_json::to_vec(&v).expect("json"))
}

/// A PeerAuthentication UPDATE (STRICT → PERMISSIVE) of `size` bytes whose new spec carries a
/// list of small numbers: the shape, a tree ~30 times the size of its text.
fn list_review(size: usize) -> Bytes {
    let mut v = fixture("peerauthentication-update-strict-to-permissive.json");
    v["request"]["object"]["spec"]["padding"] = json!([]);
    let base = serde_json::to_vec(&v).expect("json").len();
    let n = size.saturating_sub(base) / 2;
    v["request"]["object"]["spec"]["padding"] = json!(vec![0; n]);
    Bytes::from(serde_json::to_vec(&v).expect("json"))
}

async fn admin_get(addr: std::net::SocketAddr) -> Option<Duration> {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&out)
        .starts_with("HTTP/1.1 200")
        .then(|| t.elapsed())
}

fn pct(mut v: Vec<Duration>, p: usize) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64() * 1000.0
}

/// Read from `s` until the peer closes or answers; the time it took, or `None` after `within`.
async fn held_for<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    s: &mut S,
    within: Duration,
    trickle: Option<&[u8]>,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    while start.elapsed() < within {
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            Ok(_) => return Some(start.elapsed()),
            Err(_) => {
                if let Some(t) = trickle {
                    if s.write_all(t).await.is_err() {
                        return Some(start.elapsed());
                    }
                }
            }
        }
    }
    None
}

struct Ctx {
    bin: PathBuf,
    flags: Flags,
    dir: tempfile::TempDir,
    ca: String,
    body: usize,
}

async fn largest(ctx: &Ctx, n: usize, list: bool) -> String {
    let srv = Server::start(&ctx.bin, ctx.dir.path(), &ctx.flags, &[]).await;
    let (idle, _) = srv.rss_mb();
    let body = if list {
        list_review(ctx.body)
    } else {
        largest_review(ctx.body)
    };
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (client, body, addr) = (https_client(&ctx.ca), body.clone(), srv.addr);
        tasks.push(tokio::spawn(async move { post(&client, addr, body).await }));
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut largest_answer = 0;
    let mut verdicts = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        let (status, resp) = t.await.expect("task");
        *statuses.entry(status).or_default() += 1;
        largest_answer = largest_answer.max(resp.len());
        if let Ok(v) = serde_json::from_slice::<Value>(&resp) {
            let r = &v["response"];
            let verdict = match r["status"]["code"].as_u64() {
                Some(413) => "refused as too large".to_owned(),
                _ if r["allowed"] == false => "judged: denied".to_owned(),
                _ => "judged: allowed".to_owned(),
            };
            *verdicts.entry(verdict).or_default() += 1;
        }
    }
    let (peak, _) = srv.rss_mb();
    srv.stop();
    format!(
        "{n} x {:.2} MiB review(s): HTTP {statuses:?} {verdicts:?} (largest answer {largest_answer} B); RSS idle {idle:.1} MB, peak {peak:.1} MB",
        body.len() as f64 / 1048576.0
    )
}

async fn healthz(ctx: &Ctx) -> String {
    let srv = Server::start(&ctx.bin, ctx.dir.path(), &ctx.flags, &[]).await;
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.extend(admin_get(srv.admin).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = list_review(ctx.body.min(8 * 1024 * 1024));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, body, addr, stop) =
            (https_client(&ctx.ca), body.clone(), srv.addr, stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                post(&client, addr, body.clone()).await;
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut busy = Vec::new();
    let mut failed = 0;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        match admin_get(srv.admin).await {
            Some(d) => busy.push(d),
            None => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut reviews = 0;
    for t in load {
        reviews += t.await.unwrap_or(0);
    }
    let (peak, _) = srv.rss_mb();
    srv.stop();
    format!(
        "/healthz p50/p99 idle {:.2}/{:.2} ms; under 4 clients sending {:.1} MiB reviews ({reviews} sent): p50/p99/max {:.2}/{:.2}/{:.2} ms, {failed} failed; peak RSS {peak:.1} MB",
        pct(idle.clone(), 50),
        pct(idle, 99),
        body.len() as f64 / 1048576.0,
        pct(busy.clone(), 50),
        pct(busy.clone(), 99),
        pct(busy, 100),
    )
}

async fn message(ctx: &Ctx) -> String {
    let srv = Server::start(&ctx.bin, ctx.dir.path(), &ctx.flags, &[]).await;
    let mut v = fixture("authorizationpolicy-create-v1-bad-principals.json");
    let principals: Vec<String> = (0..23)
        .map(|i| format!("spiffe://cluster.local/ns/x/sa/{i}{}", "a".repeat(100_000)))
        .collect();
    v["request"]["object"]["spec"]["rules"][0]["from"][0]["source"]["principals"] =
        json!(principals);
    let body = Bytes::from(serde_json::to_vec(&v).expect("json"));
    let (status, resp) = post(&https_client(&ctx.ca), srv.addr, body.clone()).await;
    srv.stop();
    format!(
        "a {:.1} MB AuthorizationPolicy quoting 23 long principals: status {status}, answer {} bytes",
        body.len() as f64 / 1e6,
        resp.len()
    )
}

async fn slow_body(ctx: &Ctx) -> String {
    let srv = Server::start(&ctx.bin, ctx.dir.path(), &ctx.flags, &[]).await;
    let cfg = Arc::new(client_config(&ctx.ca));
    let tcp = TcpStream::connect(srv.addr).await.expect("connect");
    let mut s = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    // No ?timeout= (the server's own upper bound applies), then one byte every 500 ms.
    s.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
        .await
        .expect("write");
    let held = held_for(&mut s, Duration::from_secs(45), Some(b" ")).await;
    srv.stop();
    match held {
        Some(d) => format!(
            "a body trickled at 2 B/s held its connection {:.1} s",
            d.as_secs_f64()
        ),
        None => "a body trickled at 2 B/s was still held after 45 s".into(),
    }
}

async fn peer_cap(ctx: &Ctx) -> String {
    let srv = Server::start(
        &ctx.bin,
        ctx.dir.path(),
        &ctx.flags,
        &[
            "--max-connections",
            "200",
            "--max-connections-per-peer",
            "100",
        ],
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = TcpStream::connect(srv.addr).await {
            silent.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let t = Instant::now();
    let handshake = async {
        let tcp = socket.connect(srv.addr).await?;
        tokio_rustls::TlsConnector::from(Arc::new(client_config(&ctx.ca)))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
    };
    // Go's http.Transport gives a TLS handshake 10 s.
    let done = tokio::time::timeout(Duration::from_secs(10), handshake).await;
    let took = t.elapsed();
    drop(silent);
    srv.stop();
    match done {
        Ok(Ok(_)) => format!("300 silent connections from 127.0.0.1 (cap 200): 127.0.0.2's handshake took {:.0} ms", took.as_secs_f64() * 1000.0),
        _ => "300 silent connections from 127.0.0.1 (cap 200): 127.0.0.2's handshake did not finish within 10 s".into(),
    }
}

async fn admin(ctx: &Ctx) -> String {
    let srv = Server::start(&ctx.bin, ctx.dir.path(), &ctx.flags, &[]).await;
    let mut silent = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = TcpStream::connect(srv.admin).await {
            silent.push(s);
        }
    }
    let mut open_at = Vec::new();
    for wait in [1u64, 15] {
        tokio::time::sleep(Duration::from_secs(if wait == 1 { 1 } else { 14 })).await;
        let mut open = 0;
        for s in silent.iter_mut() {
            let mut b = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(5), s.read(&mut b)).await {
                Err(_) => open += 1,         // nothing to read: still open
                Ok(Ok(0)) | Ok(Err(_)) => {} // closed
                Ok(Ok(_)) => open += 1,
            }
        }
        open_at.push((wait, open));
    }
    let ok = admin_get(srv.admin).await.is_some();
    srv.stop();
    format!("300 silent admin connections: still open after {open_at:?} s; /healthz answered: {ok}")
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bin = release_binary();
    let flags = Flags::of(&bin);
    let dir = tempfile::tempdir().expect("tmp");
    let generated =
        meshguard::tls::generate(&["localhost".into(), "127.0.0.1".into()], 30).expect("certs");
    std::fs::write(dir.path().join("tls.crt"), &generated.cert_pem).expect("write");
    std::fs::write(dir.path().join("tls.key"), &generated.key_pem).expect("write");
    let body = std::env::var("BOUNDS_BODY_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| flags.body_limit());
    let ctx = Ctx {
        bin,
        flags,
        dir,
        ca: generated.ca_cert_pem,
        body,
    };
    let only: Option<Vec<String>> = std::env::var("BOUNDS_ONLY")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let run = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("binary: {}", ctx.bin.display());
    rt.block_on(async {
        if run("largest") {
            println!("largest       {}", largest(&ctx, 1, false).await);
        }
        if run("concurrent16") {
            println!("concurrent16  {}", largest(&ctx, 16, false).await);
        }
        if run("list") {
            println!("list          {}", largest(&ctx, 1, true).await);
        }
        if run("list4") {
            println!("list4         {}", largest(&ctx, 4, true).await);
        }
        if run("healthz") {
            println!("healthz       {}", healthz(&ctx).await);
        }
        if run("message") {
            println!("message       {}", message(&ctx).await);
        }
        if run("slow-body") {
            println!("slow-body     {}", slow_body(&ctx).await);
        }
        if run("peer-cap") {
            println!("peer-cap      {}", peer_cap(&ctx).await);
        }
        if run("admin") {
            println!("admin         {}", admin(&ctx).await);
        }
    });
}
