//! Entering a network namespace: a thread of its own that `setns(2)`s into the namespace
//! file, so the caller's thread never moves (`setns` changes only the calling thread).
//! [`run_in_netns`] runs a closure there; `in_netns` also opens a netlink connection
//! inside (a single-threaded tokio runtime, the socket opened only after entering, strict
//! checking on), which `apply` and `teardown` work through (`Ns`).
//!
//! Names: a plain name is a file under [`NETNS_RUN_DIR`] (as `ip netns` knows it), an
//! absolute path any namespace file (`/proc/<pid>/ns/net`); names that could leave the
//! directory are refused. The thread ends with the closure and takes the namespace with
//! it.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

use crate::link;

/// Where `ip netns add NAME` puts its namespace files.
pub const NETNS_RUN_DIR: &str = "/run/netns";
/// Where `ip netns exec` finds per-namespace configuration files.
pub const NETNS_ETC_DIR: &str = "/etc/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "network namespace name {name:?} is not valid; give a name under {NETNS_RUN_DIR} or an absolute path"
    )]
    InvalidName { name: String },
    #[error("cannot open network namespace {path}; does it exist (`ip netns list`)?")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot enter network namespace {path}; reading a namespace needs CAP_SYS_ADMIN (run as root)"
    )]
    Enter {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot start the namespace reader thread")]
    Thread(#[source] std::io::Error),
    #[error("the namespace reader thread stopped unexpectedly")]
    ThreadPanicked,
    #[error("cannot open a netlink socket in network namespace {path}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot dump {what} of network namespace {path}")]
    Dump {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot read {path}")]
    ResolvConf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A thread inside a namespace with a netlink socket opened there.
pub(crate) struct Ns {
    rt: tokio::runtime::Runtime,
    pub(crate) links: link::Links,
}

impl Ns {
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

fn open_netns(netns: &str) -> Result<(File, PathBuf), NetnsError> {
    let (path, _) = resolve(netns)?;
    let file = File::open(&path).map_err(|source| NetnsError::Open {
        path: path.clone(),
        source,
    })?;
    Ok((file, path))
}

pub(crate) fn enter(file: &File, path: &Path) -> Result<(), NetnsError> {
    nix::sched::setns(file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs `f` on a fresh thread that entered the namespace `netns` (a name under
/// /run/netns or an absolute path); the caller's thread never moves. Sockets `f` opens
/// belong to that namespace; processes it spawns start in it. Needs CAP_SYS_ADMIN.
pub fn run_in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let (file, path) = open_netns(netns)?;
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("netbind-netns".into())
            .spawn_scoped(scope, || {
                enter(&file, &path)?;
                Ok(f())
            })
            .map_err(NetnsError::Thread)?
            .join()
            .map_err(|_| NetnsError::ThreadPanicked)?
    })
}

/// Like [`run_in_netns`], with a netlink connection opened inside.
pub(crate) fn in_netns<T: Send>(
    netns: &str,
    f: impl FnOnce(&Ns) -> T + Send,
) -> Result<T, NetnsError> {
    let (path, _) = resolve(netns)?;
    run_in_netns(netns, || {
        let socket_err = |source| NetnsError::Socket {
            path: path.clone(),
            source,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(socket_err)?;
        let (mut connection, handle, _) = {
            let _inside = rt.enter();
            rtnetlink::new_connection().map_err(socket_err)?
        };
        // Strict checking makes the kernel apply the filters of dump requests (a link's
        // addresses, the routes out of one link) instead of dumping the whole namespace
        // and leaving the filtering to us. Kernels before 4.20 lack it: the filtering
        // in `link.rs` stays in place, so ignoring a failure here costs only time.
        let _ = rtnetlink::sys::AsyncSocket::socket_mut(connection.socket_mut())
            .set_netlink_get_strict_chk(true);
        rt.spawn(connection);
        let ns = Ns {
            rt,
            links: link::Links::new(handle),
        };
        Ok(f(&ns))
    })?
}

/// The namespace file, and the `ip netns` name when there is one.
pub(crate) fn resolve(netns: &str) -> Result<(PathBuf, Option<String>), NetnsError> {
    let invalid = || NetnsError::InvalidName {
        name: netns.to_string(),
    };
    if netns.starts_with('/') {
        let path = PathBuf::from(netns);
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = if parent == Path::new(NETNS_RUN_DIR) || parent == Path::new("/var/run/netns") {
            path.file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
        } else {
            None
        };
        return Ok((path, name));
    }
    if netns.is_empty()
        || netns == "."
        || netns == ".."
        || netns.contains('/')
        || netns.contains('\0')
    {
        return Err(invalid());
    }
    Ok((
        Path::new(NETNS_RUN_DIR).join(netns),
        Some(netns.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_name_lives_under_run_netns() {
        let (path, name) = resolve("pod-a").unwrap();
        assert_eq!(path, Path::new("/run/netns/pod-a"));
        assert_eq!(name.as_deref(), Some("pod-a"));
    }

    #[test]
    fn an_absolute_path_outside_run_netns_has_no_etc_name() {
        let (path, name) = resolve("/proc/1/ns/net").unwrap();
        assert_eq!(path, Path::new("/proc/1/ns/net"));
        assert_eq!(name, None);
    }

    #[test]
    fn names_that_escape_the_directory_are_refused() {
        for bad in ["", ".", "..", "a/b", "../etc"] {
            assert!(
                matches!(resolve(bad), Err(NetnsError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}
