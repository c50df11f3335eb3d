//! One constraint of a rule (a `from` source field, a `to` operation field or a `when`
//! condition) compiled for matching: which request attribute it reads, its `values` and
//! `notValues`, and whether it exists only for HTTP.
//!
//! The mapping from keys to attributes and value forms follows istio/istio
//! `pilot/pkg/security/authz/model/{model.go,generator.go}`: every identity field compares
//! against the peer certificate's URI SAN (`spiffe://…`) with the string forms Istio emits
//! (principals: `spiffe://` + value; namespaces: the regex `.*/ns/<ns>/.*`; service accounts:
//! `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`; trust domains: the prefix `spiffe://<td>/`).
//! A field matches when one of `values` matches (or there are none) and none of `notValues`
//! does; an absent attribute (no peer identity, no header, no token) matches no value.

use super::claims::{self, lookup};
use super::ip::Cidr;
use super::path;
use super::request::{Identity, Jwt, Request};
use super::string_match::{quote_meta, StringMatcher};
use regex::Regex;

/// The request attribute a field reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attr {
    Principal,
    Namespace,
    ServiceAccount,
    TrustDomain,
    RequestPrincipal,
    /// A path into the JWT payload (`aud`, `azp`, or `request.auth.claims[...]`).
    Claim(Vec<String>),
    /// A request header, lower-cased.
    Header(String),
    Host,
    Method,
    Path,
    Port,
    SourceIp,
    RemoteIp,
    DestinationIp,
    Sni,
    /// `experimental.envoy.filters.*`: Envoy metadata the simulator does not have.
    EnvoyFilter,
}

impl Attr {
    /// HTTP-only attributes (Istio's generators fail them with "is HTTP only" on TCP).
    pub(crate) fn http_only(&self) -> bool {
        matches!(
            self,
            Attr::RequestPrincipal
                | Attr::Claim(_)
                | Attr::Header(_)
                | Attr::Host
                | Attr::Method
                | Attr::Path
        )
    }
}

/// One compiled value.
#[derive(Clone, Debug)]
pub(crate) enum Matcher {
    Str(StringMatcher),
    Template(Regex),
    Cidr(Cidr),
    Port(u16),
    /// `requestPrincipals` / `request.auth.principal`: issuer and subject matched apart.
    JwtPrincipal(StringMatcher, StringMatcher),
    /// Never matches (metadata the simulator cannot see).
    Never,
}

/// What a field reads from a request once the mTLS and JWT steps ran.
pub(crate) struct Ctx<'r> {
    pub(crate) req: &'r Request,
    /// The peer identity the sidecar sees (none for plaintext).
    pub(crate) peer: Option<&'r Identity>,
    /// The token, when a RequestAuthentication accepted it.
    pub(crate) jwt: Option<&'r Jwt>,
    /// Top-level claims the JWT filter splits on spaces.
    pub(crate) space_delimited: &'r [String],
}

/// One compiled constraint.
#[derive(Clone, Debug)]
pub(crate) struct Field {
    pub(crate) attr: Attr,
    pub(crate) values: Vec<Matcher>,
    pub(crate) not_values: Vec<Matcher>,
    /// The values as written (for messages).
    pub(crate) shown: Vec<String>,
    pub(crate) shown_not: Vec<String>,
    /// Where it is written: `spec.rules[0].from[0].source.principals`, `spec.rules[0].when[1]`.
    pub(crate) path: String,
    /// How a message names it: `source.principal`, `path`, or a `when` key as written.
    pub(crate) label: String,
}

impl Field {
    pub(crate) fn http_only(&self) -> bool {
        self.attr.http_only()
    }

    /// Whether the request satisfies this field.
    pub(crate) fn matches(&self, ctx: &Ctx<'_>) -> bool {
        let hit = |m: &Matcher| matcher_matches(&self.attr, m, ctx);
        (self.values.is_empty() || self.values.iter().any(hit)) && !self.not_values.iter().any(hit)
    }

