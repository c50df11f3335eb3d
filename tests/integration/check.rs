//! `meshguard check` end to end: the binary over fixture directories, in every format.
//!
//! Golden files (tests/fixtures/check/golden/) hold only what this command owns: the
//! cross-resource findings, parse errors and the effective-mTLS table. Findings of admission
//! rules (which other parts of the project add over time) are asserted by rule id instead, so
//! adding a rule does not break these tests. Regenerate the goldens with `UPDATE_GOLDEN=1
//! cargo test --test integration check::` and review the diff.

use clap::Parser;
use meshguard::check;
use meshguard::cli::{Cli, Command};
use meshguard::config::Policy;
use meshguard::cross;
use meshguard::engine::Engine;
use meshguard::finding::Action;
use meshguard::manifest;
use meshguard::report::{Format, Report};
use serde_json::Value;
use std::path::{Path, PathBuf};

const TUTORIAL: &str = "tests/fixtures/check/tutorial";
const CROSS: &str = "tests/fixtures/check/cross";
const CONFORMANCE: &str = "tests/fixtures/check/conformance";
const BROKEN: &str = "tests/fixtures/check/broken";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run `meshguard ARGS` in-process (the same argument parsing and code path as the binary;
/// integration tests share a target directory, so the binary is not invoked directly).
/// Paths are relative to the crate root, which is the working directory of `cargo test`.
fn meshguard(args: &[&str], stdin: Option<&str>) -> (String, String, i32) {
    assert_eq!(std::env::current_dir().expect("cwd"), root());
    let cli = match Cli::try_parse_from(std::iter::once("meshguard").chain(args.iter().copied())) {
        Ok(cli) => cli,
        Err(e) => return (String::new(), e.to_string(), e.exit_code()),
    };
    let Command::Check(check_args) = cli.command else {
        panic!("not a check command: {args:?}");
    };
    let mut input = stdin.unwrap_or("").as_bytes();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = check::execute(check_args, &mut input, &mut out, &mut err).code();
    (
        String::from_utf8(out).expect("utf-8 stdout"),
        String::from_utf8(err).expect("utf-8 stderr"),
        code,
    )
}

/// The report of `check DIR` restricted to what `check` owns (cross-resource findings, parse
/// errors, the mTLS table), built through the library with relative paths.
fn owned_report(dir: &str) -> Report {
    let engine = Engine::new(Policy::builtin(), Default::default(), None);
    let mut loaded = manifest::load(&[root().join(dir)]).expect("fixture loads");
    let prefix = format!("{}/", root().display());
    for o in &mut loaded.objects {
        o.file = o.file.replace(&prefix, "").into();
    }
    for e in &mut loaded.errors {
        e.file = e.file.replace(&prefix, "");
    }
    let prepared = check::prepare(&mut loaded, "default", false, false);
    let mut report = check::check_loaded(&engine, &prepared, true);
    report
        .findings
        .retain(|i| cross::find(i.finding.rule).is_some());
    report
}

fn golden(name: &str, actual: &str) {
    let path: PathBuf = root().join("tests/fixtures/check/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(
        actual,
        want,
        "{} differs (UPDATE_GOLDEN=1 regenerates it)",
        path.display()
    );
}

fn rules_in(json: &Value) -> Vec<(String, String)> {
    json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap_or_default().to_owned(),
                f["rule"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn sarif_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/sarif-schema-2.1.0.json"))
            .expect("schema"),
    )
    .expect("schema is JSON");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .expect("schema compiles")
}

fn assert_valid_sarif(sarif: &Value) {
    let v = sarif_validator();
    let errors: Vec<String> = v
        .iter_errors(sarif)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "SARIF invalid: {errors:#?}");
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "meshguard");
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    for r in run["results"].as_array().expect("results") {
        let id = r["ruleId"].as_str().expect("ruleId");
        let ix = r["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(rules[ix]["id"], id, "ruleIndex points at the rule");
    }
}

// --- tutorial ---------------------------------------------------------------------------------

