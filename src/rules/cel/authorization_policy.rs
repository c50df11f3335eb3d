//! CEL forms of the AuthorizationPolicy rules ([`crate::rules::authorization_policy`]).
//!
//! The policy is walked as the rules walk it ([`crate::model::authorization_policy`]): `rules[i]`,
//! each rule's `from[j].source`, `to[j].operation` and `when[l]`, with the same field paths.

use super::{lit, lit_list, site, site_if, Cel, CelForm, Coverage, On, Weakening};
use crate::rules::authorization_policy as ap;

/// The variables every AuthorizationPolicy form reads.
fn common() -> Vec<(&'static str, String)> {
    vec![
        ("rules", "$o.?spec.?rules.orValue([])".to_owned()),
        ("action", "$o.?spec.?action.orValue('ALLOW')".to_owned()),
        (
            "targeted",
            "size($o.?spec.?selector.?matchLabels.orValue({})) > 0 || $o.?spec.?targetRef.hasValue() || size($o.?spec.?targetRefs.orValue([])) > 0"
                .to_owned(),
        ),
        (
            "scope",
            "request.namespace == @rootNamespace ? ($targeted ? 'the selected workloads in every namespace (a root-namespace selector applies mesh-wide)' : 'every workload in the mesh') : ($targeted ? 'the selected workloads' : 'every workload in namespace ' + strings.quote(request.namespace))"
                .to_owned(),
        ),
    ]
}

