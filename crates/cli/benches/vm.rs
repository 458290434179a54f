//! VM-mode benchmark: netbind's engine against upstream passt as a QEMU guest's network
//! back end, over vhost-user and over the stream socket. Not a test: prints a markdown
//! table (run it with `scripts/bench-vm.sh`, as root).
//!
//! How it works: one CNI pod of the testbed ([`PodFixture`]: the pod and a peer on the
//! cluster bridge), the peer running `iperf3 -s`. For each round, each vCPU count and each
//! contender in turn (netbind over vhost-user, the same without busy polling, passt over
//! vhost-user, netbind over the stream socket, passt over the stream socket) the engine
//! starts in the pod's namespace as the pod's user (uid 107, KubeVirt's qemu user, as a
//! launcher pod runs it) listening on a unix socket; a testbed guest (QEMU TCG, Debian's
//! kernel, busybox, the host's iperf3) boots on it, takes its address from the engine by
//! DHCP and runs iperf3 to the peer (a server started for that boot), guest→peer then
//! peer→guest (`-R`). The guest prints a
//! marker on its console before and after each run; at each marker the bench reads the
//! engine's utime+stime (`/proc/PID/stat`), so the CPU time per GB is the engine's CPU time
//! during the run over the bytes the receiving iperf3 counted. Memory is read at the end of
//! the runs: VmRSS, which counts the pages of the guest's shared memory a vhost-user engine
//! has touched, and RssAnon, the engine's own. The contenders take turns so that a busy
//! moment of the machine falls on all of them; the table gives medians over the rounds.
//!
//! Each contender gives the guest the MTU of the cell (`--mtu`, both engines; the guest
//! takes it from DHCP): 65520, both engines' default, where the guest sends 64 KiB
//! segments anyway, and 1500, where a guest without segmentation offload to its back end
//! (passt offers none) sends one MTU per frame.
//!
//! Settings (environment): `VM_BENCH_SECS` (iperf3 seconds per direction, default 5),
//! `VM_BENCH_ROUNDS` (default 3), `VM_BENCH_CPUS` (vCPU counts, default `1 2`),
//! `VM_BENCH_MTUS` (guest MTUs, default `65520 1500`),
//! `VM_BENCH_PASST` (default `/opt/netbind-peers/passt-2025_05_03/passt`, built by
//! `scripts/install-deps.sh`), `VM_BENCH_ONLY` (only the contenders whose label contains
//! it, e.g. `vhost-user`).

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{POD_USER, env_or, median, pod_user_dir};
use netbind_testbed::{Guest, GuestNic, GuestOptions, PodFixture, Process, require_privileges};

const NETBIND: &str = env!("CARGO_BIN_EXE_netbind");
const MAC: &str = "02:00:00:be:4c:01";
const PEER_PORT: u16 = 5201;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Engine {
    Netbind,
    /// `--busy-poll 0`: sleeps as soon as there is nothing to do, as passt does.
    NetbindNoPoll,
    Passt,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Link {
    VhostUser,
    Stream,
}

const CONTENDERS: [(Link, Engine); 6] = [
    (Link::VhostUser, Engine::Netbind),
    (Link::VhostUser, Engine::NetbindNoPoll),
    (Link::VhostUser, Engine::Passt),
    (Link::Stream, Engine::Netbind),
    (Link::Stream, Engine::NetbindNoPoll),
    (Link::Stream, Engine::Passt),
];

fn label(link: Link, engine: Engine) -> &'static str {
    match (link, engine) {
        (Link::VhostUser, Engine::Netbind) => "netbind, vhost-user",
        (Link::VhostUser, Engine::NetbindNoPoll) => "netbind --busy-poll 0, vhost-user",
        (Link::Stream, Engine::NetbindNoPoll) => "netbind --busy-poll 0, stream socket",
        (Link::VhostUser, Engine::Passt) => "passt, vhost-user",
        (Link::Stream, Engine::Netbind) => "netbind, stream socket",
        (Link::Stream, Engine::Passt) => "passt, stream socket",
    }
}

/// What the guest runs: DHCP from the engine, then each direction between markers, then
/// the iperf3 reports (JSON) once nothing is measured any more.
const SCRIPT: &str = r#"
IF=$(nic_by_mac @MAC@)
dhcp4 $IF
result mtu "$(cat /sys/class/net/$IF/mtu)"
for d in up down; do
  if [ $d = down ]; then R=-R; else R=; fi
  echo "BEGIN $d"
  timeout $((@SECS@ + 30)) iperf3 -c @PEER@ -p @PORT@ -t @SECS@ --connect-timeout 5000 -J $R > /tmp/$d.json 2>&1
  echo "END $d"
