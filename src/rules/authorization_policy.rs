//! AuthorizationPolicy (security.istio.io v1, v1beta1): no allow-all, no identity-less ALLOW,
//! well-formed principals, conditions Istio understands.
//!
//! Semantics (Istio's AuthorizationPolicy reference, `pilot/pkg/security/authz/model`): CUSTOM,
//! then DENY, then ALLOW. `spec: {}` is allow-nothing for its scope, `rules: [{}]` is allow-all.
//! A rule matches when one `from`, one `to` and every `when` match; unset fields match anything.
//! Identity fields are empty for plaintext callers, so negative identity matches in ALLOW and
//! positive identity matches in DENY let plaintext through unless mTLS is STRICT. Schema errors
//! Istio itself rejects live in `istio_validation`. Every rule reads the object through
//! [`AuthorizationPolicy`].

use super::{closest, Action, Ctx, Rule, Violation};
use crate::istio::authorization_policy::{AuthorizationPolicy, AuthzAction, Condition};
use crate::resource::{spec_of, Kind, Review};

const KINDS: &[Kind] = &[Kind::AuthorizationPolicy];

/// The view of the policy being written.
fn policy<'a>(review: &Review<'a>) -> AuthorizationPolicy<'a> {
    AuthorizationPolicy::of(review.spec())
}

fn is_request_identity_key(key: &str) -> bool {
    key.starts_with("request.auth.")
}

/// Condition keys that restrict who the caller is.
fn is_source_key(key: &str) -> bool {
    key.starts_with("source.") || key == "remote.ip" || is_request_identity_key(key)
}

fn scope(review: &Review<'_>, ctx: &Ctx<'_>, ap: &AuthorizationPolicy<'_>) -> String {
    let root = review.namespace == ctx.mesh.root_namespace().value;
    if ap.is_targeted() && root {
        "the selected workloads in every namespace (a root-namespace selector applies mesh-wide)"
            .to_owned()
    } else if ap.is_targeted() {
        "the selected workloads".to_owned()
    } else if root {
        "every workload in the mesh".to_owned()
    } else {
        format!("every workload in namespace {:?}", review.namespace)
    }
}

// ---------------------------------------------------------------------------------------------
// Principal syntax

/// Positions of `<trust-domain>/ns/<namespace>/sa/<account>`: `None` = free segment.
const PRINCIPAL_TEMPLATE: [Option<&str>; 5] = [None, Some("ns"), None, Some("sa"), None];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Match {
    Exact,
    Prefix,
    Suffix,
}

/// Split an Istio match string into its literal body and match kind.
fn match_kind(v: &str) -> (&str, Match) {
    if let Some(body) = v.strip_prefix('*') {
        (body, Match::Suffix)
    } else if let Some(body) = v.strip_suffix('*') {
        (body, Match::Prefix)
    } else {
        (v, Match::Exact)
    }
}

/// Whether `body` (a principal, or the literal part of a prefix/suffix match) fits the template.
fn principal_shape_ok(body: &str, kind: Match) -> bool {
    // Split once, into at most the template's five segments.
    let mut segs = [""; 5];
    let mut n = 0;
    for s in body.split('/') {
        if n == segs.len() {
            return false;
        }
        segs[n] = s;
        n += 1;
    }
    if kind == Match::Exact && n != 5 {
        return false;
    }
    // Where the segments sit in the template: suffix matches align to the end.
    let offset = if kind == Match::Suffix { 5 - n } else { 0 };
    segs[..n].iter().enumerate().all(|(i, &s)| {
        let t = PRINCIPAL_TEMPLATE[offset + i];
        let partial_last = kind == Match::Prefix && i + 1 == n;
        let partial_first = kind == Match::Suffix && i == 0;
        match t {
            None => partial_last || partial_first || !s.is_empty(),
            Some(lit) if partial_last => lit.starts_with(s),
            Some(lit) if partial_first => lit.ends_with(s),
            Some(lit) => s == lit,
        }
    })
}

/// What is wrong with a principal and what to write instead; `None` when it is fine.
/// Bare names without `/` are legal match strings (they just match no SPIFFE identity) and
/// are left alone; anything path-like must follow `<trust-domain>/ns/<namespace>/sa/<account>`.
fn principal_problem(v: &str, trust_domain: &str) -> Option<(String, String)> {
    if v.is_empty() {
        return Some((
            "an empty principal matches no caller".to_owned(),
            "remove the empty entry".to_owned(),
        ));
    }
    // `get`, not indexing: byte 9 may fall inside a multi-byte character (found by fuzzing).
    if let Some(rest) = v
        .get(..9)
        .filter(|scheme| scheme.eq_ignore_ascii_case("spiffe://"))
        .and_then(|_| v.get(9..))
    {
        return Some((
            format!("principal {v:?} must not start with spiffe:// (Istio compares the identity without the scheme, so it never matches)"),
            format!("write {rest:?}"),
        ));
    }
    if v == "*" {
        return None;
    }
    let (body, kind) = match_kind(v);
    if body.contains('*') {
        return Some((
            format!("principal {v:?} has a * that is not the first or last character; Istio treats it as a literal character, so it never matches"),
            format!("use a single leading or trailing wildcard, e.g. \"{trust_domain}/ns/<namespace>/sa/*\""),
        ));
    }
    if !body.contains('/') || principal_shape_ok(body, kind) {
        return None;
    }
    let segs: Vec<&str> = body.split('/').collect();
    let fix = match (kind, segs.as_slice()) {
        (Match::Exact, [ns, sa]) if !ns.is_empty() && !sa.is_empty() => format!(
            "write \"{trust_domain}/ns/{ns}/sa/{sa}\", or move \"{ns}/{sa}\" to serviceAccounts"
        ),
        (Match::Exact, ["ns", ns, "sa", sa]) => format!("write \"{trust_domain}/ns/{ns}/sa/{sa}\""),
        (Match::Exact, [td, "ns", ns]) => format!(
            "write \"{td}/ns/{ns}/sa/*\" for every account of the namespace, or use namespaces: [\"{ns}\"]"
        ),
        _ => format!("write it as \"{trust_domain}/ns/<namespace>/sa/<serviceaccount>\""),
    };
    Some((
        format!("principal {v:?} is not of the form <trust-domain>/ns/<namespace>/sa/<serviceaccount>, so it never matches a workload identity"),
        fix,
    ))
}

/// The trust domain a principal names, when it names one completely.
fn principal_trust_domain(v: &str) -> Option<&str> {
    let (body, kind) = match_kind(v);
    if kind == Match::Suffix || body.contains('*') {
        return None;
    }
    let mut segs = body.split('/');
    let td = segs.next()?;
    (segs.next() == Some("ns") && !td.is_empty()).then_some(td)
}

