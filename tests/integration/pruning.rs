//! The webhook decodes pod specs without the fields no check reads (`resource::Shape`). This
//! compares, for every captured review and fuzz seed, the engine's answer on the pruned object
//! with its answer on the whole object: findings and patches must be identical. A rule that
//! starts reading a pruned field fails here until the field comes off the skip list.

use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kube::core::DynamicObject;
use meshguard::admission::recognise;
use meshguard::config::Policy;
use meshguard::engine::Engine;
use meshguard::inventory::Inventory;
use meshguard::resource::ReviewObject;
use serde_json::Value;
use std::path::Path;

/// The object as the webhook sees it before pruning: everything but managedFields and status.
fn whole(v: &Value) -> Option<ReviewObject> {
    if v.is_null() {
        return None;
    }
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    serde_json::from_value::<DynamicObject>(v)
        .ok()
        .map(ReviewObject)
}

#[test]
fn pruning_changes_no_verdict() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let engine = Engine::new(Policy::default(), Default::default(), Some("meshguard"));
    let cluster = Inventory::complete(Vec::new())
        .with_namespace("production", &[("istio-injection", "enabled")])
        .with_namespace("default", &[])
        .with_service_account("production", "frontend")
        .with_service_account("production", "backend");
    let mut compared = 0;
    for dir in ["tests/fixtures/admission", "fuzz/seeds/admission"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            let Ok(raw): Result<Value, _> = serde_json::from_slice(&text) else {
                continue;
            };
            let Ok(review) = serde_json::from_slice::<AdmissionReview<ReviewObject>>(&text) else {
                continue;
            };
            let Ok(pruned): Result<AdmissionRequest<ReviewObject>, _> = review.try_into() else {
                continue;
            };
            let mut full = pruned.clone();
            full.object = whole(&raw["request"]["object"]);
            full.old_object = whole(&raw["request"]["oldObject"]);
            let (Some(a), Some(b)) = (recognise(&pruned), recognise(&full)) else {
                continue;
            };
            let name = path.display();
            assert_eq!(
                engine.evaluate(&a, &cluster),
                engine.evaluate(&b, &cluster),
                "{name}: findings differ"
            );
            assert_eq!(
                engine.mutate(&a, &cluster),
                engine.mutate(&b, &cluster),
                "{name}: patches differ"
            );
            compared += 1;
        }
    }
    assert!(compared > 40, "only {compared} reviews compared");
}
