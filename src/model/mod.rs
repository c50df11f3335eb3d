//! One typed model of the objects meshguard reviews, decoded once.
//!
//! Each kind has one struct here, deserialized straight from the object (`serde`), that every
//! reader uses: the rules, Istio's validation of the kind (which sits beside its struct), and
//! the cluster-wide readers. Strings are borrowed from the document they are decoded from
//! ([`Str`]) and owned only when the document is dropped ([`Str::into_owned`] for `check`,
//! `audit` and the inventory). Fields no check reads are not declared, so the deserializer
//! skips them without building anything.
//!
//! Istio's CRD schemas are strict about types, and meshguard reports each wrongly typed field
//! with its path, as Istio does. So a field of the wrong JSON type does not fail the decode:
//! [`Loose`] keeps it as [`Loose::Wrong`] (with its JSON type), the kind's validation names it,
//! and readers see it as absent. What the decode does refuse — a `spec` that is not an object —
//! is a [`Malformed`] value with path and message, which the Istio-parity rules report as
//! `istio-invalid-spec`, never a panic and never a silent pass.
//!
//! Landed kinds: [`PeerAuthentication`], [`RequestAuthentication`], [`DestinationRule`],
//! [`Service`], [`AuthorizationPolicy`], the pod template of every workload kind
//! ([`workload::PodTemplate`]); the metadata the cluster caches read of [`Namespace`] and
//! [`ServiceAccount`]; what the mesh context reads, [`MutatingWebhookConfiguration`]
//! and [`ConfigMap`] (decoded as k8s-openapi decodes them: the same objects refused with the
//! same message: `k8s_struct!`, [`Checked`]); what the data-plane model reads,
//! [`gateway`], [`gateway_class`], [`http_route`], [`service_entry`] ([`decode_part`]);
//! [`EnvoyFilter`] and [`Sidecar`]; and what the mesh's ConfigMaps hold: the MeshConfig
//! ([`mesh_config`]) and the sidecar injector's `config` and `values` ([`injector_config`]).
//!
//! Label selectors have one engine, [`label_selector`]: Kubernetes `LabelSelector` semantics,
//! and an Istio policy's [`Selector`] (`matchLabels` only) matches through it.

pub mod authorization_policy;
pub(crate) mod config_map;
pub(crate) mod destination_rule;
pub mod envoy_filter;
pub mod gateway;
pub(crate) mod gateway_class;
pub mod http_route;
pub(crate) mod injector_config;
pub(crate) mod label_selector;
pub mod labels;
pub mod mesh_config;
pub(crate) mod mutating_webhook_configuration;
pub mod namespace;
pub mod peer_authentication;
pub(crate) mod request_authentication;
pub mod service;
pub mod service_account;
pub mod service_entry;
pub mod sidecar;
pub(crate) mod target_ref;
pub mod validation;
pub mod workload;

pub use authorization_policy::AuthorizationPolicy;
pub use config_map::ConfigMap;
pub use destination_rule::DestinationRule;
pub use envoy_filter::EnvoyFilter;
pub use label_selector::{LabelSelectorSpec, Labels, Selector as LabelSelector};
pub use mutating_webhook_configuration::MutatingWebhookConfiguration;
pub use namespace::Namespace;
pub use peer_authentication::{MtlsMode, PeerAuthentication};
pub use request_authentication::RequestAuthentication;
pub use service::Service;
pub use service_account::ServiceAccount;
pub use sidecar::Sidecar;

use serde::de::{self, Deserializer, IntoDeserializer, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// A string of the document: borrowed when the decoder can (a `&str` in the input), owned when
/// it must (escapes, or an owned input). serde borrows a bare `Cow<str>` only with
/// `#[serde(borrow)]` and never through `Option` or `Vec`; this newtype borrows everywhere.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'a> Str<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same string, owning its text (independent of the document).
    pub fn into_owned(self) -> Str<'static> {
        Str(Cow::Owned(self.0.into_owned()))
    }
}

impl AsRef<str> for Str<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Str<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A field as written: `Ok` when it has the type meshguard reads, else `Wrong` with the JSON
/// type it has (`"number"`, `"object"`, `"null"` inside a list, ...) and, for a scalar, its JSON
/// text, so that validation can say what Istio says about it. Readers treat `Wrong` as absent.
#[derive(Clone, Debug, PartialEq)]
pub enum Loose<T> {
    Ok(T),
    Wrong {
        /// The JSON type found.
        found: &'static str,
        /// The value's JSON text, for scalars (`5`, `true`, `"x"`); empty for lists and maps.
        text: String,
    },
}

