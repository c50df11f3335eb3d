//! Request paths as the sidecar sees them, and the two ways a policy path matches one.
//!
//! **Normalisation.** Istio's default path normalisation is `BASE`: pilot sets Envoy's
//! `normalize_path: true` and leaves `merge_slashes` off and escaped slashes unchanged
//! (istio/istio `pilot/pkg/networking/core/listener_builder.go`, "Setup normalization";
//! Istio's "Authorization Policy Normalization" reference). For a path that means, once and
//! in this order:
//!
//! 1. a path containing `%00` is rejected with 400;
//! 2. the query (`?…`) and fragment (`#…`) are not part of what `paths` compare against (the
//!    RBAC path matcher strips them; the backend still sees the query);
//! 3. `\` becomes `/`;
//! 4. percent-encoded unreserved characters (`%41`→`A`, `%2e`→`.`, `%2d`, `%5f`, `%7e`, digits,
//!    letters; hex digits in either case) are decoded; `%2F` and `%5C` stay encoded (decoding
//!    them needs `DECODE_AND_MERGE_SLASHES`);
//! 5. `.` and `..` segments are resolved per RFC 3986 §5.2.4 (`/a/../b` → `/b`).
//!
//! `//` is kept (merging needs `MERGE_SLASHES`).
//!
//! **URI templates.** A policy path containing `{*}` or `{**}` (istio/istio
//! `pkg/config/security.ContainsPathTemplate`) becomes Envoy's `uri_template` matcher:
//! Istio rewrites `{*}` to `*` and `{**}` to `**` (`matcher/template.go`), and Envoy
//! (`source/extensions/path/uri_template_lib/uri_template_internal.cc`) turns the pattern into
//! a full-match regex over the path without its query: `*` is one non-empty path segment of
//! RFC 3986 `pchar`s, `**` any run of them and `/` (so `/a/{**}` matches `/a/` and `/a/b/c` but
//! not `/a`), literals match exactly, and a trailing operator may carry a suffix
//! (`/{**}.css`). `{**}` must be the last operator.

use regex::Regex;

/// What RFC 3986 calls a `pchar` without `*` (Envoy's `kLiteral`), as a regex class body.
const PCHAR: &str = r"\-a-zA-Z0-9._\~%!$\&'()+,;:@=";

/// A normalised request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NormalizedPath {
    /// What `paths` compare against: normalised, without query and fragment.
    pub(crate) path: String,
    /// The query, if any (kept for display).
    pub(crate) query: Option<String>,
}

