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

#[test]
fn tap_plugin_changes_nothing_and_targets_the_pod_link() {
    let p = plan(&vmi(
        "[{name: m, binding: {name: macvtap}}]",
        "[{name: m, multus: {networkName: macvtapnetwork}}]",
    ));
    let i = &p.interfaces[0];
    assert_eq!(i.method, Method::Tap);
    assert!(i.links.is_empty() && i.dhcp4.is_none());
    assert_eq!(
        i.guest.backend,
        GuestBackend::Tap {
            device: i.pod_link.name.clone()
        }
    );
    assert_eq!(i.guest.mac, i.pod_link.mac);
}
