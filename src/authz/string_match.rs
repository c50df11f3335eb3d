//! String matching as Istio builds it for Envoy (istio/istio
//! `pilot/pkg/security/authz/matcher/{string,header}.go`), compiled once per policy value.
//!
//! One AuthorizationPolicy value such as `"/api/*"` becomes one of Envoy's `StringMatcher`s:
//!
//! | value       | `StringMatcher` (principals, paths, claims, SNI) | `HeaderMatcher` (methods, headers, hosts) |
//! |-------------|--------------------------------------------------|-------------------------------------------|
//! | `*`         | regex `.+`: any non-empty value                   | `present_match`: the header is present    |
//! | `*suffix`   | suffix                                            | suffix                                    |
//! | `prefix*`   | prefix                                            | prefix                                    |
//! | other       | exact                                             | exact                                     |
//!
//! The tests run in that order, so `*a*` is the suffix `a*` (a literal `*`), as in Istio.
//! Hosts compare ASCII case-insensitively (Istio `HostMatcher`); everything else is
//! case-sensitive. Principals get the `spiffe://` prefix Istio inserts
//! (`StringMatcherWithPrefix`): `*` stays `.+` without it, `*x` becomes the regex
//! `spiffe://.*x`.

use regex::Regex;

/// One compiled string matcher.
#[derive(Clone, Debug)]
pub(crate) enum StringMatcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// `prefix.*suffix` (the regex Istio builds for `*x` with a prefix): both, not overlapping.
    PrefixSuffix(String, String),
    /// `.*needle.*`.
    Contains(String),
    /// `.+`: present and non-empty.
    NonEmpty,
    /// Header `present_match`: present, possibly empty.
    Present,
    /// A full-match regular expression (RE2 semantics as Envoy's `safe_regex`).
    Regex(Regex),
}

impl StringMatcher {
    /// Istio `matcher.StringMatcher(v)`.
    pub fn istio(v: &str) -> StringMatcher {
        StringMatcher::with_prefix(v, "")
    }

    /// Istio `matcher.StringMatcherWithPrefix(v, prefix)`.
    pub(crate) fn with_prefix(v: &str, prefix: &str) -> StringMatcher {
        if v == "*" {
            StringMatcher::NonEmpty
        } else if let Some(rest) = v.strip_prefix('*') {
            if prefix.is_empty() {
                StringMatcher::Suffix(rest.to_owned())
            } else {
                StringMatcher::PrefixSuffix(prefix.to_owned(), rest.to_owned())
            }
        } else if let Some(rest) = v.strip_suffix('*') {
            StringMatcher::Prefix(format!("{prefix}{rest}"))
        } else {
            StringMatcher::Exact(format!("{prefix}{v}"))
        }
    }

    /// Istio `matcher.HeaderMatcher(k, v)` (methods and `request.headers[...]`) and
    /// `HostMatcher` (the same forms; the case is handled by the caller's `ignore_case`).
    pub fn header(v: &str) -> StringMatcher {
        if v == "*" {
            StringMatcher::Present
        } else if let Some(rest) = v.strip_prefix('*') {
            StringMatcher::Suffix(rest.to_owned())
        } else if let Some(rest) = v.strip_suffix('*') {
            StringMatcher::Prefix(rest.to_owned())
        } else {
            StringMatcher::Exact(v.to_owned())
        }
    }

    /// A full-match regex; `None` when it does not compile (Envoy would reject it).
    pub(crate) fn regex(pattern: &str) -> Option<StringMatcher> {
        Regex::new(&format!("^(?:{pattern})$"))
            .ok()
            .map(StringMatcher::Regex)
    }

