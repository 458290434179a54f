//! Support for the guest end-to-end tests: `netbind up` as a running child in a real CNI
//! pod, a peer agent that reports where traffic came from, and peer-side clients.
//!
//! How it works:
//! - [`DataPlane::up`] writes the manifest (and the pod's network-status) to a temp dir,
//!   snapshots the pod namespace, and spawns `netbind up … --domain-out DIR/domain1.json`
//!   ([`DataPlane::up_with`] also passes a `--cluster-config`)
//!   with stdout/stderr going to a file. It returns once `domain1.json` exists (then `up` has
//!   applied the plan and is about to serve) and fails with `up`'s stderr if the child
//!   exits first. [`DataPlane::finish`] sends SIGTERM, waits for `up` to exit 0, runs
//!   `netbind down` and asserts that the pod namespace is again exactly as CNI left it.
//!   [`DataPlane::up_again`] starts another `up` on the same state dir (a hot-plug);
//!   `finish` stops them all.
//!   If a test fails before that, `Drop` still SIGTERMs (then SIGKILLs) `up` and runs
//!   `down`, without asserting (a panic inside a panic would abort).
//! - [`PeerAgent`] is a python3 program in a peer namespace: a dual-stack TCP server that
//!   answers `src=<client address>` and closes, a dual-stack UDP server speaking just
//!   enough TFTP for busybox `tftp -g` (it answers a read request with one DATA block
//!   holding `src=<client address>`), and raw ICMP/ICMPv6 sockets that log the source of
//!   every echo request. Each event is a line in a log file the test reads afterwards.
//! - [`connect`] is the peer-side TCP client: one line out, one line back, or the error.

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netbind_testbed::{Netns, PodFixture, Process, Snapshot};

pub const NETBIND: &str = env!("CARGO_BIN_EXE_netbind");

/// Ports of the peer agent.
pub const AGENT_TCP: u16 = 7000;
pub const AGENT_UDP: u16 = 7001;

/// `netbind up` running in a pod's namespace (see the module docs).
pub struct DataPlane {
    netns: String,
    dir: tempfile::TempDir,
    manifest: PathBuf,
    state: PathBuf,
    cluster: Option<PathBuf>,
    /// Every `netbind up` started on this state dir (the first, then hot-plugs), and the
    /// file each one's stdout and stderr go to.
    children: Vec<Child>,
    logs: Vec<PathBuf>,
    before: Snapshot,
    /// `--domain-out`'s JSON: `{"object", "qemuArgs": [...], "libvirtXml"}`.
    pub domain: serde_json::Value,
    /// How long `up` took until `domain.json` appeared.
    pub up_took: Duration,
}

impl DataPlane {
    /// Runs `netbind up` for `manifest` in the fixture's pod namespace (see the module docs).
    pub fn up(pod: &PodFixture, manifest: &str) -> DataPlane {
        Self::up_with(pod, manifest, None)
    }

    /// [`DataPlane::up`] with `--cluster-config` (netbind's YAML shape) when given: binding
    /// plugins are registered there.
    pub fn up_with(pod: &PodFixture, manifest: &str, cluster_config: Option<&str>) -> DataPlane {
        let dir = tempfile::Builder::new()
            .prefix("nb-e2e-")
            .tempdir()
            .expect("temp dir");
        let cluster = cluster_config.map(|text| {
            let p = dir.path().join("cluster.yaml");
            std::fs::write(&p, text).expect("write the cluster configuration");
            p
        });
        let mut dp = DataPlane {
            netns: pod.pod.name().to_string(),
            manifest: dir.path().join("vm.yaml"),
            state: dir.path().join("state"),
            dir,
            cluster,
            children: Vec::new(),
            logs: Vec::new(),
            before: pod.pod.snapshot().expect("snapshot before up"),
            domain: serde_json::Value::Null,
            up_took: Duration::ZERO,
        };
        let started = Instant::now();
        dp.domain = dp.start(pod, manifest);
        dp.up_took = started.elapsed();
        dp
    }

    /// Runs `netbind up` again on the same state dir with `manifest` (a hot-plug or
    /// hot-unplug), serving alongside the first one; returns its `--domain-out`.
    pub fn up_again(&mut self, pod: &PodFixture, manifest: &str) -> serde_json::Value {
        self.start(pod, manifest)
    }

