//! Scenarios 7 and 8: findings as reports.
//!
//! `reports_from_audit`: `meshguard audit --write-reports` creates a PolicyReport for a
//! namespace with findings, leaves it alone on a second audit (same resourceVersion), updates
//! it when a finding goes away or appears (first-seen timestamps kept), deletes it when none is
//! left, never touches another producer's reports, and truncates a report with more results
//! than fit in one object while its summary still counts all of them.
//!
//! `reports_one_writer`: two `meshguard serve` replicas with the periodic audit: only the
//! holder of the Lease writes (openreports.io Reports; the scenario runs alone on the cluster,
//! since `reports_from_audit` also writes openreports.io Reports cluster-wide); a holder whose Lease is taken stops writing (a finding that appears
//! meanwhile is written only after a replica holds the Lease again); when the holder stops, the
//! other takes over and writes.
//!
//! Both write reports for every namespace of the cluster, including other scenarios'; they
//! assert only on their own namespaces.

use crate::harness::{self, eventually, Meshguard, Run, PATIENCE};
use kube::api::{DynamicObject, PostParams};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

pub fn run_audit(kubeconfig: &Path) {
    harness::block_on(reports_from_audit(kubeconfig));
}

pub fn run_one_writer(kubeconfig: &Path) {
    harness::block_on(one_writer(kubeconfig));
}

