//! `netbind plan` and `netbind annotations`: output shapes, pod views, determinism.

mod common;

use common::*;

fn example(name: &str) -> String {
    testdata()
        .join("kubevirt-examples")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

const TWO_VMIS: &str = "\
kind: VirtualMachineInstance
metadata: {name: one}
spec:
  domain: {devices: {interfaces: [{name: default, masquerade: {}}]}}
  networks: [{name: default, pod: {}}]
---
kind: VirtualMachineInstance
metadata: {name: two}
spec:
  domain: {devices: {interfaces: [{name: default, bridge: {}}]}}
  networks: [{name: default, pod: {}}]
";

#[test]
fn a_table_is_the_default_and_says_a_typical_pod_was_assumed() {
    let out = run(&["plan", &example("vmi-masquerade.yaml")]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("VirtualMachineInstance/default/vmi-masquerade"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("typical pod"), "{}", stderr(&out));
}

#[test]
fn json_is_always_a_list_with_the_pod_view_source() {
    let out = run(&["plan", "--output", "json", &example("vmi-masquerade.yaml")]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plans: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0]["podView"], "default");
    let out = run_with_stdin(&["plan", "--output", "json", "-"], TWO_VMIS.as_bytes());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plans: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let objects: Vec<&str> = plans
        .iter()
        .map(|p| p["object"].as_str().unwrap())
        .collect();
    assert_eq!(
        objects,
        [
            "VirtualMachineInstance/default/one",
            "VirtualMachineInstance/default/two"
        ]
    );
}

#[test]
fn yaml_is_a_list_too() {
    let out = run_with_stdin(&["plan", "--output", "yaml", "-"], TWO_VMIS.as_bytes());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("- "), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("- ")).count(),
        2,
        "{text}"
    );
}

#[test]
fn a_pod_view_file_is_used_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let view = write(
        dir.path(),
        "pod.yaml",
        "links:\n- name: eth0\n  mac: 0a:58:0a:f4:00:07\n  mtu: 1410\n  addresses: [10.244.3.7/24, fd00:10:244:3::7/64]\nroutes:\n- {destination: 0.0.0.0/0, gateway: 10.244.3.1, dev: eth0}\n",
    );
    let out = run(&[
        "plan",
        "--output",
        "json",
        "--pod-view",
        &view,
        &example("vmi-masquerade.yaml"),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plans: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plans[0]["podView"], format!("file:{view}"));
    let link = &plans[0]["interfaces"][0]["podLink"];
    assert_eq!(link["name"], "eth0");
    assert_eq!(link["mac"], "0a:58:0a:f4:00:07");
    assert_eq!(link["mtu"], 1410);
}

#[test]
fn a_malformed_pod_view_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let view = write(dir.path(), "pod.yaml", "links:\n- name: eth0\n  mtu: big\n");
    let out = run(&["plan", "--pod-view", &view, &example("vmi-masquerade.yaml")]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("links[0].mtu"), "{}", stderr(&out));
}

#[test]
fn pod_view_and_netns_exclude_each_other() {
    let out = run(&[
        "plan",
        "--pod-view",
        "a.yaml",
        "--netns",
        "x",
        &example("vmi-masquerade.yaml"),
    ]);
    assert_eq!(code(&out), 2);
}

#[test]
fn a_missing_namespace_exits_2() {
    let out = run(&[
        "plan",
        "--netns",
        "netbind-no-such-namespace-4711",
        &example("vmi-masquerade.yaml"),
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("netbind-no-such-namespace-4711"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_invalid_manifest_is_not_planned() {
    let text = TWO_VMIS.replace(
        "networks: [{name: default, pod: {}}]\n---",
        "networks: [{name: other, pod: {}}]\n---",
    );
    let out = run_with_stdin(&["plan", "--output", "json", "-"], text.as_bytes());
    assert_eq!(code(&out), 1);
    assert!(out.stdout.is_empty(), "no plan printed: {}", stdout(&out));
    assert!(
        stderr(&out).contains("<stdin>: VirtualMachineInstance/default/one"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_same_input_gives_byte_identical_output() {
    let files: Vec<_> = yaml_files(&testdata().join("kubevirt-examples"))
        .into_iter()
        .filter(|p| has_vm(p))
        .collect();
    for file in files {
        let file = file.to_str().unwrap();
        for output in ["table", "json", "yaml"] {
            let a = run(&["plan", "--output", output, file]);
            let b = run(&["plan", "--output", output, file]);
            assert_eq!(code(&a), code(&b), "{file}");
            assert!(
                a.stdout == b.stdout,
                "{file} --output {output} differs between runs"
            );
            assert!(
                a.stderr == b.stderr,
                "{file} --output {output} stderr differs between runs"
            );
        }
    }
}

#[test]
fn every_kubevirt_example_plans_against_the_typical_pod() {
    let dir = tempfile::tempdir().unwrap();
    // SR-IOV needs the VF's PCI address from Multus network-status.
    let status = write(
        dir.path(),
        "status.json",
        r#"[{"name":"sriov/sriov-network","interface":"net1","mac":"02:00:00:00:00:01","dns":{},"device-info":{"type":"pci","version":"1.0.0","pci":{"pci-address":"0000:65:00.2"}}}]"#,
    );
    for file in yaml_files(&testdata().join("kubevirt-examples"))
        .into_iter()
        .filter(|p| has_vm(p))
    {
        let file = file.to_str().unwrap();
        let out = run(&[
            "plan",
            "--network-status",
            &status,
            "--output",
            "json",
            file,
        ]);
        assert_eq!(code(&out), 0, "{file}: {}", stderr(&out));
    }
}

#[test]
fn annotations_are_a_list_per_object() {
    let out = run(&["annotations", &example("vmi-multus-multiple-net.yaml")]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0]["object"],
        "VirtualMachineInstance/default/vmi-multus-multiple-net"
    );
    let networks = list[0]["annotations"]["k8s.v1.cni.cncf.io/networks"]
        .as_str()
        .expect("networks annotation");
    let networks: Vec<serde_json::Value> = serde_json::from_str(networks).unwrap();
    assert!(!networks.is_empty());
    for n in &networks {
        let iface = n["interface"].as_str().unwrap();
        assert!(
            iface.starts_with("pod") && iface.len() == 14,
            "hashed interface name: {iface}"
        );
    }
}

#[test]
fn annotations_refuse_invalid_manifests() {
    let text = TWO_VMIS.replace(
        "networks: [{name: default, pod: {}}]\n---",
        "networks: [{name: other, pod: {}}]\n---",
    );
    let out = run_with_stdin(&["annotations", "--output", "yaml", "-"], text.as_bytes());
    assert_eq!(code(&out), 1);
    assert!(out.stdout.is_empty());
}
