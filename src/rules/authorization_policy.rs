//! AuthorizationPolicy (security.istio.io v1, v1beta1): no allow-all, no identity-less ALLOW,
//! well-formed principals, conditions Istio understands.
//!
//! Semantics (Istio's AuthorizationPolicy reference, `pilot/pkg/security/authz/model`): CUSTOM,
//! then DENY, then ALLOW. `spec: {}` is allow-nothing for its scope, `rules: [{}]` is allow-all.
//! A rule matches when one `from`, one `to` and every `when` match; unset fields match anything.
//! Identity fields are empty for plaintext callers, so negative identity matches in ALLOW and
//! positive identity matches in DENY let plaintext through unless mTLS is STRICT. Schema errors
//! Istio itself rejects live in `istio_validation`. Every rule reads the object through
//! [`AuthorizationPolicy`] (the typed model, with the principal and `when`-key grammars).

use super::{closest, Action, Ctx, Rule, Violation};
use crate::model::authorization_policy::{
    bracket_names, is_request_identity_key, is_source_key, key_names, principal, RuleView, WhenKey,
    HTTP_OPERATION_FIELDS,
};
use crate::model::authorization_policy::{AuthorizationPolicy, AuthzAction, ConditionView};
use crate::resource::{spec_of, Kind, Review};

const KINDS: &[Kind] = &[Kind::AuthorizationPolicy];

/// The policy being written ([`ReviewCache::authorization_policy`](super::ReviewCache)).
fn policy<'x>(review: &Review<'x>, ctx: &Ctx<'x>) -> std::borrow::Cow<'x, AuthorizationPolicy<'x>> {
    ctx.cache.authorization_policy(review)
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
// Rules

