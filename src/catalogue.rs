//! The catalogue: every check meshguard knows (the admission rules of [`crate::rules`] and the
//! cross-resource checks of [`crate::cross`]) and every mutation. It is what validates the ids a
//! policy configures ([`Catalogue`] implements [`KnownIds`]), what `meshguard rules` prints as a
//! table, JSON or Markdown, and what SARIF output describes. docs/rules.md's rule section is this
//! command's Markdown output (a test keeps them in sync).

use crate::config::{ConfigError, KnownIds, Policy};
use crate::finding::Action;
use crate::mutation;
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::path::Path;

/// Every registry, as the policy's id check sees it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Catalogue;

impl KnownIds for Catalogue {
    fn is_check(&self, id: &str) -> bool {
        crate::rules::find(id).is_some() || crate::cross::find(id).is_some()
    }
    fn is_mutation(&self, id: &str) -> bool {
        mutation::find(id).is_some()
    }
}

/// Parse and validate policy YAML against the catalogue. What the policy weakens without saying
/// so ([`policy_warnings`]) is logged at warn.
pub fn policy_from_yaml(text: &str, origin: &str) -> Result<Policy, ConfigError> {
    let policy = Policy::from_yaml(text, origin, &Catalogue)?;
    log_warnings(&policy, origin);
    Ok(policy)
}

/// Read and validate a policy file against the catalogue, logging [`policy_warnings`] at warn.
pub(crate) fn load_policy(path: &Path) -> Result<Policy, ConfigError> {
    let policy = Policy::load(path, &Catalogue)?;
    log_warnings(&policy, &path.display().to_string());
    Ok(policy)
}

fn log_warnings(policy: &Policy, origin: &str) {
    for w in policy_warnings(policy) {
        tracing::warn!(policy = origin, "{w}");
    }
}

/// What a valid policy weakens without saying so. An `objectSelector` exemption of a check
/// whose action is `deny` is matched by the labels of the object being judged, which whoever
/// writes that object chooses: anyone who may create a Deployment or a PeerAuthentication can
/// label it to skip the check. Exemptions by namespace (`namespaces`, or a `namespaceSelector`
/// over labels only cluster administrators may set) do not have that hole. `serve` logs these at
/// warn when it loads the policy; `check` and `audit` print them above their findings.
pub(crate) fn policy_warnings(policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    for (id, cfg) in &policy.rules {
        let default = crate::rules::find(id)
            .map(|r| r.default_action)
            .or_else(|| crate::cross::find(id).map(|c| c.default_action));
        let Some(default) = default else { continue };
        // Deny-level anywhere: by default, or in the namespaces an override enforces it in.
        if !policy
            .acts_where(id, default)
            .iter()
            .any(|(_, a)| *a == Action::Deny)
        {
            continue;
        }
        for (i, ex) in cfg.exemptions.iter().enumerate() {
            let Some(sel) = &ex.object_selector else {
                continue;
            };
            let labels: Vec<String> = sel
                .match_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .chain(
                    sel.match_expressions
                        .iter()
                        .map(|e| format!("{} {:?} {:?}", e.key, e.operator, e.values)),
                )
                .collect();
            let within = if ex.namespaces.is_empty() && ex.namespace_selector.is_none() {
                "in any namespace".to_owned()
            } else {
                "in the namespaces it names".to_owned()
            };
            out.push(format!(
                "rules.{id}.exemptions[{i}].objectSelector ({}) exempts a deny-level rule by the object's own labels: whoever may write such an object {within} can add them and skip {id}; exempt by namespace instead (namespaces, or a namespaceSelector on labels only cluster administrators may set)",
                labels.join(", ")
            ));
        }
    }
    out
}

/// Where a check runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Scope {
    /// One object at a time: the webhook, `check` and `audit`.
    #[serde(rename = "admission")]
    Admission,
    /// Over the whole inventory: `check`, `audit` and the periodic audit.
    #[serde(rename = "cross-resource")]
    CrossResource,
}

/// One check of the catalogue, as `meshguard rules` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct CheckInfo {
    pub id: &'static str,
    pub kinds: Vec<&'static str>,
    pub default_action: Action,
    pub summary: &'static str,
    pub(crate) example_fix: &'static str,
    /// `admission` (webhook, check, audit) or `cross-resource` (check and audit only).
    pub scope: Scope,
}

/// Label of the cross-resource checks in the kind column.
const CROSS: &str = "cross-resource";

