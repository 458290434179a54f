//! End to end with a real guest (issue 3's data plane, and issue 4's engine started by `up`): `netbind up` builds a VM's
//! interfaces in a pod wired by Debian's real CNI plugins, a QEMU guest (TCG, Debian's
//! kernel, busybox initramfs) boots on the devices of `--domain-out` and configures
//! itself only by DHCP (busybox `udhcpc`), DHCPv6 (ISC `dhclient -6`) and router
//! advertisements, then talks to peers on the pod's networks. After each scenario `up` gets
//! SIGTERM, `netbind down` runs, and the pod namespace must be exactly as CNI left it.
//!
//! One guest boot per scenario; several checks per boot. Peers run a python3 agent that
//! reports the source address of what reaches it (TCP, UDP as a one-block TFTP read for
//! busybox `tftp`, ICMP); the guest serves TCP with busybox `nc -ll -e` and waits for the
//! test's `done` line once it printed `LISTENING`.
//!
//! The proxied interface (`passtBinding`, served by the engine `up` starts) runs on each
//! attachment the plan knows: vhost-user, its default (the guest boots on the plan's
//! chardev, vhost-user netdev and shared guest memory), and the stream socket the VM's
//! `netbind.io/usernet-attachment: stream` asks for.
//!
//! Binding plugins (registered by `--cluster-config`): `managedTap` (netbind's bridge and
//! tap, no DHCP — the guest sets a static address) and `tap` on a macvtap made as
//! KubeVirt's macvtap-cni makes it, which QEMU gets as an inherited descriptor of
//! `/dev/tap<ifindex>` (`--domain-out`'s `fds`); there the network's own DHCP server (busybox
//! `udhcpd` on the peer) gives the address.
//!
//! Hot-plug: a bridged Multus network attached to the running pod by the CNI plugin, the
//! VM's manifest gains the interface, a second `netbind up` plugs it, and the NIC is added
//! to the running QEMU through its monitor (`netdev_add`/`device_add` with the interface's
//! arguments from `--domain-out`); the guest takes a lease on it. Then the reverse, in
//! KubeVirt's order: `device_del`, `up` with `state: absent`, CNI `DEL`.
//!
//! Needs root, containernetworking-plugins, nftables, qemu-system-x86, busybox-static,
//! isc-dhcp-client, python3 and the guest kernel (scripts/fetch-guest-kernel.sh); fails,
//! never skips, when any is missing. Each test prints its phases' timings (`--nocapture`);
//! `NETBIND_E2E_CONSOLE=1` also prints the guest's console.

mod e2e;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use e2e::{AGENT_TCP, AGENT_UDP, DataPlane, PeerAgent, Timer, connect, pings};
use netbind_testbed::{
    Guest, GuestNic, GuestOptions, Netns, PodFixture, Secondary, kernel_supports_bridge_vlans,
    require_privileges,
};

/// The pod network's MTU in these tests: not 1500, so that a guest MTU of 1400 can only
/// come from the plan (DHCP option 26, RA MTU, the device's host_mtu).
const POD_MTU: u32 = 1400;
const DNS4: &str = "10.88.0.10";
const DNS6: &str = "fd00:88::a";
const RESOLV_CONF: &str = "nameserver 10.88.0.10\nnameserver fd00:88::a\n\
                           search default.svc.cluster.local svc.cluster.local cluster.local\n";

const MAC_POD: &str = "02:00:00:e2:e0:01";
const MAC_BLUE: &str = "02:00:00:e2:e0:02";
const MAC_GREEN: &str = "02:00:00:e2:e0:03";

/// Shell helpers prepended to every guest script (the testbed's helpers come first).
const GUEST_LIB: &str = r#"
# serve_tcp PORT: answer "guest:PORT got LINE" to every connection, log it; "done" ends.
serve_tcp() {
  cat > /tmp/reply$1.sh <<EOF
#!/bin/sh
read line
echo "guest:$1 got \$line"
echo "$1:\$line" >> /tmp/inbound.log
[ "\$line" = done ] && touch /tmp/done
exit 0
EOF
  chmod +x /tmp/reply$1.sh
  nc -ll -p $1 -e /tmp/reply$1.sh &
}
# await_peer: tell the test the listeners are up, wait (60 s at most) for its "done".
await_peer() {
  usleep 300000
  echo LISTENING
  i=0
  while [ $i -lt 600 ] && [ ! -e /tmp/done ]; do usleep 100000; i=$((i + 1)); done
  result inbound "$(tr '\n' ' ' < /tmp/inbound.log 2>/dev/null)"
}
# outbound KEY PEER: TCP, UDP and ICMP to the peer agent; each reply says our source.
outbound() {
  result tcp-$1 "$(echo hi | timeout 10 nc -w 5 $2 @TCP@)"
  rm -f /tmp/u
  timeout 10 tftp -g -r src -l /tmp/u $2 @UDP@ > /dev/null 2>&1
  result udp-$1 "$(cat /tmp/u 2>/dev/null)"
  if ping -c 2 -i 0.3 -W 3 $2 > /dev/null 2>&1; then result icmp-$1 ok; else result icmp-$1 fail; fi
}
# stamp WHAT: the guest's uptime at a phase boundary, for timing.
stamp() { echo "STAMP $1 $(cut -d' ' -f1 /proc/uptime)"; }
# lease4 KEY IFACE: the NIC's MTU as the device came up (QEMU's host_mtu), DHCPv4 on
# IFACE, then what it got.
lease4() {
  result $1-device-mtu "$(cat /sys/class/net/$2/mtu)"
  dhcp4 $2
  . /run/dhcp-$2.env
  result $1-address "$ip/$mask"
  result $1-router "$router"
  result $1-mtu "$mtu"
  result $1-dns "$dns"
  result $1-search "$search"
  result $1-routes "$staticroutes"
  result $1-link-mtu "$(cat /sys/class/net/$2/mtu)"
}
"#;

fn script(body: &str, vars: &[(&str, String)]) -> String {
    let mut s = format!("{GUEST_LIB}\n{body}");
    let ports = [
        ("TCP", AGENT_TCP.to_string()),
        ("UDP", AGENT_UDP.to_string()),
    ];
    for (k, v) in vars.iter().chain(&ports) {
        s = s.replace(&format!("@{k}@"), v);
    }
    assert!(
        !["@PEER", "@MAC", "@TCP", "@UDP"]
            .iter()
            .any(|k| s.contains(k)),
        "unfilled template: {s}"
    );
    s
}

/// A guest booted in the pod's namespace on `up`'s QEMU arguments.
fn boot(pod: &PodFixture, dp: &DataPlane, script: &str) -> Guest {
    Guest::boot(&pod.pod, &[GuestNic::Args(dp.qemu_args())], script)
        .unwrap_or_else(|e| panic!("guest did not start: {e}\nqemuArgs: {:?}", dp.qemu_args()))
}

/// Waits for `LISTENING` (the guest serves TCP), with the console and `up`'s log on failure.
fn wait_listening(guest: &mut Guest, dp: &DataPlane) {
    if let Err(e) = guest.wait_for("LISTENING", Duration::from_secs(150)) {
        panic!("{e}\n`netbind up` said:\n{}", dp.log());
    }
}

