//! The destination ztunnel's L4 authorization, as istiod compiles policies for it and ztunnel
//! evaluates them.
//!
//! **Conversion** (istio/istio `pilot/pkg/serviceregistry/ambient/authorization.go`,
//! `convertAuthorizationPolicy` and `handleRule`): policies with `targetRef(s)` are not sent
//! ("TargetRef is not intended for ztunnel"), nor dry-run ones (`AMBIENT_ENABLE_DRY_RUN_…`
//! defaults to false), nor CUSTOM and AUDIT ("ztunnel does not support the CUSTOM action").
//! Each rule becomes a group of clauses: one for its `to` entries (ports only), one for its `from`
//! entries (principals, namespaces, service accounts, IP blocks; `trustDomains` is not mapped)
//! and one per `when` condition (only `source.ip`, `source.namespace`, `source.principal`,
//! `destination.ip`, `destination.port` carry values). HTTP attributes (hosts, methods, paths,
//! request principals, remote IPs, any other `when` key) are left out: an ALLOW rule that has
//! any is dropped whole (a policy left without rules allows nothing), a DENY rule keeps its
//! entries without them. Ports and IPs that do not parse are skipped silently. Principals and
//! namespaces become exact, prefix, suffix or presence matches, compared literally.
//!
//! **Evaluation** (istio/ztunnel `src/rbac.rs` `Authorization::matches`, `src/state.rs`
//! `assert_rbac`): a policy with no groups matches nothing; a group matches when every clause
//! does; a clause matches when one of its non-empty matches does — an entry left empty is
//! skipped ("an empty match sent to ztunnel is skipped (match-none), not match-all"), so a clause
//! of empty entries never matches and neither does its rule. Principals are compared with the
//! peer's SPIFFE ID without `spiffe://` (no `cluster.local` pointer, no trust-domain aliases).
//! Order: any DENY match denies; no ALLOW policy allows; an ALLOW match allows; else deny. No
//! CUSTOM step.
//!
//! **Scope** (`convertAuthorizationPolicy`, `workloads.go` `buildWorkloadPolicies`): a policy
//! without selector applies to every captured pod of its namespace (of the mesh, in the root
//! namespace); with one, to the captured pods of its namespace (or, from the root namespace, of
//! any namespace) whose labels match.
//!
//! **PeerAuthentication** (`convertedSelectorPeerAuthentications`, `convertPeerAuthentication`,
//! `policies.go`): the same mesh → namespace → workload inheritance as sidecars, compiled into
//! DENY policies: the static `istio_converted_static_strict` (deny connections without a peer
//! identity) when the effective mode is STRICT, and a per-workload policy with port exceptions.
//! DISABLE counts as PERMISSIVE. The conversion is ported as written, quirks included (a
//! port-level DISABLE under a STRICT namespace and an UNSET workload mode stays STRICT; a STRICT
//! port under a STRICT mesh policy is not re-added).

use super::ip::Cidr;
use super::request::{Identity, Request};
use crate::model::authorization_policy::{
    strings, AuthzAction, List, RuleView, HTTP_OPERATION_FIELDS,
};
use crate::model::labels::is_dry_run;
use crate::model::{AuthorizationPolicy, MtlsMode};
use crate::mtls::PeerPolicy;
use crate::resource::spec_of;
use kube::core::DynamicObject;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The name of istiod's static STRICT policy.
pub(crate) const STATIC_STRICT: &str = "istio_converted_static_strict";

/// A ztunnel string match (`stringToMatch`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sm {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Presence,
}

impl Sm {
    fn parse(v: &str) -> Sm {
        if v == "*" {
            Sm::Presence
        } else if let Some(s) = v.strip_prefix('*') {
            Sm::Suffix(s.to_owned())
        } else if let Some(p) = v.strip_suffix('*') {
            Sm::Prefix(p.to_owned())
        } else {
            Sm::Exact(v.to_owned())
        }
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            Sm::Exact(e) => e == s,
            Sm::Prefix(p) => s.starts_with(p.as_str()),
            Sm::Suffix(x) => s.ends_with(x.as_str()),
            Sm::Presence => !s.is_empty(),
        }
    }

    fn show(&self) -> String {
        match self {
            Sm::Exact(e) => e.clone(),
            Sm::Prefix(p) => format!("{p}*"),
            Sm::Suffix(s) => format!("*{s}"),
            Sm::Presence => "*".to_owned(),
        }
    }
}

