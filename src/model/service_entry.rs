//! Istio's `ServiceEntry` (networking.istio.io): the hosts and ports it adds to the mesh and the
//! workloads it selects (`workloadSelector.labels`), which the data-plane model binds to
//! waypoints as it binds Services. meshguard does not validate ServiceEntries; a `spec` that does
//! not decode is read as absent ([`crate::model::decode_part`]).

use super::Str;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `ServiceEntry.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec<'a> {
    #[serde(borrow, default)]
    pub hosts: Vec<Str<'a>>,
    #[serde(borrow, default)]
    pub ports: Vec<ServiceEntryPort<'a>>,
    #[serde(borrow, default)]
    pub(crate) workload_selector: Option<WorkloadSelectorSpec<'a>>,
}

/// `spec.ports[]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntryPort<'a> {
    #[serde(default)]
    pub number: u32,
    #[serde(borrow, default)]
    pub name: Str<'a>,
    #[serde(borrow, default)]
    pub protocol: Option<Str<'a>>,
    #[serde(default)]
    pub(crate) target_port: Option<u32>,
}

/// `spec.workloadSelector`: labels every selected pod carries (`matchLabels` semantics).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct WorkloadSelectorSpec<'a> {
    #[serde(borrow, default)]
    pub(crate) labels: BTreeMap<Str<'a>, Str<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode_part;
    use serde_json::json;

    #[test]
    fn ports_and_workload_selector() {
        let o: kube::core::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"hosts": ["db.example"], "resolution": "STATIC",
                "ports": [{"number": 5432, "name": "pg", "protocol": "TCP", "targetPort": 15432}],
                "workloadSelector": {"labels": {"app": "db"}}}}))
        .expect("object");
        let (spec, err): (ServiceEntrySpec<'_>, _) = decode_part(&o, "spec");
        assert!(err.is_none());
        assert_eq!(spec.ports[0].target_port, Some(15432));
        let labels = spec.workload_selector.expect("selector").labels;
        assert_eq!(labels.get("app").map(Str::as_str), Some("db"));
        let o: kube::core::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": "db"}, "spec": {"ports": [{"number": "5432"}]}}))
        .expect("object");
        let (spec, err): (ServiceEntrySpec<'_>, _) = decode_part(&o, "spec");
        assert!(spec.ports.is_empty());
        assert_eq!(
            err.as_deref(),
            Some("spec: invalid type: string \"5432\", expected u32")
        );
    }
}
