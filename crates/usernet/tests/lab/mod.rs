//! A kernel guest behind a lossy link (privileged: namespaces and taps), for the loss
//! tests (`tests/lossy.rs`) and the loss benchmark (`benches/lossy.rs`).
//!
//! ```text
//! engine path:  [ns guest: tap0, kernel TCP] ─ lossy link ─ stream socket ─ engine [ns far: lo]
//! kernel path:  [ns guest: tap0, kernel TCP] ─ lossy link ─ [ns far: tap1, kernel TCP]
//! ```
//!
//! The guest's tap has no offloads, so every frame is at most the MTU (1500) and the link
//! drops, reorders or duplicates real segments. The guest connects to 10.77.0.1 or
//! fd77::1: on the engine path the gateway, which the engine maps to the far namespace's
//! loopback, where the server listens; on the kernel path the far tap's own address.
//! A transfer moves pseudo-random bytes one way and compares SHA-256 on both ends; a
//! receiver that sees no byte for [`STALL`] fails it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netbind_testbed::Netns;
use netbind_testbed::lossy::{End, Impairment, LossyLink};
use netbind_usernet::EngineConfig;
use netbind_usernet::attach::tap::create_in_netns_with;
use netbind_usernet::run::{Attach, RunOptions, run};
use sha2::{Digest, Sha256};

/// A receiver that gets nothing for this long calls the transfer stalled.
pub const STALL: Duration = Duration::from_secs(20);
pub const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// The guest reaches the far side through the user-mode engine.
    Engine,
    /// The reference: the far side is another kernel stack on the same link.
    Kernel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    GuestToFar,
    FarToGuest,
}

pub struct Lab {
    pub path: PathKind,
    guest: Netns,
    far: Netns,
    pub link: Option<LossyLink>,
    stop: Arc<AtomicBool>,
    engine: Option<JoinHandle<String>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.link.take();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.engine.take()
            && let Ok(counters) = t.join()
        {
            eprintln!("engine: {counters}");
        }
    }
}

fn guest_config() -> EngineConfig {
    EngineConfig {
        guest_mac: Some([0x02, 0x77, 0, 0, 0, 0x02]),
        guest4: Some("10.77.0.2/24".parse().unwrap()),
        guest6: Some("fd77::2/64".parse().unwrap()),
        gateway4: Some("10.77.0.1".parse().unwrap()),
        gateway6: Some("fd77::1".parse().unwrap()),
        mtu: 1500,
        ..EngineConfig::default()
    }
}

/// Pseudo-random bytes (xorshift64*), the same for the same seed.
struct Bytes(u64);

impl Bytes {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// What one side sent or received: bytes and their digest.
struct Side {
    bytes: u64,
    digest: [u8; 32],
}

fn send_all(s: &mut TcpStream, bytes: u64) -> std::io::Result<Side> {
    let mut bytes_gen = Bytes(0x5eed);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        bytes_gen.fill(&mut buf[..n]);
        s.write_all(&buf[..n])?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    s.shutdown(Shutdown::Write)?;
    Ok(Side {
        bytes,
        digest: h.finalize().into(),
    })
}

/// Reads to the end; after `pause.0` bytes stops reading for `pause.1` (a peer that
/// lets its buffers fill).
fn recv_all(s: &mut TcpStream, pause: Option<(u64, Duration)>) -> Result<Side, String> {
    s.set_read_timeout(Some(STALL)).map_err(|e| e.to_string())?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    let mut paused = false;
    loop {
        if let Some((at, d)) = pause
            && !paused
            && got >= at
        {
            paused = true;
            std::thread::sleep(d);
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                got += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "stalled or failed after {got} bytes ({:.1} MiB): {e}",
                    got as f64 / MIB as f64
                ));
            }
        }
    }
    Ok(Side {
        bytes: got,
        digest: h.finalize().into(),
    })
}

