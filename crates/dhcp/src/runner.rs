//! Socket runner: serves the cores on the pod's links.
//!
//! How it works: [`open`] creates, for one planned interface, the sockets its services
//! need — on whatever network namespace the calling thread is in, so callers open them on
//! a thread that entered the pod's namespace; a socket stays in the namespace it was made
//! in. [`Service::run`] then loops on one socket until told to stop ([`Stop`]):
//! - DHCPv4: UDP 0.0.0.0:67 bound to the link (`SO_BINDTODEVICE`, `SO_REUSEADDR`, so one
//!   server per link can share the port). Replies always go to 255.255.255.255:68 on that
//!   link: with the bridge binding the guest's address also sits on a dummy in the pod, so
//!   a unicast reply would be delivered locally instead of to the guest.
//! - DHCPv6: UDP [::]:547 bound to the link, member of ff02::1:2 there; replies go back
//!   to the client's link-local source.
//! - Router advertisements: a raw ICMPv6 socket bound to the link, hop limit 255 (RFC 4861
//!   drops anything else), member of ff02::2 for solicitations. An RA goes to ff02::1 at
//!   start, after each solicitation (at most one per 3 s) and every 60 s. The kernel fills
//!   in the ICMPv6 checksum of raw ICMPv6 sockets.
//!
//! Logs: the first lease a service gives and its first advertisement are info events,
//! the rest (renewals, each later advertisement, each dropped message with its reason)
//! debug events, so the default log stays a few lines however chatty the guest.
//!
//! Capabilities: opening needs CAP_NET_BIND_SERVICE (ports 67, 547) and CAP_NET_RAW
//! (`SO_BINDTODEVICE`, the raw ICMPv6 socket); serving needs none, so a caller can drop
//! every capability after [`open`].
//!
//! Stopping without polling: a service blocks in its receive with no timeout (the RA
//! sender until its next advertisement is due), so an idle service does not wake. [`Stop`]
//! wakes it: it shuts the read side of every registered socket down, which Linux
//! answers by ending blocked receives on UDP and raw sockets alike. A service registers
//! before it checks the flag, and `Stop::stop` sets the flag before it shuts sockets
//! down, so a stop is never missed.
//!
//! Raw and UDP sockets are both driven through `std::net::UdpSocket` (a socket2 socket
//! converts into one; `send_to` is the same system call for both), which keeps this
//! module free of `unsafe`. Receives go through [`receive`] (nix's `recvfrom`), not
//! `UdpSocket::recv_from`: a receive ended by `shutdown` returns no source address,
//! which std's conversion asserts against (a panic on every stop of a raw socket).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netbind_plan::model::{Dhcp4Config, Dhcp6Config, RaConfig};
use socket2::{Domain, Protocol, Socket, Type};

use crate::ra;
use crate::v4::{self, Server4};
use crate::v6::Server6;

const RA_INTERVAL: Duration = Duration::from_secs(60);
const RA_MIN_GAP: Duration = Duration::from_secs(3);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
const ALL_DHCP_AGENTS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("link {link} not found in this namespace")]
    NoLink { link: String },
    #[error("{service} on {link}: cannot {step} (needs CAP_NET_BIND_SERVICE and CAP_NET_RAW)")]
    Socket {
        service: &'static str,
        link: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("DHCPv4 on {link}: {source}")]
    Config {
        link: String,
        #[source]
        source: v4::ConfigError,
    },
    #[error("router advertisements on {link}: router MAC {mac:?} is not six hex bytes")]
    RouterMac { link: String, mac: String },
}

/// Totals a service reports when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub received: u64,
    pub answered: u64,
    pub dropped: u64,
}

/// One service with its socket, ready to run.
pub enum Service {
    Dhcp4 {
        link: String,
        server: Server4,
        socket: UdpSocket,
    },
    Dhcp6 {
        link: String,
        server: Server6,
        socket: UdpSocket,
    },
    Ra {
        link: String,
        message: Vec<u8>,
        socket: UdpSocket,
        ifindex: u32,
        prefix: ipnet::Ipv6Net,
    },
}

