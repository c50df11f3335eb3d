//! The mesh as installed, through `meshguard serve` and the API-server test double: serve watches
//! Istio's injector MutatingWebhookConfigurations and its ConfigMaps in the Istio namespace, and
//! the webhook's verdicts follow them — revisions and tags that exist, the trust domain of the
//! MeshConfig — and follow their changes (watch events) and policy reloads. When the mesh kinds
//! are forbidden, serve becomes ready anyway and assumes Istio's default injector.
//!
//! The mesh objects are those of `tests/fixtures/mesh/canary/istio.yaml` (the default revision,
//! revision `canary`, tag `prod-stable` → `canary`, trust domain `corp.example`).

use crate::api_double::{ApiServer, State};
use meshguard::admission::{Admission, Webhook};
use meshguard::serve::Started;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ISTIO: &str = include_str!("../fixtures/mesh/canary/istio.yaml");

/// The fixture's (MutatingWebhookConfigurations, ConfigMaps).
fn mesh_objects() -> (Vec<Value>, Vec<Value>) {
    let docs: Vec<Value> = serde_saphyr::from_multiple(ISTIO).expect("fixture");
    docs.into_iter()
        .partition(|d| d["kind"] == "MutatingWebhookConfiguration")
}

fn mesh_state() -> State {
    let (webhooks, config_maps) = mesh_objects();
    State {
        webhook_configurations: webhooks,
        config_maps: [("istio-system".to_owned(), config_maps)].into(),
        ..State::default()
    }
}

async fn serve(double: &ApiServer, dir: &std::path::Path, extra: &[&str]) -> Started {
    crate::common::init();
    let mut args = vec!["--audit-interval", "0", "--config-reload-interval", "50ms"];
    args.extend_from_slice(extra);
    let mut config = crate::common::serve_args(&args);
    config.no_cluster = false;
    config.kubeconfig = Some(double.kubeconfig(dir));
    meshguard::serve::start(&config)
        .await
        .expect("serve starts")
}

/// Poll `probe` until it holds (the watch delivers asynchronously); panics after 20 s.
async fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !probe() {
        assert!(Instant::now() < until, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn review(kind: (&str, &str, &str), namespace: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-00000000000a",
            "kind": {"group": kind.0, "version": kind.1, "kind": kind.2},
            "resource": {"group": kind.0, "version": kind.1, "resource": "x"},
            "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "test"},
            "object": object, "oldObject": null, "dryRun": false
        }
    })
}

fn namespace(name: &str, labels: Value) -> Value {
    review(
        ("", "v1", "Namespace"),
        "",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}),
    )
}

fn allow_from(principal: &str) -> Value {
    review(
        ("security.istio.io", "v1", "AuthorizationPolicy"),
        "shop",
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "rules": [{"from": [{"source": {"principals": [principal]}}]}]}}),
    )
}

