//! Istio validation parity: what Istio itself rejects (CRD schema, CEL rules, istiod's
//! validating webhook, `pkg/config/validation`), meshguard rejects too, with Istio's reason in
//! the message. One rule per class of error, across PeerAuthentication, AuthorizationPolicy,
//! RequestAuthentication and DestinationRule. Unknown fields are tolerated (newer Istio
//! versions add fields); unknown enum values are not. Security judgements (PERMISSIVE,
//! allow-all, ...) live in the per-kind files; `pa-port-level-without-selector` and
//! `ra-missing-issuer` already cover those two Istio errors.
//!
//! Each kind's validation sits beside its typed struct in [`crate::model`]; a spec the typed
//! decode refuses is reported here.
//! The four rules share one validation per review, cached in [`ReviewCache`](super::ReviewCache).

use super::{Action, Ctx, Rule, Violation};
use crate::model::validation::Errors;
pub(crate) use crate::model::validation::{Class, IstioErrors};
use crate::model::{decode_spec, Malformed};
use crate::resource::{Kind, Review};

const KINDS: &[Kind] = &[
    Kind::PeerAuthentication,
    Kind::AuthorizationPolicy,
    Kind::RequestAuthentication,
    Kind::DestinationRule,
];

/// Validate the object a review writes, as Istio would.
pub(crate) fn validate(review: &Review<'_>, cache: &super::ReviewCache<'_>) -> IstioErrors {
    let mut found = Vec::new();
    let errors = &mut Errors { out: &mut found };
    let spec = review.spec();
    if spec.is_null() {
        return found;
    }
    match review.kind {
        Kind::PeerAuthentication => match &cache.peer_authentication {
            Some(Ok(pa)) => pa.validate(errors),
            Some(Err(m)) => malformed(m.clone(), errors),
            None => match decode_spec::<crate::model::PeerAuthentication>(spec) {
                Ok(pa) => pa.validate(errors),
                Err(m) => malformed(m, errors),
            },
        },
        Kind::AuthorizationPolicy => match &cache.authorization_policy {
            Some(Ok(ap)) => ap.validate(errors),
            Some(Err(m)) => malformed(m.clone(), errors),
            None => match decode_spec::<crate::model::AuthorizationPolicy>(spec) {
                Ok(ap) => ap.validate(errors),
                Err(m) => malformed(m, errors),
            },
        },
        Kind::RequestAuthentication => {
            match decode_spec::<crate::model::RequestAuthentication>(spec) {
                Ok(ra) => ra.validate(review.namespace, errors),
                Err(m) => malformed(m, errors),
            }
        }
        Kind::DestinationRule => match decode_spec::<crate::model::DestinationRule>(spec) {
            Ok(dr) => dr.validate(errors),
            Err(m) => malformed(m, errors),
        },
        _ => {}
    }
    found
}

/// A spec the typed decode refuses: Istio's schema rejects it too.
fn malformed(m: Malformed, errors: &mut Errors<'_>) {
    errors.report(
        Class::Spec,
        || m.path,
        || m.message,
        || "write the spec as an object of the kind's fields".to_owned(),
    );
}

fn check(class: Class, review: &Review<'_>, ctx: &Ctx<'_>, out: &mut Vec<Violation>) {
    let errors = ctx
        .cache
        .istio_errors
        .get_or_init(|| validate(review, ctx.cache));
    out.extend(
        errors
            .iter()
            .filter(|(c, _)| *c == class)
            .map(|(_, v)| v.clone()),
    )
}

pub(crate) static INVALID_ENUM: Rule = Rule {
    id: "istio-invalid-enum",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a value outside an Istio enum (mtls mode, action, tls mode, presence): typos such as STRCT or ALLOWED",
    example_fix: "spec.mtls.mode: STRICT",
    needs: &[],
    check: |review, ctx, out| check(Class::Enum, review, ctx, out),
};

pub(crate) static INVALID_PORT: Rule = Rule {
    id: "istio-invalid-port",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a port that is not a number between 1 and 65535 (portLevelMtls keys, operation ports, portLevelSettings)",
    example_fix: "portLevelMtls: {\"8080\": {mode: STRICT}}",
    needs: &[],
    check: |review, ctx, out| check(Class::Port, review, ctx, out),
};

