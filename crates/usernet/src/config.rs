//! What the engine needs to know, and the DHCP/RA settings derived from it.
//!
//! How it works: [`EngineConfig`] is built from the plan's [`UsernetConfig`] (or by the
//! CLI from the namespace it runs in). The engine is the guest's only neighbour: it
//! answers ARP and NDP for every address but the guest's own, so the gateway the guest is
//! told about only needs to be *some* address; the pod's real default gateway is used so
//! the guest's routing table looks like the pod's. DHCPv4, DHCPv6 and RA settings are
//! derived here ([`EngineConfig::dhcp4`], [`EngineConfig::dhcp6`], [`EngineConfig::ra`])
//! and served by the `netbind-dhcp` cores.
//!
//! DNS: the guest is told `dns` (the pod's resolvers, with loopback ones replaced by the
//! `dns_forward` address of their family, else the address that leads to the loopback:
//! the gateway unless `map_host_loopback` says otherwise); queries the guest sends to any
//! advertised resolver or `dns_forward` address on port 53 go to the first of
//! `dns_upstream` of their family (the namespace's resolv.conf servers, loopback ones
//! included), so a resolver on the namespace's loopback works.
//!
//! Addresses that stand for the namespace (`route.rs`): the gateway (or the
//! `map_host_loopback` address of a family) leads to its loopback, a `map_guest_addr`
//! address to its own address, the one the guest has; inbound flows from those appear
//! to come from them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netbind_plan::model::{ClasslessRoute, Dhcp4Config, Dhcp6Config, RaConfig, UsernetConfig};

use crate::ports::PortSpec;

