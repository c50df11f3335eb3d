//! The decision for one request, step by step as the destination's sidecar takes it.
//!
//! 1. **mTLS.** The port's effective PeerAuthentication mode ([`crate::mtls`]): STRICT refuses
//!    a plaintext client at the connection; under PERMISSIVE a plaintext request carries no
//!    peer identity; under DISABLE the sidecar terminates no mTLS, so no request does.
//! 2. **Bad request.** A path with `%00` or a lower-case method is answered 400 before any
//!    policy runs.
//! 3. **JWT.** With a token, and RequestAuthentications applying to the workload: the token is
//!    accepted when one of their `jwtRules` names its issuer (and, when the rule lists
//!    audiences, one of the token's); otherwise 401. With no RequestAuthentication the token
//!    is not validated and gives no request principal. Without a token nothing happens.
//! 4. **CUSTOM**: a matching rule hands the request to the external authorizer; the simulator
//!    assumes it allows unless told otherwise ([`PolicySet::assume_custom_deny`]).
//! 5. **DENY**: any matching rule denies.
//! 6. **ALLOW**: with no ALLOW policy the request is allowed; a matching rule allows;
//!    otherwise it is denied. AUDIT policies never decide, and `istio.io/dry-run` policies
//!    are evaluated apart, in shadow.
//!
//! On a TCP (non-HTTP) request an ALLOW rule with any HTTP-only field never matches, and
//! HTTP-only fields are dropped from DENY, AUDIT and CUSTOM rules (istio/istio
//! `pilot/pkg/security/authz/builder/builder.go`, `build` with `forTCP`).
//!
//! [`PolicySet`] compiles the policies once; [`PolicySet::target`] selects what applies to one
//! workload once; [`Target::decide`] then answers a request without allocating, so a matrix
//! of identities × workloads costs one `decide` per cell.

use super::field::{Ctx, TrustDomains};
use super::policy::{attaches_to_waypoint, JwtIssuer, JwtPolicy, Policy, Rule, ServiceRef};
use super::request::{Identity, Jwt, Request};
use super::ztunnel::{self, L4Policy, NotSent};
use crate::model::authorization_policy::AuthzAction;
use crate::model::MtlsMode;
use crate::mtls::{Composed, PeerPolicy, PolicyIndex};
use crate::resource::Kind;
use kube::core::DynamicObject;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The mesh facts the decision depends on: from meshguard's policy file ([`Mesh::from_policy`])
/// or from the mesh as installed ([`Mesh::from_context`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mesh {
    /// Policies here without a selector apply to every workload; with one, to matching
    /// workloads in every namespace.
    pub root_namespace: String,
    pub trust_domain: String,
    pub trust_domain_aliases: Vec<String>,
}

impl Mesh {
    /// The policy file's mesh values over Istio's defaults (no mesh object visible).
    pub fn from_policy(p: &crate::config::Policy) -> Mesh {
        Mesh::from_context(&crate::mesh::MeshContext::default().with_overrides(&p.mesh_overrides()))
    }

    /// The mesh as installed (MeshConfig, with meshguard's overrides applied).
    pub fn from_context(c: &crate::mesh::MeshContext) -> Mesh {
        Mesh {
            root_namespace: c.root_namespace().value.clone(),
            trust_domain: c.trust_domain().value.clone(),
            trust_domain_aliases: c.trust_domain_aliases().value.clone(),
        }
    }

    /// An identity in this mesh's trust domain.
    pub fn identity(&self, namespace: &str, service_account: &str) -> Identity {
        Identity::new(&self.trust_domain, namespace, service_account)
    }
}

impl Default for Mesh {
    fn default() -> Mesh {
        Mesh {
            root_namespace: "istio-system".to_owned(),
            trust_domain: "cluster.local".to_owned(),
            trust_domain_aliases: Vec::new(),
        }
    }
}

/// A rule of the policy set: `policy` indexes [`PolicySet::policies`], `rule` its `rules`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub policy: usize,
    pub rule: usize,
}

/// The verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

/// How the decision came about (no allocation: indexes into the policy set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 400 before authorization (bad path or method).
    BadRequest,
    /// STRICT mTLS and a plaintext client: the connection is refused.
    Refused,
    /// 401: a RequestAuthentication applies and the token's issuer or audience is not accepted.
    Unauthenticated,
    /// A CUSTOM rule matched and the external authorizer is assumed to deny.
    CustomDenied(RuleRef),
    /// A DENY rule matched.
    Denied(RuleRef),
    /// No ALLOW policy applies (and no DENY rule matched).
    NoAllowPolicy,
    /// An ALLOW rule matched.
    Allowed(RuleRef),
    /// ALLOW policies apply and none of their rules matched.
    DefaultDeny,
    /// No enforcement point sees the request (a pod outside the mesh, or plaintext past
    /// `bypass-inbound-capture`): it gets through.
    Unenforced,
}

