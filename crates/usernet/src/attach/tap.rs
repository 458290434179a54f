//! Tap devices: one frame per `read()`/`write()`.
//!
//! Taps made here carry a virtio-net header before each frame (`IFF_VNET_HDR`) and
//! offer the kernel checksum and TCP segmentation offloads, as a virtio NIC would: the
//! namespace's stack sends TCP segments of up to 64 KiB with partial checksums even at
//! MTU 1500, and the engine sends the same way ([`TxMeta`]), so a frame costs one system
//! call per 64 KiB instead of per MTU and no checksum is computed in user space for
//! data. An inherited tap is asked (`TUNGETIFF`) whether it has the header.
//!
//! [`create_in_netns`] makes the tap in another network namespace (entered on a
//! short-lived thread, as `setns` affects only the calling thread) and configures it as
//! pasta's `--config-net` does: the guest's MAC, MTU, the pod's addresses, default
//! routes through the gateways (`onlink`, as pod addresses are often /32). The
//! descriptor keeps working after the thread leaves the namespace. Configuration runs
//! `ip` from that thread (children inherit its namespace): this mode serves tests and
//! benchmarks; a netlink version can replace it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use mio::unix::SourceFd;
use mio::{Interest, Registry};

use super::{AttachError, Attachment, GUEST, Read};
use crate::config::{EngineConfig, format_mac};
use crate::engine::Engine;
use crate::frame::{GuestTx, TxMeta};
use crate::wire::vnet;

/// A frame of up to 64 KiB of IP plus Ethernet and virtio-net headers.
const BUF: usize = 65536 + 64;
/// `struct virtio_net_hdr` (no `num_buffers`): what `IFF_VNET_HDR` puts before a frame.
pub const VNET_HDR_LEN: usize = vnet::LEN;
const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;
/// Offloads asked of a tap with a virtio-net header: partial checksums and TCP
/// segmentation both ways.
const OFFLOADS: nix::libc::c_uint =
    netbind_tun::TUN_F_CSUM | netbind_tun::TUN_F_TSO4 | netbind_tun::TUN_F_TSO6;

pub struct TapTx {
    fd: OwnedFd,
    buf: Box<[u8]>,
    /// Bytes of virtio-net header before each frame (0 or [`VNET_HDR_LEN`]).
    hdr: usize,
    pub write_errors: u64,
}

impl TapTx {
    /// A tap's writing side; `vnet_hdr` when it was opened with `IFF_VNET_HDR`.
    pub fn new(fd: OwnedFd, vnet_hdr: bool) -> TapTx {
        TapTx {
            fd,
            buf: vec![0; BUF].into_boxed_slice(),
            hdr: if vnet_hdr { VNET_HDR_LEN } else { 0 },
            write_errors: 0,
        }
    }

    pub fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        self.buf.get_mut(self.hdr..self.hdr + len)
    }

    pub fn offloads(&self) -> bool {
        self.hdr != 0
    }

    pub fn commit(&mut self, len: usize) {
        self.commit_meta(len, TxMeta::default());
    }

    pub fn commit_meta(&mut self, len: usize, meta: TxMeta) {
        if self.hdr != 0 {
            let mut h = vnet::Hdr::default();
            if meta.csum_start != 0 {
                h.flags = VNET_F_NEEDS_CSUM;
                h.csum_start = meta.csum_start;
                h.csum_offset = meta.csum_offset;
            }
            if meta.gso_size != 0 {
                h.gso_type = if meta.gso_v6 {
                    VNET_GSO_TCPV6
                } else {
                    VNET_GSO_TCPV4
                };
                h.hdr_len = meta.hdr_len;
                h.gso_size = meta.gso_size;
            }
            vnet::write(&mut self.buf[..VNET_HDR_LEN], &h);
        }
        if nix::unistd::write(self.fd.as_fd(), &self.buf[..self.hdr + len]).is_err() {
            self.write_errors += 1;
        }
    }
}

pub struct TapRx {
    fd: OwnedFd,
    buf: Box<[u8]>,
    hdr: usize,
}

impl TapRx {
    pub fn new(fd: OwnedFd, vnet_hdr: bool) -> TapRx {
        TapRx {
            fd,
            buf: vec![0; BUF].into_boxed_slice(),
            hdr: if vnet_hdr { VNET_HDR_LEN } else { 0 },
        }
    }

    /// The next frame, without its virtio-net header: a TCP segment may be up to 64 KiB
    /// whatever the MTU, and its checksum only partial — the engine relays payloads and
    /// verifies no checksum, so neither matters.
    pub fn next_frame(&mut self) -> Read<'_> {
        loop {
            match nix::unistd::read(self.fd.as_fd(), &mut self.buf) {
                Ok(0) => return Read::Closed,
                Ok(n) => return Read::Frame(self.buf.get(self.hdr..n).unwrap_or(&[]), false),
                Err(nix::errno::Errno::EAGAIN) => return Read::Empty,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return Read::Closed,
            }
        }
    }
}

impl GuestTx for TapTx {
    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        TapTx::reserve(self, len)
    }

    fn commit(&mut self, len: usize) {
        TapTx::commit(self, len)
    }

    fn offloads(&self) -> bool {
        TapTx::offloads(self)
    }

    fn commit_meta(&mut self, len: usize, meta: TxMeta) {
        TapTx::commit_meta(self, len, meta)
    }
}

/// A tap attachment (made here or inherited): its reading side and descriptor. It is
/// on the line from the start; when it closes, the loop ends.
pub struct TapLink {
    rx: TapRx,
    fd: std::os::fd::RawFd,
}

