//! The end-to-end harness: a real kube-apiserver (named by a kubeconfig), the real `meshguard`
//! binary serving on 127.0.0.1 with a certificate made at test time, registered by
//! `clientConfig.url`, and kubectl / kube-rs to look at what the cluster then does.
//!
//! A scenario builds a [`Run`] (its id, a kube client, a scratch directory), starts meshguard
//! with [`Run::serve`], registers it with [`Run::register`], creates namespaces with
//! [`Run::create_namespace`] and drives the cluster with [`Run::kubectl`] / [`Run::apply`] and
//! kube's client ([`Run::client`], [`Run::get`]). Both webhooks select namespaces by the label
//! `e2e.meshguard.io/run=<run id>`, which only the run's own namespaces carry, so scenarios run
//! in parallel on one cluster without seeing each other's objects.
//!
//! Clean-up is by `Drop`, on success and on failure: the webhook configurations are deleted,
//! the meshguard process is killed and the run's namespaces are deleted (without waiting). A
//! failing scenario prints its step log and the tail of meshguard's log.
#![allow(dead_code)]

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Names the cluster-admin kubeconfig of the cluster to test against; unset: the suite skips.
pub const KUBECONFIG_ENV: &str = "MESHGUARD_E2E_KUBECONFIG";
/// Names a second cluster whose kube-controller-manager runs with
/// `--use-service-account-credentials=false` (it acts as `system:kube-controller-manager`).
pub const KUBECONFIG_KCM_SHARED_ENV: &str = "MESHGUARD_E2E_KUBECONFIG_KCM_SHARED";
/// The label that puts a namespace under one run's webhooks.
pub const RUN_LABEL: &str = "e2e.meshguard.io/run";

/// Upper bound for anything the cluster does on its own (controllers, watches, webhook
/// registration). Generous: a loaded 2-core machine. Reaching it fails the scenario with what
/// was last seen.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// Run a scenario's async body on its own runtime (kube clients belong to the runtime they were
/// made in, so every scenario makes its own).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Poll `probe` every 200 ms until it answers `Ok`, for at most `within`; then fail with
/// `what` and the probe's last complaint.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let until = Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= until => {
                panic!("{what}: not after {within:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A run id: scenario name plus a random suffix, short enough for namespace names.
fn run_id(scenario: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mix = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    let suffix = format!("{:06x}", (mix ^ (mix >> 24)) & 0xff_ffff);
    format!("e2e-{scenario}-{suffix}")
}

/// What one kubectl call did.
#[derive(Clone, Debug)]
pub struct Kubectl {
    pub command: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Kubectl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {:?}\n--- stdout\n{}--- stderr\n{}---",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

impl Kubectl {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Fail unless kubectl succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "expected success:\n{self}");
        self
    }

    /// Fail unless kubectl failed because meshguard's validating webhook denied the request
    /// with a finding of `rule`.
    #[track_caller]
    pub fn refused_by(self, rule: &str) -> Self {
        assert!(!self.success(), "expected a refusal by [{rule}]:\n{self}");
        assert!(
            self.stderr
                .contains("admission webhook \"validate.meshguard.io\" denied the request")
                && self.stderr.contains(&format!("[{rule}]")),
            "expected meshguard to deny with [{rule}]:\n{self}"
        );
        self
    }

    /// The warnings kubectl printed (`Warning: …` lines on stderr), without the prefix.
    pub fn warnings(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("Warning: "))
            .map(str::to_owned)
            .collect()
    }

    /// meshguard's warnings as `(rule, field path)`, in the order printed.
    pub fn warned(&self) -> Vec<(String, String)> {
        self.warnings()
            .iter()
            .filter_map(|w| {
                let rest = w.strip_prefix('[')?;
                let (rule, rest) = rest.split_once("] ")?;
                let (path, _) = rest.split_once(": ")?;
                Some((rule.to_owned(), path.to_owned()))
            })
            .collect()
    }
}

