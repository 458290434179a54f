//! DHCPv4 and DHCPv6 for the guest, served by the `netbind-dhcp` cores.
//!
//! How it works: UDP to port 67 (IPv4) or 547 (IPv6) never becomes a flow; its payload
//! goes to [`Server4::handle`] / [`Server6::handle`] and the reply is framed here: DHCPv4
//! from the gateway address (the server identifier) to the address the core chose
//! (broadcast or the client's), DHCPv6 from the engine's link-local address to the
//! client's. When the guest's MAC was not configured, each server is (re)made on the
//! first request: it answers the MAC that asked first.
//!
//! DHCPv4 or DHCPv6 turned off (`serve_dhcp4`, `serve_dhcp6`: passt's `--no-dhcp`,
//! `--no-dhcpv6`): requests are dropped and counted, as UDP to a service that is not
//! there; they never become flows either.
//!
//! The first lease of each family is an info event; renewals and other replies are debug
//! events (a guest that asks in a loop does not flood the log).
//!
//! Replies are built in the core with dhcproto and allocated there: this is control
//! traffic, a handful of messages per boot, not the data path.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use netbind_dhcp::v4::Server4;
use netbind_dhcp::v6::Server6;

use crate::config::{ENGINE_LINK_LOCAL, EngineConfig, format_mac};
use crate::ctx::Ctx;
use crate::frame::{GuestTx, IpPacket};

/// The DHCP servers of the engine (made when first needed).
pub struct DhcpServers {
    v4: Option<Server4>,
    v6: Option<Server6>,
    /// The DHCPv6 server was remade for the MAC of the first guest that asked.
    v6_mac_learned: bool,
    /// A lease was given (logged once at info level; renewals at debug).
    leased4: bool,
    leased6: bool,
}

impl DhcpServers {
    pub fn new(cfg: &EngineConfig) -> DhcpServers {
        DhcpServers {
            v4: None,
            v6: cfg.dhcp6().map(|d| server6(cfg, d)),
            v6_mac_learned: false,
            leased4: false,
            leased6: false,
        }
    }
}

/// A DHCPv6 server for `d`, telling the guest its fully qualified name if it has one.
fn server6(cfg: &EngineConfig, d: netbind_plan::model::Dhcp6Config) -> Server6 {
    let mut s = Server6::new(d);
    if !cfg.fqdn.is_empty() {
        s.set_fqdn(&cfg.fqdn);
    }
    s
}

pub fn dhcp4_from_guest<G: GuestTx>(
    cx: &mut Ctx<G>,
    servers: &mut DhcpServers,
    pkt: &IpPacket<'_>,
    payload: &[u8],
) {
    if !cx.cfg.serve_dhcp4 {
        cx.counters.rx_disabled += 1;
        return;
    }
    if servers.v4.is_none() {
        let Some(mut cfg) = cx.cfg.dhcp4() else {
            return;
        };
        if cx.cfg.guest_mac.is_none() {
            cfg.client_mac = format_mac(pkt.src_mac);
        }
        servers.v4 = Server4::new(cfg).ok();
        if let Some(s) = servers.v4.as_mut()
            && !cx.cfg.fqdn.is_empty()
        {
            s.set_fqdn(&cx.cfg.fqdn);
        }
    }
    let Some(server) = servers.v4.as_mut() else {
        return;
    };
    let Ok(reply) = server.handle(payload) else {
        return;
    };
    let from = SocketAddr::new(IpAddr::V4(server.config().server_address), 67);
    let to = SocketAddr::new(IpAddr::V4(reply.destination), 68);
    let mac = if reply.destination == Ipv4Addr::BROADCAST {
        [0xff; 6]
    } else {
        pkt.src_mac
    };
    if cx.out.emit_udp(from, to, &reply.payload, Some(mac)) {
        cx.counters.dhcp_replies += 1;
        let (address, mac) = (server.config().address, format_mac(pkt.src_mac));
        if reply.kind == dhcproto::v4::MessageType::Ack && !servers.leased4 {
            servers.leased4 = true;
            tracing::info!(%address, %mac, "DHCPv4: lease of {address} given to {mac}");
        } else {
            tracing::debug!(%address, %mac, "DHCPv4: {:?} sent to {mac}", reply.kind);
        }
    }
}

pub fn dhcp6_from_guest<G: GuestTx>(
    cx: &mut Ctx<G>,
    servers: &mut DhcpServers,
    pkt: &IpPacket<'_>,
    sport: u16,
    payload: &[u8],
) {
    if !cx.cfg.serve_dhcp6 {
        cx.counters.rx_disabled += 1;
        return;
    }
    if servers.v6.is_none() || (cx.cfg.guest_mac.is_none() && !servers.v6_mac_learned) {
        let Some(mut cfg) = cx.cfg.dhcp6() else {
            return;
        };
        if cx.cfg.guest_mac.is_none() {
            cfg.client_mac = format_mac(pkt.src_mac);
            servers.v6_mac_learned = true;
        }
        servers.v6 = Some(server6(&cx.cfg, cfg));
    }
    let Some(server) = servers.v6.as_mut() else {
        return;
    };
    let Ok(reply) = server.handle(Some(pkt.src_mac), payload) else {
        return;
    };
    let from = SocketAddr::new(IpAddr::V6(ENGINE_LINK_LOCAL), 547);
    let to = SocketAddr::new(pkt.src, sport);
    if cx.out.emit_udp(from, to, &reply.payload, Some(pkt.src_mac)) {
        cx.counters.dhcp_replies += 1;
        let (address, client) = (server.config().address, pkt.src);
        if reply.kind == dhcproto::v6::MessageType::Reply && !servers.leased6 {
            servers.leased6 = true;
            tracing::info!(%address, %client, "DHCPv6: lease of {address} given to {client}");
        } else {
            tracing::debug!(%address, %client, "DHCPv6: {:?} sent to {client}", reply.kind);
        }
    }
}
