//! The policy configuration: global mode, per-rule actions and exemptions, mesh settings.
//! Parsed strictly (unknown keys and unknown rule ids are errors) before any listener opens.

use crate::finding::Action;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub mod exceptions;
pub mod rollout;

/// The built-in policy, embedded in the binary.
pub(crate) const DEFAULT_POLICY_YAML: &str = include_str!("default-policy.yaml");

/// Global enforcement mode. A rule's explicit `action` in config overrides it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforcementMode {
    /// Rules act with their default action (deny or warn).
    #[default]
    Enforce,
    /// Deny-level rules only warn.
    Warn,
    /// Dry run: everything is allowed and reported (metrics, logs, audit annotations).
    Audit,
}

impl EnforcementMode {
    /// Cap a rule's default action by the global mode.
    pub fn cap(self, default: Action) -> Action {
        match (self, default) {
            (_, Action::Off) => Action::Off,
            (EnforcementMode::Enforce, a) => a,
            (EnforcementMode::Warn, Action::Deny) => Action::Warn,
            (EnforcementMode::Warn, a) => a,
            (EnforcementMode::Audit, _) => Action::Audit,
        }
    }
}

/// What to do when a rule needs cluster state (namespace labels, ServiceAccounts) that
/// neither the cache nor a direct GET could provide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLookupFailure {
    #[default]
    Deny,
    Allow,
}

/// What the webhook says about what an AuthorizationPolicy or PeerAuthentication change opens
/// (`reach::impact`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImpactSetting {
    /// Not computed (no watch, no cost on the review path).
    #[default]
    Off,
    /// A warning per opening (kubectl prints them), and the audit annotation.
    Warn,
    /// The audit annotation only.
    Audit,
}

/// Kubernetes-style label selector (matchLabels + matchExpressions).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct LabelSelector {
    #[serde(default)]
    pub(crate) match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct LabelSelectorRequirement {
    pub(crate) key: String,
    pub(crate) operator: SelectorOperator,
    #[serde(default)]
    pub(crate) values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let have = labels.get(&e.key);
                match e.operator {
                    SelectorOperator::In => have.is_some_and(|v| e.values.contains(v)),
                    SelectorOperator::NotIn => !have.is_some_and(|v| e.values.contains(v)),
                    SelectorOperator::Exists => have.is_some(),
                    SelectorOperator::DoesNotExist => have.is_none(),
                }
            })
    }
}

/// One exemption of a rule: all given conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exemption {
    /// Namespaces (exact names) the rule does not apply to.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespaces selected by their labels (needs the namespace labels from the cluster).
    #[serde(default)]
    pub(crate) namespace_selector: Option<LabelSelector>,
    /// Objects selected by their own labels.
    #[serde(default)]
    pub(crate) object_selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleConfig {
    /// Overrides the global mode for this rule.
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub exemptions: Vec<Exemption>,
    /// Per-namespace actions of this rule (`rollout`).
    #[serde(default)]
    pub overrides: Vec<rollout::Override>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MutationConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// The policy. Field names are the YAML keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub mode: EnforcementMode,
    /// Istio's root namespace. Unset (the default): the mesh's own (MeshConfig `rootNamespace`,
    /// else the Istio namespace); set, it wins over the mesh.
    #[serde(default)]
    pub root_namespace: Option<String>,
    /// The mesh trust domain. Unset: the mesh's own (MeshConfig `trustDomain`, else
    /// `cluster.local`); set, it wins over the mesh.
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// Other trust domains principals may name. Unset: the mesh's (MeshConfig
    /// `trustDomainAliases`); set, it replaces them.
    #[serde(default)]
    pub trust_domain_aliases: Option<Vec<String>>,
    /// MeshConfig `enableAutoMtls`. Unset: the mesh's own (default true).
    #[serde(default)]
    pub enable_auto_mtls: Option<bool>,
    /// Kubernetes cluster DNS domain.
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
    /// Extra host suffixes that count as in-mesh for DestinationRule checks.
    #[serde(default)]
    pub mesh_host_suffixes: Vec<String>,
    /// When set, namespaces are labeled `istio.io/rev=<rev>` instead of `istio-injection=enabled`.
    #[serde(default)]
    pub injection_revision: Option<String>,
    /// Namespaces no rule or mutation applies to. The root and Istio namespaces and meshguard's
    /// own namespace are always added.
    #[serde(default = "default_exempt")]
    pub exempt_namespaces: Vec<String>,
    #[serde(default)]
    pub on_lookup_failure: OnLookupFailure,
    /// On UPDATE, a deny finding the old object already had is reported as a warning instead
    /// (as Kyverno's `allowExistingViolations`): objects admitted before meshguard, or before a
    /// rule was added, can still be updated (labels, finalizers, rollouts) while `audit` and the
    /// warnings keep reporting them. A change that introduces or widens a violation (a different
    /// message) is still denied.
    #[serde(default = "yes")]
    pub allow_existing_violations: bool,
    #[serde(default)]
    pub rules: BTreeMap<String, RuleConfig>,
    #[serde(default)]
    pub mutations: BTreeMap<String, MutationConfig>,
    /// Per-namespace actions for every rule or listed rules, and who owns the labels they
    /// select on (`rollout`).
    #[serde(default)]
    pub overrides: Vec<rollout::Override>,
    #[serde(default)]
    pub platform: rollout::Platform,
    /// Exceptions with a scope, a reason and an end, and where PolicyException resources are
    /// accepted (`exceptions`).
    #[serde(default)]
    pub exceptions: Vec<exceptions::ExceptionSpec>,
    #[serde(default)]
    pub policy_exceptions: exceptions::ExceptionSettings,
    /// Say what an admitted AuthorizationPolicy or PeerAuthentication change opens.
    #[serde(default)]
    pub impact: ImpactSetting,
}

