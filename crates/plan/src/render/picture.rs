//! The wiring of a plan as a picture: one row per interface, one column per stage, from
//! the guest NIC to the network the pod link leads to. [`super::dot`] and [`super::svg`]
//! both draw this picture and decide nothing of their own, so the two never disagree.
//!
//! How it works: [`picture`] walks each [`InterfacePlan`] and puts what the plan holds
//! into fixed stages ([`Stage`]): the guest NIC (model, MAC, PCI address, guest
//! addresses); the device the hypervisor attaches it to (tap, macvtap, the engine's
//! socket, the SR-IOV VF); the bridge or the user-mode engine between that device and the
//! pod; the NAT (masquerade's nftables); the pod link; the network (the pod network or the
//! Multus NetworkAttachmentDefinition). A stage the interface has no piece for is left
//! empty and the edge skips it. A device that *is* the pod link (a `tap` plugin's
//! macvtap, made by its CNI) is drawn once, as the pod link.
//!
//! Invariants: within a row, nodes are in strictly increasing stage order with at most
//! one node per stage (two pieces of one stage share a node); the edges join consecutive
//! nodes, `from < to`; every node has at least one line. Labels are plain text, escaped
//! by each renderer. Nothing here fails or panics, whatever the plan holds.

use std::collections::BTreeMap;

use crate::model::{GuestBackend, InterfacePlan, LinkState, LinkStep, NetworkPlan, Source};
use crate::nftables::{NftAction, NftMatch, NftRuleset, PortSet};

/// The columns of the picture, left to right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Guest,
    Device,
    Switch,
    Nat,
    PodLink,
    Network,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Guest,
        Stage::Device,
        Stage::Switch,
        Stage::Nat,
        Stage::PodLink,
        Stage::Network,
    ];

    /// The column index, 0 for the guest NIC.
    pub fn column(self) -> usize {
        self as usize
    }

    /// The column heading.
    pub fn title(self) -> &'static str {
        match self {
            Stage::Guest => "guest NIC",
            Stage::Device => "device",
            Stage::Switch => "bridge / engine",
            Stage::Nat => "NAT",
            Stage::PodLink => "pod link",
            Stage::Network => "network",
        }
    }
}

/// What a node is; renderers colour by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nic,
    Tap,
    Macvtap,
    /// The engine's stream socket.
    Socket,
    /// The engine's vhost-user socket.
    VhostUser,
    Vf,
    Bridge,
    Engine,
    Nat,
    PodLink,
    Network,
}

impl Kind {
    /// A short name, usable as a CSS class or a DOT identifier part.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Nic => "nic",
            Kind::Tap => "tap",
            Kind::Macvtap => "macvtap",
            Kind::Socket => "socket",
            Kind::VhostUser => "vhost-user",
            Kind::Vf => "vf",
            Kind::Bridge => "bridge",
            Kind::Engine => "engine",
            Kind::Nat => "nat",
            Kind::PodLink => "podlink",
            Kind::Network => "network",
        }
    }

    /// Fill colour; DOT and SVG use the same palette.
    pub fn fill(self) -> &'static str {
        match self {
            Kind::Nic => "#dbeafe",
            Kind::Tap | Kind::Macvtap | Kind::Socket | Kind::VhostUser => "#e0e7ff",
            Kind::Vf => "#fde68a",
            Kind::Bridge => "#dcfce7",
            Kind::Engine => "#ccfbf1",
            Kind::Nat => "#fee2e2",
            Kind::PodLink => "#f3e8ff",
            Kind::Network => "#e5e7eb",
        }
    }
}

/// One box: a heading line, then details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub stage: Stage,
    pub kind: Kind,
    /// `lines[0]` is the heading; never empty.
    pub lines: Vec<String>,
    /// Planned but not there as a netdev in the pod (an SR-IOV VF's pod link): drawn dashed.
    pub missing: bool,
}

/// An arrow between two nodes of one row (indices into [`Row::nodes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    /// How the two are joined (`port`, `NAT`, `sockets`…); may be empty.
    pub label: String,
}

