//! The plan as data: what netbind will build for one VM, per interface.
//!
//! Everything here is a plain value (`Vec`, `BTreeMap`, no hash maps), so the same input
//! always serialises to the same bytes. The data plane (`netbind up`) interprets
//! [`LinkStep`]s in order, writes [`Sysctl`]s, loads the [`NftRuleset`] in one transaction,
//! starts the services ([`Dhcp4Config`], [`Dhcp6Config`], [`RaConfig`], [`UsernetConfig`])
//! and hands the hypervisor the [`GuestDevice`]. It never decides anything itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::nftables::NftRuleset;

/// What netbind will build for one VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPlan {
    /// `Kind/namespace/name` of the planned object.
    pub object: String,
    /// Where the pod view came from (`default`, `file:…`, `netns:…`).
    pub pod_view: String,
    /// One entry per planned interface, in `spec.domain.devices.interfaces` order
    /// (interfaces with `state: absent` are left out and named in `notes`).
    #[serde(default)]
    pub interfaces: Vec<InterfacePlan>,
    /// The guest's memory as a vhost-user NIC needs it (shared with the engine); once per
    /// VM, present when any interface attaches by vhost-user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_memory: Option<SharedMemory>,
    /// Plan-wide remarks: assumptions made, things left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The guest's RAM as memory another process can map: what a vhost-user back end (the
/// engine, or libvirt's passt) needs to reach the guest's virtqueues.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedMemory {
    /// The guest's memory in MiB (rounded up): `domain.memory.guest`, else
    /// `resources.requests.memory`, else `resources.limits.memory`; `None` when the
    /// manifest gives none (then [`SharedMemory::qemu_args`] is empty and a note says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mib: Option<u64>,
    /// `-object memory-backend-memfd,id=mem,size=<mib>M,share=on -machine
    /// memory-backend=mem`: the backend sizes the guest's RAM, so a launcher's `-m`
    /// must say the same or be left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qemu_args: Vec<String>,
    /// `<memoryBacking>` with a memfd source and shared access, for under `<domain>`
    /// (libvirt sizes it by the domain's `<memory>`).
    pub libvirt_xml: String,
}

/// Everything about one VM interface.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfacePlan {
    /// `spec.domain.devices.interfaces[].name`.
    pub name: String,
    /// `spec.networks[].name` (KubeVirt pairs interface and network by this name).
    pub network: String,
    pub source: Source,
    pub method: Method,
    /// The binding as written: `bridge`, `masquerade`, `sriov`, `passtBinding`, `binding:<name>`.
    pub binding: String,
    /// Requested guest link state.
    pub state: LinkState,
    /// The pod-side link this interface uses, as the pod view shows it before netbind.
    pub pod_link: PodLinkInfo,
    /// Ordered link operations inside the pod's network namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkStep>,
    /// Namespace sysctls to set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<Sysctl>,
    /// NAT rules (masquerade only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables: Option<NftRuleset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp4: Option<Dhcp4Config>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp6: Option<Dhcp6Config>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ra: Option<RaConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usernet: Option<UsernetConfig>,
    pub guest: GuestDevice,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Where the pod-side link comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Source {
    /// The cluster network (`spec.networks[].pod`), the pod's `eth0`.
    Pod,
    /// A Multus network (`spec.networks[].multus`).
    #[serde(rename_all = "camelCase")]
    Multus { network_name: String, default: bool },
}

/// How the guest NIC is joined to the pod-side link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    /// L2: the pod link is enslaved to a bridge with the guest's tap; DHCP hands out the pod IP.
    Bridge,
    /// NAT in the pod: bridge with a gateway address, tap, nftables.
    Masquerade,
    /// PCI passthrough of an SR-IOV VF.
    Sriov,
    /// netbind's user-mode engine (`passtBinding`, sidecar binding plugins such as passt, slirp).
    Usernet,
    /// A plugin with `domainAttachmentType: tap`: its CNI made a tap/macvtap named like the
    /// pod link; the guest uses it as is.
    Tap,
    /// A plugin with `domainAttachmentType: managedTap`: bridge and tap, no DHCP.
    ManagedTap,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Bridge => "bridge",
            Method::Masquerade => "masquerade",
            Method::Sriov => "sriov",
            Method::Usernet => "usernet",
            Method::Tap => "tap",
            Method::ManagedTap => "managedTap",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LinkState {
    Up,
    Down,
}

/// The pod link an interface attaches to, as found in the pod view.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodLinkInfo {
    pub name: String,
    /// Whether the pod view holds this link (false for SR-IOV VFs bound to vfio-pci, which
    /// have no netdev in the pod).
    pub present: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub mtu: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpNet>,
}

