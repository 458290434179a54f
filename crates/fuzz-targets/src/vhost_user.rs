//! `vhost_user_queue`: a hostile guest's virtqueues, against the vhost-user device.
//!
//! The input is the queues' parameters, then the guest's memory. The device is set up as
//! QEMU does it (features, a memfd memory table of two regions, each queue's size, base,
//! rings and eventfds), then takes every frame the transmit queue offers, puts frames of
//! the input's lengths on the receive queue and signals the guest. Whatever the memory
//! holds: no panic, a frame taken is a frame, a queue is counted broken at most once, and
//! the memfd's pages outside the two regions stay as they were (nothing was written
//! outside the guest's memory).
//!
//! Layout (little-endian):
//!
//! | bytes | what |
//! | --- | --- |
//! | 0 | flags: 1 MRG_RXBUF, 2 EVENT_IDX, 4 INDIRECT_DESC, 8 PROTOCOL_FEATURES (rings enabled by `SET_VRING_ENABLE`), 16 a hole between the regions, 32 no call eventfds |
//! | 1, 2 | receive, transmit queue size: `1 << (b % 11)`; from 0x80 on, `(b - 0x80) * 1000` (refused: 0, not a power of two) |
//! | 3..27 | per queue (receive, transmit): descriptor table, used ring, avail ring: u32, QEMU's address minus region A's |
//! | 27..31 | per queue: `SET_VRING_BASE`, u16 |
//! | 31..39 | four frames to the guest: u16 lengths after the virtio-net header (0xffff: `MAX_FRAME`) |
//! | 39.. | the guest's memory from region A's start, then region B's |

use std::fs::File;
use std::os::fd::OwnedFd;

use netbind_usernet::attach::vhost_user::device::{
    Device, DeviceCounters, FEATURES, HDR_LEN, MAX_FRAME, Pop, RX, TX,
};
use netbind_usernet::sys::{GuestIov, copy_from_guest};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::memfd::{MFdFlags, memfd_create};
use vhost::vhost_user::VhostUserBackendReqHandlerMut;
use vhost::vhost_user::message::{
    VhostUserMemoryRegion, VhostUserVirtioFeatures, VhostUserVringAddrFlags,
};
use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};

/// Where the parameters end and the memory begins.
pub const HEAD: usize = 39;
const PAGE: u64 = 4096;
/// Region A: 64 KiB at guest address 0x1_0000; QEMU has it at `USER`.
pub const A_GPA: u64 = 0x1_0000;
const A_SIZE: u64 = 0x1_0000;
/// Region B: 16 KiB right after A in the guest's addresses (or after a 64 KiB hole),
/// right after it in QEMU's.
const B_SIZE: u64 = 0x4000;
const USER: u64 = 0x7f00_0001_0000;
/// The memfd: a guard page, A, a guard page, B, a guard page.
const A_OFFSET: u64 = PAGE;
const B_OFFSET: u64 = A_OFFSET + A_SIZE + PAGE;
const FILE_LEN: u64 = B_OFFSET + B_SIZE + PAGE;
const GUARD: u8 = 0xa5;

const F_MRG_RXBUF: u8 = 1;
const F_EVENT_IDX: u8 = 2;
const F_INDIRECT: u8 = 4;
const F_PROTOCOL: u8 = 8;
const F_HOLE: u8 = 16;
const F_NO_CALL: u8 = 32;

/// Any bytes as a guest's queues and memory (see the module's layout).
pub fn vhost_user_queue(data: &[u8]) {
    vhost_user_run(data);
}

