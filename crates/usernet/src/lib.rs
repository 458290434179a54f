//! netbind's user-mode network engine (`usernet`): one guest NIC joined to the socket
//! layer of the network namespace the engine runs in, so that the VM's traffic enters
//! and leaves the pod as ordinary TCP, UDP and ICMP sockets of one process.
//!
//! Where a frame from the guest goes (one file per step; each handler's `use` lines
//! name where it hands on):
//!
//! ```text
//! attach/{stream,tap}.rs   frames in and out (QEMU -netdev stream, a tap, an inherited fd),
//!                          behind attach/mod.rs's Attachment trait; attach/open.rs picks one
//!   └─ engine.rs           the public API and the dispatcher: checked Ethernet/IP parse,
//!        │                 by protocol and ICMP type to a handler, socket events by token
//!        ├─ fragment.rs    IPv4/IPv6 fragments put back together (and cut, frames out)
//!        ├─ arp.rs         ARP: the engine answers for every address but the guest's
//!        ├─ ndp.rs         NS → NA, RS → RA (and the periodic RA)
//!        ├─ icmp.rs        echo → ping sockets (or ping_raw.rs, raw sockets)
//!        ├─ udp.rs         flows with connected sockets; 67/547 → dhcp.rs (dhcp crate)
//!        └─ tcp/           relay onto connected sockets (no TCP stack, passt's way):
//!                          mod.rs opens/accepts/dispatches, conn.rs the state machine
//! below every handler:
//!   ctx.rs                 the narrow context a handler gets: config, guest side, flow
//!                          table, counters, clock (and the token layout)
//!   route.rs               where a guest flow really goes; how a peer appears
//!   icmp_error.rs          ICMP errors to the guest (unreachable; relayed from errqueue.rs)
//!   flow.rs                the flow table (capped), one socket per flow
//!   forward.rs             inbound ports: listeners delivering to the guest
//!   frame.rs               frames out: built in place in the guest side's buffer
//!   wire.rs                header layouts (smoltcp views), the IP writer, the checksum
//!   counters.rs, sock.rs   the counters; reads into the engine's buffers
//! around it:
//!   run.rs                 the event loop as a type (mio, edge-triggered), signals
//!   busy_poll.rs           how long the loop looks for events before it sleeps
//!   pcap.rs                capture of the guest side
//!   harden.rs              no capabilities, --runas, seccomp allowlist (syscalls listed there)
//! ```
//!
//! Addresses are the pod's: the guest gets the namespace's own address and gateway, so
//! to everyone else it *is* the pod. The gateway address leads to the namespace's
//! loopback (switchable); DNS sent to an advertised resolver goes to the namespace's
//! resolvers. See `config.rs`.
//!
//! What holds for any input from the guest: no panic (every parser is bounds-checked;
//! `Engine::guest_frame` is the fuzz entry), no allocation per packet on the data path
//! (buffers for fragments are allocated once, the first time fragments appear),
//! at most `max_flows` flows (refused beyond with RST or ICMP unreachable).
//! `unsafe` lives only in `sys.rs` (the crate denies it elsewhere); the tun/tap ioctls are
//! `netbind-tun`'s.

#![deny(unsafe_code)]

pub mod arp;
pub mod attach;
pub mod busy_poll;
pub mod config;
pub mod counters;
pub mod ctx;
pub mod dhcp;
pub mod engine;
pub mod errqueue;
pub mod flow;
pub mod forward;
pub mod fragment;
pub mod frame;
pub mod harden;
pub mod icmp;
pub mod icmp_error;
pub mod migrate;
pub mod ndp;
pub mod pcap;
pub mod ping_raw;
pub mod ports;
pub mod route;
pub mod run;
pub mod sock;
#[allow(unsafe_code)] // the crate's only unsafe: each block with a SAFETY comment
pub mod sys;
pub mod tcp;
pub mod udp;
pub mod wire;

pub use config::EngineConfig;
pub use engine::{Counters, Engine};
pub use frame::{GuestTx, MemTx};
pub use ports::{PortSet, PortSpec, PortSpecError};
