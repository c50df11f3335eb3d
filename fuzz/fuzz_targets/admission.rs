//! AdmissionReview bytes → decode → recognise → evaluate/mutate (no cluster, and a static
//! cluster) → decide → encode, plus the whole `Admission::handle` path for both webhooks.
//! Invariants: no panic; a handled review answers with valid JSON echoing the request uid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshguard::admission::{self, Admission, Webhook};
use meshguard::config::Policy;
use meshguard::context::NoCluster;
use meshguard::engine::Engine;
use meshguard::inventory::Inventory;
use meshguard::metrics::Metrics;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

struct Fixture {
    rt: tokio::runtime::Runtime,
    admission: Admission,
    engine: Engine,
    cluster: Inventory,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let metrics = Metrics::new().expect("metrics");
        let admission = Admission::new(
            meshguard::engine::EngineHandle::new(Engine::new(
                Policy::builtin(),
                Default::default(),
                Some("meshguard"),
            )),
            metrics,
            Arc::new(NoCluster),
        );
        let cluster = Inventory::complete(Vec::new())
            .with_namespace("prod", &[("istio-injection", "enabled")])
            .with_namespace("default", &[])
            .with_namespace("istio-system", &[])
            .with_service_account("prod", "web")
            .with_service_account("default", "default");
        Fixture {
            rt,
            admission,
            engine: Engine::new(Policy::builtin(), Default::default(), Some("meshguard")),
            cluster,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();

    // The sync pieces, against a static cluster picture.
    if let Ok(review) = admission::decode_review(data) {
        if let Some(req) = review.request.as_ref() {
            if let Some(r) = admission::recognise(req) {
                let eval = f.engine.evaluate(&r, &f.cluster);
                let resp = kube::core::admission::AdmissionResponse::from(req);
                let (resp, _) = admission::decide(resp, &eval);
                let _ = admission::encode(resp);
                let _ = f.engine.mutate(&r, &f.cluster);
            }
        }
    }

    // The full request flow as the server runs it.
    for webhook in [Webhook::Validate, Webhook::Mutate] {
        let out =
            f.rt.block_on(f.admission.handle(webhook, data, Duration::from_secs(10)));
        if let Ok(bytes) = out {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).expect("handle answered invalid JSON");
            // The decoder skips managedFields/status without validating them (by design, for
            // speed), so an accepted body need not be strictly valid JSON as a whole.
            if let Ok(input) = serde_json::from_slice::<serde_json::Value>(data) {
                assert_eq!(
                    v["response"]["uid"], input["request"]["uid"],
                    "response uid must echo the request uid"
                );
            }
        }
    }
});