/// One match of a clause (ztunnel's `RbacMatch`): every field present must hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct L4Match {
    pub(crate) namespaces: Vec<Sm>,
    pub(crate) not_namespaces: Vec<Sm>,
    pub(crate) service_accounts: Vec<(String, String)>,
    pub(crate) not_service_accounts: Vec<(String, String)>,
    pub(crate) principals: Vec<Sm>,
    pub(crate) not_principals: Vec<Sm>,
    pub(crate) source_ips: Vec<Cidr>,
    pub(crate) not_source_ips: Vec<Cidr>,
    pub(crate) destination_ips: Vec<Cidr>,
    pub(crate) not_destination_ips: Vec<Cidr>,
    pub(crate) destination_ports: Vec<u16>,
    pub(crate) not_destination_ports: Vec<u16>,
    /// `from[1]`, `to[0]`, `when[2]`, or the PeerAuthentication part it stands for.
    pub(crate) label: String,
    pub(crate) path: String,
}

/// What a match reads from a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conn<'r> {
    pub(crate) identity: Option<&'r Identity>,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) destination_ip: Option<IpAddr>,
    pub(crate) port: u16,
}

impl<'r> Conn<'r> {
    pub(crate) fn of(req: &'r Request) -> Conn<'r> {
        Conn {
            identity: req.peer(),
            source_ip: req.source_ip(),
            destination_ip: req.destination_ip(),
            port: req.port(),
        }
    }
}

/// `matches_internal`: any positive (or none declared) and no negative.
fn field<T>(pos: &[T], neg: &[T], pred: impl Fn(&T) -> bool) -> bool {
    (pos.is_empty() || pos.iter().any(&pred)) && !neg.iter().any(&pred)
}

impl L4Match {
    /// `RbacMatch::is_empty`: nothing to match on (ztunnel skips it).
    pub(crate) fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.not_namespaces.is_empty()
            && self.service_accounts.is_empty()
            && self.not_service_accounts.is_empty()
            && self.principals.is_empty()
            && self.not_principals.is_empty()
            && self.source_ips.is_empty()
            && self.not_source_ips.is_empty()
            && self.destination_ips.is_empty()
            && self.not_destination_ips.is_empty()
            && self.destination_ports.is_empty()
            && self.not_destination_ports.is_empty()
    }

