//! Captured AdmissionReviews (tests/fixtures/admission/, see its README) through
//! `Admission::handle`, with a `Inventory` as the cluster: the tutorial's namespace, workloads
//! and pods flow the way the tutorial intends once meshguard is in the path.

use base64::Engine as _;
use kube::core::DynamicObject;
use meshguard::admission::{Admission, Webhook};
use meshguard::config::Policy;
use meshguard::context::ClusterSource;
use meshguard::engine::Engine;
use meshguard::inventory::Inventory;
use meshguard::metrics::Metrics;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/admission/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn admission(cluster: Inventory, policy: Policy) -> Admission {
    let source: Arc<dyn ClusterSource> = Arc::new(cluster);
    Admission::new(
        meshguard::engine::EngineHandle::new(Engine::new(
            policy,
            Default::default(),
            Some("meshguard"),
        )),
        Metrics::new().expect("metrics"),
        source,
    )
}

/// The namespace of the tutorial, labeled for injection, with the given ServiceAccounts.
fn production(accounts: &[&str]) -> Inventory {
    let mut c = Inventory::complete(Vec::new()).with_namespace(
        "production",
        &[
            ("istio-injection", "enabled"),
            ("kubernetes.io/metadata.name", "production"),
        ],
    );
    for a in accounts {
        c = c.with_service_account("production", a);
    }
    c
}

/// Send one review and return the `response` object.
async fn send(a: &Admission, webhook: Webhook, review: &Value) -> Value {
    let body = serde_json::to_vec(review).expect("encode");
    let out = a
        .handle(webhook, &body, Duration::from_secs(10))
        .await
        .expect("answered");
    let v: Value = serde_json::from_slice(&out).expect("response json");
    assert_eq!(v["response"]["uid"], review["request"]["uid"]);
    v["response"].clone()
}

/// The JSON patch of a mutating response (empty when none).
fn patch_of(resp: &Value) -> Vec<Value> {
    match resp["patch"].as_str() {
        None => Vec::new(),
        Some(b64) => {
            assert_eq!(resp["patchType"], "JSONPatch");
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64");
            serde_json::from_slice(&raw).expect("patch json")
        }
    }
}

/// Apply a response's patch to the review's object, returning the review with the patched
/// object (what the apiserver sends next: to the validating webhook, or on reinvocation).
fn patched(review: &Value, resp: &Value) -> Value {
    let ops: json_patch::Patch =
        serde_json::from_value(Value::Array(patch_of(resp))).expect("RFC 6902 patch");
    let mut next = review.clone();
    json_patch::patch(&mut next["request"]["object"], &ops).expect("patch applies");
    // The object must still be a well-formed Kubernetes object.
    let _: DynamicObject =
        serde_json::from_value(next["request"]["object"].clone()).expect("object");
    next
}

fn message(resp: &Value) -> String {
    resp["status"]["message"].as_str().unwrap_or("").to_owned()
}

fn warnings(resp: &Value) -> Vec<String> {
    resp["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn deployment_without_service_account_is_patched_when_the_account_exists() {
    let a = admission(production(&["frontend"]), Policy::default());
    let review = fixture("deployment-create.json");
    let resp = send(&a, Webhook::Mutate, &review).await;
    assert_eq!(resp["allowed"], true);
    assert_eq!(
        patch_of(&resp),
        vec![
            json!({"op": "add", "path": "/spec/template/spec/serviceAccountName", "value": "frontend"})
        ]
    );
    let next = patched(&review, &resp);
    assert_eq!(
        next["request"]["object"]["spec"]["template"]["spec"]["serviceAccountName"],
        "frontend"
    );
    // Reinvocation: nothing more to patch.
    let again = send(&a, Webhook::Mutate, &next).await;
    assert!(patch_of(&again).is_empty(), "{again}");
    // The validating webhook then admits it.
    let resp = send(&a, Webhook::Validate, &next).await;
    assert_eq!(resp["allowed"], true, "{}", message(&resp));
    assert!(warnings(&resp).is_empty(), "{:?}", warnings(&resp));
}

#[tokio::test]
async fn deployment_without_service_account_is_denied_naming_the_account_to_create() {
    let a = admission(production(&[]), Policy::default());
    let review = fixture("deployment-create.json");
    let resp = send(&a, Webhook::Mutate, &review).await;
    assert_eq!(resp["allowed"], true);
    assert!(patch_of(&resp).is_empty(), "no account, no patch: {resp}");
    let resp = send(&a, Webhook::Validate, &review).await;
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 403);
    let msg = message(&resp);
    assert!(msg.starts_with("meshguard: 1 violation:\n[wl-default-service-account] spec.template.spec.serviceAccountName: no serviceAccountName is set"), "{msg}");
    assert!(
        msg.contains("Fix: create ServiceAccount \"frontend\" in namespace \"production\" (kubectl -n production create serviceaccount frontend) and set spec.template.spec.serviceAccountName: frontend"),
        "{msg}"
    );
    // After `kubectl patch deployment frontend ... serviceAccountName: frontend` it is admitted.
    let resp = send(
        &a,
        Webhook::Validate,
        &fixture("deployment-update-serviceaccountname-patch.json"),
    )
    .await;
    assert_eq!(resp["allowed"], true, "{}", message(&resp));
}

