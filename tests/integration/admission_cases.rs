//! `meshguard test` admission cases: the committed files under tests/admission pass, and cover
//! every admission rule (UPDATE and DELETE ones included) and every mutation: a rule added
//! without an admission case fails here. Mixed files, failures, bad entries, JUnit and
//! `--record`.

use crate::common::{meshguard, root};
use serde_json::Value;
use std::collections::BTreeSet;

/// The committed admission test files.
fn committed() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("tests/admission"))
        .expect("tests/admission")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            p.strip_prefix(root())
                .expect("under the root")
                .display()
                .to_string()
        })
        .collect();
    files.sort();
    files
}

#[test]
fn committed_cases_pass_and_cover_every_rule_and_mutation() {
    let files = committed();
    let mut args = vec!["test", "--format", "json"];
    args.extend(files.iter().map(String::as_str));
    let (out, err, code) = meshguard(&args);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    let tests = v["tests"].as_array().expect("tests");
    let admission: Vec<&Value> = tests.iter().filter(|t| t["kind"] == "admission").collect();
    assert!(admission.iter().all(|t| t["passed"] == true));
    let mut fired = BTreeSet::new();
    let mut applied = BTreeSet::new();
    let mut operations = BTreeSet::new();
    for t in &admission {
        for r in t["got"]["rules"].as_array().into_iter().flatten() {
            fired.insert(r.as_str().unwrap_or("").to_owned());
            operations.insert((
                r.as_str().unwrap_or("").to_owned(),
                t["operation"].as_str().unwrap_or("").to_owned(),
            ));
        }
        for m in t["got"]["mutations"].as_array().into_iter().flatten() {
            applied.insert(m.as_str().unwrap_or("").to_owned());
        }
    }
    let missing: Vec<&str> = meshguard::rules::REGISTRY
        .iter()
        .map(|r| r.id)
        .filter(|id| !fired.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "admission rules without a case in tests/admission/*.yaml that shows them fire: {missing:?} (add one: meshguard test --record turns a captured AdmissionReview into a case)"
    );
    let unmutated: Vec<&str> = meshguard::mutation::REGISTRY
        .iter()
        .map(|m| m.id)
        .filter(|id| !applied.contains(*id))
        .collect();
    assert!(
        unmutated.is_empty(),
        "mutations without a mutate case that applies them: {unmutated:?}"
    );
    // The rules that judge UPDATE and DELETE are shown on them.
    for (rule, op) in [
        ("pa-weakening-delete", "DELETE"),
        ("ap-deny-all-delete", "DELETE"),
        ("pa-permissive-mtls", "UPDATE"),
        ("ns-injection-missing", "UPDATE"),
        ("ns-platform-label-change", "UPDATE"),
        ("wl-traffic-bypass", "UPDATE"),
    ] {
        assert!(
            operations.contains(&(rule.to_owned(), op.to_owned())),
            "no {op} case for {rule}"
        );
    }
}

/// A file with one request test and admission cases, one of which fails (after `manifests:`).
const MIXED: &str = r#"tests:
  - name: frontend reads /api/data
    from: production/frontend
    to: production/backend
    request: {method: GET, path: /api/data, headers: {x-api-version: v1}}
    expect: allow
  - name: PERMISSIVE refused
    admission:
      object: {apiVersion: security.istio.io/v1, kind: PeerAuthentication,
               metadata: {name: default, namespace: production}, spec: {mtls: {mode: PERMISSIVE}}}
    expect: {result: denied, rules: [pa-permissive-mtls]}
  - name: wrongly expected to pass
    admission:
      operation: DELETE
      object: {apiVersion: security.istio.io/v1, kind: PeerAuthentication,
               metadata: {name: default-strict, namespace: production}, spec: {mtls: {mode: STRICT}}}
    expect: {result: allowed}
"#;