done
for d in up down; do echo "JSON $d"; cat /tmp/$d.json; echo "JSONEND $d"; done
"#;

/// One direction of one run.
#[derive(Clone)]
struct Way {
    gbits: f64,
    /// Engine CPU seconds per 10^9 bytes received.
    cpu_per_gb: f64,
    /// Per interval of the sender (for the progress lines).
    intervals: Vec<f64>,
}

struct Sample {
    up: Way,
    down: Way,
    vm_rss_mib: f64,
    anon_mib: f64,
    mtu: String,
}

/// utime + stime of every thread of `pid`, in seconds.
fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("the engine (pid {pid}) is gone: {e}"))?;
    // Fields after the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    match f[..] {
        [u, s] => Ok((u + s) / ticks),
        _ => Err(format!("unreadable /proc/{pid}/stat: {stat}")),
    }
}

/// A `/proc/PID/status` field in MiB (the kernel gives kB).
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `(bytes, seconds)` the receiver counted, from the iperf3 report of direction `d`, and
/// the rate of each interval (Gbit/s; a stall shows there).
fn iperf_result(console: &str, d: &str) -> Result<(f64, f64, Vec<f64>), String> {
    let (begin, end) = (format!("JSON {d}\n"), format!("JSONEND {d}"));
    let json = console
        .split_once(&begin)
        .and_then(|(_, r)| r.split_once(&end))
        .map(|(j, _)| j)
        .ok_or_else(|| format!("no iperf3 report for {d}"))?;
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("iperf3 {d}: {e}: {json}"))?;
    let intervals = v["intervals"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["sum"]["bits_per_second"].as_f64())
                .map(|b| b / 1e9)
                .collect()
        })
        .unwrap_or_default();
    let r = &v["end"]["sum_received"];
    match (r["bytes"].as_f64(), r["seconds"].as_f64()) {
        (Some(b), Some(s)) if b > 0.0 && s > 0.0 => Ok((b, s, intervals)),
        _ => Err(format!("iperf3 {d} moved nothing: {json}")),
    }
}

/// The engine in the pod's namespace as the pod's user, listening on `socket`.
fn start_engine(
    pod: &PodFixture,
    link: Link,
    engine: Engine,
    passt: &Path,
    socket: &Path,
    log: &Path,
    mtu: u16,
) -> Result<Process, String> {
    let (program, mode) = match engine {
        Engine::Netbind | Engine::NetbindNoPoll => (NETBIND.to_string(), "usernet"),
        // In the foreground, so that its pid is the one spawned.
        Engine::Passt => (passt.display().to_string(), "-f"),
    };
    let mut argv: Vec<String> = [
        "setpriv",
        "--reuid",
        POD_USER,
        "--regid",
        POD_USER,
        "--clear-groups",
        &program,
        mode,
        "--socket",
    ]
    .map(String::from)
    .to_vec();
    argv.push(socket.display().to_string());
    if link == Link::VhostUser {
        argv.push("--vhost-user".into());
    }
    if engine == Engine::NetbindNoPoll {
        argv.extend(["--busy-poll".into(), "0".into()]);
    }
    argv.extend(["--mtu".into(), mtu.to_string()]);
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut c = pod.pod.command(&argv);
    c.stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file);
    let mut p = pod.pod.spawn_command(c).map_err(|e| format!("{e:?}"))?;
    for _ in 0..500 {
        if socket.exists() {
            // Bound; listening follows at once.
            std::thread::sleep(Duration::from_millis(200));
            return Ok(p);
        }
        if let Ok(Some(status)) = p.wait_timeout(Duration::from_millis(10)) {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{argv:?} exited ({status}): {said}"));
        }
    }
    Err(format!("{argv:?} made no socket in 5 s"))
}

