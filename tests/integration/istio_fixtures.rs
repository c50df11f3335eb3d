//! Captured AdmissionReviews (tests/fixtures/admission, see its README.md) for
//! AuthorizationPolicy, RequestAuthentication and DestinationRule, run through the admission
//! front end exactly as kube-apiserver sent them: allowed or denied, and which rules fired.

use meshguard::admission::{Admission, Webhook, AUDIT_ANNOTATION};
use meshguard::config::Policy;
use meshguard::context::NoCluster;
use meshguard::engine::Engine;
use meshguard::metrics::Metrics;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

struct Answer {
    allowed: bool,
    /// Rule ids of every finding, in order (from the audit annotation).
    rules: Vec<String>,
    warnings: Vec<String>,
    message: String,
}

async fn review(file: &str) -> Answer {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(file);
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let admission = Admission::new(
        meshguard::engine::EngineHandle::new(Engine::new(
            Policy::default(),
            Default::default(),
            None,
        )),
        Metrics::new().expect("metrics"),
        Arc::new(NoCluster),
    );
    let out = admission
        .handle(Webhook::Validate, &body, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let v: Value = serde_json::from_slice(&out).expect("response is JSON");
    let resp = &v["response"];
    let rules = resp["auditAnnotations"][AUDIT_ANNOTATION]
        .as_str()
        .map(|s| serde_json::from_str::<Vec<String>>(s).expect("annotation is a JSON list"))
        .unwrap_or_default()
        .iter()
        .map(|f| {
            f.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    Answer {
        allowed: resp["allowed"].as_bool().expect("allowed is set"),
        rules,
        warnings: resp["warnings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|w| w.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        message: resp["status"]["message"].as_str().unwrap_or("").to_owned(),
    }
}

/// (file, allowed, rule ids of all findings in catalogue order).
const CASES: &[(&str, bool, &[&str])] = &[
    (
        "authorizationpolicy-create-deny-all-v1beta1.json",
        true,
        &[],
    ),
    (
        "authorizationpolicy-create-dryrun.json",
        false,
        &["ap-allow-all"],
    ),
    // The tutorial quotes claim and header names (request.auth.claims["role"]): Istio keeps the
    // quotes, so those conditions never match.
    (
        "authorizationpolicy-create-jwt-v1beta1.json",
        true,
        &["ap-quoted-condition-key", "ap-quoted-condition-key"],
    ),
    (
        "authorizationpolicy-create-rbac-v1beta1.json",
        true,
        &[
            "ap-exact-path-trailing-slash",
            "ap-exact-path-trailing-slash",
        ],
    ),
    (
        "authorizationpolicy-create-server-side-apply.json",
        false,
        &["ap-allow-all"],
    ),
    (
        "authorizationpolicy-create-source-ip-v1beta1.json",
        true,
        &["ap-source-ip-behind-gateway"],
    ),
    (
        "authorizationpolicy-create-v1-allow-all.json",
        false,
        &["ap-allow-all"],
    ),
    (
        "authorizationpolicy-create-v1-bad-principals.json",
        false,
        &[
            "ap-wildcard-source",
            "ap-wildcard-source",
            "ap-principal-format",
            "ap-exact-path-trailing-slash",
            "ap-unknown-condition-key",
        ],
    ),
    (
        "authorizationpolicy-create-v1beta1.json",
        true,
        &["ap-quoted-condition-key"],
    ),
    (
        "authorizationpolicy-create-warned.json",
        true,
        &["ap-wildcard-source"],
    ),
    // The namespace controller emptying a terminating namespace is let through: refusing it
    // would leave the namespace stuck Terminating (a user's delete of the same policy is denied).
    (
        "authorizationpolicy-delete-by-namespace-controller.json",
        true,
        &[],
    ),
    (
        "authorizationpolicy-delete.json",
        false,
        &["ap-deny-all-delete"],
    ),
    (
        "authorizationpolicy-update-client-side-apply.json",
        true,
        &["ap-quoted-condition-key"],
    ),
    (
        "requestauthentication-create-v1-insecure-jwks.json",
        false,
        &["ra-insecure-jwks-uri", "ra-missing-audiences"],
    ),
    ("requestauthentication-create-v1beta1.json", true, &[]),
    ("requestauthentication-delete.json", true, &[]),
    (
        "destinationrule-create-v1-tls-disabled-subsets.json",
        false,
        &[
            "dr-tls-disabled",
            "dr-tls-not-istio-mutual",
            "dr-tls-not-istio-mutual",
            "dr-tls-no-verification",
        ],
    ),
    (
        "destinationrule-create-v1alpha3-external-host.json",
        true,
        &["dr-tls-no-verification"],
    ),
    (
        "destinationrule-create-v1beta1-connection-pool.json",
        true,
        &[],
    ),
    ("destinationrule-create-v1beta1.json", true, &[]),
    (
        "destinationrule-update-json-patch-tls-disable.json",
        false,
        &["dr-tls-disabled"],
    ),
];

#[tokio::test]
async fn captured_reviews() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.ends_with(".json")
                && [
                    "authorizationpolicy-",
                    "requestauthentication-",
                    "destinationrule-",
                ]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CASES.iter().map(|(f, ..)| (*f).to_owned()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every captured Istio review has an expectation"
    );

    let mut failures = Vec::new();
    for (file, allowed, rules) in CASES {
        let a = review(file).await;
        if a.allowed != *allowed || a.rules != *rules {
            failures.push(format!(
                "{file}: allowed {} rules {:?}, expected allowed {allowed} rules {rules:?}",
                a.allowed, a.rules
            ));
        }
        // kubectl shows warnings from the Warning header, cut at 256 characters: the fix must fit.
        for w in &a.warnings {
            if w.chars().count() > 256 || !w.contains(". Fix: ") {
                failures.push(format!("{file}: warning truncated or without a fix: {w:?}"));
            }
        }
        if !a.allowed && !a.message.starts_with("meshguard: ") {
            failures.push(format!("{file}: deny message {:?}", a.message));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn deny_and_warning_texts() {
    let a = review("authorizationpolicy-create-v1-bad-principals.json").await;
    assert!(a.message.contains(
        "[ap-principal-format] spec.rules[0].from[0].source.principals[0]: principal \"spiffe://cluster.local/ns/production/sa/frontend\" must not start with spiffe:// (Istio compares the identity without the scheme, so it never matches). Fix: write \"cluster.local/ns/production/sa/frontend\""
    ), "{}", a.message);
    assert!(a.message.contains(
        "[ap-unknown-condition-key] spec.rules[0].when[1].key: condition key \"source.unknownKey\""
    ));
    assert!(
        a.warnings
            .iter()
            .any(|w| w
                .starts_with("[ap-wildcard-source] spec.rules[0].from[0].source.namespaces[0]:"))
    );

    let a = review("requestauthentication-create-v1-insecure-jwks.json").await;
    assert!(a.message.contains("[ra-insecure-jwks-uri] spec.jwtRules[0].jwksUri: jwksUri \"http://issuer.example.com/jwks.json\" is fetched over plaintext http"));
    assert!(a.message.contains(
        "Fix: serve the JWKS over TLS and write \"https://issuer.example.com/jwks.json\""
    ));
    assert_eq!(a.warnings.len(), 1);

    let a = review("destinationrule-update-json-patch-tls-disable.json").await;
    assert!(a.message.contains("[dr-tls-disabled] spec.trafficPolicy.tls.mode: DISABLE sends plaintext to in-mesh host \"backend.production.svc.cluster.local\""));
}