    /// Writes the manifest and the pod's network-status, starts `netbind up` and waits
    /// for its `--domain-out`; fails with the logs if it exits first.
    fn start(&mut self, pod: &PodFixture, manifest: &str) -> serde_json::Value {
        std::fs::write(&self.manifest, manifest).expect("write the manifest");
        let status = self.dir.path().join("network-status.json");
        pod.write_network_status(&status)
            .expect("write network-status");
        let n = self.children.len() + 1;
        let domain = self.dir.path().join(format!("domain{n}.json"));
        let log = self.dir.path().join(format!("up{n}.log"));
        let out = std::fs::File::create(&log).expect("create the log of up");
        self.logs.push(log);
        let mut cmd = Command::new(NETBIND);
        cmd.arg("up").arg(&self.manifest);
        if let Some(c) = &self.cluster {
            cmd.arg("--cluster-config").arg(c);
        }
        let child = cmd
            .args(["--netns", &self.netns])
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--domain-out")
            .arg(&domain)
            .arg("--network-status")
            .arg(&status)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup the log of up"))
            .stderr(out)
            .spawn()
            .expect("spawn netbind up");
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&domain)
                && let Ok(v) = serde_json::from_str(&text)
            {
                return v;
            }
            let child = self.children.last_mut().expect("just started");
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "`netbind up` exited ({status}) before writing --domain-out:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "`netbind up` wrote no --domain-out within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `qemuArgs` of `--domain-out`.
    pub fn qemu_args(&self) -> Vec<String> {
        self.domain["qemuArgs"]
            .as_array()
            .unwrap_or_else(|| panic!("--domain-out has no qemuArgs array: {}", self.domain))
            .iter()
            .map(|a| a.as_str().expect("qemuArgs are strings").to_string())
            .collect()
    }

    /// `fds` of `--domain-out`: `(fd, path)` the launcher opens read-write for QEMU.
    /// Panics when a path is unknown (null): `up` reads the live pod view, so it has them.
    pub fn fds(&self) -> Vec<(u32, PathBuf)> {
        self.domain["fds"]
            .as_array()
            .unwrap_or_else(|| panic!("--domain-out has no fds array: {}", self.domain))
            .iter()
            .map(|f| {
                let fd = f["fd"].as_u64().expect("fds[].fd is a number") as u32;
                let path = f["path"]
                    .as_str()
                    .unwrap_or_else(|| panic!("fds[] without a path: {f}"));
                (fd, PathBuf::from(path))
            })
            .collect()
    }

    /// What each `up` printed so far (stdout and stderr), in the order they started.
    pub fn log(&self) -> String {
        self.logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }

    /// SIGTERM to every `up`, each exits 0 with no service panicked or lost; `down` exits 0; the pod namespace equals its
    /// snapshot from before `up`. Prints and returns the `up`s' output (notes, service
    /// counters).
    pub fn finish(mut self, pod: &PodFixture) -> String {
        assert_eq!(pod.pod.name(), self.netns, "the fixture `up` ran in");
        assert!(!self.children.is_empty(), "up is running");
        let statuses: Vec<_> = self
            .children
            .drain(..)
            .map(|mut c| terminate(&mut c))
            .collect();
        let log = self.log();
        eprintln!("`netbind up` said:\n{log}");
        // `down` first: a failed assertion below must not leave the namespace built.
        let down = self.down();
        for status in statuses {
            assert_eq!(
                status.and_then(|s| s.code()),
                Some(0),
                "a `netbind up` did not exit 0 on SIGTERM ({status:?}):\n{log}"
            );
        }
        // Every service ended by itself: no panic, no service that died on the way.
        for sign in ["panicked", "stopped unexpectedly", "ended unexpectedly"] {
            assert!(
                !log.contains(sign),
                "`netbind up` said {sign:?} while stopping:\n{log}"
            );
        }
        assert!(
            down.status.success(),
            "`netbind down` failed ({}):\n{}",
            down.status,
            String::from_utf8_lossy(&down.stderr)
        );
        // The kernel re-creates a link's IPv6 link-local address (and its fe80::/64 route)
        // only once the carrier is back, asynchronously after `down` brought the link up.
        let after = netbind_testbed::settles(&self.before, || {
            pod.pod.snapshot().expect("snapshot after down")
        });
        if let Some(diff) = self.before.diff(&after) {
            let mut full = String::new();
            for ((cmd, a), (_, b)) in self.before.sections.iter().zip(&after.sections) {
                if a != b {
                    full.push_str(&format!("## {cmd} before up:\n{a}## after down:\n{b}"));
                }
            }
            panic!("`down` did not restore the namespace CNI made:\n{diff}\n{full}");
        }
        log
    }

