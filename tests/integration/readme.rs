//! README.md's rule section is `meshguard rules --format markdown`; keep them in sync.

#[test]
fn readme_rule_section_matches_the_registry() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme.find("<!-- rules:start -->\n").expect("start marker")
        + "<!-- rules:start -->\n".len();
    let end = readme.find("<!-- rules:end -->").expect("end marker");
    let expected = meshguard::catalogue::markdown();
    assert!(
        readme[start..end] == expected,
        "README.md's rule section is stale; replace it with the output of `meshguard rules --format markdown`:\n{expected}"
    );
}

/// The policy example of "Modes and policy configuration" is a valid policy.
#[test]
fn readme_policy_example_loads() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .find("## Modes and policy configuration")
        .expect("section");
    let start = readme[section..].find("```yaml\n").expect("example") + section + 8;
    let end = readme[start..].find("```").expect("end of example") + start;
    let policy = meshguard::catalogue::policy_from_yaml(&readme[start..end], "README.md")
        .unwrap_or_else(|e| panic!("README's policy example: {e}"));
    assert_eq!(policy.exceptions.len(), 1);
    assert!(policy.has_overrides());
}
