//! End-to-end over real HTTPS: the harness plays kube-apiserver (see tests/common) and POSTs the
//! AdmissionReviews captured from a real kube-apiserver v1.28 to `/validate` and `/mutate`,
//! over HTTP/1.1 and HTTP/2.

use crate::common;

use crate::common::*;
use serde_json::{json, Value};

const PROTOCOLS: [(bool, http::Version); 2] = [
    (false, http::Version::HTTP_11),
    (true, http::Version::HTTP_2),
];

#[tokio::test]
async fn permissive_denied_strict_allowed_modeless_patched_over_h1_and_h2() {
    let srv = start(&[]).await;
    let addr = srv.started.addr;
    for (h2, version) in PROTOCOLS {
        let client = common::client(&srv.ca_pem, h2);

        // PERMISSIVE: denied, 403, with rule id, field path and fix.
        let req = fixture_json("peerauthentication-update-strict-to-permissive.json");
        let reply = post(
            &client,
            addr,
            "/validate",
            fixture("peerauthentication-update-strict-to-permissive.json"),
        )
        .await;
        assert_eq!(reply.version, version);
        let resp = response_of(&reply, &req);
        assert_eq!(resp["allowed"], false);
        assert_eq!(resp["status"]["code"], 403);
        assert_eq!(resp["status"]["reason"], "Forbidden");
        let msg = resp["status"]["message"].as_str().expect("message");
        assert!(
            msg.contains("[pa-permissive-mtls] spec.mtls.mode: PERMISSIVE accepts plaintext"),
            "{msg}"
        );
        assert!(msg.contains("Fix: set mode: STRICT"), "{msg}");
        assert!(resp["auditAnnotations"]["violations"]
            .as_str()
            .is_some_and(|a| a.contains("pa-permissive-mtls")));

        // STRICT (v1beta1, as kubectl apply sends it): allowed, nothing attached.
        let req = fixture_json("peerauthentication-create-v1beta1.json");
        let resp = response_of(
            &post(
                &client,
                addr,
                "/validate",
                fixture("peerauthentication-create-v1beta1.json"),
            )
            .await,
            &req,
        );
        assert_eq!(resp["allowed"], true);
        assert!(resp.get("warnings").is_none() && resp.get("patch").is_none());

        // Mode-less mesh policy: /mutate returns a JSONPatch that makes it STRICT ...
        let name = "peerauthentication-create-v1-mesh-root-empty-spec.json";
        let req = fixture_json(name);
        let resp = response_of(&post(&client, addr, "/mutate", fixture(name)).await, &req);
        assert_eq!(resp["allowed"], true);
        let patched = apply_patch(&resp, &req).expect("a patch");
        assert_eq!(patched["spec"]["mtls"]["mode"], "STRICT");
        // ... and is idempotent: the patched object gets no further patch (reinvocation-safe).
        let mut again = req.clone();
        again["request"]["object"] = patched.clone();
        let resp = response_of(
            &post(
                &client,
                addr,
                "/mutate",
                serde_json::to_vec(&again).expect("json"),
            )
            .await,
            &again,
        );
        assert!(
            resp.get("patch").is_none(),
            "second pass must not patch: {resp}"
        );
        // The validating webhook then admits the patched object.
        let resp = response_of(
            &post(
                &client,
                addr,
                "/validate",
                serde_json::to_vec(&again).expect("json"),
            )
            .await,
            &again,
        );
        assert_eq!(resp["allowed"], true, "{resp}");
        // Without the mutation, the validating webhook refuses the mode-less mesh policy.
        let resp = response_of(&post(&client, addr, "/validate", fixture(name)).await, &req);
        assert_eq!(resp["allowed"], false);
        assert!(resp["status"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("[pa-unset-mesh-default]"));
    }
    srv.started.shutdown().await;
}

#[tokio::test]
async fn patch_bytes_are_what_the_apiserver_expects() {
    let srv = start(&[]).await;
    let client = common::client(&srv.ca_pem, false);
    let name = "peerauthentication-create-v1-mesh-root-empty-spec.json";
    let reply = post(&client, srv.started.addr, "/mutate", fixture(name)).await;
    let text = reply.text();
    // base64 string, not kube-core's default array of numbers.
    assert!(text.contains(r#""patchType":"JSONPatch""#), "{text}");
    assert!(
        text.contains(r#""patch":"W3si"#),
        "patch must be a base64 string: {text}"
    );
    let resp = reply.json()["response"].clone();
    let raw = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        resp["patch"].as_str().unwrap_or(""),
    )
    .expect("base64");
    assert_eq!(
        String::from_utf8(raw).expect("utf8"),
        r#"[{"op":"add","path":"/spec/mtls","value":{"mode":"STRICT"}}]"#
    );
    srv.started.shutdown().await;
}

#[tokio::test]
async fn every_captured_review_gets_a_well_formed_answer() {
    let srv = start(&[]).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 70,
        "expected the captured fixtures, found {}",
        names.len()
    );
    for (h2, _) in PROTOCOLS {
        let client = common::client(&srv.ca_pem, h2);
        for name in &names {
            let req = fixture_json(name);
            for path in ["/validate", "/mutate"] {
                let reply = post(&client, srv.started.addr, path, fixture(name)).await;
                let resp = response_of(&reply, &req);
                if resp.get("patch").is_some() {
                    apply_patch(&resp, &req).expect("patch applies");
                }
                if resp["allowed"] == false {
                    assert_eq!(resp["status"]["code"], 403, "{name} {path}");
                    assert!(
                        resp["status"]["message"]
                            .as_str()
                            .unwrap_or("")
                            .contains("Fix:"),
                        "{name}"
                    );
                }
            }
        }
    }
    srv.started.shutdown().await;
}

#[tokio::test]
async fn subresources_and_unknown_kinds_pass_untouched() {
    let srv = start(&[]).await;
    let client = common::client(&srv.ca_pem, false);
    let name = "deployment-scale-subresource-update.json";
    let req = fixture_json(name);
    for path in ["/validate", "/mutate"] {
        let resp = response_of(
            &post(&client, srv.started.addr, path, fixture(name)).await,
            &req,
        );
        assert_eq!(resp["allowed"], true);
        assert!(resp.get("patch").is_none() && resp.get("warnings").is_none());
    }
    // An unknown kind (ConfigMap) passes untouched.
    let mut other = fixture_json("peerauthentication-create-disable-denied.json");
    other["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    other["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "configmaps"});
    let resp = response_of(
        &post(
            &client,
            srv.started.addr,
            "/validate",
            serde_json::to_vec(&other).expect("json"),
        )
        .await,
        &other,
    );
    assert_eq!(resp["allowed"], true);
    srv.started.shutdown().await;
}

#[tokio::test]
async fn delete_uses_old_object_and_dry_run_is_evaluated_the_same() {
    let srv = start(&[]).await;
    let client = common::client(&srv.ca_pem, true);
    let name = "peerauthentication-delete-strict-v1beta1.json";
    let req = fixture_json(name);
    assert!(req["request"]["object"].is_null());
    let resp = response_of(
        &post(&client, srv.started.addr, "/validate", fixture(name)).await,
        &req,
    );
    assert_eq!(resp["allowed"], false);
    assert!(resp["status"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("[pa-weakening-delete]"));

    // The same delete by the namespace controller emptying a terminating namespace passes:
    // refusing it would leave the namespace stuck Terminating.
    let mut teardown = req.clone();
    teardown["request"]["userInfo"] = json!({"username": "system:serviceaccount:kube-system:namespace-controller",
        "uid": "x", "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]});
    let resp = response_of(
        &post(
            &client,
            srv.started.addr,
            "/validate",
            serde_json::to_vec(&teardown).expect("json"),
        )
        .await,
        &teardown,
    );
    assert_eq!(resp["allowed"], true, "{resp}");

    let mut dry = fixture_json("peerauthentication-update-strict-to-permissive.json");
    dry["request"]["dryRun"] = Value::Bool(true);
    let resp = response_of(
        &post(
            &client,
            srv.started.addr,
            "/validate",
            serde_json::to_vec(&dry).expect("json"),
        )
        .await,
        &dry,
    );
    assert_eq!(
        resp["allowed"], false,
        "dryRun requests are evaluated the same"
    );
    srv.started.shutdown().await;
}

async fn with_policy(policy: &str) -> TestServer {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).expect("write policy");
    let p = path.to_string_lossy().to_string();
    let srv = start(&["--config", &p]).await;
    drop(dir);
    srv
}

#[tokio::test]
async fn warn_and_audit_modes_allow_and_report() {
    let name = "peerauthentication-update-strict-to-permissive.json";
    let req = fixture_json(name);

    // warn: allowed, with a kubectl warning
    let srv = with_policy("mode: warn\n").await;
    let client = common::client(&srv.ca_pem, false);
    let resp = response_of(
        &post(&client, srv.started.addr, "/validate", fixture(name)).await,
        &req,
    );
    assert_eq!(resp["allowed"], true);
    let warnings = resp["warnings"].as_array().expect("warnings");
    assert!(warnings.iter().any(|w| w
        .as_str()
        .unwrap_or("")
        .starts_with("[pa-permissive-mtls] spec.mtls.mode:")));
    assert!(warnings
        .iter()
        .all(|w| w.as_str().unwrap_or("").len() <= 256));
    srv.started.shutdown().await;

    // audit (dry-run mode): allowed, no warning, audit annotation, counted in metrics
    let srv = with_policy("mode: audit\n").await;
    let client = common::client(&srv.ca_pem, false);
    let resp = response_of(
        &post(&client, srv.started.addr, "/validate", fixture(name)).await,
        &req,
    );
    assert_eq!(resp["allowed"], true);
    assert!(resp.get("warnings").is_none());
    let ann: Vec<String> = serde_json::from_str(
        resp["auditAnnotations"]["violations"]
            .as_str()
            .expect("annotation"),
    )
    .expect("json list");
    assert!(ann[0].starts_with("[pa-permissive-mtls]"));
    let (_, metrics) = admin_get(srv.started.admin_addr, "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            r#"meshguard_violations_total{action="audit",kind="PeerAuthentication",rule="pa-permissive-mtls"}"#
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"meshguard_admission_requests_total{kind="PeerAuthentication",operation="UPDATE",outcome="audited",webhook="validate"}"#
        ),
        1.0
    );
    srv.started.shutdown().await;

    // per-rule action overrides the global mode
    let srv = with_policy("mode: audit\nrules:\n  pa-permissive-mtls:\n    action: deny\n").await;
    let client = common::client(&srv.ca_pem, false);
    let resp = response_of(
        &post(&client, srv.started.addr, "/validate", fixture(name)).await,
        &req,
    );
    assert_eq!(resp["allowed"], false);
    srv.started.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints_and_metrics_move() {
    let srv = start(&[]).await;
    let admin = srv.started.admin_addr;
    assert_eq!(admin_get(admin, "/healthz").await.0, 200);
    assert_eq!(admin_get(admin, "/readyz").await.0, 200);
    let client = common::client(&srv.ca_pem, false);
    for _ in 0..3 {
        post(
            &client,
            srv.started.addr,
            "/validate",
            fixture("peerauthentication-create-disable-denied.json"),
        )
        .await;
    }
    post(
        &client,
        srv.started.addr,
        "/mutate",
        fixture("peerauthentication-create-v1-mesh-root-empty-spec.json"),
    )
    .await;
    let (code, text) = admin_get(admin, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(
        metric(
            &text,
            r#"meshguard_admission_requests_total{kind="PeerAuthentication",operation="CREATE",outcome="denied",webhook="validate"}"#
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"meshguard_violations_total{action="deny",kind="PeerAuthentication",rule="pa-disabled-mtls"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            r#"meshguard_mutations_total{kind="PeerAuthentication",mutation="peer-authentication-strict-default"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"meshguard_admission_duration_seconds_count{webhook="validate"}"#
        ),
        3.0
    );
    assert!(metric(&text, "meshguard_tls_certificate_expiry_timestamp_seconds") > 1.7e9);
    assert!(text.contains("meshguard_build_info{version=\""));
    assert!(
        text.contains(r#"le="0.00005""#),
        "histogram starts at 50 µs"
    );
    // The admin port serves no admission traffic.
    let plain: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = http::Request::post(format!("http://{admin}/validate"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(fixture(
            "peerauthentication-create-disable-denied.json",
        ))))
        .expect("req");
    assert_eq!(plain.request(req).await.expect("resp").status(), 404);
    srv.started.shutdown().await;
}

#[tokio::test]
async fn existing_violations_warn_on_update_and_terminating_objects_pass() {
    let srv = start(&[]).await;
    let client = common::client(&srv.ca_pem, false);
    let send = |v: Value| {
        let client = client.clone();
        let addr = srv.started.addr;
        async move {
            let body = serde_json::to_vec(&v).expect("json");
            response_of(&post(&client, addr, "/validate", body).await, &v)
        }
    };
    // The captured STRICT -> PERMISSIVE update introduces the violation: denied.
    let weakening = fixture_json("peerauthentication-update-strict-to-permissive.json");
    let resp = send(weakening.clone()).await;
    assert_eq!(resp["allowed"], false, "{resp}");

    // PERMISSIVE before and after (a label added): the violation is not new, so it is allowed
    // with a warning that says why.
    let mut kept = weakening.clone();
    kept["request"]["oldObject"] = kept["request"]["object"].clone();
    kept["request"]["object"]["metadata"]["labels"] = json!({"team": "payments"});
    let resp = send(kept.clone()).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let warnings: Vec<&str> = resp["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("[pa-permissive-mtls]")
                && w.contains("already so before this update")),
        "{warnings:?}"
    );

    // The API server is deleting the object (deletionTimestamp set). Editing it is still an
    // edit: the STRICT -> PERMISSIVE update is refused even now.
    let mut terminating = weakening.clone();
    for key in ["object", "oldObject"] {
        terminating["request"][key]["metadata"]["deletionTimestamp"] =
            json!("2026-11-24T08:00:00Z");
    }
    let resp = send(terminating).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(
        resp["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("[pa-weakening-delete]")),
        "{resp}"
    );
    // Only the write a teardown needs passes unjudged: the finalizers coming off, nothing else
    // changed, even where the object breaks a rule the update would otherwise deny.
    let mut teardown = weakening;
    teardown["request"]["oldObject"] = teardown["request"]["object"].clone();
    teardown["request"]["oldObject"]["metadata"]["finalizers"] = json!(["example.com/hold"]);
    for key in ["object", "oldObject"] {
        teardown["request"][key]["metadata"]["deletionTimestamp"] = json!("2026-11-24T08:00:00Z");
    }
    let resp = send(teardown).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(resp.get("warnings").is_none_or(Value::is_null), "{resp}");
    srv.started.shutdown().await;
}
