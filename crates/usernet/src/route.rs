//! Where a guest's flow really goes, and how a peer appears to the guest.
//!
//! The guest has the pod's own addresses and sees remote hosts as they are. Traffic to a
//! gateway address (or the `map_host_loopback` address of its family) goes to the
//! namespace's loopback (`map_gateway`), to a `map_guest_addr` address to the
//! namespace's own address (the guest's), and DNS to an advertised resolver or a
//! `dns_forward` address goes to the upstream resolvers ([`outbound`]); inbound
//! connections from the loopback, or from the namespace's own address, appear to come
//! from the address that leads there: the gateway unless those say otherwise
//! ([`inbound`]). The guest may open flows only to unicast addresses that are not
//! loopback ones ([`destination_ok`]): the namespace's loopback is reached through the
//! gateway mapping alone, which can be turned off. A flow's socket leaves from the
//! configured outbound address and device of its family, if any ([`bind_outbound`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::{ENGINE_LINK_LOCAL, EngineConfig, of_family};

/// Whether the guest may open a flow to `dst`: a unicast address, not its own link,
/// and not a loopback address.
pub fn destination_ok(dst: IpAddr) -> bool {
    match dst.to_canonical() {
        IpAddr::V4(a) => {
            !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
        }
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast() || a.is_loopback()),
    }
}

/// Where a guest flow to `dst:port` really goes.
pub fn outbound(cfg: &EngineConfig, dst: IpAddr, port: u16, dns_capable: bool) -> SocketAddr {
    if dns_capable && port == 53 && (cfg.dns.contains(&dst) || cfg.dns_forward.contains(&dst)) {
        let upstream = cfg
            .dns_upstream
            .iter()
            .find(|u| u.is_ipv4() == dst.is_ipv4())
            .or(cfg.dns_upstream.first());
        if let Some(u) = upstream {
            return *u;
        }
    }
    let v6 = dst.is_ipv6();
    // The engine's own link-local address leads there too, unless another address was
    // given for it.
    let own_link_local = v6
        && of_family(&cfg.map_host_loopback, true).is_none()
        && dst == IpAddr::V6(ENGINE_LINK_LOCAL);
    if cfg.map_gateway && (cfg.loopback_alias(v6) == Some(dst) || own_link_local) {
        let lo = if v6 {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        return SocketAddr::new(lo, port);
    }
    if of_family(&cfg.map_guest_addr, v6) == Some(dst)
        && let Some(own) = guest_addr(cfg, v6)
    {
        return SocketAddr::new(own, port);
    }
    SocketAddr::new(dst, port)
}

/// Binds the socket of a flow to `target` to the outbound address and device of its
/// family (`EngineConfig::outbound4`, `outbound6`), unless `target` is a loopback address.
pub fn bind_outbound(cfg: &EngineConfig, sock: &Socket, target: SocketAddr) -> std::io::Result<()> {
    let out = if target.is_ipv6() {
        &cfg.outbound6
    } else {
        &cfg.outbound4
    };
    if !out.is_set() || target.ip().to_canonical().is_loopback() {
        return Ok(());
    }
    if let Some(dev) = &out.dev {
        sock.bind_device(Some(dev.as_bytes()))?;
    }
    if let Some(addr) = out.addr {
        sock.bind(&SockAddr::from(SocketAddr::new(addr, 0)))?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("outbound address {addr}: cannot bind a socket to it (not this namespace's?)")]
    Addr {
        addr: IpAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("outbound device {dev}: cannot bind a socket to it")]
    Dev {
        dev: String,
        v6: bool,
        #[source]
        source: std::io::Error,
    },
}

/// Checks, once at start, that sockets can be bound as `outbound4` and `outbound6` say
/// (the address is the namespace's, the device exists), so that a mistake is an error
/// then rather than every flow failing.
pub fn check_outbound(cfg: &EngineConfig) -> Result<(), OutboundError> {
    for (v6, out) in [(false, &cfg.outbound4), (true, &cfg.outbound6)] {
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = || Socket::new(domain, Type::DGRAM.cloexec(), None);
        if let Some(dev) = &out.dev {
            socket()
                .and_then(|s| s.bind_device(Some(dev.as_bytes())))
                .map_err(|source| OutboundError::Dev {
                    dev: dev.clone(),
                    v6,
                    source,
                })?;
        }
        if let Some(addr) = out.addr {
            socket()
                .and_then(|s| s.bind(&SockAddr::from(SocketAddr::new(addr, 0))))
                .map_err(|source| OutboundError::Addr { addr, source })?;
        }
    }
    Ok(())
}

/// How a peer of an inbound connection appears to the guest.
pub fn inbound(cfg: &EngineConfig, peer: IpAddr) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    let v6 = peer.is_ipv6();
    if peer.is_loopback() {
        return cfg.loopback_alias(v6);
    }
    if cfg.is_guest_addr(peer) {
        return of_family(&cfg.map_guest_addr, v6).or_else(|| cfg.loopback_alias(v6));
    }
    Some(peer)
}

/// The guest's address of a family.
pub fn guest_addr(cfg: &EngineConfig, v6: bool) -> Option<IpAddr> {
    if v6 {
        cfg.guest6.map(|n| IpAddr::V6(n.addr()))
    } else {
        cfg.guest4.map(|n| IpAddr::V4(n.addr()))
    }
}