/// Every check: the admission rules in registry order, then the cross-resource checks.
pub fn checks() -> Vec<CheckInfo> {
    let rules = crate::rules::REGISTRY.iter().map(|r| CheckInfo {
        id: r.id,
        kinds: r.kinds.iter().map(|k| k.as_str()).collect(),
        default_action: r.default_action,
        summary: r.summary,
        example_fix: r.example_fix,
        scope: Scope::Admission,
    });
    let cross = crate::cross::REGISTRY.iter().map(|c| CheckInfo {
        id: c.id,
        kinds: vec![CROSS],
        default_action: c.default_action,
        summary: c.summary,
        example_fix: c.example_fix,
        scope: Scope::CrossResource,
    });
    rules.chain(cross).collect()
}

/// Output format of `meshguard rules`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RulesFormat {
    Table,
    Json,
    Markdown,
}

/// Flags of `meshguard rules`.
#[derive(Clone, Debug, Args)]
pub struct RulesArgs {
    #[arg(long, value_enum, default_value = "table")]
    pub format: RulesFormat,
    /// A policy file: show where each rule denies, warns, only audits or is off under it (its
    /// per-namespace overrides and exceptions) instead of the defaults alone; its errors, and
    /// what it weakens without saying so (`objectSelector` exemptions of deny-level rules), are
    /// printed on stderr.
    #[arg(long, env = "MESHGUARD_CONFIG")]
    pub config: Option<std::path::PathBuf>,
}

/// Where a check acts under a policy, for people: `deny`, or `deny in namespaceSelector
/// env=prod; warn elsewhere`, then the exceptions that name it.
pub(crate) fn acts_under(policy: &Policy, id: &str, default: Action) -> String {
    let places = policy.acts_where(id, default);
    let mut s = match places.as_slice() {
        [(_, only)] => only.as_str().to_owned(),
        _ => places
            .iter()
            .map(|(scope, a)| match scope.as_str() {
                "elsewhere" => format!("{a} elsewhere"),
                _ => format!("{a} in {scope}"),
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    for e in policy
        .exceptions
        .iter()
        .filter(|e| e.rules.iter().any(|r| r == id))
    {
        s.push_str(&format!(
            "; excepted by policy:{} until {}",
            e.name, e.expires
        ));
    }
    s
}

fn entries() -> Vec<CheckInfo> {
    checks()
}

/// Escape text for a Markdown table cell (pipes, and angle brackets that renderers take for HTML).
fn md(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The kinds of a rule, with the eight workload kinds written as "workloads".
pub(crate) fn kinds_label(kinds: &[&str]) -> String {
    let workloads: Vec<&str> = crate::resource::Kind::WORKLOADS
        .iter()
        .map(|k| k.as_str())
        .collect();
    if !workloads.iter().all(|w| kinds.contains(w)) {
        return kinds.join(", ");
    }
    let mut label: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| !workloads.contains(k))
        .collect();
    label.push("workloads");
    label.join(", ")
}

/// The Markdown catalogue embedded in docs/rules.md between the rule markers.
pub fn markdown() -> String {
    let mut s = String::from(
        "| id | kind | default | what it catches | example fix |\n|---|---|---|---|---|\n",
    );
    for e in entries()
        .into_iter()
        .filter(|e| e.scope == Scope::Admission)
    {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            e.id,
            kinds_label(&e.kinds),
            e.default_action,
            md(e.summary),
            md(e.example_fix)
        ));
    }
    s.push_str("\nMutations (on `/mutate`):\n\n| id | kind | what it does |\n|---|---|---|\n");
    for m in mutation::REGISTRY {
        let kinds: Vec<&str> = m.kinds.iter().map(|k| k.as_str()).collect();
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            m.id,
            kinds_label(&kinds),
            m.summary
        ));
    }
    s.push_str("\nCross-resource checks (`check`, `audit` and the periodic audit; they need the whole inventory, so the webhook does not run them):\n\n| id | default | what it catches | example fix |\n|---|---|---|---|\n");
    for e in entries()
        .into_iter()
        .filter(|e| e.scope == Scope::CrossResource)
    {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            e.id,
            e.default_action,
            md(e.summary),
            md(e.example_fix)
        ));
    }
    s
}

