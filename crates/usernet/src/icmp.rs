//! ICMP and ICMPv6 echo: the guest's pings through unprivileged ping sockets.
//!
//! How it works: an echo request from the guest finds or opens a *ping flow* keyed by
//! (guest address, echo identifier, destination): a `SOCK_DGRAM/IPPROTO_ICMP(V6)` socket
//! connected to the destination (the loopback for a gateway address). The kernel puts
//! its own identifier in what we send and checksums it; a reply read from the socket gets
//! the guest's identifier back and a fresh checksum, and is framed from the destination to
//! the guest. Ping flows close after `icmp_idle` without requests. Ping sockets need the
//! process's group in `net.ipv4.ping_group_range` (KubeVirt sets it for passtBinding).
//! Where they are denied, an engine started with `CAP_NET_RAW` sends through two shared
//! raw sockets instead (`raw_ping`, see `ping_raw.rs`); without either, requests are
//! dropped and counted (`ping denied`). With echo turned off (`relay_icmp`, passt's
//! `--no-icmp`) requests are dropped and counted (`rx_disabled`) and no raw socket is
//! opened.
//!
//! ICMP errors the network sent for a ping flow (time exceeded, unreachable; see
//! `errqueue.rs`) are relayed to the guest from the router that sent them
//! (`icmp_error.rs`). Ping flows send with the hop limit of the guest's request, so
//! `traceroute -I` works too. Other ICMP messages from the guest, and NDP (`ndp.rs`), are
//! told apart by the dispatcher (`engine.rs`).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use mio::Interest;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::ctx::Ctx;
use crate::errqueue::{self, DEFAULT_HOP};
use crate::flow::{Flow, FlowKey, PingFlow, PingVia};
use crate::frame::{GuestTx, IpPacket, Out};
use crate::icmp_error::{Quote, Unreachable, icmp_proto, relay_icmp_error, send_unreachable};
use crate::ping_raw::RawPing;
use crate::route;
use crate::sock::recv_into;
use crate::wire::{ETH_HLEN, ICMP_CHECKSUM, ICMP_HLEN, fill_l4_checksum, icmp, ip_hlen, write_ip};

/// Where Linux keeps the groups allowed to open ping sockets (ICMP and ICMPv6 alike).
pub const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

/// Whether group `gid` may open ping sockets under `range` (the sysctl's text, `LO HI`;
/// the kernel default `1 0` allows nobody).
pub fn ping_allowed(range: &str, gid: u32) -> bool {
    let mut it = range.split_whitespace().map(str::parse::<u32>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) => lo <= gid && gid <= hi,
        _ => false,
    }
}

pub const ECHO_REQUEST4: u8 = 8;
pub const ECHO_REPLY4: u8 = 0;
pub const ECHO_REQUEST6: u8 = 128;
pub const ECHO_REPLY6: u8 = 129;

/// An echo request from the guest: to its flow's socket (or the shared raw socket).
pub fn echo_from_guest<G: GuestTx>(
    cx: &mut Ctx<G>,
    raw_ping: &mut Option<RawPing>,
    pkt: &IpPacket<'_>,
) {
    if !cx.cfg.relay_icmp {
        cx.counters.rx_disabled += 1;
        return;
    }
    let body = pkt.payload;
    let (Some((_, 0)), Some(id)) = (icmp::type_code(body), icmp::echo_ident(body)) else {
        cx.counters.rx_malformed += 1;
        return;
    };
    if !route::destination_ok(pkt.dst) {
        return;
    }
    let key = FlowKey {
        proto: icmp_proto(pkt.is_v6()),
        guest: SocketAddr::new(pkt.src, id),
        remote: SocketAddr::new(pkt.dst, 0),
    };
    let slot = match cx.flows.lookup(&key) {
        Some(slot) => slot,
        None => match open_ping(cx, raw_ping, key, pkt) {
            Some(slot) => slot,
            None => return,
        },
    };
    let Some(Flow::Ping(p)) = cx.flows.get_mut(slot) else {
        return;
    };
    p.last = cx.now;
    match (&mut p.via, raw_ping) {
        (PingVia::Socket { sock, hop }, _) => {
            errqueue::follow_hop_limit(sock, pkt.is_v6(), hop, pkt.hop);
            let _ = sock.send(body);
        }
        (PingVia::Raw { target, wire }, Some(raw)) => {
            let Some(copy) = cx.scratch.get_mut(..body.len()) else {
                return;
            };
            copy.copy_from_slice(body);
            let _ = raw.send(*target, *wire, pkt.hop, copy);
        }
        (PingVia::Raw { .. }, None) => {}
    }
}

