//! Adaptive busy polling: how long the event loop looks for events without sleeping.
//!
//! Why: a request and its reply cross the engine twice, and each crossing wakes a
//! sleeping thread. On a virtual machine (most Kubernetes nodes) waking a thread whose
//! CPU is halted costs an inter-processor interrupt and a VM exit and entry, tens of
//! microseconds — more than the engine's own work per packet. A loop that keeps looking
//! (`epoll_wait` with a zero timeout, yielding the CPU between looks) for a short while after
//! an event catches the next one without being woken.
//!
//! How it works (the policy of Linux's `haltpoll` cpuidle governor, applied to one
//! thread): the loop spins for [`BusyPoll::window`] before it blocks. After each wait,
//! [`BusyPoll::record`] adjusts the window from how the wait ended:
//! - an event came while spinning: the window is right, keep it;
//! - the loop slept, and the event came within `max` of the wait's start: a longer spin
//!   would have caught it, so the window doubles (from [`START`]), up to `max`;
//! - the event came later: spinning was wasted, so the window halves, and
//!   below [`START`] it closes;
//! - no event came at all (the sleep ran to its timeout): the traffic stopped, the
//!   window closes.
//!
//! Spinning pays only while the event can happen on another CPU meanwhile, one no
//! other thread wants: when the engine may run on one CPU only ([`BusyPoll::set_cpus`],
//! checked by the loop every second and whenever the window is about to open), each
//! spin only delays the peer it waits for; when the engine's CPUs are busy, each spin
//! takes the CPU from a thread that wants it (a VM's vCPUs, the peer's receiver, others
//! in the pod's CPU quota). Busy is either of: the engine waited, runnable, for a CPU
//! more than [`CONTENDED`] of the last second ([`BusyPoll::set_run_delay`], from
//! `/proc/thread-self/schedstat`); or its CPUs' idle time and its own time on them
//! together came to less than [`SPARE`] of one CPU over the last second
//! ([`BusyPoll::set_spare_time`], from `/proc/stat`): the other threads then keep all
//! CPUs but the one the engine spins on busy, and would take that one too (a
//! two-vCPU guest on two cores: its vCPUs yield to the spinning engine, and run
//! slower). Either way the window stays closed until the check finds it otherwise.
//!
//! `max` is capped at [`MAX`]: a spin delays the loop's timers and signals, so it stays
//! well below the loop's 20 ms tick.
//!
//! What holds: the window never exceeds `max`; with `max` zero it is always zero (the
//! loop only sleeps); an idle engine spins at most once, for one window, before it only
//! sleeps; while request/response traffic keeps coming within `max`, the engine keeps
//! one CPU busy (the price, reported by the benchmark).

use std::time::Duration;

/// The first window after a wait that a spin would have caught.
pub const START: Duration = Duration::from_micros(10);
/// The longest window allowed.
pub const MAX: Duration = Duration::from_millis(5);
/// The share of the time the engine may wait for a CPU and still find one spare.
pub const CONTENDED: f64 = 0.05;
/// The share of one CPU that must be idle or the engine's for the engine to spin.
pub const SPARE: f64 = 0.9;

/// How one wait of the event loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Events came while spinning.
    Caught,
    /// Events came while asleep, this long after the wait began.
    Woken(Duration),
    /// No events: the sleep ran to its timeout.
    TimedOut,
}

/// The window policy (pure; the event loop in `run.rs` does the spinning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    max: Duration,
    window: Duration,
    /// False while the engine may run on one CPU only, or its CPUs are busy.
    spare_cpu: bool,
    one_cpu: bool,
    busy_cpus: bool,
    no_spare_time: bool,
}

impl BusyPoll {
    /// A policy whose window grows up to `max` (at most [`MAX`]; zero turns busy
    /// polling off).
    pub fn new(max: Duration) -> Self {
        Self {
            max: max.min(MAX),
            window: Duration::ZERO,
            spare_cpu: true,
            one_cpu: false,
            busy_cpus: false,
            no_spare_time: false,
        }
    }

    /// How many CPUs the engine may run on (its affinity mask).
    pub fn set_cpus(&mut self, cpus: usize) {
        self.one_cpu = cpus <= 1;
        self.spare();
    }

    /// How long the engine waited, runnable, for a CPU over the last `elapsed`.
    pub fn set_run_delay(&mut self, delay: Duration, elapsed: Duration) {
        self.busy_cpus = delay.as_secs_f64() > CONTENDED * elapsed.as_secs_f64();
        self.spare();
    }

    /// The engine's CPUs' idle time plus its own time on them, over the last `elapsed`
    /// (the time it spun would have been idle had it slept).
    pub fn set_spare_time(&mut self, spare: Duration, elapsed: Duration) {
        self.no_spare_time = spare.as_secs_f64() < SPARE * elapsed.as_secs_f64();
        self.spare();
    }

    fn spare(&mut self) {
        self.spare_cpu = !self.one_cpu && !self.busy_cpus && !self.no_spare_time;
        if !self.spare_cpu {
            self.window = Duration::ZERO;
        }
    }

    /// How long to look for events before blocking.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Whether a wait that came out `wait` would open a closed window: the moment to
    /// check the CPUs first ([`BusyPoll::set_cpus`]).
    pub fn would_open(&self, wait: Wait) -> bool {
        self.window.is_zero()
            && self.spare_cpu
            && matches!(wait, Wait::Woken(after) if after <= self.max && !self.max.is_zero())
    }