/// One link operation inside the pod's namespace. `apply` runs them in order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum LinkStep {
    /// A Linux bridge. `mac: None` leaves the kernel's choice.
    #[serde(rename_all = "camelCase")]
    CreateBridge {
        name: String,
        mac: Option<String>,
        mtu: u32,
    },
    /// A tap device for the hypervisor, owned by `uid`/`gid`. `queues > 1` means
    /// `IFF_MULTI_QUEUE` with that many queues.
    #[serde(rename_all = "camelCase")]
    CreateTap {
        name: String,
        mtu: u32,
        queues: u32,
        uid: u32,
        gid: u32,
    },
    /// A dummy link (kept down) holding the pod link's identity: name, MAC, MTU, addresses.
    #[serde(rename_all = "camelCase")]
    CreateDummy {
        name: String,
        mac: Option<String>,
        mtu: u32,
        addresses: Vec<IpNet>,
    },
    SetDown {
        link: String,
    },
    RenameLink {
        from: String,
        to: String,
    },
    SetMac {
        link: String,
        mac: String,
    },
    SetMtu {
        link: String,
        mtu: u32,
    },
    /// Removes every address of the link, link-local ones included.
    FlushAddresses {
        link: String,
    },
    AddAddress {
        link: String,
        address: IpNet,
    },
    SetMaster {
        link: String,
        master: String,
    },
    /// Bridge port MAC learning.
    SetLearning {
        link: String,
        learning: bool,
    },
    SetUp {
        link: String,
    },
}

/// A namespace sysctl, by its dotted name (`net.ipv4.ip_forward`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub struct Sysctl {
    pub key: String,
    pub value: String,
}

impl std::fmt::Display for LinkStep {
    /// The step in words, as `netbind plan` shows it and errors name it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        let text = match self {
            LinkStep::CreateBridge { name, mac, mtu } => match mac {
                Some(m) => format!("create bridge {name} mac {m} mtu {mtu}"),
                None => format!("create bridge {name} mtu {mtu}"),
            },
            LinkStep::CreateTap {
                name,
                mtu,
                queues,
                uid,
                gid,
            } => {
                format!("create tap {name} mtu {mtu} queues {queues} owner {uid}:{gid}")
            }
            LinkStep::CreateDummy {
                name,
                mac,
                mtu,
                addresses,
            } => {
                let mut s = format!("create dummy {name}");
                if let Some(m) = mac {
                    let _ = write!(s, " mac {m}");
                }
                let _ = write!(s, " mtu {mtu}");
                for a in addresses {
                    let _ = write!(s, " {a}");
                }
                s
            }
            LinkStep::SetDown { link } => format!("set {link} down"),
            LinkStep::RenameLink { from, to } => format!("rename {from} to {to}"),
            LinkStep::SetMac { link, mac } => format!("set {link} mac {mac}"),
            LinkStep::SetMtu { link, mtu } => format!("set {link} mtu {mtu}"),
            LinkStep::FlushAddresses { link } => format!("flush addresses of {link}"),
            LinkStep::AddAddress { link, address } => format!("add {address} to {link}"),
            LinkStep::SetMaster { link, master } => format!("enslave {link} to {master}"),
            LinkStep::SetLearning { link, learning } => {
                format!(
                    "set {link} learning {}",
                    if *learning { "on" } else { "off" }
                )
            }
            LinkStep::SetUp { link } => format!("set {link} up"),
        };
        f.write_str(&text)
    }
}

impl LinkStep {
    /// The link the step works on (the old name for a rename).
    pub fn link(&self) -> &str {
        match self {
            LinkStep::CreateBridge { name, .. }
            | LinkStep::CreateTap { name, .. }
            | LinkStep::CreateDummy { name, .. } => name,
            LinkStep::RenameLink { from, .. } => from,
            LinkStep::SetDown { link }
            | LinkStep::SetMac { link, .. }
            | LinkStep::SetMtu { link, .. }
            | LinkStep::FlushAddresses { link }
            | LinkStep::AddAddress { link, .. }
            | LinkStep::SetMaster { link, .. }
            | LinkStep::SetLearning { link, .. }
            | LinkStep::SetUp { link } => link,
        }
    }
}

