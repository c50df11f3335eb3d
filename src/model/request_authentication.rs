//! RequestAuthentication (`security.istio.io` v1, v1beta1): which JWT issuers a workload
//! accepts. It validates a token when one is present and never requires one: requiring a token
//! takes an AuthorizationPolicy on `requestPrincipals` (Istio's RequestAuthentication
//! reference). A token from an issuer no applicable policy names is rejected (401).
//!
//! Istio's validation of the kind ([`RequestAuthentication::validate`]) follows the CRD schema
//! and istiod's `ValidateRequestAuthentication` (`pkg/config/validation/validation.go`).

use super::target_ref::TargetRef;
use super::validation::{Class, Errors};
use super::{entries, ok, shaped, Loose, Selector, Str};
use serde::Deserialize;

/// One RequestAuthentication's `spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestAuthentication<'a> {
    #[serde(borrow, default)]
    pub selector: Option<Loose<Selector<'a>>>,
    #[serde(borrow, default)]
    pub(crate) target_ref: Option<Loose<TargetRef<'a>>>,
    #[serde(borrow, default)]
    pub(crate) target_refs: Option<Loose<Vec<Loose<TargetRef<'a>>>>>,
    #[serde(borrow, default)]
    pub(crate) jwt_rules: Option<Loose<Vec<Loose<JwtRule<'a>>>>>,
}

/// One `jwtRules[i]` entry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JwtRule<'a> {
    #[serde(borrow, default)]
    pub(crate) issuer: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) jwks_uri: Option<Loose<Str<'a>>>,
    /// Inline JWKS: a JSON document inside the string.
    #[serde(borrow, default)]
    pub(crate) jwks: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) audiences: Option<Loose<Vec<Loose<Str<'a>>>>>,
    #[serde(borrow, default)]
    pub(crate) presence: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) from_params: Option<Loose<Vec<Loose<Str<'a>>>>>,
    #[serde(borrow, default)]
    pub(crate) from_cookies: Option<Loose<Vec<Loose<Str<'a>>>>>,
    #[serde(borrow, default)]
    pub(crate) space_delimited_claims: Option<Loose<Vec<Loose<Str<'a>>>>>,
    #[serde(borrow, default)]
    pub(crate) from_headers: Option<Loose<Vec<Loose<JwtHeader<'a>>>>>,
    #[serde(borrow, default)]
    pub(crate) output_claim_to_headers: Option<Loose<Vec<Loose<ClaimToHeader<'a>>>>>,
    #[serde(borrow, default)]
    pub(crate) timeout: Option<Loose<Str<'a>>>,
}

/// `jwtRules[i].fromHeaders[j]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub(crate) struct JwtHeader<'a> {
    #[serde(borrow, default)]
    pub(crate) name: Option<Loose<Str<'a>>>,
}

/// `jwtRules[i].outputClaimToHeaders[j]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub(crate) struct ClaimToHeader<'a> {
    #[serde(borrow, default)]
    pub(crate) claim: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) header: Option<Loose<Str<'a>>>,
}

shaped!(Map: RequestAuthentication<'_>, JwtRule<'_>, JwtHeader<'_>, ClaimToHeader<'_>);

const PRESENCE: &[&str] = &["OPTIONAL", "REQUIRED"];

