//! PeerAuthentication (`security.istio.io` v1, v1beta1): which mTLS mode a policy sets, at
//! the top level (`spec.mtls.mode`) and per container port (`spec.portLevelMtls`).
//!
//! Scope (pilot `ComposePeerAuthentication`): selector-less in the root namespace = mesh-wide;
//! selector-less elsewhere = namespace-wide; a non-empty `selector.matchLabels` = workload-level,
//! which Istio ignores in the root namespace. `portLevelMtls` applies only with a selector, and
//! its keys are container ports: the API's map is keyed by `uint32`, which the JSON form writes
//! as a string of the number (`"8080"`).
//!
//! Istio's validation of the kind ([`PeerAuthentication::validate`]) follows the CRD schema and
//! istiod's `ValidatePeerAuthentication` (`pkg/config/validation/validation.go`).

use super::validation::{Class, Errors};
use super::{nullable, ok, shaped, Loose, Selector, Str};
use crate::json::quoted_key;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A PeerAuthentication mTLS mode (`PeerAuthentication.MutualTLS.Mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    Unset,
    Disable,
    Permissive,
    Strict,
}

impl MtlsMode {
    /// Every mode, in the API's order.
    pub const ALL: [MtlsMode; 4] = [
        MtlsMode::Unset,
        MtlsMode::Disable,
        MtlsMode::Permissive,
        MtlsMode::Strict,
    ];

    /// The names the API accepts, in the API's order (from [`MtlsMode::as_str`]).
    pub(crate) const NAMES: [&'static str; 4] = {
        let mut names = [""; 4];
        let mut i = 0;
        while i < names.len() {
            names[i] = MtlsMode::ALL[i].as_str();
            i += 1;
        }
        names
    };

    /// The mode's name as the API writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Unset => "UNSET",
            MtlsMode::Disable => "DISABLE",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Strict => "STRICT",
        }
    }

    /// The mode named `name` exactly (the API is case-sensitive).
    pub(crate) fn from_name(name: &str) -> Option<MtlsMode> {
        MtlsMode::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Parse a mode string; absent or unknown values count as UNSET (Istio's validation rejects
    /// unknown values, which the parity rules report).
    pub fn parse(mode: Option<&str>) -> MtlsMode {
        mode.and_then(MtlsMode::from_name)
            .unwrap_or(MtlsMode::Unset)
    }
}

impl fmt::Display for MtlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One PeerAuthentication's `spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthentication<'a> {
    #[serde(borrow, default)]
    pub selector: Option<Loose<Selector<'a>>>,
    /// `null` is kept (as `Wrong`): a present `mtls` key is not an absent one.
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub mtls: Option<Loose<Mtls<'a>>>,
    /// Keyed by container port, as written (a string of the number when valid).
    #[serde(borrow, default)]
    pub(crate) port_level_mtls: Option<Loose<BTreeMap<Str<'a>, Loose<Mtls<'a>>>>>,
}

/// `spec.mtls`, or one `spec.portLevelMtls` entry (`MutualTLS`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Mtls<'a> {
    /// `null` is kept (as `Wrong`): a present `mode` key is not an absent one.
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub mode: Option<Loose<Str<'a>>>,
}

shaped!(Map: PeerAuthentication<'_>, Mtls<'_>);

/// The selector of a policy without one.
static NO_SELECTOR: Selector<'static> = Selector { match_labels: None };

impl Mtls<'_> {
    /// `mode`, when it is a string.
    fn mode_str(&self) -> Option<&str> {
        ok(&self.mode).map(Str::as_str)
    }
}

/// `mode` of an `mtls` field as written, for validation: a `null` mode counts as absent.
fn mode_to_validate<'d, 'a>(mtls: Option<&'d Loose<Mtls<'a>>>) -> Option<&'d Loose<Str<'a>>> {
    mtls.and_then(Loose::ok)
        .and_then(|m| m.mode.as_ref())
        .filter(|m| !matches!(m, Loose::Wrong { found: "null", .. }))
}

/// One `portLevelMtls` entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PortMtls<'d, 'a> {
    /// The key as written (Istio requires a port number).
    pub(crate) key: &'d str,
    /// The entry as written (`{mode: ...}`).
    pub(crate) entry: &'d Loose<Mtls<'a>>,
}

