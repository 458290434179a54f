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
//! DHCP (ports 67 and 547) never becomes a flow: it is served by `dhcp`.
//!
//! Errors: a flow's socket sends with the guest's hop limit and keeps the ICMP errors the
//! network sends back (`errqueue.rs`): time exceeded, unreachable, too big reach the
//! guest from the router or host that sent them, so `traceroute` works from the guest.
//! A refusal seen without details (`ECONNREFUSED`) becomes an ICMP port unreachable from
//! the destination. Datagrams bigger than the guest's MTU reach it in fragments
//! (`fragment.rs`), and the guest's fragments are put back together before they leave.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::Interest;
use smoltcp::wire::UdpPacket;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::engine::Engine;
use crate::flow::{Flow, FlowKey};
use crate::frame::{
    ETH_HLEN, GuestTx, IpPacket, PROTO_UDP, UDP_HLEN, fill_l4_checksum, ip_hlen, write_ip,
};
use crate::icmp::{DEFAULT_HOP, Quote, Unreachable, recv_from_into, recv_into};

pub struct UdpFlow {
    /// The flow's own connected socket; `None` for inbound flows.
    pub sock: Option<Socket>,
    /// For inbound flows: the listener (index) and the real peer address.
    pub via_listener: Option<(usize, SocketAddr)>,
    pub guest: SocketAddr,
    pub remote: SocketAddr,
    pub last: Instant,
    /// The hop limit the socket sends with (the guest's, last seen).
    pub hop: u8,
}

/// Writes a whole UDP frame `from → to`; returns its length.
pub(crate) fn write_udp(
    buf: &mut [u8],
    mac: [u8; 6],
    from: SocketAddr,
    to: SocketAddr,
    payload: &[u8],
) -> usize {
    let len = UDP_HLEN + payload.len();
    let l4 = write_ip(buf, mac, from.ip(), to.ip(), PROTO_UDP, len, 64);
    buf[l4..l4 + 2].copy_from_slice(&from.port().to_be_bytes());
    buf[l4 + 2..l4 + 4].copy_from_slice(&to.port().to_be_bytes());
    buf[l4 + 4..l4 + 6].copy_from_slice(&(len as u16).to_be_bytes());
    buf[l4 + 8..l4 + len].copy_from_slice(payload);
    fill_l4_checksum(buf, l4, 6, from.ip(), to.ip(), PROTO_UDP);
    l4 + len
}

impl<G: GuestTx> Engine<G> {
    /// Sends one datagram to the guest (`mac` overrides the destination MAC).
    pub(crate) fn emit_udp(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        payload: &[u8],
        mac: Option<[u8; 6]>,
    ) -> bool {
        let v6 = to.is_ipv6();
        let total = ETH_HLEN + ip_hlen(v6) + UDP_HLEN + payload.len();
        self.out.emit(total, |buf, guest_mac| {
            write_udp(buf, mac.unwrap_or(guest_mac), from, to, payload)
        })
    }

    pub(crate) fn udp_from_guest(&mut self, pkt: &IpPacket<'_>) {
        let Ok(udp) = UdpPacket::new_checked(pkt.payload) else {
            self.counters.rx_malformed += 1;
            return;
        };
        let len = usize::from(udp.len());
        if len < UDP_HLEN || len > pkt.payload.len() {
            self.counters.rx_malformed += 1;
            return;
        }
        let (sport, dport) = (udp.src_port(), udp.dst_port());
        let data = &pkt.payload[UDP_HLEN..len];
        match (pkt.is_v6(), dport) {
            (false, 67) => return self.dhcp4_from_guest(pkt, data),
            (true, 547) => return self.dhcp6_from_guest(pkt, sport, data),
            _ => {}
        }
        if !self.flow_destination_ok(pkt.dst) || dport == 0 {
            return;
        }
        let key = FlowKey {
            proto: PROTO_UDP,
            guest: SocketAddr::new(pkt.src, sport),
            remote: SocketAddr::new(pkt.dst, dport),
        };
        let slot = match self.flows.lookup(&key) {
            Some(s) => s,
            None => match self.open_udp(key, pkt) {
                Some(s) => s,
                None => return,
            },
        };
        let now = self.now;
        let Engine {
            flows,
            listeners,
            counters,
            ..
        } = self;
        let Some(Flow::Udp(f)) = flows.get_mut(slot) else {
            return;
        };
        f.last = now;
        if let Some(sock) = &f.sock {
            crate::errqueue::follow_hop_limit(sock, pkt.is_v6(), &mut f.hop, pkt.hop);
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
            Ok(_) => counters.udp_bytes_from_guest += data.len() as u64,
            Err(e) => {
                if let Some(kind) = Unreachable::from_io(&e) {
                    self.send_unreachable(kind, pkt.dst, pkt.src, pkt.packet);
                }
            }
        }
    }

    fn open_udp(&mut self, key: FlowKey, pkt: &IpPacket<'_>) -> Option<usize> {
        if self.flows.next_slot().is_none() {
            self.counters.refused_full += 1;
            self.send_unreachable(Unreachable::Prohibited, pkt.dst, pkt.src, pkt.packet);
            return None;
        }
        let target = self.map_outbound(key.remote.ip(), key.remote.port(), true);
        let sock = Socket::new(
            Domain::for_address(target),
            Type::DGRAM.nonblocking().cloexec(),
            None,
        )
        .ok()?;
        if let Err(e) = sock.connect(&SockAddr::from(target)) {
            if let Some(kind) = Unreachable::from_io(&e) {
                self.send_unreachable(kind, pkt.dst, pkt.src, pkt.packet);
            }
            return None;
        }
        let fd = sock.as_raw_fd();
        let _ = crate::errqueue::enable(&sock, target.is_ipv6());
        let flow = UdpFlow {
            sock: Some(sock),
            via_listener: None,
            guest: key.guest,
            remote: key.remote,
            last: self.now,
            hop: DEFAULT_HOP,
        };
        let slot = self.flows.insert(key, Flow::Udp(flow)).ok()?;
        if self
            .register_fd(fd, Self::flow_token(slot), Interest::READABLE)
            .is_err()
        {
            self.remove_flow(slot);
            return None;
        }
        self.counters.udp_opened += 1;
        Some(slot)
    }

