//! A lossy Ethernet link in user space: frames between two ends, some dropped, held back
//! behind the next frame (reordered) or sent twice, chosen per frame by a seeded random
//! generator, so a failing run can be repeated exactly.
//!
//! How it works: one thread polls both ends. An end is a tap (one frame per read and
//! write) or a connected unix stream socket speaking QEMU's `-netdev stream` framing
//! (each frame preceded by its length, 4 bytes big-endian) — the way a guest reaches the
//! user-mode engine. Each direction has its own generator and its own impairment: for
//! each frame one draw decides drop, duplicate, reorder (the frame waits for the next one
//! in the same direction, or for a quiet moment of [`REORDER_FLUSH`]) or pass. Writes to a
//! stream end are queued and written as the socket takes them, so a slow reader on one
//! side never stops the other direction (a blocking write there could deadlock against a
//! peer that waits for us to read); a queue over [`QUEUE_MAX`] drops, like a full link.
//!
//! What holds: the link stops and its ends close when [`LossyLink`] is dropped; nothing
//! is altered inside a frame.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How long a frame held back for reordering waits when no other frame comes.
pub const REORDER_FLUSH: Duration = Duration::from_millis(5);
/// Bytes queued toward a stream end before further frames are dropped.
pub const QUEUE_MAX: usize = 4 << 20;

/// What happens to frames in one direction: each a probability per frame.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    pub drop: f64,
    pub reorder: f64,
    pub duplicate: f64,
}

impl Impairment {
    pub const NONE: Impairment = Impairment {
        drop: 0.0,
        reorder: 0.0,
        duplicate: 0.0,
    };

    pub fn drop(p: f64) -> Impairment {
        Impairment {
            drop: p,
            ..Impairment::NONE
        }
    }

    pub fn reorder(p: f64) -> Impairment {
        Impairment {
            reorder: p,
            ..Impairment::NONE
        }
    }
}

