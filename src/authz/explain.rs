//! The decision explained: verdict, deciding policy and rule, the mTLS and JWT steps, CUSTOM
//! and AUDIT rules that matched, the shadow (dry-run) decision, and for a default deny the
//! ALLOW rules that came closest.
//!
//! **Closest rules.** For a default deny every enforced ALLOW rule of the workload is scored
//! by how many of its constraints the request fails: for `from` and `to` the best entry counts
//! (a rule needs only one of each), plus every failing `when` condition. A field counts as one
//! constraint however many values it lists. Rules sort by fewest failing constraints (the
//! fewest changes that would make the request match), then by most constraints met (the more
//! specific rule first), then in policy order. Rules that can never match this request come
//! last: those Istio drops on a TCP request (HTTP-only fields), then those it skips entirely
//! (an unknown `when` key, a value it cannot translate). Each is reported with the first
//! failing constraint in evaluation order (`from`, then `to`, then `when`).

use super::decision::{At, Outcome, RuleRef, Target, TokenStep, Verdict};
use super::field::{Attr, Ctx, Field};
use super::policy::{Clause, Rule};
use super::request::Request;
use crate::model::authorization_policy::AuthzAction;
use serde::Serialize;
use std::fmt::Write;

/// How many closest rules an explanation lists.
pub(crate) const NEAR_MISSES: usize = 3;

/// A rule that decided (or matched).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleHit {
    /// `namespace/name`.
    pub policy: String,
    pub action: String,
    /// Index in `spec.rules` (`None` for a policy-level decision).
    pub rule: Option<usize>,
    /// The CUSTOM provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

impl RuleHit {
    /// `production/x rules[0] (DENY)`.
    pub fn label(&self) -> String {
        match self.rule {
            Some(r) => format!("{} rules[{r}] ({})", self.policy, self.action),
            None => format!("{} ({})", self.policy, self.action),
        }
    }
}

/// The mTLS step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MtlsStep {
    pub mode: String,
    /// The PeerAuthentication that set the mode; `None`: Istio's default (PERMISSIVE).
    pub decided_by: Option<MtlsDecider>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MtlsDecider {
    pub policy: String,
    /// `mesh`, `namespace`, `workload` or `port`.
    pub level: String,
}

/// An ALLOW rule that almost matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NearMiss {
    pub policy: String,
    pub rule: usize,
    /// Field path of the first failing constraint (`spec.rules[0].when[0]`).
    pub field: Option<String>,
    /// What failed: `when request.headers[x] is absent, want one of [v1 v2]`.
    pub reason: String,
    /// Constraints the request fails / meets (for a rule that can never match, 0 / 0).
    pub mismatches: usize,
    pub matched: usize,
}

impl NearMiss {
    /// `production/x rules[0]: <reason>`.
    pub fn line(&self) -> String {
        let more = if self.mismatches > 1 {
            format!(" (and {} more)", self.mismatches - 1)
        } else {
            String::new()
        };
        format!(
            "{} rules[{}]: {}{more}",
            self.policy, self.rule, self.reason
        )
    }
}

/// The decision if the dry-run policies were enforced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Shadow {
    pub(crate) verdict: Verdict,
    pub(crate) decided_by: Option<RuleHit>,
    pub(crate) reason: String,
    /// Dry-run rules the request matches.
    pub(crate) matched: Vec<RuleHit>,
}

/// A policy that applies to the workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub policy: String,
    pub action: String,
    pub dry_run: bool,
    pub rules: usize,
}

