//! QEMU `-netdev stream` / passt framing over a unix stream socket.
//!
//! How it works: [`StreamTx`] is one fixed buffer; a frame is reserved right after room
//! for its 4-byte length, built in place, committed (length written), and the buffer is
//! written to the socket in as few `write()`s as the socket takes. When the socket is full
//! the buffer holds the rest; when the buffer is full too, `reserve` says no and the
//! engine waits for the socket's writability (1 MiB; 256 KiB for reading: sized for a
//! few dozen 64 KiB frames, not more, as that memory is resident once used). [`StreamRx`] reads into a fixed buffer and
//! cuts it into frames; a length above [`MAX_FRAME`] means a broken peer: the connection
//! is dropped.
//!
//! [`StreamLink`] is the attachment the event loop drives: listening on a unix socket
//! (each new connection replaces the guest; a guest that leaves is waited for again), or
//! one connected socket inherited from the parent (its end ends the loop).

use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use mio::unix::SourceFd;
use mio::{Interest, Registry};

use super::{AttachError, Attachment, GUEST, LISTENER, Read};
use crate::engine::Engine;
use crate::frame::GuestTx;

/// Each frame's length before it, big-endian.
const LEN_PREFIX: usize = 4;
/// Largest frame accepted or sent (an MTU-65520 frame plus the Ethernet header).
pub const MAX_FRAME: usize = 65536;
/// The write buffer: sixteen largest frames. More would only queue in user space what
/// the socket (whose own buffer QEMU drains) cannot take yet; less would stall a
/// socket-to-guest burst of 64 KiB frames. Pages are touched only as they fill.
const TX_BUF: usize = 16 * (MAX_FRAME + LEN_PREFIX);
/// The read buffer: four largest frames, so one `read()` takes several and a frame cut
/// by a read boundary always fits behind what is left.
const RX_BUF: usize = 4 * (MAX_FRAME + LEN_PREFIX);

pub struct StreamTx {
    conn: Option<UnixStream>,
    buf: Box<[u8]>,
    head: usize,
    tail: usize,
}

impl Default for StreamTx {
    fn default() -> Self {
        StreamTx::new()
    }
}

impl StreamTx {
    pub fn new() -> StreamTx {
        StreamTx {
            conn: None,
            buf: vec![0; TX_BUF].into_boxed_slice(),
            head: 0,
            tail: 0,
        }
    }

    pub fn set_conn(&mut self, conn: Option<UnixStream>) {
        self.conn = conn;
        self.head = 0;
        self.tail = 0;
    }

    pub fn backlog(&self) -> usize {
        self.tail - self.head
    }

