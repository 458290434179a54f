//! ICMP errors the kernel received for a flow's socket, with their details
//! (`IP_RECVERR`/`IPV6_RECVERR`), so that the guest gets the same message from the
//! same sender as if its packet had gone out itself.
//!
//! How it works: UDP and ping sockets of guest flows are opened with `IP_RECVERR`
//! (`IPV6_RECVERR`), and each sends with the hop limit of the guest's packet
//! ([`set_hop_limit`]). A router that drops a packet for its hop limit, a host or port
//! that is unreachable, a link whose MTU is too small: the kernel queues an extended
//! error on the socket (its ICMP type and code, the MTU, the address of the router or
//! host that sent it) and wakes the socket with `EPOLLERR`. [`next`] reads one such error
//! off the queue (`recvmsg(MSG_ERRQUEUE)`); the flow turns it into an ICMP error to the
//! guest from that address, quoting the guest's packet (`icmp.rs`). This is what makes
//! `traceroute` and path MTU discovery work from the guest.
//!
//! Without `IP_RECVERR` the kernel reports only "hard" errors (port or protocol
//! unreachable) on a connected UDP socket, and never who sent them.
//!
//! What holds: only errors that came from the network (`SO_EE_ORIGIN_ICMP`/`ICMP6`) are
//! returned; local ones (a send larger than the local MTU) are skipped. Reading never
//! blocks.

use std::io::IoSliceMut;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use nix::libc;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use socket2::Socket;

/// The hop limit a new socket sends with (`net.ipv4.ip_default_ttl`, IPv6's default).
pub const DEFAULT_HOP: u8 = 64;

/// One ICMP error from the network, as the kernel recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// Who sent the ICMP message (a router on the path, or the destination).
    pub from: Option<IpAddr>,
    /// Type and code in the socket family's own numbering (ICMP or ICMPv6).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// The MTU for "fragmentation needed" and "packet too big", else 0.
    pub mtu: u32,
    /// Bytes of the payload the failed packet carried (the kernel returns them).
    pub payload_len: usize,
}

/// Asks for extended errors on a flow socket.
pub fn enable(sock: &Socket, v6: bool) -> std::io::Result<()> {
    let r = if v6 {
        setsockopt(sock, sockopt::Ipv6RecvErr, &true)
    } else {
        setsockopt(sock, sockopt::Ipv4RecvErr, &true)
    };
    r.map_err(std::io::Error::from)
}

/// Sends what follows with the hop limit (TTL) `hop`.
pub fn set_hop_limit(sock: &Socket, v6: bool, hop: u8) -> std::io::Result<()> {
    let hop = i32::from(hop.max(1));
    let r = if v6 {
        setsockopt(sock, sockopt::Ipv6Ttl, &hop)
    } else {
        setsockopt(sock, sockopt::Ipv4Ttl, &hop)
    };
    r.map_err(std::io::Error::from)
}

/// Makes `sock` send with the guest's hop limit `want`; `now` is what it sends with
/// (updated when the change took).
pub fn follow_hop_limit(sock: &Socket, v6: bool, now: &mut u8, want: u8) {
    if *now != want && set_hop_limit(sock, v6, want).is_ok() {
        *now = want;
    }
}

/// The next error from the network on `sock`'s error queue; `None` when the queue is
/// empty. `buf` receives (and bounds) the returned payload of the failed packet.
pub fn next(sock: &Socket, buf: &mut [u8]) -> Option<IcmpError> {
    let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(
            sock.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        )
        .ok()?;
        let payload_len = msg.bytes;
        let Ok(cmsgs) = msg.cmsgs() else { continue };
        for c in cmsgs {
            let (err, from) = match c {
                ControlMessageOwned::Ipv4RecvErr(err, addr) => (
                    err,
                    addr.map(|a| {
                        IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)))
                    }),
                ),
                ControlMessageOwned::Ipv6RecvErr(err, addr) => (
                    err,
                    addr.map(|a| IpAddr::V6(std::net::Ipv6Addr::from(a.sin6_addr.s6_addr))),
                ),
                _ => continue,
            };
            if err.ee_origin != libc::SO_EE_ORIGIN_ICMP && err.ee_origin != libc::SO_EE_ORIGIN_ICMP6
            {
                continue;
            }
            return Some(IcmpError {
                from: from.map(|a| a.to_canonical()),
                icmp_type: err.ee_type,
                icmp_code: err.ee_code,
                mtu: err.ee_info,
                payload_len,
            });
        }
    }
}