impl std::fmt::Display for Impairment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (name, p) in [
            ("loss", self.drop),
            ("reorder", self.reorder),
            ("duplicate", self.duplicate),
        ] {
            if p > 0.0 {
                parts.push(format!("{}% {name}", p * 100.0));
            }
        }
        if parts.is_empty() {
            f.write_str("no impairment")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// One end of the link.
pub enum End {
    /// A tap device's descriptor, opened without a virtio-net header.
    Tap(OwnedFd),
    /// A connected unix stream socket with QEMU's length-prefixed frames.
    Stream(UnixStream),
}

/// What the link did, per direction (`a → b`, `b → a`).
#[derive(Debug, Default)]
pub struct LinkStats {
    pub passed: [AtomicU64; 2],
    pub dropped: [AtomicU64; 2],
    pub reordered: [AtomicU64; 2],
    pub duplicated: [AtomicU64; 2],
}

impl LinkStats {
    pub fn summary(&self) -> String {
        let g = |a: &[AtomicU64; 2], i: usize| a[i].load(Ordering::Relaxed);
        (0..2)
            .map(|i| {
                format!(
                    "{}: {} passed, {} dropped, {} reordered, {} duplicated",
                    ["a→b", "b→a"][i],
                    g(&self.passed, i),
                    g(&self.dropped, i),
                    g(&self.reordered, i),
                    g(&self.duplicated, i)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A running link; stops when dropped.
pub struct LossyLink {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<LinkStats>,
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl LossyLink {
    /// Starts relaying between `a` and `b`; `a_to_b` and `b_to_a` impair each direction,
    /// with generators seeded from `seed`.
    pub fn start(
        a: End,
        b: End,
        a_to_b: Impairment,
        b_to_a: Impairment,
        seed: u64,
    ) -> std::io::Result<LossyLink> {
        let mut ends = [Port::new(a)?, Port::new(b)?];
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LinkStats::default());
        let dirs = [
            Direction::new(a_to_b, seed),
            Direction::new(b_to_a, seed ^ 0x9e37_79b9_7f4a_7c15),
        ];
        let (s, st) = (stop.clone(), stats.clone());
        let thread = std::thread::spawn(move || relay(&mut ends, dirs, &s, &st));
        Ok(LossyLink {
            stop,
            thread: Some(thread),
            stats,
        })
    }
}

/// xorshift64*: small, fast and good enough to pick what happens to a frame.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Direction {
    imp: Impairment,
    rng: Rng,
    /// A frame held back, to go after the next one.
    late: Option<Vec<u8>>,
}

impl Direction {
    fn new(imp: Impairment, seed: u64) -> Direction {
        Direction {
            imp,
            rng: Rng(seed | 1),
            late: None,
        }
    }
}

/// An end with its read buffer (streams) and write queue.
struct Port {
    end: End,
    rbuf: Vec<u8>,
    queue: VecDeque<u8>,
}

impl Port {
    fn new(end: End) -> std::io::Result<Port> {
        match &end {
            End::Stream(s) => s.set_nonblocking(true)?,
            End::Tap(fd) => {
                let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
                let flags =
                    nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
                nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
            }
        }
        Ok(Port {
            end,
            rbuf: Vec::with_capacity(1 << 17),
            queue: VecDeque::new(),
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.end {
            End::Tap(fd) => fd.as_fd(),
            End::Stream(s) => s.as_fd(),
        }
    }

    /// Reads what is there; calls `frame` for each whole frame. False when the end closed.
    fn read_frames(&mut self, mut frame: impl FnMut(&[u8])) -> bool {
        let mut buf = [0u8; 65536 + 64];
        loop {
            let n = match &mut self.end {
                End::Tap(fd) => nix::unistd::read(fd.as_fd(), &mut buf).map_err(|e| e.into()),
                End::Stream(s) => s.read(&mut buf),
            };
            match n {
                Ok(0) => return false,
                Ok(n) => match self.end {
                    End::Tap(_) => frame(&buf[..n]),
                    End::Stream(_) => {
                        self.rbuf.extend_from_slice(&buf[..n]);
                        let mut at = 0;
                        while self.rbuf.len() - at >= 4 {
                            let len = u32::from_be_bytes(
                                self.rbuf[at..at + 4].try_into().expect("4 bytes"),
                            ) as usize;
                            if self.rbuf.len() - at - 4 < len {
                                break;
                            }
                            frame(&self.rbuf[at + 4..at + 4 + len]);
                            at += 4 + len;
                        }
                        self.rbuf.drain(..at);
                    }
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Sends one frame (a tap drops it when its queue is full, as a link would).
    fn send(&mut self, frame: &[u8]) -> bool {
        match &self.end {
            End::Tap(fd) => {
                let _ = nix::unistd::write(fd.as_fd(), frame);
                true
            }
            End::Stream(_) => {
                if self.queue.len() + frame.len() > QUEUE_MAX {
                    return false;
                }
                self.queue
                    .extend((frame.len() as u32).to_be_bytes().iter().chain(frame));
                self.flush();
                true
            }
        }
    }

    /// Writes as much of the queue as the socket takes.
    fn flush(&mut self) {
        let End::Stream(s) = &mut self.end else {
            return;
        };
        while !self.queue.is_empty() {
            let (head, _) = self.queue.as_slices();
            match s.write(head) {
                Ok(n) => {
                    self.queue.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// Decides one frame's fate and sends what goes now.
fn forward(frame: &[u8], dir: &mut Direction, to: &mut Port, stats: &LinkStats, i: usize) {
    let r = dir.rng.next_f64();
    let imp = dir.imp;
    if r < imp.drop {
        stats.dropped[i].fetch_add(1, Ordering::Relaxed);
        return;
    }
    if r < imp.drop + imp.duplicate {
        stats.duplicated[i].fetch_add(1, Ordering::Relaxed);
        to.send(frame);
    } else if r < imp.drop + imp.duplicate + imp.reorder && dir.late.is_none() {
        stats.reordered[i].fetch_add(1, Ordering::Relaxed);
        dir.late = Some(frame.to_vec());
        return;
    }
    if to.send(frame) {
        stats.passed[i].fetch_add(1, Ordering::Relaxed);
    } else {
        stats.dropped[i].fetch_add(1, Ordering::Relaxed);
    }
    if let Some(late) = dir.late.take() {
        to.send(&late);
    }
}

fn relay(ends: &mut [Port; 2], mut dirs: [Direction; 2], stop: &AtomicBool, stats: &LinkStats) {
    let timeout = PollTimeout::from(REORDER_FLUSH.as_millis() as u16);
    while !stop.load(Ordering::Relaxed) {
        let mut events = [PollFlags::POLLIN; 2];
        for (e, port) in events.iter_mut().zip(ends.iter()) {
            if !port.queue.is_empty() {
                *e |= PollFlags::POLLOUT;
            }
        }
        let (ready, revents) = {
            let mut fds = [
                PollFd::new(ends[0].fd(), events[0]),
                PollFd::new(ends[1].fd(), events[1]),
            ];
            let ready = poll(&mut fds, timeout).unwrap_or(0);
            (ready, [fds[0].revents(), fds[1].revents()])
        };
        if ready == 0 {
            // A quiet moment: frames held back for reordering go now.
            for (i, dir) in dirs.iter_mut().enumerate() {
                if let Some(late) = dir.late.take() {
                    ends[1 - i].send(&late);
                }
            }
            continue;
        }
        for i in 0..2 {
            let Some(rev) = revents[i] else { continue };
            if rev.contains(PollFlags::POLLOUT) {
                ends[i].flush();
            }
            if rev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                let (from, to) = if i == 0 {
                    let (a, b) = ends.split_at_mut(1);
                    (&mut a[0], &mut b[0])
                } else {
                    let (a, b) = ends.split_at_mut(1);
                    (&mut b[0], &mut a[0])
                };
                let dir = &mut dirs[i];
                if !from.read_frames(|f| forward(f, dir, to, stats, i)) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(frames: &[&[u8]]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| {
                (f.len() as u32)
                    .to_be_bytes()
                    .into_iter()
                    .chain(f.iter().copied())
            })
            .collect()
    }

    fn read_frames(s: &mut UnixStream, n: usize) -> Vec<Vec<u8>> {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut out = Vec::new();
        for _ in 0..n {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut f).unwrap();
            out.push(f);
        }
        out
    }

    /// A link between two stream ends, `a → b` impaired as given; the far side of each.
    fn streams(a_to_b: Impairment, seed: u64) -> (LossyLink, UnixStream, UnixStream) {
        let (a, a_far) = UnixStream::pair().unwrap();
        let (b, b_far) = UnixStream::pair().unwrap();
        let link = LossyLink::start(
            End::Stream(a),
            End::Stream(b),
            a_to_b,
            Impairment::NONE,
            seed,
        )
        .unwrap();
        (link, a_far, b_far)
    }

    #[test]
    fn without_impairment_frames_cross_whole_and_in_order() {
        let (_link, mut a_far, mut b_far) = streams(Impairment::NONE, 1);
        a_far
            .write_all(&framed(&[b"one", b"two", b"three"]))
            .unwrap();
        assert_eq!(
            read_frames(&mut b_far, 3),
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        b_far.write_all(&framed(&[b"back"])).unwrap();
        assert_eq!(read_frames(&mut a_far, 1), vec![b"back".to_vec()]);
    }

    #[test]
    fn the_seeded_share_of_frames_is_dropped() {
        let (link, mut a_far, mut b_far) = streams(Impairment::drop(0.1), 7);
        let frames: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        a_far.write_all(&framed(&refs)).unwrap();
        let passed_at = std::time::Instant::now();
        while link.stats.passed[0].load(Ordering::Relaxed)
            + link.stats.dropped[0].load(Ordering::Relaxed)
            < 2000
        {
            assert!(
                passed_at.elapsed() < Duration::from_secs(5),
                "the link stalled"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let dropped = link.stats.dropped[0].load(Ordering::Relaxed);
        assert!(
            (140..=260).contains(&dropped),
            "{dropped} of 2000 dropped at 10%"
        );
        let got = read_frames(&mut b_far, 2000 - dropped as usize);
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "what passed kept its order"
        );
    }

    #[test]
    fn a_reordered_frame_arrives_after_the_next_one() {
        let (_link, mut a_far, mut b_far) = streams(Impairment::reorder(1.0), 3);
        a_far.write_all(&framed(&[b"first", b"second"])).unwrap();
        assert_eq!(
            read_frames(&mut b_far, 2),
            vec![b"second".to_vec(), b"first".to_vec()]
        );
    }
}
