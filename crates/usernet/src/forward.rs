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
//! With `freebind` (passt's `--freebind`), a listener bound to a specific address sets
//! `IP_FREEBIND`/`IPV6_FREEBIND` first: the address need not be the namespace's yet
//! (connections arrive once it is).
//!
//! Shared ports (`share_ports`, vhost-user engines): a live migration may have its source
//! and target engine in one namespace, both told to forward the same ports. Each listed
//! port is bound with `SO_REUSEPORT`, so the target can bind it beside the source. A
//! port found held at start (a bind without `SO_REUSEPORT` fails, one with it succeeds:
//! another engine of this user has it) is not opened but kept [`Waiting`]: bound and
//! listening meanwhile, it would take a share of the connections and datagrams meant for
//! the guest still running on the source. It opens, beside the source's, once the guest
//! comes here ([`open_waiting`]: a migration's state arrived, or a guest booted here);
//! the source closes its forwarded ports once QEMU left after handing the guest over
//! ([`close_all`]), so until then a peer whose connection the kernel hands to the
//! source's silenced listener tries again.
//!
//! What holds: listeners are opened at start (a shared port held by another engine: when
//! the guest comes); a listed port that cannot be bound is an error naming it and where
//! (another process has it, the address is not the namespace's and `freebind` is off, or
//! privileges for ports below `net.ipv4.ip_unprivileged_port_start`), and so is an
//! address of a family the guest has no address in. A set of every port (`all`,
//! exclusions alone: [`PortSet::every`](crate::PortSet)) takes what is free, as passt
//! does: ports in the namespace's ephemeral range (`net.ipv4.ip_local_port_range`, where
//! the engine's own outbound sockets get their ports) and ports another socket holds are
//! left out. That is still tens of thousands of sockets per protocol and family, more
//! than a descriptor limit often allows (passt then refuses to start): the engine raises
//! its soft limit to the hard one, keeps a reserve for flows, binds the well-known ports
//! first, then TCP's before UDP's, and logs, by range, what it leaves out.

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
    /// A shared port: what to open again when it waits for another guest.
    wanted: Option<Want>,
}

/// Descriptors kept free for flows and the engine's own use when "every port" would take
/// more than the limit leaves: at least this many, or a quarter of the limit.
const RESERVE_MIN: usize = 1024;

/// A listed forwarded port another engine holds, opened when the guest comes here
/// (see the theory of operation, shared ports).
pub struct Waiting(Want);

/// The listeners opened, and the shared ports waiting for the guest.
pub struct Opened {
    pub listeners: Vec<Listener>,
    pub waiting: Vec<Waiting>,
}

/// One socket to open: a port of a spec, on one address.
#[derive(Clone)]
struct Want {
    tcp: bool,
    port: u16,
    guest_port: u16,
    addr: IpAddr,
    dev: Option<String>,
}

