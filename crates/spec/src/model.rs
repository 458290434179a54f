//! The network part of KubeVirt's `VirtualMachineInstance` spec, as typed data.
//!
//! Field names follow KubeVirt's JSON (camelCase). Only what netbind needs is typed;
//! everything else in a manifest (disks, volumes, memory…) is skipped when reading.
//! Inside networks and interfaces, keys netbind does not know are kept in `unknown`
//! so that validation can warn about them with their field path.
//!
//! Numbers that KubeVirt bounds (ports, boot order, ACPI index, DHCP option codes) are
//! read as `i64` so that an out-of-range value becomes a validation violation with a
//! field path, not a parse error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Keys found in a mapping that netbind does not know, with their values.
pub type Unknown = BTreeMap<String, serde_json::Value>;

/// `spec.networks[]`: where an interface's pod-side link comes from (its source).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodNetwork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multus: Option<MultusNetwork>,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

/// `spec.networks[].pod`: the cluster network, the pod's `eth0`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodNetwork {
    /// IPv4 network of the VM behind masquerade (default 10.0.2.0/24).
    #[serde(
        default,
        rename = "vmNetworkCIDR",
        skip_serializing_if = "Option::is_none"
    )]
    pub vm_network_cidr: Option<String>,
    /// IPv6 network of the VM behind masquerade (default fd10:0:2::/120).
    #[serde(
        default,
        rename = "vmIPv6NetworkCIDR",
        skip_serializing_if = "Option::is_none"
    )]
    pub vm_ipv6_network_cidr: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

/// `spec.networks[].multus`: a secondary network (or, with `default`, the primary one).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MultusNetwork {
    /// `[namespace/]name` of a NetworkAttachmentDefinition.
    #[serde(default)]
    pub network_name: String,
    #[serde(default)]
    pub default: bool,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

/// An empty binding object such as `masquerade: {}`. Keys inside it are unknown fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Empty {
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

/// `binding: {name}`: a network binding plugin registered in the cluster configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct PluginBinding {
    #[serde(default)]
    pub name: String,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

/// `spec.domain.devices.interfaces[]`: the guest NIC and how it joins its network (method).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masquerade: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sriov: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passt_binding: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<PluginBinding>,
    /// Discontinued in KubeVirt 1.3; rejected by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slirp: Option<Empty>,
    /// Discontinued in KubeVirt 1.3; rejected by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macvtap: Option<Empty>,
    /// Discontinued in KubeVirt 1.3; rejected by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passt: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_ranges: Vec<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_order: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp_options: Option<DhcpOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acpi_index: Option<i64>,
    /// `up`, `down` or `absent`; empty means `up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

/// `ports[]`: a port forwarded to the guest (masquerade, proxied).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Port {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TCP` or `UDP`; defaulted to `TCP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default)]
    pub port: i64,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

/// `portRanges[]`: an inclusive range of ports forwarded to the guest (masquerade only).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct PortRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default)]
    pub start: i64,
    #[serde(default)]
    pub end: i64,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

/// `dhcpOptions`: extra options the interface's DHCP server hands out.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DhcpOptions {
    /// Option 67.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_file_name: Option<String>,
    /// Option 66.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tftp_server_name: Option<String>,
    /// Option 42, IPv4 addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ntp_servers: Vec<String>,
    /// Options 224–254.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private_options: Vec<DhcpPrivateOption>,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct DhcpPrivateOption {
    #[serde(default)]
    pub option: i64,
    #[serde(default)]
    pub value: String,
    #[serde(flatten, skip_serializing)]
    pub unknown: Unknown,
}

/// The network-relevant part of a VMI spec (`spec` of a VMI, `spec.template.spec` of a VM).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmiSpec {
    #[serde(default)]
    pub domain: Domain,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<Network>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Domain {
    #[serde(default)]
    pub devices: Devices,
    /// Only the topology is read (it sizes `networkInterfaceMultiqueue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Only the CPU request and limit are read, for the same reason, and the memory
    /// request and limit (the guest's memory when `memory.guest` is not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Only `guest` is read: a vhost-user NIC needs the guest's memory shared, and QEMU's
    /// shared memory object is sized by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
}

/// `spec.domain.memory`: the memory the guest sees, a Kubernetes quantity as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Memory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<serde_json::Value>,
}