/// `meshguard rules --config POLICY`: the catalogue with where each check acts under the policy.
pub(crate) fn render_under(format: RulesFormat, policy: &Policy) -> String {
    let rows = entries();
    match format {
        RulesFormat::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|e| {
                    let mut v = serde_json::to_value(e).unwrap_or_default();
                    v["acts"] = serde_json::json!(policy
                        .acts_where(e.id, e.default_action)
                        .into_iter()
                        .map(|(scope, action)| serde_json::json!({"where": scope, "action": action}))
                        .collect::<Vec<_>>());
                    v["exceptions"] = serde_json::json!(policy
                        .exceptions
                        .iter()
                        .filter(|x| x.rules.iter().any(|r| r == e.id))
                        .map(|x| serde_json::json!({"name": x.name, "expires": x.expires, "reason": x.reason}))
                        .collect::<Vec<_>>());
                    v
                })
                .collect();
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        RulesFormat::Markdown => {
            let mut s = String::from("| id | default | under this policy |\n|---|---|---|\n");
            for e in &rows {
                s.push_str(&format!(
                    "| `{}` | {} | {} |\n",
                    e.id,
                    e.default_action,
                    md(&acts_under(policy, e.id, e.default_action))
                ));
            }
            s
        }
        RulesFormat::Table => {
            let w_id = rows.iter().map(|e| e.id.len()).max().unwrap_or(2).max(2);
            let mut s = format!("{:<w_id$}  {:<7}  UNDER THIS POLICY\n", "ID", "DEFAULT");
            for e in &rows {
                s.push_str(&format!(
                    "{:<w_id$}  {:<7}  {}\n",
                    e.id,
                    e.default_action,
                    acts_under(policy, e.id, e.default_action)
                ));
            }
            s
        }
    }
}

pub fn render(format: RulesFormat) -> String {
    match format {
        RulesFormat::Json => serde_json::to_string_pretty(&entries()).unwrap_or_default() + "\n",
        RulesFormat::Markdown => markdown(),
        RulesFormat::Table => {
            let rows = entries();
            let w_id = rows.iter().map(|e| e.id.len()).max().unwrap_or(2).max(2);
            let w_kind = rows
                .iter()
                .map(|e| kinds_label(&e.kinds).len())
                .max()
                .unwrap_or(4)
                .max(4);
            let mut s = format!(
                "{:<w_id$}  {:<w_kind$}  {:<7}  SUMMARY\n",
                "ID", "KIND", "DEFAULT"
            );
            for e in rows {
                s.push_str(&format!(
                    "{:<w_id$}  {:<w_kind$}  {:<7}  {}\n",
                    e.id,
                    kinds_label(&e.kinds),
                    e.default_action,
                    e.summary
                ));
            }
            s
        }
    }
}

