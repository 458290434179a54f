//! `netbind usernet` hardened (issue 4, "bounded and safe"): once the engine has opened
//! its tap and its inbound listeners, it holds no capability (`CapEff`/`CapPrm`/`CapBnd`
//! 0 in /proc/PID/status), runs under its seccomp allowlist (`Seccomp: 2`), optionally as
//! another user (`--runas`) — and traffic of every kind still flows: TCP both ways (IPv4
//! and IPv6), UDP, ping through an ICMP socket, an inbound forwarded port, the counters
//! on SIGUSR1, the stats file. A syscall missing from the allowlist would kill the
//! engine (`SECCOMP_RET_KILL_PROCESS`): the test then fails on the dead process.
//!
//! Layout as the engine's namespace tests: namespace A is the pod (a veth with
//! 10.77.0.2/24 and fd77::2/64, default routes via .1 / ::1, servers on its loopback),
//! namespace B the "guest" with the engine's tap. Privileged: fails when not root.

use netbind_testbed::run_ok as ok;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Bed {
    a: String,
    b: String,
    engine: Option<Child>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(c) = self.engine.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a thread inside namespace `ns` (setns affects only the calling thread).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        netbind_testbed::enter(path).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn status_field(pid: u32, name: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}

fn bed(tag: &str, extra: &[&str]) -> (Bed, u32, std::path::PathBuf) {
    bed_with(tag, extra, "0 2147483647", &[])
}

/// As [`bed`], with the pod's `net.ipv4.ping_group_range` as given, the engine started
/// through `wrap` (a command that execs the rest, e.g. `setpriv`).
fn bed_with(
    tag: &str,
    extra: &[&str],
    ping_range: &str,
    wrap: &[&str],
) -> (Bed, u32, std::path::PathBuf) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (namespaces, taps)"
    );
    let a = format!("nbh{tag}a{}", std::process::id());
    let b = format!("nbh{tag}b{}", std::process::id());
    let mut bed = Bed {
        a: a.clone(),
        b: b.clone(),
        engine: None,
    };
    for ns in [&a, &b] {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
        ok(&["ip", "netns", "add", ns]);
        ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        ok(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("net.ipv4.ping_group_range={ping_range}"),
        ]);
    }
    ok(&[
        "ip", "-n", &a, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
    ]);
    ok(&["ip", "-n", &a, "addr", "add", "10.77.0.2/24", "dev", "eth0"]);
    ok(&[
        "ip",
        "-n",
        &a,
        "addr",
        "add",
        "fd77::2/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    ok(&["ip", "-n", &a, "link", "set", "eth0", "up"]);
    ok(&["ip", "-n", &a, "link", "set", "peer0", "up"]);
    ok(&[
        "ip",
        "-n",
        &a,
        "route",
        "add",
        "default",
        "via",
        "10.77.0.1",
    ]);
    ok(&[
        "ip", "-n", &a, "-6", "route", "add", "default", "via", "fd77::1", "dev", "eth0",
    ]);
    let dir = tempfile::tempdir().unwrap().keep();
    // Writable for `--runas` users too: the engine rewrites the stats file there.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let stats = dir.join("stats");
    let mut args: Vec<String> = ["netns", "exec", &a]
        .iter()
        .chain(wrap)
        .chain(&[
            env!("CARGO_BIN_EXE_netbind"),
            "usernet",
            "--netns",
            &b,
            "-t",
            "8080",
            "-t",
            "127.0.0.1%lo/8081:8080",
            "-u",
            "none",
        ])
        .map(|s| s.to_string())
        .collect();
    args.extend(["--stats".into(), stats.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = Command::new("ip")
        .args(&args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id(); // `ip netns exec` execs the engine: same process
    bed.engine = Some(child);
    let end = Instant::now() + Duration::from_secs(10);
    while !stats.exists() {
        assert!(Instant::now() < end, "the engine did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The tap's addresses are configured without DAD; a moment for the routes.
    std::thread::sleep(Duration::from_millis(300));
    (bed, pid, dir)
}

fn alive(bed: &mut Bed) {
    let c = bed.engine.as_mut().unwrap();
    if let Some(st) = c.try_wait().unwrap() {
        let mut err = String::new();
        let _ = c.stderr.take().unwrap().read_to_string(&mut err);
        panic!("the engine died ({st}; a syscall outside the allowlist?): {err}");
    }
}

/// Every kind of traffic the engine relays, once.
fn traffic(bed: &mut Bed) {
    let (a, b) = (bed.a.clone(), bed.b.clone());
    // Servers in the pod, on its loopback: TCP echo (v4, v6), UDP echo.
    let (p4, p6, pu) = in_ns(&a, || {
        let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let l6 = TcpListener::bind("[::1]:0").unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ports = (
            l4.local_addr().unwrap().port(),
            l6.local_addr().unwrap().port(),
            u.local_addr().unwrap().port(),
        );
        for l in [l4, l6] {
            std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => s.write_all(&buf[..n]).unwrap(),
                    }
                }
            });
        }
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let (n, from) = u.recv_from(&mut buf).unwrap();
            u.send_to(&buf[..n], from).unwrap();
        });
        ports
    });
    // From the guest: TCP both ways (a megabyte each way), v4 and v6; UDP; ping.
    in_ns(&b, move || {
        let gw4 = SocketAddr::from((Ipv4Addr::new(10, 77, 0, 1), p4));
        let gw6 = SocketAddr::from((Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1), p6));
        for gw in [gw4, gw6] {
            let mut s = TcpStream::connect_timeout(&gw, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{gw}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
            let mut w = s.try_clone().unwrap();
            let sent = data.clone();
            let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
            let mut back = vec![0u8; data.len()];
            s.read_exact(&mut back).unwrap();
            writer.join().unwrap();
            assert!(back == data, "{gw}: echo differs");
        }
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        u.send_to(b"udp through the engine", (Ipv4Addr::new(10, 77, 0, 1), pu))
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = u.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"udp through the engine");
    });
    // Ping through an unprivileged ICMP socket (python3: no ping binary is needed).
    let script = "import socket\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)\n\
        s.settimeout(5)\n\
        s.sendto(b'\\x08\\x00\\x00\\x00\\x00\\x00\\x00\\x01hi', ('10.77.0.1', 0))\n\
        r = s.recv(64)\n\
        assert r[0] == 0, r\n";
    ok(&["ip", "netns", "exec", &b, "python3", "-c", script]);
    // Inbound: a client in the pod reaches the guest's server on the forwarded port, and
    // through the second spec's loopback port mapped to it.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let guest_server = {
        let b = b.clone();
        std::thread::spawn(move || {
            in_ns(&b, move || {
                let l = TcpListener::bind("0.0.0.0:8080").unwrap();
                ready_tx.send(()).unwrap();
                for _ in 0..2 {
                    let (mut s, _) = l.accept().unwrap();
                    s.write_all(b"hello from the guest").unwrap();
                }
            })
        })
    };
    ready_rx.recv().unwrap();
    let got = in_ns(&a, || {
        ["127.0.0.1:8080", "127.0.0.1:8081"].map(|to| {
            let mut s =
                TcpStream::connect_timeout(&to.parse().unwrap(), Duration::from_secs(5)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).unwrap();
            got
        })
    });
    guest_server.join().unwrap();
    assert_eq!(got, ["hello from the guest"; 2]);
}

