//! Hardening: what the engine gives up once its descriptors are open.
//!
//! Order, in [`lock_down`] (called by `run` after the guest side, the inbound listeners,
//! the pcap file and the signal descriptor exist, right before the event loop):
//!
//! 1. `PR_SET_NO_NEW_PRIVS`, and the capability bounding set emptied (while
//!    `CAP_SETPCAP` is still held; skipped without it);
//! 2. with `--runas UID:GID`: supplementary groups set to GID alone, then the GID, then the
//!    UID (real, effective and saved) — which also empties the permitted set;
//! 3. every capability set emptied (effective, permitted, inheritable, ambient). Nothing
//!    on the data path needs one: TCP, UDP and ping sockets are ordinary sockets (ping
//!    sockets need the group in `net.ipv4.ping_group_range`, not a capability), and a
//!    low inbound port was bound in step 0;
//! 4. the file-backed pages of start-up code released (`MADV_DONTNEED` on read-only,
//!    never-written mappings of the binary and its libraries): they come back from the
//!    page cache as the loop touches them, so the resident set is the loop's own;
//! 5. a seccomp filter installed on every thread: the system calls below are allowed,
//!    `socket()` only for `AF_INET`/`AF_INET6`, `ioctl()` only for `FIONBIO`,
//!    `FIONREAD` and `TIOCOUTQ`; anything else kills the process
//!    (`SECCOMP_RET_KILL_PROCESS`). `--no-seccomp` skips this step, for debugging.
//!
//! The allowlist (x86_64 names; derived with `strace -f -c` over the namespace and VM
//! scenarios of the tests and the benchmark, plus what glibc's allocator, stdio and
//! thread exit may call):
//!
//! ```text
//! event loop      epoll_wait epoll_pwait epoll_ctl poll ppoll
//! guest side      read readv write writev
//! sockets         socket(AF_INET|AF_INET6) connect accept accept4 bind listen shutdown
//!                 close getsockopt setsockopt getsockname getpeername
//!                 recvfrom recvmsg recvmmsg sendto sendmsg sendmmsg ioctl(FIONBIO|FIONREAD|TIOCOUTQ)
//! descriptors     fcntl dup (try_clone on a reconnecting guest)
//! stats, pcap     openat rename renameat renameat2 fsync lseek newfstatat fstat statx
//! log file        ftruncate (a front end's log kept under a size: `passt --log-size`)
//! memory          mmap munmap mremap brk madvise mprotect
//! time, signals   clock_gettime clock_nanosleep nanosleep gettimeofday rt_sigprocmask
//!                 rt_sigaction rt_sigreturn sigaltstack
//! threads, exit   futex getpid gettid getrandom exit exit_group tgkill
//! busy polling    sched_yield sched_getaffinity
//! ```
//!
//! What holds: after `lock_down` the process has no capability in any set
//! (`CapEff`/`CapPrm`/`CapBnd` of `/proc/PID/status` are 0 when it started with
//! `CAP_SETPCAP`) and `Seccomp: 2`; a failure in steps 1–3 or 5 is an error, the engine
//! does not run half-hardened.

use std::collections::BTreeMap;
use std::io;