fn form(variables: Vec<(&'static str, String)>, sites: String) -> Cel {
    let mut all = common();
    all.extend(variables);
    Cel {
        variables: all,
        sites,
        weakening: None,
    }
}

/// `size(<optional list>.orValue([])) > 0`: set in the protobuf sense.
fn set(optional: &str) -> String {
    format!("size({optional}.orValue([])) > 0")
}

/// `spec.rules[i]`.
const RULE_PATH: &str = "'spec.rules[' + string(i) + ']'";
/// `spec.rules[i].from[j].source`.
const SOURCE_PATH: &str = "'spec.rules[' + string(i) + '].from[' + string(j) + '].source'";
/// `spec.rules[i].to[j].operation`.
const OPERATION_PATH: &str = "'spec.rules[' + string(i) + '].to[' + string(j) + '].operation'";
/// `spec.rules[i].when[l]`.
const CONDITION_PATH: &str = "'spec.rules[' + string(i) + '].when[' + string(l) + ']'";

/// For every `from[j].source` (`f.source`) of every rule `r` (index `i`): `body`, a list of sites.
fn each_source(body: &str) -> String {
    format!(
        "$rules.transformList(i, r, r.?from.orValue([]).transformList(j, f, f.?source.hasValue(), {body})).flatten().flatten()"
    )
}

/// For every `to[j].operation` (`t.operation`): `body`.
fn each_operation(body: &str) -> String {
    format!(
        "$rules.transformList(i, r, r.?to.orValue([]).transformList(j, t, t.?operation.hasValue(), {body})).flatten().flatten()"
    )
}

/// For every `when[l]` condition `c` with a key: `body`.
fn each_condition(body: &str) -> String {
    format!(
        "$rules.transformList(i, r, r.?when.orValue([]).transformList(l, c, c.?key.hasValue(), {body})).flatten().flatten()"
    )
}

/// For every string `v` (index `k`) of the list `list` (an optional expression) that satisfies
/// `pred`: the site `(path + '[k]', message, fix)`.
fn each_item(list: &str, pred: &str, path: &str, message: &str, fix: &str) -> String {
    format!(
        "{list}.orValue([]).transformList(k, v, {pred}, {})",
        site(&format!("{path} + '[' + string(k) + ']'"), message, fix)
    )
}

/// The literal part of a principal (without a leading or trailing `*`).
fn body(v: &str) -> String {
    format!(
        "({v}.startsWith('*') ? {v}.substring(1) : ({v}.endsWith('*') ? {v}.substring(0, size({v}) - 1) : {v}))"
    )
}

/// `<trust-domain>/ns/<namespace>/sa/<account>` as exact, prefix (`x*`) and suffix (`*x`)
/// matches may write it (`principal_shape_ok`): each segment non-empty, the literal ones exact,
/// except the partial segment at the cut.
const EXACT_SHAPE: &str = "^[^/]+/ns/[^/]+/sa/[^/]+$";
const PREFIX_SHAPE: &str = "^[^/]+/((n|ns)?|ns/[^/]*|ns/[^/]+/(s|sa)?|ns/[^/]+/sa/[^/]*)$";
const SUFFIX_SHAPE: &str =
    "^((a|sa)?/[^/]+|[^/]*/sa/[^/]+|(s|ns)?/[^/]+/sa/[^/]+|[^/]*/ns/[^/]+/sa/[^/]+)$";

/// What is wrong with principal `v` as a list of at most one `[message, fix]`
/// (`principal_problem`).
fn principal_problem(v: &str) -> String {
    let shape_ok = format!(
        "({v}.startsWith('*') ? {v}.substring(1).matches({suf}) : ({v}.endsWith('*') ? {v}.substring(0, size({v}) - 1).matches({pre}) : {v}.matches({exact})))",
        suf = lit(SUFFIX_SHAPE),
        pre = lit(PREFIX_SHAPE),
        exact = lit(EXACT_SHAPE),
    );
    let exact = format!("!{v}.startsWith('*') && !{v}.endsWith('*')");
    let fix = format!(
        "[{v}.split('/')].map(s, ({exact} && size(s) == 2 && s[0] != '' && s[1] != '') ? 'write \"' + @trustDomain + '/ns/' + s[0] + '/sa/' + s[1] + '\", or move \"' + s[0] + '/' + s[1] + '\" to serviceAccounts' : (({exact} && size(s) == 4 && s[0] == 'ns' && s[2] == 'sa') ? 'write \"' + @trustDomain + '/ns/' + s[1] + '/sa/' + s[3] + '\"' : (({exact} && size(s) == 3 && s[1] == 'ns') ? 'write \"' + s[0] + '/ns/' + s[2] + '/sa/*\" for every account of the namespace, or use namespaces: [\"' + s[2] + '\"]' : 'write it as \"' + @trustDomain + '/ns/<namespace>/sa/<serviceaccount>\"')))[0]"
    );
    format!(
        "({v} == '' ? [['an empty principal matches no caller', 'remove the empty entry']] : ({v}.lowerAscii().startsWith('spiffe://') ? [['principal ' + strings.quote({v}) + ' must not start with spiffe:// (Istio compares the identity without the scheme, so it never matches)', 'write ' + strings.quote({v}.substring(9))]] : ({v} == '*' ? [] : ({b}.contains('*') ? [['principal ' + strings.quote({v}) + ' has a * that is not the first or last character; Istio treats it as a literal character, so it never matches', 'use a single leading or trailing wildcard, e.g. \"' + @trustDomain + '/ns/<namespace>/sa/*\"']] : ((!{b}.contains('/') || {shape_ok}) ? [] : [['principal ' + strings.quote({v}) + ' is not of the form <trust-domain>/ns/<namespace>/sa/<serviceaccount>, so it never matches a workload identity', {fix}]])))))",
        b = body(v),
    )
}

/// Every principal the policy matches on (`principals`): sources' `principals` and
/// `notPrincipals`, then `source.principal` conditions' `values` and `notValues`; for each, the
/// sites `per(v)` returns (a list of `[message, fix]`) at its path.
fn each_principal(per: &dyn Fn(&str) -> String) -> String {
    let in_sources: Vec<String> = ["principals", "notPrincipals"]
        .iter()
        .map(|field| {
            each_source(&format!(
                "f.source.?{field}.orValue([]).transformList(k, v, true, {}.map(mf, [{SOURCE_PATH} + '.{field}[' + string(k) + ']', mf[0], mf[1]])).flatten()",
                per("v")
            ))
        })
        .collect();
    let in_conditions: Vec<String> = ["values", "notValues"]
        .iter()
        .map(|field| {
            each_condition(&format!(
                "c.key == 'source.principal' ? c.?{field}.orValue([]).transformList(k, v, true, {}.map(mf, [{CONDITION_PATH} + '.{field}[' + string(k) + ']', mf[0], mf[1]])).flatten() : []",
                per("v")
            ))
        })
        .collect();
    let mut all = in_sources;
    all.extend(in_conditions);
    all.join(" + ")
}

pub(crate) static ALLOW_ALL: CelForm = CelForm {
    rule: &ap::ALLOW_ALL,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        form(
            Vec::new(),
            format!(
                "$action == 'ALLOW' ? lists.range(size($rules)).filter(i, {empty}).map(i, {site}) : []",
                empty = "!(size($rules[i].?from.orValue([])) > 0 || size($rules[i].?to.orValue([])) > 0 || size($rules[i].?when.orValue([])) > 0)",
                site = site(
                    RULE_PATH,
                    "'an empty rule matches every request, so this ALLOW policy lets any caller, with or without a mesh identity, reach ' + $scope",
                    "'name the callers in from[].source.principals (e.g. \"cluster.local/ns/<namespace>/sa/<account>\") and the operations in to[].operation; to deny everything instead, write spec: {}'",
                ),
            ),
        )
    },
};

