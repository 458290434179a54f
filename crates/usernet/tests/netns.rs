//! Namespace mode with real clients (privileged: fails when not root).
//!
//! pasta-style: the engine runs in namespace A, which stands for the pod (its own
//! loopback, a link with the pod's address); the guest side is a tap in namespace B with
//! the same address, configured by the engine. Servers listen on A's loopback and are
//! reached from B through the gateway address: curl (Debian 12's static busybox wget
//! crashes on this machine kind), ping (v4 and v6), DNS
//! through the forwarded resolver, iperf3 TCP and UDP both ways.

use netbind_testbed::run_ok as ok;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use netbind_usernet::EngineConfig;
use netbind_usernet::attach::tap::create_in_netns;
use netbind_usernet::run::{Attach, RunOptions, run};

struct Testbed {
    a: String,
    b: String,
    /// Further namespaces a test added (removed with the rest).
    more: Vec<String>,
    children: Vec<Child>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The engine's counters file (`--stats`).
    stats: std::path::PathBuf,
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
        for ns in &self.more {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_file(&self.stats);
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["ip".into(), "netns".into(), "exec".into(), ns.into()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn ok_in(ns: &str, args: &[&str]) -> String {
    let v = in_ns(ns, args);
    ok(&v.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A DNS responder: every A question is answered with 192.0.2.53.
fn dns_answer(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut i = 12;
    while i < q.len() && q[i] != 0 {
        i += usize::from(q[i]) + 1;
    }
    let end = i + 5;
    if end > q.len() {
        return None;
    }
    let mut r = q[..end].to_vec();
    r[2] = 0x81;
    r[3] = 0x80;
    r[6..8].copy_from_slice(&[0, u8::from(q[i + 2] == 1)]);
    r[8..12].copy_from_slice(&[0; 4]);
    if q[i + 2] == 1 {
        r.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 53]);
    }
    Some(r)
}

fn setup() -> Testbed {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (namespaces, taps)"
    );
    // Tests of this file run in parallel: the namespace names carry a per-test number.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let tb = Testbed {
        a: format!("nbu-a-{id}"),
        b: format!("nbu-b-{id}"),
        more: Vec::new(),
        children: Vec::new(),
        stop: Arc::new(AtomicBool::new(false)),
        threads: Vec::new(),
        stats: std::env::temp_dir().join(format!("nbu-stats-{id}")),
    };
    ok(&["ip", "netns", "add", &tb.a]);
    ok(&["ip", "netns", "add", &tb.b]);
    ok_in(&tb.a, &["ip", "link", "set", "lo", "up"]);
    ok_in(
        &tb.a,
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
        ],
    );
    ok_in(&tb.a, &["ip", "addr", "add", "10.77.0.2/24", "dev", "eth0"]);
    ok_in(
        &tb.a,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "fd77::2/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );
    ok_in(&tb.a, &["ip", "link", "set", "peer0", "up"]);
    ok_in(&tb.a, &["ip", "link", "set", "eth0", "up"]);
    ok_in(
        &tb.a,
        &["ip", "route", "add", "default", "via", "10.77.0.1"],
    );
    ok_in(
        &tb.a,
        &["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"],
    );
    ok_in(&tb.b, &["ip", "link", "set", "lo", "up"]);
    tb
}

fn config() -> EngineConfig {
    let mut c = EngineConfig {
        guest4: Some("10.77.0.2/24".parse().unwrap()),
        guest6: Some("fd77::2/64".parse().unwrap()),
        gateway4: Some(Ipv4Addr::new(10, 77, 0, 1)),
        gateway6: Some("fd77::1".parse().unwrap()),
        mtu: 65520,
        ..EngineConfig::default()
    };
    c.dns = vec!["10.77.0.3".parse().unwrap()];
    c.dns_upstream = vec!["127.0.0.1:5353".parse().unwrap()];
    c
}

fn start_engine(tb: &mut Testbed) {
    start_engine_with(tb, config())
}

fn start_engine_with(tb: &mut Testbed, cfg: EngineConfig) {
    let fd = create_in_netns(&tb.b, "tap0", &cfg).expect("tap in B");
    let (a, stop, stats) = (tb.a.clone(), tb.stop.clone(), tb.stats.clone());
    tb.threads.push(std::thread::spawn(move || {
        netbind_testbed::enter(format!("/run/netns/{a}")).unwrap();
        let counters = run(
            cfg,
            Attach::Tap(fd),
            RunOptions {
                pcap: None,
                signals: false,
                stop,
                stats: Some(stats),
                harden: None,
                busy_poll: netbind_usernet::run::DEFAULT_BUSY_POLL,
            },
        )
        .expect("engine");
        eprintln!("engine: {counters}");
    }));
    let a = tb.a.clone();
    let stop = tb.stop.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    tb.threads.push(std::thread::spawn(move || {
        netbind_testbed::enter(format!("/run/netns/{a}")).unwrap();
        let s = UdpSocket::bind("127.0.0.1:5353").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = s.recv_from(&mut buf)
                && let Some(r) = dns_answer(&buf[..n])
            {
                let _ = s.send_to(&r, peer);
            }
        }
    }));
    ready_rx.recv().unwrap();
    // The tap's link comes up with the engine attached; give neighbour discovery a moment.
    std::thread::sleep(Duration::from_millis(300));
}