impl<T> Loose<T> {
    pub fn ok(&self) -> Option<&T> {
        match self {
            Loose::Ok(t) => Some(t),
            Loose::Wrong { .. } => None,
        }
    }

    pub(crate) fn into_ok(self) -> Option<T> {
        match self {
            Loose::Ok(t) => Some(t),
            Loose::Wrong { .. } => None,
        }
    }

    fn wrong(found: &'static str, text: String) -> Loose<T> {
        Loose::Wrong { found, text }
    }
}

/// For a Kubernetes built-in kind decoded the way k8s-openapi decodes it: the struct derives
/// `Deserialize` with `#[serde(remote = "Self")]` (an inherent `deserialize`), and this gives it
/// the trait impl that takes a JSON object only, expecting `$name` (as k8s-openapi's visitors
/// do), so that a refused object gets k8s-openapi's message, word for word.
macro_rules! k8s_struct {
    ($t:ident, $name:literal) => {
        impl<'de: 'a, 'a> serde::Deserialize<'de> for $t<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $t<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($name)
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<$t<'de>, A::Error> {
                        $t::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}
pub(crate) use k8s_struct;

/// A field no check reads but Kubernetes' decoder (k8s-openapi) type-checks: decoded, so that a
/// wrong type is refused with the same message, then dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Checked<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|_| Checked(std::marker::PhantomData))
    }
}

/// A base64 string (`caBundle`, `binaryData`), checked as k8s-openapi's `ByteString` checks it
/// (standard alphabet, padded; `null` is empty) and not kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Base64;

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Base64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64-encoded string")
            }
            fn visit_none<E: de::Error>(self) -> Result<Base64, E> {
                Ok(Base64)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Base64, D::Error> {
                d.deserialize_str(self)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Base64, E> {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(|_| Base64)
                    .map_err(E::custom)
            }
        }
        d.deserialize_option(V)
    }
}

/// `Option<Loose<T>>` read as the typed value or nothing.
pub fn ok<T>(field: &Option<Loose<T>>) -> Option<&T> {
    field.as_ref().and_then(Loose::ok)
}

/// The entries of an optional list, each as written.
pub fn entries<T>(field: &Option<Loose<Vec<Loose<T>>>>) -> &[Loose<T>] {
    ok(field).map_or(&[], Vec::as_slice)
}

/// Which JSON shape a typed field takes, so that [`Loose`] can tell a wrong type without trying
/// (serde's derived structs would also read a list, field by field).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    Scalar,
    List,
    Map,
}

/// The JSON shape of a model type.
pub(crate) trait Shaped {
    const SHAPE: Shape;
}

macro_rules! shaped {
    ($shape:ident: $($t:ty),* $(,)?) => {
        $(impl $crate::model::Shaped for $t { const SHAPE: $crate::model::Shape = $crate::model::Shape::$shape; })*
    };
}
pub(crate) use shaped;