/// One interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `default: masquerade (binding masquerade)`.
    pub caption: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// `Kind/namespace/name (pod view: …)`.
    pub title: String,
    /// The plan's notes (assumptions, left-out interfaces).
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
}

pub fn picture(plan: &NetworkPlan) -> Picture {
    Picture {
        title: format!("{}  (pod view: {})", plan.object, plan.pod_view),
        notes: plan.notes.clone(),
        rows: plan.interfaces.iter().map(row).collect(),
    }
}

/// One picture of several plans (a file with several VMs): one image, one graph. With
/// one plan it is that plan's picture; with more, each row's caption and each note
/// starts with its object.
pub fn picture_all(plans: &[NetworkPlan]) -> Picture {
    if let [one] = plans {
        return picture(one);
    }
    let mut all = Picture {
        title: format!("{} objects", plans.len()),
        notes: Vec::new(),
        rows: Vec::new(),
    };
    for plan in plans {
        let p = picture(plan);
        all.notes
            .extend(p.notes.into_iter().map(|n| format!("{}: {n}", plan.object)));
        all.rows.extend(p.rows.into_iter().map(|mut r| {
            r.caption = format!("{}: {}", plan.object, r.caption);
            r
        }));
    }
    all
}

fn row(i: &InterfacePlan) -> Row {
    let mut stages: BTreeMap<Stage, Node> = BTreeMap::new();
    let mut put = |stage: Stage, kind: Kind, mut lines: Vec<String>, missing: bool| {
        lines.retain(|l| !l.is_empty());
        let lines = if lines.is_empty() {
            vec![kind.as_str().to_string()]
        } else {
            lines
        };
        match stages.get_mut(&stage) {
            Some(node) => {
                node.lines.extend(lines);
                node.missing |= missing;
            }
            None => {
                stages.insert(
                    stage,
                    Node {
                        stage,
                        kind,
                        lines,
                        missing,
                    },
                );
            }
        }
    };

    put(Stage::Guest, Kind::Nic, nic(i), false);

    // The device the hypervisor opens, unless it is the pod link itself.
    let pod_link = i.pod_link.name.as_str();
    let mut pod_link_extra = Vec::new();
    match &i.guest.backend {
        GuestBackend::Tap { device } if device == pod_link => {
            pod_link_extra.push("tap, opened by the hypervisor".to_string());
        }
        GuestBackend::Tap { device } => {
            let mut lines = vec![format!("tap {device}")];
            match created_tap(i, device) {
                Some(detail) => lines.push(detail),
                None => lines.push("made by the CNI plugin".into()),
            }
            put(Stage::Device, Kind::Tap, lines, false);
        }
        GuestBackend::Macvtap { device, fd, path } => {
            let mut lines = vec![format!("macvtap, QEMU fd {fd}")];
            if let Some(p) = path {
                lines.push(p.clone());
            }
            if device == pod_link {
                pod_link_extra.extend(lines);
            } else {
                lines[0] = format!("macvtap {device}");
                lines.insert(1, format!("QEMU fd {fd}"));
                put(Stage::Device, Kind::Macvtap, lines, false);
            }
        }
        GuestBackend::Hostdev { pci_address } => put(
            Stage::Device,
            Kind::Vf,
            vec![format!("VF {pci_address}"), "vfio-pci passthrough".into()],
            false,
        ),
        GuestBackend::Stream { socket } => put(
            Stage::Device,
            Kind::Socket,
            vec!["unix socket".into(), socket.clone()],
            false,
        ),
        GuestBackend::VhostUser { socket, .. } => put(
            Stage::Device,
            Kind::VhostUser,
            vec!["vhost-user socket".into(), socket.clone()],
            false,
        ),
    }

    if let Some(u) = &i.usernet {
        let mut lines = vec![
            "usernet engine".to_string(),
            format!("tcp {}", u.tcp.spec()),
            format!("udp {}", u.udp.spec()),
        ];
        if let Some(g) = u.gateway4 {
            lines.push(format!("gateway {g}"));
        }
        if let Some(g) = u.gateway6 {
            lines.push(format!("gateway {g}"));
        }
        put(Stage::Switch, Kind::Engine, lines, false);
    }
    for step in &i.links {
        if let LinkStep::CreateBridge { name, .. } = step {
            let mut lines = vec![format!("bridge {name}")];
            lines.extend(added_addresses(i, name));
            lines.extend(services_on(i, name));
            put(Stage::Switch, Kind::Bridge, lines, false);
        }
    }

    if let Some(nft) = &i.nftables {
        let mut lines = vec!["nftables NAT".to_string()];
        lines.extend(nft.summary().split(", ").map(str::to_string));
        lines.extend(dnat_ports(nft));
        put(Stage::Nat, Kind::Nat, lines, false);
    }

    put(
        Stage::PodLink,
        Kind::PodLink,
        pod_link_lines(i, pod_link_extra),
        !i.pod_link.present,
    );

    let network = match &i.source {
        Source::Pod => vec!["pod network".to_string(), "cluster network".into()],
        Source::Multus {
            network_name,
            default,
        } => vec![
            format!("NAD {network_name}"),
            if *default {
                "Multus default network".into()
            } else {
                "Multus".into()
            },
        ],
    };
    put(Stage::Network, Kind::Network, network, false);

    let nodes: Vec<Node> = stages.into_values().collect();
    let edges = nodes
        .windows(2)
        .enumerate()
        .map(|(n, pair)| Edge {
            from: n,
            to: n + 1,
            label: edge_label(pair[0].kind, pair[1].kind).to_string(),
        })
        .collect();
    let state = match i.state {
        LinkState::Up => "",
        LinkState::Down => ", link down",
    };
    Row {
        caption: format!(
            "{}: {} (binding {}{state})",
            i.name,
            i.method.as_str(),
            i.binding
        ),
        nodes,
        edges,
    }
}

