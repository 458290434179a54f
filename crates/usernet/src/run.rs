//! The event loop of `netbind usernet`: one thread, one `mio::Poll` (epoll,
//! edge-triggered), tokens below `engine::FIRST_TOKEN` for the guest side, the unix
//! socket listener and the signal descriptor.
//!
//! Each round: wait (not while guest frames are left from the last round's read, which
//! stops at [`GUEST_BUDGET`]) — first spinning for the busy-poll window (`busy_poll.rs`), then
//! sleeping at most [`TICK`] after activity, else until the next timer is due (at most
//! [`IDLE_WAIT`]: an idle engine wakes once a second, open connections or not), or `engine::DELACK_WAIT` while ACKs are held for a reply to
//! carry them — read the guest's frames into the engine (at most [`GUEST_BUDGET`]), hand socket readiness to
//! the engine, send the owed ACKs, write the guest side out, run timers. `SIGUSR1` prints
//! the counters (and rewrites the `stats` file, kept every second too); `SIGINT`/`SIGTERM`
//! (or the `stop` flag) end the loop, which returns the counters. Before the first round,
//! with [`RunOptions::harden`], the process gives up its privileges (`harden.rs`). A
//! stream guest that disconnects is replaced by the next connection on the socket; a tap
//! or inherited descriptor that closes ends the loop.
//!
//! Layout: [`run`] opens the attachment (`attach/`) and hands it to [`EventLoop`], which
//! is generic over it (`attach::Attachment`). `EventLoop::new` is the set-up (poll,
//! registration, capture, engine, signals, hardening), `EventLoop::wait` the wait, and
//! one method per event source: `on_guest` (frames in, the guest side writable again),
//! `on_listener` (a new guest), `on_signals`, `on_clock` (timers, the stats file, CPU
//! pinning); flow sockets go straight to `Engine::handle_event`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

pub use crate::attach::open::Attach;
pub use crate::attach::stream::listen_unix;
use crate::attach::{AttachError, Attachment, Driver, GUEST, Got, LINK_TOKENS, LISTENER, Ready};
use crate::busy_poll::{BusyPoll, Wait};
use crate::config::EngineConfig;
use crate::engine::{Counters, DELACK_WAIT, Engine, EngineError};
use crate::harden::{HardenError, Hardening};
use crate::pcap::{Pcap, PcapError};

/// How often timers run while events come (and the shortest sleep before a timer).
pub const TICK: Duration = Duration::from_millis(20);
/// The longest sleep (the stats file is rewritten and the CPUs checked every second).
pub const IDLE_WAIT: Duration = Duration::from_secs(1);
const SIGNALS: Token = Token(1);
/// The most guest frames read in one round: a guest that sends without pause must not
/// hold off the sockets, the timers and the other direction. The rest is read first
/// thing next round, which does not sleep (no new edge may come for what is waiting).
pub const GUEST_BUDGET: usize = 256;

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

/// Runs the engine until stopped; returns the final counters.
pub fn run(cfg: EngineConfig, attach: Attach, opts: RunOptions) -> Result<Counters, RunError> {
    attach.open(Start { cfg, opts })?
}

/// Takes over an opened attachment of any kind (see `attach::Driver`).
struct Start {
    cfg: EngineConfig,
    opts: RunOptions,
}

impl Driver for Start {
    type Output = Result<Counters, RunError>;

    fn drive<A: Attachment>(self, link: A, tx: A::Tx) -> Self::Output {
        let mut events = Events::with_capacity(1024);
        EventLoop::new(self.cfg, link, tx, self.opts)?.run(&mut events)
    }
}

/// Whether the loop goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Go,
    End,
}

/// The event loop over attachment `A` (see the module's theory of operation).
pub struct EventLoop<A: Attachment> {
    poll: Poll,
    engine: Engine<A::Tx>,
    link: A,
    signals: Option<SignalFd>,
    opts: RunOptions,
    busy: BusyPoll,
    last_timers: Instant,
    last_second: Instant,
    /// The loop thread's and its CPUs' times at `last_second` (busy polling: are its
    /// CPUs busy?).
    cpu_times: CpuTimes,
    /// Events since the last timer pass (which may have set new deadlines): until the
    /// next pass, the loop wakes every TICK.
    active: bool,
    /// The guest had frames left when the last read stopped at [`GUEST_BUDGET`].
    guest_more: bool,
}

