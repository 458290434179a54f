//! VM mode (privileged: fails when not root or when QEMU, the guest kernel or python3 is
//! missing): a QEMU guest of the testbed attached over `-netdev stream` to the engine,
//! which runs inside a pod made by the real CNI bridge plugin — as `netbind usernet
//! --socket PATH` does, on a thread of this process that entered the pod's namespace.
//!
//! The guest configures itself only by what the engine serves: DHCPv4 (busybox udhcpc)
//! must give it the pod's own address and gateway, DHCPv6 (ISC dhclient in the image;
//! the engine's RA says "managed", so no SLAAC) the pod's IPv6 address. Then, to a peer
//! pod on the cluster network: TCP and UDP over both families and ping, each answered by
//! a python3 agent that reports the source address it saw — which must be the pod's,
//! since the engine's sockets are the pod's. Inbound, the peer connects to the pod's
//! address on a forwarded port (`-t 8080`) and reaches the guest's listener.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::pod::{Nic, Running, engine_config, read_stats};
use netbind_testbed::agent::{SourceAgent, tcp_line};
use netbind_testbed::{Guest, GuestNic, PodFixture, require_privileges};

const MAC: &str = "02:00:00:75:e1:01";
const AGENT_TCP: u16 = 7000;
const AGENT_UDP: u16 = 7001;
const FORWARDED: u16 = 8080;

const SCRIPT: &str = r#"
IF=$(nic_by_mac @MAC@)
result iface "$IF"
dhcp4 $IF
. /run/dhcp-$IF.env
result address "$ip/$mask"
result router "$router"
result dns "$dns"
result mtu "$(cat /sys/class/net/$IF/mtu)"
result tcp4 "$(echo hi | timeout 10 nc -w 5 @PEER4@ @TCP@)"
rm -f /tmp/u; timeout 10 tftp -g -r src -l /tmp/u @PEER4@ @UDP@ > /dev/null 2>&1
result udp4 "$(cat /tmp/u 2>/dev/null)"
if ping -c 2 -W 3 @PEER4@ > /dev/null 2>&1; then result icmp4 ok; else result icmp4 fail; fi
if dhcp6 $IF; then . /run/dhcp6-$IF.env; result address6 "$ip6/$prefixlen6"; fi
result route6 "$(ip -6 route show default | head -1)"
result tcp6 "$(echo hi | timeout 10 nc -w 5 @PEER6@ @TCP@)"
rm -f /tmp/u; timeout 10 tftp -g -r src -l /tmp/u @PEER6@ @UDP@ > /dev/null 2>&1
result udp6 "$(cat /tmp/u 2>/dev/null)"
if ping -6 -c 2 -W 3 @PEER6@ > /dev/null 2>&1; then result icmp6 ok; else result icmp6 fail; fi
cat > /tmp/reply.sh <<EOF
#!/bin/sh
read line
echo "guest got \$line"
[ "\$line" = done ] && touch /tmp/done
exit 0
EOF
chmod +x /tmp/reply.sh
nc -ll -p @FWD@ -e /tmp/reply.sh &
usleep 300000
echo LISTENING
i=0
while [ $i -lt 600 ] && [ ! -e /tmp/done ]; do usleep 100000; i=$((i + 1)); done
"#;

fn get<'a>(r: &'a BTreeMap<String, String>, key: &str, console: &str) -> &'a str {
    r.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("the guest reported no {key:?}; console:\n{console}"))
}

#[test]
fn a_vm_on_the_stream_socket_is_the_pod_to_everyone_else() {
    let counters = vm_is_the_pod(Nic::Stream);
    assert_eq!(counters.get("vu_starts"), Some(&0), "{counters:?}");
}

#[test]
fn a_vm_on_vhost_user_is_the_pod_to_everyone_else() {
    went_through_the_queues(&vm_is_the_pod(Nic::VhostUser));
}

/// `netbind usernet --vhost-user --fd N`: the control connection handed over made.
#[test]
fn a_vm_on_a_vhost_user_connection_handed_over_is_the_pod_to_everyone_else() {
    went_through_the_queues(&vm_is_the_pod(Nic::VhostUserFd));
}

