//! Privileged: a pod built by Debian's real CNI plugins, its peers, and the clean-up.
//! Needs root, `ip` and containernetworking-plugins; fails (never skips) without them.

use std::net::IpAddr;

use netbind_testbed::{Netns, PodFixture, Secondary, require_privileges};

fn ping(from: &Netns, to: IpAddr) -> bool {
    from.try_exec(&[
        "busybox",
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        &to.to_string(),
    ])
    .expect("ping runs")
    .status
    .success()
}

/// Names in `ip netns list` (each line is `NAME` or `NAME (id: N)`).
fn host_namespaces() -> Vec<String> {
    String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .lines()
    .filter_map(|l| l.split_whitespace().next().map(str::to_string))
    .collect()
}

/// Names of the links in the machine's own namespace.
fn host_links() -> Vec<String> {
    String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap()
            .stdout,
    )
    .lines()
    .filter_map(|l| l.split(": ").nth(1))
    .map(|n| n.split('@').next().unwrap_or(n).to_string())
    .collect()
}

#[test]
fn the_pod_gets_dual_stack_eth0_from_real_cni_and_the_peer_reaches_it() {
    require_privileges(&[
        "ip",
        "busybox",
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
    ])
    .unwrap();
    let f = PodFixture::builder().mtu(1400).build().unwrap();

    let r = f.result();
    assert_eq!(r.sandbox_interface().unwrap().name, "eth0");
    assert_eq!(r.ipv4().unwrap().to_string(), "10.88.0.2/24");
    assert_eq!(r.ipv6().unwrap().to_string(), "fd00:88::2/64");
    assert_eq!(r.gateway(false).unwrap().to_string(), "10.88.0.1");
    assert_eq!(r.dns.nameservers[0].to_string(), "10.88.0.10");

    let eth0 = f
        .pod
        .sh("ip -o addr show dev eth0; ip -o link show dev eth0; ip route; ip -6 route")
        .unwrap();
    assert!(eth0.contains("inet 10.88.0.2/24"), "{eth0}");
    assert!(eth0.contains("inet6 fd00:88::2/64"), "{eth0}");
    assert!(eth0.contains("mtu 1400"), "{eth0}");
    assert!(eth0.contains("default via 10.88.0.1 dev eth0"), "{eth0}");
    assert!(eth0.contains("default via fd00:88::1 dev eth0"), "{eth0}");

    // The bridge and its gateway live in the fixture's node namespace, not on the host.
    let node = f
        .node
        .sh(&format!("ip -o addr show dev {}", f.bridge))
        .unwrap();
    assert!(node.contains("inet 10.88.0.1/24"), "{node}");
    let host_links_during = host_links();

    assert!(
        ping(&f.peer, f.pod_ip(false).unwrap()),
        "peer → pod over IPv4"
    );
    assert!(
        ping(&f.peer, f.pod_ip(true).unwrap()),
        "peer → pod over IPv6"
    );
    assert!(
        ping(&f.pod, f.peer_ip(false).unwrap()),
        "pod → peer over IPv4"
    );

    let names = f.namespace_names();
    let id = f.id.clone();
    drop(f);
    let left = host_namespaces();
    for n in &names {
        assert!(
            !left.contains(n),
            "namespace {n} outlived its fixture: {left:?}"
        );
    }
    // Every link the fixture names ends with its id; none may be on the host, before or after.
    for l in host_links_during.iter().chain(&host_links()) {
        assert!(!l.ends_with(&id), "fixture {id} put link {l} on the host");
    }
}

