//! DestinationRule (networking.istio.io v1, v1beta1, v1alpha3): client-side TLS toward in-mesh
//! hosts must stay Istio mutual TLS, and TLS toward anything must verify the server.
//!
//! An explicit DR `tls` always overrides auto-mTLS (Istio's `ClientTLSSettings` reference), so
//! `DISABLE` toward an in-mesh
//! host downgrades PERMISSIVE workloads to plaintext and breaks STRICT ones. Every TLS block is
//! checked: `trafficPolicy.tls`, `trafficPolicy.portLevelSettings[].tls`, and the same two under
//! `subsets[].trafficPolicy`.

use super::{Action, Ctx, Rule, Violation};
use crate::config::Policy;
use crate::context::{ClusterView, Lookup, Need};
use crate::model::{decode_spec, DestinationRule};
use crate::resource::{Kind, Review};

const KINDS: &[Kind] = &[Kind::DestinationRule];

/// The view of the rule being written.
/// The reviewed DestinationRule; a spec the typed decode refuses reads as empty
/// (`istio-invalid-spec` reports it).
fn destination_rule<'a>(review: &Review<'a>) -> DestinationRule<'a> {
    decode_spec(review.spec()).unwrap_or_default()
}

/// Top-level domains that rule out reading a two-label host as `<service>.<namespace>`.
pub(crate) const PUBLIC_TLDS: &[&str] = &[
    "com", "net", "org", "io", "dev", "app", "cloud", "co", "ai", "info", "biz", "gov", "edu",
    "us", "uk", "de", "eu", "fr", "jp", "cn", "in",
];

/// Whether a DestinationRule host names services inside the mesh: short names, `<svc>.<ns>`,
/// `*.svc`, `*.svc.<clusterDomain>`, wildcards covering those, and configured suffixes.
pub(crate) fn host_in_mesh(host: &str, policy: &Policy, cluster: &dyn ClusterView) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h.is_empty() {
        return false;
    }
    if h == "*" || !h.contains('.') {
        return true;
    }
    let cd = policy.cluster_domain.trim_matches('.').to_ascii_lowercase();
    let svc_cd = format!("svc.{cd}");
    let label_suffix = |name: &str, suffix: &str| {
        let suffix = suffix.trim_start_matches('.');
        !suffix.is_empty()
            && name.ends_with(suffix)
            && (name.len() == suffix.len()
                || name.as_bytes()[name.len() - suffix.len() - 1] == b'.')
    };
    if label_suffix(&h, "svc") || label_suffix(&h, &svc_cd) {
        return true;
    }
    if policy
        .mesh_host_suffixes
        .iter()
        .any(|s| label_suffix(&h, &s.to_ascii_lowercase()))
    {
        return true;
    }
    if let Some(rest) = h.strip_prefix("*.") {
        // A wildcard that covers in-mesh names, e.g. `*.cluster.local` or `*.local`.
        return label_suffix(&svc_cd, rest);
    }
    let labels: Vec<&str> = h.split('.').collect();
    if let [_, ns] = labels.as_slice() {
        return match cluster.namespace_labels(ns) {
            Lookup::Found(_) => true,
            Lookup::Missing => false,
            Lookup::Unknown => !PUBLIC_TLDS.contains(ns),
        };
    }
    false
}

fn in_mesh_host<'d>(dr: &'d DestinationRule<'_>, ctx: &Ctx<'_>) -> Option<&'d str> {
    dr.host()
        .filter(|h| host_in_mesh(h, ctx.policy, ctx.cluster))
}

