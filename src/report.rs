//! Output of `check` and `audit`: text, JSON, JUnit XML and SARIF 2.1.0.
//! Every format is deterministic (findings sorted, maps ordered).

use crate::config::exceptions::ObjectExcepted;
use crate::finding::{Action, Finding, ObjectFinding, Subject};
use crate::manifest::LoadError;
use crate::mtls;
use clap::ValueEnum;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

mod excepted;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Junit,
    Sarif,
}

/// Id under which unreadable documents appear in JUnit and SARIF.
pub(crate) const PARSE_ERROR_ID: &str = "manifest-parse-error";

/// Everything a run produced.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// `check` or `audit`.
    pub command: &'static str,
    pub findings: Vec<ObjectFinding>,
    pub errors: Vec<LoadError>,
    /// Objects evaluated.
    pub objects: usize,
    /// Objects of kinds meshguard does not check, by `apiVersion/kind`.
    pub skipped: BTreeMap<String, usize>,
    /// Remarks for the reader (absent CRDs, partial input).
    pub notes: Vec<String>,
    pub mtls: Vec<mtls::Row>,
    /// Print the effective-mTLS table.
    pub(crate) show_mtls: bool,
    /// The mesh context the verdicts were made with (effective values and their origins).
    pub mesh: Option<std::sync::Arc<crate::mesh::MeshContext>>,
    /// What the policy in force weakens without saying so (exemptions a tenant can grant
    /// themselves), from [`crate::catalogue::policy_warnings`].
    pub(crate) policy_warnings: Vec<String>,
    /// Findings an exception covers: shown apart (`report_excepted`), never counted as findings.
    pub excepted: Vec<ObjectExcepted>,
}

impl Report {
    pub fn count(&self, action: Action) -> usize {
        self.findings
            .iter()
            .filter(|i| i.finding.action == action)
            .count()
    }

    /// Ok when clean (or only warn/audit findings), Findings with deny-level findings, Error
    /// with unreadable input.
    pub fn exit(&self) -> crate::exit::Exit {
        if !self.errors.is_empty() {
            crate::exit::Exit::Error
        } else {
            crate::exit::Exit::failed_if(self.count(Action::Deny) > 0)
        }
    }

    pub fn by_rule(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for i in &self.findings {
            *m.entry(i.finding.rule).or_default() += 1;
        }
        m
    }

