//! The injection decision for one pod: does a sidecar get injected, by which injector, and why.
//!
//! With injectors visible, the decision follows what really happens to a Pod CREATE:
//! kube-apiserver calls every mutating webhook whose `rules`, `namespaceSelector` and
//! `objectSelector` match, configurations in name order and webhooks in their order (kubernetes
//! `staging/src/k8s.io/apiserver/pkg/admission/configuration/mutating_webhook_manager.go` sorts
//! them by name); each Istio injector reached then runs `injectRequired` with its own
//! configuration. The pod gets a sidecar when any of them decides to inject. Istio's chart makes a
//! revision's webhooks mutually exclusive, but two configurations (two revisions, a revision and a
//! tag, a leftover install) can both select a pod: it is then injected twice, which Istio's
//! `webhook` analyzer reports as IST0139 and `istioctl x check-inject` as "multiple webhooks will
//! inject".
//!
//! With no injector visible (Istio not installed yet, no permission to read webhooks, or `check`
//! with no such manifests) the decision assumes Istio's default injector and reads the labels the
//! way meshguard always has: `istio-injection=enabled` or a non-empty `istio.io/rev` on the
//! namespace enrols it, any other `istio-injection` value keeps every pod out, and a pod in an
//! unlabelled namespace opts in with the label `sidecar.istio.io/inject` set to `y`, `yes`,
//! `true` or `on` (any case) or a non-empty `istio.io/rev` label; `sidecar.istio.io/inject` (the
//! label, else the annotation) set to anything else non-empty opts a pod out; hostNetwork pods are
//! never injected. The field `InjectionDecision::assumed` says which way a decision was made.

use super::injector::{
    InjectionPolicy, InjectorConfig, InjectorWebhook, Why, DEFAULT_REVISION, IGNORED_NAMESPACES,
    INJECT, INJECTION_LABEL, INJECTOR_CONFIG_MAP, REV_LABEL,
};
use crate::model::labels::{
    inject_value_disables, inject_value_enables, PodSetting, SettingSource,
};
use std::fmt;

/// Whether a pod gets a sidecar, and why. Borrowed from the mesh context and the inputs; building
/// one allocates nothing, and its `Display` gives the reason in words.
#[derive(Clone, Copy, Debug)]
pub struct InjectionDecision<'a> {
    /// The pod gets a sidecar.
    pub inject: bool,
    pub why: Why,
    /// The webhook whose injector decided: the first selecting webhook that injects, else the
    /// first that selects the pod. `None` when none selects, or the injector was assumed.
    pub webhook: Option<&'a InjectorWebhook>,
    /// Another webhook that also selects the pod (double injection), when there is one.
    pub also: Option<&'a InjectorWebhook>,
    /// The injector configuration that decided (with `webhook`).
    pub injector: Option<&'a InjectorConfig>,
    /// The pod's `sidecar.istio.io/inject` setting, when it has one.
    pub setting: Option<PodSetting<'a>>,
    /// The namespace label that decided under the assumed default injector
    /// (`istio-injection=enabled`, `istio.io/rev=<x>`, `istio-injection=<other>`), or the pod label
    /// that opted in.
    pub label: Option<(&'static str, &'a str)>,
    /// The namespace.
    pub namespace: &'a str,
    /// Decided with the assumed default injector (no injector visible).
    pub assumed: bool,
}

