//! Multus: the annotations the launcher pod carries, and the `network-status` it gets back.
//!
//! Controller side (what virt-controller does): from a VM spec, the pod asks Multus for
//! its secondary networks with `k8s.v1.cni.cncf.io/networks` — a JSON list of network
//! selection elements, one per secondary Multus network (`name`, `namespace`, optional
//! `mac`, and `interface` = the hashed pod link name), plus one per binding plugin that
//! names a NetworkAttachmentDefinition (with `cni-args.logicNetworkName`). A Multus
//! default network replaces the cluster network via `v1.multus-cni.io/default-network`.
//! Masquerade interfaces tell Istio which in-pod bridge carries VM traffic.
//! Interfaces with `state: absent` are not asked for.
//!
//! Node side: Multus reports what it attached in `k8s.v1.cni.cncf.io/network-status`;
//! [`parse_network_status`] reads it and [`find_status`] maps a network to its entry
//! (pod link name and, for SR-IOV, the VF's PCI address).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterConfig;
use crate::model::VmObject;
use crate::naming;

pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
pub const DEFAULT_NETWORK_ANNOTATION: &str = "v1.multus-cni.io/default-network";
pub const ISTIO_INJECT_ANNOTATION: &str = "sidecar.istio.io/inject";
/// Istio before 1.25.
pub const ISTIO_KUBEVIRT_INTERFACES_ANNOTATION: &str =
    "traffic.sidecar.istio.io/kubevirtInterfaces";
/// Istio 1.25 and later.
pub const ISTIO_REROUTE_ANNOTATION: &str = "istio.io/reroute-virtual-interfaces";
/// Interfaces whose traffic Istio's rules leave alone (`-I PREROUTING 1 -i X -j RETURN`).
pub const ISTIO_EXCLUDE_INTERFACES_ANNOTATION: &str = "traffic.sidecar.istio.io/excludeInterfaces";

/// One element of the `k8s.v1.cni.cncf.io/networks` list (fields in Multus' order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSelection {
    pub name: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default, rename = "cni-args", skip_serializing_if = "Option::is_none")]
    pub cni_args: Option<BTreeMap<String, String>>,
}

/// Splits `[namespace/]name` of a NetworkAttachmentDefinition; the object's namespace
/// is used when none is given.
pub fn nad_namespaced_name(object_namespace: &str, network_name: &str) -> (String, String) {
    match network_name.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (object_namespace.to_string(), network_name.to_string()),
    }
}

/// The network selection elements for a (defaulted, valid) object.
pub fn network_selections(obj: &VmObject, cluster: &ClusterConfig) -> Vec<NetworkSelection> {
    let mut out = Vec::new();
    for network in obj.networks() {
        let Some(iface) = obj.interfaces().iter().find(|i| i.name == network.name) else {
            continue;
        };
        if iface.state() == "absent" {
            continue;
        }
        if let Some(multus) = network.multus.as_ref().filter(|m| !m.default) {
            let (namespace, name) = nad_namespaced_name(&obj.namespace, &multus.network_name);
            out.push(NetworkSelection {
                name,
                namespace,
                mac: iface.mac_address.clone().filter(|m| !m.is_empty()),
                interface: Some(naming::secondary_pod_link(&network.name)),
                cni_args: None,
            });
        }
        let plugin_nad = iface
            .binding
            .as_ref()
            .and_then(|b| cluster.network.binding.get(&b.name))
            .and_then(|p| p.network_attachment_definition.as_deref())
            .filter(|n| !n.is_empty());
        if let Some(nad) = plugin_nad {
            let (namespace, name) = nad_namespaced_name(&obj.namespace, nad);
            let args = BTreeMap::from([("logicNetworkName".to_string(), network.name.clone())]);
            out.push(NetworkSelection {
                name,
                namespace,
                mac: None,
                interface: None,
                cni_args: Some(args),
            });
        }
    }
    out
}

