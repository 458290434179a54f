//! Frames to the guest: where they are built and how they leave.
//!
//! How it works: a handler asks [`Out::emit`] for room for one frame; the guest side
//! ([`GuestTx`]) hands out a slice of its own preallocated buffer (the stream
//! attachment's write buffer, right after the 4-byte length), the handler writes the
//! frame there — TCP payload goes straight from the socket into it — and `emit` commits
//! it, recording it in the pcap file first. There is no per-frame allocation and one
//! copy from a socket to the guest.
//!
//! Headers are written by [`write_ip`] (Ethernet + IPv4/IPv6) and checksummed with
//! [`l4_checksum`] (smoltcp's RFC 1071 code). IPv4 packets go out with DF and TTL 64;
//! IPv6 with hop limit 64, or 255 for NDP. A datagram bigger than the guest's MTU (a
//! large UDP datagram or echo reply) is built in a side buffer and sent as fragments.
//!
//! What holds: a frame is committed only when complete; when the guest side is full,
//! `emit` returns false and counts a drop (TCP retries later, everything else is lost as
//! it would be on a congested link).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smoltcp::wire::{IpProtocol, checksum};

use crate::config::ENGINE_MAC;
use crate::fragment;
use crate::pcap::Pcap;

pub const ETH_HLEN: usize = 14;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const TCP_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// The guest side of the link, as the engine writes to it.
pub trait GuestTx {
    /// Room for a frame of up to `len` bytes, or `None` while the guest side is full.
    fn reserve(&mut self, len: usize) -> Option<&mut [u8]>;
    /// The first `len` bytes of the last reserved room are a frame: send it.
    fn commit(&mut self, len: usize);
    /// Whether frames may leave unfinished ([`TxMeta`]): with a partial checksum, and as
    /// TCP segments larger than the MTU that the receiver takes whole or cuts (a tap with
    /// a virtio-net header).
    fn offloads(&self) -> bool {
        false
    }
    /// As `commit`, for a frame that `meta` says how to finish (only when `offloads()`).
    fn commit_meta(&mut self, len: usize, meta: TxMeta) {
        let _ = meta;
        self.commit(len);
    }
}

/// How the receiver finishes a frame the engine left unfinished on purpose: the
/// virtio-net header's fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxMeta {
    /// Where the L4 header starts, when its checksum field holds only the pseudo-header
    /// sum (0: the checksum is complete).
    pub csum_start: u16,
    /// Where the checksum field is within the L4 header.
    pub csum_offset: u16,
    /// Segment size to cut a TCP super-segment into (0: an ordinary frame).
    pub gso_size: u16,
    /// The segment is IPv6 (for the segmentation type).
    pub gso_v6: bool,
    /// Length of the headers (Ethernet to TCP) before the payload.
    pub hdr_len: u16,
}

/// Frames kept in memory, for tests and fuzzing.
#[derive(Debug, Default)]
pub struct MemTx {
    pub frames: Vec<Vec<u8>>,
    /// What each frame said about finishing it (default for ordinary frames).
    pub metas: Vec<TxMeta>,
    scratch: Vec<u8>,
    /// When set, at most this many frames are accepted (to test backpressure).
    pub limit: Option<usize>,
    /// Pretend to be a tap with offloads.
    pub offload: bool,
}

impl MemTx {
    /// A guest side that takes unfinished frames ([`TxMeta`]), as a tap with offloads.
    pub fn with_offloads() -> MemTx {
        MemTx {
            offload: true,
            ..MemTx::default()
        }
    }
}

