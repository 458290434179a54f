//! The vhost-user device as QEMU configures it: features, the guest's memory, the
//! virtqueues and their notifiers — and the two data-path operations on them.
//!
//! How it works: QEMU's requests arrive through `vhost`'s `BackendReqHandler` (the
//! protocol: framing, descriptors passed over the socket, replies), which calls the
//! [`VhostUserBackendReqHandlerMut`] methods of [`Device`] here. `SET_MEM_TABLE` maps
//! each region QEMU shares (`vm_memory`, shared mappings of its memfd); `SET_VRING_*`
//! give a queue its size, its rings (in QEMU's addresses, translated to the guest's
//! through the regions), its first index and its two eventfds; a queue runs once it has
//! its kick (and, with `PROTOCOL_FEATURES`, once enabled) and stops at `GET_VRING_BASE`.
//!
//! The data path (one thread; the event loop calls in): [`Device::pop_frame`] copies the
//! next chain the guest offers on the transmit queue into a buffer and gives it back at
//! once; [`Device::pop_split`] copies its first [`SPLIT_AT`] bytes and leaves the rest
//! as slices of guest memory, the chain kept from the guest until
//! [`Device::release_tx`] (at the latest before the next pop or QEMU's next request); [`Device::rx_room`] walks the receive queue's offered chains (then puts them
//! back) to tell whether a frame fits; [`Device::place_rx`] walks them once for a frame
//! and keeps where its bytes go (each writable descriptor a piece), [`Device::write_placed`]
//! and the kernel ([`Device::payload_room`]: a socket's data peeked straight into the
//! pieces) fill them, [`Device::commit_rx`] marks the chains used and the bytes dirty
//! for a migration's log; [`Device::push_frame`] is those three for a frame built
//! elsewhere (mergeable buffers: a frame takes as many chains as it needs); [`Device::notify`]
//! signals the guest when the queue's event index says it waits for it. Every guest
//! address goes through `vm_memory`'s checked accessors and every chain through
//! `virtio_queue`'s bounded walk (length, loops, nested indirect tables): a hostile
//! guest can make its own queue stop (counted in `queue_errors`), not make the engine
//! read or write outside its memory.

use std::fs::File;
use std::io;
use std::sync::Arc;

use vhost::VhostUserMemoryRegionBase;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    Error as VuError, GpuBackend, Result as VuResult, VhostUserBackendReqHandlerMut,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF,
    VIRTIO_NET_F_MTU,
};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionMmap,
};

use super::log::{DirtyLog, LogMap, RegionLog};
use crate::sys::GuestIov;
use vm_memory::bitmap::Bitmap;

/// The guest's memory as mapped here: every write through it (frames, used rings)
/// marks its pages in QEMU's dirty log once QEMU gave one (`SET_LOG_BASE`, migration).
pub type Memory = GuestMemoryMmap<DirtyLog>;

pub use crate::counters::DeviceCounters;

/// Up to four queue pairs (multiqueue): queue `2n` receives (to the guest), `2n + 1`
/// transmits (from it).
pub const MAX_QUEUES: usize = 8;
/// The first pair's queues: the guest is there when its driver started them.
pub const RX: usize = 0;
pub const TX: usize = 1;
/// The largest queue QEMU configures (`rx_queue_size`/`tx_queue_size` ≤ 1024).
const QUEUE_MAX: u16 = 1024;
/// `struct virtio_net_hdr_v1`: what precedes every frame (VERSION_1 is required).
pub const HDR_LEN: usize = 12;
/// The largest frame either way: a 64 KiB TCP segment with its headers.
pub const MAX_FRAME: usize = 65536 + 64;

const fn bit(b: u32) -> u64 {
    1 << b
}

/// What the device offers: virtio 1.0, mergeable receive buffers, event indices,
/// indirect tables, checksum and TCP segmentation offloads both ways, multiqueue, and
/// the MTU (QEMU's `host_mtu`: QEMU keeps the config space, but passes the bit only if
/// the back end offers it).
pub const FEATURES: u64 = bit(VIRTIO_F_VERSION_1)
    | bit(VIRTIO_NET_F_MRG_RXBUF)
    | bit(VIRTIO_NET_F_MQ)
    | bit(VIRTIO_NET_F_MTU)
    | bit(VIRTIO_RING_F_EVENT_IDX)
    | bit(VIRTIO_RING_F_INDIRECT_DESC)
    | bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | VhostUserVirtioFeatures::LOG_ALL.bits()
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

/// The features the engine needs to hand the guest unfinished TCP segments.
const GUEST_OFFLOADS: u64 =
    bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO6);

/// Protocol features: acknowledged requests, the queue count, and the dirty log in
/// shared memory (what QEMU requires to migrate a vhost-user device).
fn protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::LOG_SHMFD
        | VhostUserProtocolFeatures::DEVICE_STATE
}

/// A state transfer QEMU asked for (`SET_DEVICE_STATE_FD`): the engine's state goes
/// out through `file` (`save`) or comes in from it.
pub struct Transfer {
    pub save: bool,
    pub file: File,
}

