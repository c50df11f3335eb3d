//! Graceful shutdown: after the stop signal no new connection is accepted, a review already in
//! flight (its body still arriving) completes, and the binary exits 0 on SIGTERM.

use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::time::Duration;

#[tokio::test]
async fn in_flight_review_completes_after_shutdown_starts() {
    let srv = start(&["--drain-timeout", "10s"]).await;
    let addr = srv.started.addr;
    let body = fixture("peerauthentication-update-strict-to-permissive.json");
    let (first, rest) = body.split_at(body.len() / 2);
    let (first, rest) = (Bytes::copy_from_slice(first), Bytes::copy_from_slice(rest));

    // Stream the body in two parts so the request is in flight when shutdown begins.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(2);
    let stream = tokio_stream_from(rx);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(client_config(&srv.ca_pem, &[]))
                .https_only()
                .enable_http1()
                .build(),
        );
    let req = http::Request::post(format!(
        "https://localhost:{}/validate?timeout=10s",
        addr.port()
    ))
    .header("content-type", "application/json")
    .body(StreamBody::new(stream))
    .expect("req");
    tx.send(Ok(Frame::data(first))).await.expect("send");
    let in_flight = tokio::spawn(async move { client.request(req).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    srv.started.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are refused once the listener is closed.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener must be closed"
    );

    tx.send(Ok(Frame::data(rest))).await.expect("send rest");
    drop(tx);
    let resp = in_flight
        .await
        .expect("task")
        .expect("in-flight request must complete");
    assert_eq!(resp.status(), 200);
    let out = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["response"]["allowed"], false);
    tokio::time::timeout(Duration::from_secs(10), srv.started.wait())
        .await
        .expect("drained and stopped");
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[test]
fn binary_exits_zero_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tmp");
    let ca = dir.path().join("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .arg("--ca-bundle-out")
        .arg(&ca)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshguard");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    loop {
        let line = lines.next().expect("server log line").expect("read");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("meshguard serving") {
            break;
        }
    }
    assert!(seen.contains("ca_bundle"), "the caBundle is logged: {seen}");
    assert!(std::fs::read_to_string(&ca)
        .expect("ca written")
        .contains("BEGIN CERTIFICATE"));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    for l in lines.map_while(Result::ok) {
        seen.push_str(&l);
        seen.push('\n');
    }
    assert_eq!(exit.code(), Some(0), "logs:\n{seen}");
    assert!(seen.contains("draining"), "{seen}");
}

#[test]
fn bad_config_exits_non_zero_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("policy.yaml");
    std::fs::write(
        &cfg,
        "mode: enforce\nrules:\n  pa-permisive-mtls:\n    action: warn\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rules.pa-permisive-mtls: unknown rule id"),
        "{err}"
    );
}