impl Sysctl {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Sysctl {
        Sysctl {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Path under `/proc/sys`.
    pub fn proc_path(&self) -> String {
        format!("/proc/sys/{}", self.key.replace('.', "/"))
    }
}

/// A DHCPv4 server for one guest NIC.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dhcp4Config {
    /// Link the server listens on.
    pub interface: String,
    /// Server identifier (option 54) and source address.
    pub server_address: Ipv4Addr,
    /// The only client answered.
    pub client_mac: String,
    /// Address handed out (yiaddr) and its prefix (option 1).
    pub address: Ipv4Net,
    /// Option 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<Ipv4Addr>,
    /// Option 121, default route last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classless_routes: Vec<ClasslessRoute>,
    /// Option 6.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<Ipv4Addr>,
    /// Option 119.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Option 15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// Option 12.
    pub hostname: String,
    /// Option 26.
    pub mtu: u16,
    /// Option 42.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ntp: Vec<Ipv4Addr>,
    /// Option 66.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tftp_server: Option<String>,
    /// Option 67.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_file: Option<String>,
    /// Options 224–254, value sent as its bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private_options: Vec<PrivateOption>,
    /// Option 51. 999 days, as KubeVirt ("infinite" for practical purposes).
    pub lease_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClasslessRoute {
    pub destination: Ipv4Net,
    /// `0.0.0.0` means on-link.
    pub gateway: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PrivateOption {
    pub code: u8,
    pub value: String,
}

/// A DHCPv6 server (stateful, one IA_NA address) for one guest NIC.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dhcp6Config {
    pub interface: String,
    pub client_mac: String,
    pub address: Ipv6Addr,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    pub lease_seconds: u32,
}

/// Router advertisements for one guest NIC (netbind extra: KubeVirt sends none).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RaConfig {
    /// Link the advertisements go out on; sent from its link-local address, which the
    /// guest then uses as its default router.
    pub interface: String,
    /// MAC of that link, sent as the source link-layer address option.
    pub router_mac: String,
    /// The on-link prefix (flag L set).
    pub prefix: Ipv6Net,
    /// Flag A: SLAAC needs a /64; with longer prefixes the address comes from DHCPv6.
    pub autonomous: bool,
    /// Flag M: use DHCPv6 for addresses.
    pub managed: bool,
    /// Flag O: use DHCPv6 for other configuration.
    pub other_config: bool,
    pub router_lifetime_seconds: u16,
    pub mtu: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rdnss: Vec<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dnssl: Vec<String>,
}

/// netbind's user-mode engine for one guest NIC (`netbind usernet`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsernetConfig {
    /// Unix socket the engine listens on and QEMU connects to.
    pub socket: String,
    /// What QEMU speaks on `socket`. A plan written before this field existed meant a
    /// stream socket, so that is what its absence reads as.
    #[serde(default = "stream_attachment")]
    pub attachment: UsernetAttachment,
    pub guest_mac: String,
    /// The pod's own addresses, given to the guest (so to everyone else it *is* the pod).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guest_addresses: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway4: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Traffic from the guest to the gateway address reaches the namespace's loopback.
    pub map_gateway_to_loopback: bool,
    pub mtu: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    pub hostname: String,
    /// Inbound forwarding: what the engine listens on in the namespace.
    pub tcp: PortForward,
    pub udp: PortForward,
    /// The longest the engine looks for events before it sleeps (µs; 0: never polls).
    #[serde(default = "default_busy_poll_us")]
    pub busy_poll_us: u32,
}

/// How long the user-mode engine looks for events before it sleeps, by default (µs).
pub const DEFAULT_BUSY_POLL_US: u32 = 200;

/// How the guest NIC reaches the user-mode engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UsernetAttachment {
    /// vhost-user: the engine reads and writes the NIC's virtqueues in the guest's
    /// shared memory (`-netdev vhost-user`; libvirt `<interface type='vhostuser'>`).
    #[default]
    VhostUser,
    /// QEMU's `-netdev stream`: each frame through the socket, after its length.
    Stream,
}

impl UsernetAttachment {
    /// As written in the plan and in the `netbind.io/usernet-attachment` annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            UsernetAttachment::VhostUser => "vhostUser",
            UsernetAttachment::Stream => "stream",
        }
    }
}

fn stream_attachment() -> UsernetAttachment {
    UsernetAttachment::Stream
}

/// Who starts the guest from the plan's devices, and so who starts the user-mode engine
/// of a vhost-user NIC: QEMU on `qemuArgs` needs the engine `netbind up` runs; libvirt
/// on `libvirtXml` (`<backend type='passt'/>`) starts netbind as its `passt` itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Launcher {
    #[default]
    Qemu,
    Libvirt,
}

impl Launcher {
    pub fn as_str(self) -> &'static str {
        match self {
            Launcher::Qemu => "qemu",
            Launcher::Libvirt => "libvirt",
        }
    }
}

impl InterfacePlan {
    /// Whether `netbind up` runs this interface's user-mode engine when `launcher` starts
    /// the guest: every engine for QEMU; for libvirt only a stream socket's (its
    /// `<qemu:commandline>` connects to the plan's socket), since libvirt runs the
    /// passt of a vhost-user NIC itself.
    pub fn engine_run_by_up(&self, launcher: Launcher) -> bool {
        self.usernet.is_some()
            && !(launcher == Launcher::Libvirt
                && matches!(self.guest.backend, GuestBackend::VhostUser { .. }))
    }
}

