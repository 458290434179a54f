//! A guest in memory: builds frames as a guest would, feeds them to an engine, and reads
//! what the engine sends back.
#![allow(dead_code)]

pub mod pod;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use netbind_usernet::config::{ENGINE_LINK_LOCAL, ENGINE_MAC};
use netbind_usernet::frame::{Macs, PROTO_TCP, PROTO_UDP, fill_l4_checksum, write_ip};
use netbind_usernet::{Engine, EngineConfig, MemTx};

pub const GUEST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x15];
pub const GUEST4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
pub const GW4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const GUEST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x15);

pub fn config() -> EngineConfig {
    let mut c = EngineConfig {
        guest_mac: Some(GUEST_MAC),
        guest4: Some("10.0.2.15/24".parse().unwrap()),
        guest6: Some("fd00::15/64".parse().unwrap()),
        gateway4: Some(GW4),
        gateway6: Some(ENGINE_LINK_LOCAL),
        hostname: "guest".into(),
        ..EngineConfig::default()
    };
    c.dns = vec![IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3))];
    c
}

pub fn gw4(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(GW4), port)
}

pub fn gw6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(ENGINE_LINK_LOCAL), port)
}

pub fn guest4(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(GUEST4), port)
}

pub fn guest6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(GUEST6), port)
}

/// Something the engine sent, parsed.
#[derive(Debug, Clone)]
pub struct Got {
    pub raw: Vec<u8>,
    pub ethertype: u16,
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub hop: u8,
    pub l4: Vec<u8>,
}

impl Got {
    pub fn parse(raw: Vec<u8>) -> Got {
        let ethertype = u16::from_be_bytes([raw[12], raw[13]]);
        let mut dst_mac = [0; 6];
        dst_mac.copy_from_slice(&raw[0..6]);
        let (src, dst, proto, hop, l4) = match ethertype {
            0x0800 => {
                let ip = &raw[14..];
                let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
                assert_eq!(
                    smoltcp::wire::checksum::data(&ip[..20]),
                    0xffff,
                    "IPv4 header checksum"
                );
                (
                    IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
                    IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
                    ip[9],
                    ip[8],
                    ip[20..total].to_vec(),
                )
            }
            0x86dd => {
                let ip = &raw[14..];
                let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
                let s: [u8; 16] = ip[8..24].try_into().unwrap();
                let d: [u8; 16] = ip[24..40].try_into().unwrap();
                (
                    IpAddr::V6(s.into()),
                    IpAddr::V6(d.into()),
                    ip[6],
                    ip[7],
                    ip[40..40 + plen].to_vec(),
                )
            }
            _ => (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                0,
                0,
                raw[14..].to_vec(),
            ),
        };
        let g = Got {
            raw,
            ethertype,
            dst_mac,
            src,
            dst,
            proto,
            hop,
            l4,
        };
        if g.proto == PROTO_TCP || g.proto == PROTO_UDP || g.proto == 58 {
            let sum = netbind_usernet::frame::l4_checksum(g.src, g.dst, g.proto, &g.l4);
            assert_eq!(sum, 0, "L4 checksum of {g:?}");
        }
        g
    }

    pub fn tcp(&self) -> Tcp {
        assert_eq!(self.proto, PROTO_TCP, "not TCP: {self:?}");
        let t = &self.l4;
        let hl = usize::from(t[12] >> 4) * 4;
        Tcp {
            src_port: u16::from_be_bytes([t[0], t[1]]),
            dst_port: u16::from_be_bytes([t[2], t[3]]),
            seq: u32::from_be_bytes(t[4..8].try_into().unwrap()),
            ack: u32::from_be_bytes(t[8..12].try_into().unwrap()),
            flags: t[13],
            window: u16::from_be_bytes([t[14], t[15]]),
            options: t[20..hl].to_vec(),
            payload: t[hl..].to_vec(),
        }
    }