#[test]
fn mixed_files_run_both_kinds_in_one_report() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("mixed.yaml");
    let tutorial = root().join("tests/fixtures/tutorial");
    std::fs::write(
        &file,
        format!("manifests: [{}]\n{MIXED}", tutorial.display()),
    )
    .expect("write");
    let junit = dir.path().join("junit.xml");
    let (out, err, code) = meshguard(&[
        "test",
        file.to_str().expect("utf-8"),
        "--junit",
        junit.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("PASS ") && lines[0].contains(":3  frontend reads"),
        "{out}"
    );
    assert!(
        lines[1].contains(":8  PERMISSIVE refused (denied: pa-permissive-mtls)"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("FAIL ")
            && lines[2].contains(
                "wrongly expected to pass: expected allowed, got denied (pa-weakening-delete)"
            ),
        "{out}"
    );
    assert_eq!(lines[3], "3 tests: 2 passed, 1 failed");
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("tests=\"3\" failures=\"1\""), "{xml}");
    assert!(
        xml.contains("<testcase name=\"PERMISSIVE refused\""),
        "{xml}"
    );
    assert!(xml.contains("expected allowed, got denied"), "{xml}");
}

#[test]
fn bad_admission_entries_exit_two_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases = [
        (
            "update.yaml",
            "tests:\n  - name: u\n    admission:\n      operation: UPDATE\n      object: {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n    expect: {result: denied}\n",
            "update.yaml:2: test \"u\": an UPDATE needs object and oldObject",
        ),
        (
            "field.yaml",
            "tests:\n  - name: f\n    admission:\n      objekt: {}\n    expect: {result: denied}\n",
            "field.yaml:2: test \"f\": unknown field `objekt`",
        ),
        (
            "file.yaml",
            "tests:\n  - name: m\n    admission:\n      objectFile: missing.yaml\n    expect: {result: denied}\n",
            "file.yaml:2: test \"m\": objectFile:",
        ),
        (
            "policy.yaml",
            "policy: nope.yaml\ntests:\n  - name: p\n    admission:\n      object: {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n    expect: {result: denied}\n",
            "nope.yaml",
        ),
    ];
    for (name, text, want) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text).expect("write");
        let (out, err, code) = meshguard(&["test", file.to_str().expect("utf-8")]);
        assert_eq!(code, 2, "{name}: {out}{err}");
        assert!(err.contains(want), "{name}: want {want:?} in {err}");
        assert!(out.is_empty(), "{name}: {out}");
    }
}

#[test]
fn recorded_reviews_replay_to_the_same_verdict() {
    let fixtures = [
        "tests/fixtures/admission/peerauthentication-update-strict-to-permissive.json",
        "tests/fixtures/admission/authorizationpolicy-delete.json",
        "tests/fixtures/admission/namespace-create.json",
        "tests/fixtures/admission/deployment-create.json",
        "tests/fixtures/admission/pod-create-by-replicaset.json",
    ];
    let mut args = vec!["test", "tests/fixtures/tutorial"];
    for f in fixtures {
        args.extend(["--record", f]);
    }
    let (out, err, code) = meshguard(&args);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("# Recorded by `meshguard test --record`"),
        "{out}"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("recorded.yaml");
    // The recorded cases ran against the tutorial: replay them against it.
    let tutorial = root().join("tests/fixtures/tutorial");
    std::fs::write(&file, format!("manifests: [{}]\n{out}", tutorial.display())).expect("write");
    let (replayed, err, code) = meshguard(&["test", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{replayed}{err}\n{out}");
    // One validating case per review, and mutating ones where the review gets a patch.
    assert!(replayed.contains("tests: ") && replayed.lines().count() > fixtures.len());
    assert!(
        replayed.contains("(denied: pa-permissive-mtls, pa-weakening-delete)"),
        "{replayed}"
    );
    assert!(
        replayed
            .contains("namespace-create (recorded, mutate) (patched: namespace-injection-label)"),
        "{replayed}"
    );
}
