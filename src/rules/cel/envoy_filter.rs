//! CEL forms of the EnvoyFilter rules ([`crate::rules::envoy_filter`]).
//!
//! A patch is read as [`crate::model::envoy_filter::PatchAt`] reads it: `match.context`
//! absent is `ANY`, the sidecar's inbound listener is `virtualInbound` (port 15006). The rules
//! that look inside `patch.value` (any Envoy configuration, kept as written by the CRD's
//! `x-kubernetes-preserve-unknown-fields`) search it as `envoy_filter::find_string` does, for
//! the first key or string value that names what they look for; CEL has no recursion, so the
//! policy unrolls the search to [`DEPTH`] levels below `patch.value`, and takes the first hit in
//! the webhook's order (keys sorted, a key before what is below it, list items in order).

use super::destination_rule::label_suffix;
use super::{lit, lit_list, site, Cel, CelForm, Coverage, On};
use crate::rules::destination_rule::PUBLIC_TLDS;
use crate::rules::envoy_filter as ef;

/// How many levels below `patch.value` the policy searches: Envoy's listener configuration puts
/// an HTTP filter's name 8 levels down (`filter_chains[0].filters[0].typed_config.http_filters[0]
/// .name`), a transport socket 1 to 3.
pub(crate) const DEPTH: usize = 12;

/// What the webhook adds for a rule that searches `patch.value`.
const DEEPER: &str = "keys and strings nested more than 12 levels below a patch's patch.value (the policy unrolls the webhook's search to 12 levels; Envoy's own configuration puts what these rules look for 1 to 8 levels down)";

/// Separates the steps of a node's sort key: below every character a key is made of, so that a
/// key sorts before its descendants and before a longer sibling, as a depth-first walk of
/// sorted keys visits them.
const SEP: &str = "\u{1}";

/// Every patch, as `{i, c (the patch), ctx, op, at}` (`match.context` absent is `ANY`).
fn patches() -> (&'static str, String) {
    (
        "patches",
        "$o.?spec.?configPatches.orValue([]).transformList(i, c, {'i': dyn(i), 'c': dyn(c), 'ctx': dyn(c.?match.?context.orValue('ANY')), 'op': dyn(c.?patch.?operation.orValue('')), 'at': dyn(c.?applyTo.orValue(''))})".to_owned(),
    )
}

/// The nodes of every `patch.value`, level by level (`n0` the values themselves): `{i (patch),
/// p (field path), s (sort key), k (the key it sits at, '' in a list), v (the value)}`, paths
/// written as `find_string` writes them (`.key` for plain keys, `["key"]` otherwise).
fn levels() -> Vec<(&'static str, String)> {
    const NAMES: [&str; DEPTH + 1] = [
        "n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10", "n11", "n12",
    ];
    let sep = lit(SEP);
    let mut out = vec![(
        NAMES[0],
        "$patches.filter(x, x.c.?patch.?value.hasValue()).map(x, {'i': x.i, 'p': dyn('spec.configPatches[' + string(x.i) + '].patch.value'), 's': dyn(''), 'k': dyn(''), 'v': dyn(x.c.patch.value)})".to_owned(),
    )];
    for d in 1..=DEPTH {
        out.push((
            NAMES[d],
            format!(
                "${prev}.map(n, type(n.v) == map ? n.v.transformList(k, v, {{'i': n.i, 'p': dyn(string(n.p) + (string(k).matches('^[A-Za-z0-9_@-]+$') ? '.' + string(k) : '[' + strings.quote(string(k)) + ']')), 's': dyn(string(n.s) + {sep} + string(k)), 'k': dyn(string(k)), 'v': dyn(v)}}) : (type(n.v) == list ? n.v.transformList(j, v, {{'i': n.i, 'p': dyn(string(n.p) + '[' + string(j) + ']'), 's': dyn(string(n.s) + {sep} + ('000000' + string(j)).substring(size(string(j)))), 'k': dyn(''), 'v': dyn(v)}}) : [])).flatten()",
                prev = NAMES[d - 1],
            ),
        ));
    }
    let all: Vec<String> = NAMES.iter().map(|n| format!("${n}")).collect();
    out.push((
        "strings",
        format!(
            "({}).map(x, (string(x.k) != '' ? [{{'i': x.i, 's': dyn(string(x.s)), 'p': x.p, 'n': x.k}}] : []) + (type(x.v) == string ? [{{'i': x.i, 's': dyn(string(x.s) + {sep}), 'p': x.p, 'n': x.v}}] : [])).flatten()",
            all.join(" + ")
        ),
    ));
    out
}

/// `first`: per patch (by index), `[]` or `[the first string for which hit(h) holds]`, as
/// `{p (path), n (the string)}`.
fn first(hit: &str) -> (&'static str, String) {
    (
        "first",
        format!(
            "[$strings.filter(h, {hit})].map(hits, $patches.map(x, [hits.filter(h, h.i == x.i)].map(hs, size(hs) == 0 ? [] : [[hs.map(g, string(g.s)).min()].map(m, hs.filter(g, string(g.s) == m)[0])[0]])[0]))[0]"
        ),
    )
}

