//! YAML manifest text as `meshguard check` reads it: YAML → JSON value → DynamicObject →
//! engine evaluation (CREATE) with no cluster and a static cluster. `meshguard::manifest` was
//! not on main when this target was written, so it drives the same pieces directly.
#![no_main]

use kube::core::admission::Operation;
use kube::core::DynamicObject;
use libfuzzer_sys::fuzz_target;
use meshguard::config::Policy;
use meshguard::context::NoCluster;
use meshguard::engine::Engine;
use meshguard::inventory::Inventory;
use meshguard::resource::{Kind, Review};
use std::sync::OnceLock;

fn engine() -> &'static (Engine, Inventory) {
    static E: OnceLock<(Engine, Inventory)> = OnceLock::new();
    E.get_or_init(|| {
        let cluster = Inventory::complete(Vec::new())
            .with_namespace("prod", &[("istio-injection", "enabled")])
            .with_service_account("prod", "web");
        (
            Engine::new(Policy::builtin(), Default::default(), None),
            cluster,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return;
    };
    let Ok(obj) = serde_json::from_value::<DynamicObject>(value) else {
        return;
    };
    let Some(types) = obj.types.as_ref() else {
        return;
    };
    let (group, version) = match types.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", types.api_version.as_str()),
    };
    let Some(kind) = Kind::from_gvk(group, version, &types.kind) else {
        return;
    };
    let (engine, cluster) = engine();
    for op in [Operation::Create, Operation::Update] {
        let review = Review {
            kind,
            version,
            operation: &op,
            namespace: obj.metadata.namespace.as_deref().unwrap_or("default"),
            name: obj.metadata.name.as_deref().unwrap_or(""),
            object: Some(&obj),
            old_object: if op == Operation::Update {
                Some(&obj)
            } else {
                None
            },
            dry_run: false,
            created_for: None,
        };
        let _ = engine.evaluate(&review, &NoCluster);
        let _ = engine.evaluate(&review, cluster);
        let _ = engine.mutate(&review, cluster);
    }
});