    pub(crate) fn by_namespace(&self) -> BTreeMap<&str, usize> {
        let mut m = BTreeMap::new();
        for i in &self.findings {
            let ns = if i.subject.namespace.is_empty() {
                "(cluster)"
            } else {
                i.subject.namespace.as_str()
            };
            *m.entry(ns).or_default() += 1;
        }
        m
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(),
            Format::Json => {
                serde_json::to_string_pretty(&StreamedJson(self)).unwrap_or_default() + "\n"
            }
            Format::Junit => self.junit(),
            Format::Sarif => serde_json::to_string_pretty(&self.sarif()).unwrap_or_default() + "\n",
        }
    }

    fn location(i: &ObjectFinding) -> String {
        match (&i.subject.file, i.subject.line) {
            (Some(f), Some(l)) => format!("{f}:{l}: "),
            (Some(f), None) => format!("{f}: "),
            _ => String::new(),
        }
    }

    // --- text ------------------------------------------------------------------------------

    pub fn text(&self) -> String {
        let mut s = String::new();
        for e in &self.errors {
            let _ = writeln!(s, "{e}");
        }
        if !self.errors.is_empty() {
            s.push('\n');
        }
        if !self.policy_warnings.is_empty() {
            s.push_str("Policy warnings:\n");
            for w in &self.policy_warnings {
                let _ = writeln!(s, "  {w}");
            }
            s.push('\n');
        }
        if let Some(mesh) = &self.mesh {
            s.push_str("Mesh context:\n");
            for line in mesh.to_string().lines() {
                let _ = writeln!(s, "  {line}");
            }
            s.push('\n');
        }
        if self.findings.is_empty() && self.errors.is_empty() {
            s.push_str("No findings.\n\n");
        }
        let mut last: Option<&Subject> = None;
        for i in &self.findings {
            if last != Some(&i.subject) {
                let _ = writeln!(s, "{}{}", Self::location(i), i.subject.label());
                last = Some(&i.subject);
            }
            let _ = writeln!(s, "  {:<5} {}", i.finding.action.as_str(), i.finding);
        }
        if self.show_mtls {
            if !self.findings.is_empty() {
                s.push('\n');
            }
            s.push_str(
                "Effective mTLS (mesh → namespace → workload → port PeerAuthentications):\n",
            );
            if self.mtls.is_empty() {
                s.push_str("  no workloads\n");
            } else {
                s.push_str(&mtls::render_table(&self.mtls));
            }
        }
        if !self.findings.is_empty() {
            s.push_str("\nFindings by rule:\n");
            for (r, n) in self.by_rule() {
                let _ = writeln!(s, "  {r:<40} {n}");
            }
            s.push_str("Findings by namespace:\n");
            for (ns, n) in self.by_namespace() {
                let _ = writeln!(s, "  {ns:<40} {n}");
            }
        }
        excepted::text(&self.excepted, &mut s);
        if !self.skipped.is_empty() {
            let kinds: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect();
            let _ = writeln!(
                s,
                "\nNot checked (kinds meshguard has no rules for): {}",
                kinds.join(", ")
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(
            s,
            "\n{}: {} objects, {} findings ({} deny, {} warn, {} audit){}, {} unreadable documents",
            self.command,
            self.objects,
            self.findings.len(),
            self.count(Action::Deny),
            self.count(Action::Warn),
            self.count(Action::Audit),
            excepted::summary(&self.excepted),
            self.errors.len()
        );
        s
    }

    // --- json ------------------------------------------------------------------------------

    pub fn json(&self) -> Value {
        let mut v = self.json_head();
        v["findings"] = Value::Array(self.findings.iter().map(finding_json).collect());
        if self.show_mtls {
            v["mtls"] = Value::Array(self.mtls.iter().map(mtls_json).collect());
        }
        v
    }

    /// The JSON report without its two long lists (`findings`, `mtls`).
    fn json_head(&self) -> Value {
        let mut v = json!({
            "command": self.command,
            "summary": {
                "objects": self.objects,
                "findings": self.findings.len(),
                "deny": self.count(Action::Deny),
                "warn": self.count(Action::Warn),
                "audit": self.count(Action::Audit),
                "errors": self.errors.len(),
                "byRule": self.by_rule(),
                "byNamespace": self.by_namespace(),
                "skipped": self.skipped,
            },
            "errors": self.errors,
            "notes": self.notes,
        });
        if !self.policy_warnings.is_empty() {
            v["policyWarnings"] = json!(self.policy_warnings);
        }
        if let Some(mesh) = &self.mesh {
            v["meshContext"] = json!(mesh.summary());
        }
        v["summary"]["excepted"] = json!(self.excepted.len());
        v["excepted"] = excepted::json(&self.excepted);
        v
    }

    /// Write the report in `format` to `out`: what [`Report::render`] returns, byte for byte.
    /// JSON is streamed (one finding's tree at a time), never held whole in memory.
    pub fn write(&self, format: Format, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        use std::io::Write;
        let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
        match format {
            Format::Json => {
                serde_json::to_writer_pretty(&mut out, &StreamedJson(self))?;
                out.write_all(b"\n")?;
            }
            other => out.write_all(self.render(other).as_bytes())?,
        }
        out.flush()
    }

    // --- junit -----------------------------------------------------------------------------

    /// One test case per object with findings (and one per unreadable document); deny-level
    /// findings are failures, warn/audit ones are printed in `system-out`.
    pub fn junit(&self) -> String {
        let mut cases: Vec<(String, String, Vec<&ObjectFinding>)> = Vec::new();
        for i in &self.findings {
            let name = format!("{}{}", Self::location(i), i.subject.label());
            match cases.last_mut() {
                Some((n, _, v)) if *n == name => v.push(i),
                _ => cases.push((name, i.subject.kind.clone(), vec![i])),
            }
        }
        let failures = cases
            .iter()
            .filter(|(_, _, v)| v.iter().any(|i| i.finding.action == Action::Deny))
            .count();
        let tests = cases.len() + self.errors.len() + self.excepted.len();
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            s,
            "<testsuites name=\"meshguard {}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{}\">",
            self.command,
            self.errors.len()
        );
        let _ = writeln!(
            s,
            "  <testsuite name=\"meshguard {}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{}\" skipped=\"{}\">",
            self.command,
            self.errors.len(),
            self.excepted.len()
        );
        for e in &self.errors {
            let _ = writeln!(
                s,
                "    <testcase classname=\"manifest\" name=\"{}\">\n      <error type=\"{PARSE_ERROR_ID}\" message=\"{}\"/>\n    </testcase>",
                xml(&e.to_string()),
                xml(&e.message)
            );
        }
        for (name, kind, items) in &cases {
            let _ = writeln!(
                s,
                "    <testcase classname=\"{}\" name=\"{}\">",
                xml(kind),
                xml(name)
            );
            let deny: Vec<&&ObjectFinding> = items
                .iter()
                .filter(|i| i.finding.action == Action::Deny)
                .collect();
            if !deny.is_empty() {
                let body: Vec<String> = deny.iter().map(|i| i.finding.to_string()).collect();
                let _ = writeln!(
                    s,
                    "      <failure type=\"{}\" message=\"{}\">{}</failure>",
                    xml(deny[0].finding.rule),
                    xml(&format!("{} deny-level finding(s)", deny.len())),
                    xml(&body.join("\n"))
                );
            }
            let other: Vec<String> = items
                .iter()
                .filter(|i| i.finding.action != Action::Deny)
                .map(|i| format!("{}: {}", i.finding.action, i.finding))
                .collect();
            if !other.is_empty() {
                let _ = writeln!(
                    s,
                    "      <system-out>{}</system-out>",
                    xml(&other.join("\n"))
                );
            }
            s.push_str("    </testcase>\n");
        }
        excepted::junit(&self.excepted, &mut s);
        s.push_str("  </testsuite>\n</testsuites>\n");
        s
    }

    // --- sarif -----------------------------------------------------------------------------

    /// SARIF 2.1.0: one run, every rule of the catalogue (registry, cross checks, parse error)
    /// as a reporting descriptor, one result per finding with the file and line of its object.
    pub fn sarif(&self) -> Value {
        let mut ids: Vec<(&str, &str, Action)> = crate::catalogue::checks()
            .iter()
            .map(|c| (c.id, c.summary, c.default_action))
            .collect();
        ids.push((
            PARSE_ERROR_ID,
            "A manifest document that cannot be parsed as a Kubernetes object",
            Action::Deny,
        ));
        let index: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, r)| (r.0, i)).collect();
        let descriptors: Vec<Value> = ids
            .iter()
            .map(|(id, summary, action)| {
                json!({
                    "id": id,
                    "name": id,
                    "shortDescription": {"text": summary},
                    "defaultConfiguration": {"level": level(*action)},
                })
            })
            .collect();
        let mut results: Vec<Value> = Vec::new();
        for e in &self.errors {
            let mut loc = json!({
                "physicalLocation": {
                    "artifactLocation": {"uri": uri(&e.file)},
                }
            });
            if let Some(l) = e.line {
                loc["physicalLocation"]["region"] = json!({"startLine": l});
            }
            results.push(json!({
                "ruleId": PARSE_ERROR_ID,
                "ruleIndex": index.get(PARSE_ERROR_ID),
                "level": "error",
                "message": {"text": e.message},
                "locations": [loc],
            }));
        }
        for i in &self.findings {
            let logical = json!({
                "name": i.subject.name,
                "fullyQualifiedName": format!("{}/{}/{}", i.subject.namespace, i.subject.kind, i.subject.name),
                "kind": "object",
            });
            let mut loc = json!({ "logicalLocations": [logical] });
            if let Some(f) = &i.subject.file {
                let mut phys = json!({"artifactLocation": {"uri": uri(f)}});
                if let Some(l) = i.subject.line {
                    phys["region"] = json!({"startLine": l});
                }
                loc["physicalLocation"] = phys;
            }
            let mut r = json!({
                "ruleId": i.finding.rule,
                "level": level(i.finding.action),
                "message": {"text": format!("{}: {}. Fix: {}", i.finding.violation.path, i.finding.violation.message, i.finding.violation.fix)},
                "locations": [loc],
                "properties": {
                    "path": i.finding.violation.path,
                    "fix": i.finding.violation.fix,
                    "action": i.finding.action,
                },
            });
            if let Some(ix) = index.get(i.finding.rule) {
                r["ruleIndex"] = json!(ix);
            }
            results.push(r);
        }
        results.extend(excepted::sarif(&self.excepted, &index));
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {
                    "driver": {
                        "name": "meshguard",
                        "version": env!("CARGO_PKG_VERSION"),
                        "rules": descriptors,
                    }
                },
                "invocations": [{
                    "executionSuccessful": self.errors.is_empty(),
                    "toolExecutionNotifications": self.notes.iter().map(|n| json!({"level": "note", "message": {"text": n}})).collect::<Vec<_>>(),
                }],
                "columnKind": "unicodeCodePoints",
                "results": results,
            }]
        })
    }
}

