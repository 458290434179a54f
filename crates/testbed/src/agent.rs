//! A peer that says where traffic came from, for the tests that check a guest's traffic
//! leaves with the pod's addresses.
//!
//! How it works: [`SourceAgent::start`] runs a small python3 server in a namespace. Every
//! TCP connection to its TCP port gets one line back, `src=ADDR`; every TFTP read request
//! to its UDP port (busybox in the guest has `tftp` but no UDP netcat) gets one data block
//! holding `src=ADDR`. Both listen on IPv6 and IPv4 (a dual-stack socket; mapped addresses
//! are reported as IPv4). [`tcp_line`] is the other direction: one line to a listener, the
//! answer back. The agent is killed on drop.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::Stdio;

use crate::netns::{Netns, Process};
use crate::{Error, Result};

const AGENT: &str = r#"
import socket, sys, threading
def tcp():
    l = socket.socket(socket.AF_INET6); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    l.bind(("::", int(sys.argv[1]))); l.listen(16)
    while True:
        c, a = l.accept()
        c.recv(100)
        c.sendall(("src=%s\n" % a[0].replace("::ffff:", "")).encode()); c.close()
def udp():
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    u.bind(("::", int(sys.argv[2])))
    while True:
        d, a = u.recvfrom(600)
        if d[:2] == b"\x00\x01":  # a TFTP read request: one data block says the source
            u.sendto(b"\x00\x03\x00\x01" + ("src=%s" % a[0].replace("::ffff:", "")).encode(), a)
threading.Thread(target=udp, daemon=True).start()
print("READY", flush=True)
tcp()
"#;

/// The running agent (killed on drop).
pub struct SourceAgent {
    _process: Process,
}

impl SourceAgent {
    /// Starts the agent in `ns` on `tcp` and `udp` and waits until it listens.
    pub fn start(ns: &Netns, tcp: u16, udp: u16) -> Result<SourceAgent> {
        crate::require_privileges(&["python3"])?;
        let mut c = ns.command(&["python3", "-c", AGENT, &tcp.to_string(), &udp.to_string()]);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut process = ns.spawn_command(c)?;
        let mut ready = String::new();
        if let Some(out) = process.child().stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut ready);
        }
        if ready.trim() != "READY" {
            return Err(Error::Fixture(format!(
                "the source agent in {} did not start (said {ready:?})",
                ns.name()
            )));
        }
        Ok(SourceAgent { _process: process })
    }
}

/// Sends `line` over TCP from `ns` to `to` and returns the one line that comes back, or
/// what failed.
pub fn tcp_line(ns: &Netns, to: SocketAddr, line: &str) -> std::result::Result<String, String> {
    let out = ns
        .command(&[
            "python3",
            "-c",
            "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); s.sendall(sys.argv[3].encode()+b'\\n'); print(s.recv(100).decode().strip())",
            &to.ip().to_string(),
            &to.port().to_string(),
            line,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
