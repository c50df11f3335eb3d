//! What `simulate` and `test` share (the objects come from [`crate::load`]): turning "from
//! this identity to that workload, with this request" into a [`Request`] and the workload's
//! pod labels.

use crate::authz::hops::{Addressed, CallerPlane};
use crate::authz::{Http, Identity, Jwt, Mesh, PolicySet, Request};
use crate::context::{ClusterView, Lookup};
use crate::dataplane::labels::GATEWAY_NAME;
use crate::dataplane::{
    namespace_plane, workload_plane, Binding, Plane, PodPlane, ServiceKind, Topology,
};
use crate::inventory::{Inventory, Object};
use crate::mesh::MeshContext;
use crate::mtls::Workload;
use crate::resource::Kind;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The security policies of an inventory, compiled.
pub fn policy_set(inventory: &Inventory, mesh: Mesh) -> crate::authz::PolicySet {
    crate::authz::PolicySet::new(mesh, inventory.decoded(crate::authz::PolicySet::reads))
}

/// What requests are resolved against: the objects, the mesh as installed (with meshguard's
/// overrides) and the data-plane topology read from the objects once.
#[derive(Clone, Debug)]
pub struct World {
    pub inventory: Inventory,
    pub mesh: MeshContext,
    pub topology: Topology,
}

impl World {
    pub fn new(inventory: Inventory, mesh: MeshContext) -> World {
        let topology = Topology::new(inventory.decoded(Topology::reads));
        World {
            inventory,
            mesh,
            topology,
        }
    }

    /// The authorization facts of the mesh.
    pub(crate) fn authz_mesh(&self) -> Mesh {
        Mesh::from_context(&self.mesh)
    }

    /// The policies, compiled.
    pub fn policy_set(&self) -> PolicySet {
        policy_set(&self.inventory, self.authz_mesh())
    }

    /// The data plane of a workload object.
    pub(crate) fn plane_of(&self, o: &Object) -> PodPlane {
        match o.template() {
            Some(t) => workload_plane(
                &self.mesh,
                o.namespace(),
                &t,
                &self.inventory.namespace_labels(o.namespace()),
            ),
            None => PodPlane {
                plane: Plane::Unknown,
                outside: None,
                bypass_inbound: false,
            },
        }
    }
}

/// Who calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// `NS/SA`: a mesh identity.
    Identity(String),
    /// `NS/NAME`: the ServiceAccount of a workload.
    Workload(String),
    /// A client without a mesh identity.
    Plaintext,
}

/// A token to present.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenSpec {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    /// Claim paths (`["realm_access", "roles"]`) and values.
    pub claims: Vec<(Vec<String>, Value)>,
}

/// One request as a user writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestSpec {
    pub from: Caller,
    /// `NS/NAME` or `NS/KIND/NAME` (a workload's pods), or `NS/Service/NAME` (the Service's
    /// VIP).
    pub to: String,
    pub port: Option<u16>,
    pub source_ip: Option<IpAddr>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    pub jwt: Option<TokenSpec>,
}

impl RequestSpec {
    /// Whether the request is HTTP (any HTTP part given); otherwise plain TCP.
    pub(crate) fn is_http(&self) -> bool {
        self.method.is_some()
            || self.path.is_some()
            || self.host.is_some()
            || !self.headers.is_empty()
            || self.jwt.is_some()
    }
}

/// A request resolved against the inventory.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// `deployment production/backend`, or `Service shop/reviews`.
    pub(crate) to_label: String,
    /// The workloads whose pods receive the request (one when a workload is named; every
    /// workload the Service selects).
    pub targets: Vec<DestWorkload>,
    /// `production/frontend (cluster.local/ns/production/sa/frontend)`, or `plaintext client`.
    pub(crate) from_label: String,
    /// The caller's data plane.
    pub caller: CallerPlane,
    /// Service VIP or pod IP.
    pub via: Addressed,
    /// The request as the caller sends it (to the Service port when Service-addressed).
    pub request: Request,
    /// What resolution assumed (shown with the explanation).
    pub notes: Vec<String>,
}

