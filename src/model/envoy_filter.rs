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
//!
//! Fields are read leniently ([`Loose`]): a value of the wrong JSON type reads as absent, and a
//! `configPatches` entry that is not an object is a patch with nothing set (it keeps its index,
//! so paths stay those of the object). `patch.value` is opaque to Istio's schema
//! (`x-kubernetes-preserve-unknown-fields`, a protobuf `Struct`) and stays JSON
//! ([`find_string`] searches it). A spec that is not an object is [`super::Malformed`]
//! ([`super::decode_spec`]); the rules read it as empty.

use super::{entries, ok, Loose, Str};
use serde::Deserialize;
use serde_json::Value;

/// One EnvoyFilter's `spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyFilter<'a> {
    #[serde(borrow, default)]
    pub(crate) config_patches: Option<Loose<Vec<Loose<ConfigPatch<'a>>>>>,
}

/// One `configPatches[i]` (`EnvoyConfigObjectPatch`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigPatch<'a> {
    #[serde(borrow, default)]
    pub(crate) apply_to: Option<Loose<Str<'a>>>,
    #[serde(borrow, default, rename = "match")]
    pub(crate) match_: Option<Loose<Match<'a>>>,
    #[serde(borrow, default)]
    pub patch: Option<Loose<Patch<'a>>>,
}

/// `match` (`EnvoyConfigObjectMatch`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Match<'a> {
    #[serde(borrow, default)]
    pub(crate) context: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) listener: Option<Loose<ListenerMatch<'a>>>,
    #[serde(borrow, default)]
    pub(crate) cluster: Option<Loose<ClusterMatch<'a>>>,
}

/// `match.listener`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListenerMatch<'a> {
    #[serde(borrow, default)]
    pub(crate) name: Option<Loose<Str<'a>>>,
    #[serde(default)]
    pub(crate) port_number: Option<Loose<u64>>,
    #[serde(borrow, default)]
    pub(crate) filter_chain: Option<Loose<FilterChainMatch<'a>>>,
    #[serde(borrow, default)]
    pub(crate) listener_filter: Option<Loose<Str<'a>>>,
}

/// `match.listener.filterChain`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FilterChainMatch<'a> {
    #[serde(borrow, default)]
    pub(crate) filter: Option<Loose<FilterMatch<'a>>>,
}

/// `match.listener.filterChain.filter`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FilterMatch<'a> {
    #[serde(borrow, default)]
    pub(crate) name: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) sub_filter: Option<Loose<SubFilterMatch<'a>>>,
}

/// `match.listener.filterChain.filter.subFilter`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub(crate) struct SubFilterMatch<'a> {
    #[serde(borrow, default)]
    pub(crate) name: Option<Loose<Str<'a>>>,
}

/// `match.cluster`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub(crate) struct ClusterMatch<'a> {
    #[serde(borrow, default)]
    pub(crate) service: Option<Loose<Str<'a>>>,
}

/// `patch` (`Patch`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Patch<'a> {
    #[serde(borrow, default)]
    pub operation: Option<Loose<Str<'a>>>,
    /// `value`, opaque JSON (`null` reads as absent).
    #[serde(default)]
    pub value: Option<Value>,
}

super::shaped!(Map: EnvoyFilter<'_>, ConfigPatch<'_>, Match<'_>, ListenerMatch<'_>,
    FilterChainMatch<'_>, FilterMatch<'_>, SubFilterMatch<'_>, ClusterMatch<'_>, Patch<'_>);

/// A patch entry that is not an object: nothing set.
static NO_PATCH: ConfigPatch<'static> = ConfigPatch {
    apply_to: None,
    match_: None,
    patch: None,
};

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

impl<'a> EnvoyFilter<'a> {
    /// Every entry of `spec.configPatches`, with its index.
    pub fn patches(&self) -> impl Iterator<Item = PatchAt<'_, 'a>> {
        entries(&self.config_patches)
            .iter()
            .enumerate()
            .map(|(index, p)| PatchAt {
                index,
                patch: p.ok().unwrap_or(&NO_PATCH),
            })
    }
}

/// One `configPatches[i]` with its index, and what the rules ask of it.
#[derive(Clone, Copy, Debug)]
pub struct PatchAt<'d, 'a> {
    pub index: usize,
    pub patch: &'d ConfigPatch<'a>,
}

