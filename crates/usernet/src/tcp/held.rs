//! Guest data the socket has not taken yet: segments that came after a hole, and the
//! part of an in-order segment that `send()` refused.
//!
//! How it works: one ring of [`RING`] bytes per connection, mapped the first time
//! something must be held and unmapped once everything held has gone to the socket
//! (anonymous memory: only the pages data landed on cost memory). A byte
//! with sequence number `seq` lives at `seq % RING` (RING divides 2^32, so the position
//! stays right across sequence wrap-around); the ring covers `[rcv_nxt, rcv_nxt + RING)`,
//! and what lies beyond is not held (the guest sends it again). `ranges` says which
//! sequence ranges hold data: disjoint, not touching, in sequence order from `rcv_nxt`,
//! at most [`MAX_RANGES`] (a guest that scatters more tiny segments has the rest dropped).
//!
//! What holds: held bytes are never acknowledged to the guest (they are not in the
//! socket) but are reported as SACK blocks, and they are never dropped before the
//! socket took them, so a SACK is never reneged; each connection takes a ring from the
//! engine-wide [`HeldBudget`] and gives it back when the ring is freed, so a hostile
//! guest holds at most the budget, however many connections it opens.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::segment::{Payload, before};

/// Bytes one connection may hold (a power of two: positions are `seq % RING`): as much
/// as the window offered to the guest may reach (it is capped to this; Linux's largest
/// default send buffer, `tcp_wmem`, is 4 MiB), so whatever the guest sends in the window
/// can be held. Pages are touched only where data lands.
pub const RING: usize = 4 << 20;
/// Rings the whole engine may hold at once.
pub const BUDGET_RINGS: usize = 16;
/// Disjoint ranges one connection may hold.
pub const MAX_RANGES: usize = 64;

/// How many more rings the engine may allocate (shared by its connections).
#[derive(Debug, Clone)]
pub struct HeldBudget(Arc<AtomicUsize>);

impl Default for HeldBudget {
    fn default() -> Self {
        HeldBudget::new(BUDGET_RINGS)
    }
}

impl HeldBudget {
    pub fn new(rings: usize) -> HeldBudget {
        HeldBudget(Arc::new(AtomicUsize::new(rings)))
    }

