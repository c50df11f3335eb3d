//! Services: Istio picks a port's protocol from `appProtocol` or from a name of the form
//! `<protocol>[-<suffix>]`; otherwise it sniffs. Sniffed traffic that is not recognised as HTTP
//! is plain TCP, where HTTP-only AuthorizationPolicy fields (paths, methods, headers) do not
//! apply: an ALLOW rule with them is dropped, a DENY rule loses them and denies more.

use super::{Action, Rule, Violation};
use crate::model::service::ServicePort;
use crate::model::{decode_spec, Service};
use crate::resource::Kind;

/// Protocol prefixes Istio's protocol selection understands (case-insensitive).
const PROTOCOLS: &[&str] = &[
    "http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "udp", "mongo", "mysql", "redis",
];

/// True when a port name declares its protocol: `http`, `http-web`, `grpc-api`, `tcp-db`, ...
pub(crate) fn name_declares_protocol(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    PROTOCOLS.iter().any(|p| {
        lower == *p
            || lower
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('-'))
    })
}

/// How Istio's sidecar treats the traffic of one Service port, from its protocol selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortProtocol {
    /// HTTP, HTTP/2, gRPC, gRPC-Web, HTTP proxy: HTTP filters, all AuthorizationPolicy fields.
    Http,
    /// TCP, TLS, HTTPS (passed through), Mongo, MySQL, Redis: TCP filters, HTTP-only fields
    /// do not apply.
    Tcp,
    /// UDP: not proxied.
    Udp,
    /// Not declared: the sidecar sniffs, so an HTTP/1.1 or HTTP/2 request is handled as HTTP
    /// and anything else as TCP.
    Sniffed,
}

impl PortProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            PortProtocol::Http => "http",
            PortProtocol::Tcp => "tcp",
            PortProtocol::Udp => "udp",
            PortProtocol::Sniffed => "sniffed",
        }
    }
}

