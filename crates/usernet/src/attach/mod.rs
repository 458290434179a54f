//! Guest attachments: where frames come from and go to.
//!
//! - `stream`: QEMU's `-netdev stream` (and passt's protocol): a unix stream socket,
//!   each frame preceded by its length as a 4-byte big-endian integer. netbind listens;
//!   QEMU connects; when the connection ends, the next one is accepted (guest restart).
//! - `tap`: a tap device (`IFF_TAP | IFF_NO_PI`, with a virtio-net header and TCP
//!   offloads when made here), one frame per read/write; made in
//!   another namespace and configured like the pod (`--netns`), or inherited.
//!
//! - `vhost_user`: QEMU's `-netdev vhost-user`: the guest's virtqueues in shared
//!   memory, QEMU's requests on a unix socket, eventfds for notifications.
//!
//! Both sides are non-blocking and buffered without allocation per frame: the stream's
//! write buffer receives frames built in place (see `frame.rs`) and is written out in
//! large writes; reads fill a buffer that is cut into frames.
//!
//! How the event loop (`run.rs`) drives an attachment: through [`Attachment`] alone. An
//! attachment is split in two when opened (`open::Attach::open`): its transmit side
//! ([`Attachment::Tx`], a [`GuestTx`]) goes to the engine, which builds frames in it;
//! the rest stays with the loop, which registers it ([`GUEST`] for the guest's
//! descriptor, [`LISTENER`] for one that waits for guests), reads frames from it, lets
//! it take a new guest and tells it when the guest went away. The loop is generic over
//! the attachment, so the data path has no dynamic dispatch. A new attachment is one
//! module here implementing the trait, and its variant in `open.rs` (`Attach`, which
//! picks the attachment a command line asked for).

pub mod open;
pub mod stream;
pub mod tap;
pub mod vhost_user;

use std::io;

use mio::{Registry, Token};

use crate::engine::Engine;
use crate::frame::GuestTx;

/// The guest's descriptor, as registered with the event loop.
pub const GUEST: Token = Token(0);
/// A descriptor on which new guests arrive (a listening socket).
pub const LISTENER: Token = Token(2);
/// Tokens an attachment may give its other descriptors (a control channel, notifiers);
/// their events go to [`Attachment::on_event`].
pub const LINK_TOKENS: std::ops::Range<usize> = 3..crate::ctx::FIRST_TOKEN - 2;

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
    #[error("cannot set up the guest's descriptor")]
    Descriptor(#[source] io::Error),
    #[error("cannot configure tap device {name}: `{command}` failed: {detail}")]
    Configure {
        name: String,
        command: String,
        detail: String,
    },
}

/// What a read from the guest gave.
pub enum Read<'a> {
    /// A frame, and whether another whole one is read already behind it
    /// (`Engine::frames_follow`).
    Frame(&'a [u8], bool),
    /// Nothing more for now.
    Empty,
    /// The guest went away (stream closed, or it spoke nonsense).
    Closed,
}

/// What [`Attachment::read_into`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// A frame went to the engine.
    Frame,
    Empty,
    Closed,
}

/// What an event means for the guest side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// Frames from the guest wait.
    pub readable: bool,
    /// The guest side takes frames again.
    pub writable: bool,
    /// The guest went away.
    pub closed: bool,
}

/// A guest attachment as the event loop drives it (see the module's theory of operation).
pub trait Attachment {
    /// The transmit side, owned by the engine.
    type Tx: GuestTx;

    /// Registers the attachment's descriptors under [`GUEST`] and [`LISTENER`];
    /// whether a guest is on the line already.
    fn register(&mut self, registry: &Registry) -> io::Result<bool>;

    /// Whether a guest is on the line.
    fn connected(&self) -> bool;

    /// The next frame from the guest.
    fn next_frame(&mut self) -> Read<'_>;

    /// Hands the next frame from the guest to `engine` (what the loop calls): by default
    /// the one [`Self::next_frame`] gives. An attachment whose frames may stay where the
    /// guest wrote them (vhost-user) hands those over itself, as head and guest memory.
    fn read_into(&mut self, engine: &mut Engine<Self::Tx>) -> Got
    where
        Self: Sized,
    {
        read_copied(self, engine)
    }

    /// Writes out what the transmit side holds; false when the guest is gone.
    fn flush(tx: &mut Self::Tx) -> bool;

    /// [`LISTENER`] is readable: takes the guests waiting (the last one stays on the
    /// line), telling the engine of each ([`Engine::guest_connected`]).
    fn accept(&mut self, registry: &Registry, engine: &mut Engine<Self::Tx>);

    /// An event on one of the attachment's [`LINK_TOKENS`]: what it means.
    fn on_event(
        &mut self,
        token: Token,
        registry: &Registry,
        engine: &mut Engine<Self::Tx>,
    ) -> Ready {
        let _ = (token, registry, engine);
        Ready::default()
    }

    /// Whether a guest here may migrate to another engine (which then may share the
    /// engine's namespace: `EngineConfig::share_ports`).
    fn can_migrate(&self) -> bool {
        false
    }

    /// The guest went away. Returns true when the loop should end (no other guest can
    /// come).
    fn disconnect(&mut self, engine: &mut Engine<Self::Tx>) -> bool;
}

/// [`Attachment::read_into`] as most attachments do it: the frame
/// [`Attachment::next_frame`] gives, to `engine`.
pub fn read_copied<A: Attachment>(link: &mut A, engine: &mut Engine<A::Tx>) -> Got {
    match link.next_frame() {
        Read::Frame(f, follows) => {
            engine.frames_follow(follows);
            engine.guest_frame(f);
            Got::Frame
        }
        Read::Empty => Got::Empty,
        Read::Closed => Got::Closed,
    }
}

/// What runs the event loop over an attachment of any kind (`run.rs`).
pub trait Driver {
    type Output;
    fn drive<A: Attachment>(self, attachment: A, tx: A::Tx) -> Self::Output;
}
