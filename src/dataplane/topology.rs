//! Waypoints and the Services bound to them: the ambient topology of a set of objects (a
//! cluster listing or manifests), read the way istiod reads it (istio/istio
//! `pilot/pkg/serviceregistry/ambient/waypoints.go`, `services.go`).
//!
//! * **Gateways.** Any Gateway with addresses in its status is a waypoint istiod can bind to
//!   (`gatewayToWaypointTransform`); one without is not ready. Manifests carry no status: their
//!   Gateways are assumed ready, and explanations say so. The traffic a waypoint takes is the
//!   Gateway's `istio.io/waypoint-for` label, else its GatewayClass's, else `service`. Who may bind
//!   is the `allowedRoutes.namespaces` of its HBONE listener (port 15008; or the listener the
//!   `ambient.istio.io/waypoint-inbound-binding` annotation names), default `Same`
//!   (`makeAllowedRoutes`).
//! * **Identity.** istiod deploys a Gateway as a Deployment and ServiceAccount named after it,
//!   with `-<class>` appended unless the class's controller disables the suffix (waypoints,
//!   east-west and agentgateway classes), or as the `gateway.istio.io/service-account`
//!   annotation says (`pilot/pkg/config/kube/gatewaycommon`, `GetDefaultName`,
//!   `deploymentcontroller.go`). A Deployment with the Gateway's pod label in the input wins.
//! * **Bindings.** A Service or ServiceEntry uses the waypoint its own `istio.io/use-waypoint`
//!   names, else its namespace's; `none` opts out; `istio.io/use-waypoint-namespace` names the
//!   namespace (`GetUseWaypoint`). A named waypoint that does not exist, is not ready or does not
//!   admit the namespace binds nothing, with no fallback to the namespace's label
//!   (`fetchWaypointForTarget`): istiod builds the Service without a waypoint and traffic goes
//!   straight to the pods (fail open). A Service binds only to a waypoint for `service` or `all`
//!   traffic, a pod only to one for `workload` or `all` (`fetchWaypointForService`,
//!   `fetchWaypointForWorkload`; a namespace label pointing pods at a service waypoint binds them
//!   to nothing, silently). A waypoint's own Service never has a waypoint.
//! * **Ingress.** Gateways call a Service's waypoint only with `istio.io/ingress-use-waypoint`
//!   on the Service, else its namespace (`services.go`, `ingressUseWaypointFromLabels`; used by
//!   `pilot/pkg/xds/endpoints/endpoint_builder.go`, `findServiceWaypoint`).

use super::labels::{
    go_bool, use_waypoint, UseWaypoint, GATEWAY_MANAGED, GATEWAY_NAME, GATEWAY_SERVICE_ACCOUNT,
    INGRESS_USE_WAYPOINT, MESH_CONTROLLER, USE_WAYPOINT, WAYPOINT_CLASS, WAYPOINT_FOR,
    WAYPOINT_INBOUND_BINDING,
};
use crate::mesh::{NamespaceLabels, Selector};
use crate::model::decode_part as part;
use crate::model::gateway::{GatewaySpec, GatewayStatus, Listener};
use crate::model::gateway_class::GatewayClassSpec;
use crate::model::http_route::HttpRouteSpec;
use crate::model::service::Target;
use crate::model::service_entry::ServiceEntrySpec;
use crate::model::workload::PodTemplate;
use crate::model::Str;
use crate::resource::{annotations_of, labels_of, Kind};
use kube::core::DynamicObject;
use std::collections::{BTreeMap, HashMap};

/// Controllers of the GatewayClasses Istio ships, by class name (`GetAllClasses`).
const BUILTIN_CLASSES: &[(&str, &str)] = &[
    ("istio", "istio.io/gateway-controller"),
    (WAYPOINT_CLASS, MESH_CONTROLLER),
    ("istio-east-west", "istio.io/eastwest-controller"),
    ("istio-remote", "istio.io/unmanaged-gateway"),
    ("istio-agentgateway", "istio.io/agentgateway-controller"),
    (
        "istio-agentgateway-waypoint",
        "istio.io/agentgateway-waypoint-controller",
    ),
];

/// Controllers whose deployments are named without the `-<class>` suffix (`DisableNameSuffix`).
const NO_SUFFIX_CONTROLLERS: &[&str] = &[
    MESH_CONTROLLER,
    "istio.io/eastwest-controller",
    "istio.io/agentgateway-controller",
    "istio.io/agentgateway-waypoint-controller",
];

