//! The mesh promise, tested with Istio's own capture rules (issue 13): in a real CNI pod
//! that holds Istio's generated sidecar rules (`tests/istio/capture-kubevirt.rules`, the
//! Istio goldens with the header saying which), loaded with the real `iptables-restore`
//! (Debian's iptables-nft), a VM's pod-network TCP goes through the sidecar like a
//! container's, in both bindings that claim it (masquerade, passtBinding with netbind's
//! engine), while the same VM's bridged Multus network reaches its L2 peer directly.
//!
//! The sidecar is a stand-in for Envoy ([`PROXY`], python3): it runs as uid/gid 1337 (the
//! owner Istio's `ISTIO_OUTPUT` lets out), listens on 15001 (outbound) and 15006 (inbound),
//! reads each accepted connection's original destination with `SO_ORIGINAL_DST`, logs
//! `<listener> <client> <original destination>` and relays: outbound to the original
//! destination, inbound from 127.0.0.6 to it (Envoy's inbound passthrough). A connection
//! whose original destination is one of its own listeners is logged and closed.
//!
//! One booted guest per test, several checks each (the bridge binding on the pod network
//! is the third test: it cannot be captured, and the checks say so):
//! - guest → cluster peer: the peer answers `src=<pod IP>` and the proxy logged that
//!   connection on 15001 with the peer as original destination;
//! - cluster peer → pod IP:8080: the guest's listener answers, and the proxy logged it on
//!   15006 with pod IP:8080 as original destination;
//! - cluster peer → pod IP:<each Envoy port>: never the guest (it listens on all of them);
//! - guest ⇄ bridged Multus peer, both ways: answered directly, and the proxy never saw
//!   either address;
//! - the node side (a CNI's and kube-proxy's rules in the node namespace): a drop rule on
//!   the host end of the pod's link stops the guest's TCP to the node agent; a
//!   ClusterIP-like DNAT for the node's own clients reaches the guest's listener;
//! - `iptables-save -t nat` works in the pod while the VM runs (Istio's tooling reads and
//!   repairs its rules that way).
//!
//! Only IPv4: the goldens are iptables' (ip6tables has a golden of its own, not loaded).
//! Set `NETBIND_ISTIO_WITHOUT_RULES=1` to run everything without loading the rules: the
//! capture checks must then fail (that is how the test was shown able to fail).
//!
//! Needs root, containernetworking-plugins, iptables (nft back end), nftables,
//! qemu-system-x86, busybox-static, python3 and the guest kernel; fails, never skips.

mod e2e;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{AGENT_TCP, AGENT_UDP, DataPlane, PeerAgent, Timer, connect};
use netbind_testbed::{Guest, GuestNic, Netns, PodFixture, Process, Secondary, require_privileges};

const MAC_POD: &str = "02:00:00:15:70:01";
const MAC_BLUE: &str = "02:00:00:15:70:02";

/// Istio's rules, with their provenance header (`#` lines, which iptables-restore skips).
const ISTIO_RULES: &str = include_str!("istio/capture-kubevirt.rules");

/// Envoy's ports that must never reach the guest.
const ENVOY_PORTS: [u16; 7] = [15000, 15001, 15006, 15008, 15020, 15021, 15090];

/// The stand-in for Envoy (see the module docs).
const PROXY: &str = r#"
import os, socket, struct, sys, threading
log = open(sys.argv[1], "a", buffering=1)
lock = threading.Lock()
def note(line):
    with lock:
        log.write(line + "\n")
SO_ORIGINAL_DST = 80
def original(c):
    raw = c.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack("!H", raw[2:4])[0]
    return socket.inet_ntoa(raw[4:8]), port
def pump(a, b):
    # a -> b until a's end, then half-close b (the other direction goes on).
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def serve(c, peer, listener):
    try:
        host, port = original(c)
        note("%d %s %s:%d" % (listener, peer[0], host, port))
        if port in (15001, 15006):
            c.close()
            return
        u = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if listener == 15006:
            u.bind(("127.0.0.6", 0))
        u.settimeout(5)
        u.connect((host, port))
        u.settimeout(None)
    except OSError as e:
        note("%d error %s" % (listener, e))
        c.close()
        return
    back = threading.Thread(target=pump, args=(u, c), daemon=True)
    back.start()
    pump(c, u)
    back.join()
    u.close()
    c.close()
