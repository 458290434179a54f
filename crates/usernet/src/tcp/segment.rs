//! TCP segments: the checked view of what the guest sends, and the writer of what the
//! engine sends.
//!
//! Parsing uses smoltcp's `TcpPacket` (bounds-checked header length, option walker);
//! writing is direct into the frame buffer, because the payload is already there (peeked
//! from the socket) and only the 20-byte header, a few options and the checksum remain.

use std::net::SocketAddr;
use std::os::fd::AsFd;

use smoltcp::wire::TcpPacket;

use crate::sys::{self, GuestIov};

pub use crate::wire::tcp::{ACK, FIN, PSH, RST, SACK_BLOCKS, SYN, sack_option, syn_options};
use crate::wire::{
    ETH_HLEN, Macs, PROTO_TCP, TCP_CHECKSUM, TCP_HLEN, fill_l4_checksum, ip_hlen, pseudo_sum,
    set_partial_checksum, tcp, write_ip,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("TCP header cut short or with a bad data offset")]
    Malformed,
}

/// One segment from the guest.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    /// The SYN permits selective acknowledgements (RFC 2018).
    pub sack_permitted: bool,
    /// SACK blocks `[start, end)` (the first three).
    pub sack: [Option<(u32, u32)>; 3],
    /// The timestamps option (RFC 7323): `(TSval, TSecr)`.
    pub ts: Option<(u32, u32)>,
    pub payload: Payload<'a>,
    /// More of the guest's frames, read already, follow this one (`Ctx::frames_follow`):
    /// its data may wait to go to the socket with theirs (`gather.rs`).
    pub more: bool,
}

/// A segment's data: bytes of the frame and — from a vhost-user guest — those that
/// follow them in the guest's own memory (`tail`), which the engine hands to the kernel
/// ([`Payload::send`]) or copies out ([`Payload::copy_to`]) but never reads in place.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    head: &'a [u8],
    tail: Option<&'a GuestIov<'a>>,
    /// Where the payload starts in `tail` once `head` is used up.
    tail_from: usize,
}

impl<'a> Payload<'a> {
    pub fn bytes(head: &'a [u8]) -> Payload<'a> {
        Payload {
            head,
            tail: None,
            tail_from: 0,
        }
    }

    /// The same, with `tail` following.
    pub fn with_tail(self, tail: Option<&'a GuestIov<'a>>) -> Payload<'a> {
        Payload { tail, ..self }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail.map_or(0, |t| t.len() - self.tail_from)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload without its first `n` bytes (all of them, when `n` is longer).
    pub fn after(self, n: usize) -> Payload<'a> {
        let h = n.min(self.head.len());
        let rest = self.tail.map_or(0, |t| t.len() - self.tail_from);
        Payload {
            head: &self.head[h..],
            tail_from: self.tail_from + (n - h).min(rest),
            ..self
        }
    }

    /// Writes it to `sock` (non-blocking): how much the socket took, 0 when it is full.
    pub fn send(&self, sock: &socket2::Socket) -> std::io::Result<usize> {
        match self.tail {
            None => send(sock, self.head, &[]),
            Some(t) => full_is_zero(sys::send_from_guest(
                sock.as_fd(),
                self.head,
                t,
                self.tail_from,
            )),
        }
    }

    /// Copies `dst.len()` bytes from byte `from` on into `dst` (as many as there are).
    pub fn copy_to(&self, from: usize, dst: &mut [u8]) {
        let h = from.min(self.head.len());
        let n = (self.head.len() - h).min(dst.len());
        dst[..n].copy_from_slice(&self.head[h..h + n]);
        if let Some(t) = self.tail {
            let skip = self.tail_from + (from - h);
            sys::copy_from_guest(t, skip, &mut dst[n..]);
        }
    }
}

