//! Helpers more than one binding uses, and nothing else: the pod link name of a
//! network, which addresses count as global, the guest's tap on an in-pod bridge (owned
//! by the user QEMU runs as), the DHCP domain name, Istio's Envoy ports and the check of
//! a written port number. A helper lives here once a second binding needs it, so no
//! binding imports another; this module imports no binding.
//!
//! Pod link names, as KubeVirt: `eth0` for the pod network and a Multus default network;
//! `pod<11 hex of sha256(network name)>` for other Multus networks — unless the pod view
//! lacks that link and uses the legacy ordinal names (`net1`, `net2`… for the secondary
//! networks in `spec.networks` order), in which case those are used.

use std::net::IpAddr;

use ipnet::IpNet;
use netbind_spec::model::Network;
use netbind_spec::{VmObject, naming};

use crate::error::PlanError;
use crate::model::LinkStep;
use crate::podview::PodView;

/// The uid and gid QEMU runs as in KubeVirt's launcher (user `qemu`); taps are owned by it.
pub const QEMU_UID: u32 = 107;

/// The guest's tap on an in-pod bridge: created for QEMU's user (with `queues` queues),
/// enslaved, up.
pub fn guest_tap(tap: &str, bridge: &str, mtu: u32, queues: u32) -> [LinkStep; 3] {
    [
        LinkStep::CreateTap {
            name: tap.into(),
            mtu,
            queues,
            uid: QEMU_UID,
            gid: QEMU_UID,
        },
        LinkStep::SetMaster {
            link: tap.into(),
            master: bridge.into(),
        },
        LinkStep::SetUp { link: tap.into() },
    ]
}

pub const ISTIO_ENVOY_PORTS: [u16; 10] = [
    15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090,
];

pub fn port_number(interface: &str, field: &'static str, value: i64) -> Result<u16, PlanError> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| PlanError::OutOfRange {
            interface: interface.into(),
            field,
            value,
        })
}

/// `net` followed by digits only: KubeVirt's legacy ordinal pod link names.
pub fn is_ordinal_name(name: &str) -> bool {
    name.strip_prefix("net")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The pod link an interface on `network` uses (see the module's theory of operation).
pub fn pod_link_name(obj: &VmObject, network: &Network, pod: &PodView, legacy: bool) -> String {
    if network.is_pod() || network.is_multus_default() {
        return naming::PRIMARY_POD_LINK.into();
    }
    let hashed = naming::secondary_pod_link(&network.name);
    if !legacy || pod.link(&hashed).is_some() {
        return hashed;
    }
    let ordinal = obj
        .networks()
        .iter()
        .filter(|n| n.multus.as_ref().is_some_and(|m| !m.default))
        .position(|n| n.name == network.name)
        .map_or(0, |p| p + 1);
    naming::legacy_pod_link(ordinal)
}

/// The longest search domain: DHCP option 15 (KubeVirt: Windows asks for it).
pub fn domain_name(search: &[String]) -> Option<String> {
    search
        .iter()
        .fold(None::<&String>, |best, d| match best {
            Some(b) if b.len() >= d.len() => Some(b),
            _ => Some(d),
        })
        .cloned()
}

/// Whether an address is global unicast in Go's sense (KubeVirt's test): not
/// unspecified, loopback, link-local, multicast or broadcast. Private ranges count.
pub fn is_global_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast())
        }
        IpAddr::V6(a) => {
            let link_local = (a.segments()[0] & 0xffc0) == 0xfe80;
            !(a.is_unspecified() || a.is_loopback() || link_local || a.is_multicast())
        }
    }
}

pub fn first_global_v4(addrs: &[IpNet]) -> Option<ipnet::Ipv4Net> {
    addrs.iter().find_map(|a| match a {
        IpNet::V4(n) if is_global_unicast(IpAddr::V4(n.addr())) => Some(*n),
        _ => None,
    })
}

pub fn first_global_v6(addrs: &[IpNet]) -> Option<ipnet::Ipv6Net> {
    addrs.iter().find_map(|a| match a {
        IpNet::V6(n) if is_global_unicast(IpAddr::V6(n.addr())) => Some(*n),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_name_is_the_longest_search_domain() {
        let s = vec![
            "svc.cluster.local".to_string(),
            "ns.svc.cluster.local".into(),
            "cluster.local".into(),
        ];
        assert_eq!(domain_name(&s).as_deref(), Some("ns.svc.cluster.local"));
    }

    #[test]
    fn ordinal_names_are_net_and_digits() {
        assert!(is_ordinal_name("net1"));
        assert!(is_ordinal_name("net12"));
        assert!(!is_ordinal_name("net"));
        assert!(!is_ordinal_name("netx"));
    }

    #[test]
    fn link_local_and_loopback_are_not_global() {
        assert!(!is_global_unicast("fe80::1".parse().unwrap()));
        assert!(!is_global_unicast("169.254.1.1".parse().unwrap()));
        assert!(is_global_unicast("10.244.0.5".parse().unwrap()));
        assert!(is_global_unicast("fd00::5".parse().unwrap()));
    }
}