/// The whole explanation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub verdict: Verdict,
    /// `ALLOW`, `DENY`, `DENY (connection refused: STRICT mTLS, plaintext client)`,
    /// `DENY (401: token issuer not accepted)`, ...
    pub headline: String,
    pub decided_by: Option<RuleHit>,
    pub mtls: MtlsStep,
    pub reason: String,
    pub(crate) near_misses: Vec<NearMiss>,
    /// The peer identity the sidecar sees (none for plaintext or without mTLS).
    pub peer: Option<String>,
    /// `iss/sub` of an accepted token.
    pub(crate) request_principal: Option<String>,
    /// CUSTOM rules that sent the request to an external authorizer.
    pub custom: Vec<RuleHit>,
    /// AUDIT rules that matched (they never decide).
    pub audit: Vec<RuleHit>,
    pub(crate) shadow: Option<Shadow>,
    pub policies: Vec<Applied>,
    /// Policies in scope that use targetRef(s): they attach to gateways and waypoints, not to
    /// the workload's sidecar.
    pub(crate) not_applied: Vec<String>,
    pub notes: Vec<String>,
    /// The request's path, hop by hop (caller's proxy, waypoint, destination); one hop for a
    /// sidecar destination reached directly.
    pub hops: Vec<Hop>,
    #[serde(skip)]
    pub outcome: Outcome,
}

/// One enforcement point a request passes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    /// `sidecar`, `waypoint`, `ztunnel` or `none` (nothing enforces).
    pub enforcer: &'static str,
    /// What it is: `waypoint shop/waypoint`, `ztunnel of deployment shop/reviews`.
    pub at: String,
    /// The identity it sees (`None`: plaintext, no peer identity).
    pub peer: Option<String>,
    /// The port it sees (a waypoint sees the Service port, the destination the pod's).
    pub port: u16,
    /// `None`: not reached (an earlier hop denied).
    pub verdict: Option<Verdict>,
    pub headline: String,
    pub reason: String,
    pub decided_by: Option<RuleHit>,
}

impl Hop {
    /// `waypoint shop/waypoint sees cluster.local/ns/shop/sa/web on port 80: DENY (reason)`.
    pub fn line(&self) -> String {
        let peer = self
            .peer
            .as_deref()
            .unwrap_or("no peer identity (plaintext)");
        match self.verdict {
            None => format!("{}: not reached", self.at),
            Some(_) => {
                let by = self
                    .decided_by
                    .as_ref()
                    .map(|d| format!(" by {}", d.label()))
                    .unwrap_or_default();
                format!(
                    "{} sees {peer} on port {}: {}{by}",
                    self.at, self.port, self.headline
                )
            }
        }
    }
}

fn action_str(a: Option<AuthzAction>, raw: &str) -> String {
    a.map_or_else(|| raw.to_owned(), |a| a.as_str().to_owned())
}

