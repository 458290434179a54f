//! Inbound port forwarding (`-t`, `-u`): listeners in the namespace whose connections
//! and datagrams are delivered to the guest.
//!
//! How it works: for every `-t`/`-u` spec ([`PortSpec`]), every port in its set, and its
//! address — or, when it names none, every family the guest has an address in — one
//! non-blocking socket is bound (IPv6 ones `IPV6_V6ONLY`, with `SO_REUSEADDR` for TCP;
//! to the spec's device too, `SO_BINDTODEVICE`) and registered with an odd token. So a
//! spec listens only where it asks. An accepted connection becomes a TCP flow that starts
//! with a SYN to the guest (`tcp::accept`); a datagram becomes an inbound UDP flow
//! (`udp::listener_ready`; the engine hands a listener's readiness to either); both
//! go to the spec's guest port (`8080:80`: port 80). The peer appears to the guest as itself, or as the gateway
//! when it is the namespace's loopback or own address.
//!
//! What holds: listeners are opened once, at start; a listed port that cannot be bound is
//! an error naming it and where (another process has it, the address is not the
//! namespace's, or privileges for ports below `net.ipv4.ip_unprivileged_port_start`), and
//! so is an address of a family the guest has no address in. A set of every port (`all`, exclusions alone:
//! [`PortSet::every`](crate::PortSet)) takes what is free, as passt does: ports in the
//! namespace's ephemeral range (`net.ipv4.ip_local_port_range`, where the engine's own
//! outbound sockets get their ports) and ports another socket holds are left out. That is
//! still tens of thousands of sockets per protocol and family: the descriptor limit must
//! allow them.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use mio::Interest;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::EngineConfig;
use crate::ctx::Ctx;
use crate::ports::PortSpec;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot listen on {proto} port {port} ({at})")]
    Listen {
        proto: &'static str,
        port: u16,
        /// The address, and `%device` when the spec named one.
        at: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{proto} port spec for {addr}: the guest has no {family} address to forward to")]
    NoFamily {
        proto: &'static str,
        addr: IpAddr,
        family: &'static str,
    },
    #[error("cannot register a socket with the event loop")]
    Register(#[source] std::io::Error),
}

pub struct Listener {
    pub sock: Socket,
    pub tcp: bool,
    pub port: u16,
    /// The guest port connections and datagrams on `port` go to.
    pub guest_port: u16,
    pub v6: bool,
}

/// Opens and registers the listeners of every `-t`/`-u` spec of `cx.cfg`.
pub fn open_listeners<G>(cx: &Ctx<G>) -> Result<Vec<Listener>, ForwardError> {
    let ephemeral = ephemeral_range();
    let specs = cx.cfg.tcp_ports.iter().map(|s| (true, s));
    let specs = specs.chain(cx.cfg.udp_ports.iter().map(|s| (false, s)));
    let mut opened = Vec::new();
    for (is_tcp, spec) in specs {
        let proto = if is_tcp { "TCP" } else { "UDP" };
        let addrs = listen_addrs(&cx.cfg, spec, proto)?;
        let every = spec.ports.every;
        for port in spec.ports.iter() {
            if every && ephemeral.contains(&port) {
                continue;
            }
            for addr in &addrs {
                let sock = match bind(*addr, spec.dev.as_deref(), port, is_tcp) {
                    Ok(l) => l,
                    Err(e) if every && e.kind() == std::io::ErrorKind::AddrInUse => {
                        continue;
                    }
                    Err(source) => {
                        let at = match &spec.dev {
                            Some(dev) => format!("{addr}%{dev}"),
                            None => addr.to_string(),
                        };
                        return Err(ForwardError::Listen {
                            proto,
                            port,
                            at,
                            source,
                        });
                    }
                };
                opened.push(Listener {
                    sock,
                    tcp: is_tcp,
                    port,
                    guest_port: spec.guest_port(port),
                    v6: addr.is_ipv6(),
                });
            }
        }
    }
    for (index, listener) in opened.iter().enumerate() {
        cx.register_fd(
            listener.sock.as_raw_fd(),
            Ctx::<G>::listener_token(index),
            Interest::READABLE,
        )
        .map_err(ForwardError::Register)?;
    }
    Ok(opened)
}

/// Where one spec listens: its address (whose family the guest must have), or the
/// configured any-address of each family the guest has an address in.
fn listen_addrs(
    cfg: &EngineConfig,
    spec: &PortSpec,
    proto: &'static str,
) -> Result<Vec<IpAddr>, ForwardError> {
    match spec.addr {
        Some(addr) => {
            let has = match addr {
                IpAddr::V4(_) => cfg.guest4.is_some(),
                IpAddr::V6(_) => cfg.guest6.is_some(),
            };
            if !has {
                let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
                return Err(ForwardError::NoFamily {
                    proto,
                    addr,
                    family,
                });
            }
            Ok(vec![addr])
        }
        None => {
            let v4 = cfg.guest4.map(|_| IpAddr::V4(cfg.listen4));
            let v6 = cfg.guest6.map(|_| IpAddr::V6(cfg.listen6));
            Ok(v4.into_iter().chain(v6).collect())
        }
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

fn bind(addr: IpAddr, dev: Option<&str>, port: u16, tcp: bool) -> std::io::Result<Socket> {
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
    if let Some(dev) = dev {
        // Without CAP_NET_RAW since Linux 5.7, as long as the socket is not yet bound.
        sock.bind_device(Some(dev.as_bytes()))?;
    }
    sock.bind(&SockAddr::from(SocketAddr::new(addr, port)))?;
    if tcp {
        sock.listen(1024)?;
    }
    Ok(sock)
}
