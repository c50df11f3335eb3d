//! `pa-ambient-disable`: a PeerAuthentication with mode DISABLE (top level or a port) that applies
//! to ambient workloads of a namespace that is not itself ambient (mesh-wide policies, pods
//! enrolled one by one), where `pa-disabled-mtls` cannot tell.
//!
//! ztunnel has no DISABLE: istiod compiles PeerAuthentications for it into DENY policies on
//! connections without a peer identity, and DISABLE counts as PERMISSIVE
//! (`isMtlsModePermissive(...) || isMtlsModeDisable(...)` in istio/istio
//! `pilot/pkg/serviceregistry/ambient/authorization.go`). Mesh clients keep connecting over HBONE
//! (mTLS, with their identity); DISABLE only lets plaintext clients in.

use super::{list_some, CrossCheck, CrossContext};
use crate::dataplane::{namespace_plane, Plane};
use crate::finding::{Action, Subject, Violation};
use crate::model::{decode_spec, PeerAuthentication};
use crate::resource::Kind;

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "pa-ambient-disable",
    default_action: Action::Warn,
    summary: "a PeerAuthentication with mode DISABLE applying to ambient workloads (mesh-wide, or pods enrolled in a namespace that is not ambient): ztunnel treats it as PERMISSIVE, so plaintext gets in while mesh traffic stays mTLS",
    example_fix: "spec.mtls.mode: STRICT",
    run,
};

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let mesh = cx.engine.mesh();
    for o in cx.inventory.of_kind(Kind::PeerAuthentication) {
        let ns = o.namespace();
        let spec = o.spec();
        let pa: PeerAuthentication<'_> = decode_spec(&spec).unwrap_or_default();
        let disabled: Vec<(String, &str)> = pa
            .modes()
            .filter(|(_, m)| *m == "DISABLE")
            .collect();
        if disabled.is_empty() {
            continue;
        }
        // pa-disabled-mtls already speaks ambient for a policy in an ambient namespace.
        if let crate::context::Lookup::Found(labels) =
            crate::context::ClusterView::namespace_labels(cx.inventory, ns)
        {
            if ns != cx.root && namespace_plane(mesh, ns, &labels) == Plane::Ambient {
                continue;
            }
        }
        let scope: Vec<usize> = if ns == cx.root {
            if !pa.selector().is_empty() {
                continue; // ignored by Istio
            }
            (0..cx.inventory.workloads().len()).collect()
        } else {
            cx.scope(ns, pa.selector(), false)
        };
        let ambient: Vec<String> = scope
            .iter()
            .filter(|&&i| cx.plane(i).plane == Plane::Ambient)
            .map(|&i| cx.workload_label(i))
            .collect();
        if ambient.is_empty() {
            continue;
        }
        for (path, _) in disabled {
            out.push((
                o.subject(),
                Violation::new(
                    path,
                    format!(
                        "DISABLE applies to ambient workloads ({}), where ztunnel treats it as PERMISSIVE: mesh clients keep using HBONE (mTLS, with their identity) and plaintext clients get in without one, past every identity-based AuthorizationPolicy",
                        list_some(&ambient)
                    ),
                    "set mode: STRICT (DISABLE cannot turn mTLS off in ambient mode; it only admits plaintext)",
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cross::testing::*;
    use serde_json::json;

    #[test]
    fn fires_for_ambient_workloads_mesh_wide_and_pods_enrolled_alone() {
        let found = findings(
            &CHECK,
            true,
            vec![
                namespace("plain", json!({})),
                deployment("plain", "agent", json!({"app": "agent", "istio.io/dataplane-mode": "ambient"}), &[80]),
                istio("PeerAuthentication", "plain", "agent", json!({"selector": {"matchLabels": {"app": "agent"}}, "mtls": {"mode": "DISABLE"}})),
                istio("PeerAuthentication", "istio-system", "mesh", json!({"mtls": {"mode": "DISABLE"}})),
            ],
        );
        let subjects: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            subjects,
            ["PeerAuthentication plain/agent", "PeerAuthentication istio-system/mesh"],
            "{found:?}"
        );
        assert!(found[0].2.contains("treats it as PERMISSIVE"));
    }

    #[test]
    fn quiet_for_sidecar_workloads_and_ambient_namespaces() {
        let found = findings(
            &CHECK,
            true,
            vec![
                namespace("payments", json!({"istio-injection": "enabled"})),
                deployment("payments", "ledger", json!({"app": "ledger"}), &[80]),
                istio("PeerAuthentication", "payments", "d", json!({"mtls": {"mode": "DISABLE"}})),
                // In an ambient namespace pa-disabled-mtls says it.
                namespace("shop", json!({"istio.io/dataplane-mode": "ambient"})),
                deployment("shop", "web", json!({"app": "web"}), &[80]),
                istio("PeerAuthentication", "shop", "d", json!({"mtls": {"mode": "DISABLE"}})),
            ],
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
