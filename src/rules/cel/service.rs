//! CEL form of the Service rule ([`crate::rules::service`]).

use super::{lit, site, Cel, CelForm, Coverage, On};
use crate::rules::service as svc;

/// `name_declares_protocol`: a protocol Istio knows, alone or followed by `-<suffix>`
/// (case-insensitive).
const DECLARES: &str =
    r"(?s)^(http|http2|https|grpc|grpc-web|tcp|tls|udp|mongo|mysql|redis)(-.*)?$";

pub(crate) static PORT_PROTOCOL: CelForm = CelForm {
    rule: &svc::PORT_PROTOCOL,
    coverage: Coverage::Full,
    on: On::Write,
    kinds: None,
    cel: || {
        Cel {
        variables: Vec::new(),
        sites: format!(
            "$o.?spec.?type.orValue('') == 'ExternalName' ? [] : $o.?spec.?ports.orValue([]).transformList(i, p, p.?protocol.orValue('TCP').upperAscii() == 'TCP' && p.?appProtocol.orValue('') == '' && !p.?name.orValue('').lowerAscii().matches({}), p.?name.orValue('') == '' ? {} : {})",
            lit(DECLARES),
            site(
                "'spec.ports[' + string(i) + ']'",
                "'port ' + string(p.port) + ' has no name and no appProtocol, so Istio sniffs the protocol; traffic it does not recognise as HTTP is treated as TCP, where HTTP-only AuthorizationPolicy fields (paths, methods, headers) do not apply'",
                FIX,
            ),
            site(
                "'spec.ports[' + string(i) + '].name'",
                "'port ' + string(p.port) + ' is named ' + strings.quote(p.name) + ', which names no protocol, and has no appProtocol, so Istio sniffs the protocol; traffic it does not recognise as HTTP is treated as TCP, where HTTP-only AuthorizationPolicy fields (paths, methods, headers) do not apply'",
                FIX,
            ),
        ),
        weakening: None,
    }
    },
};

const FIX: &str = "'name the port after its protocol, e.g. name: http-web (or grpc-, tcp-, tls-...), or set appProtocol: http'";
