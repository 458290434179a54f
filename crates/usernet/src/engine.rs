//! The engine: one guest NIC joined to the socket layer of the namespace it runs in.
//!
//! How it works: [`Engine::guest_frame`] takes one Ethernet frame from the guest, checks
//! it with smoltcp's bounds-checked views, and hands it by protocol to `arp`, `ndp`
//! (inside `icmp` for ICMPv6), `dhcp`, `icmp`, `udp` or `tcp`. Those either answer at
//! once (ARP, NDP, DHCP) or find or open a *flow* — a socket of the namespace standing
//! for the guest's conversation — and write to it. [`Engine::handle_event`] takes socket
//! readiness from the event loop (`mio`, edge-triggered) and turns what the sockets have
//! into frames for the guest; [`Engine::timers`] runs retransmissions and idle timeouts;
//! [`Engine::flush`] sends the ACKs owed at the end of a batch of guest frames — but for
//! a lone small segment (a request), the ACK waits one round of the loop, so that the
//! reply carries it (rounds are counted by [`Engine::set_now`]).
//!
//! Addresses: the guest has the pod's own addresses and sees remote hosts as they are.
//! Traffic to a gateway address goes to the namespace's loopback (`map_gateway`), and
//! DNS to an advertised resolver goes to the upstream resolvers; inbound connections from
//! the loopback appear to come from the gateway (see [`Engine::map_outbound`],
//! [`Engine::map_inbound`]).
//!
//! Tokens: the event loop owns tokens below [`RAW_PING4`]; that one and the next are the
//! raw ICMP sockets (`ping_raw.rs`); from [`FIRST_TOKEN`] on, even tokens are flow slots
//! and odd tokens are inbound listeners.
//!
//! What holds: no input from the guest panics (fuzz entry: `guest_frame`); nothing is
//! allocated per packet (buffers are made in `new`; flows and their hash slots are made
//! per flow, up to the cap).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};
use netbind_dhcp::v4::Server4;
use netbind_dhcp::v6::Server6;
use smoltcp::wire::{EthernetFrame, Ipv4Packet, Ipv6Packet};

use crate::config::{ENGINE_LINK_LOCAL, ENGINE_MAC, EngineConfig};
use crate::flow::{Flow, FlowTable};
use crate::forward::Listener;
use crate::fragment::{self, Reassembly};
use crate::frame::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, GuestTx, IpPacket, Out, PROTO_ICMP,
    PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TxCounters,
};
use crate::icmp::PingVia;
use crate::pcap::Pcap;
use crate::ping_raw::RawPing;