    pub fn udp_payload(&self) -> &[u8] {
        &self.l4[8..]
    }
}

#[derive(Debug, Clone)]
pub struct Tcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Tcp {
    /// The body of the first option of `kind` (after kind and length bytes).
    fn option(&self, kind: u8) -> Option<&[u8]> {
        let o = &self.options;
        let mut i = 0;
        while i < o.len() {
            match o[i] {
                0 => break,
                1 => i += 1,
                k => {
                    let len = usize::from(*o.get(i + 1)?).max(2);
                    let body = o.get(i + 2..i + len)?;
                    if k == kind {
                        return Some(body);
                    }
                    i += len;
                }
            }
        }
        None
    }

    /// The SACK blocks of the segment's options.
    pub fn sack_blocks(&self) -> Vec<(u32, u32)> {
        self.option(5).map_or_else(Vec::new, |body| {
            body.chunks(8)
                .map(|b| {
                    (
                        u32::from_be_bytes(b[0..4].try_into().unwrap()),
                        u32::from_be_bytes(b[4..8].try_into().unwrap()),
                    )
                })
                .collect()
        })
    }

    /// Whether the segment's options include SACK-permitted.
    pub fn sack_permitted(&self) -> bool {
        self.option(4).is_some()
    }

    pub fn mss(&self) -> Option<u16> {
        self.option(2)
            .and_then(|b| Some(u16::from_be_bytes(b.get(0..2)?.try_into().ok()?)))
    }
}

pub const FIN: u8 = 1;
pub const SYN: u8 = 2;
pub const RST: u8 = 4;
pub const PSH: u8 = 8;
pub const ACK: u8 = 16;

/// An IP frame from the guest.
pub fn ip_frame(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8], hop: u8) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + 40 + l4.len()];
    let macs = Macs {
        dst: ENGINE_MAC,
        src: GUEST_MAC,
    };
    let off = write_ip(&mut buf, macs, src, dst, proto, l4.len(), hop);
    buf[off..off + l4.len()].copy_from_slice(l4);
    buf.truncate(off + l4.len());
    let field = match proto {
        PROTO_TCP => Some(16),
        PROTO_UDP => Some(6),
        58 => Some(2),
        _ => None,
    };
    if let Some(f) = field {
        fill_l4_checksum(&mut buf, off, f, src, dst, proto);
    } else if proto == 1 {
        buf[off + 2..off + 4].copy_from_slice(&[0, 0]);
        let sum = !smoltcp::wire::checksum::data(&buf[off..]);
        buf[off + 2..off + 4].copy_from_slice(&sum.to_be_bytes());
    }
    buf
}

