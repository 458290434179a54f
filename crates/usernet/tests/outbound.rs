//! Where the guest's flows leave from (passt's `--outbound`, `--outbound-if4`):
//! privileged, a namespace of its own.

mod common;

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use common::*;
use netbind_testbed::Netns;
use netbind_usernet::EngineConfig;
use netbind_usernet::config::Outbound;
use netbind_usernet::frame::PROTO_TCP;

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (a namespace)"
    );
}

/// Runs `f` on a thread inside `ns` with an IPv4-only engine whose IPv4 flows leave as
/// `out` says.
fn with_engine<T: Send + 'static>(
    ns: &Netns,
    out: Outbound,
    f: impl FnOnce(&mut Harness) -> T + Send + 'static,
) -> T {
    let path = ns.path();
    std::thread::spawn(move || {
        netbind_testbed::enter(path).expect("enter the namespace");
        f(&mut Harness::new(EngineConfig {
            guest6: None,
            outbound4: out,
            ..config()
        }))
    })
    .join()
    .expect("the test thread")
}

/// The namespace has 10.0.9.1 and 10.0.9.2 (on `lo`); a peer on 10.0.9.1 would see the guest's
/// flows come from 10.0.9.1 itself (the kernel's choice for a local destination), but
/// with the outbound address they come from 10.0.9.2, TCP and UDP alike.
#[test]
fn outbound_sends_the_guests_flows_from_that_address() {
    need_root();
    let ns = Netns::new("outaddr").expect("namespace");
    ns.sh("ip link set lo up; ip addr add 10.0.9.1/24 dev lo; ip addr add 10.0.9.2/24 dev lo")
        .unwrap();
    let out = Outbound {
        addr: Some("10.0.9.2".parse().unwrap()),
        dev: None,
    };
    let (udp_from, tcp_from) = with_engine(&ns, out, |h| {
        let udp = UdpSocket::bind("10.0.9.1:7001").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let tcp = TcpListener::bind("10.0.9.1:7002").unwrap();
        let peer = |port| SocketAddr::new("10.0.9.1".parse().unwrap(), port);
        h.send(&udp_frame(guest4(5000), peer(7001), b"from where?"));
        let (_, udp_from) = udp.recv_from(&mut [0; 64]).expect("the datagram");
        connect(h, guest4(40000), peer(7002), 1460, None);
        let (_, tcp_from) = tcp.accept().expect("the connection");
        (udp_from.ip(), tcp_from.ip())
    });
    let want: IpAddr = "10.0.9.2".parse().unwrap();
    assert_eq!((udp_from, tcp_from), (want, want));
}

/// Two links (veths, their next hops' MACs known) with a route each to 10.0.6.0/24,
/// d1's preferred: the guest's flows there leave through d2 with `--outbound-if4 d2`.
#[test]
fn outbound_if_sends_the_guests_flows_out_of_that_link() {
    need_root();
    let ns = Netns::new("outdev").expect("namespace");
    ns.sh(
        // No IPv6 on these links: its autoconfiguration (RS, MLD, DAD) would add packets
        // to the counts this test compares.
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; \
         ip link set lo up; for d in d1 d2; do ip link add $d type veth peer name ${d}p; \
         ip link set $d up; ip link set ${d}p up; done; \
         ip addr add 10.0.8.1/24 dev d1; ip addr add 10.0.7.1/24 dev d2; \
         ip neigh add 10.0.8.2 lladdr 02:00:00:00:08:02 dev d1 nud permanent; \
         ip neigh add 10.0.7.2 lladdr 02:00:00:00:07:02 dev d2 nud permanent; \
         ip route add 10.0.6.0/24 via 10.0.8.2 metric 10; \
         ip route add 10.0.6.0/24 via 10.0.7.2 metric 20",
    )
    .unwrap();
    let sent = |dev: &str| -> u64 {
        let n = ns
            .sh(&format!("cat /sys/class/net/{dev}/statistics/tx_packets"))
            .unwrap();
        n.trim().parse().unwrap()
    };
    let before = (sent("d1"), sent("d2"));
    let out = Outbound {
        addr: None,
        dev: Some("d2".into()),
    };
    let peer: SocketAddr = "10.0.6.9:7003".parse().unwrap();
    with_engine(&ns, out, move |h| {
        for n in 0..5u8 {
            h.send(&udp_frame(guest4(5000 + u16::from(n)), peer, b"which way?"));
        }
        h.send(&tcp_frame(guest4(40001), peer, 1, 0, SYN, 65535, &[], &[]));
        h.pump(Duration::from_millis(100));
        let c = h.engine.counters();
        assert_eq!((c.udp_opened, c.tcp_opened), (5, 1));
        assert!(
            h.seen
                .iter()
                .all(|g| g.proto != PROTO_TCP || g.tcp().flags & RST == 0)
        );
    });
    let after = (sent("d1"), sent("d2"));
    assert_eq!(after.0, before.0, "nothing through d1");
    assert!(
        after.1 >= before.1 + 6,
        "the datagrams and the SYN through d2: {before:?} → {after:?}"
    );
}

/// A mistake (an address the namespace does not have, a link it does not have) is an
/// error at start, naming it.
#[test]
fn an_outbound_address_or_link_the_namespace_lacks_is_an_error_at_start() {
    need_root();
    let ns = Netns::new("outbad").expect("namespace");
    let path = ns.path();
    let errors = std::thread::spawn(move || {
        netbind_testbed::enter(path).expect("enter the namespace");
        let start = |out: Outbound| {
            let poll = mio::Poll::new().unwrap();
            let cfg = EngineConfig {
                outbound4: out,
                ..config()
            };
            let registry = poll.registry().try_clone().unwrap();
            netbind_usernet::Engine::new(cfg, netbind_usernet::MemTx::default(), registry)
                .err()
                .map(|e| e.to_string())
        };
        [
            start(Outbound {
                addr: Some("10.0.9.77".parse().unwrap()),
                dev: None,
            }),
            start(Outbound {
                addr: None,
                dev: Some("nosuch0".into()),
            }),
        ]
    })
    .join()
    .unwrap();
    assert!(
        errors[0]
            .as_deref()
            .is_some_and(|e| e.contains("10.0.9.77")),
        "{errors:?}"
    );
    assert!(
        errors[1].as_deref().is_some_and(|e| e.contains("nosuch0")),
        "{errors:?}"
    );
}
