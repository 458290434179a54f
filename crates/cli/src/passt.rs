//! passt's command line: netbind as a drop-in for the `passt` that libvirt and QEMU start.
//!
//! How it works: libvirt (its passt back end) and QEMU (`-netdev passt`) start a binary
//! named `passt` with passt's options; KubeVirt's `passtBinding` goes through libvirt.
//! [`PasstArgs`] declares every option passt has, with passt's short forms, so that none
//! of them is an "unexpected argument"; [`PasstArgs::plan`] turns them into a
//! [`PasstRun`]: the changes to the engine's configuration (addresses, gateway, MTU,
//! resolvers, ports, families) and the process around it (where the guest connects,
//! daemon or foreground, pidfile, log file, one connection or many). Every option acts
//! as passt's does, each through a knob of the engine's configuration; a value that is
//! wrong, or that the namespace cannot honour, is refused naming the option, exit 1 —
//! never silently ignored, since a launcher that passes it expects it to act.
//!
//! What holds: the plan is a pure function of the arguments (tested option by option);
//! addresses not given are the namespace's own, as passt takes them (the link of
//! `--interface`, else the one with the default route).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use std::os::unix::process::CommandExt;

use clap::Parser;
use ipnet::{Ipv4Net, Ipv6Net};
use netbind_usernet::PortSpec;
use netbind_usernet::config::{EngineConfig, Outbound, of_family, parse_mac};

#[derive(Debug, thiserror::Error)]
pub enum PasstError {
    #[error("--dns {0}: not an address (or `none`)")]
    Dns(String),
    #[error(
        "{option} {addr}: the guest cannot reach it (not a unicast address, or a loopback one)"
    )]
    Unreachable { option: &'static str, addr: String },
    #[error("--netmask {0}: not an IPv4 netmask or prefix length")]
    Netmask(String),
    #[error("--netmask needs an IPv4 --address")]
    NetmaskWithoutAddress,
    #[error("--mtu {0}: must be 0 (no MTU option to the guest) or within 1280..=65520")]
    Mtu(u32),
    #[error("-4 and -6 together leave no family")]
    NoFamily,
    #[error("--socket and --fd together: the guest connects to one of them")]
    SocketAndFd,
    #[error(
        "{ports} with {off}: that protocol is not relayed, so none of its ports can be forwarded; drop one of them"
    )]
    PortsOfProtocolOff {
        ports: &'static str,
        off: &'static str,
    },
    #[error(
        "--fqdn {0}: not a domain name (dot-separated labels of 1 to 63 letters, digits or hyphens; 253 characters at most)"
    )]
    Fqdn(String),
    #[error("--log-size {0}: must be a number of bytes, {MIN_LOG_SIZE} or more")]
    LogSize(String),
    #[error("--log-size needs --log-file")]
    LogSizeWithoutFile,
    #[error("--mac-addr {0}: not a unicast MAC address (six hex bytes, e.g. 9a:55:9a:55:9a:55)")]
    MacAddr(String),
    #[error("{option} {spec}: {source}")]
    Ports {
        option: &'static str,
        spec: String,
        #[source]
        source: netbind_usernet::PortSpecError,
    },
}

