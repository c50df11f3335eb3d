//! EnvoyFilter (networking.istio.io v1alpha3): a patch of the proxies' generated configuration.
//! A tenant who may write one in their namespace can undo, for the workloads it selects (or the
//! whole namespace, or in the root namespace the whole mesh), everything meshguard keeps: the
//! RBAC filters that enforce AuthorizationPolicy, the JWT filter RequestAuthentication configures,
//! the TLS transport socket that makes STRICT mutual TLS, and the inbound listener's filter chains
//! themselves. These rules refuse the patches that reach those parts; patches that add filters
//! elsewhere (Lua, Wasm, stats, rate limits), tune timeouts or touch outbound clusters toward
//! external hosts pass.
//!
//! Semantics (istio/istio `pilot/pkg/networking/core/envoyfilter/`, see
//! [`crate::model::envoy_filter`]): `match.context` defaults to `ANY`, which includes the sidecar's
//! inbound side; a match that names no filter applies to every filter of its level.
//!
//! Exemptions: EnvoyFilters are judged in every namespace, the root namespace included, like
//! Istio's security policies: one in the root namespace applies to every proxy of the mesh, so it
//! is the last place to leave unchecked. Istio's own EnvoyFilters (stats filters inserted before
//! the router) touch none of these parts. A deliberate mesh-wide patch is allowed by exempting
//! the rule for the root namespace in the meshguard policy, where it is visible and reviewed.

use super::destination_rule::host_in_mesh;
use super::{Action, Rule, Violation};
use crate::model::decode_spec;
use crate::model::envoy_filter::{find_string, EnvoyFilter, PatchAt, PatchContext};
use crate::resource::{Kind, Review};

const KINDS: &[Kind] = &[Kind::EnvoyFilter];

/// The reviewed EnvoyFilter; a spec the typed decode refuses (not an object) reads as empty.
fn envoy_filter<'a>(review: &Review<'a>) -> EnvoyFilter<'a> {
    decode_spec(review.spec()).unwrap_or_default()
}

/// The filters that enforce mutual TLS identities and authorization, and the dynamic-metadata
/// namespaces authorization reads (a filter that writes `istio_authn` can forge request
/// principals): Istio's RBAC (AuthorizationPolicy ALLOW/DENY), ext_authz (CUSTOM), the JWT filter
/// (RequestAuthentication) and Istio's authn filter, by filter name or typed-config type URL.
pub(crate) const SECURITY_MARKERS: &[&str] = &[
    "envoy.filters.http.rbac",
    "envoy.filters.network.rbac",
    "envoy.extensions.filters.http.rbac",
    "envoy.extensions.filters.network.rbac",
    "jwt_authn",
    "ext_authz",
    "istio_authn",
    "istio.authn",
];

/// The network filter that holds the HTTP filters (RBAC, JWT, ext_authz among them).
pub(crate) const HCM: &str = "envoy.filters.network.http_connection_manager";

fn is_security(name: &str) -> bool {
    SECURITY_MARKERS.iter().any(|m| name.contains(m))
}

/// Operations that take away or rewrite what they match.
fn rewrites(op: &str) -> bool {
    matches!(op, "REMOVE" | "REPLACE" | "MERGE")
}

fn context_text(p: &PatchAt<'_, '_>) -> &'static str {
    match p.context() {
        PatchContext::Any => {
            "every proxy listener (context ANY), the sidecar's inbound side included"
        }
        PatchContext::SidecarInbound => "the sidecar's inbound listener",
        PatchContext::Gateway => "the gateway's listeners",
        PatchContext::SidecarOutbound => "the sidecar's outbound side",
        PatchContext::Other => "the proxy",
    }
}

pub(crate) const EXEMPT_FIX: &str = "if this patch is deliberate and reviewed, exempt the EnvoyFilter's namespace from this rule in the meshguard policy";