    /// Why the field does not match: `source.principal is X, want one of [..]`.
    pub(crate) fn mismatch(&self, ctx: &Ctx<'_>) -> String {
        let hit = |m: &Matcher| matcher_matches(&self.attr, m, ctx);
        let want = if !self.values.is_empty() && !self.values.iter().any(hit) {
            format!("want one of [{}]", self.shown.join(" "))
        } else {
            format!("want none of [{}]", self.shown_not.join(" "))
        };
        let mut hint = String::new();
        if self.attr == Attr::Host {
            let host = ctx.req.http.as_ref().and_then(|h| h.host());
            if let Some((bare, port)) = host.and_then(|h| h.rsplit_once(':')) {
                // Host values compile one to one, so `shown` lines up with `values`.
                let written = self
                    .values
                    .iter()
                    .zip(&self.shown)
                    .find_map(|(m, v)| match m {
                        Matcher::Str(s) if s.matches(Some(bare), true) => Some(v),
                        _ => None,
                    });
                if let (true, Some(v)) = (port.bytes().all(|b| b.is_ascii_digit()), written) {
                    hint = format!(
                        " (Istio compares the Host with its port: list {v}:* as well as {v})"
                    );
                }
            }
        }
        format!("{} is {}, {want}{hint}", self.label, self.actual(ctx))
    }

    /// The attribute's value in this request, for messages.
    pub(crate) fn actual(&self, ctx: &Ctx<'_>) -> String {
        let peer_absent = || {
            if ctx.req.peer.is_some() {
                "absent (the connection is not mTLS, so the request carries no peer identity)"
                    .to_owned()
            } else {
                "absent (plaintext client: no peer identity)".to_owned()
            }
        };
        let jwt_absent = || {
            if ctx.req.jwt.is_some() {
                "absent (the token was not validated: no RequestAuthentication applies)".to_owned()
            } else {
                "absent (no JWT)".to_owned()
            }
        };
        let quoted = |name: &str| name.starts_with('"') || name.starts_with('\'');
        match &self.attr {
            Attr::Principal => ctx.peer.map_or_else(peer_absent, |p| p.principal().to_owned()),
            Attr::Namespace => ctx.peer.map_or_else(peer_absent, |p| p.namespace().to_owned()),
            Attr::ServiceAccount => ctx.peer.map_or_else(peer_absent, |p| {
                format!("{}/{}", p.namespace(), p.service_account())
            }),
            Attr::TrustDomain => ctx
                .peer
                .map_or_else(peer_absent, |p| p.trust_domain().to_owned()),
            Attr::RequestPrincipal => ctx.jwt.map_or_else(jwt_absent, Jwt::principal),
            Attr::Claim(path) => match ctx.jwt {
                None => jwt_absent(),
                Some(j) => {
                    let v = claims::describe(lookup(j.claims(), path));
                    if v == "absent" && path.iter().any(|p| quoted(p)) {
                        format!(
                            "absent (Istio keeps the quotes in the key: it looks for a claim named {}, quotes included)",
                            path.join("][")
                        )
                    } else {
                        v
                    }
                }
            },
            Attr::Header(name) => match ctx.req.http.as_ref().and_then(|h| h.header(name)) {
                Some(v) => v.to_owned(),
                None if quoted(name) => format!(
                    "absent (Istio keeps the quotes in the key: it looks for a header named {name}, quotes included, which no request can carry)"
                ),
                None => "absent".to_owned(),
            },
            Attr::Host => ctx
                .req
                .http
                .as_ref()
                .and_then(|h| h.host())
                .map_or_else(|| "absent (no Host)".to_owned(), str::to_owned),
            Attr::Method => ctx
                .req
                .http
                .as_ref()
                .map_or_else(String::new, |h| h.method().to_owned()),
            Attr::Path => match &ctx.req.http {
                Some(h) => match h.path() {
                    Some(p) if p != h.raw_path() => format!("{p} (normalised from {})", h.raw_path()),
                    Some(p) => p.to_owned(),
                    None => h.raw_path().to_owned(),
                },
                None => String::new(),
            },
            Attr::Port => ctx.req.port.to_string(),
            Attr::SourceIp => ip_text(ctx.req.source_ip, "source IP"),
            Attr::RemoteIp => ip_text(ctx.req.remote_ip(), "remote IP"),
            Attr::DestinationIp => ip_text(ctx.req.destination_ip, "destination IP"),
            Attr::Sni => ctx
                .req
                .sni
                .clone()
                .unwrap_or_else(|| "not given (no SNI set on the request)".to_owned()),
            Attr::EnvoyFilter => "not simulated (Envoy filter metadata)".to_owned(),
        }
    }
}

