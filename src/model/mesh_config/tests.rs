//! Decoding a MeshConfig: valid, defaulted, malformed.

use super::*;

const O: &str = "ConfigMap istio-system/istio";

#[test]
fn defaults_when_empty_or_absent() {
    for text in [
        "",
        "  \n",
        "# only a comment\n",
        "{}",
        "~\n",
        "null\n",
        "---\n",
    ] {
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
    assert_eq!(m.proxy_image_type(), Some("distroless"));
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

#[test]
fn every_wrong_type_is_named_with_its_type() {
    for (yaml, field, message) in [
        (
            "5\n",
            "mesh",
            "MeshConfig must be a YAML mapping, not a number",
        ),
        (
            "just text\n",
            "mesh",
            "MeshConfig must be a YAML mapping, not a string",
        ),
        (
            "rootNamespace: [a]\n",
            "rootNamespace",
            "must be a string, not a list",
        ),
        (
            "rootNamespace: true\n",
            "rootNamespace",
            "must be a string, not a boolean",
        ),
        (
            "trustDomain: {a: 1}\n",
            "trustDomain",
            "must be a string, not a mapping",
        ),
        (
            "trustDomainAliases: [a, null]\n",
            "trustDomainAliases[1]",
            "must be a string, not null",
        ),
        (
            "trustDomainAliases: {a: b}\n",
            "trustDomainAliases",
            "must be a list of strings, not a mapping",
        ),
        (
            "enableAutoMtls: \"true\"\n",
            "enableAutoMtls",
            "must be true or false, not a string",
        ),
        (
            "enableAutoMtls: 1\n",
            "enableAutoMtls",
            "must be true or false, not a number",
        ),
        (
            "defaultConfig: {image: {imageType: [a]}}\n",
            "defaultConfig.image.imageType",
            "must be a string, not a list",
        ),
        // The type checks come first, in field order; then the trust domains.
        (
            "trustDomain: \"\"\nenableAutoMtls: x\n",
            "enableAutoMtls",
            "must be true or false, not a string",
        ),
        (
            "trustDomain: Bad\ntrustDomainAliases: [\"\"]\n",
            "trustDomain",
            "trust domain name \"Bad\" invalid: \"Bad\" is not a lowercase DNS-1123 label",
        ),
        (
            "trustDomainAliases: [ok.example, \"\"]\n",
            "trustDomainAliases[0]",
            "empty domain name not allowed",
        ),
    ] {
        assert_eq!(
            MeshConfig::parse(yaml, O),
            Err(MeshError::Invalid {
                origin: O.to_owned(),
                field: field.to_owned(),
                message: message.to_owned()
            }),
            "{yaml}"
        );
    }
}

#[test]
fn a_default_config_or_image_that_is_not_a_mapping_has_no_image_type() {
    for yaml in [
        "defaultConfig: 5\n",
        "defaultConfig: {image: [x]}\n",
        "defaultConfig: {image: {imageType: null}}\n",
        "defaultConfig: null\n",
    ] {
        let m = MeshConfig::parse(yaml, O).unwrap();
        assert_eq!(m.proxy_image_type(), None, "{yaml}");
    }
}

#[test]
fn yaml_features_read_as_istio_reads_them() {
    // Anchors and aliases, flow and block style, quoted strings.
    let m = MeshConfig::parse(
        "trustDomain: &td corp.example\ntrustDomainAliases:\n  - *td\n  - 'old.example'\nenableAutoMtls: false\n",
        O,
    )
    .unwrap();
    assert_eq!(m.trust_domain.as_deref(), Some("corp.example"));
    assert_eq!(m.trust_domain_aliases, ["corp.example", "old.example"]);
    assert_eq!(m.enable_auto_mtls, Some(false));
    // A duplicated key is refused by the YAML reader, whatever the field.
    let e = MeshConfig::parse("trustDomain: a.example\ntrustDomain: b.example\n", O).unwrap_err();
    assert!(matches!(e, MeshError::Yaml { .. }), "{e:?}");
    let e = MeshConfig::parse("other: 1\nother: 2\n", O).unwrap_err();
    assert!(matches!(e, MeshError::Yaml { .. }), "{e:?}");
    // Bad YAML in a field nobody reads is still bad YAML.
    let e = MeshConfig::parse("accessLogFile: [\n", O).unwrap_err();
    assert!(matches!(e, MeshError::Yaml { .. }), "{e:?}");
}

#[test]
fn a_config_map_file_without_a_mesh_string() {
    for text in [
        "kind: ConfigMap\ndata: {mesh: 5}\n",
        "kind: ConfigMap\ndata: [mesh]\n",
        "kind: ConfigMap\n",
    ] {
        let e = MeshConfig::from_file_text(text, "cm.yaml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cm.yaml: data.mesh: the ConfigMap has no key \"mesh\" holding the MeshConfig YAML",
            "{text}"
        );
    }
    // Not a ConfigMap: the document is the MeshConfig, `kind` and `data` ignored.
    let m = MeshConfig::from_file_text(
        "kind: Other\ndata: {mesh: \"trustDomain: x\"}\ntrustDomain: y.example\n",
        "f",
    )
    .unwrap();
    assert_eq!(m.effective_trust_domain(), "y.example");
    // A bad MeshConfig inside the ConfigMap is named with the file's origin.
    let e = MeshConfig::from_file_text(
        "kind: ConfigMap\ndata:\n  mesh: \"trustDomain: 5\"\n",
        "cm.yaml",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cm.yaml: trustDomain: must be a string, not a number"
    );
}

#[test]
fn proxy_config_annotation() {
    let image = |yaml: &str| ProxyConfig::from_annotation(yaml).and_then(|p| p.image_type);
    assert_eq!(
        image("image:\n  imageType: debug\n").as_deref(),
        Some("debug")
    );
    assert_eq!(image("image: {imageType: \"\"}\n"), None);
    assert_eq!(image("image: {imageType: 3}\n"), None);
    assert_eq!(image("image: 3\n"), None);
    assert_eq!(image("[a]\n"), None);
    assert_eq!(image("{broken"), None);
    assert_eq!(image(""), None);
    assert_eq!(image("concurrency: 2\n"), None);
}
