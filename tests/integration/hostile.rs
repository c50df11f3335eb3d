//! Hostile clients, cheap and deterministic: slowloris, idle connections, bodies at the limit,
//! HTTP/2 rapid reset, TLS downgrade / weak-suite handshakes, client certificates, and what the
//! logs may contain. A well-behaved client must keep being served throughout.
//! The long, measured versions are in `examples/faults.rs`.

use crate::common;

use crate::common::*;
use rustls::pki_types::ServerName;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GOOD: &str = "peerauthentication-update-strict-to-permissive.json";

/// One well-behaved review; returns its latency. Panics unless it is answered 200.
async fn probe(srv: &TestServer, client: &HttpsClient) -> Duration {
    let t = Instant::now();
    let reply = post(client, srv.started.addr, "/validate", fixture(GOOD)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["response"]["allowed"], false);
    t.elapsed()
}

/// Probe every 50 ms until `until` resolves; return the slowest probe.
async fn probe_during<F: std::future::Future>(srv: &TestServer, until: F) -> (Duration, F::Output) {
    let client = common::client(&srv.ca_pem, false);
    tokio::pin!(until);
    let mut worst = Duration::ZERO;
    loop {
        tokio::select! {
            out = &mut until => return (worst, out),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                worst = worst.max(probe(srv, &client).await);
            }
        }
    }
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    cfg: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// Read until the peer closes or sends something; `true` when it closed/answered in `within`.
async fn server_gives_up<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    s: &mut S,
    within: Duration,
    trickle: Option<&[u8]>,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    while start.elapsed() < within {
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(_) => return Some(start.elapsed()), // EOF, error, or a final response
            Err(_) => {
                if let Some(t) = trickle {
                    if s.write_all(t).await.is_err() || s.flush().await.is_err() {
                        return Some(start.elapsed());
                    }
                }
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_off_at_the_header_timeout() {
    let srv = start(&["--header-timeout", "1s"]).await;
    let addr = srv.started.addr;
    let ca = srv.ca_pem.clone();
    let attack = async move {
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let cfg = client_config(&ca, &[b"http/1.1"]);
            tasks.push(tokio::spawn(async move {
                let mut s = tls_connect(addr, cfg).await.expect("handshake");
                s.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\n")
                    .await
                    .expect("write");
                // One header line every 200 ms: never finishes on its own.
                server_gives_up(&mut s, Duration::from_secs(8), Some(b"X-Trickle: a\r\n")).await
            }));
        }
        let mut cut = Vec::new();
        for t in tasks {
            cut.push(t.await.expect("task"));
        }
        cut
    };
    let (worst, cut) = probe_during(&srv, attack).await;
    for c in &cut {
        let c = c.expect("a trickling client must be cut off");
        assert!(c < Duration::from_secs(4), "cut off after {c:?}");
    }
    assert!(worst < Duration::from_secs(2), "slowest probe {worst:?}");
    srv.started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_the_cap_recovers() {
    // 64 silent TCP connections against a cap of 32: the handshake timeout frees the permits.
    let srv = start(&["--handshake-timeout", "1s", "--max-connections", "32"]).await;
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(TcpStream::connect(srv.started.addr).await.expect("connect"));
    }
    let client = common::client(&srv.ca_pem, false);
    let t = Instant::now();
    let latency = tokio::time::timeout(Duration::from_secs(8), probe(&srv, &client))
        .await
        .expect("a good client is served once the idle connections time out");
    assert!(t.elapsed() < Duration::from_secs(5), "{latency:?}");
    for (i, s) in idle.iter_mut().enumerate() {
        let closed = server_gives_up(s, Duration::from_secs(5), None).await;
        assert!(closed.is_some(), "idle connection {i} still open");
    }
    srv.started.shutdown().await;
}

/// A client that completes the TLS handshake and then sends nothing must not hold a connection
/// permit forever (hyper's HTTP/1.1 header timeout only starts with the first request byte):
/// the connection watchdog closes it after --header-timeout.
#[tokio::test]
async fn idle_connection_after_the_handshake_is_closed_by_the_header_timeout() {
    let srv = start(&["--header-timeout", "1s"]).await;
    let mut quiet = tls_connect(srv.started.addr, client_config(&srv.ca_pem, &[b"http/1.1"]))
        .await
        .expect("handshake");
    let closed = server_gives_up(&mut quiet, Duration::from_secs(5), None).await;
    assert!(
        closed.is_some(),
        "idle HTTP/1.1 connection still open after 5 s"
    );
    srv.started.shutdown().await;
}

/// A real UPDATE review padded with an annotation to exactly `size` bytes.
fn review_of_size(size: usize) -> Vec<u8> {
    let mut v = fixture_json(GOOD);
    v["request"]["object"]["metadata"]["annotations"] = json!({"example.com/blob": ""});
    let base = serde_json::to_vec(&v).expect("json").len();
    assert!(size > base);
    v["request"]["object"]["metadata"]["annotations"] =
        json!({"example.com/blob": "x".repeat(size - base)});
    let out = serde_json::to_vec(&v).expect("json");
    assert_eq!(out.len(), size);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_bodies_at_the_limit_is_served_and_one_byte_more_is_413() {
    const LIMIT: usize = 256 * 1024;
    let srv = start(&["--max-body-bytes", &LIMIT.to_string()]).await;
    let at = review_of_size(LIMIT);
    let over = review_of_size(LIMIT + 1);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = common::client(&srv.ca_pem, i % 2 == 0);
        let body = if i % 5 == 4 { over.clone() } else { at.clone() };
        let addr = srv.started.addr;
        tasks.push(tokio::spawn(async move {
            (i % 5 == 4, post(&client, addr, "/validate", body).await)
        }));
    }
    for t in tasks {
        let (over, reply) = t.await.expect("task");
        if over {
            assert_eq!(reply.status, 413, "{}", reply.text());
        } else {
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.json()["response"]["allowed"], false);
        }
    }
    probe(&srv, &common::client(&srv.ca_pem, true)).await;
    srv.started.shutdown().await;
}