/// `context_text` of patch `x`.
const CONTEXT_TEXT: &str = "(x.ctx == 'ANY' ? 'every proxy listener (context ANY), the sidecar\\'s inbound side included' : (x.ctx == 'SIDECAR_INBOUND' ? 'the sidecar\\'s inbound listener' : (x.ctx == 'GATEWAY' ? 'the gateway\\'s listeners' : (x.ctx == 'SIDECAR_OUTBOUND' ? 'the sidecar\\'s outbound side' : 'the proxy'))))";

/// `ConfigPatch::reaches_inbound` of patch `x`.
const REACHES_INBOUND: &str = "(x.ctx in ['ANY', 'SIDECAR_INBOUND'] || x.c.?match.?listener.?name.orValue('') == 'virtualInbound' || x.c.?match.?listener.?portNumber.orValue(0) == 15006)";

/// The operation in a message (`patch` when none is written).
const OP_TEXT: &str = "(x.op == '' ? 'patch' : string(x.op))";

/// `is_security` of the string expression `s`.
fn is_security(s: &str) -> String {
    format!(
        "{}.exists(m, {s}.contains(m))",
        lit_list(ef::SECURITY_MARKERS)
    )
}

fn exempt_fix(fix: &str) -> String {
    lit(&format!("{fix}; {}", ef::EXEMPT_FIX))
}

pub(crate) static SECURITY_FILTER: CelForm = CelForm {
    rule: &ef::SECURITY_FILTER,
    coverage: Coverage::Partly(DEEPER),
    on: On::Write,
    kinds: None,
    cel: || {
        let mut variables = vec![patches()];
        variables.extend(levels());
        variables.push(first(&is_security("string(h.n)")));
        let base = "'spec.configPatches[' + string(x.i) + ']'";
        let filter = "x.c.?match.?listener.?filterChain.?filter";
        let sub = format!("string({filter}.?subFilter.?name.orValue(''))");
        let name = format!("string({filter}.?name.orValue(''))");
        let listener_filter = "string(x.c.?match.?listener.?listenerFilter.orValue(''))";
        // `continue_value`: the first string of the value that names a security filter.
        let value = format!("$first[int(x.i)].map(h, [string(h.p), 'its ' + {OP_TEXT} + ' value names ' + strings.quote(string(h.n)) + ': it adds or configures a filter (or the metadata) that authorization and authentication rely on'])");
        let branches = format!(
            "x.at == 'HTTP_FILTER' && rw ? (!{filter}.?subFilter.?name.hasValue() ? [[{base} + '.match.listener.filterChain.filter', string(x.op) + ' of HTTP_FILTER without a subFilter name applies to every HTTP filter, the RBAC, JWT and ext_authz filters included']] : ({sec_sub} ? [[{base} + '.match.listener.filterChain.filter.subFilter.name', string(x.op) + ' of HTTP filter ' + strings.quote({sub}) + ', which enforces authorization or authentication']] : {value})) : (x.at == 'NETWORK_FILTER' && rw ? (!{filter}.?name.hasValue() ? [[{base} + '.match.listener.filterChain', string(x.op) + ' of NETWORK_FILTER without a filter name applies to every network filter, the RBAC filter and the HTTP connection manager (which holds the HTTP RBAC and JWT filters) included']] : ({sec_name} ? [[{base} + '.match.listener.filterChain.filter.name', string(x.op) + ' of network filter ' + strings.quote({name}) + ', which enforces authorization']] : ({name} == {hcm} && x.op != 'MERGE' ? [[{base} + '.match.listener.filterChain.filter.name', string(x.op) + ' of the HTTP connection manager takes away the HTTP filters inside it, RBAC and JWT included']] : {value}))) : (x.at == 'LISTENER_FILTER' && rw && {sec_listener} ? [[{base} + '.match.listener.listenerFilter', string(x.op) + ' of a listener filter that enforces authorization']] : {value}))",
            sec_sub = is_security(&sub),
            sec_name = is_security(&name),
            sec_listener = is_security(listener_filter),
            hcm = lit(ef::HCM),
        );
        Cel {
            variables,
            sites: format!(
                "$patches.filter(x, {REACHES_INBOUND} || x.ctx == 'GATEWAY').map(x, [x.op in ['REMOVE', 'REPLACE', 'MERGE']].map(rw, {branches})[0].map(pw, [string(x.i), {CONTEXT_TEXT}, pw[0], pw[1]])).flatten().map(f, {})",
                site(
                    "f[2]",
                    "'configPatches[' + f[0] + '] reaches ' + f[1] + ': ' + f[3] + ', so AuthorizationPolicy (or RequestAuthentication) is no longer enforced as written for the workloads it selects'",
                    &exempt_fix("remove this patch and express the rule as an AuthorizationPolicy or RequestAuthentication"),
                )
            ),
            weakening: None,
        }
    },
};

