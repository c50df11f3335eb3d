//! What the destination ztunnel applies to one captured workload, and its decision with
//! reasons: the AuthorizationPolicies istiod converts for it ([`super::ztunnel`]), selected by
//! scope, plus the PeerAuthentication-derived DENY policies. The order is ztunnel's own
//! (istio/ztunnel `src/state.rs` `assert_rbac`): the PeerAuthentication DENY, any DENY match,
//! no ALLOW policy allows, an ALLOW match allows, else deny.

use super::decision::{Outcome, PolicySet, RuleRef, Verdict};
use super::explain::{Applied, Explanation, MtlsDecider, MtlsStep, NearMiss, RuleHit, NEAR_MISSES};
use super::request::Request;
use super::ztunnel::{fate_note, names, Conn, L4Action, L4Policy, PeerDerived, RuleFate};
use crate::model::MtlsMode;
use crate::mtls::Composed;
use std::collections::BTreeMap;

impl PolicySet {
    /// What the destination ztunnel applies to a captured workload in `namespace` whose pods
    /// carry `labels` ([`super::ztunnel`]): the selector, namespace-wide and root policies istiod
    /// converts for it, and the PeerAuthentication-derived DENY policies.
    pub(crate) fn ztunnel_target(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> ZtunnelTarget<'_> {
        let mut t = ZtunnelTarget {
            set: self,
            deny: Vec::new(),
            allow: Vec::new(),
            not_sent: Vec::new(),
            peer: self.peer_derived(namespace, labels),
            mtls: self.mtls.compose(namespace, labels),
            selector_jwt: Vec::new(),
        };
        for ns in self.scope_namespaces(namespace) {
            for &i in self.by_namespace.get(ns).into_iter().flatten() {
                let p = &self.policies()[i];
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
}

/// What the destination ztunnel applies to one workload.
#[derive(Clone, Debug)]
pub struct ZtunnelTarget<'s> {
    pub(crate) set: &'s PolicySet,
    pub(crate) deny: Vec<usize>,
    pub(crate) allow: Vec<usize>,
    /// Policies in scope that istiod does not send to ztunnel, with why.
    pub(crate) not_sent: Vec<usize>,
    pub(crate) peer: PeerDerived,
    /// The sidecar-style composition, for naming the PeerAuthentication that decided.
    pub(crate) mtls: Composed,
    /// RequestAuthentications that select this workload (not by targetRefs): nothing enforces
    /// them in ambient mode.
    pub(crate) selector_jwt: Vec<String>,
}

impl<'s> ZtunnelTarget<'s> {
    /// The policy set this target was selected from.
    pub fn set(&self) -> &'s PolicySet {
        self.set
    }

    /// The ALLOW policies that apply (indexes into [`PolicySet::policies`]).
    pub(crate) fn allow_policies(&self) -> &[usize] {
        &self.allow
    }

    /// The DENY policies that apply.
    pub fn deny_policies(&self) -> &[usize] {
        &self.deny
    }

    /// The PeerAuthentication-derived policies.
    pub fn peer(&self) -> &PeerDerived {
        &self.peer
    }

    /// The sidecar-style composition of the PeerAuthentications (which policy decided a port).
    pub fn mtls(&self) -> &Composed {
        &self.mtls
    }

    /// The decision for one connection (the request's HTTP part is not seen by ztunnel).
    pub fn decide(&self, req: &Request) -> Outcome {
        let c = Conn::of(req);
        if self.peer.denies(&c).is_some() {
            return Outcome::Refused;
        }
        for &i in &self.deny {
            if let Some(rule) = self.l4(i).and_then(|p| p.first_match(&c)) {
                return Outcome::Denied(RuleRef { policy: i, rule });
            }
        }
        if self.allow.is_empty() {
            return Outcome::NoAllowPolicy;
        }
        for &i in &self.allow {
            if let Some(rule) = self.l4(i).and_then(|p| p.first_match(&c)) {
                return Outcome::Allowed(RuleRef { policy: i, rule });
            }
        }
        Outcome::DefaultDeny
    }

    fn l4(&self, i: usize) -> Option<&'s L4Policy> {
        self.set.ztunnel_policy(i).ok()
    }

    /// The mode plaintext meets on a port: STRICT when ztunnel refuses it, else PERMISSIVE.
    pub(crate) fn mode_on(&self, port: u16) -> MtlsMode {
        if self.peer.strict_on(port) {
            MtlsMode::Strict
        } else {
            MtlsMode::Permissive
        }
    }

