//! Masquerade binding: the guest sits behind NAT in the pod.
//!
//! Links (KubeVirt's): bridge `k6t-<stem>` with MAC 02:00:00:00:00:00 and the pod link's
//! MTU, holding the gateway address of the VM network — the first host of
//! `vmNetworkCIDR` (default 10.0.2.0/24 → 10.0.2.1/24) when the pod link has IPv4, of
//! `vmIPv6NetworkCIDR` (default fd10:0:2::/120 → fd10:0:2::1/120) when it has IPv6; and
//! the tap, enslaved. The guest gets the second host (10.0.2.2, fd10:0:2::2).
//! Sysctls: `net.ipv4.ip_forward=1` and `route_localnet=1` on the bridge (so DNAT from
//! 127.0.0.1 to the guest routes) with IPv4; `net.ipv6.conf.all.forwarding=1` with IPv6.
//!
//! NAT ([`nat_ruleset`]), per family with an address on the pod link, table `netbind`
//! ([`NAT_TABLE`]; KubeVirt uses `nat`, which iptables-nft owns, see there):
//! base chains prerouting (nat, -100), input (nat, 100), output (nat, -100), postrouting
//! (nat, 100) and regular chains KUBEVIRT_PREINBOUND / KUBEVIRT_POSTINBOUND. Rules, in
//! KubeVirt's order:
//! - postrouting: `saddr <vm> masquerade` (the guest's traffic leaves as the pod);
//! - prerouting: `iifname <pod link> jump KUBEVIRT_PREINBOUND`;
//! - postrouting: `oifname <bridge> jump KUBEVIRT_POSTINBOUND`;
//! - output and POSTINBOUND: `tcp dport { 49152, 49153 } saddr <loopback> return` — the
//!   libvirt migration ports stay with the pod (KubeVirt adds these for its legacy
//!   migration transport; netbind always keeps them out);
//! - per `ports[]` entry: PREINBOUND DNAT of that port to the guest, POSTINBOUND SNAT to
//!   the gateway of traffic from loopback, output DNAT of traffic to loopback; the same
//!   for each `portRanges[]` entry (when the PortRangesSpec gate is on);
//! - no ports: PREINBOUND DNAT of everything, POSTINBOUND SNAT from loopback, output DNAT
//!   of loopback to the guest.
//!
//! With Istio (`sidecar.istio.io/inject: "true"`) the sidecar owns inbound traffic: no
//! blanket DNAT; the Envoy ports (15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021,
//! 15053, 15090) `return` from loopback and from Envoy's 127.0.0.6 in output and
//! POSTINBOUND (KubeVirt matches only 127.0.0.1, so Envoy's inbound passthrough of a
//! connection to pod IP:15000 is DNATed to the guest there); only SSH (22) is DNATed
//! from outside; traffic from Envoy's 127.0.0.6 is SNATed like loopback; output DNAT
//! covers the pod's own IPv4 address as well as loopback.
//!
//! DHCPv4 (server = gateway on the bridge) and, for IPv6, DHCPv6 as KubeVirt, plus router
//! advertisements (a netbind extra) so the guest gets its IPv6 default route.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netbind_spec::cluster::GATE_PORT_RANGES;
use netbind_spec::naming;

pub use super::shared::{ISTIO_ENVOY_PORTS, port_number};

use super::ctx::{BindingPlan, Ctx};
use super::shared::{first_global_v4, first_global_v6, guest_tap};
use crate::dhcp;
use crate::error::PlanError;
use crate::model::{LinkStep, Sysctl};
use crate::nftables::{
    AddrSet, BaseChain, L4Proto, NftAction, NftChain, NftFamily, NftMatch, NftRule, NftRuleset,
    NftTable, PortSet,
};

pub const BRIDGE_MAC: &str = "02:00:00:00:00:00";
pub const DEFAULT_VM_CIDR: &str = "10.0.2.0/24";
pub const DEFAULT_VM_IPV6_CIDR: &str = "fd10:0:2::/120";
pub const MIGRATION_PORTS: [u16; 2] = [49152, 49153];
/// Ports Istio does not proxy, DNATed to the guest even with the sidecar.
pub const ISTIO_NON_PROXIED_PORTS: [u16; 1] = [22];
/// Where Envoy connects to local workloads from.
pub const ISTIO_LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

