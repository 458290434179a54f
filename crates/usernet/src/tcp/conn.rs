//! One TCP connection between the guest and a kernel socket: the state machine.
//!
//! Sequence spaces (see `tcp/mod.rs` for why there is no buffer here):
//!
//! ```text
//! guest → socket:  rcv_nxt = next byte expected from the guest = bytes accepted by send()
//! socket → guest:  snd_una ≤ snd_nxt;  [snd_una, snd_nxt) = bytes sent to the guest, not yet
//!                  acknowledged = the head of the socket's receive queue, still there because
//!                  we only peeked; SO_PEEK_OFF == snd_nxt - snd_una (less a FIN's one)
//! ```
//!
//! What holds: `snd_nxt - snd_una` never exceeds the guest's window; an acknowledgement
//! for `n` data bytes removes exactly `n` bytes from the socket; the guest is acknowledged
//! only what the socket accepted, so nothing is acknowledged that could be lost here.
//! Guest data the socket cannot take yet — segments after a hole, the rest of a segment
//! `send()` took in part — is held (`held.rs`) and reported in SACK blocks when the guest
//! permits them, so a lost or reordered segment costs the guest one resend of the hole,
//! not of its whole window. A reset from the guest counts only at exactly the expected
//! sequence number; one elsewhere in the window gets a challenge ACK, others nothing
//! (RFC 5961 §3).
//!
//! States and events: a segment from the guest ([`TcpConn::on_segment`]) is taken in
//! the order of the rows below, one step per group, each step a method; a step that
//! ends the handling says so (→). The flag bits of one segment combine: an ACK that
//! carries data and FIN passes the ACK, data and FIN steps in turn.
//!
//! ```text
//! step       state        segment (flags as they combine)        action                                    next
//! 1 RST      SynSent      RST+ACK of our SYN                     abort the socket (RST to the peer) →      removed
//!            other        RST at exactly rcv_nxt                 abort the socket →                        removed
//!            other        RST elsewhere in our window            challenge ACK →                           same
//!            any          RST anywhere else                      nothing →                                 same
//! 2 hand-    Connecting   anything                               nothing: connect() under way →            Connecting
//!   shake    SynSent      SYN+ACK acking our SYN                 take ISN, MSS, scale, SACK; ACK; send
//!                                                                what the socket has →                     Established
//!            SynSent      anything else                          nothing →                                 SynSent
//!            SynAckSent   SYN without ACK                        SYN-ACK again (ours was lost) →           SynAckSent
//!            SynAckSent   ACK of our SYN-ACK (+data, +FIN)       established; the socket may hold data     Established
//!            SynAckSent   anything else                          nothing →                                 SynAckSent
//! 3 SYN      Established  SYN (a stray or repeated one)          nothing →                                 Established
//! 4 ACK      Established  ACK of new data (or of our FIN)        drop the bytes from the socket; timers,
//!                                                                RTT sample; SACK recovery: next holes     Established
//!                         ACK, nothing outstanding               a probe answered: retries reset           Established
//!                         duplicate ACK (no data, no FIN, same   SACK: resend the holes (a recovery); no
//!                         window or SACK blocks, no D-SACK)      SACK: the third rewinds to snd_una        Established
//!                         any ACK whose window moved             a stalled sender resumes (TX_KICK)        Established
//! 5 data     Established  data after a hole                     hold it (and its FIN); duplicate ACK+SACK Established
//!                         data already had, or after guest FIN   ACK owed                                  Established
//!                         data in order                          send() to the socket; ACK owed (may wait
//!                                                                a round: a lone small push); the rest
//!                                                                held if refused; held data follows        Established
//! 6 FIN      Established  FIN in order                           shutdown(SHUT_WR); ACK                    +GUEST_FIN
//!                         FIN again (after GUEST_FIN)            ACK                                       same
//!                         FIN after a hole                       remembered with the held data             same
//! 7 close    any          GUEST_FIN and FIN_ACKED both set       the ACK owed →                            removed
//! 8 resume   Established  TX_KICK set by steps 2–4               send what the socket has                  same
//! ```

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use socket2::Socket;

use super::gather::Gather;
use super::held::{Held, HeldBudget, RING};
use super::segment::{self, ACK, FIN, Header, PSH, Payload, RST, SYN, Segment, before};
use crate::frame::{GuestTx, Out, Placed, TxMeta};
use crate::sys;
use crate::wire::tcp::{TS_LEN, ts_option};
use crate::wire::{ETH_HLEN, TCP_CHECKSUM, ip_hlen};

pub const RTO_INIT: Duration = Duration::from_millis(200);
pub const RTO_MAX: Duration = Duration::from_secs(10);
pub const MAX_RETRIES: u8 = 10;
/// Probes before the retransmission timeout: when data is outstanding and nothing is
/// acknowledged for two round trips, the first unacknowledged segment goes again (a
/// lost segment at the end of a flight brings no duplicate ACK that would say so).
pub const PROBES: u8 = 2;
/// Most bytes one ACK of the guest may make us resend.
pub const RESEND_BURST: u32 = 256 * 1024;
/// The probe timeout before a round trip was measured, and its floor.
pub const PTO_INIT: Duration = Duration::from_millis(20);
pub const PTO_MIN: Duration = Duration::from_millis(5);
/// Window scale the engine offers (windows up to 2^30 bytes).
pub const OUR_WSCALE: u8 = 7;
/// Largest payload of one segment to a guest side with offloads: the IP length field's
/// limit less IPv6 and TCP headers.
pub const MAX_SUPER_SEGMENT: u32 = 65535 - 40 - 20 - TS_LEN as u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Guest sent SYN; our `connect()` is in progress.
    Connecting,
    /// Socket connected; SYN-ACK sent to the guest, waiting for its ACK.
    SynAckSent,
    /// Inbound: connection accepted; SYN sent to the guest, waiting for its SYN-ACK.
    SynSent,
    Established,
}

/// Flag bits.
pub mod flags {
    /// FIN sent to the guest (socket reached end of stream).
    pub const FIN_SENT: u32 = 1 << 0;
    /// The guest acknowledged our FIN.
    pub const FIN_ACKED: u32 = 1 << 1;
    /// The guest's FIN arrived; the socket was shut down for writing.
    pub const GUEST_FIN: u32 = 1 << 2;
    /// An ACK is owed to the guest (sent at the end of the batch).
    pub const ACK_PENDING: u32 = 1 << 3;
    /// Queued in the engine's pending-ACK list.
    pub const ACK_QUEUED: u32 = 1 << 4;
    /// The guest side was full: resume sending when it has room.
    pub const WANT_TX: u32 = 1 << 5;
    /// The socket refused guest data: when it drains, tell the guest (and make it resend).
    pub const WND_UPDATE: u32 = 1 << 6;
    /// The kernel lacks TCP `SO_PEEK_OFF`: peek from the head, skipping what was sent.
    pub const PEEK_FALLBACK: u32 = 1 << 7;
    /// The window offered was small and the socket's write-space wakeup is armed: when
    /// it comes, send the guest a window update.
    pub const WND_WAIT: u32 = 1 << 8;
    /// Sending stopped with data left (the guest's window was full): an ACK or a window
    /// change from the guest resumes it.
    pub const TX_STALLED: u32 = 1 << 9;
    /// Resume sending after this segment (set from `TX_STALLED`, hence the next bit).
    pub const TX_KICK: u32 = 1 << 10;
    /// The socket reported end of stream or an error (`EPOLLRDHUP`/`EPOLLERR`): a short
    /// peek must be followed by another, to see the end. Without it, a short peek means
    /// the queue is empty and the next data brings a new wakeup.
    pub const RD_CLOSED: u32 = 1 << 11;
    /// Queued in the engine's list of flows waiting for room on the guest side.
    pub const TX_QUEUED: u32 = 1 << 12;
    /// The ACK owed is for one lone small segment (pushed, nothing else owed): it may
    /// wait one round of the event loop, for a reply to carry it.
    pub const ACK_DELAYABLE: u32 = 1 << 13;
    /// Queued in the engine's delayed-ACK list.
    pub const ACK_DELAYED: u32 = 1 << 14;
    /// Guest data the socket refused could not be held: when the socket drains, the
    /// window update comes with duplicate ACKs, so the guest resends at once.
    pub const REFUSED_DROPPED: u32 = 1 << 15;
    /// The peer's FIN came before a migration rebuilt the socket, which will never
    /// report it: once the socket's queue is read, that is its end.
    pub const PEER_CLOSED: u32 = 1 << 16;
}