    /// Adjusts the window after one wait.
    pub fn record(&mut self, wait: Wait) {
        match wait {
            Wait::Caught => {}
            Wait::Woken(after) if after <= self.max && self.spare_cpu => {
                self.window = (self.window * 2).max(START).min(self.max);
            }
            Wait::Woken(_) => {
                self.window /= 2;
                if self.window < START {
                    self.window = Duration::ZERO;
                }
            }
            Wait::TimedOut => self.window = Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_micros(200);
    const SOON: Wait = Wait::Woken(Duration::from_micros(30));
    const LATE: Wait = Wait::Woken(Duration::from_millis(5));

    fn opened() -> BusyPoll {
        let mut p = BusyPoll::new(LIMIT);
        for _ in 0..6 {
            p.record(SOON);
        }
        assert_eq!(p.window(), LIMIT);
        p
    }

    #[test]
    fn the_window_starts_closed() {
        assert_eq!(BusyPoll::new(LIMIT).window(), Duration::ZERO);
    }

    #[test]
    fn an_event_soon_after_sleeping_opens_the_window_and_doubles_it_up_to_max() {
        let mut p = BusyPoll::new(LIMIT);
        let mut seen = vec![];
        for _ in 0..7 {
            p.record(SOON);
            seen.push(p.window().as_micros());
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 200, 200]);
    }

    #[test]
    fn an_event_caught_while_spinning_keeps_the_window() {
        let mut p = BusyPoll::new(LIMIT);
        p.record(SOON);
        p.record(SOON);
        p.record(Wait::Caught);
        assert_eq!(p.window(), Duration::from_micros(20));
    }

    #[test]
    fn a_late_event_halves_the_window_and_closes_it_below_start() {
        let mut p = opened();
        let mut seen = vec![];
        for _ in 0..6 {
            p.record(LATE);
            seen.push(p.window().as_micros());
        }
        assert_eq!(seen, [100, 50, 25, 12, 0, 0]);
    }

    #[test]
    fn a_wait_without_events_closes_the_window() {
        let mut p = opened();
        p.record(Wait::TimedOut);
        assert_eq!(p.window(), Duration::ZERO);
    }

    #[test]
    fn on_one_cpu_the_window_closes_and_stays_closed() {
        let mut p = opened();
        p.set_cpus(1);
        assert_eq!(p.window(), Duration::ZERO);
        p.record(SOON);
        assert_eq!(p.window(), Duration::ZERO);
        p.set_cpus(2);
        p.record(SOON);
        assert_eq!(p.window(), START);
    }

    #[test]
    fn while_the_engine_waits_for_a_cpu_the_window_closes_and_stays_closed() {
        let mut p = opened();
        let second = Duration::from_secs(1);
        p.set_run_delay(Duration::from_millis(40), second);
        assert_eq!(p.window(), LIMIT, "4% of the time: a CPU to spare");
        p.set_run_delay(Duration::from_millis(60), second);
        assert_eq!(p.window(), Duration::ZERO);
        p.record(SOON);
        assert_eq!(p.window(), Duration::ZERO);
        p.set_run_delay(Duration::ZERO, second);
        p.record(SOON);
        assert_eq!(p.window(), START);
    }

    #[test]
    fn without_most_of_one_cpu_idle_or_the_engines_the_window_closes_and_stays_closed() {
        let mut p = opened();
        let second = Duration::from_secs(1);
        p.set_spare_time(Duration::from_millis(950), second);
        assert_eq!(
            p.window(),
            LIMIT,
            "95% of a CPU idle or the engine's: spare"
        );
        p.set_spare_time(Duration::from_millis(500), second);
        assert_eq!(p.window(), Duration::ZERO);
        p.record(SOON);
        assert_eq!(p.window(), Duration::ZERO);
        p.set_spare_time(Duration::from_millis(1500), second);
        p.record(SOON);
        assert_eq!(p.window(), START);
    }

    #[test]
    fn busy_cpus_freed_leave_a_single_cpu_closed() {
        let mut p = opened();
        p.set_cpus(1);
        p.set_run_delay(Duration::from_millis(100), Duration::from_secs(1));
        p.set_run_delay(Duration::ZERO, Duration::from_secs(1));
        p.record(SOON);
        assert_eq!(p.window(), Duration::ZERO);
    }

    #[test]
    fn the_window_opening_is_the_moment_to_check_the_cpus() {
        let mut p = BusyPoll::new(LIMIT);
        assert!(p.would_open(SOON));
        assert!(!p.would_open(LATE) && !p.would_open(Wait::TimedOut));
        p.record(SOON);
        assert!(!p.would_open(SOON), "already open");
        assert!(!BusyPoll::new(Duration::ZERO).would_open(SOON));
    }

    #[test]
    fn max_is_capped() {
        let mut p = BusyPoll::new(Duration::from_secs(1));
        for _ in 0..20 {
            p.record(Wait::Woken(Duration::from_micros(1)));
        }
        assert_eq!(p.window(), super::MAX);
    }

    #[test]
    fn a_zero_max_never_spins() {
        let mut p = BusyPoll::new(Duration::ZERO);
        p.record(Wait::Woken(Duration::ZERO));
        p.record(SOON);
        assert_eq!(p.window(), Duration::ZERO);
    }

    #[test]
    fn a_max_below_start_is_the_window() {
        let mut p = BusyPoll::new(Duration::from_micros(4));
        p.record(Wait::Woken(Duration::from_micros(3)));
        assert_eq!(p.window(), Duration::from_micros(4));
    }
}
