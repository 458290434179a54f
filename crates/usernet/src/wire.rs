//! Header layouts: the one place that knows where a field sits in a frame.
//!
//! How it works: every header the engine writes or reads by position goes through a
//! function here, and those use smoltcp's checked views and their named fields
//! (`Ipv4Packet::set_total_len`, `Icmpv4Packet::set_echo_ident`, `NdiscRepr::emit`, …)
//! or, for what smoltcp has no writer for that fits a frame built in place (the TCP and
//! UDP headers in front of a payload already there, the virtio-net header), named field
//! ranges ([`tcp`], [`udp`], [`vnet`]). Above this module handlers deal in addresses,
//! ports and lengths; no handler indexes a header at a literal offset.
//!
//! - [`write_ip`]: Ethernet plus an IPv4 or IPv6 header ([`emit_ip`] for the IP header
//!   alone, with the identification and DF bit the fragment paths need). IPv4 goes out
//!   with DF and identification 0, IPv6 with traffic class and flow label 0.
//! - [`fill_l4_checksum`]: the one L4 checksum helper (RFC 1071 through smoltcp's
//!   `checksum`), with the pseudo-header for TCP, UDP and ICMPv6 and without it for
//!   ICMPv4; [`pseudo_sum`] for a checksum the receiver completes.
//! - [`STAND_IN_L4`]: the first 8 bytes of a TCP or UDP header ([`tcp::first8`],
//!   [`udp::header`]), as an ICMP error quotes a packet that is gone.
//!
//! What holds: writers take a buffer the caller sized for the whole frame (they index
//! it, so a short buffer is a bug, not input); readers are given slices already checked
//! by a smoltcp view and never panic on guest input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv6Packet, IpProtocol,
    Ipv4Packet, Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6Packet, NdiscNeighborFlags, NdiscRepr,
    RawHardwareAddress, checksum,
};

pub const ETH_HLEN: usize = 14;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const TCP_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
/// The fixed part of an ICMP(v6) message: type, code, checksum, four bytes of rest.
pub const ICMP_HLEN: usize = 8;
/// What an ICMP error quotes of an L4 header when the packet is gone: its first 8 bytes
/// (the ports, and a TCP sequence number or a UDP length), [`tcp::first8`],
/// [`udp::header`].
pub const STAND_IN_L4: usize = 8;
/// The IPv6 Fragment header: next header, reserved, offset and M flag, identification.
pub const FRAG6_HLEN: usize = 8;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_FRAGMENT6: u8 = 44;
pub const PROTO_ICMPV6: u8 = 58;
/// Where the checksum field sits in each L4 header.
pub const TCP_CHECKSUM: usize = 16;
pub const UDP_CHECKSUM: usize = 6;
pub const ICMP_CHECKSUM: usize = 2;

pub fn ip_hlen(v6: bool) -> usize {
    if v6 { IPV6_HLEN } else { IPV4_HLEN }
}

pub fn to_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// An unspecified address of the family of `a`.
pub fn unspecified_like(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The Ethernet addresses of a frame to the guest: the guest's (or a group's) and the
/// engine's own, as the guest side hands them to a frame's builder (`frame::Out::emit`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Macs {
    pub dst: [u8; 6],
    pub src: [u8; 6],
}

impl Macs {
    /// The same source, to `dst`.
    pub fn to(self, dst: [u8; 6]) -> Macs {
        Macs { dst, ..self }
    }
}

/// The Ethernet header `src → dst` of `ethertype`; returns its length.
pub fn write_eth(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16) -> usize {
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..ETH_HLEN]);
    eth.set_dst_addr(EthernetAddress(dst));
    eth.set_src_addr(EthernetAddress(src));
    eth.set_ethertype(EthernetProtocol::from(ethertype));
    ETH_HLEN
}

/// The ethertype of a frame (at least [`ETH_HLEN`] bytes).
pub fn ethertype(frame: &[u8]) -> u16 {
    u16::from(EthernetFrame::new_unchecked(frame).ethertype())
}

/// What an IP header says, for [`emit_ip`].
#[derive(Debug, Clone, Copy)]
pub struct IpHeader {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub l4_len: usize,
    pub hop: u8,
    /// IPv4 only: the identification and the don't-fragment bit.
    pub ident: u16,
    pub dont_frag: bool,
}

