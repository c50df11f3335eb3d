//! `meshguard diff` end to end: the real binary over the tutorial's manifests step by step
//! (tests/fixtures/tutorial), every witness confirmed by `meshguard simulate` on both sides, the
//! golden text of each step, exit codes, the JSON shape, Markdown's size, `--base-ref` from a
//! git repository, and bad input.
//!
//! Regenerate the golden file with `MESHGUARD_BLESS=1 cargo test --test integration diff::`.

use crate::common::{meshguard_in, root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const TUTORIAL: &str = "tests/fixtures/tutorial";
const GOLDEN: &str = "tests/fixtures/diff/tutorial-steps.txt";

/// The tutorial's files in the order its steps apply them.
const STEPS: &[&str] = &[
    "test-apps.yaml",
    "peer-auth-strict.yaml",
    "backend-peer-auth.yaml",
    "mesh-peer-auth.yaml",
    "destination-rule-mtls.yaml",
    "authz-deny-all.yaml",
    "authz-frontend-backend.yaml",
    "service-accounts.yaml",
    "authz-rbac.yaml",
    "jwt-auth.yaml",
];

/// A directory with the tutorial's first `n` steps, named `step-<n>`.
fn steps_dir(tmp: &Path, n: usize) -> PathBuf {
    let dir = tmp.join(format!("step-{n}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for f in &STEPS[..n] {
        std::fs::copy(root().join(TUTORIAL).join(f), dir.join(f)).expect("copy");
    }
    dir
}

/// `diff BASE HEAD --format json` in `dir`, parsed; with the exit code.
fn diff_json(dir: &Path, base: &str, head: &str, extra: &[&str]) -> (Value, i32) {
    let mut args = vec!["diff", base, head, "--format", "json"];
    args.extend_from_slice(extra);
    let (out, err, code) = meshguard_in(dir, &args);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (v, code)
}

/// Run a witness's `simulate` command with its manifests path replaced by `side`: the verdict
/// (`ALLOW`/`DENY`, the first line).
fn simulate_witness(dir: &Path, change: &Value, side: &str) -> String {
    let args: Vec<String> = change["witness"]["simulate"]
        .as_array()
        .expect("simulate args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect();
    assert_eq!(&args[..2], ["meshguard", "simulate"], "{args:?}");
    let mut run: Vec<&str> = vec!["simulate", side];
    run.extend(args[3..].iter().map(String::as_str));
    let (out, err, code) = meshguard_in(dir, &run);
    assert!(
        code == 0 || code == 1,
        "simulate {run:?}: exit {code}\n{out}{err}"
    );
    let first = out.lines().next().unwrap_or("").to_owned();
    first.split_whitespace().next().unwrap_or("").to_owned()
}

/// Every change's witness flips: HEAD decides as the change says and BASE the other way.
fn assert_witnesses_flip(dir: &Path, base: &str, head: &str, v: &Value) {
    for c in v["changes"].as_array().expect("changes") {
        let opens = matches!(c["change"].as_str(), Some("opened" | "widened"));
        let (want_head, want_base) = if opens {
            ("ALLOW", "DENY")
        } else {
            ("DENY", "ALLOW")
        };
        assert_eq!(
            c["witness"]["head"],
            want_head.to_ascii_lowercase(),
            "{c:#}"
        );
        assert_eq!(
            simulate_witness(dir, c, head),
            want_head,
            "HEAD ({head}) on the witness of {c:#}"
        );
        assert_eq!(
            simulate_witness(dir, c, base),
            want_base,
            "BASE ({base}) on the witness of {c:#}"
        );
    }
}

/// `(change, from, to, port)` of every change.
fn edges(v: &Value) -> Vec<(String, String, String, u64)> {
    let mut out: Vec<_> = v["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap_or("").to_owned(),
                c["from"].as_str().unwrap_or("").to_owned(),
                c["to"].as_str().unwrap_or("").to_owned(),
                c["port"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    out
}

fn e(change: &str, from: &str, to: &str) -> (String, String, String, u64) {
    (change.to_owned(), from.to_owned(), to.to_owned(), 80)
}

#[test]
fn the_tutorial_with_and_without_authz_rbac_lists_exactly_what_that_file_opens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let head = steps_dir(tmp.path(), STEPS.len());
    let base = tmp.path().join("without-rbac");
    std::fs::create_dir_all(&base).expect("mkdir");
    for f in STEPS.iter().filter(|f| **f != "authz-rbac.yaml") {
        std::fs::copy(head.join(f), base.join(f)).expect("copy");
    }
    let (v, code) = diff_json(tmp.path(), "without-rbac", "step-10", &[]);
    assert_eq!(code, 1, "something opened: exit 1\n{v:#}");
    // backend-rbac lets frontend GET /api/data and admin use "/api/" and "/admin/" on backend
    // (admin could already reach backend with a token carrying a claim named `"role"`, quotes
    // included, through jwt-authz: widened); frontend-external lets istio-system callers and
    // any mesh caller from the two IP ranges reach frontend. Plaintext stays refused (STRICT),
    // and nothing closes.
    let want = vec![
        e("opened", "*", "production/frontend"),
        e("opened", "istio-system/*", "production/frontend"),
        e("opened", "production/admin", "production/frontend"),
        e("opened", "production/backend", "production/frontend"),
        e("opened", "production/default", "production/frontend"),
        e("opened", "production/frontend", "production/frontend"),
        e("widened", "production/admin", "production/backend"),
        e("widened", "production/frontend", "production/backend"),
    ];
    assert_eq!(edges(&v), want, "{v:#}");
    let by = |from: &str, to: &str| {
        v["changes"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["from"] == from && c["to"] == to))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let fe = by("production/frontend", "production/backend");
    assert_eq!(fe["requests"], "GET /api/data", "{fe:#}");
    assert_eq!(fe["policies"][0], "production/backend-rbac", "{fe:#}");
    assert_eq!(fe["after"][0]["rule"], 0, "{fe:#}");
    assert_eq!(fe["witness"]["method"], "GET");
    assert_eq!(fe["witness"]["path"], "/api/data");
    let admin = by("production/admin", "production/backend");
    assert_eq!(
        admin["requests"], "GET,POST,PUT,DELETE /api/,/admin/",
        "{admin:#}"
    );
    let ist = by("istio-system/*", "production/frontend");
    assert!(
        ist["requests"]
            .as_str()
            .is_some_and(|r| r.starts_with("GET /,/static/*")),
        "{ist:#}"
    );
    assert!(v["mtls"].as_array().is_some_and(Vec::is_empty), "{v:#}");
    let new: Vec<&str> = v["findings"]["new"]
        .as_array()
        .expect("new")
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert_eq!(
        new,
        [
            "ap-exact-path-trailing-slash",
            "ap-exact-path-trailing-slash",
            "ap-source-ip-behind-gateway"
        ]
    );
    assert_witnesses_flip(tmp.path(), "without-rbac", "step-10", &v);
    // Markdown: callers outside code spans are escaped (`*` would start emphasis).
    let (md, _, code) = meshguard_in(
        tmp.path(),
        &["diff", "without-rbac", "step-10", "--format", "markdown"],
    );
    assert_eq!(code, 1);
    assert!(md.contains("| **opened** | \\*, production/admin,"), "{md}");
    assert!(md.contains("| **opened** | istio-system/\\* |"), "{md}");
}

#[test]
fn every_step_of_the_tutorial_matches_its_golden_diff_and_every_witness_flips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for n in 1..=STEPS.len() {
        steps_dir(tmp.path(), n);
    }
    let mut text = String::new();
    for n in 2..=STEPS.len() {
        let (base, head) = (format!("step-{}", n - 1), format!("step-{n}"));
        text.push_str(&format!("## + {}\n", STEPS[n - 1]));
        let (out, err, code) = meshguard_in(tmp.path(), &["diff", &base, &head]);
        assert!(code == 0 || code == 1, "{out}{err}");
        text.push_str(&out);
        text.push_str(&format!("(exit {code})\n\n"));
        let (v, jcode) = diff_json(tmp.path(), &base, &head, &[]);
        assert_eq!(code, jcode, "text and JSON agree on the exit code");
        assert_witnesses_flip(tmp.path(), &base, &head, &v);
    }
    let golden = root().join(GOLDEN);
    if std::env::var_os("MESHGUARD_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().expect("parent")).expect("mkdir");
        std::fs::write(&golden, &text).expect("write golden");
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        want == text,
        "the tutorial's step diffs differ from {GOLDEN} (MESHGUARD_BLESS=1 rewrites it):\n{text}"
    );
}

#[test]
fn a_set_compared_with_itself_is_empty_and_exits_zero() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = steps_dir(tmp.path(), STEPS.len());
    let d = dir.to_str().expect("utf-8");
    let (v, code) = diff_json(tmp.path(), d, d, &["--fail-on", "any"]);
    assert_eq!(code, 0, "{v:#}");
    assert!(v["changes"].as_array().is_some_and(Vec::is_empty), "{v:#}");
    assert!(v["mtls"].as_array().is_some_and(Vec::is_empty), "{v:#}");
    assert!(v["findings"]["new"].as_array().is_some_and(Vec::is_empty));
    assert!(v["findings"]["fixed"].as_array().is_some_and(Vec::is_empty));
    assert_eq!(v["portsRecomputed"], 0, "nothing recomputed: {v:#}");
    let (out, _, code) = meshguard_in(tmp.path(), &["diff", d, d]);
    assert_eq!(code, 0);
    assert!(
        out.contains("no reachability change; 0 mTLS changes; 0 findings new, 0 fixed"),
        "{out}"
    );
}

#[test]
fn exit_codes_follow_fail_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Step 5 → 6 (authz-deny-all) only closes; 8 → 9 (authz-rbac) opens.
    for n in [5, 6, 8, 9] {
        steps_dir(tmp.path(), n);
    }
    let code = |base: &str, head: &str, fail_on: Option<&str>| {
        let mut args = vec!["diff", base, head];
        if let Some(f) = fail_on {
            args.extend(["--fail-on", f]);
        }
        meshguard_in(tmp.path(), &args).2
    };
    assert_eq!(code("step-5", "step-6", None), 0, "closing only: exit 0");
    assert_eq!(code("step-5", "step-6", Some("any")), 1);
    assert_eq!(code("step-5", "step-6", Some("opened")), 0);
    assert_eq!(code("step-8", "step-9", None), 1, "opening: exit 1");
    assert_eq!(code("step-8", "step-9", Some("none")), 0);
    assert_eq!(
        code("step-8", "step-9", Some("new-findings")),
        0,
        "no deny-level finding is new"
    );
    // Reversed, 9 → 8 closes what 8 → 9 opened.
    let (v, c) = diff_json(tmp.path(), "step-9", "step-8", &[]);
    assert_eq!(c, 0);
    let kinds: Vec<&str> = v["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["change"].as_str())
        .collect();
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| *k == "closed" || *k == "narrowed"),
        "{kinds:?}"
    );
    assert_witnesses_flip(tmp.path(), "step-9", "step-8", &v);
}

