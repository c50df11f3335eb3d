//! Requests take a path: from the caller's proxy, through a waypoint when the data plane sends
//! them there, to the destination's enforcement point (its sidecar, its node's ztunnel, or
//! nothing). Each hop decides with its own policies and sees its own peer.
//!
//! Which hops (istio/ztunnel `src/proxy/outbound.rs` `build_request`; istio/istio
//! `pilot/pkg/xds/endpoints/endpoint_builder.go` `findServiceWaypoint`):
//!
//! * an **ambient** caller addressing a Service VIP goes through the Service's waypoint when it
//!   has one; addressing a pod IP, through the pod's workload waypoint when it has one (never
//!   the Service's);
//! * a **sidecar** caller never uses waypoints (only ingress and east-west gateways call them,
//!   istio/istio#51445): HBONE straight to the pod;
//! * an **ingress gateway** calls a Service's waypoint only when the Service (else its
//!   namespace) carries `istio.io/ingress-use-waypoint: "true"`;
//! * a client **outside the mesh** knows nothing of waypoints: plaintext to the pod.
//!
//! After a waypoint the destination sees the **waypoint's** identity, on the pod's port (the
//! waypoint itself sees the client's identity and the Service port). A Service whose named
//! waypoint binds nothing goes straight to the pods (fail open). At an ambient destination a
//! plaintext caller meets ztunnel's passthrough, unless the pod carries
//! `ambient.istio.io/bypass-inbound-capture` (then nothing checks it); a destination no proxy
//! captures is reached unchecked.

use super::decision::{Outcome, PolicySet, Target, Verdict};
use super::explain::{Explanation, Hop, MtlsStep};
use super::policy::ServiceRef;
use super::request::{Identity, Request};
use super::ztunnel_target::ZtunnelTarget;
use crate::dataplane::{Binding, Outside, Plane, PodPlane, ServiceKind, Topology, Unbound};
use std::collections::BTreeMap;

/// The caller's data plane: what decides which path its requests take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallerPlane {
    /// A pod with a sidecar (or a mesh identity whose workloads are unknown).
    Sidecar,
    /// A pod captured by ztunnel.
    Ambient,
    /// An ingress (or east-west) gateway.
    Gateway,
    /// A client outside the mesh: plaintext, no identity.
    Outside,
}

impl CallerPlane {
    pub fn as_str(self) -> &'static str {
        match self {
            CallerPlane::Sidecar => "sidecar",
            CallerPlane::Ambient => "ambient",
            CallerPlane::Gateway => "gateway",
            CallerPlane::Outside => "outside the mesh",
        }
    }
}

/// How the request addresses its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressed {
    /// A Service's VIP (index into [`Topology::services`]) and its port.
    Service { service: usize, port: u16 },
    /// A pod IP.
    Pod,
}

/// The destination workload as the data-plane model sees it.
#[derive(Clone, Debug)]
pub struct Destination<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// `deployment shop/reviews`.
    pub label: String,
    pub plane: PodPlane,
    /// The workload waypoint its pods bind to (pod-addressed traffic).
    pub workload_waypoint: Binding,
}

/// What enforces at the destination.
#[derive(Clone, Debug)]
pub enum DestTarget<'s> {
    Sidecar(Target<'s>),
    Ztunnel {
        target: ZtunnelTarget<'s>,
        /// Plaintext inbound traffic skips ztunnel (`bypass-inbound-capture`).
        bypass_inbound: bool,
    },
    /// Nothing enforces: why.
    Unenforced(String),
}

/// A waypoint on the path.
#[derive(Clone, Debug)]
pub struct WaypointHop<'s> {
    pub target: Target<'s>,
    /// `namespace/name`.
    pub id: String,
    /// The identity the destination sees after it.
    pub identity: Identity,
}

/// The enforcement points one request passes, resolved against a policy set.
#[derive(Clone, Debug)]
pub struct Route<'s> {
    pub caller: CallerPlane,
    pub waypoint: Option<WaypointHop<'s>>,
    pub dest: DestTarget<'s>,
    /// The destination, in words.
    pub(crate) dest_label: String,
    /// What the path says about itself (skipped or misbound waypoints, …).
    pub notes: Vec<String>,
}

/// The decision of a path: at which hop (0: the waypoint, 1: the destination) and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathOutcome {
    pub waypoint: bool,
    pub outcome: Outcome,
}

impl PathOutcome {
    pub fn verdict(self) -> Verdict {
        self.outcome.verdict()
    }
}

