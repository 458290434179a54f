//! The few system calls no safe wrapper offers, each in one small function.
//!
//! - `SO_PEEK_OFF` on TCP sockets (Linux 6.9+ for TCP): after it is set, every
//!   `recv(MSG_PEEK)` starts at the offset and advances it, and every consuming `recv`
//!   lowers it by what it consumed. The TCP relay keeps it equal to the bytes sent to the
//!   guest but not yet acknowledged.
//! - `recv(MSG_TRUNC)` on TCP drops bytes from the receive queue without copying them.
//! - `SO_MEMINFO`: a socket's send buffer size and the memory its send queue holds, in
//!   the kernel's own accounting (what decides whether `send()` accepts more).
//! - `poll(POLLOUT)` with no timeout: asks the kernel whether a TCP socket is writable; a
//!   "no" also arms the socket's write-space wakeup (`SOCK_NOSPACE`), which an
//!   edge-triggered epoll otherwise never gets for a socket that never filled up.
//! - `ICMP_FILTER` / `ICMPV6_FILTER` on raw ICMP sockets: the kernel delivers only the
//!   message types asked for (`ping_raw.rs`), not every ICMP packet the pod receives.
//! - `PR_SET_NO_NEW_PRIVS` and `madvise(MADV_DONTNEED)` on read-only file mappings, for
//!   `harden.rs`.
//!
//! - The TCP repair options (`TCP_REPAIR_QUEUE`, `TCP_QUEUE_SEQ`, `TCP_REPAIR_OPTIONS`,
//!   `TCP_REPAIR_WINDOW`, `TCP_TIMESTAMP`, and `TCP_REPAIR` itself for the repair
//!   helper), `TCP_INFO`'s option bits and window scales, and the queue lengths
//!   (`FIONREAD`/`TIOCOUTQ` on a TCP socket: unread bytes, unacknowledged bytes), for
//!   moving a connection's kernel state during a migration (`migrate/`).
//! - `SO_ATTACH_FILTER` with a one-instruction program that keeps nothing: from then on
//!   the kernel drops every segment for the socket before TCP sees it — none is
//!   acknowledged, none answered with a reset — so the peer keeps it and sends it again
//!   later (a migration's switch-over, `migrate/`); `SO_DETACH_FILTER` takes it off again
//!   (the migration failed and the guest runs here again).
//!
//! - `recvmsg(MSG_PEEK)` into a vhost-user guest's own receive buffers ([`GuestIov`],
//!   [`peek_into`]): a socket's data goes to the guest in one copy, the kernel's; and
//!   `sendmsg` from its transmit buffers ([`send_from_guest`]): the guest's data goes to
//!   a socket in one copy too. Where the engine must keep such bytes (a segment the
//!   socket did not take whole), [`copy_from_guest`] reads them out.
//!
//! The tun/tap ioctls (`TUNSETIFF`, `TUNGETIFF`, `TUNSETOFFLOAD`) are not here: they are
//! `netbind-tun`'s, shared with `netbind-netns` (see `attach/tap.rs`).
//!
//! What holds: every pointer handed to the kernel points into a live Rust object of the
//! stated length for the duration of the call; nothing here keeps a pointer.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::libc;

/// Lets a raw socket of `IPPROTO_ICMP` (`v6` false) or `IPPROTO_ICMPV6` receive only
/// messages of the types in `pass`.
pub fn icmp_pass_only(fd: BorrowedFd<'_>, v6: bool, pass: &[u8]) -> io::Result<()> {
    // Both filters are bitmaps of *blocked* types: ICMP's one `u32` for types 0–31,
    // ICMPv6's `struct icmp6_filter` of eight `u32` for types 0–255.
    let mut blocked = [u32::MAX; 8];
    for t in pass {
        blocked[usize::from(t >> 5)] &= !(1 << (t & 31));
    }
    let (level, name, len) = if v6 {
        (libc::IPPROTO_ICMPV6, 1 /* ICMPV6_FILTER */, 32)
    } else {
        (libc::SOL_RAW, 1 /* ICMP_FILTER */, 4)
    };
    // SAFETY: `blocked` is a live array of at least `len` bytes for the call; the kernel
    // copies it and keeps no pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            blocked.as_ptr().cast(),
            len as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

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
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// A socket's send buffer and the memory queued in it (`SO_MEMINFO`): `(sndbuf, queued)`.
pub fn send_memory(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut info = [0u32; 9];
    let mut len = size_of_val(&info) as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, which is that long, and
    // stores the length it wrote into `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((
        info[libc::SK_MEMINFO_SNDBUF as usize],
        info[libc::SK_MEMINFO_WMEM_QUEUED as usize],
    ))
}

