//! `netbind validate`: exit codes, output formats, the invalid corpus, real manifests.

mod common;

use common::*;

const VALID_VMI: &str = "\
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: ok, namespace: ns}
spec:
  domain:
    devices:
      interfaces: [{name: default, masquerade: {}}]
  networks: [{name: default, pod: {}}]
";

/// Two violations: a duplicate network name, and masquerade on a Multus network.
const INVALID_VMI: &str = "\
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: bad, namespace: ns}
spec:
  domain:
    devices:
      interfaces:
      - {name: default, masquerade: {}}
      - {name: blue, masquerade: {}}
  networks:
  - {name: default, pod: {}}
  - {name: blue, multus: {networkName: blue}}
  - {name: blue, multus: {networkName: blue2}}
";

#[test]
fn a_valid_manifest_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["validate", &write(dir.path(), "ok.yaml", VALID_VMI)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn an_invalid_manifest_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["validate", &write(dir.path(), "bad.yaml", INVALID_VMI)]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn an_unparsable_manifest_exits_2_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "broken.yaml",
        "kind: VirtualMachineInstance\nspec: {domain: [\n",
    );
    let out = run(&["validate", &file]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with(&format!("{file}:")), "{err}");
    let mut parts = first[file.len() + 1..].splitn(3, ':');
    assert!(
        parts.next().unwrap().parse::<usize>().is_ok(),
        "line number in {first}"
    );
    assert!(
        parts.next().unwrap().parse::<usize>().is_ok(),
        "column number in {first}"
    );
    assert!(err.contains('^'), "a caret under the column: {err}");
}

#[test]
fn a_missing_file_exits_2_naming_it() {
    let out = run(&["validate", "/nonexistent/netbind/vm.yaml"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).starts_with("/nonexistent/netbind/vm.yaml: cannot read"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreadable_cluster_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let vm = write(dir.path(), "ok.yaml", VALID_VMI);
    let out = run(&[
        "validate",
        "--cluster-config",
        "/nonexistent/netbind/cluster.yaml",
        &vm,
    ]);
    assert_eq!(code(&out), 2);
    let bad = write(dir.path(), "cluster.yaml", "network: [1, 2\n");
    let out = run(&["validate", "--cluster-config", &bad, &vm]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).starts_with(&bad), "{}", stderr(&out));
}

#[test]
fn unreadable_input_wins_over_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.yaml", INVALID_VMI);
    let out = run(&["validate", &bad, "/nonexistent/netbind/vm.yaml"]);
    assert_eq!(code(&out), 2);
    assert!(
        stdout(&out).contains(&format!("{bad}: VirtualMachineInstance/ns/bad")),
        "the readable file is still checked"
    );
}

#[test]
fn stdin_is_read_for_dash() {
    let out = run_with_stdin(&["validate", "-"], VALID_VMI.as_bytes());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = run_with_stdin(
        &["validate", "--output", "json", "-"],
        INVALID_VMI.as_bytes(),
    );
    assert_eq!(code(&out), 1);
    assert!(records(&out).iter().all(|r| r["file"] == "<stdin>"));
}

#[test]
fn json_output_is_an_array_of_contract_records() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bad.yaml", INVALID_VMI);
    let out = run(&["validate", "--output", "json", &file]);
    assert_eq!(code(&out), 1);
    let records = records(&out);
    assert!(
        records.len() >= 2,
        "all violations, not just the first: {records:?}"
    );
    for r in &records {
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, ["file", "message", "object", "path", "rule"], "{r}");
        assert_eq!(r["file"], file.as_str());
        assert_eq!(r["object"], "VirtualMachineInstance/ns/bad");
        assert!(r["path"].as_str().unwrap().starts_with("spec."), "{r}");
        let rule = r["rule"].as_str().unwrap();
        assert!(
            !rule.is_empty()
                && rule
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "kebab-case rule: {rule}"
        );
    }
}

#[test]
fn json_output_of_valid_input_is_an_empty_array() {
    let out = run_with_stdin(&["validate", "--output", "json", "-"], VALID_VMI.as_bytes());
    assert_eq!(code(&out), 0);
    assert_eq!(stdout(&out), "[]\n");
}

#[test]
fn human_lines_start_with_the_path_under_a_file_and_object_header() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bad.yaml", INVALID_VMI);
    let human = stdout(&run(&["validate", &file]));
    let json = records(&run(&["validate", "--output", "json", &file]));
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(lines[0], format!("{file}: VirtualMachineInstance/ns/bad"));
    assert_eq!(lines.len(), 1 + json.len(), "{human}");
    for (line, r) in lines[1..].iter().zip(&json) {
        assert_eq!(
            *line,
            format!(
                "{}: {}",
                r["path"].as_str().unwrap(),
                r["message"].as_str().unwrap()
            )
        );
    }
}

