//! NDP: neighbour solicitations are answered for every address but the guest's own
//! (the engine is the guest's only neighbour), router solicitations with a router
//! advertisement built by `netbind_dhcp::ra` (prefix, MTU, RDNSS, DNSSL; addresses by
//! DHCPv6). An RA also goes out when a guest connects and every minute. Either can be
//! turned off (`serve_ndp`: both; `serve_ra`: RAs only): solicitations are then dropped
//! and counted, and no RA goes out.
//!
//! What holds: DAD probes (source `::`) get no answer; NDP is sent with hop limit 255
//! from the engine's link-local address (an NA from the target address), as RFC 4861
//! requires for the guest to accept it.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::config::{ENGINE_LINK_LOCAL, EngineConfig};
use crate::ctx::Ctx;
use crate::frame::{GuestTx, IpPacket};
use crate::wire::{
    ETH_HLEN, ICMP_CHECKSUM, IPV6_HLEN, PROTO_ICMPV6, fill_l4_checksum, icmp, ndp, write_ip,
};

pub const ICMPV6_RS: u8 = 133;
pub const ICMPV6_NS: u8 = 135;
pub const ICMPV6_NA: u8 = 136;
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
/// How often an RA goes to all nodes unasked.
pub const RA_INTERVAL: Duration = Duration::from_secs(60);

/// The router advertisement (built once) and when it goes out next.
pub struct Ra {
    msg: Option<Vec<u8>>,
    pub next: Option<Instant>,
}

impl Ra {
    /// The RA of `cfg`; none when RAs are turned off.
    pub fn new(cfg: &EngineConfig) -> Ra {
        let msg = (cfg.serve_ndp && cfg.serve_ra)
            .then(|| cfg.ra())
            .flatten()
            .map(|r| netbind_dhcp::ra::advertisement(&r, cfg.engine_mac));
        Ra { msg, next: None }
    }

    /// Whether RAs go out at all.
    pub fn enabled(&self) -> bool {
        self.msg.is_some()
    }
}

/// A neighbour solicitation from the guest: answered for every address but its own.
pub fn ns_from_guest<G: GuestTx>(cx: &mut Ctx<G>, pkt: &IpPacket<'_>) {
    if !cx.cfg.serve_ndp {
        cx.counters.rx_disabled += 1;
        return;
    }
    let body = pkt.payload;
    let target = match (icmp::type_code(body), ndp::ns_target(body)) {
        (Some((_, 0)), Some(t)) if pkt.hop == 255 => t,
        _ => {
            cx.counters.rx_malformed += 1;
            return;
        }
    };
    let IpAddr::V6(src) = pkt.src else { return };
    if src.is_unspecified() || target.is_multicast() || cx.cfg.is_guest_addr(IpAddr::V6(target)) {
        return;
    }
    let mac = pkt.src_mac;
    let (from, to) = (IpAddr::V6(target), IpAddr::V6(src));
    let len = ndp::NA_LEN;
    let sent = cx.out.emit(ETH_HLEN + IPV6_HLEN + len, |buf, macs| {
        let l4 = write_ip(buf, macs.to(mac), from, to, PROTO_ICMPV6, len, 255);
        ndp::write_na(&mut buf[l4..], target, macs.src);
        fill_l4_checksum(
            &mut buf[..l4 + len],
            l4,
            ICMP_CHECKSUM,
            from,
            to,
            PROTO_ICMPV6,
        );
        l4 + len
    });
    if sent {
        cx.counters.ndp_replies += 1;
    }
}

/// Sends the RA to `to` (a soliciting guest) or to all nodes.
pub fn send_ra<G: GuestTx>(cx: &mut Ctx<G>, ra: &Ra, to: Option<(Ipv6Addr, [u8; 6])>) {
    let Some(msg) = ra.msg.as_ref() else { return };
    let (dst, mac) = to.unwrap_or((Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), ALL_NODES_MAC));
    let (from, dst) = (IpAddr::V6(ENGINE_LINK_LOCAL), IpAddr::V6(dst));
    let len = msg.len();
    let sent = cx.out.emit(ETH_HLEN + IPV6_HLEN + len, |buf, macs| {
        let l4 = write_ip(buf, macs.to(mac), from, dst, PROTO_ICMPV6, len, 255);
        buf[l4..l4 + len].copy_from_slice(msg);
        fill_l4_checksum(
            &mut buf[..l4 + len],
            l4,
            ICMP_CHECKSUM,
            from,
            dst,
            PROTO_ICMPV6,
        );
        l4 + len
    });
    if sent {
        cx.counters.ndp_replies += 1;
        tracing::debug!(to = %dst, "router advertisement sent to {dst}");
    }
}

/// A router solicitation from the guest: answered with the RA.
pub fn rs_from_guest<G: GuestTx>(cx: &mut Ctx<G>, ra: &Ra, pkt: &IpPacket<'_>) {
    if !(cx.cfg.serve_ndp && cx.cfg.serve_ra) {
        cx.counters.rx_disabled += 1;
        return;
    }
    if pkt.payload.len() < 8 || pkt.hop != 255 {
        cx.counters.rx_malformed += 1;
        return;
    }
    let to = match pkt.src {
        IpAddr::V6(s) if !s.is_unspecified() => Some((s, pkt.src_mac)),
        _ => None,
    };
    send_ra(cx, ra, to);
}