/// One workload a request lands on.
#[derive(Clone, Debug)]
pub struct DestWorkload {
    /// `deployment production/backend`.
    pub label: String,
    pub namespace: String,
    /// Its pod labels (what selectors match).
    pub labels: BTreeMap<String, String>,
    pub plane: PodPlane,
    /// Its workload waypoint.
    pub workload_waypoint: Binding,
    /// The container port the request reaches.
    pub port: u16,
}

/// A workload by `NS/NAME` or `NS/KIND/NAME`.
pub(crate) fn find_workload<'i>(inv: &'i Inventory, spec: &str) -> Result<&'i Object, String> {
    let parts: Vec<&str> = spec.split('/').collect();
    let (ns, kind, name) = match parts.as_slice() {
        [ns, name] if !ns.is_empty() && !name.is_empty() => (*ns, None, *name),
        [ns, kind, name] if !ns.is_empty() && !name.is_empty() => (*ns, Some(*kind), *name),
        _ => {
            return Err(format!(
                "{spec}: want NAMESPACE/NAME (or NAMESPACE/KIND/NAME), e.g. production/backend"
            ))
        }
    };
    let kinds: Vec<Kind> = Kind::WORKLOADS
        .iter()
        .copied()
        .filter(|k| kind.is_none_or(|want| k.as_str().eq_ignore_ascii_case(want)))
        .collect();
    if kinds.is_empty() {
        return Err(format!(
            "{spec}: {} is not a workload kind (Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, Pod)",
            kind.unwrap_or_default()
        ));
    }
    let found: Vec<&Object> = kinds
        .iter()
        .filter_map(|k| inv.find(*k, ns, name))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => {
            let mut known: Vec<String> = inv
                .workloads_in(ns)
                .iter()
                .map(|&i| {
                    let o = inv.workload_object(&inv.workloads()[i]);
                    format!("{}/{}", o.kind.as_str().to_ascii_lowercase(), o.name())
                })
                .collect();
            known.sort();
            Err(if known.is_empty() {
                format!("{spec}: no workload named {name} in namespace {ns}, and the input has no workloads there")
            } else {
                format!(
                    "{spec}: no workload named {name} in namespace {ns} (it has {})",
                    known.join(", ")
                )
            })
        }
        many => Err(format!(
            "{spec}: several workloads are named {name} ({}); name one as {ns}/KIND/{name}",
            many.iter()
                .map(|o| o.kind.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The destination as written: a Service (`NS/Service/NAME`) or a workload.
enum To<'i> {
    Service(usize),
    Workload(&'i Object),
}

fn parse_to<'i>(world: &'i World, spec: &str) -> Result<To<'i>, String> {
    let parts: Vec<&str> = spec.split('/').collect();
    if let [ns, kind, name] = parts.as_slice() {
        let kind_l = kind.to_ascii_lowercase();
        let svc_kind = match kind_l.as_str() {
            "service" | "svc" => Some(ServiceKind::Service),
            "serviceentry" => Some(ServiceKind::ServiceEntry),
            _ => None,
        };
        if let Some(k) = svc_kind {
            return world
                .topology
                .find_service(k, ns, name)
                .map(To::Service)
                .ok_or_else(|| {
                    let known: Vec<String> = world
                        .topology
                        .services()
                        .iter()
                        .filter(|s| s.namespace == *ns && s.kind == k)
                        .map(|s| s.name.clone())
                        .collect();
                    if known.is_empty() {
                        format!("{spec}: no {} named {name} in namespace {ns}, and the input has none there", k.as_str())
                    } else {
                        format!("{spec}: no {} named {name} in namespace {ns} (it has {})", k.as_str(), known.join(", "))
                    }
                });
        }
    }
    find_workload(&world.inventory, spec).map(To::Workload)
}

/// The container port a Service port's `targetPort` names in a workload
/// ([`Workload::target_port`]).
fn target_port(target: &crate::dataplane::topology::TargetPort, w: &Workload) -> Option<u16> {
    use crate::dataplane::topology::TargetPort;
    use crate::model::service::Target;
    let target = match target {
        TargetPort::Number(n) => Target::Number(*n),
        TargetPort::Name(name) => Target::Name(name),
    };
    w.target_port(target).and_then(|p| u16::try_from(p).ok())
}

/// A destination workload: its data plane and workload waypoint.
fn dest_workload(world: &World, o: &Object, w: &Workload, port: u16) -> DestWorkload {
    DestWorkload {
        label: format!(
            "{} {}/{}",
            o.kind.as_str().to_ascii_lowercase(),
            w.namespace,
            w.name
        ),
        namespace: w.namespace.clone(),
        labels: w.labels.clone(),
        plane: world.plane_of(o),
        workload_waypoint: world.topology.workload_binding(&w.namespace, &w.labels),
        port,
    }
}

/// The workloads running as `namespace/sa`, with their data planes.
fn workloads_running_as<'i>(world: &'i World, ns: &str, sa: &str) -> Vec<(&'i Object, PodPlane)> {
    world
        .inventory
        .workloads_in(ns)
        .iter()
        .map(|&i| {
            world
                .inventory
                .workload_object(&world.inventory.workloads()[i])
        })
        .filter(|o| {
            o.template()
                .is_some_and(|t| t.service_account().map_or("default", |(_, s)| s) == sa)
        })
        .map(|o| (o, world.plane_of(o)))
        .collect()
}

