//! Istio validation parity: what Istio itself rejects (CRD schema, CEL rules, istiod's
//! validating webhook, `pkg/config/validation`), meshguard rejects too, with Istio's reason in
//! the message. One rule per class of error, across PeerAuthentication, AuthorizationPolicy,
//! RequestAuthentication and DestinationRule. Unknown fields are tolerated (newer Istio
//! versions add fields); unknown enum values are not. Security judgements (PERMISSIVE,
//! allow-all, ...) live in the per-kind files; `pa-port-level-without-selector` and
//! `ra-missing-issuer` already cover those two Istio errors.
//!
//! The walk goes through the typed views of [`crate::istio`] for structure and field paths, and
//! looks at each part's raw value only for what a schema checks (types, emptiness, formats).
//! The four rules share one validation per review, cached in [`ReviewCache`](super::ReviewCache).

use super::{Action, Ctx, Rule, Violation};
use crate::istio::authorization_policy::MatchList;
use crate::istio::AuthorizationPolicy;
use crate::json::list_strings;
use crate::model::validation::Errors;
pub(crate) use crate::model::validation::{Class, IstioErrors};
use crate::model::{decode_spec, Malformed};
use crate::resource::{Kind, Review};
use serde_json::Value;

const KINDS: &[Kind] = &[
    Kind::PeerAuthentication,
    Kind::AuthorizationPolicy,
    Kind::RequestAuthentication,
    Kind::DestinationRule,
];

fn port_in_range(n: u64) -> bool {
    (1..=65535).contains(&n)
}

const AP_ACTIONS: &[&str] = &["ALLOW", "DENY", "AUDIT", "CUSTOM"];