/// Open streams and reset them at once (CVE-2023-44487). Returns how many resets were sent
/// before the server ended the connection, or `None` if it never did.
pub async fn rapid_reset(
    addr: std::net::SocketAddr,
    ca: &str,
    max: usize,
) -> (usize, Option<String>) {
    let tls = tls_connect(addr, client_config(ca, &[b"h2"]))
        .await
        .expect("handshake");
    let (mut send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    let driver = tokio::spawn(conn);
    let mut sent = 0;
    while sent < max {
        if driver.is_finished() {
            break;
        }
        let ready = tokio::time::timeout(Duration::from_secs(2), send.clone().ready()).await;
        let Ok(Ok(s)) = ready else { break };
        send = s;
        let req = http::Request::post("https://localhost/validate?timeout=10s")
            .header("content-type", "application/json")
            .body(())
            .expect("request");
        match send.send_request(req, false) {
            Ok((_resp, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(_) => break,
        }
        sent += 1;
    }
    let ended = match tokio::time::timeout(Duration::from_secs(3), driver).await {
        Ok(Ok(Err(e))) => Some(e.to_string()),
        Ok(Ok(Ok(()))) => Some("closed".into()),
        _ => None,
    };
    (sent, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_is_cut_off_and_others_keep_being_served() {
    let srv = start(&[]).await;
    let (addr, ca) = (srv.started.addr, srv.ca_pem.clone());
    let (worst, (sent, ended)) =
        probe_during(&srv, async move { rapid_reset(addr, &ca, 20_000).await }).await;
    eprintln!("rapid reset: {sent} resets, ended: {ended:?}");
    let ended = ended.expect("the server must end a rapid-reset connection");
    assert!(sent < 20_000, "sent {sent} resets, ended: {ended}");
    assert!(worst < Duration::from_secs(2), "slowest probe {worst:?}");
    probe(&srv, &common::client(&srv.ca_pem, true)).await;
    srv.started.shutdown().await;
}

/// A hand-made ClientHello (rustls cannot speak TLS 1.1 or offer CBC suites).
fn client_hello(version: [u8; 2], suites: &[u16]) -> Vec<u8> {
    let mut body = vec![version[0], version[1]];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression
    let mut ext = Vec::new();
    // supported_groups: x25519, secp256r1
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    ext.extend_from_slice(&[
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1u8]; // ClientHello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// Send a ClientHello; return the alert description the server answers with.
async fn alert_for(addr: std::net::SocketAddr, hello: &[u8]) -> u8 {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(hello).await.expect("write");
    let mut rec = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut rec))
        .await
        .expect("server answers")
        .expect("an alert record");
    assert_eq!(rec[0], 0x15, "expected an alert record, got {rec:02x?}");
    assert_eq!(rec[5], 2, "fatal alert: {rec:02x?}");
    rec[6]
}

#[tokio::test]
async fn tls_below_1_2_and_non_aead_suites_are_refused() {
    let srv = start(&[]).await;
    let aead_ecdhe = [0xc02b, 0xc02f, 0xcca8, 0xcca9]; // ECDHE-{ECDSA,RSA}-AES128-GCM, CHACHA20
                                                       // TLS 1.1 and 1.0 ClientHellos, even offering good suites: protocol_version (70).
    assert_eq!(
        alert_for(srv.started.addr, &client_hello([3, 2], &aead_ecdhe)).await,
        70
    );
    assert_eq!(
        alert_for(srv.started.addr, &client_hello([3, 1], &aead_ecdhe)).await,
        70
    );
    // TLS 1.2 offering only CBC / static-RSA / 3DES suites: handshake_failure (40).
    let weak = [0xc013, 0xc014, 0x002f, 0x0035, 0x000a, 0x009c, 0x003c];
    assert_eq!(
        alert_for(srv.started.addr, &client_hello([3, 3], &weak)).await,
        40
    );

    // A TLS 1.2-only client gets an ECDHE AEAD suite; a default client gets TLS 1.3.
    for (versions, want) in [
        (
            &[&rustls::version::TLS12][..],
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            &[&rustls::version::TLS13][..],
            rustls::ProtocolVersion::TLSv1_3,
        ),
    ] {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(srv.ca_pem.as_bytes()) {
            roots.add(c.expect("pem")).expect("ca");
        }
        let cfg = rustls::ClientConfig::builder_with_protocol_versions(versions)
            .with_root_certificates(roots)
            .with_no_client_auth();
        let s = tls_connect(srv.started.addr, cfg).await.expect("handshake");
        let (_, conn) = s.get_ref();
        assert_eq!(conn.protocol_version(), Some(want));
        let suite = format!(
            "{:?}",
            conn.negotiated_cipher_suite().expect("suite").suite()
        );
        assert!(
            suite.contains("GCM") || suite.contains("CHACHA20_POLY1305"),
            "{suite}"
        );
        if want == rustls::ProtocolVersion::TLSv1_2 {
            assert!(suite.starts_with("TLS_ECDHE_"), "{suite}");
        }
    }
    srv.started.shutdown().await;
}

/// A client CA and a client certificate signed by it (PEMs: ca, cert, key).
fn client_identity() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_key = KeyPair::generate().expect("key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["kube-apiserver".to_string()]).expect("params");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn mtls_client_config(server_ca: &str, cert: &str, key: &str) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let base = client_config(server_ca, &[b"http/1.1"]);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .map(|c| c.expect("cert"))
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(server_ca.as_bytes()) {
        roots.add(c.expect("pem")).expect("ca");
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client auth");
    cfg.alpn_protocols = base.alpn_protocols;
    cfg
}

/// Send one raw HTTP/1.1 review over `cfg`; `Some(status line)` or `None` when refused.
async fn raw_review(addr: std::net::SocketAddr, cfg: rustls::ClientConfig) -> Option<String> {
    let mut s = tls_connect(addr, cfg).await.ok()?;
    let body = fixture(GOOD);
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.ok()?;
    s.write_all(&body).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn client_ca_refuses_clients_without_a_certificate_from_it() {
    let (ca, cert, key) = client_identity();
    let (_, other_cert, other_key) = client_identity();
    let dir = tempfile::tempdir().expect("tmp");
    let ca_path = dir.path().join("client-ca.pem");
    std::fs::write(&ca_path, &ca).expect("write");
    let srv = start(&["--client-ca", &ca_path.to_string_lossy()]).await;
    let addr = srv.started.addr;

    let none = raw_review(addr, client_config(&srv.ca_pem, &[b"http/1.1"])).await;
    assert_eq!(none, None, "a client without a certificate must be refused");
    let wrong = raw_review(
        addr,
        mtls_client_config(&srv.ca_pem, &other_cert, &other_key),
    )
    .await;
    assert_eq!(wrong, None, "a certificate from another CA must be refused");
    let good = raw_review(addr, mtls_client_config(&srv.ca_pem, &cert, &key)).await;
    assert_eq!(good.as_deref(), Some("HTTP/1.1 200 OK"));
    srv.started.shutdown().await;
}

#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn request_bodies_never_reach_the_logs_at_debug() {
    const MARKER: &str = "zq9-secret-marker-7f3";
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // Current-thread runtime: the server's tasks run on this thread, under this subscriber.
    let srv = start(&[]).await;
    let client = common::client(&srv.ca_pem, false);
    // Allowed, denied, mutated and malformed reviews, each carrying the marker.
    for (name, path) in [
        ("namespace-create.json", "/validate"),
        (GOOD, "/validate"),
        ("pod-create-bare-no-serviceaccount.json", "/mutate"),
    ] {
        let mut v = fixture_json(name);
        v["request"]["object"]["metadata"]["annotations"] = json!({"example.com/secret": MARKER});
        let reply = post(
            &client,
            srv.started.addr,
            path,
            serde_json::to_vec(&v).expect("json"),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let malformed = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"object":{{"data":{{"password":"{MARKER}"}}}},"uid":5}}}}"#
    );
    let reply = post(
        &client,
        srv.started.addr,
        "/validate",
        malformed.into_bytes(),
    )
    .await;
    assert_eq!(reply.status, 400);
    let truncated = format!(r#"{{"request":{{"object":{{"password":"{MARKER}"#);
    let reply = post(
        &client,
        srv.started.addr,
        "/validate",
        truncated.into_bytes(),
    )
    .await;
    assert_eq!(reply.status, 400);
    srv.started.shutdown().await;

    let logs = String::from_utf8_lossy(&capture.0.lock().expect("lock")).into_owned();
    assert!(
        logs.contains("reviewed"),
        "debug logs were not captured: {logs}"
    );
    assert!(logs.contains("bad admission request"), "{logs}");
    assert!(
        !logs.contains(MARKER),
        "a request body reached the logs:\n{logs}"
    );
}

/// After a request, an idle keep-alive connection is closed after --idle-timeout.
#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let srv = start(&["--idle-timeout", "1s"]).await;
    let mut conn = tls_connect(srv.started.addr, client_config(&srv.ca_pem, &[b"http/1.1"]))
        .await
        .expect("handshake");
    let body = fixture(GOOD);
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    conn.write_all(&body).await.expect("write");
    let mut buf = vec![0u8; 64 * 1024];
    let n = conn.read(&mut buf).await.expect("response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Then silence: the server closes within a few seconds (EOF or reset).
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "idle keep-alive connection still open after 5 s"
    );
    srv.started.shutdown().await;
}

/// A client cancelling more than --max-cancelled-per-10s streams gets its connection closed,
/// long before hyper's own reset-flood limits would trigger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_stream_cap_closes_a_reset_flood() {
    let srv = start(&["--max-cancelled-per-10s", "50"]).await;
    let (addr, ca) = (srv.started.addr, srv.ca_pem.clone());
    let (sent, ended) = rapid_reset(addr, &ca, 20_000).await;
    eprintln!("cancelled-stream cap: closed after {sent} resets: {ended:?}");
    assert!(ended.is_some(), "connection must be closed");
    assert!(sent < 20_000, "closed only after {sent} resets");
    // A well-behaved client is still served.
    let client = common::client(&srv.ca_pem, true);
    let reply = post(&client, srv.started.addr, "/validate", fixture(GOOD)).await;
    assert_eq!(reply.status, 200);
    srv.started.shutdown().await;
}

// --- What one request can cost (issue: bodies, memory budget, slow bodies, connection caps,
// --- the admin port, response size) -------------------------------------------------------

/// A TLS connection to `addr` whose TCP side is bound to `from` (127.0.0.x: another "peer").
async fn tls_connect_from(
    from: std::net::IpAddr,
    addr: std::net::SocketAddr,
    cfg: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(from, 0))?;
    let tcp = socket.connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// Send `body` as one HTTP/1.1 review on `s` and read the status line and the whole answer.
async fn raw_post<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    s: &mut S,
    body: &[u8],
) -> (String, String) {
    let head = format!(
        "POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_body_limit_is_what_kube_apiserver_can_send() {
    let srv = start(&[]).await;
    let limit = meshguard::listener::DEFAULT_MAX_BODY_BYTES;
    assert_eq!(limit, 7 * 1024 * 1024);
    let client = common::client(&srv.ca_pem, false);
    // At the limit: judged (a large review of a kind meshguard reads, with its verdict).
    let reply = post(
        &client,
        srv.started.addr,
        "/validate",
        review_of_size(limit),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["response"]["allowed"], false);
    // One byte more: 413, refused from the declared length before the body is read (the
    // client has sent only the headers when the answer comes).
    let mut s = tls_connect(srv.started.addr, client_config(&srv.ca_pem, &[b"http/1.1"]))
        .await
        .expect("handshake");
    let head = format!(
        "POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        limit + 1
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer))
        .await
        .expect("answered without the body")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("--max-body-bytes"), "{answer}");
    probe(&srv, &client).await;
    srv.started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_memory_budget_answers_429_with_retry_after() {
    const MIB: usize = 1024 * 1024;
    let srv = start(&[
        "--max-inflight-bytes",
        &(8 * MIB).to_string(),
        "--max-body-bytes",
        &(4 * MIB).to_string(),
        "--max-decoded-bytes",
        &(4 * MIB).to_string(),
    ])
    .await;
    let addr = srv.started.addr;
    // Two clients declare 4 MiB bodies and send half: their bytes are held from the budget.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = tls_connect(addr, client_config(&srv.ca_pem, &[b"http/1.1"]))
            .await
            .expect("handshake");
        let head = format!(
            "POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            4 * MIB
        );
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(&vec![b' '; 2 * MIB]).await.expect("write");
        s.flush().await.expect("flush");
        holders.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A third large review does not fit: 429, Retry-After, and it is not counted as abuse.
    let mut s = tls_connect(addr, client_config(&srv.ca_pem, &[b"http/1.1"]))
        .await
        .expect("handshake");
    let (status, text) = raw_post(&mut s, &review_of_size(MIB)).await;
    assert!(status.starts_with("HTTP/1.1 429"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    assert!(text.contains("--max-inflight-bytes"), "{text}");
    // Once the holders go, the budget is free again.
    drop(holders);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = common::client(&srv.ca_pem, false);
    let reply = post(&client, addr, "/validate", review_of_size(MIB)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    srv.started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_cut_off_at_the_body_timeout() {
    let srv = start(&["--body-timeout", "1s"]).await;
    let mut s = tls_connect(srv.started.addr, client_config(&srv.ca_pem, &[b"http/1.1"]))
        .await
        .expect("handshake");
    s.write_all(
        b"POST /validate?timeout=30s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
    )
    .await
    .expect("write");
    // One byte every 200 ms: headers done, the body never finishes.
    let cut = server_gives_up(&mut s, Duration::from_secs(8), Some(b" ")).await;
    let cut = cut.expect("a trickled body must be cut off");
    assert!(cut < Duration::from_secs(5), "cut off after {cut:?}");
    probe(&srv, &common::client(&srv.ca_pem, false)).await;
    srv.started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_take_every_connection() {
    let srv = start(&["--max-connections", "20", "--max-connections-per-peer", "5"]).await;
    let addr = srv.started.addr;
    // Twelve silent connections from 127.0.0.1: five are held, the others closed at once.
    let mut silent = Vec::new();
    for _ in 0..12 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let mut closed = 0;
    for s in silent.iter_mut() {
        if server_gives_up(s, Duration::from_millis(400), None)
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 7,
        "connections over the per-peer cap are closed on accept"
    );
    // Another peer (the apiserver, 127.0.0.2) completes its handshake and is served meanwhile.
    let other: std::net::IpAddr = "127.0.0.2".parse().expect("ip");
    let mut s = tls_connect_from(other, addr, client_config(&srv.ca_pem, &[b"http/1.1"]))
        .await
        .expect("another peer's handshake");
    let (status, text) = raw_post(&mut s, &fixture(GOOD)).await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
    srv.started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_has_timeouts_and_a_connection_cap() {
    let srv = start(&["--header-timeout", "1s", "--admin-max-connections", "8"]).await;
    let admin = srv.started.admin_addr;
    // 20 silent connections: over the admin port's per-peer share (8 / 4, at least 4) they
    // are closed at once, the rest after the header timeout.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(admin).await.expect("connect"));
    }
    let start = Instant::now();
    for (i, s) in silent.iter_mut().enumerate() {
        let closed = server_gives_up(s, Duration::from_secs(5), None).await;
        assert!(closed.is_some(), "admin connection {i} still open");
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // A slowloris on the admin port is cut off too.
    let mut s = TcpStream::connect(admin).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let cut = server_gives_up(&mut s, Duration::from_secs(6), Some(b"X-A: b\r\n")).await;
    assert!(cut.is_some(), "trickled admin headers must be cut off");
    let (status, _) = common::admin_get(admin, "/healthz").await;
    assert_eq!(status, 200);
    srv.started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_answered_while_large_reviews_are_judged() {
    let srv = start(&[]).await;
    let (addr, admin) = (srv.started.addr, srv.started.admin_addr);
    let big = review_of_size(6 * 1024 * 1024);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for i in 0..4 {
        let client = common::client(&srv.ca_pem, i % 2 == 0);
        let (big, stop) = (big.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = post(&client, addr, "/validate", big.clone()).await;
                assert!(
                    reply.status == 200 || reply.status == 429,
                    "{}",
                    reply.status
                );
                n += 1;
            }
            n
        }));
    }
    let https = common::client(&srv.ca_pem, false);
    for _ in 0..10 {
        let (status, _) = tokio::time::timeout(
            Duration::from_secs(10),
            common::admin_get(admin, "/healthz"),
        )
        .await
        .expect("admin /healthz answered under load");
        assert_eq!(status, 200);
        let uri = format!("https://localhost:{}/healthz", addr.port());
        let req = http::Request::get(uri)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(10), https.request(req))
            .await
            .expect("admission-port /healthz answered under load")
            .expect("request");
        assert_eq!(resp.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut judged = 0;
    for t in load {
        judged += t.await.expect("load task");
    }
    assert!(judged >= 4, "{judged}");
    srv.started.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_messages_quote_values_within_bounds() {
    let srv = start(&[]).await;
    // Five principals of 1 MB each, every one quoted by the message and the fix of a finding:
    // unbounded, that was a 10 MB answer.
    let mut review = fixture_json("authorizationpolicy-create-v1-bad-principals.json");
    let huge: Vec<String> = (0..5)
        .map(|i| {
            format!(
                "spiffe://cluster.local/ns/x/sa/{i}{}",
                "a".repeat(1_000_000)
            )
        })
        .collect();
    review["request"]["object"]["spec"]["rules"][0]["from"][0]["source"]["principals"] =
        json!(huge);
    let body = serde_json::to_vec(&review).expect("json");
    assert!(body.len() > 5_000_000);
    let client = common::client(&srv.ca_pem, false);
    let reply = post(&client, srv.started.addr, "/validate", body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.body.len() < 64 * 1024,
        "response of {} bytes",
        reply.body.len()
    );
    let resp = reply.json()["response"].clone();
    assert_eq!(resp["allowed"], false, "{resp}");
    let message = resp["status"]["message"].as_str().expect("message");
    assert!(message.contains("more bytes)"), "{message}");
    srv.started.shutdown().await;
}
