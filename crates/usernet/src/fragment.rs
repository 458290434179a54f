//! IP fragments, both ways.
//!
//! A guest whose MTU is smaller than a datagram (8 KiB of UDP on MTU 1500, a large ping)
//! sends it in fragments: IPv4 packets with an offset and the more-fragments flag, or IPv6
//! packets with a Fragment header right after the fixed header. The engine's sockets take
//! whole datagrams, so [`Reassembly`] puts fragments back together; towards the guest,
//! [`write_fragment`] cuts a datagram bigger than the guest's MTU into fragments the
//! guest's stack reassembles (`frame.rs` calls it for every frame that does not fit).
//!
//! Reassembly: a few slots ([`SLOTS`]), each keyed by (source, destination, protocol,
//! identification) — for IPv6 without the protocol, which only the first fragment's
//! Fragment header decides (RFC 8200) — each with a buffer of the largest datagram,
//! allocated the first time the slot is used and reused after. smoltcp's `Assembler`
//! keeps which byte ranges arrived; a datagram is complete when its last fragment came
//! and the bytes before it are contiguous. The complete datagram gets a synthetic IP
//! header in front (so errors about it can quote it, as for any packet) and goes on as if
//! it had come whole.
//!
//! What holds (a hostile guest cannot grow memory or confuse the engine): at most
//! `SLOTS` datagrams are under way, a newcomer takes the slot of the oldest; a datagram is
//! dropped when a fragment overlaps one already there (RFC 5722), when it would exceed
//! 65,535 bytes (the "ping of death"), when a non-last fragment is not a multiple of 8
//! bytes, when two fragments claim different ends, when it has more holes than the
//! assembler tracks, or after [`TIMEOUT`] unfinished. Each drop is counted.
//!
//! Why by hand: smoltcp's own reassembly lives inside its `Interface` (not public), and
//! no maintained crate offers IPv4 and IPv6 reassembly over caller-owned buffers.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use smoltcp::storage::Assembler;

use crate::wire::{
    ETH_HLEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, IPV4_HLEN, IPV6_HLEN, IpHeader, emit_ip, ethertype,
    ipv4_header_len, set_ipv4_fragment, set_ipv6_fragment,
};
pub use crate::wire::{FRAG6_HLEN, PROTO_FRAGMENT6};

/// Datagrams reassembled at once.
pub const SLOTS: usize = 4;
/// An unfinished datagram is dropped after this long (Linux waits 30 s; a guest one hop
/// away sends its fragments back to back).
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Room for the synthetic header in front of a reassembled payload.
const HDR_ROOM: usize = IPV6_HLEN;
/// The largest payload: what an IPv4 total length (65,535) leaves after the header;
/// IPv6's payload length field allows a little more, but no guest datagram needs it.
const MAX_PAYLOAD: usize = 65535 - IPV4_HLEN;

/// Which datagram a fragment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4's protocol; 0 for IPv6.
    pub proto: u8,
    pub id: u32,
}

/// One fragment, as the IP parser found it.
#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    pub key: Key,
    /// The protocol this fragment names (for IPv6, the first fragment's counts).
    pub proto: u8,
    /// Where `data` goes in the datagram's payload, in bytes.
    pub offset: usize,
    pub more: bool,
    pub hop: u8,
    pub data: &'a [u8],
}

/// What adding a fragment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Kept; the datagram is not complete yet.
    Pending,
    /// The datagram in this slot is complete: [`Reassembly::take`] it.
    Complete(usize),
    /// The fragment (and its datagram) were dropped.
    Dropped,
}

/// A complete datagram, lent out of its slot (give it back with [`Reassembly::put_back`]).
pub struct Datagram {
    pub key: Key,
    pub proto: u8,
    pub hop: u8,
    /// The synthetic IP header followed by the payload.
    pub buf: Vec<u8>,
    /// Where the IP header starts in `buf`.
    pub start: usize,
    pub len: usize,
}

impl Datagram {
    /// The datagram as one IP packet (synthetic header, payload).
    pub fn packet(&self) -> &[u8] {
        &self.buf[self.start..HDR_ROOM + self.len]
    }

    /// The payload alone (the L4 header and data).
    pub fn payload(&self) -> &[u8] {
        &self.buf[HDR_ROOM..HDR_ROOM + self.len]
    }
}

struct Slot {
    key: Option<Key>,
    buf: Vec<u8>,
    got: Assembler,
    /// The payload length, once the last fragment arrived.
    end: Option<usize>,
    proto: u8,
    hop: u8,
    since: Option<Instant>,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            key: None,
            buf: Vec::new(),
            got: Assembler::new(),
            end: None,
            proto: 0,
            hop: 0,
            since: None,
        }
    }
}