/// The largest segment whose ACK may be delayed (a request, not part of a stream).
pub const DELACK_MAX: usize = 1024;
use flags::*;

/// What the engine must do with the connection after an event.
#[derive(Debug)]
pub enum Action {
    Keep,
    /// Both sides closed: remove quietly.
    Close,
    /// Send RST to the guest and abort the socket.
    Reset,
    /// The guest reset: abort the socket (RST to the peer), nothing to the guest.
    Abort,
    /// `connect()` failed with this error.
    Refused(std::io::Error),
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub from_guest: u64,
    pub to_guest: u64,
    pub retransmits: u64,
    /// Guest segments `send()` took only part of, or none.
    pub refused: u64,
    /// Guest segments held for later (after a hole, or refused in part).
    pub held: u64,
    /// Guest segments whose data went to the socket in a run (`gather.rs`).
    pub gathered: u64,
}

pub struct TcpConn {
    pub sock: Socket,
    pub guest: SocketAddr,
    pub remote: SocketAddr,
    pub state: State,
    pub rcv_nxt: u32,
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub snd_wnd: u32,
    pub guest_ws: u8,
    pub our_ws: u8,
    /// Largest payload of a segment to the guest.
    pub mss: u16,
    /// MSS we announce to the guest.
    pub our_mss: u16,
    /// Loss recovery: duplicate ACKs, holes resent, a resend held up.
    pub rec: Recovery,
    /// Smoothed round trip to the guest and back (RFC 6298's SRTT), once measured.
    pub srtt: Option<Duration>,
    /// The byte whose acknowledgement ends the round trip being timed, and when it left
    /// (forgotten when anything is resent: Karn's rule).
    pub rtt_probe: Option<(u32, Instant)>,
    /// Probes sent since the guest last acknowledged data.
    pub probes: u8,
    pub retries: u8,
    pub rto: Duration,
    pub deadline: Option<Instant>,
    pub flags: u32,
    /// The window last computed for the guest (bytes, before scaling).
    pub adv_wnd: u32,
    /// The send memory the last `SO_MEMINFO` found: the buffer and what was free.
    pub mem: SendMemory,
    /// The guest permits SACK blocks in our ACKs.
    pub sack: bool,
    /// Guest data waiting for the socket (allocated while there is some).
    pub held: Option<Held>,
    /// Both sides use the timestamps option (RFC 7323): then the guest can time every
    /// round trip, its retransmissions' too, and its RTO stays true through a long
    /// recovery (without them, Karn's rule leaves it backing off).
    pub ts: Option<Timestamps>,
    pub stats: Stats,
}

/// The timestamps of a connection that uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamps {
    /// The guest's TSval to echo: that of the last segment at or below the next byte
    /// expected (RFC 7323 §4.3), so duplicate ACKs for a hole echo the time before it.
    pub recent: u32,
    /// Added to the engine's clock for our TSval (a migrated connection keeps the
    /// source's clock: the guest discards segments whose TSval goes back).
    pub offset: u32,
}

impl Timestamps {
    pub fn new(recent: u32) -> Timestamps {
        Timestamps { recent, offset: 0 }
    }

    /// Our TSval now.
    pub fn tsval(&self) -> u32 {
        ts_clock().wrapping_add(self.offset)
    }

    /// The option for a segment to the guest.
    pub fn option(&self) -> [u8; TS_LEN] {
        ts_option(self.tsval(), self.recent)
    }
}

/// The engine's timestamp clock: milliseconds since the first use (RFC 7323 asks for a
/// clock between 1 ms and 1 s per tick).
pub fn ts_clock() -> u32 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u32
}

/// Where loss recovery stands (see `on_dup_ack`, `resend_holes`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovery {
    pub dup_acks: u8,
    /// In loss recovery until the guest acknowledges this (`snd_nxt` when it began):
    /// duplicate ACKs meanwhile answer our resends and start nothing.
    pub recover: Option<u32>,
    /// `snd_nxt` when holes were last resent: SACKed data beyond it was sent later.
    pub resent_edge: u32,
    /// How far this recovery resent the holes the guest's SACK blocks showed.
    pub resent_to: u32,
    /// A resend the full guest side held up: `(from, len)`, sent when it has room.
    pub pending_resend: Option<(u32, u32)>,
}

/// What the socket's send buffer could take at the last measure, less what was sent
/// since (see [`TcpConn::refresh_window`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct SendMemory {
    pub sndbuf: u32,
    pub free: u32,
    /// Memory the sends since the measure may have taken (payload plus [`SEND_COST`]).
    pub spent: u32,
}

/// What one `send()` may cost the send buffer beyond its payload (an skb's overhead, in
/// the kernel's accounting, is under this).
pub const SEND_COST: u32 = 2048;

impl TcpConn {
    /// A connection in `state` with initial sequence number `isn` toward the guest and
    /// our MSS `our_mss` (also the first bound of the guest's); the handshake fills in
    /// the rest.
    pub fn new(
        sock: Socket,
        guest: SocketAddr,
        remote: SocketAddr,
        state: State,
        isn: u32,
        our_mss: u16,
    ) -> TcpConn {
        TcpConn {
            sock,
            guest,
            remote,
            state,
            rcv_nxt: 0,
            snd_una: isn,
            snd_nxt: isn,
            snd_wnd: 0,
            guest_ws: 0,
            our_ws: OUR_WSCALE,
            mss: our_mss,
            our_mss,
            rec: Recovery::default(),
            srtt: None,
            rtt_probe: None,
            probes: 0,
            retries: 0,
            rto: RTO_INIT,
            deadline: None,
            flags: 0,
            adv_wnd: 0,
            mem: SendMemory::default(),
            sack: false,
            held: None,
            ts: None,
            stats: Stats::default(),
        }
    }

    /// Keeps the guest's TSval to echo: from a segment at or below the next byte
    /// expected, and not older than the one kept (RFC 7323 §4.3).
    fn take_timestamp(&mut self, s: &Segment<'_>) {
        if let (Some(t), Some((tsval, _))) = (self.ts.as_mut(), s.ts)
            && !before(self.rcv_nxt, s.seq)
            && !before(tsval, t.recent)
        {
            t.recent = tsval;
        }
    }