impl<'d> PortMtls<'d, '_> {
    /// The container port, when the key is a number (surrounding spaces ignored).
    pub fn port(&self) -> Option<u32> {
        self.key.trim().parse().ok()
    }
    /// `mode`, when it is a string.
    pub fn mode(&self) -> Option<&'d str> {
        self.entry.ok().and_then(Mtls::mode_str)
    }
    /// `spec.portLevelMtls["8080"]`.
    pub fn path(&self) -> String {
        format!("spec.portLevelMtls{}", quoted_key(self.key))
    }
}

impl<'a> PeerAuthentication<'a> {
    /// `selector.matchLabels` (empty when absent or not an object).
    pub fn selector(&self) -> &Selector<'a> {
        ok(&self.selector).unwrap_or(&NO_SELECTOR)
    }

    /// `spec.mtls` is present (any value, `null` included).
    pub(crate) fn has_mtls(&self) -> bool {
        self.mtls.is_some()
    }

    /// `spec.mtls.mode` as written (any JSON type, a present `null` included).
    pub(crate) fn mode_field(&self) -> Option<&Loose<Str<'a>>> {
        ok(&self.mtls).and_then(|m| m.mode.as_ref())
    }

    /// `spec.mtls.mode`, when it is a string.
    pub(crate) fn mode_str(&self) -> Option<&str> {
        ok(&self.mtls).and_then(Mtls::mode_str)
    }

    /// The top-level mode (UNSET when absent or unknown).
    pub fn mode(&self) -> MtlsMode {
        MtlsMode::parse(self.mode_str())
    }

    /// `spec.portLevelMtls` is present as an object (possibly empty).
    pub(crate) fn has_port_level_field(&self) -> bool {
        ok(&self.port_level_mtls).is_some()
    }

    /// The `portLevelMtls` entries, in key order.
    pub(crate) fn port_level(&self) -> impl Iterator<Item = PortMtls<'_, 'a>> {
        ok(&self.port_level_mtls)
            .into_iter()
            .flatten()
            .map(|(key, entry)| PortMtls {
                key: key.as_str(),
                entry,
            })
    }

    /// Every mode the policy sets, with its field path: the top-level mode, then each
    /// port-level mode.
    pub fn modes(&self) -> impl Iterator<Item = (String, &str)> {
        let top = self.mode_str().map(|m| ("spec.mtls.mode".to_owned(), m));
        top.into_iter().chain(
            self.port_level()
                .filter_map(|p| Some((format!("{}.mode", p.path()), p.mode()?))),
        )
    }

    /// Istio's validation of the spec.
    pub(crate) fn validate(&self, errors: &mut Errors<'_>) {
        errors.enum_field(
            || "spec.mtls.mode".to_owned(),
            mode_to_validate(self.mtls.as_ref()),
            &MtlsMode::NAMES,
        );
        if !self.has_port_level_field() {
            return;
        }
        if self.port_level().next().is_none() {
            errors.report(
                Class::Spec,
                || "spec.portLevelMtls".to_owned(),
                || "spec.portLevelMtls in body should have at least 1 properties".to_owned(),
                || "remove portLevelMtls, or list the ports, e.g. portLevelMtls: {\"8080\": {mode: STRICT}}".to_owned(),
            );
        }
        for entry in self.port_level() {
            let key = entry.key;
            let path = || entry.path();
            match key.parse::<u64>() {
                Err(_) => errors.report(
                    Class::Port,
                    path,
                    || format!("type conversion error from string {key:?} to a port number: portLevelMtls keys must be container port numbers"),
                    || "use the numeric container port, e.g. \"8080\"".to_owned(),
                ),
                Ok(n) if !(1..=65535).contains(&n) => errors.report(
                    Class::Port,
                    path,
                    || format!("port must be between 1-65535, got {n}"),
                    || "use the workload's container port, between 1 and 65535".to_owned(),
                ),
                Ok(_) => {}
            }
            errors.enum_field(
                || format!("{}.mode", entry.path()),
                mode_to_validate(Some(entry.entry)),
                &MtlsMode::NAMES,
            );
        }
    }
}

