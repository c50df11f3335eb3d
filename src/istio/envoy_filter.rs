//! EnvoyFilter (`networking.istio.io` v1alpha3): its `configPatches`, each with where it applies
//! (`applyTo`, `match.context`, the listener, filter chain, filter and cluster it matches) and
//! what it does (`patch.operation`, `patch.value`).
//!
//! Semantics (istio/istio `pilot/pkg/networking/core/envoyfilter/listener_patch.go`,
//! `cluster_patch.go`; the EnvoyFilter reference): `match.context` defaults to `ANY` (sidecar
//! inbound, sidecar outbound and gateways alike); a match that names no filter (no
//! `filterChain.filter`, no `subFilter`) applies to *every* filter at that level, so a `REMOVE`
//! of an `HTTP_FILTER` without a `subFilter` removes them all, RBAC included. The sidecar's
//! inbound listener is `virtualInbound` (port 15006).

use serde_json::Value;

/// The view of one EnvoyFilter spec.
#[derive(Clone, Copy, Debug)]
pub struct EnvoyFilter<'a> {
    pub spec: &'a Value,
}

impl<'a> EnvoyFilter<'a> {
    pub fn of(spec: &'a Value) -> EnvoyFilter<'a> {
        EnvoyFilter { spec }
    }

    /// Every entry of `spec.configPatches`, with its index.
    pub fn patches(&self) -> impl Iterator<Item = ConfigPatch<'a>> + 'a {
        crate::json::items(self.spec, "configPatches")
            .iter()
            .enumerate()
            .map(|(index, value)| ConfigPatch { index, value })
    }
}

/// One `configPatches[i]`.
#[derive(Clone, Copy, Debug)]
pub struct ConfigPatch<'a> {
    pub index: usize,
    pub value: &'a Value,
}

/// Where a patch applies, as `match.context` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchContext {
    /// `ANY` or absent: sidecar inbound, sidecar outbound and gateways.
    Any,
    SidecarInbound,
    SidecarOutbound,
    Gateway,
    /// A value Istio rejects.
    Other,
}

impl<'a> ConfigPatch<'a> {
    /// `spec.configPatches[i]`.
    pub fn path(&self) -> String {
        format!("spec.configPatches[{}]", self.index)
    }

    fn str_at(&self, path: &[&str]) -> Option<&'a str> {
        crate::json::get_path(self.value, path).and_then(Value::as_str)
    }

    /// `applyTo` as written (`""` when absent).
    pub fn apply_to(&self) -> &'a str {
        self.str_at(&["applyTo"]).unwrap_or("")
    }

    /// `patch.operation` as written (`""` when absent).
    pub fn operation(&self) -> &'a str {
        self.str_at(&["patch", "operation"]).unwrap_or("")
    }

    /// `match.context`.
    pub fn context(&self) -> PatchContext {
        match self.str_at(&["match", "context"]) {
            None | Some("ANY") => PatchContext::Any,
            Some("SIDECAR_INBOUND") => PatchContext::SidecarInbound,
            Some("SIDECAR_OUTBOUND") => PatchContext::SidecarOutbound,
            Some("GATEWAY") => PatchContext::Gateway,
            Some(_) => PatchContext::Other,
        }
    }

    /// `match.listener`, when present.
    pub fn listener(&self) -> Option<&'a Value> {
        crate::json::get_path(self.value, &["match", "listener"]).filter(|v| !v.is_null())
    }

    /// `match.listener.name`.
    pub fn listener_name(&self) -> Option<&'a str> {
        self.str_at(&["match", "listener", "name"])
    }

    /// `match.listener.portNumber`.
    pub fn port_number(&self) -> Option<u64> {
        crate::json::get_path(self.value, &["match", "listener", "portNumber"])
            .and_then(Value::as_u64)
    }

    /// `match.listener.filterChain.filter`, when present: a match on one network filter.
    pub fn filter(&self) -> Option<&'a Value> {
        crate::json::get_path(self.value, &["match", "listener", "filterChain", "filter"])
            .filter(|v| !v.is_null())
    }

    /// `match.listener.filterChain.filter.name`.
    pub fn filter_name(&self) -> Option<&'a str> {
        self.filter()?.get("name")?.as_str()
    }

    /// `match.listener.filterChain.filter.subFilter.name`; the outer `Option` is whether a
    /// `subFilter` is matched at all.
    pub fn sub_filter(&self) -> Option<Option<&'a str>> {
        let sub = self.filter()?.get("subFilter").filter(|v| !v.is_null())?;
        Some(sub.get("name").and_then(Value::as_str))
    }

    /// `match.listener.listenerFilter`.
    pub fn listener_filter(&self) -> Option<&'a str> {
        self.str_at(&["match", "listener", "listenerFilter"])
    }

    /// `match.cluster.service`.
    pub fn cluster_service(&self) -> Option<&'a str> {
        self.str_at(&["match", "cluster", "service"])
    }

    /// `patch.value`, when present.
    pub fn patch_value(&self) -> Option<&'a Value> {
        crate::json::get_path(self.value, &["patch", "value"]).filter(|v| !v.is_null())
    }

    /// The patch reaches the sidecar's inbound listener (`virtualInbound`): context
    /// `SIDECAR_INBOUND` or `ANY`, or a match on that listener by name or port.
    pub fn reaches_inbound(&self) -> bool {
        matches!(
            self.context(),
            PatchContext::Any | PatchContext::SidecarInbound
        ) || self.listener_name() == Some("virtualInbound")
            || self.port_number() == Some(15006)
    }

    /// The patch reaches a listener that enforces authorization: a sidecar's inbound side or a
    /// gateway (contexts `ANY`, `SIDECAR_INBOUND`, `GATEWAY`).
    pub fn reaches_enforcement(&self) -> bool {
        self.reaches_inbound() || self.context() == PatchContext::Gateway
    }
}

