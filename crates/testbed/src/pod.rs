//! A pod as kubelet and Multus would leave it, built by the real CNI plugins.
//!
//! Layout of one fixture (every name carries the fixture id `<pid hex>x<n hex>`):
//!
//! ```text
//!  node netns (nb-node-…)                    pod netns (nb-pod-…)
//!   nbc<id> bridge 10.88.0.1/24, fd00:88::1/64 ── veth ── eth0 10.88.0.2/24, fd00:88::2/64
//!           (isGateway, forwarding on)       └─ veth ── peer netns eth0 10.88.0.3, fd00:88::3
//!   nbs<k><id> bridge [vlan N] ─────────────────── veth ── pod<hash>  (k-th secondary, bridge)
//!                                             └─ veth ── peer_k netns net1
//!   nbm<k><id> veth ── macvlan (bridge mode) ──────────── pod<hash>  (k-th secondary, macvlan)
//!                    └─ macvlan ───────────────────────── peer_k netns net1
//!   nbt<k><id> veth ── macvtap (bridge mode), moved ────── pod<hash>  (k-th, add_macvtap)
//!                    └─ macvlan ───────────────────────── peer_k netns net1
//! ```
//!
//! Subnets are fixed (cluster 10.88.0.0/24 + fd00:88::/64, the k-th secondary 10.88.k.0/24 +
//! fd00:88:k::/64, k = 1..=255, `<k>` in link names in hex) because every fixture has its
//! own node namespace and its own host-local `dataDir`: fixtures never share a link, a
//! lease or a route, so parallel tests cannot collide. Read the real addresses from the CNI
//! results anyway. A secondary without IPAM is plain L2 (the plugin gets `"ipam": {}`).
//! The pod namespace has a resolv.conf of its own only when the builder is given one
//! (`/etc/netns/<pod>/resolv.conf`, removed with the namespace).
//! Fields are declared in drop order: CNI DEL of every attachment runs before any
//! namespace is deleted, the IPAM directory goes last.

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::cni::{Cni, CniAttachment, CniResult};
use crate::netns::{Netns, unique_suffix};
use crate::{Error, Result};

/// The cluster network's name in configs and `network-status`.
pub const CLUSTER_NETWORK: &str = "nb-cluster";

/// How a secondary (Multus) network reaches the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondaryKind {
    /// The `bridge` plugin on a bridge of its own in the node namespace; with `vlan`, the
    /// bridge filters VLANs and the pod's port is an untagged member of that VLAN.
    Bridge { vlan: Option<u16> },
    /// The `macvlan` plugin (mode bridge) on a master in the node namespace (one end of a
    /// veth pair: this machine kind's kernel has no `dummy` driver).
    Macvlan,
}

/// What to attach: a Multus network as the VM spec names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secondary {
    /// `spec.networks[].name` of the VM: the pod link is `pod` + its hash.
    pub network: String,
    /// `namespace/name` of the NetworkAttachmentDefinition (`default/<network>` unless set).
    pub nad: String,
    pub kind: SecondaryKind,
    /// Whether the plugin gets `host-local` IPAM (dual stack); without it, plain L2.
    pub ipam: bool,
    pub mtu: u32,
    /// Whether to attach a peer namespace to the same network.
    pub peer: bool,
}

impl Secondary {
    /// A `bridge`-plugin network with IPAM, MTU 1500 and a peer.
    pub fn bridge(network: &str) -> Secondary {
        Secondary {
            network: network.to_string(),
            nad: format!("default/{network}"),
            kind: SecondaryKind::Bridge { vlan: None },
            ipam: true,
            mtu: 1500,
            peer: true,
        }
    }

    /// A `macvlan`-plugin network with IPAM, MTU 1500 and a peer.
    pub fn macvlan(network: &str) -> Secondary {
        Secondary {
            kind: SecondaryKind::Macvlan,
            ..Secondary::bridge(network)
        }
    }

    /// Puts the pod (and peer) port on VLAN `id` (bridge networks only).
    pub fn vlan(mut self, id: u16) -> Secondary {
        self.kind = SecondaryKind::Bridge { vlan: Some(id) };
        self
    }

    pub fn without_ipam(mut self) -> Secondary {
        self.ipam = false;
        self
    }

    pub fn mtu(mut self, mtu: u32) -> Secondary {
        self.mtu = mtu;
        self
    }

    pub fn nad(mut self, namespaced_name: &str) -> Secondary {
        self.nad = namespaced_name.to_string();
        self
    }

    pub fn without_peer(mut self) -> Secondary {
        self.peer = false;
        self
    }
}

