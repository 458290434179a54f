//! vhost-user: the engine as the guest NIC's back end, reading and writing the guest's
//! virtqueues in memory QEMU shares with it.
//!
//! How it works: QEMU (`-chardev socket,path=P -netdev vhost-user,chardev=…`, guest
//! memory from a shared memfd) connects to the unix socket the engine listens on, or
//! hands over a connected one (`--fd`). Over it come QEMU's requests — features, the
//! memory table, each queue's rings and eventfds — handled by `vhost`'s protocol layer
//! into [`device::Device`]. Frames then move without the socket: the guest's transmit
//! queue is read when its kick eventfd fires. With offloads (the guest sends 64 KiB TCP
//! segments as headers and pages) a frame's first bytes are copied and the rest stays in
//! the guest's memory for the engine's socket to send from (`read_into`; the chain goes
//! back to the guest once the engine is done with it); without, each frame is copied
//! into a buffer and its chain goes back at once. Frames to the guest are built in
//! [`VhostUserTx`]'s buffer, or written in place (a socket's data peeked straight into
//! the guest's buffers), across the receive queue's chains (mergeable buffers), the
//! guest signalled at the end of the round if its event index asks for it.
//!
//! Why not `vhost-user-backend`'s daemon: it runs a thread per queue set and a thread
//! for the socket, with the device behind locks; the engine is one thread that owns its
//! flows, so it takes the protocol layer (`vhost`), the memory (`vm-memory`) and the
//! queues (`virtio-queue`) and drives them from its own event loop. The device sits
//! behind a `Mutex` only because `vhost`'s handler wants one; it is never contended.
//!
//! Tokens: the control socket is [`CONTROL`], the listening socket [`LISTENER`], queue
//! `q`'s kick `FIRST_KICK + q` — a transmit queue's means frames to read, a receive
//! queue's that the guest added buffers (the engine may send again). The engine learns
//! of a guest when its driver starts the first queue pair at index 0 (boot, reset after
//! a reboot: its flows are forgotten), of a resumed one when the queues start again where
//! they stopped (a paused VM continued: its flows go on; after a migration's read-out,
//! the migration failed and the state is taken back), and of its end when QEMU closes
//! the socket: with `one_off` the engine then ends, else it waits for the next QEMU.
//!
//! Multiqueue: up to four pairs (QEMU `queues=N`, the guest's driver enables as many as
//! it has vCPUs). The guest picks the transmit queue (per CPU); the engine reads them in
//! turn and puts each frame to the guest on the receive queue its flow hashes to, so a
//! flow keeps its order. A frame is built only when every running receive queue has
//! room for it.
//!
//! Offloads: the device offers checksum and TCP segmentation offload both ways, so the
//! guest sends 64 KiB TCP segments with partial checksums (the engine relays payloads
//! and verifies no checksum) and, when the guest acks GUEST_CSUM and GUEST_TSO4/6, the
//! engine hands it 64 KiB segments the same way (`frame::TxMeta`), as it does a tap.

pub mod device;
#[cfg(test)]
mod hostile_tests;
pub mod log;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use vhost::vhost_user::BackendReqHandler;

use super::{AttachError, Attachment, Got, LISTENER, Read, Ready};
use crate::engine::Engine;
use crate::frame::{Fill, GuestTx, InPlace, Placed, TxMeta};
use crate::migrate::format::State;
use crate::migrate::repair::Repair;
use crate::sys::GuestIov;
use device::{Device, HDR_LEN, MAX_FRAME, MAX_QUEUES, Pop, RX, TX};

pub use device::DeviceCounters;

/// The vhost-user control socket.
pub const CONTROL: Token = Token(3);
/// The repair helper's listening socket (migration).
const REPAIR: Token = Token(12);
/// Queue `q`'s kick is `Token(FIRST_KICK + q)`.
const FIRST_KICK: usize = 4;
const _: () = assert!(FIRST_KICK + MAX_QUEUES <= REPAIR.0 && REPAIR.0 < super::LINK_TOKENS.end);
/// The largest engine state accepted from QEMU (queues of thousands of connections).
const MAX_STATE: u64 = 1 << 30;

