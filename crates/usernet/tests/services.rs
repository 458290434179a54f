//! ARP, NDP and DHCP: answered by the engine itself, no sockets.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::*;
use netbind_usernet::EngineConfig;
use netbind_usernet::config::{ENGINE_LINK_LOCAL, ENGINE_MAC};

#[test]
fn arp_for_the_gateway_is_answered_with_the_engine_mac() {
    let mut h = Harness::new(config());
    h.send(&arp_request(GW4, GUEST4));
    let got = h.take();
    assert_eq!(got.len(), 1);
    let r = &got[0].raw;
    assert_eq!(&r[0..6], &GUEST_MAC);
    assert_eq!(u16::from_be_bytes([r[20], r[21]]), 2, "a reply");
    assert_eq!(&r[22..28], &ENGINE_MAC);
    assert_eq!(&r[28..32], &GW4.octets());
    assert_eq!(&r[38..42], &GUEST4.octets());
}

#[test]
fn arp_for_any_other_address_is_answered_too_but_not_for_the_guests_own() {
    let mut h = Harness::new(config());
    h.send(&arp_request(Ipv4Addr::new(10, 0, 2, 77), GUEST4));
    assert_eq!(h.take().len(), 1);
    h.send(&arp_request(GUEST4, GUEST4));
    h.send(&arp_request(GUEST4, Ipv4Addr::UNSPECIFIED));
    assert!(h.take().is_empty());
}

fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> Vec<u8> {
    ip_frame(IpAddr::V6(src), IpAddr::V6(dst), 58, body, 255)
}

#[test]
fn neighbour_solicitation_for_the_router_gets_an_advertisement() {
    let mut h = Harness::new(config());
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend(ENGINE_LINK_LOCAL.octets());
    ns.extend([1, 1]);
    ns.extend(GUEST_MAC);
    h.send(&icmp6(GUEST6, "ff02::1:ff00:1".parse().unwrap(), &ns));
    let got = h.take();
    assert_eq!(got.len(), 1);
    let na = &got[0];
    assert_eq!((na.l4[0], na.hop), (136, 255));
    assert_eq!(na.src, IpAddr::V6(ENGINE_LINK_LOCAL));
    assert_eq!(&na.l4[8..24], &ENGINE_LINK_LOCAL.octets());
    assert_eq!(&na.l4[26..32], &ENGINE_MAC);
}

#[test]
fn duplicate_address_detection_gets_no_answer() {
    let mut h = Harness::new(config());
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend(GUEST6.octets());
    h.send(&icmp6(
        Ipv6Addr::UNSPECIFIED,
        "ff02::1:ff00:15".parse().unwrap(),
        &ns,
    ));
    assert!(h.take().is_empty());
}

#[test]
fn router_solicitation_gets_an_ra_with_prefix_and_mtu() {
    let mut h = Harness::new(config());
    h.send(&icmp6(
        "fe80::15".parse().unwrap(),
        "ff02::2".parse().unwrap(),
        &[133, 0, 0, 0, 0, 0, 0, 0],
    ));
    let got = h.take();
    assert_eq!(got.len(), 1);
    let ra = &got[0].l4;
    assert_eq!(ra[0], 134);
    assert_eq!(ra[5] & 0x80, 0x80, "managed: addresses by DHCPv6");
    let mtu_opt = ra
        .windows(4)
        .position(|w| w == [5, 1, 0, 0])
        .expect("MTU option");
    assert_eq!(&ra[mtu_opt + 4..mtu_opt + 8], &65520u32.to_be_bytes());
    assert!(
        ra.windows(8).any(|w| w == [0xfd, 0, 0, 0, 0, 0, 0, 0]),
        "fd00::/64 prefix"
    );
}

#[test]
fn an_ra_greets_a_newly_connected_guest() {
    let mut h = Harness::new(config());
    h.engine.guest_connected();
    let got = h.take();
    assert!(
        got.iter()
            .any(|g| g.l4.first() == Some(&134) && g.dst == IpAddr::V6("ff02::1".parse().unwrap()))
    );
}

#[test]
fn dhcp_discover_gets_an_offer_of_the_pods_address() {
    use dhcproto::{Decodable, Decoder, v4};
    let mut h = Harness::new(config());
    h.send(&dhcp_discover());
    let got = h.take();
    assert_eq!(got.len(), 1, "{got:?}");
    let offer = v4::Message::decode(&mut Decoder::new(got[0].udp_payload())).unwrap();
    assert_eq!(offer.yiaddr(), GUEST4);
    assert_eq!(got[0].src, IpAddr::V4(GW4));
    assert!(matches!(
        offer.opts().get(v4::OptionCode::MessageType),
        Some(v4::DhcpOption::MessageType(v4::MessageType::Offer))
    ));
}

