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
}

fn entries() -> Vec<Entry> {
    REGISTRY
        .iter()
        .map(|r| Entry {
            id: r.id,
            kinds: r.kinds.iter().map(|k| k.as_str()).collect(),
            default_action: r.default_action.as_str(),
            summary: r.summary,
            example_fix: r.example_fix,
        })
        .collect()
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
    for e in entries() {
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
