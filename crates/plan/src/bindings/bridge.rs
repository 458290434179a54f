//! Bridge binding (and the `managedTap` plugin attachment): the guest takes the pod
//! link's place on its L2 network.
//!
//! Built as KubeVirt builds it (pkg/network/setup/netpod), in this order:
//! 1. bridge `k6t-<stem>` with the pod link's MTU and, for the bridge binding when the
//!    pod link has IPv4, a fake address `169.254.75.1X/32` (X = the interface's position
//!    in the spec) that the DHCP server answers from; up;
//! 2. the pod link, down, renamed `<stem>-nic`, given the bridge's MAC (KubeVirt copies the
//!    bridge's kernel-chosen MAC; netbind derives a stable one and gives it to both), all
//!    addresses flushed, enslaved to the bridge, MAC learning off, up;
//! 3. tap (`tap0` / `tap<stem>`) owned by qemu (107:107), pod link MTU, enslaved, up;
//! 4. a dummy named like the original pod link, with its MAC, MTU and addresses, left
//!    down: CNI `CHECK` and anyone reading the pod's addresses still find them.
//!
//! With IPv4 on the pod link, `net.ipv4.conf.all.arp_ignore=1` keeps the pod from
//! answering ARP for the dummy's addresses on the bridge.
//!
//! Always (netbind, not KubeVirt): `net.bridge.bridge-nf-call-{iptables,ip6tables,arptables}=0`
//! in the pod ([`BRIDGE_NF_OFF`]). With br_netfilter loaded on the node a new namespace
//! starts with them at 1, so frames the pod's bridge forwards between the guest and its
//! L2 network pass the pod's IP netfilter hooks; a mesh's capture rules (Istio's
//! `PREROUTING -p tcp -j ISTIO_INBOUND`, no interface match) then redirect the guest's
//! bridged TCP to the sidecar and it dies. The keys are per namespace (Linux 5.3 and
//! later); without br_netfilter they do not exist and bridged frames never reach netfilter,
//! which the applier takes as already done.
//!
//! The guest gets the pod link's MAC and, by DHCP, its first IPv4 address with the pod's
//! IPv4 routes on that link (classless routes, default last; the connected route left
//! out). A pod link without IPv4 gives plain L2: no fake address, no DHCP. IPv6 addresses
//! stay on the dummy: KubeVirt hands none to a bridged guest, which may still use the
//! network's own router advertisements. `managedTap` builds the same links without the
//! fake address and without DHCP.
//!
//! Beyond KubeVirt's scheme (which only yields valid addresses for the first 56
//! interfaces), interface number 56 and later get `169.254.76.1` onwards.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use netbind_spec::naming;

use super::ctx::{BindingPlan, Ctx};
use super::shared::{first_global_v4, guest_tap, is_global_unicast};
use crate::dhcp;
use crate::error::PlanError;
use crate::mac;
use crate::model::{ClasslessRoute, LinkStep, Sysctl};

/// Bridged frames skip the pod's IP, IPv6 and ARP netfilter hooks (see the module docs).
pub const BRIDGE_NF_OFF: [&str; 3] = [
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-arptables",
];

pub fn plan(ctx: &Ctx<'_>, managed_tap: bool) -> Result<BindingPlan, PlanError> {
    let link = ctx.require_link()?;
    let pod_link = link.name.clone();
    let bridge = naming::bridge_name(&pod_link);
    let nic = naming::renamed_pod_link(&pod_link);
    let tap = ctx.tap_name();
    let mtu = link.mtu;
    let bridge_mac = mac::derived(&ctx.seed("/bridge"));
    let v4 = first_global_v4(&link.addresses);
    let mut bp = BindingPlan::default();

    bp.links.push(LinkStep::CreateBridge {
        name: bridge.clone(),
        mac: Some(bridge_mac.clone()),
        mtu,
    });
    let fake = if v4.is_some() && !managed_tap {
        Some(fake_bridge_address(ctx)?)
    } else {
        None
    };
    if let Some(addr) = fake {
        bp.links.push(LinkStep::AddAddress {
            link: bridge.clone(),
            address: IpNet::V4(Ipv4Net::new(addr, 32).unwrap_or_default()),
        });
    }
    bp.links.push(LinkStep::SetUp {
        link: bridge.clone(),
    });
    bp.links.extend([
        LinkStep::SetDown {
            link: pod_link.clone(),
        },
        LinkStep::RenameLink {
            from: pod_link.clone(),
            to: nic.clone(),
        },
        LinkStep::SetMac {
            link: nic.clone(),
            mac: bridge_mac,
        },
        LinkStep::FlushAddresses { link: nic.clone() },
        LinkStep::SetMaster {
            link: nic.clone(),
            master: bridge.clone(),
        },
        LinkStep::SetLearning {
            link: nic.clone(),
            learning: false,
        },
        LinkStep::SetUp { link: nic },
    ]);
    bp.links
        .extend(guest_tap(&tap, &bridge, mtu, ctx.tap_queues()));
    bp.links.extend([LinkStep::CreateDummy {
        name: pod_link.clone(),
        mac: link.mac.clone(),
        mtu,
        addresses: link.addresses.clone(),
    }]);
    if v4.is_some() {
        bp.sysctls
            .push(Sysctl::new("net.ipv4.conf.all.arp_ignore", "1"));
    }
    bp.sysctls
        .extend(BRIDGE_NF_OFF.iter().map(|k| Sysctl::new(*k, "0")));

    match (v4, fake) {
        (Some(address), Some(server)) => {
            let (router, routes) = routes_for(ctx, &pod_link, address);
            if router.is_none() {
                bp.notes.push(format!(
                    "no IPv4 default route on {pod_link}: DHCP offers no router"
                ));
            }
            let cfg = dhcp::dhcp4(ctx, &bridge, server, address, router, routes, &mut bp.notes)?;
            bp.dhcp4 = Some(cfg);
        }
        (None, _) if !managed_tap => {
            bp.notes
                .push(format!("no IPv4 address on {pod_link}: plain L2, no DHCP"));
        }
        _ => {}
    }
    if !managed_tap
        && link
            .addresses
            .iter()
            .any(|a| matches!(a, IpNet::V6(n) if is_global_unicast(IpAddr::V6(n.addr()))))
    {
        bp.notes.push(format!(
            "IPv6 addresses of {pod_link} stay on the dummy; the guest gets none by DHCP (as in KubeVirt)"
        ));
    }
    Ok(bp)
}

