//! The pod view: what the pod's network namespace holds before netbind touches it.
//!
//! Planning needs to know the pod's links (names, MACs, MTUs, addresses), routes, DNS
//! configuration, hostname, Multus `network-status` and the device plugins' environment.
//! The view comes from a file (`--pod-view`, YAML or JSON in this shape), from a live
//! namespace (read-only, crate `netbind-netns`), or is [`PodView::typical`] — a pod as a
//! common CNI (bridge + host-local) leaves it.
//!
//! The typical pod ([`PodView::typical`], source `default`):
//! - `eth0`: kind veth, MAC `0a:58:0a:f4:00:05`, MTU 1500, `10.244.0.5/24` and
//!   `fd00:10:244::5/64`; routes `default via 10.244.0.1`, `10.244.0.0/24` (connected),
//!   `default via fd00:10:244::1`, `fd00:10:244::/64` (connected), all on `eth0`;
//! - DNS `10.96.0.10`, search `<ns>.svc.cluster.local svc.cluster.local cluster.local`;
//! - hostname: `spec.hostname`, else the VM's name;
//! - per secondary Multus network (not the Multus default, which *is* `eth0`) a link named
//!   by the hashed scheme (`pod<11 hex>`), MTU 1500, no addresses, MAC
//!   `0a:` + 5 bytes of sha256("pod-link/<network>"), kind `macvtap` when a binding plugin
//!   whose name contains `macvtap` uses it, else `veth`; no ifindex (so a macvtap's
//!   `/dev/tap<ifindex>` is left to the launcher). SR-IOV networks get no link:
//!   a VF bound to vfio-pci has no netdev in the pod;
//! - `network-status`: the cluster network (`kindnet`, default, eth0, both IPs, MAC), then
//!   each secondary network as `<namespace>/<name>` with its interface and MAC; an SR-IOV
//!   one with `device-info` of type `pci` and address `0000:65:SS.F`, the n-th (from 1)
//!   SR-IOV network at slot n/8, function n%8 (`0000:65:00.1`, `0000:65:00.2`…).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use netbind_spec::{VmObject, multus, naming};
use serde::{Deserialize, Serialize};

use crate::mac;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    /// Where this view came from: `default`, `file:<path>` or `netns:<name>`.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub links: Vec<PodLink>,
    #[serde(default)]
    pub routes: Vec<PodRoute>,
    #[serde(default)]
    pub dns: Dns,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The raw `k8s.v1.cni.cncf.io/network-status` annotation, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_status: Option<String>,
    /// Device plugin environment (`PCIDEVICE_<RESOURCE>=…`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodLink {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`, lower case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Addresses with their prefix length (`10.244.0.5/24`).
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// Link kind as netlink reports it (`veth`, `macvlan`, `bridge`…), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The kernel's interface index in the pod's namespace, when known (a live view has
    /// it). A macvtap's character device is `/dev/tap<ifindex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
}

fn default_mtu() -> u32 {
    1500
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRoute {
    /// Destination; `0.0.0.0/0` or `::/0` for a default route.
    pub destination: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Output link name.
    pub dev: String,
}

/// The pod's `/etc/resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    #[serde(default)]
    pub nameservers: Vec<IpAddr>,
    #[serde(default)]
    pub search: Vec<String>,
}

impl Dns {
    /// Parses resolv.conf text: `nameserver` and `search`/`domain` lines; the rest is ignored.
    pub fn from_resolv_conf(text: &str) -> Dns {
        let mut dns = Dns::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(addr) = words.next().and_then(|w| w.split('%').next()?.parse().ok())
                    {
                        dns.nameservers.push(addr);
                    }
                }
                Some("search") | Some("domain") => {
                    dns.search = words.map(str::to_string).collect();
                }
                _ => {}
            }
        }
        dns
    }
}

impl PodView {
    pub fn link(&self, name: &str) -> Option<&PodLink> {
        self.links.iter().find(|l| l.name == name)
    }

    /// Every address on every link.
    pub fn addresses(&self) -> Vec<IpNet> {
        self.links
            .iter()
            .flat_map(|l| l.addresses.iter().copied())
            .collect()
    }
}