/// What traffic a waypoint takes (`istio.io/waypoint-for`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrafficType {
    Service,
    Workload,
    All,
    None,
    /// A value Istio does not know: neither Services nor workloads bind.
    Other(String),
}

impl TrafficType {
    fn parse(v: &str) -> TrafficType {
        match v {
            "service" => TrafficType::Service,
            "workload" => TrafficType::Workload,
            "all" => TrafficType::All,
            "none" => TrafficType::None,
            other => TrafficType::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TrafficType::Service => "service",
            TrafficType::Workload => "workload",
            TrafficType::All => "all",
            TrafficType::None => "none",
            TrafficType::Other(s) => s,
        }
    }

    pub(crate) fn serves_services(&self) -> bool {
        matches!(self, TrafficType::Service | TrafficType::All)
    }

    pub(crate) fn serves_workloads(&self) -> bool {
        matches!(self, TrafficType::Workload | TrafficType::All)
    }
}

/// Which namespaces may bind to a waypoint (`allowedRoutes.namespaces.from` of its listener).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedFrom {
    Same,
    All,
    Selector(Selector),
}

impl AllowedFrom {
    fn describe(&self) -> String {
        match self {
            AllowedFrom::Same => "Same (its own namespace only)".to_owned(),
            AllowedFrom::All => "All".to_owned(),
            AllowedFrom::Selector(s) => format!("Selector {s}"),
        }
    }
}

/// Whether a Gateway has been programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// `status.addresses` set.
    Ready,
    /// A status without addresses: istiod does not treat it as a waypoint yet.
    NotReady,
    /// No status at all (a manifest): assumed ready.
    Assumed,
}

/// A Gateway API Gateway (ingress, egress or waypoint).
#[derive(Clone, Debug)]
pub struct Gateway {
    pub namespace: String,
    pub name: String,
    pub class: String,
    /// The class's controller (from the GatewayClass, else Istio's built-in classes); empty
    /// when unknown.
    pub controller: String,
    pub traffic: TrafficType,
    pub allowed: AllowedFrom,
    pub ready: Readiness,
    /// The ServiceAccount its pods run as, and where that name came from.
    pub service_account: String,
    pub service_account_from: &'static str,
    /// Decoding problems, for explanations.
    pub errors: Vec<String>,
}

impl Gateway {
    /// An Istio waypoint (class controlled by `istio.io/mesh-controller`).
    pub(crate) fn is_waypoint(&self) -> bool {
        self.controller == MESH_CONTROLLER
    }

    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The identity of its pods: `<trust domain>/ns/<namespace>/sa/<account>`.
    pub fn principal(&self, trust_domain: &str) -> String {
        format!(
            "{trust_domain}/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }

    /// `AllowsAttachmentFromNamespace`.
    pub fn admits(&self, namespace: &str, ns_labels: &BTreeMap<String, String>) -> bool {
        match &self.allowed {
            AllowedFrom::All => true,
            AllowedFrom::Same => self.namespace == namespace,
            AllowedFrom::Selector(s) => s.matches(&NamespaceLabels {
                name: namespace,
                labels: ns_labels,
            }),
        }
    }
}

/// Where a `use-waypoint` label was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelSource {
    /// On the object (Service, ServiceEntry, pod).
    Object,
    /// On its Namespace.
    Namespace,
}

impl LabelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LabelSource::Object => "its own label",
            LabelSource::Namespace => "its namespace's label",
        }
    }
}

/// Why a named waypoint binds nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unbound {
    /// No Gateway of that name (`WaypointIsNotReady`).
    Missing,
    /// The Gateway has no addresses yet (`WaypointIsNotReady`).
    NotReady,
    /// Its listener's `allowedRoutes` does not admit the namespace (`AttachmentDenied`).
    NotPermitted(String),
    /// It takes other traffic (`UnsupportedTrafficType`): what it is for.
    TrafficType(String),
}

/// The waypoint an object is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// No `istio.io/use-waypoint` applies.
    None,
    /// `istio.io/use-waypoint: none` on the object.
    OptedOut,
    /// Bound to this Gateway (index into [`Topology::gateways`]).
    Bound { gateway: usize, source: LabelSource },
    /// A waypoint is named but binds nothing: traffic goes straight to the pods (fail open).
    Unbound {
        namespace: String,
        name: String,
        source: LabelSource,
        why: Unbound,
    },
}