impl<'s> Route<'s> {
    /// The path a request from a `caller` takes to `dest` addressed as `via`.
    pub fn new(
        set: &'s PolicySet,
        topology: &Topology,
        caller: CallerPlane,
        via: Addressed,
        dest: &Destination<'_>,
    ) -> Route<'s> {
        let mut notes = Vec::new();
        let waypoint = waypoint_on_path(topology, caller, via, dest, &mut notes).map(|g| {
            let gw = topology.gateway(g);
            let service = match via {
                Addressed::Service { service, .. } => {
                    let s = topology.service(service);
                    Some(ServiceRef {
                        service_entry: s.kind == ServiceKind::ServiceEntry,
                        namespace: &s.namespace,
                        name: &s.name,
                    })
                }
                Addressed::Pod => None,
            };
            if gw.ready == crate::dataplane::Readiness::Assumed {
                notes.push(format!(
                    "waypoint {} has no status in the input: it is assumed ready (istiod binds a Gateway only once its status has addresses)",
                    gw.id()
                ));
            }
            WaypointHop {
                target: set.waypoint_target(&gw.namespace, &gw.name, service),
                id: gw.id(),
                identity: set.mesh().identity(&gw.namespace, &gw.service_account),
            }
        });
        let dest_target = match dest.plane.plane {
            Plane::Sidecar => DestTarget::Sidecar(set.target(dest.namespace, dest.labels)),
            Plane::Ambient => DestTarget::Ztunnel {
                target: set.ztunnel_target(dest.namespace, dest.labels),
                bypass_inbound: dest.plane.bypass_inbound,
            },
            Plane::Outside => DestTarget::Unenforced(format!(
                "no proxy enforces for {}: {}",
                dest.label,
                dest.plane
                    .outside
                    .unwrap_or(Outside::NotEnrolled)
                    .describe(dest.namespace)
            )),
            // Its namespace's labels are not known: a sidecar, as before ambient was modelled.
            Plane::Unknown => DestTarget::Sidecar(set.target(dest.namespace, dest.labels)),
        };
        Route {
            caller,
            waypoint,
            dest: dest_target,
            dest_label: dest.label.clone(),
            notes,
        }
    }

    /// The request as the destination receives it after the waypoint: the waypoint's identity,
    /// the pod's port, the source address unknown (the waypoint pod's).
    pub fn forwarded(&self, req: &Request, dest_port: u16) -> Request {
        match &self.waypoint {
            Some(w) => req.forwarded(Some(w.identity.clone()), dest_port, false),
            None => req.forwarded(req.peer().cloned(), dest_port, true),
        }
    }

    /// Decide: the waypoint (with the caller's request), then the destination (with the
    /// request as forwarded, [`Route::forwarded`]). Allocation-free.
    pub fn decide(&self, req: &Request, forwarded: &Request) -> PathOutcome {
        if let Some(w) = &self.waypoint {
            let o = w.target.decide(req);
            if o.verdict() == Verdict::Deny {
                return PathOutcome {
                    waypoint: true,
                    outcome: o,
                };
            }
        }
        PathOutcome {
            waypoint: false,
            outcome: self.decide_dest(forwarded),
        }
    }

    fn decide_dest(&self, forwarded: &Request) -> Outcome {
        match &self.dest {
            DestTarget::Sidecar(t) => t.decide(forwarded),
            DestTarget::Ztunnel {
                target,
                bypass_inbound,
            } => {
                if *bypass_inbound && forwarded.peer().is_none() {
                    Outcome::Unenforced
                } else {
                    target.decide(forwarded)
                }
            }
            DestTarget::Unenforced(_) => Outcome::Unenforced,
        }
    }

    /// The decision explained hop by hop. The explanation's own fields are those of the hop
    /// that decided (the first that denies, else the destination), its `hops` every hop.
    pub fn explain(&self, req: &Request, forwarded: &Request) -> Explanation {
        let mut hops = Vec::new();
        let mut decided: Option<Explanation> = None;
        if let Some(w) = &self.waypoint {
            let ex = w.target.explain(req);
            hops.push(hop("waypoint", format!("waypoint {}", w.id), req, &ex));
            if ex.verdict == Verdict::Deny {
                let mut ex = ex;
                ex.headline = format!("{} at waypoint {}", ex.headline, w.id);
                decided = Some(ex);
            }
        }
        let (enforcer, at) = match &self.dest {
            DestTarget::Sidecar(_) => ("sidecar", format!("sidecar of {}", self.dest_label)),
            DestTarget::Ztunnel { .. } => ("ztunnel", format!("ztunnel of {}", self.dest_label)),
            DestTarget::Unenforced(_) => ("none", self.dest_label.clone()),
        };
        let dest_ex = match &self.dest {
            DestTarget::Sidecar(t) => t.explain(forwarded),
            DestTarget::Ztunnel {
                target,
                bypass_inbound,
            } => {
                if *bypass_inbound && forwarded.peer().is_none() {
                    unenforced(
                        forwarded,
                        format!(
                            "{} carries ambient.istio.io/bypass-inbound-capture: plaintext connections reach the application without ztunnel, so neither PeerAuthentication nor AuthorizationPolicy applies (HBONE clients are still checked)",
                            self.dest_label
                        ),
                    )
                } else {
                    target.explain(forwarded)
                }
            }
            DestTarget::Unenforced(why) => unenforced(forwarded, why.clone()),
        };
        match &decided {
            Some(_) => hops.push(Hop {
                enforcer,
                at,
                peer: None,
                port: forwarded.port(),
                verdict: None,
                headline: String::new(),
                reason: String::new(),
                decided_by: None,
            }),
            None => hops.push(hop(enforcer, at, forwarded, &dest_ex)),
        }
        let mut ex = decided.unwrap_or(dest_ex);
        let multi = hops.len() > 1;
        if multi && ex.verdict == Verdict::Allow {
            ex.headline = "ALLOW".to_owned();
        }
        let mut notes = self.notes.clone();
        notes.append(&mut ex.notes);
        ex.notes = notes;
        ex.hops = hops;
        ex
    }
}

