//! Test fixture: a pod network namespace wired by Debian's real CNI `bridge` plugin with
//! `host-local` IPAM, called exactly as kubelet calls it (env `CNI_COMMAND`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_PATH`, config JSON on stdin, result JSON on stdout).
//!
//! Isolation: two namespaces per fixture, both uniquely named — a "node" namespace that
//! stands in for the host (the plugin runs inside it via `ip netns exec`, so the bridge
//! and its gateway address live there, never in the machine's own namespace) and the
//! "pod" namespace the plugin wires. Subnets are 10.231.x/24 and fd00:231:x::/64, private
//! to these namespaces; host-local keeps its leases in a temp dir.
//!
//! Cleanup lives in `Drop` (CNI DEL, delete the bridge, both namespaces, the
//! /etc/netns entry), so it happens even when an assertion fails. Missing root or missing
//! plugins make the test fail with what to install — never skip.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const CNI_PATH: &str = "/usr/lib/cni";
pub const MTU: u32 = 1400;

/// Fails the test loudly unless it can really run.
pub fn require_root_and_plugins() {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(
        euid, 0,
        "this privileged test must run as root (network namespaces, CNI plugins)"
    );
    for plugin in ["bridge", "host-local"] {
        let path = Path::new(CNI_PATH).join(plugin);
        assert!(
            path.exists(),
            "CNI plugin {} is missing: apt-get install -y containernetworking-plugins",
            path.display()
        );
    }
    assert!(
        Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "`ip` is missing: apt-get install -y iproute2"
    );
}

pub struct CniPod {
    /// The pod namespace, under /run/netns.
    pub netns: String,
    /// The namespace standing in for the node.
    pub node: String,
    pub bridge: String,
    pub container_id: String,
    pub config: String,
    pub result: serde_json::Value,
    pub subnet_v4: String,
    pub subnet_v6: String,
    data_dir: tempfile::TempDir,
    etc_dir: PathBuf,
    added: bool,
    /// Secondary (Multus) networks: (node bridge, CNI config, ifname in the pod).
    secondaries: Vec<(String, String, String)>,
}

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().expect("run ip")
}

fn must(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl CniPod {
    /// Creates the namespaces and runs CNI ADD. With `resolv_conf`, also writes
    /// /etc/netns/<pod>/resolv.conf as `ip netns` would use it.
    pub fn create(resolv_conf: Option<&str>) -> CniPod {
        require_root_and_plugins();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{:x}", (pid % 0xfffff) * 16 + (n % 16));
        let octet = (pid % 200) + n % 50;
        let mut pod = CniPod {
            netns: format!("netbind-test-pod-{pid}-{n}"),
            node: format!("netbind-test-node-{pid}-{n}"),
            bridge: format!("nbt{tag}"),
            container_id: format!("netbind-test-{pid}-{n}"),
            config: String::new(),
            result: serde_json::Value::Null,
            subnet_v4: format!("10.231.{}.0/24", octet % 256),
            subnet_v6: format!("fd00:231:{octet:x}::/64"),
            data_dir: tempfile::tempdir().expect("temp dir"),
            etc_dir: PathBuf::new(),
            added: false,
            secondaries: Vec::new(),
        };
        pod.etc_dir = Path::new("/etc/netns").join(&pod.netns);
        // From here on, Drop cleans up whatever exists.
        must(&["netns", "add", &pod.node]);
        must(&["netns", "add", &pod.netns]);
        must(&["-n", &pod.node, "link", "set", "lo", "up"]);
        if let Some(text) = resolv_conf {
            std::fs::create_dir_all(&pod.etc_dir).expect("create /etc/netns/<name>");
            std::fs::write(pod.etc_dir.join("resolv.conf"), text).expect("write resolv.conf");
        }
        pod.config = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "netbind-test",
            "type": "bridge",
            "bridge": pod.bridge,
            "isGateway": true,
            "mtu": MTU,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": pod.subnet_v4}], [{"subnet": pod.subnet_v6}]],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
                "dataDir": pod.data_dir.path(),
            }
        })
        .to_string();
        let out = pod.cni("ADD");
        assert!(
            out.status.success(),
            "CNI ADD failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pod.added = true;
        pod.result = serde_json::from_slice(&out.stdout).expect("CNI result is JSON");
        pod
    }

    fn cni(&self, command: &str) -> std::process::Output {
        self.cni_with(command, &self.config, "eth0")
    }

    /// Adds a Multus-style secondary network as Multus would: the CNI `bridge` plugin
    /// (on its own bridge in the node namespace, no IPAM: plain L2) wires a link named
    /// `ifname` (KubeVirt: `pod<hash>`) into the pod.
    pub fn add_secondary(&mut self, ifname: &str) {
        let k = self.secondaries.len();
        let bridge = format!("{}s{k}", &self.bridge[..self.bridge.len().min(10)]);
        let config = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("netbind-test-sec{k}"),
            "type": "bridge",
            "bridge": bridge,
            "mtu": MTU,
            "ipam": {}
        })
        .to_string();
        let out = self.cni_with("ADD", &config, ifname);
        self.secondaries.push((bridge, config, ifname.to_string()));
        assert!(
            out.status.success(),
            "CNI ADD of secondary {ifname} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn cni_with(&self, command: &str, config: &str, ifname: &str) -> std::process::Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.node, &format!("{CNI_PATH}/bridge")])
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_NETNS", format!("/run/netns/{}", self.netns))
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", CNI_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the CNI bridge plugin");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(config.as_bytes())
            .expect("write CNI config");
        child.wait_with_output().expect("wait for the CNI plugin")
    }

    /// The `eth0` entry of the result's `interfaces` (the one inside the sandbox).
    pub fn eth0_index(&self) -> usize {
        self.result["interfaces"]
            .as_array()
            .and_then(|list| {
                list.iter()
                    .position(|i| i["name"] == "eth0" && i.get("sandbox").is_some())
            })
            .expect("CNI result lists eth0 in the sandbox")
    }

    pub fn eth0_mac(&self) -> String {
        self.result["interfaces"][self.eth0_index()]["mac"]
            .as_str()
            .expect("eth0 mac")
            .to_lowercase()
    }

    /// `(address with prefix, gateway)` of every IP the result gives eth0.
    pub fn eth0_ips(&self) -> Vec<(String, String)> {
        let index = self.eth0_index();
        self.result["ips"]
            .as_array()
            .expect("CNI result has ips")
            .iter()
            .filter(|ip| ip["interface"].as_u64() == Some(index as u64))
            .map(|ip| {
                (
                    ip["address"].as_str().expect("address").to_string(),
                    ip["gateway"].as_str().expect("gateway").to_string(),
                )
            })
            .collect()
    }
}

