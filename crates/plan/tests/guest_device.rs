//! The guest device as libvirt XML and QEMU arguments, and the plan as a whole
//! (absent interfaces, notes, errors, table, serialisation).

mod support;

use netbind_plan::{NetworkPlan, PlanError, PodView};
use support::{plan, plan_with, vmi};

const POD: &str = "[{name: default, pod: {}}]";

#[test]
fn tap_device_xml_carries_mac_target_model_mtu_boot_acpi_address_and_link_state() {
    let p = plan(&vmi(
        "[{name: default, bridge: {}, macAddress: \"DE-AD-00-00-BE-AF\", bootOrder: 1, pciAddress: \"0000:00:03.0\", acpiIndex: 5, state: down}]",
        POD,
    ));
    let g = &p.interfaces[0].guest;
    assert_eq!(
        g.libvirt_xml,
        "<interface type='ethernet'>\n\
         \x20 <mac address='de:ad:00:00:be:af'/>\n\
         \x20 <target dev='tap0' managed='no'/>\n\
         \x20 <model type='virtio'/>\n\
         \x20 <mtu size='1500'/>\n\
         \x20 <boot order='1'/>\n\
         \x20 <link state='down'/>\n\
         \x20 <alias name='ua-default'/>\n\
         \x20 <acpi index='5'/>\n\
         \x20 <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>\n\
         </interface>\n"
    );
    assert_eq!(
        g.qemu_args,
        vec![
            "-netdev",
            "tap,id=hostua-default,ifname=tap0,script=no,downscript=no",
            "-device",
            "virtio-net-pci,netdev=hostua-default,id=ua-default,mac=de:ad:00:00:be:af,host_mtu=1500,bootindex=1,acpi-index=5,addr=0x3.0x0",
        ]
    );
    assert!(
        p.interfaces[0]
            .notes
            .iter()
            .any(|n| n.contains("set_link ua-default off"))
    );
}

#[test]
fn non_virtio_model_has_no_host_mtu() {
    let p = plan(&vmi("[{name: default, masquerade: {}, model: e1000}]", POD));
    let g = &p.interfaces[0].guest;
    assert!(g.libvirt_xml.contains("<model type='e1000'/>"));
    assert!(g.qemu_args[3].starts_with("e1000,netdev=hostua-default,id=ua-default,mac="));
    assert!(!g.qemu_args[3].contains("host_mtu"));
}

#[test]
fn sriov_device_is_a_vfio_host_device() {
    let p = plan(&vmi(
        "[{name: vf, sriov: {}, bootOrder: 2}]",
        "[{name: vf, multus: {networkName: sriov/vf-net}}]",
    ));
    let g = &p.interfaces[0].guest;
    assert_eq!(
        g.libvirt_xml,
        "<hostdev mode='subsystem' type='pci' managed='no'>\n\
         \x20 <source>\n\
         \x20   <address domain='0x0000' bus='0x65' slot='0x00' function='0x1'/>\n\
         \x20 </source>\n\
         \x20 <boot order='2'/>\n\
         \x20 <alias name='ua-sriov-vf'/>\n\
         </hostdev>\n"
    );
    assert_eq!(
        g.qemu_args,
        vec![
            "-device",
            "vfio-pci,host=0000:65:00.1,id=ua-sriov-vf,bootindex=2"
        ]
    );
}

#[test]
fn usernet_stream_device_attaches_to_the_engine_socket() {
    let p = plan(
        &vmi(
            "[{name: default, passtBinding: {}, macAddress: \"02:aa:bb:cc:dd:ee\"}]",
            POD,
        )
        .replace(
            "namespace: ns1}",
            "namespace: ns1, annotations: {netbind.io/usernet-attachment: stream}}",
        ),
    );
    let g = &p.interfaces[0].guest;
    assert_eq!(
        g.qemu_args,
        vec![
            "-netdev",
            "stream,id=hostua-default,server=off,addr.type=unix,addr.path=/run/netbind/ns1/vm1/default.sock",
            "-device",
            "virtio-net-pci,netdev=hostua-default,id=ua-default,mac=02:aa:bb:cc:dd:ee,host_mtu=65520",
        ]
    );
    assert_eq!(
        g.libvirt_xml,
        "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n\
         \x20 <qemu:arg value='-netdev'/>\n\
         \x20 <qemu:arg value='stream,id=hostua-default,server=off,addr.type=unix,addr.path=/run/netbind/ns1/vm1/default.sock'/>\n\
         \x20 <qemu:arg value='-device'/>\n\
         \x20 <qemu:arg value='virtio-net-pci,netdev=hostua-default,id=ua-default,mac=02:aa:bb:cc:dd:ee,host_mtu=65520'/>\n\
         </qemu:commandline>\n"
    );
}

