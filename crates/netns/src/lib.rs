//! netbind-netns: the pod's network namespace, seen and changed through netlink.
//!
//! [`read_pod_view`] turns a live namespace into the [`PodView`] that planning consumes
//! (`netbind plan --netns NAME`); [`apply()`] carries a plan out there and [`teardown`]
//! undoes it, recording what changed in a state directory ([`journal`]); [`run_in_netns`]
//! runs any closure on a thread inside a namespace (the CLI opens DHCP sockets with it).
//!
//! Reading:
//! How it works: the namespace file (`/run/netns/<name>` or an absolute path) is opened
//! on the calling thread, then a dedicated thread is spawned which `setns(2)`s into it —
//! `setns` changes only the calling thread, so the caller's own namespace never moves —
//! and only *then* opens its netlink socket, so the socket belongs to the pod's namespace.
//! On that thread a single-threaded tokio runtime dumps links, addresses and routes of
//! both families; the thread ends with the runtime and takes the namespace with it.
//! The dumps are turned into the view by pure functions ([`convert`]), which unit tests
//! drive with hand-built netlink messages.
//!
//! What holds for reading: nothing is ever written — only `RTM_GET*` dump requests are sent. The
//! loopback link, IPv6 link-local addresses (fe80::/10) and routes outside the main
//! table are left out. DNS comes from `/etc/netns/<name>/resolv.conf` (where
//! `ip netns exec` would bind-mount it) when that file exists, otherwise the view has none.
#![deny(unsafe_code)]

pub mod apply;
pub mod convert;
pub mod journal;
pub mod link;
pub mod nft;
#[allow(unsafe_code)]
pub mod sys;
pub mod sysctl;

pub use apply::{
    ApplyError, ApplyOptions, ApplyReport, TeardownReport, apply, apply_with, teardown,
};

use std::fs::File;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use netbind_plan::PodView;
use netbind_plan::podview::Dns;
use nix::sched::CloneFlags;
use rtnetlink::RouteMessageBuilder;

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

/// Reads the pod view of a live network namespace, without changing anything in it.
///
/// `netns` is a name as `ip netns` knows it (the file `/run/netns/<name>`) or an
/// absolute path to a namespace file (`/proc/<pid>/ns/net`). Needs root.
pub fn read_pod_view(netns: &str) -> Result<PodView, NetnsError> {
    let (path, name) = resolve(netns)?;
    let file = File::open(&path).map_err(|source| NetnsError::Open {
        path: path.clone(),
        source,
    })?;
    let thread_path = path.clone();
    let dumps = std::thread::Builder::new()
        .name("netbind-netns".into())
        .spawn(move || dump_inside(file, &thread_path))
        .map_err(NetnsError::Thread)?
        .join()
        .map_err(|_| NetnsError::ThreadPanicked)??;
    let dns = match name {
        Some(name) => read_dns(&Path::new(NETNS_ETC_DIR).join(name).join("resolv.conf"))?,
        None => Dns::default(),
    };
    let mut view = convert::pod_view(&dumps);
    view.source = format!("netns:{netns}");
    view.dns = dns;
    Ok(view)
}

/// The pod view of the namespace this process is in, read without entering one, so
/// without a privilege (an engine that runs as the qemu user reads its own pod). Its
/// resolvers are left empty: the caller reads its own `/etc/resolv.conf`.
pub fn read_own_view() -> Result<PodView, NetnsError> {
    let path = PathBuf::from("/proc/self/ns/net");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|source| NetnsError::Socket {
            path: path.clone(),
            source,
        })?;
    let dumps = runtime.block_on(dump(&path))?;
    let mut view = convert::pod_view(&dumps);
    view.source = "netns:self".into();
    Ok(view)
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

fn enter(file: &File, path: &Path) -> Result<(), NetnsError> {
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
fn resolve(netns: &str) -> Result<(PathBuf, Option<String>), NetnsError> {
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

fn read_dns(path: &Path) -> Result<Dns, NetnsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Dns::from_resolv_conf(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Dns::default()),
        Err(source) => Err(NetnsError::ResolvConf {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Runs on the dedicated thread: enter, then open the socket, then dump.
fn dump_inside(file: File, path: &Path) -> Result<convert::Dumps, NetnsError> {
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
        path: path.to_path_buf(),
        source,
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|source| NetnsError::Socket {
            path: path.to_path_buf(),
            source,
        })?;
    runtime.block_on(dump(path))
}

async fn dump(path: &Path) -> Result<convert::Dumps, NetnsError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|source| NetnsError::Socket {
            path: path.to_path_buf(),
            source,
        })?;
    let connection = tokio::spawn(connection);
    let failed = |what: &'static str| {
        move |source| NetnsError::Dump {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    let links = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(failed("links"))?;
    let addresses = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(failed("addresses"))?;
    let mut routes: Vec<_> = handle
        .route()
        .get(RouteMessageBuilder::<std::net::Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(failed("IPv4 routes"))?;
    let routes6: Vec<_> = handle
        .route()
        .get(RouteMessageBuilder::<std::net::Ipv6Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(failed("IPv6 routes"))?;
    routes.extend(routes6);
    connection.abort();
    Ok(convert::Dumps {
        links,
        addresses,
        routes,
    })
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

    #[test]
    fn a_missing_namespace_is_an_open_error_naming_the_path() {
        let err = read_pod_view("netbind-no-such-namespace-4711").unwrap_err();
        assert!(matches!(err, NetnsError::Open { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("/run/netns/netbind-no-such-namespace-4711"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_resolv_conf_means_no_dns() {
        assert_eq!(
            read_dns(Path::new("/nonexistent/netbind/resolv.conf")).unwrap(),
            Dns::default()
        );
    }
}
