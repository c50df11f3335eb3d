//! AuthorizationPolicies and RequestAuthentications compiled once for a policy set.
//!
//! A rule mirrors istio/istio `pilot/pkg/security/authz/model/model.go` (`New`): it matches
//! when one of its `from` entries, one of its `to` entries and every `when` condition match
//! (an absent list matches anything). Istio folds each condition into every `from` (source
//! keys) or `to` (destination keys) entry; keeping them apart is the same predicate and reads
//! better in explanations. Within an entry the fields are kept in the order Istio builds them
//! (principals, requestPrincipals, serviceAccounts, trustDomains, namespaces, remoteIpBlocks,
//! ipBlocks; hosts, methods, paths, ports), which is the order explanations report them in.
//!
//! Rules Istio cannot build never match: an unknown `when` key skips the rule for every action;
//! a value it cannot translate (a bad CIDR or port, an unparsable key) skips an ALLOW rule but
//! is dropped from DENY, AUDIT and CUSTOM rules (`rule.checkError`). A policy without rules
//! matches nothing (`rbacPolicyMatchNever` in `builder.go`), which for ALLOW is allow-nothing.

use super::field::{when_attr, Attr, Field, FieldCompiler, OnError, TrustDomains};
use crate::model::authorization_policy::{AuthzAction, RuleView, OPERATION_FIELDS, SOURCE_FIELDS};
use crate::model::labels::is_dry_run;
use crate::model::AuthorizationPolicy;
use crate::model::{decode_spec, RequestAuthentication};
use crate::resource::spec_of;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::DynamicObject;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One entry of `from` or `to`.
#[derive(Clone, Debug)]
pub(crate) struct Clause {
    pub(crate) fields: Vec<Field>,
}

/// One compiled rule.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub(crate) index: usize,
    /// Istio skips the rule (it never matches), and why.
    pub(crate) skipped: Option<String>,
    pub(crate) from: Vec<Clause>,
    pub(crate) to: Vec<Clause>,
    pub(crate) when: Vec<Field>,
    /// Where the first HTTP-only field sits (an ALLOW rule with one never matches TCP).
    pub(crate) http_only: Option<String>,
}

impl Rule {
    /// Every field, in evaluation order.
    pub(crate) fn fields(&self) -> impl Iterator<Item = &Field> {
        self.from
            .iter()
            .chain(&self.to)
            .flat_map(|c| &c.fields)
            .chain(&self.when)
    }
}

/// One compiled AuthorizationPolicy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    /// `None`: an action Istio does not know (the policy is ignored).
    pub action: Option<AuthzAction>,
    pub(crate) action_str: String,
    pub dry_run: bool,
    /// `spec.provider.name` (CUSTOM).
    pub provider: Option<String>,
    /// `targetRef`/`targetRefs` set: gateways and waypoints, never sidecars.
    pub(crate) target_refs: bool,
    /// The target references, as `GetTargetRefs` reads them.
    pub refs: Vec<TargetRef>,
    pub(crate) selector: BTreeMap<String, String>,
    pub(crate) created: Option<Time>,
    pub(crate) rules: Vec<Rule>,
    /// Values the simulator cannot evaluate or that Istio drops.
    pub notes: Vec<String>,
}

