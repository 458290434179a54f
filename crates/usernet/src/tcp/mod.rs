//! TCP: the guest's connections become connected kernel sockets of the namespace.
//!
//! There is no TCP stack here. The guest's TCP talks to the kernel's TCP through a
//! relay that translates between the two sequence spaces (passt's way):
//!
//! - **guest → socket**: an in-order segment is written to the socket with `send()`; what
//!   the kernel accepted is acknowledged to the guest. A segment after a hole (a frame
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
//!   frames in the guest side's buffer, never consumed until the guest acknowledges it;
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
//! guest reaches loopback addresses only through the gateway mapping (`engine.rs`).
//!
//! File layout: `segment` parses and writes segments; `conn` is one connection's state
//! machine; this file opens, accepts, dispatches and closes.

pub mod conn;
pub mod held;
pub mod segment;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::Interest;
use socket2::{Domain, SockAddr, Socket, Type};

pub use conn::TcpConn;
use conn::{Action, State, flags};
use segment::{ACK, RST, SYN, Segment};

use crate::engine::{DISCARD, Engine};
use crate::flow::{Flow, FlowKey};
use crate::frame::{GuestTx, IpPacket, PROTO_TCP, TCP_HLEN, ip_hlen};
use crate::icmp::Unreachable;

impl<G: GuestTx> Engine<G> {
    pub(crate) fn tcp_from_guest(&mut self, pkt: &IpPacket<'_>) {
        let Ok(s) = Segment::parse(pkt.payload) else {
            self.counters.rx_malformed += 1;
            return;
        };
        let key = FlowKey {
            proto: PROTO_TCP,
            guest: SocketAddr::new(pkt.src, s.src_port),
            remote: SocketAddr::new(pkt.dst, s.dst_port),
        };
        let Some(slot) = self.flows.lookup(&key) else {
            self.tcp_open(pkt, &s, key);
            return;
        };
        let now = self.now;
        let Engine {
            flows,
            out,
            discard,
            held_budget,
            ..
        } = self;
        let Some(Flow::Tcp(c)) = flows.get_mut(slot) else {
            return;
        };
        let action = c.on_segment(&s, out, now, discard, held_budget);
        self.tcp_after(slot, action);
    }

    /// A segment for no connection: a SYN opens one, anything else is answered with RST.
    fn tcp_open(&mut self, pkt: &IpPacket<'_>, s: &Segment<'_>, key: FlowKey) {
        if s.flags & (SYN | ACK | RST) != SYN {
            self.tcp_rst_for(key, s);
            return;
        }
        if !self.flow_destination_ok(pkt.dst) || s.dst_port == 0 {
            return;
        }
        if self.flows.next_slot().is_none() {
            self.counters.refused_full += 1;
            self.tcp_rst_for(key, s);
            return;
        }
        let target = self.map_outbound(pkt.dst, s.dst_port, true);
        let Ok(sock) = Socket::new(
            Domain::for_address(target),
            Type::STREAM.nonblocking().cloexec(),
            None,
        ) else {
            self.tcp_rst_for(key, s);
            return;
        };
        let _ = sock.set_tcp_nodelay(true);
        match sock.connect(&SockAddr::from(target)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
            Err(e) => {
                match Unreachable::from_io(&e) {
                    Some(Unreachable::Port) | None => self.tcp_rst_for(key, s),
                    Some(kind) => self.send_unreachable(kind, pkt.dst, pkt.src, pkt.packet),
                }
                return;
            }
        }
        let v6 = pkt.is_v6();
        let isn = self.next_random();
        let mut conn = TcpConn::new(
            sock,
            key.guest,
            key.remote,
            State::Connecting,
            isn,
            self.our_mss(v6),
        );
        conn.rcv_nxt = s.seq.wrapping_add(1);
        conn.snd_wnd = u32::from(s.window);
        conn.guest_ws = s.wscale.map_or(0, |w| w.min(14));
        if s.wscale.is_none() {
            conn.our_ws = 0;
        }
        conn.mss = conn.our_mss.min(s.mss.unwrap_or(536).max(64));
        conn.sack = s.sack_permitted;
        self.tcp_insert(key, conn);
        self.counters.tcp_opened += 1;
    }

    /// The MSS we announce: the MTU less the IP and TCP headers.
    fn our_mss(&self, v6: bool) -> u16 {
        (usize::from(self.cfg.mtu) - ip_hlen(v6) - TCP_HLEN).min(65535) as u16
    }