/// The annotations the launcher pod of `obj` carries for networking.
pub fn annotations(obj: &VmObject, cluster: &ClusterConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let selections = network_selections(obj, cluster);
    if !selections.is_empty() {
        // Serialising plain strings and maps cannot fail.
        let json = serde_json::to_string(&selections).unwrap_or_default();
        out.insert(NETWORKS_ANNOTATION.to_string(), json);
    }
    if let Some(default) = obj
        .networks()
        .iter()
        .find_map(|n| n.multus.as_ref().filter(|m| m.default))
    {
        out.insert(
            DEFAULT_NETWORK_ANNOTATION.to_string(),
            default.network_name.clone(),
        );
    }
    if obj.interfaces().iter().any(|i| i.masquerade.is_some()) {
        let bridge = naming::bridge_name(naming::PRIMARY_POD_LINK);
        out.insert(
            ISTIO_KUBEVIRT_INTERFACES_ANNOTATION.to_string(),
            bridge.clone(),
        );
        out.insert(ISTIO_REROUTE_ANNOTATION.to_string(), bridge);
    }
    // The bridges of bridge-bound interfaces carry the guest's L2 traffic, which a mesh
    // must not redirect (netbind also keeps bridged frames out of the pod's netfilter).
    let mut bridged = Vec::new();
    for iface in obj.interfaces() {
        if iface.bridge.is_none() || iface.state() == "absent" {
            continue;
        }
        let Some(network) = obj.networks().iter().find(|n| n.name == iface.name) else {
            continue;
        };
        let pod_link =
            if network.pod.is_some() || network.multus.as_ref().is_some_and(|m| m.default) {
                naming::PRIMARY_POD_LINK.to_string()
            } else {
                naming::secondary_pod_link(&network.name)
            };
        bridged.push(naming::bridge_name(&pod_link));
    }
    if !bridged.is_empty() {
        out.insert(
            ISTIO_EXCLUDE_INTERFACES_ANNOTATION.to_string(),
            bridged.join(","),
        );
    }
    out
}

/// Whether Istio injects its proxy into the pod (`sidecar.istio.io/inject: "true"`).
pub fn istio_injected(obj: &VmObject) -> bool {
    obj.annotations
        .get(ISTIO_INJECT_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// One entry of `k8s.v1.cni.cncf.io/network-status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// `namespace/name` of the NetworkAttachmentDefinition (or the cluster network's name).
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default)]
    pub default: bool,
    #[serde(
        default,
        rename = "device-info",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_info: Option<DeviceInfo>,
}

/// `device-info` of a network-status entry (the device plugin's answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<PciInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PciInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_address: Option<String>,
}

