//! Tests of `decision.rs` (a child module, so they see its private items through `super::*`),
//! and the object builders other modules' tests share (`crate::authz::decision::tests`).

use super::*;
use crate::authz::request::Http;
use serde_json::{json, Value};

/// An object of `kind` in `ns`; `meta` is merged into its metadata.
pub(crate) fn obj(
    kind: Kind,
    ns: &str,
    name: &str,
    spec: Value,
    meta: Value,
) -> (Kind, DynamicObject) {
    let mut metadata = json!({"name": name, "namespace": ns});
    if let (Some(m), Some(extra)) = (metadata.as_object_mut(), meta.as_object()) {
        m.extend(extra.clone());
    }
    let o: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "security.istio.io/v1", "kind": kind.as_str(),
        "metadata": metadata, "spec": spec
    }))
    .expect("object");
    (kind, o)
}

pub(crate) fn ap(ns: &str, name: &str, spec: Value) -> (Kind, DynamicObject) {
    obj(Kind::AuthorizationPolicy, ns, name, spec, json!({}))
}

pub(crate) fn set(objects: &[(Kind, DynamicObject)]) -> PolicySet {
    PolicySet::new(Mesh::default(), objects.iter().map(|(k, o)| (*k, o)))
}

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), app.to_owned())])
}

fn id(ns: &str, sa: &str) -> Option<Identity> {
    Some(Identity::new("cluster.local", ns, sa))
}

fn get(path: &str) -> Http {
    Http::new("GET", path)
}

const WEB: &str = "cluster.local/ns/prod/sa/web";