pub(crate) static WILDCARD_SOURCE: CelForm = CelForm {
    rule: &ap::WILDCARD_SOURCE,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        let principals = each_source(&each_item(
            "f.source.?principals",
            "v == '*'",
            &format!("{SOURCE_PATH} + '.principals'"),
            "'\"*\" matches every workload with a mesh identity in any namespace, so it does not restrict the caller'",
            "'list the callers, e.g. \"' + @trustDomain + '/ns/<namespace>/sa/<serviceaccount>\"'",
        ));
        let namespaces = each_source(&each_item(
            "f.source.?namespaces",
            "v == '*'",
            &format!("{SOURCE_PATH} + '.namespaces'"),
            "'\"*\" matches every namespace of the mesh, so it does not restrict the caller'",
            "'list the namespaces whose workloads may call, or use principals for specific service accounts'",
        ));
        // The rule reports a source's principals, then its namespaces; the order of findings
        // does not matter to a verdict.
        form(
            Vec::new(),
            format!("$action == 'ALLOW' ? {principals} + {namespaces} : []"),
        )
    },
};

/// Condition keys that restrict who the caller is (`is_source_key`).
const SOURCE_KEY: &str =
    "(c.key.startsWith('source.') || c.key == 'remote.ip' || c.key.startsWith('request.auth.'))";

pub(crate) static ALLOW_WITHOUT_SOURCE: CelForm = CelForm {
    rule: &ap::ALLOW_WITHOUT_SOURCE,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        form(
            Vec::new(),
            format!(
                "$action == 'ALLOW' ? lists.range(size($rules)).filter(i, (size($rules[i].?to.orValue([])) > 0 || size($rules[i].?when.orValue([])) > 0) && !(size($rules[i].?from.orValue([])) > 0) && !$rules[i].?when.orValue([]).exists(c, c.?key.hasValue() && {SOURCE_KEY})).map(i, {}) : []",
                site(
                    RULE_PATH,
                    "'no from and no source condition: any caller, including plaintext ones without a mesh identity, matches this ALLOW rule'",
                    "'add from: [{source: {principals: [\"' + @trustDomain + '/ns/<ns>/sa/<account>\"]}}]'",
                )
            ),
        )
    },
};

pub(crate) static PRINCIPAL_FORMAT: CelForm = CelForm {
    rule: &ap::PRINCIPAL_FORMAT,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || form(Vec::new(), each_principal(&principal_problem)),
};

/// The trust domain principal `v` names completely (`principal_trust_domain`), as a list of at
/// most one string.
fn principal_trust_domain(v: &str) -> String {
    let b = format!("({v}.endsWith('*') ? {v}.substring(0, size({v}) - 1) : {v})");
    format!(
        "[{b}.split('/')].filter(s, !{v}.startsWith('*') && !{b}.contains('*') && size(s) >= 2 && s[1] == 'ns' && s[0] != '').map(s, s[0])"
    )
}