#[tokio::test]
async fn every_template_kind_is_patched_at_its_own_path() {
    let a = admission(
        production(&["frontend", "legacy", "migrate"]),
        Policy::default(),
    );
    for (file, path, value) in [
        (
            "deployment-create.json",
            "/spec/template/spec/serviceAccountName",
            "frontend",
        ),
        (
            "replicaset-create-by-deployment-controller.json",
            "/spec/template/spec/serviceAccountName",
            "frontend",
        ),
        (
            "replicationcontroller-create.json",
            "/spec/template/spec/serviceAccountName",
            "legacy",
        ),
        (
            "job-create.json",
            "/spec/template/spec/serviceAccountName",
            "migrate",
        ),
    ] {
        let review = fixture(file);
        let resp = send(&a, Webhook::Mutate, &review).await;
        assert_eq!(
            patch_of(&resp),
            vec![json!({"op": "add", "path": path, "value": value})],
            "{file}"
        );
        let next = patched(&review, &resp);
        assert!(
            patch_of(&send(&a, Webhook::Mutate, &next).await).is_empty(),
            "{file}"
        );
    }
    // Workloads that name their own account, and Pods, are left alone.
    for file in [
        "cronjob-create.json",
        "statefulset-create.json",
        "pod-create-by-replicaset-mutating.json",
        "pod-create-bare-no-serviceaccount.json",
    ] {
        let resp = send(&a, Webhook::Mutate, &fixture(file)).await;
        assert!(patch_of(&resp).is_empty(), "{file}: {resp}");
    }
}

#[tokio::test]
async fn namespace_gets_its_injection_label() {
    let a = admission(Inventory::complete(Vec::new()), Policy::default());
    let review = fixture("namespace-create.json");
    // Without the mutation, validation refuses the bare namespace.
    let resp = send(&a, Webhook::Validate, &review).await;
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).contains("[ns-injection-missing] metadata.labels: namespace \"production\" has no injection label"), "{}", message(&resp));

    let resp = send(&a, Webhook::Mutate, &review).await;
    assert_eq!(
        patch_of(&resp),
        vec![json!({"op": "add", "path": "/metadata/labels/istio-injection", "value": "enabled"})]
    );
    let next = patched(&review, &resp);
    assert_eq!(
        next["request"]["object"]["metadata"]["labels"],
        json!({"kubernetes.io/metadata.name": "production", "istio-injection": "enabled"})
    );
    assert!(patch_of(&send(&a, Webhook::Mutate, &next).await).is_empty());
    let resp = send(&a, Webhook::Validate, &next).await;
    assert_eq!(resp["allowed"], true, "{}", message(&resp));

    // The tutorial's own `kubectl label namespace production istio-injection=enabled`.
    let resp = send(
        &a,
        Webhook::Validate,
        &fixture("namespace-update-labels.json"),
    )
    .await;
    assert_eq!(resp["allowed"], true);
}

#[tokio::test]
async fn namespace_with_a_revision_gets_istio_io_rev() {
    let policy = meshguard::catalogue::policy_from_yaml("injectionRevision: stable\n", "test")
        .expect("policy");
    let a = admission(Inventory::complete(Vec::new()), policy);
    let review = fixture("namespace-create.json");
    let resp = send(&a, Webhook::Mutate, &review).await;
    assert_eq!(
        patch_of(&resp),
        vec![json!({"op": "add", "path": "/metadata/labels/istio.io~1rev", "value": "stable"})]
    );
    let next = patched(&review, &resp);
    assert_eq!(
        next["request"]["object"]["metadata"]["labels"]["istio.io/rev"],
        "stable"
    );
}

