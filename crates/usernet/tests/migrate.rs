//! Live migration over vhost-user (privileged; fails, never skips, without QEMU, the
//! guest kernel, busybox or python3): two QEMU 10 processes, TCG, shared memfd memory,
//! the source migrating to the target (`-incoming`) over a unix socket through QMP; one
//! engine each, both in the pod's namespace (the pod's IP stays).
//!
//! The guest keeps opening connections to a peer the whole time, printing each answer
//! with a running count; the source's console has the first ones, the target's the
//! rest. After the switch the target's engine serves the migrated queues: the count
//! goes on with the pod's address as the source the peer saw.
//!
//! TCP connections move with their kernel state (repair mode, the helper run as
//! virt-handler runs passt-repair): 100 idle ones, a stream from the guest the peer
//! checks number by number, and one from the peer the guest checks the same way — every
//! byte once, in order, no reset.
//!
//! The peer's stream goes on through the switch (a segment every 10 ms): segments that
//! reach the source after its read-out must not be acknowledged there and lost, nor
//! draw a reset while no engine has the connection. The sink stops reading before the
//! switch, so the guest's stream arrives with a full send queue. A UDP flow (a TFTP
//! download) keeps its source port and finishes whole on the target.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::pod::{Nic, Running, engine_config, engine_config_from};
use netbind_testbed::agent::SourceAgent;
use netbind_testbed::qmp::Qmp;
use netbind_testbed::{Guest, GuestNic, GuestOptions, PodFixture, require_privileges};

const MAC: &str = "02:00:00:75:e1:02";
const AGENT_TCP: u16 = 7000;
const AGENT_UDP: u16 = 7001;

const SCRIPT: &str = r#"
IF=$(nic_by_mac @MAC@)
dhcp4 $IF
. /run/dhcp-$IF.env
i=0
while [ $i -lt 2000 ]; do
  echo "TICK $i $ip $(echo hi | timeout 3 nc -w 2 @PEER4@ @TCP@)"
  i=$((i + 1))
  usleep 200000
done
"#;

/// The `TICK n ADDRESS src=…` lines of a console whose connection got its answer.
fn ticks(console: &str, want: &str) -> Vec<u32> {
    console
        .lines()
        .filter_map(|l| l.trim().strip_prefix("TICK "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, rest)| *rest == want)
        .filter_map(|(n, _)| n.parse().ok())
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One migration's set-up: an engine for each side (with its repair helper, run as
/// virt-handler runs passt-repair), the source QEMU booting the guest, the target QEMU
/// started with `-incoming` when [`Switch::migrate`] is called. Everything ends on drop.
struct Switch<'a> {
    dir: tempfile::TempDir,
    source_engine: Option<Running>,
    target_engine: Option<Running>,
    source: Option<Guest>,
    target: Option<Guest>,
    target_ns: &'a netbind_testbed::Netns,
    script: String,
    _helpers: (
        std::thread::JoinHandle<std::io::Result<()>>,
        std::thread::JoinHandle<std::io::Result<()>>,
    ),
}

