//! RequestAuthentication (security.istio.io v1, v1beta1): JWT rules that actually authenticate.
//!
//! A RequestAuthentication validates a token when one is present; it never requires one
//! (see [`crate::model::request_authentication`]). What it can get wrong on its own: no issuer, keys fetched over plaintext or from
//! an internal address, no audience restriction, private key material published inline.

use super::{Action, Rule, Violation};
use crate::model::request_authentication::{jwks_scheme, JwtRule};
use crate::model::{decode_spec, RequestAuthentication};
use crate::resource::{Kind, Review};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const KINDS: &[Kind] = &[Kind::RequestAuthentication];

/// Every `jwtRules[i]` that is an object, with its index. A spec the typed decode refuses has
/// none (`istio-invalid-spec` reports it).
fn jwt_rules<'v>(review: &Review<'v>) -> Vec<(usize, JwtRule<'v>)> {
    let ra: RequestAuthentication<'v> = decode_spec(review.spec()).unwrap_or_default();
    ra.jwt_rules
        .and_then(crate::model::Loose::into_ok)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.into_ok()?)))
        .collect()
}

/// The host part of a URL (`scheme://[userinfo@]host[:port]/...`), brackets removed for IPv6.
fn url_host(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(host_port.split_once(':').map_or(host_port, |(h, _)| h))
}

/// Why an address is internal, or `None` for a public one.
fn internal_ip(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let seg0 = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if seg0 & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if seg0 & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else {
                None
            }
        }
    }
}

fn internal_v4(v4: Ipv4Addr) -> Option<&'static str> {
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local (cloud metadata range)")
    } else if v4.is_unspecified() {
        Some("unspecified")
    } else if v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 {
        Some("carrier-grade NAT")
    } else {
        None
    }
}

/// Why a jwksUri host is internal: an IP literal in a private, loopback or link-local range,
/// or `localhost`.
fn internal_host(host: &str) -> Option<&'static str> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") {
        return Some("loopback");
    }
    if let Ok(ip) = h.parse::<IpAddr>() {
        return internal_ip(ip);
    }
    // `[::1]` handled by url_host; bare IPv6 without brackets is not a valid URL host.
    h.parse::<Ipv6Addr>()
        .ok()
        .and_then(|ip| internal_ip(ip.into()))
}

/// JWK members that only private (or symmetric) keys carry (RFC 7518 §6).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "k"];
/// The same names as they appear in JSON, for a parse-free pre-filter.
const QUOTED_PRIVATE_MEMBERS: &[&str] = &[
    "\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\"", "\"k\"",
];

pub(crate) static MISSING_ISSUER: Rule = Rule {
    id: "ra-missing-issuer",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a jwtRules entry without issuer (Istio rejects it: issuer must be set)",
    example_fix: "jwtRules: [{issuer: \"https://issuer.example.com\", jwksUri: \"https://issuer.example.com/jwks.json\"}]",
    needs: &[],
    check: |review, _ctx, out| {
        for (i, rule) in jwt_rules(review) {
            if rule.issuer().is_none_or(str::is_empty) {
                out.push(Violation::new(
                    JwtRule::path(i, "issuer"),
                    "issuer must be set: a JWT rule without an issuer matches no token (Istio rejects it)",
                    "set issuer to the token's iss claim, e.g. \"https://issuer.example.com\"",
                ));
            }
        }
    },
};

pub(crate) static INSECURE_JWKS_URI: Rule = Rule {
    id: "ra-insecure-jwks-uri",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "jwksUri not https: the signing keys can be replaced in transit",
    example_fix: "jwksUri: \"https://issuer.example.com/.well-known/jwks.json\"",
    needs: &[],
    check: |review, _ctx, out| {
        for (i, rule) in jwt_rules(review) {
            let Some(uri) = rule.jwks_uri() else {
                continue;
            };
            let Some(scheme) = jwks_scheme(uri) else {
                continue;
            };
            if scheme.eq_ignore_ascii_case("http") {
                let https = format!("https{}", &uri[scheme.len()..]);
                out.push(Violation::new(
                    JwtRule::path(i, "jwksUri"),
                    format!("jwksUri {uri:?} is fetched over plaintext http: anyone on the path can substitute their own signing keys and mint accepted tokens"),
                    format!("serve the JWKS over TLS and write {https:?}"),
                ));
            }
        }
    },
};

