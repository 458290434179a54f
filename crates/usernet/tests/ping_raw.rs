//! Pings where ping sockets are denied (`net.ipv4.ping_group_range = 1 0`, the kernel
//! default): an engine told to (`raw_ping`, with CAP_NET_RAW) answers them through its
//! raw ICMP sockets; one without them counts each as denied. Privileged: a namespace of
//! its own.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use netbind_testbed::Netns;
use netbind_usernet::config::ENGINE_LINK_LOCAL;
use netbind_usernet::frame::{PROTO_ICMP, PROTO_ICMPV6};

fn echo_request(v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    m
}

/// A namespace where nobody may open ping sockets; `f` runs on a thread inside it.
fn denied_ns<T: Send + 'static>(tag: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (a namespace, raw sockets)"
    );
    let ns = Netns::new(tag).expect("namespace");
    ns.exec(&["sysctl", "-qw", "net.ipv4.ping_group_range=1 0"])
        .expect("ping_group_range");
    let path = ns.path();
    std::thread::spawn(move || {
        netbind_testbed::enter(path).expect("enter the namespace");
        f()
    })
    .join()
    .expect("the test thread")
}

fn ping(h: &mut Harness, from: IpAddr, to: IpAddr, id: u16, seq: u16) {
    let v6 = to.is_ipv6();
    let proto = if v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
    h.send(&ip_frame(
        from,
        to,
        proto,
        &echo_request(v6, id, seq, b"raw ping"),
        64,
    ));
}

#[test]
fn an_engine_with_raw_sockets_answers_pings_of_both_families() {
    denied_ns("rawping", || {
        let mut cfg = config();
        cfg.raw_ping = true;
        let mut h = Harness::new(cfg);
        for (from, to) in [
            (IpAddr::V4(GUEST4), IpAddr::V4(GW4)),
            (IpAddr::V6(GUEST6), IpAddr::V6(ENGINE_LINK_LOCAL)),
        ] {
            for seq in 1..=2 {
                ping(&mut h, from, to, 0x4242, seq);
                let reply = h.expect("an echo reply", |g| {
                    g.src == to
                        && g.dst == from
                        && g.l4.len() >= 8
                        && g.l4[0] == if to.is_ipv6() { 129 } else { 0 }
                });
                assert_eq!(
                    &reply.l4[4..8],
                    &[0x42, 0x42, 0, seq as u8],
                    "identifier and sequence"
                );
                assert_eq!(&reply.l4[8..], b"raw ping");
            }
        }
        assert_eq!(h.engine.counters().ping_denied, 0);
        assert_eq!(
            h.engine.counters().ping_opened,
            2,
            "one flow per destination"
        );
    });
}

/// Two guest flows sending with one identifier to one destination (here from the
/// guest's two addresses) each get their own replies.
#[test]
fn flows_sharing_an_identifier_get_their_own_replies() {
    denied_ns("rawsame", || {
        let mut cfg = config();
        cfg.raw_ping = true;
        let mut h = Harness::new(cfg);
        let link_local: IpAddr = "fe80::15".parse().unwrap();
        let to = IpAddr::V6(ENGINE_LINK_LOCAL);
        let from = [IpAddr::V6(GUEST6), link_local];
        for f in from {
            ping(&mut h, f, to, 7, 1);
        }
        let mut got = Vec::new();
        for _ in from {
            let reply = h.expect("an echo reply", |g| {
                g.proto == PROTO_ICMPV6 && g.l4[0] == 129 && !got.contains(&g.dst)
            });
            assert_eq!(&reply.l4[4..6], &[0, 7], "with the guest's identifier");
            got.push(reply.dst);
        }
        got.sort();
        let mut want = from.to_vec();
        want.sort();
        assert_eq!(got, want, "each flow got its reply");
    });
}

#[test]
fn an_engine_without_raw_sockets_counts_each_ping_denied() {
    denied_ns("nopings", || {
        let mut h = Harness::new(config());
        ping(&mut h, IpAddr::V4(GUEST4), IpAddr::V4(GW4), 1, 1);
        h.expect_none("an echo reply", Duration::from_millis(200), |g| {
            g.proto == PROTO_ICMP
        });
        assert_eq!(h.engine.counters().ping_denied, 1);
    });
}
