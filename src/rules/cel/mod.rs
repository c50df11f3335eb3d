//! The rules' CEL forms: what kube-apiserver can judge on its own, as ValidatingAdmissionPolicy
//! validations (`meshguard generate admission-policies`), so that the simplest rules keep holding
//! while the webhook is unreachable. The webhook stays the full judge; these are the floor.
//!
//! A form sits beside its rule (one file per kind here, as in `rules/`) and is registered with one
//! line in [`REGISTRY`]; a rule CEL cannot state is registered in [`NOT_IN_CEL`] with the reason.
//! A test makes sure every rule of [`super::REGISTRY`] is in exactly one of the two.
//!
//! A form's CEL computes the rule's findings on one object as a list of `[path, message, fix]`
//! string triples, written with two kinds of placeholders the generator fills in:
//!
//! * `$o` is the object judged (`object`, or `oldObject` when the generator judges the old
//!   object of an UPDATE for `allowExistingViolations`, or for a DELETE), `$n` the new object of a
//!   weakening UPDATE; `$name` is the form's own variable `name` computed for the same object;
//! * `@name` is one of the generator's settings ([`SETTINGS`]): the root namespace, the trust
//!   domain, ... (values of the policy and of the mesh, fixed when the policies are generated).
//!
//! Messages and paths are the rule's own (same text, same field path), so a policy's message is
//! the webhook's and "the same finding as before the update" means the same thing on both paths.
//! Only the fixes may be shorter where the webhook's needs cluster state (a ServiceAccount lookup,
//! a "did you mean" suggestion).

use super::Rule;
use crate::resource::Kind;

pub mod ambient;
pub mod authorization_policy;
pub(crate) mod destination_rule;
pub mod envoy_filter;
pub mod namespace;
pub mod peer_authentication;
pub mod proxy;
pub(crate) mod request_authentication;
pub mod service;
pub mod sidecar;
pub mod workload;

/// How much of a rule its CEL form states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// Everything: the policy refuses exactly what the webhook refuses for this rule.
    Full,
    /// Part of it: the policy refuses a subset of what the webhook refuses (never more); the text
    /// says what only the webhook judges.
    Partly(&'static str),
}

/// The operations a form judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum On {
    /// CREATE and UPDATE, on the object written.
    Write,
    /// CREATE only.
    Create,
    /// DELETE, on the stored object (and a weakening UPDATE, see [`Weakening`]).
    Delete,
}

/// The CEL of one form.
#[derive(Clone, Debug, Default)]
pub struct Cel {
    /// The form's variables in order: `(name, expression)`, each over `$o` and earlier ones.
    pub variables: Vec<(&'static str, String)>,
    /// The findings on `$o`: a list of `[path, message, fix]`.
    pub(crate) sites: String,
    /// For [`On::Delete`] forms: the UPDATE that takes the same protection away.
    pub weakening: Option<Weakening>,
}

/// An UPDATE that turns a protecting object into one that no longer protects, judged like its
/// DELETE. Generated only while the rule itself judges such UPDATEs (the generator probes the
/// rule with `probe`), so that both paths always agree.
#[derive(Clone, Debug)]
pub struct Weakening {
    /// The findings of the UPDATE over `$o` (the stored object) and `$n` (the new one), empty
    /// when the new object still protects.
    pub(crate) sites: String,
    /// An UPDATE (old, new objects as JSON) the rule refuses exactly when it judges weakening
    /// UPDATEs.
    pub probe: (&'static str, &'static str),
}

/// One rule's CEL form.
pub struct CelForm {
    pub rule: &'static Rule,
    pub coverage: Coverage,
    pub on: On,
    /// The kinds the policy matches, when narrower than the rule's.
    pub kinds: Option<&'static [Kind]>,
    pub cel: fn() -> Cel,
}

impl std::fmt::Debug for CelForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelForm")
            .field("rule", &self.rule.id)
            .finish()
    }
}

impl CelForm {
    /// The kinds the policy matches.
    pub fn kinds(&self) -> &'static [Kind] {
        self.kinds.unwrap_or(self.rule.kinds)
    }
}

/// A rule with no CEL form, and why.
#[derive(Debug)]
pub(crate) struct NotInCel {
    pub(crate) rule: &'static Rule,
    pub(crate) why: &'static str,
}

