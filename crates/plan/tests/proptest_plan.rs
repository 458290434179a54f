//! For arbitrary spec objects (names, binding combinations, ports, MACs, CIDRs, states,
//! sources) and pod views, planning never panics (errors are fine) and is deterministic.

mod support;

use std::collections::BTreeMap;

use netbind_plan::PodView;
use netbind_spec::model::{
    DhcpOptions, DhcpPrivateOption, Empty, Interface, MultusNetwork, Network, PluginBinding,
    PodNetwork, Port, PortRange, VmiSpec,
};
use netbind_spec::{Kind, VmObject};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("default".to_string()),
        Just("blue".to_string()),
        Just("red".to_string()),
        "[a-z][a-z0-9-]{0,20}",
        ".{0,70}",
    ]
}

fn maybe_str(s: impl Strategy<Value = String>) -> impl Strategy<Value = Option<String>> {
    proptest::option::of(s)
}

fn mac() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}",
        "[0-9a-fA-F]{2}(-[0-9a-fA-F]{2}){5}",
        Just("02:00:00:00:00:00".to_string()),
        ".{0,20}",
    ]
}

fn cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=33)
            .prop_map(|(a, p)| format!("{}.{}.{}.{}/{p}", a[0], a[1], a[2], a[3])),
        (any::<u128>(), 0u8..=129)
            .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv6Addr::from(a))),
        ".{0,20}",
    ]
}

fn port() -> impl Strategy<Value = Port> {
    (
        prop_oneof![Just(80i64), Just(22), -5i64..70000, any::<i64>()],
        maybe_str(prop_oneof![
            Just("TCP".to_string()),
            Just("udp".into()),
            Just("SCTP".into()),
            Just(String::new())
        ]),
    )
        .prop_map(|(port, protocol)| Port {
            name: None,
            protocol,
            port,
            unknown: Default::default(),
        })
}

fn port_range() -> impl Strategy<Value = PortRange> {
    (
        -5i64..70000,
        -5i64..70000,
        maybe_str(prop_oneof![Just("TCP".to_string()), Just("UDP".into())]),
    )
        .prop_map(|(start, end, protocol)| PortRange {
            protocol,
            start,
            end,
            unknown: Default::default(),
        })
}

fn interface() -> impl Strategy<Value = Interface> {
    let bindings = proptest::collection::vec(0u8..10, 0..3);
    let plugin = prop_oneof![
        Just("slirp".to_string()),
        Just("passt".into()),
        Just("macvtap".into()),
        Just("mtap".into()),
        Just("nope".into())
    ];
    let dhcp = proptest::option::of((
        proptest::collection::vec(prop_oneof![Just("10.0.0.1".to_string()), ".{0,10}"], 0..3),
        proptest::collection::vec((any::<i64>(), ".{0,5}"), 0..3),
    ));
    (
        (
            name(),
            bindings,
            plugin,
            maybe_str(mac()),
            proptest::collection::vec(port(), 0..4),
        ),
        (
            proptest::collection::vec(port_range(), 0..3),
            proptest::option::of(any::<i64>()),
            proptest::option::of(prop_oneof![Just(1i64), any::<i64>()]),
            maybe_str(prop_oneof![Just("0000:00:03.0".to_string()), ".{0,14}"]),
            maybe_str(prop_oneof![
                Just("up".to_string()),
                Just("down".into()),
                Just("absent".into()),
                ".{0,5}"
            ]),
            maybe_str(prop_oneof![
                Just("virtio".to_string()),
                Just("e1000".into()),
                ".{0,8}"
            ]),
            dhcp,
        ),
    )
        .prop_map(
            |(
                (name, bindings, plugin, mac, ports),
                (port_ranges, boot, acpi, pci, state, model, dhcp),
            )| {
                let mut i = Interface {
                    name,
                    mac_address: mac,
                    ports,
                    port_ranges,
                    boot_order: boot,
                    acpi_index: acpi,
                    pci_address: pci,
                    state,
                    model,
                    ..Default::default()
                };
                for b in bindings {
                    match b {
                        0 | 1 => i.bridge = Some(Empty::default()),
                        2 | 3 => i.masquerade = Some(Empty::default()),
                        4 => i.sriov = Some(Empty::default()),
                        5 => i.passt_binding = Some(Empty::default()),
                        6 | 7 => {
                            i.binding = Some(PluginBinding {
                                name: plugin.clone(),
                                ..Default::default()
                            })
                        }
                        8 => i.slirp = Some(Empty::default()),
                        _ => i.macvtap = Some(Empty::default()),
                    }
                }
                i.dhcp_options = dhcp.map(|(ntp, private)| DhcpOptions {
                    ntp_servers: ntp,
                    private_options: private
                        .into_iter()
                        .map(|(option, value)| DhcpPrivateOption {
                            option,
                            value,
                            unknown: Default::default(),
                        })
                        .collect(),
                    boot_file_name: Some("pxe".into()),
                    ..Default::default()
                });
                i
            },
        )
}

