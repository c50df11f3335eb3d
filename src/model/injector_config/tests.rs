//! Decoding an injector ConfigMap's `config` and `values`: valid, defaulted, malformed.

use super::*;
use std::collections::BTreeMap;

const O: &str = "ConfigMap istio-system/istio-sidecar-injector";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn config_reads_policy_selectors_and_templates() {
    let (c, err) = InjectionConfig::decode(
        "policy: disabled\nneverInjectSelector:\n- matchExpressions: [{key: job-name, operator: Exists}]\nalwaysInjectSelector:\n- matchLabels: {inject: always}\ndefaultTemplates: [sidecar, 3, custom]\ntemplates:\n  sidecar: \"initContainers: [{name: istio-init, args: [istio-iptables]}]\"\n  gateway: \"spec: {}\"\n  broken: 5\naliases:\n  both: [sidecar, gateway, 1]\n  odd: x\ninjectedAnnotations: {a: b}\n",
        O,
    );
    assert_eq!(err, None);
    assert_eq!(c.policy, Some(InjectionPolicy::Disabled));
    let never = c.never_inject.expect("read");
    assert_eq!(never.len(), 1);
    assert!(never[0].matches(&labels(&[("job-name", "x")])));
    assert!(!never[0].matches(&labels(&[("app", "x")])));
    let always = c.always_inject.expect("read");
    assert!(always[0].matches(&labels(&[("inject", "always")])));
    assert_eq!(
        c.default_templates.as_deref(),
        Some(&["sidecar".to_owned(), "custom".to_owned()][..])
    );
    assert_eq!(
        c.templates.as_deref(),
        Some(
            &[
                "broken".to_owned(),
                "gateway".to_owned(),
                "sidecar".to_owned()
            ][..]
        )
    );
    assert_eq!(
        c.capturing_templates.as_deref(),
        Some(&["sidecar".to_owned()][..])
    );
    let aliases = c.aliases.expect("read");
    assert_eq!(aliases["both"], ["sidecar", "gateway"]);
    assert!(aliases["odd"].is_empty());
}

#[test]
fn config_defaults_stay_for_what_is_not_written() {
    let (c, err) = InjectionConfig::decode("policy: enabled\n", O);
    assert_eq!(err, None);
    assert_eq!(c.policy, Some(InjectionPolicy::Enabled));
    assert_eq!(c.never_inject.as_deref().map(<[_]>::len), Some(0));
    assert_eq!(c.default_templates, None, "the chart's [sidecar] stays");
    assert_eq!((c.templates, c.aliases), (None, None));
    // An empty document: no policy (injects nothing), nothing else read.
    for text in ["", "# nothing\n", "null\n"] {
        let (c, err) = InjectionConfig::decode(text, O);
        assert_eq!(err, None, "{text:?}");
        assert_eq!(c.policy, Some(InjectionPolicy::Invalid(String::new())));
        assert_eq!(c.never_inject, None);
    }
    for (text, want) in [
        (
            "policy: Enabled\n",
            InjectionPolicy::Invalid("Enabled".into()),
        ),
        ("policy: null\n", InjectionPolicy::Invalid(String::new())),
        ("templates: {}\n", InjectionPolicy::Invalid(String::new())),
    ] {
        assert_eq!(
            InjectionConfig::decode(text, O).0.policy,
            Some(want),
            "{text}"
        );
    }
    // Lists of the wrong type elsewhere read as absent.
    let (c, err) = InjectionConfig::decode(
        "policy: enabled\ndefaultTemplates: sidecar\ntemplates: [a]\naliases: 3\n",
        O,
    );
    assert_eq!(err, None);
    assert_eq!(
        (c.default_templates, c.templates, c.aliases),
        (None, None, None)
    );
}