impl<A: Attachment> EventLoop<A> {
    /// The set-up: poll, the attachment's registration, the capture, the engine, the
    /// signal descriptor, then hardening (everything that needs a privilege is open).
    fn new(
        mut cfg: EngineConfig,
        mut link: A,
        tx: A::Tx,
        opts: RunOptions,
    ) -> Result<Self, RunError> {
        cfg.share_ports = link.can_migrate();
        let poll = Poll::new().map_err(RunError::Poll)?;
        let registry = poll.registry().try_clone().map_err(RunError::Poll)?;
        let connected = link.register(poll.registry()).map_err(RunError::Poll)?;
        let pcap = opts.pcap.as_deref().map(Pcap::create).transpose()?;
        let mut engine = Engine::new(cfg, tx, registry)?;
        engine.set_pcap(pcap);
        if connected {
            engine.guest_connected();
        }
        let signals = if opts.signals {
            Some(take_signals(&poll)?)
        } else {
            None
        };
        if let Some(h) = opts.harden.as_ref() {
            // Everything that needs a privilege is open: the guest side, the listeners
            // (inbound ports, the unix socket), the capture, the signal descriptor.
            crate::harden::lock_down(h)?;
        }
        if let Some(p) = opts.stats.as_deref() {
            write_stats(p, &engine.counters());
        }
        let mut busy = BusyPoll::new(opts.busy_poll);
        if let Ok(n) = crate::sys::cpus_allowed() {
            busy.set_cpus(n);
        }
        let now = Instant::now();
        Ok(EventLoop {
            poll,
            engine,
            link,
            signals,
            opts,
            busy,
            last_timers: now,
            last_second: now,
            cpu_times: CpuTimes::now(),
            active: true,
            guest_more: false,
        })
    }

    /// Rounds until stopped; then the capture is flushed and the counters kept.
    fn run(mut self, events: &mut Events) -> Result<Counters, RunError> {
        while !self.opts.stop.load(Ordering::Relaxed) {
            if self.round(events)? == Next::End {
                break;
            }
        }
        self.engine.set_pcap(None); // flushes the capture
        if let Some(p) = self.opts.stats.as_deref() {
            write_stats(p, &self.engine.counters());
        }
        Ok(self.engine.counters())
    }

    /// One round: wait, hand every event to its source's method, send the owed ACKs,
    /// run the clock, write the guest side out.
    fn round(&mut self, events: &mut Events) -> Result<Next, RunError> {
        self.wait(events)?;
        self.engine.set_now(Instant::now());
        if self.guest_more {
            let more = Ready {
                readable: true,
                ..Ready::default()
            };
            if self.on_ready(more) == Next::End {
                return Ok(Next::End);
            }
        }
        for event in events.iter() {
            let next = match event.token() {
                GUEST => self.on_guest(event),
                LISTENER => {
                    self.link.accept(self.poll.registry(), &mut self.engine);
                    Next::Go
                }
                SIGNALS => self.on_signals(),
                t if LINK_TOKENS.contains(&t.0) => {
                    let ready = self
                        .link
                        .on_event(t, self.poll.registry(), &mut self.engine);
                    self.on_ready(ready)
                }
                _ => {
                    self.engine.handle_event(event);
                    Next::Go
                }
            };
            if next == Next::End {
                return Ok(Next::End);
            }
        }
        self.engine.flush();
        self.on_clock();
        if self.link.connected()
            && !A::flush(self.engine.guest_mut())
            && self.link.disconnect(&mut self.engine)
        {
            return Ok(Next::End);
        }
        Ok(Next::Go)
    }

    /// How long this round may sleep: briefly while ACKs are delayed or events came
    /// since the last timer pass, else until the next timer or the next second.
    fn timeout(&self) -> Duration {
        if self.engine.acks_delayed() {
            DELACK_WAIT
        } else if self.active {
            TICK
        } else {
            // Until the next timer, or the next second's stats and CPU check.
            let second = self.last_second + Duration::from_secs(1);
            let due = self.engine.next_timer().map_or(second, |t| t.min(second));
            due.saturating_duration_since(Instant::now())
                .clamp(TICK, IDLE_WAIT)
        }
    }

