//! `meshguard test TESTFILE… [PATH…|--cluster]`: unit tests for mesh authorization. Each test
//! file lists requests with the verdict they must get:
//!
//! ```yaml
//! manifests: [../policies/]        # optional, relative to this file
//! tests:
//!   - name: frontend reads data
//!     from: production/frontend    # or fromWorkload: NS/NAME (NS/Gateway/NAME), or plaintext: true
//!     to: production/backend       # a workload's pods; NS/Service/NAME addresses the Service
//!     port: 80                     # optional when the workload (or Service) has one port
//!     sourceIp: 10.0.0.7           # optional
//!     request: {method: GET, path: /api/data, host: backend, headers: {x-api-version: v1}}
//!     jwt: {issuer: https://auth.example.com, subject: alice, audiences: [api], claims: {role: admin}}
//!     expect: allow                # allow | deny
//! ```
//!
//! A test without `request` (and without `jwt`) is a plain TCP connection. Positional
//! arguments that are YAML files with a top-level `tests` key are test files; the others
//! (files, directories) are manifests every test file uses besides its own. With `--cluster`
//! the live cluster replaces the manifests. One line per test; exit 1 on any mismatch, 2 on a
//! bad test file (with file and line) or unreadable manifests.
//!
//! Entries with an `admission:` key are admission cases (`admission_tests`), run through the
//! webhook's own code path; a file may mix both kinds. `--record REVIEW.json…` turns captured
//! AdmissionReviews into admission cases.

use super::scenario::{self, Caller, RequestSpec, TokenSpec, World};
use super::{simulate, TestArgs};
use crate::authz::{Explanation, Verdict};
use crate::exit::Exit;
use crate::load::Loader;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    manifests: Vec<String>,
    tests: Vec<Spanned<TestCase>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TestCase {
    name: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    from_workload: Option<String>,
    #[serde(default)]
    plaintext: bool,
    to: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    source_ip: Option<String>,
    #[serde(default)]
    request: Option<HttpCase>,
    #[serde(default)]
    jwt: Option<JwtCase>,
    expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpCase {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtCase {
    issuer: String,
    subject: String,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    claims: serde_json::Map<String, Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

impl Expect {
    fn verdict(self) -> Verdict {
        match self {
            Expect::Allow => Verdict::Allow,
            Expect::Deny => Verdict::Deny,
        }
    }
}

/// One test ready to run.
struct Prepared {
    file: String,
    line: usize,
    name: String,
    expect: Verdict,
    spec: RequestSpec,
}

/// The result of one test.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub file: String,
    pub line: usize,
    pub name: String,
    pub expected: Verdict,
    pub explanation: Explanation,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.explanation.verdict == self.expected
    }

    /// As `meshguard test` prints it (text, JSON, JUnit).
    pub fn reported(&self) -> super::results::Reported {
        super::results::Reported {
            file: self.file.clone(),
            line: self.line,
            name: self.name.clone(),
            passed: self.passed(),
            text: self.line(),
            failure: (!self.passed()).then(|| {
                (
                    format!(
                        "expected {}, got {}",
                        self.expected, self.explanation.headline
                    ),
                    self.explanation.text(),
                )
            }),
            json: serde_json::json!({
                "kind": "request",
                "file": self.file,
                "line": self.line,
                "name": self.name,
                "passed": self.passed(),
                "expected": self.expected.to_string(),
                "got": self.explanation.headline,
                "reason": self.explanation.reason,
            }),
        }
    }

    /// `PASS  file:line  name (allow)` or `FAIL  file:line  name: expected …, got …: reason`
    /// (with the closest ALLOW rule for a default deny).
    pub fn line(&self) -> String {
        if self.passed() {
            format!(
                "PASS  {}:{}  {} ({})",
                self.file, self.line, self.name, self.expected
            )
        } else {
            let closest = self
                .explanation
                .near_misses
                .first()
                .map(|m| format!(" (closest: {})", m.line()))
                .unwrap_or_default();
            format!(
                "FAIL  {}:{}  {}: expected {}, got {}: {}{closest}",
                self.file,
                self.line,
                self.name,
                self.expected,
                self.explanation.headline,
                self.explanation.reason
            )
        }
    }
}

/// Whether a path is a test file: YAML whose top level has a `tests` key.
fn is_test_file(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    match serde_saphyr::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => m.contains_key("tests"),
        Ok(_) => false,
        // An unparsable file that looks like a test file is one (its error is reported).
        Err(_) => text.lines().any(|l| l.starts_with("tests:")),
    }
}

