//! `ap-unknown-principal`: AuthorizationPolicy principals and namespaces naming ServiceAccounts
//! or namespaces that do not exist. Such a rule never matches, or matches whoever creates that
//! account later. Only the mesh's own trust domains are judged (its trust domain, aliases, and
//! `cluster.local`, which Istio reads as the local trust domain; principals of other trust domains
//! are not in this cluster), and only where the inventory is conclusive.
//!
//! Namespace values follow Istio's `analyzeNamespaceNotFound` (istio/istio
//! `pkg/config/analysis/analyzers/authz/authorizationpolicies.go`): `*` matches any namespace,
//! `prefix*` and `*suffix` match when some namespace that exists starts or ends with the rest
//! (judged only on a complete inventory: a partial one cannot show every namespace). The
//! namespaces Kubernetes creates itself (`default`, `kube-system`, `kube-public`,
//! `kube-node-lease`) always exist. Unlike the analyzer, exact names are compared as written:
//! Envoy matches them case-sensitively, so `Prod` never matches namespace `prod`.

use super::{CrossCheck, CrossContext};
use crate::context::{ClusterView, Lookup};
use crate::finding::{Action, Subject, Violation};
use crate::model::AuthorizationPolicy;
use crate::resource::Kind;
use crate::rules::authorization_policy::is_local_trust_domain;

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "ap-unknown-principal",
    default_action: Action::Warn,
    summary: "AuthorizationPolicy principals or namespaces (exact, prefix* or *suffix) naming ServiceAccounts or namespaces that do not exist",
    example_fix: "create the ServiceAccount (or namespace) the principal names, or correct the principal",
    run,
};

/// Namespaces every cluster has (Kubernetes creates them).
const BUILT_IN_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Whether namespace `ns` exists: built in, listed, or (partial inventory) unknown.
fn namespace_exists(cx: &CrossContext<'_>, ns: &str) -> Lookup<()> {
    if BUILT_IN_NAMESPACES.contains(&ns) {
        return Lookup::Found(());
    }
    cx.inventory.namespace_exists(ns)
}

/// Whether a namespace match value (`*`, `prefix*`, `*suffix`, exact) matches a namespace that
/// exists; `Unknown` when the inventory cannot tell.
fn namespace_match_exists(cx: &CrossContext<'_>, value: &str) -> Lookup<()> {
    if value == "*" {
        return Lookup::Found(());
    }
    let (prefix, suffix) = if let Some(suffix) = value.strip_prefix('*') {
        ("", suffix)
    } else if let Some(prefix) = value.strip_suffix('*') {
        (prefix, "")
    } else {
        return namespace_exists(cx, value);
    };
    let matches = |ns: &str| ns.starts_with(prefix) && ns.ends_with(suffix);
    let known = BUILT_IN_NAMESPACES
        .iter()
        .copied()
        .chain(cx.inventory.namespace_names());
    if known.into_iter().any(matches) {
        Lookup::Found(())
    } else if cx.inventory.is_complete() {
        Lookup::Missing
    } else {
        Lookup::Unknown
    }
}

