//! Privileged: `apply` and `teardown` against pods wired by the real CNI `bridge` plugin.
//! Each test plans from the live pod view, applies, looks at the namespace with `ip` and
//! `nft`, and checks that `teardown` gives back exactly the namespace CNI made. Needs root
//! and containernetworking-plugins; fails (never skips) without them.

use std::process::Command;

use netbind_netns::apply::{ApplyError, ApplyOptions, StepError, steps};
use netbind_netns::{apply, apply_with, read_pod_view, teardown};
use netbind_plan::NetworkPlan;
use netbind_plan::model::LinkStep;
use netbind_spec::{ClusterConfig, Document, defaults, naming};
use netbind_testbed::{PodFixture, Secondary, Snapshot};

/// Not the usual 1500, so that a test sees where an MTU comes from.
const MTU: u32 = 1400;

const MASQUERADE: &str = "\
kind: VirtualMachineInstance
metadata: {name: vm, namespace: ns}
spec:
  domain: {devices: {interfaces: [{name: default, masquerade: {}}]}}
  networks: [{name: default, pod: {}}]
";

const BRIDGE: &str = "\
kind: VirtualMachineInstance
metadata: {name: vm, namespace: ns}
spec:
  domain: {devices: {interfaces: [{name: default, bridge: {}}]}}
  networks: [{name: default, pod: {}}]
";

const MASQUERADE_AND_MULTUS_BRIDGE: &str = "\
kind: VirtualMachineInstance
metadata: {name: vm, namespace: ns}
spec:
  domain: {devices: {interfaces: [{name: default, masquerade: {}}, {name: blue, bridge: {}}]}}
  networks: [{name: default, pod: {}}, {name: blue, multus: {networkName: blue}}]
";

/// A pod wired by the CNI `bridge` plugin, plus a plain-L2 Multus network (the `bridge`
/// plugin without IPAM) for every name in `multus`.
fn pod(multus: &[&str]) -> PodFixture {
    let mut builder = PodFixture::builder().mtu(MTU);
    for network in multus {
        builder = builder.secondary(
            Secondary::bridge(network)
                .without_ipam()
                .without_peer()
                .mtu(MTU),
        );
    }
    builder.build().expect("CNI pod")
}

fn snapshot(pod: &PodFixture) -> Snapshot {
    pod.pod.snapshot().expect("snapshot the pod namespace")
}

fn plan_for(pod: &PodFixture, manifest: &str) -> NetworkPlan {
    let view = read_pod_view(pod.pod.name()).expect("read the pod view");
    let cluster = ClusterConfig::default();
    let docs = netbind_spec::parse_documents(manifest.as_bytes()).expect("manifest parses");
    let Some(Document::Vm(obj)) = docs.into_iter().next() else {
        panic!("no VM in the manifest")
    };
    let obj = defaults::apply(&obj, &cluster);
    netbind_plan::plan(&obj, &cluster, &view).expect("plan")
}

fn ip(netns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", netns])
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn link_json(netns: &str, link: &str) -> serde_json::Value {
    let text = ip(netns, &["-d", "-j", "link", "show", "dev", link]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).expect("ip -j");
    list.into_iter().next().expect("one link")
}

fn addrs(netns: &str, link: &str) -> Vec<String> {
    let text = ip(netns, &["-j", "addr", "show", "dev", link]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).expect("ip -j");
    let mut out: Vec<String> = list[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .filter(|a| !a.starts_with("fe80:"))
        .collect();
    out.sort();
    out
}

fn sysctl(netns: &str, path: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "cat", path])
        .output()
        .expect("cat");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn nft_json(netns: &str) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-j", "list", "ruleset"])
        .output()
        .expect("nft");
    serde_json::from_slice(&out.stdout).expect("nft -j")
}

