//! `MutatingWebhookConfiguration` (admissionregistration.k8s.io/v1), as the mesh reads Istio's
//! sidecar injectors and revision tags: the configuration's name and labels (`istio.io/rev`,
//! `istio.io/tag`, `app`), and per webhook its name, `clientConfig.service`, `rules`,
//! `namespaceSelector` / `objectSelector` (Kubernetes label selectors, matched by
//! [`crate::model::label_selector`]; a null one is defaulted to `{}` by the API server),
//! `failurePolicy`, `reinvocationPolicy` and how many `matchConditions` it has. What makes a
//! configuration an injector, and what its webhooks decide, is [`crate::mesh::injector`].
//!
//! Decoding refuses what k8s-openapi's `MutatingWebhookConfiguration` refuses, with the same
//! message (an `apiVersion` other than `admissionregistration.k8s.io/v1`, any field of the wrong
//! JSON type, a `caBundle` that is not base64): fields no check reads (`admissionReviewVersions`,
//! `sideEffects`, `timeoutSeconds`, `matchPolicy`, `clientConfig.url`, `caBundle`, the service's
//! `path` and `port`, the match conditions' text) are checked and dropped.

use super::label_selector::LabelSelectorSpec;
use super::{k8s_struct, Base64, Checked, Str};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The only version k8s-openapi's type takes.
pub(crate) const API_VERSION: &str = "admissionregistration.k8s.io/v1";

/// A MutatingWebhookConfiguration: its name, labels and webhooks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MutatingWebhookConfiguration<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// `metadata.labels`.
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// `webhooks`.
    pub webhooks: Vec<MutatingWebhook<'a>>,
}

/// The part besides `apiVersion`, `kind` and `metadata`.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    webhooks: Option<Vec<MutatingWebhook<'a>>>,
}

/// One webhook.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct MutatingWebhook<'a> {
    #[allow(dead_code)] // checked by the decoder, read by no check
    #[serde(default)]
    admission_review_versions: Option<Checked<Vec<String>>>,
    #[serde(borrow, default)]
    pub client_config: Option<WebhookClientConfig<'a>>,
    /// `Fail` (the v1 default) or `Ignore`.
    #[serde(borrow, default)]
    pub(crate) failure_policy: Option<Str<'a>>,
    #[serde(default)]
    pub(crate) match_conditions: Option<Vec<MatchCondition>>,
    #[allow(dead_code)] // checked by the decoder, read by no check
    #[serde(default)]
    match_policy: Option<Checked<String>>,
    #[serde(borrow, default)]
    pub name: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(crate) namespace_selector: Option<LabelSelectorSpec<'a>>,
    #[serde(borrow, default)]
    pub(crate) object_selector: Option<LabelSelectorSpec<'a>>,
    /// `Never` (the default) or `IfNeeded`.
    #[serde(borrow, default)]
    pub(crate) reinvocation_policy: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub rules: Option<Vec<RuleWithOperations<'a>>>,
    #[allow(dead_code)] // checked by the decoder, read by no check
    #[serde(default)]
    side_effects: Option<Checked<String>>,
    #[allow(dead_code)] // checked by the decoder, read by no check
    #[serde(default)]
    timeout_seconds: Option<Checked<i32>>,
}
k8s_struct!(MutatingWebhook, "MutatingWebhook");

/// `clientConfig`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct WebhookClientConfig<'a> {
    #[allow(dead_code)] // checked by the decoder, read by no check
    #[serde(default)]
    ca_bundle: Option<Base64>,
    #[serde(borrow, default)]
    pub service: Option<ServiceReference<'a>>,
    #[allow(dead_code)] // checked by the decoder, read by no check
    #[serde(default)]
    url: Option<Checked<String>>,
}
k8s_struct!(WebhookClientConfig, "WebhookClientConfig");

/// `clientConfig.service`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct ServiceReference<'a> {
    #[serde(borrow, default)]
    pub name: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub namespace: Option<Str<'a>>,
    #[allow(dead_code)] // checked by the decoder, read by no check
    #[serde(default)]
    path: Option<Checked<String>>,
    #[allow(dead_code)] // checked by the decoder, read by no check
    #[serde(default)]
    port: Option<Checked<i32>>,
}
k8s_struct!(ServiceReference, "ServiceReference");

