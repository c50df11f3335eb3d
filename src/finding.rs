//! What every check produces, whoever runs it: a [`Violation`] (where, what, the fix), a
//! [`Finding`] (the violation with its rule id and resolved [`Action`]) and an
//! [`ObjectFinding`] (a finding attributed to the object it is about, for `check`, `audit`, the
//! reports and the posture page). A leaf module: it depends on nothing else in the crate, so
//! rules, cross checks, the engine, the front ends and the outputs can all share it.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
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

/// Longest path, message and fix of one finding's line: messages quote values from the object
/// (a 2 MB string, a list of 100,000 principals), and the line goes back to the client, into the
/// apiserver's audit log and into kubectl's output.
pub(crate) const MAX_PATH_BYTES: usize = 512;
pub(crate) const MAX_MESSAGE_BYTES: usize = 2048;
pub(crate) const MAX_FIX_BYTES: usize = 1024;

/// `s` cut to at most `max` bytes on a character boundary, ending in `… (N more bytes)` when
/// something was cut (the marker is counted in `max`).
pub(crate) fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    // The marker's length depends on the count it states; 32 bytes hold any.
    let mut end = max.saturating_sub(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} more bytes)", &s[..end], s.len() - end))
}

/// Append `s` as `format!("{s:?}")` writes it: quoted, with Rust's escapes. Names (namespaces,
/// accounts) are printable ASCII without quotes or backslashes, and are copied as they are;
/// anything else goes through `Debug`.
pub(crate) fn push_quoted(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        use fmt::Write;
        let _ = write!(out, "{s:?}");
    }
}

impl Finding {
    /// The finding as one line, `[rule] path: message. Fix: fix`, appended to `out` (what
    /// `Display` writes, without the formatting machinery: the webhook writes one per finding
    /// of every denied review). Path, message and fix are each clipped ([`MAX_MESSAGE_BYTES`]
    /// and friends), so one line is at most ~3.6 KB whatever the object quoted.
    pub(crate) fn write_line(&self, out: &mut String) {
        let v = &self.violation;
        let (path, message, fix) = (
            clip(&v.path, MAX_PATH_BYTES),
            clip(&v.message, MAX_MESSAGE_BYTES),
            clip(&v.fix, MAX_FIX_BYTES),
        );
        out.reserve(self.rule.len() + path.len() + message.len() + fix.len() + 12);
        out.push('[');
        out.push_str(self.rule);
        out.push_str("] ");
        out.push_str(&path);
        out.push_str(": ");
        out.push_str(&message);
        out.push_str(". Fix: ");
        out.push_str(&fix);
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
pub(crate) fn sort_findings(items: &mut [ObjectFinding]) {
    items.sort_by(|a, b| subject_order(&a.subject).cmp(&subject_order(&b.subject)));
}

/// The order findings are reported in ([`sort_findings`]): file, line, namespace, kind, name.
pub(crate) fn subject_order(s: &Subject) -> (&str, usize, &str, &str, &str) {
    (
        s.file.as_deref().unwrap_or(""),
        s.line.unwrap_or(0),
        &s.namespace,
        &s.kind,
        &s.name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_as_debug_writes_it() {
        for s in [
            "prod",
            "",
            "a\"b",
            "back\\slash",
            "tab\t",
            "é",
            "\u{301}x",
            "del\u{7f}",
            "ns-1.x_y",
        ] {
            let mut out = String::from(">");
            push_quoted(&mut out, s);
            assert_eq!(out, format!(">{s:?}"));
        }
    }

    #[test]
    fn lines_clip_what_the_object_quoted() {
        assert_eq!(clip("short", 10), "short");
        let long = "é".repeat(5000);
        let c = clip(&long, 100);
        assert!(c.len() <= 100, "{}", c.len());
        assert!(c.ends_with(" more bytes)"), "{c}");
        let f = Finding {
            rule: "r",
            action: Action::Deny,
            violation: Violation::new("spec.x".repeat(1000), "m".repeat(1 << 20), "f".repeat(5000)),
        };
        let line = f.to_string();
        assert!(
            line.len() <= MAX_PATH_BYTES + MAX_MESSAGE_BYTES + MAX_FIX_BYTES + 16,
            "{}",
            line.len()
        );
        assert!(line.contains(&format!(
            "({} more bytes)",
            (1 << 20) - (MAX_MESSAGE_BYTES - 32)
        )));
    }
}