/// (family, table, chain) of every rule in a libnftables JSON document, sorted.
fn rule_places(doc: &serde_json::Value, key: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = doc["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| {
            i.get(key)
                .and_then(|x| x.get("rule"))
                .or_else(|| (key.is_empty()).then(|| i.get("rule")).flatten())
        })
        .map(|r| {
            (
                r["family"].as_str().unwrap().to_string(),
                r["table"].as_str().unwrap().to_string(),
                r["chain"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn masquerade_builds_bridge_tap_sysctls_and_the_nat_ruleset_then_down_restores_cni() {
    let pod = pod(&[]);
    let before = snapshot(&pod);
    let plan = plan_for(&pod, MASQUERADE);
    let state = tempfile::tempdir().unwrap();

    let report = apply(&plan, pod.pod.name(), state.path()).expect("apply");
    assert!(report.changed >= report.steps - 2, "{report:?}");

    let bridge = link_json(pod.pod.name(), "k6t-eth0");
    assert_eq!(bridge["address"], "02:00:00:00:00:00");
    assert_eq!(bridge["mtu"], MTU);
    assert_eq!(bridge["linkinfo"]["info_kind"], "bridge");
    assert_eq!(
        addrs(pod.pod.name(), "k6t-eth0"),
        ["10.0.2.1/24", "fd10:0:2::1/120"]
    );
    let tap = link_json(pod.pod.name(), "tap0");
    assert_eq!(tap["master"], "k6t-eth0");
    assert_eq!(tap["mtu"], MTU);
    assert_eq!(tap["linkinfo"]["info_kind"], "tun");
    assert_eq!(tap["linkinfo"]["info_data"]["type"], "tap");
    assert_eq!(tap["linkinfo"]["info_data"]["user"], 107, "{tap}");
    assert_eq!(tap["linkinfo"]["info_data"]["persist"], true);
    assert_eq!(sysctl(pod.pod.name(), "/proc/sys/net/ipv4/ip_forward"), "1");
    assert_eq!(
        sysctl(
            pod.pod.name(),
            "/proc/sys/net/ipv4/conf/k6t-eth0/route_localnet"
        ),
        "1"
    );
    assert_eq!(
        sysctl(pod.pod.name(), "/proc/sys/net/ipv6/conf/all/forwarding"),
        "1"
    );

    let planned = plan.interfaces[0]
        .nftables
        .as_ref()
        .expect("a NAT ruleset")
        .to_json();
    let loaded = nft_json(pod.pod.name());
    assert_eq!(
        rule_places(&loaded, ""),
        rule_places(&planned, "add"),
        "every planned rule is loaded, in its chain"
    );
    let text = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "exec", pod.pod.name(), "nft", "list", "ruleset"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        text.contains("ip saddr 10.0.2.2 counter packets 0 bytes 0 masquerade"),
        "{text}"
    );

    let down = teardown(pod.pod.name(), state.path()).expect("teardown");
    assert_eq!(down.undone, report.changed);
    assert_eq!(
        snapshot(&pod),
        before,
        "down gives back the namespace CNI made"
    );
    assert!(!state.path().join("journal.json").exists());
}

#[test]
fn multiqueue_makes_a_multi_queue_tap_for_qemu_to_open_once_per_queue() {
    let pod = pod(&[]);
    let manifest = MASQUERADE.replace(
        "domain: {devices: {",
        "domain: {cpu: {cores: 2}, devices: {networkInterfaceMultiqueue: true, ",
    );
    let plan = plan_for(&pod, &manifest);
    let state = tempfile::tempdir().unwrap();
    apply(&plan, pod.pod.name(), state.path()).expect("apply");
    let tap = link_json(pod.pod.name(), "tap0");
    assert_eq!(tap["linkinfo"]["info_data"]["multi_queue"], true, "{tap}");
    assert!(plan.interfaces[0].guest.qemu_args[1].ends_with(",queues=2"));
    teardown(pod.pod.name(), state.path()).expect("teardown");
}

#[test]
fn bridge_on_the_pod_network_moves_the_pod_link_onto_the_bridge() {
    let pod = pod(&[]);
    let before = snapshot(&pod);
    let mut cni_addrs: Vec<String> = pod.pod_addresses().iter().map(|a| a.to_string()).collect();
    cni_addrs.sort();
    let plan = plan_for(&pod, BRIDGE);
    let state = tempfile::tempdir().unwrap();
    apply(&plan, pod.pod.name(), state.path()).expect("apply");

    let nic = link_json(pod.pod.name(), "eth0-nic");
    let bridge = link_json(pod.pod.name(), "k6t-eth0");
    assert_eq!(nic["master"], "k6t-eth0");
    assert_eq!(
        nic["address"], bridge["address"],
        "the pod link takes the bridge's MAC"
    );
    assert_eq!(
        nic["linkinfo"]["info_slave_data"]["learning"], false,
        "{nic}"
    );
    assert!(
        addrs(pod.pod.name(), "eth0-nic").is_empty(),
        "addresses flushed"
    );
    assert_eq!(addrs(pod.pod.name(), "k6t-eth0"), ["169.254.75.10/32"]);
    assert_eq!(link_json(pod.pod.name(), "tap0")["master"], "k6t-eth0");
    let placeholder = link_json(pod.pod.name(), "eth0");
    assert_eq!(
        placeholder["address"],
        pod.pod_mac().expect("eth0 mac").as_str(),
        "the dummy keeps the pod MAC"
    );
    assert!(
        ["dummy", "ifb"].contains(&placeholder["linkinfo"]["info_kind"].as_str().unwrap()),
        "{placeholder}"
    );
    assert_eq!(
        addrs(pod.pod.name(), "eth0"),
        cni_addrs,
        "the dummy keeps the pod addresses"
    );
    assert_eq!(
        sysctl(pod.pod.name(), "/proc/sys/net/ipv4/conf/all/arp_ignore"),
        "1"
    );
    let during = snapshot(&pod);
    assert_ne!(during, before, "the snapshot sees the change");
    if std::env::var_os("NETBIND_SHOW_SNAPSHOTS").is_some() {
        eprintln!("--- CNI ---\n{before}--- up ---\n{during}");
    }

    teardown(pod.pod.name(), state.path()).expect("teardown");
    assert_eq!(netbind_testbed::settles(&before, || snapshot(&pod)), before);
}

#[test]
fn bridge_on_a_multus_network_next_to_masquerade() {
    let pod = pod(&["blue"]);
    let blue = naming::secondary_pod_link("blue");
    let before = snapshot(&pod);
    let plan = plan_for(&pod, MASQUERADE_AND_MULTUS_BRIDGE);
    let state = tempfile::tempdir().unwrap();
    apply(&plan, pod.pod.name(), state.path()).expect("apply");

    let stem = blue.strip_prefix("pod").unwrap();
    let nic = link_json(pod.pod.name(), &format!("{stem}-nic"));
    assert_eq!(nic["master"], format!("k6t-{stem}"));
    assert_eq!(nic["linkinfo"]["info_slave_data"]["learning"], false);
    assert_eq!(
        link_json(pod.pod.name(), &format!("tap{stem}"))["master"],
        format!("k6t-{stem}")
    );
    assert!(
        addrs(pod.pod.name(), &format!("k6t-{stem}")).is_empty(),
        "no IP on the network: plain L2"
    );
    assert_eq!(
        link_json(pod.pod.name(), "tap0")["master"],
        "k6t-eth0",
        "masquerade next to it"
    );

    teardown(pod.pod.name(), state.path()).expect("teardown");
    assert_eq!(netbind_testbed::settles(&before, || snapshot(&pod)), before);
}

#[test]
fn applying_twice_changes_nothing_the_second_time() {
    let pod = pod(&["blue"]);
    let plan = plan_for(&pod, MASQUERADE_AND_MULTUS_BRIDGE);
    let state = tempfile::tempdir().unwrap();
    apply(&plan, pod.pod.name(), state.path()).expect("first apply");
    let after_first = snapshot(&pod);
    let journal = std::fs::read(state.path().join("journal.json")).unwrap();

    let second = apply(&plan, pod.pod.name(), state.path()).expect("second apply");
    assert_eq!(second.changed, 0, "{second:?}");
    assert_eq!(snapshot(&pod), after_first);
    assert_eq!(
        std::fs::read(state.path().join("journal.json")).unwrap(),
        journal
    );
    teardown(pod.pod.name(), state.path()).expect("teardown");
}

#[test]
fn a_step_that_cannot_succeed_is_named_and_rolled_back() {
    let pod = pod(&[]);
    let before = snapshot(&pod);
    let mut plan = plan_for(&pod, BRIDGE);
    for step in &mut plan.interfaces[0].links {
        if let LinkStep::CreateTap { name, .. }
        | LinkStep::SetMaster { link: name, .. }
        | LinkStep::SetUp { link: name } = step
            && name == "tap0"
        {
            *name = "tap-name-too-long".into();
        }
    }
    let state = tempfile::tempdir().unwrap();
    let err = apply(&plan, pod.pod.name(), state.path()).unwrap_err();
    let ApplyError::Step {
        what,
        link,
        rolled_back,
        source,
        ..
    } = &err
    else {
        panic!("not a step error: {err}")
    };
    assert!(what.starts_with("create tap tap-name-too-long "), "{what}");
    assert_eq!(link.as_deref(), Some("tap-name-too-long"));
    assert!(*rolled_back >= 5, "{err}");
    assert!(matches!(**source, StepError::Link(_)), "{source:?}");
    let message = format!("{err}");
    assert!(
        message.contains("create tap tap-name-too-long") && message.contains("rolled back"),
        "{message}"
    );
    assert_eq!(
        netbind_testbed::settles(&before, || snapshot(&pod)),
        before,
        "the namespace is as CNI left it"
    );
    assert!(
        !state.path().join("journal.json").exists(),
        "nothing left to undo"
    );
}

#[test]
fn a_failure_after_any_step_rolls_back_to_the_cni_namespace() {
    let pod = pod(&["blue"]);
    let before = snapshot(&pod);
    let plan = plan_for(&pod, MASQUERADE_AND_MULTUS_BRIDGE);
    let total = steps(&plan).len();
    assert!(total > 15, "{total}");
    let state = tempfile::tempdir().unwrap();
    for n in 1..total {
        let options = ApplyOptions {
            fail_after_step: Some(n),
            ..ApplyOptions::default()
        };
        let err = apply_with(&plan, pod.pod.name(), state.path(), &options).unwrap_err();
        assert!(
            matches!(&err, ApplyError::Step { source, .. } if matches!(**source, StepError::Injected { .. })),
            "{err}"
        );
        assert_eq!(
            snapshot(&pod),
            before,
            "after a failure injected after step {n}"
        );
    }
}
