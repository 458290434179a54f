//! Any bytes as a state dir's journal (damaged, edited by hand, from another version):
//! read, then carried over to a plan as a hot-plug would (`replan`) and used to extend a pod
//! view — an error or a result, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use netbind_netns::apply::{layout, replan, steps};
use netbind_netns::journal::Journal;
use netbind_plan::{NetworkPlan, PodView};
use netbind_spec::{ClusterConfig, Document, defaults, parse_documents};

const VM: &str = "kind: VirtualMachineInstance
metadata: {name: vm, namespace: ns}
spec:
  domain: {devices: {interfaces: [{name: default, masquerade: {}}, {name: blue, bridge: {}}]}}
  networks: [{name: default, pod: {}}, {name: blue, multus: {networkName: blue}}]
";

fn the_plan() -> &'static (NetworkPlan, PodView) {
    static PLAN: OnceLock<(NetworkPlan, PodView)> = OnceLock::new();
    PLAN.get_or_init(|| {
        let cluster = ClusterConfig::default();
        let Some(Document::Vm(obj)) = parse_documents(VM.as_bytes()).unwrap().pop() else {
            unreachable!("the manifest holds one VM")
        };
        let obj = defaults::apply(&obj, &cluster);
        let pod = PodView::typical(&obj);
        (netbind_plan::plan(&obj, &cluster, &pod).unwrap(), pod)
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(journal) = Journal::from_lines(std::path::Path::new("journal.json"), &text) else {
        return;
    };
    let (plan, pod) = the_plan();
    let _ = replan(&journal, &layout(plan), &steps(plan));
    let _ = journal.with_hotplugged_links(pod, pod);
});
