//! The migration stream: what one engine hands the next, through QEMU.
//!
//! Layout (all integers little-endian; version 3 — version 2, without the flows' ends,
//! and version 1, without the UDP flows either, are read too):
//!
//! ```text
//! header   "NBMIGRAT" (8 bytes) | version u16 | reserved u16 = 0 | body length u32
//!          | FNV-1a-64 of the body u64
//! body     guest MAC [6] | the guest's view: IPv4 address and prefix, IPv6 address and
//!          prefix, IPv4 and IPv6 gateway (each: present u8 0|1, then the address
//!          and, for addresses, the prefix length u8), DNS server count u8 and each
//!          (family u8, address) | TCP flow count u32 | that many TCP flows
//! flow     guest address, remote address (as the guest sees it), the socket's local
//!          and peer address (each: family u8 4|6, address 4|16 bytes, port u16)
//!          | the relay's rcv_nxt, snd_una, snd_nxt, snd_wnd u32 | guest_ws, our_ws u8
//!          | mss, our_mss u16 | sack u8 | timestamps: present u8, the guest's TSval to
//!          echo u32, ours u32 (both 0 when absent) | the kernel's: send-queue end, receive-queue
//!          end u32 | mss u32 | tcpi_options, snd_wscale, rcv_wscale u8 | timestamp u32
//!          | window (snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup) 5 × u32
//!          | send queue: length u32 + bytes | receive queue: length u32 + bytes
//!          | ends u8 (version 3; bits: 0 the kernel has the peer's FIN, its receive
//!          end counts it; 1 the kernel queued our FIN, its send end counts it; 2 the relay sent the guest its FIN, 3 and the guest acknowledged
//!          it; 4 the guest's FIN was taken — see `TcpState::ends_add_up`)
//! then     UDP flow count u32 | that many UDP flows (version 2)
//! udp      guest address, remote address, the engine's local address (the flow's
//!          socket's, or the forwarded port's for an inbound flow) | inbound u8 0|1
//!          | for inbound flows, the real peer's address
//! ```
//!
//! Written by hand rather than by a serialization crate so that the layout is this table,
//! fixed and versioned whatever a crate's encoding does next. The reader treats the
//! stream as hostile: every length is checked against what is left (and a queue
//! against [`MAX_QUEUE`]), the checksum catches damage, an unknown version or trailing
//! bytes are refused. Nothing in a refused stream is used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};

pub const MAGIC: &[u8; 8] = b"NBMIGRAT";
pub const VERSION: u16 = 3;
/// The oldest version read.
pub const OLDEST: u16 = 1;
const HEADER: usize = 8 + 2 + 2 + 4 + 8;
/// The most bytes one socket queue may carry (the kernel's own buffers are smaller).
pub const MAX_QUEUE: usize = 64 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a netbind migration stream (magic {0:02x?})")]
    Magic(Vec<u8>),
    #[error("migration stream version {0}; this engine reads versions {OLDEST} to {VERSION}")]
    Version(u16),
    #[error("migration stream truncated: {0}")]
    Truncated(&'static str),
    #[error("migration stream damaged: its checksum does not match")]
    Checksum,
    #[error("migration stream damaged: {0}")]
    Invalid(&'static str),
}

/// A TCP connection's kernel state, read in repair mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockState {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// `TCP_QUEUE_SEQ` of the send queue (its end: the next byte written) and of the
    /// receive queue (its end: the next byte expected from the peer).
    pub send_seq: u32,
    pub recv_seq: u32,
    pub mss: u32,
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    pub timestamp: u32,
    pub window: [u32; 5],
    /// Bytes the peer has not acknowledged, and bytes not read yet.
    pub send_queue: Vec<u8>,
    pub recv_queue: Vec<u8>,
    /// The peer's FIN came (`recv_seq` counts it), and ours was queued (`send_seq`
    /// counts it): a half-closed or closing connection.
    pub peer_fin: bool,
    pub our_fin: bool,
}

/// One TCP flow: the relay's side and the kernel's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpState {
    pub guest: SocketAddr,
    pub remote: SocketAddr,
    pub rcv_nxt: u32,
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub snd_wnd: u32,
    pub guest_ws: u8,
    pub our_ws: u8,
    pub mss: u16,
    pub our_mss: u16,
    pub sack: bool,
    /// The timestamps option: the guest's TSval to echo, and ours now.
    pub ts: Option<(u32, u32)>,
    /// The relay sent the guest the peer's FIN (`snd_nxt` counts it), and the guest
    /// acknowledged it; the guest's FIN was taken (`rcv_nxt` counts it).
    pub fin_sent: bool,
    pub fin_acked: bool,
    pub guest_fin: bool,
    pub sock: SockState,
}