fn ip_text(ip: Option<std::net::IpAddr>, what: &str) -> String {
    ip.map_or_else(
        || format!("not given (the request sets no {what})"),
        |i| i.to_string(),
    )
}

fn matcher_matches(attr: &Attr, m: &Matcher, ctx: &Ctx<'_>) -> bool {
    let req = ctx.req;
    match (attr, m) {
        (
            Attr::Principal | Attr::Namespace | Attr::ServiceAccount | Attr::TrustDomain,
            Matcher::Str(s),
        ) => s.matches(ctx.peer.map(Identity::uri), false),
        (Attr::RequestPrincipal, Matcher::JwtPrincipal(iss, sub)) => ctx.jwt.is_some_and(|j| {
            iss.matches(Some(j.issuer()), false) && sub.matches(Some(j.subject()), false)
        }),
        (Attr::Claim(path), Matcher::Str(s)) => ctx.jwt.is_some_and(|j| {
            let split = path.len() == 1 && ctx.space_delimited.iter().any(|c| *c == path[0]);
            claims::value_matches(lookup(j.claims(), path), std::slice::from_ref(s), split)
        }),
        (Attr::Header(name), Matcher::Str(s)) => {
            s.matches(req.http.as_ref().and_then(|h| h.header(name)), false)
        }
        (Attr::Host, Matcher::Str(s)) => s.matches(req.http.as_ref().and_then(|h| h.host()), true),
        (Attr::Method, Matcher::Str(s)) => s.matches(req.http.as_ref().map(|h| h.method()), false),
        (Attr::Path, Matcher::Str(s)) => s.matches(req.http.as_ref().and_then(|h| h.path()), false),
        (Attr::Path, Matcher::Template(re)) => req
            .http
            .as_ref()
            .and_then(|h| h.path())
            .is_some_and(|p| re.is_match(p)),
        (Attr::Port, Matcher::Port(p)) => req.port == *p,
        (Attr::SourceIp, Matcher::Cidr(c)) => req.source_ip.is_some_and(|ip| c.contains(ip)),
        (Attr::RemoteIp, Matcher::Cidr(c)) => req.remote_ip().is_some_and(|ip| c.contains(ip)),
        (Attr::DestinationIp, Matcher::Cidr(c)) => {
            req.destination_ip.is_some_and(|ip| c.contains(ip))
        }
        (Attr::Sni, Matcher::Str(s)) => s.matches(Some(req.sni.as_deref().unwrap_or("")), false),
        _ => false,
    }
}

/// The mesh's trust domain and its aliases (istio/istio `pilot/pkg/security/trustdomain`).
#[derive(Clone, Debug)]
pub(crate) struct TrustDomains {
    /// The trust domain first, then the aliases.
    pub(crate) domains: Vec<String>,
}

impl TrustDomains {
    /// `ReplaceTrustDomainAliases`: a principal whose trust domain is the mesh's, an alias, or
    /// `cluster.local` stands for the same identity in every one of them; `*/ns/…` and
    /// malformed principals stay as written.
    fn principals(&self, principal: &str) -> Vec<String> {
        let parts: Vec<&str> = principal.split('/').collect();
        if parts.len() != 5 || parts[0] == "*" {
            return vec![principal.to_owned()];
        }
        let td = parts[0];
        if !(self.domains.iter().any(|d| d == td) || td == "cluster.local") {
            return vec![principal.to_owned()];
        }
        let mut out: Vec<String> = Vec::new();
        for d in &self.domains {
            let p = if suffix_match(d, td) {
                principal.to_owned()
            } else {
                format!("{d}/{}", parts[1..].join("/"))
            };
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// `ExpandTrustDomainAliases`: a value naming one of the trust domains stands for all.
    fn trust_domains(&self, value: &str) -> Vec<String> {
        if self.domains.iter().any(|d| d == value) {
            self.domains.clone()
        } else {
            vec![value.to_owned()]
        }
    }
}

/// Istio `suffixMatch`: `*x` matches a trust domain ending in `x`; otherwise equality.
fn suffix_match(a: &str, pattern: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(rest) => a.ends_with(rest),
        None => a == pattern,
    }
}

/// How to treat a value Istio cannot translate: an ALLOW rule is skipped whole (it admits
/// less), in DENY, AUDIT and CUSTOM rules the value is dropped (they match more); istio/istio
/// `model.go`, `rule.checkError`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnError {
    SkipRule,
    DropValue,
}