/// An object as JSON, or `None` when it does not exist (`namespace` `None`: cluster-scoped).
async fn get(run: &Run, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
    run.api(kind, namespace)
        .get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("get {kind} {name}: {e}"))
        .map(|o| serde_json::to_value(o).expect("JSON"))
}

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `(policy, resource name, result, first-seen seconds)` of a report's results.
fn results(report: &Value) -> Vec<(String, String, String, i64)> {
    report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                s(&r["policy"]),
                s(&r["resources"][0]["name"]),
                s(&r["result"]),
                r["timestamp"]["seconds"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

/// A headless Service (no cluster IP to allocate) with an unnamed port: a svc-port-protocol
/// warning.
fn service(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": {"clusterIP": "None", "selector": {"app": name}, "ports": [{"port": 80}]}})
}

/// A report of another producer.
fn foreign_report(ns: &str, name: &str, labels: Value) -> Value {
    json!({"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
           "metadata": {"name": name, "namespace": ns, "labels": labels},
           "results": [{"policy": "require-labels", "rule": "check-team", "result": "fail",
                        "source": "kyverno", "severity": "medium",
                        "timestamp": {"seconds": 1_700_000_000, "nanos": 0}}],
           "summary": {"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0}})
}

fn list(items: Vec<Value>) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// `meshguard audit --write-reports API`: (exit code, stderr).
async fn audit(run: &Run, api: &str) -> (Option<i32>, String) {
    run.step(format!("meshguard audit --write-reports {api}"));
    let kubeconfig = run.kubeconfig.clone();
    let api = api.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_meshguard"))
            .args(["audit", "--write-reports", &api, "--kubeconfig"])
            .arg(&kubeconfig)
            .env_remove("POD_NAMESPACE")
            .env_remove("MESHGUARD_CONFIG")
            .output()
    })
    .await
    .expect("audit task")
    .expect("run meshguard audit");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    run.step(format!(
        "  → exit {:?}: {}",
        out.status.code(),
        stderr.trim()
    ));
    (out.status.code(), stderr)
}

async fn reports_from_audit(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "reports").await;
    let shop = run.ns("shop");
    let other = run.ns("other");
    run.create_namespace("shop", &[("istio-injection", "enabled")])
        .await
        .ok();
    run.create_namespace("other", &[("istio-injection", "enabled")])
        .await
        .ok();
    run.kubectl_with(
        &["apply", "-f", "-"],
        Some(&list(vec![
            json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                   "metadata": {"name": "legacy", "namespace": shop},
                   "spec": {"mtls": {"mode": "PERMISSIVE"}}}),
            service(&shop, "web"),
            service(&other, "api"),
            // Another producer's report beside meshguard's, and one that took meshguard's name.
            foreign_report(
                &shop,
                "kyverno-require-labels",
                json!({"app.kubernetes.io/managed-by": "kyverno"}),
            ),
            foreign_report(&other, "meshguard", json!({})),
        ])),
    )
    .await
    .ok();
    let kyverno_before = get(&run, "PolicyReport", Some(&shop), "kyverno-require-labels")
        .await
        .expect("kyverno's report");
    let squatter_before = get(&run, "PolicyReport", Some(&other), "meshguard")
        .await
        .expect("the other producer's report named meshguard");

    // 1. Created.
    let (code, err) = audit(&run, "wgpolicyk8s").await;
    assert!(err.contains("wgpolicyk8s.io/v1alpha2 reports:"), "{err}");
    // The other producer's "meshguard" cannot be replaced: that write fails, and says why.
    assert_eq!(code, Some(2), "a failed write is exit 2:\n{err}");
    assert!(
        err.contains("belongs to another producer and is left untouched"),
        "{err}"
    );
    let report = get(&run, "PolicyReport", Some(&shop), "meshguard")
        .await
        .expect("meshguard's report");
    assert_eq!(
        report["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "meshguard"
    );
    let first = results(&report);
    let found: Vec<(&str, &str, &str)> = first
        .iter()
        .map(|(p, n, r, _)| (p.as_str(), n.as_str(), r.as_str()))
        .collect();
    // The namespace-wide policy also applies to no workload (shop has none): a complete audit
    // says so.
    assert_eq!(
        found,
        [
            ("pa-permissive-mtls", "legacy", "fail"),
            ("selector-matches-nothing", "legacy", "warn"),
            ("svc-port-protocol", "web", "warn")
        ]
    );
    let web = first
        .iter()
        .find(|(_, n, _, _)| n == "web")
        .expect("the Service's result")
        .clone();
    assert_eq!(report["summary"]["fail"], 1);
    assert_eq!(report["summary"]["warn"], 2);
    let pa = get(&run, "PeerAuthentication", Some(&shop), "legacy")
        .await
        .expect("PeerAuthentication");
    let result = &report["results"][0];
    assert_eq!(
        result["resources"][0],
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
               "namespace": shop, "name": "legacy", "uid": pa["metadata"]["uid"]})
    );
    assert_eq!(
        result["properties"],
        json!({"fieldPath": "spec.mtls.mode", "action": "deny"})
    );
    assert_eq!(
        (&result["source"], &result["severity"], &result["category"]),
        (
            &json!("meshguard"),
            &json!("high"),
            &json!("PeerAuthentication")
        )
    );
    // Namespace-level findings (no default-deny policy) are in the cluster report.
    let cluster = get(&run, "ClusterPolicyReport", None, "meshguard")
        .await
        .expect("meshguard's cluster report");
    assert!(
        results(&cluster).iter().any(|(_, n, _, _)| *n == shop),
        "{cluster:#}"
    );

    // 2. Unchanged: not written at all.
    audit(&run, "wgpolicyk8s").await;
    let again = get(&run, "PolicyReport", Some(&shop), "meshguard")
        .await
        .expect("report");
    assert_eq!(
        rv(&again),
        rv(&report),
        "a second audit rewrote an unchanged report"
    );

    // 3. A finding goes away: updated; the remaining result keeps its first-seen time.
    run.kubectl(&["delete", "peerauthentication", "legacy", "-n", &shop])
        .await
        .ok();
    audit(&run, "wgpolicyk8s").await;
    let after_delete = get(&run, "PolicyReport", Some(&shop), "meshguard")
        .await
        .expect("report");
    assert_ne!(rv(&after_delete), rv(&report));
    assert_eq!(results(&after_delete), std::slice::from_ref(&web));
    assert_eq!(after_delete["summary"]["fail"], 0);

    // 4. A finding appears: updated; the old result keeps its time, the new one is no older.
    run.apply(&service(&shop, "api").to_string(), &[])
        .await
        .ok();
    audit(&run, "wgpolicyk8s").await;
    let after_add = get(&run, "PolicyReport", Some(&shop), "meshguard")
        .await
        .expect("report");
    let r = results(&after_add);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[1], web);
    assert_eq!(r[0].1, "api");
    assert!(r[0].3 >= web.3, "{r:?}");

    // 5. None left: deleted.
    run.kubectl(&["delete", "service", "web", "api", "-n", &shop])
        .await
        .ok();
    audit(&run, "wgpolicyk8s").await;
    assert!(
        get(&run, "PolicyReport", Some(&shop), "meshguard")
            .await
            .is_none(),
        "the report of a namespace without findings is deleted"
    );

    // Other producers' reports were never touched.
    let kyverno_after = get(&run, "PolicyReport", Some(&shop), "kyverno-require-labels")
        .await
        .expect("kyverno's report is still there");
    assert_eq!(rv(&kyverno_after), rv(&kyverno_before));
    let squatter_after = get(&run, "PolicyReport", Some(&other), "meshguard")
        .await
        .expect("the other producer's report");
    assert_eq!(rv(&squatter_after), rv(&squatter_before));

    // 6. More results than fit in one object: 4,000 deny-level findings on one
    //    AuthorizationPolicy, about 2.4 MB of results, more than etcd takes in one write.
    let big = run.ns("big");
    run.create_namespace("big", &[("istio-injection", "enabled")])
        .await
        .ok();
    let principals: Vec<String> = (0..4000)
        .map(|i| format!("spiffe://cluster.local/ns/{big}/sa/account-{i}"))
        .collect();
    let wide = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                      "metadata": {"name": "wide", "namespace": big},
                      "spec": {"rules": [{"from": [{"source": {"principals": principals}}]}]}});
    // Through kube's client: kubectl apply's last-applied annotation would exceed the limit.
    let wide: DynamicObject = serde_json::from_value(wide).expect("object");
    run.api("AuthorizationPolicy", Some(&big))
        .create(&PostParams::default(), &wide)
        .await
        .expect("create the AuthorizationPolicy");
    audit(&run, "wgpolicyk8s").await;
    let truncated = get(&run, "PolicyReport", Some(&big), "meshguard")
        .await
        .expect("a truncated report, not a failed write");
    let note = truncated["metadata"]["annotations"]["meshguard.io/truncated"]
        .as_str()
        .unwrap_or_else(|| panic!("truncation annotation: {:#}", truncated["metadata"]));
    let kept = truncated["results"].as_array().map_or(0, Vec::len);
    assert!(kept > 100 && kept < 4000, "{kept} results kept");
    // 4,000 principals plus the policy applying to no workload (big has none).
    assert!(
        note.starts_with(&format!("{kept} of 4001 results kept")),
        "{note}"
    );
    assert_eq!(
        truncated["summary"]["fail"], 4000,
        "the summary counts everything"
    );
    audit(&run, "wgpolicyk8s").await;
    let again = get(&run, "PolicyReport", Some(&big), "meshguard")
        .await
        .expect("report");
    assert_eq!(
        rv(&again),
        rv(&truncated),
        "a truncated report is stable too"
    );

    // 7. The same as an openreports.io Report.
    let (_, err) = audit(&run, "openreports").await;
    assert!(err.contains("openreports.io/v1alpha1 reports:"), "{err}");
    let report = get(&run, "Report", Some(&big), "meshguard")
        .await
        .expect("an openreports.io Report");
    assert_eq!(report["source"], "meshguard");
    assert_eq!(report["summary"]["fail"], 4000);
}