impl Service {
    pub fn name(&self) -> String {
        match self {
            Service::Dhcp4 { link, .. } => format!("dhcp4 on {link}"),
            Service::Dhcp6 { link, .. } => format!("dhcp6 on {link}"),
            Service::Ra { link, .. } => format!("ra on {link}"),
        }
    }

    fn socket(&self) -> &UdpSocket {
        match self {
            Service::Dhcp4 { socket, .. }
            | Service::Dhcp6 { socket, .. }
            | Service::Ra { socket, .. } => socket,
        }
    }

    /// Serves until [`Stop::stop`].
    pub fn run(self, stop: Arc<Stop>) -> Totals {
        let mut totals = Totals::default();
        if !stop.register(self.socket()) {
            return totals;
        }
        let stop = &stop.flag;
        let mut buf = vec![0u8; 65536];
        let mut log = Log::new(self.name());
        match self {
            Service::Dhcp4 {
                mut server, socket, ..
            } => {
                let to = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
                while !stop.load(Ordering::Relaxed) {
                    let n = match receive(&socket, &mut buf) {
                        Ok((n, _)) => n,
                        Err(e) => {
                            pause_after(&e, stop);
                            continue;
                        }
                    };
                    totals.received += 1;
                    match server.handle(&buf[..n]) {
                        Ok(reply) if socket.send_to(&reply.payload, to).is_ok() => {
                            totals.answered += 1;
                            log.dhcp4(&reply, server.config());
                        }
                        Ok(reply) => {
                            log.dropped(&mut totals, &format!("{:?} not sent", reply.kind))
                        }
                        Err(why) => log.dropped(&mut totals, &why),
                    }
                }
            }
            Service::Dhcp6 {
                mut server, socket, ..
            } => {
                while !stop.load(Ordering::Relaxed) {
                    let (n, from) = match receive(&socket, &mut buf) {
                        Ok((n, Some(from))) => (n, from),
                        Ok((_, None)) => continue, // ended by a stop: no sender
                        Err(e) => {
                            pause_after(&e, stop);
                            continue;
                        }
                    };
                    totals.received += 1;
                    match server.handle(None, &buf[..n]) {
                        Ok(reply) if socket.send_to(&reply.payload, from).is_ok() => {
                            totals.answered += 1;
                            log.dhcp6(&reply, server.config(), from);
                        }
                        Ok(reply) => {
                            log.dropped(&mut totals, &format!("{:?} not sent", reply.kind))
                        }
                        Err(why) => log.dropped(&mut totals, &why),
                    }
                }
            }
            Service::Ra {
                message,
                socket,
                ifindex,
                prefix,
                ..
            } => {
                let to = SocketAddr::V6(SocketAddrV6::new(ALL_NODES, 0, 0, ifindex));
                let mut last: Option<Instant> = None;
                let mut solicited = false;
                while !stop.load(Ordering::Relaxed) {
                    let due = last.is_none_or(|t| t.elapsed() >= RA_INTERVAL)
                        || (solicited && last.is_some_and(|t| t.elapsed() >= RA_MIN_GAP));
                    if due {
                        if socket.send_to(&message, to).is_ok() {
                            totals.answered += 1;
                            log.advertised(solicited, prefix);
                        } else {
                            tracing::debug!(service = %log.service, "{}: could not send the router advertisement", log.service);
                        }
                        last = Some(Instant::now());
                        solicited = false;
                    }
                    // Asleep until the next advertisement is due (a solicitation wakes it).
                    let gap = if solicited { RA_MIN_GAP } else { RA_INTERVAL };
                    let next = last.map_or(Duration::ZERO, |t| gap.saturating_sub(t.elapsed()));
                    let _ = socket.set_read_timeout(Some(next.max(Duration::from_millis(1))));
                    match receive(&socket, &mut buf) {
                        Ok((0, None)) => {} // ended by a stop
                        Ok((n, _)) => {
                            totals.received += 1;
                            if ra::is_router_solicitation(&buf[..n]) {
                                solicited = true;
                            } else {
                                log.dropped(&mut totals, &"not a router solicitation");
                            }
                        }
                        Err(e) => pause_after(&e, stop),
                    }
                }
            }
        }
        totals
    }
}

