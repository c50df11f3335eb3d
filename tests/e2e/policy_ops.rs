//! Scenario: policy operations on a real API server — a per-namespace rollout, a reload, an
//! exception that a team requests as a PolicyException and that expires, and the guard on the
//! labels the rollout selects namespaces by.
//!
//! The PolicyException CRD comes from the chart's own template
//! (charts/meshguard/templates/policyexception-crd.yaml, its lines without template markers) and
//! stays installed afterwards, like the Istio CRDs the suite expects.
//!
//! What the cluster shows, through kubectl: a PERMISSIVE PeerAuthentication is only warned in the
//! namespace labelled `env=dev` and refused in the one labelled `env=prod`; a policy file change
//! reaches the webhook without a restart; a PolicyException is refused in a namespace the policy
//! does not accept them in, admitted in one it does, and from then on the PERMISSIVE policy in
//! `env=prod` is admitted with a warning naming the exception (and `meshguard audit` lists it as
//! excepted); once its `expires` passes the deny is back, saying which exception expired, with no
//! restart; and a user who may label namespaces still cannot move one out of `env=prod`, while
//! the cluster administrator can.

use crate::harness::{self, Run, PATIENCE};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn run(kubeconfig: &Path) {
    harness::block_on(scenario(kubeconfig));
}

/// The CRD as the chart installs it: the template's lines without template markers.
fn crd() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/meshguard/templates/policyexception-crd.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let body = text
        .split_once("*/ -}}")
        .map_or(text.as_str(), |(_, b)| b)
        .lines()
        .filter(|l| !l.contains("{{"))
        .collect::<Vec<_>>()
        .join("\n");
    body + "\n"
}

fn pa(ns: &str, name: &str, mode: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{mtls: {{mode: {mode}}}}}\n"
    )
}

fn policy(prod: &str, extra_override: &str) -> String {
    format!(
        "platform:\n  labels: [env]\nrules:\n  pa-permissive-mtls:\n    action: warn\n    overrides:\n      - namespaceSelector: {{matchLabels: {{env: prod}}}}\n        action: deny\n{extra_override}policyExceptions:\n  namespaces: [{prod}]\n  maxDuration: 1h\n"
    )
}

/// RFC 3339, `secs` from now.
fn from_now(secs: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    k8s_openapi::jiff::Timestamp::from_second((now + secs) as i64)
        .expect("a time")
        .to_string()
}

async fn audit_json(kubeconfig: &Path, config: &Path) -> Value {
    let (kubeconfig, config) = (kubeconfig.to_owned(), config.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_meshguard"))
            .arg("audit")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--config")
            .arg(&config)
            .args(["--format", "json"])
            .env_remove("POD_NAMESPACE")
            .output()
    })
    .await
    .expect("audit task")
    .expect("run meshguard audit");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "audit output is not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

