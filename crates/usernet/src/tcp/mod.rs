//! TCP: the guest's connections become connected kernel sockets of the namespace.
//!
//! There is no TCP stack here. The guest's TCP talks to the kernel's TCP through a
//! relay that translates between the two sequence spaces (passt's way):
//!
//! - **guest → socket**: an in-order segment is written to the socket with `send()`; what
//!   the kernel accepted is acknowledged to the guest. Segments of one connection that
//!   the attachment read together go in one `send()` (`gather.rs`). A segment after a hole (a frame
//!   lost or reordered on the way) is *held* (`held.rs`: a ring per connection, allocated
//!   only while something is held, from an engine-wide budget) and answered at once with
//!   a duplicate ACK carrying SACK blocks for what is held, so the guest resends just the
//!   hole; when the hole is filled, the held data follows into the socket. The window
//!   offered is what `send()` will certainly take: seven eighths of the free memory of
//!   the socket's send buffer in the kernel's own accounting (`SO_MEMINFO`), at most a
//!   ring. When that gets low, the socket's write-space wakeup is armed and brings a
//!   window update (the guest may be waiting for one). Should `send()` refuse data all
//!   the same (tiny segments cost more memory than they carry), the rest is held too,
//!   the window drops to zero, and the socket's writability moves the held data on and
//!   sends a window update (with duplicate ACKs when nothing could be held, so the
//!   guest resends at once). Without SACK (a guest that does not permit it) the guest
//!   learns of a hole only from duplicate ACKs and recovers one hole per round trip.
//!   Each ACK is sent once per batch of guest frames, and the socket is peeked for data
//!   toward the guest only when an ACK may have let more go. The ACK of a lone small
//!   pushed segment (a request: at most `DELACK_MAX` bytes, nothing else owed) waits one
//!   round of the event loop (at most `DELACK_WAIT`): a reply from the socket in that
//!   round carries it, and a request/response costs one frame to the guest, not two.
//! - **socket → guest**: data is *peeked* (`MSG_PEEK` with `SO_PEEK_OFF`) straight into
//!   frames in the guest side's buffer (for a guest side without offloads, a run of
//!   MSS-sized segments from one peek into a scratch buffer, copied into the frames),
//!   never consumed until the guest acknowledges it;
//!   then `recv(MSG_TRUNC)` drops exactly the acknowledged bytes — at once: left in the
//!   queue to be dropped in batches, a few KiB can hold the window toward the peer shut
//!   (Linux offers no window while the free space is under one MSS, 64 KiB on loopback),
//!   and the peer then waits for an update only consuming brings. The socket's receive
//!   queue is the retransmission buffer: a resend peeks at the offset of the bytes to go
//!   again. With SACK, the first duplicate ACK whose blocks show data beyond a hole
//!   starts a recovery that resends every gap the blocks reveal (and a gap again when
//!   data sent after its resend is reported first: the resend was lost); without SACK,
//!   three duplicate ACKs go back to the first unacknowledged byte. Duplicate ACKs during
//!   a recovery and D-SACKs (reports of data received twice) start nothing. When nothing
//!   is acknowledged for two round trips (measured, Karn's rule), a probe resends the
//!   first unacknowledged segment, twice, before the retransmission timeout goes back
//!   to it. End of stream becomes FIN to the guest once
//!   all data has been peeked; the guest's FIN becomes `shutdown(SHUT_WR)`.
//!
//! Why not a user-space stack or per-connection buffers: the kernel already keeps the
//! bytes, with its own flow control toward the peer; a second copy would cost memory per
//! connection (the 65,536-flow cap times a window) and a copy per byte, and a stack is the
//! code where slirp's memory-safety bugs lived. The price is that the relay needs Linux
//! with TCP `SO_PEEK_OFF` (6.9+) for full speed; older kernels peek from the head into a
//! discard buffer (1 MiB in flight at most).
//!
//! Handshakes: a guest SYN opens a non-blocking `connect()`; the SYN-ACK goes to the
//! guest only when the socket connected, so a refused connection is an RST and an
//! unreachable one an ICMP error, as if the guest had tried itself. Inbound, an accepted
//! connection sends a SYN to the guest. MSS: the guest's MSS bounds our segments; ours is
//! the MTU less headers. A guest side with offloads (a tap with a virtio-net header)
//! takes segments of up to 64 KiB with a partial checksum, cut at the MSS by the kernel
//! or taken whole by a local stack; it hands over such segments too. Window scaling is used when the guest offers it (our shift 7).
//! SACK is permitted when the guest's SYN permits it, and offered in our SYN. A reset
//! from the guest counts only at exactly the next expected sequence number; elsewhere in
//! the window it gets a challenge ACK, outside nothing (RFC 5961 §3).
//! Timers: RTO from 200 ms doubling to 10 s, ten tries, then RST both ways; a zero
//! window is probed with an old sequence number, for as long as the guest answers the
//! probes (each answer resets the count of tries). A peer that resets a connection
//! before the guest has acknowledged our SYN-ACK is an RST to the guest at once. The
//! guest reaches loopback addresses only through the gateway mapping (`route.rs`).
//!
//! File layout: `segment` parses and writes segments; `conn` is one connection's state
//! machine (its theory of operation has the table of states and events); `held` keeps
//! guest data after a hole; this file opens, accepts, dispatches and closes. Its
//! functions take the narrow context (`ctx.rs`: flow table, guest side, counters,
//! configuration, clock) and the relay's own state ([`TcpRelay`]: the lists of owed and
//! delayed ACKs, the flows waiting for room on the guest side, the rings' budget).