/// A PERMISSIVE PeerAuthentication and an allow-all policy: mTLS opens to plaintext, the
/// plaintext client opens, and a deny-level finding is new.
#[test]
fn weakening_mtls_and_a_new_deny_finding_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = steps_dir(tmp.path(), 6);
    let head = tmp.path().join("head");
    std::fs::create_dir_all(&head).expect("mkdir");
    for f in &STEPS[..6] {
        std::fs::copy(base.join(f), head.join(f)).expect("copy");
    }
    std::fs::write(
        head.join("weaken.yaml"),
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: frontend-permissive\n  namespace: production\nspec:\n  selector:\n    matchLabels:\n      app: frontend\n  mtls:\n    mode: PERMISSIVE\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: frontend-open\n  namespace: production\nspec:\n  selector:\n    matchLabels:\n      app: frontend\n  rules:\n  - {}\n",
    )
    .expect("write");
    let (v, code) = diff_json(tmp.path(), "step-6", "head", &[]);
    assert_eq!(code, 1, "{v:#}");
    let mtls = v["mtls"].as_array().expect("mtls");
    assert_eq!(mtls.len(), 1, "{v:#}");
    assert_eq!(mtls[0]["workload"], "production/frontend");
    assert_eq!(mtls[0]["from"], "STRICT");
    assert_eq!(mtls[0]["to"], "PERMISSIVE");
    assert_eq!(mtls[0]["opensPlaintext"], true);
    assert_eq!(
        mtls[0]["toPolicy"], "production/frontend-permissive (workload)",
        "{v:#}"
    );
    let plain = v["changes"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["from"] == "plaintext" && c["to"] == "production/frontend")
        })
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(plain["change"], "opened", "{v:#}");
    assert_eq!(plain["requests"], "all", "{plain:#}");
    assert!(
        plain["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == "production/frontend-open")),
        "{plain:#}"
    );
    let rules: Vec<&str> = v["findings"]["new"]
        .as_array()
        .expect("new")
        .iter()
        .filter(|f| f["action"] == "deny")
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert!(rules.contains(&"ap-allow-all"), "{rules:?}");
    assert!(rules.contains(&"pa-permissive-mtls"), "{rules:?}");
    assert_eq!(v["summary"]["findingsNewDeny"], rules.len());
    // Only the findings: still 1 (a deny-level finding is new); the reverse fixes them.
    let (_, _, c) = meshguard_in(
        tmp.path(),
        &["diff", "step-6", "head", "--fail-on", "new-findings"],
    );
    assert_eq!(c, 1);
    let (back, c) = diff_json(tmp.path(), "head", "step-6", &[]);
    assert_eq!(c, 0, "{back:#}");
    assert!(back["findings"]["fixed"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x["rule"] == "ap-allow-all")));
    assert_eq!(back["mtls"][0]["opensPlaintext"], false);
    assert_witnesses_flip(tmp.path(), "step-6", "head", &v);
}

