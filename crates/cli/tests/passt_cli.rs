//! `netbind passt` as a process: refusals, the daemon's start, and the engine with a
//! guest on its socket whose frames the test builds by hand (privileged: the engine runs
//! in a namespace of the test's own). The libvirt end-to-end test is `libvirt_passt.rs`.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{NETBIND, code, run, stderr};
use netbind_testbed::{Netns, require_privileges};
use netbind_usernet::config::ENGINE_MAC;
use netbind_usernet::frame::{Macs, PROTO_TCP, fill_l4_checksum, write_ip, write_udp};

/// The namespace the engine runs in: eth0 10.79.0.5/24, default route via 10.79.0.1 (so
/// the guest is 10.79.0.5 and its gateway, the namespace's loopback, 10.79.0.1).
fn pod(tag: &str) -> Netns {
    let ns = Netns::new(tag).unwrap();
    ns.sh("ip link set lo up; ip link add eth0 type veth peer name eth1; ip addr add 10.79.0.5/24 dev eth0; ip link set eth0 up; ip link set eth1 up; ip route add default via 10.79.0.1 dev eth0")
        .unwrap();
    ns
}

const GUEST: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 5);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 1);
const GUEST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x07];
const SYN: u8 = 0x02;
const PSH_ACK: u8 = 0x18;
const ACK: u8 = 0x10;

/// A guest on the engine's socket, as QEMU's `-netdev stream` is: frames with a 4-byte
/// length before each, built and read here by hand.
struct StreamGuest {
    sock: UnixStream,
}

/// A TCP segment the engine sent the guest.
struct Segment {
    dst_port: u16,
    seq: u32,
    flags: u8,
    payload: Vec<u8>,
}

impl StreamGuest {
    fn connect(socket: &std::path::Path) -> StreamGuest {
        let sock = UnixStream::connect(socket).expect("the engine's socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        StreamGuest { sock }
    }

    fn send(&mut self, frame: &[u8]) {
        self.sock
            .write_all(&(frame.len() as u32).to_be_bytes())
            .unwrap();
        self.sock.write_all(frame).unwrap();
    }

    /// The next frame, or `None` after 100 ms without one.
    fn recv(&mut self) -> Option<Vec<u8>> {
        let mut len = [0; 4];
        match self.sock.read_exact(&mut len) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(e) => panic!("the engine's socket: {e}"),
        }
        let mut frame = vec![0; u32::from_be_bytes(len) as usize];
        self.sock.read_exact(&mut frame).unwrap();
        Some(frame)
    }

    /// TCP from the guest's `port` to `to`.
    fn tcp(&mut self, port: u16, to: SocketAddr, (seq, ack): (u32, u32), flags: u8, data: &[u8]) {
        let opts: &[u8] = if flags == SYN {
            &[2, 4, 0x05, 0xb4]
        } else {
            &[]
        };
        let len = 20 + opts.len() + data.len();
        let mut f = vec![0; 14 + 20 + len];
        let macs = Macs {
            dst: ENGINE_MAC,
            src: GUEST_MAC,
        };
        let l4 = write_ip(&mut f, macs, GUEST.into(), to.ip(), PROTO_TCP, len, 64);
        let t = &mut f[l4..];
        t[0..2].copy_from_slice(&port.to_be_bytes());
        t[2..4].copy_from_slice(&to.port().to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[12] = (((20 + opts.len()) / 4) as u8) << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&65535u16.to_be_bytes());
        t[20..20 + opts.len()].copy_from_slice(opts);
        t[20 + opts.len()..].copy_from_slice(data);
        fill_l4_checksum(&mut f, l4, 16, GUEST.into(), to.ip(), PROTO_TCP);
        self.send(&f);
    }

