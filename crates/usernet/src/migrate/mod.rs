//! Live migration: the engine's state handed to the engine on the target, through QEMU.
//!
//! How it works: QEMU asks the source's vhost-user back end for its state once the guest
//! is stopped, and hands it to the target's before the guest runs there
//! (`attach/vhost_user`: `SET_DEVICE_STATE_FD`, `CHECK_DEVICE_STATE`). The state is
//! [`format::State`]: the guest's MAC, every established TCP connection, half-closed
//! ones too — the relay's sequence numbers, windows and FINs toward the guest, and the
//! kernel socket's own state, read in repair mode (`sock.rs`) — and every UDP flow with the local address its peer
//! knows (the target binds the same one where its pod has the address, so the peer
//! sees the same source port). The repair helper (`repair.rs`, passt-repair's
//! protocol) switches sockets in and out of repair mode, as the engine has no privilege.
//!
//! Source ([`export`]): established connections into repair mode, each read, then closed
//! — in repair mode a close sends nothing, so the peer sees no FIN or RST. Target, once
//! QEMU has started the guest's queues (the guest may run; its frames wait until this
//! is done, and QEMU's requests do not wait for it): [`import`], for each connection a
//! fresh socket into repair mode, rebuilt ([`Rebuilt`]); then [`switch_out`], out of
//! repair mode with a window probe (the peer learns where the connection stands and
//! resends what it must) and a relay flow over each with the sequence numbers the guest
//! knows.
//! What the guest has not acknowledged is still in the receive queue, so the relay
//! resends it as after any loss; guest data not acknowledged is resent by the guest. A connection whose peer had closed knows it from the state (its rebuilt
//! socket never reports that end): the relay sends the guest its FIN where the queue
//! ends, once the guest runs. Connections that cannot move (still opening, or failing
//! to rebuild) are not carried: the guest's next segment for one draws an RST from the
//! target.
//!
//! The guest's view moves too (its addresses, gateways, DNS servers): the target serves
//! the same DHCP lease and RA prefix whatever its own pod's addresses, and a
//! connection whose address the target does not have is reset toward the guest as soon
//! as it runs there. Without a repair helper the view and the MAC move, and every
//! connection ends that way.
//!
//! No segment is lost or answered with a reset during the switch, though in repair mode
//! the kernel still takes and acknowledges what the peer sends: before each socket is
//! read it is made deaf — a socket filter drops the peer's segments unacknowledged (the
//! peer sends them again, to the target), attached by the repair helper (`netbind
//! passt-repair`) or the engine itself; where neither can (upstream passt-repair, and a
//! kernel that wants `CAP_NET_ADMIN` for socket filters), the receive queue is padded
//! past the offered window so that all the peer sends is a duplicate. After its close,
//! a hold — a listener on the connection's address with the same filter — keeps the
//! kernel from resetting the peer while no socket has the connection. The forwarded
//! ports' listeners are silenced the same way. The target's rebuilt socket takes
//! precedence over a hold, being established. Without socket filters the close leaves
//! that gap open (a reset if a segment comes before the target has the connection).

pub mod format;
pub mod repair;
pub mod sock;

use std::os::fd::AsFd;

use mio::Interest;

use crate::ctx::Ctx;
use crate::flow::{Flow, FlowKey};
use crate::forward::Listener;
use crate::frame::GuestTx;
use crate::tcp::TcpConn;
use crate::tcp::conn::{State as ConnState, flags};
use crate::tcp::held::HeldBudget;
use crate::wire::PROTO_TCP;
use format::{GuestView, State, TcpState, UdpState};
use repair::{Mode, Repair};

pub use format::FormatError;
pub use repair::RepairError;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    pub tcp_restored: usize,
    pub tcp_failed: usize,
    /// Connections that could not be rebuilt: the guest gets an RST for each as soon
    /// as it runs (`from, to, seq, ack`).
    pub resets: Vec<(std::net::SocketAddr, std::net::SocketAddr, u32, u32)>,
}

