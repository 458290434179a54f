//! The flow table: every TCP connection, UDP flow and ICMP echo flow the guest has open.
//!
//! How it works: flows live in slots of a vector (a slab with a free list); a hash map
//! from [`FlowKey`] — protocol, the guest's address and port, and the remote address and
//! port *as the guest sees them* — finds a slot. Each flow owns one socket, registered
//! with the event loop under a token derived from its slot ([`crate::ctx`]).
//!
//! What holds: at most `cap` flows exist (default 65,536). Past the cap `insert` refuses
//! and the caller answers the guest with RST or ICMP unreachable; memory grows with the
//! number of live flows only, never with traffic. Slots are reused, so an event for a
//! closed flow may reach its slot's next flow: every handler copes with spurious events.
//!
//! The kinds of flow: a TCP connection's state machine is `tcp/conn.rs`; a UDP flow
//! ([`UdpFlow`], handled by `udp.rs`) and a ping flow ([`PingFlow`], `icmp.rs`) are a
//! socket and a few addresses, kept here so that the table sits below every handler.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use socket2::Socket;

use crate::tcp::conn::TcpConn;

pub struct UdpFlow {
    /// The flow's own connected socket; `None` for inbound flows.
    pub sock: Option<Socket>,
    /// For inbound flows: the listener (index) and the real peer address.
    pub via_listener: Option<(usize, SocketAddr)>,
    pub guest: SocketAddr,
    pub remote: SocketAddr,
    pub last: Instant,
    /// The hop limit the socket sends with (the guest's, last seen).
    pub hop: u8,
}

pub struct PingFlow {
    pub via: PingVia,
    pub guest: IpAddr,
    pub guest_id: u16,
    pub remote: IpAddr,
    pub last: Instant,
}

/// How a ping flow reaches the network.
pub enum PingVia {
    /// Its own ping socket, connected to the destination, and the hop limit it sends
    /// with (the guest's, last seen).
    Socket { sock: Socket, hop: u8 },
    /// The engine's shared raw socket (`ping_raw.rs`), sending to `target` with
    /// identifier `wire` (the raw socket keeps its own hop limit).
    Raw { target: IpAddr, wire: u16 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub proto: u8,
    pub guest: SocketAddr,
    pub remote: SocketAddr,
}

pub enum Flow {
    Tcp(Box<TcpConn>),
    Udp(UdpFlow),
    Ping(PingFlow),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("flow table full ({0} flows)")]
    Full(usize),
}

pub struct FlowTable {
    slots: Vec<Option<(FlowKey, Flow)>>,
    free: Vec<usize>,
    index: HashMap<FlowKey, usize>,
    cap: usize,
}

impl FlowTable {
    pub fn new(cap: usize) -> FlowTable {
        let initial = cap.min(1024);
        FlowTable {
            slots: Vec::with_capacity(initial),
            free: Vec::with_capacity(initial),
            index: HashMap::with_capacity(initial),
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn lookup(&self, key: &FlowKey) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// The slot the next `insert` will use, if there is room.
    pub fn next_slot(&self) -> Option<usize> {
        if self.len() >= self.cap {
            return None;
        }
        Some(self.free.last().copied().unwrap_or(self.slots.len()))
    }

    pub fn insert(&mut self, key: FlowKey, flow: Flow) -> Result<usize, FlowError> {
        let slot = self.next_slot().ok_or(FlowError::Full(self.cap))?;
        if slot == self.slots.len() {
            self.slots.push(Some((key, flow)));
        } else {
            self.free.pop();
            self.slots[slot] = Some((key, flow));
        }
        self.index.insert(key, slot);
        Ok(slot)
    }

    pub fn get(&self, slot: usize) -> Option<&Flow> {
        self.slots.get(slot)?.as_ref().map(|(_, f)| f)
    }

    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Flow> {
        self.slots.get_mut(slot)?.as_mut().map(|(_, f)| f)
    }

    pub fn key(&self, slot: usize) -> Option<FlowKey> {
        self.slots.get(slot)?.as_ref().map(|(k, _)| *k)
    }

    pub fn remove(&mut self, slot: usize) -> Option<Flow> {
        let (key, flow) = self.slots.get_mut(slot)?.take()?;
        self.index.remove(&key);
        self.free.push(slot);
        Some(flow)
    }

    /// Slots in use (for timers and counters).
    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| i)
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
}