    /// The failing fields of this match against a connection, in ztunnel's order (empty: it
    /// matches).
    pub(super) fn failing(&self, c: &Conn<'_>) -> Vec<&'static str> {
        let principal = c.identity.map_or("", Identity::principal);
        let ns = c.identity.map_or("", Identity::namespace);
        let ip_in = |ip: Option<IpAddr>| move |n: &Cidr| ip.is_some_and(|ip| n.contains(ip));
        let mut out = Vec::new();
        if !field(
            &self.destination_ips,
            &self.not_destination_ips,
            ip_in(c.destination_ip),
        ) {
            out.push("destination.ip");
        }
        if !field(&self.source_ips, &self.not_source_ips, ip_in(c.source_ip)) {
            out.push("source.ip");
        }
        if !field(&self.destination_ports, &self.not_destination_ports, |p| {
            *p == c.port
        }) {
            out.push("port");
        }
        if !field(
            &self.service_accounts,
            &self.not_service_accounts,
            |(n, s)| {
                c.identity
                    .is_some_and(|i| i.namespace() == n && i.service_account() == s)
            },
        ) {
            out.push("source.serviceAccount");
        }
        // Without an identity ztunnel compares "" without the spiffe:// prefix: nothing matches.
        if !field(&self.principals, &self.not_principals, |p| {
            c.identity.is_some() && p.matches(principal)
        }) {
            out.push("source.principal");
        }
        if !field(&self.namespaces, &self.not_namespaces, |p| p.matches(ns)) {
            out.push("source.namespace");
        }
        out
    }

    pub(super) fn matches(&self, c: &Conn<'_>) -> bool {
        let principal = c.identity.map_or("", Identity::principal);
        let ns = c.identity.map_or("", Identity::namespace);
        let ip_in = |ip: Option<IpAddr>| move |n: &Cidr| ip.is_some_and(|ip| n.contains(ip));
        field(
            &self.destination_ips,
            &self.not_destination_ips,
            ip_in(c.destination_ip),
        ) && field(&self.source_ips, &self.not_source_ips, ip_in(c.source_ip))
            && field(&self.destination_ports, &self.not_destination_ports, |p| {
                *p == c.port
            })
            && field(
                &self.service_accounts,
                &self.not_service_accounts,
                |(n, s)| {
                    c.identity
                        .is_some_and(|i| i.namespace() == n && i.service_account() == s)
                },
            )
            && field(&self.principals, &self.not_principals, |p| {
                c.identity.is_some() && p.matches(principal)
            })
            && field(&self.namespaces, &self.not_namespaces, |p| p.matches(ns))
    }

    /// What the match asks for, in words (for explanations).
    pub(super) fn describe(&self) -> String {
        let mut parts = Vec::new();
        let sms = |v: &[Sm]| v.iter().map(Sm::show).collect::<Vec<_>>().join(" ");
        let list = |name: &str, pos: String, neg: String, parts: &mut Vec<String>| {
            if !pos.is_empty() {
                parts.push(format!("{name} in [{pos}]"));
            }
            if !neg.is_empty() {
                parts.push(format!("{name} not in [{neg}]"));
            }
        };
        let sa = |v: &[(String, String)]| {
            v.iter()
                .map(|(n, s)| format!("{n}/{s}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let ports = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(" ");
        let ips = |v: &[Cidr]| v.len().to_string() + " range(s)";
        list(
            "source.principal",
            sms(&self.principals),
            sms(&self.not_principals),
            &mut parts,
        );
        list(
            "source.namespace",
            sms(&self.namespaces),
            sms(&self.not_namespaces),
            &mut parts,
        );
        list(
            "source.serviceAccount",
            sa(&self.service_accounts),
            sa(&self.not_service_accounts),
            &mut parts,
        );
        if !self.source_ips.is_empty() || !self.not_source_ips.is_empty() {
            parts.push(format!(
                "source.ip ({} in, {} not in)",
                ips(&self.source_ips),
                ips(&self.not_source_ips)
            ));
        }
        if !self.destination_ips.is_empty() || !self.not_destination_ips.is_empty() {
            parts.push("destination.ip".to_owned());
        }
        list(
            "port",
            ports(&self.destination_ports),
            ports(&self.not_destination_ports),
            &mut parts,
        );
        parts.join(", ")
    }
}

/// One converted rule (an istiod `Group`): every clause must match.
#[derive(Clone, Debug)]
pub(crate) struct L4Group {
    /// Index of the AuthorizationPolicy rule it came from.
    pub(crate) rule: usize,
    pub(crate) clauses: Vec<Vec<L4Match>>,
}

impl L4Group {
    pub(super) fn matches(&self, c: &Conn<'_>) -> bool {
        self.clauses
            .iter()
            .all(|clause| clause.is_empty() || clause.iter().any(|m| !m.is_empty() && m.matches(c)))
    }

    /// The group can match something: no clause is made of empty matches only
    /// (`hasEffectiveRules`).
    fn effective(&self) -> bool {
        self.clauses
            .iter()
            .all(|clause| clause.is_empty() || clause.iter().any(|m| !m.is_empty()))
    }
}

/// An HTTP attribute istiod leaves out of a ztunnel policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L7Field {
    /// As istiod names it in its status (`methods`, `requestPrincipals`, `request.headers[x]`).
    pub name: String,
    /// Where it is written.
    pub path: String,
}

/// What istiod made of one AuthorizationPolicy rule for ztunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleFate {
    /// Converted as written.
    Kept,
    /// An ALLOW rule with HTTP attributes: left out ("rules matching HTTP attributes are
    /// omitted. This will be more restrictive than requested").
    Dropped(Vec<L7Field>),
    /// A DENY rule whose HTTP attributes were left out and that, with an entry left empty,
    /// never matches: the rule denies nothing.
    NoOp(Vec<L7Field>),
    /// A DENY rule whose HTTP attributes were left out and that still matches: it denies more
    /// than written (every request its L4 part matches).
    Wider(Vec<L7Field>),
    /// A rule without HTTP attributes that still never matches at ztunnel: an entry holds only
    /// what ztunnel ignores (`trustDomains`) or values it skips (ports, IPs that do not parse).
    Inert(String),
}

impl RuleFate {
    /// The HTTP attributes left out.
    pub fn l7(&self) -> &[L7Field] {
        match self {
            RuleFate::Dropped(f) | RuleFate::NoOp(f) | RuleFate::Wider(f) => f,
            _ => &[],
        }
    }
}

/// Why istiod sends a policy to no ztunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotSent {
    /// `targetRef(s)`: waypoints and gateways only.
    TargetRefs,
    /// `istio.io/dry-run`.
    DryRun,
    /// CUSTOM or AUDIT ("ztunnel does not support the CUSTOM action").
    Action(String),
}

impl NotSent {
    pub fn describe(&self) -> String {
        match self {
            NotSent::TargetRefs => "uses targetRef(s): enforced by waypoints (or gateways), never by ztunnel".to_owned(),
            NotSent::DryRun => "dry-run: istiod does not send dry-run policies to ztunnel (AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY is off by default)".to_owned(),
            NotSent::Action(a) => format!("action {a}: ztunnel does not support it, so istiod does not send the policy (with no waypoint, nothing enforces it)"),
        }
    }
}

/// ztunnel's policy scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Root namespace, no selector: every captured pod of the mesh.
    Global,
    /// No selector: every captured pod of the namespace.
    Namespace,
    /// A selector: the captured pods it selects.
    WorkloadSelector,
}

