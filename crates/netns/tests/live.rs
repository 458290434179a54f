//! Privileged: reads the pod view of a namespace wired by the real CNI bridge plugin and
//! compares it with what the plugin reported. Needs root and containernetworking-plugins;
//! fails (never skips) without them.

use ipnet::IpNet;
use netbind_netns::read_pod_view;
use netbind_testbed::PodFixture;

/// Not the usual 1500, so that a test sees where an MTU comes from.
const MTU: u32 = 1400;

#[test]
fn live_view_matches_the_cni_result() {
    let pod = PodFixture::builder()
        .mtu(MTU)
        .resolv_conf("nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\n")
        .build()
        .expect("CNI pod");
    let netns = pod.pod.name();
    let view = read_pod_view(netns).expect("read the pod view");

    assert_eq!(view.source, format!("netns:{netns}"));
    let names: Vec<_> = view.links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["eth0"], "only eth0, no loopback");
    let eth0 = &view.links[0];
    assert_eq!(
        eth0.mac.as_deref(),
        Some(pod.pod_mac().expect("eth0 mac").as_str())
    );
    assert_eq!(eth0.mtu, MTU);
    assert_eq!(eth0.kind.as_deref(), Some("veth"));

    let expected: Vec<IpNet> = pod.pod_addresses();
    assert_eq!(
        expected.len(),
        2,
        "the plugin gave one IPv4 and one IPv6 address: {:?}",
        pod.result()
    );
    let mut got = eth0.addresses.clone();
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want, "addresses without link-local");

    for ip in pod.result().sandbox_ips() {
        let gateway = ip.gateway.expect("gateway");
        let default: IpNet = if ip.address.addr().is_ipv6() {
            "::/0"
        } else {
            "0.0.0.0/0"
        }
        .parse()
        .unwrap();
        let route = view
            .routes
            .iter()
            .find(|r| r.destination == default)
            .unwrap_or_else(|| panic!("no default route {default} in {:?}", view.routes));
        assert_eq!(route.gateway, Some(gateway));
        assert_eq!(route.dev, "eth0");
    }

    assert_eq!(
        view.dns.nameservers,
        vec!["10.96.0.10".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        view.dns.search,
        ["default.svc.cluster.local", "svc.cluster.local"]
    );
}

#[test]
fn reading_changes_nothing_in_the_namespace() {
    let pod = PodFixture::builder().mtu(MTU).build().expect("CNI pod");
    // Raw `ip` output, compared as is.
    let snapshot = || {
        let out = pod
            .pod
            .exec(&["ip", "-d", "addr", "show"])
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let before = snapshot();
    let first = read_pod_view(pod.pod.name()).expect("first read");
    let second = read_pod_view(pod.pod.name()).expect("second read");
    assert_eq!(first, second, "two reads give the same view");
    assert_eq!(before, snapshot());
    assert!(
        first.dns.nameservers.is_empty(),
        "no /etc/netns/<name>/resolv.conf means no DNS"
    );
}

#[test]
fn the_callers_namespace_does_not_move() {
    let pod = PodFixture::builder().mtu(MTU).build().expect("CNI pod");
    let own = std::fs::read_link("/proc/thread-self/ns/net").expect("own netns");
    read_pod_view(pod.pod.name()).expect("read");
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").expect("own netns"),
        own
    );
}
