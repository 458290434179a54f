//! ICMP and ICMPv6: echo through unprivileged ping sockets; errors to the guest.
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
//! dropped and counted (`ping denied`).
//!
//! Socket errors of other flows become ICMP destination unreachable messages quoting the
//! guest's packet (or a header synthesized from the flow when the packet is gone):
//! [`Engine::send_unreachable`]. ICMP errors the network sent for a UDP or ping flow
//! (time exceeded, unreachable, too big; see `errqueue.rs`) are relayed to the guest from
//! the router or host that sent them: [`Engine::relay_icmp_error`]. Ping flows send with
//! the hop limit of the guest's request, so `traceroute -I` works too.
//!
//! ICMPv6 is dispatched here too: NDP goes to `ndp`.

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

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::Interest;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::engine::Engine;
use crate::flow::{Flow, FlowKey};
use crate::frame::{
    ETH_HLEN, GuestTx, IpPacket, Out, PROTO_ICMP, PROTO_ICMPV6, fill_l4_checksum, ip_hlen, write_ip,
};
use crate::ndp::{ICMPV6_NS, ICMPV6_RS};

const ECHO_REQUEST4: u8 = 8;
const ECHO_REPLY4: u8 = 0;
const ECHO_REQUEST6: u8 = 128;
const ECHO_REPLY6: u8 = 129;

pub struct PingFlow {
    pub via: PingVia,
    pub guest: IpAddr,
    pub guest_id: u16,
    pub remote: IpAddr,
    pub last: Instant,
    /// The hop limit the socket sends with (the guest's, last seen).
    pub hop: u8,
}

/// How a ping flow reaches the network.
pub enum PingVia {
    /// Its own ping socket, connected to the destination.
    Socket(Socket),
    /// The engine's shared raw socket (`ping_raw.rs`), sending to `target` with
    /// identifier `wire`.
    Raw { target: IpAddr, wire: u16 },
}

/// The hop limit a new socket sends with (`net.ipv4.ip_default_ttl`, IPv6's default).
pub(crate) const DEFAULT_HOP: u8 = 64;

/// Why a destination is unreachable, in both families' codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    Net,
    Host,
    Port,
    /// Refused by policy: the flow table is full.
    Prohibited,
}

impl Unreachable {
    fn codes(self, v6: bool) -> (u8, u8) {
        match (self, v6) {
            (Unreachable::Net, false) => (3, 0),
            (Unreachable::Host, false) => (3, 1),
            (Unreachable::Port, false) => (3, 3),
            (Unreachable::Prohibited, false) => (3, 13),
            (Unreachable::Net, true) => (1, 0),
            (Unreachable::Host, true) => (1, 3),
            (Unreachable::Port, true) => (1, 4),
            (Unreachable::Prohibited, true) => (1, 1),
        }
    }

    /// The unreachable kind for a socket error, if it is one.
    pub fn from_io(e: &std::io::Error) -> Option<Unreachable> {
        match e.raw_os_error() {
            Some(nix::libc::ENETUNREACH) => Some(Unreachable::Net),
            Some(nix::libc::EHOSTUNREACH) | Some(nix::libc::EADDRNOTAVAIL) => {
                Some(Unreachable::Host)
            }
            Some(nix::libc::ECONNREFUSED) => Some(Unreachable::Port),
            Some(nix::libc::EACCES) | Some(nix::libc::EPERM) => Some(Unreachable::Prohibited),
            _ => None,
        }
    }
}

impl<G: GuestTx> Engine<G> {
    pub(crate) fn icmp4_from_guest(&mut self, pkt: &IpPacket<'_>) {
        match pkt.payload.first() {
            Some(&ECHO_REQUEST4) => self.ping_from_guest(pkt),
            Some(_) => {}
            None => self.counters.rx_malformed += 1,
        }
    }

    pub(crate) fn icmp6_from_guest(&mut self, pkt: &IpPacket<'_>) {
        match pkt.payload.first() {
            Some(&ECHO_REQUEST6) => self.ping_from_guest(pkt),
            Some(&ICMPV6_NS) => self.ns_from_guest(pkt),
            Some(&ICMPV6_RS) => self.rs_from_guest(pkt),
            Some(_) => {}
            None => self.counters.rx_malformed += 1,
        }
    }