/// How long one request may take to arrive whole once it started, or its reply to
/// leave: QEMU writes each at once, so only a stuck peer waits this long.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);

const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;

type Shared = Arc<Mutex<Device>>;

fn lock(d: &Shared) -> MutexGuard<'_, Device> {
    // One thread uses the device: a poisoned lock only means a panic elsewhere
    // already ended the engine; the state is still consistent enough to drop.
    d.lock().unwrap_or_else(|p| p.into_inner())
}

/// The engine's side towards the guest: frames built here, then written into the
/// guest's receive queue.
pub struct VhostUserTx {
    device: Shared,
    buf: Box<[u8]>,
    /// The room last reserved is in use (the receive queue had room for it).
    reserved: bool,
}

impl VhostUserTx {
    fn new(device: Shared) -> VhostUserTx {
        VhostUserTx {
            device,
            buf: vec![0; HDR_LEN + MAX_FRAME].into_boxed_slice(),
            reserved: false,
        }
    }

    /// What the device counted.
    pub fn device_counters(&self) -> DeviceCounters {
        lock(&self.device).counters()
    }
}

impl GuestTx for VhostUserTx {
    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > MAX_FRAME || !lock(&self.device).rx_room(HDR_LEN + len) {
            self.reserved = false;
            return None;
        }
        self.reserved = true;
        Some(&mut self.buf[HDR_LEN..HDR_LEN + len])
    }

    fn commit(&mut self, len: usize) {
        self.commit_meta(len, TxMeta::default());
    }

    fn offloads(&self) -> bool {
        lock(&self.device).guest_offloads()
    }

    fn commit_meta(&mut self, len: usize, meta: TxMeta) {
        if !std::mem::take(&mut self.reserved) {
            return;
        }
        self.buf[..HDR_LEN].copy_from_slice(&vnet_header(meta));
        // The room was checked at `reserve`; a guest that took its buffers back since
        // loses this frame (as on a full link).
        let _ = lock(&self.device).push_frame(&mut self.buf[..HDR_LEN + len]);
    }

    fn device_counters(&self) -> Option<DeviceCounters> {
        Some(VhostUserTx::device_counters(self))
    }

    fn in_place(&mut self) -> Option<&mut dyn InPlace> {
        Some(self)
    }
}

impl InPlace for VhostUserTx {
    /// The frame's room found on the guest's receive queue by one walk, the payload
    /// written there by `fill` (the kernel), then the virtio-net header and the frame's
    /// headers, then the chains handed over.
    fn emit_in_place(&mut self, head: &mut [u8], max: usize, fill: &mut Fill<'_>) -> Placed {
        let at = HDR_LEN + head.len();
        if at + max > HDR_LEN + MAX_FRAME {
            return Placed::Elsewhere;
        }
        let mut dev = lock(&self.device);
        let Some(place) = dev.place_rx(device::flow_hash(head), at + max) else {
            return Placed::Full;
        };
        let Some(room) = dev.payload_room(&place, at, max) else {
            return Placed::Elsewhere;
        };
        let (n, meta) = fill(head, &room);
        if n == 0 {
            return Placed::Nothing;
        }
        let total = at + n.min(max);
        let mut vnet = vnet_header(meta);
        vnet[10..12].copy_from_slice(&(place.chains_for(total) as u16).to_le_bytes());
        // A guest that took its buffers back meanwhile loses this frame (as on a full
        // link; its queue stopped).
        let sent = dev.write_placed(&place, 0, &vnet)
            && dev.write_placed(&place, HDR_LEN, head)
            && dev.commit_rx(&place, total);
        if !sent {
            return Placed::Nothing;
        }
        dev.count_in_place();
        Placed::Sent
    }
}