/// passt's options (`passt --help`, passt(1)). Short forms as passt's.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "passt",
    about = "netbind's user-mode engine with passt's command line (for libvirt and QEMU)",
    disable_version_flag = true
)]
pub struct PasstArgs {
    /// Debug messages (the log's debug level).
    #[arg(short = 'd', long)]
    pub debug: bool,
    /// Trace messages too.
    #[arg(long)]
    pub trace: bool,
    /// Only warnings and errors.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Stay in the foreground (default: daemonize once the socket is bound).
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Log to stderr (the default in the foreground).
    #[arg(short = 'e', long)]
    pub stderr: bool,
    /// Log to this file.
    #[arg(short = 'l', long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Keep the log file under this many bytes: its older half goes when it is full.
    #[arg(long, value_name = "SIZE")]
    pub log_size: Option<String>,
    /// After opening its sockets, run as this user (`UID`, `UID:GID`).
    #[arg(long, value_name = "UID[:GID]")]
    pub runas: Option<String>,
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
    /// Capture the guest's frames to this pcap file.
    #[arg(short = 'p', long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Write the process ID here (the daemon's, once it runs).
    #[arg(short = 'P', long, value_name = "FILE")]
    pub pid: Option<PathBuf>,
    /// Guest MTU (0: do not tell the guest one).
    #[arg(short = 'm', long, value_name = "MTU")]
    pub mtu: Option<u32>,
    /// The guest's address (IPv4 or IPv6; may be given once per family).
    #[arg(short = 'a', long, value_name = "ADDR")]
    pub address: Vec<IpAddr>,
    /// The guest's IPv4 netmask (dotted or a prefix length).
    #[arg(short = 'n', long, value_name = "MASK")]
    pub netmask: Option<String>,
    /// The engine's own MAC address, as the guest sees it (default 9a:55:9a:55:9a:55).
    #[arg(short = 'M', long, value_name = "MAC")]
    pub mac_addr: Option<String>,
    /// The guest's default gateway (once per family).
    #[arg(short = 'g', long, value_name = "ADDR")]
    pub gateway: Vec<IpAddr>,
    /// The host interface whose addresses and routes the guest gets.
    #[arg(short = 'i', long, value_name = "NAME")]
    pub interface: Option<String>,
    /// The guest's outbound flows leave from this address (once per family).
    #[arg(short = 'o', long, value_name = "ADDR")]
    pub outbound: Vec<IpAddr>,
    /// The guest's outbound IPv4 flows leave through this link.
    #[arg(long, value_name = "NAME")]
    pub outbound_if4: Option<String>,
    /// The guest's outbound IPv6 flows leave through this link.
    #[arg(long, value_name = "NAME")]
    pub outbound_if6: Option<String>,
    /// Resolvers the guest is told about (`none`: none).
    #[arg(short = 'D', long, value_name = "ADDR")]
    pub dns: Vec<String>,
    /// The guest's DNS to this address goes to the namespace's resolver; the guest is
    /// told it instead of a loopback resolver (once per family).
    #[arg(long, value_name = "ADDR")]
    pub dns_forward: Vec<IpAddr>,
    /// The resolver the guest's DNS goes to (once per family; default: the namespace's
    /// first).
    #[arg(long, value_name = "ADDR")]
    pub dns_host: Vec<IpAddr>,
    /// Search domains the guest is told about, space-separated (`none`: none).
    #[arg(short = 'S', long, value_name = "LIST")]
    pub search: Vec<String>,
    /// Tell the guest no resolvers (DHCP, DHCPv6, RAs); its queries still go upstream.
    #[arg(long)]
    pub no_dhcp_dns: bool,
    /// Tell the guest no search list (DHCP, DHCPv6, RAs).
    #[arg(long)]
    pub no_dhcp_search: bool,
    /// The guest's hostname (DHCP option 12).
    #[arg(short = 'H', long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// The guest's fully qualified name (DHCP option 81, DHCPv6 option 39).
    #[arg(long, value_name = "NAME")]
    pub fqdn: Option<String>,
    /// Relay no TCP (the guest's is dropped; no TCP port forwarded).
    #[arg(long)]
    pub no_tcp: bool,
    /// Relay no UDP (DHCP is still served).
    #[arg(long)]
    pub no_udp: bool,
    /// Relay no ICMP echo.
    #[arg(long)]
    pub no_icmp: bool,
    /// Do not answer DHCP.
    #[arg(long)]
    pub no_dhcp: bool,
    /// Do not answer neighbour or router solicitations (and send no RA).
    #[arg(long)]
    pub no_ndp: bool,
    /// Do not answer DHCPv6.
    #[arg(long)]
    pub no_dhcpv6: bool,
    /// Send no router advertisements, answer no router solicitation.
    #[arg(long)]
    pub no_ra: bool,
    /// Do not map the gateway address to the host's loopback.
    #[arg(long)]
    pub no_map_gw: bool,
    /// This address, not the gateway, leads to the host's loopback (once per family;
    /// `none`: none does).
    #[arg(long, value_name = "ADDR")]
    pub map_host_loopback: Vec<String>,
    /// This address leads to the host's own address, the guest's (once per family;
    /// `none`: none does, the default).
    #[arg(long, value_name = "ADDR")]
    pub map_guest_addr: Vec<String>,
    /// Forwards bound to an address may bind it before the namespace has it.
    #[arg(long)]
    pub freebind: bool,
    /// IPv4 only.
    #[arg(short = '4', long)]
    pub ipv4_only: bool,
    /// IPv6 only.
    #[arg(short = '6', long)]
    pub ipv6_only: bool,
    /// The unix socket QEMU connects to.
    #[arg(short = 's', long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// An inherited, connected socket to the guest (QEMU's `-netdev passt`).
    #[arg(short = 'F', long, value_name = "FD")]
    pub fd: Option<i32>,
    /// Serve one guest connection, then exit.
    #[arg(short = '1', long)]
    pub one_off: bool,
    /// Inbound TCP ports (passt's SPEC); may be repeated.
    #[arg(short = 't', long, value_name = "SPEC")]
    pub tcp_ports: Vec<String>,
    /// Inbound UDP ports; may be repeated.
    #[arg(short = 'u', long, value_name = "SPEC")]
    pub udp_ports: Vec<String>,
    /// Be QEMU's vhost-user back end on the socket (or --fd) instead of the stream
    /// protocol.
    #[arg(long)]
    pub vhost_user: bool,
    /// vhost-user: print the back end's capabilities as JSON (`{"type": "net"}`), exit.
    #[arg(long)]
    pub print_capabilities: bool,
    /// vhost-user: where `passt-repair` connects during a migration [default: the
    /// socket's path with `.repair` added].
    #[arg(long, value_name = "PATH")]
    pub repair_path: Option<PathBuf>,
}

/// Where the guest is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guest {
    Socket(PathBuf),
    Fd(i32),
}

/// What to run, decided from the arguments alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasstRun {
    pub guest: Guest,
    /// vhost-user instead of the stream protocol.
    pub vhost_user: bool,
    pub daemon: bool,
    pub one_off: bool,
    pub pidfile: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    /// Bytes the log file is kept under (`--log-size`).
    pub log_size: Option<u64>,
    pub pcap: Option<PathBuf>,
    pub runas: Option<String>,
    /// `-1` quiet … `2` trace.
    pub verbosity: i8,
    /// The host link to take addresses from (default: the default route's).
    pub interface: Option<String>,
    pub changes: ConfigChanges,
}

/// The changes the options make to the configuration taken from the namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChanges {
    pub address4: Option<Ipv4Net>,
    pub address6: Option<Ipv6Net>,
    pub gateway4: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    pub mtu: Option<u16>,
    /// `Some(vec![])`: `--dns none`.
    pub dns: Option<Vec<IpAddr>>,
    pub search: Option<Vec<String>>,
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    /// The engine's own MAC (`--mac-addr`).
    pub engine_mac: Option<[u8; 6]>,
    /// Services not to answer: `--no-dhcp`, `--no-dhcpv6`, `--no-ndp`, `--no-ra`.
    pub no_dhcp4: bool,
    pub no_dhcp6: bool,
    pub no_ndp: bool,
    pub no_ra: bool,
    /// Protocols not to relay: `--no-tcp`, `--no-udp`, `--no-icmp`.
    pub no_tcp: bool,
    pub no_udp: bool,
    pub no_icmp: bool,
    /// What DHCP and RAs leave out: `--no-dhcp-dns`, `--no-dhcp-search`.
    pub no_dhcp_dns: bool,
    pub no_dhcp_search: bool,
    pub no_map_gw: bool,
    pub freebind: bool,
    /// Addresses standing for the namespace: `--dns-forward`, `--map-host-loopback`,
    /// `--map-guest-addr`; and where the guest's DNS goes, `--dns-host`.
    pub dns_forward: Vec<IpAddr>,
    pub dns_host: Vec<IpAddr>,
    pub map_host_loopback: Vec<IpAddr>,
    pub map_guest_addr: Vec<IpAddr>,
    /// Where outbound flows leave from: `--outbound`, `--outbound-if4`, `--outbound-if6`.
    pub outbound4: Outbound,
    pub outbound6: Outbound,
    pub ipv4_only: bool,
    pub ipv6_only: bool,
    pub tcp_ports: Vec<PortSpec>,
    pub udp_ports: Vec<PortSpec>,
}

