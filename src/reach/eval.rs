//! The one place the reachability sets ask for a decision: "request R to workload W on port P,
//! from the caller the request carries: verdict and deciding policies". Everything else in
//! [`crate::reach`] builds requests and reads answers; the decision itself is always
//! [`crate::authz`]'s evaluator.
//!
//! An [`Enforcement`] is what decides requests to one workload: the workload's sidecar
//! ([`Target`]), a path through the data plane ([`Route`], ambient: a waypoint with its L7
//! policies, then the destination's ztunnel with its L4 ones, each seeing its own peer, as
//! `meshguard simulate` decides it), or nothing (a workload outside the mesh, a UDP port). The
//! set computation needs only [`decide`] and the policy values it may compare
//! ([`Enforcement::fields`]).
//!
//! [`decide`]: Enforcement::decide

use crate::authz::decision::RuleRef;
use crate::authz::field::{Attr, Ctx, Field};
use crate::authz::hops::{DestTarget, PathOutcome, Route};
use crate::authz::{Outcome, PolicySet, Request, Target, Verdict};
use crate::model::MtlsMode;
use serde::Serialize;

/// What decides requests to one workload.
// One per workload port being computed, never stored in bulk: boxing the sidecar's target
// would cost an allocation per workload for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Enforcement<'s> {
    /// The workload's sidecar.
    Sidecar(Target<'s>),
    /// The path a caller's requests take (a waypoint, then the destination's proxy).
    Path(Box<PathEnforcement<'s>>),
    /// Nothing enforces mTLS or authorization (why, in words): every request passes.
    Unenforced(&'static str),
}

/// A path through the data plane and the ports on it: the requests of the set are addressed
/// to the port the caller uses ([`PathEnforcement::port`]: the Service's behind a waypoint, else
/// the pod's), and after a waypoint the destination sees them on the pod's port with the
/// waypoint's identity ([`Route::forwarded`]).
#[derive(Clone, Debug)]
pub struct PathEnforcement<'s> {
    pub route: Route<'s>,
    /// The port the caller addresses.
    pub(crate) via_port: u16,
    /// The pod's port.
    pub(crate) pod_port: u16,
}

impl PathEnforcement<'_> {
    /// The port the set's requests carry.
    pub fn port(&self) -> u16 {
        if self.route.waypoint.is_some() {
            self.via_port
        } else {
            self.pod_port
        }
    }
}

/// One decision, without allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The evaluator's outcome.
    Authz(Outcome),
    /// Nothing enforces.
    Unenforced,
    /// A path's outcome (which hop decided, and how).
    Path(PathOutcome),
}

impl Decision {
    pub fn verdict(self) -> Verdict {
        match self {
            Decision::Authz(o) => o.verdict(),
            Decision::Unenforced => Verdict::Allow,
            Decision::Path(p) => p.verdict(),
        }
    }
    pub fn allowed(self) -> bool {
        self.verdict() == Verdict::Allow
    }
}

/// What decided, named: the policy and rule, or the step.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Decider {
    /// `AuthorizationPolicy`, `PeerAuthentication` or empty (a step without a policy).
    pub kind: &'static str,
    /// `namespace/name`, empty for a step.
    pub policy: String,
    /// `rules[i]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// `allow`, `deny`, `custom`, `default-deny`, `no-allow-policy`, `refused`, `unenforced`, …
    pub how: &'static str,
    /// The hop that decided, on a path through a waypoint: `waypoint shop/waypoint`, or the
    /// destination (`ztunnel of deployment shop/reviews`). `None`: the workload's sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hop: Option<String>,
}

impl Decider {
    /// `production/backend-rbac rules[0] (allow)`, `no ALLOW policy applies`.
    pub fn label(&self) -> String {
        let base = match (self.policy.is_empty(), self.rule) {
            (true, _) => self.how_text().to_owned(),
            (false, Some(r)) => format!("{} rules[{r}] ({})", self.policy, self.how),
            (false, None) => format!("{} ({})", self.policy, self.how),
        };
        match &self.hop {
            Some(h) => format!("{base} at {h}"),
            None => base,
        }
    }

    fn how_text(&self) -> &'static str {
        match self.how {
            "no-allow-policy" => "no ALLOW policy applies",
            "unenforced" => "nothing enforces",
            "401" => "token not accepted (401)",
            "400" => "bad request (400)",
            other => other,
        }
    }

    /// The policy id, when a policy decided.
    pub(crate) fn policy_id(&self) -> Option<&str> {
        (!self.policy.is_empty()).then_some(self.policy.as_str())
    }
}

