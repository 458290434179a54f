//! The event loop of `netbind usernet`: one thread, one `mio::Poll` (epoll,
//! edge-triggered), tokens below `engine::FIRST_TOKEN` for the guest side, the unix
//! socket listener and the signal descriptor.
//!
//! Each round: wait — first spinning for the busy-poll window (`busy_poll.rs`), then
//! sleeping at most [`TICK`] after activity, else until the next timer is due (at most
//! [`IDLE_WAIT`]: an idle engine wakes once a second, open connections or not), or `engine::DELACK_WAIT` while ACKs are held for a reply to
//! carry them — read every frame the guest has into the engine, hand socket readiness to
//! the engine, send the owed ACKs, write the guest side out, run timers. `SIGUSR1` prints
//! the counters (and rewrites the `stats` file, kept every second too); `SIGINT`/`SIGTERM`
//! (or the `stop` flag) end the loop, which returns the counters. Before the first round,
//! with [`RunOptions::harden`], the process gives up its privileges (`harden.rs`). A
//! stream guest that disconnects is replaced by the next connection on the socket; a tap
//! or inherited descriptor that closes ends the loop.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::attach::stream::{StreamRx, StreamTx};
use crate::attach::tap::{TapRx, TapTx};
use crate::attach::{AttachError, GuestReader, GuestSide, Read};
use crate::busy_poll::{BusyPoll, Wait};
use crate::config::EngineConfig;
use crate::engine::{Counters, Engine, EngineError};
use crate::harden::{HardenError, Hardening};
use crate::pcap::{Pcap, PcapError};