/// One virtqueue and its notifiers.
pub struct Ring {
    queue: Queue,
    kick: Option<File>,
    call: Option<File>,
    /// `SET_VRING_ENABLE` (rings start disabled when `PROTOCOL_FEATURES` is acked).
    enabled: bool,
    /// Between its kick and `GET_VRING_BASE`.
    started: bool,
    /// A chain could not be read or written: no more service until the driver resets.
    broken: bool,
    /// The kick descriptor changed: the event loop registers it.
    kick_changed: bool,
    /// Used entries were added since the last notification check.
    used_added: bool,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            // 1024 is a power of two: cannot fail.
            queue: Queue::new(QUEUE_MAX).unwrap_or_else(|_| unreachable!()),
            kick: None,
            call: None,
            enabled: false,
            started: false,
            broken: false,
            kick_changed: false,
            used_added: false,
        }
    }

    /// The kick eventfd, for the event loop to register.
    pub fn kick(&self) -> Option<&File> {
        self.kick.as_ref()
    }
}

/// A region of the guest's memory as QEMU sees it: for ring addresses, given in QEMU's
/// own address space.
struct Mapping {
    user_addr: u64,
    size: u64,
    guest_addr: u64,
}

/// The device's state (see the module's theory of operation).
pub struct Device {
    acked: u64,
    features_set: bool,
    protocol: u64,
    mem: Option<Arc<Memory>>,
    mappings: Vec<Mapping>,
    rings: [Ring; MAX_QUEUES],
    /// A transfer asked for and not yet done; how the last one went (for
    /// `CHECK_DEVICE_STATE`).
    transfer: Option<Transfer>,
    transfer_ok: bool,
    /// The transmit queue looked at first next time (queues take turns).
    next_tx: usize,
    /// The chain of the last [`Pop::Split`], the guest's once released: `(queue, head)`.
    held_tx: Option<(usize, u16)>,
    /// A queue was given a nonzero start since the queues last stopped ([`Device::resumed`]).
    resumed: bool,
    counters: DeviceCounters,
}

/// What the transmit queue gave.
pub enum Pop {
    /// A frame of this many bytes is in the buffer.
    Frame(usize),
    /// A frame whose first this many bytes are in the buffer and the rest in the guest's
    /// memory ([`Device::pop_split`]); its chain stays the guest's until
    /// [`Device::release_tx`].
    Split(usize),
    Empty,
}

/// Bytes of a transmit chain copied before the rest may stay in the guest's memory
/// ([`Device::pop_split`]): the headers of any TCP segment (Ethernet, IPv4 with
/// options, TCP with options) fit.
pub const SPLIT_AT: usize = 14 + 60 + 60;

/// How a walk over a transmit chain ended.
enum Walk {
    /// `len` bytes copied (the rest, if split, in the tail); `fits`: within
    /// [`MAX_FRAME`] and past the virtio-net header.
    Done { len: usize, fits: bool },
    /// The chain has more pieces than a tail holds: walk it again, copying.
    Overflow,
    /// The chain reaches outside the guest's memory.
    Outside,
}

/// Walks a transmit chain's readable descriptors past the virtio-net header: with
/// `split`, copies the first [`SPLIT_AT`] bytes into `buf` and leaves the rest in the
/// guest's memory as slices of `split`'s memory (the device's own, as the caller holds
/// it); without, copies all.
fn walk_tx<'m>(
    descs: &mut Checked<'_>,
    mem: &Memory,
    buf: &mut [u8],
    mut split: Option<(&'m Memory, &mut GuestIov<'m>)>,
) -> Walk {
    let mut skip = HDR_LEN;
    let mut len = 0usize;
    for desc in descs.by_ref().filter(|d| !d.is_write_only()) {
        let n = desc.len() as usize;
        let header = skip.min(n);
        skip -= header;
        if n == header {
            continue;
        }
        let Some(addr) = desc.addr().checked_add(header as u64) else {
            return Walk::Outside;
        };
        let n = n - header;
        // Copied: all, or what the first SPLIT_AT bytes still want; the rest stays.
        let copy = if split.is_some() {
            n.min(SPLIT_AT.saturating_sub(len))
        } else {
            n
        };
        if copy > 0 {
            let Some(dst) = buf.get_mut(len..len + copy) else {
                return Walk::Done { len, fits: false };
            };
            if mem.read_slice(dst, addr).is_err() {
                return Walk::Outside;
            }
            len += copy;
        }
        if let Some((tmem, tail)) = split.as_mut().filter(|_| copy < n) {
            if len + tail.len() + (n - copy) > MAX_FRAME {
                return Walk::Done { len, fits: false };
            }
            let Some(rest) = addr.checked_add(copy as u64) else {
                return Walk::Outside;
            };
            for slice in tmem.get_slices(rest, n - copy) {
                let Ok(slice) = slice else {
                    return Walk::Outside;
                };
                if tail.push(&slice).is_none() {
                    return Walk::Overflow;
                }
            }
        }
    }
    Walk::Done {
        len,
        fits: skip == 0,
    }
}

impl Default for Device {
    fn default() -> Self {
        Device::new()
    }
}

impl Device {
    pub fn new() -> Device {
        Device {
            acked: 0,
            features_set: false,
            protocol: 0,
            mem: None,
            mappings: Vec::new(),
            rings: std::array::from_fn(|_| Ring::new()),
            transfer: None,
            transfer_ok: true,
            resumed: false,
            held_tx: None,
            next_tx: TX,
            counters: DeviceCounters::default(),
        }
    }