/// A parsed test file: its manifest paths, its well-formed tests, and errors (`file:line`)
/// about the others.
type Parsed = (Vec<PathBuf>, Vec<Prepared>, Vec<String>);

/// Parse a test file; `Err` when the file cannot be read at all. Its admission cases go to
/// `admission`.
fn parse(path: &Path, admission: &mut super::admission_tests::Suites) -> Result<Parsed, String> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
    if super::admission_tests::has_cases(&text) {
        // Admission cases are `admission_tests`'; the requests beside them come back here.
        let split = admission.take_file(path, &text)?;
        let mut tests = Vec::new();
        let mut errors = split.errors;
        for (line, entry) in split.requests {
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let case = serde_json::from_value::<TestCase>(entry).map_err(|e| e.to_string());
            match case.and_then(|t| spec_of(&t).map(|spec| (t, spec))) {
                Ok((t, spec)) => tests.push(Prepared {
                    file: file.clone(),
                    line,
                    name: t.name,
                    expect: t.expect.verdict(),
                    spec,
                }),
                Err(e) => errors.push(format!("{file}:{line}: test \"{name}\": {e}")),
            }
        }
        return Ok((split.manifests, tests, errors));
    }
    let parsed: TestFile = serde_saphyr::from_str(&text).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line());
        let msg = e.to_string();
        let msg = msg.lines().next().unwrap_or("invalid YAML").trim();
        let msg = msg.strip_prefix("error: ").unwrap_or(msg);
        let msg = msg
            .strip_prefix("line ")
            .and_then(|m| m.split_once(": ").map(|(_, m)| m))
            .unwrap_or(msg);
        format!("{file}:{line}: {msg}")
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let manifests = parsed.manifests.iter().map(|m| base.join(m)).collect();
    let mut tests = Vec::new();
    let mut errors = Vec::new();
    for t in parsed.tests {
        let line = t.referenced.line() as usize;
        match spec_of(&t.value) {
            Ok(spec) => tests.push(Prepared {
                file: file.clone(),
                line,
                name: t.value.name.clone(),
                expect: t.value.expect.verdict(),
                spec,
            }),
            Err(e) => errors.push(format!("{file}:{line}: test \"{}\": {e}", t.value.name)),
        }
    }
    Ok((manifests, tests, errors))
}