impl Lab {
    /// Namespaces, taps and link (and the engine, on its path); `to_far` and `to_guest`
    /// impair each direction of the link.
    pub fn new(path: PathKind, to_far: Impairment, to_guest: Impairment, seed: u64) -> Lab {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (namespaces, taps)"
        );
        let guest = Netns::new("lgst").expect("guest namespace");
        let far = Netns::new("lfar").expect("far namespace");
        let cfg = guest_config();
        let guest_tap = create_in_netns_with(guest.name(), "tap0", &cfg, false)
            .expect("guest tap (no offloads)");
        let stop = Arc::new(AtomicBool::new(false));
        let (far_end, engine) = match path {
            PathKind::Engine => {
                let (relay_side, engine_side) = UnixStream::pair().expect("socketpair");
                let far_path = far.path();
                let stop = stop.clone();
                let cfg = cfg.clone();
                let engine = std::thread::spawn(move || {
                    netbind_testbed::enter(far_path).expect("enter the far namespace");
                    match run(
                        cfg,
                        Attach::Fd(OwnedFd::from(engine_side)),
                        RunOptions {
                            pcap: std::env::var_os("LAB_PCAP").map(Into::into),
                            signals: false,
                            stop,
                            stats: std::env::var_os("LAB_STATS").map(Into::into),
                            harden: None,
                            busy_poll: netbind_usernet::run::DEFAULT_BUSY_POLL,
                        },
                    ) {
                        Ok(c) => c.to_string(),
                        Err(e) => format!("engine failed: {e}"),
                    }
                });
                (End::Stream(relay_side), Some(engine))
            }
            PathKind::Kernel => {
                let far_cfg = EngineConfig {
                    guest_mac: Some([0x02, 0x77, 0, 0, 0, 0x01]),
                    guest4: Some("10.77.0.1/24".parse().unwrap()),
                    guest6: Some("fd77::1/64".parse().unwrap()),
                    gateway4: None,
                    gateway6: None,
                    mtu: 1500,
                    ..EngineConfig::default()
                };
                let tap = create_in_netns_with(far.name(), "tap1", &far_cfg, false)
                    .expect("far tap (no offloads)");
                (End::Tap(tap), None)
            }
        };
        let link = LossyLink::start(End::Tap(guest_tap), far_end, to_far, to_guest, seed)
            .expect("lossy link");
        let lab = Lab {
            path,
            guest,
            far,
            link: Some(link),
            stop,
            engine,
        };
        // Neighbour discovery and the taps' carrier come first.
        std::thread::sleep(Duration::from_millis(300));
        lab
    }

    /// Turns selective acknowledgements off in the guest's stack (`net.ipv4.tcp_sack=0`,
    /// which covers IPv6 too): a guest that recovers from duplicate ACKs alone.
    pub fn guest_without_sack(&self) {
        self.guest
            .exec(&["sysctl", "-qw", "net.ipv4.tcp_sack=0"])
            .expect("tcp_sack=0 in the guest");
    }

    fn far_addr(v6: bool) -> IpAddr {
        if v6 {
            "fd77::1".parse().unwrap()
        } else {
            "10.77.0.1".parse().unwrap()
        }
    }

    fn listen_addr(&self, v6: bool) -> SocketAddr {
        let ip: IpAddr = match (self.path, v6) {
            (PathKind::Engine, false) => "127.0.0.1".parse().unwrap(),
            (PathKind::Engine, true) => "::1".parse().unwrap(),
            (PathKind::Kernel, v6) => Lab::far_addr(v6),
        };
        SocketAddr::new(ip, 0)
    }

    /// Moves `bytes` one way over one connection; the throughput in MB/s (10^6 bytes),
    /// or what went wrong. `pause`: the far receiver stops reading for a while after so
    /// many bytes.
    pub fn transfer(
        &self,
        way: Way,
        v6: bool,
        bytes: u64,
        pause: Option<(u64, Duration)>,
    ) -> Result<f64, String> {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let far_path = self.far.path();
        let listen = self.listen_addr(v6);
        let server = std::thread::spawn(move || -> Result<Side, String> {
            netbind_testbed::enter(far_path).map_err(|e| e.to_string())?;
            let l = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
            port_tx
                .send(l.local_addr().map_err(|e| e.to_string())?.port())
                .map_err(|e| e.to_string())?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut s = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => return Err(format!("no connection to the server: {e}")),
                }
            };
            s.set_nonblocking(false).map_err(|e| e.to_string())?;
            match way {
                Way::GuestToFar => recv_all(&mut s, pause),
                Way::FarToGuest => send_all(&mut s, bytes).map_err(|e| e.to_string()),
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the server did not start".to_string())?;
        let guest_path = self.guest.path();
        let to = SocketAddr::new(Lab::far_addr(v6), port);
        let start = Instant::now();
        let client = std::thread::spawn(move || -> Result<Side, String> {
            netbind_testbed::enter(guest_path).map_err(|e| e.to_string())?;
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(10))
                .map_err(|e| format!("connect {to}: {e}"))?;
            match way {
                Way::GuestToFar => {
                    let sent = send_all(&mut s, bytes).map_err(|e| e.to_string())?;
                    // Wait for the server's close: the transfer ends when all arrived.
                    s.set_read_timeout(Some(STALL * 3))
                        .map_err(|e| e.to_string())?;
                    let _ = s.read(&mut [0u8; 1]);
                    Ok(sent)
                }
                Way::FarToGuest => recv_all(&mut s, None),
            }
        });
        let client = client.join().map_err(|_| "client panicked".to_string())?;
        let secs = start.elapsed().as_secs_f64();
        let server = server.join().map_err(|_| "server panicked".to_string())?;
        let (sent, got) = match way {
            Way::GuestToFar => (client, server),
            Way::FarToGuest => (server, client),
        };
        let (sent, got) = match (sent, got) {
            (Ok(sent), Ok(got)) => (sent, got),
            (sent, got) => {
                let say = |r: Result<Side, String>| r.err().unwrap_or_else(|| "ok".into());
                return Err(format!("sender: {}; receiver: {}", say(sent), say(got)));
            }
        };
        if got.bytes != sent.bytes || got.digest != sent.digest {
            return Err(format!(
                "{} of {} bytes arrived, SHA-256 {}",
                got.bytes,
                sent.bytes,
                if got.digest == sent.digest {
                    "equal"
                } else {
                    "differs"
                }
            ));
        }
        Ok(bytes as f64 / secs / 1e6)
    }

    /// The link's counters, for failure messages.
    pub fn link_summary(&self) -> String {
        self.link
            .as_ref()
            .map(|l| l.stats.summary())
            .unwrap_or_default()
    }
}