    fn ping_from_guest(&mut self, pkt: &IpPacket<'_>) {
        let body = pkt.payload;
        if body.len() < 8 || body[1] != 0 {
            self.counters.rx_malformed += 1;
            return;
        }
        if !self.flow_destination_ok(pkt.dst) {
            return;
        }
        let id = u16::from_be_bytes([body[4], body[5]]);
        let proto = if pkt.is_v6() {
            PROTO_ICMPV6
        } else {
            PROTO_ICMP
        };
        let key = FlowKey {
            proto,
            guest: SocketAddr::new(pkt.src, id),
            remote: SocketAddr::new(pkt.dst, 0),
        };
        let slot = match self.flows.lookup(&key) {
            Some(slot) => slot,
            None => match self.open_ping(key, pkt) {
                Some(slot) => slot,
                None => return,
            },
        };
        let now = self.now;
        let Engine {
            flows,
            raw_ping,
            scratch,
            ..
        } = self;
        let Some(Flow::Ping(p)) = flows.get_mut(slot) else {
            return;
        };
        p.last = now;
        match (&p.via, raw_ping) {
            (PingVia::Socket(sock), _) => {
                crate::errqueue::follow_hop_limit(sock, pkt.is_v6(), &mut p.hop, pkt.hop);
                let _ = sock.send(body);
            }
            (PingVia::Raw { target, wire }, Some(raw)) => {
                let Some(copy) = scratch.get_mut(..body.len()) else {
                    return;
                };
                copy.copy_from_slice(body);
                let _ = raw.send(*target, *wire, pkt.hop, copy);
            }
            (PingVia::Raw { .. }, None) => {}
        }
    }

    fn open_ping(&mut self, key: FlowKey, pkt: &IpPacket<'_>) -> Option<usize> {
        let Some(slot) = self.flows.next_slot() else {
            self.counters.refused_full += 1;
            self.send_unreachable(Unreachable::Prohibited, pkt.dst, pkt.src, pkt.packet);
            return None;
        };
        let target = self.map_outbound(pkt.dst, 0, false);
        let id = key.guest.port();
        let (via, fd) = match self.raw_ping.as_mut() {
            Some(raw) => {
                let wire = raw.claim(target.ip(), id, slot)?;
                (
                    PingVia::Raw {
                        target: target.ip(),
                        wire,
                    },
                    None,
                )
            }
            None => {
                let sock = self.open_ping_socket(target, pkt)?;
                let fd = sock.as_raw_fd();
                (PingVia::Socket(sock), Some(fd))
            }
        };
        let flow = PingFlow {
            via,
            guest: pkt.src,
            guest_id: id,
            remote: pkt.dst,
            last: self.now,
            hop: DEFAULT_HOP,
        };
        let slot_got = self.flows.insert(key, Flow::Ping(flow)).ok()?;
        debug_assert_eq!(slot, slot_got);
        if let Some(fd) = fd
            && self
                .register_fd(fd, Self::flow_token(slot_got), Interest::READABLE)
                .is_err()
        {
            self.remove_flow(slot_got);
            return None;
        }
        self.counters.ping_opened += 1;
        Some(slot_got)
    }

    /// A ping socket connected to `target`; `None` (counted, or answered with an
    /// unreachable) when it cannot be had.
    fn open_ping_socket(&mut self, target: SocketAddr, pkt: &IpPacket<'_>) -> Option<Socket> {
        let (domain, protocol) = match target {
            SocketAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
            SocketAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
        };
        let sock = match Socket::new(domain, Type::DGRAM.nonblocking().cloexec(), Some(protocol)) {
            Ok(s) => s,
            Err(_) => {
                self.counters.ping_denied += 1;
                return None;
            }
        };
        if let Err(e) = sock.connect(&SockAddr::from(target)) {
            if let Some(kind) = Unreachable::from_io(&e) {
                self.send_unreachable(kind, pkt.dst, pkt.src, pkt.packet);
            }
            return None;
        }
        let _ = crate::errqueue::enable(&sock, target.is_ipv6());
        Some(sock)
    }

    /// Echo replies on the shared raw socket of a family (`ping_raw.rs`).
    pub(crate) fn raw_ping_ready(&mut self, v6: bool) {
        loop {
            let Engine {
                flows,
                raw_ping,
                scratch,
                out,
                ..
            } = self;
            let Some(raw) = raw_ping.as_ref() else { return };
            let (slot, msg) = match raw.recv(v6, scratch) {
                Ok(Some(got)) => got,
                Ok(None) => continue,
                Err(_) => return,
            };
            if let Some(Flow::Ping(p)) = flows.get_mut(slot) {
                echo_reply_to_guest(out, p, &scratch[msg]);
            }
        }
    }