/// Writes the IPv4 header (both addresses IPv4) or else the IPv6 header of `h` at the
/// start of `ip`; returns its length.
pub fn emit_ip(ip: &mut [u8], h: &IpHeader) -> usize {
    match (h.src, h.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = Ipv4Packet::new_unchecked(&mut ip[..IPV4_HLEN]);
            p.set_version(4);
            p.set_header_len(IPV4_HLEN as u8);
            p.set_dscp(0);
            p.set_ecn(0);
            p.set_total_len((IPV4_HLEN + h.l4_len) as u16);
            p.set_ident(h.ident);
            p.clear_flags();
            p.set_dont_frag(h.dont_frag);
            p.set_frag_offset(0);
            p.set_hop_limit(h.hop);
            p.set_next_header(IpProtocol::from(h.proto));
            p.set_src_addr(s);
            p.set_dst_addr(d);
            p.fill_checksum();
            IPV4_HLEN
        }
        (s, d) => {
            let mut p = Ipv6Packet::new_unchecked(&mut ip[..IPV6_HLEN]);
            p.set_version(6);
            p.set_traffic_class(0);
            p.set_flow_label(0);
            p.set_payload_len(h.l4_len as u16);
            p.set_next_header(IpProtocol::from(h.proto));
            p.set_hop_limit(h.hop);
            p.set_src_addr(to_v6(s));
            p.set_dst_addr(to_v6(d));
            IPV6_HLEN
        }
    }
}

/// Writes the Ethernet (`macs`) and IP headers of a packet `src → dst` carrying `l4_len`
/// bytes of protocol `proto`; returns where the L4 header starts. `buf` must hold the
/// whole frame.
pub fn write_ip(
    buf: &mut [u8],
    macs: Macs,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4_len: usize,
    hop: u8,
) -> usize {
    let v4 = src.is_ipv4() && dst.is_ipv4();
    let ethertype = if v4 { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 };
    let l3 = write_eth(buf, macs.dst, macs.src, ethertype);
    let h = IpHeader {
        src,
        dst,
        proto,
        l4_len,
        hop,
        ident: 0,
        dont_frag: true,
    };
    l3 + emit_ip(&mut buf[l3..], &h)
}

/// IPv4: sets the length, identification and fragment fields of a copied header `h`
/// (its own length) for a fragment of `part_len` bytes at byte `offset`, and its
/// checksum anew (the don't-fragment bit is cleared).
pub fn set_ipv4_fragment(h: &mut [u8], part_len: usize, id: u16, offset: usize, more: bool) {
    let hl = h.len();
    let mut p = Ipv4Packet::new_unchecked(h);
    p.set_total_len((hl + part_len) as u16);
    p.set_ident(id);
    p.clear_flags();
    p.set_more_frags(more);
    p.set_frag_offset(offset as u16);
    p.fill_checksum();
}

/// IPv6: turns a copied fixed header `h` (then room for a Fragment header) into the
/// header of a fragment of `part_len` bytes at byte `offset`; returns both headers' length.
pub fn set_ipv6_fragment(
    h: &mut [u8],
    part_len: usize,
    id: u32,
    offset: usize,
    more: bool,
) -> usize {
    let (fixed, frag) = h[..IPV6_HLEN + FRAG6_HLEN].split_at_mut(IPV6_HLEN);
    let mut p = Ipv6Packet::new_unchecked(fixed);
    let next = p.next_header();
    p.set_payload_len((FRAG6_HLEN + part_len) as u16);
    p.set_next_header(IpProtocol::from(PROTO_FRAGMENT6));
    let (ext, rest) = frag.split_at_mut(2);
    // The extension header's first two bytes: next header, and a reserved zero (a
    // Fragment header has no length field).
    let mut e = Ipv6ExtHeader::new_unchecked(&mut *ext);
    e.set_next_header(next);
    e.set_header_len(0);
    let mut f = Ipv6FragmentHeader::new_unchecked(rest);
    f.set_frag_offset((offset / 8) as u16); // in 8-byte units
    f.clear_reserved();
    f.set_more_frags(more);
    f.set_ident(id);
    IPV6_HLEN + FRAG6_HLEN
}

/// An IPv6 Fragment header as the guest sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frag6 {
    pub next: u8,
    pub offset: usize,
    pub more: bool,
    pub ident: u32,
}

/// Reads the Fragment header at the start of `fh` (`None` when shorter than one).
pub fn parse_frag6(fh: &[u8]) -> Option<Frag6> {
    let fh = fh.get(..FRAG6_HLEN)?;
    let next = u8::from(Ipv6ExtHeader::new_unchecked(fh).next_header());
    let f = Ipv6FragmentHeader::new_checked(&fh[2..]).ok()?;
    Some(Frag6 {
        next,
        offset: usize::from(f.frag_offset()) * 8, // in 8-byte units on the wire
        more: f.more_frags(),
        ident: f.ident(),
    })
}

