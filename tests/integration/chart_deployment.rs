//! meshguard's engine on the chart's own Deployment and policy (rendered by the real Helm engine
//! into tests/fixtures/chart/ by `tests/chart.sh --update`; tests/chart.sh fails when they are
//! stale).
//!
//! meshguard is deliberately not in the mesh (`sidecar.istio.io/inject: "false"`: the apiserver
//! calls it directly and is no mesh peer). It is exempted twice: the webhooks' namespaceSelector
//! never sends its namespace, and the engine always exempts its own namespace (POD_NAMESPACE).
//! Apart from that intended opt-out, the Deployment must satisfy every rule.

use kube::core::admission::Operation;
use kube::core::DynamicObject;
use meshguard::config::Policy;
use meshguard::engine::Engine;
use meshguard::inventory::Inventory;
use meshguard::resource::{Kind, Review};

const DEPLOYMENT: &str = include_str!("../fixtures/chart/deployment.yaml");
const POLICY: &str = include_str!("../fixtures/chart/policy.yaml");
const NAMESPACE: &str = "meshguard";

/// Findings allowed when the namespace exemption is removed: the deliberate mesh opt-out.
const INTENDED: &[&str] = &["wl-injection-disabled", "wl-namespace-not-injected"];

fn deployment() -> DynamicObject {
    let value: serde_json::Value = serde_saphyr::from_str(DEPLOYMENT).expect("deployment YAML");
    serde_json::from_value(value).expect("deployment object")
}

fn policy() -> Policy {
    meshguard::catalogue::policy_from_yaml(POLICY, "tests/fixtures/chart/policy.yaml")
        .expect("the chart's policy is valid")
}

fn review<'a>(obj: &'a DynamicObject, op: &'a Operation) -> Review<'a> {
    Review {
        kind: Kind::Deployment,
        version: "v1",
        operation: op,
        namespace: NAMESPACE,
        name: "meshguard",
        object: Some(obj),
        old_object: None,
        dry_run: false,
        created_for: None,
    }
}

fn cluster() -> Inventory {
    // The release namespace as `helm install --create-namespace` makes it: no injection label.
    Inventory::complete(Vec::new())
        .with_namespace(NAMESPACE, &[("kubernetes.io/metadata.name", NAMESPACE)])
        .with_service_account(NAMESPACE, "meshguard")
}

#[test]
fn the_fixture_is_the_chart_deployment() {
    let obj = deployment();
    assert_eq!(obj.metadata.name.as_deref(), Some("meshguard"));
    assert_eq!(obj.metadata.namespace.as_deref(), Some(NAMESPACE));
    let labels = &obj.data["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["sidecar.istio.io/inject"], "false");
    let pod = &obj.data["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "meshguard");
    assert!(pod.get("hostNetwork").is_none());
    let annotations = &obj.data["spec"]["template"]["metadata"]["annotations"];
    assert!(
        annotations.as_object().is_some_and(|a| a
            .keys()
            .all(|k| !k.starts_with("traffic.sidecar.istio.io/"))),
        "no traffic-bypass annotations: {annotations}"
    );
}

#[test]
fn the_container_arguments_are_meshguard_flags() {
    use clap::Parser;
    let obj = deployment();
    let container = &obj.data["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg"))
        .collect();
    let cli = meshguard::cli::Cli::try_parse_from(std::iter::once("meshguard").chain(args))
        .unwrap_or_else(|e| panic!("the chart passes flags meshguard does not accept: {e}"));
    let meshguard::cli::Command::Serve(serve) = cli.command else {
        panic!("the chart must run `meshguard serve`");
    };
    assert_eq!(serve.listen.port(), 8443);
    assert_eq!(serve.admin_listen.port(), 9090);
    assert_eq!(
        serve.tls_cert.as_deref(),
        Some(std::path::Path::new("/etc/meshguard/tls/tls.crt"))
    );
    assert_eq!(
        serve.config.as_deref(),
        Some(std::path::Path::new("/etc/meshguard/policy/policy.yaml"))
    );
    // SIGTERM's drain must end before the kubelet's SIGKILL.
    let grace = obj.data["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace period");
    let sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("preStop sleep");
    assert!(serve.drain_timeout.as_secs() + sleep < grace);
}

#[test]
fn own_namespace_is_exempt_from_every_rule_and_mutation() {
    let obj = deployment();
    let engine = Engine::new(policy(), Default::default(), Some(NAMESPACE));
    for op in [Operation::Create, Operation::Update] {
        let ev = engine.evaluate(&review(&obj, &op), &cluster());
        assert!(ev.exempt, "{op:?}: the release namespace must be exempt");
        assert!(ev.findings.is_empty() && !ev.denied(), "{:?}", ev.findings);
        let m = engine.mutate(&review(&obj, &op), &cluster());
        assert!(m.exempt, "{op:?}: no mutation of meshguard itself");
    }
}

#[test]
fn without_the_exemption_only_the_intended_mesh_opt_out_is_reported() {
    let obj = deployment();
    let engine = Engine::new(policy(), Default::default(), None);
    for op in [Operation::Create, Operation::Update] {
        let ev = engine.evaluate(&review(&obj, &op), &cluster());
        assert!(!ev.exempt);
        let unexpected: Vec<String> = ev
            .findings
            .iter()
            .filter(|f| !INTENDED.contains(&f.rule))
            .map(|f| f.to_string())
            .collect();
        assert!(
            unexpected.is_empty(),
            "meshguard's Deployment violates its own rules:\n{}",
            unexpected.join("\n")
        );
    }
}