/// One boot: the engine, a guest on it, both directions.
fn run_one(
    pod: &PodFixture,
    peer: IpAddr,
    (link, engine): (Link, Engine),
    (cpus, mtu): (u32, u16),
    secs: u32,
    passt: &Path,
    ticks: f64,
) -> Result<Sample, String> {
    // A server of its own per boot: a run that hangs (it happens, to either engine)
    // leaves no busy server to the next.
    let port = PEER_PORT.to_string();
    let _server = (pod.peer)
        .spawn(&["iperf3", "-s", "-p", &port])
        .map_err(|e| format!("iperf3 -s in the peer: {e:?}"))?;
    std::thread::sleep(Duration::from_millis(300));
    let dir = pod_user_dir("nb-bench-vm-")?;
    let socket = dir.path().join("engine.sock");
    let log = dir.path().join("engine.log");
    let engine_process = start_engine(pod, link, engine, passt, &socket, &log, mtu)?;
    let pid = engine_process.id();
    let nic = match link {
        Link::VhostUser => GuestNic::vhost_user(&socket, MAC),
        Link::Stream => GuestNic::stream(&socket, MAC),
    };
    let script = SCRIPT
        .replace("@MAC@", MAC)
        .replace("@PEER@", &peer.to_string())
        .replace("@PORT@", &PEER_PORT.to_string())
        .replace("@SECS@", &secs.to_string());
    let opts = GuestOptions {
        cpus,
        host_binaries: vec![PathBuf::from("/usr/bin/iperf3")],
        ..GuestOptions::default()
    };
    let mut guest =
        Guest::boot_with(&pod.pod, &[nic], &script, &opts).map_err(|e| format!("{e:?}"))?;
    let fail = |guest: &Guest, e: String| {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        format!(
            "{e}\nconsole:\n{}\nQEMU: {}\nengine: {said}",
            guest.console(),
            guest.qemu_stderr()
        )
    };
    let mut cpu = BTreeMap::new();
    for d in ["up", "down"] {
        for (mark, timeout) in [("BEGIN", 180), ("END", u64::from(secs) + 60)] {
            guest
                .wait_for(&format!("{mark} {d}"), Duration::from_secs(timeout))
                .map_err(|e| fail(&guest, format!("{e:?}")))?;
            cpu.insert((d, mark), cpu_seconds(pid, ticks)?);
        }
    }
    let (vm_rss_mib, anon_mib) = (status_mib(pid, "VmRSS"), status_mib(pid, "RssAnon"));
    let console = guest
        .wait_done(Duration::from_secs(60))
        .map(|_| guest.console())
        .map_err(|e| fail(&guest, format!("{e:?}")))?;
    let way = |d: &'static str| -> Result<Way, String> {
        let (bytes, seconds, intervals) = iperf_result(&console, d).map_err(|e| fail(&guest, e))?;
        Ok(Way {
            gbits: bytes * 8.0 / seconds / 1e9,
            cpu_per_gb: (cpu[&(d, "END")] - cpu[&(d, "BEGIN")]) / (bytes / 1e9),
            intervals,
        })
    };
    Ok(Sample {
        up: way("up")?,
        down: way("down")?,
        vm_rss_mib,
        anon_mib,
        mtu: netbind_testbed::parse_results(&console)
            .get("mtu")
            .cloned()
            .unwrap_or_default(),
    })
}

/// The version passt was built with (`2025_05_03.587980c`), found in the binary: into a
/// pipe, its `--version` prints nothing.
fn passt_version(passt: &Path) -> String {
    let bin = std::fs::read(passt).unwrap_or_default();
    let is_version = |w: &[u8]| {
        w.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'_',
            10 => b == b'.',
            0..=9 => b.is_ascii_digit(),
            _ => b.is_ascii_hexdigit(),
        })
    };
    bin.windows(18)
        .find(|w| w.starts_with(b"20") && is_version(w))
        .map_or_else(
            || "of unknown version".into(),
            |w| String::from_utf8_lossy(w).into_owned(),
        )
}

