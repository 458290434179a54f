//! A connected TCP socket's kernel state, read out and rebuilt in repair mode.
//!
//! Read ([`read_out`], the socket in repair mode, made deaf to the peer first — see
//! [`Deaf`] — then [`dump`]): both queues' ends (`TCP_QUEUE_SEQ` with the
//! queue selected), the send queue (what the peer has not acknowledged: with the send
//! queue selected, a peek reads it from its start) and the receive queue (what was not
//! read: the relay only peeks, so this is also what the guest has not acknowledged),
//! the MSS, the options and window scales the handshake agreed, the timestamp clock and
//! the window state — and whether either side's FIN is already in (a half-closed
//! connection: the kernel's state says; each FIN counts one in its queue's end but is
//! no byte of the queue).
//!
//! Rebuilt (a [`fresh`] socket, put in repair mode by the helper, then [`restore`]):
//! buffers large enough for the queues where a new socket's are not (as far as the
//! unprivileged limits allow: `net.core.wmem_max`/`rmem_max`; a size set is fixed, so
//! the queues of an idle connection leave the kernel's autotuning alone), the queues'
//! starting sequences, bind and connect (in repair mode, no handshake: the socket is established
//! at once), the options, the timestamp clock, the queues' bytes written back (in
//! repair mode a write to the send queue is taken as sent, one to the receive queue as
//! received), the window state. A send queue larger than the buffer the limits allow
//! is written as far as it goes; the relay sends the rest as ordinary data once the
//! socket is out of repair mode (the peer may have some of it already: TCP takes that
//! as a retransmission). Our FIN, if it was queued, is queued again behind the send
//! queue: a shutdown in repair mode, which takes it as sent — the kernel resends it on
//! its timers if the peer never had it (a send queue not taken whole leaves the FIN to
//! the relay, behind the rest). The peer's FIN is not rebuilt (a socket can only be
//! made established): the rebuilt socket's receive end is past it as the source's was
//! (so its acknowledgments are the source's; the queue's bytes sit one sequence number
//! early, which nothing sees), and the relay knows the end from the state. Leaving repair mode with a window probe then tells the peer where
//! the connection stands, and unacknowledged data goes again on the kernel's own
//! timers.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use socket2::{Domain, SockAddr, Socket, Type};

use super::format::SockState;
use crate::sys::{self, tcp_repair as r};

fn select(fd: BorrowedFd<'_>, queue: i32) -> io::Result<()> {
    sys::tcp_set(fd, r::TCP_REPAIR_QUEUE, &[queue as u32])
}

/// Peeks the first `len` bytes of the selected queue (a peek without an offset starts
/// at the head: one call reads them all or fewer).
fn peek(sock: &Socket, len: usize) -> io::Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; len];
    let n = nix::sys::socket::recv(
        std::os::fd::AsRawFd::as_raw_fd(sock),
        &mut buf,
        nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    )?;
    buf.truncate(n);
    Ok(buf)
}

/// Reads the state of `sock`, which is in repair mode.
pub fn dump(sock: &Socket) -> io::Result<SockState> {
    dump_unpadded(sock, 0)
}

/// [`dump`] of a socket whose receive queue ends in `pad` bytes of padding, left out.
fn dump_unpadded(sock: &Socket, pad: usize) -> io::Result<SockState> {
    let fd = sock.as_fd();
    let addr = |a: io::Result<SockAddr>| {
        a?.as_socket()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    };
    let local = addr(sock.local_addr())?;
    let peer = addr(sock.peer_addr())?;
    let info = sys::tcp_info_head(fd)?;
    let (peer_fin, our_fin, our_fin_unacked) = match info.state {
        r::ESTABLISHED => (false, false, false),
        r::CLOSE_WAIT => (true, false, false),
        r::FIN_WAIT1 => (false, true, true),
        r::FIN_WAIT2 => (false, true, false),
        r::CLOSING | r::LAST_ACK => (true, true, true),
        _ => return Err(io::Error::other("the connection is over (closed or reset)")),
    };
    // The receive queue from its head: the relay's peek offset would skip what the
    // guest has seen but not acknowledged.
    let _ = sys::set_peek_off(fd, 0);
    select(fd, r::SEND_QUEUE)?;
    let [send_seq] = sys::tcp_get::<1>(fd, r::TCP_QUEUE_SEQ)?;
    // Unacknowledged: the queue's bytes and a FIN behind them.
    let unacked = (sys::socket_ioctl_int(fd, nix::libc::TIOCOUTQ)? as usize)
        .saturating_sub(usize::from(our_fin_unacked));
    let send_queue = peek(sock, unacked)?;
    select(fd, r::RECV_QUEUE)?;
    let [recv_seq] = sys::tcp_get::<1>(fd, r::TCP_QUEUE_SEQ)?;
    let recv_seq = recv_seq.wrapping_sub(pad as u32);
    let unread = (sys::socket_ioctl_int(fd, nix::libc::FIONREAD)? as usize)
        .checked_sub(pad)
        .ok_or_else(|| io::Error::other("the receive queue lost its padding"))?;
    let recv_queue = peek(sock, unread)?;
    select(fd, r::NO_QUEUE)?;
    let [mss] = sys::tcp_get::<1>(fd, nix::libc::TCP_MAXSEG)?;
    let [timestamp] = sys::tcp_get::<1>(fd, r::TCP_TIMESTAMP)?;
    let window = sys::tcp_get::<5>(fd, r::TCP_REPAIR_WINDOW)?;
    if send_queue.len() != unacked || recv_queue.len() != unread {
        return Err(io::Error::other("a socket queue read short"));
    }
    Ok(SockState {
        local,
        peer,
        send_seq,
        recv_seq,
        mss,
        options: info.options,
        snd_wscale: info.snd_wscale,
        rcv_wscale: info.rcv_wscale,
        timestamp,
        window,
        send_queue,
        recv_queue,
        peer_fin,
        our_fin,
    })
}