/// netbind's NAT table (per family). Not `nat`: that table belongs to iptables-nft, which
/// refuses to list or restore a `nat` table holding chains it did not make (`iptables-save
/// -t nat` fails with "Table `nat' is incompatible"), and Istio's tooling reads and repairs
/// its capture rules with iptables-save/restore. The base chains keep the priorities of
/// iptables' `nat` chains (-100 / 100), so the precedence against them is what it was.
pub const NAT_TABLE: &str = "netbind";

pub const PREINBOUND: &str = "KUBEVIRT_PREINBOUND";
pub const POSTINBOUND: &str = "KUBEVIRT_POSTINBOUND";

/// One address family of the NAT: gateway and guest addresses, prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyNet {
    pub gateway: IpAddr,
    pub guest: IpAddr,
    pub prefix_len: u8,
}

/// Ports forwarded inbound, as written (protocol, port or inclusive range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub protocol: L4Proto,
    pub start: u16,
    pub end: u16,
    pub is_range: bool,
}

/// Inputs of [`nat_ruleset`].
#[derive(Debug, Clone)]
pub struct NatInput {
    pub pod_link: String,
    pub bridge: String,
    pub v4: Option<FamilyNet>,
    pub v6: Option<FamilyNet>,
    /// The pod link's first IPv4 address (Istio DNATs traffic to it from the pod itself).
    pub pod_ipv4: Option<Ipv4Addr>,
    pub ports: Vec<Forward>,
    pub istio: bool,
}

pub fn plan(ctx: &Ctx<'_>) -> Result<BindingPlan, PlanError> {
    let link = ctx.require_link()?;
    let pod_link = link.name.clone();
    let bridge = naming::bridge_name(&pod_link);
    let tap = ctx.tap_name();
    let mtu = link.mtu;
    let pod_v4 = first_global_v4(&link.addresses);
    let pod_v6 = first_global_v6(&link.addresses);
    let mut bp = BindingPlan::default();

    let pod_net = ctx.network.pod.as_ref();
    let v4 = match pod_v4 {
        Some(_) => {
            let written = pod_net
                .and_then(|p| p.vm_network_cidr.clone())
                .filter(|c| !c.is_empty());
            Some(vm_net(
                &ctx.network.name,
                "vmNetworkCIDR",
                written.as_deref().unwrap_or(DEFAULT_VM_CIDR),
                false,
            )?)
        }
        None => None,
    };
    let v6 = match pod_v6 {
        Some(_) => {
            let written = pod_net
                .and_then(|p| p.vm_ipv6_network_cidr.clone())
                .filter(|c| !c.is_empty());
            Some(vm_net(
                &ctx.network.name,
                "vmIPv6NetworkCIDR",
                written.as_deref().unwrap_or(DEFAULT_VM_IPV6_CIDR),
                true,
            )?)
        }
        None => None,
    };

    bp.links.push(LinkStep::CreateBridge {
        name: bridge.clone(),
        mac: Some(BRIDGE_MAC.into()),
        mtu,
    });
    for f in [v4, v6].into_iter().flatten() {
        if let Ok(net) = IpNet::new(f.gateway, f.prefix_len) {
            bp.links.push(LinkStep::AddAddress {
                link: bridge.clone(),
                address: net,
            });
        }
    }
    bp.links.push(LinkStep::SetUp {
        link: bridge.clone(),
    });
    bp.links
        .extend(guest_tap(&tap, &bridge, mtu, ctx.tap_queues()));
    if v4.is_some() {
        bp.sysctls.push(Sysctl::new("net.ipv4.ip_forward", "1"));
        bp.sysctls.push(Sysctl::new(
            format!("net.ipv4.conf.{bridge}.route_localnet"),
            "1",
        ));
    }
    if v6.is_some() {
        bp.sysctls
            .push(Sysctl::new("net.ipv6.conf.all.forwarding", "1"));
        bp.notes.push(format!(
            "IPv6 forwarding makes the pod ignore router advertisements on {pod_link}; its IPv6 default route must be static (CNI-made routes are)"
        ));
    }
    if v4.is_none() && v6.is_none() {
        bp.notes.push(format!(
            "no global address on {pod_link}: nothing to masquerade, no NAT and no DHCP"
        ));
        return Ok(bp);
    }

    let ports = forwards(ctx, &mut bp.notes)?;
    let nat = NatInput {
        pod_link: pod_link.clone(),
        bridge: bridge.clone(),
        v4,
        v6,
        pod_ipv4: pod_v4.map(|n| n.addr()),
        ports,
        istio: ctx.istio,
    };
    bp.nftables = Some(nat_ruleset(&nat));

    if let Some(FamilyNet {
        gateway: IpAddr::V4(gw),
        guest: IpAddr::V4(vm),
        prefix_len,
    }) = v4
    {
        let address = Ipv4Net::new(vm, prefix_len).unwrap_or_default();
        bp.dhcp4 = Some(dhcp::dhcp4(
            ctx,
            &bridge,
            gw,
            address,
            Some(gw),
            Vec::new(),
            &mut bp.notes,
        )?);
    }
    if let Some(FamilyNet {
        guest: IpAddr::V6(vm),
        prefix_len,
        ..
    }) = v6
    {
        bp.dhcp6 = Some(dhcp::dhcp6(ctx, &bridge, vm, &mut bp.notes));
        let prefix = Ipv6Net::new(vm, prefix_len).unwrap_or_default().trunc();
        bp.ra = Some(dhcp::ra(ctx, &bridge, BRIDGE_MAC, prefix, &mut bp.notes));
    }
    Ok(bp)
}

