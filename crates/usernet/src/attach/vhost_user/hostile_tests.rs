//! A guest that breaks every rule of the split virtqueue, against a [`Device`] set up as
//! QEMU does it (`SET_FEATURES`, `SET_MEM_TABLE` with a memfd, `SET_VRING_*`). The test
//! plays the guest: it writes the rings and buffers into the same memfd through its own
//! mapping. Whatever the guest writes, the device does not panic, touches nothing outside
//! the guest's regions (the memfd's pages outside the table are checked untouched at the
//! end of every test) and stops a queue it cannot use, counting it once.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::memfd::{MFdFlags, memfd_create};
use vhost::vhost_user::VhostUserBackendReqHandlerMut;
use vhost::vhost_user::message::{VhostUserMemoryRegion, VhostUserVringAddrFlags};
use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use virtio_bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};

use super::device::{
    Device, DeviceCounters, FEATURES, HDR_LEN, MAX_FRAME, MAX_QUEUES, Pop, RX, SPLIT_AT, TX,
};
use crate::sys::{GuestIov, copy_from_guest};

const PAGE: u64 = 4096;
const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const WRITE: u16 = VRING_DESC_F_WRITE as u16;
const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;
const MRG_RXBUF: u64 = 1 << VIRTIO_NET_F_MRG_RXBUF;
const EVENT_IDX: u64 = 1 << VIRTIO_RING_F_EVENT_IDX;

/// A region of guest memory: where the guest has it, its size, where it lies in the memfd
/// and where QEMU has it mapped (what `SET_VRING_ADDR` speaks in).
#[derive(Clone, Copy)]
struct Region {
    gpa: u64,
    size: u64,
    offset: u64,
    user: u64,
}

impl Region {
    fn end(&self) -> u64 {
        self.gpa + self.size
    }
}

/// 1 MiB at 1 GiB, with the rings and buffers; 256 KiB right after it in the guest's
/// addresses (not in QEMU's). In the memfd a guard page comes before, between and after.
const A: Region = Region {
    gpa: 0x4000_0000,
    size: 0x10_0000,
    offset: PAGE,
    user: 0x7f00_0000_0000,
};
const B: Region = Region {
    gpa: 0x4010_0000,
    size: 0x4_0000,
    offset: PAGE + 0x10_0000 + PAGE,
    user: 0x7f80_0000_0000,
};
/// Low memory, where rings left at their defaults (address 0) would be.
const LOW: Region = Region {
    gpa: 0,
    size: 0x10_0000,
    offset: PAGE,
    user: 0x7f00_0000_0000,
};
const FILE_LEN: u64 = B.offset + B.size + PAGE;
/// What the memfd holds outside the regions of the table, checked at the end.
const GUARD: u8 = 0xa5;
/// In no region of the default table.
const NOWHERE: u64 = 0x1000;

/// A queue's rings, in guest addresses.
#[derive(Clone, Copy)]
struct Rings {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
}

/// Queue pairs the test guest can start (multiqueue): queues `RX`, `TX`, then `RX2`,
/// `TX2`.
const PAIRS: usize = 2;
const RX2: usize = 2;
const TX2: usize = 3;

struct Setup {
    features: u64,
    size: u16,
    regions: Vec<Region>,
    pairs: usize,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            features: FEATURES,
            size: 256,
            regions: vec![A],
            pairs: 1,
        }
    }
}

impl Setup {
    fn features(self, features: u64) -> Setup {
        Setup { features, ..self }
    }

    fn size(self, size: u16) -> Setup {
        Setup { size, ..self }
    }

    fn pairs(self, pairs: usize) -> Setup {
        assert!((1..=PAIRS).contains(&pairs));
        Setup { pairs, ..self }
    }

    fn regions(self, regions: &[Region]) -> Setup {
        Setup {
            regions: regions.to_vec(),
            ..self
        }
    }

    /// The features and the memory table, as QEMU sends them before any queue.
    fn bare(self) -> Guest {
        let fd: OwnedFd = memfd_create("guest-ram", MFdFlags::MFD_CLOEXEC).unwrap();
        let file = File::from(fd);
        file.set_len(FILE_LEN).unwrap();
        let view = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            FILE_LEN as usize,
            Some(FileOffset::new(file.try_clone().unwrap(), 0)),
        )])
        .unwrap();
        let base = self.regions[0].gpa;
        let mut g = Guest {
            dev: Device::new(),
            view,
            file,
            regions: self.regions,
            rings: [0, 0x8000, 0x1_0000, 0x1_8000].map(|at| Rings {
                size: self.size,
                desc: base + at,
                avail: base + at + 0x4000,
                used: base + at + 0x5000,
            }),
            avail: [0; PAIRS * 2],
            free: [0; PAIRS * 2],
            heap: base + 0x2_0000,
            calls: std::array::from_fn(|_| eventfd()),
        };
        g.fill_guard();
        let d = &mut g.dev;
        d.set_owner().unwrap();
        assert_eq!(d.get_features().unwrap(), FEATURES);
        d.set_features(self.features).unwrap();
        let protocol = d.get_protocol_features().unwrap();
        d.set_protocol_features(protocol.bits()).unwrap();
        g.set_mem_table(&g.regions.clone()).unwrap();
        g
    }

    /// And the queues of every pair started on their rings.
    fn boot(self) -> Guest {
        let pairs = self.pairs;
        let mut g = self.bare();
        for q in 0..2 * pairs {
            g.start(q);
            assert!(g.dev.running(q), "queue {q} runs");
        }
        g
    }
}

fn eventfd() -> File {
    let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC);
    File::from(OwnedFd::from(fd.unwrap()))
}

/// The guest, its memory and the device that serves it.
struct Guest {
    dev: Device,
    /// The whole memfd, file offsets as addresses.
    view: GuestMemoryMmap,
    file: File,
    regions: Vec<Region>,
    rings: [Rings; PAIRS * 2],
    /// Per queue: the guest's next avail index and next free descriptor.
    avail: [u16; PAIRS * 2],
    free: [u16; PAIRS * 2],
    /// Where the next buffer goes (16-byte aligned).
    heap: u64,
    /// The call eventfds, the guest's side.
    calls: [File; PAIRS * 2],
}

impl Drop for Guest {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_guard_untouched();
        }
    }
}

impl Guest {
    fn new() -> Guest {
        Setup::default().boot()
    }

