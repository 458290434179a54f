//! The engine: one guest NIC joined to the socket layer of the namespace it runs in —
//! the public API and the dispatcher.
//!
//! How it works: [`Engine::guest_frame`] takes one Ethernet frame from the guest (or
//! [`Engine::guest_frame_split`], one whose TCP data stays in a vhost-user guest's memory
//! for its socket to send from), checks it with smoltcp's bounds-checked views, puts
//! fragments back together (`fragment.rs`) and hands it by protocol to `arp::from_guest`, `ndp` (neighbour and router
//! solicitations), `icmp::echo_from_guest`, `udp::from_guest` (which serves DHCP through
//! `dhcp`) or `tcp::from_guest`. Those either answer at once (ARP, NDP, DHCP) or find or
//! open a *flow* — a socket of the namespace standing for the guest's conversation — and
//! write to it. [`Engine::handle_event`] takes socket readiness from the event loop
//! (`mio`, edge-triggered) and hands it by token to the flow's handler (`tcp::ready`,
//! `udp::ready`, `icmp::ping_ready`), a listener's (`tcp::accept`,
//! `udp::listener_ready`) or the raw ping sockets' (`icmp::raw_ping_ready`); those turn
//! what the sockets have into frames for the guest. [`Engine::timers`] runs
//! retransmissions and idle timeouts; [`Engine::flush`] sends the ACKs owed at the end of
//! a batch of guest frames — but for a lone small segment (a request), the ACK waits one
//! round of the loop, so that the reply carries it (rounds are counted by
//! [`Engine::set_now`]).
//!
//! Every handler gets the narrow context (`ctx.rs`: configuration, guest side, flow
//! table, counters, clock) and only its own state besides: the TCP relay's lists
//! (`tcp::TcpRelay`), the DHCP servers, the RA, the listeners, the raw ping sockets.
//! Where a flow goes and how peers appear is `route.rs`; tokens are laid out in `ctx.rs`.
//!
//! What holds: no input from the guest panics (fuzz entry: `guest_frame`); nothing is
//! allocated per packet (buffers are made in `new`; flows and their hash slots are made
//! per flow, up to the cap).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};
use smoltcp::wire::{EthernetFrame, Ipv4Packet, Ipv6Packet};