    /// Back to a device QEMU has not configured (a new connection, a reset); the
    /// counters stay.
    pub fn reset(&mut self) {
        *self = Device {
            counters: self.counters,
            ..Device::new()
        };
    }

    pub fn counters(&self) -> DeviceCounters {
        self.counters
    }

    /// Whether the queues started where they had stopped (a paused guest running again,
    /// or a migrated one), not afresh (at 0: a new or reset device).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Whether queue `q` is served now.
    /// Queue `q`'s ring beside the memory and the counters (one borrow of each), once
    /// QEMU gave the memory.
    fn queue_parts(&mut self, q: usize) -> Option<(&Memory, &mut Ring, &mut DeviceCounters)> {
        Some((self.mem.as_deref()?, &mut self.rings[q], &mut self.counters))
    }

    pub fn running(&self, q: usize) -> bool {
        let r = &self.rings[q];
        r.started && r.enabled && !r.broken && self.mem.is_some()
    }

    /// The state transfer QEMU asked for, to be done now (the reply has gone).
    pub fn take_transfer(&mut self) -> Option<Transfer> {
        self.transfer.take()
    }

    /// How the transfer went, for QEMU's `CHECK_DEVICE_STATE`.
    pub fn transfer_done(&mut self, ok: bool) {
        self.transfer_ok = ok;
    }

    /// Whether QEMU has set the features (`SET_FEATURES`).
    pub fn features_set(&self) -> bool {
        self.features_set
    }

    /// Enables or disables queue `index`; false when there is no such queue.
    pub fn set_enabled(&mut self, index: u32, enable: bool) -> bool {
        self.ring(index).map(|r| r.enabled = enable).is_ok()
    }

    /// Whether the guest takes unfinished TCP segments (partial checksums, 64 KiB).
    pub fn guest_offloads(&self) -> bool {
        self.acked & GUEST_OFFLOADS == GUEST_OFFLOADS
    }

    /// Queues whose kick descriptor changed since the last call (to register).
    pub fn take_kick_changes(&mut self) -> impl Iterator<Item = (usize, &Ring)> {
        let changed: [bool; MAX_QUEUES] =
            std::array::from_fn(|q| std::mem::take(&mut self.rings[q].kick_changed));
        self.rings
            .iter()
            .enumerate()
            .filter(move |(q, _)| changed[*q])
    }

    /// The next frame the guest offers on its transmit queues (they take turns), copied
    /// into `buf`; its chain goes back to the guest at once.
    pub fn pop_frame(&mut self, buf: &mut [u8]) -> Pop {
        self.pop_any(buf, None)
    }