/// One finding of the JSON report.
fn finding_json(i: &ObjectFinding) -> Value {
    subject_finding_json(&i.subject, &i.finding)
}

/// A finding's subject and verdict as the JSON report writes them (an excepted finding adds
/// its exception's fields).
pub(super) fn subject_finding_json(subject: &Subject, finding: &Finding) -> Value {
    json!({
        "file": subject.file.as_deref(),
        "line": subject.line,
        "kind": subject.kind,
        "namespace": subject.namespace,
        "name": subject.name,
        "rule": finding.rule,
        "action": finding.action,
        "path": finding.violation.path,
        "message": finding.violation.message,
        "fix": finding.violation.fix,
    })
}

/// One row of the JSON report's effective-mTLS table.
fn mtls_json(r: &mtls::Row) -> Value {
    json!({
        "namespace": r.namespace,
        "kind": r.kind,
        "workload": r.workload,
        "port": r.port,
        "mode": r.effective.mode,
        "decidedBy": r.effective.decided_by,
        "dataPlane": r.dataplane,
    })
}

/// The JSON report as [`Report::json`] builds it, serialized with the two long lists
/// (`findings`, `mtls`) converted one element at a time.
struct StreamedJson<'a>(&'a Report);

/// A long list of the JSON report, serialized by converting one element at a time.
enum List<'a> {
    Findings(&'a [ObjectFinding]),
    Mtls(&'a [mtls::Row]),
}

impl serde::Serialize for List<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            List::Findings(f) => s.collect_seq(f.iter().map(finding_json)),
            List::Mtls(r) => s.collect_seq(r.iter().map(mtls_json)),
        }
    }
}

