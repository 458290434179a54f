//! Which attachment a command line asked for, opened and handed to the event loop.
//!
//! [`Attach`] names the attachment (a unix socket to listen on, a tap, an inherited
//! descriptor of either kind); [`Attach::open`] makes it and hands it, split into the
//! loop's side and the engine's transmit side, to a [`Driver`] (`run.rs`). This is the
//! one place that knows every kind of attachment.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use super::stream::StreamLink;
use super::tap::TapLink;
use super::vhost_user::VhostUserLink;
use super::{AttachError, Driver};

/// How the guest is attached.
pub enum Attach {
    /// Listen on a unix socket for QEMU (`-netdev stream,addr.type=unix`).
    Socket(PathBuf),
    /// A unix socket bound already (`stream::listen_unix`): by a caller that must know it
    /// is bound before the engine runs (a daemon's parent, which exits only then). With
    /// `one_off` the engine ends when its first guest connection does (passt's
    /// `--one-off`), else it waits for the next (a guest reboot, a QEMU restart).
    Listener {
        listener: UnixListener,
        one_off: bool,
    },
    /// Be QEMU's vhost-user back end (`-netdev vhost-user`) on a unix socket bound
    /// already; `one_off` as for [`Attach::Listener`].
    VhostUser {
        listener: UnixListener,
        one_off: bool,
        /// Where a migration's repair helper connects (`migrate::repair`).
        repair: Option<crate::migrate::repair::Repair>,
    },
    /// A vhost-user control socket QEMU is connected to already (`--vhost-user --fd`).
    VhostUserFd(OwnedFd),
    /// A tap device's descriptor.
    Tap(OwnedFd),
    /// An inherited descriptor: a connected stream socket, or a tap.
    Fd(OwnedFd),
}

impl Attach {
    /// Opens the attachment and hands it, split in two, to `driver`.
    pub fn open<D: Driver>(self, driver: D) -> Result<D::Output, AttachError> {
        Ok(match self {
            Attach::Socket(path) => {
                let (a, tx) = StreamLink::listen(&path)?;
                driver.drive(a, tx)
            }
            Attach::Listener { listener, one_off } => {
                let (a, tx) = StreamLink::listening(listener, one_off);
                driver.drive(a, tx)
            }
            Attach::VhostUser {
                listener,
                one_off,
                repair,
            } => {
                let (a, tx) = VhostUserLink::listening(listener, one_off);
                driver.drive(a.with_repair(repair), tx)
            }
            Attach::VhostUserFd(fd) => {
                let (a, tx) = VhostUserLink::connected(fd)?;
                driver.drive(a, tx)
            }
            Attach::Fd(fd) if is_socket(&fd) => {
                let (a, tx) = StreamLink::connected(fd)?;
                driver.drive(a, tx)
            }
            Attach::Tap(fd) | Attach::Fd(fd) => {
                let (a, tx) = TapLink::new(fd)?;
                driver.drive(a, tx)
            }
        })
    }
}

fn is_socket(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd)
        .map(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFSOCK)
        .unwrap_or(false)
}