impl Outcome {
    pub fn verdict(self) -> Verdict {
        match self {
            Outcome::NoAllowPolicy | Outcome::Allowed(_) | Outcome::Unenforced => Verdict::Allow,
            _ => Verdict::Deny,
        }
    }
}

/// Every AuthorizationPolicy, RequestAuthentication and PeerAuthentication of a cluster (or a
/// set of manifests), compiled once.
#[derive(Clone, Debug)]
pub struct PolicySet {
    mesh: Mesh,
    policies: Vec<Policy>,
    /// Each policy as istiod converts it for ztunnel (same order as `policies`).
    pub(super) ztunnel: Vec<Result<L4Policy, NotSent>>,
    pub(super) by_namespace: HashMap<String, Vec<usize>>,
    pub(super) jwt: Vec<JwtPolicy>,
    pub(super) jwt_by_namespace: HashMap<String, Vec<usize>>,
    /// The PeerAuthentications by namespace: effective mTLS, and ztunnel's compilation of them.
    /// Shared with whoever else indexed them ([`PolicySet::with_peer_index`]).
    pub(super) mtls: Arc<PolicyIndex>,
    custom_deny: bool,
}

impl PolicySet {
    /// The kinds [`PolicySet::new`] compiles.
    pub fn reads(kind: Kind) -> bool {
        matches!(
            kind,
            Kind::AuthorizationPolicy | Kind::RequestAuthentication | Kind::PeerAuthentication
        )
    }

    /// Compile the objects (other kinds are ignored, so an inventory's whole object list can be
    /// passed, borrowed or owned: `inventory.decoded(PolicySet::reads)`). Policies are kept in
    /// creation order (oldest first, then by name), as istiod lists them.
    pub fn new<B: std::borrow::Borrow<DynamicObject>>(
        mesh: Mesh,
        objects: impl IntoIterator<Item = (Kind, B)>,
    ) -> PolicySet {
        PolicySet::compile(mesh, objects, None)
    }

    /// [`PolicySet::new`] with the PeerAuthentications already indexed (by a [`PolicyIndex`]
    /// over the same mesh's root namespace): the PeerAuthentications among `objects` are
    /// ignored, so they need not be passed.
    pub fn with_peer_index<B: std::borrow::Borrow<DynamicObject>>(
        mesh: Mesh,
        objects: impl IntoIterator<Item = (Kind, B)>,
        peers: Arc<PolicyIndex>,
    ) -> PolicySet {
        PolicySet::compile(mesh, objects, Some(peers))
    }

    fn compile<B: std::borrow::Borrow<DynamicObject>>(
        mesh: Mesh,
        objects: impl IntoIterator<Item = (Kind, B)>,
        indexed: Option<Arc<PolicyIndex>>,
    ) -> PolicySet {
        let trust = TrustDomains {
            domains: std::iter::once(mesh.trust_domain.clone())
                .chain(mesh.trust_domain_aliases.iter().cloned())
                .collect(),
        };
        let mut compiled = Vec::new();
        let mut jwt = Vec::new();
        let mut peers = Vec::new();
        for (kind, obj) in objects {
            let obj = obj.borrow();
            match kind {
                Kind::AuthorizationPolicy => compiled.push((
                    Policy::compile(obj, &trust),
                    ztunnel::convert(obj, &mesh.root_namespace),
                )),
                Kind::RequestAuthentication => jwt.push(JwtPolicy::compile(obj)),
                Kind::PeerAuthentication if indexed.is_none() => {
                    peers.push(PeerPolicy::from_object(obj));
                }
                _ => {}
            }
        }
        compiled.sort_by(|(a, _), (b, _)| {
            (a.created.is_none(), &a.created, &a.name).cmp(&(
                b.created.is_none(),
                &b.created,
                &b.name,
            ))
        });
        let (policies, ztunnel): (Vec<Policy>, Vec<Result<L4Policy, NotSent>>) =
            compiled.into_iter().unzip();
        let mut by_namespace: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in policies.iter().enumerate() {
            by_namespace.entry(p.namespace.clone()).or_default().push(i);
        }
        let mut jwt_by_namespace: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in jwt.iter().enumerate() {
            jwt_by_namespace
                .entry(p.namespace.clone())
                .or_default()
                .push(i);
        }
        PolicySet {
            mtls: indexed
                .unwrap_or_else(|| Arc::new(PolicyIndex::new(&mesh.root_namespace, peers))),
            mesh,
            policies,
            ztunnel,
            by_namespace,
            jwt,
            jwt_by_namespace,
            custom_deny: false,
        }
    }