/// Sends the final `done` (through `from` to `addr:port`) and collects the results.
fn finish_guest(
    guest: &mut Guest,
    dp: &DataPlane,
    from: &Netns,
    addr: IpAddr,
    port: u16,
) -> (BTreeMap<String, String>, String) {
    let done = connect(from, addr, port, "done");
    let results = guest.wait_done(Duration::from_secs(90));
    let console = guest.console();
    if std::env::var_os("NETBIND_E2E_CONSOLE").is_some() {
        eprintln!("guest console:\n{console}");
    }
    let results = results.unwrap_or_else(|e| panic!("{e}\n`netbind up` said:\n{}", dp.log()));
    assert!(
        done.is_ok(),
        "the final `done` did not reach the guest: {done:?}\n{console}"
    );
    (results, console)
}

fn pod_fixture(secondaries: &[Secondary]) -> PodFixture {
    require_privileges(&[
        "ip",
        "nft",
        "qemu-system-x86_64",
        "busybox",
        "python3",
        "/usr/sbin/dhclient",
    ])
    .unwrap();
    let mut b = PodFixture::builder().mtu(POD_MTU);
    for s in secondaries {
        b = b.secondary(s.clone());
    }
    let pod = b.build().expect("CNI pod");
    pod.pod
        .set_resolv_conf(RESOLV_CONF)
        .expect("pod resolv.conf");
    pod
}

fn ip(a: IpAddr) -> String {
    a.to_string()
}

/// `r[key]`, or a panic that shows the whole console.
fn get<'a>(r: &'a BTreeMap<String, String>, key: &str, console: &str) -> &'a str {
    r.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("the guest reported no {key:?}; console:\n{console}"))
}

// ---------------------------------------------------------------------------------------
// 1. masquerade on the pod network, dual stack
// ---------------------------------------------------------------------------------------

/// `multiqueue`: two vCPUs and `networkInterfaceMultiqueue` (two queues).
fn masquerade_manifest(ports: &str, multiqueue: bool) -> String {
    let (cpu, mq) = if multiqueue {
        (
            "\n    cpu: {cores: 2}",
            "\n      networkInterfaceMultiqueue: true",
        )
    } else {
        ("", "")
    };
    format!(
        "kind: VirtualMachineInstance
metadata: {{name: vm, namespace: e2e}}
spec:
  domain:{cpu}
    devices:{mq}
      interfaces:
      - {{name: default, masquerade: {{}}, macAddress: '{MAC_POD}'{ports}}}
  networks: [{{name: default, pod: {{}}}}]
"
    )
}

const MASQUERADE_GUEST: &str = r#"
eth=$(nic_by_mac @MAC@)
result nic $eth
stamp boot
lease4 v4 $eth
stamp dhcp4
if dhcp6 $eth; then . /run/dhcp6-$eth.env; fi
stamp dhcp6
result v6-address "$ip6"
result v6-dns "$dns6"
i=0
while [ $i -lt 100 ] && ! ip -6 route | grep -q '^default'; do usleep 100000; i=$((i + 1)); done
result v6-default "$(ip -6 route | grep '^default')"
result v6-mtu "$(cat /proc/sys/net/ipv6/conf/$eth/mtu)"
stamp ra
outbound v4 @PEER4@
stamp outbound-v4
outbound v6 @PEER6@
stamp outbound-v6
serve_tcp 8080
serve_tcp 9090
await_peer
"#;

/// What the peer saw of one masquerade guest, checked the same way with and without `ports`.
fn check_masquerade_guest(
    pod: &PodFixture,
    agent: &PeerAgent,
    r: &BTreeMap<String, String>,
    console: &str,
) {
    let pod4 = ip(pod.pod_ip(false).unwrap());
    let pod6 = ip(pod.pod_ip(true).unwrap());
    // DHCPv4: the planned address, gateway, the pod's MTU and DNS.
    assert_eq!(get(r, "v4-address", console), "10.0.2.2/24", "{console}");
    assert_eq!(get(r, "v4-router", console), "10.0.2.1", "{console}");
    assert_eq!(get(r, "v4-mtu", console), POD_MTU.to_string(), "{console}");
    assert_eq!(
        get(r, "v4-link-mtu", console),
        POD_MTU.to_string(),
        "{console}"
    );
    assert_eq!(
        get(r, "v4-device-mtu", console),
        POD_MTU.to_string(),
        "the guest device (before DHCP) carries the pod MTU\n{console}"
    );
    assert_eq!(get(r, "v4-dns", console), DNS4, "{console}");
    assert!(
        get(r, "v4-search", console).contains("default.svc.cluster.local"),
        "{console}"
    );
    // IPv6 without any guest configuration: address by DHCPv6, route and MTU by RA.
    assert_eq!(get(r, "v6-address", console), "fd10:0:2::2", "{console}");
    assert_eq!(get(r, "v6-dns", console), DNS6, "{console}");
    let default6 = get(r, "v6-default", console);
    assert!(
        default6.starts_with("default via fe80::"),
        "no IPv6 default route from netbind's RA: {default6:?}\n{console}"
    );
    assert_eq!(
        get(r, "v6-mtu", console),
        POD_MTU.to_string(),
        "RA MTU\n{console}"
    );
    // Guest → peer: TCP, UDP and ICMP leave the pod from the pod's address.
    for (fam, addr) in [("v4", &pod4), ("v6", &pod6)] {
        let src = format!("src={addr}");
        assert_eq!(
            get(r, &format!("tcp-{fam}"), console),
            src,
            "TCP {fam}\n{console}"
        );
        assert_eq!(
            get(r, &format!("udp-{fam}"), console),
            src,
            "UDP {fam}\n{console}"
        );
        assert_eq!(
            get(r, &format!("icmp-{fam}"), console),
            "ok",
            "ICMP {fam}\n{console}"
        );
    }
    for kind in ["tcp", "udp", "icmp"] {
        let mut seen = agent.sources(kind);
        seen.sort();
        seen.dedup();
        let mut want = vec![pod4.clone(), pod6.clone()];
        want.sort();
        assert_eq!(seen, want, "{kind} sources at the peer\n{console}");
    }
}

/// A dual-stack pod with a peer agent, `netbind up` for a masquerade VM with `ports`, and a
/// guest that has run MASQUERADE_GUEST up to `LISTENING`.
struct MasqueradeRun {
    pod: PodFixture,
    agent: PeerAgent,
    dp: DataPlane,
    guest: Guest,
    t: Timer,
}

fn boot_masquerade(label: &'static str, ports: &str, multiqueue: bool) -> MasqueradeRun {
    let mut t = Timer::start(label);
    let pod = pod_fixture(&[]);
    let agent = PeerAgent::start(&pod.peer);
    t.lap("pod fixture + peer agent");
    let dp = DataPlane::up(&pod, &masquerade_manifest(ports, multiqueue));
    t.lap("netbind up");
    let s = script(
        MASQUERADE_GUEST,
        &[
            ("MAC", MAC_POD.into()),
            ("PEER4", ip(pod.peer_ip(false).unwrap())),
            ("PEER6", ip(pod.peer_ip(true).unwrap())),
        ],
    );
    let mut guest = boot(&pod, &dp, &s);
    wait_listening(&mut guest, &dp);
    t.lap("guest boot, DHCP, DHCPv6, RA, outbound checks");
    MasqueradeRun {
        pod,
        agent,
        dp,
        guest,
        t,
    }
}