impl Binding {
    /// The bound waypoint, if any.
    pub fn gateway(&self) -> Option<usize> {
        match self {
            Binding::Bound { gateway, .. } => Some(*gateway),
            _ => None,
        }
    }
}

/// A Service or ServiceEntry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKind {
    Service,
    ServiceEntry,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Service => "Service",
            ServiceKind::ServiceEntry => "ServiceEntry",
        }
    }
}

/// A Service port (or ServiceEntry port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub port: u32,
    pub name: Option<String>,
    /// The container port (number) or its name.
    pub target: TargetPort,
    pub protocol: Option<String>,
    pub(crate) app_protocol: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    Number(u32),
    Name(String),
}

/// A Service (or ServiceEntry) and its waypoint.
#[derive(Clone, Debug)]
pub struct Service {
    pub kind: ServiceKind,
    pub namespace: String,
    pub name: String,
    /// Pod selector (`spec.selector`, or a ServiceEntry's `workloadSelector`); `None`: none.
    pub selector: Option<BTreeMap<String, String>>,
    pub ports: Vec<ServicePort>,
    pub binding: Binding,
    /// `istio.io/ingress-use-waypoint` on the Service, else its namespace: (label present,
    /// true).
    pub(crate) ingress_use_waypoint: (bool, bool),
    /// It is a waypoint's own Service (never bound to a waypoint).
    pub is_waypoint: bool,
}

impl Service {
    /// `Service shop/reviews`.
    pub fn label(&self) -> String {
        format!("{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }

    /// Whether its selector selects pods with these labels (a Service without selector selects
    /// none).
    pub fn selects(&self, pod_labels: &BTreeMap<String, String>) -> bool {
        self.selector.as_ref().is_some_and(|sel| {
            !sel.is_empty()
                && crate::model::label_selector::all_pairs_match(
                    pod_labels,
                    sel.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )
        })
    }
}

/// An HTTPRoute: the Gateways it attaches to and the Services it sends to.
#[derive(Clone, Debug)]
pub struct Route {
    pub namespace: String,
    pub name: String,
    /// Parent Gateways `(namespace, name)`.
    pub gateways: Vec<(String, String)>,
    /// Backend Services `(namespace, name)`, with the field path of each.
    pub(crate) backends: Vec<(String, String, String)>,
}

/// The ambient topology of a set of objects.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    namespaces: HashMap<String, BTreeMap<String, String>>,
    gateways: Vec<Gateway>,
    gateway_index: HashMap<(String, String), usize>,
    services: Vec<Service>,
    service_index: HashMap<(ServiceKind, String, String), usize>,
    routes: Vec<Route>,
}

static EMPTY: BTreeMap<String, String> = BTreeMap::new();

impl Topology {
    /// The kinds [`Topology::new`] reads.
    pub fn reads(kind: Kind) -> bool {
        matches!(
            kind,
            Kind::Namespace
                | Kind::GatewayClass
                | Kind::Gateway
                | Kind::Service
                | Kind::ServiceEntry
                | Kind::HttpRoute
        ) || kind.is_workload()
    }