#[test]
fn absent_interface_is_left_out_with_a_note() {
    let p = plan(&vmi(
        "[{name: default, masquerade: {}}, {name: blue, bridge: {}, state: absent}]",
        "[{name: default, pod: {}}, {name: blue, multus: {networkName: blue}}]",
    ));
    assert_eq!(p.interfaces.len(), 1);
    assert_eq!(
        p.notes,
        vec![
            "pod view: typical CNI pod assumed (no --pod-view/--netns): eth0 with one IPv4 and one IPv6 address, MTU 1500, cluster DNS",
            "interface blue: state absent, left out of the plan"
        ]
    );
}

#[test]
fn missing_pod_link_names_interface_network_and_link() {
    let err = plan_with(
        &vmi(
            "[{name: blue, bridge: {}}]",
            "[{name: blue, multus: {networkName: blue}}]",
        ),
        |obj| {
            let mut v = PodView::typical(obj);
            v.links.truncate(1);
            v
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface blue (network blue): pod link pod16477688c0e not found in the pod view; check that the pod has that network attached"
    );
}

#[test]
fn unregistered_binding_plugin_is_an_error() {
    let err = plan_with(
        &vmi("[{name: default, binding: {name: nope}}]", POD),
        PodView::typical,
    )
    .unwrap_err();
    assert_eq!(
        err,
        PlanError::UnknownPlugin {
            interface: "default".into(),
            plugin: "nope".into()
        }
    );
}

#[test]
fn discontinued_binding_is_an_error() {
    let err = plan_with(&vmi("[{name: default, slirp: {}}]", POD), PodView::typical).unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface default: binding slirp is discontinued; use passtBinding or a binding plugin"
    );
}

#[test]
fn interface_without_network_is_an_error() {
    let err = plan_with(&vmi("[{name: x, bridge: {}}]", POD), PodView::typical).unwrap_err();
    assert_eq!(
        err,
        PlanError::NoNetwork {
            interface: "x".into()
        }
    );
}

#[test]
fn two_bindings_are_an_error() {
    let err = plan_with(
        &vmi("[{name: default, bridge: {}, masquerade: {}}]", POD),
        PodView::typical,
    )
    .unwrap_err();
    assert_eq!(
        err,
        PlanError::Binding {
            interface: "default".into(),
            found: 2
        }
    );
}

#[test]
fn malformed_mac_is_an_error() {
    let err = plan_with(
        &vmi("[{name: default, bridge: {}, macAddress: \"zz:00\"}]", POD),
        PodView::typical,
    )
    .unwrap_err();
    assert_eq!(
        err,
        PlanError::BadMac {
            interface: "default".into(),
            mac: "zz:00".into()
        }
    );
}

#[test]
fn table_shows_the_guest_device_only_when_asked() {
    let p = plan(&vmi("[{name: default, masquerade: {}}]", POD));
    let g = &p.interfaces[0].guest;
    let qemu = format!("qemu        {}", g.qemu_args.join(" "));
    assert!(!p.to_table().contains("\nqemu "), "{}", p.to_table());
    let t = p.to_table_with_devices();
    assert!(t.lines().any(|l| l == qemu), "{t}");
    let xml: Vec<&str> = t
        .lines()
        .skip_while(|l| !l.starts_with("libvirt"))
        .take(g.libvirt_xml.lines().count())
        .map(|l| &l[12..])
        .collect();
    assert_eq!(xml, g.libvirt_xml.lines().collect::<Vec<_>>(), "{t}");
}

#[test]
fn table_names_every_section_of_an_interface() {
    let t = plan(&vmi("[{name: default, masquerade: {}}]", POD)).to_table();
    let labels: Vec<&str> = t
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        t.lines().next(),
        Some("VirtualMachineInstance/ns1/vm1  (pod view: default)")
    );
    for label in [
        "interface",
        "network",
        "source",
        "method",
        "pod",
        "in-pod",
        "sysctls",
        "addresses",
        "services",
        "nftables",
        "guest",
    ] {
        assert!(labels.contains(&label), "{label} missing in\n{t}");
    }
    assert!(
        t.contains("\nnftables    ip netbind: 8 rules, ip6 netbind: 8 rules\n"),
        "{t}"
    );
    assert!(
        t.contains("\nmethod      masquerade (binding masquerade)\n"),
        "{t}"
    );
}