pub fn udp_frame(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![0u8; 8 + payload.len()];
    l4[0..2].copy_from_slice(&from.port().to_be_bytes());
    l4[2..4].copy_from_slice(&to.port().to_be_bytes());
    l4[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    l4[8..].copy_from_slice(payload);
    ip_frame(from.ip(), to.ip(), PROTO_UDP, &l4, 64)
}

/// An ARP request from the guest (`sender`) for `target`, broadcast.
pub fn arp_request(target: Ipv4Addr, sender: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend(GUEST_MAC);
    f.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend(GUEST_MAC);
    f.extend(sender.octets());
    f.extend([0; 6]);
    f.extend(target.octets());
    f
}

/// A DHCPDISCOVER from the guest, broadcast.
pub fn dhcp_discover() -> Vec<u8> {
    use dhcproto::{Encodable, Encoder, v4};
    let mut msg = v4::Message::default();
    msg.set_chaddr(&GUEST_MAC)
        .set_flags(v4::Flags::default().set_broadcast());
    msg.opts_mut()
        .insert(v4::DhcpOption::MessageType(v4::MessageType::Discover));
    let mut payload = Vec::new();
    msg.encode(&mut Encoder::new(&mut payload)).unwrap();
    udp_frame(
        "0.0.0.0:68".parse().unwrap(),
        "255.255.255.255:67".parse().unwrap(),
        &payload,
    )
}

/// A DHCPv6 SOLICIT from the guest for one address (IA_NA).
pub fn dhcpv6_solicit() -> Vec<u8> {
    use dhcproto::{Encodable, Encoder, v6};
    let mut msg = v6::Message::new(v6::MessageType::Solicit);
    msg.opts_mut().insert(v6::DhcpOption::ClientId(vec![
        0, 3, 0, 1, 2, 0, 0, 0, 0, 0x15,
    ]));
    msg.opts_mut().insert(v6::DhcpOption::IANA(v6::IANA {
        id: 1,
        t1: 0,
        t2: 0,
        opts: v6::DhcpOptions::new(),
    }));
    let mut payload = Vec::new();
    msg.encode(&mut Encoder::new(&mut payload)).unwrap();
    udp_frame(
        "[fe80::15]:546".parse().unwrap(),
        "[ff02::1:2]:547".parse().unwrap(),
        &payload,
    )
}

#[allow(clippy::too_many_arguments)]
pub fn tcp_frame(
    from: SocketAddr,
    to: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let hl = 20 + options.len();
    let mut l4 = vec![0u8; hl + payload.len()];
    l4[0..2].copy_from_slice(&from.port().to_be_bytes());
    l4[2..4].copy_from_slice(&to.port().to_be_bytes());
    l4[4..8].copy_from_slice(&seq.to_be_bytes());
    l4[8..12].copy_from_slice(&ack.to_be_bytes());
    l4[12] = ((hl / 4) as u8) << 4;
    l4[13] = flags;
    l4[14..16].copy_from_slice(&window.to_be_bytes());
    l4[20..hl].copy_from_slice(options);
    l4[hl..].copy_from_slice(payload);
    ip_frame(from.ip(), to.ip(), PROTO_TCP, &l4, 64)
}

/// An engine and its event loop, driven by hand.
pub struct Harness {
    pub poll: Poll,
    events: Events,
    pub engine: Engine<MemTx>,
    pub seen: Vec<Got>,
}

impl Harness {
    pub fn new(cfg: EngineConfig) -> Harness {
        Harness::with_guest(cfg, MemTx::default())
    }

    pub fn with_guest(cfg: EngineConfig, guest: MemTx) -> Harness {
        let poll = Poll::new().unwrap();
        let engine = Engine::new(cfg, guest, poll.registry().try_clone().unwrap()).unwrap();
        Harness {
            poll,
            events: Events::with_capacity(256),
            engine,
            seen: Vec::new(),
        }
    }

    /// Everything sent since the last call, unparsed, with what each frame said about
    /// finishing it (offloads).
    pub fn take_raw(&mut self) -> Vec<(Vec<u8>, netbind_usernet::frame::TxMeta)> {
        let g = self.engine.guest_mut();
        let frames = std::mem::take(&mut g.frames);
        let metas = std::mem::take(&mut g.metas);
        frames.into_iter().zip(metas).collect()
    }

    pub fn send(&mut self, frame: &[u8]) {
        self.engine.set_now(Instant::now());
        self.engine.guest_frame(frame);
        self.engine.flush();
    }

    /// Frames read from the guest together, handed over as the stream attachment does:
    /// each but the last with more following, then the end of the batch.
    pub fn send_batch(&mut self, frames: &[Vec<u8>]) {
        self.engine.set_now(Instant::now());
        for (i, f) in frames.iter().enumerate() {
            self.engine.frames_follow(i + 1 < frames.len());
            self.engine.guest_frame(f);
        }
        self.engine.flush();
    }

    /// Runs the event loop for a while.
    pub fn pump(&mut self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            self.poll
                .poll(
                    &mut self.events,
                    Some((end - now).min(Duration::from_millis(5))),
                )
                .unwrap();
            self.engine.set_now(Instant::now());
            for ev in self.events.iter() {
                self.engine.handle_event(ev);
            }
            self.engine.flush();
        }
    }

    /// One wakeup of the event loop, as `run` does it, without timers: waits (at most
    /// `timeout`) for readiness, hands it to the engine, sends the owed ACKs. Returns how
    /// many events came.
    pub fn wakeup(&mut self, timeout: Duration) -> usize {
        self.poll.poll(&mut self.events, Some(timeout)).unwrap();
        self.engine.set_now(Instant::now());
        let mut n = 0;
        for ev in self.events.iter() {
            self.engine.handle_event(ev);
            n += 1;
        }
        self.engine.flush();
        n
    }

    /// Everything sent since the last call.
    pub fn take(&mut self) -> Vec<Got> {
        let g = self.engine.guest_mut();
        g.metas.clear();
        let frames = std::mem::take(&mut g.frames);
        frames.into_iter().map(Got::parse).collect()
    }

    /// Pumps until a frame matching `pred` comes (panics after 3 s).
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Got) -> bool) -> Got {
        let end = Instant::now() + Duration::from_secs(3);
        loop {
            let got = self.take();
            self.seen.extend(got);
            if let Some(i) = self.seen.iter().position(&pred) {
                return self.seen.remove(i);
            }
            assert!(
                Instant::now() < end,
                "no {what} within 3 s; got {:#?}",
                self.seen
            );
            self.pump(Duration::from_millis(10));
        }
    }

    /// Asserts nothing matching `pred` comes within `d`.
    pub fn expect_none(&mut self, what: &str, d: Duration, pred: impl Fn(&Got) -> bool) {
        self.pump(d);
        let got = self.take();
        self.seen.extend(got);
        assert!(
            !self.seen.iter().any(&pred),
            "unexpected {what}: {:#?}",
            self.seen
        );
    }

    pub fn timers_at(&mut self, later: Duration) {
        self.engine.timers(Instant::now() + later);
        self.engine.flush();
    }
}