impl<'a> Switch<'a> {
    /// Engines in `source.0` and `target.0` with their configurations; the source QEMU
    /// boots `script`.
    fn boot(
        source: (&'a netbind_testbed::Netns, netbind_usernet::EngineConfig),
        target: (&'a netbind_testbed::Netns, netbind_usernet::EngineConfig),
        script: &str,
    ) -> Switch<'a> {
        let dir = tempfile::Builder::new()
            .prefix("nbu-mig-")
            .tempdir()
            .unwrap();
        for side in ["source", "target"] {
            std::fs::create_dir_all(dir.path().join(side)).unwrap();
        }
        let sock = |side: &str| dir.path().join(side).join("vu.sock");
        let source_engine = Running::start_in(
            source.0,
            source.1,
            Nic::VhostUser,
            &sock("source"),
            &dir.path().join("source"),
        );
        // The target's engine starts once the source's runs (its forwarded ports bound),
        // as a migration's target starts long after its source.
        let source_stats = dir.path().join("source").join("stats");
        wait_until("the source engine runs", Duration::from_secs(10), || {
            source_stats.exists()
        });
        let target_engine = Running::start_in(
            target.0,
            target.1,
            Nic::VhostUser,
            &sock("target"),
            &dir.path().join("target"),
        );
        let helpers = (
            repair_helper(&sock("source")),
            repair_helper(&sock("target")),
        );
        let guest = Guest::boot_with(
            source.0,
            &[GuestNic::vhost_user(&sock("source"), MAC)],
            script,
            &GuestOptions {
                extra_args: vec!["-qmp".into(), qmp_arg(&dir.path().join("source.qmp"))],
                ..GuestOptions::default()
            },
        )
        .expect("source guest boots");
        Switch {
            source_engine: Some(source_engine),
            target_engine: Some(target_engine),
            source: Some(guest),
            target: None,
            target_ns: target.0,
            script: script.to_string(),
            dir,
            _helpers: helpers,
        }
    }

    fn source(&self) -> &Guest {
        self.source.as_ref().expect("the source QEMU runs")
    }

    /// Waits (up to 150 s: the boot under TCG) until the source guest printed `line`.
    fn source_says(&self, line: &str) {
        wait_until(
            &format!("the guest says {line}"),
            Duration::from_secs(150),
            || self.source().console().lines().any(|l| l.trim() == line),
        );
    }

    fn target(&mut self) -> &mut Guest {
        self.target.as_mut().expect("migrated")
    }

    /// Starts the target QEMU (`-incoming`); the source's and the target's monitors,
    /// once the target's answers (it listens for the migration then).
    fn start_target(&mut self) -> (Qmp, Qmp) {
        let target = Guest::boot_with(
            self.target_ns,
            &[GuestNic::vhost_user(
                &self.dir.path().join("target").join("vu.sock"),
                MAC,
            )],
            &self.script,
            &GuestOptions {
                extra_args: vec![
                    "-qmp".into(),
                    qmp_arg(&self.dir.path().join("target.qmp")),
                    "-incoming".into(),
                    format!("unix:{}", self.channel().display()),
                ],
                ..GuestOptions::default()
            },
        )
        .expect("target QEMU starts");
        self.target = Some(target);
        let connect = |name: &str| {
            Qmp::connect(&self.dir.path().join(name), Duration::from_secs(10)).expect(name)
        };
        let target_qmp = connect("target.qmp");
        (connect("source.qmp"), target_qmp)
    }

    fn channel(&self) -> std::path::PathBuf {
        self.dir.path().join("migration.sock")
    }

    fn start_migration(&self, qmp: &mut Qmp) {
        let uri = format!("unix:{}", self.channel().display());
        qmp.execute("migrate", serde_json::json!({ "uri": uri }))
            .expect("migrate");
    }

    /// Starts the target QEMU, calls `before` once it listens, migrates and waits until
    /// the migration completed and the guest runs on the target (the source QEMU stays,
    /// paused: take it to end it). QEMU's last `query-migrate`.
    fn migrate(&mut self, before: impl FnOnce()) -> serde_json::Value {
        let (mut qmp, mut target_qmp) = self.start_target();
        before();
        self.start_migration(&mut qmp);
        let mut status = serde_json::Value::Null;
        wait_until("the migration completes", Duration::from_secs(120), || {
            status = qmp
                .execute("query-migrate", serde_json::json!({}))
                .expect("query-migrate");
            assert_ne!(
                status["status"],
                "failed",
                "{status}\n{}",
                self.source().qemu_stderr()
            );
            status["status"] == "completed"
        });
        eprintln!(
            "downtime {} ms, total {} ms",
            status["downtime"], status["total-time"]
        );
        // The target may still be taking the state over when the source is done.
        wait_until(
            "the guest runs on the target",
            Duration::from_secs(30),
            || {
                let running = target_qmp
                    .execute("query-status", serde_json::json!({}))
                    .expect("query-status");
                running["status"] == "running"
            },
        );
        status
    }

    /// A migration whose target fails: its engine ends once the target QEMU has
    /// connected, so the target cannot take the device's state; then, as libvirt does
    /// when the target did not finish, the source is told to go on (`cont`). The
    /// source's last `query-migrate`.
    fn fail_migration(&mut self) -> serde_json::Value {
        let (mut qmp, _target_qmp) = self.start_target();
        let dir = self.dir.path().join("target");
        self.target_engine.take().unwrap().stop(&dir);
        self.start_migration(&mut qmp);
        let mut status = serde_json::Value::Null;
        wait_until("the migration ends", Duration::from_secs(120), || {
            status = qmp
                .execute("query-migrate", serde_json::json!({}))
                .expect("query-migrate");
            status["status"] == "completed" || status["status"] == "failed"
        });
        let run = qmp
            .execute("query-status", serde_json::json!({}))
            .expect("query-status");
        if run["status"] != "running" {
            qmp.execute("cont", serde_json::json!({})).expect("cont");
        }
        self.target = None;
        status
    }

    /// Ends both QEMUs and both engines; the engines' counters (source, target).
    fn stop(mut self) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        self.source = None;
        self.target = None;
        let dir = self.dir.path().to_path_buf();
        let src = self.source_engine.take().unwrap().stop(&dir.join("source"));
        let dst = match self.target_engine.take() {
            Some(e) => e.stop(&dir.join("target")),
            None => common::pod::read_stats(&dir.join("target").join("stats")),
        };
        (src, dst)
    }
}