/// An attached secondary network.
#[derive(Debug)]
pub struct SecondaryNet {
    pub spec: Secondary,
    /// The pod link: `netbind_spec::naming::secondary_pod_link(network)`.
    pub pod_link: String,
    /// The node-side device: the bridge, or the macvlan master.
    pub node_device: String,
    /// The configuration passed to the plugin.
    pub config: Value,
    /// ADD result for the pod.
    pub pod_attachment: CniAttachment,
    /// ADD result for the peer (`net1` in the peer namespace).
    pub peer_attachment: Option<CniAttachment>,
    pub peer: Option<Netns>,
}

impl SecondaryNet {
    pub fn result(&self) -> &CniResult {
        &self.pod_attachment.result
    }

    /// The peer's namespace; errors when the network was attached `without_peer`.
    pub fn peer(&self) -> Result<&Netns> {
        self.peer.as_ref().ok_or_else(|| {
            Error::Fixture(format!(
                "secondary network {} has no peer",
                self.spec.network
            ))
        })
    }

    pub fn peer_result(&self) -> Option<&CniResult> {
        self.peer_attachment.as_ref().map(|a| &a.result)
    }
}

/// A network of a macvtap binding plugin (see [`PodFixture::add_macvtap`]). The macvtap
/// goes with the pod namespace, the master with the node namespace.
#[derive(Debug)]
pub struct MacvtapNet {
    /// `spec.networks[].name` of the VM.
    pub network: String,
    /// `namespace/name` of the NetworkAttachmentDefinition.
    pub nad: String,
    /// The macvtap in the pod: `pod` + the hash of `network`.
    pub pod_link: String,
    /// The macvtap's MAC (the guest must use it: the macvtap only takes frames for it).
    pub mac: String,
    /// Its lower device in the node namespace.
    pub master: String,
    /// ADD result for the peer (`net1`, macvlan on the same master).
    pub peer_attachment: CniAttachment,
    pub peer: Netns,
}

impl MacvtapNet {
    pub fn peer_result(&self) -> &CniResult {
        &self.peer_attachment.result
    }
}

/// Options for [`PodFixture`].
#[derive(Debug, Clone)]
pub struct PodFixtureBuilder {
    mtu: u32,
    secondaries: Vec<Secondary>,
    resolv_conf: Option<String>,
}

impl PodFixtureBuilder {
    /// MTU of the cluster network (bridge, veths, pod `eth0`); default 1500.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = mtu;
        self
    }

    pub fn secondary(mut self, s: Secondary) -> Self {
        self.secondaries.push(s);
        self
    }

    /// The pod's `/etc/resolv.conf` as `ip netns exec` shows it (see
    /// [`Netns::set_resolv_conf`]); without it the pod namespace has none of its own.
    pub fn resolv_conf(mut self, text: &str) -> Self {
        self.resolv_conf = Some(text.to_string());
        self
    }

    pub fn build(self) -> Result<PodFixture> {
        let mut f = PodFixture::cluster_only(self.mtu)?;
        if let Some(text) = &self.resolv_conf {
            f.pod.set_resolv_conf(text)?;
        }
        for s in self.secondaries {
            f.add_secondary(s)?;
        }
        Ok(f)
    }
}

/// A pod namespace wired like kubelet + Multus would, plus peers (see the module docs).
#[derive(Debug)]
pub struct PodFixture {
    pub secondaries: Vec<SecondaryNet>,
    /// Networks of a macvtap binding plugin ([`PodFixture::add_macvtap`]).
    pub macvtaps: Vec<MacvtapNet>,
    pub pod_attachment: CniAttachment,
    pub peer_attachment: CniAttachment,
    pub peer: Netns,
    pub pod: Netns,
    pub node: Netns,
    /// `<pid hex>x<n hex>`, part of every link name the fixture creates.
    pub id: String,
    /// The cluster bridge in the node namespace.
    pub bridge: String,
    pub mtu: u32,
    /// The cluster network's configuration.
    pub cluster_config: Value,
    ipam_dir: tempfile::TempDir,
}

impl PodFixture {
    pub fn builder() -> PodFixtureBuilder {
        PodFixtureBuilder {
            mtu: 1500,
            secondaries: Vec::new(),
            resolv_conf: None,
        }
    }

    /// The cluster network only (MTU 1500).
    pub fn new() -> Result<PodFixture> {
        Self::builder().build()
    }