pub mod conn;
pub mod gather;
pub mod held;
pub mod segment;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::Interest;
use socket2::{Domain, SockAddr, Socket, Type};

pub use conn::TcpConn;
use conn::{Action, State, flags};
use gather::Gather;
use held::HeldBudget;
use segment::{ACK, RST, SYN, Segment};

use crate::config::EngineConfig;
use crate::ctx::Ctx;
use crate::flow::{Flow, FlowKey};
use crate::forward::Listener;
use crate::frame::{GuestTx, IpPacket};
use crate::icmp_error::{Unreachable, send_unreachable, send_unreachable_for};
use crate::route;
use crate::wire::{PROTO_TCP, TCP_HLEN, ip_hlen, tcp};

/// Size of the buffer bytes already sent are peeked into on kernels without
/// `SO_PEEK_OFF` for TCP (caps the bytes in flight to the guest there).
pub(crate) const DISCARD: usize = 1 << 20;
/// The most one peek takes for a run of segments to a guest without offloads
/// (`TcpConn::emit_run`).
const RUN: usize = 64 << 10;

/// The relay's state beside the flow table: what is owed across connections.
pub struct TcpRelay {
    /// Where peeks land that are not frames yet: bytes already sent, passed over
    /// without `SO_PEEK_OFF`, and runs of segments (made when first needed).
    scratch: Box<[u8]>,
    /// Rings for guest TCP data held until the socket takes it (`held.rs`).
    held_budget: HeldBudget,
    /// The run of one connection's guest data being gathered for one `send()`.
    gather: Gather,
    ack_pending: Vec<usize>,
    /// ACKs for lone small segments, held for one round of the loop ([`flush_acks`]).
    ack_delayed: Vec<usize>,
    /// The round `ack_delayed` was filled in; rounds are counted by [`TcpRelay::next_round`].
    delayed_round: u64,
    round: u64,
    /// Flows that stopped sending because the guest side was full.
    tx_blocked: Vec<usize>,
}

impl TcpRelay {
    /// The rings guest data is held in, for a migration's send queue that a rebuilt
    /// socket cannot take whole (`migrate::import`).
    pub(crate) fn held_budget(&self) -> &HeldBudget {
        &self.held_budget
    }
}

impl Default for TcpRelay {
    fn default() -> Self {
        TcpRelay {
            scratch: Vec::new().into_boxed_slice(),
            held_budget: HeldBudget::default(),
            gather: Gather::default(),
            ack_pending: Vec::with_capacity(1024),
            ack_delayed: Vec::with_capacity(1024),
            delayed_round: 0,
            round: 0,
            tx_blocked: Vec::new(),
        }
    }
}

