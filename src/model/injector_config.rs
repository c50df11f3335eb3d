//! The sidecar injector's ConfigMap `istio-sidecar-injector[-<rev>]`: its keys `config` and
//! `values`, each decoded once into a typed struct ([`InjectionConfig`], [`InjectionValues`]).
//! What the injector then decides from them is [`crate::mesh::injector`].
//!
//! * **`config`** (YAML; istio/istio `pkg/kube/inject/inject.go`, `Config`): `policy`
//!   (`enabled`, `disabled`; anything else, absent included, is "Illegal value for autoInject"
//!   and injects nothing), `neverInjectSelector` and `alwaysInjectSelector` (Kubernetes label
//!   selectors, as `injectRequired` in `pkg/kube/inject/webhook.go` matches them),
//!   `defaultTemplates`, `templates` (name → template text) and `aliases` (name → template
//!   names).
//! * **`values`** (JSON: the Helm values the templates read): `global.hub`, `global.tag` (a
//!   number is printed as Go prints the float64 it decodes to), `global.proxy.image`,
//!   `global.variant`, `revision`, `sidecarInjectorWebhook.enableNamespacesByDefault`.
//!
//! Both keys are parsed as the injector parses them (YAML, JSON); the typed decode then reads
//! the fields. Each field that is `None` was not read, and the chart default it replaces stays:
//! a key that does not parse reads nothing; a `config` whose `policy` or a selector list has the
//! wrong type reads the fields before it only (istiod refuses the whole document; meshguard keeps
//! the chart defaults for the rest and reports the error). Lists and maps of the wrong type
//! elsewhere read as absent, entries of the wrong type are left out.

use super::label_selector::{LabelSelectorSpec, Selector};
use super::mesh_config::{from_yaml, type_words, MeshError};
use super::{entries, ok, Loose, Str};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// `policy` of an injector configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InjectionPolicy {
    Enabled,
    Disabled,
    /// Any other value (or none): Istio logs "Illegal value for autoInject" and injects nothing.
    Invalid(String),
}

impl InjectionPolicy {
    /// The policy a `policy` value names (absent is `Invalid("")`).
    pub fn from_value(value: Option<&str>) -> InjectionPolicy {
        match value {
            Some("enabled") => InjectionPolicy::Enabled,
            Some("disabled") => InjectionPolicy::Disabled,
            other => InjectionPolicy::Invalid(other.unwrap_or_default().to_owned()),
        }
    }
}

impl fmt::Display for InjectionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InjectionPolicy::Enabled => f.write_str("enabled"),
            InjectionPolicy::Disabled => f.write_str("disabled"),
            InjectionPolicy::Invalid(v) if v.is_empty() => f.write_str("unset"),
            InjectionPolicy::Invalid(v) => write!(f, "{v:?}"),
        }
    }
}

/// How the injector reads `sidecar.istio.io/inject` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectValues {
    /// Istio 1.27 and later: only `"true"` and `"false"` decide; anything else falls through.
    Exact,
    /// Before 1.27: `y`, `yes`, `true`, `on` (any case) inject, empty falls through, anything else
    /// refuses.
    Legacy,
}

impl InjectValues {
    /// What a `sidecar.istio.io/inject` value decides (`None`: fall through to the selectors and
    /// policy).
    pub fn decide(self, value: &str) -> Option<bool> {
        match self {
            InjectValues::Exact => match value {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            InjectValues::Legacy => {
                if value.is_empty() {
                    None
                } else {
                    Some(super::labels::inject_value_enables(value))
                }
            }
        }
    }

    /// From the injector's image tag (`global.tag`): `1.26.x` and older are `Legacy`; anything
    /// newer or unrecognised (a digest, `latest`) is `Exact`.
    pub(crate) fn for_tag(tag: Option<&str>) -> Self {
        let Some(tag) = tag else {
            return InjectValues::Exact;
        };
        let mut parts = tag.split(['.', '-']);
        let major = parts.next().and_then(|p| p.parse::<u32>().ok());
        let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
        match (major, minor) {
            (Some(1), Some(minor)) if minor < 27 => InjectValues::Legacy,
            (Some(0), Some(_)) => InjectValues::Legacy,
            _ => InjectValues::Exact,
        }
    }
}

/// The `config` key, as read: `None` for what was not read (the chart default stays).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct InjectionConfig {
    pub(crate) policy: Option<InjectionPolicy>,
    /// `neverInjectSelector` entries, compiled.
    pub(crate) never_inject: Option<Vec<Selector>>,
    /// `alwaysInjectSelector` entries, compiled.
    pub(crate) always_inject: Option<Vec<Selector>>,
    /// `defaultTemplates`, when it names at least one template.
    pub(crate) default_templates: Option<Vec<String>>,
    /// The names `templates` defines, when it is a map.
    pub(crate) templates: Option<Vec<String>>,
    /// The templates among them whose text runs `istio-iptables`: they install the pod's traffic
    /// capture (the `istio-init` container, or `istio-validation` with the Istio CNI plugin).
    pub(crate) capturing_templates: Option<Vec<String>>,
    /// `aliases`, when it is a map.
    pub(crate) aliases: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig<'a> {
    #[serde(borrow, default)]
    policy: Option<Loose<Str<'a>>>,
    #[serde(default)]
    never_inject_selector: Option<Loose<Vec<Value>>>,
    #[serde(default)]
    always_inject_selector: Option<Loose<Vec<Value>>>,
    #[serde(borrow, default)]
    default_templates: Option<Loose<Vec<Loose<Str<'a>>>>>,
    #[serde(borrow, default)]
    templates: Option<Loose<BTreeMap<Str<'a>, Loose<Str<'a>>>>>,
    #[serde(borrow, default)]
    aliases: Option<Loose<BTreeMap<Str<'a>, Loose<Names<'a>>>>>,
}