    fn down(&self) -> std::process::Output {
        Command::new(NETBIND)
            .arg("down")
            .arg(&self.manifest)
            .args(["--netns", &self.netns])
            .arg("--state-dir")
            .arg(&self.state)
            .stdin(Stdio::null())
            .output()
            .expect("run netbind down")
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        if !self.children.is_empty() {
            for mut child in self.children.drain(..) {
                terminate(&mut child);
            }
            if let Ok(out) = std::panic::catch_unwind(|| self.down())
                && !out.status.success()
            {
                eprintln!(
                    "cleanup: `netbind down` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// SIGTERM, up to 10 s for the exit, then SIGKILL.
fn terminate(child: &mut Child) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

const AGENT: &str = r#"
import socket, struct, sys, threading
log_path, tcp_port, udp_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lock = threading.Lock()
def log(line):
    with lock:
        with open(log_path, "a") as f:
            f.write(line + "\n")
def plain(addr):
    a = addr[0]
    return a[7:] if a.startswith("::ffff:") else a
def tcp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", tcp_port)); s.listen(16)
    while True:
        c, a = s.accept()
        log("tcp " + plain(a))
        try:
            c.sendall(("src=" + plain(a) + "\n").encode())
        finally:
            c.close()
def udp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", udp_port))
    while True:
        data, a = s.recvfrom(2048)
        op = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 0
        if op == 1:  # TFTP read request: one DATA block (< 512 bytes: the last one)
            log("udp " + plain(a))
            s.sendto(struct.pack("!HH", 3, 1) + ("src=" + plain(a) + "\n").encode(), a)
def icmp(family, proto, echo_type):
    s = socket.socket(family, socket.SOCK_RAW, proto)
    while True:
        data, a = s.recvfrom(65535)
        # IPv4 raw sockets see the IP header; ICMPv6 ones do not.
        off = (data[0] & 0x0f) * 4 if family == socket.AF_INET else 0
        if len(data) > off and data[off] == echo_type:
            log("icmp " + a[0].split("%")[0])
threads = [threading.Thread(target=tcp), threading.Thread(target=udp),
           threading.Thread(target=icmp, args=(socket.AF_INET, socket.IPPROTO_ICMP, 8)),
           threading.Thread(target=icmp, args=(socket.AF_INET6, socket.IPPROTO_ICMPV6, 128))]
for t in threads:
    t.daemon = True
    t.start()
import time; time.sleep(0.2)
log("ready")
threading.Event().wait()
"#;

/// The peer agent (see the module docs); killed on drop.
pub struct PeerAgent {
    _process: Process,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl PeerAgent {
    pub fn start(peer: &Netns) -> PeerAgent {
        let dir = tempfile::Builder::new()
            .prefix("nb-agent-")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("events.log");
        let process = peer
            .spawn(&[
                "python3",
                "-c",
                AGENT,
                log.to_str().expect("utf-8 path"),
                &AGENT_TCP.to_string(),
                &AGENT_UDP.to_string(),
            ])
            .expect("start the peer agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("ready")) {
            assert!(Instant::now() < deadline, "the peer agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        PeerAgent {
            _process: process,
            _dir: dir,
            log,
        }
    }

    /// Event lines so far (`tcp ADDR`, `udp ADDR`, `icmp ADDR`).
    pub fn events(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l != "ready")
            .map(str::to_string)
            .collect()
    }

    /// Sources seen for one kind of event (`tcp`, `udp`, `icmp`).
    pub fn sources(&self, kind: &str) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|l| l.strip_prefix(kind).map(|a| a.trim().to_string()))
            .collect()
    }
}

const CLIENT: &str = r#"
import socket, sys
host, port, line = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    s = socket.create_connection((host, port), timeout=4)
    s.sendall((line + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        b = s.recv(4096)
        if not b:
            break
        buf += b
    s.close()
    print("ok " + buf.decode().strip())
except Exception as e:
    print("error " + type(e).__name__ + ": " + str(e))
"#;

/// From `ns`, a TCP connection to `addr:port` that sends `line` and reads one line back.
/// `Ok(reply)` or `Err(what went wrong)`.
pub fn connect(ns: &Netns, addr: IpAddr, port: u16, line: &str) -> Result<String, String> {
    let out = ns
        .try_exec(&[
            "python3",
            "-c",
            CLIENT,
            &addr.to_string(),
            &port.to_string(),
            line,
        ])
        .expect("run the peer client");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match text.strip_prefix("ok ") {
        Some(reply) => Ok(reply.to_string()),
        None => Err(format!(
            "{text}{}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Whether `addr` answers a ping from `ns` (busybox ping: two echo requests 0.3 s apart,
/// then 2 s for a reply; busybox ignores `-w` until that wait is over).
pub fn pings(ns: &Netns, addr: IpAddr) -> bool {
    let t = Instant::now();
    let r = ns
        .try_exec(&[
            "busybox",
            "ping",
            "-c",
            "2",
            "-i",
            "0.3",
            "-W",
            "2",
            &addr.to_string(),
        ])
        .expect("run ping")
        .status
        .success();
    eprintln!("ping {addr} from {}: {r} in {:.2?}", ns.name(), t.elapsed());
    r
}

/// Prints how long a phase took (collected in the test output).
pub struct Timer {
    test: &'static str,
    start: Instant,
    last: Instant,
}

impl Timer {
    pub fn start(test: &'static str) -> Timer {
        let now = Instant::now();
        Timer {
            test,
            start: now,
            last: now,
        }
    }

    pub fn lap(&mut self, phase: &str) {
        let now = Instant::now();
        eprintln!(
            "[{}] {phase}: {:.2} s (total {:.2} s)",
            self.test,
            (now - self.last).as_secs_f64(),
            (now - self.start).as_secs_f64()
        );
        self.last = now;
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        eprintln!(
            "[{}] total: {:.2} s",
            self.test,
            self.start.elapsed().as_secs_f64()
        );
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