    fn fill_guard(&self) {
        let mut at = 0;
        for r in self.sorted_regions() {
            let n = (r.offset - at) as usize;
            self.view
                .write_slice(&vec![GUARD; n], GuestAddress(at))
                .unwrap();
            at = r.offset + r.size;
        }
        let n = (FILE_LEN - at) as usize;
        self.view
            .write_slice(&vec![GUARD; n], GuestAddress(at))
            .unwrap();
    }

    /// Nothing outside the table's regions was written.
    fn assert_guard_untouched(&self) {
        let mut at = 0;
        for r in self.sorted_regions().into_iter().chain([Region {
            gpa: 0,
            size: 0,
            offset: FILE_LEN,
            user: 0,
        }]) {
            let mut got = vec![0; (r.offset - at) as usize];
            self.view.read_slice(&mut got, GuestAddress(at)).unwrap();
            let bad = got.iter().position(|&b| b != GUARD);
            assert_eq!(
                bad, None,
                "memfd offset {at:#x}+ written, outside the regions"
            );
            at = r.offset + r.size;
        }
    }

    fn sorted_regions(&self) -> Vec<Region> {
        let mut r = self.regions.clone();
        r.sort_by_key(|r| r.offset);
        r.dedup_by_key(|r| r.offset);
        r
    }

    fn set_mem_table(&mut self, regions: &[Region]) -> vhost::vhost_user::Result<()> {
        let table: Vec<_> = regions
            .iter()
            .map(|r| VhostUserMemoryRegion::new(r.gpa, r.size, r.user, r.offset))
            .collect();
        let files = regions.iter().map(|_| self.file.try_clone().unwrap());
        self.dev
            .set_mem_table(&table, files.collect(), None)
            .map(|_| ())
    }

    /// QEMU's address of guest address `gpa`.
    fn user(&self, gpa: u64) -> u64 {
        let r = self.region(gpa);
        r.user + (gpa - r.gpa)
    }

    fn region(&self, gpa: u64) -> Region {
        *self
            .regions
            .iter()
            .find(|r| (r.gpa..r.end()).contains(&gpa))
            .unwrap_or_else(|| panic!("{gpa:#x} is in no region"))
    }

    /// Queue `q` started as QEMU does it: size, base, rings, call, kick, enable.
    fn start(&mut self, q: usize) {
        let r = self.rings[q];
        let (desc, used, avail) = (self.user(r.desc), self.user(r.used), self.user(r.avail));
        let call = self.calls[q].try_clone().unwrap();
        let d = &mut self.dev;
        let i = q as u32;
        d.set_vring_num(i, r.size.into()).unwrap();
        d.set_vring_base(i, 0).unwrap();
        d.set_vring_addr(i, flags(), desc, used, avail, 0).unwrap();
        d.set_vring_call(q as u8, Some(call)).unwrap();
        d.set_vring_kick(q as u8, Some(eventfd())).unwrap();
        d.set_vring_enable(i, true).unwrap();
    }

    fn write(&self, gpa: u64, bytes: &[u8]) {
        let r = self.region(gpa);
        assert!(
            gpa + bytes.len() as u64 <= r.end(),
            "the test writes past a region"
        );
        let at = GuestAddress(r.offset + (gpa - r.gpa));
        self.view.write_slice(bytes, at).unwrap();
    }

    fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let r = self.region(gpa);
        let mut out = vec![0; len];
        let at = GuestAddress(r.offset + (gpa - r.gpa));
        self.view.read_slice(&mut out, at).unwrap();
        out
    }

    fn u16_at(&self, gpa: u64) -> u16 {
        let b = self.read(gpa, 2);
        u16::from_le_bytes([b[0], b[1]])
    }

    fn u32_at(&self, gpa: u64) -> u32 {
        let b = self.read(gpa, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// A buffer of `len` bytes in the guest's memory.
    fn alloc(&mut self, len: usize) -> u64 {
        let at = self.heap;
        self.heap = (at + len as u64 + 15) & !15;
        assert!(
            self.heap <= self.regions[0].end(),
            "the test's heap is full"
        );
        at
    }

    fn put(&mut self, bytes: &[u8]) -> u64 {
        let at = self.alloc(bytes.len());
        self.write(at, bytes);
        at
    }

    /// Descriptor `i` of queue `q`'s table.
    fn desc(&self, q: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.write(
            self.rings[q].desc + 16 * u64::from(i),
            &desc(addr, len, flags, next),
        );
    }

    /// Offers the chain at `head` to the device.
    fn offer(&mut self, q: usize, head: u16) {
        let r = self.rings[q];
        let slot = u64::from(self.avail[q] % r.size);
        self.write(r.avail + 4 + 2 * slot, &head.to_le_bytes());
        let idx = self.avail[q].wrapping_add(1);
        self.set_avail_idx(q, idx);
    }

    fn set_avail_idx(&mut self, q: usize, idx: u16) {
        self.avail[q] = idx;
        self.write(self.rings[q].avail + 2, &idx.to_le_bytes());
    }

    /// A chain of `descs` (address, length, flags; `NEXT` added) at the next free
    /// descriptors, offered; its head.
    fn chain(&mut self, q: usize, descs: &[(u64, u32, u16)]) -> u16 {
        let size = self.rings[q].size;
        let head = self.free[q];
        for (n, &(addr, len, flags)) in descs.iter().enumerate() {
            let i = self.free[q];
            let next = (i + 1) % size;
            let more = if n + 1 < descs.len() { NEXT } else { 0 };
            self.desc(q, i, addr, len, flags | more, next);
            self.free[q] = next;
        }
        self.offer(q, head);
        head
    }

    /// A frame the guest transmits, in one descriptor per segment.
    fn send(&mut self, segments: &[&[u8]]) -> u16 {
        let descs: Vec<_> = segments
            .iter()
            .map(|s| (self.put(s), s.len() as u32, 0))
            .collect();
        self.chain(TX, &descs)
    }

    /// Frame `f` as a driver with offloads hands it over: its virtio-net header and
    /// first `head` bytes in one descriptor, the rest in descriptors of `piece` bytes.
    fn send_in_pieces(&mut self, f: &[u8], head: usize, piece: usize) -> u16 {
        let h = [hdr(), f[..head].to_vec()].concat();
        let mut pieces: Vec<&[u8]> = vec![&h];
        pieces.extend(f[head..].chunks(piece));
        self.send(&pieces)
    }

    /// A frame with its virtio-net header, in one descriptor.
    fn send_frame(&mut self, frame: &[u8]) -> u16 {
        self.send(&[&[hdr(), frame.to_vec()].concat()])
    }

    /// A receive chain of buffers of these lengths; their addresses.
    fn post(&mut self, lens: &[u32]) -> Vec<u64> {
        let addrs: Vec<u64> = lens.iter().map(|&n| self.alloc(n as usize)).collect();
        let descs: Vec<_> = addrs
            .iter()
            .zip(lens)
            .map(|(&a, &n)| (a, n, WRITE))
            .collect();
        self.chain(RX, &descs);
        addrs
    }

    /// The next frame the device takes from the transmit queue, as the engine takes
    /// them from a guest with offloads: past its headers it may stay in guest memory
    /// (copied out here), its chain given back after.
    fn pop(&mut self) -> Option<Vec<u8>> {
        let (frame, _) = self.pop_split()?;
        Some(frame)
    }

    /// As [`Self::pop`]: the frame and how many of its bytes stayed in guest memory,
    /// checked to be the guest's still (not in the used ring) until released.
    fn pop_split(&mut self) -> Option<(Vec<u8>, usize)> {
        let mut buf = vec![0; MAX_FRAME];
        let mem = self.dev.memory()?;
        let mut tail = GuestIov::default();
        let used = self.used_idx(TX);
        let got = match self.dev.pop_split(&mut buf, &mem, &mut tail) {
            Pop::Frame(n) => Some((buf[..n].to_vec(), 0)),
            Pop::Split(n) => {
                let mut frame = buf[..n].to_vec();
                frame.resize(n + tail.len(), 0);
                assert_eq!(copy_from_guest(&tail, 0, &mut frame[n..]), tail.len());
                assert_eq!(
                    self.used_idx(TX),
                    used,
                    "a split frame's chain went back early"
                );
                Some((frame, tail.len()))
            }
            Pop::Empty => None,
        };
        self.dev.release_tx();
        got
    }

    /// The next frame, copied whole (a guest without offloads).
    fn pop_copied(&mut self) -> Option<Vec<u8>> {
        let mut buf = vec![0; MAX_FRAME];
        match self.dev.pop_frame(&mut buf) {
            Pop::Frame(n) => Some(buf[..n].to_vec()),
            Pop::Split(_) => panic!("pop_frame split a frame"),
            Pop::Empty => None,
        }
    }

    /// `payload` to the guest, after a virtio-net header.
    fn push(&mut self, payload: &[u8]) -> bool {
        let mut frame = [hdr(), payload.to_vec()].concat();
        self.dev.push_frame(&mut frame)
    }

    fn used_idx(&self, q: usize) -> u16 {
        self.u16_at(self.rings[q].used + 2)
    }

    /// Used entry `i` of queue `q`: the chain's head and the length written.
    fn used(&self, q: usize, i: u16) -> (u32, u32) {
        let at = self.rings[q].used + 4 + 8 * u64::from(i);
        (self.u32_at(at), self.u32_at(at + 4))
    }

    /// `used_event` (the guest: signal me once this entry is used).
    fn set_used_event(&self, q: usize, idx: u16) {
        let r = self.rings[q];
        self.write(r.avail + 4 + 2 * u64::from(r.size), &idx.to_le_bytes());
    }

    /// `avail_event` (the device: kick me once this entry is offered).
    fn avail_event(&self, q: usize) -> u16 {
        let r = self.rings[q];
        self.u16_at(r.used + 4 + 8 * u64::from(r.size))
    }

    /// Signals on queue `q`'s call eventfd since the last look.
    fn calls(&mut self, q: usize) -> u64 {
        let mut v = [0u8; 8];
        match self.calls[q].read_exact(&mut v) {
            Ok(()) => u64::from_ne_bytes(v),
            Err(_) => 0,
        }
    }

    fn counters(&self) -> DeviceCounters {
        self.dev.counters()
    }
}

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d[14..].copy_from_slice(&next.to_le_bytes());
    d
}

/// An indirect table of these descriptors (address, length, flags, next).
fn table(descs: &[(u64, u32, u16, u16)]) -> Vec<u8> {
    descs
        .iter()
        .flat_map(|&(a, n, f, next)| desc(a, n, f, next))
        .collect()
}

/// A virtio-net header asking for nothing.
fn hdr() -> Vec<u8> {
    vec![0; HDR_LEN]
}

/// A frame of `len` bytes, no two alike in their first bytes.
fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + len) as u8).collect()
}

/// The counters of a device that started (the receive queue counts the start).
fn started() -> DeviceCounters {
    DeviceCounters {
        starts: 1,
        ..DeviceCounters::default()
    }
}

/// Per-queue frame counts: `n` on queue `q`.
fn on(q: usize, n: u64) -> [u64; MAX_QUEUES] {
    let mut frames = [0; MAX_QUEUES];
    frames[q] = n;
    frames
}

/// The queue stopped and counted once; the other one runs on.
fn assert_stopped(g: &Guest, q: usize) {
    assert!(!g.dev.running(q), "queue {q} still runs");
    assert!(g.dev.running(1 - q), "the other queue stopped too");
    assert_eq!(g.counters().queue_errors, 1);
}

// The guest transmits: well-formed chains.

#[test]
fn a_frame_split_over_descriptors_with_the_header_in_its_own_is_reassembled() {
    let mut g = Guest::new();
    let f = frame(100);
    let head = g.send(&[&hdr(), &f[..20], &f[20..]]);
    assert_eq!(g.pop(), Some(f));
    assert_eq!(g.pop(), None);
    assert_eq!((g.used_idx(TX), g.used(TX, 0)), (1, (head.into(), 0)));
    let want = DeviceCounters {
        frames_from_guest: 1,
        largest_from_guest: 100,
        queue_frames: on(TX, 1),
        ..started()
    };
    assert_eq!(g.counters(), want);
}

#[test]
fn a_header_split_across_descriptors_is_skipped_whole() {
    let mut g = Guest::new();
    let f = frame(60);
    let h = hdr();
    g.send(&[&h[..5], &[&h[5..], &f[..10]].concat(), &f[10..]]);
    assert_eq!(g.pop(), Some(f));
}

#[test]
fn frames_come_in_the_order_the_guest_offers_them() {
    let mut g = Guest::new();
    for n in [60, 1514, 64] {
        g.send_frame(&frame(n));
    }
    for n in [60, 1514, 64] {
        assert_eq!(g.pop(), Some(frame(n)));
    }
    assert_eq!(g.pop(), None);
    assert_eq!(g.used_idx(TX), 3);
    assert_eq!(g.counters().largest_from_guest, 1514);
}

