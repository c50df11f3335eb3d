//! Workloads (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job,
//! CronJob): every pod gets a sidecar and its own identity.
//!
//! Istio semantics (docs/istio-semantics.md, "Sidecar injection"; Istio's `pkg/kube/inject`
//! `injectRequired`): the pod label `sidecar.istio.io/inject` beats the deprecated annotation
//! of the same name; a pod reaches the injector through its namespace label or by opting in
//! itself (`sidecar.istio.io/inject=true`, `istio.io/rev`);
//! `istio-injection` set to anything but `enabled` on the namespace keeps every pod out;
//! hostNetwork pods are never injected; injection happens only on Pod CREATE, and the proxy may
//! be a native sidecar (init container with `restartPolicy: Always`). On Pods the ServiceAccount
//! admission plugin has already filled `serviceAccountName: default`.
//!
//! Ambient mode (docs/istio-semantics.md, Istio's ambient docs): a pod is captured by
//! ztunnel when its namespace or the pod itself carries `istio.io/dataplane-mode=ambient`, the pod
//! label `istio.io/dataplane-mode=none` opts it out, pods that get a sidecar are left to the
//! sidecar, and hostNetwork pods are never captured. A captured pod is in the mesh whatever
//! `sidecar.istio.io/inject` says, and the `traffic.sidecar.istio.io/*` annotations do nothing
//! there; its own bypass knob is `ambient.istio.io/bypass-inbound-capture`.
//!
//! Rules that need the namespace's labels read them from the cluster view; when nobody can tell
//! (`Lookup::Unknown`), `onLookupFailure: deny` reports "namespace labels unknown" and `allow`
//! reports nothing.

use super::namespace::{relabel_command, served_summary, suggested_label_for};
use super::proxy::{
    istio_containers, proxy_config_interception, proxy_image_accepted, role, Role,
    INTERCEPTION_MODE, PROXY_CONFIG,
};
use super::{Action, Ctx, Rule, Violation};
use crate::config::OnLookupFailure;
use crate::context::{Lookup, Need};
use crate::dataplane::labels::{
    go_bool, is_ambient, BYPASS_INBOUND_CAPTURE, DATAPLANE_MODE, ISTIO_INJECTION, REV,
};
use crate::dataplane::{pod_plane, Plane};
use crate::mesh::Why;
use crate::pod_template::{
    Container, PodTemplate, INIT_CONTAINER, INJECT, PROXY_CONTAINER, PROXY_GID, PROXY_UID,
};
use crate::resource::{Kind, Review};
use kube::core::admission::Operation;
use serde_json::Value;
use std::collections::BTreeMap;

const KINDS: &[Kind] = Kind::WORKLOADS;

/// The namespace's labels as the cluster view knows them.
fn namespace_labels(review: &Review<'_>, ctx: &Ctx<'_>) -> Lookup<BTreeMap<String, String>> {
    ctx.cluster.namespace_labels(review.namespace)
}

/// The "namespace labels unknown" finding, when the policy says an unanswerable lookup denies.
/// `Missing` means the namespace was not found (not in the cluster, or not in the manifests
/// `check` read); `Unknown` that nobody could tell.
fn unknown_namespace(
    review: &Review<'_>,
    ctx: &Ctx<'_>,
    lookup: &Lookup<BTreeMap<String, String>>,
    what: &str,
    out: &mut Vec<Violation>,
) {
    if ctx.policy.on_lookup_failure == OnLookupFailure::Allow {
        return;
    }
    let ns = review.namespace;
    let (why, fix) = match lookup {
        Lookup::Missing => (
            format!("namespace {ns:?} was not found"),
            "create the namespace first (or include it in the manifests you check), or set onLookupFailure: allow in the meshguard policy",
        ),
        _ => (
            format!("meshguard could not read namespace {ns:?} (no cluster connection, or the lookup failed)"),
            "retry when the API server is reachable, or set onLookupFailure: allow in the meshguard policy",
        ),
    };
    out.push(Violation::new(
        "metadata.namespace",
        format!("namespace labels unknown: {why}, so meshguard cannot tell {what}"),
        fix,
    ));
}

/// What the rules of one review know about its pod's injection, worked out once per review
/// ([`super::ReviewCache`]): the namespace's labels and, when they are known, the injector
/// decision of the mesh context (precomputed selectors, no allocation).
#[derive(Debug)]
pub(crate) struct PodInjection {
    ns: Lookup<BTreeMap<String, String>>,
    plane: Plane,
    /// The mesh's injector decision: `None` when the namespace's labels are unknown.
    decision: Option<(bool, Why)>,
}

/// The pod's injection facts, from the cache or worked out now.
fn pod_injection<'c>(review: &Review<'_>, ctx: &Ctx<'c>, t: &PodTemplate<'_>) -> &'c PodInjection {
    ctx.cache.pod.get_or_init(|| {
        let ns = namespace_labels(review, ctx);
        let decision = match &ns {
            Lookup::Found(labels) => {
                let (pl, pa) = (t.label_view(), t.annotation_view());
                let d = ctx
                    .mesh
                    .injection(review.namespace, labels, &pl, &pa, t.host_network());
                Some((d.inject, d.why))
            }
            _ => None,
        };
        let plane = pod_plane(
            ctx.mesh,
            review.namespace,
            t,
            &ns,
            decision.map(|(inject, _)| inject),
        )
        .plane;
        PodInjection {
            ns,
            plane,
            decision,
        }
    })
}

/// The injector decision in words (the reporting path only: it allocates).
fn decision_text(
    review: &Review<'_>,
    ctx: &Ctx<'_>,
    t: &PodTemplate<'_>,
    labels: &BTreeMap<String, String>,
) -> String {
    let (pl, pa) = (t.label_view(), t.annotation_view());
    ctx.mesh
        .injection(review.namespace, labels, &pl, &pa, t.host_network())
        .to_string()
}

/// Whether a `sidecar.istio.io/inject` value keeps the sidecar out. With no injector visible,
/// meshguard's reading (anything but `y`, `yes`, `true`, `on` and empty). With injectors, theirs:
/// Istio 1.27 and later act only on exactly `"true"` / `"false"` and ignore anything else; older
/// injectors also refuse `no`, `off` and the like. The injector that decided for this pod reads it
/// when there is one; otherwise any injector that would refuse it counts.
fn setting_disables(ctx: &Ctx<'_>, revision: Option<&str>, value: &str) -> bool {
    if ctx.mesh.assumed_default_injector() {
        return crate::pod_template::value_disables(value);
    }
    let refuses = |c: &crate::mesh::InjectorConfig| c.inject_values.decide(value) == Some(false);
    match revision.and_then(|r| ctx.mesh.injector(r)) {
        Some(c) => refuses(c),
        None => ctx.mesh.injectors().iter().any(refuses),
    }
}

/// The revision of the injector that decided for this pod, when one selected it.
fn deciding_revision(
    review: &Review<'_>,
    ctx: &Ctx<'_>,
    t: &PodTemplate<'_>,
    ns: &Lookup<BTreeMap<String, String>>,
) -> Option<String> {
    let Lookup::Found(labels) = ns else {
        return None;
    };
    let (pl, pa) = (t.label_view(), t.annotation_view());
    let d = ctx
        .mesh
        .injection(review.namespace, labels, &pl, &pa, t.host_network());
    d.webhook.map(|w| w.revision.clone())
}

/// The identity a pod of this namespace gets with the `default` ServiceAccount.
fn default_identity(review: &Review<'_>, ctx: &Ctx<'_>) -> String {
    format!(
        "{}/ns/{}/sa/default",
        ctx.mesh.trust_domain().value,
        review.namespace
    )
}

pub static DEFAULT_SERVICE_ACCOUNT: Rule = Rule {
    id: "wl-default-service-account",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "serviceAccountName (or the deprecated serviceAccount) absent or default: the pod shares the namespace's default identity",
    example_fix: "spec.template.spec.serviceAccountName: <app name> (and create that ServiceAccount)",
    needs: &[Need::CandidateServiceAccount],
    check: |review, ctx, out| {
        let Some(t) = PodTemplate::written(review) else { return };
        let set = t.service_account();
        if set.is_some_and(|(_, sa)| sa != "default") {
            return;
        }
        let field = set.map_or("serviceAccountName", |(f, _)| f);
        let path = t.path(&format!("spec.{field}"));
        let sa_path = t.path("spec.serviceAccountName");
        let what = match set {
            None => "no serviceAccountName is set, so the pods run as the \"default\" ServiceAccount".to_owned(),
            Some(_) if t.is_pod() => "the pod runs as the \"default\" ServiceAccount (the API server fills it in when the manifest names none)".to_owned(),
            Some((f, _)) => format!("{f} is \"default\""),
        };
        let message = format!(
            "{what}; its identity {} is shared by every workload without its own account, so AuthorizationPolicy cannot tell them apart",
            default_identity(review, ctx)
        );
        let ns = review.namespace;
        let fix = match t.service_account_candidate() {
            Some((label, name)) => match ctx.cluster.service_account(ns, name) {
                Lookup::Found(()) => format!(
                    "set {sa_path}: {name} (ServiceAccount {ns}/{name} exists)"
                ),
                Lookup::Missing => format!(
                    "create ServiceAccount {name:?} in namespace {ns:?} (kubectl -n {ns} create serviceaccount {name}) and set {sa_path}: {name}; the name comes from the {label} label"
                ),
                Lookup::Unknown => format!(
                    "create ServiceAccount {name:?} in namespace {ns:?} if it does not exist (kubectl -n {ns} create serviceaccount {name}) and set {sa_path}: {name}"
                ),
            },
            None => format!(
                "create a ServiceAccount for this workload and set {sa_path} to its name (with an app.kubernetes.io/name or app label, meshguard names the account for you)"
            ),
        };
        out.push(Violation::new(path, message, fix));
    },
};

pub static INJECTION_DISABLED: Rule = Rule {
    id: "wl-injection-disabled",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "sidecar.istio.io/inject: \"false\" as pod-template label or annotation (the label wins over the annotation), or the label istio.io/dataplane-mode: none in an ambient namespace",
    example_fix: "remove sidecar.istio.io/inject, or set it to \"true\"",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = PodTemplate::written(review) else { return };
        let facts = pod_injection(review, ctx, &t);
        let (ns, plane) = (&facts.ns, facts.plane);
        if plane == Plane::Ambient {
            return; // ztunnel captures the pod: it is in the mesh without a sidecar
        }
        if let (Lookup::Found(labels), Some("none"), Plane::Outside) =
            (ns, t.label(DATAPLANE_MODE), plane)
        {
            if is_ambient(labels) {
                out.push(Violation::new(
                    t.label_path(DATAPLANE_MODE),
                    format!(
                        "{DATAPLANE_MODE}: \"none\" takes this pod out of the ambient mesh of namespace {:?}: ztunnel does not capture it, so its traffic skips mTLS and AuthorizationPolicy",
                        review.namespace
                    ),
                    format!("remove the pod label {DATAPLANE_MODE} (the namespace enrolls the pod in ambient mode)"),
                ));
            }
        }
        let Some((path, value)) = t.inject_setting() else { return };
        if !crate::pod_template::value_disables(value) {
            return; // no reading of an "on" or empty value keeps the sidecar out
        }
        let revision = deciding_revision(review, ctx, &t, ns);
        if !setting_disables(ctx, revision.as_deref(), value) {
            return; // this mesh's injectors ignore the value (Istio 1.27+: only "true"/"false")
        }
        let from_annotation = t.label(INJECT).is_none();
        let mut message = format!(
            "{INJECT}: {value:?} keeps the Istio sidecar out of this pod, so its traffic skips mTLS and AuthorizationPolicy"
        );
        if from_annotation {
            message.push_str(" (the deprecated annotation counts because no label of the same name is set)");
        }
        let fix = if from_annotation {
            format!("remove the annotation {INJECT} (to opt in explicitly, use the label {INJECT}: \"true\")")
        } else {
            format!("remove the label {INJECT}, or set it to \"true\"")
        };
        out.push(Violation::new(path, message, fix));
    },
};

