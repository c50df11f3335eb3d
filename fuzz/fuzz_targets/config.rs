//! Policy YAML (`--config`): parse + validate; a policy that loads must build an engine that
//! evaluates a review without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshguard::admission;
use meshguard::context::NoCluster;
use meshguard::engine::Engine;

const REVIEW: &[u8] = include_bytes!(
    "../../tests/fixtures/admission/peerauthentication-update-strict-to-permissive.json"
);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = meshguard::catalogue::policy_from_yaml(text, "fuzz") else {
        return;
    };
    let engine = Engine::new(policy, Default::default(), Some("meshguard"));
    let review = admission::decode_review(REVIEW).expect("fixture decodes");
    if let Some(req) = review.request.as_ref() {
        if let Some(r) = admission::recognise(req) {
            let _ = engine.evaluate(&r, &NoCluster);
            let _ = engine.mutate(&r, &NoCluster);
        }
    }
});