impl<'a> InjectionDecision<'a> {
    /// The revision whose injector puts the sidecar in (when injected by a visible injector).
    pub fn revision(&self) -> Option<&'a str> {
        self.webhook
            .filter(|_| self.inject)
            .map(|w| w.revision.as_str())
    }

    /// The revision whose injector puts the sidecar in under the assumed default injector (no
    /// webhook visible): `istio.io/rev=<x>` on the namespace or the pod names it, anything else
    /// (`istio-injection=enabled`, the pod's opt-in, enableNamespacesByDefault) is the default
    /// revision's. `None` when not injected or decided by a visible injector.
    pub(crate) fn assumed_revision(&self) -> Option<&'a str> {
        if !(self.assumed && self.inject) {
            return None;
        }
        match self.label {
            Some((REV_LABEL, rev)) => Some(rev),
            _ => Some(DEFAULT_REVISION),
        }
    }

    /// The pod's `sidecar.istio.io/inject` value was ignored by the injector (neither `"true"` nor
    /// `"false"` for Istio 1.27 and later), so a selector or the policy decided instead.
    pub(crate) fn setting_ignored(&self) -> bool {
        matches!(
            self.why,
            Why::NeverInjectSelector(_) | Why::AlwaysInjectSelector(_) | Why::Policy
        ) && self.setting.is_some_and(|s| !s.value.is_empty())
    }

    /// The decision under the assumed default injector (meshguard's label semantics).
    ///
    /// `by_default`: the default injector's ConfigMap is visible and its `values` set
    /// `sidecarInjectorWebhook.enableNamespacesByDefault`; the chart then renders the `auto.*`
    /// webhook (namespace without `istio-injection` and `istio.io/rev`, outside Istio's ignored
    /// namespaces; pod without `sidecar.istio.io/inject` and `istio.io/rev` labels), so such pods
    /// are injected (istio/istio `manifests/charts/istio-control/istio-discovery/templates/
    /// mutatingwebhook.yaml`; `istioctl analyze` reads the same value, IST0148).
    pub(crate) fn assume_default<N, P>(
        namespace: &'a str,
        ns_labels: &'a N,
        pod_labels: &'a P,
        setting: Option<PodSetting<'a>>,
        host_network: bool,
        by_default: bool,
    ) -> Self
    where
        N: super::Labels + ?Sized,
        P: super::Labels + ?Sized,
    {
        let mut d = InjectionDecision {
            inject: false,
            why: Why::NotEnrolled,
            webhook: None,
            also: None,
            injector: None,
            setting,
            label: None,
            namespace,
            assumed: true,
        };
        if host_network {
            d.why = Why::HostNetwork;
            return d;
        }
        let disabled = setting.is_some_and(|s| inject_value_disables(s.value));
        let enrol = |d: &mut Self, label: (&'static str, &'a str)| {
            if disabled {
                d.why = Why::PodSetting;
            } else {
                d.inject = true;
                d.why = Why::NamespaceLabel;
                d.label = Some(label);
            }
        };
        match ns_labels.label(INJECTION_LABEL) {
            Some("enabled") => enrol(&mut d, (INJECTION_LABEL, "enabled")),
            Some(v) => {
                d.why = Why::NamespaceOff;
                d.label = Some((INJECTION_LABEL, v));
            }
            None => match ns_labels.label(REV_LABEL).filter(|r| !r.is_empty()) {
                Some(rev) => enrol(&mut d, (REV_LABEL, rev)),
                None if disabled => {}
                None => {
                    if let Some(v) = pod_labels.label(INJECT).filter(|v| inject_value_enables(v)) {
                        d.inject = true;
                        d.why = Why::PodOptIn;
                        d.label = Some((INJECT, v));
                    } else if let Some(rev) = pod_labels.label(REV_LABEL).filter(|r| !r.is_empty())
                    {
                        d.inject = true;
                        d.why = Why::PodOptIn;
                        d.label = Some((REV_LABEL, rev));
                    } else if by_default
                        && pod_labels.label(INJECT).is_none()
                        && pod_labels.label(REV_LABEL).is_none()
                        && !IGNORED_NAMESPACES.contains(&namespace)
                    {
                        d.inject = true;
                        d.why = Why::EnabledByDefault;
                    }
                }
            },
        }
        d
    }
}