#[test]
fn markdown_puts_openings_first_and_stays_within_a_comment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = steps_dir(tmp.path(), 6);
    let head = tmp.path().join("big");
    std::fs::create_dir_all(&head).expect("mkdir");
    for f in &STEPS[..6] {
        std::fs::copy(base.join(f), head.join(f)).expect("copy");
    }
    // 60 new workloads, each with its own account and a policy letting the next one call it on
    // a path of its own: 60 edges open (and more callers than a table row lists).
    let mut yaml = String::new();
    for i in 0..60 {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa{i}\n  namespace: production\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app{i}\n  namespace: production\nspec:\n  selector:\n    matchLabels:\n      app: app{i}\n  template:\n    metadata:\n      labels:\n        app: app{i}\n    spec:\n      serviceAccountName: sa{i}\n      containers:\n      - name: c\n        image: example/app:1\n        ports:\n        - containerPort: 8080\n---\n\
             apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: app{i}-callers\n  namespace: production\nspec:\n  selector:\n    matchLabels:\n      app: app{i}\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/production/sa/sa{}\"]\n    to:\n    - operation:\n        paths: [\"/v{i}/*\"]\n---\n",
            (i + 1) % 60
        ));
    }
    std::fs::write(head.join("apps.yaml"), yaml).expect("write");
    let (out, err, code) = meshguard_in(
        tmp.path(),
        &["diff", "step-6", "big", "--format", "markdown"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(out.starts_with("### ⚠️ meshguard diff\n"), "{out}");
    assert!(
        out.len() < 65_536,
        "a pull-request comment holds 65,536 characters: {}",
        out.len()
    );
    assert!(
        out.contains("| change | from | to | requests | decided by |"),
        "{out}"
    );
    assert!(
        out.contains("more edge change"),
        "rows past the table are counted: {out}"
    );
    assert!(out.contains("<details><summary>Witnesses"), "{out}");
    assert!(out.contains("/v1/*"), "{out}");
    let (v, _) = diff_json(tmp.path(), "step-6", "big", &[]);
    assert_eq!(
        v["changes"].as_array().map(|c| c
            .iter()
            .filter(|c| c["change"] == "opened" && c["note"] == "new workload")
            .count()),
        Some(60),
        "one opening per new workload (its one caller): {v:#}"
    );
}

/// BASE read from git at a ref, HEAD from the work tree, as CI on a pull request has them.
#[test]
fn base_ref_reads_base_from_git() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    let mesh = repo.join("mesh");
    std::fs::create_dir_all(&mesh).expect("mkdir");
    for f in &STEPS[..8] {
        std::fs::copy(root().join(TUTORIAL).join(f), mesh.join(f)).expect("copy");
    }
    std::fs::write(repo.join("notes.txt"), "not a manifest\n").expect("write");
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "base"]);
    std::fs::copy(
        root().join(TUTORIAL).join("authz-rbac.yaml"),
        mesh.join("authz-rbac.yaml"),
    )
    .expect("copy");
    let (out, err, code) = meshguard_in(
        repo,
        &["diff", "--base-ref", "main", "mesh", "--format", "json"],
    );
    assert_eq!(code, 1, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["base"], "main:mesh");
    assert_eq!(v["head"], "mesh");
    assert_eq!(edges(&v).len(), 8, "{v:#}");
    // The witness names HEAD's paths.
    assert_eq!(v["changes"][0]["witness"]["simulate"][2], "mesh");
    // Without paths: the current directory.
    let (out, err, code) = meshguard_in(repo, &["diff", "--base-ref", "HEAD", "--format", "json"]);
    assert_eq!(code, 1, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(edges(&v).len(), 8, "{v:#}");
    // Committed: nothing changes.
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "rbac"]);
    let (out, _, code) = meshguard_in(repo, &["diff", "--base-ref", "HEAD", "mesh"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no reachability change"), "{out}");
    // A ref that is not there: 2.
    let (_, err, code) = meshguard_in(repo, &["diff", "--base-ref", "no-such-branch", "mesh"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--base-ref no-such-branch: not a commit"),
        "{err}"
    );
}

#[test]
fn bad_input_exits_two_with_a_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    steps_dir(tmp.path(), 3);
    std::fs::write(tmp.path().join("broken.yaml"), "kind: [unclosed\n").expect("write");
    for (args, says) in [
        (vec!["diff", "step-3"], "want BASE and HEAD"),
        (
            vec!["diff", "step-3", "step-3", "step-3"],
            "want BASE and HEAD",
        ),
        (vec!["diff", "step-3", "missing-dir"], "missing-dir"),
        (vec!["diff", "step-3", "broken.yaml"], "broken.yaml"),
    ] {
        let (out, err, code) = meshguard_in(tmp.path(), &args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: nothing on stdout: {out}");
    }
    // Outside a git repository, --base-ref is an error too.
    let (_, err, code) = meshguard_in(tmp.path(), &["diff", "--base-ref", "main", "step-3"]);
    assert_eq!(code, 2, "{err}");
}

const AMBIENT: &str = "tests/fixtures/ambient";

/// The ambient fixture copied to `tmp/<name>`, with `edit` applied to `10-shop.yaml` (each
/// `(from, to)` must occur once).
fn ambient_dir(tmp: &Path, name: &str, edits: &[(&str, &str)]) {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for entry in std::fs::read_dir(root().join(AMBIENT)).expect("fixture") {
        let path = entry.expect("entry").path();
        let file = path.file_name().expect("name").to_owned();
        let mut text = std::fs::read_to_string(&path).expect("read");
        if file == "10-shop.yaml" {
            for (from, to) in edits {
                assert_eq!(text.matches(from).count(), 1, "{from}");
                text = text.replacen(from, to, 1);
            }
        }
        std::fs::write(dir.join(file), text).expect("write");
    }
}

/// reviews-l7's rule, the L7 policy the waypoint enforces for Service shop/reviews.
const REVIEWS_L7_RULE: &str = "              - cluster.local/ns/ingress/sa/public-istio\n      to:\n        - operation: {methods: [GET]}";

#[test]
fn widening_a_waypoint_policy_is_seen_on_the_path_through_the_waypoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    ambient_dir(tmp.path(), "base", &[]);
    ambient_dir(
        tmp.path(),
        "head",
        &[(
            REVIEWS_L7_RULE,
            "              - cluster.local/ns/ingress/sa/public-istio\n      to:\n        - operation: {methods: [GET, POST]}",
        )],
    );
    let (v, code) = diff_json(tmp.path(), "base", "head", &[]);
    assert_eq!(code, 1, "something widened: exit 1\n{v:#}");
    // The two callers reviews-l7 names, both through the Service's waypoint (frontend is
    // ambient; the ingress gateway because the Service sets istio.io/ingress-use-waypoint).
    // Callers that go straight to the pods (sidecars, the plaintext client, other ambient
    // identities the waypoint never allowed) see no change.
    let want = vec![
        (
            "widened".to_owned(),
            "ingress/public-istio".to_owned(),
            "shop/reviews".to_owned(),
            9080,
        ),
        (
            "widened".to_owned(),
            "shop/frontend".to_owned(),
            "shop/reviews".to_owned(),
            9080,
        ),
    ];
    assert_eq!(edges(&v), want, "{v:#}");
    for c in v["changes"].as_array().expect("changes") {
        assert_eq!(c["via"], "shop/Service/reviews:9080", "{c:#}");
        assert_eq!(c["requests"], "POST any path but /debug*", "{c:#}");
        assert_eq!(c["policies"][1], "shop/reviews-l7", "{c:#}");
        assert_eq!(
            c["before"][0]["hop"], "waypoint shop/waypoint",
            "the waypoint refused before: {c:#}"
        );
        assert_eq!(
            c["after"][0]["policy"], "shop/reviews-only-via-waypoint",
            "the pods' ztunnel admits the waypoint after: {c:#}"
        );
        let sim: Vec<&str> = c["witness"]["simulate"]
            .as_array()
            .expect("simulate")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            sim.windows(2)
                .any(|w| w == ["--to", "shop/Service/reviews"]),
            "{sim:?}"
        );
        assert_eq!(c["witness"]["method"], "POST", "{c:#}");
    }
    assert_witnesses_flip(tmp.path(), "base", "head", &v);
}