/// Everything `down` must leave as CNI made it, as text with nothing in it that changes
/// by itself: `ip -d link` (without ifindexes and bridge timers), `ip addr`, `ip route`,
/// `ip -6 route`, `nft list ruleset` (counters zeroed) and the sysctls netbind may write.
/// The word `tentative` is dropped: DAD runs on its own clock. Route lines are sorted:
/// among routes with the same prefix (`fe80::/64 dev …`) the kernel lists them in the
/// order their links came up, which is history, not configuration.
pub fn snapshot(netns: &str) -> String {
    let run = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let mut text = String::new();
    text += &run(&["-n", netns, "-d", "link", "show"]);
    text += &run(&["-n", netns, "addr", "show"]);
    let sorted = |t: String| {
        let mut lines: Vec<&str> = t.lines().collect();
        lines.sort();
        lines.join("\n") + "\n"
    };
    text += &sorted(run(&["-n", netns, "route", "show"]));
    text += &sorted(run(&["-n", netns, "-6", "route", "show"]));
    text += &run(&["netns", "exec", netns, "nft", "list", "ruleset"]);
    text += &run(&[
        "netns",
        "exec",
        netns,
        "cat",
        "/proc/sys/net/ipv4/ip_forward",
        "/proc/sys/net/ipv4/conf/all/arp_ignore",
        "/proc/sys/net/ipv6/conf/all/forwarding",
    ]);
    normalise(&text)
}

fn normalise(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut words: Vec<String> = Vec::new();
        let mut it = line.split_whitespace().peekable();
        let mut first = true;
        while let Some(w) = it.next() {
            if first && w.ends_with(':') && w[..w.len() - 1].bytes().all(|b| b.is_ascii_digit()) {
                first = false;
                continue; // ifindex
            }
            first = false;
            if w == "tentative" {
                continue;
            }
            let w = match w.find("@if") {
                Some(i) => format!("{}@if", &w[..i]),
                None => w.to_string(),
            };
            words.push(w.clone());
            if (w.ends_with("_timer") || w == "packets" || w == "bytes" || w == "link-netnsid")
                && it.next().is_some()
            {
                words.push("*".into());
            }
        }
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

impl Drop for CniPod {
    fn drop(&mut self) {
        for (bridge, config, ifname) in self.secondaries.clone() {
            let _ = self.cni_with("DEL", &config, &ifname);
            let _ = ip(&["-n", &self.node, "link", "del", &bridge]);
        }
        if self.added {
            let _ = self.cni("DEL");
        }
        let _ = ip(&["-n", &self.node, "link", "del", &self.bridge]);
        let _ = ip(&["netns", "del", &self.netns]);
        let _ = ip(&["netns", "del", &self.node]);
        let _ = std::fs::remove_dir_all(&self.etc_dir);
    }
}