/// How a socket in repair mode was kept from taking more of the peer's data before it
/// was read out ([`read_out`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deaf {
    /// A socket filter drops the peer's segments before TCP sees them (the repair
    /// helper's, or the engine's own where the kernel lets it attach one).
    Filter,
    /// The receive queue was padded past the right edge of the window the peer was
    /// offered: whatever the peer sends now lies before the queue's end and is dropped
    /// as a duplicate (its acknowledgments name bytes the peer never sent, which it
    /// ignores). The padding is not part of the state.
    Padded,
    /// Neither worked: a segment that lands between the read and the close is lost.
    Not,
}

/// Reads `sock`'s state (in repair mode) once it takes nothing more from the peer, so
/// the state holds all the peer was told arrived: by a socket filter if one is there or
/// (`may_filter`) can be attached, else by padding.
pub fn read_out(sock: &Socket, may_filter: bool) -> io::Result<(SockState, Deaf, usize)> {
    let fd = sock.as_fd();
    let filtered =
        sys::has_filter(fd).unwrap_or(false) || may_filter && sys::drop_all_input(fd).is_ok();
    if filtered {
        // A segment already past the filter when it was attached may land during the
        // first read: read until the queues' ends stand still.
        let mut s = dump(sock)?;
        for _ in 0..3 {
            let again = dump(sock)?;
            if (again.send_seq, again.recv_seq) == (s.send_seq, s.recv_seq) {
                break;
            }
            s = again;
        }
        return Ok((s, Deaf::Filter, 0));
    }
    // The window as it stood before the padding (an acknowledgment sent after it
    // would name the padded end).
    let window = sys::tcp_get::<5>(fd, r::TCP_REPAIR_WINDOW)?;
    let (pad, whole) = pad_past_window(sock)?;
    let mut s = dump_unpadded(sock, pad)?;
    s.window = window;
    Ok((s, if whole { Deaf::Padded } else { Deaf::Not }, pad))
}

/// Writes padding into the receive queue (repair mode) until its end lies past the
/// offered window's right edge; the bytes written, and whether it got there.
fn pad_past_window(sock: &Socket) -> io::Result<(usize, bool)> {
    static PAD: [u8; 64 << 10] = [0; 64 << 10];
    let fd = sock.as_fd();
    let mut pad = 0;
    let whole = loop {
        let [_, _, _, rcv_wnd, rcv_wup] = sys::tcp_get::<5>(fd, r::TCP_REPAIR_WINDOW)?;
        select(fd, r::RECV_QUEUE)?;
        let [rcv_nxt] = sys::tcp_get::<1>(fd, r::TCP_QUEUE_SEQ)?;
        // Bytes from the queue's end to the edge, inclusive; negative once past it.
        let short = rcv_wup.wrapping_add(rcv_wnd).wrapping_sub(rcv_nxt) as i32;
        if short < 0 {
            break true;
        }
        let n = (short as usize + 1).min(PAD.len());
        let took = write(sock, &PAD[..n])?;
        pad += took;
        if took < n {
            break false;
        }
    };
    select(fd, r::NO_QUEUE)?;
    Ok((pad, whole))
}

/// A socket on `local` that drops everything: while a connection (`tcp`: a listener)
/// or a UDP flow on `local` is between engines, the kernel answers its peer with no
/// reset or port unreachable. It shares the address (`SO_REUSEADDR`) with whoever
/// takes the flow over in the same namespace; an established or connected socket
/// there is preferred to it.
pub fn hold(local: std::net::SocketAddr, tcp: bool) -> io::Result<Socket> {
    let ty = if tcp { Type::STREAM } else { Type::DGRAM };
    let sock = Socket::new(Domain::for_address(local), ty, None)?;
    sock.set_reuse_address(true)?;
    // A UDP hold that cannot drop what it gets still keeps the kernel from answering
    // "port unreachable" (it only queues); a TCP one without the filter would reset.
    if let Err(e) = crate::sys::drop_all_input(sock.as_fd())
        && tcp
    {
        return Err(e);
    }
    sock.bind(&local.into())?;
    if tcp {
        sock.listen(1)?;
    }
    Ok(sock)
}