    fn tcp_insert(&mut self, key: FlowKey, conn: TcpConn) -> Option<usize> {
        let fd = conn.sock.as_raw_fd();
        let slot = self.flows.insert(key, Flow::Tcp(Box::new(conn))).ok()?;
        if self
            .register_fd(
                fd,
                Self::flow_token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.abort_flow(slot);
            return None;
        }
        Some(slot)
    }

    /// RST for a segment that belongs to no connection (RFC 9293, 3.10.7.1).
    fn tcp_rst_for(&mut self, key: FlowKey, s: &Segment<'_>) {
        if s.flags & RST != 0 {
            return;
        }
        let (seq, ack, flags) = if s.flags & ACK != 0 {
            (s.ack, 0, RST)
        } else {
            (0, s.seq.wrapping_add(s.seq_len()), RST | ACK)
        };
        let h = segment::Header {
            from: key.remote,
            to: key.guest,
            seq,
            ack,
            flags,
            window: 0,
        };
        let v6 = key.guest.is_ipv6();
        if self.out.emit(segment::payload_offset(v6, 0), |buf, mac| {
            segment::write(buf, mac, &h, &[], 0)
        }) {
            self.counters.rst_sent += 1;
        }
    }

    /// Applies what a connection asked for after an event.
    fn tcp_after(&mut self, slot: usize, action: Action) {
        let Some(Flow::Tcp(c)) = self.flows.get_mut(slot) else {
            return;
        };
        // Fold the connection's byte counts into the engine's.
        let st = std::mem::take(&mut c.stats);
        self.counters.tcp_bytes_from_guest += st.from_guest;
        self.counters.tcp_bytes_to_guest += st.to_guest;
        self.counters.retransmits += st.retransmits;
        self.counters.tcp_send_refused += st.refused;
        self.counters.tcp_segments_held += st.held;
        if c.has(flags::ACK_PENDING) && !c.has(flags::ACK_QUEUED) {
            c.flags |= flags::ACK_QUEUED;
            self.ack_pending.push(slot);
        }
        if c.has(flags::WANT_TX) && !c.has(flags::TX_QUEUED) {
            c.flags |= flags::TX_QUEUED;
            self.tx_blocked.push(slot);
        }
        match action {
            Action::Keep => {}
            Action::Close => self.remove_flow(slot),
            Action::Abort => self.abort_flow(slot),
            Action::Reset => {
                c.send_rst(&mut self.out);
                self.counters.rst_sent += 1;
                self.abort_flow(slot);
            }
            Action::Refused(e) => {
                let (guest, remote, first8) = {
                    let mut first8 = [0u8; 8];
                    first8[0..2].copy_from_slice(&c.guest.port().to_be_bytes());
                    first8[2..4].copy_from_slice(&c.remote.port().to_be_bytes());
                    first8[4..8].copy_from_slice(&c.rcv_nxt.wrapping_sub(1).to_be_bytes());
                    (c.guest, c.remote, first8)
                };
                match Unreachable::from_io(&e) {
                    Some(kind @ (Unreachable::Net | Unreachable::Host)) => {
                        self.send_unreachable_for(kind, PROTO_TCP, guest, remote, first8);
                    }
                    _ => {
                        // Refused, timed out, reset: as a closed port would answer.
                        let h = segment::Header {
                            from: remote,
                            to: guest,
                            seq: 0,
                            ack: c.rcv_nxt,
                            flags: RST | ACK,
                            window: 0,
                        };
                        if self
                            .out
                            .emit(segment::payload_offset(guest.is_ipv6(), 0), |buf, mac| {
                                segment::write(buf, mac, &h, &[], 0)
                            })
                        {
                            self.counters.rst_sent += 1;
                        }
                    }
                }
                self.remove_flow(slot);
            }
        }
    }

    pub(crate) fn tcp_ready(&mut self, slot: usize, readable: bool, writable: bool, error: bool) {
        let now = self.now;
        let Engine {
            flows,
            out,
            discard,
            ..
        } = self;
        let Some(Flow::Tcp(c)) = flows.get_mut(slot) else {
            return;
        };
        if c.has(flags::PEEK_FALLBACK) && discard.is_empty() {
            *discard = vec![0; DISCARD].into_boxed_slice();
        }
        let action = c.on_ready(readable, writable, error, out, now, discard);
        self.tcp_after(slot, action);
    }