fn first_line(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

fn main() {
    // `cargo bench` passes --bench; a test run (`cargo test --benches`) does not, and a
    // benchmark is no test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("bench vm: a benchmark, not a test (run scripts/bench-vm.sh)");
        return;
    }
    let secs: u32 = env_or("VM_BENCH_SECS", 5);
    let rounds: usize = env_or("VM_BENCH_ROUNDS", 3);
    let cpu_counts: Vec<u32> = std::env::var("VM_BENCH_CPUS")
        .unwrap_or_else(|_| "1 2".into())
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    let mtus: Vec<u16> = std::env::var("VM_BENCH_MTUS")
        .unwrap_or_else(|_| "65520 1500".into())
        .split_whitespace()
        .filter_map(|m| m.parse().ok())
        .collect();
    let only = std::env::var("VM_BENCH_ONLY").unwrap_or_default();
    let passt = PathBuf::from(
        std::env::var("VM_BENCH_PASST")
            .unwrap_or_else(|_| "/opt/netbind-peers/passt-2025_05_03/passt".into()),
    );
    require_privileges(&["ip", "qemu-system-x86_64", "busybox", "iperf3", "setpriv"])
        .expect("privileges and tools");
    assert!(
        passt.is_file(),
        "{} is missing: scripts/install-deps.sh builds it",
        passt.display()
    );
    let ticks: f64 = first_line(&["getconf", "CLK_TCK"]).parse().unwrap_or(100.0);
    let load0 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let pod = PodFixture::new().expect("CNI pod");
    let peer = pod.peer_ip(false).expect("peer address");

    let cells: Vec<(u32, u16)> = cpu_counts
        .iter()
        .flat_map(|&c| mtus.iter().map(move |&m| (c, m)))
        .collect();
    let mut samples: BTreeMap<((u32, u16), Link, Engine), Vec<Sample>> = BTreeMap::new();
    for round in 1..=rounds {
        for &(cpus, mtu) in &cells {
            for c in CONTENDERS
                .into_iter()
                .filter(|c| label(c.0, c.1).contains(&only))
            {
                match run_one(&pod, peer, c, (cpus, mtu), secs, &passt, ticks) {
                    Ok(s) => {
                        let each = |w: &Way| {
                            w.intervals
                                .iter()
                                .map(|g| format!("{g:.2}"))
                                .collect::<Vec<_>>()
                        };
                        eprintln!(
                            "bench vm: round {round}, {cpus} vCPU, MTU {mtu}, {}: {:.2} / {:.2} Gbit/s (each second: {} / {})",
                            label(c.0, c.1),
                            s.up.gbits,
                            s.down.gbits,
                            each(&s.up).join(" "),
                            each(&s.down).join(" ")
                        );
                        samples.entry(((cpus, mtu), c.0, c.1)).or_default().push(s);
                    }
                    Err(e) => eprintln!(
                        "bench vm: round {round}, {cpus} vCPU, MTU {mtu}, {} FAILED: {e}",
                        label(c.0, c.1)
                    ),
                }
            }
        }
    }

    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = info
        .lines()
        .find_map(|l| {
            Some(
                l.strip_prefix("model name")?
                    .trim_start_matches([' ', '\t', ':']),
            )
        })
        .unwrap_or("unknown CPU");
    println!(
        "### VM-mode benchmark — {}, {}, kernel {}",
        first_line(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        first_line(&["uname", "-n"]),
        first_line(&["uname", "-r"])
    );
    println!(
        "CPU: {cpu_model}, {} cores; load average at start: {}, at end: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load0
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{}; netbind {}; passt {} ({}); guest: QEMU TCG, 256 MiB; {rounds} interleaved rounds of {secs} s iperf3 runs (one TCP stream), medians",
        first_line(&["qemu-system-x86_64", "--version"]),
        first_line(&[
            "git",
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD"
        ]),
        passt_version(&passt),
        passt.display()
    );
    println!();
    println!(
        "| vCPUs | back end | guest MTU | guest→peer (Gbit/s) | peer→guest (Gbit/s) | engine CPU per GB, guest→peer (s) | engine CPU per GB, peer→guest (s) | engine VmRSS (MiB) | engine RssAnon (MiB) |"
    );
    println!("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let fmt = |v: f64, digits: usize| {
        if v.is_finite() {
            format!("{v:.digits$}")
        } else {
            "-".into()
        }
    };
    for &(cpus, mtu) in &cells {
        for (link, engine) in CONTENDERS {
            let s = samples
                .get(&((cpus, mtu), link, engine))
                .map_or(&[][..], Vec::as_slice);
            let m = |f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
            println!(
                "| {cpus} | {} | {} | {} | {} | {} | {} | {} | {} |",
                label(link, engine),
                s.first().map_or(format!("({mtu})"), |s| s.mtu.clone()),
                fmt(m(|s| s.up.gbits), 2),
                fmt(m(|s| s.down.gbits), 2),
                fmt(m(|s| s.up.cpu_per_gb), 2),
                fmt(m(|s| s.down.cpu_per_gb), 2),
                fmt(m(|s| s.vm_rss_mib), 1),
                fmt(m(|s| s.anon_mib), 1),
            );
        }
    }
    println!();
    println!(
        "Under TCG the guest is the bottleneck (the emulated vCPU, not the engine, limits the throughput): what compares the engines is the relative throughput on the same guest and, above all, the engine's CPU time per GB moved. netbind polls for events up to 200 µs before it sleeps (its default, for latency); `--busy-poll 0` shows what that costs here. VmRSS counts the guest memory a vhost-user engine has mapped and touched; RssAnon is the engine's own."
    );
}
