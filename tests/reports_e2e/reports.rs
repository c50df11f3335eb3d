//! The report scenarios, observed with kubectl and meshguard's /metrics.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KUBECONFIG_ENV: &str = "MESHGUARD_E2E_KUBECONFIG";

/// Upper bound for anything the cluster or meshguard does on its own (a loaded 2-core machine).
const PATIENCE: Duration = Duration::from_secs(90);

const POLR: &str = "policyreports.v1alpha2.wgpolicyk8s.io";
const REPORT: &str = "reports.v1alpha1.openreports.io";

fn meshguard() -> &'static str {
    env!("CARGO_BIN_EXE_meshguard")
}

/// Poll `probe` every 200 ms until it answers `Ok`, for at most [`PATIENCE`].
fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let until = Instant::now() + PATIENCE;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= until => {
                panic!("{what}: not after {PATIENCE:?}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// One scenario's handle on the cluster: its namespaces are deleted on drop.
struct Run {
    kubeconfig: PathBuf,
    id: String,
    namespaces: Vec<String>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.namespaces.is_empty() {
            let mut args = vec!["delete", "namespace", "--ignore-not-found", "--wait=false"];
            args.extend(self.namespaces.iter().map(String::as_str));
            let _ = self.kubectl(&args, None);
        }
    }
}

impl Run {
    fn new(kubeconfig: &Path, scenario: &str) -> Run {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Run {
            kubeconfig: kubeconfig.to_owned(),
            id: format!(
                "e2e-{scenario}-{:06x}",
                (nanos as u64 ^ (nanos >> 40) as u64) & 0xff_ffff
            ),
            namespaces: Vec::new(),
        }
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.unwrap_or("").as_bytes())
                .expect("kubectl stdin");
        }
        let out = child.wait_with_output().expect("kubectl output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn must(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.kubectl(args, stdin);
        assert!(ok, "kubectl {args:?} failed: {err}{out}");
        out
    }

    fn apply(&self, yaml: &str) {
        self.must(&["apply", "-f", "-"], Some(yaml));
    }

    fn namespace(&mut self, suffix: &str, labels: &[(&str, &str)]) -> String {
        let name = format!("{}-{suffix}", self.id);
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        self.apply(
            &json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels}})
            .to_string(),
        );
        self.namespaces.push(name.clone());
        name
    }

    /// The object as JSON, or `None` when it does not exist.
    fn get(&self, resource: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        let mut args = vec!["get", resource, name, "-o", "json", "--ignore-not-found"];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        let out = self.must(&args, None);
        (!out.trim().is_empty()).then(|| serde_json::from_str(&out).expect("kubectl JSON"))
    }

    fn uid(&self, resource: &str, ns: &str, name: &str) -> String {
        self.get(resource, Some(ns), name)
            .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("{resource} {ns}/{name} exists"))
    }

    /// `meshguard audit --write-reports API`: exit code and stderr.
    fn audit(&self, api: &str) -> (i32, String) {
        let out = Command::new(meshguard())
            .args(["audit", "--write-reports", api, "--kubeconfig"])
            .arg(&self.kubeconfig)
            .output()
            .expect("meshguard audit runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `(policy, resource name, result, timestamp seconds)` of a report's results.
fn results(report: &Value) -> Vec<(String, String, String, i64)> {
    report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["policy"].as_str().unwrap_or_default().to_owned(),
                r["resources"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["result"].as_str().unwrap_or_default().to_owned(),
                r["timestamp"]["seconds"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

fn service(ns: &str, name: &str) -> String {
    // Headless: no cluster IP to allocate. The unnamed port is a svc-port-protocol warning.
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": {"clusterIP": "None", "selector": {"app": name}, "ports": [{"port": 80}]}})
    .to_string()
}

fn foreign_report(ns: &str, name: &str, labels: Value) -> String {
    json!({"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
           "metadata": {"name": name, "namespace": ns, "labels": labels},
           "results": [{"policy": "require-labels", "rule": "check-team", "result": "fail",
                        "source": "kyverno", "severity": "medium",
                        "timestamp": {"seconds": 1_700_000_000, "nanos": 0}}],
           "summary": {"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0}})
    .to_string()
}

/// `meshguard audit --write-reports`: created for a namespace with findings, unchanged on a
/// second audit, updated when a finding goes away or appears (first-seen timestamps kept),
/// deleted when none is left; other producers' reports untouched; a namespace with more
/// results than fit in one object gets a truncated report that still counts everything.
pub fn audit_writes_reports(kubeconfig: &Path) {
    let start = Instant::now();
    let mut run = Run::new(kubeconfig, "reports");
    let shop = run.namespace("shop", &[("istio-injection", "enabled")]);
    let other = run.namespace("other", &[("istio-injection", "enabled")]);
    run.apply(
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
             "metadata": {"name": "legacy", "namespace": shop},
             "spec": {"mtls": {"mode": "PERMISSIVE"}}},
            serde_json::from_str::<Value>(&service(&shop, "web")).expect("json"),
            // Another producer's report beside meshguard's, and one that took meshguard's name.
            serde_json::from_str::<Value>(&foreign_report(
                &shop,
                "kyverno-require-labels",
                json!({"app.kubernetes.io/managed-by": "kyverno"}),
            ))
            .expect("json"),
            serde_json::from_str::<Value>(&foreign_report(&other, "meshguard", json!({})))
                .expect("json"),
        ]})
        .to_string(),
    );
    run.apply(&service(&other, "api"));
    let kyverno_before = run
        .get(POLR, Some(&shop), "kyverno-require-labels")
        .expect("kyverno's report");
    let squatter_before = run
        .get(POLR, Some(&other), "meshguard")
        .expect("foreign report");

    // 1. Created.
    let (code, err) = run.audit("wgpolicyk8s");
    assert!(err.contains("wgpolicyk8s.io/v1alpha2 reports:"), "{err}");
    // The foreign "meshguard" report cannot be replaced: that write fails, and says so.
    assert_eq!(code, 2, "a write failed: {err}");
    assert!(!err.contains(" 0 failed"), "{err}");
    let report = run
        .get(POLR, Some(&shop), "meshguard")
        .expect("meshguard's report");
    assert_eq!(
        report["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "meshguard"
    );
    let first = results(&report);
    let names: Vec<(&str, &str, &str)> = first
        .iter()
        .map(|(p, n, r, _)| (p.as_str(), n.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("pa-permissive-mtls", "legacy", "fail"),
            ("svc-port-protocol", "web", "warn")
        ]
    );
    assert_eq!(report["summary"]["fail"], 1);
    assert_eq!(report["summary"]["warn"], 1);
    assert_eq!(
        report["results"][0]["resources"][0]["uid"].as_str(),
        Some(run.uid("peerauthentication", &shop, "legacy").as_str())
    );
    assert_eq!(
        report["results"][0]["resources"][0]["apiVersion"],
        "security.istio.io/v1"
    );
    assert_eq!(
        report["results"][0]["properties"]["fieldPath"],
        "spec.mtls.mode"
    );
    assert_eq!(report["results"][0]["properties"]["action"], "deny");
    assert_eq!(report["results"][0]["severity"], "high");
    assert_eq!(report["results"][0]["category"], "PeerAuthentication");
    // Namespace-level findings (no default-deny policy, ...) go to the cluster report.
    let cluster = run
        .get(
            "clusterpolicyreports.v1alpha2.wgpolicyk8s.io",
            None,
            "meshguard",
        )
        .expect("cluster report");
    assert!(
        results(&cluster).iter().any(|(_, n, _, _)| *n == shop),
        "{cluster:#}"
    );

    // 2. Unchanged: no write at all.
    let (_, err) = run.audit("wgpolicyk8s");
    assert!(err.contains("reports:"), "{err}");
    let again = run.get(POLR, Some(&shop), "meshguard").expect("report");
    assert_eq!(
        rv(&again),
        rv(&report),
        "a second audit rewrote an unchanged report"
    );

    // 3. A finding goes away: updated, the remaining result keeps its first-seen time.
    run.must(
        &["delete", "peerauthentication", "legacy", "-n", &shop],
        None,
    );
    run.audit("wgpolicyk8s");
    let after_delete = run.get(POLR, Some(&shop), "meshguard").expect("report");
    assert_ne!(rv(&after_delete), rv(&report));
    let r = results(&after_delete);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0], first[1], "same result, same first-seen timestamp");
    assert_eq!(after_delete["summary"]["fail"], 0);

    // 4. A finding appears: updated, the old result keeps its time, the new one is later or
    //    the same second.
    run.apply(&service(&shop, "api"));
    run.audit("wgpolicyk8s");
    let after_add = run.get(POLR, Some(&shop), "meshguard").expect("report");
    let r = results(&after_add);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[1], first[1]);
    assert_eq!(r[0].1, "api");
    assert!(r[0].3 >= first[1].3);

    // 5. None left: deleted.
    run.must(&["delete", "service", "web", "api", "-n", &shop], None);
    run.audit("wgpolicyk8s");
    assert!(
        run.get(POLR, Some(&shop), "meshguard").is_none(),
        "report deleted"
    );

    // Other producers' reports were never touched.
    let kyverno_after = run
        .get(POLR, Some(&shop), "kyverno-require-labels")
        .expect("kyverno's report is still there");
    assert_eq!(rv(&kyverno_after), rv(&kyverno_before));
    let squatter_after = run
        .get(POLR, Some(&other), "meshguard")
        .expect("foreign report");
    assert_eq!(rv(&squatter_after), rv(&squatter_before));
    assert_eq!(squatter_after["results"], squatter_before["results"]);

    // 6. Too many results for one object: 4,000 deny-level findings on one
    //    AuthorizationPolicy, about 2.4 MB of results, more than etcd takes in one write.
    let big = run.namespace("big", &[("istio-injection", "enabled")]);
    let principals: Vec<String> = (0..4000)
        .map(|i| format!("spiffe://cluster.local/ns/{big}/sa/account-{i}"))
        .collect();
    // create, not apply: its last-applied annotation would exceed the annotation limit.
    run.must(
        &["create", "-f", "-"],
        Some(
            &json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "wide", "namespace": big},
                "spec": {"rules": [{"from": [{"source": {"principals": principals}}]}]}})
            .to_string(),
        ),
    );
    run.audit("wgpolicyk8s");
    let truncated = run
        .get(POLR, Some(&big), "meshguard")
        .expect("a truncated report");
    let note = truncated["metadata"]["annotations"]["meshguard.io/truncated"]
        .as_str()
        .unwrap_or_else(|| panic!("truncation annotation: {:#}", truncated["metadata"]));
    let kept = truncated["results"].as_array().map_or(0, Vec::len);
    assert!(kept > 100 && kept < 4000, "{kept} results kept");
    assert!(
        note.starts_with(&format!("{kept} of 4000 results kept")),
        "{note}"
    );
    assert_eq!(
        truncated["summary"]["fail"], 4000,
        "the summary counts everything"
    );
    // ... and it is stable like any other report.
    run.audit("wgpolicyk8s");
    let again = run.get(POLR, Some(&big), "meshguard").expect("report");
    assert_eq!(rv(&again), rv(&truncated));

    // 7. openreports.io: the same report as a Report.
    let (_, err) = run.audit("openreports");
    assert!(err.contains("openreports.io/v1alpha1 reports:"), "{err}");
    let report = run
        .get(REPORT, Some(&big), "meshguard")
        .expect("an openreports Report");
    assert_eq!(report["source"], "meshguard");
    assert_eq!(report["summary"]["fail"], 4000);
    eprintln!(
        "reports e2e audit_writes_reports: passed in {:.1}s",
        start.elapsed().as_secs_f64()
    );
}

