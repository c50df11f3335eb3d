//! MeshConfig: the few fields of Istio's mesh configuration that security verdicts depend on.
//!
//! istiod reads its MeshConfig from the ConfigMap `istio` (default revision) or `istio-<rev>` in its
//! own namespace, key `mesh` (istio/istio `pilot/pkg/bootstrap/mesh.go`, `getMeshConfigMapName`;
//! `pkg/config/mesh/kubemesh/watcher.go`, `MeshConfigKey`). The YAML is applied over
//! `DefaultMeshConfig()` by `ApplyMeshConfig` (`pkg/config/mesh/mesh.go`): every field present
//! replaces the default, unknown fields are accepted (`protomarshal.ApplyJSON` retries with
//! `AllowUnknownFields`), `trustDomainAliases` become a sorted set, and the result must pass
//! `agent.ValidateMeshConfig` (`pkg/config/validation/agent/validation.go`), whose
//! `ValidateTrustDomain` rejects an empty or non-DNS trust domain or alias.
//!
//! Defaults (`DefaultMeshConfig`): `rootNamespace: istio-system` (the constant, not istiod's
//! namespace — Istio's chart writes `rootNamespace` explicitly, as `meshConfig.rootNamespace` or
//! `global.istioNamespace`), `trustDomain: cluster.local`, `trustDomainAliases: []`,
//! `enableAutoMtls: true`.

use super::selector::is_dns1123_label;
use super::MeshError;
use serde_json::Value;

/// Istio's default root namespace (`constants.IstioSystemNamespace`).
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";
/// Istio's default trust domain (`constants.DefaultClusterLocalDomain`).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// The ConfigMap key holding the MeshConfig YAML.
pub const MESH_KEY: &str = "mesh";

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
    /// `defaultConfig.image.imageType` (the proxy image variant, e.g. `distroless`).
    pub proxy_image_type: Option<String>,
}

impl MeshConfig {
    /// Parse the MeshConfig YAML of a ConfigMap's `mesh` key (or a mesh config file). `origin`
    /// names the source in errors. An empty document is the default MeshConfig.
    pub fn parse(yaml: &str, origin: &str) -> Result<MeshConfig, MeshError> {
        let value = parse_yaml(yaml, origin, MESH_KEY)?;
        MeshConfig::from_value(&value, origin)
    }

    /// Read a `--mesh-config` file: either MeshConfig YAML, or a ConfigMap (`kind: ConfigMap`)
    /// whose `data.mesh` holds it.
    pub fn from_file_text(text: &str, origin: &str) -> Result<MeshConfig, MeshError> {
        let value = parse_yaml(text, origin, "file")?;
        if value.get("kind").and_then(Value::as_str) == Some("ConfigMap") {
            let Some(mesh) = value
                .get("data")
                .and_then(|d| d.get(MESH_KEY))
                .and_then(Value::as_str)
            else {
                return Err(MeshError::Invalid {
                    origin: origin.to_owned(),
                    field: "data.mesh".to_owned(),
                    message: "the ConfigMap has no key \"mesh\" holding the MeshConfig YAML"
                        .to_owned(),
                });
            };
            return MeshConfig::parse(mesh, origin);
        }
        MeshConfig::from_value(&value, origin)
    }

    fn from_value(value: &Value, origin: &str) -> Result<MeshConfig, MeshError> {
        let invalid = |field: &str, message: String| MeshError::Invalid {
            origin: origin.to_owned(),
            field: field.to_owned(),
            message,
        };
        let map = match value {
            Value::Null => return Ok(MeshConfig::default()),
            Value::Object(m) => m,
            other => {
                return Err(invalid(
                    "mesh",
                    format!(
                        "MeshConfig must be a YAML mapping, not {}",
                        json_type(other)
                    ),
                ))
            }
        };
        let string = |field: &str| -> Result<Option<String>, MeshError> {
            match map.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(invalid(
                    field,
                    format!("must be a string, not {}", json_type(other)),
                )),
            }
        };
        let root_namespace = string("rootNamespace")?;
        let trust_domain = string("trustDomain")?;
        let mut trust_domain_aliases = match map.get("trustDomainAliases") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        invalid(
                            &format!("trustDomainAliases[{i}]"),
                            format!("must be a string, not {}", json_type(v)),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(invalid(
                    "trustDomainAliases",
                    format!("must be a list of strings, not {}", json_type(other)),
                ))
            }
        };
        trust_domain_aliases.sort();
        trust_domain_aliases.dedup();
        let enable_auto_mtls = match map.get("enableAutoMtls") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                return Err(invalid(
                    "enableAutoMtls",
                    format!("must be true or false, not {}", json_type(other)),
                ))
            }
        };
        let proxy_image_type = match map
            .get("defaultConfig")
            .and_then(|d| d.get("image"))
            .and_then(|i| i.get("imageType"))
        {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(invalid(
                    "defaultConfig.image.imageType",
                    format!("must be a string, not {}", json_type(other)),
                ))
            }
        };
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
            proxy_image_type,
        })
    }

    /// The root namespace istiod uses with this MeshConfig.
    pub fn effective_root_namespace(&self) -> &str {
        self.root_namespace
            .as_deref()
            .unwrap_or(DEFAULT_ROOT_NAMESPACE)
    }

    /// The trust domain istiod uses with this MeshConfig.
    pub fn effective_trust_domain(&self) -> &str {
        self.trust_domain.as_deref().unwrap_or(DEFAULT_TRUST_DOMAIN)
    }

    /// `enableAutoMtls` as istiod uses it.
    pub fn effective_enable_auto_mtls(&self) -> bool {
        self.enable_auto_mtls.unwrap_or(true)
    }
}