#[test]
fn ambient_changes_that_do_not_change_reachability_stay_quiet() {
    let tmp = tempfile::tempdir().expect("tempdir");
    ambient_dir(tmp.path(), "base", &[]);
    // The same callers in another order in the waypoint's policy; an HTTP method added to an
    // L7 rule ztunnel drops (ratings-readers still allows nothing at ratings' ztunnel); and
    // ratings bound to the namespace's waypoint, whose path its ztunnel refuses as well.
    ambient_dir(
        tmp.path(),
        "head",
        &[
            (
                "              - cluster.local/ns/shop/sa/frontend\n              - cluster.local/ns/ingress/sa/public-istio\n",
                "              - cluster.local/ns/ingress/sa/public-istio\n              - cluster.local/ns/shop/sa/frontend\n",
            ),
            (
                "            principals: [cluster.local/ns/shop/sa/reviews]\n      to:\n        - operation: {methods: [GET]}",
                "            principals: [cluster.local/ns/shop/sa/reviews]\n      to:\n        - operation: {methods: [GET, POST]}",
            ),
            (
                "  name: ratings\n  namespace: shop\n  labels:\n    istio.io/use-waypoint: none\n",
                "  name: ratings\n  namespace: shop\n",
            ),
        ],
    );
    let (v, code) = diff_json(tmp.path(), "base", "head", &["--fail-on", "opened"]);
    assert_eq!(code, 0, "{v:#}");
    assert!(v["changes"].as_array().is_some_and(Vec::is_empty), "{v:#}");
    assert!(
        v["portsRecomputed"].as_u64().is_some_and(|n| n >= 2),
        "{v:#}"
    );
}