    fn cluster_only(mtu: u32) -> Result<PodFixture> {
        crate::require_privileges(&["ip", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local"])?;
        let suffix = unique_suffix();
        let (pid, n) = suffix.split_once('-').unwrap_or((&suffix, "0"));
        let id = format!(
            "{:x}x{:x}",
            pid.parse::<u32>().unwrap_or(0) & 0xfffff,
            n.parse::<u32>().unwrap_or(0)
        );
        let ipam_dir = tempfile::Builder::new()
            .prefix("nb-ipam-")
            .tempdir()
            .map_err(|source| Error::Io {
                what: "create a temp dir for host-local IPAM",
                path: std::env::temp_dir(),
                source,
            })?;
        let node = Netns::new("node")?;
        let pod = Netns::new("pod")?;
        let peer = Netns::new("peer")?;
        let bridge = format!("nbc{id}");
        let cluster_config = json!({
            "cniVersion": "1.0.0",
            "name": CLUSTER_NETWORK,
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "mtu": mtu,
            "ipam": {
                "type": "host-local",
                "dataDir": ipam_dir.path(),
                "ranges": [
                    [{"subnet": "10.88.0.0/24", "gateway": "10.88.0.1"}],
                    [{"subnet": "fd00:88::/64", "gateway": "fd00:88::1"}]
                ],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
            },
            "dns": {
                "nameservers": ["10.88.0.10"],
                "search": ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
            }
        });
        let pod_attachment = Cni::add(&node, &pod, "eth0", &cluster_config)?;
        let peer_attachment = Cni::add(&node, &peer, "eth0", &cluster_config)?;
        Ok(PodFixture {
            secondaries: Vec::new(),
            macvtaps: Vec::new(),
            pod_attachment,
            peer_attachment,
            peer,
            pod,
            node,
            id,
            bridge,
            mtu,
            cluster_config,
            ipam_dir,
        })
    }

    /// The pod's `eth0` CNI result.
    pub fn result(&self) -> &CniResult {
        &self.pod_attachment.result
    }

    pub fn peer_result(&self) -> &CniResult {
        &self.peer_attachment.result
    }

    /// The pod's address of one family (without prefix).
    pub fn pod_ip(&self, v6: bool) -> Result<IpAddr> {
        address(self.result(), v6, "pod eth0")
    }

    /// Every address (with its prefix) the CNI result gives the pod's `eth0`.
    pub fn pod_addresses(&self) -> Vec<IpNet> {
        self.result()
            .sandbox_ips()
            .iter()
            .map(|ip| ip.address)
            .collect()
    }

    /// The pod's `eth0` MAC as the plugin reported it, in lower case.
    pub fn pod_mac(&self) -> Result<String> {
        self.result()
            .mac()
            .filter(|m| !m.is_empty())
            .map(|m| m.to_ascii_lowercase())
            .ok_or_else(|| Error::Fixture("the pod's CNI result has no eth0 MAC".into()))
    }

    /// The cluster peer's address of one family (without prefix).
    pub fn peer_ip(&self, v6: bool) -> Result<IpAddr> {
        address(self.peer_result(), v6, "peer eth0")
    }

    /// Attaches a Multus network to the pod (and a peer, unless `without_peer`).
    pub fn add_secondary(&mut self, spec: Secondary) -> Result<&SecondaryNet> {
        let k = self.secondaries.len() + 1;
        if k > 255 {
            return Err(Error::Fixture(
                "a PodFixture holds at most 255 secondary networks".into(),
            ));
        }
        let pod_link = netbind_spec::naming::secondary_pod_link(&spec.network);
        let cni_name = spec.nad.rsplit('/').next().unwrap_or(&spec.nad).to_string();
        let ipam = if spec.ipam {
            json!({
                "type": "host-local",
                "dataDir": self.ipam_dir.path(),
                "ranges": [
                    [{"subnet": format!("10.88.{k}.0/24")}],
                    [{"subnet": format!("fd00:88:{k:x}::/64")}]
                ]
            })
        } else {
            json!({})
        };
        let (node_device, config) = match spec.kind {
            SecondaryKind::Bridge { vlan } => {
                if vlan.is_some() && !kernel_supports_bridge_vlans() {
                    return Err(Error::KernelUnsupported {
                        what: format!(
                            "a VLAN on bridge network {} (bridge vlan_filtering)",
                            spec.network
                        ),
                        kernel: kernel_release(),
                        hint: "it needs CONFIG_BRIDGE_VLAN_FILTERING; run VLAN tests on a kernel that has it".into(),
                    });
                }
                let bridge = node_link_name("nbs", k, &self.id)?;
                let mut c = json!({
                    "cniVersion": "1.0.0",
                    "name": cni_name,
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": false,
                    "ipMasq": false,
                    "mtu": spec.mtu,
                    "ipam": ipam
                });
                if let Some(v) = vlan {
                    c["vlan"] = json!(v);
                }
                (bridge, c)
            }
            SecondaryKind::Macvlan => {
                let master = node_link_name("nbm", k, &self.id)?;
                let mtu = spec.mtu.to_string();
                // A veth end, not a dummy: some test kernels lack the dummy driver.
                let other = node_link_name("nbn", k, &self.id)?;
                self.node.exec(&[
                    "ip", "link", "add", &master, "mtu", &mtu, "type", "veth", "peer", "name",
                    &other, "mtu", &mtu,
                ])?;
                self.node.exec(&["ip", "link", "set", &other, "up"])?;
                self.node.exec(&["ip", "link", "set", &master, "up"])?;
                let c = json!({
                    "cniVersion": "1.0.0",
                    "name": cni_name,
                    "type": "macvlan",
                    "master": master,
                    "mode": "bridge",
                    "mtu": spec.mtu,
                    "ipam": ipam
                });
                (master, c)
            }
        };
        let pod_attachment = Cni::add(&self.node, &self.pod, &pod_link, &config)?;
        let (peer, peer_attachment) = if spec.peer {
            let peer = Netns::new("peer")?;
            let a = Cni::add(&self.node, &peer, "net1", &config)?;
            (Some(peer), Some(a))
        } else {
            (None, None)
        };
        self.secondaries.push(SecondaryNet {
            spec,
            pod_link,
            node_device,
            config,
            pod_attachment,
            peer_attachment,
            peer,
        });
        Ok(self.secondaries.last().expect("just pushed"))
    }

    /// Detaches `network` from the pod as Multus does on a hot-unplug: CNI `DEL` of the
    /// pod's attachment. Its peer, if any, goes with it.
    pub fn remove_secondary(&mut self, network: &str) -> Result<()> {
        let i = self
            .secondaries
            .iter()
            .position(|s| s.spec.network == network)
            .ok_or_else(|| Error::Fixture(format!("no secondary network {network} to remove")))?;
        self.secondaries.remove(i).pod_attachment.del()
    }

    /// Attaches a network the way KubeVirt's macvtap binding plugin gets it (its
    /// macvtap-cni): a master in the node namespace (one end of a veth pair), a macvtap in
    /// bridge mode on it, moved into the pod under the hashed pod link name of `network`
    /// with `mtu`, up, no addresses. A peer namespace joins the same master through the
    /// `macvlan` plugin (bridge mode, host-local IPAM 10.88.k.0/24 + fd00:88:k::/64), so
    /// peer and macvtap talk through the master's macvlan port. `nad` is the
    /// `namespace/name` the network-status names.
    pub fn add_macvtap(&mut self, network: &str, nad: &str, mtu: u32) -> Result<&MacvtapNet> {
        let k = self.secondaries.len() + self.macvtaps.len() + 1;
        if k > 255 {
            return Err(Error::Fixture(
                "a PodFixture holds at most 255 secondary networks".into(),
            ));
        }
        let pod_link = netbind_spec::naming::secondary_pod_link(network);
        let master = node_link_name("nbt", k, &self.id)?;
        let other = node_link_name("nbu", k, &self.id)?;
        let mtu_s = mtu.to_string();
        self.node.exec(&[
            "ip", "link", "add", &master, "mtu", &mtu_s, "type", "veth", "peer", "name", &other,
            "mtu", &mtu_s,
        ])?;
        self.node.exec(&["ip", "link", "set", &other, "up"])?;
        self.node.exec(&["ip", "link", "set", &master, "up"])?;
        self.node.exec(&[
            "ip", "link", "add", "link", &master, "name", &pod_link, "mtu", &mtu_s, "type",
            "macvtap", "mode", "bridge",
        ])?;
        self.node
            .exec(&["ip", "link", "set", &pod_link, "netns", self.pod.name()])?;
        self.pod.exec(&["ip", "link", "set", &pod_link, "up"])?;
        let mac = self
            .pod
            .sh(&format!("cat /sys/class/net/{pod_link}/address"))?
            .trim()
            .to_string();
        let cni_name = nad.rsplit('/').next().unwrap_or(nad).to_string();
        let config = json!({
            "cniVersion": "1.0.0",
            "name": cni_name,
            "type": "macvlan",
            "master": master,
            "mode": "bridge",
            "mtu": mtu,
            "ipam": {
                "type": "host-local",
                "dataDir": self.ipam_dir.path(),
                "ranges": [
                    [{"subnet": format!("10.88.{k}.0/24")}],
                    [{"subnet": format!("fd00:88:{k:x}::/64")}]
                ]
            }
        });
        let peer = Netns::new("peer")?;
        let peer_attachment = Cni::add(&self.node, &peer, "net1", &config)?;
        self.macvtaps.push(MacvtapNet {
            network: network.to_string(),
            nad: nad.to_string(),
            pod_link,
            mac,
            master,
            peer_attachment,
            peer,
        });
        Ok(self.macvtaps.last().expect("just pushed"))
    }

    /// The macvtap network of a VM network name.
    pub fn macvtap(&self, network: &str) -> Result<&MacvtapNet> {
        self.macvtaps
            .iter()
            .find(|m| m.network == network)
            .ok_or_else(|| Error::Fixture(format!("no macvtap network named {network}")))
    }

    /// The attached secondary network of a VM network name.
    pub fn secondary(&self, network: &str) -> Result<&SecondaryNet> {
        self.secondaries
            .iter()
            .find(|s| s.spec.network == network)
            .ok_or_else(|| Error::Fixture(format!("no secondary network named {network}")))
    }

    /// Multus' `k8s.v1.cni.cncf.io/network-status` for this pod: the cluster network
    /// (`default: true`, interface `eth0`) then every secondary network in order.
    pub fn network_status_json(&self) -> String {
        let mut list = vec![status_entry(CLUSTER_NETWORK, "eth0", self.result(), true)];
        for s in &self.secondaries {
            list.push(status_entry(&s.spec.nad, &s.pod_link, s.result(), false));
        }
        for m in &self.macvtaps {
            list.push(json!({
                "name": m.nad,
                "interface": m.pod_link,
                "mac": m.mac,
                "dns": {}
            }));
        }
        serde_json::to_string_pretty(&list).expect("JSON values serialise")
    }

    /// Writes [`PodFixture::network_status_json`] to `path`.
    pub fn write_network_status(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.network_status_json()).map_err(|source| Error::Io {
            what: "write the network-status file",
            path: path.to_path_buf(),
            source,
        })
    }

    /// Names of every namespace this fixture owns (node, pod, peers).
    pub fn namespace_names(&self) -> Vec<String> {
        let mut v = vec![
            self.node.name().to_string(),
            self.pod.name().to_string(),
            self.peer.name().to_string(),
        ];
        v.extend(
            self.secondaries
                .iter()
                .filter_map(|s| s.peer.as_ref().map(|p| p.name().to_string())),
        );
        v.extend(self.macvtaps.iter().map(|m| m.peer.name().to_string()));
        v
    }
}

/// Whether bridges here can filter VLANs (`CONFIG_BRIDGE_VLAN_FILTERING`), which the
/// `bridge` plugin's `vlan` needs. Probed once per process in a scratch namespace.
pub fn kernel_supports_bridge_vlans() -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| {
        Netns::new("probe")
            .and_then(|ns| {
                ns.exec(&[
                    "ip",
                    "link",
                    "add",
                    "nbprobe",
                    "type",
                    "bridge",
                    "vlan_filtering",
                    "1",
                ])
            })
            .is_ok()
    })
}

