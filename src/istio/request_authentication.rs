//! RequestAuthentication (`security.istio.io` v1, v1beta1): which JWT issuers a workload
//! accepts. It validates a token when one is present and never requires one: requiring a token
//! takes an AuthorizationPolicy on `requestPrincipals` (Istio's RequestAuthentication
//! reference). A token from an issuer no applicable policy names is rejected (401).

use super::WorkloadSelector;
use crate::json::{is_set, items, list_strings};
use serde_json::Value;

/// The view of one RequestAuthentication spec.
#[derive(Clone, Copy, Debug)]
pub struct RequestAuthentication<'a> {
    pub spec: &'a Value,
    pub selector: WorkloadSelector<'a>,
}

impl<'a> RequestAuthentication<'a> {
    pub fn of(spec: &'a Value) -> RequestAuthentication<'a> {
        RequestAuthentication {
            spec,
            selector: WorkloadSelector::of(spec),
        }
    }

    /// Every `jwtRules[i]` entry, objects or not.
    pub fn jwt_rules(&self) -> impl Iterator<Item = JwtRule<'a>> + 'a {
        items(self.spec, "jwtRules")
            .iter()
            .enumerate()
            .map(|(index, value)| JwtRule { index, value })
    }

    /// `targetRef` or `targetRefs` is set (gateways and waypoints, not sidecars).
    pub fn has_target_refs(&self) -> bool {
        is_set(self.spec.get("targetRef")) || is_set(self.spec.get("targetRefs"))
    }
}

/// One `jwtRules[i]` entry.
#[derive(Clone, Copy, Debug)]
pub struct JwtRule<'a> {
    pub index: usize,
    pub value: &'a Value,
}

impl<'a> JwtRule<'a> {
    pub fn is_object(&self) -> bool {
        self.value.is_object()
    }
    /// A string field (`issuer`, `jwksUri`, `jwks`, ...).
    pub fn string(&self, field: &str) -> Option<&'a str> {
        self.value.get(field).and_then(Value::as_str)
    }
    /// `issuer`.
    pub fn issuer(&self) -> Option<&'a str> {
        self.string("issuer")
    }
    /// The string entries of `audiences`.
    pub fn audiences(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.value
            .get("audiences")
            .into_iter()
            .flat_map(list_strings)
            .map(|(_, a)| a)
    }
    /// `spec.jwtRules[i]` (plus `.field` when given).
    pub fn path(&self, field: &str) -> String {
        if field.is_empty() {
            format!("spec.jwtRules[{}]", self.index)
        } else {
            format!("spec.jwtRules[{}].{field}", self.index)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jwt_rules_with_paths() {
        let spec = json!({"jwtRules": [{"issuer": "https://a", "audiences": ["x", 1, "y"]}, 3]});
        let ra = RequestAuthentication::of(&spec);
        let rules: Vec<JwtRule<'_>> = ra.jwt_rules().collect();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].issuer(), Some("https://a"));
        assert_eq!(rules[0].audiences().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(rules[0].path("issuer"), "spec.jwtRules[0].issuer");
        assert!(!rules[1].is_object());
        assert!(ra.selector.is_empty() && !ra.has_target_refs());
    }
}
