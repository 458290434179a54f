//! UDP flows through the engine to real sockets on the loopback.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use netbind_usernet::frame::PROTO_UDP;

fn echo_once(s: &UdpSocket) {
    let mut buf = [0u8; 2048];
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (n, peer) = s.recv_from(&mut buf).unwrap();
    s.send_to(&buf[..n], peer).unwrap();
}

#[test]
fn datagram_to_the_gateway_reaches_the_loopback_and_the_reply_comes_back() {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    let mut h = Harness::new(config());
    h.send(&udp_frame(guest4(5000), gw4(port), b"echo me"));
    echo_once(&s);
    let r = h.expect("reply", |g| g.proto == PROTO_UDP);
    assert_eq!((r.src, r.dst), (IpAddr::V4(GW4), IpAddr::V4(GUEST4)));
    assert_eq!(&r.l4[0..2], &port.to_be_bytes());
    assert_eq!(&r.l4[2..4], &5000u16.to_be_bytes());
    assert_eq!(r.udp_payload(), b"echo me");
    assert_eq!(h.engine.flow_count(), 1);
}

#[test]
fn ipv6_datagram_to_the_gateway_reaches_the_ipv6_loopback() {
    let s = UdpSocket::bind("[::1]:0").unwrap();
    let port = s.local_addr().unwrap().port();
    let mut h = Harness::new(config());
    h.send(&udp_frame(guest6(5001), gw6(port), b"six"));
    echo_once(&s);
    let r = h.expect("reply", |g| g.proto == PROTO_UDP);
    assert_eq!(r.udp_payload(), b"six");
}

#[test]
fn dns_to_the_advertised_resolver_goes_upstream() {
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = config();
    cfg.dns_upstream = vec![upstream.local_addr().unwrap()];
    let resolver = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3)), 53);
    let mut h = Harness::new(cfg);
    h.send(&udp_frame(guest4(5002), resolver, b"query"));
    echo_once(&upstream);
    let r = h.expect("answer", |g| g.proto == PROTO_UDP);
    assert_eq!(
        r.src,
        resolver.ip(),
        "the answer comes from the resolver the guest asked"
    );
    assert_eq!(r.udp_payload(), b"query");
}

#[test]
fn closed_port_becomes_icmp_port_unreachable() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut h = Harness::new(config());
    h.send(&udp_frame(guest4(5003), gw4(port), b"anyone?"));
    h.pump(Duration::from_millis(50));
    h.send(&udp_frame(guest4(5003), gw4(port), b"anyone?"));
    let icmp = h.expect("port unreachable", |g| g.proto == 1);
    assert_eq!((icmp.l4[0], icmp.l4[1]), (3, 3));
    assert_eq!(
        icmp.src,
        std::net::IpAddr::V4(GW4),
        "from the address the guest used, not the loopback the flow went to"
    );
    assert_eq!(
        &icmp.l4[8 + 16..8 + 20],
        &GW4.octets(),
        "quotes the guest's datagram"
    );
}

#[test]
fn idle_flows_expire() {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    let mut h = Harness::new(config());
    h.send(&udp_frame(guest4(5004), gw4(port), b"x"));
    assert_eq!(h.engine.flow_count(), 1);
    h.timers_at(Duration::from_secs(60));
    assert_eq!(h.engine.flow_count(), 1);
    // The next timer is no later than the flow's end (the loop sleeps until then).
    let due = h.engine.next_timer().expect("the flow's idle end");
    assert!(due <= std::time::Instant::now() + Duration::from_secs(180));
    h.timers_at(Duration::from_secs(181));
    assert_eq!(h.engine.flow_count(), 0);
}

#[test]
fn forwarded_port_delivers_datagrams_and_replies_leave_from_it() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config();
    cfg.guest6 = None;
    cfg.udp_ports = vec![netbind_usernet::PortSpec::parse(&port.to_string()).unwrap()];
    let mut h = Harness::new(cfg);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"in", ("127.0.0.1", port)).unwrap();
    let d = h.expect("datagram to the guest", |g| g.proto == PROTO_UDP);
    assert_eq!((d.src, d.dst), (IpAddr::V4(GW4), IpAddr::V4(GUEST4)));
    assert_eq!(d.udp_payload(), b"in");
    let from_port = u16::from_be_bytes([d.l4[0], d.l4[1]]);
    h.send(&udp_frame(guest4(port), gw4(from_port), b"out"));
    let mut buf = [0u8; 8];
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (n, src) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"out");
    assert_eq!(src.port(), port);
}
