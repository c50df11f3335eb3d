//! Tests of the AuthorizationPolicy rules: each fires, and each stays quiet.

use super::*;
use crate::config::Policy;
use crate::rules::testing::{obj, run, run_with};
use kube::core::admission::Operation;
use kube::core::DynamicObject;
use serde_json::{json, Value};

const VERSIONS: [&str; 2] = ["v1", "v1beta1"];
const WRITES: [Operation; 2] = [Operation::Create, Operation::Update];

fn ap(version: &str, spec: Value) -> DynamicObject {
    obj(json!({
        "apiVersion": format!("security.istio.io/{version}"),
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "p", "namespace": "prod"},
        "spec": spec
    }))
}

/// Run `rule` for every version and write operation; return the violations (all equal).
fn each(rule: &Rule, spec: Value) -> Vec<Violation> {
    let mut last = None;
    for v in VERSIONS {
        for op in WRITES {
            let found = run(rule, op, v, "prod", &ap(v, spec.clone()));
            if let Some(prev) = &last {
                assert_eq!(prev, &found, "{} differs for {v}", rule.id);
            }
            last = Some(found);
        }
    }
    last.unwrap_or_default()
}

const SEL: &str = "app";

fn sel() -> Value {
    json!({"matchLabels": {SEL: "backend"}})
}

#[test]
fn allow_all() {
    let found = each(&ALLOW_ALL, json!({"rules": [{}]}));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "spec.rules[0]");
    assert!(found[0]
        .message
        .contains("lets any caller, with or without a mesh identity, reach every workload in namespace \"prod\""));
    assert!(found[0].fix.contains("spec: {}"));
    let found = each(
        &ALLOW_ALL,
        json!({"action": "ALLOW", "selector": sel(), "rules": [{"from": []}, {"to": [{"operation": {"methods": ["GET"]}}]}]}),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "spec.rules[0]");
    assert!(found[0].message.contains("the selected workloads"));
    // allow-nothing, a DENY with an empty rule, a real rule: fine.
    assert!(each(&ALLOW_ALL, json!({})).is_empty());
    assert!(each(&ALLOW_ALL, json!({"action": "DENY", "rules": [{}]})).is_empty());
    assert!(each(
        &ALLOW_ALL,
        json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}]}]})
    )
    .is_empty());
    // DELETE of an allow-all is not a write.
    let o = ap("v1", json!({"rules": [{}]}));
    assert!(run(&ALLOW_ALL, Operation::Delete, "v1", "prod", &o).is_empty());
}