#[test]
fn tutorial_reports_effective_mtls_of_frontend_and_backend() {
    let (out, err, code) = meshguard(&["check", TUTORIAL, "--mtls"], None);
    assert!(code == 0 || code == 1, "exit {code}: {err}");
    assert!(out.contains("Effective mTLS"), "{out}");
    let row = |w: &str| {
        out.lines()
            .find(|l| l.contains(w) && l.starts_with("production"))
            .unwrap_or_else(|| panic!("no row for {w} in\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        row("deployment/backend"),
        "production deployment/backend 80 STRICT production/backend-strict (port)"
    );
    assert_eq!(
        row("deployment/frontend"),
        "production deployment/frontend 80 STRICT production/default-strict (namespace)"
    );
    assert!(
        out.contains("install.istio.io/v1alpha1/IstioOperator ×1"),
        "{out}"
    );
    assert!(
        out.contains("note: namespace \"production\" not in the input"),
        "{out}"
    );
    // Nothing cross-resource is wrong with the tutorial.
    for c in cross::REGISTRY {
        assert!(
            !out.contains(&format!("[{}]", c.id)),
            "{} reported:\n{out}",
            c.id
        );
    }
    golden("tutorial.txt", &owned_report(TUTORIAL).render(Format::Text));
}

#[test]
fn tutorial_sarif_is_valid() {
    let (out, err, code) = meshguard(&["check", TUTORIAL, "--format", "sarif"], None);
    assert!(code == 0 || code == 1, "exit {code}: {err}");
    let sarif: Value = serde_json::from_str(&out).expect("SARIF is JSON");
    assert_valid_sarif(&sarif);
}

// --- cross-resource scenario ------------------------------------------------------------------

#[test]
fn cross_resource_findings_in_every_format() {
    let report = owned_report(CROSS);
    golden("cross.txt", &report.render(Format::Text));
    golden("cross.json", &report.render(Format::Json));
    golden("cross.junit.xml", &report.render(Format::Junit));

    let (out, err, code) = meshguard(&["check", CROSS, "--format", "json"], None);
    assert_eq!(code, 1, "deny-level findings exit 1: {err}");
    let json: Value = serde_json::from_str(&out).expect("JSON output");
    let got = rules_in(&json);
    for want in [
        ("shop", "ap-no-default-deny"),
        ("web", "mtls-not-strict"),
        ("web-to-api", "ap-unknown-principal"),
        ("orphan", "selector-matches-nothing"),
        ("api-jwt", "ra-unenforced"),
        ("api-plaintext", "dr-disable-vs-mtls"),
        ("web-plaintext", "dr-disable-vs-mtls"),
        // admission rules of the registry run too
        ("shop-permissive", "pa-permissive-mtls"),
        ("web-metrics", "pa-disabled-mtls"),
    ] {
        assert!(
            got.iter().any(|(n, r)| n == want.0 && r == want.1),
            "missing {want:?} in {got:?}"
        );
    }
    // Namespace pay has its allow-nothing policy; its StatefulSet is STRICT from the mesh.
    assert!(!got
        .iter()
        .any(|(n, r)| n == "pay" || (n == "ledger" && r == "mtls-not-strict")));
    // Nothing about api's mTLS: its workload policy is STRICT.
    assert!(
        !got.iter()
            .any(|(n, r)| n == "api" && r == "mtls-not-strict"),
        "{got:?}"
    );
    // Findings carry file and line.
    let f = json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["rule"] == "dr-disable-vs-mtls" && f["name"] == "api-plaintext")
        .expect("dr finding");
    assert_eq!(f["file"], "tests/fixtures/check/cross/policies.yaml");
    assert_eq!(f["line"], 49);
    assert_eq!(f["path"], "spec.trafficPolicy.tls.mode");
    assert!(
        f["message"]
            .as_str()
            .unwrap_or_default()
            .contains("deployment shop/api port 8080, whose effective mTLS is STRICT"),
        "{f}"
    );
}

#[test]
fn cross_sarif_points_at_file_and_line() {
    let (out, _, code) = meshguard(&["check", CROSS, "--format", "sarif"], None);
    assert_eq!(code, 1);
    let sarif: Value = serde_json::from_str(&out).expect("SARIF is JSON");
    assert_valid_sarif(&sarif);
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    let r = results
        .iter()
        .find(|r| r["ruleId"] == "ra-unenforced")
        .expect("ra-unenforced result");
    let phys = &r["locations"][0]["physicalLocation"];
    assert_eq!(
        phys["artifactLocation"]["uri"],
        "tests/fixtures/check/cross/policies.yaml"
    );
    assert_eq!(phys["region"]["startLine"], 36);
    assert_eq!(r["level"], "warning");
    // A List item gets its own line.
    let mtls = results
        .iter()
        .find(|r| r["ruleId"] == "mtls-not-strict")
        .expect("mtls result");
    assert_eq!(mtls["level"], "error");
    assert_eq!(
        mtls["locations"][0]["physicalLocation"]["region"]["startLine"],
        1
    );
}

#[test]
fn cross_junit_has_failures_per_object() {
    let (out, _, code) = meshguard(&["check", CROSS, "--format", "junit"], None);
    assert_eq!(code, 1);
    assert!(out.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
    assert!(out.contains("<testcase classname=\"DestinationRule\" name=\"tests/fixtures/check/cross/policies.yaml:49: DestinationRule shop/api-plaintext\">"), "{out}");
    // The cross-resource finding sits in the object's failure next to the admission rule.
    assert!(
        out.contains("[dr-disable-vs-mtls] spec.trafficPolicy.tls.mode: tls.mode DISABLE sends plaintext to deployment shop/api port 8080"),
        "{out}"
    );
    assert!(out.contains("<system-out>warn: [ra-unenforced]"), "{out}");
    assert_eq!(
        out.matches("<testcase").count(),
        out.matches("</testcase>").count()
    );
}

// --- conformance slice ------------------------------------------------------------------------

#[test]
fn conformance_slice_denies_the_bad_peer_authentications() {
    let (out, err, code) = meshguard(&["check", CONFORMANCE, "--format", "json"], None);
    assert_eq!(code, 1, "{err}");
    let json: Value = serde_json::from_str(&out).expect("JSON");
    let got = rules_in(&json);
    assert!(
        got.contains(&("pa-bad01".into(), "pa-permissive-mtls".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("pa-bad02".into(), "pa-disabled-mtls".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("pa-bad03".into(), "pa-disabled-mtls".into())),
        "{got:?}"
    );
    for good in [
        "good-pa01",
        "good-pa02",
        "good-pa03",
        "good-pa04",
        "good-pa05",
    ] {
        assert!(
            !got.iter()
                .any(|(n, r)| n == good && (r == "pa-permissive-mtls" || r == "pa-disabled-mtls")),
            "{good}: {got:?}"
        );
    }
    assert_eq!(json["summary"]["objects"], 8);
    let (sarif, _, _) = meshguard(&["check", CONFORMANCE, "--format", "sarif"], None);
    assert_valid_sarif(&serde_json::from_str(&sarif).expect("SARIF"));
}

// --- broken input -----------------------------------------------------------------------------

#[test]
fn broken_document_is_reported_with_file_and_line_and_exit_2() {
    let (out, err, code) = meshguard(&["check", BROKEN], None);
    assert_eq!(code, 2, "parse errors exit 2: {out}{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("tests/fixtures/check/broken/manifests.yaml:1")
            && first.contains("cannot parse YAML"),
        "{out}"
    );
    // The documents around it are still checked.
    assert!(out.contains("[pa-permissive-mtls]"), "{out}");
    assert!(out.contains("1 unreadable documents"), "{out}");
    golden("broken.txt", &owned_report(BROKEN).render(Format::Text));

    let (junit, _, code) = meshguard(&["check", BROKEN, "--format", "junit"], None);
    assert_eq!(code, 2);
    assert!(
        junit.contains("<error type=\"manifest-parse-error\""),
        "{junit}"
    );
    let (sarif, _, _) = meshguard(&["check", BROKEN, "--format", "sarif"], None);
    let sarif: Value = serde_json::from_str(&sarif).expect("SARIF");
    assert_valid_sarif(&sarif);
    let r = &sarif["runs"][0]["results"][0];
    assert_eq!(r["ruleId"], "manifest-parse-error");
    assert!(r["locations"][0]["physicalLocation"]["region"]["startLine"]
        .as_u64()
        .is_some());
    assert_eq!(
        sarif["runs"][0]["invocations"][0]["executionSuccessful"],
        false
    );
}

#[test]
fn parse_error_line_is_the_broken_line() {
    let report = owned_report(BROKEN);
    assert_eq!(report.errors.len(), 1);
    let line = report.errors[0].line.expect("line");
    // The document starts on line 7; the unclosed flow sequence is on line 14.
    assert!((7..=16).contains(&line), "{:?}", report.errors);
}

// --- inputs and options -----------------------------------------------------------------------

#[test]
fn stdin_json_list_and_default_namespace() {
    let input = r#"{"apiVersion": "v1", "kind": "List", "items": [
      {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
       "metadata": {"name": "p"}, "spec": {"mtls": {"mode": "DISABLE"}}}]}"#;
    let (out, _, code) = meshguard(
        &["check", "-", "--format", "json", "-n", "team"],
        Some(input),
    );
    assert_eq!(code, 1);
    let json: Value = serde_json::from_str(&out).expect("JSON");
    let f = &json["findings"][0];
    assert_eq!(f["file"], "-");
    assert_eq!(f["namespace"], "team");
    assert_eq!(f["rule"], "pa-disabled-mtls");
}

#[test]
fn missing_path_is_a_usage_error() {
    let (_, err, code) = meshguard(&["check", "tests/fixtures/check/nope"], None);
    assert_eq!(code, 2);
    assert!(err.contains("tests/fixtures/check/nope"), "{err}");
    let (_, _, code) = meshguard(&["check"], None);
    assert_eq!(code, 2, "no path is a usage error");
}

#[test]
fn fix_writes_mutated_manifests() {
    // good-pa03 has `spec: {}`: the strict-default mutation adds mtls.mode STRICT.
    let (out, err, _) = meshguard(
        &[
            "check",
            "tests/fixtures/check/conformance/06-peerauthentication-good-pa03.yaml",
            "--fix",
        ],
        None,
    );
    let docs: Value = serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(docs["spec"]["mtls"]["mode"], "STRICT", "{out}");
    assert!(
        err.contains("check: 1 objects"),
        "report goes to stderr: {err}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let (out, _, _) = meshguard(
        &[
            "check",
            TUTORIAL,
            "--fix",
            "--fix-dir",
            dir.path().to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(out.contains("check: 18 objects"), "{out}");
    let written = dir
        .path()
        .join("tests/fixtures/check/tutorial/test-apps.yaml");
    let text = std::fs::read_to_string(&written).expect("fixed file written");
    assert_eq!(text.matches("\n---\n").count(), 3, "{text}");
    let istio_operator = dir
        .path()
        .join("tests/fixtures/check/tutorial/access-logs-config.yaml");
    assert!(std::fs::read_to_string(istio_operator)
        .expect("other kinds pass through")
        .contains("IstioOperator"));
}

#[test]
fn fix_passes_unpatched_documents_through_verbatim() {
    // Comments, key order and quoting survive in documents --fix does not patch; the patched
    // Namespace (no injection label) is re-rendered with the label added.
    let input = "# team manifests, owned by payments\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings   # keep me\n  namespace: shop\ndata:\n  mode: \"fast\"\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n--- # a list that needs nothing\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata: {name: web, namespace: shop}   # flow style kept\n--- {apiVersion: v1, kind: Secret, metadata: {name: s, namespace: shop}}\n";
    let (out, err, _) = meshguard(&["check", "-", "--fix"], Some(input));
    assert!(err.contains("check: 2 objects"), "{err}");
    assert!(
        out.starts_with("# team manifests, owned by payments\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings   # keep me\n  namespace: shop\ndata:\n  mode: \"fast\"\n---\n"),
        "{out}"
    );
    // A comment on the `---` marker line stays with the document after it.
    assert!(
        out.contains("\n--- # a list that needs nothing\napiVersion: v1\nkind: List\nitems:\n"),
        "{out}"
    );
    assert!(
        out.contains("  metadata: {name: web, namespace: shop}   # flow style kept\n"),
        "{out}"
    );
    assert!(
        out.ends_with("--- {apiVersion: v1, kind: Secret, metadata: {name: s, namespace: shop}}\n"),
        "{out}"
    );
    // Every document is still there, and the Namespace got its label.
    let docs: Vec<Value> = manifest_values(&out);
    assert_eq!(docs.len(), 4, "{out}");
    let ns = docs
        .iter()
        .find(|d| d["kind"] == "Namespace")
        .expect("namespace");
    assert_eq!(
        ns["metadata"]["labels"]["istio-injection"], "enabled",
        "{out}"
    );
}

/// The documents of a YAML stream, through meshguard's own loader.
fn manifest_values(text: &str) -> Vec<Value> {
    let mut loaded = manifest::Loaded::default();
    manifest::parse_into("out.yaml", text, &mut loaded);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded
        .objects
        .iter()
        .map(|o| serde_json::to_value(&o.object).expect("json"))
        .collect()
}

// --- cross-resource edge cases (library level) ------------------------------------------------

/// Cross-resource findings of a manifest text: (object name, rule, message).
fn cross_of(yaml: &str, complete: bool) -> Vec<(String, &'static str, String)> {
    cross_with(Policy::builtin(), yaml, complete)
        .into_iter()
        .map(|(n, r, _, m)| (n, r, m))
        .collect()
}

/// Cross-resource findings under `policy`: (object name, rule, action, message).
fn cross_with(
    policy: Policy,
    yaml: &str,
    complete: bool,
) -> Vec<(String, &'static str, Action, String)> {
    let engine = Engine::new(policy, Default::default(), None);
    let mut loaded = manifest::Loaded::default();
    manifest::parse_into("t.yaml", yaml, &mut loaded);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let prepared = check::prepare(&mut loaded, "default", false, complete);
    let report = check::check_loaded(&engine, &prepared, false);
    report
        .findings
        .into_iter()
        .filter(|i| cross::find(i.finding.rule).is_some())
        .map(|i| {
            (
                i.subject.name,
                i.finding.rule,
                i.finding.action,
                i.finding.violation.message,
            )
        })
        .collect()
}

#[test]
fn cross_checks_take_per_id_actions_and_exemptions_from_the_policy() {
    let find = |policy: &str| -> Vec<(String, &'static str, Action)> {
        let policy = meshguard::catalogue::policy_from_yaml(policy, "t").expect("policy");
        cross_with(policy, SHOP, false)
            .into_iter()
            .filter(|(_, r, _, _)| *r == "ap-no-default-deny")
            .map(|(n, r, a, _)| (n, r, a))
            .collect()
    };
    let default = find("{}");
    assert_eq!(
        default,
        [("shop".into(), "ap-no-default-deny", Action::Warn)]
    );
    // Raised to deny, or turned off, by id.
    let deny = find("rules:\n  ap-no-default-deny:\n    action: deny\n");
    assert_eq!(deny, [("shop".into(), "ap-no-default-deny", Action::Deny)]);
    assert!(find("rules:\n  ap-no-default-deny:\n    action: off\n").is_empty());
    // Exempted by namespace name, or by the namespace's labels.
    assert!(
        find("rules:\n  ap-no-default-deny:\n    exemptions: [{namespaces: [shop]}]\n").is_empty()
    );
    assert!(find("rules:\n  ap-no-default-deny:\n    exemptions:\n      - namespaceSelector: {matchLabels: {istio-injection: enabled}}\n").is_empty());
    // ... or by the subject's own labels (here the Namespace object's).
    assert!(find("rules:\n  ap-no-default-deny:\n    exemptions:\n      - objectSelector: {matchLabels: {istio-injection: enabled}}\n").is_empty());
    // An exemption for another namespace changes nothing.
    assert_eq!(
        find("rules:\n  ap-no-default-deny:\n    exemptions: [{namespaces: [other]}]\n"),
        default
    );
    // mtls-not-strict on a PERMISSIVE workload, exempted by the workload's own labels.
    let permissive = format!("{SHOP}---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: api, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: api}}}}\n  mtls: {{mode: PERMISSIVE}}\n");
    let mtls = |policy: &str| -> usize {
        let policy = meshguard::catalogue::policy_from_yaml(policy, "t").expect("policy");
        cross_with(policy, &permissive, false)
            .iter()
            .filter(|(n, r, _, _)| n == "api" && *r == "mtls-not-strict")
            .count()
    };
    assert_eq!(mtls("{}"), 1);
    assert_eq!(
        mtls("rules:\n  mtls-not-strict:\n    exemptions:\n      - objectSelector: {matchLabels: {app: other}}\n"),
        1
    );
    // The Deployment's own labels are not its template's: exempt by namespace instead.
    assert_eq!(
        mtls("rules:\n  mtls-not-strict:\n    exemptions: [{namespaces: [shop]}]\n"),
        0
    );
    // Ids that are neither rules nor cross checks stay errors.
    let err = meshguard::catalogue::policy_from_yaml(
        "rules:\n  ap-no-defult-deny:\n    action: off\n",
        "t",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("rules.ap-no-defult-deny: unknown rule id"),
        "{err}"
    );
}

const SHOP: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {istio-injection: enabled}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: mesh, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: shop}\nspec:\n  template:\n    metadata: {labels: {app: api}}\n    spec:\n      serviceAccountName: api\n      containers: [{name: c, image: i, ports: [{containerPort: 8080}]}]\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: api, namespace: shop}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec:\n  selector: {app: api}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n";

fn rules_of<'a>(found: &'a [(String, &'static str, String)]) -> Vec<(&'a str, &'static str)> {
    found.iter().map(|(n, r, _)| (n.as_str(), *r)).collect()
}

#[test]
fn mesh_wide_allow_nothing_covers_every_namespace_but_dry_run_does_not() {
    let base = rules_of(&cross_of(SHOP, false)).contains(&("shop", "ap-no-default-deny"));
    assert!(base, "shop has no default deny");
    let mesh = format!("{SHOP}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: deny-all, namespace: istio-system}}\nspec: {{}}\n");
    assert!(!rules_of(&cross_of(&mesh, false)).contains(&("shop", "ap-no-default-deny")));
    let dry = format!("{SHOP}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-all\n  namespace: shop\n  annotations: {{istio.io/dry-run: \"true\"}}\nspec: {{}}\n");
    assert!(rules_of(&cross_of(&dry, false)).contains(&("shop", "ap-no-default-deny")));
    // `rules: [{}]` is allow-all, not allow-nothing.
    let allow_all = format!("{SHOP}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: all, namespace: shop}}\nspec: {{rules: [{{}}]}}\n");
    assert!(rules_of(&cross_of(&allow_all, false)).contains(&("shop", "ap-no-default-deny")));
}

#[test]
fn request_authentication_enforcement_from_root_namespace_or_deny_policy() {
    let ra = "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: shop}\nspec:\n  selector: {matchLabels: {app: api}}\n  jwtRules: [{issuer: https://i.example, jwksUri: https://i.example/k}]\n";
    let alone = format!("{SHOP}{ra}");
    let found = cross_of(&alone, false);
    let msg = found
        .iter()
        .find(|(n, r, _)| n == "jwt" && *r == "ra-unenforced")
        .map(|(_, _, m)| m.clone())
        .expect("ra-unenforced");
    assert_eq!(msg, "no AuthorizationPolicy requires requestPrincipals for deployment shop/api, so requests without a token are accepted");
    let root = format!("{alone}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: need-jwt, namespace: istio-system}}\nspec:\n  selector: {{matchLabels: {{app: api}}}}\n  rules: [{{from: [{{source: {{requestPrincipals: [\"*\"]}}}}]}}]\n");
    assert!(!rules_of(&cross_of(&root, false)).contains(&("jwt", "ra-unenforced")));
    let deny = format!("{alone}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: need-jwt, namespace: shop}}\nspec:\n  action: DENY\n  rules: [{{from: [{{source: {{notRequestPrincipals: [\"*\"]}}}}]}}]\n");
    assert!(!rules_of(&cross_of(&deny, false)).contains(&("jwt", "ra-unenforced")));
    // A requiring policy for other pods does not count.
    let other = format!("{alone}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: need-jwt, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  rules: [{{from: [{{source: {{requestPrincipals: [\"*\"]}}}}]}}]\n");
    assert!(rules_of(&cross_of(&other, false)).contains(&("jwt", "ra-unenforced")));
}

#[test]
fn destination_rule_disable_host_forms_and_port_overrides() {
    let dr = |host: &str, tp: &str| {
        format!("{SHOP}---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {{name: dr, namespace: shop}}\nspec:\n  host: \"{host}\"\n  trafficPolicy: {tp}\n")
    };
    let disable = "{tls: {mode: DISABLE}}";
    for host in [
        "api",
        "api.shop.svc",
        "api.shop.svc.cluster.local",
        "*.shop.svc.cluster.local",
        "*.cluster.local",
    ] {
        let found = cross_of(&dr(host, disable), false);
        let hit = found
            .iter()
            .find(|(n, r, _)| n == "dr" && *r == "dr-disable-vs-mtls")
            .unwrap_or_else(|| panic!("{host}: {found:?}"));
        assert!(
            hit.2
                .contains("deployment shop/api port 8080, whose effective mTLS is STRICT"),
            "{hit:?}"
        );
    }
    for host in ["api.example.com", "web", "*.other.svc.cluster.local"] {
        assert!(
            !rules_of(&cross_of(&dr(host, disable), false)).contains(&("dr", "dr-disable-vs-mtls")),
            "{host}"
        );
    }
    // Port 80 overridden to ISTIO_MUTUAL: the top-level DISABLE reaches no port of api.
    let overridden = "{tls: {mode: DISABLE}, portLevelSettings: [{port: {number: 80}, tls: {mode: ISTIO_MUTUAL}}]}";
    assert!(
        !rules_of(&cross_of(&dr("api", overridden), false)).contains(&("dr", "dr-disable-vs-mtls"))
    );
    // A subset that selects other pods.
    let subset = format!("{SHOP}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: dr, namespace: shop}}\nspec:\n  host: api\n  subsets:\n  - name: v2\n    labels: {{version: v2}}\n    trafficPolicy: {{tls: {{mode: DISABLE}}}}\n");
    assert!(!rules_of(&cross_of(&subset, false)).contains(&("dr", "dr-disable-vs-mtls")));
}

#[test]
fn unknown_principals_need_a_conclusive_inventory() {
    let ap = |src: &str| {
        format!("{SHOP}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: ap, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: api}}}}\n  rules: [{{from: [{{source: {src}}}]}}]\n")
    };
    // shop's ServiceAccounts are in the input: a missing one is reported.
    let found = cross_of(&ap("{principals: [cluster.local/ns/shop/sa/ghost]}"), false);
    assert!(
        rules_of(&found).contains(&("ap", "ap-unknown-principal")),
        "{found:?}"
    );
    // "default" always exists; foreign trust domains and wildcards are not ours to judge.
    for ok in [
        "{principals: [cluster.local/ns/shop/sa/default]}",
        "{principals: [other.domain/ns/shop/sa/ghost]}",
        "{principals: [cluster.local/ns/shop/sa/*]}",
        "{principals: [cluster.local/ns/shop/sa/api]}",
    ] {
        assert!(
            !rules_of(&cross_of(&ap(ok), false)).contains(&("ap", "ap-unknown-principal")),
            "{ok}"
        );
    }
    // Namespaces not in a partial input are unknown, not missing; with --complete they are missing.
    let ns = ap("{namespaces: [ghost-ns]}");
    assert!(!rules_of(&cross_of(&ns, false)).contains(&("ap", "ap-unknown-principal")));
    let found = cross_of(&ns, true);
    let (_, _, msg) = found
        .iter()
        .find(|(n, r, _)| n == "ap" && *r == "ap-unknown-principal")
        .expect("complete input: missing namespace reported");
    assert_eq!(
        msg,
        "namespace \"ghost-ns\" does not exist, so the rule never matches"
    );
}

#[test]
fn selectors_matching_nothing_respect_istio_scoping() {
    let policy = |kind: &str, ns: &str, app: &str| {
        format!("{SHOP}---\napiVersion: security.istio.io/v1\nkind: {kind}\nmetadata: {{name: p, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: {app}}}}}\n")
    };
    assert!(rules_of(&cross_of(
        &policy("AuthorizationPolicy", "shop", "nope"),
        false
    ))
    .contains(&("p", "selector-matches-nothing")));
    assert!(!rules_of(&cross_of(
        &policy("AuthorizationPolicy", "shop", "api"),
        false
    ))
    .contains(&("p", "selector-matches-nothing")));
    // Root-namespace AuthorizationPolicy/RequestAuthentication selectors match in every namespace.
    assert!(!rules_of(&cross_of(
        &policy("RequestAuthentication", "istio-system", "api"),
        false
    ))
    .contains(&("p", "selector-matches-nothing")));
    // A root-namespace PeerAuthentication selector is ignored by Istio: another rule's business.
    assert!(!rules_of(&cross_of(
        &policy("PeerAuthentication", "istio-system", "nope"),
        false
    ))
    .contains(&("p", "selector-matches-nothing")));
    // A namespace whose workloads are not in the input: no conclusion.
    assert!(!rules_of(&cross_of(
        &policy("AuthorizationPolicy", "elsewhere", "nope"),
        false
    ))
    .contains(&("p", "selector-matches-nothing")));
}

// --- the mesh as installed ----------------------------------------------------------------------

const CANARY: &str = "tests/fixtures/mesh/canary";

/// (rule, "kind namespace/name path") of every finding, for assertions on the mesh verdicts.
fn findings_of(json: &Value) -> Vec<(String, String)> {
    json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{} {}/{} {}",
                    f["kind"].as_str().unwrap_or_default(),
                    f["namespace"].as_str().unwrap_or_default(),
                    f["name"].as_str().unwrap_or_default(),
                    f["path"].as_str().unwrap_or_default()
                ),
            )
        })
        .collect()
}