fn qmp_arg(p: &std::path::Path) -> String {
    format!("unix:{},server=on,wait=off", p.display())
}

#[test]
fn a_guest_migrated_to_another_engine_goes_on_reaching_its_peer() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox", "python3"]).unwrap();
    let pod = PodFixture::new().expect("CNI pod");
    let (pod4, peer4) = (pod.pod_ip(false).unwrap(), pod.peer_ip(false).unwrap());
    let _agent = SourceAgent::start(&pod.peer, AGENT_TCP, AGENT_UDP).expect("peer agent");
    let script = SCRIPT
        .replace("@MAC@", MAC)
        .replace("@PEER4@", &peer4.to_string())
        .replace("@TCP@", &AGENT_TCP.to_string());
    let cfg = || engine_config(&pod, &[]);
    let mut switch = Switch::boot((&pod.pod, cfg()), (&pod.pod, cfg()), &script);
    let answered = format!("{pod4} src={pod4}");
    wait_until(
        "the guest reaches its peer from the source",
        Duration::from_secs(150),
        || ticks(&switch.source().console(), &answered).len() >= 3,
    );
    let mut last_on_source = None;
    switch.migrate(|| {});
    if let Some(source) = switch.source.take() {
        last_on_source = ticks(&source.console(), &answered).into_iter().max();
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while ticks(&switch.target().console(), &answered).len() < 5 {
        if Instant::now() > deadline {
            let console = switch.target().console();
            let (src, dst) = switch.stop();
            panic!(
                "the guest reaches its peer from the target five times within 90 s\n\
                 source engine {src:?}\ntarget engine {dst:?}\ntarget console:\n{console}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let console = switch.target().console();
    let first_on_target = ticks(&console, &answered).into_iter().min();
    assert!(
        first_on_target > last_on_source,
        "the count went on: {last_on_source:?} then {first_on_target:?}\n{console}"
    );
    let (src, dst) = switch.stop();
    assert!(dst["vu_frames_from_guest"] > 0, "{dst:?}");
    assert_eq!(dst["vu_queue_errors"], 0, "{dst:?}");
    assert_eq!(src["vu_queue_errors"], 0, "{src:?}");
}

/// The port both engines forward (two engines in one namespace share it).
const SHARED: u16 = 7301;

const SERVES: &str = r#"
IF=$(nic_by_mac @MAC@)
dhcp4 $IF
nc -ll -p @FWD@ -e /bin/echo forwarded &
echo STARTED
sleep 600
"#;

/// From the peer pod, `n` connections one after another to `addr`:`port`, each tried
/// up to `tries` times (a second apart); how many were answered `forwarded`.
fn forwarded_answers(pod: &PodFixture, addr: std::net::IpAddr, n: u32, tries: u32) -> String {
    let client = format!(
        "import socket, time\n\
         ok = 0\n\
         for i in range({n}):\n\
         \x20   for t in range({tries}):\n\
         \x20       try:\n\
         \x20           s = socket.create_connection(('{addr}', {SHARED}), 5); s.settimeout(5)\n\
         \x20           if s.recv(100).decode().strip() == 'forwarded': ok += 1; break\n\
         \x20       except OSError: pass\n\
         \x20       time.sleep(1)\n\
         print(ok)"
    );
    pod.peer
        .exec(&["python3", "-c", &client])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("{e:?}"))
}

/// Both engines in one namespace forward the same port: the target's waits while the
/// guest runs on the source (every connection reaches the guest there, none the target
/// that has no guest yet), opens beside the source's once the guest runs on the target,
/// and has the port alone once the source QEMU is gone: every connection reaches the
/// guest there, at the first try.
#[test]
fn a_port_both_engines_forward_reaches_the_guest_before_and_after_the_migration() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox", "python3"]).unwrap();
    let pod = PodFixture::new().expect("CNI pod");
    let pod4 = pod.pod_ip(false).unwrap();
    let script = SERVES
        .replace("@MAC@", MAC)
        .replace("@FWD@", &SHARED.to_string());
    let cfg = || engine_config(&pod, &[SHARED]);
    let mut switch = Switch::boot((&pod.pod, cfg()), (&pod.pod, cfg()), &script);
    switch.source_says("STARTED");
    // Each connection tried once: one the target's engine took would go unanswered.
    let listening = || {
        let out = pod
            .pod
            .exec(&["ss", "-Hltn", &format!("sport = :{SHARED}")]);
        out.map_or(0, |o| String::from_utf8_lossy(&o.stdout).lines().count())
    };
    let alone = listening();
    let before = forwarded_answers(&pod, pod4, 6, 1);
    switch.migrate(|| {});
    let shared = listening();
    drop(switch.source.take());
    // The source lets go of the port once its QEMU left; then no connection can meet
    // its silenced listener.
    wait_until(
        "the source closes its forwarded port",
        Duration::from_secs(20),
        || listening() == alone,
    );
    let after = forwarded_answers(&pod, pod4, 6, 1);
    let console = switch.target().console();
    let (src, dst) = switch.stop();
    assert!(
        alone > 0 && shared == 2 * alone,
        "listeners: {alone}, then {shared}"
    );
    assert_eq!(before, "6", "on the source\nsource engine {src:?}");
    assert_eq!(
        after, "6",
        "on the target\ntarget engine {dst:?}\n{console}"
    );
    assert!(dst["tcp_accepted"] >= 6, "{dst:?}");
}

/// A peer for the connections that must survive: 100 idle ones (the guest echoes what
/// they carry: `check` sends a line on each and counts the echoes), a sink that checks
/// the guest's stream of consecutive numbers (reading nothing between `hold` and
/// `release`), a source that sends one until `stop`, and a phase port the guest polls
/// for `stop`.
const PEER: &str = r#"
import socket, sys, threading, time
E, S, R, P, U = map(int, sys.argv[1:6])
idle, st = [], {"phase": "wait", "sink": 0, "gap": None, "sent": 0, "err": None, "hold": False}
def listen(port):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", port)); l.listen(256); return l
def echoes():
    l = listen(E)
    while True: idle.append(l.accept()[0])
def sink():
    c, buf, n = listen(S).accept()[0], b"", 0
    while True:
        if st["hold"]: time.sleep(0.01); continue
        try: d = c.recv(65536)
        except OSError as e: st["err"] = "sink: %s" % e; return
        if not d: return
        buf += d
        *lines, buf = buf.split(b"\n")
        for x in lines:
            v = int(x)
            if v != n + 1 and st["gap"] is None: st["gap"] = "%d then %d" % (n, v)
            n = v
        st["sink"] = n
def source():
    c, i = listen(R).accept()[0], 1
    try:
        while st["phase"] != "stop":
            c.sendall(b"".join(b"%d\n" % (i + k) for k in range(100))); i += 100
            st["sent"] = i - 1; time.sleep(0.01)
        c.close()
    except OSError as e: st["err"] = "source: %s" % e
def phase():
    l = listen(P)
    while True:
        c = l.accept()[0]; c.sendall((st["phase"] + "\n").encode()); c.close()
udp = {"sources": set(), "blocks": 0, "md5": None}
def tftp():
    # One read request, answered from this port with blocks until `stop`, then a
    # short last block; each block waits for the guest's ACK of the one before.
    import hashlib, struct
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", U)); u.settimeout(0.5)
    client, block, data, md5 = None, 0, b"", hashlib.md5()
    while True:
        try: d, a = u.recvfrom(2048)
        except socket.timeout:
            if client: u.sendto(struct.pack("!HH", 3, block) + data, client)
            continue
        udp["sources"].add(a)
        op = struct.unpack("!H", d[:2])[0]
        if op == 1 and client is None: client = a
        elif op == 4 and a == client and struct.unpack("!H", d[2:4])[0] == block:
            if len(data) < 512 and block > 0: udp["md5"] = md5.hexdigest(); return
        else: continue
        block = (block + 1) & 0xffff
        data = b"" if st["phase"] == "stop" else (b"%07d " % udp["blocks"]) * 64
        md5.update(data); udp["blocks"] += 1
        u.sendto(struct.pack("!HH", 3, block) + data, client)
for f in (echoes, sink, source, phase, tftp): threading.Thread(target=f, daemon=True).start()
print("READY", flush=True)
checks = 0
for line in sys.stdin:
    if line.strip() == "check":
        # A line on each, then its echo within 10 s in all; a late echo of an earlier
        # check is told apart by the check's number.
        checks += 1
        conns, ok, deadline = list(idle), 0, time.time() + 10
        for i, c in enumerate(conns):
            try: c.sendall(b"ping %d %d\n" % (checks, i))
            except OSError: pass
        for i, c in enumerate(conns):
            want, got = b"ping %d %d" % (checks, i), b""
            try:
                while want not in got.split(b"\n") and time.time() < deadline:
                    c.settimeout(max(0.01, deadline - time.time()))
                    d = c.recv(4096)
                    if not d: break
                    got += d
                ok += want in got.split(b"\n")
            except OSError: pass
        print("IDLE %d %d" % (ok, len(idle)), flush=True)
    elif line.strip() == "udp":
        print("UDP %d %d %s" % (len(udp["sources"]), udp["blocks"], udp["md5"]), flush=True)
    elif line.strip() in ("hold", "release"):
        st["hold"] = line.strip() == "hold"; print("OK", flush=True)
    elif line.strip() == "stop":
        st["phase"] = "stop"; time.sleep(2)
        print("SINK %d GAP %s SENT %d ERR %s" % (st["sink"], st["gap"], st["sent"], st["err"]), flush=True)
"#;
const ECHO: u16 = 7200;
const SINK: u16 = 7201;
const SOURCE: u16 = 7202;
const PHASE: u16 = 7203;
const UDP_ECHO: u16 = 7204;

const STREAMS: &str = r#"
IF=$(nic_by_mac @MAC@)
dhcp4 $IF
i=0
while [ $i -lt 100 ]; do nc @PEER4@ @ECHO@ -e /bin/cat & i=$((i + 1)); done
seq 1 100000000 | nc @PEER4@ @SINK@ &
tftp -g -r stream -l /tmp/stream @PEER4@ @UDP@ > /dev/null 2>&1 &
TFTP=$!
sleep 100000 | nc @PEER4@ @SOURCE@ | awk 'BEGIN { n = 0; gap = "" } { if (gap == "" && $1 != n + 1) gap = n " then " $1; n = $1 } END { print "RESULT received " n; print "RESULT gap " (gap == "" ? "none" : gap) }' > /tmp/received &
echo STREAMING
while [ "$(nc @PEER4@ @PHASE@)" != stop ]; do sleep 1; done
i=0
while [ "$(wc -l < /tmp/received)" -lt 2 ] && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
cat /tmp/received
i=0
while kill -0 $TFTP 2> /dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
echo "RESULT tftp $(md5sum < /tmp/stream | cut -d' ' -f1)"
"#;

/// The test's end of the peer script: its commands and answers.
struct Peer {
    process: netbind_testbed::Process,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Peer {
    fn start(pod: &PodFixture) -> Peer {
        let ports = [ECHO, SINK, SOURCE, PHASE, UDP_ECHO].map(|p| p.to_string());
        let mut argv = vec!["python3", "-c", PEER];
        argv.extend(ports.iter().map(String::as_str));
        let mut c = pod.peer.command(&argv);
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        let mut process = pod.peer.spawn_command(c).expect("peer");
        let out = std::io::BufReader::new(process.child().stdout.take().unwrap());
        let mut peer = Peer { process, out };
        assert_eq!(peer.line(), "READY");
        peer
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        std::io::BufRead::read_line(&mut self.out, &mut l).expect("peer answers");
        l.trim().to_string()
    }

    fn ask(&mut self, command: &str) -> String {
        let stdin = self.process.child().stdin.as_mut().unwrap();
        std::io::Write::write_all(stdin, format!("{command}\n").as_bytes()).unwrap();
        self.line()
    }
}

/// The repair helper as virt-handler runs passt-repair: against the engine's
/// `<socket>.repair`, as root, until the engine closes it.
fn repair_helper(socket: &std::path::Path) -> std::thread::JoinHandle<std::io::Result<()>> {
    let mut path = socket.as_os_str().to_owned();
    path.push(".repair");
    std::thread::spawn(move || {
        netbind_usernet::migrate::repair::helper(path.as_ref(), Duration::from_secs(30))
    })
}

/// The guest of [`STREAMS`] booted on the source, streaming, its 100 idle connections
/// answering.
fn streaming<'a>(pod: &'a PodFixture, peer: &mut Peer) -> Switch<'a> {
    let script = STREAMS
        .replace("@MAC@", MAC)
        .replace("@PEER4@", &pod.peer_ip(false).unwrap().to_string())
        .replace("@ECHO@", &ECHO.to_string())
        .replace("@SINK@", &SINK.to_string())
        .replace("@SOURCE@", &SOURCE.to_string())
        .replace("@PHASE@", &PHASE.to_string())
        .replace("@UDP@", &UDP_ECHO.to_string());
    let cfg = || engine_config(pod, &[]);
    let switch = Switch::boot((&pod.pod, cfg()), (&pod.pod, cfg()), &script);
    switch.source_says("STREAMING");
    // The guest forks its 100 connections in the background; under TCG that can take
    // longer than its line on the console.
    all_idle_answer(peer, "before the migration", Duration::from_secs(60));
    switch
}