/// Tokens below [`RAW_PING4`] belong to the event loop (guest side, signals, listener).
pub const FIRST_TOKEN: usize = 16;
/// The raw ICMP socket's token, and the raw ICMPv6 socket's after it.
pub const RAW_PING4: Token = Token(FIRST_TOKEN - 2);
const RAW_PING6: Token = Token(FIRST_TOKEN - 1);
/// Size of the receive scratch buffer (one datagram).
const SCRATCH: usize = 65536;
/// Size of the buffer bytes already sent are peeked into on kernels without
/// `SO_PEEK_OFF` for TCP (caps the bytes in flight to the guest there).
pub(crate) const DISCARD: usize = 1 << 20;
const RA_INTERVAL: Duration = Duration::from_secs(60);
/// How long the loop waits for events while ACKs are delayed ([`Engine::flush`]): the
/// reply that carries a delayed ACK comes within microseconds or not at all, so this
/// bounds only the lone ACK of a request left unanswered (a quarter of Linux's own
/// minimum delayed ACK, 40 ms). Longer than a scheduler tick (4 ms at HZ=250, 10 ms at
/// HZ=100) on purpose: a shorter wait is the CPU's next timer event, and arming and
/// cancelling it reprograms the timer hardware on every request — under virtualisation two
/// VM exits per round trip, measured at +15 µs on the one-CPU round trip with 1 ms.
pub const DELACK_WAIT: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot listen on {proto} port {port} ({at})")]
    Listen {
        proto: &'static str,
        port: u16,
        /// The address, and `%device` when the spec named one.
        at: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{proto} port spec for {addr}: the guest has no {family} address to forward to")]
    NoFamily {
        proto: &'static str,
        addr: IpAddr,
        family: &'static str,
    },
    #[error("cannot register a socket with the event loop")]
    Register(#[source] std::io::Error),
    #[error("cannot open raw ICMP sockets for the guest's pings (they need CAP_NET_RAW)")]
    RawPing(#[source] std::io::Error),
}

/// What happened, for `SIGUSR1` and the exit report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub rx_malformed: u64,
    pub rx_unsupported: u64,
    pub rx_fragments: u64,
    /// Guest datagrams put back together from fragments, and given up unfinished.
    pub rx_reassembled: u64,
    pub rx_fragments_dropped: u64,
    pub tx: TxCounters,
    pub tcp_opened: u64,
    pub tcp_accepted: u64,
    pub udp_opened: u64,
    pub ping_opened: u64,
    pub ping_denied: u64,
    pub refused_full: u64,
    pub rst_sent: u64,
    pub unreachable_sent: u64,
    /// ICMP errors from the network relayed to the guest (time exceeded, unreachable…).
    pub icmp_relayed: u64,
    pub retransmits: u64,
    /// Guest TCP segments the socket took only in part (the window was too optimistic).
    pub tcp_send_refused: u64,
    /// Guest TCP segments held for the socket: after a hole, or refused in part.
    pub tcp_segments_held: u64,
    pub tcp_bytes_from_guest: u64,
    pub tcp_bytes_to_guest: u64,
    pub udp_bytes_from_guest: u64,
    pub udp_bytes_to_guest: u64,
    pub arp_replies: u64,
    pub ndp_replies: u64,
    pub dhcp_replies: u64,
    pub flows_now: u64,
    pub flows_cap: u64,
    /// Waits of the event loop that ended with events found while busy polling (no
    /// wake-up needed), and waits that slept (`busy_poll.rs`).
    pub waits_polled: u64,
    pub waits_slept: u64,
    /// How long the loop polls before it sleeps now, in microseconds (0: it sleeps).
    pub busy_poll_window_us: u64,
}

impl Counters {
    /// One `name value` line per counter, for `--stats FILE` and scripts.
    pub fn lines(&self) -> String {
        let fields: [(&str, u64); 35] = [
            ("flows_now", self.flows_now),
            ("flows_cap", self.flows_cap),
            ("tcp_opened", self.tcp_opened),
            ("tcp_accepted", self.tcp_accepted),
            ("udp_opened", self.udp_opened),
            ("ping_opened", self.ping_opened),
            ("ping_denied", self.ping_denied),
            ("refused_full", self.refused_full),
            ("rst_sent", self.rst_sent),
            ("unreachable_sent", self.unreachable_sent),
            ("icmp_relayed", self.icmp_relayed),
            ("retransmits", self.retransmits),
            ("tcp_send_refused", self.tcp_send_refused),
            ("tcp_segments_held", self.tcp_segments_held),
            ("tcp_bytes_from_guest", self.tcp_bytes_from_guest),
            ("tcp_bytes_to_guest", self.tcp_bytes_to_guest),
            ("udp_bytes_from_guest", self.udp_bytes_from_guest),
            ("udp_bytes_to_guest", self.udp_bytes_to_guest),
            ("rx_frames", self.rx_frames),
            ("rx_bytes", self.rx_bytes),
            ("rx_malformed", self.rx_malformed),
            ("rx_unsupported", self.rx_unsupported),
            ("rx_fragments", self.rx_fragments),
            ("rx_reassembled", self.rx_reassembled),
            ("rx_fragments_dropped", self.rx_fragments_dropped),
            ("arp_replies", self.arp_replies),
            ("ndp_replies", self.ndp_replies),
            ("dhcp_replies", self.dhcp_replies),
            ("tx_frames", self.tx.frames),
            ("tx_bytes", self.tx.bytes),
            ("tx_dropped_full", self.tx.dropped_full),
            ("tx_fragmented", self.tx.fragmented),
            ("waits_polled", self.waits_polled),
            ("waits_slept", self.waits_slept),
            ("busy_poll_window_us", self.busy_poll_window_us),
        ];
        fields.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "flows {}/{} (tcp opened {} accepted {}, udp {}, ping {}), refused (table full) {}; \
             guest rx {} frames {} bytes (malformed {}, unsupported {}, fragments {} → {} datagrams, {} given up); \
             guest tx {} frames {} bytes (dropped, guest side full {}; fragmented {}); \
             tcp bytes from/to guest {}/{}, retransmits {}, refused by socket {}, held {}, rst {}; udp bytes from/to guest {}/{}; \
             icmp unreachable {}, relayed {}, ping denied {}; arp {}, ndp {}, dhcp {}; \
             waits polled {} slept {}",
            self.flows_now,
            self.flows_cap,
            self.tcp_opened,
            self.tcp_accepted,
            self.udp_opened,
            self.ping_opened,
            self.refused_full,
            self.rx_frames,
            self.rx_bytes,
            self.rx_malformed,
            self.rx_unsupported,
            self.rx_fragments,
            self.rx_reassembled,
            self.rx_fragments_dropped,
            self.tx.frames,
            self.tx.bytes,
            self.tx.dropped_full,
            self.tx.fragmented,
            self.tcp_bytes_from_guest,
            self.tcp_bytes_to_guest,
            self.retransmits,
            self.tcp_send_refused,
            self.tcp_segments_held,
            self.rst_sent,
            self.udp_bytes_from_guest,
            self.udp_bytes_to_guest,
            self.unreachable_sent,
            self.icmp_relayed,
            self.ping_denied,
            self.arp_replies,
            self.ndp_replies,
            self.dhcp_replies,
            self.waits_polled,
            self.waits_slept,
        )
    }
}

