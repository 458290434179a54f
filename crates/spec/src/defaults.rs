//! Defaults, applied as KubeVirt's mutating webhook applies them, before validation.
//!
//! - No networks, no interfaces and `autoattachPodInterface` not false: a network
//!   `default` on the pod network and an interface `default` with the cluster's default
//!   binding (`spec.configuration.network.defaultNetworkInterface`).
//! - A port without protocol gets `TCP`.
//!
//! Paths stay valid: defaults only add list entries where the list was empty, and never
//! reorder, so a violation's index points at what the user wrote.

use crate::cluster::ClusterConfig;
use crate::model::{Empty, Interface, Network, PluginBinding, PodNetwork, VmObject};

pub const DEFAULT_NETWORK: &str = "default";

/// Returns `obj` with KubeVirt's defaults applied.
pub fn apply(obj: &VmObject, cluster: &ClusterConfig) -> VmObject {
    let mut out = obj.clone();
    let devices = &mut out.spec.domain.devices;
    let no_interfaces = devices.interfaces.as_ref().is_none_or(Vec::is_empty);
    let no_networks = out.spec.networks.as_ref().is_none_or(Vec::is_empty);
    if no_interfaces && no_networks && devices.autoattach_pod_interface != Some(false) {
        devices.interfaces = Some(vec![default_interface(cluster)]);
        out.spec.networks = Some(vec![Network {
            name: DEFAULT_NETWORK.into(),
            pod: Some(PodNetwork::default()),
            ..Network::default()
        }]);
    }
    for iface in devices.interfaces.iter_mut().flatten() {
        for port in &mut iface.ports {
            if port.protocol.as_deref().is_none_or(str::is_empty) {
                port.protocol = Some("TCP".into());
            }
        }
    }
    out
}

fn default_interface(cluster: &ClusterConfig) -> Interface {
    let mut iface = Interface {
        name: DEFAULT_NETWORK.into(),
        ..Interface::default()
    };
    match cluster.network.default_network_interface.as_str() {
        "bridge" => iface.bridge = Some(Empty::default()),
        "masquerade" => iface.masquerade = Some(Empty::default()),
        "passtBinding" | "passt" => iface.passt_binding = Some(Empty::default()),
        plugin => {
            iface.binding = Some(PluginBinding {
                name: plugin.into(),
                ..Default::default()
            })
        }
    }
    iface
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Port, VmiSpec};

    fn empty_vmi() -> VmObject {
        VmObject {
            kind: Kind::VirtualMachineInstance,
            name: "v".into(),
            namespace: "default".into(),
            annotations: Default::default(),
            spec: VmiSpec::default(),
        }
    }

    #[test]
    fn empty_spec_gets_default_pod_network_with_cluster_binding() {
        let mut cluster = ClusterConfig::default();
        cluster.network.default_network_interface = "masquerade".into();
        let out = apply(&empty_vmi(), &cluster);
        assert!(out.networks()[0].is_pod());
        assert!(out.interfaces()[0].masquerade.is_some());
    }

    #[test]
    fn autoattach_false_means_no_default_network() {
        let mut vmi = empty_vmi();
        vmi.spec.domain.devices.autoattach_pod_interface = Some(false);
        assert!(apply(&vmi, &ClusterConfig::default()).networks().is_empty());
    }

    #[test]
    fn port_protocol_defaults_to_tcp() {
        let mut vmi = empty_vmi();
        vmi.spec.domain.devices.interfaces = Some(vec![Interface {
            name: "a".into(),
            ports: vec![Port {
                port: 80,
                ..Port::default()
            }],
            ..Default::default()
        }]);
        let out = apply(&vmi, &ClusterConfig::default());
        assert_eq!(
            out.interfaces()[0].ports[0].protocol.as_deref(),
            Some("TCP")
        );
    }
}