/// Whether a principal's trust domain names this mesh: its trust domain, one of its aliases, or
/// `cluster.local`, which Istio reads as a pointer to the local trust domain and its aliases
/// (istio/istio `pilot/pkg/security/trustdomain/bundle.go`, `ReplaceTrustDomainAliases`).
pub(crate) fn is_local_trust_domain(mesh: &crate::mesh::MeshContext, td: &str) -> bool {
    td == crate::mesh::mesh_config::DEFAULT_TRUST_DOMAIN || mesh.trust_domains().any(|d| d == td)
}

/// Every principal value the policy matches on: source principals/notPrincipals and the
/// `source.principal` condition values/notValues, as `(path, value)`.
/// The path is built only when the callback asks for it.
fn principals(ap: &AuthorizationPolicy<'_>, mut f: impl FnMut(&dyn Fn() -> String, &str)) {
    for src in ap.sources() {
        for field in ["principals", "notPrincipals"] {
            let list = src.field(field);
            for (k, p) in list.strings() {
                f(&|| list.item_path(k), p);
            }
        }
    }
    for cond in ap.conditions() {
        if cond.key() == Some("source.principal") {
            for field in ["values", "notValues"] {
                for (k, p) in cond.strings(field) {
                    f(&|| format!("{}.{field}[{k}]", cond.path()), p);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Condition keys

const PLAIN_KEYS: &[&str] = &[
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

/// Keys offered as suggestions for typos.
const SUGGESTIONS: &[&str] = &[
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
    "request.headers",
    "request.auth.claims",
];

/// `[a]` or, when `nested`, `[a][b]...`: bracketed, non-empty names.
fn brackets_ok(s: &str, nested: bool) -> bool {
    let mut rest = s;
    let mut count = 0;
    while !rest.is_empty() {
        let Some(inner) = rest.strip_prefix('[') else {
            return false;
        };
        let Some(end) = inner.find(']') else {
            return false;
        };
        let name = &inner[..end];
        if name.is_empty() || name.contains('[') {
            return false;
        }
        count += 1;
        rest = &inner[end + 1..];
    }
    count == 1 || (nested && count > 1)
}

/// Whether Istio's validation accepts a `when` key.
pub(crate) fn condition_key_supported(key: &str) -> bool {
    if PLAIN_KEYS.contains(&key) {
        return true;
    }
    if let Some(rest) = key.strip_prefix("request.headers") {
        return brackets_ok(rest, false);
    }
    if let Some(rest) = key.strip_prefix("request.auth.claims") {
        return brackets_ok(rest, true);
    }
    key.strip_prefix("experimental.envoy.filters.")
        .is_some_and(|rest| !rest.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Rules

pub static ALLOW_ALL: Rule = Rule {
    id: "ap-allow-all",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "ALLOW (or no action) with an empty rule {}: it matches every request",
    example_fix: "rules: [{from: [{source: {principals: [\"cluster.local/ns/prod/sa/web\"]}}]}]",
    needs: &[],
    check: |review, ctx, out| {
        let ap = policy(review);
        if !ap.is_allow() {
            return;
        }
        for rule in ap.rules().filter(|r| r.is_empty()) {
            out.push(Violation::new(
                rule.path(),
                format!(
                    "an empty rule matches every request, so this ALLOW policy lets any caller, with or without a mesh identity, reach {}",
                    scope(review, ctx, &ap)
                ),
                "name the callers in from[].source.principals (e.g. \"cluster.local/ns/<namespace>/sa/<account>\") and the operations in to[].operation; to deny everything instead, write spec: {}",
            ));
        }
    },
};

pub static WILDCARD_SOURCE: Rule = Rule {
    id: "ap-wildcard-source",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "ALLOW with principals: [\"*\"] or namespaces: [\"*\"] admits any mesh workload",
    example_fix: "principals: [\"cluster.local/ns/prod/sa/web\"]",
    needs: &[],
    check: |review, ctx, out| {
        let ap = policy(review);
        if !ap.is_allow() {
            return;
        }
        for src in ap.sources() {
            let principals = src.field("principals");
            for (k, _) in principals.strings().filter(|(_, p)| *p == "*") {
                out.push(Violation::new(
                    principals.item_path(k),
                    "\"*\" matches every workload with a mesh identity in any namespace, so it does not restrict the caller",
                    format!(
                        "list the callers, e.g. \"{}/ns/<namespace>/sa/<serviceaccount>\"",
                        ctx.mesh.trust_domain().value
                    ),
                ));
            }
            let namespaces = src.field("namespaces");
            for (k, _) in namespaces.strings().filter(|(_, n)| *n == "*") {
                out.push(Violation::new(
                    namespaces.item_path(k),
                    "\"*\" matches every namespace of the mesh, so it does not restrict the caller",
                    "list the namespaces whose workloads may call, or use principals for specific service accounts",
                ));
            }
        }
    },
};

pub static ALLOW_WITHOUT_SOURCE: Rule = Rule {
    id: "ap-allow-without-source",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "an ALLOW rule with no from and no source condition lets any caller in",
    example_fix: "from: [{source: {principals: [\"cluster.local/ns/prod/sa/web\"]}}]",
    needs: &[],
    check: |review, ctx, out| {
        let ap = policy(review);
        if !ap.is_allow() {
            return;
        }
        for rule in ap.rules() {
            if rule.is_empty() || !rule.is_object() || rule.has("from") {
                continue;
            }
            let source_condition = rule
                .conditions()
                .any(|c| c.key().is_some_and(is_source_key));
            if !source_condition {
                out.push(Violation::new(
                    rule.path(),
                    "no from and no source condition: any caller, including plaintext ones without a mesh identity, matches this ALLOW rule",
                    format!(
                        "add from: [{{source: {{principals: [\"{}/ns/<ns>/sa/<account>\"]}}}}]",
                        ctx.mesh.trust_domain().value
                    ),
                ));
            }
        }
    },
};

pub static PRINCIPAL_FORMAT: Rule = Rule {
    id: "ap-principal-format",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a principal not of the form <trust-domain>/ns/<namespace>/sa/<account> (spiffe:// prefixes, missing segments, inner *)",
    example_fix: "principals: [\"cluster.local/ns/prod/sa/web\"]",
    needs: &[],
    check: |review, ctx, out| {
        principals(&policy(review), |path, p| {
            if let Some((message, fix)) = principal_problem(p, &ctx.mesh.trust_domain().value) {
                out.push(Violation::new(path(), message, fix));
            }
        });
    },
};

pub static FOREIGN_TRUST_DOMAIN: Rule = Rule {
    id: "ap-foreign-trust-domain",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "a principal's trust domain is neither the mesh trust domain nor one of its aliases",
    example_fix:
        "principals: [\"cluster.local/ns/prod/sa/web\"] (or add the domain to trustDomainAliases)",
    needs: &[],
    check: |review, ctx, out| {
        let mesh = ctx.mesh;
        principals(&policy(review), |path, p| {
            let Some(td) = principal_trust_domain(p) else {
                return;
            };
            if is_local_trust_domain(mesh, td) {
                return;
            }
            let rest = &p[td.len()..];
            let trust_domain = &mesh.trust_domain().value;
            out.push(Violation::new(
                path(),
                format!(
                    "trust domain {td:?} is neither the mesh's {trust_domain:?} nor an alias: no workload here has this identity"
                ),
                format!(
                    "write \"{trust_domain}{rest}\", or add the domain to the mesh's trustDomainAliases"
                ),
            ));
        });
    },
};

pub static EXACT_PATH_TRAILING_SLASH: Rule = Rule {
    id: "ap-exact-path-trailing-slash",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "a path like /api/ with no wildcard is an exact match, usually meant /api/*",
    example_fix: "paths: [\"/api/*\"]",
    needs: &[],
    check: |review, _ctx, out| {
        for op in policy(review).operations() {
            for field in ["paths", "notPaths"] {
                let list = op.field(field);
                for (k, p) in list.strings() {
                    if p.len() > 1 && p.ends_with('/') && !p.contains(['*', '{']) {
                        out.push(Violation::new(
                            list.item_path(k),
                            format!(
                                "{p:?} has no wildcard: it matches only the exact path {p:?}, not \"{p}<anything>\""
                            ),
                            format!("write \"{p}*\" to match {p:?} and everything below it"),
                        ));
                    }
                }
            }
        }
    },
};

pub static UNKNOWN_CONDITION_KEY: Rule = Rule {
    id: "ap-unknown-condition-key",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a when key Istio does not support (rejected by current Istio, silently ignored by older versions)",
    example_fix: "when: [{key: source.namespace, values: [\"prod\"]}]",
    needs: &[],
    check: |review, _ctx, out| {
        for cond in policy(review).conditions() {
            let Some(key) = cond.key() else { continue };
            if key.is_empty() || condition_key_supported(key) {
                continue;
            }
            let why = if key.starts_with("destination.")
                && matches!(
                    key,
                    "destination.namespace" | "destination.labels" | "destination.name" | "destination.user"
                ) {
                " (Istio removed it; select the workload with spec.selector instead)".to_owned()
            } else if key.starts_with("request.headers") || key.starts_with("request.auth.claims") {
                " (the name must be in brackets: request.headers[<name>], request.auth.claims[<claim>][<nested>])".to_owned()
            } else {
                String::new()
            };
            let base = key.split('[').next().unwrap_or(key);
            let fix = match closest(base, SUGGESTIONS) {
                Some(s) if s != base => format!("did you mean {s:?}? Use a supported key: request.headers[<name>], source.ip, remote.ip, source.namespace, source.serviceAccount, source.principal, source.trustDomain, request.auth.principal|audiences|presenter, request.auth.claims[<claim>], destination.ip, destination.port, connection.sni"),
                _ => "use a supported key: request.headers[<name>], source.ip, remote.ip, source.namespace, source.serviceAccount, source.principal, source.trustDomain, request.auth.principal|audiences|presenter, request.auth.claims[<claim>], destination.ip, destination.port, connection.sni".to_owned(),
            };
            out.push(Violation::new(
                format!("{}.key", cond.path()),
                format!("condition key {key:?} is not supported by Istio{why}: current Istio rejects the policy, older versions ignore the condition and so widen the rule"),
                fix,
            ));
        }
    },
};

/// The bracketed names of a `request.headers[...]` / `request.auth.claims[...][...]` key.
fn bracket_names(key: &str) -> impl Iterator<Item = &str> {
    let rest = key
        .strip_prefix("request.headers")
        .or_else(|| key.strip_prefix("request.auth.claims"))
        .unwrap_or("");
    rest.split('[').skip(1).filter_map(|s| s.strip_suffix(']'))
}

fn is_quoted(name: &str) -> bool {
    name.len() >= 2
        && ((name.starts_with('"') && name.ends_with('"'))
            || (name.starts_with('\'') && name.ends_with('\'')))
}

pub static QUOTED_CONDITION_KEY: Rule = Rule {
    id: "ap-quoted-condition-key",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "a quoted name in a when key (request.headers[\"x\"]): Istio keeps the quotes, so the condition never matches",
    example_fix: "key: request.headers[x-api-version]",
    needs: &[],
    check: |review, _ctx, out| {
        let ap = policy(review);
        let effect = match ap.action_str() {
            "ALLOW" => "the ALLOW rule never applies",
            "DENY" => "the DENY rule never fires",
            _ => "the rule never matches",
        };
        for cond in ap.conditions() {
            let Some(key) = cond.key() else { continue };
            if !bracket_names(key).any(is_quoted) {
                continue;
            }
            let unquoted: String = key.chars().filter(|c| *c != '"' && *c != '\'').collect();
            let what = if key.starts_with("request.headers") {
                "header"
            } else {
                "claim"
            };
            out.push(Violation::new(
                format!("{}.key", cond.path()),
                format!("quoted {what} name: Istio keeps the quotes, so this condition never matches and {effect}"),
                format!("write key: {unquoted}"),
            ));
        }
    },
};

/// What an UPDATE did to an allow-nothing policy that no longer allows nothing, with the field
/// it did it in (the path of the finding).
fn what_changed(new: &AuthorizationPolicy<'_>, dry_run: bool) -> (&'static str, String) {
    if !new.is_allow() {
        return (
            "spec.action",
            format!(
                "sets action: {}, which makes it a policy that denies nothing by default",
                new.action_str()
            ),
        );
    }
    if !new.selector.is_empty() {
        return (
            "spec.selector",
            format!(
                "adds the selector {{{}}}, which narrows the baseline to the selected workloads",
                new.selector.describe()
            ),
        );
    }
    if new.has_target_refs() {
        let path = if crate::json::is_set(new.spec.get("targetRefs")) {
            "spec.targetRefs"
        } else {
            "spec.targetRef"
        };
        return (
            path,
            "attaches it to target refs (gateways, waypoints, Services), away from the sidecars"
                .to_owned(),
        );
    }
    if new.has_rules() {
        return (
            "spec.rules",
            "adds rules, so it allows the traffic they match instead of nothing".to_owned(),
        );
    }
    if dry_run {
        return (
            "metadata.annotations[\"istio.io/dry-run\"]",
            "turns on istio.io/dry-run, so Istio evaluates it in shadow only and enforces nothing"
                .to_owned(),
        );
    }
    ("spec", "changes it".to_owned())
}

pub static DENY_ALL_DELETE: Rule = Rule {
    id: "ap-deny-all-delete",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "deleting a namespace- or mesh-wide allow-nothing policy (spec: {}), or an update that makes it allow something (a selector, targetRefs, rules, another action, dry-run), removes the default-deny baseline",
    example_fix: "keep the allow-nothing policy and add ALLOW policies for the traffic you need",
    needs: &[],
    check: |review, ctx, out| {
        let Some(old) = review.old_object else { return };
        let before = AuthorizationPolicy::of(spec_of(old));
        if !before.is_allow_nothing(crate::istio::is_dry_run(old)) {
            return;
        }
        let name = old.metadata.name.as_deref().unwrap_or(review.name);
        match review.operation {
            kube::core::admission::Operation::Delete => out.push(Violation::new(
                "spec",
                format!(
                    "deleting allow-nothing AuthorizationPolicy {}/{name} removes the default-deny baseline for {}: workloads without their own ALLOW policies then accept every caller",
                    review.namespace,
                    scope(review, ctx, &before)
                ),
                "keep it and add ALLOW policies for the traffic you need; if the namespace is being retired, delete the namespace, or exempt this rule for it in the meshguard policy",
            )),
            // An update that turns the baseline into a policy that allows something (or applies
            // elsewhere) is its deletion: the same hole, reached in two steps otherwise.
            kube::core::admission::Operation::Update => {
                let Some(new) = review.written() else { return };
                let dry_run = crate::istio::is_dry_run(new);
                let after = AuthorizationPolicy::of(spec_of(new));
                if after.is_allow_nothing(dry_run) {
                    return;
                }
                let (path, what) = what_changed(&after, dry_run);
                out.push(Violation::new(
                    path,
                    format!(
                        "this update {what}: allow-nothing AuthorizationPolicy {}/{name} stops being the default-deny baseline for {}, as deleting it would",
                        review.namespace,
                        scope(review, ctx, &before)
                    ),
                    "keep this policy as spec: {} and put what you need in a separate ALLOW policy (with a selector and rules naming the callers)",
                ));
            }
            _ => {}
        }
    },
};

pub static ALLOW_NEGATIVE_MATCH: Rule = Rule {
    id: "ap-allow-negative-match",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "ALLOW keyed on a negative identity match (notPrincipals, notNamespaces, notValues) also admits callers with no identity",
    example_fix: "principals: [\"cluster.local/ns/prod/sa/web\"] instead of notPrincipals",
    needs: &[],
    check: |review, _ctx, out| {
        let ap = policy(review);
        if !ap.is_allow() {
            return;
        }
        for rule in ap.rules() {
            let (mut peer_pos, mut req_pos) = (false, false);
            // (path, is a peer-identity field)
            let mut negatives: Vec<(String, bool)> = Vec::new();
            for src in rule.sources() {
                peer_pos |= ["principals", "namespaces", "serviceAccounts"]
                    .iter()
                    .any(|f| src.field(f).is_set());
                req_pos |= src.field("requestPrincipals").is_set();
                for (field, peer) in [
                    ("notPrincipals", true),
                    ("notNamespaces", true),
                    ("notServiceAccounts", true),
                    ("notRequestPrincipals", false),
                ] {
                    let list = src.field(field);
                    if list.is_set() {
                        negatives.push((list.path(), peer));
                    }
                }
            }
            for cond in rule.conditions() {
                let Some(key) = cond.key() else { continue };
                let peer = cond.is_peer_identity();
                if !peer && !is_request_identity_key(key) {
                    continue;
                }
                if cond.has("values") {
                    if peer {
                        peer_pos = true;
                    } else {
                        req_pos = true;
                    }
                }
                if cond.has("notValues") {
                    negatives.push((format!("{}.notValues", cond.path()), peer));
                }
            }
            for (path, peer) in negatives {
                if (peer && peer_pos) || (!peer && req_pos) {
                    continue;
                }
                if peer {
                    out.push(Violation::new(
                        path,
                        "a negative match in ALLOW also matches plaintext callers (no identity), so it admits them unless mTLS is STRICT",
                        "list the allowed callers in principals or namespaces instead",
                    ));
                } else {
                    out.push(Violation::new(
                        path,
                        "a negative match in ALLOW also matches requests without a JWT (no request principal or claims), so it admits them",
                        "add requestPrincipals: [\"*\"] (or the issuer's subjects) to require a token",
                    ));
                }
            }
        }
    },
};

pub static DENY_POSITIVE_IDENTITY: Rule = Rule {
    id: "ap-deny-positive-identity",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "DENY keyed on positive identity fields (principals, namespaces, serviceAccounts) is bypassed by plaintext callers unless mTLS is STRICT",
    example_fix: "keep mTLS STRICT for the workload, or add a DENY on notPrincipals: [\"*\"]",
    needs: &[],
    check: |review, _ctx, out| {
        let ap = policy(review);
        if ap.action() != Some(AuthzAction::Deny) {
            return;
        }
        let msg = "plaintext callers have no identity, so a DENY on positive identity fields never matches them unless mTLS is STRICT";
        let fix = "keep mTLS STRICT, and add a DENY on notPrincipals: [\"*\"]";
        for src in ap.sources() {
            for field in ["principals", "namespaces", "serviceAccounts"] {
                let list = src.field(field);
                if list.is_set() {
                    out.push(Violation::new(list.path(), msg, fix));
                }
            }
        }
        for cond in ap.conditions() {
            if cond.is_peer_identity() && cond.has("values") {
                out.push(Violation::new(format!("{}.values", cond.path()), msg, fix));
            }
        }
    },
};

pub static ACTION_WITHOUT_RULES: Rule = Rule {
    id: "ap-action-without-rules",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "DENY or CUSTOM without rules never matches (Istio rejects or ignores it)",
    example_fix: "rules: [{to: [{operation: {paths: [\"/admin/*\"]}}]}]",
    needs: &[],
    check: |review, _ctx, out| {
        let ap = policy(review);
        let act = ap.action_str();
        if !matches!(act, "DENY" | "CUSTOM") || ap.has_rules() {
            return;
        }
        let path = if ap.rules_value().is_some() {
            "spec.rules"
        } else {
            "spec"
        };
        out.push(Violation::new(
            path,
            format!(
                "a {act} policy without rules never matches any request, so it enforces nothing"
            ),
            format!("add the rules the {act} should apply to; rules: [{{}}] matches every request"),
        ));
    },
};

/// Operation fields that only HTTP traffic carries.
const HTTP_OPERATION_FIELDS: &[&str] = &[
    "hosts",
    "notHosts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
];
/// Source fields that only HTTP traffic carries (a JWT).
const HTTP_SOURCE_FIELDS: &[&str] = &["requestPrincipals", "notRequestPrincipals"];

/// The rule uses fields only HTTP traffic carries, and whether it limits ports.
fn http_only_and_ports(rule: &crate::istio::authorization_policy::AuthzRule<'_>) -> (bool, bool) {
    let mut http_only = false;
    let mut ports = false;
    for op in rule.operations() {
        http_only |= HTTP_OPERATION_FIELDS.iter().any(|f| op.field(f).is_set());
        ports |= op.field("ports").is_set() || op.field("notPorts").is_set();
    }
    for src in rule.sources() {
        http_only |= HTTP_SOURCE_FIELDS.iter().any(|f| src.field(f).is_set());
    }
    for c in rule.conditions() {
        if let Some(k) = c.key() {
            http_only |= k.starts_with("request.");
            ports |= k == "destination.port";
        }
    }
    (http_only, ports)
}

pub static HTTP_ONLY_DENY_WITHOUT_PORTS: Rule = Rule {
    id: "ap-http-deny-without-ports",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "a DENY rule with HTTP-only fields and no ports denies all TCP (non-HTTP) traffic to the workload",
    example_fix: "to: [{operation: {ports: [\"8080\"], paths: [\"/admin/*\"]}}]",
    needs: &[crate::context::Need::NamespaceLabels],
    check: |review, ctx, out| {
        let ap = policy(review);
        if ap.action() != Some(AuthzAction::Deny) {
            return;
        }
        if !ap.has_target_refs() && super::ambient::ambient_namespace(review, ctx) {
            return; // ztunnel drops the HTTP fields differently: ap-ztunnel-http says how
        }
        for rule in ap.rules() {
            let (http_only, ports) = http_only_and_ports(&rule);
            if http_only && !ports {
                out.push(Violation::new(
                    rule.path(),
                    "HTTP-only fields and no ports: on TCP traffic Istio drops those fields, so this DENY rule denies all TCP traffic to the workload",
                    "add to[].operation.ports for the HTTP ports it is meant for",
                ));
            }
        }
    },
};

/// Report `fields` of every source and `key` conditions, with one message.
fn report_source_fields(
    ap: &AuthorizationPolicy<'_>,
    fields: [&'static str; 2],
    key: &str,
    msg: &str,
    fix: &str,
    out: &mut Vec<Violation>,
) {
    for src in ap.sources() {
        for field in fields {
            let list = src.field(field);
            if list.is_set() {
                out.push(Violation::new(list.path(), msg, fix));
            }
        }
    }
    for cond in ap
        .conditions()
        .filter(|c: &Condition<'_>| c.key() == Some(key))
    {
        out.push(Violation::new(format!("{}.key", cond.path()), msg, fix));
    }
}

pub static REMOTE_IP_UNTRUSTED: Rule = Rule {
    id: "ap-remote-ip-untrusted",
    kinds: KINDS,
    default_action: Action::Audit,
    summary: "remoteIpBlocks / remote.ip come from X-Forwarded-For and are only meaningful with gatewayTopology.numTrustedProxies",
    example_fix: "set meshConfig.defaultConfig.gatewayTopology.numTrustedProxies on the gateway",
    needs: &[],
    check: |review, _ctx, out| {
        report_source_fields(
            &policy(review),
            ["remoteIpBlocks", "notRemoteIpBlocks"],
            "remote.ip",
            "remote IPs come from X-Forwarded-For or the PROXY protocol: unless the gateway sets gatewayTopology.numTrustedProxies, the client controls the header (or Istio uses the peer IP)",
            "configure gatewayTopology.numTrustedProxies (or PROXY protocol) on the ingress gateway, and apply the policy there",
            out,
        );
    },
};

pub static SOURCE_IP_BEHIND_GATEWAY: Rule = Rule {
    id: "ap-source-ip-behind-gateway",
    kinds: KINDS,
    default_action: Action::Audit,
    summary: "ipBlocks / source.ip match the connection's peer IP: behind an ingress gateway that is the gateway pod, not the client",
    example_fix: "use remoteIpBlocks on the ingress gateway (with numTrustedProxies) for client IPs",
    needs: &[],
    check: |review, _ctx, out| {
        report_source_fields(
            &policy(review),
            ["ipBlocks", "notIpBlocks"],
            "source.ip",
            "ipBlocks and source.ip match the peer address of the connection: for traffic through an ingress gateway (or any proxy) that is the proxy pod's IP, not the original client's",
            "for external client addresses use remoteIpBlocks in a policy on the ingress gateway; for in-mesh callers match principals instead of IPs",
            out,
        );
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::rules::testing::{obj, run, run_with};
    use kube::core::admission::Operation;
    use kube::core::DynamicObject;
    use serde_json::{json, Value};

    const VERSIONS: [&str; 2] = ["v1", "v1beta1"];
    const WRITES: [Operation; 2] = [Operation::Create, Operation::Update];

    fn ap(version: &str, spec: Value) -> DynamicObject {
        obj(json!({
            "apiVersion": format!("security.istio.io/{version}"),
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "prod"},
            "spec": spec
        }))
    }

    /// Run `rule` for every version and write operation; return the violations (all equal).
    fn each(rule: &Rule, spec: Value) -> Vec<Violation> {
        let mut last = None;
        for v in VERSIONS {
            for op in WRITES {
                let found = run(rule, op, v, "prod", &ap(v, spec.clone()));
                if let Some(prev) = &last {
                    assert_eq!(prev, &found, "{} differs for {v}", rule.id);
                }
                last = Some(found);
            }
        }
        last.unwrap_or_default()
    }

    const SEL: &str = "app";

    fn sel() -> Value {
        json!({"matchLabels": {SEL: "backend"}})
    }

    #[test]
    fn allow_all() {
        let found = each(&ALLOW_ALL, json!({"rules": [{}]}));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.rules[0]");
        assert!(found[0]
            .message
            .contains("lets any caller, with or without a mesh identity, reach every workload in namespace \"prod\""));
        assert!(found[0].fix.contains("spec: {}"));
        let found = each(
            &ALLOW_ALL,
            json!({"action": "ALLOW", "selector": sel(), "rules": [{"from": []}, {"to": [{"operation": {"methods": ["GET"]}}]}]}),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.rules[0]");
        assert!(found[0].message.contains("the selected workloads"));
        // allow-nothing, a DENY with an empty rule, a real rule: fine.
        assert!(each(&ALLOW_ALL, json!({})).is_empty());
        assert!(each(&ALLOW_ALL, json!({"action": "DENY", "rules": [{}]})).is_empty());
        assert!(each(
            &ALLOW_ALL,
            json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}]}]})
        )
        .is_empty());
        // DELETE of an allow-all is not a write.
        let o = ap("v1", json!({"rules": [{}]}));
        assert!(run(&ALLOW_ALL, Operation::Delete, "v1", "prod", &o).is_empty());
    }

    #[test]
    fn wildcard_source() {
        let found = each(
            &WILDCARD_SOURCE,
            json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b", "*"], "namespaces": ["*"]}}]}]}),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].from[0].source.principals[1]",
                "spec.rules[0].from[0].source.namespaces[0]"
            ]
        );
        assert!(found[0]
            .message
            .contains("every workload with a mesh identity"));
        assert!(found[0]
            .fix
            .contains("cluster.local/ns/<namespace>/sa/<serviceaccount>"));
        assert!(found[1].message.contains("every namespace"));
        // Prefix wildcards and DENY policies are not this rule.
        assert!(each(
            &WILDCARD_SOURCE,
            json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/*"]}}]}]})
        )
        .is_empty());
        assert!(each(
            &WILDCARD_SOURCE,
            json!({"action": "DENY", "rules": [{"from": [{"source": {"principals": ["*"]}}]}]})
        )
        .is_empty());
    }

    #[test]
    fn allow_without_source() {
        let found = each(
            &ALLOW_WITHOUT_SOURCE,
            json!({"selector": sel(), "rules": [{"to": [{"operation": {"paths": ["/api/*"]}}]}]}),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.rules[0]");
        assert_eq!(
            found[0].message,
            "no from and no source condition: any caller, including plaintext ones without a mesh identity, matches this ALLOW rule"
        );
        assert!(found[0].fix.contains("principals"));
        // A source condition (even an IP) or a from is a source; empty rules belong to ap-allow-all.
        for spec in [
            json!({"rules": [{"to": [{"operation": {"paths": ["/"]}}], "when": [{"key": "source.ip", "values": ["10.0.0.0/8"]}]}]}),
            json!({"rules": [{"from": [{"source": {"namespaces": ["a"]}}], "to": [{"operation": {"paths": ["/"]}}]}]}),
            json!({"rules": [{}]}),
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/"]}}]}]}),
        ] {
            assert!(
                each(&ALLOW_WITHOUT_SOURCE, spec.clone()).is_empty(),
                "{spec}"
            );
        }
    }

    #[test]
    fn principal_with_a_multibyte_character_at_byte_nine_does_not_panic() {
        // Found by the admission fuzz target: "spiffe:/" then a two-byte character straddling
        // byte 9 used to panic in a byte slice.
        for p in [
            "spiffe:/\u{065c}x",
            "spiffe://\u{065c}",
            "\u{065c}\u{065c}\u{065c}\u{065c}\u{065c}",
        ] {
            let found = each(
                &PRINCIPAL_FORMAT,
                json!({"rules": [{"from": [{"source": {"principals": [p]}}]}]}),
            );
            assert!(
                found.iter().all(|v| !v.message.is_empty()),
                "{p}: {found:?}"
            );
        }
        let found = each(
            &PRINCIPAL_FORMAT,
            json!({"rules": [{"from": [{"source": {"principals": ["SPIFFE://cluster.local/ns/a/sa/b"]}}]}]}),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].fix, "write \"cluster.local/ns/a/sa/b\"");
    }

    #[test]
    fn principal_format() {
        let found = each(
            &PRINCIPAL_FORMAT,
            json!({"rules": [{"from": [{"source": {"principals": [
                "cluster.local/ns/prod/sa/ok",
                "spiffe://cluster.local/ns/prod/sa/web",
                "prod/web",
                "cluster.local/ns/*/sa/web",
                "cluster.local/ns/prod",
            ]}}], "when": [{"key": "source.principal", "notValues": ["ns/prod/sa/web"]}]}]}),
        );
        let got: Vec<_> = found
            .iter()
            .map(|v| (v.path.as_str(), v.fix.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("spec.rules[0].from[0].source.principals[1]", "write \"cluster.local/ns/prod/sa/web\""),
                (
                    "spec.rules[0].from[0].source.principals[2]",
                    "write \"cluster.local/ns/prod/sa/web\", or move \"prod/web\" to serviceAccounts"
                ),
                (
                    "spec.rules[0].from[0].source.principals[3]",
                    "use a single leading or trailing wildcard, e.g. \"cluster.local/ns/<namespace>/sa/*\""
                ),
                (
                    "spec.rules[0].from[0].source.principals[4]",
                    "write \"cluster.local/ns/prod/sa/*\" for every account of the namespace, or use namespaces: [\"prod\"]"
                ),
                ("spec.rules[0].when[0].notValues[0]", "write \"cluster.local/ns/prod/sa/web\""),
            ]
        );
        assert_eq!(
            found[0].message,
            "principal \"spiffe://cluster.local/ns/prod/sa/web\" must not start with spiffe:// (Istio compares the identity without the scheme, so it never matches)"
        );
        assert!(found[1]
            .message
            .contains("is not of the form <trust-domain>/ns/<namespace>/sa/<serviceaccount>"));
        // Valid shapes, wildcards and bare match strings (Istio-valid) pass.
        assert!(each(
            &PRINCIPAL_FORMAT,
            json!({"rules": [{"from": [{"source": {"principals": [
                "cluster.local/ns/prod/sa/web", "cluster.local/ns/prod/sa/*", "*/sa/web", "*", "cluster.local/*",
                "td/ns/prod/s*", "*/ns/prod/sa/web", "principal", "*-suffix", "prefix-*"
            ]}}]}]})
        )
        .is_empty());
    }

    #[test]
    fn foreign_trust_domain() {
        let spec = json!({"rules": [{"from": [{"source": {"principals": [
            "cluster.local/ns/a/sa/b", "other.example/ns/a/sa/b", "old.td/ns/a/sa/*", "*/ns/a/sa/b"
        ]}}]}]});
        let found = each(&FOREIGN_TRUST_DOMAIN, spec.clone());
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].from[0].source.principals[1]",
                "spec.rules[0].from[0].source.principals[2]"
            ]
        );
        assert_eq!(
            found[0].message,
            "trust domain \"other.example\" is neither the mesh's \"cluster.local\" nor an alias: no workload here has this identity"
        );
        assert_eq!(
            found[0].fix,
            "write \"cluster.local/ns/a/sa/b\", or add the domain to the mesh's trustDomainAliases"
        );
        // Aliases count.
        let policy = Policy {
            trust_domain_aliases: Some(vec!["other.example".into(), "old.td".into()]),
            ..Policy::default()
        };
        for v in VERSIONS {
            for op in WRITES {
                assert!(run_with(
                    &FOREIGN_TRUST_DOMAIN,
                    op,
                    v,
                    "prod",
                    &ap(v, spec.clone()),
                    &policy
                )
                .is_empty());
            }
        }
    }

    #[test]
    fn trust_domains_come_from_the_mesh_and_cluster_local_points_to_it() {
        use crate::mesh::MeshContext;
        use crate::rules::testing::run_in;
        let mesh = crate::mesh::testing::mesh(&[crate::mesh::testing::mesh_cm(
            "istio",
            "trustDomain: corp.example\ntrustDomainAliases: [old.corp.example]\n",
        )]);
        let spec = json!({"rules": [{"from": [{"source": {"principals": [
            "corp.example/ns/a/sa/b", "old.corp.example/ns/a/sa/b", "cluster.local/ns/a/sa/b",
            "other.example/ns/a/sa/b"
        ]}}]}]});
        let run = |policy: &Policy, mesh: &MeshContext| {
            run_in(
                &FOREIGN_TRUST_DOMAIN,
                Operation::Create,
                "v1",
                "prod",
                &ap("v1", spec.clone()),
                policy,
                mesh,
                &crate::context::NoCluster,
            )
        };
        // The mesh's trust domain and aliases are local, and so is cluster.local (Istio rewrites
        // it to the local trust domain); only the other domain warns, named after the mesh's.
        let found = run(&Policy::default(), &mesh);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "spec.rules[0].from[0].source.principals[3]");
        assert!(found[0]
            .message
            .contains("neither the mesh's \"corp.example\""));
        assert!(found[0].fix.starts_with("write \"corp.example/ns/a/sa/b\""));
        // Without the mesh context, corp.example is foreign: a false positive on every principal of such a mesh.
        assert_eq!(run(&Policy::default(), &MeshContext::default()).len(), 3);
        // The policy overrides the mesh: its aliases replace the mesh's.
        let policy = Policy {
            trust_domain_aliases: Some(vec!["other.example".into()]),
            ..Policy::default()
        };
        let found = run(&policy, &mesh);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "spec.rules[0].from[0].source.principals[1]");
    }

    #[test]
    fn exact_path_trailing_slash() {
        let found = each(
            &EXACT_PATH_TRAILING_SLASH,
            json!({"rules": [{"to": [{"operation": {"paths": ["/api/", "/", "/api/*", "/x/{*}/"], "notPaths": ["/admin/"]}}]}]}),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].to[0].operation.paths[0]",
                "spec.rules[0].to[0].operation.notPaths[0]"
            ]
        );
        assert_eq!(
            found[0].message,
            "\"/api/\" has no wildcard: it matches only the exact path \"/api/\", not \"/api/<anything>\""
        );
        assert_eq!(
            found[0].fix,
            "write \"/api/*\" to match \"/api/\" and everything below it"
        );
        assert!(each(
            &EXACT_PATH_TRAILING_SLASH,
            json!({"rules": [{"to": [{"operation": {"paths": ["/api/*", "/health"]}}]}]})
        )
        .is_empty());
    }

    #[test]
    fn unknown_condition_key() {
        let found = each(
            &UNKNOWN_CONDITION_KEY,
            json!({"rules": [{"when": [
                {"key": "request.headers[x-foo]", "values": ["a"]},
                {"key": "source.unknownKey", "values": ["x"]},
                {"key": "source.namspace", "values": ["x"]},
                {"key": "destination.namespace", "values": ["x"]},
                {"key": "request.headers", "values": ["x"]},
                {"key": "request.auth.claims[a][b]", "values": ["x"]},
                {"key": "experimental.envoy.filters.a.b[c]", "values": ["x"]},
            ]}]}),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].when[1].key",
                "spec.rules[0].when[2].key",
                "spec.rules[0].when[3].key",
                "spec.rules[0].when[4].key"
            ]
        );
        assert!(found[0]
            .message
            .starts_with("condition key \"source.unknownKey\" is not supported by Istio"));
        assert!(found[1]
            .fix
            .starts_with("did you mean \"source.namespace\"?"));
        assert!(found[2].message.contains("Istio removed it"));
        assert!(found[3].message.contains("must be in brackets"));
        assert!(each(
            &UNKNOWN_CONDITION_KEY,
            json!({"rules": [{"when": [{"key": "source.ip", "values": ["1.2.3.4"]}, {"key": "connection.sni", "values": ["a"]}]}]})
        )
        .is_empty());
    }

    #[test]
    fn quoted_condition_key() {
        let found = each(
            &QUOTED_CONDITION_KEY,
            json!({"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}], "when": [
                {"key": "request.headers[\"x-api-version\"]", "values": ["v1"]},
                {"key": "request.auth.claims[groups]['admin']", "values": ["x"]},
                {"key": "request.headers[x-ok]", "values": ["v1"]},
            ]}]}),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.rules[0].when[0].key", "spec.rules[0].when[1].key"]
        );
        assert_eq!(
            found[0].message,
            "quoted header name: Istio keeps the quotes, so this condition never matches and the ALLOW rule never applies"
        );
        assert_eq!(found[0].fix, "write key: request.headers[x-api-version]");
        assert_eq!(
            found[1].fix,
            "write key: request.auth.claims[groups][admin]"
        );
        let found = each(
            &QUOTED_CONDITION_KEY,
            json!({"action": "DENY", "rules": [{"when": [{"key": "request.headers['x']", "values": ["v1"]}]}]}),
        );
        assert!(found[0].message.ends_with("and the DENY rule never fires"));
        assert!(each(
            &QUOTED_CONDITION_KEY,
            json!({"rules": [{"when": [{"key": "request.auth.claims[iss]", "values": ["a"]}]}]})
        )
        .is_empty());
    }

    #[test]
    fn deny_all_delete() {
        for v in VERSIONS {
            let o = ap(v, json!({}));
            let found = run(&DENY_ALL_DELETE, Operation::Delete, v, "prod", &o);
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].path, "spec");
            assert!(found[0]
                .message
                .starts_with("deleting allow-nothing AuthorizationPolicy prod/p removes the default-deny baseline for every workload in namespace \"prod\""));
            assert!(found[0].fix.starts_with("keep it"));
            // CREATE/UPDATE of it, DELETE of a policy with rules or a selector: fine.
            for op in WRITES {
                assert!(run(&DENY_ALL_DELETE, op, v, "prod", &o).is_empty());
            }
            for spec in [
                json!({"rules": [{"from": [{"source": {"namespaces": ["a"]}}]}]}),
                json!({"selector": sel()}),
                json!({"action": "DENY", "rules": [{}]}),
            ] {
                let o = ap(v, spec);
                assert!(run(&DENY_ALL_DELETE, Operation::Delete, v, "prod", &o).is_empty());
            }
        }
    }

    /// Run a rule over an UPDATE from `old` to `new` (specs, annotations) in `ns`.
    fn update_ap(
        rule: &Rule,
        ns: &str,
        old: (Value, Value),
        new: (Value, Value),
    ) -> Vec<Violation> {
        use crate::rules::{Ctx, ReviewCache};
        let make = |(spec, annotations): (Value, Value)| {
            obj(
                json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "p", "namespace": ns, "annotations": annotations}, "spec": spec}),
            )
        };
        let (old, new) = (make(old), make(new));
        let op = Operation::Update;
        let review = Review {
            kind: Kind::AuthorizationPolicy,
            version: "v1",
            operation: &op,
            namespace: ns,
            name: "p",
            object: Some(&new),
            old_object: Some(&old),
            dry_run: false,
            created_for: None,
        };
        let mesh = crate::mesh::MeshContext::default();
        let ctx = Ctx {
            policy: &crate::config::Policy::default(),
            mesh: &mesh,
            cluster: &crate::context::NoCluster,
            cache: &ReviewCache::default(),
        };
        let mut out = Vec::new();
        (rule.check)(&review, &ctx, &mut out);
        out
    }

    #[test]
    fn deny_all_weakened_by_update_is_the_deletion() {
        let nothing = (json!({}), json!({}));
        for ns in ["prod", "istio-system"] {
            for (new, path, what) in [
                (
                    (json!({"selector": sel()}), json!({})),
                    "spec.selector",
                    "adds the selector",
                ),
                (
                    (
                        json!({"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}]}),
                        json!({}),
                    ),
                    "spec.targetRefs",
                    "attaches it to target refs",
                ),
                (
                    (
                        json!({"rules": [{"from": [{"source": {"namespaces": ["a"]}}]}]}),
                        json!({}),
                    ),
                    "spec.rules",
                    "adds rules",
                ),
                (
                    (json!({"rules": [{}]}), json!({})),
                    "spec.rules",
                    "adds rules",
                ),
                (
                    (
                        json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/x"]}}]}]}),
                        json!({}),
                    ),
                    "spec.action",
                    "sets action: DENY",
                ),
                (
                    (json!({"action": "AUDIT"}), json!({})),
                    "spec.action",
                    "sets action: AUDIT",
                ),
                (
                    (json!({}), json!({"istio.io/dry-run": "true"})),
                    "metadata.annotations[\"istio.io/dry-run\"]",
                    "turns on istio.io/dry-run",
                ),
            ] {
                let found = update_ap(&DENY_ALL_DELETE, ns, nothing.clone(), new.clone());
                assert_eq!(found.len(), 1, "{ns} {new:?}");
                assert_eq!(found[0].path, path);
                assert!(found[0].message.contains(what), "{}", found[0].message);
                assert!(found[0]
                    .message
                    .contains("stops being the default-deny baseline"));
            }
            // Still allow-nothing (a label, an annotation), or not allow-nothing before: fine.
            for (old, new) in [
                (nothing.clone(), (json!({}), json!({"team": "a"}))),
                (nothing.clone(), (json!({"action": "ALLOW"}), json!({}))),
                (
                    (json!({"selector": sel()}), json!({})),
                    (json!({"selector": sel(), "rules": [{}]}), json!({})),
                ),
                (
                    (json!({}), json!({"istio.io/dry-run": "true"})),
                    (json!({"rules": [{}]}), json!({})),
                ),
            ] {
                assert!(
                    update_ap(&DENY_ALL_DELETE, ns, old.clone(), new.clone()).is_empty(),
                    "{old:?} -> {new:?}"
                );
            }
        }
    }

    #[test]
    fn allow_negative_match() {
        let found = each(
            &ALLOW_NEGATIVE_MATCH,
            json!({"rules": [
                {"from": [{"source": {"notNamespaces": ["untrusted"]}}]},
                {"when": [{"key": "request.auth.claims[sub]", "notValues": ["x"]}]},
            ]}),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].from[0].source.notNamespaces",
                "spec.rules[1].when[0].notValues"
            ]
        );
        assert!(found[0]
            .message
            .contains("also matches plaintext callers (no identity)"));
        assert!(found[1].message.contains("requests without a JWT"));
        // A positive match of the same family fails closed: fine (the tutorial's jwt-authz).
        assert!(each(
            &ALLOW_NEGATIVE_MATCH,
            json!({"rules": [
                {"from": [{"source": {"requestPrincipals": ["https://a/*"]}}], "when": [{"key": "request.auth.claims[sub]", "notValues": ["x"]}]},
                {"from": [{"source": {"principals": ["cluster.local/ns/a/sa/*"], "notPrincipals": ["cluster.local/ns/a/sa/b"]}}]},
            ]})
        )
        .is_empty());
        assert!(each(
            &ALLOW_NEGATIVE_MATCH,
            json!({"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]})
        )
        .is_empty());
    }

    #[test]
    fn deny_positive_identity() {
        let found = each(
            &DENY_POSITIVE_IDENTITY,
            json!({"action": "DENY", "rules": [
                {"from": [{"source": {"namespaces": ["untrusted"]}}]},
                {"when": [{"key": "source.principal", "values": ["cluster.local/ns/a/sa/b"]}]},
            ]}),
        );
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].from[0].source.namespaces",
                "spec.rules[1].when[0].values"
            ]
        );
        assert!(found[0]
            .message
            .contains("never matches them unless mTLS is STRICT"));
        assert!(found[0].fix.contains("notPrincipals: [\"*\"]"));
        // The documented defence-in-depth pattern, and ALLOW policies, are fine.
        assert!(each(
            &DENY_POSITIVE_IDENTITY,
            json!({"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]})
        )
        .is_empty());
        assert!(each(
            &DENY_POSITIVE_IDENTITY,
            json!({"rules": [{"from": [{"source": {"namespaces": ["a"]}}]}]})
        )
        .is_empty());
    }

    #[test]
    fn action_without_rules() {
        let found = each(&ACTION_WITHOUT_RULES, json!({"action": "DENY"}));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec");
        assert_eq!(
            found[0].message,
            "a DENY policy without rules never matches any request, so it enforces nothing"
        );
        let found = each(
            &ACTION_WITHOUT_RULES,
            json!({"action": "CUSTOM", "provider": {"name": "ext"}, "rules": []}),
        );
        assert_eq!(found[0].path, "spec.rules");
        assert!(found[0].fix.contains("rules: [{}]"));
        assert!(each(&ACTION_WITHOUT_RULES, json!({})).is_empty());
        assert!(each(
            &ACTION_WITHOUT_RULES,
            json!({"action": "DENY", "rules": [{}]})
        )
        .is_empty());
    }

    #[test]
    fn http_deny_without_ports() {
        let found = each(
            &HTTP_ONLY_DENY_WITHOUT_PORTS,
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]}),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.rules[0]");
        assert!(found[0].message.contains("denies all TCP traffic"));
        assert!(each(
            &HTTP_ONLY_DENY_WITHOUT_PORTS,
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"], "ports": ["8080"]}}]}]})
        )
        .is_empty());
        assert!(each(
            &HTTP_ONLY_DENY_WITHOUT_PORTS,
            json!({"rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]})
        )
        .is_empty());
    }

    #[test]
    fn ip_hints() {
        let spec = json!({"rules": [{"from": [{"source": {"remoteIpBlocks": ["1.2.3.4"], "ipBlocks": ["10.0.0.0/8"]}}],
                                     "when": [{"key": "remote.ip", "values": ["1.2.3.4"]}, {"key": "source.ip", "values": ["1.2.3.4"]}]}]});
        let found = each(&REMOTE_IP_UNTRUSTED, spec.clone());
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].from[0].source.remoteIpBlocks",
                "spec.rules[0].when[0].key"
            ]
        );
        assert!(found[0].message.contains("numTrustedProxies"));
        let found = each(&SOURCE_IP_BEHIND_GATEWAY, spec);
        let paths: Vec<_> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rules[0].from[0].source.ipBlocks",
                "spec.rules[0].when[1].key"
            ]
        );
        assert!(found[0].message.contains("not the original client's"));
        let clean =
            json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}]}]});
        assert!(each(&REMOTE_IP_UNTRUSTED, clean.clone()).is_empty());
        assert!(each(&SOURCE_IP_BEHIND_GATEWAY, clean).is_empty());
    }
}