/// Whether `fd` is writable right now; when it is not, the kernel will wake the event
/// loop (`EPOLLOUT`) once it is.
pub fn writable_or_arm(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call; a zero timeout never blocks.
    let rc = unsafe { libc::poll(&raw mut p, 1, 0) };
    rc > 0 && p.revents & libc::POLLOUT != 0
}

/// Owns descriptor `n`, inherited from the parent process for this one to use.
pub fn take_inherited_fd(n: std::os::fd::RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only reads the descriptor flags of number `n`, whatever it is.
    if n < 0 || unsafe { libc::fcntl(n, libc::F_GETFD) } < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {n} is not open"),
        ));
    }
    // SAFETY: `n` is open (checked above) and was handed to this process to own
    // (`--fd N`); nothing else in the process refers to it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(n) })
}

/// Sets `no_new_privs` (needed to install a seccomp filter without `CAP_SYS_ADMIN`).
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Drops the page-table entries of `[start, start + len)`, a private, read-only file
/// mapping none of whose pages was ever written (the caller checked `/proc/self/smaps`):
/// the next access reads the same bytes back from the file. Errors are ignored (the
/// mapping is left as it was).
pub fn release_file_range(start: usize, len: usize) {
    // SAFETY: MADV_DONTNEED on a private file mapping without anonymous (written) pages
    // changes no byte the program can observe — each page refaults from the file with
    // the content it had; no Rust object owns these pages (they are code and constants
    // of the binary and its libraries). A range that is not mapped only makes it fail.
    let _ = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
}

/// How many CPUs this thread may run on.
pub fn cpus_allowed() -> io::Result<usize> {
    let set = allowed_cpus()?;
    Ok((0..nix::sched::CpuSet::count())
        .filter(|&i| set.is_set(i).unwrap_or(false))
        .count())
}

/// The CPUs this thread may run on.
pub fn allowed_cpus() -> io::Result<nix::sched::CpuSet> {
    Ok(nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(
        0,
    ))?)
}

/// Clock ticks per second, the unit of `/proc/stat`'s times.
pub fn clock_ticks() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 100,
    }
}