    /// Whether an attribute value matches (`None`: the attribute is absent, which matches
    /// nothing, as in Envoy).
    pub fn matches(&self, actual: Option<&str>, ignore_case: bool) -> bool {
        let Some(s) = actual else {
            return false;
        };
        match self {
            StringMatcher::Exact(e) => eq(s.as_bytes(), e.as_bytes(), ignore_case),
            StringMatcher::Prefix(p) => {
                let (s, p) = (s.as_bytes(), p.as_bytes());
                s.len() >= p.len() && eq(&s[..p.len()], p, ignore_case)
            }
            StringMatcher::Suffix(x) => {
                let (s, x) = (s.as_bytes(), x.as_bytes());
                s.len() >= x.len() && eq(&s[s.len() - x.len()..], x, ignore_case)
            }
            StringMatcher::PrefixSuffix(p, x) => {
                s.len() >= p.len() + x.len() && s.starts_with(p.as_str()) && s.ends_with(x.as_str())
            }
            StringMatcher::Contains(n) => s.contains(n.as_str()),
            StringMatcher::NonEmpty => !s.is_empty() && !s.contains('\n'),
            StringMatcher::Present => true,
            StringMatcher::Regex(r) => r.is_match(s),
        }
    }
}

fn eq(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// `regexp.QuoteMeta`: escape every regex metacharacter.
pub(crate) fn quote_meta(s: &str) -> String {
    regex::escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_string_forms() {
        // (value, actual, matches)
        let cases: &[(&str, &str, bool)] = &[
            ("/api/data", "/api/data", true),
            ("/api/data", "/api/data/", false),
            ("/api/*", "/api/", true),
            ("/api/*", "/api/x/y", true),
            ("/api/*", "/api", false),
            ("/admin*", "/administrator", true),
            ("*.json", "/a/b.json", true),
            ("*.json", "/a/b.jsonx", false),
            ("*", "x", true),
            ("*", "", false),
            ("*a*", "xa*", true),
            ("*a*", "xab", false),
        ];
        for (v, actual, want) in cases {
            let m = StringMatcher::istio(v);
            assert_eq!(m.matches(Some(actual), false), *want, "{v} vs {actual}");
            assert!(!m.matches(None, false), "absent never matches {v}");
        }
    }

    #[test]
    fn header_forms_and_presence() {
        assert!(StringMatcher::header("*").matches(Some(""), false));
        assert!(!StringMatcher::header("*").matches(None, false));
        assert!(StringMatcher::header("Mozilla/*").matches(Some("Mozilla/5.0"), false));
        assert!(StringMatcher::header("*-beta").matches(Some("v2-beta"), false));
        assert!(!StringMatcher::header("GET").matches(Some("get"), false));
        // Hosts: case-insensitive in every form.
        assert!(StringMatcher::header("Example.COM").matches(Some("example.com"), true));
        assert!(StringMatcher::header("*.example.com").matches(Some("API.Example.com"), true));
        assert!(StringMatcher::header("api.*").matches(Some("API.internal"), true));
        assert!(!StringMatcher::header("example.com").matches(Some("example.com:8080"), true));
    }

    #[test]
    fn principal_prefix_forms() {
        let p = |v: &str| StringMatcher::with_prefix(v, "spiffe://");
        let uri = "spiffe://cluster.local/ns/prod/sa/web";
        assert!(p("cluster.local/ns/prod/sa/web").matches(Some(uri), false));
        assert!(p("cluster.local/ns/prod/*").matches(Some(uri), false));
        assert!(p("*/sa/web").matches(Some(uri), false));
        assert!(!p("*/sa/api").matches(Some(uri), false));
        assert!(p("*").matches(Some(uri), false));
        assert!(!p("cluster.local/ns/prod/sa/we").matches(Some(uri), false));
        // The prefix and the suffix may not overlap: `spiffe://.*x` needs both in full.
        assert!(!StringMatcher::PrefixSuffix("ab".into(), "bc".into()).matches(Some("abc"), false));
    }

    #[test]
    fn regex_is_full_match() {
        let r = StringMatcher::regex("a.c").expect("regex");
        assert!(r.matches(Some("abc"), false));
        assert!(!r.matches(Some("xabc"), false));
        assert!(StringMatcher::regex("(").is_none());
    }
}