impl Slot {
    fn clear(&mut self) {
        self.key = None;
        self.got.clear();
        self.end = None;
        self.since = None;
    }
}

#[derive(Default)]
pub struct Reassembly {
    slots: [Slot; SLOTS],
    /// Datagrams dropped unfinished (overlap, oversize, timeout, evicted, malformed).
    pub dropped: u64,
    pub completed: u64,
}

impl Reassembly {
    pub fn add(&mut self, f: &Fragment<'_>, now: Instant) -> Added {
        let i = match self.slots.iter().position(|s| s.key == Some(f.key)) {
            Some(i) => i,
            None => {
                let i = self.free_slot();
                let s = &mut self.slots[i];
                s.key = Some(f.key);
                s.proto = f.proto;
                s.hop = f.hop;
                s.since = Some(now);
                if s.buf.len() < HDR_ROOM + MAX_PAYLOAD {
                    // Once per slot for the life of the engine.
                    s.buf.resize(HDR_ROOM + MAX_PAYLOAD, 0);
                }
                i
            }
        };
        if self.place(i, f) {
            let s = &self.slots[i];
            match s.end {
                Some(end) if s.got.peek_front() == end => Added::Complete(i),
                _ => Added::Pending,
            }
        } else {
            self.slots[i].clear();
            self.dropped += 1;
            Added::Dropped
        }
    }

    /// Puts `f` into slot `i`; false when the datagram must be dropped.
    fn place(&mut self, i: usize, f: &Fragment<'_>) -> bool {
        let s = &mut self.slots[i];
        let (start, end) = (f.offset, f.offset + f.data.len());
        if end > MAX_PAYLOAD || (f.more && (f.data.is_empty() || !f.data.len().is_multiple_of(8))) {
            return false;
        }
        if s.got.iter_data().any(|(a, b)| start < b && a < end) {
            return false; // overlaps what arrived (RFC 5722)
        }
        if !f.more {
            if s.end.is_some_and(|e| e != end) || s.got.iter_data().any(|(_, b)| b > end) {
                return false;
            }
            s.end = Some(end);
        } else if s.end.is_some_and(|e| end > e) {
            return false;
        }
        if s.got.add(start, f.data.len()).is_err() {
            return false;
        }
        s.buf[HDR_ROOM + start..HDR_ROOM + end].copy_from_slice(f.data);
        if start == 0 {
            s.proto = f.proto;
        }
        true
    }

    /// A slot for a new datagram: a free one, else the oldest (its datagram is dropped).
    fn free_slot(&mut self) -> usize {
        if let Some(i) = self.slots.iter().position(|s| s.key.is_none()) {
            return i;
        }
        let oldest = (0..SLOTS).min_by_key(|&i| self.slots[i].since).unwrap_or(0);
        self.slots[oldest].clear();
        self.dropped += 1;
        oldest
    }

    /// Takes the complete datagram out of slot `i`, with its synthetic IP header written.
    pub fn take(&mut self, i: usize) -> Option<Datagram> {
        let s = self.slots.get_mut(i)?;
        let key = s.key?;
        let len = s.end?;
        let mut buf = std::mem::take(&mut s.buf);
        let (proto, hop) = (s.proto, s.hop);
        s.clear();
        self.completed += 1;
        let start = write_header(&mut buf[..HDR_ROOM], &key, proto, hop, len);
        Some(Datagram {
            key,
            proto,
            hop,
            buf,
            start,
            len,
        })
    }

    /// Returns a datagram's buffer to its slot, for the next datagram.
    pub fn put_back(&mut self, i: usize, d: Datagram) {
        if let Some(s) = self.slots.get_mut(i)
            && s.buf.is_empty()
        {
            s.buf = d.buf;
        }
    }

    /// When [`Reassembly::expire`] has work next (none: no datagram is under way).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.since)
            .min()
            .map(|t| t + TIMEOUT)
    }

    /// Drops datagrams unfinished for longer than [`TIMEOUT`].
    pub fn expire(&mut self, now: Instant) {
        for s in &mut self.slots {
            if s.since
                .is_some_and(|t| now.saturating_duration_since(t) > TIMEOUT)
            {
                s.clear();
                self.dropped += 1;
            }
        }
    }
}

/// Writes the IP header of a reassembled datagram right before `HDR_ROOM` (the end of
/// `room`); returns where it starts.
fn write_header(room: &mut [u8], key: &Key, proto: u8, hop: u8, len: usize) -> usize {
    let v4 = key.src.is_ipv4() && key.dst.is_ipv4();
    let start = if v4 { HDR_ROOM - IPV4_HLEN } else { 0 };
    let h = IpHeader {
        src: key.src,
        dst: key.dst,
        proto,
        l4_len: len,
        hop,
        ident: key.id as u16,
        dont_frag: false,
    };
    emit_ip(&mut room[start..HDR_ROOM], &h);
    start
}

