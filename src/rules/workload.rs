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
use crate::finding::push_quoted;
use crate::mesh::Why;
use crate::model::workload::{
    Container, PodTemplate, INIT_CONTAINER, INJECT, PROXY_CONTAINER, PROXY_GID, PROXY_UID,
};
use crate::resource::{Kind, Review};
use kube::core::admission::Operation;
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
    // `namespace labels unknown: {why}, so meshguard cannot tell {what}`, written in place.
    let mut message = String::with_capacity(160 + ns.len() + what.len());
    let fix = match lookup {
        Lookup::Missing => {
            message.push_str("namespace labels unknown: namespace ");
            push_quoted(&mut message, ns);
            message.push_str(" was not found");
            "create the namespace first (or include it in the manifests you check), or set onLookupFailure: allow in the meshguard policy"
        }
        _ => {
            message.push_str("namespace labels unknown: meshguard could not read namespace ");
            push_quoted(&mut message, ns);
            message.push_str(" (no cluster connection, or the lookup failed)");
            "retry when the API server is reachable, or set onLookupFailure: allow in the meshguard policy"
        }
    };
    message.push_str(", so meshguard cannot tell ");
    message.push_str(what);
    out.push(Violation::new("metadata.namespace", message, fix));
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
        return crate::model::workload::value_disables(value);
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

/// The identity a pod of this namespace gets with the `default` ServiceAccount, appended.
fn push_default_identity(out: &mut String, review: &Review<'_>, ctx: &Ctx<'_>) {
    out.push_str(&ctx.mesh.trust_domain().value);
    out.push_str("/ns/");
    out.push_str(review.namespace);
    out.push_str("/sa/default");
}

pub(crate) static DEFAULT_SERVICE_ACCOUNT: Rule = Rule {
    id: "wl-default-service-account",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "serviceAccountName (or the deprecated serviceAccount) absent or default: the pod shares the namespace's default identity",
    example_fix: "spec.template.spec.serviceAccountName: <app name> (and create that ServiceAccount)",
    needs: &[Need::CandidateServiceAccount],
    check: |review, ctx, out| {
        let Some(t) = ctx.cache.template(review) else { return };
        let set = t.service_account();
        if set.is_some_and(|(_, sa)| sa != "default") {
            return;
        }
        let field = set.map_or("serviceAccountName", |(f, _)| f);
        let path = t.path(if field == "serviceAccountName" {
            "spec.serviceAccountName"
        } else {
            "spec.serviceAccount"
        });
        let sa_path = t.path("spec.serviceAccountName");
        let mut message = String::with_capacity(256);
        match set {
            None => message.push_str("no serviceAccountName is set, so the pods run as the \"default\" ServiceAccount"),
            Some(_) if t.is_pod() => message.push_str("the pod runs as the \"default\" ServiceAccount (the API server fills it in when the manifest names none)"),
            Some((f, _)) => {
                message.push_str(f);
                message.push_str(" is \"default\"");
            }
        }
        message.push_str("; its identity ");
        push_default_identity(&mut message, review, ctx);
        message.push_str(" is shared by every workload without its own account, so AuthorizationPolicy cannot tell them apart");
        let ns = review.namespace;
        let fix = match t.service_account_candidate() {
            Some((label, name)) => match ctx.cluster.service_account(ns, name) {
                Lookup::Found(()) => format!(
                    "set {sa_path}: {name} (ServiceAccount {ns}/{name} exists)"
                ),
                Lookup::Missing => format!(
                    "create ServiceAccount {name:?} in namespace {ns:?} (kubectl -n {ns} create serviceaccount {name}) and set {sa_path}: {name}; the name comes from the {label} label"
                ),
                Lookup::Unknown => {
                    // `create ServiceAccount {name:?} in namespace {ns:?} if it does not exist
                    // (kubectl -n {ns} create serviceaccount {name}) and set {sa_path}: {name}`
                    let mut fix = String::with_capacity(160 + 3 * name.len() + 2 * ns.len() + sa_path.len());
                    fix.push_str("create ServiceAccount ");
                    push_quoted(&mut fix, name);
                    fix.push_str(" in namespace ");
                    push_quoted(&mut fix, ns);
                    fix.push_str(" if it does not exist (kubectl -n ");
                    fix.push_str(ns);
                    fix.push_str(" create serviceaccount ");
                    fix.push_str(name);
                    fix.push_str(") and set ");
                    fix.push_str(&sa_path);
                    fix.push_str(": ");
                    fix.push_str(name);
                    fix
                }
            },
            None => format!(
                "create a ServiceAccount for this workload and set {sa_path} to its name (with an app.kubernetes.io/name or app label, meshguard names the account for you)"
            ),
        };
        out.push(Violation::new(path, message, fix));
    },
};

