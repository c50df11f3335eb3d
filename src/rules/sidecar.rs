//! Sidecar (networking.istio.io v1, v1beta1, v1alpha3): the inbound listeners a workload's
//! sidecar serves when a Sidecar lists them (`ingress`).
//!
//! A Sidecar changes which ports a proxy listens on and which services it sees; it does not turn
//! off mutual TLS or authorization, except through `ingress[].tls`: istio/istio
//! `pilot/pkg/networking/core/listener_inbound.go` (`buildInboundChainConfigs`) then terminates
//! TLS on that port with the Sidecar's own certificates instead of Istio's mutual TLS (when
//! istiod runs with `ENABLE_TLS_ON_SIDECAR_INGRESS`). Clients are no longer checked against the
//! mesh's CA, and a client certificate from the CA the Sidecar names can carry any SPIFFE identity,
//! which AuthorizationPolicy then trusts as a mesh principal. `egress`, `outboundTrafficPolicy`
//! and `ingress` ports without `tls` are left to RBAC (docs/rules.md).

use super::{Action, Rule, Violation};
use crate::model::decode_spec;
use crate::model::sidecar::{IngressListener, Sidecar};
use crate::resource::Kind;

const KINDS: &[Kind] = &[Kind::Sidecar];

pub(crate) static INGRESS_TLS: Rule = Rule {
    id: "sidecar-ingress-tls",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a Sidecar ingress listener with tls (SIMPLE, MUTUAL, ...) terminates TLS on its own certificates instead of Istio's mutual TLS: STRICT no longer holds on that port, and a client certificate from its CA can claim any mesh identity",
    example_fix: "remove spec.ingress[].tls and terminate external TLS at a Gateway",
    needs: &[],
    check: |review, _ctx, out| {
        // A spec the typed decode refuses (not an object) reads as empty.
        let sidecar: Sidecar<'_> = decode_spec(review.spec()).unwrap_or_default();
        for (index, listener) in sidecar.ingress() {
            let Some(mode) = listener.tls_mode() else { continue };
            if mode == "ISTIO_MUTUAL" {
                continue; // Istio's own certificates and peer verification
            }
            let port = listener
                .port()
                .map_or_else(|| "this port".to_owned(), |p| format!("port {p}"));
            out.push(Violation::new(
                format!("{}.tls", IngressListener::path(index)),
                format!(
                    "tls mode {mode} makes the sidecar terminate TLS on {port} with the Sidecar's own certificates instead of Istio's mutual TLS: STRICT PeerAuthentication no longer holds there, and a client certificate from the CA it trusts can carry any SPIFFE identity, which AuthorizationPolicy then matches as a mesh principal"
                ),
                "remove tls from the ingress listener (in-mesh clients use Istio's mutual TLS); terminate TLS for clients outside the mesh at a Gateway; if this listener is deliberate, exempt the Sidecar's namespace from sidecar-ingress-tls in the meshguard policy",
            ));
        }
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{obj, run};
    use kube::core::admission::Operation;
    use serde_json::{json, Value};

    fn sidecar(version: &str, spec: Value) -> kube::core::DynamicObject {
        obj(
            json!({"apiVersion": format!("networking.istio.io/{version}"), "kind": "Sidecar",
            "metadata": {"name": "s", "namespace": "prod"}, "spec": spec}),
        )
    }

    #[test]
    fn ingress_tls_is_refused_for_every_version() {
        for v in ["v1", "v1beta1", "v1alpha3"] {
            for op in [Operation::Create, Operation::Update] {
                let s = sidecar(
                    v,
                    json!({"ingress": [
                        {"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "defaultEndpoint": "127.0.0.1:8080"},
                        {"port": {"number": 8443, "protocol": "HTTPS", "name": "https"}, "defaultEndpoint": "127.0.0.1:8443",
                         "tls": {"mode": "MUTUAL", "credentialName": "mine"}}]}),
                );
                let f = run(&INGRESS_TLS, op.clone(), v, "prod", &s);
                assert_eq!(f.len(), 1, "{v}");
                assert_eq!(f[0].path, "spec.ingress[1].tls");
                assert!(f[0]
                    .message
                    .starts_with("tls mode MUTUAL makes the sidecar terminate TLS on port 8443"));
            }
        }
    }

    #[test]
    fn ordinary_sidecars_pass() {
        for spec in [
            json!({"egress": [{"hosts": ["./*", "istio-system/*"]}], "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}),
            json!({"ingress": [{"port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                "defaultEndpoint": "127.0.0.1:8080", "tls": {"mode": "ISTIO_MUTUAL"}}]}),
            json!({}),
        ] {
            let s = sidecar("v1", spec.clone());
            assert!(
                run(&INGRESS_TLS, Operation::Create, "v1", "prod", &s).is_empty(),
                "{spec}"
            );
        }
    }
}
