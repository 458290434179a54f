//! Tap devices: one frame per `read()`/`write()`.
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

use super::{AttachError, Read};
use crate::config::{EngineConfig, format_mac};
use crate::sys;

const BUF: usize = 65536 + 64;

pub struct TapTx {
    fd: OwnedFd,
    buf: Box<[u8]>,
    pub write_errors: u64,
}

impl TapTx {
    pub fn new(fd: OwnedFd) -> TapTx {
        TapTx { fd, buf: vec![0; BUF].into_boxed_slice(), write_errors: 0 }
    }

    pub fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        self.buf.get_mut(..len)
    }

    pub fn commit(&mut self, len: usize) {
        if nix::unistd::write(self.fd.as_fd(), &self.buf[..len]).is_err() {
            self.write_errors += 1;
        }
    }
}

pub struct TapRx {
    fd: OwnedFd,
    buf: Box<[u8]>,
}

impl TapRx {
    pub fn new(fd: OwnedFd) -> TapRx {
        TapRx { fd, buf: vec![0; BUF].into_boxed_slice() }
    }

    pub fn next_frame(&mut self) -> Read<'_> {
        loop {
            match nix::unistd::read(self.fd.as_fd(), &mut self.buf) {
                Ok(0) => return Read::Closed,
                Ok(n) => return Read::Frame(&self.buf[..n]),
                Err(nix::errno::Errno::EAGAIN) => return Read::Empty,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return Read::Closed,
            }
        }
    }
}

/// Where a namespace name points: `/run/netns/NAME`, or a path as given.
pub fn netns_path(name: &str) -> PathBuf {
    if name.starts_with('/') { PathBuf::from(name) } else { Path::new("/run/netns").join(name) }
}

/// Opens `/dev/net/tun` as tap `name` (non-blocking) in the calling thread's namespace.
pub fn open_tap(name: &str) -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let fd = OwnedFd::from(file);
    sys::tun_set_tap(fd.as_fd(), name)?;
    Ok(fd)
}

/// Creates tap `name` in namespace `netns` and gives it the guest's configuration.
pub fn create_in_netns(netns: &str, name: &str, cfg: &EngineConfig) -> Result<OwnedFd, AttachError> {
    let ns_file = File::open(netns_path(netns)).map_err(|source| AttachError::Netns { name: netns.into(), source })?;
    let name_owned = name.to_string();
    let cfg = cfg.clone();
    let netns_name = netns.to_string();
    std::thread::spawn(move || -> Result<OwnedFd, AttachError> {
        nix::sched::setns(ns_file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| AttachError::Netns { name: netns_name, source: e.into() })?;
        let fd = open_tap(&name_owned).map_err(|source| AttachError::Tap { name: name_owned.clone(), source })?;
        configure(&name_owned, &cfg)?;
        Ok(fd)
    })
    .join()
    .map_err(|_| AttachError::Tap { name: name.into(), source: io::Error::other("thread panicked") })?
}

fn configure(name: &str, cfg: &EngineConfig) -> Result<(), AttachError> {
    let mut cmds: Vec<Vec<String>> = Vec::new();
    let mut link = vec!["link".into(), "set".into(), name.into(), "mtu".into(), cfg.mtu.to_string()];
    if let Some(mac) = cfg.guest_mac {
        link.extend(["address".into(), format_mac(mac)]);
    }
    cmds.push(link);
    if let Some(a) = cfg.guest4 {
        cmds.push(vec!["addr".into(), "add".into(), a.to_string(), "dev".into(), name.into()]);
    }
    if let Some(a) = cfg.guest6 {
        cmds.push(vec!["-6".into(), "addr".into(), "add".into(), a.to_string(), "dev".into(), name.into(), "nodad".into()]);
    }
    cmds.push(vec!["link".into(), "set".into(), name.into(), "up".into()]);
    if let (Some(_), Some(gw)) = (cfg.guest4, cfg.gateway4) {
        cmds.push(vec!["route".into(), "add".into(), "default".into(), "via".into(), gw.to_string(), "dev".into(), name.into(), "onlink".into()]);
    }
    if let (Some(_), Some(gw)) = (cfg.guest6, cfg.gateway6) {
        cmds.push(vec!["-6".into(), "route".into(), "add".into(), "default".into(), "via".into(), gw.to_string(), "dev".into(), name.into(), "onlink".into()]);
    }
    for args in cmds {
        let output = Command::new("ip").args(&args).output();
        let fail = |detail: String| AttachError::Configure { name: name.into(), command: format!("ip {}", args.join(" ")), detail };
        match output {
            Ok(o) if o.status.success() => {}
            Ok(o) => return Err(fail(String::from_utf8_lossy(&o.stderr).trim().to_string())),
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    Ok(())
}