/// The payload bytes each fragment of a frame carries on a link of `mtu`, or `None`
/// when `frame` is not an IP packet this can cut (it then goes out whole).
fn chunk(frame: &[u8], mtu: usize) -> Option<(usize, usize)> {
    if frame.len() < ETH_HLEN {
        return None;
    }
    match ethertype(frame) {
        ETHERTYPE_IPV4 if frame.len() >= ETH_HLEN + IPV4_HLEN => {
            let hl = ipv4_header_len(&frame[ETH_HLEN..]);
            (hl >= IPV4_HLEN && mtu > hl + 8).then_some((hl, (mtu - hl) / 8 * 8))
        }
        ETHERTYPE_IPV6 if frame.len() >= ETH_HLEN + IPV6_HLEN => {
            let over = IPV6_HLEN + FRAG6_HLEN;
            (mtu > over + 8).then_some((IPV6_HLEN, (mtu - over) / 8 * 8))
        }
        _ => None,
    }
}

/// How many fragments [`write_fragment`] cuts `frame` into for a link of `mtu` (0: it
/// cannot be cut: not IP, or an MTU too small to carry anything).
pub fn fragment_count(frame: &[u8], mtu: usize) -> usize {
    match chunk(frame, mtu) {
        Some((hl, step)) => (frame.len().saturating_sub(ETH_HLEN + hl)).div_ceil(step),
        None => 0,
    }
}

