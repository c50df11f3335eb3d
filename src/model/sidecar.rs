//! Sidecar (`networking.istio.io` v1, v1beta1, v1alpha3): its `ingress` listeners, the ports a
//! workload's sidecar accepts inbound traffic on when the Sidecar lists them.
//!
//! Semantics (istio/istio `pilot/pkg/networking/core/listener_inbound.go`,
//! `buildInboundChainConfigs`): an `ingress[].tls` (ServerTLSSettings) replaces Istio's mutual TLS
//! on that port with TLS terminated on the Sidecar's own certificates, when istiod runs with
//! `ENABLE_TLS_ON_SIDECAR_INGRESS`. `tls.mode` defaults to `PASSTHROUGH` (the first value of
//! `ServerTLSSettings.TLSmode`).
//!
//! Fields are read leniently ([`Loose`]): a value of the wrong JSON type reads as absent, except
//! `tls`, which is set whenever it is present and not `null` (its `mode` then reads as the
//! default). An `ingress` entry that is not an object is a listener with nothing set (it keeps
//! its index). A spec that is not an object is [`super::Malformed`] ([`super::decode_spec`]);
//! the rule reads it as empty.

use super::{entries, ok, Loose, Str};
use serde::Deserialize;

/// `ServerTLSSettings.mode` when `tls` does not set it.
pub(crate) const DEFAULT_TLS_MODE: &str = "PASSTHROUGH";

/// One Sidecar's `spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Sidecar<'a> {
    #[serde(borrow, default)]
    pub ingress: Option<Loose<Vec<Loose<IngressListener<'a>>>>>,
}

/// One `ingress[i]` (`IstioIngressListener`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct IngressListener<'a> {
    #[serde(default)]
    pub port: Option<Loose<SidecarPort>>,
    #[serde(borrow, default)]
    pub tls: Option<Loose<ServerTls<'a>>>,
}

/// `ingress[i].port` (`SidecarPort`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SidecarPort {
    #[serde(default)]
    pub number: Option<Loose<u64>>,
}

/// `ingress[i].tls` (`ServerTLSSettings`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ServerTls<'a> {
    #[serde(borrow, default)]
    pub mode: Option<Loose<Str<'a>>>,
}

super::shaped!(Map: Sidecar<'_>, IngressListener<'_>, SidecarPort, ServerTls<'_>);

/// An ingress entry that is not an object: nothing set.
static NO_LISTENER: IngressListener<'static> = IngressListener {
    port: None,
    tls: None,
};

impl<'a> Sidecar<'a> {
    /// Every entry of `spec.ingress`, with its index.
    pub fn ingress(&self) -> impl Iterator<Item = (usize, &IngressListener<'a>)> {
        entries(&self.ingress)
            .iter()
            .map(|l| l.ok().unwrap_or(&NO_LISTENER))
            .enumerate()
    }
}

impl IngressListener<'_> {
    /// `spec.ingress[i]`.
    pub fn path(index: usize) -> String {
        format!("spec.ingress[{index}]")
    }

    /// `tls.mode` when `tls` is set ([`DEFAULT_TLS_MODE`] when it has no string `mode`).
    pub(crate) fn tls_mode(&self) -> Option<&str> {
        match self.tls.as_ref()? {
            Loose::Ok(tls) => Some(ok(&tls.mode).map_or(DEFAULT_TLS_MODE, Str::as_str)),
            Loose::Wrong { found: "null", .. } => None,
            Loose::Wrong { .. } => Some(DEFAULT_TLS_MODE),
        }
    }

    /// `port.number`.
    pub fn port(&self) -> Option<u64> {
        ok(&self.port).and_then(|p| ok(&p.number)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode_spec;
    use serde_json::json;

    fn modes(spec: serde_json::Value) -> Vec<(usize, Option<String>, Option<u64>)> {
        let s: Sidecar<'_> = decode_spec(&spec).unwrap_or_default();
        s.ingress()
            .map(|(i, l)| (i, l.tls_mode().map(str::to_owned), l.port()))
            .collect()
    }

    #[test]
    fn ingress_listeners_with_their_tls() {
        assert_eq!(
            modes(json!({"ingress": [
                {"port": {"number": 9080}},
                {"port": {"number": 8443}, "tls": {"mode": "MUTUAL"}},
                {"port": {"number": 8444}, "tls": {}},
                {"port": {"number": 8445}, "tls": {"mode": "ISTIO_MUTUAL"}},
            ]})),
            [
                (0, None, Some(9080)),
                (1, Some("MUTUAL".into()), Some(8443)),
                (2, Some("PASSTHROUGH".into()), Some(8444)),
                (3, Some("ISTIO_MUTUAL".into()), Some(8445)),
            ]
        );
    }

    #[test]
    fn wrong_types_read_leniently() {
        assert_eq!(
            modes(json!({"ingress": [
                "not a listener",
                {"port": {"number": "80"}, "tls": "x"},
                {"port": 80, "tls": {"mode": 5}},
                {"port": {"number": -1}, "tls": null},
            ]})),
            [
                (0, None, None),
                (1, Some("PASSTHROUGH".into()), None),
                (2, Some("PASSTHROUGH".into()), None),
                (3, None, None),
            ]
        );
        assert!(modes(json!({"ingress": {"port": 1}})).is_empty());
        assert!(modes(json!({})).is_empty());
        assert!(modes(json!(null)).is_empty());
    }

    #[test]
    fn a_spec_that_is_not_an_object_is_malformed() {
        let e = decode_spec::<Sidecar<'_>>(&json!([1])).expect_err("refused");
        assert_eq!(e.path, "spec");
        assert_eq!(e.message, "spec in body must be of type object: \"array\"");
    }
}