    /// As [`Self::pop_frame`], but past its first [`SPLIT_AT`] bytes the frame may stay
    /// in the guest's memory: [`Pop::Split`], the rest as slices of `mem` (the device's
    /// memory, [`Self::memory`], which the caller holds meanwhile) in `tail`. Its chain
    /// stays the guest's until [`Self::release_tx`], so the guest leaves those bytes be.
    pub fn pop_split<'m>(
        &mut self,
        buf: &mut [u8],
        mem: &'m Memory,
        tail: &mut GuestIov<'m>,
    ) -> Pop {
        self.pop_any(buf, Some((mem, tail)))
    }

    /// The guest's memory as mapped now.
    pub fn memory(&self) -> Option<Arc<Memory>> {
        self.mem.clone()
    }

    /// Gives the guest back the chain of the last [`Pop::Split`] (its bytes went where
    /// they go). Done before anything else touches the queues.
    pub fn release_tx(&mut self) {
        let Some((q, head)) = self.held_tx.take() else {
            return;
        };
        let Some((mem, ring, c)) = self.queue_parts(q) else {
            return;
        };
        if let Err(e) = ring.queue.add_used(mem, head, 0) {
            stop(ring, c, q, &e);
            return;
        }
        ring.used_added = true;
    }

    fn pop_any<'m>(
        &mut self,
        buf: &mut [u8],
        mut split: Option<(&'m Memory, &mut GuestIov<'m>)>,
    ) -> Pop {
        self.release_tx();
        for turn in 0..MAX_QUEUES / 2 {
            let q = (self.next_tx + 2 * turn) % MAX_QUEUES;
            let got = self.pop_from(q, buf, split.as_mut().map(|(m, t)| (*m, &mut **t)));
            if !matches!(got, Pop::Empty) {
                self.next_tx = (q + 2) % MAX_QUEUES;
                return got;
            }
        }
        Pop::Empty
    }

    /// As [`Self::pop_any`], from transmit queue `q`.
    fn pop_from<'m>(
        &mut self,
        q: usize,
        buf: &mut [u8],
        mut split: Option<(&'m Memory, &mut GuestIov<'m>)>,
    ) -> Pop {
        if !self.running(q) {
            return Pop::Empty;
        }
        let Some((mem, ring, c)) = self.queue_parts(q) else {
            return Pop::Empty;
        };
        loop {
            let chain = match ring.queue.iter(mem) {
                Ok(mut it) => it.next(),
                Err(e) => {
                    stop(ring, c, q, &e);
                    return Pop::Empty;
                }
            };
            let Some(chain) = chain else {
                // Nothing more: ask for a kick, unless more came meanwhile.
                match ring.queue.enable_notification(mem) {
                    Ok(true) => continue,
                    Ok(false) => return Pop::Empty,
                    Err(e) => {
                        stop(ring, c, q, &e);
                        return Pop::Empty;
                    }
                }
            };
            let head = chain.head_index();
            let mut descs = Checked::new(chain.clone(), mem);
            let tail = split.as_mut().map(|(m, t)| {
                t.clear();
                (*m, &mut **t)
            });
            let mut walk = walk_tx(&mut descs, mem, buf, tail);
            if matches!(walk, Walk::Overflow) {
                if let Some((_, t)) = split.as_mut() {
                    t.clear();
                }
                descs = Checked::new(chain, mem);
                walk = walk_tx(&mut descs, mem, buf, None);
            }
            let (len, fits) = match walk {
                Walk::Done { len, fits } => (len, fits),
                Walk::Overflow | Walk::Outside => {
                    stop(ring, c, q, &OUTSIDE);
                    return Pop::Empty;
                }
            };
            if !descs.whole() {
                stop(ring, c, q, &virtio_queue::Error::InvalidChain);
                return Pop::Empty;
            }
            let tail_len = split.as_ref().map_or(0, |(_, t)| t.len());
            if !fits || len + tail_len < crate::wire::ETH_HLEN {
                if let Err(e) = ring.queue.add_used(mem, head, 0) {
                    stop(ring, c, q, &e);
                    return Pop::Empty;
                }
                ring.used_added = true;
                c.bad_frames += 1;
                continue;
            }
            c.frames_from_guest += 1;
            c.queue_frames[q] += 1;
            c.largest_from_guest = c.largest_from_guest.max((len + tail_len) as u64);
            if tail_len > 0 {
                self.held_tx = Some((q, head));
                return Pop::Split(len);
            }
            if let Err(e) = ring.queue.add_used(mem, head, 0) {
                stop(ring, c, q, &e);
                return Pop::Empty;
            }
            ring.used_added = true;
            return Pop::Frame(len);
        }
    }

    /// Whether `len` bytes (header included) fit in the chains the guest offers on every
    /// running receive queue now (a frame may go to any: its flow picks). When one is
    /// short, the guest is asked for a kick on it when it adds buffers; one the walk
    /// stops leaves the frames to the others.
    pub fn rx_room(&mut self, len: usize) -> bool {
        let mut any = false;
        for q in (0..MAX_QUEUES).step_by(2) {
            if self.running(q) {
                if !self.room_in(q, len) && self.running(q) {
                    return false;
                }
                any |= self.running(q);
            }
        }
        any
    }

    /// As [`Self::rx_room`], for receive queue `q`.
    fn room_in(&mut self, q: usize, len: usize) -> bool {
        let mergeable = self.acked & bit(VIRTIO_NET_F_MRG_RXBUF) != 0;
        let Some((mem, ring, c)) = self.queue_parts(q) else {
            return false;
        };
        // Twice at most: buffers may come between a short walk and the kick request.
        for _ in 0..2 {
            match place_chains(&mut ring.queue, mem, len, mergeable, None) {
                Ok(room) if room >= len => return true,
                Ok(_) => {}
                Err(e) => {
                    stop(ring, c, q, &e);
                    return false;
                }
            }
            match kick_at_next_chain(&mut ring.queue, mem) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => {
                    stop(ring, c, q, &e);
                    return false;
                }
            }
        }
        false
    }

    /// Writes `frame` (virtio-net header first, its `num_buffers` filled in here)
    /// across the receive chains it needs; false when they did not hold it (the frame is
    /// dropped; the chains stay the guest's).
    pub fn push_frame(&mut self, frame: &mut [u8]) -> bool {
        if frame.len() < HDR_LEN {
            return false;
        }
        let Some(place) = self.place_rx(flow_hash(&frame[HDR_LEN..]), frame.len()) else {
            return false;
        };
        let chains = place.chains_for(frame.len());
        frame[10..12].copy_from_slice(&(chains as u16).to_le_bytes());
        self.write_placed(&place, 0, frame) && self.commit_rx(&place, frame.len())
    }

    /// Room for a frame of `len` bytes (header included) in the receive chains the
    /// guest offers on the queue `hash` picks (a flow stays on one queue: no
    /// reordering), found by one walk and not taken yet: [`Self::write_placed`] and
    /// [`Self::payload_room`] write into it, [`Self::commit_rx`] hands it to the guest.
    /// None when it does not fit (the guest is asked for a kick when it adds buffers)
    /// or when the walk stopped the queue (a broken chain, or a frame that would span
    /// more than [`MAX_PIECES`] descriptors).
    pub fn place_rx(&mut self, hash: u32, len: usize) -> Option<RxPlace> {
        let running: [bool; MAX_QUEUES / 2] = std::array::from_fn(|p| self.running(2 * p));
        let count = running.iter().filter(|r| **r).count();
        let pick = (hash as usize).checked_rem(count)?;
        let q = 2 * (0..MAX_QUEUES / 2).filter(|p| running[*p]).nth(pick)?;
        let mergeable = self.acked & bit(VIRTIO_NET_F_MRG_RXBUF) != 0;
        let (mem, ring, c) = self.queue_parts(q)?;
        let mut place = RxPlace::new(q);
        match place_chains(&mut ring.queue, mem, len, mergeable, Some(&mut place)) {
            Ok(room) if room >= len => Some(place),
            Ok(_) => {
                if let Err(e) = kick_at_next_chain(&mut ring.queue, mem) {
                    stop(ring, c, q, &e);
                }
                None
            }
            Err(e) => {
                stop(ring, c, q, &e);
                None
            }
        }
    }

    /// Writes `bytes` at offset `at` of the room `place` found; false (the queue
    /// stopped) when the memory is no longer there.
    pub fn write_placed(&mut self, place: &RxPlace, at: usize, bytes: &[u8]) -> bool {
        let Some((mem, ring, c)) = self.queue_parts(place.q) else {
            return false;
        };
        for (addr, len, off) in place.span(at, bytes.len()) {
            if mem.write_slice(&bytes[off..off + len], addr).is_err() {
                stop(ring, c, place.q, &OUTSIDE);
                return false;
            }
        }
        true
    }

    /// The `len` bytes at offset `at` of the room `place` found, as slices of the
    /// guest's memory for the kernel to write into (a socket's data, straight from its
    /// queue); marked dirty for a migration's log by [`Self::commit_rx`].
    pub fn payload_room(&self, place: &RxPlace, at: usize, len: usize) -> Option<GuestIov<'_>> {
        let mem = self.mem.as_deref()?;
        let mut iov = GuestIov::default();
        for (addr, n, _) in place.span(at, len) {
            for slice in mem.get_slices(addr, n) {
                iov.push(&slice.ok()?)?;
            }
        }
        Some(iov)
    }

    /// One more frame whose payload the kernel wrote in place.
    pub fn count_in_place(&mut self) {
        self.counters.rx_in_place += 1;
    }

    /// Hands the first `len` bytes of the room `place` found to the guest: the chains
    /// they take marked used, the written part of each marked dirty.
    pub fn commit_rx(&mut self, place: &RxPlace, len: usize) -> bool {
        let Some((mem, ring, c)) = self.queue_parts(place.q) else {
            return false;
        };
        for (addr, n, _) in place.span(0, len) {
            for slice in mem.get_slices(addr, n) {
                match slice {
                    Ok(slice) => slice.bitmap().mark_dirty(0, slice.len()),
                    Err(_) => {
                        stop(ring, c, place.q, &OUTSIDE);
                        return false;
                    }
                }
            }
        }
        let chains = place.chains_for(len);
        let mut left = len;
        for i in 0..chains {
            let take = left.min(place.rooms[i] as usize);
            left -= take;
            ring.queue
                .set_next_avail(ring.queue.next_avail().wrapping_add(1));
            if let Err(e) = ring.queue.add_used(mem, place.heads[i], take as u32) {
                stop(ring, c, place.q, &e);
                return false;
            }
        }
        ring.used_added = true;
        c.frames_to_guest += 1;
        c.queue_frames[place.q] += 1;
        c.largest_to_guest = c.largest_to_guest.max(len.saturating_sub(HDR_LEN) as u64);
        c.rx_merged_buffers += chains.saturating_sub(1) as u64;
        true
    }

    /// Signals the guest on queue `q` if it added used entries the guest waits for.
    ///
    /// Not without a call eventfd (a queue restarting gets its kick before its call):
    /// the entries stay to be signalled, since `needs_notification` counts a signal as
    /// given, and with event indices a signal lost past the guest's used event would
    /// never be asked for again — the guest would wait for good.
    pub fn notify(&mut self, q: usize) {
        let Some((mem, ring, c)) = self.queue_parts(q) else {
            return;
        };
        let Some(call) = ring.call.as_ref() else {
            return;
        };
        if !std::mem::take(&mut ring.used_added) {
            return;
        }
        match ring.queue.needs_notification(mem) {
            Ok(true) => {
                let _ = nix::unistd::write(call, &1u64.to_ne_bytes());
                c.notifies += 1;
            }
            Ok(false) => {}
            Err(e) => {
                stop(ring, c, q, &e);
            }
        }
    }

    /// Clears a kick eventfd's count (edge-triggered: the loop reads it out).
    pub fn drain_kick(&self, q: usize) {
        if let Some(k) = self.rings[q].kick.as_ref() {
            let mut v = [0u8; 8];
            let _ = nix::unistd::read(k, &mut v);
        }
    }

    fn ring(&mut self, index: u32) -> VuResult<&mut Ring> {
        self.rings
            .get_mut(index as usize)
            .ok_or(VuError::InvalidParam)
    }

    /// QEMU's address of a ring, as a guest address.
    fn guest_addr(&self, user_addr: u64) -> VuResult<GuestAddress> {
        self.mappings
            .iter()
            .find(|m| user_addr >= m.user_addr && user_addr - m.user_addr < m.size)
            .map(|m| GuestAddress(user_addr - m.user_addr + m.guest_addr))
            .ok_or(VuError::InvalidParam)
    }

    /// A queue starts when it has its kick (and its rings are valid).
    fn start(&mut self, q: usize) {
        let event_idx = self.acked & bit(VIRTIO_RING_F_EVENT_IDX) != 0;
        let valid = self.mem.as_deref().is_some_and(|mem| {
            let queue = &mut self.rings[q].queue;
            queue.set_event_idx(event_idx);
            queue.set_ready(true);
            // Rings QEMU never set are at 0, where `virtio_queue` serves no avail ring.
            queue.is_valid(mem) && queue.avail_ring() != 0
        });
        let ring = &mut self.rings[q];
        ring.started = true;
        ring.broken = !valid;
        if !valid {
            self.counters.queue_errors += 1;
            tracing::warn!("vhost-user: queue {q} has rings outside the guest's memory");
        } else if q == RX {
            self.counters.starts += 1;
        }
    }
}