pub static NAMESPACE_NOT_INJECTED: Rule = Rule {
    id: "wl-namespace-not-injected",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "the pod will not get a sidecar: no injector selects it (its namespace is not labeled for injection, or no injector serves the label) or the injector's configuration keeps it out, and it does not opt in",
    example_fix: "kubectl label namespace <ns> istio-injection=enabled",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = PodTemplate::written(review) else { return };
        if t.host_network() {
            return; // never injected; wl-host-network reports it
        }
        if t.has_proxy() {
            return; // injected already (istioctl kube-inject): it carries its sidecar
        }
        let ns = review.namespace;
        let labels_path = t.path("metadata.labels");
        let facts = pod_injection(review, ctx, &t);
        if facts.plane == Plane::Ambient {
            return; // enrolled in ambient mode: ztunnel captures it without a sidecar
        }
        match (&facts.ns, facts.decision) {
            (_, Some((true, _))) => {}
            // wl-injection-disabled reports the pod's own opt-out.
            (_, Some((false, Why::PodSetting | Why::HostNetwork))) => {}
            (Lookup::Found(labels), Some((false, why))) => {
                let (key, value) = suggested_label_for(ctx, ns, Some(labels));
                let pod_opt_in = format!("add the pod label {INJECT}: \"true\"");
                match why {
                    Why::NamespaceOff => {
                        let v = labels.get(ISTIO_INJECTION).map_or("", String::as_str);
                        out.push(Violation::new(
                            labels_path,
                            format!(
                                "namespace {ns:?} has istio-injection={v}, which keeps the sidecar out of every pod in it, even pods that opt in"
                            ),
                            format!("set the namespace label istio-injection: enabled (kubectl label namespace {ns} istio-injection=enabled --overwrite)"),
                        ));
                    }
                    Why::NotEnrolled => out.push(Violation::new(
                        labels_path,
                        format!(
                            "namespace {ns:?} is not labeled for injection (istio-injection=enabled or istio.io/rev) and this pod does not opt in, so it starts without a sidecar"
                        ),
                        format!(
                            "label the namespace: kubectl label namespace {ns} {key}={value} (or {pod_opt_in})"
                        ),
                    )),
                    Why::NotSelected => {
                        if pod_revision_unknown(ctx, &t, labels) {
                            return; // ns-unknown-revision names the label that points nowhere
                        }
                        out.push(Violation::new(
                            labels_path,
                            format!(
                                "{}, so it starts without a sidecar ({})",
                                decision_text(review, ctx, &t, labels),
                                served_summary(ctx, ns, Some(labels))
                            ),
                            format!(
                                "label the namespace for an injector that exists: {}",
                                relabel_command(ns, labels, key, &value)
                            ),
                        ));
                    }
                    _ => out.push(Violation::new(
                        labels_path,
                        format!(
                            "{}, so it starts without a sidecar",
                            decision_text(review, ctx, &t, labels)
                        ),
                        if why == Why::IgnoredNamespace {
                            format!("run the workload in a namespace the injector serves (kubectl label namespace <ns> {key}={value})")
                        } else {
                            format!("{pod_opt_in} (the pod's own setting comes before the injector's selectors and policy)")
                        },
                    )),
                }
            }
            (Lookup::Missing | Lookup::Unknown, _)
                if t.opts_in() || t.label(DATAPLANE_MODE) == Some("ambient") => {}
            (lookup @ (Lookup::Missing | Lookup::Unknown), _) => unknown_namespace(
                review,
                ctx,
                lookup,
                "whether this pod will get a sidecar",
                out,
            ),
            (Lookup::Found(_), None) => {} // not reached: known labels always decide
        }
    },
};

/// The pod asks for a revision by its own `istio.io/rev` label (in effect: its namespace has no
/// injection label) that no injector serves; `ns-unknown-revision` reports it.
fn pod_revision_unknown(
    ctx: &Ctx<'_>,
    t: &PodTemplate<'_>,
    ns_labels: &BTreeMap<String, String>,
) -> bool {
    !ns_labels.contains_key(ISTIO_INJECTION)
        && !ns_labels.contains_key(REV)
        && t.label(REV)
            .is_some_and(|r| !r.is_empty() && !ctx.mesh.serves(r))
}

pub static MISSING_SIDECAR: Rule = Rule {
    id: "wl-missing-sidecar",
    kinds: &[Kind::Pod],
    default_action: Action::Deny,
    summary: "a Pod CREATE that should have been injected has no istio-proxy container or native-sidecar init container: the injector failed open",
    example_fix: "make sure istiod's injector webhook is running, then recreate the pod",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        if !matches!(review.operation, Operation::Create) {
            return;
        }
        let Some(t) = PodTemplate::written(review) else { return };
        if t.host_network() || t.has_proxy() {
            return;
        }
        let ns = review.namespace;
        let facts = pod_injection(review, ctx, &t);
        let why = match (&facts.ns, facts.decision) {
            (Lookup::Found(labels), Some((true, why))) => match why {
                Why::NamespaceLabel => format!("namespace {ns:?} is labeled for injection"),
                Why::PodOptIn => "the pod opts in to injection".to_owned(),
                _ => decision_text(review, ctx, &t, labels),
            },
            (Lookup::Found(_), _) => return,
            (Lookup::Missing | Lookup::Unknown, _) if t.injection_disabled() => return,
            (Lookup::Missing | Lookup::Unknown, _) if t.opts_in() => {
                "the pod opts in to injection".to_owned()
            }
            (lookup @ (Lookup::Missing | Lookup::Unknown), _) => {
                unknown_namespace(
                    review,
                    ctx,
                    lookup,
                    "whether this pod should carry a sidecar",
                    out,
                );
                return;
            }
        };
        out.push(Violation::new(
            "spec.containers",
            format!(
                "{why}, but the pod has no {PROXY_CONTAINER} container (nor a native-sidecar init container): the sidecar injector failed open or was bypassed, so this pod would run outside the mesh"
            ),
            "check that istiod's sidecar injector webhook is running and reachable (kubectl get mutatingwebhookconfigurations), then recreate the pod",
        ));
    },
};

pub static PROXY_IMAGE_AUTO: Rule = Rule {
    id: "wl-proxy-image-auto",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "an istio-proxy container (or init container) with image: auto that no injector will replace: on a Pod CREATE no injector ran (IST0147), on a workload template no injector selects its pods (IST0146); such pods cannot start",
    example_fix: "label the namespace for an injector that exists (istio-injection=enabled or istio.io/rev=<revision>), then recreate the pod",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = PodTemplate::written(review) else { return };
        let auto: Vec<Container<'_>> = t
            .containers()
            .filter(|c| {
                c.name() == PROXY_CONTAINER
                    && c.value.get("image").and_then(Value::as_str) == Some("auto")
            })
            .collect();
        if auto.is_empty() {
            return;
        }
        let ns_labels = match namespace_labels(review, ctx) {
            Lookup::Found(labels) => Some(labels),
            // A namespace that does not exist has no labels (as `istioctl analyze` reads it).
            Lookup::Missing => Some(BTreeMap::new()),
            Lookup::Unknown => None,
        };
        let template = review.kind != Kind::Pod;
        let why = if template {
            // The injector replaces the placeholder when the template's pods are created: fine
            // when one will select them (the gateway injection template's normal form).
            let Some(labels) = &ns_labels else { return };
            let (pl, pa) = (t.label_view(), t.annotation_view());
            let decision = ctx
                .mesh
                .injection(review.namespace, labels, &pl, &pa, t.host_network());
            if decision.inject {
                return;
            }
            format!(
                "no injector will replace it when the pods are created ({decision}), so they cannot start (there is no image \"auto\") and would not be in the mesh if they did"
            )
        } else {
            if !matches!(review.operation, Operation::Create) {
                return;
            }
            "no injector ran on this pod, so it cannot start (there is no image \"auto\") and would not be in the mesh if it did".to_owned()
        };
        let (key, value) = suggested_label_for(ctx, review.namespace, ns_labels.as_ref());
        for c in auto {
            out.push(Violation::new(
                t.path(&format!("spec.{}[{}].image", c.list, c.index)),
                format!(
                    "container \"{PROXY_CONTAINER}\" still has image \"auto\", the placeholder Istio's sidecar injector replaces: {why}"
                ),
                if template {
                    format!(
                        "make sure an injector selects the pods (kubectl label namespace {} {key}={value}, or the pod template label sidecar.istio.io/inject: \"true\") and istiod is running; or remove the {PROXY_CONTAINER} container",
                        review.namespace
                    )
                } else {
                    format!(
                        "make sure an injector selects the pod (kubectl label namespace {} {key}={value}) and istiod is running, then recreate it; or remove the {PROXY_CONTAINER} container",
                        review.namespace
                    )
                },
            ));
        }
    },
};

/// How a bypass annotation's value opens a hole.
#[derive(Clone, Copy)]
enum Bypass {
    /// Any non-empty value excludes something.
    NonEmpty,
    /// Anything but `*` narrows what is intercepted (the default is `*`).
    NotStar,
    /// The value `NONE` turns interception off.
    None,
}

/// Pod annotations that route traffic around the proxy, and what each one does.
const BYPASS_ANNOTATIONS: &[(&str, Bypass, &str)] = &[
    ("traffic.sidecar.istio.io/excludeInboundPorts", Bypass::NonEmpty,
        "connections to these ports reach the application directly, without mTLS or AuthorizationPolicy"),
    ("traffic.sidecar.istio.io/includeInboundPorts", Bypass::NotStar,
        "only the listed inbound ports are intercepted; connections to any other port reach the application without mTLS or AuthorizationPolicy"),
    ("traffic.sidecar.istio.io/excludeOutboundPorts", Bypass::NonEmpty,
        "outbound connections to these ports leave without the proxy, in plaintext and unauthenticated"),
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", Bypass::NonEmpty,
        "outbound traffic to these ranges leaves without the proxy, in plaintext and unauthenticated"),
    ("traffic.sidecar.istio.io/includeOutboundIPRanges", Bypass::NotStar,
        "only the listed outbound ranges are intercepted; traffic to anything else leaves without the proxy"),
    ("traffic.sidecar.istio.io/excludeInterfaces", Bypass::NonEmpty,
        "traffic on these network interfaces is not intercepted by the proxy"),
    ("sidecar.istio.io/interceptionMode", Bypass::None,
        "interception mode NONE installs no traffic redirection, so the proxy sees only what the application sends to it on purpose"),
];