fn default_busy_poll_us() -> u32 {
    DEFAULT_BUSY_POLL_US
}

/// Inbound ports for one protocol, in passt's terms.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "mode", rename_all = "camelCase")]
pub enum PortForward {
    /// Nothing is forwarded.
    None,
    /// Every port except `exclude`.
    All { exclude: Vec<u16> },
    /// Only `ports`.
    Ports { ports: Vec<u16> },
}

impl PortForward {
    /// The passt-style spec: `none`, `all`, `~15000,~15001` (all but), `22,80`.
    pub fn spec(&self) -> String {
        match self {
            PortForward::None => "none".into(),
            PortForward::All { exclude } if exclude.is_empty() => "all".into(),
            PortForward::All { exclude } => exclude
                .iter()
                .map(|p| format!("~{p}"))
                .collect::<Vec<_>>()
                .join(","),
            PortForward::Ports { ports } => ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// The guest NIC, as the hypervisor gets it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestDevice {
    /// Device alias: `ua-<name>` (`ua-sriov-<name>` for VFs), as KubeVirt names them.
    pub alias: String,
    /// libvirt model type (`virtio`, `e1000`…); empty for a host device.
    pub model: String,
    /// QEMU device driver (`virtio-net-pci`, `e1000`, `vfio-pci`…).
    pub qemu_driver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Virtqueue pairs; 1 means single queue.
    pub queues: u32,
    /// Guest PCI address `dddd:bb:ss.f`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_order: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acpi_index: Option<u32>,
    pub link_down: bool,
    pub backend: GuestBackend,
    /// The device as a libvirt domain XML fragment.
    pub libvirt_xml: String,
    /// The device as QEMU command-line arguments.
    pub qemu_args: Vec<String>,
}

/// What the guest NIC is attached to on the host side.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum GuestBackend {
    /// A tap (or macvtap) device in the pod, opened by the hypervisor.
    Tap { device: String },
    /// A PCI device (SR-IOV VF) passed through with VFIO.
    #[serde(rename_all = "camelCase")]
    Hostdev { pci_address: String },
    /// A unix stream socket served by the user-mode engine.
    Stream { socket: String },
    /// The user-mode engine as the NIC's vhost-user back end. QEMU's arguments connect
    /// to `socket`, where the engine `netbind up` starts listens; libvirt's XML has
    /// libvirt start netbind as its `passt` on a socket of libvirt's, serving the pod
    /// link `source` and forwarding `port_forwards` (KubeVirt's shape of `passtBinding`).
    #[serde(rename_all = "camelCase")]
    VhostUser {
        socket: String,
        source: String,
        /// The MAC libvirt is told: only a written `macAddress`, as KubeVirt (without
        /// one libvirt picks a MAC, and its passt learns it from the guest's frames).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        libvirt_mac: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        port_forwards: Vec<PasstPortForward>,
    },
    /// A macvtap in the pod (a `tap` plugin's CNI made it). QEMU cannot attach to a macvtap
    /// by name (`ifname=` only works for a tap): the launcher opens its character device
    /// `path` (`/dev/tap<ifindex>`) read-write and hands it to QEMU as descriptor `fd`
    /// (`-netdev tap,fd=<fd>`). `fd` is planned: 3 for the plan's first macvtap, then 4…
    /// `path` is `None` when the pod view has no ifindex for the link (a pod view file
    /// without one, the typical pod): the launcher then resolves `/dev/tap<ifindex of
    /// device>` itself. libvirt opens the device on its own and needs neither.
    Macvtap {
        device: String,
        fd: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
}

/// One `<portForward>` of libvirt's passt back end: a protocol and its ranges; no range
/// forwards every port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PasstPortForward {
    /// `tcp` or `udp`.
    pub proto: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<PasstPortRange>,
}

/// `<range start='N'/>`, or with `exclude='yes'` a port left out of the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PasstPortRange {
    pub start: u16,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclude: bool,
}

/// A descriptor the launcher opens and passes to QEMU (`--domain-out`'s `fds`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassedFd {
    /// The descriptor number QEMU's arguments name (`fd=<fd>`).
    pub fd: u32,
    /// What to open read-write; `None` when unknown (see [`GuestBackend::Macvtap`]).
    pub path: Option<String>,
    /// The pod link the descriptor belongs to.
    pub link: String,
}

impl NetworkPlan {
    /// Every descriptor the launcher must open for QEMU, in interface order.
    pub fn passed_fds(&self) -> Vec<PassedFd> {
        self.interfaces
            .iter()
            .filter_map(|i| match &i.guest.backend {
                GuestBackend::Macvtap { device, fd, path } => Some(PassedFd {
                    fd: *fd,
                    path: path.clone(),
                    link: device.clone(),
                }),
                _ => None,
            })
            .collect()
    }
}
