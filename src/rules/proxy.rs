//! The proxy and its capture (Pod and every workload kind): a pod is in the mesh only while
//! Istio's own proxy runs in it and the pod's iptables send its traffic through that proxy.
//! These rules close the ways a pod's own spec can keep the sidecar's shape and drop its
//! substance.
//!
//! Telling Istio's containers from user-written ones the way Istio does (istio/istio
//! `pkg/kube/inject/webhook.go`, `injectPod`, `reapplyOverwrittenContainers`,
//! `getInjectionStatus`; `manifests/charts/istio-control/istio-discovery/files/
//! injection-template.yaml` and `gateway-injection-template.yaml`):
//!
//! * the injector adds `istio-proxy` (a container, or an init container with `restartPolicy:
//!   Always` for native sidecars) and `istio-init` (or `istio-validation` when the Istio CNI plugin
//!   installs the rules) and records their names in the pod annotation `sidecar.istio.io/status`;
//! * a container of the same name written in the pod (or its template) is merged *over* the
//!   injected one: its `image` (unless `auto`), `command`, `args` and `securityContext` replace the
//!   injector's. That is how Istio's gateway Deployments are written (`istio-proxy` with `image:
//!   auto`, UID and GID 1337), and also how Envoy can be swapped for anything;
//! * the injected `istio-proxy` runs `pilot-agent proxy sidecar|router` (`args`, never
//!   `command`), `istio-init`/`istio-validation` run `istio-iptables` (`args`); the images are the
//!   injector's (`global.hub`/`global.proxy.image`:`global.tag`, or `sidecar.istio.io/proxyImage`).
//!
//! So a container named like Istio's counts as Istio's when it has no `command`, its `args` (if
//! any) start with Istio's verb, its image is the injector's (or `auto`, or absent in a
//! template) and, on a Pod, the injector's status annotation lists it. Anything else is the
//! pod's own container wearing Istio's name: `wl-proxy-override` refuses it, and the UID,
//! capability and privilege rules judge it like any application container.

use super::{Action, Ctx, Rule, Violation};
use crate::context::{Lookup, Need};
use crate::mesh::MeshContext;
use crate::model::workload::{
    Container, InjectionStatus, PodTemplate, INIT_CONTAINER, PROXY_CONTAINER, VALIDATION_CONTAINER,
};
use crate::resource::Kind;
use serde_json::Value;

const KINDS: &[Kind] = Kind::WORKLOADS;

/// What a container of a pod template is to the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// `istio-proxy`: a container, or a native sidecar (init container, `restartPolicy: Always`).
    Proxy,
    /// `istio-init`: installs the iptables capture (needs NET_ADMIN and NET_RAW, runs as root).
    Init,
    /// `istio-validation`: checks the capture the Istio CNI plugin installed (runs as 1337).
    Validation,
    /// Everything else, ephemeral containers included (the injector never adds those).
    App,
}

impl Role {
    /// The verb Istio's container runs as its first argument.
    fn verb(self) -> &'static str {
        match self {
            Role::Proxy => "proxy",
            _ => "istio-iptables",
        }
    }
}

/// The role a container's name and place give it.
pub(crate) fn role(c: &Container<'_>) -> Role {
    match (c.list, c.name()) {
        ("containers", PROXY_CONTAINER) => Role::Proxy,
        ("initContainers", PROXY_CONTAINER) if c.is_native_sidecar() => Role::Proxy,
        ("initContainers", INIT_CONTAINER) => Role::Init,
        ("initContainers", VALIDATION_CONTAINER) => Role::Validation,
        _ => Role::App,
    }
}

/// How a container named like one of Istio's differs from what Istio's injector runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Deviation {
    /// On a Pod: the injector's status annotation does not list it (or there is none).
    NotInjected,
    /// An image that is not the injector's.
    Image(String),
    /// A `command` of its own (the injector sets none).
    Command,
    /// `args` that do not start with Istio's verb.
    Args(String),
}

/// The repository of an image reference (no tag, no digest), with Docker Hub's implicit
/// prefixes removed, so `docker.io/istio/proxyv2:1.27.1` and `istio/proxyv2@sha256:…` compare
/// equal.
pub(crate) fn repository(image: &str) -> &str {
    // Byte positions of ASCII separators (never inside a multi-byte character): every pod's
    // proxy image is compared with each injector's on every review.
    let bytes = image.as_bytes();
    let image = &image[..bytes.iter().position(|&b| b == b'@').unwrap_or(bytes.len())];
    let bytes = image.as_bytes();
    let last_slash = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let image = match bytes[last_slash..].iter().position(|&b| b == b':') {
        Some(colon) => &image[..last_slash + colon],
        None => image,
    };
    let image = image
        .strip_prefix("docker.io/")
        .or_else(|| image.strip_prefix("index.docker.io/"))
        .unwrap_or(image);
    image.strip_prefix("library/").unwrap_or(image)
}