/// The Lease's holder, by replica name (the identity up to its random suffix), and its
/// leaseTransitions.
async fn holder(run: &Run, ns: &str) -> Result<(String, i64), String> {
    let lease = get(run, "Lease", Some(ns), "meshguard-audit")
        .await
        .ok_or("no Lease yet")?;
    let identity = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
    let name = identity.split('_').next().unwrap_or_default().to_owned();
    if name.is_empty() {
        return Err(format!("no holder: {}", lease["spec"]));
    }
    Ok((
        name,
        lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0),
    ))
}

/// Everything a replica recorded about reports (writes, and reports it found unchanged).
fn writes(mg: &Meshguard) -> f64 {
    mg.metric_sum("meshguard_report_writes_total", &[])
}

async fn replica(run: &Run, name: &str, system: &str) -> Meshguard {
    run.serve_named(
        name,
        &[
            "--own-namespace",
            system,
            "--reports",
            "openreports",
            "--audit-interval",
            "2s",
            // Short, but with room for a loaded 2-core machine.
            "--leader-elect-lease-duration",
            "5s",
            "--leader-elect-renew-deadline",
            "3s",
            "--leader-elect-retry-period",
            "1s",
        ],
    )
    .await
}

/// Wait until the app namespace's Report has `n` results.
async fn report_results(run: &Run, app: &str, n: usize, what: &str) {
    eventually(what, PATIENCE, || async move {
        let r = get(run, "Report", Some(app), "meshguard")
            .await
            .ok_or("no Report yet")?;
        let got = results(&r).len();
        (got == n).then_some(()).ok_or(format!("{got} results"))
    })
    .await;
}

fn unix_seconds(rfc3339: &str) -> i64 {
    rfc3339
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("time {rfc3339:?}: {e}"))
        .as_second()
}