#[test]
fn precedence_custom_deny_allow() {
    let allow_web = ap(
        "prod",
        "allow-web",
        json!({"rules": [{"from": [{"source": {"principals": [WEB]}}]}]}),
    );
    let deny_admin = ap(
        "prod",
        "deny-admin",
        json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]}),
    );
    let custom = ap(
        "prod",
        "ext",
        json!({"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{"to": [{"operation": {"paths": ["/ext/*"]}}]}]}),
    );
    let audit = ap(
        "prod",
        "audit-all",
        json!({"action": "AUDIT", "rules": [{}]}),
    );
    let all = [
        allow_web.clone(),
        deny_admin.clone(),
        custom.clone(),
        audit.clone(),
    ];
    let s = set(&all);
    let deny_set = set(&all).assume_custom_deny(true);
    let t = s.target("prod", &labels("api"));
    let td = deny_set.target("prod", &labels("api"));
    let web = |p: &str| Request::http(id("prod", "web"), 80, get(p));
    let other = |p: &str| Request::http(id("prod", "other"), 80, get(p));
    let r = |policy: &str, rule: usize| (policy.to_owned(), rule);
    let named = |t: &Target<'_>, o: Outcome| match o {
        Outcome::Allowed(x) | Outcome::Denied(x) | Outcome::CustomDenied(x) => {
            Some(r(&t.set.policy(x).name, x.rule))
        }
        _ => None,
    };
    // (target, request, outcome kind, deciding policy)
    type Case<'a> = (&'a Target<'a>, Request, &'a str, Option<(String, usize)>);
    let cases: Vec<Case<'_>> = vec![
        (&t, web("/api"), "allowed", Some(r("allow-web", 0))),
        (&t, other("/api"), "default-deny", None),
        (&t, web("/admin/x"), "denied", Some(r("deny-admin", 0))),
        // CUSTOM matched, the authorizer assumed to allow: DENY and ALLOW still decide.
        (&t, web("/ext/x"), "allowed", Some(r("allow-web", 0))),
        (&t, other("/ext/x"), "default-deny", None),
        (&td, web("/ext/x"), "custom-denied", Some(r("ext", 0))),
        (&td, web("/api"), "allowed", Some(r("allow-web", 0))),
    ];
    for (t, req, kind, by) in cases {
        let o = t.decide(&req);
        let got = match o {
            Outcome::Allowed(_) => "allowed",
            Outcome::Denied(_) => "denied",
            Outcome::CustomDenied(_) => "custom-denied",
            Outcome::DefaultDeny => "default-deny",
            Outcome::NoAllowPolicy => "no-allow-policy",
            _ => "other",
        };
        assert_eq!((got, named(t, o)), (kind, by), "{}", req.describe());
        assert_eq!(t.explain(&req).outcome, o, "explain agrees with decide");
    }
    // AUDIT never decides, and is reported.
    let ex = t.explain(&other("/api"));
    assert_eq!(ex.audit.len(), 1);
    assert_eq!(ex.verdict, Verdict::Deny);
    let ex = t.explain(&web("/ext/x"));
    assert_eq!(ex.custom[0].provider.as_deref(), Some("opa"));
    // Without ALLOW policies everything not denied is allowed.
    let s = set(&[deny_admin, custom, audit]);
    let t = s.target("prod", &labels("api"));
    assert_eq!(t.decide(&other("/api")), Outcome::NoAllowPolicy);
    assert!(matches!(t.decide(&other("/admin/")), Outcome::Denied(_)));
}

#[test]
fn allow_nothing_and_allow_all() {
    let s = set(&[ap("prod", "deny-all", json!({}))]);
    let t = s.target("prod", &labels("api"));
    assert_eq!(
        t.decide(&Request::http(id("prod", "web"), 80, get("/"))),
        Outcome::DefaultDeny
    );
    let ex = t.explain(&Request::http(id("prod", "web"), 80, get("/")));
    assert!(
        ex.reason
            .contains("prod/deny-all (no rules: allows nothing)"),
        "{}",
        ex.reason
    );
    assert!(
        ex.near_misses.is_empty(),
        "a rule-less policy has no rule to come close to"
    );
    let s = set(&[
        ap("prod", "deny-all", json!({})),
        ap("prod", "all", json!({"rules": [{}]})),
    ]);
    let t = s.target("prod", &labels("api"));
    assert!(matches!(
        t.decide(&Request::tcp(None, 80)),
        Outcome::Allowed(_)
    ));
}

#[test]
fn dry_run_is_shadow_only() {
    let dry = |v: &str| json!({"annotations": {"istio.io/dry-run": v}});
    let deny = obj(
        Kind::AuthorizationPolicy,
        "prod",
        "dry-deny",
        json!({"action": "DENY", "rules": [{"from": [{"source": {"principals": [WEB]}}]}]}),
        dry("true"),
    );
    let allow = obj(
        Kind::AuthorizationPolicy,
        "prod",
        "dry-allow",
        json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/admin"]}}]}]}),
        dry("true"),
    );
    let s = set(&[deny, allow]);
    let t = s.target("prod", &labels("api"));
    let web = Request::http(id("prod", "web"), 80, get("/"));
    let admin = Request::http(id("prod", "admin"), 80, get("/"));
    // Enforced: nothing applies, so both are allowed.
    assert_eq!(t.decide(&web), Outcome::NoAllowPolicy);
    assert_eq!(t.decide(&admin), Outcome::NoAllowPolicy);
    let ex = t.explain(&web);
    let shadow = ex.shadow.expect("shadow");
    assert_eq!(shadow.verdict, Verdict::Deny);
    assert_eq!(
        shadow.decided_by.map(|d| d.policy),
        Some("prod/dry-deny".to_owned())
    );
    assert_eq!(shadow.matched.len(), 1);
    let shadow = t.explain(&admin).shadow.expect("shadow");
    assert_eq!(shadow.verdict, Verdict::Allow);
    // "false" is not dry-run.
    let s = set(&[obj(
        Kind::AuthorizationPolicy,
        "prod",
        "d",
        json!({"action": "DENY", "rules": [{}]}),
        dry("false"),
    )]);
    assert!(matches!(
        s.target("prod", &labels("api")).decide(&web),
        Outcome::Denied(_)
    ));
}

#[test]
fn tcp_drops_http_fields() {
    let s = set(&[
        ap(
            "prod",
            "allow-http",
            json!({"rules": [{"from": [{"source": {"principals": [WEB]}}], "to": [{"operation": {"methods": ["GET"]}}]}]}),
        ),
        ap(
            "prod",
            "allow-port",
            json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/db"]}}], "to": [{"operation": {"ports": ["5432"]}}]}]}),
        ),
    ]);
    let t = s.target("prod", &labels("api"));
    // The same caller: allowed over HTTP, denied over TCP (the ALLOW rule has methods).
    assert!(matches!(
        t.decide(&Request::http(id("prod", "web"), 80, get("/"))),
        Outcome::Allowed(_)
    ));
    assert_eq!(
        t.decide(&Request::tcp(id("prod", "web"), 80)),
        Outcome::DefaultDeny
    );
    assert!(matches!(
        t.decide(&Request::tcp(id("prod", "db"), 5432)),
        Outcome::Allowed(_)
    ));
    assert_eq!(
        t.decide(&Request::tcp(id("prod", "db"), 5433)),
        Outcome::DefaultDeny
    );
    let ex = t.explain(&Request::tcp(id("prod", "web"), 80));
    let m = &ex.near_misses;
    assert_eq!(
        m[0].policy, "prod/allow-port",
        "an evaluable rule ranks first: {m:?}"
    );
    assert!(m[1].reason.contains("never matches a TCP request"), "{m:?}");
    // DENY: HTTP-only fields are dropped, so a paths-only DENY denies all TCP; ports stay.
    let s = set(&[ap(
        "prod",
        "deny-paths",
        json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}),
    )]);
    let t = s.target("prod", &labels("api"));
    assert!(matches!(
        t.decide(&Request::tcp(id("prod", "web"), 80)),
        Outcome::Denied(_)
    ));
    assert_eq!(
        t.decide(&Request::http(id("prod", "web"), 80, get("/x"))),
        Outcome::NoAllowPolicy
    );
    let s = set(&[ap(
        "prod",
        "deny-port-path",
        json!({"action": "DENY", "rules": [{"to": [{"operation": {"ports": ["8080"], "paths": ["/admin"]}}]}]}),
    )]);
    let t = s.target("prod", &labels("api"));
    assert_eq!(
        t.decide(&Request::tcp(id("prod", "web"), 80)),
        Outcome::NoAllowPolicy
    );
    assert!(matches!(
        t.decide(&Request::tcp(id("prod", "web"), 8080)),
        Outcome::Denied(_)
    ));
}

fn peer_auth(ns: &str, name: &str, spec: Value) -> (Kind, DynamicObject) {
    obj(Kind::PeerAuthentication, ns, name, spec, json!({}))
}

#[test]
fn mtls_step_and_identity_fields() {
    let deny_plain = ap(
        "prod",
        "deny-plaintext",
        json!({"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]}),
    );
    let deny_web = ap(
        "prod",
        "deny-web",
        json!({"action": "DENY", "rules": [{"from": [{"source": {"principals": [WEB]}}]}]}),
    );
    let permissive = peer_auth(
        "prod",
        "permissive",
        json!({"mtls": {"mode": "PERMISSIVE"}}),
    );
    let strict_80 = peer_auth(
        "prod",
        "api",
        json!({
        "selector": {"matchLabels": {"app": "api"}}, "mtls": {"mode": "STRICT"},
        "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}, "9090": {"mode": "DISABLE"}}}),
    );
    let plain = |port| Request::tcp(None, port);
    let web = |port| Request::tcp(id("prod", "web"), port);

    // PERMISSIVE: a plaintext caller has no identity; notPrincipals catches it, a DENY on
    // principals does not.
    let s = set(&[permissive.clone(), deny_plain.clone()]);
    let t = s.target("prod", &labels("web"));
    assert!(matches!(t.decide(&plain(80)), Outcome::Denied(_)));
    assert_eq!(t.decide(&web(80)), Outcome::NoAllowPolicy);
    let s = set(&[permissive.clone(), deny_web.clone()]);
    let t = s.target("prod", &labels("web"));
    assert_eq!(
        t.decide(&plain(80)),
        Outcome::NoAllowPolicy,
        "plaintext bypasses a DENY on principals"
    );
    assert!(matches!(t.decide(&web(80)), Outcome::Denied(_)));
    let ex = t.explain(&plain(80));
    assert!(
        ex.notes.iter().any(|n| n.contains("no peer identity")),
        "{:?}",
        ex.notes
    );

    // No PeerAuthentication at all: PERMISSIVE by default.
    let s = set(std::slice::from_ref(&deny_plain));
    assert!(matches!(
        s.target("prod", &labels("web")).decide(&plain(80)),
        Outcome::Denied(_)
    ));

    // STRICT refuses plaintext; port-level PERMISSIVE lets it in; DISABLE strips identity.
    let s = set(&[permissive, strict_80, deny_web]);
    let t = s.target("prod", &labels("api"));
    assert_eq!(t.decide(&plain(80)), Outcome::Refused);
    assert_eq!(t.decide(&plain(8080)), Outcome::NoAllowPolicy);
    assert!(matches!(t.decide(&web(80)), Outcome::Denied(_)));
    assert_eq!(
        t.decide(&web(9090)),
        Outcome::NoAllowPolicy,
        "DISABLE: no peer identity to deny"
    );
    let ex = t.explain(&plain(80));
    assert_eq!(
        ex.headline,
        "DENY (connection refused: STRICT mTLS, plaintext client)"
    );
    assert_eq!(ex.mtls.mode, "STRICT");
    assert_eq!(
        ex.mtls.decided_by.as_ref().map(|d| d.level.as_str()),
        Some("workload")
    );
    assert_eq!(
        t.explain(&plain(8080)).mtls.decided_by.map(|d| d.level),
        Some("port".to_owned())
    );
}

#[test]
fn jwt_step() {
    let ra = obj(
        Kind::RequestAuthentication,
        "prod",
        "jwt",
        json!({
        "selector": {"matchLabels": {"app": "api"}},
        "jwtRules": [{"issuer": "https://auth.example.com", "audiences": ["api"]},
                     {"issuer": "https://other.example.com"}]}),
        json!({}),
    );
    let require = ap(
        "prod",
        "require-jwt",
        json!({"selector": {"matchLabels": {"app": "api"}}, "rules": [{"from": [{"source": {"requestPrincipals": ["https://auth.example.com/*"]}}],
        "when": [{"key": "request.auth.claims[scope]", "values": ["write"]}]}]}),
    );
    let s = set(&[ra, require]);
    let t = s.target("prod", &labels("api"));
    let req = |jwt: Option<Jwt>| {
        let r = Request::http(id("prod", "web"), 80, get("/"));
        match jwt {
            Some(j) => r.with_jwt(j),
            None => r,
        }
    };
    let token = |iss: &str, aud: &[&str]| {
        Jwt::new(iss, "alice")
            .with_audiences(&aud.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
            .with_claim(&["scope".to_owned()], json!("read write"))
    };
    assert!(matches!(
        t.decide(&req(Some(token("https://auth.example.com", &["api"])))),
        Outcome::Allowed(_)
    ));
    assert!(matches!(
        t.decide(&req(Some(token("https://auth.example.com", &["x", "api"])))),
        Outcome::Allowed(_)
    ));
    assert_eq!(
        t.decide(&req(Some(token("https://auth.example.com", &["x"])))),
        Outcome::Unauthenticated
    );
    assert_eq!(
        t.decide(&req(Some(token("https://auth.example.com", &[])))),
        Outcome::Unauthenticated
    );
    assert_eq!(
        t.decide(&req(Some(token("https://evil.example.com", &["api"])))),
        Outcome::Unauthenticated
    );
    // An issuer without audiences accepts any; its principal does not match the rule.
    assert_eq!(
        t.decide(&req(Some(token("https://other.example.com", &[])))),
        Outcome::DefaultDeny
    );
    // No token: not a 401, just no request principal.
    assert_eq!(t.decide(&req(None)), Outcome::DefaultDeny);
    let ex = t.explain(&req(Some(token("https://evil.example.com", &["api"]))));
    assert_eq!(ex.headline, "DENY (401: token issuer not accepted)");
    assert!(
        ex.reason.contains("https://auth.example.com (prod/jwt)"),
        "{}",
        ex.reason
    );
    let ex = t.explain(&req(Some(token("https://auth.example.com", &["x"]))));
    assert_eq!(ex.headline, "DENY (401: token audience not accepted)");
    // A workload no RequestAuthentication selects ignores the token.
    let t = s.target("prod", &labels("web"));
    let ex = t.explain(&req(Some(token("https://evil.example.com", &["api"]))));
    assert_eq!(ex.outcome, Outcome::NoAllowPolicy);
    assert!(
        ex.notes.iter().any(|n| n.contains("not validated")),
        "{:?}",
        ex.notes
    );
}

#[test]
fn which_policies_apply() {
    let s = set(&[
        ap(
            "istio-system",
            "mesh",
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/mesh"]}}]}]}),
        ),
        ap(
            "istio-system",
            "mesh-api",
            json!({"action": "DENY", "selector": {"matchLabels": {"app": "api"}}, "rules": [{"to": [{"operation": {"paths": ["/mesh-api"]}}]}]}),
        ),
        ap(
            "other",
            "elsewhere",
            json!({"action": "DENY", "rules": [{}]}),
        ),
        ap(
            "prod",
            "web-only",
            json!({"action": "DENY", "selector": {"matchLabels": {"app": "web"}}, "rules": [{}]}),
        ),
        ap(
            "prod",
            "waypoint",
            json!({"action": "DENY", "targetRefs": [{"kind": "Service", "name": "api"}], "rules": [{}]}),
        ),
        ap("prod", "typo", json!({"action": "DENIED", "rules": [{}]})),
    ]);
    let t = s.target("prod", &labels("api"));
    let r = |p: &str| Request::http(id("prod", "web"), 80, get(p));
    assert!(matches!(t.decide(&r("/mesh")), Outcome::Denied(_)));
    assert!(matches!(t.decide(&r("/mesh-api")), Outcome::Denied(_)));
    assert_eq!(t.decide(&r("/other")), Outcome::NoAllowPolicy);
    let ex = t.explain(&r("/other"));
    assert_eq!(ex.not_applied.len(), 1, "{:?}", ex.not_applied);
    assert!(ex.not_applied[0].starts_with("prod/waypoint"));
    assert!(
        ex.notes.iter().any(|n| n.contains("DENIED")),
        "{:?}",
        ex.notes
    );
    assert_eq!(ex.policies.len(), 2);
    let t = s.target("prod", &labels("web"));
    assert!(matches!(t.decide(&r("/other")), Outcome::Denied(_)));
    let t = s.target("istio-system", &labels("x"));
    assert!(matches!(t.decide(&r("/mesh")), Outcome::Denied(_)));
}

#[test]
fn bad_requests_are_400() {
    let s = set(&[]);
    let t = s.target("prod", &labels("api"));
    for h in [Http::new("GET", "/a%00b"), Http::new("get", "/")] {
        let req = Request::http(id("prod", "web"), 80, h.clone());
        assert_eq!(t.decide(&req), Outcome::BadRequest);
        assert_eq!(t.explain(&req).headline, "DENY (400: bad request)");
        // Under STRICT a plaintext client never gets as far as sending the request.
        let strict = set(&[peer_auth(
            "prod",
            "strict",
            json!({"mtls": {"mode": "STRICT"}}),
        )]);
        let req = Request::http(None, 80, h);
        assert_eq!(
            strict.target("prod", &labels("api")).decide(&req),
            Outcome::Refused
        );
    }
}

#[test]
fn near_misses_rank_and_name_the_first_failing_field() {
    let s = set(&[
        ap("prod", "deny-all", json!({})),
        ap(
            "prod",
            "frontend-to-backend",
            json!({"rules": [{
            "from": [{"source": {"principals": [WEB]}}],
            "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/api/*", "/health"]}}],
            "when": [{"key": "request.headers[x-api-version]", "values": ["v1", "v2"]}]}]}),
        ),
        ap(
            "prod",
            "admin",
            json!({"rules": [{
            "from": [{"source": {"principals": ["cluster.local/ns/prod/sa/admin"]}}],
            "to": [{"operation": {"methods": ["DELETE"], "paths": ["/admin/"]}}]}]}),
        ),
        ap(
            "prod",
            "typo",
            json!({"rules": [{"when": [{"key": "request.header[x]", "values": ["1"]}]}]}),
        ),
    ]);
    let t = s.target("prod", &labels("api"));
    let ex = t.explain(&Request::http(id("prod", "web"), 80, get("/api/data")));
    assert_eq!(ex.outcome, Outcome::DefaultDeny);
    let lines: Vec<String> = ex.near_misses.iter().map(NearMiss::line).collect();
    assert_eq!(
        lines[0],
        "prod/frontend-to-backend rules[0]: when request.headers[x-api-version] is absent, want one of [v1 v2]"
    );
    assert_eq!(
        ex.near_misses[0].field.as_deref(),
        Some("spec.rules[0].when[0]")
    );
    assert!(lines[1].starts_with("prod/admin rules[0]: from[0] source.principal is cluster.local/ns/prod/sa/web, want one of [cluster.local/ns/prod/sa/admin] (and 2 more)"), "{lines:?}");
    assert!(
        lines[2].contains("Istio skips this rule")
            && lines[2].contains("unknown attribute request.header[x]"),
        "{lines:?}"
    );
    use crate::authz::explain::NearMiss;
}