/// `(rule, path)` pairs, for comparing with [`Kubectl::warned`].
pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// Run kubectl against `kubeconfig`, blocking. `--request-timeout` keeps a hung apiserver
/// from hanging the suite.
pub fn kubectl_blocking(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Kubectl {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--request-timeout=60s")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let command = format!("kubectl {}", args.join(" "));
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot run kubectl (is it on PATH?): {e}"),
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).expect("kubectl stdin");
    }
    let out = child.wait_with_output().expect("kubectl output");
    Kubectl {
        command,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// ` <<< Kind/name, …` for the step log of a kubectl call reading manifests from stdin.
fn describe(manifests: &str) -> String {
    let docs: Vec<Value> = serde_saphyr::from_multiple(manifests).unwrap_or_default();
    let names: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    format!(" <<< {}", names.join(", "))
}

/// Istio and core resources the scenarios read and write through kube's client.
pub fn resource(kind: &str) -> ApiResource {
    let (group, version, plural) = match kind {
        "PeerAuthentication" => ("security.istio.io", "v1", "peerauthentications"),
        "AuthorizationPolicy" => ("security.istio.io", "v1", "authorizationpolicies"),
        "RequestAuthentication" => ("security.istio.io", "v1", "requestauthentications"),
        "DestinationRule" => ("networking.istio.io", "v1", "destinationrules"),
        "Deployment" => ("apps", "v1", "deployments"),
        "ReplicaSet" => ("apps", "v1", "replicasets"),
        "Pod" => ("", "v1", "pods"),
        "Service" => ("", "v1", "services"),
        "ServiceAccount" => ("", "v1", "serviceaccounts"),
        "Namespace" => ("", "v1", "namespaces"),
        "PolicyReport" => ("wgpolicyk8s.io", "v1alpha2", "policyreports"),
        "ClusterPolicyReport" => ("wgpolicyk8s.io", "v1alpha2", "clusterpolicyreports"),
        "Report" => ("openreports.io", "v1alpha1", "reports"),
        "Lease" => ("coordination.k8s.io", "v1", "leases"),
        other => panic!("the harness does not know the resource of kind {other}"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The webhook `rules` the chart registers (charts/meshguard/templates/webhooks.yaml), read from
/// the template so that the suite registers exactly what an installation does: the `rules:`
/// blocks of the ValidatingWebhookConfiguration's webhooks (policies, workloads, Services)
/// joined, then those of the MutatingWebhookConfiguration's.
pub fn chart_rules() -> (Value, Value) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/meshguard/templates/webhooks.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let (mut validating, mut mutating) = (Vec::new(), Vec::new());
    let mut in_mutating = false;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "kind: MutatingWebhookConfiguration" {
            in_mutating = true;
        }
        if line.trim() != "rules:" {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            let deeper = next.len() - next.trim_start().len() > indent;
            if next.contains("{{") || !(deeper || next.trim().is_empty()) {
                break;
            }
            block.push_str(next);
            block.push('\n');
            lines.next();
        }
        let rules: Value = serde_saphyr::from_str(&block).unwrap_or_else(|e| {
            panic!(
                "the rules block of {} is not YAML: {e}\n{block}",
                path.display()
            )
        });
        assert!(
            rules.as_array().is_some_and(|a| !a.is_empty()),
            "empty rules block in {}",
            path.display()
        );
        let side = if in_mutating {
            &mut mutating
        } else {
            &mut validating
        };
        side.extend(rules.as_array().cloned().unwrap_or_default());
    }
    assert!(
        !validating.is_empty() && !mutating.is_empty(),
        "expected the validating and the mutating rules in {}",
        path.display()
    );
    (Value::Array(validating), Value::Array(mutating))
}

/// A CA made at test time and the serving certificates it signs (for 127.0.0.1 and localhost,
/// the names the apiserver dials).
pub struct Pki {
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// One serving certificate and key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let now = time::OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params
            .distinguished_name
            .push(DnType::CommonName, "meshguard e2e CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(2);
        let key = KeyPair::generate().expect("ca key");
        let ca = params.self_signed(&key).expect("ca cert");
        Pki {
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A fresh serving pair signed by the CA.
    pub fn leaf(&self) -> Leaf {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
        let now = time::OffsetDateTime::now_utc();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "meshguard e2e");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(1);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A directory laid out the way kubelet mounts a Secret volume (its atomic writer): the files
/// are symlinks `tls.crt -> ..data/tls.crt`, `..data` is a symlink to a timestamped directory,
/// and an update writes a new timestamped directory, points a new `..data_tmp` symlink at it,
/// renames that over `..data` (the one atomic step) and removes the old directory.
pub struct SecretVolume {
    pub dir: PathBuf,
    generation: u32,
    current: Option<String>,
}

impl SecretVolume {
    pub fn new(dir: PathBuf) -> SecretVolume {
        std::fs::create_dir_all(&dir).expect("volume dir");
        SecretVolume {
            dir,
            generation: 0,
            current: None,
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Publish a new set of files atomically.
    pub fn write(&mut self, files: &[(&str, &str)]) {
        use std::os::unix::fs::symlink;
        self.generation += 1;
        let stamp = format!(
            "..{}_{:03}",
            time::OffsetDateTime::now_utc().unix_timestamp_nanos(),
            self.generation
        );
        let target = self.dir.join(&stamp);
        std::fs::create_dir(&target).expect("timestamped dir");
        for (name, content) in files {
            std::fs::write(target.join(name), content).expect("volume file");
        }
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&stamp, &tmp).expect("..data_tmp symlink");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        for (name, _) in files {
            let visible = self.dir.join(name);
            if std::fs::symlink_metadata(&visible).is_err() {
                symlink(Path::new("..data").join(name), &visible).expect("file symlink");
            }
        }
        if let Some(old) = self.current.replace(stamp) {
            std::fs::remove_dir_all(self.dir.join(old)).expect("remove old generation");
        }
    }
}

/// A running `meshguard serve` child process. Killed on drop.
pub struct Meshguard {
    child: Child,
    /// The HTTPS admission listener.
    pub addr: SocketAddr,
    /// The plain-HTTP admin listener (metrics, probes).
    pub admin: SocketAddr,
    pub log: PathBuf,
    pub pki: Pki,
    /// Where the serving pair lives (a Secret-volume layout).
    pub volume: SecretVolume,
}

impl Drop for Meshguard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!(
                "--- last lines of meshguard's log ({}):\n{tail}\n---",
                self.log.display()
            );
        }
    }
}

impl Meshguard {
    /// SIGTERM, as the kubelet stops a pod, and wait for a clean exit (drain, Lease release).
    pub async fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let until = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "meshguard exited with {status} after SIGTERM"
                );
                return;
            }
            assert!(
                Instant::now() < until,
                "meshguard did not stop after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET a path of the admin listener; `(status, body)`.
    pub fn admin_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        admin_get(self.admin, path)
    }

    /// The sum of the samples of metric `name` carrying all of `labels` (0 when none).
    pub fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(self.admin, name, labels)
    }

    /// The DER of the certificate the admission listener presents now.
    pub fn served_certificate(&self) -> Vec<u8> {
        self.served_certificate_trusting(&self.pki.ca_pem)
    }

    /// [`Meshguard::served_certificate`], verified against the CAs in `ca_pem`.
    pub fn served_certificate_trusting(&self, ca_pem: &str) -> Vec<u8> {
        use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.expect("ca pem")).expect("ca");
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let mut conn =
            rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("tls client");
        let mut tcp = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .expect("connect to meshguard");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)
                .expect("TLS handshake with meshguard");
        }
        conn.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .expect("a served certificate")
    }
}