#[test]
fn binding_a_service_to_a_waypoint_puts_its_policies_on_ambient_callers_paths() {
    let tmp = tempfile::tempdir().expect("tempdir");
    ambient_dir(tmp.path(), "base", &[]);
    // orders named a waypoint that does not exist (bound to none); now the namespace's, whose
    // root-namespace policy refuses /debug* to every caller through a waypoint.
    ambient_dir(
        tmp.path(),
        "head",
        &[(
            "istio.io/use-waypoint: orders-waypoint",
            "istio.io/use-waypoint: waypoint",
        )],
    );
    let (v, code) = diff_json(tmp.path(), "base", "head", &["--fail-on", "opened"]);
    assert_eq!(code, 0, "nothing opened\n{v:#}");
    let changes = v["changes"].as_array().expect("changes");
    assert!(!changes.is_empty(), "{v:#}");
    for c in changes {
        assert_eq!(c["change"], "narrowed", "{c:#}");
        assert_eq!(c["to"], "shop/orders", "{c:#}");
        assert_eq!(c["requests"], "/debug*", "{c:#}");
        assert_eq!(c["via"], "shop/Service/orders:8080", "{c:#}");
    }
    let from: Vec<&str> = changes.iter().filter_map(|c| c["from"].as_str()).collect();
    assert!(from.contains(&"shop/frontend"), "{from:?}");
    // Sidecar callers and the waypoint itself go straight to the pods.
    assert!(!from.contains(&"shop/waypoint"), "{from:?}");
    assert_witnesses_flip(tmp.path(), "base", "head", &v);
}