/// The frames went through the guest's queues, started once, none broken.
fn went_through_the_queues(c: &BTreeMap<String, u64>) {
    assert_eq!(c.get("vu_starts"), Some(&1), "{c:?}");
    assert_eq!(c.get("vu_queue_errors"), Some(&0), "{c:?}");
    assert!(c["vu_frames_from_guest"] > 20, "{c:?}");
    assert!(c["vu_frames_to_guest"] > 20, "{c:?}");
}

/// What a vhost-user guest reported (its `RESULT` lines), its console, and the
/// engine's counters.
struct Ran {
    results: BTreeMap<String, String>,
    console: String,
    counters: BTreeMap<String, u64>,
}

/// `script` on a guest of `opts` with one vhost-user NIC of `queues` pairs, on an engine
/// of `cfg` in `pod`: booted, waited for until the script is done, both stopped.
fn on_vhost_user(
    pod: &PodFixture,
    cfg: netbind_usernet::EngineConfig,
    script: &str,
    queues: u16,
    opts: &netbind_testbed::GuestOptions,
) -> Ran {
    let dir = tempfile::Builder::new()
        .prefix("nbu-vm-")
        .tempdir()
        .unwrap();
    let socket = dir.path().join("usernet.sock");
    let running = Running::start(pod, cfg, Nic::VhostUser, &socket, dir.path());
    let nic = GuestNic::VhostUser {
        socket: socket.clone(),
        mac: MAC.to_string(),
        queues,
    };
    let mut guest = Guest::boot_with(&pod.pod, &[nic], script, opts).expect("guest boots");
    let results = guest.wait_done(Duration::from_secs(180));
    let console = guest.console();
    let results = results.unwrap_or_else(|e| panic!("{e}\nconsole:\n{console}"));
    drop(guest);
    Ran {
        results,
        console,
        counters: running.stop(dir.path()),
    }
}