#[test]
fn masquerade_guest_gets_nat_in_both_families_and_every_port_is_forwarded() {
    let MasqueradeRun {
        pod,
        agent,
        dp,
        mut guest,
        mut t,
    } = boot_masquerade("masquerade, all ports", "", false);

    // Peer → pod address:port reaches the guest, on any port, in both families.
    let pod4 = pod.pod_ip(false).unwrap();
    let pod6 = pod.pod_ip(true).unwrap();
    let mut inbound = Vec::new();
    for addr in [pod4, pod6] {
        for port in [8080, 9090] {
            let line = format!("from-peer-{port}-{}", if addr.is_ipv6() { 6 } else { 4 });
            inbound.push((addr, port, connect(&pod.peer, addr, port, &line), line));
        }
    }
    let (r, console) = finish_guest(&mut guest, &dp, &pod.peer, pod4, 8080);
    t.lap("inbound checks");

    check_masquerade_guest(&pod, &agent, &r, &console);
    for (addr, port, got, line) in &inbound {
        assert_eq!(
            got.as_deref(),
            Ok(format!("guest:{port} got {line}").as_str()),
            "peer → {addr} port {port}\n{console}"
        );
    }
    let log = get(&r, "inbound", &console);
    for (_, port, _, line) in &inbound {
        assert!(log.contains(&format!("{port}:{line}")), "{log}");
    }
    drop(guest);
    dp.finish(&pod);
    t.lap("SIGTERM, down, snapshot");
}

#[test]
fn masquerade_with_ports_forwards_only_the_listed_ports() {
    // With two vCPUs and networkInterfaceMultiqueue: QEMU opens the tap once per queue,
    // which works only because `up` made it a multi-queue tap.
    let MasqueradeRun {
        pod,
        agent,
        dp,
        mut guest,
        mut t,
    } = boot_masquerade(
        "masquerade, ports [8080], two queues",
        ", ports: [{port: 8080}]",
        true,
    );
    assert!(
        dp.qemu_args()[1].ends_with(",queues=2"),
        "{:?}",
        dp.qemu_args()
    );

    let pod4 = pod.pod_ip(false).unwrap();
    let pod6 = pod.pod_ip(true).unwrap();
    let mut listed = Vec::new();
    let mut unlisted = Vec::new();
    for addr in [pod4, pod6] {
        listed.push((addr, connect(&pod.peer, addr, 8080, "listed")));
        unlisted.push((addr, connect(&pod.peer, addr, 9090, "unlisted")));
    }
    let (r, console) = finish_guest(&mut guest, &dp, &pod.peer, pod4, 8080);
    t.lap("inbound checks");

    // Outbound NAT, DHCP and RA are unaffected by `ports`.
    check_masquerade_guest(&pod, &agent, &r, &console);
    for (addr, got) in &listed {
        assert_eq!(
            got.as_deref(),
            Ok("guest:8080 got listed"),
            "peer → {addr}:8080 (listed)\n{console}"
        );
    }
    for (addr, got) in &unlisted {
        assert!(
            got.is_err(),
            "peer → {addr}:9090 (not listed) reached something: {got:?}"
        );
    }
    let log = get(&r, "inbound", &console);
    assert!(
        !log.contains("9090:"),
        "an unlisted port reached the guest: {log}"
    );
    drop(guest);
    dp.finish(&pod);
    t.lap("SIGTERM, down, snapshot");
}

// ---------------------------------------------------------------------------------------
// 2. bridge on a Multus network; 3. bridge on the pod network
// ---------------------------------------------------------------------------------------

const BRIDGE_GUEST: &str = r#"
eth=$(nic_by_mac @MAC@)
result nic $eth
lease4 net $eth
result tcp-net "$(echo hi | timeout 10 nc -w 5 @PEER4@ @TCP@)"
serve_tcp 8080
await_peer
"#;

#[test]
fn bridge_on_a_multus_network_gives_the_guest_the_pod_links_address() {
    let mut t = Timer::start("bridge, Multus");
    let pod = pod_fixture(&[Secondary::bridge("blue").mtu(1450)]);
    let blue = pod.secondary("blue").unwrap();
    let peer = blue.peer().unwrap();
    let _agent = PeerAgent::start(peer);
    let want = blue.result().ipv4().expect("blue has an IPv4 address");
    let guest_ip = want.addr();
    let peer_ip = blue.peer_result().unwrap().ipv4().unwrap().addr();
    t.lap("pod fixture + peer agent");
    let manifest = format!(
        "kind: VirtualMachineInstance
metadata: {{name: vm, namespace: e2e}}
spec:
  domain:
    devices:
      interfaces: [{{name: blue, bridge: {{}}, macAddress: '{MAC_BLUE}'}}]
  networks: [{{name: blue, multus: {{networkName: blue}}}}]
"
    );
    let dp = DataPlane::up(&pod, &manifest);
    t.lap("netbind up");
    let s = script(
        BRIDGE_GUEST,
        &[("MAC", MAC_BLUE.into()), ("PEER4", ip(peer_ip))],
    );
    let mut guest = boot(&pod, &dp, &s);
    wait_listening(&mut guest, &dp);
    t.lap("guest boot, DHCP, outbound");

    // The peer on the Multus network reaches the guest directly at the pod link's address.
    let ping = pings(peer, guest_ip);
    let tcp = connect(peer, guest_ip, 8080, "direct");
    let (r, console) = finish_guest(&mut guest, &dp, peer, guest_ip, 8080);
    t.lap("inbound checks");

    assert_eq!(
        get(&r, "net-address", &console),
        want.to_string(),
        "{console}"
    );
    // host-local gave this network no gateway and no routes: the guest gets none either.
    assert_eq!(get(&r, "net-router", &console), "", "{console}");
    assert_eq!(get(&r, "net-routes", &console), "", "{console}");
    // The Multus link's MTU, and the pod's DNS (every DHCP server hands it out).
    assert_eq!(get(&r, "net-mtu", &console), "1450", "{console}");
    assert_eq!(get(&r, "net-link-mtu", &console), "1450", "{console}");
    assert_eq!(get(&r, "net-device-mtu", &console), "1450", "{console}");
    assert_eq!(get(&r, "net-dns", &console), DNS4, "{console}");
    assert_eq!(
        get(&r, "tcp-net", &console),
        format!("src={guest_ip}"),
        "{console}"
    );
    assert!(
        ping,
        "the Multus peer cannot ping the guest at {guest_ip}\n{console}"
    );
    assert_eq!(tcp.as_deref(), Ok("guest:8080 got direct"), "{console}");
    drop(guest);
    dp.finish(&pod);
    t.lap("SIGTERM, down, snapshot");
}

