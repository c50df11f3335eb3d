//! PeerAuthentication (`security.istio.io` v1, v1beta1): which mTLS mode a policy sets, at
//! the top level (`spec.mtls.mode`) and per container port (`spec.portLevelMtls`).
//!
//! Scope (pilot `ComposePeerAuthentication`): selector-less in the root namespace = mesh-wide;
//! selector-less elsewhere = namespace-wide; a non-empty `selector.matchLabels` = workload-level,
//! which Istio ignores in the root namespace. `portLevelMtls` applies only with a selector, and
//! its keys are container ports.

use super::WorkloadSelector;
use crate::json::quoted_key;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

/// A PeerAuthentication mTLS mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    Unset,
    Disable,
    Permissive,
    Strict,
}

impl MtlsMode {
    /// Parse a mode string; absent or unknown values count as UNSET (Istio's validation rejects
    /// unknown values, which the parity rules report).
    pub fn parse(mode: Option<&str>) -> MtlsMode {
        match mode {
            Some("STRICT") => MtlsMode::Strict,
            Some("PERMISSIVE") => MtlsMode::Permissive,
            Some("DISABLE") => MtlsMode::Disable,
            _ => MtlsMode::Unset,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Unset => "UNSET",
            MtlsMode::Disable => "DISABLE",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Strict => "STRICT",
        }
    }
}

impl fmt::Display for MtlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `portLevelMtls` entry.
#[derive(Clone, Copy, Debug)]
pub struct PortMtls<'a> {
    /// The key as written (Istio requires a port number).
    pub key: &'a str,
    /// The entry (`{mode: ...}`).
    pub value: &'a Value,
}

impl<'a> PortMtls<'a> {
    /// The container port, when the key is a number (surrounding spaces ignored).
    pub fn port(&self) -> Option<u32> {
        self.key.trim().parse().ok()
    }
    /// `mode`, when it is a string.
    pub fn mode(&self) -> Option<&'a str> {
        self.value.get("mode").and_then(Value::as_str)
    }
    /// `spec.portLevelMtls["8080"]`.
    pub fn path(&self) -> String {
        format!("spec.portLevelMtls{}", quoted_key(self.key))
    }
}

/// The view of one PeerAuthentication spec.
#[derive(Clone, Copy, Debug)]
pub struct PeerAuthentication<'a> {
    pub selector: WorkloadSelector<'a>,
    /// `spec.mtls` as written (absent: the mode is inherited).
    pub mtls: Option<&'a Value>,
    /// `spec.portLevelMtls` when it is an object.
    port_level: Option<&'a Map<String, Value>>,
}

impl<'a> PeerAuthentication<'a> {
    pub fn of(spec: &'a Value) -> PeerAuthentication<'a> {
        PeerAuthentication {
            selector: WorkloadSelector::of(spec),
            mtls: spec.get("mtls"),
            port_level: spec.get("portLevelMtls").and_then(Value::as_object),
        }
    }

    /// `spec.mtls.mode` as written (any JSON type).
    pub fn mode_value(&self) -> Option<&'a Value> {
        self.mtls.and_then(|m| m.get("mode"))
    }

    /// `spec.mtls.mode`, when it is a string.
    pub fn mode_str(&self) -> Option<&'a str> {
        self.mode_value().and_then(Value::as_str)
    }

    /// The top-level mode (UNSET when absent or unknown).
    pub fn mode(&self) -> MtlsMode {
        MtlsMode::parse(self.mode_str())
    }

    /// `spec.portLevelMtls` is present as an object (possibly empty).
    pub fn has_port_level_field(&self) -> bool {
        self.port_level.is_some()
    }

    /// The `portLevelMtls` entries, in key order.
    pub fn port_level(&self) -> impl Iterator<Item = PortMtls<'a>> + 'a {
        self.port_level
            .into_iter()
            .flatten()
            .map(|(key, value)| PortMtls { key, value })
    }

    /// Every mode the policy sets, with its field path: the top-level mode, then each
    /// port-level mode.
    pub fn modes(&self) -> impl Iterator<Item = (String, &'a str)> + 'a {
        let top = self.mode_str().map(|m| ("spec.mtls.mode".to_owned(), m));
        top.into_iter().chain(
            self.port_level()
                .filter_map(|p| Some((format!("{}.mode", p.path()), p.mode()?))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn modes_by_scope_and_port() {
        let spec = json!({"selector": {"matchLabels": {"app": "db"}},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {"8080": {"mode": "DISABLE"}, " 9090 ": {}, "x": {"mode": "PERMISSIVE"}}});
        let pa = PeerAuthentication::of(&spec);
        assert!(!pa.selector.is_empty());
        assert_eq!(pa.mode(), MtlsMode::Strict);
        let modes: Vec<(String, &str)> = pa.modes().collect();
        assert_eq!(
            modes,
            [
                ("spec.mtls.mode".to_owned(), "STRICT"),
                ("spec.portLevelMtls[\"8080\"].mode".to_owned(), "DISABLE"),
                ("spec.portLevelMtls[\"x\"].mode".to_owned(), "PERMISSIVE"),
            ]
        );
        let ports: Vec<Option<u32>> = pa.port_level().map(|p| p.port()).collect();
        assert_eq!(ports, [Some(9090), Some(8080), None]);
        let empty = json!({});
        let pa = PeerAuthentication::of(&empty);
        assert_eq!(pa.mode(), MtlsMode::Unset);
        assert!(pa.mtls.is_none() && pa.modes().next().is_none());
        assert_eq!(MtlsMode::parse(Some("STRCT")), MtlsMode::Unset);
    }
}