/// The generator's settings a form may read as `@name`, with what each holds.
pub(crate) const SETTINGS: &[(&str, &str)] = &[
    ("rootNamespace", "Istio's root namespace (string)"),
    ("trustDomain", "the mesh trust domain (string)"),
    (
        "trustDomains",
        "the names a principal's trust domain may have here: cluster.local, the trust domain and its aliases (list of strings)",
    ),
    ("clusterDomain", "the cluster DNS domain, lower case, without dots around it (string)"),
    (
        "meshHostSuffixes",
        "the policy's extra in-mesh host suffixes, lower case, without a leading dot (list of strings)",
    ),
    (
        "injectionLabel",
        "the injection label the policy wants on namespaces, as `key: value` (string)",
    ),
    (
        "platformLabels",
        "the platform-owned namespace label keys, platform.labels (list of strings)",
    ),
    (
        "platformUsers",
        "the users that may change them, platform.users (list of strings)",
    ),
    (
        "platformGroups",
        "the groups whose members may change them, platform.groups (list of strings)",
    ),
];

/// The forms: one line per rule with a CEL form.
pub static REGISTRY: &[&CelForm] = &[
    &peer_authentication::PERMISSIVE_MTLS,
    &peer_authentication::DISABLED_MTLS,
    &peer_authentication::UNSET_MESH_DEFAULT,
    &peer_authentication::PORT_LEVEL_WITHOUT_SELECTOR,
    &peer_authentication::WEAKENING_DELETE,
    &peer_authentication::ROOT_NAMESPACE_SELECTOR,
    &authorization_policy::ALLOW_ALL,
    &authorization_policy::WILDCARD_SOURCE,
    &authorization_policy::ALLOW_WITHOUT_SOURCE,
    &authorization_policy::PRINCIPAL_FORMAT,
    &authorization_policy::FOREIGN_TRUST_DOMAIN,
    &authorization_policy::EXACT_PATH_TRAILING_SLASH,
    &authorization_policy::UNKNOWN_CONDITION_KEY,
    &authorization_policy::QUOTED_CONDITION_KEY,
    &authorization_policy::DENY_ALL_DELETE,
    &authorization_policy::ALLOW_NEGATIVE_MATCH,
    &authorization_policy::DENY_POSITIVE_IDENTITY,
    &authorization_policy::ACTION_WITHOUT_RULES,
    &authorization_policy::HTTP_ONLY_DENY_WITHOUT_PORTS,
    &authorization_policy::REMOTE_IP_UNTRUSTED,
    &authorization_policy::SOURCE_IP_BEHIND_GATEWAY,
    &request_authentication::MISSING_ISSUER,
    &request_authentication::INSECURE_JWKS_URI,
    &request_authentication::MISSING_AUDIENCES,
    &request_authentication::JWKS_URI_INTERNAL,
    &destination_rule::TLS_DISABLED,
    &destination_rule::TLS_NOT_ISTIO_MUTUAL,
    &destination_rule::TLS_NO_VERIFICATION,
    &destination_rule::INSECURE_SKIP_VERIFY,
    &workload::DEFAULT_SERVICE_ACCOUNT,
    &workload::INJECTION_DISABLED,
    &workload::TRAFFIC_BYPASS,
    &workload::PROXY_UID_RULE,
    &workload::PROXY_IMAGE_AUTO,
    &namespace::INJECTION_DISABLED,
    &namespace::CONFLICTING_INJECTION_LABELS,
    &namespace::PLATFORM_LABEL_CHANGE,
    &service::PORT_PROTOCOL,
    &proxy::NET_ADMIN,
    &envoy_filter::SECURITY_FILTER,
    &envoy_filter::TRANSPORT_SOCKET,
    &envoy_filter::INBOUND_LISTENER,
    &sidecar::INGRESS_TLS,
];

/// The rules without a CEL form: one line each.
pub(crate) static NOT_IN_CEL: &[&NotInCel] = &[
    &request_authentication::JWKS_PRIVATE_KEY,
    &istio_validation_not::INVALID_ENUM,
    &istio_validation_not::INVALID_PORT,
    &istio_validation_not::CONFLICTING_FIELDS,
    &istio_validation_not::INVALID_SPEC,
    &workload::NAMESPACE_NOT_INJECTED,
    &workload::MISSING_SIDECAR,
    &workload::HOST_NETWORK,
    &workload::PROXY_IMAGE,
    &namespace::INJECTION_MISSING,
    &namespace::UNKNOWN_REVISION,
    &ambient::ZTUNNEL_HTTP,
    &ambient::ZTUNNEL_ACTION,
    &ambient::RA_AMBIENT_SELECTOR,
    &proxy::PROXY_OVERRIDE,
    &proxy::INJECTION_TEMPLATE,
    &proxy::HOST_NETWORK_IN_MESH,
];