/// The manifests of the exception tests: a meshed namespace with STRICT mTLS, and a Deployment
/// that runs as the default ServiceAccount (`wl-default-service-account`, deny by default).
const SHOP: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio-injection: enabled}}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec: {mtls: {mode: STRICT}}\n";
const OLD_API: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: old-api, namespace: shop}\nspec:\n  selector: {matchLabels: {app: old-api}}\n  template:\n    metadata: {labels: {app: old-api}}\n    spec: {containers: [{name: app, image: old:1}]}\n";
/// A PolicyException for that finding, ending at `expires`.
fn exception(expires: &str) -> String {
    format!("apiVersion: meshguard.io/v1alpha1\nkind: PolicyException\nmetadata: {{name: old-api-sa, namespace: shop}}\nspec: {{rules: [wl-default-service-account], names: [old-api], reason: moving to its own account, owner: team-shop, expires: \"{expires}\"}}\n")
}

/// A side made of `docs`, and the policy that accepts PolicyExceptions in `shop`.
fn exception_side(tmp: &Path, name: &str, docs: &[&str]) {
    std::fs::create_dir_all(tmp.join(name)).expect("mkdir");
    std::fs::write(tmp.join(name).join("all.yaml"), docs.join("---\n")).expect("write");
    std::fs::write(
        tmp.join("policy.yaml"),
        "policyExceptions:\n  namespaces: [shop]\n  maxDuration: 365000d\n",
    )
    .expect("policy");
}