    /// The guest's SYN (or SYN-ACK) carried timestamps: use them; segments carry 12
    /// bytes of options more, so the payload of one is that much smaller.
    pub fn use_timestamps(&mut self, guest_ts: Option<(u32, u32)>) {
        self.ts = guest_ts.map(|(tsval, _)| Timestamps::new(tsval));
        if self.ts.is_some() {
            self.mss = self.mss.saturating_sub(TS_LEN as u16).max(64);
        }
    }

    pub fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    fn header(&self, seq: u32, flags: u8) -> Header {
        Header {
            from: self.remote,
            to: self.guest,
            seq,
            ack: self.rcv_nxt,
            flags,
            window: self.window_field(flags),
        }
    }

    /// Recomputes the window offered to the guest: what `send()` will certainly accept.
    ///
    /// The kernel accepts data while the memory queued on the socket is below its send
    /// buffer (`SO_MEMINFO`, which counts packet overhead too, and the last packet may
    /// overshoot). Seven eighths of the free memory leaves room for that overhead, so
    /// in-window data is accepted whole and seldom has to be held; the window is at most
    /// one held ring, so whatever the guest sends in it can be. When the socket is not
    /// writable by the kernel's measure (free < a third of the buffer), its write-space
    /// wakeup is armed and the wakeup sends the window update — the guest may be waiting
    /// for it.
    ///
    /// Free memory only grows between two measures, but for what this relay sends: so as
    /// long as the last measure less a bound on what was sent since is at least half
    /// the buffer, that lower bound is the window and no system call is made (a
    /// request/response exchange would otherwise pay one per segment). Should the
    /// kernel shrink the buffer meanwhile (memory pressure), `send()` takes less and the
    /// window update below repairs it.
    fn refresh_window(&mut self) {
        if self.has(WND_UPDATE) {
            self.adv_wnd = 0;
            return;
        }
        // While data waits beyond a hole the window stays as it was: an ACK whose window
        // moved is a window update to the guest, not a duplicate ACK, and a guest
        // without SACK would never count three of them and resend the hole.
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.after_hole(self.rcv_nxt))
            && self.adv_wnd > 0
        {
            return;
        }
        let m = self.mem;
        let bound = m.free.saturating_sub(m.spent);
        if bound >= m.sndbuf / 2 && m.sndbuf > 0 {
            self.adv_wnd = (bound - bound / 8).min(RING as u32);
            return;
        }
        let Ok((sndbuf, queued)) = sys::send_memory(self.sock.as_fd()) else {
            self.adv_wnd = 0;
            return;
        };
        let free = sndbuf.saturating_sub(queued);
        self.mem = SendMemory {
            sndbuf,
            free,
            spent: 0,
        };
        self.adv_wnd = (free - free / 8).min(RING as u32);
        if free < sndbuf / 2 && !self.has(WND_WAIT) && !sys::writable_or_arm(self.sock.as_fd()) {
            self.flags |= WND_WAIT;
        }
    }

    fn window_field(&self, flags: u8) -> u16 {
        if flags & SYN != 0 {
            self.adv_wnd.min(65535) as u16
        } else {
            (self.adv_wnd >> self.our_ws).min(65535) as u16
        }
    }

    /// Sends a segment without payload.
    pub fn send_flags<G: GuestTx>(
        &mut self,
        out: &mut Out<G>,
        seq: u32,
        flags: u8,
        opts: &[u8],
    ) -> bool {
        self.refresh_window();
        let h = self.header(seq, flags);
        let v6 = self.guest.is_ipv6();
        let mut all = [0u8; 40];
        let mut n = opts.len().min(40);
        all[..n].copy_from_slice(&opts[..n]);
        if let Some(t) = self
            .ts
            .filter(|_| flags & (SYN | RST) == 0 && n + TS_LEN <= 40)
        {
            all[n..n + TS_LEN].copy_from_slice(&t.option());
            n += TS_LEN;
        }
        let opts = &all[..n];
        let sent = out.emit(segment::payload_offset(v6, opts.len()), |buf, mac| {
            segment::write(buf, mac, &h, opts, 0)
        });
        if sent && flags & ACK != 0 {
            self.flags &= !ACK_PENDING;
        }
        sent
    }

    /// An ACK, with SACK blocks for the data held beyond the next expected byte.
    pub fn send_ack<G: GuestTx>(&mut self, out: &mut Out<G>) -> bool {
        let rcv_nxt = self.rcv_nxt;
        let blocks = self
            .held
            .as_ref()
            .filter(|_| self.sack)
            .into_iter()
            .flat_map(|h| h.sack_blocks())
            .filter(|&(start, _)| start != rcv_nxt);
        let (opts, n) = segment::sack_option(blocks);
        self.send_flags(out, self.snd_nxt, ACK, &opts[..n])
    }

    pub fn send_syn<G: GuestTx>(&mut self, out: &mut Out<G>, now: Instant) {
        let (opts, n) =
            segment::syn_options(self.our_mss, Some(OUR_WSCALE), true, Some((ts_clock(), 0)));
        self.send_flags(out, self.snd_una, SYN, &opts[..n]);
        self.snd_nxt = self.snd_una.wrapping_add(1);
        self.deadline = Some(now + self.rto);
    }

    pub fn send_synack<G: GuestTx>(&mut self, out: &mut Out<G>, now: Instant) {
        let ws = (self.our_ws > 0).then_some(self.our_ws);
        let ts = self.ts.map(|t| (t.tsval(), t.recent));
        let (opts, n) = segment::syn_options(self.our_mss, ws, self.sack, ts);
        self.send_flags(out, self.snd_una, SYN | ACK, &opts[..n]);
        self.snd_nxt = self.snd_una.wrapping_add(1);
        self.deadline = Some(now + self.rto);
    }

    /// Sends RST (the engine removes the flow after).
    pub fn send_rst<G: GuestTx>(&mut self, out: &mut Out<G>) {
        self.send_flags(out, self.snd_nxt, RST | ACK, &[]);
    }

    /// The socket connected (or failed to). A connecting TCP socket reports writable
    /// only once connected; an error wakeup without a pending error is checked with
    /// `getpeername` (a spurious wakeup: not connected yet).
    pub fn on_connected<G: GuestTx>(
        &mut self,
        writable: bool,
        out: &mut Out<G>,
        now: Instant,
    ) -> Action {
        match self.sock.take_error() {
            Ok(Some(e)) | Err(e) => return Action::Refused(e),
            Ok(None) => {}
        }
        if !writable && self.sock.peer_addr().is_err() {
            return Action::Keep;
        }
        if sys::set_peek_off(self.sock.as_fd(), 0).is_err() {
            self.flags |= PEEK_FALLBACK;
        }
        self.state = State::SynAckSent;
        self.send_synack(out, now);
        Action::Keep
    }

    /// A segment from the guest for this connection; `budget` provides the ring for
    /// data that must be held. The steps follow the table in the module's theory of
    /// operation, in its order: RST, handshake, SYN, ACK, data, FIN, close, resume.
    pub fn on_segment<G: GuestTx>(
        &mut self,
        s: &Segment<'_>,
        out: &mut Out<G>,
        now: Instant,
        scratch: &mut [u8],
        budget: &HeldBudget,
        gather: &mut Gather,
    ) -> Action {
        if !gather.is_empty()
            && !self.continues(s, gather)
            && let Err(action) = self.send_gathered(gather, budget)
        {
            return action;
        }
        if s.flags & RST != 0 {
            return self.on_rst(s, out);
        }
        self.take_timestamp(s);
        if let Some(action) = self.on_handshake(s, out, now, scratch) {
            return action;
        }
        if s.flags & SYN != 0 {
            return Action::Keep;
        }
        if s.flags & ACK != 0
            && let Err(action) = self.on_ack(s, out, now, scratch)
        {
            return action;
        }
        if !s.payload.is_empty()
            && let Err(action) = self.on_data(s, out, budget, gather)
        {
            return action;
        }
        if s.flags & FIN != 0 {
            self.on_fin(s, out);
        }
        if self.has(GUEST_FIN) && self.has(FIN_ACKED) {
            if self.has(ACK_PENDING) {
                self.send_ack(out);
            }
            return Action::Close;
        }
        // Only when this segment may have let more data go: peeking a socket that has
        // nothing costs a system call per guest segment.
        if self.has(TX_KICK) {
            self.data_from_sock(out, now, scratch)
        } else {
            Action::Keep
        }
    }

    /// The handshake rows of the table: `Some` ends the segment's handling there;
    /// `None` goes on as in `Established` (which the ACK of our SYN-ACK makes it).
    fn on_handshake<G: GuestTx>(
        &mut self,
        s: &Segment<'_>,
        out: &mut Out<G>,
        now: Instant,
        scratch: &mut [u8],
    ) -> Option<Action> {
        match self.state {
            State::Connecting => Some(Action::Keep),
            State::SynSent => {
                if s.flags & (SYN | ACK) != SYN | ACK || s.ack != self.snd_nxt {
                    return Some(Action::Keep);
                }
                self.rcv_nxt = s.seq.wrapping_add(1);
                self.snd_una = s.ack;
                match s.wscale {
                    Some(ws) => self.guest_ws = ws.min(14),
                    None => {
                        self.guest_ws = 0;
                        self.our_ws = 0;
                    }
                }
                self.mss = self.mss.min(s.mss.unwrap_or(536).max(64));
                self.use_timestamps(s.ts);
                self.snd_wnd = u32::from(s.window);
                self.sack = s.sack_permitted;
                self.established();
                self.send_ack(out);
                Some(self.data_from_sock(out, now, scratch))
            }
            State::SynAckSent => {
                if s.flags & SYN != 0 && s.flags & ACK == 0 {
                    self.send_synack(out, now); // our SYN-ACK was lost
                    return Some(Action::Keep);
                }
                if s.flags & ACK == 0 || s.ack != self.snd_nxt {
                    return Some(Action::Keep);
                }
                self.snd_una = s.ack;
                self.established();
                self.flags |= TX_STALLED; // the socket may hold data already
                None
            }
            State::Established => None,
        }
    }

    /// The ACK rows: new data acknowledged, a zero-window probe answered, a duplicate,
    /// a window change. `Err` when the socket failed (reset).
    fn on_ack<G: GuestTx>(
        &mut self,
        s: &Segment<'_>,
        out: &mut Out<G>,
        now: Instant,
        scratch: &mut [u8],
    ) -> Result<(), Action> {
        let wnd = u32::from(s.window) << self.guest_ws;
        let acked = s.ack.wrapping_sub(self.snd_una);
        let inflight = self.snd_nxt.wrapping_sub(self.snd_una);
        if acked > 0 && acked <= inflight {
            self.on_new_ack(s, acked, out, now, scratch)?;
        } else if acked == 0 && inflight == 0 {
            // Nothing outstanding: an answer to a zero-window probe (or a window
            // update). The guest is alive; probing goes on as long as it answers.
            self.retries = 0;
        } else if acked == 0
            && s.payload.is_empty()
            && s.flags & FIN == 0
            && inflight > 0
            // A window update is no duplicate (RFC 5681), unless SACK blocks come
            // with it: the guest's window moves as its out-of-order queue fills.
            && (wnd == self.snd_wnd || (self.sack && s.sack[0].is_some()))
            && !s.dsack()
        {
            self.on_dup_ack(s, out, scratch);
        }
        if wnd != self.snd_wnd {
            self.flags |= (self.flags & TX_STALLED) << 1; // TX_STALLED → TX_KICK
        }
        self.snd_wnd = wnd;
        Ok(())
    }

    /// `acked` bytes of sequence space (data, and our FIN) newly acknowledged: they
    /// leave the socket's queue; timers and the round-trip sample follow; a partial ACK
    /// in a SACK recovery resends the next holes.
    fn on_new_ack<G: GuestTx>(
        &mut self,
        s: &Segment<'_>,
        acked: u32,
        out: &mut Out<G>,
        now: Instant,
        scratch: &mut [u8],
    ) -> Result<(), Action> {
        let mut data = acked;
        if self.has(FIN_SENT) && s.ack == self.snd_nxt {
            data -= 1;
            self.flags |= FIN_ACKED;
        }
        if data > 0 && !self.discard(data as usize) {
            return Err(Action::Reset);
        }
        self.snd_una = s.ack;
        self.flags |= (self.flags & TX_STALLED) << 1; // TX_STALLED → TX_KICK
        self.rec.dup_acks = 0;
        self.retries = 0;
        self.probes = 0;
        self.rto = RTO_INIT;
        if let Some((seq, sent)) = self.rtt_probe
            && !before(s.ack, seq)
        {
            let sample = now.saturating_duration_since(sent);
            self.srtt = Some(self.srtt.map_or(sample, |v| (v * 7 + sample) / 8));
            self.rtt_probe = None;
        }
        self.deadline = (self.snd_una != self.snd_nxt).then(|| now + self.data_timeout());
        match self.rec.recover {
            Some(r) if before(self.snd_una, r) && self.sack => {
                // A partial ACK in recovery: the next holes go at once.
                self.resend_holes(s, out, scratch);
            }
            Some(r) if before(self.snd_una, r) => {}
            _ => self.rec.recover = None,
        }
        Ok(())
    }

    /// The data rows: after a hole it is held (and a duplicate ACK says what we
    /// expect); already had, or after the guest's FIN, it is acknowledged again; in
    /// order it goes to the socket — gathered with the segments that follow it, when
    /// frames do (`gather.rs`). `Err` when the socket failed (reset).
    fn on_data<G: GuestTx>(
        &mut self,
        s: &Segment<'_>,
        out: &mut Out<G>,
        budget: &HeldBudget,
        gather: &mut Gather,
    ) -> Result<(), Action> {
        // A run in `gather` goes on exactly here (`on_segment` ended any other).
        let already = self
            .rcv_nxt
            .wrapping_add(gather.len() as u32)
            .wrapping_sub(s.seq);
        if (already as i32) < 0 {
            // A hole before this segment: hold it until the hole is filled, and say
            // what we expect (a duplicate ACK, with SACK blocks for what we hold).
            self.hold(s.seq, s.payload, budget);
            if s.flags & FIN != 0
                && let Some(h) = self.held.as_mut()
            {
                h.fin = Some(s.seq.wrapping_add(s.payload.len() as u32));
            }
            self.send_ack(out);
            return Ok(());
        }
        if already as usize >= s.payload.len() || self.has(GUEST_FIN) {
            self.flags = (self.flags | ACK_PENDING) & !ACK_DELAYABLE;
            return Ok(());
        }
        let data = s.payload.after(already as usize);
        let starts_run =
            s.more && s.flags & FIN == 0 && self.held.is_none() && data.len() <= gather.room();
        if !gather.is_empty() || starts_run {
            gather.push(data);
            self.stats.gathered += 1;
            return if s.more {
                Ok(())
            } else {
                self.send_gathered(gather, budget)
            };
        }
        // A lone small pushed segment, with nothing else owed: its ACK may wait for the
        // reply (one loop round). A second segment is acknowledged at once.
        let lone = !self.has(ACK_PENDING)
            && s.flags & PSH != 0
            && already == 0
            && data.len() <= DELACK_MAX
            && self.held.is_none();
        self.flags &= !ACK_DELAYABLE;
        let Ok(took) = data.send(&self.sock) else {
            return Err(Action::Reset);
        };
        self.took(took);
        if took < data.len() {
            self.refused(data.after(took), budget);
            return Ok(());
        }
        if lone {
            self.flags |= ACK_DELAYABLE;
        }
        // The segment may have filled a hole: what was held after it follows.
        if self.held.is_some() && self.flush_held(out).is_err() {
            return Err(Action::Reset);
        }
        Ok(())
    }

    /// The FIN rows: in order it shuts the socket down for writing; again, it is
    /// acknowledged again; after a hole, where it sits is remembered with the held data.
    fn on_fin<G: GuestTx>(&mut self, s: &Segment<'_>, out: &mut Out<G>) {
        let fin_seq = s.seq.wrapping_add(s.payload.len() as u32);
        if !self.has(GUEST_FIN) && fin_seq == self.rcv_nxt {
            self.guest_fin(out);
        } else if self.has(GUEST_FIN) {
            self.send_ack(out);
        } else if let Some(h) = self.held.as_mut() {
            h.fin = Some(fin_seq); // the data before it is held or yet to come
        }
    }

    /// A reset from the guest (RFC 5961 §3): it counts at exactly the next expected
    /// sequence number (in `SynSent`, with the ACK of our SYN); within the window it
    /// gets a challenge ACK, so that a guest that really reset answers with an exact
    /// RST; outside, nothing.
    fn on_rst<G: GuestTx>(&mut self, s: &Segment<'_>, out: &mut Out<G>) -> Action {
        if self.state == State::SynSent {
            return if s.flags & ACK != 0 && s.ack == self.snd_nxt {
                Action::Abort
            } else {
                Action::Keep
            };
        }
        if s.seq == self.rcv_nxt {
            return Action::Abort;
        }
        if s.seq.wrapping_sub(self.rcv_nxt) < self.adv_wnd {
            self.send_ack(out);
        }
        Action::Keep
    }

    /// Whether `s` continues the run in `gather`: the next bytes, room for them, and
    /// no SYN, FIN or RST (a pure ACK continues it too).
    fn continues(&self, s: &Segment<'_>, gather: &Gather) -> bool {
        s.flags & (SYN | FIN | RST) == 0
            && s.seq == self.rcv_nxt.wrapping_add(gather.len() as u32)
            && s.payload.len() <= gather.room()
    }

    /// Ends the run in `gather`: one `send()` of it; what the socket refuses is held
    /// (or left for the guest to resend), as for one segment. `Err` when the socket
    /// failed (reset).
    pub fn send_gathered(
        &mut self,
        gather: &mut Gather,
        budget: &HeldBudget,
    ) -> Result<(), Action> {
        let run = gather.bytes();
        let sent = segment::send(&self.sock, run, &[]);
        if let Ok(took) = sent {
            self.flags &= !ACK_DELAYABLE;
            self.took(took);
            if took < run.len() {
                self.refused(Payload::bytes(&run[took..]), budget);
            }
        }
        gather.clear();
        sent.map(|_| ()).map_err(|_| Action::Reset)
    }

    /// Counts `took` bytes the socket accepted from the guest; they are owed an ACK.
    fn took(&mut self, took: usize) {
        self.rcv_nxt = self.rcv_nxt.wrapping_add(took as u32);
        self.stats.from_guest += took as u64;
        self.mem.spent = self
            .mem
            .spent
            .saturating_add(took as u32)
            .saturating_add(SEND_COST);
        self.flags |= ACK_PENDING;
    }

    /// `send()` took only part of a segment: the window promised more than the socket
    /// takes, so it is measured anew and closed until the socket drains (`on_ready`);
    /// the `rest` is held, or, without a ring, left for the guest to resend.
    fn refused(&mut self, rest: Payload<'_>, budget: &HeldBudget) {
        self.flags |= WND_UPDATE;
        self.mem = SendMemory::default();
        self.stats.refused += 1;
        if !self.hold(self.rcv_nxt, rest, budget) {
            self.flags |= REFUSED_DROPPED;
        }
    }

    /// Guest data already acknowledged to the guest that the socket has not taken (a
    /// migrated send queue larger than the rebuilt socket's buffer): it goes to the
    /// socket before anything the guest sends next, `rcv_nxt` standing at its start
    /// until then (the guest sees old acknowledgments, which it ignores) — and with
    /// `fin`, the guest's FIN after it. False when no ring is left for it.
    pub fn owe(&mut self, data: &[u8], fin: bool, budget: &HeldBudget) -> bool {
        if data.len() > RING {
            return false;
        }
        if fin {
            self.flags &= !GUEST_FIN;
            self.rcv_nxt = self.rcv_nxt.wrapping_sub(1);
        }
        let end = self.rcv_nxt;
        self.rcv_nxt = self.rcv_nxt.wrapping_sub(data.len() as u32);
        self.flags |= WND_UPDATE; // flushed once the socket is writable
        if !self.hold(self.rcv_nxt, Payload::bytes(data), budget) {
            return false;
        }
        if let Some(h) = self.held.as_mut().filter(|_| fin) {
            h.fin = Some(end);
        }
        true
    }

    /// Holds guest data the socket cannot take yet; false when there is no room.
    fn hold(&mut self, seq: u32, data: Payload<'_>, budget: &HeldBudget) -> bool {
        if self.held.is_none() {
            self.held = Held::new(budget);
        }
        let Some(h) = self.held.as_mut() else {
            return false;
        };
        let held = h.insert_payload(self.rcv_nxt, seq, data);
        self.stats.held += u64::from(held);
        if h.is_empty() {
            self.held = None;
        }
        held
    }

    /// Gives the socket the held data that now follows in order (an Err: the socket
    /// failed); a FIN held behind it follows too. The ring is freed once empty.
    fn flush_held<G: GuestTx>(&mut self, out: &mut Out<G>) -> Result<(), ()> {
        let Some(h) = self.held.as_mut() else {
            return Ok(());
        };
        loop {
            let (a, b) = h.ready(self.rcv_nxt);
            let want = a.len() + b.len();
            if want == 0 {
                break;
            }
            let took = segment::send(&self.sock, a, b).map_err(|_| ())?;
            self.rcv_nxt = self.rcv_nxt.wrapping_add(took as u32);
            self.stats.from_guest += took as u64;
            self.flags = (self.flags | ACK_PENDING) & !ACK_DELAYABLE;
            if took < want {
                self.flags |= WND_UPDATE;
                self.mem = SendMemory::default();
                break;
            }
        }
        h.forget_before(self.rcv_nxt);
        let fin = h.fin == Some(self.rcv_nxt);
        if fin {
            h.fin = None;
        }
        if h.is_empty() {
            self.held = None;
        }
        if fin {
            self.guest_fin(out);
        }
        Ok(())
    }

    /// The guest's FIN, in order: the socket is shut down for writing.
    fn guest_fin<G: GuestTx>(&mut self, out: &mut Out<G>) {
        self.flags |= GUEST_FIN;
        self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        self.send_ack(out);
    }

    /// A duplicate ACK (one that reports a duplicate we sent is not). With SACK, the
    /// guest's blocks say what it holds beyond the hole: the first such ACK resends the
    /// hole (the guest is one hop away, so data after a hole means a loss, not a late
    /// packet; a rare mistake costs one segment the guest reports as a duplicate); in
    /// the recovery, a block that covers data sent after our last resend while the hole
    /// is still there means that resend was lost too, and it goes again. Without SACK,
    /// three duplicates go back to the first unacknowledged byte; in the recovery,
    /// duplicates answer our resends and start nothing.
    fn on_dup_ack<G: GuestTx>(&mut self, s: &Segment<'_>, out: &mut Out<G>, scratch: &mut [u8]) {
        let sacked_to = s
            .sack
            .iter()
            .flatten()
            .map(|&(_, end)| end)
            .filter(|&end| {
                let d = end.wrapping_sub(self.snd_una);
                d > 0 && d <= self.snd_nxt.wrapping_sub(self.snd_una)
            })
            .max_by_key(|&end| end.wrapping_sub(self.snd_una));
        if self.sack
            && let Some(sacked_to) = sacked_to
        {
            let lost_again = self.rec.recover.is_some() && before(self.rec.resent_edge, sacked_to);
            if self.rec.recover.is_none() || lost_again {
                // A new recovery, or a resend that was lost: from the first hole again.
                self.rec.recover.get_or_insert(self.snd_nxt);
                self.rec.resent_to = self.snd_una;
            }
            self.resend_holes(s, out, scratch);
            return;
        }
        if self.rec.recover.is_some() {
            return;
        }
        self.rec.dup_acks = self.rec.dup_acks.saturating_add(1);
        if self.rec.dup_acks == 3 {
            self.rec.recover = Some(self.snd_nxt);
            self.rewind();
            self.stats.retransmits += 1;
            self.flags |= TX_KICK;
        }
    }

    fn established(&mut self) {
        self.state = State::Established;
        self.retries = 0;
        self.rto = RTO_INIT;
        self.deadline = None;
    }

    /// Drops `n` acknowledged bytes from the socket's receive queue.
    fn discard(&mut self, n: usize) -> bool {
        let mut left = n;
        while left > 0 {
            match sys::recv_discard(self.sock.as_fd(), left) {
                Ok(0) => return false,
                Ok(k) => left -= k.min(left),
                Err(_) => return false,
            }
        }
        true
    }

    /// How long outstanding data waits for an acknowledgement: two round trips while
    /// probes are left, then the retransmission timeout.
    fn data_timeout(&self) -> Duration {
        if self.probes >= PROBES {
            return self.rto;
        }
        self.srtt
            .map_or(PTO_INIT, |s| (s * 2).max(PTO_MIN))
            .min(self.rto)
    }

    /// Goes back to the first unacknowledged byte (retransmission after a timeout, or
    /// after duplicate ACKs from a guest without SACK).
    fn rewind(&mut self) {
        self.rtt_probe = None;
        self.snd_nxt = self.snd_una;
        self.flags &= !FIN_SENT;
        if !self.has(PEEK_FALLBACK) {
            let _ = sys::set_peek_off(self.sock.as_fd(), 0);
        }
    }

    /// The largest payload of one segment: with offloads the guest side takes segments of
    /// up to 64 KiB and cuts them to the guest's MSS itself (or, on a local stack, takes
    /// them whole).
    fn max_segment<G: GuestTx>(&self, out: &Out<G>) -> u32 {
        if out.guest.offloads() {
            MAX_SUPER_SEGMENT
        } else {
            u32::from(self.mss)
        }
    }

    /// Builds one data segment with sequence number `seq` from a peek at the socket of
    /// up to `want` bytes; `skipped` bytes precede it in the queue (passed over by the
    /// peek on kernels without `SO_PEEK_OFF`; elsewhere the peek offset is already
    /// there). Where the guest side has the guest's own buffers, the payload is peeked
    /// straight into them. `None`: the guest side had no room.
    fn emit_data<G: GuestTx>(
        &self,
        out: &mut Out<G>,
        seq: u32,
        want: usize,
        skipped: usize,
        scratch: &mut [u8],
    ) -> Option<std::io::Result<usize>> {
        let v6 = self.guest.is_ipv6();
        let ts = self.ts.map(|t| t.option());
        let opts: &[u8] = ts.as_ref().map_or(&[], |o| &o[..]);
        let off = segment::payload_offset(v6, opts.len());
        let offload = out.guest.offloads();
        let mss = self.mss;
        let mut h = self.header(seq, ACK);
        let fallback = self.has(PEEK_FALLBACK);
        let fd = self.sock.as_fd();
        let mut result: Option<std::io::Result<usize>> = None;
        if offload && !fallback {
            let mac = out.macs();
            let mut head = [0u8; segment::MAX_HEADERS];
            let head = &mut head[..off];
            // The headers as they stand say where the frame goes; the payload's length
            // comes with the peek.
            segment::write_partial(head, mac, &h, opts, want);
            let mut fill = |head: &mut [u8], room: &sys::GuestIov<'_>| {
                let r = sys::peek_into(fd, room);
                let n = match r {
                    Ok(n) if n > 0 => n.min(want),
                    r => {
                        result = Some(r);
                        return (0, TxMeta::default());
                    }
                };
                if n < want {
                    h.flags |= PSH;
                }
                segment::write_partial(head, mac, &h, opts, n);
                result = Some(Ok(n));
                (n, offload_meta(v6, off, mss, n))
            };
            match out.emit_in_place(head, want, &mut fill) {
                Placed::Elsewhere => {}
                Placed::Full => return None,
                Placed::Sent | Placed::Nothing => return result,
            }
        }
        out.emit_meta(off + want, |buf, mac| {
            let skip = fallback.then(|| &mut scratch[..skipped]);
            let r = peek(fd, &mut buf[off..off + want], skip);
            let mut meta = TxMeta::default();
            let len = match r {
                Ok(n) if n > 0 => {
                    if n < want {
                        h.flags |= PSH;
                    }
                    if offload {
                        meta = offload_meta(v6, off, mss, n);
                        segment::write_partial(buf, mac, &h, opts, n)
                    } else {
                        segment::write(buf, mac, &h, opts, n)
                    }
                }
                _ => 0,
            };
            result = Some(r);
            (len, meta)
        });
        result
    }

    /// Whether data goes to the guest in runs ([`TcpConn::emit_run`]): segments of at
    /// most the MSS (no offloads), written by the engine (not in place), peeked with
    /// `SO_PEEK_OFF`.
    fn runs<G: GuestTx>(&self, out: &mut Out<G>) -> bool {
        !out.guest.offloads() && !self.has(PEEK_FALLBACK) && out.guest.in_place().is_none()
    }

    /// Sends up to `len` bytes as segments of the MSS from one peek into `scratch` (a
    /// system call per run, not per segment, where the guest takes MTU-sized frames:
    /// the stream socket; the copy into the frames costs less). Where the guest side
    /// fills before the run is out, the peek offset goes back to what was sent.
    /// `inflight` bytes are sent already. `None` when the guest side had no room, else
    /// how many bytes went and how many the peek got.
    fn emit_run<G: GuestTx>(
        &self,
        out: &mut Out<G>,
        len: usize,
        inflight: usize,
        scratch: &mut [u8],
    ) -> Option<std::io::Result<(usize, usize)>> {
        let fd = self.sock.as_fd();
        let got = match peek(fd, &mut scratch[..len], None) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let ts = self.ts.map(|t| t.option());
        let opts: &[u8] = ts.as_ref().map_or(&[], |o| &o[..]);
        let off = segment::payload_offset(self.guest.is_ipv6(), opts.len());
        let mut sent = 0;
        for piece in scratch[..got].chunks(usize::from(self.mss.max(1))) {
            let mut h = self.header(self.snd_nxt.wrapping_add(sent as u32), ACK);
            if sent + piece.len() == got && got < len {
                h.flags |= PSH;
            }
            let went = out.emit_meta(off + piece.len(), |buf, mac| {
                buf[off..off + piece.len()].copy_from_slice(piece);
                (
                    segment::write(buf, mac, &h, opts, piece.len()),
                    TxMeta::default(),
                )
            });
            if !went {
                break;
            }
            sent += piece.len();
        }
        if sent < got {
            // Peeked but not sent: the next peek starts after what went.
            if sys::set_peek_off(fd, (inflight + sent) as i32).is_err() {
                return Some(Err(std::io::Error::other(
                    "cannot move the peek offset back",
                )));
            }
        }
        if got > 0 && sent == 0 {
            return None;
        }
        Some(Ok((sent, got)))
    }

    /// Sends the bytes `[from, from + len)` again (a hole the guest reported), without
    /// moving `snd_nxt`; the peek offset is put back where new data continues.
    fn resend<G: GuestTx>(&mut self, out: &mut Out<G>, from: u32, len: u32, scratch: &mut [u8]) {
        let fin = u32::from(self.has(FIN_SENT));
        let data_end = self.snd_nxt.wrapping_sub(fin);
        let len = len.min(data_end.wrapping_sub(from));
        let head = from.wrapping_sub(self.snd_una);
        if len == 0 {
            if fin == 1 && from == data_end {
                self.send_flags(out, data_end, FIN | ACK, &[]);
            }
            return;
        }
        self.rtt_probe = None;
        let fallback = self.has(PEEK_FALLBACK);
        if !fallback && sys::set_peek_off(self.sock.as_fd(), head as i32).is_err() {
            return;
        }
        let max_seg = self.max_segment(out);
        let mut at = 0;
        while at < len {
            let want = (len - at).min(max_seg) as usize;
            match self.emit_data(
                out,
                from.wrapping_add(at),
                want,
                (head + at) as usize,
                scratch,
            ) {
                Some(Ok(n)) if n > 0 => at += n as u32,
                None => {
                    // The guest side is full: the rest goes when it has room again
                    // (a resend lost here would cost a probe timeout).
                    self.rec.pending_resend = Some((from.wrapping_add(at), len - at));
                    self.flags |= WANT_TX;
                    break;
                }
                _ => break,
            }
        }
        self.stats.retransmits += 1;
        if !fallback {
            let sent = data_end.wrapping_sub(self.snd_una);
            let _ = sys::set_peek_off(self.sock.as_fd(), sent as i32);
        }
    }

    /// With SACK, resends the holes this ACK's blocks reveal above what this recovery
    /// already resent (`resent_to`): every gap below the highest block the guest holds,
    /// at most [`RESEND_BURST`] bytes per ACK (the blocks name only the latest ranges
    /// the guest holds, so a gap may hold data it has; it reports that as a duplicate).
    /// Without blocks, the first MSS after `snd_una`.
    fn resend_holes<G: GuestTx>(&mut self, s: &Segment<'_>, out: &mut Out<G>, scratch: &mut [u8]) {
        let una = self.snd_una;
        let flight = self.snd_nxt.wrapping_sub(una);
        let mut blocks = [(0u32, 0u32); 3];
        let mut n = 0;
        for &(a, b) in s.sack.iter().flatten() {
            let (a, b) = (a.wrapping_sub(una), b.wrapping_sub(una));
            if a < b && b <= flight {
                blocks[n] = (a, b);
                n += 1;
            }
        }
        let blocks = &mut blocks[..n];
        blocks.sort_unstable();
        let mut cursor = self.rec.resent_to.wrapping_sub(una);
        if cursor > flight {
            cursor = 0; // `resent_to` is behind `snd_una`: nothing of this flight resent
        }
        if blocks.is_empty() {
            if cursor == 0 {
                self.resend(out, una, u32::from(self.mss), scratch);
                self.rec.resent_to = una.wrapping_add(u32::from(self.mss));
            }
            return;
        }
        let mut budget = RESEND_BURST;
        for &(a, b) in blocks.iter() {
            if a > cursor && budget > 0 {
                let len = (a - cursor).min(budget);
                self.resend(out, una.wrapping_add(cursor), len, scratch);
                budget -= len;
                if len < a - cursor {
                    cursor += len;
                    break;
                }
            }
            cursor = cursor.max(b);
        }
        self.rec.resent_to = una.wrapping_add(cursor);
        self.rec.resent_edge = self.snd_nxt;
    }

    /// Sends what the socket has, as far as the guest's window and the guest side allow.
    pub fn data_from_sock<G: GuestTx>(
        &mut self,
        out: &mut Out<G>,
        now: Instant,
        scratch: &mut [u8],
    ) -> Action {
        self.flags &= !(TX_STALLED | TX_KICK);
        if let Some((from, len)) = self.rec.pending_resend.take() {
            // What is still unacknowledged of a resend the full guest side held up.
            let acked = self.snd_una.wrapping_sub(from);
            if (acked as i32) <= 0 {
                self.resend(out, from, len, scratch);
            } else if acked < len {
                self.resend(out, self.snd_una, len - acked, scratch);
            }
            if self.rec.pending_resend.is_some() {
                return Action::Keep;
            }
        }
        if self.state != State::Established || self.has(FIN_SENT) {
            return Action::Keep;
        }
        let max_seg = self.max_segment(out);
        self.refresh_window();
        loop {
            let inflight = self.snd_nxt.wrapping_sub(self.snd_una);
            let mut room = self.snd_wnd.saturating_sub(inflight);
            if self.has(PEEK_FALLBACK) {
                room = room.min((scratch.len() as u32).saturating_sub(inflight));
            }
            let want = room.min(max_seg) as usize;
            if want == 0 {
                self.flags |= TX_STALLED;
                if inflight == 0 && self.deadline.is_none() {
                    self.deadline = Some(now + self.rto); // zero window: probe later
                }
                return Action::Keep;
            }
            // Without offloads, several segments' worth comes from one peek (`emit_run`).
            let run = (room as usize).min(scratch.len());
            let asked = if self.runs(out) && run >= 2 * want {
                run
            } else {
                want
            };
            // What went, and what the peek got (a run may send less than it peeked).
            let result = if asked > want {
                self.emit_run(out, asked, inflight as usize, scratch)
            } else {
                let r = self.emit_data(out, self.snd_nxt, want, inflight as usize, scratch);
                r.map(|r| r.map(|n| (n, n)))
            };
            // The end of the stream: the socket says so, or (migrated) it was known.
            let end = match &result {
                Some(Ok((0, 0))) => true,
                Some(Err(e)) => e.kind() == std::io::ErrorKind::WouldBlock && self.has(PEER_CLOSED),
                _ => false,
            };
            match result {
                None => {
                    self.flags |= WANT_TX;
                    return Action::Keep;
                }
                _ if end => {
                    if self.has(PEEK_FALLBACK) && inflight > 0 {
                        self.flags |= TX_STALLED;
                        return Action::Keep; // EOF is seen once everything is acknowledged
                    }
                    self.send_flags(out, self.snd_nxt, FIN | ACK, &[]);
                    self.snd_nxt = self.snd_nxt.wrapping_add(1);
                    self.flags |= FIN_SENT;
                    if self.deadline.is_none() {
                        self.deadline = Some(now + self.data_timeout());
                    }
                    return Action::Keep;
                }
                Some(Ok((n, peeked))) => {
                    self.snd_nxt = self.snd_nxt.wrapping_add(n as u32);
                    self.stats.to_guest += n as u64;
                    self.flags &= !ACK_PENDING;
                    if self.rtt_probe.is_none() {
                        self.rtt_probe = Some((self.snd_nxt, now));
                    }
                    if self.deadline.is_none() {
                        self.deadline = Some(now + self.data_timeout());
                    }
                    // A short read emptied the queue: data arriving later brings a new
                    // (edge-triggered) wakeup, so peeking again would only say EAGAIN —
                    // unless the socket already reported its end, which no later wakeup
                    // repeats: then peek on, to the 0 that becomes our FIN. (A run the
                    // full guest side cut short is no short read: the next round of the
                    // loop finds the guest side full.)
                    let short = peeked < asked && n == peeked;
                    if short && !self.has(RD_CLOSED) && !self.has(PEEK_FALLBACK) {
                        return Action::Keep;
                    }
                }
                Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => return Action::Keep,
                Some(Err(_)) => return Action::Reset,
            }
        }
    }

    /// Socket readiness.
    pub fn on_ready<G: GuestTx>(
        &mut self,
        readable: bool,
        writable: bool,
        error: bool,
        out: &mut Out<G>,
        now: Instant,
        scratch: &mut [u8],
    ) -> Action {
        if error {
            self.flags |= RD_CLOSED;
        }
        match self.state {
            State::Connecting => {
                if writable || error {
                    return self.on_connected(writable, out, now);
                }
                Action::Keep
            }
            State::SynAckSent | State::SynSent => {
                // The peer reset a connection the guest has not finished opening: reset
                // it toward the guest at once (waiting for the handshake timers would
                // hold the flow for a minute). A peer that merely closed (data and FIN
                // already queued) is no error: that reaches the guest after the handshake.
                if error && matches!(self.sock.take_error(), Ok(Some(_)) | Err(_)) {
                    return Action::Reset;
                }
                Action::Keep
            }
            State::Established => {
                if writable && self.has(WND_UPDATE) {
                    self.flags &= !(WND_UPDATE | WND_WAIT);
                    if self.flush_held(out).is_err() {
                        return Action::Reset;
                    }
                    if !self.has(WND_UPDATE) {
                        // The socket took what was held: a window update. When refused
                        // data was dropped instead, three duplicates follow, so the guest
                        // resends it at once instead of waiting for its timer.
                        let n = if self.has(REFUSED_DROPPED) { 4 } else { 1 };
                        self.flags &= !REFUSED_DROPPED;
                        for _ in 0..n {
                            self.send_ack(out);
                        }
                    }
                } else if writable && self.has(WND_WAIT) {
                    self.flags &= !WND_WAIT;
                    self.send_ack(out); // the window reopened
                }
                if readable || error {
                    return self.data_from_sock(out, now, scratch);
                }
                Action::Keep
            }
        }
    }

    /// Retransmission and probe timer.
    pub fn on_timer<G: GuestTx>(
        &mut self,
        out: &mut Out<G>,
        now: Instant,
        scratch: &mut [u8],
    ) -> Action {
        let Some(deadline) = self.deadline else {
            return Action::Keep;
        };
        if now < deadline {
            return Action::Keep;
        }
        let inflight = self.snd_nxt.wrapping_sub(self.snd_una);
        if self.state == State::Established && inflight > 0 && self.probes < PROBES {
            self.probes += 1;
            let una = self.snd_una;
            self.resend(out, una, u32::from(self.mss), scratch);
            self.deadline = Some(now + self.data_timeout());
            return Action::Keep;
        }
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            return Action::Reset;
        }
        self.rto = (self.rto * 2).min(RTO_MAX);
        match self.state {
            State::Connecting => {
                self.deadline = None;
                Action::Keep
            }
            State::SynSent => {
                self.send_syn(out, now);
                Action::Keep
            }
            State::SynAckSent => {
                self.send_synack(out, now);
                Action::Keep
            }
            State::Established => {
                self.deadline = None;
                if inflight == 0 {
                    if self.snd_wnd == 0 {
                        // Zero window: an old sequence number makes the guest answer with
                        // its current window.
                        self.send_flags(out, self.snd_una.wrapping_sub(1), ACK, &[]);
                        self.deadline = Some(now + self.rto);
                        return Action::Keep;
                    }
                    self.retries = 0;
                } else {
                    self.rec.recover = Some(self.snd_nxt);
                    self.rewind();
                    self.stats.retransmits += 1;
                }
                let action = self.data_from_sock(out, now, scratch);
                if self.deadline.is_none() && self.snd_nxt != self.snd_una {
                    self.deadline = Some(now + self.rto);
                }
                action
            }
        }
    }
}