impl<'s> Enforcement<'s> {
    /// The decision for one request.
    pub fn decide(&self, req: &Request) -> Decision {
        match self {
            Enforcement::Sidecar(t) => Decision::Authz(t.decide(req)),
            // A request on another port than the path's (one partition for two sides whose
            // paths differ, e.g. a Service that gains a waypoint) is moved to it: the
            // Service's port before a waypoint, the pod's (`targetPort`) without one.
            Enforcement::Path(p) => Decision::Path(match &p.route.waypoint {
                Some(w) => {
                    let forwarded = req.forwarded(Some(w.identity.clone()), p.pod_port, false);
                    if p.via_port != 0 && req.port() != p.via_port {
                        let at = req.forwarded(req.peer().cloned(), p.via_port, true);
                        p.route.decide(&at, &forwarded)
                    } else {
                        p.route.decide(req, &forwarded)
                    }
                }
                None if p.pod_port != 0 && req.port() != p.pod_port => {
                    let at = req.forwarded(req.peer().cloned(), p.pod_port, true);
                    p.route.decide(&at, &at)
                }
                None => p.route.decide(req, req),
            }),
            Enforcement::Unenforced(_) => Decision::Unenforced,
        }
    }

    /// The policy set the decisions name policies of.
    pub fn set(&self) -> Option<&'s PolicySet> {
        match self {
            Enforcement::Sidecar(t) => Some(t.set()),
            Enforcement::Path(p) => match (&p.route.waypoint, &p.route.dest) {
                (Some(w), _) => Some(w.target.set()),
                (None, DestTarget::Sidecar(t)) => Some(t.set()),
                (None, DestTarget::Ztunnel { target, .. }) => Some(target.set()),
                (None, DestTarget::Unenforced(_)) => None,
            },
            Enforcement::Unenforced(_) => None,
        }
    }

    /// The targets with CUSTOM, DENY and ALLOW rules of the sidecar kind on this enforcement:
    /// the sidecar, or a path's waypoint and sidecar destination.
    fn l7_targets(&self) -> Vec<&Target<'s>> {
        match self {
            Enforcement::Sidecar(t) => vec![t],
            Enforcement::Path(p) => {
                let mut out: Vec<&Target<'s>> =
                    p.route.waypoint.iter().map(|w| &w.target).collect();
                if let DestTarget::Sidecar(t) = &p.route.dest {
                    out.push(t);
                }
                out
            }
            Enforcement::Unenforced(_) => Vec::new(),
        }
    }

    /// The enforced rules that can decide a request here (CUSTOM, DENY, ALLOW), for the policy
    /// values the set computation must tell apart.
    pub(crate) fn fields(&self, out: &mut Vec<&'s Field>) {
        for t in self.l7_targets() {
            let set = t.set();
            for &i in t.custom.iter().chain(&t.deny).chain(&t.allow) {
                for r in &set.policies()[i].rules {
                    if r.skipped.is_none() {
                        out.extend(r.fields());
                    }
                }
            }
        }
        // ztunnel compiles the same policies to L4 rules: their values (principals,
        // namespaces, IP blocks, ports) are among the policies' own fields, which split the
        // requests at least as finely.
        if let Enforcement::Path(p) = self {
            if let DestTarget::Ztunnel { target, .. } = &p.route.dest {
                let set = target.set();
                for &i in target.deny.iter().chain(&target.allow) {
                    for r in &set.policies()[i].rules {
                        out.extend(r.fields());
                    }
                }
            }
        }
    }

    /// What decides here, as text: the waypoint and the destination, the policies (`namespace/
    /// name`) with CUSTOM, DENY or ALLOW rules on every hop, and the effective mTLS. Two
    /// enforcements with the same policies (and the same specs) and equal texts decide alike.
    pub fn applied(&self) -> (Vec<String>, String) {
        let mut ids = Vec::new();
        let mut shape = String::new();
        for t in self.l7_targets() {
            let set = t.set();
            for &i in t.custom.iter().chain(&t.deny).chain(&t.allow) {
                ids.push(set.policies()[i].id());
            }
            shape.push_str(&format!("{:?}|{:?}|", t.issuers, t.mtls()));
        }
        match self {
            Enforcement::Path(p) => {
                if let Some(w) = &p.route.waypoint {
                    shape.push_str(&format!("waypoint {} {}|", w.id, w.identity.principal()));
                }
                shape.push_str(&format!("{}:{}|", p.via_port, p.pod_port));
                match &p.route.dest {
                    DestTarget::Ztunnel {
                        target,
                        bypass_inbound,
                    } => {
                        let set = target.set();
                        for &i in target.deny.iter().chain(&target.allow) {
                            ids.push(set.policies()[i].id());
                        }
                        shape.push_str(&format!("ztunnel {bypass_inbound} {:?}|", target.mtls()));
                    }
                    DestTarget::Sidecar(_) => shape.push_str("sidecar|"),
                    DestTarget::Unenforced(why) => shape.push_str(why),
                }
            }
            Enforcement::Sidecar(_) => shape.push_str("sidecar|"),
            Enforcement::Unenforced(why) => shape.push_str(why),
        }
        (ids, shape)
    }

    /// The JWT issuers whose tokens are accepted here.
    pub(crate) fn issuers(&self) -> Vec<&'s crate::authz::policy::JwtIssuer> {
        self.l7_targets()
            .into_iter()
            .flat_map(|t| t.issuers.iter().copied())
            .collect()
    }

    /// The effective mTLS mode on a port (`None`: nothing enforces).
    pub fn mtls(&self, port: u16) -> Option<MtlsMode> {
        match self {
            Enforcement::Sidecar(t) => Some(t.mtls().at(Some(u32::from(port))).mode),
            Enforcement::Path(p) => {
                // The pods are reached on their own port.
                let port = if p.pod_port != 0 { p.pod_port } else { port };
                match &p.route.dest {
                    DestTarget::Sidecar(t) => Some(t.mtls().at(Some(u32::from(port))).mode),
                    DestTarget::Ztunnel { target, .. } => Some(target.mode_on(port)),
                    DestTarget::Unenforced(_) => None,
                }
            }
            Enforcement::Unenforced(_) => None,
        }
    }

    /// Which identity fields a caller matches, and whether it is refused or seen without an
    /// identity: callers with the same key get the same decision for every request.
    pub(crate) fn caller_key(
        &self,
        fields: &[&Field],
        peer: Option<&crate::authz::Identity>,
        port: u16,
    ) -> Vec<u64> {
        if let Enforcement::Path(_) = self {
            // Each hop sees a different peer: callers are told apart by their identity itself.
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            peer.map(|p| p.principal()).hash(&mut h);
            return vec![u64::from(peer.is_some()), h.finish()];
        }
        let Enforcement::Sidecar(t) = self else {
            return Vec::new();
        };
        let probe = Request::tcp(peer.cloned(), port);
        let ctx = match t.prepare(&probe) {
            Ok(c) => c,
            Err(_) => return vec![u64::MAX],
        };
        identity_key(fields, &ctx)
    }

    /// Name what decided.
    pub(crate) fn decider(&self, d: Decision, port: u16) -> Decider {
        match (self, d) {
            (Enforcement::Sidecar(t), Decision::Authz(o)) => target_decider(t, o, port, None),
            (Enforcement::Path(p), Decision::Path(po)) => match (&p.route.waypoint, po.waypoint) {
                (Some(w), true) => target_decider(
                    &w.target,
                    po.outcome,
                    port,
                    Some(format!("waypoint {}", w.id)),
                ),
                _ => {
                    let port = if p.pod_port != 0 { p.pod_port } else { port };
                    let hop = p.route.waypoint.as_ref().map(|_| match &p.route.dest {
                        DestTarget::Ztunnel { .. } => {
                            format!("the ztunnel of {}", p.route.dest_label)
                        }
                        DestTarget::Sidecar(_) => format!("the sidecar of {}", p.route.dest_label),
                        DestTarget::Unenforced(_) => p.route.dest_label.clone(),
                    });
                    match &p.route.dest {
                        DestTarget::Sidecar(t) => target_decider(t, po.outcome, port, hop),
                        DestTarget::Ztunnel { target, .. } => outcome_decider(
                            target.set(),
                            target.allow_policies(),
                            target.mtls().at(Some(u32::from(port))).decided_by.as_ref(),
                            po.outcome,
                            hop,
                        ),
                        DestTarget::Unenforced(_) => step("unenforced", hop),
                    }
                }
            },
            _ => step("unenforced", None),
        }
    }

    /// The CUSTOM policy (index into the policy set) one of whose rules the request matches:
    /// its external authorizer decides as well.
    pub(crate) fn custom_match(&self, req: &Request) -> Option<u32> {
        let t = match self {
            Enforcement::Sidecar(t) => t,
            Enforcement::Path(p) => &p.route.waypoint.as_ref()?.target,
            Enforcement::Unenforced(_) => return None,
        };
        if t.custom.is_empty() {
            return None;
        }
        let ctx = t.prepare(req).ok()?;
        let tcp = !req.is_http();
        t.custom
            .iter()
            .find_map(|&i| t.first_match(i, &ctx, tcp))
            .and_then(|r| u32::try_from(r.policy).ok())
    }

    /// CUSTOM policies whose rules can match here: their provider decides what they match.
    pub fn custom_providers(&self) -> Vec<(String, String)> {
        let t = match self {
            Enforcement::Sidecar(t) => t,
            Enforcement::Path(p) => match &p.route.waypoint {
                Some(w) => &w.target,
                None => return Vec::new(),
            },
            Enforcement::Unenforced(_) => return Vec::new(),
        };
        t.custom
            .iter()
            .map(|&i| {
                let p = &t.set().policies()[i];
                (
                    p.id(),
                    p.provider
                        .clone()
                        .unwrap_or_else(|| "its provider".to_owned()),
                )
            })
            .collect()
    }
}