fn rules_of<'v>(v: &'v Value, list: &str) -> Vec<&'v str> {
    v["findings"][list]
        .as_array()
        .unwrap_or_else(|| panic!("findings.{list}: {v}"))
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect()
}

#[test]
fn a_finding_head_excepts_is_not_new() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let exc = exception("2999-01-01");
    exception_side(d, "base", &[SHOP]);
    exception_side(d, "head", &[SHOP, OLD_API, &exc]);
    exception_side(d, "head-bare", &[SHOP, OLD_API]);
    let flags = ["--config", "policy.yaml", "--fail-on", "new-findings"];

    // Fires: without the exception the new Deployment's finding is new and fails the run.
    let (v, code) = diff_json(d, "base", "head-bare", &flags);
    assert!(
        rules_of(&v, "new").contains(&"wl-default-service-account"),
        "{v}"
    );
    assert_eq!(code, 1, "{v}");
    assert!(rules_of(&v, "excepted").is_empty(), "{v}");

    // Quiet: HEAD's own exception covers it, as in `check`: not new, the run passes, and the
    // exception the change brings is listed with its finding.
    let (v, code) = diff_json(d, "base", "head", &flags);
    assert!(
        !rules_of(&v, "new").contains(&"wl-default-service-account"),
        "{v}"
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        rules_of(&v, "excepted"),
        ["wl-default-service-account"],
        "{v}"
    );
    let e = &v["findings"]["excepted"][0];
    assert_eq!(e["exception"], "shop/old-api-sa", "{v}");
    assert_eq!(e["inBase"], false, "{v}");
    assert_eq!(e["name"], "old-api", "{v}");
    assert_eq!(v["summary"]["findingsExcepted"], 1, "{v}");
}