#[test]
fn bridge_on_the_pod_network_gives_the_guest_the_pod_address() {
    let mut t = Timer::start("bridge, pod network");
    let pod = pod_fixture(&[]);
    let _agent = PeerAgent::start(&pod.peer);
    let want = pod.result().ipv4().expect("eth0 has an IPv4 address");
    let guest_ip = want.addr();
    t.lap("pod fixture + peer agent");
    let manifest = format!(
        "kind: VirtualMachineInstance
metadata: {{name: vm, namespace: e2e}}
spec:
  domain:
    devices:
      interfaces: [{{name: default, bridge: {{}}, macAddress: '{MAC_POD}'}}]
  networks: [{{name: default, pod: {{}}}}]
"
    );
    let dp = DataPlane::up(&pod, &manifest);
    t.lap("netbind up");
    let s = script(
        BRIDGE_GUEST,
        &[
            ("MAC", MAC_POD.into()),
            ("PEER4", ip(pod.peer_ip(false).unwrap())),
        ],
    );
    let mut guest = boot(&pod, &dp, &s);
    wait_listening(&mut guest, &dp);
    t.lap("guest boot, DHCP, outbound");

    let ping = pings(&pod.peer, guest_ip);
    let tcp = connect(&pod.peer, guest_ip, 8080, "direct");
    let (r, console) = finish_guest(&mut guest, &dp, &pod.peer, guest_ip, 8080);
    t.lap("inbound checks");

    // eth0's CNI address, its gateway as the default route, the pod's MTU and DNS.
    assert_eq!(
        get(&r, "net-address", &console),
        want.to_string(),
        "{console}"
    );
    // The default route comes as a classless static route (option 121) via CNI's gateway.
    let routes = get(&r, "net-routes", &console);
    assert!(
        routes.contains("0.0.0.0/0 10.88.0.1"),
        "no classless default route via the CNI gateway 10.88.0.1: {routes:?}\n{console}"
    );
    assert_eq!(
        get(&r, "net-mtu", &console),
        POD_MTU.to_string(),
        "{console}"
    );
    assert_eq!(
        get(&r, "net-device-mtu", &console),
        POD_MTU.to_string(),
        "the guest device (before DHCP) carries the pod MTU\n{console}"
    );
    assert_eq!(get(&r, "net-dns", &console), DNS4, "{console}");
    assert_eq!(
        get(&r, "tcp-net", &console),
        format!("src={guest_ip}"),
        "{console}"
    );
    assert!(
        ping,
        "the peer cannot ping the guest at {guest_ip}\n{console}"
    );
    assert_eq!(tcp.as_deref(), Ok("guest:8080 got direct"), "{console}");
    drop(guest);
    dp.finish(&pod);
    t.lap("SIGTERM, down, snapshot");
}

// ---------------------------------------------------------------------------------------
// 4. three interfaces on one VM
// ---------------------------------------------------------------------------------------

const THREE_GUEST: &str = r#"
# Answer ARP only for addresses of the receiving NIC: otherwise Linux's weak host model
# would answer for every NIC's address on every NIC and hide (or fake) a leak in the pod.
sysctl -qw net.ipv4.conf.all.arp_ignore=1
pod=$(nic_by_mac @MACPOD@)
blue=$(nic_by_mac @MACBLUE@)
green=$(nic_by_mac @MACGREEN@)
result nics "$pod $blue $green"
lease4 pod $pod
lease4 blue $blue
lease4 green $green
result tcp-pod "$(echo hi | timeout 10 nc -w 5 @PEER@ @TCP@)"
result tcp-blue "$(echo hi | timeout 10 nc -w 5 @PEERBLUE@ @TCP@)"
result tcp-green "$(echo hi | timeout 10 nc -w 5 @PEERGREEN@ @TCP@)"
result route-blue "$(ip route get @PEERBLUE@)"
result route-green "$(ip route get @PEERGREEN@)"
serve_tcp 8080
await_peer
"#;

#[test]
fn three_interfaces_on_one_vm_each_work_and_none_leaks_into_another() {
    let mut t = Timer::start("three interfaces");
    // The issue asks for the second Multus network bridged *with a VLAN*. The kernel of the
    // machine this was written on has no 802.1Q and no bridge vlan_filtering
    // (`kernel_supports_bridge_vlans()` is false), so neither the CNI `bridge` plugin nor
    // netbind can build one there; the second network is then a second plain bridged
    // network. Where the kernel can, green carries VLAN 100 as the issue says. Isolation
    // between two L2 networks on one VM is what this test pins either way.
    let green_net = if kernel_supports_bridge_vlans() {
        Secondary::bridge("green").vlan(100)
    } else {
        eprintln!("[three interfaces] no bridge VLAN support in this kernel: green is untagged");
        Secondary::bridge("green")
    };
    let pod = pod_fixture(&[Secondary::bridge("blue"), green_net]);
    let blue = pod.secondary("blue").unwrap();
    let green = pod.secondary("green").unwrap();
    let (blue_peer, green_peer) = (blue.peer().unwrap(), green.peer().unwrap());
    let _agents = [
        PeerAgent::start(&pod.peer),
        PeerAgent::start(blue_peer),
        PeerAgent::start(green_peer),
    ];
    let blue_want = blue.result().ipv4().unwrap();
    let green_want = green.result().ipv4().unwrap();
    let blue_peer_ip = blue.peer_result().unwrap().ipv4().unwrap().addr();
    let green_peer_ip = green.peer_result().unwrap().ipv4().unwrap().addr();
    t.lap("pod fixture (3 networks) + peer agents");
    let manifest = format!(
        "kind: VirtualMachineInstance
metadata: {{name: vm, namespace: e2e}}
spec:
  domain:
    devices:
      interfaces:
      - {{name: default, masquerade: {{}}, macAddress: '{MAC_POD}'}}
      - {{name: blue, bridge: {{}}, macAddress: '{MAC_BLUE}'}}
      - {{name: green, bridge: {{}}, macAddress: '{MAC_GREEN}'}}
  networks:
  - {{name: default, pod: {{}}}}
  - {{name: blue, multus: {{networkName: blue}}}}
  - {{name: green, multus: {{networkName: green}}}}
"
    );
    let dp = DataPlane::up(&pod, &manifest);
    t.lap("netbind up");
    let s = script(
        THREE_GUEST,
        &[
            ("MACPOD", MAC_POD.into()),
            ("MACBLUE", MAC_BLUE.into()),
            ("MACGREEN", MAC_GREEN.into()),
            ("PEERBLUE", ip(blue_peer_ip)),
            ("PEERGREEN", ip(green_peer_ip)),
            ("PEER", ip(pod.peer_ip(false).unwrap())),
        ],
    );
    let mut guest = boot(&pod, &dp, &s);
    wait_listening(&mut guest, &dp);
    t.lap("guest boot, 3× DHCP, outbound");

    let pod4 = pod.pod_ip(false).unwrap();
    let (gblue, ggreen) = (blue_want.addr(), green_want.addr());
    // Each network's peer reaches the guest on that network.
    let pod_tcp = connect(&pod.peer, pod4, 8080, "via-pod");
    let blue_ping = pings(blue_peer, gblue);
    let blue_tcp = connect(blue_peer, gblue, 8080, "via-blue");
    let green_ping = pings(green_peer, ggreen);
    let green_tcp = connect(green_peer, ggreen, 8080, "via-green");
    t.lap("reachability checks");
    // No network reaches the guest's address on another one, even when a peer sends
    // straight onto its own L2 segment (on-link routes) — nor the other network's peer.
    blue_peer
        .sh(&format!(
            "ip route add {} dev net1 && ip route add 10.0.2.0/24 dev net1",
            green_want.trunc()
        ))
        .unwrap();
    green_peer
        .sh(&format!("ip route add {} dev net1", blue_want.trunc()))
        .unwrap();
    let leak_checks: [(&str, &Netns, IpAddr); 6] = [
        ("blue peer → guest's green address", blue_peer, ggreen),
        ("blue peer → green peer", blue_peer, green_peer_ip),
        (
            "blue peer → guest's masquerade address",
            blue_peer,
            "10.0.2.2".parse().unwrap(),
        ),
        ("green peer → guest's blue address", green_peer, gblue),
        ("green peer → blue peer", green_peer, blue_peer_ip),
        ("cluster peer → guest's blue address", &pod.peer, gblue),
    ];
    let leaks: Vec<(&str, bool)> = std::thread::scope(|s| {
        let running: Vec<_> = leak_checks
            .iter()
            .map(|(what, ns, addr)| (*what, s.spawn(move || pings(ns, *addr))))
            .collect();
        running
            .into_iter()
            .map(|(w, h)| (w, h.join().unwrap()))
            .collect()
    });
    t.lap("isolation pings");
    let blue_to_green_tcp = connect(blue_peer, ggreen, 8080, "leak");
    t.lap("isolation tcp");
    let (r, console) = finish_guest(&mut guest, &dp, green_peer, ggreen, 8080);
    t.lap("inbound and isolation checks");

    assert_eq!(get(&r, "pod-address", &console), "10.0.2.2/24", "{console}");
    assert_eq!(get(&r, "pod-router", &console), "10.0.2.1", "{console}");
    assert_eq!(
        get(&r, "blue-address", &console),
        blue_want.to_string(),
        "{console}"
    );
    assert_eq!(
        get(&r, "green-address", &console),
        green_want.to_string(),
        "{console}"
    );
    // Only the masquerade NIC carries a default route.
    assert_eq!(get(&r, "blue-router", &console), "", "{console}");
    assert_eq!(get(&r, "green-router", &console), "", "{console}");
    for nic in ["pod", "blue", "green"] {
        assert_eq!(get(&r, &format!("{nic}-dns"), &console), DNS4, "{console}");
    }
    assert_eq!(
        get(&r, "pod-mtu", &console),
        POD_MTU.to_string(),
        "{console}"
    );
    assert_eq!(
        get(&r, "tcp-pod", &console),
        format!("src={pod4}"),
        "{console}"
    );
    assert_eq!(
        get(&r, "tcp-blue", &console),
        format!("src={gblue}"),
        "{console}"
    );
    assert_eq!(
        get(&r, "tcp-green", &console),
        format!("src={ggreen}"),
        "{console}"
    );
    let nics: Vec<&str> = get(&r, "nics", &console).split(' ').collect();
    assert!(
        get(&r, "route-blue", &console).contains(&format!("dev {}", nics[1])),
        "{console}"
    );
    assert!(
        get(&r, "route-green", &console).contains(&format!("dev {}", nics[2])),
        "{console}"
    );
    assert_eq!(
        pod_tcp.as_deref(),
        Ok("guest:8080 got via-pod"),
        "{console}"
    );
    assert!(
        blue_ping,
        "blue peer cannot ping the guest at {gblue}\n{console}"
    );
    assert_eq!(
        blue_tcp.as_deref(),
        Ok("guest:8080 got via-blue"),
        "{console}"
    );
    assert!(
        green_ping,
        "green peer cannot ping the guest at {ggreen}\n{console}"
    );
    assert_eq!(
        green_tcp.as_deref(),
        Ok("guest:8080 got via-green"),
        "{console}"
    );
    for (what, reached) in leaks {
        assert!(!reached, "leak: {what}\n{console}");
    }
    assert!(
        blue_to_green_tcp.is_err(),
        "leak: blue peer → guest's green address over TCP"
    );
    assert!(!get(&r, "inbound", &console).contains("leak"), "{console}");
    drop(guest);
    dp.finish(&pod);
    t.lap("SIGTERM, down, snapshot");
}

