//! DHCPv4, DHCPv6 and router advertisement settings for one guest NIC.
//!
//! The bridge and masquerade modules decide the addresses (who the server is, what the
//! client gets, the router); this module adds what every server hands out the same way,
//! as KubeVirt does:
//! - DNS servers of the pod's resolv.conf (IPv4 ones in option 6, IPv6 ones in DHCPv6 and
//!   RDNSS), search domains (option 119; invalid ones are dropped with a note, and the
//!   list is cut where it would pass option 119's 255 bytes), the domain name (option 15,
//!   the longest search domain), the hostname (option 12), the MTU (option 26);
//! - from `dhcpOptions`: NTP servers (42, IPv4 only), TFTP server (66), boot file (67) and
//!   private options 224–254 (others are skipped, as KubeVirt skips them);
//! - a lease of 999 days, which KubeVirt uses to mean "forever".
//!
//! Router advertisements are a netbind extra for masquerade IPv6 (KubeVirt sends none):
//! prefix on-link, addresses through DHCPv6 (M and O flags) unless the prefix is a /64.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::bindings::ctx::Ctx;
use crate::bindings::shared::domain_name;
use crate::error::PlanError;
use crate::model::{ClasslessRoute, Dhcp4Config, Dhcp6Config, PrivateOption, RaConfig};

/// 999 days in seconds.
pub const LEASE_SECONDS: u32 = 999 * 24 * 3600;
/// Router lifetime in advertisements (seconds).
pub const ROUTER_LIFETIME_SECONDS: u16 = 1800;

/// A DHCPv4 server answering only the guest.
pub fn dhcp4(
    ctx: &Ctx<'_>,
    interface: &str,
    server_address: Ipv4Addr,
    address: Ipv4Net,
    router: Option<Ipv4Addr>,
    classless_routes: Vec<ClasslessRoute>,
    notes: &mut Vec<String>,
) -> Result<Dhcp4Config, PlanError> {
    let search = valid_search(&ctx.search, notes);
    let mtu = ctx.mtu();
    let mtu16 = u16::try_from(mtu).unwrap_or(u16::MAX);
    if u32::from(mtu16) != mtu {
        notes.push(format!(
            "DHCP option 26: MTU {mtu} does not fit, 65535 sent"
        ));
    }
    let mut cfg = Dhcp4Config {
        interface: interface.into(),
        server_address,
        client_mac: ctx.client_mac(),
        address,
        router,
        classless_routes,
        dns: ctx.dns4(),
        domain_name: domain_name(&search),
        search,
        hostname: ctx.hostname.clone(),
        mtu: mtu16,
        ntp: Vec::new(),
        tftp_server: None,
        boot_file: None,
        private_options: Vec::new(),
        lease_seconds: LEASE_SECONDS,
    };
    if let Some(opts) = &ctx.iface.dhcp_options {
        for server in &opts.ntp_servers {
            let ip: Ipv4Addr = server.parse().map_err(|_| PlanError::BadNtpServer {
                interface: ctx.iface.name.clone(),
                server: server.clone(),
            })?;
            cfg.ntp.push(ip);
        }
        cfg.tftp_server = opts.tftp_server_name.clone().filter(|s| !s.is_empty());
        cfg.boot_file = opts.boot_file_name.clone().filter(|s| !s.is_empty());
        for p in &opts.private_options {
            match u8::try_from(p.option) {
                Ok(code @ 224..=254) => cfg.private_options.push(PrivateOption {
                    code,
                    value: p.value.clone(),
                }),
                _ => notes.push(format!(
                    "dhcpOptions.privateOptions: option {} is outside 224-254, skipped",
                    p.option
                )),
            }
        }
    }
    Ok(cfg)
}

/// A stateful DHCPv6 server handing the guest one address.
pub fn dhcp6(
    ctx: &Ctx<'_>,
    interface: &str,
    address: Ipv6Addr,
    notes: &mut Vec<String>,
) -> Dhcp6Config {
    Dhcp6Config {
        interface: interface.into(),
        client_mac: ctx.client_mac(),
        address,
        dns: ctx.dns6(),
        search: valid_search(&ctx.search, notes),
        lease_seconds: LEASE_SECONDS,
    }
}

/// Router advertisements for the guest's IPv6 network.
pub fn ra(
    ctx: &Ctx<'_>,
    interface: &str,
    router_mac: &str,
    prefix: Ipv6Net,
    notes: &mut Vec<String>,
) -> RaConfig {
    let slaac = prefix.prefix_len() == 64;
    RaConfig {
        interface: interface.into(),
        router_mac: router_mac.into(),
        prefix,
        autonomous: slaac,
        managed: !slaac,
        other_config: true,
        router_lifetime_seconds: ROUTER_LIFETIME_SECONDS,
        mtu: ctx.mtu(),
        rdnss: ctx.dns6(),
        dnssl: valid_search(&ctx.search, &mut Vec::new()),
    }
    .with_note_if_no_dns(notes)
}

impl RaConfig {
    fn with_note_if_no_dns(self, notes: &mut Vec<String>) -> RaConfig {
        if self.rdnss.is_empty() {
            notes.push(
                "router advertisements: the pod has no IPv6 DNS server, so no RDNSS option".into(),
            );
        }
        self
    }
}

/// Search domains KubeVirt's server accepts (RFC 1035 names of at most 253 characters),
/// within option 119's 255 bytes.
fn valid_search(search: &[String], notes: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut encoded = 0usize;
    for d in search {
        if !is_valid_search_domain(d) {
            note_once(
                notes,
                format!("search domain {d:?} is not a valid DNS name, not handed to the guest"),
            );
            continue;
        }
        let len = d.split('.').map(|l| l.len() + 1).sum::<usize>() + 1;
        if encoded + len > 255 {
            note_once(
                notes,
                format!(
                    "search domain {d:?} and later ones pass option 119's 255 bytes, not handed out"
                ),
            );
            break;
        }
        encoded += len;
        out.push(d.clone());
    }
    out
}

fn note_once(notes: &mut Vec<String>, note: String) {
    if !notes.contains(&note) {
        notes.push(note);
    }
}

/// KubeVirt's check: lower-case labels of `[_a-z0-9-]`, not starting or ending with `-`,
/// at most 63 each, 253 in all; the last label starts with a letter.
fn is_valid_search_domain(d: &str) -> bool {
    if d.is_empty() || d.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = d.split('.').collect();
    labels.iter().enumerate().all(|(i, l)| {
        let last = i + 1 == labels.len();
        let bytes = l.as_bytes();
        let ok_chars = bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || (!last && *b == b'_')
        });
        !l.is_empty()
            && l.len() <= 63
            && ok_chars
            && !l.ends_with('-')
            && !l.starts_with('-')
            && (!last || bytes[0].is_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_domains_must_be_dns_names() {
        assert!(is_valid_search_domain("ns.svc.cluster.local"));
        assert!(!is_valid_search_domain("Upper.case"));
        assert!(!is_valid_search_domain("a..b"));
        assert!(!is_valid_search_domain("ends.in.digit1x-"));
    }

    #[test]
    fn search_list_stops_at_255_encoded_bytes() {
        let long = format!("{}.com", "a".repeat(60));
        let list: Vec<String> = (0..5).map(|_| long.clone()).collect();
        let mut notes = Vec::new();
        // 60 + 1 + 3 + 1 + 1 = 66 bytes each: three fit (198), the fourth would make 264.
        assert_eq!(valid_search(&list, &mut notes).len(), 3);
        assert_eq!(notes.len(), 1);
    }
}
