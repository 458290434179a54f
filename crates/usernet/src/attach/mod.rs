//! Guest attachments: where frames come from and go to.
//!
//! - `stream`: QEMU's `-netdev stream` (and passt's protocol): a unix stream socket,
//!   each frame preceded by its length as a 4-byte big-endian integer. netbind listens;
//!   QEMU connects; when the connection ends, the next one is accepted (guest restart).
//! - `tap`: a tap device (`IFF_TAP | IFF_NO_PI`, with a virtio-net header and TCP
//!   offloads when made here), one frame per read/write; made in
//!   another namespace and configured like the pod (`--netns`), or inherited.
//!
//! Both sides are non-blocking and buffered without allocation per frame: the stream's
//! write buffer receives frames built in place (see `frame.rs`) and is written out in
//! large writes; reads fill a buffer that is cut into frames.

pub mod stream;
pub mod tap;

use std::io;

use crate::frame::GuestTx;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("cannot listen on unix socket {path}")]
    Listen {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot enter network namespace {name}")]
    Netns {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot create tap device {name}")]
    Tap {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot configure tap device {name}: `{command}` failed: {detail}")]
    Configure {
        name: String,
        command: String,
        detail: String,
    },
}

/// The guest side, as the engine writes to it.
pub enum GuestSide {
    Stream(stream::StreamTx),
    Tap(tap::TapTx),
}

impl GuestTx for GuestSide {
    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        match self {
            GuestSide::Stream(s) => s.reserve(len),
            GuestSide::Tap(t) => t.reserve(len),
        }
    }

    fn commit(&mut self, len: usize) {
        match self {
            GuestSide::Stream(s) => s.commit(len),
            GuestSide::Tap(t) => t.commit(len),
        }
    }

    fn offloads(&self) -> bool {
        match self {
            GuestSide::Stream(_) => false,
            GuestSide::Tap(t) => t.offloads(),
        }
    }

    fn commit_meta(&mut self, len: usize, meta: crate::frame::TxMeta) {
        match self {
            GuestSide::Stream(s) => s.commit(len),
            GuestSide::Tap(t) => t.commit_meta(len, meta),
        }
    }
}

impl GuestSide {
    /// Writes out what is buffered; false when the connection is gone.
    pub fn flush(&mut self) -> bool {
        match self {
            GuestSide::Stream(s) => s.flush(),
            GuestSide::Tap(_) => true,
        }
    }

    pub fn backlog(&self) -> usize {
        match self {
            GuestSide::Stream(s) => s.backlog(),
            GuestSide::Tap(_) => 0,
        }
    }
}

/// The guest side, as the event loop reads from it.
pub enum GuestReader {
    Stream(stream::StreamRx),
    Tap(tap::TapRx),
}

/// What a read from the guest gave.
pub enum Read<'a> {
    Frame(&'a [u8]),
    /// Nothing more for now.
    Empty,
    /// The guest went away (stream closed, or it spoke nonsense).
    Closed,
}

impl GuestReader {
    pub fn next_frame(&mut self) -> Read<'_> {
        match self {
            GuestReader::Stream(s) => s.next_frame(),
            GuestReader::Tap(t) => t.next_frame(),
        }
    }
}
