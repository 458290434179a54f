//! netbind-netns: the pod's network namespace, seen and changed through netlink.
//!
//! [`read_pod_view`] turns a live namespace into the [`PodView`] that planning consumes
//! (`netbind plan --netns NAME`); [`apply()`] carries a plan out there and [`teardown`]
//! undoes it, recording what changed in a state directory ([`journal`]); [`run_in_netns`]
//! runs any closure on a thread inside a namespace (the CLI opens DHCP sockets with it).
//! Entering a namespace (a thread of its own, with or without a netlink connection) is
//! [`ns`]; applying and tearing down a plan is [`mod@apply`] (its theory of operation says
//! which file holds what).
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
#![forbid(unsafe_code)]

pub mod apply;
pub mod convert;
pub mod journal;
pub mod link;
pub mod nft;
pub mod ns;
pub mod sys;
pub mod sysctl;

pub use apply::{
    ApplyError, ApplyOptions, ApplyReport, TeardownReport, apply, apply_with, teardown,
};
pub use ns::{NETNS_ETC_DIR, NETNS_RUN_DIR, NetnsError, run_in_netns};

use std::fs::File;
use std::path::Path;

use futures_util::TryStreamExt;
use netbind_plan::PodView;
use netbind_plan::podview::Dns;
use nix::sched::CloneFlags;
use rtnetlink::RouteMessageBuilder;

use ns::resolve;

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
    let path = std::path::PathBuf::from("/proc/self/ns/net");
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
