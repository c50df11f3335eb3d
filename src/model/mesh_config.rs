//! MeshConfig: the fields of Istio's mesh configuration that security verdicts depend on, decoded
//! once, straight from the YAML, into one typed struct; and [`ProxyConfig`], the part of it (and
//! of the `proxy.istio.io/config` pod annotation) the proxy image depends on.
//!
//! istiod reads its MeshConfig from the ConfigMap `istio` (default revision) or `istio-<rev>` in
//! its own namespace, key `mesh` (istio/istio `pilot/pkg/bootstrap/mesh.go`,
//! `getMeshConfigMapName`; `pkg/config/mesh/kubemesh/watcher.go`, `MeshConfigKey`). The YAML is
//! applied over `DefaultMeshConfig()` by `ApplyMeshConfig` (`pkg/config/mesh/mesh.go`): every
//! field present replaces the default, unknown fields are accepted (`protomarshal.ApplyJSON`
//! retries with `AllowUnknownFields`), `trustDomainAliases` become a sorted set, and the result
//! must pass `agent.ValidateMeshConfig` (`pkg/config/validation/agent/validation.go`), whose
//! `ValidateTrustDomain` rejects an empty or non-DNS trust domain or alias.
//!
//! Fields read (everything else is skipped by the deserializer) and their defaults as
//! `DefaultMeshConfig()` sets them:
//!
//! | field | default |
//! |---|---|
//! | `rootNamespace` | `istio-system` (`constants.IstioSystemNamespace`: the constant, not istiod's namespace; Istio's chart writes `rootNamespace` explicitly) |
//! | `trustDomain` | `cluster.local` (`constants.DefaultClusterLocalDomain`) |
//! | `trustDomainAliases` | `[]` |
//! | `enableAutoMtls` | `true` |
//! | `defaultConfig.image.imageType` | unset (`DefaultProxyConfig()` sets no image: the injector's `global.variant` applies) |
//!
//! The struct keeps whether each field was written (`None`: Istio's default applies), so that the
//! mesh context can say where an effective value came from; `effective_*` apply the defaults.
//!
//! A document meshguard cannot read is a [`MeshError`] naming the field: YAML that does not
//! parse, a document that is not a mapping, a field of the wrong type, an invalid trust domain.
//! A wrongly typed field does not fail the decode ([`Loose`]); the check after it names the
//! first one, in field order.

use super::label_selector::is_dns1123_label;
use super::{Loose, Str};
use serde::Deserialize;

/// Istio's default root namespace (`constants.IstioSystemNamespace`).
pub(crate) const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";
/// Istio's default trust domain (`constants.DefaultClusterLocalDomain`).
pub(crate) const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// The ConfigMap key holding the MeshConfig YAML.
pub(crate) const MESH_KEY: &str = "mesh";

/// A mesh object meshguard could not read (a MeshConfig, an injector or istio-cni ConfigMap).
/// Building a mesh context never fails: errors are kept beside it and the affected values fall
/// back to Istio's defaults.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    #[error("{origin}: key {key:?} is not valid YAML: {message}")]
    Yaml {
        origin: String,
        key: String,
        message: String,
    },
    #[error("{origin}: key {key:?} is not valid JSON: {message}")]
    Json {
        origin: String,
        key: String,
        message: String,
    },
    #[error("{origin}: {field}: {message}")]
    Invalid {
        origin: String,
        field: String,
        message: String,
    },
    #[error("{origin}: cannot read it as a {kind}: {message}")]
    Object {
        origin: String,
        kind: String,
        message: String,
    },
}

/// The fields of one MeshConfig that meshguard uses, as written (`None`: not set, Istio's default
/// applies).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshConfig {
    /// `rootNamespace`. An explicit empty string is kept: Istio then has no root namespace.
    pub root_namespace: Option<String>,
    /// `trustDomain`.
    pub trust_domain: Option<String>,
    /// `trustDomainAliases`, sorted and without duplicates (as `ApplyMeshConfig` stores them).
    pub trust_domain_aliases: Vec<String>,
    /// `enableAutoMtls`.
    pub enable_auto_mtls: Option<bool>,
    /// `defaultConfig`: the ProxyConfig every proxy starts from.
    pub(crate) default_config: ProxyConfig,
}

/// The part of a ProxyConfig meshguard reads (MeshConfig `defaultConfig`, or the pod annotation
/// `proxy.istio.io/config`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProxyConfig {
    /// `image.imageType` (the proxy image variant, e.g. `distroless`).
    pub(crate) image_type: Option<String>,
}

