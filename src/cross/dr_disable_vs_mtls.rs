//! `dr-disable-vs-mtls`: a DestinationRule `tls.mode: DISABLE` toward workloads whose effective
//! mTLS is STRICT (traffic breaks) or PERMISSIVE (traffic silently loses mTLS). An explicit DR
//! `tls` always overrides auto-mTLS (Istio's `ClientTLSSettings` reference), so the client
//! sidecar sends plaintext whatever the server accepts.
//!
//! The host is resolved to Services in the inventory (short names in the rule's namespace,
//! `<svc>.<ns>.svc[.<clusterDomain>]`, `*.` suffix wildcards), their selectors to workloads, and
//! each Service port to the workload port it targets; a port-level `tls` replaces the policy's
//! own on that port, and a subset narrows the workloads by its labels.

use super::{list_some, CrossCheck, CrossContext};
use crate::finding::{Action, Subject, Violation};
use crate::inventory::Object;
use crate::model::MtlsMode;
use crate::model::destination_rule::TlsSite;
use crate::model::{decode_spec, DestinationRule, Service};
use crate::resource::Kind;
use std::collections::BTreeMap;

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "dr-disable-vs-mtls",
    default_action: Action::Deny,
    summary: "DestinationRule `tls.mode: DISABLE` toward a STRICT (traffic breaks) or PERMISSIVE (silent plaintext) workload",
    example_fix: "remove the tls setting (auto-mTLS then picks mTLS) or set tls.mode: ISTIO_MUTUAL",
    run,
};