/// The explanation of a hop nothing enforces at.
fn unenforced(req: &Request, why: String) -> Explanation {
    Explanation {
        verdict: Verdict::Allow,
        headline: "ALLOW (no enforcement point)".to_owned(),
        decided_by: None,
        mtls: MtlsStep {
            mode: "none".to_owned(),
            decided_by: None,
        },
        reason: why,
        near_misses: Vec::new(),
        peer: req.peer().map(|p| p.principal().to_owned()),
        request_principal: None,
        custom: Vec::new(),
        audit: Vec::new(),
        shadow: None,
        policies: Vec::new(),
        not_applied: Vec::new(),
        notes: Vec::new(),
        hops: Vec::new(),
        outcome: Outcome::Unenforced,
    }
}

fn hop(enforcer: &'static str, at: String, req: &Request, ex: &Explanation) -> Hop {
    Hop {
        enforcer,
        at,
        peer: req.peer().map(|p| p.principal().to_owned()),
        port: req.port(),
        verdict: Some(ex.verdict),
        headline: ex.headline.clone(),
        reason: ex.reason.clone(),
        decided_by: ex.decided_by.clone(),
    }
}

/// The waypoint a request goes through, with notes on the waypoints it skips.
fn waypoint_on_path(
    topology: &Topology,
    caller: CallerPlane,
    via: Addressed,
    dest: &Destination<'_>,
    notes: &mut Vec<String>,
) -> Option<usize> {
    match via {
        Addressed::Service { service, .. } => {
            let s = topology.service(service);
            match &s.binding {
                Binding::Bound { gateway, .. } => {
                    let id = topology.gateway(*gateway).id();
                    match caller {
                        CallerPlane::Ambient => Some(*gateway),
                        CallerPlane::Sidecar => {
                            notes.push(format!(
                                "{} is bound to waypoint {id}, but sidecar callers never use waypoints: the request goes straight to the pod, the waypoint's policies do not apply, and the destination sees the caller's own identity",
                                s.label()
                            ));
                            None
                        }
                        CallerPlane::Gateway if s.ingress_use_waypoint.1 => Some(*gateway),
                        CallerPlane::Gateway => {
                            notes.push(format!(
                                "{} is bound to waypoint {id}, but ingress gateways call a Service's waypoint only with istio.io/ingress-use-waypoint: \"true\" on the Service or its namespace{}: the request goes straight to the pod and the destination sees the gateway's identity",
                                s.label(),
                                if s.ingress_use_waypoint.0 { " (the label is there, but not \"true\")" } else { "" }
                            ));
                            None
                        }
                        CallerPlane::Outside => {
                            notes.push(format!(
                                "{} is bound to waypoint {id}, but a client outside the mesh does not know about waypoints: it reaches the pod directly",
                                s.label()
                            ));
                            None
                        }
                    }
                }
                Binding::Unbound {
                    namespace,
                    name,
                    source,
                    why,
                } => {
                    let why = match why {
                        Unbound::Missing => "no Gateway of that name exists".to_owned(),
                        Unbound::NotReady => {
                            "the Gateway is not ready (no addresses in its status)".to_owned()
                        }
                        Unbound::NotPermitted(from) => format!(
                            "its HBONE listener admits routes from {from}, not from namespace {}",
                            s.namespace
                        ),
                        Unbound::TrafficType(t) => {
                            format!("it is a waypoint for {t} traffic, not for services")
                        }
                    };
                    notes.push(format!(
                        "{} names waypoint {namespace}/{name} ({}), but {why}: istiod binds it to no waypoint, so traffic goes straight to the pods and no L7 policy applies (fail open)",
                        s.label(),
                        source.as_str()
                    ));
                    None
                }
                Binding::None | Binding::OptedOut => None,
            }
        }
        Addressed::Pod => {
            let svc_waypoints = topology
                .services_selecting(dest.namespace, dest.labels)
                .filter_map(|i| topology.service(i).binding.gateway())
                .next();
            let own = dest.workload_waypoint.gateway();
            match (caller, own) {
                (CallerPlane::Ambient, Some(g)) => Some(g),
                (_, Some(g)) => {
                    notes.push(format!(
                        "{} has workload waypoint {}, but only ambient callers use it ({} callers connect to the pod directly)",
                        dest.label,
                        topology.gateway(g).id(),
                        caller.as_str()
                    ));
                    None
                }
                (_, None) => {
                    if let Some(g) = svc_waypoints {
                        notes.push(format!(
                            "the request addresses the pod, not its Service: the Service's waypoint {} is skipped (ztunnel uses a waypoint for pod IPs only when the pod has a workload waypoint)",
                            topology.gateway(g).id()
                        ));
                    }
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::decision::tests::{ap, set};
    use crate::authz::request::Http;
    use crate::dataplane::Topology;
    use crate::resource::Kind;
    use kube::core::DynamicObject;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> (Kind, DynamicObject) {
        let o: DynamicObject = serde_json::from_value(v).expect("object");
        let t = o.types.clone().expect("types");
        (
            Kind::from_api_version(&t.api_version, &t.kind).expect("kind"),
            o,
        )
    }

    fn world() -> Vec<(Kind, DynamicObject)> {
        vec![
            obj(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop",
                "labels": {"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}}}),
            ),
            obj(
                json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "waypoint", "namespace": "shop"},
                "spec": {"gatewayClassName": "istio-waypoint",
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "shop"},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 80, "targetPort": 9080}]}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "misbound", "namespace": "shop",
                "labels": {"istio.io/use-waypoint": "nope"}},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 80, "targetPort": 9080}]}}),
            ),
            ap(
                "shop",
                "no-admin",
                json!({"action": "DENY", "targetRefs": [{"kind": "Service", "group": "", "name": "reviews"}],
                    "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}),
            ),
            ap(
                "shop",
                "reviews-callers",
                json!({"selector": {"matchLabels": {"app": "reviews"}},
                    "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/frontend"]}}]}]}),
            ),
        ]
    }

    fn dest<'a>(labels: &'a BTreeMap<String, String>) -> Destination<'a> {
        Destination {
            namespace: "shop",
            labels,
            label: "deployment shop/reviews".to_owned(),
            plane: PodPlane {
                plane: Plane::Ambient,
                outside: None,
                bypass_inbound: false,
            },
            workload_waypoint: Binding::None,
        }
    }

    fn frontend() -> Option<Identity> {
        Some(Identity::new("cluster.local", "shop", "frontend"))
    }

    #[test]
    fn ambient_service_calls_go_through_the_waypoint() {
        let objects = world();
        let set = set(&objects);
        let topology = Topology::new(objects.iter().map(|(k, o)| (*k, o)));
        let labels = BTreeMap::from([("app".to_owned(), "reviews".to_owned())]);
        let d = dest(&labels);
        let svc = topology
            .find_service(ServiceKind::Service, "shop", "reviews")
            .expect("svc");
        let via = Addressed::Service {
            service: svc,
            port: 80,
        };
        let route = Route::new(&set, &topology, CallerPlane::Ambient, via, &d);
        assert_eq!(
            route.waypoint.as_ref().map(|w| w.id.as_str()),
            Some("shop/waypoint")
        );
        // /admin: denied at the waypoint by the targetRefs policy.
        let admin = Request::http(frontend(), 80, Http::new("GET", "/admin/x"));
        let fwd = route.forwarded(&admin, 9080);
        let o = route.decide(&admin, &fwd);
        assert!(o.waypoint && matches!(o.outcome, Outcome::Denied(_)));
        let ex = route.explain(&admin, &fwd);
        assert_eq!(ex.headline, "DENY at waypoint shop/waypoint");
        assert_eq!(ex.hops.len(), 2);
        assert_eq!(ex.hops[1].verdict, None, "not reached");
        // /: passes the waypoint, then the destination ztunnel sees the waypoint's identity,
        // which the selector ALLOW (naming the real client) does not admit.
        let get = Request::http(frontend(), 80, Http::new("GET", "/"));
        let fwd = route.forwarded(&get, 9080);
        assert_eq!(
            fwd.peer().map(Identity::principal),
            Some("cluster.local/ns/shop/sa/waypoint")
        );
        assert_eq!(fwd.port(), 9080);
        let o = route.decide(&get, &fwd);
        assert_eq!((o.waypoint, o.outcome), (false, Outcome::DefaultDeny));
        let ex = route.explain(&get, &fwd);
        assert_eq!(ex.hops[0].verdict, Some(Verdict::Allow));
        assert_eq!(ex.hops[1].enforcer, "ztunnel");
        assert_eq!(
            ex.hops[1].peer.as_deref(),
            Some("cluster.local/ns/shop/sa/waypoint")
        );

        // The same client by pod IP skips the waypoint: its own identity is admitted.
        let route = Route::new(&set, &topology, CallerPlane::Ambient, Addressed::Pod, &d);
        assert!(route.waypoint.is_none());
        assert!(route.notes[0].contains("skipped"), "{:?}", route.notes);
        let admin = Request::http(frontend(), 9080, Http::new("GET", "/admin/x"));
        let fwd = route.forwarded(&admin, 9080);
        assert!(matches!(
            route.decide(&admin, &fwd).outcome,
            Outcome::Allowed(_)
        ));

        // A sidecar caller never uses the waypoint.
        let route = Route::new(&set, &topology, CallerPlane::Sidecar, via, &d);
        assert!(route.waypoint.is_none());
        assert!(route.notes[0].contains("sidecar callers never use waypoints"));
        let fwd = route.forwarded(&admin, 9080);
        assert!(matches!(
            route.decide(&admin, &fwd).outcome,
            Outcome::Allowed(_)
        ));

        // An ingress gateway skips it without ingress-use-waypoint.
        let route = Route::new(&set, &topology, CallerPlane::Gateway, via, &d);
        assert!(route.waypoint.is_none() && route.notes[0].contains("ingress-use-waypoint"));

        // A misbound use-waypoint fails open: straight to the pods, with a note.
        let mis = topology
            .find_service(ServiceKind::Service, "shop", "misbound")
            .expect("svc");
        let route = Route::new(
            &set,
            &topology,
            CallerPlane::Ambient,
            Addressed::Service {
                service: mis,
                port: 80,
            },
            &d,
        );
        assert!(route.waypoint.is_none());
        assert!(route.notes[0].contains("fail open"), "{:?}", route.notes);
    }

    #[test]
    fn unenforced_destinations_and_bypass() {
        let objects = world();
        let set = set(&objects);
        let topology = Topology::new(objects.iter().map(|(k, o)| (*k, o)));
        let labels = BTreeMap::from([("app".to_owned(), "reviews".to_owned())]);
        let mut d = dest(&labels);
        d.plane.bypass_inbound = true;
        let route = Route::new(&set, &topology, CallerPlane::Outside, Addressed::Pod, &d);
        let plain = Request::tcp(None, 9080);
        let fwd = route.forwarded(&plain, 9080);
        assert_eq!(route.decide(&plain, &fwd).outcome, Outcome::Unenforced);
        let ex = route.explain(&plain, &fwd);
        assert!(
            ex.reason.contains("bypass-inbound-capture"),
            "{}",
            ex.reason
        );
        // A mesh client over HBONE is still checked by ztunnel.
        let web = Request::tcp(Some(Identity::new("cluster.local", "shop", "web")), 9080);
        let fwd = route.forwarded(&web, 9080);
        assert_eq!(route.decide(&web, &fwd).outcome, Outcome::DefaultDeny);
        // A pod outside the mesh: nothing enforces.
        d.plane = PodPlane {
            plane: Plane::Outside,
            outside: Some(Outside::OptedOut),
            bypass_inbound: false,
        };
        let route = Route::new(&set, &topology, CallerPlane::Ambient, Addressed::Pod, &d);
        let fwd = route.forwarded(&web, 9080);
        assert_eq!(route.decide(&web, &fwd).outcome, Outcome::Unenforced);
        assert!(route
            .explain(&web, &fwd)
            .reason
            .contains("no proxy enforces"));
    }
}
