//! `meshguard report --html` end to end: the command runs in-process (the binary's argument
//! parsing and code path) on fixture directories, and the page it writes is parsed with
//! `scraper`, an HTML5 parser, as a browser would parse it.
//!
//! The page's frame is plain HTML (the header, one row per namespace); the workloads, the
//! reachability matrices and the findings travel as one gzip+base64 JSON document that the
//! page's script renders lazily. So the grid's workloads and the findings are checked in that
//! document, decoded with `posture::page::decode_data`, and against `meshguard check`'s own
//! output for the same input. The real browser check (the script, the DOM it builds, clicks,
//! console errors) is `tests/browser/posture.py`, which `tests/run.sh` runs when Chromium is
//! installed.

use clap::Parser;
use meshguard::cli::{Cli, Command};
use scraper::{ElementRef, Html, Selector};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const TUTORIAL: &str = "tests/fixtures/tutorial";
const CANARY: &str = "tests/fixtures/mesh/canary";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cli(args: &[&str]) -> Command {
    Cli::try_parse_from(std::iter::once("meshguard").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("meshguard {args:?}: {e}"))
        .command
}

/// `meshguard report ARGS --html <tmp>/page.html`: the exit code, stderr and the page.
fn report(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("page.html");
    let page_arg = page.to_str().expect("utf-8 path");
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--html", page_arg]);
    let Command::Report(a) = cli(&all) else {
        panic!("not a report command");
    };
    let mut err = Vec::new();
    let code = meshguard::posture::execute(&a, &mut err).code();
    let html = std::fs::read_to_string(&page).unwrap_or_default();
    (code, String::from_utf8(err).expect("utf-8"), html)
}

/// The page of `meshguard report PATH` (which must succeed).
fn page_of(path: &Path) -> Html {
    let (code, err, html) = report(&[path.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "report failed: {err}");
    assert!(err.contains("wrote"), "{err}");
    Html::parse_document(&html)
}

/// `meshguard check PATH --format json`, parsed.
fn check_json(path: &Path) -> Value {
    let Command::Check(a) = cli(&[
        "check",
        path.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ]) else {
        panic!("not a check command");
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = meshguard::check::execute(a, &mut std::io::empty(), &mut out, &mut err).code();
    assert!(code <= 1, "check failed: {}", String::from_utf8_lossy(&err));
    serde_json::from_slice(&out).expect("check's JSON")
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap_or_else(|e| panic!("selector {s}: {e:?}"))
}

fn one<'a>(html: &'a Html, s: &str) -> ElementRef<'a> {
    let selector = sel(s);
    let mut found = html.select(&selector);
    let first = found.next().unwrap_or_else(|| panic!("no {s} in the page"));
    assert!(found.next().is_none(), "more than one {s}");
    first
}

fn text(e: ElementRef<'_>) -> String {
    e.text().collect()
}

/// The page's data document, decoded.
fn data(html: &Html) -> Value {
    let id = meshguard::posture::page::DATA_ID;
    let element = one(html, &format!("script#{id}"));
    assert_eq!(element.attr("type"), Some("application/octet-stream"));
    meshguard::posture::page::decode_data(&text(element)).expect("the data decodes")
}