/// GET a path of an admin listener at `admin`; `(status, body)`.
pub fn admin_get(admin: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {admin}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_owned()))
}

/// The sum of the samples of metric `name` carrying all of `labels` at the admin listener
/// `admin` (0 when none).
pub fn metric_sum(admin: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, body) = admin_get(admin, "/metrics").unwrap_or_default();
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The first `rules:` block after the line containing `marker` in a chart template
/// (charts/meshguard/templates/FILE), as JSON: what the chart grants, read from the chart.
pub fn chart_template_rules(file: &str, marker: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/meshguard/templates")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = text
        .lines()
        .skip_while(|l| !l.contains(marker))
        .skip_while(|l| l.trim() != "rules:")
        .peekable();
    let Some(first) = lines.next() else {
        panic!("no rules block after {marker:?} in {}", path.display());
    };
    let indent = first.len() - first.trim_start().len();
    let mut block = String::new();
    for next in lines {
        let deeper = next.len() - next.trim_start().len() > indent;
        if next.contains("{{") || !(deeper || next.trim().is_empty()) {
            break;
        }
        block.push_str(next);
        block.push('\n');
    }
    serde_saphyr::from_str(&block)
        .unwrap_or_else(|e| panic!("the rules after {marker:?} are not YAML: {e}\n{block}"))
}

