//! Scenario 5: the serving certificate is rotated while the apiserver is sending reviews
//! (`certificate_rotation`: new pairs from the same CA; `ca_rotation`: a new CA, the way the
//! chart's generated certificate is renewed, with both CAs in the caBundle through the switch).
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

/// Scenario `ca_rotation`: the chart's generated-certificate renewal (a new CA, not only a new
/// pair) while reviews flow. See [`ca_scenario`].
pub fn run_ca(kubeconfig: &Path) {
    harness::block_on(ca_scenario(kubeconfig));
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

/// Point both webhook configurations' caBundle at `pem` (what `helm upgrade` writes).
async fn set_ca_bundle(run: &Run, configuration: &str, pem: &str) {
    let bundle = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem);
    let patch =
        json!([{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": bundle}])
            .to_string();
    for kind in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        run.kubectl(&["patch", kind, configuration, "--type=json", "-p", &patch])
            .await
            .ok();
    }
}

/// Stop the workers and wait for them.
async fn stop(load: &Arc<Load>, workers: Vec<tokio::task::JoinHandle<()>>) {
    load.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("load worker");
    }
    load.stop.store(false, Ordering::Relaxed);
}

fn start(run: &Run, load: &Arc<Load>, ns: &str, phase: usize) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WORKERS)
        .map(|k| {
            let api = run.api("PeerAuthentication", Some(ns));
            tokio::spawn(load.clone().worker(api, ns.to_owned(), phase * 10 + k))
        })
        .collect()
}

/// The chart's generated-certificate renewal (`certificates.generate.rotation`, or
/// `renewBeforeDays` reached): `helm upgrade` writes a new CA and pair into the Secret and
/// both CAs into the webhooks' caBundle; kubelet brings the new pair to the pods a little
/// later. Under load throughout:
///
/// 1. the caBundle becomes new CA + old CA while meshguard still serves the old pair (the
///    apiserver builds new clients for the new bundle: fresh handshakes with the old pair);
/// 2. the Secret volume switches to the new pair; after a pause longer than meshguard's idle
///    timeout every review comes over a fresh handshake with the new pair;
/// 3. the old CA leaves the bundle (the first upgrade after `previousCAHours`).
///
/// Zero failed reviews throughout. Then a control shows the bundle is what carries it: a bundle
/// with only the old CA, while the new pair is served, makes the apiserver fail the calls.
async fn ca_scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "ca-rotation").await;
    let mut mg = run
        .serve(&[
            "--idle-timeout",
            "1s",
            "--log-level",
            "info,meshguard::listener=debug",
        ])
        .await;
    let hooks = run.register(&mg).await;
    let ns = run.ns("load");
    run.create_namespace("load", &[]).await.ok();
    let load = Arc::new(Load::default());
    let old_ca = mg.pki.ca_pem.clone();
    let new_pki = harness::Pki::new();

    let workers = start(&run, &load, &ns, 0);
    load.wait_for_more("reviews with the old CA", REVIEWS_AROUND_A_SWAP)
        .await;
    run.step("helm upgrade: caBundle = new CA + old CA");
    set_ca_bundle(&run, &hooks.name, &format!("{}{old_ca}", new_pki.ca_pem)).await;
    load.wait_for_more(
        "reviews with both CAs trusted, the old pair served",
        2 * REVIEWS_AROUND_A_SWAP,
    )
    .await;

    run.step("kubelet updates the Secret volume: the new pair");
    let leaf = new_pki.leaf();
    mg.volume
        .write(&[("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)]);
    let both = format!("{}{old_ca}", new_pki.ca_pem);
    let probe = &mg;
    harness::eventually("meshguard serves the new pair", PATIENCE, || async {
        (probe.served_certificate_trusting(&both) == leaf.der)
            .then_some(())
            .ok_or_else(|| "still the old pair".to_owned())
    })
    .await;
    load.wait_for_more("reviews after the switch", REVIEWS_AROUND_A_SWAP)
        .await;
    // A pause: meshguard closes the apiserver's idle connections, so what follows comes over
    // fresh handshakes with the new pair.
    stop(&load, workers).await;
    let idle = "closing idle connection";
    let closed = log_count(&mg.log, idle);
    let log = mg.log.clone();
    harness::eventually("the idle connections are closed", PATIENCE, || {
        let n = log_count(&log, idle);
        async move {
            (n > closed)
                .then_some(())
                .ok_or_else(|| format!("{n} closed"))
        }
    })
    .await;
    let workers = start(&run, &load, &ns, 1);
    load.wait_for_more(
        "reviews over new handshakes with the new pair",
        2 * REVIEWS_AROUND_A_SWAP,
    )
    .await;

    run.step("the next upgrade drops the old CA");
    set_ca_bundle(&run, &hooks.name, &new_pki.ca_pem).await;
    load.wait_for_more("reviews with the new CA only", 2 * REVIEWS_AROUND_A_SWAP)
        .await;
    stop(&load, workers).await;
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
    assert!(
        refused > 0 && stored > 0,
        "{stored} stored, {refused} refused"
    );
    assert_eq!(
        run.names("PeerAuthentication", &ns).await.len() as u64,
        stored,
        "every allowed create is stored"
    );

    assert_eq!(log_count(&mg.log, "TLS handshake failed"), 0);

    run.step("control: a caBundle without the new CA fails the calls");
    set_ca_bundle(&run, &hooks.name, &old_ca).await;
    let pa = |name: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{selector: {{matchLabels: {{app: {name}}}}}, mtls: {{mode: STRICT}}}}\n"
        )
    };
    let mut i = 0;
    let refusal = harness::eventually("the apiserver cannot verify meshguard", PATIENCE, || {
        i += 1;
        let (run, yaml) = (&run, pa(&format!("control-{i}")));
        async move {
            let out = run.apply(&yaml, &[]).await;
            let text = out.to_string();
            (!out.success() && text.contains("failed calling webhook"))
                .then_some(text.clone())
                .ok_or(text)
        }
    })
    .await;
    assert!(
        refusal.contains("x509") || refusal.contains("certificate"),
        "{refusal}"
    );
    // Back to the right bundle, so that the namespace's teardown is reviewed.
    set_ca_bundle(&run, &hooks.name, &new_pki.ca_pem).await;
    run.apply(&pa("after-control"), &[]).await.ok();
    eprintln!(
        "e2e ca_rotation: new CA under load, {stored} stored, {refused} refused by meshguard, 0 failed; old-CA-only bundle control refused as expected"
    );
}