/// Compiles fields of one policy.
pub(crate) struct FieldCompiler<'a> {
    pub(crate) trust: &'a TrustDomains,
    /// The policy's namespace (default namespace of `serviceAccounts` entries).
    pub(crate) namespace: &'a str,
    pub(crate) on_error: OnError,
    /// Values the simulator cannot evaluate (for notes).
    pub(crate) unsupported: Vec<String>,
}

/// The attribute a `when` key reads, or why Istio rejects the rule (istio/istio
/// `model.New`: an unknown key skips the rule).
pub(crate) fn when_attr(key: &str) -> Result<Attr, String> {
    use crate::model::authorization_policy::WhenKey;
    Ok(match WhenKey::parse(key) {
        WhenKey::DestinationIp => Attr::DestinationIp,
        WhenKey::DestinationPort => Attr::Port,
        WhenKey::ConnectionSni => Attr::Sni,
        WhenKey::EnvoyFilter(_) => Attr::EnvoyFilter,
        WhenKey::SourceIp => Attr::SourceIp,
        WhenKey::RemoteIp => Attr::RemoteIp,
        WhenKey::SourceNamespace => Attr::Namespace,
        WhenKey::SourceTrustDomain => Attr::TrustDomain,
        WhenKey::SourceServiceAccount => Attr::ServiceAccount,
        WhenKey::SourcePrincipal => Attr::Principal,
        WhenKey::RequestPrincipal => Attr::RequestPrincipal,
        WhenKey::RequestAudiences => Attr::Claim(vec!["aud".to_owned()]),
        WhenKey::RequestPresenter => Attr::Claim(vec!["azp".to_owned()]),
        WhenKey::Header(rest) => Attr::Header(claims::bracketed(rest)?.to_ascii_lowercase()),
        WhenKey::Claims(rest) => Attr::Claim(claims::parse_claim_key(rest)?),
        WhenKey::Unknown(_) => return Err(format!("unknown attribute {key}")),
    })
}