/// A list of names as written (entries of the wrong type left out by the reader).
type Names<'a> = Vec<Loose<Str<'a>>>;

super::shaped!(Map: RawConfig<'_>);

/// Parse a YAML or JSON document into a JSON tree (empty YAML is `null`), as the injector
/// parses its keys.
fn yaml_tree(text: &str, origin: &str, key: &str) -> Result<Value, MeshError> {
    Ok(from_yaml::<Value>(text, origin, key)?.unwrap_or(Value::Null))
}

impl InjectionConfig {
    /// Decode the `config` key. `origin` names the ConfigMap in the error, which comes with what
    /// was read before it.
    pub fn decode(text: &str, origin: &str) -> (InjectionConfig, Option<MeshError>) {
        let mut out = InjectionConfig::default();
        let err = out.read(text, origin).err();
        (out, err)
    }

    fn read(&mut self, text: &str, origin: &str) -> Result<(), MeshError> {
        let invalid = |field: &str, message: String| MeshError::Invalid {
            origin: origin.to_owned(),
            field: format!("config.{field}"),
            message,
        };
        let tree = yaml_tree(text, origin, "config")?;
        let raw = match Loose::<RawConfig<'_>>::deserialize(&tree) {
            Ok(Loose::Ok(raw)) => raw,
            Ok(Loose::Wrong { found: "null", .. }) => {
                self.policy = Some(InjectionPolicy::Invalid(String::new()));
                return Ok(());
            }
            Ok(Loose::Wrong { found, .. }) => {
                return Err(invalid(
                    "",
                    format!("must be a YAML mapping, not {}", type_words(found)),
                ))
            }
            // A JSON tree always decodes into `Loose`; kept as an error, never a panic.
            Err(e) => return Err(invalid("", e.to_string())),
        };
        self.policy = Some(match raw.policy {
            None => InjectionPolicy::Invalid(String::new()),
            Some(Loose::Ok(s)) => InjectionPolicy::from_value(Some(s.as_str())),
            Some(Loose::Wrong { found, .. }) => {
                return Err(invalid(
                    "policy",
                    format!("must be enabled or disabled, not {}", type_words(found)),
                ))
            }
        });
        let selectors =
            |field: &str, list: Option<Loose<Vec<Value>>>| -> Result<Vec<Selector>, MeshError> {
                match list {
                    None => Ok(Vec::new()),
                    Some(Loose::Ok(items)) => items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            <LabelSelectorSpec<'_> as Deserialize>::deserialize(v)
                                .map(|s| s.compile())
                                .map_err(|e| invalid(&format!("{field}[{i}]"), e.to_string()))
                        })
                        .collect(),
                    Some(Loose::Wrong { found, .. }) => Err(invalid(
                        field,
                        format!(
                            "must be a list of label selectors, not {}",
                            type_words(found)
                        ),
                    )),
                }
            };
        self.never_inject = Some(selectors("neverInjectSelector", raw.never_inject_selector)?);
        self.always_inject = Some(selectors(
            "alwaysInjectSelector",
            raw.always_inject_selector,
        )?);
        let defaults: Vec<String> = entries(&raw.default_templates)
            .iter()
            .filter_map(|t| t.ok().map(|t| t.as_str().to_owned()))
            .collect();
        self.default_templates = Some(defaults).filter(|d| !d.is_empty());
        if let Some(templates) = ok(&raw.templates) {
            self.templates = Some(templates.keys().map(|k| k.as_str().to_owned()).collect());
            self.capturing_templates = Some(
                templates
                    .iter()
                    .filter(|(_, text)| text.ok().is_some_and(|t| t.contains("istio-iptables")))
                    .map(|(name, _)| name.as_str().to_owned())
                    .collect(),
            );
        }
        self.aliases = ok(&raw.aliases).map(|aliases| {
            aliases
                .iter()
                .map(|(name, list)| {
                    let names = list
                        .ok()
                        .into_iter()
                        .flatten()
                        .filter_map(|n| n.ok().map(|n| n.as_str().to_owned()))
                        .collect();
                    (name.as_str().to_owned(), names)
                })
                .collect()
        });
        Ok(())
    }
}