fn open_ping<G: GuestTx>(
    cx: &mut Ctx<G>,
    raw_ping: &mut Option<RawPing>,
    key: FlowKey,
    pkt: &IpPacket<'_>,
) -> Option<usize> {
    let Some(slot) = cx.flows.next_slot() else {
        cx.counters.refused_full += 1;
        send_unreachable(cx, Unreachable::Prohibited, pkt.dst, pkt.src, pkt.packet);
        return None;
    };
    let target = route::outbound(&cx.cfg, pkt.dst, 0, false);
    let id = key.guest.port();
    let (via, fd) = match raw_ping.as_mut() {
        Some(raw) => {
            let wire = raw.claim(target.ip(), id, slot)?;
            let target = target.ip();
            (PingVia::Raw { target, wire }, None)
        }
        None => {
            let sock = open_ping_socket(cx, target, pkt)?;
            let fd = sock.as_raw_fd();
            let hop = DEFAULT_HOP;
            (PingVia::Socket { sock, hop }, Some(fd))
        }
    };
    let flow = PingFlow {
        via,
        guest: pkt.src,
        guest_id: id,
        remote: pkt.dst,
        last: cx.now,
    };
    let slot_got = cx.flows.insert(key, Flow::Ping(flow)).ok()?;
    debug_assert_eq!(slot, slot_got);
    if let Some(fd) = fd
        && !cx.register_flow(slot_got, fd, Interest::READABLE)
    {
        return None;
    }
    cx.counters.ping_opened += 1;
    Some(slot_got)
}