#[test]
fn the_engine_runs_without_capabilities_under_seccomp_and_still_relays_everything() {
    let (mut bed, pid, dir) = bed("s", &[]);
    assert_eq!(status_field(pid, "CapEff"), "0000000000000000");
    assert_eq!(status_field(pid, "CapPrm"), "0000000000000000");
    assert_eq!(status_field(pid, "CapBnd"), "0000000000000000");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Seccomp"), "2");
    traffic(&mut bed);
    alive(&mut bed);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // a stats rewrite (every second)
    alive(&mut bed);
    let stats = std::fs::read_to_string(dir.join("stats")).unwrap();
    assert!(stats.contains("tcp_accepted 2"), "{stats}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = bed.engine.as_mut().unwrap().wait().unwrap();
    assert!(
        st.success(),
        "the engine ends cleanly on SIGTERM under seccomp: {st}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn runas_switches_user_after_opening_the_tap() {
    let (mut bed, pid, dir) = bed("r", &["--runas", "65534:65534"]);
    assert_eq!(status_field(pid, "Uid"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(pid, "Gid"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(pid, "Groups"), "65534");
    assert_eq!(status_field(pid, "CapEff"), "0000000000000000");
    assert_eq!(status_field(pid, "Seccomp"), "2");
    traffic(&mut bed);
    alive(&mut bed);
    let _ = std::fs::remove_dir_all(dir);
}

/// The engine's group outside `net.ipv4.ping_group_range`: guest pings cannot work, and
/// the engine says so at start, naming the sysctl and the group.
fn stderr_of_stopped(bed: &mut Bed) -> String {
    let c = bed.engine.as_mut().unwrap();
    let _ = c.kill();
    let _ = c.wait();
    let mut err = String::new();
    let _ = c.stderr.take().unwrap().read_to_string(&mut err);
    err
}

/// Without CAP_NET_RAW (dropped from the bounding set before exec), nothing can answer
/// the guest's pings: the engine says so at start, naming the sysctl and its group.
#[test]
fn an_engine_whose_group_may_not_ping_warns_at_start() {
    let (mut bed, _, _) = bed_with(
        "w",
        &["--runas", "65534:65534"],
        "107 107",
        &["setpriv", "--bounding-set", "-net_raw"],
    );
    let err = stderr_of_stopped(&mut bed);
    assert!(
        err.contains("warning: the guest's pings will go unanswered")
            && err.contains("net.ipv4.ping_group_range is `107 107`")
            && err.contains("the engine's group 65534")
            && err.contains("or start the engine with CAP_NET_RAW"),
        "{err}"
    );
}

/// With CAP_NET_RAW, where ping sockets are denied (the kernel default `1 0`), the
/// engine opens raw ICMP sockets before dropping its capabilities and answers the
/// guest's pings of both families through them.
#[test]
fn an_engine_with_cap_net_raw_answers_pings_where_ping_sockets_are_denied() {
    let (mut bed, pid, _) = bed_with("p", &["--runas", "65534:65534"], "1 0", &[]);
    assert_eq!(status_field(pid, "CapEff"), "0000000000000000");
    let b = bed.b.clone();
    // The guest side is a namespace where root pings with raw sockets of its own.
    ok(&[
        "ip",
        "netns",
        "exec",
        &b,
        "busybox",
        "ping",
        "-c",
        "2",
        "-W",
        "3",
        "10.77.0.1",
    ]);
    ok(&[
        "ip", "netns", "exec", &b, "busybox", "ping", "-6", "-c", "2", "-W", "3", "fd77::1",
    ]);
    alive(&mut bed);
    let err = stderr_of_stopped(&mut bed);
    assert!(
        err.contains("the guest's pings go through raw ICMP sockets") && !err.contains("warning"),
        "{err}"
    );
}