/// A `meshguard serve` child process; killed on drop.
struct Serve {
    name: String,
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- last lines of {}'s log:\n{}\n---",
                self.name,
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Serve {
    fn start(run: &Run, dir: &Path, name: &str, lease_ns: &str) -> Serve {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(meshguard())
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen"])
            .arg(admin.to_string())
            .arg("--kubeconfig")
            .arg(&run.kubeconfig)
            .args(["--own-namespace", lease_ns, "--reports", "openreports"])
            .args(["--audit-interval", "1s"])
            .args(["--leader-elect-lease-duration", "3s"])
            .args(["--leader-elect-renew-deadline", "2s"])
            .args(["--leader-elect-retry-period", "500ms"])
            .args(["--log-format", "json"])
            .env("POD_NAME", name)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("meshguard serve starts");
        Serve {
            name: name.to_owned(),
            child,
            admin,
            log,
        }
    }

    fn metrics(&self) -> Result<String, String> {
        let mut s = std::net::TcpStream::connect_timeout(&self.admin, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.admin)
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        s.read_to_string(&mut text).map_err(|e| e.to_string())?;
        Ok(text)
    }

    /// Sum of the samples of `name` with all of `labels`.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64, String> {
        Ok(self
            .metrics()?
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                    && labels
                        .iter()
                        .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    fn writes(&self) -> f64 {
        self.metric("meshguard_report_writes_total", &[])
            .unwrap_or(-1.0)
    }

    /// SIGTERM, and wait for the exit (it drains, then releases the Lease).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + PATIENCE;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} did not stop after SIGTERM", self.name);
    }
}

/// Two serve replicas: only the Lease holder audits and writes; a Lease taken by someone else
/// stops its writes; when the holder stops, the other takes over and writes.
pub fn only_the_lease_holder_writes(kubeconfig: &Path) {
    let start = Instant::now();
    let mut run = Run::new(kubeconfig, "lease");
    let system = run.namespace("system", &[]);
    let app = run.namespace("app", &[("istio-injection", "enabled")]);
    run.apply(&service(&app, "web"));
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Serve::start(&run, dir.path(), "replica-a", &system);
    let b = Serve::start(&run, dir.path(), "replica-b", &system);

    let holder = || -> Result<(String, i64), String> {
        let lease = run
            .get("lease", Some(&system), "meshguard-audit")
            .ok_or("no Lease yet")?;
        let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default();
        let name = holder.split('_').next().unwrap_or_default().to_owned();
        if name.is_empty() {
            return Err(format!("no holder: {:#}", lease["spec"]));
        }
        Ok((
            name,
            lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0),
        ))
    };
    let (leader_name, transitions) = eventually("a replica holds the Lease", holder);
    let (leader, standby) = if leader_name == "replica-a" {
        (a, b)
    } else {
        (b, a)
    };
    // The holder writes the app namespace's Report.
    eventually("the holder writes the Report", || {
        let r = run
            .get(REPORT, Some(&app), "meshguard")
            .ok_or("no Report yet")?;
        let n = results(&r).len();
        (n == 1).then_some(()).ok_or(format!("{n} results"))
    });
    // A few rounds later the holder has found nothing to change, and the standby has written
    // nothing at all.
    eventually(
        "the holder audits again and finds the Report unchanged",
        || {
            let n = leader.metric(
                "meshguard_report_writes_total",
                &[("api", "openreports"), ("result", "unchanged")],
            )?;
            (n >= 2.0).then_some(()).ok_or(format!("{n} unchanged"))
        },
    );
    assert_eq!(leader.metric("meshguard_leader", &[]), Ok(1.0));
    assert_eq!(standby.metric("meshguard_leader", &[]), Ok(0.0));
    assert_eq!(standby.writes(), 0.0, "the standby wrote reports");