impl<'d> PatchAt<'d, '_> {
    /// `spec.configPatches[i]`.
    pub fn path(&self) -> String {
        format!("spec.configPatches[{}]", self.index)
    }

    fn matched(&self) -> Option<&'d Match<'d>> {
        ok(&self.patch.match_)
    }

    fn listener(&self) -> Option<&'d ListenerMatch<'d>> {
        self.matched().and_then(|m| ok(&m.listener))
    }

    fn filter(&self) -> Option<&'d FilterMatch<'d>> {
        self.listener()
            .and_then(|l| ok(&l.filter_chain))
            .and_then(|c| ok(&c.filter))
    }

    /// `applyTo` as written (`""` when absent).
    pub(crate) fn apply_to(&self) -> &'d str {
        ok(&self.patch.apply_to).map_or("", Str::as_str)
    }

    /// `patch.operation` as written (`""` when absent).
    pub fn operation(&self) -> &'d str {
        ok(&self.patch.patch)
            .and_then(|p| ok(&p.operation))
            .map_or("", Str::as_str)
    }

    /// `match.context`.
    pub fn context(&self) -> PatchContext {
        match self.matched().and_then(|m| ok(&m.context)).map(Str::as_str) {
            None | Some("ANY") => PatchContext::Any,
            Some("SIDECAR_INBOUND") => PatchContext::SidecarInbound,
            Some("SIDECAR_OUTBOUND") => PatchContext::SidecarOutbound,
            Some("GATEWAY") => PatchContext::Gateway,
            Some(_) => PatchContext::Other,
        }
    }

    /// `match.listener.name`.
    pub(crate) fn listener_name(&self) -> Option<&'d str> {
        self.listener().and_then(|l| ok(&l.name)).map(Str::as_str)
    }

    /// `match.listener.portNumber`.
    pub(crate) fn port_number(&self) -> Option<u64> {
        self.listener().and_then(|l| ok(&l.port_number)).copied()
    }

    /// `match.listener.filterChain.filter.name`.
    pub(crate) fn filter_name(&self) -> Option<&'d str> {
        self.filter().and_then(|f| ok(&f.name)).map(Str::as_str)
    }

    /// `match.listener.filterChain.filter.subFilter.name`; the outer `Option` is whether a
    /// `subFilter` is matched at all (present and not `null`, whatever its type).
    pub(crate) fn sub_filter(&self) -> Option<Option<&'d str>> {
        match self.filter()?.sub_filter.as_ref()? {
            Loose::Ok(sub) => Some(ok(&sub.name).map(Str::as_str)),
            Loose::Wrong { found: "null", .. } => None,
            Loose::Wrong { .. } => Some(None),
        }
    }

    /// `match.listener.listenerFilter`.
    pub(crate) fn listener_filter(&self) -> Option<&'d str> {
        self.listener()
            .and_then(|l| ok(&l.listener_filter))
            .map(Str::as_str)
    }

    /// `match.cluster.service`.
    pub(crate) fn cluster_service(&self) -> Option<&'d str> {
        self.matched()
            .and_then(|m| ok(&m.cluster))
            .and_then(|c| ok(&c.service))
            .map(Str::as_str)
    }

    /// `patch.value`, when present.
    pub(crate) fn patch_value(&self) -> Option<&'d Value> {
        ok(&self.patch.patch)
            .and_then(|p| p.value.as_ref())
            .filter(|v| !v.is_null())
    }

    /// The patch reaches the sidecar's inbound listener (`virtualInbound`): context
    /// `SIDECAR_INBOUND` or `ANY`, or a match on that listener by name or port.
    pub(crate) fn reaches_inbound(&self) -> bool {
        matches!(
            self.context(),
            PatchContext::Any | PatchContext::SidecarInbound
        ) || self.listener_name() == Some("virtualInbound")
            || self.port_number() == Some(15006)
    }

    /// The patch reaches a listener that enforces authorization: a sidecar's inbound side or a
    /// gateway (contexts `ANY`, `SIDECAR_INBOUND`, `GATEWAY`).
    pub(crate) fn reaches_enforcement(&self) -> bool {
        self.reaches_inbound() || self.context() == PatchContext::Gateway
    }
}

/// The first string in `value` (keys and string values, at any depth) for which `hit` holds,
/// with the path it sits at below `prefix`.
pub(crate) fn find_string<'v>(
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
mod tests;