    /// Assume the external authorizer of CUSTOM policies denies what it is asked about
    /// (default: it allows).
    pub(crate) fn assume_custom_deny(mut self, deny: bool) -> PolicySet {
        self.custom_deny = deny;
        self
    }

    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// Every compiled AuthorizationPolicy.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    pub fn policy(&self, r: RuleRef) -> &Policy {
        &self.policies[r.policy]
    }

    /// Policy `i` as istiod converts it for ztunnel, or why it sends nothing.
    pub(crate) fn ztunnel_policy(&self, i: usize) -> Result<&L4Policy, &NotSent> {
        match self.ztunnel.get(i) {
            Some(Ok(p)) => Ok(p),
            Some(Err(e)) => Err(e),
            None => Err(&NotSent::TargetRefs),
        }
    }

    /// The PeerAuthentication-derived DENY policies ztunnel applies to a captured workload.
    pub(crate) fn peer_derived(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> ztunnel::PeerDerived {
        ztunnel::peer_derived(
            self.mtls.peers_for(namespace),
            &self.mesh.root_namespace,
            namespace,
            labels,
        )
    }

    /// The root namespace, then `namespace` when it is another one.
    pub(super) fn scope_namespaces<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a str> {
        let root = self.mesh.root_namespace.as_str();
        std::iter::once(root).chain((namespace != root).then_some(namespace))
    }

    /// What a waypoint applies to requests for `service` (or, without one, to workload-addressed
    /// traffic): the policies whose `targetRef(s)` attach to it ([`attaches_to_waypoint`]),
    /// evaluated with the sidecar algorithm (CUSTOM, DENY, ALLOW); RequestAuthentications
    /// attach the same way. The waypoint sees the client's own identity (HBONE).
    pub(crate) fn waypoint_target(
        &self,
        waypoint_namespace: &str,
        waypoint_name: &str,
        service: Option<ServiceRef<'_>>,
    ) -> Target<'_> {
        let root = self.mesh.root_namespace.as_str();
        let mut t = Target {
            set: self,
            mtls: Composed {
                workload_mode: crate::mtls::Effective {
                    mode: MtlsMode::Strict,
                    decided_by: None,
                },
                ports: BTreeMap::new(),
            },
            custom: Vec::new(),
            deny: Vec::new(),
            allow: Vec::new(),
            audit: Vec::new(),
            dry_run: Vec::new(),
            not_applied: Vec::new(),
            ignored: Vec::new(),
            issuers: Vec::new(),
            at: At::Waypoint(format!("{waypoint_namespace}/{waypoint_name}")),
        };
        let mut namespaces = vec![root, waypoint_namespace];
        if let Some(s) = service {
            namespaces.push(s.namespace);
        }
        namespaces.sort_unstable();
        namespaces.dedup();
        let attaches = |ns: &str, refs: &[super::policy::TargetRef]| {
            attaches_to_waypoint(refs, ns, root, waypoint_namespace, waypoint_name, service)
        };
        for ns in &namespaces {
            for &i in self.by_namespace.get(*ns).into_iter().flatten() {
                let p = &self.policies[i];
                if !attaches(ns, &p.refs) {
                    // Selector and namespace-wide policies of the Service's namespace are the ones
                    // a reader expects here: say why they do not apply.
                    if !p.target_refs && service.is_some_and(|s| s.namespace == *ns) {
                        t.not_applied.push(i);
                    }
                    continue;
                }
                let list = match p.action {
                    None => &mut t.ignored,
                    Some(_) if p.dry_run => &mut t.dry_run,
                    Some(AuthzAction::Custom) => &mut t.custom,
                    Some(AuthzAction::Deny) => &mut t.deny,
                    Some(AuthzAction::Allow) => &mut t.allow,
                    Some(AuthzAction::Audit) => &mut t.audit,
                };
                list.push(i);
            }
            for &i in self.jwt_by_namespace.get(*ns).into_iter().flatten() {
                let p = &self.jwt[i];
                if attaches(ns, &p.refs) {
                    t.issuers.extend(p.issuers.iter());
                }
            }
        }
        for list in [
            &mut t.custom,
            &mut t.deny,
            &mut t.allow,
            &mut t.audit,
            &mut t.dry_run,
        ] {
            list.sort_unstable();
        }
        t.issuers.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        t
    }

    /// What applies to a workload in `namespace` whose pods carry `labels`: computed once,
    /// then used for any number of requests.
    pub fn target(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Target<'_> {
        let mut t = Target {
            set: self,
            mtls: self.mtls.compose(namespace, labels),
            custom: Vec::new(),
            deny: Vec::new(),
            allow: Vec::new(),
            audit: Vec::new(),
            dry_run: Vec::new(),
            not_applied: Vec::new(),
            ignored: Vec::new(),
            issuers: Vec::new(),
            at: At::Sidecar,
        };
        let mut namespaces = vec![self.mesh.root_namespace.as_str()];
        if namespace != self.mesh.root_namespace {
            namespaces.push(namespace);
        }
        for ns in &namespaces {
            for &i in self.by_namespace.get(*ns).into_iter().flatten() {
                let p = &self.policies[i];
                if p.target_refs {
                    t.not_applied.push(i);
                    continue;
                }
                if !p.selects(labels) {
                    continue;
                }
                let list = match p.action {
                    None => &mut t.ignored,
                    Some(_) if p.dry_run => &mut t.dry_run,
                    Some(AuthzAction::Custom) => &mut t.custom,
                    Some(AuthzAction::Deny) => &mut t.deny,
                    Some(AuthzAction::Allow) => &mut t.allow,
                    Some(AuthzAction::Audit) => &mut t.audit,
                };
                list.push(i);
            }
            for &i in self.jwt_by_namespace.get(*ns).into_iter().flatten() {
                let p = &self.jwt[i];
                if p.selects(labels) {
                    t.issuers.extend(p.issuers.iter());
                }
            }
        }
        // Envoy's JWT providers are sorted by issuer (istio/istio `policy_applier.go`).
        t.issuers.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        t
    }
}

