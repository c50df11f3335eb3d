//! The tutorial scenario (tests/fixtures/tutorial, a copy of the published manifests): every
//! Istio security object is applied as a CREATE through the engine with the default policy and
//! no cluster. Nothing is denied. The tutorial's own slips come out as warnings: the exact-match
//! paths "/api/" and "/admin/" in backend-rbac (`ap-exact-path-trailing-slash`), and the quoted
//! names in `request.headers["x-api-version"]` and `request.auth.claims["role"]` /
//! `["sub"]` (`ap-quoted-condition-key`: Istio keeps the quotes, so those conditions never match
//! and the ALLOW rules they sit in never admit anything). The source.ip rule of
//! frontend-external gets the informational (audit) gateway hint.

use kube::core::DynamicObject;
use meshguard::config::Policy;
use meshguard::context::NoCluster;
use meshguard::engine::Engine;
use meshguard::resource::{Kind, Review};
use serde_json::Value;
use std::path::Path;

const ISTIO_KINDS: &[Kind] = &[
    Kind::PeerAuthentication,
    Kind::AuthorizationPolicy,
    Kind::RequestAuthentication,
    Kind::DestinationRule,
];

/// `(file, namespace/name, finding as rendered)` for every finding of the scenario.
fn findings() -> (usize, Vec<(String, String, String)>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tutorial");
    let engine = Engine::new(Policy::default(), Default::default(), None);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tutorial fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut objects = 0;
    let mut out = Vec::new();
    for path in files {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let text = std::fs::read_to_string(&path).expect("readable");
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for doc in docs {
            let api_version = doc["apiVersion"].as_str().unwrap_or("").to_owned();
            let kind = Kind::from_api_version(&api_version, doc["kind"].as_str().unwrap_or(""));
            let Some(kind) = kind.filter(|k| ISTIO_KINDS.contains(k)) else {
                continue;
            };
            let obj: DynamicObject =
                serde_json::from_value(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            let version = api_version.rsplit('/').next().unwrap_or("v1").to_owned();
            let name = obj.metadata.name.clone().unwrap_or_default();
            let namespace = obj.metadata.namespace.clone().unwrap_or_default();
            let review = Review::create(kind, &version, &namespace, &name, &obj);
            objects += 1;
            let eval = engine.evaluate(&review, &NoCluster);
            assert!(!eval.exempt, "{file}: Istio objects are never exempt");
            for f in eval.findings {
                out.push((
                    file.clone(),
                    format!("{namespace}/{name}"),
                    format!("{} {f}", f.action),
                ));
            }
        }
    }
    (objects, out)
}

#[test]
fn tutorial_yields_exactly_the_expected_findings() {
    let (objects, got) = findings();
    // 3 PeerAuthentications, 2 DestinationRules, 4 AuthorizationPolicies + 1 in jwt-auth.yaml,
    // 1 RequestAuthentication.
    assert_eq!(
        objects, 11,
        "the tutorial's Istio objects were not all read"
    );
    let gateway_hint = "audit [ap-source-ip-behind-gateway] spec.rules[1].when[0].key: ipBlocks and source.ip match the peer address of the connection: for traffic through an ingress gateway (or any proxy) that is the proxy pod's IP, not the original client's. Fix: for external client addresses use remoteIpBlocks in a policy on the ingress gateway; for in-mesh callers match principals instead of IPs";
    let quoted = |what: &str, fix: &str| {
        format!("warn [ap-quoted-condition-key] {{}}: quoted {what} name: Istio keeps the quotes, so this condition never matches and the ALLOW rule never applies. Fix: write key: {fix}")
    };
    let expected = vec![
        (
            "authz-frontend-backend.yaml".to_owned(),
            "production/frontend-to-backend".to_owned(),
            quoted("header", "request.headers[x-api-version]")
                .replace("{}", "spec.rules[0].when[0].key"),
        ),
        (
            "authz-rbac.yaml".to_owned(),
            "production/backend-rbac".to_owned(),
            "warn [ap-exact-path-trailing-slash] spec.rules[1].to[0].operation.paths[0]: \"/api/\" has no wildcard: it matches only the exact path \"/api/\", not \"/api/<anything>\". Fix: write \"/api/*\" to match \"/api/\" and everything below it".to_owned(),
        ),
        (
            "authz-rbac.yaml".to_owned(),
            "production/backend-rbac".to_owned(),
            "warn [ap-exact-path-trailing-slash] spec.rules[1].to[0].operation.paths[1]: \"/admin/\" has no wildcard: it matches only the exact path \"/admin/\", not \"/admin/<anything>\". Fix: write \"/admin/*\" to match \"/admin/\" and everything below it".to_owned(),
        ),
        (
            "authz-rbac.yaml".to_owned(),
            "production/frontend-external".to_owned(),
            gateway_hint.to_owned(),
        ),
        (
            "jwt-auth.yaml".to_owned(),
            "production/jwt-authz".to_owned(),
            quoted("claim", "request.auth.claims[role]")
                .replace("{}", "spec.rules[0].when[0].key"),
        ),
        (
            "jwt-auth.yaml".to_owned(),
            "production/jwt-authz".to_owned(),
            quoted("claim", "request.auth.claims[sub]")
                .replace("{}", "spec.rules[0].when[1].key"),
        ),
    ];
    assert_eq!(got, expected, "\n{got:#?}");
    assert!(
        !got.iter().any(|(_, _, f)| f.starts_with("deny")),
        "nothing in the tutorial is denied"
    );
}
