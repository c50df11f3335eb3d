//! Scenario: ambient mode on a real apiserver with the Gateway API CRDs.
//!
//! An ambient namespace (`istio.io/dataplane-mode: ambient`, its Services using the waypoint
//! `waypoint` by the namespace label), the waypoint Gateway (class `istio-waypoint`, HBONE
//! listener on 15008; no istiod here, so its status is patched in with an address, as istiod
//! writes it once the waypoint runs), a Service bound to it, and a Service whose own
//! `istio.io/use-waypoint` names a waypoint that does not exist.
//!
//! What the cluster must show:
//! * admission: an AuthorizationPolicy with a selector and HTTP methods in the ambient namespace
//!   is stored with the `ap-ztunnel-http` warning naming the `targetRefs` fix; the same rules
//!   attached with `targetRefs` to the Service get no such warning; a selector
//!   RequestAuthentication gets `ra-ambient-selector`;
//! * `meshguard audit` reports the misbound `use-waypoint` (`waypoint-unbound`) on that Service,
//!   and no unknown principal for the waypoint's identity an AuthorizationPolicy names;
//! * `meshguard report --cluster` lists the waypoint (ready, the Service bound to it) in its
//!   header and marks the namespace's workload as ztunnel's.

use crate::harness::{self, Run};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

pub fn run(kubeconfig: &Path) {
    harness::block_on(scenario(kubeconfig));
}

/// `meshguard ARGS --kubeconfig …`: (exit code, stdout, stderr).
async fn meshguard(kubeconfig: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let kubeconfig = kubeconfig.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_meshguard"))
            .args(&args)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .env_remove("POD_NAMESPACE")
            .env_remove("MESHGUARD_CONFIG")
            .output()
    })
    .await
    .expect("meshguard task")
    .expect("run meshguard");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "ambient").await;
    let mg = run.serve(&[]).await;
    let _hooks = run.register(&mg).await;
    let ns = run.ns("shop");
    run.create_namespace(
        "shop",
        &[
            ("istio.io/dataplane-mode", "ambient"),
            ("istio.io/use-waypoint", "waypoint"),
        ],
    )
    .await
    .ok();

    run.step("the waypoint, Services bound to it and one misbound, a workload");
    let objects = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint, namespace: {ns}, labels: {{istio.io/waypoint-for: service}}}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: reviews, namespace: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: reviews, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  template:
    metadata: {{labels: {{app: reviews}}}}
    spec:
      serviceAccountName: reviews
      containers: [{{name: app, image: registry.example/reviews:1, ports: [{{name: http, containerPort: 9080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: {ns}}}
spec:
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080, targetPort: 9080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: orders, namespace: {ns}, labels: {{istio.io/use-waypoint: orders-waypoint}}}}
spec:
  selector: {{app: orders}}
  ports: [{{name: http, port: 8080}}]
"
    );
    run.apply(&objects, &[]).await.ok();
    // istiod writes the waypoint's address once its deployment runs; there is no istiod here.
    run.kubectl(&[
        "patch",
        "gateway",
        "waypoint",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"status":{{"addresses":[{{"type":"Hostname","value":"waypoint.{ns}.svc.cluster.local"}}]}}}}"#
        ),
    ])
    .await
    .ok();

    run.step("an L7 selector policy in the ambient namespace: warned, with the fix");
    let selector_policy = format!(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: reviews-readers, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  rules:
    - from: [{{source: {{principals: [cluster.local/ns/{ns}/sa/waypoint]}}}}]
      to: [{{operation: {{methods: [GET]}}}}]
"
    );
    let out = run.apply(&selector_policy, &[]).await.ok();
    let warnings = out.warnings();
    let ztunnel: Vec<&String> = warnings
        .iter()
        .filter(|w| w.starts_with("[ap-ztunnel-http] spec.rules[0]: "))
        .collect();
    assert_eq!(
        ztunnel.len(),
        1,
        "the ap-ztunnel-http warning: {warnings:#?}\n{out}"
    );
    // The whole finding arrives in the 256-character Warning header: the effect and the fix.
    assert!(
        ztunnel[0].contains("(methods)")
            && ztunnel[0].contains("every connection is denied")
            && ztunnel[0].contains("Fix: move HTTP rules to a targetRefs policy"),
        "{}",
        ztunnel[0]
    );
    assert!(
        run.get("AuthorizationPolicy", &ns, "reviews-readers")
            .await
            .is_some(),
        "a warning does not refuse the policy"
    );

    run.step("the same rules with targetRefs: no ambient warning");
    let targeted = format!(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: reviews-l7, namespace: {ns}}}