impl NetworkStatus {
    /// The VF's PCI address, when the device plugin reported one.
    pub fn pci_address(&self) -> Option<&str> {
        self.device_info
            .as_ref()?
            .pci
            .as_ref()?
            .pci_address
            .as_deref()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MultusError {
    #[error("{NETWORK_STATUS_ANNOTATION} is not a JSON list of network statuses: {0}")]
    NetworkStatus(#[source] serde_json::Error),
}

pub fn parse_network_status(text: &str) -> Result<Vec<NetworkStatus>, MultusError> {
    serde_json::from_str(text).map_err(MultusError::NetworkStatus)
}

/// The status entry of a Multus network: the entry whose `interface` is the pod link
/// (hashed or legacy name), else the one whose `name` is the NAD's `namespace/name`.
pub fn find_status<'a>(
    statuses: &'a [NetworkStatus],
    object_namespace: &str,
    network_name: &str,
    pod_link: &str,
) -> Option<&'a NetworkStatus> {
    let (ns, name) = nad_namespaced_name(object_namespace, network_name);
    let qualified = format!("{ns}/{name}");
    statuses
        .iter()
        .find(|s| s.interface.as_deref() == Some(pod_link))
        .or_else(|| statuses.iter().find(|s| s.name == qualified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{Document, parse_documents};

    fn object(yaml: &str) -> VmObject {
        match parse_documents(yaml.as_bytes()).unwrap().remove(0) {
            Document::Vm(v) => crate::defaults::apply(&v, &ClusterConfig::default()),
            other => panic!("{other:?}"),
        }
    }

    const TWO_NETWORKS: &str = "kind: VirtualMachineInstance\nmetadata: {name: v, namespace: ns1}\nspec:\n  domain:\n    devices:\n      interfaces:\n      - {name: default, masquerade: {}}\n      - {name: blue, bridge: {}, macAddress: \"02:00:00:00:00:0a\"}\n  networks:\n  - {name: default, pod: {}}\n  - {name: blue, multus: {networkName: other/blue-nad}}\n";

    #[test]
    fn secondary_network_is_requested_with_hashed_interface_and_mac() {
        let a = annotations(&object(TWO_NETWORKS), &ClusterConfig::default());
        assert_eq!(
            a[NETWORKS_ANNOTATION],
            r#"[{"name":"blue-nad","namespace":"other","mac":"02:00:00:00:00:0a","interface":"pod16477688c0e"}]"#
        );
    }

    #[test]
    fn bridged_interfaces_are_excluded_from_istio_capture() {
        let a = annotations(&object(TWO_NETWORKS), &ClusterConfig::default());
        assert_eq!(a[ISTIO_EXCLUDE_INTERFACES_ANNOTATION], "k6t-16477688c0e");
    }

    #[test]
    fn masquerade_marks_the_bridge_for_istio() {
        let a = annotations(&object(TWO_NETWORKS), &ClusterConfig::default());
        assert_eq!(a[ISTIO_REROUTE_ANNOTATION], "k6t-eth0");
        assert!(!a.contains_key(DEFAULT_NETWORK_ANNOTATION));
    }

    #[test]
    fn multus_default_network_gets_its_own_annotation() {
        let a = annotations(
            &object(
                "kind: VirtualMachineInstance\nspec:\n  domain: {devices: {interfaces: [{name: a, bridge: {}}]}}\n  networks: [{name: a, multus: {networkName: br, default: true}}]\n",
            ),
            &ClusterConfig::default(),
        );
        assert_eq!(a[DEFAULT_NETWORK_ANNOTATION], "br");
        assert!(!a.contains_key(NETWORKS_ANNOTATION));
    }

    #[test]
    fn binding_plugin_with_nad_is_requested_with_logic_network_name() {
        let cluster = ClusterConfig::parse(
            b"network: {binding: {mv: {networkAttachmentDefinition: default/macvtap-nad, domainAttachmentType: tap}}}",
        )
        .unwrap();
        let obj = object(
            "kind: VirtualMachineInstance\nmetadata: {namespace: ns}\nspec:\n  domain: {devices: {interfaces: [{name: m, binding: {name: mv}}]}}\n  networks: [{name: m, pod: {}}]\n",
        );
        assert_eq!(
            annotations(&obj, &cluster)[NETWORKS_ANNOTATION],
            r#"[{"name":"macvtap-nad","namespace":"default","cni-args":{"logicNetworkName":"m"}}]"#
        );
    }

    #[test]
    fn network_status_gives_sriov_pci_address() {
        let statuses = parse_network_status(
            r#"[{"name":"kindnet","interface":"eth0","ips":["10.244.0.5"],"default":true},
                {"name":"ns/sriov","interface":"pod1234","device-info":{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:65:00.2"}}}]"#,
        )
        .unwrap();
        let s = find_status(&statuses, "ns", "sriov", "podffff").unwrap();
        assert_eq!(s.pci_address(), Some("0000:65:00.2"));
    }

    #[test]
    fn malformed_network_status_is_an_error() {
        assert!(parse_network_status("{").is_err());
    }
}