#[test]
fn a_64_kib_segment_from_the_guest_is_taken_whole() {
    let mut g = Guest::new();
    let f = frame(MAX_FRAME);
    g.send(&[&hdr(), &f[..32768], &f[32768..]]);
    assert_eq!(g.pop(), Some(f));
    assert_eq!(g.counters().largest_from_guest, MAX_FRAME as u64);
}

#[test]
fn a_segment_in_pages_stays_in_guest_memory_past_its_headers() {
    let mut g = Guest::new();
    let f = frame(66 + 15 * 4096);
    g.send_in_pieces(&f, 66, 4096);
    assert_eq!(g.pop_split(), Some((f.clone(), f.len() - SPLIT_AT)));
    assert_eq!(g.used_idx(TX), 1);
}

#[test]
fn a_chain_of_more_pieces_than_a_tail_holds_is_copied_whole() {
    let mut g = Guest::new();
    let f = frame(SPLIT_AT + 100 * 100);
    g.send_in_pieces(&f, SPLIT_AT, 100);
    assert_eq!(g.pop_split(), Some((f, 0)));
}

#[test]
fn a_frame_from_a_guest_without_offloads_is_copied_whole() {
    let mut g = Guest::new();
    let f = frame(66 + 4 * 4096);
    g.send_in_pieces(&f, 66, 4096);
    assert_eq!(g.pop_copied(), Some(f));
    assert_eq!(g.used_idx(TX), 1);
}

#[test]
fn the_chain_of_a_split_frame_goes_back_at_the_next_pop_if_not_before() {
    let mut g = Guest::new();
    let f = frame(SPLIT_AT + 4096);
    let h = [hdr(), f[..SPLIT_AT].to_vec()].concat();
    g.send(&[&h, &f[SPLIT_AT..]]);
    let mut buf = vec![0; MAX_FRAME];
    let mem = g.dev.memory().unwrap();
    let mut tail = GuestIov::default();
    assert!(matches!(g.dev.pop_split(&mut buf, &mem, &mut tail), Pop::Split(n) if n == SPLIT_AT));
    assert_eq!(g.used_idx(TX), 0);
    assert_eq!(g.pop(), None);
    assert_eq!(g.used_idx(TX), 1);
}

#[test]
fn zero_length_descriptors_add_nothing_to_a_frame() {
    let mut g = Guest::new();
    let f = frame(60);
    let (h, a, b) = (g.put(&hdr()), g.put(&f[..30]), g.put(&f[30..]));
    // Zero-length descriptors are not read, wherever they point.
    g.chain(
        TX,
        &[
            (h, 12, 0),
            (NOWHERE, 0, 0),
            (a, 30, 0),
            (a, 0, 0),
            (b, 30, 0),
            (NOWHERE, 0, 0),
        ],
    );
    assert_eq!(g.pop(), Some(f));
    assert!(g.dev.running(TX));
}

#[test]
fn an_indirect_table_is_read_like_a_chain() {
    let mut g = Guest::new();
    let f = frame(80);
    let (h, data) = (g.put(&hdr()), g.put(&f));
    let t = g.put(&table(&[(h, 12, NEXT, 1), (data, 80, 0, 0)]));
    g.chain(TX, &[(t, 32, INDIRECT)]);
    assert_eq!(g.pop(), Some(f));
}

#[test]
fn a_buffer_across_two_adjacent_regions_is_read_whole() {
    let mut g = Setup::default().regions(&[A, B]).boot();
    let f = frame(100);
    let at = A.end() - 40;
    g.write(at, &f[..40]);
    g.write(B.gpa, &f[40..]);
    let h = g.put(&hdr());
    g.chain(TX, &[(h, 12, 0), (at, 100, 0)]);
    assert_eq!(g.pop(), Some(f));
}

// The guest transmits what is no frame: dropped and counted, the queue goes on.

#[test]
fn a_chain_shorter_than_the_virtio_net_header_is_dropped_and_counted_and_the_queue_goes_on() {
    let mut g = Guest::new();
    let bad = g.send(&[&hdr()[..8]]);
    let good = g.send_frame(&frame(60));
    assert_eq!(g.pop(), Some(frame(60)));
    assert_eq!(g.used_idx(TX), 2);
    assert_eq!(g.used(TX, 0), (bad.into(), 0));
    assert_eq!(g.used(TX, 1), (good.into(), 0));
    let c = g.counters();
    assert_eq!(
        (c.bad_frames, c.frames_from_guest, c.queue_errors),
        (1, 1, 0)
    );
}

#[test]
fn a_frame_shorter_than_an_ethernet_header_is_dropped_and_counted() {
    let mut g = Guest::new();
    g.send_frame(&frame(13));
    g.send(&[&hdr()]);
    assert_eq!(g.pop(), None);
    assert_eq!(g.used_idx(TX), 2);
    assert_eq!(g.counters().bad_frames, 2);
    assert!(g.dev.running(TX));
}

#[test]
fn a_frame_longer_than_max_frame_is_dropped_and_counted_and_the_queue_goes_on() {
    let mut g = Guest::new();
    let big = frame(MAX_FRAME + 1);
    g.send(&[&hdr(), &big[..40000], &big[40000..]]);
    g.send_frame(&frame(60));
    assert_eq!(g.pop(), Some(frame(60)));
    assert_eq!(g.used_idx(TX), 2);
    let c = g.counters();
    assert_eq!(
        (c.bad_frames, c.frames_from_guest, c.queue_errors),
        (1, 1, 0)
    );
}

#[test]
fn a_descriptor_of_4_gib_runs_out_of_guest_memory_and_stops_the_transmit_queue() {
    let mut g = Guest::new();
    let at = g.put(&hdr());
    g.chain(TX, &[(at, 12, 0), (at, u32::MAX - 12, 0)]);
    g.send_frame(&frame(60));
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
    assert_eq!(g.used_idx(TX), 0);
}

// The guest transmits broken chains: the transmit queue stops, counted once.

#[test]
fn a_descriptor_outside_guest_memory_stops_the_transmit_queue_and_is_counted() {
    let mut g = Guest::new();
    let h = g.put(&hdr());
    g.chain(TX, &[(h, 12, 0), (NOWHERE, 60, 0)]);
    g.send_frame(&frame(60));
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
    assert_eq!(g.used_idx(TX), 0, "the broken chain is not given back");
    // Stopped: the good frame after it stays where it is; counted once.
    assert_eq!(g.pop(), None);
    assert_eq!(
        g.counters(),
        DeviceCounters {
            queue_errors: 1,
            ..started()
        }
    );
}