async fn one_writer(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "lease").await;
    let system = run.ns("system");
    let app = run.ns("app");
    run.create_namespace("system", &[]).await.ok();
    run.create_namespace("app", &[("istio-injection", "enabled")])
        .await
        .ok();
    run.apply(&service(&app, "web").to_string(), &[]).await.ok();
    let mut replicas = vec![
        (
            "replica-a".to_owned(),
            replica(&run, "replica-a", &system).await,
        ),
        (
            "replica-b".to_owned(),
            replica(&run, "replica-b", &system).await,
        ),
    ];
    let of = |replicas: &[(String, Meshguard)], name: &str| -> usize {
        replicas
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no replica named {name:?}"))
    };

    run.step("a replica takes the Lease and writes");
    let (first, transitions) = eventually("a replica holds the Lease", PATIENCE, || {
        holder(&run, &system)
    })
    .await;
    report_results(
        &run,
        &app,
        1,
        "the holder writes the app namespace's Report",
    )
    .await;
    let leader = &replicas[of(&replicas, &first)].1;
    let standby = &replicas[1 - of(&replicas, &first)].1;
    // Rounds later the holder finds nothing to change; the standby has written nothing.
    eventually("the holder audits again, no change", PATIENCE, || {
        let n = leader.metric_sum(
            "meshguard_report_writes_total",
            &[("api", "openreports"), ("result", "unchanged")],
        );
        async move { (n >= 2.0).then_some(()).ok_or(format!("{n} unchanged")) }
    })
    .await;
    assert_eq!(leader.metric_sum("meshguard_leader", &[]), 1.0);
    assert_eq!(standby.metric_sum("meshguard_leader", &[]), 0.0);
    assert_eq!(writes(standby), 0.0, "the standby wrote reports");

    run.step("someone else takes the Lease for 6 s");
    // As a client-go candidate would once it expired; retried: the holder renews in between.
    let stolen_at = eventually("the Lease taken", PATIENCE, || {
        let run = &run;
        let system = &system;
        async move {
            let mut lease = get(run, "Lease", Some(system), "meshguard-audit")
                .await
                .ok_or("no Lease")?;
            lease["spec"]["holderIdentity"] = json!("intruder");
            lease["spec"]["leaseDurationSeconds"] = json!(6);
            let before = k8s_openapi::jiff::Timestamp::now().as_second();
            let out = run
                .kubectl_with(&["replace", "-f", "-"], Some(&lease.to_string()))
                .await;
            out.success().then_some(before).ok_or(out.to_string())
        }
    })
    .await;
    eventually("the holder steps down", PATIENCE, || {
        let v = leader.metric_sum("meshguard_leader", &[]);
        async move {
            (v == 0.0)
                .then_some(())
                .ok_or(format!("meshguard_leader {v}"))
        }
    })
    .await;
    run.step("a finding appears while the intruder holds the Lease");
    run.apply(&service(&app, "db").to_string(), &[]).await.ok();
    // The intruder never renews: once its record has not changed for 6 s, a replica takes the
    // Lease back and writes the new finding.
    eventually("a replica takes the abandoned Lease", PATIENCE, || async {
        let (name, _) = holder(&run, &system).await?;
        name.starts_with("replica-").then_some(()).ok_or(name)
    })
    .await;
    report_results(&run, &app, 2, "the new finding is written").await;
    // ... and not before: no replica may take the Lease until 6 s after the steal, so
    // meshguard's last change of the Report (managedFields, to the second) is no earlier.
    let report = get(&run, "Report", Some(&app), "meshguard")
        .await
        .expect("Report");
    let written = report["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["manager"] == "meshguard")
        .filter_map(|m| m["time"].as_str())
        .map(unix_seconds)
        .max()
        .unwrap_or_default();
    assert!(
        written >= stolen_at + 6,
        "the Report was written {} s after the Lease was taken, while no replica held it",
        written - stolen_at
    );

    run.step("the holder stops");
    let (current, before) = holder(&run, &system).await.expect("holder");
    let (_, stopping) = replicas.remove(of(&replicas, &current));
    stopping.terminate().await;
    let (survivor_name, survivor) = replicas.pop().expect("the other replica");
    let (name, after) = eventually("the standby takes over", PATIENCE, || async {
        let (name, t) = holder(&run, &system).await?;
        (name == survivor_name)
            .then_some((name.clone(), t))
            .ok_or(name)
    })
    .await;
    assert_eq!(name, survivor_name);
    assert!(
        after > before && before > transitions,
        "leaseTransitions {transitions} → {before} → {after}"
    );
    eventually("the new holder says so", PATIENCE, || {
        let v = survivor.metric_sum("meshguard_leader", &[]);
        async move {
            (v == 1.0)
                .then_some(())
                .ok_or(format!("meshguard_leader {v}"))
        }
    })
    .await;
    // It writes: a new finding reaches the Report.
    run.apply(&service(&app, "api").to_string(), &[]).await.ok();
    report_results(&run, &app, 3, "the new holder updates the Report").await;
    eventually("the new holder counts its update", PATIENCE, || {
        let n = survivor.metric_sum(
            "meshguard_report_writes_total",
            &[("api", "openreports"), ("result", "updated")],
        );
        async move { (n >= 1.0).then_some(()).ok_or(format!("{n} updated")) }
    })
    .await;
    survivor.terminate().await;
}