/// `matchConditions[]` (CEL; counted, not evaluated).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub(crate) struct MatchCondition {
    #[allow(dead_code)] // checked by the decoder, read by no check
    #[serde(default)]
    expression: Option<Checked<String>>,
    #[allow(dead_code)] // checked by the decoder, read by no check
    #[serde(default)]
    name: Option<Checked<String>>,
}

impl<'de> Deserialize<'de> for MatchCondition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MatchCondition;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("MatchCondition")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<MatchCondition, A::Error> {
                MatchCondition::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V)
    }
}

/// `rules[]`: which requests the webhook is called for.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct RuleWithOperations<'a> {
    #[serde(borrow, default)]
    pub(crate) api_groups: Option<Vec<Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) api_versions: Option<Vec<Str<'a>>>,
    #[serde(borrow, default)]
    pub operations: Option<Vec<Str<'a>>>,
    #[serde(borrow, default)]
    pub resources: Option<Vec<Str<'a>>>,
    /// `*` (the default), `Cluster` or `Namespaced`.
    #[serde(borrow, default)]
    pub scope: Option<Str<'a>>,
}
k8s_struct!(RuleWithOperations, "RuleWithOperations");

impl<'a> MutatingWebhookConfiguration<'a> {
    /// Decode a configuration from its `apiVersion`, metadata and the rest of the object (a
    /// `DynamicObject`'s `data`). The error is k8s-openapi's message for the same object.
    pub fn decode(
        api_version: &str,
        metadata: &'a ObjectMeta,
        rest: &'a Value,
    ) -> Result<MutatingWebhookConfiguration<'a>, String> {
        if api_version != API_VERSION {
            return Err(<serde_json::Error as serde::de::Error>::invalid_value(
                serde::de::Unexpected::Str(api_version),
                &API_VERSION,
            )
            .to_string());
        }
        let body = Body::deserialize(rest).map_err(|e| e.to_string())?;
        Ok(MutatingWebhookConfiguration {
            name: metadata.name.as_deref().unwrap_or_default(),
            labels: metadata.labels.as_ref(),
            webhooks: body.webhooks.unwrap_or_default(),
        })
    }

    /// A label's value.
    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.labels.and_then(|l| l.get(key)).map(String::as_str)
    }
}