impl Loose<Str<'_>> {
    /// A field's value for a message: the string itself, else its JSON text (or its JSON type
    /// for a list or map).
    pub fn describe(&self) -> &str {
        match self {
            Loose::Ok(s) => s.as_str(),
            Loose::Wrong { found, text } if text.is_empty() => found,
            Loose::Wrong { text, .. } => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode_spec;
    use serde_json::json;

    #[test]
    fn modes_by_scope_and_port() {
        let spec = json!({"selector": {"matchLabels": {"app": "db"}},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {"8080": {"mode": "DISABLE"}, " 9090 ": {}, "x": {"mode": "PERMISSIVE"}, "7": null}});
        let pa: PeerAuthentication<'_> = decode_spec(&spec).expect("decodes");
        assert!(!pa.selector().is_empty());
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
        assert_eq!(ports, [Some(9090), Some(7), Some(8080), None]);
        let empty = json!({});
        let pa: PeerAuthentication<'_> = decode_spec(&empty).expect("decodes");
        assert_eq!(pa.mode(), MtlsMode::Unset);
        assert!(!pa.has_mtls() && pa.modes().next().is_none() && pa.selector().is_empty());
        assert_eq!(MtlsMode::parse(Some("STRCT")), MtlsMode::Unset);
        assert_eq!(MtlsMode::parse(Some("strict")), MtlsMode::Unset);
    }

    #[test]
    fn present_nulls_are_not_absent_fields() {
        let spec = json!({"mtls": null});
        let pa: PeerAuthentication<'_> = decode_spec(&spec).expect("decodes");
        assert!(pa.has_mtls() && pa.mode_field().is_none());
        let spec = json!({"mtls": {"mode": null}});
        let pa: PeerAuthentication<'_> = decode_spec(&spec).expect("decodes");
        assert_eq!(pa.mode_field().map(Loose::describe), Some("null"));
        assert_eq!(pa.mode(), MtlsMode::Unset);
        let mut found = Vec::new();
        pa.validate(&mut Errors { out: &mut found });
        assert!(found.is_empty(), "{found:?}");
        let spec = json!({"mtls": {"mode": {"x": 1}}});
        let pa: PeerAuthentication<'_> = decode_spec(&spec).expect("decodes");
        assert_eq!(pa.mode_field().map(Loose::describe), Some("object"));
    }

    #[test]
    fn the_names_follow_the_enum() {
        assert_eq!(
            MtlsMode::NAMES,
            ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]
        );
        for m in MtlsMode::ALL {
            assert_eq!(MtlsMode::from_name(m.as_str()), Some(m));
            assert_eq!(
                serde_json::to_value(m).expect("serializes"),
                json!(m.as_str())
            );
        }
    }

    #[test]
    fn validation_names_keys_and_modes() {
        let spec = json!({"mtls": {"mode": 5}, "selector": {"matchLabels": {"a": "b"}},
            "portLevelMtls": {"acd": {"mode": "STRICT"}, "0": {"mode": "permissive"}, "80": {"mode": null}}});
        let pa: PeerAuthentication<'_> = decode_spec(&spec).expect("decodes");
        let mut found = Vec::new();
        pa.validate(&mut Errors { out: &mut found });
        let got: Vec<(&str, &str)> = found
            .iter()
            .map(|(_, v)| (v.path.as_str(), v.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "spec.mtls.mode",
                    "Istio rejects this object: spec.mtls.mode in body must be of type string: \"number\""
                ),
                (
                    "spec.portLevelMtls[\"0\"]",
                    "Istio rejects this object: port must be between 1-65535, got 0"
                ),
                (
                    "spec.portLevelMtls[\"0\"].mode",
                    "Istio rejects this object: Unsupported value: \"permissive\": supported values: \"UNSET\", \"DISABLE\", \"PERMISSIVE\", \"STRICT\""
                ),
                (
                    "spec.portLevelMtls[\"acd\"]",
                    "Istio rejects this object: type conversion error from string \"acd\" to a port number: portLevelMtls keys must be container port numbers"
                ),
            ]
        );
    }
}
