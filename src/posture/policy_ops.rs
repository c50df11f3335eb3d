//! The page's "Rollout and exceptions" section (plain HTML, no script needed): where each rule
//! denies, warns, only audits or is off across the namespaces of the input (per-namespace
//! overrides, `config::rollout`), every exception with its scope, owner, end and status
//! (`config::exceptions`), and the findings exceptions cover: reported, not enforced.

use super::page::escape;
use crate::catalogue;
use crate::config::exceptions::{Exception, Source, Status};
use crate::engine::Engine;
use crate::finding::Action;
use crate::inventory::Inventory;
use crate::report::Report;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Names listed in a cell before "and N more".
const NAMES_SHOWN: usize = 8;
/// Excepted findings listed (the count says how many there are).
const EXCEPTED_SHOWN: usize = 500;

fn names(list: &[&str], total: usize) -> String {
    if list.is_empty() {
        return String::new();
    }
    if list.len() == total && total > 1 {
        return "every namespace".to_owned();
    }
    let mut s = list
        .iter()
        .take(NAMES_SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > NAMES_SHOWN {
        let _ = write!(s, " and {} more", list.len() - NAMES_SHOWN);
    }
    escape(&s)
}

fn scope(e: &Exception) -> String {
    let mut parts = Vec::new();
    if !e.namespaces.is_empty() {
        parts.push(format!("namespaces {}", e.namespaces.join(", ")));
    }
    if !e.kinds.is_empty() {
        parts.push(format!("kinds {}", e.kinds.join(", ")));
    }
    if !e.names.is_empty() {
        parts.push(format!("names {}", e.names.join(", ")));
    }
    if let Some(s) = &e.object_selector {
        parts.push(format!(
            "objects {}",
            crate::config::rollout::describe_selector(s)
        ));
    }
    if let Some(s) = &e.namespace_selector {
        parts.push(format!(
            "namespaces {}",
            crate::config::rollout::describe_selector(s)
        ));
    }
    parts.join("; ")
}

/// The section's HTML.
pub fn section(engine: &Engine, inventory: &Inventory, report: &Report) -> String {
    let policy = engine.policy();
    let exempt = engine.exempt_namespaces();
    let namespaces: BTreeSet<&str> = inventory
        .objects()
        .iter()
        .map(|o| o.namespace())
        .filter(|n| !n.is_empty() && !exempt.iter().any(|x| x == n))
        .collect();
    let labels = |ns: &str| match inventory.namespace(ns) {
        Some(o) => Some(o.labels().clone()),
        None if inventory.is_complete() => Some(Default::default()),
        None => None,
    };
    let ns_labels: Vec<(&str, Option<BTreeMap<String, String>>)> =
        namespaces.iter().map(|n| (*n, labels(n))).collect();
    let mut h = String::from(
        r#"<section id="policy-ops-section"><h2>Rollout and exceptions</h2>
<p>Where each rule denies, warns, only audits or does not run, in the namespaces of the input, under the policy's per-namespace overrides (most specific first: the rule's own overrides by name, then by namespace label, its action, the overrides for every rule by name, then by label, the global mode). Exempt namespaces are left out"#,
    );
    if !exempt.is_empty() {
        let _ = write!(h, " ({})", escape(&exempt.join(", ")));
    }
    h.push_str(".</p>\n<div class=\"scroll\"><table class=\"findings\" id=\"rollout\"><thead><tr><th scope=\"col\">Rule</th><th scope=\"col\">Default</th><th scope=\"col\">Deny</th><th scope=\"col\">Warn</th><th scope=\"col\">Audit only</th><th scope=\"col\">Off</th><th scope=\"col\">Under this policy</th></tr></thead><tbody>\n");
    let total = ns_labels.len();
    for c in catalogue::checks() {
        let mut by: BTreeMap<Action, Vec<&str>> = BTreeMap::new();
        for (ns, l) in &ns_labels {
            let a = policy.action_in(c.id, c.default_action, ns, l.as_ref());
            by.entry(a).or_default().push(ns);
        }
        let cell = |a: Action| names(by.get(&a).map_or(&[][..], Vec::as_slice), total);
        let _ = writeln!(
            h,
            r#"<tr data-rule="{id}"><td><code>{id}</code></td><td>{}</td><td class="a-deny">{}</td><td class="a-warn">{}</td><td class="a-audit">{}</td><td>{}</td><td>{}</td></tr>"#,
            c.default_action,
            cell(Action::Deny),
            cell(Action::Warn),
            cell(Action::Audit),
            cell(Action::Off),
            escape(&catalogue::acts_under(policy, c.id, c.default_action)),
            id = escape(c.id),
        );
    }
    h.push_str("</tbody></table></div>\n");

    // Exceptions.
    let now = engine.now();
    let mut covered: BTreeMap<String, usize> = BTreeMap::new();
    for e in &report.excepted {
        *covered.entry(e.exception.id()).or_default() += 1;
    }
    let items = engine.exceptions().items();
    let _ = write!(
        h,
        "<h3>Exceptions</h3>\n<p>{} exception{} (the policy file's and PolicyException resources), judged at {}. An expired or refused exception does not apply; the findings it covered are enforced again.</p>\n",
        items.len(),
        if items.len() == 1 { "" } else { "s" },
        escape(&now.to_string())
    );
    if !items.is_empty() {
        h.push_str("<div class=\"scroll\"><table class=\"findings\" id=\"exceptions\"><thead><tr><th scope=\"col\">Exception</th><th scope=\"col\">Rules</th><th scope=\"col\">Scope</th><th scope=\"col\">Owner / ticket</th><th scope=\"col\">Reason</th><th scope=\"col\">Expires</th><th scope=\"col\">Status</th><th scope=\"col\">Findings covered</th></tr></thead><tbody>\n");
        for e in items {
            let status = match e.status(policy, now) {
                Status::Refused(why) => format!("refused: {why}"),
                s => s.label().to_owned(),
            };
            let source = match &e.source {
                Source::Policy { .. } => "policy file",
                Source::Resource { .. } => "PolicyException",
            };
            let who = [e.owner.as_deref(), e.ticket.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" / ");
            let _ = writeln!(
                h,
                r#"<tr data-exception="{id}" data-status="{}"><td><code>{id}</code> <span class="muted">({source})</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                e.status(policy, now).label(),
                escape(&e.rules.join(", ")),
                escape(&scope(e)),
                escape(&who),
                escape(&e.reason),
                escape(&e.expires.map_or_else(String::new, |t| t.to_string())),
                escape(&status),
                covered.get(&e.id()).copied().unwrap_or(0),
                id = escape(&e.id()),
            );
        }
        h.push_str("</tbody></table></div>\n");
    }

    // Excepted findings.
    let _ = write!(
        h,
        "<h3>Excepted findings</h3>\n<p id=\"excepted-count\" data-count=\"{n}\">{n} finding{} covered by an exception: reported, not enforced.</p>\n",
        if report.excepted.len() == 1 { "" } else { "s" },
        n = report.excepted.len()
    );
    if !report.excepted.is_empty() {
        h.push_str("<div class=\"scroll\"><table class=\"findings\" id=\"excepted\"><thead><tr><th scope=\"col\">Would be</th><th scope=\"col\">Rule</th><th scope=\"col\">Object</th><th scope=\"col\">Field</th><th scope=\"col\">What is wrong</th><th scope=\"col\">Excepted by</th></tr></thead><tbody>\n");
        for e in report.excepted.iter().take(EXCEPTED_SHOWN) {
            let _ = writeln!(
                h,
                r#"<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code> {}</td></tr>"#,
                e.finding.action,
                escape(e.finding.rule),
                escape(&e.subject.label()),
                escape(&e.finding.violation.path),
                escape(&e.finding.violation.message),
                escape(&e.exception.id()),
                escape(&e.exception.describe()),
            );
        }
        h.push_str("</tbody></table></div>\n");
        if report.excepted.len() > EXCEPTED_SHOWN {
            let _ = writeln!(
                h,
                "<p class=\"muted\">The first {EXCEPTED_SHOWN} are listed; <code>meshguard check --format json</code> lists all.</p>"
            );
        }
    }
    h.push_str("</section>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::exceptions::{parse_expires, FixedClock};
    use crate::cross::testing::{deployment, namespace, object};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn where_rules_act_and_what_is_excepted() {
        let policy = crate::catalogue::policy_from_yaml(
            "platform: {labels: [env]}\nrules:\n  wl-default-service-account:\n    action: warn\n    overrides:\n      - namespaceSelector: {matchLabels: {env: prod}}\n        action: deny\nexceptions:\n  - name: legacy\n    rules: [wl-default-service-account]\n    names: [old]\n    reason: moving <soon>\n    owner: team-a\n    expires: 2026-06-30\n",
            "t",
        )
        .expect("policy");
        let inventory = Inventory::partial(
            vec![
                namespace("prod", json!({"istio-injection": "enabled", "env": "prod"})),
                namespace("dev", json!({"istio-injection": "enabled", "env": "dev"})),
                deployment("prod", "old", json!({"app": "old"}), &[80]),
            ]
            .into_iter()
            .map(object)
            .collect(),
        );
        let engine = Engine::new(policy, Default::default(), None).with_clock(Arc::new(
            FixedClock(parse_expires("2026-06-01").expect("t")),
        ));
        let analysis = crate::analysis::analyze(&engine, &inventory);
        let report = Report {
            excepted: analysis.excepted,
            findings: analysis.findings,
            ..Report::default()
        };
        let html = section(&engine, &inventory, &report);
        let row = html
            .lines()
            .find(|l| l.contains("data-rule=\"wl-default-service-account\""))
            .expect("row");
        assert!(
            row.contains(r#"<td class="a-deny">prod</td><td class="a-warn">dev</td>"#),
            "{row}"
        );
        assert!(
            html.contains(r#"<td class="a-deny">every namespace</td>"#),
            "uniform rules"
        );
        assert!(
            html.contains(r#"data-exception="policy:legacy" data-status="active""#),
            "{html}"
        );
        assert!(html.contains("moving &lt;soon&gt;"), "escaped");
        assert!(
            html.contains(r#"data-count="1""#),
            "one excepted finding: {html}"
        );
    }
}