/// What a service logs. The first lease given (and the first advertisement sent) is an
/// info event; renewals, later advertisements and every dropped message are debug events,
/// so a guest that renews often, or a hostile one that floods the server, does not flood
/// the log at the default level.
struct Log {
    service: String,
    leased: bool,
    advertised: bool,
}

impl Log {
    fn new(service: String) -> Log {
        Log {
            service,
            leased: false,
            advertised: false,
        }
    }

    fn dhcp4(&mut self, reply: &v4::Reply, config: &netbind_plan::model::Dhcp4Config) {
        let service = &self.service;
        let (address, mac) = (&config.address, &config.client_mac);
        match reply.kind {
            dhcproto::v4::MessageType::Ack if !self.leased => {
                self.leased = true;
                tracing::info!(%service, %address, %mac, lease_seconds = config.lease_seconds,
                    "{service}: lease of {address} given to {mac}");
            }
            dhcproto::v4::MessageType::Ack => {
                tracing::debug!(%service, %address, %mac, "{service}: lease of {address} renewed")
            }
            kind => tracing::debug!(%service, %address, %mac, "{service}: {kind:?} sent"),
        }
    }

    fn dhcp6(
        &mut self,
        reply: &crate::v6::Reply6,
        config: &netbind_plan::model::Dhcp6Config,
        to: SocketAddr,
    ) {
        let service = &self.service;
        let address = &config.address;
        match reply.kind {
            dhcproto::v6::MessageType::Reply if !self.leased => {
                self.leased = true;
                tracing::info!(%service, %address, client = %to.ip(),
                    lease_seconds = config.lease_seconds,
                    "{service}: lease of {address} given to {}", to.ip());
            }
            kind => {
                tracing::debug!(%service, %address, client = %to.ip(), "{service}: {kind:?} sent")
            }
        }
    }

    fn advertised(&mut self, solicited: bool, prefix: ipnet::Ipv6Net) {
        let service = &self.service;
        if !self.advertised {
            self.advertised = true;
            tracing::info!(%service, %prefix, solicited, "{service}: router advertisement of {prefix} sent");
        } else {
            tracing::debug!(%service, %prefix, solicited, "{service}: router advertisement sent");
        }
    }

    /// A message that got no answer: counted, and logged at debug level with why.
    fn dropped(&self, totals: &mut Totals, why: &dyn std::fmt::Display) {
        totals.dropped += 1;
        let service = &self.service;
        tracing::debug!(%service, reason = %why, "{service}: dropped a message: {why}");
    }
}

/// One datagram and its sender (none when the receive was ended by `shutdown`).
fn receive(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, Option<SocketAddr>)> {
    use nix::sys::socket::{SockaddrStorage, recvfrom};
    use std::os::fd::AsRawFd;
    let (n, from) = recvfrom::<SockaddrStorage>(socket.as_raw_fd(), buf)?;
    let from = from.and_then(|a| {
        if let Some(v4) = a.as_sockaddr_in() {
            Some(SocketAddr::V4(SocketAddrV4::from(*v4)))
        } else {
            a.as_sockaddr_in6()
                .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
        }
    });
    Ok((n, from))
}

/// A receive that failed for another reason than the read timeout (the link went away
/// with a hot-unplug, say) is not retried at once: a lasting error must not become a busy
/// loop. When stopping (the receive ended because [`Stop`] shut the socket down), the
/// loop ends at once.
fn pause_after(e: &std::io::Error, stop: &AtomicBool) {
    use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
    if !stop.load(Ordering::Relaxed) && !matches!(e.kind(), WouldBlock | TimedOut | Interrupted) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Stops services: sets their flag and wakes the ones blocked in a receive.
#[derive(Default)]
pub struct Stop {
    flag: AtomicBool,
    /// A handle on each running service's socket (same socket, another descriptor).
    sockets: Mutex<Vec<Socket>>,
}

impl Stop {
    pub fn new() -> Arc<Stop> {
        Arc::new(Stop::default())
    }

    /// Ends every service that runs with this `Stop`, now or later.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        for s in sockets.iter() {
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
    }

    /// Registers a service's socket; false if the service should not start (stopped
    /// already, or its socket cannot be registered — then it could not be woken).
    fn register(&self, socket: &UdpSocket) -> bool {
        let Ok(handle) = socket.try_clone() else {
            return false;
        };
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Socket::from(handle));
        !self.flag.load(Ordering::SeqCst)
    }
}