#[test]
fn multus_networks_attach_under_hashed_names_and_reach_their_own_peers_only() {
    require_privileges(&[
        "ip",
        "busybox",
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/macvlan",
    ])
    .unwrap();
    let f = PodFixture::builder()
        .secondary(Secondary::bridge("blue"))
        .secondary(Secondary::bridge("green").mtu(1450))
        .secondary(Secondary::macvlan("red"))
        .secondary(Secondary::bridge("plain").without_ipam())
        .build()
        .unwrap();

    let links = f.pod.links().unwrap();
    for net in ["blue", "green", "red", "plain"] {
        let s = f.secondary(net).unwrap();
        assert_eq!(s.pod_link, netbind_spec::naming::secondary_pod_link(net));
        assert!(links.contains(&s.pod_link), "{net}: {links:?}");
    }
    let green = f.secondary("green").unwrap();
    assert!(
        f.pod
            .sh(&format!("ip link show dev {}", green.pod_link))
            .unwrap()
            .contains("mtu 1450")
    );
    assert!(f.secondary("plain").unwrap().result().ips.is_empty());

    for net in ["blue", "green", "red"] {
        let s = f.secondary(net).unwrap();
        let pod_ip = s.result().ipv4().unwrap().addr();
        assert!(ping(s.peer().unwrap(), pod_ip), "{net} peer → pod {pod_ip}");
    }
    // Networks do not leak into each other: blue's peer has no route to red's subnet and
    // the cluster peer cannot reach the pod's blue address.
    let blue_ip = f.secondary("blue").unwrap().result().ipv4().unwrap().addr();
    assert!(
        !ping(&f.peer, blue_ip),
        "cluster peer must not reach the blue address"
    );

    let status: Vec<netbind_spec::multus::NetworkStatus> =
        serde_json::from_str(&f.network_status_json()).unwrap();
    assert_eq!(status.len(), 5);
    assert!(status[0].default && status[0].interface.as_deref() == Some("eth0"));
    assert_eq!(status[1].name, "default/blue");
    assert_eq!(
        status[1].interface.as_deref(),
        Some(f.secondary("blue").unwrap().pod_link.as_str())
    );
    assert_eq!(
        status[1].ips,
        vec![blue_ip.to_string(), "fd00:88:1::2".to_string()]
    );
}

#[test]
fn a_vlan_network_isolates_by_tag_or_fails_naming_the_missing_kernel_feature() {
    require_privileges(&["ip", "busybox", "bridge", "/usr/lib/cni/bridge"]).unwrap();
    let mut f = PodFixture::new().unwrap();
    if !netbind_testbed::kernel_supports_bridge_vlans() {
        let err = f
            .add_secondary(Secondary::bridge("tagged").vlan(42))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("CONFIG_BRIDGE_VLAN_FILTERING"), "{msg}");
        eprintln!(
            "NOTE: this kernel cannot filter bridge VLANs; VLAN networks are unavailable: {msg}"
        );
        return;
    }
    f.add_secondary(Secondary::bridge("tagged").vlan(42))
        .unwrap();
    f.add_secondary(Secondary::bridge("other").vlan(43))
        .unwrap();
    let tagged = f.secondary("tagged").unwrap();
    let vlans = f.node.sh("bridge vlan show").unwrap();
    assert!(vlans.contains("42"), "{vlans}");
    let pod_ip = tagged.result().ipv4().unwrap().addr();
    assert!(ping(tagged.peer().unwrap(), pod_ip));
}

#[test]
fn a_test_that_panics_inside_a_fixture_still_leaves_nothing_behind() {
    require_privileges(&["ip", "/usr/lib/cni/bridge", "/usr/lib/cni/macvlan"]).unwrap();
    let names = std::sync::Mutex::new(Vec::new());
    let outcome = std::panic::catch_unwind(|| {
        let f = PodFixture::builder()
            .secondary(Secondary::macvlan("red"))
            .build()
            .unwrap();
        let _sleeper = f.pod.spawn(&["sleep", "600"]).unwrap();
        std::mem::forget(f.peer.spawn(&["sleep", "600"]).unwrap()); // a leaked process too
        names.lock().unwrap().extend(f.namespace_names());
        panic!("a failing assertion");
    });
    assert!(outcome.is_err());
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 4);
    let left = host_namespaces();
    for n in &names {
        assert!(
            !left.contains(n),
            "namespace {n} outlived a panic: {left:?}"
        );
    }
}