pub(crate) static SECURITY_FILTER: Rule = Rule {
    id: "ef-security-filter",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "an EnvoyFilter patch that removes, replaces or merges into the filters enforcing authorization and authentication (envoy.filters.http.rbac, envoy.filters.network.rbac, jwt_authn, ext_authz, istio_authn; or every filter of a level, when it names none), or that adds or configures one of them, on the sidecar's inbound side or a gateway",
    example_fix: "express the access rule as an AuthorizationPolicy (and tokens as a RequestAuthentication) instead of patching Envoy",
    needs: &[],
    check: |review, _ctx, out| {
        let ef = envoy_filter(review);
        for p in ef.patches() {
            if !p.reaches_enforcement() {
                continue;
            }
            let op = p.operation();
            let base = p.path();
            let (path, what) = match (p.apply_to(), rewrites(op)) {
                ("HTTP_FILTER", true) => match p.sub_filter() {
                    None | Some(None) => (
                        format!("{base}.match.listener.filterChain.filter"),
                        format!("{op} of HTTP_FILTER without a subFilter name applies to every HTTP filter, the RBAC, JWT and ext_authz filters included"),
                    ),
                    Some(Some(name)) if is_security(name) => (
                        format!("{base}.match.listener.filterChain.filter.subFilter.name"),
                        format!("{op} of HTTP filter {name:?}, which enforces authorization or authentication"),
                    ),
                    _ => continue_value(&p),
                },
                ("NETWORK_FILTER", true) => match p.filter_name() {
                    None => (
                        format!("{base}.match.listener.filterChain"),
                        format!("{op} of NETWORK_FILTER without a filter name applies to every network filter, the RBAC filter and the HTTP connection manager (which holds the HTTP RBAC and JWT filters) included"),
                    ),
                    Some(name) if is_security(name) => (
                        format!("{base}.match.listener.filterChain.filter.name"),
                        format!("{op} of network filter {name:?}, which enforces authorization"),
                    ),
                    Some(HCM) if op != "MERGE" => (
                        format!("{base}.match.listener.filterChain.filter.name"),
                        format!("{op} of the HTTP connection manager takes away the HTTP filters inside it, RBAC and JWT included"),
                    ),
                    _ => continue_value(&p),
                },
                ("LISTENER_FILTER", true) if p.listener_filter().is_some_and(is_security) => (
                    format!("{base}.match.listener.listenerFilter"),
                    format!("{op} of a listener filter that enforces authorization"),
                ),
                _ => continue_value(&p),
            };
            if path.is_empty() {
                continue;
            }
            out.push(Violation::new(
                path,
                format!(
                    "configPatches[{}] reaches {}: {what}, so AuthorizationPolicy (or RequestAuthentication) is no longer enforced as written for the workloads it selects",
                    p.index,
                    context_text(&p)
                ),
                format!("remove this patch and express the rule as an AuthorizationPolicy or RequestAuthentication; {EXEMPT_FIX}"),
            ));
        }
    },
};

/// A patch whose value adds or configures a security filter (or its metadata): its path and
/// text; empty when it does not.
fn continue_value(p: &PatchAt<'_, '_>) -> (String, String) {
    let base = format!("{}.patch.value", p.path());
    let found = p
        .patch_value()
        .and_then(|v| find_string(v, &base, &|s| is_security(s)));
    match found {
        Some((path, name)) => (
            path,
            format!(
                "its {} value names {name:?}: it adds or configures a filter (or the metadata) that authorization and authentication rely on",
                match p.operation() {
                    "" => "patch",
                    op => op,
                }
            ),
        ),
        None => (String::new(), String::new()),
    }
}

/// Keys that set how a connection is encrypted and authenticated.
pub(crate) const TRANSPORT_KEYS: &[&str] = &[
    "transport_socket",
    "transportSocket",
    "transport_socket_matches",
    "transportSocketMatches",
];

