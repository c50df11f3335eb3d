//! Scenario `auditor`: the cluster audit as its own workload (`meshguard auditor`), running as
//! a ServiceAccount with exactly the chart's auditor RBAC (read from
//! charts/meshguard/templates/rbac.yaml: list-only ClusterRole, the Lease Role, the report
//! writes limited by name), through an impersonating kubeconfig.
//!
//! 1. A run record says the last run started and never finished (what a run killed by the OOM
//!    killer or an eviction leaves: the record is written before the run starts). The auditor
//!    counts it as a failure and waits `--backoff` from that start before it runs.
//! 2. That run fails: the ClusterRole lacks the rule that lists DestinationRules (and the other
//!    networking.istio.io kinds), the list is forbidden.
//!    Two failures in a row: the next wait doubles (`meshguard_audit_backoff_seconds`).
//! 3. With the chart's whole ClusterRole the next run (after the back-off) succeeds: the run
//!    record resets, the auditor holds the Lease `meshguard-audit`, and it writes the app
//!    namespace's PolicyReport.
//!
//! Alone on the cluster: it writes reports (named meshguard) in every namespace, as the
//! reports scenarios do.

use crate::harness::{self, eventually, Run, PATIENCE};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

pub fn run(kubeconfig: &Path) {
    harness::block_on(scenario(kubeconfig));
}

const BACKOFF_SECS: i64 = 4;

/// A running `meshguard auditor`; killed on drop.
struct Auditor {
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
}

impl Drop for Auditor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!("--- last lines of the auditor's log:\n{tail}\n---");
        }
    }
}

impl Auditor {
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        harness::metric_sum(self.admin, name, labels)
    }

    fn log_has(&self, message: &str) -> bool {
        let needle = format!("\"message\":\"{message}");
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&needle))
    }
}

/// The admin kubeconfig, impersonating `user`.
fn impersonating(kubeconfig: &Path, user: &str, out: &Path) {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let mut config: Value = serde_saphyr::from_str(&text).expect("kubeconfig YAML");
    for u in config["users"].as_array_mut().expect("users") {
        u["user"]["as"] = json!(user);
    }
    std::fs::write(out, serde_json::to_string(&config).expect("JSON")).expect("write kubeconfig");
}