impl TcpRelay {
    /// A new round of the event loop (delayed ACKs wait for the next one).
    pub fn next_round(&mut self) {
        self.round += 1;
    }

    /// Whether ACKs are being held for the next round.
    pub fn acks_delayed(&self) -> bool {
        !self.ack_delayed.is_empty()
    }
}

/// A segment from the guest: to its connection, or it opens one.
pub fn from_guest<G: GuestTx>(cx: &mut Ctx<G>, relay: &mut TcpRelay, pkt: &IpPacket<'_>) {
    if !cx.cfg.relay_tcp {
        cx.counters.rx_disabled += 1;
        return;
    }
    let Ok(mut s) = Segment::parse(pkt.payload) else {
        cx.counters.rx_malformed += 1;
        return;
    };
    s.payload = s.payload.with_tail(pkt.tail);
    s.more = cx.frames_follow;
    let key = FlowKey {
        proto: PROTO_TCP,
        guest: SocketAddr::new(pkt.src, s.src_port),
        remote: SocketAddr::new(pkt.dst, s.dst_port),
    };
    let Some(slot) = cx.flows.lookup(&key) else {
        open(cx, pkt, &s, key);
        return;
    };
    if relay.gather.owner().is_some_and(|o| o != slot) {
        end_run(cx, relay); // one connection's run at a time
    }
    let Some(Flow::Tcp(c)) = cx.flows.get_mut(slot) else {
        return;
    };
    let (budget, gather) = (&relay.held_budget, &mut relay.gather);
    let action = c.on_segment(&s, &mut cx.out, cx.now, &mut relay.scratch, budget, gather);
    gather.claim(slot);
    after(cx, relay, slot, action);
}

/// Sends the run of guest data gathered (`gather.rs`), if any, to its connection's
/// socket.
fn end_run<G: GuestTx>(cx: &mut Ctx<G>, relay: &mut TcpRelay) {
    let Some(slot) = relay.gather.owner() else {
        return;
    };
    let Some(Flow::Tcp(c)) = cx.flows.get_mut(slot) else {
        relay.gather.clear(); // not acknowledged: the guest sends it again
        return;
    };
    let action = match c.send_gathered(&mut relay.gather, &relay.held_budget) {
        Ok(()) => Action::Keep,
        Err(action) => action,
    };
    after(cx, relay, slot, action);
}

/// A segment for no connection: a SYN opens one, anything else is answered with RST.
fn open<G: GuestTx>(cx: &mut Ctx<G>, pkt: &IpPacket<'_>, s: &Segment<'_>, key: FlowKey) {
    if s.flags & (SYN | ACK | RST) != SYN {
        rst_for(cx, key, s);
        return;
    }
    if !route::destination_ok(pkt.dst) || s.dst_port == 0 {
        return;
    }
    if cx.flows.next_slot().is_none() {
        cx.counters.refused_full += 1;
        rst_for(cx, key, s);
        return;
    }
    let target = route::outbound(&cx.cfg, pkt.dst, s.dst_port, true);
    let Ok(sock) = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking().cloexec(),
        None,
    ) else {
        rst_for(cx, key, s);
        return;
    };
    if route::bind_outbound(&cx.cfg, &sock, target).is_err() {
        rst_for(cx, key, s);
        return;
    }
    let _ = sock.set_tcp_nodelay(true);
    match sock.connect(&SockAddr::from(target)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
        Err(e) => {
            match Unreachable::from_io(&e) {
                Some(Unreachable::Port) | None => rst_for(cx, key, s),
                Some(kind) => send_unreachable(cx, kind, pkt.dst, pkt.src, pkt.packet),
            }
            return;
        }
    }
    let isn = cx.next_random();
    let our_mss = our_mss(&cx.cfg, pkt.is_v6());
    let mut conn = TcpConn::new(sock, key.guest, key.remote, State::Connecting, isn, our_mss);
    conn.rcv_nxt = s.seq.wrapping_add(1);
    conn.snd_wnd = u32::from(s.window);
    conn.guest_ws = s.wscale.map_or(0, |w| w.min(14));
    if s.wscale.is_none() {
        conn.our_ws = 0;
    }
    conn.mss = conn.our_mss.min(s.mss.unwrap_or(536).max(64));
    conn.use_timestamps(s.ts);
    conn.sack = s.sack_permitted;
    insert(cx, key, conn);
    cx.counters.tcp_opened += 1;
}