/// Chains one frame may take on the receive queue (64 KiB in 1,500-byte buffers is 44).
const MAX_MERGED: usize = 64;
const OUTSIDE: &str = "a descriptor points outside the guest's memory";

/// Pieces of guest memory one frame written in place may span (one per writable
/// descriptor of the chains it takes; a Linux guest's take one per chain, or one per
/// page without mergeable buffers). A guest whose chains need more for one frame is
/// broken or hostile: its queue stops.
pub const MAX_PIECES: usize = 256;

/// Room for one frame in the receive chains of queue `q`, in the order it fills them:
/// each chain's head and room, each writable descriptor a piece (see
/// [`Device::place_rx`]).
pub struct RxPlace {
    q: usize,
    room: usize,
    chains: usize,
    heads: [u16; MAX_MERGED],
    rooms: [u32; MAX_MERGED],
    pieces: [(GuestAddress, u32); MAX_PIECES],
    n_pieces: usize,
}

impl RxPlace {
    fn new(q: usize) -> RxPlace {
        RxPlace {
            q,
            room: 0,
            chains: 0,
            heads: [0; MAX_MERGED],
            rooms: [0; MAX_MERGED],
            pieces: [(GuestAddress(0), 0); MAX_PIECES],
            n_pieces: 0,
        }
    }