pub(crate) static MISSING_AUDIENCES: Rule = Rule {
    id: "ra-missing-audiences",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "no audiences: tokens the issuer minted for any other service are accepted",
    example_fix: "audiences: [\"api.example.com\"]",
    needs: &[],
    check: |review, _ctx, out| {
        for (i, rule) in jwt_rules(review) {
            if !rule.audiences().any(|a| !a.is_empty()) {
                out.push(Violation::new(
                    JwtRule::path(i, "audiences"),
                    "no audiences: tokens of this issuer minted for another service are accepted too",
                    "list the accepted audiences, e.g. audiences: [\"api.example.com\"]",
                ));
            }
        }
    },
};

pub(crate) static JWKS_PRIVATE_KEY: Rule = Rule {
    id: "ra-jwks-private-key",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "inline jwks containing private key material (JWK members d, p, q, dp, dq, qi, k)",
    example_fix: "publish only the public members (kty, kid, n, e / crv, x, y)",
    needs: &[],
    check: |review, _ctx, out| {
        for (i, rule) in jwt_rules(review) {
            let Some(text) = rule.jwks() else {
                continue;
            };
            // Cheap pre-filter: no quoted private member name, nothing to parse.
            if !QUOTED_PRIVATE_MEMBERS.iter().any(|m| text.contains(m)) {
                continue;
            }
            let Ok(doc) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            let keys: Vec<&Value> = match doc.get("keys").and_then(Value::as_array) {
                Some(keys) => keys.iter().collect(),
                None => vec![&doc],
            };
            for (k, key) in keys.iter().enumerate() {
                let found: Vec<&str> = PRIVATE_MEMBERS
                    .iter()
                    .copied()
                    .filter(|m| key.get(*m).is_some())
                    .collect();
                if found.is_empty() {
                    continue;
                }
                let kid = key
                    .get("kid")
                    .and_then(Value::as_str)
                    .map(|s| format!(" (kid {s:?})"))
                    .unwrap_or_default();
                out.push(Violation::new(
                    JwtRule::path(i, "jwks"),
                    format!(
                        "key {k}{kid} carries private key material ({}): anyone who can read this object can sign tokens the mesh accepts",
                        found.join(", ")
                    ),
                    "rotate the key now, and publish only its public members (kty, kid, n, e for RSA; kty, crv, x, y for EC); symmetric (oct) keys cannot be published at all",
                ));
            }
        }
    },
};