/// How a guest side with offloads finishes a data segment of `n` payload bytes after
/// `off` bytes of headers: the checksum from the L4 header on, and cut at `mss` when
/// larger.
fn offload_meta(v6: bool, off: usize, mss: u16, n: usize) -> TxMeta {
    let mut meta = TxMeta {
        csum_start: (ETH_HLEN + ip_hlen(v6)) as u16,
        csum_offset: TCP_CHECKSUM as u16,
        ..TxMeta::default()
    };
    if n > usize::from(mss) {
        meta.gso_size = mss;
        meta.gso_v6 = v6;
        meta.hdr_len = off as u16;
    }
    meta
}

/// Peeks at the socket's receive queue: at `SO_PEEK_OFF`, or after `skip` bytes on
/// kernels without it (those bytes land in `skip` and are thrown away).
fn peek(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
    skip: Option<&mut [u8]>,
) -> std::io::Result<usize> {
    use nix::sys::socket::{MsgFlags, recv, recvmsg};
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    match skip {
        None => recv(fd.as_raw_fd(), buf, flags).map_err(std::io::Error::from),
        Some(skip) => {
            let skipped = skip.len();
            let mut iov = [
                std::io::IoSliceMut::new(skip),
                std::io::IoSliceMut::new(buf),
            ];
            let total = recvmsg::<()>(fd.as_raw_fd(), &mut iov, None, flags)
                .map_err(std::io::Error::from)?
                .bytes;
            if total == 0 {
                Ok(0)
            } else if total <= skipped {
                Err(std::io::ErrorKind::WouldBlock.into())
            } else {
                Ok(total - skipped)
            }
        }
    }
}
