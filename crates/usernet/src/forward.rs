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
//! What holds: listeners are opened once, at start; a port that cannot be bound is an
//! error naming it (another process has it, or privileges for ports below
//! `net.ipv4.ip_unprivileged_port_start`). `all` means 65,535 sockets per protocol and
//! family: the descriptor limit must allow it.

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
        let tcp: Vec<u16> = self.cfg.tcp_ports.iter().collect();
        let udp: Vec<u16> = self.cfg.udp_ports.iter().collect();
        for (is_tcp, ports) in [(true, tcp), (false, udp)] {
            for port in ports {
                for addr in &families {
                    let listener =
                        bind(*addr, port, is_tcp).map_err(|source| EngineError::Listen {
                            proto: if is_tcp { "TCP" } else { "UDP" },
                            port,
                            addr: *addr,
                            source,
                        })?;
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