pub(crate) static JWKS_URI_INTERNAL: Rule = Rule {
    id: "ra-jwks-uri-internal",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "jwksUri pointing to a private, loopback or link-local address (or localhost), as istiod's BLOCKED_CIDRS_IN_JWKS_URIS / IST0175 warn",
    example_fix: "jwksUri: \"https://issuer.example.com/.well-known/jwks.json\"",
    needs: &[],
    check: |review, _ctx, out| {
        for (i, rule) in jwt_rules(review) {
            let Some(uri) = rule.jwks_uri() else { continue };
            let Some(host) = url_host(uri) else { continue };
            if let Some(why) = internal_host(host) {
                out.push(Violation::new(
                    JwtRule::path(i, "jwksUri"),
                    format!("jwksUri host {host:?} is a {why} address: istiod fetches it from inside the cluster (request forgery, IST0175)"),
                    "use the issuer's public https JWKS URL, or inline the public keys in jwks",
                ));
            }
        }
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{obj, run};
    use kube::core::admission::Operation;
    use kube::core::DynamicObject;
    use serde_json::json;

    const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

    fn ra(version: &str, rules: Value) -> DynamicObject {
        obj(json!({
            "apiVersion": format!("security.istio.io/{version}"),
            "kind": "RequestAuthentication",
            "metadata": {"name": "r", "namespace": "prod"},
            "spec": {"selector": {"matchLabels": {"app": "a"}}, "jwtRules": rules}
        }))
    }

    fn each(rule: &Rule, rules: Value) -> Vec<Violation> {
        let mut last: Option<Vec<Violation>> = None;
        for v in VERSIONS {
            for op in [Operation::Create, Operation::Update] {
                let found = run(rule, op, v, "prod", &ra(v, rules.clone()));
                if let Some(prev) = &last {
                    assert_eq!(prev, &found);
                }
                last = Some(found);
            }
        }
        last.unwrap_or_default()
    }

    fn good() -> Value {
        json!([{"issuer": "https://auth.example.com", "jwksUri": "https://auth.example.com/.well-known/jwks.json", "audiences": ["api.example.com"]}])
    }

    #[test]
    fn good_rule_passes_everything() {
        for rule in [
            &MISSING_ISSUER,
            &INSECURE_JWKS_URI,
            &MISSING_AUDIENCES,
            &JWKS_PRIVATE_KEY,
            &JWKS_URI_INTERNAL,
        ] {
            assert!(each(rule, good()).is_empty(), "{}", rule.id);
        }
    }

    #[test]
    fn missing_issuer() {
        let found = each(
            &MISSING_ISSUER,
            json!([{"jwksUri": "https://a/j"}, {"issuer": ""}, null]),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.jwtRules[0].issuer", "spec.jwtRules[1].issuer"]
        );
        assert!(found[0].message.starts_with("issuer must be set"));
        assert!(found[0].fix.contains("https://issuer.example.com"));
    }

    #[test]
    fn insecure_jwks_uri() {
        let found = each(
            &INSECURE_JWKS_URI,
            json!([{"issuer": "i", "jwksUri": "http://issuer.example.com/jwks.json"}, {"issuer": "i", "jwksUri": "HTTP://x/j"}]),
        );
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].path, "spec.jwtRules[0].jwksUri");
        assert!(found[0].message.starts_with(
            "jwksUri \"http://issuer.example.com/jwks.json\" is fetched over plaintext http"
        ));
        assert_eq!(
            found[0].fix,
            "serve the JWKS over TLS and write \"https://issuer.example.com/jwks.json\""
        );
        assert_eq!(
            found[1].fix,
            "serve the JWKS over TLS and write \"https://x/j\""
        );
        // A URI with no scheme is Istio's own error (istio-invalid-spec), not this rule.
        assert!(each(
            &INSECURE_JWKS_URI,
            json!([{"issuer": "i", "jwksUri": "x/y"}])
        )
        .is_empty());
    }

    #[test]
    fn missing_audiences() {
        let found = each(
            &MISSING_AUDIENCES,
            json!([{"issuer": "i"}, {"issuer": "j", "audiences": []}]),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.jwtRules[0].audiences", "spec.jwtRules[1].audiences"]
        );
        assert!(found[0].message.contains("minted for another service"));
    }

    #[test]
    fn jwks_private_key() {
        let jwks = json!({"keys": [
            {"kty": "RSA", "kid": "pub", "n": "abc", "e": "AQAB"},
            {"kty": "RSA", "kid": "oops", "n": "abc", "e": "AQAB", "d": "x", "p": "y", "q": "z"},
            {"kty": "oct", "k": "secret"}
        ]})
        .to_string();
        let found = each(&JWKS_PRIVATE_KEY, json!([{"issuer": "i", "jwks": jwks}]));
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].path, "spec.jwtRules[0].jwks");
        assert!(found[0]
            .message
            .starts_with("key 1 (kid \"oops\") carries private key material (d, p, q)"));
        assert!(found[1]
            .message
            .starts_with("key 2 carries private key material (k)"));
        assert!(found[0].fix.starts_with("rotate the key now"));
        let public =
            json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]}).to_string();
        assert!(each(&JWKS_PRIVATE_KEY, json!([{"issuer": "i", "jwks": public}])).is_empty());
    }

    #[test]
    fn jwks_uri_internal() {
        let found = each(
            &JWKS_URI_INTERNAL,
            json!([
                {"issuer": "i", "jwksUri": "https://10.0.0.5/jwks"},
                {"issuer": "i", "jwksUri": "https://localhost:8443/jwks"},
                {"issuer": "i", "jwksUri": "http://169.254.169.254/latest"},
                {"issuer": "i", "jwksUri": "https://[::1]:443/jwks"},
                {"issuer": "i", "jwksUri": "https://user@192.168.1.1/jwks"},
                {"issuer": "i", "jwksUri": "https://8.8.8.8/jwks"},
                {"issuer": "i", "jwksUri": "https://keycloak.auth.svc.cluster.local/jwks"},
            ]),
        );
        let got: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            got,
            [
                "spec.jwtRules[0].jwksUri",
                "spec.jwtRules[1].jwksUri",
                "spec.jwtRules[2].jwksUri",
                "spec.jwtRules[3].jwksUri",
                "spec.jwtRules[4].jwksUri"
            ]
        );
        assert!(found[0]
            .message
            .starts_with("jwksUri host \"10.0.0.5\" is a private address"));
        assert!(found[2].message.contains("link-local"));
        assert!(found[3].message.contains("\"::1\" is a loopback address"));
    }
}