pub(crate) static TRANSPORT_SOCKET: Rule = Rule {
    id: "ef-transport-socket",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "an EnvoyFilter patch that sets a transport_socket: on the inbound side or a gateway it replaces the mutual TLS that STRICT requires, outbound toward an in-mesh host it replaces Istio's client certificates (outbound toward an external host is left alone)",
    example_fix: "use PeerAuthentication for the server side and a DestinationRule tls setting for the client side",
    needs: &[],
    check: |review, ctx, out| {
        let ef = envoy_filter(review);
        for p in ef.patches() {
            let Some(value) = p.patch_value() else { continue };
            let base = format!("{}.patch.value", p.path());
            let Some((path, _)) = find_string(value, &base, &|s| TRANSPORT_KEYS.contains(&s))
            else {
                continue;
            };
            let what = match p.context() {
                PatchContext::SidecarOutbound => {
                    let external = p.cluster_service().is_some_and(|h| {
                        !host_in_mesh(h, ctx.policy, &crate::context::NoCluster)
                    });
                    if external && p.apply_to() == "CLUSTER" {
                        continue; // TLS origination toward a host outside the mesh
                    }
                    "it replaces how the sidecar connects to in-mesh services (Istio's mutual TLS with workload certificates), the same hole as a DestinationRule tls.mode DISABLE"
                }
                _ => "it replaces the TLS the proxy terminates with, so STRICT mutual TLS (and the peer identities AuthorizationPolicy matches on) no longer holds for the workloads it selects",
            };
            out.push(Violation::new(
                path,
                format!(
                    "configPatches[{}] sets a transport socket on {}: {what}",
                    p.index,
                    context_text(&p)
                ),
                format!("remove the transport socket from this patch; set mTLS with PeerAuthentication (server side) and DestinationRule tls (client side); {EXEMPT_FIX}"),
            ));
        }
    },
};

