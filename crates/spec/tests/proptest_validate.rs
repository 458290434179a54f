//! Property tests: validation of arbitrary objects of the right shape never panics, is
//! deterministic, reports only rules listed in `RULES`, and paths that start at the
//! object's root in KubeVirt notation.
//!
//! The strategies mix plausible values (valid names, MACs, ports) with hostile ones
//! (empty and non-ASCII strings, out-of-range numbers, every binding combination), so
//! that both the "valid" paths and every rejection are exercised.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netbind_spec::model::{
    Devices, DhcpOptions, DhcpPrivateOption, Domain, Empty, Interface, Kind, MultusNetwork,
    Network, PluginBinding, PodNetwork, Port, PortRange, Unknown, VmObject, VmiSpec,
};
use netbind_spec::validate::RULES;
use netbind_spec::{ClusterConfig, defaults, validate};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("default".to_string()),
        Just("a".to_string()),
        Just("b".to_string()),
        "[a-z0-9-]{1,10}",
        "[A-Za-z0-9_.\\-/ü: ]{0,16}",
        any::<String>(),
    ]
}

fn opt_text(values: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        proptest::sample::select(values).prop_map(|s| Some(s.to_string())),
        text().prop_map(Some),
    ]
}

fn unknown() -> impl Strategy<Value = Unknown> {
    proptest::collection::btree_map("[a-zA-Z.\\[\\]]{0,6}", Just(serde_json::Value::Null), 0..2)
}

fn empty() -> impl Strategy<Value = Option<Empty>> {
    prop_oneof![3 => Just(None), 1 => unknown().prop_map(|unknown| Some(Empty { unknown }))]
}

fn number() -> impl Strategy<Value = i64> {
    prop_oneof![
        -2i64..70000,
        Just(0),
        Just(65535),
        Just(65536),
        any::<i64>()
    ]
}

fn network() -> impl Strategy<Value = Network> {
    let pod = (
        opt_text(&[
            "10.0.2.0/24",
            "10.1.0.0/31",
            "fd10:0:2::/120",
            "fd00::/127",
            "x/1",
        ]),
        opt_text(&["fd10:0:2::/120", "fd00::/127", "10.0.0.0/8"]),
        unknown(),
    )
        .prop_map(|(v4, v6, unknown)| PodNetwork {
            vm_network_cidr: v4,
            vm_ipv6_network_cidr: v6,
            unknown,
        });
    let multus = (text(), any::<bool>(), unknown()).prop_map(|(network_name, default, unknown)| {
        MultusNetwork {
            network_name,
            default,
            unknown,
        }
    });
    (
        text(),
        proptest::option::of(pod),
        proptest::option::of(multus),
        unknown(),
    )
        .prop_map(|(name, pod, multus, unknown)| Network {
            name,
            pod,
            multus,
            unknown,
        })
}

fn port() -> impl Strategy<Value = Port> {
    (
        opt_text(&["http", "HTTP", "a--b"]),
        opt_text(&["TCP", "UDP", "SCTP"]),
        number(),
        unknown(),
    )
        .prop_map(|(name, protocol, port, unknown)| Port {
            name,
            protocol,
            port,
            unknown,
        })
}

fn port_range() -> impl Strategy<Value = PortRange> {
    (opt_text(&["TCP", "UDP"]), number(), number(), unknown()).prop_map(
        |(protocol, start, end, unknown)| PortRange {
            protocol,
            start,
            end,
            unknown,
        },
    )
}

fn dhcp() -> impl Strategy<Value = DhcpOptions> {
    let private = (
        prop_oneof![200i64..260, any::<i64>()],
        "[a-z]{0,300}",
        unknown(),
    )
        .prop_map(|(option, value, unknown)| DhcpPrivateOption {
            option,
            value,
            unknown,
        });
    (
        opt_text(&["pxelinux.0"]),
        opt_text(&["tftp.example"]),
        proptest::collection::vec(prop_oneof![Just("192.0.2.1".to_string()), text()], 0..3),
        proptest::collection::vec(private, 0..4),
        unknown(),
    )
        .prop_map(
            |(boot_file_name, tftp_server_name, ntp_servers, private_options, unknown)| {
                DhcpOptions {
                    boot_file_name,
                    tftp_server_name,
                    ntp_servers,
                    private_options,
                    unknown,
                }
            },
        )
}

