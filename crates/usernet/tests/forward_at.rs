//! A port spec listens only where it asks: its address, its device, and sends what
//! arrives to its guest port (privileged: namespaces of their own).

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use netbind_testbed::Netns;
use netbind_usernet::frame::PROTO_TCP;
use netbind_usernet::{Engine, EngineConfig, MemTx, PortSpec};

const PORT: u16 = 2201;
const GUEST_PORT: u16 = 22;

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (a namespace)"
    );
}

fn connect(to: &str) -> std::io::Result<TcpStream> {
    let to: SocketAddr = to.parse().unwrap();
    TcpStream::connect_timeout(&to, Duration::from_secs(2))
}

/// Runs `f` on a thread inside `ns`, with an IPv4-only engine forwarding `specs`.
fn with_engine<T: Send + 'static>(
    ns: &Netns,
    specs: &[&str],
    f: impl FnOnce(&mut Harness) -> T + Send + 'static,
) -> T {
    let path = ns.path();
    let specs: Vec<PortSpec> = specs.iter().map(|s| PortSpec::parse(s).unwrap()).collect();
    std::thread::spawn(move || {
        netbind_testbed::enter(path).expect("enter the namespace");
        let mut cfg = config();
        cfg.guest6 = None;
        cfg.tcp_ports = specs;
        f(&mut Harness::new(cfg))
    })
    .join()
    .expect("the test thread")
}

fn syn_to_guest(h: &mut Harness) -> u16 {
    h.expect("a SYN to the guest", |g| {
        g.proto == PROTO_TCP && g.tcp().flags == 0x02
    })
    .tcp()
    .dst_port
}

#[test]
fn a_spec_with_an_address_listens_on_that_address_only() {
    need_root();
    let ns = Netns::new("fwdaddr").expect("namespace");
    with_engine(&ns, &[&format!("127.0.0.1/{PORT}")], |h| {
        let refused = connect(&format!("127.0.0.2:{PORT}")).map(|_| ());
        assert_eq!(
            refused.map_err(|e| e.kind()),
            Err(ErrorKind::ConnectionRefused),
            "another address of the namespace"
        );
        let _c = connect(&format!("127.0.0.1:{PORT}")).expect("the spec's address");
        assert_eq!(syn_to_guest(h), PORT);
    });
}

#[test]
fn a_mapped_port_reaches_the_guest_on_its_target_port() {
    need_root();
    let ns = Netns::new("fwdmap").expect("namespace");
    with_engine(&ns, &[&format!("{PORT}:{GUEST_PORT}")], |h| {
        let _c = connect(&format!("127.0.0.1:{PORT}")).expect("the forwarded port");
        assert_eq!(syn_to_guest(h), GUEST_PORT);
        let listening: Vec<u16> = h.engine.listening().map(|(_, p, _)| p).collect();
        assert_eq!(listening, vec![PORT], "the guest port is not listened on");
    });
}

/// `%DEVICE/PORT` takes connections that arrive on that device: a peer namespace
/// joined by two veths reaches the guest through the spec's one and is refused through
/// the other.
#[test]
fn a_spec_with_a_device_takes_connections_arriving_on_it_only() {
    need_root();
    let ns = Netns::new("fwddev").expect("namespace");
    let peer = Netns::new("fwdpeer").expect("peer namespace");
    for (n, local, remote) in [(0, "10.77.0.1", "10.77.0.2"), (2, "10.78.0.1", "10.78.0.2")] {
        let (ours, theirs) = (format!("fwd{n}"), format!("fwd{}", n + 1));
        ns.sh(&format!(
            "ip link add {ours} type veth peer name {theirs} netns {peer} && \
             ip addr add {local}/24 dev {ours} && ip link set {ours} up",
            peer = peer.name()
        ))
        .expect("a veth into the peer namespace");
        peer.sh(&format!(
            "ip addr add {remote}/24 dev {theirs} && ip link set {theirs} up"
        ))
        .expect("the peer's end");
    }
    let peer_path = peer.path();
    with_engine(&ns, &[&format!("%fwd0/{PORT}")], move |h| {
        let from_peer = std::thread::spawn(move || {
            netbind_testbed::enter(peer_path).expect("enter the peer namespace");
            let other = connect(&format!("10.78.0.1:{PORT}")).map(|_| ());
            let ours = connect(&format!("10.77.0.1:{PORT}"));
            (other.map_err(|e| e.kind()), ours)
        });
        assert_eq!(syn_to_guest(h), PORT);
        let (other, ours) = from_peer.join().unwrap();
        assert_eq!(
            other,
            Err(ErrorKind::ConnectionRefused),
            "a connection arriving on another device"
        );
        ours.expect("a connection arriving on the spec's device");
    });
}

#[test]
fn an_address_the_guest_has_no_family_for_is_an_error_naming_it() {
    let mut cfg = config();
    cfg.guest6 = None;
    cfg.tcp_ports = vec![PortSpec::parse("::1/2202").unwrap()];
    let poll = mio::Poll::new().unwrap();
    let err = Engine::new(cfg, MemTx::default(), poll.registry().try_clone().unwrap())
        .err()
        .expect("no IPv6 guest address");
    assert_eq!(
        err.to_string(),
        "TCP port spec for ::1: the guest has no IPv6 address to forward to"
    );
}

#[test]
fn an_address_not_in_the_namespace_is_an_error_naming_port_and_address() {
    need_root();
    let ns = Netns::new("fwdnone").expect("namespace");
    let path = ns.path();
    let err = std::thread::spawn(move || {
        netbind_testbed::enter(path).expect("enter the namespace");
        let mut cfg = config();
        cfg.guest6 = None;
        cfg.tcp_ports = vec![PortSpec::parse("192.0.2.1%lo/2203").unwrap()];
        let poll = mio::Poll::new().unwrap();
        Engine::new(cfg, MemTx::default(), poll.registry().try_clone().unwrap())
            .err()
            .map(|e| e.to_string())
    })
    .join()
    .unwrap();
    assert_eq!(
        err.as_deref(),
        Some("cannot listen on TCP port 2203 (192.0.2.1%lo)")
    );
}

/// `--freebind`: a spec's address need not be the namespace's yet (without it, the
/// engine refuses to start: see above); once it is, its connections reach the guest.
#[test]
fn freebind_listens_on_an_address_the_namespace_gets_only_later() {
    need_root();
    let ns = Netns::new("fwdfree").expect("namespace");
    let spec = PortSpec::parse(&format!("10.66.0.1/{PORT}")).unwrap();
    let path = ns.path();
    let name = ns.name().to_string();
    let guest_port = std::thread::spawn(move || {
        netbind_testbed::enter(path).expect("enter the namespace");
        let mut h = Harness::new(EngineConfig {
            guest6: None,
            tcp_ports: vec![spec],
            freebind: true,
            ..config()
        });
        netbind_testbed::run_ok(&[
            "ip",
            "-n",
            &name,
            "addr",
            "add",
            "10.66.0.1/32",
            "dev",
            "lo",
        ]);
        netbind_testbed::run_ok(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        let _c = connect(&format!("10.66.0.1:{PORT}")).expect("the address, now the namespace's");
        syn_to_guest(&mut h)
    })
    .join()
    .expect("the engine started with freebind");
    assert_eq!(guest_port, PORT);
}
