//! What `meshguard test` prints, for both kinds of test in a file: requests
//! ([`super::policy_tests`]) and admission cases ([`super::admission_tests`]). One line per test
//! (`PASS  file:line  name (…)` / `FAIL  file:line  name: …`) and a summary line, or the same as
//! JSON (`--format json`), and JUnit XML (`--junit FILE`): one suite per test file, one case per
//! test.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One test's result, whatever its kind.
#[derive(Clone, Debug)]
pub struct Reported {
    pub file: String,
    pub line: usize,
    pub name: String,
    pub passed: bool,
    /// The text line (`PASS  …` or `FAIL  …`).
    pub text: String,
    /// For a failure: a one-line message and the full explanation (JUnit `<failure>`).
    pub failure: Option<(String, String)>,
    /// The result as JSON (`--format json`).
    pub json: Value,
}

/// Output format of `meshguard test`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TestFormat {
    #[default]
    Text,
    Json,
}

/// The text: one line per test, then `N tests: P passed, F failed`.
pub fn text(results: &[Reported]) -> String {
    let failed = results.iter().filter(|r| !r.passed).count();
    let mut s = String::new();
    for r in results {
        let _ = writeln!(s, "{}", r.text);
    }
    let _ = writeln!(
        s,
        "{} tests: {} passed, {failed} failed",
        results.len(),
        results.len() - failed
    );
    s
}

/// `{"tests": [...], "summary": {"tests", "passed", "failed"}}`.
pub fn json(results: &[Reported]) -> String {
    let failed = results.iter().filter(|r| !r.passed).count();
    let v = json!({
        "tests": results.iter().map(|r| r.json.clone()).collect::<Vec<_>>(),
        "summary": {"tests": results.len(), "passed": results.len() - failed, "failed": failed},
    });
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

/// The results as JUnit XML: one suite per test file, one case per test.
pub fn junit(results: &[Reported]) -> String {
    use crate::report::xml;
    let mut by_file: BTreeMap<&str, Vec<&Reported>> = BTreeMap::new();
    for r in results {
        by_file.entry(&r.file).or_default().push(r);
    }
    let failures = results.iter().filter(|r| !r.passed).count();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"meshguard test\" tests=\"{}\" failures=\"{failures}\">",
        results.len()
    );
    for (file, cases) in by_file {
        let f = cases.iter().filter(|r| !r.passed).count();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\">",
            xml(file),
            cases.len()
        );
        for r in cases {
            let _ = write!(
                s,
                "    <testcase name=\"{}\" classname=\"{}:{}\"",
                xml(&r.name),
                xml(file),
                r.line
            );
            match &r.failure {
                None => s.push_str("/>\n"),
                Some((message, body)) => {
                    let _ = writeln!(
                        s,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        xml(message),
                        xml(body)
                    );
                }
            }
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}
