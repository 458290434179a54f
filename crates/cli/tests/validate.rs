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
        assert_eq!(
            sorted,
            [
                "column", "file", "line", "message", "object", "path", "rule"
            ],
            "{r}"
        );
        assert!(r["line"].as_u64().unwrap() > 0, "{r}");
        assert!(r["column"].as_u64().unwrap() > 0, "{r}");
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
fn human_violations_are_located_in_file_order_with_source_and_caret() {
    let out = run_with_stdin(&["validate", "-"], INVALID_VMI.as_bytes());
    assert_eq!(code(&out), 1);
    assert_eq!(
        stdout(&out),
        "\
<stdin>: VirtualMachineInstance/ns/bad
<stdin>:9:22: spec.domain.devices.interfaces[1].masquerade: masquerade binding is only allowed on the pod network
     9 |       - {name: blue, masquerade: {}}
       |                      ^
<stdin>:13:12: spec.networks[2].name: network name \"blue\" is used twice
    13 |   - {name: blue, multus: {networkName: blue2}}
       |            ^
"
    );
    // The JSON records say the same, in the same order.
    let json = records(&run_with_stdin(
        &["validate", "--output", "json", "-"],
        INVALID_VMI.as_bytes(),
    ));
    assert_eq!(
        spots(&json),
        [
            (9, 22, "masquerade-pod-network-only".to_string()),
            (13, 12, "network-name-unique".to_string())
        ]
    );
}

/// `(line, column, rule)` of each record.
fn spots(records: &[serde_json::Value]) -> Vec<(u64, u64, String)> {
    records
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap_or(0),
                r["column"].as_u64().unwrap_or(0),
                r["rule"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_type_error_is_located_and_in_kubernetes_words() {
    let text = VALID_VMI.replace("masquerade: {}}", "masquerade: {}, ports: [{port: http}]}");
    let out = run_with_stdin(&["validate", "-"], text.as_bytes());
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        "\
<stdin>:7:67: spec.domain.devices.interfaces[0].ports[0].port: expected an integer, got string \"http\"
     7 |       interfaces: [{name: default, masquerade: {}, ports: [{port: http}]}]
       |                                                                   ^
"
    );
    let out = run_with_stdin(&["validate", "--output", "json", "-"], text.as_bytes());
    assert_eq!(
        stdout(&out),
        r#"[
  {
    "file": "<stdin>",
    "object": null,
    "path": "spec.domain.devices.interfaces[0].ports[0].port",
    "rule": "input-type",
    "message": "expected an integer, got string \"http\"",
    "line": 7,
    "column": 67
  }
]
"#
    );
}

#[test]
fn json_input_is_located_too() {
    let text = r#"{"kind": "VirtualMachineInstance",
 "spec": {"networks": [{"name": "a", "pod": {}}, {"name": "a", "pod": {}}]}}"#;
    let out = run_with_stdin(&["validate", "--output", "json", "-"], text.as_bytes());
    assert_eq!(code(&out), 1);
    assert!(
        spots(&records(&out)).contains(&(2, 59, "network-name-unique".to_string())),
        "{}",
        stdout(&out)
    );
}

#[test]
fn json_output_carries_input_errors() {
    let out = run_with_stdin(
        &["validate", "--output", "json", "-"],
        b"kind: VirtualMachineInstance\nspec: {domain: [\n",
    );
    assert_eq!(code(&out), 2);
    let found = records(&out);
    assert_eq!(found.len(), 1, "{}", stdout(&out));
    assert_eq!(found[0]["rule"], "input-syntax");
    assert_eq!(found[0]["file"], "<stdin>");
    assert!(found[0]["line"].as_u64().unwrap() > 0);
    assert!(found[0]["column"].as_u64().unwrap() > 0);
    assert!(found[0]["object"].is_null() && found[0]["path"].is_null());
    let out = run(&[
        "validate",
        "--output",
        "json",
        "/nonexistent/netbind/vm.yaml",
    ]);
    assert_eq!(code(&out), 2);
    let found = records(&out);
    assert_eq!(found[0]["rule"], "input-unreadable");
    assert!(found[0]["line"].is_null());
}