impl Target<'_> {
    fn hit(&self, r: RuleRef) -> RuleHit {
        let p = self.set.policy(r);
        RuleHit {
            policy: p.id(),
            action: action_str(p.action, &p.action_str),
            rule: Some(r.rule),
            provider: p.provider.clone(),
        }
    }

    /// The decision with everything that explains it.
    pub fn explain(&self, req: &Request) -> Explanation {
        let eff = self.mtls.at(Some(u32::from(req.port)));
        let mtls = MtlsStep {
            mode: eff.mode.to_string(),
            decided_by: eff.decided_by.as_ref().map(|d| MtlsDecider {
                policy: format!("{}/{}", d.namespace, d.name),
                level: d.level.as_str().to_owned(),
            }),
        };
        let mtls_label = match (&self.at, &mtls.decided_by) {
            (At::Waypoint(_), _) => "HBONE (the waypoint accepts only mesh clients)".to_owned(),
            (_, Some(d)) => format!("{} ({}, {})", mtls.mode, d.policy, d.level),
            (_, None) => format!("{} (no PeerAuthentication: Istio's default)", mtls.mode),
        };
        let mtls = match &self.at {
            At::Waypoint(_) => MtlsStep {
                mode: "HBONE".to_owned(),
                decided_by: None,
            },
            At::Sidecar => mtls,
        };
        let mut ex = Explanation {
            verdict: Verdict::Deny,
            headline: String::new(),
            decided_by: None,
            mtls,
            reason: String::new(),
            near_misses: Vec::new(),
            peer: None,
            request_principal: None,
            custom: Vec::new(),
            audit: Vec::new(),
            shadow: None,
            policies: self.applied(),
            not_applied: self
                .not_applied
                .iter()
                .map(|&i| {
                    let p = &self.set.policies()[i];
                    let why = match &self.at {
                        At::Sidecar => "uses targetRef(s), so it attaches to gateways or waypoints, not to sidecars",
                        At::Waypoint(_) => "has no targetRefs: waypoints never use selector or namespace-wide policies (the destination's ztunnel enforces it, as L4)",
                    };
                    format!("{} ({}): {why}", p.id(), action_str(p.action, &p.action_str))
                })
                .collect(),
            notes: Vec::new(),
            hops: Vec::new(),
            outcome: Outcome::DefaultDeny,
        };
        for &i in &self.ignored {
            let p = &self.set.policies()[i];
            ex.notes.push(format!(
                "{}: action {} is not one Istio knows; Istio ignores the policy",
                p.id(),
                p.action_str
            ));
        }
        let ctx = match self.prepare(req) {
            Ok(ctx) => ctx,
            Err(outcome) => {
                ex.outcome = outcome;
                let (headline, reason) = match outcome {
                    Outcome::BadRequest => (
                        "DENY (400: bad request)".to_owned(),
                        format!(
                            "400 before authorization: {}",
                            req.http
                                .as_ref()
                                .and_then(|h| h.rejection())
                                .unwrap_or_default()
                        ),
                    ),
                    Outcome::Refused => (
                        "DENY (connection refused: STRICT mTLS, plaintext client)".to_owned(),
                        format!(
                            "port {} accepts only mTLS (mode {mtls_label}) and the client sends plaintext: the connection is refused before any policy runs",
                            req.port
                        ),
                    ),
                    _ => self.token_rejection(req),
                };
                ex.headline = headline;
                ex.reason = reason;
                return ex;
            }
        };
        ex.peer = ctx.peer.map(|p| p.principal().to_owned());
        if req.peer.is_some() && ctx.peer.is_none() {
            ex.notes.push(format!(
                "mTLS mode {mtls_label} on port {}: the sidecar terminates no mTLS, so the request carries no peer identity (principals, namespaces and service accounts cannot match)",
                req.port
            ));
        } else if req.peer.is_none() {
            ex.notes.push(format!(
                "plaintext client accepted by mTLS mode {mtls_label}: the request carries no peer identity, so principals, namespaces and service accounts cannot match and notPrincipals/notNamespaces do"
            ));
        }
        match self.token(req) {
            TokenStep::Ignored => ex.notes.push(
                "the JWT is not validated: no RequestAuthentication applies to this workload, so it gives no request principal or claims".to_owned(),
            ),
            TokenStep::Accepted(i) => {
                ex.request_principal = ctx.jwt.map(|j| j.principal());
                ex.notes.push(format!(
                    "the JWT is accepted by {} (issuer {})",
                    i.policy, i.issuer
                ));
            }
            _ => {}
        }
        if req.http.is_none() && req.jwt.is_some() {
            ex.notes
                .push("a TCP request carries no JWT: the token is not used".to_owned());
        }
        let tcp = req.http.is_none();
        for &i in &self.custom {
            if let Some(r) = self.first_match(i, &ctx, tcp) {
                ex.custom.push(self.hit(r));
            }
        }
        for &i in &self.audit {
            if let Some(r) = self.first_match(i, &ctx, tcp) {
                ex.audit.push(self.hit(r));
            }
        }
        let outcome = self.authorize(&ctx, false);
        ex.outcome = outcome;
        let (decided_by, reason) = self.describe(outcome, &ctx);
        ex.verdict = outcome.verdict();
        ex.headline = match ex.verdict {
            Verdict::Allow => "ALLOW".to_owned(),
            Verdict::Deny => "DENY".to_owned(),
        };
        ex.decided_by = decided_by;
        ex.reason = reason;
        if !ex.custom.is_empty() && !matches!(outcome, Outcome::CustomDenied(_)) {
            let names: Vec<String> = ex.custom.iter().map(custom_label).collect();
            ex.notes.push(format!(
                "CUSTOM: {} sends the request to its external authorizer, assumed to allow (--custom-deny assumes a denial)",
                names.join(", ")
            ));
        }
        if outcome == Outcome::DefaultDeny {
            ex.near_misses = self.near_misses(&ctx);
        }
        if !self.dry_run.is_empty() {
            let shadow = self.authorize(&ctx, true);
            let (decided_by, reason) = self.describe(shadow, &ctx);
            ex.shadow = Some(Shadow {
                verdict: shadow.verdict(),
                decided_by,
                reason,
                matched: self
                    .dry_run
                    .iter()
                    .filter_map(|&i| self.first_match(i, &ctx, tcp))
                    .map(|r| self.hit(r))
                    .collect(),
            });
        }
        self.notes_for(req, &mut ex.notes);
        ex
    }

    fn applied(&self) -> Vec<Applied> {
        let mut ids: Vec<usize> = self
            .custom
            .iter()
            .chain(&self.deny)
            .chain(&self.allow)
            .chain(&self.audit)
            .chain(&self.dry_run)
            .copied()
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|i| {
                let p = &self.set.policies()[i];
                Applied {
                    policy: p.id(),
                    action: action_str(p.action, &p.action_str),
                    dry_run: p.dry_run,
                    rules: p.rules.len(),
                }
            })
            .collect()
    }

    fn token_rejection(&self, req: &Request) -> (String, String) {
        let Some(jwt) = &req.jwt else {
            return ("DENY".to_owned(), String::new());
        };
        let accepted: Vec<String> = self
            .issuers
            .iter()
            .map(|i| format!("{} ({})", i.issuer, i.policy))
            .collect();
        match self.token(req) {
            TokenStep::Rejected { issuer_known: true } => {
                let wanted: Vec<String> = self
                    .issuers
                    .iter()
                    .filter(|i| i.issuer == jwt.issuer())
                    .flat_map(|i| i.audiences.iter().cloned())
                    .collect();
                (
                    "DENY (401: token audience not accepted)".to_owned(),
                    format!(
                        "401 before authorization: the token's audiences [{}] include none of [{}] that the RequestAuthentication for issuer {} requires",
                        jwt.audiences().join(" "),
                        wanted.join(" "),
                        jwt.issuer()
                    ),
                )
            }
            _ => (
                "DENY (401: token issuer not accepted)".to_owned(),
                format!(
                    "401 before authorization: the token's issuer {} is not one the RequestAuthentications of this workload accept: {}",
                    jwt.issuer(),
                    accepted.join(", ")
                ),
            ),
        }
    }

    fn describe(&self, outcome: Outcome, ctx: &Ctx<'_>) -> (Option<RuleHit>, String) {
        let policies = |list: &[usize]| {
            list.iter()
                .map(|&i| {
                    let p = &self.set.policies()[i];
                    if p.has_rules() {
                        p.id()
                    } else {
                        format!("{} (no rules: allows nothing)", p.id())
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match outcome {
            Outcome::CustomDenied(r) => {
                let hit = self.hit(r);
                let reason = format!(
                    "{} sends the request to its external authorizer{}, assumed to deny (--custom-deny)",
                    hit.label(),
                    hit.provider
                        .as_ref()
                        .map(|p| format!(" {p}"))
                        .unwrap_or_default()
                );
                (Some(hit), reason)
            }
            Outcome::Denied(r) => {
                let hit = self.hit(r);
                let reason = format!("{} matches the request", hit.label());
                (Some(hit), reason)
            }
            Outcome::Allowed(r) => {
                let hit = self.hit(r);
                let reason = format!("{} matches the request", hit.label());
                (Some(hit), reason)
            }
            Outcome::NoAllowPolicy => (
                None,
                match (&self.at, self.deny.is_empty() && self.custom.is_empty()) {
                    (At::Waypoint(w), true) => format!("no AuthorizationPolicy attaches to waypoint {w} for this traffic (targetRefs to the Gateway, the Service or the istio-waypoint GatewayClass): with no ALLOW policy, every request passes it"),
                    (At::Waypoint(w), false) => format!("no DENY rule attached to waypoint {w} matches and no ALLOW policy attaches, so the request passes it"),
                    (At::Sidecar, true) => "no AuthorizationPolicy decides for this workload: with no ALLOW policy, every request is allowed".to_owned(),
                    (At::Sidecar, false) => "no DENY rule matches and no ALLOW policy applies to this workload, so the request is allowed".to_owned(),
                },
            ),
            Outcome::DefaultDeny => {
                let tcp = ctx.req.http.is_none();
                let applied = match &self.at {
                    At::Sidecar => "apply to this workload".to_owned(),
                    At::Waypoint(w) => format!("attach to waypoint {w} for this traffic"),
                };
                let mut reason = format!(
                    "no ALLOW rule matches; ALLOW policies {applied} ({}), so a request must match one of their rules",
                    policies(&self.allow)
                );
                if tcp {
                    reason.push_str(
                        "; on a TCP request, ALLOW rules with HTTP-only fields (methods, paths, hosts, headers, JWT) never match",
                    );
                }
                (None, reason)
            }
            _ => (None, String::new()),
        }
    }

    /// The enforced ALLOW rules closest to matching (see the module docs).
    pub(crate) fn near_misses(&self, ctx: &Ctx<'_>) -> Vec<NearMiss> {
        let tcp = ctx.req.http.is_none();
        let mut scored: Vec<(RankKey, NearMiss)> = Vec::new();
        for (order, &i) in self.allow.iter().enumerate() {
            let p = &self.set.policies()[i];
            for r in &p.rules {
                let base = NearMiss {
                    policy: p.id(),
                    rule: r.index,
                    field: None,
                    reason: String::new(),
                    mismatches: 0,
                    matched: 0,
                };
                let (key, miss) = if let Some(why) = &r.skipped {
                    (
                        (2, 0, std::cmp::Reverse(0), order),
                        NearMiss {
                            reason: format!("Istio skips this rule ({why}), so it never matches"),
                            ..base
                        },
                    )
                } else if let (true, Some(path)) = (tcp, &r.http_only) {
                    (
                        (1, 0, std::cmp::Reverse(0), order),
                        NearMiss {
                            field: Some(path.clone()),
                            reason: format!(
                                "never matches a TCP request: {path} is HTTP-only, and Istio drops ALLOW rules with HTTP-only fields from TCP traffic"
                            ),
                            ..base
                        },
                    )
                } else {
                    let Some(m) = score(r, ctx) else {
                        continue;
                    };
                    (
                        (0, m.mismatches, std::cmp::Reverse(m.matched), order),
                        NearMiss {
                            field: Some(m.first.path.clone()),
                            reason: m.first.mismatch(ctx),
                            mismatches: m.mismatches,
                            matched: m.matched,
                            ..base
                        },
                    )
                };
                scored.push((key, miss));
            }
        }
        scored.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.rule.cmp(&b.1.rule)));
        scored
            .into_iter()
            .take(NEAR_MISSES)
            .map(|(_, m)| m)
            .collect()
    }

    /// Notes about what the request leaves unknown, and values Istio drops.
    fn notes_for(&self, req: &Request, notes: &mut Vec<String>) {
        let rules = self
            .custom
            .iter()
            .chain(&self.deny)
            .chain(&self.allow)
            .chain(&self.dry_run)
            .map(|&i| &self.set.policies()[i]);
        let mut seen_ip = false;
        let mut seen_dest = false;
        let mut seen_sni = false;
        for p in rules {
            for n in &p.notes {
                notes.push(format!("{}: {n}", p.id()));
            }
            for f in p.rules.iter().flat_map(Rule::fields) {
                match f.attr {
                    Attr::SourceIp | Attr::RemoteIp => seen_ip = true,
                    Attr::DestinationIp => seen_dest = true,
                    Attr::Sni => seen_sni = true,
                    _ => {}
                }
            }
        }
        if seen_ip && req.source_ip.is_none() {
            notes.push(
                "policies here test the source IP (ipBlocks, source.ip, remote.ip) and the request gives none (--source-ip): those conditions are taken as not matching".to_owned(),
            );
        }
        if seen_dest && req.destination_ip.is_none() {
            notes.push(
                "policies here test destination.ip and the request gives no destination IP: those conditions are taken as not matching".to_owned(),
            );
        }
        if seen_sni && req.sni.is_none() {
            notes.push(
                "policies here test connection.sni and the request gives no SNI: those conditions are taken as not matching".to_owned(),
            );
        }
    }
}

fn custom_label(h: &RuleHit) -> String {
    match &h.provider {
        Some(p) => format!("{} (provider {p})", h.label()),
        None => h.label(),
    }
}

/// Sort key of a near miss: (can never match: 0 no, 1 TCP-dropped, 2 skipped; failing
/// constraints; constraints met, more first; policy order).
type RankKey = (u8, usize, std::cmp::Reverse<usize>, usize);

/// The score of one rule against a request.
struct Score<'f> {
    mismatches: usize,
    matched: usize,
    first: &'f Field,
}