pub(crate) static FOREIGN_TRUST_DOMAIN: CelForm = CelForm {
    rule: &ap::FOREIGN_TRUST_DOMAIN,
    coverage: Coverage::Partly(
        "the trust domain and its aliases are those in force when the policies were generated (the meshguard policy's, or --mesh-config); the webhook follows the MeshConfig as it changes",
    ),
    on: On::Write,
    kinds: None,
    cel: || {
        form(
            Vec::new(),
            each_principal(&|v| {
                format!(
                    "{}.filter(td, !(td in @trustDomains)).map(td, ['trust domain ' + strings.quote(td) + ' is neither the mesh\\'s ' + strings.quote(@trustDomain) + ' nor an alias: no workload here has this identity', 'write \"' + @trustDomain + {v}.substring(size(td)) + '\", or add the domain to the mesh\\'s trustDomainAliases'])",
                    principal_trust_domain(v)
                )
            }),
        )
    },
};

pub(crate) static EXACT_PATH_TRAILING_SLASH: CelForm = CelForm {
    rule: &ap::EXACT_PATH_TRAILING_SLASH,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        let per_field = |field: &str| {
            each_operation(&each_item(
                &format!("t.operation.?{field}"),
                "size(v) > 1 && v.endsWith('/') && !v.contains('*') && !v.contains('{')",
                &format!("{OPERATION_PATH} + '.{field}'"),
                "strings.quote(v) + ' has no wildcard: it matches only the exact path ' + strings.quote(v) + ', not \"' + v + '<anything>\"'",
                "'write \"' + v + '*\" to match ' + strings.quote(v) + ' and everything below it'",
            ))
        };
        form(
            Vec::new(),
            format!("{} + {}", per_field("paths"), per_field("notPaths")),
        )
    },
};

/// Istio's supported `when` keys (`condition_key_supported`), for key `k`.
fn key_supported(k: &str) -> String {
    let plain = [
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.serviceAccount",
        "source.principal",
        "source.trustDomain",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    ];
    format!(
        "({k} in {plain} || {k}.matches({headers}) || {k}.matches({claims}) || ({k}.startsWith('experimental.envoy.filters.') && size({k}) > 27))",
        plain = lit_list(&plain),
        headers = lit(r"^request\.headers\[[^\[\]]+\]$"),
        claims = lit(r"^request\.auth\.claims(\[[^\[\]]+\])+$"),
    )
}

pub(crate) static UNKNOWN_CONDITION_KEY: CelForm = CelForm {
    rule: &ap::UNKNOWN_CONDITION_KEY,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        let why = "(c.key in ['destination.namespace', 'destination.labels', 'destination.name', 'destination.user'] ? ' (Istio removed it; select the workload with spec.selector instead)' : ((c.key.startsWith('request.headers') || c.key.startsWith('request.auth.claims')) ? ' (the name must be in brackets: request.headers[<name>], request.auth.claims[<claim>][<nested>])' : ''))";
        form(
            Vec::new(),
            each_condition(&format!(
                "c.key != '' && !{} ? [{}] : []",
                key_supported("c.key"),
                site(
                    &format!("{CONDITION_PATH} + '.key'"),
                    &format!("'condition key ' + strings.quote(c.key) + ' is not supported by Istio' + {why} + ': current Istio rejects the policy, older versions ignore the condition and so widen the rule'"),
                    "'use a supported key: request.headers[<name>], source.ip, remote.ip, source.namespace, source.serviceAccount, source.principal, source.trustDomain, request.auth.principal|audiences|presenter, request.auth.claims[<claim>], destination.ip, destination.port, connection.sni'",
                )
            )),
        )
    },
};

