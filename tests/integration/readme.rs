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