impl TcpState {
    /// Whether the relay's FINs and the kernel's agree: the guest's FIN taken is our
    /// FIN queued, a FIN sent to the guest is the peer's, acknowledged only once sent —
    /// and the flow is not over (acknowledged both ways).
    pub fn ends_add_up(&self) -> bool {
        self.guest_fin == self.sock.our_fin
            && (!self.fin_sent || self.sock.peer_fin)
            && (!self.fin_acked || self.fin_sent)
            && !(self.fin_acked && self.guest_fin)
    }
}

/// One UDP flow: its ends, and the local address the peer knows it by (kept on the
/// target where that address is the target's too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpState {
    pub guest: SocketAddr,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// For a flow a peer opened through a forwarded port: that peer's real address.
    pub inbound_peer: Option<SocketAddr>,
}

/// What the guest was told by the source (DHCP, RA): it keeps it on the target, whatever
/// the target pod's own addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestView {
    pub guest4: Option<Ipv4Net>,
    pub guest6: Option<Ipv6Net>,
    pub gateway4: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    pub dns: Vec<IpAddr>,
}

/// Everything one engine hands the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub guest_mac: [u8; 6],
    pub view: GuestView,
    pub tcp: Vec<TcpState>,
    pub udp: Vec<UdpState>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl State {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.guest_mac);
        let v = &self.view;
        match v.guest4 {
            Some(n) => {
                body.push(1);
                body.extend_from_slice(&n.addr().octets());
                body.push(n.prefix_len());
            }
            None => body.push(0),
        }
        match v.guest6 {
            Some(n) => {
                body.push(1);
                body.extend_from_slice(&n.addr().octets());
                body.push(n.prefix_len());
            }
            None => body.push(0),
        }
        match v.gateway4 {
            Some(g) => {
                body.push(1);
                body.extend_from_slice(&g.octets());
            }
            None => body.push(0),
        }
        match v.gateway6 {
            Some(g) => {
                body.push(1);
                body.extend_from_slice(&g.octets());
            }
            None => body.push(0),
        }
        let dns = &v.dns[..v.dns.len().min(usize::from(u8::MAX))];
        body.push(dns.len() as u8);
        for ip in dns {
            put_ip(&mut body, *ip);
        }
        body.extend_from_slice(&(self.tcp.len() as u32).to_le_bytes());
        for f in &self.tcp {
            for a in [f.guest, f.remote, f.sock.local, f.sock.peer] {
                put_addr(&mut body, a);
            }
            for v in [f.rcv_nxt, f.snd_una, f.snd_nxt, f.snd_wnd] {
                body.extend_from_slice(&v.to_le_bytes());
            }
            body.extend_from_slice(&[f.guest_ws, f.our_ws]);
            body.extend_from_slice(&f.mss.to_le_bytes());
            body.extend_from_slice(&f.our_mss.to_le_bytes());
            body.push(u8::from(f.sack));
            let (present, (recent, tsval)) = (f.ts.is_some(), f.ts.unwrap_or((0, 0)));
            body.push(u8::from(present));
            body.extend_from_slice(&recent.to_le_bytes());
            body.extend_from_slice(&tsval.to_le_bytes());
            let s = &f.sock;
            for v in [s.send_seq, s.recv_seq, s.mss] {
                body.extend_from_slice(&v.to_le_bytes());
            }
            body.extend_from_slice(&[s.options, s.snd_wscale, s.rcv_wscale]);
            body.extend_from_slice(&s.timestamp.to_le_bytes());
            for v in s.window {
                body.extend_from_slice(&v.to_le_bytes());
            }
            for q in [&s.send_queue, &s.recv_queue] {
                body.extend_from_slice(&(q.len() as u32).to_le_bytes());
                body.extend_from_slice(q);
            }
            body.push(ends(f));
        }
        body.extend_from_slice(&(self.udp.len() as u32).to_le_bytes());
        for f in &self.udp {
            for a in [f.guest, f.remote, f.local] {
                put_addr(&mut body, a);
            }
            body.push(u8::from(f.inbound_peer.is_some()));
            if let Some(peer) = f.inbound_peer {
                put_addr(&mut body, peer);
            }
        }
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&fnv1a(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<State, FormatError> {
        let mut r = Reader(bytes);
        let magic = r.take(8, "header")?;
        if magic != MAGIC {
            return Err(FormatError::Magic(magic.to_vec()));
        }
        let version = r.u16("header")?;
        if !(OLDEST..=VERSION).contains(&version) {
            return Err(FormatError::Version(version));
        }
        if r.u16("header")? != 0 {
            return Err(FormatError::Invalid(
                "the header's reserved field is not zero",
            ));
        }
        let len = r.u32("header")? as usize;
        let sum = r.u64("header")?;
        let body = r.take(len, "body")?;
        if !r.0.is_empty() {
            return Err(FormatError::Invalid("bytes after the body"));
        }
        if fnv1a(body) != sum {
            return Err(FormatError::Checksum);
        }
        let mut r = Reader(body);
        let mut guest_mac = [0u8; 6];
        guest_mac.copy_from_slice(r.take(6, "guest MAC")?);
        let view = r.view()?;
        let count = r.u32("flow count")? as usize;
        // Each flow takes well over 64 bytes: a count beyond that is a lie.
        if count > r.0.len() / 64 {
            return Err(FormatError::Invalid("more flows than the body holds"));
        }
        let mut tcp = Vec::with_capacity(count);
        for _ in 0..count {
            let guest = r.addr()?;
            let remote = r.addr()?;
            let local = r.addr()?;
            let peer = r.addr()?;
            let (rcv_nxt, snd_una, snd_nxt, snd_wnd) = (
                r.u32("flow")?,
                r.u32("flow")?,
                r.u32("flow")?,
                r.u32("flow")?,
            );
            let (guest_ws, our_ws) = (r.u8("flow")?, r.u8("flow")?);
            let (mss, our_mss) = (r.u16("flow")?, r.u16("flow")?);
            let sack = match r.u8("flow")? {
                0 => false,
                1 => true,
                _ => return Err(FormatError::Invalid("a flag that is neither 0 nor 1")),
            };
            if guest_ws > 14
                || our_ws > 14
                || snd_una.wrapping_sub(snd_nxt) < u32::MAX / 2 && snd_una != snd_nxt
            {
                return Err(FormatError::Invalid(
                    "a window scale or sequence out of range",
                ));
            }
            let ts_present = r.present("flow")?;
            let ts_pair = (r.u32("flow")?, r.u32("flow")?);
            let ts = match (ts_present, ts_pair) {
                (true, pair) => Some(pair),
                (false, (0, 0)) => None,
                (false, _) => return Err(FormatError::Invalid("timestamps given as absent")),
            };
            let (send_seq, recv_seq, kmss) = (r.u32("socket")?, r.u32("socket")?, r.u32("socket")?);
            let (options, snd_wscale, rcv_wscale) =
                (r.u8("socket")?, r.u8("socket")?, r.u8("socket")?);
            let timestamp = r.u32("socket")?;
            let mut window = [0u32; 5];
            for w in &mut window {
                *w = r.u32("socket")?;
            }
            let send_queue = r.queue()?;
            let recv_queue = r.queue()?;
            let ends = if version >= 3 { r.u8("flow")? } else { 0 };
            let bit = |b: u8| ends & (1 << b) != 0;
            let t = TcpState {
                guest,
                remote,
                rcv_nxt,
                snd_una,
                snd_nxt,
                snd_wnd,
                guest_ws,
                our_ws,
                mss,
                our_mss,
                sack,
                ts,
                fin_sent: bit(2),
                fin_acked: bit(3),
                guest_fin: bit(4),
                sock: SockState {
                    local,
                    peer,
                    send_seq,
                    recv_seq,
                    mss: kmss,
                    options,
                    snd_wscale,
                    rcv_wscale,
                    timestamp,
                    window,
                    send_queue,
                    recv_queue,
                    peer_fin: bit(0),
                    our_fin: bit(1),
                },
            };
            if ends >= 1 << 5 || !t.ends_add_up() {
                return Err(FormatError::Invalid("a flow's ends do not add up"));
            }
            tcp.push(t);
        }
        let udp = if version >= 2 {
            r.udp_flows()?
        } else {
            Vec::new()
        };
        if !r.0.is_empty() {
            return Err(FormatError::Invalid("bytes after the last flow"));
        }
        Ok(State {
            guest_mac,
            view,
            tcp,
            udp,
        })
    }
}