pub(crate) static QUOTED_CONDITION_KEY: CelForm = CelForm {
    rule: &ap::QUOTED_CONDITION_KEY,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        // The bracketed names after `request.headers` / `request.auth.claims` (the segments
        // after the first `[` that end in `]`), quoted with " or '.
        let rest = "(c.key.startsWith('request.headers') ? c.key.substring(15) : (c.key.startsWith('request.auth.claims') ? c.key.substring(19) : ''))";
        let quoted_name = format!(
            "[{rest}.split('[')].exists(s, lists.range(size(s)).exists(x, x > 0 && s[x].endsWith(']') && [s[x].substring(0, size(s[x]) - 1)].exists(n, size(n) >= 2 && ((n.startsWith('\"') && n.endsWith('\"')) || (n.startsWith(\"'\") && n.endsWith(\"'\"))))))"
        );
        form(
            vec![(
                "effect",
                "$action == 'ALLOW' ? 'the ALLOW rule never applies' : ($action == 'DENY' ? 'the DENY rule never fires' : 'the rule never matches')".to_owned(),
            )],
            each_condition(&format!(
                "{quoted_name} ? [{}] : []",
                site(
                    &format!("{CONDITION_PATH} + '.key'"),
                    "'quoted ' + (c.key.startsWith('request.headers') ? 'header' : 'claim') + ' name: Istio keeps the quotes, so this condition never matches and ' + $effect",
                    "'write key: ' + c.key.replace('\"', '').replace(\"'\", '')",
                )
            )),
        )
    },
};

/// The policy `$o` is allow-nothing for its scope (`is_allow_nothing`): ALLOW, no rules, no
/// selector or target refs, not in dry run.
fn allow_nothing(o: &str) -> String {
    format!(
        "({o}.?spec.?action.orValue('ALLOW') == 'ALLOW' && !(size({o}.?spec.?rules.orValue([])) > 0) && !(size({o}.?spec.?selector.?matchLabels.orValue({{}})) > 0 || {o}.?spec.?targetRef.hasValue() || size({o}.?spec.?targetRefs.orValue([])) > 0) && !({o}.metadata.?annotations[?'istio.io/dry-run'].orValue('') in ['1', 't', 'T', 'TRUE', 'true', 'True']))"
    )
}

pub(crate) static DENY_ALL_DELETE: CelForm = CelForm {
    rule: &ap::DENY_ALL_DELETE,
    coverage: Coverage::Full,
    on: On::Delete,
    kinds: None,
    cel: || {
        Cel {
        variables: common(),
        sites: site_if(
            &allow_nothing("$o"),
            "'spec'",
            "'deleting allow-nothing AuthorizationPolicy ' + request.namespace + '/' + $o.metadata.name + ' removes the default-deny baseline for ' + $scope + ': workloads without their own ALLOW policies then accept every caller'",
            "'keep it and add ALLOW policies for the traffic you need; if the namespace is being retired, delete the namespace, or exempt this rule for it in the meshguard policy'",
        ),
        weakening: Some(Weakening {
            sites: site_if(
                &format!("{} && !{}", allow_nothing("$o"), allow_nothing("$n")),
                "'spec'",
                "'this update turns allow-nothing AuthorizationPolicy ' + request.namespace + '/' + $o.metadata.name + ' into one that no longer denies by default for ' + $scope + ': workloads without their own ALLOW policies then accept every caller'",
                "'keep it as spec: {} and add ALLOW policies for the traffic you need in other AuthorizationPolicies'",
            ),
            probe: (
                r#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "deny-all", "namespace": "prod"}, "spec": {}}"#,
                r#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "deny-all", "namespace": "prod"}, "spec": {"rules": [{}]}}"#,
            ),
        }),
    }
    },
};

/// Fields of a source that match the peer identity positively, and their negations.
const PEER_POSITIVE: &[&str] = &["principals", "namespaces", "serviceAccounts"];
const PEER_KEYS: &str =
    "['source.principal', 'source.namespace', 'source.serviceAccount', 'source.trustDomain']";