fn default_cluster_domain() -> String {
    "cluster.local".into()
}
fn default_exempt() -> Vec<String> {
    vec![
        "kube-system".into(),
        "kube-public".into(),
        "kube-node-lease".into(),
    ]
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: EnforcementMode::Enforce,
            root_namespace: None,
            trust_domain: None,
            trust_domain_aliases: None,
            enable_auto_mtls: None,
            cluster_domain: default_cluster_domain(),
            mesh_host_suffixes: Vec::new(),
            injection_revision: None,
            exempt_namespaces: default_exempt(),
            on_lookup_failure: OnLookupFailure::Deny,
            allow_existing_violations: true,
            rules: BTreeMap::new(),
            mutations: BTreeMap::new(),
            overrides: Vec::new(),
            platform: rollout::Platform::default(),
            exceptions: Vec::new(),
            policy_exceptions: exceptions::ExceptionSettings::default(),
            impact: ImpactSetting::Off,
        }
    }
}

/// The ids a policy may configure, handed in by whoever knows every registry (the catalogue:
/// rules, cross-resource checks, mutations). Keeps this module free of the registries.
pub trait KnownIds {
    /// A rule or cross-resource check id (`rules.<id>`).
    fn is_check(&self, id: &str) -> bool;
    /// A mutation id (`mutations.<id>`).
    fn is_mutation(&self, id: &str) -> bool;
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Policy {
    /// The embedded default policy. It configures no rule ids (a unit test checks it parses
    /// to the coded defaults), so it needs no id check.
    pub fn builtin() -> Policy {
        Policy::from_yaml(DEFAULT_POLICY_YAML, "<built-in>", &NoIds).unwrap_or_default()
    }

    /// Read and validate a policy file.
    pub fn load(path: &Path, known: &dyn KnownIds) -> Result<Policy, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::from_yaml(&text, &path.display().to_string(), known)
    }

    /// Parse and validate policy YAML. `origin` names the source in error messages.
    pub(crate) fn from_yaml(
        text: &str,
        origin: &str,
        known: &dyn KnownIds,
    ) -> Result<Policy, ConfigError> {
        let policy: Policy = if text.trim().is_empty() {
            Policy::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                origin: origin.to_owned(),
                message: e.to_string(),
            })?
        };
        policy
            .validate(known)
            .map_err(|message| ConfigError::Invalid {
                origin: origin.to_owned(),
                message,
            })?;
        Ok(policy)
    }

    /// Semantic checks serde cannot express.
    pub fn validate(&self, known: &dyn KnownIds) -> Result<(), String> {
        for id in self.rules.keys() {
            if !known.is_check(id) {
                return Err(format!(
                    "rules.{id}: unknown rule id (run `meshguard rules` for the catalogue; the cross-resource checks of check and audit count too)"
                ));
            }
        }
        for id in self.mutations.keys() {
            if !known.is_mutation(id) {
                return Err(format!("mutations.{id}: unknown mutation id"));
            }
        }
        if self.root_namespace.as_deref() == Some("") {
            return Err(
                "rootNamespace: must not be empty (leave it out to use the mesh's own)".into(),
            );
        }
        if let Some(td) = &self.trust_domain {
            crate::mesh::mesh_config::validate_trust_domain(td)
                .map_err(|e| format!("trustDomain: {e} (leave it out to use the mesh's own)"))?;
        }
        for (i, alias) in self.trust_domain_aliases.iter().flatten().enumerate() {
            crate::mesh::mesh_config::validate_trust_domain(alias)
                .map_err(|e| format!("trustDomainAliases[{i}]: {e}"))?;
        }
        if let Some(rev) = &self.injection_revision {
            if rev.is_empty() || rev.len() > 63 {
                return Err("injectionRevision: must be a label value of 1-63 characters".into());
            }
        }
        rollout::validate(self, known)?;
        exceptions::validate(self, known)?;
        Ok(())
    }

    /// The effective action of a rule or cross-resource check under this policy: its
    /// `rules.<id>.action` when set, else its default capped by the global mode.
    pub(crate) fn action_for(&self, id: &str, default_action: Action) -> Action {
        match self.rules.get(id).and_then(|c| c.action) {
            Some(a) => a,
            None => self.mode.cap(default_action),
        }
    }

    pub(crate) fn mutation_enabled(&self, id: &str) -> bool {
        self.mutations.get(id).is_none_or(|m| m.enabled)
    }

    /// The mesh values this policy sets itself, which win over the mesh's own.
    pub(crate) fn mesh_overrides(&self) -> crate::mesh::MeshOverrides {
        crate::mesh::MeshOverrides {
            root_namespace: self.root_namespace.clone(),
            trust_domain: self.trust_domain.clone(),
            trust_domain_aliases: self.trust_domain_aliases.clone(),
            enable_auto_mtls: self.enable_auto_mtls,
        }
    }
}

