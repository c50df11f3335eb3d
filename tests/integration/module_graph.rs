//! The crate's module structure, checked from its source: every `crate::<module>` path outside
//! test code is an edge between top-level modules. The graph must have no cycle, and every
//! edge must point down (or sideways) the layers below — the order `src/lib.rs` documents.
//! A new module must be placed in a layer here, which is the point: it makes you decide where
//! it sits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, lowest first. A module may use modules of its own layer or of any layer below.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "finding",
            "exit",
            "json",
            "metrics",
            "logging",
            "parallel",
            "freshness",
            "budget",
        ],
    ),
    (
        "resources",
        &[
            "resource",
            "model",
            "context",
            "config",
            "mesh",
            "dataplane",
        ],
    ),
    ("checks", &["rules", "mutation", "mtls", "authz"]),
    ("engine", &["engine"]),
    (
        "runs",
        &[
            "inventory",
            "cross",
            "analysis",
            "catalogue",
            "policy_change",
            "reach",
        ],
    ),
    (
        "front ends",
        &[
            "admission",
            "admission_policy",
            "manifest",
            "load",
            "report",
            "check",
            "audit",
            "audit_stream",
            "cluster",
            "mesh_watch",
            "exception_watch",
            "impact_watch",
            "simulate",
            "diff",
            "policy_test",
            "policy_report",
            "report_writer",
            "lease",
            "posture",
        ],
    ),
    (
        "server",
        &["tls", "certs", "listener", "http", "serve", "auditor"],
    ),
    ("command line", &["cli"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// Source without comments and without the trailing `#[cfg(test)] mod ...` blocks.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            let next = lines.peek().map(|l| l.trim_start()).unwrap_or("");
            if next.starts_with("mod ")
                || next.starts_with("pub(crate) mod ")
                || next.starts_with("pub mod ")
            {
                break; // test modules sit at the end of a file
            }
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" //").next().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The top-level modules a piece of code names through `crate::`, including grouped
/// `use crate::{a::X, b}` imports.
fn referenced(code: &str) -> BTreeSet<String> {
    referenced_via(code, "crate::")
}

/// The first segments of the paths a piece of code writes after `prefix` (`crate::`,
/// `super::`, `crate::authz::`), including grouped `use prefix{a::X, b}` imports.
fn referenced_via(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while let Some(i) = code[at..].find(prefix) {
        // `xcrate::` or `my_super::` is not the prefix.
        let before = code[..at + i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            at += i + prefix.len();
            continue;
        }
        let start = at + i + prefix.len();
        at = start;
        if bytes.get(start) == Some(&b'{') {
            // A group: collect the first segment of each comma-separated item at depth 1.
            let mut depth = 0usize;
            let mut item = String::new();
            for c in code[start..].chars() {
                match c {
                    '{' => {
                        depth += 1;
                        if depth > 1 {
                            item.push(c);
                        }
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                        item.push(c);
                    }
                    ',' if depth == 1 => {
                        push_first(&item, &mut found);
                        item.clear();
                    }
                    _ => item.push(c),
                }
            }
            push_first(&item, &mut found);
        } else {
            push_first(&code[start..], &mut found);
        }
    }
    found
}

fn push_first(path: &str, found: &mut BTreeSet<String>) {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if !name.is_empty() && name != "self" {
        found.insert(name);
    }
}

/// Edges between top-level modules, with a file that makes each.
/// The files of test modules declared out of line (`#[cfg(test)] mod tests;`, optionally with
/// `#[path = "..."]`): test code, like the trailing inline ones `code` drops.
fn test_module_files(src: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            out.extend(declared_test_modules(&path, &text));
        }
    }
    out
}

/// Where the out-of-line `#[cfg(test)]` modules `text` (the file at `file`) declares live.
fn declared_test_modules(file: &Path, text: &str) -> Vec<PathBuf> {
    let dir = file.parent().unwrap_or(Path::new(""));
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    // Children of mod.rs / lib.rs / main.rs sit beside it; of any other file, in its directory.
    let children = if matches!(stem, "mod" | "lib" | "main") {
        dir.to_path_buf()
    } else {
        dir.join(stem)
    };
    let mut out = Vec::new();
    let mut test = false;
    let mut path_attr: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line == "#[cfg(test)]" {
            test = true;
            continue;
        }
        if test {
            if let Some(p) = line
                .strip_prefix("#[path = \"")
                .and_then(|r| r.strip_suffix("\"]"))
            {
                path_attr = Some(p.to_string());
                continue;
            }
            let decl = line
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ")
                .strip_prefix("mod ")
                .and_then(|r| r.strip_suffix(';'));
            if let Some(name) = decl {
                out.push(match path_attr.take() {
                    Some(p) => dir.join(p),
                    None if children.join(name).join("mod.rs").exists() => {
                        children.join(name).join("mod.rs")
                    }
                    None => children.join(format!("{name}.rs")),
                });
            }
        }
        test = false;
        path_attr = None;
    }
    out
}