pub(crate) static INJECTION_DISABLED: Rule = Rule {
    id: "wl-injection-disabled",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "sidecar.istio.io/inject: \"false\" as pod-template label or annotation (the label wins over the annotation), or the label istio.io/dataplane-mode: none in an ambient namespace",
    example_fix: "remove sidecar.istio.io/inject, or set it to \"true\"",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = ctx.cache.template(review) else { return };
        let facts = pod_injection(review, ctx, t);
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
        let Some(setting) = t.inject_setting() else { return };
        let (path, value) = (t.setting_path(&setting), setting.value);
        if !crate::model::workload::value_disables(value) {
            return; // no reading of an "on" or empty value keeps the sidecar out
        }
        let revision = deciding_revision(review, ctx, t, ns);
        if !setting_disables(ctx, revision.as_deref(), value) {
            return; // this mesh's injectors ignore the value (Istio 1.27+: only "true"/"false")
        }
        let from_annotation = setting.source == crate::model::labels::SettingSource::Annotation;
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

pub(crate) static NAMESPACE_NOT_INJECTED: Rule = Rule {
    id: "wl-namespace-not-injected",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "the pod will not get a sidecar: no injector selects it (its namespace is not labeled for injection, or no injector serves the label) or the injector's configuration keeps it out, and it does not opt in",
    example_fix: "kubectl label namespace <ns> istio-injection=enabled",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = ctx.cache.template(review) else { return };
        if t.host_network() {
            return; // never injected; wl-host-network reports it
        }
        if t.has_proxy() {
            return; // injected already (istioctl kube-inject): it carries its sidecar
        }
        let ns = review.namespace;
        // Built only for a finding.
        let labels_path = || t.path("metadata.labels");
        let facts = pod_injection(review, ctx, t);
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
                            labels_path(),
                            format!(
                                "namespace {ns:?} has istio-injection={v}, which keeps the sidecar out of every pod in it, even pods that opt in"
                            ),
                            format!("set the namespace label istio-injection: enabled (kubectl label namespace {ns} istio-injection=enabled --overwrite)"),
                        ));
                    }
                    Why::NotEnrolled => out.push(Violation::new(
                        labels_path(),
                        format!(
                            "namespace {ns:?} is not labeled for injection (istio-injection=enabled or istio.io/rev) and this pod does not opt in, so it starts without a sidecar"
                        ),
                        format!(
                            "label the namespace: kubectl label namespace {ns} {key}={value} (or {pod_opt_in})"
                        ),
                    )),
                    Why::NotSelected => {
                        if pod_revision_unknown(ctx, t, labels) {
                            return; // ns-unknown-revision names the label that points nowhere
                        }
                        out.push(Violation::new(
                            labels_path(),
                            format!(
                                "{}, so it starts without a sidecar ({})",
                                decision_text(review, ctx, t, labels),
                                served_summary(ctx, ns, Some(labels))
                            ),
                            format!(
                                "label the namespace for an injector that exists: {}",
                                relabel_command(ns, labels, key, &value)
                            ),
                        ));
                    }
                    _ => out.push(Violation::new(
                        labels_path(),
                        format!(
                            "{}, so it starts without a sidecar",
                            decision_text(review, ctx, t, labels)
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

pub(crate) static MISSING_SIDECAR: Rule = Rule {
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
        let Some(t) = ctx.cache.template(review) else { return };
        if t.host_network() || t.has_proxy() {
            return;
        }
        let ns = review.namespace;
        let facts = pod_injection(review, ctx, t);
        let why = match (&facts.ns, facts.decision) {
            (Lookup::Found(labels), Some((true, why))) => match why {
                Why::NamespaceLabel => format!("namespace {ns:?} is labeled for injection"),
                Why::PodOptIn => "the pod opts in to injection".to_owned(),
                _ => decision_text(review, ctx, t, labels),
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

pub(crate) static PROXY_IMAGE_AUTO: Rule = Rule {
    id: "wl-proxy-image-auto",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "an istio-proxy container (or init container) with image: auto that no injector will replace: on a Pod CREATE no injector ran (IST0147), on a workload template no injector selects its pods (IST0146); such pods cannot start",
    example_fix: "label the namespace for an injector that exists (istio-injection=enabled or istio.io/rev=<revision>), then recreate the pod",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = ctx.cache.template(review) else { return };
        let auto: Vec<Container<'_>> = t
            .containers()
            .filter(|c| {
                c.name() == PROXY_CONTAINER
                    && c.image() == Some("auto")
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

pub(crate) static TRAFFIC_BYPASS: Rule = Rule {
    id: "wl-traffic-bypass",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "traffic.sidecar.istio.io/* exclude/include annotations or interceptionMode NONE (the annotation, or in proxy.istio.io/config) that route traffic around the proxy; ambient.istio.io/bypass-inbound-capture on ambient pods",
    example_fix: "remove the traffic.sidecar.istio.io/exclude* annotation",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = ctx.cache.template(review) else { return };
        let plane = pod_injection(review, ctx, t).plane;
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
            if let Some(mode) = proxy_config_interception(t).filter(|m| m.eq_ignore_ascii_case("NONE")) {
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

pub(crate) static HOST_NETWORK: Rule = Rule {
    id: "wl-host-network",
    kinds: KINDS,
    default_action: Action::Warn,
    summary: "hostNetwork pods are never injected and their traffic bypasses the sidecar (outside the mesh's namespaces; inside them wl-host-network-in-mesh denies)",
    example_fix: "remove spec.template.spec.hostNetwork",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = ctx.cache.template(review) else {
            return;
        };
        if !t.host_network() {
            return;
        }
        if meshed_but_for_host_network(review, ctx, t) == Lookup::Found(true) {
            return; // wl-host-network-in-mesh
        }
        out.push(Violation::new(
            t.path("spec.hostNetwork"),
            "hostNetwork pods share the node's network and are never injected: their traffic bypasses the sidecar, mTLS and AuthorizationPolicy",
            "remove hostNetwork: true; if this is a node agent that must stay outside the mesh, exempt it from wl-host-network in the meshguard policy",
        ));
    },
};

pub(crate) static HOST_NETWORK_IN_MESH: Rule = Rule {
    id: "wl-host-network-in-mesh",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "hostNetwork in a namespace the mesh enrolls (sidecar injection or ambient): the pod is never injected nor captured, so it runs outside the mesh beside workloads that are in it",
    example_fix: "remove spec.template.spec.hostNetwork (or run the node agent in a namespace outside the mesh)",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = ctx.cache.template(review) else {
            return;
        };
        if !t.host_network() {
            return;
        }
        let ns = review.namespace;
        match meshed_but_for_host_network(review, ctx, t) {
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

pub(crate) static PROXY_IMAGE: Rule = Rule {
    id: "wl-proxy-image",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "an istio-proxy, istio-init or istio-validation container, or sidecar.istio.io/proxyImage, with an image that is not Istio's proxy (the injector's, or .../proxyv2 when it is not known), or a Pod UPDATE that swaps such a container's image: the pod looks injected while nothing enforces mTLS or policy",
    example_fix: "remove the istio-proxy container's image (or set image: auto) and let the injector choose it",
    needs: &[],
    check: |review, ctx, out| {
        let Some(t) = ctx.cache.template(review) else { return };
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

pub(crate) static PROXY_UID_RULE: Rule = Rule {
    id: "wl-proxy-uid",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "an application container (ephemeral ones included) runs as UID 1337 or GID 1337, the sidecar's, whose traffic iptables lets skip the proxy (IST0144)",
    example_fix: "securityContext.runAsUser: 1000",
    needs: &[],
    check: |review, ctx, out| {
        let Some(t) = ctx.cache.template(review) else { return };
        let istios = istio_containers(ctx, t);
        for (field, id, what) in [
            ("runAsUser", PROXY_UID, "UID"),
            ("runAsGroup", PROXY_GID, "GID"),
        ] {
            let pod_id = t.spec.security_context().and_then(|s| s.id(field));
            let mut inheriting = Vec::new();
            for (c, istios) in t.containers().zip(istios) {
                if *istios {
                    continue; // the proxy (and istio-validation) run as 1337 on purpose
                }
                match c.security().and_then(|s| s.id(field)) {
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
mod tests;