    fn hit(&self, r: RuleRef) -> RuleHit {
        let p = &self.set.policies()[r.policy];
        RuleHit {
            policy: p.id(),
            action: p.action_str.clone(),
            rule: Some(r.rule),
            provider: None,
        }
    }

    /// The decision with its reasons, in the shape of a sidecar's explanation.
    pub fn explain(&self, req: &Request) -> Explanation {
        let c = Conn::of(req);
        let outcome = self.decide(req);
        let mode = self.mode_on(req.port());
        let decider = self
            .mtls
            .at(Some(u32::from(req.port())))
            .decided_by
            .as_ref()
            .map(|d| MtlsDecider {
                policy: format!("{}/{}", d.namespace, d.name),
                level: d.level.as_str().to_owned(),
            });
        let sidecar_mode = self.mtls.at(Some(u32::from(req.port()))).mode;
        let mtls = MtlsStep {
            mode: mode.to_string(),
            decided_by: decider,
        };
        let ids = |list: &[usize]| -> Vec<String> {
            list.iter()
                .map(|&i| {
                    let p = &self.set.policies()[i];
                    match self.l4(i) {
                        Some(l) if l.groups.is_empty() => {
                            format!("{} (no rules at ztunnel: allows nothing)", p.id())
                        }
                        _ => p.id(),
                    }
                })
                .collect()
        };
        let mut ex = Explanation {
            verdict: outcome.verdict(),
            headline: String::new(),
            decided_by: None,
            mtls,
            reason: String::new(),
            near_misses: Vec::new(),
            peer: c.identity.map(|i| i.principal().to_owned()),
            request_principal: None,
            custom: Vec::new(),
            audit: Vec::new(),
            shadow: None,
            policies: self.applied(),
            not_applied: self
                .not_sent
                .iter()
                .map(|&i| {
                    let p = &self.set.policies()[i];
                    let why = match self.set.ztunnel_policy(i) {
                        Err(n) => n.describe(),
                        Ok(_) => String::new(),
                    };
                    format!("{} ({}): {why}", p.id(), p.action_str)
                })
                .collect(),
            notes: Vec::new(),
            hops: Vec::new(),
            outcome,
        };
        ex.headline = match (outcome, ex.verdict) {
            (Outcome::Refused, _) => {
                "DENY (connection refused at ztunnel: STRICT mTLS, plaintext client)".to_owned()
            }
            (_, Verdict::Allow) => "ALLOW".to_owned(),
            (_, Verdict::Deny) => "DENY".to_owned(),
        };
        match outcome {
            Outcome::Refused => {
                let by = self.peer.denies(&c).unwrap_or_default();
                ex.reason = format!(
                    "ztunnel applies {by} (the PeerAuthentication mode STRICT compiled to a DENY on connections without a peer identity) and the client sends plaintext: the connection is refused before any AuthorizationPolicy"
                );
            }
            Outcome::Denied(r) => {
                let hit = self.hit(r);
                ex.reason = format!("{} matches the connection at ztunnel", hit.label());
                ex.decided_by = Some(hit);
            }
            Outcome::Allowed(r) => {
                let hit = self.hit(r);
                ex.reason = format!("{} matches the connection at ztunnel", hit.label());
                ex.decided_by = Some(hit);
            }
            Outcome::NoAllowPolicy => {
                ex.reason = if self.deny.is_empty() {
                    "no AuthorizationPolicy that ztunnel enforces applies to this workload: with no ALLOW policy, every connection is allowed".to_owned()
                } else {
                    "no DENY rule matches at ztunnel and no ALLOW policy applies, so the connection is allowed".to_owned()
                };
            }
            Outcome::DefaultDeny => {
                ex.reason = format!(
                    "no ALLOW rule matches at ztunnel; ALLOW policies apply to this workload ({}), so a connection must match one of their rules as converted for ztunnel (rules with HTTP attributes are dropped)",
                    ids(&self.allow).join(", ")
                );
                ex.near_misses = self.near_misses(&c);
            }
            _ => {}
        }
        if c.identity.is_none() {
            ex.notes.push(format!(
                "plaintext client accepted by ztunnel (mode {mode} on port {}): the connection carries no peer identity, so principals, namespaces and service accounts cannot match and notPrincipals/notNamespaces do",
                req.port()
            ));
        }
        if sidecar_mode == MtlsMode::Disable {
            ex.notes.push(
                "the PeerAuthentication mode DISABLE behaves like PERMISSIVE at ztunnel: mesh clients still connect over HBONE (mTLS, with their identity), and plaintext clients get in without one".to_owned(),
            );
        } else if (sidecar_mode == MtlsMode::Strict) != (mode == MtlsMode::Strict) {
            ex.notes.push(format!(
                "as istiod compiles the PeerAuthentications for ztunnel, port {} is {mode}, not {sidecar_mode} as a sidecar would apply it",
                req.port()
            ));
        }
        if req.is_http() {
            ex.notes.push(
                "ztunnel sees connections, not HTTP requests: the method, path, headers and token play no part here".to_owned(),
            );
        }
        if !self.selector_jwt.is_empty() {
            ex.notes.push(format!(
                "RequestAuthentication {} selects this workload, but ztunnel has no JWT support and waypoints read only targetRefs: no token is validated or rejected",
                self.selector_jwt.join(", ")
            ));
        }
        for &i in self.deny.iter().chain(&self.allow) {
            let p = &self.set.policies()[i];
            if let Some(l) = self.l4(i) {
                for (rule, fate) in &l.fates {
                    if let Some(n) = fate_note(*rule, fate) {
                        ex.notes.push(format!("{}: {n}", p.id()));
                    }
                }
            }
        }
        ex
    }