impl MutatingWebhook<'_> {
    /// `name` (empty when unset).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// `clientConfig.service` as (namespace, name), when the webhook calls a Service.
    pub fn service(&self) -> Option<(&str, &str)> {
        let s = self.client_config.as_ref()?.service.as_ref()?;
        Some((
            s.namespace.as_deref().unwrap_or_default(),
            s.name.as_deref().unwrap_or_default(),
        ))
    }

    /// The number of `matchConditions`.
    pub(crate) fn match_conditions(&self) -> usize {
        self.match_conditions.as_ref().map_or(0, Vec::len)
    }

    /// `rules`.
    pub fn rules(&self) -> &[RuleWithOperations<'_>] {
        self.rules.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::DynamicObject;
    use serde_json::json;

    fn object(v: Value) -> DynamicObject {
        serde_json::from_value(v).expect("object")
    }

    fn decode(o: &DynamicObject) -> Result<MutatingWebhookConfiguration<'_>, String> {
        let v = o.types.as_ref().map_or("", |t| t.api_version.as_str());
        MutatingWebhookConfiguration::decode(v, &o.metadata, &o.data)
    }

    /// What k8s-openapi says of the same object (what meshguard read it with before).
    fn k8s(o: &DynamicObject) -> Result<(), String> {
        serde_json::to_value(o)
            .and_then(
                serde_json::from_value::<
                    k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
                >,
            )
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn with_webhook(hook: Value) -> DynamicObject {
        object(
            json!({"apiVersion": API_VERSION, "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "istio-sidecar-injector", "labels": {"istio.io/rev": "canary"}},
            "webhooks": [hook]}),
        )
    }

    #[test]
    fn reads_what_the_injector_reads() {
        let o = with_webhook(json!({"name": "rev.namespace.sidecar-injector.istio.io",
            "clientConfig": {"service": {"name": "istiod-canary", "namespace": "istio-system", "path": "/inject", "port": 443},
                "caBundle": "aGk="},
            "failurePolicy": "Ignore", "reinvocationPolicy": "IfNeeded", "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "timeoutSeconds": 10,
            "matchConditions": [{"name": "a", "expression": "true"}],
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "*"}],
            "namespaceSelector": {"matchExpressions": [{"key": "istio.io/rev", "operator": "In", "values": ["canary"]}]},
            "objectSelector": {"matchLabels": {"sidecar.istio.io/inject": "true"}}}));
        let m = decode(&o).expect("decodes");
        assert_eq!(m.name, "istio-sidecar-injector");
        assert_eq!(m.label("istio.io/rev"), Some("canary"));
        let w = &m.webhooks[0];
        assert_eq!(w.name(), "rev.namespace.sidecar-injector.istio.io");
        assert_eq!(w.service(), Some(("istio-system", "istiod-canary")));
        assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(w.reinvocation_policy.as_deref(), Some("IfNeeded"));
        assert_eq!(w.match_conditions(), 1);
        assert_eq!(w.rules()[0].resources.as_deref().map(<[_]>::len), Some(1));
        let ns = w.namespace_selector.as_ref().expect("selector").compile();
        assert!(ns.matches(&[("istio.io/rev", "canary")]));
        assert!(!ns.matches(&[("istio.io/rev", "stable")]));
        let obj = w.object_selector.as_ref().expect("selector").compile();
        assert_eq!(obj.to_string(), "sidecar.istio.io/inject=true");
        assert!(k8s(&o).is_ok());
    }

    #[test]
    fn refuses_what_k8s_openapi_refuses_with_its_message() {
        let mut cases: Vec<DynamicObject> = [
            json!({"name": 1}),
            json!({"clientConfig": "x"}),
            json!({"clientConfig": {"caBundle": "not base64!"}}),
            json!({"clientConfig": {"caBundle": 3}}),
            json!({"clientConfig": {"service": {"port": "443"}}}),
            json!({"clientConfig": {"service": {"port": 4_294_967_296_u64}}}),
            json!({"clientConfig": {"service": []}}),
            json!({"clientConfig": {"url": 1}}),
            json!({"admissionReviewVersions": "v1"}),
            json!({"sideEffects": ["None"]}),
            json!({"timeoutSeconds": "10"}),
            json!({"matchPolicy": 1}),
            json!({"matchConditions": [{"name": 1}]}),
            json!({"matchConditions": ["x"]}),
            json!({"failurePolicy": true}),
            json!({"reinvocationPolicy": 1}),
            json!({"rules": {"operations": ["CREATE"]}}),
            json!({"rules": [{"operations": "CREATE"}]}),
            json!({"rules": [{"resources": [null]}]}),
            json!({"rules": [null]}),
            json!({"namespaceSelector": "x"}),
            json!({"namespaceSelector": {"matchLabels": {"a": 1}}}),
            json!({"objectSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}}),
            json!({"objectSelector": {"matchExpressions": [["a", "In"]]}}),
            json!({"objectSelector": {"matchExpressions": [{"key": 5}]}}),
        ]
        .into_iter()
        .map(with_webhook)
        .collect();
        cases.push(object(
            json!({"apiVersion": "admissionregistration.k8s.io/v1beta1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "istio-sidecar-injector"}, "webhooks": []}),
        ));
        cases.push(object(
            json!({"apiVersion": API_VERSION, "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "x"}, "webhooks": {"a": 1}}),
        ));
        cases.push(object(
            json!({"apiVersion": API_VERSION, "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "x"}, "webhooks": ["x"]}),
        ));
        for o in &cases {
            let want = k8s(o).expect_err("k8s-openapi refuses it");
            let got = decode(o).expect_err("refused");
            assert_eq!(got, want, "{:?}", o.data);
        }
        // What k8s-openapi accepts (nulls, unknown fields, empty values), the model accepts.
        for hook in [
            json!({}),
            json!({"name": null, "clientConfig": null, "rules": null, "namespaceSelector": null}),
            json!({"clientConfig": {"caBundle": null, "service": {"name": null}}, "extra": [1]}),
            json!({"objectSelector": {"matchExpressions": [{}], "other": 1}}),
        ] {
            let o = with_webhook(hook.clone());
            assert!(k8s(&o).is_ok(), "{hook}");
            assert!(decode(&o).is_ok(), "{hook}");
        }
    }
}
