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