/// A flow's `ends` byte (see the layout).
fn ends(f: &TcpState) -> u8 {
    [
        f.sock.peer_fin,
        f.sock.our_fin,
        f.fin_sent,
        f.fin_acked,
        f.guest_fin,
    ]
    .iter()
    .enumerate()
    .fold(0, |b, (i, &set)| b | (u8::from(set) << i))
}

fn put_addr(out: &mut Vec<u8>, a: SocketAddr) {
    put_ip(out, a.ip());
    out.extend_from_slice(&a.port().to_le_bytes());
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        if self.0.len() < n {
            return Err(FormatError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn addr(&mut self) -> Result<SocketAddr, FormatError> {
        let ip = self.ip()?;
        Ok(SocketAddr::new(ip, self.u16("port")?))
    }

    fn present(&mut self, what: &'static str) -> Result<bool, FormatError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FormatError::Invalid("a flag that is neither 0 nor 1")),
        }
    }

    fn v4(&mut self) -> Result<Ipv4Addr, FormatError> {
        let b = self.take(4, "address")?;
        Ok(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }

    fn v6(&mut self) -> Result<Ipv6Addr, FormatError> {
        let mut a = [0u8; 16];
        a.copy_from_slice(self.take(16, "address")?);
        Ok(Ipv6Addr::from(a))
    }

    fn view(&mut self) -> Result<GuestView, FormatError> {
        let bad = |_| FormatError::Invalid("a prefix length out of range");
        let guest4 = if self.present("guest view")? {
            let a = self.v4()?;
            Some(Ipv4Net::new(a, self.u8("guest view")?).map_err(bad)?)
        } else {
            None
        };
        let guest6 = if self.present("guest view")? {
            let a = self.v6()?;
            Some(Ipv6Net::new(a, self.u8("guest view")?).map_err(bad)?)
        } else {
            None
        };
        let gateway4 = if self.present("guest view")? {
            Some(self.v4()?)
        } else {
            None
        };
        let gateway6 = if self.present("guest view")? {
            Some(self.v6()?)
        } else {
            None
        };
        let n = self.u8("guest view")?;
        let dns = (0..n).map(|_| self.ip()).collect::<Result<_, _>>()?;
        Ok(GuestView {
            guest4,
            guest6,
            gateway4,
            gateway6,
            dns,
        })
    }

    fn ip(&mut self) -> Result<IpAddr, FormatError> {
        Ok(match self.u8("address")? {
            4 => IpAddr::V4(self.v4()?),
            6 => IpAddr::V6(self.v6()?),
            _ => {
                return Err(FormatError::Invalid(
                    "an address family that is neither 4 nor 6",
                ));
            }
        })
    }

    fn udp_flows(&mut self) -> Result<Vec<UdpState>, FormatError> {
        let count = self.u32("UDP flow count")? as usize;
        // Each flow takes at least 22 bytes: a count beyond that is a lie.
        if count > self.0.len() / 22 {
            return Err(FormatError::Invalid("more UDP flows than the body holds"));
        }
        (0..count)
            .map(|_| {
                let (guest, remote, local) = (self.addr()?, self.addr()?, self.addr()?);
                let inbound_peer = if self.present("UDP flow")? {
                    Some(self.addr()?)
                } else {
                    None
                };
                Ok(UdpState {
                    guest,
                    remote,
                    local,
                    inbound_peer,
                })
            })
            .collect()
    }

    fn queue(&mut self) -> Result<Vec<u8>, FormatError> {
        let len = self.u32("queue length")? as usize;
        if len > MAX_QUEUE {
            return Err(FormatError::Invalid("a socket queue longer than 64 MiB"));
        }
        Ok(self.take(len, "queue")?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        State {
            guest_mac: [2, 0, 0, 0, 0, 1],
            view: GuestView {
                guest4: Some("10.88.0.5/16".parse().unwrap()),
                guest6: Some("fd00:10:88::5/64".parse().unwrap()),
                gateway4: Some("10.88.0.1".parse().unwrap()),
                gateway6: None,
                dns: vec!["10.96.0.10".parse().unwrap(), "fd00::a".parse().unwrap()],
            },
            tcp: vec![TcpState {
                guest: a("10.0.2.15:40000"),
                remote: a("[fd00::1]:443"),
                rcv_nxt: 1,
                snd_una: 100,
                snd_nxt: 150,
                snd_wnd: 65535,
                guest_ws: 7,
                our_ws: 7,
                mss: 1460,
                our_mss: 65480,
                sack: true,
                ts: Some((77, 88)),
                fin_sent: true,
                fin_acked: false,
                guest_fin: false,
                sock: SockState {
                    local: a("10.88.0.5:40000"),
                    peer: a("10.88.0.9:443"),
                    send_seq: 7,
                    recv_seq: 9,
                    mss: 1448,
                    options: 7,
                    snd_wscale: 7,
                    rcv_wscale: 9,
                    timestamp: 123456,
                    window: [1, 2, 3, 4, 5],
                    send_queue: b"to the peer".to_vec(),
                    recv_queue: b"to the guest".to_vec(),
                    peer_fin: true,
                    our_fin: false,
                },
            }],
            udp: vec![
                UdpState {
                    guest: a("10.0.2.15:5353"),
                    remote: a("10.96.0.10:53"),
                    local: a("10.88.0.5:41000"),
                    inbound_peer: None,
                },
                UdpState {
                    guest: a("[fd00::5]:9000"),
                    remote: a("[fd00::2]:9000"),
                    local: a("[fd00:10:88::5]:9000"),
                    inbound_peer: Some(a("[fd00:99::7]:51000")),
                },
            ],
        }
    }

    /// `body` under a header of `version`.
    fn framed(version: u16, body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&fnv1a(body).to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn a_state_reads_back_as_written() {
        let s = sample();
        assert_eq!(State::decode(&s.encode()), Ok(s));
    }

    #[test]
    fn a_truncated_stream_is_refused_at_every_length() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(State::decode(&bytes[..n]).is_err(), "{n} bytes accepted");
        }
    }

    #[test]
    fn a_flipped_byte_in_the_body_fails_the_checksum() {
        let mut bytes = sample().encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(State::decode(&bytes), Err(FormatError::Checksum));
    }

    #[test]
    fn another_version_is_refused_by_number() {
        let mut bytes = sample().encode();
        bytes[8] = 4;
        assert_eq!(State::decode(&bytes), Err(FormatError::Version(4)));
    }

    /// `s` with its one TCP flow open both ways (as versions 1 and 2 carried them).
    fn open(mut s: State) -> State {
        let t = &mut s.tcp[0];
        (t.fin_sent, t.fin_acked, t.guest_fin) = (false, false, false);
        (t.sock.peer_fin, t.sock.our_fin) = (false, false);
        s
    }

    /// Where the one TCP flow's `ends` byte of an encoded `s` is: before the UDP
    /// section, which starts with its count.
    fn ends_at(s: &State) -> usize {
        let without_udp = State {
            udp: Vec::new(),
            ..s.clone()
        };
        without_udp.encode().len() - 4 - 1
    }

    #[test]
    fn a_version_2_stream_reads_with_every_flow_open() {
        let s = open(sample());
        let v3 = s.encode();
        // Version 2's flows are version 3's without their ends byte.
        let at = ends_at(&s);
        assert_eq!(v3[at], 0);
        let body = [&v3[HEADER..at], &v3[at + 1..]].concat();
        assert_eq!(State::decode(&framed(2, &body)), Ok(s));
    }

    #[test]
    fn a_version_1_stream_reads_without_udp_flows() {
        let mut s = open(sample());
        s.udp.clear();
        let v3 = s.encode();
        // Version 1's body is version 3's without the ends byte and the (empty) UDP
        // section at its end.
        let v1 = framed(1, &v3[HEADER..v3.len() - 5]);
        assert_eq!(State::decode(&v1), Ok(s));
    }

    #[test]
    fn ends_that_do_not_add_up_are_refused() {
        let s = sample();
        let at = ends_at(&s);
        // A FIN acknowledged that was never sent; the guest's FIN without ours queued;
        // the relay's FIN without the peer's; a bit beyond the five.
        for bad in [0b01001, 0b10000, 0b00100, 0b100001] {
            let mut bytes = s.encode();
            bytes[at] = bad;
            let body = bytes[HEADER..].to_vec();
            assert_eq!(
                State::decode(&framed(VERSION, &body)),
                Err(FormatError::Invalid("a flow's ends do not add up")),
                "ends {bad:#b}"
            );
        }
    }

    #[test]
    fn a_foreign_stream_is_refused_by_its_magic() {
        assert!(matches!(
            State::decode(b"QEVMstuff that is not ours at all"),
            Err(FormatError::Magic(_))
        ));
    }
}