#[tokio::test]
async fn disabling_injection_on_the_namespace_is_refused_not_overridden() {
    let a = admission(Inventory::complete(Vec::new()), Policy::default());
    let review = fixture("namespace-update-injection-disabled.json");
    let resp = send(&a, Webhook::Mutate, &review).await;
    assert!(
        patch_of(&resp).is_empty(),
        "never overrides an explicit disabled"
    );
    let resp = send(&a, Webhook::Validate, &review).await;
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).contains("[ns-injection-disabled] metadata.labels[\"istio-injection\"]: istio-injection=disabled turns sidecar injection off"), "{}", message(&resp));

    // Removing the label (`kubectl label namespace production istio-injection-`) is refused too.
    let mut removal = fixture("namespace-update-labels.json");
    let labels = &mut removal["request"]["object"]["metadata"]["labels"];
    labels
        .as_object_mut()
        .expect("labels")
        .remove("istio-injection");
    removal["request"]["oldObject"]["metadata"]["labels"]["istio-injection"] = json!("enabled");
    assert!(patch_of(&send(&a, Webhook::Mutate, &removal).await).is_empty());
    let resp = send(&a, Webhook::Validate, &removal).await;
    assert_eq!(resp["allowed"], false);
    assert!(
        message(&resp)
            .contains("this update removes istio-injection=enabled from namespace \"production\""),
        "{}",
        message(&resp)
    );

    // In warn mode the same change passes with a warning.
    let warn = meshguard::catalogue::policy_from_yaml("mode: warn\n", "test").expect("policy");
    let a = admission(Inventory::complete(Vec::new()), warn);
    let resp = send(&a, Webhook::Validate, &removal).await;
    assert_eq!(resp["allowed"], true);
    assert!(warnings(&resp)[0].starts_with("[ns-injection-missing]"));
}

#[tokio::test]
async fn root_namespace_is_exempt() {
    let a = admission(Inventory::complete(Vec::new()), Policy::default());
    let review = fixture("namespace-create-istio-system.json");
    assert!(patch_of(&send(&a, Webhook::Mutate, &review).await).is_empty());
    assert_eq!(send(&a, Webhook::Validate, &review).await["allowed"], true);
}

#[tokio::test]
async fn pod_with_injection_disabled_is_refused() {
    let a = admission(production(&["frontend"]), Policy::default());
    let resp = send(
        &a,
        Webhook::Validate,
        &fixture("pod-create-injection-disabled-hostnetwork.json"),
    )
    .await;
    assert_eq!(resp["allowed"], false);
    let msg = message(&resp);
    assert!(msg.contains("[wl-injection-disabled] metadata.labels[\"sidecar.istio.io/inject\"]: sidecar.istio.io/inject: \"false\" keeps the Istio sidecar out of this pod"), "{msg}");
    assert!(msg.contains("[wl-traffic-bypass] metadata.annotations[\"traffic.sidecar.istio.io/excludeOutboundIPRanges\"]"), "{msg}");
    // hostNetwork is a warning; the deny lists only deny-level findings.
    assert!(!msg.contains("wl-host-network"));

    // The DaemonSet template carries the (deprecated) annotation: refused as well.
    let resp = send(&a, Webhook::Validate, &fixture("daemonset-create.json")).await;
    assert_eq!(resp["allowed"], false);
    let msg = message(&resp);
    assert!(msg.contains("[wl-injection-disabled] spec.template.metadata.annotations[\"sidecar.istio.io/inject\"]"), "{msg}");
}