#[test]
fn syntax_errors_do_not_repeat_their_position() {
    let out = run_with_stdin(&["validate", "-"], b"kind: x\n  bad: [\n");
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        "<stdin>:2:6: mapping values are not allowed in this context\n     2 |   bad: [\n       |      ^\n"
    );
}

#[test]
fn unsupported_kinds_are_noted_and_do_not_change_the_exit_code() {
    let text = format!("kind: VirtualMachinePool\nmetadata: {{name: pool}}\n---\n{VALID_VMI}");
    let out = run_with_stdin(&["validate", "-"], text.as_bytes());
    assert_eq!(code(&out), 0);
    assert!(
        stderr(&out)
            .starts_with("<stdin>:1:7: VirtualMachinePool/pool: unsupported kind, skipped\n"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_file_without_any_vm_is_invalid_and_says_so() {
    let text = "kind: ConfigMap\nmetadata: {name: c}\n---\nkind: VirtualMachineInstace\nmetadata: {name: v}\n";
    let out = run_with_stdin(&["validate", "-"], text.as_bytes());
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out),
        "\
<stdin>:1:7: ConfigMap/c: unsupported kind, skipped
     1 | kind: ConfigMap
       |       ^
<stdin>:4:7: VirtualMachineInstace/v: unsupported kind, skipped; did you mean `VirtualMachineInstance`?
     4 | kind: VirtualMachineInstace
       |       ^
<stdin>: no VirtualMachine or VirtualMachineInstance found; netbind checks only these kinds
"
    );
    let out = run_with_stdin(&["validate", "--output", "json", "-"], text.as_bytes());
    assert_eq!(code(&out), 1);
    assert_eq!(records(&out)[0]["rule"], "input-no-vm");
    // plan refuses it the same way.
    let out = run_with_stdin(&["plan", "-"], text.as_bytes());
    assert_eq!(code(&out), 1, "{}", stderr(&out));
}

#[test]
fn unknown_fields_anywhere_are_located_warnings_with_a_suggestion() {
    let text = VALID_VMI
        .replace("masquerade: {}}", "masquerade: {}, colour: red}")
        .replace(
            "    devices:\n",
            "    devices:\n      autoattachPodInterfce: false\n",
        )
        .replace("  networks:", "  netwroks: []\n  networks:");
    let out = run_with_stdin(&["validate", "-"], text.as_bytes());
    assert_eq!(
        code(&out),
        0,
        "a warning is not a violation: {}",
        stderr(&out)
    );
    assert_eq!(
        stderr(&out),
        "\
<stdin>:7:7: warning: spec.domain.devices.autoattachPodInterfce: unknown field, ignored; did you mean `autoattachPodInterface`?
     7 |       autoattachPodInterfce: false
       |       ^
<stdin>:8:52: warning: spec.domain.devices.interfaces[0].colour: unknown field, ignored
     8 |       interfaces: [{name: default, masquerade: {}, colour: red}]
       |                                                    ^
<stdin>:9:3: warning: spec.netwroks: unknown field, ignored; did you mean `networks`?
     9 |   netwroks: []
       |   ^
"
    );
}

#[test]
fn unknown_fields_of_the_cluster_config_are_warned() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = write(
        dir.path(),
        "cluster.yaml",
        "networkz: {}\nfeatureGates: [PasstBinding]\n",
    );
    let out = run_with_stdin(
        &["validate", "--cluster-config", &cluster, "-"],
        VALID_VMI.as_bytes(),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "{cluster}:1:1: warning: networkz: unknown field, ignored; did you mean `network`? (cluster configuration)\n     1 | networkz: {{}}\n       | ^\n"
        )
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
