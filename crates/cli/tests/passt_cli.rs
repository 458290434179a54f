//! `netbind passt` as a process: refusals and the daemon's start (privileged: the daemon
//! runs in a namespace of the test's own). The libvirt end-to-end test is
//! `libvirt_passt.rs`.

mod common;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{NETBIND, code, run, stderr};
use netbind_testbed::{Netns, require_privileges};

#[test]
fn an_option_netbind_lacks_is_refused_by_name_with_exit_1() {
    let out = run(&["passt", "--one-off", "--no-dhcpv6", "--vhost-user"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "passt: netbind does not implement passt's options: --no-dhcpv6, --vhost-user\n"
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
