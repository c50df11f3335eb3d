//! The documentation: README.md and the pages under docs/. The rule table of docs/rules.md is
//! `meshguard rules --format markdown`, the policy example of docs/configuration.md loads, and
//! every relative link (file and `#anchor`) of README.md and docs/*.md resolves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn rule_section_matches_the_registry() {
    let page = read("docs/rules.md");
    let start =
        page.find("<!-- rules:start -->\n").expect("start marker") + "<!-- rules:start -->\n".len();
    let end = page.find("<!-- rules:end -->").expect("end marker");
    let expected = meshguard::catalogue::markdown();
    assert!(
        page[start..end] == expected,
        "docs/rules.md's rule section is stale; replace it with the output of `meshguard rules --format markdown`:\n{expected}"
    );
}

/// The policy example of "Modes and policy configuration" is a valid policy.
#[test]
fn policy_example_loads() {
    let page = read("docs/configuration.md");
    let section = page
        .find("# Modes and policy configuration")
        .expect("section");
    let start = page[section..].find("```yaml\n").expect("example") + section + 8;
    let end = page[start..].find("```").expect("end of example") + start;
    let policy = meshguard::catalogue::policy_from_yaml(&page[start..end], "docs/configuration.md")
        .unwrap_or_else(|e| panic!("docs/configuration.md's policy example: {e}"));
    assert_eq!(policy.exceptions.len(), 1);
    assert!(policy.has_overrides());
}

/// The Markdown files whose links are checked: README.md and every docs/*.md.
fn markdown_files() -> Vec<String> {
    let mut files = vec!["README.md".to_string()];
    let mut pages: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut fenced = false;
    text.lines().enumerate().filter(move |(_, line)| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// GitHub's heading anchors: lower case, punctuation other than `-` and `_` dropped, spaces
/// to `-`, and `-1`, `-2`, … on repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

/// `(line, target)` of every inline link or image outside code (fences and backtick spans).
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (number, line) in prose(text) {
        let mut outside = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                outside.push_str(part);
            }
        }
        let mut rest = outside.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            let target = rest[..end].trim();
            let target = target.split_whitespace().next().unwrap_or(""); // drops a "title"
            out.push((number + 1, target.to_string()));
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = read(&file);
        let dir = Path::new(&file)
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        for (line, target) in links(&text) {
            if target.is_empty()
                || target.contains("://")
                || target.starts_with("mailto:")
                || target.starts_with('<')
            {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved: PathBuf = if path.is_empty() {
                PathBuf::from(&file)
            } else {
                dir.join(path)
            };
            let full = root().join(&resolved);
            if !full.exists() {
                broken.push(format!(
                    "{file}:{line}: {target}: no file {}",
                    resolved.display()
                ));
                continue;
            }
            if let Some(anchor) = anchor {
                if full.extension().is_some_and(|e| e == "md") && full.is_file() {
                    let target_text = std::fs::read_to_string(&full).unwrap_or_default();
                    if !anchors(&target_text).contains(anchor) {
                        broken.push(format!(
                            "{file}:{line}: {target}: no heading with anchor #{anchor} in {}",
                            resolved.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} relative links found: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Every docs page is listed on docs/README.md, and README.md links that index: each section
/// is at most two clicks from the README.
#[test]
fn every_docs_page_is_listed_in_the_index() {
    let readme = read("README.md");
    assert!(
        links(&readme).iter().any(|(_, t)| t == "docs/README.md"),
        "README.md does not link docs/README.md"
    );
    let index = read("docs/README.md");
    let listed: BTreeSet<String> = links(&index)
        .into_iter()
        .map(|(_, t)| t.split('#').next().unwrap_or("").to_string())
        .collect();
    let missing: Vec<String> = markdown_files()
        .into_iter()
        .filter(|f| f.starts_with("docs/") && f != "docs/README.md")
        .filter(|f| !listed.contains(f.trim_start_matches("docs/")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/README.md does not list {missing:?}"
    );
}

/// The anchor and link parsers themselves, on the cases the docs use.
#[test]
fn anchors_and_links_parse_like_github() {
    let text = "# The posture page: `meshguard report --html`\n## Reports (PolicyReports)\n\
                ```\n# not a heading\n```\n## Rules\n## Rules\nSee [x](a.md#b) and `[y](no)` ![p](p.png).\n";
    let found = anchors(text);
    for want in [
        "the-posture-page-meshguard-report---html",
        "reports-policyreports",
        "rules",
        "rules-1",
    ] {
        assert!(found.contains(want), "{want} not in {found:?}");
    }
    assert!(!found.contains("not-a-heading"));
    let targets: Vec<String> = links(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(targets, ["a.md#b", "p.png"]);
}