/// The smallest `--log-size`: room for a few dozen lines after the older half goes.
pub const MIN_LOG_SIZE: u64 = 4096;

/// libvirt's default when it gives no socket: passt's own default directory.
pub const DEFAULT_SOCKET: &str = "/tmp/passt_1.socket";

impl PasstArgs {
    /// What the arguments ask for, or why they cannot be served.
    pub fn plan(&self) -> Result<PasstRun, PasstError> {
        if self.ipv4_only && self.ipv6_only {
            return Err(PasstError::NoFamily);
        }
        let guest = match (&self.socket, self.fd) {
            (Some(_), Some(_)) => return Err(PasstError::SocketAndFd),
            (Some(path), None) => Guest::Socket(path.clone()),
            (None, Some(fd)) => Guest::Fd(fd),
            (None, None) => Guest::Socket(PathBuf::from(DEFAULT_SOCKET)),
        };
        let verbosity = if self.trace {
            2
        } else if self.debug {
            1
        } else if self.quiet {
            -1
        } else {
            0
        };
        Ok(PasstRun {
            // With an inherited descriptor (QEMU's `-netdev passt`) QEMU is the parent
            // and waits for no daemon; passt stays in the foreground then too.
            daemon: !self.foreground && matches!(guest, Guest::Socket(_)),
            guest,
            vhost_user: self.vhost_user,
            one_off: self.one_off,
            pidfile: self.pid.clone(),
            log_file: self.log_file.clone(),
            log_size: self.log_size()?,
            pcap: self.pcap.clone(),
            runas: self.runas.clone(),
            verbosity,
            interface: self.interface.clone(),
            changes: self.changes()?,
        })
    }

    fn log_size(&self) -> Result<Option<u64>, PasstError> {
        let Some(size) = &self.log_size else {
            return Ok(None);
        };
        if self.log_file.is_none() {
            return Err(PasstError::LogSizeWithoutFile);
        }
        let bytes = (size.parse::<u64>().ok())
            .filter(|n| *n >= MIN_LOG_SIZE)
            .ok_or_else(|| PasstError::LogSize(size.clone()))?;
        Ok(Some(bytes))
    }

    fn changes(&self) -> Result<ConfigChanges, PasstError> {
        let mut c = ConfigChanges {
            no_map_gw: self.no_map_gw,
            freebind: self.freebind,
            outbound4: Outbound {
                addr: of_family(&self.outbound, false),
                dev: self.outbound_if4.clone(),
            },
            outbound6: Outbound {
                addr: of_family(&self.outbound, true),
                dev: self.outbound_if6.clone(),
            },
            ipv4_only: self.ipv4_only,
            ipv6_only: self.ipv6_only,
            hostname: self.hostname.clone(),
            no_dhcp4: self.no_dhcp,
            no_dhcp6: self.no_dhcpv6,
            no_ndp: self.no_ndp,
            no_ra: self.no_ra,
            no_tcp: self.no_tcp,
            no_udp: self.no_udp,
            no_icmp: self.no_icmp,
            no_dhcp_dns: self.no_dhcp_dns,
            no_dhcp_search: self.no_dhcp_search,
            ..ConfigChanges::default()
        };
        let prefix4 = match &self.netmask {
            Some(m) => Some(netmask_prefix(m).ok_or_else(|| PasstError::Netmask(m.clone()))?),
            None => None,
        };
        for a in &self.address {
            match a {
                // passt's default prefix for a given address without --netmask: the
                // address's class, in practice /24 for the private ranges; netbind keeps
                // the namespace's prefix when it has one (see `apply_to`).
                IpAddr::V4(v4) => {
                    c.address4 = Ipv4Net::new(*v4, prefix4.unwrap_or(0)).ok();
                }
                IpAddr::V6(v6) => c.address6 = Ipv6Net::new(*v6, 64).ok(),
            }
        }
        if prefix4.is_some() && c.address4.is_none() {
            return Err(PasstError::NetmaskWithoutAddress);
        }
        for g in &self.gateway {
            match g {
                IpAddr::V4(v4) => c.gateway4 = Some(*v4),
                IpAddr::V6(v6) => c.gateway6 = Some(*v6),
            }
        }
        if let Some(mtu) = self.mtu {
            c.mtu = match mtu {
                0 => None,
                1280..=65520 => Some(mtu as u16),
                _ => return Err(PasstError::Mtu(mtu)),
            };
        }
        if !self.dns.is_empty() {
            let mut dns = Vec::new();
            for d in &self.dns {
                if d != "none" {
                    dns.push(d.parse().map_err(|_| PasstError::Dns(d.clone()))?);
                }
            }
            c.dns = Some(dns);
        }
        if !self.search.is_empty() {
            c.search = Some(
                (self.search.iter())
                    .flat_map(|list| list.split_whitespace())
                    .filter(|s| *s != "none")
                    .map(str::to_string)
                    .collect(),
            );
        }
        if let Some(name) = &self.fqdn {
            if !is_domain_name(name) {
                return Err(PasstError::Fqdn(name.clone()));
            }
            c.fqdn = Some(name.trim_end_matches('.').to_string());
        }
        if let Some(m) = &self.mac_addr {
            c.engine_mac = Some(
                parse_mac(m)
                    .filter(|b| b[0] & 1 == 0 && *b != [0; 6])
                    .ok_or_else(|| PasstError::MacAddr(m.clone()))?,
            );
        }
        c.dns_forward = reachable("--dns-forward", &self.dns_forward)?;
        c.dns_host = self.dns_host.clone();
        let addrs = |option, given: &[String]| -> Result<Vec<IpAddr>, PasstError> {
            let unreachable = |a: &String| PasstError::Unreachable {
                option,
                addr: a.clone(),
            };
            let parsed = (given.iter().filter(|a| a.as_str() != "none"))
                .map(|a| a.parse().map_err(|_| unreachable(a)))
                .collect::<Result<Vec<IpAddr>, _>>()?;
            reachable(option, &parsed)
        };
        c.map_host_loopback = addrs("--map-host-loopback", &self.map_host_loopback)?;
        if self.map_host_loopback.iter().any(|a| a == "none") {
            c.no_map_gw = true;
        }
        c.map_guest_addr = addrs("--map-guest-addr", &self.map_guest_addr)?;
        c.tcp_ports = specs("--tcp-ports", &self.tcp_ports)?;
        c.udp_ports = specs("--udp-ports", &self.udp_ports)?;
        for (ports, given, off, off_name) in [
            ("--tcp-ports", &c.tcp_ports, self.no_tcp, "--no-tcp"),
            ("--udp-ports", &c.udp_ports, self.no_udp, "--no-udp"),
        ] {
            if off && !given.is_empty() {
                return Err(PasstError::PortsOfProtocolOff {
                    ports,
                    off: off_name,
                });
            }
        }
        Ok(c)
    }
}

