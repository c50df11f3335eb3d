//! Service (`v1`): the pod selector and the ports, each with its number, name, protocol,
//! `appProtocol` and `targetPort`.
//!
//! `targetPort` is an `IntOrString` (Kubernetes `ServicePort`): a container port number, or the
//! name of a container port of the selected pods; absent, it is the Service port's own number.
//! [`ServicePort::target`] reads it once; [`crate::mtls::Workload::target_port`] is the one
//! place a name is resolved against a workload's container ports.

use super::{entries, nullable, ok, shaped, Loose, Str};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// One Service's `spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Service<'a> {
    #[serde(borrow, default, rename = "type")]
    pub(crate) service_type: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub selector: Option<Loose<BTreeMap<Str<'a>, Loose<Str<'a>>>>>,
    #[serde(borrow, default)]
    pub ports: Option<Loose<Vec<Loose<ServicePort<'a>>>>>,
}

/// One `spec.ports[i]` entry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort<'a> {
    #[serde(borrow, default)]
    pub name: Option<Loose<Str<'a>>>,
    /// `null` is kept (as `Wrong`), so that messages show what was written.
    #[serde(default, deserialize_with = "nullable")]
    pub port: Option<Loose<u64>>,
    #[serde(borrow, default)]
    pub protocol: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) app_protocol: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) target_port: Option<Loose<IntOrString<'a>>>,
}

shaped!(Map: Service<'_>, ServicePort<'_>);
shaped!(Scalar: IntOrString<'_>);

/// A Kubernetes `IntOrString` as written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum IntOrString<'a> {
    Int(u64),
    String(Str<'a>),
}

impl<'de: 'a, 'a> Deserialize<'de> for IntOrString<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IntOrString<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString<'de>, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString<'de>, E> {
                u64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<IntOrString<'de>, E> {
                Ok(IntOrString::String(Str(std::borrow::Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString<'de>, E> {
                Ok(IntOrString::String(Str(std::borrow::Cow::Owned(
                    v.to_owned(),
                ))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<IntOrString<'de>, E> {
                Ok(IntOrString::String(Str(std::borrow::Cow::Owned(v))))
            }
        }
        d.deserialize_any(V)
    }
}

/// Where a Service port sends traffic: a container port number, or a container port's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    Number(u32),
    Name(&'a str),
}

impl<'a> Service<'a> {
    /// `spec.type` is `ExternalName` (a DNS alias: no selector, no proxying).
    pub(crate) fn is_external_name(&self) -> bool {
        ok(&self.service_type).is_some_and(|t| t.as_str() == "ExternalName")
    }

    /// `spec.selector`'s pairs with string values (empty when absent: no selector).
    pub fn selector(&self) -> BTreeMap<String, String> {
        ok(&self.selector)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.to_string(), v.ok()?.to_string())))
            .collect()
    }

    /// Every `spec.ports[i]` entry, as written.
    pub(crate) fn port_entries(&self) -> &[Loose<ServicePort<'a>>] {
        entries(&self.ports)
    }

    /// Every `spec.ports[i]` that is an object.
    pub fn ports(&self) -> impl Iterator<Item = &ServicePort<'a>> {
        self.port_entries().iter().filter_map(Loose::ok)
    }
}

impl ServicePort<'_> {
    /// `port`, when it is a number.
    pub fn number(&self) -> Option<u64> {
        ok(&self.port).copied()
    }

    /// `port` as written, for messages (`?` when absent).
    pub(crate) fn number_text(&self) -> String {
        match &self.port {
            None => "?".to_owned(),
            Some(Loose::Ok(n)) => n.to_string(),
            Some(Loose::Wrong { text, .. }) => text.clone(),
        }
    }

    /// `name` ("" when absent or not a string).
    pub fn name(&self) -> &str {
        ok(&self.name).map_or("", Str::as_str)
    }

    /// `protocol` (Kubernetes' default `TCP` when absent or not a string).
    pub fn protocol(&self) -> &str {
        ok(&self.protocol).map_or("TCP", Str::as_str)
    }

    /// `appProtocol`, when it is a string.
    pub(crate) fn app_protocol(&self) -> Option<&str> {
        ok(&self.app_protocol).map(Str::as_str)
    }

    /// `targetPort`: a number (a string of digits included), else a container port's name;
    /// absent (or not a port), the Service port's own number.
    pub fn target(&self) -> Option<Target<'_>> {
        let own = || {
            self.number()
                .and_then(|n| u32::try_from(n).ok())
                .map(Target::Number)
        };
        match ok(&self.target_port) {
            Some(IntOrString::Int(n)) => u32::try_from(*n).ok().map(Target::Number).or_else(own),
            Some(IntOrString::String(s)) => Some(match s.parse::<u32>() {
                Ok(n) => Target::Number(n),
                Err(_) => Target::Name(s.as_str()),
            }),
            None => own(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode_spec;
    use serde_json::json;

    #[test]
    fn ports_and_their_targets() {
        let spec = json!({"type": "ClusterIP", "selector": {"app": "web", "n": 1},
            "ports": [{"name": "http", "port": 80, "targetPort": "web"},
                      {"port": 81, "targetPort": 8081, "protocol": "UDP", "appProtocol": "x"},
                      {"port": 82, "targetPort": "8082"},
                      {"port": 83},
                      {"port": 84, "targetPort": -1},
                      {"port": "85"},
                      7]});
        let svc: Service<'_> = decode_spec(&spec).expect("decodes");
        assert!(!svc.is_external_name());
        assert_eq!(
            svc.selector().into_iter().collect::<Vec<_>>(),
            [("app".to_owned(), "web".to_owned())]
        );
        let targets: Vec<Option<Target<'_>>> = svc.ports().map(ServicePort::target).collect();
        assert_eq!(
            targets,
            [
                Some(Target::Name("web")),
                Some(Target::Number(8081)),
                Some(Target::Number(8082)),
                Some(Target::Number(83)),
                Some(Target::Number(84)),
                None,
            ]
        );
        let ports: Vec<&ServicePort<'_>> = svc.ports().collect();
        assert_eq!(
            (
                ports[0].name(),
                ports[0].protocol(),
                ports[0].app_protocol()
            ),
            ("http", "TCP", None)
        );
        assert_eq!(
            (ports[1].protocol(), ports[1].app_protocol()),
            ("UDP", Some("x"))
        );
        assert_eq!(ports[5].number_text(), "\"85\"");
        assert_eq!(svc.port_entries().len(), 7);
        let ext = json!({"type": "ExternalName"});
        let ext: Service<'_> = decode_spec(&ext).expect("decodes");
        assert!(ext.is_external_name() && ext.selector().is_empty());
    }
}