#[test]
fn malformed_config_names_the_field_and_keeps_what_came_before() {
    let err = |text: &str| InjectionConfig::decode(text, O).1.map(|e| e.to_string());
    assert!(err("policy: [\n")
        .expect("error")
        .starts_with(&format!("{O}: key \"config\" is not valid YAML")));
    assert_eq!(
        err("- a\n").as_deref(),
        Some(&*format!(
            "{O}: config.: must be a YAML mapping, not a list"
        ))
    );
    assert_eq!(
        err("policy: 1\n").as_deref(),
        Some(&*format!(
            "{O}: config.policy: must be enabled or disabled, not a number"
        ))
    );
    assert_eq!(
        err("policy: enabled\nalwaysInjectSelector: {matchLabels: {}}\n").as_deref(),
        Some(&*format!(
            "{O}: config.alwaysInjectSelector: must be a list of label selectors, not a mapping"
        ))
    );
    // A selector Kubernetes would refuse: its decoder's message, at the entry's index.
    let (c, e) = InjectionConfig::decode(
        "policy: disabled\nneverInjectSelector: [{}, {matchLabels: [1]}]\nalwaysInjectSelector: [{}]\n",
        O,
    );
    let e = e.expect("error").to_string();
    assert!(
        e.starts_with(&format!("{O}: config.neverInjectSelector[1]: invalid type")),
        "{e}"
    );
    assert_eq!(
        c.policy,
        Some(InjectionPolicy::Disabled),
        "read before the error"
    );
    assert_eq!((c.never_inject, c.always_inject), (None, None), "not read");
}

#[test]
fn values_read_hub_tag_image_variant_revision() {
    let (v, errors) = InjectionValues::decode(
        r#"{"global": {"hub": "docker.io/istio", "tag": "1.28.1", "proxy": {"image": "proxyv2"}, "variant": "distroless"},
            "revision": "canary", "sidecarInjectorWebhook": {"enableNamespacesByDefault": true}, "other": [1]}"#,
        O,
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        v,
        InjectionValues {
            hub: Some("docker.io/istio".into()),
            tag: Some("1.28.1".into()),
            proxy_image: Some("proxyv2".into()),
            variant: Some("distroless".into()),
            revision: Some("canary".into()),
            enable_namespaces_by_default: true,
        }
    );
    // Defaults: nothing set, the default revision, namespaces not enabled by default.
    for text in [
        "{}",
        "[1]",
        "\"x\"",
        "null",
        r#"{"global": 5, "revision": ""}"#,
        r#"{"sidecarInjectorWebhook": {"enableNamespacesByDefault": "true"}}"#,
    ] {
        let (v, errors) = InjectionValues::decode(text, O);
        assert!(errors.is_empty(), "{text}: {errors:?}");
        assert_eq!(v, InjectionValues::default(), "{text}");
    }
}

#[test]
fn a_numeric_tag_prints_as_go_prints_it() {
    for (tag, want) in [("1.28", "1.28"), ("2", "2"), ("1.0", "1"), ("-3", "-3")] {
        let (v, errors) = InjectionValues::decode(&format!(r#"{{"global": {{"tag": {tag}}}}}"#), O);
        assert!(errors.is_empty());
        assert_eq!(v.tag.as_deref(), Some(want), "{tag}");
    }
}

#[test]
fn malformed_values_are_errors_and_drop_the_revision() {
    let (v, errors) = InjectionValues::decode("{not json", O);
    assert_eq!(v, InjectionValues::default());
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [format!(
            "{O}: key \"values\" is not valid JSON: key must be a string at line 1 column 2"
        )]
    );
    let (v, errors) = InjectionValues::decode(
        r#"{"global": {"hub": 1, "tag": true, "proxy": {"image": ["x"]}, "variant": {}}, "revision": "blue",
            "sidecarInjectorWebhook": {"enableNamespacesByDefault": true}}"#,
        O,
    );
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            format!("{O}: values.global.hub: must be a string, not a number"),
            format!("{O}: values.global.tag: must be a string, not a boolean"),
            format!("{O}: values.global.proxy.image: must be a string, not a list"),
            format!("{O}: values.global.variant: must be a string, not a mapping"),
        ]
    );
    assert_eq!(v.revision, None, "not read when values has errors");
    assert!(v.enable_namespaces_by_default, "read all the same");
    let (_, errors) = InjectionValues::decode(r#"{"revision": 7}"#, O);
    assert_eq!(
        errors[0].to_string(),
        format!("{O}: values.revision: must be a string, not a number")
    );
}

#[test]
fn inject_values_follow_the_version() {
    assert_eq!(InjectValues::for_tag(Some("1.26.3")), InjectValues::Legacy);
    assert_eq!(InjectValues::for_tag(Some("0.8")), InjectValues::Legacy);
    assert_eq!(
        InjectValues::for_tag(Some("1.27.0-distroless")),
        InjectValues::Exact
    );
    assert_eq!(InjectValues::Exact.decide("yes"), None);
    assert_eq!(InjectValues::Legacy.decide("yes"), Some(true));
    assert_eq!(InjectValues::Legacy.decide("nope"), Some(false));
}