/// Gateway (first host) and guest (second host) of a VM network CIDR.
pub fn vm_net(
    network: &str,
    field: &'static str,
    cidr: &str,
    v6: bool,
) -> Result<FamilyNet, PlanError> {
    let err = |reason| PlanError::BadCidr {
        network: network.into(),
        field,
        cidr: cidr.into(),
        reason,
    };
    let net: IpNet = cidr
        .parse()
        .map_err(|_| err("is not a network like 10.0.2.0/24"))?;
    match (net, v6) {
        (IpNet::V4(n), false) => {
            if n.prefix_len() > 30 {
                return Err(err(
                    "is too small: the gateway and the VM need two host addresses",
                ));
            }
            let base = u32::from(n.trunc().addr());
            Ok(FamilyNet {
                gateway: IpAddr::V4(Ipv4Addr::from(base.wrapping_add(1))),
                guest: IpAddr::V4(Ipv4Addr::from(base.wrapping_add(2))),
                prefix_len: n.prefix_len(),
            })
        }
        (IpNet::V6(n), true) => {
            if n.prefix_len() > 126 {
                return Err(err(
                    "is too small: the gateway and the VM need two host addresses",
                ));
            }
            let base = u128::from(n.trunc().addr());
            Ok(FamilyNet {
                gateway: IpAddr::V6(Ipv6Addr::from(base.wrapping_add(1))),
                guest: IpAddr::V6(Ipv6Addr::from(base.wrapping_add(2))),
                prefix_len: n.prefix_len(),
            })
        }
        (_, false) => Err(err("is not an IPv4 network")),
        (_, true) => Err(err("is not an IPv6 network")),
    }
}

/// `ports[]` and (with the PortRangesSpec gate) `portRanges[]` as forwards.
fn forwards(ctx: &Ctx<'_>, notes: &mut Vec<String>) -> Result<Vec<Forward>, PlanError> {
    let iface = ctx.iface;
    let mut out = Vec::new();
    for p in &iface.ports {
        let Some(protocol) = protocol(p.protocol.as_deref(), notes) else {
            continue;
        };
        let port = port_number(&iface.name, "ports[].port", p.port)?;
        out.push(Forward {
            protocol,
            start: port,
            end: port,
            is_range: false,
        });
    }
    if !iface.port_ranges.is_empty() && !ctx.cluster.gate(GATE_PORT_RANGES) {
        notes.push("portRanges ignored: the PortRangesSpec feature gate is off".into());
        return Ok(out);
    }
    for r in &iface.port_ranges {
        let Some(protocol) = protocol(r.protocol.as_deref(), notes) else {
            continue;
        };
        let start = port_number(&iface.name, "portRanges[].start", r.start)?;
        let end = port_number(&iface.name, "portRanges[].end", r.end)?;
        if end < start {
            return Err(PlanError::OutOfRange {
                interface: iface.name.clone(),
                field: "portRanges[].end",
                value: r.end,
            });
        }
        out.push(Forward {
            protocol,
            start,
            end,
            is_range: true,
        });
    }
    Ok(out)
}

