//! Bridge binding (and managedTap): links, DHCP, guest MAC, as planned for a typical pod.

mod support;

use netbind_plan::{ClasslessRoute, LinkStep, Sysctl};
use support::{plan, vmi};

const POD: &str = "[{name: default, pod: {}}]";

#[test]
fn pod_link_is_renamed_bridged_and_replaced_by_a_dummy() {
    let p = plan(&vmi("[{name: default, bridge: {}}]", POD));
    let i = &p.interfaces[0];
    let bridge_mac = match &i.links[0] {
        LinkStep::CreateBridge { mac: Some(m), .. } => m.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        i.links,
        vec![
            LinkStep::CreateBridge {
                name: "k6t-eth0".into(),
                mac: Some(bridge_mac.clone()),
                mtu: 1500
            },
            LinkStep::AddAddress {
                link: "k6t-eth0".into(),
                address: "169.254.75.10/32".parse().unwrap()
            },
            LinkStep::SetUp {
                link: "k6t-eth0".into()
            },
            LinkStep::SetDown {
                link: "eth0".into()
            },
            LinkStep::RenameLink {
                from: "eth0".into(),
                to: "eth0-nic".into()
            },
            LinkStep::SetMac {
                link: "eth0-nic".into(),
                mac: bridge_mac.clone()
            },
            LinkStep::FlushAddresses {
                link: "eth0-nic".into()
            },
            LinkStep::SetMaster {
                link: "eth0-nic".into(),
                master: "k6t-eth0".into()
            },
            LinkStep::SetLearning {
                link: "eth0-nic".into(),
                learning: false
            },
            LinkStep::SetUp {
                link: "eth0-nic".into()
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
            LinkStep::CreateDummy {
                name: "eth0".into(),
                mac: Some("0a:58:0a:f4:00:05".into()),
                mtu: 1500,
                addresses: vec![
                    "10.244.0.5/24".parse().unwrap(),
                    "fd00:10:244::5/64".parse().unwrap()
                ],
            },
        ]
    );
    assert!(bridge_mac.starts_with("02:"));
    assert_eq!(
        i.sysctls,
        vec![
            Sysctl::new("net.ipv4.conf.all.arp_ignore", "1"),
            // Bridged frames stay out of the pod's netfilter (a mesh's capture rules).
            Sysctl::new("net.bridge.bridge-nf-call-iptables", "0"),
            Sysctl::new("net.bridge.bridge-nf-call-ip6tables", "0"),
            Sysctl::new("net.bridge.bridge-nf-call-arptables", "0"),
        ]
    );
}

#[test]
fn guest_gets_the_pod_mac_and_the_pod_address_by_dhcp() {
    let p = plan(&vmi("[{name: default, bridge: {}}]", POD));
    let i = &p.interfaces[0];
    assert_eq!(i.guest.mac.as_deref(), Some("0a:58:0a:f4:00:05"));
    let d = i.dhcp4.as_ref().unwrap();
    assert_eq!(d.interface, "k6t-eth0");
    assert_eq!(d.server_address.to_string(), "169.254.75.10");
    assert_eq!(d.client_mac, "0a:58:0a:f4:00:05");
    assert_eq!(d.address.to_string(), "10.244.0.5/24");
    assert_eq!(d.router.unwrap().to_string(), "10.244.0.1");
    assert_eq!(
        d.classless_routes,
        vec![ClasslessRoute {
            destination: "0.0.0.0/0".parse().unwrap(),
            gateway: "10.244.0.1".parse().unwrap()
        }]
    );
    assert_eq!(d.mtu, 1500);
    assert!(i.dhcp6.is_none() && i.ra.is_none() && i.nftables.is_none());
}

#[test]
fn extra_pod_routes_become_classless_routes_before_the_default() {
    let p = support::plan_with(&vmi("[{name: default, bridge: {}}]", POD), |obj| {
        let mut v = netbind_plan::PodView::typical(obj);
        v.routes.push(netbind_plan::podview::PodRoute {
            destination: "10.96.0.0/12".parse().unwrap(),
            gateway: Some("10.244.0.254".parse().unwrap()),
            dev: "eth0".into(),
        });
        v
    })
    .unwrap();
    let routes: Vec<String> = p.interfaces[0]
        .dhcp4
        .as_ref()
        .unwrap()
        .classless_routes
        .iter()
        .map(|r| format!("{} via {}", r.destination, r.gateway))
        .collect();
    assert_eq!(
        routes,
        vec!["10.96.0.0/12 via 10.244.0.254", "0.0.0.0/0 via 10.244.0.1"]
    );
}

#[test]
fn fake_server_address_follows_the_interface_position() {
    let p = plan(&vmi(
        "[{name: default, masquerade: {}}, {name: blue, bridge: {}}]",
        "[{name: default, pod: {}}, {name: blue, multus: {networkName: blue}}]",
    ));
    // The typical secondary link has no address: plain L2, no fake address, no DHCP.
    let blue = &p.interfaces[1];
    assert!(blue.dhcp4.is_none());
    assert_eq!(
        blue.notes,
        vec!["no IPv4 address on pod16477688c0e: plain L2, no DHCP"]
    );
    let with_ip = support::plan_with(
        &vmi(
            "[{name: default, masquerade: {}}, {name: blue, bridge: {}}]",
            "[{name: default, pod: {}}, {name: blue, multus: {networkName: blue}}]",
        ),
        |obj| {
            let mut v = netbind_plan::PodView::typical(obj);
            v.links[1]
                .addresses
                .push("192.168.10.5/24".parse().unwrap());
            v
        },
    )
    .unwrap();
    let d = with_ip.interfaces[1].dhcp4.as_ref().unwrap();
    assert_eq!(d.server_address.to_string(), "169.254.75.11");
    assert_eq!(d.interface, "k6t-16477688c0e");
    assert_eq!(d.router, None);
}

#[test]
fn secondary_network_names_follow_the_hashed_pod_link() {
    let p = plan(&vmi(
        "[{name: blue, bridge: {}}]",
        "[{name: blue, multus: {networkName: blue}}]",
    ));
    let names: Vec<String> = p.interfaces[0]
        .links
        .iter()
        .filter_map(|s| match s {
            LinkStep::CreateBridge { name, .. }
            | LinkStep::CreateTap { name, .. }
            | LinkStep::CreateDummy { name, .. } => Some(name.clone()),
            LinkStep::RenameLink { to, .. } => Some(to.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        vec![
            "k6t-16477688c0e",
            "16477688c0e-nic",
            "tap16477688c0e",
            "pod16477688c0e"
        ]
    );
}

#[test]
fn legacy_ordinal_pod_links_are_used_when_the_pod_has_them() {
    let y = vmi(
        "[{name: blue, bridge: {}}]",
        "[{name: blue, multus: {networkName: blue}}]",
    );
    let p = support::plan_with(&y, |obj| {
        let mut v = netbind_plan::PodView::typical(obj);
        v.links[1].name = "net1".into();
        v
    })
    .unwrap();
    let i = &p.interfaces[0];
    assert_eq!(i.pod_link.name, "net1");
    assert!(matches!(&i.links[0], LinkStep::CreateBridge { name, .. } if name == "k6t-net1"));
    assert!(i.links.contains(&LinkStep::CreateTap {
        name: "tap1".into(),
        mtu: 1500,
        queues: 1,
        uid: 107,
        gid: 107
    }));
    assert!(i.links.contains(&LinkStep::RenameLink {
        from: "net1".into(),
        to: "net1-nic".into()
    }));
}

#[test]
fn multus_default_network_uses_eth0() {
    let p = plan(&vmi(
        "[{name: def, bridge: {}}]",
        "[{name: def, multus: {networkName: br, default: true}}]",
    ));
    assert_eq!(p.interfaces[0].pod_link.name, "eth0");
    assert_eq!(
        p.interfaces[0].guest.backend,
        netbind_plan::GuestBackend::Tap {
            device: "tap0".into()
        }
    );
}

#[test]
fn mtu_of_the_pod_link_is_carried_everywhere() {
    let p = support::plan_with(&vmi("[{name: default, bridge: {}}]", POD), |obj| {
        let mut v = netbind_plan::PodView::typical(obj);
        v.links[0].mtu = 1450;
        v
    })
    .unwrap();
    let i = &p.interfaces[0];
    assert!(i.links.contains(&LinkStep::CreateTap {
        name: "tap0".into(),
        mtu: 1450,
        queues: 1,
        uid: 107,
        gid: 107
    }));
    assert_eq!(i.dhcp4.as_ref().unwrap().mtu, 1450);
    assert_eq!(i.guest.mtu, Some(1450));
    assert!(i.guest.qemu_args[3].contains(",host_mtu=1450"));
}

#[test]
fn dhcp_options_from_the_spec_are_handed_out() {
    let p = plan(&vmi(
        "[{name: default, bridge: {}, dhcpOptions: {bootFileName: pxelinux.0, tftpServerName: tftp.example, ntpServers: [10.0.0.1], privateOptions: [{option: 240, value: extra}]}}]",
        POD,
    ));
    let d = p.interfaces[0].dhcp4.as_ref().unwrap();
    assert_eq!(d.boot_file.as_deref(), Some("pxelinux.0"));
    assert_eq!(d.tftp_server.as_deref(), Some("tftp.example"));
    assert_eq!(d.ntp, vec![std::net::Ipv4Addr::new(10, 0, 0, 1)]);
    assert_eq!(
        d.private_options,
        vec![netbind_plan::PrivateOption {
            code: 240,
            value: "extra".into()
        }]
    );
}

#[test]
fn subdomain_puts_its_domain_first_in_the_search_list() {
    let y = vmi("[{name: default, bridge: {}}]", POD)
        .replace("spec:\n", "spec:\n  subdomain: sub\n  hostname: host1\n");
    let p = plan(&y);
    let d = p.interfaces[0].dhcp4.as_ref().unwrap();
    assert_eq!(d.search[0], "sub.ns1.svc.cluster.local");
    assert_eq!(d.domain_name.as_deref(), Some("sub.ns1.svc.cluster.local"));
    assert_eq!(d.hostname, "host1");
}

#[test]
fn managed_tap_builds_the_same_links_without_fake_address_or_dhcp() {
    let p = plan(&vmi(
        "[{name: t, binding: {name: mtap}}]",
        "[{name: t, multus: {networkName: t}}]",
    ));
    let i = &p.interfaces[0];
    assert_eq!(i.method, netbind_plan::Method::ManagedTap);
    assert!(
        !i.links
            .iter()
            .any(|s| matches!(s, LinkStep::AddAddress { .. }))
    );
    let nic = format!("{}-nic", &i.pod_link.name[3..]);
    assert!(i.links.contains(&LinkStep::SetLearning {
        link: nic,
        learning: false
    }));
    assert!(i.dhcp4.is_none());
}
