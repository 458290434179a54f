//! SR-IOV binding: a VF passed through to the guest with VFIO. Nothing changes in the
//! pod's namespace (a VF bound to vfio-pci has no netdev there).
//!
//! Which VF: netbind looks, per SR-IOV interface,
//! 1. in Multus `network-status` for the entry of the interface's network — the one whose
//!    `interface` is the pod link name (hashed or legacy), else the one named
//!    `<namespace>/<networkName>` — and takes its `device-info.pci.pci-address`;
//! 2. otherwise in the device plugins' environment. KubeVirt maps each network to its
//!    resource (`PCIDEVICE_<RESOURCE>`, the resource upper-cased with `.` and `/` as `_`)
//!    through the NetworkAttachmentDefinition, which netbind does not read. So netbind
//!    pools the addresses of every `PCIDEVICE_*` variable (variables in name order, each a
//!    comma-separated list), drops those network-status already assigned, and hands the
//!    rest out to the remaining SR-IOV interfaces in spec order. With one SR-IOV resource
//!    (the common case) this is exactly KubeVirt's result.
//!
//! No address left → [`PlanError::MissingVf`], naming the network and both places looked.
//!
//! The guest MAC is the VF's: the SR-IOV CNI sets it from the networks annotation (where
//! `macAddress` goes); the plan carries `macAddress` or the MAC network-status reports.

use std::collections::BTreeMap;

use netbind_spec::VmObject;
use netbind_spec::multus;

pub use super::ctx::Vf;

use super::ctx::{BindingPlan, Ctx};
use super::shared::pod_link_name;
use crate::error::PlanError;
use crate::podview::PodView;
use crate::render::parse_pci;

pub fn plan(ctx: &Ctx<'_>) -> Result<BindingPlan, PlanError> {
    let mut bp = BindingPlan::default();
    match ctx.vfs.get(&ctx.iface.name) {
        Some(vf) => bp
            .notes
            .push(format!("VF {} from {}", vf.pci_address, vf.found_in)),
        None => {
            return Err(PlanError::MissingVf {
                interface: ctx.iface.name.clone(),
                network: ctx.network.name.clone(),
                looked: "network-status and PCIDEVICE_* environment".into(),
            });
        }
    }
    Ok(bp)
}

/// Chooses a VF for every SR-IOV interface that is not absent.
pub fn assign_vfs(
    obj: &VmObject,
    pod: &PodView,
    legacy: bool,
) -> Result<BTreeMap<String, Vf>, PlanError> {
    let sriov: Vec<_> = obj
        .interfaces()
        .iter()
        .filter(|i| i.sriov.is_some() && i.state() != "absent" && i.bindings().len() == 1)
        .filter_map(|i| {
            obj.networks()
                .iter()
                .find(|n| n.name == i.name)
                .map(|n| (i, n))
        })
        .collect();
    let mut out = BTreeMap::new();
    if sriov.is_empty() {
        return Ok(out);
    }
    let statuses = match pod
        .network_status
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        Some(text) => multus::parse_network_status(text).map_err(|e| PlanError::NetworkStatus {
            reason: e.to_string(),
        })?,
        None => Vec::new(),
    };

    let mut pending = Vec::new();
    for (iface, network) in &sriov {
        let network_name = network
            .multus
            .as_ref()
            .map(|m| m.network_name.as_str())
            .unwrap_or("");
        let link = pod_link_name(obj, network, pod, legacy);
        let found = multus::find_status(&statuses, &obj.namespace, network_name, &link)
            .and_then(|s| Some((s.pci_address().and_then(parse_pci)?, s.mac.clone())));
        match found {
            Some((pci, mac)) => {
                let (ns, name) = multus::nad_namespaced_name(&obj.namespace, network_name);
                out.insert(
                    iface.name.clone(),
                    Vf {
                        pci_address: pci.to_string(),
                        mac,
                        found_in: format!("network-status entry {ns}/{name}"),
                    },
                );
            }
            None => pending.push((iface, network, link)),
        }
    }

    let taken: Vec<String> = out.values().map(|v| v.pci_address.clone()).collect();
    let mut pool = Vec::new();
    for (key, value) in pod.env.iter().filter(|(k, _)| k.starts_with("PCIDEVICE_")) {
        for addr in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            if let Some(pci) = parse_pci(addr).map(|p| p.to_string())
                && !taken.contains(&pci)
                && !pool.iter().any(|(p, _)| p == &pci)
            {
                pool.push((pci, key.clone()));
            }
        }
    }
    let mut pool = pool.into_iter();
    for (iface, network, link) in pending {
        let network_name = network
            .multus
            .as_ref()
            .map(|m| m.network_name.as_str())
            .unwrap_or("");
        let Some((pci, var)) = pool.next() else {
            let (ns, name) = multus::nad_namespaced_name(&obj.namespace, network_name);
            let status_note = if pod.network_status.is_some() {
                format!(
                    "network-status (no entry for {ns}/{name} or interface {link} with a PCI address)"
                )
            } else {
                "network-status (the pod view has none)".to_string()
            };
            let env_count = pod
                .env
                .keys()
                .filter(|k| k.starts_with("PCIDEVICE_"))
                .count();
            return Err(PlanError::MissingVf {
                interface: iface.name.clone(),
                network: network.name.clone(),
                looked: format!(
                    "{status_note} and PCIDEVICE_* environment ({env_count} variables, no free address)"
                ),
            });
        };
        out.insert(
            iface.name.clone(),
            Vf {
                pci_address: pci,
                mac: None,
                found_in: format!("environment {var}"),
            },
        );
    }
    Ok(out)
}
