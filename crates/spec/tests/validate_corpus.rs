//! The invalid-spec corpus: `tests/invalid/NN-<rule>.yaml`, each a minimal manifest that
//! breaks exactly one rule. Header comments say what to expect:
//!
//! ```text
//! # rule: <rule id>
//! # path: <exact field path>
//! # cluster: <single-line JSON cluster configuration>   (optional)
//! # pod-addresses: 10.0.2.5/24,fd20::7/64                (optional)
//! ```
//!
//! Each file is read, defaulted and validated; the report must hold exactly one
//! violation, with that rule and path. Every rule in `RULES` has a file, and every file's
//! rule is in `RULES`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use netbind_spec::validate::RULES;
use netbind_spec::{ClusterConfig, Document, defaults, parse_documents, validate};

struct Case {
    file: PathBuf,
    rule: String,
    path: String,
    cluster: ClusterConfig,
    pod_addresses: Option<Vec<IpNet>>,
    text: String,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid")
}

fn header(text: &str, key: &str) -> Option<String> {
    let prefix = format!("# {key}:");
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
}

fn cases() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/invalid exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("corpus file is UTF-8");
            let name = file.display().to_string();
            let rule =
                header(&text, "rule").unwrap_or_else(|| panic!("{name}: no '# rule:' header"));
            let path =
                header(&text, "path").unwrap_or_else(|| panic!("{name}: no '# path:' header"));
            let cluster = match header(&text, "cluster") {
                Some(json) => ClusterConfig::parse(json.as_bytes())
                    .unwrap_or_else(|e| panic!("{name}: cluster: {e}")),
                None => ClusterConfig::default(),
            };
            let pod_addresses = header(&text, "pod-addresses").map(|list| {
                list.split(',')
                    .map(|a| {
                        a.trim()
                            .parse()
                            .unwrap_or_else(|e| panic!("{name}: pod address {a}: {e}"))
                    })
                    .collect()
            });
            Case {
                file,
                rule,
                path,
                cluster,
                pod_addresses,
                text,
            }
        })
        .collect()
}

#[test]
fn corpus_is_large_enough() {
    assert!(cases().len() >= 64, "only {} corpus files", cases().len());
}

#[test]
fn file_names_match_their_rule() {
    for case in cases() {
        let stem = case
            .file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let (number, rule) = stem.split_once('-').unwrap_or(("", ""));
        assert!(
            number.len() == 2 && number.bytes().all(|b| b.is_ascii_digit()),
            "{stem}: name is NN-<rule>.yaml"
        );
        assert_eq!(rule, case.rule, "{stem}: file name and '# rule:' differ");
    }
}

#[test]
fn each_file_breaks_exactly_its_rule_at_its_path() {
    let mut failures = Vec::new();
    for case in cases() {
        let docs = parse_documents(case.text.as_bytes())
            .unwrap_or_else(|e| panic!("{}: does not parse: {e}", case.file.display()));
        let [Document::Vm(obj)] = docs.as_slice() else {
            panic!("{}: expected one VM or VMI", case.file.display())
        };
        let defaulted = defaults::apply(obj, &case.cluster);
        let report = validate(&defaulted, &case.cluster, case.pod_addresses.as_deref());
        let got: Vec<(&str, &str)> = report
            .violations
            .iter()
            .map(|v| (v.rule, v.path.as_str()))
            .collect();
        if got != [(case.rule.as_str(), case.path.as_str())] {
            failures.push(format!(
                "{}: want [{} at {}], got {:?}",
                case.file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default(),
                case.rule,
                case.path,
                report.violations
            ));
        }
        assert!(report.violations.iter().all(|v| !v.message.is_empty()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rule_has_a_corpus_file_and_every_file_a_known_rule() {
    let known: BTreeSet<&str> = RULES.iter().map(|(id, _)| *id).collect();
    let covered: BTreeSet<String> = cases().iter().map(|c| c.rule.clone()).collect();
    let unknown: Vec<_> = covered
        .iter()
        .filter(|r| !known.contains(r.as_str()))
        .collect();
    assert!(unknown.is_empty(), "corpus rules not in RULES: {unknown:?}");
    let missing: Vec<_> = known.iter().filter(|r| !covered.contains(**r)).collect();
    assert!(
        missing.is_empty(),
        "RULES without a corpus file: {missing:?}"
    );
}

#[test]
fn both_kinds_are_covered() {
    let all = cases();
    assert!(
        all.iter()
            .any(|c| c.path.starts_with("spec.template.spec."))
    );
    assert!(
        all.iter()
            .any(|c| !c.path.starts_with("spec.template.spec."))
    );
}