#[test]
fn an_exception_the_change_adds_is_listed_not_counted_as_fixed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let exc = exception("2999-01-01");
    exception_side(d, "base", &[SHOP, OLD_API]);
    exception_side(d, "head", &[SHOP, OLD_API, &exc]);
    exception_side(d, "base-excepted", &[SHOP, OLD_API, &exc]);
    let policy = ["--config", "policy.yaml"];

    let (v, code) = diff_json(d, "base", "head", &policy);
    assert_eq!(code, 0, "{v}");
    assert!(rules_of(&v, "new").is_empty(), "{v}");
    // The finding did not go away: it was excepted, and the reviewer sees by what.
    assert!(rules_of(&v, "fixed").is_empty(), "{v}");
    assert_eq!(
        rules_of(&v, "excepted"),
        ["wl-default-service-account"],
        "{v}"
    );
    assert_eq!(v["findings"]["excepted"][0]["inBase"], true, "{v}");
    assert!(
        v["findings"]["excepted"][0]["exceptionSays"]
            .as_str()
            .is_some_and(
                |s| s.contains("owner team-shop") && s.contains("moving to its own account")
            ),
        "{v}"
    );
    let args = ["diff", "base", "head", "--config", "policy.yaml"];
    let (text, err, _) = meshguard_in(d, &args);
    assert!(
        text.contains("Excepted by HEAD (reported, not enforced): 1"),
        "{text}{err}"
    );
    assert!(
        text.contains("[excepted by shop/old-api-sa, until 2999-01-01T00:00:00Z"),
        "{text}"
    );
    assert!(text.contains(", 1 excepted\n"), "{text}");
    let mut md_args = args.to_vec();
    md_args.extend_from_slice(&["--format", "markdown"]);
    let (md, err, _) = meshguard_in(d, &md_args);
    assert!(
        md.contains("- excepted: `[wl-default-service-account]"),
        "{md}{err}"
    );
    assert!(md.contains("0 fixed, 1 excepted."), "{md}");
    // `--fail-on any` counts it as a change.
    let mut any = policy.to_vec();
    any.extend_from_slice(&["--fail-on", "any"]);
    assert_eq!(diff_json(d, "base", "head", &any).1, 1);

    // Quiet: an exception both sides hold is no change; removing it makes the finding new.
    let (v, code) = diff_json(d, "base-excepted", "head", &policy);
    assert_eq!(code, 0, "{v}");
    assert!(rules_of(&v, "excepted").is_empty(), "{v}");
    assert!(
        rules_of(&v, "new").is_empty() && rules_of(&v, "fixed").is_empty(),
        "{v}"
    );
    let (v, code) = diff_json(d, "base-excepted", "base", &policy);
    assert_eq!(rules_of(&v, "new"), ["wl-default-service-account"], "{v}");
    assert_eq!(code, 1, "{v}");
}

#[test]
fn an_expired_exception_covers_nothing_as_in_check() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let expired = exception("2000-01-01");
    exception_side(d, "base", &[SHOP]);
    exception_side(d, "head", &[SHOP, OLD_API, &expired]);
    let (v, code) = diff_json(
        d,
        "base",
        "head",
        &["--config", "policy.yaml", "--fail-on", "new-findings"],
    );
    let new = rules_of(&v, "new");
    assert!(new.contains(&"wl-default-service-account"), "{v}");
    assert!(new.contains(&"exception-expired"), "{v}");
    assert!(rules_of(&v, "excepted").is_empty(), "{v}");
    assert_eq!(code, 1, "{v}");
}
