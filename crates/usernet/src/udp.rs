//! UDP: each guest 5-tuple is a flow with its own connected socket.
//!
//! How it works: a datagram from the guest finds its flow by (guest address and port,
//! destination address and port) or opens one: a non-blocking UDP socket connected to
//! the destination (mapped: the gateway goes to the loopback, DNS to an advertised
//! resolver goes upstream). Datagrams read from the socket go back to the guest from the
//! destination as the guest addressed it, so mapping is invisible to it. A flow closes
//! after `udp_idle` (180 s) without traffic either way.
//!
//! Inbound (forwarded ports, `-u`): a datagram on a listener opens a flow with no socket
//! of its own; the guest's replies leave through the listener, so the peer sees them
//! come from the port it sent to.
//!
//! DHCP (ports 67 and 547) never becomes a flow: it is served by `dhcp`, also when UDP
//! is not relayed (`relay_udp` off: every other datagram is dropped and counted). The flow state
//! ([`UdpFlow`]) lives in the flow table (`flow.rs`); the handlers here take the narrow
//! context (`ctx.rs`) and the listeners (`forward.rs`).
//!
//! Errors: a flow's socket sends with the guest's hop limit and keeps the ICMP errors the
//! network sends back (`errqueue.rs`): time exceeded, unreachable, too big reach the
//! guest from the router or host that sent them, so `traceroute` works from the guest.
//! A refusal seen without details (`ECONNREFUSED`) becomes an ICMP port unreachable from
//! the destination. Datagrams bigger than the guest's MTU reach it in fragments
//! (`fragment.rs`), and the guest's fragments are put back together before they leave.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use mio::Interest;
use smoltcp::wire::UdpPacket;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::ctx::Ctx;
use crate::dhcp::{self, DhcpServers};
use crate::errqueue::{self, DEFAULT_HOP};
pub use crate::flow::UdpFlow;
use crate::flow::{Flow, FlowKey};
use crate::forward::Listener;
use crate::frame::{GuestTx, IpPacket};
use crate::icmp_error::{
    Quote, Unreachable, relay_icmp_error, send_unreachable, send_unreachable_for,
};
use crate::route;
use crate::sock::{recv_from_into, recv_into};
use crate::wire::{PROTO_UDP, UDP_HLEN, udp};

/// A datagram from the guest: DHCP to its server, the rest to the flow's socket.
pub fn from_guest<G: GuestTx>(
    cx: &mut Ctx<G>,
    listeners: &[Listener],
    dhcp: &mut DhcpServers,
    pkt: &IpPacket<'_>,
) {
    let Ok(udp) = UdpPacket::new_checked(pkt.payload) else {
        cx.counters.rx_malformed += 1;
        return;
    };
    let len = usize::from(udp.len());
    if len < UDP_HLEN || len > pkt.payload.len() {
        cx.counters.rx_malformed += 1;
        return;
    }
    let (sport, dport) = (udp.src_port(), udp.dst_port());
    let data = &pkt.payload[UDP_HLEN..len];
    match (pkt.is_v6(), dport) {
        (false, 67) => return dhcp::dhcp4_from_guest(cx, dhcp, pkt, data),
        (true, 547) => return dhcp::dhcp6_from_guest(cx, dhcp, pkt, sport, data),
        _ => {}
    }
    if !cx.cfg.relay_udp {
        cx.counters.rx_disabled += 1;
        return;
    }
    if !route::destination_ok(pkt.dst) || dport == 0 {
        return;
    }
    let key = FlowKey {
        proto: PROTO_UDP,
        guest: SocketAddr::new(pkt.src, sport),
        remote: SocketAddr::new(pkt.dst, dport),
    };
    let slot = match cx.flows.lookup(&key) {
        Some(s) => s,
        None => match open(cx, key, pkt) {
            Some(s) => s,
            None => return,
        },
    };
    let Some(Flow::Udp(f)) = cx.flows.get_mut(slot) else {
        return;
    };
    f.last = cx.now;
    if let Some(sock) = &f.sock {
        errqueue::follow_hop_limit(sock, pkt.is_v6(), &mut f.hop, pkt.hop);
    }
    let result = match (&f.sock, f.via_listener) {
        (Some(sock), _) => sock.send(data),
        (None, Some((l, peer))) => match listeners.get(l) {
            Some(listener) => listener.sock.send_to(data, &SockAddr::from(peer)),
            None => return,
        },
        (None, None) => return,
    };
    match result {
        Ok(_) => cx.counters.udp_bytes_from_guest += data.len() as u64,
        Err(e) => {
            if let Some(kind) = Unreachable::from_io(&e) {
                send_unreachable(cx, kind, pkt.dst, pkt.src, pkt.packet);
            }
        }
    }
}