fn to_yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_saphyr::to_string(o).expect("YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The run record's annotations.
async fn record(run: &Run, ns: &str) -> Option<serde_json::Map<String, Value>> {
    let lease = run.get("Lease", ns, "meshguard-audit-run").await?;
    let v = serde_json::to_value(lease).ok()?;
    v["metadata"]["annotations"].as_object().cloned()
}

fn annotation(a: &serde_json::Map<String, Value>, key: &str) -> String {
    a.get(&format!("meshguard.io/audit-{key}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "auditor").await;
    let system = run.ns("system");
    let istio = run.ns("istio");
    let app = run.ns("app");
    run.create_namespace("system", &[]).await.ok();
    run.create_namespace("istio", &[]).await.ok();
    run.create_namespace("app", &[("istio-injection", "enabled")])
        .await
        .ok();
    // A Service port without a protocol: one svc-port-protocol finding.
    run.apply(
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": app},
            "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}})
        .to_string(),
        &[],
    )
    .await
    .ok();

    // The chart's auditor RBAC, for the ServiceAccount the kubeconfig impersonates.
    let sa = "meshguard-auditor";
    let user = format!("system:serviceaccount:{system}:{sa}");
    let subject = json!([{"kind": "ServiceAccount", "name": sa, "namespace": system}]);
    let audit_rules = harness::chart_template_rules("rbac.yaml", "name: {{ $fullname }}-auditor");
    let lease_rules = harness::chart_template_rules("rbac.yaml", "name: {{ $fullname }}-lease");
    let without_destination_rules: Vec<Value> = audit_rules
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| {
            !r["resources"]
                .as_array()
                .is_some_and(|rs| rs.contains(&json!("destinationrules")))
        })
        .cloned()
        .collect();
    assert_eq!(
        without_destination_rules.len() + 1,
        audit_rules.as_array().map_or(0, Vec::len),
        "the chart's auditor ClusterRole has one rule for destinationrules: {audit_rules}"
    );
    let role = |rules: &Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("{}-auditor", run.id)}, "rules": rules})
    };
    let reports_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": format!("{}-auditor-reports", run.id)},
        "rules": [
            {"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports", "clusterpolicyreports"],
             "verbs": ["list", "create"]},
            {"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports", "clusterpolicyreports"],
             "resourceNames": ["meshguard"], "verbs": ["update", "delete"]}]});
    let binding = |name: String| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subject})
    };
    run.apply_cluster_scoped(&to_yaml(&[
        role(&json!(without_destination_rules)),
        binding(format!("{}-auditor", run.id)),
        reports_role,
        binding(format!("{}-auditor-reports", run.id)),
    ]))
    .await
    .ok();
    let namespaced = [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "meshguard-lease", "namespace": system}, "rules": lease_rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "meshguard-lease", "namespace": system},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "meshguard-lease"},
            "subjects": subject}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "meshguard-istio-config", "namespace": istio},
            "rules": harness::chart_template_rules("rbac.yaml", "name: {{ $fullname }}-istio-config")}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "meshguard-istio-config", "namespace": istio},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "meshguard-istio-config"},
            "subjects": subject}),
    ];
    run.apply(&to_yaml(&namespaced), &[]).await.ok();

    // 1. What a killed run leaves: started, never finished.
    let killed_at = now();
    run.apply(
        &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "meshguard-audit-run", "namespace": system, "annotations": {
                "meshguard.io/audit-started": killed_at.to_string(),
                "meshguard.io/audit-consecutive-failures": "0"}}})
        .to_string(),
        &[],
    )
    .await
    .ok();

    let kc = run.dir.path().join("auditor.kubeconfig");
    impersonating(&run.kubeconfig, &user, &kc);
    let log = run.dir.path().join("auditor.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    run.step("meshguard auditor (as the chart's auditor ServiceAccount)");
    let child = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .arg("auditor")
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["--own-namespace", &system, "--istio-namespace", &istio])
        .args(["--reports", "wgpolicyk8s", "--interval", "2s"])
        .args([
            "--backoff",
            &format!("{BACKOFF_SECS}s"),
            "--max-backoff",
            "60s",
        ])
        .args(["--admin-listen", "127.0.0.1:0", "--log-format", "json"])
        .args([
            "--leader-elect-lease-duration",
            "5s",
            "--leader-elect-renew-deadline",
            "3s",
            "--leader-elect-retry-period",
            "1s",
        ])
        .env_remove("POD_NAMESPACE")
        .env("POD_NAME", "auditor-e2e")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("start meshguard auditor");
    let started = Instant::now();
    let mut auditor = Auditor {
        child,
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        log,
    };
    let log_path = auditor.log.clone();
    auditor.admin = eventually("the auditor logs its admin listener", PATIENCE, || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        async move {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["message"] == "meshguard auditor running")
                .and_then(|v| v["admin"].as_str()?.parse().ok())
                .ok_or_else(|| format!("not yet:\n{text}"))
        }
    })
    .await;

    run.step("the killed run counts as a failure; the next run waits for the back-off");
    let failed = eventually("a run starts and fails", PATIENCE, || async {
        let a = record(&run, &system).await.ok_or("no run record")?;
        (annotation(&a, "result") == "failure")
            .then_some(a.clone())
            .ok_or(format!("{a:?}"))
    })
    .await;
    let run_started: i64 = annotation(&failed, "started").parse().expect("started");
    assert!(
        run_started >= killed_at + BACKOFF_SECS,
        "the first run started {} s after the killed one, before the {BACKOFF_SECS} s back-off",
        run_started - killed_at
    );
    assert_eq!(
        annotation(&failed, "consecutive-failures"),
        "2",
        "{failed:?}"
    );
    // The log thread writes the file on its own time: the run record can be read before
    // the lines the auditor logged ahead of writing it reach the file.
    for line in ["the last audit never finished", "audit failed; backing off"] {
        eventually(&format!("the auditor logs {line:?}"), PATIENCE, || async {
            auditor
                .log_has(line)
                .then_some(())
                .ok_or_else(|| "not yet".to_owned())
        })
        .await;
    }
    eventually("the back-off doubles", PATIENCE, || async {
        let b = auditor.metric("meshguard_audit_backoff_seconds", &[]);
        (b == (2 * BACKOFF_SECS) as f64)
            .then_some(())
            .ok_or(format!("back-off {b}"))
    })
    .await;
    assert!(
        auditor.metric("meshguard_audit_runs_total", &[("result", "failure")]) >= 2.0,
        "the killed and the failed run"
    );
    assert!(
        run.get("PolicyReport", &app, "meshguard").await.is_none(),
        "a failed run writes no report"
    );

    run.step("the chart's whole ClusterRole: the next run succeeds");
    run.apply(&to_yaml(&[role(&audit_rules)]), &[]).await.ok();
    let done = eventually("a run succeeds", PATIENCE, || async {
        let a = record(&run, &system).await.ok_or("no run record")?;
        (annotation(&a, "result") == "success")
            .then_some(a.clone())
            .ok_or(format!("{a:?}"))
    })
    .await;
    let second: i64 = annotation(&done, "started").parse().expect("started");
    assert!(
        second >= run_started + 2 * BACKOFF_SECS,
        "the run after two failures started {} s after the last, before the doubled back-off",
        second - run_started
    );
    assert_eq!(annotation(&done, "consecutive-failures"), "0");
    let report = eventually("the app namespace's PolicyReport", PATIENCE, || async {
        let r = run
            .get("PolicyReport", &app, "meshguard")
            .await
            .ok_or("no PolicyReport yet")?;
        let v = serde_json::to_value(r).map_err(|e| e.to_string())?;
        let policies: Vec<String> = v["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["policy"].as_str().map(str::to_owned))
            .collect();
        (policies == ["svc-port-protocol"])
            .then_some(v.clone())
            .ok_or(format!("results {policies:?}"))
    })
    .await;
    assert_eq!(
        report["results"][0]["resources"][0]["name"], "web",
        "{report}"
    );
    eventually("back-off cleared, Lease held", PATIENCE, || async {
        let b = auditor.metric("meshguard_audit_backoff_seconds", &[]);
        let leader = auditor.metric("meshguard_leader", &[]);
        let lease = run
            .get("Lease", &system, "meshguard-audit")
            .await
            .ok_or("no Lease")?;
        let holder = serde_json::to_value(lease).map_err(|e| e.to_string())?["spec"]
            ["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (b == 0.0 && leader == 1.0 && holder.starts_with("auditor-e2e"))
            .then_some(())
            .ok_or(format!("back-off {b}, leader {leader}, holder {holder:?}"))
    })
    .await;
    assert!(auditor.metric("meshguard_audit_runs_total", &[("result", "success")]) >= 1.0);
    eprintln!(
        "e2e auditor: killed run → waited the back-off, failed run (RBAC) → doubled back-off, then success and the PolicyReport, in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