/// The IPv4 header length a frame's IP header says (the frame at least [`ETH_HLEN`] +
/// [`IPV4_HLEN`] bytes).
pub fn ipv4_header_len(ip: &[u8]) -> usize {
    usize::from(Ipv4Packet::new_unchecked(ip).header_len())
}

/// The checksum of an L4 segment (its checksum field zero) with the pseudo-header.
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> u16 {
    !checksum::combine(&[pseudo_sum(src, dst, proto, l4.len()), checksum::data(l4)])
}

/// The pseudo-header sum alone (not complemented): what an L4 checksum field holds when
/// the receiver completes the checksum (a partial checksum, `frame::TxMeta`).
pub fn pseudo_sum(src: IpAddr, dst: IpAddr, proto: u8, l4_len: usize) -> u16 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            checksum::pseudo_header_v4(&s, &d, IpProtocol::from(proto), l4_len as u32)
        }
        _ => checksum::pseudo_header_v6(
            &to_v6(src),
            &to_v6(dst),
            IpProtocol::from(proto),
            l4_len as u32,
        ),
    }
}

/// Writes the checksum of the L4 segment starting at `buf[l4..]` at `l4 + field`: with
/// the pseudo-header, except for ICMPv4, whose checksum covers the message alone (and a
/// UDP checksum of 0 is sent as `0xffff`).
pub fn fill_l4_checksum(
    buf: &mut [u8],
    l4: usize,
    field: usize,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
) {
    buf[l4 + field..l4 + field + 2].copy_from_slice(&[0, 0]);
    let mut sum = if proto == PROTO_ICMP && src.is_ipv4() {
        !checksum::data(&buf[l4..])
    } else {
        l4_checksum(src, dst, proto, &buf[l4..])
    };
    if proto == PROTO_UDP && sum == 0 {
        sum = 0xffff;
    }
    buf[l4 + field..l4 + field + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Writes a partial checksum (the pseudo-header sum, for the receiver to complete).
pub fn set_partial_checksum(buf: &mut [u8], l4: usize, field: usize, sum: u16) {
    buf[l4 + field..l4 + field + 2].copy_from_slice(&sum.to_be_bytes());
}

/// ICMP and ICMPv6 messages: the fixed header and the echo identifier.
pub mod icmp {
    use super::*;

    /// An ICMP(v6) message's type, if it has one byte.
    pub fn msg_type(msg: &[u8]) -> Option<u8> {
        msg.first().copied()
    }

    /// An ICMP(v6) message's type and code, if it has them.
    pub fn type_code(msg: &[u8]) -> Option<(u8, u8)> {
        Some((*msg.first()?, *msg.get(1)?))
    }

    /// The identifier of an echo request or reply (the message at least
    /// [`ICMP_HLEN`] bytes; the field sits alike in ICMP and ICMPv6).
    pub fn echo_ident(msg: &[u8]) -> Option<u16> {
        Some(Icmpv4Packet::new_checked(msg).ok()?.echo_ident())
    }

    /// Sets the identifier of an echo message of at least [`ICMP_HLEN`] bytes.
    pub fn set_echo_ident(msg: &mut [u8], id: u16) {
        Icmpv4Packet::new_unchecked(msg).set_echo_ident(id);
    }

    /// The fixed header of an error message: type, code, a zero checksum, `rest`.
    pub fn write_header(msg: &mut [u8], ty: u8, code: u8, rest: [u8; 4]) {
        msg[..4].copy_from_slice(&[ty, code, 0, 0]);
        msg[4..ICMP_HLEN].copy_from_slice(&rest);
    }

    /// The four bytes after the checksum of an error that carries an MTU: IPv4's
    /// "fragmentation needed" (its low 16 bits after two unused bytes), IPv6's
    /// "packet too big" (all 32 bits); zero for other errors.
    pub fn error_rest(v6: bool, ty: u8, code: u8, mtu: u32) -> [u8; 4] {
        let mut rest = [0u8; 4];
        match (v6, ty, code) {
            (false, 3, 4) => rest[2..4].copy_from_slice(&(mtu.min(65535) as u16).to_be_bytes()),
            (true, 2, _) => rest.copy_from_slice(&mtu.to_be_bytes()),
            _ => {}
        }
        rest
    }

    /// A zero checksum field, for the kernel to fill (an ICMPv6 raw socket).
    pub fn clear_checksum(msg: &mut [u8]) {
        Icmpv4Packet::new_unchecked(msg).set_checksum(0);
    }

    /// ICMP's own checksum (no pseudo-header) of an echo message, for a raw socket.
    pub fn fill_checksum_v4(msg: &mut [u8]) {
        Icmpv4Packet::new_unchecked(msg).fill_checksum();
    }
}

/// NDP messages (inside ICMPv6).
pub mod ndp {
    use super::*;

    /// Length of the neighbour advertisement [`write_na`] writes (with a target
    /// link-layer address option).
    pub const NA_LEN: usize = 32;

    /// The target of a neighbour solicitation (`None` when it is cut short).
    pub fn ns_target(msg: &[u8]) -> Option<Ipv6Addr> {
        let p = Icmpv6Packet::new_checked(msg).ok()?;
        (msg.len() >= 24).then(|| p.target_addr())
    }

    /// A solicited neighbour advertisement for `target` at the engine's MAC `mac`
    /// (router, solicited, override), checksum zero, into the first [`NA_LEN`] bytes of
    /// `msg`.
    pub fn write_na(msg: &mut [u8], target: Ipv6Addr, mac: [u8; 6]) {
        let msg = &mut msg[..NA_LEN];
        msg.fill(0);
        let na = NdiscRepr::NeighborAdvert {
            flags: NdiscNeighborFlags::ROUTER
                | NdiscNeighborFlags::SOLICITED
                | NdiscNeighborFlags::OVERRIDE,
            target_addr: target,
            lladdr: Some(RawHardwareAddress::from_bytes(&mac)),
        };
        na.emit(&mut Icmpv6Packet::new_unchecked(msg));
    }
}

/// The UDP header.
pub mod udp {
    use super::*;

    /// The UDP header `sport → dport` of a datagram of `len` bytes (header included),
    /// checksum zero.
    pub fn header(sport: u16, dport: u16, len: usize) -> [u8; UDP_HLEN] {
        let mut h = [0u8; UDP_HLEN];
        h[0..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dport.to_be_bytes());
        h[4..6].copy_from_slice(&(len.min(65535) as u16).to_be_bytes());
        h
    }
}

/// The TCP header.
pub mod tcp {
    use super::*;

    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;

    /// The six classic flag bits of a checked TCP view, as the header carries them.
    pub fn flags<T: AsRef<[u8]>>(p: &smoltcp::wire::TcpPacket<T>) -> u8 {
        [
            (p.fin(), FIN),
            (p.syn(), SYN),
            (p.rst(), RST),
            (p.psh(), PSH),
            (p.ack(), ACK),
            (p.urg(), URG),
        ]
        .iter()
        .fold(0, |acc, &(set, bit)| if set { acc | bit } else { acc })
    }

    /// Fields of a TCP header to write.
    #[derive(Debug, Clone, Copy)]
    pub struct Fields {
        pub sport: u16,
        pub dport: u16,
        pub seq: u32,
        pub ack: u32,
        pub flags: u8,
        pub window: u16,
    }

    /// Writes the header and `opts` at the start of `t` (checksum and urgent pointer
    /// zero); returns their length.
    pub fn write(t: &mut [u8], f: &Fields, opts: &[u8]) -> usize {
        let hl = TCP_HLEN + opts.len();
        let t = &mut t[..hl];
        t[0..2].copy_from_slice(&f.sport.to_be_bytes());
        t[2..4].copy_from_slice(&f.dport.to_be_bytes());
        t[4..8].copy_from_slice(&f.seq.to_be_bytes());
        t[8..12].copy_from_slice(&f.ack.to_be_bytes());
        t[12] = ((hl / 4) as u8) << 4;
        t[13] = f.flags;
        t[14..16].copy_from_slice(&f.window.to_be_bytes());
        t[16..20].copy_from_slice(&[0, 0, 0, 0]);
        t[TCP_HLEN..].copy_from_slice(opts);
        hl
    }

    /// The first 8 bytes of a TCP header `sport → dport` with sequence number `seq`.
    pub fn first8(sport: u16, dport: u16, seq: u32) -> [u8; STAND_IN_L4] {
        let mut h = [0u8; STAND_IN_L4];
        h[0..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dport.to_be_bytes());
        h[4..8].copy_from_slice(&seq.to_be_bytes());
        h
    }

    /// SYN options: MSS, window scale when `wscale` is given, SACK-permitted when `sack`.
    pub fn syn_options(
        mss: u16,
        wscale: Option<u8>,
        sack: bool,
        ts: Option<(u32, u32)>,
    ) -> ([u8; 24], usize) {
        let m = mss.to_be_bytes();
        let mut o = [0u8; 24];
        o[..4].copy_from_slice(&[2, 4, m[0], m[1]]);
        let mut n = 4;
        if let Some(ws) = wscale {
            o[n..n + 4].copy_from_slice(&[1, 3, 3, ws]);
            n += 4;
        }
        if sack {
            o[n..n + 4].copy_from_slice(&[1, 1, 4, 2]);
            n += 4;
        }
        if let Some(t) = ts {
            o[n..n + TS_LEN].copy_from_slice(&ts_option(t.0, t.1));
            n += TS_LEN;
        }
        (o, n)
    }

    /// Bytes the timestamps option takes (two NOPs for alignment, then kind 8).
    pub const TS_LEN: usize = 12;

    /// The timestamps option (RFC 7323) after two NOPs.
    pub fn ts_option(tsval: u32, tsecr: u32) -> [u8; TS_LEN] {
        let mut o = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
        o[4..8].copy_from_slice(&tsval.to_be_bytes());
        o[8..].copy_from_slice(&tsecr.to_be_bytes());
        o
    }

    /// Most SACK blocks an ACK carries: 3 fit beside other options, as Linux sends them.
    pub const SACK_BLOCKS: usize = 3;

    /// The SACK option (two NOPs first, for alignment) with `blocks`; its length, 0 when
    /// there are no blocks.
    pub fn sack_option(
        blocks: impl Iterator<Item = (u32, u32)>,
    ) -> ([u8; 4 + 8 * SACK_BLOCKS], usize) {
        let mut o = [0u8; 4 + 8 * SACK_BLOCKS];
        let mut n = 4;
        for (start, end) in blocks.take(SACK_BLOCKS) {
            o[n..n + 4].copy_from_slice(&start.to_be_bytes());
            o[n + 4..n + 8].copy_from_slice(&end.to_be_bytes());
            n += 8;
        }
        if n == 4 {
            return (o, 0);
        }
        o[..4].copy_from_slice(&[1, 1, 5, (n - 2) as u8]);
        (o, n)
    }
}

/// The virtio-net header in front of each frame on a tap with `IFF_VNET_HDR`.
pub mod vnet {
    /// `struct virtio_net_hdr`: flags, gso_type, hdr_len, gso_size, csum_start,
    /// csum_offset (native byte order).
    pub const LEN: usize = 10;

    /// The header's fields.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Hdr {
        pub flags: u8,
        pub gso_type: u8,
        pub hdr_len: u16,
        pub gso_size: u16,
        pub csum_start: u16,
        pub csum_offset: u16,
    }

    pub fn write(h: &mut [u8], v: &Hdr) {
        h[0] = v.flags;
        h[1] = v.gso_type;
        h[2..4].copy_from_slice(&v.hdr_len.to_ne_bytes());
        h[4..6].copy_from_slice(&v.gso_size.to_ne_bytes());
        h[6..8].copy_from_slice(&v.csum_start.to_ne_bytes());
        h[8..10].copy_from_slice(&v.csum_offset.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ip_writer_checksums_ipv4_and_sets_df() {
        let mut buf = [0u8; ETH_HLEN + IPV4_HLEN + 8];
        let (s, d) = (
            IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)),
        );
        let l4 = write_ip(&mut buf, Macs::default(), s, d, PROTO_UDP, 8, 64);
        assert_eq!(l4, ETH_HLEN + IPV4_HLEN);
        let ip = Ipv4Packet::new_checked(&buf[ETH_HLEN..]).unwrap();
        assert!(ip.verify_checksum());
        assert!(ip.dont_frag());
        assert_eq!(ip.total_len(), 28);
        assert_eq!(ethertype(&buf), ETHERTYPE_IPV4);
    }

    #[test]
    fn a_fragment_header_reads_back() {
        let mut h = [0u8; IPV6_HLEN + FRAG6_HLEN];
        let src = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let ip = IpHeader {
            src,
            dst: src,
            proto: PROTO_UDP,
            l4_len: 100,
            hop: 64,
            ident: 0,
            dont_frag: true,
        };
        emit_ip(&mut h, &ip);
        assert_eq!(set_ipv6_fragment(&mut h, 96, 0xdead_beef, 1232, true), 48);
        // The offset field holds 8-byte units, with M in its lowest bit.
        assert_eq!(
            &h[IPV6_HLEN + 2..IPV6_HLEN + 4],
            &(1232u16 | 1).to_be_bytes()
        );
        let f = parse_frag6(&h[IPV6_HLEN..]).unwrap();
        assert_eq!(
            f,
            Frag6 {
                next: PROTO_UDP,
                offset: 1232,
                more: true,
                ident: 0xdead_beef
            }
        );
    }
}
