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

/// The repository's own example (three networks: masquerade, bridge, SR-IOV).
fn three_networks() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/vm-three-networks.yaml"
    )
    .to_string()
}

#[test]
fn a_table_is_the_default() {
    let out = run(&["plan", &example("vmi-masquerade.yaml")]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out)
            .starts_with("VirtualMachineInstance/default/vmi-masquerade  (pod view: default)\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_typical_pod_assumption_is_said_exactly_once() {
    let out = run(&["plan", &example("vmi-masquerade.yaml")]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = stdout(&out).matches("typical").count() + stderr(&out).matches("typical").count();
    assert_eq!(
        said,
        1,
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("note: pod view: typical CNI pod assumed"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn show_device_adds_qemu_arguments_and_libvirt_xml_to_the_table() {
    let out = run(&["plan", "--show-device", &three_networks()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("qemu        -netdev tap,id=hostua-default,ifname=tap0")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "libvirt     <hostdev mode='subsystem' type='pci' managed='no'>"),
        "{text}"
    );
    let plain = stdout(&run(&["plan", &three_networks()]));
    assert!(!plain.contains("-netdev"), "{plain}");
}

#[test]
fn show_device_is_for_the_table_only() {
    let out = run(&[
        "plan",
        "--show-device",
        "--output",
        "json",
        &three_networks(),
    ]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--show-device"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

#[test]
fn svg_output_is_well_formed_xml_with_a_lane_per_interface() {
    let out = run(&["plan", "--output", "svg", &three_networks()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let lanes = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("row"))
        .count();
    assert_eq!(lanes, 3);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

#[test]
fn svg_of_several_vms_is_one_image() {
    let out = run_with_stdin(&["plan", "--output", "svg", "-"], TWO_VMIS.as_bytes());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let captions: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("caption"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(
        captions,
        [
            "VirtualMachineInstance/default/one: default: masquerade (binding masquerade)",
            "VirtualMachineInstance/default/two: default: bridge (binding bridge)"
        ]
    );
}

#[test]
fn dot_output_is_laid_out_by_graphviz() {
    let out = run(&["plan", "--output", "dot", &three_networks()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let graph = write(dir.path(), "plan.dot", &out.stdout);
    let drawn = std::process::Command::new("dot")
        .args(["-Tsvg", &graph])
        .output()
        .expect("graphviz's `dot` must be installed (scripts/install-deps.sh installs graphviz)");
    assert!(
        drawn.status.success() && drawn.stderr.is_empty(),
        "dot refused it: {}",
        String::from_utf8_lossy(&drawn.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&drawn.stdout)
            .matches("class=\"node\"")
            .count(),
        15,
        "every piece of the three rows is a node"
    );
}

/// docs/vm-three-networks.svg is what `netbind plan examples/vm-three-networks.yaml
/// --output svg` prints today. `NETBIND_UPDATE_DOCS=1` rewrites it.
#[test]
fn the_example_svg_in_docs_is_up_to_date() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/vm-three-networks.svg"
    );
    let out = run(&["plan", "--output", "svg", &three_networks()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    if std::env::var_os("NETBIND_UPDATE_DOCS").is_some() {
        std::fs::write(path, &out.stdout).expect("write docs/vm-three-networks.svg");
    }
    let committed = std::fs::read(path).unwrap_or_default();
    assert!(
        committed == out.stdout,
        "docs/vm-three-networks.svg is stale: rerun with NETBIND_UPDATE_DOCS=1"
    );
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
        for output in ["table", "json", "yaml", "dot", "svg"] {
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