/// Reads the engine's movable state out (the source, its guest stopped); the TCP
/// connections carried are closed silently, each leaving a hold in `holds` (kept until
/// the engine ends).
pub fn export<G: GuestTx>(
    cx: &mut Ctx<G>,
    listeners: &[Listener],
    repair: Option<&mut Repair>,
    holds: &mut Vec<socket2::Socket>,
) -> State {
    silence_listeners(listeners);
    let udp = export_udp(cx, listeners, holds);
    let cfg = &cx.cfg;
    let mut state = State {
        guest_mac: cx.out.guest_mac,
        view: GuestView {
            guest4: cfg.guest4,
            guest6: cfg.guest6,
            gateway4: cfg.gateway4,
            gateway6: cfg.gateway6,
            dns: cfg.dns.clone(),
        },
        tcp: Vec::new(),
        udp,
    };
    let movable: Vec<usize> = cx
        .flows
        .slots()
        .filter(|&slot| match cx.flows.get(slot) {
            // Half-closed ones too; one acknowledged both ways is being removed.
            Some(Flow::Tcp(c)) => {
                c.state == ConnState::Established
                    && !(c.has(flags::FIN_ACKED) && c.has(flags::GUEST_FIN))
            }
            _ => false,
        })
        .collect();
    let Some(repair) = repair else {
        if !movable.is_empty() {
            tracing::warn!(
                "migration: no repair helper; {} TCP connections cannot move",
                movable.len()
            );
        }
        return state;
    };
    let fds: Vec<_> = movable
        .iter()
        .filter_map(|&slot| match cx.flows.get(slot) {
            Some(Flow::Tcp(c)) => Some(c.sock.as_fd()),
            _ => None,
        })
        .collect();
    let began = std::time::Instant::now();
    if let Err(e) = repair.set(&fds, Mode::On) {
        tracing::warn!("migration: {e}; the TCP connections cannot move");
        return state;
    }
    let helper_took = began.elapsed();
    let mut deafness = Deafness::default();
    for slot in movable {
        if let Some(Flow::Tcp(c)) = cx.flows.get(slot) {
            match hand_over(&c.sock, holds, &mut deafness) {
                Ok(mut s) => {
                    // Rebuilt by an earlier migration: the socket never had the FIN
                    // (its receive end is past it all the same), the relay knows it.
                    s.peer_fin |= c.has(flags::PEER_CLOSED);
                    let t = TcpState {
                        guest: c.guest,
                        remote: c.remote,
                        rcv_nxt: c.rcv_nxt,
                        snd_una: c.snd_una,
                        snd_nxt: c.snd_nxt,
                        snd_wnd: c.snd_wnd,
                        guest_ws: c.guest_ws,
                        our_ws: c.our_ws,
                        mss: c.mss,
                        our_mss: c.our_mss,
                        sack: c.sack,
                        ts: c.ts.map(|t| (t.recent, t.tsval())),
                        fin_sent: c.has(flags::FIN_SENT),
                        fin_acked: c.has(flags::FIN_ACKED),
                        guest_fin: c.has(flags::GUEST_FIN),
                        sock: s,
                    };
                    if t.ends_add_up() {
                        state.tcp.push(t);
                    } else {
                        tracing::warn!(
                            "migration: {} ↔ {}: the relay's FINs and the socket's disagree; not carried",
                            c.guest,
                            c.remote
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!("migration: cannot read {} ↔ {}: {e}", c.guest, c.remote)
                }
            }
        }
        cx.remove_flow(slot);
    }
    cx.counters.tcp_migrated_out += state.tcp.len() as u64;
    cx.counters.tcp_migrated_queue_out += state
        .tcp
        .iter()
        .map(|t| (t.sock.send_queue.len() + t.sock.recv_queue.len()) as u64)
        .sum::<u64>();
    tracing::info!(
        "migration: {} TCP connections read out in {:.3} ms, {:.3} of them waiting for the repair helper ({} deaf by a socket filter, {} by a padded receive queue, {} not; {} bytes of padding)",
        state.tcp.len(),
        began.elapsed().as_secs_f64() * 1e3,
        helper_took.as_secs_f64() * 1e3,
        deafness.filter,
        deafness.padded,
        deafness.not,
        deafness.padding
    );
    state
}

/// How the connections read out were made deaf (for the log), and whether this
/// engine may attach socket filters (once refused, not tried again).
struct Deafness {
    filter: usize,
    padded: usize,
    not: usize,
    /// Bytes of padding written.
    padding: usize,
    may_filter: bool,
    /// Holds are made until one is refused (they need a filter of the engine's own).
    may_hold: bool,
}

impl Default for Deafness {
    fn default() -> Self {
        Deafness {
            filter: 0,
            padded: 0,
            not: 0,
            padding: 0,
            may_filter: true,
            may_hold: true,
        }
    }
}

/// One connection's kernel state, read out so that no segment of the peer's is lost or
/// answered (`sock` in repair mode): made deaf first ([`sock::read_out`]), so what the
/// state holds is all the peer was told arrived (`deafness` counts how). After the
/// close a hold — a listener on the connection's address that drops everything — keeps
/// the kernel from answering the peer with a reset until the target has rebuilt the
/// connection. A hold that cannot be made (no socket filter allowed; the address is a
/// forwarded port's, whose listener is silenced instead, [`silence_listeners`]) is left
/// out.
fn hand_over(
    sock: &socket2::Socket,
    holds: &mut Vec<socket2::Socket>,
    deafness: &mut Deafness,
) -> std::io::Result<format::SockState> {
    let (s, deaf, pad) = sock::read_out(sock, deafness.may_filter)?;
    match deaf {
        sock::Deaf::Filter => deafness.filter += 1,
        // The helper attached none, and the kernel refused the engine's own.
        sock::Deaf::Padded => deafness.padded += 1,
        sock::Deaf::Not => deafness.not += 1,
    }
    deafness.may_filter &= deaf == sock::Deaf::Filter;
    deafness.may_hold &= deafness.may_filter;
    deafness.padding += pad;
    if deafness.may_hold {
        sock.set_reuse_address(true)?;
        match sock::hold(s.local, true) {
            Ok(h) => holds.push(h),
            Err(e) => {
                tracing::debug!("migration: no hold on {}: {e}", s.local);
                deafness.may_hold = e.raw_os_error() != Some(nix::libc::EPERM);
            }
        }
    }
    Ok(s)
}

/// The forwarded ports' listeners take nothing more (the source, its guest stopped): a
/// connection attempt during the switch is dropped and tried again by the peer,
/// reaching the target; a segment for a carried inbound connection meets silence, not
/// a reset; a datagram is dropped, as the stopped guest could not take it.
fn silence_listeners(listeners: &[Listener]) {
    for l in listeners {
        if let Err(e) = crate::sys::drop_all_input(l.sock.as_fd()) {
            tracing::debug!("migration: cannot silence forwarded port {}: {e}", l.port);
        }
    }
}

/// The UDP flows, each with the local address its peer knows (an outbound flow's
/// socket's, an inbound flow's forwarded port's); an outbound flow's address keeps a
/// hold ([`sock::hold`]) until the engine ends. The flows are closed.
fn export_udp<G: GuestTx>(
    cx: &mut Ctx<G>,
    listeners: &[Listener],
    holds: &mut Vec<socket2::Socket>,
) -> Vec<UdpState> {
    let slots: Vec<usize> = cx
        .flows
        .slots()
        .filter(|&slot| matches!(cx.flows.get(slot), Some(Flow::Udp(_))))
        .collect();
    let mut out = Vec::with_capacity(slots.len());
    let local_of = |s: &socket2::Socket| s.local_addr().ok().and_then(|a| a.as_socket());
    for slot in slots {
        if let Some(Flow::Udp(f)) = cx.flows.get(slot) {
            let local = match (&f.sock, f.via_listener) {
                (Some(sock), _) => local_of(sock),
                (None, Some((index, _))) => listeners.get(index).and_then(|l| local_of(&l.sock)),
                (None, None) => None,
            };
            if let Some(local) = local {
                if let Some(sock) = &f.sock {
                    let hold = sock
                        .set_reuse_address(true)
                        .and_then(|()| sock::hold(local, false));
                    match hold {
                        Ok(h) => holds.push(h),
                        Err(e) => tracing::debug!("migration: no hold on UDP {local}: {e}"),
                    }
                }
                out.push(UdpState {
                    guest: f.guest,
                    remote: f.remote,
                    local,
                    inbound_peer: f.via_listener.map(|(_, peer)| peer),
                });
            }
        }
        cx.remove_flow(slot);
    }
    cx.counters.udp_migrated_out += out.len() as u64;
    out
}

/// Connections rebuilt in repair mode by [`import`], for [`switch_out`].
#[derive(Debug, Default)]
pub struct Rebuilt(Vec<(TcpState, socket2::Socket, usize)>);

impl Rebuilt {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Takes over `state` (the target, before its guest's first frame): the guest's view and MAC,
/// the UDP flows, and the TCP connections rebuilt in repair mode, returned for
/// [`switch_out`] (their count in `tcp_restored`; those that could not be rebuilt are
/// `tcp_failed`, with their resets).
pub fn import<G: GuestTx>(
    cx: &mut Ctx<G>,
    listeners: &[Listener],
    state: State,
    repair: Option<&mut Repair>,
) -> (Imported, Rebuilt) {
    let mut done = Imported::default();
    cx.out.guest_mac = state.guest_mac;
    adopt(&mut cx.cfg, state.view);
    for u in &state.udp {
        if crate::udp::adopt(cx, listeners, u) {
            cx.counters.udp_migrated_in += 1;
        } else {
            tracing::debug!("migration: UDP {} ↔ {} not rebuilt", u.guest, u.remote);
        }
    }
    let fail = |done: &mut Imported, t: &TcpState, why: &dyn std::fmt::Display| {
        tracing::warn!("migration: {} ↔ {} not rebuilt: {why}", t.guest, t.remote);
        done.tcp_failed += 1;
        done.resets.push((t.remote, t.guest, t.snd_nxt, t.rcv_nxt));
    };
    let began = std::time::Instant::now();
    let mut helper_took = std::time::Duration::ZERO;
    let mut fresh = Vec::with_capacity(state.tcp.len());
    for t in state.tcp {
        match sock::fresh(&t.sock) {
            Ok(s) => fresh.push((t, s)),
            Err(e) => fail(&mut done, &t, &e),
        }
    }
    let mut rebuilt = Vec::with_capacity(fresh.len());
    if !fresh.is_empty() {
        let fds: Vec<_> = fresh.iter().map(|(_, s)| s.as_fd()).collect();
        let asked = std::time::Instant::now();
        let on = match repair {
            Some(r) => r.set(&fds, Mode::On),
            None => Err(RepairError::NoHelper("(no repair socket)".into())),
        };
        helper_took = asked.elapsed();
        match on {
            Ok(()) => {
                for (t, s) in fresh {
                    match sock::restore(&s, &t.sock) {
                        Ok(taken) => rebuilt.push((t, s, taken)),
                        Err(e) => fail(&mut done, &t, &e),
                    }
                }
            }
            Err(e) => {
                for (t, _) in fresh {
                    fail(&mut done, &t, &e);
                }
            }
        }
    }
    done.tcp_restored = rebuilt.len();
    cx.counters.tcp_migrate_failed += done.tcp_failed as u64;
    tracing::info!(
        "migration: {} TCP connections rebuilt in {:.3} ms, {:.3} of them waiting for the repair helper; {} not",
        done.tcp_restored,
        began.elapsed().as_secs_f64() * 1e3,
        helper_took.as_secs_f64() * 1e3,
        done.tcp_failed
    );
    (done, Rebuilt(rebuilt))
}

/// The connections [`import`] rebuilt, out of repair mode (with a window probe each)
/// and relayed — or, where that fails, reset toward the guest: those are added to
/// `resets`. How many are relayed.
pub fn switch_out<G: GuestTx>(
    cx: &mut Ctx<G>,
    rebuilt: Rebuilt,
    repair: Option<&mut Repair>,
    budget: &HeldBudget,
    resets: &mut Vec<(std::net::SocketAddr, std::net::SocketAddr, u32, u32)>,
) -> usize {
    if rebuilt.is_empty() {
        return 0;
    }
    let began = std::time::Instant::now();
    let fds: Vec<_> = rebuilt.0.iter().map(|(_, s, _)| s.as_fd()).collect();
    let off = match repair {
        Some(r) => r.set(&fds, Mode::Off),
        None => Err(RepairError::NoHelper("(no repair socket)".into())),
    };
    let mut relayed = 0;
    for (t, s, taken) in rebuilt.0 {
        let (remote, guest, seq, ack) = (t.remote, t.guest, t.snd_nxt, t.rcv_nxt);
        if let Err(e) = &off {
            tracing::warn!("migration: {guest} ↔ {remote} not rebuilt: {e}");
        } else if relay(cx, t, s, taken, budget) {
            relayed += 1;
            continue;
        }
        cx.counters.tcp_migrate_failed += 1;
        resets.push((remote, guest, seq, ack));
    }
    cx.counters.tcp_migrated_in += relayed as u64;
    tracing::info!(
        "migration: {relayed} TCP connections out of repair mode and relayed in {:.3} ms",
        began.elapsed().as_secs_f64() * 1e3
    );
    relayed
}

/// The guest keeps what it was told: its addresses, gateways and DNS servers stay
/// those of the source, whatever the target pod's are (the engine's sockets use the
/// target's own addresses, as for any flow).
fn adopt(cfg: &mut crate::config::EngineConfig, view: GuestView) {
    if cfg.guest4 != view.guest4 || cfg.guest6 != view.guest6 {
        tracing::info!(
            "migration: the guest keeps {:?} {:?} (this pod has {:?} {:?})",
            view.guest4,
            view.guest6,
            cfg.guest4,
            cfg.guest6
        );
    }
    cfg.guest4 = view.guest4;
    cfg.guest6 = view.guest6;
    cfg.gateway4 = view.gateway4;
    cfg.gateway6 = view.gateway6;
    cfg.dns = view.dns;
}

/// A relay flow over a rebuilt socket, where the source's left off; the part of the
/// send queue past `taken` goes to the socket before the guest's next data.
fn relay<G: GuestTx>(
    cx: &mut Ctx<G>,
    t: TcpState,
    sock: socket2::Socket,
    taken: usize,
    budget: &HeldBudget,
) -> bool {
    let mut c = TcpConn::new(
        sock,
        t.guest,
        t.remote,
        ConnState::Established,
        t.snd_una,
        t.our_mss,
    );
    c.rcv_nxt = t.rcv_nxt;
    c.snd_nxt = t.snd_nxt;
    c.snd_wnd = t.snd_wnd;
    c.guest_ws = t.guest_ws;
    c.our_ws = t.our_ws;
    c.mss = t.mss;
    c.sack = t.sack;
    for (set, flag) in [
        (t.fin_sent, flags::FIN_SENT),
        (t.fin_acked, flags::FIN_ACKED),
        (t.guest_fin, flags::GUEST_FIN),
        // The rebuilt socket will not report the peer's FIN: the relay ends the stream
        // where its queue ends (and peeks on after a short read, to find that end).
        (t.sock.peer_fin, flags::PEER_CLOSED | flags::RD_CLOSED),
    ] {
        if set {
            c.flags |= flag;
        }
    }
    // Our clock goes on from the source's TSval: the guest drops segments whose TSval
    // goes back (PAWS).
    c.ts = t.ts.map(|(recent, tsval)| crate::tcp::conn::Timestamps {
        recent,
        offset: tsval.wrapping_sub(crate::tcp::conn::ts_clock()),
    });
    // What the guest has seen but not acknowledged stays at the head of the queue.
    let owed = &t.sock.send_queue[taken..];
    if !owed.is_empty() {
        // The guest's FIN, if taken, follows the rest (the socket has not queued it).
        if !c.owe(owed, t.sock.our_fin, budget) {
            tracing::warn!(
                "migration: {} ↔ {}: no room for {} bytes of its send queue",
                t.guest,
                t.remote,
                owed.len()
            );
            return false;
        }
        cx.counters.tcp_migrated_owed += owed.len() as u64;
        tracing::info!(
            "migration: {} ↔ {}: {} bytes of its send queue follow out of repair mode",
            t.guest,
            t.remote,
            owed.len()
        );
    }
    cx.counters.tcp_migrated_queue_in += (t.sock.send_queue.len() + t.sock.recv_queue.len()) as u64;
    let in_flight = t.snd_nxt.wrapping_sub(t.snd_una);
    if crate::sys::set_peek_off(c.sock.as_fd(), in_flight as i32).is_err() {
        c.flags |= flags::PEEK_FALLBACK;
    }
    let key = FlowKey {
        proto: PROTO_TCP,
        guest: t.guest,
        remote: t.remote,
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&c.sock);
    let Ok(slot) = cx.flows.insert(key, Flow::Tcp(Box::new(c))) else {
        return false;
    };
    cx.register_flow(slot, fd, Interest::READABLE | Interest::WRITABLE)
}