fn graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tests = test_module_files(&src);
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") || tests.contains(&path) {
                continue;
            }
            // A sibling test module (`#[cfg(test)] mod tests;` in `x.rs` is `x/tests.rs`) is
            // test code, like a trailing `mod tests { ... }` block.
            if path.file_name().and_then(|n| n.to_str()) == Some("tests.rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).expect("under src");
            let first = rel.components().next().expect("component");
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for to in referenced(&code(&text)) {
                if to != module {
                    edges
                        .entry(module.clone())
                        .or_default()
                        .entry(to)
                        .or_insert_with(|| rel.display().to_string());
                }
            }
            edges.entry(module.clone()).or_default();
        }
    }
    edges
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            for w in self.edges.get(v).into_iter().flat_map(|m| m.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    comp.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn modules_have_no_cycles_and_depend_downward() {
    let edges = graph();
    let cyc = cycles(&edges);
    assert!(
        cyc.is_empty(),
        "module cycles: {cyc:?}\nedges (module -> module: a file that makes the edge):\n{}",
        cyc.iter()
            .flatten()
            .flat_map(|m| edges[m]
                .iter()
                .map(move |(to, f)| format!("  {m} -> {to}: {f}")))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut wrong = Vec::new();
    for (from, tos) in &edges {
        let Some(lf) = layer_of(from) else {
            wrong.push(format!("module `{from}` is in no layer: add it to LAYERS"));
            continue;
        };
        for (to, file) in tos {
            match layer_of(to) {
                None => wrong.push(format!("module `{to}` is in no layer: add it to LAYERS")),
                Some(lt) if lt > lf => wrong.push(format!(
                    "{file}: `{from}` ({}) uses `{to}` ({}), a layer above it",
                    LAYERS[lf].0, LAYERS[lt].0
                )),
                Some(_) => {}
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Edges between the files of one module directory (`src/<module>/<file>.rs`, test files and
/// `mod.rs` left out): the `super::<file>` and `crate::<module>::<file>` paths of its code.
fn file_graph(module: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tests = test_module_files(&src);
    let dir = src.join(module);
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("read module dir") {
        let path = entry.expect("entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().and_then(|e| e.to_str()) == Some("rs")
            && !tests.contains(&path)
            && stem != "mod"
            && stem != "tests"
        {
            files.insert(stem.to_owned(), path.clone());
        }
    }
    let own = format!("crate::{module}::");
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (name, path) in &files {
        let text = code(&std::fs::read_to_string(path).expect("read source"));
        let mut to = referenced_via(&text, "super::");
        to.extend(referenced_via(&text, &own));
        let out = edges.entry(name.clone()).or_default();
        for t in to {
            if t != *name && files.contains_key(&t) {
                out.insert(t, format!("src/{module}/{name}.rs"));
            }
        }
    }
    edges
}

/// Within these modules the files depend one way too (`farm-studio look` draws file circles;
/// this keeps them from coming back).
#[test]
fn files_within_a_module_have_no_cycles() {
    for module in ["authz", "reach", "posture", "simulate", "dataplane"] {
        let edges = file_graph(module);
        assert!(edges.len() > 1, "src/{module} has files");
        let cyc = cycles(&edges);
        assert!(
            cyc.is_empty(),
            "file cycles in src/{module}: {cyc:?}\nedges:\n{}",
            cyc.iter()
                .flatten()
                .flat_map(|m| edges[m].keys().map(move |to| format!("  {m} -> {to}")))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn the_checker_sees_cycles_groups_and_skips_tests() {
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges
            .entry(a.into())
            .or_default()
            .insert(b.into(), "f".into());
    }
    edges.entry("d".into()).or_default();
    assert_eq!(cycles(&edges), [vec!["a", "b", "c"]]);
    let text = "use crate::{a::X, b};\n// crate::c in a comment\nfn f() { crate::d::g() }\n#[cfg(test)]\nmod tests { use crate::e; }\n";
    let found: Vec<String> = referenced(&code(text)).into_iter().collect();
    assert_eq!(found, ["a", "b", "d"]);
    let text = "use super::{decision::X, ztunnel::{self, Y}};\nuse crate::authz::explain::Z;\nfn f() { my_super::q(); super::ip::parse() }\n";
    let mut found = referenced_via(&code(text), "super::");
    found.extend(referenced_via(&code(text), "crate::authz::"));
    let found: Vec<String> = found.into_iter().collect();
    assert_eq!(found, ["decision", "explain", "ip", "ztunnel"]);
}

#[test]
fn out_of_line_test_modules_are_found() {
    let text =
        "mod kept;\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\n#[path = \"x_tests.rs\"]\nmod more;\n";
    assert_eq!(
        declared_test_modules(Path::new("src/rules/namespace.rs"), text),
        [
            PathBuf::from("src/rules/namespace/tests.rs"),
            PathBuf::from("src/rules/x_tests.rs")
        ]
    );
    assert_eq!(
        declared_test_modules(Path::new("src/authz/mod.rs"), "#[cfg(test)]\nmod tests;\n"),
        [PathBuf::from("src/authz/tests.rs")]
    );
}
