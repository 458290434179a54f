//! What a protocol handler works with: the narrow context.
//!
//! How it works: the engine (`engine.rs`) owns one [`Ctx`] and hands `&mut` of it to the
//! handler a frame or a socket event goes to (`arp`, `ndp`, `dhcp`, `icmp`, `udp`,
//! `tcp`), together with the handler's own state (the TCP relay's ACK lists, the DHCP
//! servers, the raw ping sockets…), which the engine keeps beside it. The context holds
//! only what every handler may need: the configuration, the guest transmit side, the flow
//! table, the counters, the clock, the event loop's registry (for a new flow's socket), a
//! random source (initial sequence numbers) and one receive buffer. A handler therefore
//! sees no other handler's state, and a call from one to another is a `use` line.
//!
//! Tokens: the event loop owns tokens below [`RAW_PING4`]; that one and the next are the
//! raw ICMP sockets (`ping_raw.rs`); from [`FIRST_TOKEN`] on, even tokens are flow slots
//! and odd tokens are inbound listeners.
//!
//! What holds: the context allocates nothing after it is made (the receive buffer is
//! made once); removing a flow closes its socket, which also takes it out of epoll.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use crate::config::EngineConfig;
use crate::counters::Counters;
use crate::flow::{Flow, FlowTable};
use crate::frame::Out;

/// Tokens below [`RAW_PING4`] belong to the event loop (guest side, signals, listener).
pub const FIRST_TOKEN: usize = 16;
/// The raw ICMP socket's token, and the raw ICMPv6 socket's after it.
pub const RAW_PING4: Token = Token(FIRST_TOKEN - 2);
pub const RAW_PING6: Token = Token(FIRST_TOKEN - 1);
/// Size of the receive scratch buffer (one datagram).
pub const SCRATCH: usize = 65536;

/// The few things a handler needs (see the module's theory of operation).
pub struct Ctx<G> {
    pub cfg: EngineConfig,
    pub out: Out<G>,
    pub flows: FlowTable,
    pub counters: Counters,
    pub now: Instant,
    pub registry: Registry,
    /// One datagram read from a socket (UDP, ping, an error queue).
    pub scratch: Box<[u8]>,
    /// More of the guest's frames, read already, follow the one being handled (the
    /// attachment says so, `Engine::frames_follow`): TCP data may wait for theirs, to go
    /// to its socket in one `send()` (`tcp/gather.rs`).
    pub frames_follow: bool,
    rng: u64,
}

impl<G> Ctx<G> {
    pub fn new(cfg: EngineConfig, out: Out<G>, registry: Registry) -> Ctx<G> {
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x6e65_7462_696e_6400);
            h.finish() | 1
        };
        Ctx {
            flows: FlowTable::new(cfg.max_flows),
            out,
            counters: Counters::default(),
            now: Instant::now(),
            registry,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            frames_follow: false,
            rng: seed,
            cfg,
        }
    }

    pub fn next_random(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 16) as u32
    }

    pub fn flow_token(slot: usize) -> Token {
        Token(FIRST_TOKEN + (slot << 1))
    }

    pub fn listener_token(index: usize) -> Token {
        Token(FIRST_TOKEN + ((index << 1) | 1))
    }

    pub fn register_fd(&self, fd: RawFd, token: Token, interest: Interest) -> std::io::Result<()> {
        self.registry
            .register(&mut mio::unix::SourceFd(&fd), token, interest)
    }

    /// Registers the socket of the flow in `slot`; on failure the flow is removed.
    pub fn register_flow(&mut self, slot: usize, fd: RawFd, interest: Interest) -> bool {
        if self
            .register_fd(fd, Self::flow_token(slot), interest)
            .is_err()
        {
            self.abort_flow(slot);
            return false;
        }
        true
    }

    /// Removes a TCP or UDP flow and closes its socket (a TCP socket closes gracefully).
    /// Closing also takes the socket out of the event loop's epoll set (no flow socket is
    /// ever duplicated), which saves an `epoll_ctl` per flow. Ping flows on the raw
    /// sockets are removed by `icmp::remove`, which also frees their identifier.
    pub fn remove_flow(&mut self, slot: usize) -> Option<Flow> {
        self.flows.remove(slot)
    }

    /// Removes a flow; a TCP socket is closed with RST toward its peer.
    pub fn abort_flow(&mut self, slot: usize) -> Option<Flow> {
        if let Some(Flow::Tcp(c)) = self.flows.get_mut(slot) {
            let _ = c.sock.set_linger(Some(Duration::ZERO));
        }
        self.remove_flow(slot)
    }
}
