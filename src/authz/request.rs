//! The request model: who calls (a mesh identity, or a plaintext client without one), from
//! which address, to which port of the destination, and, for HTTP, the request line, headers
//! and token. A [`Request`] is prepared once (path normalised, header names lower-cased and
//! duplicates joined, the peer's SPIFFE URI built), so evaluating it against many workloads
//! compares prepared strings only.

use super::path::{normalize_base, NormalizedPath};
use serde_json::{Map, Value};
use std::net::IpAddr;

/// A workload's mesh identity: `<trust-domain>/ns/<namespace>/sa/<service-account>`, carried
/// as the URI SAN `spiffe://…` of its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    trust_domain: String,
    namespace: String,
    service_account: String,
    principal: String,
    uri: String,
}

impl Identity {
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> Identity {
        let principal = format!("{trust_domain}/ns/{namespace}/sa/{service_account}");
        Identity {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            uri: format!("spiffe://{principal}"),
            principal,
        }
    }
    /// `cluster.local/ns/prod/sa/web`.
    pub fn principal(&self) -> &str {
        &self.principal
    }
    /// `spiffe://cluster.local/ns/prod/sa/web`.
    pub fn uri(&self) -> &str {
        &self.uri
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    pub fn service_account(&self) -> &str {
        &self.service_account
    }
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }
}

/// The HTTP part of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http {
    method: String,
    raw_path: String,
    path: Result<NormalizedPath, String>,
    host: Option<String>,
    /// Lower-cased names, sorted; duplicates joined with `,` (as Envoy presents them).
    headers: Vec<(String, String)>,
}

impl Http {
    /// `method` and `path` as sent; `path` is normalised here (Istio's default `BASE`).
    pub fn new(method: &str, path: &str) -> Http {
        Http {
            method: method.to_owned(),
            raw_path: path.to_owned(),
            path: normalize_base(path),
            host: None,
            headers: Vec::new(),
        }
    }

    /// The `Host` (`:authority`) as sent, port included when the client sends one.
    pub fn with_host(mut self, host: &str) -> Http {
        self.host = Some(host.to_owned());
        self
    }

    /// Add a header (names compare case-insensitively; a repeated header is joined with `,`).
    pub fn with_header(mut self, name: &str, value: &str) -> Http {
        let name = name.to_ascii_lowercase();
        if name == "host" || name == ":authority" {
            self.host = Some(value.to_owned());
            return self;
        }
        match self
            .headers
            .binary_search_by(|(n, _)| n.as_str().cmp(&name))
        {
            Ok(i) => {
                let v = &mut self.headers[i].1;
                v.push(',');
                v.push_str(value);
            }
            Err(i) => self.headers.insert(i, (name, value.to_owned())),
        }
        self
    }

    pub fn method(&self) -> &str {
        &self.method
    }
    /// The path as sent.
    pub(crate) fn raw_path(&self) -> &str {
        &self.raw_path
    }
    /// The normalised path without query (`None` when the request is rejected).
    pub fn path(&self) -> Option<&str> {
        self.path.as_ref().ok().map(|p| p.path.as_str())
    }
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }
    /// A header by lower-cased name (`:method`, `:path`, `:authority`/`host` included).
    pub fn header(&self, lower_name: &str) -> Option<&str> {
        match lower_name {
            ":method" => Some(&self.method),
            ":path" => Some(&self.raw_path),
            ":authority" | "host" => self.host.as_deref(),
            _ => self
                .headers
                .binary_search_by(|(n, _)| n.as_str().cmp(lower_name))
                .ok()
                .map(|i| self.headers[i].1.as_str()),
        }
    }
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Why the sidecar answers 400 before any policy runs, if it does: a path with `%00`, a
    /// method not in upper case (Istio's "Authorization Policy Normalization" reference).
    pub(crate) fn rejection(&self) -> Option<String> {
        if let Err(e) = &self.path {
            return Some(e.clone());
        }
        if self.method.bytes().any(|b| b.is_ascii_lowercase()) {
            return Some(format!(
                "the method {} is not in upper case, which Istio rejects with 400",
                self.method
            ));
        }
        None
    }
}