/// Waits until the peer's 100 idle connections all echo, for at most `within`: a guest
/// under TCG on a loaded machine may take seconds to run again (its 100 `cat`s to wake)
/// after its queues restart. Says how long it took.
fn all_idle_answer(peer: &mut Peer, when: &str, within: Duration) {
    let began = Instant::now();
    let mut idle = peer.ask("check");
    while idle != "IDLE 100 100" {
        assert!(
            began.elapsed() < within,
            "the idle connections {when}: the peer says {idle} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
        idle = peer.ask("check");
    }
    eprintln!(
        "the idle connections {when} answered within {:?}",
        began.elapsed()
    );
}

/// Tells the peer to stop; what it says of the streams, and what `guest` reports of
/// them once its script is done.
fn stop_streams(peer: &mut Peer, guest: &mut Guest) -> (String, BTreeMap<String, String>) {
    let streams = peer.ask("stop");
    let results = guest.wait_done(Duration::from_secs(60));
    let console = guest.console();
    let results = results.unwrap_or_else(|e| panic!("{e}\nconsole:\n{console}"));
    (streams, results)
}

/// Both streams, checked by their receivers once the peer is told to stop: every byte
/// once, in order, no error.
fn assert_streams_whole(streams: &str, results: &BTreeMap<String, String>) {
    let fields: Vec<&str> = streams.split_whitespace().collect();
    assert_eq!(fields[2..4], ["GAP", "None"], "{streams}");
    assert_eq!(fields[6..], ["ERR", "None"], "{streams}");
    assert_eq!(
        results.get("gap").map(String::as_str),
        Some("none"),
        "{results:?}"
    );
    assert_eq!(
        results.get("received").map(String::as_str),
        Some(fields[5]),
        "{results:?}"
    );
}

#[test]
fn tcp_connections_survive_a_migration_with_every_byte_in_order() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox", "python3"]).unwrap();
    let pod = PodFixture::new().expect("CNI pod");
    let mut peer = Peer::start(&pod);
    let mut switch = streaming(&pod, &mut peer);
    // The sink stops reading: the guest's stream fills the source socket's send queue,
    // which the target must take over whole.
    assert_eq!(peer.ask("hold"), "OK");
    std::thread::sleep(Duration::from_secs(3));
    let udp_before = peer.ask("udp");
    switch.migrate(|| {});
    drop(switch.source.take());
    assert_eq!(peer.ask("release"), "OK");
    all_idle_answer(&mut peer, "after the migration", Duration::from_secs(30));
    let udp_after = peer.ask("udp");
    let (streams, results) = stop_streams(&mut peer, switch.target());
    let (src, dst) = switch.stop();
    // 100 idle connections and the two streams, carried and taken over.
    assert_eq!(src["tcp_migrated_out"], 102, "{src:?}");
    assert_eq!(dst["tcp_migrated_in"], 102, "{dst:?}");
    assert_eq!(dst["tcp_migrate_failed"], 0, "{dst:?}");
    eprintln!(
        "queues carried: {} bytes out, {} in, {} owed",
        src["tcp_migrated_queue_out"], dst["tcp_migrated_queue_in"], dst["tcp_migrated_owed"]
    );
    assert_eq!(
        src["tcp_migrated_queue_out"], dst["tcp_migrated_queue_in"],
        "every queued byte rebuilt"
    );
    // The guest's stream reached the sink whole, in order, and went on after the
    // switch; the peer's reached the guest the same way.
    assert_streams_whole(&streams, &results);
    // The guest's UDP flow (a TFTP download, block by block) kept its source port (the
    // peer saw one), went on after the switch, and delivered every block once.
    let udp: Vec<&str> = udp_after.split_whitespace().collect();
    let blocks = |u: &str| -> u64 { u.split_whitespace().nth(2).unwrap().parse().unwrap() };
    assert_eq!(
        udp[1], "1",
        "one source port for the guest's UDP flow: {udp_after}"
    );
    assert!(
        blocks(&udp_after) > blocks(&udp_before) + 10,
        "{udp_before} then {udp_after}"
    );
    let udp_end = peer.ask("udp");
    let md5 = udp_end.split_whitespace().nth(3).unwrap();
    assert_eq!(
        results.get("tftp").map(String::as_str),
        Some(md5),
        "{udp_end}"
    );
    assert!(dst["udp_migrated_in"] >= 1, "{dst:?}");
}

