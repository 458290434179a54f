//! Netlink dumps → pod view, as pure functions.
//!
//! Links keep the kernel's order (by ifindex), so the same namespace gives the same view;
//! each keeps its ifindex (a macvtap's device is `/dev/tap<ifindex>`).
//! Each address is attached to its link by ifindex; an address whose link is unknown or
//! is loopback is dropped, as are IPv6 link-local ones (fe80::/10: every IPv6 link has one,
//! and they say nothing about the pod's networks). Routes: unicast routes of the main
//! table only, with their output link by name; a multipath route takes its first hop;
//! a route without a known, non-loopback output link is dropped.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netbind_plan::PodView;
use netbind_plan::podview::{PodLink, PodRoute};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};

/// What the kernel answered to the three dump requests.
#[derive(Debug, Clone, Default)]
pub struct Dumps {
    pub links: Vec<LinkMessage>,
    pub addresses: Vec<AddressMessage>,
    pub routes: Vec<RouteMessage>,
}

/// Builds the view (without source and DNS, which the caller knows).
pub fn pod_view(dumps: &Dumps) -> PodView {
    let mut names = BTreeMap::new();
    let mut links = Vec::new();
    for msg in &dumps.links {
        if is_loopback(msg) {
            continue;
        }
        let Some(link) = link(msg) else { continue };
        names.insert(msg.header.index, links.len());
        links.push(link);
    }
    for msg in &dumps.addresses {
        let Some(&at) = names.get(&msg.header.index) else {
            continue;
        };
        if let Some(net) = address(msg) {
            links[at].addresses.push(net);
        }
    }
    let routes = dumps
        .routes
        .iter()
        .filter_map(|msg| {
            let oif = route_oif(msg)?;
            let dev = links.get(*names.get(&oif)?)?.name.clone();
            route(msg, dev)
        })
        .collect();
    PodView {
        links,
        routes,
        ..PodView::default()
    }
}

fn is_loopback(msg: &LinkMessage) -> bool {
    msg.header.link_layer_type == LinkLayerType::Loopback
        || msg.header.flags.contains(LinkFlags::Loopback)
}

fn link(msg: &LinkMessage) -> Option<PodLink> {
    let mut out = PodLink {
        mtu: 1500,
        ifindex: Some(msg.header.index).filter(|i| *i != 0),
        ..PodLink::default()
    };
    let mut named = false;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => {
                out.name = name.clone();
                named = true;
            }
            LinkAttribute::Mtu(mtu) => out.mtu = *mtu,
            LinkAttribute::Address(bytes) if bytes.len() == 6 => out.mac = Some(mac(bytes)),
            LinkAttribute::LinkInfo(infos) => {
                out.kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(kind) => Some(kind.to_string()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    named.then_some(out)
}

fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn address(msg: &AddressMessage) -> Option<IpNet> {
    // IFA_LOCAL is the link's own address on point-to-point links (IFA_ADDRESS is then the
    // peer); elsewhere only IFA_ADDRESS is sent, or both are equal.
    let find = |want_local: bool| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if want_local => Some(*ip),
            AddressAttribute::Address(ip) if !want_local => Some(*ip),
            _ => None,
        })
    };
    let ip = find(true).or_else(|| find(false))?;
    if is_link_local_v6(ip) {
        return None;
    }
    IpNet::new(ip, msg.header.prefix_len).ok()
}

fn is_link_local_v6(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

fn route_oif(msg: &RouteMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        RouteAttribute::MultiPath(hops) => hops.first().map(|h| h.interface_index),
        _ => None,
    })
}