/// The MAC the engine answers with, for every address, unless configured otherwise
/// ([`EngineConfig::engine_mac`], passt's `--mac-addr`): passt's, locally administered.
pub const ENGINE_MAC: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
/// The engine's link-local address: source of RAs, NAs, DHCPv6 replies; the guest's IPv6
/// default router.
pub const ENGINE_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// Largest MTU the engine handles (an IPv4 packet is at most 65,535 bytes).
pub const MAX_MTU: u16 = 65520;
pub const DEFAULT_MAX_FLOWS: usize = 65536;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("guest MAC {0:?} is not six hex bytes")]
    GuestMac(String),
    #[error("MTU {0} is outside 1280..=65520")]
    Mtu(u32),
    #[error("the guest has no IPv4 or IPv6 address to be given")]
    NoAddress,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The guest's MAC when known in advance (DHCP answers only it); else learned.
    pub guest_mac: Option<[u8; 6]>,
    pub guest4: Option<Ipv4Net>,
    pub guest6: Option<Ipv6Net>,
    pub gateway4: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    /// Guest traffic to a gateway address goes to the namespace's loopback.
    pub map_gateway: bool,
    /// The guest addresses, one per family, that lead to the namespace's loopback instead
    /// of the gateway (passt's `--map-host-loopback`), when `map_gateway` is on.
    pub map_host_loopback: Vec<IpAddr>,
    /// Guest addresses, one per family, that lead to the namespace's own address, the one
    /// the guest has (passt's `--map-guest-addr`): the guest cannot reach it otherwise.
    pub map_guest_addr: Vec<IpAddr>,
    pub mtu: u16,
    /// Resolvers the guest is told about.
    pub dns: Vec<IpAddr>,
    /// Where the guest's queries to `dns` go.
    pub dns_upstream: Vec<SocketAddr>,
    /// Addresses, one per family, whose DNS goes to `dns_upstream` too, and which the
    /// guest is told instead of a loopback resolver (passt's `--dns-forward`).
    pub dns_forward: Vec<IpAddr>,
    pub search: Vec<String>,
    pub hostname: String,
    /// The guest's fully qualified name, told by DHCPv4 (option 81) and DHCPv6 (option
    /// 39); empty: not told (passt's `--fqdn`).
    pub fqdn: String,
    pub max_flows: usize,
    /// Inbound TCP forwards, one spec per `-t`.
    pub tcp_ports: Vec<PortSpec>,
    pub udp_ports: Vec<PortSpec>,
    /// Address the inbound listeners of a spec without one bind to (any by default).
    pub listen4: Ipv4Addr,
    pub listen6: Ipv6Addr,
    /// Inbound listeners bound to a specific address may bind it before the namespace
    /// has it (`IP_FREEBIND`/`IPV6_FREEBIND`; passt's `--freebind`).
    pub freebind: bool,
    /// The listed forwarded ports are bound so that another engine of the same user may
    /// bind them too (`SO_REUSEPORT`), and one another engine holds already waits for the
    /// guest to come here (`forward.rs`, shared ports): a live migration's source and
    /// target in one namespace. Set by the event loop for attachments that migrate.
    pub share_ports: bool,
    /// Where the guest's outbound flows of each family leave from (passt's `--outbound`,
    /// `--outbound-if4`, `--outbound-if6`; default: wherever the namespace's routes say).
    pub outbound4: Outbound,
    pub outbound6: Outbound,
    pub udp_idle: Duration,
    pub icmp_idle: Duration,
    /// Echo through raw ICMP sockets opened at start (needs `CAP_NET_RAW`), for where
    /// `net.ipv4.ping_group_range` denies ping sockets.
    pub raw_ping: bool,
    /// The engine's own MAC: the source of every frame to the guest, what ARP and NDP
    /// answer and RAs carry (default [`ENGINE_MAC`]).
    pub engine_mac: [u8; 6],
    /// The services the engine answers itself, each on by default (passt's `--no-dhcp`,
    /// `--no-dhcpv6`, `--no-ndp`, `--no-ra` turn one off): what the guest sends to a
    /// service turned off is dropped and counted (`rx_disabled`). NDP is neighbour and
    /// router solicitations: without it no RA goes out either.
    pub serve_dhcp4: bool,
    pub serve_dhcp6: bool,
    pub serve_ndp: bool,
    pub serve_ra: bool,
    /// The protocols the engine relays, each on by default (passt's `--no-tcp`,
    /// `--no-udp`, `--no-icmp` turn one off): the guest's packets of a protocol turned
    /// off are dropped and counted (`rx_disabled`), and no port of it is forwarded.
    /// ICMP is echo (the errors the engine sends for TCP and UDP flows still go out);
    /// DHCP is not relayed but served (`serve_dhcp4`, `serve_dhcp6`).
    pub relay_tcp: bool,
    pub relay_udp: bool,
    pub relay_icmp: bool,
    /// Whether DHCPv4, DHCPv6 and RAs tell the guest the resolvers (`dns`) and the
    /// search list (`search`, and option 15 from it); passt's `--no-dhcp-dns`,
    /// `--no-dhcp-search` clear them. The guest's queries to `dns` still go upstream.
    pub advertise_dns: bool,
    pub advertise_search: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            guest_mac: None,
            guest4: None,
            guest6: None,
            gateway4: None,
            gateway6: None,
            map_gateway: true,
            map_host_loopback: Vec::new(),
            map_guest_addr: Vec::new(),
            mtu: MAX_MTU,
            dns: Vec::new(),
            dns_upstream: Vec::new(),
            dns_forward: Vec::new(),
            search: Vec::new(),
            hostname: String::new(),
            fqdn: String::new(),
            max_flows: DEFAULT_MAX_FLOWS,
            tcp_ports: Vec::new(),
            udp_ports: Vec::new(),
            listen4: Ipv4Addr::UNSPECIFIED,
            listen6: Ipv6Addr::UNSPECIFIED,
            freebind: false,
            share_ports: false,
            outbound4: Outbound::default(),
            outbound6: Outbound::default(),
            udp_idle: Duration::from_secs(180),
            icmp_idle: Duration::from_secs(60),
            raw_ping: false,
            engine_mac: ENGINE_MAC,
            serve_dhcp4: true,
            serve_dhcp6: true,
            serve_ndp: true,
            serve_ra: true,
            relay_tcp: true,
            relay_udp: true,
            relay_icmp: true,
            advertise_dns: true,
            advertise_search: true,
        }
    }
}

/// What the sockets of outbound flows of one family are bound to before they connect:
/// an address of the namespace (port 0), a device (`SO_BINDTODEVICE`: without
/// `CAP_NET_RAW` since Linux 5.7). Flows to the namespace's loopback (the gateway
/// mapping, a loopback resolver) are left unbound, as they must stay on `lo`; so are the
/// shared raw ICMP sockets (`raw_ping`), which serve every destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbound {
    pub addr: Option<IpAddr>,
    pub dev: Option<String>,
}

impl Outbound {
    pub fn is_set(&self) -> bool {
        self.addr.is_some() || self.dev.is_some()
    }
}

