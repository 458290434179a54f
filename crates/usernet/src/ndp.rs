//! NDP: neighbour solicitations are answered for every address but the guest's own
//! (the engine is the guest's only neighbour), router solicitations with a router
//! advertisement built by `netbind_dhcp::ra` (prefix, MTU, RDNSS, DNSSL; addresses by
//! DHCPv6). An RA also goes out when a guest connects and every minute.
//!
//! What holds: DAD probes (source `::`) get no answer; NDP is sent with hop limit 255
//! from the engine's link-local address (an NA from the target address), as RFC 4861
//! requires for the guest to accept it.

use std::net::{IpAddr, Ipv6Addr};

use crate::config::{ENGINE_LINK_LOCAL, ENGINE_MAC};
use crate::engine::Engine;
use crate::frame::{GuestTx, IpPacket, PROTO_ICMPV6, fill_l4_checksum, write_ip};

pub const ICMPV6_RS: u8 = 133;
pub const ICMPV6_NS: u8 = 135;
pub const ICMPV6_NA: u8 = 136;
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

impl<G: GuestTx> Engine<G> {
    pub(crate) fn ns_from_guest(&mut self, pkt: &IpPacket<'_>) {
        let body = pkt.payload;
        if body.len() < 24 || body[1] != 0 || pkt.hop != 255 {
            self.counters.rx_malformed += 1;
            return;
        }
        let IpAddr::V6(src) = pkt.src else { return };
        let mut t = [0u8; 16];
        t.copy_from_slice(&body[8..24]);
        let target = Ipv6Addr::from(t);
        if src.is_unspecified()
            || target.is_multicast()
            || self.cfg.is_guest_addr(IpAddr::V6(target))
        {
            return;
        }
        let mac = pkt.src_mac;
        let sent = self.out.emit(14 + 40 + 32, |buf, _| {
            let l4 = write_ip(
                buf,
                mac,
                IpAddr::V6(target),
                IpAddr::V6(src),
                PROTO_ICMPV6,
                32,
                255,
            );
            let na = &mut buf[l4..l4 + 32];
            na.fill(0);
            na[0] = ICMPV6_NA;
            na[4] = 0xe0; // router, solicited, override
            na[8..24].copy_from_slice(&t);
            na[24] = 2; // target link-layer address
            na[25] = 1;
            na[26..32].copy_from_slice(&ENGINE_MAC);
            fill_l4_checksum(
                buf,
                l4,
                2,
                IpAddr::V6(target),
                IpAddr::V6(src),
                PROTO_ICMPV6,
            );
            l4 + 32
        });
        if sent {
            self.counters.ndp_replies += 1;
        }
    }

    /// Sends the RA to `to` (a soliciting guest) or to all nodes.
    pub(crate) fn send_ra(&mut self, to: Option<(Ipv6Addr, [u8; 6])>) {
        let Some(ra) = self.ra.as_ref() else { return };
        let (dst, mac) = to.unwrap_or((Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), ALL_NODES_MAC));
        let len = ra.len();
        let sent = self.out.emit(14 + 40 + len, |buf, _| {
            let l4 = write_ip(
                buf,
                mac,
                IpAddr::V6(ENGINE_LINK_LOCAL),
                IpAddr::V6(dst),
                PROTO_ICMPV6,
                len,
                255,
            );
            buf[l4..l4 + len].copy_from_slice(ra);
            fill_l4_checksum(
                buf,
                l4,
                2,
                IpAddr::V6(ENGINE_LINK_LOCAL),
                IpAddr::V6(dst),
                PROTO_ICMPV6,
            );
            l4 + len
        });
        if sent {
            self.counters.ndp_replies += 1;
        }
    }

    pub(crate) fn rs_from_guest(&mut self, pkt: &IpPacket<'_>) {
        if pkt.payload.len() < 8 || pkt.hop != 255 {
            self.counters.rx_malformed += 1;
            return;
        }
        let to = match pkt.src {
            IpAddr::V6(s) if !s.is_unspecified() => Some((s, pkt.src_mac)),
            _ => None,
        };
        self.send_ra(to);
    }
}