/// `struct virtio_net_hdr_v1` for a frame `meta` says how to finish (`num_buffers` 0).
fn vnet_header(meta: TxMeta) -> [u8; HDR_LEN] {
    let mut h = [0u8; HDR_LEN];
    if meta.csum_start != 0 {
        h[0] = VNET_F_NEEDS_CSUM;
        h[6..8].copy_from_slice(&meta.csum_start.to_le_bytes());
        h[8..10].copy_from_slice(&meta.csum_offset.to_le_bytes());
    }
    if meta.gso_size != 0 {
        h[1] = if meta.gso_v6 {
            VNET_GSO_TCPV6
        } else {
            VNET_GSO_TCPV4
        };
        h[2..4].copy_from_slice(&meta.hdr_len.to_le_bytes());
        h[4..6].copy_from_slice(&meta.gso_size.to_le_bytes());
    }
    h
}

/// The vhost-user attachment (see the module's theory of operation).
pub struct VhostUserLink {
    device: Shared,
    listener: Option<UnixListener>,
    control: Option<BackendReqHandler<Mutex<Device>>>,
    control_fd: Option<RawFd>,
    /// The transmit queue's frames are copied here for the engine.
    frame: Box<[u8]>,
    /// The receive queue was running at the last look (its start means a guest).
    rx_running: bool,
    /// State came in from a migration's source: the queues' next start continues
    /// that guest, it is no new one.
    migrated_in: bool,
    /// A migration's state (and its length), read and checked, to be taken over once
    /// QEMU has started the queues: QEMU's requests until then (its answer to
    /// `CHECK_DEVICE_STATE`, the rest of the migration stream, the queues' start) do not
    /// wait for the take-over, and the guest's frames wait for it (one thread).
    incoming: Option<(State, usize)>,
    one_off: bool,
    repair: Option<Repair>,
}

impl VhostUserLink {
    /// Nothing more to read: each transmit queue signals the used chains and asks the
    /// guest for a kick.
    fn ask_kicks(dev: &mut Device) {
        for q in (TX..MAX_QUEUES).step_by(2) {
            dev.notify(q);
        }
    }

    /// Guests' QEMUs connect to `listener` (bound already); with `one_off` the first
    /// that leaves ends the engine.
    pub fn listening(listener: UnixListener, one_off: bool) -> (VhostUserLink, VhostUserTx) {
        VhostUserLink::new(Some(listener), None, one_off)
    }

    /// Serves the repair helper of migrations on `repair`.
    pub fn with_repair(mut self, repair: Option<Repair>) -> VhostUserLink {
        self.repair = repair;
        self
    }

    /// A control socket QEMU is connected to already (an inherited descriptor).
    pub fn connected(fd: OwnedFd) -> Result<(VhostUserLink, VhostUserTx), AttachError> {
        let stream = UnixStream::from(fd);
        Ok(VhostUserLink::new(None, Some(stream), true))
    }

    fn new(
        listener: Option<UnixListener>,
        stream: Option<UnixStream>,
        one_off: bool,
    ) -> (VhostUserLink, VhostUserTx) {
        let device: Shared = Arc::new(Mutex::new(Device::new()));
        let mut link = VhostUserLink {
            device: device.clone(),
            listener,
            control: None,
            control_fd: None,
            frame: vec![0; MAX_FRAME].into_boxed_slice(),
            rx_running: false,
            migrated_in: false,
            incoming: None,
            one_off,
            repair: None,
        };
        if let Some(s) = stream {
            link.take_control(s);
        }
        (link, VhostUserTx::new(device))
    }

    /// Serves QEMU on `stream` from now on (a fresh device).
    fn take_control(&mut self, stream: UnixStream) -> bool {
        if stream.set_nonblocking(false).is_err()
            || stream.set_read_timeout(Some(CONTROL_TIMEOUT)).is_err()
            || stream.set_write_timeout(Some(CONTROL_TIMEOUT)).is_err()
        {
            return false;
        }
        lock(&self.device).reset();
        self.rx_running = false;
        self.control_fd = Some(stream.as_raw_fd());
        self.control = Some(BackendReqHandler::from_stream(stream, self.device.clone()));
        true
    }