pub static TRAFFIC_BYPASS: Rule = Rule {
    id: "wl-traffic-bypass",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "traffic.sidecar.istio.io/* exclude/include annotations or interceptionMode NONE (the annotation, or in proxy.istio.io/config) that route traffic around the proxy; ambient.istio.io/bypass-inbound-capture on ambient pods",
    example_fix: "remove the traffic.sidecar.istio.io/exclude* annotation",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = PodTemplate::written(review) else { return };
        let plane = pod_injection(review, ctx, &t).plane;
        if matches!(plane, Plane::Ambient | Plane::Unknown) {
            if let Some(value) = t.annotation(BYPASS_INBOUND_CAPTURE) {
                if go_bool(value) {
                    out.push(Violation::new(
                        t.annotation_path(BYPASS_INBOUND_CAPTURE),
                        format!("{BYPASS_INBOUND_CAPTURE}: {value:?}: ztunnel does not capture inbound traffic to this pod, so connections reach the application directly, in plaintext and without AuthorizationPolicy"),
                        "remove the annotation; if this pod really only serves clients outside the mesh, exempt it from wl-traffic-bypass in the meshguard policy",
                    ));
                }
            }
        }
        if plane == Plane::Ambient {
            return; // the sidecar annotations do nothing without a sidecar
        }
        for (key, how, what) in BYPASS_ANNOTATIONS {
            let Some(value) = t.annotation(key) else { continue };
            let v = value.trim();
            let hole = match how {
                Bypass::NonEmpty => !v.is_empty(),
                Bypass::NotStar => v != "*",
                Bypass::None => v.eq_ignore_ascii_case("NONE"),
            };
            if !hole {
                continue;
            }
            out.push(Violation::new(
                t.annotation_path(key),
                format!("{key}: {value:?}: {what}"),
                "remove the annotation; if this traffic really must skip the mesh, exempt the workload from wl-traffic-bypass in the meshguard policy",
            ));
        }
        // The same setting through the pod's ProxyConfig; the annotation above wins over it.
        if t.annotation(INTERCEPTION_MODE).is_none() {
            if let Some(mode) = proxy_config_interception(&t).filter(|m| m.eq_ignore_ascii_case("NONE")) {
                out.push(Violation::new(
                    t.annotation_path(PROXY_CONFIG),
                    format!("{PROXY_CONFIG} sets interceptionMode: {mode}: the injector then installs no traffic redirection (no istio-init), so the proxy sees only what the application sends to it on purpose and connections reach the application directly, without mTLS or AuthorizationPolicy"),
                    "remove interceptionMode from proxy.istio.io/config (the mesh default is REDIRECT); if this pod really must skip the mesh, exempt it from wl-traffic-bypass in the meshguard policy",
                ));
            }
        }
    },
};

/// For a hostNetwork pod: whether it would be in the mesh but for hostNetwork (its namespace's
/// injector decision injects it, or ambient mode captures it), as far as the namespace's labels
/// are known.
fn meshed_but_for_host_network(
    review: &Review<'_>,
    ctx: &Ctx<'_>,
    t: &PodTemplate<'_>,
) -> Lookup<bool> {
    match namespace_labels(review, ctx) {
        Lookup::Found(labels) => {
            let (pl, pa) = (t.label_view(), t.annotation_view());
            let sidecar = ctx
                .mesh
                .injection(review.namespace, &labels, &pl, &pa, false)
                .inject;
            let ambient = match t.label(DATAPLANE_MODE) {
                Some("ambient") => true,
                Some("none") => false,
                _ => is_ambient(&labels),
            };
            Lookup::Found(sidecar || ambient)
        }
        Lookup::Missing => Lookup::Missing,
        Lookup::Unknown => Lookup::Unknown,
    }
}

pub static HOST_NETWORK: Rule = Rule {
    id: "wl-host-network",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "hostNetwork pods are never injected and their traffic bypasses the sidecar (outside the mesh's namespaces; inside them wl-host-network-in-mesh denies)",
    example_fix: "remove spec.template.spec.hostNetwork",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = PodTemplate::written(review) else {
            return;
        };
        if !t.host_network() {
            return;
        }
        if meshed_but_for_host_network(review, ctx, &t) == Lookup::Found(true) {
            return; // wl-host-network-in-mesh
        }
        out.push(Violation::new(
            t.path("spec.hostNetwork"),
            "hostNetwork pods share the node's network and are never injected: their traffic bypasses the sidecar, mTLS and AuthorizationPolicy",
            "remove hostNetwork: true; if this is a node agent that must stay outside the mesh, exempt it from wl-host-network in the meshguard policy",
        ));
    },
};

pub static HOST_NETWORK_IN_MESH: Rule = Rule {
    id: "wl-host-network-in-mesh",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "hostNetwork in a namespace the mesh enrolls (sidecar injection or ambient): the pod is never injected nor captured, so it runs outside the mesh beside workloads that are in it",
    example_fix: "remove spec.template.spec.hostNetwork (or run the node agent in a namespace outside the mesh)",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = PodTemplate::written(review) else {
            return;
        };
        if !t.host_network() {
            return;
        }
        let ns = review.namespace;
        match meshed_but_for_host_network(review, ctx, &t) {
            Lookup::Found(true) => out.push(Violation::new(
                t.path("spec.hostNetwork"),
                format!("namespace {ns:?} is in the mesh, but hostNetwork pods share the node's network and are never injected nor captured by ztunnel: this pod's traffic bypasses mTLS and AuthorizationPolicy, and it can reach and serve the node's ports"),
                format!("remove hostNetwork: true; a node agent that must use the host network belongs in a namespace outside the mesh (or exempt it from wl-host-network-in-mesh for namespace {ns} in the meshguard policy)"),
            )),
            Lookup::Found(false) => {} // wl-host-network warns
            Lookup::Missing => unknown_namespace(
                review,
                ctx,
                &Lookup::Missing,
                "whether this hostNetwork pod takes a workload out of the mesh",
                out,
            ),
            Lookup::Unknown => unknown_namespace(
                review,
                ctx,
                &Lookup::Unknown,
                "whether this hostNetwork pod takes a workload out of the mesh",
                out,
            ),
        }
    },
};

/// `sidecar.istio.io/proxyImage`: an image the injection templates use verbatim for
/// `istio-proxy` and `istio-init` when it contains a `/` (`injection-template.yaml`).
const PROXY_IMAGE_ANNOTATION: &str = "sidecar.istio.io/proxyImage";

pub static PROXY_IMAGE: Rule = Rule {
    id: "wl-proxy-image",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "an istio-proxy, istio-init or istio-validation container, or sidecar.istio.io/proxyImage, with an image that is not Istio's proxy (the injector's, or .../proxyv2 when it is not known), or a Pod UPDATE that swaps such a container's image: the pod looks injected while nothing enforces mTLS or policy",
    example_fix: "remove the istio-proxy container's image (or set image: auto) and let the injector choose it",
    needs: &[],
    check: |review, ctx, out| {
        let Some(t) = PodTemplate::written(review) else { return };
        let mirror_fix = "remove the image (or set image: auto) and let the injector choose it; if you mirror the proxy, set global.hub in the injector's values (meshguard reads them) or exempt those workloads from wl-proxy-image in the meshguard policy";
        if let Some(image) = t.annotation(PROXY_IMAGE_ANNOTATION) {
            if image.contains('/') && !proxy_image_accepted(ctx.mesh, image) {
                out.push(Violation::new(
                    t.annotation_path(PROXY_IMAGE_ANNOTATION),
                    format!(
                        "{PROXY_IMAGE_ANNOTATION}: {image:?} is not Istio's proxy image: the injector runs it as {PROXY_CONTAINER} and {INIT_CONTAINER}, so it replaces Envoy and the iptables setup, and the pod looks injected while nothing enforces mTLS or AuthorizationPolicy"
                    ),
                    "remove the annotation and let the injector choose the image",
                ));
            }
        }
        let old = match (review.operation, review.old_object) {
            (Operation::Update, Some(old)) if t.is_pod() => PodTemplate::of(review.kind, old),
            _ => None,
        };
        for c in t.containers() {
            if role(&c) == Role::App {
                continue;
            }
            let Some(image) = c.image() else {
                continue; // the injector fills it in
            };
            let path = t.path(&c.rest("image"));
            if !proxy_image_accepted(ctx.mesh, image) {
                out.push(Violation::new(
                    path,
                    format!(
                        "container {:?} runs {image:?}, not Istio's proxy image: the injector merges a container of this name over its own, so this image replaces {}, and the pod looks injected while nothing enforces mTLS or AuthorizationPolicy",
                        c.name(),
                        if role(&c) == Role::Proxy { "Envoy" } else { "the iptables setup" }
                    ),
                    mirror_fix,
                ));
                continue;
            }
            // A running pod's Istio container swapped for another image (Pod images are the
            // one container field an UPDATE may change): only to the injector's current image.
            let before = old.as_ref().and_then(|o| {
                o.containers()
                    .find(|b| b.list == c.list && b.name() == c.name())
                    .and_then(|b| b.image())
            });
            let Some(before) = before.filter(|b| *b != image) else { continue };
            let annotations = t.annotation_view();
            let current = ctx
                .mesh
                .injectors()
                .iter()
                .filter_map(|i| i.proxy_image_for(&annotations))
                .any(|i| i == image);
            if !current {
                out.push(Violation::new(
                    path,
                    format!(
                        "this update swaps container {:?} of a running pod from {before:?} to {image:?}: the kubelet restarts it with the new image in place of the one Istio's injector chose, and the pod keeps looking injected",
                        c.name()
                    ),
                    "recreate the pod (kubectl rollout restart for its workload) so the injector chooses the proxy image",
                ));
            }
        }
    },
};

/// `securityContext.<field>` of a pod spec or a container, as a number.
fn security_id(v: &Value, field: &str) -> Option<i64> {
    v.get("securityContext")?.get(field)?.as_i64()
}