fn has(found: &[(String, String)], rule: &str, at: &str) -> bool {
    found.iter().any(|(r, a)| r == rule && a == at)
}

#[test]
fn the_mesh_in_the_input_decides_injection_and_trust_domain() {
    let (out, err, code) = meshguard(&["check", CANARY, "--format", "json"], None);
    assert_eq!(code, 1, "{out}{err}");
    let json: Value = serde_json::from_str(&out).expect("json");
    let mesh = &json["meshContext"];
    assert_eq!(mesh["trustDomain"]["value"], "corp.example");
    assert_eq!(
        mesh["trustDomain"]["source"],
        "ConfigMap istio-system/istio"
    );
    assert_eq!(mesh["trustDomainAliases"]["value"][0], "old.corp.example");
    assert_eq!(mesh["rootNamespace"]["value"], "istio-system");
    assert_eq!(mesh["injectors"], "observed");
    assert_eq!(mesh["tags"]["prod-stable"], "canary");
    let found = findings_of(&json);
    // A removed revision, on the namespace and on a pod template that relies on it.
    assert!(
        has(
            &found,
            "ns-unknown-revision",
            "Namespace payments/payments metadata.labels[\"istio.io/rev\"]"
        ),
        "{found:?}"
    );
    assert!(
        has(
            &found,
            "ns-unknown-revision",
            "Job batch/migrate spec.template.metadata.labels[\"istio.io/rev\"]"
        ),
        "{found:?}"
    );
    assert!(
        has(
            &found,
            "wl-namespace-not-injected",
            "Deployment payments/ledger spec.template.metadata.labels"
        ),
        "{found:?}"
    );
    // The tag serves shop; the canary pod opt-in serves the CronJob.
    assert!(
        !found.iter().any(|(r, a)| r == "wl-namespace-not-injected"
            && (a.contains("shop/") || a.contains("batch/report"))),
        "{found:?}"
    );
    // shop moved to prod-stable (-> canary 1.27.1): the pod injected before runs 1.26.2.
    assert!(
        has(
            &found,
            "wl-proxy-outdated",
            "Pod shop/web-7c9d-abcde spec.containers[1].image"
        ),
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|(r, a)| r == "wl-proxy-outdated" && a.contains("legacy/")),
        "{found:?}"
    );
    // Principals of the mesh's trust domain, its alias and cluster.local are local.
    let foreign: Vec<&String> = found
        .iter()
        .filter(|(r, _)| r == "ap-foreign-trust-domain")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        foreign,
        ["AuthorizationPolicy shop/web spec.rules[0].from[0].source.principals[3]"]
    );
    // The fix suggests a label of the key the namespace uses, served by an injector.
    let fix = json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["rule"] == "ns-unknown-revision" && f["kind"] == "Namespace")
        .and_then(|f| f["fix"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        fix,
        "use a revision or tag that exists, e.g. istio.io/rev: prod-stable"
    );
    // The text report says where each value came from, once, before the findings.
    let (text, _, _) = meshguard(&["check", CANARY], None);
    assert!(text.starts_with("Mesh context:\n  root namespace: istio-system (ConfigMap istio-system/istio)\n  trust domain: corp.example (ConfigMap istio-system/istio), aliases old.corp.example (ConfigMap istio-system/istio)\n"), "{text}");
    assert!(text.contains("tag prod-stable → canary"), "{text}");
    assert!(!text.contains("assume Istio's default injector"), "{text}");
}

