//! The interface between the planner and the binding modules: what a binding is given
//! for one interface ([`Ctx`]: the object, the cluster configuration, the pod view, the
//! interface and its network, the pod link it uses, the guest MAC, hostname and search
//! list, the VFs chosen) and what it hands back ([`BindingPlan`]: the pod-side work, the
//! DHCP/RA/engine settings, notes).
//!
//! The planner ([`super::plan`]) builds one `Ctx` per interface and calls the binding of
//! the interface's method with it; bindings read it and never change it. Neither type
//! knows any binding: this module imports none of them, so every binding (and `dhcp`)
//! can import it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netbind_spec::model::{Interface, Network};
use netbind_spec::{ClusterConfig, VmObject, naming};

use super::queues::virtio_queues;
use crate::error::PlanError;
use crate::model::{Dhcp4Config, Dhcp6Config, LinkStep, RaConfig, Sysctl, UsernetConfig};
use crate::nftables::NftRuleset;
use crate::podview::{PodLink, PodView};

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
    pub vfs: &'a BTreeMap<String, Vf>,
}

/// A VF chosen for an interface (by [`super::sriov::assign_vfs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vf {
    pub pci_address: String,
    pub mac: Option<String>,
    /// Where it was found, for the plan's notes.
    pub found_in: String,
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
