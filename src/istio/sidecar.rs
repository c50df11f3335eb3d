//! Sidecar (`networking.istio.io` v1, v1beta1, v1alpha3): its `ingress` listeners, the ports a
//! workload's sidecar accepts inbound traffic on when the Sidecar lists them.
//!
//! Semantics (istio/istio `pilot/pkg/networking/core/listener_inbound.go`,
//! `buildInboundChainConfigs`): an `ingress[].tls` (ServerTLSSettings) replaces Istio's mutual TLS
//! on that port with TLS terminated on the Sidecar's own certificates, when istiod runs with
//! `ENABLE_TLS_ON_SIDECAR_INGRESS`.

use serde_json::Value;

/// The view of one Sidecar spec.
#[derive(Clone, Copy, Debug)]
pub struct Sidecar<'a> {
    pub spec: &'a Value,
}

/// One `ingress[i]` listener.
#[derive(Clone, Copy, Debug)]
pub struct IngressListener<'a> {
    pub index: usize,
    pub value: &'a Value,
}

impl<'a> Sidecar<'a> {
    pub fn of(spec: &'a Value) -> Sidecar<'a> {
        Sidecar { spec }
    }

    /// Every entry of `spec.ingress`, with its index.
    pub fn ingress(&self) -> impl Iterator<Item = IngressListener<'a>> + 'a {
        crate::json::items(self.spec, "ingress")
            .iter()
            .enumerate()
            .map(|(index, value)| IngressListener { index, value })
    }
}

impl<'a> IngressListener<'a> {
    /// `spec.ingress[i]`.
    pub fn path(&self) -> String {
        format!("spec.ingress[{}]", self.index)
    }

    /// `tls`, when set.
    pub fn tls(&self) -> Option<&'a Value> {
        self.value.get("tls").filter(|v| !v.is_null())
    }

    /// `tls.mode` (`PASSTHROUGH`, Istio's default, when absent).
    pub fn tls_mode(&self) -> Option<&'a str> {
        let tls = self.tls()?;
        Some(
            tls.get("mode")
                .and_then(Value::as_str)
                .unwrap_or("PASSTHROUGH"),
        )
    }

    /// `port.number`.
    pub fn port(&self) -> Option<u64> {
        self.value.get("port")?.get("number")?.as_u64()
    }
}