pub struct Engine<G> {
    pub(crate) cfg: EngineConfig,
    pub(crate) out: Out<G>,
    pub(crate) registry: Registry,
    pub(crate) flows: FlowTable,
    pub(crate) listeners: Vec<Listener>,
    /// Shared raw ICMP sockets, when pings go through them (`cfg.raw_ping`).
    pub(crate) raw_ping: Option<RawPing>,
    pub(crate) dhcp4: Option<Server4>,
    pub(crate) dhcp6: Option<Server6>,
    /// The DHCPv6 server was remade for the MAC of the first guest that asked.
    pub(crate) dhcp6_mac_learned: bool,
    pub(crate) ra: Option<Vec<u8>>,
    pub(crate) counters: Counters,
    pub(crate) scratch: Box<[u8]>,
    pub(crate) discard: Box<[u8]>,
    /// Rings for guest TCP data held until the socket takes it (`tcp/held.rs`).
    pub(crate) held_budget: crate::tcp::held::HeldBudget,
    pub(crate) rng: u64,
    pub(crate) now: Instant,
    pub(crate) ack_pending: Vec<usize>,
    /// ACKs for lone small segments, held for one round of the loop (`tcp_flush_acks`).
    pub(crate) ack_delayed: Vec<usize>,
    /// The round `ack_delayed` was filled in; rounds are counted by `set_now`.
    pub(crate) delayed_round: u64,
    pub(crate) round: u64,
    /// Flows that stopped sending because the guest side was full.
    pub(crate) tx_blocked: Vec<usize>,
    pub(crate) next_ra: Option<Instant>,
    /// Guest datagrams arriving in fragments.
    pub(crate) frag: Reassembly,
    /// The earliest time [`Engine::timers`] has work, as its last pass found it.
    pub(crate) next_timer: Option<Instant>,
}