/// The registered webhook configurations; deleted on drop.
pub struct Webhooks {
    pub name: String,
    kubeconfig: PathBuf,
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        let validating = format!("validatingwebhookconfiguration/{}", self.name);
        let mutating = format!("mutatingwebhookconfiguration/{}", self.name);
        let out = kubectl_blocking(
            &self.kubeconfig,
            &[
                "delete",
                "--ignore-not-found",
                "--wait=false",
                &validating,
                &mutating,
            ],
            None,
        );
        if !out.success() {
            eprintln!("e2e clean-up: cannot delete the webhook configurations:\n{out}");
        }
    }
}

/// One scenario's handle on a cluster.
pub struct Run {
    pub id: String,
    pub kubeconfig: PathBuf,
    pub client: kube::Client,
    pub dir: tempfile::TempDir,
    started: Instant,
    namespaces: Mutex<Vec<String>>,
    /// Cluster-scoped objects (`kind/name`) to delete at the end.
    cluster_objects: Mutex<Vec<String>>,
    steps: Mutex<Vec<String>>,
}

impl Drop for Run {
    fn drop(&mut self) {
        let objects = std::mem::take(
            &mut *self
                .cluster_objects
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if !objects.is_empty() {
            let mut args = vec!["delete", "--ignore-not-found", "--wait=false"];
            args.extend(objects.iter().map(String::as_str));
            let out = kubectl_blocking(&self.kubeconfig, &args, None);
            if !out.success() {
                eprintln!("e2e clean-up: cannot delete {objects:?}:\n{out}");
            }
        }
        let namespaces =
            std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|p| p.into_inner()));
        if !namespaces.is_empty() {
            let mut args = vec!["delete", "namespace", "--ignore-not-found", "--wait=false"];
            args.extend(namespaces.iter().map(String::as_str));
            let out = kubectl_blocking(&self.kubeconfig, &args, None);
            if !out.success() {
                eprintln!("e2e clean-up: cannot delete the namespaces:\n{out}");
            }
        }
        if std::thread::panicking() {
            let steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
            eprintln!(
                "--- steps of {} before the failure:\n{}\n---",
                self.id,
                steps.join("\n")
            );
        }
    }
}