/// Whether `image` is Istio's proxy image as the mesh installs it. With injector `values` read
/// (the mesh as installed), only images from the repositories the injectors give new pods count
/// (any tag: older and newer proxies, distroless and debug variants); without them, an image
/// whose name (last path segment) starts with `proxyv2`, as in every distribution (istio/proxyv2,
/// OpenShift's proxyv2-rhel9, ASM's asm/proxyv2, registry mirrors). `auto` is the placeholder
/// the injector replaces.
pub(crate) fn proxy_image_accepted(mesh: &MeshContext, image: &str) -> bool {
    if image == "auto" {
        return true;
    }
    let mut known = mesh
        .injectors()
        .iter()
        .filter_map(|c| c.proxy_image.as_deref())
        .peekable();
    if known.peek().is_some() {
        let repo = repository(image);
        return known.any(|k| repository(k) == repo);
    }
    let last = repository(image).rsplit('/').next().unwrap_or(image);
    last.starts_with("proxyv2")
}

/// How container `c` (named like one of Istio's) differs from what Istio's injector runs, first
/// difference first; `None` when it is Istio's. On a Pod, `status` is the injector's record and
/// `apps` whether the pod runs application containers ([`runs_applications`]).
pub(crate) fn deviation(
    mesh: &MeshContext,
    t: &PodTemplate<'_>,
    c: &Container<'_>,
    status: Option<&InjectionStatus<'_>>,
    apps: bool,
) -> Option<Deviation> {
    let role = role(c);
    if role == Role::App {
        return None;
    }
    // On a Pod the injector lists what it added. A Pod that runs nothing but the proxy is a
    // gateway or a waypoint: istiod's gateway controller writes those Deployments itself (the
    // `kube-gateway` and `waypoint` templates, `sidecar.istio.io/inject: "false"`), so no
    // status annotation lists their proxy, and there is no application beside it to keep in.
    if t.is_pod() && apps && !status.is_some_and(|s| s.lists(c.list, c.name())) {
        return Some(Deviation::NotInjected);
    }
    if let Some(image) = c.image() {
        if !proxy_image_accepted(mesh, image) {
            return Some(Deviation::Image(image.to_owned()));
        }
    }
    if c.has_command() {
        return Some(Deviation::Command);
    }
    let first = c.args()?;
    (first != Some(role.verb())).then(|| Deviation::Args(first.unwrap_or("").to_owned()))
}

/// The pod runs a regular container other than `istio-proxy`.
fn runs_applications(t: &PodTemplate<'_>) -> bool {
    t.containers()
        .any(|c| c.list == "containers" && c.name() != PROXY_CONTAINER)
}

/// The injector's record on a Pod (`None` for templates, where the injector has not run yet).
fn status_of<'a>(t: &'a PodTemplate<'a>) -> Option<InjectionStatus<'a>> {
    t.is_pod().then(|| t.injection_status()).flatten()
}

/// For each container of the pod (in [`PodTemplate::containers`] order), whether it is Istio's
/// own: the rules on UIDs, capabilities and privilege spare exactly these. Worked out once per
/// review.
pub(crate) fn istio_containers<'c>(ctx: &Ctx<'c>, t: &PodTemplate<'_>) -> &'c [bool] {
    ctx.cache.istio_containers.get_or_init(|| {
        let status = status_of(t);
        let apps = runs_applications(t);
        t.containers()
            .map(|c| {
                role(&c) != Role::App && deviation(ctx.mesh, t, &c, status.as_ref(), apps).is_none()
            })
            .collect()
    })
}

/// The effective interception mode is `NONE` (the pod gets no iptables capture): the annotation
/// `sidecar.istio.io/interceptionMode` when set, else `interceptionMode` of the pod's
/// `proxy.istio.io/config` (the template reads `annotation .ObjectMeta
/// "sidecar.istio.io/interceptionMode" .ProxyConfig.InterceptionMode`).
pub(crate) fn interception_none(t: &PodTemplate<'_>) -> bool {
    match t.annotation(INTERCEPTION_MODE) {
        Some(mode) => mode.trim().eq_ignore_ascii_case("NONE"),
        None => proxy_config_interception(t).is_some_and(|m| m.eq_ignore_ascii_case("NONE")),
    }
}