/// The MSS we announce: the MTU less the IP and TCP headers.
fn our_mss(cfg: &EngineConfig, v6: bool) -> u16 {
    (usize::from(cfg.mtu) - ip_hlen(v6) - TCP_HLEN).min(65535) as u16
}

fn insert<G>(cx: &mut Ctx<G>, key: FlowKey, conn: TcpConn) -> Option<usize> {
    let fd = conn.sock.as_raw_fd();
    let slot = cx.flows.insert(key, Flow::Tcp(Box::new(conn))).ok()?;
    cx.register_flow(slot, fd, Interest::READABLE | Interest::WRITABLE)
        .then_some(slot)
}

/// RST for a segment that belongs to no connection (RFC 9293, 3.10.7.1).
fn rst_for<G: GuestTx>(cx: &mut Ctx<G>, key: FlowKey, s: &Segment<'_>) {
    if s.flags & RST != 0 {
        return;
    }
    let (seq, ack, flags) = if s.flags & ACK != 0 {
        (s.ack, 0, RST)
    } else {
        (0, s.seq.wrapping_add(s.seq_len()), RST | ACK)
    };
    send_rst(cx, key.remote, key.guest, seq, ack, flags);
}

/// Resets a connection the guest has with `from` that the engine no longer holds (a
/// migration could not carry it): RST-ACK at `seq`, acknowledging `ack`. Should the
/// guest have seen less than `seq`, it answers with a challenge ACK, which draws an
/// RST at exactly the right place (`rst_for`).
pub fn reset_guest<G: GuestTx>(
    cx: &mut Ctx<G>,
    from: SocketAddr,
    to: SocketAddr,
    seq: u32,
    ack: u32,
) {
    send_rst(cx, from, to, seq, ack, RST | ACK);
}

/// A bare RST (or RST-ACK) `from → to`, counted when sent.
fn send_rst<G: GuestTx>(
    cx: &mut Ctx<G>,
    from: SocketAddr,
    to: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
) {
    let h = segment::Header {
        from,
        to,
        seq,
        ack,
        flags,
        window: 0,
    };
    let len = segment::payload_offset(to.is_ipv6(), 0);
    if cx
        .out
        .emit(len, |buf, mac| segment::write(buf, mac, &h, &[], 0))
    {
        cx.counters.rst_sent += 1;
    }
}

/// Applies what a connection asked for after an event.
fn after<G: GuestTx>(cx: &mut Ctx<G>, relay: &mut TcpRelay, slot: usize, action: Action) {
    let Some(Flow::Tcp(c)) = cx.flows.get_mut(slot) else {
        return;
    };
    // Fold the connection's byte counts into the engine's.
    let st = std::mem::take(&mut c.stats);
    cx.counters.tcp_bytes_from_guest += st.from_guest;
    cx.counters.tcp_bytes_to_guest += st.to_guest;
    cx.counters.retransmits += st.retransmits;
    cx.counters.tcp_send_refused += st.refused;
    cx.counters.tcp_segments_held += st.held;
    cx.counters.tcp_segments_gathered += st.gathered;
    if c.has(flags::ACK_PENDING) && !c.has(flags::ACK_QUEUED) {
        c.flags |= flags::ACK_QUEUED;
        relay.ack_pending.push(slot);
    }
    if c.has(flags::WANT_TX) && !c.has(flags::TX_QUEUED) {
        c.flags |= flags::TX_QUEUED;
        relay.tx_blocked.push(slot);
    }
    if !matches!(action, Action::Keep) && relay.gather.owner() == Some(slot) {
        relay.gather.clear(); // its run goes with it, unacknowledged
    }
    match action {
        Action::Keep => {}
        Action::Close => {
            cx.remove_flow(slot);
        }
        Action::Abort => {
            cx.abort_flow(slot);
        }
        Action::Reset => {
            c.send_rst(&mut cx.out);
            cx.counters.rst_sent += 1;
            cx.abort_flow(slot);
        }
        Action::Refused(e) => {
            let (guest, remote, rcv_nxt) = (c.guest, c.remote, c.rcv_nxt);
            match Unreachable::from_io(&e) {
                Some(kind @ (Unreachable::Net | Unreachable::Host)) => {
                    let first8 = tcp::first8(guest.port(), remote.port(), rcv_nxt.wrapping_sub(1));
                    send_unreachable_for(cx, kind, PROTO_TCP, guest, remote, first8);
                }
                // Refused, timed out, reset: as a closed port would answer.
                _ => send_rst(cx, remote, guest, 0, rcv_nxt, RST | ACK),
            }
            cx.remove_flow(slot);
        }
    }
}