/// A TCP connection from the in-memory guest through the engine.
pub struct GuestConn {
    pub me: SocketAddr,
    pub peer: SocketAddr,
    pub snd_nxt: u32,
    pub rcv_nxt: u32,
}

impl GuestConn {
    pub fn seg(&mut self, flags: u8, payload: &[u8]) -> Vec<u8> {
        let f = tcp_frame(
            self.me,
            self.peer,
            self.snd_nxt,
            self.rcv_nxt,
            flags,
            65535,
            &[],
            payload,
        );
        self.snd_nxt = self
            .snd_nxt
            .wrapping_add(payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0));
        f
    }
}

/// Opens a TCP connection from the guest to `peer`; returns it after the handshake.
pub fn connect(
    h: &mut Harness,
    me: SocketAddr,
    peer: SocketAddr,
    mss: u16,
    wscale: Option<u8>,
) -> GuestConn {
    let m = mss.to_be_bytes();
    let mut opts = vec![2, 4, m[0], m[1]];
    if let Some(ws) = wscale {
        opts.extend([1, 3, 3, ws]);
    }
    connect_with(h, me, peer, &opts)
}

/// As [`connect`], with the SYN's options as given.
pub fn connect_with(h: &mut Harness, me: SocketAddr, peer: SocketAddr, opts: &[u8]) -> GuestConn {
    let isn = 1000;
    h.send(&tcp_frame(me, peer, isn, 0, SYN, 65535, opts, &[]));
    let synack = h.expect("SYN-ACK", |g| {
        g.proto == PROTO_TCP && g.tcp().flags == SYN | ACK && g.tcp().dst_port == me.port()
    });
    let t = synack.tcp();
    assert_eq!(t.ack, isn + 1);
    let mut c = GuestConn {
        me,
        peer,
        snd_nxt: isn + 1,
        rcv_nxt: t.seq.wrapping_add(1),
    };
    let ack = c.seg(ACK, &[]);
    h.send(&ack);
    c
}