fn protocol(written: Option<&str>, notes: &mut Vec<String>) -> Option<L4Proto> {
    match written.unwrap_or("TCP").to_ascii_lowercase().as_str() {
        "" | "tcp" => Some(L4Proto::Tcp),
        "udp" => Some(L4Proto::Udp),
        other => {
            notes.push(format!(
                "protocol {other} is not forwarded (TCP and UDP only)"
            ));
            None
        }
    }
}

/// The NAT tables, one per family the pod has an address in.
pub fn nat_ruleset(input: &NatInput) -> NftRuleset {
    let mut tables = Vec::new();
    if let Some(f) = input.v4 {
        tables.push(nat_table(NftFamily::Ip, f, input));
    }
    if let Some(f) = input.v6 {
        tables.push(nat_table(NftFamily::Ip6, f, input));
    }
    NftRuleset { tables }
}

fn nat_table(family: NftFamily, net: FamilyNet, input: &NatInput) -> NftTable {
    let base = |hook: &str, priority: i32| BaseChain {
        kind: "nat".into(),
        hook: hook.into(),
        priority,
    };
    let mut prerouting = Vec::new();
    let mut output = Vec::new();
    let mut postrouting = Vec::new();
    let mut pre_in = Vec::new();
    let mut post_in = Vec::new();

    let loopback: IpAddr = match family {
        NftFamily::Ip => IpAddr::V4(Ipv4Addr::LOCALHOST),
        NftFamily::Ip6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    let guest = net.guest;
    let gateway = net.gateway;
    let dnat = || NftAction::Dnat { to: guest };
    let snat = || NftAction::Snat { to: gateway };

    postrouting.push(NftRule::new(
        vec![NftMatch::Saddr {
            addrs: AddrSet::One(guest),
        }],
        NftAction::Masquerade,
    ));
    prerouting.push(NftRule::new(
        vec![NftMatch::Iifname {
            name: input.pod_link.clone(),
        }],
        NftAction::Jump {
            chain: PREINBOUND.into(),
        },
    ));
    postrouting.push(NftRule::new(
        vec![NftMatch::Oifname {
            name: input.bridge.clone(),
        }],
        NftAction::Jump {
            chain: POSTINBOUND.into(),
        },
    ));

    let skip_from = |ports: &[u16], from: AddrSet| {
        NftRule::new(
            vec![
                NftMatch::Dport {
                    protocol: L4Proto::Tcp,
                    ports: PortSet::Set(ports.to_vec()),
                },
                NftMatch::Saddr { addrs: from },
            ],
            NftAction::Return,
        )
    };
    let skip = |ports: &[u16]| skip_from(ports, AddrSet::One(loopback));
    output.push(skip(&MIGRATION_PORTS));
    post_in.push(skip(&MIGRATION_PORTS));

    let mut dnat_addrs = vec![loopback];
    let mut snat_addrs = vec![loopback];
    if input.istio && family == NftFamily::Ip {
        if let Some(pod) = input.pod_ipv4 {
            dnat_addrs.push(IpAddr::V4(pod));
        }
        snat_addrs.push(IpAddr::V4(ISTIO_LOOPBACK));
    }

    for fwd in &input.ports {
        let ports = if fwd.is_range {
            PortSet::Range(fwd.start, fwd.end)
        } else {
            PortSet::One(fwd.start)
        };
        if input.istio {
            let kept: Vec<u16> = ISTIO_NON_PROXIED_PORTS
                .iter()
                .copied()
                .filter(|p| (fwd.start..=fwd.end).contains(p))
                .collect();
            if !kept.is_empty() {
                pre_in.push(NftRule::new(
                    vec![NftMatch::Dport {
                        protocol: L4Proto::Tcp,
                        ports: PortSet::Set(kept),
                    }],
                    dnat(),
                ));
            }
        } else {
            let pre_ports = if fwd.is_range {
                ports.clone()
            } else {
                PortSet::Set(vec![fwd.start])
            };
            pre_in.push(NftRule::new(
                vec![NftMatch::Dport {
                    protocol: fwd.protocol,
                    ports: pre_ports,
                }],
                dnat(),
            ));
        }
        post_in.push(NftRule::new(
            vec![
                NftMatch::Dport {
                    protocol: fwd.protocol,
                    ports: ports.clone(),
                },
                NftMatch::Saddr {
                    addrs: AddrSet::Set(snat_addrs.clone()),
                },
            ],
            snat(),
        ));
        output.push(NftRule::new(
            vec![
                NftMatch::Daddr {
                    addrs: AddrSet::Set(dnat_addrs.clone()),
                },
                NftMatch::Dport {
                    protocol: fwd.protocol,
                    ports,
                },
            ],
            dnat(),
        ));
    }

    if input.ports.is_empty() {
        if input.istio {
            // From 127.0.0.6 too: Envoy's inbound passthrough relays a connection it
            // captured on 15006 from there, to the original destination (pod IP:port).
            let envoy_from = AddrSet::Set(snat_addrs.clone());
            output.push(skip_from(&ISTIO_ENVOY_PORTS, envoy_from.clone()));
            post_in.push(skip_from(&ISTIO_ENVOY_PORTS, envoy_from));
            pre_in.push(NftRule::new(
                vec![NftMatch::Dport {
                    protocol: L4Proto::Tcp,
                    ports: PortSet::Set(ISTIO_NON_PROXIED_PORTS.to_vec()),
                }],
                dnat(),
            ));
        } else {
            pre_in.push(NftRule::new(vec![], dnat()));
        }
        post_in.push(NftRule::new(
            vec![NftMatch::Saddr {
                addrs: AddrSet::Set(snat_addrs.clone()),
            }],
            snat(),
        ));
        output.push(NftRule::new(
            vec![NftMatch::Daddr {
                addrs: AddrSet::Set(dnat_addrs.clone()),
            }],
            dnat(),
        ));
    }

    NftTable {
        family,
        name: NAT_TABLE.into(),
        chains: vec![
            NftChain {
                name: "prerouting".into(),
                base: Some(base("prerouting", -100)),
                rules: prerouting,
            },
            NftChain {
                name: "input".into(),
                base: Some(base("input", 100)),
                rules: vec![],
            },
            NftChain {
                name: "output".into(),
                base: Some(base("output", -100)),
                rules: output,
            },
            NftChain {
                name: "postrouting".into(),
                base: Some(base("postrouting", 100)),
                rules: postrouting,
            },
            NftChain {
                name: PREINBOUND.into(),
                base: None,
                rules: pre_in,
            },
            NftChain {
                name: POSTINBOUND.into(),
                base: None,
                rules: post_in,
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cidrs_give_gateway_one_and_guest_two() {
        let v4 = vm_net("default", "vmNetworkCIDR", DEFAULT_VM_CIDR, false).unwrap();
        assert_eq!(
            (v4.gateway.to_string(), v4.guest.to_string(), v4.prefix_len),
            ("10.0.2.1".into(), "10.0.2.2".into(), 24)
        );
        let v6 = vm_net("default", "vmIPv6NetworkCIDR", DEFAULT_VM_IPV6_CIDR, true).unwrap();
        assert_eq!(
            (v6.gateway.to_string(), v6.guest.to_string(), v6.prefix_len),
            ("fd10:0:2::1".into(), "fd10:0:2::2".into(), 120)
        );
    }

    #[test]
    fn host_bits_in_the_cidr_are_ignored_like_go_parsecidr() {
        let v4 = vm_net("default", "vmNetworkCIDR", "192.168.7.77/24", false).unwrap();
        assert_eq!(v4.gateway.to_string(), "192.168.7.1");
    }

    #[test]
    fn a_slash_31_is_too_small() {
        let e = vm_net("default", "vmNetworkCIDR", "10.0.0.0/31", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "network default: vmNetworkCIDR 10.0.0.0/31 is too small: the gateway and the VM need two host addresses"
        );
    }

    #[test]
    fn an_ipv6_cidr_in_the_ipv4_field_is_refused() {
        let e = vm_net("default", "vmNetworkCIDR", "fd00::/64", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "network default: vmNetworkCIDR fd00::/64 is not an IPv4 network"
        );
    }
}
