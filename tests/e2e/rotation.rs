//! Scenario 5: the serving certificate is rotated while the apiserver is sending reviews.
//!
//! The pair lives in a Secret-volume layout (`tls.crt -> ..data/tls.crt`, `..data` a symlink
//! to a timestamped directory) and is replaced three times the way kubelet does it, by renaming
//! a new `..data` symlink over the old one, each time with a fresh pair signed by the same CA
//! (what cert-manager's renewal looks like). Meanwhile three clients keep creating
//! PeerAuthentications (every fourth PERMISSIVE, which meshguard must refuse).
//!
//! What the cluster shows: every review is answered — each STRICT policy stored, each
//! PERMISSIVE one refused by meshguard, not a single "failed calling webhook" — meshguard serves
//! each new certificate, and after the last rotation the apiserver's fresh connections (the
//! old ones closed by meshguard's idle timeout) handshake with the newest certificate.

use crate::harness::{self, Run, PATIENCE};
use kube::api::{DynamicObject, PostParams};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const ROTATIONS: usize = 3;
const WORKERS: usize = 3;
/// Reviews to see before and after each swap.
const REVIEWS_AROUND_A_SWAP: u64 = 20;

pub fn run(kubeconfig: &Path) {
    harness::block_on(scenario(kubeconfig));
}

#[derive(Default)]
struct Load {
    stop: AtomicBool,
    stored: AtomicU64,
    refused: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Load {
    fn answered(&self) -> u64 {
        self.stored.load(Ordering::Relaxed) + self.refused.load(Ordering::Relaxed)
    }

    async fn worker(self: Arc<Self>, api: kube::Api<DynamicObject>, ns: String, id: usize) {
        let mut i = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            i += 1;
            let name = format!("w{id}-{i}");
            let permissive = i.is_multiple_of(4);
            let mode = if permissive { "PERMISSIVE" } else { "STRICT" };
            let object: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"selector": {"matchLabels": {"app": name}}, "mtls": {"mode": mode}},
            }))
            .expect("object");
            match (
                api.create(&PostParams::default(), &object).await,
                permissive,
            ) {
                (Ok(_), false) => {
                    self.stored.fetch_add(1, Ordering::Relaxed);
                }
                (Err(kube::Error::Api(s)), true)
                    if s.code == 403 && s.message.contains("[pa-permissive-mtls]") =>
                {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                }
                (answer, _) => self
                    .failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{name} ({mode}): {answer:?}")),
            }
        }
    }

    async fn wait_for_more(&self, what: &str, more: u64) {
        let target = self.answered() + more;
        harness::eventually(what, PATIENCE, || async {
            let failures = self
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            assert!(failures.is_empty(), "failed admissions: {failures:#?}");
            let n = self.answered();
            (n >= target)
                .then_some(())
                .ok_or(format!("{n} of {target} reviews answered"))
        })
        .await;
    }
}

/// Lines of meshguard's log whose message is `message`.
fn log_count(log: &Path, message: &str) -> usize {
    let needle = format!("\"message\":\"{message}\"");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

async fn scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "rotation").await;
    let mut mg = run
        .serve(&[
            "--idle-timeout",
            "1s",
            "--log-level",
            "info,meshguard::listener=debug",
        ])
        .await;
    let _hooks = run.register(&mg).await;
    let ns = run.ns("load");
    run.create_namespace("load", &[]).await.ok();

    let load = Arc::new(Load::default());
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            let api = run.api("PeerAuthentication", Some(&ns));
            tokio::spawn(load.clone().worker(api, ns.clone(), id))
        })
        .collect();
    for round in 1..=ROTATIONS {
        load.wait_for_more("reviews before the swap", REVIEWS_AROUND_A_SWAP)
            .await;
        let leaf = mg.pki.leaf();
        run.step(format!("rotation {round}: swap ..data"));
        mg.volume
            .write(&[("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)]);
        let probe = &mg;
        harness::eventually(
            &format!("meshguard serves the certificate of rotation {round}"),
            PATIENCE,
            || async {
                let served = probe.served_certificate();
                (served == leaf.der)
                    .then_some(())
                    .ok_or_else(|| "still the previous certificate".to_owned())
            },
        )
        .await;
        load.wait_for_more("reviews after the swap", REVIEWS_AROUND_A_SWAP)
            .await;
    }
    // Idle-connection closes from here on include those of the apiserver's last connections.
    let idle = "closing idle connection";
    let closed_before = log_count(&mg.log, idle);
    load.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("load worker");
    }
    let failures = load
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(failures.is_empty(), "failed admissions: {failures:#?}");
    let (stored, refused) = (
        load.stored.load(Ordering::Relaxed),
        load.refused.load(Ordering::Relaxed),
    );
    run.step(format!("load: {stored} stored, {refused} refused"));
    assert!(
        refused > 0 && stored > 0,
        "{stored} stored, {refused} refused"
    );
    let names = run.names("PeerAuthentication", &ns).await;
    assert_eq!(names.len() as u64, stored, "every allowed create is stored");

    // The apiserver's connections from before are closed once idle; the next review needs a
    // new TLS handshake, with the newest certificate.
    let log = mg.log.clone();
    harness::eventually(
        "meshguard closes the idle apiserver connections",
        PATIENCE,
        || {
            let n = log_count(&log, idle);
            async move {
                (n > closed_before)
                    .then_some(())
                    .ok_or_else(|| format!("{n} idle connections closed"))
            }
        },
    )
    .await;
    let last = format!(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: after-rotation, namespace: {ns}}}
spec: {{selector: {{matchLabels: {{app: after}}}}, mtls: {{mode: STRICT}}}}
"
    );
    run.apply(&last, &[]).await.ok();
    assert_eq!(log_count(&mg.log, "TLS handshake failed"), 0);
    let reloads = mg.metric_sum("meshguard_tls_reloads_total", &[("result", "success")]);
    assert!(reloads >= ROTATIONS as f64, "{reloads} reloads");
    eprintln!(
        "e2e certificate_rotation: {ROTATIONS} rotations under load, {stored} stored, {refused} refused by meshguard, 0 failed"
    );
}