impl<'a> RequestAuthentication<'a> {
    /// Every `jwtRules[i]` that is an object, with its index.
    pub(crate) fn jwt_rules(&self) -> impl Iterator<Item = (usize, &JwtRule<'a>)> {
        entries(&self.jwt_rules)
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, r.ok()?)))
    }

    /// `targetRef` or `targetRefs` is set (gateways and waypoints, not sidecars): present, not
    /// null, not an empty list or reference.
    pub(crate) fn has_target_refs(&self) -> bool {
        let one = match &self.target_ref {
            None => false,
            Some(Loose::Ok(r)) => *r != TargetRef::default(),
            Some(Loose::Wrong { .. }) => true,
        };
        let list = match &self.target_refs {
            None => false,
            Some(Loose::Ok(l)) => !l.is_empty(),
            Some(Loose::Wrong { .. }) => true,
        };
        one || list
    }

    /// No `selector.matchLabels`: the policy applies namespace-wide (mesh-wide in the root
    /// namespace).
    pub(crate) fn selects_all(&self) -> bool {
        ok(&self.selector).is_none_or(Selector::is_empty)
    }

    /// Istio's validation of the spec, in a policy of namespace `own_ns`.
    pub(crate) fn validate(&self, own_ns: &str, errors: &mut Errors<'_>) {
        let set = [
            self.selector.is_some(),
            self.target_ref.is_some(),
            self.target_refs.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            errors.report(
                Class::Conflict,
                || "spec".to_owned(),
                || "only one of targetRefs or selector can be set (selector, targetRef and targetRefs are mutually exclusive)".to_owned(),
                || "keep exactly one of selector, targetRef or targetRefs".to_owned(),
            );
        }
        if let Some(r) = &self.target_ref {
            TargetRef::validate(r, "spec.targetRef", own_ns, errors);
        }
        for (i, r) in entries(&self.target_refs).iter().enumerate() {
            TargetRef::validate(r, &format!("spec.targetRefs[{i}]"), own_ns, errors);
        }
        for (i, rule) in entries(&self.jwt_rules).iter().enumerate() {
            let base = JwtRule::path(i, "");
            let Loose::Ok(rule) = rule else {
                errors.report(
                    Class::Spec,
                    || base.clone(),
                    || format!("{base} in body must be of type object"),
                    || "write the rule, e.g. {issuer: \"https://issuer.example.com\", jwksUri: \"https://issuer.example.com/jwks.json\"}, or remove the entry".to_owned(),
                );
                continue;
            };
            rule.validate(&base, errors);
        }
    }
}