    /// The wait: spinning for the busy-poll window, then asleep for [`Self::timeout`];
    /// counts how it ended (`busy_poll.rs`).
    fn wait(&mut self, events: &mut Events) -> Result<(), RunError> {
        if self.guest_more {
            // Frames are waiting: a look for events, no wait (and nothing to learn
            // about waits).
            match self.poll.poll(events, Some(Duration::ZERO)) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(RunError::Poll(e)),
                _ => return Ok(()),
            }
        }
        let timeout = self.timeout();
        let started = Instant::now();
        let caught = spin(&mut self.poll, events, self.busy.window()).map_err(RunError::Poll)?;
        if !caught
            && let Err(e) = self.poll.poll(events, Some(timeout))
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
        if self.busy.would_open(wait)
            && let Ok(n) = crate::sys::cpus_allowed()
        {
            self.busy.set_cpus(n); // pinned since the last check: stays closed
        }
        self.busy.record(wait);
        self.engine.count_wait(caught, self.busy.window());
        self.active |= !events.is_empty();
        Ok(())
    }

    /// The guest's descriptor: writable, readable, or gone (see [`Self::on_ready`]).
    fn on_guest(&mut self, event: &Event) -> Next {
        self.on_ready(Ready {
            readable: event.is_readable() || event.is_read_closed(),
            writable: event.is_writable(),
            closed: false,
        })
    }

    /// The guest side: writable again (what is buffered goes out, stopped flows go on),
    /// readable (the frames it has go into the engine, up to [`GUEST_BUDGET`]), or gone.
    fn on_ready(&mut self, ready: Ready) -> Next {
        if ready.closed {
            return self.disconnected();
        }
        if ready.writable {
            if !A::flush(self.engine.guest_mut()) {
                return self.disconnected();
            }
            self.engine.guest_writable();
        }
        if ready.readable {
            let mut closed = false;
            self.guest_more = true;
            for _ in 0..GUEST_BUDGET {
                match self.link.read_into(&mut self.engine) {
                    Got::Frame => {}
                    Got::Empty => {
                        self.guest_more = false;
                        break;
                    }
                    Got::Closed => {
                        (closed, self.guest_more) = (true, false);
                        break;
                    }
                }
            }
            self.engine.flush();
            if closed {
                return self.disconnected();
            }
        }
        Next::Go
    }

    /// The guest went away: the loop ends unless another guest can come.
    fn disconnected(&mut self) -> Next {
        if self.link.disconnect(&mut self.engine) {
            tracing::info!("guest disconnected; the engine ends");
            Next::End
        } else {
            tracing::info!("guest disconnected; waiting for the next");
            Next::Go
        }
    }

    /// `SIGUSR1` prints the counters (and rewrites the stats file); `SIGINT`/`SIGTERM`
    /// end the loop.
    fn on_signals(&mut self) -> Next {
        let Some(sfd) = self.signals.as_ref() else {
            return Next::Go;
        };
        while let Ok(Some(info)) = sfd.read_signal() {
            if info.ssi_signo != Signal::SIGUSR1 as u32 {
                return Next::End;
            }
            tracing::info!("{}", self.engine.counters());
            if let Some(p) = self.opts.stats.as_deref() {
                write_stats(p, &self.engine.counters());
            }
        }
        Next::Go
    }

    /// Timers every [`TICK`]; the stats file and the CPUs allowed every second.
    fn on_clock(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_timers) >= TICK {
            self.engine.timers(now);
            self.last_timers = now;
            self.active = false;
        }
        if now.duration_since(self.last_second) >= Duration::from_secs(1) {
            if let Some(p) = self.opts.stats.as_deref() {
                write_stats(p, &self.engine.counters());
            }
            // Pinning can change while the engine runs (taskset, a CPU manager).
            if let Ok(n) = crate::sys::cpus_allowed() {
                self.busy.set_cpus(n);
            }
            let times = CpuTimes::now();
            let elapsed = now.duration_since(self.last_second);
            let since = |t: fn(&CpuTimes) -> Option<Duration>| {
                Some(t(&times)?.saturating_sub(t(&self.cpu_times)?))
            };
            if let Some(waited) = since(|t| t.run_delay) {
                self.busy.set_run_delay(waited, elapsed);
            }
            if let (Some(idle), Some(own)) = (since(|t| t.idle), since(|t| t.on_cpu)) {
                self.busy.set_spare_time(idle + own, elapsed);
            }
            self.cpu_times = times;
            self.last_second = now;
        }
    }
}