// ---------------------------------------------------------------------------------------
// 5. the seed's "both in parallel": proxied on the pod network, L2 on a Multus network
// ---------------------------------------------------------------------------------------

const BOTH_GUEST: &str = r#"
sysctl -qw net.ipv4.conf.all.arp_ignore=1
pod=$(nic_by_mac @MACPOD@)
blue=$(nic_by_mac @MACBLUE@)
lease4 pod $pod
lease4 blue $blue
result tcp-pod "$(echo hi | timeout 10 nc -w 5 @PEER@ @TCP@)"
result tcp-blue "$(echo hi | timeout 10 nc -w 5 @PEERBLUE@ @TCP@)"
serve_tcp 8080
await_peer
"#;

/// The passtBinding NIC on the plan's default attachment: vhost-user, the engine in the
/// guest's shared memory (the plan sizes it from the VM's memory request).
#[test]
fn proxied_pod_network_over_vhost_user_and_bridged_multus_network_work_on_one_vm() {
    proxied_and_bridged(None);
}

/// The same on the attachment the VM's annotation asks for: QEMU's stream socket.
#[test]
fn proxied_pod_network_over_a_stream_socket_and_bridged_multus_network_work_on_one_vm() {
    proxied_and_bridged(Some("stream"));
}

/// One VM: passtBinding on the pod network (`attachment`: the VM's
/// `netbind.io/usernet-attachment`, none for the default), bridge on a Multus network.
fn proxied_and_bridged(attachment: Option<&str>) {
    let mut t = Timer::start(match attachment {
        None => "passtBinding (vhost-user) + bridge",
        Some(_) => "passtBinding (stream) + bridge",
    });
    let pod = pod_fixture(&[Secondary::bridge("blue")]);
    let blue = pod.secondary("blue").unwrap();
    let blue_peer = blue.peer().unwrap();
    let _agents = [PeerAgent::start(&pod.peer), PeerAgent::start(blue_peer)];
    let blue_want = blue.result().ipv4().unwrap();
    let blue_peer_ip = blue.peer_result().unwrap().ipv4().unwrap().addr();
    let pod4 = pod.pod_ip(false).unwrap();
    t.lap("pod fixture + peer agents");
    // A VM name of its own: the engine's socket lives under /run/netbind/<ns>/<vm>/.
    let annotations = attachment
        .map(|a| format!(", annotations: {{netbind.io/usernet-attachment: {a}}}"))
        .unwrap_or_default();
    let manifest = format!(
        "kind: VirtualMachineInstance
metadata: {{name: both{pid}{kind}, namespace: e2e{annotations}}}
spec:
  domain:
    devices:
      interfaces:
      - {{name: default, passtBinding: {{}}, macAddress: '{MAC_POD}', ports: [{{port: 8080}}]}}
      - {{name: blue, bridge: {{}}, macAddress: '{MAC_BLUE}'}}
    resources: {{requests: {{memory: 256Mi}}}}
  networks:
  - {{name: default, pod: {{}}}}
  - {{name: blue, multus: {{networkName: blue}}}}
",
        pid = std::process::id(),
        kind = attachment.unwrap_or("vu"),
    );
    let dp = DataPlane::up(&pod, &manifest);
    t.lap("netbind up (bridge built, engine listening)");
    // The guest boots on exactly what the plan says: for vhost-user the chardev, the
    // vhost-user netdev and the shared memory (once; the testbed adds none of its own).
    let args = dp.qemu_args();
    let has = |prefix: &str| args.iter().filter(|a| a.starts_with(prefix)).count();
    let engine = dp
        .log()
        .lines()
        .find_map(|l| l.split("user-mode engine for default: pid ").nth(1))
        .and_then(|p| p.trim().parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no engine started:\n{}", dp.log()));
    let engine_argv = std::fs::read(format!("/proc/{engine}/cmdline")).unwrap_or_default();
    let engine_vhost_user = engine_argv.split(|b| *b == 0).any(|a| a == b"--vhost-user");
    if attachment.is_none() {
        assert_eq!(has("vhost-user,"), 1, "{args:?}");
        assert_eq!(has("socket,id=charua-default,path="), 1, "{args:?}");
        assert_eq!(
            has("memory-backend-memfd,id=mem,size=256M,share=on"),
            1,
            "{args:?}"
        );
        assert_eq!(has("memory-backend=mem"), 1, "{args:?}");
        assert_eq!(has("stream,"), 0, "{args:?}");
        assert!(engine_vhost_user, "the engine: {engine_argv:?}");
    } else {
        assert_eq!(has("stream,"), 1, "{args:?}");
        assert_eq!(has("vhost-user,") + has("memory-backend"), 0, "{args:?}");
        assert!(!engine_vhost_user, "the engine: {engine_argv:?}");
    }
    let s = script(
        BOTH_GUEST,
        &[
            ("MACPOD", MAC_POD.into()),
            ("MACBLUE", MAC_BLUE.into()),
            ("PEER", ip(pod.peer_ip(false).unwrap())),
            ("PEERBLUE", ip(blue_peer_ip)),
        ],
    );
    let mut guest = boot(&pod, &dp, &s);
    wait_listening(&mut guest, &dp);
    t.lap("guest boot, 2× DHCP, outbound");

    // Through the engine, the pod's own address is the guest's: the cluster peer reaches
    // the forwarded port there; the Multus peer reaches the guest directly on L2.
    let pod_tcp = connect(&pod.peer, pod4, 8080, "via-engine");
    let blue_tcp = connect(blue_peer, blue_want.addr(), 8080, "via-blue");
    let (r, console) = finish_guest(&mut guest, &dp, blue_peer, blue_want.addr(), 8080);
    t.lap("inbound checks");

    // The engine hands the guest the pod's own address (the VM *is* the pod) and gateway.
    let pod_cidr = pod.result().ipv4().unwrap();
    assert_eq!(
        get(&r, "pod-address", &console),
        pod_cidr.to_string(),
        "{console}"
    );
    assert_eq!(
        get(&r, "pod-router", &console),
        pod.result().gateway(false).unwrap().to_string(),
        "{console}"
    );
    assert_eq!(
        get(&r, "blue-address", &console),
        blue_want.to_string(),
        "{console}"
    );
    assert_eq!(
        get(&r, "tcp-pod", &console),
        format!("src={pod4}"),
        "{console}"
    );
    assert_eq!(
        get(&r, "tcp-blue", &console),
        format!("src={}", blue_want.addr()),
        "{console}"
    );
    assert_eq!(
        pod_tcp.as_deref(),
        Ok("guest:8080 got via-engine"),
        "{console}"
    );
    assert_eq!(
        blue_tcp.as_deref(),
        Ok("guest:8080 got via-blue"),
        "{console}"
    );
    drop(guest);
    let log = dp.finish(&pod);
    assert!(log.contains("user-mode engine for default: pid"), "{log}");
    t.lap("SIGTERM, down, snapshot");
}

// ---------------------------------------------------------------------------------------
// 6. binding plugins: managedTap (netbind's bridge + tap, no DHCP) and tap (a macvtap)
// ---------------------------------------------------------------------------------------

fn v4(n: ipnet::IpNet) -> ipnet::Ipv4Net {
    match n {
        ipnet::IpNet::V4(n) => n,
        ipnet::IpNet::V6(n) => panic!("{n} is not IPv4"),
    }
}

const MANAGED_TAP_GUEST: &str = r#"
eth=$(nic_by_mac @MAC@)
result nic $eth
result device-mtu "$(cat /sys/class/net/$eth/mtu)"
if dhcp4 $eth; then result dhcp lease; else result dhcp none; fi
result dhcp-env "$(cat /run/dhcp-$eth.env 2>/dev/null)"
ip -4 addr flush dev $eth
ip addr add @ADDR@ dev $eth
ip link set $eth up
wait_link $eth 10
result address "$(ip -4 -o addr show dev $eth | awk '{print $4}')"
result tcp-net "$(echo hi | timeout 10 nc -w 5 @PEER4@ @TCP@)"
if ping -c 2 -i 0.3 -W 3 @PEER4@ > /dev/null 2>&1; then result icmp-net ok; else result icmp-net fail; fi
serve_tcp 8080
await_peer
"#;

#[test]
fn managed_tap_plugin_bridges_the_guest_without_dhcp() {
    let mut t = Timer::start("managedTap plugin, Multus");
    let pod = pod_fixture(&[Secondary::bridge("blue").mtu(1450)]);
    let blue = pod.secondary("blue").unwrap();
    let peer = blue.peer().unwrap();
    let agent = PeerAgent::start(peer);
    let pod_cidr = v4(blue.result().ipv4().expect("blue has an IPv4 address"));
    let peer_ip = blue.peer_result().unwrap().ipv4().unwrap().addr();
    // A static address of the network's subnet that host-local did not hand out.
    let guest_cidr: ipnet::Ipv4Net = {
        let o = pod_cidr.network().octets();
        format!("{}.{}.{}.200/{}", o[0], o[1], o[2], pod_cidr.prefix_len())
            .parse()
            .unwrap()
    };
    assert!(pod_cidr.contains(&guest_cidr.addr()) && guest_cidr.addr() != pod_cidr.addr());
    let guest_ip = IpAddr::V4(guest_cidr.addr());
    t.lap("pod fixture + peer agent");
    let manifest = format!(
        "kind: VirtualMachineInstance
metadata: {{name: vm, namespace: e2e}}
spec:
  domain:
    devices:
      interfaces: [{{name: blue, binding: {{name: mtap}}, macAddress: '{MAC_BLUE}'}}]
  networks: [{{name: blue, multus: {{networkName: blue}}}}]
"
    );
    let cluster = "network:\n  binding:\n    mtap: {domainAttachmentType: managedTap}\n";
    let dp = DataPlane::up_with(&pod, &manifest, Some(cluster));
    t.lap("netbind up");
    // netbind's in-pod bridge with the renamed pod link and the guest's tap as its ports.
    let link = &blue.pod_link;
    let tap = netbind_spec::naming::tap_name(link);
    let bridge = netbind_spec::naming::bridge_name(link);
    assert_eq!(
        dp.qemu_args()[1],
        format!("tap,id=hostua-blue,ifname={tap},script=no,downscript=no")
    );
    assert_eq!(dp.fds(), vec![], "a tap needs no descriptor");
    let ports = pod
        .pod
        .sh(&format!("ip -o link show master {bridge}"))
        .unwrap();
    let nic = netbind_spec::naming::renamed_pod_link(link);
    assert!(
        ports.contains(&format!(" {tap}:")) && ports.contains(&format!(" {nic}@")),
        "{bridge} ports: {ports}"
    );
    let s = script(
        MANAGED_TAP_GUEST,
        &[
            ("MAC", MAC_BLUE.into()),
            ("PEER4", ip(peer_ip)),
            ("ADDR", guest_cidr.to_string()),
        ],
    );
    let mut guest = boot(&pod, &dp, &s);
    wait_listening(&mut guest, &dp);
    t.lap("guest boot, DHCP attempt, static address, outbound");

    let ping = pings(peer, guest_ip);
    let tcp = connect(peer, guest_ip, 8080, "direct");
    let (r, console) = finish_guest(&mut guest, &dp, peer, guest_ip, 8080);
    t.lap("inbound checks");

    // No DHCP server in the pod for managedTap, and none on the network.
    // udhcpc ran and gave up: its hook reported leasefail, never bound.
    let nic = get(&r, "nic", &console);
    assert_eq!(get(&r, "dhcp", &console), "none", "{console}");
    assert_eq!(get(&r, "dhcp-env", &console), "", "{console}");
    assert!(
        console.contains(&format!("DHCP {nic} leasefail"))
            && !console.contains(&format!("DHCP {nic} bound")),
        "{console}"
    );
    assert_eq!(get(&r, "device-mtu", &console), "1450", "{console}");
    assert_eq!(
        get(&r, "address", &console),
        guest_cidr.to_string(),
        "{console}"
    );
    assert_eq!(
        get(&r, "tcp-net", &console),
        format!("src={guest_ip}"),
        "{console}"
    );
    assert_eq!(get(&r, "icmp-net", &console), "ok", "{console}");
    assert_eq!(
        agent.sources("tcp"),
        vec![guest_ip.to_string()],
        "{console}"
    );
    assert!(
        agent
            .sources("icmp")
            .iter()
            .all(|a| *a == guest_ip.to_string())
            && !agent.sources("icmp").is_empty(),
        "icmp sources at the peer: {:?}",
        agent.sources("icmp")
    );
    assert!(
        ping,
        "the peer cannot ping the guest at {guest_ip}\n{console}"
    );
    assert_eq!(tcp.as_deref(), Ok("guest:8080 got direct"), "{console}");
    drop(guest);
    let log = dp.finish(&pod);
    assert!(
        log.contains("nothing to serve"),
        "managedTap must serve no DHCP: {log}"
    );
    t.lap("SIGTERM, down, snapshot");
}

const MACVTAP_GUEST: &str = r#"
eth=$(nic_by_mac @MAC@)
result nic $eth
lease4 net $eth
result tcp-net "$(echo hi | timeout 10 nc -w 5 @PEER4@ @TCP@)"
if ping -c 2 -i 0.3 -W 3 @PEER4@ > /dev/null 2>&1; then result icmp-net ok; else result icmp-net fail; fi
serve_tcp 8080
await_peer
"#;

#[test]
fn macvtap_plugin_guest_reaches_the_network_through_a_passed_descriptor() {
    let mut t = Timer::start("tap plugin, macvtap");
    let mut pod = pod_fixture(&[]);
    pod.add_macvtap("hostnetwork", "default/macvtapnetwork", 1500)
        .expect("macvtap network");
    let mv = pod.macvtap("hostnetwork").unwrap();
    let peer = &mv.peer;
    let agent = PeerAgent::start(peer);
    let peer_net = v4(mv
        .peer_result()
        .ipv4()
        .expect("the peer has an IPv4 address"));
    let peer_ip = IpAddr::V4(peer_net.addr());
    // The network's DHCP server: busybox udhcpd on the peer, a small pool of its subnet.
    let o = peer_net.network().octets();
    let pool = |last: u8| format!("{}.{}.{}.{last}", o[0], o[1], o[2]);
    let dhcpd_dir = tempfile::tempdir().unwrap();
    let conf = dhcpd_dir.path().join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "start {}\nend {}\ninterface net1\nmax_leases 10\nlease_file {}\npidfile {}\noption subnet {}\noption lease 3600\n",
            pool(100),
            pool(110),
            dhcpd_dir.path().join("leases").display(),
            dhcpd_dir.path().join("pid").display(),
            peer_net.netmask(),
        ),
    )
    .unwrap();
    std::fs::write(dhcpd_dir.path().join("leases"), b"").unwrap();
    let _dhcpd = peer
        .spawn(&["busybox", "udhcpd", "-f", conf.to_str().unwrap()])
        .expect("udhcpd on the peer");
    t.lap("pod fixture (macvtap) + peer agent + udhcpd");

    let manifest = "kind: VirtualMachineInstance
