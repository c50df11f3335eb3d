//! DestinationRule (`networking.istio.io` v1, v1beta1, v1alpha3): the host, every traffic
//! policy (top level and per subset) with its port-level settings, and every TLS site.
//!
//! An explicit `tls` always overrides auto-mTLS (Istio's DestinationRule reference,
//! `ClientTLSSettings`), so every place a `tls` block can sit matters: `trafficPolicy.tls`,
//! `trafficPolicy.portLevelSettings[].tls`, and the same two under `subsets[].trafficPolicy`.
//!
//! Istio's validation of the kind ([`DestinationRule::validate`]) follows the CRD schema and
//! istiod's `ValidateDestinationRule` / `validateTLS` (`pkg/config/validation/validation.go`).

use super::validation::{Class, Errors};
use super::{entries, nullable, ok, shaped, Loose, Selector, Str};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// One DestinationRule's `spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRule<'a> {
    #[serde(borrow, default)]
    pub host: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) traffic_policy: Option<Loose<TrafficPolicy<'a>>>,
    #[serde(borrow, default)]
    pub subsets: Option<Loose<Vec<Loose<Subset<'a>>>>>,
    #[serde(borrow, default)]
    pub(crate) workload_selector: Option<Loose<Selector<'a>>>,
}

/// One `subsets[i]` entry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Subset<'a> {
    #[serde(borrow, default)]
    pub name: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub labels: Option<Loose<BTreeMap<Str<'a>, Loose<Str<'a>>>>>,
    #[serde(borrow, default)]
    pub(crate) traffic_policy: Option<Loose<TrafficPolicy<'a>>>,
}

/// A `trafficPolicy`, at the top level or in a subset.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrafficPolicy<'a> {
    #[serde(borrow, default)]
    pub(crate) tls: Option<Loose<Tls<'a>>>,
    #[serde(borrow, default)]
    pub(crate) port_level_settings: Option<Loose<Vec<Loose<PortLevel<'a>>>>>,
}

/// One `portLevelSettings[j]` entry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub(crate) struct PortLevel<'a> {
    #[serde(default)]
    pub(crate) port: Option<Loose<PortSelector>>,
    /// `null` is kept (as `Wrong`): a port-level `tls` key of any value overrides the policy's.
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub(crate) tls: Option<Loose<Tls<'a>>>,
}

/// `port` of a port-level setting.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub(crate) struct PortSelector {
    /// `null` is kept (as `Wrong`), so that validation names it.
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) number: Option<Loose<u64>>,
}

/// A `tls` block (`ClientTLSSettings`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Tls<'a> {
    #[serde(borrow, default)]
    pub(crate) mode: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) credential_name: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) client_certificate: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) private_key: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) ca_certificates: Option<Loose<Str<'a>>>,
    #[serde(default)]
    pub(crate) insecure_skip_verify: Option<Loose<bool>>,
}

shaped!(Map: DestinationRule<'_>, Subset<'_>, TrafficPolicy<'_>, PortLevel<'_>, PortSelector, Tls<'_>);

/// `ClientTLSSettings.TLSmode`.
pub(crate) const TLS_MODES: &[&str] = &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"];

/// Where a `tls` block sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TlsPath {
    /// `None`: `spec.trafficPolicy`; else `spec.subsets[i].trafficPolicy`.
    pub(crate) subset: Option<usize>,
    /// `Some(j)`: `.portLevelSettings[j]`.
    pub(crate) port_level: Option<usize>,
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

/// One `tls` block that is an object, with where it sits and the port it applies to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TlsSite<'d, 'a> {
    pub(crate) at: TlsPath,
    /// The port-level setting's port; `None` at the traffic policy's level.
    pub(crate) port: Option<u64>,
    pub(crate) tls: &'d Tls<'a>,
}

impl<'d> TlsSite<'d, '_> {
    /// `mode` ("" when absent or not a string).
    pub fn mode(&self) -> &'d str {
        ok(&self.tls.mode).map_or("", Str::as_str)
    }
    /// `insecureSkipVerify: true`.
    pub(crate) fn insecure_skip_verify(&self) -> bool {
        ok(&self.tls.insecure_skip_verify) == Some(&true)
    }
}

impl Tls<'_> {
    /// A non-empty string field.
    fn has(field: &Option<Loose<Str<'_>>>) -> bool {
        ok(field).is_some_and(|s| !s.is_empty())
    }
    pub(crate) fn has_credential_name(&self) -> bool {
        Self::has(&self.credential_name)
    }
    pub(crate) fn has_ca_certificates(&self) -> bool {
        Self::has(&self.ca_certificates)
    }
}