/// `sidecar.istio.io/interceptionMode`.
pub(crate) const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";
/// `proxy.istio.io/config`: a ProxyConfig (YAML or JSON) that overrides the mesh's
/// `defaultConfig` for this pod.
pub(crate) const PROXY_CONFIG: &str = "proxy.istio.io/config";

/// `interceptionMode` (or its proto name `interception_mode`) of the pod's
/// `proxy.istio.io/config`, when it parses and sets one.
pub(crate) fn proxy_config_interception(t: &PodTemplate<'_>) -> Option<String> {
    let text = t.annotation(PROXY_CONFIG)?;
    if text.trim().is_empty() {
        return None;
    }
    let v: Value = serde_saphyr::from_str(text).ok()?;
    let mode = v
        .get("interceptionMode")
        .or_else(|| v.get("interception_mode"))?;
    match mode {
        Value::String(s) => Some(s.trim().to_owned()),
        // The proto enum as a number: NONE is 3 (REDIRECT 0, TPROXY 1).
        Value::Number(n) if n.as_u64() == Some(3) => Some("NONE".to_owned()),
        _ => None,
    }
}

pub(crate) static PROXY_OVERRIDE: Rule = Rule {
    id: "wl-proxy-override",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "an istio-proxy, istio-init or istio-validation container that is not what Istio's injector runs: a command or args of its own (a container written with that name is merged over the injected one), or on a Pod one the injector's sidecar.istio.io/status does not list, or a hand-written sidecar (no injector selects the pod) without the init container that installs its capture",
    example_fix: "remove the container (or its command and args) and let Istio's injector add it; to tune the proxy use its annotations (sidecar.istio.io/proxyCPU, ...)",
    needs: &[Need::NamespaceLabels],
    check: |review, ctx, out| {
        let Some(t) = ctx.cache.template(review) else { return };
        let istios = istio_containers(ctx, t);
        // The details are worked out only for a container that is not Istio's (rare).
        let status = std::cell::OnceCell::new();
        let apps = runs_applications(t);
        let mut proxy: Option<Container<'_>> = None;
        let mut capture = false;
        for (c, istios) in t.containers().zip(istios) {
            let role = role(&c);
            if role == Role::App {
                continue;
            }
            match role {
                Role::Proxy => proxy = Some(c),
                _ => capture = true,
            }
            if *istios {
                continue;
            }
            let status = status.get_or_init(|| status_of(t));
            let Some(d) = deviation(ctx.mesh, t, &c, status.as_ref(), apps) else {
                continue;
            };
            let name = c.name();
            let (path, what) = match d {
                // An image of its own is wl-proxy-image's.
                Deviation::Image(_) => continue,
                Deviation::NotInjected => (
                    t.path(&c.rest("")),
                    format!(
                        "container {name:?} was not added by Istio's sidecar injector: the pod's {} annotation does not list it, so it is the pod's own container under Istio's name (a proxy that nothing configures, or an init container that installs no capture), and the pod runs outside the mesh while looking injected",
                        crate::model::workload::STATUS_ANNOTATION
                    ),
                ),
                Deviation::Command => (
                    t.path(&c.rest("command")),
                    format!(
                        "container {name:?} sets its own command: Istio's injector merges a container of this name over the one it injects, so this command runs instead of {}, and the pod looks injected while {}",
                        if role == Role::Proxy { "the proxy (pilot-agent and Envoy)" } else { "istio-iptables" },
                        if role == Role::Proxy { "nothing enforces mTLS or AuthorizationPolicy" } else { "no traffic capture is installed" }
                    ),
                ),
                Deviation::Args(first) => (
                    t.path(&c.rest("args")),
                    format!(
                        "container {name:?} sets its own args (starting {first:?}, not {:?}): Istio's injector merges a container of this name over the one it injects, so these replace Istio's, and {}",
                        role.verb(),
                        if role == Role::Proxy { "the proxy no longer runs as Istio configures it" } else { "the iptables capture is not installed as Istio configures it" }
                    ),
                ),
            };
            out.push(Violation::new(
                path,
                what,
                format!("remove the {name} container's command and args (or the whole container) and let Istio's injector write it; tune the proxy with its annotations (sidecar.istio.io/proxyCPU, proxy.istio.io/config, ...) instead"),
            ));
        }
        // Istio's injector renders a sidecar (not a gateway: `proxy router`) with the container
        // that installs its capture, unless interception is NONE (wl-traffic-bypass). A pod that
        // no injector was sent (its namespace and labels select none) was written by hand, and
        // then nothing else vouches for the capture.
        let sidecar = proxy.and_then(|p| p.arg(1)) == Some("sidecar");
        if !t.is_pod() || !sidecar || capture || interception_none(t) {
            return;
        }
        let Lookup::Found(labels) = ctx.cluster.namespace_labels(review.namespace) else {
            return; // cannot tell whether the injector wrote it
        };
        let (pl, pa) = (t.label_view(), t.annotation_view());
        if ctx
            .mesh
            .injection(review.namespace, &labels, &pl, &pa, t.host_network())
            .inject
        {
            return; // the injector rendered this pod; it strips and re-renders its own containers
        }
        out.push(Violation::new(
            t.path("spec.initContainers"),
            format!(
                "the pod runs Istio's sidecar but neither {INIT_CONTAINER} nor {VALIDATION_CONTAINER}, and no injector was sent this pod (namespace {:?} and its labels select none), so nothing installs the iptables rules that send its traffic through the proxy: connections reach the application directly, without mTLS or AuthorizationPolicy",
                review.namespace
            ),
            "let Istio's injector write the pod: remove the hand-written istio-proxy and create the pod in a namespace labelled for injection",
        ));
    },
};