#[test]
fn unsupported_kinds_are_noted_and_do_not_change_the_exit_code() {
    let text = format!("kind: VirtualMachinePool\nmetadata: {{name: pool}}\n---\n{VALID_VMI}");
    let out = run_with_stdin(&["validate", "-"], text.as_bytes());
    assert_eq!(code(&out), 0);
    assert!(
        stderr(&out).contains("<stdin>: VirtualMachinePool/pool: unsupported kind, skipped"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_file_without_any_vm_is_fine_with_a_note() {
    let out = run_with_stdin(
        &["validate", "-"],
        b"kind: ConfigMap\nmetadata: {name: c}\n",
    );
    assert_eq!(code(&out), 0);
    assert!(
        stderr(&out).contains("no VirtualMachine or VirtualMachineInstance"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_fields_inside_interfaces_are_warnings_on_stderr() {
    let text = VALID_VMI.replace("masquerade: {}}", "masquerade: {}, colour: red}");
    let out = run_with_stdin(&["validate", "-"], text.as_bytes());
    assert_eq!(
        code(&out),
        0,
        "a warning is not a violation: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out)
            .lines()
            .any(|l| l.starts_with("warning: spec.domain.devices.interfaces[0].colour")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_kubevirt_example_validates() {
    let files: Vec<_> = yaml_files(&testdata().join("kubevirt-examples"))
        .into_iter()
        .filter(|p| has_vm(p))
        .collect();
    assert!(
        files.len() >= 20,
        "found only {} example manifests",
        files.len()
    );
    for file in files {
        let out = run(&["validate", file.to_str().unwrap()]);
        assert_eq!(
            code(&out),
            0,
            "{}: {}{}",
            file.display(),
            stdout(&out),
            stderr(&out)
        );
    }
}

#[test]
fn every_user_guide_manifest_parses() {
    for file in yaml_files(&testdata().join("kubevirt-user-guide"))
        .into_iter()
        .filter(|p| has_vm(p))
    {
        let out = run(&["validate", "--output", "json", file.to_str().unwrap()]);
        assert_ne!(code(&out), 2, "{}: {}", file.display(), stderr(&out));
    }
}

/// Header comments of an invalid-corpus file.
#[derive(Default, Debug)]
struct Expect {
    rule: String,
    path: String,
    cluster: Option<String>,
    pod_addresses: Option<Vec<String>>,
}

fn expectations(text: &str) -> Expect {
    let mut e = Expect::default();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let line = line.trim_start_matches('#').trim();
        if let Some(v) = line.strip_prefix("rule:") {
            e.rule = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("path:") {
            e.path = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("cluster:") {
            e.cluster = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("pod-addresses:") {
            e.pod_addresses = Some(
                v.split(',')
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect(),
            );
        }
    }
    e
}

#[test]
fn every_invalid_corpus_file_reports_its_rule_at_its_path() {
    let files = yaml_files(&invalid_corpus());
    assert!(
        files.len() >= 60,
        "the invalid corpus has {} files, want at least 60",
        files.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let e = expectations(&text);
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        if e.rule.is_empty() || e.path.is_empty() {
            failures.push(format!("{name}: no `# rule:` / `# path:` header"));
            continue;
        }
        let mut args = vec!["validate".to_string(), "--output".into(), "json".into()];
        if let Some(cluster) = &e.cluster {
            args.push("--cluster-config".into());
            args.push(write(dir.path(), &format!("{name}.cluster.json"), cluster));
        }
        if let Some(addrs) = &e.pod_addresses {
            let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
            args.push("--pod-view".into());
            args.push(write(
                dir.path(),
                &format!("{name}.pod.json"),
                pod_view_json(&addrs),
            ));
        }
        args.push(file.to_str().unwrap().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args);
        if code(&out) != 1 {
            failures.push(format!(
                "{name}: exit {} (want 1): {}",
                code(&out),
                stderr(&out)
            ));
            continue;
        }
        let found = records(&out)
            .iter()
            .any(|r| r["rule"] == e.rule.as_str() && r["path"] == e.path.as_str());
        if !found {
            failures.push(format!(
                "{name}: no {} at {} in {}",
                e.rule,
                e.path,
                stdout(&out)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn pod_view_addresses_reach_the_validator() {
    let dir = tempfile::tempdir().unwrap();
    let vmi = VALID_VMI.replace("pod: {}", "pod: {vmNetworkCIDR: 10.0.2.0/24}");
    let file = write(dir.path(), "vmi.yaml", vmi);
    assert_eq!(code(&run(&["validate", &file])), 0);
    let clash = write(dir.path(), "clash.json", pod_view_json(&["10.0.2.15/24"]));
    let out = run(&["validate", "--pod-view", &clash, &file]);
    assert_eq!(
        code(&out),
        1,
        "a VM network overlapping the pod's address: {}",
        stdout(&out)
    );
}

#[test]
fn rules_lists_kebab_case_ids_with_descriptions() {
    let out = run(&["rules"]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(text.lines().count() >= 40, "{text}");
    for line in text.lines() {
        let (id, description) = line
            .split_once("  ")
            .unwrap_or_else(|| panic!("no description: {line}"));
        assert!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{line}"
        );
        assert!(!description.trim().is_empty(), "{line}");
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(code(&run(&["validate"])), 2);
    assert_eq!(code(&run(&["frobnicate"])), 2);
}