/// Opens and registers the listeners of every `-t`/`-u` spec of `cx.cfg`: the listed
/// ports first (each must bind), then the free ones of "every port" specs — the well-known
/// ports of both protocols, then TCP's, then UDP's, lowest first — as many as the
/// descriptor limit allows after a reserve for flows. What "every port" leaves out for the limit is logged by range.
pub fn open_listeners<G>(cx: &Ctx<G>) -> Result<Opened, ForwardError> {
    let ephemeral = ephemeral_range();
    // A protocol the engine does not relay has no forwards either.
    let tcp_specs = cx.cfg.tcp_ports.iter().filter(|_| cx.cfg.relay_tcp);
    let udp_specs = cx.cfg.udp_ports.iter().filter(|_| cx.cfg.relay_udp);
    let specs = tcp_specs.map(|s| (true, s));
    let specs = specs.chain(udp_specs.map(|s| (false, s)));
    let (mut listed, mut every) = (Vec::new(), Vec::new());
    for (tcp, spec) in specs {
        let addrs = listen_addrs(&cx.cfg, spec, proto_name(tcp))?;
        for port in spec.ports.iter() {
            if spec.ports.every && ephemeral.contains(&port) {
                continue;
            }
            for &addr in &addrs {
                let want = Want {
                    tcp,
                    port,
                    guest_port: spec.guest_port(port),
                    addr,
                    dev: spec.dev.clone(),
                };
                if spec.ports.every {
                    every.push(want)
                } else {
                    listed.push(want)
                }
            }
        }
    }
    let (freebind, share) = (cx.cfg.freebind, cx.cfg.share_ports);
    let mut opened = Vec::with_capacity(listed.len());
    let mut waiting = Vec::new();
    for want in &listed {
        let how = if share { Bind::Shared } else { Bind::Alone };
        match open(want, freebind, how).map_err(|source| listen_error(want, source))? {
            Some(l) => opened.push(l),
            None => waiting.push(Waiting(want.clone())),
        }
    }
    let listed_open = opened.len();
    if !waiting.is_empty() {
        let held: Vec<Want> = waiting.iter().map(|w| w.0.clone()).collect();
        tracing::warn!(
            "inbound: another engine holds {} (a migration's source?): forwarded once the guest comes here",
            describe(&held)
        );
    }
    // What a limit leaves room for goes to the well-known ports of both protocols first,
    // then TCP's (services are mostly TCP), then UDP's, each from the lowest port up.
    every.sort_by_key(|w| {
        (
            w.port >= 1024,
            w.port >= 1024 && !w.tcp,
            w.port,
            !w.tcp,
            w.addr.is_ipv6(),
        )
    });
    let budget = descriptor_budget(every.len(), cx.cfg.max_flows);
    let mut left_out = Vec::new();
    for want in every {
        if opened.len() - listed_open >= budget {
            left_out.push(want);
            continue;
        }
        match open(&want, freebind, Bind::Alone) {
            Ok(l) => opened.extend(l),
            // Taken by another socket: "every port" means the free ones.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(source) => return Err(listen_error(&want, source)),
        }
    }
    if !left_out.is_empty() {
        tracing::warn!(
            limit = budget,
            "the descriptor limit leaves room for {budget} listeners of \"every port\" after a reserve for flows; not forwarded: {}",
            describe(&left_out)
        );
    }
    if !opened.is_empty() {
        let tcp = opened.iter().filter(|l| l.tcp).count();
        let udp = opened.len() - tcp;
        tracing::info!(tcp, udp, "inbound: {tcp} TCP and {udp} UDP listeners");
    }
    for (index, listener) in opened.iter().enumerate() {
        register(cx, index, listener)?;
    }
    Ok(Opened {
        listeners: opened,
        waiting,
    })
}

fn register<G>(cx: &Ctx<G>, index: usize, listener: &Listener) -> Result<(), ForwardError> {
    cx.register_fd(
        listener.sock.as_raw_fd(),
        Ctx::<G>::listener_token(index),
        Interest::READABLE,
    )
    .map_err(ForwardError::Register)
}

/// The guest came here: opens the waiting shared ports of one protocol (`tcp`) beside
/// whatever engine still holds them, after the listeners (each gets the token of its
/// place). One that cannot be opened (another program has it now) is said and dropped.
pub fn open_waiting<G>(
    cx: &Ctx<G>,
    waiting: &mut Vec<Waiting>,
    listeners: &mut Vec<Listener>,
    tcp: bool,
) {
    let (now, later): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(waiting)
        .into_iter()
        .partition(|w| w.0.tcp == tcp);
    *waiting = later;
    for Waiting(want) in now {
        let opened = match open(&want, cx.cfg.freebind, Bind::Join) {
            Ok(Some(l)) => register(cx, listeners.len(), &l).map(|()| l),
            Ok(None) => continue, // (only `Bind::Shared` leaves a port closed)
            Err(source) => Err(listen_error(&want, source)),
        };
        match opened {
            Ok(l) => {
                tracing::info!("inbound: {} port {} forwarded now", proto_name(tcp), l.port);
                listeners.push(l);
            }
            Err(e) => tracing::warn!("inbound: {e}; not forwarded"),
        }
    }
}

/// The guest moved away for good: every listed shared port is closed and waits again
/// (a later guest here opens it); the ports of "every port" specs are closed too, not
/// kept.
pub fn close_all(listeners: &mut Vec<Listener>, waiting: &mut Vec<Waiting>) {
    for l in listeners.drain(..) {
        if let Some(want) = l.wanted {
            waiting.push(Waiting(want));
        }
    }
}