#[test]
fn without_injectors_the_default_injector_is_assumed_and_said_once() {
    let workloads = format!("{CANARY}/workloads.yaml");
    let (text, _, _) = meshguard(&["check", &workloads], None);
    assert_eq!(
        text.matches("assume Istio's default injector").count(),
        1,
        "{text}"
    );
    let (out, _, _) = meshguard(&["check", &workloads, "--format", "json"], None);
    let json: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["meshContext"]["injectors"], "assumed-default");
    assert_eq!(
        json["meshContext"]["trustDomain"]["source"],
        "Istio default"
    );
    let found = findings_of(&json);
    // Label folklore: any istio.io/rev enrols, so nothing is an unknown revision ...
    assert!(
        !found
            .iter()
            .any(|(r, _)| r == "ns-unknown-revision" || r == "wl-proxy-outdated"),
        "{found:?}"
    );
    // ... and corp.example is foreign (the false positive the mesh context removes).
    assert_eq!(
        found
            .iter()
            .filter(|(r, _)| r == "ap-foreign-trust-domain")
            .count(),
        3,
        "{found:?}"
    );
}

#[test]
fn mesh_config_flag_and_policy_override_the_mesh() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A MeshConfig file wins over the ConfigMap in the input.
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(
        &mesh,
        "trustDomain: partner.example\nrootNamespace: mesh-root\n",
    )
    .expect("write");
    let mesh_arg = mesh.to_string_lossy().to_string();
    let (out, err, _) = meshguard(
        &[
            "check",
            CANARY,
            "--format",
            "json",
            "--mesh-config",
            &mesh_arg,
        ],
        None,
    );
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(
        json["meshContext"]["trustDomain"]["value"],
        "partner.example"
    );
    assert_eq!(
        json["meshContext"]["trustDomain"]["source"],
        format!("file {mesh_arg}")
    );
    assert_eq!(json["meshContext"]["rootNamespace"]["value"], "mesh-root");
    let foreign: Vec<String> = findings_of(&json)
        .into_iter()
        .filter(|(r, _)| r == "ap-foreign-trust-domain")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        foreign.len(),
        2,
        "corp.example and its alias are foreign now: {foreign:?}"
    );
    // The ConfigMap form of the file works too.
    let cm = dir.path().join("istio-cm.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio}\ndata:\n  mesh: |\n    trustDomain: partner.example\n").expect("write");
    let (out, _, _) = meshguard(
        &[
            "check",
            CANARY,
            "--format",
            "json",
            "--mesh-config",
            &cm.to_string_lossy(),
        ],
        None,
    );
    let json: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        json["meshContext"]["trustDomain"]["value"],
        "partner.example"
    );
    // meshguard's policy wins over both.
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "trustDomain: corp.example\n").expect("write");
    let (out, _, _) = meshguard(
        &[
            "check",
            CANARY,
            "--format",
            "json",
            "--mesh-config",
            &mesh_arg,
            "--config",
            &policy.to_string_lossy(),
        ],
        None,
    );
    let json: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["meshContext"]["trustDomain"]["value"], "corp.example");
    assert_eq!(
        json["meshContext"]["trustDomain"]["source"],
        "meshguard policy"
    );
    // A broken MeshConfig file is a usage error, naming the file.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "trustDomain: [not, a, string]\n").expect("write");
    let (_, err, code) = meshguard(
        &["check", CANARY, "--mesh-config", &bad.to_string_lossy()],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("trustDomain") && err.contains("bad.yaml"),
        "{err}"
    );
    // --istio-namespace: ConfigMaps in another namespace are not Istio's.
    let (out, _, _) = meshguard(
        &[
            "check",
            CANARY,
            "--format",
            "json",
            "--istio-namespace",
            "istio-mesh",
        ],
        None,
    );
    let json: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        json["meshContext"]["istioNamespace"]["source"],
        "flag --istio-namespace"
    );
    assert_eq!(json["meshContext"]["trustDomain"]["value"], "cluster.local");
}