/// Validate the object a review writes, as Istio would.
pub(crate) fn validate(review: &Review<'_>) -> IstioErrors {
    let mut found = Vec::new();
    let errors = &mut Errors { out: &mut found };
    let spec = review.spec();
    if spec.is_null() {
        return found;
    }
    match review.kind {
        Kind::PeerAuthentication => match decode_spec::<crate::model::PeerAuthentication>(spec) {
            Ok(pa) => pa.validate(errors),
            Err(m) => malformed(m, errors),
        },
        Kind::AuthorizationPolicy => authorization_policy(spec, errors),
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

/// Is `p` a valid Envoy URI template (`{*}` / `{**}` whole segments, `{**}` last)?
/// Returns Istio's reason when not. Paths without `{` are plain match strings.
fn path_template_problem(p: &str) -> Option<&'static str> {
    if !p.contains(['{', '}']) {
        return None;
    }
    let segs: Vec<&str> = p.split('/').collect();
    for (i, s) in segs.iter().enumerate() {
        if !s.contains(['{', '}']) {
            continue;
        }
        match *s {
            "{*}" => {}
            "{**}" => {
                if segs[i + 1..]
                    .iter()
                    .any(|r| r.contains("{**}") || r.contains("{*}"))
                {
                    return Some("the {**} operator must be the last operator in the path");
                }
            }
            _ => {
                return Some(
                    "{*} and {**} must be the whole path segment, with no other characters in it",
                );
            }
        }
    }
    if p.contains('*') && p.split('/').any(|s| s.contains('*') && !s.starts_with('{')) {
        return Some("a path template cannot also use the * prefix/suffix match");
    }
    None
}

/// A list field that is an array with at least one entry (the schema's sense of "set").
fn non_empty_array(v: Option<&Value>) -> bool {
    v.and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

fn authorization_policy(spec: &Value, errors: &mut Errors<'_>) {
    let ap = AuthorizationPolicy::of(spec);
    errors.enum_value(|| "spec.action".to_owned(), spec.get("action"), AP_ACTIONS);
    let action = ap.action_str();
    target_conflicts(spec, errors);
    let provider = ap.provider();
    if action == "CUSTOM"
        && spec.get("rules").is_some_and(|r| !r.is_null())
        && ap.provider_name().is_none_or(str::is_empty)
    {
        errors.report(
            Class::Spec,
            || "spec.provider.name".to_owned(),
            || "`provider.name` must not be empty".to_owned(),
            || "name the extension provider from meshConfig.extensionProviders".to_owned(),
        );
    }
    if provider.is_some() && action != "CUSTOM" {
        errors.report(
            Class::Conflict,
            || "spec.provider".to_owned(),
            || format!("`provider` must not be with non CUSTOM action, found {action}"),
            || "remove provider, or set action: CUSTOM".to_owned(),
        );
    }
    for rule in ap.rules() {
        let i = rule.index;
        if !rule.is_object() {
            errors.report(
                Class::Spec,
                || rule.path(),
                || format!("`rule` must not be nil, found at rule {i} (spec.rules[{i}] in body must be of type object)"),
                || "write {} for a rule that matches everything, or remove the entry".to_owned(),
            );
            continue;
        }
        for (field, inner) in [("from", "source"), ("to", "operation")] {
            if rule
                .value
                .get(field)
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
            {
                errors.report(
                    Class::Spec,
                    || format!("spec.rules[{i}].{field}"),
                    || format!("`{field}` must not be empty, found at rule {i}"),
                    || format!("remove {field}, or add entries"),
                );
            }
            for (j, entry) in rule.entries(field) {
                match entry.get(inner) {
                    Some(Value::Object(m)) if !m.is_empty() => {}
                    Some(Value::Object(_)) => errors.report(
                        Class::Spec,
                        || format!("spec.rules[{i}].{field}[{j}].{inner}"),
                        || format!("`{field}.{inner}` must not be empty, found at rule {i}"),
                        || {
                            format!(
                                "set at least one match in {inner}, or remove the {field} entry"
                            )
                        },
                    ),
                    _ => errors.report(
                        Class::Spec,
                        || format!("spec.rules[{i}].{field}[{j}]"),
                        || format!("`{field}.{inner}` must not be nil, found at rule {i}"),
                        || format!("write {field}: [{{{inner}: {{...}}}}]"),
                    ),
                }
            }
        }
        for src in rule.sources() {
            let set = |k: &'static str| non_empty_array(src.field(k).value);
            if (set("serviceAccounts") || set("notServiceAccounts"))
                && ["principals", "notPrincipals", "namespaces", "notNamespaces"]
                    .iter()
                    .any(|k| set(k))
            {
                errors.report(
                    Class::Conflict,
                    || src.path(),
                    || "Cannot set serviceAccounts with namespaces or principals".to_owned(),
                    || "put serviceAccounts in a separate from[] entry (entries are ORed), or express the accounts as principals".to_owned(),
                );
            }
            let accounts = src.field("serviceAccounts");
            for (k, sa) in accounts.strings() {
                if sa.contains('*') {
                    errors.report(
                        Class::Spec,
                        || accounts.item_path(k),
                        || "serviceAccounts do not support wildcards".to_owned(),
                        || "name each account as <namespace>/<serviceaccount>, or use principals with a wildcard".to_owned(),
                    );
                }
            }
            if accounts
                .value
                .and_then(Value::as_array)
                .is_some_and(|a| a.len() > 16)
            {
                errors.report(
                    Class::Spec,
                    || accounts.path(),
                    || "serviceAccounts may list at most 16 entries".to_owned(),
                    || "split the accounts over several from[] entries".to_owned(),
                );
            }
            // One pass over the fields present (not a lookup per known field).
            for list in src.fields() {
                match list.field {
                    "principals"
                    | "notPrincipals"
                    | "requestPrincipals"
                    | "notRequestPrincipals"
                    | "namespaces"
                    | "notNamespaces" => empty_values(&list, errors),
                    "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks" => {
                        empty_values(&list, errors);
                        ip_values(
                            list.value.unwrap_or(&Value::Null),
                            |k| list.item_path(k),
                            list.field,
                            errors,
                        );
                    }
                    _ => {}
                }
            }
        }
        for op in rule.operations() {
            for key in ["ports", "notPorts"] {
                let list = op.field(key);
                for (k, v) in list
                    .value
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let ok = match v {
                        Value::String(s) => s.parse::<u64>().is_ok_and(port_in_range),
                        Value::Number(n) => n.as_u64().is_some_and(port_in_range),
                        _ => false,
                    };
                    if !ok {
                        errors.report(
                            Class::Port,
                            || list.item_path(k),
                            || format!("invalid port {v}: port must be between 1-65535"),
                            || "write the port as a number string, e.g. \"8080\"".to_owned(),
                        );
                    }
                }
            }
            for list in op.fields() {
                if !matches!(
                    list.field,
                    "methods" | "notMethods" | "paths" | "notPaths" | "hosts" | "notHosts"
                ) {
                    continue;
                }
                empty_values(&list, errors);
                if !matches!(list.field, "paths" | "notPaths") {
                    continue;
                }
                for (k, p) in list.strings() {
                    if let Some(why) = path_template_problem(p) {
                        errors.report(
                            Class::Spec,
                            || list.item_path(k),
                            || format!("invalid path template {p:?}: {why}"),
                            || "use {*} for one segment and {**} (last) for the rest, each as a whole segment, e.g. \"/api/{*}/items/{**}\"".to_owned(),
                        );
                    }
                }
            }
        }
        for cond in rule.conditions() {
            let base = cond.path();
            let key = cond.key().unwrap_or("");
            if key.is_empty() {
                errors.report(
                    Class::Spec,
                    || format!("{base}.key"),
                    || "`key` must not be empty".to_owned(),
                    || "set key, e.g. source.namespace".to_owned(),
                );
                continue;
            }
            if !non_empty_array(cond.list("values")) && !non_empty_array(cond.list("notValues")) {
                errors.report(
                    Class::Spec,
                    || base.clone(),
                    || format!("at least one of `values` or `notValues` must be set for key {key}"),
                    || "add values (or notValues) to the condition".to_owned(),
                );
            }
            if matches!(key, "source.ip" | "remote.ip" | "destination.ip") {
                for field in ["values", "notValues"] {
                    ip_values(
                        cond.list(field).unwrap_or(&Value::Null),
                        |k| format!("{base}.{field}[{k}]"),
                        field,
                        errors,
                    );
                }
            }
            if key == "destination.port" {
                for field in ["values", "notValues"] {
                    for (k, v) in cond.strings(field) {
                        if !v.parse::<u64>().is_ok_and(port_in_range) {
                            errors.report(
                                Class::Port,
                                || format!("{base}.{field}[{k}]"),
                                || format!("invalid `value` for `key` destination.port: invalid port {v}"),
                                || "write a port number between 1 and 65535".to_owned(),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// An IP address or CIDR range, as Istio's `ValidateIPs` accepts them.
fn ip_or_cidr(s: &str) -> bool {
    use std::net::IpAddr;
    match s.split_once('/') {
        None => s.parse::<IpAddr>().is_ok(),
        Some((ip, len)) => match (ip.parse::<IpAddr>(), len.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(n)) => n <= 32,
            (Ok(IpAddr::V6(_)), Ok(n)) => n <= 128,
            _ => false,
        },
    }
}

fn ip_values(list: &Value, path: impl Fn(usize) -> String, key: &str, errors: &mut Errors<'_>) {
    for (k, v) in list_strings(list) {
        if !v.is_empty() && !ip_or_cidr(v) {
            errors.report(
                Class::Spec,
                || path(k),
                || format!("invalid IP address or CIDR range {v:?} in {key}"),
                || {
                    "write an address such as \"10.0.0.1\" or a range such as \"10.0.0.0/16\""
                        .to_owned()
                },
            );
        }
    }
}

/// Istio's `CheckEmptyValues`: no empty strings in match lists.
fn empty_values(list: &MatchList<'_>, errors: &mut Errors<'_>) {
    for (k, v) in list.strings() {
        if v.is_empty() {
            let mut name = list.field.to_owned();
            if let Some(first) = name.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            errors.report(
                Class::Spec,
                || list.item_path(k),
                || format!("empty value is not allowed, found in {name}"),
                || "remove the empty entry".to_owned(),
            );
        }
    }
}

/// `selector`, `targetRef` and `targetRefs` are mutually exclusive (AuthorizationPolicy and
/// RequestAuthentication).
fn target_conflicts(spec: &Value, errors: &mut Errors<'_>) {
    let present = |k: &str| spec.get(k).is_some_and(|v| !v.is_null());
    let n = ["selector", "targetRef", "targetRefs"]
        .iter()
        .filter(|k| present(k))
        .count();
    if n > 1 {
        errors.report(
            Class::Conflict,
            || "spec".to_owned(),
            || "only one of targetRefs or selector can be set (selector, targetRef and targetRefs are mutually exclusive)".to_owned(),
            || "keep exactly one of selector, targetRef or targetRefs".to_owned(),
        );
    }
}

fn check(class: Class, review: &Review<'_>, ctx: &Ctx<'_>, out: &mut Vec<Violation>) {
    let errors = ctx.cache.istio_errors.get_or_init(|| validate(review));
    out.extend(
        errors
            .iter()
            .filter(|(c, _)| *c == class)
            .map(|(_, v)| v.clone()),
    )
}

pub static INVALID_ENUM: Rule = Rule {
    id: "istio-invalid-enum",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a value outside an Istio enum (mtls mode, action, tls mode, presence): typos such as STRCT or ALLOWED",
    example_fix: "spec.mtls.mode: STRICT",
    needs: &[],
    check: |review, ctx, out| check(Class::Enum, review, ctx, out),
};

pub static INVALID_PORT: Rule = Rule {
    id: "istio-invalid-port",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a port that is not a number between 1 and 65535 (portLevelMtls keys, operation ports, portLevelSettings)",
    example_fix: "portLevelMtls: {\"8080\": {mode: STRICT}}",
    needs: &[],
    check: |review, ctx, out| check(Class::Port, review, ctx, out),
};

pub static CONFLICTING_FIELDS: Rule = Rule {
    id: "istio-conflicting-fields",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "fields Istio does not allow together (serviceAccounts with principals/namespaces, selector with targetRef, credentialName with certificate files)",
    example_fix: "keep one of selector, targetRef, targetRefs",
    needs: &[],
    check: |review, ctx, out| check(Class::Conflict, review, ctx, out),
};

pub static INVALID_SPEC: Rule = Rule {
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
    use serde_json::json;

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
