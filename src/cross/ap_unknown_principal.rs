//! `ap-unknown-principal`: AuthorizationPolicy principals and namespaces naming ServiceAccounts
//! or namespaces that do not exist. Such a rule never matches, or matches whoever creates that
//! account later. Only the mesh's own trust domains are judged (principals of other trust
//! domains are not in this cluster), and only where the inventory is conclusive.

use super::{CrossCheck, CrossContext};
use crate::context::{ClusterView, Lookup};
use crate::finding::{Action, Subject, Violation};
use crate::istio::AuthorizationPolicy;
use crate::resource::{spec_of, Kind};

pub static CHECK: CrossCheck = CrossCheck {
    id: "ap-unknown-principal",
    default_action: Action::Warn,
    summary: "AuthorizationPolicy principals or namespaces naming ServiceAccounts or namespaces that do not exist",
    example_fix: "create the ServiceAccount (or namespace) the principal names, or correct the principal",
    run,
};

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let domains: Vec<&str> = cx.engine.policy().trust_domains().collect();
    let inv = cx.inventory;
    for o in inv.of_kind(Kind::AuthorizationPolicy) {
        let ap = AuthorizationPolicy::of(spec_of(&o.object));
        for src in ap.sources() {
            for field in ["principals", "notPrincipals"] {
                let list = src.field(field);
                for (vi, p) in list.strings() {
                    if p.contains('*') {
                        continue;
                    }
                    let parts: Vec<&str> = p.split('/').collect();
                    let [td, "ns", ns, "sa", sa] = parts.as_slice() else {
                        continue; // malformed: ap-principal-format reports it
                    };
                    if !domains.contains(td) {
                        continue; // foreign trust domain: not in this cluster
                    }
                    let msg = match inv.namespace_exists(ns) {
                        Lookup::Missing => Some(format!("principal \"{p}\" names namespace \"{ns}\", which does not exist, so the rule never matches")),
                        _ => match inv.service_account(ns, sa) {
                            Lookup::Missing => Some(format!("principal \"{p}\" names ServiceAccount \"{ns}/{sa}\", which does not exist, so the rule never matches (or matches whoever creates it later)")),
                            _ => None,
                        },
                    };
                    if let Some(msg) = msg {
                        out.push((
                            o.subject(),
                            Violation::new(
                                list.item_path(vi),
                                msg,
                                format!("create ServiceAccount \"{sa}\" in namespace \"{ns}\" or correct the principal"),
                            ),
                        ));
                    }
                }
            }
            for field in ["namespaces", "notNamespaces"] {
                let list = src.field(field);
                for (vi, ns) in list.strings() {
                    if ns.contains('*') || inv.namespace_exists(ns) != Lookup::Missing {
                        continue;
                    }
                    out.push((
                        o.subject(),
                        Violation::new(
                            list.item_path(vi),
                            format!("namespace \"{ns}\" does not exist, so the rule never matches"),
                            format!("correct the namespace name or create namespace \"{ns}\""),
                        ),
                    ));
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
                    "cluster.local/ns/x/sa/*"
                ]),
                json!(["prod", "team-*"]),
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
}