    /// A TCP segment to the guest in `frame`, if it is one.
    fn segment(frame: &[u8]) -> Option<Segment> {
        let ip = frame.get(14..).filter(|_| frame[12..14] == [0x08, 0x00])?;
        if ip.get(9) != Some(&PROTO_TCP) {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let t = ip.get(20..total)?;
        let hl = usize::from(t[12] >> 4) * 4;
        Some(Segment {
            dst_port: u16::from_be_bytes([t[2], t[3]]),
            seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
            flags: t[13],
            payload: t.get(hl..)?.to_vec(),
        })
    }
}

/// `--log-size` holds for the daemon's log while it runs — under its seccomp filter, once
/// capabilities are gone: a guest asking for a lease a hundred times (a debug line each)
/// leaves the log under the size, with its newest lines, and the engine running.
#[test]
fn log_size_keeps_the_engines_log_under_it_while_the_guest_talks() {
    require_privileges(&["ip"]).unwrap();
    let ns = pod("passtlog");
    let dir = tempfile::tempdir().unwrap();
    let (socket, log) = (dir.path().join("p.socket"), dir.path().join("p.log"));
    let mut engine = ns
        .spawn(&[
            NETBIND,
            "passt",
            "--foreground",
            "--debug",
            "--socket",
            &socket.display().to_string(),
            "--log-file",
            &log.display().to_string(),
            "--log-size",
            "4096",
        ])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("listening on"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut guest = StreamGuest::connect(&socket);
    let mut discover = vec![0u8; 240];
    discover[..3].copy_from_slice(&[1, 1, 6]);
    discover[10] = 0x80;
    discover[28..34].copy_from_slice(&GUEST_MAC);
    discover[236..240].copy_from_slice(&[99, 130, 83, 99]);
    discover.extend([53, 1, 1, 255]);
    let macs = Macs {
        dst: [0xff; 6],
        src: GUEST_MAC,
    };
    let mut offers = 0;
    for xid in 0..100u32 {
        discover[4..8].copy_from_slice(&xid.to_be_bytes());
        let mut f = vec![0; 14 + 20 + 8 + discover.len()];
        let from: SocketAddr = "0.0.0.0:68".parse().unwrap();
        let to: SocketAddr = "255.255.255.255:67".parse().unwrap();
        let n = write_udp(&mut f, macs, from, to, &discover);
        guest.send(&f[..n]);
        let is_udp = |f: &Vec<u8>| f[12..14] == [0x08, 0x00] && f[23] == 17;
        offers += usize::from(std::iter::from_fn(|| guest.recv()).any(|f| is_udp(&f)));
    }
    assert_eq!(offers, 100, "every discover answered");
    assert!(
        engine
            .wait_timeout(Duration::from_millis(200))
            .unwrap()
            .is_none(),
        "the engine still runs: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.len() <= 4096, "{} bytes", text.len());
    assert!(
        text.starts_with("(older lines dropped: the log is kept under 4096 bytes)\n"),
        "{text}"
    );
    assert!(text.ends_with('\n') && text.contains("DHCPv4"), "{text}");
}

/// An echo server on the namespace's loopback, port 45000 (in the ephemeral range, which
/// "every port" leaves alone): one selector for every connection.
const ECHO_SERVER: &str = r#"
import selectors, socket
sel = selectors.DefaultSelector()
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 45000)); l.listen(1024); l.setblocking(False)
sel.register(l, selectors.EVENT_READ)
print("up", flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is l:
            c, _ = l.accept(); c.setblocking(False); sel.register(c, selectors.EVENT_READ)
        else:
            d = s.recv(4096)
            if d:
                s.sendall(d)
            else:
                sel.unregister(s); s.close()
"#;

/// Opens `n` TCP connections from the guest to `to` through the engine and sends a line
/// on each; returns how many connected and got their line back.
fn connections_out(guest: &mut StreamGuest, to: SocketAddr, n: u16) -> usize {
    use std::collections::{HashMap, HashSet};
    let line = |port: u16| format!("hello from {port}\n").into_bytes();
    for port in 20000..20000 + n {
        guest.tcp(port, to, (1000, 0), SYN, &[]);
    }
    let mut connected = HashMap::new();
    let mut echoed = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while echoed.len() < usize::from(n) && Instant::now() < deadline {
        let Some(s) = guest.recv().as_deref().and_then(StreamGuest::segment) else {
            continue;
        };
        let port = s.dst_port;
        if s.flags == SYN | ACK && !connected.contains_key(&port) {
            let ack = s.seq.wrapping_add(1);
            connected.insert(port, ack);
            guest.tcp(port, to, (1001, ack), ACK, &[]);
            guest.tcp(port, to, (1001, ack), PSH_ACK, &line(port));
        } else if !s.payload.is_empty() && s.payload == line(port) {
            echoed.insert(port);
        }
    }
    echoed.len()
}

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
    let ns = pod("passtout");
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
    let ns = pod("passt");
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
    // Gone, or a zombie: an exiting process leaves the namespace's list before it is
    // done, so that list alone says nothing.
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
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
/// what it left out — and the guest's 200 outbound connections then still succeed.
#[test]
fn forward_all_under_the_descriptor_limit_takes_the_common_ports_names_the_rest_and_still_connects_out()
 {
    require_privileges(&["ip", "prlimit", "ss", "python3"]).unwrap();
    let ns = pod("fwdall");
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

    // What the reserve is for: the guest's own connections still get descriptors.
    let mut server = ns.spawn(&["python3", "-c", ECHO_SERVER]).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.child().stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "up");
    let mut guest = StreamGuest::connect(&socket);
    let through_the_gateway = SocketAddr::new(GATEWAY.into(), 45000);
    assert_eq!(
        connections_out(&mut guest, through_the_gateway, 200),
        200,
        "200 outbound connections, each carrying a line both ways"
    );
    assert!(
        engine.wait_timeout(Duration::ZERO).unwrap().is_none(),
        "still running"
    );
}