/// `host_in_mesh` of the normalised host `h` with no cluster to look namespaces up in (as the
/// webhook's `ef-transport-socket` calls it): a `<service>.<namespace>` host counts unless its
/// last label is a public top-level domain.
fn in_mesh_without_cluster() -> String {
    let svc_cd = "('svc.' + @clusterDomain)";
    format!(
        "h != '' && (h == '*' || !h.contains('.') || {svc} || {svc_cd_match} || @meshHostSuffixes.exists(sfx, {suffix}) || (h.startsWith('*.') ? {wild} : [h.split('.')].exists(l, size(l) == 2 && !(l[1] in {tlds}))))",
        svc = label_suffix("h", "'svc'"),
        svc_cd_match = label_suffix("h", svc_cd),
        suffix = label_suffix("h", "sfx"),
        wild = label_suffix(svc_cd, "h.substring(2).find('(?s)[^.].*$')"),
        tlds = lit_list(PUBLIC_TLDS),
    )
}

pub(crate) static TRANSPORT_SOCKET: CelForm = CelForm {
    rule: &ef::TRANSPORT_SOCKET,
    coverage: Coverage::Partly(DEEPER),
    on: On::Write,
    kinds: None,
    cel: || {
        let mut variables = vec![patches()];
        variables.extend(levels());
        variables.push(first(&format!(
            "string(h.n) in {}",
            lit_list(ef::TRANSPORT_KEYS)
        )));
        let external = format!(
            "x.c.?match.?cluster.?service.hasValue() && ![string(x.c.match.cluster.service).find('(?s)^.*[^.]').lowerAscii()].exists(h, {})",
            in_mesh_without_cluster()
        );
        Cel {
            variables,
            sites: format!(
                "$patches.map(x, x.ctx == 'SIDECAR_OUTBOUND' && x.at == 'CLUSTER' && {external} ? [] : $first[int(x.i)].map(h, {})).flatten()",
                site(
                    "h.p",
                    &format!("'configPatches[' + string(x.i) + '] sets a transport socket on ' + {CONTEXT_TEXT} + ': ' + (x.ctx == 'SIDECAR_OUTBOUND' ? 'it replaces how the sidecar connects to in-mesh services (Istio\\'s mutual TLS with workload certificates), the same hole as a DestinationRule tls.mode DISABLE' : 'it replaces the TLS the proxy terminates with, so STRICT mutual TLS (and the peer identities AuthorizationPolicy matches on) no longer holds for the workloads it selects')"),
                    &exempt_fix("remove the transport socket from this patch; set mTLS with PeerAuthentication (server side) and DestinationRule tls (client side)"),
                )
            ),
            weakening: None,
        }
    },
};

pub(crate) static INBOUND_LISTENER: CelForm = CelForm {
    rule: &ef::INBOUND_LISTENER,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: vec![patches()],
        sites: format!(
            "$patches.filter(x, {REACHES_INBOUND} && x.at in ['LISTENER', 'FILTER_CHAIN', 'LISTENER_FILTER']).map(x, {})",
            site(
                "'spec.configPatches[' + string(x.i) + '].applyTo'",
                &format!("'configPatches[' + string(x.i) + '] is a ' + {OP_TEXT} + ' of ' + string(x.at) + ' on ' + {CONTEXT_TEXT} + ': ' + (x.at == 'LISTENER' ? 'a LISTENER patch can replace the inbound listener, or add one that serves traffic outside Istio\\'s filter chains' : (x.at == 'FILTER_CHAIN' ? 'a FILTER_CHAIN patch can add a plaintext filter chain beside the mTLS ones, remove them, or rewrite their match and TLS' : 'a LISTENER_FILTER patch can remove the TLS inspector or add one (proxy protocol, original source) that changes the peer address AuthorizationPolicy sees')) + ', so mutual TLS and AuthorizationPolicy no longer hold as written for the workloads it selects'"),
                &exempt_fix("limit the patch to match.context: SIDECAR_OUTBOUND or GATEWAY, or patch HTTP filters instead"),
            )
        ),
        weakening: None,
    }
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coverage_text_says_the_depth_unrolled() {
        assert!(DEEPER.contains(&format!("more than {DEPTH} levels")));
        assert_eq!(levels().len(), DEPTH + 2, "n0..=nDEPTH and the strings");
    }

    #[test]
    fn the_sort_key_separator_sorts_below_every_key_character() {
        // A key before its descendants and before a longer sibling: "a" < "a<SEP>x" < "ab".
        let a = "a".to_owned();
        let below = format!("a{SEP}x");
        assert!(a < below && below.as_str() < "ab" && below.as_str() < "a ");
    }
}