/// Socket readiness of a connection.
pub fn ready<G: GuestTx>(
    cx: &mut Ctx<G>,
    relay: &mut TcpRelay,
    slot: usize,
    (readable, writable, error): (bool, bool, bool),
) {
    let Some(Flow::Tcp(c)) = cx.flows.get_mut(slot) else {
        return;
    };
    // Made when first needed: the peeks of bytes already sent without SO_PEEK_OFF
    // (up to DISCARD in flight), or runs of segments to a guest without offloads.
    let need = if c.has(flags::PEEK_FALLBACK) {
        DISCARD
    } else if cx.out.guest.offloads() {
        0
    } else {
        RUN
    };
    if relay.scratch.len() < need {
        relay.scratch = vec![0; need].into_boxed_slice();
    }
    let action = c.on_ready(
        readable,
        writable,
        error,
        &mut cx.out,
        cx.now,
        &mut relay.scratch,
    );
    after(cx, relay, slot, action);
}

/// The connection's retransmission, probe or handshake timer, if it is due; returns
/// when it is due next.
pub fn timer<G: GuestTx>(
    cx: &mut Ctx<G>,
    relay: &mut TcpRelay,
    slot: usize,
) -> Option<std::time::Instant> {
    let now = cx.now;
    let Some(Flow::Tcp(c)) = cx.flows.get_mut(slot) else {
        return None;
    };
    if c.deadline.is_some_and(|d| now >= d) {
        let action = c.on_timer(&mut cx.out, now, &mut relay.scratch);
        after(cx, relay, slot, action);
    }
    match cx.flows.get_mut(slot) {
        Some(Flow::Tcp(c)) => c.deadline,
        _ => None,
    }
}

/// The end of a batch of guest frames: a run of guest data still gathered goes to its
/// socket (`gather.rs`), then the ACKs owed go out, but for a lone small segment's,
/// which waits one round (a reply may carry it); the round after sends it.
pub fn flush_acks<G: GuestTx>(cx: &mut Ctx<G>, relay: &mut TcpRelay) {
    end_run(cx, relay);
    // ACKs held in an earlier round go now, unless a reply carried them meanwhile.
    let mut delayed = std::mem::take(&mut relay.ack_delayed);
    if relay.delayed_round != relay.round {
        for &slot in &delayed {
            if let Some(Flow::Tcp(c)) = cx.flows.get_mut(slot)
                && c.has(flags::ACK_DELAYED)
            {
                c.flags &= !(flags::ACK_DELAYED | flags::ACK_DELAYABLE);
                if c.has(flags::ACK_PENDING) {
                    c.send_ack(&mut cx.out);
                }
            }
        }
        delayed.clear();
    }
    let mut pending = std::mem::take(&mut relay.ack_pending);
    for &slot in &pending {
        if let Some(Flow::Tcp(c)) = cx.flows.get_mut(slot) {
            c.flags &= !flags::ACK_QUEUED;
            if !c.has(flags::ACK_PENDING) {
                continue;
            }
            if !c.has(flags::ACK_DELAYABLE) {
                c.send_ack(&mut cx.out);
            } else if !c.has(flags::ACK_DELAYED) {
                c.flags |= flags::ACK_DELAYED;
                delayed.push(slot);
                relay.delayed_round = relay.round;
            }
        }
    }
    pending.clear();
    relay.ack_pending = pending;
    relay.ack_delayed = delayed;
}