impl serde::Serialize for StreamedJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let report = self.0;
        let Value::Object(head) = report.json_head() else {
            return Err(serde::ser::Error::custom(
                "the report head is not an object",
            ));
        };
        // The lists go where `Report::json` puts them in the head's key order.
        let mut lists = vec![("findings", List::Findings(&report.findings))];
        if report.show_mtls {
            lists.push(("mtls", List::Mtls(&report.mtls)));
        }
        let mut lists = lists.into_iter().peekable();
        let mut map = s.serialize_map(None)?;
        for (k, v) in &head {
            while let Some((name, list)) = lists.next_if(|(name, _)| *name < k.as_str()) {
                map.serialize_entry(name, &list)?;
            }
            map.serialize_entry(k, v)?;
        }
        for (name, list) in lists {
            map.serialize_entry(name, &list)?;
        }
        map.end()
    }
}

fn level(a: Action) -> &'static str {
    match a {
        Action::Deny => "error",
        Action::Warn => "warning",
        Action::Audit | Action::Off => "note",
    }
}

/// A relative URI reference for a file path (`-` is stdin).
fn uri(file: &str) -> String {
    if file == "-" {
        return "stdin".to_owned();
    }
    let path = file.strip_prefix("./").unwrap_or(file);
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(char::from(b))
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Escape text for XML attributes and content.
pub(crate) fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_percent_encoded_and_xml_escaped() {
        assert_eq!(uri("./a b/c.yaml"), "a%20b/c.yaml");
        assert_eq!(uri("-"), "stdin");
        assert_eq!(xml("a<\"b\">&\u{1}"), "a&lt;&quot;b&quot;&gt;&amp;");
    }

    /// A report with every part of the JSON report set (both long lists included).
    fn full_report(show_mtls: bool) -> Report {
        use crate::finding::{Finding, Violation};
        let finding = |file: Option<&str>, ns: &str, rule: &'static str, action| ObjectFinding {
            subject: Subject {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: ns.into(),
                name: "web".into(),
                uid: String::new(),
                file: file.map(Into::into),
                line: file.map(|_| 7),
            },
            finding: Finding {
                rule,
                action,
                violation: Violation::new("spec.x", "a \"quoted\" message", "the fix"),
            },
        };
        let row = |port, decided: bool| mtls::Row {
            namespace: "prod".into(),
            kind: crate::resource::Kind::Deployment,
            workload: "web".into(),
            port,
            path: "spec.template".into(),
            effective: mtls::Effective {
                mode: crate::model::MtlsMode::Permissive,
                decided_by: decided.then(|| mtls::Decider {
                    namespace: "prod".into(),
                    name: "pa".into(),
                    level: mtls::Level::Port,
                }),
            },
            dataplane: if decided {
                "sidecar".into()
            } else {
                String::new()
            },
        };
        Report {
            command: "check",
            findings: vec![
                finding(Some("a.yaml"), "prod", "mtls-not-strict", Action::Deny),
                finding(None, "", "ap-no-default-deny", Action::Warn),
            ],
            objects: 3,
            skipped: BTreeMap::from([("v1/Secret".to_owned(), 2)]),
            notes: vec!["a note".into()],
            mtls: vec![row(Some(8080), true), row(None, false)],
            show_mtls,
            mesh: Some(Default::default()),
            policy_warnings: vec!["a warning".into()],
            ..Default::default()
        }
    }

    #[test]
    fn streamed_json_is_the_json_tree_byte_for_byte() {
        for show_mtls in [false, true] {
            let r = full_report(show_mtls);
            let tree = serde_json::to_string_pretty(&r.json()).expect("json") + "\n";
            assert_eq!(r.render(Format::Json), tree);
            let mut written = Vec::new();
            r.write(Format::Json, &mut written).expect("write");
            assert_eq!(String::from_utf8(written).expect("utf-8"), tree);
            assert_eq!(tree.contains("\"mtls\""), show_mtls);
            // Every other format is written as rendered.
            for f in [Format::Text, Format::Junit, Format::Sarif] {
                let mut written = Vec::new();
                r.write(f, &mut written).expect("write");
                assert_eq!(String::from_utf8(written).expect("utf-8"), r.render(f));
            }
        }
        let empty = Report::default();
        let mut written = Vec::new();
        empty.write(Format::Json, &mut written).expect("write");
        assert_eq!(
            String::from_utf8(written).expect("utf-8"),
            serde_json::to_string_pretty(&empty.json()).expect("json") + "\n"
        );
    }
}