/// Capabilities that let a container rewrite the pod's iptables (or send around them).
const NET_CAPABILITIES: &[&str] = &["NET_ADMIN", "NET_RAW", "ALL"];

/// The capability as the runtime reads it (`CAP_NET_ADMIN` and `net_admin` are `NET_ADMIN`).
fn capability(v: &str) -> String {
    let v = v.trim().to_ascii_uppercase();
    v.strip_prefix("CAP_").map(str::to_owned).unwrap_or(v)
}

pub static NET_ADMIN: Rule = Rule {
    id: "wl-net-admin",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "a container other than Istio's own (ephemeral containers included) that is privileged or adds NET_ADMIN or NET_RAW: it can rewrite the pod's iptables and send traffic around the sidecar",
    example_fix: "securityContext: {privileged: false, capabilities: {drop: [ALL]}}",
    needs: &[],
    check: |review, ctx, out| {
        let Some(t) = ctx.cache.template(review) else { return };
        let istios = istio_containers(ctx, t);
        for (c, istios) in t.containers().zip(istios) {
            if *istios {
                continue; // istio-init needs NET_ADMIN and NET_RAW; a TPROXY istio-proxy too
            }
            let name = c.name();
            let kind = if c.list == "ephemeralContainers" {
                "ephemeral container"
            } else {
                "container"
            };
            if c.privileged() {
                out.push(Violation::new(
                    t.path(&c.rest("securityContext.privileged")),
                    format!("{kind} {name:?} is privileged: it holds every capability, NET_ADMIN included, so it can rewrite the pod's iptables and send the pod's traffic around the sidecar, without mTLS or AuthorizationPolicy"),
                    "run it unprivileged (securityContext.privileged: false); if it must be, exempt this workload from wl-net-admin in the meshguard policy",
                ));
            }
            for (i, cap) in c.added_capabilities().iter().enumerate() {
                let Some(raw) = cap.ok().map(|s| s.as_str()) else { continue };
                let cap = capability(raw);
                if !NET_CAPABILITIES.contains(&cap.as_str()) {
                    continue;
                }
                let what = match cap.as_str() {
                    "NET_RAW" => "NET_RAW lets it open raw sockets and craft packets outside the proxy's connections",
                    "ALL" => "ALL includes NET_ADMIN, which lets it rewrite the pod's iptables",
                    _ => "NET_ADMIN lets it rewrite the pod's iptables",
                };
                out.push(Violation::new(
                    t.path(&c.rest(&format!("securityContext.capabilities.add[{i}]"))),
                    format!("{kind} {name:?} adds capability {raw:?}: {what}, sending the pod's traffic around the sidecar, without mTLS or AuthorizationPolicy (the pod shares one network namespace)"),
                    format!("remove {raw} from securityContext.capabilities.add; if the container really needs it, exempt this workload from wl-net-admin in the meshguard policy"),
                ));
            }
        }
    },
};

/// `inject.istio.io/templates`: the injection templates to render instead of the default ones.
pub(crate) const TEMPLATES_ANNOTATION: &str = "inject.istio.io/templates";

/// Templates of Istio's chart that install no capture (a gateway's proxy, proxyless gRPC, a
/// waypoint), for when the injector's ConfigMap is not visible.
const NON_CAPTURING_BUILTINS: &[&str] = &[
    "gateway",
    "grpc-agent",
    "grpc-simple",
    "waypoint",
    "kube-gateway",
    "agentgateway",
    "agentgateway-waypoint",
];

/// What the mesh says about one template name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Capture {
    Yes,
    No,
    /// A name meshguard cannot resolve (a custom template of an injector it does not see).
    Unknown,
}

