//! `netbind passt` as a process: refusals and the daemon's start (privileged: the daemon
//! runs in a namespace of the test's own). The libvirt end-to-end test is
//! `libvirt_passt.rs`.

mod common;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{NETBIND, code, run, stderr};
use netbind_testbed::{Netns, require_privileges};

#[test]
fn a_value_an_option_cannot_take_is_refused_naming_it_with_exit_1() {
    let out = run(&["passt", "--one-off", "--map-guest-addr", "127.0.0.1"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "passt: --map-guest-addr 127.0.0.1: the guest cannot reach it (not a unicast address, or a loopback one)\n"
    );
}

#[test]
fn an_option_passt_does_not_have_is_exit_1_too() {
    let out = run(&["passt", "--no-such-option"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--no-such-option"),
        "{}",
        stderr(&out)
    );
}

/// `--outbound` and `--outbound-if4` that the namespace cannot honour fail at start,
/// naming the option, before the socket is bound.
#[test]
fn an_outbound_address_or_link_the_namespace_lacks_is_refused_at_start() {
    require_privileges(&["ip"]).unwrap();
    let ns = Netns::new("passtout").unwrap();
    ns.sh("ip link set lo up; ip link add eth0 type veth peer name eth1; ip addr add 10.79.0.5/24 dev eth0; ip link set eth0 up; ip link set eth1 up; ip route add default via 10.79.0.1 dev eth0")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("p.socket").display().to_string();
    let start = |extra: &[&str]| {
        let mut argv = vec![NETBIND, "passt", "--foreground", "--socket", &socket];
        argv.extend(extra);
        ns.command(&argv).output().unwrap()
    };
    let out = start(&["-o", "192.0.2.99"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("passt: --outbound 192.0.2.99: not an address of this namespace"),
        "{}",
        stderr(&out)
    );
    let out = start(&["--outbound-if4", "eth9"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("passt: --outbound-if4 eth9: no such link in this namespace"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.path().join("p.socket").exists(),
        "refused before listening"
    );
}

#[test]
fn the_parent_returns_once_the_daemon_listens_and_its_pid_is_written() {
    require_privileges(&["ip"]).unwrap();
    let ns = Netns::new("passt").unwrap();
    ns.sh("ip link set lo up; ip link add eth0 type veth peer name eth1; ip addr add 10.79.0.5/24 dev eth0; ip link set eth0 up; ip link set eth1 up; ip route add default via 10.79.0.1 dev eth0")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (socket, pidfile) = (dir.path().join("p.socket"), dir.path().join("p.pid"));
    let started = Instant::now();
    let out = ns
        .command(&[
            NETBIND,
            "passt",
            "--one-off",
            "--socket",
            &socket.display().to_string(),
            "--pid",
            &pidfile.display().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("the pidfile is written before the parent returns")
        .trim()
        .parse()
        .unwrap();
    assert!(ns.pids().contains(&pid), "the daemon runs in the namespace");
    let guest = UnixStream::connect(&socket).expect("the socket listens when the parent is gone");

    // One-off: the daemon ends with its first guest connection.
    drop(guest);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns.pids().contains(&pid)
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z "),
        "the daemon still runs after its guest left: {state}"
    );
}

/// `-t all -u all` under these machines' descriptor limit (20,000, which root cannot
/// raise): passt refuses to start; netbind keeps a reserve for flows, binds the
/// well-known ports and then TCP's, skips what is taken and the ephemeral range, and says
/// what it left out.
#[test]
fn forward_all_under_the_descriptor_limit_takes_the_common_ports_and_names_the_rest() {
    require_privileges(&["ip", "prlimit", "ss", "python3"]).unwrap();
    let ns = Netns::new("fwdall").unwrap();
    ns.sh("ip link set lo up; ip link add eth0 type veth peer name eth1; ip addr add 10.79.0.5/24 dev eth0; ip link set eth0 up; ip link set eth1 up; ip route add default via 10.79.0.1 dev eth0")
        .unwrap();
    // Port 80 is taken by another process of the pod.
    let mut holder = ns
        .spawn(&["python3", "-c", "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 80)); s.listen(); print('up', flush=True); time.sleep(60)"])
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.child().stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "up");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("p.socket");
    let log = dir.path().join("p.log");
    let mut engine = ns
        .spawn(&[
            "prlimit",
            "--nofile=20000:20000",
            NETBIND,
            "passt",
            "--foreground",
            "--socket",
            &socket.display().to_string(),
            "--log-file",
            &log.display().to_string(),
            "-t",
            "all",
            "-u",
            "all",
        ])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("UDP listeners"))
        && Instant::now() < deadline
    {
        assert!(
            engine
                .wait_timeout(Duration::from_millis(50))
                .unwrap()
                .is_none(),
            "the engine exited: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let pid = engine.id();
    let ours = |proto: &str| -> Vec<u16> {
        let out = ns.sh(&format!("ss -{proto}lnpH")).unwrap();
        out.lines()
            .filter(|l| l.contains(&format!("pid={pid},")))
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(3)?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let (tcp, udp) = (ours("t"), ours("u"));
    for port in [22, 443, 8080] {
        assert!(tcp.contains(&port), "TCP {port} forwarded: {logged}");
    }
    assert!(!tcp.contains(&80), "port 80 is another process's");
    assert!(
        udp.contains(&53) && udp.contains(&123),
        "well-known UDP ports forwarded"
    );
    let range = ns.sh("sysctl -n net.ipv4.ip_local_port_range").unwrap();
    let mut r = range.split_whitespace().map(|p| p.parse::<u16>().unwrap());
    let (lo, hi) = (r.next().unwrap(), r.next().unwrap());
    assert!(
        !tcp.iter().chain(&udp).any(|p| (lo..=hi).contains(p)),
        "nothing in the ephemeral range {lo}-{hi}"
    );
    assert!(
        logged.contains("not forwarded: TCP ") && logged.contains("UDP 1024-"),
        "{logged}"
    );
    assert!(
        engine.wait_timeout(Duration::ZERO).unwrap().is_none(),
        "still running"
    );
}