#[test]
fn a_descriptor_crossing_the_end_of_guest_memory_stops_the_transmit_queue() {
    let mut g = Guest::new();
    let h = g.put(&hdr());
    g.chain(TX, &[(h, 12, 0), (A.end() - 40, 100, 0)]);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

#[test]
fn a_descriptor_whose_address_wraps_around_stops_the_transmit_queue() {
    let mut g = Guest::new();
    g.chain(TX, &[(u64::MAX - 5, 100, 0)]);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

#[test]
fn a_chain_that_loops_stops_the_transmit_queue() {
    let mut g = Guest::new();
    let (h, data) = (g.put(&hdr()), g.put(&frame(60)));
    g.desc(TX, 0, h, 12, NEXT, 1);
    g.desc(TX, 1, data, 60, NEXT, 0);
    g.offer(TX, 0);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
    assert_eq!(g.used_idx(TX), 0);
}

#[test]
fn a_chain_longer_than_the_queue_stops_the_transmit_queue() {
    let mut g = Setup::default().size(8).boot();
    let data = g.put(&frame(100));
    // Eight descriptors, each the next's: a chain without an end.
    for i in 0..8 {
        g.desc(TX, i, data, 100, NEXT, (i + 1) % 8);
    }
    g.offer(TX, 3);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

#[test]
fn a_next_index_beyond_the_table_stops_the_transmit_queue() {
    let mut g = Guest::new();
    let (h, data) = (g.put(&hdr()), g.put(&frame(60)));
    g.desc(TX, 0, h, 12, NEXT, 1);
    g.desc(TX, 1, data, 60, NEXT, 256);
    g.offer(TX, 0);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

#[test]
fn a_head_index_beyond_the_queue_stops_the_transmit_queue() {
    let mut g = Guest::new();
    g.offer(TX, 256);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

#[test]
fn an_avail_index_jumping_past_the_queue_size_stops_the_transmit_queue() {
    let mut g = Guest::new();
    g.send_frame(&frame(60));
    g.set_avail_idx(TX, 257);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

#[test]
fn an_avail_index_of_exactly_the_queue_size_is_a_full_queue() {
    let mut g = Setup::default().size(4).boot();
    for _ in 0..4 {
        g.send_frame(&frame(60));
    }
    assert_eq!(g.avail[TX], 4);
    for _ in 0..4 {
        assert_eq!(g.pop(), Some(frame(60)));
    }
    assert_eq!(g.pop(), None);
    assert!(g.dev.running(TX));
}

#[test]
fn two_descriptors_of_more_than_4_gib_in_all_stop_the_transmit_queue() {
    let mut g = Guest::new();
    let at = g.put(&frame(100));
    g.chain(TX, &[(at, 100, 0), (at, u32::MAX, 0)]);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

#[test]
fn an_indirect_table_pointing_at_itself_stops_the_transmit_queue() {
    let mut g = Guest::new();
    let t = g.alloc(32);
    g.write(t, &table(&[(t, 32, INDIRECT, 0), (t, 32, INDIRECT, 0)]));
    g.chain(TX, &[(t, 32, INDIRECT)]);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

#[test]
fn an_indirect_table_inside_an_indirect_table_stops_the_transmit_queue() {
    let mut g = Guest::new();
    let f = [hdr(), frame(60)].concat();
    let data = g.put(&f);
    let inner = g.put(&table(&[(data, 72, 0, 0)]));
    // A whole frame, then a nested table: not the first 72 bytes as a frame.
    let outer = g.put(&table(&[(data, 72, NEXT, 1), (inner, 16, INDIRECT, 0)]));
    g.chain(TX, &[(outer, 32, INDIRECT)]);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

#[test]
fn an_indirect_table_of_no_descriptors_stops_the_transmit_queue() {
    let mut g = Guest::new();
    let t = g.alloc(16);
    g.chain(TX, &[(t, 0, INDIRECT)]);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

#[test]
fn an_indirect_table_of_a_length_not_a_multiple_of_16_stops_the_transmit_queue() {
    let mut g = Guest::new();
    let data = g.put(&[hdr(), frame(60)].concat());
    let t = g.put(&table(&[(data, 72, 0, 0), (data, 72, 0, 0)]));
    g.chain(TX, &[(t, 20, INDIRECT)]);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

#[test]
fn an_indirect_table_outside_guest_memory_stops_the_transmit_queue() {
    let mut g = Guest::new();
    g.chain(TX, &[(NOWHERE, 64, INDIRECT)]);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

#[test]
fn a_chain_in_an_indirect_table_that_loops_stops_the_transmit_queue() {
    let mut g = Guest::new();
    let data = g.put(&frame(100));
    let t = g.put(&table(&[(data, 12, NEXT, 1), (data, 100, NEXT, 0)]));
    g.chain(TX, &[(t, 32, INDIRECT)]);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
}

// To the guest: well-formed receive chains.

#[test]
fn a_frame_to_the_guest_fills_one_chain_of_several_descriptors() {
    let mut g = Guest::new();
    let bufs = g.post(&[100, 100, 1000]);
    let f = frame(500);
    assert!(g.dev.rx_room(HDR_LEN + 500));
    assert!(g.push(&f));
    assert_eq!((g.used_idx(RX), g.used(RX, 0)), (1, (0, 512)));
    let mut got = g.read(bufs[0], 100);
    got.extend(g.read(bufs[1], 100));
    got.extend(g.read(bufs[2], 312));
    let mut want = hdr();
    want[10] = 1; // num_buffers
    want.extend(&f);
    assert_eq!(got, want);
    let want = DeviceCounters {
        frames_to_guest: 1,
        largest_to_guest: 500,
        queue_frames: on(RX, 1),
        ..started()
    };
    assert_eq!(g.counters(), want);
}

#[test]
fn a_64_kib_frame_to_the_guest_spans_mergeable_buffers_with_num_buffers_set() {
    for (buf, chains, last) in [(1526u32, 43u16, 1520u32), (4096, 17, 76)] {
        let mut g = Guest::new();
        let bufs: Vec<u64> = (0..64).map(|_| g.post(&[buf])[0]).collect();
        let f = frame(MAX_FRAME);
        let len = HDR_LEN + MAX_FRAME;
        assert!(g.dev.rx_room(len));
        assert!(g.push(&f));
        assert_eq!(g.used_idx(RX), chains);
        let mut got = Vec::new();
        for i in 0..chains {
            let n = if i + 1 == chains { last } else { buf };
            assert_eq!(
                g.used(RX, i),
                (i.into(), n),
                "{buf}-byte buffers: entry {i}"
            );
            got.extend(g.read(bufs[usize::from(i)], n as usize));
        }
        assert_eq!(
            u16::from_le_bytes([got[10], got[11]]),
            chains,
            "num_buffers"
        );
        assert_eq!(&got[HDR_LEN..], &f[..], "{buf}-byte buffers");
        let want = DeviceCounters {
            frames_to_guest: 1,
            largest_to_guest: MAX_FRAME as u64,
            rx_merged_buffers: u64::from(chains) - 1,
            queue_frames: on(RX, 1),
            ..started()
        };
        assert_eq!(g.counters(), want);
    }
}

#[test]
fn a_sockets_data_peeked_into_the_placed_room_lands_across_the_mergeable_buffers() {
    let mut g = Guest::new();
    let bufs: Vec<u64> = (0..8).map(|_| g.post(&[1526])[0]).collect();
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let data: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    std::io::Write::write_all(&mut ours, &data).unwrap();
    let head = frame(54)[..54].to_vec();
    let at = HDR_LEN + head.len();
    let place = g
        .dev
        .place_rx(super::device::flow_hash(&head), at + data.len())
        .expect("room");
    let room = g
        .dev
        .payload_room(&place, at, data.len())
        .expect("in pieces");
    let fd = std::os::fd::AsFd::as_fd(&theirs);
    assert_eq!(crate::sys::peek_into(fd, &room).unwrap(), data.len());
    assert!(g.dev.write_placed(&place, HDR_LEN, &head));
    assert!(g.dev.commit_rx(&place, at + data.len()));
    let chains = place.chains_for(at + data.len());
    assert_eq!((chains, g.used_idx(RX)), (3, 3));
    let got: Vec<u8> = bufs[..3].iter().flat_map(|&b| g.read(b, 1526)).collect();
    assert_eq!(&got[HDR_LEN..at], &head[..]);
    assert_eq!(&got[at..at + data.len()], &data[..]);
    // A peek: the socket still holds it all.
    let mut left = vec![0; data.len() + 1];
    assert_eq!(
        std::io::Read::read(&mut &theirs, &mut left).unwrap(),
        data.len()
    );
}

#[test]
fn without_mergeable_buffers_a_frame_larger_than_the_first_chain_is_refused() {
    let mut g = Setup::default().features(FEATURES & !MRG_RXBUF).boot();
    g.post(&[1000]);
    let second = g.post(&[2000]);
    assert!(!g.dev.rx_room(HDR_LEN + 1500));
    assert!(!g.push(&frame(1500)));
    assert_eq!(g.used_idx(RX), 0);
    // What fits in the first chain goes there (the second stays offered).
    assert!(g.dev.rx_room(HDR_LEN + 988));
    assert!(g.push(&frame(988)));
    assert_eq!((g.used_idx(RX), g.used(RX, 0)), (1, (0, 1000)));
    assert!(g.dev.rx_room(HDR_LEN + 1500));
    assert!(g.push(&frame(1500)));
    assert_eq!(g.used(RX, 1), (1, 1512));
    assert_eq!(g.read(second[0] + 10, 2), [1, 0], "num_buffers");
    assert!(g.dev.running(RX));
    assert_eq!(g.counters().rx_merged_buffers, 0);
}

#[test]
fn a_frame_larger_than_every_offered_buffer_waits_for_more() {
    let mut g = Guest::new();
    g.post(&[1526]);
    g.post(&[1526]);
    assert!(!g.dev.rx_room(HDR_LEN + 4000));
    assert!(!g.push(&frame(4000)));
    assert_eq!(g.used_idx(RX), 0);
    // A kick asked for at the next buffer the guest adds, not at one it added already.
    assert_eq!(g.avail_event(RX), 2);
    g.post(&[1526]);
    assert!(g.dev.rx_room(HDR_LEN + 4000));
    assert!(g.push(&frame(4000)));
    assert_eq!(g.used_idx(RX), 3);
    assert!(g.dev.running(RX));
}

#[test]
fn no_receive_buffers_is_no_room_and_no_error() {
    let mut g = Guest::new();
    assert!(!g.dev.rx_room(HDR_LEN + 60));
    assert!(!g.push(&frame(60)));
    assert!(g.dev.running(RX));
    assert_eq!(g.counters(), started());
}

// To the guest: broken receive chains stop the receive queue.

#[test]
fn a_receive_buffer_outside_guest_memory_stops_the_receive_queue() {
    let mut g = Guest::new();
    g.chain(RX, &[(NOWHERE, 2048, WRITE)]);
    assert!(!g.dev.rx_room(HDR_LEN + 60));
    assert!(!g.push(&frame(60)));
    assert_stopped(&g, RX);
    assert_eq!(g.used_idx(RX), 0);
}

#[test]
fn a_receive_buffer_crossing_the_end_of_guest_memory_stops_the_receive_queue() {
    let mut g = Guest::new();
    // Room for 60 bytes would be inside; the buffer says 2048.
    g.chain(RX, &[(A.end() - 100, 2048, WRITE)]);
    assert!(!g.dev.rx_room(HDR_LEN + 60));
    assert!(!g.push(&frame(60)));
    assert_stopped(&g, RX);
}

#[test]
fn a_receive_buffer_of_4_gib_stops_the_receive_queue() {
    let mut g = Guest::new();
    let at = g.alloc(2048);
    g.chain(RX, &[(at, u32::MAX, WRITE)]);
    assert!(!g.push(&frame(60)));
    assert_stopped(&g, RX);
    assert_eq!(g.read(at, 16), [0; 16], "nothing written");
}

#[test]
fn a_receive_chain_that_loops_stops_the_receive_queue() {
    let mut g = Guest::new();
    let at = g.alloc(2048);
    g.desc(RX, 0, at, 2048, WRITE | NEXT, 1);
    g.desc(RX, 1, at, 2048, WRITE | NEXT, 0);
    g.offer(RX, 0);
    assert!(!g.dev.rx_room(HDR_LEN + 60));
    assert_stopped(&g, RX);
    assert_eq!(g.read(at, 16), [0; 16], "nothing written");
}

#[test]
fn a_receive_head_beyond_the_queue_stops_the_receive_queue() {
    let mut g = Guest::new();
    g.offer(RX, 4096);
    assert!(!g.dev.rx_room(HDR_LEN + 60));
    assert_stopped(&g, RX);
}

#[test]
fn an_avail_index_jumping_past_the_queue_size_stops_the_receive_queue() {
    let mut g = Guest::new();
    g.set_avail_idx(RX, 0x8000);
    assert!(!g.dev.rx_room(HDR_LEN + 60));
    assert!(!g.push(&frame(60)));
    assert_stopped(&g, RX);
}

#[test]
fn a_receive_chain_of_readable_descriptors_only_stops_the_receive_queue() {
    let mut g = Setup::default().features(FEATURES & !MRG_RXBUF).boot();
    let at = g.alloc(2048);
    g.chain(RX, &[(at, 2048, 0)]);
    assert!(!g.dev.rx_room(HDR_LEN + 60));
    assert!(!g.push(&frame(60)));
    assert!(!g.dev.running(RX));
    assert_eq!(g.counters().queue_errors, 1);
    assert_eq!(g.read(at, 16), [0; 16], "nothing written");
}

#[test]
fn a_mergeable_receive_chain_of_zero_length_writable_descriptors_stops_the_receive_queue() {
    let mut g = Setup::default().boot();
    let at = g.alloc(2048);
    g.chain(RX, &[(at, 2048, WRITE)]);
    g.chain(RX, &[(at, 0, WRITE), (at, 0, WRITE)]);
    assert!(!g.dev.rx_room(4096));
    assert!(!g.dev.running(RX));
    assert_eq!(g.counters().queue_errors, 1);
}

// Multiqueue: a queue the guest breaks stops alone; the other pair goes on.

#[test]
fn a_broken_chain_on_the_second_transmit_queue_stops_that_queue_only() {
    let mut g = Setup::default().pairs(2).boot();
    let h = g.put(&hdr());
    g.chain(TX2, &[(h, 12, 0), (NOWHERE, 60, 0)]);
    g.send_frame(&frame(60));
    assert_eq!(g.pop(), Some(frame(60)));
    assert_eq!(g.pop(), None);
    assert!(!g.dev.running(TX2));
    assert!(g.dev.running(TX) && g.dev.running(RX) && g.dev.running(RX2));
    assert_eq!(g.counters().queue_errors, 1);
}

#[test]
fn a_broken_buffer_on_the_second_receive_queue_leaves_the_frames_to_the_first() {
    let mut g = Setup::default().pairs(2).boot();
    g.chain(RX2, &[(NOWHERE, 2048, WRITE)]);
    let at = g.post(&[2048]);
    assert!(g.dev.rx_room(HDR_LEN + 60));
    assert!(!g.dev.running(RX2));
    assert!(g.dev.running(RX) && g.dev.running(TX) && g.dev.running(TX2));
    assert!(g.push(&frame(60)));
    assert_eq!(g.read(at[0] + HDR_LEN as u64, 60), frame(60));
    assert_eq!(g.used_idx(RX), 1);
    assert_eq!(g.counters().queue_errors, 1);
}

// Notifications.

#[test]
fn without_event_idx_the_guest_is_signalled_after_every_round_that_used_a_chain() {
    let mut g = Setup::default().features(FEATURES & !EVENT_IDX).boot();
    g.dev.notify(TX);
    assert_eq!(g.calls(TX), 0, "nothing used yet");
    g.send_frame(&frame(60));
    assert!(g.pop().is_some());
    g.dev.notify(TX);
    assert_eq!(g.calls(TX), 1);
    g.dev.notify(TX);
    assert_eq!(g.calls(TX), 0, "nothing used since");
    assert_eq!(g.counters().notifies, 1);
}

#[test]
fn with_event_idx_the_guest_is_signalled_once_its_used_event_is_passed() {
    let mut g = Guest::new();
    g.set_used_event(TX, 1);
    g.send_frame(&frame(60));
    g.send_frame(&frame(61));
    assert!(g.pop().is_some());
    g.dev.notify(TX);
    assert_eq!(g.calls(TX), 0, "entry 0 used; the guest waits for entry 1");
    assert!(g.pop().is_some());
    g.dev.notify(TX);
    assert_eq!(g.calls(TX), 1);
    assert_eq!(g.pop(), None);
    assert_eq!(g.avail_event(TX), 2, "a kick asked for at the next offer");
}

#[test]
fn a_queue_without_a_call_eventfd_is_not_signalled() {
    let mut g = Guest::new();
    g.dev.set_vring_call(TX as u8, None).unwrap();
    g.send_frame(&frame(60));
    assert!(g.pop().is_some());
    g.dev.notify(TX);
    assert_eq!(g.counters().notifies, 0);
}

/// A queue restarting (a pause, a migration taken back) gets its kick before its call
/// eventfd: a chain used in between is signalled once the call comes, not lost (with
/// event indices, a lost signal past the guest's used event would never be asked for
/// again, and the guest would wait for good).
#[test]
fn a_chain_used_before_the_call_eventfd_comes_is_signalled_when_it_comes() {
    let mut g = Guest::new();
    g.set_used_event(TX, 0);
    let call = g.calls[TX].try_clone().unwrap();
    g.dev.set_vring_call(TX as u8, None).unwrap();
    g.send_frame(&frame(60));
    assert!(g.pop().is_some());
    g.dev.notify(TX);
    assert_eq!(g.counters().notifies, 0, "no call eventfd yet");
    g.dev.set_vring_call(TX as u8, Some(call)).unwrap();
    g.dev.notify(TX);
    assert_eq!(g.calls(TX), 1, "the used chain is signalled");
}

// What QEMU sets up: refused when it points outside the guest, never a panic.

#[test]
fn set_vring_addr_outside_every_region_is_refused() {
    let mut g = Setup::default().bare();
    let r = g.rings[TX];
    let (desc, used, avail) = (g.user(r.desc), g.user(r.used), g.user(r.avail));
    let outside = [0, A.user - 16, A.user + A.size, B.user, u64::MAX - 1];
    let d = &mut g.dev;
    for bad in outside {
        assert!(d.set_vring_addr(1, flags(), bad, used, avail, 0).is_err());
        assert!(d.set_vring_addr(1, flags(), desc, bad, avail, 0).is_err());
        assert!(d.set_vring_addr(1, flags(), desc, used, bad, 0).is_err());
    }
    assert!(d.set_vring_addr(1, flags(), desc, used, avail, 0).is_ok());
}

#[test]
fn set_vring_addr_with_misaligned_rings_is_refused() {
    let mut g = Setup::default().bare();
    let r = g.rings[TX];
    let (desc, used, avail) = (g.user(r.desc), g.user(r.used), g.user(r.avail));
    let d = &mut g.dev;
    assert!(
        d.set_vring_addr(1, flags(), desc + 8, used, avail, 0)
            .is_err()
    );
    assert!(
        d.set_vring_addr(1, flags(), desc, used + 2, avail, 0)
            .is_err()
    );
    assert!(
        d.set_vring_addr(1, flags(), desc, used, avail + 1, 0)
            .is_err()
    );
}

#[test]
fn a_used_ring_running_past_the_end_of_guest_memory_keeps_the_queue_from_starting() {
    let mut g = Setup::default().bare();
    g.rings[TX].used = A.end() - 64;
    g.start(TX);
    assert!(!g.dev.running(TX));
    assert_eq!(g.counters().queue_errors, 1);
    g.send_frame(&frame(60));
    assert_eq!(g.pop(), None);
}

#[test]
fn a_descriptor_table_running_past_the_end_of_guest_memory_keeps_the_queue_from_starting() {
    let mut g = Setup::default().size(1024).bare();
    g.rings[RX].desc = A.end() - 1024 * 16 + 16;
    g.start(RX);
    assert!(!g.dev.running(RX));
    assert!(!g.dev.rx_room(HDR_LEN + 60));
    assert_eq!(
        g.counters(),
        DeviceCounters {
            queue_errors: 1,
            ..DeviceCounters::default()
        }
    );
}

#[test]
fn rings_not_set_before_the_kick_keep_the_queue_stopped_until_they_are() {
    // Low memory: the rings' default addresses (0) are inside it.
    let mut g = Setup::default().regions(&[LOW]).bare();
    g.dev.set_vring_num(1, 256).unwrap();
    g.dev.set_vring_kick(1, Some(eventfd())).unwrap();
    g.dev.set_vring_enable(1, true).unwrap();
    assert!(!g.dev.running(TX));
    assert_eq!(g.pop(), None);
    assert_eq!(g.counters().queue_errors, 1);
    // Set, and kicked again: it runs.
    g.start(TX);
    assert!(g.dev.running(TX));
    g.send_frame(&frame(60));
    assert_eq!(g.pop(), Some(frame(60)));
}

#[test]
fn a_queue_kicked_before_the_mem_table_does_not_run() {
    let mut g = Setup::default().bare();
    g.dev = Device::new();
    g.dev.set_features(FEATURES).unwrap();
    g.dev.set_vring_kick(1, Some(eventfd())).unwrap();
    g.dev.set_vring_enable(1, true).unwrap();
    assert!(!g.dev.running(TX));
    assert_eq!(g.pop(), None);
    assert!(!g.dev.rx_room(HDR_LEN + 60));
    g.dev.notify(TX);
    assert_eq!(g.counters().queue_errors, 1);
}

#[test]
fn set_vring_num_refuses_sizes_not_a_power_of_two_zero_or_above_1024() {
    let mut d = Device::new();
    for bad in [0, 3, 100, 1000, 2048, 65536, u32::MAX] {
        assert!(d.set_vring_num(0, bad).is_err(), "size {bad}");
    }
    for good in [1, 2, 256, 1024] {
        assert!(d.set_vring_num(0, good).is_ok(), "size {good}");
    }
}

#[test]
fn requests_for_a_queue_that_does_not_exist_are_refused() {
    let mut g = Setup::default().bare();
    let d = &mut g.dev;
    for q in [MAX_QUEUES as u32, 255, u32::MAX] {
        assert!(d.set_vring_num(q, 256).is_err());
        assert!(d.set_vring_base(q, 0).is_err());
        assert!(
            d.set_vring_addr(q, flags(), A.user, A.user, A.user, 0)
                .is_err()
        );
        assert!(d.set_vring_enable(q, true).is_err());
        assert!(d.get_vring_base(q).is_err());
    }
    for q in [MAX_QUEUES as u8, 255] {
        assert!(d.set_vring_kick(q, Some(eventfd())).is_err());
        assert!(d.set_vring_call(q, None).is_err());
        assert!(d.set_vring_err(q, None).is_err());
    }
    assert!(d.set_vring_base(0, 65536).is_err());
}

#[test]
fn a_mem_table_with_overlapping_regions_is_refused_and_the_old_one_stays() {
    let mut g = Guest::new();
    let overlapping = Region {
        gpa: A.gpa + 0x8_0000,
        ..B
    };
    assert!(g.set_mem_table(&[A, overlapping]).is_err());
    assert!(g.set_mem_table(&[A, A]).is_err());
    g.send_frame(&frame(60));
    assert_eq!(g.pop(), Some(frame(60)));
}

#[test]
fn a_mem_table_region_larger_than_its_file_is_refused() {
    let mut g = Guest::new();
    // Mapped, its pages past the file's end would fault at the first access.
    let past_end = Region {
        size: FILE_LEN,
        ..B
    };
    assert!(g.set_mem_table(&[A, past_end]).is_err());
    let wrapping = Region {
        offset: u64::MAX - 0xfff,
        ..B
    };
    assert!(g.set_mem_table(&[A, wrapping]).is_err());
    g.send_frame(&frame(60));
    assert_eq!(g.pop(), Some(frame(60)));
}

#[test]
fn a_mem_table_region_of_no_bytes_or_past_the_top_of_memory_is_refused() {
    let mut g = Guest::new();
    assert!(g.set_mem_table(&[Region { size: 0, ..B }]).is_err());
    let top = Region {
        gpa: u64::MAX - 0xfff,
        ..B
    };
    assert!(g.set_mem_table(&[top]).is_err());
    assert!(g.dev.running(TX));
}

#[test]
fn a_guest_reset_brings_a_stopped_queue_back() {
    let mut g = Guest::new();
    g.offer(TX, 999);
    assert_eq!(g.pop(), None);
    assert_stopped(&g, TX);
    // The driver resets: QEMU stops the queue and sets it up again.
    g.dev.get_vring_base(1).unwrap();
    g.avail[TX] = 0;
    g.free[TX] = 0;
    g.write(g.rings[TX].avail + 2, &[0, 0]);
    g.start(TX);
    g.send_frame(&frame(60));
    assert_eq!(g.pop(), Some(frame(60)));
    assert_eq!(g.counters().queue_errors, 1);
}

fn flags() -> VhostUserVringAddrFlags {
    VhostUserVringAddrFlags::empty()
}