/// `len` bytes of private anonymous memory: zero, and costing memory only for the pages
/// written, until dropped (then returned to the kernel at once). For a large buffer that
/// is seldom needed and mostly unwritten (held TCP data): from the allocator, the same
/// buffer would be zeroed by hand, every page touched, once it reuses its own heap.
pub struct ZeroPages {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value alone; nothing ties it to the
// thread that made it.
unsafe impl Send for ZeroPages {}

impl ZeroPages {
    pub fn new(len: usize) -> io::Result<ZeroPages> {
        // SAFETY: a new private anonymous mapping at an address the kernel picks: it
        // aliases nothing, and no fd or offset is involved.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast()).ok_or_else(io::Error::last_os_error)?;
        Ok(ZeroPages { ptr, len })
    }
}

impl std::ops::Deref for ZeroPages {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is a readable mapping of `len` bytes owned by `self` (zero-filled
        // by the kernel, or written through `deref_mut`); the slice borrows `self`, so it
        // ends before the mapping does.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for ZeroPages {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only slice of it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for ZeroPages {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// `include/uapi/linux/tcp.h`.
pub mod tcp_repair {
    pub const TCP_REPAIR: i32 = 19;
    pub const TCP_REPAIR_QUEUE: i32 = 20;
    pub const TCP_QUEUE_SEQ: i32 = 21;
    pub const TCP_REPAIR_OPTIONS: i32 = 22;
    pub const TCP_TIMESTAMP: i32 = 24;
    pub const TCP_REPAIR_WINDOW: i32 = 29;
    pub const NO_QUEUE: i32 = 0;
    pub const RECV_QUEUE: i32 = 1;
    pub const SEND_QUEUE: i32 = 2;
    /// `tcp_repair_opt` codes.
    pub const OPT_MSS: u32 = 2;
    pub const OPT_WINDOW: u32 = 3;
    pub const OPT_SACK_PERM: u32 = 4;
    pub const OPT_TIMESTAMP: u32 = 8;
    /// `tcpi_options` bits.
    pub const TCPI_OPT_TIMESTAMPS: u8 = 1;
    pub const TCPI_OPT_SACK: u8 = 2;
    pub const TCPI_OPT_WSCALE: u8 = 4;
    /// `tcpi_state` values (`include/net/tcp_states.h`).
    pub const ESTABLISHED: u8 = 1;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const CLOSING: u8 = 11;
}

/// Sets a TCP-level option from a plain array of `u32` (an `int`, a `struct
/// tcp_repair_window`, an array of `struct tcp_repair_opt`).
pub fn tcp_set(fd: BorrowedFd<'_>, name: i32, value: &[u32]) -> io::Result<()> {
    // SAFETY: `value` is a live slice of exactly the length passed for the call; the
    // kernel copies it and keeps no pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            name,
            value.as_ptr().cast(),
            size_of_val(value) as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads a TCP-level option of `N` `u32`s (an `int`, a `struct tcp_repair_window`).
pub fn tcp_get<const N: usize>(fd: BorrowedFd<'_>, name: i32) -> io::Result<[u32; N]> {
    let mut v = [0u32; N];
    let mut len = size_of_val(&v) as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`, which is that long, and
    // stores the length it wrote into `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            name,
            v.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Drops every packet for `fd` from now on, before its protocol sees it.
pub fn drop_all_input(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut keep_nothing = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let program = libc::sock_fprog {
        len: 1,
        filter: keep_nothing.as_mut_ptr(),
    };
    // SAFETY: `program` and the instruction it points to are live for the call; the
    // kernel copies the program and keeps no pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const program).cast(),
            size_of_val(&program) as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `fd` has a socket filter (one a repair helper attached, say).
pub fn has_filter(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut len: libc::socklen_t = 0;
    // SAFETY: with a zero length the kernel writes no option value (a null pointer is
    // what it expects then) and stores the filter's instruction count in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER, // SO_GET_FILTER
            std::ptr::null_mut(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(len > 0)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Takes the filter [`drop_all_input`] attached off `fd` again.
pub fn detach_filter(fd: BorrowedFd<'_>) -> io::Result<()> {
    let unused: libc::c_int = 0;
    // SAFETY: the option reads no argument; a live `int` is passed all the same.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DETACH_FILTER,
            (&raw const unused).cast(),
            size_of_val(&unused) as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The head of `TCP_INFO`: the connection's state, its options and window scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfoHead {
    /// `TCP_ESTABLISHED`, `TCP_CLOSE_WAIT`, ... (the kernel's numbering).
    pub state: u8,
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
}

pub fn tcp_info_head(fd: BorrowedFd<'_>) -> io::Result<TcpInfoHead> {
    // `struct tcp_info` starts with state, ca_state, retransmits, probes, backoff,
    // options (u8 each), then snd_wscale:4 and rcv_wscale:4 in one byte.
    let w: [u32; 2] = tcp_get(fd, libc::TCP_INFO)?;
    let b = [w[0].to_ne_bytes(), w[1].to_ne_bytes()].concat();
    Ok(TcpInfoHead {
        state: b[0],
        options: b[5],
        snd_wscale: b[6] & 0xf,
        rcv_wscale: b[6] >> 4,
    })
}

/// An `int`-valued ioctl on a socket: `FIONREAD` (a TCP socket's unread bytes) or
/// `TIOCOUTQ` (its unacknowledged bytes).
pub fn socket_ioctl_int(fd: BorrowedFd<'_>, request: libc::Ioctl) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: both requests write one `int` through the pointer, to `v`, live here.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, &raw mut v) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(v).map_err(|_| io::ErrorKind::InvalidData.into())
}

/// The most slices of guest memory one [`peek_into`] writes.
pub const GUEST_IOV_MAX: usize = 64;

/// Slices of a vhost-user guest's memory, for the kernel to write a socket's data into
/// ([`peek_into`]) or to send from ([`send_from_guest`]); it borrows the memory they lie
/// in, so the mapping outlives it. The guest may write the same memory at any time: its
/// bytes are never made a Rust slice, only handed to the kernel or copied out.
pub struct GuestIov<'a> {
    iov: [libc::iovec; GUEST_IOV_MAX],
    n: usize,
    len: usize,
    _memory: std::marker::PhantomData<&'a ()>,
}

impl std::fmt::Debug for GuestIov<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GuestIov({} slices, {} bytes)", self.n, self.len)
    }
}

impl Default for GuestIov<'_> {
    fn default() -> Self {
        GuestIov {
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; GUEST_IOV_MAX],
            n: 0,
            len: 0,
            _memory: std::marker::PhantomData,
        }
    }
}

impl<'a> GuestIov<'a> {
    /// Adds `slice`; None when [`GUEST_IOV_MAX`] are there already.
    pub fn push<B: vm_memory::bitmap::BitmapSlice>(
        &mut self,
        slice: &vm_memory::VolatileSlice<'a, B>,
    ) -> Option<()> {
        let at = self.iov.get_mut(self.n)?;
        // The memory is an mmap of the guest's memfd (no Xen grant mapping, whose guard
        // would unmap it on drop): the pointer stays valid while the slice's borrow does.
        *at = libc::iovec {
            iov_base: slice.ptr_guard_mut().as_ptr().cast(),
            iov_len: slice.len(),
        };
        self.n += 1;
        self.len += slice.len();
        Some(())
    }

    /// Empty again.
    pub fn clear(&mut self) {
        (self.n, self.len) = (0, 0);
    }

    /// The bytes the slices hold.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slices from byte `from` on: each slice's address and length.
    fn from(&self, from: usize) -> impl Iterator<Item = (*mut u8, usize)> + '_ {
        let mut skip = from;
        self.iov[..self.n].iter().filter_map(move |v| {
            let s = skip.min(v.iov_len);
            skip -= s;
            // `s` is within the slice: the pointer stays inside it (or one past its end).
            (s < v.iov_len).then(|| (v.iov_base.cast::<u8>().wrapping_add(s), v.iov_len - s))
        })
    }
}

/// Sends `head`, then the guest's bytes `tail` holds from byte `tail_from` on, in one
/// `sendmsg` (non-blocking, no SIGPIPE); how many bytes the socket took.
pub fn send_from_guest(
    fd: BorrowedFd<'_>,
    head: &[u8],
    tail: &GuestIov<'_>,
    tail_from: usize,
) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; GUEST_IOV_MAX + 1];
    let mut n = 0;
    if !head.is_empty() {
        iov[0] = libc::iovec {
            iov_base: head.as_ptr().cast_mut().cast(),
            iov_len: head.len(),
        };
        n = 1;
    }
    for (at, (base, len)) in iov[n..].iter_mut().zip(tail.from(tail_from)) {
        *at = libc::iovec {
            iov_base: base.cast(),
            iov_len: len,
        };
        n += 1;
    }
    let msg = msghdr(&iov[..n]);
    // SAFETY: the first iovec is `head`, a live slice; the others point into the guest
    // memory mapping `tail` borrows (live for the call), each within its slice. The
    // kernel only reads them and keeps no pointer.
    let rc = unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &raw const msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// A `msghdr` of no name and no control data over `iov` (valid while `iov` is).
fn msghdr(iov: &[libc::iovec]) -> libc::msghdr {
    // SAFETY: an all-zero `msghdr` is a valid one (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr().cast_mut();
    msg.msg_iovlen = iov.len();
    msg
}

/// Copies the guest's bytes `tail` holds from byte `from` on into `dst`, as many as fit;
/// how many it copied.
pub fn copy_from_guest(tail: &GuestIov<'_>, from: usize, dst: &mut [u8]) -> usize {
    let mut done = 0;
    for (base, len) in tail.from(from) {
        let n = len.min(dst.len() - done);
        if n == 0 {
            break;
        }
        // SAFETY: `base` points at `len >= n` bytes of the guest memory mapping `tail`
        // borrows, `dst[done..]` has room for `n`, and the two cannot overlap (guest
        // memory is never a Rust object). The guest may write those bytes meanwhile: any
        // value of a byte is a valid `u8`, and nothing here assumes they stay put.
        unsafe { std::ptr::copy_nonoverlapping(base, dst[done..].as_mut_ptr(), n) };
        done += n;
    }
    done
}

/// Peeks at a TCP socket's receive queue (from `SO_PEEK_OFF`) into the guest's memory
/// `into`; how many bytes came.
pub fn peek_into(fd: BorrowedFd<'_>, into: &GuestIov<'_>) -> io::Result<usize> {
    let mut msg = msghdr(&into.iov[..into.n]);
    // SAFETY: each of the `n` iovecs points into a guest memory mapping `into` borrows
    // (live for the call), of the stated length; the kernel writes at most that much
    // into each and keeps no pointer. The guest may write the same memory meanwhile:
    // the bytes are the guest's, nothing here reads them.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &raw mut msg,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