/// (allowed, message, warnings) of the validating answer.
async fn validate(admission: &Admission, review: &Value) -> (bool, String, Vec<String>) {
    let body = serde_json::to_vec(review).expect("json");
    let out = admission
        .handle(Webhook::Validate, &body, Duration::from_secs(5))
        .await
        .expect("answered");
    let v: Value = serde_json::from_slice(&out).expect("response");
    let r = &v["response"];
    let warnings = r["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    (
        r["allowed"] == true,
        r["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        warnings,
    )
}

fn trust_domain(started: &Started) -> (String, String) {
    let engine = started.state.admission.engine.current();
    let td = engine.mesh().trust_domain();
    (td.value.clone(), td.origin.to_string())
}

#[tokio::test]
async fn serve_judges_against_the_watched_mesh_and_follows_it() {
    let double = ApiServer::start(mesh_state()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "mode: enforce\n").expect("policy");
    let policy_arg = policy.to_string_lossy().to_string();
    let started = serve(
        &double,
        dir.path(),
        &["--istio-namespace", "istio-system", "--config", &policy_arg],
    )
    .await;
    let admission = started.state.admission.clone();
    eventually("serve is ready (caches and mesh watch synced)", || {
        admission.cluster.synced()
    })
    .await;
    let metrics = admission.metrics.render();
    for resource in ["mutatingwebhookconfigurations", "configmaps"] {
        assert!(
            metrics.contains(&format!(
                "meshguard_cache_synced{{resource=\"{resource}\"}} 1"
            )),
            "{metrics}"
        );
    }
    {
        let engine = admission.engine.current();
        let mesh = engine.mesh();
        assert!(!mesh.assumed_default_injector());
        assert_eq!(
            mesh.tags().get("prod-stable").map(String::as_str),
            Some("canary")
        );
    }
    assert_eq!(
        trust_domain(&started),
        (
            "corp.example".to_owned(),
            "ConfigMap istio-system/istio".to_owned()
        )
    );

    // Revisions and tags that exist are admitted; a revision nobody serves is refused.
    let (ok, msg, _) = validate(
        &admission,
        &namespace("shop", json!({"istio.io/rev": "prod-stable"})),
    )
    .await;
    assert!(ok, "{msg}");
    let (ok, msg, _) = validate(
        &admission,
        &namespace("pay", json!({"istio.io/rev": "nope"})),
    )
    .await;
    assert!(!ok && msg.contains("[ns-unknown-revision]"), "{msg}");
    assert!(
        msg.contains("revisions: canary, default; tags: prod-stable → canary"),
        "{msg}"
    );

    // The mesh's trust domain is local; another one warns.
    let (ok, _, warnings) =
        validate(&admission, &allow_from("corp.example/ns/legacy/sa/api")).await;
    assert!(
        ok && !warnings
            .iter()
            .any(|w| w.contains("ap-foreign-trust-domain")),
        "{warnings:?}"
    );
    let (_, _, warnings) =
        validate(&admission, &allow_from("partner.example/ns/legacy/sa/api")).await;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("ap-foreign-trust-domain")),
        "{warnings:?}"
    );

    // The MeshConfig changes: the next verdicts follow.
    let (_, config_maps) = mesh_objects();
    let mut istio = config_maps
        .into_iter()
        .find(|c| c["metadata"]["name"] == "istio")
        .expect("istio ConfigMap");
    istio["metadata"]["resourceVersion"] = json!("2");
    istio["data"]["mesh"] = json!("trustDomain: partner.example\n");
    double.config_map_event("MODIFIED", istio).await;
    eventually("the new trust domain reaches the engine", || {
        trust_domain(&started).0 == "partner.example"
    })
    .await;
    let (_, _, warnings) =
        validate(&admission, &allow_from("partner.example/ns/legacy/sa/api")).await;
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("ap-foreign-trust-domain")),
        "{warnings:?}"
    );

    // A policy reload rebuilds the engine over the watched mesh: its value wins, then leaves.
    std::fs::write(&policy, "trustDomain: cluster.local\n").expect("policy");
    eventually("the policy's trust domain wins", || {
        trust_domain(&started) == ("cluster.local".to_owned(), "meshguard policy".to_owned())
    })
    .await;
    std::fs::write(&policy, "mode: enforce\n").expect("policy");
    eventually("the mesh's trust domain is back", || {
        trust_domain(&started).0 == "partner.example"
    })
    .await;

    // The tag is removed (istioctl tag remove): prod-stable serves nothing any more.
    let (webhooks, _) = mesh_objects();
    let mut tag = webhooks
        .into_iter()
        .find(|w| w["metadata"]["name"] == "istio-revision-tag-prod-stable")
        .expect("tag");
    tag["metadata"]["resourceVersion"] = json!("3");
    double.webhook_event("DELETED", tag).await;
    eventually("the tag is gone from the engine's mesh", || {
        admission.engine.current().mesh().tags().is_empty()
    })
    .await;
    let (ok, msg, _) = validate(
        &admission,
        &namespace("shop", json!({"istio.io/rev": "prod-stable"})),
    )
    .await;
    assert!(!ok && msg.contains("[ns-unknown-revision]"), "{msg}");
    started.shutdown().await;
}

#[tokio::test]
async fn forbidden_mesh_objects_fall_back_without_blocking_readiness() {
    let double = ApiServer::start(State {
        forbid_mesh: true,
        ..mesh_state()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let started = serve(&double, dir.path(), &[]).await;
    let admission = started.state.admission.clone();
    eventually(
        "serve is ready although the mesh kinds are forbidden",
        || admission.cluster.synced(),
    )
    .await;
    let engine = admission.engine.current();
    assert!(engine.mesh().assumed_default_injector());
    assert_eq!(engine.mesh().trust_domain().value, "cluster.local");
    // Label semantics: any istio.io/rev enrols the namespace.
    let (ok, msg, _) = validate(
        &admission,
        &namespace("pay", json!({"istio.io/rev": "nope"})),
    )
    .await;
    assert!(ok, "{msg}");
    started.shutdown().await;
}