#[test]
fn effective_mtls_of_an_ambient_mesh_is_ztunnels() {
    let (out, err, code) = meshguard(
        &["check", "tests/fixtures/ambient", "--mtls", "--complete"],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        out.contains(
            "NAMESPACE  WORKLOAD             DATA PLANE     PORT  MODE        DECIDED BY\n"
        ),
        "{out}"
    );
    // metrics' PeerAuthentication says DISABLE: ztunnel reads it as PERMISSIVE.
    assert!(
        out.contains("shop       deployment/metrics   ztunnel/HBONE  9090  PERMISSIVE  shop/metrics (workload)\n"),
        "{out}"
    );
    assert!(
        out.contains("payments   deployment/ledger    sidecar        8080  STRICT      payments/default (namespace)\n"),
        "{out}"
    );
    assert!(
        out.contains("ztunnel accepts plaintext connections (without a peer identity)"),
        "{out}"
    );
    assert!(
        out.contains("ambient: capture on (ConfigMap istio-system/istio-cni-config)"),
        "{out}"
    );
    // Every ambient finding of the fixture, and no unknown principal for the waypoint and the
    // ingress gateway that reviews-l7 and reviews-only-via-waypoint name.
    for id in [
        "ap-ztunnel-http",
        "ra-ambient-selector",
        "waypoint-unbound",
        "waypoint-bypass",
        "ingress-skips-waypoint",
    ] {
        assert!(out.contains(&format!("[{id}]")), "{id}: {out}");
    }
    assert!(!out.contains("[ap-unknown-principal]"), "{out}");
}

