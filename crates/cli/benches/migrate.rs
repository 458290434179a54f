//! Migration benchmark: a QEMU guest with open TCP connections migrated between two
//! engines, netbind against upstream passt 2025_05_03, in one run. Not a test: prints a
//! markdown table (run it with `scripts/bench-migrate.sh`, as root).
//!
//! How it works: one CNI pod of the testbed ([`PodFixture`]); its peer runs a small
//! server that accepts the guest's connections and holds them. For each round, each
//! connection count and each contender in turn, two engines start in the pod's
//! namespace (same IP: the setup where connections can survive) as the pod's user, with
//! the same command line libvirt gives passt (`--vhost-user --socket … -f -d`), the
//! netbind binary as its `passt` drop-in; upstream's `passt-repair` (as root, as
//! virt-handler runs it) serves both. A testbed guest (TCG, shared memfd memory) boots
//! on the source, opens the connections (`nc … -e cat`: each echoes what it gets) and
//! idles; a second QEMU waits with `-incoming`; QMP migrates over a unix socket with
//! the bandwidth unlimited. Per migration: QEMU's own `downtime` and `total-time` (the
//! source's view), how much later the target runs (polled: the target's engine may still
//! be taking the state over when the source is done; the sum of the two is the pause the
//! guest sees), each engine's part (from its log: netbind says how long its save and load took; passt's
//! debug log stamps "Migration requested" and "Closing migration channel" on each
//! side), and how many connections still echo afterwards.
//!
//! Settings (environment): `MIGRATE_BENCH_ROUNDS` (default 3), `MIGRATE_BENCH_SIZES`
//! (connection counts, default `1 100 1000`), `MIGRATE_BENCH_PASST` (default
//! `/opt/netbind-peers/passt-2025_05_03/passt`, its `passt-repair` beside it),
//! `MIGRATE_BENCH_ONLY` (only the contender whose name contains it).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{POD_USER, env_or, median, pod_user_dir};
use netbind_testbed::qmp::Qmp;
use netbind_testbed::{Guest, GuestNic, GuestOptions, PodFixture, Process, require_privileges};

const NETBIND: &str = env!("CARGO_BIN_EXE_netbind");
const MAC: &str = "02:00:00:be:4c:02";
const PORT: u16 = 7400;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Engine {
    Netbind,
    Passt,
}

fn label(e: Engine) -> &'static str {
    match e {
        Engine::Netbind => "netbind",
        Engine::Passt => "passt",
    }
}

/// The guest: its address by DHCP, the connections, then nothing.
const SCRIPT: &str = r#"
IF=$(nic_by_mac @MAC@)
dhcp4 $IF
i=0
while [ $i -lt @N@ ]; do nc @PEER@ @PORT@ -e /bin/cat & i=$((i + 1)); done
echo OPENED
sleep 100000
"#;

/// The peer: accepts and holds; `count` says how many it holds, `check` how many of
/// them echo a line.
const PEER: &str = r#"
import socket, sys, threading, time
held = []
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", int(sys.argv[1]))); l.listen(4096)
def accept():
    while True: held.append(l.accept()[0])
threading.Thread(target=accept, daemon=True).start()
print("READY", flush=True)
for line in sys.stdin:
    if line.strip() == "count": print(len(held), flush=True)
    elif line.strip() == "check":
        for i, c in enumerate(held):
            try: c.sendall(b"ping %d\n" % i)
            except OSError: pass
        ok, deadline = 0, time.time() + 30
        for i, c in enumerate(held):
            try:
                c.settimeout(max(0.01, deadline - time.time()))
                if c.recv(100) == b"ping %d\n" % i: ok += 1
            except OSError: pass
        print(ok, flush=True)
"#;

struct Peer {
    _process: Process,
    stdin: std::process::ChildStdin,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Peer {
    fn start(pod: &PodFixture) -> Peer {
        let mut c = pod
            .peer
            .command(&["python3", "-c", PEER, &PORT.to_string()]);
        c.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut process = pod.peer.spawn_command(c).expect("peer server");
        let stdin = process.child().stdin.take().unwrap();
        let out = std::io::BufReader::new(process.child().stdout.take().unwrap());
        let mut peer = Peer {
            _process: process,
            stdin,
            out,
        };
        assert_eq!(peer.line(), "READY");
        peer
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).expect("the peer answers");
        l.trim().to_string()
    }

    fn ask(&mut self, command: &str) -> usize {
        writeln!(self.stdin, "{command}").expect("the peer listens");
        self.line().parse().unwrap_or(0)
    }
}