#[test]
fn dhcpv6_solicit_gets_an_advertise_with_the_pods_address() {
    let mut h = Harness::new(config());
    h.send(&dhcpv6_solicit());
    let got = h.take();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].src, IpAddr::V6(ENGINE_LINK_LOCAL));
    assert!(
        got[0]
            .udp_payload()
            .windows(16)
            .any(|w| w == GUEST6.octets()),
        "IA_NA with the pod address"
    );
}

#[test]
fn hostile_frames_do_not_panic_or_open_flows() {
    let mut h = Harness::new(config());
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seeds = [
        tcp_frame(guest4(1), gw4(2), 1, 0, SYN, 100, &[2, 4, 0, 0], &[]),
        udp_frame(guest4(1), gw4(67), &[1, 2, 3]),
        arp_request(GW4, GUEST4),
        icmp6(GUEST6, ENGINE_LINK_LOCAL, &[135, 0, 0, 0]),
    ];
    for _ in 0..20000 {
        let seed = &seeds[(next() % seeds.len() as u64) as usize];
        let mut f = seed.clone();
        let cut = (next() as usize) % (f.len() + 1);
        f.truncate(cut.max(14));
        for _ in 0..(next() % 4) {
            if f.is_empty() {
                break;
            }
            let i = (next() as usize) % f.len();
            f[i] = next() as u8;
        }
        h.engine.guest_frame(&f);
    }
    let c = h.engine.counters();
    assert!(c.rx_malformed > 0);
}

/// `--mac-addr`: the engine's MAC, as configured, is what ARP and NDP answer, what RAs
/// carry and where every frame to the guest comes from.
#[test]
fn the_configured_engine_mac_is_answered_advertised_and_the_source_of_every_frame() {
    let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    let mut h = Harness::new(EngineConfig {
        engine_mac: mac,
        ..config()
    });
    h.send(&arp_request(GW4, GUEST4));
    h.send(&neighbour_solicitation_for_the_router());
    h.send(&router_solicitation());
    h.send(&dhcp_discover());
    let got = h.take();
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got.iter().all(|g| g.raw[6..12] == mac), "Ethernet source");
    assert_eq!(&got[0].raw[22..28], &mac, "ARP sender hardware address");
    assert_eq!(&got[1].l4[26..32], &mac, "NA target link-layer address");
    let ra = &got[2].l4;
    assert!(
        ra.windows(8).any(|w| w[..2] == [1, 1] && w[2..] == mac),
        "RA source link-layer address"
    );
    assert!(!ra.windows(6).any(|w| w == ENGINE_MAC), "not the default");
}

fn neighbour_solicitation_for_the_router() -> Vec<u8> {
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend(ENGINE_LINK_LOCAL.octets());
    icmp6(GUEST6, "ff02::1:ff00:1".parse().unwrap(), &ns)
}

fn router_solicitation() -> Vec<u8> {
    icmp6(
        "fe80::15".parse().unwrap(),
        "ff02::2".parse().unwrap(),
        &[133, 0, 0, 0, 0, 0, 0, 0],
    )
}

#[test]
fn no_dhcp_leaves_a_discover_unanswered_and_counted() {
    let mut h = Harness::new(EngineConfig {
        serve_dhcp4: false,
        ..config()
    });
    h.send(&dhcp_discover());
    assert!(h.take().is_empty());
    assert_eq!(h.engine.counters().rx_disabled, 1);
    assert_eq!(h.engine.flow_count(), 0, "not relayed either");
    h.send(&dhcpv6_solicit());
    assert_eq!(h.take().len(), 1, "DHCPv6 still answers");
}

#[test]
fn no_dhcpv6_leaves_a_solicit_unanswered_and_counted() {
    let mut h = Harness::new(EngineConfig {
        serve_dhcp6: false,
        ..config()
    });
    h.send(&dhcpv6_solicit());
    assert!(h.take().is_empty());
    assert_eq!(h.engine.counters().rx_disabled, 1);
    assert_eq!(h.engine.flow_count(), 0, "not relayed either");
    h.send(&dhcp_discover());
    assert_eq!(h.take().len(), 1, "DHCPv4 still answers");
}