metadata: {name: vm, namespace: e2e}
spec:
  domain:
    devices:
      interfaces: [{name: hostnetwork, binding: {name: macvtap}}]
  networks: [{name: hostnetwork, multus: {networkName: macvtapnetwork}}]
";
    let cluster = "network:\n  binding:\n    macvtap: {domainAttachmentType: tap}\n";
    let dp = DataPlane::up_with(&pod, manifest, Some(cluster));
    t.lap("netbind up");

    // The plan names the macvtap's character device, and it is that macvtap's.
    let link = &mv.pod_link;
    let ifindex: u32 = pod
        .pod
        .sh(&format!("cat /sys/class/net/{link}/ifindex"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let dev_path = std::path::PathBuf::from(format!("/dev/tap{ifindex}"));
    assert_eq!(dp.fds(), vec![(3, dev_path.clone())], "{}", dp.domain);
    assert_eq!(dp.domain["fds"][0]["link"], link.as_str(), "{}", dp.domain);
    let sys_dev = pod
        .pod
        .sh(&format!(
            "cat /sys/class/net/{link}/macvtap/tap{ifindex}/dev"
        ))
        .unwrap();
    let rdev = std::os::unix::fs::MetadataExt::rdev(
        &std::fs::metadata(&dev_path).unwrap_or_else(|e| panic!("{}: {e}", dev_path.display())),
    );
    assert_eq!(
        format!(
            "{}:{}",
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev)
        ),
        sys_dev.trim(),
        "{} is not {link}'s macvtap device",
        dev_path.display()
    );
    assert_eq!(
        dp.qemu_args(),
        vec![
            "-netdev".to_string(),
            "tap,id=hostua-hostnetwork,fd=3".into(),
            "-device".into(),
            format!(
                "virtio-net-pci,netdev=hostua-hostnetwork,id=ua-hostnetwork,mac={},host_mtu=1500",
                mv.mac
            ),
        ]
    );
    let xml = dp.domain["libvirtXml"].as_str().unwrap();
    assert!(
        xml.starts_with("<interface type='ethernet'>")
            && xml.contains(&format!("<target dev='{link}' managed='no'/>")),
        "{xml}"
    );
    let s = script(
        MACVTAP_GUEST,
        &[("MAC", mv.mac.clone()), ("PEER4", ip(peer_ip))],
    );
    let opts = GuestOptions {
        fds: dp.fds(),
        ..GuestOptions::default()
    };
    let mut guest = Guest::boot_with(&pod.pod, &[GuestNic::Args(dp.qemu_args())], &s, &opts)
        .unwrap_or_else(|e| panic!("guest did not start: {e}\nqemuArgs: {:?}", dp.qemu_args()));
    wait_listening(&mut guest, &dp);
    t.lap("guest boot, DHCP from the network, outbound");

    let leased = guest
        .results()
        .get("net-address")
        .cloned()
        .unwrap_or_default();
    let guest_ip: IpAddr = leased
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no lease from udhcpd: {leased:?}\n{}", guest.console()));
    let ping = pings(peer, guest_ip);
    let tcp = connect(peer, guest_ip, 8080, "direct");
    let (r, console) = finish_guest(&mut guest, &dp, peer, guest_ip, 8080);
    t.lap("inbound checks");

    let in_pool = (100..=110).any(|n| leased == format!("{}/{}", pool(n), peer_net.prefix_len()));
    assert!(
        in_pool,
        "lease {leased} is not from the peer's udhcpd pool\n{console}"
    );
    assert_eq!(get(&r, "net-link-mtu", &console), "1500", "{console}");
    assert_eq!(
        get(&r, "tcp-net", &console),
        format!("src={guest_ip}"),
        "{console}"
    );
    assert_eq!(get(&r, "icmp-net", &console), "ok", "{console}");
    assert_eq!(
        agent.sources("tcp"),
        vec![guest_ip.to_string()],
        "{console}"
    );
    assert!(
        ping,
        "the peer cannot ping the guest at {guest_ip}\n{console}"
    );
    assert_eq!(tcp.as_deref(), Ok("guest:8080 got direct"), "{console}");
    drop(guest);
    dp.finish(&pod);
    t.lap("SIGTERM, down, snapshot");
}

