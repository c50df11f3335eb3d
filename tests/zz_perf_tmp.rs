use kube::core::admission::Operation;
use kube::core::DynamicObject;
use meshguard::config::Policy;
use meshguard::context::NoCluster;
use meshguard::engine::Engine;
use meshguard::resource::{Kind, Review};
use std::time::Instant;

#[test]
fn perf() {
    let engine = Engine::new(Policy::default(), None);
    for f in [
        "istio-validation-authorizationpolicy/resources/01-authorizationpolicy-full.yaml",
        "istio-validation-requestauthentication/resources/01-requestauthentication-full.yaml",
        "kyverno-enforce-tls-hosts-host-subnets/resources/03-destinationrule-good-dr01.yaml",
        "istio-validation-peerauthentication/resources/01-peerauthentication-full.yaml",
    ] {
        let text = std::fs::read_to_string(format!(
            "{}/tests/conformance/{f}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let kind = Kind::from_api_version(
            v["apiVersion"].as_str().unwrap(),
            v["kind"].as_str().unwrap(),
        )
        .unwrap();
        let obj: DynamicObject = serde_json::from_value(v).unwrap();
        let op = Operation::Create;
        let r = Review {
            kind,
            version: "v1",
            operation: &op,
            namespace: "prod",
            name: "x",
            object: Some(&obj),
            old_object: None,
            dry_run: false,
        };
        let n = 20000;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(engine.evaluate(&r, &NoCluster));
        }
        println!(
            "{f}: {:.2} us/review",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
}
