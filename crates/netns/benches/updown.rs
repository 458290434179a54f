//! Benchmark: `apply` + `teardown` against an equivalent shell script of `ip`, `sysctl`
//! and `nft` commands, for plans of 1, 8 and 32 interfaces (masquerade on the pod network
//! plus N−1 bridged Multus networks, each wired by the real CNI `bridge` plugin).
//!
//! Both sides do the same work on the same pod, alternately, several rounds each: netbind
//! in process (journal in a state dir, an rtnetlink socket for links, one nf_tables
//! netlink batch for the NAT ruleset — no `nft` process), the script as one
//! `ip netns exec NS sh -e` per direction, built from the very same plan (its `down`
//! restores names, MACs and sysctls, deletes the created links and the NAT tables). The
//! script does no checks and keeps no journal, which favours it.
//! The machine holds NAT chains in another namespace throughout, as a node does (see
//! [`node_nat`]). Prints a markdown table with the median times. Needs root; run with
//! `cargo bench -p netbind-netns --bench updown`.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use netbind_plan::NetworkPlan;
use netbind_plan::model::LinkStep;
use netbind_spec::{ClusterConfig, Document, defaults};
use netbind_testbed::{PodFixture, Secondary};

/// Rounds per size: this machine kind's timings swing by 20% from one round to the next.
const ROUNDS: usize = 11;

fn manifest(n: usize) -> String {
    let mut ifaces = vec!["{name: default, masquerade: {}}".to_string()];
    let mut nets = vec!["{name: default, pod: {}}".to_string()];
    for i in 1..n {
        ifaces.push(format!("{{name: net{i}, bridge: {{}}}}"));
        nets.push(format!("{{name: net{i}, multus: {{networkName: net{i}}}}}"));
    }
    format!(
        "kind: VirtualMachineInstance\nmetadata: {{name: bench, namespace: ns}}\nspec:\n  domain: {{devices: {{interfaces: [{}]}}}}\n  networks: [{}]\n",
        ifaces.join(", "),
        nets.join(", ")
    )
}

fn plan_for(pod: &PodFixture, text: &str) -> NetworkPlan {
    let view = netbind_netns::read_pod_view(pod.pod.name()).expect("pod view");
    let cluster = ClusterConfig::default();
    let Some(Document::Vm(obj)) = netbind_spec::parse_documents(text.as_bytes())
        .expect("manifest")
        .into_iter()
        .next()
    else {
        panic!("no VM")
    };
    netbind_plan::plan(&defaults::apply(&obj, &cluster), &cluster, &view).expect("plan")
}

