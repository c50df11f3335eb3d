//! Scenario 6: `meshguard audit` against the live cluster. Violations are created where no
//! webhook looks (the run registers none), as they would exist before meshguard was installed:
//! a namespace without an injection label, a Deployment on the `default` ServiceAccount, a
//! PERMISSIVE namespace-wide PeerAuthentication and an allow-all AuthorizationPolicy.
//!
//! What the audit shows: every one of them, by kind, name and rule, in JSON that parses and in
//! text; exit code 1 (deny-level findings).

use crate::harness::{self, Run};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

pub fn run(kubeconfig: &Path) {
    harness::block_on(scenario(kubeconfig));
}

/// `meshguard audit --kubeconfig … --format FORMAT`: (exit code, stdout, stderr).
async fn audit(kubeconfig: &Path, format: &str) -> (Option<i32>, String, String) {
    let kubeconfig = kubeconfig.to_owned();
    let format = format.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_meshguard"))
            .arg("audit")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--format", &format])
            .env_remove("POD_NAMESPACE")
            .env_remove("MESHGUARD_CONFIG")
            .output()
    })
    .await
    .expect("audit task")
    .expect("run meshguard audit");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "audit").await;
    let ns = run.ns("legacy");
    run.create_namespace("legacy", &[]).await.ok();
    let manifests = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers: [{{name: api, image: nginx:1.25}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: {ns}}}
spec: {{mtls: {{mode: PERMISSIVE}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-all, namespace: {ns}}}
spec: {{rules: [{{}}]}}
"
    );
    run.apply(&manifests, &[]).await.ok();
    let expected = [
        ("Namespace", ns.as_str(), "ns-injection-missing"),
        ("Deployment", "api", "wl-default-service-account"),
        ("Deployment", "api", "wl-namespace-not-injected"),
        ("PeerAuthentication", "default", "pa-permissive-mtls"),
        ("AuthorizationPolicy", "allow-all", "ap-allow-all"),
    ];

    run.step("meshguard audit --format json");
    let (code, stdout, stderr) = audit(kubeconfig, "json").await;
    assert_eq!(code, Some(1), "exit code of the audit\n{stderr}");
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("audit JSON does not parse: {e}\n{stdout}"));
    assert_eq!(report["command"], "audit");
    let ours: Vec<(String, String, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            f["namespace"] == ns.as_str() || (f["kind"] == "Namespace" && f["name"] == ns.as_str())
        })
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (s("kind"), s("name"), s("rule"))
        })
        .collect();
    for (kind, name, rule) in expected {
        assert!(
            ours.iter()
                .any(|(k, n, r)| k == kind && n == name && r == rule),
            "the audit misses [{rule}] on {kind} {name}; its findings in {ns}: {ours:#?}"
        );
    }
    assert!(
        report["summary"]["deny"].as_u64().unwrap_or(0) >= expected.len() as u64,
        "{}",
        report["summary"]
    );

    run.step("meshguard audit --format text");
    let (code, text, stderr) = audit(kubeconfig, "text").await;
    assert_eq!(code, Some(1), "exit code of the text audit\n{stderr}");
    // The text report groups findings under a `Kind namespace/name` header line.
    let mut header = "";
    let mut seen = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') {
            header = line.trim();
        } else if let Some(rule) = line.split_once('[').and_then(|(_, r)| r.split_once(']')) {
            seen.push((header.to_owned(), rule.0.to_owned()));
        }
    }
    for (kind, name, rule) in expected {
        let subject = match kind {
            "Namespace" => format!("Namespace {name}"),
            _ => format!("{kind} {ns}/{name}"),
        };
        assert!(
            seen.contains(&(subject.clone(), rule.to_owned())),
            "the text report misses [{rule}] under \"{subject}\":\n{text}"
        );
    }
}