impl<'a> Segment<'a> {
    pub fn parse(l4: &'a [u8]) -> Result<Segment<'a>, SegmentError> {
        let packet = TcpPacket::new_checked(l4).map_err(|_| SegmentError::Malformed)?;
        let hl = usize::from(packet.header_len());
        if hl < TCP_HLEN || hl > l4.len() {
            return Err(SegmentError::Malformed);
        }
        let (mss, wscale, sack_permitted, sack, ts) = match packet.options_summary() {
            Ok(o) => (
                o.max_segment_size,
                o.window_scale,
                o.sack_permitted,
                o.sack_ranges,
                o.timestamp,
            ),
            Err(_) => (None, None, false, [None; 3], None),
        };
        Ok(Segment {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: packet.seq_number().0 as u32,
            ack: packet.ack_number().0 as u32,
            flags: tcp::flags(&packet),
            window: packet.window_len(),
            mss,
            wscale,
            sack_permitted,
            sack,
            ts,
            payload: Payload::bytes(&l4[hl..]),
            more: false,
        })
    }

    /// The first SACK block reports data received twice (a D-SACK, RFC 2883): it lies
    /// below the acknowledgement, or inside the second block.
    pub fn dsack(&self) -> bool {
        match self.sack {
            [Some((start, end)), second, _] => {
                before(start, self.ack)
                    || second.is_some_and(|(s2, e2)| !before(start, s2) && !before(e2, end))
            }
            _ => false,
        }
    }

    /// Sequence space the segment takes (payload, SYN, FIN).
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32
            + u32::from(self.flags & SYN != 0)
            + u32::from(self.flags & FIN != 0)
    }
}

/// Writes `a` then `b` to the socket; a full socket takes 0 bytes.
pub fn send(sock: &socket2::Socket, a: &[u8], b: &[u8]) -> std::io::Result<usize> {
    full_is_zero(if b.is_empty() {
        sock.send(a)
    } else {
        sock.send_vectored(&[std::io::IoSlice::new(a), std::io::IoSlice::new(b)])
    })
}

/// A send the full socket refused took 0 bytes.
fn full_is_zero(r: std::io::Result<usize>) -> std::io::Result<usize> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
        r => r,
    }
}

/// `a` comes before `b` in sequence space (modulo 2^32, RFC 9293 §3.4).
pub fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Where the payload of a segment with `opt_len` bytes of options starts in the frame.
/// The most header bytes a data segment to the guest has: Ethernet, IPv6, TCP and the
/// timestamps option.
pub const MAX_HEADERS: usize = ETH_HLEN + 40 + TCP_HLEN + 12;

pub fn payload_offset(v6: bool, opt_len: usize) -> usize {
    ETH_HLEN + ip_hlen(v6) + TCP_HLEN + opt_len
}

/// Fields of a segment to the guest.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
}

/// Writes a segment whose `payload_len` bytes are already in place at
/// `payload_offset(.., opts.len())`; returns the frame length.
pub fn write(buf: &mut [u8], mac: Macs, h: &Header, opts: &[u8], payload_len: usize) -> usize {
    let (l4, tcp_len) = write_headers(buf, mac, h, opts, payload_len);
    fill_l4_checksum(
        &mut buf[..l4 + tcp_len],
        l4,
        TCP_CHECKSUM,
        h.from.ip(),
        h.to.ip(),
        PROTO_TCP,
    );
    l4 + tcp_len
}

/// As [`write`], leaving the checksum to the receiver: the field holds the
/// pseudo-header sum (for a guest side with offloads, see `frame::TxMeta`).
pub fn write_partial(
    buf: &mut [u8],
    mac: Macs,
    h: &Header,
    opts: &[u8],
    payload_len: usize,
) -> usize {
    let (l4, tcp_len) = write_headers(buf, mac, h, opts, payload_len);
    let sum = pseudo_sum(h.from.ip(), h.to.ip(), PROTO_TCP, tcp_len);
    set_partial_checksum(buf, l4, TCP_CHECKSUM, sum);
    l4 + tcp_len
}