fn nic(i: &InterfacePlan) -> Vec<String> {
    let g = &i.guest;
    let mut lines = vec![format!("NIC {}", g.alias)];
    if g.model.is_empty() {
        lines.push(g.qemu_driver.clone());
    } else {
        lines.push(format!("model {}", g.model));
    }
    if let Some(mac) = &g.mac {
        lines.push(format!("mac {mac}"));
    }
    if let Some(pci) = &g.pci_address {
        lines.push(format!("pci {pci}"));
    }
    lines.extend(super::table::guest_address_list(i));
    if g.link_down {
        lines.push("link down".into());
    }
    lines
}

/// `mtu 1500, 4 queues, owner 107:107` for a tap the plan creates.
fn created_tap(i: &InterfacePlan, device: &str) -> Option<String> {
    i.links.iter().find_map(|s| match s {
        LinkStep::CreateTap {
            name,
            mtu,
            queues,
            uid,
            gid,
        } if name == device => {
            let queues = if *queues > 1 {
                format!(", {queues} queues")
            } else {
                String::new()
            };
            Some(format!("mtu {mtu}{queues}, owner {uid}:{gid}"))
        }
        _ => None,
    })
}

fn added_addresses(i: &InterfacePlan, link: &str) -> Vec<String> {
    i.links
        .iter()
        .filter_map(|s| match s {
            LinkStep::AddAddress { link: l, address } if l == link => Some(address.to_string()),
            _ => None,
        })
        .collect()
}

/// `serves DHCPv4, DHCPv6, RA` when the plan's servers listen on `link`.
fn services_on(i: &InterfacePlan, link: &str) -> Vec<String> {
    let mut names = Vec::new();
    if i.dhcp4.as_ref().is_some_and(|d| d.interface == link) {
        names.push("DHCPv4");
    }
    if i.dhcp6.as_ref().is_some_and(|d| d.interface == link) {
        names.push("DHCPv6");
    }
    if i.ra.as_ref().is_some_and(|r| r.interface == link) {
        names.push("RA");
    }
    if names.is_empty() {
        Vec::new()
    } else {
        vec![format!("serves {}", names.join(", "))]
    }
}