/// A ServiceAccount istiod creates for a Gateway (or waypoint) of the inventory.
fn gateway_identity(cx: &CrossContext<'_>, ns: &str, sa: &str) -> bool {
    cx.topology().gateway_with_identity(ns, sa).is_some()
}

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let mesh = cx.engine.mesh();
    let inv = cx.inventory;
    for o in inv.of_kind(Kind::AuthorizationPolicy) {
        let spec = o.spec();
        let ap = AuthorizationPolicy::of(&spec);
        for src in ap.sources() {
            for field in ["principals", "notPrincipals"] {
                let list = src.field(field);
                for (vi, p) in list.strings() {
                    if p.starts_with('*') {
                        continue; // *suffix: any trust domain and namespace
                    }
                    let (body, prefix) = match p.strip_suffix('*') {
                        Some(body) => (body, true),
                        None => (p, false),
                    };
                    if body.contains('*') {
                        continue; // malformed: ap-principal-format reports it
                    }
                    let parts: Vec<&str> = body.split('/').collect();
                    let (td, ns, sa) = match parts.as_slice() {
                        [td, "ns", ns, "sa", sa] if !prefix => (*td, *ns, Some(*sa)),
                        // `<td>/ns/<ns>/...*`: the namespace is complete, the account a prefix.
                        [td, "ns", ns, _, ..] if prefix => (*td, *ns, None),
                        _ => continue, // a shape ap-principal-format judges
                    };
                    if !is_local_trust_domain(mesh, td) {
                        continue; // foreign trust domain: not in this cluster
                    }
                    let msg = match (namespace_exists(cx, ns), sa) {
                        (Lookup::Missing, _) => Some((
                            format!("principal \"{p}\" names namespace \"{ns}\", which does not exist, so the rule never matches"),
                            format!("correct the principal or create namespace \"{ns}\""),
                        )),
                        (_, Some(sa)) if gateway_identity(cx, ns, sa) => None,
                        (_, Some(sa)) => match inv.service_account(ns, sa) {
                            Lookup::Missing if !(sa == "default" && BUILT_IN_NAMESPACES.contains(&ns)) => Some((
                                format!("principal \"{p}\" names ServiceAccount \"{ns}/{sa}\", which does not exist, so the rule never matches (or matches whoever creates it later)"),
                                format!("create ServiceAccount \"{sa}\" in namespace \"{ns}\" or correct the principal"),
                            )),
                            _ => None,
                        },
                        _ => None,
                    };
                    if let Some((msg, fix)) = msg {
                        out.push((o.subject(), Violation::new(list.item_path(vi), msg, fix)));
                    }
                }
            }
            for field in ["namespaces", "notNamespaces"] {
                let list = src.field(field);
                for (vi, ns) in list.strings() {
                    if namespace_match_exists(cx, ns) != Lookup::Missing {
                        continue;
                    }
                    let (message, fix) = if ns.contains('*') {
                        (
                            format!("namespace pattern \"{ns}\" matches no namespace that exists, so the rule never matches"),
                            format!("correct the pattern \"{ns}\", or create the namespaces it is meant for"),
                        )
                    } else {
                        (
                            format!("namespace \"{ns}\" does not exist, so the rule never matches"),
                            format!("correct the namespace name or create namespace \"{ns}\""),
                        )
                    };
                    out.push((o.subject(), Violation::new(list.item_path(vi), message, fix)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cross::testing::*;
    use serde_json::json;

    fn ap(principals: serde_json::Value, namespaces: serde_json::Value) -> serde_json::Value {
        istio(
            "AuthorizationPolicy",
            "prod",
            "allow",
            json!({
            "rules": [{"from": [{"source": {"principals": principals}}, {"source": {"namespaces": namespaces}}]}]}),
        )
    }

    #[test]
    fn fires_on_accounts_and_namespaces_that_do_not_exist() {
        let found = findings(
            &CHECK,
            true,
            vec![
                namespace("prod", json!({})),
                ap(
                    json!([
                        "cluster.local/ns/prod/sa/ghost",
                        "cluster.local/ns/gone/sa/web"
                    ]),
                    json!(["nowhere"]),
                ),
            ],
        );
        let paths: Vec<&str> = found.iter().map(|f| f.1.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].from[0].source.principals[0]",
                "spec.rules[0].from[0].source.principals[1]",
                "spec.rules[0].from[1].source.namespaces[0]"
            ]
        );
        assert!(found[0].2.contains("ServiceAccount \"prod/ghost\""));
        assert!(found[1].2.contains("namespace \"gone\""));
    }

    #[test]
    fn quiet_when_they_exist_are_foreign_wildcards_or_unknown() {
        let objects = vec![
            namespace("prod", json!({})),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": "prod"}}),
            ap(
                json!([
                    "cluster.local/ns/prod/sa/web",
                    "cluster.local/ns/prod/sa/default",
                    "other.domain/ns/x/sa/y",
                    "cluster.local/ns/prod/sa/*",
                    "*/ns/x/sa/y"
                ]),
                json!(["prod", "pr*"]),
            ),
        ];
        assert!(findings(&CHECK, true, objects).is_empty());
        // A partial inventory says nothing about namespaces it does not show.
        let partial = vec![ap(
            json!(["cluster.local/ns/elsewhere/sa/web"]),
            json!(["elsewhere"]),
        )];
        assert!(findings(&CHECK, false, partial).is_empty());
    }

    #[test]
    fn waypoint_and_gateway_identities_are_known() {
        let objects = |gateways: bool| {
            let mut v = vec![
                namespace("prod", json!({"istio.io/dataplane-mode": "ambient"})),
                namespace("ingress", json!({})),
                ap(
                    json!([
                        "cluster.local/ns/prod/sa/waypoint",
                        "cluster.local/ns/ingress/sa/public-istio",
                        "cluster.local/ns/ingress/sa/edge"
                    ]),
                    json!([]),
                ),
            ];
            if gateways {
                v.push(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                    "metadata": {"name": "waypoint", "namespace": "prod"},
                    "spec": {"gatewayClassName": "istio-waypoint",
                        "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}));
                v.push(json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "Gateway",
                    "metadata": {"name": "public", "namespace": "ingress"},
                    "spec": {"gatewayClassName": "istio"}}));
                v.push(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                    "metadata": {"name": "other", "namespace": "ingress",
                        "annotations": {"gateway.istio.io/service-account": "edge"}},
                    "spec": {"gatewayClassName": "istio"}}));
            }
            v
        };
        // The Gateways make their identities exist: quiet.
        assert!(findings(&CHECK, true, objects(true)).is_empty());
        // Without them the same principals name accounts nobody creates.
        assert_eq!(findings(&CHECK, true, objects(false)).len(), 3);
    }

    #[test]
    fn namespace_patterns_match_the_namespaces_that_exist() {
        let objects = |namespaces: serde_json::Value| {
            vec![
                namespace("prod", json!({})),
                namespace("team-a", json!({})),
                ap(json!([]), namespaces),
            ]
        };
        // prefix*, *suffix and * match existing namespaces: quiet.
        assert!(findings(&CHECK, true, objects(json!(["team-*", "*-a", "*", "pr*"]))).is_empty());
        // Patterns that match nothing, on a complete inventory, are reported as patterns.
        let found = findings(&CHECK, true, objects(json!(["staging-*", "*-z", "team-a"])));
        let paths: Vec<&str> = found.iter().map(|f| f.1.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].from[1].source.namespaces[0]",
                "spec.rules[0].from[1].source.namespaces[1]"
            ]
        );
        assert!(found[0]
            .2
            .starts_with("namespace pattern \"staging-*\" matches no namespace that exists"));
        // A partial inventory cannot rule a pattern out.
        assert!(findings(&CHECK, false, objects(json!(["staging-*"]))).is_empty());
        // notNamespaces are judged the same way.
        let not = vec![
            namespace("prod", json!({})),
            istio(
                "AuthorizationPolicy",
                "prod",
                "deny",
                json!({"action": "DENY", "rules": [{"from": [{"source": {"notNamespaces": ["gone-*"]}}]}]}),
            ),
        ];
        assert_eq!(findings(&CHECK, true, not).len(), 1);
    }

    #[test]
    fn kubernetes_namespaces_always_exist() {
        let found = findings(
            &CHECK,
            true,
            vec![ap(
                json!([
                    "cluster.local/ns/kube-system/sa/default",
                    "cluster.local/ns/default/sa/default",
                    "cluster.local/ns/kube-public/sa/*"
                ]),
                json!(["default", "kube-system", "kube-public", "kube-node-lease", "kube-*"]),
            )],
        );
        assert!(found.is_empty(), "{found:?}");
        // Other accounts of those namespaces are judged like any (the inventory lists them).
        let found = findings(
            &CHECK,
            true,
            vec![ap(json!(["cluster.local/ns/kube-system/sa/ghost"]), json!([]))],
        );
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn prefix_principals_need_their_namespace_and_local_domains_follow_the_mesh() {
        let objects = || {
            vec![
                namespace("prod", json!({})),
                ap(
                    json!([
                        "cluster.local/ns/gone/sa/*",
                        "cluster.local/ns/prod/sa/*",
                        "corp.example/ns/nowhere/sa/web"
                    ]),
                    json!([]),
                ),
            ]
        };
        let found = findings(&CHECK, true, objects());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].2.contains("namespace \"gone\""));
        // With the mesh's trust domain corp.example, its principals are judged too.
        let mesh = crate::mesh::testing::mesh(&[crate::mesh::testing::mesh_cm(
            "istio",
            "trustDomain: corp.example\n",
        )]);
        let found = findings_in(
            &CHECK,
            true,
            objects(),
            crate::config::Policy::default(),
            mesh,
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[1].2.contains("namespace \"nowhere\""));
    }
}