#[test]
fn wildcard_source() {
    let found = each(
        &WILDCARD_SOURCE,
        json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b", "*"], "namespaces": ["*"]}}]}]}),
    );
    let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.rules[0].from[0].source.principals[1]",
            "spec.rules[0].from[0].source.namespaces[0]"
        ]
    );
    assert!(found[0]
        .message
        .contains("every workload with a mesh identity"));
    assert!(found[0]
        .fix
        .contains("cluster.local/ns/<namespace>/sa/<serviceaccount>"));
    assert!(found[1].message.contains("every namespace"));
    // Prefix wildcards and DENY policies are not this rule.
    assert!(each(
        &WILDCARD_SOURCE,
        json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/*"]}}]}]})
    )
    .is_empty());
    assert!(each(
        &WILDCARD_SOURCE,
        json!({"action": "DENY", "rules": [{"from": [{"source": {"principals": ["*"]}}]}]})
    )
    .is_empty());
}

#[test]
fn allow_without_source() {
    let found = each(
        &ALLOW_WITHOUT_SOURCE,
        json!({"selector": sel(), "rules": [{"to": [{"operation": {"paths": ["/api/*"]}}]}]}),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "spec.rules[0]");
    assert_eq!(
        found[0].message,
        "no from and no source condition: any caller, including plaintext ones without a mesh identity, matches this ALLOW rule"
    );
    assert!(found[0].fix.contains("principals"));
    // A source condition (even an IP) or a from is a source; empty rules belong to ap-allow-all.
    for spec in [
        json!({"rules": [{"to": [{"operation": {"paths": ["/"]}}], "when": [{"key": "source.ip", "values": ["10.0.0.0/8"]}]}]}),
        json!({"rules": [{"from": [{"source": {"namespaces": ["a"]}}], "to": [{"operation": {"paths": ["/"]}}]}]}),
        json!({"rules": [{}]}),
        json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/"]}}]}]}),
    ] {
        assert!(
            each(&ALLOW_WITHOUT_SOURCE, spec.clone()).is_empty(),
            "{spec}"
        );
    }
}

#[test]
fn principal_format_takes_any_unicode_without_panicking() {
    // The ninth byte inside a two-byte character: a prefix check by byte slice panicked here.
    let found = each(
        &PRINCIPAL_FORMAT,
        json!({"rules": [{"from": [{"source": {"principals": ["spiffe:/é/ns/a/sa/b", "spiffe://é/ns/a/sa/b"]}}]}]}),
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].message.contains("is not of the form"));
    assert!(found[1].message.contains("must not start with spiffe://"));
    assert!(found[1].path.ends_with("principals[1]"));
}

#[test]
fn principal_with_a_multibyte_character_at_byte_nine_does_not_panic() {
    // Found by the admission fuzz target: "spiffe:/" then a two-byte character straddling
    // byte 9 used to panic in a byte slice.
    for p in [
        "spiffe:/\u{065c}x",
        "spiffe://\u{065c}",
        "\u{065c}\u{065c}\u{065c}\u{065c}\u{065c}",
    ] {
        let found = each(
            &PRINCIPAL_FORMAT,
            json!({"rules": [{"from": [{"source": {"principals": [p]}}]}]}),
        );
        assert!(
            found.iter().all(|v| !v.message.is_empty()),
            "{p}: {found:?}"
        );
    }
    let found = each(
        &PRINCIPAL_FORMAT,
        json!({"rules": [{"from": [{"source": {"principals": ["SPIFFE://cluster.local/ns/a/sa/b"]}}]}]}),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].fix, "write \"cluster.local/ns/a/sa/b\"");
}

#[test]
fn principal_format() {
    let found = each(
        &PRINCIPAL_FORMAT,
        json!({"rules": [{"from": [{"source": {"principals": [
            "cluster.local/ns/prod/sa/ok",
            "spiffe://cluster.local/ns/prod/sa/web",
            "prod/web",
            "cluster.local/ns/*/sa/web",
            "cluster.local/ns/prod",
        ]}}], "when": [{"key": "source.principal", "notValues": ["ns/prod/sa/web"]}]}]}),
    );
    let got: Vec<_> = found
        .iter()
        .map(|v| (v.path.as_str(), v.fix.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("spec.rules[0].from[0].source.principals[1]", "write \"cluster.local/ns/prod/sa/web\""),
            (
                "spec.rules[0].from[0].source.principals[2]",
                "write \"cluster.local/ns/prod/sa/web\", or move \"prod/web\" to serviceAccounts"
            ),
            (
                "spec.rules[0].from[0].source.principals[3]",
                "use a single leading or trailing wildcard, e.g. \"cluster.local/ns/<namespace>/sa/*\""
            ),
            (
                "spec.rules[0].from[0].source.principals[4]",
                "write \"cluster.local/ns/prod/sa/*\" for every account of the namespace, or use namespaces: [\"prod\"]"
            ),
            ("spec.rules[0].when[0].notValues[0]", "write \"cluster.local/ns/prod/sa/web\""),
        ]
    );
    assert_eq!(
        found[0].message,
        "principal \"spiffe://cluster.local/ns/prod/sa/web\" must not start with spiffe:// (Istio compares the identity without the scheme, so it never matches)"
    );
    assert!(found[1]
        .message
        .contains("is not of the form <trust-domain>/ns/<namespace>/sa/<serviceaccount>"));
    // Valid shapes, wildcards and bare match strings (Istio-valid) pass.
    assert!(each(
        &PRINCIPAL_FORMAT,
        json!({"rules": [{"from": [{"source": {"principals": [
            "cluster.local/ns/prod/sa/web", "cluster.local/ns/prod/sa/*", "*/sa/web", "*", "cluster.local/*",
            "td/ns/prod/s*", "*/ns/prod/sa/web", "principal", "*-suffix", "prefix-*"
        ]}}]}]})
    )
    .is_empty());
}

