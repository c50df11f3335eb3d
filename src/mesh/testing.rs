//! Istio-shaped mesh objects for tests: injector MutatingWebhookConfigurations written after
//! Istio's chart templates (`istio-discovery/templates/mutatingwebhook.yaml`,
//! `revision-tags-mwc.yaml`: the same selectors, built here rather than copied from upstream test
//! data), injector ConfigMaps and MeshConfig ConfigMaps.

use super::injector::{INJECT, INJECTION_LABEL, REV_LABEL};
use super::MeshContext;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};

pub(crate) fn expr(key: &str, op: &str, values: &[&str]) -> Value {
    if values.is_empty() {
        json!({"key": key, "operator": op})
    } else {
        json!({"key": key, "operator": op, "values": values})
    }
}

pub(crate) fn webhook(prefix: &str, service: &str, ns: Vec<Value>, obj: Vec<Value>) -> Value {
    json!({
        "name": format!("{prefix}sidecar-injector.istio.io"),
        "clientConfig": {"service": {"name": service, "namespace": "istio-system", "path": "/inject", "port": 443}},
        "sideEffects": "None",
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        "failurePolicy": "Fail",
        "reinvocationPolicy": "Never",
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {"matchExpressions": ns},
        "objectSelector": {"matchExpressions": obj},
    })
}

/// The webhooks Istio's chart renders for `name` (a revision, or a tag), served by `service`.
/// `default_hooks` adds the default revision's `namespace.*` and `object.*` (and `auto.*` with
/// `enable_by_default`).
pub(crate) fn chart_webhooks(
    name: &str,
    service: &str,
    default_hooks: bool,
    enable_by_default: bool,
) -> Vec<Value> {
    let mut hooks = vec![
        webhook(
            "rev.namespace.",
            service,
            vec![
                expr(REV_LABEL, "In", &[name]),
                expr(INJECTION_LABEL, "DoesNotExist", &[]),
            ],
            vec![expr(INJECT, "NotIn", &["false"])],
        ),
        webhook(
            "rev.object.",
            service,
            vec![
                expr(REV_LABEL, "DoesNotExist", &[]),
                expr(INJECTION_LABEL, "DoesNotExist", &[]),
            ],
            vec![
                expr(INJECT, "NotIn", &["false"]),
                expr(REV_LABEL, "In", &[name]),
            ],
        ),
    ];
    if default_hooks {
        hooks.push(webhook(
            "namespace.",
            service,
            vec![expr(INJECTION_LABEL, "In", &["enabled"])],
            vec![expr(INJECT, "NotIn", &["false"])],
        ));
        hooks.push(webhook(
            "object.",
            service,
            vec![
                expr(INJECTION_LABEL, "DoesNotExist", &[]),
                expr(REV_LABEL, "DoesNotExist", &[]),
            ],
            vec![
                expr(INJECT, "In", &["true"]),
                expr(REV_LABEL, "DoesNotExist", &[]),
            ],
        ));
        if enable_by_default {
            hooks.push(webhook(
                "auto.",
                service,
                vec![
                    expr(INJECTION_LABEL, "DoesNotExist", &[]),
                    expr(REV_LABEL, "DoesNotExist", &[]),
                    expr(
                        "kubernetes.io/metadata.name",
                        "NotIn",
                        &[
                            "kube-system",
                            "kube-public",
                            "kube-node-lease",
                            "local-path-storage",
                        ],
                    ),
                ],
                vec![
                    expr(INJECT, "DoesNotExist", &[]),
                    expr(REV_LABEL, "DoesNotExist", &[]),
                ],
            ));
        }
    }
    hooks
}

/// A revision's injector configuration (`revision` "" is the default revision).
pub(crate) fn revision_mwc(
    revision: &str,
    enable_by_default: bool,
) -> MutatingWebhookConfiguration {
    let (name, rev, service) = if revision.is_empty() {
        (
            "istio-sidecar-injector".to_owned(),
            "default",
            "istiod".to_owned(),
        )
    } else {
        (
            format!("istio-sidecar-injector-{revision}"),
            revision,
            format!("istiod-{revision}"),
        )
    };
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app": "sidecar-injector", "istio.io/rev": rev}},
        "webhooks": chart_webhooks(rev, &service, revision.is_empty(), enable_by_default),
    }))
    .unwrap()
}

/// A revision tag `istio-revision-tag-<tag>` pointing to `revision`.
pub(crate) fn tag_mwc(
    tag: &str,
    revision: &str,
    enable_by_default: bool,
) -> MutatingWebhookConfiguration {
    let service = if revision == "default" {
        "istiod".to_owned()
    } else {
        format!("istiod-{revision}")
    };
    serde_json::from_value(json!({
        "metadata": {"name": format!("istio-revision-tag-{tag}"),
            "labels": {"app": "sidecar-injector", "istio.io/rev": revision, "istio.io/tag": tag}},
        "webhooks": chart_webhooks(tag, &service, tag == "default", enable_by_default),
    }))
    .unwrap()
}

pub(crate) fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": "istio-system"}, "data": data}),
    )
    .unwrap()
}

pub(crate) fn injector_cm(revision: &str, config: &str, tag: &str) -> ConfigMap {
    let name = if revision == "default" {
        "istio-sidecar-injector".to_owned()
    } else {
        format!("istio-sidecar-injector-{revision}")
    };
    let values =
        json!({"global": {"hub": "docker.io/istio", "tag": tag, "proxy": {"image": "proxyv2"}},
        "revision": if revision == "default" { "" } else { revision }})
        .to_string();
    config_map(&name, json!({"config": config, "values": values}))
}

/// A MeshConfig ConfigMap `name` in istio-system with `yaml` as its `mesh` key.
pub(crate) fn mesh_cm(name: &str, yaml: &str) -> ConfigMap {
    config_map(name, json!({"mesh": yaml, "meshNetworks": "networks: {}"}))
}

/// An injector ConfigMap with Istio's chart defaults (policy enabled) for `revision`, images of
/// `docker.io/istio/proxyv2:<tag>`.
pub(crate) fn enabled_injector(revision: &str, tag: &str) -> ConfigMap {
    injector_cm(
        revision,
        "policy: enabled\nalwaysInjectSelector: []\nneverInjectSelector: []\ntemplates: {sidecar: \"spec: {}\"}\n",
        tag,
    )
}

/// A context of these ConfigMaps alone (MeshConfig, injector configurations).
pub(crate) fn mesh(cms: &[ConfigMap]) -> MeshContext {
    mesh_of(&[], cms)
}

/// A context of injector webhook configurations and ConfigMaps.
pub(crate) fn mesh_of(mwcs: &[MutatingWebhookConfiguration], cms: &[ConfigMap]) -> MeshContext {
    let mut b = MeshContext::builder();
    for m in mwcs {
        assert!(b.webhook_configuration(m), "not an injector: {m:?}");
    }
    for c in cms {
        assert!(b.config_map(c), "not a mesh ConfigMap: {c:?}");
    }
    b.build()
}

/// Istio's canary upgrade: the default revision, revision `canary` and tag `prod-stable` →
/// `canary`, with their injector ConfigMaps (default on 1.26.2, canary on 1.27.1).
pub(crate) fn canary_mesh(extra_cms: &[ConfigMap]) -> MeshContext {
    let mut cms = vec![
        enabled_injector("default", "1.26.2"),
        enabled_injector("canary", "1.27.1"),
    ];
    cms.extend(extra_cms.iter().cloned());
    mesh_of(
        &[
            revision_mwc("", false),
            revision_mwc("canary", false),
            tag_mwc("prod-stable", "canary", false),
        ],
        &cms,
    )
}