fn route(msg: &RouteMessage, dev: String) -> Option<PodRoute> {
    if route_table(msg) != u32::from(RouteHeader::RT_TABLE_MAIN)
        || msg.header.kind != RouteType::Unicast
    {
        return None;
    }
    let ip = |a: &RouteAddress| match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    let mut destination = None;
    let mut gateway = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => destination = ip(a),
            RouteAttribute::Gateway(a) => gateway = ip(a),
            RouteAttribute::MultiPath(hops) if gateway.is_none() => {
                gateway = hops.first().and_then(|h| {
                    h.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => ip(g),
                        _ => None,
                    })
                });
            }
            _ => {}
        }
    }
    let destination = match destination {
        Some(d) => d,
        None => match msg.header.address_family {
            AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => return None,
        },
    };
    if is_link_local_v6(destination) {
        return None;
    }
    let destination = IpNet::new(destination, msg.header.destination_prefix_length).ok()?;
    Some(PodRoute {
        destination,
        gateway,
        dev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::InfoKind;

    fn link_msg(
        index: u32,
        name: &str,
        mac: [u8; 6],
        mtu: u32,
        kind: Option<InfoKind>,
    ) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.link_layer_type = LinkLayerType::Ether;
        m.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::Address(mac.to_vec()),
        ];
        if let Some(kind) = kind {
            m.attributes
                .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
        }
        m
    }

    fn lo() -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = 1;
        m.header.link_layer_type = LinkLayerType::Loopback;
        m.attributes = vec![
            LinkAttribute::IfName("lo".into()),
            LinkAttribute::Mtu(65536),
        ];
        m
    }

    fn addr_msg(index: u32, ip: &str, prefix: u8) -> AddressMessage {
        let ip: IpAddr = ip.parse().unwrap();
        let mut m = AddressMessage::default();
        m.header.index = index;
        m.header.prefix_len = prefix;
        m.header.family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.attributes = vec![AddressAttribute::Address(ip)];
        m
    }

    fn route_msg(table: u8, dst: Option<(&str, u8)>, gw: Option<&str>, oif: u32) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.table = table;
        m.header.kind = RouteType::Unicast;
        m.header.address_family = AddressFamily::Inet;
        let addr = |s: &str| RouteAddress::from(s.parse::<IpAddr>().unwrap());
        if let Some((d, len)) = dst {
            m.header.destination_prefix_length = len;
            m.attributes.push(RouteAttribute::Destination(addr(d)));
        }
        if let Some(g) = gw {
            m.attributes.push(RouteAttribute::Gateway(addr(g)));
        }
        m.attributes.push(RouteAttribute::Oif(oif));
        m
    }

    fn eth0() -> LinkMessage {
        link_msg(
            2,
            "eth0",
            [0x0a, 0x58, 0x0a, 0xf4, 0, 5],
            1450,
            Some(InfoKind::Veth),
        )
    }

    #[test]
    fn a_link_keeps_name_mac_mtu_kind_and_ifindex() {
        let view = pod_view(&Dumps {
            links: vec![eth0()],
            ..Dumps::default()
        });
        let l = &view.links[0];
        assert_eq!(l.name, "eth0");
        assert_eq!(l.ifindex, Some(2));
        assert_eq!(l.mac.as_deref(), Some("0a:58:0a:f4:00:05"));
        assert_eq!(l.mtu, 1450);
        assert_eq!(l.kind.as_deref(), Some("veth"));
    }

    #[test]
    fn loopback_is_left_out_with_its_addresses() {
        let view = pod_view(&Dumps {
            links: vec![lo(), eth0()],
            addresses: vec![addr_msg(1, "127.0.0.1", 8), addr_msg(2, "10.244.0.5", 24)],
            ..Dumps::default()
        });
        assert_eq!(view.links.len(), 1);
        assert_eq!(
            view.addresses(),
            vec!["10.244.0.5/24".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn ipv6_link_local_addresses_are_left_out() {
        let view = pod_view(&Dumps {
            links: vec![eth0()],
            addresses: vec![
                addr_msg(2, "fe80::858:aff:fef4:5", 64),
                addr_msg(2, "fd00:10:244::5", 64),
            ],
            ..Dumps::default()
        });
        assert_eq!(
            view.addresses(),
            vec!["fd00:10:244::5/64".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn local_wins_over_peer_address_on_point_to_point_links() {
        let mut a = addr_msg(2, "10.0.0.2", 32);
        a.attributes
            .insert(0, AddressAttribute::Local("10.0.0.1".parse().unwrap()));
        let view = pod_view(&Dumps {
            links: vec![eth0()],
            addresses: vec![a],
            ..Dumps::default()
        });
        assert_eq!(
            view.addresses(),
            vec!["10.0.0.1/32".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn a_default_route_has_no_destination_attribute() {
        let view = pod_view(&Dumps {
            links: vec![eth0()],
            routes: vec![route_msg(254, None, Some("10.244.0.1"), 2)],
            ..Dumps::default()
        });
        let r = &view.routes[0];
        assert_eq!(r.destination, "0.0.0.0/0".parse::<IpNet>().unwrap());
        assert_eq!(r.gateway, Some("10.244.0.1".parse().unwrap()));
        assert_eq!(r.dev, "eth0");
    }

    #[test]
    fn only_main_table_unicast_routes_on_known_links_are_kept() {
        let mut local = route_msg(255, Some(("10.244.0.5", 32)), None, 2);
        local.header.kind = RouteType::Local;
        let view = pod_view(&Dumps {
            links: vec![lo(), eth0()],
            routes: vec![
                route_msg(254, Some(("10.244.0.0", 24)), None, 2),
                local,
                route_msg(100, Some(("192.168.0.0", 16)), None, 2),
                route_msg(254, Some(("127.0.0.0", 8)), None, 1),
                route_msg(254, Some(("172.16.0.0", 12)), None, 9),
            ],
            ..Dumps::default()
        });
        assert_eq!(view.routes.len(), 1, "{:?}", view.routes);
        assert_eq!(
            view.routes[0].destination,
            "10.244.0.0/24".parse::<IpNet>().unwrap()
        );
    }

    #[test]
    fn links_keep_kernel_order() {
        let view = pod_view(&Dumps {
            links: vec![eth0(), link_msg(3, "net1", [2, 0, 0, 0, 0, 1], 1500, None)],
            ..Dumps::default()
        });
        let names: Vec<_> = view.links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["eth0", "net1"]);
    }
}
