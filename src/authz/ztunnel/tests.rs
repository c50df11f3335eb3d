//! ztunnel's conversion and decision, case by case as istiod's `convertAuthorizationPolicy`,
//! `convertPeerAuthentication` and ztunnel's `rbac.rs` define them.

use super::*;
use crate::authz::decision::tests::{ap, obj, set};
use crate::authz::decision::{Outcome, RuleRef};
use crate::authz::request::Http;
use crate::resource::Kind;
use serde_json::json;

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), app.to_owned())])
}

fn id(ns: &str, sa: &str) -> Option<Identity> {
    Some(Identity::new("cluster.local", ns, sa))
}

fn tcp(peer: Option<Identity>, port: u16) -> Request {
    Request::tcp(peer, port)
}

fn fates(spec: serde_json::Value) -> Vec<RuleFate> {
    convert_spec(&spec, "prod", false, "istio-system")
        .expect("converted")
        .fates
        .into_iter()
        .map(|(_, f)| f)
        .collect()
}

#[test]
fn http_attributes_in_allow_rules_drop_the_rule() {
    let p = convert_spec(
        &json!({"rules": [
            {"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/web"]}}], "to": [{"operation": {"methods": ["GET"]}}]},
            {"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/db"]}}]}
        ]}),
        "prod",
        false,
        "istio-system",
    )
    .expect("converted");
    assert!(
        matches!(&p.fates[0].1, RuleFate::Dropped(f) if f[0].name == "methods" && f[0].path == "spec.rules[0].to[0].operation.methods")
    );
    assert_eq!(p.fates[1].1, RuleFate::Kept);
    assert_eq!(p.groups.len(), 1, "the L4 rule stays");
    // Every rule L7: no groups at all, so the ALLOW policy allows nothing.
    let only_l7 = convert_spec(
        &json!({"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}),
        "prod",
        false,
        "istio-system",
    )
    .expect("converted");
    assert!(only_l7.groups.is_empty());
    let s = set(&[ap(
        "prod",
        "jwt-only",
        json!({"selector": {"matchLabels": {"app": "api"}}, "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}),
    )]);
    let t = s.ztunnel_target("prod", &labels("api"));
    assert_eq!(t.decide(&tcp(id("prod", "web"), 80)), Outcome::DefaultDeny);
    let ex = t.explain(&tcp(id("prod", "web"), 80));
    assert!(
        ex.near_misses[0].reason.starts_with("dropped at ztunnel"),
        "{:?}",
        ex.near_misses
    );
    assert!(ex.policies[0].policy == "prod/jwt-only");
}

#[test]
fn http_attributes_in_deny_rules_make_them_no_ops_or_wider() {
    let f = fates(json!({"action": "DENY", "rules": [
        // methods only: the `to` entry is empty, the rule never matches.
        {"to": [{"operation": {"methods": ["DELETE"]}}]},
        // the "require a JWT" pattern: no-op.
        {"from": [{"source": {"notRequestPrincipals": ["*"]}}]},
        // a header condition: no-op whatever the from says.
        {"from": [{"source": {"namespaces": ["dev"]}}], "when": [{"key": "request.headers[x-admin]", "values": ["1"]}]},
        // principals + requestPrincipals: the principal alone denies.
        {"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/web"], "requestPrincipals": ["*"]}}]},
        // methods + ports: the whole port is denied.
        {"to": [{"operation": {"methods": ["GET"], "ports": ["8080"]}}]},
        // L4 only: as written.
        {"from": [{"source": {"namespaces": ["dev"]}}]},
        // trustDomains only: nothing ztunnel reads, never matches.
        {"from": [{"source": {"trustDomains": ["other.example"]}}]}
    ]}));
    assert!(matches!(&f[0], RuleFate::NoOp(_)));
    assert!(matches!(&f[1], RuleFate::NoOp(l) if l[0].name == "notRequestPrincipals"));
    assert!(matches!(&f[2], RuleFate::NoOp(l) if l[0].name == "request.headers[x-admin]"));
    assert!(matches!(&f[3], RuleFate::Wider(_)));
    assert!(matches!(&f[4], RuleFate::Wider(_)));
    assert_eq!(f[5], RuleFate::Kept);
    assert!(matches!(&f[6], RuleFate::Inert(w) if w.contains("trustDomains")));

    let s = set(&[ap(
        "prod",
        "deny",
        json!({"action": "DENY", "rules": [
            {"to": [{"operation": {"methods": ["DELETE"]}}]},
            {"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/web"], "requestPrincipals": ["*"]}}]},
            {"to": [{"operation": {"paths": ["/admin"], "ports": ["8080"]}}]}
        ]}),
    )]);
    let t = s.ztunnel_target("prod", &labels("api"));
    // The DELETE-only rule denies nothing, even for an HTTP DELETE.
    let delete = Request::http(id("prod", "db"), 80, Http::new("DELETE", "/"));
    assert_eq!(t.decide(&delete), Outcome::NoAllowPolicy);
    // web is denied everything (wider); so is port 8080 for everyone.
    assert_eq!(
        t.decide(&tcp(id("prod", "web"), 80)),
        Outcome::Denied(RuleRef { policy: 0, rule: 1 })
    );
    assert_eq!(
        t.decide(&tcp(id("prod", "db"), 8080)),
        Outcome::Denied(RuleRef { policy: 0, rule: 2 })
    );
    let ex = t.explain(&delete);
    assert!(
        ex.notes
            .iter()
            .any(|n| n.contains("rules[0] loses its HTTP attributes")
                && n.contains("denies nothing")),
        "{:?}",
        ex.notes
    );
    assert!(ex
        .notes
        .iter()
        .any(|n| n.contains("ztunnel sees connections")));
}