/// Knows no ids: any `rules.<id>` or `mutations.<id>` is refused.
struct NoIds;

impl KnownIds for NoIds {
    fn is_check(&self, _: &str) -> bool {
        false
    }
    fn is_mutation(&self, _: &str) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids these tests configure.
    struct TestIds;
    impl KnownIds for TestIds {
        fn is_check(&self, id: &str) -> bool {
            matches!(id, "pa-permissive-mtls" | "pa-disabled-mtls")
        }
        fn is_mutation(&self, _: &str) -> bool {
            false
        }
    }

    #[test]
    fn builtin_policy_parses() {
        let p =
            Policy::from_yaml(DEFAULT_POLICY_YAML, "default", &TestIds).expect("built-in policy");
        assert_eq!(p, Policy::default());
    }

    #[test]
    fn unknown_key_is_an_error_with_a_line() {
        let err = Policy::from_yaml("mode: enforce\nrootNamespce: foo\n", "p.yaml", &TestIds)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("rootNamespce"), "{text}");
        assert!(text.contains('2'), "line number expected: {text}");
    }

    #[test]
    fn unknown_rule_id_is_an_error() {
        let err = Policy::from_yaml("rules:\n  pa-nope:\n    action: warn\n", "p.yaml", &TestIds)
            .unwrap_err();
        assert!(
            err.to_string().contains("rules.pa-nope: unknown rule id"),
            "{err}"
        );
    }

    #[test]
    fn bad_mode_is_an_error() {
        let err = Policy::from_yaml("mode: enforcing\n", "p.yaml", &TestIds).unwrap_err();
        assert!(err.to_string().contains("enforcing"), "{err}");
    }

    #[test]
    fn per_rule_action_overrides_mode() {
        let p = Policy::from_yaml(
            "mode: audit\nrules:\n  pa-permissive-mtls:\n    action: deny\n",
            "p.yaml",
            &TestIds,
        )
        .expect("valid");
        assert_eq!(
            p.action_for("pa-permissive-mtls", Action::Deny),
            Action::Deny
        );
        assert_eq!(
            p.action_for("pa-disabled-mtls", Action::Deny),
            Action::Audit
        );
    }

    #[test]
    fn mode_caps_defaults() {
        assert_eq!(EnforcementMode::Warn.cap(Action::Deny), Action::Warn);
        assert_eq!(EnforcementMode::Warn.cap(Action::Warn), Action::Warn);
        assert_eq!(EnforcementMode::Audit.cap(Action::Deny), Action::Audit);
        assert_eq!(EnforcementMode::Enforce.cap(Action::Warn), Action::Warn);
    }

    #[test]
    fn mesh_values_are_overrides_only_when_set() {
        let unset = Policy::from_yaml("mode: enforce\n", "p.yaml", &TestIds).expect("valid");
        assert_eq!(
            unset.mesh_overrides(),
            crate::mesh::MeshOverrides::default()
        );
        let set = Policy::from_yaml(
            "rootNamespace: mesh-root\ntrustDomain: corp.example\ntrustDomainAliases: [old.example]\nenableAutoMtls: false\n",
            "p.yaml",
            &TestIds,
        )
        .expect("valid");
        let o = set.mesh_overrides();
        assert_eq!(o.root_namespace.as_deref(), Some("mesh-root"));
        assert_eq!(o.trust_domain.as_deref(), Some("corp.example"));
        assert_eq!(o.trust_domain_aliases, Some(vec!["old.example".to_owned()]));
        assert_eq!(o.enable_auto_mtls, Some(false));
        // An explicit empty alias list is set too: it removes the mesh's aliases.
        let none =
            Policy::from_yaml("trustDomainAliases: []\n", "p.yaml", &TestIds).expect("valid");
        assert_eq!(none.mesh_overrides().trust_domain_aliases, Some(Vec::new()));
        for bad in [
            "rootNamespace: \"\"\n",
            "trustDomain: \"\"\n",
            "trustDomain: Corp_Example\n",
            "trustDomainAliases: [\"\"]\n",
        ] {
            assert!(Policy::from_yaml(bad, "p.yaml", &TestIds).is_err(), "{bad}");
        }
    }

    #[test]
    fn selector_matching() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"team": "a"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["prod"]}]
        }))
        .expect("selector");
        let mut labels = BTreeMap::new();
        labels.insert("team".to_string(), "a".to_string());
        assert!(sel.matches(&labels));
        labels.insert("tier".to_string(), "prod".to_string());
        assert!(!sel.matches(&labels));
    }
}