#[test]
fn the_guest_image_carries_a_dhcpv6_client() {
    // Without it the IPv6 checks above would fail for a reason outside netbind.
    require_privileges(&["busybox", "qemu-system-x86_64", "/usr/sbin/dhclient"]).unwrap();
    let ns = Netns::new("dh6").unwrap();
    let mut guest =
        Guest::boot(&ns, &[], "result dhclient $(/sbin/dhclient --version 2>&1)").unwrap();
    let r = guest.wait_done(Duration::from_secs(60)).unwrap();
    assert!(
        r.get("dhclient")
            .is_some_and(|v| v.contains("isc-dhclient")),
        "{}",
        guest.console()
    );
}

// ---------------------------------------------------------------------------------------
// Hot-plug and hot-unplug of a bridged Multus network into a running guest
// ---------------------------------------------------------------------------------------

const HOTPLUG_GUEST: &str = r#"
eth=$(nic_by_mac @MAC@)
lease4 pod $eth
echo AWAIT-HOTPLUG
hot=""
i=0
while [ $i -lt 1200 ] && [ -z "$hot" ]; do hot=$(nic_by_mac @MACBLUE@); usleep 100000; i=$((i + 1)); done
result hot-nic "$hot"
if [ -n "$hot" ]; then
  lease4 blue $hot
  if ping -c 2 -i 0.3 -W 3 @PEER4@ > /dev/null 2>&1; then result blue-ping ok; else result blue-ping fail; fi
