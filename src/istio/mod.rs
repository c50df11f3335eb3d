//! Typed, path-aware views of the Istio kinds meshguard judges (the four security kinds,
//! EnvoyFilter and Sidecar), read once from an object's `spec`.
//!
//! Every consumer reads these instead of walking JSON on its own: the per-kind rules, the
//! Istio-parity validation, the cross-resource checks, effective mTLS and the authorization
//! simulator. A view borrows from the object (no copies of strings) and keeps, for every part,
//! where it sits (`spec.rules[2].from[0].source`), so a finding can name the field. Views are
//! lenient: a value of the wrong JSON type reads as absent here, and the parity validation
//! reports it from the raw value each part also keeps.
//!
//! * AuthorizationPolicy: in [`crate::model::authorization_policy`] (the typed model).
//! * DestinationRule: in [`crate::model::destination_rule`] (the typed model).
//! * PeerAuthentication: in [`crate::model::peer_authentication`] (the typed model).
//! * RequestAuthentication: in [`crate::model::request_authentication`] (the typed model).
//! * [`EnvoyFilter`]: config patches, where each applies and what it does.
//! * [`Sidecar`]: ingress listeners and their TLS settings.
//!
//! An Istio policy's `selector` (`WorkloadSelector`) is [`crate::model::Selector`], matched by
//! meshguard's one selector engine ([`crate::model::label_selector`]).
//!
//! Semantics follow Istio's own code: `pilot/pkg/security/authz/model` for authorization,
//! `pilot/pkg/security/authn` (`ComposePeerAuthentication`) for mTLS, and
//! `pkg/config/validation` for what the API accepts.

pub mod envoy_filter;
pub mod sidecar;

pub use envoy_filter::EnvoyFilter;
pub use sidecar::Sidecar;

use kube::core::DynamicObject;

/// The `istio.io/dry-run: "true"` annotation: Istio evaluates the policy in shadow mode only
/// (logs and stats, never the decision). Read as Go's `strconv.ParseBool` reads it (istio/istio
/// `pilot/pkg/security/authz/builder/builder.go`, `isDryRun`): `1`, `t`, `T`, `TRUE`, `true`
/// and `True` all turn it on.
pub fn is_dry_run(obj: &DynamicObject) -> bool {
    is_dry_run_meta(&obj.metadata)
}

/// [`is_dry_run`] of an object's metadata.
pub fn is_dry_run_meta(meta: &kube::core::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get("istio.io/dry-run"))
        .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "TRUE" | "true" | "True"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dry_run_reads_like_go_parse_bool() {
        let obj = |v: &str| -> DynamicObject {
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "X",
                "metadata": {"name": "p", "annotations": {"istio.io/dry-run": v}}}))
            .expect("object")
        };
        for on in ["true", "True", "TRUE", "t", "T", "1"] {
            assert!(is_dry_run(&obj(on)), "{on}");
        }
        for off in ["false", "0", "yes", ""] {
            assert!(!is_dry_run(&obj(off)), "{off}");
        }
    }
}