    /// How many chains the first `len` bytes take.
    pub fn chains_for(&self, len: usize) -> usize {
        let mut have = 0usize;
        for (i, &r) in self.rooms[..self.chains].iter().enumerate() {
            have += r as usize;
            if have >= len {
                return i + 1;
            }
        }
        self.chains
    }

    /// The pieces under bytes `[at, at + len)`: each one's guest address, its length
    /// and where it starts in that span.
    fn span(
        &self,
        at: usize,
        len: usize,
    ) -> impl Iterator<Item = (GuestAddress, usize, usize)> + '_ {
        let mut start = 0usize;
        self.pieces[..self.n_pieces]
            .iter()
            .filter_map(move |&(addr, n)| {
                let (lo, hi) = (start, start + n as usize);
                start = hi;
                let (from, to) = (lo.max(at), hi.min(at + len));
                (from < to).then(|| (addr.unchecked_add((from - lo) as u64), to - from, from - at))
            })
    }
}

/// Walks the receive chains the guest offers until `len` bytes fit (or, without
/// mergeable buffers, the first chain), keeping in `place`, when given, where the bytes
/// would go; the room found. The queue's position is put back after, so nothing is
/// taken yet.
fn place_chains(
    queue: &mut Queue,
    mem: &Memory,
    len: usize,
    mergeable: bool,
    mut place: Option<&mut RxPlace>,
) -> Result<usize, virtio_queue::Error> {
    let (mut total, mut chains, mut pieces, mut walked) = (0usize, 0usize, 0usize, 0);
    let result = (|| {
        while total < len && chains < MAX_MERGED {
            let Some(chain) = queue.iter(mem)?.next() else {
                break;
            };
            walked += 1;
            let head = chain.head_index();
            let mut descs = Checked::new(chain, mem);
            let mut room = 0usize;
            for d in descs.by_ref().filter(|d| d.is_write_only() && d.len() > 0) {
                room += d.len() as usize;
                if pieces == MAX_PIECES {
                    return Err(virtio_queue::Error::InvalidChain);
                }
                if let Some(p) = place.as_deref_mut() {
                    p.pieces[pieces] = (d.addr(), d.len());
                }
                pieces += 1;
            }
            // A receive chain the device can write nothing into breaks the rule that
            // receive buffers are device-writable: the queue stops (and is counted),
            // rather than wait for room that never comes.
            if !descs.whole() || room == 0 {
                return Err(virtio_queue::Error::InvalidChain);
            }
            if let Some(p) = place.as_deref_mut() {
                p.heads[chains] = head;
                p.rooms[chains] = u32::try_from(room).unwrap_or(u32::MAX);
            }
            total += room;
            chains += 1;
            if !mergeable {
                break;
            }
        }
        Ok(())
    })();
    for _ in 0..walked {
        queue.go_to_previous_position();
    }
    result?;
    if let Some(p) = place {
        (p.room, p.chains, p.n_pieces) = (total, chains, pieces);
    }
    Ok(total)
}