/// Whether a workload is a gateway's deployment (Gateway API, or Istio's ingress gateway).
fn is_gateway(o: &Object) -> bool {
    o.template().is_some_and(|t| {
        t.label(GATEWAY_NAME).is_some()
            || matches!(t.label("istio"), Some("ingressgateway" | "eastwestgateway"))
    })
}

/// The caller: identity, data plane, label for output.
fn resolve_caller(
    world: &World,
    mesh: &Mesh,
    from: &Caller,
    notes: &mut Vec<String>,
) -> Result<(Option<Identity>, CallerPlane, String), String> {
    match from {
        Caller::Plaintext => Ok((
            None,
            CallerPlane::Outside,
            "plaintext client (no mesh identity)".to_owned(),
        )),
        Caller::Identity(s) => {
            let (ns, sa) = s
                .split_once('/')
                .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains('/'))
                .ok_or_else(|| {
                    format!("{s}: want NAMESPACE/SERVICEACCOUNT, e.g. production/frontend")
                })?;
            let id = mesh.identity(ns, sa);
            let gateway = world.topology.gateway_with_identity(ns, sa);
            if gateway.is_none() && world.inventory.service_account(ns, sa) == Lookup::Missing {
                notes.push(format!(
                    "ServiceAccount {ns}/{sa} is not in the input: no pod runs as this identity yet"
                ));
            }
            let running = workloads_running_as(world, ns, sa);
            let plane = if let Some(g) = gateway {
                if world.topology.gateway(g).is_waypoint() {
                    CallerPlane::Sidecar
                } else {
                    CallerPlane::Gateway
                }
            } else if running.iter().any(|(o, _)| is_gateway(o)) {
                CallerPlane::Gateway
            } else {
                let mut planes: Vec<Plane> = running.iter().map(|(_, p)| p.plane).collect();
                planes.sort_by_key(|p| p.as_str());
                planes.dedup();
                match planes.as_slice() {
                    [] => match world.inventory.namespace_labels(ns) {
                        Lookup::Found(l)
                            if namespace_plane(&world.mesh, ns, &l) == Plane::Ambient =>
                        {
                            CallerPlane::Ambient
                        }
                        _ => CallerPlane::Sidecar,
                    },
                    [Plane::Ambient] => CallerPlane::Ambient,
                    [Plane::Outside] => {
                        notes.push(format!(
                            "the workloads running as {ns}/{sa} are outside the mesh (their requests would carry no identity: simulate them with --plaintext); this request is simulated from a mesh client with the identity"
                        ));
                        CallerPlane::Sidecar
                    }
                    [_] => CallerPlane::Sidecar,
                    _ => {
                        let list: Vec<String> = running
                            .iter()
                            .map(|(o, p)| format!("{} ({})", o.name(), p.plane.as_str()))
                            .collect();
                        return Err(format!(
                            "{s}: workloads on different data planes run as this identity ({}): name one with --from-workload",
                            list.join(", ")
                        ));
                    }
                }
            };
            Ok((Some(id.clone()), plane, caller_label(s, &id, plane)))
        }
        Caller::Workload(s) => {
            // A Gateway API Gateway by name: its deployment's identity.
            let parts: Vec<&str> = s.split('/').collect();
            if let [ns, kind, name] = parts.as_slice() {
                if kind.eq_ignore_ascii_case("gateway") {
                    let g = world
                        .topology
                        .find_gateway(ns, name)
                        .ok_or_else(|| format!("{s}: no Gateway named {name} in namespace {ns}"))?;
                    let gw = world.topology.gateway(g);
                    let id = mesh.identity(ns, &gw.service_account);
                    let label = format!("{s} ({}, gateway)", id.principal());
                    return Ok((Some(id), CallerPlane::Gateway, label));
                }
            }
            let o = find_workload(&world.inventory, s)?;
            let t = o.template().ok_or_else(|| format!("{s}: not a workload"))?;
            let sa = match t.service_account() {
                Some((_, sa)) => sa,
                None => {
                    notes.push(format!(
                        "{s} names no serviceAccountName, so its pods run as the ServiceAccount default"
                    ));
                    "default"
                }
            };
            let id = mesh.identity(o.namespace(), sa);
            let plane = if is_gateway(o) {
                CallerPlane::Gateway
            } else {
                match world.plane_of(o).plane {
                    Plane::Ambient => CallerPlane::Ambient,
                    Plane::Outside => {
                        notes.push(format!(
                            "{s} runs outside the mesh: its requests leave as plaintext, with no identity"
                        ));
                        let label = format!("{s} (outside the mesh: plaintext, no identity)");
                        return Ok((None, CallerPlane::Outside, label));
                    }
                    Plane::Sidecar | Plane::Unknown => CallerPlane::Sidecar,
                }
            };
            Ok((Some(id.clone()), plane, caller_label(s, &id, plane)))
        }
    }
}