/// Score a rule; `None` when it matches (no failing constraint).
fn score<'r>(rule: &'r Rule, ctx: &Ctx<'_>) -> Option<Score<'r>> {
    // (mismatches, matched, first failing field) of the best entry of a list.
    let best = |clauses: &'r [Clause]| -> (usize, usize, Option<&'r Field>) {
        clauses
            .iter()
            .map(|c| {
                let failing: Vec<&Field> = c.fields.iter().filter(|f| !f.matches(ctx)).collect();
                (
                    failing.len(),
                    c.fields.len() - failing.len(),
                    failing.first().copied(),
                )
            })
            .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .unwrap_or((0, 0, None))
    };
    let (fm, fo, ff) = best(&rule.from);
    let (tm, to, tf) = best(&rule.to);
    let when_failing: Vec<&Field> = rule.when.iter().filter(|f| !f.matches(ctx)).collect();
    let mismatches = fm + tm + when_failing.len();
    let first = ff.or(tf).or(when_failing.first().copied())?;
    Some(Score {
        mismatches,
        matched: fo + to + rule.when.len() - when_failing.len(),
        first,
    })
}

impl Explanation {
    /// The verdict for people: headline, reason, deciding rule, mTLS, then what else matters.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.headline);
        let _ = writeln!(s, "  reason:      {}", self.reason);
        if let Some(d) = &self.decided_by {
            let _ = writeln!(s, "  decided by:  {}", d.label());
        }
        let mtls = match &self.mtls.decided_by {
            Some(d) => format!("{} ({}, {})", self.mtls.mode, d.policy, d.level),
            None => format!(
                "{} (no PeerAuthentication: Istio's default)",
                self.mtls.mode
            ),
        };
        let _ = writeln!(s, "  mTLS:        {mtls}");
        if let Some(p) = &self.peer {
            let _ = writeln!(s, "  peer:        {p}");
        }
        if let Some(p) = &self.request_principal {
            let _ = writeln!(s, "  token:       {p}");
        }
        if !self.near_misses.is_empty() {
            let _ = writeln!(s, "  closest ALLOW rules:");
            for m in &self.near_misses {
                let _ = writeln!(s, "    {}", m.line());
            }
        }
        if !self.custom.is_empty() {
            let _ = writeln!(
                s,
                "  CUSTOM:      {}",
                self.custom
                    .iter()
                    .map(custom_label)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !self.audit.is_empty() {
            let _ = writeln!(
                s,
                "  audited by:  {}",
                self.audit
                    .iter()
                    .map(RuleHit::label)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(sh) = &self.shadow {
            let v = match sh.verdict {
                Verdict::Allow => "ALLOW",
                Verdict::Deny => "DENY",
            };
            let _ = writeln!(
                s,
                "  dry-run:     with the dry-run policies enforced: {v}: {}",
                sh.reason
            );
        }
        if !self.policies.is_empty() {
            let list: Vec<String> = self
                .policies
                .iter()
                .map(|p| {
                    let dry = if p.dry_run { ", dry-run" } else { "" };
                    format!("{} ({}{dry})", p.policy, p.action)
                })
                .collect();
            let _ = writeln!(s, "  policies:    {}", list.join(", "));
        }
        for n in &self.not_applied {
            let _ = writeln!(s, "  not applied: {n}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note:        {n}");
        }
        s
    }
}

/// `allow` / `deny`.
impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        })
    }
}
