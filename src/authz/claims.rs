//! JWT claims as Istio matches them: `request.auth.claims[a][b]` names a path into the token's
//! payload (istio/istio `pilot/pkg/security/authz/model/util.go`,
//! `extractNameInNestedBrackets`), and the value matches through Envoy metadata
//! (`matcher.MetadataListValueMatcher` with the extended-JWT form): a string claim matches when
//! it matches one of the values; a list claim when one of its string elements does; numbers,
//! booleans and objects never match. `request.auth.audiences` is the claim `aud`,
//! `request.auth.presenter` the claim `azp`.
//!
//! Envoy's JWT filter also turns the top-level claims `scope` and `permission` (plus a rule's
//! `spaceDelimitedClaims`) from a space-separated string into a list before authorization
//! (istio/istio `pilot/pkg/security/authn/policy_applier.go`, `buildSpaceDelimitedClaims`).

use super::string_match::StringMatcher;
use serde_json::{Map, Value};

/// The claim path of `request.auth.claims[...]` (`rest` is what follows the prefix):
/// `[a][b]` → `a`, `b`; `[a.b]` → `a.b`; anything else must be one bracketed name.
pub(crate) fn parse_claim_key(rest: &str) -> Result<Vec<String>, String> {
    let b = rest.as_bytes();
    let end_bracket = |begin: usize| -> Option<usize> {
        if b.get(begin) != Some(&b'[') {
            return None;
        }
        for (i, c) in b.iter().enumerate().skip(begin + 1) {
            match c {
                b'[' => return None,
                b']' => return Some(i),
                _ => {}
            }
        }
        None
    };
    let mut claims = Vec::new();
    let mut begin = 0;
    while begin < rest.len() {
        match end_bracket(begin) {
            Some(end) => {
                claims.push(rest[begin + 1..end].to_owned());
                begin = end + 1;
            }
            None => return bracketed(rest).map(|n| vec![n.to_owned()]),
        }
    }
    Ok(claims)
}

/// Istio `extractNameInBrackets`: `[name]` → `name`.
pub(crate) fn bracketed(s: &str) -> Result<&str, String> {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(|| format!("expecting format [<NAME>], but found {s}"))
}

/// The value at `path` in the payload (`None` when a step is missing or not an object).
pub fn lookup<'v>(claims: &'v Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(claims.get(first)?, |v, k| v.as_object()?.get(k))
}

/// Whether a claim value matches one of `matchers`. `space_delimited`: the claim is one the
/// JWT filter splits on spaces (only for a string value).
pub(crate) fn value_matches(
    value: Option<&Value>,
    matchers: &[StringMatcher],
    space_delimited: bool,
) -> bool {
    let any = |s: &str| matchers.iter().any(|m| m.matches(Some(s), false));
    match value {
        Some(Value::String(s)) if space_delimited => {
            s.split(' ').filter(|p| !p.is_empty()).any(any)
        }
        Some(Value::String(s)) => any(s),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(any),
        _ => false,
    }
}

/// A claim value for messages: `admin`, `[a b]`, `absent`, or its JSON.
pub fn describe(value: Option<&Value>) -> String {
    match value {
        None => "absent".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => format!(
            "[{}]",
            items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claim_keys() {
        let ok = |s: &str| parse_claim_key(s).expect(s);
        assert_eq!(ok("[role]"), ["role"]);
        assert_eq!(ok("[realm_access][roles]"), ["realm_access", "roles"]);
        assert_eq!(ok("[a.b]"), ["a.b"]);
        assert_eq!(
            ok("[\"role\"]"),
            ["\"role\""],
            "quotes are kept, as Istio does"
        );
        assert_eq!(ok("[a[b]]"), ["a[b]"], "not nested: one bracketed name");
        assert!(ok("").is_empty());
        assert!(parse_claim_key("role").is_err());
        assert!(parse_claim_key("[a]x").is_err());
    }

    #[test]
    fn nested_string_and_list_claims() {
        let claims = json!({
            "role": "admin",
            "groups": ["dev", "ops", 3],
            "realm_access": {"roles": ["reader", "writer"], "level": 3},
            "scope": "read write",
            "n": 1
        });
        let claims = claims.as_object().expect("object");
        let m = |vs: &[&str]| {
            vs.iter()
                .map(|v| StringMatcher::istio(v))
                .collect::<Vec<_>>()
        };
        let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // (path, values, space-delimited, matches)
        let cases: &[(&[&str], &[&str], bool, bool)] = &[
            (&["role"], &["admin", "user"], false, true),
            (&["role"], &["adm*"], false, true),
            (&["role"], &["user"], false, false),
            (&["groups"], &["ops"], false, true),
            (&["groups"], &["3"], false, false),
            (&["realm_access", "roles"], &["writer"], false, true),
            (&["realm_access", "roles"], &["admin"], false, false),
            (&["realm_access", "level"], &["3"], false, false),
            (&["realm_access", "missing"], &["*"], false, false),
            (&["role", "x"], &["*"], false, false),
            (&["scope"], &["write"], true, true),
            (&["scope"], &["write"], false, false),
            (&["n"], &["1"], false, false),
            (&["missing"], &["*"], false, false),
        ];
        for (p, vs, split, want) in cases {
            let v = lookup(claims, &path(p));
            assert_eq!(value_matches(v, &m(vs), *split), *want, "{p:?} {vs:?}");
        }
        assert_eq!(describe(lookup(claims, &path(&["groups"]))), "[dev ops 3]");
        assert_eq!(describe(None), "absent");
    }
}
