//! The Istio label and annotation keys meshguard reads, each defined once (istio/api
//! `label/labels.yaml`, `annotation/annotations.yaml`). How each is read lives with its readers
//! (`crate::dataplane::labels` for the data plane, `crate::mesh` for injection).

/// Namespace label for the default revision's sidecar injector.
pub const ISTIO_INJECTION: &str = "istio-injection";
/// Namespace (or pod) label naming an injector revision or tag; on an injector object, its
/// revision.
pub const REV: &str = "istio.io/rev";
/// `istio.io/tag` on a revision tag's MutatingWebhookConfiguration.
pub const TAG: &str = "istio.io/tag";
/// `sidecar.istio.io/inject`, a pod label (or the deprecated annotation).
pub const INJECT: &str = "sidecar.istio.io/inject";
/// `ambient` or `none`, on a Namespace or a Pod (istio/api: "there is no value on this label to
/// configure sidecars").
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// The waypoint a Namespace, Service, ServiceEntry or Pod uses; `none` opts the object out.
pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";
/// The namespace of the waypoint `istio.io/use-waypoint` names (label values cannot hold `/`).
pub const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
/// On a waypoint Gateway (or its GatewayClass): `service` (default), `workload`, `all`, `none`.
pub const WAYPOINT_FOR: &str = "istio.io/waypoint-for";
/// On a Service or Namespace: ingress gateways send to the waypoint too (`"true"`).
pub const INGRESS_USE_WAYPOINT: &str = "istio.io/ingress-use-waypoint";
/// Pod annotation: plaintext inbound traffic is not redirected to ztunnel (Alpha).
pub const BYPASS_INBOUND_CAPTURE: &str = "ambient.istio.io/bypass-inbound-capture";
/// Pod annotation the istio-cni node agent sets once it has enrolled the pod (`enabled`).
pub const AMBIENT_REDIRECTION: &str = "ambient.istio.io/redirection";
/// Pod annotation the sidecar injector sets; a pod with it is never captured by ztunnel.
pub const SIDECAR_STATUS: &str = "sidecar.istio.io/status";
/// Label on a Gateway API gateway's pods (and the Deployment istiod creates).
pub const GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";
/// Gateway annotation naming the ServiceAccount of the deployment istiod creates.
pub const GATEWAY_SERVICE_ACCOUNT: &str = "gateway.istio.io/service-account";
/// Gateway annotation: how ztunnel hands traffic to the waypoint (`PROXY`, `PROXY/<port>`).
pub const WAYPOINT_INBOUND_BINDING: &str = "ambient.istio.io/waypoint-inbound-binding";
/// Label istiod puts on the objects of a managed gateway (`istio.io-mesh-controller` for
/// waypoints).
pub const GATEWAY_MANAGED: &str = "gateway.istio.io/managed";
/// The GatewayClass of Istio's waypoints.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// The controller of Istio's waypoint GatewayClass.
pub const MESH_CONTROLLER: &str = "istio.io/mesh-controller";
/// Pod annotation naming the proxy image the injector uses instead of its template's.
pub(crate) const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";
/// Pod annotation choosing the proxy image type (`distroless`, `debug`).
pub(crate) const PROXY_IMAGE_TYPE: &str = "sidecar.istio.io/proxyImageType";
/// Pod annotation holding ProxyConfig YAML over the MeshConfig's `defaultConfig`.
pub(crate) const PROXY_CONFIG: &str = "proxy.istio.io/config";

/// A `sidecar.istio.io/inject` value that turns injection on, as meshguard (and Istio's
/// injector up to 1.26, `InjectValues::Legacy`) reads it: `y`, `yes`, `true` or `on`, in any
/// case. The one place this is parsed.
pub fn inject_value_enables(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "y" | "yes" | "true" | "on")
}

/// A `sidecar.istio.io/inject` value that turns injection off: anything but on or empty (empty
/// means "use the default").
pub fn inject_value_disables(v: &str) -> bool {
    !v.is_empty() && !inject_value_enables(v)
}

/// `istio.io/dry-run` on an AuthorizationPolicy: Istio evaluates the policy in shadow mode only
/// (logs and stats, never the decision).
pub(crate) const DRY_RUN: &str = "istio.io/dry-run";

/// Whether an object is Istio dry-run: its `istio.io/dry-run` annotation read as Go's
/// `strconv.ParseBool` reads it (istio/istio `pilot/pkg/security/authz/builder/builder.go`,
/// `isDryRun`): `1`, `t`, `T`, `TRUE`, `true` and `True` all turn it on.
pub fn is_dry_run(obj: &kube::core::DynamicObject) -> bool {
    is_dry_run_meta(&obj.metadata)
}

/// [`is_dry_run`] of an object's metadata.
pub fn is_dry_run_meta(meta: &kube::core::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(DRY_RUN))
        .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "TRUE" | "true" | "True"))
}

/// Where a pod's `sidecar.istio.io/inject` setting came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingSource {
    Label,
    Annotation,
}

/// A pod's `sidecar.istio.io/inject` setting (the label wins over the annotation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodSetting<'a> {
    pub source: SettingSource,
    pub value: &'a str,
}

impl<'a> PodSetting<'a> {
    /// The setting of a pod with this `sidecar.istio.io/inject` label and annotation: the label
    /// wins; the (deprecated) annotation counts only when the label is absent (istio/istio
    /// `pkg/kube/inject/inject.go`, `injectRequired`).
    pub(crate) fn of(
        label: Option<&'a str>,
        annotation: impl FnOnce() -> Option<&'a str>,
    ) -> Option<PodSetting<'a>> {
        if let Some(value) = label {
            return Some(PodSetting {
                source: SettingSource::Label,
                value,
            });
        }
        annotation().map(|value| PodSetting {
            source: SettingSource::Annotation,
            value,
        })
    }

    /// `metadata.labels["sidecar.istio.io/inject"]` or `metadata.annotations[…]`.
    pub fn path(&self) -> &'static str {
        match self.source {
            SettingSource::Label => "metadata.labels[\"sidecar.istio.io/inject\"]",
            SettingSource::Annotation => "metadata.annotations[\"sidecar.istio.io/inject\"]",
        }
    }
}

impl std::fmt::Display for PodSetting<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.source {
            SettingSource::Label => "label",
            SettingSource::Annotation => "annotation",
        };
        write!(f, "the pod {what} {INJECT}={:?}", self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::DynamicObject;
    use serde_json::json;

    #[test]
    fn dry_run_reads_like_go_parse_bool() {
        let obj = |v: &str| -> DynamicObject {
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "X",
                "metadata": {"name": "p", "annotations": {"istio.io/dry-run": v}}}))
            .expect("object")
        };
        for on in ["true", "True", "TRUE", "t", "T", "1"] {
            assert!(is_dry_run(&obj(on)), "{on}");
        }
        for off in ["false", "0", "yes", ""] {
            assert!(!is_dry_run(&obj(off)), "{off}");
        }
    }
}