/// A JWT the client presents: issuer, subject and the rest of the payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Jwt {
    claims: Map<String, Value>,
}

impl Jwt {
    /// A token with `iss` and `sub`.
    pub fn new(issuer: &str, subject: &str) -> Jwt {
        let mut claims = Map::new();
        claims.insert("iss".into(), Value::String(issuer.to_owned()));
        claims.insert("sub".into(), Value::String(subject.to_owned()));
        Jwt { claims }
    }

    /// Split `ISSUER/SUBJECT` at the last `/` (issuers are URLs).
    pub fn parse(s: &str) -> Result<Jwt, String> {
        match s.rsplit_once('/') {
            Some((iss, sub)) if !iss.is_empty() && !sub.is_empty() => Ok(Jwt::new(iss, sub)),
            _ => Err(format!(
                "{s}: want ISSUER/SUBJECT, e.g. https://auth.example.com/alice"
            )),
        }
    }

    /// Set `aud` (a string for one audience, a list for several).
    pub(crate) fn with_audiences(mut self, audiences: &[String]) -> Jwt {
        match audiences {
            [] => {}
            [one] => {
                self.claims.insert("aud".into(), Value::String(one.clone()));
            }
            many => {
                self.claims.insert(
                    "aud".into(),
                    Value::Array(many.iter().cloned().map(Value::String).collect()),
                );
            }
        }
        self
    }

    /// Set a claim at a path (`["realm_access", "roles"]`); intermediate objects are created.
    /// Setting a path again turns its value into a list of both.
    pub(crate) fn with_claim(mut self, path: &[String], value: Value) -> Jwt {
        let Some((last, parents)) = path.split_last() else {
            return self;
        };
        let mut map = &mut self.claims;
        for p in parents {
            let entry = map
                .entry(p.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(m) = entry else {
                return self;
            };
            map = m;
        }
        match map.get_mut(last) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                map.insert(last.clone(), value);
            }
        }
        self
    }

    pub fn issuer(&self) -> &str {
        self.claims.get("iss").and_then(Value::as_str).unwrap_or("")
    }
    pub fn subject(&self) -> &str {
        self.claims.get("sub").and_then(Value::as_str).unwrap_or("")
    }
    /// `aud` as a list (a string claim is one audience).
    pub fn audiences(&self) -> Vec<&str> {
        match self.claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
    /// `iss/sub`, the request principal once the token is accepted.
    pub fn principal(&self) -> String {
        format!("{}/{}", self.issuer(), self.subject())
    }
}

/// One request to a destination workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub(crate) peer: Option<Identity>,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) remote_ip: Option<IpAddr>,
    pub(crate) destination_ip: Option<IpAddr>,
    pub(crate) sni: Option<String>,
    pub port: u16,
    pub(crate) http: Option<Http>,
    pub(crate) jwt: Option<Jwt>,
}

impl Request {
    /// A plain TCP connection to `port` from `peer` (`None`: a plaintext client without a mesh
    /// identity).
    pub fn tcp(peer: Option<Identity>, port: u16) -> Request {
        Request {
            peer,
            source_ip: None,
            remote_ip: None,
            destination_ip: None,
            sni: None,
            port,
            http: None,
            jwt: None,
        }
    }

    /// An HTTP request to `port`.
    pub fn http(peer: Option<Identity>, port: u16, http: Http) -> Request {
        Request {
            http: Some(http),
            ..Request::tcp(peer, port)
        }
    }

