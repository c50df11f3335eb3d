//! Scenario: impact at admission on a real API server — with `impact: warn` in the policy,
//! `meshguard serve` watches workloads and security policies, and an AuthorizationPolicy UPDATE
//! that widens what a caller may send is admitted with a warning naming the caller, the
//! workload port and the requests it opens; an UPDATE that narrows is admitted without one; a
//! PeerAuthentication that stops requiring mTLS warns that plaintext reaches the ports; and
//! `meshguard_impact_total` counts the changes that opened something.

use crate::harness::{self, Run, PATIENCE};
use std::path::Path;

pub fn run(kubeconfig: &Path) {
    harness::block_on(scenario(kubeconfig));
}

fn deployment(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: {ns}}}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  replicas: 0\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      serviceAccountName: {name}\n      containers: [{{name: {name}, image: example/{name}:1, ports: [{{containerPort: 8080}}]}}]\n"
    )
}

fn callers(ns: &str, paths: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: payments-callers, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: payments}}}}\n  rules:\n  - from: [{{source: {{principals: [cluster.local/ns/{ns}/sa/web]}}}}]\n    to: [{{operation: {{methods: [GET], paths: [{paths}]}}}}]\n"
    )
}

fn pa(ns: &str, mode: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: {ns}}}\nspec: {{mtls: {{mode: {mode}}}}}\n"
    )
}

fn impact_lines(out: &harness::Kubectl) -> Vec<String> {
    out.warnings()
        .into_iter()
        .filter_map(|w| w.strip_prefix("[impact] ").map(str::to_owned))
        .collect()
}

async fn scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "impact").await;
    let config = run.dir.path().join("policy.yaml");
    std::fs::write(
        &config,
        "impact: warn\nrules:\n  pa-permissive-mtls:\n    action: warn\n  pa-weakening-delete:\n    action: warn\n",
    )
    .expect("policy file");
    let mg = run
        .serve(&["--config", config.to_str().expect("utf-8 path")])
        .await;
    let _hooks = run.register(&mg).await;
    run.create_namespace("shop", &[("istio-injection", "enabled")])
        .await
        .ok();
    let shop = run.ns("shop");
    let deny_all = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: deny-all, namespace: {shop}}}\nspec: {{}}\n"
    );
    for yaml in [
        deployment(&shop, "web"),
        deployment(&shop, "payments"),
        pa(&shop, "STRICT"),
        deny_all,
        callers(&shop, "/api/*"),
    ] {
        run.apply(&yaml, &[]).await.ok();
    }

    // The watch has the workloads and policies once a widening dry run warns.
    let want = format!(
        "this change lets cluster.local/ns/{shop}/sa/web call payments:8080 (GET /admin/*)"
    );
    let widened = callers(&shop, "/api/*, /admin/*");
    harness::eventually("the impact watch has the shop", PATIENCE, || async {
        let out = run.apply(&widened, &["--dry-run=server"]).await;
        (out.success() && impact_lines(&out) == [want.clone()])
            .then_some(())
            .ok_or(format!("{out}"))
    })
    .await;
    run.step("the impact watch synced");

    // The UPDATE that widens: admitted, with the warning.
    let out = run.apply(&widened, &[]).await.ok();
    assert_eq!(impact_lines(&out), [want], "{out}");
    let stored = run
        .get("AuthorizationPolicy", &shop, "payments-callers")
        .await
        .expect("stored");
    assert_eq!(
        stored.data["spec"]["rules"][0]["to"][0]["operation"]["paths"],
        serde_json::json!(["/api/*", "/admin/*"])
    );

    // Narrowing opens nothing: admitted, no impact warning. (The watch sees the stored
    // policy by now or not: the review's old object decides what was allowed before.)
    let out = run.apply(&callers(&shop, "/api/*"), &[]).await.ok();
    assert!(impact_lines(&out).is_empty(), "{out}");

    // STRICT → PERMISSIVE: pa-permissive-mtls and pa-weakening-delete warn (the policy lowers
    // them to warn) and impact says plaintext now reaches both workloads' port.
    let out = run.apply(&pa(&shop, "PERMISSIVE"), &[]).await.ok();
    let lines = impact_lines(&out);
    for w in ["payments", "web"] {
        let line = format!("this change lets plaintext reach {w}:8080: mTLS STRICT → PERMISSIVE");
        assert!(lines.contains(&line), "{line}:\n{out}");
    }
    assert!(
        out.warned().iter().any(|(r, _)| r == "pa-permissive-mtls"),
        "{out}"
    );
    let counted = mg.metric_sum("meshguard_impact_total", &[("kind", "AuthorizationPolicy")]);
    assert!(counted >= 2.0, "dry run and update counted: {counted}");
    assert!(mg.metric_sum("meshguard_impact_total", &[("kind", "PeerAuthentication")]) >= 1.0);
}
