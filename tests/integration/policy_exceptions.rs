//! PolicyException resources through `meshguard serve` and the API-server test double: serve
//! watches them and swaps the engine when one is added or deleted, so the webhook's answer
//! follows without a restart; `meshguard audit`'s listing reads them, and says so when the CRD is
//! absent.

use crate::api_double::{ApiServer, State};
use meshguard::admission::{Admission, Webhook};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn exception(rv: u64) -> Value {
    json!({"apiVersion": "meshguard.io/v1alpha1", "kind": "PolicyException",
        "metadata": {"name": "plaintext-clients", "namespace": "payments", "uid": "u-1",
                     "resourceVersion": rv.to_string()},
        "spec": {"rules": ["pa-permissive-mtls"], "reason": "two clients still send plaintext",
                 "owner": "team-payments", "expires": "2999-01-01"}})
}

fn permissive() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-0000000000e1",
            "kind": {"group": "security.istio.io", "version": "v1", "kind": "PeerAuthentication"},
            "resource": {"group": "security.istio.io", "version": "v1", "resource": "peerauthentications"},
            "namespace": "payments", "operation": "CREATE", "userInfo": {"username": "test"},
            "object": {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                "metadata": {"name": "default", "namespace": "payments"},
                "spec": {"mtls": {"mode": "PERMISSIVE"}}},
            "oldObject": null, "dryRun": false
        }
    })
}