fn spec_of(t: &TestCase) -> Result<RequestSpec, String> {
    let from = match (&t.from, &t.from_workload, t.plaintext) {
        (Some(f), None, false) => Caller::Identity(f.clone()),
        (None, Some(w), false) => Caller::Workload(w.clone()),
        (None, None, true) => Caller::Plaintext,
        _ => return Err("give exactly one of from, fromWorkload and plaintext: true".to_owned()),
    };
    let source_ip = t
        .source_ip
        .as_deref()
        .map(|s| {
            s.parse()
                .map_err(|_| format!("sourceIp {s}: not an IP address"))
        })
        .transpose()?;
    let http = t.request.as_ref();
    let headers = http
        .map(|h| {
            h.headers
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(_) | Value::Bool(_) => v.to_string(),
                        _ => return Err(format!("header {k}: want a string value")),
                    };
                    Ok((k.clone(), v))
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .transpose()?
        .unwrap_or_default();
    let jwt = t.jwt.as_ref().map(|j| TokenSpec {
        issuer: j.issuer.clone(),
        subject: j.subject.clone(),
        audiences: j.audience.iter().chain(&j.audiences).cloned().collect(),
        claims: j
            .claims
            .iter()
            .map(|(k, v)| (vec![k.clone()], v.clone()))
            .collect(),
    });
    let mut spec = RequestSpec {
        from,
        to: t.to.clone(),
        port: t.port,
        source_ip,
        method: http.and_then(|h| h.method.clone()),
        path: http.and_then(|h| h.path.clone()),
        host: http.and_then(|h| h.host.clone()),
        headers,
        jwt,
    };
    // `request: {}` still means HTTP (GET /).
    if http.is_some() && !spec.is_http() {
        spec.method = Some("GET".to_owned());
    }
    Ok(spec)
}

pub fn run(args: TestArgs) -> Exit {
    let code = execute(&args, &mut std::io::stdout().lock(), &mut std::io::stderr());
    let _ = std::io::stdout().flush();
    code
}

/// `test` with its streams given. Returns the exit code: Findings when a test fails.
pub fn execute(args: &TestArgs, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    let fail = |err: &mut dyn Write, errors: &[String]| {
        for e in errors {
            let _ = writeln!(err, "meshguard test: {e}");
        }
        Exit::Error
    };
    if !args.record.is_empty() {
        return match super::admission_tests::record(args, &args.record, &args.input.paths, out) {
            Ok(()) => Exit::Ok,
            Err(e) => fail(err, &[e]),
        };
    }
    let (test_files, extra): (Vec<PathBuf>, Vec<PathBuf>) = args
        .input
        .paths
        .iter()
        .cloned()
        .partition(|p| is_test_file(p));
    if test_files.is_empty() {
        return fail(
            err,
            &["no test file among the arguments (a test file is YAML with a top-level tests: list)".to_owned()],
        );
    }
    if args.live.cluster && !extra.is_empty() {
        return fail(err, &["give manifests or --cluster, not both".to_owned()]);
    }
    // The policy and the MeshConfig file are read (and refused) before anything else.
    let loader = match Loader::new(&args.policy, &args.mesh) {
        Ok(l) => l,
        Err(e) => return fail(err, &[e]),
    };
    let cluster = if args.live.cluster {
        match loader.cluster(&args.live.kube, false) {
            Ok(loaded) => Some(loaded),
            Err(e) => return fail(err, &[e]),
        }
    } else {
        None
    };
    // Parse every file, resolve every test, and only then run: a bad file fails the run
    // before any verdict is printed.
    let mut errors = Vec::new();
    let mut suites: Vec<(World, Vec<Prepared>)> = Vec::new();
    let mut admission = super::admission_tests::Suites::default();
    for file in &test_files {
        let (manifests, tests) = match parse(file, &mut admission) {
            Ok((manifests, tests, bad)) => {
                errors.extend(bad);
                (manifests, tests)
            }
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if tests.is_empty() && admission.holds(file) {
            continue; // admission cases only: no requests to resolve
        }
        let (inventory, installed) = match &cluster {
            Some(loaded) => (loaded.inventory.clone(), loaded.mesh.clone()),
            None => {
                let paths: Vec<PathBuf> = manifests.iter().chain(&extra).cloned().collect();
                if paths.is_empty() {
                    errors.push(format!(
                        "{}: no manifests: list them under manifests: (relative to the file) or on the command line, or use --cluster",
                        file.display()
                    ));
                    continue;
                }
                match loader.manifests_strict(
                    &paths,
                    &mut std::io::stdin(),
                    &args.input.namespace,
                    &test_files,
                ) {
                    Ok(loaded) => (loaded.inventory, loaded.mesh),
                    Err(e) => {
                        errors.push(format!("{}: {e}", file.display()));
                        continue;
                    }
                }
            }
        };
        let world = World::new(inventory, loader.decision_mesh(&installed));
        for t in &tests {
            if let Err(e) = scenario::resolve(&world, &t.spec) {
                errors.push(format!("{}:{}: test \"{}\": {e}", t.file, t.line, t.name));
            }
        }
        suites.push((world, tests));
    }
    if !errors.is_empty() {
        return fail(err, &errors);
    }
    let mut outcomes = Vec::new();
    for (world, tests) in &suites {
        let set = world.policy_set().assume_custom_deny(args.custom_deny);
        for t in tests {
            match simulate(world, &set, &t.spec) {
                Ok((_, explanation)) => outcomes.push(Outcome {
                    file: t.file.clone(),
                    line: t.line,
                    name: t.name.clone(),
                    expected: t.expect,
                    explanation,
                }),
                Err(e) => errors.push(format!("{}:{}: test \"{}\": {e}", t.file, t.line, t.name)),
            }
        }
    }
    let mut results: Vec<super::results::Reported> =
        outcomes.iter().map(Outcome::reported).collect();
    match admission.run(args, &extra, &test_files) {
        Ok(r) => results.extend(r),
        Err(e) => errors.extend(e),
    }
    if !errors.is_empty() {
        return fail(err, &errors);
    }
    // Files in the order given, each file's tests by line.
    let order = |f: &str| test_files.iter().position(|p| p.display().to_string() == f);
    results.sort_by_key(|r| (order(&r.file), r.line));
    let failed = results.iter().filter(|r| !r.passed).count();
    let text = match args.format {
        super::results::TestFormat::Text => super::results::text(&results),
        super::results::TestFormat::Json => super::results::json(&results),
    };
    let _ = out.write_all(text.as_bytes());
    if let Some(path) = &args.junit {
        if let Err(e) = std::fs::write(path, super::results::junit(&results)) {
            return fail(err, &[format!("cannot write {}: {e}", path.display())]);
        }
    }
    Exit::failed_if(failed > 0)
}

/// The results as JUnit XML: one suite per test file, one case per test.
pub fn junit(outcomes: &[Outcome]) -> String {
    let results: Vec<super::results::Reported> = outcomes.iter().map(Outcome::reported).collect();
    super::results::junit(&results)
}