/// The Services a DestinationRule host names.
fn services<'a>(cx: &CrossContext<'a>, host: &str, rule_ns: &str) -> Vec<&'a Object> {
    let cd = &cx.engine.policy().cluster_domain;
    let fqdn = if host.contains('.') || host.contains('*') {
        host.to_owned()
    } else {
        format!("{host}.{rule_ns}.svc.{cd}")
    };
    match fqdn.strip_prefix('*') {
        Some(suffix) => cx
            .inventory
            .of_kind(Kind::Service)
            .filter(|svc| format!("{}.{}.svc.{cd}", svc.name(), svc.namespace()).ends_with(suffix))
            .collect(),
        None => fqdn
            .strip_suffix(&format!(".svc.{cd}"))
            .or_else(|| fqdn.strip_suffix(".svc"))
            .and_then(|h| h.split_once('.'))
            .and_then(|(name, ns)| cx.inventory.find(Kind::Service, ns, name))
            .into_iter()
            .collect(),
    }
}

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    for dr_obj in cx.inventory.of_kind(Kind::DestinationRule) {
        let dr_spec = dr_obj.spec();
        let Ok(dr) = decode_spec::<DestinationRule<'_>>(&dr_spec) else {
            continue;
        };
        let Some(host) = dr.host() else { continue };
        // (site, subset labels, ports overridden at port level)
        let mut sites: Vec<(TlsSite<'_, '_>, BTreeMap<String, String>, Vec<u64>)> = Vec::new();
        for tp in dr.traffic_policies() {
            let labels = match tp.subset {
                Some(i) => dr
                    .subsets()
                    .get(i)
                    .and_then(|s| s.ok())
                    .map(|s| s.labels())
                    .unwrap_or_default(),
                None => BTreeMap::new(),
            };
            for site in tp.tls_sites().filter(|s| s.mode() == "DISABLE") {
                let overridden = match site.at.port_level {
                    None => tp.tls_overridden_ports(),
                    Some(_) => Vec::new(),
                };
                sites.push((site, labels.clone(), overridden));
            }
        }
        if sites.is_empty() {
            continue;
        }
        let services = services(cx, host, dr_obj.namespace());
        for (site, subset, overridden) in sites {
            let mut strict = Vec::new();
            let mut permissive = Vec::new();
            for svc in &services {
                let svc_spec = svc.spec();
                let Ok(sspec) = decode_spec::<Service<'_>>(&svc_spec) else {
                    continue;
                };
                let svc_sel = sspec.selector();
                if svc_sel.is_empty() {
                    continue; // no selector: endpoints managed by hand
                }
                for sp in sspec.ports() {
                    let Some(number) = sp.number() else {
                        continue;
                    };
                    if site.port.is_some_and(|p| p != number) || overridden.contains(&number) {
                        continue;
                    }
                    for &wi in cx.inventory.workloads_in(svc.namespace()) {
                        let w = &cx.workload(wi).workload;
                        let selects = |sel: &BTreeMap<String, String>| {
                            crate::model::label_selector::all_pairs_match(&w.labels, sel.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                        };
                        if !selects(&svc_sel) || !selects(&subset) {
                            continue;
                        }
                        let target = sp.target().and_then(|t| w.target_port(t));
                        let mode = cx
                            .peer_index()
                            .compose(&w.namespace, &w.labels)
                            .at(target)
                            .mode;
                        let label = format!(
                            "{} port {}",
                            cx.workload_label(wi),
                            target.map_or_else(|| "*".to_owned(), |t| t.to_string())
                        );
                        match mode {
                            MtlsMode::Strict => strict.push(label),
                            MtlsMode::Permissive | MtlsMode::Unset => permissive.push(label),
                            MtlsMode::Disable => {}
                        }
                    }
                }
            }
            strict.sort();
            strict.dedup();
            permissive.sort();
            permissive.dedup();
            let path = format!("{}.mode", site.at);
            let fix = "remove the tls setting (Istio's auto-mTLS then picks mTLS) or set tls.mode: ISTIO_MUTUAL";
            if !strict.is_empty() {
                out.push((
                    dr_obj.subject(),
                    Violation::new(
                        path.clone(),
                        format!("tls.mode DISABLE sends plaintext to {}, whose effective mTLS is STRICT, so requests fail", list_some(&strict)),
                        fix,
                    ),
                ));
            }
            if !permissive.is_empty() {
                out.push((
                    dr_obj.subject(),
                    Violation::new(
                        path,
                        format!("tls.mode DISABLE sends plaintext to {}, whose effective mTLS is PERMISSIVE, so traffic silently loses mTLS", list_some(&permissive)),
                        fix,
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cross::testing::*;
    use serde_json::json;

    fn service(
        ns: &str,
        name: &str,
        app: &str,
        port: u32,
        target: serde_json::Value,
    ) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": app}, "ports": [{"port": port, "targetPort": target}]}})
    }

    fn disable(host: &str) -> serde_json::Value {
        istio(
            "DestinationRule",
            "prod",
            "plain",
            json!({"host": host, "trafficPolicy": {"tls": {"mode": "DISABLE"}}}),
        )
    }

    #[test]
    fn fires_toward_strict_and_permissive_workloads() {
        let objects = |mesh_mode: &str| {
            vec![
                deployment("prod", "db", json!({"app": "db"}), &[5432]),
                service("prod", "db", "db", 5432, json!(5432)),
                istio(
                    "PeerAuthentication",
                    "istio-system",
                    "mesh",
                    json!({"mtls": {"mode": mesh_mode}}),
                ),
                disable("db"),
            ]
        };
        let strict = findings(&CHECK, false, objects("STRICT"));
        assert_eq!(strict.len(), 1, "{strict:?}");
        assert_eq!(strict[0].1, "spec.trafficPolicy.tls.mode");
        assert!(
            strict[0]
                .2
                .contains("deployment prod/db port 5432, whose effective mTLS is STRICT"),
            "{}",
            strict[0].2
        );
        let permissive = findings(&CHECK, false, objects("PERMISSIVE"));
        assert!(permissive[0].2.contains("is PERMISSIVE"), "{permissive:?}");
        // The fully qualified host and a named target port resolve to the same workload port.
        let mut objects = objects("STRICT");
        objects[1] = service("prod", "db", "db", 80, json!("5432"));
        objects[3] = disable("db.prod.svc.cluster.local");
        assert_eq!(findings(&CHECK, false, objects).len(), 1);
    }

    #[test]
    fn quiet_for_external_hosts_overridden_ports_and_other_subsets() {
        let base = vec![
            deployment("prod", "db", json!({"app": "db", "v": "1"}), &[5432]),
            service("prod", "db", "db", 5432, json!(5432)),
        ];
        let with = |dr: serde_json::Value| {
            let mut v = base.clone();
            v.push(dr);
            findings(&CHECK, false, v)
        };
        assert!(with(disable("api.example.com")).is_empty());
        assert!(with(istio("DestinationRule", "prod", "d", json!({"host": "db",
            "trafficPolicy": {"tls": {"mode": "DISABLE"},
                "portLevelSettings": [{"port": {"number": 5432}, "tls": {"mode": "ISTIO_MUTUAL"}}]}}))).is_empty());
        assert!(with(istio("DestinationRule", "prod", "d", json!({"host": "db",
            "subsets": [{"name": "v2", "labels": {"v": "2"}, "trafficPolicy": {"tls": {"mode": "DISABLE"}}}]}))).is_empty());
        assert!(with(istio(
            "DestinationRule",
            "prod",
            "d",
            json!({"host": "db",
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})
        ))
        .is_empty());
    }
}