/// The token step's result.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TokenStep<'s> {
    /// No token, or a TCP request.
    None,
    /// A token no RequestAuthentication validates: ignored, no request principal.
    Ignored,
    Accepted(&'s JwtIssuer),
    /// 401: wrong issuer (no rule names it) or audience.
    Rejected {
        issuer_known: bool,
    },
}

/// Which proxy a [`Target`] stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum At {
    /// The destination workload's sidecar.
    Sidecar,
    /// A waypoint (`namespace/name`): only `targetRef(s)` policies, clients seen by their own
    /// identity over HBONE.
    Waypoint(String),
}

/// Everything that applies to one workload.
#[derive(Clone, Debug)]
pub struct Target<'s> {
    pub(crate) set: &'s PolicySet,
    pub(crate) mtls: Composed,
    pub(crate) custom: Vec<usize>,
    pub(crate) deny: Vec<usize>,
    pub(crate) allow: Vec<usize>,
    pub(crate) audit: Vec<usize>,
    /// Dry-run policies of every action.
    pub(crate) dry_run: Vec<usize>,
    /// Policies with target refs in the namespaces looked at: not applied to sidecars.
    pub(crate) not_applied: Vec<usize>,
    /// Policies with an action Istio does not know.
    pub(crate) ignored: Vec<usize>,
    pub(crate) issuers: Vec<&'s JwtIssuer>,
    /// The sidecar of a workload, or a waypoint.
    pub(crate) at: At,
}