#[test]
fn custom_audit_dry_run_and_target_refs_are_not_sent() {
    assert_eq!(
        convert_spec(
            &json!({"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]}),
            "prod",
            false,
            "istio-system"
        )
        .err(),
        Some(NotSent::Action("CUSTOM".to_owned()))
    );
    assert_eq!(
        convert_spec(
            &json!({"action": "AUDIT", "rules": [{}]}),
            "prod",
            false,
            "istio-system"
        )
        .err(),
        Some(NotSent::Action("AUDIT".to_owned()))
    );
    assert_eq!(
        convert_spec(
            &json!({"action": "DENY", "rules": [{}]}),
            "prod",
            true,
            "istio-system"
        )
        .err(),
        Some(NotSent::DryRun)
    );
    assert_eq!(
        convert_spec(
            &json!({"targetRefs": [{"kind": "Service", "name": "api"}], "rules": [{}]}),
            "prod",
            false,
            "istio-system"
        )
        .err(),
        Some(NotSent::TargetRefs)
    );
    // A CUSTOM policy on an ambient workload: nobody calls the external authorizer.
    let s = set(&[ap(
        "prod",
        "ext",
        json!({"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{}]}),
    )]);
    let t = s.ztunnel_target("prod", &labels("api"));
    assert_eq!(
        t.decide(&tcp(id("prod", "web"), 80)),
        Outcome::NoAllowPolicy
    );
    let ex = t.explain(&tcp(id("prod", "web"), 80));
    assert!(
        ex.not_applied[0].contains("ztunnel does not support it"),
        "{:?}",
        ex.not_applied
    );
}

#[test]
fn scope_order_and_literal_principals() {
    let s = set(&[
        ap(
            "istio-system",
            "mesh-deny",
            json!({"action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["banned"]}}]}]}),
        ),
        ap(
            "prod",
            "ns-allow",
            json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/web"]}}]}]}),
        ),
        ap(
            "prod",
            "api-allow",
            json!({"selector": {"matchLabels": {"app": "api"}},
            "rules": [{"from": [{"source": {"serviceAccounts": ["db"]}}], "to": [{"operation": {"ports": ["5432"]}}]}]}),
        ),
        ap(
            "other",
            "elsewhere",
            json!({"action": "DENY", "rules": [{}]}),
        ),
    ]);
    let t = s.ztunnel_target("prod", &labels("api"));
    assert!(matches!(
        t.decide(&tcp(id("banned", "x"), 80)),
        Outcome::Denied(_)
    ));
    assert!(matches!(
        t.decide(&tcp(id("prod", "web"), 80)),
        Outcome::Allowed(_)
    ));
    assert!(matches!(
        t.decide(&tcp(id("prod", "db"), 5432)),
        Outcome::Allowed(_)
    ));
    assert_eq!(t.decide(&tcp(id("prod", "db"), 80)), Outcome::DefaultDeny);
    // Another trust domain: ztunnel compares principals literally (no cluster.local pointer).
    let other = Some(Identity::new("corp.example", "prod", "web"));
    assert_eq!(t.decide(&tcp(other, 80)), Outcome::DefaultDeny);
    // Plaintext: no identity, no principal match.
    assert_eq!(t.decide(&tcp(None, 80)), Outcome::DefaultDeny);
    assert!(literal_principal_mismatch(
        "cluster.local/ns/a/sa/b",
        "corp.example"
    ));
    assert!(!literal_principal_mismatch(
        "corp.example/ns/a/sa/b",
        "corp.example"
    ));
    // `spec: {}` in an ambient namespace: allow-nothing for its captured pods.
    let s = set(&[ap("prod", "deny-all", json!({}))]);
    let t = s.ztunnel_target("prod", &labels("api"));
    assert_eq!(t.decide(&tcp(id("prod", "web"), 80)), Outcome::DefaultDeny);
}

fn pa(
    ns: &str,
    name: &str,
    created: &str,
    spec: serde_json::Value,
) -> (Kind, kube::core::DynamicObject) {
    obj(
        Kind::PeerAuthentication,
        ns,
        name,
        spec,
        json!({"creationTimestamp": created}),
    )
}

/// Whether a plaintext connection to `port` of an `app: api` pod in prod is refused.
fn strict_ports(objects: &[(Kind, kube::core::DynamicObject)], ports: &[u16]) -> Vec<bool> {
    let s = set(objects);
    let t = s.ztunnel_target("prod", &labels("api"));
    ports
        .iter()
        .map(|p| t.decide(&tcp(None, *p)) == Outcome::Refused)
        .collect()
}

#[test]
fn peer_authentication_compiled_as_istiod_does() {
    let t0 = "2024-01-01T00:00:00Z";
    let t1 = "2024-02-01T00:00:00Z";
    let mesh_strict = pa(
        "istio-system",
        "mesh",
        t0,
        json!({"mtls": {"mode": "STRICT"}}),
    );
    // No PeerAuthentication: permissive.
    assert_eq!(strict_ports(&[], &[80]), [false]);
    // Mesh STRICT: the static strict policy refuses plaintext; mesh clients get in.
    assert_eq!(
        strict_ports(std::slice::from_ref(&mesh_strict), &[80]),
        [true]
    );
    let s = set(std::slice::from_ref(&mesh_strict));
    let t = s.ztunnel_target("prod", &labels("api"));
    assert_eq!(
        t.decide(&tcp(id("prod", "web"), 80)),
        Outcome::NoAllowPolicy
    );
    let ex = t.explain(&tcp(None, 80));
    assert!(ex.reason.contains(STATIC_STRICT), "{}", ex.reason);
    // A namespace DISABLE under it behaves like PERMISSIVE: plaintext gets in.
    let ns_disable = pa("prod", "ns", t1, json!({"mtls": {"mode": "DISABLE"}}));
    assert_eq!(
        strict_ports(&[mesh_strict.clone(), ns_disable.clone()], &[80]),
        [false]
    );
    let s = set(&[mesh_strict.clone(), ns_disable]);
    let ex = s
        .ztunnel_target("prod", &labels("api"))
        .explain(&tcp(id("prod", "web"), 80));
    assert!(
        ex.notes
            .iter()
            .any(|n| n.contains("DISABLE behaves like PERMISSIVE")),
        "{:?}",
        ex.notes
    );
    // Workload STRICT with a PERMISSIVE port: only that port admits plaintext.
    let wl = pa(
        "prod",
        "api",
        t1,
        json!({"selector": {"matchLabels": {"app": "api"}},
        "mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}}}),
    );
    assert_eq!(strict_ports(&[wl], &[80, 8080]), [true, false]);
    // Workload PERMISSIVE with a STRICT port (no parent STRICT): only that port is strict.
    let wl = pa(
        "prod",
        "api",
        t1,
        json!({"selector": {"matchLabels": {"app": "api"}},
        "mtls": {"mode": "PERMISSIVE"}, "portLevelMtls": {"9090": {"mode": "STRICT"}}}),
    );
    assert_eq!(
        strict_ports(std::slice::from_ref(&wl), &[80, 9090]),
        [false, true]
    );
    // istiod's quirk: the same under a STRICT mesh policy skips the STRICT port (its parent
    // check reads the mesh policy), and the PERMISSIVE workload mode wins: nothing is strict.
    assert_eq!(
        strict_ports(&[mesh_strict.clone(), wl], &[80, 9090]),
        [false, false]
    );
    // istiod's quirk: UNSET workload mode, STRICT namespace, port DISABLE: only PERMISSIVE ports
    // are looked for, so the port stays strict.
    let ns_strict = pa("prod", "ns", t0, json!({"mtls": {"mode": "STRICT"}}));
    let wl_disable = pa(
        "prod",
        "api",
        t1,
        json!({"selector": {"matchLabels": {"app": "api"}},
        "portLevelMtls": {"8080": {"mode": "DISABLE"}}}),
    );
    assert_eq!(
        strict_ports(&[ns_strict.clone(), wl_disable], &[8080]),
        [true]
    );
    let wl_permissive = pa(
        "prod",
        "api",
        t1,
        json!({"selector": {"matchLabels": {"app": "api"}},
        "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}}}),
    );
    assert_eq!(
        strict_ports(&[ns_strict, wl_permissive], &[80, 8080]),
        [true, false]
    );
    // Root-namespace workload policies are ignored.
    let root_wl = pa(
        "istio-system",
        "api",
        t1,
        json!({"selector": {"matchLabels": {"app": "api"}},
        "mtls": {"mode": "STRICT"}}),
    );
    assert_eq!(strict_ports(&[root_wl], &[80]), [false]);
}
