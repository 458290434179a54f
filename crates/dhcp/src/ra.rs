//! Router advertisements (RFC 4861) with RDNSS and DNSSL (RFC 8106).
//!
//! How it works: [`advertisement`] builds the ICMPv6 message body (type 134) from the
//! plan's `RaConfig`: header with the M/O flags and router lifetime, then the options
//! source link-layer address, MTU, prefix information (flag L, and A when the prefix is
//! a /64), RDNSS and DNSSL. The checksum field is left zero: a raw ICMPv6 socket has the
//! kernel fill it; a user-mode engine that builds whole frames calls [`checksum`].
//! [`is_router_solicitation`] recognises what to answer early.
//!
//! Written by hand: smoltcp's NDISC emitter knows no RDNSS or DNSSL options, and these
//! are a few fixed-layout TLVs.
//!
//! What holds: output is a well-formed RA for any config (labels over 63 bytes or lists
//! that would overflow an option's 8-bit length are cut, never truncated mid-label).

use std::net::Ipv6Addr;

use netbind_plan::model::RaConfig;

pub const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
pub const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;

/// Builds the RA body (ICMPv6 header onward, checksum zero).
pub fn advertisement(cfg: &RaConfig, router_mac: [u8; 6]) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    let flags = (u8::from(cfg.managed) << 7) | (u8::from(cfg.other_config) << 6);
    m.extend_from_slice(&[ICMPV6_ROUTER_ADVERTISEMENT, 0, 0, 0, 64, flags]);
    m.extend_from_slice(&cfg.router_lifetime_seconds.to_be_bytes());
    m.extend_from_slice(&[0; 8]); // reachable time, retrans timer: unspecified

    // Source link-layer address (1).
    m.extend_from_slice(&[1, 1]);
    m.extend_from_slice(&router_mac);

    // MTU (5).
    m.extend_from_slice(&[5, 1, 0, 0]);
    m.extend_from_slice(&cfg.mtu.to_be_bytes());

    // Prefix information (3): L always, A for SLAAC-capable prefixes.
    let pflags = 0x80 | (u8::from(cfg.autonomous) << 6);
    m.extend_from_slice(&[3, 4, cfg.prefix.prefix_len(), pflags]);
    let lifetime = u32::from(cfg.router_lifetime_seconds).max(1) * 3;
    m.extend_from_slice(&lifetime.to_be_bytes()); // valid
    m.extend_from_slice(&lifetime.to_be_bytes()); // preferred
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&cfg.prefix.network().octets());

    // RDNSS (25): at most 127 servers fit the length byte.
    let servers: Vec<&Ipv6Addr> = cfg.rdnss.iter().take(127).collect();
    if !servers.is_empty() {
        m.extend_from_slice(&[25, (1 + 2 * servers.len()) as u8, 0, 0]);
        m.extend_from_slice(&u32::from(cfg.router_lifetime_seconds).to_be_bytes());
        for s in servers {
            m.extend_from_slice(&s.octets());
        }
    }

    // DNSSL (31): names in DNS wire format, padded to 8 bytes.
    let mut names = Vec::new();
    for domain in &cfg.dnssl {
        let Some(encoded) = encode_name(domain) else {
            continue;
        };
        if 8 + names.len() + encoded.len() > 255 * 8 {
            break;
        }
        names.extend_from_slice(&encoded);
    }
    if !names.is_empty() {
        let total = (8 + names.len()).div_ceil(8) * 8;
        m.extend_from_slice(&[31, (total / 8) as u8, 0, 0]);
        m.extend_from_slice(&u32::from(cfg.router_lifetime_seconds).to_be_bytes());
        m.extend_from_slice(&names);
        m.resize(m.len() + total - 8 - names.len(), 0);
    }
    m
}

/// `a.b.c` → `1a1b1c0`, or None for an empty or oversized label.
pub(crate) fn encode_name(domain: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(domain.len() + 2);
    for label in domain.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))?;
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Some(out)
}