#[test]
fn plan_round_trips_through_json() {
    let p = plan(&vmi(
        "[{name: default, masquerade: {}}, {name: vf, sriov: {}}, {name: u, binding: {name: passt}}]",
        "[{name: default, pod: {}}, {name: vf, multus: {networkName: vf}}, {name: u, multus: {networkName: u}}]",
    ));
    let json = serde_json::to_string(&p).unwrap();
    let back: NetworkPlan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn same_input_gives_byte_identical_output() {
    let y = vmi(
        "[{name: default, masquerade: {}, ports: [{port: 22}]}, {name: blue, bridge: {}}]",
        "[{name: default, pod: {}}, {name: blue, multus: {networkName: blue}}]",
    );
    let (a, b) = (plan(&y), plan(&y));
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    assert_eq!(a.to_table(), b.to_table());
}

/// A VMI whose domain has `networkInterfaceMultiqueue` and the given extra domain keys.
fn multiqueue_vmi(interfaces: &str, domain: &str) -> String {
    format!(
        "kind: VirtualMachineInstance\nmetadata: {{name: vm1, namespace: ns1}}\nspec:\n  domain: {{devices: {{networkInterfaceMultiqueue: true, interfaces: {interfaces}}}{domain}}}\n  networks: {POD}\n"
    )
}

fn tap_queues(p: &NetworkPlan) -> Vec<u32> {
    p.interfaces[0]
        .links
        .iter()
        .filter_map(|l| match l {
            netbind_plan::model::LinkStep::CreateTap { queues, .. } => Some(*queues),
            _ => None,
        })
        .collect()
}

#[test]
fn multiqueue_gives_one_queue_per_vcpu_on_the_tap_and_the_device() {
    let p = plan(&multiqueue_vmi(
        "[{name: default, masquerade: {}}]",
        ", cpu: {sockets: 2, cores: 2, threads: 1}",
    ));
    assert_eq!(tap_queues(&p), vec![4]);
    let g = &p.interfaces[0].guest;
    assert!(g.qemu_args[1].ends_with(",queues=4"), "{:?}", g.qemu_args);
    assert!(
        g.qemu_args[3].contains(",mq=on,vectors=10"),
        "{:?}",
        g.qemu_args
    );
    assert!(g.libvirt_xml.contains("<driver name='vhost' queues='4'/>"));
}

#[test]
fn without_a_topology_the_cpu_limit_then_request_counts_as_sockets_rounded_up() {
    let limit = plan(&multiqueue_vmi(
        "[{name: default, bridge: {}}]",
        ", resources: {requests: {cpu: 1}, limits: {cpu: \"2500m\"}}",
    ));
    assert_eq!(tap_queues(&limit), vec![3]);
    let request = plan(&multiqueue_vmi(
        "[{name: default, bridge: {}}]",
        ", resources: {requests: {cpu: \"1.5\", memory: 1Gi}}",
    ));
    assert_eq!(tap_queues(&request), vec![2]);
}

#[test]
fn queues_stop_at_the_tap_maximum_of_256() {
    let p = plan(&multiqueue_vmi(
        "[{name: default, masquerade: {}}]",
        ", cpu: {sockets: 16, cores: 16, threads: 2}",
    ));
    assert_eq!(tap_queues(&p), vec![256]);
}

#[test]
fn one_queue_without_multiqueue_or_for_other_models() {
    let plain = plan(
        &vmi("[{name: default, masquerade: {}}]", POD)
            .replace("domain: {devices:", "domain: {cpu: {cores: 4}, devices:"),
    );
    assert_eq!(tap_queues(&plain), vec![1]);
    let e1000 = plan(&multiqueue_vmi(
        "[{name: default, masquerade: {}, model: e1000}]",
        ", cpu: {cores: 4}",
    ));
    assert_eq!(tap_queues(&e1000), vec![1]);
    assert!(!e1000.interfaces[0].guest.qemu_args[1].contains("queues"));
}

#[test]
fn multiqueue_on_the_usernet_socket_keeps_one_queue_and_says_so() {
    let p = plan(&multiqueue_vmi(
        "[{name: default, passtBinding: {}}]",
        ", cpu: {cores: 4}",
    ));
    assert!(!p.interfaces[0].guest.qemu_args[1].contains("queues"));
    assert!(
        p.interfaces[0]
            .notes
            .iter()
            .any(|n| n.contains("networkInterfaceMultiqueue: one queue")),
        "{:?}",
        p.interfaces[0].notes
    );
}