#[test]
fn foreign_trust_domain() {
    let spec = json!({"rules": [{"from": [{"source": {"principals": [
        "cluster.local/ns/a/sa/b", "other.example/ns/a/sa/b", "old.td/ns/a/sa/*", "*/ns/a/sa/b"
    ]}}]}]});
    let found = each(&FOREIGN_TRUST_DOMAIN, spec.clone());
    let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.rules[0].from[0].source.principals[1]",
            "spec.rules[0].from[0].source.principals[2]"
        ]
    );
    assert_eq!(
        found[0].message,
        "trust domain \"other.example\" is neither the mesh's \"cluster.local\" nor an alias: no workload here has this identity"
    );
    assert_eq!(
        found[0].fix,
        "write \"cluster.local/ns/a/sa/b\", or add the domain to the mesh's trustDomainAliases"
    );
    // Aliases count.
    let policy = Policy {
        trust_domain_aliases: Some(vec!["other.example".into(), "old.td".into()]),
        ..Policy::default()
    };
    for v in VERSIONS {
        for op in WRITES {
            assert!(run_with(
                &FOREIGN_TRUST_DOMAIN,
                op,
                v,
                "prod",
                &ap(v, spec.clone()),
                &policy
            )
            .is_empty());
        }
    }
}

#[test]
fn trust_domains_come_from_the_mesh_and_cluster_local_points_to_it() {
    use crate::mesh::MeshContext;
    use crate::rules::testing::run_in;
    let mesh = crate::mesh::testing::mesh(&[crate::mesh::testing::mesh_cm(
        "istio",
        "trustDomain: corp.example\ntrustDomainAliases: [old.corp.example]\n",
    )]);
    let spec = json!({"rules": [{"from": [{"source": {"principals": [
        "corp.example/ns/a/sa/b", "old.corp.example/ns/a/sa/b", "cluster.local/ns/a/sa/b",
        "other.example/ns/a/sa/b"
    ]}}]}]});
    let run = |policy: &Policy, mesh: &MeshContext| {
        run_in(
            &FOREIGN_TRUST_DOMAIN,
            Operation::Create,
            "v1",
            "prod",
            &ap("v1", spec.clone()),
            policy,
            mesh,
            &crate::context::NoCluster,
        )
    };
    // The mesh's trust domain and aliases are local, and so is cluster.local (Istio rewrites
    // it to the local trust domain); only the other domain warns, named after the mesh's.
    let found = run(&Policy::default(), &mesh);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "spec.rules[0].from[0].source.principals[3]");
    assert!(found[0]
        .message
        .contains("neither the mesh's \"corp.example\""));
    assert!(found[0].fix.starts_with("write \"corp.example/ns/a/sa/b\""));
    // Without the mesh context, corp.example is foreign: a false positive on every principal of such a mesh.
    assert_eq!(run(&Policy::default(), &MeshContext::default()).len(), 3);
    // The policy overrides the mesh: its aliases replace the mesh's.
    let policy = Policy {
        trust_domain_aliases: Some(vec!["other.example".into()]),
        ..Policy::default()
    };
    let found = run(&policy, &mesh);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "spec.rules[0].from[0].source.principals[1]");
}

#[test]
fn exact_path_trailing_slash() {
    let found = each(
        &EXACT_PATH_TRAILING_SLASH,
        json!({"rules": [{"to": [{"operation": {"paths": ["/api/", "/", "/api/*", "/x/{*}/"], "notPaths": ["/admin/"]}}]}]}),
    );
    let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.rules[0].to[0].operation.paths[0]",
            "spec.rules[0].to[0].operation.notPaths[0]"
        ]
    );
    assert_eq!(
        found[0].message,
        "\"/api/\" has no wildcard: it matches only the exact path \"/api/\", not \"/api/<anything>\""
    );
    assert_eq!(
        found[0].fix,
        "write \"/api/*\" to match \"/api/\" and everything below it"
    );
    assert!(each(
        &EXACT_PATH_TRAILING_SLASH,
        json!({"rules": [{"to": [{"operation": {"paths": ["/api/*", "/health"]}}]}]})
    )
    .is_empty());
}