#[test]
fn no_ndp_leaves_neighbour_and_router_solicitations_unanswered_and_sends_no_ra() {
    let mut h = Harness::new(EngineConfig {
        serve_ndp: false,
        ..config()
    });
    h.engine.guest_connected();
    h.send(&neighbour_solicitation_for_the_router());
    h.send(&router_solicitation());
    h.timers_at(std::time::Duration::from_secs(120));
    assert!(h.take().is_empty());
    assert_eq!(h.engine.counters().rx_disabled, 2);
    h.send(&arp_request(GW4, GUEST4));
    assert_eq!(h.take().len(), 1, "ARP still answers");
}

#[test]
fn no_ra_sends_no_router_advertisement_but_answers_neighbour_solicitations() {
    let mut h = Harness::new(EngineConfig {
        serve_ra: false,
        ..config()
    });
    h.engine.guest_connected();
    h.send(&router_solicitation());
    h.timers_at(std::time::Duration::from_secs(120));
    assert!(h.take().is_empty(), "no RA, greeting, answer or periodic");
    assert_eq!(h.engine.counters().rx_disabled, 1);
    h.send(&neighbour_solicitation_for_the_router());
    let got = h.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].l4[0], 136, "a neighbour advertisement");
}

/// Whether DHCPv4, DHCPv6 and the RA tell the guest resolvers, and a search list (for
/// DHCPv4: option 119 or 15).
fn told(cfg: EngineConfig) -> ([bool; 3], [bool; 3]) {
    use dhcproto::{Decodable, Decoder, v4, v6};
    let mut h = Harness::new(EngineConfig {
        dns: vec!["10.0.2.3".parse().unwrap(), "fd00::3".parse().unwrap()],
        search: vec!["example.test".into()],
        ..cfg
    });
    h.send(&dhcp_discover());
    h.send(&dhcpv6_solicit());
    h.send(&router_solicitation());
    let got = h.take();
    assert_eq!(got.len(), 3, "{got:?}");
    let offer = v4::Message::decode(&mut Decoder::new(got[0].udp_payload())).unwrap();
    let advertise = v6::Message::decode(&mut Decoder::new(got[1].udp_payload())).unwrap();
    let ra = &got[2].l4;
    let mut ra_options = Vec::new();
    let mut at = 16;
    while at + 2 <= ra.len() && ra[at + 1] > 0 {
        ra_options.push(ra[at]);
        at += usize::from(ra[at + 1]) * 8;
    }
    let v4 = |code| offer.opts().get(code).is_some();
    let v6 = |code| advertise.opts().get(code).is_some();
    (
        [
            v4(v4::OptionCode::DomainNameServer),
            v6(v6::OptionCode::DomainNameServers),
            ra_options.contains(&25),
        ],
        [
            v4(v4::OptionCode::DomainSearch) || v4(v4::OptionCode::DomainName),
            v6(v6::OptionCode::DomainSearchList),
            ra_options.contains(&31),
        ],
    )
}

#[test]
fn no_dhcp_dns_leaves_the_resolvers_out_of_dhcp_dhcpv6_and_the_ra() {
    assert_eq!(told(config()), ([true; 3], [true; 3]), "told by default");
    let cfg = EngineConfig {
        advertise_dns: false,
        ..config()
    };
    assert_eq!(told(cfg), ([false; 3], [true; 3]));
}

#[test]
fn no_dhcp_search_leaves_the_search_list_out_of_dhcp_dhcpv6_and_the_ra() {
    let cfg = EngineConfig {
        advertise_search: false,
        ..config()
    };
    assert_eq!(told(cfg), ([true; 3], [false; 3]));
}

#[test]
fn fqdn_reaches_the_guest_in_dhcp_option_81_and_dhcpv6_option_39() {
    use dhcproto::{Decodable, Decoder, v4};
    let mut h = Harness::new(EngineConfig {
        fqdn: "vm.example.test".into(),
        ..config()
    });
    h.send(&dhcp_discover());
    h.send(&dhcpv6_solicit());
    let got = h.take();
    assert_eq!(got.len(), 2, "{got:?}");
    let offer = v4::Message::decode(&mut Decoder::new(got[0].udp_payload())).unwrap();
    let Some(v4::DhcpOption::ClientFQDN(fqdn)) = offer.opts().get(v4::OptionCode::ClientFQDN)
    else {
        panic!("no option 81 in {offer:?}");
    };
    assert_eq!(fqdn.domain().to_ascii(), "vm.example.test.");
    let mut option39 = vec![0, 39, 0, 18, 0x04];
    option39.extend(b"\x02vm\x07example\x04test\x00");
    assert!(
        got[1]
            .udp_payload()
            .windows(option39.len())
            .any(|w| w == option39),
        "option 39 in the advertise"
    );
}
