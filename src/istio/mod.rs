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
//! Semantics follow Istio's own code: `pilot/pkg/security/authz/model` for authorization,
//! `pilot/pkg/security/authn` (`ComposePeerAuthentication`) for mTLS, and
//! `pkg/config/validation` for what the API accepts.

pub mod envoy_filter;
pub mod sidecar;

pub use envoy_filter::EnvoyFilter;
pub use sidecar::Sidecar;

use kube::core::DynamicObject;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `spec.selector.matchLabels` of an Istio policy (`WorkloadSelector`). Empty (absent, or no
/// labels) means the policy is namespace-wide, or mesh-wide in the root namespace.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkloadSelector<'a> {
    match_labels: Option<&'a Map<String, Value>>,
}

impl<'a> WorkloadSelector<'a> {
    /// The selector of a policy `spec`.
    pub fn of(spec: &'a Value) -> WorkloadSelector<'a> {
        WorkloadSelector {
            match_labels: spec
                .get("selector")
                .and_then(|s| s.get("matchLabels"))
                .and_then(Value::as_object),
        }
    }

    /// No labels: the policy selects nothing in particular.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_none_or(Map::is_empty)
    }

    /// The label pairs (entries whose value is not a string are skipped).
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.match_labels
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
    }

    /// Whether pods with `labels` are selected (every pair present with the same value).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels()
            .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
    }

    /// The label pairs as an owned map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.labels()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// `k=v,k2=v2`, for messages.
    pub fn describe(&self) -> String {
        self.labels()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

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

    #[test]
    fn selector_empty_matches_and_describes() {
        let spec = json!({"selector": {"matchLabels": {"app": "web", "n": 1}}});
        let s = WorkloadSelector::of(&spec);
        assert!(!s.is_empty());
        assert_eq!(s.describe(), "app=web");
        let mut labels = BTreeMap::new();
        assert!(!s.matches(&labels));
        labels.insert("app".to_owned(), "web".to_owned());
        assert!(s.matches(&labels));
        for spec in [
            json!({}),
            json!({"selector": null}),
            json!({"selector": {"matchLabels": {}}}),
        ] {
            let s = WorkloadSelector::of(&spec);
            assert!(s.is_empty() && s.matches(&BTreeMap::new()), "{spec}");
        }
    }
}