/// Istio's protocol for a Service port: `appProtocol` when set (with Kubernetes' standard
/// `kubernetes.io/h2c`, `/ws`, `/wss`), else the port name up to its first `-` (`grpc-web`
/// whole), case-insensitively; an unknown protocol is sniffed, except on the well-known ports
/// 25, 53, 3306 and 27017, which are TCP (istio/istio `pkg/config/kube/conversion.go`,
/// `ConvertProtocol`, and `pkg/config/protocol/instance.go`, `Parse`).
pub(crate) fn port_protocol(
    port: u32,
    name: &str,
    protocol: &str,
    app_protocol: Option<&str>,
) -> PortProtocol {
    if protocol == "UDP" {
        return PortProtocol::Udp;
    }
    let mut name = name;
    if let Some(app) = app_protocol {
        match app {
            "kubernetes.io/h2c" | "kubernetes.io/ws" => return PortProtocol::Http,
            "kubernetes.io/wss" => return PortProtocol::Tcp,
            _ => name = app,
        }
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("grpc-web") {
        return PortProtocol::Http;
    }
    let prefix = lower.split('-').next().unwrap_or("");
    match prefix {
        "http" | "http2" | "http_proxy" | "grpc" => PortProtocol::Http,
        "tcp" | "https" | "tls" | "mongo" | "redis" | "mysql" => PortProtocol::Tcp,
        "udp" => PortProtocol::Udp,
        _ if matches!(port, 25 | 53 | 3306 | 27017) => PortProtocol::Tcp,
        _ => PortProtocol::Sniffed,
    }
}

/// The protocol Istio picks for container port `port` of workload `w` from one port of a
/// Service that selects it: `None` when the Service port does not target that container port
/// (by number, or by the container port's name; absent, the Service port's own number).
pub(crate) fn targeted_protocol(
    sp: &ServicePort<'_>,
    w: &crate::mtls::Workload,
    port: u32,
) -> Option<PortProtocol> {
    if w.target_port(sp.target()?) != Some(port) {
        return None;
    }
    Some(port_protocol(
        sp.number()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(port),
        sp.name(),
        sp.protocol(),
        sp.app_protocol(),
    ))
}

pub(crate) static PORT_PROTOCOL: Rule = Rule {
    id: "svc-port-protocol",
    kinds: &[Kind::Service],
    default_action: Action::Warn,
    summary: "a Service port with neither a protocol-prefixed name (http-, grpc-, tcp-, ...) nor appProtocol: Istio sniffs the protocol",
    example_fix: "spec.ports[0].name: http-web (or appProtocol: http)",
    needs: &[],
    check: |review, _ctx, out| {
        let svc: Service<'_> = decode_spec(review.spec()).unwrap_or_default();
        if svc.is_external_name() {
            return;
        }
        let not_an_object = ServicePort::default();
        for (i, port) in svc.port_entries().iter().enumerate() {
            // An entry that is not an object has no name and no appProtocol either.
            let port = port.ok().unwrap_or(&not_an_object);
            // Only TCP is proxied; UDP and SCTP have nothing to sniff.
            if !port.protocol().eq_ignore_ascii_case("TCP") {
                continue;
            }
            if port.app_protocol().is_some_and(|a| !a.is_empty()) {
                continue;
            }
            let name = port.name();
            if name_declares_protocol(name) {
                continue;
            }
            let number = port.number_text();
            let (path, what) = if name.is_empty() {
                (format!("spec.ports[{i}]"), format!("port {number} has no name and no appProtocol"))
            } else {
                (format!("spec.ports[{i}].name"), format!("port {number} is named {name:?}, which names no protocol, and has no appProtocol"))
            };
            out.push(Violation::new(
                path,
                format!(
                    "{what}, so Istio sniffs the protocol; traffic it does not recognise as HTTP is treated as TCP, where HTTP-only AuthorizationPolicy fields (paths, methods, headers) do not apply"
                ),
                "name the port after its protocol, e.g. name: http-web (or grpc-, tcp-, tls-...), or set appProtocol: http",
            ));
        }
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{obj, run};
    use kube::core::admission::Operation;
    use serde_json::{json, Value};

    fn svc(spec: Value) -> kube::core::DynamicObject {
        obj(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "prod"}, "spec": spec}))
    }

    const OPS: [Operation; 2] = [Operation::Create, Operation::Update];

    #[test]
    fn port_protocol_follows_istio_selection() {
        use PortProtocol::*;
        let p = |port, name, proto, app| port_protocol(port, name, proto, app);
        assert_eq!(p(80, "http-web", "TCP", None), Http);
        assert_eq!(p(80, "HTTP2", "TCP", None), Http);
        assert_eq!(p(80, "grpc-web-x", "TCP", None), Http);
        assert_eq!(p(80, "grpc", "TCP", None), Http);
        assert_eq!(p(80, "tcp-db", "TCP", None), Tcp);
        assert_eq!(p(443, "https", "TCP", None), Tcp);
        assert_eq!(p(80, "web", "TCP", None), Sniffed);
        assert_eq!(p(80, "", "TCP", None), Sniffed);
        assert_eq!(p(3306, "", "TCP", None), Tcp, "well-known port");
        assert_eq!(p(80, "http", "UDP", None), Udp);
        // appProtocol wins over the name.
        assert_eq!(p(80, "tcp", "TCP", Some("http")), Http);
        assert_eq!(p(80, "http", "TCP", Some("tcp")), Tcp);
        assert_eq!(p(80, "", "TCP", Some("kubernetes.io/h2c")), Http);
        assert_eq!(p(80, "", "TCP", Some("kubernetes.io/wss")), Tcp);
        assert_eq!(p(80, "http", "TCP", Some("custom")), Sniffed);
    }

    #[test]
    fn protocol_names() {
        for ok in [
            "http",
            "HTTP-web",
            "http2",
            "grpc-api",
            "grpc-web",
            "tcp-postgres",
            "tls",
            "https-admin",
            "mongo",
            "redis-cache",
        ] {
            assert!(name_declares_protocol(ok), "{ok}");
        }
        for bad in [
            "",
            "web",
            "metrics",
            "httpx",
            "postgres-tcp",
            "tcp_db",
            "h2",
        ] {
            assert!(!name_declares_protocol(bad), "{bad}");
        }
    }

    #[test]
    fn unnamed_and_unprefixed_ports_warned() {
        for op in OPS {
            let o = svc(json!({"ports": [
                {"port": 80, "targetPort": 80, "protocol": "TCP"},
                {"name": "tcp-postgres", "port": 5432},
                {"name": "metrics", "port": 9090}]}));
            let found = run(&PORT_PROTOCOL, op.clone(), "v1", "prod", &o);
            assert_eq!(found.len(), 2);
            assert_eq!(found[0].path, "spec.ports[0]");
            assert!(
                found[0].message.starts_with(
                    "port 80 has no name and no appProtocol, so Istio sniffs the protocol"
                ),
                "{}",
                found[0].message
            );
            assert!(found[0]
                .fix
                .starts_with("name the port after its protocol, e.g. name: http-web"));
            assert_eq!(found[1].path, "spec.ports[2].name");
            assert!(found[1]
                .message
                .starts_with("port 9090 is named \"metrics\", which names no protocol"));
        }
        assert_eq!(PORT_PROTOCOL.default_action, Action::Warn);
    }

    #[test]
    fn declared_ports_allowed() {
        for op in OPS {
            let o = svc(json!({"ports": [
                {"name": "http", "port": 80},
                {"name": "web", "port": 8080, "appProtocol": "http"},
                {"port": 53, "protocol": "UDP"},
                {"name": "grpc-api", "port": 9000}]}));
            assert!(run(&PORT_PROTOCOL, op.clone(), "v1", "prod", &o).is_empty());
        }
        let o = svc(
            json!({"type": "ExternalName", "externalName": "x.example.com", "ports": [{"port": 80}]}),
        );
        assert!(run(&PORT_PROTOCOL, Operation::Create, "v1", "prod", &o).is_empty());
        let o = svc(json!({"ports": [{"port": 80}]}));
        assert!(run(&PORT_PROTOCOL, Operation::Delete, "v1", "prod", &o).is_empty());
    }
}