fn network() -> impl Strategy<Value = Network> {
    (
        name(),
        0u8..5,
        name(),
        proptest::option::of(cidr()),
        proptest::option::of(cidr()),
    )
        .prop_map(|(name, kind, nad, v4, v6)| {
            let pod = Some(PodNetwork {
                vm_network_cidr: v4,
                vm_ipv6_network_cidr: v6,
                unknown: Default::default(),
            });
            let multus = |default| {
                Some(MultusNetwork {
                    network_name: nad.clone(),
                    default,
                    unknown: Default::default(),
                })
            };
            match kind {
                0 => Network {
                    name,
                    pod,
                    ..Default::default()
                },
                1 => Network {
                    name,
                    multus: multus(false),
                    ..Default::default()
                },
                2 => Network {
                    name,
                    multus: multus(true),
                    ..Default::default()
                },
                3 => Network {
                    name,
                    pod,
                    multus: multus(false),
                    ..Default::default()
                },
                _ => Network {
                    name,
                    ..Default::default()
                },
            }
        })
}

fn object() -> impl Strategy<Value = VmObject> {
    (
        proptest::collection::vec(interface(), 0..5),
        proptest::collection::vec(network(), 0..5),
        any::<bool>(),
        maybe_str(name()),
        maybe_str(name()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(interfaces, networks, istio, hostname, subdomain, mq)| {
            let mut spec = VmiSpec {
                networks: Some(networks),
                hostname,
                subdomain,
                ..Default::default()
            };
            spec.domain.devices.interfaces = Some(interfaces);
            spec.domain.devices.network_interface_multiqueue = mq;
            let annotations = if istio {
                BTreeMap::from([("sidecar.istio.io/inject".to_string(), "true".to_string())])
            } else {
                BTreeMap::new()
            };
            VmObject {
                kind: Kind::VirtualMachineInstance,
                name: "vm".into(),
                namespace: "ns".into(),
                annotations,
                spec,
            }
        })
}

/// The typical pod, possibly bent: links dropped or renamed, MTU changed, network-status
/// replaced, device plugin variables added.
fn pod_view(obj: &VmObject, bend: (u8, u32, Option<String>, Option<String>)) -> PodView {
    let mut v = PodView::typical(obj);
    let (what, mtu, status, env) = bend;
    match what {
        0 => {}
        1 => v.links.truncate(1),
        2 => v.links.clear(),
        3 => {
            if let Some(l) = v.links.get_mut(1) {
                l.name = "net1".into();
            }
        }
        _ => v.links.iter_mut().for_each(|l| l.addresses.clear()),
    }
    v.links.iter_mut().for_each(|l| l.mtu = mtu);
    if let Some(s) = status {
        v.network_status = Some(s);
    }
    if let Some(e) = env {
        v.env.insert("PCIDEVICE_X".into(), e);
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn plan_never_panics_and_is_deterministic(
        obj in object(),
        bend in (0u8..5, prop_oneof![Just(1500u32), any::<u32>()], proptest::option::of(prop_oneof![Just("[]".to_string()), ".{0,30}"]), proptest::option::of(prop_oneof![Just("0000:3b:02.4".to_string()), ".{0,30}"])),
    ) {
        let cluster = support::cluster();
        let view = pod_view(&obj, bend);
        let first = netbind_plan::plan(&obj, &cluster, &view);
        let second = netbind_plan::plan(&obj, &cluster, &view);
        match (first, second) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
                prop_assert_eq!(a.to_table(), b.to_table());
                prop_assert_eq!(a.to_table_with_devices(), b.to_table_with_devices());
                prop_assert_eq!(a.to_dot(), b.to_dot());
                let svg = a.to_svg();
                prop_assert_eq!(&svg, &b.to_svg());
                if let Err(e) = roxmltree::Document::parse(&svg) {
                    prop_assert!(false, "the SVG is not well-formed XML: {e}\n{svg}");
                }
                for i in &a.interfaces {
                    if let Some(nft) = &i.nftables {
                        let _ = (nft.to_nft_text(), nft.to_json());
                    }
                }
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "different outcomes: {:?} / {:?}", a.is_ok(), b.is_ok()),
        }
    }
}