impl FieldCompiler<'_> {
    /// Compile one field; `Ok(None)` when nothing is left to match (no values, or every value
    /// dropped); `Err` when the rule must be skipped.
    pub(crate) fn field(
        &mut self,
        attr: Attr,
        values: &[&str],
        not_values: &[&str],
        path: String,
        label: String,
    ) -> Result<Option<Field>, String> {
        if values.is_empty() && not_values.is_empty() {
            return Ok(None);
        }
        let v = self.values(&attr, values, &path)?;
        let n = self.values(&attr, not_values, &path)?;
        if v.is_empty() && n.is_empty() {
            return Ok(None);
        }
        if attr == Attr::EnvoyFilter {
            self.unsupported.push(format!(
                "{path}: experimental.envoy.filters.* reads Envoy metadata the simulator does not have; it is taken as not matching"
            ));
        }
        Ok(Some(Field {
            attr,
            values: v,
            not_values: n,
            shown: values.iter().map(|s| (*s).to_owned()).collect(),
            shown_not: not_values.iter().map(|s| (*s).to_owned()).collect(),
            path,
            label,
        }))
    }

    fn values(&mut self, attr: &Attr, values: &[&str], path: &str) -> Result<Vec<Matcher>, String> {
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            match self.value(attr, v) {
                Ok(ms) => out.extend(ms),
                Err(e) if self.on_error == OnError::DropValue => {
                    self.unsupported
                        .push(format!("{path}: {e}; Istio drops this value from the rule"));
                }
                Err(e) => return Err(format!("{path}: {e}")),
            }
        }
        Ok(out)
    }

    fn value(&self, attr: &Attr, v: &str) -> Result<Vec<Matcher>, String> {
        let regex = |r: String| {
            StringMatcher::regex(&r)
                .map(Matcher::Str)
                .ok_or_else(|| format!("{v} does not make a valid regular expression"))
        };
        Ok(match attr {
            Attr::Principal => self
                .trust
                .principals(v)
                .iter()
                .map(|p| Matcher::Str(StringMatcher::with_prefix(p, "spiffe://")))
                .collect(),
            Attr::Namespace => vec![if v.contains('*') {
                let parts: Vec<String> = v.split('*').map(quote_meta).collect();
                regex(format!(".*/ns/{}/.*", parts.join(".*")))?
            } else {
                Matcher::Str(StringMatcher::Contains(format!("/ns/{v}/")))
            }],
            Attr::ServiceAccount => {
                let (ns, sa) = v.split_once('/').unwrap_or((self.namespace, v));
                vec![regex(format!(
                    "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
                    quote_meta(ns),
                    quote_meta(sa)
                ))?]
            }
            Attr::TrustDomain => {
                let mut out = Vec::new();
                for td in self.trust.trust_domains(v) {
                    out.push(if td == "*" {
                        Matcher::Str(StringMatcher::Prefix("spiffe://".to_owned()))
                    } else if let Some((a, b)) = td.split_once('*') {
                        regex(format!(
                            "spiffe://{}[^/]*{}/.*",
                            quote_meta(a),
                            quote_meta(b)
                        ))?
                    } else {
                        Matcher::Str(StringMatcher::Prefix(format!("spiffe://{td}/")))
                    });
                }
                out
            }
            Attr::RequestPrincipal => vec![request_principal(v)],
            Attr::Claim(_) | Attr::Sni => vec![Matcher::Str(StringMatcher::istio(v))],
            Attr::Header(_) | Attr::Host | Attr::Method => {
                vec![Matcher::Str(StringMatcher::header(v))]
            }
            Attr::Path if path::is_template(v) => vec![Matcher::Template(path::template(v)?)],
            Attr::Path => vec![Matcher::Str(StringMatcher::istio(v))],
            Attr::Port => vec![Matcher::Port(
                v.parse::<u16>()
                    .map_err(|_| format!("invalid port {v}: must be 0-65535"))?,
            )],
            Attr::SourceIp | Attr::RemoteIp | Attr::DestinationIp => {
                vec![Matcher::Cidr(Cidr::parse(v)?)]
            }
            Attr::EnvoyFilter => vec![Matcher::Never],
        })
    }
}

