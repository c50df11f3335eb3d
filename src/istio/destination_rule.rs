//! DestinationRule (`networking.istio.io` v1, v1beta1, v1alpha3): the host, every traffic
//! policy (top level and per subset) with its port-level settings, and every TLS site.
//!
//! An explicit `tls` always overrides auto-mTLS (Istio's DestinationRule reference,
//! `ClientTLSSettings`), so every place a `tls` block can sit matters: `trafficPolicy.tls`,
//! `trafficPolicy.portLevelSettings[].tls`, and the same two under `subsets[].trafficPolicy`.

use crate::json::{items, string_map};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The view of one DestinationRule spec.
#[derive(Clone, Copy, Debug)]
pub struct DestinationRule<'a> {
    pub spec: &'a Value,
}

impl<'a> DestinationRule<'a> {
    pub fn of(spec: &'a Value) -> DestinationRule<'a> {
        DestinationRule { spec }
    }

    /// `spec.host`, when it is a string.
    pub fn host(&self) -> Option<&'a str> {
        self.spec.get("host").and_then(Value::as_str)
    }

    /// Every `subsets[i]` entry.
    pub fn subsets(&self) -> impl Iterator<Item = Subset<'a>> + 'a {
        items(self.spec, "subsets")
            .iter()
            .enumerate()
            .map(|(index, value)| Subset { index, value })
    }

    /// The top-level traffic policy, then each subset's.
    pub fn traffic_policies(&self) -> impl Iterator<Item = TrafficPolicy<'a>> + 'a {
        let top = self.spec.get("trafficPolicy").map(|value| TrafficPolicy {
            subset: None,
            value,
        });
        top.into_iter().chain(self.subsets().filter_map(|s| {
            s.value.get("trafficPolicy").map(|value| TrafficPolicy {
                subset: Some(s.index),
                value,
            })
        }))
    }

    /// Every `tls` block that is an object, in document order: per traffic policy, its own
    /// `tls` then its port-level ones.
    pub fn tls_sites(&self) -> impl Iterator<Item = TlsSite<'a>> + 'a {
        self.traffic_policies().flat_map(|tp| tp.tls_sites())
    }
}

/// One `subsets[i]` entry.
#[derive(Clone, Copy, Debug)]
pub struct Subset<'a> {
    pub index: usize,
    pub value: &'a Value,
}

impl<'a> Subset<'a> {
    /// `name`, when it is a string.
    pub fn name(&self) -> Option<&'a str> {
        self.value.get("name").and_then(Value::as_str)
    }
    /// `labels`: the pods of the host's Service that belong to the subset.
    pub fn labels(&self) -> BTreeMap<String, String> {
        string_map(self.value.get("labels").unwrap_or(&Value::Null))
    }
}

/// A `trafficPolicy`, at the top level or in a subset.
#[derive(Clone, Copy, Debug)]
pub struct TrafficPolicy<'a> {
    /// `None` for `spec.trafficPolicy`, the subset index otherwise.
    pub subset: Option<usize>,
    pub value: &'a Value,
}

impl<'a> TrafficPolicy<'a> {
    /// Every `portLevelSettings[j]` entry.
    pub fn port_level(&self) -> impl Iterator<Item = PortLevel<'a>> + 'a {
        let subset = self.subset;
        items(self.value, "portLevelSettings")
            .iter()
            .enumerate()
            .map(move |(index, value)| PortLevel {
                subset,
                index,
                value,
            })
    }

    /// `spec.trafficPolicy` or `spec.subsets[i].trafficPolicy`.
    pub fn path(&self) -> String {
        match self.subset {
            Some(i) => format!("spec.subsets[{i}].trafficPolicy"),
            None => "spec.trafficPolicy".to_owned(),
        }
    }

    /// Port numbers whose port-level settings carry their own `tls` (which then replaces this
    /// policy's `tls` on that port).
    pub fn tls_overridden_ports(&self) -> Vec<u64> {
        self.port_level()
            .filter(|p| p.value.get("tls").is_some())
            .filter_map(|p| p.port_number()?.as_u64())
            .collect()
    }

