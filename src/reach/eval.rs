//! The one place the reachability sets ask for a decision: "request R to workload W on port P,
//! from the caller the request carries: verdict and deciding policies". Everything else in
//! [`crate::reach`] builds requests and reads answers; the decision itself is always
//! [`crate::authz`]'s evaluator.
//!
//! An [`Enforcement`] is what decides requests to one workload: today the workload's sidecar
//! ([`Target`]) or nothing (a workload outside the mesh, a UDP port). Ambient paths (a waypoint
//! then ztunnel) become one more variant here: the set computation needs only [`decide`] and the
//! policy values it may compare ([`Enforcement::rules`]).
//!
//! [`decide`]: Enforcement::decide

use crate::authz::decision::RuleRef;
use crate::authz::field::{Attr, Ctx, Field};
use crate::authz::{Outcome, PolicySet, Request, Target, Verdict};
use crate::istio::MtlsMode;
use serde::Serialize;

/// What decides requests to one workload.
// One per workload port being computed, never stored in bulk: boxing the sidecar's target
// would cost an allocation per workload for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Enforcement<'s> {
    /// The workload's sidecar.
    Sidecar(Target<'s>),
    /// Nothing enforces mTLS or authorization (why, in words): every request passes.
    Unenforced(&'static str),
}

/// One decision, without allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The evaluator's outcome.
    Authz(Outcome),
    /// Nothing enforces.
    Unenforced,
}

impl Decision {
    pub fn verdict(self) -> Verdict {
        match self {
            Decision::Authz(o) => o.verdict(),
            Decision::Unenforced => Verdict::Allow,
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
}

impl Decider {
    /// `production/backend-rbac rules[0] (allow)`, `no ALLOW policy applies`.
    pub fn label(&self) -> String {
        match (self.policy.is_empty(), self.rule) {
            (true, _) => self.how_text().to_owned(),
            (false, Some(r)) => format!("{} rules[{r}] ({})", self.policy, self.how),
            (false, None) => format!("{} ({})", self.policy, self.how),
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
    pub fn policy_id(&self) -> Option<&str> {
        (!self.policy.is_empty()).then_some(self.policy.as_str())
    }
}

impl<'s> Enforcement<'s> {
    /// The decision for one request.
    pub fn decide(&self, req: &Request) -> Decision {
        match self {
            Enforcement::Sidecar(t) => Decision::Authz(t.decide(req)),
            Enforcement::Unenforced(_) => Decision::Unenforced,
        }
    }

    /// The policy set the decisions name policies of.
    pub fn set(&self) -> Option<&'s PolicySet> {
        match self {
            Enforcement::Sidecar(t) => Some(t.set()),
            Enforcement::Unenforced(_) => None,
        }
    }

    /// The enforced rules that can decide a request here (CUSTOM, DENY, ALLOW), for the policy
    /// values the set computation must tell apart.
    pub(crate) fn fields(&self, out: &mut Vec<&'s Field>) {
        let Enforcement::Sidecar(t) = self else {
            return;
        };
        let set = t.set();
        for &i in t.custom.iter().chain(&t.deny).chain(&t.allow) {
            for r in &set.policies()[i].rules {
                if r.skipped.is_none() {
                    out.extend(r.fields());
                }
            }
        }
    }

    /// The JWT issuers whose tokens are accepted here.
    pub(crate) fn issuers(&self) -> Vec<&'s crate::authz::policy::JwtIssuer> {
        match self {
            Enforcement::Sidecar(t) => t.issuers.clone(),
            Enforcement::Unenforced(_) => Vec::new(),
        }
    }

    /// The effective mTLS mode on a port (`None`: nothing enforces).
    pub fn mtls(&self, port: u16) -> Option<MtlsMode> {
        match self {
            Enforcement::Sidecar(t) => Some(t.mtls().at(Some(u32::from(port))).mode),
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
    pub fn decider(&self, d: Decision, port: u16) -> Decider {
        let set = self.set();
        let rule = |r: RuleRef, how: &'static str| Decider {
            kind: "AuthorizationPolicy",
            policy: set.map(|s| s.policy(r).id()).unwrap_or_default(),
            rule: Some(r.rule),
            how,
        };
        let step = |how: &'static str| Decider {
            kind: "",
            policy: String::new(),
            rule: None,
            how,
        };
        match (self, d) {
            (_, Decision::Unenforced) | (Enforcement::Unenforced(_), _) => step("unenforced"),
            (Enforcement::Sidecar(t), Decision::Authz(o)) => match o {
                Outcome::Allowed(r) => rule(r, "allow"),
                Outcome::Denied(r) => rule(r, "deny"),
                Outcome::CustomDenied(r) => rule(r, "custom"),
                Outcome::NoAllowPolicy => step("no-allow-policy"),
                Outcome::DefaultDeny => {
                    // The allow-nothing policy when one applies, else the first ALLOW policy.
                    let allow = t.allow_policies();
                    let first = allow
                        .iter()
                        .copied()
                        .find(|&i| !t.set().policies()[i].has_rules())
                        .or_else(|| allow.first().copied());
                    match first {
                        Some(i) => Decider {
                            kind: "AuthorizationPolicy",
                            policy: t.set().policies()[i].id(),
                            rule: None,
                            how: "default-deny",
                        },
                        None => step("default-deny"),
                    }
                }
                Outcome::Refused => match &t.mtls().at(Some(u32::from(port))).decided_by {
                    Some(d) => Decider {
                        kind: "PeerAuthentication",
                        policy: format!("{}/{}", d.namespace, d.name),
                        rule: None,
                        how: "refused",
                    },
                    None => step("refused"),
                },
                Outcome::Unauthenticated => step("401"),
                Outcome::BadRequest => step("400"),
            },
        }
    }

    /// The CUSTOM policy (index into the policy set) one of whose rules the request matches:
    /// its external authorizer decides as well.
    pub(crate) fn custom_match(&self, req: &Request) -> Option<u32> {
        let Enforcement::Sidecar(t) = self else {
            return None;
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
        let Enforcement::Sidecar(t) = self else {
            return Vec::new();
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