fn step(how: &'static str, hop: Option<String>) -> Decider {
    Decider {
        kind: "",
        policy: String::new(),
        rule: None,
        how,
        hop,
    }
}

/// What decided at a sidecar-kind target (a sidecar or a waypoint).
fn target_decider(t: &Target<'_>, o: Outcome, port: u16, hop: Option<String>) -> Decider {
    outcome_decider(
        t.set(),
        t.allow_policies(),
        t.mtls().at(Some(u32::from(port))).decided_by.as_ref(),
        o,
        hop,
    )
}

/// What decided an outcome, given the ALLOW policies that applied and the PeerAuthentication
/// that set the port's mode.
fn outcome_decider(
    set: &PolicySet,
    allow: &[usize],
    refused_by: Option<&crate::mtls::Decider>,
    o: Outcome,
    hop: Option<String>,
) -> Decider {
    let rule = |r: RuleRef, how: &'static str, hop: Option<String>| Decider {
        kind: "AuthorizationPolicy",
        policy: set.policy(r).id(),
        rule: Some(r.rule),
        how,
        hop,
    };
    match o {
        Outcome::Allowed(r) => rule(r, "allow", hop),
        Outcome::Denied(r) => rule(r, "deny", hop),
        Outcome::CustomDenied(r) => rule(r, "custom", hop),
        Outcome::NoAllowPolicy => step("no-allow-policy", hop),
        Outcome::Unenforced => step("unenforced", hop),
        Outcome::DefaultDeny => {
            // The allow-nothing policy when one applies, else the first ALLOW policy.
            let first = allow
                .iter()
                .copied()
                .find(|&i| !set.policies()[i].has_rules())
                .or_else(|| allow.first().copied());
            match first {
                Some(i) => Decider {
                    kind: "AuthorizationPolicy",
                    policy: set.policies()[i].id(),
                    rule: None,
                    how: "default-deny",
                    hop,
                },
                None => step("default-deny", hop),
            }
        }
        Outcome::Refused => match refused_by {
            Some(d) => Decider {
                kind: "PeerAuthentication",
                policy: format!("{}/{}", d.namespace, d.name),
                rule: None,
                how: "refused",
                hop,
            },
            None => step("refused", hop),
        },
        Outcome::Unauthenticated => step("401", hop),
        Outcome::BadRequest => step("400", hop),
    }
}

/// Bits of the identity fields a context matches.
pub(crate) fn identity_key(fields: &[&Field], ctx: &Ctx<'_>) -> Vec<u64> {
    let mut key = vec![0u64; 1 + fields.len().div_ceil(64)];
    key[0] = u64::from(ctx.peer.is_some());
    for (i, f) in fields.iter().enumerate() {
        if f.matches(ctx) {
            key[1 + i / 64] |= 1 << (i % 64);
        }
    }
    key
}

/// Whether a field reads the caller's identity.
pub(crate) fn is_identity(f: &Field) -> bool {
    matches!(
        f.attr,
        Attr::Principal | Attr::Namespace | Attr::ServiceAccount | Attr::TrustDomain
    )
}