impl Run {
    /// Connect to the cluster `kubeconfig` names, for the scenario `scenario`.
    pub async fn new(kubeconfig: &Path, scenario: &str) -> Run {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig)
            .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", kubeconfig.display()));
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .unwrap_or_else(|e| panic!("unusable kubeconfig {}: {e}", kubeconfig.display()));
        let client = kube::Client::try_from(config).expect("kube client");
        Run {
            id: run_id(scenario),
            kubeconfig: kubeconfig.to_owned(),
            client,
            dir: tempfile::tempdir().expect("temp dir"),
            started: Instant::now(),
            namespaces: Mutex::new(Vec::new()),
            cluster_objects: Mutex::new(Vec::new()),
            steps: Mutex::new(Vec::new()),
        }
    }

    /// Record a step (printed only if the scenario fails).
    pub fn step(&self, what: impl Into<String>) {
        let line = format!(
            "[{:6.1}s] {}",
            self.started.elapsed().as_secs_f64(),
            what.into()
        );
        self.steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The name of the run's namespace `suffix`.
    pub fn ns(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.id)
    }

    /// kubectl with these arguments.
    pub async fn kubectl(&self, args: &[&str]) -> Kubectl {
        self.kubectl_with(args, None).await
    }

    /// kubectl with these arguments and `stdin`.
    pub async fn kubectl_with(&self, args: &[&str], stdin: Option<&str>) -> Kubectl {
        let kubeconfig = self.kubeconfig.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let stdin = stdin.map(str::to_owned);
        let input = stdin.as_deref().map(describe).unwrap_or_default();
        self.step(format!("kubectl {}{input}", args.join(" ")));
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl_blocking(&kubeconfig, &args, stdin.as_deref())
        })
        .await
        .expect("kubectl task");
        self.step(format!(
            "  → exit {:?}{}",
            out.code,
            if out.success() {
                ""
            } else {
                ": refused or failed"
            }
        ));
        out
    }

    /// `kubectl apply -f -` of `yaml`, plus `extra` flags (e.g. `--server-side`).
    pub async fn apply(&self, yaml: &str, extra: &[&str]) -> Kubectl {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        self.kubectl_with(&args, Some(yaml)).await
    }

    /// Create the run's namespace `suffix` (labelled for the run's webhooks, plus `labels`) with
    /// kubectl; it is deleted when the run ends. Returns kubectl's answer.
    pub async fn create_namespace(&self, suffix: &str, labels: &[(&str, &str)]) -> Kubectl {
        let name = self.ns(suffix);
        let mut all = serde_json::Map::new();
        all.insert(RUN_LABEL.to_owned(), json!(self.id));
        for (k, v) in labels {
            all.insert((*k).to_owned(), json!(v));
        }
        let manifest = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": all}});
        self.namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name);
        self.kubectl_with(&["create", "-f", "-"], Some(&manifest.to_string()))
            .await
    }

    /// `kubectl apply` of cluster-scoped objects (e.g. an injector's
    /// MutatingWebhookConfiguration), deleted when the run ends. Name them after the run
    /// (`run.id`) so that parallel scenarios do not collide.
    pub async fn apply_cluster_scoped(&self, yaml: &str) -> Kubectl {
        let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("cluster-scoped YAML");
        {
            let mut tracked = self
                .cluster_objects
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for d in &docs {
                let (Some(kind), Some(name)) = (d["kind"].as_str(), d["metadata"]["name"].as_str())
                else {
                    panic!("a cluster-scoped object needs kind and metadata.name: {d}");
                };
                tracked.push(format!("{}/{name}", kind.to_lowercase()));
            }
        }
        self.apply(yaml, &[]).await
    }

    /// The labels of a namespace as stored.
    pub async fn namespace_labels(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.get(name)
            .await
            .unwrap_or_else(|e| panic!("namespace {name}: {e}"))
            .metadata
            .labels
            .unwrap_or_default()
    }

    pub fn api(&self, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = resource(kind);
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// An object as stored, or `None`.
    pub async fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<DynamicObject> {
        self.api(kind, Some(namespace))
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("get {kind} {namespace}/{name}: {e}"))
    }

    /// Names of the objects of `kind` in `namespace`.
    pub async fn names(&self, kind: &str, namespace: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .api(kind, Some(namespace))
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("list {kind} in {namespace}: {e}"))
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect();
        names.sort();
        names
    }

    /// Events in `namespace` with `reason`.
    pub async fn events(&self, namespace: &str, reason: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        api.list(&ListParams::default().fields(&format!("reason={reason}")))
            .await
            .unwrap_or_else(|e| panic!("events in {namespace}: {e}"))
            .items
    }

    /// Start `meshguard serve` (the binary under test) on 127.0.0.1 with a serving pair made
    /// now (in a Secret-volume layout, reloaded every 200 ms), watching this cluster, with
    /// `extra` flags; returns once `/readyz` says its caches have synced.
    pub async fn serve(&self, extra: &[&str]) -> Meshguard {
        self.serve_named("meshguard", extra).await
    }

    /// [`Run::serve`] for one of several replicas: its own certificate directory and log
    /// (`<name>.log`), `POD_NAME=<name>` (its Lease identity). The periodic audit is off unless
    /// `extra` sets `--audit-interval`.
    pub async fn serve_named(&self, name: &str, extra: &[&str]) -> Meshguard {
        let pki = Pki::new();
        let leaf = pki.leaf();
        let mut volume = SecretVolume::new(self.dir.path().join(format!("{name}-tls")));
        volume.write(&[("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)]);
        let log = self.dir.path().join(format!("{name}.log"));
        let audit_off: &[&str] = if extra.iter().any(|a| a.starts_with("--audit-interval")) {
            &[]
        } else {
            &["--audit-interval", "0"]
        };
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshguard"));
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(volume.path("tls.crt"))
            .arg("--tls-key")
            .arg(volume.path("tls.key"))
            .args(["--tls-reload-interval", "200ms"])
            .args(audit_off)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--log-format", "json"])
            .args(extra)
            .env_remove("POD_NAMESPACE")
            .env("POD_NAME", name)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file);
        self.step(format!("meshguard serve {}", extra.join(" ")));
        let child = cmd.spawn().expect("start meshguard serve");
        let mut mg = Meshguard {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            pki,
            volume,
        };
        // The bound addresses come from the "meshguard serving" log line.
        let log_path = mg.log.clone();
        let (addr, admin) = eventually("meshguard logs its listeners", PATIENCE, || {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let exited = mg.child.try_wait().ok().flatten();
            async move {
                if let Some(status) = exited {
                    panic!("meshguard serve exited with {status}:\n{text}");
                }
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|v| v["message"] == "meshguard serving")
                    .and_then(|v| {
                        let listen = v["listen"].as_str()?.parse().ok()?;
                        let admin = v["admin"].as_str()?.parse().ok()?;
                        Some((listen, admin))
                    })
                    .ok_or_else(|| "no \"meshguard serving\" line yet".to_owned())
            }
        })
        .await;
        mg.addr = addr;
        mg.admin = admin;
        let probe = &mg;
        eventually(
            "meshguard /readyz (caches synced)",
            PATIENCE,
            || async move {
                match probe.admin_get("/readyz") {
                    Ok((200, _)) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        self.step(format!("meshguard ready on {addr} (admin {admin})"));
        mg
    }

    /// Register `mg` as both webhooks, the way the chart does (its rules, `failurePolicy:
    /// Fail`, `sideEffects: None`), by URL with the run's CA as caBundle and a namespaceSelector
    /// on the run label; returns once the apiserver calls both.
    pub async fn register(&self, mg: &Meshguard) -> Webhooks {
        let (validating_rules, mutating_rules) = chart_rules();
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&mg.pki.ca_pem);
        let hook = |name: &str, path: &str, rules: &Value| {
            json!({
                "name": name,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "timeoutSeconds": 10,
                "clientConfig": {"url": format!("https://{}{path}", mg.addr), "caBundle": ca_bundle},
                "namespaceSelector": {"matchLabels": {RUN_LABEL: self.id}},
                "rules": rules,
            })
        };
        let name = format!("meshguard-{}", self.id);
        let webhooks = Webhooks {
            name: name.clone(),
            kubeconfig: self.kubeconfig.clone(),
        };
        let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": name},
            "webhooks": [hook("validate.meshguard.io", "/validate", &validating_rules)],
        }))
        .expect("validating configuration");
        let mut mutating_hook = hook("mutate.meshguard.io", "/mutate", &mutating_rules);
        mutating_hook["reinvocationPolicy"] = json!("IfNeeded");
        let mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": name},
            "webhooks": [mutating_hook],
        }))
        .expect("mutating configuration");
        self.step(format!("register webhooks {name} → {}", mg.addr));
        Api::<ValidatingWebhookConfiguration>::all(self.client.clone())
            .create(&PostParams::default(), &validating)
            .await
            .expect("create the ValidatingWebhookConfiguration");
        Api::<MutatingWebhookConfiguration>::all(self.client.clone())
            .create(&PostParams::default(), &mutating)
            .await
            .expect("create the MutatingWebhookConfiguration");
        self.wait_webhooks_active().await;
        webhooks
    }

    /// The apiserver picks up a new webhook configuration asynchronously: probe with dry-run
    /// namespace creations until meshguard mutates (adds the injection label) and validates
    /// (refuses `istio-injection=disabled`).
    async fn wait_webhooks_active(&self) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let probe = |labels: Value| -> Namespace {
            serde_json::from_value(
                json!({"metadata": {"name": self.ns("probe"), "labels": labels}}),
            )
            .expect("namespace")
        };
        let plain = probe(json!({RUN_LABEL: self.id}));
        let disabled = probe(json!({RUN_LABEL: self.id, "istio-injection": "disabled"}));
        eventually("meshguard's webhooks become active", PATIENCE, || {
            let (api, dry, plain, disabled) = (&api, &dry, &plain, &disabled);
            async move {
                let mutated = match api.create(dry, plain).await {
                    Ok(ns) => ns
                        .metadata
                        .labels
                        .unwrap_or_default()
                        .get("istio-injection")
                        .is_some_and(|v| v == "enabled"),
                    Err(e) => return Err(format!("dry-run create: {e}")),
                };
                let refused = match api.create(dry, disabled).await {
                    Err(kube::Error::Api(s)) => s.message.contains("[ns-injection-disabled]"),
                    _ => false,
                };
                match (mutated, refused) {
                    (true, true) => Ok(()),
                    _ => Err(format!(
                        "mutating active: {mutated}, validating active: {refused}"
                    )),
                }
            }
        })
        .await;
        self.step("webhooks active");
    }
}

/// A tutorial manifest (tests/fixtures/tutorial/NAME) with its namespaces renamed.
pub fn tutorial(file: &str, renames: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tutorial")
        .join(file);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (from, to) in renames {
        text = text.replace(from, to);
    }
    text
}