/// The plan as `ip`/`sysctl`/`nft` commands, and the commands that undo it.
fn scripts(plan: &NetworkPlan, dir: &std::path::Path) -> (String, String) {
    let mut up = String::new();
    let mut down = Vec::new();
    for (k, iface) in plan.interfaces.iter().enumerate() {
        let pod = &iface.pod_link;
        for step in &iface.links {
            match step {
                LinkStep::CreateBridge { name, mac, mtu } => {
                    let mac = mac
                        .as_ref()
                        .map(|m| format!(" address {m}"))
                        .unwrap_or_default();
                    let _ = writeln!(up, "ip link add name {name}{mac} mtu {mtu} type bridge");
                    down.push(format!("ip link del {name}"));
                }
                LinkStep::CreateTap {
                    name,
                    mtu,
                    uid,
                    gid,
                    ..
                } => {
                    let _ = writeln!(
                        up,
                        "ip tuntap add dev {name} mode tap user {uid} group {gid} vnet_hdr"
                    );
                    let _ = writeln!(up, "ip link set {name} mtu {mtu}");
                    down.push(format!("ip link del {name}"));
                }
                LinkStep::CreateDummy {
                    name,
                    mac,
                    mtu,
                    addresses,
                } => {
                    let mac = mac
                        .as_ref()
                        .map(|m| format!(" address {m}"))
                        .unwrap_or_default();
                    // This kernel has no dummy driver; netbind falls back to ifb too.
                    let _ = writeln!(up, "ip link add name {name}{mac} mtu {mtu} type ifb");
                    for a in addresses {
                        let _ = writeln!(up, "ip addr add {a} dev {name}");
                    }
                    down.push(format!("ip link del {name}"));
                }
                LinkStep::SetDown { link } => {
                    let _ = writeln!(up, "ip link set {link} down");
                    down.push(format!("ip link set {link} up"));
                }
                LinkStep::SetUp { link } => {
                    let _ = writeln!(up, "ip link set {link} up");
                    down.push(format!("ip link set {link} down"));
                }
                LinkStep::RenameLink { from, to } => {
                    let _ = writeln!(up, "ip link set {from} name {to}");
                    down.push(format!("ip link set {to} name {from}"));
                }
                LinkStep::SetMac { link, mac } => {
                    let _ = writeln!(up, "ip link set {link} address {mac}");
                    if let Some(m) = &pod.mac {
                        down.push(format!("ip link set {link} address {m}"));
                    }
                }
                LinkStep::SetMtu { link, mtu } => {
                    let _ = writeln!(up, "ip link set {link} mtu {mtu}");
                }
                LinkStep::FlushAddresses { link } => {
                    let _ = writeln!(up, "ip addr flush dev {link}");
                    for a in &pod.addresses {
                        down.push(format!("ip addr add {a} dev {link}"));
                    }
                }
                LinkStep::AddAddress { link, address } => {
                    let _ = writeln!(up, "ip addr add {address} dev {link}");
                }
                LinkStep::SetMaster { link, master } => {
                    let _ = writeln!(up, "ip link set {link} master {master}");
                    down.push(format!("ip link set {link} nomaster"));
                }
                LinkStep::SetLearning { link, learning } => {
                    let v = if *learning { "on" } else { "off" };
                    let _ = writeln!(up, "ip link set {link} type bridge_slave learning {v}");
                }
            }
        }
        for s in &iface.sysctls {
            let _ = writeln!(up, "sysctl -q -w {}={}", s.key, s.value);
            down.push(format!("sysctl -q -w {}=0", s.key));
        }
        if let Some(n) = &iface.nftables {
            let file = dir.join(format!("nat{k}.nft"));
            std::fs::write(&file, n.to_nft_text()).unwrap();
            let _ = writeln!(up, "nft -f {}", file.display());
            for t in &n.tables {
                down.push(format!("nft delete table {} {}", t.family.as_str(), t.name));
            }
        }
    }
    down.reverse();
    (up, down.join("\n") + "\n")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// NAT chains in a namespace of their own, standing for the node's (kube-proxy and the
/// CNI portmap plugin keep such chains in the host namespace of every Kubernetes node).
/// Without them the first NAT chain on the machine switches the kernel's netfilter hooks
/// on — patching kernel text on every CPU, ≈0.5 ms — and the last one's removal switches
/// them off again, so every round of either contender would pay that, which no `up` on a
/// node does.
fn node_nat() -> netbind_testbed::Netns {
    let node = netbind_testbed::Netns::new("node").expect("node namespace");
    for family in ["ip", "ip6"] {
        node.sh(&format!(
            "nft -f - <<'EOF'\ntable {family} nat {{\n\
             chain prerouting {{ type nat hook prerouting priority -100; }}\n\
             chain input {{ type nat hook input priority 100; }}\n\
             chain output {{ type nat hook output priority -100; }}\n\
             chain postrouting {{ type nat hook postrouting priority 100; }}\n}}\nEOF"
        ))
        .expect("node NAT chains");
    }
    node
}

fn main() {
    let _node = node_nat();
    let mut rows = Vec::new();
    // `UPDOWN_SIZES=1,8` picks the sizes (default 1, 8, 32).
    let sizes: Vec<usize> = std::env::var("UPDOWN_SIZES")
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|_| vec![1, 8, 32]);
    for n in sizes {
        let mut builder = PodFixture::builder().mtu(1400);
        for i in 1..n {
            builder = builder.secondary(
                Secondary::bridge(&format!("net{i}"))
                    .without_ipam()
                    .without_peer()
                    .mtu(1400),
            );
        }
        let pod = builder.build().expect("CNI pod");
        let netns = pod.pod.name();
        let snapshot = || pod.pod.snapshot().expect("snapshot the pod namespace");
        let plan = plan_for(&pod, &manifest(n));
        let steps = netbind_netns::apply::steps(&plan).len();
        let cni = snapshot();
        let work = tempfile::tempdir().unwrap();
        let (up, down) = scripts(&plan, work.path());
        let up_file = work.path().join("up.sh");
        let down_file = work.path().join("down.sh");
        std::fs::write(&up_file, &up).unwrap();
        std::fs::write(&down_file, &down).unwrap();
        let state = tempfile::tempdir_in("/run").unwrap();

        let mut ours = Vec::new();
        let mut ours_up = Vec::new();
        let mut theirs = Vec::new();
        let mut theirs_up = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            netbind_netns::apply(&plan, netns, state.path()).expect("apply");
            ours_up.push(t.elapsed());
            netbind_netns::teardown(netns, state.path()).expect("teardown");
            ours.push(t.elapsed());
            assert_eq!(snapshot(), cni, "netbind round left changes");

            let t = Instant::now();
            for (k, file) in [&up_file, &down_file].into_iter().enumerate() {
                let out = Command::new("ip")
                    .args(["netns", "exec", netns, "sh", "-e"])
                    .arg(file)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}: {}",
                    file.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                if k == 0 {
                    theirs_up.push(t.elapsed());
                }
            }
            theirs.push(t.elapsed());
        }
        let (a, b) = (median(ours), median(theirs));
        let (u, su) = (ms(median(ours_up)), ms(median(theirs_up)));
        rows.push((n, steps, u, su, ms(a), ms(b)));
        eprintln!("{n} interfaces done");
    }
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .unwrap();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "up + down, median of {ROUNDS} rounds — {}, {cpu}, {} cores, kernel {}\n",
        String::from_utf8_lossy(&date.stdout).trim(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel.trim()
    );
    println!(
        "| interfaces | steps | netbind up ms | script up ms | up ratio | netbind up+down ms | script up+down ms | up+down ratio |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (n, steps, u, su, a, b) in rows {
        println!(
            "| {n} | {steps} | {u:.1} | {su:.1} | {:.1}× | {a:.1} | {b:.1} | {:.1}× |",
            su / u,
            b / a
        );
    }
}