/// The ambient fixture's findings, whole: every rule and how often it fires (19: 7 deny, 12 warn).
/// The ambient ones are the problems the fixture sets up (a misbound use-waypoint, L7 selector
/// policies ztunnel drops or ignores, a selector RequestAuthentication, DISABLE read as
/// PERMISSIVE, waypoint bypass, an ingress route past the waypoint); none for the waypoint's or
/// the ingress gateway's identity.
#[test]
fn the_ambient_fixture_raises_its_findings_and_no_others() {
    let (out, err, code) = meshguard(
        &[
            "check",
            "tests/fixtures/ambient",
            "--complete",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        v["summary"]["byRule"],
        serde_json::json!({
            "ap-http-deny-without-ports": 1,
            "ap-no-default-deny": 3,
            "ap-ztunnel-http": 2,
            "ingress-skips-waypoint": 1,
            "mtls-not-strict": 2,
            "ns-injection-missing": 2,
            "pa-disabled-mtls": 1,
            "ra-ambient-selector": 1,
            "ra-unenforced": 1,
            "waypoint-bypass": 2,
            "waypoint-unbound": 1,
            "wl-namespace-not-injected": 1,
            "wl-traffic-bypass": 1,
        }),
        "{out}"
    );
    assert_eq!(
        (
            &v["summary"]["findings"],
            &v["summary"]["deny"],
            &v["summary"]["warn"]
        ),
        (
            &serde_json::json!(19),
            &serde_json::json!(7),
            &serde_json::json!(12)
        )
    );
}
