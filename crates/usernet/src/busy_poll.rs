//! Adaptive busy polling: how long the event loop looks for events without sleeping.
//!
//! Why: a request and its reply cross the engine twice, and each crossing wakes a
//! sleeping thread. On a virtual machine (most Kubernetes nodes) waking a thread whose
//! CPU is halted costs an inter-processor interrupt and a VM exit and entry, tens of
//! microseconds — more than the engine's own work per packet. A loop that keeps looking
//! (`epoll_wait` with no timeout, yielding the CPU between looks) for a short while after
//! an event catches the next one without being woken.
//!
//! How it works (the policy of Linux's `haltpoll` cpuidle governor, applied to one
//! thread): the loop spins for [`BusyPoll::window`] before it blocks. After each wait,
//! [`BusyPoll::record`] adjusts the window from how long the wait took:
//! - an event came while spinning: the window is right, keep it;
//! - the loop blocked, and the event came within `max`: a longer spin would have caught
//!   it, so the window doubles (from [`START`]), up to `max`;
//! - the wait took longer than `max` (the traffic paused): spinning was wasted, so the
//!   window halves, and below [`START`] it closes.
//!
//! What holds: the window never exceeds `max`; with `max` zero it is always zero (the
//! loop only blocks); an idle engine stops spinning after a few waits (it wastes at
//! most about `2 × max` in all); while request/response traffic keeps coming within
//! `max`, the engine keeps one CPU busy (the price, reported by the benchmark).

use std::time::Duration;

/// The first window after a wait that a spin would have caught.
pub const START: Duration = Duration::from_micros(10);

/// The window policy (pure; the event loop in `run.rs` does the spinning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    max: Duration,
    window: Duration,
}

impl BusyPoll {
    /// A policy whose window grows up to `max` (zero turns busy polling off).
    pub fn new(max: Duration) -> Self {
        Self {
            max,
            window: Duration::ZERO,
        }
    }

    /// How long to look for events before blocking.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Adjusts the window after one wait: `caught` is whether an event came while
    /// spinning, `waited` how long the wait took in all (spin and block).
    pub fn record(&mut self, caught: bool, waited: Duration) {
        if caught {
            return;
        }
        if waited <= self.max {
            self.window = (self.window * 2).max(START).min(self.max);
        } else {
            self.window /= 2;
            if self.window < START {
                self.window = Duration::ZERO;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(200);
    const SOON: Duration = Duration::from_micros(30);
    const PAUSE: Duration = Duration::from_millis(20);

    #[test]
    fn the_window_starts_closed() {
        assert_eq!(BusyPoll::new(MAX).window(), Duration::ZERO);
    }

    #[test]
    fn an_event_soon_after_blocking_opens_the_window_and_doubles_it_up_to_max() {
        let mut p = BusyPoll::new(MAX);
        let mut seen = vec![];
        for _ in 0..7 {
            p.record(false, SOON);
            seen.push(p.window().as_micros());
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 200, 200]);
    }

    #[test]
    fn an_event_caught_while_spinning_keeps_the_window() {
        let mut p = BusyPoll::new(MAX);
        p.record(false, SOON);
        p.record(false, SOON);
        p.record(true, SOON);
        assert_eq!(p.window(), Duration::from_micros(20));
    }

    #[test]
    fn a_pause_halves_the_window_and_closes_it_below_start() {
        let mut p = BusyPoll::new(MAX);
        for _ in 0..6 {
            p.record(false, SOON);
        }
        let mut seen = vec![];
        for _ in 0..6 {
            p.record(false, PAUSE);
            seen.push(p.window().as_micros());
        }
        assert_eq!(seen, [100, 50, 25, 12, 0, 0]);
    }

    #[test]
    fn a_zero_max_never_spins() {
        let mut p = BusyPoll::new(Duration::ZERO);
        p.record(false, Duration::ZERO);
        p.record(false, SOON);
        assert_eq!(p.window(), Duration::ZERO);
    }

    #[test]
    fn a_max_below_start_is_the_window() {
        let mut p = BusyPoll::new(Duration::from_micros(4));
        p.record(false, Duration::from_micros(3));
        assert_eq!(p.window(), Duration::from_micros(4));
    }
}