fn spawn_in(tb: &mut Testbed, ns: &str, args: &[&str]) {
    let v = in_ns(ns, args);
    let child = Command::new(&v[0])
        .args(&v[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tb.children.push(child);
}

/// One 2-second iperf3 run from B to `dst` (with `extra` options); its JSON report.
fn iperf(tb: &Testbed, dst: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["iperf3", "-c", dst, "-p", "5201", "-t", "2", "-J"];
    args.extend(extra);
    serde_json::from_str(&ok_in(&tb.b, &args)).expect("iperf3 -J report")
}

fn iperf_gbits(tb: &Testbed, dst: &str, reverse: bool) -> f64 {
    let v = iperf(tb, dst, if reverse { &["-R"] } else { &[] });
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("end.sum_received.bits_per_second")
        / 1e9
}

/// iperf3 UDP at 100 Mbit/s offered: what arrived (Mbit/s) and the share lost (%).
fn iperf_udp(tb: &Testbed, dst: &str, reverse: bool) -> (f64, f64) {
    let mut extra = vec!["-u", "-b", "100M"];
    if reverse {
        extra.push("-R");
    }
    let v = iperf(tb, dst, &extra);
    let got = &v["end"]["sum_received"];
    (
        got["bits_per_second"]
            .as_f64()
            .expect("end.sum_received.bits_per_second")
            / 1e6,
        got["lost_percent"]
            .as_f64()
            .expect("end.sum_received.lost_percent"),
    )
}

#[test]
fn namespace_clients_reach_the_pod_through_the_engine() {
    let mut tb = setup();
    let www = tempfile_dir();
    std::fs::write(
        format!("{www}/index.html"),
        "served from the pod's loopback\n",
    )
    .unwrap();
    let a = tb.a.clone();
    spawn_in(
        &mut tb,
        &a,
        &["busybox", "httpd", "-f", "-p", "8080", "-h", &www],
    );
    spawn_in(&mut tb, &a, &["iperf3", "-s", "-p", "5201"]);
    start_engine(&mut tb);
    let b = tb.b.clone();

    // HTTP over IPv4 and IPv6, gateway → loopback.
    let body = ok_in(
        &b,
        &["curl", "-sS", "-m", "5", "http://10.77.0.1:8080/index.html"],
    );
    assert_eq!(body, "served from the pod's loopback\n");
    let body6 = ok_in(
        &b,
        &["curl", "-sS", "-m", "5", "http://[fd77::1]:8080/index.html"],
    );
    assert_eq!(body6, body);

    // ICMP echo through ping sockets.
    ok_in(&b, &["busybox", "ping", "-c", "2", "-W", "3", "10.77.0.1"]);
    ok_in(
        &b,
        &["busybox", "ping", "-6", "-c", "2", "-W", "3", "fd77::1"],
    );

    // DNS to the advertised resolver, answered by the responder on A's loopback.
    let answer = ok_in(&b, &["busybox", "nslookup", "vm.example", "10.77.0.3"]);
    assert!(answer.contains("192.0.2.53"), "{answer}");

    // iperf3 both ways (short).
    let up = iperf_gbits(&tb, "10.77.0.1", false);
    let down = iperf_gbits(&tb, "10.77.0.1", true);
    eprintln!(
        "iperf3 through netbind usernet: guest→pod {up:.2} Gbit/s, pod→guest {down:.2} Gbit/s"
    );
    // Far below what this reaches on an idle machine (6–15 Gbit/s), far above what a
    // window the socket refuses costs (0.05: a loss recovery per send buffer).
    assert!(up > 1.0 && down > 1.0, "throughput too low: {up} / {down}");
    let up6 = iperf_gbits(&tb, "fd77::1", false);
    assert!(up6 > 1.0, "IPv6 throughput too low: {up6}");

    // iperf3 UDP both ways, IPv4 and IPv6: the datagrams arrive (a loaded machine may
    // lose some in the receiver's socket buffer, not many).
    for dst in ["10.77.0.1", "fd77::1"] {
        for reverse in [false, true] {
            let (mbits, lost) = iperf_udp(&tb, dst, reverse);
            eprintln!(
                "iperf3 UDP to {dst} (reverse: {reverse}): {mbits:.1} Mbit/s received, {lost:.2}% lost"
            );
            assert!(
                mbits > 50.0,
                "UDP to {dst}, reverse {reverse}: {mbits} of 100 Mbit/s received ({lost}% lost)"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&www);
}

/// Echoes UDP datagrams of up to 64 KiB on `addr` in namespace `ns` until the test ends.
fn udp_echo(tb: &mut Testbed, ns: &str, addr: &'static str) {
    let (ns, stop) = (ns.to_string(), tb.stop.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    tb.threads.push(std::thread::spawn(move || {
        netbind_testbed::enter(format!("/run/netns/{ns}")).unwrap();
        let s = UdpSocket::bind(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], peer);
            }
        }
    }));
    ready_rx.recv().unwrap();
}

/// Sends `payload` from namespace `ns` to `to` and returns the answer.
fn udp_round_trip(ns: &str, bind: &'static str, to: &'static str, payload: Vec<u8>) -> Vec<u8> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        netbind_testbed::enter(format!("/run/netns/{ns}")).unwrap();
        let s = UdpSocket::bind(bind).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = vec![0u8; 65536];
        // The first datagram may meet an unresolved neighbour: try a few times.
        for _ in 0..3 {
            s.send_to(&payload, to).unwrap();
            if let Ok(n) = s.recv(&mut buf) {
                buf.truncate(n);
                return buf;
            }
        }
        panic!("no answer from {to}");
    })
    .join()
    .unwrap()
}