fn open<G: GuestTx>(cx: &mut Ctx<G>, key: FlowKey, pkt: &IpPacket<'_>) -> Option<usize> {
    if cx.flows.next_slot().is_none() {
        cx.counters.refused_full += 1;
        send_unreachable(cx, Unreachable::Prohibited, pkt.dst, pkt.src, pkt.packet);
        return None;
    }
    let target = route::outbound(&cx.cfg, key.remote.ip(), key.remote.port(), true);
    let sock = match connected_socket(&cx.cfg, target, None) {
        Ok(s) => s,
        Err(e) => {
            if let Some(kind) = Unreachable::from_io(&e) {
                send_unreachable(cx, kind, pkt.dst, pkt.src, pkt.packet);
            }
            return None;
        }
    };
    insert_outbound(cx, key, sock, target)
}

/// A non-blocking socket connected to `target`, bound to `local` when given and this
/// namespace has it (sharing it with whoever else reuses it), else as outbound sockets
/// are.
fn connected_socket(
    cfg: &crate::config::EngineConfig,
    target: SocketAddr,
    local: Option<SocketAddr>,
) -> std::io::Result<Socket> {
    let sock = Socket::new(
        Domain::for_address(target),
        Type::DGRAM.nonblocking().cloexec(),
        None,
    )?;
    let kept = local.is_some_and(|local| {
        local.is_ipv6() == target.is_ipv6()
            && sock.set_reuse_address(true).is_ok()
            && sock.bind(&SockAddr::from(local)).is_ok()
    });
    if !kept {
        route::bind_outbound(cfg, &sock, target)?;
    }
    sock.connect(&SockAddr::from(target))?;
    Ok(sock)
}

fn insert_outbound<G: GuestTx>(
    cx: &mut Ctx<G>,
    key: FlowKey,
    sock: Socket,
    target: SocketAddr,
) -> Option<usize> {
    let fd = sock.as_raw_fd();
    let _ = errqueue::enable(&sock, target.is_ipv6());
    let flow = UdpFlow {
        sock: Some(sock),
        via_listener: None,
        guest: key.guest,
        remote: key.remote,
        last: cx.now,
        hop: DEFAULT_HOP,
    };
    let slot = cx.flows.insert(key, Flow::Udp(flow)).ok()?;
    if !cx.register_flow(slot, fd, Interest::READABLE) {
        return None;
    }
    cx.counters.udp_opened += 1;
    Some(slot)
}

/// Takes over a flow a migration's source carried: an outbound one keeps the local
/// address its peer knows where this pod has it too (a hold the source left there
/// shares it: the connected socket is the one that receives), else leaves as a new
/// flow would; an inbound one rides this engine's listener on the same port. False
/// when it cannot be rebuilt (the guest's next datagram opens a flow anew).
pub fn adopt<G: GuestTx>(
    cx: &mut Ctx<G>,
    listeners: &[Listener],
    u: &crate::migrate::format::UdpState,
) -> bool {
    let key = FlowKey {
        proto: PROTO_UDP,
        guest: u.guest,
        remote: u.remote,
    };
    if let Some(peer) = u.inbound_peer {
        let listener = listeners
            .iter()
            .position(|l| !l.tcp && l.port == u.local.port() && l.v6 == u.local.is_ipv6());
        return listener.is_some_and(|index| inbound_flow(cx, index, u.guest, u.remote, peer));
    }
    let target = route::outbound(&cx.cfg, u.remote.ip(), u.remote.port(), true);
    match connected_socket(&cx.cfg, target, Some(u.local)) {
        Ok(sock) => insert_outbound(cx, key, sock, target).is_some(),
        Err(_) => false,
    }
}