async fn scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "policy-ops").await;
    run.apply(&crd(), &[]).await.ok();
    run.kubectl(&[
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/policyexceptions.meshguard.io",
    ])
    .await
    .ok();
    let prod = run.ns("prod");
    let dev = run.ns("dev");
    let config = run.dir.path().join("policy.yaml");
    std::fs::write(&config, policy(&prod, "")).expect("policy file");
    let mg = run
        .serve(&[
            "--config",
            config.to_str().expect("utf-8 path"),
            "--config-reload-interval",
            "200ms",
        ])
        .await;
    let _hooks = run.register(&mg).await;
    run.create_namespace("prod", &[("env", "prod")]).await.ok();
    run.create_namespace("dev", &[("env", "dev")]).await.ok();

    // The rollout: warn where env=dev, deny where env=prod.
    let out = run
        .apply(&pa(&dev, "default", "PERMISSIVE"), &[])
        .await
        .ok();
    assert!(
        out.warned().iter().any(|(r, _)| r == "pa-permissive-mtls"),
        "a warning in env=dev:\n{out}"
    );
    run.apply(&pa(&prod, "default", "PERMISSIVE"), &[])
        .await
        .refused_by("pa-permissive-mtls");

    // A policy reload reaches the webhook without a restart: dev denies too, by name.
    std::fs::write(
        &config,
        policy(
            &prod,
            &format!("      - namespaces: [{dev}]\n        action: deny\n"),
        ),
    )
    .expect("policy file");
    harness::eventually("the reloaded policy denies in dev", PATIENCE, || async {
        let out = run
            .apply(&pa(&dev, "reload", "PERMISSIVE"), &["--dry-run=server"])
            .await;
        (!out.success() && out.stderr.contains("[pa-permissive-mtls]"))
            .then_some(())
            .ok_or(format!("{out}"))
    })
    .await;

    // PolicyExceptions: refused where the policy does not accept them, admitted where it does.
    let exception = |ns: &str, expires: &str| {
        format!(
            "apiVersion: meshguard.io/v1alpha1\nkind: PolicyException\nmetadata: {{name: plaintext-clients, namespace: {ns}}}\nspec:\n  rules: [pa-permissive-mtls]\n  reason: two clients still send plaintext\n  owner: team-prod\n  ticket: NET-7\n  expires: \"{expires}\"\n"
        )
    };
    let out = run.apply(&exception(&dev, &from_now(60)), &[]).await;
    assert!(
        !out.success()
            && out.stderr.contains("PolicyException")
            && out.stderr.contains("is not one the policy accepts"),
        "refused in dev:\n{out}"
    );
    let out = run.apply(&exception(&prod, &from_now(7200)), &[]).await;
    assert!(
        !out.success() && out.stderr.contains("further out than the policy allows"),
        "refused beyond maxDuration:\n{out}"
    );
    let lifetime = 45;
    let expires_at = std::time::Instant::now() + Duration::from_secs(lifetime);
    run.apply(&exception(&prod, &from_now(lifetime)), &[])
        .await
        .ok();

    // The watch brings it to the webhook: PERMISSIVE in env=prod is admitted, with a warning
    // that names the exception.
    let id = format!("{prod}/plaintext-clients");
    harness::eventually("the exception applies", PATIENCE, || async {
        let out = run.apply(&pa(&prod, "default", "PERMISSIVE"), &[]).await;
        (out.success()
            && out
                .warnings()
                .iter()
                .any(|w| w.contains(&format!("excepted by {id}"))))
        .then_some(())
        .ok_or(format!("{out}"))
    })
    .await;
    // ... and `meshguard audit` reports it as excepted, not as a finding.
    let report = audit_json(kubeconfig, &config).await;
    let mine = |list: &Value| -> Vec<Value> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["namespace"] == prod.as_str() && f["rule"] == "pa-permissive-mtls")
            .cloned()
            .collect()
    };
    let excepted = mine(&report["excepted"]);
    if std::time::Instant::now() < expires_at {
        assert_eq!(excepted.len(), 1, "{:#}", report["excepted"]);
        assert_eq!(excepted[0]["exception"], id.as_str());
        assert!(
            mine(&report["findings"]).is_empty(),
            "{:#}",
            report["findings"]
        );
    } else {
        // The audit outlived the exception (a slow machine): then it reports it as expired.
        run.step("the audit ran past the exception's end");
        let expired = report["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| {
                f["rule"] == "exception-expired"
                    && f["name"] == "plaintext-clients"
                    && f["namespace"] == prod.as_str()
            });
        assert!(expired, "{:#}", report["findings"]);
    }

    // It expires: the deny is back without a restart, and says which exception ended.
    run.step("wait for the exception to expire");
    tokio::time::sleep(expires_at.saturating_duration_since(std::time::Instant::now())).await;
    let out = run
        .apply(&pa(&prod, "after", "PERMISSIVE"), &[])
        .await
        .refused_by("pa-permissive-mtls");
    assert!(
        out.stderr.contains(&format!("exception {id} expired")),
        "the refusal names the expired exception:\n{out}"
    );

    // The guard: a user allowed to label namespaces cannot move one out of env=prod...
    let role = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {id}-labeler}}\nrules:\n  - apiGroups: [\"\"]\n    resources: [namespaces]\n    verbs: [get, list, patch, update]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {id}-labeler}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {id}-labeler}}\nsubjects:\n  - {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {id}-alice}}\n",
        id = run.id
    );
    run.apply_cluster_scoped(&role).await.ok();
    let alice = format!("--as={}-alice", run.id);
    let out = run
        .kubectl(&[
            &alice,
            "label",
            "namespace",
            &prod,
            "env=dev",
            "--overwrite",
        ])
        .await
        .refused_by("ns-platform-label-change");
    assert!(
        out.stderr.contains("changed from \"prod\" to \"dev\""),
        "{out}"
    );
    assert_eq!(
        run.namespace_labels(&prod)
            .await
            .get("env")
            .map(String::as_str),
        Some("prod")
    );
    // ... other labels stay hers ...
    run.kubectl(&[&alice, "label", "namespace", &prod, "team=a"])
        .await
        .ok();
    // ... and the cluster administrator (system:masters) may.
    run.kubectl(&["label", "namespace", &prod, "env=staging", "--overwrite"])
        .await
        .ok();
    assert_eq!(
        run.namespace_labels(&prod)
            .await
            .get("env")
            .map(String::as_str),
        Some("staging")
    );
    drop(mg);
}