/// One counter of `/proc/net/snmp` (`Ip:` row) or `/proc/net/snmp6`, read in `ns`.
fn snmp(ns: &str, file: &str, row: &str, name: &str) -> u64 {
    let text = ok_in(ns, &["cat", file]);
    if file.ends_with("snmp6") {
        return text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {file}"));
    }
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with(row)).collect();
    let names: Vec<&str> = rows[0].split_whitespace().collect();
    let values: Vec<&str> = rows[1].split_whitespace().collect();
    let i = names.iter().position(|n| *n == name).expect("counter");
    values[i].parse().unwrap()
}

/// At MTU 1500, datagrams bigger than the MTU cross in fragments both ways: the guest's
/// kernel cuts its 8 KiB UDP datagrams and large pings, the engine puts them back together
/// before they leave through its sockets, and cuts the equally large answers, which the
/// guest's kernel reassembles (its counters say so).
#[test]
fn datagrams_bigger_than_the_mtu_cross_in_fragments_both_ways() {
    let mut tb = setup();
    let a = tb.a.clone();
    udp_echo(&mut tb, &a, "127.0.0.1:7007");
    udp_echo(&mut tb, &a, "[::1]:7007");
    let mut cfg = config();
    cfg.mtu = 1500;
    start_engine_with(&mut tb, cfg);
    let b = tb.b.clone();
    let counters = |b: &str| {
        [
            snmp(b, "/proc/net/snmp", "Ip:", "FragCreates"),
            snmp(b, "/proc/net/snmp", "Ip:", "ReasmOKs"),
            snmp(b, "/proc/net/snmp6", "", "Ip6FragCreates"),
            snmp(b, "/proc/net/snmp6", "", "Ip6ReasmOKs"),
        ]
    };
    let before = counters(&b);

    let payload: Vec<u8> = (0..8000u32).map(|i| (i * 7) as u8).collect();
    let back = udp_round_trip(&b, "0.0.0.0:0", "10.77.0.1:7007", payload.clone());
    assert_eq!(
        back, payload,
        "IPv4: the 8000-byte datagram came back whole"
    );
    let back6 = udp_round_trip(&b, "[::]:0", "[fd77::1]:7007", payload.clone());
    assert_eq!(
        back6, payload,
        "IPv6: the 8000-byte datagram came back whole"
    );
    ok_in(
        &b,
        &[
            "busybox",
            "ping",
            "-c",
            "2",
            "-W",
            "3",
            "-s",
            "4000",
            "10.77.0.1",
        ],
    );
    ok_in(
        &b,
        &[
            "busybox", "ping", "-6", "-c", "2", "-W", "3", "-s", "4000", "fd77::1",
        ],
    );

    let after = counters(&b);
    // Per family: the datagram in 6 fragments and each ping in 3 (1480 bytes per
    // fragment) from the guest; the three answers reassembled by the guest.
    let wanted = [
        ("IPv4 fragments sent", 12),
        ("IPv4 datagrams reassembled", 3),
        ("IPv6 fragments sent", 12),
        ("IPv6 datagrams reassembled", 3),
    ];
    for (i, (what, least)) in wanted.into_iter().enumerate() {
        assert!(
            after[i] - before[i] >= least,
            "{what}: {before:?} → {after:?}"
        );
    }
}