pub(crate) static TLS_DISABLED: Rule = Rule {
    id: "dr-tls-disabled",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "tls.mode DISABLE (trafficPolicy, portLevelSettings, subsets) toward an in-mesh host sends plaintext",
    example_fix: "trafficPolicy.tls.mode: ISTIO_MUTUAL (or drop tls to let auto-mTLS decide)",
    needs: &[Need::HostNamespaceLabels],
    check: |review, ctx, out| {
        let dr = destination_rule(review);
        let Some(h) = in_mesh_host(&dr, ctx) else { return };
        for site in dr.tls_sites() {
            if site.mode() == "DISABLE" {
                out.push(Violation::new(
                    format!("{}.mode", site.at),
                    format!("DISABLE sends plaintext to in-mesh host {h:?}: an explicit tls setting overrides auto-mTLS, so PERMISSIVE workloads are downgraded to plaintext and STRICT ones refuse the traffic"),
                    "set mode: ISTIO_MUTUAL, or remove the tls block so auto-mTLS uses Istio mutual TLS",
                ));
            }
        }
    },
};

pub(crate) static TLS_NOT_ISTIO_MUTUAL: Rule = Rule {
    id: "dr-tls-not-istio-mutual",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "SIMPLE or MUTUAL toward an in-mesh host replaces Istio's workload certificates",
    example_fix: "trafficPolicy.tls.mode: ISTIO_MUTUAL",
    needs: &[Need::HostNamespaceLabels],
    check: |review, ctx, out| {
        let dr = destination_rule(review);
        let Some(h) = in_mesh_host(&dr, ctx) else {
            return;
        };
        for site in dr.tls_sites() {
            let m = site.mode();
            if matches!(m, "SIMPLE" | "MUTUAL") {
                out.push(Violation::new(
                    format!("{}.mode", site.at),
                    format!("{m} to in-mesh host {h:?} bypasses the mesh identity, so principal-based policies cannot match"),
                    "set mode: ISTIO_MUTUAL",
                ));
            }
        }
    },
};

pub(crate) static TLS_NO_VERIFICATION: Rule = Rule {
    id: "dr-tls-no-verification",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "SIMPLE or MUTUAL without caCertificates (or credentialName with a workloadSelector, the only place sidecars read it): the server certificate is not verified (IST0128/IST0129)",
    example_fix: "tls: {mode: SIMPLE, caCertificates: /etc/certs/ca.pem, sni: api.example.com}",
    needs: &[],
    check: |review, _ctx, out| {
        // Sidecars read credentialName only when the rule has a workloadSelector (Istio's
        // ClientTLSSettings reference; istio/istio
        // pkg/config/analysis/analyzers/destinationrule/ca-certificates.go); gateways read it
        // always, but one rule without a selector applies to both.
        let dr = destination_rule(review);
        let selector = dr.has_workload_selector();
        for site in dr.tls_sites() {
            let m = site.mode();
            if !matches!(m, "SIMPLE" | "MUTUAL")
                || site.tls.has_ca_certificates()
                || site.insecure_skip_verify()
            {
                continue;
            }
            if site.tls.has_credential_name() {
                if selector {
                    continue;
                }
                out.push(Violation::new(
                    site.at.to_string(),
                    format!("{m} with credentialName but without caCertificates, in a DestinationRule without workloadSelector: sidecars ignore credentialName there, so their connections do not check the server certificate against a pinned CA (IST0128/IST0129)"),
                    "add spec.workloadSelector for the workloads that use the Secret, or set caCertificates (plus sni)",
                ));
                continue;
            }
            out.push(Violation::new(
                site.at.to_string(),
                format!("{m} without caCertificates or credentialName: the server certificate is not checked against a pinned CA (IST0128/IST0129)"),
                "set caCertificates or credentialName (a Secret with ca.crt, read by sidecars with a workloadSelector), plus sni",
            ));
        }
    },
};

