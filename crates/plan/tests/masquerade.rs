//! Masquerade: links, sysctls, NAT rules, DHCP and RA, as planned for a typical pod.

mod support;

use netbind_plan::{LinkStep, Sysctl};
use support::{plan, vmi};

const POD: &str = "[{name: default, pod: {}}]";

fn masq(extra: &str) -> String {
    vmi(
        &format!("[{{name: default, masquerade: {{}}{extra}}}]"),
        POD,
    )
}

fn istio(yaml: String) -> String {
    yaml.replace(
        "namespace: ns1}",
        "namespace: ns1, annotations: {sidecar.istio.io/inject: \"true\"}}",
    )
}

/// The rules of one table (`ip` or `ip6`) as `chain: rule` lines, from the nft text.
fn rules(yaml: &str, family: &str) -> Vec<String> {
    let p = plan(yaml);
    let text = p.interfaces[0].nftables.as_ref().unwrap().to_nft_text();
    let prefix = format!("add rule {family} netbind ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn bridge_with_gateway_addresses_and_tap() {
    let p = plan(&masq(""));
    let i = &p.interfaces[0];
    assert_eq!(
        i.links,
        vec![
            LinkStep::CreateBridge {
                name: "k6t-eth0".into(),
                mac: Some("02:00:00:00:00:00".into()),
                mtu: 1500
            },
            LinkStep::AddAddress {
                link: "k6t-eth0".into(),
                address: "10.0.2.1/24".parse().unwrap()
            },
            LinkStep::AddAddress {
                link: "k6t-eth0".into(),
                address: "fd10:0:2::1/120".parse().unwrap()
            },
            LinkStep::SetUp {
                link: "k6t-eth0".into()
            },
            LinkStep::CreateTap {
                name: "tap0".into(),
                mtu: 1500,
                queues: 1,
                uid: 107,
                gid: 107
            },
            LinkStep::SetMaster {
                link: "tap0".into(),
                master: "k6t-eth0".into()
            },
            LinkStep::SetUp {
                link: "tap0".into()
            },
        ]
    );
    assert_eq!(
        i.sysctls,
        vec![
            Sysctl::new("net.ipv4.ip_forward", "1"),
            Sysctl::new("net.ipv4.conf.k6t-eth0.route_localnet", "1"),
            Sysctl::new("net.ipv6.conf.all.forwarding", "1"),
        ]
    );
}

#[test]
fn no_ports_dnats_everything_and_keeps_migration_ports() {
    let text = plan(&masq("")).interfaces[0]
        .nftables
        .as_ref()
        .unwrap()
        .to_nft_text();
    let ipv4: String = text
        .lines()
        .take_while(|l| !l.contains("ip6"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        ipv4,
        "add table ip netbind\n\
         add chain ip netbind prerouting { type nat hook prerouting priority -100; }\n\
         add chain ip netbind input { type nat hook input priority 100; }\n\
         add chain ip netbind output { type nat hook output priority -100; }\n\
         add chain ip netbind postrouting { type nat hook postrouting priority 100; }\n\
         add chain ip netbind KUBEVIRT_PREINBOUND\n\
         add chain ip netbind KUBEVIRT_POSTINBOUND\n\
         add rule ip netbind prerouting iifname \"eth0\" counter jump KUBEVIRT_PREINBOUND\n\
         add rule ip netbind output tcp dport { 49152, 49153 } ip saddr 127.0.0.1 counter return\n\
         add rule ip netbind output ip daddr { 127.0.0.1 } counter dnat to 10.0.2.2\n\
         add rule ip netbind postrouting ip saddr 10.0.2.2 counter masquerade\n\
         add rule ip netbind postrouting oifname \"k6t-eth0\" counter jump KUBEVIRT_POSTINBOUND\n\
         add rule ip netbind KUBEVIRT_PREINBOUND counter dnat to 10.0.2.2\n\
         add rule ip netbind KUBEVIRT_POSTINBOUND tcp dport { 49152, 49153 } ip saddr 127.0.0.1 counter return\n\
         add rule ip netbind KUBEVIRT_POSTINBOUND ip saddr { 127.0.0.1 } counter snat to 10.0.2.1\n"
    );
}

#[test]
fn ipv6_table_mirrors_ipv4_with_ipv6_addresses() {
    assert_eq!(
        rules(&masq(""), "ip6"),
        vec![
            "prerouting iifname \"eth0\" counter jump KUBEVIRT_PREINBOUND",
            "output tcp dport { 49152, 49153 } ip6 saddr ::1 counter return",
            "output ip6 daddr { ::1 } counter dnat to fd10:0:2::2",
            "postrouting ip6 saddr fd10:0:2::2 counter masquerade",
            "postrouting oifname \"k6t-eth0\" counter jump KUBEVIRT_POSTINBOUND",
            "KUBEVIRT_PREINBOUND counter dnat to fd10:0:2::2",
            "KUBEVIRT_POSTINBOUND tcp dport { 49152, 49153 } ip6 saddr ::1 counter return",
            "KUBEVIRT_POSTINBOUND ip6 saddr { ::1 } counter snat to fd10:0:2::1",
        ]
    );
}

#[test]
fn ports_dnat_only_the_listed_ports_per_protocol() {
    assert_eq!(
        rules(
            &masq(", ports: [{port: 80}, {port: 53, protocol: UDP}]"),
            "ip"
        ),
        vec![
            "prerouting iifname \"eth0\" counter jump KUBEVIRT_PREINBOUND",
            "output tcp dport { 49152, 49153 } ip saddr 127.0.0.1 counter return",
            "output ip daddr { 127.0.0.1 } tcp dport 80 counter dnat to 10.0.2.2",
            "output ip daddr { 127.0.0.1 } udp dport 53 counter dnat to 10.0.2.2",
            "postrouting ip saddr 10.0.2.2 counter masquerade",
            "postrouting oifname \"k6t-eth0\" counter jump KUBEVIRT_POSTINBOUND",
            "KUBEVIRT_PREINBOUND tcp dport { 80 } counter dnat to 10.0.2.2",
            "KUBEVIRT_PREINBOUND udp dport { 53 } counter dnat to 10.0.2.2",
            "KUBEVIRT_POSTINBOUND tcp dport { 49152, 49153 } ip saddr 127.0.0.1 counter return",
            "KUBEVIRT_POSTINBOUND tcp dport 80 ip saddr { 127.0.0.1 } counter snat to 10.0.2.1",
            "KUBEVIRT_POSTINBOUND udp dport 53 ip saddr { 127.0.0.1 } counter snat to 10.0.2.1",
        ]
    );
}

#[test]
fn port_ranges_dnat_the_ranges() {
    let r = rules(
        &masq(", portRanges: [{start: 1000, end: 2000, protocol: TCP}]"),
        "ip",
    );
    assert!(
        r.contains(&"KUBEVIRT_PREINBOUND tcp dport 1000-2000 counter dnat to 10.0.2.2".to_string()),
        "{r:?}"
    );
    assert!(r.contains(&"KUBEVIRT_POSTINBOUND tcp dport 1000-2000 ip saddr { 127.0.0.1 } counter snat to 10.0.2.1".to_string()));
    assert!(r.contains(
        &"output ip daddr { 127.0.0.1 } tcp dport 1000-2000 counter dnat to 10.0.2.2".to_string()
    ));
    assert!(
        !r.iter()
            .any(|l| l == "KUBEVIRT_PREINBOUND counter dnat to 10.0.2.2")
    );
}

#[test]
fn istio_without_ports_excludes_envoy_ports_and_dnats_only_ssh() {
    assert_eq!(
        rules(&istio(masq("")), "ip"),
        vec![
            "prerouting iifname \"eth0\" counter jump KUBEVIRT_PREINBOUND",
            "output tcp dport { 49152, 49153 } ip saddr 127.0.0.1 counter return",
            "output tcp dport { 15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090 } ip saddr { 127.0.0.1, 127.0.0.6 } counter return",
            "output ip daddr { 127.0.0.1, 10.244.0.5 } counter dnat to 10.0.2.2",
            "postrouting ip saddr 10.0.2.2 counter masquerade",
            "postrouting oifname \"k6t-eth0\" counter jump KUBEVIRT_POSTINBOUND",
            "KUBEVIRT_PREINBOUND tcp dport { 22 } counter dnat to 10.0.2.2",
            "KUBEVIRT_POSTINBOUND tcp dport { 49152, 49153 } ip saddr 127.0.0.1 counter return",
            "KUBEVIRT_POSTINBOUND tcp dport { 15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090 } ip saddr { 127.0.0.1, 127.0.0.6 } counter return",
            "KUBEVIRT_POSTINBOUND ip saddr { 127.0.0.1, 127.0.0.6 } counter snat to 10.0.2.1",
        ]
    );
}

#[test]
fn istio_with_ports_dnats_only_ssh_from_outside() {
    let r = rules(&istio(masq(", ports: [{port: 22}, {port: 80}]")), "ip");
    let pre: Vec<&String> = r
        .iter()
        .filter(|l| l.starts_with("KUBEVIRT_PREINBOUND"))
        .collect();
    assert_eq!(
        pre,
        vec!["KUBEVIRT_PREINBOUND tcp dport { 22 } counter dnat to 10.0.2.2"]
    );
    assert!(
        r.contains(
            &"output ip daddr { 127.0.0.1, 10.244.0.5 } tcp dport 80 counter dnat to 10.0.2.2"
                .to_string()
        )
    );
    assert!(r.contains(&"KUBEVIRT_POSTINBOUND tcp dport 80 ip saddr { 127.0.0.1, 127.0.0.6 } counter snat to 10.0.2.1".to_string()));
}

#[test]
fn json_rendering_carries_the_same_rules() {
    let p = plan(&masq(""));
    let json = p.interfaces[0].nftables.as_ref().unwrap().to_json();
    let cmds = json["nftables"].as_array().unwrap();
    // 2 tables, 12 chains, 16 rules.
    assert_eq!(cmds.len(), 2 + 12 + 16);
    assert_eq!(
        cmds[0],
        serde_json::json!({"add": {"table": {"family": "ip", "name": "netbind"}}})
    );
    let masquerade = cmds
        .iter()
        .find(|c| c["add"]["rule"]["chain"] == "postrouting" && c["add"]["rule"]["family"] == "ip")
        .unwrap();
    assert_eq!(
        masquerade["add"]["rule"]["expr"],
        serde_json::json!([
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.0.2.2"}},
            {"counter": {"packets": 0, "bytes": 0}},
            {"masquerade": null}
        ])
    );
}

#[test]
fn vm_network_cidr_moves_gateway_and_guest() {
    let y = vmi(
        "[{name: default, masquerade: {}}]",
        "[{name: default, pod: {vmNetworkCIDR: 192.168.7.0/24}}]",
    );
    let p = plan(&y);
    let i = &p.interfaces[0];
    assert_eq!(
        i.links[1],
        LinkStep::AddAddress {
            link: "k6t-eth0".into(),
            address: "192.168.7.1/24".parse().unwrap()
        }
    );
    let d = i.dhcp4.as_ref().unwrap();
    assert_eq!(d.address.to_string(), "192.168.7.2/24");
    assert_eq!(d.server_address.to_string(), "192.168.7.1");
}

#[test]
fn dhcp4_hands_out_the_second_host_with_pod_dns() {
    let p = plan(&masq(""));
    let d = p.interfaces[0].dhcp4.as_ref().unwrap();
    assert_eq!(d.interface, "k6t-eth0");
    assert_eq!(d.server_address.to_string(), "10.0.2.1");
    assert_eq!(d.address.to_string(), "10.0.2.2/24");
    assert_eq!(d.router.unwrap().to_string(), "10.0.2.1");
    assert_eq!(d.dns, vec![std::net::Ipv4Addr::new(10, 96, 0, 10)]);
    assert_eq!(
        d.search,
        vec![
            "ns1.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local"
        ]
    );
    assert_eq!(d.domain_name.as_deref(), Some("ns1.svc.cluster.local"));
    assert_eq!(d.hostname, "vm1");
    assert_eq!(d.mtu, 1500);
    assert_eq!(d.lease_seconds, 999 * 86400);
    assert_eq!(d.client_mac, p.interfaces[0].guest.mac.clone().unwrap());
    assert!(d.classless_routes.is_empty());
}

#[test]
fn ipv6_gets_dhcpv6_and_router_advertisements() {
    let p = plan(&masq(""));
    let i = &p.interfaces[0];
    assert_eq!(i.dhcp6.as_ref().unwrap().address.to_string(), "fd10:0:2::2");
    let ra = i.ra.as_ref().unwrap();
    assert_eq!(ra.interface, "k6t-eth0");
    assert_eq!(ra.prefix.to_string(), "fd10:0:2::/120");
    assert_eq!(
        (ra.managed, ra.other_config, ra.autonomous),
        (true, true, false)
    );
    assert_eq!(ra.mtu, 1500);
    assert!(ra.rdnss.is_empty());
}

#[test]
fn ipv4_only_pod_gets_no_ipv6_table_dhcpv6_or_ra() {
    let p = support::plan_with(&masq(""), |obj| {
        let mut v = netbind_plan::PodView::typical(obj);
        v.links[0].addresses.retain(|a| a.addr().is_ipv4());
        v
    })
    .unwrap();
    let i = &p.interfaces[0];
    assert_eq!(i.nftables.as_ref().unwrap().tables.len(), 1);
    assert!(i.dhcp6.is_none() && i.ra.is_none());
    assert!(!i.sysctls.iter().any(|s| s.key.starts_with("net.ipv6")));
}

#[test]
fn masquerade_guest_mac_is_derived_and_stable() {
    let a = plan(&masq("")).interfaces[0].guest.mac.clone().unwrap();
    let b = plan(&masq("")).interfaces[0].guest.mac.clone().unwrap();
    assert_eq!(a, b);
    assert!(a.starts_with("02:"));
    assert_ne!(a, "02:00:00:00:00:00");
}