fn tempfile_dir() -> String {
    let d = std::env::temp_dir().join(format!("nbu-www-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.display().to_string()
}

/// Puts a router R on A's link (10.77.0.1, fd77::1: the pod's gateway) and a host C
/// behind it (10.88.0.2, fd88::2): the path beyond the pod. Returns C's two addresses.
fn add_router_and_far_host(tb: &mut Testbed) -> (&'static str, &'static str) {
    let id = tb.a.trim_start_matches("nbu-a-").to_string();
    let (r, c) = (format!("nbu-r-{id}"), format!("nbu-c-{id}"));
    for ns in [&r, &c] {
        ok(&["ip", "netns", "add", ns]);
        tb.more.push(ns.clone());
        ok_in(ns, &["ip", "link", "set", "lo", "up"]);
    }
    ok_in(&tb.a, &["ip", "link", "set", "peer0", "netns", &r]);
    ok_in(
        &r,
        &[
            "ip", "link", "add", "r1", "type", "veth", "peer", "name", "c0", "netns", &c,
        ],
    );
    for (ns, link, v4, v6) in [
        (&r, "peer0", "10.77.0.1/24", "fd77::1/64"),
        (&r, "r1", "10.88.0.1/24", "fd88::1/64"),
        (&c, "c0", "10.88.0.2/24", "fd88::2/64"),
    ] {
        ok_in(ns, &["ip", "addr", "add", v4, "dev", link]);
        ok_in(ns, &["ip", "-6", "addr", "add", v6, "dev", link, "nodad"]);
        ok_in(ns, &["ip", "link", "set", link, "up"]);
    }
    ok_in(&c, &["ip", "route", "add", "default", "via", "10.88.0.1"]);
    ok_in(
        &c,
        &["ip", "-6", "route", "add", "default", "via", "fd88::1"],
    );
    ok_in(
        &r,
        &[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ],
    );
    ok_in(
        &tb.a,
        &["ip", "-6", "route", "add", "default", "via", "fd77::1"],
    );
    ("10.88.0.2", "fd88::2")
}

/// The addresses a busybox traceroute printed, hop by hop (`*` for a silent hop).
fn hops(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

#[test]
fn traceroute_from_the_guest_sees_the_pods_router_then_the_far_host() {
    let mut tb = setup();
    let (far4, far6) = add_router_and_far_host(&mut tb);
    start_engine(&mut tb);
    let b = tb.b.clone();
    let trace = |args: &[&str]| {
        let mut v = vec![
            "busybox",
            "traceroute",
            "-n",
            "-q",
            "1",
            "-w",
            "3",
            "-m",
            "4",
        ];
        v.extend_from_slice(args);
        hops(&ok_in(&b, &v))
    };
    // UDP probes: hop 1 answers "time exceeded", the far host "port unreachable"; both
    // come back through the engine from their real senders.
    assert_eq!(trace(&[far4]), ["10.77.0.1", far4], "UDP, IPv4");
    assert_eq!(trace(&["-6", far6]), ["fd77::1", far6], "UDP, IPv6");
    // ICMP echo probes (ping sockets): time exceeded, then the echo reply.
    assert_eq!(trace(&["-I", far4]), ["10.77.0.1", far4], "ICMP, IPv4");
    assert_eq!(trace(&["-6", "-I", far6]), ["fd77::1", far6], "ICMP, IPv6");
}

/// One counter from the engine's stats file (rewritten every second).
fn stat(tb: &Testbed, name: &str) -> u64 {
    let text = std::fs::read_to_string(&tb.stats).expect("the engine's stats file");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Echoes one TCP connection on `addr` in namespace A, byte by byte (not joined: it ends
/// with the connection, or with the test process).
fn tcp_echo(tb: &Testbed, addr: &'static str) {
    let a = tb.a.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        netbind_testbed::enter(format!("/run/netns/{a}")).unwrap();
        let l = std::net::TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        let (mut c, _) = l.accept().unwrap();
        c.set_nodelay(true).unwrap();
        let mut byte = [0u8; 1];
        while std::io::Read::read(&mut c, &mut byte).is_ok_and(|n| n == 1) {
            std::io::Write::write_all(&mut c, &byte).unwrap();
        }
    });
    ready_rx.recv().unwrap();
}

/// Busy polling (`busy_poll.rs`): the packets of a request/response exchange are found
/// by polling, without a wake-up; once the exchange ends the engine sleeps again.
#[test]
fn request_response_is_busy_polled_and_an_idle_engine_sleeps() {
    let mut tb = setup();
    tcp_echo(&tb, "127.0.0.1:5300");
    start_engine(&mut tb);
    let b = tb.b.clone();
    std::thread::spawn(move || {
        netbind_testbed::enter(format!("/run/netns/{b}")).unwrap();
        let mut c = std::net::TcpStream::connect("10.77.0.1:5300").unwrap();
        c.set_nodelay(true).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut byte = [0u8; 1];
        for _ in 0..2000 {
            std::io::Write::write_all(&mut c, b"x").unwrap();
            std::io::Read::read_exact(&mut c, &mut byte).unwrap();
        }
    })
    .join()
    .expect("2,000 round trips through the engine");

    // Without traffic the window closes at the first wait that sees no event; the
    // stats file shows it within a second or two (it is rewritten every second).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // The engine runs in this process: on a runner that gives it one CPU it must not
    // poll at all (each spin would only delay the peer).
    let one_cpu = netbind_usernet::sys::cpus_allowed().unwrap() == 1;
    let settled = |tb: &Testbed| {
        stat(tb, "tcp_opened") == 1
            && (one_cpu || stat(tb, "waits_polled") > 0)
            && stat(tb, "busy_poll_window_us") == 0
    };
    while !settled(&tb) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        stat(&tb, "tcp_opened"),
        1,
        "the stats file never showed the exchange"
    );
    if one_cpu {
        assert_eq!(stat(&tb, "waits_polled"), 0, "the engine polled on one CPU");
    } else {
        assert!(
            stat(&tb, "waits_polled") > 0,
            "no packet of 2,000 round trips was found by polling (slept {})",
            stat(&tb, "waits_slept")
        );
    }
    assert_eq!(
        stat(&tb, "busy_poll_window_us"),
        0,
        "an idle engine still polls"
    );
}

/// How often the engine's loop woke in `secs` seconds from now (its stats file).
fn wakeups_in(tb: &Testbed, secs: u64) -> u64 {
    let before = stat(tb, "waits_slept") + stat(tb, "waits_polled");
    std::thread::sleep(Duration::from_secs(secs));
    stat(tb, "waits_slept") + stat(tb, "waits_polled") - before
}

#[test]
fn an_idle_engine_wakes_about_once_a_second_with_or_without_open_connections() {
    let mut tb = setup();
    tcp_echo(&tb, "127.0.0.1:5301");
    start_engine(&mut tb);
    std::thread::sleep(Duration::from_millis(1100));
    // Once a second, plus what the guest's kernel sends (router solicitations, MLD);
    // waking every 20 ms for timers would be 150 times in 3 s.
    let woke = wakeups_in(&tb, 3);
    assert!(
        woke < 20,
        "without flows the engine woke {woke} times in 3 s"
    );

    // An open connection with nothing in flight has no timer either.
    let b = tb.b.clone();
    let (open_tx, open_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        netbind_testbed::enter(format!("/run/netns/{b}")).unwrap();
        let mut c = std::net::TcpStream::connect("10.77.0.1:5301").unwrap();
        std::io::Write::write_all(&mut c, b"x").unwrap();
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut c, &mut byte).unwrap();
        open_tx.send(c).unwrap();
    });
    let _held = open_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a connection through the engine");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(stat(&tb, "flows_now"), 1);
    let woke = wakeups_in(&tb, 3);
    assert!(
        woke < 20,
        "with an idle connection the engine woke {woke} times in 3 s"
    );
}