pub(crate) static INSECURE_SKIP_VERIFY: Rule = Rule {
    id: "dr-insecure-skip-verify",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "insecureSkipVerify: true turns server certificate verification off",
    example_fix: "remove insecureSkipVerify and set caCertificates",
    needs: &[],
    check: |review, _ctx, out| {
        for site in destination_rule(review).tls_sites() {
            if site.insecure_skip_verify() {
                out.push(Violation::new(
                    format!("{}.insecureSkipVerify", site.at),
                    "insecureSkipVerify: true accepts any server certificate, so anyone on the path can impersonate the server",
                    "remove insecureSkipVerify and set caCertificates or credentialName to the server's CA",
                ));
            }
        }
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;
    use crate::rules::testing::{obj, run, run_with};
    use kube::core::admission::Operation;
    use kube::core::DynamicObject;
    use serde_json::{json, Value};

    const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

    fn dr(version: &str, spec: Value) -> DynamicObject {
        obj(json!({
            "apiVersion": format!("networking.istio.io/{version}"),
            "kind": "DestinationRule",
            "metadata": {"name": "d", "namespace": "prod"},
            "spec": spec
        }))
    }

    fn each_with(rule: &Rule, spec: Value, policy: &Policy) -> Vec<Violation> {
        let mut last: Option<Vec<Violation>> = None;
        for v in VERSIONS {
            for op in [Operation::Create, Operation::Update] {
                let found = run_with(rule, op, v, "prod", &dr(v, spec.clone()), policy);
                if let Some(prev) = &last {
                    assert_eq!(prev, &found);
                }
                last = Some(found);
            }
        }
        last.unwrap_or_default()
    }

    fn each(rule: &Rule, spec: Value) -> Vec<Violation> {
        each_with(rule, spec, &Policy::default())
    }

    #[test]
    fn in_mesh_hosts() {
        let p = Policy {
            mesh_host_suffixes: vec!["mesh.internal".into()],
            ..Policy::default()
        };
        let none = crate::context::NoCluster;
        for h in [
            "backend",
            "*",
            "backend.production",
            "backend.production.svc",
            "backend.production.svc.cluster.local",
            "*.production.svc.cluster.local",
            "*.svc.cluster.local",
            "*.cluster.local",
            "*.local",
            "a.mesh.internal",
            "Backend.Production.SVC.cluster.local.",
        ] {
            assert!(host_in_mesh(h, &p, &none), "{h}");
        }
        for h in [
            "api.example.com",
            "example.com",
            "*.example.com",
            "svc.example.com",
            "",
        ] {
            assert!(!host_in_mesh(h, &p, &none), "{h}");
        }
        // A two-label name is <svc>.<ns> only when the namespace exists (when we can tell).
        let cluster = Inventory::complete(Vec::new()).with_namespace("io", &[]);
        assert!(host_in_mesh("foo.io", &p, &cluster));
        assert!(!host_in_mesh("backend.nope", &p, &cluster));
    }

    #[test]
    fn tls_disabled_everywhere() {
        let found = each(
            &TLS_DISABLED,
            json!({"host": "backend", "trafficPolicy": {"tls": {"mode": "DISABLE"},
                "portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "DISABLE"}}]},
                "subsets": [{"name": "v1", "trafficPolicy": {"tls": {"mode": "DISABLE"},
                    "portLevelSettings": [{"port": {"number": 81}, "tls": {"mode": "ISTIO_MUTUAL"}}, {"port": {"number": 82}, "tls": {"mode": "DISABLE"}}]}}]}),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.trafficPolicy.tls.mode",
                "spec.trafficPolicy.portLevelSettings[0].tls.mode",
                "spec.subsets[0].trafficPolicy.tls.mode",
                "spec.subsets[0].trafficPolicy.portLevelSettings[1].tls.mode"
            ]
        );
        assert!(found[0]
            .message
            .starts_with("DISABLE sends plaintext to in-mesh host \"backend\""));
        assert!(found[0].fix.starts_with("set mode: ISTIO_MUTUAL"));
        // External hosts and ISTIO_MUTUAL are fine.
        assert!(each(
            &TLS_DISABLED,
            json!({"host": "api.example.com", "trafficPolicy": {"tls": {"mode": "DISABLE"}}})
        )
        .is_empty());
        assert!(each(&TLS_DISABLED, json!({"host": "*.production.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})).is_empty());
        // Configured suffixes count as in-mesh.
        let p = Policy {
            mesh_host_suffixes: vec![".corp.internal".into()],
            ..Policy::default()
        };
        assert_eq!(
            each_with(
                &TLS_DISABLED,
                json!({"host": "db.corp.internal", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}),
                &p
            )
            .len(),
            1
        );
        let o = dr(
            "v1",
            json!({"host": "backend", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}),
        );
        assert!(run(&TLS_DISABLED, Operation::Delete, "v1", "prod", &o).is_empty());
    }

    #[test]
    fn tls_not_istio_mutual() {
        let found = each(
            &TLS_NOT_ISTIO_MUTUAL,
            json!({"host": "ratings.prod.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "SIMPLE"}},
                   "subsets": [{"name": "v2", "trafficPolicy": {"tls": {"mode": "MUTUAL", "credentialName": "c"}}}]}),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.trafficPolicy.tls.mode",
                "spec.subsets[0].trafficPolicy.tls.mode"
            ]
        );
        assert!(found[0]
            .message
            .starts_with("SIMPLE to in-mesh host \"ratings.prod.svc.cluster.local\""));
        assert!(each(
            &TLS_NOT_ISTIO_MUTUAL,
            json!({"host": "api.example.com", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}})
        )
        .is_empty());
        assert!(each(
            &TLS_NOT_ISTIO_MUTUAL,
            json!({"host": "backend", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})
        )
        .is_empty());
    }

    #[test]
    fn tls_no_verification() {
        let found = each(
            &TLS_NO_VERIFICATION,
            json!({"host": "api.example.com", "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": "api.example.com"},
                   "portLevelSettings": [{"port": {"number": 443}, "tls": {"mode": "SIMPLE", "caCertificates": "/ca.pem"}}]}}),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.trafficPolicy.tls");
        assert!(found[0]
            .message
            .starts_with("SIMPLE without caCertificates or credentialName"));
        assert!(found[0].fix.contains("caCertificates"));
        for tls in [
            json!({"mode": "ISTIO_MUTUAL"}),
            json!({"mode": "SIMPLE", "insecureSkipVerify": true}),
        ] {
            assert!(each(
                &TLS_NO_VERIFICATION,
                json!({"host": "api.example.com", "trafficPolicy": {"tls": tls}})
            )
            .is_empty());
        }
        // credentialName counts only with a workloadSelector (sidecars ignore it otherwise).
        let credential = json!({"mode": "MUTUAL", "credentialName": "client"});
        let found = each(
            &TLS_NO_VERIFICATION,
            json!({"host": "api.example.com", "trafficPolicy": {"tls": credential.clone()}}),
        );
        assert_eq!(found.len(), 1);
        assert!(found[0]
            .message
            .starts_with("MUTUAL with credentialName but without caCertificates, in a DestinationRule without workloadSelector"));
        assert!(each(
            &TLS_NO_VERIFICATION,
            json!({"host": "api.example.com", "workloadSelector": {"matchLabels": {"app": "web"}},
                   "trafficPolicy": {"tls": credential}})
        )
        .is_empty());
    }

    #[test]
    fn insecure_skip_verify() {
        let found = each(
            &INSECURE_SKIP_VERIFY,
            json!({"host": "api.example.com", "subsets": [{"name": "a", "trafficPolicy": {"tls": {"mode": "SIMPLE", "insecureSkipVerify": true}}}]}),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.subsets[0].trafficPolicy.tls.insecureSkipVerify"
        );
        assert!(found[0].message.contains("accepts any server certificate"));
        assert!(each(
            &INSECURE_SKIP_VERIFY,
            json!({"host": "api.example.com", "trafficPolicy": {"tls": {"mode": "SIMPLE", "insecureSkipVerify": false, "caCertificates": "/ca"}}})
        )
        .is_empty());
    }
}