    pub fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.conn.is_none() || len > MAX_FRAME {
            return None;
        }
        if self.buf.len() - self.tail < LEN_PREFIX + len {
            self.flush();
            if self.head > 0 {
                self.buf.copy_within(self.head..self.tail, 0);
                self.tail -= self.head;
                self.head = 0;
            }
            if self.buf.len() - self.tail < LEN_PREFIX + len {
                return None;
            }
        }
        let at = self.tail + LEN_PREFIX;
        Some(&mut self.buf[at..at + len])
    }

    pub fn commit(&mut self, len: usize) {
        let prefix = self.tail..self.tail + LEN_PREFIX;
        self.buf[prefix].copy_from_slice(&(len as u32).to_be_bytes());
        self.tail += LEN_PREFIX + len;
    }

    /// Writes what the socket takes; false when the connection broke.
    pub fn flush(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        while self.head < self.tail {
            match conn.write(&self.buf[self.head..self.tail]) {
                Ok(0) => return false,
                Ok(n) => self.head += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.head = 0;
        self.tail = 0;
        true
    }
}

pub struct StreamRx {
    conn: Option<UnixStream>,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for StreamRx {
    fn default() -> Self {
        StreamRx::new()
    }
}

impl StreamRx {
    pub fn new() -> StreamRx {
        StreamRx {
            conn: None,
            buf: vec![0; RX_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    pub fn set_conn(&mut self, conn: Option<UnixStream>) {
        self.conn = conn;
        self.start = 0;
        self.end = 0;
    }

    /// Whether a whole frame is in the buffer.
    fn holds_frame(&self) -> bool {
        let avail = &self.buf[self.start..self.end];
        avail.len() >= LEN_PREFIX && {
            let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
            avail.len() >= LEN_PREFIX + len
        }
    }

    pub fn next_frame(&mut self) -> Read<'_> {
        loop {
            let avail = self.end - self.start;
            if avail >= LEN_PREFIX {
                let mut l = [0u8; 4];
                l.copy_from_slice(&self.buf[self.start..self.start + LEN_PREFIX]);
                let len = u32::from_be_bytes(l) as usize;
                if len > MAX_FRAME {
                    return Read::Closed;
                }
                if avail >= LEN_PREFIX + len {
                    let frame = self.start + LEN_PREFIX..self.start + LEN_PREFIX + len;
                    self.start += LEN_PREFIX + len;
                    let follows = self.holds_frame();
                    return Read::Frame(&self.buf[frame], follows);
                }
            }
            if self.start > 0 && self.buf.len() - self.end < MAX_FRAME + LEN_PREFIX {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let Some(conn) = self.conn.as_mut() else {
                return Read::Closed;
            };
            match conn.read(&mut self.buf[self.end..]) {
                Ok(0) => return Read::Closed,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Read::Closed,
            }
        }
    }
}

impl GuestTx for StreamTx {
    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        StreamTx::reserve(self, len)
    }

    fn commit(&mut self, len: usize) {
        StreamTx::commit(self, len)
    }
}

/// Binds the unix socket (removing a stale one, creating the directory).
pub fn listen_unix(path: &Path) -> Result<UnixListener, AttachError> {
    let err = |source| AttachError::Listen {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let l = UnixListener::bind(path).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    Ok(l)
}

/// A stream attachment: the reading side, the listener if guests connect to one, and
/// the guest's descriptor while one is on the line.
pub struct StreamLink {
    rx: StreamRx,
    listener: Option<UnixListener>,
    guest_fd: Option<RawFd>,
    /// The first guest to leave ends the engine (passt's `--one-off`).
    one_off: bool,
}

impl StreamLink {
    /// Listens on `path` for guests.
    pub fn listen(path: &Path) -> Result<(StreamLink, StreamTx), AttachError> {
        Ok(StreamLink::listening(listen_unix(path)?, false))
    }

    /// Guests connect to `listener`, bound already ([`listen_unix`]); with `one_off` the
    /// first that leaves ends the engine, else the next is awaited.
    pub fn listening(listener: UnixListener, one_off: bool) -> (StreamLink, StreamTx) {
        let link = StreamLink {
            rx: StreamRx::new(),
            listener: Some(listener),
            guest_fd: None,
            one_off,
        };
        (link, StreamTx::new())
    }

    /// One connected socket (an inherited descriptor).
    pub fn connected(fd: OwnedFd) -> Result<(StreamLink, StreamTx), AttachError> {
        let stream = UnixStream::from(fd);
        stream
            .set_nonblocking(true)
            .map_err(AttachError::Descriptor)?;
        let raw = stream.as_raw_fd();
        let (mut tx, mut rx) = (StreamTx::new(), StreamRx::new());
        rx.set_conn(Some(stream.try_clone().map_err(AttachError::Descriptor)?));
        tx.set_conn(Some(stream));
        let link = StreamLink {
            rx,
            listener: None,
            guest_fd: Some(raw),
            one_off: true,
        };
        Ok((link, tx))
    }
}

impl Attachment for StreamLink {
    type Tx = StreamTx;

    fn register(&mut self, registry: &Registry) -> io::Result<bool> {
        if let Some(l) = &self.listener {
            registry.register(&mut SourceFd(&l.as_raw_fd()), LISTENER, Interest::READABLE)?;
        }
        if let Some(raw) = self.guest_fd {
            let both = Interest::READABLE | Interest::WRITABLE;
            registry.register(&mut SourceFd(&raw), GUEST, both)?;
        }
        Ok(self.guest_fd.is_some())
    }

    fn connected(&self) -> bool {
        self.guest_fd.is_some()
    }

    fn next_frame(&mut self) -> Read<'_> {
        self.rx.next_frame()
    }

    fn flush(tx: &mut StreamTx) -> bool {
        tx.flush()
    }

    fn accept(&mut self, registry: &Registry, engine: &mut Engine<StreamTx>) {
        let Some(l) = self.listener.as_ref() else {
            return;
        };
        while let Ok((conn, _)) = l.accept() {
            if conn.set_nonblocking(true).is_err() {
                continue;
            }
            if let Some(old) = self.guest_fd.take() {
                let _ = registry.deregister(&mut SourceFd(&old));
            }
            let Ok(rx_conn) = conn.try_clone() else {
                continue;
            };
            let raw = conn.as_raw_fd();
            self.rx.set_conn(Some(rx_conn));
            engine.guest_mut().set_conn(Some(conn));
            let both = Interest::READABLE | Interest::WRITABLE;
            if registry.register(&mut SourceFd(&raw), GUEST, both).is_ok() {
                self.guest_fd = Some(raw);
                engine.guest_connected();
            }
        }
    }

    fn disconnect(&mut self, engine: &mut Engine<StreamTx>) -> bool {
        if self.one_off {
            return true;
        }
        self.rx.set_conn(None);
        engine.guest_mut().set_conn(None); // closing the descriptor removes it from epoll
        self.guest_fd = None;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_a_socket_pair_with_length_prefixes() {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let mut tx = StreamTx::new();
        tx.set_conn(Some(a));
        for payload in [&b"hello"[..], &[7u8; 1500][..]] {
            let buf = tx.reserve(payload.len()).unwrap();
            buf.copy_from_slice(payload);
            tx.commit(payload.len());
        }
        assert!(tx.flush());
        let mut rx = StreamRx::new();
        rx.set_conn(Some(b));
        assert!(matches!(rx.next_frame(), Read::Frame(f, true) if f == b"hello"));
        assert!(matches!(rx.next_frame(), Read::Frame(f, false) if f.len() == 1500));
        assert!(matches!(rx.next_frame(), Read::Empty));
    }

    #[test]
    fn an_absurd_length_drops_the_connection() {
        let (mut a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        a.write_all(&u32::MAX.to_be_bytes()).unwrap();
        let mut rx = StreamRx::new();
        rx.set_conn(Some(b));
        assert!(matches!(rx.next_frame(), Read::Closed));
    }
}