/// `(namespace, kind, name)` of every workload in `dir`'s manifests, read independently of
/// meshguard (the YAML, the kinds that own pods).
fn workloads_in(dir: &Path) -> BTreeSet<(String, String, String)> {
    const KINDS: &[&str] = &[
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
        "Job",
        "CronJob",
    ];
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("fixture dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&std::fs::read_to_string(&path).expect("readable"))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for d in docs {
            let kind = d["kind"].as_str().unwrap_or("");
            if KINDS.contains(&kind) {
                out.insert((
                    d["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("default")
                        .to_owned(),
                    kind.to_owned(),
                    d["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
    }
    out
}

/// The grid's namespace rows: name → the row.
fn namespace_rows(html: &Html) -> BTreeMap<String, ElementRef<'_>> {
    html.select(&sel("#grid > tbody.ns"))
        .map(|tb| (tb.attr("data-ns").expect("data-ns").to_owned(), tb))
        .collect()
}

#[test]
fn grid_has_a_row_per_namespace_and_every_workload() {
    for fixture in [TUTORIAL, CANARY] {
        let dir = root().join(fixture);
        let html = page_of(&dir);
        let d = data(&html);
        let expected = workloads_in(&dir);
        assert!(!expected.is_empty(), "{fixture} has workloads");

        // Every namespace that holds a workload has its row in the HTML, and each row says
        // how many workloads it unfolds to.
        let rows = namespace_rows(&html);
        let ns_names: Vec<&str> = d["ns"]
            .as_array()
            .expect("ns")
            .iter()
            .map(|n| n["n"].as_str().expect("name"))
            .collect();
        assert_eq!(
            rows.keys().map(String::as_str).collect::<Vec<_>>(),
            ns_names,
            "{fixture}: one row per namespace, in the data's order"
        );
        for (ns, _, _) in &expected {
            assert!(
                rows.contains_key(ns),
                "{fixture}: no row for namespace {ns}"
            );
        }
        for (i, n) in d["ns"].as_array().expect("ns").iter().enumerate() {
            let row = rows[n["n"].as_str().expect("name")];
            assert_eq!(row.attr("data-i"), Some(i.to_string().as_str()));
            let count = n["w"].as_array().expect("w").len();
            let label = text(
                row.select(&sel("tr.nsrow .muted"))
                    .next()
                    .expect("count label"),
            );
            assert!(
                label.starts_with(&format!("{count} workload")),
                "{fixture}: {label}"
            );
            // Every row has its data-plane, mTLS, default-deny, account and findings cells.
            assert_eq!(row.select(&sel("tr.nsrow > td")).count(), 5, "{fixture}");
            assert_eq!(row.select(&sel("tr.nsrow .dp")).count(), 1, "{fixture}");
        }

        // The workloads the script renders per namespace: exactly the input's.
        let wl = d["wl"].as_array().expect("wl");
        let mut listed = BTreeSet::new();
        for (i, n) in d["ns"].as_array().expect("ns").iter().enumerate() {
            for w in n["w"].as_array().expect("w") {
                let w = &wl[w.as_u64().expect("index") as usize];
                assert_eq!(
                    w[2], i,
                    "{fixture}: a workload listed under another namespace"
                );
                listed.insert((
                    n["n"].as_str().expect("ns").to_owned(),
                    w[0].as_str().expect("kind").to_owned(),
                    w[1].as_str().expect("name").to_owned(),
                ));
            }
        }
        assert_eq!(listed, expected, "{fixture}: the grid's workloads");
        assert_eq!(wl.len(), expected.len(), "{fixture}");
        // Each with a data plane, a ServiceAccount and at least one mTLS cell (a workload
        // without declared ports has one for every port).
        for w in wl {
            assert!(
                ["sidecar", "ztunnel", "none", "unknown"].contains(&w[3].as_str().expect("dp")),
                "{w}"
            );
            assert!(!w[4].as_str().expect("sa").is_empty(), "{w}");
            let ports = w[7].as_array().expect("ports");
            assert!(!ports.is_empty(), "{w}");
            for p in ports {
                assert!(
                    ["STRICT", "PERMISSIVE", "DISABLE"].contains(&p[1].as_str().expect("mode")),
                    "{p}"
                );
            }
        }
    }
}

#[test]
fn tutorial_grid_shows_the_deciding_peer_authentication_per_port() {
    let html = page_of(&root().join(TUTORIAL));
    let d = data(&html);
    let pol = d["pol"].as_array().expect("pol");
    let wl = d["wl"].as_array().expect("wl");
    let port = |name: &str| {
        let w = wl.iter().find(|w| w[1] == name).expect("workload");
        let p = &w[7][0];
        let by = &pol[p[2].as_u64().expect("decided by a policy") as usize];
        (
            p[0].as_u64(),
            p[1].as_str().expect("mode").to_owned(),
            format!(
                "{}/{}",
                by["ns"].as_str().expect("ns"),
                by["n"].as_str().expect("n")
            ),
            p[3].as_str().expect("level").to_owned(),
        )
    };
    // As `meshguard check --mtls` prints them (docs/commands.md, "Checking manifests and clusters").
    assert_eq!(
        port("backend"),
        (
            Some(80),
            "STRICT".to_owned(),
            "production/backend-strict".to_owned(),
            "port".to_owned()
        )
    );
    assert_eq!(
        port("frontend"),
        (
            Some(80),
            "STRICT".to_owned(),
            "production/default-strict".to_owned(),
            "namespace".to_owned()
        )
    );
    // The namespace row counts them, with the mode as a label besides the colour.
    let rows = namespace_rows(&html);
    let chips: Vec<String> = rows["production"]
        .select(&sel("td.modes .m"))
        .map(|m| format!("{} {}", m.attr("data-mode").unwrap_or(""), text(m).trim()))
        .collect();
    assert_eq!(chips, ["STRICT 2 STRICT"]);
}

#[test]
fn findings_count_is_checks_exactly() {
    for fixture in [TUTORIAL, CANARY] {
        let dir = root().join(fixture);
        let summary = check_json(&dir)["summary"].clone();
        let html = page_of(&dir);
        let header = |what: &str| -> u64 {
            let e = one(&html, &format!("#counts [data-count={what}] b"));
            text(e).parse().expect("a number")
        };
        assert!(summary["findings"].as_u64().expect("findings") > 0);
        for key in ["findings", "deny", "warn", "audit"] {
            assert_eq!(
                Some(header(key)),
                summary[key].as_u64(),
                "{fixture}: {key} in the header"
            );
        }
        let d = data(&html);
        let fd = d["fd"].as_array().expect("fd");
        assert_eq!(Some(fd.len() as u64), summary["findings"].as_u64());
        // By rule and by namespace, as check counts them.
        let rules = d["rules"].as_array().expect("rules");
        let subj = d["subj"].as_array().expect("subj");
        let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_ns: BTreeMap<String, u64> = BTreeMap::new();
        for f in fd {
            let rule = rules[f[1].as_u64().expect("rule") as usize][0]
                .as_str()
                .expect("id");
            *by_rule.entry(rule.to_owned()).or_default() += 1;
            let ns = subj[f[0].as_u64().expect("subject") as usize][1]
                .as_str()
                .expect("ns");
            if !ns.is_empty() {
                *by_ns.entry(ns.to_owned()).or_default() += 1;
            }
        }
        let want = |k: &str| -> BTreeMap<String, u64> {
            serde_json::from_value(summary[k].clone()).expect("a count map")
        };
        assert_eq!(by_rule, want("byRule"), "{fixture}: by rule");
        assert_eq!(by_ns, want("byNamespace"), "{fixture}: by namespace");
        // The grid's per-namespace buttons add up to the same.
        let mut grid_total = 0u64;
        for row in namespace_rows(&html).values() {
            for b in row.select(&sel("tr.nsrow button.fa")) {
                let n: u64 = text(b)
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("a count");
                grid_total += n;
            }
        }
        assert_eq!(
            grid_total,
            by_ns.values().sum::<u64>(),
            "{fixture}: grid findings"
        );
    }
}

/// Everything in a page that would make a browser reach beyond the file: elements that load
/// something (`link`, `img`, `iframe`, scripts with `src`, …), any attribute value naming an
/// `http(s)://` or protocol-relative URL, links that leave the page, and `http(s)://` or
/// `url(…)`/`@import` in inline scripts and styles. The data document is base64 (its
/// decoded text is shown as text, never as an attribute), so it is not scanned.
fn external_references(html: &Html) -> Vec<String> {
    let mut out = Vec::new();
    let data_id = meshguard::posture::page::DATA_ID;
    for e in html.select(&sel("*")) {
        let name = e.value().name();
        if [
            "link", "img", "iframe", "object", "embed", "base", "frame", "audio", "video", "source",
        ]
        .contains(&name)
        {
            out.push(format!("<{name}> element"));
        }
        for (attr, value) in e.value().attrs() {
            let v = value.trim().to_ascii_lowercase();
            if v.contains("http://") || v.contains("https://") || v.starts_with("//") {
                out.push(format!("<{name} {attr}={value:?}>"));
            }
            if [
                "href",
                "src",
                "action",
                "formaction",
                "srcset",
                "poster",
                "data",
            ]
            .contains(&attr)
                && !v.starts_with('#')
            {
                out.push(format!("<{name} {attr}={value:?}> leaves the page"));
            }
            if attr == "style" && (v.contains("url(") || v.contains("@import")) {
                out.push(format!("<{name} style={value:?}>"));
            }
        }
        if (name == "script" && e.attr("id") != Some(data_id)) || name == "style" {
            let body = text(e).to_ascii_lowercase();
            for needle in ["http://", "https://", "url(", "@import"] {
                if body.contains(needle) {
                    out.push(format!("inline <{name}> contains {needle:?}"));
                }
            }
        }
    }
    out
}

#[test]
fn page_references_nothing_outside_itself() {
    for fixture in [TUTORIAL, CANARY] {
        let html = page_of(&root().join(fixture));
        assert_eq!(
            external_references(&html),
            Vec::<String>::new(),
            "{fixture}"
        );
        // Self-contained: the CSS and the script are inline, and there is something in them.
        assert!(text(one(&html, "head > style")).len() > 1000);
        let scripts: Vec<ElementRef> = html.select(&sel("script:not([type])")).collect();
        assert_eq!(scripts.len(), 1);
        assert!(text(scripts[0]).contains("DecompressionStream"));
        // Its in-page links point at sections that exist.
        for a in html.select(&sel("a[href]")) {
            let target = &a.attr("href").expect("href")[1..];
            assert!(
                html.select(&sel(&format!("#{target}"))).next().is_some(),
                "{fixture}: dangling link #{target}"
            );
        }
    }
    // A URL in the input (a plaintext jwksUri, quoted by the finding's message) travels in the
    // data and is shown as text: the markup never names it.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("ra.yaml"),
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: http://keys.example/jwks.json
"#,
    )
    .expect("write");
    let (code, err, raw) = report(&[dir.path().to_str().expect("path")]);
    assert_eq!(code, 0, "{err}");
    let html = Html::parse_document(&raw);
    let decoded = data(&html).to_string();
    assert!(
        decoded.contains("http://keys.example/jwks.json"),
        "{decoded}"
    );
    assert!(!raw.contains("keys.example"), "the markup names the URL");
    assert_eq!(external_references(&html), Vec::<String>::new());
}

#[test]
fn the_reference_scan_catches_each_kind_of_reference() {
    let page = |body: &str| {
        Html::parse_document(&format!(
            "<!DOCTYPE html><html><head></head><body>{body}</body></html>"
        ))
    };
    assert!(external_references(&page(
        r##"<a href="#x">x</a><p id="x" title="plain">t</p>"##
    ))
    .is_empty());
    for bad in [
        r#"<img src="data:image/png;base64,AAAA">"#,
        r#"<link rel="stylesheet" href="s.css">"#,
        r#"<a href="https://example.com/">out</a>"#,
        r#"<a href="page2.html">relative</a>"#,
        r#"<p title="see http://example.com">t</p>"#,
        r#"<script src="//cdn.example/x.js"></script>"#,
        r#"<script>fetch("https://example.com/x")</script>"#,
        r#"<style>@import "x.css";</style>"#,
        r#"<style>body { background: url(x.png) }</style>"#,
        r#"<div style="background:url(x.png)"></div>"#,
        r#"<svg><image href="https://example.com/x.svg"/></svg>"#,
    ] {
        assert!(
            !external_references(&page(bad)).is_empty(),
            "not caught: {bad}"
        );
    }
}

#[test]
fn reachability_section_shows_the_simulators_decisions() {
    let html = page_of(&root().join(TUTORIAL));
    let section = one(&html, "section#reach-section");
    assert!(text(section).contains("meshguard simulate"));
    assert!(section.select(&sel("select#reach-ns")).next().is_some());
    assert!(section.select(&sel("#reach")).next().is_some());
    let d = data(&html);
    let ns: Vec<&str> = d["ns"]
        .as_array()
        .expect("ns")
        .iter()
        .map(|n| n["n"].as_str().expect("name"))
        .collect();
    let reach = d["reach"].as_array().expect("reach");
    assert_eq!(reach.len(), ns.len());
    let prod = &reach[ns
        .iter()
        .position(|n| *n == "production")
        .expect("production")];
    // Rows: the plaintext client first, then identities; columns: production's workloads.
    let ids: Vec<&str> = prod["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|r| r[0].as_str().expect("id"))
        .collect();
    assert_eq!(ids[0], "", "the plaintext client comes first");
    assert!(ids.contains(&"production/frontend"), "{ids:?}");
    let cols: Vec<&str> = prod["cols"]
        .as_array()
        .expect("cols")
        .iter()
        .map(|c| {
            d["wl"][c[0].as_u64().expect("w") as usize][1]
                .as_str()
                .expect("n")
        })
        .collect();
    assert_eq!(
        cols.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(["backend", "frontend"])
    );
    // istio-system has no workloads: no matrix.
    assert!(reach[ns.iter().position(|n| *n == "istio-system").expect("root")].is_null());
    // Cells are sets: the plaintext client gets nothing (STRICT mTLS refuses it, naming the
    // PeerAuthentication), production/frontend may GET /api/data of the backend, so its cell
    // says "some", never "none".
    let outcomes = prod["o"].as_array().expect("o");
    let w = prod["w"].as_u64().expect("w") as usize;
    let alphabet = "#$%&'()*+,./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~";
    let at = |row: usize, col: usize| -> &Value {
        let codes = prod["c"][row].as_str().expect("row");
        let code = codes[col * w..(col + 1) * w]
            .chars()
            .fold(0, |n, ch| n * 90 + alphabet.find(ch).expect("a digit"));
        &outcomes[code]
    };
    let backend = cols.iter().position(|c| *c == "backend").expect("backend");
    let plain = at(0, backend);
    assert_eq!(plain[0], "N", "{plain}");
    assert_eq!(plain[1], "none");
    let refused = &plain[3][0];
    assert_eq!(refused[2], "refused");
    assert!(refused[0].is_u64(), "links to the PeerAuthentication");
    let frontend = ids
        .iter()
        .position(|i| *i == "production/frontend")
        .expect("frontend row");
    let cell = at(frontend, backend);
    assert_eq!(cell[0], "S", "{cell}");
    let text = cell[1].as_str().expect("text");
    assert!(text.split("; ").any(|a| a == "GET /api/data"), "{text}");
    assert!(
        cell[2]
            .as_array()
            .expect("allowed by")
            .iter()
            .any(|d| d[2] == "allow"),
        "{cell}"
    );
    // "none" is never said of an edge some request can use: every cell the page marks none
    // is denied by `meshguard simulate` for the requests the tutorial's policies name, and
    // the frontend's GET /api/data, which its cell lists, is allowed.
    let dir = root().join(TUTORIAL);
    for (r, id) in ids.iter().enumerate() {
        for (c, col) in cols.iter().enumerate() {
            if at(r, c)[0] != "N" {
                continue;
            }
            for req in [
                vec!["--method", "GET", "--path", "/api/data"],
                vec!["--method", "GET", "--path", "/"],
                vec![
                    "--method",
                    "POST",
                    "--path",
                    "/api/x",
                    "--header",
                    "x-api-version=v1",
                ],
                vec![],
            ] {
                let from = if id.is_empty() {
                    vec!["--plaintext".to_owned()]
                } else {
                    vec!["--from".to_owned(), (*id).to_owned()]
                };
                assert_eq!(
                    simulate(&dir, &from, &format!("production/{col}"), &req),
                    1,
                    "{id} → {col} is marked none, but simulate allows {req:?}"
                );
            }
        }
    }
    assert_eq!(
        simulate(
            &dir,
            &["--from".to_owned(), "production/frontend".to_owned()],
            "production/backend",
            &["--method", "GET", "--path", "/api/data"]
        ),
        0
    );
}

/// `meshguard simulate DIR FROM --to TO REQ…`: its exit code (0 allow, 1 deny).
fn simulate(dir: &Path, from: &[String], to: &str, req: &[&str]) -> i32 {
    let mut args: Vec<String> = vec!["simulate".into(), dir.display().to_string()];
    args.extend(from.iter().cloned());
    args.extend(["--to".to_owned(), to.to_owned()]);
    args.extend(req.iter().map(|s| (*s).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let Command::Simulate(a) = cli(&refs) else {
        panic!("not a simulate command");
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = meshguard::simulate::execute(&a, &mut out, &mut err).code();
    assert!(
        code <= 1,
        "simulate failed: {}",
        String::from_utf8_lossy(&err)
    );
    code
}

#[test]
fn reachability_rows_are_bounded_and_the_cut_is_counted() {
    let dir = root().join(TUTORIAL);
    let (code, err, raw) = report(&[dir.to_str().expect("path"), "--max-identities", "1"]);
    assert_eq!(code, 0, "{err}");
    let d = data(&Html::parse_document(&raw));
    let prod = d["reach"]
        .as_array()
        .expect("reach")
        .iter()
        .find(|m| !m.is_null())
        .expect("a matrix");
    let rows = prod["ids"].as_array().expect("ids").len();
    assert_eq!(rows, 2, "the plaintext client and one identity");
    assert!(
        prod["total"].as_u64().expect("total") > 1,
        "the page knows how many were cut: {}",
        prod["total"]
    );
}

/// A minimal injector webhook of revision `rev`, shaped as Istio's chart writes it
/// (istio-discovery/templates/mutatingwebhook.yaml): namespaces labelled `istio.io/rev=<rev>`.
fn injector(rev: &str) -> String {
    let name = if rev == "default" {
        "istio-sidecar-injector".to_owned()
    } else {
        format!("istio-sidecar-injector-{rev}")
    };
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: {name}
  labels: {{app: sidecar-injector, istio.io/rev: {rev}}}
webhooks:
- name: rev.namespace.sidecar-injector.istio.io
  clientConfig: {{service: {{name: istiod, namespace: istio-system, path: /inject, port: 443}}}}
  sideEffects: None
  admissionReviewVersions: [v1]
  rules: [{{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}}]
  namespaceSelector:
    matchExpressions:
    - {{key: istio.io/rev, operator: In, values: [{rev}]}}
    - {{key: istio-injection, operator: DoesNotExist}}
  objectSelector:
    matchExpressions:
    - {{key: sidecar.istio.io/inject, operator: NotIn, values: ["false"]}}
---
"#
    )
}

const CANARY_NAMESPACE: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {istio.io/rev: canary}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
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
      containers: [{name: web, image: registry.example/web:1, ports: [{containerPort: 8080}]}]
"#;

/// The data plane of `shop` and of its workload `web`, and the header's mesh facts, when the
/// input holds the injectors of `revisions`.
fn shop_with_injectors(revisions: &[&str]) -> (String, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut mesh = String::new();
    for rev in revisions {
        mesh.push_str(&injector(rev));
    }
    std::fs::write(dir.path().join("istio.yaml"), mesh).expect("write");
    std::fs::write(dir.path().join("shop.yaml"), CANARY_NAMESPACE).expect("write");
    let html = page_of(dir.path());
    let row = namespace_rows(&html)["shop"];
    let ns_dp = text(row.select(&sel("tr.nsrow .dp")).next().expect("dp"));
    let d = data(&html);
    let web = d["wl"]
        .as_array()
        .expect("wl")
        .iter()
        .find(|w| w[1] == "web")
        .expect("web");
    let facts = text(one(&html, "#mesh-facts"));
    (ns_dp, web[3].as_str().expect("dp").to_owned(), facts)
}

#[test]
fn page_follows_the_mesh_as_installed() {
    // Only the default revision's injector: nothing serves istio.io/rev=canary, so shop's pods
    // get no sidecar.
    let (ns_dp, web_dp, facts) = shop_with_injectors(&["default"]);
    assert_eq!((ns_dp.as_str(), web_dp.as_str()), ("none", "none"));
    assert!(facts.contains("revision default"), "{facts}");
    assert!(!facts.contains("revision canary"), "{facts}");
    // Once revision canary's injector is installed, the same namespace is in the mesh.
    let (ns_dp, web_dp, facts) = shop_with_injectors(&["default", "canary"]);
    assert_eq!((ns_dp.as_str(), web_dp.as_str()), ("sidecar", "sidecar"));
    assert!(facts.contains("revision canary"), "{facts}");
}

#[test]
fn header_names_the_input_the_version_and_the_mesh_context() {
    let html = page_of(&root().join(CANARY));
    let sub = text(one(&html, "header p.sub"));
    assert!(sub.contains(env!("CARGO_PKG_VERSION")), "{sub}");
    assert!(
        sub.contains(CANARY) && sub.contains("meshguard check"),
        "{sub}"
    );
    let facts = text(one(&html, "#mesh-facts"));
    // The fixture's MeshConfig and injectors (tests/fixtures/mesh/canary/istio.yaml).
    for want in [
        "corp.example",
        "revision canary",
        "tag prod-stable",
        "root namespace",
    ] {
        assert!(facts.contains(want), "no {want:?} in {facts}");
    }
    let count = |what: &str| text(one(&html, &format!("#counts [data-count={what}] b")));
    assert_eq!(count("namespaces"), namespace_rows(&html).len().to_string());
}

#[test]
fn unwritable_output_is_an_error() {
    let Command::Report(a) = cli(&[
        "report",
        root().join(TUTORIAL).to_str().expect("path"),
        "--html",
        "/nonexistent-dir/page.html",
    ]) else {
        panic!("not a report command");
    };
    let mut err = Vec::new();
    assert_eq!(meshguard::posture::execute(&a, &mut err).code(), 2);
    let err = String::from_utf8(err).expect("utf-8");
    assert!(
        err.contains("cannot write /nonexistent-dir/page.html"),
        "{err}"
    );
    // And unreadable input likewise.
    let (code, err, _) = report(&["/nonexistent-dir/manifests"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent-dir/manifests"), "{err}");
}

#[test]
fn mesh_config_flag_is_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(
        &mesh,
        "trustDomain: corp.example\nrootNamespace: mesh-root\n",
    )
    .expect("write");
    let tutorial = root().join(TUTORIAL);
    let (tutorial, mesh) = (
        tutorial.to_str().expect("path"),
        mesh.to_str().expect("path"),
    );
    let (code, err, raw) = report(&[tutorial, "--mesh-config", mesh]);
    assert_eq!(code, 0, "{err}");
    let html = Html::parse_document(&raw);
    let facts = text(one(&html, "#mesh-facts"));
    assert!(
        facts.contains("corp.example") && facts.contains("mesh-root"),
        "{facts}"
    );
    // The root namespace decides which PeerAuthentication is mesh-wide: istio-system's no
    // longer is.
    assert!(
        facts.contains("PERMISSIVE: no mesh-wide PeerAuthentication"),
        "{facts}"
    );
    let plain = page_of(&root().join(TUTORIAL));
    assert!(text(one(&plain, "#mesh-facts")).contains("STRICT (istio-system/mesh-strict)"));
    // The same findings as `check --mesh-config`.
    let Command::Check(a) = cli(&["check", tutorial, "--mesh-config", mesh, "--format", "json"])
    else {
        panic!("not a check command");
    };
    let (mut out, mut e) = (Vec::new(), Vec::new());
    meshguard::check::execute(a, &mut std::io::empty(), &mut out, &mut e);
    let summary: Value = serde_json::from_slice::<Value>(&out).expect("json")["summary"].clone();
    let header = text(one(&html, "#counts [data-count=findings] b"));
    assert_eq!(
        Some(header.parse::<u64>().expect("n")),
        summary["findings"].as_u64()
    );
    assert_eq!(
        data(&html)["fd"].as_array().expect("fd").len() as u64,
        summary["findings"].as_u64().expect("n")
    );
    // A MeshConfig that does not parse is an error, as in check.
    std::fs::write(dir.path().join("bad.yaml"), "trustDomain: [").expect("write");
    let bad = dir.path().join("bad.yaml");
    let (code, err, _) = report(&[tutorial, "--mesh-config", bad.to_str().expect("path")]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn an_ambient_mesh_shows_ztunnel_waypoints_and_paths() {
    let html = page_of(&root().join("tests/fixtures/ambient"));
    let facts = text(one(&html, "#mesh-facts"));
    assert!(facts.contains("ambient capture"), "{facts}");
    assert!(
        facts.contains("waypoint shop/waypoint")
            && facts.contains("runs as cluster.local/ns/shop/sa/waypoint")
            && facts.contains("Services frontend, reviews, metrics"),
        "{facts}"
    );
    let data = data(&html);
    let wl = data["wl"].as_array().expect("wl");
    let reviews = wl.iter().find(|w| w[1] == "reviews").expect("reviews row");
    assert_eq!(reviews[3], "ztunnel");
    assert_eq!(reviews[15], "shop/waypoint (Service reviews)");
    let ledger = wl.iter().find(|w| w[1] == "ledger").expect("ledger row");
    assert_eq!(ledger[3], "sidecar");
    assert!(ledger[15].is_null());
    // Ambient cells carry their path.
    let hops: Vec<String> = data["reach"]
        .as_array()
        .expect("reach")
        .iter()
        .filter_map(|m| m["hops"].as_array())
        .flatten()
        .filter_map(|h| h.as_str().map(str::to_owned))
        .collect();
    assert!(
        hops.iter()
            .any(|h| h
                .contains("→ waypoint shop/waypoint (decides with the caller's own identity) →")),
        "{hops:?}"
    );
}
