//! 10,000 TCP connections through the engine (privileged: fails when not root).
//!
//! Namespace mode, as in `netns.rs`: the engine runs in namespace A (the pod) on a thread
//! of this process, the guest side is a tap in namespace B. A client thread in B opens
//! 10,000 connections to a server on A's loopback (through the gateway address), in
//! batches of 1,000, holds them all, checks a sample carries data both ways, then closes
//! them. What must hold: every connection is accepted, the engine's memory grows by a
//! bounded amount per flow, and once both sides closed the flow table is empty again
//! (read from the engine's `stats` file).

use netbind_testbed::run_ok as ok;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netbind_usernet::EngineConfig;
use netbind_usernet::attach::tap::create_in_netns;
use netbind_usernet::run::{Attach, RunOptions, run};

const CONNECTIONS: usize = 10_000;
const BATCH: usize = 1_000;
const PORT: u16 = 7100;

/// Namespaces, threads and files of one run, removed even when the test fails.
struct Bed {
    a: String,
    b: String,
    stats: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    children: Vec<Child>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
        let _ = std::fs::remove_file(&self.stats);
    }
}

/// accept, echo, close on EOF: one selector for every connection.
const SERVER: &str = r#"
import selectors, socket, sys
sel = selectors.DefaultSelector()
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(4096); l.setblocking(False)
sel.register(l, selectors.EVENT_READ)
print("READY", flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is l:
            try:
                while True:
                    c, _ = l.accept(); c.setblocking(False); sel.register(c, selectors.EVENT_READ)
            except BlockingIOError:
                pass
        else:
            try:
                d = s.recv(4096)
            except (BlockingIOError, ConnectionError):
                continue
            if d:
                s.sendall(d)
            else:
                sel.unregister(s); s.close()
"#;

/// Opens N connections in batches (after each: "OPEN k", then waits for a line), checks
/// every 100th echoes, says "HELD", waits, closes all, says "CLOSED".
const CLIENT: &str = r#"
import socket, sys
host, port, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
conns = []
while len(conns) < n:
    for _ in range(batch):
        conns.append(socket.create_connection((host, port), timeout=5))
    print("OPEN", len(conns), flush=True)
    sys.stdin.readline()
for i in range(0, n, 100):
    msg = b"c%05d" % i
    conns[i].sendall(msg)
    got = b""
    while len(got) < len(msg):
        got += conns[i].recv(64)
    assert got == msg, (i, got)
print("HELD", flush=True)
sys.stdin.readline()
for c in conns:
    c.close()
print("CLOSED", flush=True)
"#;

fn line(r: &mut BufReader<ChildStdout>) -> String {
    let mut s = String::new();
    r.read_line(&mut s).expect("a line from the helper");
    s.trim().to_string()
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn stat(path: &std::path::Path, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn wait_stat(
    path: &std::path::Path,
    name: &str,
    want: impl Fn(u64) -> bool,
    within: Duration,
) -> u64 {
    let end = Instant::now() + within;
    loop {
        let v = stat(path, name);
        if v.is_some_and(&want) {
            return v.unwrap();
        }
        assert!(Instant::now() < end, "{name} is {v:?} after {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ten_thousand_connections_open_hold_and_close_without_leaking() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (namespaces, taps)"
    );
    let id = std::process::id();
    let mut bed = Bed {
        a: format!("nbm-a-{id}"),
        b: format!("nbm-b-{id}"),
        stats: std::env::temp_dir().join(format!("nbm-stats-{id}")),
        stop: Arc::new(AtomicBool::new(false)),
        threads: Vec::new(),
        children: Vec::new(),
    };
    ok(&["ip", "netns", "add", &bed.a]);
    ok(&["ip", "netns", "add", &bed.b]);
    ok(&["ip", "-n", &bed.a, "link", "set", "lo", "up"]);
    ok(&[
        "ip", "-n", &bed.a, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
    ]);
    ok(&[
        "ip",
        "-n",
        &bed.a,
        "addr",
        "add",
        "10.78.0.2/24",
        "dev",
        "eth0",
    ]);
    ok(&["ip", "-n", &bed.a, "link", "set", "eth0", "up"]);
    ok(&["ip", "-n", &bed.a, "link", "set", "peer0", "up"]);
    ok(&["ip", "-n", &bed.b, "link", "set", "lo", "up"]);

    let cfg = EngineConfig {
        guest4: Some("10.78.0.2/24".parse().unwrap()),
        gateway4: Some(Ipv4Addr::new(10, 78, 0, 1)),
        mtu: 65520,
        ..EngineConfig::default()
    };
    let fd = create_in_netns(&bed.b, "tap0", &cfg).expect("tap in B");

    // The server on A's loopback: accepts everything, echoes, closes what its client
    // closed. Client and server are python3 processes: this process keeps only the
    // engine's descriptors (RLIMIT_NOFILE is 20,000 here and cannot be raised), and its
    // VmRSS is the engine's.
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.a,
            "python3",
            "-c",
            SERVER,
            &PORT.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 server");
    let mut server_out = BufReader::new(server.stdout.take().unwrap());
    bed.children.push(server);
    assert_eq!(line(&mut server_out), "READY");

    let (a, stop, stats) = (bed.a.clone(), bed.stop.clone(), bed.stats.clone());
    bed.threads.push(std::thread::spawn(move || {
        netbind_testbed::enter(format!("/run/netns/{a}")).unwrap();
        let opts = RunOptions {
            pcap: None,
            signals: false,
            stop,
            stats: Some(stats),
            harden: None,
            busy_poll: netbind_usernet::run::DEFAULT_BUSY_POLL,
        };
        let counters = run(cfg, Attach::Tap(fd), opts).expect("engine");
        eprintln!("engine: {counters}");
    }));
    std::thread::sleep(Duration::from_millis(300));

    let mut client = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.b,
            "python3",
            "-c",
            CLIENT,
            "10.78.0.1",
            &PORT.to_string(),
        ])
        .args([CONNECTIONS.to_string(), BATCH.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 client");
    let mut to_client = client.stdin.take().unwrap();
    let mut from_client = BufReader::new(client.stdout.take().unwrap());
    bed.children.push(client);
    // Let the engine make its first flows and grow its hash table once, then measure.
    let rss_before = vm_rss_kib();
    let started = Instant::now();
    let mut open = 0;
    while open < CONNECTIONS {
        let got = line(&mut from_client);
        open = got
            .strip_prefix("OPEN ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("client said {got:?}"));
        wait_stat(
            &bed.stats,
            "flows_now",
            |n| n as usize >= open,
            Duration::from_secs(10),
        );
        writeln!(to_client, "next").unwrap();
    }
    let opened_in = started.elapsed();
    // Every 100th connection carries data both ways while all are held.
    assert_eq!(line(&mut from_client), "HELD");
    let rss_held = vm_rss_kib();
    let flows_held = stat(&bed.stats, "flows_now").unwrap();
    writeln!(to_client, "close").unwrap();
    assert_eq!(line(&mut from_client), "CLOSED");
    let flows_after = wait_stat(&bed.stats, "flows_now", |n| n == 0, Duration::from_secs(30));
    let rss_after = vm_rss_kib();
    let opened = stat(&bed.stats, "tcp_opened").unwrap();
    let refused = stat(&bed.stats, "refused_full").unwrap();
    eprintln!(
        "{CONNECTIONS} connections opened in {opened_in:?}; engine VmRSS {rss_before} KiB before, {rss_held} KiB \
         with {flows_held} flows, {rss_after} KiB after close; flows after close {flows_after}"
    );
    assert_eq!(flows_held as usize, CONNECTIONS);
    assert_eq!(opened as usize, CONNECTIONS);
    assert_eq!(refused, 0);
    // A flow costs the engine its connection state (~200 bytes), a slab slot and a hash
    // entry (~100 bytes). 1 KiB per connection is three times that, and far below what a
    // per-flow buffer would cost (64 KiB × 10,000 = 640 MiB).
    let growth = rss_held.saturating_sub(rss_before);
    assert!(
        growth < CONNECTIONS as u64,
        "VmRSS grew by {growth} KiB for {CONNECTIONS} connections"
    );
    // After close nothing more is kept: at most what the allocator keeps for reuse.
    assert!(
        rss_after <= rss_held + 1024,
        "VmRSS grew after close: {rss_held} → {rss_after} KiB"
    );
}