shaped!(Scalar: Str<'_>, bool, u32, u64, i64, f64);
impl<T> Shaped for Vec<T> {
    const SHAPE: Shape = Shape::List;
}
impl<K, V> Shaped for BTreeMap<K, V> {
    const SHAPE: Shape = Shape::Map;
}

impl<'de, T: Deserialize<'de> + Shaped> Deserialize<'de> for Loose<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        use serde::de::IgnoredAny;
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> V<T> {
            /// A scalar: `T` from it when `T` takes it, else `Wrong`.
            fn scalar<E: de::Error, S: IntoDeserializer<'de, E>>(
                s: S,
                found: &'static str,
                text: impl FnOnce() -> String,
            ) -> Result<Loose<T>, E> {
                Ok(T::deserialize(s.into_deserializer())
                    .map_or_else(|_: E| Loose::wrong(found, text()), Loose::Ok))
            }
        }
        impl<'de, T: Deserialize<'de> + Shaped> Visitor<'de> for V<T> {
            type Value = Loose<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Loose<T>, E> {
                Self::scalar(v, "boolean", || v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Loose<T>, E> {
                Self::scalar(v, "number", || v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Loose<T>, E> {
                Self::scalar(v, "number", || v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Loose<T>, E> {
                Self::scalar(v, "number", || Value::from(v).to_string())
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Loose<T>, E> {
                Self::scalar(de::value::BorrowedStrDeserializer::new(v), "string", || {
                    Value::from(v).to_string()
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose<T>, E> {
                Self::scalar(v.to_owned(), "string", || Value::from(v).to_string())
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Loose<T>, E> {
                let text = Value::from(v.as_str()).to_string();
                Self::scalar(v, "string", || text)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Loose<T>, E> {
                Ok(Loose::wrong("null", "null".to_owned()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Loose<T>, E> {
                self.visit_unit()
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Loose<T>, A::Error> {
                if T::SHAPE == Shape::List {
                    return T::deserialize(SeqAccessDeserializer::new(seq)).map(Loose::Ok);
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::wrong("array", String::new()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Loose<T>, A::Error> {
                if T::SHAPE == Shape::Map {
                    return T::deserialize(MapAccessDeserializer::new(map)).map(Loose::Ok);
                }
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::wrong("object", String::new()))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `selector.matchLabels` of an Istio policy (`WorkloadSelector`), pairs in key order; entries
/// whose value is not a string are left out, as every reader ignores them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Selector<'a> {
    #[serde(borrow, default)]
    pub(crate) match_labels: Option<Loose<BTreeMap<Str<'a>, Loose<Str<'a>>>>>,
}

shaped!(Map: Selector<'_>);

impl<'a> Selector<'a> {
    /// `selector` of an Istio policy `spec` (borrowing from it). A `selector` that is not an
    /// object, or a `matchLabels` that is not one, selects by no labels (the kind's validation
    /// reports it).
    pub(crate) fn of_spec(spec: &'a Value) -> Selector<'a> {
        spec.get("selector")
            .and_then(|s| Selector::deserialize(s).ok())
            .unwrap_or_default()
    }
}

impl Selector<'_> {
    /// The label pairs with string values.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        ok(&self.match_labels)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v.ok()?.as_str())))
    }

    /// No labels: the policy selects nothing in particular (namespace- or mesh-wide).
    pub fn is_empty(&self) -> bool {
        ok(&self.match_labels).is_none_or(BTreeMap::is_empty)
    }

    /// Whether pods with `labels` are selected (every pair present with the same value: the
    /// pairs are `matchLabels` terms of the one selector engine, [`label_selector`]).
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        label_selector::all_pairs_match(labels, self.labels())
    }

    /// The label pairs as an owned map.
    pub(crate) fn to_map(&self) -> BTreeMap<String, String> {
        self.labels()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// `k=v,k2=v2`, for messages.
    pub fn describe(&self) -> String {
        self.labels()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// For `#[serde(deserialize_with = "nullable")]`: a present `null` is kept as
/// `Some(Wrong { found: "null" })` instead of read as absent, where what Istio reports (or
/// what a field's presence means) differs for it.
pub(crate) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Shaped>(
    d: D,
) -> Result<Option<Loose<T>>, D::Error> {
    Loose::deserialize(d).map(Some)
}

/// What the typed decode of an object refuses: where, and why (in Istio's wording).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Malformed {
    pub(crate) path: String,
    pub(crate) message: String,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Decode a kind's `spec` (borrowing its strings). An absent or null spec is the kind's
/// default (nothing set); a spec that is not an object is [`Malformed`].
pub(crate) fn decode_spec<'a, T: Deserialize<'a> + Default>(
    spec: &'a Value,
) -> Result<T, Malformed> {
    match spec {
        Value::Null => Ok(T::default()),
        Value::Object(_) => T::deserialize(spec).map_err(unreadable_spec),
        other => Err(spec_not_object(other)),
    }
}

/// The [`Malformed`] of a spec object the decoder refused.
fn unreadable_spec(e: serde_json::Error) -> Malformed {
    Malformed {
        path: "spec".to_owned(),
        message: format!("spec could not be read: {e}"),
    }
}

/// The [`Malformed`] of a spec that is not an object.
fn spec_not_object(spec: &Value) -> Malformed {
    Malformed {
        path: "spec".to_owned(),
        message: format!(
            "spec in body must be of type object: {:?}",
            crate::json::type_name(spec)
        ),
    }
}

/// Decode a part of an object (`spec`, `status`) into `T`, borrowing its strings, for the kinds
/// meshguard reads without validating (Gateway API objects, ServiceEntry): a missing or null part
/// is `T::default()`, a malformed one too, with the decoder's message (`spec: invalid type: …`)
/// kept for the explanation.
pub(crate) fn decode_part<'a, T: Deserialize<'a> + Default>(
    obj: &'a kube::core::DynamicObject,
    key: &str,
) -> (T, Option<String>) {
    match obj.data.get(key) {
        None | Some(Value::Null) => (T::default(), None),
        Some(v) => match T::deserialize(v) {
            Ok(t) => (t, None),
            Err(e) => (T::default(), Some(format!("{key}: {e}"))),
        },
    }
}

/// [`decode_spec`] of an owned `spec`, owning its strings (the inventory's readers, which
/// decode a spec from its stored text and keep what they read).
pub(crate) fn decode_spec_owned<T: Deserialize<'static> + Default>(
    spec: Value,
) -> Result<T, Malformed> {
    match spec {
        Value::Null => Ok(T::default()),
        Value::Object(_) => T::deserialize(spec).map_err(unreadable_spec),
        other => Err(spec_not_object(&other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Default, Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        name: Option<Loose<Str<'a>>>,
        #[serde(borrow, default)]
        list: Option<Loose<Vec<Loose<Str<'a>>>>>,
        #[serde(default)]
        nested: Option<Loose<Inner>>,
    }

    shaped!(Map: Inner);

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Inner {
        #[serde(default)]
        n: Option<Loose<u32>>,
    }

    #[test]
    fn strings_borrow_from_the_document_through_option_and_vec() {
        let doc = json!({"name": "a", "list": ["b", 1, null], "nested": {"n": 3, "other": [1]}});
        let p: Probe<'_> = decode_spec(&doc).expect("decodes");
        let name = ok(&p.name).expect("name");
        assert!(matches!(name.0, Cow::Borrowed(_)));
        let list = entries(&p.list);
        assert!(matches!(&list[0], Loose::Ok(Str(Cow::Borrowed("b")))));
        assert_eq!(
            list[1],
            Loose::Wrong {
                found: "number",
                text: "1".into()
            }
        );
        assert!(matches!(list[2], Loose::Wrong { found: "null", .. }));
        assert_eq!(ok(&p.nested).and_then(|i| ok(&i.n)), Some(&3));
        // From bytes, escapes force an owned string; plain ones stay borrowed.
        let bytes = br#"{"name": "a\"b", "list": ["c"]}"#;
        let p: Probe<'_> = serde_json::from_slice(bytes).expect("decodes");
        assert!(matches!(ok(&p.name).map(|s| &s.0), Some(Cow::Owned(s)) if s == "a\"b"));
        assert!(matches!(
            &entries(&p.list)[0],
            Loose::Ok(Str(Cow::Borrowed("c")))
        ));
    }

    #[test]
    fn wrong_types_are_kept_not_refused() {
        let doc = json!({"name": {"x": 1}, "list": "x", "nested": [1], "n": 1});
        let p: Probe<'_> = decode_spec(&doc).expect("decodes");
        assert!(matches!(
            p.name,
            Some(Loose::Wrong {
                found: "object",
                ..
            })
        ));
        assert!(
            matches!(p.list, Some(Loose::Wrong { found: "string", ref text }) if text == "\"x\"")
        );
        assert!(matches!(
            p.nested,
            Some(Loose::Wrong { found: "array", .. })
        ));
        let doc = json!({"nested": {"n": -1}});
        let p: Probe<'_> = decode_spec(&doc).expect("decodes");
        assert!(matches!(
            ok(&p.nested).map(|i| &i.n),
            Some(Some(Loose::Wrong {
                found: "number",
                ..
            }))
        ));
    }

    #[test]
    fn a_spec_that_is_not_an_object_is_malformed() {
        let e = decode_spec::<Probe<'_>>(&json!("x")).expect_err("refused");
        assert_eq!(e.path, "spec");
        assert_eq!(e.message, "spec in body must be of type object: \"string\"");
        assert!(decode_spec::<Probe<'_>>(&Value::Null).is_ok());
    }

    #[test]
    fn selector_labels() {
        let doc = json!({"matchLabels": {"b": "2", "a": "1", "n": 3}});
        let s: Selector<'_> = decode_spec(&doc).expect("decodes");
        assert_eq!(s.labels().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
        let pod: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        assert!(s.matches(&pod) && !s.is_empty());
        assert!(Selector::default().is_empty());
    }
}
