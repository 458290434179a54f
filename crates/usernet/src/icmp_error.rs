//! ICMP and ICMPv6 errors to the guest: destination unreachable, and the errors the
//! network sent for a flow (time exceeded, unreachable, too big), relayed.
//!
//! How it works: a socket error of a flow (a refused `connect()`, an unreachable network,
//! a full flow table) becomes a destination unreachable from the address the guest tried,
//! quoting the guest's packet ([`send_unreachable`]) or, when that packet is gone, an IP
//! header rebuilt from the flow and the first 8 bytes of its L4 header
//! ([`send_unreachable_for`]). An error the network sent (read off the socket's error
//! queue, `errqueue.rs`) goes to the guest from the router or host that sent it
//! ([`relay_icmp_error`]), quoting the guest's packet as rebuilt from the flow
//! ([`Quote`]); an error from where the flow really goes (the loopback for the gateway,
//! an upstream resolver for DNS) comes from the address the guest used, so the mapping
//! stays invisible (`route.rs`).
//!
//! What holds: a quote is cut to what the message may carry (576 bytes in all for ICMP,
//! 1280 for ICMPv6); nothing is allocated (quotes are built on the stack).

use std::net::{IpAddr, SocketAddr};

use crate::ctx::Ctx;
use crate::errqueue::IcmpError;
use crate::frame::GuestTx;
use crate::route;
use crate::wire::{
    ETH_HLEN, ICMP_CHECKSUM, ICMP_HLEN, IPV6_HLEN, Macs, PROTO_ICMP, PROTO_ICMPV6, STAND_IN_L4,
    fill_l4_checksum, icmp, ip_hlen, write_ip,
};

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

/// The ICMP protocol number of a family.
pub fn icmp_proto(v6: bool) -> u8 {
    if v6 { PROTO_ICMPV6 } else { PROTO_ICMP }
}

/// An ICMP error the network sent for a flow of the guest's, to the guest: from the
/// router or host that sent it, quoting `quote` (the guest's packet as rebuilt from the
/// flow). An error from where the flow really goes (`dns` as in [`route::outbound`])
/// comes from `remote`, the address the guest used, so the mapping stays invisible.
pub fn relay_icmp_error<G: GuestTx>(
    cx: &mut Ctx<G>,
    err: &IcmpError,
    (remote, dns): (SocketAddr, bool),
    guest: IpAddr,
    quote: &[u8],
) {
    let target = route::outbound(&cx.cfg, remote.ip(), remote.port(), dns).ip();
    let from = match err.from {
        Some(a) if a != target && !a.is_loopback() => a,
        _ => remote.ip(),
    };
    if send_icmp_error(
        cx,
        (err.icmp_type, err.icmp_code),
        err.mtu,
        from,
        guest,
        quote,
    ) {
        cx.counters.icmp_relayed += 1;
    }
}

/// An ICMP(v6) destination unreachable from `from` to the guest address `to`, quoting
/// `quote` (the offending IP packet, cut to fit).
pub fn send_unreachable<G: GuestTx>(
    cx: &mut Ctx<G>,
    kind: Unreachable,
    from: IpAddr,
    to: IpAddr,
    quote: &[u8],
) {
    let ty_code = kind.codes(to.is_ipv6());
    if send_icmp_error(cx, ty_code, 0, from, to, quote) {
        cx.counters.unreachable_sent += 1;
    }
}

/// Like [`send_unreachable`] for a flow whose packet is gone: quotes an IP header
/// `guest → remote` and the first 8 bytes of its L4 header.
pub fn send_unreachable_for<G: GuestTx>(
    cx: &mut Ctx<G>,
    kind: Unreachable,
    proto: u8,
    guest: SocketAddr,
    remote: SocketAddr,
    l4_first8: [u8; STAND_IN_L4],
) {
    let mut q = [0u8; ETH_HLEN + IPV6_HLEN + STAND_IN_L4];
    let l4 = write_ip(
        &mut q,
        Macs::default(),
        guest.ip(),
        remote.ip(),
        proto,
        STAND_IN_L4,
        64,
    );
    let end = l4 + STAND_IN_L4;
    q[l4..end].copy_from_slice(&l4_first8);
    send_unreachable(cx, kind, remote.ip(), guest.ip(), &q[ETH_HLEN..end]);
}

/// An ICMP(v6) error of type and code `ty_code` from `from` to the guest address `to`,
/// quoting `quote` (cut to fit); `mtu` goes where the message carries one (IPv4
/// fragmentation needed, IPv6 packet too big).
fn send_icmp_error<G: GuestTx>(
    cx: &mut Ctx<G>,
    (ty, code): (u8, u8),
    mtu: u32,
    from: IpAddr,
    to: IpAddr,
    quote: &[u8],
) -> bool {
    let v6 = to.is_ipv6();
    if from.is_ipv6() != v6 {
        return false;
    }
    let rest = icmp::error_rest(v6, ty, code, mtu);
    let max_quote = if v6 { 1280 - 48 } else { 576 - 28 };
    let q = &quote[..quote.len().min(max_quote)];
    let l4_len = ICMP_HLEN + q.len();
    let proto = icmp_proto(v6);
    cx.out.emit(ETH_HLEN + ip_hlen(v6) + l4_len, |buf, mac| {
        let l4 = write_ip(buf, mac, from, to, proto, l4_len, 64);
        icmp::write_header(&mut buf[l4..], ty, code, rest);
        buf[l4 + ICMP_HLEN..l4 + l4_len].copy_from_slice(q);
        fill_l4_checksum(&mut buf[..l4 + l4_len], l4, ICMP_CHECKSUM, from, to, proto);
        l4 + l4_len
    })
}

/// A guest packet rebuilt for quoting in an ICMP error (on the stack: nothing is
/// allocated): an IP header `guest → remote`, then as much of the L4 message as an
/// ICMPv6 error may quote.
pub struct Quote {
    pub buf: [u8; ETH_HLEN + 1280],
}

impl Default for Quote {
    fn default() -> Self {
        Quote::new()
    }
}

impl Quote {
    pub fn new() -> Quote {
        Quote {
            buf: [0; ETH_HLEN + 1280],
        }
    }

    /// Writes the IP header for an L4 message of `l4_len` bytes; returns where L4 starts.
    pub fn l4(&mut self, guest: IpAddr, remote: IpAddr, proto: u8, l4_len: usize) -> usize {
        write_ip(
            &mut self.buf,
            Macs::default(),
            guest,
            remote,
            proto,
            l4_len,
            1,
        )
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
