//! Helpers shared by the plan tests: read a manifest, default it, plan it.
#![allow(dead_code)]

use netbind_plan::{NetworkPlan, PlanError, PodView};
use netbind_spec::{ClusterConfig, Document, VmObject, defaults, parse_documents};

/// The cluster configuration the tests use: binding plugins slirp and passt (sidecar
/// plugins → usernet), macvtap (tap) and mtap (managedTap).
pub fn cluster() -> ClusterConfig {
    ClusterConfig::parse(
        b"network:\n  binding:\n    slirp: {sidecarImage: quay.io/kubevirt/network-slirp-binding}\n    passt: {sidecarImage: quay.io/kubevirt/network-passt-binding}\n    macvtap: {domainAttachmentType: tap}\n    mtap: {domainAttachmentType: managedTap}\n",
    )
    .expect("test cluster config parses")
}

pub fn object(yaml: &str) -> VmObject {
    match parse_documents(yaml.as_bytes())
        .expect("manifest parses")
        .remove(0)
    {
        Document::Vm(v) => defaults::apply(&v, &cluster()),
        _ => panic!("not a VM"),
    }
}

pub fn plan_with(
    yaml: &str,
    pod: impl FnOnce(&VmObject) -> PodView,
) -> Result<NetworkPlan, PlanError> {
    let obj = object(yaml);
    let view = pod(&obj);
    netbind_plan::plan(&obj, &cluster(), &view)
}

pub fn plan(yaml: &str) -> NetworkPlan {
    plan_with(yaml, PodView::typical).expect("plans")
}

/// A VMI with the given interfaces and networks (YAML flow lists).
pub fn vmi(interfaces: &str, networks: &str) -> String {
    format!(
        "kind: VirtualMachineInstance\nmetadata: {{name: vm1, namespace: ns1}}\nspec:\n  domain: {{devices: {{interfaces: {interfaces}}}}}\n  networks: {networks}\n"
    )
}
