//! The few system calls no safe wrapper offers, each in one small function.
//!
//! - `SO_PEEK_OFF` on TCP sockets (Linux 6.9+ for TCP): after it is set, every
//!   `recv(MSG_PEEK)` starts at the offset and advances it, and every consuming `recv`
//!   lowers it by what it consumed. The TCP relay keeps it equal to the bytes sent to the
//!   guest but not yet acknowledged.
//! - `recv(MSG_TRUNC)` on TCP drops bytes from the receive queue without copying them.
//! - `SIOCOUTQ`: bytes in a socket's send queue (sent but unacknowledged, plus unsent).
//! - `TUNSETIFF`: turns an open `/dev/net/tun` into a named tap device.
//!
//! What holds: every pointer handed to the kernel points into a live Rust object of the
//! stated length for the duration of the call; nothing here keeps a pointer.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::libc;

/// Sets `SO_PEEK_OFF`. Fails with `EINVAL`/`EOPNOTSUPP` on kernels without TCP support.
pub fn set_peek_off(fd: BorrowedFd<'_>, offset: i32) -> io::Result<()> {
    // SAFETY: `offset` lives on this stack frame for the call and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&raw const offset).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Drops up to `len` bytes from the head of a TCP socket's receive queue, without copying.
pub fn recv_discard(fd: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: with MSG_TRUNC on a TCP socket the kernel skips the copy and never touches
    // the buffer pointer (net/ipv4/tcp.c, tcp_recvmsg_locked); a null pointer is fine.
    let rc = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc as usize) }
}

/// Bytes waiting in a socket's send queue.
pub fn outq(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut value: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which points to `value`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &raw mut value) };
    if rc == 0 { Ok(value.max(0) as u32) } else { Err(io::Error::last_os_error()) }
}

/// Makes `fd` (an open `/dev/net/tun`) the tap device `name`, without packet information.
pub fn tun_set_tap(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads (and may write back the name into) one ifreq, which `req` is.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Owns descriptor `n`, inherited from the parent process for this one to use.
pub fn take_inherited_fd(n: std::os::fd::RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only reads the descriptor flags of number `n`, whatever it is.
    if n < 0 || unsafe { libc::fcntl(n, libc::F_GETFD) } < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("descriptor {n} is not open")));
    }
    // SAFETY: `n` is open (checked above) and was handed to this process to own
    // (`--fd N`); nothing else in the process refers to it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(n) })
}
