//! `--config` hot reload: a changed, valid policy takes effect without restart; an invalid one
//! is rejected, counted, and the current policy stays in force.

use crate::common;

use crate::common::*;
use std::time::{Duration, Instant};

async fn allowed(srv: &TestServer, client: &HttpsClient) -> bool {
    let name = "peerauthentication-update-strict-to-permissive.json";
    let reply = post(client, srv.started.addr, "/validate", fixture(name)).await;
    response_of(&reply, &fixture_json(name))["allowed"] == true
}

#[tokio::test]
async fn policy_reloads_without_restart_and_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, "mode: enforce\n").expect("write");
    let p = path.to_string_lossy().to_string();
    let srv = start(&["--config", &p, "--config-reload-interval", "100ms"]).await;
    let client = common::client(&srv.ca_pem, false);
    assert!(!allowed(&srv, &client).await, "enforce denies PERMISSIVE");

    std::fs::write(&path, "mode: audit\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !allowed(&srv, &client).await {
        assert!(
            Instant::now() < deadline,
            "new policy not applied within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken file (unknown key) is rejected; audit mode stays in force.
    std::fs::write(&path, "mode: enforce\nrootNamespce: x\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = admin_get(srv.started.admin_addr, "/metrics").await;
        if metric(&m, r#"meshguard_config_reloads_total{result="failure"}"#) >= 1.0 {
            assert!(metric(&m, r#"meshguard_config_reloads_total{result="success"}"#) >= 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "bad policy never reported: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        allowed(&srv, &client).await,
        "the last good policy (audit) must stay"
    );
    srv.started.shutdown().await;
}
