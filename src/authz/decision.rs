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
use super::ztunnel::{self, L4Action, L4Policy, NotSent, ZtunnelTarget};
use crate::istio::MtlsMode;
use crate::model::authorization_policy::AuthzAction;
use crate::mtls::{Composed, PeerPolicy, PolicyIndex};
use crate::resource::Kind;
use kube::core::DynamicObject;
use std::collections::{BTreeMap, HashMap};

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
    ztunnel: Vec<Result<L4Policy, NotSent>>,
    /// The PeerAuthentications, for ztunnel's compilation of them.
    peers: Vec<PeerPolicy>,
    by_namespace: HashMap<String, Vec<usize>>,
    jwt: Vec<JwtPolicy>,
    jwt_by_namespace: HashMap<String, Vec<usize>>,
    mtls: PolicyIndex,
    custom_deny: bool,
}

impl PolicySet {
    /// Compile the objects (other kinds are ignored, so an inventory's whole object list can be
    /// passed: `inventory.objects().iter().map(|o| (o.kind, &o.object))`). Policies are kept in
    /// creation order (oldest first, then by name), as istiod lists them.
    pub fn new<'o>(
        mesh: Mesh,
        objects: impl IntoIterator<Item = (Kind, &'o DynamicObject)>,
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
            match kind {
                Kind::AuthorizationPolicy => compiled.push((
                    Policy::compile(obj, &trust),
                    ztunnel::convert(obj, &mesh.root_namespace),
                )),
                Kind::RequestAuthentication => jwt.push(JwtPolicy::compile(obj)),
                Kind::PeerAuthentication => peers.push(PeerPolicy::from_object(obj)),
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
            mtls: PolicyIndex::new(&mesh.root_namespace, peers.iter().cloned()),
            mesh,
            policies,
            ztunnel,
            peers,
            by_namespace,
            jwt,
            jwt_by_namespace,
            custom_deny: false,
        }
    }