/// The document as the deserializer reads it: every field as written ([`Loose`]: a wrong type is
/// kept, not refused), the rest skipped. `kind` and `data.mesh` are not MeshConfig fields: they
/// let a `--mesh-config` file be the ConfigMap itself.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw<'a> {
    #[serde(borrow, default)]
    root_namespace: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    trust_domain: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    trust_domain_aliases: Option<Loose<Vec<Loose<Str<'a>>>>>,
    #[serde(default)]
    enable_auto_mtls: Option<Loose<bool>>,
    #[serde(borrow, default)]
    default_config: Option<Loose<RawProxyConfig<'a>>>,
    #[serde(borrow, default)]
    kind: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    data: Option<Loose<RawData<'a>>>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProxyConfig<'a> {
    #[serde(borrow, default)]
    image: Option<Loose<RawProxyImage<'a>>>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProxyImage<'a> {
    #[serde(borrow, default)]
    image_type: Option<Loose<Str<'a>>>,
}

#[derive(Default, Deserialize)]
struct RawData<'a> {
    #[serde(borrow, default)]
    mesh: Option<Loose<Str<'a>>>,
}

super::shaped!(Map: Raw<'_>, RawProxyConfig<'_>, RawProxyImage<'_>, RawData<'_>);

/// A JSON type as [`Loose`] names it, in the words of a MeshError (`a number`, `a mapping`).
pub(crate) fn type_words(found: &str) -> &'static str {
    match found {
        "null" => "null",
        "boolean" => "a boolean",
        "number" => "a number",
        "string" => "a string",
        "array" => "a list",
        _ => "a mapping",
    }
}

/// A field as written: absent or `null` is `None`, the type read is `Some`, anything else the
/// JSON type found (in a MeshError's words).
fn written<T>(field: Option<Loose<T>>) -> Result<Option<T>, &'static str> {
    match field {
        None | Some(Loose::Wrong { found: "null", .. }) => Ok(None),
        Some(Loose::Ok(v)) => Ok(Some(v)),
        Some(Loose::Wrong { found, .. }) => Err(type_words(found)),
    }
}

/// Decode a YAML document (empty text, or only comments, is `None`) into `T`, with the first line
/// of the parser's message as the error.
pub(crate) fn from_yaml<'a, T: Deserialize<'a>>(
    text: &'a str,
    origin: &str,
    key: &str,
) -> Result<Option<T>, MeshError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_saphyr::from_str::<Option<T>>(text).map_err(|e| MeshError::Yaml {
        origin: origin.to_owned(),
        key: key.to_owned(),
        message: e
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid YAML")
            .to_owned(),
    })
}

impl MeshConfig {
    /// Parse the MeshConfig YAML of a ConfigMap's `mesh` key (or a mesh config file). `origin`
    /// names the source in errors. An empty document is the default MeshConfig.
    pub fn parse(yaml: &str, origin: &str) -> Result<MeshConfig, MeshError> {
        let raw = from_yaml::<Loose<Raw<'_>>>(yaml, origin, MESH_KEY)?;
        MeshConfig::from_raw(raw, origin)
    }

    /// Read a `--mesh-config` file: either MeshConfig YAML, or a ConfigMap (`kind: ConfigMap`)
    /// whose `data.mesh` holds it.
    pub(crate) fn from_file_text(text: &str, origin: &str) -> Result<MeshConfig, MeshError> {
        let raw = from_yaml::<Loose<Raw<'_>>>(text, origin, "file")?;
        if let Some(Loose::Ok(file)) = &raw {
            if super::ok(&file.kind).map(Str::as_str) == Some("ConfigMap") {
                let mesh = super::ok(&file.data).and_then(|d| super::ok(&d.mesh));
                let Some(mesh) = mesh else {
                    return Err(MeshError::Invalid {
                        origin: origin.to_owned(),
                        field: "data.mesh".to_owned(),
                        message: "the ConfigMap has no key \"mesh\" holding the MeshConfig YAML"
                            .to_owned(),
                    });
                };
                return MeshConfig::parse(mesh, origin);
            }
        }
        MeshConfig::from_raw(raw, origin)
    }