    /// Rings left.
    pub fn left(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The held data of one connection.
pub struct Held {
    /// Untouched pages cost nothing: a hole costs the memory of what is held.
    ring: crate::sys::ZeroPages,
    /// `[start, end)` sequence ranges with data, in order from the next expected byte.
    ranges: Vec<(u32, u32)>,
    /// Start of the range the latest segment went into (the first SACK block, RFC 2018).
    latest: u32,
    /// The sequence number of the guest's FIN, when it came after a hole.
    pub fin: Option<u32>,
    budget: HeldBudget,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Held {
    /// A new ring, if the budget has one.
    pub fn new(budget: &HeldBudget) -> Option<Held> {
        if !budget.take() {
            return None;
        }
        let Ok(ring) = crate::sys::ZeroPages::new(RING) else {
            budget.0.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        Some(Held {
            ring,
            ranges: Vec::new(),
            latest: 0,
            fin: None,
            budget: budget.clone(),
        })
    }

    /// Whether what is held lies beyond a hole after `rcv_nxt` (not merely waiting for
    /// the socket to take it).
    pub fn after_hole(&self, rcv_nxt: u32) -> bool {
        self.ranges
            .first()
            .is_some_and(|&(start, _)| start != rcv_nxt)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && self.fin.is_none()
    }

    /// Holds `data` (sequence number `seq`) as far as it falls in the ring's window
    /// from `rcv_nxt`; returns whether any of it is held now.
    pub fn insert(&mut self, rcv_nxt: u32, seq: u32, data: &[u8]) -> bool {
        self.insert_payload(rcv_nxt, seq, Payload::bytes(data))
    }

    /// As [`Held::insert`], for a segment's payload (which may lie in guest memory).
    pub fn insert_payload(&mut self, rcv_nxt: u32, seq: u32, data: Payload<'_>) -> bool {
        self.forget_before(rcv_nxt);
        let (mut seq, mut data) = (seq, data);
        if before(seq, rcv_nxt) {
            let skip = rcv_nxt.wrapping_sub(seq) as usize;
            if skip >= data.len() {
                return false;
            }
            data = data.after(skip);
            seq = rcv_nxt;
        }
        let off = seq.wrapping_sub(rcv_nxt) as usize;
        if off >= RING || data.is_empty() {
            return false;
        }
        let len = data.len().min(RING - off);
        let end = seq.wrapping_add(len as u32);
        // Where the new range goes, and which ranges it touches or overlaps.
        let rel = |s: u32| s.wrapping_sub(rcv_nxt);
        let first = self.ranges.partition_point(|&(_, e)| rel(e) < rel(seq));
        let last = self.ranges.partition_point(|&(s, _)| rel(s) <= rel(end));
        if first == last && self.ranges.len() >= MAX_RANGES {
            return false;
        }
        let pos = seq as usize % RING;
        let n = len.min(RING - pos);
        data.copy_to(0, &mut self.ring[pos..pos + n]);
        data.copy_to(n, &mut self.ring[..len - n]);
        let (mut start, mut stop) = (seq, end);
        if first < last {
            if before(self.ranges[first].0, start) {
                start = self.ranges[first].0;
            }
            if before(stop, self.ranges[last - 1].1) {
                stop = self.ranges[last - 1].1;
            }
        }
        self.ranges.splice(first..last, [(start, stop)]);
        self.latest = start;
        true
    }

    /// The held bytes that start at `rcv_nxt`, as one or two slices (the ring wraps),
    /// after forgetting whatever lies before `rcv_nxt` (taken from a resent segment).
    pub fn ready(&mut self, rcv_nxt: u32) -> (&[u8], &[u8]) {
        self.forget_before(rcv_nxt);
        match self.ranges.first() {
            Some(&(s, e)) if s == rcv_nxt => {
                let len = e.wrapping_sub(s) as usize;
                let pos = s as usize % RING;
                let n = len.min(RING - pos);
                (&self.ring[pos..pos + n], &self.ring[..len - n])
            }
            _ => (&[], &[]),
        }
    }

    /// Forgets the bytes before `rcv_nxt` (the socket took them).
    pub fn forget_before(&mut self, rcv_nxt: u32) {
        let gone = self
            .ranges
            .iter()
            .take_while(|&&(_, e)| !before(rcv_nxt, e))
            .count();
        self.ranges.drain(..gone);
        if let Some(r) = self.ranges.first_mut()
            && before(r.0, rcv_nxt)
        {
            r.0 = rcv_nxt;
        }
    }

    /// The SACK blocks: the range the latest segment went into first, then the
    /// others in sequence order.
    pub fn sack_blocks(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let latest = self.ranges.iter().copied().find(|r| r.0 == self.latest);
        latest.into_iter().chain(
            self.ranges
                .iter()
                .copied()
                .filter(move |r| Some(*r) != latest),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> Held {
        Held::new(&HeldBudget::new(1)).unwrap()
    }

    fn ready(h: &mut Held, rcv_nxt: u32) -> Vec<u8> {
        let (a, b) = h.ready(rcv_nxt);
        [a, b].concat()
    }

    #[test]
    fn a_segment_partly_in_guest_memory_is_held_whole_across_the_ring_end() {
        let mut h = held();
        let mut rest = b"-memory".to_vec();
        let mut tail = crate::sys::GuestIov::default();
        tail.push(&vm_memory::VolatileSlice::from(&mut rest[..]))
            .unwrap();
        let data = Payload::bytes(b"guest").with_tail(Some(&tail));
        let start = RING as u32 - 4; // wraps in the ring
        assert!(h.insert_payload(start - 1, start, data));
        assert_eq!(ready(&mut h, start), b"guest-memory");
    }

    #[test]
    fn data_after_a_hole_is_ready_once_the_hole_is_filled() {
        let mut h = held();
        assert!(h.insert(100, 110, b"world"));
        assert!(ready(&mut h, 100).is_empty(), "the hole [100, 110) is open");
        assert_eq!(ready(&mut h, 110), b"world");
    }

    #[test]
    fn adjacent_and_overlapping_segments_merge_into_one_range() {
        let mut h = held();
        h.insert(0, 10, b"bbbbb");
        h.insert(0, 20, b"ddddd");
        h.insert(0, 15, b"ccccc");
        h.insert(0, 12, b"xxxxxxxx"); // overlaps held bytes: a resend
        assert_eq!(h.ranges, vec![(10, 25)]);
        assert_eq!(ready(&mut h, 10).len(), 15);
    }

    #[test]
    fn sack_blocks_name_the_latest_range_first() {
        let mut h = held();
        h.insert(0, 100, b"a");
        h.insert(0, 300, b"c");
        h.insert(0, 200, b"b");
        let blocks: Vec<_> = h.sack_blocks().collect();
        assert_eq!(blocks, vec![(200, 201), (100, 101), (300, 301)]);
        assert_eq!(h.sack_blocks().count(), 3);
    }

    #[test]
    fn bytes_beyond_the_ring_are_not_held() {
        let mut h = held();
        assert!(!h.insert(0, RING as u32, b"far"));
        assert!(h.insert(0, RING as u32 - 2, b"edge"));
        assert_eq!(h.ranges, vec![(RING as u32 - 2, RING as u32)]);
    }

    #[test]
    fn a_range_across_sequence_wrap_around_reads_back_whole() {
        let mut h = held();
        let start = u32::MAX - 2;
        h.insert(start - 10, start, b"abcdef");
        assert_eq!(h.ranges, vec![(start, 3)]);
        assert_eq!(ready(&mut h, start), b"abcdef");
    }

    #[test]
    fn what_the_socket_took_is_forgotten() {
        let mut h = held();
        h.insert(0, 10, b"0123456789");
        h.forget_before(14);
        assert_eq!(ready(&mut h, 14), b"456789");
        h.forget_before(20);
        assert!(h.is_empty());
    }

    #[test]
    fn past_the_range_limit_new_ranges_are_refused_but_old_ones_grow() {
        let mut h = held();
        for i in 0..MAX_RANGES as u32 {
            assert!(h.insert(0, 10 + i * 10, b"x"));
        }
        assert!(!h.insert(0, 5000, b"y"), "a new range beyond the limit");
        assert!(h.insert(0, 11, b"y"), "growing a held range");
    }

    #[test]
    fn the_budget_bounds_the_rings_and_a_freed_ring_returns() {
        let budget = HeldBudget::new(1);
        let first = Held::new(&budget).unwrap();
        assert!(Held::new(&budget).is_none());
        drop(first);
        assert!(Held::new(&budget).is_some());
    }
}