/// Boots a guest on `nic` and checks it is the pod: addresses by DHCP, TCP, UDP and
/// ping both families out, a forwarded port in. Returns the engine's counters.
fn vm_is_the_pod(nic: Nic) -> BTreeMap<String, u64> {
    require_privileges(&[
        "ip",
        "qemu-system-x86_64",
        "busybox",
        "python3",
        "/usr/sbin/dhclient",
    ])
    .unwrap();
    let pod = PodFixture::new().expect("CNI pod");
    let pod4 = pod.pod_ip(false).unwrap();
    let pod6 = pod.pod_ip(true).unwrap();
    let peer4 = pod.peer_ip(false).unwrap();
    let peer6 = pod.peer_ip(true).unwrap();
    let cfg = engine_config(&pod, &[FORWARDED]);
    // Ping sockets (the engine's ICMP echo) need the pod's ping_group_range to include
    // the engine's group; kubelet sets it for pods (a "safe sysctl"), CNI does not.
    pod.pod
        .exec(&["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])
        .expect("ping_group_range");
    let gw4 = cfg.gateway4.unwrap();

    let dir = tempfile::Builder::new()
        .prefix("nbu-vm-")
        .tempdir()
        .unwrap();
    let socket = dir.path().join("usernet.sock");
    let _agent = SourceAgent::start(&pod.peer, AGENT_TCP, AGENT_UDP).expect("peer agent");
    let running = Running::start(&pod, cfg, nic, &socket, dir.path());
    let stats_file = dir.path().join("stats");

    let script = SCRIPT
        .replace("@MAC@", MAC)
        .replace("@PEER4@", &peer4.to_string())
        .replace("@PEER6@", &peer6.to_string())
        .replace("@TCP@", &AGENT_TCP.to_string())
        .replace("@UDP@", &AGENT_UDP.to_string())
        .replace("@FWD@", &FORWARDED.to_string());
    let guest_nic = match nic {
        Nic::Stream => GuestNic::stream(&socket, MAC),
        Nic::VhostUser | Nic::VhostUserFd => GuestNic::vhost_user(&socket, MAC),
    };
    let mut guest = Guest::boot(&pod.pod, &[guest_nic], &script).expect("guest boots");
    if let Err(e) = guest.wait_for("LISTENING", Duration::from_secs(150)) {
        let stats = read_stats(&stats_file);
        panic!(
            "{e}\nconsole:\n{}\nQEMU: {}\nengine: {stats:?}",
            guest.console(),
            guest.qemu_stderr()
        );
    }
    // Inbound: the peer reaches the guest at the pod's address, on the forwarded port.
    let inbound4 = tcp_line(&pod.peer, SocketAddr::new(pod4, FORWARDED), "from-peer4");
    let inbound6 = tcp_line(&pod.peer, SocketAddr::new(pod6, FORWARDED), "from-peer6");
    let done = tcp_line(&pod.peer, SocketAddr::new(pod4, FORWARDED), "done");
    let results = guest.wait_done(Duration::from_secs(60));
    let console = guest.console();
    let r = results.unwrap_or_else(|e| panic!("{e}\nconsole:\n{console}"));
    drop(guest);
    let counters = running.stop(dir.path());

    let prefix4 = pod.result().ipv4().unwrap().prefix_len();
    assert_eq!(
        get(&r, "address", &console),
        format!("{pod4}/{prefix4}"),
        "{console}"
    );
    assert_eq!(get(&r, "router", &console), gw4.to_string(), "{console}");
    assert_eq!(get(&r, "dns", &console), "10.88.0.10", "{console}");
    assert_eq!(
        get(&r, "tcp4", &console),
        format!("src={pod4}"),
        "{console}"
    );
    assert_eq!(
        get(&r, "udp4", &console),
        format!("src={pod4}"),
        "{console}"
    );
    assert_eq!(get(&r, "icmp4", &console), "ok", "{console}");
    assert!(
        get(&r, "address6", &console).starts_with(&format!("{pod6}/")),
        "{console}"
    );
    assert_eq!(
        get(&r, "tcp6", &console),
        format!("src={pod6}"),
        "{console}"
    );
    assert_eq!(
        get(&r, "udp6", &console),
        format!("src={pod6}"),
        "{console}"
    );
    assert_eq!(get(&r, "icmp6", &console), "ok", "{console}");
    assert_eq!(inbound4.as_deref(), Ok("guest got from-peer4"), "{console}");
    assert_eq!(inbound6.as_deref(), Ok("guest got from-peer6"), "{console}");
    assert!(done.is_ok(), "{done:?}");
    counters
}

/// A peer that sends `BULK` bytes to every connection on its first port and takes
/// whatever comes on its second, both until the other side closes; for each connection
/// on the second it prints `UP <bytes> <sha256>` of what came.
const BULK_AGENT: &str = r#"
import hashlib, socket, sys, threading
def serve(port, fn):
    l = socket.socket(socket.AF_INET); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", port)); l.listen(4)
    while True:
        c, _ = l.accept(); threading.Thread(target=fn, args=(c,), daemon=True).start()
def source(c):
    c.sendall(b"x" * int(sys.argv[3])); c.close()
def sink(c):
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(1 << 16)
        if not b: break
        h.update(b); n += len(b)
    c.close()
    print("UP", n, h.hexdigest(), flush=True)
threading.Thread(target=serve, args=(int(sys.argv[2]), sink), daemon=True).start()
print("READY", flush=True)
serve(int(sys.argv[1]), source)
"#;
const BULK: usize = 4 << 20;

/// [`BULK_AGENT`] running in the peer pod (killed on drop), and the lines it prints.
struct BulkAgent {
    _process: netbind_testbed::Process,
    lines: std::sync::mpsc::Receiver<String>,
}

impl BulkAgent {
    /// Sends `bytes` per download connection on [`BULK_DOWN`], sinks [`BULK_UP`].
    fn start(pod: &PodFixture, bytes: usize) -> BulkAgent {
        let (down, up, n) = (
            BULK_DOWN.to_string(),
            BULK_UP.to_string(),
            bytes.to_string(),
        );
        let mut c = pod
            .peer
            .command(&["python3", "-c", BULK_AGENT, &down, &up, &n]);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut agent = pod.peer.spawn_command(c).expect("bulk agent");
        let out = agent.child().stdout.take().expect("the agent's stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let ready = lines.recv_timeout(Duration::from_secs(10));
        assert_eq!(
            ready.as_deref(),
            Ok("READY"),
            "the bulk agent did not start"
        );
        BulkAgent {
            _process: agent,
            lines,
        }
    }

    /// What the next upload brought: `(bytes, sha256)`.
    fn uploaded(&self) -> (String, String) {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the bulk agent reported no upload within 30 s");
        let mut words = line.split_whitespace().skip(1).map(String::from);
        (
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
        )
    }
}
const BULK_DOWN: u16 = 7100;
const BULK_UP: u16 = 7101;

/// The upload is put in a file first: piped from `seq` under TCG, it would leave the
/// guest's TCP only as fast as `seq` prints, in small segments (application-limited),
/// whatever the offloads.
const BULK_SCRIPT: &str = r#"
IF=$(nic_by_mac @MAC@)
dhcp4 $IF
result mtu "$(cat /sys/class/net/$IF/mtu)"
result down "$(timeout 60 nc @PEER4@ @DOWN@ < /dev/null | wc -c)"
seq 1 500000 > /tmp/up
timeout 60 nc @PEER4@ @UP@ < /tmp/up > /dev/null
result up "$(wc -c < /tmp/up) $(sha256sum < /tmp/up | cut -d' ' -f1)"
"#;

/// With the offloads negotiated, a guest at MTU 1500 sends TCP segments of many MTUs and
/// takes them whole from the engine: what the engine saw as its largest frames.
#[test]
fn a_vhost_user_guest_at_mtu_1500_moves_segments_larger_than_its_mtu_both_ways() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox", "python3"]).unwrap();
    let pod = PodFixture::new().expect("CNI pod");
    let peer4 = pod.peer_ip(false).unwrap();
    let mut cfg = engine_config(&pod, &[FORWARDED]);
    cfg.mtu = 1500;
    let agent = BulkAgent::start(&pod, BULK);
    let script = BULK_SCRIPT
        .replace("@MAC@", MAC)
        .replace("@PEER4@", &peer4.to_string())
        .replace("@DOWN@", &BULK_DOWN.to_string())
        .replace("@UP@", &BULK_UP.to_string());
    let Ran {
        results: r,
        console,
        counters: c,
    } = on_vhost_user(&pod, cfg, &script, 1, &Default::default());

    assert_eq!(get(&r, "mtu", &console), "1500", "{console}");
    assert_eq!(get(&r, "down", &console), BULK.to_string(), "{console}");
    // Every byte the guest sent arrived once and in order (the numbers 1 to 500,000).
    let (bytes, sha) = agent.uploaded();
    assert_eq!(
        get(&r, "up", &console),
        format!("{bytes} {sha}"),
        "{console}"
    );
    assert!(c["tcp_bytes_from_guest"] >= 3 << 20, "{c:?}");
    // Larger than one MTU-sized frame (1514): segmentation offload both ways.
    assert!(c["vu_largest_from_guest"] > 3 * 1514, "{c:?}");
    assert!(c["vu_largest_to_guest"] > 3 * 1514, "{c:?}");
    assert!(c["vu_rx_merged_buffers"] > 0, "{c:?}");
    // The guest's data went to the engine's sockets straight from the guest's memory:
    // segments of at most 64 KiB enough to carry most of it.
    assert!(
        c["tcp_segments_in_place"] >= c["tcp_bytes_from_guest"] / 65536 / 2,
        "{c:?}"
    );
    // The peer's data went from the engine's sockets straight into the guest's buffers:
    // frames of at most 64 KiB enough to carry all of it were written in place.
    assert!(
        c["vu_rx_in_place"] >= c["tcp_bytes_to_guest"] / 65536,
        "{c:?}"
    );
    assert_eq!(c["vu_queue_errors"], 0, "{c:?}");
}

const REBOOT_SCRIPT: &str = r#"
IF=$(nic_by_mac @MAC@)
dhcp4 $IF
. /run/dhcp-$IF.env
echo "ROUND $ip $(echo hi | timeout 10 nc -w 5 @PEER4@ @TCP@)"
reboot -f
"#;

/// A guest that reboots resets its NIC: QEMU stops the queues and its driver sets them
/// up again; the engine serves the new queues (DHCP and TCP again).
#[test]
fn a_vhost_user_guest_that_reboots_gets_its_link_back() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox", "python3"]).unwrap();
    let pod = PodFixture::new().expect("CNI pod");
    let (pod4, peer4) = (pod.pod_ip(false).unwrap(), pod.peer_ip(false).unwrap());
    let cfg = engine_config(&pod, &[FORWARDED]);
    let dir = tempfile::Builder::new()
        .prefix("nbu-vm-")
        .tempdir()
        .unwrap();
    let socket = dir.path().join("usernet.sock");
    let _agent = SourceAgent::start(&pod.peer, AGENT_TCP, AGENT_UDP).expect("peer agent");
    let running = Running::start(&pod, cfg, Nic::VhostUser, &socket, dir.path());
    let script = REBOOT_SCRIPT
        .replace("@MAC@", MAC)
        .replace("@PEER4@", &peer4.to_string())
        .replace("@TCP@", &AGENT_TCP.to_string());
    let opts = netbind_testbed::GuestOptions {
        reboot: true,
        ..Default::default()
    };
    let guest = Guest::boot_with(
        &pod.pod,
        &[GuestNic::vhost_user(&socket, MAC)],
        &script,
        &opts,
    )
    .expect("guest boots");
    let want = format!("ROUND {pod4} src={pod4}");
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let rounds = |console: &str| console.lines().filter(|l| l.trim() == want).count();
    while rounds(&guest.console()) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let console = guest.console();
    drop(guest);
    let c = running.stop(dir.path());
    assert!(
        rounds(&console) >= 2,
        "want two {want:?}; console:\n{console}"
    );
    assert!(c["vu_starts"] >= 2, "{c:?}");
    assert_eq!(c["vu_queue_errors"], 0, "{c:?}");
}

const MQ_SCRIPT: &str = r#"
IF=$(nic_by_mac @MAC@)
dhcp4 $IF
result queues "$(ls -d /sys/class/net/$IF/queues/rx-* | wc -l)"
for i in 1 2 3 4 5 6 7 8; do
  cpu=$((i % 2 + 1))
  (taskset $cpu sh -c "timeout 60 nc @PEER4@ @DOWN@ < /dev/null | wc -c > /tmp/down$i") &
  (taskset $cpu sh -c "dd if=/dev/zero bs=65536 count=4 2>/dev/null | timeout 60 nc @PEER4@ @UP@ > /dev/null") &
done
wait
result down "$(cat /tmp/down* | sort -u | tr '\n' ' ')"
"#;

/// Two vCPUs, two queue pairs: the guest sends on both transmit queues (one per CPU) and
/// the engine spreads flows over both receive queues.
#[test]
fn a_vhost_user_guest_with_two_vcpus_uses_two_queue_pairs() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox", "python3"]).unwrap();
    let pod = PodFixture::new().expect("CNI pod");
    let peer4 = pod.peer_ip(false).unwrap();
    let cfg = engine_config(&pod, &[FORWARDED]);
    let _agent = BulkAgent::start(&pod, 256 << 10);
    let script = MQ_SCRIPT
        .replace("@MAC@", MAC)
        .replace("@PEER4@", &peer4.to_string())
        .replace("@DOWN@", &BULK_DOWN.to_string())
        .replace("@UP@", &BULK_UP.to_string());
    let opts = netbind_testbed::GuestOptions {
        cpus: 2,
        ..Default::default()
    };
    let Ran {
        results: r,
        console,
        counters: c,
    } = on_vhost_user(&pod, cfg, &script, 2, &opts);
    assert_eq!(get(&r, "queues", &console), "2", "{console}");
    assert_eq!(
        get(&r, "down", &console).trim(),
        (256 << 10).to_string(),
        "{console}"
    );
    for q in [
        "vu_rx0_frames",
        "vu_rx1_frames",
        "vu_tx0_frames",
        "vu_tx1_frames",
    ] {
        assert!(c[q] > 0, "no frames on {q}: {c:?}");
    }
    assert_eq!(c["vu_queue_errors"], 0, "{c:?}");
}