impl<G: GuestTx> Engine<G> {
    /// An engine writing to `guest`, registering its sockets with `registry` (a clone of
    /// the event loop's). Opens the inbound listeners at once.
    pub fn new(cfg: EngineConfig, guest: G, registry: Registry) -> Result<Engine<G>, EngineError> {
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x6e65_7462_696e_6400);
            h.finish() | 1
        };
        let ra = cfg
            .ra()
            .map(|r| netbind_dhcp::ra::advertisement(&r, ENGINE_MAC));
        let dhcp6 = cfg.dhcp6().map(Server6::new);
        let mut engine = Engine {
            flows: FlowTable::new(cfg.max_flows),
            out: Out::new(guest, cfg.guest_mac.unwrap_or([0; 6]), cfg.mtu),
            frag: Reassembly::default(),
            registry,
            listeners: Vec::new(),
            raw_ping: None,
            dhcp4: None,
            dhcp6,
            dhcp6_mac_learned: false,
            ra,
            counters: Counters::default(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            discard: Vec::new().into_boxed_slice(),
            held_budget: Default::default(),
            rng: seed,
            now: Instant::now(),
            ack_pending: Vec::with_capacity(1024),
            ack_delayed: Vec::with_capacity(1024),
            delayed_round: 0,
            round: 0,
            tx_blocked: Vec::new(),
            next_ra: None,
            next_timer: None,
            cfg,
        };
        engine.open_listeners()?;
        if engine.cfg.raw_ping {
            engine.open_raw_ping()?;
        }
        Ok(engine)
    }

    fn open_raw_ping(&mut self) -> Result<(), EngineError> {
        let raw = RawPing::open(self.cfg.guest4.is_some(), self.cfg.guest6.is_some())
            .map_err(EngineError::RawPing)?;
        for (v6, token) in [(false, RAW_PING4), (true, RAW_PING6)] {
            if let Some(sock) = raw.socket(v6) {
                self.register_fd(
                    std::os::fd::AsRawFd::as_raw_fd(sock),
                    token,
                    Interest::READABLE,
                )
                .map_err(EngineError::Register)?;
            }
        }
        self.raw_ping = Some(raw);
        Ok(())
    }

    pub fn set_pcap(&mut self, pcap: Option<Pcap>) {
        self.out.pcap = pcap;
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn guest(&self) -> &G {
        &self.out.guest
    }

    pub fn guest_mut(&mut self) -> &mut G {
        &mut self.out.guest
    }

    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        c.tx = self.out.counters;
        c.rx_reassembled = self.frag.completed;
        c.rx_fragments_dropped = self.frag.dropped;
        c.flows_now = self.flows.len() as u64;
        c.flows_cap = self.flows.cap() as u64;
        c
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// A (new) guest is on the line: forget the old one's flows, greet it with an RA.
    pub fn guest_connected(&mut self) {
        for slot in self.flows.slots().collect::<Vec<_>>() {
            self.abort_flow(slot);
        }
        self.out.guest_mac = self.cfg.guest_mac.unwrap_or([0; 6]);
        self.send_ra(None);
        self.next_ra = Some(self.now + RA_INTERVAL);
    }

    pub(crate) fn next_random(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 16) as u32
    }

    /// One Ethernet frame from the guest.
    pub fn guest_frame(&mut self, frame: &[u8]) {
        self.counters.rx_frames += 1;
        self.counters.rx_bytes += frame.len() as u64;
        if let Some(p) = self.out.pcap.as_mut() {
            p.record(frame);
        }
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.counters.rx_malformed += 1;
            return;
        };
        let src_mac = eth.src_addr().0;
        if src_mac[0] & 1 == 0 && src_mac != ENGINE_MAC && src_mac != [0; 6] {
            self.out.guest_mac = src_mac;
        }
        let payload = &frame[14..];
        match u16::from(eth.ethertype()) {
            ETHERTYPE_ARP => self.arp_from_guest(payload),
            ETHERTYPE_IPV4 => self.ipv4_from_guest(payload, src_mac),
            ETHERTYPE_IPV6 => self.ipv6_from_guest(payload, src_mac),
            _ => self.counters.rx_unsupported += 1,
        }
    }

    fn ipv4_from_guest(&mut self, bytes: &[u8], src_mac: [u8; 6]) {
        let Ok(ip) = Ipv4Packet::new_checked(bytes) else {
            self.counters.rx_malformed += 1;
            return;
        };
        let hl = usize::from(ip.header_len());
        let total = usize::from(ip.total_len());
        if ip.version() != 4 || hl < 20 || total < hl || total > bytes.len() {
            self.counters.rx_malformed += 1;
            return;
        }
        if ip.more_frags() || ip.frag_offset() != 0 {
            let proto = u8::from(ip.next_header());
            let key = fragment::Key {
                src: IpAddr::V4(ip.src_addr()),
                dst: IpAddr::V4(ip.dst_addr()),
                proto,
                id: u32::from(ip.ident()),
            };
            return self.fragment_from_guest(
                &fragment::Fragment {
                    key,
                    proto,
                    offset: usize::from(ip.frag_offset()),
                    more: ip.more_frags(),
                    hop: ip.hop_limit(),
                    data: &bytes[hl..total],
                },
                src_mac,
            );
        }
        let pkt = IpPacket {
            src_mac,
            src: IpAddr::V4(ip.src_addr()),
            dst: IpAddr::V4(ip.dst_addr()),
            proto: u8::from(ip.next_header()),
            hop: ip.hop_limit(),
            payload: &bytes[hl..total],
            packet: &bytes[..total],
        };
        self.ip_from_guest(&pkt);
    }

    fn ipv6_from_guest(&mut self, bytes: &[u8], src_mac: [u8; 6]) {
        let Ok(ip) = Ipv6Packet::new_checked(bytes) else {
            self.counters.rx_malformed += 1;
            return;
        };
        let total = 40 + usize::from(ip.payload_len());
        if ip.version() != 6 || total > bytes.len() {
            self.counters.rx_malformed += 1;
            return;
        }
        let (src, dst) = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
        let (mut proto, mut l4) = (u8::from(ip.next_header()), 40);
        if proto == fragment::PROTO_FRAGMENT6 {
            // A Fragment header right after the fixed one (what a guest stack sends).
            let Some(fh) = bytes
                .get(40..40 + fragment::FRAG6_HLEN)
                .filter(|_| total >= 48)
            else {
                self.counters.rx_malformed += 1;
                return;
            };
            let field = u16::from_be_bytes([fh[2], fh[3]]);
            let (offset, more) = (usize::from(field & 0xfff8), field & 1 != 0);
            proto = fh[0];
            l4 = 40 + fragment::FRAG6_HLEN;
            if offset != 0 || more {
                let key = fragment::Key {
                    src,
                    dst,
                    proto: 0,
                    id: u32::from_be_bytes([fh[4], fh[5], fh[6], fh[7]]),
                };
                return self.fragment_from_guest(
                    &fragment::Fragment {
                        key,
                        proto,
                        offset,
                        more,
                        hop: ip.hop_limit(),
                        data: &bytes[l4..total],
                    },
                    src_mac,
                );
            }
            // An atomic fragment (RFC 6946): the whole datagram.
        }
        let pkt = IpPacket {
            src_mac,
            src,
            dst,
            proto,
            hop: ip.hop_limit(),
            payload: &bytes[l4..total],
            packet: &bytes[..total],
        };
        self.ip_from_guest(&pkt);
    }

    /// A fragment of a guest datagram: kept until the datagram is complete, which then
    /// goes on as if it had come whole.
    fn fragment_from_guest(&mut self, f: &fragment::Fragment<'_>, src_mac: [u8; 6]) {
        self.counters.rx_fragments += 1;
        let fragment::Added::Complete(slot) = self.frag.add(f, self.now) else {
            return;
        };
        let Some(d) = self.frag.take(slot) else {
            return;
        };
        let pkt = IpPacket {
            src_mac,
            src: d.key.src,
            dst: d.key.dst,
            proto: d.proto,
            hop: d.hop,
            payload: d.payload(),
            packet: d.packet(),
        };
        self.ip_from_guest(&pkt);
        self.frag.put_back(slot, d);
    }

    fn ip_from_guest(&mut self, pkt: &IpPacket<'_>) {
        match (pkt.proto, pkt.is_v6()) {
            (PROTO_TCP, _) => self.tcp_from_guest(pkt),
            (PROTO_UDP, _) => self.udp_from_guest(pkt),
            (PROTO_ICMP, false) => self.icmp4_from_guest(pkt),
            (PROTO_ICMPV6, true) => self.icmp6_from_guest(pkt),
            _ => self.counters.rx_unsupported += 1,
        }
    }

    /// Whether the guest may open a flow to `dst`: a unicast address, not its own link,
    /// and not a loopback address — the namespace's loopback is reached only through the
    /// gateway mapping ([`Engine::map_outbound`]), which can be turned off.
    pub(crate) fn flow_destination_ok(&self, dst: IpAddr) -> bool {
        match dst.to_canonical() {
            IpAddr::V4(a) => {
                !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
            }
            IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast() || a.is_loopback()),
        }
    }

    /// Where a guest flow to `dst:port` really goes.
    pub(crate) fn map_outbound(&self, dst: IpAddr, port: u16, dns_capable: bool) -> SocketAddr {
        if dns_capable && port == 53 && self.cfg.dns.contains(&dst) {
            let upstream = self
                .cfg
                .dns_upstream
                .iter()
                .find(|u| u.is_ipv4() == dst.is_ipv4())
                .or(self.cfg.dns_upstream.first());
            if let Some(u) = upstream {
                return *u;
            }
        }
        if self.cfg.map_gateway {
            match dst {
                IpAddr::V4(a) if Some(a) == self.cfg.gateway4 => {
                    return SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
                }
                IpAddr::V6(a) if Some(a) == self.cfg.gateway6 || a == ENGINE_LINK_LOCAL => {
                    return SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
                }
                _ => {}
            }
        }
        SocketAddr::new(dst, port)
    }

    /// How a peer of an inbound connection appears to the guest.
    pub(crate) fn map_inbound(&self, peer: IpAddr) -> Option<IpAddr> {
        let peer = peer.to_canonical();
        if peer.is_loopback() || self.cfg.is_guest_addr(peer) {
            return match peer {
                IpAddr::V4(_) => self.cfg.gateway4.map(IpAddr::V4),
                IpAddr::V6(_) => self.cfg.gateway6.map(IpAddr::V6),
            };
        }
        Some(peer)
    }

    pub(crate) fn guest_addr(&self, v6: bool) -> Option<IpAddr> {
        if v6 {
            self.cfg.guest6.map(|n| IpAddr::V6(n.addr()))
        } else {
            self.cfg.guest4.map(|n| IpAddr::V4(n.addr()))
        }
    }

    pub(crate) fn flow_token(slot: usize) -> Token {
        Token(FIRST_TOKEN + (slot << 1))
    }

    pub(crate) fn listener_token(index: usize) -> Token {
        Token(FIRST_TOKEN + ((index << 1) | 1))
    }

    pub(crate) fn register_fd(
        &self,
        fd: std::os::fd::RawFd,
        token: Token,
        interest: Interest,
    ) -> std::io::Result<()> {
        self.registry
            .register(&mut mio::unix::SourceFd(&fd), token, interest)
    }

    /// Removes a flow and closes its socket (a TCP socket closes gracefully). Closing
    /// also takes the socket out of the event loop's epoll set (no flow socket is ever
    /// duplicated), which saves an `epoll_ctl` per flow.
    pub(crate) fn remove_flow(&mut self, slot: usize) {
        if let Some(Flow::Ping(p)) = self.flows.remove(slot)
            && let (PingVia::Raw { target, wire }, Some(raw)) = (p.via, self.raw_ping.as_mut())
        {
            raw.forget(target, wire, slot);
        }
    }

    /// Removes a flow; a TCP socket is closed with RST toward its peer.
    pub(crate) fn abort_flow(&mut self, slot: usize) {
        if let Some(Flow::Tcp(c)) = self.flows.get_mut(slot) {
            let _ = c.sock.set_linger(Some(Duration::ZERO));
        }
        self.remove_flow(slot);
    }

    /// Socket readiness from the event loop.
    pub fn handle_event(&mut self, event: &mio::event::Event) {
        self.socket_ready(
            event.token(),
            event.is_readable(),
            event.is_writable(),
            event.is_error() || event.is_read_closed(),
        );
    }

    pub fn socket_ready(&mut self, token: Token, readable: bool, writable: bool, error: bool) {
        let Some(n) = token.0.checked_sub(FIRST_TOKEN) else {
            if token == RAW_PING4 || token == RAW_PING6 {
                self.raw_ping_ready(token == RAW_PING6);
            }
            return;
        };
        if n & 1 == 1 {
            self.listener_ready(n >> 1);
            return;
        }
        let slot = n >> 1;
        match self.flows.get_mut(slot) {
            Some(Flow::Tcp(_)) => self.tcp_ready(slot, readable, writable, error),
            Some(Flow::Udp(_)) => self.udp_ready(slot, error),
            Some(Flow::Ping(_)) => self.ping_ready(slot, error),
            None => {}
        }
    }

    /// The end of a batch of guest frames (and of each round of the loop): send the ACKs
    /// owed. An ACK for a lone small segment waits for the next round instead — the
    /// reply, if the socket has one by then, carries it, which saves a frame and the
    /// guest's handling of it per request; the round after sends it regardless.
    pub fn flush(&mut self) {
        self.tcp_flush_acks();
    }

    /// Whether ACKs are being held for the next round: the loop should then wait at
    /// most [`DELACK_WAIT`] for events.
    pub fn acks_delayed(&self) -> bool {
        !self.ack_delayed.is_empty()
    }

    /// The guest side has room again: resume flows that stopped for it.
    pub fn guest_writable(&mut self) {
        self.tcp_resume_blocked();
    }

    /// Retransmissions, window probes, idle timeouts, periodic RAs; notes when there is
    /// work next ([`Engine::next_timer`]). Call after events and when that time comes.
    pub fn timers(&mut self, now: Instant) {
        self.now = now;
        self.frag.expire(now);
        if self.next_ra.is_some_and(|t| now >= t) {
            self.send_ra(None);
            self.next_ra = Some(now + RA_INTERVAL);
        }
        let earliest = |a: Option<Instant>, b: Option<Instant>| a.into_iter().chain(b).min();
        let mut next = earliest(self.next_ra, self.frag.next_expiry());
        for slot in 0..self.flows.slot_count() {
            let idle_end = match self.flows.get_mut(slot) {
                Some(Flow::Tcp(_)) => {
                    self.tcp_timer(slot);
                    if let Some(Flow::Tcp(c)) = self.flows.get_mut(slot) {
                        next = earliest(next, c.deadline);
                    }
                    continue;
                }
                Some(Flow::Udp(u)) => u.last.checked_add(self.cfg.udp_idle),
                Some(Flow::Ping(p)) => p.last.checked_add(self.cfg.icmp_idle),
                None => continue,
            };
            if idle_end.is_some_and(|t| now > t) {
                self.remove_flow(slot);
            } else {
                next = earliest(next, idle_end);
            }
        }
        self.next_timer = next;
    }

    /// The earliest time [`Engine::timers`] has work, as its last pass found it (a TCP
    /// retransmission or probe, an idle flow's end, a fragment timeout, the next router
    /// advertisement). Events since that pass may have set earlier ones: the loop runs
    /// timers again soon after any event.
    pub fn next_timer(&self) -> Option<Instant> {
        self.next_timer
    }

    /// Counts one wait of the event loop (ended by busy polling, or asleep) and keeps
    /// the busy-poll window it leaves for the next.
    pub fn count_wait(&mut self, polled: bool, window: Duration) {
        self.counters.busy_poll_window_us = window.as_micros() as u64;
        if polled {
            self.counters.waits_polled += 1;
        } else {
            self.counters.waits_slept += 1;
        }
    }

    /// Sets the engine's clock without running timers (tests drive time). Each call
    /// begins a new round of the loop (delayed ACKs wait for the next round).
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
        self.round += 1;
    }
}
