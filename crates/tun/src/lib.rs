//! The tun/tap ioctls, in one place for every crate that makes or opens a tap:
//! `netbind-netns` makes persistent taps for QEMU (`TUNSETIFF`, `TUNSETOWNER`,
//! `TUNSETGROUP`, `TUNSETPERSIST`), the user-mode engine opens one for itself and asks an
//! inherited one about its header (`TUNSETIFF`, `TUNGETIFF`, `TUNSETOFFLOAD`).
//!
//! How it works: an open `/dev/net/tun` becomes a named tap with [`set_iff`] (the name
//! and the `IFF_*` flags in a `struct ifreq`); the other calls take plain integers. Linux
//! cannot create a tap through rtnetlink (the `tun` link kind refuses `RTM_NEWLINK`), so
//! this is the only way, as `ip tuntap add` does it too.
//!
//! What holds: every ioctl gets a borrowed, hence live, descriptor; `TUNSETIFF` and
//! `TUNGETIFF` a pointer to a zero-initialised `struct ifreq` on the caller's stack that
//! lives across the call; names are checked (1–15 bytes, no NUL) before they are copied
//! in, so the kernel always sees a NUL-terminated name. This is the only `unsafe` code of
//! the crate, each block with its `SAFETY` comment.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::libc;

pub const IFF_TAP: libc::c_short = libc::IFF_TAP as libc::c_short;
pub const IFF_NO_PI: libc::c_short = libc::IFF_NO_PI as libc::c_short;
pub const IFF_VNET_HDR: libc::c_short = libc::IFF_VNET_HDR as libc::c_short;
pub const IFF_MULTI_QUEUE: libc::c_short = libc::IFF_MULTI_QUEUE as libc::c_short;
/// Offload flags for [`set_offload`].
pub use libc::{TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6};

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether `name` fits an interface name: 1 to 15 bytes, no NUL.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() < libc::IFNAMSIZ && !name.as_bytes().contains(&0)
}

/// `TUNSETIFF`: makes `fd` (an open `/dev/net/tun`) the device `name` with `flags`
/// (`IFF_TAP | IFF_NO_PI`, and `IFF_VNET_HDR`, `IFF_MULTI_QUEUE` as wanted).
pub fn set_iff(fd: BorrowedFd<'_>, name: &str, flags: libc::c_short) -> io::Result<()> {
    if !valid_name(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags;
    // SAFETY: TUNSETIFF reads (and may write back the name into) one ifreq, which `req`
    // is, alive for the call; its name is NUL-terminated (at most 15 of 16 bytes set).
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut req) })
}

/// `TUNGETIFF`: the `IFF_*` flags of a tun/tap descriptor (an error for anything else).
pub fn iff_flags(fd: BorrowedFd<'_>) -> io::Result<libc::c_short> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes one ifreq into `req`; on other descriptors it fails.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &raw mut req) })?;
    // SAFETY: after TUNGETIFF the flags member of the union is the one written.
    Ok(unsafe { req.ifr_ifru.ifru_flags })
}

/// `TUNSETOFFLOAD`: which offloads the tap's reader handles (`TUN_F_CSUM`, …).
pub fn set_offload(fd: BorrowedFd<'_>, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned int), no pointer.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong) })
}

/// `TUNSETOWNER`: the user that may attach to the tap.
pub fn set_owner(fd: BorrowedFd<'_>, uid: u32) -> io::Result<()> {
    // SAFETY: TUNSETOWNER takes a plain integer by value.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOWNER, uid as libc::c_ulong) })
}

/// `TUNSETGROUP`: the group that may attach to the tap.
pub fn set_group(fd: BorrowedFd<'_>, gid: u32) -> io::Result<()> {
    // SAFETY: TUNSETGROUP takes a plain integer by value.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETGROUP, gid as libc::c_ulong) })
}

/// `TUNSETPERSIST`: whether the device outlives the descriptor.
pub fn set_persist(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes a plain integer by value.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, libc::c_ulong::from(on)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_size() {
        assert_eq!(std::mem::size_of::<libc::ifreq>(), 40);
    }

    #[test]
    fn names_are_one_to_fifteen_bytes_without_nul() {
        assert!(valid_name("tap0"));
        assert!(valid_name("fifteen-bytes-x"));
        assert!(!valid_name("sixteen-bytes-xx"));
        assert!(!valid_name(""));
        assert!(!valid_name("a\0b"));
    }
}