use crate::arp;
use crate::config::EngineConfig;
pub use crate::counters::Counters;
use crate::ctx::{Ctx, RAW_PING6};
pub use crate::ctx::{FIRST_TOKEN, RAW_PING4};
use crate::dhcp::DhcpServers;
use crate::flow::{Flow, PingVia};
use crate::forward::{self, ForwardError, Listener};
use crate::fragment::{self, Reassembly};
use crate::frame::{GuestTx, IpPacket, Macs, Out};
use crate::icmp::{self, ECHO_REQUEST4, ECHO_REQUEST6};
use crate::ndp::{self, ICMPV6_NS, ICMPV6_RS, RA_INTERVAL, Ra};
use crate::pcap::Pcap;
use crate::ping_raw::RawPing;
use crate::route;
use crate::sys::GuestIov;
use crate::tcp::{self, TcpRelay};
use crate::udp;
use crate::wire::{
    self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, IPV4_HLEN, IPV6_HLEN, PROTO_FRAGMENT6,
    PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, parse_frag6,
};

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
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error("cannot register a socket with the event loop")]
    Register(#[source] std::io::Error),
    #[error("cannot open raw ICMP sockets for the guest's pings (they need CAP_NET_RAW)")]
    RawPing(#[source] std::io::Error),
    #[error(transparent)]
    Outbound(#[from] route::OutboundError),
}

pub struct Engine<G> {
    /// What every handler works with (`ctx.rs`).
    cx: Ctx<G>,
    tcp: TcpRelay,
    listeners: Vec<Listener>,
    /// Forwarded ports another engine holds (a migration's source in this namespace),
    /// opened when the guest comes here (`forward.rs`, shared ports).
    waiting: Vec<forward::Waiting>,
    /// Shared raw ICMP sockets, when pings go through them (`cfg.raw_ping`).
    raw_ping: Option<RawPing>,
    dhcp: DhcpServers,
    ra: Ra,
    /// Guest datagrams arriving in fragments.
    frag: Reassembly,
    /// The earliest time [`Engine::timers`] has work, as its last pass found it.
    next_timer: Option<Instant>,
    /// Migrated connections that could not be rebuilt, reset once the guest runs.
    pending_resets: Vec<(std::net::SocketAddr, std::net::SocketAddr, u32, u32)>,
    /// Connections a migration's state rebuilt, in repair mode until the guest runs.
    rebuilt: crate::migrate::Rebuilt,
    /// After a migration's read-out: listeners that keep the kernel silent toward the
    /// peers of the connections handed over (`migrate::hand_over`).
    holds: Vec<socket2::Socket>,
    /// What the last read-out handed over, until the guest runs again here (the
    /// migration failed: it is taken back) or a new guest comes.
    handed_over: Option<crate::migrate::format::State>,
    /// Where a frame from guest memory is put together ([`Engine::guest_frame_split`]);
    /// allocated at the first such frame.
    whole: Vec<u8>,
}

/// The largest frame put together from guest memory: a 64 KiB segment and its headers.
const WHOLE_FRAME: usize = 65536 + 256;

/// A frame of `head` and `tail` as a TCP segment whose headers are all in `head` (IPv4
/// not fragmented, or IPv6 with TCP as the first header after the fixed one) and whose
/// IP length covers exactly both; None for anything else (it is put together instead).
fn tcp_in_head<'a>(head: &'a [u8], tail: &'a GuestIov<'a>) -> Option<IpPacket<'a>> {
    let eth = EthernetFrame::new_checked(head).ok()?;
    let src_mac = eth.src_addr().0;
    let bytes = head.get(wire::ETH_HLEN..)?;
    let whole = bytes.len() + tail.len();
    let (src, dst, hop, l4) = match u16::from(eth.ethertype()) {
        ETHERTYPE_IPV4 if bytes.len() >= IPV4_HLEN => {
            let ip = Ipv4Packet::new_unchecked(bytes);
            let hl = usize::from(ip.header_len());
            let whole_ok = usize::from(ip.total_len()) == whole;
            let plain = ip.version() == 4 && hl >= IPV4_HLEN && hl <= bytes.len();
            let tcp = u8::from(ip.next_header()) == PROTO_TCP;
            if !(whole_ok && plain && tcp && !ip.more_frags() && ip.frag_offset() == 0) {
                return None;
            }
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            (IpAddr::V4(s), IpAddr::V4(d), ip.hop_limit(), hl)
        }
        ETHERTYPE_IPV6 if bytes.len() >= IPV6_HLEN => {
            let ip = Ipv6Packet::new_unchecked(bytes);
            let whole_ok = IPV6_HLEN + usize::from(ip.payload_len()) == whole;
            let tcp = u8::from(ip.next_header()) == PROTO_TCP;
            if !(whole_ok && ip.version() == 6 && tcp) {
                return None;
            }
            let (s, d) = (ip.src_addr(), ip.dst_addr());
            (IpAddr::V6(s), IpAddr::V6(d), ip.hop_limit(), IPV6_HLEN)
        }
        _ => return None,
    };
    let segment = &bytes[l4..];
    let data_offset = usize::from(*segment.get(12)? >> 4) * 4;
    if segment.len() < wire::TCP_HLEN || data_offset > segment.len() {
        return None;
    }
    Some(IpPacket {
        src_mac,
        src,
        dst,
        proto: PROTO_TCP,
        hop,
        payload: segment,
        packet: bytes,
        tail: Some(tail),
    })
}