/// `meshguard rules [--config FILE]`: the catalogue (under the policy, when one is given), and
/// the policy's warnings on stderr (exit 2 when the policy does not load).
pub fn run(args: &RulesArgs) -> crate::exit::Exit {
    match &args.config {
        None => print!("{}", render(args.format)),
        Some(path) => match Policy::load(path, &Catalogue) {
            Ok(policy) => {
                print!("{}", render_under(args.format, &policy));
                for w in policy_warnings(&policy) {
                    eprintln!("warning: {w}");
                }
            }
            Err(e) => {
                eprintln!("meshguard rules: {e}");
                return crate::exit::Exit::Error;
            }
        },
    }
    crate::exit::Exit::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_selector_exemptions_of_deny_rules_are_warned_about() {
        let policy = policy_from_yaml(
            "rules:\n  pa-permissive-mtls:\n    exemptions:\n      - namespaces: [legacy]\n      - objectSelector: {matchLabels: {mesh-migration: in-progress}}\n  wl-host-network:\n    exemptions: [{objectSelector: {matchLabels: {agent: \"true\"}}}]\n  mtls-not-strict:\n    exemptions: [{namespaces: [a], objectSelector: {matchExpressions: [{key: tier, operator: In, values: [edge]}]}}]\n  ap-wildcard-source:\n    action: deny\n    exemptions: [{objectSelector: {matchLabels: {x: y}}}]\n  pa-disabled-mtls:\n    action: warn\n    exemptions: [{objectSelector: {matchLabels: {x: y}}}]\n",
            "t",
        )
        .expect("policy");
        let w = policy_warnings(&policy);
        // Deny-level (by default, by action, cross checks too); not the warn-level ones.
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(w[0].starts_with("rules.ap-wildcard-source.exemptions[0].objectSelector (x=y)"));
        assert!(w[1].starts_with(
            "rules.mtls-not-strict.exemptions[0].objectSelector (tier In [\"edge\"])"
        ));
        assert!(w[1].contains("in the namespaces it names"));
        assert!(w[2].starts_with(
            "rules.pa-permissive-mtls.exemptions[1].objectSelector (mesh-migration=in-progress)"
        ));
        assert!(w[2].contains("whoever may write such an object in any namespace can add them and skip pa-permissive-mtls"));
        // Exemptions by namespace raise nothing; nor does the built-in policy.
        let by_ns = policy_from_yaml(
            "rules:\n  pa-permissive-mtls:\n    exemptions: [{namespaces: [legacy]}, {namespaceSelector: {matchLabels: {team: platform}}}]\n",
            "t",
        )
        .expect("policy");
        assert!(policy_warnings(&by_ns).is_empty());
        assert!(policy_warnings(&Policy::builtin()).is_empty());
        // The global mode caps the rule: under mode: warn nothing is deny-level.
        let warn_mode = policy_from_yaml(
            "mode: warn\nrules:\n  pa-permissive-mtls:\n    exemptions: [{objectSelector: {matchLabels: {a: b}}}]\n",
            "t",
        )
        .expect("policy");
        assert!(policy_warnings(&warn_mode).is_empty());
        // Deny-level in the namespaces an override enforces it in is deny-level.
        let overridden = policy_from_yaml(
            "platform: {labels: [env]}\nrules:\n  pa-permissive-mtls:\n    action: warn\n    overrides:\n      - namespaceSelector: {matchLabels: {env: prod}}\n        action: deny\n    exemptions: [{objectSelector: {matchLabels: {a: b}}}]\n",
            "t",
        )
        .expect("policy");
        assert_eq!(policy_warnings(&overridden).len(), 1);
    }

    #[test]
    fn rules_under_a_policy_say_where_each_acts() {
        let policy = policy_from_yaml(
            "platform: {labels: [env]}\nrules:\n  pa-permissive-mtls:\n    action: warn\n    overrides:\n      - namespaceSelector: {matchLabels: {env: prod}}\n        action: deny\n      - namespaces: [legacy]\n        action: audit\nexceptions:\n  - name: old\n    rules: [pa-permissive-mtls]\n    namespaces: [legacy]\n    reason: r\n    owner: o\n    expires: 2026-06-30\n",
            "t",
        )
        .expect("policy");
        assert_eq!(
            acts_under(&policy, "pa-permissive-mtls", Action::Deny),
            "audit in namespaces legacy; deny in namespaceSelector env=prod; warn elsewhere; excepted by policy:old until 2026-06-30"
        );
        assert_eq!(
            acts_under(&policy, "pa-disabled-mtls", Action::Deny),
            "deny"
        );
        let table = render_under(RulesFormat::Table, &policy);
        assert!(table
            .lines()
            .any(|l| l.starts_with("pa-disabled-mtls") && l.ends_with("deny")));
        let json: serde_json::Value =
            serde_json::from_str(&render_under(RulesFormat::Json, &policy)).expect("json");
        let pa = json
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == "pa-permissive-mtls"))
            .expect("row");
        assert_eq!(
            pa["acts"][1],
            serde_json::json!({"where": "namespaceSelector env=prod", "action": "deny"})
        );
        assert_eq!(pa["exceptions"][0]["name"], "old");
    }

    #[test]
    fn every_listed_id_is_configurable_and_cross_checks_are_marked() {
        let json: serde_json::Value =
            serde_json::from_str(&render(RulesFormat::Json)).expect("json");
        let rows = json.as_array().expect("array");
        assert_eq!(
            rows.len(),
            crate::rules::REGISTRY.len() + crate::cross::REGISTRY.len()
        );
        for row in rows {
            let id = row["id"].as_str().expect("id");
            // What `meshguard rules` lists, the policy accepts under `rules:`.
            let yaml = format!("rules:\n  {id}:\n    action: warn\n");
            policy_from_yaml(&yaml, "t").unwrap_or_else(|e| panic!("{id}: {e}"));
            let cross = crate::cross::find(id).is_some();
            assert_eq!(row["scope"] == "cross-resource", cross, "{id}");
        }
        let table = render(RulesFormat::Table);
        assert!(table.contains("mtls-not-strict") && table.contains(CROSS));
        // A policy naming an unknown id is refused, whatever registry it would belong to.
        let err = policy_from_yaml("rules:\n  pa-nope:\n    action: warn\n", "t").unwrap_err();
        assert!(
            err.to_string().contains("rules.pa-nope: unknown rule id"),
            "{err}"
        );
        // The Markdown keeps cross checks out of the admission table.
        let md = markdown();
        let (admission, rest) = md.split_once("\nMutations").expect("sections");
        assert!(!admission.contains("`mtls-not-strict`"));
        assert!(rest.contains("| `mtls-not-strict` | deny |"));
        // Every cross check has an example fix.
        assert!(
            checks().iter().all(|c| !c.example_fix.is_empty()),
            "example fixes"
        );
    }
}