impl PodView {
    /// The view assumed when none is given: a pod as a typical CNI (bridge + host-local)
    /// leaves it (see the module documentation for exactly what it holds).
    pub fn typical(obj: &VmObject) -> PodView {
        let eth0_v4: IpNet = "10.244.0.5/24"
            .parse()
            .unwrap_or_else(|_| unreachable_net());
        let eth0_v6: IpNet = "fd00:10:244::5/64"
            .parse()
            .unwrap_or_else(|_| unreachable_net());
        let mut links = vec![PodLink {
            name: naming::PRIMARY_POD_LINK.into(),
            mac: Some(TYPICAL_ETH0_MAC.into()),
            mtu: 1500,
            addresses: vec![eth0_v4, eth0_v6],
            kind: Some("veth".into()),
            ifindex: None,
        }];
        let route = |dst: &str, gw: Option<&str>| PodRoute {
            destination: dst.parse().unwrap_or_else(|_| unreachable_net()),
            gateway: gw.and_then(|g| g.parse().ok()),
            dev: naming::PRIMARY_POD_LINK.into(),
        };
        let routes = vec![
            route("0.0.0.0/0", Some("10.244.0.1")),
            route("10.244.0.0/24", None),
            route("::/0", Some("fd00:10:244::1")),
            route("fd00:10:244::/64", None),
        ];
        let ns = &obj.namespace;
        let dns = Dns {
            nameservers: vec![IpAddr::from([10, 96, 0, 10])],
            search: vec![
                format!("{ns}.svc.cluster.local"),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
        };
        let hostname = obj
            .spec
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| obj.name.clone());

        let mut status = vec![serde_json::json!({
            "name": "kindnet",
            "interface": "eth0",
            "ips": ["10.244.0.5", "fd00:10:244::5"],
            "mac": TYPICAL_ETH0_MAC,
            "default": true,
            "dns": {}
        })];
        let mut sriov_count = 0u32;
        for network in obj.networks() {
            let Some(multus) = network.multus.as_ref().filter(|m| !m.default) else {
                continue;
            };
            let iface = obj.interfaces().iter().find(|i| i.name == network.name);
            let link_name = naming::secondary_pod_link(&network.name);
            let (nad_ns, nad_name) = multus::nad_namespaced_name(ns, &multus.network_name);
            let status_name = format!("{nad_ns}/{nad_name}");
            if iface.is_some_and(|i| i.sriov.is_some()) {
                sriov_count += 1;
                let pci = format!("0000:65:{:02x}.{}", sriov_count / 8, sriov_count % 8);
                status.push(serde_json::json!({
                    "name": status_name,
                    "interface": link_name,
                    "dns": {},
                    "device-info": {"type": "pci", "version": "1.1.0", "pci": {"pci-address": pci}}
                }));
                continue;
            }
            let tap_plugin = iface
                .and_then(|i| i.binding.as_ref())
                .is_some_and(|b| b.name.contains("macvtap"));
            let mac = mac::derived_with_first(&format!("pod-link/{}", network.name), 0x0a);
            status.push(serde_json::json!({
                "name": status_name,
                "interface": link_name,
                "mac": mac,
                "dns": {}
            }));
            links.push(PodLink {
                name: link_name,
                mac: Some(mac),
                mtu: 1500,
                addresses: vec![],
                kind: Some(if tap_plugin { "macvtap" } else { "veth" }.into()),
                ifindex: None,
            });
        }
        PodView {
            source: "default".into(),
            links,
            routes,
            dns,
            hostname: Some(hostname),
            network_status: Some(serde_json::Value::Array(status).to_string()),
            env: BTreeMap::new(),
        }
    }
}

const TYPICAL_ETH0_MAC: &str = "0a:58:0a:f4:00:05";

/// Only reached if a literal above stops parsing; a host route keeps `typical` panic-free.
fn unreachable_net() -> IpNet {
    IpNet::from(IpAddr::from([0, 0, 0, 0]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netbind_spec::{Document, parse_documents};

    fn object(yaml: &str) -> VmObject {
        match parse_documents(yaml.as_bytes()).unwrap().remove(0) {
            Document::Vm(v) => *v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn typical_pod_has_dual_stack_eth0_and_cluster_dns() {
        let view = PodView::typical(&object(
            "kind: VirtualMachineInstance\nmetadata: {name: vm1, namespace: ns1}\nspec: {}\n",
        ));
        assert_eq!(view.source, "default");
        let eth0 = view.link("eth0").unwrap();
        assert_eq!(eth0.mac.as_deref(), Some("0a:58:0a:f4:00:05"));
        assert_eq!(
            eth0.addresses,
            vec![
                "10.244.0.5/24".parse::<IpNet>().unwrap(),
                "fd00:10:244::5/64".parse().unwrap()
            ]
        );
        assert_eq!(
            view.dns.search,
            vec![
                "ns1.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(view.hostname.as_deref(), Some("vm1"));
    }

    #[test]
    fn typical_pod_has_a_hashed_link_per_secondary_network() {
        let view = PodView::typical(&object(
            "kind: VirtualMachineInstance\nmetadata: {name: v}\nspec:\n  domain: {devices: {interfaces: [{name: blue, bridge: {}}]}}\n  networks: [{name: blue, multus: {networkName: blue-nad}}]\n",
        ));
        let link = view.link("pod16477688c0e").unwrap();
        assert!(link.addresses.is_empty());
        let status = multus::parse_network_status(view.network_status.as_deref().unwrap()).unwrap();
        assert_eq!(status[1].name, "default/blue-nad");
        assert_eq!(status[1].interface.as_deref(), Some("pod16477688c0e"));
    }

    #[test]
    fn typical_sriov_network_has_a_pci_address_and_no_link() {
        let view = PodView::typical(&object(
            "kind: VirtualMachineInstance\nmetadata: {name: v}\nspec:\n  domain: {devices: {interfaces: [{name: vf, sriov: {}}]}}\n  networks: [{name: vf, multus: {networkName: sriov/net}}]\n",
        ));
        assert_eq!(view.links.len(), 1);
        let status = multus::parse_network_status(view.network_status.as_deref().unwrap()).unwrap();
        assert_eq!(status[1].name, "sriov/net");
        assert_eq!(status[1].pci_address(), Some("0000:65:00.1"));
    }
}