/// Writes fragment number `index` of `frame` (Ethernet + IP, bigger than `mtu`) into
/// `out`; returns its length, or 0 when there is no such fragment. `id` identifies the
/// datagram (16 bits of it for IPv4). The L4 checksum was computed over the whole
/// datagram, as the receiver checks it after reassembly.
pub fn write_fragment(frame: &[u8], mtu: usize, id: u32, index: usize, out: &mut [u8]) -> usize {
    let Some((hl, step)) = chunk(frame, mtu) else {
        return 0;
    };
    let payload = &frame[ETH_HLEN + hl..];
    let offset = index * step;
    if offset >= payload.len() {
        return 0;
    }
    let part = &payload[offset..payload.len().min(offset + step)];
    let more = offset + part.len() < payload.len();
    out[..ETH_HLEN].copy_from_slice(&frame[..ETH_HLEN]);
    let ip = &frame[ETH_HLEN..ETH_HLEN + hl];
    let body = if hl == IPV6_HLEN && ethertype(frame) == ETHERTYPE_IPV6 {
        let h = &mut out[ETH_HLEN..];
        h[..IPV6_HLEN].copy_from_slice(ip);
        ETH_HLEN + set_ipv6_fragment(h, part.len(), id, offset, more)
    } else {
        let h = &mut out[ETH_HLEN..ETH_HLEN + hl];
        h.copy_from_slice(ip);
        set_ipv4_fragment(h, part.len(), id as u16, offset, more);
        ETH_HLEN + hl
    };
    out[body..body + part.len()].copy_from_slice(part);
    body + part.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::checksum;
    use std::net::Ipv4Addr;

    fn key(id: u32) -> Key {
        Key {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)),
            proto: 17,
            id,
        }
    }

    fn frag(id: u32, offset: usize, more: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            key: key(id),
            proto: 17,
            offset,
            more,
            hop: 64,
            data,
        }
    }

    #[test]
    fn fragments_in_any_order_make_the_datagram_with_a_valid_header() {
        let mut r = Reassembly::default();
        let now = Instant::now();
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        assert_eq!(
            r.add(&frag(7, 2400, false, &data[2400..]), now),
            Added::Pending
        );
        assert_eq!(r.add(&frag(7, 0, true, &data[..1200]), now), Added::Pending);
        let Added::Complete(i) = r.add(&frag(7, 1200, true, &data[1200..2400]), now) else {
            panic!("not complete")
        };
        let d = r.take(i).unwrap();
        assert_eq!(d.payload(), &data[..]);
        let ip = d.packet();
        assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), 20 + 3000);
        assert_eq!(checksum::data(&ip[..20]), 0xffff, "header checksum");
        r.put_back(i, d);
        assert_eq!(r.completed, 1);
    }

    #[test]
    fn an_ipv6_datagram_takes_its_protocol_from_the_first_fragment() {
        let k = Key {
            src: "fd00::15".parse().unwrap(),
            dst: "fd00::2".parse().unwrap(),
            proto: 0,
            id: 9,
        };
        let mut r = Reassembly::default();
        let now = Instant::now();
        let last = Fragment {
            key: k,
            proto: 59, // a later fragment may name anything (RFC 8200)
            offset: 8,
            more: false,
            hop: 64,
            data: &[2; 8],
        };
        let first = Fragment {
            proto: 17,
            offset: 0,
            more: true,
            data: &[1; 8],
            ..last
        };
        assert_eq!(r.add(&last, now), Added::Pending);
        let Added::Complete(i) = r.add(&first, now) else {
            panic!("not complete")
        };
        let d = r.take(i).unwrap();
        assert_eq!(d.proto, 17);
        assert_eq!(
            d.packet()[6],
            17,
            "next header of the synthetic IPv6 header"
        );
        assert_eq!(
            d.payload(),
            &[1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]
        );
    }

    #[test]
    fn an_overlapping_fragment_drops_the_datagram() {
        let mut r = Reassembly::default();
        let now = Instant::now();
        r.add(&frag(1, 0, true, &[0; 16]), now);
        assert_eq!(r.add(&frag(1, 8, false, &[1; 16]), now), Added::Dropped);
        assert_eq!(r.dropped, 1);
    }

    #[test]
    fn a_datagram_beyond_65535_bytes_is_dropped() {
        let mut r = Reassembly::default();
        let big = vec![0u8; 1024];
        assert_eq!(
            r.add(&frag(1, 65000, false, &big), Instant::now()),
            Added::Dropped
        );
    }

    #[test]
    fn a_non_last_fragment_not_a_multiple_of_8_is_dropped() {
        let mut r = Reassembly::default();
        assert_eq!(
            r.add(&frag(1, 0, true, &[0; 13]), Instant::now()),
            Added::Dropped
        );
    }

    #[test]
    fn a_fifth_datagram_evicts_the_oldest_and_memory_stays_at_the_slots() {
        let mut r = Reassembly::default();
        let t = Instant::now();
        for id in 0..100u32 {
            r.add(
                &frag(id, 0, true, &[0; 8]),
                t + Duration::from_millis(id.into()),
            );
        }
        assert_eq!(r.dropped, 100 - SLOTS as u64);
        assert_eq!(r.slots.iter().filter(|s| s.key.is_some()).count(), SLOTS);
        // The newest survive.
        assert!(r.slots.iter().any(|s| s.key == Some(key(99))));
    }

    #[test]
    fn an_unfinished_datagram_expires() {
        let mut r = Reassembly::default();
        let t = Instant::now();
        r.add(&frag(1, 0, true, &[0; 8]), t);
        r.expire(t + TIMEOUT + Duration::from_millis(1));
        assert_eq!(r.dropped, 1);
        assert!(r.slots.iter().all(|s| s.key.is_none()));
    }

    /// An IPv4 UDP frame of `n` payload bytes, as `write_ip` would make it.
    fn v4_frame(n: usize) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HLEN + IPV4_HLEN + n];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[ETH_HLEN] = 0x45;
        f[ETH_HLEN + 6] = 0x40; // DF, as the engine sends whole packets
        f[ETH_HLEN + 9] = 17;
        for (i, b) in f[ETH_HLEN + IPV4_HLEN..].iter_mut().enumerate() {
            *b = i as u8;
        }
        f
    }

    #[test]
    fn cut_fragments_fit_the_mtu_and_reassemble_to_the_frame() {
        let frame = v4_frame(4000);
        let mut r = Reassembly::default();
        let mut out = vec![0u8; 1514];
        let mut done = None;
        for index in 0.. {
            let n = write_fragment(&frame, 1500, 0x1234, index, &mut out);
            if n == 0 {
                break;
            }
            assert!(n <= ETH_HLEN + 1500, "fragment {index} is {n} bytes");
            let ip = &out[ETH_HLEN..n];
            assert_eq!(checksum::data(&ip[..20]), 0xffff);
            let flags = u16::from_be_bytes([ip[6], ip[7]]);
            assert_eq!(flags & 0x4000, 0, "no DF on a fragment");
            let f = Fragment {
                key: key(0x1234),
                proto: 17,
                offset: usize::from(flags & 0x1fff) * 8,
                more: flags & 0x2000 != 0,
                hop: 64,
                data: &ip[20..],
            };
            if let Added::Complete(i) = r.add(&f, Instant::now()) {
                done = r.take(i);
            }
        }
        assert_eq!(done.unwrap().payload(), &frame[ETH_HLEN + IPV4_HLEN..]);
    }
}