/// `vhost_user_queue`'s body; what the device counted (for the seeds' test).
pub fn vhost_user_run(data: &[u8]) -> DeviceCounters {
    let mut head = [0u8; HEAD];
    let n = data.len().min(HEAD);
    head[..n].copy_from_slice(&data[..n]);
    let memory = data.get(HEAD..).unwrap_or_default();
    let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let flags = head[0];

    let fd: OwnedFd = memfd_create("guest-ram", MFdFlags::MFD_CLOEXEC).unwrap();
    let file = File::from(fd);
    file.set_len(FILE_LEN).unwrap();
    let view = GuestMemoryMmap::<()>::from_ranges_with_files([(
        GuestAddress(0),
        FILE_LEN as usize,
        Some(FileOffset::new(file.try_clone().unwrap(), 0)),
    )])
    .unwrap();
    let guard = [GUARD; PAGE as usize];
    for at in [0, A_OFFSET + A_SIZE, B_OFFSET + B_SIZE] {
        view.write_slice(&guard, GuestAddress(at)).unwrap();
    }
    let (in_a, in_b) = memory.split_at(memory.len().min(A_SIZE as usize));
    let in_b = &in_b[..in_b.len().min(B_SIZE as usize)];
    view.write_slice(in_a, GuestAddress(A_OFFSET)).unwrap();
    view.write_slice(in_b, GuestAddress(B_OFFSET)).unwrap();

    let mut features = FEATURES;
    for (flag, bit) in [
        (F_MRG_RXBUF, VIRTIO_NET_F_MRG_RXBUF),
        (F_EVENT_IDX, VIRTIO_RING_F_EVENT_IDX),
        (F_INDIRECT, VIRTIO_RING_F_INDIRECT_DESC),
    ] {
        if flags & flag == 0 {
            features &= !(1 << bit);
        }
    }
    if flags & F_PROTOCOL == 0 {
        features &= !VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
    }
    let b_gpa = A_GPA + A_SIZE + if flags & F_HOLE != 0 { 0x1_0000 } else { 0 };
    let table = [
        VhostUserMemoryRegion::new(A_GPA, A_SIZE, USER, A_OFFSET),
        VhostUserMemoryRegion::new(b_gpa, B_SIZE, USER + A_SIZE, B_OFFSET),
    ];

    let mut dev = Device::new();
    dev.set_owner().unwrap();
    dev.set_features(features).unwrap();
    if flags & F_PROTOCOL != 0 {
        let p = dev.get_protocol_features().unwrap();
        dev.set_protocol_features(p.bits()).unwrap();
    }
    let files = vec![file.try_clone().unwrap(), file.try_clone().unwrap()];
    dev.set_mem_table(&table, files, None).unwrap();
    for (q, size) in [(RX, head[1]), (TX, head[2])] {
        let i = q as u32;
        let num = if size >= 0x80 {
            u32::from(size - 0x80) * 1000
        } else {
            1 << (size % 11)
        };
        let ring = |k: usize| USER.wrapping_add(u64::from(u32_at(3 + 12 * q + 4 * k)));
        let none = VhostUserVringAddrFlags::empty();
        // Refusals are what QEMU would hear; the device must carry on either way.
        let _ = dev.set_vring_num(i, num);
        let _ = dev.set_vring_base(i, u32::from(u16_at(27 + 2 * q)));
        let _ = dev.set_vring_addr(i, none, ring(0), ring(1), ring(2), 0);
        let call = (flags & F_NO_CALL == 0).then(eventfd);
        dev.set_vring_call(q as u8, call).unwrap();
        dev.set_vring_kick(q as u8, Some(eventfd())).unwrap();
        dev.set_vring_enable(i, true).unwrap();
    }

    let mut buf = vec![0; MAX_FRAME];
    drain(&mut dev, &mut buf);
    for k in 0..4 {
        let len = match u16_at(31 + 2 * k) {
            0xffff => MAX_FRAME,
            n => usize::from(n),
        };
        let mut frame: Vec<u8> = (0..HDR_LEN + len).map(|i| i as u8).collect();
        let _ = dev.rx_room(frame.len());
        let _ = dev.push_frame(&mut frame);
    }
    dev.notify(RX);
    // The frames written may have changed the transmit queue.
    drain(&mut dev, &mut buf);
    dev.notify(TX);

    let c = dev.counters();
    assert!(c.queue_errors <= 2, "a queue counted broken twice: {c:?}");
    let mut page = [0u8; PAGE as usize];
    for at in [0, A_OFFSET + A_SIZE, B_OFFSET + B_SIZE] {
        view.read_slice(&mut page, GuestAddress(at)).unwrap();
        assert!(
            page == guard,
            "memfd at {at:#x}: written outside the regions"
        );
    }
    c
}

/// Takes every frame the transmit queue offers. A queue holds 1,024 at most; the device's
/// own writes (used entries over a ring the guest made overlap) may offer a few more, not
/// an endless stream.
/// Frames are taken in turn copied whole and split (headers copied, the rest left in
/// guest memory and copied out here, as the engine does when it must).
fn drain(dev: &mut Device, buf: &mut [u8]) {
    let mut rest = vec![0u8; MAX_FRAME];
    for i in 0..65536 {
        let Some(mem) = dev.memory() else { return };
        let mut tail = GuestIov::default();
        let got = if i % 2 == 0 {
            dev.pop_frame(buf)
        } else {
            dev.pop_split(buf, &mem, &mut tail)
        };
        match got {
            Pop::Frame(n) => assert!((14..=MAX_FRAME).contains(&n), "a frame of {n} bytes"),
            Pop::Split(n) => {
                let whole = n + tail.len();
                assert!(
                    n <= MAX_FRAME && (14..=MAX_FRAME).contains(&whole),
                    "{n} + {tail:?}"
                );
                assert_eq!(copy_from_guest(&tail, 0, &mut rest), tail.len());
                dev.release_tx();
            }
            Pop::Empty => return,
        }
    }
    panic!("the transmit queue never ran dry");
}

fn eventfd() -> File {
    let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC);
    File::from(OwnedFd::from(fd.unwrap()))
}
