//! `meshguard simulate` and `meshguard test` end to end: the real binary over the tutorial
//! manifests (tests/fixtures/tutorial) and the tutorial's authorization test file
//! (tests/fixtures/authz/tutorial.yaml): exit codes, the JSON shape, the explanations, and bad
//! input.

use crate::common::{meshguard, root};
use serde_json::Value;
use std::process::Command;

const TUTORIAL: &str = "tests/fixtures/tutorial";
const TESTS: &str = "tests/fixtures/authz/tutorial.yaml";

/// `simulate TUTORIAL ARGS --format json`, parsed; with the exit code.
fn simulate_json(args: &[&str]) -> (Value, i32) {
    let mut all = vec!["simulate", TUTORIAL, "--format", "json"];
    all.extend_from_slice(args);
    let (out, err, code) = meshguard(&all);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (v, code)
}

#[test]
fn allowed_request_exits_zero_and_names_the_rule() {
    let (out, _, code) = meshguard(&[
        "simulate",
        TUTORIAL,
        "--from",
        "production/frontend",
        "--to",
        "production/backend",
        "--method",
        "GET",
        "--path",
        "/api/data",
        "--header",
        "x-api-version=v1",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ALLOW\n"), "{out}");
    assert!(
        out.contains("decided by:  production/backend-rbac rules[0] (ALLOW)"),
        "{out}"
    );
    assert!(
        out.contains("mTLS:        STRICT (production/backend-strict, port)"),
        "{out}"
    );
}

#[test]
fn default_deny_json_has_the_documented_shape() {
    let (v, code) = simulate_json(&[
        "--from",
        "production/frontend",
        "--to",
        "production/backend",
        "--method",
        "GET",
        "--path",
        "/api/users",
        "--header",
        "x-api-version=v1",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["verdict"], "deny");
    assert!(
        v["decidedBy"].is_null(),
        "a default deny has no deciding rule"
    );
    assert_eq!(v["mtls"]["mode"], "STRICT");
    assert_eq!(
        v["mtls"]["decidedBy"]["policy"],
        "production/backend-strict"
    );
    assert_eq!(v["mtls"]["decidedBy"]["level"], "port");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no ALLOW rule matches")),
        "{v}"
    );
    let misses = v["nearMisses"].as_array().expect("nearMisses");
    assert_eq!(misses[0]["policy"], "production/frontend-to-backend");
    assert_eq!(misses[0]["rule"], 0);
    assert_eq!(misses[0]["field"], "spec.rules[0].when[0]");
    let reason = misses[0]["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("when request.headers[\"x-api-version\"] is absent")
            && reason.ends_with("want one of [v1 v2]"),
        "{reason}"
    );
    assert_eq!(
        misses[1]["reason"],
        "to[0] path is /api/users, want one of [/api/data]"
    );
    assert_eq!(v["request"]["protocol"], "HTTP");
    assert_eq!(v["request"]["port"], 80);
}

#[test]
fn deny_json_names_the_deciding_rule_shape() {
    let (v, code) = simulate_json(&[
        "--from",
        "production/admin",
        "--to",
        "production/backend",
        "--method",
        "DELETE",
        "--path",
        "/api/",
    ]);
    assert_eq!(code, 0);
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["decidedBy"]["policy"], "production/backend-rbac");
    assert_eq!(v["decidedBy"]["action"], "ALLOW");
    assert_eq!(v["decidedBy"]["rule"], 1);
    assert_eq!(v["nearMisses"], Value::Array(Vec::new()));
}

#[test]
fn plaintext_to_strict_is_refused_at_the_connection() {
    let (out, _, code) = meshguard(&[
        "simulate",
        TUTORIAL,
        "--plaintext",
        "--to",
        "production/backend",
    ]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("DENY (connection refused: STRICT mTLS, plaintext client)\n"),
        "{out}"
    );
    let (v, _) = simulate_json(&["--plaintext", "--to", "production/frontend"]);
    assert_eq!(
        v["mtls"]["decidedBy"]["policy"],
        "production/default-strict"
    );
    assert_eq!(v["mtls"]["decidedBy"]["level"], "namespace");
}

#[test]
fn tokens_are_checked_before_authorization() {
    let (v, code) = simulate_json(&[
        "--from",
        "production/frontend",
        "--to",
        "production/backend",
        "--path",
        "/api/data",
        "--jwt",
        "https://evil.example.com/alice",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["headline"], "DENY (401: token issuer not accepted)");
    let (v, _) = simulate_json(&[
        "--from",
        "production/frontend",
        "--to",
        "production/backend",
        "--path",
        "/api/data",
        "--jwt",
        "https://auth.example.com/alice",
        "--audience",
        "x",
    ]);
    assert_eq!(v["headline"], "DENY (401: token audience not accepted)");
    // Accepted: the request principal is reported, and the quoted claim key is the near miss.
    let (v, code) = simulate_json(&[
        "--from",
        "production/frontend",
        "--to",
        "production/backend",
        "--path",
        "/api/secure/data",
        "--jwt",
        "https://auth.example.com/alice",
        "--audience",
        "api.example.com",
        "--claim",
        "role=admin",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["requestPrincipal"], "https://auth.example.com/alice");
    assert_eq!(v["nearMisses"][0]["policy"], "production/jwt-authz");
    // The frontend has no RequestAuthentication: the token is not even looked at.
    let (v, _) = simulate_json(&[
        "--from",
        "istio-system/gw",
        "--to",
        "production/frontend",
        "--path",
        "/",
        "--jwt",
        "https://evil.example.com/alice",
    ]);
    assert_eq!(v["verdict"], "allow");
    assert!(v["notes"].to_string().contains("not validated"), "{v}");
}

#[test]
fn tcp_requests_skip_allow_rules_with_http_fields() {
    let (v, code) = simulate_json(&[
        "--from",
        "production/frontend",
        "--to",
        "production/backend",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["request"]["protocol"], "TCP");
    assert!(
        v["nearMisses"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("never matches a TCP request")),
        "{v}"
    );
}

#[test]
fn from_workload_uses_its_service_account() {
    let (v, code) = simulate_json(&[
        "--from-workload",
        "production/frontend",
        "--to",
        "production/backend",
        "--path",
        "/api/data",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["peer"], "cluster.local/ns/production/sa/default");
    assert!(
        v["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("serviceAccountName")),
        "{v}"
    );
}

#[test]
fn stdin_manifests() {
    let text = std::fs::read_to_string(root().join(TUTORIAL).join("test-apps.yaml")).expect("read");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args([
            "simulate",
            "-",
            "--plaintext",
            "--to",
            "production/backend",
            "--format",
            "json",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "no policies: allowed");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["mtls"]["mode"], "PERMISSIVE");
    assert!(v["mtls"]["decidedBy"].is_null());
}

#[test]
fn bad_input_exits_two_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tmp");
    let two_ports = dir.path().join("two-ports.yaml");
    std::fs::write(
        &two_ports,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nspec:\n  containers:\n  - name: c\n    ports: [{containerPort: 80}, {containerPort: 8080}]\n",
    )
    .expect("write");
    let two_ports = two_ports.to_str().expect("utf-8");
    let cases: &[(&[&str], &str)] = &[
        (&["simulate", TUTORIAL, "--from", "production/frontend", "--to", "production/nope"],
         "no workload named nope in namespace production (it has deployment/backend, deployment/frontend)"),
        (&["simulate", TUTORIAL, "--from", "frontend", "--to", "production/backend"],
         "frontend: want NAMESPACE/SERVICEACCOUNT"),
        (&["simulate", "does-not-exist.yaml", "--plaintext", "--to", "production/backend"],
         "does-not-exist.yaml"),
        (&["simulate", TUTORIAL, "--to", "production/backend"], "--from"),
        (&["simulate", TUTORIAL, "--plaintext", "--from", "a/b", "--to", "production/backend"],
         "cannot be used with"),
        (&["simulate", TUTORIAL, "--plaintext", "--to", "production/backend", "--jwt", "nobody"],
         "want ISSUER/SUBJECT"),
        (&["simulate", TUTORIAL, "--plaintext", "--to", "production/backend", "--header", "x"],
         "x: want KEY=VALUE"),
        (&["simulate", TUTORIAL, "--plaintext", "--to", "production/backend", "--path", "api"],
         "a request path starts with /"),
        (&["simulate", two_ports, "--plaintext", "--to", "a/p"],
         "pod a/p declares ports 80, 8080: choose one (--port)"),
        (&["simulate", TUTORIAL, "--plaintext", "--to", "production/backend", "--claim", "a=b"],
         "--jwt"),
    ];
    for (args, want) in cases {
        let (out, err, code) = meshguard(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
        assert!(out.is_empty(), "{args:?}: nothing on stdout: {out}");
    }
}

#[test]
fn the_tutorial_test_file_passes() {
    let (out, err, code) = meshguard(&["test", TESTS]);
    assert_eq!(code, 0, "{out}{err}");
    let passes = out.lines().filter(|l| l.starts_with("PASS  ")).count();
    assert_eq!(passes, 28, "{out}");
    assert!(out.ends_with("28 tests: 28 passed, 0 failed\n"), "{out}");
    assert!(
        out.contains(&format!(
            "PASS  {TESTS}:26  frontend reads /api/data with x-api-version (allow)"
        )),
        "{out}"
    );
}

#[test]
fn a_mismatch_exits_one_with_the_reason_and_junit() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("t.yaml");
    let manifests = root().join(TUTORIAL);
    std::fs::write(
        &file,
        format!(
            "manifests: [{}]\ntests:\n  - name: health\n    from: production/frontend\n    to: production/backend\n    request: {{method: GET, path: /health, headers: {{x-api-version: v1}}}}\n    expect: allow\n  - name: tcp\n    from: production/frontend\n    to: production/backend\n    expect: deny\n",
            manifests.display()
        ),
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
    let fail = out
        .lines()
        .find(|l| l.starts_with("FAIL"))
        .expect("a FAIL line");
    assert!(
        fail.contains("t.yaml:3  health: expected allow, got DENY: no ALLOW rule matches"),
        "{fail}"
    );
    assert!(fail.contains("(closest: production/frontend-to-backend rules[0]: when request.headers[\"x-api-version\"] is absent"), "{fail}");
    assert!(out.contains("t.yaml:8  tcp (deny)"), "{out}");
    assert!(out.ends_with("2 tests: 1 passed, 1 failed\n"), "{out}");
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(
        xml.contains("<testsuites name=\"meshguard test\" tests=\"2\" failures=\"1\">"),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"expected allow, got DENY\">"),
        "{xml}"
    );
    assert!(xml.contains("<testcase name=\"tcp\""), "{xml}");
}

#[test]
fn bad_test_files_exit_two_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let manifests = root().join(TUTORIAL);
    let head = format!("manifests: [{}]\ntests:\n", manifests.display());
    let ok = "  - name: ok\n    from: production/frontend\n    to: production/backend\n    expect: deny\n";
    let cases: &[(&str, String, &str)] = &[
        ("field.yaml", format!("{head}{ok}  - name: typo\n    from: a/b\n    too: production/backend\n    expect: deny\n"),
         "field.yaml:9: unknown field `too`"),
        ("expect.yaml", format!("{head}{ok}  - name: e\n    from: a/b\n    to: production/backend\n    expect: maybe\n"),
         "expect.yaml:10: unknown variant `maybe`"),
        ("workload.yaml", format!("{head}{ok}  - name: w\n    from: a/b\n    to: production/nope\n    expect: deny\n"),
         "workload.yaml:7: test \"w\": production/nope: no workload named nope"),
        ("caller.yaml", format!("{head}{ok}  - name: c\n    plaintext: true\n    from: a/b\n    to: production/backend\n    expect: deny\n"),
         "caller.yaml:7: test \"c\": give exactly one of from, fromWorkload and plaintext"),
        ("nomanifests.yaml", format!("tests:\n{ok}"), "nomanifests.yaml: no manifests"),
        ("badmanifests.yaml", format!("manifests: [missing/]\ntests:\n{ok}"), "missing"),
    ];
    for (name, text, want) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text).expect("write");
        let (out, err, code) = meshguard(&["test", file.to_str().expect("utf-8")]);
        assert_eq!(code, 2, "{name}: {out}{err}");
        assert!(err.contains(want), "{name}: want {want:?} in {err}");
        assert!(
            out.is_empty(),
            "{name}: no verdicts printed for a bad file: {out}"
        );
    }
    let (_, err, code) = meshguard(&["test", TUTORIAL]);
    assert_eq!(code, 2);
    assert!(err.contains("no test file"), "{err}");
}

#[test]
fn a_test_file_inside_its_manifest_directory_is_not_read_as_a_manifest() {
    let dir = tempfile::tempdir().expect("tmp");
    for f in [
        "test-apps.yaml",
        "authz-deny-all.yaml",
        "peer-auth-strict.yaml",
    ] {
        std::fs::copy(root().join(TUTORIAL).join(f), dir.path().join(f)).expect("copy");
    }
    let file = dir.path().join("authz-tests.yaml");
    std::fs::write(
        &file,
        "manifests: [./]\ntests:\n  - name: all denied\n    from: production/frontend\n    to: production/backend\n    request: {path: /}\n    expect: deny\n",
    )
    .expect("write");
    let (out, err, code) = meshguard(&["test", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    // Extra manifests on the command line join the file's own.
    let extra = root().join(TUTORIAL).join("authz-rbac.yaml");
    std::fs::write(
        &file,
        "manifests: [./]\ntests:\n  - name: rbac allows\n    from: production/frontend\n    to: production/backend\n    request: {path: /api/data}\n    expect: allow\n",
    )
    .expect("write");
    let (out, err, code) = meshguard(&[
        "test",
        file.to_str().expect("utf-8"),
        extra.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The decision runs in the mesh as installed: a MeshConfig in the input with another trust
/// domain gives callers identities in that domain, so a policy naming them matches; without it
/// the identities are `cluster.local/...` and the same policy does not.
#[test]
fn the_trust_domain_comes_from_the_mesh_in_the_input() {
    let dir = tempfile::tempdir().expect("tmp");
    let app = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: prod}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      serviceAccountName: {name}\n      containers: [{{name: app, image: app, ports: [{{containerPort: 8080}}]}}]\n"
        )
    };
    let manifests = format!(
        "{}---\n{}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: web-from-client, namespace: prod}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  rules: [{{from: [{{source: {{principals: [corp.example/ns/prod/sa/client]}}}}]}}]\n",
        app("web"),
        app("client")
    );
    std::fs::write(dir.path().join("apps.yaml"), manifests).expect("write");
    let path = dir.path().to_string_lossy().to_string();
    let ask = |path: &str| {
        let (out, err, code) = meshguard(&[
            "simulate",
            path,
            "--from",
            "prod/client",
            "--to",
            "prod/web",
            "--format",
            "json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        (v, code)
    };
    let (v, code) = ask(&path);
    assert_eq!((v["verdict"].as_str(), code), (Some("deny"), 1), "{v:#}");
    std::fs::write(
        dir.path().join("mesh.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    trustDomain: corp.example\n",
    )
    .expect("write");
    let (v, code) = ask(&path);
    assert_eq!((v["verdict"].as_str(), code), (Some("allow"), 0), "{v:#}");
}

const AMBIENT: &str = "tests/fixtures/ambient";

/// `simulate AMBIENT ARGS --format json`, parsed; with the exit code.
fn ambient_json(args: &[&str]) -> (Value, i32) {
    let mut all = vec!["simulate", AMBIENT, "--format", "json"];
    all.extend_from_slice(args);
    let (out, err, code) = meshguard(&all);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (v, code)
}

#[test]
fn the_ambient_test_file_passes() {
    let (out, err, code) = meshguard(&["test", "tests/fixtures/authz/ambient.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with("30 tests: 30 passed, 0 failed\n"), "{out}");
}

#[test]
fn service_addressed_requests_go_through_the_waypoint_hop_by_hop() {
    let (v, code) = ambient_json(&[
        "--from",
        "shop/frontend",
        "--to",
        "shop/Service/reviews",
        "--method",
        "POST",
        "--path",
        "/reviews",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["headline"], "DENY at waypoint shop/waypoint");
    let hops = v["hops"].as_array().expect("hops");
    assert_eq!(hops.len(), 2);
    assert_eq!(hops[0]["enforcer"], "waypoint");
    assert_eq!(hops[0]["peer"], "cluster.local/ns/shop/sa/frontend");
    assert_eq!(hops[0]["verdict"], "deny");
    assert_eq!(hops[1]["enforcer"], "ztunnel");
    assert!(hops[1]["verdict"].is_null(), "not reached: {v}");
    assert_eq!(v["request"]["addressed"], "service");
    assert_eq!(v["request"]["caller"], "ambient");
    assert_eq!(v["request"]["workloads"][0]["port"], 9080);

    // Allowed: the destination ztunnel sees the waypoint's identity.
    let (v, code) = ambient_json(&[
        "--from",
        "shop/frontend",
        "--to",
        "shop/Service/reviews",
        "--method",
        "GET",
        "--path",
        "/reviews/1",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["hops"][1]["peer"], "cluster.local/ns/shop/sa/waypoint");
    assert_eq!(v["decidedBy"]["policy"], "shop/reviews-only-via-waypoint");

    // The same client by pod IP skips the waypoint and is denied at the pod's ztunnel.
    let (out, _, code) = meshguard(&[
        "simulate",
        AMBIENT,
        "--from-workload",
        "shop/frontend",
        "--to",
        "shop/reviews",
        "--method",
        "GET",
        "--path",
        "/reviews/1",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  path:        ambient caller → ztunnel of deployment shop/reviews\n"),
        "{out}"
    );
    assert!(
        out.contains("the Service's waypoint shop/waypoint is skipped"),
        "{out}"
    );
}

#[test]
fn sidecar_and_gateway_callers_skip_or_use_waypoints_as_istio_does() {
    let (out, _, code) = meshguard(&[
        "simulate",
        AMBIENT,
        "--from",
        "payments/billing",
        "--to",
        "shop/Service/reviews",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("sidecar callers never use waypoints"), "{out}");
    let (v, code) = ambient_json(&[
        "--from-workload",
        "ingress/Gateway/public",
        "--to",
        "shop/Service/reviews",
        "--method",
        "GET",
        "--path",
        "/",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["request"]["caller"], "gateway");
    assert_eq!(
        v["hops"][0]["peer"],
        "cluster.local/ns/ingress/sa/public-istio"
    );
    // Gateway identities are known: no "ServiceAccount not in the input" note.
    let (v, _) = ambient_json(&[
        "--from",
        "ingress/public-istio",
        "--to",
        "shop/Service/frontend",
    ]);
    assert_eq!(v["request"]["caller"], "gateway");
    assert!(!v["notes"].to_string().contains("not in the input"), "{v}");
    assert!(
        v["notes"].to_string().contains("ingress-use-waypoint"),
        "{v}"
    );
}

#[test]
fn unknown_services_and_ports_are_usage_errors() {
    let (_, err, code) = meshguard(&[
        "simulate",
        AMBIENT,
        "--from",
        "shop/frontend",
        "--to",
        "shop/Service/nope",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no Service named nope in namespace shop (it has "),
        "{err}"
    );
    let (_, err, code) = meshguard(&[
        "simulate",
        AMBIENT,
        "--from",
        "shop/frontend",
        "--to",
        "shop/Service/reviews",
        "--port",
        "1",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("Service shop/reviews has no port 1 (its ports: 9080)"),
        "{err}"
    );
}