spec:
  targetRefs: [{{kind: Service, group: \"\", name: reviews}}]
  rules:
    - from: [{{source: {{principals: [cluster.local/ns/{ns}/sa/reviews]}}}}]
      to: [{{operation: {{methods: [GET]}}}}]
"
    );
    let out = run.apply(&targeted, &[]).await.ok();
    assert!(
        !out.warned()
            .iter()
            .any(|(r, _)| r.starts_with("ap-ztunnel")),
        "{:#?}",
        out.warned()
    );

    run.step("a selector RequestAuthentication: validates nothing in ambient");
    let ra = format!(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: reviews-jwt, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  jwtRules: [{{issuer: https://auth.example.com, jwksUri: https://auth.example.com/jwks.json, audiences: [reviews]}}]
"
    );
    let out = run.apply(&ra, &[]).await.ok();
    assert!(
        out.warned().iter().any(|(r, _)| r == "ra-ambient-selector"),
        "{:#?}",
        out.warned()
    );

    run.step("meshguard audit: the misbound use-waypoint");
    let (code, stdout, stderr) = meshguard(kubeconfig, &["audit", "--format", "json"]).await;
    assert!(code.is_some_and(|c| c <= 1), "audit failed\n{stderr}");
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("audit JSON does not parse: {e}\n{stdout}"));
    let ours: Vec<(String, String, String, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["namespace"] == ns.as_str())
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (s("kind"), s("name"), s("rule"), s("message"))
        })
        .collect();
    let unbound: Vec<&(String, String, String, String)> = ours
        .iter()
        .filter(|(_, _, r, _)| r == "waypoint-unbound")
        .collect();
    assert_eq!(unbound.len(), 1, "{ours:#?}");
    assert_eq!(
        (unbound[0].0.as_str(), unbound[0].1.as_str()),
        ("Service", "orders")
    );
    assert!(
        unbound[0]
            .3
            .contains("orders-waypoint, which does not exist")
            && unbound[0].3.contains("fail open"),
        "{}",
        unbound[0].3
    );
    assert!(
        !ours.iter().any(|(_, _, r, _)| r == "ap-unknown-principal"),
        "the waypoint's identity is a known principal: {ours:#?}"
    );
    assert!(
        ours.iter().any(|(k, n, r, _)| k == "AuthorizationPolicy"
            && n == "reviews-readers"
            && r == "ap-ztunnel-http"),
        "{ours:#?}"
    );

    run.step("meshguard report --cluster: the waypoint in the page");
    let page = run.dir.path().join("posture.html");
    let page_arg = page.to_str().expect("utf-8 path").to_owned();
    let (code, _, stderr) = meshguard(
        kubeconfig,
        &["report", "--cluster", "-n", &ns, "--html", &page_arg],
    )
    .await;
    assert_eq!(code, Some(0), "report failed\n{stderr}");
    let html = std::fs::read_to_string(&page).expect("the page");
    let wanted = format!("waypoint {ns}/waypoint");
    assert!(html.contains(&wanted), "the page names {wanted}");
    assert!(
        html.contains(&format!(
            "runs as cluster.local/ns/{ns}/sa/waypoint, for service traffic, Services reviews"
        )),
        "the page lists the waypoint's identity and the Service bound to it"
    );
    mg.terminate().await;
}