/// Whether template `name` installs the pod's capture, from the injectors' ConfigMaps (their
/// `templates` and `aliases`) when any is visible, else from Istio's chart.
fn captures(mesh: &MeshContext, name: &str) -> Capture {
    let observed: Vec<_> = mesh.injectors().iter().filter(|c| c.observed()).collect();
    if observed.iter().all(|c| c.templates.is_empty()) {
        return match name {
            "sidecar" => Capture::Yes,
            n if NON_CAPTURING_BUILTINS.contains(&n) => Capture::No,
            _ => Capture::Unknown,
        };
    }
    let mut known = false;
    for c in &observed {
        let names: Vec<&str> = match c.aliases.get(name) {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => vec![name],
        };
        for n in names {
            if c.capturing_templates.iter().any(|t| t == n) {
                return Capture::Yes;
            }
            known |= c.templates.iter().any(|t| t == n);
        }
    }
    if known {
        Capture::No
    } else {
        Capture::Unknown
    }
}

pub(crate) static INJECTION_TEMPLATE: Rule = Rule {
    id: "wl-injection-template",
    kinds: KINDS,
    default_action: Action::Deny,
    summary: "inject.istio.io/templates naming only templates that install no traffic capture (gateway, grpc-agent, ...) on a pod that runs application containers: it gets a proxy, but its traffic never goes through it",
    example_fix: "remove the inject.istio.io/templates annotation (the default sidecar template captures the pod's traffic)",
    needs: &[],
    check: |review, ctx, out| {
        let Some(t) = ctx.cache.template(review) else { return };
        let Some(value) = t.annotation(TEMPLATES_ANNOTATION) else { return };
        let names: Vec<&str> = value.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
        if names.is_empty() {
            return;
        }
        let verdicts: Vec<Capture> = names.iter().map(|n| captures(ctx.mesh, n)).collect();
        if !verdicts.iter().all(|v| *v == Capture::No) {
            return; // one of them captures, or meshguard cannot tell
        }
        // A gateway Deployment (Istio's documented form) runs only the proxy.
        let apps: Vec<&str> = t
            .containers()
            .filter(|c| c.list == "containers" && c.name() != PROXY_CONTAINER)
            .map(|c| c.name())
            .collect();
        if apps.is_empty() {
            return;
        }
        out.push(Violation::new(
            t.annotation_path(TEMPLATES_ANNOTATION),
            format!(
                "{TEMPLATES_ANNOTATION}: {value:?} selects injection templates that install no traffic capture (no istio-init or istio-validation), so container(s) {} get a proxy beside them but their traffic never goes through it: connections reach them directly, without mTLS or AuthorizationPolicy",
                apps.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
            ),
            "remove the annotation (the default sidecar template captures the pod's traffic), or add sidecar to the list; a gateway Deployment runs only its istio-proxy container",
        ));
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::context::NoCluster;
    use crate::rules::testing::obj;
    use kube::core::DynamicObject;
    use serde_json::json;

    fn pod(annotations: Value, spec: Value) -> DynamicObject {
        obj(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "w", "namespace": "prod", "annotations": annotations},
            "spec": spec}))
    }

    fn deployment(annotations: Value, spec: Value) -> DynamicObject {
        obj(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "w", "namespace": "prod"},
            "spec": {"template": {"metadata": {"annotations": annotations}, "spec": spec}}}))
    }

    fn run(rule: &Rule, o: &DynamicObject) -> Vec<Violation> {
        run_mesh(rule, o, &MeshContext::default())
    }

    fn run_mesh(rule: &Rule, o: &DynamicObject, mesh: &MeshContext) -> Vec<Violation> {
        run_cluster(rule, o, mesh, &NoCluster)
    }

    /// In namespace prod with these labels.
    fn run_labelled(rule: &Rule, o: &DynamicObject, labels: &[(&str, &str)]) -> Vec<Violation> {
        let cluster =
            crate::inventory::Inventory::complete(Vec::new()).with_namespace("prod", labels);
        run_cluster(rule, o, &MeshContext::default(), &cluster)
    }

    fn run_cluster(
        rule: &Rule,
        o: &DynamicObject,
        mesh: &MeshContext,
        cluster: &dyn crate::context::ClusterView,
    ) -> Vec<Violation> {
        let kind = if o.types.as_ref().is_some_and(|t| t.kind == "Pod") {
            Kind::Pod
        } else {
            Kind::Deployment
        };
        let mut out = Vec::new();
        let review = crate::resource::Review::create(kind, "v1", "prod", "w", o);
        let ctx = Ctx {
            policy: &Policy::default(),
            mesh,
            cluster,
            cache: &crate::rules::ReviewCache::default(),
        };
        (rule.check)(&review, &ctx, &mut out);
        out
    }

    /// The status annotation Istio writes for the classic (iptables) sidecar.
    fn status(init: &[&str], containers: &[&str]) -> Value {
        json!({"sidecar.istio.io/status": json!({"initContainers": init, "containers": containers,
            "volumes": ["istio-envoy"], "imagePullSecrets": null, "revision": "default"}).to_string()})
    }

    /// A pod as Istio's injector writes it (the captured review's shape, istio 1.24).
    fn injected() -> DynamicObject {
        pod(
            status(&["istio-init"], &["istio-proxy"]),
            json!({"initContainers": [{"name": "istio-init", "image": "docker.io/istio/proxyv2:1.24.0",
                    "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337"],
                    "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                        "runAsUser": 0, "runAsNonRoot": false}}],
                "containers": [{"name": "app", "image": "nginx"},
                    {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0",
                     "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
                     "securityContext": {"runAsUser": 1337, "runAsGroup": 1337}}]}),
        )
    }

    /// Istio's documented gateway Deployment (Installing Gateways, "gateway injection").
    fn gateway() -> DynamicObject {
        deployment(
            json!({"inject.istio.io/templates": "gateway"}),
            json!({"securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
                "containers": [{"name": "istio-proxy", "image": "auto",
                    "securityContext": {"capabilities": {"drop": ["ALL"]}, "runAsUser": 1337, "runAsGroup": 1337}}]}),
        )
    }

    #[test]
    fn repositories_compare_without_tag_digest_or_docker_hub_prefix() {
        assert_eq!(
            repository("docker.io/istio/proxyv2:1.27.1"),
            "istio/proxyv2"
        );
        assert_eq!(repository("istio/proxyv2@sha256:abc"), "istio/proxyv2");
        assert_eq!(
            repository("registry.local:5000/istio/proxyv2:1.2"),
            "registry.local:5000/istio/proxyv2"
        );
        assert_eq!(repository("docker.io/library/nginx"), "nginx");
        assert!(proxy_image_accepted(&MeshContext::default(), "auto"));
        assert!(proxy_image_accepted(
            &MeshContext::default(),
            "gcr.io/asm/proxyv2:1.2-asm"
        ));
        assert!(!proxy_image_accepted(
            &MeshContext::default(),
            "evil/envoy:1"
        ));
    }

    #[test]
    fn the_injectors_images_are_the_only_ones_once_known() {
        use crate::mesh::testing::{injector_cm, mesh_of};
        let mut cm = injector_cm("default", "policy: enabled\n", "");
        cm.data.get_or_insert_default().insert(
            "values".into(),
            r#"{"global": {"hub": "registry.corp/istio", "tag": "1.27.1"}}"#.into(),
        );
        let mesh = mesh_of(&[], &[cm]);
        assert!(proxy_image_accepted(
            &mesh,
            "registry.corp/istio/proxyv2:1.26.0-distroless"
        ));
        assert!(!proxy_image_accepted(
            &mesh,
            "attacker.example/proxyv2:1.27.1"
        ));
        assert!(!proxy_image_accepted(
            &mesh,
            "docker.io/istio/proxyv2:1.27.1"
        ));
    }

    #[test]
    fn injected_pods_and_gateways_are_istios_own() {
        for rule in [&PROXY_OVERRIDE, &NET_ADMIN, &INJECTION_TEMPLATE] {
            assert!(run(rule, &injected()).is_empty(), "{}", rule.id);
            assert!(run(rule, &gateway()).is_empty(), "{}", rule.id);
        }
        // Native sidecars and the CNI's validation container too.
        let native = pod(
            status(&["istio-validation", "istio-proxy"], &[]),
            json!({"initContainers": [
                    {"name": "istio-validation", "image": "docker.io/istio/proxyv2:1.24.0",
                     "args": ["istio-iptables", "--run-validation", "--skip-rule-apply"],
                     "securityContext": {"runAsUser": 1337, "runAsGroup": 1337}},
                    {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "restartPolicy": "Always",
                     "args": ["proxy", "sidecar"], "securityContext": {"runAsUser": 1337, "runAsGroup": 1337}}],
                "containers": [{"name": "app", "image": "httpd"}]}),
        );
        for rule in [&PROXY_OVERRIDE, &NET_ADMIN] {
            assert!(run(rule, &native).is_empty(), "{}", rule.id);
        }
        // A template that only tunes the proxy's security context (Istio's customizing
        // injection) is merged over the injected container: fine.
        let tuned = deployment(
            json!({}),
            json!({"containers": [{"name": "app", "image": "app"},
                {"name": "istio-proxy", "image": "auto", "securityContext": {"runAsUser": 1337}}]}),
        );
        assert!(run(&PROXY_OVERRIDE, &tuned).is_empty());
    }

    #[test]
    fn gateway_and_waypoint_pods_istiod_writes_are_istios_own() {
        // istiod's gateway controller renders these Deployments itself (kube-gateway.yaml,
        // waypoint.yaml): no injector, no status annotation, only the proxy.
        let waypoint = pod(
            json!({"sidecar.istio.io/inject": "false"}),
            json!({"containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0",
                "args": ["proxy", "waypoint", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
                "securityContext": {"privileged": false, "runAsUser": 1337, "runAsGroup": 1337,
                    "capabilities": {"drop": ["ALL"]}}}]}),
        );
        let t = PodTemplate::of(Kind::Pod, &waypoint).expect("template");
        let c = t.containers().next().expect("proxy");
        assert_eq!(
            deviation(&MeshContext::default(), &t, &c, None, false),
            None
        );
        for rule in [&PROXY_OVERRIDE, &NET_ADMIN] {
            assert!(run_labelled(rule, &waypoint, &[]).is_empty(), "{}", rule.id);
        }
    }

    #[test]
    fn proxy_override_refuses_istios_names_on_other_containers() {
        // A command or args of its own replace what the injector runs.
        let d = deployment(
            json!({}),
            json!({"containers": [{"name": "app", "image": "app"},
                {"name": "istio-proxy", "image": "auto", "command": ["sleep", "infinity"]}],
                "initContainers": [{"name": "istio-init", "args": ["sh", "-c", "true"]}]}),
        );
        let found = run(&PROXY_OVERRIDE, &d);
        let paths: Vec<&str> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.template.spec.containers[1].command",
                "spec.template.spec.initContainers[0].args"
            ]
        );
        assert!(found[0].message.contains("runs instead of the proxy"));
        assert!(found[1].message.contains("starting \"sh\""));
        // On a Pod: a proxy the injector did not add (no status annotation lists it).
        let hand = pod(
            json!({}),
            json!({"containers": [{"name": "app", "image": "app"},
                {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "args": ["proxy", "sidecar"]}]}),
        );
        let found = run_labelled(&PROXY_OVERRIDE, &hand, &[]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].path, "spec.containers[1]");
        assert!(found[0]
            .message
            .contains("was not added by Istio's sidecar injector"));
        // ... and, with no injector sent this pod, a sidecar without the container that
        // installs its capture.
        assert_eq!(found[1].path, "spec.initContainers");
        let forged = pod(
            status(&[], &["istio-proxy"]),
            json!({"containers": [{"name": "app", "image": "app"},
                {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "args": ["proxy", "sidecar"]}]}),
        );
        let found = run_labelled(&PROXY_OVERRIDE, &forged, &[]);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains(
            "neither istio-init nor istio-validation, and no injector was sent this pod"
        ));
        // Where the injector renders the pod (it strips and re-renders its own containers), or
        // nobody can tell, the status is taken as written.
        assert!(
            run_labelled(&PROXY_OVERRIDE, &forged, &[("istio-injection", "enabled")]).is_empty()
        );
        assert!(run(&PROXY_OVERRIDE, &forged).is_empty());
        // interceptionMode NONE is wl-traffic-bypass's.
        let mut none = forged.clone();
        none.metadata
            .annotations
            .get_or_insert_default()
            .insert(INTERCEPTION_MODE.into(), "NONE".into());
        assert!(run_labelled(&PROXY_OVERRIDE, &none, &[]).is_empty());
    }

    #[test]
    fn net_admin_and_privileged_app_containers_are_refused() {
        let d = deployment(
            json!({}),
            json!({"containers": [
                {"name": "app", "image": "app", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "cap_net_admin"]}}},
                {"name": "sniffer", "image": "tcpdump", "securityContext": {"capabilities": {"add": ["NET_RAW"]}}},
                {"name": "root", "image": "x", "securityContext": {"privileged": true}}],
                "initContainers": [{"name": "setup", "image": "x", "securityContext": {"capabilities": {"add": ["ALL"]}}}]}),
        );
        let found = run(&NET_ADMIN, &d);
        let paths: Vec<&str> = found.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.template.spec.containers[0].securityContext.capabilities.add[1]",
                "spec.template.spec.containers[1].securityContext.capabilities.add[0]",
                "spec.template.spec.containers[2].securityContext.privileged",
                "spec.template.spec.initContainers[0].securityContext.capabilities.add[0]",
            ]
        );
        // A container that calls itself istio-init is spared only when it is Istio's.
        let fake = pod(
            json!({}),
            json!({"initContainers": [{"name": "istio-init", "image": "evil/iptables",
                "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}],
                "containers": [{"name": "app", "image": "app"}]}),
        );
        assert_eq!(run(&NET_ADMIN, &fake).len(), 1);
        // Ephemeral containers are containers like any other.
        let debug = pod(
            status(&["istio-init"], &["istio-proxy"]),
            json!({"containers": [{"name": "app", "image": "app"}],
                "ephemeralContainers": [{"name": "debugger", "image": "busybox",
                    "securityContext": {"privileged": true}}]}),
        );
        let found = run(&NET_ADMIN, &debug);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.ephemeralContainers[0].securityContext.privileged"
        );
        assert!(found[0]
            .message
            .starts_with("ephemeral container \"debugger\""));
        // Dropping capabilities, or adding harmless ones, is fine.
        let fine = deployment(
            json!({}),
            json!({"containers": [{"name": "app", "image": "app", "securityContext": {"privileged": false,
                "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}}}]}),
        );
        assert!(run(&NET_ADMIN, &fine).is_empty());
    }

    #[test]
    fn templates_without_capture_on_app_pods_are_refused() {
        for value in ["gateway", "grpc-agent", " gateway , waypoint "] {
            let d = deployment(
                json!({"inject.istio.io/templates": value}),
                json!({"containers": [{"name": "app", "image": "app"}]}),
            );
            let found = run(&INJECTION_TEMPLATE, &d);
            assert_eq!(found.len(), 1, "{value}");
            assert_eq!(
                found[0].path,
                "spec.template.metadata.annotations[\"inject.istio.io/templates\"]"
            );
            assert!(found[0].message.contains("container(s) \"app\""));
        }
        // The sidecar template among them captures; an unknown name is not judged.
        for value in ["sidecar", "gateway,sidecar", "custom", ""] {
            let d = deployment(
                json!({"inject.istio.io/templates": value}),
                json!({"containers": [{"name": "app", "image": "app"}]}),
            );
            assert!(run(&INJECTION_TEMPLATE, &d).is_empty(), "{value}");
        }
    }

    #[test]
    fn templates_are_read_from_the_injector_when_visible() {
        use crate::mesh::testing::{injector_cm, mesh_of};
        let config = "policy: enabled\ntemplates:\n  sidecar: |\n    initContainers:\n    - name: istio-init\n      args: [istio-iptables]\n  mine: |\n    spec:\n      initContainers:\n      - name: istio-init\n        args: [istio-iptables, -p, \"15001\"]\n  plain: |\n    spec: {}\naliases:\n  both: [plain, mine]\n";
        let mesh = mesh_of(&[], &[injector_cm("default", config, "")]);
        let app = |value: &str| {
            deployment(
                json!({"inject.istio.io/templates": value}),
                json!({"containers": [{"name": "app", "image": "app"}]}),
            )
        };
        assert!(run_mesh(&INJECTION_TEMPLATE, &app("mine"), &mesh).is_empty());
        assert!(run_mesh(&INJECTION_TEMPLATE, &app("both"), &mesh).is_empty());
        assert_eq!(run_mesh(&INJECTION_TEMPLATE, &app("plain"), &mesh).len(), 1);
        // A name this injector does not define: cannot tell.
        assert!(run_mesh(&INJECTION_TEMPLATE, &app("gateway"), &mesh).is_empty());
    }

    #[test]
    fn proxy_config_interception_reads_yaml_and_json() {
        let t = |v: &str| pod(json!({PROXY_CONFIG: v}), json!({"containers": []}));
        let mode = |o: &DynamicObject| {
            proxy_config_interception(&PodTemplate::of(Kind::Pod, o).expect("template"))
        };
        assert_eq!(
            mode(&t("interceptionMode: NONE\n")).as_deref(),
            Some("NONE")
        );
        assert_eq!(
            mode(&t(r#"{"interceptionMode": "NONE"}"#)).as_deref(),
            Some("NONE")
        );
        assert_eq!(
            mode(&t("interception_mode: TPROXY")).as_deref(),
            Some("TPROXY")
        );
        assert_eq!(mode(&t("concurrency: 2")), None);
        assert_eq!(mode(&t("{not yaml")), None);
        // The interceptionMode annotation wins over the proxy config.
        let both = pod(
            json!({PROXY_CONFIG: "interceptionMode: NONE", INTERCEPTION_MODE: "REDIRECT"}),
            json!({}),
        );
        assert!(!interception_none(
            &PodTemplate::of(Kind::Pod, &both).expect("t")
        ));
        assert!(interception_none(
            &PodTemplate::of(Kind::Pod, &t("interceptionMode: NONE")).expect("t")
        ));
    }
}