pub(crate) static INBOUND_LISTENER: Rule = Rule {
    id: "ef-inbound-listener",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "an EnvoyFilter patch of the sidecar's inbound listener itself (context SIDECAR_INBOUND or ANY, or virtualInbound): a LISTENER, FILTER_CHAIN or LISTENER_FILTER patch can add a plaintext filter chain, drop or rewrite the mTLS chains, or change the peer address authorization sees",
    example_fix: "patch HTTP filters (INSERT_BEFORE envoy.filters.http.router) instead of listeners and filter chains",
    needs: &[],
    check: |review, _ctx, out| {
        let ef = envoy_filter(review);
        for p in ef.patches() {
            if !p.reaches_inbound() {
                continue;
            }
            let apply_to = p.apply_to();
            let what = match apply_to {
                "LISTENER" => "a LISTENER patch can replace the inbound listener, or add one that serves traffic outside Istio's filter chains",
                "FILTER_CHAIN" => "a FILTER_CHAIN patch can add a plaintext filter chain beside the mTLS ones, remove them, or rewrite their match and TLS",
                "LISTENER_FILTER" => "a LISTENER_FILTER patch can remove the TLS inspector or add one (proxy protocol, original source) that changes the peer address AuthorizationPolicy sees",
                _ => continue,
            };
            let op = match p.operation() {
                "" => "patch",
                op => op,
            };
            out.push(Violation::new(
                format!("{}.applyTo", p.path()),
                format!(
                    "configPatches[{}] is a {op} of {apply_to} on {}: {what}, so mutual TLS and AuthorizationPolicy no longer hold as written for the workloads it selects",
                    p.index,
                    context_text(&p)
                ),
                format!("limit the patch to match.context: SIDECAR_OUTBOUND or GATEWAY, or patch HTTP filters instead; {EXEMPT_FIX}"),
            ));
        }
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{obj, run};
    use kube::core::admission::Operation;
    use serde_json::{json, Value};

    fn ef(patches: Value) -> kube::core::DynamicObject {
        obj(
            json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": {"name": "f", "namespace": "prod"},
            "spec": {"workloadSelector": {"labels": {"app": "web"}}, "configPatches": patches}}),
        )
    }

    fn found(rule: &Rule, patches: Value) -> Vec<Violation> {
        let o = ef(patches);
        let mut all = Vec::new();
        for op in [Operation::Create, Operation::Update] {
            let v = run(rule, op, "v1alpha3", "prod", &o);
            if all.is_empty() {
                all = v;
            } else {
                assert_eq!(all, v);
            }
        }
        all
    }

    fn http_filter(context: &str, op: &str, sub: Value) -> Value {
        json!({"applyTo": "HTTP_FILTER", "match": {"context": context, "listener": {"filterChain": {
            "filter": {"name": "envoy.filters.network.http_connection_manager", "subFilter": sub}}}},
            "patch": {"operation": op}})
    }

    /// Istio's own stats filter, a Lua filter before the router, an outbound TLS origination:
    /// the EnvoyFilters people write every day.
    fn harmless() -> Value {
        json!([
            {"applyTo": "HTTP_FILTER", "match": {"context": "SIDECAR_INBOUND", "listener": {"filterChain": {
                "filter": {"name": "envoy.filters.network.http_connection_manager",
                    "subFilter": {"name": "envoy.filters.http.router"}}}}},
             "patch": {"operation": "INSERT_BEFORE", "value": {"name": "envoy.filters.http.lua",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                    "inline_code": "function envoy_on_request(h) h:headers():add('x-hello', 'world') end"}}}},
            {"applyTo": "NETWORK_FILTER", "match": {"context": "SIDECAR_INBOUND", "listener": {"filterChain": {
                "filter": {"name": "envoy.filters.network.http_connection_manager"}}}},
             "patch": {"operation": "MERGE", "value": {"typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "common_http_protocol_options": {"idle_timeout": "30s"}}}}},
            {"applyTo": "CLUSTER", "match": {"context": "SIDECAR_OUTBOUND", "cluster": {"service": "api.example.com"}},
             "patch": {"operation": "MERGE", "value": {"transport_socket": {"name": "envoy.transport_sockets.tls",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": "api.example.com"}}}}},
            {"applyTo": "LISTENER", "match": {"context": "SIDECAR_OUTBOUND", "listener": {"portNumber": 9090}},
             "patch": {"operation": "MERGE", "value": {"per_connection_buffer_limit_bytes": 1024}}},
            {"applyTo": "HTTP_FILTER", "match": {"context": "GATEWAY", "listener": {"filterChain": {
                "filter": {"name": "envoy.filters.network.http_connection_manager",
                    "subFilter": {"name": "envoy.filters.http.router"}}}}},
             "patch": {"operation": "INSERT_BEFORE", "value": {"name": "envoy.filters.http.local_ratelimit"}}}
        ])
    }

    #[test]
    fn ordinary_envoy_filters_pass() {
        for rule in [&SECURITY_FILTER, &TRANSPORT_SOCKET, &INBOUND_LISTENER] {
            assert!(found(rule, harmless()).is_empty(), "{}", rule.id);
            assert!(found(rule, json!([])).is_empty());
        }
    }

    #[test]
    fn removing_or_replacing_authorization_filters_is_refused() {
        for (context, ok) in [
            ("SIDECAR_INBOUND", false),
            ("ANY", false),
            ("GATEWAY", false),
            ("SIDECAR_OUTBOUND", true),
        ] {
            for op in ["REMOVE", "REPLACE", "MERGE"] {
                let f = found(
                    &SECURITY_FILTER,
                    json!([http_filter(
                        context,
                        op,
                        json!({"name": "envoy.filters.http.rbac"})
                    )]),
                );
                assert_eq!(f.is_empty(), ok, "{context} {op}");
                if !ok {
                    assert_eq!(
                        f[0].path,
                        "spec.configPatches[0].match.listener.filterChain.filter.subFilter.name"
                    );
                    assert!(f[0].message.contains("\"envoy.filters.http.rbac\""));
                }
            }
        }
        // No context at all is ANY.
        let mut p = http_filter(
            "ANY",
            "REMOVE",
            json!({"name": "envoy.filters.http.jwt_authn"}),
        );
        p["match"].as_object_mut().expect("match").remove("context");
        assert_eq!(found(&SECURITY_FILTER, json!([p])).len(), 1);
        // A REMOVE that names no HTTP filter removes them all.
        let mut p = http_filter("SIDECAR_INBOUND", "REMOVE", json!(null));
        p["match"]["listener"]["filterChain"]["filter"]
            .as_object_mut()
            .expect("filter")
            .remove("subFilter");
        let f = found(&SECURITY_FILTER, json!([p]));
        assert!(f[0].message.contains("applies to every HTTP filter"));
        // Network level: the RBAC filter, every filter, or the connection manager replaced.
        for filter in [
            json!({"name": "envoy.filters.network.rbac"}),
            json!({"name": "envoy.filters.network.http_connection_manager"}),
            json!(null),
        ] {
            let p = json!({"applyTo": "NETWORK_FILTER", "match": {"context": "SIDECAR_INBOUND",
                "listener": {"filterChain": {"filter": filter}}},
                "patch": {"operation": "REPLACE", "value": {"name": "envoy.filters.network.tcp_proxy"}}});
            assert_eq!(found(&SECURITY_FILTER, json!([p])).len(), 1, "{filter}");
        }
        // Adding one (a permissive RBAC, a JWT filter trusting other keys) or writing the
        // metadata authorization reads (a Lua filter forging request principals).
        for value in [
            json!({"name": "envoy.filters.http.jwt_authn"}),
            json!({"name": "x", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"}}),
            json!({"name": "envoy.filters.http.lua", "typed_config": {"inline_code":
                "function envoy_on_request(h) h:streamInfo():dynamicMetadata():set('istio_authn', 'request.auth.principal', 'x') end"}}),
        ] {
            let p = json!({"applyTo": "HTTP_FILTER", "match": {"context": "SIDECAR_INBOUND"},
                "patch": {"operation": "INSERT_FIRST", "value": value}});
            let f = found(&SECURITY_FILTER, json!([p]));
            assert_eq!(f.len(), 1, "{value}");
            assert!(
                f[0].path.starts_with("spec.configPatches[0].patch.value"),
                "{}",
                f[0].path
            );
        }
    }

    #[test]
    fn transport_sockets_are_refused_except_toward_external_hosts() {
        let socket = json!({"transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}});
        for (context, apply_to, service, denied) in [
            ("SIDECAR_INBOUND", "FILTER_CHAIN", None, true),
            ("ANY", "CLUSTER", Some("api.example.com"), true),
            ("GATEWAY", "FILTER_CHAIN", None, true),
            (
                "SIDECAR_OUTBOUND",
                "CLUSTER",
                Some("reviews.prod.svc.cluster.local"),
                true,
            ),
            ("SIDECAR_OUTBOUND", "CLUSTER", None, true),
            (
                "SIDECAR_OUTBOUND",
                "CLUSTER",
                Some("api.example.com"),
                false,
            ),
        ] {
            let mut m = json!({"context": context});
            if let Some(s) = service {
                m["cluster"] = json!({"service": s});
            }
            let p = json!({"applyTo": apply_to, "match": m,
                "patch": {"operation": "MERGE", "value": socket.clone()}});
            let f = found(&TRANSPORT_SOCKET, json!([p]));
            assert_eq!(!f.is_empty(), denied, "{context} {apply_to} {service:?}");
            if denied {
                assert_eq!(
                    f[0].path,
                    "spec.configPatches[0].patch.value.transport_socket"
                );
            }
        }
        // camelCase as the CRD accepts it.
        let p = json!({"applyTo": "FILTER_CHAIN", "match": {"context": "SIDECAR_INBOUND"},
            "patch": {"operation": "MERGE", "value": {"transportSocket": {"name": "raw"}}}});
        assert_eq!(found(&TRANSPORT_SOCKET, json!([p])).len(), 1);
    }

    #[test]
    fn inbound_listener_structure_is_refused() {
        for apply_to in ["LISTENER", "FILTER_CHAIN", "LISTENER_FILTER"] {
            for context in ["SIDECAR_INBOUND", "ANY"] {
                let p = json!({"applyTo": apply_to, "match": {"context": context},
                    "patch": {"operation": "ADD", "value": {"filters": []}}});
                let f = found(&INBOUND_LISTENER, json!([p]));
                assert_eq!(f.len(), 1, "{apply_to} {context}");
                assert_eq!(f[0].path, "spec.configPatches[0].applyTo");
            }
            // Outbound and gateway listeners are not the inbound side ...
            for context in ["SIDECAR_OUTBOUND", "GATEWAY"] {
                let p = json!({"applyTo": apply_to, "match": {"context": context},
                    "patch": {"operation": "MERGE", "value": {}}});
                assert!(found(&INBOUND_LISTENER, json!([p])).is_empty());
            }
            // ... unless the match names virtualInbound.
            let p = json!({"applyTo": apply_to, "match": {"context": "SIDECAR_OUTBOUND",
                "listener": {"name": "virtualInbound"}}, "patch": {"operation": "REMOVE"}});
            assert_eq!(found(&INBOUND_LISTENER, json!([p])).len(), 1);
        }
        // Filters inside the chains are the other rules' business.
        let p = http_filter(
            "SIDECAR_INBOUND",
            "INSERT_BEFORE",
            json!({"name": "envoy.filters.http.router"}),
        );
        assert!(found(&INBOUND_LISTENER, json!([p])).is_empty());
    }
}
