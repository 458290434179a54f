//! Privileged end to end: `netbind plan --netns` on a namespace wired by the real CNI
//! bridge plugin plans from the live pod view. Needs root and containernetworking-plugins;
//! fails (never skips) without them.

mod common;

use common::*;
use netbind_testbed::PodFixture;

/// Not the usual 1500, so that a test sees where an MTU comes from.
const MTU: u32 = 1400;

const VMI: &str = "\
kind: VirtualMachineInstance
metadata: {name: live, namespace: ns}
spec:
  domain: {devices: {interfaces: [{name: default, BINDING: {}}]}}
  networks: [{name: default, pod: {}}]
";

/// A pod wired by the CNI `bridge` plugin, with `resolv_conf` as its resolv.conf.
fn pod(resolv_conf: &str) -> PodFixture {
    PodFixture::builder()
        .mtu(MTU)
        .resolv_conf(resolv_conf)
        .build()
        .expect("CNI pod")
}

fn plan_live(pod: &PodFixture, binding: &str) -> serde_json::Value {
    let out = run_with_stdin(
        &["plan", "--netns", pod.pod.name(), "--output", "json", "-"],
        VMI.replace("BINDING", binding).as_bytes(),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plans: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0]["podView"], format!("netns:{}", pod.pod.name()));
    plans[0]["interfaces"][0].clone()
}

fn assert_pod_link_is_live(iface: &serde_json::Value, pod: &PodFixture) {
    let link = &iface["podLink"];
    assert_eq!(link["name"], "eth0", "{iface}");
    assert_eq!(link["present"], true);
    assert_eq!(link["mac"], pod.pod_mac().expect("eth0 mac").as_str());
    assert_eq!(link["mtu"], MTU);
    let mut got: Vec<String> = link["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = pod.pod_addresses().iter().map(|a| a.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn masquerade_plans_from_the_live_pod_link() {
    let pod = pod("nameserver 10.96.0.10\nsearch ns.svc.cluster.local\n");
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
    let pod = pod("nameserver 10.96.0.10\n");
    let iface = plan_live(&pod, "bridge");
    assert_eq!(iface["method"], "bridge");
    assert_pod_link_is_live(&iface, &pod);
    let v4 = pod
        .result()
        .sandbox_ips()
        .into_iter()
        .find(|ip| ip.address.addr().is_ipv4())
        .expect("an IPv4 address");
    let gateway = v4.gateway.expect("gateway");
    assert_eq!(iface["dhcp4"]["address"], v4.address.to_string(), "{iface}");
    assert_eq!(
        iface["dhcp4"]["router"],
        gateway.to_string(),
        "the default route's gateway"
    );
    assert_eq!(iface["dhcp4"]["mtu"], MTU);
}