    fn from_raw(raw: Option<Loose<Raw<'_>>>, origin: &str) -> Result<MeshConfig, MeshError> {
        let invalid = |field: &str, message: String| MeshError::Invalid {
            origin: origin.to_owned(),
            field: field.to_owned(),
            message,
        };
        let raw = match written(raw) {
            Ok(None) => return Ok(MeshConfig::default()),
            Ok(Some(raw)) => raw,
            Err(found) => {
                return Err(invalid(
                    "mesh",
                    format!("MeshConfig must be a YAML mapping, not {found}"),
                ))
            }
        };
        let string = |field: &str, v: Option<Loose<Str<'_>>>| {
            written(v)
                .map(|s| s.map(|s| s.as_str().to_owned()))
                .map_err(|found| invalid(field, format!("must be a string, not {found}")))
        };
        let root_namespace = string("rootNamespace", raw.root_namespace)?;
        let trust_domain = string("trustDomain", raw.trust_domain)?;
        let mut trust_domain_aliases = match written(raw.trust_domain_aliases) {
            Ok(None) => Vec::new(),
            Ok(Some(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Loose::Ok(s) => Ok(s.as_str().to_owned()),
                    Loose::Wrong { found, .. } => Err(invalid(
                        &format!("trustDomainAliases[{i}]"),
                        format!("must be a string, not {}", type_words(found)),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Err(found) => {
                return Err(invalid(
                    "trustDomainAliases",
                    format!("must be a list of strings, not {found}"),
                ))
            }
        };
        trust_domain_aliases.sort();
        trust_domain_aliases.dedup();
        let enable_auto_mtls = written(raw.enable_auto_mtls).map_err(|found| {
            invalid(
                "enableAutoMtls",
                format!("must be true or false, not {found}"),
            )
        })?;
        // A `defaultConfig` or `image` that is not a mapping has no `imageType`.
        let image_type = super::ok(&raw.default_config)
            .and_then(|d| super::ok(&d.image))
            .and_then(|i| i.image_type.clone());
        let image_type = string("defaultConfig.image.imageType", image_type)?;
        if let Some(td) = &trust_domain {
            validate_trust_domain(td).map_err(|m| invalid("trustDomain", m))?;
        }
        for (i, alias) in trust_domain_aliases.iter().enumerate() {
            validate_trust_domain(alias)
                .map_err(|m| invalid(&format!("trustDomainAliases[{i}]"), m))?;
        }
        Ok(MeshConfig {
            root_namespace,
            trust_domain,
            trust_domain_aliases,
            enable_auto_mtls,
            default_config: ProxyConfig { image_type },
        })
    }

    /// The root namespace istiod uses with this MeshConfig.
    pub(crate) fn effective_root_namespace(&self) -> &str {
        self.root_namespace
            .as_deref()
            .unwrap_or(DEFAULT_ROOT_NAMESPACE)
    }

    /// The trust domain istiod uses with this MeshConfig.
    pub(crate) fn effective_trust_domain(&self) -> &str {
        self.trust_domain.as_deref().unwrap_or(DEFAULT_TRUST_DOMAIN)
    }

    /// `enableAutoMtls` as istiod uses it.
    pub(crate) fn effective_enable_auto_mtls(&self) -> bool {
        self.enable_auto_mtls.unwrap_or(true)
    }

    /// `defaultConfig.image.imageType`, when written.
    pub(crate) fn proxy_image_type(&self) -> Option<&str> {
        self.default_config.image_type.as_deref()
    }
}

impl ProxyConfig {
    /// The ProxyConfig of a `proxy.istio.io/config` pod annotation, as the injector reads it:
    /// `None` when the YAML is unreadable (Istio ignores it then); fields of the wrong type, and
    /// an empty `imageType`, read as unset.
    pub(crate) fn from_annotation(yaml: &str) -> Option<ProxyConfig> {
        let raw = from_yaml::<Loose<RawProxyConfig<'_>>>(yaml, "", "").ok()??;
        let image_type = super::ok(&raw.into_ok()?.image)
            .and_then(|i| super::ok(&i.image_type))
            .filter(|t| !t.is_empty())
            .map(|t| t.as_str().to_owned());
        Some(ProxyConfig { image_type })
    }
}

/// `agent.ValidateTrustDomain`: non-empty, dot-separated DNS-1123 labels (a trailing dot allowed).
pub(crate) fn validate_trust_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("empty domain name not allowed".to_owned());
    }
    let parts: Vec<&str> = domain.split('.').collect();
    for (i, label) in parts.iter().enumerate() {
        if i == parts.len() - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "trust domain name {domain:?} invalid: {label:?} is not a lowercase DNS-1123 label"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
