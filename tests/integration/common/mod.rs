//! Test harness that plays kube-apiserver: starts `meshguard serve` in-process (exactly what the
//! binary runs) with a certificate generated at test time, and talks to it over real HTTPS with
//! a rustls client that trusts only the CA bundle.
#![allow(dead_code)]

use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshguard::cli::{Cli, Command};
use meshguard::serve::ServeConfig;
use meshguard::serve::{self, Started};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The crate root: the working directory of `cargo test` and of [`meshguard`].
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run the `meshguard` binary from the crate root; returns (stdout, stderr, exit code).
pub fn meshguard(args: &[&str]) -> (String, String, i32) {
    meshguard_in(root(), args)
}

/// Run the `meshguard` binary in `dir`, with the variables that choose a policy file, a
/// cluster or a namespace (`MESHGUARD_CONFIG`, `KUBECONFIG`, `POD_NAMESPACE`) removed, so only
/// the arguments decide; returns (stdout, stderr, exit code).
pub fn meshguard_in(dir: &Path, args: &[&str]) -> (String, String, i32) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .current_dir(dir)
        .args(args)
        .env_remove("MESHGUARD_CONFIG")
        .env_remove("KUBECONFIG")
        .env_remove("POD_NAMESPACE")
        .output()
        .expect("run meshguard");
    (
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
        out.status.code().unwrap_or(-1),
    )
}

pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Read a captured AdmissionReview from tests/fixtures/admission/.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).expect("fixture is JSON")
}

/// A server under test plus the material a client needs.
pub struct TestServer {
    pub started: Started,
    pub ca_pem: String,
    pub dir: tempfile::TempDir,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// Parse `meshguard serve` flags the way the binary does.
pub fn serve_args(extra: &[&str]) -> ServeConfig {
    let mut argv = vec![
        "meshguard",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--no-cluster",
    ];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("valid flags").command {
        Command::Serve(a) => a.config(),
        _ => unreachable!(),
    }
}

/// Generate a CA + serving certificate for localhost/127.0.0.1 into files in a temp dir, and
/// start the server on them (certificate reload polling every 100 ms).
pub async fn start(extra: &[&str]) -> TestServer {
    start_with(extra, |_| {}).await
}

/// [`start`], with the parsed configuration adjusted by `configure` first (e.g. a kubeconfig
/// for the API-server test double instead of `--no-cluster`).
pub async fn start_with(extra: &[&str], configure: impl FnOnce(&mut ServeConfig)) -> TestServer {
    init();
    let dir = tempfile::tempdir().expect("tempdir");
    let generated =
        meshguard::tls::generate(&["localhost".into(), "127.0.0.1".into()], 30).expect("certs");
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, &generated.cert_pem).expect("write cert");
    std::fs::write(&key_path, &generated.key_pem).expect("write key");
    let cert = cert_path.to_string_lossy().to_string();
    let key = key_path.to_string_lossy().to_string();
    let mut args: Vec<&str> = vec![
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-reload-interval",
        "100ms",
    ];
    args.extend_from_slice(extra);
    let mut config = serve_args(&args);
    configure(&mut config);
    let started = serve::start(&config).await.expect("server starts");
    TestServer {
        started,
        ca_pem: generated.ca_cert_pem,
        dir,
        cert_path,
        key_path,
    }
}

/// rustls client config that trusts only `ca_pem`, offering the given ALPN protocols.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> rustls::ClientConfig {
    init();
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

/// HTTPS client as kube-apiserver uses it: HTTP/1.1 keep-alive, or HTTP/2 when `h2`.
pub fn client(ca_pem: &str, h2: bool) -> HttpsClient {
    // hyper-rustls sets ALPN itself from the enabled protocols.
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(ca_pem, &[]))
        .https_only();
    let connector = if h2 {
        builder.enable_http2().build()
    } else {
        builder.enable_http1().build()
    };
    let mut b = Client::builder(TokioExecutor::new());
    b.http2_only(h2);
    b.build(connector)
}

pub struct Reply {
    pub status: http::StatusCode,
    pub version: http::Version,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// POST a body like the apiserver does (`?timeout=10s`, JSON content type).
pub async fn post(
    client: &HttpsClient,
    addr: std::net::SocketAddr,
    path: &str,
    body: Vec<u8>,
) -> Reply {
    post_with(
        client,
        addr,
        &format!("{path}?timeout=10s"),
        body,
        "application/json",
    )
    .await
}

pub async fn post_with(
    client: &HttpsClient,
    addr: std::net::SocketAddr,
    path_and_query: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Reply {
    let uri = format!("https://localhost:{}{}", addr.port(), path_and_query);
    let req = http::Request::post(uri)
        .header("content-type", content_type)
        .header("accept", "application/json, */*")
        .header("user-agent", "kube-apiserver-admission")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = client.request(req).await.expect("request succeeds");
    let status = resp.status();
    let version = resp.version();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        version,
        body,
    }
}

/// Check the shape kube-apiserver requires of a response and return `response`.
pub fn response_of(reply: &Reply, request: &Value) -> Value {
    assert_eq!(reply.status, 200, "body: {}", reply.text());
    let v = reply.json();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert!(
        v.get("request").is_none(),
        "response must not echo the request"
    );
    let resp = v["response"].clone();
    assert_eq!(resp["uid"], request["request"]["uid"], "uid must be echoed");
    assert!(resp["allowed"].is_boolean());
    resp
}

/// Decode `response.patch` (base64 JSON Patch) and apply it to `request.object`.
pub fn apply_patch(resp: &Value, request: &Value) -> Option<Value> {
    let patch = resp.get("patch")?;
    assert_eq!(resp["patchType"], "JSONPatch");
    let b64 = patch
        .as_str()
        .expect("patch must be a base64 string, as Go's []byte expects");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("valid base64");
    let ops: json_patch::Patch = serde_json::from_slice(&raw).expect("RFC 6902 patch");
    let mut doc = request["request"]["object"].clone();
    json_patch::patch(&mut doc, &ops).expect("patch applies to the object");
    Some(doc)
}

/// Fetch the admin endpoint text.
pub async fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let uri = format!("http://{addr}{path}");
    let resp = client
        .get(uri.parse().expect("uri"))
        .await
        .expect("admin request");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Value of one metric sample line (exact label set) from the exposition text.
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}
