//! The planner: walks `spec.domain.devices.interfaces` in order and plans each one.
//!
//! For every interface it settles the identity (network, source, method, binding as
//! written, link state), finds the pod link the interface uses, hands over to the module
//! of its method — [`bridge`] (also `managedTap`), [`masquerade`], [`sriov`], [`usernet`],
//! [`tap`] — which returns the pod-side work ([`BindingPlan`]), and then assembles the
//! guest device and renders it (libvirt XML, QEMU arguments).
//!
//! Pod link names, as KubeVirt: `eth0` for the pod network and a Multus default network;
//! `pod<11 hex of sha256(network name)>` for other Multus networks — unless the pod view
//! lacks that link and uses the legacy ordinal names (`net1`, `net2`… for the secondary
//! networks in `spec.networks` order), in which case those are used.
//!
//! Interfaces with `state: absent` are left out (a plan note says so). Planning is pure
//! and total: any input yields a plan or a [`PlanError`], never a panic.

pub mod bridge;
pub mod masquerade;
pub mod sriov;
pub mod tap;
pub mod usernet;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netbind_spec::model::{BindingKind, Interface, Network};
use netbind_spec::{ClusterConfig, VmObject, naming};

use crate::error::PlanError;
use crate::mac;
use crate::model::{
    Dhcp4Config, Dhcp6Config, GuestBackend, GuestDevice, InterfacePlan, LinkState, LinkStep,
    Method, NetworkPlan, PodLinkInfo, RaConfig, Source, Sysctl, UsernetConfig,
};
use crate::nftables::NftRuleset;
use crate::podview::{PodLink, PodView};
use crate::render;

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

/// What a method module decides for one interface.
#[derive(Debug, Default)]
pub struct BindingPlan {
    pub links: Vec<LinkStep>,
    pub sysctls: Vec<Sysctl>,
    pub nftables: Option<NftRuleset>,
    pub dhcp4: Option<Dhcp4Config>,
    pub dhcp6: Option<Dhcp6Config>,
    pub ra: Option<RaConfig>,
    pub usernet: Option<UsernetConfig>,
    /// Guest MTU when it differs from the pod link's (`None` → the pod link's).
    pub guest_mtu: Option<Option<u32>>,
    pub notes: Vec<String>,
}

/// Everything a method module may look at for one interface.
pub struct Ctx<'a> {
    pub obj: &'a VmObject,
    pub cluster: &'a ClusterConfig,
    pub pod: &'a PodView,
    /// Position in `spec.domain.devices.interfaces`.
    pub index: usize,
    pub iface: &'a Interface,
    pub network: &'a Network,
    pub pod_link_name: String,
    pub pod_link: Option<&'a PodLink>,
    /// The guest NIC's MAC.
    pub guest_mac: Option<String>,
    /// The VM's hostname (DHCP option 12).
    pub hostname: String,
    /// Search domains for the guest: the pod's, with `<subdomain>.<service domain>` first
    /// when `spec.subdomain` is set.
    pub search: Vec<String>,
    /// Whether Istio injects its proxy (`sidecar.istio.io/inject: "true"`).
    pub istio: bool,
    /// SR-IOV VF addresses chosen for every SR-IOV interface (by interface name).
    pub vfs: &'a BTreeMap<String, sriov::Vf>,
}

/// The most queues a tap device takes (the kernel's `MAX_TAP_QUEUES`); KubeVirt caps there.
pub const MAX_QUEUES: u32 = 256;

