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

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use netbind_testbed::agent::{SourceAgent, tcp_line};
use netbind_testbed::{Guest, GuestNic, PodFixture, require_privileges};
use netbind_usernet::run::{Attach, RunOptions, run};
use netbind_usernet::{EngineConfig, PortSpec};

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

/// The engine thread, stopped even when the test fails.
struct Running {
    stop: Arc<AtomicBool>,
    engine: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.engine.take() {
            let _ = t.join();
        }
    }
}

/// The engine's configuration as `netbind usernet` derives it inside the pod: the pod's
/// addresses and gateways, its resolver, the forwarded port.
fn engine_config(pod: &PodFixture) -> EngineConfig {
    let r = pod.result();
    let mut cfg = EngineConfig {
        guest4: r.ipv4().map(|n| match n {
            ipnet::IpNet::V4(n) => n,
            ipnet::IpNet::V6(_) => unreachable!(),
        }),
        guest6: r.ipv6().map(|n| match n {
            ipnet::IpNet::V6(n) => n,
            ipnet::IpNet::V4(_) => unreachable!(),
        }),
        gateway4: match r.gateway(false) {
            Some(IpAddr::V4(g)) => Some(g),
            _ => None,
        },
        gateway6: match r.gateway(true) {
            Some(IpAddr::V6(g)) => Some(g),
            _ => None,
        },
        tcp_ports: vec![PortSpec::parse(&FORWARDED.to_string()).unwrap()],
        ..EngineConfig::default()
    };
    cfg.fill_gateways();
    cfg.set_resolvers(&["10.88.0.10".parse().unwrap()]);
    cfg
}

fn get<'a>(r: &'a BTreeMap<String, String>, key: &str, console: &str) -> &'a str {
    r.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("the guest reported no {key:?}; console:\n{console}"))
}

/// How the guest's NIC reaches the engine.
#[derive(Clone, Copy)]
enum Nic {
    /// `-netdev stream` on a unix socket.
    Stream,
    /// `-netdev vhost-user`: the guest's virtqueues in shared memory.
    VhostUser,
}

#[test]
fn a_vm_on_the_stream_socket_is_the_pod_to_everyone_else() {
    let counters = vm_is_the_pod(Nic::Stream);
    assert_eq!(counters.get("vu_starts"), Some(&0), "{counters:?}");
}

#[test]
fn a_vm_on_vhost_user_is_the_pod_to_everyone_else() {
    let c = vm_is_the_pod(Nic::VhostUser);
    // The frames went through the guest's queues, and with the offloads negotiated
    // the guest sent TCP segments larger than its MTU (1500).
    assert_eq!(c.get("vu_starts"), Some(&1), "{c:?}");
    assert_eq!(c.get("vu_queue_errors"), Some(&0), "{c:?}");
    assert!(c["vu_frames_from_guest"] > 20, "{c:?}");
    assert!(c["vu_frames_to_guest"] > 20, "{c:?}");
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
    let cfg = engine_config(&pod);
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
    let mut running = Running {
        stop: Arc::new(AtomicBool::new(false)),
        engine: None,
    };
    let _agent = SourceAgent::start(&pod.peer, AGENT_TCP, AGENT_UDP).expect("peer agent");

    // The engine, in the pod's namespace, listening before QEMU starts (QEMU 7.2 does
    // not reconnect).
    // Bound before QEMU starts (QEMU does not wait for it).
    let listener = netbind_usernet::run::listen_unix(&socket).expect("listen");
    let attach = match nic {
        Nic::Stream => Attach::Listener {
            listener,
            one_off: false,
        },
        Nic::VhostUser => Attach::VhostUser {
            listener,
            one_off: false,
        },
    };
    let (stop, ns_path, stats) = (
        running.stop.clone(),
        pod.pod.path(),
        dir.path().join("stats"),
    );
    let stats_file = stats.clone();
    running.engine = Some(std::thread::spawn(move || {
        netbind_testbed::enter(ns_path).unwrap();
        let opts = RunOptions {
            pcap: None,
            signals: false,
            stop,
            stats: Some(stats),
            harden: None,
            busy_poll: netbind_usernet::run::DEFAULT_BUSY_POLL,
        };
        match run(cfg, attach, opts) {
            Ok(c) => c.to_string(),
            Err(e) => format!("engine failed: {e}"),
        }
    }));

    let script = SCRIPT
        .replace("@MAC@", MAC)
        .replace("@PEER4@", &peer4.to_string())
        .replace("@PEER6@", &peer6.to_string())
        .replace("@TCP@", &AGENT_TCP.to_string())
        .replace("@UDP@", &AGENT_UDP.to_string())
        .replace("@FWD@", &FORWARDED.to_string());
    let guest_nic = match nic {
        Nic::Stream => GuestNic::stream(&socket, MAC),
        Nic::VhostUser => GuestNic::vhost_user(&socket, MAC),
    };
    let mut guest = Guest::boot(&pod.pod, &[guest_nic], &script).expect("guest boots");
    if let Err(e) = guest.wait_for("LISTENING", Duration::from_secs(150)) {
        let stats = std::fs::read_to_string(&stats_file).unwrap_or_default();
        panic!(
            "{e}\nconsole:\n{}\nQEMU: {}\nengine:\n{stats}",
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
    running.stop.store(true, Ordering::Relaxed);
    let counters = running.engine.take().unwrap().join().unwrap();
    eprintln!("engine: {counters}");

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
    let stats = std::fs::read_to_string(&stats_file).expect("stats file");
    stats
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
        .collect()
}
