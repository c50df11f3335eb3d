//! Excepted findings in `check` and `audit` output (`config::exceptions`): each format shows
//! them apart from the findings, with the exception that covers them, its end and its reason,
//! and never counts them as findings (they do not fail a run).
//!
//! * text: an "Excepted" section, one line per finding, and the count in the summary line;
//! * JSON: `excepted` (each finding with `exception`, `expires`, `owner`, `ticket`, `reason`)
//!   and `summary.excepted`;
//! * JUnit: a `<skipped>` test case per excepted finding;
//! * SARIF: the result with a `suppressions` entry (kind `external`, the reason as its
//!   justification), which code-scanning tools show as suppressed.

use crate::config::exceptions::ObjectExcepted;
use crate::finding::Subject;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

fn location(s: &Subject) -> String {
    match (&s.file, s.line) {
        (Some(f), Some(l)) => format!("{f}:{l}: "),
        (Some(f), None) => format!("{f}: "),
        _ => String::new(),
    }
}

/// The text section (nothing when no finding is excepted).
pub(super) fn text(items: &[ObjectExcepted], s: &mut String) {
    if items.is_empty() {
        return;
    }
    s.push_str("\nExcepted (reported, not enforced):\n");
    let mut last: Option<&Subject> = None;
    for i in items {
        if last != Some(&i.subject) {
            let _ = writeln!(s, "{}{}", location(&i.subject), i.subject.label());
            last = Some(&i.subject);
        }
        let _ = writeln!(
            s,
            "  {:<5} {} [excepted by {}, {}]",
            i.finding.action.as_str(),
            i.finding,
            i.exception.id(),
            i.exception.describe()
        );
    }
}

/// `, N excepted` for the summary line (nothing when none).
pub(super) fn summary(items: &[ObjectExcepted]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(", {} excepted", items.len())
    }
}

pub(super) fn json(items: &[ObjectExcepted]) -> Value {
    json!(items
        .iter()
        .map(|i| {
            let e = &i.exception;
            let mut v = super::subject_finding_json(&i.subject, &i.finding);
            v["exception"] = json!(e.id());
            v["expires"] = json!(e.expires.map(|t| t.to_string()));
            v["owner"] = json!(e.owner);
            v["ticket"] = json!(e.ticket);
            v["reason"] = json!(e.reason);
            v
        })
        .collect::<Vec<_>>())
}

pub(super) fn junit(items: &[ObjectExcepted], s: &mut String) {
    use super::xml;
    for i in items {
        let _ = writeln!(
            s,
            "    <testcase classname=\"{}\" name=\"{}\">\n      <skipped message=\"{}\"/>\n    </testcase>",
            xml(&i.subject.kind),
            xml(&format!("{}{} [{}]", location(&i.subject), i.subject.label(), i.finding.rule)),
            xml(&format!(
                "excepted by {} ({}), {}",
                i.exception.id(),
                i.finding.action,
                i.exception.describe()
            ))
        );
    }
}

pub(super) fn sarif(items: &[ObjectExcepted], index: &BTreeMap<&str, usize>) -> Vec<Value> {
    items
        .iter()
        .map(|i| {
            let logical = json!({
                "name": i.subject.name,
                "fullyQualifiedName": format!("{}/{}/{}", i.subject.namespace, i.subject.kind, i.subject.name),
                "kind": "object",
            });
            let mut loc = json!({ "logicalLocations": [logical] });
            if let Some(f) = &i.subject.file {
                let mut phys = json!({"artifactLocation": {"uri": super::uri(f)}});
                if let Some(l) = i.subject.line {
                    phys["region"] = json!({"startLine": l});
                }
                loc["physicalLocation"] = phys;
            }
            let v = &i.finding.violation;
            let mut r = json!({
                "ruleId": i.finding.rule,
                "level": super::level(i.finding.action),
                "message": {"text": format!("{}: {}. Fix: {}", v.path, v.message, v.fix)},
                "locations": [loc],
                "suppressions": [{
                    "kind": "external",
                    "status": "accepted",
                    "justification": format!("{}: {}", i.exception.id(), i.exception.describe()),
                }],
                "properties": {
                    "path": v.path,
                    "fix": v.fix,
                    "action": i.finding.action,
                    "exception": i.exception.id(),
                },
            });
            if let Some(ix) = index.get(i.finding.rule) {
                r["ruleIndex"] = json!(ix);
            }
            r
        })
        .collect()
}
