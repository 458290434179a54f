//! The README's rule table is the user's reference: it must list every rule id, and only those.

use netbind_spec::validate::RULES;

#[test]
fn readme_lists_every_rule_and_no_other() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let after = readme
        .split("## Validation rules")
        .nth(1)
        .expect("README has a Validation rules section");
    let section = after.split("\n## ").next().unwrap_or(after);
    let listed: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    for (id, _) in RULES {
        assert!(listed.contains(id), "README does not list rule {id}");
    }
    for id in &listed {
        assert!(
            RULES.iter().any(|(r, _)| r == id),
            "README lists {id}, which is no rule"
        );
    }
}
