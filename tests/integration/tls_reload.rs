//! Certificate rotation the way kubelet does it for a Secret volume: the files the flags name
//! are symlinks through `..data`, and an update atomically swaps `..data` to a new timestamped
//! directory. New handshakes must see the new certificate, no request may fail meanwhile, and a
//! broken pair must leave the last good one in place.

use crate::common;

use crate::common::*;
use rustls::pki_types::ServerName;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Write a pair into `<dir>/<stamp>/` and atomically point `<dir>/..data` at it.
fn kubelet_update(dir: &Path, stamp: &str, cert: &str, key: &str) {
    let ts = dir.join(stamp);
    std::fs::create_dir(&ts).expect("mkdir");
    std::fs::write(ts.join("tls.crt"), cert).expect("cert");
    std::fs::write(ts.join("tls.key"), key).expect("key");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(stamp, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("atomic swap");
}

/// Serial number of the certificate a fresh TLS handshake presents.
async fn served_cert(addr: std::net::SocketAddr, trust: &str) -> Vec<u8> {
    let cfg = client_config(trust, &[b"http/1.1"]);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    let (_, conn) = tls.get_ref();
    conn.peer_certificates().expect("peer certs")[0]
        .as_ref()
        .to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn secret_volume_symlink_swap_reloads_without_failed_requests() {
    init();
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let a = meshguard::tls::generate(&names, 30).expect("a");
    let b = meshguard::tls::generate(&names, 30).expect("b");
    let vol = tempfile::tempdir().expect("tmp");
    kubelet_update(vol.path(), "..2026_11_24_01", &a.cert_pem, &a.key_pem);
    symlink("..data/tls.crt", vol.path().join("tls.crt")).expect("link");
    symlink("..data/tls.key", vol.path().join("tls.key")).expect("link");
    let cert = vol.path().join("tls.crt").to_string_lossy().to_string();
    let key = vol.path().join("tls.key").to_string_lossy().to_string();
    let started = meshguard::serve::start(&serve_args(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-reload-interval",
        "100ms",
    ]))
    .await
    .expect("start");
    let addr = started.addr;
    let both = format!("{}{}", a.ca_cert_pem, b.ca_cert_pem);
    assert_eq!(served_cert(addr, &both).await, der_of(&a.cert_pem));

    // Keep reviews flowing on fresh and kept-alive connections during the swaps.
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for h2 in [false, true] {
        let (failures, done, stop, both) =
            (failures.clone(), done.clone(), stop.clone(), both.clone());
        load.push(tokio::spawn(async move {
            let body = fixture("peerauthentication-create-v1beta1.json");
            let mut kept = common::client(&both, h2);
            while !stop.load(Ordering::Relaxed) {
                let uri = format!("https://localhost:{}/validate?timeout=10s", addr.port());
                let req = http::Request::post(uri)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
                    .expect("req");
                match kept.request(req).await {
                    Ok(r) if r.status() == 200 => done.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
                if done.load(Ordering::Relaxed) % 10 == 0 {
                    kept = common::client(&both, h2); // new connection, new handshake
                }
            }
        }));
    }

    kubelet_update(vol.path(), "..2026_11_24_02", &b.cert_pem, &b.key_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_cert(addr, &both).await != der_of(&b.cert_pem) {
        assert!(
            Instant::now() < deadline,
            "new certificate not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken pair (B's certificate with A's key), then a half-written one: B stays.
    kubelet_update(vol.path(), "..2026_11_24_03", &b.cert_pem, &a.key_pem);
    tokio::time::sleep(Duration::from_millis(400)).await;
    kubelet_update(
        vol.path(),
        "..2026_11_24_04",
        &a.cert_pem[..a.cert_pem.len() / 2],
        &a.key_pem,
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        served_cert(addr, &both).await,
        der_of(&b.cert_pem),
        "last good pair must be kept"
    );

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no review may fail during rotation"
    );
    assert!(done.load(Ordering::Relaxed) > 10, "load actually ran");

    let (_, metrics) = admin_get(started.admin_addr, "/metrics").await;
    assert!(
        metric(&metrics, r#"meshguard_tls_reloads_total{result="success"}"#) >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, r#"meshguard_tls_reloads_total{result="failure"}"#) >= 2.0,
        "{metrics}"
    );
    started.shutdown().await;
}

#[tokio::test]
async fn start_fails_clearly_on_a_bad_pair() {
    init();
    let a = meshguard::tls::generate(&["localhost".into()], 30).expect("a");
    let b = meshguard::tls::generate(&["localhost".into()], 30).expect("b");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("c"), &a.cert_pem).expect("w");
    std::fs::write(dir.path().join("k"), &b.key_pem).expect("w");
    let c = dir.path().join("c").to_string_lossy().to_string();
    let k = dir.path().join("k").to_string_lossy().to_string();
    let err = meshguard::serve::start(&serve_args(&["--tls-cert", &c, "--tls-key", &k]))
        .await
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("does not match"), "{err}");
}