    // Someone else takes the Lease (as a client-go candidate would once it expired): the
    // holder sees it at its next renewal and stops.
    eventually(
        "the Lease taken (its holder renews in between: retry on conflict)",
        || {
            let mut stolen = run
                .get("lease", Some(&system), "meshguard-audit")
                .ok_or("no Lease")?;
            stolen["spec"]["holderIdentity"] = json!("intruder");
            stolen["spec"]["leaseDurationSeconds"] = json!(4);
            let (ok, out, err) = run.kubectl(&["replace", "-f", "-"], Some(&stolen.to_string()));
            ok.then_some(()).ok_or(format!("{err}{out}"))
        },
    );
    eventually("the old holder steps down", || {
        let v = leader.metric("meshguard_leader", &[])?;
        (v == 0.0)
            .then_some(())
            .ok_or(format!("meshguard_leader {v}"))
    });
    let frozen = leader.writes();
    // The intruder never renews: after its 4 s one of the replicas takes the Lease back.
    let (back, _) = eventually("a replica takes the abandoned Lease", || {
        let (name, t) = holder()?;
        if name.starts_with("replica-") {
            Ok((name, t))
        } else {
            Err(name)
        }
    });
    let (leader, standby) = if back == leader.name {
        (leader, standby)
    } else {
        // The former standby won: the former holder wrote nothing since it stepped down.
        assert_eq!(leader.writes(), frozen, "writes after losing the Lease");
        (standby, leader)
    };