/// `<prefix><k hex><fixture id>`, which must fit a link name (15 bytes).
fn node_link_name(prefix: &str, k: usize, id: &str) -> Result<String> {
    let name = format!("{prefix}{k:x}{id}");
    if name.len() > 15 {
        return Err(Error::Fixture(format!(
            "node link name {name} is longer than 15 bytes"
        )));
    }
    Ok(name)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn address(r: &CniResult, v6: bool, what: &str) -> Result<IpAddr> {
    let a = if v6 { r.ipv6() } else { r.ipv4() };
    a.map(|a| a.addr()).ok_or_else(|| {
        Error::Fixture(format!(
            "{what} has no IPv{} address in its CNI result",
            if v6 { 6 } else { 4 }
        ))
    })
}

fn status_entry(name: &str, interface: &str, r: &CniResult, default: bool) -> Value {
    let mut v = json!({
        "name": name,
        "interface": interface,
        "ips": r.ips.iter().map(|i| i.address.addr().to_string()).collect::<Vec<_>>(),
        "mac": r.mac().unwrap_or_default(),
        "default": default,
        "dns": {}
    });
    if !r.dns.nameservers.is_empty() {
        v["dns"] = json!({
            "nameservers": r.dns.nameservers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "search": r.dns.search,
        });
    }
    v
}