/// (allowed, warnings) of the validating answer.
async fn answer(admission: &Admission) -> (bool, Vec<String>) {
    let body = serde_json::to_vec(&permissive()).expect("json");
    let out = admission
        .handle(Webhook::Validate, &body, Duration::from_secs(5))
        .await
        .expect("answered");
    let v: Value = serde_json::from_slice(&out).expect("response");
    let warnings = v["response"]["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_owned))
        .collect();
    (v["response"]["allowed"] == true, warnings)
}

async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(20);
    while !probe().await {
        assert!(Instant::now() < until, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn serve_applies_watched_exceptions_without_a_restart() {
    let double = ApiServer::start(State {
        policy_exceptions: Some(vec![exception(1)]),
        ..State::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "policyExceptions:\n  namespaces: [payments]\n  maxDuration: 365000d\n",
    )
    .expect("policy");
    crate::common::init();
    let mut config = crate::common::serve_args(&[
        "--audit-interval",
        "0",
        "--config",
        policy.to_str().expect("utf-8"),
    ]);
    config.no_cluster = false;
    config.kubeconfig = Some(double.kubeconfig(dir.path()));
    let started = meshguard::serve::start(&config)
        .await
        .expect("serve starts");
    let admission = started.state.admission.clone();
    // The listed exception reaches the engine: PERMISSIVE is allowed, with a warning naming it.
    eventually("the listed exception applies", || async {
        let (allowed, warnings) = answer(&admission).await;
        allowed
            && warnings
                .iter()
                .any(|w| w.contains("excepted by payments/plaintext-clients"))
    })
    .await;
    let metrics = admission.metrics.render();
    assert!(
        metrics.contains(
            "meshguard_excepted_total{kind=\"PeerAuthentication\",rule=\"pa-permissive-mtls\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshguard_exceptions{source=\"resource\",status=\"active\"} 1"),
        "{metrics}"
    );
    // Deleted: the deny is back.
    double.policy_exception_event("DELETED", exception(2)).await;
    eventually("the deleted exception stops applying", || async {
        !answer(&admission).await.0
    })
    .await;
    // Created again: allowed again.
    double.policy_exception_event("ADDED", exception(3)).await;
    eventually("the new exception applies", || async {
        answer(&admission).await.0
    })
    .await;
    started.shutdown().await;
}

#[tokio::test]
async fn audit_lists_exceptions_and_says_when_the_crd_is_absent() {
    let double = ApiServer::start(State {
        policy_exceptions: Some(vec![exception(1)]),
        ..State::default()
    })
    .await;
    let (found, note) = meshguard::exception_watch::list(&double.client())
        .await
        .expect("list");
    assert!(note.is_none());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id(), "payments/plaintext-clients");
    let absent = ApiServer::start(State::default()).await;
    let (found, note) = meshguard::exception_watch::list(&absent.client())
        .await
        .expect("a missing CRD is not an error");
    assert!(found.is_empty());
    assert!(
        note.is_some_and(|n| n.contains("only the policy file's exceptions apply")),
        "a note"
    );
}

/// `meshguard check` with exceptions: the policy's (one active, one expired) and a
/// PolicyException in the manifests, in every output format.
#[test]
fn check_shows_excepted_findings_and_expired_exceptions_in_every_format() {
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "exceptions:\n  - name: old-apps\n    rules: [wl-default-service-account]\n    namespaces: [shop]\n    names: [old-*]\n    reason: moving to their own accounts\n    owner: team-shop\n    expires: 2999-01-01\n  - name: ended\n    rules: [svc-port-protocol]\n    namespaces: [shop]\n    reason: was temporary\n    ticket: SHOP-9\n    expires: 2000-01-01\npolicyExceptions:\n  namespaces: [shop]\n  maxDuration: 365000d\n",
    )
    .expect("policy");
    let manifests = dir.path().join("manifests.yaml");
    std::fs::write(
        &manifests,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio-injection: enabled}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: old-api, namespace: shop}\nspec:\n  selector: {matchLabels: {app: old-api}}\n  template:\n    metadata: {labels: {app: old-api}}\n    spec: {containers: [{name: app, image: old:1}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {selector: {app: web}, ports: [{name: web, port: 80}]}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec: {mtls: {mode: PERMISSIVE}}\n---\napiVersion: meshguard.io/v1alpha1\nkind: PolicyException\nmetadata: {name: plaintext, namespace: shop}\nspec: {rules: [pa-permissive-mtls, mtls-not-strict], reason: two plaintext clients, owner: team-shop, expires: \"2999-01-01\"}\n",
    )
    .expect("manifests");
    let run = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshguard"))
            .args(["check", "--format", format, "--config"])
            .arg(&policy)
            .arg(&manifests)
            .output()
            .expect("run");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code(),
        )
    };
    let (text, code) = run("text");
    // The excepted deny findings do not fail the run; nothing else denies.
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("Excepted (reported, not enforced):"),
        "{text}"
    );
    assert!(
        text.contains("[wl-default-service-account] spec.template.spec.serviceAccountName"),
        "{text}"
    );
    assert!(text.contains("[excepted by policy:old-apps, until 2999-01-01T00:00:00Z, owner team-shop: moving to their own accounts]"), "{text}");
    assert!(text.contains("[excepted by shop/plaintext,"), "{text}");
    assert!(text.contains(", 3 excepted, "), "{text}");
    // The expired exception: its finding is back, saying so, and the exception is reported.
    assert!(
        text.contains("(exception policy:ended expired 2000-01-01T00:00:00Z: enforced again)"),
        "{text}"
    );
    assert!(text.contains("PolicyException policy:ended"), "{text}");
    assert!(
        text.contains("[exception-expired] exceptions[1].expires"),
        "{text}"
    );

    let (json, _) = run("json");
    let v: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["summary"]["excepted"], 3);
    let rules: Vec<&str> = v["excepted"]
        .as_array()
        .expect("excepted")
        .iter()
        .filter_map(|e| e["rule"].as_str())
        .collect();
    // A cross-resource check is excepted like an admission rule.
    assert_eq!(
        rules,
        [
            "wl-default-service-account",
            "mtls-not-strict",
            "pa-permissive-mtls"
        ]
    );
    assert_eq!(v["excepted"][0]["exception"], "policy:old-apps");
    assert_eq!(v["excepted"][0]["action"], "deny");

    let (junit, _) = run("junit");
    assert!(junit.contains("skipped=\"3\""), "{junit}");
    assert!(
        junit.contains("<skipped message=\"excepted by policy:old-apps (deny)"),
        "{junit}"
    );

    let (sarif, _) = run("sarif");
    let v: Value = serde_json::from_str(&sarif).expect("sarif");
    let suppressed: Vec<&Value> = v["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r.get("suppressions").is_some())
        .collect();
    assert_eq!(suppressed.len(), 3);
    assert_eq!(suppressed[0]["suppressions"][0]["kind"], "external");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/sarif-schema-2.1.0.json"),
        )
        .expect("schema"),
    )
    .expect("schema json");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .expect("schema");
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}