/// A traffic policy with where it sits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placed<'d, 'a> {
    /// `None` for `spec.trafficPolicy`, the subset index otherwise.
    pub(crate) subset: Option<usize>,
    pub(crate) policy: &'d TrafficPolicy<'a>,
}

impl<'d, 'a> Placed<'d, 'a> {
    /// `spec.trafficPolicy` or `spec.subsets[i].trafficPolicy`.
    pub fn path(&self) -> String {
        match self.subset {
            Some(i) => format!("spec.subsets[{i}].trafficPolicy"),
            None => "spec.trafficPolicy".to_owned(),
        }
    }

    /// The port-level settings, each as written, with their index.
    pub(crate) fn port_level(
        &self,
    ) -> impl Iterator<Item = (usize, &'d Loose<PortLevel<'a>>)> + 'd {
        entries(&self.policy.port_level_settings).iter().enumerate()
    }

    /// Ports whose port-level settings have their own `tls` (any value): the policy-level `tls`
    /// does not apply to them.
    pub(crate) fn tls_overridden_ports(&self) -> Vec<u64> {
        self.port_level()
            .filter_map(|(_, p)| p.ok())
            .filter(|p| p.tls.is_some())
            .filter_map(|p| p.port_number())
            .collect()
    }

    /// The policy's own `tls`, then its port-level ones (objects only).
    pub(crate) fn tls_sites(&self) -> impl Iterator<Item = TlsSite<'d, 'a>> + 'd {
        let subset = self.subset;
        let own = ok(&self.policy.tls).map(|tls| TlsSite {
            at: TlsPath {
                subset,
                port_level: None,
            },
            port: None,
            tls,
        });
        own.into_iter()
            .chain(self.port_level().filter_map(move |(j, p)| {
                let p = p.ok()?;
                Some(TlsSite {
                    at: TlsPath {
                        subset,
                        port_level: Some(j),
                    },
                    port: p.port_number(),
                    tls: ok(&p.tls)?,
                })
            }))
    }
}

impl PortLevel<'_> {
    /// `port.number`, when it is a number.
    pub(crate) fn port_number(&self) -> Option<u64> {
        ok(&self.port).and_then(|p| ok(&p.number)).copied()
    }
}

impl Subset<'_> {
    /// `labels` with string values: the pods of the host's Service in the subset.
    pub fn labels(&self) -> BTreeMap<String, String> {
        ok(&self.labels)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.to_string(), v.ok()?.to_string())))
            .collect()
    }
}

impl<'a> DestinationRule<'a> {
    /// `spec.host`, when it is a string.
    pub fn host(&self) -> Option<&str> {
        ok(&self.host).map(Str::as_str)
    }

    /// `spec.workloadSelector` is set (not null).
    pub(crate) fn has_workload_selector(&self) -> bool {
        self.workload_selector.is_some()
    }

    /// Every `subsets[i]` entry, as written.
    pub fn subsets(&self) -> &[Loose<Subset<'a>>] {
        entries(&self.subsets)
    }

    /// The top-level traffic policy, then each subset's (objects only).
    pub(crate) fn traffic_policies(&self) -> impl Iterator<Item = Placed<'_, 'a>> {
        let top = ok(&self.traffic_policy).map(|policy| Placed {
            subset: None,
            policy,
        });
        top.into_iter()
            .chain(self.subsets().iter().enumerate().filter_map(|(i, s)| {
                Some(Placed {
                    subset: Some(i),
                    policy: ok(&s.ok()?.traffic_policy)?,
                })
            }))
    }

    /// Every `tls` block that is an object, in document order: per traffic policy, its own
    /// `tls` then its port-level ones.
    pub(crate) fn tls_sites(&self) -> impl Iterator<Item = TlsSite<'_, 'a>> {
        self.traffic_policies().flat_map(|tp| tp.tls_sites())
    }