fn ifindex(link: &str) -> Result<u32, RunnerError> {
    nix::net::if_::if_nametoindex(link).map_err(|_| RunnerError::NoLink { link: link.into() })
}

fn socket_err(
    service: &'static str,
    link: &str,
    step: &'static str,
) -> impl FnOnce(std::io::Error) -> RunnerError {
    let link = link.to_string();
    move |source| RunnerError::Socket {
        service,
        link,
        step,
        source,
    }
}

fn bound_udp(
    service: &'static str,
    link: &str,
    domain: Domain,
    addr: SocketAddr,
) -> Result<Socket, RunnerError> {
    let err = |step| socket_err(service, link, step);
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .map_err(err("create a UDP socket"))?;
    s.set_reuse_address(true).map_err(err("set SO_REUSEADDR"))?;
    s.bind_device(Some(link.as_bytes()))
        .map_err(err("bind to the link"))?;
    if domain == Domain::IPV6 {
        s.set_only_v6(true).map_err(err("set IPV6_V6ONLY"))?;
    }
    s.bind(&addr.into()).map_err(err("bind the server port"))?;
    Ok(s)
}

/// Opens the DHCPv4 server of one link.
pub fn open_dhcp4(config: &Dhcp4Config) -> Result<Service, RunnerError> {
    let link = config.interface.clone();
    ifindex(&link)?;
    let any = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67));
    let s = bound_udp("dhcp4", &link, Domain::IPV4, any)?;
    s.set_broadcast(true)
        .map_err(socket_err("dhcp4", &link, "set SO_BROADCAST"))?;
    let server = Server4::new(config.clone()).map_err(|source| RunnerError::Config {
        link: link.clone(),
        source,
    })?;
    Ok(Service::Dhcp4 {
        link,
        server,
        socket: s.into(),
    })
}

/// Opens the DHCPv6 server of one link.
pub fn open_dhcp6(config: &Dhcp6Config) -> Result<Service, RunnerError> {
    let link = config.interface.clone();
    let index = ifindex(&link)?;
    let any = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 547, 0, 0));
    let s = bound_udp("dhcp6", &link, Domain::IPV6, any)?;
    s.join_multicast_v6(&ALL_DHCP_AGENTS, index)
        .map_err(socket_err("dhcp6", &link, "join ff02::1:2"))?;
    Ok(Service::Dhcp6 {
        link,
        server: Server6::new(config.clone()),
        socket: s.into(),
    })
}

/// Opens the router-advertisement sender of one link.
pub fn open_ra(config: &RaConfig) -> Result<Service, RunnerError> {
    let link = config.interface.clone();
    let index = ifindex(&link)?;
    let mac = v4::parse_mac(&config.router_mac).ok_or_else(|| RunnerError::RouterMac {
        link: link.clone(),
        mac: config.router_mac.clone(),
    })?;
    let err = |step| socket_err("ra", &link, step);
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        .map_err(err("create a raw ICMPv6 socket"))?;
    s.bind_device(Some(link.as_bytes()))
        .map_err(err("bind to the link"))?;
    s.set_multicast_hops_v6(255)
        .map_err(err("set the multicast hop limit"))?;
    s.set_unicast_hops_v6(255)
        .map_err(err("set the unicast hop limit"))?;
    s.set_multicast_if_v6(index)
        .map_err(err("select the multicast link"))?;
    s.set_multicast_loop_v6(false)
        .map_err(err("turn off multicast loop"))?;
    s.join_multicast_v6(&ALL_ROUTERS, index)
        .map_err(err("join ff02::2"))?;
    Ok(Service::Ra {
        message: ra::advertisement(config, mac),
        prefix: config.prefix,
        link,
        socket: s.into(),
        ifindex: index,
    })
}