    pub(crate) fn ping_ready(&mut self, slot: usize, error: bool) {
        if error {
            self.ping_errors(slot);
        }
        loop {
            let Engine {
                flows,
                scratch,
                out,
                ..
            } = self;
            let Some(Flow::Ping(p)) = flows.get_mut(slot) else {
                return;
            };
            let PingVia::Socket(sock) = &p.via else {
                return;
            };
            let n = match recv_into(sock, scratch) {
                Ok(n) => n,
                Err(_) => return,
            };
            let reply_type = if p.guest.is_ipv6() {
                ECHO_REPLY6
            } else {
                ECHO_REPLY4
            };
            if n < 8 || scratch[0] != reply_type {
                continue;
            }
            echo_reply_to_guest(out, p, &scratch[..n]);
        }
    }

    /// Errors the network sent for a ping flow, to the guest; the quoted request
    /// carries the guest's identifier.
    fn ping_errors(&mut self, slot: usize) {
        loop {
            let Some(Flow::Ping(p)) = self.flows.get_mut(slot) else {
                return;
            };
            let PingVia::Socket(sock) = &p.via else {
                return;
            };
            let Some(err) = crate::errqueue::next(sock, &mut self.scratch) else {
                return;
            };
            let (guest, remote, id) = (p.guest, p.remote, p.guest_id);
            // The kernel hands back the echo request as sent: put the guest's id back.
            let mut quote = Quote::new();
            let echo = &self.scratch[..err.payload_len.min(self.scratch.len())];
            if echo.len() < 8 {
                continue;
            }
            let l4 = quote.l4(
                guest,
                remote,
                if guest.is_ipv6() {
                    PROTO_ICMPV6
                } else {
                    PROTO_ICMP
                },
                echo.len(),
            );
            let n = quote.put(l4, echo);
            quote.buf[l4 + 4..l4 + 6].copy_from_slice(&id.to_be_bytes());
            let remote = (SocketAddr::new(remote, 0), false);
            self.relay_icmp_error(&err, remote, guest, quote.packet(l4 + n));
        }
    }

    /// An ICMP error the network sent for a flow of the guest's, to the guest: from the
    /// router or host that sent it, quoting `quote` (the guest's packet as rebuilt from
    /// the flow). An error from where the flow really goes (the loopback for the gateway,
    /// an upstream resolver for DNS: `dns` as in [`Engine::map_outbound`]) comes from
    /// `remote`, the address the guest used, so the mapping stays invisible.
    pub(crate) fn relay_icmp_error(
        &mut self,
        err: &crate::errqueue::IcmpError,
        (remote, dns): (SocketAddr, bool),
        guest: IpAddr,
        quote: &[u8],
    ) {
        let target = self.map_outbound(remote.ip(), remote.port(), dns).ip();
        let from = match err.from {
            Some(a) if a != target && !a.is_loopback() => a,
            _ => remote.ip(),
        };
        if self.send_icmp_error(err.icmp_type, err.icmp_code, err.mtu, from, guest, quote) {
            self.counters.icmp_relayed += 1;
        }
    }

    /// An ICMP(v6) destination unreachable from `from` to the guest address `to`,
    /// quoting `quote` (the offending IP packet, cut to fit).
    pub(crate) fn send_unreachable(
        &mut self,
        kind: Unreachable,
        from: IpAddr,
        to: IpAddr,
        quote: &[u8],
    ) {
        let (ty, code) = kind.codes(to.is_ipv6());
        if self.send_icmp_error(ty, code, 0, from, to, quote) {
            self.counters.unreachable_sent += 1;
        }
    }

    /// An ICMP(v6) error `ty`/`code` from `from` to the guest address `to`, quoting
    /// `quote` (cut to fit); `mtu` goes where the message carries one (IPv4
    /// fragmentation needed, IPv6 packet too big).
    fn send_icmp_error(
        &mut self,
        ty: u8,
        code: u8,
        mtu: u32,
        from: IpAddr,
        to: IpAddr,
        quote: &[u8],
    ) -> bool {
        let v6 = to.is_ipv6();
        if from.is_ipv6() != v6 {
            return false;
        }
        let mut rest = [0u8; 4];
        match (v6, ty, code) {
            (false, 3, 4) => rest[2..4].copy_from_slice(&(mtu.min(65535) as u16).to_be_bytes()),
            (true, 2, _) => rest.copy_from_slice(&mtu.to_be_bytes()),
            _ => {}
        }
        let max_quote = if v6 { 1280 - 48 } else { 576 - 28 };
        let q = &quote[..quote.len().min(max_quote)];
        let l4_len = 8 + q.len();
        let proto = if v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
        self.out.emit(ETH_HLEN + ip_hlen(v6) + l4_len, |buf, mac| {
            let l4 = write_ip(buf, mac, from, to, proto, l4_len, 64);
            buf[l4..l4 + 4].copy_from_slice(&[ty, code, 0, 0]);
            buf[l4 + 4..l4 + 8].copy_from_slice(&rest);
            buf[l4 + 8..l4 + l4_len].copy_from_slice(q);
            if v6 {
                fill_l4_checksum(buf, l4, 2, from, to, proto);
            } else {
                let sum = !smoltcp::wire::checksum::data(&buf[l4..l4 + l4_len]);
                buf[l4 + 2..l4 + 4].copy_from_slice(&sum.to_be_bytes());
            }
            l4 + l4_len
        })
    }