    /// Handles every request waiting on the control socket; false when QEMU is gone
    /// (or spoke nonsense).
    fn serve_control(&mut self, engine: &mut Engine<VhostUserTx>) -> bool {
        let (Some(handler), Some(fd)) = (self.control.as_mut(), self.control_fd) else {
            return false;
        };
        // No request finds a transmit chain still out (`read_into` gives each back).
        lock(&self.device).release_tx();
        loop {
            match waiting(fd) {
                Ok(true) => {}
                Ok(false) => return true,
                Err(_) => return false,
            }
            match early_enable(fd, &self.device) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!("vhost-user: cannot answer QEMU: {e}; closing");
                    return false;
                }
            }
            if let Err(e) = handler.handle_request() {
                match e {
                    vhost::vhost_user::Error::Disconnected
                    | vhost::vhost_user::Error::PartialMessage => {}
                    e => tracing::warn!("vhost-user: QEMU's request failed: {e}; closing"),
                }
                return false;
            }
            let transfer = lock(&self.device).take_transfer();
            if let Some(t) = transfer {
                let ok = if t.save {
                    save(t.file, engine, self.repair.as_mut())
                } else {
                    self.incoming = load(t.file);
                    self.migrated_in |= self.incoming.is_some();
                    self.incoming.is_some()
                };
                lock(&self.device).transfer_done(ok);
            }
        }
    }

    /// Registers kick descriptors that changed; tells the engine when the guest's
    /// driver started (or restarted) the device.
    fn after_control(&mut self, registry: &Registry, engine: &mut Engine<VhostUserTx>) -> Ready {
        let mut dev = lock(&self.device);
        for (q, ring) in dev.take_kick_changes() {
            if let Some(k) = ring.kick() {
                let token = Token(FIRST_KICK + q);
                let _ = registry.register(&mut SourceFd(&k.as_raw_fd()), token, Interest::READABLE);
            }
        }
        let running = dev.running(RX) && dev.running(TX);
        let resumed = dev.resumed();
        drop(dev);
        let started = running && !self.rx_running;
        self.rx_running = running;
        if started {
            if std::mem::take(&mut self.migrated_in) {
                // QEMU has started the queues (its requests meanwhile were not held up
                // by the take-over): the state goes into the engine, then its
                // connections out of repair mode, before the first frame is read.
                if let Some((state, len)) = self.incoming.take() {
                    let began = std::time::Instant::now();
                    engine.import_state(state, self.repair.as_mut());
                    tracing::info!(
                        "migration: {len} bytes of state taken over in {:.3} ms",
                        began.elapsed().as_secs_f64() * 1e3
                    );
                }
                engine.migration_resumed(self.repair.as_mut());
            } else if resumed {
                engine.guest_resumed(self.repair.as_mut());
            } else {
                engine.guest_connected();
            }
        }
        Ready {
            readable: started,
            writable: started,
            closed: false,
        }
    }

    fn drop_control(&mut self) {
        self.incoming = None;
        self.control = None; // closes the socket (and with it its registration)
        self.control_fd = None;
        self.rx_running = false;
        // The queues' eventfds and the memory go with the device.
        lock(&self.device).reset();
    }
}

/// Writes the engine's state for the migration's target (QEMU reads meanwhile).
fn save(
    file: std::fs::File,
    engine: &mut Engine<VhostUserTx>,
    repair: Option<&mut Repair>,
) -> bool {
    use std::io::Write;
    let began = std::time::Instant::now();
    let bytes = engine.export_state(repair).encode();
    let _ = nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    );
    let mut file = file;
    match file.write_all(&bytes) {
        Ok(()) => {
            tracing::info!(
                "migration: {} bytes of state handed to QEMU in {:.3} ms",
                bytes.len(),
                began.elapsed().as_secs_f64() * 1e3
            );
            true
        }
        Err(e) => {
            tracing::warn!("migration: cannot hand the state to QEMU: {e}");
            false
        }
    }
}