    /// Istio's validation of the spec.
    pub(crate) fn validate(&self, errors: &mut Errors<'_>) {
        match self.host() {
            Some(h) if !h.is_empty() => {}
            _ => errors.report(
                Class::Spec,
                || "spec.host".to_owned(),
                || "spec.host: Required value".to_owned(),
                || "set host to the service, e.g. \"reviews.prod.svc.cluster.local\"".to_owned(),
            ),
        }
        for site in self.tls_sites() {
            let path = site.at;
            let tls = site.tls;
            errors.enum_field(|| format!("{path}.mode"), tls.mode.as_ref(), TLS_MODES);
            let mode = ok(&tls.mode).map_or("DISABLE", Str::as_str);
            let files = [
                &tls.client_certificate,
                &tls.private_key,
                &tls.ca_certificates,
            ];
            if matches!(mode, "SIMPLE" | "MUTUAL")
                && tls.has_credential_name()
                && files.iter().any(|f| Tls::has(f))
            {
                errors.report(
                    Class::Conflict,
                    || path.to_string(),
                    || {
                        "cannot specify client certificates or CA certificate If credentialName is set"
                            .to_owned()
                    },
                    || "use either credentialName or the certificate file fields, not both".to_owned(),
                );
            }
            if mode == "MUTUAL" && !tls.has_credential_name() {
                for (k, what, field) in [
                    (
                        "clientCertificate",
                        "client certificate",
                        &tls.client_certificate,
                    ),
                    ("privateKey", "private key", &tls.private_key),
                ] {
                    if !Tls::has(field) {
                        errors.report(
                            Class::Spec,
                            || format!("{path}.{k}"),
                            || format!("{what} required for mutual tls"),
                            || format!("set {k} (a file in the proxy) or credentialName (a Secret), or use mode: ISTIO_MUTUAL for in-mesh hosts"),
                        );
                    }
                }
            }
        }
        for tp in self.traffic_policies() {
            for (j, pl) in tp.port_level() {
                let Some(number) = pl
                    .ok()
                    .and_then(|p| ok(&p.port))
                    .and_then(|p| p.number.as_ref())
                else {
                    continue;
                };
                let (valid, text) = match number {
                    Loose::Ok(n) => ((1..=65535).contains(n), n.to_string()),
                    Loose::Wrong { text, .. } => (false, text.clone()),
                };
                if !valid {
                    errors.report(
                        Class::Port,
                        || format!("{}.portLevelSettings[{j}].port.number", tp.path()),
                        || format!("port number {text} must be in the range 1..65535"),
                        || "write the service port, between 1 and 65535".to_owned(),
                    );
                }
            }
        }
        for (i, subset) in self.subsets().iter().enumerate() {
            if subset
                .ok()
                .and_then(|s| ok(&s.name))
                .is_none_or(|n| n.is_empty())
            {
                errors.report(
                    Class::Spec,
                    || format!("spec.subsets[{i}].name"),
                    || "subset name cannot be empty".to_owned(),
                    || "name the subset, e.g. name: v1".to_owned(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode_spec;
    use serde_json::json;

    #[test]
    fn every_tls_site_with_its_path_and_port() {
        let spec = json!({
            "host": "reviews",
            "trafficPolicy": {"tls": {"mode": "DISABLE"},
                "portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "SIMPLE"}},
                                      {"port": {"number": 81}}, {"port": {"number": 82}, "tls": null}]},
            "subsets": [{"name": "v1", "labels": {"v": "1", "n": 2},
                "trafficPolicy": {"portLevelSettings": [{"port": {"number": 90}, "tls": {"mode": "MUTUAL"}}]}},
                {"name": "v2", "trafficPolicy": {"tls": "not-an-object"}}, null]
        });
        let dr: DestinationRule<'_> = decode_spec(&spec).expect("decodes");
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
        assert_eq!(top.tls_overridden_ports(), [80, 82]);
        let subsets = dr.subsets();
        assert_eq!(subsets.len(), 3);
        let v1 = subsets[0].ok().expect("v1").labels();
        assert_eq!(
            v1.into_iter().collect::<Vec<_>>(),
            [("v".to_owned(), "1".to_owned())]
        );
        assert!(!dr.has_workload_selector());
    }

    #[test]
    fn validation_names_null_and_wrong_port_numbers() {
        let spec = json!({"host": "h", "trafficPolicy": {"portLevelSettings": [
            {"port": {"number": null}}, {"port": {"number": "80"}}, {"port": {"number": 0}}, {"port": {"number": 80}}]}});
        let dr: DestinationRule<'_> = decode_spec(&spec).expect("decodes");
        let mut found = Vec::new();
        dr.validate(&mut Errors { out: &mut found });
        let messages: Vec<&str> = found.iter().map(|(_, v)| v.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "Istio rejects this object: port number null must be in the range 1..65535",
                "Istio rejects this object: port number \"80\" must be in the range 1..65535",
                "Istio rejects this object: port number 0 must be in the range 1..65535",
            ]
        );
    }
}