/// How often timers run while events come (and the shortest sleep before a timer).
pub const TICK: Duration = Duration::from_millis(20);
/// The longest sleep (the stats file is rewritten and the CPUs checked every second).
pub const IDLE_WAIT: Duration = Duration::from_secs(1);
const GUEST: Token = Token(0);
const SIGNALS: Token = Token(1);
const LISTENER: Token = Token(2);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot set up the event loop")]
    Poll(#[source] io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Pcap(#[from] PcapError),
    #[error("cannot take over signals")]
    Signals(#[source] nix::Error),
    #[error(transparent)]
    Harden(#[from] HardenError),
}

/// How the guest is attached.
pub enum Attach {
    /// Listen on a unix socket for QEMU (`-netdev stream,addr.type=unix`).
    Socket(PathBuf),
    /// A unix socket bound already ([`listen_unix`]): by a caller that must know it is
    /// bound before the engine runs (a daemon's parent, which exits only then). With
    /// `one_off` the engine ends when its first guest connection does (passt's
    /// `--one-off`), else it waits for the next (a guest reboot, a QEMU restart).
    Listener {
        listener: UnixListener,
        one_off: bool,
    },
    /// A tap device's descriptor.
    Tap(OwnedFd),
    /// An inherited descriptor: a connected stream socket, or a tap.
    Fd(OwnedFd),
}

pub struct RunOptions {
    pub pcap: Option<PathBuf>,
    /// Take over SIGUSR1/SIGINT/SIGTERM (the CLI); tests leave signals alone.
    pub signals: bool,
    /// Ends the loop when set (seen when the loop wakes: within a second).
    pub stop: Arc<AtomicBool>,
    /// Where to keep the counters (`name value` lines), rewritten every second, on
    /// `SIGUSR1` and at exit.
    pub stats: Option<PathBuf>,
    /// Give up capabilities (and the user, with `runas`), install the seccomp
    /// allowlist, right before the loop (see `harden.rs`). `None` for tests that run the
    /// engine inside the test process.
    pub harden: Option<Hardening>,
    /// The longest the loop looks for events before it sleeps ([`BusyPoll`]); zero: it
    /// always sleeps.
    pub busy_poll: Duration,
}

/// The default for [`RunOptions::busy_poll`].
pub const DEFAULT_BUSY_POLL: Duration =
    Duration::from_micros(netbind_plan::bindings::usernet::DEFAULT_BUSY_POLL_US as u64);

/// Rewrites the stats file (atomically: readers never see half of it).
fn write_stats(path: &Path, counters: &Counters) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, counters.lines()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Binds the unix socket (removing a stale one, creating the directory).
pub fn listen_unix(path: &Path) -> Result<UnixListener, AttachError> {
    let err = |source| AttachError::Listen {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let l = UnixListener::bind(path).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    Ok(l)
}

fn is_socket(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd)
        .map(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFSOCK)
        .unwrap_or(false)
}

/// The listener, registered for the guest's connections.
fn listening(l: UnixListener, registry: &mio::Registry) -> Result<UnixListener, RunError> {
    registry
        .register(&mut SourceFd(&l.as_raw_fd()), LISTENER, Interest::READABLE)
        .map_err(RunError::Poll)?;
    Ok(l)
}

/// Runs the engine until stopped; returns the final counters.
pub fn run(cfg: EngineConfig, attach: Attach, opts: RunOptions) -> Result<Counters, RunError> {
    let mut poll = Poll::new().map_err(RunError::Poll)?;
    let registry = poll.registry().try_clone().map_err(RunError::Poll)?;
    let mut listener: Option<UnixListener> = None;
    let mut one_off = false;
    let (side, mut reader, mut guest_fd): (GuestSide, GuestReader, Option<i32>) = match attach {
        Attach::Socket(path) => {
            listener = Some(listening(listen_unix(&path)?, &registry)?);
            (
                GuestSide::Stream(StreamTx::new()),
                GuestReader::Stream(StreamRx::new()),
                None,
            )
        }
        Attach::Listener {
            listener: l,
            one_off: once,
        } => {
            listener = Some(listening(l, &registry)?);
            one_off = once;
            (
                GuestSide::Stream(StreamTx::new()),
                GuestReader::Stream(StreamRx::new()),
                None,
            )
        }
        Attach::Fd(fd) if is_socket(&fd) => {
            let stream = UnixStream::from(fd);
            stream.set_nonblocking(true).map_err(RunError::Poll)?;
            let raw = stream.as_raw_fd();
            let mut tx = StreamTx::new();
            let mut rx = StreamRx::new();
            rx.set_conn(Some(stream.try_clone().map_err(RunError::Poll)?));
            tx.set_conn(Some(stream));
            (GuestSide::Stream(tx), GuestReader::Stream(rx), Some(raw))
        }
        Attach::Tap(fd) | Attach::Fd(fd) => {
            nix::fcntl::fcntl(
                &fd,
                nix::fcntl::FcntlArg::F_SETFL(
                    nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_RDWR,
                ),
            )
            .map_err(|e| RunError::Poll(e.into()))?;
            let raw = fd.as_raw_fd();
            let dup = fd.try_clone().map_err(RunError::Poll)?;
            let vnet = crate::sys::tun_has_vnet_hdr(std::os::fd::AsFd::as_fd(&fd));
            (
                GuestSide::Tap(TapTx::new(fd, vnet)),
                GuestReader::Tap(TapRx::new(dup, vnet)),
                Some(raw),
            )
        }
    };
    if let Some(raw) = guest_fd {
        registry
            .register(
                &mut SourceFd(&raw),
                GUEST,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(RunError::Poll)?;
    }
    let pcap = opts.pcap.as_deref().map(Pcap::create).transpose()?;
    let mut engine = Engine::new(cfg, side, registry)?;
    engine.set_pcap(pcap);
    if guest_fd.is_some() {
        engine.guest_connected();
    }

    let signals = if opts.signals {
        let mut set = SigSet::empty();
        set.add(Signal::SIGUSR1);
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.thread_block().map_err(RunError::Signals)?;
        let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(RunError::Signals)?;
        poll.registry()
            .register(&mut SourceFd(&sfd.as_raw_fd()), SIGNALS, Interest::READABLE)
            .map_err(RunError::Poll)?;
        Some(sfd)
    } else {
        None
    };

    let mut events = Events::with_capacity(1024);
    if let Some(h) = opts.harden.as_ref() {
        // Everything that needs a privilege is open: the guest side, the listeners
        // (inbound ports, the unix socket), the capture, the signal descriptor.
        crate::harden::lock_down(h)?;
    }
    let mut last_timers = Instant::now();
    let mut last_second = Instant::now();
    if let Some(p) = opts.stats.as_deref() {
        write_stats(p, &engine.counters());
    }
    // Events since the last timer pass (which may have set new deadlines): until the
    // next pass, the loop wakes every TICK.
    let mut active = true;
    let mut busy = BusyPoll::new(opts.busy_poll);
    if let Ok(n) = crate::sys::cpus_allowed() {
        busy.set_cpus(n);
    }
    'outer: while !opts.stop.load(Ordering::Relaxed) {
        let wait = if engine.acks_delayed() {
            crate::engine::DELACK_WAIT
        } else if active {
            TICK
        } else {
            // Until the next timer, or the next second's stats and CPU check.
            let second = last_second + Duration::from_secs(1);
            let due = engine.next_timer().map_or(second, |t| t.min(second));
            due.saturating_duration_since(Instant::now())
                .clamp(TICK, IDLE_WAIT)
        };
        let started = Instant::now();
        let caught = spin(&mut poll, &mut events, busy.window()).map_err(RunError::Poll)?;
        if !caught
            && let Err(e) = poll.poll(&mut events, Some(wait))
            && e.kind() != io::ErrorKind::Interrupted
        {
            return Err(RunError::Poll(e));
        }
        let wait = if caught {
            Wait::Caught
        } else if events.is_empty() {
            Wait::TimedOut
        } else {
            Wait::Woken(started.elapsed())
        };
        if busy.would_open(wait)
            && let Ok(n) = crate::sys::cpus_allowed()
        {
            busy.set_cpus(n); // pinned since the last check: stays closed
        }
        busy.record(wait);
        engine.count_wait(caught, busy.window());
        active |= !events.is_empty();
        engine.set_now(Instant::now());
        for event in events.iter() {
            match event.token() {
                GUEST => {
                    if event.is_writable() {
                        if !engine.guest_mut().flush() {
                            if disconnect(
                                &mut engine,
                                &mut reader,
                                &mut guest_fd,
                                listener.is_some() && !one_off,
                            ) {
                                break 'outer;
                            }
                            continue;
                        }
                        engine.guest_writable();
                    }
                    if event.is_readable() || event.is_read_closed() {
                        let mut closed = false;
                        loop {
                            match reader.next_frame() {
                                Read::Frame(f) => engine.guest_frame(f),
                                Read::Empty => break,
                                Read::Closed => {
                                    closed = true;
                                    break;
                                }
                            }
                        }
                        engine.flush();
                        if closed
                            && disconnect(
                                &mut engine,
                                &mut reader,
                                &mut guest_fd,
                                listener.is_some() && !one_off,
                            )
                        {
                            break 'outer;
                        }
                    }
                }
                LISTENER => {
                    let Some(l) = listener.as_ref() else { continue };
                    while let Ok((conn, _)) = l.accept() {
                        if conn.set_nonblocking(true).is_err() {
                            continue;
                        }
                        if let Some(old) = guest_fd.take() {
                            let _ = engine_registry_deregister(&poll, old);
                        }
                        let Ok(rx_conn) = conn.try_clone() else {
                            continue;
                        };
                        let raw = conn.as_raw_fd();
                        if let GuestReader::Stream(rx) = &mut reader {
                            rx.set_conn(Some(rx_conn));
                        }
                        if let GuestSide::Stream(tx) = engine.guest_mut() {
                            tx.set_conn(Some(conn));
                        }
                        if poll
                            .registry()
                            .register(
                                &mut SourceFd(&raw),
                                GUEST,
                                Interest::READABLE | Interest::WRITABLE,
                            )
                            .is_ok()
                        {
                            guest_fd = Some(raw);
                            engine.guest_connected();
                        }
                    }
                }
                SIGNALS => {
                    if let Some(sfd) = signals.as_ref() {
                        while let Ok(Some(info)) = sfd.read_signal() {
                            if info.ssi_signo == Signal::SIGUSR1 as u32 {
                                eprintln!("netbind usernet: {}", engine.counters());
                                if let Some(p) = opts.stats.as_deref() {
                                    write_stats(p, &engine.counters());
                                }
                            } else {
                                break 'outer;
                            }
                        }
                    }
                }
                _ => engine.handle_event(event),
            }
        }
        engine.flush();
        let now = Instant::now();
        if now.duration_since(last_timers) >= TICK {
            engine.timers(now);
            last_timers = now;
            active = false;
        }
        if now.duration_since(last_second) >= Duration::from_secs(1) {
            if let Some(p) = opts.stats.as_deref() {
                write_stats(p, &engine.counters());
            }
            // Pinning can change while the engine runs (taskset, a CPU manager).
            if let Ok(n) = crate::sys::cpus_allowed() {
                busy.set_cpus(n);
            }
            last_second = now;
        }
        if guest_fd.is_some()
            && !engine.guest_mut().flush()
            && disconnect(
                &mut engine,
                &mut reader,
                &mut guest_fd,
                listener.is_some() && !one_off,
            )
        {
            break;
        }
    }
    engine.set_pcap(None); // flushes the capture
    if let Some(p) = opts.stats.as_deref() {
        write_stats(p, &engine.counters());
    }
    Ok(engine.counters())
}

/// Looks for events without sleeping for up to `window` (see `busy_poll.rs`), giving
/// the CPU to any other runnable thread between looks: on a CPU shared with the peer
/// the engine waits for, the peer runs instead of the spin. True if events came.
fn spin(poll: &mut Poll, events: &mut Events, window: Duration) -> io::Result<bool> {
    if window.is_zero() {
        return Ok(false);
    }
    let until = Instant::now() + window;
    loop {
        match poll.poll(events, Some(Duration::ZERO)) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
            _ if !events.is_empty() => return Ok(true),
            _ if Instant::now() >= until => return Ok(false),
            _ => std::thread::yield_now(),
        }
    }
}

fn engine_registry_deregister(poll: &Poll, fd: i32) -> io::Result<()> {
    poll.registry().deregister(&mut SourceFd(&fd))
}

/// The guest went away. Returns true when the loop should end (no listener to wait on).
fn disconnect(
    engine: &mut Engine<GuestSide>,
    reader: &mut GuestReader,
    guest_fd: &mut Option<i32>,
    can_wait: bool,
) -> bool {
    if !can_wait {
        return true;
    }
    if let GuestReader::Stream(rx) = reader {
        rx.set_conn(None);
    }
    if let GuestSide::Stream(tx) = engine.guest_mut() {
        tx.set_conn(None); // closing the descriptor removes it from epoll
    }
    *guest_fd = None;
    false
}

/// Takes ownership of an inherited descriptor number (`--fd N`).
pub fn inherited_fd(n: i32) -> io::Result<OwnedFd> {
    crate::sys::take_inherited_fd(n)
}