/// ALLOW or DENY (ztunnel has no other action).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Action {
    Allow,
    Deny,
}

/// One AuthorizationPolicy as ztunnel receives it.
#[derive(Clone, Debug)]
pub struct L4Policy {
    pub action: L4Action,
    pub scope: Scope,
    pub(crate) groups: Vec<L4Group>,
    /// Per rule of the policy, what conversion made of it.
    pub(crate) fates: Vec<(usize, RuleFate)>,
}

impl L4Policy {
    /// `hasEffectiveRules`: some group can match.
    pub fn effective(&self) -> bool {
        self.groups.iter().any(L4Group::effective)
    }

    pub(super) fn first_match(&self, c: &Conn<'_>) -> Option<usize> {
        self.groups.iter().find(|g| g.matches(c)).map(|g| g.rule)
    }
}

/// Convert one AuthorizationPolicy object as istiod does for ztunnel.
pub fn convert(obj: &DynamicObject, root_namespace: &str) -> Result<L4Policy, NotSent> {
    convert_spec(
        spec_of(obj),
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        is_dry_run(obj),
        root_namespace,
    )
}

/// [`convert`] on a spec.
pub(crate) fn convert_spec(
    spec: &Value,
    namespace: &str,
    dry_run: bool,
    root_namespace: &str,
) -> Result<L4Policy, NotSent> {
    convert_policy(
        &AuthorizationPolicy::of(spec),
        namespace,
        dry_run,
        root_namespace,
    )
}

/// [`convert`] on a decoded policy.
pub(crate) fn convert_policy(
    ap: &AuthorizationPolicy<'_>,
    namespace: &str,
    dry_run: bool,
    root_namespace: &str,
) -> Result<L4Policy, NotSent> {
    if dry_run {
        return Err(NotSent::DryRun);
    }
    if ap.has_target_refs() {
        return Err(NotSent::TargetRefs);
    }
    let action = match ap.action() {
        Some(AuthzAction::Allow) => L4Action::Allow,
        Some(AuthzAction::Deny) => L4Action::Deny,
        _ => return Err(NotSent::Action(ap.action_str().to_owned())),
    };
    let scope = if ap.selector.is_some() {
        Scope::WorkloadSelector
    } else if namespace == root_namespace {
        Scope::Global
    } else {
        Scope::Namespace
    };
    let mut groups = Vec::new();
    let mut fates = Vec::new();
    for rule in ap.rules() {
        if !rule.is_object() {
            continue; // Istio's schema rejects it
        }
        let (clauses, l7) = handle_rule(&rule, namespace);
        let group = L4Group {
            rule: rule.index,
            clauses,
        };
        let fate = match (action, l7.is_empty()) {
            (L4Action::Allow, false) => RuleFate::Dropped(l7),
            (_, true) if !group.effective() => RuleFate::Inert(inert_reason(&group)),
            (_, true) => RuleFate::Kept,
            (L4Action::Deny, false) if !group.effective() => RuleFate::NoOp(l7),
            (L4Action::Deny, false) => RuleFate::Wider(l7),
        };
        if !matches!(fate, RuleFate::Dropped(_)) {
            groups.push(group);
        }
        fates.push((rule.index, fate));
    }
    Ok(L4Policy {
        action,
        scope,
        groups,
        fates,
    })
}