    /// Read the objects (any kinds; the ones that matter are taken).
    pub fn new<B: std::borrow::Borrow<DynamicObject>>(
        objects: impl IntoIterator<Item = (Kind, B)>,
    ) -> Topology {
        let mut t = Topology::default();
        let mut classes: HashMap<String, (String, Option<String>)> = HashMap::new();
        let mut gateway_objects = Vec::new();
        let mut service_objects = Vec::new();
        let mut deployments: HashMap<(String, String), String> = HashMap::new();
        for (kind, b) in objects {
            if !Topology::reads(kind) {
                continue;
            }
            let o: &DynamicObject = b.borrow();
            let ns = || o.metadata.namespace.clone().unwrap_or_default();
            let name = || o.metadata.name.clone().unwrap_or_default();
            match kind {
                Kind::Namespace => {
                    t.namespaces.insert(name(), labels_of(o).clone());
                }
                Kind::GatewayClass => {
                    let (spec, _): (GatewayClassSpec<'_>, _) = part(o, "spec");
                    let waypoint_for = labels_of(o).get(WAYPOINT_FOR).cloned();
                    classes.insert(name(), (spec.controller_name.to_string(), waypoint_for));
                }
                Kind::Gateway => gateway_objects.push(b),
                // Read now (the object is not kept), bound to its waypoint once every Namespace
                // and Gateway is known.
                Kind::Service | Kind::ServiceEntry => {
                    service_objects.push((read_service(kind, o), labels_of(o).clone()));
                }
                Kind::HttpRoute => t.routes.push(route(o)),
                k if k.is_workload() => {
                    // The deployment istiod made for a Gateway: its pods' ServiceAccount.
                    let Some(tpl) = PodTemplate::of(k, o) else {
                        continue;
                    };
                    if let (Some(gw), Some((_, sa))) =
                        (tpl.label(GATEWAY_NAME), tpl.service_account())
                    {
                        deployments.insert((ns(), gw.to_owned()), sa.to_owned());
                    }
                }
                _ => {}
            }
        }
        for b in gateway_objects {
            let o = b.borrow();
            let g = gateway(o, &classes, &deployments);
            t.gateway_index
                .insert((g.namespace.clone(), g.name.clone()), t.gateways.len());
            t.gateways.push(g);
        }
        for (mut s, labels) in service_objects {
            t.bind_service(&mut s, &labels);
            t.service_index.insert(
                (s.kind, s.namespace.clone(), s.name.clone()),
                t.services.len(),
            );
            t.services.push(s);
        }
        t
    }

    /// Every Gateway, in input order.
    pub fn gateways(&self) -> &[Gateway] {
        &self.gateways
    }

    pub fn gateway(&self, i: usize) -> &Gateway {
        &self.gateways[i]
    }

    /// The Gateway of that namespace and name.
    pub(crate) fn find_gateway(&self, namespace: &str, name: &str) -> Option<usize> {
        self.gateway_index
            .get(&(namespace.to_owned(), name.to_owned()))
            .copied()
    }

    /// Every Service and ServiceEntry, in input order.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    pub fn service(&self, i: usize) -> &Service {
        &self.services[i]
    }

    /// A Service or ServiceEntry by kind, namespace and name.
    pub(crate) fn find_service(
        &self,
        kind: ServiceKind,
        namespace: &str,
        name: &str,
    ) -> Option<usize> {
        self.service_index
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .copied()
    }

    /// The Services of a namespace that select pods with these labels.
    pub(crate) fn services_selecting<'a>(
        &'a self,
        namespace: &'a str,
        pod_labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = usize> + 'a {
        self.services.iter().enumerate().filter_map(move |(i, s)| {
            (s.kind == ServiceKind::Service && s.namespace == namespace && s.selects(pod_labels))
                .then_some(i)
        })
    }

    /// Every HTTPRoute.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The labels of a Namespace in the input (empty when it has no Namespace object).
    pub fn namespace_labels(&self, namespace: &str) -> &BTreeMap<String, String> {
        self.namespaces.get(namespace).unwrap_or(&EMPTY)
    }

    /// The waypoint a pod with these labels uses for traffic addressed to it (its own
    /// `istio.io/use-waypoint`, else its namespace's; `fetchWaypointForWorkload`).
    pub(crate) fn workload_binding(
        &self,
        namespace: &str,
        pod_labels: &BTreeMap<String, String>,
    ) -> Binding {
        let b = self.binding(namespace, pod_labels);
        match &b {
            Binding::Bound { gateway, source } => {
                let g = &self.gateways[*gateway];
                if g.traffic.serves_workloads() {
                    b
                } else if *source == LabelSource::Namespace {
                    Binding::None // inherited from the namespace: not an error
                } else {
                    Binding::Unbound {
                        namespace: g.namespace.clone(),
                        name: g.name.clone(),
                        source: *source,
                        why: Unbound::TrafficType(g.traffic.as_str().to_owned()),
                    }
                }
            }
            _ => b,
        }
    }

    /// The waypoint a namespace's own `istio.io/use-waypoint` label names, as its Services
    /// without a label of their own bind to it (`fetchWaypointForService` on the namespace's
    /// label; [`Binding::None`] without one).
    pub(crate) fn namespace_binding(&self, namespace: &str) -> Binding {
        match self.binding(namespace, &EMPTY) {
            Binding::Bound { gateway, source }
                if !self.gateways[gateway].traffic.serves_services() =>
            {
                let g = &self.gateways[gateway];
                Binding::Unbound {
                    namespace: g.namespace.clone(),
                    name: g.name.clone(),
                    source,
                    why: Unbound::TrafficType(g.traffic.as_str().to_owned()),
                }
            }
            b => b,
        }
    }

