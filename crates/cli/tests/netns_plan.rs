//! Privileged end to end: `netbind plan --netns` on a namespace wired by the real CNI
//! bridge plugin plans from the live pod view. Needs root and containernetworking-plugins;
//! fails (never skips) without them.

mod common;
#[path = "../../netns/tests/support/mod.rs"]
mod support;

use common::*;
use support::{CniPod, MTU};

const VMI: &str = "\
kind: VirtualMachineInstance
metadata: {name: live, namespace: ns}
spec:
  domain: {devices: {interfaces: [{name: default, BINDING: {}}]}}
  networks: [{name: default, pod: {}}]
";

fn plan_live(pod: &CniPod, binding: &str) -> serde_json::Value {
    let out = run_with_stdin(
        &["plan", "--netns", &pod.netns, "--output", "json", "-"],
        VMI.replace("BINDING", binding).as_bytes(),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plans: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0]["podView"], format!("netns:{}", pod.netns));
    plans[0]["interfaces"][0].clone()
}

fn assert_pod_link_is_live(iface: &serde_json::Value, pod: &CniPod) {
    let link = &iface["podLink"];
    assert_eq!(link["name"], "eth0", "{iface}");
    assert_eq!(link["present"], true);
    assert_eq!(link["mac"], pod.eth0_mac().as_str());
    assert_eq!(link["mtu"], MTU);
    let mut got: Vec<String> = link["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = pod.eth0_ips().into_iter().map(|(a, _)| a).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn masquerade_plans_from_the_live_pod_link() {
    let pod = CniPod::create(Some("nameserver 10.96.0.10\nsearch ns.svc.cluster.local\n"));
    let iface = plan_live(&pod, "masquerade");
    assert_eq!(iface["method"], "masquerade");
    assert_pod_link_is_live(&iface, &pod);
    assert_eq!(
        iface["dhcp4"]["mtu"], MTU,
        "the guest gets the pod link's MTU"
    );
    assert_eq!(
        iface["dhcp4"]["dns"],
        serde_json::json!(["10.96.0.10"]),
        "DNS from /etc/netns/<name>/resolv.conf"
    );
}

#[test]
fn bridge_hands_the_live_pod_address_to_the_guest() {
    let pod = CniPod::create(Some("nameserver 10.96.0.10\n"));
    let iface = plan_live(&pod, "bridge");
    assert_eq!(iface["method"], "bridge");
    assert_pod_link_is_live(&iface, &pod);
    let (v4, gateway) = pod
        .eth0_ips()
        .into_iter()
        .find(|(a, _)| !a.contains(':'))
        .expect("an IPv4 address");
    assert_eq!(iface["dhcp4"]["address"], v4.as_str(), "{iface}");
    assert_eq!(
        iface["dhcp4"]["router"],
        gateway.as_str(),
        "the default route's gateway"
    );
    assert_eq!(iface["dhcp4"]["mtu"], MTU);
}