fn inert_reason(g: &L4Group) -> String {
    let empty: Vec<String> = g
        .clauses
        .iter()
        .filter(|c| !c.is_empty() && c.iter().all(L4Match::is_empty))
        .flat_map(|c| c.iter().map(|m| m.label.clone()))
        .collect();
    format!(
        "{} holds nothing ztunnel matches on (trustDomains is not sent to ztunnel; ports and IPs that do not parse are skipped), so the rule never matches",
        empty.join(", ")
    )
}

fn strs<'r>(v: &'r List<'_>) -> Vec<&'r str> {
    strings(v).map(|(_, s)| s).collect()
}

fn to_match(v: &List<'_>) -> Vec<Sm> {
    strs(v).into_iter().map(Sm::parse).collect()
}

/// `stringToPort`: numbers 0-65535; anything else is skipped.
fn to_port(v: &List<'_>) -> Vec<u16> {
    strs(v)
        .into_iter()
        .filter_map(|p| p.parse::<u16>().ok())
        .collect()
}

/// `stringToIP`: addresses and CIDRs; anything else is skipped.
fn to_ip(v: &List<'_>) -> Vec<Cidr> {
    strs(v)
        .into_iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| Cidr::parse(s).ok())
        .collect()
}

/// `stringToServiceAccountMatch`: `ns/sa`, or `sa` in the policy's namespace.
fn to_sa(v: &List<'_>, ns: &str) -> Vec<(String, String)> {
    strs(v)
        .into_iter()
        .map(|s| match s.split_once('/') {
            Some((n, a)) => (n.to_owned(), a.to_owned()),
            None => (ns.to_owned(), s.to_owned()),
        })
        .collect()
}

/// The `when` keys ztunnel can evaluate (`l4WhenAttributes`).
const L4_WHEN: &[&str] = &[
    "source.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
];

const HTTP_SOURCES: &[&str] = &[
    "remoteIpBlocks",
    "notRemoteIpBlocks",
    "requestPrincipals",
    "notRequestPrincipals",
];