    /// Namespaces with Namespace objects in the input.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.keys().map(String::as_str)
    }

    /// `fetchWaypointForTarget`: the object's own label, else its namespace's.
    fn binding(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Binding {
        let ns_labels = self.namespace_labels(namespace);
        let (named, source) = match use_waypoint(labels, namespace) {
            UseWaypoint::None => return Binding::OptedOut,
            UseWaypoint::Named(n, w) => ((n, w), LabelSource::Object),
            UseWaypoint::Unset => match use_waypoint(ns_labels, namespace) {
                UseWaypoint::Named(n, w) => ((n, w), LabelSource::Namespace),
                _ => return Binding::None,
            },
        };
        let unbound = |why| Binding::Unbound {
            namespace: named.0.to_owned(),
            name: named.1.to_owned(),
            source,
            why,
        };
        let Some(i) = self.find_gateway(named.0, named.1) else {
            return unbound(Unbound::Missing);
        };
        let g = &self.gateways[i];
        if g.ready == Readiness::NotReady {
            return unbound(Unbound::NotReady);
        }
        if !g.admits(namespace, ns_labels) {
            return unbound(Unbound::NotPermitted(g.allowed.describe()));
        }
        Binding::Bound { gateway: i, source }
    }

    /// Bind a Service read by [`read_service`] (`labels`: its object's) to its waypoint, and
    /// read its `istio.io/ingress-use-waypoint` (the Service's label, else its namespace's).
    fn bind_service(&self, s: &mut Service, labels: &BTreeMap<String, String>) {
        s.binding = if s.is_waypoint {
            Binding::None
        } else {
            match self.binding(&s.namespace, labels) {
                Binding::Bound { gateway, source } => {
                    let g = &self.gateways[gateway];
                    if g.traffic.serves_services() {
                        Binding::Bound { gateway, source }
                    } else {
                        Binding::Unbound {
                            namespace: g.namespace.clone(),
                            name: g.name.clone(),
                            source,
                            why: Unbound::TrafficType(g.traffic.as_str().to_owned()),
                        }
                    }
                }
                other => other,
            }
        };
        let ns_labels = self.namespace_labels(&s.namespace);
        let ingress = labels
            .get(INGRESS_USE_WAYPOINT)
            .or_else(|| ns_labels.get(INGRESS_USE_WAYPOINT));
        s.ingress_use_waypoint = (ingress.is_some(), ingress.is_some_and(|v| go_bool(v)));
    }

    /// The identities istiod creates for Gateways: `(namespace, ServiceAccount, gateway)`.
    pub(crate) fn gateway_identities(&self) -> impl Iterator<Item = (&str, &str, &Gateway)> {
        self.gateways
            .iter()
            .map(|g| (g.namespace.as_str(), g.service_account.as_str(), g))
    }

    /// A Gateway whose pods run as this identity.
    pub(crate) fn gateway_with_identity(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Option<usize> {
        self.gateways
            .iter()
            .position(|g| g.namespace == namespace && g.service_account == service_account)
    }

    /// Whether some object of a namespace carries `istio.io/use-waypoint` or the namespace does.
    pub fn namespace_uses_waypoint(&self, namespace: &str) -> bool {
        self.namespace_labels(namespace).contains_key(USE_WAYPOINT)
    }
}

/// Read a Gateway.
fn gateway(
    o: &DynamicObject,
    classes: &HashMap<String, (String, Option<String>)>,
    deployments: &HashMap<(String, String), String>,
) -> Gateway {
    let namespace = o.metadata.namespace.clone().unwrap_or_default();
    let name = o.metadata.name.clone().unwrap_or_default();
    let mut errors = Vec::new();
    let (spec, err): (GatewaySpec<'_>, _) = part(o, "spec");
    errors.extend(err);
    let class = spec.gateway_class_name.to_string();
    let (controller, class_for) = match classes.get(&class) {
        Some((c, wf)) => (c.clone(), wf.clone()),
        None => (
            BUILTIN_CLASSES
                .iter()
                .find(|(n, _)| *n == class)
                .map_or(String::new(), |(_, c)| (*c).to_owned()),
            None,
        ),
    };
    let gw_labels = labels_of(o);
    let traffic = TrafficType::parse(
        gw_labels
            .get(WAYPOINT_FOR)
            .or(class_for.as_ref())
            .map_or("service", String::as_str),
    );
    let ann = annotations_of(o);
    let allowed = allowed_from(&spec.listeners, ann.get(WAYPOINT_INBOUND_BINDING));
    let ready = match o.data.get("status") {
        None | Some(serde_json::Value::Null) => Readiness::Assumed,
        Some(_) => {
            let (status, err): (GatewayStatus<'_>, _) = part(o, "status");
            errors.extend(err);
            if status.addresses.is_empty() {
                Readiness::NotReady
            } else {
                Readiness::Ready
            }
        }
    };
    let default_name = if NO_SUFFIX_CONTROLLERS.contains(&controller.as_str()) {
        name.clone()
    } else {
        format!("{name}-{class}")
    };
    let (service_account, service_account_from) =
        match deployments.get(&(namespace.clone(), name.clone())) {
            Some(sa) => (sa.clone(), "its deployment's serviceAccountName"),
            None => match ann.get(GATEWAY_SERVICE_ACCOUNT) {
                Some(sa) if !sa.is_empty() => {
                    (sa.clone(), "annotation gateway.istio.io/service-account")
                }
                _ => (default_name, "the name istiod gives its deployment"),
            },
        };
    Gateway {
        namespace,
        name,
        class,
        controller,
        traffic,
        allowed,
        ready,
        service_account,
        service_account_from,
        errors,
    }
}

/// `makeAllowedRoutes`: the bound listener (by port of the inbound binding), else the HBONE
/// listener on 15008, else `Same`.
fn allowed_from(listeners: &[Listener<'_>], binding: Option<&String>) -> AllowedFrom {
    let bound_port = binding
        .and_then(|b| b.split_once('/'))
        .and_then(|(_, p)| p.parse::<u32>().ok());
    let listener = bound_port
        .and_then(|p| listeners.iter().find(|l| l.port == p))
        .or_else(|| {
            listeners
                .iter()
                .find(|l| l.protocol.as_str() == "HBONE" && l.port == 15008)
        });
    let Some(ns) = listener
        .and_then(|l| l.allowed_routes.as_ref())
        .and_then(|a| a.namespaces.as_ref())
    else {
        return AllowedFrom::Same;
    };
    match ns.from.as_deref().unwrap_or("Same") {
        "All" => AllowedFrom::All,
        "Selector" => AllowedFrom::Selector(Selector::from_optional(ns.selector.as_ref())),
        _ => AllowedFrom::Same,
    }
}

/// Read an HTTPRoute: parent Gateways and backend Services (core group, kind Service).
fn route(o: &DynamicObject) -> Route {
    let namespace = o.metadata.namespace.clone().unwrap_or_default();
    let (spec, _): (HttpRouteSpec<'_>, _) = part(o, "spec");
    let is = |group: &Option<Str<'_>>, kind: &Option<Str<'_>>, g: &str, k: &str| {
        group.as_deref().unwrap_or(g) == g && kind.as_deref().unwrap_or(k) == k
    };
    let gateways = spec
        .parent_refs
        .iter()
        .filter(|p| is(&p.group, &p.kind, "gateway.networking.k8s.io", "Gateway"))
        .map(|p| {
            (
                p.namespace
                    .as_ref()
                    .map_or_else(|| namespace.clone(), ToString::to_string),
                p.name.to_string(),
            )
        })
        .collect();
    let mut backends = Vec::new();
    for (ri, r) in spec.rules.iter().enumerate() {
        for (bi, b) in r.backend_refs.iter().enumerate() {
            let core =
                b.group.as_deref().unwrap_or("").is_empty() || b.group.as_deref() == Some("core");
            if core && b.kind.as_deref().unwrap_or("Service") == "Service" {
                backends.push((
                    b.namespace
                        .as_ref()
                        .map_or_else(|| namespace.clone(), ToString::to_string),
                    b.name.to_string(),
                    format!("spec.rules[{ri}].backendRefs[{bi}]"),
                ));
            }
        }
    }
    Route {
        name: o.metadata.name.clone().unwrap_or_default(),
        namespace,
        gateways,
        backends,
    }
}

/// A Service or ServiceEntry as its object gives it, not yet bound to a waypoint
/// ([`Topology::bind_service`] does that once every Namespace and Gateway is read).
fn read_service(kind: Kind, o: &DynamicObject) -> Service {
    let namespace = o.metadata.namespace.clone().unwrap_or_default();
    let name = o.metadata.name.clone().unwrap_or_default();
    let labels = labels_of(o);
    let (selector, ports, skind) = if kind == Kind::Service {
        let spec: crate::model::Service<'_> =
            crate::model::decode_spec(crate::resource::spec_of(o)).unwrap_or_default();
        let ports = spec
            .ports()
            .map(|p| {
                let port = p.number().and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
                ServicePort {
                    port,
                    name: crate::model::ok(&p.name).map(|n| n.to_string()),
                    target: match p.target() {
                        Some(Target::Name(n)) => TargetPort::Name(n.to_owned()),
                        Some(Target::Number(n)) => TargetPort::Number(n),
                        None => TargetPort::Number(port),
                    },
                    protocol: crate::model::ok(&p.protocol).map(|n| n.to_string()),
                    app_protocol: p.app_protocol().map(str::to_owned),
                }
            })
            .collect();
        let selector = crate::model::ok(&spec.selector).map(|_| spec.selector());
        (selector, ports, ServiceKind::Service)
    } else {
        let (spec, _): (ServiceEntrySpec<'_>, _) = part(o, "spec");
        let ports = spec
            .ports
            .iter()
            .map(|p| ServicePort {
                port: p.number,
                name: Some(p.name.to_string()),
                target: TargetPort::Number(p.target_port.unwrap_or(p.number)),
                protocol: p.protocol.as_ref().map(ToString::to_string),
                app_protocol: None,
            })
            .collect();
        (
            spec.workload_selector.map(|w| {
                w.labels
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            ports,
            ServiceKind::ServiceEntry,
        )
    };
    // A waypoint's (or east-west gateway's) own Service has no waypoint.
    let managed = labels.get(GATEWAY_MANAGED).map(String::as_str);
    let is_waypoint = matches!(
        managed,
        Some("istio.io-mesh-controller" | "istio.io-eastwest-controller")
    );
    Service {
        kind: skind,
        namespace,
        name,
        selector,
        ports,
        binding: Binding::None,
        ingress_use_waypoint: (false, false),
        is_waypoint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> (Kind, DynamicObject) {
        let o: DynamicObject = serde_json::from_value(v).expect("object");
        let t = o.types.clone().expect("types");
        (
            Kind::from_api_version(&t.api_version, &t.kind).expect("kind"),
            o,
        )
    }

    fn topology(objects: &[(Kind, DynamicObject)]) -> Topology {
        Topology::new(objects.iter().map(|(k, o)| (*k, o)))
    }

    fn ns(name: &str, labels: serde_json::Value) -> (Kind, DynamicObject) {
        obj(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}),
        )
    }

    fn waypoint(
        ns: &str,
        name: &str,
        labels: serde_json::Value,
        from: Option<serde_json::Value>,
        status: Option<serde_json::Value>,
    ) -> (Kind, DynamicObject) {
        let mut listener = json!({"name": "mesh", "port": 15008, "protocol": "HBONE"});
        if let Some(f) = from {
            listener["allowedRoutes"] = json!({"namespaces": f});
        }
        let mut v = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"gatewayClassName": "istio-waypoint", "listeners": [listener]}});
        if let Some(s) = status {
            v["status"] = s;
        }
        obj(v)
    }

    fn service(ns: &str, name: &str, labels: serde_json::Value) -> (Kind, DynamicObject) {
        obj(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        )
    }

    fn binding_of(t: &Topology, ns: &str, name: &str) -> Binding {
        let i = t
            .find_service(ServiceKind::Service, ns, name)
            .expect("service");
        t.service(i).binding.clone()
    }

    #[test]
    fn services_bind_by_their_label_or_their_namespaces() {
        let t = topology(&[
            ns(
                "shop",
                json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}),
            ),
            waypoint("shop", "waypoint", json!({}), None, None),
            service("shop", "reviews", json!({})),
            service("shop", "ratings", json!({"istio.io/use-waypoint": "none"})),
            service(
                "shop",
                "orders",
                json!({"istio.io/use-waypoint": "missing"}),
            ),
        ]);
        let wp = t.find_gateway("shop", "waypoint").expect("gw");
        assert_eq!(
            binding_of(&t, "shop", "reviews"),
            Binding::Bound {
                gateway: wp,
                source: LabelSource::Namespace
            }
        );
        assert_eq!(binding_of(&t, "shop", "ratings"), Binding::OptedOut);
        // The object's own label does not fall back to the namespace's waypoint.
        assert!(matches!(
            binding_of(&t, "shop", "orders"),
            Binding::Unbound {
                why: Unbound::Missing,
                source: LabelSource::Object,
                ..
            }
        ));
        let g = t.gateway(wp);
        assert!(g.is_waypoint() && g.service_account == "waypoint");
        assert_eq!(
            g.principal("cluster.local"),
            "cluster.local/ns/shop/sa/waypoint"
        );
        assert_eq!(g.ready, Readiness::Assumed);
    }

    #[test]
    fn traffic_type_namespaces_and_readiness() {
        let t = topology(&[
            ns("shop", json!({"team": "a"})),
            ns("infra", json!({})),
            waypoint(
                "infra",
                "shared",
                json!({}),
                Some(json!({"from": "Selector", "selector": {"matchLabels": {"team": "a"}}})),
                None,
            ),
            waypoint("infra", "private", json!({}), None, None),
            waypoint(
                "shop",
                "wl-only",
                json!({"istio.io/waypoint-for": "workload"}),
                None,
                None,
            ),
            waypoint(
                "shop",
                "pending",
                json!({}),
                None,
                Some(json!({"conditions": []})),
            ),
            service(
                "shop",
                "a",
                json!({"istio.io/use-waypoint": "shared", "istio.io/use-waypoint-namespace": "infra"}),
            ),
            service(
                "shop",
                "b",
                json!({"istio.io/use-waypoint": "private", "istio.io/use-waypoint-namespace": "infra"}),
            ),
            service("shop", "c", json!({"istio.io/use-waypoint": "wl-only"})),
            service("shop", "d", json!({"istio.io/use-waypoint": "pending"})),
        ]);
        assert!(matches!(binding_of(&t, "shop", "a"), Binding::Bound { .. }));
        assert!(matches!(
            binding_of(&t, "shop", "b"),
            Binding::Unbound {
                why: Unbound::NotPermitted(_),
                ..
            }
        ));
        assert!(matches!(
            binding_of(&t, "shop", "c"),
            Binding::Unbound { why: Unbound::TrafficType(ref t), .. } if t == "workload"
        ));
        assert!(matches!(
            binding_of(&t, "shop", "d"),
            Binding::Unbound {
                why: Unbound::NotReady,
                ..
            }
        ));
        // A pod bound through its namespace to a service-only waypoint gets none, silently; its
        // own label is an error.
        let t2 = topology(&[
            ns("shop", json!({"istio.io/use-waypoint": "svc-wp"})),
            waypoint("shop", "svc-wp", json!({}), None, None),
            waypoint(
                "shop",
                "all-wp",
                json!({"istio.io/waypoint-for": "all"}),
                None,
                None,
            ),
        ]);
        let pod = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(t2.workload_binding("shop", &pod(&[])), Binding::None);
        assert!(matches!(
            t2.workload_binding("shop", &pod(&[("istio.io/use-waypoint", "svc-wp")])),
            Binding::Unbound {
                why: Unbound::TrafficType(_),
                ..
            }
        ));
        assert!(matches!(
            t2.workload_binding("shop", &pod(&[("istio.io/use-waypoint", "all-wp")])),
            Binding::Bound { .. }
        ));
    }

    #[test]
    fn gateway_identities_and_routes() {
        let t = topology(&[
            obj(
                json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "public", "namespace": "ingress"},
                "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
            ),
            obj(
                json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "named", "namespace": "ingress", "annotations": {"gateway.istio.io/service-account": "edge"}},
                "spec": {"gatewayClassName": "istio"}}),
            ),
            obj(
                json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "r", "namespace": "ingress"},
                "spec": {"parentRefs": [{"name": "public"}], "rules": [{"backendRefs": [{"name": "reviews", "namespace": "shop", "port": 80}]}]}}),
            ),
        ]);
        let ids: Vec<(&str, &str)> = t.gateway_identities().map(|(n, s, _)| (n, s)).collect();
        assert_eq!(ids, [("ingress", "public-istio"), ("ingress", "edge")]);
        assert!(!t.gateway(0).is_waypoint());
        let r = &t.routes()[0];
        assert_eq!(r.gateways, [("ingress".to_owned(), "public".to_owned())]);
        assert_eq!(r.backends[0].0, "shop");
        assert_eq!(r.backends[0].2, "spec.rules[0].backendRefs[0]");
    }
}