    fn applied(&self) -> Vec<Applied> {
        let mut ids: Vec<usize> = self.deny.iter().chain(&self.allow).copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|i| {
                let p = &self.set.policies()[i];
                Applied {
                    policy: p.id(),
                    action: p.action_str.clone(),
                    dry_run: false,
                    rules: self.l4(i).map_or(0, |l| l.groups.len()),
                }
            })
            .collect()
    }

    /// The converted ALLOW rules closest to matching, then the rules conversion dropped.
    fn near_misses(&self, c: &Conn<'_>) -> Vec<NearMiss> {
        let mut scored: Vec<((usize, usize), NearMiss)> = Vec::new();
        for &i in &self.allow {
            let p = &self.set.policies()[i];
            let Some(l) = self.l4(i) else { continue };
            for g in &l.groups {
                // The first failing clause's best match.
                let mut first: Option<(String, String, usize)> = None;
                let mut failing_clauses = 0;
                for clause in &g.clauses {
                    if clause.is_empty() || clause.iter().any(|m| !m.is_empty() && m.matches(c)) {
                        continue;
                    }
                    failing_clauses += 1;
                    if first.is_none() {
                        let best = clause
                            .iter()
                            .filter(|m| !m.is_empty())
                            .map(|m| (m, m.failing(c)))
                            .min_by_key(|(_, f)| f.len());
                        first = Some(match best {
                            Some((m, f)) => (
                                m.path.clone(),
                                format!(
                                    "{}: {} does not match (want {}; {})",
                                    m.label,
                                    f.join(", "),
                                    m.describe(),
                                    actual(c)
                                ),
                                f.len(),
                            ),
                            None => (
                                String::new(),
                                format!(
                                    "{} is empty at ztunnel, so the rule never matches",
                                    clause
                                        .iter()
                                        .map(|m| m.label.clone())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                                usize::MAX,
                            ),
                        });
                    }
                }
                if let Some((path, reason, _)) = first {
                    scored.push((
                        (0, failing_clauses),
                        NearMiss {
                            policy: p.id(),
                            rule: g.rule,
                            field: (!path.is_empty()).then_some(path),
                            reason,
                            mismatches: failing_clauses,
                            matched: g.clauses.len() - failing_clauses,
                        },
                    ));
                }
            }
            for (rule, fate) in &l.fates {
                if let RuleFate::Dropped(f) = fate {
                    scored.push((
                        (1, 0),
                        NearMiss {
                            policy: p.id(),
                            rule: *rule,
                            field: f.first().map(|x| x.path.clone()),
                            reason: format!(
                                "dropped at ztunnel: an ALLOW rule with HTTP attributes ({}) is left out of what ztunnel enforces",
                                names(f)
                            ),
                            mismatches: 0,
                            matched: 0,
                        },
                    ));
                }
            }
        }
        scored.sort_by_key(|s| s.0);
        scored
            .into_iter()
            .take(NEAR_MISSES)
            .map(|(_, m)| m)
            .collect()
    }
}

fn actual(c: &Conn<'_>) -> String {
    match c.identity {
        Some(i) => format!("the peer is {}, port {}", i.principal(), c.port),
        None => format!("no peer identity (plaintext), port {}", c.port),
    }
}
