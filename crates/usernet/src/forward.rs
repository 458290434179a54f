//! Inbound port forwarding (`-t`, `-u`): listeners in the namespace whose connections
//! and datagrams are delivered to the guest.
//!
//! How it works: for every port in the TCP and UDP sets, and every family the guest has
//! an address in, one non-blocking socket is bound (IPv6 ones `IPV6_V6ONLY`, with
//! `SO_REUSEADDR` for TCP) and registered with an odd token. An accepted connection
//! becomes a TCP flow that starts with a SYN to the guest (`tcp`); a datagram becomes an
//! inbound UDP flow (`udp`). The peer appears to the guest as itself, or as the gateway
//! when it is the namespace's loopback or own address.
//!
//! What holds: listeners are opened once, at start; a listed port that cannot be bound is
//! an error naming it (another process has it, or privileges for ports below
//! `net.ipv4.ip_unprivileged_port_start`). A set of every port (`all`, exclusions alone:
//! [`PortSet::every`](crate::PortSet)) takes what is free, as passt does: ports in the
//! namespace's ephemeral range (`net.ipv4.ip_local_port_range`, where the engine's own
//! outbound sockets get their ports) and ports another socket holds are left out. That is
//! still tens of thousands of sockets per protocol and family: the descriptor limit must
//! allow them.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use mio::Interest;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::engine::{Engine, EngineError};
use crate::frame::GuestTx;

pub struct Listener {
    pub sock: Socket,
    pub tcp: bool,
    pub port: u16,
    pub v6: bool,
}

impl<G: GuestTx> Engine<G> {
    pub(crate) fn open_listeners(&mut self) -> Result<(), EngineError> {
        let mut families = Vec::new();
        if self.cfg.guest4.is_some() {
            families.push(IpAddr::V4(self.cfg.listen4));
        }
        if self.cfg.guest6.is_some() {
            families.push(IpAddr::V6(self.cfg.listen6));
        }
        let ephemeral = ephemeral_range();
        let tcp: Vec<u16> = self.cfg.tcp_ports.iter().collect();
        let udp: Vec<u16> = self.cfg.udp_ports.iter().collect();
        let every = (self.cfg.tcp_ports.every, self.cfg.udp_ports.every);
        for (is_tcp, ports, every) in [(true, tcp, every.0), (false, udp, every.1)] {
            for port in ports {
                if every && ephemeral.contains(&port) {
                    continue;
                }
                for addr in &families {
                    let listener = match bind(*addr, port, is_tcp) {
                        Ok(l) => l,
                        Err(e) if every && e.kind() == std::io::ErrorKind::AddrInUse => {
                            continue;
                        }
                        Err(source) => {
                            return Err(EngineError::Listen {
                                proto: if is_tcp { "TCP" } else { "UDP" },
                                port,
                                addr: *addr,
                                source,
                            });
                        }
                    };
                    let index = self.listeners.len();
                    self.register_fd(
                        listener.as_raw_fd(),
                        Self::listener_token(index),
                        Interest::READABLE,
                    )
                    .map_err(EngineError::Register)?;
                    self.listeners.push(Listener {
                        sock: listener,
                        tcp: is_tcp,
                        port,
                        v6: addr.is_ipv6(),
                    });
                }
            }
        }
        Ok(())
    }

    pub(crate) fn listener_ready(&mut self, index: usize) {
        match self.listeners.get(index) {
            Some(l) if l.tcp => self.tcp_accept(index),
            Some(_) => self.udp_listener_ready(index),
            None => {}
        }
    }

    /// The local ports listened on (for logs and tests), as (tcp, port, v6).
    pub fn listening(&self) -> impl Iterator<Item = (bool, u16, bool)> + '_ {
        self.listeners.iter().map(|l| (l.tcp, l.port, l.v6))
    }
}

/// The namespace's ephemeral port range (Linux's default when unreadable).
fn ephemeral_range() -> std::ops::RangeInclusive<u16> {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi => lo..=hi,
        _ => 32768..=60999,
    }
}

fn bind(addr: IpAddr, port: u16, tcp: bool) -> std::io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let ty = if tcp { Type::STREAM } else { Type::DGRAM };
    let sock = Socket::new(domain, ty.nonblocking().cloexec(), None)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    if tcp {
        sock.set_reuse_address(true)?;
    }
    sock.bind(&SockAddr::from(SocketAddr::new(addr, port)))?;
    if tcp {
        sock.listen(1024)?;
    }
    Ok(sock)
}