/// Whether an ICMPv6 message body is a router solicitation.
pub fn is_router_solicitation(icmp: &[u8]) -> bool {
    icmp.first() == Some(&ICMPV6_ROUTER_SOLICITATION) && icmp.get(1) == Some(&0) && icmp.len() >= 8
}

/// The ICMPv6 checksum over the IPv6 pseudo-header and `icmp` (checksum field zero).
pub fn checksum(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(icmp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RaConfig {
        RaConfig {
            interface: "k6t-eth0".into(),
            router_mac: "02:00:00:00:00:00".into(),
            prefix: "fd10:0:2::/120".parse().unwrap(),
            autonomous: false,
            managed: true,
            other_config: true,
            router_lifetime_seconds: 1800,
            mtu: 1450,
            rdnss: vec!["fd00:10:96::a".parse().unwrap()],
            dnssl: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
        }
    }

    /// Walks the options after the 16-byte header: (type, body).
    fn options(ra: &[u8]) -> Vec<(u8, &[u8])> {
        let mut out = Vec::new();
        let mut rest = &ra[16..];
        while rest.len() >= 8 {
            let len = usize::from(rest[1]) * 8;
            out.push((rest[0], &rest[2..len]));
            rest = &rest[len..];
        }
        assert!(rest.is_empty(), "options must fill the message exactly");
        out
    }

    #[test]
    fn header_carries_managed_and_other_flags_and_lifetime() {
        let ra = advertisement(&config(), [2, 0, 0, 0, 0, 0]);
        assert_eq!(ra[0], 134);
        assert_eq!(ra[5], 0xc0);
        assert_eq!(u16::from_be_bytes([ra[6], ra[7]]), 1800);
    }

    #[test]
    fn options_are_lladdr_mtu_prefix_rdnss_dnssl() {
        let ra = advertisement(&config(), [2, 0, 0, 0, 0, 0]);
        let kinds: Vec<u8> = options(&ra).iter().map(|(t, _)| *t).collect();
        assert_eq!(kinds, [1, 5, 3, 25, 31]);
        let opts = options(&ra);
        assert_eq!(
            u32::from_be_bytes(opts[1].1[2..6].try_into().unwrap()),
            1450
        );
        // Prefix: length 120, flag L only (a /120 cannot do SLAAC).
        assert_eq!(&opts[2].1[..2], &[120, 0x80]);
        let dns: Ipv6Addr = "fd00:10:96::a".parse().unwrap();
        assert_eq!(opts[3].1[6..22], dns.octets());
        assert_eq!(&opts[4].1[6..9], &[2, b'n', b's']);
    }

    #[test]
    fn slash_64_prefix_is_autonomous() {
        let mut c = config();
        c.prefix = "fd10:0:2::/64".parse().unwrap();
        c.autonomous = true;
        let ra = advertisement(&c, [2, 0, 0, 0, 0, 0]);
        assert_eq!(options(&ra)[2].1[1], 0xc0);
    }

    #[test]
    fn bad_search_labels_are_left_out() {
        let mut c = config();
        c.dnssl = vec![format!("{}.com", "x".repeat(64)), "a..b".into()];
        let ra = advertisement(&c, [2, 0, 0, 0, 0, 0]);
        assert!(!options(&ra).iter().any(|(t, _)| *t == 31));
    }

    #[test]
    fn checksum_verifies_to_zero() {
        let src: Ipv6Addr = "fe80::ff:fe00:0".parse().unwrap();
        let dst: Ipv6Addr = "ff02::1".parse().unwrap();
        let mut ra = advertisement(&config(), [2, 0, 0, 0, 0, 0]);
        let c = checksum(src, dst, &ra);
        ra[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(src, dst, &ra), 0);
    }

    #[test]
    fn router_solicitation_is_recognised() {
        assert!(is_router_solicitation(&[133, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_router_solicitation(&[134, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_router_solicitation(&[133]));
    }
}
