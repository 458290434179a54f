//! Network sources: each network has exactly one source (pod or Multus); at most one
//! primary network (one pod network, or one Multus default, never both); Multus names;
//! and the VM-side networks of the pod network (`vmNetworkCIDR`, `vmIPv6NetworkCIDR`).
//!
//! VM networks: behind masquerade the VM lives in a private network whose first host
//! address is the in-pod gateway and whose second is the VM, so IPv4 needs a /30 or wider
//! and IPv6 a /126 or wider. When the pod's own addresses are known, a masquerade VM
//! network overlapping one of them would shadow the pod's route to that network, so it is
//! refused; the default networks (10.0.2.0/24, fd10:0:2::/120) are checked too, and the
//! path then names the field to set. One violation per family at most.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Ctx, is_dns1123_label, is_dns1123_subdomain};
use crate::model::{BindingKind, Network};

/// KubeVirt's default VM network behind masquerade, IPv4.
pub const DEFAULT_VM_NETWORK_V4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 2, 0), 24);

/// KubeVirt's default VM network behind masquerade, IPv6.
pub const DEFAULT_VM_NETWORK_V6: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0xfd10, 0, 2, 0, 0, 0, 0, 0), 120);

const MAX_V4_PREFIX: u8 = 30;
const MAX_V6_PREFIX: u8 = 126;

pub(super) fn check(ctx: &mut Ctx) {
    let mut first_pod: Option<usize> = None;
    let mut first_default: Option<usize> = None;
    for (i, net) in ctx.networks().iter().enumerate() {
        let path = ctx.net_path(i);
        match (&net.pod, &net.multus) {
            (None, None) => {
                let message = format!(
                    "network {:?} needs a source: pod: {{}} or multus: {{networkName}}",
                    net.name
                );
                ctx.violation(path.clone(), "network-source-missing", message);
            }
            (Some(_), Some(_)) => {
                let message = format!("network {:?} has both pod and multus; keep one", net.name);
                ctx.violation(format!("{path}.multus"), "network-source-multiple", message);
            }
            _ => {}
        }
        if let Some(m) = &net.multus {
            multus_name(ctx, &path, &m.network_name);
            if m.default {
                match first_default {
                    None => first_default = Some(i),
                    Some(first) => {
                        let message = format!(
                            "only one Multus default network is allowed; networks[{first}] is one already"
                        );
                        ctx.violation(
                            format!("{path}.multus.default"),
                            "multus-default-single",
                            message,
                        );
                    }
                }
            }
        }
        if net.pod.is_some() {
            match first_pod {
                None => first_pod = Some(i),
                Some(first) => {
                    let message = format!(
                        "only one pod network is allowed; networks[{first}] is one already"
                    );
                    ctx.violation(format!("{path}.pod"), "pod-network-single", message);
                }
            }
            vm_networks(ctx, i, net);
        }
    }
    if let (Some(pod), Some(default)) = (first_pod, first_default) {
        let message = format!(
            "a Multus default network replaces the pod network; remove it or the pod network networks[{pod}]"
        );
        ctx.violation(
            format!("{}.multus.default", ctx.net_path(default)),
            "pod-network-with-multus-default",
            message,
        );
    }
}

fn multus_name(ctx: &mut Ctx, net_path: &str, name: &str) {
    let path = format!("{net_path}.multus.networkName");
    if name.is_empty() {
        let message =
            "multus networkName is required: the NetworkAttachmentDefinition, [namespace/]name";
        ctx.violation(path, "multus-network-name-required", message);
        return;
    }
    let ok = match name.split_once('/') {
        Some((ns, nad)) => is_dns1123_label(ns) && is_dns1123_subdomain(nad),
        None => is_dns1123_subdomain(name),
    };
    if !ok {
        let message = format!(
            "multus networkName {name:?} is not [namespace/]name of a NetworkAttachmentDefinition (lowercase DNS names)"
        );
        ctx.violation(path, "multus-network-name-format", message);
    }
}