/// A paused VM (QMP `stop`, then `cont`: `virtctl pause` and `unpause`) stops and
/// restarts its queues: the engine keeps its connections, and both streams go on whole.
#[test]
fn a_paused_guest_goes_on_with_its_connections() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox", "python3"]).unwrap();
    let pod = PodFixture::new().expect("CNI pod");
    let mut peer = Peer::start(&pod);
    let mut switch = streaming(&pod, &mut peer);
    let mut qmp = Qmp::connect(
        &switch.dir.path().join("source.qmp"),
        Duration::from_secs(10),
    )
    .expect("source QMP");
    qmp.execute("stop", serde_json::json!({})).expect("stop");
    std::thread::sleep(Duration::from_secs(2));
    qmp.execute("cont", serde_json::json!({})).expect("cont");
    all_idle_answer(&mut peer, "after the pause", Duration::from_secs(30));
    let (streams, results) = stop_streams(&mut peer, switch.source.as_mut().unwrap());
    let (src, _) = switch.stop();
    assert_streams_whole(&streams, &results);
    assert_eq!(src["tcp_migrated_out"], 0, "{src:?}");
}

/// A migration whose target fails after the source read its state out: QEMU resumes
/// the source, whose engine takes the state back — the connections rebuilt from what
/// it read, the forwarded ports open again — so the 100 idle connections and both
/// streams go on whole there.
#[test]
fn a_migration_whose_target_fails_leaves_the_guest_its_connections() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox", "python3"]).unwrap();
    let pod = PodFixture::new().expect("CNI pod");
    let mut peer = Peer::start(&pod);
    let mut switch = streaming(&pod, &mut peer);
    let status = switch.fail_migration();
    eprintln!("the failed migration: {status}");
    all_idle_answer(
        &mut peer,
        "after the failed migration",
        Duration::from_secs(30),
    );
    let (streams, results) = stop_streams(&mut peer, switch.source.as_mut().unwrap());
    let (src, _) = switch.stop();
    assert_streams_whole(&streams, &results);
    assert_eq!(src["migrations_taken_back"], 1, "{src:?}");
    assert_eq!(src["tcp_migrated_out"], 102, "{src:?}");
    assert_eq!(src["tcp_migrate_failed"], 0, "{src:?}");
}