fn write_headers(
    buf: &mut [u8],
    mac: Macs,
    h: &Header,
    opts: &[u8],
    payload_len: usize,
) -> (usize, usize) {
    let tcp_len = TCP_HLEN + opts.len() + payload_len;
    let l4 = write_ip(buf, mac, h.from.ip(), h.to.ip(), PROTO_TCP, tcp_len, 64);
    let f = tcp::Fields {
        sport: h.from.port(),
        dport: h.to.port(),
        seq: h.seq,
        ack: h.ack,
        flags: h.flags,
        window: h.window,
    };
    tcp::write(&mut buf[l4..], &f, opts);
    (l4, tcp_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `head` in the frame, `parts` in (what stands for) guest memory.
    fn with_tail<'a>(parts: &'a mut [Vec<u8>]) -> GuestIov<'a> {
        let mut tail = GuestIov::default();
        for p in parts.iter_mut() {
            tail.push(&vm_memory::VolatileSlice::from(&mut p[..]))
                .unwrap();
        }
        tail
    }

    #[test]
    fn a_payload_in_guest_memory_copies_out_from_any_offset() {
        let mut parts = [b"defg".to_vec(), b"hij".to_vec()];
        let tail = with_tail(&mut parts);
        let p = Payload::bytes(b"abc").with_tail(Some(&tail));
        assert_eq!(p.len(), 10);
        let mut all = [0u8; 10];
        p.copy_to(0, &mut all);
        assert_eq!(&all, b"abcdefghij");
        let mut some = [0u8; 3];
        p.after(2).copy_to(3, &mut some);
        assert_eq!(&some, b"fgh");
        assert_eq!(p.after(5).len(), 5);
        p.after(5).copy_to(0, &mut some);
        assert_eq!(&some, b"fgh");
        assert!(p.after(10).is_empty() && p.after(99).is_empty());
    }

    #[test]
    fn a_payload_in_guest_memory_is_sent_from_where_it_starts() {
        let (a, b) =
            socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        let mut parts = [b"defg".to_vec(), b"hij".to_vec()];
        let tail = with_tail(&mut parts);
        let p = Payload::bytes(b"abc").with_tail(Some(&tail));
        assert_eq!(p.after(1).send(&a).unwrap(), 9);
        assert_eq!(p.after(5).send(&a).unwrap(), 5);
        let mut got = [0u8; 14];
        std::io::Read::read_exact(&mut &b, &mut got).unwrap();
        assert_eq!(&got, b"bcdefghijfghij");
    }

    #[test]
    fn short_or_lying_headers_are_refused() {
        assert!(Segment::parse(&[0; 19]).is_err());
        let mut h = [0u8; 20];
        h[12] = 0xf0; // 60-byte header in a 20-byte segment
        assert!(Segment::parse(&h).is_err());
        h[12] = 0x40; // 16 bytes: shorter than a header
        assert!(Segment::parse(&h).is_err());
    }

    #[test]
    fn sack_option_lists_its_blocks_after_two_nops() {
        let (o, n) = sack_option([(1, 2), (3, 4)].into_iter());
        assert_eq!(
            &o[..n],
            &[1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]
        );
        assert_eq!(sack_option(std::iter::empty()).1, 0);
    }

    #[test]
    fn syn_options_offer_sack_only_when_asked() {
        let (o, n) = syn_options(1460, Some(7), true, None);
        assert_eq!(&o[..n], &[2, 4, 5, 180, 1, 3, 3, 7, 1, 1, 4, 2]);
        assert_eq!(syn_options(1460, None, false, None).1, 4);
    }

    #[test]
    fn syn_options_carry_both_timestamps_when_given() {
        let (o, n) = syn_options(1460, None, false, Some((7, 9)));
        assert_eq!(
            &o[..n],
            &[2, 4, 5, 180, 1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]
        );
    }
}