    /// This policy's `tls` (when an object), then each port level's.
    pub fn tls_sites(&self) -> impl Iterator<Item = TlsSite<'a>> + 'a {
        let own = self
            .value
            .get("tls")
            .filter(|t| t.is_object())
            .map(|tls| TlsSite {
                at: TlsPath {
                    subset: self.subset,
                    port_level: None,
                },
                port: None,
                tls,
            });
        own.into_iter().chain(self.port_level().filter_map(|p| {
            let tls = p.value.get("tls").filter(|t| t.is_object())?;
            Some(TlsSite {
                at: TlsPath {
                    subset: p.subset,
                    port_level: Some(p.index),
                },
                port: p.port_number().and_then(Value::as_u64),
                tls,
            })
        }))
    }
}

/// One `portLevelSettings[j]` entry.
#[derive(Clone, Copy, Debug)]
pub struct PortLevel<'a> {
    pub subset: Option<usize>,
    pub index: usize,
    pub value: &'a Value,
}

impl<'a> PortLevel<'a> {
    /// `port.number` as written.
    pub fn port_number(&self) -> Option<&'a Value> {
        self.value.get("port").and_then(|p| p.get("number"))
    }
}

/// Where a `tls` block sits, rendered only when a finding needs it (walking a large
/// DestinationRule must not format a path per block per rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsPath {
    pub subset: Option<usize>,
    pub port_level: Option<usize>,
}

impl fmt::Display for TlsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.subset {
            Some(i) => write!(f, "spec.subsets[{i}].trafficPolicy")?,
            None => f.write_str("spec.trafficPolicy")?,
        }
        if let Some(j) = self.port_level {
            write!(f, ".portLevelSettings[{j}]")?;
        }
        f.write_str(".tls")
    }
}

/// One `tls` block.
#[derive(Clone, Copy, Debug)]
pub struct TlsSite<'a> {
    pub at: TlsPath,
    /// The port a port-level block is limited to (`None` at the policy level).
    pub port: Option<u64>,
    pub tls: &'a Value,
}

impl<'a> TlsSite<'a> {
    /// `mode` as written, `""` when absent (or not a string).
    pub fn mode(&self) -> &'a str {
        self.tls.get("mode").and_then(Value::as_str).unwrap_or("")
    }
    /// A string field that is present and non-empty (`caCertificates`, `credentialName`, ...).
    pub fn has(&self, field: &str) -> bool {
        self.tls
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    }
    /// `insecureSkipVerify: true`.
    pub fn insecure_skip_verify(&self) -> bool {
        self.tls.get("insecureSkipVerify").and_then(Value::as_bool) == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_tls_site_with_its_path_and_port() {
        let spec = json!({
            "host": "reviews",
            "trafficPolicy": {"tls": {"mode": "DISABLE"},
                "portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "SIMPLE"}},
                                      {"port": {"number": 81}}]},
            "subsets": [{"name": "v1", "labels": {"v": "1"},
                "trafficPolicy": {"portLevelSettings": [{"port": {"number": 90}, "tls": {"mode": "MUTUAL"}}]}},
                {"name": "v2", "trafficPolicy": {"tls": "not-an-object"}}]
        });
        let dr = DestinationRule::of(&spec);
        assert_eq!(dr.host(), Some("reviews"));
        let sites: Vec<(String, Option<u64>, &str)> = dr
            .tls_sites()
            .map(|s| (s.at.to_string(), s.port, s.mode()))
            .collect();
        assert_eq!(
            sites,
            [
                ("spec.trafficPolicy.tls".to_owned(), None, "DISABLE"),
                (
                    "spec.trafficPolicy.portLevelSettings[0].tls".to_owned(),
                    Some(80),
                    "SIMPLE"
                ),
                (
                    "spec.subsets[0].trafficPolicy.portLevelSettings[0].tls".to_owned(),
                    Some(90),
                    "MUTUAL"
                ),
            ]
        );
        let top = dr.traffic_policies().next().expect("top");
        assert_eq!(top.tls_overridden_ports(), [80]);
        let subsets: Vec<Subset<'_>> = dr.subsets().collect();
        assert_eq!(subsets[0].labels().get("v").map(String::as_str), Some("1"));
        assert_eq!(subsets[1].name(), Some("v2"));
    }
}