/// The guest side has room again: resume the flows that stopped for it (only those:
/// with many flows, a scan of the whole table per guest wakeup would cost latency).
pub fn resume_blocked<G: GuestTx>(cx: &mut Ctx<G>, relay: &mut TcpRelay) {
    // Flows that block again while resuming are queued anew behind the first `n`.
    let n = relay.tx_blocked.len();
    let mut done = 0;
    while done < n && cx.out.has_room(65536) {
        let slot = relay.tx_blocked[done];
        done += 1;
        let Some(Flow::Tcp(c)) = cx.flows.get_mut(slot) else {
            continue;
        };
        if !c.has(flags::WANT_TX) {
            continue;
        }
        c.flags &= !(flags::WANT_TX | flags::TX_QUEUED);
        let action = c.data_from_sock(&mut cx.out, cx.now, &mut relay.scratch);
        after(cx, relay, slot, action);
    }
    relay.tx_blocked.drain(..done);
}

/// A migrated guest runs here now: the connections whose peer had closed send what is
/// left and their FIN (their rebuilt sockets bring no wakeup for an end they never had).
pub fn migrated_ends<G: GuestTx>(cx: &mut Ctx<G>, relay: &mut TcpRelay) {
    for slot in 0..cx.flows.slot_count() {
        let Some(Flow::Tcp(c)) = cx.flows.get_mut(slot) else {
            continue;
        };
        if c.has(flags::PEER_CLOSED) && !c.has(flags::FIN_SENT) {
            let action = c.data_from_sock(&mut cx.out, cx.now, &mut relay.scratch);
            after(cx, relay, slot, action);
        }
    }
}

/// Connections on inbound TCP listener `index`: each starts with a SYN to the guest.
pub fn accept<G: GuestTx>(cx: &mut Ctx<G>, listeners: &[Listener], index: usize) {
    let Some(listener) = listeners.get(index) else {
        return;
    };
    let (port, v6) = (listener.guest_port, listener.v6);
    loop {
        let (sock, peer) = match listener.sock.accept() {
            Ok(x) => x,
            Err(_) => return,
        };
        let Some(peer) = peer.as_socket() else {
            continue;
        };
        let guest_ip = route::guest_addr(&cx.cfg, v6);
        let (Some(guest_ip), Some(seen)) = (guest_ip, route::inbound(&cx.cfg, peer.ip())) else {
            continue;
        };
        if cx.flows.next_slot().is_none() {
            cx.counters.refused_full += 1;
            let _ = sock.set_linger(Some(Duration::ZERO));
            continue;
        }
        let guest = SocketAddr::new(guest_ip, port);
        let remote = SocketAddr::new(seen, peer.port());
        accept_one(cx, sock, guest, remote);
    }
}

/// One accepted connection `remote → guest`: a SYN to the guest, and a flow.
fn accept_one<G: GuestTx>(cx: &mut Ctx<G>, sock: Socket, guest: SocketAddr, remote: SocketAddr) {
    let _ = sock.set_nonblocking(true);
    let _ = sock.set_tcp_nodelay(true);
    let isn = cx.next_random();
    let our_mss = our_mss(&cx.cfg, guest.is_ipv6());
    let mut conn = TcpConn::new(sock, guest, remote, State::SynSent, isn, our_mss);
    if crate::sys::set_peek_off(std::os::fd::AsFd::as_fd(&conn.sock), 0).is_err() {
        conn.flags |= flags::PEEK_FALLBACK;
    }
    let key = FlowKey {
        proto: PROTO_TCP,
        guest,
        remote,
    };
    if cx.flows.lookup(&key).is_some() {
        return;
    }
    conn.send_syn(&mut cx.out, cx.now);
    if insert(cx, key, conn).is_some() {
        cx.counters.tcp_accepted += 1;
    }
}
