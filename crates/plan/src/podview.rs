//! The pod view: what the pod's network namespace holds before netbind touches it.
//!
//! Planning needs to know the pod's links (names, MACs, MTUs, addresses), routes, DNS
//! configuration, hostname, Multus `network-status` and the device plugins' environment.
//! The view comes from a file (`--pod-view`, YAML or JSON in this shape), from a live
//! namespace (read-only, crate `netbind-netns`), or is [`PodView::typical`] — a pod as a
//! common CNI (bridge + host-local) leaves it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

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
                    if let Some(addr) = words.next().and_then(|w| w.split('%').next()?.parse().ok()) {
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
        self.links.iter().flat_map(|l| l.addresses.iter().copied()).collect()
    }
}

impl PodView {
    /// The view assumed when none is given: a pod as a typical CNI (bridge + host-local)
    /// leaves it. (Skeleton: the planner fills it in.)
    pub fn typical(obj: &netbind_spec::VmObject) -> PodView {
        let _ = obj;
        PodView { source: "default".into(), ..PodView::default() }
    }
}