/// A Kubernetes CPU quantity rounded up to whole CPUs, as `Quantity.Value()` does:
/// `2`, `"2"`, `"1.5"` → 2, `"500m"` → 1. `None` for what is not a quantity.
fn whole_cpus(q: &serde_json::Value) -> Option<u64> {
    let text = match q {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    let (number, scale) = match text.strip_suffix('m') {
        Some(milli) => (milli, 1e-3),
        None => (text.as_str(), 1.0),
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0 && value <= f64::from(u32::MAX))
        .then(|| (value * scale).ceil() as u64)
}

/// How many queues a virtio NIC gets, as KubeVirt counts them: with
/// `networkInterfaceMultiqueue`, one per vCPU — sockets × cores × threads of
/// `domain.cpu`, or, when no topology is given, the CPU limit (else request) as sockets —
/// at most [`MAX_QUEUES`]; otherwise one.
pub fn virtio_queues(obj: &VmObject) -> u32 {
    let domain = &obj.spec.domain;
    if domain.devices.network_interface_multiqueue != Some(true) {
        return 1;
    }
    let count = |v: Option<i64>| {
        v.filter(|n| *n > 0)
            .map_or(1, |n| n.min(i64::from(MAX_QUEUES)) as u64)
    };
    let cpu = domain.cpu.clone().unwrap_or_default();
    let mut sockets = count(cpu.sockets);
    let no_topology = [cpu.sockets, cpu.cores, cpu.threads]
        .iter()
        .all(|v| v.is_none_or(|n| n == 0));
    if no_topology && let Some(r) = &domain.resources {
        let cpus = r.limits.get("cpu").or_else(|| r.requests.get("cpu"));
        if let Some(n) = cpus.and_then(whole_cpus) {
            sockets = n.max(1);
        }
    }
    let vcpus = sockets
        .saturating_mul(count(cpu.cores))
        .saturating_mul(count(cpu.threads));
    vcpus.min(u64::from(MAX_QUEUES)) as u32
}

impl Ctx<'_> {
    /// Queues for the guest's NIC on a tap netbind creates (see [`virtio_queues`]).
    pub fn tap_queues(&self) -> u32 {
        let model = self
            .iface
            .model
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or("virtio");
        if model == "virtio" {
            virtio_queues(self.obj)
        } else {
            1
        }
    }

    /// The pod link, or the error naming what was looked for.
    pub fn require_link(&self) -> Result<&PodLink, PlanError> {
        self.pod_link.ok_or_else(|| PlanError::MissingPodLink {
            interface: self.iface.name.clone(),
            network: self.network.name.clone(),
            link: self.pod_link_name.clone(),
        })
    }

    pub fn mtu(&self) -> u32 {
        self.pod_link.map_or(1500, |l| l.mtu)
    }

    /// The guest MAC, which every method that plans a DHCP server has.
    pub fn client_mac(&self) -> String {
        self.guest_mac.clone().unwrap_or_default()
    }

    /// Pod nameservers of one family.
    pub fn dns4(&self) -> Vec<Ipv4Addr> {
        self.pod
            .dns
            .nameservers
            .iter()
            .filter_map(|a| {
                if let IpAddr::V4(v) = a {
                    Some(*v)
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn dns6(&self) -> Vec<Ipv6Addr> {
        self.pod
            .dns
            .nameservers
            .iter()
            .filter_map(|a| {
                if let IpAddr::V6(v) = a {
                    Some(*v)
                } else {
                    None
                }
            })
            .collect()
    }

    /// The tap the guest uses: `tap0` for the primary link, `tap` + the link name after
    /// its first three characters otherwise (`pod1a2b…` → `tap1a2b…`, `net1` → `tap1`).
    pub fn tap_name(&self) -> String {
        naming::tap_name(&self.pod_link_name)
    }

    pub fn seed(&self, what: &str) -> String {
        format!(
            "{}/{}/{}{what}",
            self.obj.namespace, self.obj.name, self.iface.name
        )
    }
}

/// The plan note saying no pod view was given. It is the only place this is said: the
/// CLI prints it with the plan (table, JSON, YAML, diagrams), never again on stderr.
pub const TYPICAL_POD_NOTE: &str = "pod view: typical CNI pod assumed (no --pod-view/--netns): \
eth0 with one IPv4 and one IPv6 address, MTU 1500, cluster DNS";

/// Plans a defaulted (and normally validated) object against a pod view.
pub fn plan(
    obj: &VmObject,
    cluster: &ClusterConfig,
    pod: &PodView,
) -> Result<NetworkPlan, PlanError> {
    let mut plan = NetworkPlan {
        object: obj.display_name(),
        pod_view: pod.source.clone(),
        ..NetworkPlan::default()
    };
    if pod.source == "default" {
        plan.notes.push(TYPICAL_POD_NOTE.into());
    }
    let hostname = pod
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .or_else(|| obj.spec.hostname.clone().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| obj.name.clone());
    let search = search_domains(&pod.dns.search, obj.spec.subdomain.as_deref());
    let istio = netbind_spec::multus::istio_injected(obj);
    let legacy = pod.links.iter().any(|l| is_ordinal_name(&l.name));
    let vfs = sriov::assign_vfs(obj, pod, legacy)?;

    for (index, iface) in obj.interfaces().iter().enumerate() {
        let state = match iface.state() {
            "up" => LinkState::Up,
            "down" => LinkState::Down,
            "absent" => {
                plan.notes.push(format!(
                    "interface {}: state absent, left out of the plan",
                    iface.name
                ));
                continue;
            }
            other => {
                return Err(PlanError::BadState {
                    interface: iface.name.clone(),
                    state: other.into(),
                });
            }
        };
        let network = obj
            .networks()
            .iter()
            .find(|n| n.name == iface.name)
            .ok_or_else(|| PlanError::NoNetwork {
                interface: iface.name.clone(),
            })?;
        let source = match (&network.pod, &network.multus) {
            (Some(_), None) => Source::Pod,
            (None, Some(m)) => Source::Multus {
                network_name: m.network_name.clone(),
                default: m.default,
            },
            _ => {
                return Err(PlanError::NoSource {
                    network: network.name.clone(),
                });
            }
        };
        let (method, binding) = method_of(iface, cluster)?;
        let pod_link_name = pod_link_name(obj, network, pod, legacy);
        let pod_link = pod.link(&pod_link_name);
        let guest_mac = guest_mac(
            iface,
            method,
            pod_link,
            &format!("{}/{}/{}", obj.namespace, obj.name, iface.name),
            &vfs,
        )?;
        let ctx = Ctx {
            obj,
            cluster,
            pod,
            index,
            iface,
            network,
            pod_link_name: pod_link_name.clone(),
            pod_link,
            guest_mac,
            hostname: hostname.clone(),
            search: search.clone(),
            istio,
            vfs: &vfs,
        };
        let mut bp = match method {
            Method::Bridge => bridge::plan(&ctx, false)?,
            Method::ManagedTap => bridge::plan(&ctx, true)?,
            Method::Masquerade => masquerade::plan(&ctx)?,
            Method::Sriov => sriov::plan(&ctx)?,
            Method::Usernet => usernet::plan(&ctx)?,
            Method::Tap => tap::plan(&ctx)?,
        };
        let next_fd = 3 + plan
            .interfaces
            .iter()
            .filter(|i| matches!(i.guest.backend, GuestBackend::Macvtap { .. }))
            .count() as u32;
        let (guest, backend_notes) = guest_device(&ctx, method, state, &bp, next_fd)?;
        bp.notes.extend(backend_notes);
        plan.interfaces.push(InterfacePlan {
            name: iface.name.clone(),
            network: network.name.clone(),
            source,
            method,
            binding,
            state,
            pod_link: PodLinkInfo {
                name: pod_link_name,
                present: pod_link.is_some(),
                mac: pod_link.and_then(|l| l.mac.clone()),
                mtu: ctx.mtu(),
                addresses: pod_link.map(|l| l.addresses.clone()).unwrap_or_default(),
            },
            links: bp.links,
            sysctls: bp.sysctls,
            nftables: bp.nftables,
            dhcp4: bp.dhcp4,
            dhcp6: bp.dhcp6,
            ra: bp.ra,
            usernet: bp.usernet,
            guest,
            notes: bp.notes,
        });
    }
    Ok(plan)
}

/// The method and the binding as written.
fn method_of(iface: &Interface, cluster: &ClusterConfig) -> Result<(Method, String), PlanError> {
    let bindings = iface.bindings();
    let [kind] = bindings.as_slice() else {
        return Err(PlanError::Binding {
            interface: iface.name.clone(),
            found: bindings.len(),
        });
    };
    Ok(match kind {
        BindingKind::Bridge => (Method::Bridge, "bridge".into()),
        BindingKind::Masquerade => (Method::Masquerade, "masquerade".into()),
        BindingKind::Sriov => (Method::Sriov, "sriov".into()),
        BindingKind::PasstBinding => (Method::Usernet, "passtBinding".into()),
        BindingKind::Plugin => {
            let name = iface
                .binding
                .as_ref()
                .map(|b| b.name.clone())
                .unwrap_or_default();
            let plugin =
                cluster
                    .network
                    .binding
                    .get(&name)
                    .ok_or_else(|| PlanError::UnknownPlugin {
                        interface: iface.name.clone(),
                        plugin: name.clone(),
                    })?;
            let method = match plugin.domain_attachment_type.as_deref() {
                None | Some("") => Method::Usernet,
                Some("tap") => Method::Tap,
                Some("managedTap") => Method::ManagedTap,
                Some(other) => {
                    return Err(PlanError::UnknownAttachment {
                        interface: iface.name.clone(),
                        plugin: name,
                        kind: other.into(),
                    });
                }
            };
            (method, format!("binding:{name}"))
        }
        k @ (BindingKind::Slirp | BindingKind::Macvtap | BindingKind::Passt) => {
            return Err(PlanError::Discontinued {
                interface: iface.name.clone(),
                binding: k.field().into(),
            });
        }
    })
}

/// `net` followed by digits only: KubeVirt's legacy ordinal pod link names.
fn is_ordinal_name(name: &str) -> bool {
    name.strip_prefix("net")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

fn pod_link_name(obj: &VmObject, network: &Network, pod: &PodView, legacy: bool) -> String {
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

/// The guest MAC: `macAddress` if given; else the pod link's for methods that put the guest
/// on the pod link's L2 in its place (bridge, managedTap, tap); else derived (masquerade,
/// usernet); SR-IOV keeps the VF's (set by the SR-IOV CNI), so none unless given.
fn guest_mac(
    iface: &Interface,
    method: Method,
    link: Option<&PodLink>,
    seed: &str,
    vfs: &BTreeMap<String, sriov::Vf>,
) -> Result<Option<String>, PlanError> {
    if let Some(written) = iface.mac_address.as_deref().filter(|m| !m.is_empty()) {
        return mac::normalize(written)
            .map(Some)
            .ok_or_else(|| PlanError::BadMac {
                interface: iface.name.clone(),
                mac: written.into(),
            });
    }
    Ok(match method {
        Method::Bridge | Method::ManagedTap | Method::Tap => Some(
            link.and_then(|l| l.mac.as_deref())
                .and_then(mac::normalize)
                .unwrap_or_else(|| mac::derived(seed)),
        ),
        Method::Masquerade | Method::Usernet => Some(mac::derived(seed)),
        Method::Sriov => vfs.get(&iface.name).and_then(|v| v.mac.clone()),
    })
}

fn search_domains(pod_search: &[String], subdomain: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = pod_search.to_vec();
    if let Some(sub) = subdomain.filter(|s| !s.is_empty()) {
        let service = pod_search
            .iter()
            .filter(|d| d.contains(".svc."))
            .max_by_key(|d| d.len());
        if let Some(domain) = service
            && !domain.starts_with(&format!("{sub}."))
        {
            out.insert(0, format!("{sub}.{domain}"));
        }
    }
    out
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

/// Guest device from the interface and what its method decided; rendered.
fn guest_device(
    ctx: &Ctx<'_>,
    method: Method,
    state: LinkState,
    bp: &BindingPlan,
    next_fd: u32,
) -> Result<(GuestDevice, Vec<String>), PlanError> {
    let iface = ctx.iface;
    let mut notes = Vec::new();
    let model = iface
        .model
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "virtio".into());
    let boot_order = positive(iface.boot_order, &iface.name, "bootOrder", u32::MAX as i64)?;
    let acpi_index = positive(iface.acpi_index, &iface.name, "acpiIndex", 16383)?;
    let pci_address = match iface.pci_address.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(render::parse_pci(a).map(|p| p.to_string()).ok_or_else(|| {
            PlanError::BadPciAddress {
                interface: iface.name.clone(),
                address: a.into(),
            }
        })?),
    };
    let (alias, model, qemu_driver, backend, mtu) = match method {
        Method::Sriov => {
            let vf = ctx
                .vfs
                .get(&iface.name)
                .map(|v| v.pci_address.clone())
                .unwrap_or_default();
            (
                format!("ua-sriov-{}", iface.name),
                String::new(),
                "vfio-pci".to_string(),
                GuestBackend::Hostdev { pci_address: vf },
                None,
            )
        }
        _ => {
            let backend = match method {
                Method::Usernet => GuestBackend::Stream {
                    socket: bp
                        .usernet
                        .as_ref()
                        .map(|u| u.socket.clone())
                        .unwrap_or_default(),
                },
                Method::Tap => tap::backend(ctx, next_fd),
                _ => GuestBackend::Tap {
                    device: ctx.tap_name(),
                },
            };
            let mtu = bp.guest_mtu.unwrap_or(Some(ctx.mtu()));
            (
                format!("ua-{}", iface.name),
                model.clone(),
                qemu_driver(&model),
                backend,
                mtu,
            )
        }
    };
    // Queues go with a tap this plan creates (`CreateTap` with the multiqueue flag);
    // other attachments (a stream socket, a macvtap descriptor) carry one.
    let queues = match &backend {
        GuestBackend::Tap { device } => bp
            .links
            .iter()
            .find_map(|l| match l {
                LinkStep::CreateTap { name, queues, .. } if name == device => Some(*queues),
                _ => None,
            })
            .unwrap_or(1),
        _ => 1,
    };
    if queues == 1 && model == "virtio" && virtio_queues(ctx.obj) > 1 {
        notes.push(
            "networkInterfaceMultiqueue: one queue on this attachment (several need a tap netbind creates)"
                .into(),
        );
    }
    if method == Method::Sriov && acpi_index.is_some() {
        notes.push(
            "acpiIndex: not set on the SR-IOV host device (KubeVirt sets none either)".into(),
        );
    }
    let mut device = GuestDevice {
        alias,
        model,
        qemu_driver,
        mac: ctx.guest_mac.clone(),
        mtu,
        queues,
        pci_address,
        boot_order,
        acpi_index: if method == Method::Sriov {
            None
        } else {
            acpi_index
        },
        link_down: state == LinkState::Down,
        backend,
        libvirt_xml: String::new(),
        qemu_args: Vec::new(),
    };
    device.libvirt_xml = render::libvirt::device_xml(&device);
    device.qemu_args = render::qemu::device_args(&device);
    notes.extend(render::qemu::caveats(&device));
    Ok((device, notes))
}

fn positive(
    value: Option<i64>,
    interface: &str,
    field: &'static str,
    max: i64,
) -> Result<Option<u32>, PlanError> {
    match value {
        None => Ok(None),
        Some(v) if (1..=max).contains(&v) => Ok(u32::try_from(v).ok()),
        Some(v) => Err(PlanError::OutOfRange {
            interface: interface.into(),
            field,
            value: v,
        }),
    }
}

/// QEMU device driver for a KubeVirt interface model.
fn qemu_driver(model: &str) -> String {
    match model {
        "virtio" => "virtio-net-pci",
        "e1000" => "e1000",
        "e1000e" => "e1000e",
        "igb" => "igb",
        "ne2k_pci" => "ne2k_pci",
        "pcnet" => "pcnet",
        "rtl8139" => "rtl8139",
        other => other,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_adds_its_service_domain_first() {
        let pod = vec![
            "ns.svc.cluster.local".to_string(),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ];
        assert_eq!(
            search_domains(&pod, Some("sub"))[0],
            "sub.ns.svc.cluster.local"
        );
        assert_eq!(search_domains(&pod, None), pod);
    }

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