/// One engine in the pod's namespace as the pod's user, in the foreground with debug
/// logs to `log`, its vhost-user socket at `socket`.
fn start_engine(
    pod: &PodFixture,
    engine: Engine,
    passt: &Path,
    socket: &Path,
    log: &Path,
) -> Result<Process, String> {
    let mut argv: Vec<String> = ["setpriv", "--reuid", POD_USER, "--regid", POD_USER]
        .map(String::from)
        .to_vec();
    argv.push("--clear-groups".into());
    match engine {
        Engine::Netbind => argv.extend([NETBIND.into(), "passt".into()]),
        Engine::Passt => argv.push(passt.display().to_string()),
    }
    argv.extend(["--vhost-user", "-f", "-d", "--socket"].map(String::from));
    argv.push(socket.display().to_string());
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut c = pod.pod.command(&argv);
    c.stdin(Stdio::null())
        .stdout(file.try_clone().map_err(|e| e.to_string())?)
        .stderr(file);
    let mut p = pod.pod.spawn_command(c).map_err(|e| format!("{e:?}"))?;
    let mut repair = socket.as_os_str().to_owned();
    repair.push(".repair");
    let repair = PathBuf::from(repair);
    for _ in 0..500 {
        if socket.exists() && repair.exists() {
            std::thread::sleep(Duration::from_millis(200));
            return Ok(p);
        }
        if let Ok(Some(status)) = p.wait_timeout(Duration::from_millis(10)) {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{argv:?} exited ({status}): {said}"));
        }
    }
    Err(format!("{argv:?} made no sockets in 5 s"))
}

/// What one migration measured.
struct Sample {
    downtime_ms: f64,
    total_ms: f64,
    /// From the source's `completed` to the target's `running` (polled every 2 ms).
    resumed_ms: f64,
    source_ms: f64,
    target_ms: f64,
    alive: usize,
    /// What netbind's engines said of the read-out (how long, how made deaf) and of the
    /// rebuild (how long).
    said: String,
}

/// The engine's part on one side, from its log.
fn engine_ms(engine: Engine, log: &str, source: bool) -> f64 {
    match engine {
        Engine::Netbind => {
            // The target's part is in three: the state read while QEMU sends it, then,
            // once QEMU has started the guest's queues, the state taken over (the
            // connections rebuilt in repair mode) and the connections out of repair mode.
            let parts: &[&str] = if source {
                &["handed to QEMU in "]
            } else {
                &[
                    "bytes of state read in ",
                    "taken over in ",
                    "out of repair mode and relayed in ",
                ]
            };
            let ms = |what: &str| {
                log.lines().rev().find_map(|l| {
                    l.split_once(what)?
                        .1
                        .split_whitespace()
                        .next()?
                        .parse::<f64>()
                        .ok()
                })
            };
            parts
                .iter()
                .map(|p| ms(p))
                .sum::<Option<f64>>()
                .unwrap_or(f64::NAN)
        }
        Engine::Passt => {
            let stamp = |marker: &str| {
                log.lines()
                    .rev()
                    .filter(|l| l.contains(marker))
                    .find_map(|l| l.split_once(": ")?.0.trim().parse::<f64>().ok())
            };
            match (
                stamp("Migration requested"),
                stamp("Closing migration channel"),
            ) {
                (Some(a), Some(b)) if b >= a => (b - a) * 1e3,
                _ => f64::NAN,
            }
        }
    }
}

fn qmp_arg(p: &Path) -> String {
    format!("unix:{},server=on,wait=off", p.display())
}