/// The target pod's forwarded port, served by the guest after the migration.
const FORWARDED: u16 = 7300;

const MOVED: &str = r#"
IF=$(nic_by_mac @MAC@)
dhcp4 $IF
nc @PEER4@ @ECHO@ -e /bin/cat &
IDLE=$!
echo forwarded | nc -l -p @FWD@ &
echo STARTED
while [ "$(nc @PEER4@ @PHASE@)" != stop ]; do sleep 1; done
i=0
while kill -0 $IDLE 2> /dev/null && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
if kill -0 $IDLE 2> /dev/null; then result idle open; else result idle reset; fi
result address "$(ip -4 addr show dev $IF | grep -o 'inet [0-9.]*' | cut -d' ' -f2)"
dhcp4 $IF > /dev/null 2>&1
. /run/dhcp-$IF.env
result lease "$ip"
result tcp "$(echo hi | timeout 10 nc -w 5 @PEER4@ @TCP@)"
"#;

/// The target's engine runs in another pod, with another address: the guest keeps the
/// address, gateway and lease the source gave it; a connection that cannot move (its
/// address is not the target's) is reset at once; new connections leave with the
/// target pod's address, and the target pod's forwarded port reaches the guest. (The other pod is the fixture's peer: the target engine runs
/// there, beside the peer's services.)
#[test]
fn a_guest_migrated_to_a_pod_with_another_address_keeps_its_own() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox", "python3"]).unwrap();
    let pod = PodFixture::new().expect("CNI pod");
    let (pod4, peer4) = (pod.pod_ip(false).unwrap(), pod.peer_ip(false).unwrap());
    let mut peer = Peer::start(&pod);
    let _agent = SourceAgent::start(&pod.peer, AGENT_TCP, AGENT_UDP).expect("peer agent");
    let script = MOVED
        .replace("@MAC@", MAC)
        .replace("@PEER4@", &peer4.to_string())
        .replace("@ECHO@", &ECHO.to_string())
        .replace("@PHASE@", &PHASE.to_string())
        .replace("@TCP@", &AGENT_TCP.to_string())
        .replace("@FWD@", &FORWARDED.to_string());
    let mut switch = Switch::boot(
        (&pod.pod, engine_config(&pod, &[])),
        (
            &pod.peer,
            engine_config_from(pod.peer_result(), &[FORWARDED]),
        ),
        &script,
    );
    switch.source_says("STARTED");
    let mut idle = String::new();
    wait_until("the idle connection is up", Duration::from_secs(20), || {
        idle = peer.ask("check");
        idle == "IDLE 1 1"
    });
    switch.migrate(|| {});
    drop(switch.source.take());
    let client = format!(
        "import socket; s = socket.create_connection(('{peer4}', {FORWARDED}), 10); \
         s.settimeout(10); print(s.recv(100).decode().strip())"
    );
    let forwarded = pod
        .pod
        .exec(&["python3", "-c", &client])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    peer.ask("stop");
    let results = switch.target().wait_done(Duration::from_secs(60));
    let console = switch.target().console();
    let r = results.unwrap_or_else(|e| panic!("{e}\nconsole:\n{console}"));
    let (_, dst) = switch.stop();
    assert_eq!(r.get("address"), Some(&pod4.to_string()), "{console}");
    assert_eq!(r.get("lease"), Some(&pod4.to_string()), "{console}");
    assert_eq!(
        r.get("idle").map(String::as_str),
        Some("reset"),
        "{console}"
    );
    assert_eq!(r.get("tcp"), Some(&format!("src={peer4}")), "{console}");
    assert_eq!(
        forwarded.as_deref().ok(),
        Some("forwarded"),
        "the target's forwarded port: {forwarded:?}"
    );
    assert_eq!(dst["tcp_migrate_failed"], 1, "{dst:?}");
    assert!(dst["rst_sent"] >= 1, "{dst:?}");
}