/// `addrs`, if the guest can send to each: unicast, not loopback (the engine's flows go
/// only there, `netbind_usernet::route::destination_ok`).
fn reachable(option: &'static str, addrs: &[IpAddr]) -> Result<Vec<IpAddr>, PasstError> {
    for a in addrs {
        if !netbind_usernet::route::destination_ok(*a) {
            return Err(PasstError::Unreachable {
                option,
                addr: a.to_string(),
            });
        }
    }
    Ok(addrs.to_vec())
}

fn specs(option: &'static str, given: &[String]) -> Result<Vec<PortSpec>, PasstError> {
    given
        .iter()
        // passt's `none` (no forwards) is the engine's default already; `auto` applies to
        // pasta only.
        .filter(|s| s.as_str() != "none")
        .map(|s| {
            PortSpec::parse(s).map_err(|source| PasstError::Ports {
                option,
                spec: s.clone(),
                source,
            })
        })
        .collect()
}

/// Whether `name` is a domain name a DHCP option can carry: labels of letters, digits
/// and hyphens (not at either end), 1 to 63 each, 253 characters in all (a root dot may
/// end it).
fn is_domain_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `255.255.255.0` or `24` → 24.
fn netmask_prefix(mask: &str) -> Option<u8> {
    if let Ok(n) = mask.parse::<u8>() {
        return (n <= 32).then_some(n);
    }
    let m = u32::from(mask.parse::<Ipv4Addr>().ok()?);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

impl ConfigChanges {
    /// Applies the changes to the configuration read from the namespace.
    pub fn apply_to(&self, cfg: &mut EngineConfig) {
        if let Some(a) = self.address4 {
            let prefix = match (a.prefix_len(), cfg.guest4) {
                (0, Some(ns)) => ns.prefix_len(),
                (0, None) => 24,
                (p, _) => p,
            };
            cfg.guest4 = Ipv4Net::new(a.addr(), prefix).ok();
        }
        if let Some(a) = self.address6 {
            cfg.guest6 = Some(a);
        }
        if let Some(g) = self.gateway4 {
            cfg.gateway4 = Some(g);
        }
        if let Some(g) = self.gateway6 {
            cfg.gateway6 = Some(g);
        }
        if self.ipv4_only {
            cfg.guest6 = None;
            cfg.gateway6 = None;
        }
        if self.ipv6_only {
            cfg.guest4 = None;
            cfg.gateway4 = None;
        }
        if let Some(mtu) = self.mtu {
            cfg.mtu = mtu;
        }
        if let Some(search) = &self.search {
            cfg.search = search.clone();
        }
        if let Some(h) = &self.hostname {
            cfg.hostname = h.clone();
        }
        if let Some(f) = &self.fqdn {
            cfg.fqdn = f.clone();
        }
        if self.no_map_gw {
            cfg.map_gateway = false;
        }
        cfg.freebind |= self.freebind;
        if self.outbound4.is_set() {
            cfg.outbound4 = self.outbound4.clone();
        }
        if self.outbound6.is_set() {
            cfg.outbound6 = self.outbound6.clone();
        }
        if let Some(mac) = self.engine_mac {
            cfg.engine_mac = mac;
        }
        cfg.serve_dhcp4 &= !self.no_dhcp4;
        cfg.serve_dhcp6 &= !self.no_dhcp6;
        cfg.serve_ndp &= !self.no_ndp;
        cfg.serve_ra &= !self.no_ra;
        cfg.relay_tcp &= !self.no_tcp;
        cfg.relay_udp &= !self.no_udp;
        cfg.relay_icmp &= !self.no_icmp;
        cfg.advertise_dns &= !self.no_dhcp_dns;
        cfg.advertise_search &= !self.no_dhcp_search;
        if !self.tcp_ports.is_empty() {
            cfg.tcp_ports = self.tcp_ports.clone();
        }
        if !self.udp_ports.is_empty() {
            cfg.udp_ports = self.udp_ports.clone();
        }
        if !self.map_host_loopback.is_empty() {
            cfg.map_host_loopback = self.map_host_loopback.clone();
        }
        if !self.map_guest_addr.is_empty() {
            cfg.map_guest_addr = self.map_guest_addr.clone();
        }
        if !self.dns_forward.is_empty() {
            cfg.dns_forward = self.dns_forward.clone();
        }
        // What the guest is told for a loopback resolver depends on the gateway, the
        // loopback's address and `--dns-forward`: told anew, from `--dns` or the
        // namespace's resolvers.
        let upstream: Vec<IpAddr> = match &self.dns {
            Some(dns) => dns.clone(),
            None => cfg.dns_upstream.iter().map(|u| u.ip()).collect(),
        };
        cfg.set_resolvers(&upstream);
        // `--dns-host`: the one resolver of its family the guest's DNS goes to.
        for host in &self.dns_host {
            cfg.dns_upstream.retain(|u| u.is_ipv4() != host.is_ipv4());
            cfg.dns_upstream
                .insert(0, std::net::SocketAddr::new(*host, 53));
        }
    }
}

/// The environment variable that hands a daemon its parent's bound socket (a number).
const LISTENER_FD: &str = "NETBIND_PASST_LISTENER_FD";

/// `passt ARGS` (or `netbind passt ARGS`): parses passt's options, exit 1 on an option
/// that is wrong or not implemented (as passt), 0 after `--help`/`--version`.
pub fn main(argv: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let args = match PasstArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(1);
        }
    };
    if args.print_capabilities {
        // What libvirt asks of a vhost-user back end: the device type it serves.
        println!("{{\n  \"type\": \"net\"\n}}");
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!(
            "netbind {} (passt's command line)",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("passt: {e:#}");
            if args.log_file.is_some() {
                // The log file is where a daemon's supervisor looks (stderr may be gone).
                tracing::error!("{e:#}");
            }
            ExitCode::from(1)
        }
    }
}