fn interface() -> impl Strategy<Value = Interface> {
    let bindings = (
        empty(),
        empty(),
        empty(),
        empty(),
        empty(),
        empty(),
        empty(),
    );
    let plugin = proptest::option::of((opt_text(&["slirp", "passt"]), unknown()).prop_map(
        |(name, unknown)| PluginBinding {
            name: name.unwrap_or_default(),
            unknown,
        },
    ));
    let device = (
        opt_text(&["virtio", "e1000", "rtl8139"]),
        opt_text(&[
            "02:aa:bb:cc:dd:ee",
            "02:00:00:00:00:00",
            "01:00:5e:00:00:01",
            "02-AA-BB-CC-DD-EE",
            "0000.0000.0000",
        ]),
        proptest::option::of(number()),
        opt_text(&["0000:81:00.1", "0000:00:20.0"]),
        proptest::option::of(number()),
        opt_text(&["up", "down", "absent"]),
        opt_text(&["tag"]),
    );
    let lists = (
        proptest::collection::vec(port(), 0..4),
        proptest::collection::vec(port_range(), 0..12),
        proptest::option::of(dhcp()),
        unknown(),
    );
    (text(), bindings, plugin, device, lists).prop_map(
        |(
            name,
            (bridge, masquerade, sriov, passt_binding, slirp, macvtap, passt),
            binding,
            device,
            lists,
        )| {
            let (model, mac_address, boot_order, pci_address, acpi_index, state, tag) = device;
            let (ports, port_ranges, dhcp_options, unknown) = lists;
            Interface {
                name,
                bridge,
                masquerade,
                sriov,
                passt_binding,
                binding,
                slirp,
                macvtap,
                passt,
                model,
                mac_address,
                ports,
                port_ranges,
                boot_order,
                pci_address,
                dhcp_options,
                tag,
                acpi_index,
                state,
                unknown,
            }
        },
    )
}

fn vm_object() -> impl Strategy<Value = VmObject> {
    (
        prop_oneof![
            Just(Kind::VirtualMachine),
            Just(Kind::VirtualMachineInstance)
        ],
        proptest::option::of(proptest::collection::vec(interface(), 0..5)),
        proptest::option::of(proptest::collection::vec(network(), 0..5)),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        opt_text(&["vm-1", "Bad_Host"]),
        opt_text(&["a.b", "a..b"]),
    )
        .prop_map(
            |(kind, interfaces, networks, autoattach, multiqueue, hostname, subdomain)| VmObject {
                kind,
                name: "p".into(),
                namespace: "default".into(),
                annotations: BTreeMap::new(),
                spec: VmiSpec {
                    domain: Domain {
                        devices: Devices {
                            interfaces,
                            autoattach_pod_interface: autoattach,
                            network_interface_multiqueue: multiqueue,
                        },
                        ..Domain::default()
                    },
                    networks,
                    hostname,
                    subdomain,
                },
            },
        )
}

fn cluster() -> impl Strategy<Value = ClusterConfig> {
    (
        proptest::sample::select(&["bridge", "masquerade", "passtBinding", "slirp", ""][..]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(default_iface, permit, passt_gate, ranges_gate, slirp_plugin)| {
                let mut c = ClusterConfig::default();
                c.network.default_network_interface = default_iface.to_string();
                c.network.permit_bridge_interface_on_pod_network = permit;
                c.feature_gates.clear();
                if passt_gate {
                    c.feature_gates.push("PasstBinding".into());
                }
                if ranges_gate {
                    c.feature_gates.push("PortRangesSpec".into());
                }
                if slirp_plugin {
                    c.network.binding.insert("slirp".into(), Default::default());
                }
                c
            },
        )
}

fn pod_addresses() -> impl Strategy<Value = Option<Vec<IpNet>>> {
    let v4 = (any::<u32>(), 0u8..=32)
        .prop_map(|(a, p)| IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), p).ok());
    let v6 = (any::<u128>(), 0u8..=128)
        .prop_map(|(a, p)| IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), p).ok());
    let near = (0u8..=255, 8u8..=32)
        .prop_map(|(host, p)| IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 0, 2, host)), p).ok());
    proptest::option::of(
        proptest::collection::vec(prop_oneof![v4, v6, near], 0..3)
            .prop_map(|v| v.into_iter().flatten().collect()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn validate_never_panics_and_is_deterministic(obj in vm_object(), cluster in cluster(), pod in pod_addresses()) {
        let defaulted = defaults::apply(&obj, &cluster);
        let first = validate(&defaulted, &cluster, pod.as_deref());
        let second = validate(&defaulted, &cluster, pod.as_deref());
        prop_assert_eq!(&first, &second);
        // Undefaulted input must not panic either.
        let _ = validate(&obj, &cluster, pod.as_deref());
    }

    #[test]
    fn violations_use_known_rules_and_rooted_paths(obj in vm_object(), cluster in cluster()) {
        let report = validate(&defaults::apply(&obj, &cluster), &cluster, None);
        let prefix = obj.kind.spec_prefix();
        for v in &report.violations {
            prop_assert!(RULES.iter().any(|(id, _)| *id == v.rule), "unlisted rule {}", v.rule);
            prop_assert!(v.path.starts_with(prefix), "path {} does not start with {}", v.path, prefix);
            prop_assert!(!v.message.is_empty());
        }
        for w in &report.warnings {
            prop_assert!(w.path.starts_with(prefix));
        }
    }
}
