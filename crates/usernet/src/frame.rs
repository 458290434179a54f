//! Frames to the guest: where they are built and how they leave.
//!
//! How it works: a handler asks [`Out::emit`] for room for one frame; the guest side
//! ([`GuestTx`]) hands out a slice of its own preallocated buffer (the stream
//! attachment's write buffer, right after the 4-byte length), the handler writes the
//! frame there — TCP payload goes straight from the socket into it — and `emit` commits
//! it, recording it in the pcap file first. There is no per-frame allocation and one
//! copy from a socket to the guest side. Where the guest side is the guest's own memory
//! (vhost-user, [`InPlace`]), a TCP segment's payload goes from the socket straight into
//! the guest's receive buffers ([`Out::emit_in_place`]): one copy, the kernel's.
//!
//! Headers are written by `wire` (Ethernet + IPv4/IPv6, the L4 headers, the one
//! checksum helper; re-exported here for the tests). IPv4 packets go out with DF and TTL
//! 64; IPv6 with hop limit 64, or 255 for NDP. A datagram bigger than the guest's MTU (a
//! large UDP datagram or echo reply) is built in a side buffer and sent as fragments.
//!
//! What holds: a frame is committed only when complete; when the guest side is full,
//! `emit` returns false and counts a drop (TCP retries later, everything else is lost as
//! it would be on a congested link).

use std::net::{IpAddr, SocketAddr};

pub use crate::counters::TxCounters;
use crate::fragment;
use crate::pcap::Pcap;
use crate::wire::{self, UDP_CHECKSUM};

pub use crate::wire::{
    ETH_HLEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, IPV4_HLEN, IPV6_HLEN, Macs,
    PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_HLEN, UDP_HLEN, fill_l4_checksum, ip_hlen,
    l4_checksum, pseudo_sum, to_v6, unspecified_like, write_ip,
};

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
    /// What a device under the guest side counted (vhost-user's queues).
    fn device_counters(&self) -> Option<crate::counters::DeviceCounters> {
        None
    }
    /// The guest's own buffers, where frames can be written in them ([`InPlace`]).
    fn in_place(&mut self) -> Option<&mut dyn InPlace> {
        None
    }
}

/// How a frame is written in place: `fill` gets the frame's headers as they stand and
/// the room after them, writes the payload into the room (the kernel, from a socket)
/// and the final headers over the old, and returns the payload's length (0: nothing to
/// send) and how the frame is to be finished.
pub type Fill<'f> = dyn FnMut(&mut [u8], &crate::sys::GuestIov<'_>) -> (usize, TxMeta) + 'f;

/// What became of a frame to be written in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// It went to the guest.
    Sent,
    /// `fill` had nothing to send.
    Nothing,
    /// No room: the guest side is full.
    Full,
    /// Not in place here (no such guest side, a capture running, the guest's buffers in
    /// too many pieces): build it in [`GuestTx::reserve`]'s room.
    Elsewhere,
}