pub(crate) static ALLOW_NEGATIVE_MATCH: CelForm = CelForm {
    rule: &ap::ALLOW_NEGATIVE_MATCH,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        let peer_pos_sources = PEER_POSITIVE
            .iter()
            .map(|f| set(&format!("f.source.?{f}")))
            .collect::<Vec<_>>()
            .join(" || ");
        // Per rule `r`: does it match the peer (or the request) identity positively anywhere?
        let peer_pos = format!(
            "(r.?from.orValue([]).exists(f, f.?source.hasValue() && ({peer_pos_sources})) || r.?when.orValue([]).exists(c, c.?key.hasValue() && c.key in {PEER_KEYS} && {}))",
            set("c.?values")
        );
        let req_pos = format!(
            "(r.?from.orValue([]).exists(f, f.?source.hasValue() && {}) || r.?when.orValue([]).exists(c, c.?key.hasValue() && !(c.key in {PEER_KEYS}) && c.key.startsWith('request.auth.') && {}))",
            set("f.source.?requestPrincipals"),
            set("c.?values")
        );
        let peer_msg = "'a negative match in ALLOW also matches plaintext callers (no identity), so it admits them unless mTLS is STRICT'";
        let peer_fix = "'list the allowed callers in principals or namespaces instead'";
        let req_msg = "'a negative match in ALLOW also matches requests without a JWT (no request principal or claims), so it admits them'";
        let req_fix =
            "'add requestPrincipals: [\"*\"] (or the issuer\\'s subjects) to require a token'";
        let mut parts = Vec::new();
        for (field, peer) in [
            ("notPrincipals", true),
            ("notNamespaces", true),
            ("notServiceAccounts", true),
            ("notRequestPrincipals", false),
        ] {
            let (covered, msg, fix) = if peer {
                (&peer_pos, peer_msg, peer_fix)
            } else {
                (&req_pos, req_msg, req_fix)
            };
            parts.push(format!(
                "(!{covered} ? r.?from.orValue([]).transformList(j, f, f.?source.hasValue() && {}, {}) : [])",
                set(&format!("f.source.?{field}")),
                site(&format!("{SOURCE_PATH} + '.{field}'"), msg, fix)
            ));
        }
        // Conditions: a peer-identity key, or a request.auth.* one, with notValues.
        parts.push(format!(
            "r.?when.orValue([]).transformList(l, c, c.?key.hasValue() && (c.key in {PEER_KEYS} ? !{peer_pos} : (c.key.startsWith('request.auth.') && !{req_pos})) && {}, {})",
            set("c.?notValues"),
            site(
                &format!("{CONDITION_PATH} + '.notValues'"),
                &format!("(c.key in {PEER_KEYS} ? {peer_msg} : {req_msg})"),
                &format!("(c.key in {PEER_KEYS} ? {peer_fix} : {req_fix})"),
            )
        ));
        form(
            Vec::new(),
            format!(
                "$action == 'ALLOW' ? $rules.transformList(i, r, {}).flatten() : []",
                parts.join(" + ")
            ),
        )
    },
};

pub(crate) static DENY_POSITIVE_IDENTITY: CelForm = CelForm {
    rule: &ap::DENY_POSITIVE_IDENTITY,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        let msg = "'plaintext callers have no identity, so a DENY on positive identity fields never matches them unless mTLS is STRICT'";
        let fix = "'keep mTLS STRICT, and add a DENY on notPrincipals: [\"*\"]'";
        let sources = PEER_POSITIVE
            .iter()
            .map(|field| {
                each_source(&format!(
                    "{} ? [{}] : []",
                    set(&format!("f.source.?{field}")),
                    site(&format!("{SOURCE_PATH} + '.{field}'"), msg, fix)
                ))
            })
            .collect::<Vec<_>>()
            .join(" + ");
        let conditions = each_condition(&format!(
            "c.key in {PEER_KEYS} && {} ? [{}] : []",
            set("c.?values"),
            site(&format!("{CONDITION_PATH} + '.values'"), msg, fix)
        ));
        form(
            Vec::new(),
            format!("$action == 'DENY' ? {sources} + {conditions} : []"),
        )
    },
};

