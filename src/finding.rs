//! What every check produces, whoever runs it: a [`Violation`] (where, what, the fix), a
//! [`Finding`] (the violation with its rule id and resolved [`Action`]) and an
//! [`ObjectFinding`] (a finding attributed to the object it is about, for `check`, `audit`, the
//! reports and the posture page). A leaf module: it depends on nothing else in the crate, so
//! rules, cross checks, the engine, the front ends and the outputs can all share it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// What happens when a rule finds a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Reported only (metrics, logs, audit annotation); the request is allowed.
    Audit,
    /// Allowed, with a warning that kubectl prints.
    Warn,
    /// Denied.
    Deny,
    /// The rule does not run.
    Off,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deny => "deny",
            Action::Warn => "warn",
            Action::Audit => "audit",
            Action::Off => "off",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One violation as a rule reports it: where, what, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Field path in the user's camelCase terms, e.g. `spec.rules[0].from[0].source.principals[1]`.
    pub path: String,
    /// What is wrong (no trailing period).
    pub message: String,
    /// How to fix it (no trailing period).
    pub fix: String,
}

impl Violation {
    pub fn new(
        path: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Violation {
            path: path.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// A violation attributed to its rule, with the action the policy resolved for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub action: Action,
    #[serde(flatten)]
    pub violation: Violation,
}

impl Finding {
    /// The finding as one line, `[rule] path: message. Fix: fix`, appended to `out` (what
    /// `Display` writes, without the formatting machinery: the webhook writes one per finding
    /// of every denied review).
    pub fn write_line(&self, out: &mut String) {
        let v = &self.violation;
        out.reserve(self.rule.len() + v.path.len() + v.message.len() + v.fix.len() + 12);
        out.push('[');
        out.push_str(self.rule);
        out.push_str("] ");
        out.push_str(&v.path);
        out.push_str(": ");
        out.push_str(&v.message);
        out.push_str(". Fix: ");
        out.push_str(&v.fix);
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        self.write_line(&mut line);
        f.write_str(&line)
    }
}

/// What a finding is about: an object, with its file and line when it came from a manifest.
///
/// Every field is read from the one object (or, for a namespace the input does not list, set to
/// the same fixed values), so two subjects are equal exactly when they name the same object read
/// from the same place.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subject {
    /// `apiVersion` of the object (`v1`, `apps/v1`, `security.istio.io/v1`, ...).
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `metadata.uid`; empty when the object has none (manifests, synthetic objects).
    pub uid: String,
    pub file: Option<Arc<str>>,
    pub line: Option<usize>,
}

impl Subject {
    /// `Kind namespace/name` (or `Kind name` for a Namespace).
    pub fn label(&self) -> String {
        if self.kind == "Namespace" || self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A finding attributed to the object it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectFinding {
    pub subject: Subject,
    pub finding: Finding,
}

/// Deterministic order: file, line, namespace, kind, name; stable within one subject.
pub fn sort_findings(items: &mut [ObjectFinding]) {
    fn key(i: &ObjectFinding) -> (&str, usize, &str, &str, &str) {
        let s = &i.subject;
        (
            s.file.as_deref().unwrap_or(""),
            s.line.unwrap_or(0),
            &s.namespace,
            &s.kind,
            &s.name,
        )
    }
    items.sort_by(|a, b| key(a).cmp(&key(b)));
}