/// A guest side whose frames can be written straight into the guest's own buffers
/// (vhost-user).
pub trait InPlace {
    /// Writes one frame of headers `head` (the guest side picks the guest's queue by
    /// their addresses) and up to `max` bytes of payload (see [`Fill`]).
    fn emit_in_place(&mut self, head: &mut [u8], max: usize, fill: &mut Fill<'_>) -> Placed;
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

/// The guest side plus what watches it.
pub struct Out<G> {
    pub guest: G,
    pub pcap: Option<Pcap>,
    /// Destination of every frame; learned from the guest's frames.
    pub guest_mac: [u8; 6],
    /// Source of every frame: the engine's MAC (`EngineConfig::engine_mac`).
    pub engine_mac: [u8; 6],
    pub counters: TxCounters,
    /// The guest's MTU (IP bytes per frame): bigger datagrams go out in fragments.
    mtu: usize,
    /// Where a datagram bigger than the MTU is built before it is cut; allocated the
    /// first time one is.
    big: Vec<u8>,
    frag_id: u32,
}

impl<G: GuestTx> Out<G> {
    pub fn new(guest: G, macs: Macs, mtu: u16) -> Out<G> {
        Out {
            guest,
            pcap: None,
            guest_mac: macs.dst,
            engine_mac: macs.src,
            counters: TxCounters::default(),
            mtu: usize::from(mtu),
            big: Vec::new(),
            frag_id: 0,
        }
    }

    /// The Ethernet addresses of a frame to the guest.
    pub fn macs(&self) -> Macs {
        Macs {
            dst: self.guest_mac,
            src: self.engine_mac,
        }
    }

    /// Builds one frame of at most `max_len` bytes with `build` (which gets the room and
    /// the frame's MACs, the guest's and the engine's, and returns the frame length, 0
    /// to send nothing) and sends it; an IP packet bigger than the MTU leaves in
    /// fragments (`fragment.rs`).
    pub fn emit(&mut self, max_len: usize, build: impl FnOnce(&mut [u8], Macs) -> usize) -> bool {
        if max_len > ETH_HLEN + self.mtu {
            return self.emit_fragmented(max_len, build);
        }
        self.emit_meta(max_len, |buf, mac| (build(buf, mac), TxMeta::default()))
    }

    fn emit_fragmented(
        &mut self,
        max_len: usize,
        build: impl FnOnce(&mut [u8], Macs) -> usize,
    ) -> bool {
        let mut big = std::mem::take(&mut self.big);
        if big.len() < max_len {
            big.resize(max_len, 0);
        }
        let len = build(&mut big[..max_len], self.macs()).min(max_len);
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

    /// A frame written straight into the guest's buffers ([`InPlace`]): `head` holds its
    /// headers as they stand, `fill` as there. While a capture runs, `Elsewhere` (the
    /// capture records frames as the engine builds them, in [`Out::emit_meta`]).
    pub fn emit_in_place(&mut self, head: &mut [u8], max: usize, fill: &mut Fill<'_>) -> Placed {
        if self.pcap.is_some() {
            return Placed::Elsewhere;
        }
        let Some(guest) = self.guest.in_place() else {
            return Placed::Elsewhere;
        };
        let mut len = 0;
        let mut counted = |head: &mut [u8], room: &crate::sys::GuestIov<'_>| {
            let (n, meta) = fill(head, room);
            len = n;
            (n, meta)
        };
        let placed = guest.emit_in_place(head, max, &mut counted);
        match placed {
            Placed::Full => self.counters.dropped_full += 1,
            Placed::Sent => {
                self.counters.frames += 1;
                self.counters.bytes += (head.len() + len) as u64;
            }
            Placed::Nothing | Placed::Elsewhere => {}
        }
        placed
    }

    /// As `emit`, for a frame the guest side finishes as `build` says (see [`TxMeta`];
    /// only when `guest.offloads()`). The pcap shows it unfinished, as tcpdump would.
    pub fn emit_meta(
        &mut self,
        max_len: usize,
        build: impl FnOnce(&mut [u8], Macs) -> (usize, TxMeta),
    ) -> bool {
        let mac = self.macs();
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

    /// Sends one UDP datagram `from → to` to the guest (`mac` overrides the destination
    /// MAC); the payload is copied once, into the frame.
    pub fn emit_udp(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        payload: &[u8],
        mac: Option<[u8; 6]>,
    ) -> bool {
        let total = ETH_HLEN + ip_hlen(to.is_ipv6()) + UDP_HLEN + payload.len();
        self.emit(total, |buf, macs| {
            let macs = mac.map_or(macs, |m| macs.to(m));
            write_udp(buf, macs, from, to, payload)
        })
    }

    /// Whether the guest side has room for a frame of `len` bytes right now.
    pub fn has_room(&mut self, len: usize) -> bool {
        self.guest.reserve(len).is_some()
    }
}

/// Writes a whole UDP frame `from → to`; returns its length.
pub fn write_udp(
    buf: &mut [u8],
    mac: Macs,
    from: SocketAddr,
    to: SocketAddr,
    payload: &[u8],
) -> usize {
    let len = UDP_HLEN + payload.len();
    let l4 = write_ip(buf, mac, from.ip(), to.ip(), PROTO_UDP, len, 64);
    buf[l4..l4 + UDP_HLEN].copy_from_slice(&wire::udp::header(from.port(), to.port(), len));
    buf[l4 + UDP_HLEN..l4 + len].copy_from_slice(payload);
    fill_l4_checksum(buf, l4, UDP_CHECKSUM, from.ip(), to.ip(), PROTO_UDP);
    l4 + len
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
    /// The whole IP packet, for ICMP errors that quote it (its first bytes only, when
    /// the rest is in `tail`).
    pub packet: &'a [u8],
    /// TCP data following `payload` in a vhost-user guest's own memory
    /// (`Engine::guest_frame_split`).
    pub tail: Option<&'a crate::sys::GuestIov<'a>>,
}

impl IpPacket<'_> {
    pub fn is_v6(&self) -> bool {
        self.src.is_ipv6()
    }
}
