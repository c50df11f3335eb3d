//! CEL form of the Sidecar rule ([`crate::rules::sidecar`]): `spec.ingress[i].tls`, read as
//! [`crate::model::sidecar`] reads it (`tls.mode` absent is `PASSTHROUGH`).

use super::{site, Cel, CelForm, Coverage, On};
use crate::rules::sidecar;

pub(crate) static INGRESS_TLS: CelForm = CelForm {
    rule: &sidecar::INGRESS_TLS,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: Vec::new(),
        sites: format!(
            "$o.?spec.?ingress.orValue([]).transformList(i, l, l.?tls.hasValue() && l.tls.?mode.orValue('PASSTHROUGH') != 'ISTIO_MUTUAL', {})",
            site(
                "'spec.ingress[' + string(i) + '].tls'",
                "'tls mode ' + string(l.tls.?mode.orValue('PASSTHROUGH')) + ' makes the sidecar terminate TLS on ' + (l.?port.?number.orValue(-1) >= 0 ? 'port ' + string(l.port.number) : 'this port') + ' with the Sidecar\\'s own certificates instead of Istio\\'s mutual TLS: STRICT PeerAuthentication no longer holds there, and a client certificate from the CA it trusts can carry any SPIFFE identity, which AuthorizationPolicy then matches as a mesh principal'",
                "'remove tls from the ingress listener (in-mesh clients use Istio\\'s mutual TLS); terminate TLS for clients outside the mesh at a Gateway; if this listener is deliberate, exempt the Sidecar\\'s namespace from sidecar-ingress-tls in the meshguard policy'",
            )
        ),
        weakening: None,
    }
    },
};