fn proto_name(tcp: bool) -> &'static str {
    if tcp { "TCP" } else { "UDP" }
}

/// How a forwarded port is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bind {
    Alone,
    /// Shareable (`SO_REUSEPORT`); not opened when another engine holds it already.
    Shared,
    /// Shareable, and opened beside another engine holding it (the guest came here).
    Join,
}

/// Opens `want`'s socket as `how` says; None when, [`Bind::Shared`], another engine
/// holds the port already (see shared ports).
fn open(want: &Want, freebind: bool, how: Bind) -> std::io::Result<Option<Listener>> {
    let freebind = freebind && !want.addr.is_unspecified();
    let bind = |reuse_port: bool, listen: bool| {
        let at = SocketAddr::new(want.addr, want.port);
        bind(
            at,
            want.dev.as_deref(),
            want.tcp,
            freebind,
            reuse_port,
            listen,
        )
    };
    if how == Bind::Shared {
        // Held? A bind without SO_REUSEPORT says (it does not listen); then one with it
        // tells an engine sharing the port from any other holder (an error).
        match bind(false, false) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                bind(true, false)?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    let shared = how != Bind::Alone;
    let sock = bind(shared, true)?;
    Ok(Some(Listener {
        sock,
        tcp: want.tcp,
        port: want.port,
        guest_port: want.guest_port,
        v6: want.addr.is_ipv6(),
        wanted: shared.then(|| want.clone()),
    }))
}

fn listen_error(want: &Want, source: std::io::Error) -> ForwardError {
    let at = match &want.dev {
        Some(dev) => format!("{}%{dev}", want.addr),
        None => want.addr.to_string(),
    };
    ForwardError::Listen {
        proto: proto_name(want.tcp),
        port: want.port,
        at,
        source,
    }
}

/// How many "every port" listeners fit: the soft descriptor limit raised to the hard one,
/// less the descriptors open now and a reserve for flows (a quarter of the limit, at least
/// [`RESERVE_MIN`], at most `max_flows`). `wanted` when everything fits.
fn descriptor_budget(wanted: usize, max_flows: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let open_now = std::fs::read_dir("/proc/self/fd").map_or(64, |d| d.count());
    let reserve = (limit / 4).max(RESERVE_MIN).min(max_flows.max(RESERVE_MIN));
    wanted.min(limit.saturating_sub(open_now + reserve))
}

/// `TCP 12001-32767, 61000-65535; UDP …`: ports by protocol, as ranges.
fn describe(left_out: &[Want]) -> String {
    let mut parts = Vec::new();
    for tcp in [true, false] {
        let mut ports: Vec<u16> = (left_out.iter())
            .filter(|w| w.tcp == tcp)
            .map(|w| w.port)
            .collect();
        if ports.is_empty() {
            continue;
        }
        ports.sort_unstable();
        ports.dedup();
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        for p in ports {
            match ranges.last_mut() {
                Some((_, hi)) if u32::from(*hi) + 1 == u32::from(p) => *hi = p,
                _ => ranges.push((p, p)),
            }
        }
        let text: Vec<String> = (ranges.iter())
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        parts.push(format!("{} {}", proto_name(tcp), text.join(", ")));
    }
    parts.join("; ")
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

fn bind(
    at: SocketAddr,
    dev: Option<&str>,
    tcp: bool,
    freebind: bool,
    reuse_port: bool,
    listen: bool,
) -> std::io::Result<Socket> {
    let addr = at.ip();
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
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    match (freebind, addr.is_ipv6()) {
        (false, _) => {}
        (true, false) => sock.set_freebind_v4(true)?,
        (true, true) => sock.set_freebind_v6(true)?,
    }
    if let Some(dev) = dev {
        // Without CAP_NET_RAW since Linux 5.7, as long as the socket is not yet bound.
        sock.bind_device(Some(dev.as_bytes()))?;
    }
    sock.bind(&SockAddr::from(at))?;
    if tcp && listen {
        sock.listen(1024)?;
    }
    Ok(sock)
}