/// `handleRule`: the clauses of one rule and the HTTP attributes it has.
fn handle_rule(rule: &RuleView<'_, '_>, ns: &str) -> (Vec<Vec<L4Match>>, Vec<L7Field>) {
    let index = rule.index;
    let mut l7 = Vec::new();
    let operations: Vec<_> = rule.operations().collect();
    let mut to_matches = Vec::new();
    for (j, _) in rule.to_entries() {
        let op = operations.iter().find(|o| o.index == j);
        let field = |f: &'static str| op.map_or(&None, |o| o.field(f).list);
        if let Some(o) = op {
            for f in HTTP_OPERATION_FIELDS {
                let list = o.field(f);
                if crate::model::ok(list.list).is_some_and(|l| !l.is_empty()) {
                    l7.push(L7Field {
                        name: (*f).to_owned(),
                        path: list.path(),
                    });
                }
            }
        }
        to_matches.push(L4Match {
            destination_ports: to_port(field("ports")),
            not_destination_ports: to_port(field("notPorts")),
            label: format!("to[{j}]"),
            path: format!("spec.rules[{index}].to[{j}]"),
            ..L4Match::default()
        });
    }
    let sources: Vec<_> = rule.sources().collect();
    let mut from_matches = Vec::new();
    for (j, _) in rule.from_entries() {
        let src = sources.iter().find(|s| s.index == j);
        let field = |f: &'static str| src.map_or(&None, |s| s.field(f).list);
        if let Some(s) = src {
            for f in HTTP_SOURCES {
                let list = s.field(f);
                if crate::model::ok(list.list).is_some_and(|l| !l.is_empty()) {
                    l7.push(L7Field {
                        name: (*f).to_owned(),
                        path: list.path(),
                    });
                }
            }
        }
        from_matches.push(L4Match {
            source_ips: to_ip(field("ipBlocks")),
            not_source_ips: to_ip(field("notIpBlocks")),
            namespaces: to_match(field("namespaces")),
            not_namespaces: to_match(field("notNamespaces")),
            service_accounts: to_sa(field("serviceAccounts"), ns),
            not_service_accounts: to_sa(field("notServiceAccounts"), ns),
            principals: to_match(field("principals")),
            not_principals: to_match(field("notPrincipals")),
            label: format!("from[{j}]"),
            path: format!("spec.rules[{index}].from[{j}]"),
            ..L4Match::default()
        });
    }
    let mut clauses = Vec::new();
    if !to_matches.is_empty() {
        clauses.push(to_matches);
    }
    if !from_matches.is_empty() {
        clauses.push(from_matches);
    }
    for c in rule.conditions() {
        let l = c.index;
        let key = c.key().unwrap_or("");
        if !L4_WHEN.contains(&key) {
            l7.push(L7Field {
                name: key.to_owned(),
                path: c.path(),
            });
        }
        let pick = |want: &str, field: &'static str| {
            if key == want {
                c.list(field)
            } else {
                &None
            }
        };
        clauses.push(vec![L4Match {
            namespaces: to_match(pick("source.namespace", "values")),
            principals: to_match(pick("source.principal", "values")),
            source_ips: to_ip(pick("source.ip", "values")),
            destination_ports: to_port(pick("destination.port", "values")),
            destination_ips: to_ip(pick("destination.ip", "values")),
            not_namespaces: to_match(pick("source.namespace", "notValues")),
            not_principals: to_match(pick("source.principal", "notValues")),
            not_source_ips: to_ip(pick("source.ip", "notValues")),
            not_destination_ports: to_port(pick("destination.port", "notValues")),
            not_destination_ips: to_ip(pick("destination.ip", "notValues")),
            label: format!("when[{l}]"),
            path: c.path(),
            ..L4Match::default()
        }]);
    }
    (clauses, l7)
}

// ---- PeerAuthentication -------------------------------------------------------------------

/// The PeerAuthentication-derived DENY policies ztunnel applies to one workload.
#[derive(Clone, Debug, Default)]
pub struct PeerDerived {
    /// `istio_converted_static_strict` is attached: connections without a peer identity are
    /// denied.
    pub(crate) static_strict: bool,
    /// The converted workload policy with port exceptions, and its PeerAuthentication.
    pub(crate) port_policy: Option<(String, Vec<L4Group>)>,
    /// The policies that decided, for explanations: mesh, namespace, workload.
    pub deciders: Vec<(String, &'static str)>,
}

impl PeerDerived {
    /// The DENY that refuses this connection, if any: the policy's name.
    pub(super) fn denies(&self, c: &Conn<'_>) -> Option<String> {
        if self.static_strict && c.identity.is_none() {
            return Some(STATIC_STRICT.to_owned());
        }
        let (name, groups) = self.port_policy.as_ref()?;
        groups.iter().any(|g| g.matches(c)).then(|| name.clone())
    }

    /// Whether a plaintext connection to this port is refused.
    pub(crate) fn strict_on(&self, port: u16) -> bool {
        self.denies(&Conn {
            identity: None,
            source_ip: None,
            destination_ip: None,
            port,
        })
        .is_some()
    }
}

fn strict(m: MtlsMode) -> bool {
    m == MtlsMode::Strict
}
fn unset(m: MtlsMode) -> bool {
    m == MtlsMode::Unset
}
fn loose(m: MtlsMode) -> bool {
    matches!(m, MtlsMode::Permissive | MtlsMode::Disable)
}

/// The oldest policy of a list (istiod's `CreationTimestamp.Before`; like
/// [`crate::mtls`], a policy without timestamp counts as the newest, name breaks ties).
fn oldest<'p>(ps: impl Iterator<Item = &'p PeerPolicy>) -> Option<&'p PeerPolicy> {
    ps.min_by(|a, b| {
        (a.created.is_none(), &a.created, &a.name).cmp(&(b.created.is_none(), &b.created, &b.name))
    })
}