#[test]
fn unknown_condition_key() {
    let found = each(
        &UNKNOWN_CONDITION_KEY,
        json!({"rules": [{"when": [
            {"key": "request.headers[x-foo]", "values": ["a"]},
            {"key": "source.unknownKey", "values": ["x"]},
            {"key": "source.namspace", "values": ["x"]},
            {"key": "destination.namespace", "values": ["x"]},
            {"key": "request.headers", "values": ["x"]},
            {"key": "request.auth.claims[a][b]", "values": ["x"]},
            {"key": "experimental.envoy.filters.a.b[c]", "values": ["x"]},
        ]}]}),
    );
    let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.rules[0].when[1].key",
            "spec.rules[0].when[2].key",
            "spec.rules[0].when[3].key",
            "spec.rules[0].when[4].key"
        ]
    );
    assert!(found[0]
        .message
        .starts_with("condition key \"source.unknownKey\" is not supported by Istio"));
    assert!(found[1]
        .fix
        .starts_with("did you mean \"source.namespace\"?"));
    assert!(found[2].message.contains("Istio removed it"));
    assert!(found[3].message.contains("must be in brackets"));
    assert!(each(
        &UNKNOWN_CONDITION_KEY,
        json!({"rules": [{"when": [{"key": "source.ip", "values": ["1.2.3.4"]}, {"key": "connection.sni", "values": ["a"]}]}]})
    )
    .is_empty());
}

#[test]
fn quoted_condition_key() {
    let found = each(
        &QUOTED_CONDITION_KEY,
        json!({"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}], "when": [
            {"key": "request.headers[\"x-api-version\"]", "values": ["v1"]},
            {"key": "request.auth.claims[groups]['admin']", "values": ["x"]},
            {"key": "request.headers[x-ok]", "values": ["v1"]},
        ]}]}),
    );
    let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        ["spec.rules[0].when[0].key", "spec.rules[0].when[1].key"]
    );
    assert_eq!(
        found[0].message,
        "quoted header name: Istio keeps the quotes, so this condition never matches and the ALLOW rule never applies"
    );
    assert_eq!(found[0].fix, "write key: request.headers[x-api-version]");
    assert_eq!(
        found[1].fix,
        "write key: request.auth.claims[groups][admin]"
    );
    let found = each(
        &QUOTED_CONDITION_KEY,
        json!({"action": "DENY", "rules": [{"when": [{"key": "request.headers['x']", "values": ["v1"]}]}]}),
    );
    assert!(found[0].message.ends_with("and the DENY rule never fires"));
    assert!(each(
        &QUOTED_CONDITION_KEY,
        json!({"rules": [{"when": [{"key": "request.auth.claims[iss]", "values": ["a"]}]}]})
    )
    .is_empty());
}

#[test]
fn deny_all_delete() {
    for v in VERSIONS {
        let o = ap(v, json!({}));
        let found = run(&DENY_ALL_DELETE, Operation::Delete, v, "prod", &o);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec");
        assert!(found[0]
            .message
            .starts_with("deleting allow-nothing AuthorizationPolicy prod/p removes the default-deny baseline for every workload in namespace \"prod\""));
        assert!(found[0].fix.starts_with("keep it"));
        // CREATE/UPDATE of it, DELETE of a policy with rules or a selector: fine.
        for op in WRITES {
            assert!(run(&DENY_ALL_DELETE, op, v, "prod", &o).is_empty());
        }
        for spec in [
            json!({"rules": [{"from": [{"source": {"namespaces": ["a"]}}]}]}),
            json!({"selector": sel()}),
            json!({"action": "DENY", "rules": [{}]}),
        ] {
            let o = ap(v, spec);
            assert!(run(&DENY_ALL_DELETE, Operation::Delete, v, "prod", &o).is_empty());
        }
    }
}

