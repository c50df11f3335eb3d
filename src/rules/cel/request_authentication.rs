//! CEL forms of the RequestAuthentication rules ([`crate::rules::request_authentication`]).

use super::{site, Cel, CelForm, Coverage, NotInCel, On};
use crate::rules::request_authentication as ra;

/// For every `jwtRules[k]` entry `j`: the site `(spec.jwtRules[k].<field>, message, fix)` where
/// `cond` holds.
fn each_jwt_rule(field: &str, cond: &str, message: &str, fix: &str) -> String {
    format!(
        "$o.?spec.?jwtRules.orValue([]).transformList(k, j, {cond}, {})",
        site(
            &format!("'spec.jwtRules[' + string(k) + '].{field}'"),
            message,
            fix
        )
    )
}

fn form(sites: String) -> Cel {
    Cel {
        variables: Vec::new(),
        sites,
        weakening: None,
    }
}

pub(crate) static MISSING_ISSUER: CelForm = CelForm {
    rule: &ra::MISSING_ISSUER,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        form(each_jwt_rule(
            "issuer",
            "j.?issuer.orValue('') == ''",
            "'issuer must be set: a JWT rule without an issuer matches no token (Istio rejects it)'",
            "'set issuer to the token\\'s iss claim, e.g. \"https://issuer.example.com\"'",
        ))
    },
};

/// `jwks_scheme`: the URI `u` has a scheme before `://`, followed by something.
const SCHEME_END: &str = "u.indexOf('://')";

pub(crate) static INSECURE_JWKS_URI: CelForm = CelForm {
    rule: &ra::INSECURE_JWKS_URI,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        form(format!(
            "$o.?spec.?jwtRules.orValue([]).transformList(k, j, j.?jwksUri.hasValue(), [j.jwksUri].filter(u, {SCHEME_END} >= 0 && size(u) > {SCHEME_END} + 3 && u.substring(0, {SCHEME_END}).lowerAscii() == 'http').map(u, {})).flatten()",
            site(
                "'spec.jwtRules[' + string(k) + '].jwksUri'",
                "'jwksUri ' + strings.quote(u) + ' is fetched over plaintext http: anyone on the path can substitute their own signing keys and mint accepted tokens'",
                &format!("'serve the JWKS over TLS and write ' + strings.quote('https' + u.substring({SCHEME_END}))"),
            )
        ))
    },
};

pub(crate) static MISSING_AUDIENCES: CelForm = CelForm {
    rule: &ra::MISSING_AUDIENCES,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        form(each_jwt_rule(
            "audiences",
            "!j.?audiences.orValue([]).exists(a, a != '')",
            "'no audiences: tokens of this issuer minted for another service are accepted too'",
            "'list the accepted audiences, e.g. audiences: [\"api.example.com\"]'",
        ))
    },
};

pub(crate) static JWKS_PRIVATE_KEY: NotInCel = NotInCel {
    rule: &ra::JWKS_PRIVATE_KEY,
    why: "the inline jwks is a JSON document inside a string, and Kubernetes' CEL has no JSON parser; a text match would also hit member names inside string values",
};

/// Why host `h` (lower case, trailing dots removed) is internal, as a list of at most one
/// reason (`internal_host`): localhost names, and IP literals in the loopback, private,
/// link-local, unspecified or carrier-grade NAT ranges.
fn internal_reason(h: &str) -> String {
    let v4 = [
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("169.254.0.0/16", "link-local (cloud metadata range)"),
        ("0.0.0.0/32", "unspecified"),
        ("100.64.0.0/10", "carrier-grade NAT"),
    ];
    let v6 = [
        ("::1/128", "loopback"),
        ("::/128", "unspecified"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
    ];
    let ranges = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(c, why)| format!("cidr('{c}').containsIP(ip({h})) ? ['{why}'] : "))
            .collect::<String>()
    };
    format!(
        "({h} == 'localhost' || {h}.endsWith('.localhost') ? ['loopback'] : (isIP({h}) ? (ip({h}).family() == 4 ? ({v4}[]) : ({v6}[])) : []))",
        v4 = ranges(&v4),
        v6 = ranges(&v6),
    )
}

pub(crate) static JWKS_URI_INTERNAL: CelForm = CelForm {
    rule: &ra::JWKS_URI_INTERNAL,
    coverage: Coverage::Partly(
        "IPv4-mapped IPv6 literals (::ffff:10.0.0.1), which Kubernetes' CEL ip() refuses to parse",
    ),
    on: On::Write,
    kinds: None,
    cel: || {
        // url_host: after `scheme://`, up to the first / ? #, after the last @; an IPv6 literal
        // in brackets, else up to the first `:`.
        let authority =
            format!("u.substring({SCHEME_END} + 3).split('/')[0].split('?')[0].split('#')[0]");
        let host_port = format!(
            "[{authority}].map(a, a.contains('@') ? a.substring(a.lastIndexOf('@') + 1) : a)[0]"
        );
        let host = format!(
            "[{host_port}].map(hp, hp.startsWith('[') ? (hp.contains(']') ? [hp.substring(1, hp.indexOf(']'))] : []) : [hp.split(':')[0]])[0]"
        );
        let trimmed = "host.find('(?s)^.*[^.]').lowerAscii()";
        form(format!(
            "$o.?spec.?jwtRules.orValue([]).transformList(k, j, j.?jwksUri.hasValue() && j.jwksUri.indexOf('://') >= 0, [j.jwksUri].map(u, {host}.map(host, {reason}.map(why, {site}))).flatten().flatten()).flatten()",
            reason = internal_reason(trimmed),
            site = site(
                "'spec.jwtRules[' + string(k) + '].jwksUri'",
                "'jwksUri host ' + strings.quote(host) + ' is a ' + why + ' address: istiod fetches it from inside the cluster (request forgery, IST0175)'",
                "'use the issuer\\'s public https JWKS URL, or inline the public keys in jwks'",
            ),
        ))
    },
};