/// Runs the engine as the arguments say. A daemon's parent returns once the child runs
/// and the socket is bound (libvirt starts QEMU only then).
fn serve(args: &PasstArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use netbind_usernet::run::{self, Attach, RunOptions};
    let run = args.plan()?;
    let log_file = match &run.log_file {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(path)
                .and_then(|f| crate::log::LogFile::new(f, run.log_size))
                .with_context(|| format!("--log-file {}: cannot open", path.display()))?,
        ),
        None => None,
    };
    let level = match run.verbosity {
        i8::MIN..=-1 => tracing::level_filters::LevelFilter::WARN,
        0 => tracing::level_filters::LevelFilter::INFO,
        1 => tracing::level_filters::LevelFilter::DEBUG,
        _ => tracing::level_filters::LevelFilter::TRACE,
    };
    crate::log::install(level, crate::log::LogFormat::Text, "passt", log_file);

    let mut cfg = crate::usernet::from_namespace(run.interface.as_deref())?;
    run.changes.apply_to(&mut cfg);
    check_outbound(&cfg)?;
    let attach = match &run.guest {
        Guest::Fd(n) => {
            let fd = run::inherited_fd(*n).with_context(|| format!("--fd {n}"))?;
            if run.vhost_user {
                Attach::VhostUserFd(fd)
            } else {
                Attach::Fd(fd)
            }
        }
        Guest::Socket(path) => {
            let listener = match std::env::var(LISTENER_FD) {
                // The daemon: its parent bound the socket and handed it down.
                Ok(n) => {
                    let n: i32 = n.parse().with_context(|| format!("{LISTENER_FD}={n}"))?;
                    let fd = run::inherited_fd(n).with_context(|| format!("{LISTENER_FD}={n}"))?;
                    let _ = nix::unistd::setsid();
                    std::os::unix::net::UnixListener::from(fd)
                }
                Err(_) => run::listen_unix(path)?,
            };
            if run.daemon && std::env::var_os(LISTENER_FD).is_none() {
                return daemonize(&listener, run.pidfile.as_deref());
            }
            if let Some(pidfile) = &run.pidfile
                && std::env::var_os(LISTENER_FD).is_none()
            {
                write_pidfile(pidfile, std::process::id())?;
            }
            tracing::info!(socket = %path.display(), "listening on {}", path.display());
            if run.vhost_user {
                let repair = args
                    .repair_path
                    .clone()
                    .unwrap_or_else(|| repair_path_for(path));
                Attach::VhostUser {
                    listener,
                    one_off: run.one_off,
                    repair: Some(netbind_usernet::migrate::repair::Repair::new(
                        run::listen_unix(&repair)?,
                        &repair,
                    )),
                }
            } else {
                Attach::Listener {
                    listener,
                    one_off: run.one_off,
                }
            }
        }
    };
    let runas = run
        .runas
        .as_deref()
        .map(netbind_usernet::harden::Hardening::parse_runas)
        .transpose()?;
    cfg.raw_ping = cfg.relay_icmp
        && crate::usernet::pings_need_raw_sockets(
            runas.map_or_else(|| nix::unistd::getegid().as_raw(), |(_, g)| g),
        );
    let opts = RunOptions {
        pcap: run.pcap.clone(),
        signals: true,
        stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        stats: None,
        harden: Some(netbind_usernet::harden::Hardening {
            seccomp: true,
            runas,
        }),
        busy_poll: run::DEFAULT_BUSY_POLL,
    };
    let counters = run::run(cfg, attach, opts)?;
    tracing::info!("{counters}");
    Ok(())
}

/// The outbound address and links (`--outbound`, `--outbound-if4`, `--outbound-if6`)
/// are the namespace's, and sockets can be bound to those links once the engine has
/// dropped its capabilities (Linux 5.7 lets a process without `CAP_NET_RAW` bind a
/// socket to a device). Checked at start: a mistake would otherwise fail every flow.
fn check_outbound(cfg: &EngineConfig) -> anyhow::Result<()> {
    use netbind_usernet::route::OutboundError;
    let option = |v6: bool| {
        if v6 {
            "--outbound-if6"
        } else {
            "--outbound-if4"
        }
    };
    for (v6, out) in [(false, &cfg.outbound4), (true, &cfg.outbound6)] {
        if let Some(dev) = &out.dev
            && let Some(release) = kernel_before(5, 7)
        {
            let option = option(v6);
            anyhow::bail!(
                "{option} {dev}: on Linux {release} binding sockets to a link needs CAP_NET_RAW, which the engine drops once started (5.7 and later do not need it); leave {option} out or run a newer kernel"
            );
        }
    }
    netbind_usernet::route::check_outbound(cfg).map_err(|e| match e {
        OutboundError::Addr { addr, source } => {
            anyhow::anyhow!("--outbound {addr}: not an address of this namespace ({source})")
        }
        OutboundError::Dev { dev, v6, source } => {
            anyhow::anyhow!(
                "{} {dev}: no such link in this namespace ({source})",
                option(v6)
            )
        }
    })
}

/// The running kernel's release when it is older than `major.minor`.
fn kernel_before(major: u32, minor: u32) -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let release = release.trim().to_string();
    let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    let running = (parts.next()??, parts.next()??);
    (running < (major, minor)).then_some(release)
}

/// Starts this same command again in the foreground as the daemon, handing it the bound
/// socket, writes the daemon's PID to the pidfile and returns: what passt's parent does
/// before it exits, so that whoever started it (libvirt) finds the socket and the pidfile
/// the moment it returns. (Re-executing rather than forking keeps this process free of
/// `unsafe`: a fork of a Rust process is unsafe once threads may exist.)
fn daemonize(
    listener: &std::os::unix::net::UnixListener,
    pidfile: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    use std::os::fd::AsRawFd;
    fcntl(listener, FcntlArg::F_SETFD(FdFlag::empty()))
        .context("cannot hand the socket to the daemon")?;
    let exe = std::env::current_exe().context("cannot find this binary to daemonize")?;
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_default();
    let child = std::process::Command::new(exe)
        .arg0(argv0)
        .args(argv)
        .arg("--foreground")
        .env(LISTENER_FD, listener.as_raw_fd().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start the daemon")?;
    if let Some(p) = pidfile {
        write_pidfile(p, child.id())?;
    }
    Ok(())
}

fn write_pidfile(path: &std::path::Path, pid: u32) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::write(path, format!("{pid}\n"))
        .with_context(|| format!("--pid {}: cannot write", path.display()))
}