/// The inbound ports NAT sends to the guest: `DNAT tcp 80`, or `DNAT all ports`.
fn dnat_ports(nft: &NftRuleset) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let rules = nft
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules);
    for rule in rules.filter(|r| matches!(r.action, NftAction::Dnat { .. })) {
        let ports: Vec<String> = rule
            .matches
            .iter()
            .filter_map(|m| match m {
                NftMatch::Dport { protocol, ports } => {
                    let ports = match ports {
                        PortSet::One(p) => p.to_string(),
                        PortSet::Set(v) => {
                            v.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
                        }
                        PortSet::Range(a, b) => format!("{a}-{b}"),
                    };
                    Some(format!("{} {ports}", protocol.as_str()))
                }
                _ => None,
            })
            .collect();
        let line = if ports.is_empty() {
            "DNAT all ports".to_string()
        } else {
            format!("DNAT {}", ports.join(" "))
        };
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines
}

fn pod_link_lines(i: &InterfacePlan, extra: Vec<String>) -> Vec<String> {
    let pl = &i.pod_link;
    let mut lines = vec![pl.name.clone()];
    if !pl.present {
        lines.push("no netdev in the pod".into());
    }
    for step in &i.links {
        match step {
            LinkStep::RenameLink { from, to } if *from == pl.name => {
                lines.push(format!("renamed {to}"));
            }
            LinkStep::CreateDummy { name, .. } if *name == pl.name => {
                lines.push("a dummy keeps its name".into());
            }
            _ => {}
        }
    }
    if pl.present {
        lines.extend(pl.addresses.iter().map(ToString::to_string));
        lines.push(format!("mtu {}", pl.mtu));
    }
    lines.extend(extra);
    lines
}

/// How two neighbouring pieces are joined.
fn edge_label(from: Kind, to: Kind) -> &'static str {
    match (from, to) {
        (Kind::Nic, Kind::Vf) => "passthrough",
        (Kind::Nic, Kind::Socket) => "stream",
        (Kind::Socket, Kind::Engine) => "frames",
        (Kind::Nic, Kind::VhostUser) => "vhost-user",
        (Kind::VhostUser, Kind::Engine) => "virtqueues",
        (Kind::Tap | Kind::Macvtap, Kind::Bridge) => "port",
        (Kind::Bridge, Kind::Nat) => "routed",
        (Kind::Nat, Kind::PodLink) => "masquerade",
        (Kind::Bridge, Kind::PodLink) => "port",
        (Kind::Engine, Kind::PodLink) => "sockets",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_interface() -> InterfacePlan {
        serde_json::from_value(serde_json::json!({
            "name": "x", "network": "x", "source": {"kind": "pod"}, "method": "bridge",
            "binding": "bridge", "state": "up",
            "podLink": {"name": "eth0", "present": true, "mtu": 1500},
            "guest": {"alias": "ua-x", "model": "", "qemuDriver": "", "queues": 1,
                      "linkDown": false, "backend": {"kind": "tap", "device": ""},
                      "libvirtXml": "", "qemuArgs": []}
        }))
        .expect("a minimal interface plan")
    }

    #[test]
    fn nodes_never_have_empty_lines_and_edges_join_neighbours() {
        let plan = NetworkPlan {
            interfaces: vec![empty_interface()],
            ..NetworkPlan::default()
        };
        let p = picture(&plan);
        let row = &p.rows[0];
        assert!(row.nodes.iter().all(|n| !n.lines.is_empty()));
        assert!(row.nodes.windows(2).all(|w| w[0].stage < w[1].stage));
        assert_eq!(row.edges.len(), row.nodes.len() - 1);
        assert!(row.edges.iter().all(|e| e.from + 1 == e.to));
    }

    #[test]
    fn a_tap_that_is_the_pod_link_is_drawn_once_as_the_pod_link() {
        let mut i = empty_interface();
        i.guest.backend = GuestBackend::Tap {
            device: "eth0".into(),
        };
        let plan = NetworkPlan {
            interfaces: vec![i],
            ..NetworkPlan::default()
        };
        let stages: Vec<Stage> = picture(&plan).rows[0]
            .nodes
            .iter()
            .map(|n| n.stage)
            .collect();
        assert_eq!(stages, [Stage::Guest, Stage::PodLink, Stage::Network]);
    }
}