    /// The connection's peer address (`source.ip`, `ipBlocks`); also `remote.ip` unless set.
    pub fn with_source_ip(mut self, ip: IpAddr) -> Request {
        self.source_ip = Some(ip);
        self
    }
    /// The original client address (`remote.ip`, `remoteIpBlocks`).
    pub fn with_remote_ip(mut self, ip: IpAddr) -> Request {
        self.remote_ip = Some(ip);
        self
    }
    /// The destination pod address (`destination.ip`).
    pub(crate) fn with_destination_ip(mut self, ip: IpAddr) -> Request {
        self.destination_ip = Some(ip);
        self
    }
    /// The TLS SNI (`connection.sni`).
    pub(crate) fn with_sni(mut self, sni: &str) -> Request {
        self.sni = Some(sni.to_owned());
        self
    }
    /// The token the client presents (HTTP only; a TCP request carries none).
    pub(crate) fn with_jwt(mut self, jwt: Jwt) -> Request {
        self.jwt = Some(jwt);
        self
    }
    /// Change the destination port (to reuse one request for many workloads).
    pub fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    /// Change who the destination sees (after a waypoint: the waypoint's identity).
    pub fn set_peer(&mut self, peer: Option<Identity>) {
        self.peer = peer;
    }

    /// This request as the next hop receives it: from `peer`, on `port`, with the source
    /// address unknown when a proxy in between (a waypoint) opens the connection.
    pub fn forwarded(&self, peer: Option<Identity>, port: u16, keep_source: bool) -> Request {
        Request {
            peer,
            port,
            source_ip: if keep_source { self.source_ip } else { None },
            ..self.clone()
        }
    }

    pub fn peer(&self) -> Option<&Identity> {
        self.peer.as_ref()
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub(crate) fn http_part(&self) -> Option<&Http> {
        self.http.as_ref()
    }
    pub fn jwt(&self) -> Option<&Jwt> {
        self.jwt.as_ref()
    }
    pub fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }
    /// `remote.ip`: the given remote address, else the peer address (no X-Forwarded-For or
    /// PROXY protocol in front of a sidecar).
    pub(crate) fn remote_ip(&self) -> Option<IpAddr> {
        self.remote_ip.or(self.source_ip)
    }
    pub(crate) fn destination_ip(&self) -> Option<IpAddr> {
        self.destination_ip
    }
    pub(crate) fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }
    pub(crate) fn is_http(&self) -> bool {
        self.http.is_some()
    }

    /// One line for reports: `GET /api/data`, or `TCP`.
    pub fn describe(&self) -> String {
        match &self.http {
            Some(h) => format!("HTTP {} {}", h.method, h.raw_path),
            None => "TCP".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_strings() {
        let id = Identity::new("cluster.local", "prod", "web");
        assert_eq!(id.principal(), "cluster.local/ns/prod/sa/web");
        assert_eq!(id.uri(), "spiffe://cluster.local/ns/prod/sa/web");
    }

    #[test]
    fn headers_lowercased_and_joined() {
        let h = Http::new("GET", "/a/./b?q")
            .with_header("X-Api-Version", "v1")
            .with_header("x-api-version", "v2")
            .with_header("Host", "backend:80");
        assert_eq!(h.header("x-api-version"), Some("v1,v2"));
        assert_eq!(h.header(":authority"), Some("backend:80"));
        assert_eq!(h.host(), Some("backend:80"));
        assert_eq!(h.header(":method"), Some("GET"));
        assert_eq!(h.path(), Some("/a/b"));
        assert_eq!(h.header("absent"), None);
        assert!(h.rejection().is_none());
        assert!(Http::new("get", "/").rejection().is_some());
        assert!(Http::new("GET", "/%00").rejection().is_some());
    }

    #[test]
    fn jwt_claims() {
        let t = Jwt::parse("https://auth.example.com/alice")
            .expect("parse")
            .with_audiences(&["a".into(), "b".into()])
            .with_claim(&["realm".into(), "roles".into()], json!("x"))
            .with_claim(&["realm".into(), "roles".into()], json!("y"))
            .with_claim(&["realm".into(), "roles".into()], json!("z"));
        assert_eq!(t.issuer(), "https://auth.example.com");
        assert_eq!(t.subject(), "alice");
        assert_eq!(t.principal(), "https://auth.example.com/alice");
        assert_eq!(t.audiences(), ["a", "b"]);
        assert_eq!(t.claims()["realm"]["roles"], json!(["x", "y", "z"]));
        assert!(Jwt::parse("no-slash").is_err());
        assert!(Jwt::parse("https://a/").is_err());
    }
}