/// `agent.ValidateTrustDomain`: non-empty, dot-separated DNS-1123 labels (a trailing dot allowed).
pub fn validate_trust_domain(domain: &str) -> Result<(), String> {
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

/// YAML text into a JSON tree (empty text is `null`).
pub(crate) fn parse_yaml(text: &str, origin: &str, key: &str) -> Result<Value, MeshError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_saphyr::from_str::<Value>(text).map_err(|e| MeshError::Yaml {
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

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const O: &str = "ConfigMap istio-system/istio";

    #[test]
    fn defaults_when_empty_or_absent() {
        for text in ["", "  \n", "# only a comment\n", "{}"] {
            let m = MeshConfig::parse(text, O).unwrap();
            assert_eq!(m, MeshConfig::default(), "{text:?}");
            assert_eq!(m.effective_root_namespace(), "istio-system");
            assert_eq!(m.effective_trust_domain(), "cluster.local");
            assert!(m.trust_domain_aliases.is_empty());
            assert!(m.effective_enable_auto_mtls());
        }
    }

    #[test]
    fn reads_the_security_fields_and_ignores_the_rest() {
        let m = MeshConfig::parse(
            r#"
accessLogFile: /dev/stdout
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  image:
    imageType: distroless
  tracing: {zipkin: {address: zipkin:9411}}
enablePrometheusMerge: true
rootNamespace: mesh-root
trustDomain: corp.example
trustDomainAliases: [old.example, cluster.local, old.example]
enableAutoMtls: false
someFutureField: {nested: [1, 2]}
"#,
            O,
        )
        .unwrap();
        assert_eq!(m.root_namespace.as_deref(), Some("mesh-root"));
        assert_eq!(m.effective_trust_domain(), "corp.example");
        assert_eq!(
            m.trust_domain_aliases,
            ["cluster.local", "old.example"],
            "sorted, duplicates dropped"
        );
        assert!(!m.effective_enable_auto_mtls());
        assert_eq!(m.proxy_image_type.as_deref(), Some("distroless"));
    }

    #[test]
    fn null_values_mean_default_and_empty_root_namespace_is_kept() {
        let m = MeshConfig::parse(
            "trustDomain: null\ntrustDomainAliases: null\nrootNamespace: \"\"\n",
            O,
        )
        .unwrap();
        assert_eq!(m.effective_trust_domain(), "cluster.local");
        assert_eq!(m.effective_root_namespace(), "");
    }

    #[test]
    fn bad_yaml_is_an_error_not_a_panic() {
        let e = MeshConfig::parse("trustDomain: [unclosed\n", O).unwrap_err();
        assert!(matches!(e, MeshError::Yaml { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with("ConfigMap istio-system/istio: key \"mesh\" is not valid YAML"),
            "{text}"
        );
    }

    #[test]
    fn wrong_types_and_invalid_trust_domains_are_errors() {
        for (yaml, field, why) in [
            ("- a\n- b\n", "mesh", "must be a YAML mapping"),
            ("trustDomain: 5\n", "trustDomain", "must be a string"),
            (
                "trustDomainAliases: corp\n",
                "trustDomainAliases",
                "list of strings",
            ),
            (
                "trustDomainAliases: [a, 3]\n",
                "trustDomainAliases[1]",
                "must be a string",
            ),
            (
                "enableAutoMtls: sometimes\n",
                "enableAutoMtls",
                "true or false",
            ),
            ("trustDomain: \"\"\n", "trustDomain", "empty domain"),
            ("trustDomain: Corp.Example\n", "trustDomain", "DNS-1123"),
            (
                "trustDomainAliases: [\"spiffe://x\"]\n",
                "trustDomainAliases[0]",
                "invalid",
            ),
            (
                "defaultConfig: {image: {imageType: 1}}\n",
                "defaultConfig.image.imageType",
                "string",
            ),
        ] {
            match MeshConfig::parse(yaml, O) {
                Err(MeshError::Invalid {
                    field: f, message, ..
                }) => {
                    assert_eq!(f, field, "{yaml}");
                    assert!(message.contains(why), "{yaml}: {message}");
                }
                other => panic!("{yaml}: {other:?}"),
            }
        }
        assert!(MeshConfig::parse("trustDomain: corp.example.\n", O).is_ok());
    }

    #[test]
    fn file_is_mesh_yaml_or_a_config_map() {
        let bare = MeshConfig::from_file_text("trustDomain: corp.example\n", "mesh.yaml").unwrap();
        assert_eq!(bare.effective_trust_domain(), "corp.example");
        let cm = MeshConfig::from_file_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |-\n    trustDomain: corp.example\n    rootNamespace: istio-config\n",
            "cm.yaml",
        )
        .unwrap();
        assert_eq!(cm.effective_trust_domain(), "corp.example");
        assert_eq!(cm.effective_root_namespace(), "istio-config");
        let e = MeshConfig::from_file_text(
            "apiVersion: v1\nkind: ConfigMap\ndata: {meshNetworks: x}\n",
            "cm.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("no key \"mesh\""), "{e}");
    }
}