    /// Like [`Engine::send_unreachable`] for a flow whose packet is gone: quotes an IP
    /// header `guest → remote` and the first 8 bytes of its L4 header.
    pub(crate) fn send_unreachable_for(
        &mut self,
        kind: Unreachable,
        proto: u8,
        guest: SocketAddr,
        remote: SocketAddr,
        l4_first8: [u8; 8],
    ) {
        let mut q = [0u8; 14 + 40 + 8];
        let l4 = write_ip(&mut q, [0; 6], guest.ip(), remote.ip(), proto, 8, 64);
        q[l4..l4 + 8].copy_from_slice(&l4_first8);
        self.send_unreachable(kind, remote.ip(), guest.ip(), &q[ETH_HLEN..l4 + 8]);
    }
}

/// An echo reply `body` (ICMP header first) to the guest of ping flow `p`: from the
/// address it pinged, with its identifier, checksummed anew.
fn echo_reply_to_guest<G: GuestTx>(out: &mut Out<G>, p: &PingFlow, body: &[u8]) {
    let (src, dst, id, n) = (p.remote, p.guest, p.guest_id, body.len());
    let v6 = dst.is_ipv6();
    let proto = if v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
    out.emit(ETH_HLEN + ip_hlen(v6) + n, |buf, mac| {
        let l4 = write_ip(buf, mac, src, dst, proto, n, 64);
        buf[l4..l4 + n].copy_from_slice(body);
        buf[l4 + 4..l4 + 6].copy_from_slice(&id.to_be_bytes());
        if v6 {
            fill_l4_checksum(buf, l4, 2, src, dst, proto);
        } else {
            buf[l4 + 2..l4 + 4].copy_from_slice(&[0, 0]);
            let sum = !smoltcp::wire::checksum::data(&buf[l4..l4 + n]);
            buf[l4 + 2..l4 + 4].copy_from_slice(&sum.to_be_bytes());
        }
        l4 + n
    });
}

/// A guest packet rebuilt for quoting in an ICMP error (on the stack: nothing is
/// allocated): an IP header `guest → remote`, then as much of the L4 message as an
/// ICMPv6 error may quote.
pub(crate) struct Quote {
    pub buf: [u8; ETH_HLEN + 1280],
}

impl Quote {
    pub fn new() -> Quote {
        Quote {
            buf: [0; ETH_HLEN + 1280],
        }
    }

    /// Writes the IP header for an L4 message of `l4_len` bytes; returns where L4 starts.
    pub fn l4(&mut self, guest: IpAddr, remote: IpAddr, proto: u8, l4_len: usize) -> usize {
        write_ip(&mut self.buf, [0; 6], guest, remote, proto, l4_len, 1)
    }

    /// Copies what fits of `bytes` at `at`; returns how many.
    pub fn put(&mut self, at: usize, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.buf.len().saturating_sub(at));
        self.buf[at..at + n].copy_from_slice(&bytes[..n]);
        n
    }

    /// The IP packet, up to `end`.
    pub fn packet(&self, end: usize) -> &[u8] {
        &self.buf[ETH_HLEN..end]
    }
}

/// `recv` into an initialised buffer.
pub(crate) fn recv_into(sock: &Socket, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut s: &Socket = sock;
    s.read(buf)
}

/// `recv_from` into an initialised buffer.
pub(crate) fn recv_from_into(
    sock: &Socket,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<SocketAddr>)> {
    let fd = std::os::fd::AsFd::as_fd(sock);
    match nix::sys::socket::recvfrom::<nix::sys::socket::SockaddrStorage>(fd.as_raw_fd(), buf) {
        Ok((n, addr)) => {
            let addr = addr.and_then(|a| {
                if let Some(v4) = a.as_sockaddr_in() {
                    Some(SocketAddr::V4((*v4).into()))
                } else {
                    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
                }
            });
            Ok((n, addr))
        }
        Err(e) => Err(std::io::Error::from(e)),
    }
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