/// Run a rule over an UPDATE from `old` to `new` (specs, annotations) in `ns`.
fn update_ap(rule: &Rule, ns: &str, old: (Value, Value), new: (Value, Value)) -> Vec<Violation> {
    use crate::rules::{Ctx, ReviewCache};
    let make = |(spec, annotations): (Value, Value)| {
        obj(
            json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": ns, "annotations": annotations}, "spec": spec}),
        )
    };
    let (old, new) = (make(old), make(new));
    let op = Operation::Update;
    let review = Review {
        kind: Kind::AuthorizationPolicy,
        version: "v1",
        operation: &op,
        namespace: ns,
        name: "p",
        object: Some(&new),
        old_object: Some(&old),
        dry_run: false,
        created_for: None,
    };
    let mesh = crate::mesh::MeshContext::default();
    let ctx = Ctx {
        policy: &crate::config::Policy::default(),
        mesh: &mesh,
        cluster: &crate::context::NoCluster,
        cache: &ReviewCache::default(),
    };
    let mut out = Vec::new();
    (rule.check)(&review, &ctx, &mut out);
    out
}

#[test]
fn deny_all_weakened_by_update_is_the_deletion() {
    let nothing = (json!({}), json!({}));
    for ns in ["prod", "istio-system"] {
        for (new, path, what) in [
            (
                (json!({"selector": sel()}), json!({})),
                "spec.selector",
                "adds the selector",
            ),
            (
                (
                    json!({"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}]}),
                    json!({}),
                ),
                "spec.targetRefs",
                "attaches it to target refs",
            ),
            (
                (
                    json!({"rules": [{"from": [{"source": {"namespaces": ["a"]}}]}]}),
                    json!({}),
                ),
                "spec.rules",
                "adds rules",
            ),
            (
                (json!({"rules": [{}]}), json!({})),
                "spec.rules",
                "adds rules",
            ),
            (
                (
                    json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/x"]}}]}]}),
                    json!({}),
                ),
                "spec.action",
                "sets action: DENY",
            ),
            (
                (json!({"action": "AUDIT"}), json!({})),
                "spec.action",
                "sets action: AUDIT",
            ),
            (
                (json!({}), json!({"istio.io/dry-run": "true"})),
                "metadata.annotations[\"istio.io/dry-run\"]",
                "turns on istio.io/dry-run",
            ),
        ] {
            let found = update_ap(&DENY_ALL_DELETE, ns, nothing.clone(), new.clone());
            assert_eq!(found.len(), 1, "{ns} {new:?}");
            assert_eq!(found[0].path, path);
            assert!(found[0].message.contains(what), "{}", found[0].message);
            assert!(found[0]
                .message
                .contains("stops being the default-deny baseline"));
        }
        // Still allow-nothing (a label, an annotation), or not allow-nothing before: fine.
        for (old, new) in [
            (nothing.clone(), (json!({}), json!({"team": "a"}))),
            (nothing.clone(), (json!({"action": "ALLOW"}), json!({}))),
            (
                (json!({"selector": sel()}), json!({})),
                (json!({"selector": sel(), "rules": [{}]}), json!({})),
            ),
            (
                (json!({}), json!({"istio.io/dry-run": "true"})),
                (json!({"rules": [{}]}), json!({})),
            ),
        ] {
            assert!(
                update_ap(&DENY_ALL_DELETE, ns, old.clone(), new.clone()).is_empty(),
                "{old:?} -> {new:?}"
            );
        }
    }
}

#[test]
fn allow_negative_match() {
    let found = each(
        &ALLOW_NEGATIVE_MATCH,
        json!({"rules": [
            {"from": [{"source": {"notNamespaces": ["untrusted"]}}]},
            {"when": [{"key": "request.auth.claims[sub]", "notValues": ["x"]}]},
        ]}),
    );
    let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.rules[0].from[0].source.notNamespaces",
            "spec.rules[1].when[0].notValues"
        ]
    );
    assert!(found[0]
        .message
        .contains("also matches plaintext callers (no identity)"));
    assert!(found[1].message.contains("requests without a JWT"));
    // A positive match of the same family fails closed: fine (the tutorial's jwt-authz).
    assert!(each(
        &ALLOW_NEGATIVE_MATCH,
        json!({"rules": [
            {"from": [{"source": {"requestPrincipals": ["https://a/*"]}}], "when": [{"key": "request.auth.claims[sub]", "notValues": ["x"]}]},
            {"from": [{"source": {"principals": ["cluster.local/ns/a/sa/*"], "notPrincipals": ["cluster.local/ns/a/sa/b"]}}]},
        ]})
    )
    .is_empty());
    assert!(each(
        &ALLOW_NEGATIVE_MATCH,
        json!({"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]})
    )
    .is_empty());
}

#[test]
fn deny_positive_identity() {
    let found = each(
        &DENY_POSITIVE_IDENTITY,
        json!({"action": "DENY", "rules": [
            {"from": [{"source": {"namespaces": ["untrusted"]}}]},
            {"when": [{"key": "source.principal", "values": ["cluster.local/ns/a/sa/b"]}]},
        ]}),
    );
    let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.rules[0].from[0].source.namespaces",
            "spec.rules[1].when[0].values"
        ]
    );
    assert!(found[0]
        .message
        .contains("never matches them unless mTLS is STRICT"));
    assert!(found[0].fix.contains("notPrincipals: [\"*\"]"));
    // The documented defence-in-depth pattern, and ALLOW policies, are fine.
    assert!(each(
        &DENY_POSITIVE_IDENTITY,
        json!({"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]})
    )
    .is_empty());
    assert!(each(
        &DENY_POSITIVE_IDENTITY,
        json!({"rules": [{"from": [{"source": {"namespaces": ["a"]}}]}]})
    )
    .is_empty());
}

#[test]
fn action_without_rules() {
    let found = each(&ACTION_WITHOUT_RULES, json!({"action": "DENY"}));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "spec");
    assert_eq!(
        found[0].message,
        "a DENY policy without rules never matches any request, so it enforces nothing"
    );
    let found = each(
        &ACTION_WITHOUT_RULES,
        json!({"action": "CUSTOM", "provider": {"name": "ext"}, "rules": []}),
    );
    assert_eq!(found[0].path, "spec.rules");
    assert!(found[0].fix.contains("rules: [{}]"));
    assert!(each(&ACTION_WITHOUT_RULES, json!({})).is_empty());
    assert!(each(
        &ACTION_WITHOUT_RULES,
        json!({"action": "DENY", "rules": [{}]})
    )
    .is_empty());
}

#[test]
fn http_deny_without_ports() {
    let found = each(
        &HTTP_ONLY_DENY_WITHOUT_PORTS,
        json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]}),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "spec.rules[0]");
    assert!(found[0].message.contains("denies all TCP traffic"));
    assert!(each(
        &HTTP_ONLY_DENY_WITHOUT_PORTS,
        json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"], "ports": ["8080"]}}]}]})
    )
    .is_empty());
    assert!(each(
        &HTTP_ONLY_DENY_WITHOUT_PORTS,
        json!({"rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]})
    )
    .is_empty());
}

#[test]
fn ip_hints() {
    let spec = json!({"rules": [{"from": [{"source": {"remoteIpBlocks": ["1.2.3.4"], "ipBlocks": ["10.0.0.0/8"]}}],
                                 "when": [{"key": "remote.ip", "values": ["1.2.3.4"]}, {"key": "source.ip", "values": ["1.2.3.4"]}]}]});
    let found = each(&REMOTE_IP_UNTRUSTED, spec.clone());
    let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.rules[0].from[0].source.remoteIpBlocks",
            "spec.rules[0].when[0].key"
        ]
    );
    assert!(found[0].message.contains("numTrustedProxies"));
    let found = each(&SOURCE_IP_BEHIND_GATEWAY, spec);
    let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.rules[0].from[0].source.ipBlocks",
            "spec.rules[0].when[1].key"
        ]
    );
    assert!(found[0].message.contains("not the original client's"));
    let clean =
        json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}]}]});
    assert!(each(&REMOTE_IP_UNTRUSTED, clean.clone()).is_empty());
    assert!(each(&SOURCE_IP_BEHIND_GATEWAY, clean).is_empty());
}
