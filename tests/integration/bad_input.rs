//! Hostile and malformed input over real HTTPS: every case gets a clear HTTP error with a
//! reason, and the server keeps answering well-formed reviews afterwards.

use crate::common;

use crate::common::*;
use serde_json::json;

async fn still_serving(srv: &TestServer) {
    let client = common::client(&srv.ca_pem, false);
    let req = fixture_json("peerauthentication-create-v1beta1.json");
    let resp = response_of(
        &post(
            &client,
            srv.started.addr,
            "/validate",
            fixture("peerauthentication-create-v1beta1.json"),
        )
        .await,
        &req,
    );
    assert_eq!(resp["allowed"], true);
}

#[tokio::test]
async fn malformed_reviews_get_400_with_a_reason() {
    let srv = start(&[]).await;
    let client = common::client(&srv.ca_pem, false);
    let addr = srv.started.addr;

    let full = fixture("pod-create-bare-no-serviceaccount.json");
    let truncated = full[..full.len() / 2].to_vec();
    let reply = post(&client, addr, "/validate", truncated).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.text().contains("not a valid AdmissionReview"),
        "{}",
        reply.text()
    );

    let mut v1beta1 = fixture_json("peerauthentication-create-v1beta1.json");
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let reply = post(
        &client,
        addr,
        "/validate",
        serde_json::to_vec(&v1beta1).expect("json"),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.text().contains("admission.k8s.io/v1 only"),
        "{}",
        reply.text()
    );

    let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let reply = post(
        &client,
        addr,
        "/mutate",
        serde_json::to_vec(&no_request).expect("json"),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("no request"), "{}", reply.text());

    for body in [
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\xff\xfe".to_vec(),
    ] {
        let reply = post(&client, addr, "/validate", body).await;
        assert_eq!(reply.status, 400, "{}", reply.text());
    }

    // Deep nesting in a part that is built: serde_json's recursion limit turns it into a 400,
    // not a stack overflow. (Parts that are skipped, or kept as text like a Pod's spec, are
    // scanned without recursion.)
    let depth = 100_000;
    let mut deep = String::from(
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"x"},"spec":"#,
    );
    deep.push_str(&"[".repeat(depth));
    deep.push_str(&"]".repeat(depth));
    deep.push_str("}}}");
    let reply = post(&client, addr, "/validate", deep.into_bytes()).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("recursion limit"), "{}", reply.text());

    still_serving(&srv).await;
    srv.started.shutdown().await;
}

#[tokio::test]
async fn wrong_content_type_is_415_and_wrong_method_405() {
    let srv = start(&[]).await;
    let client = common::client(&srv.ca_pem, true);
    let body = fixture("peerauthentication-create-v1beta1.json");
    let reply = post_with(
        &client,
        srv.started.addr,
        "/validate",
        body.clone(),
        "text/plain",
    )
    .await;
    assert_eq!(reply.status, 415);
    assert!(
        reply
            .text()
            .contains("Content-Type must be application/json"),
        "{}",
        reply.text()
    );
    // Parameters after the media type are fine.
    let reply = post_with(
        &client,
        srv.started.addr,
        "/validate",
        body,
        "application/json; charset=utf-8",
    )
    .await;
    assert_eq!(reply.status, 200);
    let get = http::Request::get(format!(
        "https://localhost:{}/validate",
        srv.started.addr.port()
    ))
    .body(http_body_util::Full::new(bytes::Bytes::new()))
    .expect("req");
    assert_eq!(client.request(get).await.expect("resp").status(), 405);
    srv.started.shutdown().await;
}

/// Pad a real UPDATE review (object + oldObject) to about `size` bytes with a large annotation,
/// like an object carrying a big last-applied-configuration.
fn padded_update(size: usize) -> Vec<u8> {
    let mut v = fixture_json("peerauthentication-update-strict-to-permissive.json");
    let pad = "x".repeat(size / 2);
    v["request"]["object"]["metadata"]["annotations"] = json!({"example.com/blob": pad});
    v["request"]["oldObject"]["metadata"]["annotations"] = json!({"example.com/blob": pad});
    serde_json::to_vec(&v).expect("json")
}

#[tokio::test]
async fn body_limit_is_explicit_413_above_and_large_legal_reviews_pass() {
    let srv = start(&["--max-body-bytes", "8388608"]).await;
    for h2 in [false, true] {
        let client = common::client(&srv.ca_pem, h2);
        // A legal 3 MiB UPDATE carrying oldObject: axum's 2 MB default would refuse it.
        let body = padded_update(3 * 1024 * 1024);
        assert!(body.len() > 3 * 1024 * 1024);
        let reply = post(&client, srv.started.addr, "/validate", body).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.json()["response"]["allowed"],
            false,
            "the PERMISSIVE update is still judged"
        );

        let reply = post(
            &client,
            srv.started.addr,
            "/validate",
            padded_update(9 * 1024 * 1024),
        )
        .await;
        assert_eq!(reply.status, 413, "{}", reply.text());
    }
    still_serving(&srv).await;
    srv.started.shutdown().await;
}

#[tokio::test]
async fn plaintext_and_garbage_on_the_tls_port_do_not_hurt() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = start(&["--handshake-timeout", "1s"]).await;
    // Plain HTTP to the TLS port.
    let mut s = tokio::net::TcpStream::connect(srv.started.addr)
        .await
        .expect("connect");
    s.write_all(b"POST /validate HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    // Random bytes, and a client that connects and says nothing (closed by the handshake timeout).
    let mut g = tokio::net::TcpStream::connect(srv.started.addr)
        .await
        .expect("connect");
    g.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4])
        .await
        .expect("write");
    let mut idle = tokio::net::TcpStream::connect(srv.started.addr)
        .await
        .expect("connect");
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(5), idle.read(&mut [0u8; 16])).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "idle handshake must be closed by the server"
    );
    still_serving(&srv).await;
    srv.started.shutdown().await;
}