impl<G: GuestTx> Engine<G> {
    /// An engine writing to `guest`, registering its sockets with `registry` (a clone of
    /// the event loop's). Opens the inbound listeners at once.
    pub fn new(cfg: EngineConfig, guest: G, registry: Registry) -> Result<Engine<G>, EngineError> {
        let macs = Macs {
            dst: cfg.guest_mac.unwrap_or([0; 6]),
            src: cfg.engine_mac,
        };
        route::check_outbound(&cfg)?;
        let out = Out::new(guest, macs, cfg.mtu);
        let (dhcp, ra) = (DhcpServers::new(&cfg), Ra::new(&cfg));
        let cx = Ctx::new(cfg, out, registry);
        let forward::Opened { listeners, waiting } = forward::open_listeners(&cx)?;
        let mut engine = Engine {
            cx,
            tcp: TcpRelay::default(),
            listeners,
            waiting,
            raw_ping: None,
            dhcp,
            ra,
            frag: Reassembly::default(),
            next_timer: None,
            pending_resets: Vec::new(),
            rebuilt: Default::default(),
            holds: Vec::new(),
            handed_over: None,
            whole: Vec::new(),
        };
        if engine.cx.cfg.raw_ping && engine.cx.cfg.relay_icmp {
            engine.open_raw_ping()?;
        }
        Ok(engine)
    }

    fn open_raw_ping(&mut self) -> Result<(), EngineError> {
        let cfg = &self.cx.cfg;
        let raw = RawPing::open(cfg.guest4.is_some(), cfg.guest6.is_some())
            .map_err(EngineError::RawPing)?;
        for (v6, token) in [(false, RAW_PING4), (true, RAW_PING6)] {
            if let Some(sock) = raw.socket(v6) {
                let fd = std::os::fd::AsRawFd::as_raw_fd(sock);
                self.cx
                    .register_fd(fd, token, Interest::READABLE)
                    .map_err(EngineError::Register)?;
            }
        }
        self.raw_ping = Some(raw);
        Ok(())
    }

    pub fn set_pcap(&mut self, pcap: Option<Pcap>) {
        self.cx.out.pcap = pcap;
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cx.cfg
    }

    pub fn guest(&self) -> &G {
        &self.cx.out.guest
    }

    pub fn guest_mut(&mut self) -> &mut G {
        &mut self.cx.out.guest
    }

    pub fn counters(&self) -> Counters {
        let mut c = self.cx.counters;
        c.tx = self.cx.out.counters;
        c.rx_reassembled = self.frag.completed;
        c.rx_fragments_dropped = self.frag.dropped;
        c.flows_now = self.cx.flows.len() as u64;
        c.flows_cap = self.cx.flows.cap() as u64;
        c.device = self.cx.out.guest.device_counters().unwrap_or_default();
        c
    }

    pub fn flow_count(&self) -> usize {
        self.cx.flows.len()
    }