fi
echo AWAIT-UNPLUG
i=0
while [ $i -lt 1200 ] && [ -n "$hot" ] && [ -e /sys/class/net/$hot ]; do usleep 100000; i=$((i + 1)); done
result hot-gone "$([ -n "$hot" ] && [ ! -e /sys/class/net/$hot ] && echo yes || echo no)"
"#;

/// Reads from QEMU's human monitor up to its prompt (or a timeout).
fn read_to_prompt(s: &mut std::os::unix::net::UnixStream) -> String {
    use std::io::Read;
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    while !said.ends_with(b"(qemu) ") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => said.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&said).into_owned()
}

/// One command on QEMU's human monitor (a unix socket); returns what QEMU answered.
fn monitor(path: &std::path::Path, command: &str) -> String {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("QEMU monitor {}: {e}", path.display()));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    read_to_prompt(&mut s);
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    read_to_prompt(&mut s)
}

/// The masquerade VM, with `blue` (an interface entry, or nothing) and its network.
fn hotplug_manifest(blue: &str) -> String {
    let network = if blue.is_empty() {
        ""
    } else {
        ", {name: blue, multus: {networkName: blue}}"
    };
    format!(
        "kind: VirtualMachineInstance
metadata: {{name: vm, namespace: e2e}}
spec:
  domain:
    devices:
      interfaces:
      - {{name: default, masquerade: {{}}, macAddress: '{MAC_POD}'}}{blue}
  networks: [{{name: default, pod: {{}}}}{network}]
"
    )
}

#[test]
fn a_network_hot_plugged_into_a_running_guest_works_and_unplugs_cleanly() {
    let mut t = Timer::start("hot-plug");
    let mut pod = pod_fixture(&[]);
    let mut dp = DataPlane::up(&pod, &hotplug_manifest(""));
    t.lap("netbind up (masquerade)");
    let dir = tempfile::tempdir().unwrap();
    let mon = dir.path().join("monitor.sock");
    let opts = GuestOptions {
        extra_args: vec![
            "-monitor".into(),
            format!("unix:{},server=on,wait=off", mon.display()),
        ],
        ..GuestOptions::default()
    };
    // The peer's address is known once the network exists; the guest script needs it now.
    let peer_ip = "10.88.1.3";
    let s = script(
        HOTPLUG_GUEST,
        &[
            ("MAC", MAC_POD.into()),
            ("MACBLUE", MAC_BLUE.into()),
            ("PEER4", peer_ip.into()),
        ],
    );
    let mut guest = Guest::boot_with(&pod.pod, &[GuestNic::Args(dp.qemu_args())], &s, &opts)
        .unwrap_or_else(|e| panic!("guest did not start: {e}"));
    if let Err(e) = guest.wait_for("AWAIT-HOTPLUG", Duration::from_secs(150)) {
        panic!("{e}\n`netbind up` said:\n{}", dp.log());
    }
    t.lap("guest boot, DHCP on the pod network");

    // Multus attaches the network to the running pod, the VM spec gains the interface,
    // netbind plugs it in the pod, the launcher hot-adds the NIC to QEMU.
    pod.add_secondary(Secondary::bridge("blue").mtu(POD_MTU))
        .expect("attach blue to the pod");
    let blue = pod.secondary("blue").unwrap();
    let want = blue.result().ipv4().expect("blue has an IPv4 address");
    let peer = blue.peer().unwrap();
    assert_eq!(
        blue.peer_result()
            .unwrap()
            .ipv4()
            .unwrap()
            .addr()
            .to_string(),
        peer_ip,
        "host-local gave the peer another address than the script expects"
    );
    let domain = dp.up_again(
        &pod,
        &hotplug_manifest(&format!(
            "\n      - {{name: blue, bridge: {{}}, macAddress: '{MAC_BLUE}'}}"
        )),
    );
    let args: Vec<String> = domain["interfaces"]
        .as_array()
        .expect("--domain-out lists its interfaces")
        .iter()
        .find(|i| i["name"] == "blue")
        .unwrap_or_else(|| panic!("no blue in {domain}"))["qemuArgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(args.len(), 4, "{args:?}");
    let added = [
        monitor(&mon, &format!("netdev_add {}", args[1])),
        monitor(&mon, &format!("device_add {}", args[3])),
    ];
    if let Err(e) = guest.wait_for("AWAIT-UNPLUG", Duration::from_secs(120)) {
        panic!("{e}\nmonitor: {added:?}\n`netbind up` said:\n{}", dp.log());
    }
    let inbound = pings(peer, want.addr());
    t.lap("hot-plug: pod, QEMU, guest DHCP");

    // Unplug in KubeVirt's order: the NIC leaves the guest, netbind unwires it in the pod
    // (`state: absent`), Multus detaches the network.
    let removed = monitor(&mon, "device_del ua-blue");
    let results = guest.wait_done(Duration::from_secs(90));
    let console = guest.console();
    let r = results.unwrap_or_else(|e| panic!("{e}\nmonitor: {removed}\n{console}"));
    drop(guest);
    dp.up_again(
        &pod,
        &hotplug_manifest(&format!(
            "\n      - {{name: blue, bridge: {{}}, macAddress: '{MAC_BLUE}', state: absent}}"
        )),
    );
    pod.remove_secondary("blue").expect("detach blue");
    t.lap("hot-unplug");

    assert_eq!(get(&r, "pod-address", &console), "10.0.2.2/24", "{console}");
    assert_ne!(
        get(&r, "hot-nic", &console),
        "",
        "no hot-plugged NIC\n{console}"
    );
    assert_eq!(
        get(&r, "blue-address", &console),
        want.to_string(),
        "{console}"
    );
    assert_eq!(get(&r, "blue-mtu", &console), POD_MTU.to_string());
    assert_eq!(get(&r, "blue-ping", &console), "ok", "{console}");
    assert!(
        inbound,
        "the peer cannot ping the hot-plugged NIC\n{console}"
    );
    assert_eq!(get(&r, "hot-gone", &console), "yes", "{removed}\n{console}");
    let log = dp.finish(&pod);
    assert!(log.contains("the plan changed: plugged blue\n"), "{log}");
    assert!(log.contains("the plan changed: unplugged blue\n"), "{log}");
    assert!(
        log.contains("default served by an earlier `netbind up`"),
        "{log}"
    );
    t.lap("SIGTERM, down, snapshot");
}