/// What busy polling asks of the CPUs each second (`busy_poll.rs`), as totals; None
/// where the kernel keeps no such count.
#[derive(Debug, Default, Clone, Copy)]
struct CpuTimes {
    /// This thread's time on a CPU (`/proc/thread-self/schedstat`, first field).
    on_cpu: Option<Duration>,
    /// This thread's time waiting, runnable, for a CPU (its second field).
    run_delay: Option<Duration>,
    /// The idle time (idle and iowait) of the CPUs this thread may run on (`/proc/stat`).
    idle: Option<Duration>,
}

impl CpuTimes {
    fn now() -> CpuTimes {
        let sched = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        let field = |i| {
            Some(Duration::from_nanos(
                sched.split_whitespace().nth(i)?.parse().ok()?,
            ))
        };
        let idle = crate::sys::allowed_cpus().ok().and_then(|cpus| {
            let stat = std::fs::read_to_string("/proc/stat").ok()?;
            idle_time(
                &stat,
                |n| cpus.is_set(n).unwrap_or(false),
                crate::sys::clock_ticks(),
            )
        });
        CpuTimes {
            on_cpu: field(0),
            run_delay: field(1),
            idle,
        }
    }
}

/// The idle time of the CPUs `allowed` says yes to, from `/proc/stat` text (its `cpuN`
/// lines: the fourth and fifth numbers, idle and iowait, in clock ticks of `tick` per
/// second). None when no line is for an allowed CPU.
fn idle_time(stat: &str, allowed: impl Fn(usize) -> bool, tick: u64) -> Option<Duration> {
    let mut ticks = None;
    for line in stat.lines() {
        let mut words = line.split_whitespace();
        let Some(n) = words
            .next()
            .and_then(|w| w.strip_prefix("cpu")?.parse().ok())
        else {
            continue;
        };
        if !allowed(n) {
            continue;
        }
        let mut numbers = words.skip(3).map(|w| w.parse::<u64>().unwrap_or(0));
        let idle = numbers.next().unwrap_or(0) + numbers.next().unwrap_or(0);
        ticks = Some(ticks.unwrap_or(0) + idle);
    }
    Some(Duration::from_secs_f64(ticks? as f64 / tick.max(1) as f64))
}

/// Blocks SIGUSR1, SIGINT and SIGTERM and registers a descriptor that reads them.
fn take_signals(poll: &Poll) -> Result<SignalFd, RunError> {
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
    Ok(sfd)
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

/// Takes ownership of an inherited descriptor number (`--fd N`).
pub fn inherited_fd(n: i32) -> io::Result<OwnedFd> {
    crate::sys::take_inherited_fd(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  900 0 300 5000 70 0 10 0 0 0
cpu0 400 0 100 2000 30 0 5 0 0 0
cpu1 500 0 200 3000 40 0 5 0 0 0
intr 12345
";

    #[test]
    fn idle_time_counts_idle_and_iowait_of_the_allowed_cpus_only() {
        let only_cpu1 = idle_time(STAT, |n| n == 1, 100);
        assert_eq!(only_cpu1, Some(Duration::from_millis(30_400)));
        let both = idle_time(STAT, |_| true, 100);
        assert_eq!(
            both,
            Some(Duration::from_millis(50_700)),
            "not the `cpu` total twice"
        );
        assert_eq!(idle_time(STAT, |n| n == 7, 100), None);
    }

    #[test]
    fn this_machine_reports_the_times_busy_polling_needs() {
        let t = CpuTimes::now();
        assert!(
            t.on_cpu.is_some() && t.run_delay.is_some() && t.idle.is_some(),
            "{t:?}"
        );
    }
}