/// A hash of a frame's IP addresses and TCP/UDP ports (0 for anything else): FNV-1a,
/// enough to spread flows over queues.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let ethertype = frame.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]]));
    let (addrs, proto, l4) = match ethertype {
        Some(0x0800) => {
            let ihl = frame.get(14).map_or(0, |b| usize::from(b & 0xf) * 4);
            (26..34, frame.get(23).copied(), 14 + ihl)
        }
        Some(0x86dd) => (22..54, frame.get(20).copied(), 54),
        _ => return 0,
    };
    let ports = match proto {
        Some(6 | 17) => l4..l4 + 4,
        _ => l4..l4,
    };
    let mut h = 0x811c_9dc5u32;
    for &b in frame
        .get(addrs)
        .unwrap_or(&[])
        .iter()
        .chain(frame.get(ports).unwrap_or(&[]))
    {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// Stops a queue after a chain it could not use: counted, said once.
fn stop(ring: &mut Ring, c: &mut DeviceCounters, q: usize, e: &dyn std::fmt::Display) {
    if !ring.broken {
        ring.broken = true;
        c.queue_errors += 1;
        let which = if q.is_multiple_of(2) {
            "receive"
        } else {
            "transmit"
        };
        tracing::warn!(
            "vhost-user: the guest's {which} queue {q} is unusable ({e}); it stays stopped until the guest resets the device"
        );
    }
}

fn unsupported<T>() -> VuResult<T> {
    Err(VuError::InvalidOperation("not supported by netbind"))
}

impl VhostUserBackendReqHandlerMut for Device {
    fn set_owner(&mut self) -> VuResult<()> {
        Ok(())
    }

    fn reset_owner(&mut self) -> VuResult<()> {
        self.reset();
        Ok(())
    }

    fn reset_device(&mut self) -> VuResult<()> {
        self.reset_owner()
    }

    fn get_features(&mut self) -> VuResult<u64> {
        Ok(FEATURES)
    }

    fn set_features(&mut self, features: u64) -> VuResult<()> {
        if features & !FEATURES != 0 {
            return Err(VuError::InvalidParam);
        }
        self.acked = features;
        self.features_set = true;
        // Without PROTOCOL_FEATURES a queue runs as soon as it starts.
        let enabled = features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0;
        for r in &mut self.rings {
            if enabled {
                r.enabled = true;
            }
        }
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy_listening: Option<bool>,
    ) -> VuResult<Option<Vec<VhostUserMemoryRegionBase>>> {
        let mut regions = Vec::with_capacity(ctx.len());
        let mut mappings = Vec::with_capacity(ctx.len());
        for (region, file) in ctx.iter().zip(files) {
            backed(region, &file)?;
            let mapped = GuestRegionMmap::new(
                region.mmap_region::<DirtyLog>(file)?,
                GuestAddress(region.guest_phys_addr),
            )
            .ok_or(VuError::InvalidParam)?;
            regions.push(mapped);
            mappings.push(Mapping {
                user_addr: region.user_addr,
                size: region.memory_size,
                guest_addr: region.guest_phys_addr,
            });
        }
        let mem = GuestMemoryMmap::from_regions(regions)
            .map_err(|e| VuError::ReqHandlerError(io::Error::other(e)))?;
        self.mem = Some(Arc::new(mem));
        self.mappings = mappings;
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        let size = u16::try_from(num).map_err(|_| VuError::InvalidParam)?;
        let ring = self.ring(index)?;
        ring.queue
            .try_set_size(size)
            .map_err(|_| VuError::InvalidParam)
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VuResult<()> {
        let (d, u, a) = (
            self.guest_addr(descriptor)?,
            self.guest_addr(used)?,
            self.guest_addr(available)?,
        );
        let queue = &mut self.ring(index)?.queue;
        queue
            .try_set_desc_table_address(d)
            .and_then(|()| queue.try_set_used_ring_address(u))
            .and_then(|()| queue.try_set_avail_ring_address(a))
            .map_err(|_| VuError::InvalidParam)
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        let base = u16::try_from(base).map_err(|_| VuError::InvalidParam)?;
        self.resumed |= base != 0;
        let queue = &mut self.ring(index)?.queue;
        queue.set_next_avail(base);
        queue.set_next_used(base);
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        self.resumed = false;
        let ring = self.ring(index)?;
        ring.started = false;
        ring.queue.set_ready(false);
        let base = ring.queue.next_avail();
        // The notifiers end with the queue (new ones come with the next start).
        ring.kick = None;
        ring.call = None;
        Ok(VhostUserVringState::new(index, u32::from(base)))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        let q = usize::from(index);
        let ring = self.ring(u32::from(index))?;
        ring.kick = fd;
        ring.kick_changed = true;
        self.start(q);
        Ok(())
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.ring(u32::from(index))?.call = fd;
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, _fd: Option<File>) -> VuResult<()> {
        self.ring(u32::from(index)).map(|_| ())
    }

    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        Ok(protocol_features())
    }

    fn set_protocol_features(&mut self, features: u64) -> VuResult<()> {
        if features & !protocol_features().bits() != 0 {
            return Err(VuError::InvalidParam);
        }
        self.protocol = features;
        Ok(())
    }

    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok(MAX_QUEUES as u64)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        self.ring(index)?.enabled = enable;
        Ok(())
    }

    fn get_config(
        &mut self,
        _offset: u32,
        _size: u32,
        _flags: VhostUserConfigFlags,
    ) -> VuResult<Vec<u8>> {
        unsupported()
    }

    fn set_config(&mut self, _: u32, _: &[u8], _: VhostUserConfigFlags) -> VuResult<()> {
        unsupported()
    }

    fn set_gpu_socket(&mut self, _: GpuBackend) -> VuResult<()> {
        unsupported()
    }

    fn get_shared_object(&mut self, _: VhostUserSharedMsg) -> VuResult<File> {
        unsupported()
    }

    fn get_inflight_fd(&mut self, _: &VhostUserInflight) -> VuResult<(VhostUserInflight, File)> {
        unsupported()
    }

    fn set_inflight_fd(&mut self, _: &VhostUserInflight, _: File) -> VuResult<()> {
        unsupported()
    }

    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        unsupported()
    }

    fn add_mem_region(
        &mut self,
        _: &VhostUserSingleMemoryRegion,
        _: File,
        _: Option<bool>,
    ) -> VuResult<Option<VhostUserMemoryRegionBase>> {
        unsupported()
    }

    fn remove_mem_region(&mut self, _: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        unsupported()
    }

    fn set_device_state_fd(
        &mut self,
        direction: VhostTransferStateDirection,
        phase: VhostTransferStatePhase,
        file: File,
    ) -> VuResult<Option<File>> {
        if !matches!(phase, VhostTransferStatePhase::STOPPED) {
            return Err(VuError::InvalidParam);
        }
        self.transfer = Some(Transfer {
            save: matches!(direction, VhostTransferStateDirection::SAVE),
            file,
        });
        self.transfer_ok = true;
        Ok(None)
    }

    fn check_device_state(&mut self) -> VuResult<()> {
        if self.transfer_ok {
            Ok(())
        } else {
            Err(VuError::InvalidOperation(
                "the engine's state did not transfer",
            ))
        }
    }

    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        unsupported()
    }

    fn set_log_base(&mut self, log: &VhostUserLog, file: File) -> VuResult<()> {
        let Some(mem) = self.mem.as_ref() else {
            return Err(VuError::InvalidOperation(
                "a dirty log before the memory table",
            ));
        };
        let log = std::sync::Arc::new(
            LogMap::new(file, log.mmap_offset, log.mmap_size).map_err(VuError::ReqHandlerError)?,
        );
        const PAGE: u64 = 4096;
        // Every region must fit in the log before any uses it.
        let places: Vec<RegionLog> = mem
            .iter()
            .map(|r| RegionLog {
                log: log.clone(),
                first_page: r.start_addr().raw_value() / PAGE,
                pages: r.len().div_ceil(PAGE),
            })
            .collect();
        if places.iter().any(|p| p.first_page + p.pages > log.pages()) {
            return Err(VuError::InvalidParam);
        }
        for (region, place) in mem.iter().zip(places) {
            region.bitmap().start(place);
        }
        tracing::info!("vhost-user: QEMU logs the pages the engine writes (a migration)");
        Ok(())
    }
}

