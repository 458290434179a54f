//! SR-IOV, usernet and tap plugins: where the VF comes from, the engine's settings, the
//! untouched macvtap.

mod support;

use std::collections::BTreeMap;

use netbind_plan::{GuestBackend, Method, PlanError, PodView, PortForward};
use support::{plan, plan_with, vmi};

const SRIOV: &str = "[{name: vf, sriov: {}}]";
const SRIOV_NET: &str = "[{name: vf, multus: {networkName: sriov/vf-net}}]";

#[test]
fn sriov_vf_comes_from_network_status() {
    let p = plan(&vmi(SRIOV, SRIOV_NET));
    let i = &p.interfaces[0];
    assert_eq!(i.method, Method::Sriov);
    assert!(i.links.is_empty());
    assert_eq!(
        i.guest.backend,
        GuestBackend::Hostdev {
            pci_address: "0000:65:00.1".into()
        }
    );
    assert_eq!(
        i.notes,
        vec!["VF 0000:65:00.1 from network-status entry sriov/vf-net"]
    );
}

#[test]
fn sriov_vf_comes_from_the_device_plugin_environment_without_network_status() {
    let p = plan_with(&vmi(SRIOV, SRIOV_NET), |obj| {
        let mut v = PodView::typical(obj);
        v.network_status = None;
        v.env = BTreeMap::from([(
            "PCIDEVICE_INTEL_COM_SRIOV".to_string(),
            "0000:3b:02.4".to_string(),
        )]);
        v
    })
    .unwrap();
    assert_eq!(
        p.interfaces[0].guest.backend,
        GuestBackend::Hostdev {
            pci_address: "0000:3b:02.4".into()
        }
    );
}

#[test]
fn environment_addresses_go_to_sriov_interfaces_in_spec_order() {
    let y = vmi(
        "[{name: a, sriov: {}}, {name: b, sriov: {}}]",
        "[{name: a, multus: {networkName: na}}, {name: b, multus: {networkName: nb}}]",
    );
    let p = plan_with(&y, |obj| {
        let mut v = PodView::typical(obj);
        v.network_status = None;
        v.env = BTreeMap::from([(
            "PCIDEVICE_X".to_string(),
            "0000:3b:02.4,0000:3b:02.5".to_string(),
        )]);
        v
    })
    .unwrap();
    let vfs: Vec<&GuestBackend> = p.interfaces.iter().map(|i| &i.guest.backend).collect();
    assert_eq!(
        vfs,
        vec![
            &GuestBackend::Hostdev {
                pci_address: "0000:3b:02.4".into()
            },
            &GuestBackend::Hostdev {
                pci_address: "0000:3b:02.5".into()
            }
        ]
    );
}