impl GuestTx for MemTx {
    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.limit.is_some_and(|l| self.frames.len() >= l) {
            return None;
        }
        if self.scratch.len() < len {
            self.scratch.resize(len, 0);
        }
        Some(&mut self.scratch[..len])
    }

    fn commit(&mut self, len: usize) {
        self.commit_meta(len, TxMeta::default());
    }

    fn offloads(&self) -> bool {
        self.offload
    }

    fn commit_meta(&mut self, len: usize, meta: TxMeta) {
        self.frames.push(self.scratch[..len].to_vec());
        self.metas.push(meta);
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxCounters {
    pub frames: u64,
    pub bytes: u64,
    pub dropped_full: u64,
    /// Datagrams too big for the guest's MTU, sent as fragments.
    pub fragmented: u64,
}

/// The guest side plus what watches it.
pub struct Out<G> {
    pub guest: G,
    pub pcap: Option<Pcap>,
    /// Destination of every frame; learned from the guest's frames.
    pub guest_mac: [u8; 6],
    pub counters: TxCounters,
    /// The guest's MTU (IP bytes per frame): bigger datagrams go out in fragments.
    mtu: usize,
    /// Where a datagram bigger than the MTU is built before it is cut; allocated the
    /// first time one is.
    big: Vec<u8>,
    frag_id: u32,
}

impl<G: GuestTx> Out<G> {
    pub fn new(guest: G, guest_mac: [u8; 6], mtu: u16) -> Out<G> {
        Out {
            guest,
            pcap: None,
            guest_mac,
            counters: TxCounters::default(),
            mtu: usize::from(mtu),
            big: Vec::new(),
            frag_id: 0,
        }
    }

    /// Builds one frame of at most `max_len` bytes with `build` (which gets the room and
    /// the guest's MAC and returns the frame length, 0 to send nothing) and sends it; an
    /// IP packet bigger than the MTU leaves in fragments (`fragment.rs`).
    pub fn emit(
        &mut self,
        max_len: usize,
        build: impl FnOnce(&mut [u8], [u8; 6]) -> usize,
    ) -> bool {
        if max_len > ETH_HLEN + self.mtu {
            return self.emit_fragmented(max_len, build);
        }
        self.emit_meta(max_len, |buf, mac| (build(buf, mac), TxMeta::default()))
    }

    fn emit_fragmented(
        &mut self,
        max_len: usize,
        build: impl FnOnce(&mut [u8], [u8; 6]) -> usize,
    ) -> bool {
        let mut big = std::mem::take(&mut self.big);
        if big.len() < max_len {
            big.resize(max_len, 0);
        }
        let len = build(&mut big[..max_len], self.guest_mac).min(max_len);
        let frame = &big[..len];
        let sent = if len <= ETH_HLEN + self.mtu {
            self.emit_meta(len, |buf, _| {
                buf[..len].copy_from_slice(frame);
                (len, TxMeta::default())
            })
        } else {
            let count = fragment::fragment_count(frame, self.mtu);
            self.frag_id = self.frag_id.wrapping_add(1);
            let (id, mtu) = (self.frag_id, self.mtu);
            // A fragment lost to a full guest side loses the datagram: stop there.
            let sent = count > 0
                && (0..count).all(|index| {
                    self.emit_meta(ETH_HLEN + mtu, |buf, _| {
                        let n = fragment::write_fragment(frame, mtu, id, index, buf);
                        (n, TxMeta::default())
                    })
                });
            self.counters.fragmented += u64::from(sent);
            sent
        };
        self.big = big;
        sent
    }

    /// As `emit`, for a frame the guest side finishes as `build` says (see [`TxMeta`];
    /// only when `guest.offloads()`). The pcap shows it unfinished, as tcpdump would.
    pub fn emit_meta(
        &mut self,
        max_len: usize,
        build: impl FnOnce(&mut [u8], [u8; 6]) -> (usize, TxMeta),
    ) -> bool {
        let mac = self.guest_mac;
        let Some(buf) = self.guest.reserve(max_len) else {
            self.counters.dropped_full += 1;
            return false;
        };
        let (len, meta) = build(buf, mac);
        let len = len.min(buf.len());
        if len == 0 {
            return false;
        }
        if let Some(p) = self.pcap.as_mut() {
            p.record(&buf[..len]);
        }
        self.guest.commit_meta(len, meta);
        self.counters.frames += 1;
        self.counters.bytes += len as u64;
        true
    }

    /// Whether the guest side has room for a frame of `len` bytes right now.
    pub fn has_room(&mut self, len: usize) -> bool {
        self.guest.reserve(len).is_some()
    }
}

pub fn ip_hlen(v6: bool) -> usize {
    if v6 { IPV6_HLEN } else { IPV4_HLEN }
}

/// Writes the Ethernet and IP headers of a packet `src → dst` carrying `l4_len` bytes of
/// protocol `proto`; returns where the L4 header starts. `buf` must hold the whole frame.
pub fn write_ip(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4_len: usize,
    hop: u8,
) -> usize {
    buf[0..6].copy_from_slice(&dst_mac);
    buf[6..12].copy_from_slice(&ENGINE_MAC);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            buf[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let ip = &mut buf[ETH_HLEN..ETH_HLEN + IPV4_HLEN];
            let total = (IPV4_HLEN + l4_len) as u16;
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[4..6].copy_from_slice(&[0, 0]);
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
            ip[8] = hop;
            ip[9] = proto;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let sum = !checksum::data(ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            ETH_HLEN + IPV4_HLEN
        }
        _ => {
            let s = to_v6(src);
            let d = to_v6(dst);
            buf[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let ip = &mut buf[ETH_HLEN..ETH_HLEN + IPV6_HLEN];
            ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            ip[6] = proto;
            ip[7] = hop;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            ETH_HLEN + IPV6_HLEN
        }
    }
}

pub fn to_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// The checksum of an L4 segment (its checksum field zero) with the pseudo-header.
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> u16 {
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            checksum::pseudo_header_v4(&s, &d, IpProtocol::from(proto), l4.len() as u32)
        }
        _ => checksum::pseudo_header_v6(
            &to_v6(src),
            &to_v6(dst),
            IpProtocol::from(proto),
            l4.len() as u32,
        ),
    };
    !checksum::combine(&[pseudo, checksum::data(l4)])
}

/// The pseudo-header sum alone (not complemented): what an L4 checksum field holds when
/// the receiver completes the checksum (a partial checksum, [`TxMeta::csum_start`]).
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

/// Writes the checksum of the L4 segment starting at `buf[l4..]` at `l4 + field`.
pub fn fill_l4_checksum(
    buf: &mut [u8],
    l4: usize,
    field: usize,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
) {
    buf[l4 + field..l4 + field + 2].copy_from_slice(&[0, 0]);
    let mut sum = l4_checksum(src, dst, proto, &buf[l4..]);
    if proto == PROTO_UDP && sum == 0 {
        sum = 0xffff;
    }
    buf[l4 + field..l4 + field + 2].copy_from_slice(&sum.to_be_bytes());
}

/// An unspecified address of the family of `a`.
pub fn unspecified_like(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// One IP packet from the guest, after the checked parse in `engine`.
#[derive(Debug, Clone, Copy)]
pub struct IpPacket<'a> {
    pub src_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub hop: u8,
    /// The L4 bytes (bounded by the IP length fields, not the frame).
    pub payload: &'a [u8],
    /// The whole IP packet, for ICMP errors that quote it.
    pub packet: &'a [u8],
}

impl IpPacket<'_> {
    pub fn is_v6(&self) -> bool {
        self.src.is_ipv6()
    }
}