pub(crate) static CONFLICTING_FIELDS: Rule = Rule {
    id: "istio-conflicting-fields",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "fields Istio does not allow together (serviceAccounts with principals/namespaces, selector with targetRef, credentialName with certificate files)",
    example_fix: "keep one of selector, targetRef, targetRefs",
    needs: &[],
    check: |review, ctx, out| check(Class::Conflict, review, ctx, out),
};

pub(crate) static INVALID_SPEC: Rule = Rule {
    id: "istio-invalid-spec",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "anything else Istio's schema or validation rejects: empty or missing required values, wrong types, bad formats",
    example_fix: "jwtRules[0].audiences: [\"api.example.com\"] (no empty entries)",
    needs: &[],
    check: |review, ctx, out| check(Class::Spec, review, ctx, out),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{obj, run};
    use kube::core::admission::Operation;
    use kube::core::DynamicObject;
    use serde_json::{json, Value};

    fn o(group_version: &str, kind: &str, spec: Value) -> DynamicObject {
        obj(json!({
            "apiVersion": group_version,
            "kind": kind,
            "metadata": {"name": "x", "namespace": "prod"},
            "spec": spec
        }))
    }

    /// Run a parity rule against `kind` for all its versions and CREATE/UPDATE.
    fn each(rule: &Rule, kind: Kind, spec: Value) -> Vec<Violation> {
        let (group, versions): (&str, &[&str]) = match kind {
            Kind::DestinationRule => ("networking.istio.io", &["v1", "v1beta1", "v1alpha3"]),
            _ => ("security.istio.io", &["v1", "v1beta1"]),
        };
        let mut last: Option<Vec<Violation>> = None;
        for v in versions {
            for op in [Operation::Create, Operation::Update] {
                let ob = o(&format!("{group}/{v}"), kind.as_str(), spec.clone());
                let review = Review {
                    kind,
                    version: v,
                    operation: &op,
                    namespace: "prod",
                    name: "x",
                    object: Some(&ob),
                    old_object: None,
                    dry_run: false,
                    created_for: None,
                };
                let mut out = Vec::new();
                (rule.check)(
                    &review,
                    &crate::rules::Ctx {
                        policy: &crate::config::Policy::default(),
                        mesh: &crate::mesh::MeshContext::default(),
                        cluster: &crate::context::NoCluster,
                        cache: &crate::rules::ReviewCache::default(),
                    },
                    &mut out,
                );
                if let Some(prev) = &last {
                    assert_eq!(prev, &out);
                }
                last = Some(out);
            }
        }
        last.unwrap_or_default()
    }

    #[test]
    fn enum_typos() {
        let found = each(
            &INVALID_ENUM,
            Kind::PeerAuthentication,
            json!({"mtls": {"mode": "STRCT"}, "selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {"80": {"mode": "permissive"}}}),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["spec.mtls.mode", "spec.portLevelMtls[\"80\"].mode"]);
        assert_eq!(
            found[0].message,
            "Istio rejects this object: Unsupported value: \"STRCT\": supported values: \"UNSET\", \"DISABLE\", \"PERMISSIVE\", \"STRICT\""
        );
        assert!(found[0].fix.starts_with("write \"STRICT\""));
        assert!(found[1].fix.starts_with("write \"PERMISSIVE\""));
        let found = each(
            &INVALID_ENUM,
            Kind::AuthorizationPolicy,
            json!({"action": "ALLOWED"}),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.action");
        assert!(found[0].fix.starts_with("write \"ALLOW\""));
        let found = each(
            &INVALID_ENUM,
            Kind::DestinationRule,
            json!({"host": "a", "subsets": [{"name": "v1", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL_"}}}]}),
        );
        assert_eq!(found[0].path, "spec.subsets[0].trafficPolicy.tls.mode");
        let found = each(
            &INVALID_ENUM,
            Kind::RequestAuthentication,
            json!({"jwtRules": [{"issuer": "a", "presence": "MANDATORY"}]}),
        );
        assert!(found[0]
            .message
            .contains("Unsupported value: \"MANDATORY\""));
        // Valid values and unknown fields pass.
        for (kind, spec) in [
            (
                Kind::PeerAuthentication,
                json!({"mtls": {"mode": "STRICT"}, "newField": {"x": 1}}),
            ),
            (
                Kind::AuthorizationPolicy,
                json!({"action": "AUDIT", "rules": [{}], "futureThing": true}),
            ),
            (
                Kind::DestinationRule,
                json!({"host": "a", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}),
            ),
        ] {
            assert!(each(&INVALID_ENUM, kind, spec.clone()).is_empty(), "{spec}");
        }
    }

    #[test]
    fn ports() {
        let found = each(
            &INVALID_PORT,
            Kind::PeerAuthentication,
            json!({"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {"acd": {"mode": "STRICT"}, "0": {"mode": "STRICT"}, "42949672": {"mode": "STRICT"}, "8080": {"mode": "STRICT"}}}),
        );
        let msgs: Vec<_> = found
            .iter()
            .map(|v| (v.path.as_str(), v.message.as_str()))
            .collect();
        assert_eq!(
            msgs,
            [
                ("spec.portLevelMtls[\"0\"]", "Istio rejects this object: port must be between 1-65535, got 0"),
                ("spec.portLevelMtls[\"42949672\"]", "Istio rejects this object: port must be between 1-65535, got 42949672"),
                ("spec.portLevelMtls[\"acd\"]", "Istio rejects this object: type conversion error from string \"acd\" to a port number: portLevelMtls keys must be container port numbers"),
            ]
        );
        let found = each(
            &INVALID_PORT,
            Kind::AuthorizationPolicy,
            json!({"rules": [{"to": [{"operation": {"ports": ["80", "http"], "notPorts": ["70000"]}}], "when": [{"key": "destination.port", "values": ["x"]}]}]}),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].to[0].operation.ports[1]",
                "spec.rules[0].to[0].operation.notPorts[0]",
                "spec.rules[0].when[0].values[0]"
            ]
        );
        let found = each(
            &INVALID_PORT,
            Kind::DestinationRule,
            json!({"host": "a", "trafficPolicy": {"portLevelSettings": [{"port": {"number": 0}}]}}),
        );
        assert_eq!(
            found[0].path,
            "spec.trafficPolicy.portLevelSettings[0].port.number"
        );
        assert!(each(
            &INVALID_PORT,
            Kind::PeerAuthentication,
            json!({"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {"80": {"mode": "STRICT"}}})
        )
        .is_empty());
    }

    #[test]
    fn conflicts() {
        let found = each(
            &CONFLICTING_FIELDS,
            Kind::AuthorizationPolicy,
            json!({"rules": [{"from": [{"source": {"serviceAccounts": ["bar/sa"], "namespaces": ["bar"]}}]}]}),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.rules[0].from[0].source");
        assert!(found[0]
            .message
            .contains("Cannot set serviceAccounts with namespaces or principals"));
        assert!(found[0].fix.contains("separate from[] entry"));
        let found = each(
            &CONFLICTING_FIELDS,
            Kind::RequestAuthentication,
            json!({"selector": {"matchLabels": {"a": "b"}}, "targetRef": {"group": "", "kind": "Service", "name": "foo"}}),
        );
        assert!(found[0]
            .message
            .contains("only one of targetRefs or selector can be set"));
        let found = each(
            &CONFLICTING_FIELDS,
            Kind::DestinationRule,
            json!({"host": "a", "trafficPolicy": {"tls": {"mode": "MUTUAL", "credentialName": "c", "caCertificates": "/x"}}}),
        );
        assert_eq!(found[0].path, "spec.trafficPolicy.tls");
        let found = each(
            &CONFLICTING_FIELDS,
            Kind::AuthorizationPolicy,
            json!({"action": "DENY", "provider": {"name": "x"}, "rules": [{}]}),
        );
        assert!(found[0]
            .message
            .contains("`provider` must not be with non CUSTOM action"));
        // Split sources are fine (Istio's own valid example).
        assert!(each(
            &CONFLICTING_FIELDS,
            Kind::AuthorizationPolicy,
            json!({"rules": [{"from": [{"source": {"serviceAccounts": ["baz/sa", "sa"]}}, {"source": {"principals": ["bar"]}}]}]})
        )
        .is_empty());
    }

    #[test]
    fn spec_errors() {
        let found = each(
            &INVALID_SPEC,
            Kind::RequestAuthentication,
            json!({"jwtRules": [{"issuer": "e", "audiences": [""], "jwksUri": "hTPp\\\\blah", "timeout": "apple",
                                  "fromHeaders": [{"prefix": "b"}], "outputClaimToHeaders": [{"claim": "x", "header": ":authority"}]}]}),
        );
        let msgs: Vec<_> = found.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "Istio rejects this object: spec.jwtRules[0].audiences[0] in body should be at least 1 chars long",
                "Istio rejects this object: url must have scheme http:// or https://",
                "Istio rejects this object: spec.jwtRules[0].fromHeaders[0].name: Required value",
                "Istio rejects this object: spec.jwtRules[0].outputClaimToHeaders[0].header in body should match '^[-_A-Za-z0-9]+$'",
                "Istio rejects this object: spec.jwtRules[0].timeout must be a valid duration greater than 1ms, got \"apple\"",
            ]
        );
        let found = each(
            &INVALID_SPEC,
            Kind::AuthorizationPolicy,
            json!({"rules": [{"from": [], "to": [{"operation": {"paths": ["/a/{**}/b/{**}", "/x{*}", ""]}}], "when": [{"key": "source.ip"}]}]}),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].from",
                "spec.rules[0].to[0].operation.paths[2]",
                "spec.rules[0].to[0].operation.paths[0]",
                "spec.rules[0].to[0].operation.paths[1]",
                "spec.rules[0].when[0]"
            ]
        );
        assert!(found[2].message.contains("{**} operator must be the last"));
        let ips = each(
            &INVALID_SPEC,
            Kind::AuthorizationPolicy,
            json!({"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8", "10.0.0.0/33", "::1", "bad"]}}],
                              "when": [{"key": "remote.ip", "values": ["1.2.3.4/40"]}]}]}),
        );
        let paths: Vec<_> = ips.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].from[0].source.ipBlocks[1]",
                "spec.rules[0].from[0].source.ipBlocks[3]",
                "spec.rules[0].when[0].values[0]"
            ]
        );
        assert_eq!(
            ips[0].message,
            "Istio rejects this object: invalid IP address or CIDR range \"10.0.0.0/33\" in ipBlocks"
        );
        assert!(found[3].message.contains("whole path segment"));
        let found = each(
            &INVALID_SPEC,
            Kind::PeerAuthentication,
            json!({"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {}}),
        );
        assert!(found[0]
            .message
            .contains("spec.portLevelMtls in body should have at least 1 properties"));
        let found = each(
            &INVALID_SPEC,
            Kind::DestinationRule,
            json!({"host": "a", "trafficPolicy": {"tls": {"mode": "MUTUAL"}}}),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.trafficPolicy.tls.clientCertificate",
                "spec.trafficPolicy.tls.privateKey"
            ]
        );
        // Valid shapes pass, including path templates and every Istio-valid matcher.
        for (kind, spec) in [
            (
                Kind::AuthorizationPolicy,
                json!({"rules": [{"to": [{"operation": {"paths": ["/path/template/{*}", "/{**}/path/template", "/a/{*}/b/{**}"]}}]}]}),
            ),
            (
                Kind::RequestAuthentication,
                json!({"jwtRules": [{"issuer": "e", "timeout": "5s", "jwksUri": "https://e/jwks", "outputClaimToHeaders": [{"claim": "abc", "header": "def"}]}]}),
            ),
            (
                Kind::DestinationRule,
                json!({"host": "a", "trafficPolicy": {"tls": {"mode": "MUTUAL", "credentialName": "c"}}}),
            ),
            (Kind::PeerAuthentication, json!({"selector": {}})),
        ] {
            assert!(each(&INVALID_SPEC, kind, spec.clone()).is_empty(), "{spec}");
        }
    }

    #[test]
    fn delete_is_not_validated() {
        let ob = o(
            "security.istio.io/v1",
            "PeerAuthentication",
            json!({"mtls": {"mode": "BLAH"}}),
        );
        assert!(run(&INVALID_ENUM, Operation::Delete, "v1", "prod", &ob).is_empty());
    }

    #[test]
    fn an_authorization_policy_spec_that_is_not_an_object_is_invalid() {
        let found = each(&INVALID_SPEC, Kind::AuthorizationPolicy, json!("deny-all"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec");
        assert!(
            found[0]
                .message
                .contains("spec in body must be of type object: \"string\""),
            "{}",
            found[0].message
        );
        assert!(each(&INVALID_SPEC, Kind::AuthorizationPolicy, json!({})).is_empty());
    }

    #[test]
    fn helpers() {
        assert_eq!(
            super::super::closest("STRCT", &crate::model::MtlsMode::NAMES),
            Some("STRICT")
        );
        assert_eq!(
            super::super::closest("xyz", &crate::model::MtlsMode::NAMES),
            None
        );
    }
}