    /// Assume the external authorizer of CUSTOM policies denies what it is asked about
    /// (default: it allows).
    pub fn assume_custom_deny(mut self, deny: bool) -> PolicySet {
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
    pub fn ztunnel_policy(&self, i: usize) -> Result<&L4Policy, &NotSent> {
        match self.ztunnel.get(i) {
            Some(Ok(p)) => Ok(p),
            Some(Err(e)) => Err(e),
            None => Err(&NotSent::TargetRefs),
        }
    }

    /// What the destination ztunnel applies to a captured workload in `namespace` whose pods
    /// carry `labels` ([`ztunnel`]): the selector, namespace-wide and root policies istiod
    /// converts for it, and the PeerAuthentication-derived DENY policies.
    pub fn ztunnel_target(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> ZtunnelTarget<'_> {
        let mut t = ZtunnelTarget {
            set: self,
            deny: Vec::new(),
            allow: Vec::new(),
            not_sent: Vec::new(),
            peer: ztunnel::peer_derived(&self.peers, &self.mesh.root_namespace, namespace, labels),
            mtls: self.mtls.compose(namespace, labels),
            selector_jwt: Vec::new(),
        };
        for ns in self.scope_namespaces(namespace) {
            for &i in self.by_namespace.get(ns).into_iter().flatten() {
                let p = &self.policies[i];
                if !p.target_refs && !p.selects(labels) {
                    continue;
                }
                match &self.ztunnel[i] {
                    Ok(l) if l.action == L4Action::Deny => t.deny.push(i),
                    Ok(_) => t.allow.push(i),
                    Err(_) => t.not_sent.push(i),
                }
            }
            for &i in self.jwt_by_namespace.get(ns).into_iter().flatten() {
                let p = &self.jwt[i];
                if p.selects(labels) {
                    t.selector_jwt.push(p.id.clone());
                }
            }
        }
        t
    }

    /// The PeerAuthentication-derived DENY policies ztunnel applies to a captured workload.
    pub fn peer_derived(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> ztunnel::PeerDerived {
        ztunnel::peer_derived(&self.peers, &self.mesh.root_namespace, namespace, labels)
    }

    /// The root namespace, then `namespace` when it is another one.
    fn scope_namespaces<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a str> {
        let root = self.mesh.root_namespace.as_str();
        std::iter::once(root).chain((namespace != root).then_some(namespace))
    }

    /// What a waypoint applies to requests for `service` (or, without one, to workload-addressed
    /// traffic): the policies whose `targetRef(s)` attach to it ([`attaches_to_waypoint`]),
    /// evaluated with the sidecar algorithm (CUSTOM, DENY, ALLOW); RequestAuthentications
    /// attach the same way. The waypoint sees the client's own identity (HBONE).
    pub fn waypoint_target(
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
    pub fn allow_policies(&self) -> &[usize] {
        &self.allow
    }

    /// The enforced DENY and CUSTOM policies that apply.
    pub fn deny_policies(&self) -> impl Iterator<Item = usize> + '_ {
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
pub(crate) mod tests {
    use super::*;
    use crate::authz::request::Http;
    use serde_json::{json, Value};

    /// An object of `kind` in `ns`; `meta` is merged into its metadata.
    pub(crate) fn obj(
        kind: Kind,
        ns: &str,
        name: &str,
        spec: Value,
        meta: Value,
    ) -> (Kind, DynamicObject) {
        let mut metadata = json!({"name": name, "namespace": ns});
        if let (Some(m), Some(extra)) = (metadata.as_object_mut(), meta.as_object()) {
            m.extend(extra.clone());
        }
        let o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "security.istio.io/v1", "kind": kind.as_str(),
            "metadata": metadata, "spec": spec
        }))
        .expect("object");
        (kind, o)
    }

    pub(crate) fn ap(ns: &str, name: &str, spec: Value) -> (Kind, DynamicObject) {
        obj(Kind::AuthorizationPolicy, ns, name, spec, json!({}))
    }

    pub(crate) fn set(objects: &[(Kind, DynamicObject)]) -> PolicySet {
        PolicySet::new(Mesh::default(), objects.iter().map(|(k, o)| (*k, o)))
    }

    fn labels(app: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_owned(), app.to_owned())])
    }

    fn id(ns: &str, sa: &str) -> Option<Identity> {
        Some(Identity::new("cluster.local", ns, sa))
    }

    fn get(path: &str) -> Http {
        Http::new("GET", path)
    }

    const WEB: &str = "cluster.local/ns/prod/sa/web";

    #[test]
    fn precedence_custom_deny_allow() {
        let allow_web = ap(
            "prod",
            "allow-web",
            json!({"rules": [{"from": [{"source": {"principals": [WEB]}}]}]}),
        );
        let deny_admin = ap(
            "prod",
            "deny-admin",
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]}),
        );
        let custom = ap(
            "prod",
            "ext",
            json!({"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{"to": [{"operation": {"paths": ["/ext/*"]}}]}]}),
        );
        let audit = ap(
            "prod",
            "audit-all",
            json!({"action": "AUDIT", "rules": [{}]}),
        );
        let all = [
            allow_web.clone(),
            deny_admin.clone(),
            custom.clone(),
            audit.clone(),
        ];
        let s = set(&all);
        let deny_set = set(&all).assume_custom_deny(true);
        let t = s.target("prod", &labels("api"));
        let td = deny_set.target("prod", &labels("api"));
        let web = |p: &str| Request::http(id("prod", "web"), 80, get(p));
        let other = |p: &str| Request::http(id("prod", "other"), 80, get(p));
        let r = |policy: &str, rule: usize| (policy.to_owned(), rule);
        let named = |t: &Target<'_>, o: Outcome| match o {
            Outcome::Allowed(x) | Outcome::Denied(x) | Outcome::CustomDenied(x) => {
                Some(r(&t.set.policy(x).name, x.rule))
            }
            _ => None,
        };
        // (target, request, outcome kind, deciding policy)
        type Case<'a> = (&'a Target<'a>, Request, &'a str, Option<(String, usize)>);
        let cases: Vec<Case<'_>> = vec![
            (&t, web("/api"), "allowed", Some(r("allow-web", 0))),
            (&t, other("/api"), "default-deny", None),
            (&t, web("/admin/x"), "denied", Some(r("deny-admin", 0))),
            // CUSTOM matched, the authorizer assumed to allow: DENY and ALLOW still decide.
            (&t, web("/ext/x"), "allowed", Some(r("allow-web", 0))),
            (&t, other("/ext/x"), "default-deny", None),
            (&td, web("/ext/x"), "custom-denied", Some(r("ext", 0))),
            (&td, web("/api"), "allowed", Some(r("allow-web", 0))),
        ];
        for (t, req, kind, by) in cases {
            let o = t.decide(&req);
            let got = match o {
                Outcome::Allowed(_) => "allowed",
                Outcome::Denied(_) => "denied",
                Outcome::CustomDenied(_) => "custom-denied",
                Outcome::DefaultDeny => "default-deny",
                Outcome::NoAllowPolicy => "no-allow-policy",
                _ => "other",
            };
            assert_eq!((got, named(t, o)), (kind, by), "{}", req.describe());
            assert_eq!(t.explain(&req).outcome, o, "explain agrees with decide");
        }
        // AUDIT never decides, and is reported.
        let ex = t.explain(&other("/api"));
        assert_eq!(ex.audit.len(), 1);
        assert_eq!(ex.verdict, Verdict::Deny);
        let ex = t.explain(&web("/ext/x"));
        assert_eq!(ex.custom[0].provider.as_deref(), Some("opa"));
        // Without ALLOW policies everything not denied is allowed.
        let s = set(&[deny_admin, custom, audit]);
        let t = s.target("prod", &labels("api"));
        assert_eq!(t.decide(&other("/api")), Outcome::NoAllowPolicy);
        assert!(matches!(t.decide(&other("/admin/")), Outcome::Denied(_)));
    }

    #[test]
    fn allow_nothing_and_allow_all() {
        let s = set(&[ap("prod", "deny-all", json!({}))]);
        let t = s.target("prod", &labels("api"));
        assert_eq!(
            t.decide(&Request::http(id("prod", "web"), 80, get("/"))),
            Outcome::DefaultDeny
        );
        let ex = t.explain(&Request::http(id("prod", "web"), 80, get("/")));
        assert!(
            ex.reason
                .contains("prod/deny-all (no rules: allows nothing)"),
            "{}",
            ex.reason
        );
        assert!(
            ex.near_misses.is_empty(),
            "a rule-less policy has no rule to come close to"
        );
        let s = set(&[
            ap("prod", "deny-all", json!({})),
            ap("prod", "all", json!({"rules": [{}]})),
        ]);
        let t = s.target("prod", &labels("api"));
        assert!(matches!(
            t.decide(&Request::tcp(None, 80)),
            Outcome::Allowed(_)
        ));
    }

    #[test]
    fn dry_run_is_shadow_only() {
        let dry = |v: &str| json!({"annotations": {"istio.io/dry-run": v}});
        let deny = obj(
            Kind::AuthorizationPolicy,
            "prod",
            "dry-deny",
            json!({"action": "DENY", "rules": [{"from": [{"source": {"principals": [WEB]}}]}]}),
            dry("true"),
        );
        let allow = obj(
            Kind::AuthorizationPolicy,
            "prod",
            "dry-allow",
            json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/admin"]}}]}]}),
            dry("true"),
        );
        let s = set(&[deny, allow]);
        let t = s.target("prod", &labels("api"));
        let web = Request::http(id("prod", "web"), 80, get("/"));
        let admin = Request::http(id("prod", "admin"), 80, get("/"));
        // Enforced: nothing applies, so both are allowed.
        assert_eq!(t.decide(&web), Outcome::NoAllowPolicy);
        assert_eq!(t.decide(&admin), Outcome::NoAllowPolicy);
        let ex = t.explain(&web);
        let shadow = ex.shadow.expect("shadow");
        assert_eq!(shadow.verdict, Verdict::Deny);
        assert_eq!(
            shadow.decided_by.map(|d| d.policy),
            Some("prod/dry-deny".to_owned())
        );
        assert_eq!(shadow.matched.len(), 1);
        let shadow = t.explain(&admin).shadow.expect("shadow");
        assert_eq!(shadow.verdict, Verdict::Allow);
        // "false" is not dry-run.
        let s = set(&[obj(
            Kind::AuthorizationPolicy,
            "prod",
            "d",
            json!({"action": "DENY", "rules": [{}]}),
            dry("false"),
        )]);
        assert!(matches!(
            s.target("prod", &labels("api")).decide(&web),
            Outcome::Denied(_)
        ));
    }

    #[test]
    fn tcp_drops_http_fields() {
        let s = set(&[
            ap(
                "prod",
                "allow-http",
                json!({"rules": [{"from": [{"source": {"principals": [WEB]}}], "to": [{"operation": {"methods": ["GET"]}}]}]}),
            ),
            ap(
                "prod",
                "allow-port",
                json!({"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/db"]}}], "to": [{"operation": {"ports": ["5432"]}}]}]}),
            ),
        ]);
        let t = s.target("prod", &labels("api"));
        // The same caller: allowed over HTTP, denied over TCP (the ALLOW rule has methods).
        assert!(matches!(
            t.decide(&Request::http(id("prod", "web"), 80, get("/"))),
            Outcome::Allowed(_)
        ));
        assert_eq!(
            t.decide(&Request::tcp(id("prod", "web"), 80)),
            Outcome::DefaultDeny
        );
        assert!(matches!(
            t.decide(&Request::tcp(id("prod", "db"), 5432)),
            Outcome::Allowed(_)
        ));
        assert_eq!(
            t.decide(&Request::tcp(id("prod", "db"), 5433)),
            Outcome::DefaultDeny
        );
        let ex = t.explain(&Request::tcp(id("prod", "web"), 80));
        let m = &ex.near_misses;
        assert_eq!(
            m[0].policy, "prod/allow-port",
            "an evaluable rule ranks first: {m:?}"
        );
        assert!(m[1].reason.contains("never matches a TCP request"), "{m:?}");
        // DENY: HTTP-only fields are dropped, so a paths-only DENY denies all TCP; ports stay.
        let s = set(&[ap(
            "prod",
            "deny-paths",
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}),
        )]);
        let t = s.target("prod", &labels("api"));
        assert!(matches!(
            t.decide(&Request::tcp(id("prod", "web"), 80)),
            Outcome::Denied(_)
        ));
        assert_eq!(
            t.decide(&Request::http(id("prod", "web"), 80, get("/x"))),
            Outcome::NoAllowPolicy
        );
        let s = set(&[ap(
            "prod",
            "deny-port-path",
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"ports": ["8080"], "paths": ["/admin"]}}]}]}),
        )]);
        let t = s.target("prod", &labels("api"));
        assert_eq!(
            t.decide(&Request::tcp(id("prod", "web"), 80)),
            Outcome::NoAllowPolicy
        );
        assert!(matches!(
            t.decide(&Request::tcp(id("prod", "web"), 8080)),
            Outcome::Denied(_)
        ));
    }

    fn peer_auth(ns: &str, name: &str, spec: Value) -> (Kind, DynamicObject) {
        obj(Kind::PeerAuthentication, ns, name, spec, json!({}))
    }

    #[test]
    fn mtls_step_and_identity_fields() {
        let deny_plain = ap(
            "prod",
            "deny-plaintext",
            json!({"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]}),
        );
        let deny_web = ap(
            "prod",
            "deny-web",
            json!({"action": "DENY", "rules": [{"from": [{"source": {"principals": [WEB]}}]}]}),
        );
        let permissive = peer_auth(
            "prod",
            "permissive",
            json!({"mtls": {"mode": "PERMISSIVE"}}),
        );
        let strict_80 = peer_auth(
            "prod",
            "api",
            json!({
            "selector": {"matchLabels": {"app": "api"}}, "mtls": {"mode": "STRICT"},
            "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}, "9090": {"mode": "DISABLE"}}}),
        );
        let plain = |port| Request::tcp(None, port);
        let web = |port| Request::tcp(id("prod", "web"), port);

        // PERMISSIVE: a plaintext caller has no identity; notPrincipals catches it, a DENY on
        // principals does not.
        let s = set(&[permissive.clone(), deny_plain.clone()]);
        let t = s.target("prod", &labels("web"));
        assert!(matches!(t.decide(&plain(80)), Outcome::Denied(_)));
        assert_eq!(t.decide(&web(80)), Outcome::NoAllowPolicy);
        let s = set(&[permissive.clone(), deny_web.clone()]);
        let t = s.target("prod", &labels("web"));
        assert_eq!(
            t.decide(&plain(80)),
            Outcome::NoAllowPolicy,
            "plaintext bypasses a DENY on principals"
        );
        assert!(matches!(t.decide(&web(80)), Outcome::Denied(_)));
        let ex = t.explain(&plain(80));
        assert!(
            ex.notes.iter().any(|n| n.contains("no peer identity")),
            "{:?}",
            ex.notes
        );

        // No PeerAuthentication at all: PERMISSIVE by default.
        let s = set(std::slice::from_ref(&deny_plain));
        assert!(matches!(
            s.target("prod", &labels("web")).decide(&plain(80)),
            Outcome::Denied(_)
        ));

        // STRICT refuses plaintext; port-level PERMISSIVE lets it in; DISABLE strips identity.
        let s = set(&[permissive, strict_80, deny_web]);
        let t = s.target("prod", &labels("api"));
        assert_eq!(t.decide(&plain(80)), Outcome::Refused);
        assert_eq!(t.decide(&plain(8080)), Outcome::NoAllowPolicy);
        assert!(matches!(t.decide(&web(80)), Outcome::Denied(_)));
        assert_eq!(
            t.decide(&web(9090)),
            Outcome::NoAllowPolicy,
            "DISABLE: no peer identity to deny"
        );
        let ex = t.explain(&plain(80));
        assert_eq!(
            ex.headline,
            "DENY (connection refused: STRICT mTLS, plaintext client)"
        );
        assert_eq!(ex.mtls.mode, "STRICT");
        assert_eq!(
            ex.mtls.decided_by.as_ref().map(|d| d.level.as_str()),
            Some("workload")
        );
        assert_eq!(
            t.explain(&plain(8080)).mtls.decided_by.map(|d| d.level),
            Some("port".to_owned())
        );
    }

    #[test]
    fn jwt_step() {
        let ra = obj(
            Kind::RequestAuthentication,
            "prod",
            "jwt",
            json!({
            "selector": {"matchLabels": {"app": "api"}},
            "jwtRules": [{"issuer": "https://auth.example.com", "audiences": ["api"]},
                         {"issuer": "https://other.example.com"}]}),
            json!({}),
        );
        let require = ap(
            "prod",
            "require-jwt",
            json!({"selector": {"matchLabels": {"app": "api"}}, "rules": [{"from": [{"source": {"requestPrincipals": ["https://auth.example.com/*"]}}],
            "when": [{"key": "request.auth.claims[scope]", "values": ["write"]}]}]}),
        );
        let s = set(&[ra, require]);
        let t = s.target("prod", &labels("api"));
        let req = |jwt: Option<Jwt>| {
            let r = Request::http(id("prod", "web"), 80, get("/"));
            match jwt {
                Some(j) => r.with_jwt(j),
                None => r,
            }
        };
        let token = |iss: &str, aud: &[&str]| {
            Jwt::new(iss, "alice")
                .with_audiences(&aud.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
                .with_claim(&["scope".to_owned()], json!("read write"))
        };
        assert!(matches!(
            t.decide(&req(Some(token("https://auth.example.com", &["api"])))),
            Outcome::Allowed(_)
        ));
        assert!(matches!(
            t.decide(&req(Some(token("https://auth.example.com", &["x", "api"])))),
            Outcome::Allowed(_)
        ));
        assert_eq!(
            t.decide(&req(Some(token("https://auth.example.com", &["x"])))),
            Outcome::Unauthenticated
        );
        assert_eq!(
            t.decide(&req(Some(token("https://auth.example.com", &[])))),
            Outcome::Unauthenticated
        );
        assert_eq!(
            t.decide(&req(Some(token("https://evil.example.com", &["api"])))),
            Outcome::Unauthenticated
        );
        // An issuer without audiences accepts any; its principal does not match the rule.
        assert_eq!(
            t.decide(&req(Some(token("https://other.example.com", &[])))),
            Outcome::DefaultDeny
        );
        // No token: not a 401, just no request principal.
        assert_eq!(t.decide(&req(None)), Outcome::DefaultDeny);
        let ex = t.explain(&req(Some(token("https://evil.example.com", &["api"]))));
        assert_eq!(ex.headline, "DENY (401: token issuer not accepted)");
        assert!(
            ex.reason.contains("https://auth.example.com (prod/jwt)"),
            "{}",
            ex.reason
        );
        let ex = t.explain(&req(Some(token("https://auth.example.com", &["x"]))));
        assert_eq!(ex.headline, "DENY (401: token audience not accepted)");
        // A workload no RequestAuthentication selects ignores the token.
        let t = s.target("prod", &labels("web"));
        let ex = t.explain(&req(Some(token("https://evil.example.com", &["api"]))));
        assert_eq!(ex.outcome, Outcome::NoAllowPolicy);
        assert!(
            ex.notes.iter().any(|n| n.contains("not validated")),
            "{:?}",
            ex.notes
        );
    }

    #[test]
    fn which_policies_apply() {
        let s = set(&[
            ap(
                "istio-system",
                "mesh",
                json!({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/mesh"]}}]}]}),
            ),
            ap(
                "istio-system",
                "mesh-api",
                json!({"action": "DENY", "selector": {"matchLabels": {"app": "api"}}, "rules": [{"to": [{"operation": {"paths": ["/mesh-api"]}}]}]}),
            ),
            ap(
                "other",
                "elsewhere",
                json!({"action": "DENY", "rules": [{}]}),
            ),
            ap(
                "prod",
                "web-only",
                json!({"action": "DENY", "selector": {"matchLabels": {"app": "web"}}, "rules": [{}]}),
            ),
            ap(
                "prod",
                "waypoint",
                json!({"action": "DENY", "targetRefs": [{"kind": "Service", "name": "api"}], "rules": [{}]}),
            ),
            ap("prod", "typo", json!({"action": "DENIED", "rules": [{}]})),
        ]);
        let t = s.target("prod", &labels("api"));
        let r = |p: &str| Request::http(id("prod", "web"), 80, get(p));
        assert!(matches!(t.decide(&r("/mesh")), Outcome::Denied(_)));
        assert!(matches!(t.decide(&r("/mesh-api")), Outcome::Denied(_)));
        assert_eq!(t.decide(&r("/other")), Outcome::NoAllowPolicy);
        let ex = t.explain(&r("/other"));
        assert_eq!(ex.not_applied.len(), 1, "{:?}", ex.not_applied);
        assert!(ex.not_applied[0].starts_with("prod/waypoint"));
        assert!(
            ex.notes.iter().any(|n| n.contains("DENIED")),
            "{:?}",
            ex.notes
        );
        assert_eq!(ex.policies.len(), 2);
        let t = s.target("prod", &labels("web"));
        assert!(matches!(t.decide(&r("/other")), Outcome::Denied(_)));
        let t = s.target("istio-system", &labels("x"));
        assert!(matches!(t.decide(&r("/mesh")), Outcome::Denied(_)));
    }

    #[test]
    fn bad_requests_are_400() {
        let s = set(&[]);
        let t = s.target("prod", &labels("api"));
        for h in [Http::new("GET", "/a%00b"), Http::new("get", "/")] {
            let req = Request::http(id("prod", "web"), 80, h.clone());
            assert_eq!(t.decide(&req), Outcome::BadRequest);
            assert_eq!(t.explain(&req).headline, "DENY (400: bad request)");
            // Under STRICT a plaintext client never gets as far as sending the request.
            let strict = set(&[peer_auth(
                "prod",
                "strict",
                json!({"mtls": {"mode": "STRICT"}}),
            )]);
            let req = Request::http(None, 80, h);
            assert_eq!(
                strict.target("prod", &labels("api")).decide(&req),
                Outcome::Refused
            );
        }
    }

    #[test]
    fn near_misses_rank_and_name_the_first_failing_field() {
        let s = set(&[
            ap("prod", "deny-all", json!({})),
            ap(
                "prod",
                "frontend-to-backend",
                json!({"rules": [{
                "from": [{"source": {"principals": [WEB]}}],
                "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/api/*", "/health"]}}],
                "when": [{"key": "request.headers[x-api-version]", "values": ["v1", "v2"]}]}]}),
            ),
            ap(
                "prod",
                "admin",
                json!({"rules": [{
                "from": [{"source": {"principals": ["cluster.local/ns/prod/sa/admin"]}}],
                "to": [{"operation": {"methods": ["DELETE"], "paths": ["/admin/"]}}]}]}),
            ),
            ap(
                "prod",
                "typo",
                json!({"rules": [{"when": [{"key": "request.header[x]", "values": ["1"]}]}]}),
            ),
        ]);
        let t = s.target("prod", &labels("api"));
        let ex = t.explain(&Request::http(id("prod", "web"), 80, get("/api/data")));
        assert_eq!(ex.outcome, Outcome::DefaultDeny);
        let lines: Vec<String> = ex.near_misses.iter().map(NearMiss::line).collect();
        assert_eq!(
            lines[0],
            "prod/frontend-to-backend rules[0]: when request.headers[x-api-version] is absent, want one of [v1 v2]"
        );
        assert_eq!(
            ex.near_misses[0].field.as_deref(),
            Some("spec.rules[0].when[0]")
        );
        assert!(lines[1].starts_with("prod/admin rules[0]: from[0] source.principal is cluster.local/ns/prod/sa/web, want one of [cluster.local/ns/prod/sa/admin] (and 2 more)"), "{lines:?}");
        assert!(
            lines[2].contains("Istio skips this rule")
                && lines[2].contains("unknown attribute request.header[x]"),
            "{lines:?}"
        );
        use crate::authz::explain::NearMiss;
    }
}