def listen(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    return s
def accept(s, port):
    while True:
        c, peer = s.accept()
        threading.Thread(target=serve, args=(c, peer, port), daemon=True).start()
listeners = [(listen(p), p) for p in (15001, 15006)]
os.setgroups([])
os.setgid(1337)
os.setuid(1337)
for s, p in listeners:
    threading.Thread(target=accept, args=(s, p), daemon=True).start()
note("ready")
threading.Event().wait()
"#;

/// The proxy running in the pod; its log lines (`<listener> <client> <ip>:<port>`).
struct Sidecar {
    _process: Process,
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
}

impl Sidecar {
    fn start(pod: &Netns) -> Sidecar {
        let dir = tempfile::Builder::new()
            .prefix("nb-sidecar-")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("proxy.log");
        std::fs::write(&log, "").expect("create the proxy log");
        let process = pod
            .spawn(&["python3", "-c", PROXY, log.to_str().expect("utf-8 path")])
            .expect("start the sidecar stand-in");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("ready")) {
            assert!(
                Instant::now() < deadline,
                "the sidecar stand-in did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Sidecar {
            _process: process,
            _dir: dir,
            log,
        }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l != "ready")
            .map(str::to_string)
            .collect()
    }

    /// Whether the proxy accepted a connection on `listener` for `dst` (`ip:port`).
    fn saw(&self, listener: u16, dst: &str) -> bool {
        self.lines().iter().any(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            w.len() == 3 && w[0] == listener.to_string() && w[2] == dst
        })
    }
}

/// Loads Istio's rules into the pod (unless the run is the one without them).
fn install_istio_rules(pod: &Netns, dir: &Path) -> bool {
    if std::env::var_os("NETBIND_ISTIO_WITHOUT_RULES").is_some() {
        eprintln!("NETBIND_ISTIO_WITHOUT_RULES: Istio's rules are NOT loaded");
        return false;
    }
    let path = dir.join("istio.rules");
    std::fs::write(&path, ISTIO_RULES).expect("write the rules");
    pod.exec(&["iptables-restore", path.to_str().expect("utf-8 path")])
        .expect("iptables-restore of Istio's rules in the pod");
    let saved = iptables_save_nat(pod).expect("iptables-save -t nat after the restore");
    assert!(
        saved.contains("-A PREROUTING -i k6t-eth0 -j ISTIO_REDIRECT"),
        "{saved}"
    );
    true
}

fn iptables_save_nat(pod: &Netns) -> Result<String, String> {
    let out = pod
        .try_exec(&["iptables-save", "-t", "nat"])
        .expect("run iptables-save");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "iptables-save -t nat failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

const GUEST: &str = r#"
serve_tcp() {
  cat > /tmp/reply$1.sh <<EOF
#!/bin/sh
read line
echo "guest:$1 got \$line"
echo "$1:\$line" >> /tmp/inbound.log
[ "\$line" = done ] && touch /tmp/done
exit 0
EOF
  chmod +x /tmp/reply$1.sh
  nc -ll -p $1 -e /tmp/reply$1.sh &
}
pod=$(nic_by_mac @MACPOD@)
blue=$(nic_by_mac @MACBLUE@)
dhcp4 $pod
. /run/dhcp-$pod.env
result pod-address "$ip/$mask"
dhcp4 $blue
. /run/dhcp-$blue.env
result blue-address "$ip/$mask"
result tcp-pod "$(echo hi | timeout 10 nc -w 5 @PEER@ @TCP@)"
result tcp-blue "$(echo hi | timeout 10 nc -w 5 @PEERBLUE@ @TCP@)"
result tcp-node "$(echo hi | timeout 8 nc -w 3 @NODE@ @TCP@)"
for p in 8080 @ENVOY@; do serve_tcp $p; done
usleep 300000
echo LISTENING
i=0
while [ $i -lt 900 ] && [ ! -e /tmp/done ]; do usleep 100000; i=$((i + 1)); done
result inbound "$(tr '\n' ' ' < /tmp/inbound.log 2>/dev/null)"
"#;

fn get<'a>(r: &'a BTreeMap<String, String>, key: &str, console: &str) -> &'a str {
    r.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("the guest reported no {key:?}; console:\n{console}"))
}

/// The node side, as a CNI and kube-proxy put it in the node namespace: a rule on the host
/// end of the pod's link that drops the pod's TCP to the node agent (NetworkPolicy-like),
/// and a ClusterIP-like DNAT of [`CLUSTER_IP`]:80 to pod IP:8080 for the node's own
/// clients (kube-proxy's `OUTPUT` path), with a route to the service address.
fn node_policy_and_service(pod: &PodFixture, pod4: std::net::IpAddr) {
    let host_index = pod
        .pod
        .sh("cat /sys/class/net/eth0/iflink")
        .expect("the pod link's peer index");
    let host_end = pod
        .node
        .sh(&format!(
            "ip -o link | awk -F': ' '$1 == {} {{ sub(/@.*/, \"\", $2); print $2 }}'",
            host_index.trim()
        ))
        .expect("the host end of the pod's link");
    let host_end = host_end.trim();
    assert!(!host_end.is_empty(), "no host end for ifindex {host_index}");
    let node4 = pod.result().gateway(false).expect("the node's address");
    let rules = format!(
        "add table bridge netpolicy
add chain bridge netpolicy pre {{ type filter hook prerouting priority -200; }}
add rule bridge netpolicy pre iifname \"{host_end}\" ip daddr {node4} tcp dport {AGENT_TCP} drop
add table ip kubeservice
add chain ip kubeservice out {{ type nat hook output priority -100; }}
add rule ip kubeservice out ip daddr {CLUSTER_IP} tcp dport 80 dnat to {pod4}:8080
"
    );
    pod.node
        .sh(&format!(
            "printf '%s' '{rules}' | nft -f - && ip route add {CLUSTER_IP}/32 dev {}",
            pod.bridge
        ))
        .expect("node-side policy and service");
}

