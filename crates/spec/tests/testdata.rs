//! Compatibility with real manifests: everything under `shared/testdata/` (see its
//! SOURCES.md) parses; KubeVirt's own examples validate with no violation under the
//! default cluster configuration; the user guide's network pages validate under a
//! configuration that registers the binding plugins they name (slirp, passt, macvtap).
//! Kinds other than VirtualMachine/VirtualMachineInstance come back as unsupported.

use std::path::{Path, PathBuf};

use netbind_spec::{ClusterConfig, Document, defaults, parse_documents, validate};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata");

/// The cluster configuration the user guide's binding-plugin pages assume.
const USER_GUIDE_CLUSTER: &str = r#"{"network": {"binding": {
    "slirp": {"sidecarImage": "quay.io/kubevirt/network-slirp-binding:v1.1.0"},
    "passt": {"sidecarImage": "quay.io/kubevirt/network-passt-binding:v1.1.0", "networkAttachmentDefinition": "default/netbindingpasst"},
    "macvtap": {"domainAttachmentType": "tap"}
}}}"#;

fn yaml_files(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(TESTDATA).join(folder);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "{} must exist (shared/ beside the repository): {e}",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

/// Validates every VM/VMI of `folder` under `cluster`; returns how many there were.
fn validate_folder(folder: &str, cluster: &ClusterConfig) -> usize {
    let mut vms = 0;
    let mut failures = Vec::new();
    for file in yaml_files(folder) {
        let bytes = std::fs::read(&file).expect("readable file");
        let docs = parse_documents(&bytes)
            .unwrap_or_else(|e| panic!("{}: does not parse: {e}", file.display()));
        for doc in docs {
            match doc {
                Document::Vm(obj) => {
                    vms += 1;
                    let report = validate(&defaults::apply(&obj, cluster), cluster, None);
                    if !report.is_valid() {
                        failures.push(format!("{}: {:?}", file.display(), report.violations));
                    }
                }
                Document::Unsupported { kind, .. } => {
                    assert!(
                        kind != "VirtualMachine" && kind != "VirtualMachineInstance",
                        "{}: {kind} came back unsupported",
                        file.display()
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    vms
}

#[test]
fn kubevirt_examples_are_valid_under_the_default_cluster() {
    let vms = validate_folder("kubevirt-examples", &ClusterConfig::default());
    assert!(vms >= 30, "only {vms} VMs/VMIs found");
}

#[test]
fn user_guide_manifests_are_valid_with_their_binding_plugins() {
    let cluster =
        ClusterConfig::parse(USER_GUIDE_CLUSTER.as_bytes()).expect("cluster configuration parses");
    let vms = validate_folder("kubevirt-user-guide", &cluster);
    assert!(vms >= 15, "only {vms} VMs/VMIs found");
}

#[test]
fn user_guide_binding_plugins_need_registration() {
    let file = Path::new(TESTDATA).join("kubevirt-user-guide/net_binding_plugins_slirp-01.yaml");
    let docs = parse_documents(&std::fs::read(file).expect("readable file")).expect("parses");
    let Some(Document::Vm(obj)) = docs.into_iter().next() else {
        panic!("no VM")
    };
    let cluster = ClusterConfig::default();
    let report = validate(&defaults::apply(&obj, &cluster), &cluster, None);
    let rules: Vec<_> = report.violations.iter().map(|v| v.rule).collect();
    assert_eq!(rules, vec!["binding-plugin-unknown"]);
}

#[test]
fn other_kinds_are_unsupported_not_errors() {
    let mut unsupported = Vec::new();
    for file in yaml_files("kubevirt-examples") {
        let docs = parse_documents(&std::fs::read(&file).expect("readable file")).expect("parses");
        for doc in docs {
            if let Document::Unsupported { kind, .. } = doc {
                unsupported.push(kind);
            }
        }
    }
    for kind in [
        "VirtualMachinePool",
        "VirtualMachineInstanceReplicaSet",
        "VirtualMachineInstancePreset",
    ] {
        assert!(
            unsupported.iter().any(|k| k == kind),
            "{kind} not seen as unsupported: {unsupported:?}"
        );
    }
}

/// KubeVirt's examples and the user guide use only fields KubeVirt knows, so the field
/// list netbind warns with (`schema.rs`) must know all of them too — with one exception:
/// a user-guide page really has a misplaced `volumes` (under `template`, not
/// `template.spec`), which KubeVirt ignores silently and netbind must find.
#[test]
fn real_manifests_have_no_unknown_fields() {
    let mut found = Vec::new();
    for folder in ["kubevirt-examples", "kubevirt-user-guide"] {
        for file in yaml_files(folder) {
            let bytes = std::fs::read(&file).expect("readable manifest");
            for parsed in netbind_spec::read::read_manifest(&bytes).expect("parses") {
                for u in parsed.unknown {
                    let name = file.file_name().unwrap_or_default().to_string_lossy();
                    found.push(format!("{name}: {}", u.path));
                }
            }
        }
    }
    assert_eq!(
        found,
        ["interfaces_and_networks-11.yaml: spec.template.volumes"],
        "unknown fields"
    );
}