/// `convertedSelectorPeerAuthentications` and `convertPeerAuthentication` for a workload in
/// `namespace` with pod `labels`.
pub fn peer_derived<'p>(
    peers: impl IntoIterator<Item = &'p PeerPolicy>,
    root: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> PeerDerived {
    let selects = |p: &PeerPolicy| {
        crate::model::label_selector::all_pairs_match(
            labels,
            p.selector.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    };
    // fetchPeerAuthentications: the workload's namespace (no selector, or a matching one), and
    // the root namespace's selector-less policies.
    let fetched = peers.into_iter().filter(|p| {
        (p.namespace == namespace && (p.selector.is_empty() || selects(p)))
            || (namespace != root && p.namespace == root && p.selector.is_empty())
    });
    let fetched: Vec<&PeerPolicy> = fetched.collect();
    let mesh = oldest(
        fetched
            .iter()
            .copied()
            .filter(|p| p.selector.is_empty() && p.namespace == root),
    );
    let ns_cfg = oldest(
        fetched
            .iter()
            .copied()
            .filter(|p| p.selector.is_empty() && p.namespace != root),
    );
    let workload = oldest(
        fetched
            .iter()
            .copied()
            .filter(|p| !p.selector.is_empty() && p.namespace != root),
    );
    let mut deciders = Vec::new();
    let mut effective_strict = false;
    if let Some(m) = mesh {
        effective_strict = strict(m.mode);
        deciders.push((format!("{}/{}", m.namespace, m.name), "mesh"));
    }
    if let Some(n) = ns_cfg {
        if !unset(n.mode) {
            effective_strict = strict(n.mode);
        }
        deciders.push((format!("{}/{}", n.namespace, n.name), "namespace"));
    }
    let Some(w) = workload else {
        return PeerDerived {
            static_strict: effective_strict,
            port_policy: None,
            deciders,
        };
    };
    deciders.push((format!("{}/{}", w.namespace, w.name), "workload"));
    if strict(w.mode) {
        effective_strict = true;
    }
    if loose(w.mode) {
        effective_strict = false;
    }
    let mut port_key = false;
    if !w.ports.is_empty() {
        match w.mode {
            MtlsMode::Strict => {
                if w.ports.values().any(|m| loose(*m)) {
                    port_key = true;
                    effective_strict = false;
                }
            }
            MtlsMode::Permissive | MtlsMode::Disable => {
                if w.ports.values().any(|m| strict(*m)) {
                    port_key = true;
                }
            }
            MtlsMode::Unset => {
                if effective_strict {
                    // Only PERMISSIVE counts here, not DISABLE (istiod's code as written).
                    if w.ports.values().any(|m| *m == MtlsMode::Permissive) {
                        port_key = true;
                        effective_strict = false;
                    }
                } else {
                    effective_strict = false;
                    if w.ports.values().any(|m| strict(*m)) {
                        port_key = true;
                    }
                }
            }
        }
    }
    let port_policy = if port_key {
        // PeerAuthDerivedPolicies: the namespace's and the root's selector-less policies.
        // (Both lists are among the fetched policies.)
        let ns_pol = oldest(
            fetched
                .iter()
                .copied()
                .filter(|p| p.namespace == w.namespace && p.selector.is_empty()),
        );
        let root_pol = oldest(
            fetched
                .iter()
                .copied()
                .filter(|p| p.namespace == root && p.selector.is_empty()),
        );
        convert_peer(root, w, ns_pol, root_pol).map(|g| (format!("{}/{}", w.namespace, w.name), g))
    } else {
        None
    };
    PeerDerived {
        static_strict: effective_strict,
        port_policy,
        deciders,
    }
}

fn presence_deny(label: &str) -> L4Match {
    L4Match {
        not_principals: vec![Sm::Presence],
        label: label.to_owned(),
        ..L4Match::default()
    }
}

/// `convertPeerAuthentication`: the workload policy's DENY groups, `None` when istiod sends
/// nothing.
fn convert_peer(
    root: &str,
    cfg: &PeerPolicy,
    ns_cfg: Option<&PeerPolicy>,
    root_cfg: Option<&PeerPolicy>,
) -> Option<Vec<L4Group>> {
    if cfg.namespace == root || cfg.selector.is_empty() || cfg.ports.is_empty() {
        return None;
    }
    let mode = cfg.mode;
    let mut rules: Vec<Vec<L4Match>> = Vec::new();
    let mut groups: Vec<L4Group> = Vec::new();
    if strict(mode) {
        rules.push(vec![presence_deny("no peer identity")]);
    }
    let ns_mode = ns_cfg.map(|n| n.mode);
    let root_mode = root_cfg.map(|r| r.mode);
    let mut found_non_strict = false;
    for (&port, &pm) in &cfg.ports {
        let Ok(port16) = u16::try_from(port) else {
            continue;
        };
        if strict(pm) {
            // Go: `#1 || (#2a && #2b || #3)` — `&&` binds tighter, so #3 stands alone.
            let parent_strict = strict(mode)
                || (unset(mode) && ns_mode.is_some_and(strict)
                    || (ns_mode.is_none_or(unset) && root_mode.is_some_and(strict)));
            if parent_strict {
                continue;
            }
            groups.push(L4Group {
                rule: 0,
                clauses: vec![vec![L4Match {
                    not_principals: vec![Sm::Presence],
                    destination_ports: vec![port16],
                    label: format!("port {port} STRICT"),
                    ..L4Match::default()
                }]],
            });
        } else if loose(pm) {
            if loose(mode) {
                continue;
            }
            let skip = unset(mode)
                && ((ns_mode.is_some_and(|m| !strict(m)))
                    || (ns_mode.is_none() && root_mode.is_some_and(|m| !strict(m)))
                    || (ns_mode.is_none() && root_mode.is_none()));
            if skip {
                continue;
            }
            found_non_strict = true;
            rules.push(vec![L4Match {
                not_destination_ports: vec![port16],
                label: format!("port {port} exempt"),
                ..L4Match::default()
            }]);
        }
    }
    if strict(mode) && !found_non_strict {
        return None;
    }
    if rules.is_empty() && groups.is_empty() {
        return None;
    }
    let merge = (root_mode.is_some_and(strict) && ns_mode.is_none_or(|m| unset(m) || strict(m)))
        || ns_mode.is_some_and(strict);
    if merge && found_non_strict {
        rules.push(vec![presence_deny("no peer identity")]);
    }
    if !rules.is_empty() {
        groups.push(L4Group {
            rule: 0,
            clauses: rules,
        });
    }
    Some(groups)
}

pub(super) fn names(f: &[L7Field]) -> String {
    let mut n: Vec<&str> = f.iter().map(|x| x.name.as_str()).collect();
    n.sort_unstable();
    n.dedup();
    n.join(", ")
}

/// A note on what conversion did to a rule, for explanations and findings.
pub(crate) fn fate_note(rule: usize, fate: &RuleFate) -> Option<String> {
    Some(match fate {
        RuleFate::Kept => return None,
        RuleFate::Dropped(f) => format!(
            "rules[{rule}] is dropped at ztunnel (HTTP attributes: {}): it admits nothing there",
            names(f)
        ),
        RuleFate::NoOp(f) => format!(
            "rules[{rule}] loses its HTTP attributes at ztunnel ({}) and an entry left empty never matches: this DENY rule denies nothing",
            names(f)
        ),
        RuleFate::Wider(f) => format!(
            "rules[{rule}] loses its HTTP attributes at ztunnel ({}): this DENY rule denies every connection its L4 part matches",
            names(f)
        ),
        RuleFate::Inert(why) => format!("rules[{rule}]: {why}"),
    })
}

/// Principals a policy names whose trust domain is not the mesh's own: ztunnel compares them
/// literally, so `cluster.local/...` in a mesh of another trust domain matches nobody.
pub fn literal_principal_mismatch(principal: &str, trust_domain: &str) -> bool {
    match principal.split_once('/') {
        Some((td, _)) => !td.contains('*') && td != trust_domain,
        None => false,
    }
}

#[cfg(test)]
mod tests;