/// Checks the explicit VM networks of pod network `i`, and their collision with the pod.
fn vm_networks(ctx: &mut Ctx, i: usize, net: &Network) {
    let Some(pod) = &net.pod else { return };
    let base = format!("{}.pod", ctx.net_path(i));
    let v4_path = format!("{base}.vmNetworkCIDR");
    let v6_path = format!("{base}.vmIPv6NetworkCIDR");
    let v4 = match pod.vm_network_cidr.as_deref().filter(|s| !s.is_empty()) {
        None => Some(IpNet::V4(DEFAULT_VM_NETWORK_V4)),
        Some(text) => parse_vm_network(ctx, &v4_path, text, Family::V4),
    };
    let v6 = match pod
        .vm_ipv6_network_cidr
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        None => Some(IpNet::V6(DEFAULT_VM_NETWORK_V6)),
        Some(text) => parse_vm_network(ctx, &v6_path, text, Family::V6),
    };
    let masquerade = ctx.interface_of(net).and_then(|iface| iface.binding_kind())
        == Some(BindingKind::Masquerade);
    let Some(pod_addresses) = ctx.pod_addresses.filter(|_| masquerade) else {
        return;
    };
    for (vm_net, path) in [(v4, v4_path), (v6, v6_path)] {
        let Some(vm_net) = vm_net else { continue };
        if let Some(addr) = pod_addresses.iter().find(|a| overlaps(a, &vm_net)) {
            let message = format!(
                "VM network {vm_net} collides with pod address {addr}; set this field to a network the pod does not use"
            );
            ctx.violation(path, "vm-network-cidr-collides-with-pod", message);
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Family {
    V4,
    V6,
}

/// Parses an explicit VM network; reports and returns `None` when unusable.
fn parse_vm_network(ctx: &mut Ctx, path: &str, text: &str, family: Family) -> Option<IpNet> {
    let (name, max_prefix) = match family {
        Family::V4 => ("IPv4", MAX_V4_PREFIX),
        Family::V6 => ("IPv6", MAX_V6_PREFIX),
    };
    let parsed = text
        .parse::<IpNet>()
        .ok()
        .filter(|n| matches!(n, IpNet::V4(_)) == (family == Family::V4));
    let Some(net) = parsed else {
        let message = format!("{text:?} is not an {name} network in CIDR notation");
        ctx.violation(path.to_string(), "vm-network-cidr-invalid", message);
        return None;
    };
    if net.prefix_len() > max_prefix {
        let message = format!(
            "{text} is too small for gateway and VM; use a /{max_prefix} or wider {name} network"
        );
        ctx.violation(path.to_string(), "vm-network-cidr-too-small", message);
        return None;
    }
    Some(net.trunc())
}

/// Whether the network of pod address `addr` and `vm_net` share any address.
fn overlaps(addr: &IpNet, vm_net: &IpNet) -> bool {
    let pod_net = addr.trunc();
    match (pod_net, vm_net) {
        (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)) => {
            pod_net.contains(&vm_net.network()) || vm_net.contains(&pod_net.network())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, check_with, found};
    use super::*;
    use crate::cluster::ClusterConfig;

    fn masquerade_with(pod: &str) -> String {
        format!(
            "kind: VirtualMachineInstance\nspec:\n  domain: {{devices: {{interfaces: [{{name: p, masquerade: {{}}}}]}}}}\n  networks: [{{name: p, pod: {pod}}}]\n"
        )
    }

    #[test]
    fn ipv4_slash_30_fits_slash_31_does_not() {
        assert!(check(&masquerade_with("{vmNetworkCIDR: 192.168.7.0/30}")).is_valid());
        let r = check(&masquerade_with("{vmNetworkCIDR: 192.168.7.0/31}"));
        assert_eq!(
            found(&r),
            vec![(
                "vm-network-cidr-too-small",
                "spec.networks[0].pod.vmNetworkCIDR".into()
            )]
        );
    }

    #[test]
    fn ipv6_network_in_the_ipv4_field_is_invalid() {
        let r = check(&masquerade_with("{vmNetworkCIDR: 'fd00::/64'}"));
        assert_eq!(
            found(&r),
            vec![(
                "vm-network-cidr-invalid",
                "spec.networks[0].pod.vmNetworkCIDR".into()
            )]
        );
    }

    #[test]
    fn default_vm_network_collides_with_pod_in_10_0_0_0_16() {
        let pod: Vec<IpNet> = vec![
            "10.0.7.9/16".parse().unwrap(),
            "fd00::5/64".parse().unwrap(),
        ];
        let r = check_with(
            &masquerade_with("{}"),
            &ClusterConfig::default(),
            Some(&pod),
        );
        assert_eq!(
            found(&r),
            vec![(
                "vm-network-cidr-collides-with-pod",
                "spec.networks[0].pod.vmNetworkCIDR".into()
            )]
        );
    }

    #[test]
    fn pod_addresses_do_not_matter_for_bridge() {
        let pod: Vec<IpNet> = vec!["10.0.2.9/24".parse().unwrap()];
        let yaml = masquerade_with("{}").replace("masquerade", "bridge");
        assert!(check_with(&yaml, &ClusterConfig::default(), Some(&pod)).is_valid());
    }

    #[test]
    fn pod_and_multus_default_is_one_violation() {
        let r = check(
            "kind: VirtualMachineInstance\nspec:\n  domain: {devices: {interfaces: [{name: p, bridge: {}}, {name: m, bridge: {}}]}}\n  networks: [{name: p, pod: {}}, {name: m, multus: {networkName: x, default: true}}]\n",
        );
        assert_eq!(
            found(&r),
            vec![(
                "pod-network-with-multus-default",
                "spec.networks[1].multus.default".into()
            )]
        );
    }

    #[test]
    fn namespaced_multus_name_is_accepted() {
        let r = check(
            "kind: VirtualMachineInstance\nspec:\n  domain: {devices: {interfaces: [{name: m, bridge: {}}]}}\n  networks: [{name: m, multus: {networkName: kube-system/br.net}}]\n",
        );
        assert!(r.is_valid(), "{r:?}");
    }
}