/// A chain's descriptors, each wholly inside the guest's memory. `virtio_queue`'s walk
/// ends quietly where it cannot go on (a loop, more descriptors than the table holds, a
/// next index outside it, a nested or malformed indirect table, more than 4 GiB); that,
/// a chain of no descriptors and a descriptor not inside the memory make it not whole.
struct Checked<'m> {
    chain: virtio_queue::DescriptorChain<&'m Memory>,
    mem: &'m Memory,
    /// The last descriptor said another follows (or none came yet).
    more: bool,
    outside: bool,
}

impl<'m> Checked<'m> {
    fn new(chain: virtio_queue::DescriptorChain<&'m Memory>, mem: &'m Memory) -> Self {
        Checked {
            chain,
            mem,
            more: true,
            outside: false,
        }
    }

    /// Walks the rest: whether the chain ended where it said, inside the memory.
    fn whole(mut self) -> bool {
        while self.next().is_some() {}
        !self.more && !self.outside
    }
}

impl Iterator for Checked<'_> {
    type Item = virtio_queue::desc::split::Descriptor;

    fn next(&mut self) -> Option<Self::Item> {
        use vm_memory::GuestMemoryBackend;
        if self.outside {
            return None;
        }
        let d = self.chain.next()?;
        self.more = d.has_next();
        self.outside = !self.mem.check_range(d.addr(), d.len() as usize);
        (!self.outside).then_some(d)
    }
}

/// Asks the guest for a kick when it adds a chain; whether one came meanwhile. With event
/// indices, `enable_notification` asks for the entry at `next_avail`: one the guest has
/// offered already when the walk left chains too short for a frame, so no kick would come.
fn kick_at_next_chain(queue: &mut Queue, mem: &Memory) -> Result<bool, virtio_queue::Error> {
    let next = queue.next_avail();
    let offered = queue.avail_idx(mem, std::sync::atomic::Ordering::Acquire)?;
    queue.set_next_avail(offered.0);
    let more = queue.enable_notification(mem);
    queue.set_next_avail(next);
    more
}

/// Whether `file` holds all of `region`: a mapping past its end faults (`SIGBUS`) at the
/// first access there.
fn backed(region: &VhostUserMemoryRegion, file: &File) -> VuResult<()> {
    let len = file.metadata().map_err(VuError::ReqHandlerError)?.len();
    match region.mmap_offset.checked_add(region.memory_size) {
        Some(end) if end <= len => Ok(()),
        _ => Err(VuError::InvalidParam),
    }
}