/// A ping socket connected to `target`; `None` (counted, or answered with an
/// unreachable) when it cannot be had.
fn open_ping_socket<G: GuestTx>(
    cx: &mut Ctx<G>,
    target: SocketAddr,
    pkt: &IpPacket<'_>,
) -> Option<Socket> {
    let (domain, protocol) = match target {
        SocketAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        SocketAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let sock = match Socket::new(domain, Type::DGRAM.nonblocking().cloexec(), Some(protocol)) {
        Ok(s) => s,
        Err(_) => {
            cx.counters.ping_denied += 1;
            return None;
        }
    };
    route::bind_outbound(&cx.cfg, &sock, target).ok()?;
    if let Err(e) = sock.connect(&SockAddr::from(target)) {
        if let Some(kind) = Unreachable::from_io(&e) {
            send_unreachable(cx, kind, pkt.dst, pkt.src, pkt.packet);
        }
        return None;
    }
    let _ = errqueue::enable(&sock, target.is_ipv6());
    Some(sock)
}

/// Removes a ping flow; one on the raw sockets gives its identifier back.
pub fn remove<G>(cx: &mut Ctx<G>, raw_ping: &mut Option<RawPing>, slot: usize) {
    if let Some(Flow::Ping(p)) = cx.remove_flow(slot)
        && let (PingVia::Raw { target, wire }, Some(raw)) = (p.via, raw_ping.as_mut())
    {
        raw.forget(target, wire, slot);
    }
}

/// Echo replies on the shared raw socket of a family (`ping_raw.rs`).
pub fn raw_ping_ready<G: GuestTx>(cx: &mut Ctx<G>, raw_ping: &Option<RawPing>, v6: bool) {
    let Some(raw) = raw_ping.as_ref() else { return };
    loop {
        let (slot, msg) = match raw.recv(v6, &mut cx.scratch) {
            Ok(Some(got)) => got,
            Ok(None) => continue,
            Err(_) => return,
        };
        if let Some(Flow::Ping(p)) = cx.flows.get_mut(slot) {
            echo_reply_to_guest(&mut cx.out, p, &cx.scratch[msg]);
        }
    }
}

/// Readiness of a ping flow's own socket: replies to the guest; on an error wakeup, the
/// ICMP errors first.
pub fn ping_ready<G: GuestTx>(cx: &mut Ctx<G>, slot: usize, error: bool) {
    if error {
        ping_errors(cx, slot);
    }
    loop {
        let Some(Flow::Ping(p)) = cx.flows.get_mut(slot) else {
            return;
        };
        let PingVia::Socket { sock, .. } = &p.via else {
            return;
        };
        let n = match recv_into(sock, &mut cx.scratch) {
            Ok(n) => n,
            Err(_) => return,
        };
        let reply_type = if p.guest.is_ipv6() {
            ECHO_REPLY6
        } else {
            ECHO_REPLY4
        };
        let reply = &cx.scratch[..n];
        if n < ICMP_HLEN || icmp::type_code(reply).map(|t| t.0) != Some(reply_type) {
            continue;
        }
        echo_reply_to_guest(&mut cx.out, p, reply);
    }
}

/// Errors the network sent for a ping flow, to the guest; the quoted request carries
/// the guest's identifier.
fn ping_errors<G: GuestTx>(cx: &mut Ctx<G>, slot: usize) {
    loop {
        let Some(Flow::Ping(p)) = cx.flows.get_mut(slot) else {
            return;
        };
        let PingVia::Socket { sock, .. } = &p.via else {
            return;
        };
        let Some(err) = errqueue::next(sock, &mut cx.scratch) else {
            return;
        };
        let (guest, remote, id) = (p.guest, p.remote, p.guest_id);
        // The kernel hands back the echo request as sent: put the guest's id back.
        let mut quote = Quote::new();
        let echo = &cx.scratch[..err.payload_len.min(cx.scratch.len())];
        if echo.len() < ICMP_HLEN {
            continue;
        }
        let l4 = quote.l4(guest, remote, icmp_proto(guest.is_ipv6()), echo.len());
        let n = quote.put(l4, echo);
        icmp::set_echo_ident(&mut quote.buf[l4..], id);
        let remote = (SocketAddr::new(remote, 0), false);
        relay_icmp_error(cx, &err, remote, guest, quote.packet(l4 + n));
    }
}

/// An echo reply `body` (ICMP header first) to the guest of ping flow `p`: from the
/// address it pinged, with its identifier, checksummed anew.
fn echo_reply_to_guest<G: GuestTx>(out: &mut Out<G>, p: &PingFlow, body: &[u8]) {
    let (src, dst, id, n) = (p.remote, p.guest, p.guest_id, body.len());
    let v6 = dst.is_ipv6();
    let proto = icmp_proto(v6);
    out.emit(ETH_HLEN + ip_hlen(v6) + n, |buf, mac| {
        let l4 = write_ip(buf, mac, src, dst, proto, n, 64);
        buf[l4..l4 + n].copy_from_slice(body);
        icmp::set_echo_ident(&mut buf[l4..l4 + n], id);
        fill_l4_checksum(&mut buf[..l4 + n], l4, ICMP_CHECKSUM, src, dst, proto);
        l4 + n
    });
}

#[cfg(test)]
mod ping_range_tests {
    use super::ping_allowed;

    #[test]
    fn the_kernel_default_allows_no_group_and_kubevirts_allows_qemu() {
        assert!(!ping_allowed("1\t0\n", 0));
        assert!(!ping_allowed("1 0", 107));
        assert!(ping_allowed("107\t107\n", 107));
        assert!(ping_allowed("0 2147483647", 0));
        assert!(!ping_allowed("garbage", 0));
    }
}
