//! One exit-code enum for every command (`meshguard::exit::Exit`, docs/commands.md "Exit
//! codes"), pinned per command by running the binary; and the shared mesh flags
//! (`--mesh-config`, `--istio-namespace`) changing `simulate`'s and `test`'s verdicts as they
//! change `check`'s.

use crate::common::meshguard_in;
use meshguard::exit::Exit;
use std::path::Path;

const APPS: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: api, namespace: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      containers: [{name: web, image: web:1, ports: [{containerPort: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      serviceAccountName: api
      containers: [{name: api, image: api:1, ports: [{containerPort: 8080}]}]
"#;

/// A DENY policy in `mesh-root`, which is the root namespace only when the mesh says so: by
/// `--mesh-config`, or by the `istio` ConfigMap in `istio-custom` when that is the Istio
/// namespace (`--istio-namespace`).
const ROOT: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-web, namespace: mesh-root}
spec:
  action: DENY
  rules: [{from: [{source: {principals: ["*/ns/shop/sa/web"]}}]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-custom}
data:
  mesh: "rootNamespace: mesh-root\n"
"#;

/// An ALLOW policy naming a principal of the trust domain `corp.example`.
const TRUST_DOMAIN: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-corp, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  action: ALLOW
  rules: [{from: [{source: {principals: ["corp.example/ns/shop/sa/web"]}}]}]
"#;

/// The fixture: `root/` and `td/` (the apps and one of the policies each), the two MeshConfig
/// files, and a test file over `root/` expecting the DENY.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    for (sub, policy) in [("root", ROOT), ("td", TRUST_DOMAIN)] {
        std::fs::create_dir(p.join(sub)).expect("mkdir");
        std::fs::write(p.join(sub).join("apps.yaml"), APPS).expect("write");
        std::fs::write(p.join(sub).join("policy.yaml"), policy).expect("write");
    }
    std::fs::write(p.join("root-ns.yaml"), "rootNamespace: mesh-root\n").expect("write");
    std::fs::write(p.join("corp.yaml"), "trustDomain: corp.example\n").expect("write");
    std::fs::write(
        p.join("deny.test.yaml"),
        "manifests: [root/]\ntests:\n  - name: web is denied mesh-wide\n    from: shop/web\n    to: shop/api\n    expect: deny\n",
    )
    .expect("write");
    dir
}

#[test]
fn simulate_reads_the_mesh_flags() {
    let dir = fixture();
    let d = dir.path();
    let simulate = |extra: &[&str]| {
        let mut args = vec!["simulate", "root", "--from", "shop/web", "--to", "shop/api"];
        args.extend_from_slice(extra);
        let (out, err, code) = meshguard_in(d, &args);
        (code, out.lines().next().unwrap_or_default().to_owned(), err)
    };
    // Without the flags mesh-root is an ordinary namespace: its policy applies to nothing here.
    let (code, verdict, err) = simulate(&[]);
    assert_eq!((code, verdict.as_str()), (0, "ALLOW"), "{err}");
    // The MeshConfig file makes it the root namespace: its DENY is mesh-wide.
    let (code, verdict, err) = simulate(&["--mesh-config", "root-ns.yaml"]);
    assert_eq!((code, verdict.as_str()), (1, "DENY"), "{err}");
    // So does the `istio` ConfigMap of the input, once its namespace is Istio's.
    let (code, verdict, err) = simulate(&["--istio-namespace", "istio-custom"]);
    assert_eq!((code, verdict.as_str()), (1, "DENY"), "{err}");

    // The trust domain: the caller presents corp.example/ns/shop/sa/web only under it.
    let td = |extra: &[&str]| {
        let mut args = vec!["simulate", "td", "--from-workload", "shop/web"];
        args.extend_from_slice(&["--to", "shop/api"]);
        args.extend_from_slice(extra);
        let (out, err, code) = meshguard_in(d, &args);
        (code, out, err)
    };
    let (code, out, err) = td(&[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("cluster.local/ns/shop/sa/web"), "{out}");
    let (code, out, err) = td(&["--mesh-config", "corp.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("corp.example/ns/shop/sa/web"), "{out}");
    // The policy file wins over the MeshConfig file, as in `check`.
    std::fs::write(d.join("policy.yaml"), "trustDomain: cluster.local\n").expect("write");
    let (code, _, err) = td(&["--mesh-config", "corp.yaml", "--config", "policy.yaml"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn test_reads_the_mesh_flags() {
    let dir = fixture();
    let d = dir.path();
    let (out, err, code) = meshguard_in(d, &["test", "deny.test.yaml"]);
    assert_eq!(code, 1, "mesh-root is not the root namespace: {out}{err}");
    assert!(out.contains("FAIL"), "{out}");
    for flags in [
        ["--mesh-config", "root-ns.yaml"],
        ["--istio-namespace", "istio-custom"],
    ] {
        let mut args = vec!["test", "deny.test.yaml"];
        args.extend_from_slice(&flags);
        let (out, err, code) = meshguard_in(d, &args);
        assert_eq!(code, 0, "{flags:?}: {out}{err}");
        assert!(out.contains("PASS"), "{out}");
    }
    // An unreadable MeshConfig file is refused before any test runs.
    let (out, err, code) =
        meshguard_in(d, &["test", "deny.test.yaml", "--mesh-config", "nope.yaml"]);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(err.contains("--mesh-config nope.yaml"), "{err}");
}

#[test]
fn check_reads_the_same_mesh_flags() {
    // `check` is where the flags came from: its JSON names where the root namespace came from.
    let dir = fixture();
    let d = dir.path();
    let root_ns = |extra: &[&str]| {
        let mut args = vec!["check", "root", "--format", "json"];
        args.extend_from_slice(extra);
        let (out, err, code) = meshguard_in(d, &args);
        assert!(code <= 1, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        v["meshContext"]["rootNamespace"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(root_ns(&[]), "istio-system");
    assert_eq!(root_ns(&["--mesh-config", "root-ns.yaml"]), "mesh-root");
    assert_eq!(root_ns(&["--istio-namespace", "istio-custom"]), "mesh-root");
}

/// Each command's 0, 1 and 2 (where it has them), as docs/commands.md tables them.
#[test]
fn every_command_exits_with_the_documented_codes() {
    let dir = fixture();
    let d = dir.path();
    std::fs::write(
        d.join("clean.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\ndata: {a: b}\n",
    )
    .expect("write");
    std::fs::write(d.join("bad-policy.yaml"), "rules: [not, a, map]\n").expect("write");
    std::fs::write(
        d.join("bad.test.yaml"),
        "manifests: [root/]\ntests:\n  - name: no caller\n    to: shop/api\n    expect: deny\n",
    )
    .expect("write");
    std::fs::write(
        d.join("unreachable.kubeconfig"),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\"}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n",
    )
    .expect("write");
    let tutorial = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check/tutorial");
    let tutorial = tutorial.to_str().expect("utf-8 path");
    let (ok, findings, error) = (Exit::Ok.code(), Exit::Findings.code(), Exit::Error.code());
    let cases: Vec<(&str, Vec<&str>, i32)> = vec![
        ("check clean", vec!["check", "clean.yaml"], ok),
        ("check deny findings", vec!["check", tutorial], findings),
        ("check missing path", vec!["check", "nope/"], error),
        (
            "check bad policy",
            vec!["check", "clean.yaml", "--config", "bad-policy.yaml"],
            error,
        ),
        (
            "check bad mesh config",
            vec!["check", "clean.yaml", "--mesh-config", "nope.yaml"],
            error,
        ),
        ("check usage", vec!["check"], error),
        (
            "audit unreachable cluster",
            vec!["audit", "--kubeconfig", "unreachable.kubeconfig"],
            error,
        ),
        (
            "audit bad policy",
            vec!["audit", "--config", "bad-policy.yaml"],
            error,
        ),
        (
            "simulate allow",
            vec!["simulate", "root", "--from", "shop/web", "--to", "shop/api"],
            ok,
        ),
        (
            "simulate deny",
            vec![
                "simulate",
                "root",
                "--from",
                "shop/web",
                "--to",
                "shop/api",
                "--mesh-config",
                "root-ns.yaml",
            ],
            findings,
        ),
        (
            "simulate unknown workload",
            vec![
                "simulate",
                "root",
                "--from",
                "shop/web",
                "--to",
                "shop/nope",
            ],
            error,
        ),
        (
            "simulate unreachable cluster",
            vec![
                "simulate",
                "--cluster",
                "--kubeconfig",
                "unreachable.kubeconfig",
                "--from",
                "shop/web",
                "--to",
                "shop/api",
            ],
            error,
        ),
        (
            "test pass",
            vec!["test", "deny.test.yaml", "--mesh-config", "root-ns.yaml"],
            ok,
        ),
        ("test fail", vec!["test", "deny.test.yaml"], findings),
        ("test bad file", vec!["test", "bad.test.yaml"], error),
        (
            "report written",
            vec!["report", "root", "--html", "page.html"],
            ok,
        ),
        (
            "report unwritable",
            vec!["report", "root", "--html", "nope/page.html"],
            error,
        ),
        (
            "report bad mesh config",
            vec![
                "report",
                "root",
                "--html",
                "p.html",
                "--mesh-config",
                "nope.yaml",
            ],
            error,
        ),
        ("diff nothing changed", vec!["diff", "root", "root"], ok),
        // td's ALLOW policy restricts api; without it anyone reaches api again.
        ("diff opened", vec!["diff", "td", "root"], findings),
        ("diff missing path", vec!["diff", "root", "nope"], error),
        ("rules", vec!["rules"], ok),
        (
            "rules bad policy",
            vec!["rules", "--config", "bad-policy.yaml"],
            error,
        ),
        ("certs", vec!["certs", "--out", "certs"], ok),
        // Existing files without --force: an error (it was 1 before the one enum).
        ("certs exist", vec!["certs", "--out", "certs"], error),
        ("generate", vec!["generate", "admission-policies"], ok),
        (
            "generate bad policy",
            vec![
                "generate",
                "admission-policies",
                "--config",
                "bad-policy.yaml",
            ],
            error,
        ),
        (
            "serve bad policy",
            vec!["serve", "--no-cluster", "--config", "bad-policy.yaml"],
            error,
        ),
        (
            "auditor bad policy",
            vec!["auditor", "--config", "bad-policy.yaml"],
            error,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, args, want) in &cases {
        let (out, err, code) = meshguard_in(d, args);
        if code != *want {
            wrong.push(format!("{name}: exit {code}, want {want}\n{out}{err}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n---\n"));
}

/// `--kubeconfig` and `--context` choose the cluster `--cluster` reads: without it they would be
/// ignored (the manifests are read), so `simulate`, `test` and `report` refuse them with a
/// usage error (exit 2). `audit` always reads a cluster: there they stand alone.
#[test]
fn cluster_flags_without_cluster_are_refused() {
    let dir = fixture();
    let d = dir.path();
    let runs: [(&str, Vec<&str>); 3] = [
        (
            "simulate",
            vec!["simulate", "root", "--from", "shop/web", "--to", "shop/api"],
        ),
        (
            "test",
            vec!["test", "deny.test.yaml", "--mesh-config", "root-ns.yaml"],
        ),
        ("report", vec!["report", "root", "--html", "page.html"]),
    ];
    for (name, args) in &runs {
        // Quiet: the same run without the flag succeeds.
        let (out, err, code) = meshguard_in(d, args);
        assert_eq!(code, Exit::Ok.code(), "{name}: {out}{err}");
        for flag in [["--kubeconfig", "some.kubeconfig"], ["--context", "c"]] {
            let mut with = args.clone();
            with.extend_from_slice(&flag);
            let (out, err, code) = meshguard_in(d, &with);
            assert_eq!(code, Exit::Error.code(), "{name} {flag:?}: {out}{err}");
            assert!(err.starts_with("error: "), "{name} {flag:?}: {err}");
            assert!(err.contains(flag[0]), "{name} {flag:?}: {err}");
            assert!(
                err.contains("add --cluster") && !err.contains("not provided"),
                "{name} {flag:?}: the refusal says how to fix it: {err}"
            );
            assert!(err.contains(&format!("meshguard {name}")), "{name}: {err}");
            assert!(out.is_empty(), "{name} {flag:?}: {out}");
        }
        // Without the manifests too: the flag is what is wrong, not the missing manifests.
        let bare: Vec<&str> = args.iter().copied().filter(|a| *a != "root").collect();
        if *name != "test" {
            let mut with = bare.clone();
            with.extend_from_slice(&["--kubeconfig", "some.kubeconfig"]);
            let (_, err, code) = meshguard_in(d, &with);
            assert_eq!(code, Exit::Error.code(), "{name}: {err}");
            assert!(err.contains("add --cluster"), "{name}: {err}");
        }
        // With `--cluster` they are what they say (no manifests then, except `test`'s files).
        let mut live: Vec<&str> = args.iter().copied().filter(|a| *a != "root").collect();
        live.extend_from_slice(&["--cluster", "--kubeconfig", "nope.kubeconfig"]);
        let (_, err, code) = meshguard_in(d, &live);
        assert_eq!(code, Exit::Error.code(), "{name}: {err}");
        assert!(
            !err.starts_with("error: "),
            "{name}: not a usage error: {err}"
        );
    }
    // `audit`: the flags alone are valid; an unreadable kubeconfig is a run error, not usage.
    let (_, err, code) = meshguard_in(d, &["audit", "--kubeconfig", "nope.kubeconfig"]);
    assert_eq!(code, Exit::Error.code(), "{err}");
    assert!(!err.starts_with("error: "), "not a usage error: {err}");
}
