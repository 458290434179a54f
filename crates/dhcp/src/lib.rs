//! netbind-dhcp: the address services a guest NIC needs — DHCPv4, DHCPv6 and router
//! advertisements — as pure request → reply cores.
//!
//! Each core is built from the plan's configuration for one interface and answers only
//! that interface's guest MAC. A core takes the UDP payload of one request and returns
//! the reply payload (or nothing, with the reason counted); it never blocks, never does
//! I/O and never panics on any input, so the same code serves a socket runner in the pod
//! and netbind's user-mode engine, and a fuzzer can drive it directly.
#![forbid(unsafe_code)]

pub mod ra;
pub mod runner;
pub mod v4;
pub mod v6;
