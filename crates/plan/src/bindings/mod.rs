//! The planner: walks `spec.domain.devices.interfaces` in order and plans each one.
//!
//! For every interface it settles the identity (network, source, method, binding as
//! written, link state), finds the pod link the interface uses ([`shared::pod_link_name`]),
//! builds the interface's [`Ctx`] and hands over to the module of its method —
//! [`bridge`] (also `managedTap`), [`masquerade`], [`sriov`], [`usernet`], [`tap`] — which
//! returns the pod-side work ([`BindingPlan`]), and then assembles the guest device and
//! renders it (libvirt XML, QEMU arguments; `guest.rs`).
//!
//! Where things are: this file is the walk alone (identity, method, guest MAC, search
//! list). [`ctx`] holds what a binding is given and returns, [`shared`] the helpers more
//! than one binding uses, [`queues`] the NIC's queue count, `guest.rs` the guest device.
//! Imports run one way — this file → bindings → `ctx`/`shared`/`queues` — so a binding
//! never imports the planner or another binding.
//!
//! Once every interface is planned, a VM with a vhost-user NIC gets its guest memory
//! shared ([`memory`]): one setting for the whole domain, not per NIC.
//!
//! Interfaces with `state: absent` are left out (a plan note says so). Planning is pure
//! and total: any input yields a plan or a [`PlanError`], never a panic.

pub mod bridge;
pub mod ctx;
mod guest;
pub mod masquerade;
pub mod memory;
pub mod queues;
pub mod shared;
pub mod sriov;
pub mod tap;
pub mod usernet;

use std::collections::BTreeMap;

use netbind_spec::model::{BindingKind, Interface};
use netbind_spec::{ClusterConfig, VmObject};

pub use ctx::{BindingPlan, Ctx};
pub use queues::{MAX_QUEUES, virtio_queues};
pub use shared::{
    QEMU_UID, domain_name, first_global_v4, first_global_v6, guest_tap, is_global_unicast,
};

use crate::error::PlanError;
use crate::mac;
use crate::model::{
    GuestBackend, InterfacePlan, LinkState, Method, NetworkPlan, PodLinkInfo, Source,
};
use crate::podview::{PodLink, PodView};
use ctx::Vf;
use guest::guest_device;
use shared::{is_ordinal_name, pod_link_name};

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
    let vhost_user =
        (plan.interfaces.iter()).any(|i| matches!(i.guest.backend, GuestBackend::VhostUser { .. }));
    if vhost_user {
        let (shared, note) = memory::shared_memory(obj);
        plan.shared_memory = Some(shared);
        plan.notes.extend(note);
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

/// The guest MAC: `macAddress` if given; else the pod link's for methods that put the guest
/// on the pod link's L2 in its place (bridge, managedTap, tap); else derived (masquerade,
/// usernet); SR-IOV keeps the VF's (set by the SR-IOV CNI), so none unless given.
fn guest_mac(
    iface: &Interface,
    method: Method,
    link: Option<&PodLink>,
    seed: &str,
    vfs: &BTreeMap<String, Vf>,
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
}
