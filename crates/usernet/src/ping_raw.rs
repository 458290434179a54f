//! Echo through raw ICMP sockets, where ping sockets are denied.
//!
//! Ping sockets (`icmp.rs`) need the engine's group in `net.ipv4.ping_group_range`,
//! which the kernel default (`1 0`) leaves empty. An engine started with `CAP_NET_RAW`
//! can answer the guest's pings anyway: [`RawPing::open`] makes one raw ICMP and one raw
//! ICMPv6 socket at start, before `harden` drops every capability (an open socket keeps
//! working without it), and all ping flows share them.
//!
//! How it works: a ping flow over the raw sockets has a *wire identifier*, the guest's own
//! unless another flow to the same destination already sends with it (then a free one),
//! and [`RawPing`] maps (destination, wire identifier) to the flow's slot. A request goes
//! out with the wire identifier, the hop limit of the guest's request and, for ICMP, our
//! checksum (the kernel checksums ICMPv6 itself). The kernel filters what the sockets
//! receive to echo replies (`sys::icmp_pass_only`); a reply whose source and identifier
//! belong to a flow goes to the guest as from the address it pinged, with its identifier.
//! Other replies (another process's pings) are ignored.
//!
//! What holds: the map holds one entry per live raw ping flow ([`RawPing::forget`] runs
//! when a flow is removed); a reply never reaches a flow it was not sent for.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::os::fd::AsFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::errqueue::DEFAULT_HOP;
use crate::sock::recv_from_into;
use crate::wire::{ICMP_HLEN, icmp, ipv4_header_len};

const ECHO_REPLY4: u8 = 0;
const ECHO_REPLY6: u8 = 129;

/// The raw ICMP sockets shared by every ping flow, and who is waiting on which reply.
pub struct RawPing {
    v4: Option<Socket>,
    v6: Option<Socket>,
    /// The hop limit each socket sends with now.
    hop: [u8; 2],
    waiting: HashMap<(IpAddr, u16), usize>,
}

impl RawPing {
    /// Opens a raw socket for each family asked for (needs `CAP_NET_RAW`).
    pub fn open(v4: bool, v6: bool) -> std::io::Result<RawPing> {
        let raw = |want: bool, v6: bool| -> std::io::Result<Option<Socket>> {
            if !want {
                return Ok(None);
            }
            let (domain, protocol, reply) = if v6 {
                (Domain::IPV6, Protocol::ICMPV6, ECHO_REPLY6)
            } else {
                (Domain::IPV4, Protocol::ICMPV4, ECHO_REPLY4)
            };
            let sock = Socket::new(domain, Type::RAW.nonblocking().cloexec(), Some(protocol))?;
            crate::sys::icmp_pass_only(sock.as_fd(), v6, &[reply])?;
            Ok(Some(sock))
        };
        Ok(RawPing {
            v4: raw(v4, false)?,
            v6: raw(v6, true)?,
            hop: [DEFAULT_HOP; 2],
            waiting: HashMap::new(),
        })
    }

    /// The socket of a family, for registration with the event loop.
    pub fn socket(&self, v6: bool) -> Option<&Socket> {
        if v6 {
            self.v6.as_ref()
        } else {
            self.v4.as_ref()
        }
    }

    /// A wire identifier for a new flow of slot `slot` to `target`: the guest's `id`
    /// when free, else the first free one after it. `None` when all 65,536 are taken.
    pub fn claim(&mut self, target: IpAddr, id: u16, slot: usize) -> Option<u16> {
        let wire = (0..=u16::MAX)
            .map(|n| id.wrapping_add(n))
            .find(|w| !self.waiting.contains_key(&(target, *w)))?;
        self.waiting.insert((target, wire), slot);
        Some(wire)
    }

    /// The flow of `slot` to `target` is gone.
    pub fn forget(&mut self, target: IpAddr, wire: u16, slot: usize) {
        if self.waiting.get(&(target, wire)) == Some(&slot) {
            self.waiting.remove(&(target, wire));
        }
    }

    /// Sends the guest's echo request `body` (ICMP header first) to `target` with
    /// identifier `wire` and hop limit `hop`.
    pub fn send(
        &mut self,
        target: IpAddr,
        wire: u16,
        hop: u8,
        body: &mut [u8],
    ) -> std::io::Result<()> {
        let v6 = target.is_ipv6();
        let Some(sock) = (if v6 { &self.v6 } else { &self.v4 }) else {
            return Err(std::io::ErrorKind::Unsupported.into());
        };
        if self.hop[usize::from(v6)] != hop {
            if v6 {
                sock.set_unicast_hops_v6(u32::from(hop))?;
            } else {
                sock.set_ttl_v4(u32::from(hop))?;
            }
            self.hop[usize::from(v6)] = hop;
        }
        icmp::set_echo_ident(body, wire);
        if v6 {
            icmp::clear_checksum(body); // the kernel checksums ICMPv6
        } else {
            icmp::fill_checksum_v4(body);
        }
        sock.send_to(body, &SockAddr::from(SocketAddr::new(target, 0)))?;
        Ok(())
    }

    /// The next echo reply on the `v6` socket, read into `buf`: the flow's slot and where
    /// in `buf` the ICMP message is. `Ok(None)` for a reply that is no flow's.
    pub fn recv(&self, v6: bool, buf: &mut [u8]) -> std::io::Result<Option<(usize, Range<usize>)>> {
        let Some(sock) = self.socket(v6) else {
            return Err(std::io::ErrorKind::WouldBlock.into());
        };
        let (n, from) = recv_from_into(sock, buf)?;
        let Some(from) = from else { return Ok(None) };
        // A raw IPv4 socket reads the IP header too; a raw IPv6 socket does not.
        let start = if v6 || buf.is_empty() {
            0
        } else {
            ipv4_header_len(buf)
        };
        let reply = if v6 { ECHO_REPLY6 } else { ECHO_REPLY4 };
        let msg = buf.get(start..n).unwrap_or_default();
        let (Some((ty, 0)), Some(wire)) = (icmp::type_code(msg), icmp::echo_ident(msg)) else {
            return Ok(None);
        };
        if msg.len() < ICMP_HLEN || ty != reply {
            return Ok(None);
        }
        let source = from.ip().to_canonical();
        Ok(self
            .waiting
            .get(&(source, wire))
            .map(|slot| (*slot, start..n)))
    }
}