/// Istio's own validation (`istio_validation`): why the four parity rules have no CEL form.
mod istio_validation_not {
    use super::NotInCel;
    use crate::rules::istio_validation as v;

    const WHY: &str = "Istio's own validation (pkg/config/validation), which meshguard mirrors class by class; the Istio CRDs' schemas (enums, types, port ranges, x-kubernetes-validations) already hold part of it in kube-apiserver without meshguard, and the rest (URL, duration and path-template syntax, cross-field rules) is Go code CEL cannot follow faithfully";

    pub(crate) static INVALID_ENUM: NotInCel = NotInCel {
        rule: &v::INVALID_ENUM,
        why: WHY,
    };
    pub(crate) static INVALID_PORT: NotInCel = NotInCel {
        rule: &v::INVALID_PORT,
        why: WHY,
    };
    pub(crate) static CONFLICTING_FIELDS: NotInCel = NotInCel {
        rule: &v::CONFLICTING_FIELDS,
        why: WHY,
    };
    pub(crate) static INVALID_SPEC: NotInCel = NotInCel {
        rule: &v::INVALID_SPEC,
        why: WHY,
    };
}

/// The form of a rule, if it has one.
pub fn find(id: &str) -> Option<&'static CelForm> {
    REGISTRY.iter().copied().find(|f| f.rule.id == id)
}

/// Why a rule has no form, if it has none.
pub(crate) fn not_in_cel(id: &str) -> Option<&'static NotInCel> {
    NOT_IN_CEL.iter().copied().find(|n| n.rule.id == id)
}

// ---------------------------------------------------------------------------------------------
// Building blocks shared by the forms

/// A CEL string literal for `s` (JSON's escapes are valid CEL escapes).
pub(crate) fn lit(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A CEL list literal of strings.
pub(crate) fn lit_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| lit(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

/// One finding `[path, message, fix]`, from three CEL string expressions (each passed through
/// `string()`, so that values read from dynamically typed parts type-check as strings).
pub(crate) fn site(path: &str, message: &str, fix: &str) -> String {
    format!("[string({path}), string({message}), string({fix})]")
}

/// `cond ? [site] : []`.
pub(crate) fn site_if(cond: &str, path: &str, message: &str, fix: &str) -> String {
    format!("({cond} ? [{}] : [])", site(path, message, fix))
}

/// The list `list` (a CEL expression) if set, else `[]`: `list` may use `?.` optional steps.
pub fn or_empty_list(optional: &str) -> String {
    format!("{optional}.orValue([])")
}

/// Rust's `{:?}` of a string, as CEL writes it (`strings.quote`: the same for the printable
/// ASCII that names and values are made of).
pub fn quoted(expr: &str) -> String {
    format!("strings.quote({expr})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_rule_is_either_in_cel_or_says_why_not() {
        let mut seen = HashSet::new();
        for f in REGISTRY {
            assert!(
                seen.insert(f.rule.id),
                "{} registered twice in the CEL forms",
                f.rule.id
            );
            assert!(
                super::super::find(f.rule.id).is_some(),
                "{} is not a rule",
                f.rule.id
            );
            if let Coverage::Partly(what) = f.coverage {
                assert!(!what.is_empty() && !what.ends_with('.'), "{}", f.rule.id);
            }
            for k in f.kinds() {
                assert!(
                    f.rule.kinds.contains(k),
                    "{}: {k} is not its kind",
                    f.rule.id
                );
            }
        }
        for n in NOT_IN_CEL {
            assert!(
                seen.insert(n.rule.id),
                "{} is both in CEL and not, or listed twice",
                n.rule.id
            );
            assert!(!n.why.is_empty() && !n.why.ends_with('.'), "{}", n.rule.id);
        }
        for r in super::super::REGISTRY {
            assert!(
                seen.contains(r.id),
                "rule {} has neither a CEL form (rules/cel/REGISTRY) nor a NOT_IN_CEL line saying why; add one (docs/admission-policies.md lists every rule)",
                r.id
            );
        }
    }

    #[test]
    fn literals_escape_what_cel_needs() {
        assert_eq!(lit("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(lit_list(&["x", "y"]), r#"["x", "y"]"#);
    }
}
