//! `meshguard rules`: the catalogue of rules and mutations, as a table, JSON or Markdown.
//! README.md's rule section is this command's Markdown output (a test keeps them in sync).

use crate::cli::RulesFormat;
use crate::mutation;
use crate::rules::REGISTRY;
use serde::Serialize;

#[derive(Serialize)]
struct Entry {
    id: &'static str,
    kinds: Vec<&'static str>,
    default_action: &'static str,
    summary: &'static str,
    example_fix: &'static str,
    /// `admission` (webhook, check, audit) or `cross-resource` (check and audit only).
    scope: &'static str,
}

/// Label of the cross-resource checks in the kind column.
const CROSS: &str = "cross-resource";

fn entries() -> Vec<Entry> {
    let rules = REGISTRY.iter().map(|r| Entry {
        id: r.id,
        kinds: r.kinds.iter().map(|k| k.as_str()).collect(),
        default_action: r.default_action.as_str(),
        summary: r.summary,
        example_fix: r.example_fix,
        scope: "admission",
    });
    let cross = crate::cross::CATALOGUE.iter().map(|c| Entry {
        id: c.id,
        kinds: vec![CROSS],
        default_action: c.default_action.as_str(),
        summary: c.summary,
        example_fix: "",
        scope: CROSS,
    });
    rules.chain(cross).collect()
}

/// Escape text for a Markdown table cell (pipes, and angle brackets that renderers take for HTML).
fn md(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn kinds_label(kinds: &[&str]) -> String {
    if kinds.len() >= 8 {
        "workloads".to_owned()
    } else {
        kinds.join(", ")
    }
}

/// The Markdown catalogue embedded in README.md between the rule markers.
pub fn markdown() -> String {
    let mut s = String::from(
        "| id | kind | default | what it catches | example fix |\n|---|---|---|---|---|\n",
    );
    for e in entries().into_iter().filter(|e| e.scope != CROSS) {
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
    s.push_str("\nCross-resource checks (`check`, `audit` and the periodic audit; they need the whole inventory, so the webhook does not run them):\n\n| id | default | what it catches |\n|---|---|---|\n");
    for e in entries().into_iter().filter(|e| e.scope == CROSS) {
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            e.id,
            e.default_action,
            md(e.summary)
        ));
    }
    s
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

pub fn print(format: RulesFormat) -> i32 {
    print!("{}", render(format));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_id_is_configurable_and_cross_checks_are_marked() {
        let json: serde_json::Value =
            serde_json::from_str(&render(RulesFormat::Json)).expect("json");
        let rows = json.as_array().expect("array");
        assert_eq!(rows.len(), REGISTRY.len() + crate::cross::CATALOGUE.len());
        for row in rows {
            let id = row["id"].as_str().expect("id");
            // What `meshguard rules` lists, the policy accepts under `rules:`.
            let yaml = format!("rules:\n  {id}:\n    action: warn\n");
            crate::config::Policy::from_yaml(&yaml, "t").unwrap_or_else(|e| panic!("{id}: {e}"));
            let cross = crate::cross::find(id).is_some();
            assert_eq!(row["scope"] == CROSS, cross, "{id}");
        }
        let table = render(RulesFormat::Table);
        assert!(table.contains("mtls-not-strict") && table.contains(CROSS));
        // The Markdown keeps cross checks out of the admission table.
        let md = markdown();
        let (admission, rest) = md.split_once("\nMutations").expect("sections");
        assert!(!admission.contains("`mtls-not-strict`"));
        assert!(rest.contains("| `mtls-not-strict` | deny |"));
    }
}