/// A fresh socket of `s`'s family, to be put in repair mode and then [`restore`]d.
pub fn fresh(s: &SockState) -> io::Result<Socket> {
    // Non-blocking: a full queue answers EAGAIN instead of blocking (in repair mode
    // nothing would ever drain it).
    let sock = Socket::new(
        Domain::for_address(s.local),
        Type::STREAM.nonblocking(),
        None,
    )?;
    sock.set_reuse_address(true)?;
    // Room for queues larger than a new socket's buffers surely take (the kernel
    // doubles what is asked, and caps it). Only then: a buffer size set is fixed for
    // good, and the connection would never get the larger buffers the kernel's
    // autotuning gives a busy one (an idle connection, the common case, has empty
    // queues).
    if s.send_queue.len() > DEFAULT_SEND_ROOM {
        let _ = sock.set_send_buffer_size(s.send_queue.len());
    }
    if s.recv_queue.len() > DEFAULT_RECV_ROOM {
        let _ = sock.set_recv_buffer_size(s.recv_queue.len());
    }
    Ok(sock)
}

/// What a new socket's send buffer takes in repair mode without being sized (Linux's
/// default `tcp_wmem` is 16 KiB; a send queue not taken whole is sent by the relay).
const DEFAULT_SEND_ROOM: usize = 8 << 10;
/// The same for its receive buffer (default `tcp_rmem` 128 KiB).
const DEFAULT_RECV_ROOM: usize = 64 << 10;

/// Rebuilds the connection `s` on `sock` (a [`fresh`] socket, in repair mode now); how
/// many bytes of the send queue it took (the socket's buffer may be smaller than the
/// source's was: the rest is the caller's to send once the socket is out of repair
/// mode).
pub fn restore(sock: &Socket, s: &SockState) -> io::Result<usize> {
    let fd = sock.as_fd();
    // The queues start where their bytes start; writing the bytes moves the ends (our
    // FIN is no byte: the shutdown below queues it).
    select(fd, r::SEND_QUEUE)?;
    let send_end = s.send_seq.wrapping_sub(u32::from(s.our_fin));
    let send_start = send_end.wrapping_sub(s.send_queue.len() as u32);
    sys::tcp_set(fd, r::TCP_QUEUE_SEQ, &[send_start])?;
    select(fd, r::RECV_QUEUE)?;
    // The receive end stays past the peer's FIN, the queue's bytes just before it.
    let recv_start = s.recv_seq.wrapping_sub(s.recv_queue.len() as u32);
    sys::tcp_set(fd, r::TCP_QUEUE_SEQ, &[recv_start])?;
    // The receive queue stays selected for its bytes below: binding, connecting and
    // the options take no queue.
    sock.bind(&s.local.into())?;
    sock.connect(&s.peer.into())?;
    let mut opts = vec![r::OPT_MSS, s.mss];
    if s.options & r::TCPI_OPT_WSCALE != 0 {
        opts.extend([
            r::OPT_WINDOW,
            u32::from(s.snd_wscale) | (u32::from(s.rcv_wscale) << 16),
        ]);
    }
    if s.options & r::TCPI_OPT_SACK != 0 {
        opts.extend([r::OPT_SACK_PERM, 0]);
    }
    if s.options & r::TCPI_OPT_TIMESTAMPS != 0 {
        opts.extend([r::OPT_TIMESTAMP, 0]);
    }
    sys::tcp_set(fd, r::TCP_REPAIR_OPTIONS, &opts)?;
    sys::tcp_set(fd, r::TCP_TIMESTAMP, &[s.timestamp])?;
    // The receive queue whole, in pieces the kernel takes one at a time (it refuses
    // a piece only once the queue is past the buffer's size).
    for piece in s.recv_queue.chunks(RECV_PIECE) {
        if write(sock, piece)? < piece.len() {
            return Err(io::Error::other(
                "the receive queue does not fit the buffer",
            ));
        }
    }
    // The send queue as far as the buffer goes; the engine keeps the rest.
    let mut taken = 0;
    if !s.send_queue.is_empty() || s.our_fin {
        select(fd, r::SEND_QUEUE)?;
        taken = write(sock, &s.send_queue)?;
        if s.our_fin && taken == s.send_queue.len() {
            sock.shutdown(std::net::Shutdown::Write)?;
        }
    }
    select(fd, r::NO_QUEUE)?;
    sys::tcp_set(fd, r::TCP_REPAIR_WINDOW, &s.window)?;
    Ok(taken)
}

/// The most of a receive queue written back in one call (the kernel takes a call
/// whole or not at all, and a large one not at all).
const RECV_PIECE: usize = 256 << 10;

/// Writes `bytes` to the selected queue until it is full; how many it took.
fn write(sock: &Socket, bytes: &[u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < bytes.len() {
        match sock.send(&bytes[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}
