//! The repair channel: how an engine without privileges gets its TCP sockets into and
//! out of repair mode (`TCP_REPAIR` needs `CAP_NET_ADMIN`), speaking passt-repair's
//! protocol, so KubeVirt's virt-handler and its `passt-repair` work unchanged.
//!
//! Protocol: the helper connects to the engine's unix socket (`<socket>.repair` by
//! default). For each batch the engine sends one byte — the mode as a signed byte: 1 on,
//! 0 off, -1 off without a window probe — with 1 to [`MAX_FDS`] socket descriptors
//! attached (`SCM_RIGHTS`); the helper sets `TCP_REPAIR` to that value on every one and
//! answers with the same byte. A wrong or missing answer fails the batch. The engine
//! sends every batch at one size, [`BATCH`] (see there why).
//!
//! [`Repair`] is the engine's side (listening, the helper's connection once made);
//! [`helper`] is the helper (`netbind passt-repair PATH`). Beyond passt-repair, it keeps
//! a socket in repair mode deaf: a socket filter that drops everything goes on with
//! repair mode and off with it, so a peer's segment that reaches the source after the
//! read-out is not acknowledged there (the engine attaches the same filter itself where
//! the kernel lets it, and pads the receive queue where it does not: `sock.rs`).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use crate::sys::{self, tcp_repair};

/// Descriptors per message (passt-repair's limit).
pub const MAX_FDS: usize = 253;
/// Descriptors in every message the engine sends: each batch is filled up to this with
/// a spare socket. passt-repair (2025_05_03) receives each message into the control
/// buffer the previous one left, so a message with more descriptors than the last had
/// loses the extra ones — closed by the kernel, the sockets left in repair mode, and
/// the batch still answered as done. Messages of one size never shrink the buffer.
pub const BATCH: usize = 32;
/// How long the helper may take to answer a batch.
const ANSWER: Duration = Duration::from_secs(10);

/// The modes a batch asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    On = 1,
    /// Off, with a window probe to the peer (it learns where the connection stands).
    Off = 0,
    OffNoProbe = -1,
}

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("no repair helper is connected (run passt-repair or `netbind passt-repair` on {0})")]
    NoHelper(String),
    #[error("the repair helper did not answer: {0}")]
    Helper(#[source] io::Error),
    #[error("the repair helper answered {got} to {sent}")]
    Answer { sent: i8, got: i8 },
}

/// The engine's end (see the module's theory of operation).
pub struct Repair {
    path: String,
    listener: UnixListener,
    helper: Option<UnixStream>,
    /// What fills a batch up to [`BATCH`]: a TCP socket never connected (repair mode on
    /// or off changes nothing for it).
    spare: Option<socket2::Socket>,
}

impl Repair {
    /// Listens on `listener` (bound already) for the helper.
    pub fn new(listener: UnixListener, path: &Path) -> Repair {
        Repair {
            path: path.display().to_string(),
            listener,
            helper: None,
            spare: None,
        }
    }

    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// Takes the helper's connection (the last one to connect).
    pub fn accept(&mut self) {
        while let Ok((conn, _)) = self.listener.accept() {
            if conn.set_nonblocking(false).is_ok()
                && conn.set_read_timeout(Some(ANSWER)).is_ok()
                && conn.set_write_timeout(Some(ANSWER)).is_ok()
            {
                tracing::info!("repair helper connected");
                self.helper = Some(conn);
            }
        }
    }

    /// Sets `mode` on every socket, in batches.
    pub fn set(&mut self, socks: &[BorrowedFd<'_>], mode: Mode) -> Result<(), RepairError> {
        self.accept();
        let Some(h) = self.helper.as_ref() else {
            return Err(RepairError::NoHelper(self.path.clone()));
        };
        if self.spare.is_none() {
            let spare = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .map_err(RepairError::Helper)?;
            self.spare = Some(spare);
        }
        let spare = self.spare.as_ref().map_or(-1, |s| s.as_raw_fd());
        let byte = [mode as i8 as u8];
        for batch in socks.chunks(BATCH) {
            let mut fds: Vec<RawFd> = batch.iter().map(|f| f.as_raw_fd()).collect();
            fds.resize(BATCH, spare);
            let cmsg = [ControlMessage::ScmRights(&fds)];
            sendmsg::<()>(
                h.as_raw_fd(),
                &[IoSlice::new(&byte)],
                &cmsg,
                MsgFlags::empty(),
                None,
            )
            .map_err(|e| RepairError::Helper(e.into()))?;
            let mut got = [0u8; 1];
            match nix::unistd::read(h.as_fd(), &mut got) {
                Ok(1) if got == byte => {}
                Ok(1) => {
                    return Err(RepairError::Answer {
                        sent: byte[0] as i8,
                        got: got[0] as i8,
                    });
                }
                Ok(_) => return Err(RepairError::Helper(io::ErrorKind::UnexpectedEof.into())),
                Err(e) => return Err(RepairError::Helper(e.into())),
            }
        }
        Ok(())
    }
}

/// The helper: connects to `path` (a socket, or a directory where a `*.repair` socket
/// appears within `wait`) and applies every batch until the engine closes the
/// connection. Needs `CAP_NET_ADMIN` in the sockets' network namespace.
pub fn helper(path: &Path, wait: Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + wait;
    let conn = loop {
        let target = if path.is_dir() {
            std::fs::read_dir(path)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "repair"))
        } else {
            Some(path.to_path_buf())
        };
        if let Some(t) = target
            && let Ok(c) = UnixStream::connect(&t)
        {
            break c;
        }
        if std::time::Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no repair socket at {} within {wait:?}", path.display()),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        let mut byte = [0u8; 1];
        let (n, fds) = {
            let mut iov = [IoSliceMut::new(&mut byte)];
            let msg = recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            )
            .map_err(io::Error::from)?;
            let mut fds = Vec::new();
            for c in msg.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::ScmRights(f) = c {
                    fds.extend(f);
                }
            }
            (msg.bytes, fds)
        };
        if n == 0 {
            return Ok(()); // the engine is done
        }
        // The kernel installed these descriptors for this process: owned here, closed
        // once set.
        let owned: Vec<std::os::fd::OwnedFd> = fds
            .into_iter()
            .filter_map(|fd| sys::take_inherited_fd(fd).ok())
            .collect();
        let mode = i32::from(byte[0] as i8);
        let mut ok = true;
        for fd in &owned {
            if let Err(e) = sys::tcp_set(fd.as_fd(), tcp_repair::TCP_REPAIR, &[mode as u32]) {
                eprintln!("passt-repair: TCP_REPAIR {mode}: {e}");
                ok = false;
            }
            // Deaf while in repair mode: the peer's segments are dropped before TCP
            // sees them (none acknowledged, none answered). An engine may not attach
            // the filter itself where socket filters need CAP_NET_ADMIN.
            let deaf = if mode == Mode::On as i32 {
                sys::drop_all_input(fd.as_fd())
            } else {
                sys::detach_filter(fd.as_fd()).or_else(|e| match e.raw_os_error() {
                    Some(nix::libc::ENOENT) => Ok(()),
                    _ => Err(e),
                })
            };
            if let Err(e) = deaf {
                eprintln!("passt-repair: socket filter for TCP_REPAIR {mode}: {e}");
                ok = false;
            }
        }
        drop(owned);
        let answer = if ok { byte } else { [0x80] };
        nix::unistd::write(&conn, &answer).map_err(io::Error::from)?;
    }
}