    pub(crate) fn tcp_timer(&mut self, slot: usize) {
        let now = self.now;
        let Engine {
            flows,
            out,
            discard,
            ..
        } = self;
        let Some(Flow::Tcp(c)) = flows.get_mut(slot) else {
            return;
        };
        if c.deadline.is_none_or(|d| now < d) {
            return;
        }
        let action = c.on_timer(out, now, discard);
        self.tcp_after(slot, action);
    }

    pub(crate) fn tcp_flush_acks(&mut self) {
        // ACKs held in an earlier round go now, unless a reply carried them meanwhile.
        let mut delayed = std::mem::take(&mut self.ack_delayed);
        if self.delayed_round != self.round {
            for &slot in &delayed {
                if let Some(Flow::Tcp(c)) = self.flows.get_mut(slot)
                    && c.has(flags::ACK_DELAYED)
                {
                    c.flags &= !(flags::ACK_DELAYED | flags::ACK_DELAYABLE);
                    if c.has(flags::ACK_PENDING) {
                        c.send_ack(&mut self.out);
                    }
                }
            }
            delayed.clear();
        }
        let mut pending = std::mem::take(&mut self.ack_pending);
        for &slot in &pending {
            if let Some(Flow::Tcp(c)) = self.flows.get_mut(slot) {
                c.flags &= !flags::ACK_QUEUED;
                if !c.has(flags::ACK_PENDING) {
                    continue;
                }
                if !c.has(flags::ACK_DELAYABLE) {
                    c.send_ack(&mut self.out);
                } else if !c.has(flags::ACK_DELAYED) {
                    c.flags |= flags::ACK_DELAYED;
                    delayed.push(slot);
                    self.delayed_round = self.round;
                }
            }
        }
        pending.clear();
        self.ack_pending = pending;
        self.ack_delayed = delayed;
    }

    /// The guest side has room again: resume the flows that stopped for it (only those:
    /// with many flows, a scan of the whole table per guest wakeup would cost latency).
    pub(crate) fn tcp_resume_blocked(&mut self) {
        // Flows that block again while resuming are queued anew behind the first `n`.
        let n = self.tx_blocked.len();
        let mut done = 0;
        while done < n && self.out.has_room(65536) {
            let slot = self.tx_blocked[done];
            done += 1;
            let now = self.now;
            let Engine {
                flows,
                out,
                discard,
                ..
            } = self;
            let Some(Flow::Tcp(c)) = flows.get_mut(slot) else {
                continue;
            };
            if !c.has(flags::WANT_TX) {
                continue;
            }
            c.flags &= !(flags::WANT_TX | flags::TX_QUEUED);
            let action = c.data_from_sock(out, now, discard);
            self.tcp_after(slot, action);
        }
        self.tx_blocked.drain(..done);
    }

    /// Connections on an inbound TCP listener.
    pub(crate) fn tcp_accept(&mut self, index: usize) {
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            let (port, v6) = (listener.guest_port, listener.v6);
            let (sock, peer) = match listener.sock.accept() {
                Ok(x) => x,
                Err(_) => return,
            };
            let Some(peer) = peer.as_socket() else {
                continue;
            };
            let (Some(guest_ip), Some(seen)) = (self.guest_addr(v6), self.map_inbound(peer.ip()))
            else {
                continue;
            };
            if self.flows.next_slot().is_none() {
                self.counters.refused_full += 1;
                let _ = sock.set_linger(Some(Duration::ZERO));
                continue;
            }
            let _ = sock.set_nonblocking(true);
            let _ = sock.set_tcp_nodelay(true);
            let guest = SocketAddr::new(guest_ip, port);
            let remote = SocketAddr::new(seen, peer.port());
            let isn = self.next_random();
            let mut conn = TcpConn::new(sock, guest, remote, State::SynSent, isn, self.our_mss(v6));
            if crate::sys::set_peek_off(std::os::fd::AsFd::as_fd(&conn.sock), 0).is_err() {
                conn.flags |= flags::PEEK_FALLBACK;
            }
            let key = FlowKey {
                proto: PROTO_TCP,
                guest,
                remote,
            };
            if self.flows.lookup(&key).is_some() {
                continue;
            }
            let now = self.now;
            conn.send_syn(&mut self.out, now);
            if self.tcp_insert(key, conn).is_some() {
                self.counters.tcp_accepted += 1;
            }
        }
    }
}