/// The `values` key, as read (`None`: not set, or of the wrong type).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct InjectionValues {
    /// `global.hub`.
    pub(crate) hub: Option<String>,
    /// `global.tag` (a number as Go prints it).
    pub(crate) tag: Option<String>,
    /// `global.proxy.image`.
    pub(crate) proxy_image: Option<String>,
    /// `global.variant`.
    pub(crate) variant: Option<String>,
    /// `revision`, when not empty.
    pub(crate) revision: Option<String>,
    /// `sidecarInjectorWebhook.enableNamespacesByDefault` (`false` unless `true`).
    pub(crate) enable_namespaces_by_default: bool,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawValues<'a> {
    #[serde(borrow, default)]
    global: Option<Loose<RawGlobal<'a>>>,
    #[serde(borrow, default)]
    revision: Option<Loose<Str<'a>>>,
    #[serde(default)]
    sidecar_injector_webhook: Option<Loose<RawWebhookValues>>,
}

#[derive(Default, Deserialize)]
struct RawGlobal<'a> {
    #[serde(borrow, default)]
    hub: Option<Loose<Str<'a>>>,
    #[serde(default)]
    tag: Option<Loose<HelmString>>,
    #[serde(borrow, default)]
    proxy: Option<Loose<RawProxyValues<'a>>>,
    #[serde(borrow, default)]
    variant: Option<Loose<Str<'a>>>,
}

#[derive(Default, Deserialize)]
struct RawProxyValues<'a> {
    #[serde(borrow, default)]
    image: Option<Loose<Str<'a>>>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawWebhookValues {
    #[serde(default)]
    enable_namespaces_by_default: Option<Loose<bool>>,
}

super::shaped!(Map: RawValues<'_>, RawGlobal<'_>, RawProxyValues<'_>, RawWebhookValues);

/// A Helm value a template prints with `%v`: a string, or a number as Go prints the float64 it
/// decodes to (`tag: 1.27` is `1.27`, `tag: 2` is `2`).
struct HelmString(String);

impl super::Shaped for HelmString {
    const SHAPE: super::Shape = super::Shape::Scalar;
}

impl<'de> Deserialize<'de> for HelmString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HelmString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HelmString, E> {
                Ok(HelmString(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HelmString, E> {
                Ok(HelmString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HelmString, E> {
                Ok(HelmString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HelmString, E> {
                Ok(HelmString(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string value as written: unset or `null` is `None`; another type is an error (and `None`).
fn written<'d, T: AsRef<str>>(
    origin: &str,
    path: &str,
    field: Option<&'d Loose<T>>,
    errors: &mut Vec<MeshError>,
) -> Option<&'d str> {
    match field? {
        Loose::Ok(v) => Some(v.as_ref()),
        Loose::Wrong { found: "null", .. } => None,
        Loose::Wrong { found, .. } => {
            errors.push(MeshError::Invalid {
                origin: origin.to_owned(),
                field: format!("values.{path}"),
                message: format!("must be a string, not {}", type_words(found)),
            });
            None
        }
    }
}

impl AsRef<str> for HelmString {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl InjectionValues {
    /// Decode the `values` key. A document that is not JSON reads nothing; fields of the wrong
    /// type read as unset and are each an error (with `revision` not read when any is).
    pub fn decode(text: &str, origin: &str) -> (InjectionValues, Vec<MeshError>) {
        let tree: Value = match serde_json::from_str(text) {
            Ok(tree) => tree,
            Err(e) => {
                return (
                    InjectionValues::default(),
                    vec![MeshError::Json {
                        origin: origin.to_owned(),
                        key: "values".to_owned(),
                        message: e.to_string(),
                    }],
                )
            }
        };
        // A tree always decodes into `Loose`; a document that is not an object has no fields.
        let raw = Loose::<RawValues<'_>>::deserialize(&tree)
            .ok()
            .and_then(Loose::into_ok)
            .unwrap_or_default();
        let mut errors = Vec::new();
        let global = ok(&raw.global);
        let hub = written(
            origin,
            "global.hub",
            global.and_then(|g| g.hub.as_ref()),
            &mut errors,
        );
        let tag = written(
            origin,
            "global.tag",
            global.and_then(|g| g.tag.as_ref()),
            &mut errors,
        );
        let proxy_image = written(
            origin,
            "global.proxy.image",
            global
                .and_then(|g| ok(&g.proxy))
                .and_then(|p| p.image.as_ref()),
            &mut errors,
        );
        let variant = written(
            origin,
            "global.variant",
            global.and_then(|g| g.variant.as_ref()),
            &mut errors,
        );
        let revision = written(origin, "revision", raw.revision.as_ref(), &mut errors)
            .filter(|r| !r.is_empty());
        let enable_namespaces_by_default = ok(&raw.sidecar_injector_webhook)
            .and_then(|w| ok(&w.enable_namespaces_by_default))
            .copied()
            .unwrap_or(false);
        let own = |s: Option<&str>| s.map(str::to_owned);
        let values = InjectionValues {
            hub: own(hub),
            tag: own(tag),
            proxy_image: own(proxy_image),
            variant: own(variant),
            revision: if errors.is_empty() {
                own(revision)
            } else {
                None
            },
            enable_namespaces_by_default,
        };
        (values, errors)
    }
}

#[cfg(test)]
mod tests;