    /// Relays the ICMP errors queued on a flow's socket; whether there were any.
    fn udp_errors(&mut self, slot: usize) -> bool {
        let mut any = false;
        loop {
            let Some(Flow::Udp(f)) = self.flows.get_mut(slot) else {
                return any;
            };
            let Some(sock) = f.sock.as_ref() else {
                return any;
            };
            let Some(err) = crate::errqueue::next(sock, &mut self.scratch) else {
                return any;
            };
            let (guest, remote) = (f.guest, f.remote);
            // The kernel hands back the datagram's payload: the quote carries it after a
            // rebuilt UDP header (traceroute over IPv6 matches its probes by it).
            let payload = &self.scratch[..err.payload_len.min(self.scratch.len())];
            let l4_len = UDP_HLEN + payload.len();
            let mut quote = Quote::new();
            let l4 = quote.l4(guest.ip(), remote.ip(), PROTO_UDP, l4_len);
            let mut header = [0u8; UDP_HLEN];
            header[0..2].copy_from_slice(&guest.port().to_be_bytes());
            header[2..4].copy_from_slice(&remote.port().to_be_bytes());
            header[4..6].copy_from_slice(&(l4_len.min(65535) as u16).to_be_bytes());
            quote.put(l4, &header);
            let n = quote.put(l4 + UDP_HLEN, payload);
            self.relay_icmp_error(
                &err,
                (remote, true),
                guest.ip(),
                quote.packet(l4 + UDP_HLEN + n),
            );
            any = true;
        }
    }

    /// Socket readiness of an outbound flow: datagrams to the guest; on an error wakeup,
    /// the ICMP errors first.
    pub(crate) fn udp_ready(&mut self, slot: usize, error: bool) {
        let mut relayed = error && self.udp_errors(slot);
        let mut errors = 0;
        loop {
            let Engine { flows, scratch, .. } = self;
            let Some(Flow::Udp(f)) = flows.get_mut(slot) else {
                return;
            };
            let Some(sock) = f.sock.as_ref() else { return };
            let (guest, remote) = (f.guest, f.remote);
            match recv_into(sock, scratch) {
                Ok(n) => {
                    f.last = self.now;
                    self.counters.udp_bytes_to_guest += n as u64;
                    let Engine { scratch, .. } = self;
                    let data: &[u8] = &scratch[..n];
                    // `emit_udp` needs `&mut self`; the payload is copied by `write_udp`
                    // from the scratch buffer, which `out` does not alias.
                    let v6 = guest.is_ipv6();
                    let total = ETH_HLEN + ip_hlen(v6) + UDP_HLEN + n;
                    self.out
                        .emit(total, |buf, mac| write_udp(buf, mac, remote, guest, data));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // The error the kernel reports once per ICMP error; its details, when
                    // it kept them, are on the error queue (relayed above or now).
                    relayed |= self.udp_errors(slot);
                    if !relayed && let Some(kind) = Unreachable::from_io(&e) {
                        let mut first8 = [0u8; 8];
                        first8[0..2].copy_from_slice(&guest.port().to_be_bytes());
                        first8[2..4].copy_from_slice(&remote.port().to_be_bytes());
                        first8[4..6].copy_from_slice(&8u16.to_be_bytes());
                        self.send_unreachable_for(kind, PROTO_UDP, guest, remote, first8);
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

    /// Datagrams on an inbound UDP listener.
    pub(crate) fn udp_listener_ready(&mut self, index: usize) {
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            let (port, v6) = (listener.guest_port, listener.v6);
            let (n, peer) = match recv_from_into(&listener.sock, &mut self.scratch) {
                Ok((n, Some(peer))) => (n, peer),
                Ok((_, None)) => continue,
                Err(_) => return,
            };
            let Some(guest_ip) = self.guest_addr(v6) else {
                continue;
            };
            let Some(seen) = self.map_inbound(peer.ip()) else {
                continue;
            };
            let guest = SocketAddr::new(guest_ip, port);
            let remote = SocketAddr::new(seen, peer.port());
            let key = FlowKey {
                proto: PROTO_UDP,
                guest,
                remote,
            };
            let now = self.now;
            match self.flows.lookup(&key) {
                Some(slot) => {
                    if let Some(Flow::Udp(f)) = self.flows.get_mut(slot) {
                        f.last = now;
                    }
                }
                None => {
                    let flow = UdpFlow {
                        sock: None,
                        via_listener: Some((index, peer)),
                        guest,
                        remote,
                        last: now,
                        hop: DEFAULT_HOP,
                    };
                    if self.flows.insert(key, Flow::Udp(flow)).is_err() {
                        self.counters.refused_full += 1;
                        continue;
                    }
                    self.counters.udp_opened += 1;
                }
            }
            self.counters.udp_bytes_to_guest += n as u64;
            let total = ETH_HLEN + ip_hlen(guest.is_ipv6()) + UDP_HLEN + n;
            if remote.is_ipv6() != guest.is_ipv6() {
                continue;
            }
            let Engine { scratch, out, .. } = self;
            let data: &[u8] = &scratch[..n];
            out.emit(total, |buf, mac| write_udp(buf, mac, remote, guest, data));
        }
    }
}