/// Relays the ICMP errors queued on a flow's socket; whether there were any.
fn relay_errors<G: GuestTx>(cx: &mut Ctx<G>, slot: usize) -> bool {
    let mut any = false;
    loop {
        let Some(Flow::Udp(f)) = cx.flows.get_mut(slot) else {
            return any;
        };
        let Some(sock) = f.sock.as_ref() else {
            return any;
        };
        let Some(err) = errqueue::next(sock, &mut cx.scratch) else {
            return any;
        };
        let (guest, remote) = (f.guest, f.remote);
        // The kernel hands back the datagram's payload: the quote carries it after a
        // rebuilt UDP header (traceroute over IPv6 matches its probes by it).
        let payload = &cx.scratch[..err.payload_len.min(cx.scratch.len())];
        let l4_len = UDP_HLEN + payload.len();
        let mut quote = Quote::new();
        let l4 = quote.l4(guest.ip(), remote.ip(), PROTO_UDP, l4_len);
        quote.put(l4, &udp::header(guest.port(), remote.port(), l4_len));
        let n = quote.put(l4 + UDP_HLEN, payload);
        let quoted = quote.packet(l4 + UDP_HLEN + n);
        relay_icmp_error(cx, &err, (remote, true), guest.ip(), quoted);
        any = true;
    }
}

/// Socket readiness of an outbound flow: datagrams to the guest; on an error wakeup,
/// the ICMP errors first.
pub fn ready<G: GuestTx>(cx: &mut Ctx<G>, slot: usize, error: bool) {
    let mut relayed = error && relay_errors(cx, slot);
    let mut errors = 0;
    loop {
        let Some(Flow::Udp(f)) = cx.flows.get_mut(slot) else {
            return;
        };
        let Some(sock) = f.sock.as_ref() else { return };
        let (guest, remote) = (f.guest, f.remote);
        match recv_into(sock, &mut cx.scratch) {
            Ok(n) => {
                f.last = cx.now;
                cx.counters.udp_bytes_to_guest += n as u64;
                // The payload is copied by `write_udp` from the scratch buffer, which
                // `out` does not alias.
                cx.out.emit_udp(remote, guest, &cx.scratch[..n], None);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                // The error the kernel reports once per ICMP error; its details, when
                // it kept them, are on the error queue (relayed above or now).
                relayed |= relay_errors(cx, slot);
                if !relayed && let Some(kind) = Unreachable::from_io(&e) {
                    let first8 = udp::header(guest.port(), remote.port(), UDP_HLEN);
                    send_unreachable_for(cx, kind, PROTO_UDP, guest, remote, first8);
                }
                errors += 1;
                if errors > 1 {
                    return;
                }
                // Datagrams may be queued behind the error: read on.
            }
        }
    }
}

/// Datagrams on inbound UDP listener `index`.
pub fn listener_ready<G: GuestTx>(cx: &mut Ctx<G>, listeners: &[Listener], index: usize) {
    let Some(listener) = listeners.get(index) else {
        return;
    };
    let (port, v6) = (listener.guest_port, listener.v6);
    loop {
        let (n, peer) = match recv_from_into(&listener.sock, &mut cx.scratch) {
            Ok((n, Some(peer))) => (n, peer),
            Ok((_, None)) => continue,
            Err(_) => return,
        };
        let Some(guest_ip) = route::guest_addr(&cx.cfg, v6) else {
            continue;
        };
        let Some(seen) = route::inbound(&cx.cfg, peer.ip()) else {
            continue;
        };
        let guest = SocketAddr::new(guest_ip, port);
        let remote = SocketAddr::new(seen, peer.port());
        if !inbound_flow(cx, index, guest, remote, peer) {
            continue;
        }
        cx.counters.udp_bytes_to_guest += n as u64;
        if remote.is_ipv6() != guest.is_ipv6() {
            continue;
        }
        cx.out.emit_udp(remote, guest, &cx.scratch[..n], None);
    }
}

/// Finds or opens the inbound flow `remote → guest` of listener `index` (whose real
/// peer is `peer`); false when the table is full.
fn inbound_flow<G>(
    cx: &mut Ctx<G>,
    index: usize,
    guest: SocketAddr,
    remote: SocketAddr,
    peer: SocketAddr,
) -> bool {
    let key = FlowKey {
        proto: PROTO_UDP,
        guest,
        remote,
    };
    let now = cx.now;
    if let Some(slot) = cx.flows.lookup(&key) {
        if let Some(Flow::Udp(f)) = cx.flows.get_mut(slot) {
            f.last = now;
        }
        return true;
    }
    let flow = UdpFlow {
        sock: None,
        via_listener: Some((index, peer)),
        guest,
        remote,
        last: now,
        hop: DEFAULT_HOP,
    };
    if cx.flows.insert(key, Flow::Udp(flow)).is_err() {
        cx.counters.refused_full += 1;
        return false;
    }
    cx.counters.udp_opened += 1;
    true
}