/// A ClusterIP-like service address (see [`node_policy_and_service`]).
const CLUSTER_IP: &str = "10.96.0.10";

/// One VM with `pod_binding` (`masquerade: {}`, `passtBinding: {}`, `bridge: {}`, plus
/// fields) on the pod network and `bridge` on the Multus network `blue`, in a pod with
/// Istio's rules and the sidecar, and a node with a policy and a service; every check of
/// the module docs. `captured`: whether the pod network's traffic must go through the
/// sidecar (bridge on the pod network: must not, it cannot be).
fn mesh_case(label: &'static str, pod_binding: &str, captured: bool) {
    require_privileges(&[
        "ip",
        "nft",
        "iptables-restore",
        "iptables-save",
        "qemu-system-x86_64",
        "busybox",
        "python3",
    ])
    .unwrap();
    let mut t = Timer::start(label);
    let pod = PodFixture::builder()
        .secondary(Secondary::bridge("blue"))
        .build()
        .expect("CNI pod");
    let blue = pod.secondary("blue").unwrap();
    let blue_peer = blue.peer().unwrap();
    let _agents = [
        PeerAgent::start(&pod.peer),
        PeerAgent::start(blue_peer),
        PeerAgent::start(&pod.node),
    ];
    let pod4 = pod.pod_ip(false).unwrap();
    let peer4 = pod.peer_ip(false).unwrap();
    let node4 = pod.result().gateway(false).unwrap();
    let blue_guest = blue.result().ipv4().unwrap().addr();
    let blue_peer4 = blue.peer_result().unwrap().ipv4().unwrap().addr();
    // Istio's init container (or its CNI plugin) runs before the VM's networking is built.
    let dir = tempfile::tempdir().expect("temp dir");
    let with_rules = install_istio_rules(&pod.pod, dir.path());
    let sidecar = Sidecar::start(&pod.pod);
    node_policy_and_service(&pod, pod4);
    t.lap("pod, peers, Istio's rules, sidecar, node policy and service");

    let manifest = format!(
        "kind: VirtualMachineInstance
metadata:
  name: mesh{pid}
  namespace: e2e
  annotations: {{sidecar.istio.io/inject: 'true'}}
spec:
  domain:
    devices:
      interfaces:
      - {{name: default, {pod_binding}, macAddress: '{MAC_POD}'}}
      - {{name: blue, bridge: {{}}, macAddress: '{MAC_BLUE}'}}
  networks:
  - {{name: default, pod: {{}}}}
  - {{name: blue, multus: {{networkName: blue}}}}
",
        pid = std::process::id()
    );
    let dp = DataPlane::up(&pod, &manifest);
    let saved = iptables_save_nat(&pod.pod);
    t.lap("netbind up");

    let envoy = ENVOY_PORTS.map(|p| p.to_string()).join(" ");
    let mut s = GUEST.to_string();
    for (k, v) in [
        ("MACPOD", MAC_POD.to_string()),
        ("MACBLUE", MAC_BLUE.to_string()),
        ("PEER", peer4.to_string()),
        ("NODE", node4.to_string()),
        ("PEERBLUE", blue_peer4.to_string()),
        ("TCP", AGENT_TCP.to_string()),
        ("UDP", AGENT_UDP.to_string()),
        ("ENVOY", envoy),
    ] {
        s = s.replace(&format!("@{k}@"), &v);
    }
    let mut guest = Guest::boot(&pod.pod, &[GuestNic::Args(dp.qemu_args())], &s)
        .unwrap_or_else(|e| panic!("guest did not start: {e}"));
    if let Err(e) = guest.wait_for("LISTENING", Duration::from_secs(150)) {
        panic!("{e}\n`netbind up` said:\n{}", dp.log());
    }
    t.lap("guest boot, 2× DHCP, outbound");

    let inbound = connect(&pod.peer, pod4, 8080, "via-mesh");
    let service = connect(&pod.node, CLUSTER_IP.parse().unwrap(), 80, "via-service");
    let envoy_tries: Vec<(u16, Result<String, String>)> = if captured {
        ENVOY_PORTS
            .iter()
            .map(|&p| (p, connect(&pod.peer, pod4, p, &format!("envoy-{p}"))))
            .collect()
    } else {
        Vec::new()
    };
    let blue_in = connect(blue_peer, blue_guest, 8080, "via-blue");
    // `done` by the bridged network, or (when that is broken) by the pod network, so
    // that the guest reports what it saw either way.
    if connect(blue_peer, blue_guest, 8080, "done").is_err() {
        let _ = connect(&pod.peer, pod4, 8080, "done");
    }
    let results = guest.wait_done(Duration::from_secs(90));
    let console = guest.console();
    let r = results.unwrap_or_else(|e| panic!("{e}\n`netbind up` said:\n{}", dp.log()));
    t.lap("inbound checks");
    let proxy = sidecar.lines().join("\n");
    eprintln!("sidecar log:\n{proxy}");
    let ctx = format!("sidecar log:\n{proxy}\nguest console:\n{console}");

    if !with_rules {
        eprintln!("without Istio's rules: the capture checks below must fail");
    }
    // `iptables-save -t nat` works beside netbind's NAT while the VM runs.
    let saved = saved.unwrap_or_else(|e| panic!("{e}"));
    assert!(!with_rules || saved.contains("ISTIO_INBOUND"), "{saved}");

    // Outbound: the answer comes back intact (the peer saw the pod's address) and, when
    // captured, through the sidecar's 15001 with the peer as original destination.
    assert_eq!(get(&r, "tcp-pod", &console), format!("src={pod4}"), "{ctx}");
    assert_eq!(
        sidecar.saw(15001, &format!("{peer4}:{AGENT_TCP}")),
        captured,
        "guest → peer captured on 15001 (expected: {captured})\n{ctx}"
    );
    // Inbound: to the guest; when captured, through 15006 with pod IP:8080 as original
    // destination.
    assert_eq!(inbound.as_deref(), Ok("guest:8080 got via-mesh"), "{ctx}");
    assert_eq!(
        sidecar.saw(15006, &format!("{pod4}:8080")),
        captured,
        "peer → pod:8080 captured on 15006 (expected: {captured})\n{ctx}"
    );
    // Envoy's ports never reach the guest, though it listens on all of them.
    let log = get(&r, "inbound", &console);
    for (p, got) in &envoy_tries {
        assert!(
            !got.as_deref().is_ok_and(|g| g.starts_with("guest:")),
            "peer → pod:{p} reached the guest: {got:?}\n{ctx}"
        );
        assert!(
            !log.contains(&format!("{p}:")),
            "port {p} reached the guest: {log}\n{ctx}"
        );
    }
    // The node's policy stops the VM's pod-network TCP to the node agent; its service
    // address reaches the guest's listener.
    assert_eq!(
        get(&r, "tcp-node", &console),
        "",
        "guest → node agent passed the node's drop rule\n{ctx}"
    );
    assert_eq!(
        service.as_deref(),
        Ok("guest:8080 got via-service"),
        "node → ClusterIP:80\n{ctx}"
    );
    // The bridged network: both ways, directly; the sidecar saw none of it.
    assert_eq!(
        get(&r, "tcp-blue", &console),
        format!("src={blue_guest}"),
        "guest → bridged peer\n{ctx}"
    );
    assert_eq!(
        blue_in.as_deref(),
        Ok("guest:8080 got via-blue"),
        "bridged peer → guest\n{ctx}"
    );
    for a in [blue_guest.to_string(), blue_peer4.to_string()] {
        assert!(
            !proxy.contains(&a),
            "the sidecar saw bridged traffic ({a})\n{ctx}"
        );
    }
    drop(guest);
    dp.finish(&pod);
    t.lap("SIGTERM, down, snapshot");
}

#[test]
fn istio_captures_masquerade_pod_traffic_and_not_the_bridged_network() {
    mesh_case("Istio: masquerade + bridge", "masquerade: {}", true);
}

#[test]
fn istio_captures_passt_binding_pod_traffic_and_not_the_bridged_network() {
    mesh_case(
        "Istio: passtBinding + bridge",
        "passtBinding: {}, ports: [{port: 8080}]",
        true,
    );
}

/// Bridge on the pod network cannot be captured: the guest's frames are bridged past the
/// pod's netfilter (which netbind keeps them out of), so Istio's rules never see them. The
/// test shows they are not captured and still work (and node-side policy still applies).
#[test]
fn istio_cannot_capture_bridge_on_the_pod_network_and_it_still_works() {
    mesh_case(
        "Istio: bridge on the pod network + bridge",
        "bridge: {}",
        false,
    );
}