/// One migration of a guest holding `n` connections.
fn run_one(
    pod: &PodFixture,
    peer_ip: IpAddr,
    peer: &mut Peer,
    engine: Engine,
    n: usize,
    passt: &Path,
) -> Result<Sample, String> {
    let dir = pod_user_dir("nb-bench-mig-")?;
    let p = |name: &str| dir.path().join(name);
    let (src_sock, dst_sock) = (p("source.sock"), p("target.sock"));
    let source = start_engine(pod, engine, passt, &src_sock, &p("source.log"))?;
    let target = start_engine(pod, engine, passt, &dst_sock, &p("target.log"))?;
    // Upstream's passt-repair for both (as virt-handler runs it), unless
    // MIGRATE_BENCH_HELPER=netbind gives netbind its own.
    let repair_bin = match (engine, std::env::var("MIGRATE_BENCH_HELPER").as_deref()) {
        (Engine::Netbind, Ok("netbind")) => PathBuf::from(NETBIND).with_file_name("netbind"),
        _ => passt.with_file_name("passt-repair"),
    };
    let repair_args: &[&str] = match repair_bin.file_name().and_then(|n| n.to_str()) {
        Some("netbind") => &["passt-repair"],
        _ => &[],
    };
    let helper = |sock: &Path| {
        let mut path = sock.as_os_str().to_owned();
        path.push(".repair");
        let path = PathBuf::from(path);
        let mut argv = vec![repair_bin.as_os_str()];
        argv.extend(repair_args.iter().map(std::ffi::OsStr::new));
        argv.push(path.as_os_str());
        pod.pod
            .spawn(&argv)
            .map_err(|e| format!("passt-repair: {e:?}"))
    };
    let _helpers = (helper(&src_sock)?, helper(&dst_sock)?);
    let script = SCRIPT
        .replace("@MAC@", MAC)
        .replace("@PEER@", &peer_ip.to_string())
        .replace("@PORT@", &PORT.to_string())
        .replace("@N@", &n.to_string());
    let opts = |extra: Vec<String>| GuestOptions {
        memory_mb: 1024,
        extra_args: extra,
        ..GuestOptions::default()
    };
    let mut guest = Guest::boot_with(
        &pod.pod,
        &[GuestNic::vhost_user(&src_sock, MAC)],
        &script,
        &opts(vec!["-qmp".into(), qmp_arg(&p("source.qmp"))]),
    )
    .map_err(|e| format!("{e:?}"))?;
    let logs = || {
        format!(
            "source engine: {}\ntarget engine: {}",
            std::fs::read_to_string(p("source.log")).unwrap_or_default(),
            std::fs::read_to_string(p("target.log")).unwrap_or_default()
        )
    };
    guest
        .wait_for("OPENED", Duration::from_secs(300))
        .map_err(|e| format!("{e:?}\n{}", guest.console()))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while peer.ask("count") < n {
        if Instant::now() > deadline {
            return Err(format!(
                "the peer holds {} of {n} connections\n{}",
                peer.ask("count"),
                logs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let channel = p("migration.sock");
    let incoming = Guest::boot_with(
        &pod.pod,
        &[GuestNic::vhost_user(&dst_sock, MAC)],
        &script,
        &opts(vec![
            "-qmp".into(),
            qmp_arg(&p("target.qmp")),
            "-incoming".into(),
            format!("unix:{}", channel.display()),
        ]),
    )
    .map_err(|e| format!("{e:?}"))?;
    let mut target_qmp =
        Qmp::connect(&p("target.qmp"), Duration::from_secs(10)).map_err(|e| format!("{e:?}"))?;
    let mut qmp =
        Qmp::connect(&p("source.qmp"), Duration::from_secs(10)).map_err(|e| format!("{e:?}"))?;
    let q = |qmp: &mut Qmp, cmd: &str, args: serde_json::Value| {
        qmp.execute(cmd, args).map_err(|e| format!("{cmd}: {e:?}"))
    };
    q(
        &mut qmp,
        "migrate-set-parameters",
        serde_json::json!({ "max-bandwidth": 10u64 << 30 }),
    )?;
    q(
        &mut qmp,
        "migrate",
        serde_json::json!({ "uri": format!("unix:{}", channel.display()) }),
    )?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        let s = q(&mut qmp, "query-migrate", serde_json::json!({}))?;
        match s["status"].as_str() {
            Some("completed") => break s,
            Some("failed") | Some("cancelled") => {
                return Err(format!("migration {s}\n{}", logs()));
            }
            _ if Instant::now() > deadline => return Err(format!("migration stuck: {s}")),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    // The target may still be loading (its engine taking the state over) when the
    // source is done: how long until the guest runs there.
    let completed = Instant::now();
    let resumed_ms = loop {
        let running = q(&mut target_qmp, "query-status", serde_json::json!({}))?;
        if running["status"] == "running" {
            break completed.elapsed().as_secs_f64() * 1e3;
        }
        if completed.elapsed() > Duration::from_secs(30) {
            return Err(format!("the target does not run after 30 s: {running}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    drop(guest); // the paused source
    std::thread::sleep(Duration::from_secs(2));
    let alive = peer.ask("check");
    drop(incoming);
    drop((source, target));
    let (src_log, dst_log) = (
        std::fs::read_to_string(p("source.log")).unwrap_or_default(),
        std::fs::read_to_string(p("target.log")).unwrap_or_default(),
    );
    if alive < n {
        let said = |log: &str| {
            log.lines()
                .filter(|l| {
                    let l = l.to_lowercase();
                    l.contains("migrat")
                        || l.contains("repair")
                        || l.contains("warn")
                        || l.contains("error")
                })
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        };
        eprintln!(
            "bench migrate: {alive} of {n} connections alive after migrating with {}:\nsource engine:\n{}\ntarget engine:\n{}",
            label(engine),
            said(&src_log),
            said(&dst_log)
        );
    }
    let ms = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    Ok(Sample {
        downtime_ms: ms(&status["downtime"]),
        total_ms: ms(&status["total-time"]),
        resumed_ms,
        source_ms: engine_ms(engine, &src_log, true),
        target_ms: engine_ms(engine, &dst_log, false),
        alive,
        said: [
            (&src_log, "connections read out"),
            (&dst_log, "connections rebuilt"),
            (&dst_log, "out of repair mode"),
        ]
        .iter()
        .filter_map(|(log, what)| {
            let l = log.lines().find(|l| l.contains(what))?;
            Some(
                l.split_once("migration: ")
                    .map_or(l, |(_, r)| r)
                    .to_string(),
            )
        })
        .collect::<Vec<_>>()
        .join("; "),
    })
}

fn main() {
    // `cargo bench` passes --bench; a test run (`cargo test --benches`) does not, and a
    // benchmark is no test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("bench migrate: a benchmark, not a test (run scripts/bench-migrate.sh)");
        return;
    }
    let rounds: usize = env_or("MIGRATE_BENCH_ROUNDS", 3);
    let sizes: Vec<usize> = std::env::var("MIGRATE_BENCH_SIZES")
        .unwrap_or_else(|_| "1 100 1000".into())
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    let passt = PathBuf::from(
        std::env::var("MIGRATE_BENCH_PASST")
            .unwrap_or_else(|_| "/opt/netbind-peers/passt-2025_05_03/passt".into()),
    );
    require_privileges(&["ip", "qemu-system-x86_64", "busybox", "python3", "setpriv"])
        .expect("privileges and tools");
    assert!(
        passt.is_file() && passt.with_file_name("passt-repair").is_file(),
        "{} or its passt-repair is missing: scripts/install-deps.sh builds them",
        passt.display()
    );
    let only = std::env::var("MIGRATE_BENCH_ONLY").unwrap_or_default();
    let pod = PodFixture::new().expect("CNI pod");
    let peer_ip = pod.peer_ip(false).expect("peer address");
    let mut samples: BTreeMap<(usize, Engine), Vec<Sample>> = BTreeMap::new();
    for round in 1..=rounds {
        for &n in &sizes {
            for engine in [Engine::Netbind, Engine::Passt]
                .into_iter()
                .filter(|e| label(*e).contains(&only))
            {
                // A fresh peer per migration: it counts only this guest's connections.
                let mut peer = Peer::start(&pod);
                match run_one(&pod, peer_ip, &mut peer, engine, n, &passt) {
                    Ok(s) => {
                        eprintln!(
                            "bench migrate: round {round}, {n} connections, {}: downtime {:.0} ms, total {:.0} ms, target runs {:.0} ms later, engine {:.1} + {:.1} ms, {} of {n} alive {}",
                            label(engine),
                            s.downtime_ms,
                            s.total_ms,
                            s.resumed_ms,
                            s.source_ms,
                            s.target_ms,
                            s.alive,
                            s.said
                        );
                        samples.entry((n, engine)).or_default().push(s);
                    }
                    Err(e) => eprintln!(
                        "bench migrate: round {round}, {n} connections, {} FAILED: {e}",
                        label(engine)
                    ),
                }
            }
        }
    }
    println!(
        "| connections | engine | QEMU downtime (ms) | target runs after (ms) | guest's pause (ms) | QEMU total (ms) | engine, source (ms) | engine, target (ms) | connections alive after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for ((n, engine), s) in &samples {
        let m = |f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
        let alive: Vec<String> = s.iter().map(|s| s.alive.to_string()).collect();
        println!(
            "| {n} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {} of {n} (each run) |",
            label(*engine),
            m(|s| s.downtime_ms),
            m(|s| s.resumed_ms),
            m(|s| s.downtime_ms + s.resumed_ms),
            m(|s| s.total_ms),
            m(|s| s.source_ms),
            m(|s| s.target_ms),
            alive.join(", ")
        );
    }
    println!(
        "\nMedians over {rounds} rounds; one migration each, the contenders in turn. passt {}; QEMU {}.",
        passt.display(),
        Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string())
            .unwrap_or_default()
    );
}