#[tokio::test]
async fn injected_pods_pass_and_uninjected_pods_are_caught() {
    let a = admission(production(&["frontend", "backend"]), Policy::default());
    for file in [
        "pod-create-with-istio-proxy-sidecar.json",
        "pod-create-with-native-sidecar.json",
    ] {
        let resp = send(&a, Webhook::Validate, &fixture(file)).await;
        assert_eq!(resp["allowed"], true, "{file}: {}", message(&resp));
    }
    // Captured without an injector in the path: the pod should have had a sidecar.
    let resp = send(
        &a,
        Webhook::Validate,
        &fixture("pod-create-by-replicaset-with-serviceaccount.json"),
    )
    .await;
    assert_eq!(resp["allowed"], false);
    let msg = message(&resp);
    assert!(msg.starts_with("meshguard: 1 violation:\n[wl-missing-sidecar] spec.containers: namespace \"production\" is labeled for injection, but the pod has no istio-proxy container"), "{msg}");
    // A controller-made pod of the unpatched Deployment: still refused for the missing sidecar;
    // the default account is named too, as a warning inherited from its ReplicaSet's template
    // (the ReplicaSet controller's CREATE).
    let review = fixture("pod-create-by-replicaset.json");
    let resp = send(&a, Webhook::Validate, &review).await;
    assert_eq!(resp["allowed"], false);
    assert!(
        message(&resp).contains("[wl-missing-sidecar]"),
        "{}",
        message(&resp)
    );
    let warned = warnings(&resp);
    assert!(
        warned.iter().any(|w| w.starts_with("[wl-default-service-account] spec.serviceAccountName: the pod runs as the \"default\" ServiceAccount")),
        "{warned:?}"
    );
    let all = resp["auditAnnotations"]["violations"]
        .as_str()
        .expect("audit annotation");
    assert!(
        all.contains("[wl-default-service-account] spec.serviceAccountName (warn)"),
        "{all}"
    );
    assert!(
        all.contains("[wl-missing-sidecar] spec.containers (deny)"),
        "{all}"
    );
    // The whole finding (too long for a warning header) names the account to use and why it
    // only warns.
    let body = serde_json::to_vec(&review).expect("json");
    let req: kube::core::admission::AdmissionRequest<meshguard::resource::ReviewObject> =
        meshguard::admission::decode_review(&body)
            .expect("decodes")
            .try_into()
            .expect("request");
    let r = meshguard::admission::recognise(&req).expect("a pod");
    let eval = a.engine.current().evaluate(&r, a.cluster.view());
    let full = eval
        .findings
        .iter()
        .find(|f| f.rule == "wl-default-service-account")
        .map(ToString::to_string)
        .expect("finding");
    assert!(full.contains("Fix: set spec.serviceAccountName: frontend (ServiceAccount production/frontend exists)"), "{full}");
    assert!(
        full.contains("inherited from the pod template of its ReplicaSet"),
        "{full}"
    );
    // Pod UPDATEs are not injection events.
    let resp = send(&a, Webhook::Validate, &fixture("pod-update-labels.json")).await;
    assert_eq!(resp["allowed"], true, "{}", message(&resp));
    // An "istio-proxy" that is not Istio's proxy: the pod only looks injected.
    let mut spoofed = fixture("pod-create-with-istio-proxy-sidecar.json");
    let containers = spoofed["request"]["object"]["spec"]["containers"]
        .as_array_mut()
        .expect("containers");
    let i = containers
        .iter()
        .position(|c| c["name"] == "istio-proxy")
        .expect("istio-proxy");
    containers[i]["image"] = json!("busybox:1.36");
    let resp = send(&a, Webhook::Validate, &spoofed).await;
    assert_eq!(resp["allowed"], false, "denied: {}", message(&resp));
    let m = message(&resp);
    assert!(
        m.contains(&format!(
            "[wl-proxy-image] spec.containers[{i}].image: container \"istio-proxy\" runs \"busybox:1.36\""
        )),
        "{m}"
    );
    // No longer Istio's proxy, its UID 1337 is an application's that skips the capture.
    assert!(
        m.contains(&format!(
            "[wl-proxy-uid] spec.containers[{i}].securityContext.runAsUser"
        )),
        "{m}"
    );
}

#[tokio::test]
async fn unknown_namespace_follows_on_lookup_failure() {
    let unknown = Inventory::partial(Vec::new());
    let review = fixture("cronjob-create.json");
    let a = admission(unknown.clone(), Policy::default());
    let resp = send(&a, Webhook::Validate, &review).await;
    assert_eq!(resp["allowed"], false);
    assert!(
        message(&resp)
            .contains("[wl-namespace-not-injected] metadata.namespace: namespace labels unknown"),
        "{}",
        message(&resp)
    );
    let allow =
        meshguard::catalogue::policy_from_yaml("onLookupFailure: allow\n", "test").expect("policy");
    let a = admission(unknown, allow);
    let resp = send(&a, Webhook::Validate, &review).await;
    assert_eq!(resp["allowed"], true, "{}", message(&resp));
}

#[tokio::test]
async fn services_without_protocol_names_are_warned() {
    let a = admission(production(&[]), Policy::default());
    let resp = send(&a, Webhook::Validate, &fixture("service-create.json")).await;
    assert_eq!(resp["allowed"], true);
    let w = warnings(&resp);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(
            "[svc-port-protocol] spec.ports[0]: port 80 has no name and no appProtocol"
        ),
        "{w:?}"
    );
    let resp = send(
        &a,
        Webhook::Validate,
        &fixture("service-create-multiport-headless.json"),
    )
    .await;
    let w = warnings(&resp);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("[svc-port-protocol] spec.ports[1].name: port 9187 is named \"metrics\""),
        "{w:?}"
    );
}