/// Istio `requestPrincipalGenerator`: split at the last `/` (issuers are URLs); `*` parts match
/// any non-empty value.
fn request_principal(v: &str) -> Matcher {
    let any = || StringMatcher::NonEmpty;
    let (iss, sub, found) = match v.rsplit_once('/') {
        Some((i, s)) => (i, s, true),
        None => (v, "", false),
    };
    let (mi, ms) = if v == "*" {
        (any(), any())
    } else if let Some(rest) = v.strip_prefix('*') {
        if found {
            let mi = if iss == "*" {
                any()
            } else {
                StringMatcher::Suffix(iss.strip_prefix('*').unwrap_or(iss).to_owned())
            };
            (mi, StringMatcher::Exact(sub.to_owned()))
        } else {
            (any(), StringMatcher::Suffix(rest.to_owned()))
        }
    } else if let Some(rest) = v.strip_suffix('*') {
        if found {
            let ms = if sub == "*" {
                any()
            } else {
                StringMatcher::Prefix(sub.strip_suffix('*').unwrap_or(sub).to_owned())
            };
            (StringMatcher::Exact(iss.to_owned()), ms)
        } else {
            (StringMatcher::Prefix(rest.to_owned()), any())
        }
    } else {
        (
            StringMatcher::Exact(iss.to_owned()),
            StringMatcher::Exact(sub.to_owned()),
        )
    };
    Matcher::JwtPrincipal(mi, ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::request::Http;

    fn compiler(trust: &TrustDomains) -> FieldCompiler<'_> {
        FieldCompiler {
            trust,
            namespace: "prod",
            on_error: OnError::SkipRule,
            unsupported: Vec::new(),
        }
    }

    fn td() -> TrustDomains {
        TrustDomains {
            domains: vec!["cluster.local".to_owned()],
        }
    }

    /// Whether `values` (or, with `not`, `notValues`) of `attr` match the request.
    fn check(attr: Attr, values: &[&str], not: bool, req: &Request, jwt: bool) -> bool {
        let trust = td();
        let mut c = compiler(&trust);
        let (v, n): (&[&str], &[&str]) = if not { (&[], values) } else { (values, &[]) };
        let f = c
            .field(attr, v, n, "p".into(), "l".into())
            .expect("compiles")
            .expect("field");
        let ctx = Ctx {
            req,
            peer: req.peer(),
            jwt: if jwt { req.jwt() } else { None },
            space_delimited: &[],
        };
        f.matches(&ctx)
    }

    fn from(ns: &str, sa: &str) -> Request {
        Request::tcp(Some(Identity::new("cluster.local", ns, sa)), 80)
    }

    #[test]
    fn identity_fields() {
        let web = from("prod", "web");
        let plain = Request::tcp(None, 80);
        // (attr, values, request, matches)
        let cases: Vec<(Attr, &[&str], &Request, bool)> = vec![
            (
                Attr::Principal,
                &["cluster.local/ns/prod/sa/web"],
                &web,
                true,
            ),
            (Attr::Principal, &["cluster.local/ns/prod/*"], &web, true),
            (Attr::Principal, &["*/sa/web"], &web, true),
            (Attr::Principal, &["*"], &web, true),
            (Attr::Principal, &["*"], &plain, false),
            (
                Attr::Principal,
                &["cluster.local/ns/prod/sa/api"],
                &web,
                false,
            ),
            (Attr::Namespace, &["prod"], &web, true),
            (Attr::Namespace, &["pro"], &web, false),
            (Attr::Namespace, &["pr*"], &web, true),
            (Attr::Namespace, &["*"], &web, true),
            (Attr::Namespace, &["*"], &plain, false),
            (Attr::ServiceAccount, &["web"], &web, true),
            (Attr::ServiceAccount, &["prod/web"], &web, true),
            (Attr::ServiceAccount, &["other/web"], &web, false),
            (Attr::ServiceAccount, &["we"], &web, false),
            (Attr::TrustDomain, &["cluster.local"], &web, true),
            (Attr::TrustDomain, &["cluster.*"], &web, true),
            (Attr::TrustDomain, &["example.org"], &web, false),
            (Attr::TrustDomain, &["*"], &web, true),
        ];
        for (attr, values, req, want) in cases {
            assert_eq!(
                check(attr.clone(), values, false, req, false),
                want,
                "{attr:?} {values:?}"
            );
        }
        // notPrincipals: ["*"] catches exactly the callers without an identity.
        assert!(check(Attr::Principal, &["*"], true, &plain, false));
        assert!(!check(Attr::Principal, &["*"], true, &web, false));
    }

    #[test]
    fn trust_domain_aliases_widen_principals() {
        let trust = TrustDomains {
            domains: vec!["new.td".to_owned(), "old.td".to_owned()],
        };
        assert_eq!(
            trust.principals("cluster.local/ns/a/sa/b"),
            ["new.td/ns/a/sa/b", "old.td/ns/a/sa/b"]
        );
        assert_eq!(
            trust.principals("old.td/ns/a/sa/b"),
            ["new.td/ns/a/sa/b", "old.td/ns/a/sa/b"]
        );
        assert_eq!(
            trust.principals("other.td/ns/a/sa/b"),
            ["other.td/ns/a/sa/b"]
        );
        assert_eq!(trust.principals("*/ns/a/sa/b"), ["*/ns/a/sa/b"]);
        assert_eq!(trust.trust_domains("old.td"), ["new.td", "old.td"]);
    }

    #[test]
    fn request_principals() {
        let req = Request::http(None, 80, Http::new("GET", "/"))
            .with_jwt(Jwt::new("https://auth.example.com", "alice"));
        // (value, matches)
        let cases: &[(&str, bool)] = &[
            ("https://auth.example.com/alice", true),
            ("https://auth.example.com/*", true),
            ("https://auth.example.com/al*", true),
            ("https://auth.example.com/bob", false),
            ("*/alice", true),
            ("*.example.com/alice", true),
            ("*", true),
            ("*ice", true),
            // The split is at the last `/`: issuer `https:/`, subject prefix `auth.`.
            ("https://auth.*", false),
            ("https://other.example.com/*", false),
        ];
        for (v, want) in cases {
            assert_eq!(
                check(Attr::RequestPrincipal, &[v], false, &req, true),
                *want,
                "{v}"
            );
        }
        // A token no RequestAuthentication accepted gives no request principal.
        assert!(!check(Attr::RequestPrincipal, &["*"], false, &req, false));
        assert!(check(Attr::RequestPrincipal, &["*"], true, &req, false));
    }

    #[test]
    fn http_and_ip_fields() {
        let req = Request::http(
            None,
            8080,
            Http::new("GET", "/api/./v1/users?x=1")
                .with_host("API.example.com:8080")
                .with_header("X-Api-Version", "v2"),
        )
        .with_source_ip("10.1.2.3".parse().expect("ip"));
        let cases: Vec<(Attr, &[&str], bool)> = vec![
            (Attr::Path, &["/api/v1/users"], true),
            (Attr::Path, &["/api/*"], true),
            (Attr::Path, &["/api/{*}/users"], true),
            (Attr::Path, &["/api/{**}"], true),
            (Attr::Path, &["/api/v1/users?x=1"], false),
            (Attr::Method, &["GET"], true),
            (Attr::Method, &["G*"], true),
            (Attr::Method, &["POST"], false),
            (Attr::Host, &["api.example.com:8080"], true),
            (Attr::Host, &["api.example.com"], false),
            (Attr::Host, &["api.example.com:*"], true),
            (Attr::Header("x-api-version".into()), &["v1", "v2"], true),
            (Attr::Header("\"x-api-version\"".into()), &["v2"], false),
            (Attr::Header("x-missing".into()), &["*"], false),
            (Attr::Port, &["8080"], true),
            (Attr::Port, &["80"], false),
            (Attr::SourceIp, &["10.0.0.0/8"], true),
            (Attr::SourceIp, &["10.1.2.4"], false),
            (Attr::RemoteIp, &["10.1.2.3"], true),
            (Attr::DestinationIp, &["0.0.0.0/0"], false),
            (Attr::Sni, &["*"], false),
            (Attr::EnvoyFilter, &["x"], false),
        ];
        for (attr, values, want) in cases {
            assert_eq!(
                check(attr.clone(), values, false, &req, false),
                want,
                "{attr:?} {values:?}"
            );
        }
        let trust = td();
        let mut c = compiler(&trust);
        let f = c
            .field(
                Attr::Host,
                &["api.example.com"],
                &[],
                "p".into(),
                "to[0] host".into(),
            )
            .expect("ok")
            .expect("field");
        let ctx = Ctx {
            req: &req,
            peer: None,
            jwt: None,
            space_delimited: &[],
        };
        assert_eq!(
            f.mismatch(&ctx),
            "to[0] host is API.example.com:8080, want one of [api.example.com] (Istio compares the Host with its port: list api.example.com:* as well as api.example.com)"
        );
        // notValues on an absent header match.
        assert!(check(
            Attr::Header("x-missing".into()),
            &["*"],
            true,
            &req,
            false
        ));
    }

    #[test]
    fn when_keys() {
        assert_eq!(
            when_attr("request.headers[X-Api]").expect("header"),
            Attr::Header("x-api".into())
        );
        assert_eq!(
            when_attr("request.headers[\"x-api\"]").expect("quoted"),
            Attr::Header("\"x-api\"".into())
        );
        assert_eq!(
            when_attr("request.auth.claims[a][b]").expect("claims"),
            Attr::Claim(vec!["a".into(), "b".into()])
        );
        assert!(when_attr("request.headers").is_err());
        assert!(when_attr("destination.namespace").is_err());
        assert!(when_attr("source.ip").is_ok());
    }

    #[test]
    fn invalid_values_skip_allow_rules_and_drop_from_deny() {
        let trust = td();
        let mut allow = compiler(&trust);
        assert!(allow
            .field(
                Attr::SourceIp,
                &["10.0.0.0/40"],
                &[],
                "p".into(),
                "l".into()
            )
            .is_err());
        let mut deny = FieldCompiler {
            on_error: OnError::DropValue,
            ..compiler(&trust)
        };
        let f = deny
            .field(Attr::Port, &["x", "80"], &[], "p".into(), "l".into())
            .expect("ok")
            .expect("field");
        assert_eq!(f.values.len(), 1);
        assert!(deny
            .field(Attr::Port, &["x"], &[], "p".into(), "l".into())
            .expect("ok")
            .is_none());
        assert_eq!(deny.unsupported.len(), 2);
    }
}