/// Where the repair helper connects by default: `<socket>.repair` (passt's default,
/// and where KubeVirt's virt-handler looks: `*.socket.repair`).
pub fn repair_path_for(socket: &std::path::Path) -> std::path::PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".repair");
    p.into()
}

/// `passt-repair PATH` (or `netbind passt-repair PATH`): the repair helper of a
/// migration. PATH is the engine's repair socket, or a directory where one appears.
pub fn repair_main(argv: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let Some(path) = argv.get(1) else {
        eprintln!("usage: passt-repair PATH (the engine's repair socket, or its directory)");
        return ExitCode::from(1);
    };
    let path = std::path::Path::new(path);
    match netbind_usernet::migrate::repair::helper(path, std::time::Duration::from_secs(60)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("passt-repair: {}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}

/// True when this process was started under passt's name (a symlink or copy of netbind
/// at libvirt's `passt` path).
pub fn invoked_as_passt(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .is_some_and(|n| n == "passt")
}

/// True when started under passt-repair's name.
pub fn invoked_as_passt_repair(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .is_some_and(|n| n == "passt-repair")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<PasstRun, PasstError> {
        PasstArgs::try_parse_from(std::iter::once("passt").chain(args.iter().copied()))
            .expect("passt's options parse")
            .plan()
    }

    fn changes(args: &[&str]) -> ConfigChanges {
        plan(args).unwrap().changes
    }

    #[test]
    fn libvirts_command_line_is_a_daemon_on_its_socket_with_a_pidfile_and_log() {
        let run = plan(&[
            "--one-off",
            "--socket",
            "/run/libvirt/qemu/passt/1-vm-ua-default.socket",
            "--pid",
            "/run/libvirt/qemu/passt/1-vm-ua-default-passt.pid",
            "--interface",
            "eth0",
            "--log-file",
            "/var/run/kubevirt/passt.log",
            "--tcp-ports",
            "2222",
        ])
        .unwrap();
        assert_eq!(
            run.guest,
            Guest::Socket("/run/libvirt/qemu/passt/1-vm-ua-default.socket".into())
        );
        assert!(run.daemon && run.one_off);
        assert_eq!(
            run.pidfile.as_deref(),
            Some(std::path::Path::new(
                "/run/libvirt/qemu/passt/1-vm-ua-default-passt.pid"
            ))
        );
        assert_eq!(run.interface.as_deref(), Some("eth0"));
        assert_eq!(
            run.changes.tcp_ports,
            vec![PortSpec::parse("2222").unwrap()]
        );
    }

    #[test]
    fn qemus_netdev_passt_hands_a_descriptor_and_stays_in_the_foreground() {
        let run = plan(&["--quiet", "--pid", "/tmp/x.pid", "--fd", "3"]).unwrap();
        assert_eq!(run.guest, Guest::Fd(3));
        assert!(!run.daemon);
        assert_eq!(run.verbosity, -1);
    }

    #[test]
    fn short_forms_are_passts() {
        let run = plan(&[
            "-f",
            "-1",
            "-s",
            "/tmp/s",
            "-P",
            "/tmp/p",
            "-l",
            "/tmp/l",
            "-m",
            "1500",
            "-a",
            "10.0.2.15",
            "-n",
            "24",
            "-g",
            "10.0.2.2",
            "-i",
            "eth0",
            "-D",
            "10.0.2.3",
            "-S",
            "example.com",
            "-H",
            "vm",
            "-t",
            "22",
            "-u",
            "53",
            "-p",
            "/tmp/c.pcap",
            "-d",
        ])
        .unwrap();
        assert!(!run.daemon && run.one_off && run.verbosity == 1);
        assert_eq!(
            run.log_file.as_deref(),
            Some(std::path::Path::new("/tmp/l"))
        );
        assert_eq!(
            run.pcap.as_deref(),
            Some(std::path::Path::new("/tmp/c.pcap"))
        );
        let c = run.changes;
        assert_eq!(c.mtu, Some(1500));
        assert_eq!(c.address4, Some("10.0.2.15/24".parse().unwrap()));
        assert_eq!(c.gateway4, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(c.dns, Some(vec!["10.0.2.3".parse().unwrap()]));
        assert_eq!(c.search, Some(vec!["example.com".to_string()]));
        assert_eq!(c.hostname.as_deref(), Some("vm"));
        assert_eq!(c.udp_ports, vec![PortSpec::parse("53").unwrap()]);
    }

    #[test]
    fn no_socket_means_passts_default_path() {
        assert_eq!(
            plan(&[]).unwrap().guest,
            Guest::Socket(DEFAULT_SOCKET.into())
        );
    }

    #[test]
    fn an_address_per_family_and_a_dotted_netmask() {
        let c = changes(&[
            "-a",
            "192.0.2.7",
            "-a",
            "2001:db8::7",
            "-n",
            "255.255.254.0",
        ]);
        assert_eq!(c.address4, Some("192.0.2.7/23".parse().unwrap()));
        assert_eq!(c.address6, Some("2001:db8::7/64".parse().unwrap()));
    }

    #[test]
    fn a_netmask_with_holes_is_refused() {
        assert!(matches!(
            plan(&["-a", "192.0.2.7", "-n", "255.0.255.0"]),
            Err(PasstError::Netmask(_))
        ));
    }

    #[test]
    fn a_netmask_without_an_ipv4_address_is_refused() {
        assert!(matches!(
            plan(&["-n", "24"]),
            Err(PasstError::NetmaskWithoutAddress)
        ));
    }

    #[test]
    fn an_address_without_netmask_keeps_the_namespaces_prefix() {
        let mut cfg = EngineConfig {
            guest4: Some("10.244.1.9/16".parse().unwrap()),
            ..EngineConfig::default()
        };
        changes(&["-a", "10.244.1.20"]).apply_to(&mut cfg);
        assert_eq!(cfg.guest4, Some("10.244.1.20/16".parse().unwrap()));
    }

    #[test]
    fn mtu_zero_leaves_the_mtu_alone_and_out_of_range_is_refused() {
        assert_eq!(changes(&["-m", "0"]).mtu, None);
        assert!(matches!(plan(&["-m", "576"]), Err(PasstError::Mtu(576))));
        assert!(matches!(
            plan(&["-m", "70000"]),
            Err(PasstError::Mtu(70000))
        ));
    }

    #[test]
    fn search_is_one_space_separated_list() {
        assert_eq!(
            changes(&["-S", "a.example b.example"]).search,
            Some(vec!["a.example".to_string(), "b.example".to_string()])
        );
    }

    #[test]
    fn dns_none_and_search_none_tell_the_guest_nothing() {
        let mut cfg = EngineConfig {
            dns: vec!["10.96.0.10".parse().unwrap()],
            search: vec!["svc.cluster.local".into()],
            ..EngineConfig::default()
        };
        changes(&["--dns", "none", "--search", "none"]).apply_to(&mut cfg);
        assert!(cfg.dns.is_empty() && cfg.dns_upstream.is_empty());
        assert!(cfg.search.is_empty());
    }

    #[test]
    fn ipv4_only_drops_the_guests_ipv6_and_ipv6_only_its_ipv4() {
        let base = EngineConfig {
            guest4: Some("10.0.2.15/24".parse().unwrap()),
            guest6: Some("fd00::15/64".parse().unwrap()),
            gateway4: Some(Ipv4Addr::new(10, 0, 2, 2)),
            gateway6: Some("fd00::2".parse().unwrap()),
            ..EngineConfig::default()
        };
        let mut v4 = base.clone();
        changes(&["-4"]).apply_to(&mut v4);
        assert!(v4.guest4.is_some() && v4.guest6.is_none() && v4.gateway6.is_none());
        let mut v6 = base;
        changes(&["-6"]).apply_to(&mut v6);
        assert!(v6.guest6.is_some() && v6.guest4.is_none() && v6.gateway4.is_none());
        assert!(matches!(plan(&["-4", "-6"]), Err(PasstError::NoFamily)));
    }

    #[test]
    fn no_map_gw_and_ports_reach_the_engine_configuration() {
        let mut cfg = EngineConfig::default();
        changes(&["--no-map-gw", "-t", "22,8080:80", "-u", "~53"]).apply_to(&mut cfg);
        assert!(!cfg.map_gateway);
        assert_eq!(cfg.tcp_ports, vec![PortSpec::parse("22,8080:80").unwrap()]);
        assert_eq!(cfg.udp_ports, vec![PortSpec::parse("~53").unwrap()]);
    }

    #[test]
    fn mac_addr_becomes_the_engines_own_mac() {
        let mut cfg = EngineConfig::default();
        changes(&["--mac-addr", "02:11:22:33:44:55"]).apply_to(&mut cfg);
        assert_eq!(cfg.engine_mac, [0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        let mut cfg = EngineConfig::default();
        changes(&[]).apply_to(&mut cfg);
        assert_eq!(cfg.engine_mac, netbind_usernet::config::ENGINE_MAC);
    }

    #[test]
    fn a_mac_addr_that_is_not_one_unicast_address_is_refused() {
        for bad in [
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "9a:55:9a:55:9a",
            "nope",
        ] {
            let err = plan(&["--mac-addr", bad]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("--mac-addr {bad}: ")), "{err}");
        }
    }

    #[test]
    fn no_dhcp_no_dhcpv6_no_ndp_no_ra_turn_those_services_off() {
        let served = |args: &[&str]| {
            let mut cfg = EngineConfig::default();
            changes(args).apply_to(&mut cfg);
            [
                cfg.serve_dhcp4,
                cfg.serve_dhcp6,
                cfg.serve_ndp,
                cfg.serve_ra,
            ]
        };
        assert_eq!(served(&[]), [true; 4]);
        assert_eq!(served(&["--no-dhcp"]), [false, true, true, true]);
        assert_eq!(served(&["--no-dhcpv6"]), [true, false, true, true]);
        assert_eq!(served(&["--no-ndp"]), [true, true, false, true]);
        assert_eq!(served(&["--no-ra"]), [true, true, true, false]);
    }

    #[test]
    fn no_tcp_no_udp_no_icmp_turn_those_protocols_off() {
        let relayed = |args: &[&str]| {
            let mut cfg = EngineConfig::default();
            changes(args).apply_to(&mut cfg);
            [cfg.relay_tcp, cfg.relay_udp, cfg.relay_icmp]
        };
        assert_eq!(relayed(&[]), [true; 3]);
        assert_eq!(relayed(&["--no-tcp"]), [false, true, true]);
        assert_eq!(relayed(&["--no-udp", "-t", "22"]), [true, false, true]);
        assert_eq!(relayed(&["--no-icmp"]), [true, true, false]);
    }

    #[test]
    fn ports_of_a_protocol_turned_off_are_refused() {
        let err = plan(&["--no-tcp", "-t", "22"]).unwrap_err().to_string();
        assert!(err.starts_with("--tcp-ports with --no-tcp: "), "{err}");
        let err = plan(&["--no-udp", "-u", "53"]).unwrap_err().to_string();
        assert!(err.starts_with("--udp-ports with --no-udp: "), "{err}");
        assert!(plan(&["--no-tcp", "-t", "none"]).is_ok());
    }

    #[test]
    fn no_dhcp_dns_and_no_dhcp_search_keep_them_from_the_guest_not_from_the_engine() {
        let mut cfg = EngineConfig::default();
        changes(&["-D", "10.0.2.3", "-S", "a.example", "--no-dhcp-dns"]).apply_to(&mut cfg);
        assert!(!cfg.advertise_dns && cfg.advertise_search);
        assert_eq!(cfg.dns_upstream, vec!["10.0.2.3:53".parse().unwrap()]);
        let mut cfg = EngineConfig::default();
        changes(&["--no-dhcp-search"]).apply_to(&mut cfg);
        assert!(cfg.advertise_dns && !cfg.advertise_search);
    }

    #[test]
    fn fqdn_reaches_the_engine_configuration_and_a_malformed_one_is_refused() {
        let mut cfg = EngineConfig::default();
        changes(&["--fqdn", "vm.example.test."]).apply_to(&mut cfg);
        assert_eq!(cfg.fqdn, "vm.example.test");
        let long = format!("{}.example", "a".repeat(64));
        for bad in ["", "a..b", "vm-.example", "vm_1.example", long.as_str()] {
            let err = plan(&["--fqdn", bad]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("--fqdn {bad}: ")), "{err}");
        }
    }

    #[test]
    fn freebind_reaches_the_engine_configuration() {
        let mut cfg = EngineConfig::default();
        changes(&["--freebind", "-t", "192.0.2.7/80"]).apply_to(&mut cfg);
        assert!(cfg.freebind);
    }

    #[test]
    fn outbound_and_outbound_if_reach_the_engine_configuration_per_family() {
        let mut cfg = EngineConfig::default();
        changes(&[
            "-o",
            "10.0.9.2",
            "-o",
            "2001:db8::2",
            "--outbound-if4",
            "eth1",
            "--outbound-if6",
            "eth2",
        ])
        .apply_to(&mut cfg);
        assert_eq!(
            cfg.outbound4,
            Outbound {
                addr: Some("10.0.9.2".parse().unwrap()),
                dev: Some("eth1".into())
            }
        );
        assert_eq!(
            cfg.outbound6,
            Outbound {
                addr: Some("2001:db8::2".parse().unwrap()),
                dev: Some("eth2".into())
            }
        );
        let mut cfg = EngineConfig::default();
        changes(&["--outbound-if6", "eth2"]).apply_to(&mut cfg);
        assert!(!cfg.outbound4.is_set());
    }

    #[test]
    fn log_size_is_a_number_of_bytes_for_the_log_file() {
        let run = plan(&["-l", "/tmp/p.log", "--log-size", "1048576"]).unwrap();
        assert_eq!(run.log_size, Some(1 << 20));
        assert_eq!(plan(&[]).unwrap().log_size, None);
        for bad in ["1M", "100", "-1"] {
            let err = plan(&["-l", "/tmp/p.log", &format!("--log-size={bad}")])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("--log-size {bad}: ")), "{err}");
        }
        assert!(matches!(
            plan(&["--log-size", "8192"]),
            Err(PasstError::LogSizeWithoutFile)
        ));
    }

    #[test]
    fn ports_none_forwards_nothing() {
        assert!(changes(&["-t", "none", "-u", "none"]).tcp_ports.is_empty());
    }

    #[test]
    fn a_bad_port_spec_names_its_option() {
        let err = plan(&["-t", "99999"]).unwrap_err().to_string();
        assert!(err.starts_with("--tcp-ports 99999: "), "{err}");
    }

    #[test]
    fn vhost_user_as_libvirt_asks_is_a_one_off_daemon_on_the_socket() {
        let run = plan(&[
            "--vhost-user",
            "--one-off",
            "--socket",
            "/run/libvirt/qemu/passt/1-vm-ua-default.socket",
            "--pid",
            "/run/libvirt/qemu/passt/1-vm-ua-default-passt.pid",
        ])
        .unwrap();
        assert!(run.vhost_user && run.daemon && run.one_off);
        assert_eq!(
            run.guest,
            Guest::Socket("/run/libvirt/qemu/passt/1-vm-ua-default.socket".into())
        );
    }

    #[test]
    fn dns_forward_and_dns_host_reach_the_engine_configuration() {
        let namespace = || {
            let mut cfg = EngineConfig {
                gateway4: Some(Ipv4Addr::new(10, 0, 2, 2)),
                ..EngineConfig::default()
            };
            cfg.set_resolvers(&["127.0.0.53".parse().unwrap()]);
            cfg
        };
        let mut cfg = namespace();
        changes(&[]).apply_to(&mut cfg);
        assert_eq!(cfg.dns, vec![IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2))]);
        let mut cfg = namespace();
        changes(&["--dns-forward", "10.0.2.3", "--dns-host", "10.96.0.10"]).apply_to(&mut cfg);
        let forward: IpAddr = "10.0.2.3".parse().unwrap();
        assert_eq!(cfg.dns_forward, vec![forward]);
        assert_eq!(
            cfg.dns,
            vec![forward],
            "told instead of the loopback resolver"
        );
        assert_eq!(cfg.dns_upstream, vec!["10.96.0.10:53".parse().unwrap()]);
    }

    #[test]
    fn map_host_loopback_and_map_guest_addr_reach_the_engine_configuration() {
        let mut cfg = EngineConfig::default();
        changes(&[
            "--map-host-loopback",
            "10.0.2.99",
            "--map-guest-addr",
            "10.0.2.77",
        ])
        .apply_to(&mut cfg);
        assert_eq!(
            cfg.map_host_loopback,
            vec!["10.0.2.99".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            cfg.map_guest_addr,
            vec!["10.0.2.77".parse::<IpAddr>().unwrap()]
        );
        assert!(cfg.map_gateway);
        let mut cfg = EngineConfig::default();
        changes(&["--map-host-loopback", "none", "--map-guest-addr", "none"]).apply_to(&mut cfg);
        assert!(!cfg.map_gateway && cfg.map_guest_addr.is_empty());
    }

    #[test]
    fn an_address_the_guest_cannot_reach_cannot_stand_for_the_namespace() {
        for (option, bad) in [
            ("--dns-forward", "127.0.0.1"),
            ("--map-host-loopback", "::1"),
            ("--map-guest-addr", "ff02::1"),
            ("--map-guest-addr", "nope"),
        ] {
            let err = plan(&[option, bad]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{option} {bad}: ")), "{err}");
        }
    }

    #[test]
    fn socket_and_fd_together_are_refused() {
        assert!(matches!(
            plan(&["-s", "/tmp/s", "-F", "3"]),
            Err(PasstError::SocketAndFd)
        ));
    }

    #[test]
    fn repair_path_is_accepted() {
        assert!(plan(&["--repair-path", "/tmp/s.repair"]).is_ok());
    }

    #[test]
    fn the_name_passt_selects_passts_command_line() {
        assert!(invoked_as_passt("/usr/bin/passt".as_ref()));
        assert!(invoked_as_passt("passt".as_ref()));
        assert!(!invoked_as_passt("/usr/bin/netbind".as_ref()));
        assert!(!invoked_as_passt("/usr/bin/passt.avx2".as_ref()));
    }
}