pub(crate) static ALLOW_ALL: Rule = Rule {
    id: "ap-allow-all",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "ALLOW (or no action) with an empty rule {}: it matches every request",
    example_fix: "rules: [{from: [{source: {principals: [\"cluster.local/ns/prod/sa/web\"]}}]}]",
    needs: &[],
    check: |review, ctx, out| {
        let ap = policy(review, ctx);
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

pub(crate) static WILDCARD_SOURCE: Rule = Rule {
    id: "ap-wildcard-source",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "ALLOW with principals: [\"*\"] or namespaces: [\"*\"] admits any mesh workload",
    example_fix: "principals: [\"cluster.local/ns/prod/sa/web\"]",
    needs: &[],
    check: |review, ctx, out| {
        let ap = policy(review, ctx);
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

pub(crate) static ALLOW_WITHOUT_SOURCE: Rule = Rule {
    id: "ap-allow-without-source",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "an ALLOW rule with no from and no source condition lets any caller in",
    example_fix: "from: [{source: {principals: [\"cluster.local/ns/prod/sa/web\"]}}]",
    needs: &[],
    check: |review, ctx, out| {
        let ap = policy(review, ctx);
        if !ap.is_allow() {
            return;
        }
        for rule in ap.rules() {
            if rule.is_empty() || !rule.is_object() || rule.has_from() {
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

pub(crate) static PRINCIPAL_FORMAT: Rule = Rule {
    id: "ap-principal-format",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a principal not of the form <trust-domain>/ns/<namespace>/sa/<account> (spiffe:// prefixes, missing segments, inner *)",
    example_fix: "principals: [\"cluster.local/ns/prod/sa/web\"]",
    needs: &[],
    check: |review, ctx, out| {
        principals(&policy(review, ctx), |path, p| {
            if let Some((message, fix)) = principal::problem(p, &ctx.mesh.trust_domain().value) {
                out.push(Violation::new(path(), message, fix));
            }
        });
    },
};

pub(crate) static FOREIGN_TRUST_DOMAIN: Rule = Rule {
    id: "ap-foreign-trust-domain",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "a principal's trust domain is neither the mesh trust domain nor one of its aliases",
    example_fix:
        "principals: [\"cluster.local/ns/prod/sa/web\"] (or add the domain to trustDomainAliases)",
    needs: &[],
    check: |review, ctx, out| {
        let mesh = ctx.mesh;
        principals(&policy(review, ctx), |path, p| {
            let Some(td) = principal::trust_domain(p) else {
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

pub(crate) static EXACT_PATH_TRAILING_SLASH: Rule = Rule {
    id: "ap-exact-path-trailing-slash",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "a path like /api/ with no wildcard is an exact match, usually meant /api/*",
    example_fix: "paths: [\"/api/*\"]",
    needs: &[],
    check: |review, ctx, out| {
        for op in policy(review, ctx).operations() {
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

pub(crate) static UNKNOWN_CONDITION_KEY: Rule = Rule {
    id: "ap-unknown-condition-key",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a when key Istio does not support (rejected by current Istio, silently ignored by older versions)",
    example_fix: "when: [{key: source.namespace, values: [\"prod\"]}]",
    needs: &[],
    check: |review, ctx, out| {
        for cond in policy(review, ctx).conditions() {
            let Some(key) = cond.key() else { continue };
            if key.is_empty() || WhenKey::parse(key).is_supported() {
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
            let suggestions: Vec<&str> = key_names().collect();
            let fix = match closest(base, &suggestions) {
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

fn is_quoted(name: &str) -> bool {
    name.len() >= 2
        && ((name.starts_with('"') && name.ends_with('"'))
            || (name.starts_with('\'') && name.ends_with('\'')))
}

pub(crate) static QUOTED_CONDITION_KEY: Rule = Rule {
    id: "ap-quoted-condition-key",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "a quoted name in a when key (request.headers[\"x\"]): Istio keeps the quotes, so the condition never matches",
    example_fix: "key: request.headers[x-api-version]",
    needs: &[],
    check: |review, ctx, out| {
        let ap = policy(review, ctx);
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
    if !new.selector().is_empty() {
        return (
            "spec.selector",
            format!(
                "adds the selector {{{}}}, which narrows the baseline to the selected workloads",
                new.selector().describe()
            ),
        );
    }
    if new.has_target_refs() {
        return (
            new.target_refs_path(),
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

pub(crate) static DENY_ALL_DELETE: Rule = Rule {
    id: "ap-deny-all-delete",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "deleting a namespace- or mesh-wide allow-nothing policy (spec: {}), or an update that makes it allow something (a selector, targetRefs, rules, another action, dry-run), removes the default-deny baseline",
    example_fix: "keep the allow-nothing policy and add ALLOW policies for the traffic you need",
    needs: &[],
    check: |review, ctx, out| {
        let Some(old) = review.old_object else { return };
        let before = AuthorizationPolicy::of(spec_of(old));
        if !before.is_allow_nothing(crate::model::labels::is_dry_run(old)) {
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
                let dry_run = crate::model::labels::is_dry_run(new);
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

pub(crate) static ALLOW_NEGATIVE_MATCH: Rule = Rule {
    id: "ap-allow-negative-match",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "ALLOW keyed on a negative identity match (notPrincipals, notNamespaces, notValues) also admits callers with no identity",
    example_fix: "principals: [\"cluster.local/ns/prod/sa/web\"] instead of notPrincipals",
    needs: &[],
    check: |review, ctx, out| {
        let ap = policy(review, ctx);
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

pub(crate) static DENY_POSITIVE_IDENTITY: Rule = Rule {
    id: "ap-deny-positive-identity",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "DENY keyed on positive identity fields (principals, namespaces, serviceAccounts) is bypassed by plaintext callers unless mTLS is STRICT",
    example_fix: "keep mTLS STRICT for the workload, or add a DENY on notPrincipals: [\"*\"]",
    needs: &[],
    check: |review, ctx, out| {
        let ap = policy(review, ctx);
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

pub(crate) static ACTION_WITHOUT_RULES: Rule = Rule {
    id: "ap-action-without-rules",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "DENY or CUSTOM without rules never matches (Istio rejects or ignores it)",
    example_fix: "rules: [{to: [{operation: {paths: [\"/admin/*\"]}}]}]",
    needs: &[],
    check: |review, ctx, out| {
        let ap = policy(review, ctx);
        let act = ap.action_str();
        if !matches!(act, "DENY" | "CUSTOM") || ap.has_rules() {
            return;
        }
        let path = if ap.rules_written() {
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

/// Source fields that only HTTP traffic carries (a JWT).
const HTTP_SOURCE_FIELDS: &[&str] = &["requestPrincipals", "notRequestPrincipals"];

/// The rule uses fields only HTTP traffic carries, and whether it limits ports.
fn http_only_and_ports(rule: &RuleView<'_, '_>) -> (bool, bool) {
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
            http_only |= crate::model::authorization_policy::is_request_key(k);
            ports |= k == "destination.port";
        }
    }
    (http_only, ports)
}

pub(crate) static HTTP_ONLY_DENY_WITHOUT_PORTS: Rule = Rule {
    id: "ap-http-deny-without-ports",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "a DENY rule with HTTP-only fields and no ports denies all TCP (non-HTTP) traffic to the workload",
    example_fix: "to: [{operation: {ports: [\"8080\"], paths: [\"/admin/*\"]}}]",
    needs: &[crate::context::Need::NamespaceLabels],
    check: |review, ctx, out| {
        let ap = policy(review, ctx);
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
        .filter(|c: &ConditionView<'_, '_>| c.key() == Some(key))
    {
        out.push(Violation::new(format!("{}.key", cond.path()), msg, fix));
    }
}

pub(crate) static REMOTE_IP_UNTRUSTED: Rule = Rule {
    id: "ap-remote-ip-untrusted",
    kinds: KINDS,
    default_action: Action::Audit,
    summary: "remoteIpBlocks / remote.ip come from X-Forwarded-For and are only meaningful with gatewayTopology.numTrustedProxies",
    example_fix: "set meshConfig.defaultConfig.gatewayTopology.numTrustedProxies on the gateway",
    needs: &[],
    check: |review, ctx, out| {
        report_source_fields(
            &policy(review, ctx),
            ["remoteIpBlocks", "notRemoteIpBlocks"],
            "remote.ip",
            "remote IPs come from X-Forwarded-For or the PROXY protocol: unless the gateway sets gatewayTopology.numTrustedProxies, the client controls the header (or Istio uses the peer IP)",
            "configure gatewayTopology.numTrustedProxies (or PROXY protocol) on the ingress gateway, and apply the policy there",
            out,
        );
    },
};

pub(crate) static SOURCE_IP_BEHIND_GATEWAY: Rule = Rule {
    id: "ap-source-ip-behind-gateway",
    kinds: KINDS,
    default_action: Action::Audit,
    summary: "ipBlocks / source.ip match the connection's peer IP: behind an ingress gateway that is the gateway pod, not the client",
    example_fix: "use remoteIpBlocks on the ingress gateway (with numTrustedProxies) for client IPs",
    needs: &[],
    check: |review, ctx, out| {
        report_source_fields(
            &policy(review, ctx),
            ["ipBlocks", "notIpBlocks"],
            "source.ip",
            "ipBlocks and source.ip match the peer address of the connection: for traffic through an ingress gateway (or any proxy) that is the proxy pod's IP, not the original client's",
            "for external client addresses use remoteIpBlocks in a policy on the ingress gateway; for in-mesh callers match principals instead of IPs",
            out,
        );
    },
};

#[cfg(test)]
mod tests;