use nix::libc;
use nix::unistd::{Gid, Uid};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error("cannot set no_new_privs")]
    NoNewPrivs(#[source] io::Error),
    #[error("cannot change to user {uid} and group {gid}")]
    RunAs {
        uid: u32,
        gid: u32,
        #[source]
        source: nix::Error,
    },
    #[error("cannot drop the {set} capabilities")]
    Caps {
        set: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("cannot build the seccomp filter")]
    Filter(#[source] seccompiler::BackendError),
    #[error("cannot install the seccomp filter")]
    Seccomp(#[source] seccompiler::Error),
    #[error("--runas {0}: expected UID:GID (numbers)")]
    BadRunAs(String),
}

/// What to give up before the event loop.
#[derive(Debug, Clone, Default)]
pub struct Hardening {
    /// Install the seccomp allowlist (`--no-seccomp` clears it).
    pub seccomp: bool,
    /// Switch to this user and group (`--runas UID:GID`).
    pub runas: Option<(u32, u32)>,
}

impl Hardening {
    /// The default of `netbind usernet`: seccomp on, same user.
    pub fn full() -> Hardening {
        Hardening {
            seccomp: true,
            runas: None,
        }
    }

    /// Parses `UID:GID`.
    pub fn parse_runas(spec: &str) -> Result<(u32, u32), HardenError> {
        let bad = || HardenError::BadRunAs(spec.to_string());
        let (u, g) = spec.split_once(':').ok_or_else(bad)?;
        Ok((u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?))
    }
}

/// Gives up privileges and installs the filter (see the module header for the order).
pub fn lock_down(h: &Hardening) -> Result<(), HardenError> {
    crate::sys::set_no_new_privs().map_err(HardenError::NoNewPrivs)?;
    let have_setpcap = caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SETPCAP)
        .unwrap_or(false);
    if have_setpcap {
        caps::clear(None, caps::CapSet::Bounding).map_err(|source| HardenError::Caps {
            set: "bounding",
            source,
        })?;
    }
    if let Some((uid, gid)) = h.runas {
        let err = |source| HardenError::RunAs { uid, gid, source };
        let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
        nix::unistd::setgroups(&[g]).map_err(err)?;
        nix::unistd::setresgid(g, g, g).map_err(err)?;
        nix::unistd::setresuid(u, u, u).map_err(err)?;
    }
    for (set, name) in [
        (caps::CapSet::Ambient, "ambient"),
        (caps::CapSet::Effective, "effective"),
        (caps::CapSet::Inheritable, "inheritable"),
        (caps::CapSet::Permitted, "permitted"),
    ] {
        caps::clear(None, set).map_err(|source| HardenError::Caps { set: name, source })?;
    }
    release_startup_pages();
    if h.seccomp {
        install_filter()?;
    }
    Ok(())
}

/// Drops the page-table entries of read-only, never-written file mappings (the binary's
/// code and constants, the libraries'): what start-up and configuration touched stops
/// counting as resident; the loop faults back in what it uses. Best effort.
pub fn release_startup_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        if let Some((range, rest)) = line.split_once(' ')
            && let Some((a, b)) = range.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            let mut f = rest.split_whitespace();
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            // Private, not writable, backed by a file (not [vdso], [stack], anonymous).
            current = (perms.len() == 4
                && !perms.contains('w')
                && perms.ends_with('p')
                && path.starts_with('/'))
            .then_some((start, end));
        } else if let Some(kb) = line.strip_prefix("Anonymous:")
            && let Some((start, end)) = current.take()
            && kb.trim() == "0 kB"
        {
            // No page of it was ever written (relocated data would show as anonymous):
            // every page reads back identical from the file.
            crate::sys::release_file_range(start, end - start);
        }
    }
}

/// Syscalls allowed whatever their arguments.
fn plain_syscalls() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_ctl,
        libc::SYS_ppoll,
        libc::SYS_read,
        libc::SYS_readv,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_connect,
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_shutdown,
        libc::SYS_close,
        libc::SYS_getsockopt,
        libc::SYS_setsockopt,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_recvmmsg,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_sendmmsg,
        libc::SYS_fcntl,
        libc::SYS_openat,
        libc::SYS_renameat,
        libc::SYS_renameat2,
        libc::SYS_fsync,
        libc::SYS_lseek,
        libc::SYS_ftruncate,
        libc::SYS_newfstatat,
        libc::SYS_fstat,
        libc::SYS_statx,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_brk,
        libc::SYS_madvise,
        libc::SYS_mprotect,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_getrandom,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_tgkill,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        libc::SYS_epoll_wait,
        libc::SYS_poll,
        libc::SYS_rename,
        libc::SYS_dup,
    ]);
    v
}

fn arg_is(index: u8, value: u64) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(
        index,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        value,
    )?])
}

/// The allowlist as a filter (see the module header).
pub fn filter() -> Result<SeccompFilter, HardenError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = plain_syscalls()
        .into_iter()
        .map(|n| (n, Vec::new()))
        .collect();
    let build = || -> Result<(Vec<SeccompRule>, Vec<SeccompRule>), seccompiler::BackendError> {
        let socket = vec![
            arg_is(0, libc::AF_INET as u64)?,
            arg_is(0, libc::AF_INET6 as u64)?,
        ];
        let ioctl = vec![
            arg_is(1, libc::FIONBIO)?,
            arg_is(1, libc::FIONREAD)?,
            arg_is(1, libc::TIOCOUTQ)?,
        ];
        Ok((socket, ioctl))
    };
    let (socket, ioctl) = build().map_err(HardenError::Filter)?;
    rules.insert(libc::SYS_socket, socket);
    rules.insert(libc::SYS_ioctl, ioctl);
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(HardenError::Filter)?;
    SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(HardenError::Filter)
}

/// Installs the allowlist on every thread of the process.
pub fn install_filter() -> Result<(), HardenError> {
    let program: seccompiler::BpfProgram = filter()?.try_into().map_err(HardenError::Filter)?;
    seccompiler::apply_filter_all_threads(&program).map_err(HardenError::Seccomp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runas_takes_two_numbers() {
        assert_eq!(
            Hardening::parse_runas("65534:65534").unwrap(),
            (65534, 65534)
        );
        assert!(Hardening::parse_runas("nobody").is_err());
        assert!(Hardening::parse_runas("1:x").is_err());
    }

    #[test]
    fn the_allowlist_compiles_for_this_machine() {
        let program: seccompiler::BpfProgram = filter().unwrap().try_into().unwrap();
        assert!(program.len() > plain_syscalls().len());
    }
}
