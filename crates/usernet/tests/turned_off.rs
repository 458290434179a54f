//! Protocols turned off (passt's `--no-tcp`, `--no-udp`, `--no-icmp`): the guest's
//! packets are dropped and counted, nothing reaches a socket, no port is forwarded.

mod common;

use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use common::*;
use netbind_usernet::{EngineConfig, PortSpec};

/// A loopback port free right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let u = UdpSocket::bind(l.local_addr().unwrap());
    let port = l.local_addr().unwrap().port();
    drop((l, u));
    port
}

/// Forwards of one port on the loopback, TCP and UDP.
fn forwarding(cfg: EngineConfig, port: u16) -> EngineConfig {
    let spec = PortSpec::parse(&format!("127.0.0.1/{port}")).unwrap();
    EngineConfig {
        guest6: None,
        tcp_ports: vec![spec.clone()],
        udp_ports: vec![spec],
        ..cfg
    }
}

#[test]
fn no_tcp_drops_the_guests_segments_and_forwards_no_tcp_port() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let port = server.local_addr().unwrap().port();
    let cfg = EngineConfig {
        relay_tcp: false,
        ..config()
    };
    let mut h = Harness::new(forwarding(cfg, free_port()));
    let listening: Vec<_> = h.engine.listening().collect();
    assert!(
        listening.iter().all(|&(tcp, _, _)| !tcp) && !listening.is_empty(),
        "UDP forwarded, TCP not: {listening:?}"
    );
    h.send(&tcp_frame(
        guest4(40000),
        gw4(port),
        1000,
        0,
        SYN,
        65535,
        &[2, 4, 5, 180],
        &[],
    ));
    h.expect_none("an answer to the SYN", Duration::from_millis(200), |_| true);
    assert!(server.accept().is_err(), "nothing reached the peer");
    let c = h.engine.counters();
    assert_eq!((c.rx_disabled, c.tcp_opened, c.rst_sent), (1, 0, 0));
    assert_eq!(h.engine.flow_count(), 0);
}

#[test]
fn no_udp_drops_the_guests_datagrams_and_forwards_no_udp_port_but_dhcp_still_answers() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let port = server.local_addr().unwrap().port();
    let cfg = EngineConfig {
        relay_udp: false,
        ..config()
    };
    let mut h = Harness::new(forwarding(cfg, free_port()));
    let listening: Vec<_> = h.engine.listening().collect();
    assert!(
        listening.iter().all(|&(tcp, _, _)| tcp) && !listening.is_empty(),
        "TCP forwarded, UDP not: {listening:?}"
    );
    h.send(&udp_frame(guest4(5000), gw4(port), b"hello"));
    h.expect_none("an answer", Duration::from_millis(200), |_| true);
    assert!(
        server.recv_from(&mut [0; 64]).is_err(),
        "nothing reached the peer"
    );
    let c = h.engine.counters();
    assert_eq!((c.rx_disabled, c.udp_opened), (1, 0));
    assert_eq!(h.engine.flow_count(), 0);
    h.send(&dhcp_discover());
    assert_eq!(h.take().len(), 1, "DHCP is served, not relayed");
}

#[test]
fn no_icmp_drops_the_guests_echo_requests() {
    let mut h = Harness::new(EngineConfig {
        relay_icmp: false,
        raw_ping: true,
        ..config()
    });
    let echo = [8, 0, 0, 0, 0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g'];
    h.send(&ip_frame(GUEST4.into(), GW4.into(), 1, &echo, 64));
    h.expect_none("an echo reply", Duration::from_millis(200), |_| true);
    let c = h.engine.counters();
    assert_eq!((c.rx_disabled, c.ping_opened, c.ping_denied), (1, 0, 0));
    assert_eq!(h.engine.flow_count(), 0);
}