impl<'s> Target<'s> {
    /// The policy set this target was selected from.
    pub fn set(&self) -> &'s PolicySet {
        self.set
    }

    /// The effective mTLS of the workload (per port via [`Composed::at`]).
    pub fn mtls(&self) -> &Composed {
        &self.mtls
    }

    /// Whether any enforced ALLOW policy applies (the workload is default-deny).
    pub fn has_allow_policies(&self) -> bool {
        !self.allow.is_empty()
    }

    /// The enforced ALLOW policies that apply, as indexes into [`PolicySet::policies`].
    pub(crate) fn allow_policies(&self) -> &[usize] {
        &self.allow
    }

    /// The enforced DENY and CUSTOM policies that apply.
    pub(crate) fn deny_policies(&self) -> impl Iterator<Item = usize> + '_ {
        self.deny.iter().chain(&self.custom).copied()
    }

    /// A sidecar or a waypoint.
    pub fn at(&self) -> &At {
        &self.at
    }

    /// The decision for one request.
    pub fn decide(&self, req: &Request) -> Outcome {
        match self.prepare(req) {
            Err(o) => o,
            Ok(ctx) => self.authorize(&ctx, false),
        }
    }

    /// Steps 1–3: the request as the authorization filters see it, or the early outcome.
    pub(crate) fn prepare<'r>(&'r self, req: &'r Request) -> Result<Ctx<'r>, Outcome>
    where
        's: 'r,
    {
        let mode = self.mtls.at(Some(u32::from(req.port))).mode;
        if req.peer.is_none() && mode == MtlsMode::Strict {
            return Err(Outcome::Refused);
        }
        if req.http.as_ref().is_some_and(|h| h.rejection().is_some()) {
            return Err(Outcome::BadRequest);
        }
        let peer = if mode == MtlsMode::Disable {
            None
        } else {
            req.peer.as_ref()
        };
        let (jwt, space_delimited): (Option<&Jwt>, &[String]) = match self.token(req) {
            TokenStep::Rejected { .. } => return Err(Outcome::Unauthenticated),
            TokenStep::Accepted(issuer) => (req.jwt.as_ref(), &issuer.space_delimited),
            TokenStep::None | TokenStep::Ignored => (None, &[]),
        };
        Ok(Ctx {
            req,
            peer,
            jwt,
            space_delimited,
        })
    }

    /// Step 3 alone.
    pub(crate) fn token(&self, req: &Request) -> TokenStep<'s> {
        let (Some(_), Some(jwt)) = (&req.http, &req.jwt) else {
            return TokenStep::None;
        };
        if self.issuers.is_empty() {
            return TokenStep::Ignored;
        }
        let mut issuer_known = false;
        for i in &self.issuers {
            if i.issuer != jwt.issuer() {
                continue;
            }
            issuer_known = true;
            if i.audiences.is_empty()
                || jwt
                    .audiences()
                    .iter()
                    .any(|a| i.audiences.iter().any(|x| x == a))
            {
                return TokenStep::Accepted(i);
            }
        }
        TokenStep::Rejected { issuer_known }
    }

    /// Steps 4–6. `with_dry_run`: evaluate dry-run policies as if enforced (the shadow
    /// decision).
    pub(crate) fn authorize(&self, ctx: &Ctx<'_>, with_dry_run: bool) -> Outcome {
        let tcp = ctx.req.http.is_none();
        let dry = |action: AuthzAction| {
            self.dry_run
                .iter()
                .copied()
                .filter(move |&i| with_dry_run && self.set.policies[i].action == Some(action))
        };
        let first = |list: &[usize], action: AuthzAction| {
            list.iter()
                .copied()
                .chain(dry(action))
                .find_map(|i| self.first_match(i, ctx, tcp))
        };
        if let Some(r) = first(&self.custom, AuthzAction::Custom) {
            if self.set.custom_deny {
                return Outcome::CustomDenied(r);
            }
        }
        if let Some(r) = first(&self.deny, AuthzAction::Deny) {
            return Outcome::Denied(r);
        }
        let any_allow = !self.allow.is_empty() || dry(AuthzAction::Allow).next().is_some();
        if !any_allow {
            return Outcome::NoAllowPolicy;
        }
        match first(&self.allow, AuthzAction::Allow) {
            Some(r) => Outcome::Allowed(r),
            None => Outcome::DefaultDeny,
        }
    }

    /// The first rule of policy `i` that matches.
    pub(crate) fn first_match(&self, i: usize, ctx: &Ctx<'_>, tcp: bool) -> Option<RuleRef> {
        let p = &self.set.policies[i];
        let allow = p.action == Some(AuthzAction::Allow);
        p.rules
            .iter()
            .find(|r| rule_matches(r, ctx, tcp, allow))
            .map(|r| RuleRef {
                policy: i,
                rule: r.index,
            })
    }
}

/// Whether a rule matches. `allow`: the rule belongs to an ALLOW policy (on TCP, HTTP-only
/// fields make it never match; for other actions they are dropped).
pub(crate) fn rule_matches(rule: &Rule, ctx: &Ctx<'_>, tcp: bool, allow: bool) -> bool {
    if rule.skipped.is_some() || (tcp && allow && rule.http_only.is_some()) {
        return false;
    }
    let ok = |f: &super::field::Field| (tcp && f.http_only()) || f.matches(ctx);
    let clause =
        |cs: &[super::policy::Clause]| cs.is_empty() || cs.iter().any(|c| c.fields.iter().all(ok));
    clause(&rule.from) && clause(&rule.to) && rule.when.iter().all(ok)
}

#[cfg(test)]
pub(crate) mod tests;
