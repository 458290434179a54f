//! Any bytes as a manifest: read, default, validate, plan and render (table, DOT, SVG)
//! must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netbind_plan::PodView;
use netbind_spec::{ClusterConfig, Document, defaults, parse_documents, validate};

fuzz_target!(|data: &[u8]| {
    let cluster = ClusterConfig::default();
    let Ok(docs) = parse_documents(data) else { return };
    for doc in docs {
        if let Document::Vm(obj) = doc {
            let obj = defaults::apply(&obj, &cluster);
            let pod = PodView::typical(&obj);
            let _ = validate(&obj, &cluster, Some(&pod.addresses()));
            if let Ok(plan) = netbind_plan::plan(&obj, &cluster, &pod) {
                let _ = (plan.to_table_with_devices(), plan.to_dot(), plan.to_svg());
            }
        }
    }
});