/// Reads the source's state (QEMU writes meanwhile) and checks it; it is taken over
/// once QEMU has started the queues (`after_control`).
fn load(file: std::fs::File) -> Option<(State, usize)> {
    use std::io::Read;
    let began = std::time::Instant::now();
    let _ = nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    );
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_STATE).read_to_end(&mut bytes) {
        tracing::warn!("migration: cannot read the state from QEMU: {e}");
        return None;
    }
    match State::decode(&bytes) {
        Ok(state) => {
            tracing::info!(
                "migration: {} bytes of state read in {:.3} ms",
                bytes.len(),
                began.elapsed().as_secs_f64() * 1e3
            );
            Some((state, bytes.len()))
        }
        Err(e) => {
            tracing::warn!("migration: the state from QEMU is refused: {e}");
            None
        }
    }
}

/// `VHOST_USER_SET_VRING_ENABLE`, and what its reply carries.
const SET_VRING_ENABLE: u32 = 18;
const FLAG_VERSION: u32 = 0x1;
const FLAG_REPLY: u32 = 0x4;
const FLAG_NEED_REPLY: u32 = 0x8;

/// Answers a `SET_VRING_ENABLE` that comes before `SET_FEATURES`; true when it did.
///
/// QEMU's vhost-user-net sends one at start-up (rings disabled, waiting for the ack)
/// before the features are set; `vhost`'s handler refuses it until PROTOCOL_FEATURES is
/// acknowledged and closes no reply, so QEMU would wait forever. This one message is
/// read and answered here (header: request, flags, size; body: index, num — all u32
/// little-endian); everything else goes to `vhost`.
fn early_enable(fd: RawFd, device: &Shared) -> io::Result<bool> {
    use nix::sys::socket::{MsgFlags, recv, send};
    if lock(device).features_set() {
        return Ok(false);
    }
    let mut msg = [0u8; 20];
    let n = recv(fd, &mut msg, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT)?;
    let word = |i: usize| u32::from_le_bytes([msg[i], msg[i + 1], msg[i + 2], msg[i + 3]]);
    let (request, flags, size, index, num) = (word(0), word(4), word(8), word(12), word(16));
    if n < 20 || request != SET_VRING_ENABLE || size != 8 {
        return Ok(false);
    }
    recv(fd, &mut msg, MsgFlags::MSG_DONTWAIT)?;
    let ok = lock(device).set_enabled(index, num == 1);
    if flags & FLAG_NEED_REPLY != 0 {
        let mut reply = [0u8; 20];
        reply[0..4].copy_from_slice(&SET_VRING_ENABLE.to_le_bytes());
        reply[4..8].copy_from_slice(&(FLAG_VERSION | FLAG_REPLY).to_le_bytes());
        reply[8..12].copy_from_slice(&8u32.to_le_bytes());
        reply[12..20].copy_from_slice(&u64::from(!ok).to_le_bytes());
        send(fd, &reply, MsgFlags::MSG_NOSIGNAL)?;
    }
    Ok(true)
}