impl fmt::Display for InjectionDecision<'_> {
    /// The reason in words, e.g. `webhook "namespace.sidecar-injector.istio.io" of
    /// MutatingWebhookConfiguration "istio-sidecar-injector" (revision default) selects the pod, and
    /// its injector's policy is enabled`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.namespace;
        match (self.why, self.webhook) {
            (Why::NotSelected, _) => {
                write!(f, "no sidecar injector webhook selects this pod in namespace {ns:?}")?;
                if let Some(s) = self.setting.filter(|s| s.source == SettingSource::Label) {
                    write!(f, " ({s} keeps it out of the injectors' objectSelectors)")?;
                }
                Ok(())
            }
            (Why::HostNetwork, _) => {
                f.write_str("hostNetwork pods are never injected (Istio's injectRequired)")
            }
            (Why::NamespaceLabel, _) => match self.label {
                Some((k, v)) => write!(f, "namespace {ns:?} is labelled {k}={v}"),
                None => write!(f, "namespace {ns:?} is labelled for injection"),
            },
            (Why::NamespaceOff, _) => match self.label {
                Some((k, v)) => write!(
                    f,
                    "namespace {ns:?} is labelled {k}={v}, which keeps the sidecar out of every pod in it"
                ),
                None => write!(f, "namespace {ns:?} turns injection off"),
            },
            (Why::PodOptIn, _) => match self.label {
                Some((k, v)) => write!(f, "the pod label {k}={v} opts it in to injection"),
                None => f.write_str("the pod opts in to injection"),
            },
            (Why::NotEnrolled, _) => write!(
                f,
                "namespace {ns:?} is not labelled for injection (istio-injection=enabled or istio.io/rev) and the pod does not opt in"
            ),
            (Why::EnabledByDefault, _) => write!(
                f,
                "namespace {ns:?} has no injection label, and the injector's sidecarInjectorWebhook.enableNamespacesByDefault (ConfigMap {INJECTOR_CONFIG_MAP}) injects such namespaces"
            ),
            (Why::PodSetting, None) => match self.setting {
                Some(s) => write!(f, "{s} opts it out of injection"),
                None => f.write_str("the pod opts out of injection"),
            },
            (why, Some(w)) => {
                write!(f, "{w} selects the pod, ")?;
                match why {
                    Why::IgnoredNamespace => write!(
                        f,
                        "but Istio's injector never injects into namespace {ns:?}"
                    ),
                    Why::PodSetting => match self.setting {
                        Some(s) if self.inject => write!(f, "and {s} asks for a sidecar"),
                        Some(s) => write!(f, "but {s} refuses the sidecar"),
                        None => f.write_str("and the pod's setting decides"),
                    },
                    Why::NeverInjectSelector(i) => {
                        let sel = self.injector.and_then(|c| c.never_inject.get(i));
                        write!(f, "but the pod's labels match the injector's neverInjectSelector[{i}]")?;
                        if let Some(s) = sel {
                            write!(f, " ({s})")?;
                        }
                        Ok(())
                    }
                    Why::AlwaysInjectSelector(i) => {
                        let sel = self.injector.and_then(|c| c.always_inject.get(i));
                        write!(f, "and the pod's labels match the injector's alwaysInjectSelector[{i}]")?;
                        if let Some(s) = sel {
                            write!(f, " ({s})")?;
                        }
                        Ok(())
                    }
                    _ => {
                        let policy = self.injector.map(|c| &c.policy);
                        match policy {
                            Some(InjectionPolicy::Enabled) | None if self.inject => {
                                f.write_str("and its injector's policy is enabled")?
                            }
                            Some(InjectionPolicy::Disabled) => f.write_str(
                                "but its injector's policy is disabled and nothing in the pod asks for a sidecar (label sidecar.istio.io/inject=true)",
                            )?,
                            Some(p) => write!(
                                f,
                                "but its injector's policy is {p}, which is neither enabled nor disabled, so Istio injects nothing"
                            )?,
                            None => f.write_str("but its injector does not inject")?,
                        }
                        if self.setting_ignored() {
                            if let Some(s) = self.setting {
                                write!(f, " ({s} is ignored: only \"true\" and \"false\" count)")?;
                            }
                        }
                        Ok(())
                    }
                }
            }
            (Why::IgnoredNamespace, None) => {
                write!(f, "Istio's injector never injects into namespace {ns:?}")
            }
            (_, None) => f.write_str("the injector decides"),
        }
    }
}