    /// The local ports listened on (for logs and tests), as (tcp, port, v6).
    pub fn listening(&self) -> impl Iterator<Item = (bool, u16, bool)> + '_ {
        self.listeners.iter().map(|l| (l.tcp, l.port, l.v6))
    }

    /// The state a migration hands the target's engine (the guest is stopped); the TCP
    /// connections carried are closed silently (`migrate.rs`).
    pub fn export_state(
        &mut self,
        repair: Option<&mut crate::migrate::repair::Repair>,
    ) -> crate::migrate::format::State {
        let state = crate::migrate::export(&mut self.cx, &self.listeners, repair, &mut self.holds);
        self.handed_over = Some(state.clone());
        state
    }

    /// Takes over the state a migration's source handed over (before the engine reads
    /// the guest's first frame; [`Engine::migration_resumed`] follows).
    pub fn import_state(
        &mut self,
        state: crate::migrate::format::State,
        repair: Option<&mut crate::migrate::repair::Repair>,
    ) -> crate::migrate::Imported {
        // Shared ports: UDP's before the flows (inbound ones ride them), TCP's after the
        // connections (a listener would answer a carried connection's segment with a
        // reset before its socket is rebuilt).
        self.open_waiting(false);
        let (done, rebuilt) = crate::migrate::import(&mut self.cx, &self.listeners, state, repair);
        self.rebuilt = rebuilt;
        // DHCP and RA serve what the guest was told (the source's view, adopted).
        self.dhcp = DhcpServers::new(&self.cx.cfg);
        self.ra = Ra::new(&self.cx.cfg);
        self.pending_resets = done.resets.clone();
        done
    }

    /// The migrated guest runs here now (before the engine reads its first frame): the
    /// connections rebuilt come out of repair mode and are relayed (`migrate::switch_out`),
    /// the shared TCP ports open; connections that did not move are reset, those whose
    /// peer had closed hear of it.
    pub fn migration_resumed(&mut self, repair: Option<&mut crate::migrate::repair::Repair>) {
        let rebuilt = std::mem::take(&mut self.rebuilt);
        let budget = self.tcp.held_budget();
        let resets = &mut self.pending_resets;
        crate::migrate::switch_out(&mut self.cx, rebuilt, repair, budget, resets);
        self.open_waiting(true);
        for (from, to, seq, ack) in std::mem::take(&mut self.pending_resets) {
            tcp::reset_guest(&mut self.cx, from, to, seq, ack);
        }
        tcp::migrated_ends(&mut self.cx, &mut self.tcp);
        self.flush();
    }

    /// The guest runs again after a pause, its device and flows as they were. After a
    /// migration's read-out that means the migration failed (QEMU resumes the source):
    /// what was handed over is taken back — the connections rebuilt from the state as
    /// a target would rebuild them, the forwarded ports listening again, the holds let
    /// go once the connections have their addresses back.
    pub fn guest_resumed(&mut self, repair: Option<&mut crate::migrate::repair::Repair>) {
        let Some(state) = self.handed_over.take() else {
            tracing::info!("guest resumed");
            return;
        };
        tracing::warn!("migration: the guest runs here again; taking its state back");
        for l in &self.listeners {
            match crate::sys::detach_filter(std::os::fd::AsFd::as_fd(&l.sock)) {
                // ENOENT: it was never silenced (the kernel refused the filter).
                Err(e) if e.raw_os_error() != Some(nix::libc::ENOENT) => {
                    tracing::warn!("migration: forwarded port {} stays silent: {e}", l.port)
                }
                _ => {}
            }
        }
        let mut repair = repair;
        self.import_state(state, repair.as_deref_mut());
        self.holds.clear();
        self.cx.counters.migrations_taken_back += 1;
        self.migration_resumed(repair);
    }

    /// A (new) guest is on the line: forget the old one's flows, greet it with an RA.
    pub fn guest_connected(&mut self) {
        self.open_waiting(false);
        self.open_waiting(true);
        self.handed_over = None;
        self.holds.clear();
        for slot in self.cx.flows.slots().collect::<Vec<_>>() {
            let gone = self.cx.abort_flow(slot);
            self.forget_ping(gone, slot);
        }
        self.cx.out.guest_mac = self.cx.cfg.guest_mac.unwrap_or([0; 6]);
        tracing::info!("guest connected");
        if self.ra.enabled() {
            ndp::send_ra(&mut self.cx, &self.ra, None);
            self.ra.next = Some(self.cx.now + RA_INTERVAL);
        }
    }

    /// QEMU went away. After a hand-over the guest runs elsewhere now (a migration's
    /// source): the forwarded ports are closed, for the target to have them alone, and
    /// wait for a guest to come here again.
    pub fn guest_gone(&mut self) {
        if self.handed_over.is_some() {
            forward::close_all(&mut self.listeners, &mut self.waiting);
            tracing::info!("migrated away: the forwarded ports are the target's now");
        }
    }

    /// Shared ports of one protocol waiting for the guest: opened if free.
    fn open_waiting(&mut self, tcp: bool) {
        if !self.waiting.is_empty() {
            forward::open_waiting(&self.cx, &mut self.waiting, &mut self.listeners, tcp);
        }
    }

    /// A ping flow on the raw sockets that was removed gives its identifier back.
    fn forget_ping(&mut self, gone: Option<Flow>, slot: usize) {
        if let Some(Flow::Ping(p)) = gone
            && let (PingVia::Raw { target, wire }, Some(raw)) = (p.via, self.raw_ping.as_mut())
        {
            raw.forget(target, wire, slot);
        }
    }

    /// One Ethernet frame from the guest.
    pub fn guest_frame(&mut self, frame: &[u8]) {
        let c = &mut self.cx.counters;
        c.rx_frames += 1;
        c.rx_bytes += frame.len() as u64;
        if let Some(p) = self.cx.out.pcap.as_mut() {
            p.record(frame);
        }
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.cx.counters.rx_malformed += 1;
            return;
        };
        let src_mac = eth.src_addr().0;
        self.learn_mac(src_mac);
        let payload = eth.payload();
        match u16::from(eth.ethertype()) {
            ETHERTYPE_ARP => arp::from_guest(&mut self.cx, payload),
            ETHERTYPE_IPV4 => self.ipv4_from_guest(payload, src_mac),
            ETHERTYPE_IPV6 => self.ipv6_from_guest(payload, src_mac),
            _ => self.cx.counters.rx_unsupported += 1,
        }
    }

    /// One Ethernet frame from the guest whose end lies in the guest's own memory
    /// (vhost-user): `head` its first bytes, `tail` the rest. A TCP segment whose headers
    /// are all in `head` goes to its connection with its data left where it is — the
    /// socket sends it from the guest's memory, the one copy it takes; anything else (and
    /// everything while a capture runs) is put together in one buffer first.
    pub fn guest_frame_split(&mut self, head: &[u8], tail: &GuestIov<'_>) {
        if self.cx.out.pcap.is_none()
            && let Some(pkt) = tcp_in_head(head, tail)
        {
            let c = &mut self.cx.counters;
            c.rx_frames += 1;
            c.rx_bytes += (head.len() + tail.len()) as u64;
            c.tcp_segments_in_place += 1;
            self.learn_mac(pkt.src_mac);
            return tcp::from_guest(&mut self.cx, &mut self.tcp, &pkt);
        }
        let n = head.len() + tail.len();
        let mut whole = std::mem::take(&mut self.whole);
        whole.resize(WHOLE_FRAME, 0); // once
        if let Some(dst) = whole.get_mut(..n) {
            dst[..head.len()].copy_from_slice(head);
            crate::sys::copy_from_guest(tail, 0, &mut dst[head.len()..]);
            self.guest_frame(&whole[..n]);
        } else {
            self.cx.counters.rx_malformed += 1;
        }
        self.whole = whole;
    }

    /// The guest's MAC address, learnt from what it sends.
    fn learn_mac(&mut self, src_mac: [u8; 6]) {
        let unicast = src_mac[0] & 1 == 0;
        if unicast && src_mac != self.cx.out.engine_mac && src_mac != [0; 6] {
            self.cx.out.guest_mac = src_mac;
        }
    }

    fn ipv4_from_guest(&mut self, bytes: &[u8], src_mac: [u8; 6]) {
        let Ok(ip) = Ipv4Packet::new_checked(bytes) else {
            self.cx.counters.rx_malformed += 1;
            return;
        };
        let hl = usize::from(ip.header_len());
        let total = usize::from(ip.total_len());
        if ip.version() != 4 || hl < IPV4_HLEN || total < hl || total > bytes.len() {
            self.cx.counters.rx_malformed += 1;
            return;
        }
        let (src, dst) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
        let proto = u8::from(ip.next_header());
        if ip.more_frags() || ip.frag_offset() != 0 {
            let id = u32::from(ip.ident());
            let key = fragment::Key {
                src,
                dst,
                proto,
                id,
            };
            let f = fragment::Fragment {
                key,
                proto,
                offset: usize::from(ip.frag_offset()),
                more: ip.more_frags(),
                hop: ip.hop_limit(),
                data: &bytes[hl..total],
            };
            return self.fragment_from_guest(&f, src_mac);
        }
        let pkt = IpPacket {
            src_mac,
            src,
            dst,
            proto,
            hop: ip.hop_limit(),
            payload: &bytes[hl..total],
            packet: &bytes[..total],
            tail: None,
        };
        self.ip_from_guest(&pkt);
    }

    fn ipv6_from_guest(&mut self, bytes: &[u8], src_mac: [u8; 6]) {
        let Ok(ip) = Ipv6Packet::new_checked(bytes) else {
            self.cx.counters.rx_malformed += 1;
            return;
        };
        let total = IPV6_HLEN + usize::from(ip.payload_len());
        if ip.version() != 6 || total > bytes.len() {
            self.cx.counters.rx_malformed += 1;
            return;
        }
        let (src, dst) = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
        let (mut proto, mut l4) = (u8::from(ip.next_header()), IPV6_HLEN);
        if proto == PROTO_FRAGMENT6 {
            // A Fragment header right after the fixed one (what a guest stack sends).
            let Some(fh) = parse_frag6(&bytes[IPV6_HLEN..total]) else {
                self.cx.counters.rx_malformed += 1;
                return;
            };
            proto = fh.next;
            l4 = IPV6_HLEN + fragment::FRAG6_HLEN;
            if fh.offset != 0 || fh.more {
                let key = fragment::Key {
                    src,
                    dst,
                    proto: 0,
                    id: fh.ident,
                };
                let f = fragment::Fragment {
                    key,
                    proto,
                    offset: fh.offset,
                    more: fh.more,
                    hop: ip.hop_limit(),
                    data: &bytes[l4..total],
                };
                return self.fragment_from_guest(&f, src_mac);
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
            tail: None,
        };
        self.ip_from_guest(&pkt);
    }

    /// A fragment of a guest datagram: kept until the datagram is complete, which then
    /// goes on as if it had come whole.
    fn fragment_from_guest(&mut self, f: &fragment::Fragment<'_>, src_mac: [u8; 6]) {
        self.cx.counters.rx_fragments += 1;
        let fragment::Added::Complete(slot) = self.frag.add(f, self.cx.now) else {
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
            tail: None,
        };
        self.ip_from_guest(&pkt);
        self.frag.put_back(slot, d);
    }

    /// Where an IP packet from the guest goes, by protocol (and ICMP type).
    fn ip_from_guest(&mut self, pkt: &IpPacket<'_>) {
        let cx = &mut self.cx;
        let icmp_type = wire::icmp::msg_type(pkt.payload);
        match (pkt.proto, pkt.is_v6(), icmp_type) {
            (PROTO_TCP, _, _) => tcp::from_guest(cx, &mut self.tcp, pkt),
            (PROTO_UDP, _, _) => udp::from_guest(cx, &self.listeners, &mut self.dhcp, pkt),
            (PROTO_ICMP, false, Some(ECHO_REQUEST4))
            | (PROTO_ICMPV6, true, Some(ECHO_REQUEST6)) => {
                icmp::echo_from_guest(cx, &mut self.raw_ping, pkt)
            }
            (PROTO_ICMPV6, true, Some(ICMPV6_NS)) => ndp::ns_from_guest(cx, pkt),
            (PROTO_ICMPV6, true, Some(ICMPV6_RS)) => ndp::rs_from_guest(cx, &self.ra, pkt),
            (PROTO_ICMP, false, Some(_)) | (PROTO_ICMPV6, true, Some(_)) => {}
            (PROTO_ICMP, false, None) | (PROTO_ICMPV6, true, None) => cx.counters.rx_malformed += 1,
            _ => cx.counters.rx_unsupported += 1,
        }
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

    /// Readiness of the socket behind `token`, to its handler.
    pub fn socket_ready(&mut self, token: Token, readable: bool, writable: bool, error: bool) {
        let cx = &mut self.cx;
        let Some(n) = token.0.checked_sub(FIRST_TOKEN) else {
            if token == RAW_PING4 || token == RAW_PING6 {
                icmp::raw_ping_ready(cx, &self.raw_ping, token == RAW_PING6);
            }
            return;
        };
        if n & 1 == 1 {
            let index = n >> 1;
            match self.listeners.get(index) {
                Some(l) if l.tcp => tcp::accept(cx, &self.listeners, index),
                Some(_) => udp::listener_ready(cx, &self.listeners, index),
                None => {}
            }
            return;
        }
        let slot = n >> 1;
        match cx.flows.get_mut(slot) {
            Some(Flow::Tcp(_)) => tcp::ready(cx, &mut self.tcp, slot, (readable, writable, error)),
            Some(Flow::Udp(_)) => udp::ready(cx, slot, error),
            Some(Flow::Ping(_)) => icmp::ping_ready(cx, slot, error),
            None => {}
        }
    }

    /// The end of a batch of guest frames (and of each round of the loop): the guest
    /// data gathered goes to its socket ([`Engine::frames_follow`]), the ACKs owed go
    /// out. An ACK for a lone small segment waits for the next round instead — the
    /// reply, if the socket has one by then, carries it, which saves a frame and the
    /// guest's handling of it per request; the round after sends it regardless.
    pub fn flush(&mut self) {
        self.cx.frames_follow = false;
        tcp::flush_acks(&mut self.cx, &mut self.tcp);
    }

    /// Whether more of the guest's frames, read already, follow the next one handed
    /// over: consecutive TCP segments of a connection then go to its socket in one
    /// `send()` (`tcp/gather.rs`), at the latest when [`Engine::flush`] ends the batch.
    pub fn frames_follow(&mut self, follows: bool) {
        self.cx.frames_follow = follows;
    }

    /// Whether ACKs are being held for the next round: the loop should then wait at
    /// most [`DELACK_WAIT`] for events.
    pub fn acks_delayed(&self) -> bool {
        self.tcp.acks_delayed()
    }

    /// The guest side has room again: resume flows that stopped for it.
    pub fn guest_writable(&mut self) {
        tcp::resume_blocked(&mut self.cx, &mut self.tcp);
    }

    /// Retransmissions, window probes, idle timeouts, periodic RAs; notes when there is
    /// work next ([`Engine::next_timer`]). Call after events and when that time comes.
    pub fn timers(&mut self, now: Instant) {
        self.cx.now = now;
        self.frag.expire(now);
        if self.ra.next.is_some_and(|t| now >= t) {
            ndp::send_ra(&mut self.cx, &self.ra, None);
            self.ra.next = Some(now + RA_INTERVAL);
        }
        let earliest = |a: Option<Instant>, b: Option<Instant>| a.into_iter().chain(b).min();
        let mut next = earliest(self.ra.next, self.frag.next_expiry());
        let (udp_idle, icmp_idle) = (self.cx.cfg.udp_idle, self.cx.cfg.icmp_idle);
        for slot in 0..self.cx.flows.slot_count() {
            let idle_end = match self.cx.flows.get_mut(slot) {
                Some(Flow::Tcp(_)) => {
                    next = earliest(next, tcp::timer(&mut self.cx, &mut self.tcp, slot));
                    continue;
                }
                Some(Flow::Udp(u)) => u.last.checked_add(udp_idle),
                Some(Flow::Ping(p)) => p.last.checked_add(icmp_idle),
                None => continue,
            };
            if idle_end.is_some_and(|t| now > t) {
                let gone = self.cx.remove_flow(slot);
                self.forget_ping(gone, slot);
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
        let c = &mut self.cx.counters;
        c.busy_poll_window_us = window.as_micros() as u64;
        if polled {
            c.waits_polled += 1;
        } else {
            c.waits_slept += 1;
        }
    }

    /// Sets the engine's clock without running timers (tests drive time). Each call
    /// begins a new round of the loop (delayed ACKs wait for the next round).
    pub fn set_now(&mut self, now: Instant) {
        self.cx.now = now;
        self.tcp.next_round();
    }
}