/// Whether bytes wait on the control socket (without blocking).
fn waiting(fd: RawFd) -> io::Result<bool> {
    use nix::sys::socket::{MsgFlags, recv};
    let mut b = [0u8; 1];
    match recv(fd, &mut b, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN) => Ok(false),
        Err(nix::errno::Errno::EINTR) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

impl Attachment for VhostUserLink {
    type Tx = VhostUserTx;

    fn register(&mut self, registry: &Registry) -> io::Result<bool> {
        if let Some(l) = &self.listener {
            registry.register(&mut SourceFd(&l.as_raw_fd()), LISTENER, Interest::READABLE)?;
        }
        if let Some(fd) = self.control_fd {
            registry.register(&mut SourceFd(&fd), CONTROL, Interest::READABLE)?;
        }
        if let Some(r) = &self.repair {
            registry.register(&mut SourceFd(&r.listener_fd()), REPAIR, Interest::READABLE)?;
        }
        // The guest counts as there once its driver starts the queues.
        Ok(false)
    }

    fn connected(&self) -> bool {
        self.control.is_some()
    }

    fn next_frame(&mut self) -> Read<'_> {
        let mut dev = lock(&self.device);
        match dev.pop_frame(&mut self.frame) {
            // (`pop_frame` copies every frame whole: no `Split`.)
            Pop::Frame(n) | Pop::Split(n) => {
                drop(dev);
                Read::Frame(&self.frame[..n], false)
            }
            Pop::Empty => {
                Self::ask_kicks(&mut dev);
                Read::Empty
            }
        }
    }

    /// A frame of many pieces (a TCP segment the guest handed over as its headers and
    /// pages: with offloads, up to 64 KiB) goes to the engine as its first bytes and the
    /// rest where it lies in the guest's memory, so its data is copied once, by the
    /// socket; its chain goes back to the guest once the engine is done with it.
    fn read_into(&mut self, engine: &mut Engine<VhostUserTx>) -> Got {
        if self.migrated_in {
            // The migrated connections are relayed once both queues run
            // (`Engine::migration_resumed`); a frame read before would find none.
            return Got::Empty;
        }
        let mut dev = lock(&self.device);
        let Some(mem) = dev.memory().filter(|_| dev.guest_offloads()) else {
            // Without offloads its frames are at most an MTU: copied whole.
            drop(dev);
            return super::read_copied(self, engine);
        };
        let mut tail = GuestIov::default();
        match dev.pop_split(&mut self.frame, &mem, &mut tail) {
            Pop::Split(n) => {
                drop(dev);
                engine.guest_frame_split(&self.frame[..n], &tail);
                lock(&self.device).release_tx();
                Got::Frame
            }
            Pop::Frame(n) => {
                drop(dev);
                engine.guest_frame(&self.frame[..n]);
                Got::Frame
            }
            Pop::Empty => {
                Self::ask_kicks(&mut dev);
                Got::Empty
            }
        }
    }

    fn flush(tx: &mut VhostUserTx) -> bool {
        // The transmit queues too: a read stopped by the loop's budget has used chains
        // the guest is not told of yet.
        let mut dev = lock(&tx.device);
        for q in RX..MAX_QUEUES {
            dev.notify(q);
        }
        true
    }

    fn accept(&mut self, registry: &Registry, engine: &mut Engine<VhostUserTx>) {
        while let Some(Ok((conn, _))) = self.listener.as_ref().map(UnixListener::accept) {
            if self.control.is_some() {
                tracing::info!("vhost-user: a new QEMU connected; the previous one is dropped");
                self.drop_control();
            }
            if !self.take_control(conn) {
                continue;
            }
            if let Some(fd) = self.control_fd
                && registry
                    .register(&mut SourceFd(&fd), CONTROL, Interest::READABLE)
                    .is_err()
            {
                self.drop_control();
            }
        }
        let _ = engine; // told when the guest's driver starts the queues
    }

    fn on_event(
        &mut self,
        token: Token,
        registry: &Registry,
        engine: &mut Engine<VhostUserTx>,
    ) -> Ready {
        match token {
            REPAIR => {
                if let Some(r) = self.repair.as_mut() {
                    r.accept();
                }
                Ready::default()
            }
            CONTROL => {
                if !self.serve_control(engine) {
                    return Ready {
                        closed: true,
                        ..Ready::default()
                    };
                }
                self.after_control(registry, engine)
            }
            Token(t) if (FIRST_KICK..FIRST_KICK + MAX_QUEUES).contains(&t) => {
                let q = t - FIRST_KICK;
                lock(&self.device).drain_kick(q);
                Ready {
                    readable: q % 2 == 1,
                    writable: q.is_multiple_of(2),
                    closed: false,
                }
            }
            _ => Ready::default(),
        }
    }

    fn can_migrate(&self) -> bool {
        true
    }

    fn disconnect(&mut self, engine: &mut Engine<VhostUserTx>) -> bool {
        engine.guest_gone();
        if self.one_off || self.listener.is_none() {
            return true;
        }
        self.drop_control();
        false
    }
}