impl JwtRule<'_> {
    /// `spec.jwtRules[i]` (plus `.field` when given).
    pub fn path(index: usize, field: &str) -> String {
        if field.is_empty() {
            format!("spec.jwtRules[{index}]")
        } else {
            format!("spec.jwtRules[{index}].{field}")
        }
    }

    /// `issuer`, when it is a string.
    pub fn issuer(&self) -> Option<&str> {
        ok(&self.issuer).map(Str::as_str)
    }

    /// `jwksUri`, when it is a string.
    pub(crate) fn jwks_uri(&self) -> Option<&str> {
        ok(&self.jwks_uri).map(Str::as_str)
    }

    /// `jwks`, when it is a string.
    pub fn jwks(&self) -> Option<&str> {
        ok(&self.jwks).map(Str::as_str)
    }

    /// The string entries of `spaceDelimitedClaims`.
    pub(crate) fn space_delimited_claims(&self) -> impl Iterator<Item = &str> {
        entries(&self.space_delimited_claims)
            .iter()
            .filter_map(|a| a.ok().map(Str::as_str))
    }

    /// The string entries of `audiences`.
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        entries(&self.audiences)
            .iter()
            .filter_map(|a| a.ok().map(Str::as_str))
    }

    fn validate(&self, base: &str, errors: &mut Errors<'_>) {
        errors.enum_field(
            || format!("{base}.presence"),
            self.presence.as_ref(),
            PRESENCE,
        );
        for (key, list) in [
            ("audiences", &self.audiences),
            ("fromParams", &self.from_params),
            ("fromCookies", &self.from_cookies),
            ("spaceDelimitedClaims", &self.space_delimited_claims),
        ] {
            errors.non_empty_entries(entries(list), base, key);
        }
        if let Some(uri) = self.jwks_uri() {
            if !uri.is_empty() && jwks_scheme(uri).is_none() {
                errors.report(
                    Class::Spec,
                    || format!("{base}.jwksUri"),
                    || "url must have scheme http:// or https://".to_owned(),
                    || "write the full URL, e.g. \"https://issuer.example.com/.well-known/jwks.json\"".to_owned(),
                );
            }
        }
        for (j, h) in entries(&self.from_headers).iter().enumerate() {
            let p = format!("{base}.fromHeaders[{j}]");
            match h.ok().and_then(|h| ok(&h.name)).map(Str::as_str) {
                None => errors.report(
                    Class::Spec,
                    || format!("{p}.name"),
                    || format!("{p}.name: Required value"),
                    || "set the header name, e.g. name: Authorization".to_owned(),
                ),
                Some("") => errors.report(
                    Class::Spec,
                    || format!("{p}.name"),
                    || format!("{p}.name in body should be at least 1 chars long"),
                    || "set the header name, e.g. name: Authorization".to_owned(),
                ),
                Some(_) => {}
            }
        }
        for (j, c) in entries(&self.output_claim_to_headers).iter().enumerate() {
            let p = format!("{base}.outputClaimToHeaders[{j}]");
            let Loose::Ok(c) = c else {
                errors.report(
                    Class::Spec,
                    || p.to_string(),
                    || format!("{p} in body must be of type object"),
                    || "write {claim: <claim>, header: <header>} or remove the entry".to_owned(),
                );
                continue;
            };
            for (field, value) in [("claim", &c.claim), ("header", &c.header)] {
                match ok(value).map(Str::as_str) {
                    None => errors.report(
                        Class::Spec,
                        || format!("{p}.{field}"),
                        || format!("{p}.{field}: Required value"),
                        || format!("set {field}"),
                    ),
                    Some("") => errors.report(
                        Class::Spec,
                        || format!("{p}.{field}"),
                        || format!("{p}.{field} in body should be at least 1 chars long"),
                        || format!("set {field}"),
                    ),
                    Some(h)
                        if field == "header"
                            && !h
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
                    {
                        errors.report(
                            Class::Spec,
                            || format!("{p}.header"),
                            || format!("{p}.header in body should match '^[-_A-Za-z0-9]+$'"),
                            || "use a plain header name such as x-jwt-sub (no pseudo-headers like :authority)".to_owned(),
                        )
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some(t) = &self.timeout {
            let (ok, text) = match t {
                Loose::Ok(s) => (
                    duration_nanos(s).is_some_and(|n| n >= 1_000_000),
                    std::borrow::Cow::Owned(serde_json::Value::from(s.as_str()).to_string()),
                ),
                Loose::Wrong { text, .. } => (false, std::borrow::Cow::Borrowed(text.as_str())),
            };
            if !ok {
                errors.report(
                    Class::Spec,
                    || format!("{base}.timeout"),
                    || {
                        format!(
                            "{base}.timeout must be a valid duration greater than 1ms, got {text}"
                        )
                    },
                    || "write a duration such as \"5s\"".to_owned(),
                );
            }
        }
    }
}

/// The scheme of a JWKS URI (`http`/`https`, any case), `None` when it has none Istio accepts.
pub(crate) fn jwks_scheme(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once("://")?;
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        .then_some(scheme)
        .filter(|_| !rest.is_empty())
}

/// A protobuf duration as Kubernetes/Istio write it (`5s`, `1.5s`, `100ms`, `1m30s`), in ns.
pub(crate) fn duration_nanos(s: &str) -> Option<u128> {
    if s.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Some(total as u128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode_spec;
    use serde_json::json;

    #[test]
    fn jwt_rules_with_paths() {
        let spec = json!({"jwtRules": [{"issuer": "https://a", "audiences": ["x", 1, "y"], "unknown": {"deep": [1]}}, 3]});
        let ra: RequestAuthentication<'_> = decode_spec(&spec).expect("decodes");
        let rules: Vec<_> = ra.jwt_rules().collect();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].1.issuer(), Some("https://a"));
        assert_eq!(rules[0].1.audiences().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(JwtRule::path(0, "issuer"), "spec.jwtRules[0].issuer");
        assert!(matches!(
            entries(&ra.jwt_rules)[1],
            Loose::Wrong {
                found: "number",
                ..
            }
        ));
        assert!(ok(&ra.selector).is_none() && ra.target_refs.is_none());
        assert!(ra.selects_all() && !ra.has_target_refs());
        for (spec, refs) in [
            (
                json!({"targetRefs": [{"kind": "Service", "name": "s"}]}),
                true,
            ),
            (json!({"targetRef": {"kind": "Gateway", "name": "g"}}), true),
            (json!({"targetRef": "x"}), true),
            (json!({"targetRefs": [], "targetRef": null}), false),
            (json!({"targetRef": {}}), false),
        ] {
            let ra: RequestAuthentication<'_> = decode_spec(&spec).expect("decodes");
            assert_eq!(ra.has_target_refs(), refs, "{spec}");
        }
        let spec = json!({"selector": {"matchLabels": {"app": "a"}}});
        let ra: RequestAuthentication<'_> = decode_spec(&spec).expect("decodes");
        assert!(!ra.selects_all());
    }

    #[test]
    fn helpers() {
        assert_eq!(duration_nanos("1m30s"), Some(90_000_000_000));
        assert_eq!(duration_nanos("apple"), None);
        assert_eq!(jwks_scheme("HTTPS://x"), Some("HTTPS"));
        assert_eq!(jwks_scheme("hTPp\\blah"), None);
    }
}