/// `production/frontend (cluster.local/ns/production/sa/frontend)`, with the data plane when it
/// is not a sidecar's.
fn caller_label(s: &str, id: &Identity, plane: CallerPlane) -> String {
    match plane {
        CallerPlane::Sidecar => format!("{s} ({})", id.principal()),
        _ => format!("{s} ({}, {})", id.principal(), plane.as_str()),
    }
}

/// Resolve a request against the world.
pub fn resolve(world: &World, spec: &RequestSpec) -> Result<Resolved, String> {
    let mesh = world.authz_mesh();
    let mut notes = Vec::new();
    let (to_label, via, targets, port) = match parse_to(world, &spec.to)? {
        To::Workload(target) => {
            let workload = Workload::from_object(target.kind, &target.object())
                .ok_or_else(|| format!("{}: not a workload", spec.to))?;
            let to_label = format!(
                "{} {}/{}",
                target.kind.as_str().to_ascii_lowercase(),
                workload.namespace,
                workload.name
            );
            let port = match (spec.port, workload.ports.as_slice()) {
                (Some(p), ports) => {
                    if !ports.is_empty() && !ports.iter().any(|x| x.port == u32::from(p)) {
                        notes.push(format!(
                            "{to_label} declares no container port {p} (it declares {})",
                            port_list(&workload)
                        ));
                    }
                    p
                }
                (None, [one]) => u16::try_from(one.port).map_err(|_| {
                    format!("{to_label}: container port {} is out of range", one.port)
                })?,
                (None, []) => {
                    return Err(format!(
                        "{to_label} declares no container port: give the port (--port)"
                    ))
                }
                (None, _) => {
                    return Err(format!(
                        "{to_label} declares ports {}: choose one (--port)",
                        port_list(&workload)
                    ))
                }
            };
            let dest = dest_workload(world, target, &workload, port);
            (to_label, Addressed::Pod, vec![dest], port)
        }
        To::Service(si) => {
            let svc = world.topology.service(si);
            let to_label = svc.label();
            let sp = match (spec.port, svc.ports.as_slice()) {
                (Some(p), ports) => {
                    ports
                        .iter()
                        .find(|x| x.port == u32::from(p))
                        .ok_or_else(|| {
                            format!(
                                "{to_label} has no port {p} (its ports: {})",
                                ports
                                    .iter()
                                    .map(|x| x.port.to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })?
                }
                (None, [one]) => one,
                (None, []) => return Err(format!("{to_label} declares no port")),
                (None, _) => {
                    return Err(format!(
                        "{to_label} has ports {}: choose one (--port)",
                        svc.ports
                            .iter()
                            .map(|x| x.port.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            };
            let port = u16::try_from(sp.port)
                .map_err(|_| format!("{to_label}: port {} is out of range", sp.port))?;
            let mut targets = Vec::new();
            for &i in world.inventory.workloads_in(&svc.namespace) {
                let iw = &world.inventory.workloads()[i];
                if !svc.selects(&iw.workload.labels) {
                    continue;
                }
                let o = world.inventory.workload_object(iw);
                let Some(tp) = target_port(&sp.target, &iw.workload) else {
                    notes.push(format!(
                        "{} has no container port named by targetPort {:?}: it receives nothing on this Service port",
                        o.name(),
                        sp.target
                    ));
                    continue;
                };
                targets.push(dest_workload(world, o, &iw.workload, tp));
            }
            if targets.is_empty() {
                return Err(format!(
                    "{to_label} selects no workload in the input: name a workload as NS/NAME instead"
                ));
            }
            (
                to_label,
                Addressed::Service { service: si, port },
                targets,
                port,
            )
        }
    };
    let (peer, caller, from_label) = resolve_caller(world, &mesh, &spec.from, &mut notes)?;
    let mut request = if spec.is_http() {
        let method = spec.method.as_deref().unwrap_or("GET");
        if !is_token(method) {
            return Err(format!("{method}: not an HTTP method"));
        }
        let path = spec.path.as_deref().unwrap_or("/");
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{path}: a request path starts with / and holds only visible ASCII (percent-encode the rest)"
            ));
        }
        let mut http = Http::new(method, path);
        if let Some(h) = &spec.host {
            http = http.with_host(h);
        }
        for (k, v) in &spec.headers {
            if !is_token(k) {
                return Err(format!(
                    "{k}: not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"
                ));
            }
            http = http.with_header(k, v);
        }
        Request::http(peer, port, http)
    } else {
        Request::tcp(peer, port)
    };
    if let Some(ip) = spec.source_ip {
        request = request.with_source_ip(ip);
    }
    if let Some(t) = &spec.jwt {
        if t.issuer.is_empty() || t.subject.is_empty() {
            return Err("a token needs an issuer and a subject".to_owned());
        }
        let mut jwt = Jwt::new(&t.issuer, &t.subject).with_audiences(&t.audiences);
        for (path, value) in &t.claims {
            if path.len() == 1 && ["iss", "sub", "aud"].contains(&path[0].as_str()) {
                return Err(format!(
                    "claim {}: set the issuer, subject and audiences of the token instead",
                    path[0]
                ));
            }
            jwt = jwt.with_claim(path, value.clone());
        }
        request = request.with_jwt(jwt);
    }
    Ok(Resolved {
        to_label,
        targets,
        from_label,
        caller,
        via,
        request,
        notes,
    })
}

fn port_list(w: &Workload) -> String {
    w.ports
        .iter()
        .map(|p| p.port.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A claim path from a command-line key: `role`, or `realm_access[roles]` for nesting.
pub(crate) fn claim_path(key: &str) -> Result<Vec<String>, String> {
    match key.find('[') {
        None if !key.is_empty() => Ok(vec![key.to_owned()]),
        Some(i) if i > 0 => {
            let mut path = vec![key[..i].to_owned()];
            path.extend(crate::authz::claims::parse_claim_key(&key[i..])?);
            Ok(path)
        }
        _ => Err(format!(
            "{key}: want a claim name, e.g. role or realm_access[roles]"
        )),
    }
}

/// `K=V`.
pub(crate) fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s}: want KEY=VALUE"))
}