impl TapLink {
    /// Splits an open tap into its attachment and its transmit side (non-blocking, with
    /// a virtio-net header if it was made with one).
    pub fn new(fd: OwnedFd) -> Result<(TapLink, TapTx), AttachError> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK | OFlag::O_RDWR))
            .map_err(|e| AttachError::Descriptor(e.into()))?;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let dup = fd.try_clone().map_err(AttachError::Descriptor)?;
        let vnet =
            netbind_tun::iff_flags(fd.as_fd()).is_ok_and(|f| f & netbind_tun::IFF_VNET_HDR != 0);
        let link = TapLink {
            rx: TapRx::new(dup, vnet),
            fd: raw,
        };
        Ok((link, TapTx::new(fd, vnet)))
    }
}

impl Attachment for TapLink {
    type Tx = TapTx;

    fn register(&mut self, registry: &Registry) -> io::Result<bool> {
        let both = Interest::READABLE | Interest::WRITABLE;
        registry.register(&mut SourceFd(&self.fd), GUEST, both)?;
        Ok(true)
    }

    fn connected(&self) -> bool {
        true
    }

    fn next_frame(&mut self) -> Read<'_> {
        self.rx.next_frame()
    }

    fn flush(_: &mut TapTx) -> bool {
        true
    }

    fn accept(&mut self, _: &Registry, _: &mut Engine<TapTx>) {}

    fn disconnect(&mut self, _: &mut Engine<TapTx>) -> bool {
        true
    }
}

/// Where a namespace name points: `/run/netns/NAME`, or a path as given.
pub fn netns_path(name: &str) -> PathBuf {
    if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        Path::new("/run/netns").join(name)
    }
}

/// Opens `/dev/net/tun` as tap `name` (non-blocking) in the calling thread's namespace,
/// with a virtio-net header and offloads: the namespace's stack hands over TCP segments
/// of up to 64 KiB with partial checksums, and takes them the same way, whatever the MTU.
pub fn open_tap(name: &str) -> io::Result<OwnedFd> {
    open_tap_with(name, true)
}

/// As [`open_tap`]; without `offloads`, a plain tap (no virtio-net header): one frame of
/// at most the MTU per read, with full checksums, as a NIC without offloads sees them.
pub fn open_tap_with(name: &str, offloads: bool) -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let fd = OwnedFd::from(file);
    let mut flags = netbind_tun::IFF_TAP | netbind_tun::IFF_NO_PI;
    if offloads {
        flags |= netbind_tun::IFF_VNET_HDR;
    }
    netbind_tun::set_iff(fd.as_fd(), name, flags)?;
    if offloads {
        netbind_tun::set_offload(fd.as_fd(), OFFLOADS)?;
    }
    Ok(fd)
}

/// Creates tap `name` in namespace `netns` and gives it the guest's configuration.
pub fn create_in_netns(
    netns: &str,
    name: &str,
    cfg: &EngineConfig,
) -> Result<OwnedFd, AttachError> {
    create_in_netns_with(netns, name, cfg, true)
}

/// As [`create_in_netns`]; `offloads` as in [`open_tap_with`].
pub fn create_in_netns_with(
    netns: &str,
    name: &str,
    cfg: &EngineConfig,
    offloads: bool,
) -> Result<OwnedFd, AttachError> {
    let ns_file = File::open(netns_path(netns)).map_err(|source| AttachError::Netns {
        name: netns.into(),
        source,
    })?;
    let name_owned = name.to_string();
    let cfg = cfg.clone();
    let netns_name = netns.to_string();
    std::thread::spawn(move || -> Result<OwnedFd, AttachError> {
        nix::sched::setns(ns_file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            AttachError::Netns {
                name: netns_name,
                source: e.into(),
            }
        })?;
        let fd = open_tap_with(&name_owned, offloads).map_err(|source| AttachError::Tap {
            name: name_owned.clone(),
            source,
        })?;
        configure(&name_owned, &cfg)?;
        Ok(fd)
    })
    .join()
    .map_err(|_| AttachError::Tap {
        name: name.into(),
        source: io::Error::other("thread panicked"),
    })?
}

fn configure(name: &str, cfg: &EngineConfig) -> Result<(), AttachError> {
    // One `ip` command per line; `name` has no whitespace (the kernel refused such a
    // name when the tap was made), nor have addresses and MACs.
    let mut lines = vec![format!("link set {name} mtu {}", cfg.mtu)];
    if let Some(mac) = cfg.guest_mac {
        lines[0] += &format!(" address {}", format_mac(mac));
    }
    if let Some(a) = cfg.guest4 {
        lines.push(format!("addr add {a} dev {name}"));
    }
    if let Some(a) = cfg.guest6 {
        lines.push(format!("-6 addr add {a} dev {name} nodad"));
    }
    lines.push(format!("link set {name} up"));
    if let (Some(_), Some(gw)) = (cfg.guest4, cfg.gateway4) {
        lines.push(format!("route add default via {gw} dev {name} onlink"));
    }
    if let (Some(_), Some(gw)) = (cfg.guest6, cfg.gateway6) {
        lines.push(format!("-6 route add default via {gw} dev {name} onlink"));
    }
    let cmds = lines
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>());
    for args in cmds {
        let output = Command::new("ip").args(&args).output();
        let fail = |detail: String| AttachError::Configure {
            name: name.into(),
            command: format!("ip {}", args.join(" ")),
            detail,
        };
        match output {
            Ok(o) if o.status.success() => {}
            Ok(o) => return Err(fail(String::from_utf8_lossy(&o.stderr).trim().to_string())),
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    Ok(())
}