#[test]
fn missing_vf_names_the_network_and_where_netbind_looked() {
    let err = plan_with(&vmi(SRIOV, SRIOV_NET), |obj| {
        let mut v = PodView::typical(obj);
        v.network_status = Some("[]".into());
        v
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface vf (network vf): no SR-IOV VF found; looked in network-status (no entry for sriov/vf-net or interface podc70d6cef7d4 with a PCI address) and PCIDEVICE_* environment (0 variables, no free address)"
    );
}

#[test]
fn unreadable_network_status_is_an_error() {
    let err = plan_with(&vmi(SRIOV, SRIOV_NET), |obj| {
        let mut v = PodView::typical(obj);
        v.network_status = Some("{".into());
        v
    })
    .unwrap_err();
    assert!(matches!(err, PlanError::NetworkStatus { .. }), "{err}");
}

#[test]
fn passt_binding_is_served_by_usernet_with_the_pod_addresses() {
    let p = plan(&vmi(
        "[{name: default, passtBinding: {}, ports: [{port: 80}, {port: 5353, protocol: UDP}]}]",
        "[{name: default, pod: {}}]",
    ));
    let i = &p.interfaces[0];
    assert_eq!(i.method, Method::Usernet);
    assert!(i.links.is_empty() && i.nftables.is_none());
    let u = i.usernet.as_ref().unwrap();
    assert_eq!(u.socket, "/run/netbind/ns1/vm1/default.sock");
    assert_eq!(
        u.guest_addresses,
        vec![
            "10.244.0.5/24".parse().unwrap(),
            "fd00:10:244::5/64".parse().unwrap()
        ]
    );
    assert_eq!(u.gateway4.unwrap().to_string(), "10.244.0.1");
    assert_eq!(u.gateway6.unwrap().to_string(), "fd00:10:244::1");
    assert_eq!(u.mtu, 65520);
    assert_eq!(u.tcp, PortForward::Ports { ports: vec![80] });
    assert_eq!(u.udp, PortForward::Ports { ports: vec![5353] });
    assert_eq!(u.guest_mac, i.guest.mac.clone().unwrap());
    assert_eq!(i.guest.mtu, Some(65520));
}

#[test]
fn usernet_without_ports_forwards_everything() {
    let p = plan(&vmi(
        "[{name: default, binding: {name: slirp}}]",
        "[{name: default, pod: {}}]",
    ));
    let u = p.interfaces[0].usernet.as_ref().unwrap();
    assert_eq!(
        (u.tcp.spec(), u.udp.spec()),
        ("all".to_string(), "all".to_string())
    );
}

#[test]
fn usernet_with_istio_excludes_envoy_ports() {
    let y = vmi(
        "[{name: default, passtBinding: {}}]",
        "[{name: default, pod: {}}]",
    )
    .replace(
        "namespace: ns1}",
        "namespace: ns1, annotations: {sidecar.istio.io/inject: \"true\"}}",
    );
    let u = plan(&y).interfaces[0].usernet.clone().unwrap();
    assert_eq!(
        u.tcp.spec(),
        "~15000,~15001,~15004,~15006,~15008,~15009,~15020,~15021,~15053,~15090"
    );
    assert_eq!(u.udp, PortForward::None);
}

/// The passt VM with this `spec.domain.cpu`.
fn passt_vm_with_cpu(cpu: &str) -> String {
    vmi(
        "[{name: default, passtBinding: {}}]",
        "[{name: default, pod: {}}]",
    )
    .replace(
        "domain: {devices:",
        &format!("domain: {{cpu: {cpu}, devices:"),
    )
}

#[test]
fn usernet_busy_polls_by_default() {
    let p = plan(&passt_vm_with_cpu("{cores: 2}"));
    assert_eq!(p.interfaces[0].usernet.as_ref().unwrap().busy_poll_us, 200);
    assert!(!p.interfaces[0].notes.iter().any(|n| n.contains("busy")));
}

#[test]
fn usernet_does_not_busy_poll_on_the_vcpus_dedicated_cpus() {
    let p = plan(&passt_vm_with_cpu(
        "{cores: 2, dedicatedCpuPlacement: true}",
    ));
    let i = &p.interfaces[0];
    assert_eq!(i.usernet.as_ref().unwrap().busy_poll_us, 0);
    assert_eq!(
        i.notes[0],
        "busy polling off: the engine would share the vCPUs' dedicated CPUs (isolateEmulatorThread gives it one of its own)"
    );
}

#[test]
fn usernet_busy_polls_beside_an_isolated_emulator_thread() {
    let p = plan(&passt_vm_with_cpu(
        "{cores: 2, dedicatedCpuPlacement: true, isolateEmulatorThread: true}",
    ));
    assert_eq!(p.interfaces[0].usernet.as_ref().unwrap().busy_poll_us, 200);
}

#[test]
fn tap_plugin_changes_nothing_and_targets_the_pod_link() {
    let p = plan(&vmi(
        "[{name: m, binding: {name: macvtap}}]",
        "[{name: m, multus: {networkName: macvtapnetwork}}]",
    ));
    let i = &p.interfaces[0];
    assert_eq!(i.method, Method::Tap);
    assert!(i.links.is_empty() && i.dhcp4.is_none());
    // The typical pod's link is a macvtap without an ifindex: descriptor 3, path unknown.
    assert_eq!(
        i.guest.backend,
        GuestBackend::Macvtap {
            device: i.pod_link.name.clone(),
            fd: 3,
            path: None,
        }
    );
    assert_eq!(i.guest.mac, i.pod_link.mac);
    assert!(
        i.notes.contains(&format!(
            "QEMU: fd=3 must be /dev/tap<ifindex of {}> opened read-write by the launcher",
            i.pod_link.name
        )),
        "{:?}",
        i.notes
    );
}

/// The typical pod with every secondary link's ifindex set (10, 11… in link order).
fn with_ifindexes(obj: &netbind_spec::VmObject) -> PodView {
    let mut v = PodView::typical(obj);
    for (n, l) in v.links.iter_mut().enumerate() {
        l.ifindex = Some(9 + n as u32);
    }
    v
}

#[test]
fn a_macvtap_is_passed_to_qemu_as_a_descriptor_of_its_tap_device() {
    let p = plan_with(
        &vmi(
            "[{name: m, binding: {name: macvtap}, macAddress: '02:00:00:00:00:0a'}]",
            "[{name: m, multus: {networkName: macvtapnetwork}}]",
        ),
        with_ifindexes,
    )
    .unwrap();
    let i = &p.interfaces[0];
    let link = i.pod_link.name.clone();
    assert_eq!(link, "pod62c66a7a5dd");
    assert_eq!(
        i.guest.backend,
        GuestBackend::Macvtap {
            device: link.clone(),
            fd: 3,
            path: Some("/dev/tap10".into()),
        }
    );
    assert_eq!(
        i.guest.qemu_args,
        vec![
            "-netdev",
            "tap,id=hostua-m,fd=3",
            "-device",
            "virtio-net-pci,netdev=hostua-m,id=ua-m,mac=02:00:00:00:00:0a,host_mtu=1500",
        ]
    );
    // libvirt opens the macvtap itself: the same element as for a tap, as KubeVirt.
    assert_eq!(
        i.guest.libvirt_xml,
        "<interface type='ethernet'>\n\
         \x20 <mac address='02:00:00:00:00:0a'/>\n\
         \x20 <target dev='pod62c66a7a5dd' managed='no'/>\n\
         \x20 <model type='virtio'/>\n\
         \x20 <mtu size='1500'/>\n\
         \x20 <alias name='ua-m'/>\n\
         </interface>\n"
    );
    assert_eq!(
        p.passed_fds(),
        vec![netbind_plan::PassedFd {
            fd: 3,
            path: Some("/dev/tap10".into()),
            link: link.clone(),
        }]
    );
    assert!(
        i.notes
            .contains(&"QEMU: fd=3 must be /dev/tap10 opened read-write by the launcher".into()),
        "{:?}",
        i.notes
    );
    assert!(
        p.to_table()
            .contains(&format!("on macvtap {link} as fd 3 (/dev/tap10)")),
        "{}",
        p.to_table()
    );
}

#[test]
fn macvtaps_get_descriptors_from_3_in_interface_order_and_taps_keep_ifname() {
    let p = plan_with(
        &vmi(
            "[{name: a, binding: {name: macvtap}}, {name: b, bridge: {}}, {name: c, binding: {name: macvtap}}]",
            "[{name: a, multus: {networkName: na}}, {name: b, multus: {networkName: nb}}, {name: c, multus: {networkName: nc}}]",
        ),
        with_ifindexes,
    )
    .unwrap();
    let fds: Vec<(u32, Option<String>)> =
        p.passed_fds().into_iter().map(|f| (f.fd, f.path)).collect();
    assert_eq!(
        fds,
        vec![
            (3, Some("/dev/tap10".into())),
            (4, Some("/dev/tap12".into()))
        ]
    );
    assert_eq!(p.interfaces[0].guest.qemu_args[1], "tap,id=hostua-a,fd=3");
    assert_eq!(
        p.interfaces[1].guest.qemu_args[1],
        format!(
            "tap,id=hostua-b,ifname={},script=no,downscript=no",
            netbind_spec::naming::tap_name(&p.interfaces[1].pod_link.name)
        )
    );
    assert_eq!(p.interfaces[2].guest.qemu_args[1], "tap,id=hostua-c,fd=4");
}

#[test]
fn a_tap_plugin_on_a_real_tap_keeps_ifname() {
    let p = plan_with(
        &vmi(
            "[{name: m, binding: {name: macvtap}}]",
            "[{name: m, multus: {networkName: n}}]",
        ),
        |obj| {
            let mut v = with_ifindexes(obj);
            v.links[1].kind = Some("tap".into());
            v
        },
    )
    .unwrap();
    let i = &p.interfaces[0];
    assert_eq!(
        i.guest.backend,
        GuestBackend::Tap {
            device: i.pod_link.name.clone()
        }
    );
    assert!(p.passed_fds().is_empty());
    assert_eq!(
        i.guest.qemu_args[1],
        format!(
            "tap,id=hostua-m,ifname={},script=no,downscript=no",
            i.pod_link.name
        )
    );
}

#[test]
fn pod_links_without_ifindex_still_deserialise() {
    let v: PodView =
        serde_json::from_str(r#"{"links": [{"name": "pod1", "kind": "macvtap"}]}"#).unwrap();
    assert_eq!(v.links[0].ifindex, None);
    let text = serde_json::to_string(&v).unwrap();
    assert!(!text.contains("ifindex"), "{text}");
}
