//! Forwarding every port (`-t all`, exclusions alone: KubeVirt's `passtBinding` without
//! `ports`) takes what is free, as passt does (privileged: a namespace of its own).

mod common;

use std::net::TcpListener;

use common::*;
use netbind_testbed::Netns;
use netbind_usernet::PortSpec;

/// In a namespace whose ephemeral range is 32768–60999: every port from 61000 up is
/// forwarded, except one another socket holds — the engine starts anyway and leaves
/// that one (and the ephemeral range) alone.
#[test]
fn every_port_means_the_free_ones_outside_the_ephemeral_range() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (a namespace)"
    );
    let ns = Netns::new("fwdall").expect("namespace");
    ns.exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=32768 60999"])
        .expect("ephemeral range");
    let path = ns.path();
    let listening = std::thread::spawn(move || {
        netbind_testbed::enter(path).expect("enter the namespace");
        let _taken = TcpListener::bind("0.0.0.0:61000").expect("a port someone else holds");
        let mut cfg = config();
        cfg.guest6 = None;
        cfg.tcp_ports = vec![PortSpec::parse("~1-40000").unwrap()];
        let h = Harness::new(cfg);
        h.engine
            .listening()
            .filter(|&(tcp, _, v6)| tcp && !v6)
            .map(|(_, port, _)| port)
            .collect::<Vec<u16>>()
    })
    .join()
    .expect("the engine started although one port was taken");
    assert!(!listening.contains(&61000), "the port another socket holds");
    assert!(
        !listening.iter().any(|p| (32768..=60999).contains(p)),
        "the ephemeral range"
    );
    assert_eq!(
        listening,
        (61001..=65535).collect::<Vec<u16>>(),
        "every other port"
    );
}