/// `spec.domain.cpu`: the guest's CPU topology (0 or absent means 1), and whether its
/// vCPUs get dedicated CPUs (which decides whether the user-mode engine may busy-poll).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cpu {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_cpu_placement: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolate_emulator_thread: Option<bool>,
}

/// `spec.domain.resources`: Kubernetes quantities by resource name, as written (a
/// number or a string such as `"1500m"`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Devices {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<Interface>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoattach_pod_interface: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface_multiqueue: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The binding (connection method) an interface names, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BindingKind {
    Bridge,
    Masquerade,
    Sriov,
    PasstBinding,
    /// `binding: {name}`
    Plugin,
    Slirp,
    Macvtap,
    Passt,
}

impl BindingKind {
    /// The field name in KubeVirt notation.
    pub fn field(self) -> &'static str {
        match self {
            BindingKind::Bridge => "bridge",
            BindingKind::Masquerade => "masquerade",
            BindingKind::Sriov => "sriov",
            BindingKind::PasstBinding => "passtBinding",
            BindingKind::Plugin => "binding",
            BindingKind::Slirp => "slirp",
            BindingKind::Macvtap => "macvtap",
            BindingKind::Passt => "passt",
        }
    }

    pub fn is_discontinued(self) -> bool {
        matches!(
            self,
            BindingKind::Slirp | BindingKind::Macvtap | BindingKind::Passt
        )
    }
}

impl Interface {
    /// Every binding field that is set, in declaration order.
    pub fn bindings(&self) -> Vec<BindingKind> {
        let mut out = Vec::new();
        let fields = [
            (self.bridge.is_some(), BindingKind::Bridge),
            (self.masquerade.is_some(), BindingKind::Masquerade),
            (self.sriov.is_some(), BindingKind::Sriov),
            (self.passt_binding.is_some(), BindingKind::PasstBinding),
            (self.binding.is_some(), BindingKind::Plugin),
            (self.slirp.is_some(), BindingKind::Slirp),
            (self.macvtap.is_some(), BindingKind::Macvtap),
            (self.passt.is_some(), BindingKind::Passt),
        ];
        for (set, kind) in fields {
            if set {
                out.push(kind);
            }
        }
        out
    }

    /// The single binding of a valid interface.
    pub fn binding_kind(&self) -> Option<BindingKind> {
        match self.bindings().as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// The requested link state, `up` when unset.
    pub fn state(&self) -> &str {
        match self.state.as_deref() {
            None | Some("") => "up",
            Some(s) => s,
        }
    }
}

impl Network {
    pub fn is_pod(&self) -> bool {
        self.pod.is_some()
    }

    pub fn is_multus_default(&self) -> bool {
        self.multus.as_ref().is_some_and(|m| m.default)
    }
}

/// The kinds of object netbind reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    VirtualMachine,
    VirtualMachineInstance,
}

impl Kind {
    /// Where the VMI spec sits in this kind, as a path prefix ending in a dot.
    pub fn spec_prefix(self) -> &'static str {
        match self {
            Kind::VirtualMachine => "spec.template.spec.",
            Kind::VirtualMachineInstance => "spec.",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VirtualMachine => "VirtualMachine",
            Kind::VirtualMachineInstance => "VirtualMachineInstance",
        }
    }
}

/// One VM or VMI read from a manifest, before defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmObject {
    pub kind: Kind,
    /// `metadata.name` (empty when absent).
    pub name: String,
    /// `metadata.namespace` (`default` when absent).
    pub namespace: String,
    /// Annotations the launcher pod gets: the VMI's own, or a VM's `spec.template.metadata`.
    pub annotations: BTreeMap<String, String>,
    pub spec: VmiSpec,
}

impl VmObject {
    /// `Kind/namespace/name`, how objects are named in messages.
    pub fn display_name(&self) -> String {
        let name = if self.name.is_empty() {
            "<unnamed>"
        } else {
            &self.name
        };
        format!("{}/{}/{}", self.kind.as_str(), self.namespace, name)
    }

    pub fn interfaces(&self) -> &[Interface] {
        self.spec
            .domain
            .devices
            .interfaces
            .as_deref()
            .unwrap_or(&[])
    }

    pub fn networks(&self) -> &[Network] {
        self.spec.networks.as_deref().unwrap_or(&[])
    }
}