/// The address of `addrs` of a family (the last given).
pub fn of_family(addrs: &[IpAddr], v6: bool) -> Option<IpAddr> {
    addrs.iter().rfind(|a| a.is_ipv6() == v6).copied()
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

pub fn format_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

impl EngineConfig {
    /// From the plan. `dns_upstream` is left for the caller (resolv.conf of the namespace
    /// the engine runs in); by default the advertised resolvers themselves.
    pub fn from_usernet(u: &UsernetConfig) -> Result<EngineConfig, ConfigError> {
        let guest_mac = Some(
            parse_mac(&u.guest_mac).ok_or_else(|| ConfigError::GuestMac(u.guest_mac.clone()))?,
        );
        let mtu = u16::try_from(u.mtu)
            .ok()
            .filter(|m| (1280..=MAX_MTU).contains(m))
            .ok_or(ConfigError::Mtu(u.mtu))?;
        let guest4 = u.guest_addresses.iter().find_map(|a| match a {
            IpNet::V4(n) => Some(*n),
            IpNet::V6(_) => None,
        });
        let guest6 = u.guest_addresses.iter().find_map(|a| match a {
            IpNet::V6(n) => Some(*n),
            IpNet::V4(_) => None,
        });
        if guest4.is_none() && guest6.is_none() {
            return Err(ConfigError::NoAddress);
        }
        let mut cfg = EngineConfig {
            guest_mac,
            guest4,
            guest6,
            gateway4: u.gateway4,
            gateway6: u.gateway6,
            map_gateway: u.map_gateway_to_loopback,
            mtu,
            search: u.search.clone(),
            hostname: u.hostname.clone(),
            tcp_ports: vec![PortSpec::from_forward(&u.tcp)],
            udp_ports: vec![PortSpec::from_forward(&u.udp)],
            ..EngineConfig::default()
        };
        cfg.set_resolvers(&u.dns);
        cfg.fill_gateways();
        Ok(cfg)
    }

    /// Sets the upstream resolvers and what the guest is told: loopback resolvers are
    /// not reachable from the guest, so it is told the `dns_forward` address of the
    /// family instead, else the one that leads to the loopback ([`Self::loopback_alias`]).
    pub fn set_resolvers(&mut self, upstream: &[IpAddr]) {
        self.dns_upstream = upstream.iter().map(|a| SocketAddr::new(*a, 53)).collect();
        self.dns.clear();
        for a in upstream {
            let told = if a.is_loopback() {
                of_family(&self.dns_forward, a.is_ipv6())
                    .or_else(|| self.loopback_alias(a.is_ipv6()))
            } else {
                Some(*a)
            };
            if let Some(t) = told
                && !self.dns.contains(&t)
            {
                self.dns.push(t);
            }
        }
    }

    /// The guest's address of the namespace's loopback in a family: the
    /// `map_host_loopback` one, else the gateway.
    pub fn loopback_alias(&self, v6: bool) -> Option<IpAddr> {
        of_family(&self.map_host_loopback, v6).or(if v6 {
            self.gateway6.map(IpAddr::V6)
        } else {
            self.gateway4.map(IpAddr::V4)
        })
    }

    /// Picks gateway addresses when the namespace has no default route of a family: the
    /// first host address of the guest's subnet that is not the guest's.
    pub fn fill_gateways(&mut self) {
        if self.gateway4.is_none()
            && let Some(n) = self.guest4
        {
            self.gateway4 = n
                .hosts()
                .find(|h| *h != n.addr())
                .or(Some(Ipv4Addr::new(169, 254, 1, 1)));
        }
        if self.gateway6.is_none() && self.guest6.is_some() {
            self.gateway6 = Some(ENGINE_LINK_LOCAL);
        }
    }

    /// Whether `addr` is one of the guest's own addresses.
    pub fn is_guest_addr(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.guest4.is_some_and(|n| n.addr() == a),
            IpAddr::V6(a) => self.guest6.is_some_and(|n| n.addr() == a),
        }
    }

    pub fn dhcp4(&self) -> Option<Dhcp4Config> {
        let address = self.guest4?;
        let router = self.gateway4?;
        let classless_routes = if address.contains(&router) {
            Vec::new()
        } else {
            // A /32 pod address (Calico and the like): the gateway is on-link by route.
            vec![
                ClasslessRoute {
                    destination: Ipv4Net::new(router, 32).ok()?,
                    gateway: Ipv4Addr::UNSPECIFIED,
                },
                ClasslessRoute {
                    destination: Ipv4Net::default(),
                    gateway: router,
                },
            ]
        };
        Some(Dhcp4Config {
            interface: "usernet".into(),
            server_address: router,
            client_mac: format_mac(self.guest_mac.unwrap_or([0; 6])),
            address,
            router: Some(router),
            classless_routes,
            dns: self
                .told_dns()
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V4(a) => Some(*a),
                    IpAddr::V6(_) => None,
                })
                .collect(),
            search: self.told_search().to_vec(),
            domain_name: self.told_search().first().cloned(),
            hostname: self.hostname.clone(),
            mtu: self.mtu,
            ntp: Vec::new(),
            tftp_server: None,
            boot_file: None,
            private_options: Vec::new(),
            lease_seconds: 999 * 86400,
        })
    }

    pub fn dhcp6(&self) -> Option<Dhcp6Config> {
        let address = self.guest6?.addr();
        Some(Dhcp6Config {
            interface: "usernet".into(),
            client_mac: format_mac(self.guest_mac.unwrap_or([0; 6])),
            address,
            dns: self.dns6(),
            search: self.told_search().to_vec(),
            lease_seconds: 999 * 86400,
        })
    }

    /// The resolvers DHCP and RAs tell the guest (none with `advertise_dns` off).
    fn told_dns(&self) -> &[IpAddr] {
        if self.advertise_dns { &self.dns } else { &[] }
    }

    /// The search list DHCP and RAs tell the guest (none with `advertise_search` off).
    fn told_search(&self) -> &[String] {
        if self.advertise_search {
            &self.search
        } else {
            &[]
        }
    }

    fn dns6(&self) -> Vec<Ipv6Addr> {
        self.told_dns()
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            })
            .collect()
    }

    /// Router advertisements: the pod's prefix on-link, addresses by DHCPv6 (managed),
    /// not SLAAC — the guest must end up with the pod's own address, not one of its own.
    pub fn ra(&self) -> Option<RaConfig> {
        let g = self.guest6?;
        let prefix = Ipv6Net::new(g.addr(), g.prefix_len().min(64)).ok()?.trunc();
        Some(RaConfig {
            interface: "usernet".into(),
            router_mac: format_mac(self.engine_mac),
            prefix,
            autonomous: false,
            managed: true,
            other_config: true,
            router_lifetime_seconds: 1800,
            mtu: u32::from(self.mtu),
            rdnss: self.dns6(),
            dnssl: self.told_search().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netbind_plan::model::PortForward;

    fn usernet() -> UsernetConfig {
        UsernetConfig {
            socket: "/run/x.sock".into(),
            attachment: netbind_plan::model::UsernetAttachment::VhostUser,
            guest_mac: "02:00:00:00:00:07".into(),
            guest_addresses: vec![
                "10.244.1.5/32".parse().unwrap(),
                "fd00::5/128".parse().unwrap(),
            ],
            gateway4: Some("169.254.1.1".parse().unwrap()),
            gateway6: Some("fe80::1".parse().unwrap()),
            map_gateway_to_loopback: true,
            mtu: 65520,
            dns: vec!["10.96.0.10".parse().unwrap(), "127.0.0.53".parse().unwrap()],
            search: vec!["default.svc.cluster.local".into()],
            hostname: "vm".into(),
            tcp: PortForward::Ports { ports: vec![22] },
            udp: PortForward::None,
            busy_poll_us: 200,
        }
    }

    #[test]
    fn loopback_resolvers_are_advertised_as_the_gateway_and_kept_upstream() {
        let c = EngineConfig::from_usernet(&usernet()).unwrap();
        assert_eq!(
            c.dns,
            vec![
                "10.96.0.10".parse::<IpAddr>().unwrap(),
                "169.254.1.1".parse().unwrap()
            ]
        );
        assert_eq!(c.dns_upstream[1], "127.0.0.53:53".parse().unwrap());
    }

    #[test]
    fn a_loopback_resolver_is_told_as_the_dns_forward_address_else_the_loopback_alias() {
        let mut c = EngineConfig::from_usernet(&usernet()).unwrap();
        c.map_host_loopback = vec!["169.254.1.99".parse().unwrap()];
        c.set_resolvers(&["127.0.0.53".parse().unwrap()]);
        assert_eq!(c.dns, vec!["169.254.1.99".parse::<IpAddr>().unwrap()]);
        c.dns_forward = vec!["169.254.1.53".parse().unwrap()];
        c.set_resolvers(&["127.0.0.53".parse().unwrap(), "10.96.0.10".parse().unwrap()]);
        assert_eq!(
            c.dns,
            vec![
                "169.254.1.53".parse::<IpAddr>().unwrap(),
                "10.96.0.10".parse().unwrap()
            ]
        );
        assert_eq!(c.dns_upstream[0], "127.0.0.53:53".parse().unwrap());
    }

    #[test]
    fn slash32_pod_gets_the_gateway_by_classless_route() {
        let d = EngineConfig::from_usernet(&usernet())
            .unwrap()
            .dhcp4()
            .unwrap();
        assert_eq!(d.classless_routes.len(), 2);
        assert_eq!(
            d.classless_routes[1].gateway,
            "169.254.1.1".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(d.mtu, 65520);
    }

    #[test]
    fn ra_is_managed_not_slaac() {
        let ra = EngineConfig::from_usernet(&usernet())
            .unwrap()
            .ra()
            .unwrap();
        assert!(ra.managed && !ra.autonomous);
        assert_eq!(ra.prefix.to_string(), "fd00::/64");
    }
}