pub(crate) static ACTION_WITHOUT_RULES: CelForm = CelForm {
    rule: &ap::ACTION_WITHOUT_RULES,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        form(
            Vec::new(),
            site_if(
                "$action in ['DENY', 'CUSTOM'] && size($rules) == 0",
                "($o.?spec.?rules.hasValue() ? 'spec.rules' : 'spec')",
                "'a ' + $action + ' policy without rules never matches any request, so it enforces nothing'",
                "'add the rules the ' + $action + ' should apply to; rules: [{}] matches every request'",
            ),
        )
    },
};

pub(crate) static HTTP_ONLY_DENY_WITHOUT_PORTS: CelForm = CelForm {
    rule: &ap::HTTP_ONLY_DENY_WITHOUT_PORTS,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        let http_ops = [
            "hosts",
            "notHosts",
            "methods",
            "notMethods",
            "paths",
            "notPaths",
        ]
        .iter()
        .map(|f| set(&format!("t.operation.?{f}")))
        .collect::<Vec<_>>()
        .join(" || ");
        let http_only = format!(
            "(r.?to.orValue([]).exists(t, t.?operation.hasValue() && ({http_ops})) || r.?from.orValue([]).exists(f, f.?source.hasValue() && ({} || {})) || r.?when.orValue([]).exists(c, c.?key.orValue('').startsWith('request.')))",
            set("f.source.?requestPrincipals"),
            set("f.source.?notRequestPrincipals"),
        );
        let ports = format!(
            "(r.?to.orValue([]).exists(t, t.?operation.hasValue() && ({} || {})) || r.?when.orValue([]).exists(c, c.?key.orValue('') == 'destination.port'))",
            set("t.operation.?ports"),
            set("t.operation.?notPorts"),
        );
        form(
            Vec::new(),
            format!(
                "$action == 'DENY' ? $rules.transformList(i, r, {http_only} && !{ports}, {}) : []",
                site(
                    RULE_PATH,
                    "'HTTP-only fields and no ports: on TCP traffic Istio drops those fields, so this DENY rule denies all TCP traffic to the workload'",
                    "'add to[].operation.ports for the HTTP ports it is meant for'",
                )
            ),
        )
    },
};

/// `report_source_fields`: the sources' `fields` that are set, then the conditions on `key`.
fn source_fields(fields: [&str; 2], key: &str, msg: &str, fix: &str) -> String {
    let sources = fields
        .iter()
        .map(|field| {
            each_source(&format!(
                "{} ? [{}] : []",
                set(&format!("f.source.?{field}")),
                site(&format!("{SOURCE_PATH} + '.{field}'"), msg, fix)
            ))
        })
        .collect::<Vec<_>>()
        .join(" + ");
    let conditions = each_condition(&format!(
        "c.key == {} ? [{}] : []",
        lit(key),
        site(&format!("{CONDITION_PATH} + '.key'"), msg, fix)
    ));
    format!("{sources} + {conditions}")
}

pub(crate) static REMOTE_IP_UNTRUSTED: CelForm = CelForm {
    rule: &ap::REMOTE_IP_UNTRUSTED,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        form(
            Vec::new(),
            source_fields(
                ["remoteIpBlocks", "notRemoteIpBlocks"],
                "remote.ip",
                "'remote IPs come from X-Forwarded-For or the PROXY protocol: unless the gateway sets gatewayTopology.numTrustedProxies, the client controls the header (or Istio uses the peer IP)'",
                "'configure gatewayTopology.numTrustedProxies (or PROXY protocol) on the ingress gateway, and apply the policy there'",
            ),
        )
    },
};

pub(crate) static SOURCE_IP_BEHIND_GATEWAY: CelForm = CelForm {
    rule: &ap::SOURCE_IP_BEHIND_GATEWAY,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        form(
            Vec::new(),
            source_fields(
                ["ipBlocks", "notIpBlocks"],
                "source.ip",
                "'ipBlocks and source.ip match the peer address of the connection: for traffic through an ingress gateway (or any proxy) that is the proxy pod\\'s IP, not the original client\\'s'",
                "'for external client addresses use remoteIpBlocks in a policy on the ingress gateway; for in-mesh callers match principals instead of IPs'",
            ),
        )
    },
};
