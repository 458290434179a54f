//! Every VirtualMachine and VirtualMachineInstance of the shared test data plans against
//! the typical pod, with a cluster configuration registering slirp, passt and macvtap.

mod support;

use std::path::PathBuf;

use netbind_plan::PodView;
use netbind_spec::{Document, defaults, parse_documents};

fn testdata() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata"
    ))
}

#[test]
fn every_vm_in_the_shared_testdata_plans() {
    let cluster = support::cluster();
    let mut planned = 0;
    let mut failures = Vec::new();
    for dir in ["kubevirt-examples", "kubevirt-user-guide"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(testdata().join(dir))
            .unwrap_or_else(|e| {
                panic!(
                    "{} must exist (the shared/ folder beside the repository): {e}",
                    testdata().join(dir).display()
                )
            })
            .map(|e| e.expect("directory entry").path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            })
            .collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).expect("readable");
            let Ok(docs) = parse_documents(&bytes) else {
                continue;
            };
            for doc in docs {
                let Document::Vm(obj) = doc else { continue };
                let obj = defaults::apply(&obj, &cluster);
                match netbind_plan::plan(&obj, &cluster, &PodView::typical(&obj)) {
                    Ok(plan) => {
                        assert_eq!(
                            plan.interfaces.len(),
                            obj.interfaces()
                                .iter()
                                .filter(|i| i.state() != "absent")
                                .count()
                        );
                        planned += 1;
                    }
                    Err(e) => failures.push(format!("{}: {e}", file.display())),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(planned >= 40, "only {planned} objects planned");
}

#[test]
fn istio_example_excludes_the_envoy_ports() {
    let bytes =
        std::fs::read(testdata().join("kubevirt-user-guide/istio_service_mesh-01.yaml")).unwrap();
    let docs = parse_documents(&bytes).unwrap();
    let obj = docs
        .into_iter()
        .find_map(|d| match d {
            Document::Vm(v) => Some(v),
            _ => None,
        })
        .unwrap();
    let cluster = support::cluster();
    let obj = defaults::apply(&obj, &cluster);
    let plan = netbind_plan::plan(&obj, &cluster, &PodView::typical(&obj)).unwrap();
    let text = plan.nft_text();
    assert!(text.contains("tcp dport { 15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090 } ip saddr { 127.0.0.1, 127.0.0.6 } counter return"), "{text}");
    assert!(!text.contains("KUBEVIRT_PREINBOUND counter dnat"), "{text}");
}