pub static PROXY_UID_RULE: Rule = Rule {
    id: "wl-proxy-uid",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "an application container (ephemeral ones included) runs as UID 1337 or GID 1337, the sidecar's, whose traffic iptables lets skip the proxy (IST0144)",
    example_fix: "securityContext.runAsUser: 1000",
    needs: &[],
    check: |review, ctx, out| {
        let Some(t) = PodTemplate::written(review) else { return };
        let istios = istio_containers(ctx, &t);
        for (field, id, what) in [
            ("runAsUser", PROXY_UID, "UID"),
            ("runAsGroup", PROXY_GID, "GID"),
        ] {
            let pod_id = security_id(t.spec, field);
            let mut inheriting = Vec::new();
            for (c, istios) in t.containers().zip(istios) {
                if *istios {
                    continue; // the proxy (and istio-validation) run as 1337 on purpose
                }
                match security_id(c.value, field) {
                    Some(v) if v == id => out.push(Violation::new(
                        t.path(&c.rest(&format!("securityContext.{field}"))),
                        format!(
                            "container {:?} runs as {what} {id}, the sidecar's own {what}: iptables lets traffic of that {what} skip the proxy, so the container bypasses mTLS and policy (Istio IST0144)",
                            c.name()
                        ),
                        format!("run it as another {what}, e.g. securityContext.{field}: 1000"),
                    )),
                    Some(_) => {}
                    None if pod_id == Some(id) => inheriting.push(format!("{:?}", c.name())),
                    None => {}
                }
            }
            if !inheriting.is_empty() {
                out.push(Violation::new(
                    t.path(&format!("spec.securityContext.{field}")),
                    format!(
                        "the pod runs as {what} {id}, the sidecar's own {what}, and container(s) {} inherit it: iptables lets traffic of that {what} skip the proxy, so they bypass mTLS and policy (Istio IST0144)",
                        inheriting.join(", ")
                    ),
                    format!("run the pod as another {what}, e.g. securityContext.{field}: 1000 (the injected istio-proxy sets its own)"),
                ));
            }
        }
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::context::{ClusterView, NoCluster};
    use crate::inventory::Inventory;
    use crate::rules::testing::obj;
    use kube::core::DynamicObject;
    use serde_json::json;

    /// A workload of `kind` whose pod template has `meta` (labels, annotations) and `spec`.
    fn workload(kind: Kind, meta: Value, spec: Value) -> DynamicObject {
        let template = json!({"metadata": meta, "spec": spec});
        let labels = meta.get("labels").cloned().unwrap_or(json!({}));
        let annotations = meta.get("annotations").cloned().unwrap_or(json!({}));
        obj(match kind {
            Kind::Pod => json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "w", "namespace": "prod", "labels": labels, "annotations": annotations},
                "spec": spec}),
            Kind::CronJob => json!({"apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": "w", "namespace": "prod"},
                "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}),
            Kind::Job => json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "w", "namespace": "prod"}, "spec": {"template": template}}),
            Kind::ReplicationController => {
                json!({"apiVersion": "v1", "kind": "ReplicationController",
                "metadata": {"name": "w", "namespace": "prod"}, "spec": {"template": template}})
            }
            _ => json!({"apiVersion": "apps/v1", "kind": kind.as_str(),
                "metadata": {"name": "w", "namespace": "prod"}, "spec": {"template": template}}),
        })
    }

    fn prefix(kind: Kind) -> &'static str {
        match kind {
            Kind::Pod => "",
            Kind::CronJob => "spec.jobTemplate.spec.template.",
            _ => "spec.template.",
        }
    }

    fn check(
        rule: &Rule,
        kind: Kind,
        op: Operation,
        o: &DynamicObject,
        cluster: &dyn ClusterView,
        policy: &Policy,
    ) -> Vec<Violation> {
        let is_delete = matches!(op, Operation::Delete);
        let review = Review {
            kind,
            version: "v1",
            operation: &op,
            namespace: "prod",
            name: "w",
            object: (!is_delete).then_some(o),
            old_object: is_delete.then_some(o),
            dry_run: false,
            created_for: None,
        };
        let ctx = Ctx {
            policy,
            mesh: &crate::mesh::MeshContext::default(),
            cluster,
            cache: &crate::rules::ReviewCache::default(),
        };
        let mut out = Vec::new();
        (rule.check)(&review, &ctx, &mut out);
        out
    }

    fn run(
        rule: &Rule,
        kind: Kind,
        op: Operation,
        o: &DynamicObject,
        cluster: &dyn ClusterView,
    ) -> Vec<Violation> {
        check(rule, kind, op, o, cluster, &Policy::default())
    }

    /// A rule over a CREATE in namespace prod, with a mesh context.
    fn in_mesh(
        rule: &Rule,
        kind: Kind,
        o: &DynamicObject,
        cluster: &dyn ClusterView,
        mesh: &crate::mesh::MeshContext,
    ) -> Vec<Violation> {
        in_mesh_ns(rule, kind, "prod", o, cluster, mesh)
    }

    fn in_mesh_ns(
        rule: &Rule,
        kind: Kind,
        ns: &str,
        o: &DynamicObject,
        cluster: &dyn ClusterView,
        mesh: &crate::mesh::MeshContext,
    ) -> Vec<Violation> {
        let review = Review::create(kind, "v1", ns, "w", o);
        let ctx = Ctx {
            policy: &Policy::default(),
            mesh,
            cluster,
            cache: &crate::rules::ReviewCache::default(),
        };
        let mut out = Vec::new();
        (rule.check)(&review, &ctx, &mut out);
        out
    }

    fn ns_with(labels: &[(&str, &str)]) -> Inventory {
        Inventory::complete(Vec::new()).with_namespace("prod", labels)
    }

    fn enabled_ns() -> Inventory {
        Inventory::complete(Vec::new()).with_namespace("prod", &[("istio-injection", "enabled")])
    }

    const OPS: [Operation; 2] = [Operation::Create, Operation::Update];

    fn app() -> Value {
        json!({"containers": [{"name": "app", "image": "nginx"}]})
    }

    // ---- wl-default-service-account

    #[test]
    fn default_service_account_denied_for_every_kind() {
        let cluster = enabled_ns().with_service_account("prod", "web");
        for kind in Kind::WORKLOADS.iter().copied() {
            for op in OPS {
                // absent
                let o = workload(kind, json!({"labels": {"app": "web"}}), app());
                let found = run(&DEFAULT_SERVICE_ACCOUNT, kind, op.clone(), &o, &cluster);
                assert_eq!(found.len(), 1, "{kind}");
                let p = prefix(kind);
                assert_eq!(found[0].path, format!("{p}spec.serviceAccountName"));
                assert!(
                    found[0]
                        .message
                        .contains("cluster.local/ns/prod/sa/default is shared"),
                    "{}",
                    found[0].message
                );
                assert_eq!(
                    found[0].fix,
                    format!("set {p}spec.serviceAccountName: web (ServiceAccount prod/web exists)")
                );
                // explicit default, and the deprecated field
                for field in ["serviceAccountName", "serviceAccount"] {
                    let mut spec = app();
                    spec[field] = json!("default");
                    let o = workload(kind, json!({"labels": {"app": "web"}}), spec);
                    let found = run(&DEFAULT_SERVICE_ACCOUNT, kind, op.clone(), &o, &cluster);
                    assert_eq!(found.len(), 1, "{kind} {field}");
                    assert_eq!(found[0].path, format!("{p}spec.{field}"));
                }
            }
        }
    }

    #[test]
    fn default_service_account_fix_says_what_to_create() {
        let kind = Kind::Deployment;
        let o = workload(
            kind,
            json!({"labels": {"app.kubernetes.io/name": "checkout", "app": "shop"}}),
            app(),
        );
        let found = run(
            &DEFAULT_SERVICE_ACCOUNT,
            kind,
            Operation::Create,
            &o,
            &enabled_ns(),
        );
        assert_eq!(
            found[0].fix,
            "create ServiceAccount \"checkout\" in namespace \"prod\" (kubectl -n prod create serviceaccount checkout) and set spec.template.spec.serviceAccountName: checkout; the name comes from the app.kubernetes.io/name label"
        );
        let found = run(
            &DEFAULT_SERVICE_ACCOUNT,
            kind,
            Operation::Create,
            &o,
            &NoCluster,
        );
        assert!(
            found[0].fix.starts_with(
                "create ServiceAccount \"checkout\" in namespace \"prod\" if it does not exist"
            ),
            "{}",
            found[0].fix
        );
        // No usable label: a generic fix.
        let o = workload(kind, json!({"labels": {"app": "Not_A_Name"}}), app());
        let found = run(
            &DEFAULT_SERVICE_ACCOUNT,
            kind,
            Operation::Create,
            &o,
            &NoCluster,
        );
        assert!(found[0].fix.starts_with("create a ServiceAccount for this workload and set spec.template.spec.serviceAccountName"), "{}", found[0].fix);
    }

    #[test]
    fn own_service_account_allowed() {
        for kind in Kind::WORKLOADS.iter().copied() {
            for op in OPS {
                for field in ["serviceAccountName", "serviceAccount"] {
                    let mut spec = app();
                    spec[field] = json!("web");
                    let o = workload(kind, json!({"labels": {"app": "web"}}), spec);
                    assert!(
                        run(&DEFAULT_SERVICE_ACCOUNT, kind, op.clone(), &o, &NoCluster).is_empty(),
                        "{kind}"
                    );
                }
            }
            let o = workload(kind, json!({}), app());
            assert!(run(
                &DEFAULT_SERVICE_ACCOUNT,
                kind,
                Operation::Delete,
                &o,
                &NoCluster
            )
            .is_empty());
        }
    }

    // ---- wl-injection-disabled

    #[test]
    fn injection_disabled_by_label_or_annotation() {
        for kind in Kind::WORKLOADS.iter().copied() {
            for op in OPS {
                let p = prefix(kind);
                let o = workload(
                    kind,
                    json!({"labels": {"sidecar.istio.io/inject": "false"}}),
                    app(),
                );
                let found = run(&INJECTION_DISABLED, kind, op.clone(), &o, &NoCluster);
                assert_eq!(found.len(), 1, "{kind}");
                assert_eq!(
                    found[0].path,
                    format!("{p}metadata.labels[\"sidecar.istio.io/inject\"]")
                );
                assert_eq!(found[0].message, "sidecar.istio.io/inject: \"false\" keeps the Istio sidecar out of this pod, so its traffic skips mTLS and AuthorizationPolicy");
                assert_eq!(
                    found[0].fix,
                    "remove the label sidecar.istio.io/inject, or set it to \"true\""
                );

                let o = workload(
                    kind,
                    json!({"annotations": {"sidecar.istio.io/inject": "false"}}),
                    app(),
                );
                let found = run(&INJECTION_DISABLED, kind, op.clone(), &o, &NoCluster);
                assert_eq!(found.len(), 1, "{kind}");
                assert_eq!(
                    found[0].path,
                    format!("{p}metadata.annotations[\"sidecar.istio.io/inject\"]")
                );
                assert!(found[0].message.ends_with(
                    "(the deprecated annotation counts because no label of the same name is set)"
                ));
            }
        }
    }

    #[test]
    fn injection_label_wins_over_annotation() {
        for kind in Kind::WORKLOADS.iter().copied() {
            let o = workload(
                kind,
                json!({"labels": {"sidecar.istio.io/inject": "true"},
                "annotations": {"sidecar.istio.io/inject": "false"}}),
                app(),
            );
            assert!(run(&INJECTION_DISABLED, kind, Operation::Create, &o, &NoCluster).is_empty());
            let o = workload(
                kind,
                json!({"labels": {"sidecar.istio.io/inject": "false"},
                "annotations": {"sidecar.istio.io/inject": "true"}}),
                app(),
            );
            let found = run(&INJECTION_DISABLED, kind, Operation::Update, &o, &NoCluster);
            assert!(found[0].path.contains("labels"));
            let o = workload(kind, json!({"labels": {"app": "a"}}), app());
            assert!(run(&INJECTION_DISABLED, kind, Operation::Create, &o, &NoCluster).is_empty());
        }
    }

    // ---- wl-namespace-not-injected

    #[test]
    fn namespace_not_injected() {
        let bare = Inventory::complete(Vec::new()).with_namespace("prod", &[("team", "a")]);
        let disabled = Inventory::complete(Vec::new())
            .with_namespace("prod", &[("istio-injection", "disabled")]);
        let ambient = Inventory::complete(Vec::new())
            .with_namespace("prod", &[("istio.io/dataplane-mode", "ambient")]);
        let rev =
            Inventory::complete(Vec::new()).with_namespace("prod", &[("istio.io/rev", "canary")]);
        for kind in Kind::WORKLOADS.iter().copied() {
            for op in OPS {
                let p = prefix(kind);
                let o = workload(kind, json!({"labels": {"app": "a"}}), app());
                let found = run(&NAMESPACE_NOT_INJECTED, kind, op.clone(), &o, &bare);
                assert_eq!(found.len(), 1, "{kind}");
                assert_eq!(found[0].path, format!("{p}metadata.labels"));
                assert_eq!(found[0].message, "namespace \"prod\" is not labeled for injection (istio-injection=enabled or istio.io/rev) and this pod does not opt in, so it starts without a sidecar");
                assert_eq!(found[0].fix, "label the namespace: kubectl label namespace prod istio-injection=enabled (or add the pod label sidecar.istio.io/inject: \"true\")");
                let found = run(&NAMESPACE_NOT_INJECTED, kind, op.clone(), &o, &disabled);
                assert!(found[0].message.contains(
                    "istio-injection=disabled, which keeps the sidecar out of every pod"
                ));
                for ok in [&enabled_ns(), &ambient, &rev] {
                    assert!(run(&NAMESPACE_NOT_INJECTED, kind, op.clone(), &o, ok).is_empty());
                }
                // The pod opts in itself.
                for labels in [
                    json!({"sidecar.istio.io/inject": "true"}),
                    json!({"istio.io/rev": "canary"}),
                ] {
                    let o = workload(kind, json!({"labels": labels}), app());
                    assert!(run(&NAMESPACE_NOT_INJECTED, kind, op.clone(), &o, &bare).is_empty());
                    // ... but istio-injection=disabled on the namespace still wins.
                    assert_eq!(
                        run(&NAMESPACE_NOT_INJECTED, kind, op.clone(), &o, &disabled).len(),
                        1
                    );
                }
                // hostNetwork pods are never injected: wl-host-network reports them.
                let o = workload(
                    kind,
                    json!({}),
                    json!({"hostNetwork": true, "containers": []}),
                );
                assert!(run(&NAMESPACE_NOT_INJECTED, kind, op.clone(), &o, &bare).is_empty());
            }
        }
    }

    #[test]
    fn namespace_unknown_follows_on_lookup_failure() {
        let allow =
            crate::catalogue::policy_from_yaml("onLookupFailure: allow\n", "t").expect("policy");
        for kind in [Kind::Pod, Kind::Deployment, Kind::CronJob] {
            let o = workload(kind, json!({"labels": {"app": "a"}}), app());
            let found = run(
                &NAMESPACE_NOT_INJECTED,
                kind,
                Operation::Create,
                &o,
                &NoCluster,
            );
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].path, "metadata.namespace");
            assert!(
                found[0].message.starts_with(
                    "namespace labels unknown: meshguard could not read namespace \"prod\""
                ),
                "{}",
                found[0].message
            );
            assert!(found[0]
                .message
                .ends_with("so meshguard cannot tell whether this pod will get a sidecar"));
            // Not found at all (`check` without the namespace in its input).
            let missing = Inventory::complete(Vec::new());
            let found = run(
                &NAMESPACE_NOT_INJECTED,
                kind,
                Operation::Create,
                &o,
                &missing,
            );
            assert!(
                found[0]
                    .message
                    .starts_with("namespace labels unknown: namespace \"prod\" was not found"),
                "{}",
                found[0].message
            );
            assert!(found[0].fix.starts_with("create the namespace first"));
            assert!(check(
                &NAMESPACE_NOT_INJECTED,
                kind,
                Operation::Create,
                &o,
                &NoCluster,
                &allow
            )
            .is_empty());
            // A pod that opts in does not need the namespace.
            let o = workload(
                kind,
                json!({"labels": {"sidecar.istio.io/inject": "true"}}),
                app(),
            );
            assert!(run(
                &NAMESPACE_NOT_INJECTED,
                kind,
                Operation::Create,
                &o,
                &NoCluster
            )
            .is_empty());
        }
    }

    // ---- wl-missing-sidecar

    fn pod(labels: Value, spec: Value) -> DynamicObject {
        workload(Kind::Pod, json!({"labels": labels}), spec)
    }

    #[test]
    fn missing_sidecar_on_pod_create() {
        let o = pod(json!({"app": "a"}), app());
        let found = run(
            &MISSING_SIDECAR,
            Kind::Pod,
            Operation::Create,
            &o,
            &enabled_ns(),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.containers");
        assert!(found[0].message.starts_with("namespace \"prod\" is labeled for injection, but the pod has no istio-proxy container (nor a native-sidecar init container)"), "{}", found[0].message);
        assert!(found[0]
            .fix
            .starts_with("check that istiod's sidecar injector webhook is running"));
        // Not on UPDATE: injection only happens at creation.
        assert!(run(
            &MISSING_SIDECAR,
            Kind::Pod,
            Operation::Update,
            &o,
            &enabled_ns()
        )
        .is_empty());
        // A pod that opts in in an unlabeled namespace.
        let bare = Inventory::complete(Vec::new()).with_namespace("prod", &[]);
        let o = pod(json!({"sidecar.istio.io/inject": "true"}), app());
        let found = run(&MISSING_SIDECAR, Kind::Pod, Operation::Create, &o, &bare);
        assert!(found[0]
            .message
            .starts_with("the pod opts in to injection, but"));
        // An init container named istio-proxy without restartPolicy: Always is not a sidecar.
        let o = pod(
            json!({}),
            json!({"containers": [{"name": "app"}], "initContainers": [{"name": "istio-proxy"}]}),
        );
        assert_eq!(
            run(
                &MISSING_SIDECAR,
                Kind::Pod,
                Operation::Create,
                &o,
                &enabled_ns()
            )
            .len(),
            1
        );
    }

    #[test]
    fn injected_or_not_expected_pods_allowed() {
        let sidecar = pod(
            json!({}),
            json!({"containers": [{"name": "app"}, {"name": "istio-proxy"}]}),
        );
        let native = pod(
            json!({}),
            json!({"containers": [{"name": "app"}],
            "initContainers": [{"name": "istio-init"}, {"name": "istio-proxy", "restartPolicy": "Always"}]}),
        );
        for o in [&sidecar, &native] {
            assert!(run(
                &MISSING_SIDECAR,
                Kind::Pod,
                Operation::Create,
                o,
                &enabled_ns()
            )
            .is_empty());
            assert!(run(
                &MISSING_SIDECAR,
                Kind::Pod,
                Operation::Create,
                o,
                &NoCluster
            )
            .is_empty());
        }
        let bare = Inventory::complete(Vec::new()).with_namespace("prod", &[]);
        let ambient = Inventory::complete(Vec::new())
            .with_namespace("prod", &[("istio.io/dataplane-mode", "ambient")]);
        let plain = pod(json!({}), app());
        assert!(run(
            &MISSING_SIDECAR,
            Kind::Pod,
            Operation::Create,
            &plain,
            &bare
        )
        .is_empty());
        assert!(run(
            &MISSING_SIDECAR,
            Kind::Pod,
            Operation::Create,
            &plain,
            &ambient
        )
        .is_empty());
        let host = pod(
            json!({}),
            json!({"hostNetwork": true, "containers": [{"name": "app"}]}),
        );
        assert!(run(
            &MISSING_SIDECAR,
            Kind::Pod,
            Operation::Create,
            &host,
            &enabled_ns()
        )
        .is_empty());
        let off = pod(json!({"sidecar.istio.io/inject": "false"}), app());
        assert!(run(
            &MISSING_SIDECAR,
            Kind::Pod,
            Operation::Create,
            &off,
            &enabled_ns()
        )
        .is_empty());
        // Unknown namespace: onLookupFailure decides.
        let found = run(
            &MISSING_SIDECAR,
            Kind::Pod,
            Operation::Create,
            &plain,
            &NoCluster,
        );
        assert!(found[0].message.starts_with("namespace labels unknown"));
        let allow =
            crate::catalogue::policy_from_yaml("onLookupFailure: allow\n", "t").expect("policy");
        assert!(check(
            &MISSING_SIDECAR,
            Kind::Pod,
            Operation::Create,
            &plain,
            &NoCluster,
            &allow
        )
        .is_empty());
    }

    // ---- wl-proxy-image

    #[test]
    fn proxy_image_must_be_istios() {
        let with_proxy = |list: &str, image: Option<&str>| {
            let mut proxy = json!({"name": "istio-proxy"});
            if let Some(i) = image {
                proxy["image"] = json!(i);
            }
            if list == "initContainers" {
                proxy["restartPolicy"] = json!("Always");
            }
            let mut spec = app();
            spec[list] = match spec.get(list) {
                Some(Value::Array(a)) => {
                    let mut a = a.clone();
                    a.push(proxy);
                    Value::Array(a)
                }
                _ => json!([proxy]),
            };
            spec
        };
        for kind in Kind::WORKLOADS.iter().copied() {
            let p = prefix(kind);
            for image in [
                Some("docker.io/istio/proxyv2:1.24.0"),
                Some("gcr.io/istio-release/proxyv2:1.22.1-distroless"),
                Some("registry.redhat.io/openshift-service-mesh/proxyv2-rhel9@sha256:0f3a"),
                Some("localhost:5000/istio/proxyv2"),
                Some("auto"),
                None,
            ] {
                let o = workload(kind, json!({}), with_proxy("containers", image));
                assert!(
                    run(&PROXY_IMAGE, kind, Operation::Create, &o, &enabled_ns()).is_empty(),
                    "{kind} {image:?}"
                );
            }
            let o = workload(
                kind,
                json!({}),
                with_proxy("containers", Some("busybox:1.36")),
            );
            let found = run(&PROXY_IMAGE, kind, Operation::Create, &o, &enabled_ns());
            assert_eq!(found.len(), 1, "{kind}");
            assert_eq!(found[0].path, format!("{p}spec.containers[1].image"));
            assert!(found[0]
                .message
                .contains("runs \"busybox:1.36\", not Istio's proxy image"));
            // A native sidecar too; a registry port is not mistaken for a tag.
            let o = workload(
                kind,
                json!({}),
                with_proxy("initContainers", Some("localhost:5000/tools/shell:1")),
            );
            let found = run(&PROXY_IMAGE, kind, Operation::Create, &o, &enabled_ns());
            assert_eq!(found[0].path, format!("{p}spec.initContainers[0].image"));
            // Other containers may run anything.
            let o = workload(kind, json!({}), app());
            assert!(run(&PROXY_IMAGE, kind, Operation::Create, &o, &enabled_ns()).is_empty());
        }
    }

    #[test]
    fn proxy_image_is_a_deny_and_covers_the_annotation_and_init_containers() {
        assert_eq!(PROXY_IMAGE.default_action, Action::Deny);
        for kind in Kind::WORKLOADS.iter().copied() {
            let p = prefix(kind);
            // sidecar.istio.io/proxyImage is used verbatim (when it has a "/") for the proxy
            // and istio-init.
            let o = workload(
                kind,
                json!({"annotations": {"sidecar.istio.io/proxyImage": "evil.example/envoy:1"}}),
                app(),
            );
            let found = run(&PROXY_IMAGE, kind, Operation::Create, &o, &enabled_ns());
            assert_eq!(found.len(), 1, "{kind}");
            assert_eq!(
                found[0].path,
                format!("{p}metadata.annotations[\"sidecar.istio.io/proxyImage\"]")
            );
            for fine in ["docker.io/istio/proxyv2:1.22.0", "proxyv2"] {
                let o = workload(
                    kind,
                    json!({"annotations": {"sidecar.istio.io/proxyImage": fine}}),
                    app(),
                );
                assert!(run(&PROXY_IMAGE, kind, Operation::Create, &o, &enabled_ns()).is_empty());
            }
            // istio-init and istio-validation replace the iptables setup.
            let mut spec = app();
            spec["initContainers"] = json!([{"name": "istio-init", "image": "evil/iptables:1"}]);
            let found = run(
                &PROXY_IMAGE,
                kind,
                Operation::Create,
                &workload(kind, json!({}), spec),
                &enabled_ns(),
            );
            assert_eq!(found[0].path, format!("{p}spec.initContainers[0].image"));
            assert!(found[0].message.contains("replaces the iptables setup"));
        }
    }

    #[test]
    fn a_pod_update_may_not_swap_the_proxy_image() {
        let pod_with_image = |image: &str| {
            workload(
                Kind::Pod,
                json!({}),
                json!({"containers": [{"name": "app", "image": "app:1"},
                    {"name": "istio-proxy", "image": image, "args": ["proxy", "sidecar"]}]}),
            )
        };
        let old = pod_with_image("docker.io/istio/proxyv2:1.24.0");
        let review = |new: &DynamicObject, mesh: &crate::mesh::MeshContext| {
            let op = Operation::Update;
            let review = Review {
                kind: Kind::Pod,
                version: "v1",
                operation: &op,
                namespace: "prod",
                name: "w",
                object: Some(new),
                old_object: Some(&old),
                dry_run: false,
                created_for: None,
            };
            let ctx = Ctx {
                policy: &Policy::default(),
                mesh,
                cluster: &NoCluster,
                cache: &crate::rules::ReviewCache::default(),
            };
            let mut out = Vec::new();
            (PROXY_IMAGE.check)(&review, &ctx, &mut out);
            out
        };
        let none = crate::mesh::MeshContext::default();
        // A look-alike name passes the image check but not the swap check.
        let found = review(&pod_with_image("attacker.example/proxyv2:1.24.0"), &none);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "spec.containers[1].image");
        assert!(found[0]
            .message
            .starts_with("this update swaps container \"istio-proxy\" of a running pod"));
        // Unchanged, or the app's own image updated: fine.
        assert!(review(&old, &none).is_empty());
        let mut app_update = old.clone();
        app_update.data["spec"]["containers"][0]["image"] = json!("app:2");
        assert!(review(&app_update, &none).is_empty());
        // To the image the injector gives a new pod now: fine (the mesh as installed tells).
        let mesh = crate::mesh::testing::mesh(&[enabled_injector("default", "1.27.1")]);
        assert!(review(&pod_with_image("docker.io/istio/proxyv2:1.27.1"), &mesh).is_empty());
        assert_eq!(
            review(&pod_with_image("docker.io/istio/proxyv2:1.26.0"), &mesh).len(),
            1
        );
    }

    #[test]
    fn host_network_in_a_meshed_namespace_is_denied() {
        assert_eq!(HOST_NETWORK_IN_MESH.default_action, Action::Deny);
        for kind in Kind::WORKLOADS.iter().copied() {
            let o = workload(
                kind,
                json!({}),
                json!({"hostNetwork": true, "containers": [{"name": "agent"}]}),
            );
            for meshed in [
                enabled_ns(),
                ns_with(&[("istio.io/dataplane-mode", "ambient")]),
            ] {
                let found = run(&HOST_NETWORK_IN_MESH, kind, Operation::Create, &o, &meshed);
                assert_eq!(found.len(), 1, "{kind}");
                assert_eq!(found[0].path, format!("{}spec.hostNetwork", prefix(kind)));
                assert!(found[0]
                    .message
                    .starts_with("namespace \"prod\" is in the mesh"));
                // The warning is left to namespaces outside the mesh.
                assert!(run(&HOST_NETWORK, kind, Operation::Create, &o, &meshed).is_empty());
            }
            let outside = ns_with(&[]);
            assert!(run(&HOST_NETWORK_IN_MESH, kind, Operation::Create, &o, &outside).is_empty());
            assert_eq!(
                run(&HOST_NETWORK, kind, Operation::Create, &o, &outside).len(),
                1
            );
            // A pod that opts in counts as meshed even in an unlabelled namespace.
            let opted = workload(
                kind,
                json!({"labels": {"sidecar.istio.io/inject": "true"}}),
                json!({"hostNetwork": true, "containers": []}),
            );
            assert_eq!(
                run(
                    &HOST_NETWORK_IN_MESH,
                    kind,
                    Operation::Create,
                    &opted,
                    &outside
                )
                .len(),
                1
            );
            // Unknown labels follow onLookupFailure (deny by default).
            let found = run(
                &HOST_NETWORK_IN_MESH,
                kind,
                Operation::Create,
                &o,
                &NoCluster,
            );
            assert!(found[0].message.starts_with("namespace labels unknown"));
            let allow = crate::catalogue::policy_from_yaml("onLookupFailure: allow\n", "t")
                .expect("policy");
            assert!(check(
                &HOST_NETWORK_IN_MESH,
                kind,
                Operation::Create,
                &o,
                &NoCluster,
                &allow
            )
            .is_empty());
            // No hostNetwork: nothing.
            let o = workload(kind, json!({}), app());
            assert!(run(
                &HOST_NETWORK_IN_MESH,
                kind,
                Operation::Create,
                &o,
                &enabled_ns()
            )
            .is_empty());
        }
    }

    #[test]
    fn proxy_config_interception_none_is_a_bypass() {
        for kind in Kind::WORKLOADS.iter().copied() {
            for value in [
                "interceptionMode: NONE",
                "{\"interceptionMode\":\"NONE\"}",
                "concurrency: 2\ninterceptionMode: none\n",
            ] {
                let o = workload(
                    kind,
                    json!({"annotations": {"proxy.istio.io/config": value}}),
                    app(),
                );
                let found = run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &enabled_ns());
                assert_eq!(found.len(), 1, "{kind} {value}");
                assert_eq!(
                    found[0].path,
                    format!(
                        "{}metadata.annotations[\"proxy.istio.io/config\"]",
                        prefix(kind)
                    )
                );
            }
            for value in ["interceptionMode: TPROXY", "concurrency: 2", "not: [yaml"] {
                let o = workload(
                    kind,
                    json!({"annotations": {"proxy.istio.io/config": value}}),
                    app(),
                );
                assert!(
                    run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &enabled_ns()).is_empty(),
                    "{value}"
                );
            }
            // The interceptionMode annotation wins over the proxy config, as in the template.
            let o = workload(
                kind,
                json!({"annotations": {"proxy.istio.io/config": "interceptionMode: NONE",
                    "sidecar.istio.io/interceptionMode": "REDIRECT"}}),
                app(),
            );
            assert!(run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &enabled_ns()).is_empty());
        }
    }

    // ---- ambient mode

    fn ambient_ns() -> Inventory {
        Inventory::complete(Vec::new())
            .with_namespace("prod", &[("istio.io/dataplane-mode", "ambient")])
    }

    #[test]
    fn ambient_pods_are_in_the_mesh_without_a_sidecar() {
        let bare = Inventory::complete(Vec::new()).with_namespace("prod", &[("team", "a")]);
        let disabled = Inventory::complete(Vec::new())
            .with_namespace("prod", &[("istio-injection", "disabled")]);
        for kind in Kind::WORKLOADS.iter().copied() {
            let p = prefix(kind);
            // inject=false is moot where ztunnel captures the pod ...
            let off = workload(
                kind,
                json!({"labels": {"sidecar.istio.io/inject": "false"}}),
                app(),
            );
            assert!(run(
                &INJECTION_DISABLED,
                kind,
                Operation::Create,
                &off,
                &ambient_ns()
            )
            .is_empty());
            // ... but still denied where nothing else carries the pod, or nobody can tell.
            for cluster in [&enabled_ns(), &bare] {
                assert_eq!(
                    run(&INJECTION_DISABLED, kind, Operation::Create, &off, cluster).len(),
                    1
                );
            }
            assert_eq!(
                run(
                    &INJECTION_DISABLED,
                    kind,
                    Operation::Create,
                    &off,
                    &NoCluster
                )
                .len(),
                1
            );
            // A pod that enrols itself in ambient and refuses a sidecar is captured wherever it runs.
            let own = workload(
                kind,
                json!({"labels": {"sidecar.istio.io/inject": "false", "istio.io/dataplane-mode": "ambient"}}),
                app(),
            );
            for cluster in [&enabled_ns(), &bare] {
                assert!(
                    run(&INJECTION_DISABLED, kind, Operation::Create, &own, cluster).is_empty()
                );
            }
            assert!(run(
                &INJECTION_DISABLED,
                kind,
                Operation::Create,
                &own,
                &NoCluster
            )
            .is_empty());

            // istio.io/dataplane-mode=none leaves an ambient namespace's mesh.
            let none = workload(
                kind,
                json!({"labels": {"istio.io/dataplane-mode": "none"}}),
                app(),
            );
            let found = run(
                &INJECTION_DISABLED,
                kind,
                Operation::Create,
                &none,
                &ambient_ns(),
            );
            assert_eq!(found.len(), 1, "{kind}");
            assert_eq!(
                found[0].path,
                format!("{p}metadata.labels[\"istio.io/dataplane-mode\"]")
            );
            assert!(found[0]
                .message
                .contains("takes this pod out of the ambient mesh of namespace \"prod\""));
            assert!(found[0]
                .fix
                .starts_with("remove the pod label istio.io/dataplane-mode"));
            // ... and means nothing where the injector adds a sidecar anyway.
            assert!(run(
                &INJECTION_DISABLED,
                kind,
                Operation::Create,
                &none,
                &enabled_ns()
            )
            .is_empty());
            // An ambient namespace's pod that asks for a sidecar gets one (sidecars win).
            let sidecar = workload(
                kind,
                json!({"labels": {"istio.io/dataplane-mode": "none", "sidecar.istio.io/inject": "true"}}),
                app(),
            );
            assert!(run(
                &INJECTION_DISABLED,
                kind,
                Operation::Create,
                &sidecar,
                &ambient_ns()
            )
            .is_empty());

            // wl-namespace-not-injected: pod-level ambient enrolment counts as in the mesh.
            let enrolled = workload(
                kind,
                json!({"labels": {"istio.io/dataplane-mode": "ambient"}}),
                app(),
            );
            for cluster in [&bare, &disabled] {
                assert!(run(
                    &NAMESPACE_NOT_INJECTED,
                    kind,
                    Operation::Create,
                    &enrolled,
                    cluster
                )
                .is_empty());
            }
            assert!(run(
                &NAMESPACE_NOT_INJECTED,
                kind,
                Operation::Create,
                &enrolled,
                &NoCluster
            )
            .is_empty());
            let plain = workload(kind, json!({"labels": {"app": "a"}}), app());
            assert_eq!(
                run(
                    &NAMESPACE_NOT_INJECTED,
                    kind,
                    Operation::Create,
                    &plain,
                    &bare
                )
                .len(),
                1
            );
            // hostNetwork pods are never captured, whatever their labels say.
            let host = workload(
                kind,
                json!({"labels": {"istio.io/dataplane-mode": "ambient", "sidecar.istio.io/inject": "false"}}),
                json!({"hostNetwork": true, "containers": []}),
            );
            assert_eq!(
                run(
                    &INJECTION_DISABLED,
                    kind,
                    Operation::Create,
                    &host,
                    &ambient_ns()
                )
                .len(),
                1
            );
        }
    }

    #[test]
    fn ambient_bypass_annotations() {
        let ann = |k: &str, v: &str| json!({"annotations": {k: v}});
        for kind in Kind::WORKLOADS.iter().copied() {
            let p = prefix(kind);
            // The sidecar's interception annotations do nothing under ztunnel ...
            let o = workload(
                kind,
                ann("traffic.sidecar.istio.io/excludeInboundPorts", "8080"),
                app(),
            );
            assert!(run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &ambient_ns()).is_empty());
            assert_eq!(
                run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &enabled_ns()).len(),
                1
            );
            assert_eq!(
                run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &NoCluster).len(),
                1
            );
            // ... unless the pod asks for a sidecar after all.
            let o = workload(
                kind,
                json!({"labels": {"sidecar.istio.io/inject": "true"},
                       "annotations": {"traffic.sidecar.istio.io/excludeInboundPorts": "8080"}}),
                app(),
            );
            assert_eq!(
                run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &ambient_ns()).len(),
                1
            );

            // ztunnel's own bypass: inbound capture off.
            for v in ["true", "True", "1"] {
                let o = workload(
                    kind,
                    ann("ambient.istio.io/bypass-inbound-capture", v),
                    app(),
                );
                let found = run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &ambient_ns());
                assert_eq!(found.len(), 1, "{kind} {v}");
                assert_eq!(
                    found[0].path,
                    format!("{p}metadata.annotations[\"ambient.istio.io/bypass-inbound-capture\"]")
                );
                assert!(found[0]
                    .message
                    .contains("ztunnel does not capture inbound traffic"));
                assert_eq!(
                    run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &NoCluster).len(),
                    1
                );
                // A sidecar pod ignores it.
                assert!(
                    run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &enabled_ns()).is_empty()
                );
            }
            for v in ["false", "", "yes"] {
                let o = workload(
                    kind,
                    ann("ambient.istio.io/bypass-inbound-capture", v),
                    app(),
                );
                assert!(
                    run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &ambient_ns()).is_empty(),
                    "{v}"
                );
            }
        }
    }

    // ---- wl-traffic-bypass

    #[test]
    fn bypass_annotations_denied() {
        for kind in Kind::WORKLOADS.iter().copied() {
            for op in OPS {
                let p = prefix(kind);
                let o = workload(
                    kind,
                    json!({"annotations": {
                    "traffic.sidecar.istio.io/excludeInboundPorts": "8080",
                    "traffic.sidecar.istio.io/excludeOutboundIPRanges": "0.0.0.0/0",
                    "traffic.sidecar.istio.io/includeInboundPorts": "",
                    "sidecar.istio.io/interceptionMode": "NONE"}}),
                    app(),
                );
                let found = run(&TRAFFIC_BYPASS, kind, op.clone(), &o, &NoCluster);
                assert_eq!(found.len(), 4, "{kind}: {found:?}");
                assert_eq!(
                    found[0].path,
                    format!(
                        "{p}metadata.annotations[\"traffic.sidecar.istio.io/excludeInboundPorts\"]"
                    )
                );
                assert_eq!(found[0].message, "traffic.sidecar.istio.io/excludeInboundPorts: \"8080\": connections to these ports reach the application directly, without mTLS or AuthorizationPolicy");
                assert!(found[0].fix.starts_with("remove the annotation"));
                assert!(found[1].message.starts_with("traffic.sidecar.istio.io/includeInboundPorts: \"\": only the listed inbound ports"));
                assert!(found[3].message.contains("interception mode NONE"));
            }
        }
    }

    #[test]
    fn harmless_traffic_annotations_allowed() {
        for kind in Kind::WORKLOADS.iter().copied() {
            let o = workload(
                kind,
                json!({"annotations": {
                "traffic.sidecar.istio.io/excludeInboundPorts": "",
                "traffic.sidecar.istio.io/includeInboundPorts": "*",
                "traffic.sidecar.istio.io/includeOutboundIPRanges": "*",
                "sidecar.istio.io/interceptionMode": "TPROXY"}}),
                app(),
            );
            assert!(run(&TRAFFIC_BYPASS, kind, Operation::Create, &o, &NoCluster).is_empty());
        }
    }

    // ---- wl-host-network

    #[test]
    fn host_network_warned() {
        for kind in Kind::WORKLOADS.iter().copied() {
            for op in OPS {
                let o = workload(
                    kind,
                    json!({}),
                    json!({"hostNetwork": true, "containers": []}),
                );
                let found = run(&HOST_NETWORK, kind, op.clone(), &o, &NoCluster);
                assert_eq!(found.len(), 1);
                assert_eq!(found[0].path, format!("{}spec.hostNetwork", prefix(kind)));
                assert!(found[0].message.starts_with(
                    "hostNetwork pods share the node's network and are never injected"
                ));
                let o = workload(
                    kind,
                    json!({}),
                    json!({"hostNetwork": false, "containers": []}),
                );
                assert!(run(&HOST_NETWORK, kind, op.clone(), &o, &NoCluster).is_empty());
            }
        }
        assert_eq!(HOST_NETWORK.default_action, Action::Warn);
    }

    // ---- wl-proxy-uid

    /// The injector's status annotation, listing an injected istio-proxy (on a Pod the proxy
    /// counts as Istio's only when the injector lists it).
    fn injected_meta() -> Value {
        json!({"annotations": {"sidecar.istio.io/status":
            "{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"],\"revision\":\"default\"}"}})
    }

    #[test]
    fn proxy_uid_denied_for_app_containers() {
        for kind in Kind::WORKLOADS.iter().copied() {
            for op in OPS {
                let p = prefix(kind);
                let o = workload(
                    kind,
                    injected_meta(),
                    json!({
                    "containers": [{"name": "app", "securityContext": {"runAsUser": 1337}},
                                   {"name": "istio-proxy", "securityContext": {"runAsUser": 1337}}],
                    "initContainers": [{"name": "setup", "securityContext": {"runAsUser": 1337}}]}),
                );
                let found = run(&PROXY_UID_RULE, kind, op.clone(), &o, &NoCluster);
                assert_eq!(found.len(), 2, "{kind}");
                assert_eq!(
                    found[0].path,
                    format!("{p}spec.containers[0].securityContext.runAsUser")
                );
                assert!(found[0]
                    .message
                    .starts_with("container \"app\" runs as UID 1337, the sidecar's own UID"));
                assert_eq!(
                    found[1].path,
                    format!("{p}spec.initContainers[0].securityContext.runAsUser")
                );
                // Pod-level UID inherited by an app container.
                let o = workload(
                    kind,
                    injected_meta(),
                    json!({"securityContext": {"runAsUser": 1337},
                    "containers": [{"name": "app"}, {"name": "other", "securityContext": {"runAsUser": 1000}},
                                   {"name": "istio-proxy"}]}),
                );
                let found = run(&PROXY_UID_RULE, kind, op.clone(), &o, &NoCluster);
                assert_eq!(found.len(), 1);
                assert_eq!(found[0].path, format!("{p}spec.securityContext.runAsUser"));
                assert!(
                    found[0].message.contains("container(s) \"app\" inherit it"),
                    "{}",
                    found[0].message
                );
                // GID 1337 too (istio-iptables skips --gid-owner 1337), pod- and container-level.
                let o = workload(
                    kind,
                    injected_meta(),
                    json!({"securityContext": {"runAsGroup": 1337},
                    "containers": [{"name": "app", "securityContext": {"runAsGroup": 1000}},
                                   {"name": "worker"},
                                   {"name": "sidecar", "securityContext": {"runAsGroup": 1337}},
                                   {"name": "istio-proxy", "securityContext": {"runAsUser": 1337, "runAsGroup": 1337}}]}),
                );
                let found = run(&PROXY_UID_RULE, kind, op.clone(), &o, &NoCluster);
                let paths: Vec<&str> = found.iter().map(|v| v.path.as_str()).collect();
                assert_eq!(
                    paths,
                    [
                        format!("{p}spec.containers[2].securityContext.runAsGroup"),
                        format!("{p}spec.securityContext.runAsGroup")
                    ],
                    "{kind}"
                );
                assert!(found[0]
                    .message
                    .contains("runs as GID 1337, the sidecar's own GID"));
                assert!(found[1]
                    .message
                    .contains("container(s) \"worker\" inherit it"));
            }
        }
    }

    #[test]
    fn proxy_uid_judges_containers_that_only_borrow_istios_name() {
        for kind in Kind::WORKLOADS.iter().copied() {
            // An istio-proxy of its own (its own image or command) is an application container.
            let o = workload(
                kind,
                injected_meta(),
                json!({"containers": [{"name": "app"},
                    {"name": "istio-proxy", "image": "evil/envoy", "securityContext": {"runAsUser": 1337}},
                    {"name": "istio-proxy-2", "securityContext": {"runAsUser": 1337}}],
                    "initContainers": [{"name": "istio-init", "command": ["sh"], "securityContext": {"runAsGroup": 1337}}]}),
            );
            let found = run(&PROXY_UID_RULE, kind, Operation::Create, &o, &NoCluster);
            assert_eq!(found.len(), 3, "{kind} {found:?}");
            // Ephemeral containers (kubectl debug) run as whatever they say.
            let o = workload(
                kind,
                injected_meta(),
                json!({"containers": [{"name": "app"}],
                    "ephemeralContainers": [{"name": "debugger", "securityContext": {"runAsUser": 1337}}]}),
            );
            let found = run(&PROXY_UID_RULE, kind, Operation::Update, &o, &NoCluster);
            assert_eq!(found.len(), 1, "{kind}");
            assert_eq!(
                found[0].path,
                format!(
                    "{}spec.ephemeralContainers[0].securityContext.runAsUser",
                    prefix(kind)
                )
            );
        }
        // On a Pod, an istio-proxy the injector did not list is not Istio's.
        let o = workload(
            Kind::Pod,
            json!({}),
            json!({"containers": [{"name": "app"},
                {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "securityContext": {"runAsUser": 1337}}]}),
        );
        assert_eq!(
            run(
                &PROXY_UID_RULE,
                Kind::Pod,
                Operation::Create,
                &o,
                &NoCluster
            )
            .len(),
            1
        );
    }

    #[test]
    fn proxy_uid_allowed_otherwise() {
        for kind in Kind::WORKLOADS.iter().copied() {
            let o = workload(
                kind,
                json!({"annotations": {"sidecar.istio.io/status":
                    "{\"initContainers\":[\"istio-proxy\",\"istio-validation\"],\"containers\":[\"istio-proxy\"]}"}}),
                json!({"securityContext": {"runAsUser": 1000},
                "containers": [{"name": "app"}, {"name": "istio-proxy", "securityContext": {"runAsUser": 1337}}],
                "initContainers": [{"name": "istio-proxy", "restartPolicy": "Always", "securityContext": {"runAsUser": 1337}},
                    {"name": "istio-validation", "args": ["istio-iptables", "--run-validation"], "securityContext": {"runAsUser": 1337, "runAsGroup": 1337}}]}),
            );
            assert!(run(&PROXY_UID_RULE, kind, Operation::Create, &o, &NoCluster).is_empty());
            // Pod-level 1337 that every app container overrides.
            let o = workload(
                kind,
                json!({}),
                json!({"securityContext": {"runAsUser": 1337, "runAsGroup": 1337},
                "containers": [{"name": "app", "securityContext": {"runAsUser": 1000, "runAsGroup": 1000}}]}),
            );
            assert!(run(&PROXY_UID_RULE, kind, Operation::Update, &o, &NoCluster).is_empty());
        }
    }

    // ---- the injector decision of the mesh as installed

    use crate::mesh::testing::{
        canary_mesh, enabled_injector, expr, injector_cm, mesh_of, revision_mwc, tag_mwc,
    };

    /// A pod (for wl-missing-sidecar and friends) or a Deployment with these template labels.
    fn pod_with(labels: Value, spec: Value) -> DynamicObject {
        workload(Kind::Pod, json!({"labels": labels}), spec)
    }

    #[test]
    fn enable_namespaces_by_default_injects_unlabelled_namespaces() {
        // sidecarInjectorWebhook.enableNamespacesByDefault: the auto.* webhook selects them.
        let mesh = mesh_of(
            &[revision_mwc("", true)],
            &[enabled_injector("default", "1.27.1")],
        );
        let d = workload(Kind::Deployment, json!({}), app());
        let unlabelled = ns_with(&[("team", "a")]);
        assert!(in_mesh(
            &NAMESPACE_NOT_INJECTED,
            Kind::Deployment,
            &d,
            &unlabelled,
            &mesh
        )
        .is_empty());
        // ... the label folklore (no mesh context) says otherwise.
        assert_eq!(
            in_mesh(
                &NAMESPACE_NOT_INJECTED,
                Kind::Deployment,
                &d,
                &unlabelled,
                &crate::mesh::MeshContext::default()
            )
            .len(),
            1
        );
        // kube-system stays out: the auto.* webhook excludes it, and Istio never injects there.
        let system = Inventory::complete(Vec::new()).with_namespace("kube-public", &[]);
        let found = in_mesh_ns(
            &NAMESPACE_NOT_INJECTED,
            Kind::Deployment,
            "kube-public",
            &d,
            &system,
            &mesh,
        );
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn labels_that_look_right_but_no_injector_serves() {
        // A revisioned install without a default revision or tag: istio-injection=enabled is
        // served by nobody (Istio's chart renders namespace.* only for the default revision).
        let mesh = mesh_of(
            &[
                revision_mwc("canary", false),
                tag_mwc("prod-stable", "canary", false),
            ],
            &[enabled_injector("canary", "1.27.1")],
        );
        let d = workload(Kind::Deployment, json!({}), app());
        let found = in_mesh(
            &NAMESPACE_NOT_INJECTED,
            Kind::Deployment,
            &d,
            &enabled_ns(),
            &mesh,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "spec.template.metadata.labels");
        assert!(
            found[0].message.starts_with(
                "no sidecar injector webhook selects this pod in namespace \"prod\", so it starts without a sidecar (injectors serve istio.io/rev=prod-stable, istio.io/rev=canary; revisions: canary; tags: prod-stable → canary)"
            ),
            "{}",
            found[0].message
        );
        assert_eq!(
            found[0].fix,
            "label the namespace for an injector that exists: kubectl label namespace prod istio.io/rev=prod-stable istio-injection- --overwrite"
        );
        // The pod that should have been injected is not expected to carry a proxy.
        let p = pod_with(json!({}), app());
        assert!(in_mesh(&MISSING_SIDECAR, Kind::Pod, &p, &enabled_ns(), &mesh).is_empty());
        // The tag and the revision both serve.
        for rev in ["prod-stable", "canary"] {
            let ns = ns_with(&[("istio.io/rev", rev)]);
            assert!(in_mesh(&NAMESPACE_NOT_INJECTED, Kind::Deployment, &d, &ns, &mesh).is_empty());
            let found = in_mesh(&MISSING_SIDECAR, Kind::Pod, &p, &ns, &mesh);
            assert_eq!(found.len(), 1, "{rev}");
            assert!(
                found[0]
                    .message
                    .starts_with("webhook \"rev.namespace.sidecar-injector.istio.io\""),
                "{}",
                found[0].message
            );
        }
    }

    #[test]
    fn the_injectors_own_configuration_keeps_pods_out() {
        let never = "policy: enabled\nneverInjectSelector:\n  - matchExpressions: [{key: batch, operator: Exists}]\n";
        let mesh = mesh_of(
            &[revision_mwc("", false)],
            &[injector_cm("default", never, "1.27.1")],
        );
        let batch = workload(Kind::Job, json!({"labels": {"batch": "x"}}), app());
        let found = in_mesh(
            &NAMESPACE_NOT_INJECTED,
            Kind::Job,
            &batch,
            &enabled_ns(),
            &mesh,
        );
        assert_eq!(found.len(), 1);
        assert!(
            found[0].message.contains("neverInjectSelector[0]"),
            "{}",
            found[0].message
        );
        assert!(found[0]
            .fix
            .starts_with("add the pod label sidecar.istio.io/inject: \"true\""));
        // The pod's own label comes first.
        let asks = workload(
            Kind::Job,
            json!({"labels": {"batch": "x", "sidecar.istio.io/inject": "true"}}),
            app(),
        );
        assert!(in_mesh(
            &NAMESPACE_NOT_INJECTED,
            Kind::Job,
            &asks,
            &enabled_ns(),
            &mesh
        )
        .is_empty());
        let disabled = mesh_of(
            &[revision_mwc("", false)],
            &[injector_cm("default", "policy: disabled\n", "1.27.1")],
        );
        let d = workload(Kind::Deployment, json!({}), app());
        let found = in_mesh(
            &NAMESPACE_NOT_INJECTED,
            Kind::Deployment,
            &d,
            &enabled_ns(),
            &disabled,
        );
        assert!(
            found[0].message.contains("policy is disabled"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn manually_injected_pods_carry_their_sidecar() {
        let injected = json!({"containers": [{"name": "app", "image": "app"},
            {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.1"}]});
        for mesh in [crate::mesh::MeshContext::default(), canary_mesh(&[])] {
            for kind in [Kind::Pod, Kind::Deployment] {
                let o = workload(kind, json!({}), injected.clone());
                assert!(
                    in_mesh(&NAMESPACE_NOT_INJECTED, kind, &o, &ns_with(&[]), &mesh).is_empty(),
                    "{kind}"
                );
                // Without the proxy, it is reported.
                let o = workload(kind, json!({}), app());
                assert_eq!(
                    in_mesh(&NAMESPACE_NOT_INJECTED, kind, &o, &ns_with(&[]), &mesh).len(),
                    1
                );
            }
        }
    }

    #[test]
    fn inject_values_are_read_the_injectors_way() {
        // Istio 1.27+: only "true" and "false" decide; "no" is ignored and the pod is injected.
        let new = mesh_of(
            &[revision_mwc("", false)],
            &[enabled_injector("default", "1.27.1")],
        );
        let old = mesh_of(
            &[revision_mwc("", false)],
            &[enabled_injector("default", "1.26.2")],
        );
        for (value, on_new, on_old) in [
            ("no", 0, 1),
            ("False", 0, 1),
            ("false", 1, 1),
            ("true", 0, 0),
        ] {
            let d = workload(
                Kind::Deployment,
                json!({"labels": {"sidecar.istio.io/inject": value}}),
                app(),
            );
            for (mesh, want) in [(&new, on_new), (&old, on_old)] {
                assert_eq!(
                    in_mesh(
                        &INJECTION_DISABLED,
                        Kind::Deployment,
                        &d,
                        &enabled_ns(),
                        mesh
                    )
                    .len(),
                    want,
                    "{value}"
                );
            }
            // Without an injector visible, meshguard's reading: anything but on/empty disables.
            let assumed = usize::from(value != "true");
            assert_eq!(
                in_mesh(
                    &INJECTION_DISABLED,
                    Kind::Deployment,
                    &d,
                    &enabled_ns(),
                    &crate::mesh::MeshContext::default()
                )
                .len(),
                assumed,
                "{value}"
            );
        }
    }

    #[test]
    fn an_opt_in_does_not_beat_istio_injection_disabled() {
        // Notes item 8: a pod that opts in inside istio-injection=disabled gets no sidecar, so
        // in an ambient namespace it is ztunnel's; the sidecar traffic annotations do nothing.
        let ns = ns_with(&[
            ("istio-injection", "disabled"),
            ("istio.io/dataplane-mode", "ambient"),
        ]);
        let d = workload(
            Kind::Deployment,
            json!({"labels": {"sidecar.istio.io/inject": "true"},
                   "annotations": {"traffic.sidecar.istio.io/excludeInboundPorts": "8080"}}),
            app(),
        );
        let none = crate::mesh::MeshContext::default();
        assert!(in_mesh(&TRAFFIC_BYPASS, Kind::Deployment, &d, &ns, &none).is_empty());
        assert!(in_mesh(&NAMESPACE_NOT_INJECTED, Kind::Deployment, &d, &ns, &none).is_empty());
        // Without ambient, the namespace label keeps it out: reported.
        let off = ns_with(&[("istio-injection", "disabled")]);
        assert_eq!(
            in_mesh(&TRAFFIC_BYPASS, Kind::Deployment, &d, &off, &none).len(),
            1
        );
        assert!(
            in_mesh(&NAMESPACE_NOT_INJECTED, Kind::Deployment, &d, &off, &none)[0]
                .message
                .contains("istio-injection=disabled")
        );
    }

    #[test]
    fn a_pod_revision_no_injector_serves_is_left_to_ns_unknown_revision() {
        let d = workload(
            Kind::Deployment,
            json!({"labels": {"istio.io/rev": "nope"}}),
            app(),
        );
        let found = in_mesh(
            &NAMESPACE_NOT_INJECTED,
            Kind::Deployment,
            &d,
            &ns_with(&[]),
            &canary_mesh(&[]),
        );
        assert!(found.is_empty(), "{found:?}");
        let d = workload(
            Kind::Deployment,
            json!({"labels": {"istio.io/rev": "canary"}}),
            app(),
        );
        assert!(in_mesh(
            &NAMESPACE_NOT_INJECTED,
            Kind::Deployment,
            &d,
            &ns_with(&[]),
            &canary_mesh(&[])
        )
        .is_empty());
        let _ = expr; // the selector builder is shared with the mesh tests
    }

    // ---- wl-proxy-image-auto

    #[test]
    fn proxy_image_auto_on_pod_create() {
        let with = |list: &str| {
            let mut spec = app();
            let mut proxy = json!({"name": "istio-proxy", "image": "auto"});
            if list == "initContainers" {
                proxy["restartPolicy"] = json!("Always");
                spec["initContainers"] = json!([proxy]);
            } else {
                spec["containers"].as_array_mut().expect("list").push(proxy);
            }
            pod_with(json!({}), spec)
        };
        for (list, path) in [
            ("containers", "spec.containers[1].image"),
            ("initContainers", "spec.initContainers[0].image"),
        ] {
            let found = run(
                &PROXY_IMAGE_AUTO,
                Kind::Pod,
                Operation::Create,
                &with(list),
                &enabled_ns(),
            );
            assert_eq!(found.len(), 1, "{list}");
            assert_eq!(found[0].path, path);
            assert!(found[0].message.contains("still has image \"auto\""));
            assert!(found[0]
                .fix
                .contains("kubectl label namespace prod istio-injection=enabled"));
            // Updates and injected images pass.
            assert!(run(
                &PROXY_IMAGE_AUTO,
                Kind::Pod,
                Operation::Update,
                &with(list),
                &enabled_ns()
            )
            .is_empty());
        }
        let injected = pod_with(
            json!({}),
            json!({"containers": [{"name": "app"}, {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.1"}]}),
        );
        assert!(run(
            &PROXY_IMAGE_AUTO,
            Kind::Pod,
            Operation::Create,
            &injected,
            &enabled_ns()
        )
        .is_empty());
        // The fix names a label an injector serves.
        let found = in_mesh(
            &PROXY_IMAGE_AUTO,
            Kind::Pod,
            &with("containers"),
            &ns_with(&[]),
            &mesh_of(
                &[revision_mwc("canary", false)],
                &[enabled_injector("canary", "1.27.1")],
            ),
        );
        assert!(
            found[0].fix.contains("istio.io/rev=canary"),
            "{}",
            found[0].fix
        );
    }

    /// IST0146 (istio/istio `pkg/config/analysis/analyzers/injection/image-auto.go`): a workload
    /// template with `image: auto` is the gateway injection template's normal form, and broken
    /// only when no injector will select its pods.
    #[test]
    fn proxy_image_auto_on_templates_no_injector_selects() {
        let gateway = |labels: Value| {
            workload(
                Kind::Deployment,
                json!({"labels": labels, "annotations": {"inject.istio.io/templates": "gateway"}}),
                json!({"containers": [{"name": "istio-proxy", "image": "auto"}]}),
            )
        };
        let plain = gateway(json!({"istio": "ingressgateway"}));
        // An unlabelled namespace and no opt-in: nothing replaces the placeholder.
        for op in OPS {
            let found = run(
                &PROXY_IMAGE_AUTO,
                Kind::Deployment,
                op,
                &plain,
                &ns_with(&[]),
            );
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].path, "spec.template.spec.containers[0].image");
            assert!(
                found[0]
                    .message
                    .contains("no injector will replace it when the pods are created"),
                "{}",
                found[0].message
            );
            assert!(found[0].fix.contains("sidecar.istio.io/inject: \"true\""));
        }
        // A namespace that does not exist has no labels either (as istioctl analyze reads it).
        let none = Inventory::complete(Vec::new());
        assert_eq!(
            run(
                &PROXY_IMAGE_AUTO,
                Kind::Deployment,
                Operation::Create,
                &plain,
                &none
            )
            .len(),
            1
        );
        // Every template kind, not only Deployments.
        let sts = workload(
            Kind::StatefulSet,
            json!({}),
            json!({"containers": [{"name": "istio-proxy", "image": "auto"}]}),
        );
        assert_eq!(
            run(
                &PROXY_IMAGE_AUTO,
                Kind::StatefulSet,
                Operation::Create,
                &sts,
                &ns_with(&[])
            )
            .len(),
            1
        );

        // Quiet: the template opts in (Istio's documented gateway Deployment), the namespace is
        // injected, or nobody can tell the namespace's labels.
        let opted_in =
            gateway(json!({"istio": "ingressgateway", "sidecar.istio.io/inject": "true"}));
        assert!(run(
            &PROXY_IMAGE_AUTO,
            Kind::Deployment,
            Operation::Create,
            &opted_in,
            &ns_with(&[])
        )
        .is_empty());
        assert!(run(
            &PROXY_IMAGE_AUTO,
            Kind::Deployment,
            Operation::Create,
            &plain,
            &enabled_ns()
        )
        .is_empty());
        assert!(run(
            &PROXY_IMAGE_AUTO,
            Kind::Deployment,
            Operation::Create,
            &plain,
            &crate::context::NoCluster
        )
        .is_empty());

        // With injectors visible, their selectors decide: a canary-only mesh serves no
        // istio-injection=enabled namespace.
        let canary = mesh_of(
            &[revision_mwc("canary", false)],
            &[enabled_injector("canary", "1.27.1")],
        );
        let found = in_mesh(
            &PROXY_IMAGE_AUTO,
            Kind::Deployment,
            &plain,
            &enabled_ns(),
            &canary,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].fix.contains("istio.io/rev=canary"),
            "{}",
            found[0].fix
        );
        let served =
            Inventory::complete(Vec::new()).with_namespace("prod", &[("istio.io/rev", "canary")]);
        assert!(in_mesh(
            &PROXY_IMAGE_AUTO,
            Kind::Deployment,
            &plain,
            &served,
            &canary
        )
        .is_empty());
    }
}
