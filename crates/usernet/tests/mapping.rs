//! Addresses that stand for the namespace (passt's `--map-host-loopback`,
//! `--map-guest-addr`, `--dns-forward`): where the guest's flows to them go, and how
//! the namespace's inbound flows appear (privileged: a namespace of its own, with only
//! the addresses the test gives it).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;
use netbind_testbed::Netns;
use netbind_usernet::frame::{PROTO_TCP, PROTO_UDP};
use netbind_usernet::{EngineConfig, PortSpec};

const ALIAS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 99);

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (a namespace)"
    );
}

/// Runs `f` on a thread inside a new namespace set up by `script`, with an IPv4-only
/// engine configured by `cfg`.
fn in_namespace<T: Send + 'static>(
    tag: &str,
    script: &str,
    cfg: impl FnOnce(EngineConfig) -> EngineConfig + Send + 'static,
    f: impl FnOnce(&mut Harness) -> T + Send + 'static,
) -> T {
    let ns = Netns::new(tag).expect("namespace");
    ns.sh(script).unwrap();
    let path = ns.path();
    std::thread::spawn(move || {
        netbind_testbed::enter(path).expect("enter the namespace");
        let base = EngineConfig {
            guest6: None,
            ..config()
        };
        f(&mut Harness::new(cfg(base)))
    })
    .join()
    .expect("the test thread")
}

/// A datagram from the guest to `to`: what the peer socket `peer` saw it come from,
/// and the reply (echoed) as the guest got it.
fn udp_round_trip(h: &mut Harness, peer: &UdpSocket, to: SocketAddr) -> (SocketAddr, Got) {
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    h.send(&udp_frame(guest4(5000), to, b"who is there?"));
    let mut buf = [0; 64];
    let (n, from) = peer
        .recv_from(&mut buf)
        .expect("the datagram reached the peer");
    peer.send_to(&buf[..n], from).unwrap();
    let reply = h.expect("the reply", |g| g.proto == PROTO_UDP);
    (from, reply)
}

/// The SYN an inbound connection to the forwarded `port` sends to the guest.
fn inbound_syn(h: &mut Harness, to: &str) -> Got {
    let to: SocketAddr = to.parse().unwrap();
    let _c = TcpStream::connect_timeout(&to, Duration::from_secs(2)).expect("the forward");
    h.expect("a SYN to the guest", |g| {
        g.proto == PROTO_TCP && g.tcp().flags == SYN
    })
}

#[test]
fn map_host_loopback_leads_that_address_to_the_loopback_instead_of_the_gateway() {
    need_root();
    let (reply, unmapped, syn) = in_namespace(
        "maplo",
        "ip link set lo up",
        |cfg| EngineConfig {
            map_host_loopback: vec![IpAddr::V4(ALIAS)],
            tcp_ports: vec![PortSpec::parse("127.0.0.1/7010").unwrap()],
            ..cfg
        },
        |h| {
            let peer = UdpSocket::bind("127.0.0.1:7011").unwrap();
            let (_, reply) = udp_round_trip(h, &peer, SocketAddr::new(ALIAS.into(), 7011));
            h.send(&udp_frame(guest4(5001), gw4(7011), b"to the gateway"));
            peer.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let unmapped = peer.recv_from(&mut [0; 64]).is_err();
            (reply, unmapped, inbound_syn(h, "127.0.0.1:7010"))
        },
    );
    assert_eq!(
        reply.src,
        IpAddr::V4(ALIAS),
        "the reply comes from the address"
    );
    assert!(unmapped, "the gateway no longer leads to the loopback");
    assert_eq!(
        syn.src,
        IpAddr::V4(ALIAS),
        "the loopback appears as the address"
    );
}

/// The guest has the namespace's own address (10.0.2.15, as passt gives it), so it
/// cannot reach that address itself: another address stands for it.
#[test]
fn map_guest_addr_leads_that_address_to_the_namespaces_own() {
    need_root();
    const OWN: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 77);
    let (from, reply, syn) = in_namespace(
        "mapown",
        "ip link set lo up; ip addr add 10.0.2.15/24 dev lo",
        |cfg| EngineConfig {
            map_guest_addr: vec![IpAddr::V4(OWN)],
            tcp_ports: vec![PortSpec::parse("10.0.2.15/7012").unwrap()],
            ..cfg
        },
        |h| {
            let peer = UdpSocket::bind("10.0.2.15:7013").unwrap();
            let (from, reply) = udp_round_trip(h, &peer, SocketAddr::new(OWN.into(), 7013));
            (from, reply, inbound_syn(h, "10.0.2.15:7012"))
        },
    );
    assert_eq!(from.ip(), IpAddr::V4(GUEST4), "the namespace's own address");
    assert_eq!(
        reply.src,
        IpAddr::V4(OWN),
        "the reply comes from the address"
    );
    assert_eq!(
        syn.src,
        IpAddr::V4(OWN),
        "the namespace's own address appears as it"
    );
}

#[test]
fn dns_forward_sends_the_guests_queries_to_that_address_upstream() {
    need_root();
    const FORWARD: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 53);
    let reply = in_namespace(
        "dnsfwd",
        "ip link set lo up",
        |cfg| EngineConfig {
            dns_forward: vec![IpAddr::V4(FORWARD)],
            dns_upstream: vec!["127.0.0.1:53".parse().unwrap()],
            ..cfg
        },
        |h| {
            let upstream = UdpSocket::bind("127.0.0.1:53").unwrap();
            udp_round_trip(h, &upstream, SocketAddr::new(FORWARD.into(), 53)).1
        },
    );
    assert_eq!(reply.src, IpAddr::V4(FORWARD), "the answer comes from it");
    assert_eq!(reply.udp_payload(), b"who is there?");
}