/// The first string in `value` (keys and string values, at any depth) for which `hit` holds,
/// with the path it sits at below `prefix`.
pub fn find_string<'v>(
    value: &'v Value,
    prefix: &str,
    hit: &dyn Fn(&str) -> bool,
) -> Option<(String, &'v str)> {
    match value {
        Value::String(s) if hit(s) => Some((prefix.to_owned(), s)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_string(v, &format!("{prefix}[{i}]"), hit)),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let plain = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'@'));
            let path = if plain {
                format!("{prefix}.{k}")
            } else {
                format!("{prefix}{}", crate::json::quoted_key(k))
            };
            if hit(k) {
                return Some((path, k.as_str()));
            }
            find_string(v, &path, hit)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patches_read_where_and_what() {
        let spec = json!({"configPatches": [
            {"applyTo": "HTTP_FILTER", "match": {"context": "SIDECAR_INBOUND", "listener": {
                "filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager",
                    "subFilter": {"name": "envoy.filters.http.rbac"}}}}},
             "patch": {"operation": "REMOVE"}},
            {"applyTo": "CLUSTER", "match": {"context": "SIDECAR_OUTBOUND", "cluster": {"service": "api.example.com"}},
             "patch": {"operation": "MERGE", "value": {"transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}}}},
            {"applyTo": "LISTENER", "match": {"listener": {"name": "virtualInbound"}}, "patch": {"operation": "MERGE"}}
        ]});
        let ef = EnvoyFilter::of(&spec);
        let p: Vec<ConfigPatch<'_>> = ef.patches().collect();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].apply_to(), "HTTP_FILTER");
        assert_eq!(p[0].operation(), "REMOVE");
        assert_eq!(p[0].context(), PatchContext::SidecarInbound);
        assert_eq!(p[0].sub_filter(), Some(Some("envoy.filters.http.rbac")));
        assert!(p[0].reaches_inbound() && p[0].reaches_enforcement());
        assert_eq!(p[1].cluster_service(), Some("api.example.com"));
        assert!(!p[1].reaches_enforcement());
        let (path, key) = find_string(
            p[1].patch_value().expect("value"),
            "spec.configPatches[1].patch.value",
            &|s| s == "transport_socket",
        )
        .expect("found");
        assert_eq!(
            (path.as_str(), key),
            (
                "spec.configPatches[1].patch.value.transport_socket",
                "transport_socket"
            )
        );
        assert_eq!(p[2].context(), PatchContext::Any);
        assert_eq!(p[2].listener_name(), Some("virtualInbound"));
        assert_eq!(p[2].sub_filter(), None);
    }
}