impl Policy {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// No rules: the policy matches nothing (for ALLOW, allow-nothing).
    pub(crate) fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Whether the policy attaches to a sidecar workload with these pod labels (istio/istio
    /// `pilot/pkg/model/policyattachment.go`, `ShouldAttachPolicy`): no target refs, and the
    /// selector's labels are a subset of the pod's.
    pub(crate) fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.target_refs
            && crate::model::label_selector::all_pairs_match(
                labels,
                self.selector.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
    }

    /// Compile an AuthorizationPolicy object.
    pub(crate) fn compile(obj: &DynamicObject, trust: &TrustDomains) -> Policy {
        let spec = spec_of(obj);
        let ap = AuthorizationPolicy::of(spec);
        let namespace = obj.metadata.namespace.clone().unwrap_or_default();
        let action = ap.action();
        let on_error = if action == Some(AuthzAction::Allow) {
            OnError::SkipRule
        } else {
            OnError::DropValue
        };
        let mut compiler = FieldCompiler {
            trust,
            namespace: &namespace,
            on_error,
            unsupported: Vec::new(),
        };
        let rules = ap
            .rules()
            .map(|r| {
                if r.is_object() {
                    compile_rule(&r, &mut compiler)
                } else {
                    Rule {
                        index: r.index,
                        skipped: Some(format!("{} is not a rule object", r.path())),
                        from: Vec::new(),
                        to: Vec::new(),
                        when: Vec::new(),
                        http_only: None,
                    }
                }
            })
            .collect();
        let notes = compiler.unsupported;
        Policy {
            name: obj.metadata.name.clone().unwrap_or_default(),
            action,
            action_str: ap.action_str().to_owned(),
            dry_run: is_dry_run(obj),
            provider: ap.provider_name().map(str::to_owned),
            target_refs: ap.has_target_refs(),
            refs: target_refs(spec),
            selector: ap.selector().to_map(),
            created: obj.metadata.creation_timestamp.clone(),
            rules,
            notes,
            namespace,
        }
    }
}

/// A `targetRef` / `targetRefs` entry (istio/api `PolicyTargetReference`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct TargetRef {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

impl TargetRef {
    /// `matchesGroupKind`: the group compared canonically (empty and `core` are the core group).
    pub fn is(&self, group: &str, kind: &str) -> bool {
        let canonical = |g: &str| if g.is_empty() { "core" } else { g }.to_owned();
        canonical(&self.group) == canonical(group) && self.kind == kind
    }

    /// `Kind namespace/name` (the policy's namespace when the reference names none).
    pub fn label(&self, policy_namespace: &str) -> String {
        let ns = if self.namespace.is_empty() {
            policy_namespace
        } else {
            &self.namespace
        };
        format!("{} {ns}/{}", self.kind, self.name)
    }
}

/// `GetTargetRefs`: `targetRefs` when it has entries, else `targetRef`. Entries that do not
/// decode are left out (Istio's schema rejects them).
pub(crate) fn target_refs(spec: &Value) -> Vec<TargetRef> {
    let list: Vec<TargetRef> = crate::json::items(spec, "targetRefs")
        .iter()
        .filter_map(|v| TargetRef::deserialize(v).ok())
        .collect();
    if !list.is_empty() {
        return list;
    }
    spec.get("targetRef")
        .filter(|v| v.is_object())
        .and_then(|v| TargetRef::deserialize(v).ok())
        .into_iter()
        .collect()
}

/// The Service a waypoint chain serves: `(ServiceEntry?, namespace, name)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ServiceRef<'a> {
    pub(crate) service_entry: bool,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
}

/// `ShouldAttachPolicy` for a waypoint (istio/istio `pilot/pkg/model/policyattachment.go`):
/// only target references attach ("waypoints never use selector"): a `Gateway` named like the
/// waypoint, from its namespace; the `Service` (or `ServiceEntry`) the chain serves, from its
/// namespace; the GatewayClass `istio-waypoint`, from the root namespace.
pub(crate) fn attaches_to_waypoint(
    refs: &[TargetRef],
    policy_namespace: &str,
    root: &str,
    waypoint_namespace: &str,
    waypoint_name: &str,
    service: Option<ServiceRef<'_>>,
) -> bool {
    const GATEWAY_API: &str = "gateway.networking.k8s.io";
    refs.iter().any(|r| {
        if let Some(s) = service {
            let (group, kind) = if s.service_entry {
                ("networking.istio.io", "ServiceEntry")
            } else {
                ("", "Service")
            };
            if r.is(group, kind) && r.name == s.name && policy_namespace == s.namespace {
                return true;
            }
        }
        if policy_namespace == root
            && r.is(GATEWAY_API, "GatewayClass")
            && r.name == crate::dataplane::labels::WAYPOINT_CLASS
        {
            return true;
        }
        policy_namespace == waypoint_namespace
            && (r.namespace.is_empty() || r.namespace == waypoint_namespace)
            && r.is(GATEWAY_API, "Gateway")
            && r.name == waypoint_name
    })
}