/// Normalise a request path the way `BASE` does; `Err` is the 400 reason.
pub(crate) fn normalize_base(raw: &str) -> Result<NormalizedPath, String> {
    if raw.contains("%00") {
        return Err("the path contains %00, which Envoy rejects with 400".to_owned());
    }
    let (before_fragment, _) = raw.split_once('#').unwrap_or((raw, ""));
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (before_fragment, None),
    };
    let slashed = path.replace('\\', "/");
    let decoded = decode_unreserved(&slashed);
    Ok(NormalizedPath {
        path: remove_dot_segments(&decoded),
        query,
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode `%HH` where the byte is an unreserved character; keep every other escape verbatim.
fn decode_unreserved(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                let c = h * 16 + l;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    out.push(c);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    // Only ASCII bytes were substituted for ASCII escapes, so the result is valid UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// RFC 3986 §5.2.4 `remove_dot_segments`.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    let pop = |out: &mut String| {
        let cut = out.rfind('/').unwrap_or(0);
        out.truncate(cut);
    };
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            pop(&mut out);
        } else if input == "/.." {
            input = "/";
            pop(&mut out);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    out
}

/// Whether a policy path is a URI template (`{*}` or `{**}` anywhere).
pub(crate) fn is_template(value: &str) -> bool {
    value.contains("{*}") || value.contains("{**}")
}

enum Segment {
    One,
    Any,
    Literal(String),
}

/// Compile a policy path template into Envoy's full-match regex; `Err` when Envoy would
/// reject the pattern.
pub fn template(value: &str) -> Result<Regex, String> {
    let pattern = value.replace("{**}", "**").replace("{*}", "*");
    if !pattern.starts_with('/') || !pattern.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "invalid path template {value}: it must start with / and hold no spaces"
        ));
    }
    let literal_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b))
    };
    let mut rest = &pattern[1..];
    let mut segments: Vec<Segment> = Vec::new();
    let mut suffix = String::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("**") {
            segments.push(Segment::Any);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('*') {
            segments.push(Segment::One);
            rest = r;
        } else {
            let end = rest.find('/').unwrap_or(rest.len());
            let lit = &rest[..end];
            if !literal_ok(lit) {
                return Err(format!(
                    "invalid path template {value}: segment {lit} is neither {{*}}, {{**}} nor a plain literal"
                ));
            }
            segments.push(Segment::Literal(lit.to_owned()));
            rest = &rest[end..];
        }
        if rest.is_empty() {
            break;
        }
        if rest == "/" {
            segments.push(Segment::Literal(String::new()));
            break;
        }
        if let Some(r) = rest.strip_prefix('/') {
            rest = r;
        } else {
            let end = rest.find('/').unwrap_or(rest.len());
            if end != rest.len() || !literal_ok(rest) {
                return Err(format!(
                    "invalid path template {value}: an operator may be followed only by a suffix at the end"
                ));
            }
            suffix = rest.to_owned();
            break;
        }
    }
    let mut seen_any = false;
    for s in &segments {
        if matches!(s, Segment::One | Segment::Any) && seen_any {
            return Err(format!(
                "invalid path template {value}: {{**}} is not the last operator"
            ));
        }
        seen_any |= matches!(s, Segment::Any);
    }
    let parts: Vec<String> = segments
        .iter()
        .map(|s| match s {
            Segment::One => format!("[{PCHAR}]+"),
            Segment::Any => format!("[{PCHAR}/]*"),
            Segment::Literal(l) => regex::escape(l),
        })
        .collect();
    let re = format!("^/{}{}$", parts.join("/"), regex::escape(&suffix));
    Regex::new(&re).map_err(|e| format!("invalid path template {value}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_normalisation() {
        let cases: &[(&str, &str)] = &[
            ("/api/data", "/api/data"),
            ("/api/./data", "/api/data"),
            ("/api/v1/../data", "/api/data"),
            ("/a/b/../../../c", "/c"),
            ("/api/%2e%2e/admin", "/admin"),
            ("/api/%2E/data", "/api/data"),
            ("/%61%62%63", "/abc"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%5cb", "/a%5cb"),
            ("/a%20b", "/a%20b"),
            ("\\admin\\users", "/admin/users"),
            ("/a//b", "/a//b"),
            ("/api/data?x=1&y=/..", "/api/data"),
            ("/api/data#frag", "/api/data"),
            ("/api/", "/api/"),
            ("/api/.", "/api/"),
            ("/api/..", "/"),
            ("/%7Euser/%5F%2D", "/~user/_-"),
            ("/%", "/%"),
            ("/%4", "/%4"),
            ("/%zz", "/%zz"),
        ];
        for (raw, want) in cases {
            let got = normalize_base(raw).expect(raw);
            assert_eq!(got.path, *want, "{raw}");
        }
        assert_eq!(
            normalize_base("/a?b=c").expect("ok").query.as_deref(),
            Some("b=c")
        );
        assert!(normalize_base("/a%00b").is_err());
    }

    #[test]
    fn templates() {
        // (template, path, matches)
        let cases: &[(&str, &str, bool)] = &[
            ("/api/{*}/data", "/api/v1/data", true),
            ("/api/{*}/data", "/api//data", false),
            ("/api/{*}/data", "/api/v1/v2/data", false),
            ("/api/{**}", "/api/", true),
            ("/api/{**}", "/api/a/b/c", true),
            ("/api/{**}", "/api", false),
            ("/{**}", "/", true),
            ("/{**}/data", "/a/b/data", true),
            ("/{**}/data", "/a/b/datum", false),
            ("/static/{**}.css", "/static/a/b.css", true),
            ("/static/{*}.css", "/static/a/b.css", false),
            ("/static/{*}.css", "/static/b.css", true),
            ("/users/{*}/", "/users/u1/", true),
            ("/users/{*}/", "/users/u1", false),
            ("/a/{*}", "/a/x*y", false),
        ];
        for (t, p, want) in cases {
            let re = template(t).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(re.is_match(p), *want, "{t} vs {p}");
        }
        assert!(is_template("/a/{*}") && is_template("/{**}") && !is_template("/a/*"));
        for bad in ["/{**}/{*}", "/a/{x}", "/a b/{*}", "/{*}x/y"] {
            assert!(template(bad).is_err(), "{bad}");
        }
    }
}