    // The holder stops: it releases the Lease and the standby takes over at once.
    let (_, before) = holder().expect("holder");
    let stopped = leader.name.clone();
    leader.stop();
    let (name, after) = eventually("the standby takes over", || {
        let (name, t) = holder()?;
        if name != stopped {
            Ok((name, t))
        } else {
            Err(name)
        }
    });
    assert_eq!(name, standby.name);
    assert!(
        after > before && before > transitions,
        "leaseTransitions {transitions} → {before} → {after}"
    );
    eventually("the new holder reports", || {
        let v = standby.metric("meshguard_leader", &[])?;
        (v == 1.0)
            .then_some(())
            .ok_or(format!("meshguard_leader {v}"))
    });
    // It writes: a new finding reaches the Report.
    run.apply(&service(&app, "api"));
    eventually("the new holder updates the Report", || {
        let r = run
            .get(REPORT, Some(&app), "meshguard")
            .ok_or("no Report")?;
        let n = results(&r).len();
        (n == 2).then_some(()).ok_or(format!("{n} results"))
    });
    assert!(
        standby
            .metric(
                "meshguard_report_writes_total",
                &[("api", "openreports"), ("result", "updated")]
            )
            .unwrap_or(0.0)
            >= 1.0
    );
    standby.stop();
    eprintln!(
        "reports e2e only_the_lease_holder_writes: passed in {:.1}s",
        start.elapsed().as_secs_f64()
    );
}