/// The attribute a source field pair reads (by its positive field, one of
/// [`SOURCE_FIELDS`]), with the attribute's name in messages.
fn source_attr(field: &str) -> (Attr, &'static str) {
    match field {
        "principals" => (Attr::Principal, "source.principal"),
        "requestPrincipals" => (Attr::RequestPrincipal, "request.auth.principal"),
        "serviceAccounts" => (Attr::ServiceAccount, "source.serviceAccount"),
        "trustDomains" => (Attr::TrustDomain, "source.trustDomain"),
        "namespaces" => (Attr::Namespace, "source.namespace"),
        "remoteIpBlocks" => (Attr::RemoteIp, "remote.ip"),
        _ => (Attr::SourceIp, "source.ip"),
    }
}

/// The attribute an operation field pair reads (by its positive field, one of
/// [`OPERATION_FIELDS`]), with the attribute's name in messages.
fn operation_attr(field: &str) -> (Attr, &'static str) {
    match field {
        "hosts" => (Attr::Host, "host"),
        "methods" => (Attr::Method, "method"),
        "paths" => (Attr::Path, "path"),
        _ => (Attr::Port, "port"),
    }
}

fn compile_rule(r: &RuleView<'_, '_>, c: &mut FieldCompiler<'_>) -> Rule {
    let index = r.index;
    let mut rule = Rule {
        index,
        skipped: None,
        from: Vec::new(),
        to: Vec::new(),
        when: Vec::new(),
        http_only: None,
    };
    let result = (|| -> Result<(), String> {
        let sources = r.sources().map(|s| (s.index, s)).collect::<Vec<_>>();
        for (j, _) in r.from_entries() {
            let mut fields = Vec::new();
            if let Some((_, src)) = sources.iter().find(|(k, _)| *k == j) {
                for pair in SOURCE_FIELDS.chunks_exact(2) {
                    let (p, n) = (src.field(pair[0]), src.field(pair[1]));
                    let (attr, label) = source_attr(pair[0]);
                    let path = if p.is_set() { p.path() } else { n.path() };
                    let values: Vec<&str> = p.strings().map(|(_, s)| s).collect();
                    let not_values: Vec<&str> = n.strings().map(|(_, s)| s).collect();
                    if let Some(f) = c.field(
                        attr,
                        &values,
                        &not_values,
                        path,
                        format!("from[{j}] {label}"),
                    )? {
                        fields.push(f);
                    }
                }
            }
            rule.from.push(Clause { fields });
        }
        let operations = r.operations().map(|o| (o.index, o)).collect::<Vec<_>>();
        for (j, _) in r.to_entries() {
            let mut fields = Vec::new();
            if let Some((_, op)) = operations.iter().find(|(k, _)| *k == j) {
                for pair in OPERATION_FIELDS.chunks_exact(2) {
                    let (p, n) = (op.field(pair[0]), op.field(pair[1]));
                    let (attr, label) = operation_attr(pair[0]);
                    let path = if p.is_set() { p.path() } else { n.path() };
                    let values: Vec<&str> = p.strings().map(|(_, s)| s).collect();
                    let not_values: Vec<&str> = n.strings().map(|(_, s)| s).collect();
                    if let Some(f) =
                        c.field(attr, &values, &not_values, path, format!("to[{j}] {label}"))?
                    {
                        fields.push(f);
                    }
                }
            }
            rule.to.push(Clause { fields });
        }
        for cond in r.conditions() {
            let key = cond.key().unwrap_or("");
            let attr = when_attr(key).map_err(|e| format!("{}: {e}", cond.path()))?;
            let values: Vec<&str> = cond.strings("values").map(|(_, s)| s).collect();
            let not_values: Vec<&str> = cond.strings("notValues").map(|(_, s)| s).collect();
            if let Some(f) = c.field(
                attr,
                &values,
                &not_values,
                cond.path(),
                format!("when {key}"),
            )? {
                rule.when.push(f);
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        rule.skipped = Some(e);
        rule.from.clear();
        rule.to.clear();
        rule.when.clear();
    }
    let http_only = rule
        .fields()
        .find(|f| f.http_only())
        .map(|f| f.path.clone());
    rule.http_only = http_only;
    rule
}

/// One `jwtRules` entry of a RequestAuthentication.
#[derive(Clone, Debug)]
pub(crate) struct JwtIssuer {
    /// `namespace/name` of the RequestAuthentication.
    pub(crate) policy: String,
    pub(crate) issuer: String,
    /// Empty: any audience (Envoy checks none).
    pub(crate) audiences: Vec<String>,
    /// Claims the JWT filter splits on spaces: `scope`, `permission`, plus the rule's own.
    pub(crate) space_delimited: Vec<String>,
}

/// One compiled RequestAuthentication.
#[derive(Clone, Debug)]
pub(crate) struct JwtPolicy {
    /// `namespace/name`.
    pub(crate) id: String,
    pub(crate) namespace: String,
    pub(crate) selector: BTreeMap<String, String>,
    pub(crate) target_refs: bool,
    pub(crate) refs: Vec<TargetRef>,
    pub(crate) issuers: Vec<JwtIssuer>,
}

impl JwtPolicy {
    pub(crate) fn compile(obj: &DynamicObject) -> JwtPolicy {
        let ra: RequestAuthentication<'_> = decode_spec(spec_of(obj)).unwrap_or_default();
        let namespace = obj.metadata.namespace.clone().unwrap_or_default();
        let policy = format!(
            "{namespace}/{}",
            obj.metadata.name.as_deref().unwrap_or_default()
        );
        let issuers = ra
            .jwt_rules()
            .filter_map(|(_, r)| {
                let mut space_delimited = vec!["scope".to_owned(), "permission".to_owned()];
                space_delimited.extend(r.space_delimited_claims().map(str::to_owned));
                Some(JwtIssuer {
                    policy: policy.clone(),
                    issuer: r.issuer()?.to_owned(),
                    audiences: r.audiences().map(str::to_owned).collect(),
                    space_delimited,
                })
            })
            .collect();
        JwtPolicy {
            id: policy,
            selector: crate::model::Selector::of_spec(spec_of(obj)).to_map(),
            target_refs: ra.has_target_refs(),
            refs: target_refs(spec_of(obj)),
            issuers,
            namespace,
        }
    }

    pub(crate) fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.target_refs
            && crate::model::label_selector::all_pairs_match(
                labels,
                self.selector.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ap(spec: Value) -> Policy {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "prod", "annotations": {"istio.io/dry-run": "True"}},
            "spec": spec
        }))
        .expect("object");
        Policy::compile(
            &obj,
            &TrustDomains {
                domains: vec!["cluster.local".into()],
            },
        )
    }

    #[test]
    fn rule_shape_and_order() {
        let p = ap(json!({"rules": [{
            "from": [{"source": {"ipBlocks": ["10.0.0.0/8"], "principals": ["a/ns/b/sa/c"]}}, {}],
            "to": [{"operation": {"ports": ["80"], "methods": ["GET"]}}],
            "when": [{"key": "request.headers[x]", "values": ["1"]}]
        }]}));
        assert!(p.dry_run, "ParseBool accepts True");
        let r = &p.rules[0];
        assert!(r.skipped.is_none());
        let labels: Vec<&str> = r.from[0].fields.iter().map(|f| f.label.as_str()).collect();
        assert_eq!(labels, ["from[0] source.principal", "from[0] source.ip"]);
        assert!(
            r.from[1].fields.is_empty(),
            "an empty from entry matches any source"
        );
        assert_eq!(
            r.to[0]
                .fields
                .iter()
                .map(|f| f.label.as_str())
                .collect::<Vec<_>>(),
            ["to[0] method", "to[0] port"]
        );
        assert_eq!(r.when[0].path, "spec.rules[0].when[0]");
        assert_eq!(
            r.http_only.as_deref(),
            Some("spec.rules[0].to[0].operation.methods")
        );
    }

    #[test]
    fn waypoint_attachment_follows_should_attach_policy() {
        let refs = |v: Value| target_refs(&json!({"targetRefs": v}));
        let svc = Some(ServiceRef {
            service_entry: false,
            namespace: "shop",
            name: "reviews",
        });
        let at = |r: &[TargetRef], ns: &str| {
            attaches_to_waypoint(r, ns, "istio-system", "shop", "waypoint", svc)
        };
        // The Service, from its namespace; not from another.
        let s = refs(json!([{"kind": "Service", "group": "", "name": "reviews"}]));
        assert!(at(&s, "shop") && !at(&s, "other"));
        let core = refs(json!([{"kind": "Service", "group": "core", "name": "reviews"}]));
        assert!(at(&core, "shop"));
        // The Gateway, from its namespace; a namespace in the reference must be its own.
        let g = refs(
            json!([{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}]),
        );
        assert!(at(&g, "shop") && !at(&g, "istio-system"));
        let g_other = refs(
            json!([{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint", "namespace": "x"}]),
        );
        assert!(!at(&g_other, "shop"));
        // The istio-waypoint GatewayClass, only from the root namespace.
        let c = refs(
            json!([{"kind": "GatewayClass", "group": "gateway.networking.k8s.io", "name": "istio-waypoint"}]),
        );
        assert!(at(&c, "istio-system") && !at(&c, "shop"));
        // No target refs: never (waypoints never use selector policies).
        assert!(!at(&[], "shop"));
        // The legacy single targetRef.
        let single = target_refs(
            &json!({"targetRef": {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}}),
        );
        assert_eq!(single.len(), 1);
        assert!(at(&single, "shop"));
        // A ServiceEntry chain only takes ServiceEntry references.
        let se = Some(ServiceRef {
            service_entry: true,
            namespace: "shop",
            name: "reviews",
        });
        assert!(!attaches_to_waypoint(
            &s,
            "shop",
            "istio-system",
            "shop",
            "waypoint",
            se
        ));
        let se_ref = refs(
            json!([{"kind": "ServiceEntry", "group": "networking.istio.io", "name": "reviews"}]),
        );
        assert!(attaches_to_waypoint(
            &se_ref,
            "shop",
            "istio-system",
            "shop",
            "waypoint",
            se
        ));
    }

    #[test]
    fn unknown_keys_and_bad_values() {
        let p = ap(json!({"rules": [
            {"when": [{"key": "destination.namespace", "values": ["x"]}]},
            {"from": [{"source": {"ipBlocks": ["10.0.0.0/99"]}}]},
            {}
        ]}));
        assert!(p.rules[0]
            .skipped
            .as_deref()
            .is_some_and(|s| s.contains("unknown attribute")));
        assert!(
            p.rules[1].skipped.is_some(),
            "ALLOW: a bad value skips the rule"
        );
        assert!(p.rules[2].skipped.is_none() && p.rules[2].fields().count() == 0);
        let d = ap(json!({"action": "DENY", "rules": [
            {"from": [{"source": {"ipBlocks": ["10.0.0.0/99"]}}]}
        ]}));
        assert!(d.rules[0].skipped.is_none(), "DENY: the value is dropped");
        assert_eq!(d.rules[0].fields().count(), 0);
        assert_eq!(d.notes.len(), 1);
    }
}