/// KubeVirt's fake bridge address: `169.254.75.1` followed by the interface's position
/// (`…75.10` for the first, `…75.110` for the eleventh); netbind continues at
/// `169.254.76.1` where that stops being an address.
pub fn fake_bridge_address(ctx: &Ctx<'_>) -> Result<Ipv4Addr, PlanError> {
    fake_address_for(ctx.index).ok_or_else(|| PlanError::FakeAddressExhausted {
        interface: ctx.iface.name.clone(),
        index: ctx.index,
    })
}

pub fn fake_address_for(index: usize) -> Option<Ipv4Addr> {
    match index {
        0..=9 => Some(Ipv4Addr::new(169, 254, 75, 10 + index as u8)),
        10..=55 => Some(Ipv4Addr::new(169, 254, 75, 100 + index as u8)),
        _ => {
            let k = index - 56;
            let third = 76 + k / 254;
            let fourth = 1 + k % 254;
            Some(Ipv4Addr::new(
                169,
                254,
                u8::try_from(third).ok()?,
                fourth as u8,
            ))
        }
    }
}

/// The IPv4 router and classless routes for a bridged guest: the pod's IPv4 routes on
/// the pod link, minus the connected one, default route last.
fn routes_for(
    ctx: &Ctx<'_>,
    pod_link: &str,
    address: Ipv4Net,
) -> (Option<Ipv4Addr>, Vec<ClasslessRoute>) {
    let mut others = Vec::new();
    let mut defaults = Vec::new();
    for r in ctx.pod.routes.iter().filter(|r| r.dev == pod_link) {
        let IpNet::V4(dst) = r.destination else {
            continue;
        };
        let gateway = match r.gateway {
            None => Ipv4Addr::UNSPECIFIED,
            Some(IpAddr::V4(g)) => g,
            Some(IpAddr::V6(_)) => continue,
        };
        let dst = dst.trunc();
        if dst.prefix_len() == 0 {
            defaults.push(ClasslessRoute {
                destination: dst,
                gateway,
            });
        } else if dst != address.trunc() {
            others.push(ClasslessRoute {
                destination: dst,
                gateway,
            });
        }
    }
    let router = defaults
        .iter()
        .map(|r| r.gateway)
        .chain(others.iter().map(|r| r.gateway))
        .find(|g| !g.is_unspecified());
    others.extend(defaults);
    (router, others)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_addresses_follow_kubevirt_then_continue() {
        assert_eq!(fake_address_for(0), Some(Ipv4Addr::new(169, 254, 75, 10)));
        assert_eq!(fake_address_for(9), Some(Ipv4Addr::new(169, 254, 75, 19)));
        assert_eq!(fake_address_for(10), Some(Ipv4Addr::new(169, 254, 75, 110)));
        assert_eq!(fake_address_for(55), Some(Ipv4Addr::new(169, 254, 75, 155)));
        assert_eq!(fake_address_for(56), Some(Ipv4Addr::new(169, 254, 76, 1)));
        assert_eq!(
            fake_address_for(56 + 254),
            Some(Ipv4Addr::new(169, 254, 77, 1))
        );
        assert_eq!(fake_address_for(56 + 254 * 180), None);
    }
}
