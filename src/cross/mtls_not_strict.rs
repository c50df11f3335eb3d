//! `mtls-not-strict`: a workload port whose effective mTLS is PERMISSIVE or DISABLE.
//!
//! Effective mTLS is composed as istiod does (pilot `ComposePeerAuthentication`, see
//! [`crate::mtls`]): mesh → namespace → workload → port, oldest policy wins within a scope,
//! UNSET inherits, no mesh policy means PERMISSIVE, workload-level policies in the root
//! namespace are ignored.

use super::{CrossCheck, CrossContext};
use crate::finding::{Action, Subject, Violation};
use crate::model::MtlsMode;
use crate::json::quoted_key;
use crate::mtls::Level;
use crate::resource::Kind;
use std::collections::HashMap;

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "mtls-not-strict",
    default_action: Action::Deny,
    summary: "a workload port whose effective mTLS is PERMISSIVE or DISABLE (mesh → namespace → workload → port, oldest policy wins, UNSET inherits, no mesh policy = PERMISSIVE, root-namespace workload policies ignored)",
    example_fix: "a PeerAuthentication in the root namespace with no selector and spec.mtls.mode: STRICT",
    run,
};

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let workloads = cx.inventory.workloads();
    let by_key: HashMap<(&str, Kind, &str), usize> = workloads
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let w = &w.workload;
            ((w.namespace.as_str(), w.kind, w.name.as_str()), i)
        })
        .collect();
    for r in cx.mtls_rows() {
        let mode = r.effective.mode;
        if !matches!(mode, MtlsMode::Permissive | MtlsMode::Disable) {
            continue;
        }
        let Some(&i) = by_key.get(&(r.namespace.as_str(), r.kind, r.workload.as_str())) else {
            continue;
        };
        let port = match r.port {
            Some(p) => format!("port {p}"),
            None => "every port".to_owned(),
        };
        let what = match (mode, r.dataplane.as_str()) {
            (_, p) if p.starts_with("ztunnel") => "ztunnel accepts plaintext connections (without a peer identity) besides its mesh clients' HBONE",
            (MtlsMode::Disable, _) => "connections are plaintext",
            _ => "plaintext connections are accepted",
        };
        let (why, fix) = match &r.effective.decided_by {
            Some(d) => {
                let field = match (d.level, r.port) {
                    (Level::Port, Some(p)) => {
                        format!("spec.portLevelMtls{}.mode", quoted_key(&p.to_string()))
                    }
                    _ => "spec.mtls.mode".to_owned(),
                };
                (
                    format!(
                        "decided by PeerAuthentication {}/{} ({} level)",
                        d.namespace,
                        d.name,
                        d.level.as_str()
                    ),
                    format!(
                        "set {field}: STRICT in PeerAuthentication {}/{}",
                        d.namespace, d.name
                    ),
                )
            }
            None => (
                "no PeerAuthentication sets a mode, and Istio's default is PERMISSIVE".to_owned(),
                format!(
                    "apply a PeerAuthentication in namespace \"{}\" with no selector and spec.mtls.mode: STRICT (mesh-wide)",
                    cx.root
                ),
            ),
        };
        out.push((
            cx.inventory.workload_object(&workloads[i]).subject(),
            Violation::new(
                r.path.clone(),
                format!("effective mTLS on {port} is {mode}, {why}, so {what}"),
                fix,
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cross::testing::*;
    use serde_json::json;

    #[test]
    fn fires_on_permissive_default_and_port_level_holes() {
        let found = findings(
            &CHECK,
            true,
            vec![deployment("prod", "web", json!({"app": "web"}), &[8080])],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "Deployment prod/web");
        assert_eq!(
            found[0].1,
            "spec.template.spec.containers[0].ports[0].containerPort"
        );
        assert!(
            found[0]
                .2
                .contains("PERMISSIVE, no PeerAuthentication sets a mode"),
            "{}",
            found[0].2
        );

        let found = findings(
            &CHECK,
            true,
            vec![
                deployment("prod", "db", json!({"app": "db"}), &[5432, 9090]),
                istio(
                    "PeerAuthentication",
                    "istio-system",
                    "mesh",
                    json!({"mtls": {"mode": "STRICT"}}),
                ),
                istio(
                    "PeerAuthentication",
                    "prod",
                    "db",
                    json!({"selector": {"matchLabels": {"app": "db"}},
                    "portLevelMtls": {"9090": {"mode": "DISABLE"}}}),
                ),
            ],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].2.starts_with("effective mTLS on port 9090 is DISABLE, decided by PeerAuthentication prod/db (port level)"), "{}", found[0].2);
    }

    #[test]
    fn quiet_when_strict_and_for_exempt_namespaces() {
        let found = findings(
            &CHECK,
            true,
            vec![
                deployment("prod", "web", json!({"app": "web"}), &[8080]),
                deployment("kube-system", "dns", json!({"app": "dns"}), &[53]),
                istio(
                    "PeerAuthentication",
                    "istio-system",
                    "mesh",
                    json!({"mtls": {"mode": "STRICT"}}),
                ),
            ],
        );
        assert!(found.is_empty(), "{found:?}");
        let found = findings(
            &CHECK,
            true,
            vec![deployment(
                "kube-system",
                "dns",
                json!({"app": "dns"}),
                &[53],
            )],
        );
        assert!(found.is_empty(), "exempt namespace: {found:?}");
    }
}
